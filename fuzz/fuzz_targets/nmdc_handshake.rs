//! `handshake::CcHandshake` in both roles, driven by arbitrary peer bytes, well-formed
//! handshake commands with fuzzed fields, simulated time and peer close.
//!
//! Header: role, our direction and number, the expected peer nick (or none), the timeout,
//! our lock's random bytes, our `Pk=` and `$Supports`. Then operations chosen by one byte
//! each: raw bytes, a canned command (possibly cut in two), time passing, `handle_timeout`,
//! `handle_eof`.
//!
//! A model built from docs/protocols/nmdc.md#cc-handshake reads the same bytes with its own `CommandReader` and
//! says what must happen. After every call all output is drained and checked:
//! - a connector's first output is `$MyNick <us>|$Lock <our lock> Pk=…|`; a listener says
//!   nothing until the peer's `$Lock`, then sends `$MyNick`+`$Lock`; either side then sends
//!   `$Supports` (only for an `EXTENDEDPROTOCOL` lock), `$Direction` and the right `$Key`;
//! - exactly the event the model expects, at most one in the machine's life
//!   (`Ready` or `Closed`), nothing after it, `is_done()` agreeing;
//! - `Ready` carries the peer the model saw, the direction rule's outcome and the bytes
//!   after the last handshake command;
//! - while not done, the last output is `Timeout(start + timeout)`; once done, `None`.
#![no_main]

mod common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_nmdc::command::{resolve_direction, Direction, DirectionOutcome};
use omnipeer_nmdc::handshake::{CcConfig, CcHandshake, CloseReason, Event, Output, Peer, Role};
use omnipeer_nmdc::lock::{is_extended, key_matches, lock_to_key};
use omnipeer_nmdc::{Command, CommandReader};
use std::time::{Duration, Instant};

const NICK: &str = "alice";

#[derive(Debug, Clone)]
enum State {
    AwaitNick,
    AwaitLock {
        nick: String,
    },
    AwaitRest {
        nick: String,
        lock: Vec<u8>,
        pk: Option<String>,
        supports: Vec<String>,
        direction: Option<(Direction, u32)>,
        key: Option<Vec<u8>>,
    },
    Done,
}

/// What one call must produce.
#[derive(Debug, Default)]
struct Expect {
    /// The reply to the peer's `$Lock`: the peer's lock.
    reply_to: Option<Vec<u8>>,
    event: Option<Event>,
}

struct Model {
    role: Role,
    cfg: CcConfig,
    our_lock: Vec<u8>,
    reader: CommandReader,
    state: State,
    deadline: Instant,
    /// Every byte the machine took in (while not done and in time).
    pushed: Vec<u8>,
    events: usize,
}

impl Model {
    fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn close(&mut self, e: &mut Expect, reason: CloseReason) {
        self.state = State::Done;
        e.event = Some(Event::Closed(reason));
    }

    fn input(&mut self, now: Instant, bytes: &[u8]) -> Expect {
        let mut e = Expect::default();
        if self.done() {
            return e;
        }
        if now >= self.deadline {
            self.close(&mut e, CloseReason::Timeout);
            return e;
        }
        self.pushed.extend_from_slice(bytes);
        self.reader.push(bytes);
        while !self.done() {
            let raw = match self.reader.next_command() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(err) => {
                    self.close(&mut e, CloseReason::Framing(err));
                    break;
                }
            };
            match Command::parse(&raw) {
                Ok(cmd) => self.command(&mut e, cmd),
                Err(err) => self.close(&mut e, CloseReason::Malformed(err)),
            }
        }
        e
    }

    fn command(&mut self, e: &mut Expect, cmd: Command) {
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match (state, cmd) {
            (State::AwaitNick, Command::MyNick(nick)) => {
                if self.cfg.expected_nick.as_ref().is_some_and(|w| *w != nick) {
                    return self.close(e, CloseReason::WrongNick(nick));
                }
                State::AwaitLock { nick }
            }
            (State::AwaitLock { nick }, Command::Lock { lock, pk }) => {
                if lock_to_key(&lock).is_err() {
                    return self.close(e, CloseReason::BadLock);
                }
                e.reply_to = Some(lock.clone());
                State::AwaitRest { nick, lock, pk, supports: Vec::new(), direction: None, key: None }
            }
            (State::AwaitRest { nick, lock, pk, direction, key, .. }, Command::Supports { features, .. }) => {
                State::AwaitRest { nick, lock, pk, supports: features, direction, key }
            }
            (State::AwaitRest { nick, lock, pk, supports, key, .. }, Command::Direction { direction, number }) => {
                self.rest(e, nick, lock, pk, supports, Some((direction, number)), key)
            }
            (State::AwaitRest { nick, lock, pk, supports, direction, .. }, Command::Key(k)) => {
                self.rest(e, nick, lock, pk, supports, direction, Some(k))
            }
            (_, other) => return self.close(e, CloseReason::Unexpected(other.name().to_owned())),
        };
    }

    #[allow(clippy::too_many_arguments)]
    fn rest(
        &mut self,
        e: &mut Expect,
        nick: String,
        lock: Vec<u8>,
        pk: Option<String>,
        supports: Vec<String>,
        direction: Option<(Direction, u32)>,
        key: Option<Vec<u8>>,
    ) -> State {
        let (Some((dir, number)), Some(key)) = (direction, &key) else {
            return State::AwaitRest { nick, lock, pk, supports, direction, key };
        };
        let outcome = resolve_direction(self.cfg.direction, self.cfg.number, dir, number);
        e.event = Some(match outcome {
            DirectionOutcome::Tie => Event::Closed(CloseReason::DirectionTie),
            DirectionOutcome::Nobody => Event::Closed(CloseReason::NothingToTransfer),
            _ => Event::Ready {
                peer: Peer {
                    nick,
                    lock,
                    pk,
                    supports,
                    direction: dir,
                    number,
                    key_valid: key_matches(&self.our_lock, key),
                },
                outcome,
                leftover: self.reader.take_rest(),
            },
        });
        State::Done
    }
}

struct Harness {
    hs: CcHandshake,
    m: Model,
}

/// Split transmitted bytes into parsed commands.
fn commands(bytes: &[u8]) -> Vec<Command> {
    let mut r = CommandReader::new();
    r.push(bytes);
    let mut v = Vec::new();
    while let Some(raw) = r.next_command().expect("we send short commands") {
        v.push(Command::parse(&raw).unwrap_or_else(|e| panic!("we sent unparsable {raw:?}: {e}")));
    }
    assert_eq!(r.buffered(), 0, "transmit does not end with |: {bytes:?}");
    v
}

impl Harness {
    fn our_lock_command(&self) -> Command {
        let pk: String = self.m.cfg.pk.chars().map(|c| if matches!(c, ' ' | '$' | '|') { '_' } else { c }).collect();
        Command::Lock {
            lock: self.m.our_lock.clone(),
            pk: Some(if pk.is_empty() { "omnipeer".to_owned() } else { pk }),
        }
    }

    /// Drain and compare with what the model expects.
    fn settle(&mut self, want: Expect) {
        let mut out = Vec::new();
        let mut timeout = None;
        for _ in 0..100 {
            match self.hs.poll_output() {
                None => break,
                Some(Output::Timeout(t)) => {
                    timeout = Some(t);
                    break;
                }
                Some(o) => out.push(o),
            }
        }
        let mut it = out.into_iter();
        if let Some(peer_lock) = &want.reply_to {
            let Some(Output::Transmit(bytes)) = it.next() else { panic!("no reply to the peer's $Lock") };
            let mut cmds = commands(&bytes).into_iter();
            if self.m.role == Role::Listener {
                assert_eq!(cmds.next(), Some(Command::MyNick(NICK.into())));
                assert_eq!(cmds.next(), Some(self.our_lock_command()));
            }
            if is_extended(peer_lock) {
                assert_eq!(
                    cmds.next(),
                    Some(Command::Supports { features: self.m.cfg.supports.clone(), trailing_space: false })
                );
            }
            assert_eq!(
                cmds.next(),
                Some(Command::Direction { direction: self.m.cfg.direction, number: self.m.cfg.number })
            );
            match cmds.next() {
                Some(Command::Key(k)) => {
                    assert!(key_matches(peer_lock, &k), "wrong $Key for {peer_lock:?}")
                }
                other => panic!("expected $Key, got {other:?}"),
            }
            assert_eq!(cmds.next(), None);
        }
        match (it.next(), &want.event) {
            (None, None) => {}
            (Some(Output::Event(got)), Some(w)) => {
                self.m.events += 1;
                assert_eq!(self.m.events, 1, "a second event: {got:?}");
                assert_eq!(&got, w, "event differs from the model");
                if let Event::Ready { leftover, .. } = &got {
                    let pushed = &self.m.pushed;
                    assert!(pushed.ends_with(leftover));
                    assert_eq!(pushed[..pushed.len() - leftover.len()].last(), Some(&b'|'));
                }
            }
            (got, w) => panic!("got {got:?}, the model expects {w:?}"),
        }
        let rest: Vec<Output> = it.collect();
        assert!(rest.is_empty(), "unexpected output {rest:?}");
        assert_eq!(self.hs.is_done(), self.m.done());
        match timeout {
            Some(t) => {
                assert!(!self.m.done(), "deadline after the end");
                assert_eq!(t, self.m.deadline);
            }
            None => assert!(self.m.done(), "no deadline while running"),
        }
        if self.m.done() {
            assert_eq!(self.hs.poll_output(), None);
        }
    }

    fn input(&mut self, now: Instant, bytes: &[u8]) {
        let want = self.m.input(now, bytes);
        self.hs.handle_input(now, bytes);
        self.settle(want);
    }
}

/// A well-formed handshake command with fuzzed fields.
fn canned(inp: &mut Input<'_>, our_lock: &[u8]) -> Vec<u8> {
    let kind = inp.u8();
    let v = kind >> 4;
    let cmd = match kind % 10 {
        0 => Command::MyNick(["bob", "carol", "eve", "Bob"][usize::from(v % 4)].into()),
        1 => {
            let lock: Vec<u8> = match v % 8 {
                0 => b"EXTENDEDPROTOCOLABCABCABCABCABCABC".to_vec(),
                1 => b"EXTENDEDPROTOCOL/wut?".to_vec(),
                2 => b"EXTENDEDPROTOCOLABCABCABCABCABCABCA".to_vec(),
                3 => b"ABCD".to_vec(),
                4 => b"A".to_vec(),
                5 => vec![b'x'; 1024],
                6 => inp.chunk().iter().copied().filter(|&b| b != b'|').collect(),
                _ => our_lock.to_vec(),
            };
            let pk = match inp.u8() % 4 {
                0 => None,
                1 => Some("DCPLUSPLUS2.4.2Ref=dchub://127.0.0.1:4120".into()),
                2 => Some("ncdc-1.23.1,Ref=127.0.0.1:4120".into()),
                _ => Some("MICRODCABCABCABCABCAB".into()),
            };
            if lock.is_empty() {
                return b"$Lock |".to_vec();
            }
            Command::Lock { lock, pk }
        }
        2 => Command::Supports {
            features: match v % 3 {
                0 => vec!["MiniSlots", "XmlBZList", "ADCGet", "TTHL", "TTHF", "ZLIG"],
                1 => vec!["MiniSlots", "XmlBZList", "ADCGet", "TTHF"],
                _ => vec![],
            }
            .into_iter()
            .map(str::to_owned)
            .collect(),
            trailing_space: v & 8 != 0,
        },
        3 | 4 => Command::Direction {
            direction: if v & 1 == 0 { Direction::Download } else { Direction::Upload },
            number: match (v >> 1) % 4 {
                0 => 0,
                1 => 3924,
                2 => 32767,
                _ => inp.u32(),
            },
        },
        5 | 6 => {
            let mut key = lock_to_key(our_lock).unwrap_or_default();
            match v % 4 {
                0 | 1 => {}
                2 => key.reverse(),
                _ => key.truncate(key.len() / 2),
            }
            key.retain(|&b| b != b'|');
            Command::Key(key)
        }
        7 => Command::parse(b"$ADCGET file files.xml.bz2 0 -1").unwrap(),
        8 => Command::Error("Secure connection required!".into()),
        _ => Command::Get { path: "files.xml.bz2".into(), offset: 1 },
    };
    cmd.encode()
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let role = if flags & 1 == 0 { Role::Connector } else { Role::Listener };
    let direction = if flags & 2 == 0 { Direction::Download } else { Direction::Upload };
    let timeout = match (flags >> 2) % 4 {
        0 => Duration::ZERO,
        1 => Duration::from_millis(1),
        2 => omnipeer_nmdc::handshake::HANDSHAKE_TIMEOUT,
        _ => Duration::from_secs(3600),
    };
    let number = match (flags >> 4) % 4 {
        0 => 0,
        1 => 3924,
        2 => 32767,
        _ => inp.u32(),
    };
    let lock_random = inp.chunk().to_vec();
    let mut cfg = CcConfig::new(NICK, &lock_random, direction, number);
    cfg.timeout = timeout;
    if flags & 0x40 != 0 {
        cfg.expected_nick = Some("bob".into());
    }
    if flags & 0x80 != 0 {
        cfg.pk = ["", "a b$c|d", "ncdc-1.23.1"][usize::from(inp.u8() % 3)].into();
        cfg.supports = vec![];
    }

    let t0 = Instant::now();
    let mut now = t0;
    let hs = CcHandshake::new(role, cfg.clone(), t0);
    let our_lock = hs.our_lock().to_vec();
    assert!(is_extended(&our_lock));
    assert_eq!(our_lock.len(), 16 + lock_random.len().min(1024 - 16));
    assert!(lock_to_key(&our_lock).is_ok());
    let mut h = Harness {
        hs,
        m: Model {
            role,
            cfg,
            our_lock: our_lock.clone(),
            reader: CommandReader::new(),
            state: State::AwaitNick,
            deadline: t0 + timeout,
            pushed: Vec::new(),
            events: 0,
        },
    };
    if role == Role::Connector {
        let Some(Output::Transmit(b)) = h.hs.poll_output() else { panic!("connector does not speak first") };
        let cmds = commands(&b);
        assert_eq!(cmds, vec![Command::MyNick(NICK.into()), h.our_lock_command()]);
    }
    h.settle(Expect::default());

    let mut steps = 0;
    while !inp.is_empty() && steps < 1000 {
        steps += 1;
        let op = inp.u8();
        if op & 0x80 != 0 {
            now += Duration::from_millis(u64::from(inp.u16()));
        }
        match op & 0x7f {
            0..=39 => {
                let chunk = inp.chunk();
                h.input(now, chunk);
            }
            40..=99 => {
                let line = canned(&mut inp, &our_lock);
                let cut = usize::from(inp.u8()) % (line.len() + 1);
                h.input(now, &line[..cut]);
                h.input(now, &line[cut..]);
            }
            100..=114 => {
                let mut want = Expect::default();
                if !h.m.done() && now >= h.m.deadline {
                    h.m.close(&mut want, CloseReason::Timeout);
                }
                h.hs.handle_timeout(now);
                h.settle(want);
            }
            _ => {
                let mut want = Expect::default();
                if !h.m.done() {
                    h.m.close(&mut want, CloseReason::PeerClosed);
                }
                h.hs.handle_eof();
                h.settle(want);
            }
        }
    }
});
