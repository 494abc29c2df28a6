//! The driver shared by the servers whose protocol core is one machine over many
//! connections (the NMDC hub, the Soulseek server): one task owns the machine; each
//! connection has one small task that reads from it (feeding the machine) and finishes
//! the writes its socket could not take at once.
//!
//! Output is cheap per recipient, because a hub at 10,000 users sends every login to
//! everybody (N² messages in a login storm) and every chat line to everybody:
//! - A broadcast ([`Action::Broadcast`]) is appended once to one shared log; each joined
//!   connection ([`Action::Join`]) only keeps a cursor into it. The driver does O(1) work
//!   per broadcast, not one queue push per recipient.
//! - Bytes for one connection ([`Action::Send`]) go to its own small queue, tagged with
//!   the log position at that moment, so the connection sees its own messages and the
//!   broadcasts in the order the machine made them.
//! - After a batch of inputs the driver itself writes what is new to every connection
//!   whose socket has room: one system call per connection per batch, gathered in a
//!   per-thread buffer, and no task woken. Only a connection whose socket is full has its
//!   task woken, to wait until the socket drains and write the rest. (Waking every
//!   connection's task for each broadcast — one shared `Notify` with 10,000 waiters, each
//!   task locking the log and its queue — made a chat line's p99 at 5,000 users 2.5×
//!   that of a plain relay on a loaded 2-core machine.)
//! - An idle connection owns no buffer: its task waits on the socket's readiness with no
//!   read buffer, and its state is one small record (see the unit test).
//! - A client that does not read (slow or stuck) is dropped once more than
//!   [`MAX_QUEUED_BYTES`] wait for it (in its queue or in the log behind its cursor),
//!   instead of stalling anybody or being buffered without end.
//!
//! The machine's events go to a handler, which may answer later (a password check on a
//! blocking thread, say) by posting a closure that runs against the machine.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection's id.
pub type ConnId = u64;

/// Bytes waiting for one client before it counts as stuck and is dropped: its own
/// messages, or those plus the broadcasts it has not taken yet once its socket is full
/// too (a writer that is only behind because the server was busy is not the client's
/// fault). Each message counts [`ENTRY_COST`] more. The kernel's socket buffers (several
/// MiB on loopback) come on top; a message bigger than this alone (a `$NickList` of a
/// huge hub) is still sent to a client that has nothing else waiting.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Bookkeeping counted per queued message on top of its bytes (queue slot, shared
/// buffer header), so a flood of tiny messages is bounded too.
pub const ENTRY_COST: usize = 64;
/// Connections the kernel queues for `accept` (the default of 128 dropped connects in a
/// login storm, and the clients retried a second or more later; Linux caps it at
/// `net.core.somaxconn`, 4096 by default since 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;
/// After the machine closes a connection, how long its last bytes (a refusal, say) may
/// take to leave before the socket is dropped anyway.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads (of at most [`READ_CHUNK`] bytes) on their way from the connections to the
/// machine: at most 4 MiB in flight. A reader waits when it is full, so clients that send
/// faster than the machine takes (20 connections each pushing a 63 MiB frame) cost this
/// much, not what they send (with 8192, 20 such connections took 160 MB before the first
/// of them was refused).
const FROM_CONNS_QUEUE: usize = 256;
/// Bytes read from a client at once (a buffer only while reading: idle clients hold none).
const READ_CHUNK: usize = 16 * 1024;
/// Bytes gathered into one write (in a per-thread buffer).
const WRITE_CHUNK: usize = 64 * 1024;
/// Inputs handled before what they caused is written out: a login storm becomes a few
/// large writes per connection instead of one per login.
const INPUT_BATCH: usize = 256;
/// Connections accepted in a row before the machine gets its turn.
const ACCEPT_BATCH: usize = 64;
/// Broadcast bytes appended between two sweeps of the log (which free what every joined
/// connection has taken and drop the connections too far behind).
const SWEEP_EVERY: usize = 256 * 1024;
/// Broadcast bytes after which they are written out even in the middle of a batch of
/// inputs (a flood of chat is written out as it comes, not 4 MiB at a time).
const FLUSH_EVERY: usize = 64 * 1024;
/// Connections closed after which the driver hands freed memory back to the system
/// ([`release_memory`]), once [`RELEASE_QUIET`] passed without a close: the allocator keeps
/// what a crowd of 10,000 freed otherwise (bench/src/slsk_server.rs).
pub const RELEASE_AFTER_CLOSES: usize = 500;
/// Time without a connection closing before freed memory is handed back (the leaving
/// connections' tasks and queues are freed by then).
pub const RELEASE_QUIET: Duration = Duration::from_secs(2);
/// How long the runtime's worker threads may be held while each empties its cache of
/// freed blocks ([`release_memory`]): only after a mass leave, when little else runs.
const WORKER_DRAIN_WAIT: Duration = Duration::from_millis(250);
/// Times a driver handed freed memory back ([`release_memory`]), in this process.
static RELEASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times a driver in this process has handed freed memory back to the system
/// after a mass leave (for tests).
pub fn memory_releases() -> u64 {
    RELEASES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Threads (the driver's included) that write a broadcast out to many connections.
const FLUSH_THREADS: usize = 4;
/// Connections from which a broadcast is written out by more than one thread.
const PARALLEL_FLUSH_MIN: usize = 1024;

/// What a machine asks the driver to do.
pub enum Action<E> {
    /// Write these bytes to this connection.
    Send(ConnId, Arc<[u8]>),
    /// Write these bytes to every joined connection except `except` and those whose tags
    /// (see [`Action::Join`]) share a bit with `skip`.
    Broadcast {
        /// The bytes, shared by every recipient.
        data: Arc<[u8]>,
        /// A connection that does not get them (the sender, say).
        except: Option<ConnId>,
        /// Connections with any of these tags do not get them.
        skip: u8,
    },
    /// From now on this connection gets the broadcasts (those not skipping `tags`).
    /// Joining again only changes its tags.
    Join(ConnId, u8),
    /// No more broadcasts for this connection.
    Leave(ConnId),
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
    /// Many connections closed and the driver is about to hand freed memory back to the
    /// system: work to run first on a blocking thread (a database freeing its cache, say),
    /// and to let the machine shrink what it keeps.
    fn release_memory(&mut self) -> Option<Box<dyn FnOnce() + Send>> {
        None
    }
}

/// A closure to run against the machine (an answer to one of its events).
pub type Control<M> = Box<dyn FnOnce(&mut M, Instant) + Send>;

/// Bind a listener for a server: `SO_REUSEADDR` (as [`TcpListener::bind`] sets) and a
/// backlog of [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(LISTEN_BACKLOG)
}

/// One broadcast in the log.
struct Entry {
    /// Bytes (plus [`ENTRY_COST`] each) appended to the log before this entry.
    start: u64,
    data: Arc<[u8]>,
    /// 0: nobody excepted (connection ids start at 1).
    except: ConnId,
    skip: u8,
}

/// The broadcasts not yet taken by every joined connection.
#[derive(Default)]
struct Log {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// Bytes (plus [`ENTRY_COST`] each) ever appended.
    end: u64,
}

impl Log {
    fn head(&self) -> u64 {
        self.base + self.entries.len() as u64
    }
    fn start_of(&self, seq: u64) -> u64 {
        self.entries.get((seq.saturating_sub(self.base)) as usize).map_or(self.end, |e| e.start)
    }
}

/// What the driver and all connection tasks share.
#[derive(Default)]
struct Shared {
    log: RwLock<Log>,
}

/// One connection: its socket and its output, shared by the driver (which queues, and
/// writes while the socket has room) and the connection's task (which reads, and writes
/// what a full socket did not take).
struct Outq {
    st: Mutex<OutState>,
    stream: TcpStream,
}

#[derive(Default)]
struct OutState {
    /// Own messages, each with the log's head when it was queued (the broadcasts before
    /// that go first).
    direct: VecDeque<(u64, Arc<[u8]>)>,
    /// Bytes of `direct[0]` already written.
    direct_off: usize,
    /// Bytes (plus [`ENTRY_COST`] each) in `direct` not yet written.
    direct_bytes: usize,
    /// Gets broadcasts.
    joined: bool,
    /// The next broadcast to look at (when joined).
    cursor: u64,
    /// Bytes of that broadcast already written.
    cursor_off: usize,
    tags: u8,
    /// Dropped (as stuck, after a write error, or at shutdown): write nothing more.
    killed: bool,
    /// The socket was full: the connection's task writes until it has caught up, the
    /// driver leaves it alone meanwhile. Only a client whose socket is full can be stuck.
    blocked: bool,
    /// Closed by the machine: write what is queued, then close.
    closing: bool,
    /// The connection's task, woken when it has something to do (blocked, closing,
    /// killed); never for ordinary output.
    waker: Option<Waker>,
}

/// Where a writer is in its merged stream of own messages and broadcasts.
struct Pos {
    cursor: u64,
    cursor_off: usize,
    /// Own messages finished.
    direct_done: usize,
    direct_off: usize,
    /// Own bytes (plus [`ENTRY_COST`] per finished message) covered.
    direct_bytes: usize,
}

/// Walk `st`'s pending bytes in order, at most `budget` of them, handing each piece to
/// `f`; where that ends.
fn walk(st: &OutState, log: &Log, me: ConnId, mut budget: usize, mut f: impl FnMut(&[u8])) -> Pos {
    let mut pos = Pos {
        cursor: st.cursor,
        cursor_off: st.cursor_off,
        direct_done: 0,
        direct_off: st.direct_off,
        direct_bytes: 0,
    };
    let head = log.head();
    if st.joined && pos.cursor < log.base {
        // Not expected (the sweep keeps what joined cursors need), but never index below
        // the log's start.
        pos.cursor = log.base;
        pos.cursor_off = 0;
    }
    while budget > 0 {
        let next_direct = st.direct.get(pos.direct_done);
        let from_log = st.joined && pos.cursor < head && next_direct.is_none_or(|(seq, _)| pos.cursor < *seq);
        if from_log {
            let e = &log.entries[(pos.cursor - log.base) as usize];
            if e.except == me || e.skip & st.tags != 0 {
                pos.cursor += 1;
                pos.cursor_off = 0;
                continue;
            }
            let rest = &e.data[pos.cursor_off..];
            let n = rest.len().min(budget);
            f(&rest[..n]);
            budget -= n;
            if n == rest.len() {
                pos.cursor += 1;
                pos.cursor_off = 0;
            } else {
                pos.cursor_off += n;
            }
        } else if let Some((_, data)) = next_direct {
            let rest = &data[pos.direct_off..];
            let n = rest.len().min(budget);
            f(&rest[..n]);
            budget -= n;
            pos.direct_bytes += n;
            if n == rest.len() {
                pos.direct_done += 1;
                pos.direct_off = 0;
                pos.direct_bytes += ENTRY_COST;
            } else {
                pos.direct_off += n;
            }
        } else {
            break;
        }
    }
    pos
}

impl OutState {
    fn advance(&mut self, pos: Pos) {
        self.cursor = pos.cursor;
        self.cursor_off = pos.cursor_off;
        self.direct.drain(..pos.direct_done);
        self.direct_off = pos.direct_off;
        self.direct_bytes = self.direct_bytes.saturating_sub(pos.direct_bytes);
        if self.direct.is_empty() && self.direct.capacity() > 0 {
            // A burst's queue is given back: 10,000 idle clients hold no slots.
            self.direct = VecDeque::new();
        }
    }

    /// Wake the connection's task (it has something to do).
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

thread_local! {
    /// Where a writer gathers its bytes for one system call (one per worker thread, not
    /// one per connection).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Who writes: the driver (and its flush threads), or the connection's own task.
#[derive(Clone, Copy, PartialEq)]
enum Writer {
    /// A plain non-blocking `send` (tokio's `try_write` costs a readiness check and a
    /// closure per call, 2% of the hub's CPU in a chat line's fan-out, `perf record`). A
    /// full socket then hands over to the task, whose first `try_write` sees it full and
    /// clears tokio's stale readiness.
    Driver,
    /// tokio's `try_write`, which keeps the socket's readiness right for the task's
    /// `poll_write_ready`.
    Task,
}

/// Write what is pending for `me` (up to [`WRITE_CHUNK`] bytes): the bytes written (0:
/// nothing pending), or the error (`WouldBlock`: the socket is full). A write that the
/// socket takes only in part marks the connection blocked too.
fn write_some(st: &mut OutState, log: &Log, me: ConnId, stream: &TcpStream, who: Writer) -> std::io::Result<usize> {
    if st.killed {
        return Err(std::io::ErrorKind::BrokenPipe.into());
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        let pos = walk(st, log, me, WRITE_CHUNK, |b| buf.extend_from_slice(b));
        if buf.is_empty() {
            // Only broadcasts not meant for this connection: step past them (so the log
            // can free them).
            st.advance(pos);
            return Ok(0);
        }
        let sent = match who {
            Writer::Driver => {
                rustix::net::send(stream, buf, rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT)
                    .map_err(std::io::Error::from)
            }
            Writer::Task => stream.try_write(buf),
        };
        let n = match sent {
            Ok(n) => n,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    st.blocked = true;
                }
                return Err(e);
            }
        };
        if n < buf.len() {
            st.blocked = true;
        }
        let pos = walk(st, log, me, n, |_| {});
        st.advance(pos);
        if buf.capacity() > WRITE_CHUNK {
            // One big message (a user list) does not keep its size in every thread.
            *buf = Vec::new();
        }
        Ok(n)
    })
}

/// Write what is pending for `me` while its socket takes it: `Ok(true)` if all of it
/// went, `Ok(false)` if the socket is full (the connection is marked blocked).
fn write_all_now(st: &mut OutState, log: &Log, me: ConnId, stream: &TcpStream, who: Writer) -> std::io::Result<bool> {
    loop {
        match write_some(st, log, me, stream, who) {
            Ok(0) => return Ok(true),
            Ok(_) if st.blocked => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

enum FromConn {
    Input(ConnId, Vec<u8>),
    Closed(ConnId),
}

/// The driver's side of the connections.
struct Conns {
    shared: Arc<Shared>,
    /// Each connection (until its task reports it closed), and whether it is already in
    /// `to_flush`.
    writers: HashMap<ConnId, (Arc<Outq>, bool)>,
    /// Every connection in `writers`, as a list to pass over after a broadcast (made again
    /// only after connections came or went, not for every chat line).
    all: Option<ConnList>,
    /// The threads that write out beside the driver.
    pool: FlushPool,
    /// Connections with own messages since the last flush.
    to_flush: Vec<ConnId>,
    /// Something was broadcast since the last flush.
    news: bool,
    /// Broadcast bytes since the last sweep.
    since_sweep: usize,
    /// Broadcast bytes since the last flush.
    since_flush: usize,
}

impl Conns {
    /// Carry out one action; a connection dropped as stuck is returned, for the machine.
    fn act<E>(&mut self, action: Action<E>) -> Option<ConnId> {
        match action {
            Action::Send(conn, data) => {
                let (q, queued) = self.writers.get_mut(&conn)?;
                let head = self.shared.log.read().expect("log lock").head();
                let mut st = q.st.lock().expect("outq lock");
                if st.killed {
                    return None;
                }
                let cost = data.len() + ENTRY_COST;
                // Its own messages are capped whether or not they were written yet (1000
                // list requests in one read must not queue 1000 lists).
                if st.direct_bytes > 0 && st.direct_bytes + cost > MAX_QUEUED_BYTES {
                    drop(st);
                    tracing::warn!(conn, "outbound queue full: dropping a slow client");
                    self.kill(conn);
                    return Some(conn);
                }
                st.direct_bytes += cost;
                st.direct.push_back((head, data));
                drop(st);
                if !*queued {
                    *queued = true;
                    self.to_flush.push(conn);
                }
            }
            Action::Broadcast { data, except, skip } => {
                let mut log = self.shared.log.write().expect("log lock");
                let start = log.end;
                let cost = data.len() + ENTRY_COST;
                log.end += cost as u64;
                log.entries.push_back(Entry { start, data, except: except.unwrap_or(0), skip });
                self.news = true;
                self.since_sweep += cost;
                self.since_flush += cost;
            }
            Action::Join(conn, tags) => {
                let (q, _) = self.writers.get(&conn)?;
                let head = self.shared.log.read().expect("log lock").head();
                let mut st = q.st.lock().expect("outq lock");
                if !st.joined && !st.killed && !st.closing {
                    st.joined = true;
                    st.cursor = head;
                    st.cursor_off = 0;
                }
                st.tags = tags;
            }
            Action::Leave(conn) => {
                if let Some((q, _)) = self.writers.get(&conn) {
                    q.st.lock().expect("outq lock").joined = false;
                }
            }
            Action::Close(conn) => {
                if let Some((q, _)) = self.writers.get(&conn) {
                    // Its cursor no longer holds the log back; what it was sent itself
                    // still goes out (its task writes it, then closes).
                    let mut st = q.st.lock().expect("outq lock");
                    st.joined = false;
                    st.closing = true;
                    st.wake();
                }
            }
            Action::Event(_) => {}
        }
        None
    }

    /// Drop a connection at once: nothing more is written to it, its task ends.
    fn kill(&mut self, conn: ConnId) {
        if let Some((q, _)) = self.writers.get(&conn) {
            let mut st = q.st.lock().expect("outq lock");
            st.killed = true;
            st.joined = false;
            st.direct = VecDeque::new();
            st.direct_bytes = 0;
            st.wake();
        }
    }

    /// The connection's task ended.
    fn remove(&mut self, conn: ConnId) {
        if let Some((q, _)) = self.writers.remove(&conn) {
            let mut st = q.st.lock().expect("outq lock");
            st.joined = false;
            st.killed = true;
            self.all = None;
        }
        // After a mass leave the map gives back its slots (it keeps its largest capacity
        // otherwise); shrinking only below a quarter keeps this amortised O(1).
        if self.writers.capacity() > 64 && self.writers.len() < self.writers.capacity() / 4 {
            self.writers.shrink_to(self.writers.len() * 2);
        }
        if self.to_flush.is_empty() && self.to_flush.capacity() > 1024 {
            self.to_flush = Vec::new();
        }
    }

    /// Free the broadcasts every joined connection has taken, and drop the connections
    /// more than [`MAX_QUEUED_BYTES`] behind (returned, for the machine).
    fn sweep(&mut self) -> Vec<ConnId> {
        self.since_sweep = 0;
        // Cursors first, then the log (never both locks at once here; a cursor read a
        // moment early only makes its connection look a little further behind).
        let joined: Vec<(ConnId, u64, usize, bool)> = self
            .writers
            .iter()
            .filter_map(|(&conn, (q, _))| {
                let st = q.st.lock().expect("outq lock");
                st.joined.then_some((conn, st.cursor, st.direct_bytes, st.blocked))
            })
            .collect();
        let mut stuck = Vec::new();
        let min = {
            let log = self.shared.log.read().expect("log lock");
            let mut min = log.head();
            for (conn, cursor, direct_bytes, blocked) in joined {
                let behind = (log.end - log.start_of(cursor)) as usize;
                // Only a client whose socket is full can be stuck.
                if blocked && behind + direct_bytes > MAX_QUEUED_BYTES {
                    stuck.push(conn);
                } else {
                    min = min.min(cursor);
                }
            }
            min
        };
        for &conn in &stuck {
            tracing::warn!(conn, "too far behind the broadcasts: dropping a slow client");
            self.kill(conn);
        }
        self.free_log_before(min);
        stuck
    }

    fn free_log_before(&mut self, min: u64) {
        let mut log = self.shared.log.write().expect("log lock");
        while log.base < min && log.entries.pop_front().is_some() {
            log.base += 1;
        }
        if log.entries.is_empty() && log.entries.capacity() > 1024 {
            log.entries = VecDeque::new();
        }
    }

    /// Write what is new to every connection whose socket has room (the driver's own
    /// system calls, no task woken); a connection whose socket is full gets its task
    /// woken to finish. After a broadcast this passes over every connection (on more than
    /// one thread when there are many), and frees the log as far as they all took it.
    /// Connections that failed are returned.
    fn flush(&mut self) -> Vec<ConnId> {
        self.since_flush = 0;
        let news = std::mem::take(&mut self.news);
        if news {
            for conn in self.to_flush.drain(..) {
                if let Some((_, queued)) = self.writers.get_mut(&conn) {
                    *queued = false;
                }
            }
            let writers = &self.writers;
            let list = self
                .all
                .get_or_insert_with(|| writers.iter().map(|(&conn, (q, _))| (conn, q.clone())).collect())
                .clone();
            let (min, failed) = self.pool.flush_all(&list, &self.shared, PARALLEL_FLUSH_MIN);
            if self.since_sweep < SWEEP_EVERY {
                // What every connection took is freed now (a laggard's cursor holds the
                // rest until a sweep checks whether it is stuck).
                self.free_log_before(min);
            }
            failed
        } else if !self.to_flush.is_empty() {
            for conn in &self.to_flush {
                if let Some((_, queued)) = self.writers.get_mut(conn) {
                    *queued = false;
                }
            }
            let list: Vec<(ConnId, Arc<Outq>)> = self
                .to_flush
                .drain(..)
                .filter_map(|conn| self.writers.get(&conn).map(|(q, _)| (conn, q.clone())))
                .collect();
            let log = self.shared.log.read().expect("log lock");
            flush_chunk(&list, &log).1
        } else {
            Vec::new()
        }
    }
}

/// Connections to write out to, shared by the driver and its flush threads.
type ConnList = Arc<[(ConnId, Arc<Outq>)]>;

/// A slice of a flush handed to a [`FlushPool`] thread: these connections of `list`.
struct FlushJob {
    list: ConnList,
    range: std::ops::Range<usize>,
    shared: Arc<Shared>,
}

/// What a flush thread found: the lowest joined cursor and the connections that failed.
type FlushResult = (u64, Vec<ConnId>);

/// Threads that write a broadcast out beside the driver: up to [`FLUSH_THREADS`] - 1 of
/// them, started the first time a broadcast goes to [`PARALLEL_FLUSH_MIN`] connections
/// and kept until the driver ends (each waits for its next slice). Starting them for each
/// broadcast, as the driver did, cost two thread starts and exits per chat line.
#[derive(Default)]
struct FlushPool {
    /// Each thread: where its slices go, where its results come back.
    threads: Vec<(std::sync::mpsc::SyncSender<FlushJob>, std::sync::mpsc::Receiver<FlushResult>)>,
    /// Starting them failed once: the driver writes alone.
    failed: bool,
}

/// Flush threads started in this process (for tests: they are started once per driver, not
/// once per broadcast).
static FLUSH_THREADS_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl FlushPool {
    /// [`flush_chunk`] over all of `list`, split among the driver and up to
    /// [`FLUSH_THREADS`] - 1 flush threads (as many as the cores allow) when it is long: a
    /// chat line at 10,000 users is 10,000 system calls, and on a busy machine two threads
    /// get twice the share of the CPU one gets.
    /// Lists shorter than `parallel_min` ([`PARALLEL_FLUSH_MIN`]) are written by the driver
    /// alone.
    fn flush_all(&mut self, list: &ConnList, shared: &Arc<Shared>, parallel_min: usize) -> FlushResult {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(FLUSH_THREADS);
        if threads < 2 || list.len() < parallel_min || !self.start(threads - 1) {
            let log = shared.log.read().expect("log lock");
            return flush_chunk(list, &log);
        }
        let per = list.len().div_ceil(threads);
        // Slices 1.. to the threads (those that are gone leave theirs to the driver), slice
        // 0 here, at once.
        let mut mine = Vec::with_capacity(self.threads.len() + 1);
        mine.push(0..per.min(list.len()));
        let mut waiting = Vec::new();
        for (i, (jobs, _)) in self.threads.iter().enumerate() {
            let range = ((i + 1) * per).min(list.len())..((i + 2) * per).min(list.len());
            if range.is_empty() {
                continue;
            }
            match jobs.send(FlushJob { list: list.clone(), range: range.clone(), shared: shared.clone() }) {
                Ok(()) => waiting.push(i),
                Err(_) => mine.push(range),
            }
        }
        let (mut min, mut failed) = {
            let log = shared.log.read().expect("log lock");
            let mut min = log.head();
            let mut failed = Vec::new();
            for range in mine {
                let (m, f) = flush_chunk(&list[range], &log);
                min = min.min(m);
                failed.extend(f);
            }
            (min, failed)
        };
        let mut lost = false;
        for i in waiting {
            match self.threads[i].1.recv() {
                Ok((m, f)) => {
                    min = min.min(m);
                    failed.extend(f);
                }
                // The thread died (a panic): its slice may be half written; what it did
                // not write goes with the next flush (each connection's state is its own).
                Err(_) => lost = true,
            }
        }
        if lost {
            self.threads.clear();
            // Nothing is freed on a guess: the next flush gives the lowest cursor again.
            min = 0;
        }
        (min, failed)
    }

    /// Have `n` threads running (starting them if needed): whether they are.
    fn start(&mut self, n: usize) -> bool {
        if self.failed {
            return false;
        }
        while self.threads.len() < n {
            let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<FlushJob>(1);
            let (res_tx, res_rx) = std::sync::mpsc::sync_channel::<FlushResult>(1);
            let spawned = std::thread::Builder::new().name("flush".into()).spawn(move || {
                while let Ok(job) = job_rx.recv() {
                    let result = {
                        let log = job.shared.log.read().expect("log lock");
                        flush_chunk(&job.list[job.range], &log)
                    };
                    if res_tx.send(result).is_err() {
                        break;
                    }
                }
            });
            if spawned.is_err() {
                self.failed = true;
                self.threads.clear();
                return false;
            }
            FLUSH_THREADS_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.threads.push((job_tx, res_rx));
        }
        true
    }
}

/// Write what is pending to each connection in `list` whose socket has room; wake the
/// task of each whose socket is full. The lowest cursor of the joined ones (the log
/// before it can go) and the connections that failed.
fn flush_chunk(list: &[(ConnId, Arc<Outq>)], log: &Log) -> (u64, Vec<ConnId>) {
    let mut min = log.head();
    let mut failed = Vec::new();
    for (conn, q) in list {
        let conn = *conn;
        let mut st = q.st.lock().expect("outq lock");
        if st.killed {
            continue;
        }
        if !st.blocked {
            match write_all_now(&mut st, log, conn, &q.stream, Writer::Driver) {
                Ok(true) => {}
                // The task waits for the socket to drain and writes the rest.
                Ok(false) => st.wake(),
                Err(_) => {
                    st.killed = true;
                    st.joined = false;
                    st.wake();
                    failed.push(conn);
                }
            }
        }
        if st.joined {
            min = min.min(st.cursor);
        }
    }
    (min, failed)
}

/// Carry out everything the machine has to say (and what dropping stuck clients makes it
/// say).
fn drain<M, H>(machine: &mut M, conns: &mut Conns, on_event: &mut H, control: &mpsc::UnboundedSender<Control<M>>)
where
    M: Machine,
    H: FnMut(M::Event, &mpsc::UnboundedSender<Control<M>>),
{
    loop {
        while let Some(action) = machine.poll() {
            if let Action::Event(ev) = action {
                on_event(ev, control);
                continue;
            }
            if let Some(stuck) = conns.act(action) {
                machine.disconnect(stuck);
            }
        }
        if conns.since_sweep < SWEEP_EVERY {
            return;
        }
        let stuck = conns.sweep();
        for conn in stuck {
            machine.disconnect(conn);
        }
    }
}

/// Write out what the machine said (and carry out what failed writes make it say).
fn flush<M, H>(machine: &mut M, conns: &mut Conns, on_event: &mut H, control: &mpsc::UnboundedSender<Control<M>>)
where
    M: Machine,
    H: FnMut(M::Event, &mpsc::UnboundedSender<Control<M>>),
{
    loop {
        let failed = conns.flush();
        if failed.is_empty() {
            return;
        }
        for conn in failed {
            machine.disconnect(conn);
        }
        drain(machine, conns, on_event, control);
    }
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
    let shared = Arc::new(Shared::default());
    let mut conns = Conns {
        shared: shared.clone(),
        writers: HashMap::new(),
        all: None,
        pool: FlushPool::default(),
        to_flush: Vec::new(),
        news: false,
        since_sweep: 0,
        since_flush: 0,
    };
    let mut next_id: ConnId = 1;
    // Closes since memory was last handed back, the last of them, and whether a release
    // is under way.
    let mut closes = 0usize;
    let mut last_close = Instant::now();
    let releasing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Sweep now and then even when little is broadcast, so the log frees its tail.
    let mut sweep_timer = tokio::time::interval(Duration::from_secs(1));
    sweep_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        drain(&mut machine, &mut conns, &mut on_event, &control_tx);
        flush(&mut machine, &mut conns, &mut on_event, &control_tx);
        let deadline = machine.next_timeout();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => {
                let mut next = Some(r);
                let mut accepted = 0;
                while let Some(r) = next.take() {
                    let Ok((stream, peer)) = r else {
                        // Out of file descriptors, say: wait instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    };
                    let conn = next_id;
                    next_id += 1;
                    let _ = stream.set_nodelay(true);
                    let q = Arc::new(Outq { st: Mutex::new(OutState::default()), stream });
                    conns.writers.insert(conn, (q.clone(), false));
                    conns.all = None;
                    machine.accept(Instant::now(), conn, peer);
                    drain(&mut machine, &mut conns, &mut on_event, &control_tx);
                    tracker.spawn(serve_conn(conn, q, shared.clone(), to_machine.clone()));
                    accepted += 1;
                    if accepted < ACCEPT_BATCH {
                        // Take the connections already waiting without a turn of the loop.
                        next = tokio::select! {
                            biased;
                            r = listener.accept() => Some(r),
                            _ = std::future::ready(()) => None,
                        };
                    }
                }
            }
            Some(msg) = from_conns.recv() => {
                let mut next = Some(msg);
                let mut handled = 0;
                while let Some(msg) = next.take() {
                    match msg {
                        FromConn::Input(conn, bytes) => machine.input(Instant::now(), conn, &bytes),
                        FromConn::Closed(conn) => {
                            conns.remove(conn);
                            machine.disconnect(conn);
                            closes += 1;
                            last_close = Instant::now();
                        }
                    }
                    drain(&mut machine, &mut conns, &mut on_event, &control_tx);
                    if conns.since_flush >= FLUSH_EVERY {
                        flush(&mut machine, &mut conns, &mut on_event, &control_tx);
                    }
                    handled += 1;
                    if handled < INPUT_BATCH {
                        next = from_conns.try_recv().ok();
                    }
                }
            }
            Some(control) = control_rx.recv() => control(&mut machine, Instant::now()),
            _ = sweep_timer.tick() => {
                if !conns.shared.log.read().expect("log lock").entries.is_empty() {
                    for conn in conns.sweep() {
                        machine.disconnect(conn);
                    }
                }
                if closes >= RELEASE_AFTER_CLOSES
                    && last_close.elapsed() >= RELEASE_QUIET
                    && !releasing.swap(true, std::sync::atomic::Ordering::AcqRel)
                {
                    closes = 0;
                    release_memory(machine.release_memory(), releasing.clone());
                }
            }
            _ = sleep_until_opt(deadline) => machine.timeout(Instant::now()),
        }
    }
    // Every connection ends now; none waits for room to report it.
    for (q, _) in conns.writers.values() {
        let mut st = q.st.lock().expect("outq lock");
        st.killed = true;
        st.wake();
    }
    drop(from_conns);
    drop(conns);
    tracker.close();
    tracker.wait().await;
    machine
}

/// Hand the memory a crowd freed back to the system, after it left: `first` (the machine's
/// own, on a blocking thread), then every thread's cache of freed blocks emptied (this
/// thread's, the driver's, at once; the runtime's workers', each by a short task that
/// holds its worker until all have), those blocks freed on a thread that exits, and the
/// heap trimmed ([`crate::store::release_free_heap`]). Without the caches emptied, the
/// trim left 0.85 MiB of 1 MiB resident after 1,000 users left (see
/// [`crate::store::take_thread_cache`]).
fn release_memory(first: Option<Box<dyn FnOnce() + Send>>, releasing: Arc<std::sync::atomic::AtomicBool>) {
    use crate::store::{free_on_exiting_thread, release_free_heap, take_thread_cache, CachedBlocks};
    // A thread's write buffer, grown to [`WRITE_CHUNK`] by the crowd's broadcasts and
    // allocated among its records, goes too (the next write allocates it again).
    let drop_scratch = || {
        let _ = SCRATCH.try_with(|s| s.try_borrow_mut().map(|mut s| *s = Vec::new()));
    };
    drop_scratch();
    let mut held = take_thread_cache();
    tokio::spawn(async move {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let drained = Arc::new(Mutex::new((std::collections::HashSet::new(), CachedBlocks::default())));
        // More tasks than workers: each one blocks its worker for a moment, so the others
        // go to the other workers.
        let tasks: Vec<_> = (0..2 * workers)
            .map(|_| {
                let drained = drained.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    {
                        let mut d = drained.lock().expect("drained lock");
                        if d.0.insert(std::thread::current().id()) {
                            drop_scratch();
                            d.1.extend(take_thread_cache());
                        }
                    }
                    while drained.lock().expect("drained lock").0.len() < workers && start.elapsed() < WORKER_DRAIN_WAIT
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        let from_workers = std::mem::take(&mut drained.lock().expect("drained lock").1);
        held.extend(from_workers);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(first) = first {
                first();
            }
            held.extend(take_thread_cache());
            free_on_exiting_thread(held);
            release_free_heap();
            // A debugging aid (bench/src/slsk_server.rs): where the heap stands after a
            // mass leave.
            if let Some(path) = std::env::var_os("OMNIPEER_MALLOC_INFO") {
                crate::store::append_malloc_info(std::path::Path::new(&path));
            }
        })
        .await;
        RELEASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        releasing.store(false, std::sync::atomic::Ordering::Release);
    });
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// What a connection's task does next.
enum Next {
    /// Bytes (or the end) may have arrived.
    Read,
    /// The socket may have room for what is pending (blocked or closing).
    Write,
    /// Killed, or the close flush took too long.
    End,
}

/// A connection's task: read from it and hand the bytes to the machine; when its socket
/// was full, write the rest as it drains; when the machine closes it, write what is
/// queued and close. It holds no buffer while it waits (its future is a few hundred
/// bytes: see the unit test).
async fn serve_conn(conn: ConnId, q: Arc<Outq>, shared: Arc<Shared>, to_machine: mpsc::Sender<FromConn>) {
    // Boxed: only a closing connection needs a timer.
    let mut flush_deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let next = std::future::poll_fn(|cx| {
            let mut st = q.st.lock().expect("outq lock");
            if st.killed {
                return Poll::Ready(Next::End);
            }
            if st.closing && flush_deadline.is_none() {
                flush_deadline = Some(Box::pin(tokio::time::sleep(CLOSE_FLUSH_TIMEOUT)));
            }
            if st.closing && !st.blocked {
                // Flush what is left, then close.
                return Poll::Ready(Next::Write);
            }
            if st.blocked && q.stream.poll_write_ready(cx).is_ready() {
                return Poll::Ready(Next::Write);
            }
            if let Some(d) = flush_deadline.as_mut() {
                if d.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Next::End);
                }
            } else if q.stream.poll_read_ready(cx).is_ready() {
                return Poll::Ready(Next::Read);
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        match next {
            Next::End => break,
            Next::Read => {
                // The read buffer lives only for the read.
                let mut buf = vec![0u8; READ_CHUNK];
                let bytes = match q.stream.try_read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => buf[..n].to_vec(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break,
                };
                drop(buf);
                if to_machine.send(FromConn::Input(conn, bytes)).await.is_err() {
                    break;
                }
            }
            Next::Write => {
                let done = {
                    // The log before a connection's state, as the driver takes them.
                    let log = shared.log.read().expect("log lock");
                    let mut st = q.st.lock().expect("outq lock");
                    st.blocked = false;
                    write_all_now(&mut st, &log, conn, &q.stream, Writer::Task).map(|all| all && st.closing)
                };
                match done {
                    Ok(true) => {
                        // Everything queued before the close is out.
                        let _ = rustix::net::shutdown(&q.stream, rustix::net::Shutdown::Write);
                        break;
                    }
                    Ok(false) => {}
                    Err(_) => break,
                }
            }
        }
    }
    q.st.lock().expect("outq lock").killed = true;
    let _ = to_machine.send(FromConn::Closed(conn)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one idle connection costs the driver (printed for the notes on memory; the
    /// hub's goal is 4 KiB per user in all). Before issue 14 each writer also kept a
    /// batch buffer of up to 16 KiB and a channel of 4096 slots; before the driver wrote
    /// broadcasts itself, each connection's task (a reader and a writer joined, each with
    /// its wake-up futures and cancellation tokens) was a 2.8 KiB allocation.
    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer_and_little_state() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let q = Arc::new(Outq { st: Mutex::new(OutState::default()), stream });
        let (tx, _rx) = mpsc::channel(1);
        let fut = serve_conn(1, q.clone(), Arc::new(Shared::default()), tx);
        let task = std::mem::size_of_val(&fut);
        let outq = std::mem::size_of::<Outq>();
        eprintln!(
            "per connection: task future {task} B, queue state and socket {outq} B, log entry {} B",
            std::mem::size_of::<Entry>()
        );
        assert!(outq <= 256, "{outq}");
        assert!(task <= 512, "{task}");
        // An emptied queue gives its slots back.
        let mut st = OutState::default();
        for _ in 0..100 {
            st.direct.push_back((0, Arc::from(&b"x|"[..])));
        }
        st.direct_bytes = 100 * (2 + ENTRY_COST);
        let pos = walk(&st, &Log::default(), 1, usize::MAX, |_| {});
        st.advance(pos);
        assert_eq!((st.direct.capacity(), st.direct_bytes), (0, 0));
    }

    /// Own messages and broadcasts come out in the order the machine made them, and a
    /// broadcast skips the excepted connection and the skipped tags.
    #[test]
    fn own_messages_and_broadcasts_keep_their_order() {
        let mut log = Log::default();
        let push = |log: &mut Log, data: &[u8], except: ConnId, skip: u8| {
            let start = log.end;
            log.end += (data.len() + ENTRY_COST) as u64;
            log.entries.push_back(Entry { start, data: Arc::from(data), except, skip });
        };
        let mut st = OutState { joined: true, tags: 2, ..Default::default() };
        push(&mut log, b"a|", 0, 0);
        st.direct.push_back((log.head(), Arc::from(&b"own1|"[..])));
        push(&mut log, b"not-for-me|", 7, 0);
        push(&mut log, b"skipped|", 0, 2);
        push(&mut log, b"b|", 0, 1);
        st.direct.push_back((log.head(), Arc::from(&b"own2|"[..])));
        push(&mut log, b"c|", 0, 0);
        let mut out = Vec::new();
        walk(&st, &log, 7, usize::MAX, |b| out.extend_from_slice(b));
        assert_eq!(String::from_utf8(out).unwrap(), "a|own1|b|own2|c|");
        // Written in pieces (a partial write in the middle of a message), the same bytes.
        let mut out = Vec::new();
        loop {
            let mut piece = Vec::new();
            let pos = walk(&st, &log, 7, 3, |b| piece.extend_from_slice(b));
            if piece.is_empty() {
                break;
            }
            out.extend_from_slice(&piece);
            st.advance(pos);
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a|own1|b|own2|c|");
        assert_eq!((st.cursor, st.direct.len()), (log.head(), 0));
    }

    /// A broadcast to many connections is written by the driver and its flush threads,
    /// which are started once and kept, not started for every broadcast; every connection
    /// gets every byte, in order.
    #[tokio::test]
    async fn flush_threads_are_started_once_and_every_connection_gets_everything() {
        use tokio::io::AsyncReadExt;
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut list = Vec::new();
        for conn in 1..=9 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let st = OutState { joined: true, ..Default::default() };
            list.push((conn, Arc::new(Outq { st: Mutex::new(st), stream })));
        }
        let list: ConnList = list.into();
        let shared = Arc::new(Shared::default());
        let mut pool = FlushPool::default();
        let before = FLUSH_THREADS_STARTED.load(std::sync::atomic::Ordering::Relaxed);
        for line in 0..5 {
            {
                let mut log = shared.log.write().unwrap();
                let data: Arc<[u8]> = Arc::from(format!("<x> line {line}|").as_bytes());
                let start = log.end;
                log.end += (data.len() + ENTRY_COST) as u64;
                log.entries.push_back(Entry { start, data, except: 0, skip: 0 });
            }
            let list = list.clone();
            let shared2 = shared.clone();
            // The pool blocks while its threads write: off the runtime's threads.
            let (p, (min, failed)) = tokio::task::spawn_blocking(move || {
                let r = pool.flush_all(&list, &shared2, 2);
                (pool, r)
            })
            .await
            .unwrap();
            pool = p;
            assert!(failed.is_empty());
            assert_eq!(min, shared.log.read().unwrap().head(), "every connection took the line");
        }
        let started = FLUSH_THREADS_STARTED.load(std::sync::atomic::Ordering::Relaxed) - before;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(FLUSH_THREADS);
        // Other tests in this process may start pools of their own at the same time; this
        // one started at most its own threads once (5 broadcasts would have started 5x).
        assert_eq!(pool.threads.len(), cores - 1);
        assert!(started >= cores - 1 && started < 5 * (cores - 1).max(1), "{started}");
        let want: String = (0..5).map(|l| format!("<x> line {l}|")).collect();
        for c in &mut clients {
            let mut got = vec![0u8; want.len()];
            tokio::time::timeout(Duration::from_secs(30), c.read_exact(&mut got)).await.unwrap().unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), want);
        }
    }
}
