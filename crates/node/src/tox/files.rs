//! File transfers for the Tox client driver: reading the chunks a friend's transfer asks
//! for, and saving the files friends send into an incoming directory with resume
//! (docs/protocols/tox.md#file-transfers).
//!
//! A file being received is kept as `DIR/.partial/<file id hex>` while it arrives, so a
//! later offer with the same file id (after a restart of either side) resumes from the
//! bytes already there (a seek before accepting, as qTox and toxic do); when complete it
//! is renamed to `DIR/<name>` (a file name only; ` (n)` appended when taken). Avatars go to
//! `DIR/avatars/<friend pk hex>`.

use omnipeer_tox::crypto::PublicKey;
use omnipeer_tox::file::{Control, Direction, FileEvent, FILE_ID_SIZE, KIND_AVATAR, KIND_DATA, SIZE_UNKNOWN};
use omnipeer_tox::tox::Tox;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Largest avatar accepted (qTox refuses bigger ones too).
pub const MAX_AVATAR_SIZE: u64 = 64 * 1024;
/// Bytes read from a file being sent at once (chunks are asked for in order).
const READ_BLOCK: usize = 1 << 20;
/// Write buffer of a file being received.
const WRITE_BUFFER: usize = 1 << 20;

/// The file id omnipeer offers a file under: stable for the same path, size and
/// modification time, so an offer after a restart resumes at the receiver.
pub fn file_id_for(path: &Path, meta: &std::fs::Metadata) -> [u8; FILE_ID_SIZE] {
    let mut h = Sha256::new();
    h.update(b"omnipeer tox file id\0");
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    h.update(canon.as_os_str().as_encoded_bytes());
    h.update(meta.len().to_be_bytes());
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    h.update(mtime.map_or(0, |d| d.as_nanos()).to_be_bytes());
    h.finalize().into()
}

/// Reads a file being sent in blocks, serving chunk requests in order.
pub struct Source {
    file: File,
    block_pos: u64,
    block: Vec<u8>,
}

impl Source {
    pub fn open(path: &Path) -> std::io::Result<Source> {
        Ok(Source { file: File::open(path)?, block_pos: 0, block: Vec::new() })
    }

    /// `length` bytes at `position`.
    pub fn read(&mut self, position: u64, length: usize) -> std::io::Result<Vec<u8>> {
        let end = self.block_pos + self.block.len() as u64;
        if position < self.block_pos || position + length as u64 > end {
            self.block.resize(READ_BLOCK.max(length), 0);
            let mut got = 0;
            while got < self.block.len() {
                let n = self.file.read_at(&mut self.block[got..], position + got as u64)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            self.block.truncate(got);
            self.block_pos = position;
            if got < length {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank while sending"));
            }
        }
        let off = (position - self.block_pos) as usize;
        Ok(self.block[off..off + length].to_vec())
    }
}

/// A file being received.
struct Incoming {
    partial: PathBuf,
    dest: PathBuf,
    out: BufWriter<File>,
    name: String,
    size: u64,
}

/// What [`Receiver::handle`] saw worth printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An offer was accepted, resuming from `from` bytes.
    Accepted { friend: PublicKey, name: String, size: u64, from: u64 },
    /// A file is complete at `path`.
    Complete { friend: PublicKey, path: PathBuf, size: u64 },
    /// An offer was refused (avatar too big, no room, bad name).
    Refused { friend: PublicKey, name: String, why: String },
    /// The friend went offline mid-transfer; the partial file stays for a resume.
    Broken { friend: PublicKey, name: String, have: u64 },
}

/// Saves the files friends send into `dir`.
pub struct Receiver {
    dir: PathBuf,
    partial_dir: PathBuf,
    avatars_dir: PathBuf,
    open: HashMap<(PublicKey, u8), Incoming>,
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXUPPER.encode(b)
}

/// A safe file name from an offered one: its last path component, no leading dots.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let base: String = base.chars().filter(|c| !c.is_control()).collect();
    let base = base.trim_start_matches('.').trim();
    if base.is_empty() {
        "file".into()
    } else {
        base.chars().take(200).collect()
    }
}

/// Bytes free for us on `dir`'s file system (unknown: no limit).
fn free_space(dir: &Path) -> u64 {
    match rustix::fs::statvfs(dir) {
        Ok(v) => v.f_bavail.saturating_mul(v.f_frsize),
        Err(_) => u64::MAX,
    }
}

/// `dir/name`, or `dir/name (n)` when taken.
fn free_dest(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        return p;
    }
    (1..).map(|n| dir.join(format!("{name} ({n})"))).find(|p| !p.exists()).unwrap_or(p)
}

impl Receiver {
    /// Complete files in `dir`, partial ones in `dir/.partial`, avatars in `dir/avatars`
    /// (`omnipeer tox echo --incoming DIR`).
    pub fn new(dir: &Path) -> std::io::Result<Receiver> {
        Self::with_dirs(dir, &dir.join(".partial"), &dir.join("avatars"))
    }

    /// Complete files in `dir`, partial ones in `partial_dir`, avatars in `avatars_dir`
    /// (the node keeps the last two in its data directory).
    pub fn with_dirs(dir: &Path, partial_dir: &Path, avatars_dir: &Path) -> std::io::Result<Receiver> {
        std::fs::create_dir_all(dir)?;
        std::fs::create_dir_all(partial_dir)?;
        Ok(Receiver {
            dir: dir.to_path_buf(),
            partial_dir: partial_dir.to_path_buf(),
            avatars_dir: avatars_dir.to_path_buf(),
            open: HashMap::new(),
        })
    }

    /// Handles a file event for a transfer we receive; `None` for events it does not own.
    pub fn handle(&mut self, tox: &mut Tox, ev: &FileEvent) -> Option<Received> {
        let now = Instant::now();
        match ev {
            FileEvent::Offer { friend, number, kind, size, file_id, name } => {
                let refuse = |tox: &mut Tox, why: &str| {
                    let _ = tox.file_control(now, friend, Direction::Receiving, *number, Control::Kill);
                    Some(Received::Refused { friend: *friend, name: name.clone(), why: why.into() })
                };
                let (partial, dest) = match *kind {
                    KIND_AVATAR => {
                        if *size > MAX_AVATAR_SIZE {
                            return refuse(tox, "avatar too big");
                        }
                        let d = self.avatars_dir.clone();
                        if std::fs::create_dir_all(&d).is_err() {
                            return refuse(tox, "cannot create the avatars directory");
                        }
                        let dest = d.join(friend.to_hex());
                        if *size == 0 {
                            // "No avatar": drop the one we had.
                            let _ = std::fs::remove_file(&dest);
                            return refuse(tox, "no avatar");
                        }
                        (self.partial_dir.join(format!("avatar-{}", hex(file_id))), dest)
                    }
                    KIND_DATA => {
                        // A stream of unknown size, or more than the disk holds, is refused
                        // rather than left to fill the disk.
                        if *size == SIZE_UNKNOWN {
                            return refuse(tox, "unknown size");
                        }
                        if *size > free_space(&self.partial_dir) {
                            return refuse(tox, "not enough disk space");
                        }
                        let n = safe_name(name);
                        (self.partial_dir.join(hex(file_id)), self.dir.join(n))
                    }
                    _ => return refuse(tox, "unknown file kind"),
                };
                let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
                let from = if have > 0 && have < *size { have } else { 0 };
                let file = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&partial);
                let Ok(file) = file else { return refuse(tox, "cannot create the file") };
                if file.set_len(from).is_err() {
                    return refuse(tox, "cannot truncate the partial file");
                }
                let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
                use std::io::Seek;
                if out.seek(std::io::SeekFrom::Start(from)).is_err() {
                    return refuse(tox, "cannot seek the partial file");
                }
                if from > 0 && tox.file_seek(now, friend, *number, from).is_err() {
                    return refuse(tox, "seek refused");
                }
                if tox.file_control(now, friend, Direction::Receiving, *number, Control::Accept).is_err() {
                    return None;
                }
                self.open.insert((*friend, *number), Incoming { partial, dest, out, name: name.clone(), size: *size });
                Some(Received::Accepted { friend: *friend, name: name.clone(), size: *size, from })
            }
            FileEvent::Chunk { friend, number, data, .. } => {
                let key = (*friend, *number);
                if !data.is_empty() {
                    let inc = self.open.get_mut(&key)?;
                    if let Err(e) = inc.out.write_all(data) {
                        tracing::warn!("tox: writing {}: {e}", inc.partial.display());
                        let _ = tox.file_control(now, friend, Direction::Receiving, *number, Control::Kill);
                        self.open.remove(&key);
                    }
                    return None;
                }
                let mut inc = self.open.remove(&key)?;
                if let Err(e) = inc.out.flush() {
                    tracing::warn!("tox: writing {}: {e}", inc.partial.display());
                    return None;
                }
                drop(inc.out);
                let dest = if inc.dest.starts_with(&self.avatars_dir) {
                    inc.dest.clone()
                } else {
                    free_dest(&self.dir, &inc.dest.file_name().map(|n| n.to_string_lossy().into_owned())?)
                };
                if let Err(e) = std::fs::rename(&inc.partial, &dest) {
                    tracing::warn!("tox: saving {}: {e}", dest.display());
                    return None;
                }
                Some(Received::Complete { friend: *friend, path: dest, size: inc.size })
            }
            FileEvent::Broken { friend, direction: Direction::Receiving, number }
            | FileEvent::Control { friend, direction: Direction::Receiving, number, control: Control::Kill } => {
                let mut inc = self.open.remove(&(*friend, *number))?;
                let _ = inc.out.flush();
                let have = std::fs::metadata(&inc.partial).map(|m| m.len()).unwrap_or(0);
                Some(Received::Broken { friend: *friend, name: inc.name, have })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_confined_to_the_directory() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("..\\x.txt"), "x.txt");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("a\nb"), "ab");
        assert_eq!(safe_name(""), "file");
    }
}
