//! `framing::FrameReader` for every `FrameKind`, over arbitrarily split input.
//!
//! Header: one byte picks the kind, the limit (the kind's default, a tiny one from the
//! input, or `usize::MAX`) and what happens after the first frame (nothing; `set_kind` to
//! `Peer` or `Distributed`, the way a peer socket leaves `PeerInit`, optionally with a
//! tiny `set_limit`; or `take_rest`, the way an `F` socket goes raw). One more byte asks
//! for the stream to be repeated past 72 KiB so the reader's buffer compaction runs. The
//! rest of the input is the byte stream.
//!
//! The stream is fed whole, one byte at a time, and split at up to 15 cut points from the
//! input; after every push all complete frames are drained. Checked each way against a
//! plain reference splitter written from docs/protocols/soulseek.md#framing:
//! - the same frames, the same error, and the same bytes left buffered;
//! - a length above the limit (or below the code width) is an error as soon as its four
//!   length bytes are in, never later, and asking again gives the same error;
//! - `parse_frame` on the whole stream agrees with the reference's first step;
//! - after `take_rest`, the bytes it returned plus every later chunk are exactly the
//!   stream after the first frame.
#![no_main]

mod common;

use common::{cuts, split_at_cuts, Input};
use libfuzzer_sys::fuzz_target;
use omnipeer_slsk::framing::{parse_frame, Frame, FrameError, FrameKind, FrameReader};
use omnipeer_slsk::limits::{MAX_DISTRIBUTED_FRAME, MAX_FRAME, MAX_INIT_FRAME};

const KINDS: [FrameKind; 4] = [FrameKind::Server, FrameKind::Peer, FrameKind::PeerInit, FrameKind::Distributed];

/// The numbers of docs/protocols/soulseek.md#framing, independent of the crate's `code_width`/`default_limit`.
fn width_of(kind: FrameKind) -> usize {
    match kind {
        FrameKind::Server | FrameKind::Peer => 4,
        FrameKind::PeerInit | FrameKind::Distributed => 1,
    }
}

fn default_limit_of(kind: FrameKind) -> usize {
    match kind {
        FrameKind::Server | FrameKind::Peer => MAX_FRAME,
        FrameKind::PeerInit => MAX_INIT_FRAME,
        FrameKind::Distributed => MAX_DISTRIBUTED_FRAME,
    }
}

#[derive(Debug, Clone, Copy)]
enum After {
    Nothing,
    /// `set_kind(kind)`, then `set_limit(limit)` if given.
    Switch(FrameKind, Option<usize>),
    TakeRest,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    kind: FrameKind,
    limit: usize,
    after: After,
}

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    /// The error and the stream offset at which its length field is complete.
    error: Option<(FrameError, usize)>,
    /// Bytes left in the reader (no error, no `take_rest`).
    buffered: usize,
    /// What an `F` connection gets after the first frame.
    raw: Option<Vec<u8>>,
}

fn reference(plan: Plan, stream: &[u8]) -> Outcome {
    let (mut kind, mut limit) = (plan.kind, plan.limit);
    let mut pos = 0;
    let mut frames = Vec::new();
    loop {
        let rest = &stream[pos..];
        if rest.len() < 4 {
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let width = width_of(kind);
        if len > limit {
            return Outcome {
                frames,
                error: Some((FrameError::TooLong { len, limit }, pos + 4)),
                buffered: 0,
                raw: None,
            };
        }
        if len < width {
            return Outcome {
                frames,
                error: Some((FrameError::TooShort { len, width }, pos + 4)),
                buffered: 0,
                raw: None,
            };
        }
        if rest.len() < 4 + len {
            break;
        }
        let code = if width == 4 { u32::from_le_bytes(rest[4..8].try_into().unwrap()) } else { u32::from(rest[4]) };
        frames.push(Frame { code, body: rest[4 + width..4 + len].to_vec() });
        pos += 4 + len;
        if frames.len() == 1 {
            match plan.after {
                After::Nothing => {}
                After::Switch(k, l) => {
                    kind = k;
                    limit = l.unwrap_or(default_limit_of(k));
                }
                After::TakeRest => {
                    return Outcome { frames, error: None, buffered: 0, raw: Some(stream[pos..].to_vec()) }
                }
            }
        }
    }
    Outcome { frames, error: None, buffered: stream.len() - pos, raw: None }
}

/// Feed `chunks` to a reader following `plan`, draining after every push.
fn run(plan: Plan, chunks: &[&[u8]]) -> Outcome {
    let mut r = FrameReader::with_limit(plan.kind, plan.limit);
    assert_eq!((r.kind(), r.limit()), (plan.kind, plan.limit));
    let mut pushed = 0usize;
    let mut frames = Vec::new();
    let mut raw: Option<Vec<u8>> = None;
    for chunk in chunks {
        pushed += chunk.len();
        if let Some(raw) = raw.as_mut() {
            raw.extend_from_slice(chunk);
            continue;
        }
        r.push(chunk);
        loop {
            match r.next_frame() {
                Ok(Some(f)) => {
                    frames.push(f);
                    if frames.len() > 1 {
                        continue;
                    }
                    match plan.after {
                        After::Nothing => {}
                        After::Switch(k, l) => {
                            r.set_kind(k);
                            assert_eq!(r.kind(), k);
                            assert_eq!(r.limit(), k.default_limit());
                            assert_eq!(k.default_limit(), default_limit_of(k));
                            assert_eq!(k.code_width(), width_of(k));
                            if let Some(l) = l {
                                r.set_limit(l);
                                assert_eq!(r.limit(), l);
                            }
                        }
                        After::TakeRest => {
                            let before = r.buffered();
                            let rest = r.take_rest();
                            assert_eq!(rest.len(), before);
                            assert_eq!(r.buffered(), 0);
                            raw = Some(rest);
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    assert_ne!(e, FrameError::Incomplete, "next_frame returned Incomplete");
                    assert_eq!(r.next_frame(), Err(e.clone()), "the error is not stable when asked again");
                    return Outcome { frames, error: Some((e, pushed)), buffered: 0, raw: None };
                }
            }
        }
    }
    Outcome { frames, error: None, buffered: if raw.is_some() { 0 } else { r.buffered() }, raw }
}

/// Where, in bytes pushed, an error at stream offset `at` must show up: the end of the
/// first chunk that completes it.
fn detected_at(chunks: &[&[u8]], at: usize) -> usize {
    let mut end = 0;
    for c in chunks {
        end += c.len();
        if end >= at {
            return end;
        }
    }
    unreachable!("error past the end of the stream")
}

fn check(plan: Plan, stream: &[u8], chunks: &[&[u8]], want: &Outcome, how: &str) {
    let got = run(plan, chunks);
    assert_eq!(got.frames, want.frames, "{how}: frames differ ({plan:?})");
    match (&got.error, &want.error) {
        (None, None) => {}
        (Some((e, pushed)), Some((w, at))) => {
            assert_eq!(e, w, "{how}: error differs ({plan:?})");
            assert_eq!(
                *pushed,
                detected_at(chunks, *at),
                "{how}: {e} reported late ({plan:?}, stream {} bytes)",
                stream.len()
            );
        }
        (g, w) => panic!("{how}: error {g:?}, reference {w:?} ({plan:?})"),
    }
    assert_eq!(got.buffered, want.buffered, "{how}: leftover differs ({plan:?})");
    assert_eq!(got.raw, want.raw, "{how}: raw bytes after take_rest differ ({plan:?})");
}

fn limit_from(sel: u8, small: u8, kind: FrameKind) -> usize {
    match sel % 4 {
        0 | 1 => default_limit_of(kind),
        2 => usize::from(small),
        _ => usize::MAX,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let h = inp.u8();
    let h2 = inp.u8();
    let small = inp.u8();
    let repeat = h2 & 0x80 != 0;
    let (kind, after) = match (h >> 2) % 4 {
        0 | 1 => (KINDS[usize::from(h % 4)], After::Nothing),
        2 => {
            let k = if h & 1 == 0 { FrameKind::Peer } else { FrameKind::Distributed };
            let l = if h & 2 != 0 { Some(usize::from(small)) } else { None };
            (FrameKind::PeerInit, After::Switch(k, l))
        }
        _ => (FrameKind::PeerInit, After::TakeRest),
    };
    let limit = limit_from(h >> 4, small, kind);
    let plan = Plan { kind, limit, after };
    let ncuts = usize::from(h2 % 16);
    let rest = inp.rest();
    let (cut_bytes, stream) = rest.split_at((ncuts * 2).min(rest.len()));
    let cut_points = cuts(&mut Input::new(cut_bytes), ncuts, stream.len());

    let want = reference(plan, stream);
    // parse_frame on the whole stream is the reference's first step.
    match parse_frame(plan.kind, plan.limit, stream) {
        Ok((f, used)) => {
            assert_eq!(Some(&f), want.frames.first());
            assert_eq!(used, 4 + f.body.len() + width_of(plan.kind));
        }
        Err(FrameError::Incomplete) => {
            assert!(want.frames.is_empty() && want.error.is_none())
        }
        Err(e) => {
            assert!(want.frames.is_empty());
            assert_eq!(Some(&e), want.error.as_ref().map(|(e, _)| e));
        }
    }

    check(plan, stream, &[stream], &want, "whole");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    check(plan, stream, &bytes, &want, "byte by byte");
    check(plan, stream, &split_at_cuts(stream, &cut_points), &want, "cuts");

    if repeat && !stream.is_empty() {
        let times = (72 * 1024) / stream.len() + 2;
        let big = stream.repeat(times);
        let want = reference(plan, &big);
        let step = 1 + usize::from(small) * 61;
        let chunks: Vec<&[u8]> = big.chunks(step).collect();
        check(plan, &big, &chunks, &want, "repeated");
    }
});
