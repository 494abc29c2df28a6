//! Loopback transport framing: each ministreaming message travels as
//!
//! ```text
//! +----------------------+------------------------------+
//! | length u32 BE        | message (type, id 3, payload)|
//! +----------------------+------------------------------+
//! ```
//!
//! One TCP connection per pair of endpoints carries all their streams. A frame of 0 to 3
//! bytes is well framed but holds no message; the manager drops it alone
//! (docs/protocols/ministream.md#loopback), so only a length above [`MAX_MESSAGE`] — where
//! the stream can no longer be trusted to be in step — ends the connection.

use crate::MAX_MESSAGE;

/// A frame announced a length above [`MAX_MESSAGE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame length {len} above {limit}")]
pub struct FrameError {
    /// The announced length.
    pub len: usize,
    /// The limit.
    pub limit: usize,
}

/// Prefixes a message with its length.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + message.len());
    v.extend_from_slice(&(message.len() as u32).to_be_bytes());
    v.extend_from_slice(message);
    v
}

/// Splits a byte stream into messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out; compacted lazily so that taking a message does
    /// not move everything buffered behind it.
    start: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        FrameReader::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. An empty frame
    /// gives an empty message (for the manager to drop), not an error.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let b = &self.buf[self.start..];
        let Some(&[l0, l1, l2, l3]) = b.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if len > MAX_MESSAGE {
            return Err(FrameError { len, limit: MAX_MESSAGE });
        }
        let Some(msg) = b.get(4..4 + len) else { return Ok(None) };
        let msg = msg.to_vec();
        self.start += 4 + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(msg))
    }
}
