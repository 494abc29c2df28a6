//! Browsing a user's share: the whole share as one tree (folder sizes and file counts),
//! whatever the network, a bounded cache of recent browses, search within a browse, and
//! where the files of a download land (the destination template).
//!
//! The tree comes from the network's own list: NMDC's `files.xml.bz2`
//! (`omnipeer_nmdc::filelist`, fetched over a client-to-client connection like any file:
//! docs/protocols/nmdc.md) and Soulseek's SharedFileListResponse(5)
//! (`omnipeer_slsk::peer::SharedFileList`, docs/protocols/soulseek.md). Both use `\` as the
//! separator of virtual paths, and so does the tree: a folder's `path` is `music\Album`,
//! a file's is `music\Album\01.mp3`, the root's is empty. A path given by a caller may use
//! `/` instead (see [`normalize`]).

use super::net::Network;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

/// Browses kept in the node's cache ([`BrowseCache`]); the oldest goes first. A browse of
/// a 100,000-file share takes some tens of MB, so only a few are kept.
pub const MAX_BROWSE_CACHE: usize = 8;
/// How long a cached browse is served without asking the user again (`refresh=true`
/// asks anyway).
pub const BROWSE_CACHE_TTL: Duration = Duration::from_secs(600);
/// The longest a browse may take, from asking to a parsed tree (NMDC: the connection,
/// the file list's transfer and its parsing; Soulseek: the peer connection and the
/// answer, whose own wait is `omnipeer_slsk::session::BROWSE_WAIT`, 120 s). A user that
/// does not answer in time is a 504.
pub const BROWSE_TIMEOUT: Duration = Duration::from_secs(150);
/// Most hits a search within a browse returns.
pub const MAX_BROWSE_HITS: usize = 1000;
/// Most files one folder download queues (a bigger folder: download its subfolders).
pub const MAX_FOLDER_FILES: usize = 10_000;
/// Longest destination template or override, in bytes.
pub const MAX_TEMPLATE: usize = 512;

/// One file of a browsed share.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Its name.
    pub name: String,
    /// Its full virtual path (`\`-separated), as the network asks for it.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Tiger tree hash, base32 (NMDC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tth: Option<String>,
    /// Bitrate in kbps (Soulseek attribute 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u32>,
    /// Duration in seconds (Soulseek attribute 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Variable bitrate (Soulseek attribute 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vbr: Option<bool>,
    /// Sample rate in Hz (Soulseek attribute 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Bit depth (Soulseek attribute 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_depth: Option<u32>,
}

impl FileEntry {
    /// A file with no attributes.
    pub fn plain(name: &str, path: &str, size: u64) -> FileEntry {
        FileEntry {
            name: name.to_owned(),
            path: path.to_owned(),
            size,
            tth: None,
            bitrate: None,
            duration: None,
            vbr: None,
            sample_rate: None,
            bit_depth: None,
        }
    }
}

/// A folder: its files and subfolders, with the size and count of everything below it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Folder {
    /// Its name ("" for the root).
    pub name: String,
    /// Its virtual path ("" for the root).
    pub path: String,
    /// Bytes in it and every subfolder.
    pub size: u64,
    /// Files in it and every subfolder.
    pub files: u64,
    /// Subfolders, by name.
    pub folders: Vec<Folder>,
    /// Files directly in it, by name.
    #[serde(rename = "entries")]
    pub entries: Vec<FileEntry>,
}

/// A browsed share.
#[derive(Debug, Clone, Serialize)]
pub struct BrowseTree {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// The session label.
    pub session: String,
    /// Whose share.
    pub user: String,
    /// Unix time it was fetched.
    pub fetched: i64,
    /// The whole share.
    pub root: Folder,
}

/// A caller's path in the tree's form: `/` read as `\`, no leading, trailing or doubled
/// separators.
pub fn normalize(path: &str) -> String {
    path.split(['/', '\\']).filter(|c| !c.is_empty()).collect::<Vec<_>>().join("\\")
}

/// Builds a [`Folder`] tree from files given by folder path, in any order.
#[derive(Default)]
struct Builder {
    dirs: BTreeMap<String, Builder>,
    files: Vec<FileEntry>,
}

impl Builder {
    fn dir(&mut self, components: &[&str]) -> &mut Builder {
        let mut d = self;
        for c in components {
            d = d.dirs.entry((*c).to_owned()).or_default();
        }
        d
    }

    fn build(self, name: &str, path: &str) -> Folder {
        let folders: Vec<Folder> = self
            .dirs
            .into_iter()
            .map(|(n, b)| {
                let p = if path.is_empty() { n.clone() } else { format!("{path}\\{n}") };
                b.build(&n, &p)
            })
            .collect();
        let mut entries = self.files;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let size = entries.iter().map(|f| f.size).chain(folders.iter().map(|f| f.size)).fold(0u64, u64::saturating_add);
        let files = entries.len() as u64 + folders.iter().map(|f| f.files).sum::<u64>();
        Folder { name: name.to_owned(), path: path.to_owned(), size, files, folders, entries }
    }
}

impl Folder {
    /// The tree of an NMDC file list.
    pub fn from_nmdc(list: &omnipeer_nmdc::filelist::FileList) -> Folder {
        fn walk(b: &mut Builder, d: &omnipeer_nmdc::filelist::Directory, path: &str) {
            let sub = b.dirs.entry(d.name.clone()).or_default();
            for f in &d.files {
                let mut e = FileEntry::plain(&f.name, &format!("{path}\\{}", f.name), f.size);
                e.tth = Some(f.tth.to_base32());
                sub.files.push(e);
            }
            for c in &d.dirs {
                walk(sub, c, &format!("{path}\\{}", c.name));
            }
        }
        let mut b = Builder::default();
        for f in &list.files {
            let mut e = FileEntry::plain(&f.name, &f.name, f.size);
            e.tth = Some(f.tth.to_base32());
            b.files.push(e);
        }
        for d in &list.dirs {
            walk(&mut b, d, &d.name);
        }
        b.build("", "")
    }

    /// The tree of a Soulseek SharedFileList (public and private folders together).
    pub fn from_slsk(list: &omnipeer_slsk::peer::SharedFileList) -> Folder {
        let mut b = Builder::default();
        for d in list.dirs.iter().chain(list.private_dirs.iter().flatten()) {
            add_slsk_dir(&mut b, d);
        }
        b.build("", "")
    }

    /// The tree of Soulseek FolderContentsResponse folders.
    pub fn from_slsk_dirs(dirs: &[omnipeer_slsk::shares::SharedDirectory]) -> Folder {
        let mut b = Builder::default();
        for d in dirs {
            add_slsk_dir(&mut b, d);
        }
        b.build("", "")
    }

    /// The folder at `path` (normalized), if any.
    pub fn find(&self, path: &str) -> Option<&Folder> {
        let mut f = self;
        for c in normalize(path).split('\\').filter(|c| !c.is_empty()) {
            f = f.folders.iter().find(|d| d.name == c)?;
        }
        Some(f)
    }

    /// The file at `path`, if any.
    pub fn find_file(&self, path: &str) -> Option<&FileEntry> {
        let path = normalize(path);
        let (dir, name) = path.rsplit_once('\\').unwrap_or(("", &path));
        self.find(dir)?.entries.iter().find(|e| e.name == name)
    }

    /// Files and folders whose name contains every word of `query` (case-insensitive),
    /// at most [`MAX_BROWSE_HITS`], in tree order.
    pub fn search(&self, query: &str) -> Vec<Hit> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut hits = Vec::new();
        if words.is_empty() {
            return hits;
        }
        let matches = |name: &str| {
            let n = name.to_lowercase();
            words.iter().all(|w| n.contains(w.as_str()))
        };
        let mut queue = VecDeque::from([self]);
        while let Some(f) = queue.pop_front() {
            for d in &f.folders {
                if hits.len() >= MAX_BROWSE_HITS {
                    return hits;
                }
                if matches(&d.name) {
                    hits.push(Hit { kind: "folder", path: d.path.clone(), size: d.size, files: d.files });
                }
                queue.push_back(d);
            }
            for e in &f.entries {
                if hits.len() >= MAX_BROWSE_HITS {
                    return hits;
                }
                if matches(&e.name) {
                    hits.push(Hit { kind: "file", path: e.path.clone(), size: e.size, files: 1 });
                }
            }
        }
        hits
    }

    /// Every file below this folder with its path relative to it (`\`-separated, the
    /// folder's own name not included).
    pub fn files_below(&self) -> Vec<(String, &FileEntry)> {
        let mut out = Vec::new();
        let mut stack = vec![(self, String::new())];
        while let Some((f, rel)) = stack.pop() {
            for e in &f.entries {
                out.push((if rel.is_empty() { e.name.clone() } else { format!("{rel}\\{}", e.name) }, e));
            }
            for d in f.folders.iter().rev() {
                stack.push((d, if rel.is_empty() { d.name.clone() } else { format!("{rel}\\{}", d.name) }));
            }
        }
        out
    }
}

fn add_slsk_dir(b: &mut Builder, d: &omnipeer_slsk::shares::SharedDirectory) {
    let path = normalize(&d.path);
    let comps: Vec<&str> = path.split('\\').filter(|c| !c.is_empty()).collect();
    let dir = b.dir(&comps);
    for f in &d.files {
        // Directory lists carry bare names; take the last component if a peer sends more.
        let name = f.filename.rsplit('\\').next().unwrap_or(&f.filename);
        let full = if path.is_empty() { name.to_owned() } else { format!("{path}\\{name}") };
        let mut e = FileEntry::plain(name, &full, f.size);
        use omnipeer_slsk::shares::attr;
        e.bitrate = f.attribute(attr::BITRATE);
        e.duration = f.attribute(attr::DURATION);
        e.vbr = f.attribute(attr::VBR).map(|v| v != 0);
        e.sample_rate = f.attribute(attr::SAMPLE_RATE);
        e.bit_depth = f.attribute(attr::BIT_DEPTH);
        dir.files.push(e);
    }
}

/// A search hit within a browse.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hit {
    /// `file` or `folder`.
    pub kind: &'static str,
    /// Its path.
    pub path: String,
    /// Bytes (a folder's: everything below it).
    pub size: u64,
    /// Files (1 for a file).
    pub files: u64,
}

/// The recent browses, newest last, at most [`MAX_BROWSE_CACHE`].
#[derive(Default)]
pub struct BrowseCache {
    entries: VecDeque<(std::time::Instant, std::sync::Arc<BrowseTree>)>,
}

impl BrowseCache {
    /// The cached browse of `user` in `session` of `network`, if fresh.
    pub fn get(&self, network: Network, session: &str, user: &str) -> Option<std::sync::Arc<BrowseTree>> {
        self.entries
            .iter()
            .rev()
            .find(|(at, t)| {
                t.network == network
                    && t.session == session
                    && t.user.eq_ignore_ascii_case(user)
                    && at.elapsed() < BROWSE_CACHE_TTL
            })
            .map(|(_, t)| t.clone())
    }

    /// Keep `tree`, replacing an older browse of the same user and dropping the oldest
    /// beyond [`MAX_BROWSE_CACHE`].
    pub fn put(&mut self, tree: std::sync::Arc<BrowseTree>) {
        self.entries.retain(|(_, t)| {
            !(t.network == tree.network && t.session == tree.session && t.user.eq_ignore_ascii_case(&tree.user))
        });
        self.entries.push_back((std::time::Instant::now(), tree));
        while self.entries.len() > MAX_BROWSE_CACHE {
            self.entries.pop_front();
        }
    }

    /// How many browses are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a destination template's placeholders stand for.
#[derive(Debug, Clone, Default)]
pub struct DestVars<'a> {
    /// `{user}`: whose files.
    pub user: &'a str,
    /// `{folder}`: the name of the folder being downloaded; empty for a single file.
    pub folder: &'a str,
    /// `{network}`: `nmdc` or `slsk`.
    pub network: &'a str,
    /// `{session}`: the session's label, or the network when it has none.
    pub session: &'a str,
}

/// Resolve a destination template (`[transfers].destination`, or a download's
/// `destination`) to a path relative to the downloads folder. The template is split at
/// `/` and `\` first and each placeholder's value is made one path component (its own
/// separators and control characters become `_`), so a user or folder named `../x`
/// stays one folder named `.._x`. An absolute template, a `..` or `.` component, or an
/// unknown placeholder is refused. Empty components are dropped (`{folder}` of a single
/// file is empty: the file lands in the downloads folder itself).
pub fn resolve_destination(template: &str, v: &DestVars<'_>) -> Result<PathBuf, String> {
    if template.len() > MAX_TEMPLATE {
        return Err(format!("a destination is at most {MAX_TEMPLATE} bytes"));
    }
    let t = template.trim();
    let bytes = t.as_bytes();
    if t.starts_with(['/', '\\', '~']) || (bytes.len() >= 2 && bytes[1] == b':') {
        return Err(format!(
            "destination {template:?} must be a path inside the downloads folder, not an absolute one"
        ));
    }
    let mut out = PathBuf::new();
    for comp in t.split(['/', '\\']) {
        let comp = comp.trim();
        if comp == ".." || comp == "." {
            return Err(format!("destination {template:?}: no . or .. (it stays inside the downloads folder)"));
        }
        let value = substitute(comp, v).map_err(|e| format!("destination {template:?}: {e}"))?;
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let safe = omnipeer_dcc::SafeName::new(value).map_err(|e| format!("destination {template:?}: {e}"))?;
        out.push(safe.as_str());
    }
    Ok(out)
}

fn substitute(comp: &str, v: &DestVars<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = comp;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after.find('}').ok_or_else(|| "an unclosed {".to_owned())?;
        let value = match &after[..j] {
            "user" => v.user,
            "folder" => v.folder,
            "network" => v.network,
            "session" => v.session,
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} (use {{user}}, {{folder}}, {{network}}, {{session}})"
                ))
            }
        };
        out.push_str(&one_component(value));
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value from the network as one path component: separators and control characters
/// become `_`, and `.`/`..` become `_`.
pub fn one_component(s: &str) -> String {
    let c: String = s.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    let c = c.trim().to_owned();
    if c == "." || c == ".." {
        "_".to_owned()
    } else {
        c
    }
}

/// A relative path from a browse (`a\b\c.mp3`) as local components, each one made safe
/// by [`one_component`]; empty components are dropped.
pub fn local_relative(rel: &str) -> PathBuf {
    rel.split(['\\', '/']).map(one_component).filter(|c| !c.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipeer_slsk::peer::SharedFileList;
    use omnipeer_slsk::shares::{FileAttribute, SharedDirectory, SharedFile};

    fn slsk_list() -> SharedFileList {
        let mut song = SharedFile::new("01 Intro.mp3", 3_000);
        song.attributes = vec![FileAttribute { code: 0, value: 320 }, FileAttribute { code: 1, value: 61 }];
        SharedFileList {
            dirs: vec![
                SharedDirectory {
                    path: "music\\Album".into(),
                    files: vec![song, SharedFile::new("02 Outro.mp3", 2_000)],
                },
                SharedDirectory { path: "music\\Album\\scans".into(), files: vec![SharedFile::new("cover.jpg", 500)] },
                SharedDirectory { path: "docs".into(), files: vec![SharedFile::new("notes.txt", 7)] },
                SharedDirectory { path: "music".into(), files: vec![] },
            ],
            unknown: Some(0),
            private_dirs: None,
        }
    }

    #[test]
    fn a_soulseek_list_becomes_a_tree_with_folder_sizes_and_counts() {
        let root = Folder::from_slsk(&slsk_list());
        assert_eq!((root.size, root.files), (5_507, 4));
        assert_eq!(root.folders.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["docs", "music"]);
        let album = root.find("music/Album").unwrap();
        assert_eq!((album.path.as_str(), album.size, album.files), ("music\\Album", 5_500, 3));
        assert_eq!(album.entries[0].path, "music\\Album\\01 Intro.mp3");
        assert_eq!((album.entries[0].bitrate, album.entries[0].duration), (Some(320), Some(61)));
        assert_eq!(root.find("music\\Album\\scans").unwrap().files, 1);
        assert!(root.find("music/nope").is_none());
        assert_eq!(root.find_file("/docs/notes.txt").unwrap().size, 7);
        let below: Vec<String> = album.files_below().into_iter().map(|(r, _)| r).collect();
        assert_eq!(below, ["01 Intro.mp3", "02 Outro.mp3", "scans\\cover.jpg"]);
    }

    #[test]
    fn an_nmdc_list_becomes_the_same_tree_with_tths() {
        use omnipeer_nmdc::filelist::{Directory, File, FileList};
        use omnipeer_nmdc::tth::Tth;
        let f = |n: &str, s| File { name: n.into(), size: s, tth: Tth([s as u8; 24]) };
        let mut list = FileList::new("AAAA");
        list.dirs.push(Directory {
            name: "music".into(),
            incomplete: false,
            dirs: vec![Directory {
                name: "Album".into(),
                incomplete: false,
                dirs: vec![],
                files: vec![f("b.mp3", 20), f("a.mp3", 10)],
            }],
            files: vec![f("x.txt", 1)],
        });
        let root = Folder::from_nmdc(&list);
        assert_eq!((root.size, root.files), (31, 3));
        let album = root.find("music\\Album").unwrap();
        assert_eq!(album.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a.mp3", "b.mp3"]);
        assert_eq!(album.entries[0].path, "music\\Album\\a.mp3");
        assert_eq!(album.entries[0].tth.as_deref(), Some(Tth([10; 24]).to_base32().as_str()));
    }

    #[test]
    fn search_within_a_browse_finds_files_and_folders_by_every_word() {
        let root = Folder::from_slsk(&slsk_list());
        let hits = root.search("ALBUM");
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].kind, hits[0].path.as_str(), hits[0].files), ("folder", "music\\Album", 3));
        let hits = root.search("mp3 out");
        assert_eq!(hits.iter().map(|h| h.path.as_str()).collect::<Vec<_>>(), ["music\\Album\\02 Outro.mp3"]);
        assert!(root.search("  ").is_empty());
    }

    #[test]
    fn the_cache_keeps_the_newest_browses_only() {
        let mut c = BrowseCache::default();
        for i in 0..MAX_BROWSE_CACHE + 3 {
            c.put(std::sync::Arc::new(BrowseTree {
                network: Network::Slsk,
                session: String::new(),
                user: format!("u{i}"),
                fetched: 0,
                root: Folder::default(),
            }));
        }
        assert_eq!(c.len(), MAX_BROWSE_CACHE);
        assert!(c.get(Network::Slsk, "", "u0").is_none());
        assert!(c.get(Network::Slsk, "", "U10").is_some());
        assert!(c.get(Network::Nmdc, "", "u10").is_none());
    }

    fn vars<'a>(user: &'a str, folder: &'a str) -> DestVars<'a> {
        DestVars { user, folder, network: "slsk", session: "slsk" }
    }

    #[test]
    fn templates_resolve_inside_the_downloads_folder() {
        let v = vars("alice", "Album");
        assert_eq!(resolve_destination("{folder}", &v).unwrap(), PathBuf::from("Album"));
        assert_eq!(resolve_destination("{user}/{folder}", &v).unwrap(), PathBuf::from("alice/Album"));
        assert_eq!(
            resolve_destination("{network}\\{user} - {folder}", &v).unwrap(),
            PathBuf::from("slsk/alice - Album")
        );
        // A single file has no folder: the default lands it in the downloads folder itself.
        assert_eq!(resolve_destination("{folder}", &vars("alice", "")).unwrap(), PathBuf::new());
        assert_eq!(resolve_destination("", &v).unwrap(), PathBuf::new());
    }

    #[test]
    fn templates_cannot_walk_out_of_the_downloads_folder() {
        let v = vars("alice", "Album");
        for bad in ["../x", "a/../../x", "/etc", "\\x", "C:\\x", "~/x", "./x", "{user}/..", "{nope}", "{user"] {
            assert!(resolve_destination(bad, &v).is_err(), "{bad:?} was accepted");
        }
        assert!(resolve_destination(&"a".repeat(MAX_TEMPLATE + 1), &v).is_err());
        // Values from the network stay one component, however they are named.
        let hostile = vars("../../etc", "..");
        assert_eq!(resolve_destination("{user}/{folder}", &hostile).unwrap(), PathBuf::from(".._.._etc/_"));
        let p = resolve_destination("{folder}", &vars("u", "a/b\\c")).unwrap();
        assert_eq!(p.components().count(), 1, "{p:?}");
        assert_eq!(local_relative("a\\..\\b/c.mp3"), PathBuf::from("a/_/b/c.mp3"));
    }
}
