//! Hostile input: every length is bounded before anything is allocated for it, and zlib
//! bodies never inflate past their cap.

use flate2::{Compress, Compression, FlushCompress};
use omnipeer_slsk::framing::frame_u32;
use omnipeer_slsk::limits::{
    MAX_DECOMPRESSED, MAX_DISTRIBUTED_FRAME, MAX_FRAME, MAX_INIT_FRAME, MAX_LIST_ITEMS, MAX_STRING,
};
use omnipeer_slsk::{DecodeError, FrameError, FrameKind, FrameReader, PeerMessage};
use omnipeer_slsk::{ServerRequest, ServerResponse};

/// A zlib stream of `mib` MiB of zeros, built 1 MiB at a time (about 1 KiB per MiB).
fn zlib_bomb(mib: usize) -> Vec<u8> {
    let mut c = Compress::new(Compression::fast(), true);
    let zeros = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(mib * 8192 + 1024);
    for _ in 0..mib {
        let before = c.total_in();
        while c.total_in() - before < zeros.len() as u64 {
            let done = (c.total_in() - before) as usize;
            out.reserve(64 * 1024);
            c.compress_vec(&zeros[done..], &mut out, FlushCompress::None).unwrap();
        }
    }
    loop {
        out.reserve(64 * 1024);
        if c.compress_vec(&[], &mut out, FlushCompress::Finish).unwrap() == flate2::Status::StreamEnd {
            return out;
        }
    }
}

#[test]
fn zlib_bomb_in_search_results_and_folder_contents_stops_at_the_cap() {
    let bomb = zlib_bomb(MAX_DECOMPRESSED / (1 << 20) + 8);
    assert!(bomb.len() < MAX_FRAME, "the bomb itself is a legal frame ({} bytes)", bomb.len());
    for code in [9, 37] {
        assert_eq!(
            PeerMessage::decode(code, &bomb),
            Err(DecodeError::DecompressedTooLarge { limit: MAX_DECOMPRESSED }),
            "code {code}"
        );
    }
}

#[test]
fn frame_lengths_above_the_limits_are_refused_from_the_header() {
    for (kind, limit) in [
        (FrameKind::Server, MAX_FRAME),
        (FrameKind::Peer, MAX_FRAME),
        (FrameKind::PeerInit, MAX_INIT_FRAME),
        (FrameKind::Distributed, MAX_DISTRIBUTED_FRAME),
    ] {
        let mut r = FrameReader::new(kind);
        r.push(&((limit + 1) as u32).to_le_bytes());
        assert_eq!(r.next_frame(), Err(FrameError::TooLong { len: limit + 1, limit }));
        // Exactly at the limit is fine: the reader waits for the body.
        let mut r = FrameReader::new(kind);
        r.push(&(limit as u32).to_le_bytes());
        assert_eq!(r.next_frame(), Ok(None));
    }
}

#[test]
fn huge_counts_and_strings_fail_before_allocating() {
    // PrivilegedUsers claiming u32::MAX users in a 4-byte body.
    let body = u32::MAX.to_le_bytes();
    assert_eq!(
        ServerResponse::decode(69, &body),
        Err(DecodeError::TooManyItems { count: u32::MAX as usize, limit: MAX_LIST_ITEMS })
    );
    // A count under the limit but more than the body can hold.
    let body = 1_000_000u32.to_le_bytes();
    assert!(matches!(ServerResponse::decode(160, &body), Err(DecodeError::UnexpectedEnd { .. })));
    // A user name longer than MAX_STRING.
    let mut body = ((MAX_STRING + 1) as u32).to_le_bytes().to_vec();
    body.extend_from_slice(b"abc");
    assert_eq!(
        ServerRequest::decode(3, &body),
        Err(DecodeError::StringTooLong { len: MAX_STRING + 1, limit: MAX_STRING })
    );
    // A share list whose directory count is absurd, inside valid zlib.
    let plain = u32::MAX.to_le_bytes();
    let z = omnipeer_slsk::zlib::deflate(&plain);
    assert!(matches!(PeerMessage::decode(5, &z), Err(DecodeError::TooManyItems { .. })));
    // The frame still reads: a bad body is a decode error, not a framing error.
    let f = frame_u32(69, &u32::MAX.to_le_bytes());
    let mut r = FrameReader::new(FrameKind::Server);
    r.push(&f);
    assert!(ServerResponse::from_frame(&r.next_frame().unwrap().unwrap()).is_err());
}

#[test]
fn corrupt_zlib_is_an_error() {
    assert!(matches!(PeerMessage::decode(9, b"\x78\x9cnot deflate"), Err(DecodeError::Zlib(_))));
    assert!(matches!(PeerMessage::decode(5, b""), Err(DecodeError::Zlib(_))));
}
