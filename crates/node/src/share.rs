//! The share index: virtual paths (lists of names) mapped to real files under the share
//! roots.
//!
//! A path from the network is never joined to a root as a string. It is looked up
//! component by component in this index, which holds only what a scan found inside a root;
//! symlinks are followed only when their target lies inside the same root, and files are
//! re-checked against the root when they are opened, so `..`, absolute paths and symlinks
//! cannot lead outside. Each folder is walked once per scan (by device and inode; real
//! folders before links to folders), so a symlink loop (`loop/u1 -> ..`, `loop/u2 -> ..`)
//! ends the walk instead of growing it without end; [`MAX_DEPTH`] is a last guard. What a
//! scan skips is summarised in one warning.

use omnipeer_dcc::fserve::{DirEntry, EntryKind, ShareView, VPath};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Deepest directory nesting indexed below a root: a last guard (loops are cut first by
/// visiting each directory once, by device and inode).
pub const MAX_DEPTH: usize = 64;
/// Most entries indexed in all (a guard against runaway trees).
pub const MAX_ENTRIES: usize = 5_000_000;
/// How long [`Share::open_single`] waits for its first scan before it returns with an
/// empty index that the scan fills in the background (a small share is ready at once; a
/// huge or slow one does not hold up the listener).
pub const FIRST_SCAN_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug)]
enum Node {
    Dir(DirNode),
    File(FileNode),
}

#[derive(Debug, Default)]
struct DirNode {
    children: BTreeMap<String, Node>,
}

/// A file in the index.
#[derive(Debug, Clone)]
pub struct FileNode {
    /// Where it is on disk.
    pub real: PathBuf,
    /// Size when scanned.
    pub size: u64,
    /// Modification time when scanned.
    pub mtime: Option<SystemTime>,
    root: usize,
}

/// One share root.
#[derive(Debug, Clone)]
pub struct ShareRoot {
    /// Its name as a top-level virtual directory (unused when it is the only root and
    /// mounted at the top).
    pub name: String,
    /// Its canonical path.
    pub path: PathBuf,
}

/// Shared between a scan and whoever watches it: stop it, read its progress.
#[derive(Debug, Default)]
pub struct ScanControl {
    cancel: AtomicBool,
    files: AtomicU64,
    dirs: AtomicU64,
}

impl ScanControl {
    /// Ask the scan to stop at its next entry (it then returns `ErrorKind::Interrupted`).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether [`ScanControl::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Files found so far.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Folders walked so far.
    pub fn dirs(&self) -> u64 {
        self.dirs.load(Ordering::Relaxed)
    }
}

/// What one scan left out, summarised in a single warning when it ends (never a line
/// per entry at warning level: a share with a loop or a million odd names must not
/// flood the log).
#[derive(Debug, Default)]
struct Skipped {
    /// Links (or bind mounts) to a folder this scan already walked: loops, duplicates.
    seen_dirs: usize,
    /// Links that lead outside the share.
    outside: usize,
    /// Folders deeper than [`MAX_DEPTH`].
    too_deep: usize,
    /// Folders that could not be read.
    unreadable: usize,
    /// Names that are not UTF-8 or not safe to serve.
    bad_names: usize,
    /// Entries past [`MAX_ENTRIES`].
    over_limit: bool,
    /// One path for the warning.
    example: Option<PathBuf>,
}

impl Skipped {
    fn note(&mut self, path: &Path) {
        if self.example.is_none() {
            self.example = Some(path.to_path_buf());
        }
    }

    fn warn(&self, roots: &[ShareRoot]) {
        let mut parts = Vec::new();
        if self.seen_dirs > 0 {
            parts.push(format!("{} link(s) to folders already shared (symlink loops or duplicates)", self.seen_dirs));
        }
        if self.outside > 0 {
            parts.push(format!("{} link(s) leading outside the share", self.outside));
        }
        if self.too_deep > 0 {
            parts.push(format!("{} folder(s) nested deeper than {MAX_DEPTH}", self.too_deep));
        }
        if self.unreadable > 0 {
            parts.push(format!("{} folder(s) that cannot be read", self.unreadable));
        }
        if self.over_limit {
            parts.push(format!("everything past {MAX_ENTRIES} entries"));
        }
        // Odd names alone are routine (a stray non-UTF-8 file): debug lines only.
        if parts.is_empty() {
            return;
        }
        if self.bad_names > 0 {
            parts.push(format!("{} name(s) that are not UTF-8 or not safe to serve", self.bad_names));
        }
        let roots: Vec<String> = roots.iter().map(|r| r.path.display().to_string()).collect();
        let example = self.example.as_ref().map(|p| format!(" (e.g. {})", p.display())).unwrap_or_default();
        tracing::warn!(
            "share scan of {}: skipped {}{example}; `--log-level debug` names each",
            roots.join(", "),
            parts.join(", ")
        );
    }
}

/// A symlink to a folder, walked after the real folders so that a folder is shared
/// under its own path and a link to it (visited already) is skipped.
struct PendingLink {
    /// Names from the root's node to the folder holding the link.
    parent: Vec<String>,
    name: String,
    path: PathBuf,
    depth: usize,
}

/// One walk of one root.
struct Walk<'a> {
    ctl: &'a ScanControl,
    root: usize,
    root_path: PathBuf,
    visited: HashSet<(u64, u64)>,
    pending: VecDeque<PendingLink>,
    skipped: &'a mut Skipped,
}

fn dir_at<'a>(mut dir: &'a mut DirNode, names: &[String]) -> Option<&'a mut DirNode> {
    for c in names {
        match dir.children.get_mut(c) {
            Some(Node::Dir(d)) => dir = d,
            _ => return None,
        }
    }
    Some(dir)
}

#[cfg(unix)]
fn dir_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn dir_id(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// An immutable snapshot of what the roots held when scanned.
#[derive(Debug)]
pub struct ShareIndex {
    roots: Vec<ShareRoot>,
    top: DirNode,
    files: usize,
    bytes: u64,
}

impl ShareIndex {
    fn empty(roots: Vec<ShareRoot>) -> ShareIndex {
        ShareIndex { roots, top: DirNode::default(), files: 0, bytes: 0 }
    }

    /// Index one folder whose contents appear at the top of the virtual tree (the DCC
    /// fserve home directory).
    pub fn scan_single(dir: &Path) -> io::Result<ShareIndex> {
        Self::scan_single_with(dir, &ScanControl::default())
    }

    /// [`ShareIndex::scan_single`], stoppable and observable through `ctl`.
    pub fn scan_single_with(dir: &Path, ctl: &ScanControl) -> io::Result<ShareIndex> {
        let path = dir.canonicalize().map_err(|e| with_path(e, dir))?;
        let mut idx = ShareIndex::empty(vec![ShareRoot { name: String::new(), path: path.clone() }]);
        let mut skipped = Skipped::default();
        idx.top = idx.walk_root(0, ctl, &mut skipped);
        skipped.warn(&idx.roots);
        if ctl.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the share scan was stopped"));
        }
        Ok(idx)
    }

    /// Index several folders, each a top-level virtual directory named after the folder.
    /// A folder that does not exist (or is not a folder) is left out with a warning: the
    /// others are still shared.
    pub fn scan_roots(dirs: &[PathBuf]) -> io::Result<ShareIndex> {
        Self::scan_roots_with(dirs, &ScanControl::default())
    }

    /// [`ShareIndex::scan_roots`], stoppable and observable through `ctl`.
    pub fn scan_roots_with(dirs: &[PathBuf], ctl: &ScanControl) -> io::Result<ShareIndex> {
        let mut idx = ShareIndex::empty(Vec::new());
        let mut top = DirNode::default();
        let mut skipped = Skipped::default();
        for d in dirs {
            let path = match d.canonicalize() {
                Ok(p) if p.is_dir() => p,
                // The node warns about a missing or odd folder once, at start
                // (app::Node::open); every scan would repeat it.
                Ok(_) => {
                    tracing::debug!("[share].folders: {} is not a folder: not shared", d.display());
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::debug!("[share].folders: {} does not exist: not shared", d.display());
                    continue;
                }
                Err(e) => {
                    tracing::warn!("[share].folders: {} cannot be shared: {e}", d.display());
                    continue;
                }
            };
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("share").to_owned();
            let mut name = base.clone();
            let mut n = 2;
            while top.children.contains_key(&name) {
                name = format!("{base} ({n})");
                n += 1;
            }
            idx.roots.push(ShareRoot { name: name.clone(), path });
            let node = idx.walk_root(idx.roots.len() - 1, ctl, &mut skipped);
            top.children.insert(name, Node::Dir(node));
        }
        idx.top = top;
        skipped.warn(&idx.roots);
        if ctl.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the share scan was stopped"));
        }
        Ok(idx)
    }

    /// The roots.
    pub fn roots(&self) -> &[ShareRoot] {
        &self.roots
    }

    /// Files indexed.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// Bytes in all indexed files.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    /// Walk root `root`: its real folders first, then the links to folders that were
    /// not walked yet (each folder once, by device and inode).
    fn walk_root(&mut self, root: usize, ctl: &ScanControl, skipped: &mut Skipped) -> DirNode {
        let root_path = self.roots[root].path.clone();
        let mut w = Walk {
            ctl,
            root,
            root_path: root_path.clone(),
            visited: HashSet::new(),
            pending: VecDeque::new(),
            skipped,
        };
        if let Some(id) = std::fs::metadata(&root_path).ok().as_ref().and_then(dir_id) {
            w.visited.insert(id);
        }
        let mut node = DirNode::default();
        self.scan_dir(&mut w, &root_path, &mut node, &mut Vec::new(), 0);
        while let Some(link) = w.pending.pop_front() {
            if ctl.is_cancelled() {
                break;
            }
            let id = std::fs::metadata(&link.path).ok().as_ref().and_then(dir_id);
            if let Some(id) = id {
                if !w.visited.insert(id) {
                    tracing::debug!(path = %link.path.display(), "skipping a link to a folder already shared");
                    w.skipped.seen_dirs += 1;
                    w.skipped.note(&link.path);
                    continue;
                }
            }
            let mut child = DirNode::default();
            let mut at = link.parent.clone();
            at.push(link.name.clone());
            self.scan_dir(&mut w, &link.path, &mut child, &mut at, link.depth);
            // The parent is in the tree: the walk that queued the link inserted it.
            if let Some(parent) = dir_at(&mut node, &link.parent) {
                parent.children.insert(link.name, Node::Dir(child));
            }
        }
        node
    }

    fn scan_dir(&mut self, w: &mut Walk<'_>, dir: &Path, node: &mut DirNode, at: &mut Vec<String>, depth: usize) {
        if depth >= MAX_DEPTH {
            tracing::debug!(dir = %dir.display(), "share nested deeper than {MAX_DEPTH}: not indexed further");
            w.skipped.too_deep += 1;
            w.skipped.note(dir);
            return;
        }
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), "cannot read shared folder: {e}");
                w.skipped.unreadable += 1;
                w.skipped.note(dir);
                return;
            }
        };
        w.ctl.dirs.fetch_add(1, Ordering::Relaxed);
        for entry in rd.flatten() {
            if w.ctl.is_cancelled() {
                return;
            }
            if self.files >= MAX_ENTRIES {
                w.skipped.over_limit = true;
                return;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::debug!(path = %entry.path().display(), "skipping a name that is not UTF-8");
                w.skipped.bad_names += 1;
                continue;
            };
            if omnipeer_dcc::SafeName::new(&name).is_err() {
                w.skipped.bad_names += 1;
                continue;
            }
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            let link = ft.is_symlink();
            if link {
                // Follow a link only to somewhere inside the same root.
                match path.canonicalize() {
                    Ok(target) if target.starts_with(&w.root_path) => {}
                    _ => {
                        tracing::debug!(path = %path.display(), "skipping a symlink that leads outside the share");
                        w.skipped.outside += 1;
                        w.skipped.note(&path);
                        continue;
                    }
                }
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if link {
                    w.pending.push_back(PendingLink { parent: at.clone(), name, path, depth: depth + 1 });
                    continue;
                }
                // A real folder seen before is a bind mount of an ancestor or a sibling.
                if let Some(id) = dir_id(&meta) {
                    if !w.visited.insert(id) {
                        tracing::debug!(path = %path.display(), "skipping a folder already shared (a bind mount?)");
                        w.skipped.seen_dirs += 1;
                        w.skipped.note(&path);
                        continue;
                    }
                }
                let mut child = DirNode::default();
                at.push(name.clone());
                self.scan_dir(w, &path, &mut child, at, depth + 1);
                at.pop();
                node.children.insert(name, Node::Dir(child));
            } else if meta.is_file() {
                self.files += 1;
                self.bytes += meta.len();
                w.ctl.files.fetch_add(1, Ordering::Relaxed);
                node.children.insert(
                    name,
                    Node::File(FileNode { real: path, size: meta.len(), mtime: meta.modified().ok(), root: w.root }),
                );
            }
        }
    }

    /// Find a path: exact spelling first, then without regard to case (as mIRC users on
    /// Windows expect). Returns the stored spelling.
    fn find(&self, path: &VPath) -> Option<(VPath, &Node)> {
        let mut dir = &self.top;
        let mut canon = Vec::with_capacity(path.components().len());
        let mut found: Option<&Node> = None;
        for (i, c) in path.components().iter().enumerate() {
            let (name, node) = match dir.children.get_key_value(c) {
                Some(kv) => kv,
                None => dir
                    .children
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(c) || k.to_lowercase() == c.to_lowercase())?,
            };
            canon.push(name.clone());
            found = Some(node);
            match node {
                Node::Dir(d) => dir = d,
                Node::File(_) if i + 1 == path.components().len() => {}
                Node::File(_) => return None,
            }
        }
        let canon = VPath::from_components(canon);
        match found {
            Some(n) => Some((canon, n)),
            None => Some((canon, self.top_as_node())),
        }
    }

    fn top_as_node(&self) -> &Node {
        // The top is a directory; `find` needs a `Node` for it.
        static EMPTY: std::sync::OnceLock<Node> = std::sync::OnceLock::new();
        EMPTY.get_or_init(|| Node::Dir(DirNode::default()))
    }

    /// Every indexed file with its virtual path, depth first in name order.
    pub fn files(&self) -> Vec<(VPath, FileNode)> {
        fn walk(dir: &DirNode, at: &mut Vec<String>, out: &mut Vec<(VPath, FileNode)>) {
            for (name, node) in &dir.children {
                at.push(name.clone());
                match node {
                    Node::Dir(d) => walk(d, at, out),
                    Node::File(f) => out.push((VPath::from_components(at.clone()), f.clone())),
                }
                at.pop();
            }
        }
        let mut out = Vec::with_capacity(self.files);
        walk(&self.top, &mut Vec::new(), &mut out);
        out
    }

    /// Every directory's virtual path (the top excluded), depth first in name order.
    pub fn dirs(&self) -> Vec<VPath> {
        fn walk(dir: &DirNode, at: &mut Vec<String>, out: &mut Vec<VPath>) {
            for (name, node) in &dir.children {
                if let Node::Dir(d) = node {
                    at.push(name.clone());
                    out.push(VPath::from_components(at.clone()));
                    walk(d, at, out);
                    at.pop();
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.top, &mut Vec::new(), &mut out);
        out
    }

    /// The indexed file at `path`, if it is one.
    pub fn file(&self, path: &VPath) -> Option<(VPath, FileNode)> {
        match self.find(path)? {
            (p, Node::File(f)) => Some((p, f.clone())),
            _ => None,
        }
    }

    /// Open an indexed file for reading, re-checking that it still lies inside its root.
    pub fn open(&self, path: &VPath) -> io::Result<(File, u64)> {
        let (_, f) =
            self.file(path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file in the share"))?;
        open_inside(&f.real, &self.roots[f.root].path)
    }
}

/// Open `real` if, with every link resolved, it is still a regular file inside `root`.
pub fn open_inside(real: &Path, root: &Path) -> io::Result<(File, u64)> {
    let canon = real.canonicalize()?;
    if !canon.starts_with(root) {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "file lies outside the share"));
    }
    let file = File::open(&canon)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok((file, meta.len()))
}

fn with_path(e: io::Error, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

impl ShareView for ShareIndex {
    fn stat(&self, path: &VPath) -> Option<(VPath, EntryKind)> {
        let (p, node) = self.find(path)?;
        let kind = match node {
            Node::Dir(_) => EntryKind::Dir,
            Node::File(f) => EntryKind::File { size: f.size },
        };
        Some((p, kind))
    }

    fn list(&self, dir: &VPath) -> Option<Vec<DirEntry>> {
        let d = if dir.components().is_empty() {
            &self.top
        } else {
            match self.find(dir)? {
                (_, Node::Dir(d)) => d,
                _ => return None,
            }
        };
        Some(
            d.children
                .iter()
                .map(|(name, n)| DirEntry {
                    name: name.clone(),
                    kind: match n {
                        Node::Dir(_) => EntryKind::Dir,
                        Node::File(f) => EntryKind::File { size: f.size },
                    },
                })
                .collect(),
        )
    }

    fn read_head(&self, file: &VPath, max: usize) -> Option<Vec<u8>> {
        let (f, _) = self.open(file).ok()?;
        let mut buf = Vec::new();
        f.take(max as u64).read_to_end(&mut buf).ok()?;
        Some(buf)
    }
}

/// A share that can be rescanned while connections read it: readers take the current
/// snapshot, a rescan swaps in a new one.
#[derive(Debug, Clone)]
pub struct Share {
    dir: PathBuf,
    inner: Arc<ShareInner>,
}

#[derive(Debug)]
struct ShareInner {
    snap: RwLock<(Arc<ShareIndex>, Instant)>,
    /// The background first scan, stopped when the last handle goes.
    first: Arc<ScanControl>,
    scanning: AtomicBool,
}

impl Drop for ShareInner {
    fn drop(&mut self) {
        self.first.cancel();
    }
}

impl Share {
    /// Scan `dir` (its contents at the top of the virtual tree) on a thread of its own.
    /// Waits up to [`FIRST_SCAN_WAIT`] for it; a scan still running then goes on in the
    /// background and readers see an empty share until it is done (the listener is not
    /// held up by a huge share). Fails only when `dir` is not a readable folder.
    pub fn open_single(dir: &Path) -> io::Result<Share> {
        let path = dir.canonicalize().map_err(|e| with_path(e, dir))?;
        if !path.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a folder", dir.display())));
        }
        let empty = ShareIndex::empty(vec![ShareRoot { name: String::new(), path }]);
        let inner = Arc::new(ShareInner {
            snap: RwLock::new((Arc::new(empty), Instant::now())),
            first: Arc::new(ScanControl::default()),
            scanning: AtomicBool::new(true),
        });
        let (ctl, weak, scan_dir) = (inner.first.clone(), Arc::downgrade(&inner), dir.to_path_buf());
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new().name("share-scan".into()).spawn(move || {
            let r = ShareIndex::scan_single_with(&scan_dir, &ctl);
            let Some(inner) = weak.upgrade() else { return };
            match r {
                Ok(idx) => *inner.snap.write().expect("share lock") = (Arc::new(idx), Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(dir = %scan_dir.display(), "cannot index the share: {e}")
                }
            }
            inner.scanning.store(false, Ordering::Release);
            let _ = done_tx.send(());
        })?;
        let _ = done_rx.recv_timeout(FIRST_SCAN_WAIT);
        Ok(Share { dir: dir.to_path_buf(), inner })
    }

    /// An empty share of `dir`, a folder that does not exist (yet): nothing is listed until
    /// a later refresh finds the folder. The folder is not created (an unmounted disk stays
    /// unmounted, a typo does not become a folder).
    pub fn missing(dir: &Path) -> Share {
        let empty = ShareIndex::empty(vec![ShareRoot { name: String::new(), path: dir.to_path_buf() }]);
        let inner = Arc::new(ShareInner {
            snap: RwLock::new((Arc::new(empty), Instant::now())),
            first: Arc::new(ScanControl::default()),
            scanning: AtomicBool::new(false),
        });
        Share { dir: dir.to_path_buf(), inner }
    }

    /// Whether the first scan is still running.
    pub fn is_scanning(&self) -> bool {
        self.inner.scanning.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<ShareIndex> {
        self.inner.snap.read().expect("share lock").0.clone()
    }

    /// Rescan if the snapshot is older than `max_age` (blocking: call from a blocking
    /// context). Returns the current snapshot. While the first scan runs, that is what
    /// it has (no second scan is started).
    pub fn refresh_if_older(&self, max_age: Duration) -> Arc<ShareIndex> {
        {
            let g = self.inner.snap.read().expect("share lock");
            if g.1.elapsed() < max_age || self.is_scanning() {
                return g.0.clone();
            }
        }
        match ShareIndex::scan_single(&self.dir) {
            Ok(idx) => {
                let idx = Arc::new(idx);
                *self.inner.snap.write().expect("share lock") = (idx.clone(), Instant::now());
                idx
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "rescan failed, keeping the old index: {e}");
                self.snapshot()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("share");
        std::fs::create_dir_all(share.join("music/sub")).unwrap();
        std::fs::write(share.join("readme.txt"), b"hello").unwrap();
        std::fs::write(share.join("music/Song.mp3"), vec![7u8; 1000]).unwrap();
        std::fs::write(t.path().join("secret.txt"), b"top secret").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(t.path().join("secret.txt"), share.join("escape.txt")).unwrap();
            std::os::unix::fs::symlink(t.path(), share.join("escape_dir")).unwrap();
            std::os::unix::fs::symlink(share.join("readme.txt"), share.join("inside_link.txt")).unwrap();
        }
        t
    }

    fn vp(s: &str) -> VPath {
        VPath::root().resolve(s).unwrap()
    }

    #[test]
    fn indexes_files_and_matches_case() {
        let t = tree();
        let idx = ShareIndex::scan_single(&t.path().join("share")).unwrap();
        let (p, kind) = idx.stat(&vp("MUSIC/song.MP3")).unwrap();
        assert_eq!(p.to_string(), "\\music\\Song.mp3");
        assert_eq!(kind, EntryKind::File { size: 1000 });
        assert_eq!(idx.stat(&VPath::root()).unwrap().1, EntryKind::Dir);
        assert_eq!(idx.read_head(&vp("readme.txt"), 3).unwrap(), b"hel");
        let names: Vec<String> = idx.list(&VPath::root()).unwrap().into_iter().map(|e| e.name).collect();
        assert!(names.contains(&"music".to_string()));
        assert!(idx.stat(&vp("readme.txt/x")).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_share_are_not_indexed() {
        let t = tree();
        let idx = ShareIndex::scan_single(&t.path().join("share")).unwrap();
        assert!(idx.stat(&vp("escape.txt")).is_none());
        assert!(idx.stat(&vp("escape_dir")).is_none());
        assert!(idx.stat(&vp("escape_dir/secret.txt")).is_none());
        assert!(idx.stat(&vp("inside_link.txt")).is_some());
        assert_eq!(idx.file_count(), 3);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_swapped_for_a_link_after_the_scan_is_not_opened() {
        let t = tree();
        let share = t.path().join("share");
        let idx = ShareIndex::scan_single(&share).unwrap();
        std::fs::remove_file(share.join("readme.txt")).unwrap();
        std::os::unix::fs::symlink(t.path().join("secret.txt"), share.join("readme.txt")).unwrap();
        let err = idx.open(&vp("readme.txt")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(idx.read_head(&vp("readme.txt"), 100).is_none());
    }

    #[test]
    fn several_roots_are_top_level_dirs() {
        let t = tree();
        let idx = ShareIndex::scan_roots(&[t.path().join("share"), t.path().join("share/music")]).unwrap();
        assert!(idx.stat(&vp("share/readme.txt")).is_some());
        assert!(idx.stat(&vp("music/Song.mp3")).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_walked_once() {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("share");
        std::fs::create_dir_all(share.join("loop")).unwrap();
        std::fs::create_dir_all(share.join("music")).unwrap();
        std::fs::write(share.join("real.txt"), b"real").unwrap();
        std::fs::write(share.join("music/a.mp3"), b"a").unwrap();
        std::os::unix::fs::symlink("..", share.join("loop/u1")).unwrap();
        std::os::unix::fs::symlink("..", share.join("loop/u2")).unwrap();
        // A link to a folder shared under its own name is a duplicate: skipped, and the
        // folder keeps its own path whichever the directory order.
        std::os::unix::fs::symlink("music", share.join("alias")).unwrap();
        // A link to a file inside the share is followed, as before.
        std::os::unix::fs::symlink("real.txt", share.join("real-link.txt")).unwrap();
        let ctl = ScanControl::default();
        let idx = ShareIndex::scan_single_with(&share, &ctl).unwrap();
        let mut files: Vec<String> = idx.files().iter().map(|(p, _)| p.to_string()).collect();
        files.sort();
        assert_eq!(files, ["\\music\\a.mp3", "\\real-link.txt", "\\real.txt"]);
        assert!(idx.stat(&vp("loop/u1")).is_none());
        assert!(idx.stat(&vp("alias")).is_none());
        assert_eq!(ctl.files(), 3);
        // The same through several roots.
        let idx = ShareIndex::scan_roots(std::slice::from_ref(&share)).unwrap();
        assert_eq!(idx.file_count(), 3);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_folder_not_otherwise_shared_is_followed() {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("share");
        // A folder whose own name cannot be served (a backslash) is reachable only
        // through the link: the link is walked (once), as before.
        std::fs::create_dir_all(share.join("back\\slash")).unwrap();
        std::fs::write(share.join("back\\slash/x.bin"), b"x").unwrap();
        std::os::unix::fs::symlink("back\\slash", share.join("shortcut")).unwrap();
        std::os::unix::fs::symlink("back\\slash", share.join("shortcut2")).unwrap();
        let idx = ShareIndex::scan_single(&share).unwrap();
        assert_eq!(idx.file_count(), 1);
        let linked = ["shortcut/x.bin", "shortcut2/x.bin"].iter().filter(|p| idx.stat(&vp(p)).is_some()).count();
        assert_eq!(linked, 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_cancelled_scan_stops() {
        let t = tree();
        let ctl = ScanControl::default();
        ctl.cancel();
        let err = ShareIndex::scan_roots_with(&[t.path().join("share")], &ctl).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn a_missing_root_is_left_out() {
        let t = tree();
        let idx = ShareIndex::scan_roots(&[t.path().join("nope"), t.path().join("share/music")]).unwrap();
        assert_eq!(idx.roots().len(), 1);
        assert!(idx.stat(&vp("music/Song.mp3")).is_some());
        assert!(!t.path().join("nope").exists());
    }
}
