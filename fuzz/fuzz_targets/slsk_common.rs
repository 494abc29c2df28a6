//! Round-trip checks shared by the `slsk_*` targets (included with `mod slsk_common;`).
//!
//! Each `check_*` decodes `(code, body)`; when that succeeds it asserts that the message
//! keeps its code, that decoding its own encoding gives it back, that this second encoding
//! is byte-identical to the first, and that the whole frame (`encode()`) reads back through
//! a `FrameReader` of the right kind. A failure panics with the exact bytes.
#![allow(dead_code)]

use omnipeer_slsk::framing::{FrameKind, FrameReader};
use omnipeer_slsk::{DistributedMessage, PeerInit, PeerMessage, ServerRequest, ServerResponse};

/// Whether `SLSK_FUZZ_SKIP_KNOWN` is set: skip the crate bugs these targets already found
/// (see fuzz/README.md), to look for others.
pub fn skip_known() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("SLSK_FUZZ_SKIP_KNOWN").is_some())
}

/// Known bug 1: a distributed EmbeddedMessage(93) whose inner code is 0 and whose inner
/// body starts with two zero bytes encodes as `00 00 00 00 …`, which `decode` takes for
/// the old SoulseekQt form (a `u32` inner code) and strips three bytes of.
fn known_embedded_zero_prefix(m: &DistributedMessage) -> bool {
    matches!(m, DistributedMessage::EmbeddedMessage { code: 0, body } if body.len() >= 3 && body[..2] == [0, 0])
}

/// Lower-case hex, no spaces.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The single frame in `data`, read with `kind` and its default limit.
pub fn one_frame(kind: FrameKind, data: &[u8]) -> omnipeer_slsk::Frame {
    let mut r = FrameReader::new(kind);
    r.push(data);
    let f = match r.next_frame() {
        Ok(Some(f)) => f,
        other => panic!("{kind:?} frame {} does not read back: {other:?}", hex(data)),
    };
    assert_eq!(r.buffered(), 0, "{kind:?} frame {} has bytes after its end", hex(data));
    f
}

macro_rules! round_trip {
    ($name:literal, $ty:ty, $kind:expr, $code:expr, $body:expr, $m:expr) => {{
        let (code, body, m) = ($code, $body, $m);
        assert_eq!(
            u32::from(m.code()),
            u32::from(code),
            "{} code {} body {} decoded as {:?}, which has another code",
            $name,
            code,
            hex(body),
            m
        );
        let enc = m.encode_body();
        match <$ty>::decode(m.code(), &enc) {
            Ok(back) if back == m => {}
            other => panic!(
                "{} round trip broken\n  code {}\n  body      {}\n  decoded   {:?}\n  re-encoded {}\n  re-decoded {:?}",
                $name,
                code,
                hex(body),
                m,
                hex(&enc),
                other
            ),
        }
        let enc2 = <$ty>::decode(m.code(), &enc).unwrap().encode_body();
        assert_eq!(
            enc2,
            enc,
            "{} code {}: second encoding differs from the first (body {})",
            $name,
            code,
            hex(body)
        );
        let frame = m.encode();
        let f = one_frame($kind, &frame);
        assert_eq!(u32::from(m.code()), f.code);
        assert_eq!(f.body, enc, "{} code {}: encode() and encode_body() disagree", $name, code);
        enc
    }};
}

/// `ServerRequest::decode(code, body)`; round trip when it decodes.
pub fn check_request(code: u32, body: &[u8]) -> Option<ServerRequest> {
    let m = ServerRequest::decode(code, body).ok()?;
    round_trip!("ServerRequest", ServerRequest, FrameKind::Server, code, body, m.clone());
    let f = one_frame(FrameKind::Server, &m.encode());
    assert_eq!(ServerRequest::from_frame(&f).as_ref(), Ok(&m));
    Some(m)
}

/// `ServerResponse::decode(code, body)`; round trip when it decodes. An EmbeddedMessage's
/// distributed message is checked too.
pub fn check_response(code: u32, body: &[u8]) -> Option<ServerResponse> {
    let m = ServerResponse::decode(code, body).ok()?;
    round_trip!("ServerResponse", ServerResponse, FrameKind::Server, code, body, m.clone());
    let f = one_frame(FrameKind::Server, &m.encode());
    assert_eq!(ServerResponse::from_frame(&f).as_ref(), Ok(&m));
    if let ServerResponse::EmbeddedMessage { code, body } = &m {
        check_distributed(*code, body, 4);
    }
    Some(m)
}

/// `PeerInit::decode(code, body)`; round trip when it decodes.
pub fn check_peer_init(code: u8, body: &[u8]) -> Option<PeerInit> {
    let m = PeerInit::decode(code, body).ok()?;
    round_trip!("PeerInit", PeerInit, FrameKind::PeerInit, code, body, m.clone());
    let f = one_frame(FrameKind::PeerInit, &m.encode());
    assert_eq!(PeerInit::from_frame(&f).as_ref(), Ok(&m));
    Some(m)
}

/// `PeerMessage::decode(code, body)`; round trip when it decodes. For 5, 9 and 37 the plain
/// body compressed again must decode to the same message as well.
pub fn check_peer(code: u32, body: &[u8]) -> Option<PeerMessage> {
    let m = PeerMessage::decode(code, body).ok()?;
    round_trip!("PeerMessage", PeerMessage, FrameKind::Peer, code, body, m.clone());
    let f = one_frame(FrameKind::Peer, &m.encode());
    assert_eq!(PeerMessage::from_frame(&f).as_ref(), Ok(&m));
    let compressed = matches!(code, 5 | 9 | 37) && !matches!(m, PeerMessage::Unknown { .. });
    assert_eq!(m.is_compressed(), compressed, "is_compressed of {m:?}");
    if compressed {
        let plain = m.encode_plain_body();
        let z = omnipeer_slsk::zlib::deflate(&plain);
        assert_eq!(
            PeerMessage::decode(code, &z).as_ref(),
            Ok(&m),
            "PeerMessage {code}: deflate(encode_plain_body) does not decode back; plain {}",
            hex(&plain)
        );
    } else {
        assert_eq!(m.encode_plain_body(), m.encode_body());
    }
    Some(m)
}

/// `DistributedMessage::decode(code, body)`; round trip when it decodes, and the same for
/// the message an EmbeddedMessage carries (to `depth` levels).
pub fn check_distributed(code: u8, body: &[u8], depth: u32) -> Option<DistributedMessage> {
    let m = DistributedMessage::decode(code, body).ok()?;
    if skip_known() && known_embedded_zero_prefix(&m) {
        return Some(m);
    }
    round_trip!("DistributedMessage", DistributedMessage, FrameKind::Distributed, code, body, m.clone());
    let f = one_frame(FrameKind::Distributed, &m.encode());
    assert_eq!(DistributedMessage::from_frame(&f).as_ref(), Ok(&m));
    assert_eq!(DistributedMessage::unembed(code, body).as_ref(), Ok(&m));
    if let DistributedMessage::EmbeddedMessage { code, body } = &m {
        if depth > 0 {
            check_distributed(*code, body, depth - 1);
        }
    }
    Some(m)
}
