//! Command framing and the `$`/`|`/`&` escapes.
//!
//! Every NMDC command ends with `|`:
//!
//! ```text
//! $Lock EXTENDEDPROTOCOL/wut? Pk=ncdc-1.23.1,Ref=127.0.0.1:4120|<alice> hi|||$Send|
//! ```
//!
//! The stream is split on `|` as bytes, never assuming one command per TCP segment. A lone
//! `|` (empty command) is a keep-alive that ncdc sends on hub connections and is skipped.
//! Commands are returned as raw bytes, not UTF-8: `$Key` values hold bytes ≥ 0x80.
//!
//! After `$ADCSND …|` or `$Send|` the connection carries raw file bytes, which may already
//! sit in the reader's buffer behind the command: take them with
//! [`CommandReader::take_raw`] / [`CommandReader::take_rest`] and hand later socket bytes
//! straight to the file instead of to [`CommandReader::push`].

use crate::limits::MAX_COMMAND;
use std::marker::PhantomData;
use thiserror::Error;

/// A framing error. The connection should be closed: the reader does not resynchronise.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FramingError {
    /// The peer sent more than the limit without ending the command.
    #[error("command longer than {limit} bytes")]
    TooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A compressed stream (`$ZOn`) that cannot be inflated, or inflates past its limit.
    #[error("{why}")]
    Inflate {
        /// What went wrong.
        why: &'static str,
    },
}

/// A frame longer than a [`FrameReader`]'s limit: each protocol turns it into its own
/// error (NMDC's [`FramingError::TooLong`], ADC's `LineError::TooLong`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLong {
    /// The limit exceeded.
    pub limit: usize,
}

impl From<FrameTooLong> for FramingError {
    fn from(e: FrameTooLong) -> Self {
        FramingError::TooLong { limit: e.limit }
    }
}

/// Splits a byte stream into frames ended by `DELIMITER`, of at most `limit` bytes each
/// (the delimiter excluded; [`FrameReader::default`]: `DEFAULT_LIMIT`), reporting a longer
/// one as `E`. Empty frames (keep-alives, which ncdc and DC++ send on idle hub
/// connections) are skipped.
///
/// Bytes are buffered only up to the limit: a peer that never sends the delimiter costs at
/// most `limit` bytes plus one pushed chunk before the error.
#[derive(Debug)]
pub struct FrameReader<const DELIMITER: u8, const DEFAULT_LIMIT: usize, E> {
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    start: usize,
    /// How far `buf[start..]` has been searched for the delimiter already.
    scanned: usize,
    limit: usize,
    error: PhantomData<E>,
}

/// Splits a byte stream into `|`-terminated commands of at most `limit` bytes (by default
/// [`MAX_COMMAND`]).
pub type CommandReader = FrameReader<b'|', MAX_COMMAND, FramingError>;

impl<const DELIMITER: u8, const DEFAULT_LIMIT: usize, E: From<FrameTooLong>> Default
    for FrameReader<DELIMITER, DEFAULT_LIMIT, E>
{
    fn default() -> Self {
        FrameReader::with_limit(DEFAULT_LIMIT)
    }
}

impl CommandReader {
    /// A reader with the default limit [`MAX_COMMAND`].
    pub fn new() -> Self {
        CommandReader::with_limit(MAX_COMMAND)
    }

    /// The next complete command without its `|`, or `Ok(None)` if more bytes are needed.
    /// Empty commands (keep-alives) are skipped.
    pub fn next_command(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        self.next_frame()
    }
}

impl<const DELIMITER: u8, const DEFAULT_LIMIT: usize, E: From<FrameTooLong>> FrameReader<DELIMITER, DEFAULT_LIMIT, E> {
    /// A reader for frames of at most `limit` bytes (terminator excluded).
    pub fn with_limit(limit: usize) -> Self {
        FrameReader { buf: Vec::new(), start: 0, scanned: 0, limit, error: PhantomData }
    }

    /// Change the limit (a hub connection may allow long `$NickList`s; an ADC hub raises it
    /// after `BINF`).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit
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

    /// The next complete frame without its delimiter, or `Ok(None)` if more bytes are
    /// needed. Empty frames (keep-alives) are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, E> {
        loop {
            let pending = &self.buf[self.start..];
            let from = self.scanned.min(pending.len());
            match pending[from..].iter().position(|&b| b == DELIMITER) {
                Some(i) => {
                    let end = from + i;
                    if end > self.limit {
                        return Err(FrameTooLong { limit: self.limit }.into());
                    }
                    let frame = pending[..end].to_vec();
                    self.start += end + 1;
                    self.scanned = 0;
                    self.compact();
                    if frame.is_empty() {
                        continue;
                    }
                    return Ok(Some(frame));
                }
                None => {
                    if pending.len() > self.limit {
                        return Err(FrameTooLong { limit: self.limit }.into());
                    }
                    self.scanned = pending.len();
                    return Ok(None);
                }
            }
        }
    }

    /// Take up to `n` buffered bytes that follow the last returned frame, as raw data
    /// (file bytes after `$ADCSND`/`$Send`/`CSND`). Returns fewer than `n` if fewer are
    /// buffered; the rest of the data then comes from the socket directly.
    pub fn take_raw(&mut self, n: usize) -> Vec<u8> {
        let avail = self.buf.len() - self.start;
        let n = n.min(avail);
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        self.scanned = 0;
        self.compact();
        out
    }

    /// Take every buffered byte after the last returned frame.
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..].to_vec();
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        rest
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= 4096 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // Give back a buffer grown by one long frame.
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }
}

/// Append the `|` terminator to a command body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.extend_from_slice(body);
    v.push(b'|');
    v
}

/// Escape free text for chat, `$To`, descriptions and search strings (DC++ and ncdc style):
/// `$` → `&#36;`, `|` → `&#124;`, and `&` → `&amp;` where the `&` would otherwise read as
/// the start of one of these three escapes. Other `&`s are sent as they are, as the real
/// clients do, so [`unescape`] of the result always gives `text` back.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        match c {
            '$' => out.push_str("&#36;"),
            '|' => out.push_str("&#124;"),
            '&' => {
                let rest = &text[i..];
                if rest.starts_with("&#36;") || rest.starts_with("&#124;") || rest.starts_with("&amp;") {
                    out.push_str("&amp;");
                } else {
                    out.push('&');
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Undo [`escape`]: `&#36;` → `$`, `&#124;` → `|`, `&amp;` → `&`, left to right in one pass.
/// Any other `&` is kept.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("&#36;") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("&#124;") {
            out.push('|');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("&amp;") {
            out.push('&');
            rest = t;
        } else {
            out.push('&');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(r: &mut CommandReader) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(c) = r.next_command().unwrap() {
            v.push(c);
        }
        v
    }

    #[test]
    fn splits_across_pushes_and_skips_keepalives() {
        let mut r = CommandReader::new();
        r.push(b"$MyNick bob|$Lock EXTENDED");
        assert_eq!(drain(&mut r), vec![b"$MyNick bob".to_vec()]);
        r.push(b"PROTOCOLABC Pk=x||||<alice> hi|");
        assert_eq!(drain(&mut r), vec![b"$Lock EXTENDEDPROTOCOLABC Pk=x".to_vec(), b"<alice> hi".to_vec()]);
        r.push(b"|");
        assert_eq!(r.next_command().unwrap(), None);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn one_byte_at_a_time() {
        let stream = b"|$Supports A B |$Direction Download 3924|$Key \x14\xd1\xc0|";
        let mut r = CommandReader::new();
        let mut got = Vec::new();
        for b in stream.iter() {
            r.push(&[*b]);
            got.extend(drain(&mut r));
        }
        assert_eq!(
            got,
            vec![b"$Supports A B ".to_vec(), b"$Direction Download 3924".to_vec(), b"$Key \x14\xd1\xc0".to_vec()]
        );
    }

    #[test]
    fn limit_with_and_without_terminator() {
        let mut r = CommandReader::with_limit(4);
        r.push(b"1234|12345|");
        assert_eq!(r.next_command().unwrap().unwrap(), b"1234");
        assert_eq!(r.next_command(), Err(FramingError::TooLong { limit: 4 }));
        let mut r = CommandReader::with_limit(4);
        r.push(b"1234");
        assert_eq!(r.next_command().unwrap(), None);
        r.push(b"5");
        assert_eq!(r.next_command(), Err(FramingError::TooLong { limit: 4 }));
    }

    #[test]
    fn raw_bytes_after_adcsnd() {
        let mut r = CommandReader::new();
        r.push(b"$ADCSND file files.xml.bz2 0 10|0123|56789$Get x$1|");
        assert_eq!(r.next_command().unwrap().unwrap(), b"$ADCSND file files.xml.bz2 0 10");
        // File bytes may contain '|': they are taken raw, not split.
        assert_eq!(r.take_raw(10), b"0123|56789");
        assert_eq!(r.next_command().unwrap().unwrap(), b"$Get x$1");
        r.push(b"$Send|abc");
        assert_eq!(r.next_command().unwrap().unwrap(), b"$Send");
        assert_eq!(r.take_raw(100), b"abc");
        assert_eq!(r.take_raw(100), b"");
        r.push(b"xyz");
        assert_eq!(r.take_rest(), b"xyz");
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn many_commands_compact_without_losing_data() {
        let mut r = CommandReader::with_limit(32);
        let mut n = 0;
        for i in 0..5000 {
            r.push(format!("$Quit user{i}|").as_bytes());
            for c in drain(&mut r) {
                assert_eq!(c, format!("$Quit user{n}").as_bytes());
                n += 1;
            }
        }
        assert_eq!(n, 5000);
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a$b|c&d"), "a&#36;b&#124;c&d");
        assert_eq!(unescape("a&#36;b&#124;c&amp;d&x"), "a$b|c&d&x");
        assert_eq!(escape("&#36;"), "&amp;#36;");
        assert_eq!(unescape("&amp;#36;"), "&#36;");
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(unescape(&escape("&&#36;&")), "&&#36;&");
        assert_eq!(unescape("&#3"), "&#3");
        assert_eq!(frame(b"$Send"), b"$Send|");
    }

    proptest! {
        #[test]
        fn escape_round_trips(s in "[a-z$|&#;0-9 ]{0,40}") {
            let e = escape(&s);
            prop_assert!(!e.contains('$') && !e.contains('|'));
            prop_assert_eq!(unescape(&e), s);
        }

        #[test]
        fn any_chunking_gives_the_same_commands(
            cmds in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no bar", |b| *b != b'|'), 0..20), 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut stream = Vec::new();
            for c in &cmds { stream.extend_from_slice(c); stream.push(b'|'); }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort();
            let mut r = CommandReader::new();
            let mut got = Vec::new();
            for w in points.windows(2) {
                r.push(&stream[w[0]..w[1]]);
                got.extend(drain(&mut r));
            }
            let want: Vec<Vec<u8>> = cmds.into_iter().filter(|c| !c.is_empty()).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..10), n in 0usize..100) {
            let mut r = CommandReader::with_limit(16);
            for c in chunks {
                r.push(&c);
                while let Ok(Some(_)) = r.next_command() {}
                let _ = r.take_raw(n % 7);
            }
            let _ = r.take_rest();
        }
    }
}
