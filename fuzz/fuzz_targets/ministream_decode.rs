//! `Message::decode`/`encode`, `frame::FrameReader` and the `Manager` on arbitrary input.
//!
//! The input is split into ops: byte 0 of each op picks an action (feed a message, the
//! time, connect, accept, send, read, close, listen on/off, transport loss), the next byte
//! the length of its data. Messages fed to the manager get low ids (so they hit live
//! streams) half of the time. The whole input is also decoded as one message and run
//! through the frame reader.
//!
//! Checked:
//! - decoding never panics; a decoded message re-encodes to the same bytes (except a
//!   client close's tolerated 3-byte payload) and decodes again to itself;
//! - the manager never panics, keeps every receive buffer within window + one message,
//!   and never holds more streams than it was asked to open or offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_ministream::frame::FrameReader;
use omnipeer_ministream::{Config, Event, Manager, Message, Output, StreamId, MAX_PAYLOAD};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let enc = m.encode();
        if !matches!(m, Message::ClientClose { .. }) {
            assert_eq!(enc, data);
        }
        assert_eq!(Message::decode(&enc), Ok(m));
    }
    let mut fr = FrameReader::new();
    fr.push(data);
    while let Ok(Some(msg)) = fr.next_message() {
        let _ = Message::decode(&msg);
    }

    let window = 64;
    let cfg = Config { recv_window: window, max_payload: 16, max_streams: 32, ..Config::default() };
    let mut n = 0u32;
    let mut m = Manager::new(
        cfg,
        vec![1; 32],
        Box::new(move || {
            n = n.wrapping_add(1) % 8;
            n
        }),
    );
    let mut now = Instant::now();
    let mut known: Vec<StreamId> = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let (op, len) = (rest[0], rest[1] as usize);
        let body = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let pick = known.get(len % known.len().max(1)).copied();
        match op % 10 {
            0 => {
                if let Ok(s) = m.connect(now) {
                    known.push(s)
                }
            }
            1 => m.set_listening(op & 0x80 != 0),
            2 => {
                now += Duration::from_millis(u64::from(op) * 50);
                m.handle_timeout(now)
            }
            3 => {
                if let Some(s) = pick {
                    let _ = m.accept(s);
                }
            }
            4 => {
                if let Some(s) = pick {
                    let _ = m.send(s, body);
                }
            }
            5 => {
                if let Some(s) = pick {
                    let _ = m.read(s, &mut [0; 7]);
                }
            }
            6 => {
                if let Some(s) = pick {
                    let _ = m.close(s);
                }
            }
            7 => m.transport_closed(),
            _ => {
                let mut msg = body.to_vec();
                if op & 0x40 != 0 && msg.len() >= 4 {
                    msg[1] = 0;
                    msg[2] = 0;
                    msg[3] %= 8;
                }
                m.handle_input(now, &msg)
            }
        }
        while let Some(o) = m.poll_output() {
            match o {
                Output::Event(Event::Incoming { stream, .. }) => known.push(stream),
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        for s in &known {
            assert!(m.buffered(*s) <= window + MAX_PAYLOAD);
        }
        assert!(m.stream_count() <= known.len());
    }
});
