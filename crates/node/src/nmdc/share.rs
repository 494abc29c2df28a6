//! What a Direct Connect client shares: the share index, every file's Tiger tree hash
//! (computed once and cached in SQLite by path, size and modification time), lookups by
//! TTH and by share path, search matching, and the `files.xml.bz2` file list.

use crate::share::ShareIndex;
use crate::store::{CachedHash, Store};
use anyhow::Context;
use omnipeer_dcc::fserve::VPath;
use omnipeer_nmdc::command::SearchQuery;
use omnipeer_nmdc::filelist::{Directory, File as ListFile, FileList};
use omnipeer_nmdc::search::Matcher;
use omnipeer_nmdc::tth::{TigerTree, Tth};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Bytes read at once while hashing.
const HASH_CHUNK: usize = 1 << 20;

/// One shared file.
#[derive(Debug, Clone)]
pub struct SharedFile {
    /// Its virtual path (first component: the share root's name).
    pub vpath: VPath,
    /// Where it is on disk.
    pub real: PathBuf,
    /// The root it is under (canonical), re-checked when opened.
    pub root: PathBuf,
    /// Size when hashed.
    pub size: u64,
    /// Tiger tree hash root.
    pub tth: Tth,
}

impl SharedFile {
    /// The path as NMDC shows it (`share\dir\name`).
    pub fn nmdc_path(&self) -> String {
        self.vpath.components().join("\\")
    }
}

/// A hashed share.
#[derive(Debug)]
pub struct DcShare {
    files: Vec<SharedFile>,
    dirs: Vec<String>,
    by_tth: HashMap<Tth, usize>,
    by_path: HashMap<String, usize>,
    filelist: Arc<Vec<u8>>,
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
}

fn path_key(p: &str) -> String {
    p.trim_start_matches(['/', '\\']).replace('/', "\\").to_lowercase()
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as i64).unwrap_or(0)
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

impl DcShare {
    /// Scan `roots` (each a top-level directory named after it), hash what the cache does
    /// not know, and build the file list. Blocking: run on a blocking thread.
    pub fn build(roots: &[PathBuf], store: &mut Store, cid: &str) -> anyhow::Result<(DcShare, HashStats)> {
        let index = ShareIndex::scan_roots(roots).context("cannot index the share")?;
        let mut stats = HashStats::default();
        let mut files = Vec::new();
        let root_paths: Vec<(String, PathBuf)> =
            index.roots().iter().map(|r| (r.name.clone(), r.path.clone())).collect();
        store.batch(|store| {
            for (vpath, node) in index.files() {
                let Ok(meta) = std::fs::metadata(&node.real) else { continue };
                let key = node.real.to_string_lossy().into_owned();
                let mt = mtime_ns(&meta);
                let hash = match store.cached_hash(&key, meta.len(), mt)? {
                    Some(h) => {
                        stats.cached += 1;
                        h
                    }
                    None => match hash_file(&node.real) {
                        Ok(h) => {
                            stats.hashed_bytes += meta.len();
                            store.store_hash(&key, meta.len(), mt, &h)?;
                            h
                        }
                        Err(e) => {
                            tracing::warn!("not shared: {e:#}");
                            continue;
                        }
                    },
                };
                let root = root_paths
                    .iter()
                    .find(|(n, _)| Some(n) == vpath.components().first())
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default();
                files.push(SharedFile { vpath, real: node.real.clone(), root, size: meta.len(), tth: Tth(hash.tth) });
            }
            Ok(())
        })?;
        stats.files = files.len();
        let dirs: Vec<String> = index.dirs().iter().map(|d| d.components().join("\\")).collect();
        let share = DcShare::from_files(files, dirs, cid)?;
        Ok((share, stats))
    }

    fn from_files(files: Vec<SharedFile>, dirs: Vec<String>, cid: &str) -> anyhow::Result<DcShare> {
        let mut by_tth = HashMap::new();
        let mut by_path = HashMap::new();
        let mut total = 0;
        for (i, f) in files.iter().enumerate() {
            by_tth.entry(f.tth).or_insert(i);
            by_path.insert(path_key(&f.nmdc_path()), i);
            total += f.size;
        }
        let list = build_list(&files, cid);
        let filelist = Arc::new(list.to_bz2().context("cannot write the file list")?);
        Ok(DcShare { files, dirs, by_tth, by_path, filelist, total })
    }

    /// Files shared.
    pub fn files(&self) -> &[SharedFile] {
        &self.files
    }

    /// Bytes shared.
    pub fn total_size(&self) -> u64 {
        self.total
    }

    /// `files.xml.bz2`.
    pub fn filelist_bz2(&self) -> Arc<Vec<u8>> {
        self.filelist.clone()
    }

    /// The file with this root.
    pub fn by_tth(&self, tth: &Tth) -> Option<&SharedFile> {
        self.by_tth.get(tth).map(|&i| &self.files[i])
    }

    /// The file at this share path (`share\dir\name` or `/share/dir/name`, any case).
    pub fn by_path(&self, path: &str) -> Option<&SharedFile> {
        self.by_path.get(&path_key(path)).map(|&i| &self.files[i])
    }

    /// Files and directories matching a search, at most `max`.
    pub fn search(&self, query: &SearchQuery, max: usize) -> (Vec<&SharedFile>, Vec<&str>) {
        let m = Matcher::new(query);
        if let Some(root) = query.tth_root() {
            return (self.by_tth(&root).into_iter().collect(), Vec::new());
        }
        let files: Vec<&SharedFile> =
            self.files.iter().filter(|f| m.matches_file(&f.nmdc_path(), f.size, &f.tth)).take(max).collect();
        let room = max - files.len();
        let dirs: Vec<&str> = self.dirs.iter().filter(|d| m.matches_dir(d)).take(room).map(String::as_str).collect();
        (files, dirs)
    }

    /// Open a shared file for reading, re-checking it still lies inside its root and still
    /// has the size it was hashed at.
    pub fn open(&self, f: &SharedFile) -> std::io::Result<(std::fs::File, u64)> {
        let (file, size) = crate::share::open_inside(&f.real, &f.root)?;
        if size != f.size {
            return Err(std::io::Error::other("the file changed since it was hashed"));
        }
        Ok((file, size))
    }

    /// The `tthl` payload of a file, from the cache.
    pub fn tthl(&self, store: &Store, f: &SharedFile) -> anyhow::Result<Vec<u8>> {
        let meta = std::fs::metadata(&f.real)?;
        match store.cached_hash(&f.real.to_string_lossy(), meta.len(), mtime_ns(&meta))? {
            Some(h) => Ok(h.tthl),
            None => Ok(hash_file(&f.real)?.tthl),
        }
    }
}

/// The file list for these files.
fn build_list(files: &[SharedFile], cid: &str) -> FileList {
    fn insert(dirs: &mut Vec<Directory>, files: &mut Vec<ListFile>, path: &[String], entry: ListFile) {
        match path.split_first() {
            None => files.push(entry),
            Some((d, rest)) => {
                let pos = match dirs.iter().position(|x| &x.name == d) {
                    Some(p) => p,
                    None => {
                        dirs.push(Directory {
                            name: d.clone(),
                            incomplete: false,
                            dirs: Vec::new(),
                            files: Vec::new(),
                        });
                        dirs.len() - 1
                    }
                };
                let dir = &mut dirs[pos];
                insert(&mut dir.dirs, &mut dir.files, rest, entry)
            }
        }
    }
    let mut list = FileList::new(cid);
    list.generator = Some(format!("omnipeer {}", env!("CARGO_PKG_VERSION")));
    for f in files {
        let Some((name, dirs)) = f.vpath.components().split_last() else { continue };
        let entry = ListFile { name: name.clone(), size: f.size, tth: f.tth };
        insert(&mut list.dirs, &mut list.files, dirs, entry);
    }
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
}
