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
///
/// Bytes come in with [`FrameReader::push`], or are read straight into the reader's own
/// buffer ([`FrameReader::spare`] then [`FrameReader::commit`]), and whole messages come
/// out as borrowed slices ([`FrameReader::next_frame`]) or copies
/// ([`FrameReader::next_message`]): a driver reading a socket copies each byte only into
/// the stream it is for.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// `buf[start..end]` is what was received and not handed out; `buf[end..]` is room.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        FrameReader::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    /// Room for at least `min` more bytes, to read into; then [`FrameReader::commit`]
    /// what was read. Moves the unread bytes to the front first when that makes the room
    /// (they are at most what the driver let pile up), so the buffer stays near the
    /// size it is asked for.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.start > 0 && (self.start == self.end || self.buf.len() - self.end < min) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`FrameReader::spare`] as received.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next complete message, borrowed from the reader's buffer; `Ok(None)` if more
    /// bytes are needed. An empty frame gives an empty message (for the manager to
    /// drop), not an error.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let b = &self.buf[self.start..self.end];
        let Some(&[l0, l1, l2, l3]) = b.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if len > MAX_MESSAGE {
            return Err(FrameError { len, limit: MAX_MESSAGE });
        }
        if b.len() < 4 + len {
            return Ok(None);
        }
        let at = self.start + 4;
        self.start += 4 + len;
        if self.start == self.end {
            // Nothing behind it: the next bytes go to the front of the buffer (the slice
            // handed out stays valid until the next call takes `&mut self`).
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(&self.buf[at..at + len]))
    }

    /// Whether a whole message (or a length above the limit) is buffered: what
    /// [`FrameReader::next_frame`] would not answer with `Ok(None)`.
    pub fn has_frame(&self) -> bool {
        let b = &self.buf[self.start..self.end];
        let Some(&[l0, l1, l2, l3]) = b.get(..4) else { return false };
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        len > MAX_MESSAGE || b.len() >= 4 + len
    }

    /// [`FrameReader::next_frame`], copied.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        Ok(self.next_frame()?.map(<[u8]>::to_vec))
    }
}
