//! ADC line splitting (`message::LineReader`) and `Message::parse`/`encode`
//! (docs/protocols/adc.md#syntax).
//!
//! The whole input is the byte stream (plain protocol text from `fuzz/seeds/adc_message`
//! works as it is). It is fed whole, one byte at a time, and at cut points a PRNG seeded
//! with its first eight bytes places (byte 0 modulo 16 of them), at the limits
//! `MAX_LINE_LOGIN`, `MAX_LINE` and a few tiny ones.
//!
//! Checked:
//! - the lines, the final error and the leftover do not depend on how the stream is split
//!   and match a plain reference splitter; `buffered()` never exceeds the limit;
//! - every line that parses is stable under encode → parse, the encoding holds no `\n`
//!   but its last byte, and the SID/CID/feature fields re-encode to what was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_adc::message::{LineError, LineReader, Message, MAX_LINE, MAX_LINE_LOGIN};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    lines: Vec<Vec<u8>>,
    end: Result<Vec<u8>, LineError>,
}

/// The specification: split at `\n`, skip empty lines, refuse a line or an unterminated
/// tail longer than `limit`.
fn reference(stream: &[u8], limit: usize) -> Outcome {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        if i > limit {
            return Outcome { lines, end: Err(LineError::TooLong { limit }) };
        }
        if i > 0 {
            lines.push(rest[..i].to_vec());
        }
        rest = &rest[i + 1..];
    }
    if rest.len() > limit {
        return Outcome { lines, end: Err(LineError::TooLong { limit }) };
    }
    Outcome { lines, end: Ok(rest.to_vec()) }
}

fn chunked(stream: &[u8], cuts: &[usize], limit: usize) -> Outcome {
    let mut r = LineReader::with_limit(limit);
    let mut lines = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        r.push(&stream[prev..c]);
        prev = c;
        loop {
            match r.next_frame() {
                Ok(Some(l)) => {
                    assert!(!l.is_empty() && l.len() <= limit && !l.contains(&b'\n'));
                    lines.push(l);
                }
                Ok(None) => break,
                Err(e) => return Outcome { lines, end: Err(e) },
            }
        }
        assert!(r.buffered() <= limit);
    }
    Outcome { lines, end: Ok(r.take_rest()) }
}

fn check_line(line: &[u8]) {
    let Ok(m) = Message::parse(line) else { return };
    let enc = m.encode();
    assert_eq!(enc.last(), Some(&b'\n'));
    let body = &enc[..enc.len() - 1];
    assert!(!body.contains(&b'\n'), "{m:?} encodes a newline");
    assert_eq!(Message::parse(body).as_ref(), Ok(&m), "encode -> parse unstable: {:?}", line.escape_ascii());
    assert_eq!(Message::parse(body).unwrap().encode(), enc);
    // Headers are canonical: what was read is what is written (but for one tolerated
    // trailing space and the escapes, which may be spelt only one way anyway).
    assert_eq!(&body[..4], &line[..4]);
}

fn prng_cuts(data: &[u8], len: usize) -> Vec<usize> {
    let mut seed = [0u8; 8];
    let n = data.len().min(8);
    seed[..n].copy_from_slice(&data[..n]);
    let mut x = u64::from_le_bytes(seed);
    let count = data.first().map_or(0, |b| (b % 16) as usize);
    let mut cuts: Vec<usize> = (0..count)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z % (len as u64 + 1)) as usize
        })
        .collect();
    cuts.sort_unstable();
    cuts
}

fuzz_target!(|data: &[u8]| {
    let cut_sets = [Vec::new(), (1..data.len()).collect::<Vec<_>>(), prng_cuts(data, data.len())];
    for limit in [MAX_LINE, MAX_LINE_LOGIN, 8, 1, 0] {
        let want = reference(data, limit);
        for cuts in &cut_sets {
            assert_eq!(chunked(data, cuts, limit), want, "limit {limit}, cuts {cuts:?}");
        }
        if limit == MAX_LINE {
            for l in &want.lines {
                check_line(l);
            }
        }
    }
    if !data.contains(&b'\n') {
        check_line(data);
    }
});
