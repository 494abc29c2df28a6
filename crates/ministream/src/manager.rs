//! Many ministreaming streams between one pair of destinations, as a sans-IO machine.
//!
//! One [`Manager`] serves one transport connection (one peer). Either side may open
//! streams: as a *client* of a stream we choose its client id and send the SYN; as its
//! *server* we choose the server id and send the ACK. A stream is named locally by a
//! [`StreamId`] = (our role, the id we chose); every message but the SYN carries the
//! receiver's id, so incoming messages are looked up by (role, id).
//!
//! The driver feeds whole messages (transport framing removed) with
//! [`Manager::handle_input`], the time with [`Manager::handle_timeout`], application
//! calls ([`Manager::connect`], [`Manager::accept`], [`Manager::send`], [`Manager::read`],
//! [`Manager::close`]) as they come, and drains [`Manager::poll_output`] after each call.
//!
//! Backpressure: each stream buffers at most [`Config::recv_window`] received bytes
//! (plus one message). While any stream is at its limit [`Manager::receive_paused`] is
//! true and the driver must stop reading the transport; a message that would overflow
//! the hard limit resets that stream instead of growing the buffer.

use crate::message::{Id, Message};
use crate::MAX_PAYLOAD;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// How long a connect waits for its ACK.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SYN waits for the application to accept it (the original's 5 s).
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Received bytes buffered per stream before the driver is told to pause.
pub const RECV_WINDOW: usize = 256 * 1024;
/// Smallest buffer a stream allocates for received data: a small message is appended to
/// the last buffer while it has room, so a peer sending one-byte messages costs a buffer
/// per [`MIN_RECV_CHUNK`] bytes, not an allocation (and a queue entry) per message. No
/// buffer is more than half empty but the last, so a stream holds at most about twice
/// [`RECV_WINDOW`] + [`crate::MAX_PAYLOAD`] bytes of memory.
pub const MIN_RECV_CHUNK: usize = 4 * 1024;
/// Most live streams per manager.
pub const MAX_STREAMS: usize = 4096;
/// Attempts to draw a free id before giving up.
pub const ID_ATTEMPTS: usize = 64;
/// Ids of this many most recently ended streams are not reused (late messages of an old
/// stream must not reach a new one).
pub const RECENT_IDS: usize = 1024;

/// Manager settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// See [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`ACCEPT_TIMEOUT`].
    pub accept_timeout: Duration,
    /// Payload bytes per data message (at most [`MAX_PAYLOAD`]).
    pub max_payload: usize,
    /// See [`RECV_WINDOW`].
    pub recv_window: usize,
    /// See [`MAX_STREAMS`].
    pub max_streams: usize,
    /// Resend an unanswered SYN this often (`None`: send it once). A reliable pipe needs
    /// no resend; over datagrams (I2P SAM) the first message to a destination is often
    /// lost while the router looks up its lease set.
    pub syn_resend: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: CONNECT_TIMEOUT,
            accept_timeout: ACCEPT_TIMEOUT,
            max_payload: MAX_PAYLOAD,
            recv_window: RECV_WINDOW,
            max_streams: MAX_STREAMS,
            syn_resend: None,
        }
    }
}

/// Our role in one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// We sent the SYN.
    Client,
    /// We answered it.
    Server,
}

/// A stream's local name: our role and the id we chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// Our role.
    pub role: Role,
    /// Our id.
    pub id: Id,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Our SYN was ACKed: the stream is open.
    Connected(StreamId),
    /// Our SYN was answered with a close.
    Refused(StreamId),
    /// No answer to our SYN within the connect timeout; the stream is forgotten.
    ConnectTimedOut(StreamId),
    /// A SYN arrived while listening: [`Manager::accept`] or [`Manager::close`] it.
    Incoming {
        /// The new stream.
        stream: StreamId,
        /// The SYN payload (the peer's destination).
        destination: Vec<u8>,
    },
    /// An incoming stream was not accepted in time and was refused.
    AcceptTimedOut(StreamId),
    /// Data arrived; [`Manager::read`] it.
    Readable(StreamId),
    /// The peer closed the stream; buffered data stays readable, then end of stream.
    Closed(StreamId),
    /// The peer sent more than the receive buffer allows; the stream was closed.
    Overflow(StreamId),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this message (add transport framing).
    Transmit(Vec<u8>),
    /// Something happened.
    Event(Event),
    /// Call [`Manager::handle_timeout`] at this instant unless input comes first.
    Timeout(Instant),
}

/// The result of [`Manager::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were copied.
    Data(usize),
    /// Nothing buffered yet.
    WouldBlock,
    /// The peer closed and everything was read; the stream is gone.
    Eof,
}

/// The result of [`Manager::read_vec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadVec {
    /// These bytes were taken.
    Data(Vec<u8>),
    /// Nothing buffered yet.
    WouldBlock,
    /// The peer closed and everything was read; the stream is gone.
    Eof,
}

/// Why an application call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No such stream (never existed, closed, or timed out).
    #[error("unknown stream")]
    UnknownStream,
    /// The stream is not open (connect pending, not accepted, or closed by the peer).
    #[error("stream not open")]
    NotOpen,
    /// [`Config::max_streams`] streams are live.
    #[error("too many streams")]
    TooManyStreams,
    /// The id generator gave no free non-zero id in [`ID_ATTEMPTS`] draws.
    #[error("no free stream id")]
    NoFreeId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Client: SYN sent, waiting for ACK until the deadline; resent at the second instant.
    Connecting(Instant, Instant),
    /// Server: SYN received, waiting for the application until the deadline.
    Pending(Instant),
    Open,
    /// The peer closed; the buffer drains, then EOF.
    PeerClosed,
}

#[derive(Debug)]
struct Stream {
    state: State,
    /// The peer's id (client: the server id from the ACK; server: the client id).
    peer: Option<Id>,
    recv: Recv,
}

impl Stream {
    fn new(state: State, peer: Option<Id>) -> Stream {
        Stream { state, peer, recv: Recv::default() }
    }
}

/// A stream's received data: the messages' payloads as they came (each copied once, out
/// of the transport's buffer), so that [`Manager::read_chunk`] hands a whole message to
/// the reader without another copy. Small payloads share a buffer ([`MIN_RECV_CHUNK`]).
#[derive(Debug, Default)]
struct Recv {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already read.
    head: usize,
    /// Unread bytes in all chunks.
    len: usize,
}

impl Recv {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, data: &[u8]) {
        self.len += data.len();
        if let Some(last) = self.chunks.back_mut() {
            if last.capacity() - last.len() >= data.len() {
                last.extend_from_slice(data);
                return;
            }
        }
        let mut v = Vec::with_capacity(data.len().max(MIN_RECV_CHUNK));
        v.extend_from_slice(data);
        self.chunks.push_back(v);
    }

    /// Copies up to `buf.len()` bytes out.
    fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.chunks.front() else { break };
            let avail = &front[self.head..];
            let k = avail.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&avail[..k]);
            n += k;
            self.consume_front(k);
        }
        n
    }

    fn consume_front(&mut self, k: usize) {
        self.head += k;
        self.len -= k;
        if self.chunks.front().is_some_and(|f| self.head >= f.len()) {
            self.chunks.pop_front();
            self.head = 0;
        }
    }

    /// Up to `max` bytes from the front chunk: the chunk itself (no copy) when it is
    /// taken whole.
    fn take_chunk(&mut self, max: usize) -> Option<Vec<u8>> {
        let front = self.chunks.front()?;
        if self.head == 0 && front.len() <= max {
            let v = self.chunks.pop_front()?;
            self.len -= v.len();
            return Some(v);
        }
        let k = (front.len() - self.head).min(max);
        let v = front[self.head..self.head + k].to_vec();
        self.consume_front(k);
        Some(v)
    }
}

/// Hashes [`StreamId`]s with one multiply per word instead of SipHash (a few lookups per
/// message, 10% of the CPU of 1,000 streams with SipHash). The keys are ids we drew at
/// random, so they are spread already; a peer only chooses which ids it looks up, which
/// cannot lengthen the probes. Tables keyed by ids the peer chose (`by_peer_client`)
/// keep the default hasher.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// A map keyed by [`StreamId`] ([`StreamIdHasher`]).
pub type StreamMap<V> = HashMap<StreamId, V, BuildHasherDefault<StreamIdHasher>>;
/// A set of [`StreamId`]s ([`StreamIdHasher`]).
pub type StreamSet = HashSet<StreamId, BuildHasherDefault<StreamIdHasher>>;

/// Id generator: returns random numbers; the manager keeps the low 24 bits.
pub type IdGen = Box<dyn FnMut() -> u32 + Send>;

/// The streams of one transport connection.
pub struct Manager {
    cfg: Config,
    destination: Vec<u8>,
    listening: bool,
    gen: IdGen,
    streams: StreamMap<Stream>,
    /// Peer client id -> our server id, for idempotent repeated SYNs.
    by_peer_client: HashMap<Id, Id>,
    /// Recently ended streams, oldest first (at most [`RECENT_IDS`]).
    recent: VecDeque<StreamId>,
    recent_set: HashSet<StreamId>,
    out: VecDeque<Output>,
    /// Streams whose receive buffer is at [`Config::recv_window`] or more: kept as they
    /// change, so [`Manager::receive_paused`] (asked before every message the driver
    /// feeds) is O(1), not a pass over every stream (with 1,000 streams that pass ran
    /// 1,000 times per 32 KiB message).
    full: StreamSet,
    /// Streams waiting on a deadline (connecting, or an incoming SYN not yet accepted):
    /// [`Manager::poll_output`] (called after every message) and
    /// [`Manager::handle_timeout`] look at these only, not at every open stream.
    timed: StreamSet,
    /// No later than the earliest deadline in `timed` (`None`: to be found again). Kept
    /// on insertion, left as it is on removal (then at worst too early: one
    /// [`Manager::handle_timeout`] that finds nothing due, and finds it again), so
    /// [`Manager::poll_output`] does not walk 1,000 streams still connecting after every
    /// message of the streams already open.
    next_deadline: Option<Instant>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("listening", &self.listening).field("streams", &self.streams.len()).finish()
    }
}

impl Manager {
    /// A manager sending `destination` in its SYNs and drawing ids from `gen`.
    pub fn new(mut cfg: Config, destination: Vec<u8>, gen: IdGen) -> Self {
        cfg.max_payload = cfg.max_payload.clamp(1, MAX_PAYLOAD);
        cfg.recv_window = cfg.recv_window.max(1);
        Manager {
            cfg,
            destination,
            listening: false,
            gen,
            streams: StreamMap::default(),
            full: StreamSet::default(),
            timed: StreamSet::default(),
            next_deadline: None,
            by_peer_client: HashMap::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            out: VecDeque::new(),
        }
    }

    /// Whether incoming SYNs are offered to the application (else refused at once).
    pub fn set_listening(&mut self, on: bool) {
        self.listening = on;
    }

    /// Live streams (any state).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Whether the driver must stop reading the transport: some stream's receive buffer
    /// is full. Reading the stream's data ends the pause.
    pub fn receive_paused(&self) -> bool {
        debug_assert_eq!(!self.full.is_empty(), self.streams.values().any(|s| s.recv.len() >= self.cfg.recv_window));
        !self.full.is_empty()
    }

    /// Note whether `sid`'s receive buffer is at its limit (after it changed).
    fn note_fill(&mut self, sid: StreamId) {
        let full = self.streams.get(&sid).is_some_and(|s| s.recv.len() >= self.cfg.recv_window);
        if full {
            self.full.insert(sid);
        } else if !self.full.is_empty() {
            self.full.remove(&sid);
        }
    }

    /// Bytes buffered for `stream`.
    pub fn buffered(&self, stream: StreamId) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.recv.len())
    }

    /// Opens a stream: sends a SYN. [`Event::Connected`], [`Event::Refused`] or
    /// [`Event::ConnectTimedOut`] follows.
    pub fn connect(&mut self, now: Instant) -> Result<StreamId, Error> {
        let id = self.new_id(Role::Client)?;
        let sid = StreamId { role: Role::Client, id };
        let deadline = now + self.cfg.connect_timeout;
        let resend = self.cfg.syn_resend.map_or(deadline, |r| (now + r).min(deadline));
        self.streams.insert(sid, Stream::new(State::Connecting(deadline, resend), None));
        self.timed.insert(sid);
        self.note_deadline(deadline.min(resend));
        self.transmit(Message::Syn { client_id: id, destination: self.destination.clone() });
        Ok(sid)
    }

    /// Accepts an [`Event::Incoming`] stream: sends the ACK.
    pub fn accept(&mut self, stream: StreamId) -> Result<(), Error> {
        let s = self.streams.get_mut(&stream).ok_or(Error::UnknownStream)?;
        if !matches!(s.state, State::Pending(_)) {
            return Err(Error::NotOpen);
        }
        s.state = State::Open;
        self.timed.remove(&stream);
        let client_id = s.peer.ok_or(Error::NotOpen)?;
        self.transmit(Message::Ack { client_id, server_id: stream.id });
        Ok(())
    }

    /// Queues `data` for the peer in messages of at most [`Config::max_payload`] bytes.
    pub fn send(&mut self, stream: StreamId, data: &[u8]) -> Result<(), Error> {
        let s = self.streams.get(&stream).ok_or(Error::UnknownStream)?;
        let (State::Open, Some(peer)) = (s.state, s.peer) else {
            return Err(Error::NotOpen);
        };
        let ty = match stream.role {
            Role::Client => crate::message::types::CLIENT_DATA,
            Role::Server => crate::message::types::SERVER_DATA,
        };
        for chunk in data.chunks(self.cfg.max_payload) {
            // Encoded in place: one copy of the data instead of a Message and its encoding.
            let mut v = Vec::with_capacity(4 + chunk.len());
            v.push(ty);
            v.extend_from_slice(&peer.to_bytes());
            v.extend_from_slice(chunk);
            self.out.push_back(Output::Transmit(v));
        }
        Ok(())
    }

    /// Sends one data message built in place: `msg` is `[_, _, _, _, payload...]`, and
    /// the manager writes the type and the peer's id over the first four bytes (the
    /// message header, docs/protocols/ministream.md). The same as [`Manager::send`] of
    /// `msg[4..]` without copying the payload again; a payload above
    /// [`Config::max_payload`] is cut as `send` would.
    pub fn send_message(&mut self, stream: StreamId, mut msg: Vec<u8>) -> Result<(), Error> {
        if msg.len() <= 4 || msg.len() - 4 > self.cfg.max_payload {
            return self.send(stream, msg.get(4..).unwrap_or_default());
        }
        let s = self.streams.get(&stream).ok_or(Error::UnknownStream)?;
        let (State::Open, Some(peer)) = (s.state, s.peer) else {
            return Err(Error::NotOpen);
        };
        msg[0] = match stream.role {
            Role::Client => crate::message::types::CLIENT_DATA,
            Role::Server => crate::message::types::SERVER_DATA,
        };
        msg[1..4].copy_from_slice(&peer.to_bytes());
        self.out.push_back(Output::Transmit(msg));
        Ok(())
    }

    /// Copies received data into `buf`.
    pub fn read(&mut self, stream: StreamId, buf: &mut [u8]) -> Result<ReadOutcome, Error> {
        let s = self.streams.get_mut(&stream).ok_or(Error::UnknownStream)?;
        if s.recv.is_empty() {
            return match s.state {
                State::PeerClosed => {
                    self.forget(stream);
                    Ok(ReadOutcome::Eof)
                }
                _ => Ok(ReadOutcome::WouldBlock),
            };
        }
        let n = s.recv.read_into(buf);
        self.note_fill(stream);
        Ok(ReadOutcome::Data(n))
    }

    /// Takes up to `max` received bytes as one buffer: [`Manager::read`] without the
    /// caller's intermediate buffer.
    pub fn read_vec(&mut self, stream: StreamId, max: usize) -> Result<ReadVec, Error> {
        let s = self.streams.get_mut(&stream).ok_or(Error::UnknownStream)?;
        if s.recv.is_empty() {
            return match s.state {
                State::PeerClosed => {
                    self.forget(stream);
                    Ok(ReadVec::Eof)
                }
                _ => Ok(ReadVec::WouldBlock),
            };
        }
        let mut v = vec![0; max.min(s.recv.len())];
        s.recv.read_into(&mut v);
        self.note_fill(stream);
        Ok(ReadVec::Data(v))
    }

    /// Takes up to `max` received bytes, at most one buffer's worth: a message's payload
    /// is handed over as it was stored, without a copy, when `max` allows. May give fewer
    /// bytes than are buffered (then call again).
    pub fn read_chunk(&mut self, stream: StreamId, max: usize) -> Result<ReadVec, Error> {
        let s = self.streams.get_mut(&stream).ok_or(Error::UnknownStream)?;
        if s.recv.is_empty() || max == 0 {
            return match s.state {
                State::PeerClosed if s.recv.is_empty() => {
                    self.forget(stream);
                    Ok(ReadVec::Eof)
                }
                _ => Ok(ReadVec::WouldBlock),
            };
        }
        let v = s.recv.take_chunk(max).unwrap_or_default();
        self.note_fill(stream);
        Ok(ReadVec::Data(v))
    }

    /// Closes a stream from our side. Data passed to [`Manager::send`] before goes out
    /// first (outputs keep their order); then `A2`/`52`. A pending incoming stream is
    /// refused with `52`; a pending connect is forgotten. Unread data is discarded.
    pub fn close(&mut self, stream: StreamId) -> Result<(), Error> {
        let s = self.streams.get(&stream).ok_or(Error::UnknownStream)?;
        let (state, peer) = (s.state, s.peer);
        self.forget(stream);
        match (state, peer, stream.role) {
            (State::Open | State::Pending(_), Some(peer), Role::Server) => {
                self.transmit(Message::ServerClose { client_id: peer, extra: None })
            }
            (State::Open, Some(peer), Role::Client) => self.transmit(Message::ClientClose { server_id: peer }),
            _ => {}
        }
        Ok(())
    }

    /// The transport is gone: every stream ends (open ones as closed by the peer).
    pub fn transport_closed(&mut self) {
        let mut ids: Vec<StreamId> = self.streams.keys().copied().collect();
        ids.sort();
        for sid in ids {
            let Some(s) = self.streams.get_mut(&sid) else { continue };
            match s.state {
                State::Connecting(..) => {
                    self.forget(sid);
                    self.event(Event::Refused(sid));
                }
                State::Pending(_) => self.forget(sid),
                State::Open => {
                    s.state = State::PeerClosed;
                    self.event(Event::Closed(sid));
                }
                State::PeerClosed => {}
            }
        }
    }

    /// One message arrived (transport framing removed). Malformed, unknown and stray
    /// messages are dropped.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        // Data, the common case, straight into the stream's buffer (no Message copy).
        if let [ty @ (crate::message::types::CLIENT_DATA | crate::message::types::SERVER_DATA), a, b, c, data @ ..] =
            bytes
        {
            if bytes.len() > crate::MAX_MESSAGE {
                return;
            }
            let Some(id) = Id::from_bytes([*a, *b, *c]) else { return };
            let role = if *ty == crate::message::types::CLIENT_DATA { Role::Server } else { Role::Client };
            self.on_data(StreamId { role, id }, data);
            return;
        }
        let Ok(m) = Message::decode(bytes) else { return };
        match m {
            Message::Ping | Message::Unknown { .. } => {}
            Message::Syn { client_id, destination } => self.on_syn(now, client_id, destination),
            Message::Ack { client_id, server_id } => {
                let sid = StreamId { role: Role::Client, id: client_id };
                if let Some(s) = self.streams.get_mut(&sid) {
                    if matches!(s.state, State::Connecting(..)) {
                        s.state = State::Open;
                        s.peer = Some(server_id);
                        self.timed.remove(&sid);
                        self.event(Event::Connected(sid));
                    }
                }
            }
            Message::ServerClose { client_id, .. } => self.on_close(StreamId { role: Role::Client, id: client_id }),
            Message::ClientClose { server_id } => self.on_close(StreamId { role: Role::Server, id: server_id }),
            Message::ServerData { client_id, data } => {
                self.on_data(StreamId { role: Role::Client, id: client_id }, &data)
            }
            Message::ClientData { server_id, data } => {
                self.on_data(StreamId { role: Role::Server, id: server_id }, &data)
            }
        }
    }

    /// Time passed: resends due SYNs, expires connects and unaccepted SYNs.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.next_deadline = None;
        if self.timed.is_empty() {
            return;
        }
        if let Some(every) = self.cfg.syn_resend {
            let mut due: Vec<Id> = Vec::new();
            for sid in &self.timed {
                let Some(s) = self.streams.get_mut(sid) else { continue };
                if let State::Connecting(deadline, resend) = s.state {
                    if now >= resend && now < deadline {
                        s.state = State::Connecting(deadline, (now + every).min(deadline));
                        due.push(sid.id);
                    }
                }
            }
            due.sort();
            for client_id in due {
                self.transmit(Message::Syn { client_id, destination: self.destination.clone() });
            }
        }
        let mut expired: Vec<(StreamId, State)> = self
            .timed
            .iter()
            .filter_map(|k| self.streams.get(k).map(|s| (*k, s.state)))
            .filter(|(_, s)| matches!(s, State::Connecting(d, _) | State::Pending(d) if now >= *d))
            .collect();
        expired.sort_by_key(|(k, _)| *k);
        for (sid, state) in expired {
            match state {
                State::Connecting(..) => {
                    self.forget(sid);
                    self.event(Event::ConnectTimedOut(sid));
                }
                _ => {
                    let _ = self.close(sid);
                    self.event(Event::AcceptTimedOut(sid));
                }
            }
        }
    }

    /// The next thing to do. After the queued outputs, the next deadline (if any) is
    /// returned as [`Output::Timeout`]; stop polling on a timeout or `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if self.timed.is_empty() {
            // Iterating even an empty set walks its whole table (as large as it ever was:
            // 1,000 streams connecting at once), and this runs after every message.
            return None;
        }
        if self.next_deadline.is_none() {
            self.next_deadline = self
                .timed
                .iter()
                .filter_map(|k| self.streams.get(k))
                .filter_map(|s| match s.state {
                    State::Connecting(d, r) => Some(d.min(r)),
                    State::Pending(d) => Some(d),
                    _ => None,
                })
                .min();
        }
        self.next_deadline.map(Output::Timeout)
    }

    /// A stream now waits for `t` too.
    fn note_deadline(&mut self, t: Instant) {
        if let Some(d) = self.next_deadline {
            self.next_deadline = Some(d.min(t));
        }
    }

    fn on_syn(&mut self, now: Instant, client_id: Id, destination: Vec<u8>) {
        if let Some(&server_id) = self.by_peer_client.get(&client_id) {
            // A repeated SYN: answer as before, never open a second stream.
            let sid = StreamId { role: Role::Server, id: server_id };
            if let Some(s) = self.streams.get(&sid) {
                if s.state == State::Open {
                    self.transmit(Message::Ack { client_id, server_id });
                }
                return;
            }
        }
        if !self.listening || self.streams.len() >= self.cfg.max_streams {
            self.transmit(Message::ServerClose { client_id, extra: None });
            return;
        }
        let Ok(id) = self.new_id(Role::Server) else {
            self.transmit(Message::ServerClose { client_id, extra: None });
            return;
        };
        let sid = StreamId { role: Role::Server, id };
        let deadline = now + self.cfg.accept_timeout;
        self.streams.insert(sid, Stream::new(State::Pending(deadline), Some(client_id)));
        self.timed.insert(sid);
        self.note_deadline(deadline);
        self.by_peer_client.insert(client_id, id);
        self.event(Event::Incoming { stream: sid, destination });
    }

    fn on_close(&mut self, sid: StreamId) {
        let Some(s) = self.streams.get_mut(&sid) else { return };
        match s.state {
            State::Connecting(..) => {
                self.forget(sid);
                self.event(Event::Refused(sid));
            }
            State::Open => {
                s.state = State::PeerClosed;
                self.event(Event::Closed(sid));
            }
            // The client gave up before we accepted.
            State::Pending(_) => self.forget(sid),
            State::PeerClosed => {}
        }
    }

    fn on_data(&mut self, sid: StreamId, data: &[u8]) {
        let Some(s) = self.streams.get_mut(&sid) else { return };
        if s.state != State::Open || data.is_empty() {
            return;
        }
        if s.recv.len() + data.len() > self.cfg.recv_window + MAX_PAYLOAD {
            // The driver kept reading while paused, or the peer ignores the window.
            let _ = self.close(sid);
            self.event(Event::Overflow(sid));
            return;
        }
        let was_empty = s.recv.is_empty();
        s.recv.push(data);
        self.note_fill(sid);
        if was_empty {
            self.event(Event::Readable(sid));
        }
    }

    fn forget(&mut self, sid: StreamId) {
        self.full.remove(&sid);
        self.timed.remove(&sid);
        if let Some(s) = self.streams.remove(&sid) {
            if self.recent_set.insert(sid) {
                self.recent.push_back(sid);
                if self.recent.len() > RECENT_IDS {
                    if let Some(old) = self.recent.pop_front() {
                        self.recent_set.remove(&old);
                    }
                }
            }
            if sid.role == Role::Server {
                if let Some(peer) = s.peer {
                    if self.by_peer_client.get(&peer) == Some(&sid.id) {
                        self.by_peer_client.remove(&peer);
                    }
                }
            }
        }
    }

    fn new_id(&mut self, role: Role) -> Result<Id, Error> {
        if self.streams.len() >= self.cfg.max_streams {
            return Err(Error::TooManyStreams);
        }
        for _ in 0..ID_ATTEMPTS {
            if let Some(id) = Id::new((self.gen)() & Id::MAX) {
                let sid = StreamId { role, id };
                if !self.streams.contains_key(&sid) && !self.recent_set.contains(&sid) {
                    return Ok(id);
                }
            }
        }
        Err(Error::NoFreeId)
    }

    fn transmit(&mut self, m: Message) {
        self.out.push_back(Output::Transmit(m.encode()));
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }
}
