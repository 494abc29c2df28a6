//! `client::ClientHandshake` for each `Request` kind, driven by arbitrary server bytes,
//! `resume_get` calls and simulated time.
//!
//! Header: request kind and its fields, the reply timeout. Then operations chosen by one
//! byte each: raw bytes from the server, a well-formed server line with fuzzed fields,
//! time passing, `resume_get`, server close. All output is drained after every call and
//! checked against a model: the opening line comes first and is what the request says,
//! events are legal for the request and come in order, at most one ends the exchange,
//! nothing follows it, and sizes/positions stay consistent.
#![no_main]

mod common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_dcc::client::{ClientError, ClientHandshake, Event, Output, Request};
use omnipeer_dcc::Message;
use std::time::{Duration, Instant};

const NICK: &str = "alice";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    AwaitReply,
    GetDecision { size: u64 },
    Done,
}

struct Harness {
    c: ClientHandshake,
    request: Request,
    model: Model,
    deadline: Instant,
    pushed: Vec<u8>,
}

fn drain(c: &mut ClientHandshake) -> (Vec<Output>, Option<Instant>) {
    let mut out = Vec::new();
    for _ in 0..1000 {
        match c.poll_output() {
            None => return (out, None),
            Some(Output::Timeout(t)) => return (out, Some(t)),
            Some(o) => out.push(o),
        }
    }
    panic!("poll_output never ran dry");
}

impl Harness {
    fn settle(&mut self) -> Vec<Output> {
        let (out, timeout) = drain(&mut self.c);
        let mut last_tx: Option<Message> = None;
        for o in &out {
            match o {
                Output::Transmit(b) => {
                    // After the opening line the client only ever sends `132`.
                    assert_eq!(b.last(), Some(&b'\n'));
                    let m = Message::parse(&b[..b.len() - 1])
                        .unwrap_or_else(|e| panic!("client sent unparsable {b:?}: {e}"));
                    assert!(matches!(m, Message::GetResume { .. }), "client sent {m:?}");
                    assert!(matches!(self.model, Model::GetDecision { .. }));
                    last_tx = Some(m);
                }
                Output::Event(e) => self.on_event(e, last_tx.take()),
                Output::Timeout(_) => unreachable!(),
            }
        }
        assert!(last_tx.is_none());
        match timeout {
            Some(t) => {
                assert_eq!(self.model, Model::AwaitReply, "deadline outside AwaitReply");
                assert_eq!(t, self.deadline);
            }
            None => assert_ne!(self.model, Model::AwaitReply, "no deadline while waiting"),
        }
        out
    }

    fn on_event(&mut self, e: &Event, tx: Option<Message>) {
        let before = self.model;
        assert_ne!(before, Model::Done, "event after the end: {e:?}");
        match e {
            Event::Failed(err) => {
                assert_eq!(tx, None);
                if let ClientError::Timeout(_) | ClientError::Closed = err {
                    assert_eq!(before, Model::AwaitReply);
                }
                self.model = Model::Done;
            }
            Event::Accepted { server_nick, leftover } => {
                assert_eq!(before, Model::AwaitReply);
                assert!(matches!(self.request, Request::Chat | Request::Fserve));
                assert!(!server_nick.is_empty());
                self.check_leftover(leftover);
                self.model = Model::Done;
            }
            Event::SendAccepted { sender, leftover, .. } => {
                assert_eq!(before, Model::AwaitReply);
                let Request::Send { size, .. } = self.request else { panic!("{e:?} for {:?}", self.request) };
                assert_eq!(sender.size(), size);
                assert!(sender.position() <= size);
                assert_eq!(sender.remaining(), size - sender.position());
                self.check_leftover(leftover);
                self.model = Model::Done;
            }
            Event::GetOffered { size, .. } => {
                assert_eq!(before, Model::AwaitReply);
                assert!(matches!(self.request, Request::Get { .. }));
                self.model = Model::GetDecision { size: *size };
            }
            Event::Receive { receiver, leftover } => {
                let Model::GetDecision { size } = before else { panic!("Receive in {before:?}") };
                assert_eq!(receiver.size(), size);
                assert!(receiver.position() <= size);
                assert_eq!(tx, Some(Message::GetResume { nick: NICK.into(), position: receiver.position() }));
                self.check_leftover(leftover);
                self.model = Model::Done;
            }
        }
    }

    fn check_leftover(&self, leftover: &[u8]) {
        assert!(self.pushed.ends_with(leftover), "leftover is not the tail of the input");
        let consumed = &self.pushed[..self.pushed.len() - leftover.len()];
        assert_eq!(consumed.last(), Some(&b'\n'), "leftover does not start after a line");
    }

    fn input(&mut self, now: Instant, bytes: &[u8]) {
        let model = self.model;
        if model == Model::AwaitReply && !bytes.is_empty() {
            self.pushed.extend_from_slice(bytes);
        }
        self.c.handle_input(now, bytes);
        let out = self.settle();
        if model != Model::AwaitReply {
            assert!(out.is_empty(), "input in {model:?} produced {out:?}");
        } else if bytes.is_empty() {
            assert!(matches!(&out[..], [Output::Event(Event::Failed(ClientError::Closed))]));
        }
    }
}

/// A well-formed server line with fuzzed fields.
fn canned_line(inp: &mut Input<'_>) -> Vec<u8> {
    let kind = inp.u8();
    let nick = if kind >> 4 == 0 { "x".repeat(65) } else { "bob".to_owned() };
    let line = match kind % 8 {
        0 => format!("101 {nick}"),
        1 => format!("111 {nick}"),
        2 => format!("121 {nick} {}", inp.number()),
        3 => format!("131 {nick} {}", inp.number()),
        4 => "150 unavailable".to_owned(),
        5 => "151 rejected".to_owned(),
        6 => format!("132 {nick} {}", inp.number()),
        _ => format!("100 {nick}"),
    };
    let mut v = line.into_bytes();
    v.extend_from_slice(if inp.bool() { b"\r\n" } else { b"\n" });
    v
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let request = match flags % 4 {
        0 => Request::Chat,
        1 => Request::Fserve,
        2 => {
            let size = inp.number();
            Request::Send { size, name: omnipeer_dcc::decode_text(inp.chunk()) }
        }
        _ => Request::Get { name: omnipeer_dcc::decode_text(inp.chunk()) },
    };
    let timeout = match (flags >> 2) % 4 {
        0 => Duration::ZERO,
        1 => Duration::from_millis(1),
        2 => omnipeer_dcc::client::REPLY_TIMEOUT,
        _ => Duration::from_secs(3600),
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = ClientHandshake::new(NICK, request.clone(), t0, timeout);

    // The opening line comes first and says what the request asks for.
    let expected = match &request {
        Request::Chat => Message::Chat { nick: NICK.into() },
        Request::Fserve => Message::Fserve { nick: NICK.into() },
        Request::Send { size, name } => Message::Send { nick: NICK.into(), size: *size, name: name.clone() },
        Request::Get { name } => Message::Get { nick: NICK.into(), name: name.clone() },
    };
    match c.poll_output() {
        Some(Output::Transmit(b)) => {
            assert_eq!(b, expected.encode());
            // A name the server can read back (one line, not blank) parses to the request.
            let name_ok = match &request {
                Request::Send { name, .. } | Request::Get { name } => !name.trim().is_empty() && !name.contains('\n'),
                _ => true,
            };
            if name_ok {
                assert_eq!(Message::parse(&b[..b.len() - 1]), Ok(expected));
            }
        }
        other => panic!("first output {other:?}"),
    }
    let mut h = Harness { c, request, model: Model::AwaitReply, deadline: t0 + timeout, pushed: Vec::new() };
    h.settle();

    let mut steps = 0;
    while !inp.is_empty() && steps < 256 {
        steps += 1;
        let op = inp.u8();
        if op & 0x80 != 0 {
            now += Duration::from_millis(inp.u16() as u64);
        }
        match op & 0x7f {
            0..=39 => {
                let chunk = inp.chunk();
                if !chunk.is_empty() {
                    h.input(now, chunk);
                }
            }
            40..=79 => {
                let line = canned_line(&mut inp);
                let cut = inp.u8() as usize % (line.len() + 1);
                for part in [&line[..cut], &line[cut..]] {
                    if !part.is_empty() {
                        h.input(now, part);
                    }
                }
            }
            80..=94 => {
                let model = h.model;
                h.c.handle_timeout(now);
                let out = h.settle();
                if model == Model::AwaitReply && now >= h.deadline {
                    assert!(matches!(&out[..], [Output::Event(Event::Failed(ClientError::Timeout(_)))]));
                } else {
                    assert!(out.is_empty(), "timeout in {model:?} produced {out:?}");
                }
            }
            95..=119 => {
                let model = h.model;
                let position = inp.number();
                h.c.resume_get(position);
                let out = h.settle();
                match model {
                    Model::GetDecision { size } => assert!(matches!(
                        &out[..],
                        [Output::Transmit(_), Output::Event(Event::Receive { receiver, .. })]
                            if receiver.position() == position.min(size)
                    )),
                    _ => assert!(out.is_empty(), "resume_get in {model:?} produced {out:?}"),
                }
            }
            _ => h.input(now, b""),
        }
    }
});
