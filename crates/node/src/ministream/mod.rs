//! I2P ministreaming over the loopback transport: a tokio driver for
//! [`omnipeer_ministream::Manager`].
//!
//! One TCP connection per pair of endpoints carries all their streams, each ministreaming
//! message framed as
//!
//! ```text
//! +----------------------+------------------------------------+
//! | length u32 BE        | message: type 1, id 3, payload 0..n|
//! +----------------------+------------------------------------+
//! ```
//!
//! The SYN payload is the initiator's 32-byte destination key (random per [`Endpoint`] or
//! [`Listener`]). [`Stream`] implements `AsyncRead + AsyncWrite`. The protocol has no
//! half-close: shutting a stream down (or dropping it) closes it both ways, after the
//! data written before has gone out.
//!
//! One driver task per TCP connection owns the manager and both socket halves. It reads
//! the socket only while no stream's receive buffer is full (the manager's backpressure
//! signal), takes write commands from streams only while its output buffer is below
//! [`MAX_OUTBUF`], and keeps reading while it writes, so two endpoints echoing to each
//! other cannot deadlock on full socket buffers.

use omnipeer_ministream::frame::{FrameError, FrameReader};
use omnipeer_ministream::manager::{Config as ManagerConfig, ReadVec, Role, StreamMap, StreamSet};
use omnipeer_ministream::{Event, Manager, Output, StreamId, MAX_PAYLOAD};
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio_util::sync::PollSender;

pub use omnipeer_ministream::manager::{ACCEPT_TIMEOUT, CONNECT_TIMEOUT};

/// Bytes of framed messages the driver holds for the socket before it stops taking
/// writes from streams.
pub const MAX_OUTBUF: usize = 256 * 1024;
/// Commands (writes, connects, closes) queued from streams to one driver.
pub const COMMAND_QUEUE: usize = 64;
/// Received chunks (each at most one message payload) queued per stream for its reader.
pub const STREAM_QUEUE: usize = 4;
/// Incoming streams waiting for [`Listener::accept`]; further SYNs are refused at once.
pub const ACCEPT_BACKLOG: usize = 128;
/// Framed bytes read ahead of the manager at most.
const MAX_READAHEAD: usize = 4 * omnipeer_ministream::MAX_MESSAGE;
/// Bytes asked of the transport per read (straight into the frame reader's buffer).
const READ_SIZE: usize = 64 * 1024;
/// Most buffers handed to one vectored write (two per message: length, message).
const MAX_IOV: usize = 64;

/// Settings for endpoints and listeners.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a connect waits for the ACK.
    pub connect_timeout: Duration,
    /// How long a SYN may wait for [`Listener::accept`] before it is refused.
    pub accept_timeout: Duration,
    /// Incoming streams waiting for [`Listener::accept`] (default [`ACCEPT_BACKLOG`]);
    /// further SYNs are refused at once, as a full TCP listen queue drops connects.
    pub accept_backlog: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { connect_timeout: CONNECT_TIMEOUT, accept_timeout: ACCEPT_TIMEOUT, accept_backlog: ACCEPT_BACKLOG }
    }
}

impl Config {
    fn manager(&self) -> ManagerConfig {
        ManagerConfig {
            connect_timeout: self.connect_timeout,
            accept_timeout: self.accept_timeout,
            ..ManagerConfig::default()
        }
    }
}

pub mod sam;

enum Command {
    Connect(oneshot::Sender<io::Result<Stream>>),
    Accept(StreamId, oneshot::Sender<bool>),
    /// A data message: four header bytes to fill in, then the payload.
    Send(StreamId, Vec<u8>),
    Close(StreamId),
}

fn new_manager(cfg: &Config, key: &[u8; 32], listening: bool) -> Manager {
    let mut m = Manager::new(cfg.manager(), key.to_vec(), Box::new(rand::random::<u32>));
    m.set_listening(listening);
    m
}

/// The connecting side: opens streams to peers, one TCP connection per peer.
pub struct Endpoint {
    cfg: Config,
    key: [u8; 32],
    conns: Mutex<HashMap<SocketAddr, mpsc::Sender<Command>>>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new(Config::default())
    }
}

impl Endpoint {
    /// An endpoint with a random destination key.
    pub fn new(cfg: Config) -> Self {
        Endpoint { cfg, key: rand::random(), conns: Mutex::new(HashMap::new()) }
    }

    /// Opens a stream to the listener at `peer`, reusing the TCP connection to it.
    /// A `52` answer gives [`io::ErrorKind::ConnectionRefused`], no answer within the
    /// connect timeout [`io::ErrorKind::TimedOut`].
    pub async fn connect(&self, peer: SocketAddr) -> io::Result<Stream> {
        let tx = {
            let mut conns = self.conns.lock().await;
            match conns.get(&peer) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let tcp = TcpStream::connect(peer).await?;
                    let tx = spawn_driver(tcp, new_manager(&self.cfg, &self.key, false), None);
                    conns.insert(peer, tx.clone());
                    tx
                }
            }
        };
        let (otx, orx) = oneshot::channel();
        tx.send(Command::Connect(otx)).await.map_err(|_| gone())?;
        orx.await.map_err(|_| gone())?
    }
}

/// Opens one stream to `peer` on a new endpoint (default settings).
pub async fn connect(peer: SocketAddr) -> io::Result<Stream> {
    Endpoint::default().connect(peer).await
}

/// The accepting side: a TCP listener whose connections offer streams.
pub struct Listener {
    local: SocketAddr,
    rx: mpsc::Receiver<Stream>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Listens on `addr` with default settings.
    pub async fn bind(addr: SocketAddr) -> io::Result<Listener> {
        Listener::bind_with(addr, Config::default()).await
    }

    /// Listens on `addr`.
    pub async fn bind_with(addr: SocketAddr, cfg: Config) -> io::Result<Listener> {
        let tcp = TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        let key: [u8; 32] = rand::random();
        let (atx, rx) = mpsc::channel(cfg.accept_backlog.max(1));
        let task = tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((sock, _)) => {
                        spawn_driver(sock, new_manager(&cfg, &key, true), Some(atx.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("ministream accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Listener { local, rx, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next incoming stream. Its ACK is sent now; a SYN that waited longer than the
    /// accept timeout was already refused with `52` and is skipped.
    pub async fn accept(&mut self) -> io::Result<Stream> {
        accept_next(&mut self.rx).await
    }
}

/// Takes the next offered stream and has its driver send the ACK; streams whose SYN
/// already timed out are skipped.
async fn accept_next(rx: &mut mpsc::Receiver<Stream>) -> io::Result<Stream> {
    loop {
        let mut s = rx.recv().await.ok_or_else(gone)?;
        let Some(tx) = s.tx.get_ref().cloned() else { continue };
        let (otx, orx) = oneshot::channel();
        if tx.send(Command::Accept(s.id, otx)).await.is_ok() && orx.await == Ok(true) {
            return Ok(s);
        }
        s.closed = true;
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "ministream connection gone")
}

/// One ministreaming stream.
pub struct Stream {
    id: StreamId,
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    tx: PollSender<Command>,
    wake: Arc<Wake>,
    closed: bool,
    flags: Arc<Flags>,
}

/// What a stream and its driver share.
#[derive(Default)]
struct Flags {
    /// Set by the driver when the peer closed the stream (or the transport is gone).
    peer_closed: AtomicBool,
    /// Set by the driver when it has data for the stream and the stream's queue
    /// ([`STREAM_QUEUE`]) is full: the reader, on taking a chunk, wakes the driver. The
    /// driver is not woken for the other chunks (with 1,000 streams that was a wake-up
    /// and a pass over the streams per chunk read).
    want_room: AtomicBool,
}

/// Streams whose reader made room after the driver found their queue full.
#[derive(Default)]
struct Wake {
    notify: Notify,
    list: StdMutex<Vec<StreamId>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

impl Stream {
    /// Our id of the stream, as 6 hex digits.
    pub fn id(&self) -> String {
        self.id.id.to_string()
    }

    /// Whether we opened the stream.
    pub fn is_client(&self) -> bool {
        self.id.role == Role::Client
    }
}

impl AsyncRead for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos >= this.cur.len() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(chunk) => {
                    this.cur = chunk;
                    this.pos = 0;
                    // Pairs with the fence in `Driver::pump`: either the driver sees the
                    // room this receive made, or we see its `want_room`.
                    fence(Ordering::SeqCst);
                    if this.flags.want_room.swap(false, Ordering::SeqCst) {
                        if let Ok(mut l) = this.wake.list.lock() {
                            l.push(this.id);
                        }
                        this.wake.notify.notify_one();
                    }
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.cur.len() - this.pos);
        buf.put_slice(&this.cur[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream closed")));
        }
        if self.flags.peer_closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream closed by the peer")));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.tx.poll_reserve(cx)).map_err(|_| gone())?;
        let n = buf.len().min(MAX_PAYLOAD);
        let id = self.id;
        // The message is built here, once: four bytes for its header (the manager fills
        // them in), then the payload; the driver hands it to the socket as it is.
        let mut msg = Vec::with_capacity(4 + n);
        msg.extend_from_slice(&[0; 4]);
        msg.extend_from_slice(&buf[..n]);
        self.tx.send_item(Command::Send(id, msg)).map_err(|_| gone())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        if ready!(self.tx.poll_reserve(cx)).is_ok() {
            let id = self.id;
            let _ = self.tx.send_item(Command::Close(id));
        }
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let Some(tx) = self.tx.get_ref().cloned() else { return };
        if let Err(mpsc::error::TrySendError::Full(cmd)) = tx.try_send(Command::Close(self.id)) {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
        }
    }
}

fn spawn_driver(tcp: TcpStream, mgr: Manager, accept: Option<mpsc::Sender<Stream>>) -> mpsc::Sender<Command> {
    let _ = tcp.set_nodelay(true);
    let (rd, wr) = tcp.into_split();
    spawn_pipe_driver(rd, wr, mgr, accept)
}

/// Runs a manager over any byte pipe carrying length-framed messages (the TCP transport,
/// or an in-memory pipe that another transport turns into datagrams).
fn spawn_pipe_driver<R, W>(rd: R, wr: W, mgr: Manager, accept: Option<mpsc::Sender<Stream>>) -> mpsc::Sender<Command>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let driver = Driver {
        // A listener's connection keeps a sender of its own, so that it can hand out new
        // streams after all earlier ones were dropped.
        _keep: accept.as_ref().map(|_| tx.clone()),
        mgr,
        cmd_tx: tx.downgrade(),
        accept,
        wake: Arc::new(Wake::default()),
        live: StreamMap::default(),
        dirty: Vec::new(),
        blocked: StreamSet::default(),
        connects: StreamMap::default(),
        frames: FrameReader::new(),
        out: OutQueue::default(),
        deadline: None,
        eof: false,
    };
    tokio::spawn(driver.run(rd, wr, rx));
    tx
}

struct Driver {
    _keep: Option<mpsc::Sender<Command>>,
    mgr: Manager,
    cmd_tx: mpsc::WeakSender<Command>,
    accept: Option<mpsc::Sender<Stream>>,
    wake: Arc<Wake>,
    /// Each live stream's queue to its reader, and the flags shared with its [`Stream`].
    live: StreamMap<(mpsc::Sender<Vec<u8>>, Arc<Flags>)>,
    /// Streams with data (or an end) in the manager to move to their queue. A list, not a
    /// set: draining a hash set walks its whole table, and this is drained after every
    /// read from the transport. (A stream listed twice is looked at twice, harmlessly.)
    dirty: Vec<StreamId>,
    /// Streams with data whose queue is full; they wait for their reader's wake-up.
    blocked: StreamSet,
    connects: StreamMap<oneshot::Sender<io::Result<Stream>>>,
    frames: FrameReader,
    out: OutQueue,
    deadline: Option<Instant>,
    eof: bool,
}

impl Driver {
    async fn run<R, W>(mut self, mut rd: R, mut wr: W, mut rx: mpsc::Receiver<Command>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut cmds_open = true;
        loop {
            loop {
                let fed = self.feed();
                self.drain();
                self.pump();
                // Pumping may close streams whose reader is gone.
                self.drain();
                // Pumping may have ended a pause with whole messages read ahead: feed them
                // now (nothing else may wake this task: readers wake it only when their
                // queue was full, and the read-ahead may be full).
                if self.mgr.receive_paused() || (fed == 0 && !self.frames.has_frame()) {
                    break;
                }
            }
            let pending_out = !self.out.is_empty();
            if (self.eof || !cmds_open) && !pending_out && self.mgr.stream_count() == 0 && self.connects.is_empty() {
                break;
            }
            let can_read = !self.eof && !self.mgr.receive_paused() && self.frames.buffered() < MAX_READAHEAD;
            let can_cmd = cmds_open && self.out.bytes < MAX_OUTBUF;
            let sleep = self.deadline.map(|d| tokio::time::sleep_until(tokio::time::Instant::from_std(d)));
            let wake = self.wake.clone();
            let rbuf: &mut [u8] = if can_read { self.frames.spare(READ_SIZE) } else { &mut [] };
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let iovs = self.out.io_slices(&mut iov);
            tokio::select! {
                r = rd.read(rbuf), if can_read => match r {
                    Ok(0) | Err(_) => {
                        self.eof = true;
                        self.mgr.transport_closed();
                    }
                    Ok(n) => self.frames.commit(n),
                },
                w = wr.write_vectored(&iov[..iovs]), if pending_out => match w {
                    Ok(n) if n > 0 => self.out.advance(n),
                    _ => {
                        self.out.clear();
                        if !self.eof {
                            self.eof = true;
                            self.mgr.transport_closed();
                        }
                    }
                },
                c = rx.recv(), if can_cmd => match c {
                    Some(c) => {
                        self.command(c);
                        // Take what else is queued (up to the output limit) before the next
                        // pass: one pass per batch of writes, not per write.
                        while self.out.bytes < MAX_OUTBUF {
                            self.drain();
                            match rx.try_recv() {
                                Ok(c) => self.command(c),
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    cmds_open = false;
                                    break;
                                }
                            }
                        }
                    }
                    None => cmds_open = false,
                },
                _ = wake.notify.notified() => {}
                _ = async { sleep.unwrap().await }, if self.deadline.is_some() => {
                    self.mgr.handle_timeout(Instant::now());
                }
            }
        }
        let _ = wr.shutdown().await;
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Connect(reply) if self.eof => {
                let _ = reply.send(Err(gone()));
            }
            Command::Connect(reply) => match self.mgr.connect(Instant::now()) {
                Ok(s) => {
                    self.connects.insert(s, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(io::Error::other(e)));
                }
            },
            Command::Accept(s, reply) => {
                let _ = reply.send(self.mgr.accept(s).is_ok());
            }
            Command::Send(s, msg) => {
                let _ = self.mgr.send_message(s, msg);
            }
            Command::Close(s) => {
                self.remove(s);
                let _ = self.mgr.close(s);
            }
        }
    }

    /// Hands framed messages to the manager while it can take them.
    /// Returns how many messages it handed over.
    fn feed(&mut self) -> usize {
        let now = Instant::now();
        let mut fed = 0;
        while !self.mgr.receive_paused() {
            match self.frames.next_frame() {
                Ok(Some(m)) => {
                    self.mgr.handle_input(now, m);
                    fed += 1;
                }
                Ok(None) => break,
                Err(FrameError { len, .. }) => {
                    // Frames of 0..=3 bytes reach the manager, which drops them alone; only a
                    // length past the limit means the byte stream is out of step.
                    tracing::warn!("ministream: frame length {len} above the limit; dropping the connection");
                    self.frames = FrameReader::new();
                    self.mgr.transport_closed();
                    break;
                }
            }
        }
        fed
    }

    /// Moves received data from the manager to the streams' readers while they have room.
    /// Only streams that got data, or whose reader made room, are looked at.
    fn pump(&mut self) {
        if let Ok(mut l) = self.wake.list.lock() {
            for s in l.drain(..) {
                if self.blocked.remove(&s) {
                    self.dirty.push(s);
                }
            }
        }
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for s in dirty.drain(..) {
            let Some((tx, flags)) = self.live.get(&s) else { continue };
            let end = loop {
                match tx.try_reserve() {
                    Ok(permit) => match self.mgr.read_chunk(s, MAX_PAYLOAD) {
                        Ok(ReadVec::Data(v)) => permit.send(v),
                        Ok(ReadVec::WouldBlock) => break None,
                        Ok(ReadVec::Eof) | Err(_) => break Some(false),
                    },
                    Err(mpsc::error::TrySendError::Full(())) => {
                        flags.want_room.store(true, Ordering::SeqCst);
                        // Pairs with the fence in `Stream::poll_read`: a chunk taken
                        // before the flag was set shows as room here.
                        fence(Ordering::SeqCst);
                        if tx.capacity() > 0 {
                            continue;
                        }
                        self.blocked.insert(s);
                        break None;
                    }
                    // The reader is gone: close the stream.
                    Err(mpsc::error::TrySendError::Closed(())) => break Some(true),
                }
            };
            if let Some(close) = end {
                self.remove(s);
                if close {
                    let _ = self.mgr.close(s);
                }
            }
        }
        if self.dirty.is_empty() {
            // Keep the allocation.
            self.dirty = dirty;
        }
    }

    /// Forgets a stream's reader queue and flags (its reader then sees end of stream).
    fn remove(&mut self, s: StreamId) {
        // An entry left in `dirty` is skipped by `pump` (no longer live).
        self.live.remove(&s);
        self.blocked.remove(&s);
    }

    fn drain(&mut self) {
        self.deadline = None;
        while let Some(o) = self.mgr.poll_output() {
            match o {
                Output::Transmit(m) => self.out.push(m),
                Output::Timeout(t) => {
                    self.deadline = Some(t);
                    break;
                }
                Output::Event(e) => self.event(e),
            }
        }
    }

    fn new_stream(&mut self, id: StreamId) -> Option<Stream> {
        let cmd = self.cmd_tx.upgrade()?;
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let flags = Arc::new(Flags::default());
        self.live.insert(id, (tx, flags.clone()));
        Some(Stream {
            id,
            rx,
            cur: Vec::new(),
            pos: 0,
            tx: PollSender::new(cmd),
            wake: self.wake.clone(),
            closed: false,
            flags,
        })
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connected(s) => {
                let stream = self.new_stream(s);
                match (self.connects.remove(&s), stream) {
                    (Some(reply), Some(stream)) => {
                        let _ = reply.send(Ok(stream));
                    }
                    _ => {
                        self.remove(s);
                        let _ = self.mgr.close(s);
                    }
                }
            }
            Event::Refused(s) => {
                if let Some(reply) = self.connects.remove(&s) {
                    let _ = reply
                        .send(Err(io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused by the peer")));
                }
            }
            Event::ConnectTimedOut(s) => {
                if let Some(reply) = self.connects.remove(&s) {
                    let _ = reply.send(Err(io::Error::new(io::ErrorKind::TimedOut, "no answer to the SYN")));
                }
            }
            Event::Incoming { stream: s, .. } => {
                let Some(accept) = self.accept.clone() else {
                    let _ = self.mgr.close(s);
                    return;
                };
                let Some(stream) = self.new_stream(s) else {
                    let _ = self.mgr.close(s);
                    return;
                };
                // The ACK goes out when the application accepts (Command::Accept).
                match accept.try_send(stream) {
                    Ok(()) => {}
                    Err(e) => {
                        let mut stream = match e {
                            mpsc::error::TrySendError::Full(st) | mpsc::error::TrySendError::Closed(st) => st,
                        };
                        stream.closed = true;
                        self.remove(s);
                        let _ = self.mgr.close(s);
                    }
                }
            }
            Event::Readable(s) => {
                if !self.blocked.contains(&s) {
                    self.dirty.push(s);
                }
            }
            Event::Closed(s) => {
                if let Some((_, f)) = self.live.get(&s) {
                    f.peer_closed.store(true, Ordering::Release);
                }
                if !self.blocked.contains(&s) {
                    self.dirty.push(s);
                }
            }
            Event::AcceptTimedOut(s) => self.remove(s),
            Event::Overflow(s) => {
                if let Some((_, f)) = self.live.get(&s) {
                    f.peer_closed.store(true, Ordering::Release);
                }
                self.remove(s);
            }
        }
    }
}

/// Framed messages waiting for the socket, written with vectored writes: each message
/// stays the buffer it was built in (no copy into one output buffer).
#[derive(Default)]
struct OutQueue {
    /// Each message with its length prefix (docs/protocols/ministream.md#loopback).
    q: VecDeque<([u8; 4], Vec<u8>)>,
    /// Bytes of the front entry (prefix, then message) already written.
    off: usize,
    /// Bytes not yet written.
    bytes: usize,
}

impl OutQueue {
    fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    fn push(&mut self, m: Vec<u8>) {
        self.bytes += 4 + m.len();
        self.q.push_back(((m.len() as u32).to_be_bytes(), m));
    }

    fn clear(&mut self) {
        self.q.clear();
        self.off = 0;
        self.bytes = 0;
    }

    /// Fills `iov` with the unwritten bytes; returns how many slices it used.
    fn io_slices<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut k = 0;
        for (i, (len, m)) in self.q.iter().enumerate() {
            if k + 2 > iov.len() {
                break;
            }
            let skip = if i == 0 { self.off } else { 0 };
            if skip < 4 {
                iov[k] = IoSlice::new(&len[skip..]);
                k += 1;
            }
            let from = skip.saturating_sub(4);
            if from < m.len() {
                iov[k] = IoSlice::new(&m[from..]);
                k += 1;
            }
        }
        k
    }

    /// `n` bytes were written.
    fn advance(&mut self, mut n: usize) {
        self.bytes -= n.min(self.bytes);
        while n > 0 {
            let Some((_, m)) = self.q.front() else { break };
            let left = 4 + m.len() - self.off;
            if n < left {
                self.off += n;
                return;
            }
            n -= left;
            self.q.pop_front();
            self.off = 0;
        }
    }
}
