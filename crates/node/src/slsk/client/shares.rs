//! The share as Soulseek reads it: a snapshot of the node's one index
//! ([`crate::share::SharedIndex`]) answering the file, folder and search questions peers
//! ask (`docs/protocols/soulseek.md`: paths are backslash-separated, found through the
//! index only).

use crate::share::ShareIndex;
use omnipeer_slsk::search::SearchQuery;
use omnipeer_slsk::shares::{SharedDirectory, SharedFile};
use std::path::PathBuf;
use std::sync::Arc;

/// One shared file.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) real: PathBuf,
    pub(super) root: PathBuf,
    pub(super) size: u64,
}

/// A snapshot of the node's one share index ([`SharedIndex`]), as Soulseek reads it.
pub(super) struct Shares(pub(super) Arc<ShareIndex>);

impl Shares {
    /// The file at a path from the network, found through the index only.
    pub(super) fn get(&self, vpath: &str) -> Option<Shared> {
        let f = self.0.find_file(vpath)?;
        Some(Shared { real: self.0.real_path(f), root: self.0.file_root(f).to_path_buf(), size: self.0.file_size(f) })
    }

    /// Every folder that holds files, with its files (names only), in path order.
    pub(super) fn dirs(&self) -> Vec<SharedDirectory> {
        let idx = &self.0;
        let mut out: Vec<SharedDirectory> = std::iter::once(0)
            .chain(idx.walk_dirs().into_iter().map(|(d, _)| d))
            .filter(|&d| !idx.files_in(d).is_empty())
            .map(|d| {
                let mut path = String::new();
                idx.write_dir_path(d, '\\', &mut path);
                let files = idx.files_in(d).map(|f| file_entry(idx.file_name(f), idx.file_size(f))).collect();
                SharedDirectory { path, files }
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Folders that hold files.
    pub(super) fn dir_count(&self) -> usize {
        let idx = &self.0;
        std::iter::once(0)
            .chain(idx.walk_dirs().into_iter().map(|(d, _)| d))
            .filter(|&d| !idx.files_in(d).is_empty())
            .count()
    }

    pub(super) fn file_count(&self) -> usize {
        self.0.file_count()
    }

    pub(super) fn search(&self, query: &str, max: usize) -> Vec<SharedFile> {
        let q = SearchQuery::parse(query);
        if !q.is_searchable() {
            return Vec::new();
        }
        let idx = &self.0;
        let mut out = Vec::new();
        let mut path = String::new();
        for f in 0..idx.file_count() as u32 {
            if out.len() >= max {
                break;
            }
            path.clear();
            idx.write_file_path(f, '\\', &mut path);
            if q.matches(&path) {
                out.push(file_entry(&path, idx.file_size(f)));
            }
        }
        out
    }
}

fn file_entry(name: &str, size: u64) -> SharedFile {
    SharedFile::new(name, size)
}
