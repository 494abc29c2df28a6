//! `LineReader` framing and `Message::parse`/`encode`.
//!
//! Input layout:
//! - byte 0: low nibble = number of cut points (0..=15), high nibble = how many times the
//!   payload is repeated minus one (so short inputs can still reach the reader's compaction,
//!   which only starts after 4096 consumed bytes);
//! - byte 1: a second, small line limit (1..=256) used by a second reader;
//! - then two bytes (little endian) per cut point: where to split the stream;
//! - the rest is the payload.
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

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let ncuts = (data[0] & 0x0f) as usize;
    let repeat = 1 + (data[0] >> 4) as usize;
    let small_limit = 1 + data[1] as usize;
    let data = &data[2..];
    let header = (ncuts * 2).min(data.len());
    let (cut_bytes, payload) = data.split_at(header);
    let stream: Vec<u8> = payload.repeat(repeat);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    for limit in [MAX_LINE, small_limit] {
        let got = chunked(&stream, &cuts, limit);
        let want = reference(&stream, limit);
        assert_eq!(got, want, "limit {limit}, cuts {cuts:?}");
        for line in &got.lines {
            check_message(line);
        }
    }
    // The payload as one unframed line (it may hold `\n` and `\r` anywhere).
    if let Ok(m) = Message::parse(payload) {
        let enc = m.encode();
        assert_eq!(Message::parse(&enc[..enc.len() - 1]), Ok(m));
    }
});
