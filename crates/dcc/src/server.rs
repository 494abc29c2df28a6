//! The server side of the opening exchange, as a sans-IO state machine.
//!
//! The driver feeds received bytes with [`ServerHandshake::handle_input`], the current time
//! with [`ServerHandshake::handle_timeout`], and answers the decisions the machine asks for
//! (whether to accept a send and from where, whether a get is expected). It drains
//! [`ServerHandshake::poll_output`] after each call: bytes to write, an [`Event`] saying
//! which service now runs on the connection, or the next deadline.

use crate::ack::{FileReceiver, FileSender};
use crate::limits::MAX_LINE;
use crate::line::{LineError, LineReader};
use crate::message::{Message, ParseError};
use crate::name::{NameError, SafeName};
use crate::{Service, Services};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The 15 s rule of the mIRC text (docs/protocols/dcc.md#handshake).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Most bytes buffered while the driver decides on a send or get (file data a client sent
/// ahead of the `121`).
pub const MAX_PENDING: usize = 64 * 1024;

/// Server settings the machine needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our nick, sent in `101`/`111`/`121`/`131`.
    pub nick: String,
    /// The services switched on.
    pub services: Services,
    /// How long a client may take to send its opening line (and its `132`).
    pub handshake_timeout: Duration,
}

impl ServerConfig {
    /// A configuration with the 15 s rule (docs/protocols/dcc.md#handshake).
    pub fn new(nick: impl Into<String>, services: Services) -> Self {
        ServerConfig { nick: nick.into(), services, handshake_timeout: HANDSHAKE_TIMEOUT }
    }
}

/// Why the machine ended the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete line within the handshake timeout.
    Timeout,
    /// The line was too long.
    Framing(LineError),
    /// The line was not a valid opening line (or not one a client sends).
    Malformed(Option<ParseError>),
    /// `150 unavailable` was sent: the service is off or the server is full.
    Unavailable(Option<Service>),
    /// `151 rejected` was sent.
    Rejected(String),
    /// A `130` that matches no `get` of a live fserve session: ignored, as the mIRC text says (docs/protocols/dcc.md#get).
    Ignored,
    /// The peer closed the connection during the handshake.
    PeerClosed,
}

/// What the handshake settled.
#[derive(Debug)]
pub enum Event {
    /// `101` was sent: chat lines flow both ways from now on.
    Chat {
        /// The client's nick.
        nick: String,
        /// Bytes that followed the opening line.
        leftover: Vec<u8>,
    },
    /// `111` was sent: a file-server session runs from now on.
    Fserve {
        /// The client's nick.
        nick: String,
        /// Bytes that followed the opening line.
        leftover: Vec<u8>,
    },
    /// A `120` arrived: answer with [`ServerHandshake::accept_send_within`] (or
    /// [`ServerHandshake::accept_send`]) or [`ServerHandshake::reject`].
    SendOffered {
        /// The client's nick.
        nick: String,
        /// The announced size.
        size: u64,
        /// The file name, sanitized.
        name: SafeName,
    },
    /// `121` was sent: file bytes follow (the first of them may be in `leftover`).
    Receive {
        /// The client's nick.
        nick: String,
        /// The file name.
        name: SafeName,
        /// Counts bytes, cuts overruns, makes acks.
        receiver: FileReceiver,
        /// Bytes that followed the opening line (file data).
        leftover: Vec<u8>,
    },
    /// A `130` arrived: answer with [`ServerHandshake::accept_get`],
    /// [`ServerHandshake::reject`] or [`ServerHandshake::ignore`].
    GetRequested {
        /// The client's nick.
        nick: String,
        /// The file name, sanitized.
        name: SafeName,
    },
    /// `132` arrived: send the file from the resume position.
    SendFile {
        /// The client's nick.
        nick: String,
        /// The file name.
        name: SafeName,
        /// Counts bytes written and acks read.
        sender: FileSender,
        /// Bytes that followed the `132` line (acknowledgements).
        leftover: Vec<u8>,
    },
    /// The connection is over; close it once the transmits before this are written.
    Closed(CloseReason),
}

/// What to do next.
#[derive(Debug)]
pub enum Output {
    /// Write these bytes.
    Transmit(Vec<u8>),
    /// Something happened.
    Event(Event),
    /// Call [`ServerHandshake::handle_timeout`] at this instant unless input comes first.
    Timeout(Instant),
}

#[derive(Debug)]
enum State {
    AwaitOpening,
    SendDecision { nick: String, size: u64, name: SafeName },
    GetDecision { nick: String, name: SafeName },
    AwaitResume { nick: String, name: SafeName, size: u64 },
    Done,
}

/// The server's half of the opening exchange of one connection.
#[derive(Debug)]
pub struct ServerHandshake {
    cfg: ServerConfig,
    full: bool,
    state: State,
    lines: LineReader,
    deadline: Instant,
    out: VecDeque<Output>,
}

impl ServerHandshake {
    /// A connection accepted at `now`. With `full` set (the server is at its connection
    /// limit) the opening line is still read, then answered with `150 unavailable`.
    pub fn new(cfg: ServerConfig, now: Instant, full: bool) -> Self {
        let deadline = now + cfg.handshake_timeout;
        ServerHandshake {
            cfg,
            full,
            state: State::AwaitOpening,
            lines: LineReader::new(MAX_LINE),
            deadline,
            out: VecDeque::new(),
        }
    }

    /// Whether the handshake is over (an event other than a decision request was emitted).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes arrived. An empty slice means the peer closed its side.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_done() {
            return;
        }
        if bytes.is_empty() {
            self.close(CloseReason::PeerClosed);
            return;
        }
        if now >= self.deadline && self.awaits_peer() {
            self.close(CloseReason::Timeout);
            return;
        }
        if !self.awaits_peer() && self.lines.buffered() + bytes.len() > MAX_PENDING {
            // The client keeps sending while a decision is pending: more than a peer
            // following the protocol could have sent.
            self.close(CloseReason::Framing(LineError::TooLong { limit: MAX_PENDING }));
            return;
        }
        self.lines.push(bytes);
        self.process_lines();
    }

    /// Time passed; closes the connection when the client was too slow.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.awaits_peer() && now >= self.deadline {
            self.close(CloseReason::Timeout);
        }
    }

    /// Accept the pending `120` from `position` (the size of the partial file already
    /// held; clamped to the size, where nothing is left to send).
    pub fn accept_send(&mut self, position: u64) {
        if !matches!(self.state, State::SendDecision { .. }) {
            return;
        }
        if let State::SendDecision { nick, size, name } = std::mem::replace(&mut self.state, State::Done) {
            let receiver = FileReceiver::new(size, position);
            self.transmit(Message::SendAccepted { nick: self.cfg.nick.clone(), position: receiver.position() });
            let leftover = self.lines.take_rest();
            self.out.push_back(Output::Event(Event::Receive { nick, name, receiver, leftover }));
        }
    }

    /// Accept the pending `120` from `position` if it fits, else refuse it with
    /// `151 rejected` (the seed's refusal): an announced size above `max_size` (the node's
    /// `[dcc].max_incoming_bytes`), or more bytes still to come (size − position) than
    /// `free_space`, the free bytes on the incoming folder's file system, which the driver
    /// measures (`u64::MAX` when it cannot).
    pub fn accept_send_within(&mut self, position: u64, max_size: u64, free_space: u64) {
        let State::SendDecision { size, .. } = &self.state else { return };
        let size = *size;
        if size > max_size {
            return self.reject(format!("announced size {size} is above the maximum of {max_size} bytes"));
        }
        let needed = size - position.min(size);
        if needed > free_space {
            return self
                .reject(format!("{needed} bytes still to come but only {free_space} free for the incoming folder"));
        }
        self.accept_send(position);
    }

    /// Accept the pending `130`: the file is `size` bytes.
    pub fn accept_get(&mut self, now: Instant, size: u64) {
        if !matches!(self.state, State::GetDecision { .. }) {
            return;
        }
        if let State::GetDecision { nick, name } = std::mem::replace(&mut self.state, State::Done) {
            self.transmit(Message::GetAccepted { nick: self.cfg.nick.clone(), size });
            self.deadline = now + self.cfg.handshake_timeout;
            self.state = State::AwaitResume { nick, name, size };
            self.process_lines();
        }
    }

    /// Refuse the pending request with `151 rejected`.
    pub fn reject(&mut self, why: impl Into<String>) {
        if matches!(self.state, State::SendDecision { .. } | State::GetDecision { .. }) {
            self.transmit(Message::Rejected);
            self.close(CloseReason::Rejected(why.into()));
        }
    }

    /// Ignore the pending `130` (no matching `get`): close without a reply.
    pub fn ignore(&mut self) {
        if matches!(self.state, State::GetDecision { .. }) {
            self.close(CloseReason::Ignored);
        }
    }

    /// The next thing to do; `None` once the handshake is over and everything was taken.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if self.awaits_peer() {
            return Some(Output::Timeout(self.deadline));
        }
        None
    }

    fn awaits_peer(&self) -> bool {
        matches!(self.state, State::AwaitOpening | State::AwaitResume { .. })
    }

    fn transmit(&mut self, m: Message) {
        self.out.push_back(Output::Transmit(m.encode()));
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Done;
        self.out.push_back(Output::Event(Event::Closed(reason)));
    }

    fn refuse(&mut self, why: String) {
        self.transmit(Message::Rejected);
        self.close(CloseReason::Rejected(why));
    }

    fn process_lines(&mut self) {
        while self.awaits_peer() {
            let line = match self.lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => return self.close(CloseReason::Framing(e)),
            };
            let msg = match Message::parse(&line) {
                Ok(m) => m,
                Err(e) => return self.close(CloseReason::Malformed(Some(e))),
            };
            match std::mem::replace(&mut self.state, State::Done) {
                State::AwaitOpening => self.on_opening(msg),
                State::AwaitResume { nick, name, size } => match msg {
                    Message::GetResume { position, .. } if position <= size => {
                        let sender = FileSender::new(size, position);
                        let leftover = self.lines.take_rest();
                        self.out.push_back(Output::Event(Event::SendFile { nick, name, sender, leftover }));
                    }
                    Message::GetResume { position, .. } => {
                        self.refuse(format!("resume position {position} beyond size {size}"))
                    }
                    _ => self.close(CloseReason::Malformed(None)),
                },
                other => self.state = other,
            }
        }
    }

    fn on_opening(&mut self, msg: Message) {
        let service = match &msg {
            Message::Chat { .. } => Service::Chat,
            Message::Fserve { .. } => Service::Fserve,
            Message::Send { .. } => Service::Send,
            Message::Get { .. } => Service::Get,
            _ => return self.close(CloseReason::Malformed(None)),
        };
        if self.full || !self.cfg.services.offers(service) {
            self.transmit(Message::Unavailable);
            let why = if self.full { None } else { Some(service) };
            return self.close(CloseReason::Unavailable(why));
        }
        let nick = self.cfg.nick.clone();
        match msg {
            Message::Chat { nick: client } => {
                self.transmit(Message::ChatAccepted { nick });
                let leftover = self.lines.take_rest();
                self.out.push_back(Output::Event(Event::Chat { nick: client, leftover }));
            }
            Message::Fserve { nick: client } => {
                self.transmit(Message::FserveAccepted { nick });
                let leftover = self.lines.take_rest();
                self.out.push_back(Output::Event(Event::Fserve { nick: client, leftover }));
            }
            Message::Send { nick: client, size, name } => match SafeName::sanitize(&name) {
                Ok(name) => {
                    self.state = State::SendDecision { nick: client.clone(), size, name: name.clone() };
                    self.out.push_back(Output::Event(Event::SendOffered { nick: client, size, name }));
                }
                Err(e) => self.refuse(refusal(&name, e)),
            },
            Message::Get { nick: client, name } => match SafeName::sanitize(&name) {
                Ok(name) => {
                    self.state = State::GetDecision { nick: client.clone(), name: name.clone() };
                    self.out.push_back(Output::Event(Event::GetRequested { nick: client, name }));
                }
                // A name that cannot be a file matches no get: ignored like any stray 130.
                Err(_) => self.close(CloseReason::Ignored),
            },
            _ => unreachable!("filtered by service above"),
        }
    }
}

fn refusal(name: &str, e: NameError) -> String {
    format!("file name {name:?} refused: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(h: &mut ServerHandshake) -> (Vec<u8>, Vec<Event>, Option<Instant>) {
        let mut tx = Vec::new();
        let mut ev = Vec::new();
        let mut to = None;
        while let Some(o) = h.poll_output() {
            match o {
                Output::Transmit(b) => tx.extend(b),
                Output::Event(e) => ev.push(e),
                Output::Timeout(t) => {
                    to = Some(t);
                    break;
                }
            }
        }
        (tx, ev, to)
    }

    fn server(services: Services) -> (ServerHandshake, Instant) {
        let t0 = Instant::now();
        (ServerHandshake::new(ServerConfig::new("bob", services), t0, false), t0)
    }

    #[test]
    fn chat_opening() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"100 alice\r\nhi there\n");
        let (tx, ev, to) = drain(&mut h);
        assert_eq!(tx, b"101 bob\n");
        assert!(to.is_none());
        match &ev[..] {
            [Event::Chat { nick, leftover }] => {
                assert_eq!(nick, "alice");
                assert_eq!(leftover, b"hi there\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fserve_opening() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"110 alice\n");
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"111 bob\n");
        assert!(matches!(&ev[..], [Event::Fserve { nick, .. }] if nick == "alice"));
    }

    #[test]
    fn send_with_resume_and_data_in_same_segment() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 1048576 \"my file.bin\"\n");
        let (tx, ev, to) = drain(&mut h);
        assert!(tx.is_empty());
        assert!(to.is_none(), "no deadline while the driver decides");
        match &ev[..] {
            [Event::SendOffered { nick, size, name }] => {
                assert_eq!((nick.as_str(), *size, name.as_str()), ("alice", 1048576, "my file.bin"))
            }
            other => panic!("{other:?}"),
        }
        h.accept_send(524288);
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"121 bob 524288\n");
        match &ev[..] {
            [Event::Receive { receiver, .. }] => {
                assert_eq!(receiver.position(), 524288);
                assert_eq!(receiver.size(), 1048576);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn send_path_escape_is_stripped_and_dot_names_rejected() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 10 ../../etc/passwd\n");
        let (_, ev, _) = drain(&mut h);
        assert!(matches!(&ev[..], [Event::SendOffered { name, .. }] if name.as_str() == "passwd"));

        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 10 ../..\n");
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"151 rejected\n");
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Rejected(_))]));
    }

    #[test]
    fn sends_above_the_maximum_or_the_free_space_are_rejected() {
        // 2^64 − 1 announced: above any maximum.
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 18446744073709551615 x\n");
        drain(&mut h);
        h.accept_send_within(0, crate::limits::DEFAULT_MAX_INCOMING_BYTES, u64::MAX);
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"151 rejected\n");
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Rejected(w))] if w.contains("maximum")), "{ev:?}");
        // At the maximum exactly: accepted.
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 1000 x\n");
        drain(&mut h);
        h.accept_send_within(0, 1000, 1000);
        assert_eq!(drain(&mut h).0, b"121 bob 0\n");
        // More to come than there is room for: rejected; a resume needs only the rest.
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 1000 x\n");
        drain(&mut h);
        h.accept_send_within(0, u64::MAX, 999);
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"151 rejected\n");
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Rejected(w))] if w.contains("999 free")), "{ev:?}");
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 1000 x\n");
        drain(&mut h);
        h.accept_send_within(500, u64::MAX, 500);
        assert_eq!(drain(&mut h).0, b"121 bob 500\n");
    }

    #[test]
    fn driver_rejects_a_send() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 10 x\n");
        drain(&mut h);
        h.reject("policy");
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"151 rejected\n");
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Rejected(w))] if w == "policy"));
    }

    #[test]
    fn services_off_and_full_answer_150() {
        let off = Services { chat: false, send: true, fserve: false };
        for line in [&b"100 alice\n"[..], b"110 alice\n", b"130 alice x\n"] {
            let (mut h, t0) = server(off);
            h.handle_input(t0, line);
            let (tx, ev, _) = drain(&mut h);
            assert_eq!(tx, b"150 unavailable\n");
            assert!(matches!(&ev[..], [Event::Closed(CloseReason::Unavailable(Some(_)))]));
        }
        let t0 = Instant::now();
        let mut h = ServerHandshake::new(ServerConfig::new("bob", Services::ALL), t0, true);
        h.handle_input(t0, b"120 alice 5 a\n");
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"150 unavailable\n");
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Unavailable(None))]));
    }

    #[test]
    fn fifteen_second_rule_in_simulated_time() {
        let (mut h, t0) = server(Services::ALL);
        let (_, _, to) = drain(&mut h);
        assert_eq!(to, Some(t0 + Duration::from_secs(15)));
        h.handle_input(t0 + Duration::from_secs(10), b"100 ali");
        h.handle_timeout(t0 + Duration::from_millis(14_999));
        let (tx, ev, to) = drain(&mut h);
        assert!(tx.is_empty() && ev.is_empty());
        assert_eq!(to, Some(t0 + Duration::from_secs(15)), "partial lines do not extend it");
        h.handle_timeout(t0 + Duration::from_secs(15));
        let (tx, ev, to) = drain(&mut h);
        assert!(tx.is_empty(), "a stray 130 is closed without a reply (docs/protocols/dcc.md#get)");
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Timeout)]));
        assert!(to.is_none());
        assert!(h.is_done());
    }

    #[test]
    fn late_line_after_deadline_is_not_served() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0 + Duration::from_secs(16), b"100 alice\n");
        let (tx, ev, _) = drain(&mut h);
        assert!(tx.is_empty());
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Timeout)]));
    }

    #[test]
    fn unexpected_lines_close_silently() {
        for line in [&b"101 alice\n"[..], b"hello\n", b"132 alice 0\n", b"199 x\n"] {
            let (mut h, t0) = server(Services::ALL);
            h.handle_input(t0, line);
            let (tx, ev, _) = drain(&mut h);
            assert!(tx.is_empty());
            assert!(matches!(&ev[..], [Event::Closed(CloseReason::Malformed(_))]), "{line:?}");
        }
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, &[b'x'; 2000]);
        let (_, ev, _) = drain(&mut h);
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Framing(_))]));
    }

    #[test]
    fn get_flow_with_resume() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"130 alice readme.txt\n");
        let (_, ev, _) = drain(&mut h);
        assert!(matches!(&ev[..], [Event::GetRequested { name, .. }] if name.as_str() == "readme.txt"));
        let t1 = t0 + Duration::from_secs(1);
        h.accept_get(t1, 12345);
        let (tx, ev, to) = drain(&mut h);
        assert_eq!(tx, b"131 bob 12345\n");
        assert!(ev.is_empty());
        assert_eq!(to, Some(t1 + Duration::from_secs(15)));
        h.handle_input(t1, b"132 alice 100\n");
        let (tx, ev, _) = drain(&mut h);
        assert!(tx.is_empty());
        match &ev[..] {
            [Event::SendFile { sender, .. }] => {
                assert_eq!(sender.position(), 100);
                assert_eq!(sender.remaining(), 12245);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn get_resume_beyond_size_is_rejected_and_stray_get_ignored() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"130 alice a\n");
        drain(&mut h);
        h.accept_get(t0, 10);
        drain(&mut h);
        h.handle_input(t0, b"132 alice 11\n");
        let (tx, ev, _) = drain(&mut h);
        assert_eq!(tx, b"151 rejected\n");
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Rejected(_))]));

        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"130 alice a\n");
        drain(&mut h);
        h.ignore();
        let (tx, ev, _) = drain(&mut h);
        assert!(tx.is_empty());
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Ignored)]));
    }

    #[test]
    fn decisions_out_of_turn_change_nothing() {
        let (mut h, t0) = server(Services::ALL);
        h.accept_send(0);
        h.accept_get(t0, 5);
        assert!(!h.is_done());
        h.handle_input(t0, b"100 alice\n");
        let (tx, _, _) = drain(&mut h);
        assert_eq!(tx, b"101 bob\n");
    }

    #[test]
    fn data_sent_ahead_of_a_decision_is_bounded() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"120 alice 999999999 x\n");
        drain(&mut h);
        h.handle_input(t0, &vec![0u8; MAX_PENDING / 2]);
        assert!(!h.is_done());
        h.handle_input(t0, &vec![0u8; MAX_PENDING]);
        let (_, ev, _) = drain(&mut h);
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::Framing(_))]));
    }

    #[test]
    fn peer_close_during_handshake() {
        let (mut h, t0) = server(Services::ALL);
        h.handle_input(t0, b"");
        let (_, ev, _) = drain(&mut h);
        assert!(matches!(&ev[..], [Event::Closed(CloseReason::PeerClosed)]));
    }
}
