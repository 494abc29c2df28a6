//! File lists: `files.xml` and `files.xml.bz2`.
//!
//! bzip2 of UTF-8 XML, as EiskaltDC++ writes it:
//!
//! ```xml
//! <?xml version="1.0" encoding="utf-8" standalone="yes"?>
//! <FileListing Version="1" CID="<39 base32 chars>" Base="/" Generator="EiskaltDC++ 2.4.2">
//! <Directory Name="share2"><File Name="ektest.txt" Size="25" TTH="ZFGQ…BDI"/></Directory>
//! </FileListing>
//! ```
//!
//! `Version="1"`, `CID` and `Base` are required, `Incomplete="1"` marks a partial list (on
//! the root or a directory), `Generator` is informative. Older documents call the root
//! `FileList`; both are read. Names are unique per directory ignoring case.
//!
//! Reading is bounded: the compressed size, the decompressed size (bzip2 output is cut off
//! while decompressing, never inflated unboundedly), the nesting depth, the number of
//! entries and each name's length all have limits ([`Limits`]). Names must not contain `/`,
//! `\`, NUL or other control characters and must not be `.` or `..`, so a name from a list
//! can never walk out of a download directory.

use crate::limits::{MAX_DEPTH, MAX_ENTRIES, MAX_FILELIST_COMPRESSED, MAX_FILELIST_DECOMPRESSED, MAX_NAME};
use crate::tth::Tth;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use std::collections::HashSet;
use std::io::{Read, Write};
use thiserror::Error;

/// A file in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Name (one path component).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Tiger Tree Hash root.
    pub tth: Tth,
}

/// A directory in a list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directory {
    /// Name (one path component).
    pub name: String,
    /// `Incomplete="1"`: the contents were left out (partial lists).
    pub incomplete: bool,
    /// Subdirectories, in list order.
    pub dirs: Vec<Directory>,
    /// Files, in list order.
    pub files: Vec<File>,
}

/// A whole file list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileList {
    /// The owner's client ID (39 base32 characters).
    pub cid: String,
    /// The virtual directory this list starts at (`/` for a full list).
    pub base: String,
    /// The writing client, e.g. `omnipeer 0.1.0`.
    pub generator: Option<String>,
    /// `Incomplete="1"` on the root.
    pub incomplete: bool,
    /// Top-level directories (the share roots in a full list).
    pub dirs: Vec<Directory>,
    /// Top-level files (only in partial lists, in practice).
    pub files: Vec<File>,
}

/// Limits applied while reading a list; [`Limits::default`] gives the crate's named limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest compressed input.
    pub max_compressed: usize,
    /// Largest XML (decompressed) input.
    pub max_decompressed: usize,
    /// Deepest `Directory` nesting.
    pub max_depth: usize,
    /// Most `Directory` plus `File` entries.
    pub max_entries: usize,
    /// Longest name in bytes.
    pub max_name: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed: MAX_FILELIST_COMPRESSED,
            max_decompressed: MAX_FILELIST_DECOMPRESSED,
            max_depth: MAX_DEPTH,
            max_entries: MAX_ENTRIES,
            max_name: MAX_NAME,
        }
    }
}

/// Why a list could not be written or read.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FileListError {
    /// The compressed input is larger than the limit.
    #[error("compressed file list larger than {limit} bytes")]
    CompressedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Decompressing gave more than the limit.
    #[error("file list larger than {limit} bytes when decompressed")]
    DecompressedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The bzip2 stream is corrupt or truncated.
    #[error("bad bzip2 data: {0}")]
    Bzip2(String),
    /// The XML is not UTF-8.
    #[error("file list is not UTF-8")]
    NotUtf8,
    /// The XML is malformed.
    #[error("bad XML: {0}")]
    Xml(String),
    /// The root element is not `FileListing` or `FileList`, or there is none.
    #[error("not a file list (root element {0:?})")]
    BadRoot(String),
    /// Directories nest deeper than the limit.
    #[error("directories nested deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More entries than the limit.
    #[error("more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// A name is empty, too long, `.`/`..`, or has `/`, `\`, NUL or a control character.
    #[error("bad name {name:?}: {reason}")]
    BadName {
        /// The name as found.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries of one directory share a name (ignoring case); only refused on writing.
    #[error("duplicate name {0:?}")]
    DuplicateName(String),
    /// A required attribute is missing.
    #[error("<{element}> without {attribute}")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute has the wrong form (`Size` not a number, `TTH` not base32).
    #[error("<{element}> has a bad {attribute}")]
    BadAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// The document ends inside an element.
    #[error("file list ends inside an element")]
    Truncated,
}

type Result<T> = std::result::Result<T, FileListError>;

/// Check one name against the rules above.
pub fn check_name(name: &str, max: usize) -> Result<()> {
    let bad = |reason| Err(FileListError::BadName { name: name.chars().take(64).collect(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > max {
        return bad("too long");
    }
    if name == "." || name == ".." {
        return bad("is . or ..");
    }
    if name.contains(['/', '\\']) {
        return bad("contains a path separator");
    }
    if name.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}') {
        return bad("contains NUL or a control character");
    }
    Ok(())
}

impl FileList {
    /// An empty full list for this CID, generated by this crate's version of omnipeer.
    pub fn new(cid: &str) -> FileList {
        FileList {
            cid: cid.to_owned(),
            base: "/".to_owned(),
            generator: Some(format!("omnipeer {}", env!("CARGO_PKG_VERSION"))),
            incomplete: false,
            dirs: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Every file with its virtual path (`/share/dir/name`), depth first in list order.
    pub fn files(&self) -> Vec<(String, &File)> {
        fn walk<'a>(prefix: &str, d: &'a [Directory], f: &'a [File], out: &mut Vec<(String, &'a File)>) {
            for dir in d {
                let p = format!("{prefix}/{}", dir.name);
                walk(&p, &dir.dirs, &dir.files, out);
            }
            for file in f {
                out.push((format!("{prefix}/{}", file.name), file));
            }
        }
        let mut out = Vec::new();
        walk("", &self.dirs, &self.files, &mut out);
        out
    }

    /// Number of directories plus files.
    pub fn entry_count(&self) -> usize {
        fn count(d: &[Directory]) -> usize {
            d.iter().map(|d| 1 + d.files.len() + count(&d.dirs)).sum()
        }
        count(&self.dirs) + self.files.len()
    }

    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.files().iter().map(|(_, f)| f.size).fold(0u64, u64::saturating_add)
    }

    /// The list as UTF-8 XML. Refuses names that break the rules above, duplicate names in
    /// a directory (ignoring case), and trees beyond the default [`Limits`].
    pub fn to_xml(&self) -> Result<Vec<u8>> {
        let limits = Limits::default();
        let mut entries = 0usize;
        check_level(&self.dirs, &self.files, 0, &limits, &mut entries)?;
        let mut o = String::with_capacity(256 + entries * 96);
        o.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?>\n");
        o.push_str(&format!(
            "<FileListing Version=\"1\" CID=\"{}\" Base=\"{}\"",
            xml_escape(&self.cid),
            xml_escape(&self.base)
        ));
        if let Some(g) = &self.generator {
            o.push_str(&format!(" Generator=\"{}\"", xml_escape(g)));
        }
        if self.incomplete {
            o.push_str(" Incomplete=\"1\"");
        }
        o.push_str(">\n");
        write_level(&mut o, &self.dirs, &self.files, 1);
        o.push_str("</FileListing>\n");
        Ok(o.into_bytes())
    }

    /// The list as `files.xml.bz2`.
    pub fn to_bz2(&self) -> Result<Vec<u8>> {
        let xml = self.to_xml()?;
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        enc.write_all(&xml).map_err(|e| FileListError::Bzip2(e.to_string()))?;
        enc.finish().map_err(|e| FileListError::Bzip2(e.to_string()))
    }

    /// Read `files.xml.bz2` with the default limits.
    pub fn from_bz2(data: &[u8]) -> Result<FileList> {
        FileList::from_bz2_with(data, &Limits::default())
    }

    /// Read `files.xml.bz2` with these limits.
    pub fn from_bz2_with(data: &[u8], limits: &Limits) -> Result<FileList> {
        let xml = decompress_bz2(data, limits)?;
        FileList::from_xml_with(&xml, limits)
    }

    /// Read `files.xml` with the default limits.
    pub fn from_xml(xml: &[u8]) -> Result<FileList> {
        FileList::from_xml_with(xml, &Limits::default())
    }

    /// Read `files.xml` with these limits.
    pub fn from_xml_with(xml: &[u8], limits: &Limits) -> Result<FileList> {
        if xml.len() > limits.max_decompressed {
            return Err(FileListError::DecompressedTooLarge { limit: limits.max_decompressed });
        }
        let text = std::str::from_utf8(xml).map_err(|_| FileListError::NotUtf8)?;
        parse(text, limits)
    }
}

/// Decompress bzip2 data, stopping with an error as soon as the output passes
/// `limits.max_decompressed`.
pub fn decompress_bz2(data: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    if data.len() > limits.max_compressed {
        return Err(FileListError::CompressedTooLarge { limit: limits.max_compressed });
    }
    let cap = limits.max_decompressed as u64;
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limits.max_decompressed));
    bzip2::read::BzDecoder::new(data)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| FileListError::Bzip2(e.to_string()))?;
    if out.len() as u64 > cap {
        return Err(FileListError::DecompressedTooLarge { limit: limits.max_decompressed });
    }
    Ok(out)
}

fn check_level(dirs: &[Directory], files: &[File], depth: usize, limits: &Limits, entries: &mut usize) -> Result<()> {
    let mut seen = HashSet::new();
    *entries += dirs.len() + files.len();
    if *entries > limits.max_entries {
        return Err(FileListError::TooManyEntries { limit: limits.max_entries });
    }
    for name in dirs.iter().map(|d| &d.name).chain(files.iter().map(|f| &f.name)) {
        check_name(name, limits.max_name)?;
        if !seen.insert(name.to_lowercase()) {
            return Err(FileListError::DuplicateName(name.clone()));
        }
    }
    if !dirs.is_empty() && depth + 1 > limits.max_depth {
        return Err(FileListError::TooDeep { limit: limits.max_depth });
    }
    for d in dirs {
        check_level(&d.dirs, &d.files, depth + 1, limits, entries)?;
    }
    Ok(())
}

fn write_level(o: &mut String, dirs: &[Directory], files: &[File], indent: usize) {
    let tabs = "\t".repeat(indent);
    for d in dirs {
        o.push_str(&format!("{tabs}<Directory Name=\"{}\"", xml_escape(&d.name)));
        if d.incomplete {
            o.push_str(" Incomplete=\"1\"");
        }
        if d.dirs.is_empty() && d.files.is_empty() {
            o.push_str("/>\n");
        } else {
            o.push_str(">\n");
            write_level(o, &d.dirs, &d.files, indent + 1);
            o.push_str(&format!("{tabs}</Directory>\n"));
        }
    }
    for f in files {
        o.push_str(&format!("{tabs}<File Name=\"{}\" Size=\"{}\" TTH=\"{}\"/>\n", xml_escape(&f.name), f.size, f.tth));
    }
}

fn xml_escape(s: &str) -> String {
    // Attribute values: a literal tab, newline or carriage return would be read back as a
    // space (XML attribute-value normalisation), so they go out as character references.
    quick_xml::escape::escape(s).replace('\t', "&#9;").replace('\n', "&#10;").replace('\r', "&#13;")
}

/// What an open element on the parse stack is.
enum Frame {
    Dir(Directory),
    /// An element whose content is ignored (unknown elements, non-empty `<File>`).
    Skip,
}

struct Attrs {
    name: Option<String>,
    size: Option<String>,
    tth: Option<String>,
    incomplete: bool,
    cid: Option<String>,
    base: Option<String>,
    generator: Option<String>,
}

fn attrs(e: &BytesStart<'_>) -> Result<Attrs> {
    let mut a = Attrs { name: None, size: None, tth: None, incomplete: false, cid: None, base: None, generator: None };
    for attr in e.attributes() {
        let attr = attr.map_err(|err| FileListError::Xml(err.to_string()))?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| FileListError::Xml(err.to_string()))?
            .into_owned();
        match attr.key.as_ref() {
            "Name" => a.name = Some(value),
            "Size" => a.size = Some(value),
            "TTH" => a.tth = Some(value),
            "Incomplete" => a.incomplete = value == "1",
            "CID" => a.cid = Some(value),
            "Base" => a.base = Some(value),
            "Generator" => a.generator = Some(value),
            _ => {}
        }
    }
    Ok(a)
}

fn parse(text: &str, limits: &Limits) -> Result<FileList> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut list: Option<FileList> = None;
    let mut stack: Vec<Frame> = Vec::new();
    let mut root_open = false;
    let mut root_done = false;
    let mut dir_depth = 0usize;
    let mut entries = 0usize;
    loop {
        let ev = reader.read_event().map_err(|e| FileListError::Xml(e.to_string()))?;
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if stack.is_empty() {
                    if !root_open {
                        return Err(FileListError::Xml("unexpected end tag".into()));
                    }
                    root_open = false;
                    root_done = true;
                    continue;
                }
                if let Some(Frame::Dir(d)) = stack.pop() {
                    dir_depth -= 1;
                    let l = list.as_mut().ok_or(FileListError::Truncated)?;
                    attach_dir(l, &mut stack, d);
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let qname = e.name();
        let name: &str = qname.as_ref();
        if list.is_none() || (!root_open && root_done) {
            if root_done {
                return Err(FileListError::Xml("content after the root element".into()));
            }
            if name != "FileListing" && name != "FileList" {
                return Err(FileListError::BadRoot(name.to_owned()));
            }
            let a = attrs(&e)?;
            list = Some(FileList {
                cid: a.cid.unwrap_or_default(),
                base: a.base.unwrap_or_else(|| "/".to_owned()),
                generator: a.generator,
                incomplete: a.incomplete,
                dirs: Vec::new(),
                files: Vec::new(),
            });
            root_open = !empty;
            root_done = empty;
            continue;
        }
        if matches!(stack.last(), Some(Frame::Skip)) {
            if !empty {
                stack.push(Frame::Skip);
            }
            continue;
        }
        match name {
            "Directory" => {
                entries += 1;
                if entries > limits.max_entries {
                    return Err(FileListError::TooManyEntries { limit: limits.max_entries });
                }
                if dir_depth + 1 > limits.max_depth {
                    return Err(FileListError::TooDeep { limit: limits.max_depth });
                }
                let a = attrs(&e)?;
                let dname =
                    a.name.ok_or(FileListError::MissingAttribute { element: "Directory", attribute: "Name" })?;
                check_name(&dname, limits.max_name)?;
                let d = Directory { name: dname, incomplete: a.incomplete, dirs: Vec::new(), files: Vec::new() };
                if empty {
                    let l = list.as_mut().ok_or(FileListError::Truncated)?;
                    attach_dir(l, &mut stack, d);
                } else {
                    dir_depth += 1;
                    stack.push(Frame::Dir(d));
                }
            }
            "File" => {
                entries += 1;
                if entries > limits.max_entries {
                    return Err(FileListError::TooManyEntries { limit: limits.max_entries });
                }
                let a = attrs(&e)?;
                let fname = a.name.ok_or(FileListError::MissingAttribute { element: "File", attribute: "Name" })?;
                check_name(&fname, limits.max_name)?;
                let size = a.size.ok_or(FileListError::MissingAttribute { element: "File", attribute: "Size" })?;
                if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(FileListError::BadAttribute { element: "File", attribute: "Size" });
                }
                let size: u64 =
                    size.parse().map_err(|_| FileListError::BadAttribute { element: "File", attribute: "Size" })?;
                let tth = a.tth.ok_or(FileListError::MissingAttribute { element: "File", attribute: "TTH" })?;
                let tth = Tth::from_base32(&tth)
                    .map_err(|_| FileListError::BadAttribute { element: "File", attribute: "TTH" })?;
                let f = File { name: fname, size, tth };
                match stack.last_mut() {
                    Some(Frame::Dir(d)) => d.files.push(f),
                    _ => list.as_mut().ok_or(FileListError::Truncated)?.files.push(f),
                }
                if !empty {
                    stack.push(Frame::Skip);
                }
            }
            _ => {
                if !empty {
                    stack.push(Frame::Skip);
                }
            }
        }
    }
    if root_open || !stack.is_empty() {
        return Err(FileListError::Truncated);
    }
    list.ok_or_else(|| FileListError::BadRoot(String::new()))
}

fn attach_dir(list: &mut FileList, stack: &mut [Frame], d: Directory) {
    match stack.iter_mut().rev().find_map(|f| match f {
        Frame::Dir(p) => Some(p),
        Frame::Skip => None,
    }) {
        Some(parent) => parent.dirs.push(d),
        None => list.dirs.push(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tth::tth;
    use proptest::prelude::*;

    fn sample() -> FileList {
        let mut l = FileList::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        l.dirs.push(Directory {
            name: "share2".into(),
            incomplete: false,
            dirs: vec![Directory { name: "empty".into(), ..Default::default() }],
            files: vec![File {
                name: "ektest.txt".into(),
                size: 25,
                tth: Tth::from_base32("ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI").unwrap(),
            }],
        });
        l.dirs.push(Directory {
            name: "Tom & Jerry <\"quoted\"> 'x' é€".into(),
            incomplete: true,
            dirs: vec![],
            files: vec![File { name: "a&b<c>.txt".into(), size: u64::MAX, tth: tth(b"") }],
        });
        l
    }

    #[test]
    fn writes_the_header_shape_of_the_notes() {
        let xml = String::from_utf8(sample().to_xml().unwrap()).unwrap();
        let mut lines = xml.lines();
        assert_eq!(lines.next(), Some("<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?>"));
        assert_eq!(
            lines.next().unwrap(),
            format!(
                "<FileListing Version=\"1\" CID=\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\" Base=\"/\" Generator=\"omnipeer {}\">",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(xml.contains("<File Name=\"ektest.txt\" Size=\"25\" TTH=\"ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI\"/>"));
        assert!(xml.contains("Name=\"Tom &amp; Jerry &lt;&quot;quoted&quot;&gt; &apos;x&apos; é€\" Incomplete=\"1\""));
        assert!(xml.contains("Name=\"a&amp;b&lt;c&gt;.txt\""));
        assert!(xml.trim_end().ends_with("</FileListing>"));
    }

    #[test]
    fn round_trips_xml_and_bz2() {
        let l = sample();
        assert_eq!(FileList::from_xml(&l.to_xml().unwrap()).unwrap(), l);
        let bz = l.to_bz2().unwrap();
        assert_eq!(&bz[..3], b"BZh");
        assert_eq!(FileList::from_bz2(&bz).unwrap(), l);
        assert_eq!(l.entry_count(), 5);
        let files = l.files();
        assert_eq!(files[0].0, "/share2/ektest.txt");
        assert_eq!(files[1].0, "/Tom & Jerry <\"quoted\"> 'x' é€/a&b<c>.txt");
        assert_eq!(l.total_size(), u64::MAX);
    }

    #[test]
    fn six_thousand_files_like_the_microdc2_run() {
        let mut l = FileList::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        for d in 0..60 {
            let files = (0..100)
                .map(|f| File { name: format!("cdab{d:02}{f:03}.bin"), size: 1234, tth: tth(&[d as u8, f as u8]) })
                .collect();
            l.dirs.push(Directory { name: format!("d{d}"), files, ..Default::default() });
        }
        let bz = l.to_bz2().unwrap();
        let back = FileList::from_bz2(&bz).unwrap();
        assert_eq!(back.files().len(), 6000);
        assert_eq!(back, l);
    }

    #[test]
    fn reads_the_eiskalt_list_from_the_notes() {
        let xml = br#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>
<FileListing Version="1" CID="MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43UOV3HO6A" Base="/" Generator="EiskaltDC++ 2.4.2">
<Directory Name="share2"><File Name="ektest.txt" Size="25" TTH="ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI"/></Directory>
</FileListing>"#;
        let l = FileList::from_xml(xml).unwrap();
        assert_eq!(l.cid, "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43UOV3HO6A");
        assert_eq!(l.generator.as_deref(), Some("EiskaltDC++ 2.4.2"));
        assert_eq!(l.dirs.len(), 1);
        assert_eq!(l.dirs[0].files[0].size, 25);
        assert_eq!(l.files()[0].0, "/share2/ektest.txt");
    }

    #[test]
    fn reads_old_root_unknown_elements_and_partial_lists() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<!-- comment -->
<FileList>
 <Unknown a="b"><Directory Name="hidden"/><File Name="x" Size="1" TTH="LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ"/></Unknown>
 <Directory Name="d" Incomplete="1"/>
 <File Name="top.bin" Size="0" TTH="LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ"></File>
</FileList>"#;
        let l = FileList::from_xml(xml).unwrap();
        assert_eq!(l.base, "/");
        assert_eq!(l.cid, "");
        assert_eq!(l.dirs, vec![Directory { name: "d".into(), incomplete: true, ..Default::default() }]);
        assert_eq!(l.files.len(), 1);
        assert_eq!(l.files[0].name, "top.bin");
        let empty = FileList::from_xml(br#"<FileListing Version="1" CID="X" Base="/dir/" Incomplete="1"/>"#).unwrap();
        assert!(empty.incomplete && empty.dirs.is_empty());
        assert_eq!(empty.base, "/dir/");
    }

    #[test]
    fn refuses_bad_names() {
        for name in ["", ".", "..", "a/b", "a\\b", "nul\0x", "tab\tx", "del\u{7f}"] {
            // Control characters as character references (a raw tab would be read as a space).
            let escaped = xml_escape(name).replace('\0', "&#0;").replace('\t', "&#9;");
            let xml = format!(
                "<FileListing Version=\"1\" CID=\"X\" Base=\"/\"><Directory Name=\"{escaped}\"/></FileListing>"
            );
            assert!(FileList::from_xml(xml.as_bytes()).is_err(), "{name:?}");
            let mut l = FileList::new("X");
            l.dirs.push(Directory { name: name.into(), ..Default::default() });
            assert!(matches!(l.to_xml(), Err(FileListError::BadName { .. })), "{name:?}");
        }
        let long = "n".repeat(MAX_NAME + 1);
        let xml = format!("<FileList><Directory Name=\"{long}\"/></FileList>");
        assert!(matches!(FileList::from_xml(xml.as_bytes()), Err(FileListError::BadName { .. })));
        let mut l = FileList::new("X");
        l.dirs.push(Directory { name: "Music".into(), ..Default::default() });
        l.dirs.push(Directory { name: "music".into(), ..Default::default() });
        assert_eq!(l.to_xml(), Err(FileListError::DuplicateName("music".into())));
    }

    #[test]
    fn refuses_bad_documents() {
        let t = "TTH=\"LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ\"";
        type Check = fn(&FileListError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("".into(), |e| matches!(e, FileListError::BadRoot(_))),
            ("<Other/>".into(), |e| matches!(e, FileListError::BadRoot(_))),
            ("<FileListing><Directory Name=\"a\">".into(), |e| matches!(e, FileListError::Truncated)),
            ("<FileListing><Directory Name=\"a\"></File></FileListing>".into(), |e| matches!(e, FileListError::Xml(_))),
            ("<FileListing><Directory/></FileListing>".into(), |e| matches!(e, FileListError::MissingAttribute { .. })),
            (format!("<FileListing><File Name=\"a\" {t}/></FileListing>"), |e| {
                matches!(e, FileListError::MissingAttribute { .. })
            }),
            ("<FileListing><File Name=\"a\" Size=\"1\"/></FileListing>".into(), |e| {
                matches!(e, FileListError::MissingAttribute { .. })
            }),
            (format!("<FileListing><File Name=\"a\" Size=\"-1\" {t}/></FileListing>"), |e| {
                matches!(e, FileListError::BadAttribute { .. })
            }),
            (format!("<FileListing><File Name=\"a\" Size=\"99999999999999999999\" {t}/></FileListing>"), |e| {
                matches!(e, FileListError::BadAttribute { .. })
            }),
            ("<FileListing><File Name=\"a\" Size=\"1\" TTH=\"XYZ\"/></FileListing>".into(), |e| {
                matches!(e, FileListError::BadAttribute { .. })
            }),
            ("<FileListing/><FileListing/>".into(), |e| matches!(e, FileListError::Xml(_))),
            ("<FileListing><Directory Name=\"a&bogus;\"/></FileListing>".into(), |e| {
                matches!(e, FileListError::Xml(_))
            }),
        ];
        for (xml, ok) in cases {
            let err = FileList::from_xml(xml.as_bytes()).unwrap_err();
            assert!(ok(&err), "{xml}: {err:?}");
        }
        assert_eq!(FileList::from_xml(b"<FileList>\xff</FileList>"), Err(FileListError::NotUtf8));
    }

    #[test]
    fn depth_and_entry_limits() {
        let limits = Limits { max_depth: 3, max_entries: 5, ..Limits::default() };
        let deep = "<FileList><Directory Name=\"a\"><Directory Name=\"b\"><Directory Name=\"c\"><Directory Name=\"d\"/></Directory></Directory></Directory></FileList>";
        assert_eq!(FileList::from_xml_with(deep.as_bytes(), &limits), Err(FileListError::TooDeep { limit: 3 }));
        let ok = "<FileList><Directory Name=\"a\"><Directory Name=\"b\"><Directory Name=\"c\"/></Directory></Directory></FileList>";
        assert!(FileList::from_xml_with(ok.as_bytes(), &limits).is_ok());
        let many = format!(
            "<FileList>{}</FileList>",
            (0..6).map(|i| format!("<Directory Name=\"{i}\"/>")).collect::<String>()
        );
        assert_eq!(FileList::from_xml_with(many.as_bytes(), &limits), Err(FileListError::TooManyEntries { limit: 5 }));
        // Entries inside ignored elements count too.
        let hidden = format!("<FileList><X>{}</X></FileList>", "<Directory Name=\"a\"/>".repeat(6));
        assert!(FileList::from_xml_with(hidden.as_bytes(), &limits).is_ok());
        // The writer applies the default limits.
        let mut l = FileList::new("X");
        let mut d = Directory { name: "leaf".into(), ..Default::default() };
        for i in 0..MAX_DEPTH {
            d = Directory { name: format!("d{i}"), dirs: vec![d], ..Default::default() };
        }
        l.dirs.push(d);
        assert_eq!(l.to_xml(), Err(FileListError::TooDeep { limit: MAX_DEPTH }));
    }

    #[test]
    fn bzip2_bomb_is_cut_off_while_decompressing() {
        // 64 MiB of zeros compresses to a few hundred bytes.
        let zeros = vec![0u8; 64 << 20];
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        enc.write_all(&zeros).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 10_000);
        let limits = Limits { max_decompressed: 1 << 20, ..Limits::default() };
        assert_eq!(
            FileList::from_bz2_with(&bomb, &limits),
            Err(FileListError::DecompressedTooLarge { limit: 1 << 20 })
        );
        let small = Limits { max_compressed: bomb.len() - 1, ..Limits::default() };
        assert_eq!(
            FileList::from_bz2_with(&bomb, &small),
            Err(FileListError::CompressedTooLarge { limit: bomb.len() - 1 })
        );
        assert!(matches!(FileList::from_bz2(b"BZh9garbage"), Err(FileListError::Bzip2(_))));
        let good = sample().to_bz2().unwrap();
        assert!(matches!(FileList::from_bz2(&good[..good.len() / 2]), Err(FileListError::Bzip2(_))));
        assert!(FileList::from_xml_with(
            &sample().to_xml().unwrap(),
            &Limits { max_decompressed: 10, ..Limits::default() }
        )
        .is_err());
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 &<>\"'._\\-\u{e0}-\u{ff}\u{4e00}-\u{4e10}]{1,16}"
            .prop_filter("not . or ..", |n| n != "." && n != "..")
    }

    fn file() -> impl Strategy<Value = File> {
        (name(), any::<u64>(), any::<[u8; 24]>()).prop_map(|(name, size, h)| File { name, size, tth: Tth(h) })
    }

    fn unique<T>(v: Vec<T>, key: impl Fn(&T) -> String, seen: &mut HashSet<String>) -> Vec<T> {
        v.into_iter().filter(|x| seen.insert(key(x).to_lowercase())).collect()
    }

    fn dir() -> impl Strategy<Value = Directory> {
        let leaf =
            (name(), any::<bool>(), proptest::collection::vec(file(), 0..4)).prop_map(|(name, incomplete, files)| {
                let mut seen = HashSet::new();
                Directory { name, incomplete, dirs: vec![], files: unique(files, |f| f.name.clone(), &mut seen) }
            });
        leaf.prop_recursive(4, 40, 4, |inner| {
            (name(), any::<bool>(), proptest::collection::vec(inner, 0..4), proptest::collection::vec(file(), 0..4))
                .prop_map(|(name, incomplete, dirs, files)| {
                    let mut seen = HashSet::new();
                    let dirs = unique(dirs, |d| d.name.clone(), &mut seen);
                    let files = unique(files, |f| f.name.clone(), &mut seen);
                    Directory { name, incomplete, dirs, files }
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip(dirs in proptest::collection::vec(dir(), 0..4), files in proptest::collection::vec(file(), 0..3),
                      incomplete in any::<bool>(), cid in "[A-Z2-7]{39}") {
            let mut seen = HashSet::new();
            let mut l = FileList::new(&cid);
            l.dirs = unique(dirs, |d| d.name.clone(), &mut seen);
            l.files = unique(files, |f| f.name.clone(), &mut seen);
            l.incomplete = incomplete;
            prop_assert_eq!(&FileList::from_xml(&l.to_xml().unwrap()).unwrap(), &l);
            prop_assert_eq!(FileList::from_bz2(&l.to_bz2().unwrap()).unwrap(), l);
        }

        #[test]
        fn never_panics_on_xml(body in proptest::collection::vec(prop_oneof![
            Just("<Directory Name=\"a\">".to_owned()), Just("</Directory>".to_owned()),
            Just("<File Name=\"f\" Size=\"3\" TTH=\"LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ\"/>".to_owned()),
            Just("<File Name=\"f\">".to_owned()), Just("</File>".to_owned()), Just("<X>".to_owned()),
            Just("</X>".to_owned()), Just("</FileListing>".to_owned()), Just("<FileListing>".to_owned()),
            "[ -~]{0,8}",
        ], 0..20)) {
            let xml = format!("<FileListing>{}", body.concat());
            let _ = FileList::from_xml(xml.as_bytes());
        }

        #[test]
        fn never_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = FileList::from_xml(&data);
            let _ = FileList::from_bz2(&data);
        }
    }
}
