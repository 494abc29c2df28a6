//! The share index: virtual paths (lists of names) mapped to real files under the share
//! roots.
//!
//! A path from the network is never joined to a root as a string. It is looked up
//! component by component in this index, which holds only what a scan found inside a root;
//! symlinks are followed only when their target lies inside the same root, and files are
//! re-checked against the root when they are opened, so `..`, absolute paths and symlinks
//! cannot lead outside.

use omnipeer_dcc::fserve::{DirEntry, EntryKind, ShareView, VPath};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Deepest directory nesting indexed below a root.
pub const MAX_DEPTH: usize = 64;
/// Most entries indexed in all (a guard against runaway trees).
pub const MAX_ENTRIES: usize = 5_000_000;

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

/// An immutable snapshot of what the roots held when scanned.
#[derive(Debug)]
pub struct ShareIndex {
    roots: Vec<ShareRoot>,
    top: DirNode,
    files: usize,
    bytes: u64,
}

impl ShareIndex {
    /// Index one folder whose contents appear at the top of the virtual tree (the DCC
    /// fserve home directory).
    pub fn scan_single(dir: &Path) -> io::Result<ShareIndex> {
        let path = dir.canonicalize().map_err(|e| with_path(e, dir))?;
        let mut idx = ShareIndex {
            roots: vec![ShareRoot { name: String::new(), path: path.clone() }],
            top: DirNode::default(),
            files: 0,
            bytes: 0,
        };
        let mut top = DirNode::default();
        idx.scan_dir(0, &path, &mut top, 0);
        idx.top = top;
        Ok(idx)
    }

    /// Index several folders, each a top-level virtual directory named after the folder.
    pub fn scan_roots(dirs: &[PathBuf]) -> io::Result<ShareIndex> {
        let mut idx = ShareIndex { roots: Vec::new(), top: DirNode::default(), files: 0, bytes: 0 };
        let mut top = DirNode::default();
        for d in dirs {
            let path = d.canonicalize().map_err(|e| with_path(e, d))?;
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("share").to_owned();
            let mut name = base.clone();
            let mut n = 2;
            while top.children.contains_key(&name) {
                name = format!("{base} ({n})");
                n += 1;
            }
            idx.roots.push(ShareRoot { name: name.clone(), path: path.clone() });
            let mut node = DirNode::default();
            idx.scan_dir(idx.roots.len() - 1, &path, &mut node, 0);
            top.children.insert(name, Node::Dir(node));
        }
        idx.top = top;
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

    fn scan_dir(&mut self, root: usize, dir: &Path, node: &mut DirNode, depth: usize) {
        if depth >= MAX_DEPTH {
            tracing::warn!(dir = %dir.display(), "share nested deeper than {MAX_DEPTH}: not indexed further");
            return;
        }
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot read shared folder: {e}");
                return;
            }
        };
        for entry in rd.flatten() {
            if self.files >= MAX_ENTRIES {
                tracing::warn!("share holds more than {MAX_ENTRIES} entries: the rest is not indexed");
                return;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::debug!(path = %entry.path().display(), "skipping a name that is not UTF-8");
                continue;
            };
            if omnipeer_dcc::SafeName::new(&name).is_err() {
                continue;
            }
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_symlink() {
                // Follow a link only to somewhere inside the same root.
                match path.canonicalize() {
                    Ok(target) if target.starts_with(&self.roots[root].path) => {}
                    _ => {
                        tracing::debug!(path = %path.display(), "skipping a symlink that leads outside the share");
                        continue;
                    }
                }
            }
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.is_dir() {
                let mut child = DirNode::default();
                self.scan_dir(root, &path, &mut child, depth + 1);
                node.children.insert(name, Node::Dir(child));
            } else if meta.is_file() {
                self.files += 1;
                self.bytes += meta.len();
                node.children.insert(
                    name,
                    Node::File(FileNode { real: path, size: meta.len(), mtime: meta.modified().ok(), root }),
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
                None => dir.children.iter().find(|(k, _)| k.eq_ignore_ascii_case(c) || k.to_lowercase() == c.to_lowercase())?,
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
        let (_, f) = self
            .file(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file in the share"))?;
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
    inner: Arc<RwLock<(Arc<ShareIndex>, Instant)>>,
}

impl Share {
    /// Scan `dir` (its contents at the top of the virtual tree).
    pub fn open_single(dir: &Path) -> io::Result<Share> {
        let idx = ShareIndex::scan_single(dir)?;
        Ok(Share { dir: dir.to_path_buf(), inner: Arc::new(RwLock::new((Arc::new(idx), Instant::now()))) })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<ShareIndex> {
        self.inner.read().expect("share lock").0.clone()
    }

    /// Rescan if the snapshot is older than `max_age` (blocking: call from a blocking
    /// context). Returns the current snapshot.
    pub fn refresh_if_older(&self, max_age: Duration) -> Arc<ShareIndex> {
        {
            let g = self.inner.read().expect("share lock");
            if g.1.elapsed() < max_age {
                return g.0.clone();
            }
        }
        match ShareIndex::scan_single(&self.dir) {
            Ok(idx) => {
                let idx = Arc::new(idx);
                *self.inner.write().expect("share lock") = (idx.clone(), Instant::now());
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
}
