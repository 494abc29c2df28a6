//! `FileList::from_xml_with` / `from_bz2_with` with small limits, and the writer.
//!
//! The whole input is the document, so plain `files.xml` text (see `fuzz/seeds/nmdc_filelist`)
//! is fed as it is. It is read three ways: as XML, as bzip2 data, and (when it is not
//! bzip2 already) compressed by the harness and read as `files.xml.bz2`.
//!
//! Checked:
//! - nothing panics, and a list that is read respects the limits it was read with (depth,
//!   entries, name length, the name rules);
//! - reading the compressed input gives what reading the XML gives (or
//!   `DecompressedTooLarge` past the limit); reading with the default limits gives the same
//!   list as reading with the small ones;
//! - a list that is read writes back (`to_xml`; the only refusal allowed is a duplicate
//!   name, which the reader accepts and the writer refuses) and reads back equal, also
//!   through `to_bz2` / `from_bz2`.
//!
//! Known crate bugs can be skipped with `NMDC_FUZZ_SKIP_KNOWN=1` (see `known_bug`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_nmdc::filelist::{check_name, Directory, FileList, FileListError, Limits};
use std::collections::HashSet;
use std::io::Write;
use std::sync::OnceLock;

const SMALL: Limits =
    Limits { max_compressed: 64 * 1024, max_decompressed: 16 * 1024, max_depth: 6, max_entries: 48, max_name: 48 };

/// The small limits, but (almost) any document size: for reading back what the writer
/// wrote. Not `usize::MAX`: `decompress_bz2` computes `max_decompressed + 1` and overflows
/// (reported; see fuzz/README.md).
const SMALL_ANY_SIZE: Limits = Limits { max_compressed: usize::MAX / 2, max_decompressed: usize::MAX / 2, ..SMALL };

fn bz2(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Depth of the deepest directory (1 for top-level directories, 0 for none).
fn depth(dirs: &[Directory]) -> usize {
    dirs.iter().map(|d| 1 + depth(&d.dirs)).max().unwrap_or(0)
}

fn has_duplicate(dirs: &[Directory], files: &[omnipeer_nmdc::filelist::File]) -> bool {
    let mut seen = HashSet::new();
    for n in dirs.iter().map(|d| &d.name).chain(files.iter().map(|f| &f.name)) {
        if !seen.insert(n.to_lowercase()) {
            return true;
        }
    }
    dirs.iter().any(|d| has_duplicate(&d.dirs, &d.files))
}

fn check_names(dirs: &[Directory], files: &[omnipeer_nmdc::filelist::File], max: usize) {
    for n in dirs.iter().map(|d| &d.name).chain(files.iter().map(|f| &f.name)) {
        check_name(n, max).unwrap_or_else(|e| panic!("read a bad name {n:?}: {e}"));
    }
    for d in dirs {
        check_names(&d.dirs, &d.files, max);
    }
}

/// Crate bugs already reported; skipped only with `NMDC_FUZZ_SKIP_KNOWN=1`.
fn known_bug(l: &FileList) -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    if !*SKIP.get_or_init(|| std::env::var_os("NMDC_FUZZ_SKIP_KNOWN").is_some()) {
        return false;
    }
    // `CID`, `Base` and `Generator` are not checked like names: a `\t`, `\n` or `\r` in them
    // (read from `&#9;`, `&#10;`, `&#13;`) is written literally and read back as a space.
    [Some(&l.cid), Some(&l.base), l.generator.as_ref()].into_iter().flatten().any(|s| s.contains(['\t', '\n', '\r']))
}

/// Everything that must hold for a list read with `limits`.
fn check_list(l: &FileList, limits: &Limits) {
    assert!(l.entry_count() <= limits.max_entries, "{} entries", l.entry_count());
    assert!(depth(&l.dirs) <= limits.max_depth, "depth {}", depth(&l.dirs));
    check_names(&l.dirs, &l.files, limits.max_name);
    let files = l.files();
    for (path, f) in &files {
        assert!(path.starts_with('/') && path.ends_with(&f.name));
        for part in path[1..].split('/') {
            check_name(part, limits.max_name).unwrap();
        }
    }
    let _ = l.total_size();

    match l.to_xml() {
        Ok(xml) => {
            let back = FileList::from_xml_with(&xml, &SMALL_ANY_SIZE);
            if back.as_ref() != Ok(l) && !known_bug(l) {
                panic!(
                    "to_xml -> from_xml changed the list\n  list: {l:?}\n  xml:  {}\n  back: {back:?}",
                    String::from_utf8_lossy(&xml)
                );
            }
            assert_eq!(FileList::from_xml(&xml), back, "default limits read differently");
            if back.as_ref() == Ok(l) {
                let bz = l.to_bz2().expect("to_xml worked, so to_bz2 must");
                assert!(bz.starts_with(b"BZh"));
                assert_eq!(FileList::from_bz2_with(&bz, &SMALL_ANY_SIZE).as_ref(), Ok(l));
            }
        }
        Err(FileListError::DuplicateName(n)) => {
            assert!(has_duplicate(&l.dirs, &l.files), "DuplicateName({n:?}) without a duplicate");
        }
        Err(e) => panic!("a list that was read cannot be written: {e}\n  list: {l:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let from_xml = FileList::from_xml_with(data, &SMALL);
    if let Ok(l) = &from_xml {
        check_list(l, &SMALL);
        // Larger limits read the same list.
        assert_eq!(FileList::from_xml(data).as_ref(), Ok(l), "default limits read differently");
    }

    // The input as bzip2 data.
    if let Ok(l) = FileList::from_bz2_with(data, &SMALL) {
        check_list(&l, &SMALL);
    }

    // The input compressed by us: the bzip2 path reads what the XML path reads.
    if !data.starts_with(b"BZh") {
        let got = FileList::from_bz2_with(&bz2(data), &SMALL);
        if data.len() > SMALL.max_decompressed {
            assert_eq!(got, Err(FileListError::DecompressedTooLarge { limit: SMALL.max_decompressed }));
        } else {
            assert_eq!(got, from_xml, "bz2 and xml paths disagree");
        }
    }
});
