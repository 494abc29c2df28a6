#![no_main]
//! The Soulseek client machine (`session::ClientSession`) fed bytes it never asked for: on
//! the server connection and on peer connections it accepted, cut anywhere, with closes,
//! failed dials and time passing. It must never panic, and `poll_output` must run dry.
//!
//! Operations, one byte each: accept a peer connection (at most 8), push the next chunk of
//! input (length from one byte) to the server or to one of the peers, close one, report a
//! dial failure, start a search, let time pass and run the timers.

use libfuzzer_sys::fuzz_target;
use omnipeer_slsk::session::{ClientSession, SessionConfig, DEFAULT_MAX_CHILDREN, SERVER};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut s = ClientSession::new(SessionConfig {
        user: "me".into(),
        password: "pw".into(),
        listen_port: 2234,
        major_version: 177,
        minor_version: 1,
        first_token: 100,
        shared: (1, 3),
        max_children: DEFAULT_MAX_CHILDREN,
    });
    s.server_connected(now);
    let mut peers = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        match op % 7 {
            0 if peers.len() < 8 => peers.push(s.accepted(now)),
            1 | 2 => {
                let len = data.get(i).copied().unwrap_or(0) as usize;
                i += 1;
                let end = (i + len).min(data.len());
                let chunk = &data[i.min(end)..end];
                i = end;
                let conn = if op % 7 == 1 || peers.is_empty() { SERVER } else { peers[op as usize / 7 % peers.len()] };
                s.handle_input(now, conn, chunk);
            }
            3 if !peers.is_empty() => {
                let c = peers.remove(op as usize / 7 % peers.len());
                s.closed(now, c);
            }
            4 if !peers.is_empty() => s.connect_failed(now, peers[op as usize / 7 % peers.len()]),
            5 => {
                s.search("some words");
            }
            _ => {
                now += Duration::from_millis(u64::from(op) * 97);
                s.handle_timeout(now);
                let _ = s.poll_timeout();
            }
        }
        let mut n = 0;
        while s.poll_output().is_some() {
            n += 1;
            assert!(n < 1_000_000, "poll_output does not run dry");
        }
    }
});
