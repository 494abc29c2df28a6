//! The files of a Soulseek session: a download's bytes written to disk once the machine
//! hands its `F` connection over, and the uploads served from the share (queued through
//! the node's shared slots, offered by the machine, sent with `sendfile`). The protocol
//! of both (tokens, offsets, TransferRequest/Response) is the machine's; this is only I/O.

use super::{Core, FConn, Inner, SlskEvent, CHUNK, DATA_TIMEOUT};
use crate::upload::{Decision, Grant};
use anyhow::{anyhow, bail};
use omnipeer_slsk::peer::reject_reason;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// How long an uploader's downloader may take to send the offset on a new `F` connection.
const OFFSET_WAIT: Duration = Duration::from_secs(60);

/// Write a download's bytes into `out` from its `F` connection: the offset we hold (a
/// partial file resumes), then at most `size` bytes. `progress` gets (bytes held, total);
/// returns (path, size, where it resumed).
pub(super) async fn receive(
    FConn { mut stream, size, rest }: FConn,
    user: &str,
    out: &Path,
    progress: &(AtomicU64, AtomicU64),
    control: &crate::ratelimit::TransferControl,
) -> anyhow::Result<(PathBuf, u64, u64)> {
    progress.1.store(size, Ordering::Relaxed);
    let have = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    let have = if have > size { 0 } else { have };
    // The uploader sent its token (4 bytes, consumed by the machine); we answer with
    // the offset.
    stream.write_all(&have.to_le_bytes()).await?;
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(out)?;
    if file.metadata()?.len() != have {
        file.set_len(have)?;
    }
    file.seek(SeekFrom::Start(have))?;
    let mut pos = have;
    let keep = rest.len().min((size - pos) as usize);
    file.write_all(&rest[..keep])?;
    pos += keep as u64;
    progress.0.store(pos, Ordering::Relaxed);
    let mut buf = vec![0u8; CHUNK];
    while pos < size {
        let want = ((size - pos) as usize).min(buf.len());
        let n = tokio::time::timeout(DATA_TIMEOUT, stream.read(&mut buf[..want]))
            .await
            .map_err(|_| anyhow!("the transfer stalled"))??;
        if n == 0 {
            bail!("{user} closed the connection at byte {pos} of {size} (the partial file is kept)");
        }
        file.write_all(&buf[..n])?;
        pos += n as u64;
        progress.0.store(pos, Ordering::Relaxed);
        control.pace(n).await;
    }
    file.flush()?;
    // The downloader closes once it has every byte.
    let _ = stream.shutdown().await;
    Ok((out.to_path_buf(), size, have))
}

/// A segment of a download from its `F` connection: `start` sent as the offset, then
/// `length` bytes handed to `sink`, and the connection closed (the uploader sees a
/// downloader that stopped early, as when a user cancels).
pub(super) async fn receive_range(
    FConn { mut stream, size, rest }: FConn,
    user: &str,
    start: u64,
    length: u64,
    sink: &mut (dyn FnMut(&[u8]) + Send),
    control: &crate::ratelimit::TransferControl,
) -> anyhow::Result<()> {
    let end = start
        .checked_add(length)
        .filter(|&e| e <= size)
        .ok_or_else(|| anyhow!("bytes {start}+{length} are past the end of {user}'s file of {size}"))?;
    stream.write_all(&start.to_le_bytes()).await?;
    let mut pos = start;
    let keep = rest.len().min((end - pos) as usize);
    sink(&rest[..keep]);
    pos += keep as u64;
    let mut buf = vec![0u8; CHUNK];
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        let n = tokio::time::timeout(DATA_TIMEOUT, stream.read(&mut buf[..want]))
            .await
            .map_err(|_| anyhow!("the transfer stalled"))??;
        if n == 0 {
            bail!("{user} closed the connection at byte {pos} (segment {start}-{end})");
        }
        sink(&buf[..n]);
        pos += n as u64;
        control.pace(n).await;
    }
    let _ = stream.shutdown().await;
    Ok(())
}

impl Inner {
    /// A peer queued one of our files: it gets a slot now, or a place in the queue and a
    /// slot when its turn comes ([`Inner::grant_loop`]).
    pub(super) fn queue_upload(&self, core: &mut Core, now: std::time::Instant, user: String, filename: String) {
        let Some(f) = self.shares().get(&filename) else {
            core.session.upload_refused(now, &user, &filename, reject_reason::FILE_NOT_SHARED);
            return;
        };
        match self.up.request(&self.channel, &user, &filename, f.size, true) {
            Decision::Granted(id) => {
                core.granted.insert(id, (user.clone(), filename.clone()));
                core.session.upload_granted(now, id, &user, &filename, f.size);
            }
            Decision::Queued { position, .. } => tracing::info!(%user, %filename, position, "upload queued"),
            Decision::AlreadyGranted(_) => {}
            Decision::Refused => {
                let why = if self.up.is_banned(&self.channel, &user) {
                    reject_reason::BANNED
                } else {
                    reject_reason::TOO_MANY_FILES
                };
                core.session.upload_refused(now, &user, &filename, why)
            }
        }
    }

    /// Start queued uploads as slots free up for them.
    pub(super) async fn grant_loop(self: Arc<Self>, mut grants: mpsc::UnboundedReceiver<Grant>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                g = grants.recv() => match g {
                    Some(g) => self.grant(g),
                    None => return,
                },
            }
        }
    }

    /// A slot is held for `g`: the machine offers the file (TransferRequest, resent on
    /// fresh connections); the peer's answer starts or refuses it.
    fn grant(self: &Arc<Self>, g: Grant) {
        let Some(f) = self.shares().get(&g.file) else {
            self.up.finish(g.id, Err("no longer shared".into()));
            return;
        };
        self.with(|c, now| {
            c.granted.insert(g.id, (g.user.clone(), g.file.clone()));
            c.session.upload_granted(now, g.id, &g.user, &g.file, f.size);
        });
    }

    /// Send a granted file over its F connection: (our token, already written by the
    /// machine or in `prefix`), their offset, then bytes (zero-copy unless the upload limit
    /// applies), counted in `sent`.
    pub(super) async fn upload(
        self: Arc<Self>,
        stream: oneshot::Receiver<TcpStream>,
        prefix: Vec<u8>,
        user: &str,
        vpath: &str,
        id: u64,
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let f = self.shares().get(vpath).ok_or_else(|| anyhow!("{vpath} is no longer shared"))?;
        let (file, size) = crate::share::open_inside(&f.real, &f.root)?;
        let mut s = stream.await.map_err(|_| anyhow!("the file connection to {user} closed"))?;
        if !prefix.is_empty() {
            s.write_all(&prefix).await?;
        }
        let mut off = [0u8; 8];
        tokio::time::timeout(OFFSET_WAIT, s.read_exact(&mut off)).await.map_err(|_| anyhow!("no offset"))??;
        let offset = u64::from_le_bytes(off).min(size);
        self.up.set_start(id, offset);
        let limit = self.up.limit();
        let stop = self.up.stop_flag(id);
        let std = s.into_std()?;
        std.set_nonblocking(false)?;
        std.set_write_timeout(Some(DATA_TIMEOUT))?;
        let std = tokio::task::spawn_blocking(move || -> anyhow::Result<std::net::TcpStream> {
            crate::transfer::send_file_range(
                &std,
                &file,
                offset,
                size - offset,
                Some(&limit),
                DATA_TIMEOUT,
                &sent,
                stop.as_deref(),
            )?;
            Ok(std)
        })
        .await??;
        std.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(std)?;
        // The downloader closes once it has everything.
        let mut rest = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut rest)).await;
        self.events.send(SlskEvent::Uploaded { user: user.to_owned(), path: vpath.to_owned() }).await;
        Ok(())
    }
}
