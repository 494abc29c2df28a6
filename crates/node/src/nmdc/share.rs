//! What a Direct Connect client shares: its view of the node's one share index
//! ([`crate::share::ShareIndex`], which Soulseek reads too), every file's Tiger tree hash
//! (computed once, on every core at once, and cached in SQLite by path, size and
//! modification time), lookups by TTH and by share path, search matching, and the
//! `files.xml.bz2` file list.

use crate::share::{ShareIndex, SharedIndex};
use crate::store::{CachedHash, Store};
use anyhow::Context;
use omnipeer_nmdc::command::SearchQuery;
use omnipeer_nmdc::filelist::{Directory, File as ListFile, FileList};
use omnipeer_nmdc::search::Matcher;
use omnipeer_nmdc::tth::{TigerTree, Tth};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Bytes read at once while hashing.
const HASH_CHUNK: usize = 1 << 20;
/// Hashes written to the cache in one transaction while a share is hashed (a crash
/// loses at most this many).
const HASH_COMMIT_EVERY: usize = 512;

/// One shared file: a view into the index.
#[derive(Debug, Clone, Copy)]
pub struct SharedFile<'a> {
    index: &'a ShareIndex,
    id: u32,
    /// Size when hashed.
    pub size: u64,
    /// Tiger tree hash root.
    pub tth: Tth,
}

impl SharedFile<'_> {
    /// The path as NMDC shows it (`share\dir\name`).
    pub fn nmdc_path(&self) -> String {
        self.index.file_path(self.id, '\\')
    }

    /// Where it is on disk.
    pub fn real(&self) -> PathBuf {
        self.index.real_path(self.id)
    }
}

/// A hashed share: the node's index (files with a TTH) and the file list made from it.
#[derive(Debug)]
pub struct DcShare {
    index: Arc<ShareIndex>,
    cid: String,
    /// `files.xml.bz2`, compressed on a thread of its own (bzip2 over a big share's list
    /// takes about a second: not on the way to the login); a request that comes first
    /// waits for it.
    filelist: Arc<std::sync::OnceLock<Arc<Vec<u8>>>>,
    files: usize,
    total: u64,
}

/// How many files hashing found, and how many came from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Files shared.
    pub files: usize,
    /// Files whose hash came from the cache.
    pub cached: usize,
    /// Bytes hashed now.
    pub hashed_bytes: u64,
    /// Files hashed now.
    pub hashed: usize,
    /// Hashing threads that ran (one per core, at most one per file to hash).
    pub threads: usize,
    /// Milliseconds it all took.
    pub millis: u64,
}

impl HashStats {
    /// Log these figures as `what`.
    pub fn log(&self, what: &str) {
        tracing::info!(
            files = self.files,
            cached = self.cached,
            hashed = self.hashed,
            hashed_mib = self.hashed_bytes >> 20,
            threads = self.threads,
            secs = self.millis as f64 / 1000.0,
            "{what}"
        );
    }
}

/// Hash a file (root and the `tthl` level DC++ sends).
pub fn hash_file(path: &Path) -> anyhow::Result<CachedHash> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = f.metadata()?.len();
    let mut tree = TigerTree::for_file_size(size);
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        tree.update(&buf[..n]);
    }
    let r = tree.finish();
    Ok(CachedHash { tth: r.root.0, block_size: r.block_size, tthl: r.tthl() })
}

/// Hashing threads: one per core.
pub fn hash_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Give every file of `idx` its TTH: from the cache in `store` when the file still has the
/// size and modification time it was hashed at (one query for the whole share), else
/// hashed now on [`hash_threads`] threads at once (new hashes go to the cache).
pub fn hash_index(idx: &mut ShareIndex, store: &mut Store) -> anyhow::Result<HashStats> {
    hash_index_with(idx, store, hash_threads())
}

/// [`hash_index`] with `threads` hashing threads.
pub fn hash_index_with(idx: &mut ShareIndex, store: &mut Store, threads: usize) -> anyhow::Result<HashStats> {
    let started = Instant::now();
    let mut stats = HashStats::default();
    // The cache, matched by (size, mtime) first: a path is built only for the few files
    // that have the same size and time as a cached row.
    let todo: Vec<u32> = (0..idx.file_count() as u32).filter(|&f| idx.file_tth(f).is_none()).collect();
    let mut by_key: HashMap<(u64, i64), Vec<u32>> = HashMap::with_capacity(todo.len());
    for &f in &todo {
        by_key.entry((idx.file_size(f), idx.file_mtime_ns(f))).or_default().push(f);
    }
    let mut found: Vec<(u32, Tth)> = Vec::new();
    store.for_each_cached_root(|path, size, mtime, tth| {
        let Some(cands) = by_key.get(&(size, mtime)) else { return };
        for &f in cands {
            if idx.real_path(f).to_string_lossy() == path {
                found.push((f, Tth(tth)));
            }
        }
    })?;
    drop(by_key);
    for &(f, tth) in &found {
        let (size, mtime) = (idx.file_size(f), idx.file_mtime_ns(f));
        idx.set_hash(f, tth, size, mtime);
    }
    stats.cached = found.len();
    drop(found);
    let todo: Vec<(u32, PathBuf)> =
        todo.into_iter().filter(|&f| idx.file_tth(f).is_none()).map(|f| (f, idx.real_path(f))).collect();
    stats.threads = threads.max(1).min(todo.len());
    if !todo.is_empty() {
        let next = AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel::<(u32, anyhow::Result<(CachedHash, u64, i64)>)>();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            for _ in 0..stats.threads {
                let (tx, next, todo) = (tx.clone(), &next, &todo);
                std::thread::Builder::new().name("share-hash".into()).spawn_scoped(scope, move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((f, path)) = todo.get(i) else { return };
                    let r = std::fs::metadata(path).map_err(anyhow::Error::from).and_then(|meta| {
                        let h = hash_file(path)?;
                        Ok((h, meta.len(), crate::share::mtime_ns(&meta)))
                    });
                    if tx.send((*f, r)).is_err() {
                        return;
                    }
                })?;
            }
            drop(tx);
            let mut batch = Vec::with_capacity(HASH_COMMIT_EVERY);
            for (f, r) in rx {
                match r {
                    Ok((h, size, mtime)) => {
                        stats.hashed += 1;
                        stats.hashed_bytes += size;
                        idx.set_hash(f, Tth(h.tth), size, mtime);
                        batch.push((idx.real_path(f).to_string_lossy().into_owned(), size, mtime, h));
                        if batch.len() >= HASH_COMMIT_EVERY {
                            store.store_hashes(&batch)?;
                            batch.clear();
                        }
                    }
                    Err(e) => tracing::warn!("not shared on NMDC: {e:#}"),
                }
            }
            store.store_hashes(&batch)?;
            Ok(())
        })?;
    }
    idx.index_hashes();
    stats.files = idx.hashed_count();
    stats.millis = started.elapsed().as_millis() as u64;
    Ok(stats)
}

impl DcShare {
    /// Scan `roots` (each a top-level directory named after it), hash what the cache does
    /// not know, and build the file list. Blocking: run on a blocking thread. (The node
    /// shares one index between its networks: [`DcShare::from_shared`].)
    pub fn build(roots: &[PathBuf], store: &mut Store, cid: &str) -> anyhow::Result<(DcShare, HashStats)> {
        let mut index = ShareIndex::scan_roots(roots).context("cannot index the share")?;
        let stats = hash_index(&mut index, store)?;
        let share = DcShare::from_index(Arc::new(index), cid)?;
        Ok((share, stats))
    }

    /// The share of the node's index `shared`, hashed (the cache is in the SQLite file
    /// `db`): the same snapshot every other network reads. With `rescan`, a rescan
    /// requested of the index is carried out first (unless another network did).
    /// Blocking.
    pub fn from_shared(
        shared: &SharedIndex,
        db: &Path,
        cid: &str,
        rescan: bool,
    ) -> anyhow::Result<(DcShare, HashStats)> {
        if rescan {
            shared.rescan_if_requested()?;
        }
        let (index, stats) = shared.hashed(db)?;
        Ok((DcShare::from_index(index, cid)?, stats))
    }

    /// The share of a hashed index (files without a TTH are left out).
    pub fn from_index(index: Arc<ShareIndex>, cid: &str) -> anyhow::Result<DcShare> {
        let (mut files, mut total) = (0, 0);
        for f in 0..index.file_count() as u32 {
            if index.file_tth(f).is_some() {
                files += 1;
                total += index.file_size(f);
            }
        }
        let share = DcShare { index, cid: cid.to_owned(), filelist: Arc::default(), files, total };
        let (lock, index, cid) = (share.filelist.clone(), share.index.clone(), share.cid.clone());
        let _ = std::thread::Builder::new().name("filelist".into()).spawn(move || {
            lock.get_or_init(|| make_filelist(&index, &cid));
        });
        Ok(share)
    }

    /// The index this share reads.
    pub fn index(&self) -> &Arc<ShareIndex> {
        &self.index
    }

    fn file(&self, id: u32) -> Option<SharedFile<'_>> {
        let tth = self.index.file_tth(id)?;
        Some(SharedFile { index: &self.index, id, size: self.index.file_size(id), tth })
    }

    /// Files shared (those with a TTH), in path order.
    pub fn files(&self) -> Vec<SharedFile<'_>> {
        (0..self.index.file_count() as u32).filter_map(|f| self.file(f)).collect()
    }

    /// How many files are shared.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// Bytes shared.
    pub fn total_size(&self) -> u64 {
        self.total
    }

    /// `files.xml.bz2` (made on the first call).
    pub fn filelist_bz2(&self) -> Arc<Vec<u8>> {
        self.filelist.get_or_init(|| make_filelist(&self.index, &self.cid)).clone()
    }

    /// The file with this root.
    pub fn by_tth(&self, tth: &Tth) -> Option<SharedFile<'_>> {
        self.file(self.index.by_tth(tth)?)
    }

    /// The file at this share path (`share\dir\name` or `/share/dir/name`, any case),
    /// found through the index only.
    pub fn by_path(&self, path: &str) -> Option<SharedFile<'_>> {
        self.file(self.index.find_file(path)?)
    }

    /// Files and directories matching a search, at most `max`.
    pub fn search(&self, query: &SearchQuery, max: usize) -> (Vec<SharedFile<'_>>, Vec<String>) {
        let m = Matcher::new(query);
        if let Some(root) = query.tth_root() {
            return (self.by_tth(&root).into_iter().collect(), Vec::new());
        }
        let mut files = Vec::new();
        let mut path = String::new();
        for f in 0..self.index.file_count() as u32 {
            if files.len() >= max {
                break;
            }
            let Some(sf) = self.file(f) else { continue };
            path.clear();
            self.index.write_file_path(f, '\\', &mut path);
            if m.matches_file(&path, sf.size, &sf.tth) {
                files.push(sf);
            }
        }
        let mut dirs = Vec::new();
        for (d, _) in self.index.walk_dirs() {
            if files.len() + dirs.len() >= max {
                break;
            }
            path.clear();
            self.index.write_dir_path(d, '\\', &mut path);
            if m.matches_dir(&path) {
                dirs.push(path.clone());
            }
        }
        (files, dirs)
    }

    /// Open a shared file for reading, re-checking it still lies inside its root and still
    /// has the size it was hashed at.
    pub fn open(&self, f: SharedFile<'_>) -> std::io::Result<(std::fs::File, u64)> {
        let (file, size) = self.index.open_file(f.id)?;
        if size != f.size {
            return Err(std::io::Error::other("the file changed since it was hashed"));
        }
        Ok((file, size))
    }

    /// The `tthl` payload of a file, from the cache.
    pub fn tthl(&self, store: &Store, f: SharedFile<'_>) -> anyhow::Result<Vec<u8>> {
        let real = f.real();
        let meta = std::fs::metadata(&real)?;
        match store.cached_hash(&real.to_string_lossy(), meta.len(), crate::share::mtime_ns(&meta))? {
            Some(h) => Ok(h.tthl),
            None => Ok(hash_file(&real)?.tthl),
        }
    }
}

/// `files.xml.bz2` of the hashed files of `index`.
fn make_filelist(index: &ShareIndex, cid: &str) -> Arc<Vec<u8>> {
    Arc::new(build_list(index, cid).to_bz2().unwrap_or_else(|e| {
        // Writing to memory fails only if bzip2 itself does.
        tracing::warn!("cannot write the file list: {e:#}");
        Vec::new()
    }))
}

/// The file list of the hashed files of `index`, folder by folder.
fn build_list(index: &ShareIndex, cid: &str) -> FileList {
    fn files(index: &ShareIndex, d: u32) -> Vec<ListFile> {
        index
            .files_in(d)
            .filter_map(|f| {
                Some(ListFile {
                    name: index.file_name(f).to_owned(),
                    size: index.file_size(f),
                    tth: index.file_tth(f)?,
                })
            })
            .collect()
    }
    fn dir(index: &ShareIndex, d: u32) -> Directory {
        Directory {
            name: index.dir_name(d).to_owned(),
            incomplete: false,
            dirs: index.dirs_in(d).iter().map(|&c| dir(index, c)).collect(),
            files: files(index, d),
        }
    }
    let mut list = FileList::new(cid);
    list.generator = Some(format!("omnipeer {}", env!("CARGO_PKG_VERSION")));
    list.dirs = index.dirs_in(0).iter().map(|&c| dir(index, c)).collect();
    list.files = files(index, 0);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_once_then_from_the_cache_and_finds_files() {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("pub");
        std::fs::create_dir_all(share.join("music")).unwrap();
        std::fs::write(share.join("hello world.txt"), b"hello world\n").unwrap();
        std::fs::write(share.join("music/zeros.bin"), vec![0u8; 1 << 20]).unwrap();
        let mut store = Store::open(&t.path().join("state.sqlite")).unwrap();
        let (s, stats) = DcShare::build(std::slice::from_ref(&share), &mut store, "CID").unwrap();
        assert_eq!((stats.files, stats.cached), (2, 0));
        // Vectors of docs/protocols/nmdc.md#test-vectors (re-checked with RHash).
        let hello = s.by_path("pub\\hello world.txt").unwrap();
        assert_eq!(hello.tth.to_base32(), "KND4PAISRXWKPFWNUC5NJDGCX2ON77YTRMEVWBQ");
        let zeros = Tth::from_base32("MUACEID6UTVUKTRE2MTZKOPTZTMS6A2OF6B4ZNY").unwrap();
        assert_eq!(s.by_tth(&zeros).unwrap().nmdc_path(), "pub\\music\\zeros.bin");
        assert!(s.by_path("/PUB/Music/ZEROS.bin").is_some());
        // A second scan hashes nothing.
        let (s2, stats) = DcShare::build(std::slice::from_ref(&share), &mut store, "CID").unwrap();
        assert_eq!((stats.files, stats.cached, stats.hashed_bytes), (2, 2, 0));
        // The file list round-trips and carries the hashes.
        let list = FileList::from_bz2(&s2.filelist_bz2()).unwrap();
        let names: Vec<(String, u64)> = list.files().iter().map(|(p, f)| (p.clone(), f.size)).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().any(|(p, sz)| p.ends_with("zeros.bin") && *sz == 1 << 20), "{names:?}");
        // Search by words and by TTH.
        let (hits, dirs) = s2.search(&SearchQuery::text("hello"), 10);
        assert_eq!(hits.len(), 1);
        assert!(dirs.is_empty());
        let (hits, _) = s2.search(&SearchQuery::tth(&zeros), 10);
        assert_eq!(hits[0].size, 1 << 20);
        let (_, dirs) = s2.search(&SearchQuery::text("music"), 10);
        assert_eq!(dirs, vec!["pub\\music"]);
        // A changed file is hashed again.
        std::fs::write(share.join("hello world.txt"), b"changed").unwrap();
        let (_, stats) = DcShare::build(&[share], &mut store, "CID").unwrap();
        assert_eq!(stats.cached, 1);
    }

    fn files(dir: &Path, n: usize) {
        for i in 0..n {
            // Different sizes and contents, some over a leaf group and a `tthl` block.
            let body: Vec<u8> = (0..(i * 7919 + 100)).map(|b| (b as u32).wrapping_mul(i as u32 + 3) as u8).collect();
            std::fs::write(dir.join(format!("f{i}.bin")), body).unwrap();
        }
    }

    /// New files are hashed by a pool of threads, one per core (here four, asked for
    /// explicitly), to the same roots as one file after another.
    #[test]
    fn new_files_are_hashed_on_several_threads_to_the_same_roots() {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("pub");
        std::fs::create_dir_all(&share).unwrap();
        files(&share, 12);
        let mut store = Store::open(&t.path().join("state.sqlite")).unwrap();
        let mut idx = ShareIndex::scan_roots(std::slice::from_ref(&share)).unwrap();
        let stats = hash_index_with(&mut idx, &mut store, 4).unwrap();
        assert_eq!((stats.files, stats.hashed, stats.cached, stats.threads), (12, 12, 0, 4));
        for f in 0..idx.file_count() as u32 {
            assert_eq!(idx.file_tth(f).unwrap().0, hash_file(&idx.real_path(f)).unwrap().tth);
            assert_eq!(idx.by_tth(&idx.file_tth(f).unwrap()), Some(f));
        }
        // The default pool is one thread per core.
        let mut idx = ShareIndex::scan_roots(std::slice::from_ref(&share)).unwrap();
        let mut store = Store::open(&t.path().join("other.sqlite")).unwrap();
        let stats = hash_index(&mut idx, &mut store).unwrap();
        assert_eq!(stats.threads, hash_threads().min(12));
    }

    /// A restart walks the share again but hashes nothing that did not change: each
    /// unchanged file's root comes from the cache (a root planted there is what the index
    /// then holds), and only a changed file is read.
    #[test]
    fn a_restart_takes_unchanged_files_from_the_cache_and_hashes_only_changed_ones() {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("pub");
        std::fs::create_dir_all(&share).unwrap();
        files(&share, 3);
        let db = t.path().join("state.sqlite");
        let shared = SharedIndex::new(vec![share.clone()]);
        let (first, stats) = shared.hashed(&db).unwrap();
        assert_eq!((stats.hashed, stats.cached), (3, 0));
        // Plant a root for f0 at its path, size and time.
        let f0 = first.find_file("pub\\f0.bin").unwrap();
        let planted = CachedHash { tth: [7; 24], block_size: 65536, tthl: vec![7; 24] };
        let store = Store::open(&db).unwrap();
        store
            .store_hash(&first.real_path(f0).to_string_lossy(), first.file_size(f0), first.file_mtime_ns(f0), &planted)
            .unwrap();
        // f2 changes (another size).
        std::fs::write(share.join("f2.bin"), b"changed").unwrap();
        // The restart: a new index of the same folders.
        let restarted = SharedIndex::new(vec![share.clone()]);
        let (idx, stats) = restarted.hashed(&db).unwrap();
        assert_eq!((stats.files, stats.cached, stats.hashed), (3, 2, 1));
        assert_eq!(idx.file_tth(idx.find_file("pub/f0.bin").unwrap()), Some(Tth([7; 24])));
        let f2 = idx.find_file("pub/F2.BIN").unwrap();
        assert_eq!(idx.file_tth(f2).unwrap().0, hash_file(&share.join("f2.bin")).unwrap().tth);
        assert_eq!(idx.file_size(f2), 7);
    }
}
