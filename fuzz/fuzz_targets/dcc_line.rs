//! `LineReader` framing and `Message::parse`/`encode`.
//!
//! The whole input is the byte stream, so plain protocol lines (see `fuzz/seeds/dcc_line`)
//! are fed as they are. How the stream is split comes from its first bytes: byte 0 modulo
//! 16 is the number of cut points, and a PRNG seeded with the first eight bytes places
//! them. Every stream is also fed whole and one byte at a time, with the line limit at
//! `limits::MAX_LINE` and at a few tiny limits, and once more (at `MAX_LINE`, PRNG cuts)
//! repeated past 8 KiB so the reader's compaction (after 4096 consumed bytes) runs too.
//!
//! Checked:
//! - the lines (and the final error / leftover) do not depend on how the stream is split,
//!   and match a simple reference splitter;
//! - every line that parses to a `Message` round-trips: `parse(encode(m) minus "\n") == m`,
//!   the encoding is one line, and it starts with the line's code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_dcc::limits::MAX_LINE;
use omnipeer_dcc::{LineError, LineReader, Message};

/// What a whole stream yields: the lines, then either an error or the unterminated rest.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    lines: Vec<Vec<u8>>,
    end: Result<Vec<u8>, LineError>,
}

/// The specification, written as plainly as possible: split at `\n`, strip one `\r` before
/// it, refuse a line longer than `limit`, refuse an unterminated tail longer than
/// `limit + 1` (a line of `limit` bytes plus a `\r` still waiting for its `\n`).
fn reference(stream: &[u8], limit: usize) -> Outcome {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..i];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.len() > limit {
            return Outcome { lines, end: Err(LineError::TooLong { limit }) };
        }
        lines.push(line.to_vec());
        rest = &rest[i + 1..];
    }
    if rest.len() > limit + 1 {
        return Outcome { lines, end: Err(LineError::TooLong { limit }) };
    }
    Outcome { lines, end: Ok(rest.to_vec()) }
}

/// Feed `stream` to a `LineReader` in the chunks given by `cuts`, reading lines after each
/// push and stopping at the first error, as a driver would.
fn chunked(stream: &[u8], cuts: &[usize], limit: usize) -> Outcome {
    let mut r = LineReader::new(limit);
    let mut lines = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        r.push(&stream[prev..c]);
        prev = c;
        loop {
            match r.next_line() {
                Ok(Some(l)) => {
                    assert!(l.len() <= limit, "line longer than the limit");
                    assert!(!l.contains(&b'\n'), "line contains its terminator");
                    lines.push(l);
                }
                Ok(None) => break,
                Err(e) => return Outcome { lines, end: Err(e) },
            }
        }
        // Nothing beyond the limit (plus a possible `\r`) is held waiting for a `\n`.
        assert!(r.buffered() <= limit + 1, "buffered {} > limit {} + 1", r.buffered(), limit);
    }
    let buffered = r.buffered();
    let rest = r.take_rest();
    assert_eq!(rest.len(), buffered);
    assert_eq!(r.buffered(), 0);
    Outcome { lines, end: Ok(rest) }
}

fn check_message(line: &[u8]) {
    let Ok(m) = Message::parse(line) else { return };
    let enc = m.encode();
    assert_eq!(enc.last(), Some(&b'\n'), "encoding does not end with \\n: {m:?}");
    let body = &enc[..enc.len() - 1];
    assert!(!body.contains(&b'\n'), "encoding is more than one line: {m:?}");
    assert!(body.starts_with(m.code().to_string().as_bytes()), "encoding lost the code: {m:?}");
    assert_eq!(&line[..3], &body[..3], "parsed code differs from the line's: {m:?}");
    match Message::parse(body) {
        Ok(again) => assert_eq!(again, m, "round trip changed the message; line {line:?}"),
        Err(e) => panic!("re-parse of {:?} failed: {e}; original line {line:?}", body),
    }
}

/// Cut points for `len` bytes, placed by a splitmix64 PRNG seeded from the input's first
/// eight bytes; byte 0 modulo 16 says how many.
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

fn check_stream(stream: &[u8], cut_sets: &[Vec<usize>], limits: &[usize], parse: bool) {
    for &limit in limits {
        let want = reference(stream, limit);
        for cuts in cut_sets {
            let got = chunked(stream, cuts, limit);
            assert_eq!(got, want, "limit {limit}, cuts {cuts:?}");
        }
        if parse && limit == MAX_LINE {
            for line in &want.lines {
                check_message(line);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole: Vec<usize> = Vec::new();
    let bytewise: Vec<usize> = (1..data.len()).collect();
    let cut_sets = [whole, bytewise, prng_cuts(data, data.len())];
    check_stream(data, &cut_sets, &[MAX_LINE, 8, 1, 0], true);

    // Long enough for the reader to compact its buffer (one limit, one split: this stream
    // is up to 8 KiB of short lines, the costly part of each run).
    if !data.is_empty() && data.len() < 8192 {
        let stream = data.repeat(8192 / data.len() + 1);
        check_stream(&stream, &[prng_cuts(data, stream.len())], &[MAX_LINE], false);
    }

    // The input as one unframed line (it may hold `\n` and `\r` anywhere).
    if let Ok(m) = Message::parse(data) {
        let enc = m.encode();
        assert_eq!(Message::parse(&enc[..enc.len() - 1]), Ok(m));
    }
});
