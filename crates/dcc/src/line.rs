//! Line framing. The mIRC text does not say how lines end (docs/protocols/dcc.md#framing); like the open implementations we
//! send `\n` and accept `\n` or `\r\n` (a stray `\r` before the `\n` is stripped).

use thiserror::Error;

/// A framing error: the peer sent more than the limit without ending the line.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LineError {
    /// The line is longer than the limit given to the reader.
    #[error("line longer than {limit} bytes")]
    TooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
}

/// Splits a byte stream into lines of at most `limit` bytes (terminator excluded).
///
/// Bytes are buffered only up to the limit: a peer that never ends its line costs at most
/// `limit` bytes before [`LineError::TooLong`].
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    start: usize,
    /// How far `buf[start..]` has been searched for `\n` already.
    scanned: usize,
    limit: usize,
}

impl LineReader {
    /// A reader for lines of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        LineReader { buf: Vec::new(), start: 0, scanned: 0, limit }
    }

    /// Change the limit (for example after the handshake, when chat lines may be longer).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Append bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its terminator, `Ok(None)` if more bytes are needed.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        let pending = &self.buf[self.start..];
        let from = self.scanned.min(pending.len());
        match pending[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = from + i;
                let mut line = &pending[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line.len() > self.limit {
                    return Err(LineError::TooLong { limit: self.limit });
                }
                let line = line.to_vec();
                self.start += end + 1;
                self.scanned = 0;
                self.compact();
                Ok(Some(line))
            }
            None => {
                // `limit` content bytes plus a possible `\r` may still be waiting for `\n`.
                if pending.len() > self.limit + 1 {
                    return Err(LineError::TooLong { limit: self.limit });
                }
                self.scanned = pending.len();
                Ok(None)
            }
        }
    }

    /// Take every byte received after the last complete line (for example file data that
    /// followed a handshake line in the same segment).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..].to_vec();
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        rest
    }

    /// Bytes buffered and not yet returned as a line.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Encode one line with the `\n` terminator.
pub fn encode_line(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 1);
    v.extend_from_slice(text.as_bytes());
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lf_and_crlf_across_pushes() {
        let mut r = LineReader::new(100);
        r.push(b"100 ali");
        assert_eq!(r.next_line().unwrap(), None);
        r.push(b"ce\r\nhello\nrest");
        assert_eq!(r.next_line().unwrap().unwrap(), b"100 alice");
        assert_eq!(r.next_line().unwrap().unwrap(), b"hello");
        assert_eq!(r.next_line().unwrap(), None);
        assert_eq!(r.take_rest(), b"rest");
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn refuses_overlong_lines_with_and_without_terminator() {
        let mut r = LineReader::new(4);
        r.push(b"12345\n");
        assert_eq!(r.next_line(), Err(LineError::TooLong { limit: 4 }));
        let mut r = LineReader::new(4);
        r.push(b"1234\r");
        assert_eq!(r.next_line().unwrap(), None);
        r.push(b"5");
        assert_eq!(r.next_line(), Err(LineError::TooLong { limit: 4 }));
        let mut r = LineReader::new(4);
        r.push(b"1234\r\n");
        assert_eq!(r.next_line().unwrap().unwrap(), b"1234");
    }

    #[test]
    fn many_lines_compact_without_losing_data() {
        let mut r = LineReader::new(16);
        let mut got = Vec::new();
        for i in 0..5000 {
            r.push(format!("line {i}\n").as_bytes());
            while let Some(l) = r.next_line().unwrap() {
                got.push(String::from_utf8(l).unwrap());
            }
        }
        assert_eq!(got.len(), 5000);
        assert_eq!(got[4999], "line 4999");
    }
}
