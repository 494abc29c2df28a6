//! The primitive types of the Soulseek wire format: a bounded [`Reader`] and a [`Writer`].
//!
//! Every integer is **little-endian**. The types and their bytes:
//!
//! | type   | bytes                                                                    |
//! |--------|--------------------------------------------------------------------------|
//! | `u8`   | 1                                                                        |
//! | `u16`  | 2, LE                                                                    |
//! | `u32`  | 4, LE                                                                    |
//! | `u64`  | 8, LE (the old "two u32 halves, low first" are the same bytes)           |
//! | `i32`  | 4, LE two's complement                                                   |
//! | `bool` | 1: `0` false; Nicotine+ reads any other value as true, and so do we      |
//! | `str`  | `u32` byte length, then the bytes; no terminator                         |
//! | `bytes`| `u32` length, then raw bytes (the user-info picture)                     |
//! | `ip`   | `u32` LE of the numeric IPv4 address: 127.0.0.1 is `01 00 00 7f`         |
//!
//! Strings are written as UTF-8. On reading, bytes that are not valid UTF-8 are taken as
//! Latin-1 (one char per byte), as Nicotine+ does, so no string is ever rejected for its
//! encoding. Such a string re-encodes as UTF-8, so it is the one case where decoding then
//! encoding is not byte-exact.

use crate::limits::{MAX_BYTES, MAX_STRING};
use std::net::Ipv4Addr;
use thiserror::Error;

/// Why a message body could not be decoded. The frame is dropped; whether the connection
/// survives is the caller's choice (Nicotine+ keeps server connections on bad messages).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The body ended before a field was complete.
    #[error("message ended early: {needed} more bytes needed at offset {offset}")]
    UnexpectedEnd {
        /// Where the field started.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A string or byte field is longer than its limit.
    #[error("string of {len} bytes is longer than the limit of {limit}")]
    StringTooLong {
        /// The length on the wire.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A list count is above its limit.
    #[error("list of {count} items is longer than the limit of {limit}")]
    TooManyItems {
        /// The count on the wire.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A field holds a value this protocol does not allow.
    #[error("invalid {field}: {value}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// The value received.
        value: u64,
    },
    /// Parallel lists (JoinRoom's users, statuses, stats, …) have different lengths.
    #[error("{field} list has {got} entries, expected {expected}")]
    CountMismatch {
        /// Which list.
        field: &'static str,
        /// The number of users.
        expected: usize,
        /// The count on the wire.
        got: usize,
    },
    /// A zlib body inflates to more than the limit; inflating stopped there.
    #[error("compressed body inflates to more than {limit} bytes")]
    DecompressedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A zlib body is corrupt or truncated.
    #[error("bad zlib data: {0}")]
    Zlib(String),
    /// A code that has no meaning where it was received (peer-init codes other than 0 and 1).
    #[error("unknown message code {0}")]
    UnknownCode(u32),
}

/// Result of decoding.
pub type Result<T> = std::result::Result<T, DecodeError>;

/// Reads wire types from a message body, never reading past its end and never allocating
/// more than the body could hold.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, consuming them.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }

    /// The unread bytes without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Exactly `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEnd { offset: self.pos, needed: n - self.remaining() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// `u8`.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// `u16` LE.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// `u32` LE.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// `u64` LE.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `i32` LE.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    /// `bool`: one byte, any non-zero value is true (as Nicotine+ reads it).
    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.u8()? != 0)
    }

    /// `ip`: a `u32` LE holding the numeric IPv4 address.
    pub fn ip(&mut self) -> Result<Ipv4Addr> {
        Ok(Ipv4Addr::from(self.u32()?))
    }

    /// The raw bytes of a `str` (`u32` length + bytes), at most `limit` long.
    pub fn str_bytes_limited(&mut self, limit: usize) -> Result<&'a [u8]> {
        let at = self.pos;
        let len = self.u32()? as usize;
        if len > limit {
            self.pos = at;
            return Err(DecodeError::StringTooLong { len, limit });
        }
        self.take(len)
    }

    /// `str` of at most [`MAX_STRING`] bytes: UTF-8, or Latin-1 when not valid UTF-8.
    pub fn str(&mut self) -> Result<String> {
        self.str_limited(MAX_STRING)
    }

    /// `str` of at most `limit` bytes.
    pub fn str_limited(&mut self, limit: usize) -> Result<String> {
        Ok(decode_text(self.str_bytes_limited(limit)?))
    }

    /// `bytes` (`u32` length + raw bytes) of at most [`MAX_BYTES`].
    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        Ok(self.str_bytes_limited(MAX_BYTES)?.to_vec())
    }

    /// A `u32` list count, checked against `limit` and against the bytes left: each item
    /// takes at least `min_item_size` bytes, so a count the body cannot hold fails here,
    /// before anything is allocated for it.
    pub fn count(&mut self, limit: usize, min_item_size: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n > limit {
            self.pos = at;
            return Err(DecodeError::TooManyItems { count: n, limit });
        }
        let need = n.saturating_mul(min_item_size);
        if need > self.remaining() {
            return Err(DecodeError::UnexpectedEnd { offset: self.pos, needed: need - self.remaining() });
        }
        Ok(n)
    }

    /// A list: a `u32` count (see [`Reader::count`]) then `item` that many times.
    pub fn list<T>(
        &mut self,
        limit: usize,
        min_item_size: usize,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = self.count(limit, min_item_size)?;
        // Items in memory can be larger than on the wire (a `String` is 24 bytes, an empty
        // `str` 4): reserve a little and let the vector grow with what is actually decoded.
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }

    /// A list of `str`.
    pub fn str_list(&mut self, limit: usize) -> Result<Vec<String>> {
        self.list(limit, 4, |r| r.str())
    }
}

/// Decode protocol text: UTF-8 when valid, else Latin-1 so that no byte is lost.
pub fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Builds a message body from wire types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Raw bytes, no length prefix.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// `u8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// `u16` LE.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `u32` LE.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `u64` LE.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `i32` LE.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `bool` as `0`/`1`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }

    /// `ip`: the address as a `u32` LE (127.0.0.1 → `01 00 00 7f`).
    pub fn ip(&mut self, v: Ipv4Addr) -> &mut Self {
        self.u32(u32::from(v))
    }

    /// `str`: `u32` length + UTF-8 bytes.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// `bytes`: `u32` length + raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.raw(b)
    }

    /// A `u32` count then each item.
    pub fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.u32(items.len() as u32);
        for i in items {
            item(self, i);
        }
        self
    }

    /// A list of `str`.
    pub fn str_list(&mut self, items: &[String]) -> &mut Self {
        self.list(items, |w, s| {
            w.str(s);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn little_endian_everywhere() {
        let mut w = Writer::new();
        w.u8(0xab)
            .u16(0x0102)
            .u32(0x01020304)
            .u64(254_415)
            .i32(-2)
            .bool(true)
            .ip(Ipv4Addr::new(127, 0, 0, 1))
            .str("bob");
        assert_eq!(
            w.as_slice(),
            [
                0xab, 0x02, 0x01, 0x04, 0x03, 0x02, 0x01, 0xcf, 0xe1, 0x03, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 1,
                0x01, 0, 0, 0x7f, 3, 0, 0, 0, b'b', b'o', b'b'
            ]
        );
        let b = w.into_inner();
        let mut r = Reader::new(&b);
        assert_eq!(r.u8().unwrap(), 0xab);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.u32().unwrap(), 0x01020304);
        assert_eq!(r.u64().unwrap(), 254_415);
        assert_eq!(r.i32().unwrap(), -2);
        assert!(r.bool().unwrap());
        assert_eq!(r.ip().unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(r.str().unwrap(), "bob");
        assert!(r.is_empty());
    }

    #[test]
    fn bool_is_any_nonzero() {
        assert!(Reader::new(&[2]).bool().unwrap());
        assert!(!Reader::new(&[0]).bool().unwrap());
    }

    #[test]
    fn strings_fall_back_to_latin1() {
        let mut r = Reader::new(b"\x04\x00\x00\x00caf\xe9\x03\x00\x00\x00\xc3\xa9!");
        assert_eq!(r.str().unwrap(), "café");
        assert_eq!(r.str().unwrap(), "é!");
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32(), Err(DecodeError::UnexpectedEnd { offset: 0, needed: 1 }));
        let mut r = Reader::new(&[5, 0, 0, 0, b'a']);
        assert_eq!(r.str(), Err(DecodeError::UnexpectedEnd { offset: 4, needed: 4 }));
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.str(), Err(DecodeError::StringTooLong { len: u32::MAX as usize, limit: MAX_STRING }));
        // A count the remaining body cannot hold fails before the Vec is allocated.
        let mut r = Reader::new(&[0x00, 0x00, 0x10, 0x00, 1, 2, 3]);
        assert!(matches!(r.list(usize::MAX, 4, |r| r.u32()), Err(DecodeError::UnexpectedEnd { .. })));
        let mut r = Reader::new(&[11, 0, 0, 0]);
        assert_eq!(r.count(10, 0), Err(DecodeError::TooManyItems { count: 11, limit: 10 }));
    }

    proptest! {
        #[test]
        fn strings_round_trip(s in ".{0,40}") {
            let mut w = Writer::new();
            w.str(&s);
            let b = w.into_inner();
            prop_assert_eq!(Reader::new(&b).str().unwrap(), s);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&b);
            let _ = r.str();
            let _ = r.str_list(100);
            let _ = r.bytes();
            let _ = r.u64();
            let _ = r.ip();
            let _ = r.take(3);
            let _ = r.rest();
        }
    }
}
