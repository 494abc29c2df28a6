//! Tiger Tree Hash: `parse_tthl`, `verify_tthl(_for_size)`, `Tth::from_base32`, `TigerTree`.
//!
//! The input is read four ways:
//! 1. whole, as `tthl` data: `parse_tthl` accepts exactly the non-empty multiples of 24
//!    bytes up to `MAX_TTHL` and splits them back into the input; `verify_tthl` against a
//!    root taken from the input accepts only data whose hashes rebuild that root;
//! 2. whole, as text (Latin-1 and, if valid, UTF-8) for `Tth::from_base32`: a root that
//!    parses has 39 characters and prints as the upper-cased input; 24 input bytes as a
//!    root print and parse back to themselves;
//! 3. as a hashing program: a header (size, block size, cut count) and a pattern that is
//!    repeated to `size` bytes. `TigerTree` fed in input-chosen chunks gives the same root
//!    as a plain reference tree, keeps the reference level, and its `tthl` data is
//!    accepted by `verify_tthl` and `verify_tthl_for_size` with its own root, while a
//!    one-byte change of the data is refused;
//! 4. the DC++ and ncdc block-size rules for the same size: at most 512 / 128 blocks, at
//!    least 64 KiB each.
#![no_main]

mod common;

use common::{cuts, split_at_cuts, Input};
use libfuzzer_sys::fuzz_target;
use omnipeer_nmdc::limits::MAX_TTHL;
use omnipeer_nmdc::tth::{
    block_count, block_size_for_count, leaf_hash, node_hash, parse_tthl, root_from_hashes, tth, tthl_block_size,
    verify_tthl, verify_tthl_for_size, Hash, TthlError, DCPP_MAX_BLOCKS, HASH_LEN, LEAF_SIZE, NCDC_MAX_BLOCKS,
    TTHL_MIN_BLOCK,
};
use omnipeer_nmdc::{TigerTree, Tth};

/// Largest file the hashing program builds.
const MAX_SIZE: u64 = 1 << 18;

/// One level up: pairs hashed, an odd last node promoted.
fn up(level: &[Hash]) -> Vec<Hash> {
    level.chunks(2).map(|p| if p.len() == 2 { node_hash(&p[0], &p[1]) } else { p[0] }).collect()
}

/// The reference tree: 1024-byte leaves (one empty leaf for no data), then `levels`
/// pairings. Returns that level.
fn reference_level(data: &[u8], levels: u32) -> Vec<Hash> {
    let mut level: Vec<Hash> =
        if data.is_empty() { vec![leaf_hash(&[])] } else { data.chunks(LEAF_SIZE).map(leaf_hash).collect() };
    for _ in 0..levels {
        if level.len() == 1 {
            break;
        }
        level = up(&level);
    }
    level
}

fn as_tthl(data: &[u8]) {
    let parsed = parse_tthl(data);
    let ok_len = !data.is_empty() && data.len() <= MAX_TTHL && data.len() % HASH_LEN == 0;
    match &parsed {
        Ok(h) => {
            assert!(ok_len);
            assert_eq!(h.concat(), data);
        }
        Err(TthlError::Empty) => assert!(data.is_empty()),
        Err(TthlError::TooLong) => assert!(data.len() > MAX_TTHL),
        Err(TthlError::BadLength(n)) => {
            assert_eq!(*n, data.len());
            assert!(data.len() % HASH_LEN != 0);
        }
        Err(e) => panic!("parse_tthl gave {e:?}"),
    }
    // A root from the input itself (its first 24 bytes), and the root of its hashes.
    let mut first = [0u8; HASH_LEN];
    let n = data.len().min(HASH_LEN);
    first[..n].copy_from_slice(&data[..n]);
    for root in [Tth(first), Tth(parsed.as_ref().ok().and_then(|h| root_from_hashes(h)).unwrap_or(first))] {
        let v = verify_tthl(data, &root);
        match (&parsed, &v) {
            (Ok(h), Ok(h2)) => {
                assert_eq!(h, h2);
                assert_eq!(root_from_hashes(h), Some(root.0));
            }
            (Ok(h), Err(TthlError::RootMismatch)) => assert_ne!(root_from_hashes(h), Some(root.0)),
            (Err(e), Err(e2)) => assert_eq!(e, e2),
            other => panic!("parse_tthl / verify_tthl disagree: {other:?}"),
        }
        if let Ok(h) = &v {
            let size = u64::from(data[0]) << (data.len() % 40);
            match verify_tthl_for_size(data, &root, size) {
                Ok((bs, h2)) => {
                    assert_eq!(&h2, h);
                    assert_eq!(block_count(size, bs), h.len() as u64);
                    assert!(bs >= LEAF_SIZE as u64 && bs.is_power_of_two());
                }
                Err(TthlError::BadCount { count, size: s }) => {
                    assert_eq!((count, s), (h.len() as u64, size));
                    assert_eq!(block_size_for_count(size, count), None);
                }
                Err(e) => panic!("verify_tthl_for_size after verify_tthl: {e:?}"),
            }
        }
    }
}

fn check_base32(s: &str) {
    match Tth::from_base32(s) {
        Ok(t) => {
            assert_eq!(s.len(), 39);
            assert_eq!(t.to_base32(), s.to_ascii_uppercase());
            assert_eq!(s.parse::<Tth>(), Ok(t));
        }
        Err(_) => assert!(s.parse::<Tth>().is_err()),
    }
}

fn as_text(data: &[u8]) {
    let latin1: String = data.iter().map(|&b| b as char).collect();
    check_base32(&latin1);
    if let Ok(s) = std::str::from_utf8(data) {
        check_base32(s);
        // Every 39-character window too: that is where a root sits in a longer text.
        let chars: Vec<char> = s.chars().collect();
        for w in chars.windows(39).take(8) {
            check_base32(&w.iter().collect::<String>());
        }
    }
    let mut raw = [0u8; HASH_LEN];
    let n = data.len().min(HASH_LEN);
    raw[..n].copy_from_slice(&data[..n]);
    let t = Tth(raw);
    let b = t.to_base32();
    assert_eq!(b.len(), 39);
    assert_eq!(Tth::from_base32(&b), Ok(t));
    assert_eq!(Tth::from_base32(&b.to_ascii_lowercase()), Ok(t));
    assert_eq!(format!("{t}"), b);
}

fn hashing(data: &[u8]) {
    let mut inp = Input::new(data);
    let size = inp.number() % (MAX_SIZE + 1);
    let shift = u32::from(inp.u8() % 12);
    // Any block size, also ones that are not a power of two (rounded up by the hasher).
    let block_size = match inp.u8() % 4 {
        0 => (LEAF_SIZE as u64) << shift,
        1 => u64::from(inp.u32()),
        2 => tthl_block_size(size, DCPP_MAX_BLOCKS),
        _ => tthl_block_size(size, NCDC_MAX_BLOCKS),
    };
    let ncuts = usize::from(inp.u8() % 8);
    let header = inp.take(2 * ncuts);
    let pattern = inp.rest();
    let mut file = Vec::with_capacity(size as usize);
    if pattern.is_empty() {
        file.resize(size as usize, 0);
    } else {
        while file.len() < size as usize {
            let take = pattern.len().min(size as usize - file.len());
            file.extend_from_slice(&pattern[..take]);
            // Vary the copies so leaves differ.
            if let Some(b) = file.last_mut() {
                *b = b.wrapping_add(1);
            }
        }
    }
    let cuts = cuts(&mut Input::new(header), ncuts, file.len());

    let mut t = TigerTree::with_block_size(block_size);
    let mut plain = TigerTree::new();
    for chunk in split_at_cuts(&file, &cuts) {
        t.update(chunk);
        plain.update(chunk);
        assert!(t.size() <= size);
    }
    assert_eq!(t.size(), size);
    let res = t.finish();
    let plain = plain.finish();

    // The root does not depend on chunking or on the level kept, and matches the reference.
    let want_root = Tth(reference_level(&file, 64)[0]);
    assert_eq!(res.root, want_root);
    assert_eq!(plain.root, want_root);
    assert_eq!(tth(&file), want_root);
    assert_eq!(res.size, size);
    assert!(plain.leaves.is_empty() && plain.block_size == 0);

    // The kept level: blocks of `block_size` rounded up to 1024·2^k.
    let bs = res.block_size;
    assert!(bs >= LEAF_SIZE as u64 && bs.is_power_of_two() && bs >= block_size.min(1 << 62));
    assert!(bs == LEAF_SIZE as u64 || bs / 2 < block_size, "block size {bs} for {block_size}");
    let levels = bs.trailing_zeros() - LEAF_SIZE.trailing_zeros();
    assert_eq!(res.leaves, reference_level(&file, levels), "kept level, block size {bs}");
    assert_eq!(res.leaves.len() as u64, block_count(size, bs));

    // Its tthl data verifies against its own root, also with the file size.
    let tthl = res.tthl();
    assert_eq!(tthl.len(), res.leaves.len() * HASH_LEN);
    assert_eq!(verify_tthl(&tthl, &res.root).as_ref(), Ok(&res.leaves));
    let (bs2, h) = verify_tthl_for_size(&tthl, &res.root, size)
        .unwrap_or_else(|e| panic!("own tthl refused for size {size}, block size {bs}: {e:?}"));
    assert_eq!(h, res.leaves);
    assert_eq!(block_count(size, bs2), block_count(size, bs));
    assert!(bs2 <= bs);

    // A changed byte (position and value from the input) is refused.
    let pos = (size as usize).wrapping_mul(31).wrapping_add(data.len()) % tthl.len();
    let mut bad = tthl.clone();
    bad[pos] ^= 1 << (data.len() % 8);
    assert_eq!(verify_tthl(&bad, &res.root), Err(TthlError::RootMismatch));
    // As is a different file's root.
    let mut other = res.root;
    other.0[0] ^= 0x80;
    assert_eq!(verify_tthl(&tthl, &other), Err(TthlError::RootMismatch));

    // DC++ / ncdc block sizes for this size.
    for (max, hasher) in [
        (DCPP_MAX_BLOCKS, TigerTree::for_file_size(size)),
        (NCDC_MAX_BLOCKS, TigerTree::with_block_size(tthl_block_size(size, NCDC_MAX_BLOCKS))),
    ] {
        let b = tthl_block_size(size, max);
        assert!(b >= TTHL_MIN_BLOCK && b.is_power_of_two());
        assert!(block_count(size, b) <= max);
        assert!(b == TTHL_MIN_BLOCK || block_count(size, b / 2) > max);
        if size <= 64 * 1024 {
            // Cheap enough to hash again.
            let mut h = hasher;
            h.update(&file);
            let r = h.finish();
            assert_eq!(r.root, want_root);
            assert_eq!(r.block_size, b);
            assert!(r.leaves.len() as u64 <= max);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    as_tthl(data);
    as_text(data);
    hashing(data);
});
