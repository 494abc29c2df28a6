//! `PeerInit`, `PeerMessage` (with the zlib bodies of 5, 9 and 37) and
//! `DistributedMessage` decoding, plus `zlib::inflate`'s output cap.
//!
//! The first byte picks what to do with the rest of the input:
//! - a peer-init code (`u8`) and body;
//! - a peer code (one of `peer::CODES` or any `u32`) and body, as received;
//! - a zlib code (5, 9 or 37) and a plain body that the harness compresses first (so the
//!   fuzzer reaches the share-list and search-result parsers), optionally truncated or
//!   with bytes appended after the stream; `decode_limited` with a cap from the input
//!   agrees with `decode` and refuses at exactly that cap;
//! - a distributed code (`u8`) and body;
//! - `zlib::inflate` with a small limit from the input, on the raw input or on a stream
//!   that inflates to up to 32 KiB (the input's bytes repeated): the output never passes
//!   the limit and the limit is exact (`inflate(d, n)` is `Ok` with the same bytes for
//!   every `n` at or above the full length and `DecompressedTooLarge { limit: n }` below).
//!
//! Checked for everything that decodes (see `slsk_common.rs`): it keeps its code,
//! `decode(code, encode_body(m)) == m` (a failure prints the exact bytes), encoding again
//! gives the same bytes, the frame reads back; for 5/9/37 the plain body compressed again
//! decodes to the same message; an EmbeddedMessage's inner message round-trips too.
//!
//! Once per process, real zlib bombs (129 MiB of zeros for 9 and 37, 513 MiB for 5, each
//! about 0.1% of that compressed) must stop with `DecompressedTooLarge` at
//! `limits::MAX_DECOMPRESSED` / `MAX_SHARE_LIST_DECOMPRESSED`. Set
//! `SLSK_FUZZ_NO_BOMB=1` to skip that (it takes a second or two and the 512 MiB the cap
//! allows).
#![no_main]

mod common;
mod slsk_common;

use common::Input;
use flate2::{Compress, Compression, FlushCompress};
use libfuzzer_sys::fuzz_target;
use omnipeer_slsk::limits::{MAX_DECOMPRESSED, MAX_SHARE_LIST_DECOMPRESSED};
use omnipeer_slsk::wire::DecodeError;
use omnipeer_slsk::{peer, zlib, PeerMessage};
use slsk_common::{check_distributed, check_peer, check_peer_init, hex};
use std::sync::Once;

/// A zlib stream that inflates to `mib` MiB of zeros and more (its checksum is wrong, but
/// the cap stops inflating long before that is read). Deflate blocks that only copy
/// zeros from distance 1 can be repeated, so one flushed 1 MiB block is compressed and
/// then repeated instead of compressing `mib` MiB.
fn bomb(mib: usize) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), true);
    let zeros = vec![0u8; 1 << 20];
    let block = |c: &mut Compress, flush| {
        let mut out = Vec::with_capacity(64 * 1024);
        let before = c.total_in();
        loop {
            let done = (c.total_in() - before) as usize;
            c.compress_vec(&zeros[done..], &mut out, flush).unwrap();
            if (c.total_in() - before) as usize == zeros.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(64 * 1024);
        }
    };
    // Header and the first MiB (a literal zero, then copies), then a MiB of copies only.
    let first = block(&mut c, FlushCompress::Sync);
    let copies = block(&mut c, FlushCompress::Sync);
    let mut out = first;
    for _ in 1..mib {
        out.extend_from_slice(&copies);
    }
    out
}

fn bombs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("SLSK_FUZZ_NO_BOMB").is_some() {
            return;
        }
        // The construction itself: 3 MiB of zeros, then a cut stream.
        let small = bomb(3);
        assert!(small.len() < 16 * 1024, "bomb of {} bytes", small.len());
        assert_eq!(
            zlib::inflate(&small, (2 << 20) + 1),
            Err(DecodeError::DecompressedTooLarge { limit: (2 << 20) + 1 })
        );
        assert!(matches!(zlib::inflate(&small, 4 << 20), Err(DecodeError::Zlib(_))));
        let b = bomb(MAX_DECOMPRESSED / (1 << 20) + 1);
        for code in [9, 37] {
            assert_eq!(
                PeerMessage::decode(code, &b),
                Err(DecodeError::DecompressedTooLarge { limit: MAX_DECOMPRESSED }),
                "zlib bomb in peer message {code}"
            );
        }
        drop(b);
        let b = bomb(MAX_SHARE_LIST_DECOMPRESSED / (1 << 20) + 1);
        assert_eq!(
            PeerMessage::decode(5, &b),
            Err(DecodeError::DecompressedTooLarge { limit: MAX_SHARE_LIST_DECOMPRESSED }),
            "zlib bomb in peer message 5"
        );
    });
}

/// The cap of `zlib::inflate` is exact and never passed.
fn check_inflate(z: &[u8], limit: usize) {
    let full = zlib::inflate(z, usize::MAX);
    match zlib::inflate(z, limit) {
        Ok(v) => {
            assert!(v.len() <= limit, "inflate gave {} bytes over limit {limit}", v.len());
            assert_eq!(full.as_ref(), Ok(&v), "inflate depends on the limit: {}", hex(z));
        }
        Err(DecodeError::DecompressedTooLarge { limit: l }) => {
            assert_eq!(l, limit);
            match &full {
                Ok(v) => assert!(v.len() > limit, "refused {} bytes at limit {limit}", v.len()),
                // A stream that is corrupt after more than `limit` bytes.
                Err(DecodeError::Zlib(_)) => {}
                Err(e) => panic!("inflate without limit: {e}"),
            }
        }
        Err(DecodeError::Zlib(e)) => {
            assert!(matches!(full, Err(DecodeError::Zlib(_))), "{e} at limit {limit}, {full:?} without: {}", hex(z));
        }
        Err(e) => panic!("inflate returned {e}"),
    }
    if let Ok(v) = &full {
        assert_eq!(zlib::inflate(z, v.len()).as_ref(), Ok(v));
        if !v.is_empty() {
            assert_eq!(zlib::inflate(z, v.len() - 1), Err(DecodeError::DecompressedTooLarge { limit: v.len() - 1 }));
        }
        if v.len() <= 64 * 1024 {
            assert_eq!(zlib::inflate(&zlib::deflate(v), v.len()).as_ref(), Ok(v));
        }
    }
}

/// `PeerMessage::decode_limited` with a caller's cap: the same as `decode` when the body
/// inflates within it, `DecompressedTooLarge` at exactly that cap when not.
fn check_decode_limited(code: u32, z: &[u8], cap: usize, plain_len: usize) {
    let own = if code == 5 { MAX_SHARE_LIST_DECOMPRESSED } else { MAX_DECOMPRESSED };
    assert_eq!(PeerMessage::decode_limited(code, z, usize::MAX), PeerMessage::decode(code, z));
    match PeerMessage::decode_limited(code, z, cap) {
        Ok(m) => assert_eq!(PeerMessage::decode(code, z).as_ref(), Ok(&m)),
        Err(DecodeError::DecompressedTooLarge { limit }) => {
            assert_eq!(limit, cap.min(own));
            assert!(plain_len > cap || zlib::inflate(z, usize::MAX).is_err(), "refused {plain_len} bytes at cap {cap}");
        }
        Err(_) => assert!(PeerMessage::decode(code, z).is_err() || zlib::inflate(z, cap).is_err(), "{}", hex(z)),
    }
}

fuzz_target!(|data: &[u8]| {
    bombs();
    let mut inp = Input::new(data);
    let sel = inp.u8();
    match sel % 8 {
        0 => {
            let code = inp.u8() % 4;
            check_peer_init(code, inp.rest());
        }
        1 | 2 => {
            let code = if sel & 0x80 == 0 { peer::CODES[usize::from(inp.u8()) % peer::CODES.len()] } else { inp.u32() };
            check_peer(code, inp.rest());
        }
        3 | 4 => {
            let code = [5, 9, 37][usize::from(inp.u8() % 3)];
            let how = inp.u8();
            let plain = inp.rest();
            let mut z = zlib::deflate(plain);
            match how % 4 {
                0 | 1 => {}
                2 => z.extend_from_slice(plain),
                _ => z.truncate(usize::from(how >> 2) % (z.len() + 1)),
            }
            let m = check_peer(code, &z);
            if how % 4 == 3 && z.len() < zlib::deflate(plain).len() {
                assert!(m.is_none(), "a truncated zlib stream decoded: {}", hex(&z));
            }
            check_decode_limited(code, &z, usize::from(how) * 64, plain.len());
        }
        5 | 6 => {
            let code = if sel & 0x80 == 0 {
                omnipeer_slsk::distributed::CODES[usize::from(inp.u8()) % omnipeer_slsk::distributed::CODES.len()]
            } else {
                inp.u8()
            };
            check_distributed(code, inp.rest(), 4);
        }
        _ => {
            let limit = usize::from(inp.u16());
            if sel & 0x80 == 0 {
                check_inflate(inp.rest(), limit);
            } else {
                let times = usize::from(inp.u8()) * 4 + 1;
                let unit = inp.rest();
                let plain = unit.repeat(times.min((32 << 10) / unit.len().max(1)));
                check_inflate(&zlib::deflate(&plain), limit.saturating_mul(4));
            }
        }
    }
});
