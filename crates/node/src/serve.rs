//! The driver shared by the servers whose protocol core is one machine over many
//! connections (the NMDC hub, the Soulseek server): one task owns the machine; each
//! connection has a reader task that feeds it and a writer task that drains a bounded
//! queue, coalescing what is queued into one write. A client whose queue is full (slow or
//! stuck) is disconnected instead of stalling anybody else.
//!
//! The machine's events go to a handler, which may answer later (a password check on a
//! blocking thread, say) by posting a closure that runs against the machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection's id.
pub type ConnId = u64;

/// Messages queued for one client before it counts as stuck and is dropped.
pub const OUTBOUND_QUEUE: usize = 4096;
/// Most bytes gathered from the queue into one write.
const WRITE_BATCH: usize = 256 * 1024;
/// A write buffer grown past this by a burst is given back after the write (10,000
/// clients each keeping a 256 KiB batch would hold 2.5 GB).
const BATCH_KEEP: usize = 16 * 1024;
/// Reads (of at most [`READ_CHUNK`] bytes) on their way from the connections to the
/// machine: at most 4 MiB in flight. A reader waits when it is full, so clients that send
/// faster than the machine takes (20 connections each pushing a 63 MiB frame) cost this
/// much, not what they send (with 8192, 20 such connections took 160 MB before the first
/// of them was refused).
const FROM_CONNS_QUEUE: usize = 256;
/// Bytes read from a client at once (a buffer only while reading: idle clients hold none).
const READ_CHUNK: usize = 16 * 1024;

/// What a machine asks the driver to do.
pub enum Action<E> {
    /// Write these bytes to this connection.
    Send(ConnId, Arc<[u8]>),
    /// Close this connection after what was queued for it.
    Close(ConnId),
    /// Hand this to the event handler.
    Event(E),
}

/// A protocol core serving many connections.
pub trait Machine: Send + 'static {
    /// What it reports.
    type Event: Send + 'static;
    /// A connection was accepted.
    fn accept(&mut self, now: Instant, conn: ConnId, peer: SocketAddr);
    /// Bytes arrived.
    fn input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]);
    /// The connection is gone (closed by the peer, or dropped by the driver).
    fn disconnect(&mut self, conn: ConnId);
    /// Time passed.
    fn timeout(&mut self, now: Instant);
    /// When [`Machine::timeout`] has work next.
    fn next_timeout(&self) -> Option<Instant>;
    /// The next action.
    fn poll(&mut self) -> Option<Action<Self::Event>>;
}

/// A closure to run against the machine (an answer to one of its events).
pub type Control<M> = Box<dyn FnOnce(&mut M, Instant) + Send>;

/// A connection's outbound queue and the token that closes it.
type Writer = (mpsc::Sender<Arc<[u8]>>, CancellationToken);

enum FromConn {
    Input(ConnId, Vec<u8>),
    Closed(ConnId),
}

/// Serve `listener` until `shutdown`. `on_event` gets every event and a sender for
/// answers; it must not block (hand slow work to other tasks).
pub async fn serve<M, H>(listener: TcpListener, mut machine: M, mut on_event: H, shutdown: CancellationToken) -> M
where
    M: Machine,
    H: FnMut(M::Event, &mpsc::UnboundedSender<Control<M>>),
{
    let (to_machine, mut from_conns) = mpsc::channel::<FromConn>(FROM_CONNS_QUEUE);
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Control<M>>();
    let tracker = tokio_util::task::TaskTracker::new();
    let mut writers: HashMap<ConnId, Writer> = HashMap::new();
    let mut next_id: ConnId = 1;
    loop {
        while let Some(action) = machine.poll() {
            match action {
                Action::Send(conn, data) => {
                    if let Some((tx, close)) = writers.get(&conn) {
                        if tx.try_send(data).is_err() {
                            tracing::warn!(conn, "outbound queue full: dropping a slow client");
                            close.cancel();
                            writers.remove(&conn);
                            machine.disconnect(conn);
                        }
                    }
                }
                Action::Close(conn) => {
                    if let Some((_, close)) = writers.remove(&conn) {
                        close.cancel();
                    }
                }
                Action::Event(ev) => on_event(ev, &control_tx),
            }
        }
        let deadline = machine.next_timeout();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => {
                let Ok((stream, peer)) = r else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let conn = next_id;
                next_id += 1;
                let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
                let close = CancellationToken::new();
                writers.insert(conn, (tx, close.clone()));
                machine.accept(Instant::now(), conn, peer);
                tracker.spawn(serve_conn(conn, stream, rx, close, to_machine.clone(), shutdown.clone()));
            }
            Some(msg) = from_conns.recv() => match msg {
                FromConn::Input(conn, bytes) => machine.input(Instant::now(), conn, &bytes),
                FromConn::Closed(conn) => {
                    writers.remove(&conn);
                    machine.disconnect(conn);
                }
            },
            Some(control) = control_rx.recv() => control(&mut machine, Instant::now()),
            _ = sleep_until_opt(deadline) => machine.timeout(Instant::now()),
        }
    }
    drop(writers);
    tracker.close();
    tracker.wait().await;
    machine
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn serve_conn(
    conn: ConnId,
    stream: TcpStream,
    mut rx: mpsc::Receiver<Arc<[u8]>>,
    close: CancellationToken,
    to_machine: mpsc::Sender<FromConn>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let writer = async {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(data) => {
                        // Coalesce what is queued into one write: a busy server sends many
                        // small messages, and one syscall each would fall behind.
                        batch.clear();
                        batch.extend_from_slice(&data);
                        while batch.len() < WRITE_BATCH {
                            match rx.try_recv() {
                                Ok(more) => batch.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                        if wr.write_all(&batch).await.is_err() { break }
                        if batch.capacity() > BATCH_KEEP {
                            batch = Vec::new();
                        }
                    }
                    None => break,
                },
                _ = close.cancelled() => {
                    // Flush what was queued before the close (a refusal, say), then stop.
                    while let Ok(data) = rx.try_recv() {
                        if wr.write_all(&data).await.is_err() { break }
                    }
                    break;
                }
            }
        }
        let _ = wr.shutdown().await;
    };
    let reader = async {
        loop {
            // Wait for bytes with no buffer; the read buffer lives only for the read.
            if rd.readable().await.is_err() {
                break;
            }
            let bytes = {
                let mut buf = vec![0u8; READ_CHUNK];
                match rd.try_read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => buf[..n].to_vec(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break,
                }
            };
            if to_machine.send(FromConn::Input(conn, bytes)).await.is_err() {
                break;
            }
        }
    };
    // The reader ending (peer gone) closes the writer too; a close from the machine ends both.
    let reader = async {
        tokio::select! {
            _ = reader => close.cancel(),
            _ = close.cancelled() => {}
        }
    };
    tokio::select! {
        _ = async { tokio::join!(writer, reader) } => {}
        _ = shutdown.cancelled() => {}
    }
    let _ = to_machine.send(FromConn::Closed(conn)).await;
}
