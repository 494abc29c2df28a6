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
//!
//! The index is compact (one arena of names, one small record per file: size, modification
//! time, TTH once hashed; no path strings per file) and there is one for the node:
//! [`SharedIndex`] holds it for every network (NMDC's file list, searches, `$ADCGET` and
//! TTH lookups; Soulseek's searches, browsing and uploads), and a rescan replaces it whole.

use omnipeer_dcc::fserve::{DirEntry, EntryKind, ShareView, VPath};
use omnipeer_nmdc::tth::Tth;
use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Deepest directory nesting indexed below a root: a last guard (loops are cut first by
/// visiting each directory once, by device and inode).
pub const MAX_DEPTH: usize = 64;
/// Most entries (files and folders) indexed in all (a guard against runaway trees; it
/// also keeps the name arena's 32-bit offsets far from overflow: 255 bytes a name).
pub const MAX_ENTRIES: usize = 5_000_000;
/// How long [`Share::open_single`] waits for its first scan before it returns with an
/// empty index that the scan fills in the background (a small share is ready at once; a
/// huge or slow one does not hold up the listener).
pub const FIRST_SCAN_WAIT: Duration = Duration::from_secs(2);

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
    /// The folder holding the link.
    parent: u32,
    name: String,
    path: PathBuf,
    depth: usize,
}

/// One walk of one root.
struct Walk<'a> {
    ctl: &'a ScanControl,
    root: u32,
    root_path: PathBuf,
    visited: HashSet<(u64, u64)>,
    pending: VecDeque<PendingLink>,
    skipped: &'a mut Skipped,
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

/// A name in [`ShareIndex::names`]: offset and length.
#[derive(Debug, Clone, Copy)]
struct Span {
    off: u32,
    len: u32,
}

/// A folder of the index. Its files are one run of [`ShareIndex::files`], sorted by name;
/// its folders are listed by id, sorted by name.
#[derive(Debug, Clone)]
struct DirRec {
    name: Span,
    parent: u32,
    /// The root it lies under ([`NO_ROOT`] for the top of the virtual tree).
    root: u32,
    dirs: Vec<u32>,
    first_file: u32,
    file_count: u32,
}

/// The root of [`DirRec::root`] for the top of the tree.
const NO_ROOT: u32 = u32::MAX;
/// The top of the virtual tree, always folder 0.
const TOP: u32 = 0;

/// A file of the index: one record, its name in the arena, no path of its own (its real
/// path is its root's path and the names of the folders above it).
#[derive(Debug, Clone)]
struct FileRec {
    size: u64,
    mtime_ns: i64,
    name: Span,
    dir: u32,
    tth: Option<Tth>,
}

/// A file in the index, as [`ShareIndex::files`] lists it.
#[derive(Debug, Clone)]
pub struct FileNode {
    /// Where it is on disk.
    pub real: PathBuf,
    /// Size when scanned.
    pub size: u64,
    /// Modification time when scanned.
    pub mtime: Option<SystemTime>,
}

/// A file or folder found by a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(u32),
}

/// Nanoseconds since the Unix epoch of a file's modification time (0 when unknown): the
/// hash cache's key with the path and the size.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// An immutable snapshot of what the roots held when scanned: every path string in one
/// arena, one small record per file (size, modification time, TTH once hashed) and per
/// folder. Every network reads the same snapshot ([`SharedIndex`]).
#[derive(Debug, Clone)]
pub struct ShareIndex {
    roots: Vec<ShareRoot>,
    names: String,
    dirs: Vec<DirRec>,
    files: Vec<FileRec>,
    /// File ids sorted by TTH (files without one left out).
    by_tth: Vec<u32>,
    bytes: u64,
}

impl ShareIndex {
    fn empty(roots: Vec<ShareRoot>) -> ShareIndex {
        let top = DirRec {
            name: Span { off: 0, len: 0 },
            parent: TOP,
            root: NO_ROOT,
            dirs: Vec::new(),
            first_file: 0,
            file_count: 0,
        };
        ShareIndex { roots, names: String::new(), dirs: vec![top], files: Vec::new(), by_tth: Vec::new(), bytes: 0 }
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
        // The root's contents are the top's.
        idx.dirs[TOP as usize].root = 0;
        idx.walk_root(0, TOP, ctl, &mut skipped);
        idx.finish();
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
        let mut skipped = Skipped::default();
        let mut taken: HashSet<String> = HashSet::new();
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
            while taken.contains(&name) {
                name = format!("{base} ({n})");
                n += 1;
            }
            taken.insert(name.clone());
            idx.roots.push(ShareRoot { name: name.clone(), path });
            let root = (idx.roots.len() - 1) as u32;
            let dir = idx.add_dir(TOP, &name, root);
            idx.walk_root(root, dir, ctl, &mut skipped);
        }
        idx.finish();
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
        self.files.len()
    }

    /// Folders indexed (the top of the virtual tree not counted).
    pub fn dir_count(&self) -> usize {
        self.dirs.len() - 1
    }

    /// Bytes in all indexed files.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    fn name(&self, s: Span) -> &str {
        &self.names[s.off as usize..(s.off + s.len) as usize]
    }

    fn intern(&mut self, name: &str) -> Span {
        let off = self.names.len() as u32;
        self.names.push_str(name);
        Span { off, len: name.len() as u32 }
    }

    fn add_dir(&mut self, parent: u32, name: &str, root: u32) -> u32 {
        let name = self.intern(name);
        let id = self.dirs.len() as u32;
        self.dirs.push(DirRec { name, parent, root, dirs: Vec::new(), first_file: 0, file_count: 0 });
        self.dirs[parent as usize].dirs.push(id);
        id
    }

    /// Sort every folder's folders by name, give back spare capacity, index the hashes.
    fn finish(&mut self) {
        for i in 0..self.dirs.len() {
            let mut kids = std::mem::take(&mut self.dirs[i].dirs);
            kids.sort_by(|a, b| self.name(self.dir_name_span(*a)).cmp(self.name(self.dir_name_span(*b))));
            kids.shrink_to_fit();
            self.dirs[i].dirs = kids;
        }
        self.names.shrink_to_fit();
        self.files.shrink_to_fit();
        self.dirs.shrink_to_fit();
        self.index_hashes();
    }

    fn dir_name_span(&self, d: u32) -> Span {
        self.dirs[d as usize].name
    }

    /// Walk root `root` into folder `into`: its real folders first, then the links to
    /// folders that were not walked yet (each folder once, by device and inode).
    fn walk_root(&mut self, root: u32, into: u32, ctl: &ScanControl, skipped: &mut Skipped) {
        let root_path = self.roots[root as usize].path.clone();
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
        self.scan_dir(&mut w, &root_path, into, 0);
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
            let child = self.add_dir(link.parent, &link.name, root);
            self.scan_dir(&mut w, &link.path, child, link.depth);
        }
    }

    /// Index the folder `dir` (on disk) as folder `id`: its files first (one run of
    /// records), then its folders one by one.
    fn scan_dir(&mut self, w: &mut Walk<'_>, dir: &Path, id: u32, depth: usize) {
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
        let first = self.files.len();
        let mut subdirs: Vec<(String, PathBuf)> = Vec::new();
        for entry in rd.flatten() {
            if w.ctl.is_cancelled() {
                break;
            }
            if self.files.len() + self.dirs.len() >= MAX_ENTRIES {
                w.skipped.over_limit = true;
                break;
            }
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                tracing::debug!(path = %entry.path().display(), "skipping a name that is not UTF-8");
                w.skipped.bad_names += 1;
                continue;
            };
            if omnipeer_dcc::SafeName::new(name).is_err() {
                w.skipped.bad_names += 1;
                continue;
            }
            let Ok(ft) = entry.file_type() else { continue };
            let link = ft.is_symlink();
            if !link && ft.is_file() {
                // A plain file: its metadata comes with the entry, no path is built.
                let Ok(meta) = entry.metadata() else { continue };
                self.add_file(w, id, name, &meta);
                continue;
            }
            let path = entry.path();
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
            // A folder, or a link: its target's metadata.
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.is_dir() {
                if link {
                    w.pending.push_back(PendingLink { parent: id, name: name.to_owned(), path, depth: depth + 1 });
                    continue;
                }
                // A real folder seen before is a bind mount of an ancestor or a sibling.
                if let Some(did) = dir_id(&meta) {
                    if !w.visited.insert(did) {
                        tracing::debug!(path = %path.display(), "skipping a folder already shared (a bind mount?)");
                        w.skipped.seen_dirs += 1;
                        w.skipped.note(&path);
                        continue;
                    }
                }
                subdirs.push((name.to_owned(), path));
            } else if meta.is_file() {
                self.add_file(w, id, name, &meta);
            }
        }
        // This folder's files, sorted by name (they are one run: nothing else was added).
        let mut run = self.files.split_off(first);
        run.sort_by(|a, b| self.name(a.name).cmp(self.name(b.name)));
        self.files.append(&mut run);
        let d = &mut self.dirs[id as usize];
        d.first_file = first as u32;
        d.file_count = (self.files.len() - first) as u32;
        for (name, path) in subdirs {
            if w.ctl.is_cancelled() {
                return;
            }
            let child = self.add_dir(id, &name, w.root);
            self.scan_dir(w, &path, child, depth + 1);
        }
    }

    fn add_file(&mut self, w: &Walk<'_>, dir: u32, name: &str, meta: &std::fs::Metadata) {
        self.bytes += meta.len();
        w.ctl.files.fetch_add(1, Ordering::Relaxed);
        let name = self.intern(name);
        self.files.push(FileRec { size: meta.len(), mtime_ns: mtime_ns(meta), name, dir, tth: None });
    }

    /// The files of folder `d`.
    fn dir_files(&self, d: u32) -> std::ops::Range<u32> {
        let r = &self.dirs[d as usize];
        r.first_file..r.first_file + r.file_count
    }

    /// The child of folder `dir` called `c`: exact spelling first, then without regard to
    /// case (as mIRC users on Windows expect; the first such name in name order).
    fn child(&self, dir: u32, c: &str) -> Option<(Entry, Span)> {
        let d = &self.dirs[dir as usize];
        if let Ok(i) = d.dirs.binary_search_by(|&x| self.name(self.dir_name_span(x)).cmp(c)) {
            let x = d.dirs[i];
            return Some((Entry::Dir(x), self.dir_name_span(x)));
        }
        let files = &self.files[d.first_file as usize..(d.first_file + d.file_count) as usize];
        if let Ok(i) = files.binary_search_by(|f| self.name(f.name).cmp(c)) {
            return Some((Entry::File(d.first_file + i as u32), files[i].name));
        }
        let same = |k: &str| k.eq_ignore_ascii_case(c) || k.to_lowercase() == c.to_lowercase();
        let dir_hit = d.dirs.iter().map(|&x| (Entry::Dir(x), self.dir_name_span(x))).find(|(_, s)| same(self.name(*s)));
        let file_hit = self
            .dir_files(dir)
            .map(|i| (Entry::File(i), self.files[i as usize].name))
            .find(|(_, s)| same(self.name(*s)));
        match (dir_hit, file_hit) {
            (Some(a), Some(b)) => Some(if self.name(a.1) <= self.name(b.1) { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Look a path up component by component; the stored spelling comes back in `canon`.
    fn find_components<'a>(
        &self,
        components: impl Iterator<Item = &'a str>,
        mut canon: Option<&mut Vec<String>>,
    ) -> Option<Entry> {
        let mut at = Entry::Dir(TOP);
        for c in components {
            let Entry::Dir(dir) = at else { return None };
            let (e, name) = self.child(dir, c)?;
            if let Some(canon) = canon.as_deref_mut() {
                canon.push(self.name(name).to_owned());
            }
            at = e;
        }
        Some(at)
    }

    /// Find a path: exact spelling first, then without regard to case (as mIRC users on
    /// Windows expect). Returns the stored spelling.
    fn find(&self, path: &VPath) -> Option<(VPath, Entry)> {
        let mut canon = Vec::with_capacity(path.components().len());
        let e = self.find_components(path.components().iter().map(String::as_str), Some(&mut canon))?;
        Some((VPath::from_components(canon), e))
    }

    /// The file at a path from the network (`share\dir\name` or `/share/dir/name`, any
    /// case), looked up in the index only: a name that is not in it (`..` included) finds
    /// nothing.
    pub fn find_file(&self, path: &str) -> Option<u32> {
        match self.find_components(path.split(['\\', '/']).filter(|c| !c.is_empty()), None)? {
            Entry::File(f) => Some(f),
            Entry::Dir(_) => None,
        }
    }

    /// The names from the top down to folder `d` (the top itself has none).
    fn dir_names(&self, mut d: u32, out: &mut Vec<u32>) {
        out.clear();
        while d != TOP {
            out.push(d);
            d = self.dirs[d as usize].parent;
        }
        out.reverse();
    }

    /// Folder `d`'s virtual path, its names joined by `sep`, appended to `out`.
    pub fn write_dir_path(&self, d: u32, sep: char, out: &mut String) {
        let mut chain = Vec::new();
        self.dir_names(d, &mut chain);
        for (i, x) in chain.iter().enumerate() {
            if i > 0 {
                out.push(sep);
            }
            out.push_str(self.name(self.dir_name_span(*x)));
        }
    }

    /// File `f`'s virtual path, its names joined by `sep` (`share\dir\name` with `\`),
    /// appended to `out`.
    pub fn write_file_path(&self, f: u32, sep: char, out: &mut String) {
        let r = &self.files[f as usize];
        if r.dir != TOP {
            self.write_dir_path(r.dir, sep, out);
            out.push(sep);
        }
        out.push_str(self.name(r.name));
    }

    /// File `f`'s virtual path with `sep` between names.
    pub fn file_path(&self, f: u32, sep: char) -> String {
        let mut s = String::new();
        self.write_file_path(f, sep, &mut s);
        s
    }

    /// File `f`'s name.
    pub fn file_name(&self, f: u32) -> &str {
        self.name(self.files[f as usize].name)
    }

    /// File `f`'s size when scanned (or hashed).
    pub fn file_size(&self, f: u32) -> u64 {
        self.files[f as usize].size
    }

    /// File `f`'s modification time when scanned (ns since the epoch, 0 unknown).
    pub fn file_mtime_ns(&self, f: u32) -> i64 {
        self.files[f as usize].mtime_ns
    }

    /// File `f`'s TTH, once hashed.
    pub fn file_tth(&self, f: u32) -> Option<Tth> {
        self.files[f as usize].tth
    }

    /// The file whose TTH is `tth` (the first in path order when several are).
    pub fn by_tth(&self, tth: &Tth) -> Option<u32> {
        let i = self.by_tth.partition_point(|&f| self.files[f as usize].tth.as_ref() < Some(tth));
        let f = *self.by_tth.get(i)?;
        (self.files[f as usize].tth.as_ref() == Some(tth)).then_some(f)
    }

    /// Files that have a TTH.
    pub fn hashed_count(&self) -> usize {
        self.by_tth.len()
    }

    /// Set the hash of file `f` (and the size and time it was hashed at). Call
    /// [`ShareIndex::index_hashes`] when done.
    pub fn set_hash(&mut self, f: u32, tth: Tth, size: u64, mtime_ns: i64) {
        let r = &mut self.files[f as usize];
        self.bytes = self.bytes - r.size + size;
        r.size = size;
        r.mtime_ns = mtime_ns;
        r.tth = Some(tth);
    }

    /// Rebuild the lookup by TTH after [`ShareIndex::set_hash`].
    pub fn index_hashes(&mut self) {
        let mut by: Vec<u32> = (0..self.files.len() as u32).filter(|&f| self.files[f as usize].tth.is_some()).collect();
        // Stable: equal hashes keep path order, the first is found.
        by.sort_by_key(|&f| self.files[f as usize].tth);
        by.shrink_to_fit();
        self.by_tth = by;
    }

    /// File `f`'s root (canonical).
    pub fn file_root(&self, f: u32) -> &Path {
        let d = self.files[f as usize].dir;
        &self.roots[self.dirs[d as usize].root as usize].path
    }

    /// Where file `f` is on disk: its root's path, then the names below the root.
    pub fn real_path(&self, f: u32) -> PathBuf {
        let r = &self.files[f as usize];
        let mut chain = Vec::new();
        self.dir_names(r.dir, &mut chain);
        let root = self.dirs[r.dir as usize].root as usize;
        let mut p = self.roots[root].path.clone();
        // Under several roots the first folder is the root's own (named after it).
        let skip = usize::from(self.dirs[TOP as usize].root == NO_ROOT);
        for x in chain.iter().skip(skip) {
            p.push(self.name(self.dir_name_span(*x)));
        }
        p.push(self.name(r.name));
        p
    }

    /// Open file `f` for reading, re-checking that it still lies inside its root.
    pub fn open_file(&self, f: u32) -> io::Result<(File, u64)> {
        open_inside(&self.real_path(f), self.file_root(f))
    }

    /// Folders in depth-first name order (the top excluded): `(id, depth)`, depth 1 for a
    /// folder at the top.
    pub fn walk_dirs(&self) -> Vec<(u32, usize)> {
        let mut out = Vec::with_capacity(self.dirs.len());
        let mut stack: Vec<(u32, usize)> = self.dirs[TOP as usize].dirs.iter().rev().map(|&d| (d, 1)).collect();
        while let Some((d, depth)) = stack.pop() {
            out.push((d, depth));
            stack.extend(self.dirs[d as usize].dirs.iter().rev().map(|&c| (c, depth + 1)));
        }
        out
    }

    /// The files directly in folder `d` (`TOP` = 0 for the top), in name order.
    pub fn files_in(&self, d: u32) -> std::ops::Range<u32> {
        self.dir_files(d)
    }

    /// The folders directly in folder `d`, in name order.
    pub fn dirs_in(&self, d: u32) -> &[u32] {
        &self.dirs[d as usize].dirs
    }

    /// Folder `d`'s name.
    pub fn dir_name(&self, d: u32) -> &str {
        self.name(self.dir_name_span(d))
    }

    /// Every indexed file with its virtual path, depth first in name order.
    pub fn files(&self) -> Vec<(VPath, FileNode)> {
        let mut out = Vec::with_capacity(self.files.len());
        let mut emit = |f: u32| {
            let comps = self.file_path(f, '\\').split('\\').map(str::to_owned).collect();
            let r = &self.files[f as usize];
            let mtime = (r.mtime_ns != 0).then(|| UNIX_EPOCH + Duration::from_nanos(r.mtime_ns as u64));
            out.push((VPath::from_components(comps), FileNode { real: self.real_path(f), size: r.size, mtime }));
        };
        // Name order across folders and files of a folder alike (as a listing shows them).
        fn walk(idx: &ShareIndex, d: u32, emit: &mut dyn FnMut(u32)) {
            let mut kids: Vec<(&str, Entry)> =
                idx.dirs_in(d).iter().map(|&x| (idx.dir_name(x), Entry::Dir(x))).collect();
            kids.extend(idx.dir_files(d).map(|f| (idx.file_name(f), Entry::File(f))));
            kids.sort_by(|a, b| a.0.cmp(b.0));
            for (_, e) in kids {
                match e {
                    Entry::Dir(x) => walk(idx, x, emit),
                    Entry::File(f) => emit(f),
                }
            }
        }
        walk(self, TOP, &mut emit);
        out
    }

    /// Every directory's virtual path (the top excluded), depth first in name order.
    pub fn dirs(&self) -> Vec<VPath> {
        self.walk_dirs()
            .into_iter()
            .map(|(d, _)| {
                let mut s = String::new();
                self.write_dir_path(d, '\\', &mut s);
                VPath::from_components(s.split('\\').map(str::to_owned).collect())
            })
            .collect()
    }

    /// The indexed file at `path`, if it is one.
    pub fn file(&self, path: &VPath) -> Option<(VPath, FileNode)> {
        match self.find(path)? {
            (p, Entry::File(f)) => {
                let r = &self.files[f as usize];
                let mtime = (r.mtime_ns != 0).then(|| UNIX_EPOCH + Duration::from_nanos(r.mtime_ns as u64));
                Some((p, FileNode { real: self.real_path(f), size: r.size, mtime }))
            }
            _ => None,
        }
    }

    /// Open an indexed file for reading, re-checking that it still lies inside its root.
    pub fn open(&self, path: &VPath) -> io::Result<(File, u64)> {
        match self.find(path) {
            Some((_, Entry::File(f))) => self.open_file(f),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such file in the share")),
        }
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
        let (p, e) = self.find(path)?;
        let kind = match e {
            Entry::Dir(_) => EntryKind::Dir,
            Entry::File(f) => EntryKind::File { size: self.file_size(f) },
        };
        Some((p, kind))
    }

    fn list(&self, dir: &VPath) -> Option<Vec<DirEntry>> {
        let d = match self.find(dir)? {
            (_, Entry::Dir(d)) => d,
            _ => return None,
        };
        let mut out: Vec<DirEntry> = self
            .dirs_in(d)
            .iter()
            .map(|&x| DirEntry { name: self.dir_name(x).to_owned(), kind: EntryKind::Dir })
            .collect();
        out.extend(self.dir_files(d).map(|f| DirEntry {
            name: self.file_name(f).to_owned(),
            kind: EntryKind::File { size: self.file_size(f) },
        }));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Some(out)
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

/// The node's one share index, read by every network and replaced whole by a rescan:
/// readers take [`SharedIndex::current`] (an `Arc`, so a reader keeps the snapshot it
/// has while a new one is swapped in). One scan or hashing runs at a time. A rescan is
/// requested once ([`SharedIndex::request_rescan`]) and then carried out by whichever
/// network gets to it first ([`SharedIndex::rescan_if_requested`]); the others take its
/// snapshot instead of walking the folders again.
#[derive(Debug, Clone)]
pub struct SharedIndex {
    inner: Arc<SharedInner>,
}

#[derive(Debug)]
struct SharedInner {
    /// The folders walked; changed by [`SharedIndex::set_roots`] (the settings).
    roots: RwLock<Vec<PathBuf>>,
    current: RwLock<Arc<ShareIndex>>,
    /// One scan or hashing at a time.
    work: Mutex<()>,
    /// Snapshots published so far.
    generation: AtomicU64,
    /// Rescans requested so far.
    requested: AtomicU64,
    /// The requests the current snapshot answers (those made before its scan started).
    covered: AtomicU64,
    /// Where hashes are cached, once a network that needs TTHs asked for them: every
    /// rescan from then on hashes too.
    hash_db: Mutex<Option<PathBuf>>,
    /// How the current snapshot was hashed (what every network reports of it).
    stats: Mutex<crate::nmdc::share::HashStats>,
}

impl SharedIndex {
    /// An index of `roots` (each a top-level folder named after it), empty until
    /// [`SharedIndex::rescan`].
    pub fn new(roots: Vec<PathBuf>) -> SharedIndex {
        SharedIndex {
            inner: Arc::new(SharedInner {
                roots: RwLock::new(roots),
                current: RwLock::new(Arc::new(ShareIndex::empty(Vec::new()))),
                work: Mutex::new(()),
                generation: AtomicU64::new(0),
                requested: AtomicU64::new(0),
                covered: AtomicU64::new(0),
                hash_db: Mutex::new(None),
                stats: Mutex::default(),
            }),
        }
    }

    /// The folders shared.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.inner.roots.read().expect("share roots").clone()
    }

    /// Share these folders from the next rescan on (asked for by the caller).
    pub fn set_roots(&self, roots: Vec<PathBuf>) {
        *self.inner.roots.write().expect("share roots") = roots;
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<ShareIndex> {
        self.inner.current.read().expect("share index lock").clone()
    }

    /// Whether `other` is this same index (not a copy).
    pub fn same(&self, other: &SharedIndex) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn publish(&self, idx: ShareIndex, stats: crate::nmdc::share::HashStats) -> Arc<ShareIndex> {
        *self.inner.stats.lock().expect("hash stats") = stats;
        let idx = Arc::new(idx);
        *self.inner.current.write().expect("share index lock") = idx.clone();
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        idx
    }

    /// Ask for a rescan; [`SharedIndex::rescan_if_requested`] carries it out.
    pub fn request_rescan(&self) {
        self.inner.requested.fetch_add(1, Ordering::AcqRel);
    }

    /// Walk the roots again (and hash what the cache does not know, once hashes were
    /// asked for) and publish the new snapshot. Blocking: call from a blocking thread.
    pub fn rescan(&self, ctl: &ScanControl) -> anyhow::Result<Arc<ShareIndex>> {
        self.request_rescan();
        self.rescan_if_requested_with(ctl)
    }

    /// Carry out the rescans requested so far, unless a scan that started after them
    /// already did: then its snapshot is returned (the networks each ask, one walks).
    /// Blocking.
    pub fn rescan_if_requested(&self) -> anyhow::Result<Arc<ShareIndex>> {
        self.rescan_if_requested_with(&ScanControl::default())
    }

    fn rescan_if_requested_with(&self, ctl: &ScanControl) -> anyhow::Result<Arc<ShareIndex>> {
        let _one = self.inner.work.lock().expect("share work lock");
        // Requests made from now on wait for the next scan.
        let want = self.inner.requested.load(Ordering::Acquire);
        if self.inner.covered.load(Ordering::Acquire) >= want {
            return Ok(self.current());
        }
        let roots = self.roots();
        let mut idx = ShareIndex::scan_roots_with(&roots, ctl)?;
        let db = self.inner.hash_db.lock().expect("hash db").clone();
        let mut stats = crate::nmdc::share::HashStats::default();
        if let Some(db) = db {
            let mut store = crate::store::Store::open(&db)?;
            stats = crate::nmdc::share::hash_index(&mut idx, &mut store)?;
        }
        self.inner.covered.store(want, Ordering::Release);
        Ok(self.publish(idx, stats))
    }

    /// The current snapshot, after a first scan if none ran yet.
    pub fn scanned(&self) -> anyhow::Result<Arc<ShareIndex>> {
        if self.inner.generation.load(Ordering::Acquire) == 0 {
            return self.rescan(&ScanControl::default());
        }
        Ok(self.current())
    }

    /// The current snapshot with every file hashed: what the hash cache in `db` (SQLite,
    /// keyed by path, size and modification time) does not know is hashed now, and every
    /// later rescan hashes too. The new snapshot replaces the current one for every
    /// network. Blocking.
    pub fn hashed(&self, db: &Path) -> anyhow::Result<(Arc<ShareIndex>, crate::nmdc::share::HashStats)> {
        self.scanned()?;
        *self.inner.hash_db.lock().expect("hash db") = Some(db.to_path_buf());
        let _one = self.inner.work.lock().expect("share work lock");
        let cur = self.current();
        if cur.hashed_count() == cur.file_count() {
            // Hashed already (by the rescan that made it): its figures.
            let stats = *self.inner.stats.lock().expect("hash stats");
            return Ok((cur, stats));
        }
        let mut idx = (*cur).clone();
        drop(cur);
        let mut store = crate::store::Store::open(db)?;
        let stats = crate::nmdc::share::hash_index(&mut idx, &mut store)?;
        Ok((self.publish(idx, stats), stats))
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

    /// A path from the network resolves only through the index: `..`, absolute paths and
    /// names the scan did not index find nothing, and a file's real path is its root's
    /// path and its names below it (the root's own top-level name, e.g. `music (2)`, is
    /// not on disk).
    #[test]
    fn network_paths_resolve_only_through_the_index() {
        let t = tree();
        let idx = ShareIndex::scan_roots(&[t.path().join("share"), t.path().join("share/music")]).unwrap();
        for bad in ["share\\..\\secret.txt", "../secret.txt", "/etc/passwd", "share/../../secret.txt", "share", ""] {
            assert_eq!(idx.find_file(bad), None, "{bad}");
        }
        let f = idx.find_file("/SHARE/music/song.mp3").unwrap();
        assert_eq!(idx.file_path(f, '\\'), "share\\music\\Song.mp3");
        assert_eq!(idx.real_path(f), t.path().join("share/music/Song.mp3").canonicalize().unwrap());
        let g = idx.find_file("music\\Song.mp3").unwrap();
        assert_ne!(f, g);
        assert_eq!(idx.real_path(g), idx.real_path(f));
        assert_eq!(idx.open_file(g).unwrap().1, 1000);
        // One root, its contents at the top.
        let one = ShareIndex::scan_single(&t.path().join("share")).unwrap();
        let r = one.find_file("readme.txt").unwrap();
        assert_eq!(one.real_path(r), t.path().join("share/readme.txt").canonicalize().unwrap());
    }
}
