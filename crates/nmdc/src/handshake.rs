//! The client-to-client handshake as a sans-IO state machine.
//!
//! As observed between ncdc, EiskaltDC++ and microdc2 (docs/protocols/nmdc.md#cc-handshake; the old PtokaX page has the order
//! wrong): the side that opened the TCP connection speaks first.
//!
//! ```text
//! connector:  $MyNick <own nick>|$Lock EXTENDEDPROTOCOL… Pk=…|
//! listener:   $MyNick <own nick>|$Lock EXTENDEDPROTOCOL… Pk=…|$Supports …|$Direction …|$Key …|
//! connector:  $Supports …|$Direction <Upload|Download> <n>|$Key <key for the listener's lock>|
//! ```
//!
//! Each side sends `$Supports` only if the other's lock starts with `EXTENDEDPROTOCOL`,
//! then `$Direction` and the `$Key` for the other's lock. When both `$Direction`s are known
//! the higher number downloads if both want to; equal numbers close the connection.
//!
//! The driver feeds bytes with [`CcHandshake::handle_input`], the time with
//! [`CcHandshake::handle_timeout`], and drains [`CcHandshake::poll_output`] after each call:
//! bytes to write, an [`Event`], or the next deadline. Nothing here reads a clock or draws
//! a random number: the lock's random bytes and the `$Direction` number are in the
//! [`CcConfig`].

use crate::command::{resolve_direction, Command, Direction, DirectionOutcome, ParseError};
use crate::framing::{CommandReader, FramingError};
use crate::lock::{is_extended, key_matches, lock_command, lock_to_key};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a peer may take to finish the handshake (our choice; docs/protocols/nmdc.md#cc-handshake).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The features ncdc and EiskaltDC++ send; ncdc refuses peers without `ADCGet`.
pub const DEFAULT_SUPPORTS: &[&str] = &["MiniSlots", "XmlBZList", "ADCGet", "TTHL", "TTHF"];

/// Which end of the TCP connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We opened the connection (we answer a `$ConnectToMe`): we speak first.
    Connector,
    /// We accepted the connection.
    Listener,
}

/// What the machine needs to know.
#[derive(Debug, Clone)]
pub struct CcConfig {
    /// Our nick on the hub that brought us together.
    pub nick: String,
    /// Random bytes for our lock (see [`crate::lock::make_lock`]); 16 or more.
    pub lock_random: Vec<u8>,
    /// Our `Pk=` value, e.g. `omnipeer0.1.0`.
    pub pk: String,
    /// Our `$Supports` features.
    pub supports: Vec<String>,
    /// `Download` if we want something from this peer, else `Upload`.
    pub direction: Direction,
    /// Random tie-breaker; DC++-family peers disconnect above 32767.
    pub number: u32,
    /// The peer nick we expect, when known (we asked it for a connection).
    pub expected_nick: Option<String>,
    /// How long the peer may take.
    pub timeout: Duration,
}

impl CcConfig {
    /// A configuration with [`DEFAULT_SUPPORTS`] and [`HANDSHAKE_TIMEOUT`].
    pub fn new(nick: &str, lock_random: &[u8], direction: Direction, number: u32) -> CcConfig {
        CcConfig {
            nick: nick.to_owned(),
            lock_random: lock_random.to_vec(),
            pk: format!("omnipeer{}", env!("CARGO_PKG_VERSION")),
            supports: DEFAULT_SUPPORTS.iter().map(|s| (*s).to_owned()).collect(),
            direction,
            number,
            expected_nick: None,
            timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// What the peer told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its `$MyNick`.
    pub nick: String,
    /// Its lock.
    pub lock: Vec<u8>,
    /// Its `Pk=` (client name and version, in practice).
    pub pk: Option<String>,
    /// Its `$Supports` features (empty if it sent none).
    pub supports: Vec<String>,
    /// Its `$Direction`.
    pub direction: Direction,
    /// Its `$Direction` number.
    pub number: u32,
    /// Whether its `$Key` answers our lock. Real clients do not check keys; the driver may.
    pub key_valid: bool,
}

impl Peer {
    /// Whether the peer listed this feature (`ADCGet`, `TTHL`, `ZLIG`, ...).
    pub fn supports(&self, feature: &str) -> bool {
        self.supports.iter().any(|f| f == feature)
    }
}

/// Why the machine ended the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The handshake did not finish in time.
    Timeout,
    /// A command longer than the limit.
    Framing(FramingError),
    /// A command that does not parse.
    Malformed(ParseError),
    /// A command that does not belong here (named).
    Unexpected(String),
    /// The peer's nick is not the one expected.
    WrongNick(String),
    /// No key can be computed for the peer's lock (too short or too long).
    BadLock,
    /// Both want to download and drew the same number.
    DirectionTie,
    /// Neither wants to download.
    NothingToTransfer,
    /// The peer closed the connection.
    PeerClosed,
}

/// What the handshake settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake is complete; transfers start.
    Ready {
        /// The peer.
        peer: Peer,
        /// Whether we download ([`DirectionOutcome::WeDownload`]) or upload
        /// ([`DirectionOutcome::TheyDownload`]).
        outcome: DirectionOutcome,
        /// Bytes received after the last handshake command (a first `$ADCGET`, say).
        leftover: Vec<u8>,
    },
    /// The connection is over; close it once the transmits before this are written.
    Closed(CloseReason),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes.
    Transmit(Vec<u8>),
    /// Something happened.
    Event(Event),
    /// Call [`CcHandshake::handle_timeout`] at this instant unless input comes first.
    Timeout(Instant),
}

#[derive(Debug)]
enum State {
    AwaitNick,
    AwaitLock { nick: String },
    AwaitRest(Box<Partial>),
    Done,
}

#[derive(Debug)]
struct Partial {
    nick: String,
    lock: Vec<u8>,
    pk: Option<String>,
    supports: Vec<String>,
    direction: Option<(Direction, u32)>,
    key_valid: Option<bool>,
}

/// The client-to-client handshake.
#[derive(Debug)]
pub struct CcHandshake {
    config: CcConfig,
    role: Role,
    our_lock: Vec<u8>,
    reader: CommandReader,
    state: State,
    deadline: Instant,
    out: VecDeque<Output>,
}

impl CcHandshake {
    /// Start a handshake at `now`. A connector's `$MyNick` and `$Lock` are ready to send at
    /// once.
    pub fn new(role: Role, config: CcConfig, now: Instant) -> CcHandshake {
        let lock_cmd = lock_command(&config.lock_random, &config.pk);
        let our_lock = match &lock_cmd {
            Command::Lock { lock, .. } => lock.clone(),
            _ => Vec::new(),
        };
        let mut hs = CcHandshake {
            deadline: now + config.timeout,
            config,
            role,
            our_lock,
            reader: CommandReader::new(),
            state: State::AwaitNick,
            out: VecDeque::new(),
        };
        if role == Role::Connector {
            let mut bytes = Command::MyNick(hs.config.nick.clone()).encode();
            bytes.extend(lock_cmd.encode());
            hs.out.push_back(Output::Transmit(bytes));
        }
        hs
    }

    /// Our lock (the peer's `$Key` must answer it).
    pub fn our_lock(&self) -> &[u8] {
        &self.our_lock
    }

    /// Whether the machine has finished (ready or closed).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes received from the peer.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_done() {
            return;
        }
        if now >= self.deadline {
            return self.close(CloseReason::Timeout);
        }
        self.reader.push(bytes);
        while !self.is_done() {
            let raw = match self.reader.next_command() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => return self.close(CloseReason::Framing(e)),
            };
            match Command::parse(&raw) {
                Ok(cmd) => self.on_command(cmd),
                Err(e) => self.close(CloseReason::Malformed(e)),
            }
        }
    }

    /// The peer closed its end.
    pub fn handle_eof(&mut self) {
        if !self.is_done() {
            self.close(CloseReason::PeerClosed);
        }
    }

    /// The time is `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_done() && now >= self.deadline {
            self.close(CloseReason::Timeout);
        }
    }

    /// The next thing to do; `None` once everything is out and the machine is done.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        (!self.is_done()).then_some(Output::Timeout(self.deadline))
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Done;
        self.out.push_back(Output::Event(Event::Closed(reason)));
    }

    fn on_command(&mut self, cmd: Command) {
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match (state, cmd) {
            (State::AwaitNick, Command::MyNick(nick)) => {
                if let Some(want) = &self.config.expected_nick {
                    if *want != nick {
                        return self.close(CloseReason::WrongNick(nick));
                    }
                }
                State::AwaitLock { nick }
            }
            (State::AwaitLock { nick }, Command::Lock { lock, pk }) => {
                let Ok(key) = lock_to_key(&lock) else {
                    return self.close(CloseReason::BadLock);
                };
                let mut bytes = Vec::new();
                if self.role == Role::Listener {
                    bytes.extend(Command::MyNick(self.config.nick.clone()).encode());
                    bytes.extend(lock_command(&self.config.lock_random, &self.config.pk).encode());
                }
                if is_extended(&lock) {
                    bytes.extend(
                        Command::Supports { features: self.config.supports.clone(), trailing_space: false }.encode(),
                    );
                }
                bytes.extend(
                    Command::Direction { direction: self.config.direction, number: self.config.number }.encode(),
                );
                bytes.extend(Command::Key(key).encode());
                self.out.push_back(Output::Transmit(bytes));
                State::AwaitRest(Box::new(Partial {
                    nick,
                    lock,
                    pk,
                    supports: Vec::new(),
                    direction: None,
                    key_valid: None,
                }))
            }
            (State::AwaitRest(mut p), Command::Supports { features, .. }) => {
                p.supports = features;
                State::AwaitRest(p)
            }
            (State::AwaitRest(mut p), Command::Direction { direction, number }) => {
                p.direction = Some((direction, number));
                self.after_rest(p)
            }
            (State::AwaitRest(mut p), Command::Key(key)) => {
                p.key_valid = Some(key_matches(&self.our_lock, &key));
                self.after_rest(p)
            }
            (_, other) => return self.close(CloseReason::Unexpected(other.name().to_owned())),
        };
    }

    fn after_rest(&mut self, p: Box<Partial>) -> State {
        let (Some((direction, number)), Some(key_valid)) = (p.direction, p.key_valid) else {
            return State::AwaitRest(p);
        };
        let outcome = resolve_direction(self.config.direction, self.config.number, direction, number);
        match outcome {
            DirectionOutcome::Tie => {
                self.out.push_back(Output::Event(Event::Closed(CloseReason::DirectionTie)));
            }
            DirectionOutcome::Nobody => {
                self.out.push_back(Output::Event(Event::Closed(CloseReason::NothingToTransfer)));
            }
            DirectionOutcome::WeDownload | DirectionOutcome::TheyDownload => {
                let p = *p;
                let peer =
                    Peer { nick: p.nick, lock: p.lock, pk: p.pk, supports: p.supports, direction, number, key_valid };
                let leftover = self.reader.take_rest();
                self.out.push_back(Output::Event(Event::Ready { peer, outcome, leftover }));
            }
        }
        State::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::lock_to_key;

    fn t0() -> Instant {
        Instant::now()
    }

    fn drain(hs: &mut CcHandshake) -> (Vec<u8>, Vec<Event>) {
        let mut bytes = Vec::new();
        let mut events = Vec::new();
        while let Some(o) = hs.poll_output() {
            match o {
                Output::Transmit(b) => bytes.extend(b),
                Output::Event(e) => events.push(e),
                Output::Timeout(_) => break,
            }
        }
        (bytes, events)
    }

    fn key_line(lock: &[u8]) -> Vec<u8> {
        Command::Key(lock_to_key(lock).unwrap()).encode()
    }

    /// We listen; EiskaltDC++ connects and speaks first, exactly as in docs/protocols/nmdc.md#cc-handshake.
    #[test]
    fn listener_against_eiskalt_lines() {
        let now = t0();
        let mut hs = CcHandshake::new(Role::Listener, CcConfig::new("alice", b"ABCDEFGH", Direction::Upload, 0), now);
        assert_eq!(drain(&mut hs), (vec![], vec![]));
        hs.handle_input(
            now,
            b"$MyNick bob|$Lock EXTENDEDPROTOCOLABCABCABCABCABCABC Pk=DCPLUSPLUS2.4.2Ref=dchub://127.0.0.1:4120|",
        );
        let (sent, events) = drain(&mut hs);
        assert!(events.is_empty());
        let mut want = b"$MyNick alice|$Lock EXTENDEDPROTOCOLDEFGHIJK Pk=omnipeer".to_vec();
        want.extend(env!("CARGO_PKG_VERSION").as_bytes());
        want.extend(b"|$Supports MiniSlots XmlBZList ADCGet TTHL TTHF|$Direction Upload 0|");
        want.extend(key_line(b"EXTENDEDPROTOCOLABCABCABCABCABCABC"));
        assert_eq!(sent, want);
        let mut reply = b"$Supports MiniSlots XmlBZList ADCGet TTHL TTHF ZLIG |$Direction Download 3924|".to_vec();
        reply.extend(key_line(hs.our_lock()));
        reply.extend(b"$ADCGET file files.xml.bz2 0 -1|");
        hs.handle_input(now, &reply);
        let (sent, events) = drain(&mut hs);
        assert!(sent.is_empty());
        let Event::Ready { peer, outcome, leftover } = &events[0] else { panic!("{events:?}") };
        assert_eq!(*outcome, DirectionOutcome::TheyDownload);
        assert_eq!(peer.nick, "bob");
        assert_eq!(peer.pk.as_deref(), Some("DCPLUSPLUS2.4.2Ref=dchub://127.0.0.1:4120"));
        assert!(peer.supports("ZLIG") && peer.supports("ADCGet"));
        assert!(peer.key_valid);
        assert_eq!((peer.direction, peer.number), (Direction::Download, 3924));
        assert_eq!(leftover, b"$ADCGET file files.xml.bz2 0 -1|");
        assert!(hs.is_done());
        assert_eq!(hs.poll_output(), None);
    }

    /// We connect to ncdc (we answered its $ConnectToMe) and want to download.
    #[test]
    fn connector_against_ncdc_lines_one_byte_at_a_time() {
        let now = t0();
        let mut cfg = CcConfig::new("bob", b"xyz", Direction::Download, 30000);
        cfg.expected_nick = Some("alice".into());
        let mut hs = CcHandshake::new(Role::Connector, cfg, now);
        let (sent, _) = drain(&mut hs);
        assert!(sent.starts_with(b"$MyNick bob|$Lock EXTENDEDPROTOCOL"));
        let our_lock = hs.our_lock().to_vec();
        let mut peer = b"$MyNick alice|$Lock EXTENDEDPROTOCOL/wut? Pk=ncdc-1.23.1,Ref=127.0.0.1:4120|".to_vec();
        peer.extend(b"$Supports MiniSlots XmlBZList ADCGet TTHL TTHF|$Direction Download 26242|");
        peer.extend(key_line(&our_lock));
        let mut sent = Vec::new();
        let mut events = Vec::new();
        for b in &peer {
            hs.handle_input(now, &[*b]);
            let (s, e) = drain(&mut hs);
            sent.extend(s);
            events.extend(e);
        }
        let mut want = b"$Supports MiniSlots XmlBZList ADCGet TTHL TTHF|$Direction Download 30000|".to_vec();
        want.extend(key_line(b"EXTENDEDPROTOCOL/wut?"));
        assert_eq!(sent, want);
        let [Event::Ready { peer, outcome, leftover }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(*outcome, DirectionOutcome::WeDownload);
        assert_eq!(peer.number, 26242);
        assert!(leftover.is_empty());
    }

    /// microdc2 sends no TTHL and a fixed number; a non-extended lock gets no $Supports.
    #[test]
    fn old_lock_gets_no_supports_and_wrong_key_is_reported() {
        let now = t0();
        let mut hs = CcHandshake::new(Role::Listener, CcConfig::new("alice", b"q", Direction::Download, 100), now);
        hs.handle_input(now, b"$MyNick carol|$Lock OLDSTYLELOCK Pk=x|");
        let (sent, _) = drain(&mut hs);
        assert!(!sent.windows(9).any(|w| w == b"$Supports"));
        assert!(sent.ends_with(&key_line(b"OLDSTYLELOCK")));
        hs.handle_input(now, b"$Direction Download 17767|$Key wrong|");
        let (_, events) = drain(&mut hs);
        let [Event::Ready { peer, outcome, .. }] = &events[..] else { panic!("{events:?}") };
        assert!(!peer.key_valid);
        assert!(peer.supports.is_empty());
        assert_eq!(*outcome, DirectionOutcome::TheyDownload);
    }

    #[test]
    fn two_machines_agree() {
        let now = t0();
        let mut a =
            CcHandshake::new(Role::Connector, CcConfig::new("a", b"1234567890abcdef", Direction::Download, 7), now);
        let mut b =
            CcHandshake::new(Role::Listener, CcConfig::new("b", b"fedcba0987654321", Direction::Download, 9), now);
        let mut events_a = Vec::new();
        let mut events_b = Vec::new();
        for _ in 0..5 {
            let (to_b, ea) = drain(&mut a);
            events_a.extend(ea);
            b.handle_input(now, &to_b);
            let (to_a, eb) = drain(&mut b);
            events_b.extend(eb);
            a.handle_input(now, &to_a);
        }
        let [Event::Ready { peer: pa, outcome: oa, .. }] = &events_a[..] else { panic!("{events_a:?}") };
        let [Event::Ready { peer: pb, outcome: ob, .. }] = &events_b[..] else { panic!("{events_b:?}") };
        assert_eq!((*oa, *ob), (DirectionOutcome::TheyDownload, DirectionOutcome::WeDownload));
        assert_eq!((pa.nick.as_str(), pb.nick.as_str()), ("b", "a"));
        assert!(pa.key_valid && pb.key_valid);
        assert!(pa.supports("ADCGet") && pb.supports("TTHL"));
    }

    #[test]
    fn closes_on_tie_nothing_wrong_nick_and_unexpected() {
        let now = t0();
        let run = |dir: Direction, input: &[u8], expected: Option<&str>| {
            let mut cfg = CcConfig::new("me", b"r", dir, 5);
            cfg.expected_nick = expected.map(str::to_owned);
            let mut hs = CcHandshake::new(Role::Listener, cfg, now);
            hs.handle_input(now, input);
            let (_, events) = drain(&mut hs);
            assert!(hs.is_done());
            events
        };
        let tail = b"$MyNick x|$Lock EXTENDEDPROTOCOLz Pk=p|$Key k|";
        let mut tie = tail.to_vec();
        tie.extend(b"$Direction Download 5|");
        assert_eq!(run(Direction::Download, &tie, None), vec![Event::Closed(CloseReason::DirectionTie)]);
        let mut nobody = tail.to_vec();
        nobody.extend(b"$Direction Upload 0|");
        assert_eq!(run(Direction::Upload, &nobody, None), vec![Event::Closed(CloseReason::NothingToTransfer)]);
        assert_eq!(
            run(Direction::Upload, b"$MyNick mallory|", Some("x")),
            vec![Event::Closed(CloseReason::WrongNick("mallory".into()))]
        );
        assert_eq!(
            run(Direction::Upload, b"$Lock EXTENDEDPROTOCOL Pk=p|", None),
            vec![Event::Closed(CloseReason::Unexpected("$Lock".into()))]
        );
        assert_eq!(
            run(Direction::Upload, b"$MyNick x|$Get a$1|", None),
            vec![Event::Closed(CloseReason::Unexpected("$Get".into()))]
        );
        assert_eq!(run(Direction::Upload, b"$MyNick x|$Lock A Pk=p|", None), vec![Event::Closed(CloseReason::BadLock)]);
        assert!(matches!(
            &run(Direction::Upload, b"$MyNick a b|", None)[..],
            [Event::Closed(CloseReason::Malformed(_))]
        ));
        let long = vec![b'x'; crate::limits::MAX_COMMAND + 1];
        assert!(matches!(&run(Direction::Upload, &long, None)[..], [Event::Closed(CloseReason::Framing(_))]));
    }

    #[test]
    fn timeout_and_eof() {
        let now = t0();
        let mut hs = CcHandshake::new(Role::Listener, CcConfig::new("me", b"r", Direction::Upload, 1), now);
        assert_eq!(hs.poll_output(), Some(Output::Timeout(now + HANDSHAKE_TIMEOUT)));
        hs.handle_timeout(now + Duration::from_secs(29));
        assert!(!hs.is_done());
        hs.handle_timeout(now + HANDSHAKE_TIMEOUT);
        assert_eq!(hs.poll_output(), Some(Output::Event(Event::Closed(CloseReason::Timeout))));
        assert_eq!(hs.poll_output(), None);
        // Input after the deadline counts as a timeout too.
        let mut hs = CcHandshake::new(Role::Listener, CcConfig::new("me", b"r", Direction::Upload, 1), now);
        hs.handle_input(now + HANDSHAKE_TIMEOUT, b"$MyNick x|");
        assert_eq!(hs.poll_output(), Some(Output::Event(Event::Closed(CloseReason::Timeout))));
        let mut hs = CcHandshake::new(Role::Listener, CcConfig::new("me", b"r", Direction::Upload, 1), now);
        hs.handle_eof();
        assert_eq!(hs.poll_output(), Some(Output::Event(Event::Closed(CloseReason::PeerClosed))));
        hs.handle_eof();
        hs.handle_input(now, b"$MyNick x|");
        assert_eq!(hs.poll_output(), None);
    }
}
