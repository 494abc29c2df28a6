//! The data phase of a DCC transfer over a real socket: file bytes one way, 4-byte
//! acknowledgements the other, driven by the counting machines of `omnipeer_dcc::ack`.
//!
//! File I/O runs on a blocking thread that hands full buffers to the socket loop through a
//! small bounded channel (and gets them back empty), so disk and socket work overlap and no
//! buffer is allocated per chunk. The socket loop of a sender always keeps reading
//! acknowledgements while it writes: a sender that only writes can deadlock against a
//! receiver blocked on writing acks into a full socket buffer.

use omnipeer_dcc::{FileReceiver, FileSender};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bytes per chunk read from disk or the socket.
pub const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the disk thread and the socket loop.
const DEPTH: usize = 4;

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
    /// Nothing moved either way for too long.
    #[error("the transfer stalled for {0:?}")]
    Stalled(Duration),
    /// The file being sent became shorter than announced.
    #[error("the file became shorter while it was being sent")]
    FileShrank,
    /// A socket or file error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A progress callback: the absolute position reached.
pub type OnProgress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// Receive the rest of a file: `file` must be positioned at `receiver.position()`.
/// `leftover` holds file bytes that arrived with the handshake. Returns when the whole file
/// is on disk and acknowledged; the caller then closes the connection.
pub async fn receive<S>(
    stream: &mut S,
    file: File,
    receiver: &mut FileReceiver,
    leftover: &[u8],
    idle: Duration,
    progress: OnProgress<'_>,
) -> Result<(), TransferError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut disk = DiskWriter::start(file);
    let mut pending = leftover.to_vec();
    while !receiver.is_complete() {
        let mut buf = disk.free_buffer().await?;
        let n = if !pending.is_empty() {
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            pending.drain(..n);
            n
        } else {
            match tokio::time::timeout(idle, stream.read(&mut buf)).await {
                Err(_) => return Err(TransferError::Stalled(idle)),
                Ok(r) => r?,
            }
        };
        if n == 0 {
            disk.finish().await?;
            return Err(TransferError::Incomplete { position: receiver.position(), size: receiver.size() });
        }
        let keep = receiver.accept(n);
        disk.write(buf, keep).await?;
        stream.write_all(&receiver.ack()).await?;
        progress(receiver.position());
    }
    disk.finish().await?;
    stream.flush().await?;
    if receiver.overrun() > 0 {
        tracing::warn!(overrun = receiver.overrun(), "peer sent more than the announced size; the excess was dropped");
    }
    Ok(())
}

/// Send the rest of a file: `file` is read from `sender.position()`. `leftover` holds
/// acknowledgement bytes that arrived with the handshake. Returns once every byte is
/// written and the receiver acknowledged the whole file (or closed after the last byte
/// with a final acknowledgement seen).
pub async fn send(
    stream: &mut tokio::net::TcpStream,
    file: File,
    sender: &mut FileSender,
    leftover: &[u8],
    idle: Duration,
    progress: OnProgress<'_>,
) -> Result<(), TransferError> {
    sender.on_ack_bytes(leftover);
    let (mut rd, mut wr) = stream.split();
    let mut disk = DiskReader::start(file, sender.position(), sender.remaining());
    let mut acks = [0u8; 4096];
    let mut peer_closed = false;
    let mut chunk: Option<(Vec<u8>, usize, usize)> = None; // buffer, written, length
    loop {
        if chunk.is_none() && sender.remaining() > 0 {
            match disk.next().await? {
                Some((buf, len)) => chunk = Some((buf, 0, len)),
                None => return Err(TransferError::FileShrank),
            }
        }
        let Some((buf, off, len)) = chunk.as_mut() else { break };
        tokio::select! {
            r = rd.read(&mut acks), if !peer_closed => match r? {
                0 => peer_closed = true,
                n => sender.on_ack_bytes(&acks[..n]),
            },
            r = wr.write(&buf[*off..*len]) => {
                let n = r?;
                *off += n;
                sender.on_written(n as u64);
                progress(sender.position());
                if *off == *len {
                    let (buf, _, _) = chunk.take().expect("chunk present");
                    disk.recycle(buf);
                }
            }
            _ = tokio::time::sleep(idle) => return Err(TransferError::Stalled(idle)),
        }
        if peer_closed && chunk.is_some() {
            return Err(TransferError::Unacknowledged { last_ack: sender.last_ack(), size: sender.size() });
        }
    }
    wr.flush().await?;
    // Everything is written: wait for the final acknowledgement; the receiver closes.
    while !sender.is_fully_acked() && !peer_closed {
        match tokio::time::timeout(idle, rd.read(&mut acks)).await {
            Err(_) => return Err(TransferError::Stalled(idle)),
            Ok(Ok(0)) => peer_closed = true,
            Ok(Ok(n)) => sender.on_ack_bytes(&acks[..n]),
            // A reset after the last byte: judge by the acks already seen.
            Ok(Err(_)) => peer_closed = true,
        }
    }
    if sender.is_fully_acked() {
        Ok(())
    } else {
        Err(TransferError::Unacknowledged { last_ack: sender.last_ack(), size: sender.size() })
    }
}

/// Open (or create) `path` for receiving from `position`: anything past it is cut off.
pub fn open_for_receive(path: &std::path::Path, position: u64) -> io::Result<File> {
    let mut f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    f.set_len(position)?;
    f.seek(SeekFrom::Start(position))?;
    Ok(f)
}

/// Reads a file range on a blocking thread, `CHUNK` bytes at a time.
struct DiskReader {
    full: mpsc::Receiver<io::Result<(Vec<u8>, usize)>>,
    free: mpsc::Sender<Vec<u8>>,
}

impl DiskReader {
    fn start(mut file: File, from: u64, len: u64) -> DiskReader {
        let (full_tx, full) = mpsc::channel(DEPTH);
        let (free, mut free_rx) = mpsc::channel::<Vec<u8>>(DEPTH);
        for _ in 0..DEPTH {
            free.try_send(vec![0u8; CHUNK]).expect("channel has room");
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = file.seek(SeekFrom::Start(from)) {
                let _ = full_tx.blocking_send(Err(e));
                return;
            }
            let mut left = len;
            while left > 0 {
                let Some(mut buf) = free_rx.blocking_recv() else { return };
                let want = (left.min(CHUNK as u64)) as usize;
                let mut got = 0;
                while got < want {
                    match file.read(&mut buf[got..want]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = full_tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
                if got == 0 {
                    return; // the file shrank: the receiver sees the channel close
                }
                left -= got as u64;
                if full_tx.blocking_send(Ok((buf, got))).is_err() {
                    return;
                }
            }
        });
        DiskReader { full, free }
    }

    /// The next chunk, `None` at the end of what the file still holds.
    async fn next(&mut self) -> io::Result<Option<(Vec<u8>, usize)>> {
        self.full.recv().await.transpose()
    }

    fn recycle(&self, buf: Vec<u8>) {
        let _ = self.free.try_send(buf);
    }
}

/// Writes chunks to a file on a blocking thread.
struct DiskWriter {
    full: Option<mpsc::Sender<(Vec<u8>, usize)>>,
    free: mpsc::Receiver<Vec<u8>>,
    thread: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl DiskWriter {
    fn start(mut file: File) -> DiskWriter {
        let (full, mut full_rx) = mpsc::channel::<(Vec<u8>, usize)>(DEPTH);
        let (free_tx, free) = mpsc::channel(DEPTH + 1);
        for _ in 0..DEPTH {
            free_tx.try_send(vec![0u8; CHUNK]).expect("channel has room");
        }
        let thread = tokio::task::spawn_blocking(move || {
            while let Some((buf, len)) = full_rx.blocking_recv() {
                file.write_all(&buf[..len])?;
                let _ = free_tx.try_send(buf);
            }
            file.flush()?;
            Ok(())
        });
        DiskWriter { full: Some(full), free, thread: Some(thread) }
    }

    async fn free_buffer(&mut self) -> io::Result<Vec<u8>> {
        match self.free.recv().await {
            Some(b) => Ok(b),
            None => Err(self.fail().await),
        }
    }

    async fn write(&mut self, buf: Vec<u8>, len: usize) -> io::Result<()> {
        let tx = self.full.as_ref().expect("writer open");
        if tx.send((buf, len)).await.is_err() {
            return Err(self.fail().await);
        }
        Ok(())
    }

    /// The disk thread stopped early: its error.
    async fn fail(&mut self) -> io::Error {
        self.full = None;
        match self.thread.take() {
            Some(t) => match t.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => io::Error::other("disk writer stopped"),
                Err(e) => io::Error::other(e),
            },
            None => io::Error::other("disk writer stopped"),
        }
    }

    /// Write out everything queued and close the file.
    async fn finish(&mut self) -> io::Result<()> {
        self.full = None;
        match self.thread.take() {
            Some(t) => t.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}
