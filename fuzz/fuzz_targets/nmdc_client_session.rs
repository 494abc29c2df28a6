//! The client side of a hub connection (`client::HubSession`), logged in, then fed hub
//! traffic chosen by the input: raw bytes, plain commands, and `$ZOn|` followed by a zlib
//! stream (compressed here from input bytes, whole or cut short, or garbage), split at
//! input-chosen points. The `ZPipe0` inflater must stay within `MAX_ZPIPE_INFLATED`.
//!
//! Checked: nothing panics; once the session reports `Closed` or `LoginFailed` it reports
//! nothing more and `is_done()` holds.
#![no_main]

mod common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_nmdc::client::{Event, HubSession, Output, SessionConfig};
use std::io::Write;
use std::time::Instant;

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn drain(s: &mut HubSession, ended: &mut bool) {
    while let Some(o) = s.poll_output() {
        match o {
            Output::Event(Event::Closed(_) | Event::LoginFailed(_)) => {
                assert!(!*ended, "a second end");
                *ended = true;
            }
            Output::Event(_) | Output::Transmit(_) => assert!(!*ended, "output after the end"),
            Output::Timeout(_) => break,
        }
    }
    assert_eq!(*ended, s.is_done());
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let now = Instant::now();
    let mut cfg = SessionConfig::new("alice");
    cfg.tls = input.bool();
    let mut s = HubSession::new(cfg, now).unwrap();
    let mut ended = false;
    s.handle_input(now, b"$Lock EXTENDEDPROTOCOL_verlihub Pk=version0.9.8e-r2|");
    s.handle_input(now, b"$Supports NoGetINFO NoHello UserIP2 ZPipe|$Hello alice|");
    drain(&mut s, &mut ended);
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        let len = (input.u8() as usize) * 4;
        let chunk = input.take(len).to_vec();
        let wire = match input.u8() % 4 {
            0 => chunk,
            1 => {
                let mut w = b"$ZOn|".to_vec();
                w.extend(zlib(&chunk));
                w
            }
            2 => {
                // A stream cut short, then plain bytes.
                let mut z = zlib(&chunk);
                z.truncate(z.len() / 2);
                let mut w = b"$ZOn|".to_vec();
                w.extend(z);
                w
            }
            _ => {
                let mut w = b"$ZOn|".to_vec();
                w.extend(&chunk);
                w
            }
        };
        // Fed in pieces the input chooses.
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (input.u8() as usize + 1).min(rest.len());
            s.handle_input(now, &rest[..n]);
            rest = &rest[n..];
            drain(&mut s, &mut ended);
        }
    }
});
