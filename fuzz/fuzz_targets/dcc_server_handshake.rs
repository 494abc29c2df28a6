//! `server::ServerHandshake` driven by arbitrary input chunks, decisions and simulated time.
//!
//! The input is a small program: a header (services, `full`, timeout) and then operations
//! chosen by one byte each (raw bytes from the peer, a well-formed opening line with
//! fuzzed fields, time passing, `accept_send`, `accept_get`, `reject`, `ignore`, peer
//! close). After every call all output is drained and checked against a model of the
//! machine: events come in a legal order, at most one ends the handshake, nothing comes
//! after it, every transmit is one valid server line, deadlines are the documented ones,
//! decisions made at the wrong time do nothing, and leftover bytes are exactly what
//! followed the last line read.
#![no_main]

mod common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_dcc::server::{CloseReason, Event, Output, ServerConfig, ServerHandshake};
use omnipeer_dcc::{Message, Services};
use std::time::{Duration, Instant};

const NICK: &str = "bob";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    AwaitOpening,
    SendDecision { size: u64 },
    GetDecision,
    AwaitResume { size: u64 },
    Done,
}

impl Model {
    fn awaits_peer(self) -> bool {
        matches!(self, Model::AwaitOpening | Model::AwaitResume { .. })
    }
}

struct Harness {
    h: ServerHandshake,
    model: Model,
    deadline: Instant,
    timeout: Duration,
    full: bool,
    services: Services,
    /// Every byte the machine buffered (pushed while it was not done).
    pushed: Vec<u8>,
}

fn drain(h: &mut ServerHandshake) -> (Vec<Output>, Option<Instant>) {
    let mut out = Vec::new();
    for _ in 0..1000 {
        match h.poll_output() {
            None => return (out, None),
            Some(Output::Timeout(t)) => return (out, Some(t)),
            Some(o) => out.push(o),
        }
    }
    panic!("poll_output never ran dry");
}

fn check_transmit(bytes: &[u8]) -> Message {
    assert_eq!(bytes.last(), Some(&b'\n'), "transmit without terminator: {bytes:?}");
    let body = &bytes[..bytes.len() - 1];
    assert!(!body.contains(&b'\n'), "transmit of several lines: {bytes:?}");
    let m = Message::parse(body).unwrap_or_else(|e| panic!("server sent unparsable {bytes:?}: {e}"));
    match &m {
        Message::ChatAccepted { nick }
        | Message::FserveAccepted { nick }
        | Message::SendAccepted { nick, .. }
        | Message::GetAccepted { nick, .. } => assert_eq!(nick, NICK),
        Message::Unavailable | Message::Rejected => {}
        other => panic!("server sent a client line: {other:?}"),
    }
    m
}

impl Harness {
    /// Drain and check everything the last call produced; returns it for call-specific checks.
    fn settle(&mut self) -> Vec<Output> {
        let (out, timeout) = drain(&mut self.h);
        let mut last_tx: Option<Message> = None;
        for o in &out {
            match o {
                Output::Transmit(b) => {
                    let m = check_transmit(b);
                    assert_ne!(self.model, Model::Done, "transmit after the end: {m:?}");
                    assert!(last_tx.is_none(), "two transmits without an event: {m:?}");
                    if let Message::GetAccepted { .. } = m {
                        // `131` is the only reply not paired with an event: the exchange
                        // goes on (the machine now waits for `132`).
                        assert!(matches!(self.model, Model::AwaitResume { .. }));
                    } else {
                        last_tx = Some(m);
                    }
                }
                Output::Event(e) => {
                    self.on_event(e, last_tx.take());
                }
                Output::Timeout(_) => unreachable!(),
            }
        }
        assert!(last_tx.is_none(), "transmit not followed by its event: {last_tx:?}");
        assert_eq!(
            self.h.is_done(),
            self.model == Model::Done,
            "is_done() disagrees with the events so far (model {:?})",
            self.model
        );
        match timeout {
            Some(t) => {
                assert!(self.model.awaits_peer(), "deadline {t:?} in state {:?}", self.model);
                assert_eq!(t, self.deadline, "unexpected deadline");
            }
            None => assert!(!self.model.awaits_peer(), "no deadline in state {:?}", self.model),
        }
        out
    }

    fn on_event(&mut self, e: &Event, tx: Option<Message>) {
        let before = self.model;
        match e {
            Event::Closed(reason) => {
                assert_ne!(before, Model::Done, "second end: {reason:?}");
                match reason {
                    CloseReason::Unavailable(why) => {
                        assert_eq!(tx, Some(Message::Unavailable));
                        assert_eq!(why.is_none(), self.full);
                        if let Some(s) = why {
                            assert!(!self.services.offers(*s), "{s:?} is offered");
                        }
                    }
                    CloseReason::Rejected(_) => assert_eq!(tx, Some(Message::Rejected)),
                    _ => assert_eq!(tx, None, "{reason:?} after a reply"),
                }
                self.model = Model::Done;
            }
            Event::Chat { nick, leftover } | Event::Fserve { nick, leftover } => {
                assert_eq!(before, Model::AwaitOpening);
                assert!(!self.full);
                let want = if matches!(e, Event::Chat { .. }) {
                    Message::ChatAccepted { nick: NICK.into() }
                } else {
                    Message::FserveAccepted { nick: NICK.into() }
                };
                assert_eq!(tx, Some(want));
                assert!(!nick.is_empty());
                self.check_leftover(leftover);
                self.model = Model::Done;
            }
            Event::SendOffered { size, name, .. } => {
                assert_eq!(before, Model::AwaitOpening);
                assert!(self.services.send && !self.full);
                assert_eq!(tx, None);
                let n = name.as_str();
                assert!(!n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\']));
                self.model = Model::SendDecision { size: *size };
            }
            Event::GetRequested { name, .. } => {
                assert_eq!(before, Model::AwaitOpening);
                assert!(self.services.fserve && !self.full);
                assert_eq!(tx, None);
                let n = name.as_str();
                assert!(!n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\']));
                self.model = Model::GetDecision;
            }
            Event::Receive { receiver, leftover, .. } => {
                let Model::SendDecision { size } = before else { panic!("Receive in {before:?}") };
                assert_eq!(receiver.size(), size);
                assert!(receiver.position() <= size);
                assert_eq!(receiver.start(), receiver.position());
                assert_eq!(tx, Some(Message::SendAccepted { nick: NICK.into(), position: receiver.position() }));
                self.check_leftover(leftover);
                self.model = Model::Done;
            }
            Event::SendFile { sender, leftover, .. } => {
                let Model::AwaitResume { size } = before else { panic!("SendFile in {before:?}") };
                assert_eq!(tx, None);
                assert_eq!(sender.size(), size);
                assert!(sender.position() <= size);
                self.check_leftover(leftover);
                self.model = Model::Done;
            }
        }
    }

    /// `leftover` is what followed the last line read: a suffix of everything pushed, and
    /// what comes before it ends with a line terminator.
    fn check_leftover(&self, leftover: &[u8]) {
        assert!(self.pushed.ends_with(leftover), "leftover is not the tail of the input");
        let consumed = &self.pushed[..self.pushed.len() - leftover.len()];
        assert_eq!(consumed.last(), Some(&b'\n'), "leftover does not start after a line");
    }

    fn input(&mut self, now: Instant, bytes: &[u8]) {
        let model = self.model;
        let late = now >= self.deadline && model.awaits_peer();
        if model != Model::Done && !bytes.is_empty() && !late {
            self.pushed.extend_from_slice(bytes);
        }
        self.h.handle_input(now, bytes);
        let out = self.settle();
        if model == Model::Done {
            assert!(out.is_empty());
        } else if bytes.is_empty() {
            assert!(matches!(&out[..], [Output::Event(Event::Closed(CloseReason::PeerClosed))]));
        } else if late {
            assert!(matches!(&out[..], [Output::Event(Event::Closed(CloseReason::Timeout))]));
        } else if !model.awaits_peer() {
            assert!(out.is_empty(), "input during a decision produced {out:?}");
        }
    }
}

/// A well-formed client line with fuzzed fields.
fn canned_line(inp: &mut Input<'_>) -> Vec<u8> {
    let kind = inp.u8();
    let nick = match kind >> 4 {
        0 => "x".repeat(65),
        1 => String::new(),
        _ => "alice".to_owned(),
    };
    let name = omnipeer_dcc::decode_text(inp.chunk());
    let line = match kind % 8 {
        0 => format!("100 {nick}"),
        1 => format!("110 {nick}"),
        2 => format!("120 {nick} {} {name}", inp.number()),
        3 => format!("130 {nick} {name}"),
        4 => format!("132 {nick} {}", inp.number()),
        5 => format!("101 {nick}"),
        6 => "151 rejected".to_owned(),
        _ => format!("121 {nick} {}", inp.number()),
    };
    let mut v = line.into_bytes();
    v.extend_from_slice(if inp.bool() { b"\r\n" } else { b"\n" });
    v
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let services = Services { chat: flags & 1 != 0, send: flags & 2 != 0, fserve: flags & 4 != 0 };
    let full = flags & 8 != 0;
    let timeout = match (flags >> 4) % 4 {
        0 => Duration::ZERO,
        1 => Duration::from_millis(1),
        2 => Duration::from_secs(15),
        _ => Duration::from_secs(3600),
    };
    let mut cfg = ServerConfig::new(NICK, services);
    cfg.handshake_timeout = timeout;
    let t0 = Instant::now();
    let mut now = t0;
    let mut hs = Harness {
        h: ServerHandshake::new(cfg, t0, full),
        model: Model::AwaitOpening,
        deadline: t0 + timeout,
        timeout,
        full,
        services,
        pushed: Vec::new(),
    };
    hs.settle();

    let mut steps = 0;
    while !inp.is_empty() && steps < 256 {
        steps += 1;
        let op = inp.u8();
        // Every operation may first let some time pass (up to ~65 s).
        if op & 0x80 != 0 {
            now += Duration::from_millis(inp.u16() as u64);
        }
        match op & 0x7f {
            0..=29 => {
                // Raw bytes; an empty chunk is skipped (peer close has its own operation).
                let chunk = inp.chunk();
                if !chunk.is_empty() {
                    hs.input(now, chunk);
                }
            }
            30..=59 => {
                // A well-formed line, possibly cut in two.
                let line = canned_line(&mut inp);
                let cut = inp.u8() as usize % (line.len() + 1);
                for part in [&line[..cut], &line[cut..]] {
                    if !part.is_empty() {
                        hs.input(now, part);
                    }
                }
            }
            60..=69 => {
                let model = hs.model;
                hs.h.handle_timeout(now);
                let out = hs.settle();
                if model.awaits_peer() && now >= hs.deadline {
                    assert!(matches!(&out[..], [Output::Event(Event::Closed(CloseReason::Timeout))]));
                } else {
                    assert!(out.is_empty(), "timeout at {now:?} produced {out:?}");
                }
            }
            70..=84 => {
                let model = hs.model;
                let position = inp.number();
                hs.h.accept_send(position);
                let out = hs.settle();
                match model {
                    Model::SendDecision { size } => {
                        assert_eq!(out.len(), 2);
                        assert!(matches!(
                            &out[1],
                            Output::Event(Event::Receive { receiver, .. })
                                if receiver.position() == position.min(size)
                        ));
                    }
                    _ => assert!(out.is_empty(), "accept_send in {model:?} produced {out:?}"),
                }
            }
            85..=99 => {
                let model = hs.model;
                let size = inp.number();
                hs.h.accept_get(now, size);
                if model == Model::GetDecision {
                    // The model moves before settling: buffered lines are read at once.
                    hs.model = Model::AwaitResume { size };
                    hs.deadline = now + hs.timeout;
                    let out = hs.settle();
                    match out.first() {
                        Some(Output::Transmit(b)) => assert_eq!(
                            Message::parse(&b[..b.len() - 1]),
                            Ok(Message::GetAccepted { nick: NICK.into(), size })
                        ),
                        other => panic!("accept_get produced {other:?}"),
                    }
                } else {
                    let out = hs.settle();
                    assert!(out.is_empty(), "accept_get in {model:?} produced {out:?}");
                }
            }
            100..=109 => {
                let model = hs.model;
                hs.h.reject("fuzz");
                let out = hs.settle();
                match model {
                    Model::SendDecision { .. } | Model::GetDecision => assert!(matches!(
                        &out[..],
                        [Output::Transmit(_), Output::Event(Event::Closed(CloseReason::Rejected(w)))]
                            if w == "fuzz"
                    )),
                    _ => assert!(out.is_empty(), "reject in {model:?} produced {out:?}"),
                }
            }
            110..=119 => {
                let model = hs.model;
                hs.h.ignore();
                let out = hs.settle();
                match model {
                    Model::GetDecision => {
                        assert!(matches!(&out[..], [Output::Event(Event::Closed(CloseReason::Ignored))]))
                    }
                    _ => assert!(out.is_empty(), "ignore in {model:?} produced {out:?}"),
                }
            }
            _ => hs.input(now, b""),
        }
    }
});
