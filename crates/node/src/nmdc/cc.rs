//! Client-to-client connections: pump the handshake machine, then serve uploads from our
//! share (`$ADCGET` and the legacy `$Get`/`$Send`, with upload slots) or download one
//! thing. Raw file bytes move on a blocking thread with the socket in blocking mode (the
//! same tight loop a plain copy runs); the machines only see commands and byte counts.
//! Over TLS (`$ConnectToMe …S`, docs/protocols/nmdc.md#tls) the bytes go through the TLS
//! stream on the runtime instead, in [`CHUNK`]s, with the same limits and timeouts.

use super::share::{DcShare, SharedFile};
use crate::ratelimit::RateLimit;
use crate::store::Store;
use crate::tls::MaybeTls;
use crate::upload::{Decision, Uploads};
use anyhow::{anyhow, bail, Context};
use omnipeer_nmdc::command::{AdcKind, Direction, DirectionOutcome};
use omnipeer_nmdc::handshake::{self, CcConfig, CcHandshake, Peer, Role};
use omnipeer_nmdc::limits::MAX_FILELIST_COMPRESSED;
use omnipeer_nmdc::transfer::{DownloadEvent, Downloader, Identifier, Output, UploadEvent, Uploader};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client-to-client connection: plain, or TLS after `$ConnectToMe …S`.
pub type DcStream = MaybeTls<TcpStream>;

/// Bytes per read/write of raw file data.
const CHUNK: usize = 256 * 1024;
/// Files up to this size go out even when every slot is taken (MiniSlots).
pub const MINISLOT_SIZE: u64 = 64 * 1024;
/// How long raw data may stall.
const DATA_TIMEOUT: Duration = Duration::from_secs(120);

/// What we serve: the share (swappable after a rescan) and the hash cache for `tthl`.
#[derive(Clone)]
pub struct UploadContext {
    /// The current share.
    pub share: Arc<Mutex<Arc<DcShare>>>,
    /// The database with the hash cache.
    pub store: Arc<Mutex<Store>>,
    /// Upload slots, queue and limit (shared with the node's other networks).
    pub uploads: Arc<Uploads>,
    /// The name this session's uploads go by in `uploads` (`nmdc`, or `nmdc@LABEL` for a
    /// labelled hub session: crate::upload).
    pub channel: Arc<str>,
}

/// Ends an upload's record when the connection ends, however it ends (NMDC's and ADC's
/// upload connections alike).
pub(crate) struct Running {
    uploads: Arc<Uploads>,
    id: u64,
    result: Option<Result<(), String>>,
}

impl Running {
    /// The upload `id` in `uploads`, ended "the connection ended" unless
    /// [`Running::set_result`] says otherwise.
    pub(crate) fn new(uploads: &Arc<Uploads>, id: u64) -> Running {
        Running { uploads: uploads.clone(), id, result: None }
    }

    /// The upload's id in its `Uploads`.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// How the upload ended.
    pub(crate) fn set_result(&mut self, r: Result<(), String>) {
        self.result = Some(r);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let r = self.result.take().unwrap_or_else(|| Err("the connection ended".into()));
        self.uploads.finish(self.id, r);
    }
}

/// Something to download.
#[derive(Debug, Clone)]
pub struct DownloadJob {
    /// What to ask for.
    pub what: Identifier,
    /// Where to write it; a partial file there is resumed.
    pub out: PathBuf,
    /// Progress: absolute bytes held.
    pub progress: Arc<AtomicU64>,
    /// The whole size. Nonzero when the download starts: the size the user chose (from
    /// the search result or the queue), and a peer that announces any other size
    /// (`$ADCSND` / `$FileLength`) is refused before a byte is written ("peer offered N
    /// bytes of a file of M"). Zero: not known; the peer's announced size is stored here.
    pub total: Arc<AtomicU64>,
    /// Stop and rate limit (pause, cancel, a shared download limit).
    pub control: Arc<crate::ratelimit::TransferControl>,
}

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The peer.
    pub peer: String,
    /// Bytes in the file now.
    pub size: u64,
    /// Where the transfer started.
    pub resumed_from: u64,
    /// The connection was TLS (`$ConnectToMe …S`).
    pub tls: bool,
}

fn cc_config(nick: &str, direction: Direction, expected: Option<&str>) -> CcConfig {
    let random: [u8; 16] = rand::random();
    // DC++-family peers disconnect on numbers above 32767.
    let number = rand::random::<u32>() % 32_767;
    let mut cfg = CcConfig::new(nick, &random, direction, number);
    cfg.expected_nick = expected.map(str::to_owned);
    cfg
}

/// Run the handshake; returns the peer, who downloads, and leftover bytes.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    role: Role,
    nick: &str,
    want_download: bool,
    expected: Option<&str>,
) -> anyhow::Result<(Peer, DirectionOutcome, Vec<u8>)> {
    let dir = if want_download { Direction::Download } else { Direction::Upload };
    let mut hs = CcHandshake::new(role, cc_config(nick, dir, expected), Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut deadline = None;
        while let Some(o) = hs.poll_output() {
            match o {
                handshake::Output::Transmit(b) => stream.write_all(&b).await?,
                handshake::Output::Event(handshake::Event::Ready { peer, outcome, leftover }) => {
                    return Ok((peer, outcome, leftover))
                }
                handshake::Output::Event(handshake::Event::Closed(r)) => {
                    bail!("client-to-client handshake failed: {r:?}")
                }
                handshake::Output::Timeout(t) => {
                    deadline = Some(t);
                    break;
                }
            }
        }
        let deadline = deadline.ok_or_else(|| anyhow!("handshake stopped without a result"))?;
        tokio::select! {
            r = stream.read(&mut buf) => match r? {
                0 => hs.handle_eof(),
                n => hs.handle_input(Instant::now(), &buf[..n]),
            },
            _ = tokio::time::sleep_until(deadline.into()) => hs.handle_timeout(Instant::now()),
        }
    }
}

/// Serve uploads on a connection whose handshake made the peer the downloader, until it
/// closes.
pub async fn serve_uploads(
    stream: impl Into<DcStream>,
    peer: &Peer,
    leftover: Vec<u8>,
    ctx: UploadContext,
) -> anyhow::Result<()> {
    let mut stream = stream.into();
    let mut up = Uploader::new(Instant::now(), &leftover);
    let mut buf = vec![0u8; 16 * 1024];
    // What the current request resolved to, and the upload (slot) it holds.
    let mut source: Option<Source> = None;
    let mut running: Option<Running> = None;
    // The byte counter of a small file's record (it takes no slot, so `start` gives none).
    let mut small_sent: Option<std::sync::Arc<std::sync::atomic::AtomicU64>> = None;
    loop {
        let mut deadline = None;
        while let Some(o) = up.poll_output() {
            match o {
                Output::Transmit(b) => stream.write_all(&b).await?,
                Output::Timeout(t) => {
                    deadline = Some(t);
                    break;
                }
                Output::Event(UploadEvent::Closed(r)) => {
                    tracing::debug!(peer = %peer.nick, "upload connection closed: {r:?}");
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
                Output::Event(UploadEvent::Request(req)) => {
                    let share = ctx.share.lock().expect("share lock").clone();
                    let resolved = resolve(&share, &ctx, &req.identifier, req.kind);
                    match resolved {
                        None => {
                            tracing::info!(peer = %peer.nick, what = ?req.identifier, "upload: not available");
                            up.not_available(Instant::now())?;
                        }
                        Some(src) => {
                            // File lists, tiger trees and small files need no slot (MiniSlots).
                            let small = src.len() <= MINISLOT_SIZE || !matches!(src, Source::File { .. });
                            let decision = if small {
                                None
                            } else {
                                Some(ctx.uploads.request(&ctx.channel, &peer.nick, &src.describe(), src.len(), false))
                            };
                            match decision {
                                None | Some(Decision::Granted(_)) => {
                                    if let Some(Decision::Granted(id)) = decision {
                                        running = Some(Running::new(&ctx.uploads, id));
                                    } else if let Source::File { name, size, .. } = &src {
                                        // A small file takes no slot but is an upload the
                                        // user sees in the list like any other.
                                        let (id, sent) =
                                            ctx.uploads.untracked(&ctx.channel, &peer.nick, name, *size, 0);
                                        running = Some(Running::new(&ctx.uploads, id));
                                        small_sent = Some(sent);
                                    }
                                    let len = src.len();
                                    source = Some(src);
                                    up.serve(Instant::now(), len)?;
                                }
                                Some(Decision::Queued { position, .. }) => {
                                    tracing::info!(peer = %peer.nick, position, "upload: no free slot ($MaxedOut, queued)");
                                    up.maxed_out_at(Some(position))?;
                                }
                                Some(Decision::AlreadyGranted(_) | Decision::Refused) => {
                                    tracing::info!(peer = %peer.nick, "upload: no free slot ($MaxedOut)");
                                    up.maxed_out()?;
                                }
                            }
                        }
                    }
                }
                Output::Event(UploadEvent::SendBytes { start, length }) => {
                    let src = source.take().ok_or_else(|| anyhow!("bytes to send without a source"))?;
                    tracing::info!(peer = %peer.nick, what = %src.describe(), start, length, "upload");
                    stream = match src {
                        Source::Memory(data) => {
                            let end = (start + length) as usize;
                            stream.write_all(&data[start as usize..end]).await?;
                            stream
                        }
                        Source::File { file, .. } => {
                            let counter = match small_sent.take() {
                                Some(sent) => {
                                    if let Some(r) = &running {
                                        ctx.uploads.set_start(r.id, start);
                                    }
                                    Some(sent)
                                }
                                None => running.as_ref().and_then(|r| ctx.uploads.start(r.id, start)),
                            };
                            let sent = counter.unwrap_or_default();
                            let limit = ctx.uploads.limit();
                            let stop = running.as_ref().and_then(|r| ctx.uploads.stop_flag(r.id));
                            match send_range(stream, file, start, length, limit, sent, stop).await {
                                Ok(s) => s,
                                Err(e) => {
                                    if let Some(r) = running.as_mut() {
                                        r.set_result(Err(format!("{e}")));
                                    }
                                    return Err(e.into());
                                }
                            }
                        }
                    };
                    if let Some(mut r) = running.take() {
                        r.set_result(Ok(()));
                    }
                    up.sent(Instant::now())?;
                }
            }
        }
        let deadline = deadline.unwrap_or_else(|| Instant::now() + DATA_TIMEOUT);
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => up.handle_eof(),
                Ok(n) => up.handle_input(Instant::now(), &buf[..n]),
            },
            _ = tokio::time::sleep_until(deadline.into()) => up.handle_timeout(Instant::now()),
        }
    }
}

/// What an upload sends: bytes in memory (a file list, a Tiger tree) or a shared file.
pub(crate) enum Source {
    Memory(Arc<Vec<u8>>),
    File { file: File, size: u64, name: String },
}

impl Source {
    /// The Tiger tree (`tthl`) of the shared file `t`.
    pub(crate) fn tthl(share: &DcShare, ctx: &UploadContext, t: &omnipeer_nmdc::tth::Tth) -> Option<Source> {
        let f = share.by_tth(t)?;
        let store = ctx.store.lock().expect("store lock");
        share.tthl(&store, f).ok().map(|d| Source::Memory(Arc::new(d)))
    }

    /// The shared file `f`, opened.
    pub(crate) fn file(share: &DcShare, f: Option<SharedFile<'_>>) -> Option<Source> {
        let f = f?;
        let (file, size) = share.open(f).ok()?;
        Some(Source::File { file, size, name: f.nmdc_path() })
    }

    pub(crate) fn len(&self) -> u64 {
        match self {
            Source::Memory(d) => d.len() as u64,
            Source::File { size, .. } => *size,
        }
    }
    fn describe(&self) -> String {
        match self {
            Source::Memory(d) => format!("{} bytes from memory", d.len()),
            Source::File { name, .. } => name.clone(),
        }
    }
}

fn resolve(share: &DcShare, ctx: &UploadContext, id: &Identifier, kind: AdcKind) -> Option<Source> {
    match (kind, id) {
        (_, Identifier::FileList) => Some(Source::Memory(share.filelist_bz2())),
        (AdcKind::Tthl, Identifier::Tth(t)) => Source::tthl(share, ctx, t),
        (AdcKind::File, Identifier::Tth(t)) => Source::file(share, share.by_tth(t)),
        (AdcKind::File, Identifier::Path(p)) => Source::file(share, share.by_path(p)),
        _ => None,
    }
}

/// Write `length` bytes of `file` from `start` to the socket: plain, on a blocking thread,
/// zero-copy unless the shared upload limit applies (see `transfer::send_file_range`);
/// TLS, through the TLS stream in [`CHUNK`]s.
async fn send_range(
    stream: DcStream,
    file: File,
    start: u64,
    length: u64,
    limit: Arc<RateLimit>,
    sent: Arc<AtomicU64>,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> io::Result<DcStream> {
    let tcp = match stream {
        MaybeTls::Plain(tcp) => tcp,
        mut tls => {
            let mut file = tokio::fs::File::from_std(file);
            file.seek(SeekFrom::Start(start)).await?;
            let mut buf = vec![0u8; CHUNK];
            let mut left = length;
            while left > 0 {
                if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
                }
                let want = left.min(CHUNK as u64) as usize;
                let n = file.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file got shorter"));
                }
                // Paced before the write, so the last chunk is not followed by a wait.
                let wait = limit.take(n);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                timed(tls.write_all(&buf[..n])).await?;
                left -= n as u64;
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            timed(tls.flush()).await?;
            return Ok(tls);
        }
    };
    blocking_io(tcp, move |sock| {
        crate::transfer::send_file_range(sock, &file, start, length, Some(&limit), DATA_TIMEOUT, &sent, stop.as_deref())
            .map(|_| ())
            .map_err(|e| match e {
                crate::transfer::TransferError::Io(e) => e,
                other => io::Error::other(other),
            })
    })
    .await
    .map(MaybeTls::Plain)
}

/// `io` within [`DATA_TIMEOUT`].
async fn timed<T>(io: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(DATA_TIMEOUT, io)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer stalled"))?
}

/// Hand the socket to a blocking thread for `work`, then give it back to the runtime.
async fn blocking_io<F>(stream: TcpStream, work: F) -> io::Result<TcpStream>
where
    F: FnOnce(&mut std::net::TcpStream) -> io::Result<()> + Send + 'static,
{
    let mut std = stream.into_std()?;
    std.set_nonblocking(false)?;
    std.set_read_timeout(Some(DATA_TIMEOUT))?;
    std.set_write_timeout(Some(DATA_TIMEOUT))?;
    let std = tokio::task::spawn_blocking(move || {
        work(&mut std)?;
        Ok::<_, io::Error>(std)
    })
    .await
    .map_err(io::Error::other)??;
    std.set_nonblocking(true)?;
    TcpStream::from_std(std)
}

/// Download one thing on a connection whose handshake made us the downloader. A partial
/// file at `job.out` is resumed from its end.
pub async fn download(
    stream: impl Into<DcStream>,
    peer: &Peer,
    leftover: Vec<u8>,
    job: &DownloadJob,
) -> anyhow::Result<Downloaded> {
    let mut stream = stream.into();
    let have = std::fs::metadata(&job.out).map(|m| m.len()).unwrap_or(0);
    let expected = match job.total.load(Ordering::Relaxed) {
        0 => None,
        m => Some(m),
    };
    // The file list is always fetched whole; a partial file longer than the file can be
    // (left by an older version, or another file) is started again.
    let start = if job.what == Identifier::FileList || expected.is_some_and(|m| have > m) { 0 } else { have };
    let mut down = Downloader::new(&leftover);
    if peer.supports("ADCGet") {
        down.request_adc(Instant::now(), AdcKind::File, &job.what, start, None)?;
    } else {
        down.request_legacy(Instant::now(), &job.what, start)?;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut deadline = None;
        while let Some(o) = down.poll_output() {
            match o {
                Output::Transmit(b) => stream.write_all(&b).await?,
                Output::Timeout(t) => {
                    deadline = Some(t);
                    break;
                }
                Output::Event(DownloadEvent::Length(_)) => {}
                Output::Event(DownloadEvent::MaxedOut(Some(place))) => {
                    bail!(
                        "{} has no free upload slot ($MaxedOut): queued there at place {place}; try again later",
                        peer.nick
                    )
                }
                Output::Event(DownloadEvent::MaxedOut(None)) => {
                    bail!("{} has no free upload slot ($MaxedOut); try again later", peer.nick)
                }
                Output::Event(DownloadEvent::Error(e)) => bail!("{} answered: {e}", peer.nick),
                Output::Event(DownloadEvent::Closed(r)) => bail!("{} closed the connection: {r:?}", peer.nick),
                Output::Event(DownloadEvent::Incoming { start, length, leftover, .. }) => {
                    // Never write more than the size the user chose: a peer that offers
                    // another size (a different file, or a lie) is refused before any
                    // byte is written, so retries cannot grow the partial file either.
                    let offered = start.saturating_add(length);
                    if let Some(m) = expected.filter(|&m| m != offered) {
                        bail!("peer offered {offered} bytes of a file of {m}");
                    }
                    // A file list is read whole into memory to be parsed: one larger than
                    // the parser takes is refused before a byte is written.
                    if job.what == Identifier::FileList && offered > MAX_FILELIST_COMPRESSED as u64 {
                        bail!(
                            "{} offered a file list of {offered} bytes (at most {MAX_FILELIST_COMPRESSED})",
                            peer.nick
                        );
                    }
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&job.out)
                        .with_context(|| format!("cannot write {}", job.out.display()))?;
                    if file.metadata()?.len() != start {
                        file.set_len(start)?;
                    }
                    file.seek(SeekFrom::Start(start))?;
                    file.write_all(&leftover)?;
                    let rest = length - leftover.len() as u64;
                    job.total.store(offered, Ordering::Relaxed);
                    job.progress.store(start + leftover.len() as u64, Ordering::Relaxed);
                    let progress = job.progress.clone();
                    let control = job.control.clone();
                    let tcp = match stream {
                        MaybeTls::Plain(tcp) => tcp,
                        mut tls => {
                            receive_tls(&mut tls, file, rest, &progress, &control)
                                .await
                                .with_context(|| format!("downloading from {}", peer.nick))?;
                            down.received(rest)?;
                            down.done()?;
                            let _ = tls.shutdown().await;
                            return Ok(Downloaded {
                                peer: peer.nick.clone(),
                                size: offered,
                                resumed_from: start,
                                tls: true,
                            });
                        }
                    };
                    stream = blocking_io(tcp, move |sock| {
                        let mut buf = vec![0u8; CHUNK];
                        let mut left = rest;
                        while left > 0 {
                            if control.stopped() {
                                return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
                            }
                            let want = left.min(CHUNK as u64) as usize;
                            let n = sock.read(&mut buf[..want])?;
                            if n == 0 {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "the peer closed mid-transfer",
                                ));
                            }
                            file.write_all(&buf[..n])?;
                            left -= n as u64;
                            progress.fetch_add(n as u64, Ordering::Relaxed);
                            control.pace_blocking(n);
                        }
                        file.flush()
                    })
                    .await
                    .map(MaybeTls::Plain)
                    .with_context(|| format!("downloading from {}", peer.nick))?;
                    down.received(rest)?;
                    down.done()?;
                    let _ = stream.shutdown().await;
                    return Ok(Downloaded { peer: peer.nick.clone(), size: offered, resumed_from: start, tls: false });
                }
            }
        }
        let deadline = deadline.unwrap_or_else(|| Instant::now() + DATA_TIMEOUT);
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => down.handle_eof(),
                Ok(n) => down.handle_input(Instant::now(), &buf[..n]),
            },
            _ = tokio::time::sleep_until(deadline.into()) => down.handle_timeout(Instant::now()),
        }
    }
}

/// Receive `rest` raw bytes of a download over TLS into `file` (positioned already).
async fn receive_tls(
    stream: &mut DcStream,
    file: File,
    rest: u64,
    progress: &AtomicU64,
    control: &crate::ratelimit::TransferControl,
) -> io::Result<()> {
    let mut file = tokio::fs::File::from_std(file);
    let mut buf = vec![0u8; CHUNK];
    let mut left = rest;
    while left > 0 {
        if control.stopped() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
        }
        let want = left.min(CHUNK as u64) as usize;
        let n = timed(stream.read(&mut buf[..want])).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed mid-transfer"));
        }
        file.write_all(&buf[..n]).await?;
        left -= n as u64;
        progress.fetch_add(n as u64, Ordering::Relaxed);
        control.pace(n).await;
    }
    file.flush().await
}

/// The TTH of a file on disk.
pub fn file_tth(path: &Path) -> anyhow::Result<omnipeer_nmdc::tth::Tth> {
    Ok(omnipeer_nmdc::tth::Tth(super::share::hash_file(path)?.tth))
}
