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

use super::model::TransferInfo;
use super::net::{Network, SessionKey, TransferState};
use super::{Node, NodeError};
use crate::store::node::NewTransfer;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
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
/// Most files (and, on NMDC, folders) a browse may hold: a bigger list is refused (503)
/// rather than kept. Real shares of a few hundred thousand files fit; a list that claims
/// millions only costs memory.
pub const MAX_BROWSE_FILES: usize = 1_000_000;
/// Most files the cache keeps over all its browses: older browses go first (the newest
/// is always kept).
pub const MAX_CACHED_FILES: u64 = 2_000_000;
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
    /// Its subfolders and files were left out ([`Folder::pruned`]): ask for its path.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
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
        Folder { name: name.to_owned(), path: path.to_owned(), size, files, folders, entries, more: false }
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

    /// A copy down to `depth` levels of subfolders (0: this folder's own files and its
    /// subfolders' sizes and counts only); deeper folders come with `more` set and
    /// nothing inside, so a big share opens level by level.
    pub fn pruned(&self, depth: usize) -> Folder {
        Folder {
            name: self.name.clone(),
            path: self.path.clone(),
            size: self.size,
            files: self.files,
            folders: self
                .folders
                .iter()
                .map(|f| {
                    if depth == 0 {
                        let more = !f.folders.is_empty() || !f.entries.is_empty();
                        Folder { folders: Vec::new(), entries: Vec::new(), more, ..f.shallow() }
                    } else {
                        f.pruned(depth - 1)
                    }
                })
                .collect(),
            entries: self.entries.clone(),
            more: false,
        }
    }

    fn shallow(&self) -> Folder {
        Folder {
            name: self.name.clone(),
            path: self.path.clone(),
            size: self.size,
            files: self.files,
            folders: Vec::new(),
            entries: Vec::new(),
            more: false,
        }
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
        let files = |e: &VecDeque<(std::time::Instant, std::sync::Arc<BrowseTree>)>| {
            e.iter().map(|(_, t)| t.root.files).sum::<u64>()
        };
        while self.entries.len() > MAX_BROWSE_CACHE
            || (self.entries.len() > 1 && files(&self.entries) > MAX_CACHED_FILES)
        {
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

/// A download of a path from a user's share (`POST /api/transfers` with `user` and
/// `path`): a file, or a folder with everything below it.
#[derive(Debug, Clone, Deserialize)]
pub struct PathDownload {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// The session label ("" for the configured one).
    #[serde(default)]
    pub session: String,
    /// Whose share.
    pub user: String,
    /// The path in it (`\` or `/` separated).
    pub path: String,
    /// Insist on a folder (true) or a file (false); absent: whatever the path is.
    #[serde(default)]
    pub folder: Option<bool>,
    /// A destination template for this download instead of `[transfers].destination`.
    #[serde(default)]
    pub destination: Option<String>,
    /// Only say what would be queued and which files are already on disk.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a [`PathDownload`] queued (or would queue).
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// The folder download's group (`GET /api/transfers/groups`); None for one file or a
    /// dry run.
    pub group: Option<i64>,
    /// Whether the path is a folder.
    pub folder: bool,
    /// Its name.
    pub name: String,
    /// The local folder the files go to.
    pub destination: String,
    /// Files.
    pub files: usize,
    /// Bytes.
    pub size: u64,
    /// Local paths where a file of that name is already on disk (a warning: the new
    /// download gets a name of its own, `name (2).ext`).
    pub existing: Vec<String>,
    /// The transfers queued (none for a dry run).
    pub transfers: Vec<TransferInfo>,
}

/// A folder download's progress over its files.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    /// Group id.
    pub id: i64,
    /// Network.
    pub network: Network,
    /// Whose folder.
    pub user: String,
    /// The folder's path on the source.
    pub path: String,
    /// The folder's name.
    pub name: String,
    /// Where its files land.
    pub local_dir: String,
    /// Unix time queued.
    pub created: i64,
    /// Files.
    pub files: u64,
    /// Files done.
    pub done: u64,
    /// Files failed for good.
    pub failed: u64,
    /// Files queued, running or paused.
    pub active: u64,
    /// Bytes of every file.
    pub size: u64,
    /// Bytes on disk (done files whole).
    pub bytes: u64,
    /// `active` while any file is, else `done` when every file is, else `failed` when
    /// any is, else `cancelled`.
    pub state: &'static str,
}

impl Node {
    /// `user`'s share on a session, from the cache when fresh (and `refresh` is false).
    /// Unknown session: 404; session offline or the user not there: 503; no answer in
    /// [`BROWSE_TIMEOUT`]: 504.
    pub async fn browse(
        &self,
        network: Network,
        label: &str,
        user: &str,
        refresh: bool,
    ) -> anyhow::Result<Arc<BrowseTree>> {
        let user = user.trim();
        if user.is_empty() {
            bail!(NodeError::Invalid("whose share? (user)".into()));
        }
        let key = SessionKey::new(network, label);
        if !matches!(network, Network::Nmdc | Network::Slsk) || self.session(&key).is_none() {
            bail!(NodeError::NotFound(format!("no {} session labelled {label:?} to browse from", network.title())));
        }
        if !refresh {
            if let Some(t) = self.browses.lock().expect("browses").get(network, label, user) {
                return Ok(t);
            }
        }
        let client = self.client(&key)?;
        let tmp = self.data_dir.join("browse");
        let root = match tokio::time::timeout(BROWSE_TIMEOUT, client.browse(user, &tmp)).await {
            Err(_) => bail!(NodeError::Timeout(format!(
                "{user} did not send its file list within {}s",
                BROWSE_TIMEOUT.as_secs()
            ))),
            Ok(Err(e)) => {
                let msg = format!("cannot browse {user} on {}: {e:#}", key.describe());
                if msg.contains("no answer") || msg.contains("did not connect") {
                    bail!(NodeError::Timeout(msg))
                }
                bail!(NodeError::Unavailable(msg))
            }
            Ok(Ok(root)) => root,
        };
        let tree = Arc::new(BrowseTree {
            network,
            session: label.to_owned(),
            user: user.to_owned(),
            fetched: crate::store::node::now(),
            root,
        });
        self.browses.lock().expect("browses").put(tree.clone());
        Ok(tree)
    }

    /// Queue (or, as a dry run, plan) a file or a whole folder of `user`'s share. A folder
    /// keeps its name and layout under the downloads folder by the destination template
    /// (`[transfers].destination`, or the request's `destination`), and its files are one
    /// group.
    pub async fn download_path(&self, req: &PathDownload) -> anyhow::Result<Planned> {
        let tree = self.browse(req.network, &req.session, &req.user, false).await?;
        let path = normalize(&req.path);
        let file = tree.root.find_file(&path).filter(|_| req.folder != Some(true) && !path.is_empty());
        let folder = if file.is_none() && req.folder != Some(false) { tree.root.find(&path) } else { None };
        let (name, files): (String, Vec<(String, &FileEntry)>) = match (file, folder) {
            (Some(f), _) => (f.name.clone(), vec![(f.name.clone(), f)]),
            (None, Some(d)) => {
                let name = if d.name.is_empty() { tree.user.clone() } else { d.name.clone() };
                (name, d.files_below())
            }
            (None, None) => bail!(NodeError::NotFound(format!(
                "{} has no {} {:?} (browse again if the share changed)",
                tree.user,
                match req.folder {
                    Some(true) => "folder",
                    Some(false) => "file",
                    None => "file or folder",
                },
                req.path
            ))),
        };
        let is_folder = file.is_none();
        if files.len() > MAX_FOLDER_FILES {
            bail!(NodeError::Invalid(format!(
                "{name} holds {} files; at most {MAX_FOLDER_FILES} at once: download its subfolders",
                files.len()
            )));
        }
        let session = self
            .session(&SessionKey::new(req.network, &req.session))
            .ok_or_else(|| NodeError::NotFound(format!("no session labelled {:?}", req.session)))?;
        let template = req.destination.clone().unwrap_or_else(|| self.cfg.transfers.destination.clone());
        let label = if req.session.is_empty() { req.network.as_str() } else { req.session.as_str() };
        let vars = DestVars {
            user: &tree.user,
            folder: if is_folder { &name } else { "" },
            network: req.network.as_str(),
            session: label,
        };
        let rel = resolve_destination(&template, &vars).map_err(NodeError::Invalid)?;
        let base = self.downloads().join(rel);
        let plan: Vec<(PathBuf, &FileEntry)> = files
            .iter()
            .map(|(r, e)| {
                let sub = local_relative(r);
                let dir = match sub.parent() {
                    Some(p) => base.join(p),
                    None => base.clone(),
                };
                (dir, *e)
            })
            .collect();
        let existing: Vec<String> = plan
            .iter()
            .map(|(dir, e)| {
                dir.join(omnipeer_dcc::SafeName::sanitize(&e.name).map(|n| n.as_str().to_owned()).unwrap_or_default())
            })
            .filter(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut planned = Planned {
            group: None,
            folder: is_folder,
            name: name.clone(),
            destination: base.to_string_lossy().into_owned(),
            files: plan.len(),
            size: plan.iter().map(|(_, e)| e.size).sum(),
            existing,
            transfers: Vec::new(),
        };
        if req.dry_run {
            return Ok(planned);
        }
        let hub = session.spec.address.clone();
        if is_folder {
            let g = self.db.lock().expect("db").transfer_group_add(
                req.network,
                &tree.user,
                &hub,
                &path,
                &name,
                &planned.destination,
            )?;
            planned.group = Some(g);
        }
        for (dir, e) in plan {
            let t = self.queue_download_in(
                NewTransfer {
                    network: req.network,
                    source: tree.user.clone(),
                    hub: hub.clone(),
                    remote_path: e.path.clone(),
                    tth: if req.network == Network::Nmdc { e.tth.clone() } else { None },
                    name: e.name.clone(),
                    size: e.size,
                    local_path: String::new(),
                    group: planned.group,
                },
                &dir,
            )?;
            planned.transfers.push(t);
        }
        Ok(planned)
    }

    /// Every folder download with its progress, newest first.
    pub fn transfer_groups(&self) -> anyhow::Result<Vec<GroupInfo>> {
        let groups = self.db.lock().expect("db").transfer_groups()?;
        let transfers = self.transfers()?;
        Ok(groups
            .into_iter()
            .map(|g| {
                let mine: Vec<&TransferInfo> = transfers.iter().filter(|t| t.group == Some(g.id)).collect();
                let count = |s: &[TransferState]| mine.iter().filter(|t| s.contains(&t.state)).count() as u64;
                let done = count(&[TransferState::Done]);
                let failed = count(&[TransferState::Failed]);
                let active = count(&[TransferState::Queued, TransferState::Running, TransferState::Paused]);
                let files = mine.len() as u64;
                let state = if active > 0 {
                    "active"
                } else if done == files {
                    "done"
                } else if failed > 0 {
                    "failed"
                } else {
                    "cancelled"
                };
                GroupInfo {
                    id: g.id,
                    network: g.network,
                    user: g.source,
                    path: g.remote_path,
                    name: g.name,
                    local_dir: g.local_dir,
                    created: g.created,
                    files,
                    done,
                    failed,
                    active,
                    size: mine.iter().map(|t| t.size).sum(),
                    bytes: mine.iter().map(|t| if t.state == TransferState::Done { t.size } else { t.bytes }).sum(),
                    state,
                }
            })
            .collect())
    }
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
        // One level at a time: sizes and counts of deeper folders, not their contents.
        let top = root.pruned(0);
        let music = &top.folders[1];
        assert_eq!((music.size, music.files, music.more, music.folders.len()), (5_500, 3, true, 0));
        let one = root.pruned(1);
        assert_eq!(one.folders[1].folders[0].name, "Album");
        assert!(one.folders[1].folders[0].more && one.folders[1].folders[0].entries.is_empty());
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
        // Big browses push the others out; the newest stays whatever its size.
        let big = |user: &str| {
            std::sync::Arc::new(BrowseTree {
                network: Network::Slsk,
                session: String::new(),
                user: user.into(),
                fetched: 0,
                root: Folder { files: MAX_CACHED_FILES / 2 + 1, ..Folder::default() },
            })
        };
        c.put(big("big1"));
        assert_eq!(c.len(), MAX_BROWSE_CACHE);
        c.put(big("big2"));
        assert_eq!(c.len(), 1);
        assert!(c.get(Network::Slsk, "", "big2").is_some());
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
