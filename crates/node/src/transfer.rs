//! The data phase of a DCC transfer over a real socket: file bytes one way, 4-byte
//! acknowledgements the other, counted by `omnipeer_dcc::ack`'s machines.
//!
//! Bulk data does not go through the async runtime: once the handshake is done, the
//! socket is handed to a blocking thread that runs the same tight read/write loop a plain
//! copy would, so a transfer costs what a plain TCP copy costs (see `bench/`). The async
//! side only waits, reports progress from a shared counter, and shuts the socket down if it
//! is cancelled, which ends the thread.
//!
//! A receiver acknowledges everything it holds before it waits for more data (so a strict
//! sender, which sends one block and waits for its ack, is answered at once) and at least
//! every [`ACK_INTERVAL`] bytes while data keeps coming; its last acknowledgement goes out
//! only when the file is complete on disk. A sender has a second small thread that keeps
//! reading acknowledgements while the first writes: a sender that only writes can deadlock
//! against a receiver blocked on writing acks into a full socket buffer.

use crate::ratelimit::RateLimit;
use omnipeer_dcc::{FileReceiver, FileSender};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;

/// Bytes per read or write.
pub const CHUNK: usize = 256 * 1024;
/// A receiver that never has to wait for data still acknowledges this often.
pub const ACK_INTERVAL: u64 = 1 << 20;
/// How often progress is reported while a transfer runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// How a transfer failed.
#[derive(Debug, Error)]
pub enum TransferError {
    /// The peer closed before all bytes arrived (the partial file is kept for a resume).
    #[error("the peer closed the connection at byte {position} of {size}")]
    Incomplete {
        /// Bytes held.
        position: u64,
        /// The whole size.
        size: u64,
    },
    /// The receiver closed without acknowledging every byte.
    #[error("the peer closed the connection before acknowledging the whole file (last ack {last_ack:?}, size {size})")]
    Unacknowledged {
        /// The last acknowledgement seen.
        last_ack: Option<u32>,
        /// The whole size.
        size: u64,
    },
    /// Nothing moved for too long.
    #[error("the transfer stalled for {0:?}")]
    Stalled(Duration),
    /// The file being sent became shorter than announced.
    #[error("the file became shorter while it was being sent")]
    FileShrank,
    /// The transfer was cancelled (by the user, or at shutdown).
    #[error("the transfer was cancelled")]
    Cancelled,
    /// A socket or file error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn stall_or_io(e: io::Error, idle: Duration) -> TransferError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransferError::Stalled(idle),
        _ => TransferError::Io(e),
    }
}

/// Shuts the socket down when dropped unless disarmed: cancelling the async wait ends the
/// blocking thread.
struct ShutdownOnDrop(Option<StdTcpStream>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Run `work` on a blocking thread with the socket in blocking mode, reporting the shared
/// position to `progress` while it runs.
async fn run_blocking<T, F>(
    stream: TcpStream,
    idle: Duration,
    progress: &mut (dyn FnMut(u64) + Send),
    work: F,
) -> Result<T, TransferError>
where
    T: Send + 'static,
    F: FnOnce(StdTcpStream, Arc<AtomicU64>) -> Result<T, TransferError> + Send + 'static,
{
    let std = stream.into_std()?;
    std.set_nonblocking(false)?;
    std.set_read_timeout(Some(idle))?;
    std.set_write_timeout(Some(idle))?;
    let mut guard = ShutdownOnDrop(Some(std.try_clone()?));
    let position = Arc::new(AtomicU64::new(0));
    let pos = position.clone();
    let mut task = tokio::task::spawn_blocking(move || work(std, pos));
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let result = loop {
        tokio::select! {
            r = &mut task => break r,
            _ = tick.tick() => progress(position.load(Ordering::Relaxed)),
        }
    };
    guard.0 = None; // finished on its own: nothing to shut down
    progress(position.load(Ordering::Relaxed));
    result.map_err(|e| TransferError::Io(io::Error::other(e)))?
}

/// Receive the rest of a file into `file` (which must be positioned at
/// `receiver.position()`). `leftover` holds file bytes that arrived with the handshake.
/// The final acknowledgement is sent once every byte is in the file; then the connection
/// is closed. Returns the receiver with its final count.
pub async fn receive(
    stream: TcpStream,
    file: File,
    receiver: FileReceiver,
    leftover: Vec<u8>,
    idle: Duration,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<FileReceiver, TransferError> {
    run_blocking(stream, idle, progress, move |sock, pos| receive_blocking(sock, file, receiver, &leftover, idle, &pos))
        .await
}

fn receive_blocking(
    mut sock: StdTcpStream,
    mut file: File,
    mut receiver: FileReceiver,
    leftover: &[u8],
    idle: Duration,
    pos: &AtomicU64,
) -> Result<FileReceiver, TransferError> {
    pos.store(receiver.position(), Ordering::Relaxed);
    let mut buf = vec![0u8; CHUNK];
    let mut pending = leftover;
    let mut acked = receiver.position();
    while !receiver.is_complete() {
        let n = if !pending.is_empty() {
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            pending = &pending[n..];
            n
        } else {
            // Read what is there without waiting; before waiting for more, acknowledge
            // everything received. A strict sender (one block, then wait for its ack) is
            // answered at once, and a fast one is not slowed by an ack per read.
            match rustix::net::recv(&sock, &mut buf[..], rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    if acked != receiver.position() {
                        sock.write_all(&receiver.ack()).map_err(|e| stall_or_io(e, idle))?;
                        acked = receiver.position();
                    }
                    match sock.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(stall_or_io(e, idle)),
                    }
                }
                Err(e) => return Err(TransferError::Io(e.into())),
            }
        };
        if n == 0 {
            file.flush()?;
            return Err(TransferError::Incomplete { position: receiver.position(), size: receiver.size() });
        }
        let keep = receiver.accept(n);
        file.write_all(&buf[..keep])?;
        // While data keeps coming, still acknowledge at least every ACK_INTERVAL bytes so
        // the sender sees progress; the last ack waits until the file is complete on disk.
        if !receiver.is_complete() && receiver.position() - acked >= ACK_INTERVAL {
            sock.write_all(&receiver.ack()).map_err(|e| stall_or_io(e, idle))?;
            acked = receiver.position();
        }
        pos.store(receiver.position(), Ordering::Relaxed);
    }
    file.flush()?;
    drop(file);
    sock.write_all(&receiver.ack()).map_err(|e| stall_or_io(e, idle))?;
    let _ = sock.shutdown(Shutdown::Write);
    if receiver.overrun() > 0 {
        tracing::warn!(overrun = receiver.overrun(), "peer sent more than the announced size; the excess was dropped");
    }
    Ok(receiver)
}

/// Send the rest of a file: `file` is read from `sender.position()`. `leftover` holds
/// acknowledgement bytes that arrived with the handshake. Returns once every byte is
/// written and the receiver acknowledged the whole file.
pub async fn send(
    stream: TcpStream,
    file: File,
    sender: FileSender,
    leftover: Vec<u8>,
    idle: Duration,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<FileSender, TransferError> {
    send_limited(stream, file, sender, leftover, idle, None, progress).await
}

/// [`send`] paced by a shared upload limit (zero-copy while it is not limiting).
pub async fn send_limited(
    stream: TcpStream,
    file: File,
    mut sender: FileSender,
    leftover: Vec<u8>,
    idle: Duration,
    limit: Option<Arc<RateLimit>>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<FileSender, TransferError> {
    sender.on_ack_bytes(&leftover);
    run_blocking(stream, idle, progress, move |sock, pos| {
        send_blocking(sock, file, sender, idle, limit.as_deref(), &pos)
    })
    .await
}

fn send_blocking(
    sock: StdTcpStream,
    file: File,
    sender: FileSender,
    idle: Duration,
    limit: Option<&RateLimit>,
    pos: &AtomicU64,
) -> Result<FileSender, TransferError> {
    let start = sender.position();
    let left = sender.remaining();
    pos.store(start, Ordering::Relaxed);
    // The acknowledgement reader: keeps draining acks until the whole file is
    // acknowledged or the receiver closes.
    let ack_sock = sock.try_clone()?;
    let mut acks = sender.clone();
    let ack_thread = std::thread::Builder::new().name("dcc-acks".into()).spawn(move || {
        let mut sock = ack_sock;
        let mut buf = [0u8; 4096];
        let mut outcome = Ok(());
        while !acks.is_fully_acked() {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => acks.on_ack_bytes(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        (acks, outcome)
    })?;
    let written = send_file_range(&sock, &file, start, left, limit, idle, pos, None).map(|_| ());
    if written.is_err() {
        let _ = sock.shutdown(Shutdown::Both);
    }
    let (mut acked, ack_outcome) = ack_thread.join().map_err(|_| io::Error::other("ack reader panicked"))?;
    written?;
    acked.on_written(sender.remaining());
    if acked.is_fully_acked() {
        return Ok(acked);
    }
    if let Err(e) = ack_outcome {
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            return Err(TransferError::Stalled(idle));
        }
    }
    Err(TransferError::Unacknowledged { last_ack: acked.last_ack(), size: acked.size() })
}

/// Open (or create) `path` for receiving from `position`: anything past it is cut off.
pub fn open_for_receive(path: &std::path::Path, position: u64) -> io::Result<File> {
    let mut f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    // Truncate only when there is something to cut: on ext4 a truncate followed by writes
    // makes close() start writeback of the whole file (auto_da_alloc), which cost 40% of a
    // 1 GiB receive in the benchmark.
    if f.metadata()?.len() != position {
        f.set_len(position)?;
    }
    f.seek(SeekFrom::Start(position))?;
    Ok(f)
}

/// Bytes handed to one `sendfile(2)` call: large enough that the calls cost nothing, small
/// enough that progress moves several times a second.
const SENDFILE_CHUNK: u64 = 4 << 20;

/// When uploads go out with sendfile(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    /// To every peer but one on a loopback address (the default). On loopback, in the
    /// benches (512 MiB, this 2-core machine, shared with other builds), sendfile showed
    /// no steady gain over read+write and was often slower (NMDC 0.73 vs 0.99 of a plain
    /// copy in one pair of runs, 1.08 vs 0.90 in another; Soulseek 0.92 vs 1.05, 0.63 vs
    /// 1.23): nothing is saved where no network card is involved, and the receiver then
    /// copies from 4 KiB page fragments. Over a network card it saves the copy through
    /// user space, which is what it is for.
    Auto,
    /// Always (when the OS has it).
    Always,
    /// Never.
    Never,
}

static ZERO_COPY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// The process-wide [`ZeroCopy`] mode: set by [`set_zero_copy`], else from the
/// environment `OMNIPEER_SENDFILE` = `on` (always), `off` (never) or `auto` (default).
pub fn zero_copy() -> ZeroCopy {
    match ZERO_COPY.load(Ordering::Relaxed) {
        0 => ZeroCopy::Auto,
        1 => ZeroCopy::Always,
        2 => ZeroCopy::Never,
        _ => {
            let m = match std::env::var("OMNIPEER_SENDFILE").as_deref() {
                Ok("on" | "always" | "1") => ZeroCopy::Always,
                Ok("off" | "never" | "0") => ZeroCopy::Never,
                _ => ZeroCopy::Auto,
            };
            set_zero_copy(m);
            m
        }
    }
}

/// Set the process-wide [`ZeroCopy`] mode.
pub fn set_zero_copy(m: ZeroCopy) {
    ZERO_COPY.store(m as u8, Ordering::Relaxed);
}

/// Write `length` bytes of `file` from `start` to the (blocking) socket, adding each
/// chunk sent to `sent`. While `limit` does not limit, the bytes go with `sendfile(2)` on
/// Linux as [`zero_copy`] says: the kernel copies page cache to socket without a trip
/// through our buffers. Under a limit (or elsewhere, or if the file system refuses
/// sendfile) it reads and writes chunks sized to the rate, pausing as the shared limit
/// says. The limit is looked at every chunk, so changing it at run time switches paths
/// mid-file. `stop`, when it turns true, ends the send after the current chunk
/// ([`TransferError::Cancelled`]: the user cancelled the upload). Returns how many of the
/// bytes went zero-copy.
#[allow(clippy::too_many_arguments)]
pub fn send_file_range(
    sock: &StdTcpStream,
    file: &File,
    start: u64,
    length: u64,
    limit: Option<&RateLimit>,
    idle: Duration,
    sent: &AtomicU64,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<u64, TransferError> {
    let zero_copy = match zero_copy() {
        ZeroCopy::Always => true,
        ZeroCopy::Never => false,
        ZeroCopy::Auto => sock.peer_addr().is_ok_and(|a| !a.ip().is_loopback()),
    };
    send_file_range_with(sock, file, start, length, limit, idle, sent, stop, zero_copy)
}

#[allow(clippy::too_many_arguments)]
fn send_file_range_with(
    sock: &StdTcpStream,
    file: &File,
    start: u64,
    length: u64,
    limit: Option<&RateLimit>,
    idle: Duration,
    sent: &AtomicU64,
    stop: Option<&std::sync::atomic::AtomicBool>,
    zero_copy: bool,
) -> Result<u64, TransferError> {
    let mut offset = start;
    let mut zero_copied = 0u64;
    let end = start.checked_add(length).ok_or_else(|| io::Error::other("range past the end of any file"))?;
    let mut buf: Vec<u8> = Vec::new();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut zero_copy = zero_copy;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let zero_copy = {
        let _ = zero_copy;
        false
    };
    while offset < end {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(TransferError::Cancelled);
        }
        let left = end - offset;
        let rate = limit.map_or(0, RateLimit::rate);
        if zero_copy && rate == 0 {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                // rustix's safe wrapper of sendfile(2) (the crate already serves our
                // socket calls); `offset` is advanced by the kernel, the file position
                // is left alone.
                let want = left.min(SENDFILE_CHUNK) as usize;
                match rustix::fs::sendfile(sock, file, Some(&mut offset), want) {
                    Ok(0) => return Err(TransferError::FileShrank),
                    Ok(n) => {
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                        zero_copied += n as u64;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => return Err(TransferError::Stalled(idle)),
                    // A file system or socket type without sendfile: copy instead.
                    Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP) => {
                        zero_copy = false;
                    }
                    Err(e) => return Err(TransferError::Io(e.into())),
                }
            }
            continue;
        }
        // Chunks of about an eighth of a second at the limit, so pacing stays smooth.
        let chunk = if rate == 0 { CHUNK } else { (rate / 8).clamp(4096, CHUNK as u64) as usize };
        let want = left.min(chunk as u64) as usize;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let n = match read_at(file, &mut buf[..want], offset) {
            Ok(0) => return Err(TransferError::FileShrank),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        // Wait before writing, so that no byte leaves before the limit allows it.
        if let Some(l) = limit {
            l.pace_blocking(n);
        }
        (&*sock).write_all(&buf[..n]).map_err(|e| stall_or_io(e, idle))?;
        offset += n as u64;
        sent.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(zero_copied)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener as StdListener;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    /// Send `file[start..start+len]` over a loopback socket; returns what arrived.
    fn send_over_loopback(data: &[u8], start: u64, len: u64, limit: Option<&RateLimit>) -> (Vec<u8>, u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, data).unwrap();
        let file = File::open(&path).unwrap();
        let l = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let sock = StdTcpStream::connect(addr).unwrap();
        let sent = AtomicU64::new(0);
        let zero =
            send_file_range_with(&sock, &file, start, len, limit, Duration::from_secs(10), &sent, None, true).unwrap();
        sock.shutdown(Shutdown::Write).unwrap();
        (reader.join().unwrap(), sent.load(Ordering::Relaxed), zero)
    }

    #[test]
    fn a_range_from_an_offset_arrives_byte_exact_zero_copy() {
        // Larger than one sendfile chunk, from an odd offset (a resume), ending short of EOF.
        let data = pattern(9 << 20);
        let (start, len) = (1_234_567u64, (6 << 20) + 321u64);
        let (got, sent, zero) = send_over_loopback(&data, start, len, None);
        assert_eq!(sent, len);
        if cfg!(target_os = "linux") {
            assert_eq!(zero, len, "every byte went by sendfile");
        }
        assert_eq!(got.len() as u64, len);
        assert!(got == data[start as usize..(start + len) as usize], "bytes differ");
    }

    #[test]
    fn auto_mode_keeps_loopback_peers_on_the_copy_path() {
        // Loopback only here; `Auto` sends nothing zero-copy to a loopback peer.
        assert_eq!(zero_copy(), ZeroCopy::Auto, "no OMNIPEER_SENDFILE in the test environment");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, pattern(100_000)).unwrap();
        let file = File::open(&path).unwrap();
        let l = StdListener::bind("127.0.0.1:0").unwrap();
        let sock = StdTcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let sent = AtomicU64::new(0);
        let zero = send_file_range(&sock, &file, 0, 100_000, None, Duration::from_secs(5), &sent, None).unwrap();
        sock.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!((zero, got.len()), (0, 100_000));
    }

    #[test]
    fn the_buffered_path_under_a_limit_is_byte_exact_too() {
        let data = pattern(700_000);
        let limit = RateLimit::new(1 << 30);
        let (got, sent, zero) = send_over_loopback(&data, 99, 600_000, Some(&limit));
        assert_eq!((sent, zero), (600_000, 0));
        assert!(got == data[99..600_099], "bytes differ");
    }

    #[test]
    fn a_file_shorter_than_the_range_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, pattern(1000)).unwrap();
        let file = File::open(&path).unwrap();
        let l = StdListener::bind("127.0.0.1:0").unwrap();
        let sock = StdTcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap();
        let sent = AtomicU64::new(0);
        let r = send_file_range_with(&sock, &file, 500, 1000, None, Duration::from_secs(5), &sent, None, true);
        assert!(matches!(r, Err(TransferError::FileShrank)), "{r:?}");
        assert_eq!(sent.load(Ordering::Relaxed), 500);
    }
}
