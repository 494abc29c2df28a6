//! Tiger Tree Hash (TTH), the content hash of Direct Connect.
//!
//! Original Tiger (0x01 padding, not Tiger2) over a binary tree of 1024-byte leaves:
//!
//! ```text
//! leaf = Tiger(0x00 ‖ block)          block = 1024 bytes (the last one may be shorter)
//! node = Tiger(0x01 ‖ left ‖ right)   an odd node is promoted unchanged to the next level
//! empty input: root = Tiger(0x00)
//! ```
//!
//! Roots travel as RFC 4648 base32, upper case, no padding: 39 characters.
//!
//! # `tthl` (leaf data for `$ADCGET tthl TTH/<root> 0 -1`)
//! The answer is `$ADCSND tthl TTH/<root> 0 <24·k>|` followed by the k concatenated 24-byte
//! hashes of one tree level; the receiver checks they rebuild the root. Which level is up
//! to the sender. What the clients do (read in ncdc's source, `src/tth.c`, `src/fl_local.c`
//! and `src/dl.c` of the ncdc tree):
//!
//! * ncdc keeps 8 levels (`fl_hash_keep_level 8`): at most 2^7 = **128** hashes. Its block
//!   size is the smallest `1024·2^i` with `blocksize·128 ≥ filesize`, then raised to at
//!   least **64 KiB** (`fl_hash_max_granularity`). Its comment says DC++ and "everyone
//!   else" keep 10 levels, i.e. at most **512** hashes, the convention in docs/protocols/nmdc.md#adcget.
//! * As a receiver ncdc accepts any number of hashes: it rebuilds the root from them
//!   (`tth_root`), derives the block size from the count, and merges blocks finer than
//!   1 MiB itself. It asks for `tthl` only for files over 2 MiB.
//!
//! So [`tthl_block_size`] with [`DCPP_MAX_BLOCKS`] (512) and [`TTHL_MIN_BLOCK`] (64 KiB) is
//! what we send; [`NCDC_MAX_BLOCKS`] gives ncdc's coarser choice. Both verify anywhere.
//!
//! # Speed
//! A tree hash does more work than flat Tiger over the same bytes: each 1024-byte leaf is
//! 1025 bytes with its prefix, so 17 Tiger blocks instead of 16, and each inner node one
//! block more: 18 blocks per KiB where flat Tiger needs 16 (at most 0.89 of its speed
//! with the same block function). But leaves are independent: [`TigerTree`] hashes
//! [`LANES`] leaves at once, their rounds interleaved ([`compress_lanes`]), so that the
//! CPU works on one leaf while the table loads and multiplications of another are in
//! flight (one Tiger stream leaves most of a core idle waiting on them). The nodes above
//! each group of eight leaves are hashed side by side too. Bench: `bench/src/tth_speed.rs`.

mod sboxes;

use crate::limits::MAX_TTHL;
use data_encoding::BASE32_NOPAD;
use thiserror::Error;
use tiger::{Digest, Tiger};

/// Bytes hashed into one leaf.
pub const LEAF_SIZE: usize = 1024;
/// Bytes in one Tiger hash.
pub const HASH_LEN: usize = 24;
/// Characters in a base32 root.
pub const BASE32_LEN: usize = 39;
/// Smallest `tthl` block size sent (DC++ and ncdc agree).
pub const TTHL_MIN_BLOCK: u64 = 64 * 1024;
/// Most `tthl` hashes DC++ sends (10 tree levels kept).
pub const DCPP_MAX_BLOCKS: u64 = 512;
/// Most `tthl` hashes ncdc sends (8 tree levels kept).
pub const NCDC_MAX_BLOCKS: u64 = 128;

/// One node of a hash tree.
pub type Hash = [u8; HASH_LEN];

/// A TTH root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tth(pub Hash);

/// Why a base32 root is not valid.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Base32Error {
    /// Not 39 characters.
    #[error("TTH must be {BASE32_LEN} base32 characters, got {0}")]
    WrongLength(usize),
    /// A character outside `A-Z2-7`, or non-zero trailing bits.
    #[error("TTH is not valid base32")]
    NotBase32,
}

impl Tth {
    /// Parse a 39-character base32 root (lower case accepted, as `rhash` prints it).
    pub fn from_base32(s: &str) -> Result<Tth, Base32Error> {
        if s.len() != BASE32_LEN {
            return Err(Base32Error::WrongLength(s.len()));
        }
        let upper = s.to_ascii_uppercase();
        let bytes = BASE32_NOPAD.decode(upper.as_bytes()).map_err(|_| Base32Error::NotBase32)?;
        let hash: Hash = bytes.try_into().map_err(|_| Base32Error::NotBase32)?;
        Ok(Tth(hash))
    }

    /// The 39-character upper-case base32 form.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// The raw 24 bytes.
    pub fn as_bytes(&self) -> &Hash {
        &self.0
    }
}

impl std::fmt::Display for Tth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base32())
    }
}

impl std::fmt::Debug for Tth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tth({})", self.to_base32())
    }
}

impl std::str::FromStr for Tth {
    type Err = Base32Error;
    fn from_str(s: &str) -> Result<Tth, Base32Error> {
        Tth::from_base32(s)
    }
}

/// Plain Tiger of `data`.
pub fn tiger(data: &[u8]) -> Hash {
    let out = Tiger::digest(data);
    let mut h = [0u8; HASH_LEN];
    h.copy_from_slice(out.as_slice());
    h
}

/// `Tiger(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let [h] = nodes_lanes([(left, right)]);
    h
}

/// `Tiger(0x00 ‖ block)` for one block of at most 1024 bytes.
pub fn leaf_hash(block: &[u8]) -> Hash {
    let mut t = Tiger::new();
    t.update([0u8]);
    t.update(block);
    let mut h = [0u8; HASH_LEN];
    h.copy_from_slice(t.finalize().as_slice());
    h
}

/// The root over hashes that all sit on one tree level (odd nodes promoted), or `None` for
/// no hashes.
pub fn root_from_hashes(hashes: &[Hash]) -> Option<Hash> {
    if hashes.is_empty() {
        return None;
    }
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level =
            level.chunks(2).map(|pair| if pair.len() == 2 { node_hash(&pair[0], &pair[1]) } else { pair[0] }).collect();
    }
    Some(level[0])
}

/// The TTH of bytes held in memory.
pub fn tth(data: &[u8]) -> Tth {
    let mut t = TigerTree::new();
    t.update(data);
    t.finish().root
}

/// What a [`TigerTree`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TthResult {
    /// The root.
    pub root: Tth,
    /// How many bytes were hashed.
    pub size: u64,
    /// The bytes each entry of `leaves` covers (the last may cover fewer); 0 when the
    /// hasher kept no level.
    pub block_size: u64,
    /// The hashes of the kept level, left to right.
    pub leaves: Vec<Hash>,
}

impl TthResult {
    /// The `tthl` payload: the kept level's hashes concatenated, `24·k` bytes.
    pub fn tthl(&self) -> Vec<u8> {
        self.leaves.concat()
    }
}

/// Leaves hashed side by side (see the module's "Speed"): four chains keep a core busy;
/// eight need more registers than x86-64 has and are slower.
pub const LANES: usize = 4;
/// Leaves in a group: two runs of [`LANES`], then the four nodes above them side by side,
/// the two above those, and the group's root.
const GROUP_LEAVES: usize = 2 * LANES;
/// Bytes of a group.
const BATCH: usize = GROUP_LEAVES * LEAF_SIZE;

/// Tiger's initial state.
const IV: [u64; 3] = [0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210, 0xF096_A5B4_C3B2_E187];

#[inline(always)]
fn round<const N: usize>(a: &mut [u64; N], b: &mut [u64; N], c: &mut [u64; N], x: &[[u64; 8]; N], i: usize, mul: u64) {
    let t = &sboxes::T;
    for l in 0..N {
        c[l] ^= x[l][i];
        let v = c[l];
        let byte = |n: u32| ((v >> (8 * n)) & 0xff) as usize;
        a[l] = a[l].wrapping_sub(t[0][byte(0)] ^ t[1][byte(2)] ^ t[2][byte(4)] ^ t[3][byte(6)]);
        b[l] = b[l].wrapping_add(t[3][byte(1)] ^ t[2][byte(3)] ^ t[1][byte(5)] ^ t[0][byte(7)]).wrapping_mul(mul);
    }
}

#[inline(always)]
fn pass<const N: usize>(a: &mut [u64; N], b: &mut [u64; N], c: &mut [u64; N], x: &[[u64; 8]; N], mul: u64) {
    round(a, b, c, x, 0, mul);
    round(b, c, a, x, 1, mul);
    round(c, a, b, x, 2, mul);
    round(a, b, c, x, 3, mul);
    round(b, c, a, x, 4, mul);
    round(c, a, b, x, 5, mul);
    round(a, b, c, x, 6, mul);
    round(b, c, a, x, 7, mul);
}

#[inline(always)]
fn key_schedule(x: &mut [u64; 8]) {
    x[0] = x[0].wrapping_sub(x[7] ^ 0xA5A5_A5A5_A5A5_A5A5);
    x[1] ^= x[0];
    x[2] = x[2].wrapping_add(x[1]);
    x[3] = x[3].wrapping_sub(x[2] ^ ((!x[1]) << 19));
    x[4] ^= x[3];
    x[5] = x[5].wrapping_add(x[4]);
    x[6] = x[6].wrapping_sub(x[5] ^ ((!x[4]) >> 23));
    x[7] ^= x[6];
    x[0] = x[0].wrapping_add(x[7]);
    x[1] = x[1].wrapping_sub(x[0] ^ ((!x[7]) << 19));
    x[2] ^= x[1];
    x[3] = x[3].wrapping_add(x[2]);
    x[4] = x[4].wrapping_sub(x[3] ^ ((!x[2]) >> 23));
    x[5] ^= x[4];
    x[6] = x[6].wrapping_add(x[5]);
    x[7] = x[7].wrapping_sub(x[6] ^ 0x0123_4567_89AB_CDEF);
}

/// The Tiger block function on `N` independent states at once, each with its own 64-byte
/// block given as 8 little-endian words. The rounds of the lanes interleave: each lane is
/// one long chain of dependent table loads and multiplications, and `N` chains keep a core
/// busy where one leaves it waiting.
#[inline(always)]
fn compress_lanes<const N: usize>(state: &mut [[u64; 3]; N], mut x: [[u64; 8]; N]) {
    let mut a = [0u64; N];
    let mut b = [0u64; N];
    let mut c = [0u64; N];
    for l in 0..N {
        [a[l], b[l], c[l]] = state[l];
    }
    pass(&mut a, &mut b, &mut c, &x, 5);
    for xl in x.iter_mut() {
        key_schedule(xl);
    }
    pass(&mut c, &mut a, &mut b, &x, 7);
    for xl in x.iter_mut() {
        key_schedule(xl);
    }
    pass(&mut b, &mut c, &mut a, &x, 9);
    for l in 0..N {
        let s = &mut state[l];
        s[0] ^= a[l];
        s[1] = b[l].wrapping_sub(s[1]);
        s[2] = c[l].wrapping_add(s[2]);
    }
}

#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn state_hash(s: &[u64; 3]) -> Hash {
    let mut h = [0u8; HASH_LEN];
    for (o, w) in h.chunks_exact_mut(8).zip(s) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    h
}

/// `Tiger(0x00 ‖ leaf)` of `N` whole 1024-byte leaves, side by side. The message is 1025
/// bytes: 16 blocks that start one byte early (the prefix), then the last byte, Tiger's
/// 0x01 padding and the length in bits.
#[inline(always)]
fn leaves_lanes<const N: usize>(leaves: [&[u8]; N]) -> [Hash; N] {
    let mut st = [IV; N];
    for j in 0..LEAF_SIZE / 64 {
        let mut x = [[0u64; 8]; N];
        for l in 0..N {
            let d = leaves[l];
            for (k, w) in x[l].iter_mut().enumerate() {
                let p = j * 64 + k * 8;
                // Message byte p is leaf byte p-1 (byte 0 is the 0x00 prefix).
                *w = if p == 0 { word(d, 0) << 8 } else { word(d, p - 1) };
            }
        }
        compress_lanes(&mut st, x);
    }
    let mut x = [[0u64; 8]; N];
    for l in 0..N {
        x[l][0] = u64::from(leaves[l][LEAF_SIZE - 1]) | 0x01 << 8;
        x[l][7] = ((LEAF_SIZE as u64) + 1) * 8;
    }
    compress_lanes(&mut st, x);
    st.map(|s| state_hash(&s))
}

/// `Tiger(0x01 ‖ left ‖ right)` of `N` pairs side by side: 49 bytes, one block.
#[inline(always)]
fn nodes_lanes<const N: usize>(pairs: [(&Hash, &Hash); N]) -> [Hash; N] {
    let mut st = [IV; N];
    let mut x = [[0u64; 8]; N];
    for l in 0..N {
        let mut m = [0u8; 64];
        m[0] = 1;
        m[1..25].copy_from_slice(pairs[l].0);
        m[25..49].copy_from_slice(pairs[l].1);
        m[49] = 0x01;
        m[56..64].copy_from_slice(&(49u64 * 8).to_le_bytes());
        for (k, w) in x[l].iter_mut().enumerate() {
            *w = word(&m, k * 8);
        }
    }
    compress_lanes(&mut st, x);
    st.map(|s| state_hash(&s))
}

/// A streaming Tiger Tree hasher: feed bytes with [`TigerTree::update`] in any chunks.
/// Whole groups of eight leaves are hashed straight from the caller's bytes; only a
/// group split between two calls is copied (into one buffer, kept for the next).
#[derive(Clone)]
pub struct TigerTree {
    /// Level whose nodes are kept (0 = 1024-byte leaves); `None` keeps only the root.
    keep_level: Option<u32>,
    /// Bytes of a group not complete yet (fewer than [`BATCH`]).
    pending: Vec<u8>,
    /// Perfect subtrees, largest (leftmost) first, with their levels strictly decreasing.
    stack: Vec<(Hash, u32)>,
    kept: Vec<Hash>,
    size: u64,
}

impl Default for TigerTree {
    fn default() -> Self {
        TigerTree::new()
    }
}

impl TigerTree {
    /// A hasher that keeps only the root.
    pub fn new() -> Self {
        TigerTree::keeping(None)
    }

    /// A hasher that keeps the hashes of `block_size`-byte blocks. `block_size` is rounded
    /// up to `1024·2^i`.
    pub fn with_block_size(block_size: u64) -> Self {
        let mut level = 0u32;
        while (LEAF_SIZE as u64) << level < block_size && level < 53 {
            level += 1;
        }
        TigerTree::keeping(Some(level))
    }

    /// A hasher for a file of `size` bytes that keeps the level DC++ sends as `tthl`
    /// ([`tthl_block_size`] with [`DCPP_MAX_BLOCKS`]).
    pub fn for_file_size(size: u64) -> Self {
        TigerTree::with_block_size(tthl_block_size(size, DCPP_MAX_BLOCKS))
    }

    fn keeping(keep_level: Option<u32>) -> Self {
        TigerTree { keep_level, pending: Vec::new(), stack: Vec::new(), kept: Vec::new(), size: 0 }
    }

    /// Hash more bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (BATCH - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < BATCH {
                return;
            }
            let group = std::mem::take(&mut self.pending);
            self.group(&group);
            self.pending = group;
            self.pending.clear();
        }
        let mut groups = data.chunks_exact(BATCH);
        for g in groups.by_ref() {
            self.group(g);
        }
        let rest = groups.remainder();
        if !rest.is_empty() {
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(BATCH);
            }
            self.pending.extend_from_slice(rest);
        }
    }

    /// Bytes hashed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Eight whole leaves: hashed four at a time side by side, then the four nodes above
    /// them side by side, the two above those, and the group's root pushed whole (every
    /// group starts at a multiple of eight leaves, so the stack holds only subtrees of
    /// level 3 or more before it).
    fn group(&mut self, g: &[u8]) {
        let leaf = |i: usize| &g[i * LEAF_SIZE..(i + 1) * LEAF_SIZE];
        let a = leaves_lanes([leaf(0), leaf(1), leaf(2), leaf(3)]);
        let b = leaves_lanes([leaf(4), leaf(5), leaf(6), leaf(7)]);
        let n1 = nodes_lanes([(&a[0], &a[1]), (&a[2], &a[3]), (&b[0], &b[1]), (&b[2], &b[3])]);
        let n2 = nodes_lanes([(&n1[0], &n1[1]), (&n1[2], &n1[3])]);
        match self.keep_level {
            Some(0) => {
                self.kept.extend_from_slice(&a);
                self.kept.extend_from_slice(&b);
            }
            Some(1) => self.kept.extend_from_slice(&n1),
            Some(2) => self.kept.extend_from_slice(&n2),
            _ => {}
        }
        self.push(node_hash(&n2[0], &n2[1]), 3);
    }

    fn push(&mut self, mut hash: Hash, mut level: u32) {
        if self.keep_level == Some(level) {
            self.kept.push(hash);
        }
        while let Some(&(top, top_level)) = self.stack.last() {
            if top_level != level {
                break;
            }
            self.stack.pop();
            hash = node_hash(&top, &hash);
            level += 1;
            if self.keep_level == Some(level) {
                self.kept.push(hash);
            }
        }
        self.stack.push((hash, level));
    }

    /// The root and the kept level.
    pub fn finish(mut self) -> TthResult {
        // The last group, not complete: its whole leaves, then a short one.
        let pending = std::mem::take(&mut self.pending);
        let mut leaves = pending.chunks_exact(LEAF_SIZE);
        for l in leaves.by_ref() {
            let [h] = leaves_lanes([l]);
            self.push(h, 0);
        }
        if !leaves.remainder().is_empty() || self.size == 0 {
            self.push(leaf_hash(leaves.remainder()), 0);
        }
        // The subtrees below the kept level at the top of the stack form the last, partial
        // block.
        if let Some(keep) = self.keep_level {
            let mut partial: Option<Hash> = None;
            for &(h, level) in self.stack.iter().rev() {
                if level >= keep {
                    break;
                }
                partial = Some(match partial {
                    None => h,
                    Some(right) => node_hash(&h, &right),
                });
            }
            if let Some(p) = partial {
                self.kept.push(p);
            }
        }
        let mut root: Option<Hash> = None;
        for &(h, _) in self.stack.iter().rev() {
            root = Some(match root {
                None => h,
                Some(right) => node_hash(&h, &right),
            });
        }
        let root = Tth(root.unwrap_or_else(|| leaf_hash(&[])));
        let block_size = match self.keep_level {
            Some(l) => (LEAF_SIZE as u64) << l,
            None => 0,
        };
        TthResult { root, size: self.size, block_size, leaves: self.kept }
    }
}

/// The `tthl` block size for a file: the smallest `1024·2^i` with at most `max_blocks`
/// blocks, raised to at least [`TTHL_MIN_BLOCK`].
pub fn tthl_block_size(file_size: u64, max_blocks: u64) -> u64 {
    let max_blocks = max_blocks.max(1);
    let mut bs = LEAF_SIZE as u64;
    while bs.saturating_mul(max_blocks) < file_size && bs < (1 << 62) {
        bs <<= 1;
    }
    bs.max(TTHL_MIN_BLOCK)
}

/// Number of blocks of `block_size` bytes in a file (at least 1: an empty file has one).
pub fn block_count(file_size: u64, block_size: u64) -> u64 {
    if block_size == 0 {
        return 0;
    }
    file_size.div_ceil(block_size).max(1)
}

/// The block size `1024·2^i` at which a file of `file_size` bytes has exactly `count`
/// blocks, or `None` if no tree level has that many nodes.
pub fn block_size_for_count(file_size: u64, count: u64) -> Option<u64> {
    let mut bs = LEAF_SIZE as u64;
    loop {
        let n = block_count(file_size, bs);
        if n == count {
            return Some(bs);
        }
        if n < count || bs >= (1 << 62) {
            return None;
        }
        bs <<= 1;
    }
}

/// Why `tthl` data was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TthlError {
    /// No hashes at all.
    #[error("tthl data is empty")]
    Empty,
    /// Not a multiple of 24 bytes.
    #[error("tthl data is {0} bytes, not a multiple of 24")]
    BadLength(usize),
    /// More than [`MAX_TTHL`] bytes.
    #[error("tthl data longer than {MAX_TTHL} bytes")]
    TooLong,
    /// The hashes do not rebuild the root.
    #[error("tthl data does not match the TTH root")]
    RootMismatch,
    /// The number of hashes is not the node count of any level for this file size.
    #[error("{count} tthl hashes fit no tree level of a {size}-byte file")]
    BadCount {
        /// Hashes received.
        count: u64,
        /// The file's size.
        size: u64,
    },
}

/// Split `tthl` data into hashes, checking its length.
pub fn parse_tthl(data: &[u8]) -> Result<Vec<Hash>, TthlError> {
    if data.is_empty() {
        return Err(TthlError::Empty);
    }
    if data.len() > MAX_TTHL {
        return Err(TthlError::TooLong);
    }
    if !data.len().is_multiple_of(HASH_LEN) {
        return Err(TthlError::BadLength(data.len()));
    }
    Ok(data
        .chunks_exact(HASH_LEN)
        .map(|c| {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Check that `tthl` data rebuilds `root`; returns its hashes.
pub fn verify_tthl(data: &[u8], root: &Tth) -> Result<Vec<Hash>, TthlError> {
    let hashes = parse_tthl(data)?;
    match root_from_hashes(&hashes) {
        Some(r) if r == root.0 => Ok(hashes),
        _ => Err(TthlError::RootMismatch),
    }
}

/// [`verify_tthl`] for a file of known size, also checking that the hash count is a real
/// tree level; returns the block size each hash covers and the hashes.
pub fn verify_tthl_for_size(data: &[u8], root: &Tth, file_size: u64) -> Result<(u64, Vec<Hash>), TthlError> {
    let hashes = verify_tthl(data, root)?;
    let count = hashes.len() as u64;
    let bs = block_size_for_count(file_size, count).ok_or(TthlError::BadCount { count, size: file_size })?;
    Ok((bs, hashes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(h: &[u8]) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn b32(data: &[u8]) -> String {
        tth(data).to_base32()
    }

    #[test]
    fn plain_tiger_vectors() {
        assert_eq!(hex(&tiger(b"")), "3293ac630c13f0245f92bbb1766e16167a4e58492dde73f3");
        assert_eq!(hex(&tiger(b"abc")), "2aab1484e8c158f2bfb8c5ff41b57a525129131c957b5f93");
    }

    /// Every row of the TTH table in docs/protocols/nmdc.md#test-vectors.
    #[test]
    fn notes_vectors() {
        assert_eq!(b32(b""), "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ");
        assert_eq!(b32(b"abc"), "ASD4UJSEH5M47PDYB46KBTSQTSGDKLBHYXOMUIA");
        assert_eq!(b32(&[b'A'; 1024]), "L66Q4YVNAFWVS23X2HJIRA5ZJ7WXR3F26RSASFA");
        assert_eq!(b32(&[b'A'; 1025]), "PZMRYHGY6LTBEH63ZWAHDORHSYTLO4LEFUIKHWY");
        assert_eq!(b32(&[b'A'; 3072]), "VUGTDEB5E3RVBHJWEPT2LY2O6XHZQFFRGDNZBSQ");
        assert_eq!(b32(&[0]), "VK54ZIEEVTWNAUI5D5RDFIL37LX2IQNSTAXFKSA");
        assert_eq!(b32(&vec![0u8; 1 << 20]), "MUACEID6UTVUKTRE2MTZKOPTZTMS6A2OF6B4ZNY");
        assert_eq!(b32(b"hello world\n"), "KND4PAISRXWKPFWNUC5NJDGCX2ON77YTRMEVWBQ");
        assert_eq!(tth(b"").0, leaf_hash(b""));
    }

    /// The interleaved block function gives what the `tiger` crate gives, leaf by leaf
    /// and node by node.
    #[test]
    fn lanes_match_the_tiger_crate() {
        let data: Vec<u8> =
            (0..LEAF_SIZE * 4).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]).collect();
        let crate_leaf = |d: &[u8]| {
            let mut t = Tiger::new();
            t.update([0u8]);
            t.update(d);
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(t.finalize().as_slice());
            h
        };
        let l: Vec<&[u8]> = data.chunks(LEAF_SIZE).collect();
        let four = leaves_lanes([l[0], l[1], l[2], l[3]]);
        for i in 0..4 {
            assert_eq!(four[i], crate_leaf(l[i]), "leaf {i}");
            assert_eq!(leaves_lanes([l[i]])[0], four[i]);
        }
        let mut t = Tiger::new();
        t.update([1u8]);
        t.update(four[0]);
        t.update(four[1]);
        assert_eq!(node_hash(&four[0], &four[1]).as_slice(), t.finalize().as_slice());
    }

    #[test]
    fn streaming_in_odd_chunks_matches() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = tth(&data);
        for chunk in [1usize, 3, 1000, 1023, 1024, 1025, 4096] {
            let mut t = TigerTree::new();
            for c in data.chunks(chunk) {
                t.update(c);
            }
            assert_eq!(t.finish().root, whole, "chunk {chunk}");
        }
    }

    /// The level-by-level definition (odd node promoted) for comparison.
    fn reference_root(data: &[u8]) -> Hash {
        let leaves: Vec<Hash> =
            if data.is_empty() { vec![leaf_hash(b"")] } else { data.chunks(LEAF_SIZE).map(leaf_hash).collect() };
        root_from_hashes(&leaves).unwrap()
    }

    #[test]
    fn three_leaves_promote_the_odd_one() {
        let data = vec![b'A'; 3072];
        let l = leaf_hash(&data[..1024]);
        let want = node_hash(&node_hash(&l, &l), &l);
        assert_eq!(tth(&data).0, want);
    }

    #[test]
    fn base32_round_trip_and_errors() {
        let t = Tth::from_base32("LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ").unwrap();
        assert_eq!(t, tth(b""));
        assert_eq!(t.to_string(), "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ");
        assert_eq!("lwpnacqdbzryxw3vhjvcj64qbznghohhhzwclnq".parse::<Tth>().unwrap(), t);
        assert_eq!(Tth::from_base32(""), Err(Base32Error::WrongLength(0)));
        assert_eq!(Tth::from_base32("LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLN"), Err(Base32Error::WrongLength(38)));
        assert_eq!(Tth::from_base32("LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLN1"), Err(Base32Error::NotBase32));
        // The last character carries 3 unused bits, which must be zero ('Q' = 10000).
        assert_eq!(Tth::from_base32("LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNR"), Err(Base32Error::NotBase32));
        assert_eq!(Tth::from_base32("é234567890123456789012345678901234567"), Err(Base32Error::WrongLength(38)));
    }

    #[test]
    fn dcpp_and_ncdc_block_sizes() {
        assert_eq!(tthl_block_size(0, DCPP_MAX_BLOCKS), 64 * 1024);
        assert_eq!(tthl_block_size(3 << 20, DCPP_MAX_BLOCKS), 64 * 1024);
        assert_eq!(tthl_block_size(32 << 20, DCPP_MAX_BLOCKS), 64 * 1024);
        assert_eq!(tthl_block_size((32 << 20) + 1, DCPP_MAX_BLOCKS), 128 * 1024);
        assert_eq!(tthl_block_size(1 << 30, DCPP_MAX_BLOCKS), 2 << 20);
        assert_eq!(tthl_block_size(1 << 30, NCDC_MAX_BLOCKS), 8 << 20);
        assert_eq!(tthl_block_size(u64::MAX, DCPP_MAX_BLOCKS), 1 << 55);
        for size in [1u64, 5 << 20, 100 << 20, 1 << 30, 7_777_777_777] {
            let bs = tthl_block_size(size, DCPP_MAX_BLOCKS);
            assert!(block_count(size, bs) <= 512);
            assert!(bs >= 64 * 1024);
        }
    }

    #[test]
    fn tthl_for_a_3_mib_file() {
        let data: Vec<u8> = (0..(3u32 << 20) + 777).map(|i| (i % 253) as u8).collect();
        let mut t = TigerTree::for_file_size(data.len() as u64);
        for c in data.chunks(65_000) {
            t.update(c);
        }
        let r = t.finish();
        assert_eq!(r.block_size, 64 * 1024);
        assert_eq!(r.leaves.len(), 49);
        assert_eq!(r.root.0, reference_root(&data));
        // Each kept hash is the tree hash of its block.
        assert_eq!(r.leaves[0], tth(&data[..65536]).0);
        assert_eq!(r.leaves[48], tth(&data[48 * 65536..]).0);
        let blob = r.tthl();
        assert_eq!(blob.len(), 49 * 24);
        assert_eq!(verify_tthl(&blob, &r.root).unwrap().len(), 49);
        assert_eq!(verify_tthl_for_size(&blob, &r.root, data.len() as u64).unwrap().0, 65536);
    }

    #[test]
    fn tthl_refusals() {
        let r = {
            let mut t = TigerTree::with_block_size(1024);
            t.update(&[7u8; 5000]);
            t.finish()
        };
        assert_eq!(r.leaves.len(), 5);
        let blob = r.tthl();
        assert_eq!(verify_tthl(&[], &r.root), Err(TthlError::Empty));
        assert_eq!(verify_tthl(&blob[..100], &r.root), Err(TthlError::BadLength(100)));
        assert_eq!(verify_tthl(&vec![0; MAX_TTHL + 24], &r.root), Err(TthlError::TooLong));
        let mut bad = blob.clone();
        bad[30] ^= 1;
        assert_eq!(verify_tthl(&bad, &r.root), Err(TthlError::RootMismatch));
        assert_eq!(verify_tthl(&blob, &tth(b"x")), Err(TthlError::RootMismatch));
        // The root alone verifies as a one-hash level, but not as 5 blocks of a 5000-byte file
        // at a level that does not exist.
        assert!(verify_tthl_for_size(&r.root.0, &r.root, 5000).is_ok());
        assert_eq!(block_size_for_count(5000, 5), Some(1024));
        assert_eq!(block_size_for_count(5000, 4), None);
        assert_eq!(block_size_for_count(5000, 6), None);
        assert_eq!(block_size_for_count(0, 1), Some(1024));
    }

    #[test]
    fn empty_file_keeps_one_block() {
        let r = TigerTree::for_file_size(0).finish();
        assert_eq!(r.leaves, vec![r.root.0]);
        assert_eq!(r.root.to_base32(), "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ");
        let r = TigerTree::new().finish();
        assert!(r.leaves.is_empty());
        assert_eq!(r.block_size, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn streaming_equals_reference_and_levels_rebuild_root(
            len in 0usize..20_000, seed in any::<u8>(), level in 0u32..5, chunk in 1usize..3000,
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let mut t = TigerTree::with_block_size(1024 << level);
            for c in data.chunks(chunk) { t.update(c); }
            let r = t.finish();
            prop_assert_eq!(r.root.0, reference_root(&data));
            prop_assert_eq!(r.leaves.len() as u64, block_count(len as u64, 1024 << level));
            prop_assert_eq!(root_from_hashes(&r.leaves), Some(r.root.0));
            for (i, leaf) in r.leaves.iter().enumerate() {
                let bs = 1024usize << level;
                let end = ((i + 1) * bs).min(len);
                prop_assert_eq!(*leaf, reference_root(&data[i * bs..end]));
            }
            prop_assert!(verify_tthl_for_size(&r.tthl(), &r.root, len as u64).is_ok());
        }

        #[test]
        fn base32_round_trips(bytes in any::<[u8; 24]>()) {
            let t = Tth(bytes);
            let s = t.to_base32();
            prop_assert_eq!(s.len(), 39);
            prop_assert_eq!(Tth::from_base32(&s).unwrap(), t);
        }

        #[test]
        fn base32_never_panics(s in "\\PC{0,45}") {
            let _ = Tth::from_base32(&s);
        }

        #[test]
        fn tthl_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = verify_tthl_for_size(&data, &Tth([0; 24]), data.len() as u64);
        }
    }
}
