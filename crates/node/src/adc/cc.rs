//! ADC client-to-client connections (docs/protocols/adc.md#cc): pump the
//! [`omnipeer_adc::transfer::Connection`] machine through the handshake, then serve GETs
//! from our share (with the node's upload slots, as `crate::nmdc::cc` does for NMDC) or
//! make one GET and write what the peer sends. The stream is plain TCP or TLS (ADCS), so
//! raw bytes move through async reads and writes.

use crate::nmdc::cc::{DownloadJob, Downloaded, Running, Source, UploadContext, MINISLOT_SIZE};
use crate::upload::Decision;
use anyhow::{anyhow, bail, Context};
use omnipeer_adc::transfer::{Connection, Event, Get, Ident, Kind, Output, Role};
use omnipeer_nmdc::limits::MAX_FILELIST_COMPRESSED;
use omnipeer_nmdc::transfer::Identifier;
use std::io::SeekFrom;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

/// Bytes per read or write of file data.
const CHUNK: usize = 64 * 1024;
/// How long raw file data may stall.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(120);

/// A byte stream to a hub or a peer: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
/// A boxed [`Io`].
pub type Stream = Box<dyn Io>;

/// Pump `conn` until a deadline, an event or an end; transmits are written.
pub(crate) async fn pump(stream: &mut Stream, conn: &mut Connection, buf: &mut [u8]) -> anyhow::Result<Event> {
    loop {
        let mut deadline = None;
        while let Some(o) = conn.poll_output() {
            match o {
                Output::Transmit(b) => stream.write_all(&b).await?,
                Output::Event(e) => return Ok(e),
                Output::Timeout(t) => {
                    deadline = Some(t);
                    break;
                }
            }
        }
        let deadline = deadline.ok_or_else(|| anyhow!("the connection stopped"))?;
        tokio::select! {
            r = stream.read(buf) => match r {
                Ok(0) | Err(_) => conn.handle_eof(),
                Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
            },
            _ = tokio::time::sleep_until(deadline.into()) => conn.handle_timeout(Instant::now()),
        }
    }
}

/// The handshake: returns the machine, the peer's CID and the token it presented.
pub async fn handshake(
    stream: &mut Stream,
    role: Role,
    cid: &str,
    token: Option<&str>,
) -> anyhow::Result<(Connection, String, Option<String>)> {
    let mut conn = Connection::new(role, cid, token, Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pump(stream, &mut conn, &mut buf).await? {
            Event::Ready { cid, token } => return Ok((conn, cid, token)),
            Event::Closed(r) => bail!("handshake failed: {r}"),
            // Informational (ncdc sends `CSTA 000 referrer RF<hub address>` first).
            Event::Status { code, .. } if code / 100 == 0 => {}
            other => bail!("handshake failed: unexpected {other:?}"),
        }
    }
}

fn resolve(ctx: &UploadContext, g: &Get) -> Option<Source> {
    let share = ctx.share.lock().expect("share").clone();
    match (g.kind, &g.ident) {
        (Kind::File, Ident::FileList) => Some(Source::Memory(share.filelist_bz2())),
        // `GET list /`: the whole list, uncompressed (partial lists of a folder are not
        // served: STA 151, and the peer falls back to files.xml.bz2).
        (Kind::List, Ident::Path(p)) if p == "/" => {
            let limits = omnipeer_nmdc::filelist::Limits::default();
            omnipeer_nmdc::filelist::decompress_bz2(&share.filelist_bz2(), &limits)
                .ok()
                .map(|x| Source::Memory(Arc::new(x)))
        }
        (Kind::Tthl, Ident::Tth(t)) => Source::tthl(&share, ctx, t),
        (Kind::File, Ident::Tth(t)) => Source::file(&share, share.by_tth(t)),
        (Kind::File, Ident::Path(p)) => Source::file(&share, share.by_path(p)),
        _ => None,
    }
}

/// Serve GETs on a connection until it closes.
pub async fn serve_uploads(
    mut stream: Stream,
    mut conn: Connection,
    nick: &str,
    ctx: UploadContext,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let g = match pump(&mut stream, &mut conn, &mut buf).await? {
            Event::Get(g) => g,
            Event::Closed(r) => {
                tracing::debug!(peer = %nick, "ADC upload connection closed: {r}");
                return Ok(());
            }
            _ => continue,
        };
        let Some(src) = resolve(&ctx, &g) else {
            tracing::info!(peer = %nick, what = ?g.ident, "upload: not available");
            conn.not_available();
            continue;
        };
        let total = src.len();
        if g.start > total {
            conn.status(152, "Range not available");
            continue;
        }
        let len = g.len.unwrap_or(total - g.start).min(total - g.start);
        match src {
            Source::Memory(data) => {
                conn.snd(g.kind, &g.ident, g.start, len);
                flush(&mut stream, &mut conn).await?;
                let s = g.start as usize;
                stream.write_all(&data[s..s + len as usize]).await?;
                conn.transfer_done(Instant::now());
            }
            Source::File { file, size, name } => {
                // Small files need no slot (MiniSlots) but show in the uploads list.
                let mut running;
                let sent;
                if size <= MINISLOT_SIZE {
                    let (id, s) = ctx.uploads.untracked(&ctx.channel, nick, &name, size, g.start);
                    running = Running::new(&ctx.uploads, id);
                    sent = s;
                } else {
                    match ctx.uploads.request(&ctx.channel, nick, &name, size, false) {
                        Decision::Granted(id) => {
                            running = Running::new(&ctx.uploads, id);
                            match ctx.uploads.start(id, g.start) {
                                Some(s) => sent = s,
                                None => {
                                    conn.slots_full();
                                    continue;
                                }
                            }
                        }
                        Decision::Queued { position, .. } => {
                            // Queued: when a slot frees, the session asks the peer to
                            // connect again (`Uploads::grants`).
                            tracing::info!(peer = %nick, position, "upload: no free slot (queued)");
                            conn.status(253, &format!("Slots full (queued at {position})"));
                            continue;
                        }
                        Decision::AlreadyGranted(_) | Decision::Refused => {
                            tracing::info!(peer = %nick, "upload: no free slot");
                            conn.slots_full();
                            continue;
                        }
                    }
                }
                conn.snd(g.kind, &g.ident, g.start, len);
                flush(&mut stream, &mut conn).await?;
                let stop = ctx.uploads.stop_flag(running.id());
                let limit = ctx.uploads.limit();
                let mut f = tokio::fs::File::from_std(file);
                f.seek(SeekFrom::Start(g.start)).await?;
                let mut left = len;
                let mut chunk = vec![0u8; CHUNK];
                let r: anyhow::Result<()> = async {
                    while left > 0 {
                        if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                            bail!("upload cancelled");
                        }
                        let want = left.min(CHUNK as u64) as usize;
                        let n = f.read(&mut chunk[..want]).await?;
                        if n == 0 {
                            bail!("the file shrank while being sent");
                        }
                        tokio::time::timeout(DATA_TIMEOUT, stream.write_all(&chunk[..n]))
                            .await
                            .map_err(|_| anyhow!("the peer stopped reading"))??;
                        left -= n as u64;
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                        let wait = limit.take(n);
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    stream.flush().await?;
                    Ok(())
                }
                .await;
                running.set_result(r.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
                drop(running);
                r?;
                conn.transfer_done(Instant::now());
            }
        }
    }
}

async fn flush(stream: &mut Stream, conn: &mut Connection) -> anyhow::Result<()> {
    while let Some(o) = conn.poll_output() {
        match o {
            Output::Transmit(b) => stream.write_all(&b).await?,
            Output::Timeout(_) => break,
            Output::Event(e) => bail!("unexpected {e:?}"),
        }
    }
    Ok(())
}

/// Make one GET on a ready connection and write the answer to `job.out` (a partial file
/// there is resumed from its end). `tls`: the connection is ADCS (reported as such).
pub async fn download(
    mut stream: Stream,
    mut conn: Connection,
    peer: &str,
    job: &DownloadJob,
    tls: bool,
) -> anyhow::Result<Downloaded> {
    let have = std::fs::metadata(&job.out).map(|m| m.len()).unwrap_or(0);
    let expected = match job.total.load(Ordering::Relaxed) {
        0 => None,
        m => Some(m),
    };
    let list = job.what == Identifier::FileList;
    let start = if list || expected.is_some_and(|m| have > m) { 0 } else { have };
    let ident = match &job.what {
        Identifier::Tth(t) => Ident::Tth(*t),
        Identifier::FileList => Ident::FileList,
        Identifier::Path(p) => Ident::Path(p.clone()),
    };
    conn.get(Instant::now(), &Get { kind: Kind::File, ident, start, len: None });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pump(&mut stream, &mut conn, &mut buf).await? {
            Event::Status { code, text } if code % 100 == 53 => {
                bail!("{peer} has no free upload slot ({text}); try again later")
            }
            Event::Status { code, text } if code / 100 != 0 => bail!("{peer} answered: {text} ({code})"),
            Event::Closed(r) => bail!("{peer} closed the connection: {r}"),
            Event::Snd { start: s, len, leftover, .. } => {
                let offered = s.saturating_add(len);
                if s != start {
                    bail!("{peer} sent from byte {s}, not {start}");
                }
                if let Some(m) = expected.filter(|&m| m != offered) {
                    bail!("peer offered {offered} bytes of a file of {m}");
                }
                if list && offered > MAX_FILELIST_COMPRESSED as u64 {
                    bail!("{peer} offered a file list of {offered} bytes (at most {MAX_FILELIST_COMPRESSED})");
                }
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&job.out)
                    .await
                    .with_context(|| format!("cannot write {}", job.out.display()))?;
                if file.metadata().await?.len() != start {
                    file.set_len(start).await?;
                }
                file.seek(SeekFrom::Start(start)).await?;
                file.write_all(&leftover).await?;
                job.total.store(offered, Ordering::Relaxed);
                job.progress.store(start + leftover.len() as u64, Ordering::Relaxed);
                let mut left = len - leftover.len() as u64;
                let mut chunk = vec![0u8; CHUNK];
                while left > 0 {
                    if job.control.stopped() {
                        bail!("stopped");
                    }
                    let want = left.min(CHUNK as u64) as usize;
                    let n = tokio::time::timeout(DATA_TIMEOUT, stream.read(&mut chunk[..want]))
                        .await
                        .map_err(|_| anyhow!("{peer} stalled mid-transfer"))??;
                    if n == 0 {
                        bail!("{peer} closed mid-transfer");
                    }
                    file.write_all(&chunk[..n]).await?;
                    left -= n as u64;
                    job.progress.fetch_add(n as u64, Ordering::Relaxed);
                    job.control.pace(n).await;
                }
                file.flush().await?;
                conn.transfer_done(Instant::now());
                let _ = stream.shutdown().await;
                tracing::info!(%peer, tls, bytes = offered - start, "ADC download complete");
                return Ok(Downloaded { peer: peer.to_owned(), size: offered, resumed_from: start, tls });
            }
            _ => {}
        }
    }
}
