//! Splitting a byte stream into Soulseek frames.
//!
//! | connection                         | frame                                   |
//! |------------------------------------|-----------------------------------------|
//! | server, peer `P`                   | `u32 len` · `u32 code` · body           |
//! | peer-init (first frame on a peer socket), distributed `D` | `u32 len` · `u8 code` · body |
//! | file `F` after its peer-init frame | no framing: `u32 token`, `u64 offset`, raw file bytes |
//!
//! `len` counts the bytes after itself, code included: a Login frame of 76 bytes has
//! `len = 72`. Every length is checked against the reader's limit as soon as its four bytes
//! are in, before anything is buffered for the body, so a peer announcing a 4 GiB frame is
//! refused at once.
//!
//! A peer socket starts as [`FrameKind::PeerInit`]; after its first frame the same reader is
//! switched with [`FrameReader::set_kind`] to [`FrameKind::Peer`] or
//! [`FrameKind::Distributed`], or, for an `F` connection, the bytes already buffered behind
//! the init frame are taken with [`FrameReader::take_rest`] and everything after that is raw.

use crate::limits::{MAX_DISTRIBUTED_FRAME, MAX_FRAME, MAX_INIT_FRAME};
use thiserror::Error;

/// Which header a frame has, and the default limit that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Server connection: `u32 len, u32 code`.
    Server,
    /// Peer `P` connection: `u32 len, u32 code`.
    Peer,
    /// First frame on any peer socket: `u32 len, u8 code`.
    PeerInit,
    /// Distributed `D` connection: `u32 len, u8 code`.
    Distributed,
}

impl FrameKind {
    /// Bytes of the code field: 4 or 1.
    pub fn code_width(self) -> usize {
        match self {
            FrameKind::Server | FrameKind::Peer => 4,
            FrameKind::PeerInit | FrameKind::Distributed => 1,
        }
    }

    /// The default limit on `len` for this kind.
    pub fn default_limit(self) -> usize {
        match self {
            FrameKind::Server | FrameKind::Peer => MAX_FRAME,
            FrameKind::PeerInit => MAX_INIT_FRAME,
            FrameKind::Distributed => MAX_DISTRIBUTED_FRAME,
        }
    }
}

/// One frame: its code and the body after the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message code (`u8` kinds fit in the low byte).
    pub code: u32,
    /// The bytes after the code.
    pub body: Vec<u8>,
}

/// Why the bytes do not start with a complete, acceptable frame.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are needed (not an error of the peer; only [`parse_frame`] returns it).
    #[error("incomplete frame")]
    Incomplete,
    /// `len` is above the limit. The connection should be closed.
    #[error("frame of {len} bytes is larger than the limit of {limit}")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// `len` is smaller than the code field. The connection should be closed.
    #[error("frame length {len} cannot hold a {width}-byte code")]
    TooShort {
        /// The announced length.
        len: usize,
        /// The code width of this kind.
        width: usize,
    },
}

/// Parse one frame from the start of `buf`: the frame and the number of bytes it used, or
/// [`FrameError::Incomplete`], or an error as soon as the length field is known to be bad.
pub fn parse_frame(kind: FrameKind, limit: usize, buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    if buf.len() < 4 {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > limit {
        return Err(FrameError::TooLong { len, limit });
    }
    let width = kind.code_width();
    if len < width {
        return Err(FrameError::TooShort { len, width });
    }
    let total = 4 + len;
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    let code = if width == 4 { u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) } else { buf[4] as u32 };
    Ok((Frame { code, body: buf[4 + width..total].to_vec() }, total))
}

/// Build a `u32 len, u32 code, body` frame (server and `P` connections).
pub fn frame_u32(code: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// Build a `u32 len, u8 code, body` frame (peer-init and `D` connections).
pub fn frame_u8(code: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + body.len());
    v.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
    v.push(code);
    v.extend_from_slice(body);
    v
}

/// Buffers bytes from one connection and yields its frames.
///
/// At most one frame plus one pushed chunk is buffered: a length above the limit is
/// refused by [`FrameReader::next_frame`] as soon as the four length bytes are in.
#[derive(Debug)]
pub struct FrameReader {
    kind: FrameKind,
    limit: usize,
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// A reader for `kind` with its default limit ([`FrameKind::default_limit`]).
    pub fn new(kind: FrameKind) -> Self {
        FrameReader::with_limit(kind, kind.default_limit())
    }

    /// A reader for `kind` that refuses frames whose `len` is above `limit`.
    pub fn with_limit(kind: FrameKind, limit: usize) -> Self {
        FrameReader { kind, limit, buf: Vec::new(), start: 0 }
    }

    /// The current kind.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Switch kind (after a peer-init frame) and take that kind's default limit. Bytes
    /// already buffered are kept and read as the new kind.
    pub fn set_kind(&mut self, kind: FrameKind) {
        self.kind = kind;
        self.limit = kind.default_limit();
    }

    /// Change the limit.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Append bytes received from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error (the reader
    /// does not resynchronise: close the connection). Never returns
    /// [`FrameError::Incomplete`].
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        match parse_frame(self.kind, self.limit, &self.buf[self.start..]) {
            Ok((frame, used)) => {
                self.start += used;
                self.compact();
                Ok(Some(frame))
            }
            Err(FrameError::Incomplete) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Take every buffered byte not yet returned as a frame: on an `F` connection, the
    /// start of the raw stream (`u32 token`, `u64 offset`, file bytes) that arrived with the
    /// peer-init frame. Later socket bytes should go straight to the transfer.
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..].to_vec();
        self.buf.clear();
        self.start = 0;
        rest
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The bytes this reader will hold once the frame under way is complete: what is
    /// buffered, or, once the next frame's length is in and within the limit, that whole
    /// frame. A budget over many connections counts this, so a connection is refused when
    /// it announces a frame the budget cannot hold, before its body is read (counting only
    /// what has arrived lets many connections each fill part of the budget, and the
    /// allocator keeps their freed buffers).
    pub fn committed(&self) -> usize {
        let pending = &self.buf[self.start..];
        let announced = match pending.get(..4) {
            Some(h) => {
                let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                if len <= self.limit {
                    4 + len
                } else {
                    0
                }
            }
            None => 0,
        };
        pending.len().max(announced)
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// The 4 raw bytes the uploader sends first on an `F` connection (`FileTransferInit`).
pub fn encode_file_transfer_init(token: u32) -> [u8; 4] {
    token.to_le_bytes()
}

/// Read `FileTransferInit` from the start of raw `F` bytes: the token and the bytes used,
/// or `None` if fewer than 4 bytes are there.
pub fn decode_file_transfer_init(buf: &[u8]) -> Option<(u32, usize)> {
    let b: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some((u32::from_le_bytes(b), 4))
}

/// The 8 raw bytes the downloader answers with on an `F` connection (`FileOffset`).
pub fn encode_file_offset(offset: u64) -> [u8; 8] {
    offset.to_le_bytes()
}

/// Read `FileOffset` from the start of raw `F` bytes: the offset and the bytes used, or
/// `None` if fewer than 8 bytes are there.
pub fn decode_file_offset(buf: &[u8]) -> Option<(u64, usize)> {
    let b: [u8; 8] = buf.get(..8)?.try_into().ok()?;
    Some((u64::from_le_bytes(b), 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(r: &mut FrameReader) -> Vec<Frame> {
        let mut v = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            v.push(f);
        }
        v
    }

    #[test]
    fn u32_frames_split_across_pushes() {
        let a = frame_u32(92, &[]);
        let b = frame_u32(2, &2234u32.to_le_bytes());
        assert_eq!(a, [4, 0, 0, 0, 0x5c, 0, 0, 0]);
        assert_eq!(b, [8, 0, 0, 0, 2, 0, 0, 0, 0xba, 0x08, 0, 0]);
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        let mut r = FrameReader::new(FrameKind::Server);
        r.push(&stream[..5]);
        assert_eq!(r.next_frame().unwrap(), None);
        r.push(&stream[5..10]);
        assert_eq!(drain(&mut r), vec![Frame { code: 92, body: vec![] }]);
        r.push(&stream[10..]);
        assert_eq!(drain(&mut r), vec![Frame { code: 2, body: vec![0xba, 0x08, 0, 0] }]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn u8_frames() {
        let f = frame_u8(0, &77u32.to_le_bytes());
        assert_eq!(f, [5, 0, 0, 0, 0, 0x4d, 0, 0, 0]);
        let mut r = FrameReader::new(FrameKind::PeerInit);
        r.push(&f);
        assert_eq!(drain(&mut r), vec![Frame { code: 0, body: vec![0x4d, 0, 0, 0] }]);
    }

    #[test]
    fn length_checked_before_the_body_arrives() {
        let mut r = FrameReader::new(FrameKind::Server);
        r.push(&[0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(r.next_frame(), Err(FrameError::TooLong { len: 0x7fff_ffff, limit: MAX_FRAME }));
        let mut r = FrameReader::new(FrameKind::PeerInit);
        r.push(&((MAX_INIT_FRAME + 1) as u32).to_le_bytes());
        assert!(matches!(r.next_frame(), Err(FrameError::TooLong { .. })));
        let mut r = FrameReader::with_limit(FrameKind::Peer, 10);
        r.push(&frame_u32(1, &[0; 6]));
        assert!(r.next_frame().unwrap().is_some());
        r.push(&frame_u32(1, &[0; 7]));
        assert_eq!(r.next_frame(), Err(FrameError::TooLong { len: 11, limit: 10 }));
    }

    #[test]
    fn too_short_for_the_code() {
        let mut r = FrameReader::new(FrameKind::Server);
        r.push(&[3, 0, 0, 0, 1, 2, 3]);
        assert_eq!(r.next_frame(), Err(FrameError::TooShort { len: 3, width: 4 }));
        let mut r = FrameReader::new(FrameKind::Distributed);
        r.push(&[0, 0, 0, 0]);
        assert_eq!(r.next_frame(), Err(FrameError::TooShort { len: 0, width: 1 }));
        assert_eq!(parse_frame(FrameKind::Server, 100, &[8, 0, 0]), Err(FrameError::Incomplete));
        assert_eq!(parse_frame(FrameKind::Server, 100, &[8, 0, 0, 0, 1]), Err(FrameError::Incomplete));
    }

    #[test]
    fn peer_init_then_switch_to_p() {
        // PeerInit(alice, P, 0) immediately followed by a P frame in the same segment.
        let mut stream = frame_u8(1, b"\x05\0\0\0alice\x01\0\0\0P\0\0\0\0");
        stream.extend_from_slice(&frame_u32(43, b"\x01\0\0\0x"));
        let mut r = FrameReader::new(FrameKind::PeerInit);
        r.push(&stream);
        assert_eq!(r.next_frame().unwrap().unwrap().code, 1);
        r.set_kind(FrameKind::Peer);
        assert_eq!(r.limit(), MAX_FRAME);
        assert_eq!(r.next_frame().unwrap().unwrap(), Frame { code: 43, body: b"\x01\0\0\0x".to_vec() });
    }

    #[test]
    fn f_connection_switches_to_raw_bytes() {
        // PeerInit(type F) then the uploader's token and the first file bytes, in one read.
        let mut stream = frame_u8(1, b"\x05\0\0\0alice\x01\0\0\0F\x05\0\0\0");
        stream.extend_from_slice(&encode_file_transfer_init(3));
        stream.extend_from_slice(b"ID3");
        let mut r = FrameReader::new(FrameKind::PeerInit);
        r.push(&stream);
        assert_eq!(r.next_frame().unwrap().unwrap().code, 1);
        let rest = r.take_rest();
        assert_eq!(rest, b"\x03\0\0\0ID3");
        assert_eq!(decode_file_transfer_init(&rest), Some((3, 4)));
        assert_eq!(r.buffered(), 0);
        assert_eq!(decode_file_transfer_init(&[1, 2, 3]), None);
        assert_eq!(encode_file_offset(0), [0; 8]);
        assert_eq!(decode_file_offset(&encode_file_offset(1 << 33)), Some((1 << 33, 8)));
        assert_eq!(decode_file_offset(&[0; 7]), None);
    }

    #[test]
    fn many_frames_compact_without_losing_data() {
        let mut r = FrameReader::new(FrameKind::Peer);
        let mut n = 0u32;
        for i in 0..20_000u32 {
            r.push(&frame_u32(i, &[7; 9]));
            for f in drain(&mut r) {
                assert_eq!(f.code, n);
                n += 1;
            }
        }
        assert_eq!(n, 20_000);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_frames(
            frames in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
            wide in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let kind = if wide { FrameKind::Peer } else { FrameKind::Distributed };
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for (code, body) in &frames {
                if wide {
                    stream.extend(frame_u32(*code, body));
                    want.push(Frame { code: *code, body: body.clone() });
                } else {
                    stream.extend(frame_u8(*code as u8, body));
                    want.push(Frame { code: *code as u8 as u32, body: body.clone() });
                }
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort();
            let mut r = FrameReader::new(kind);
            let mut got = Vec::new();
            for w in points.windows(2) {
                r.push(&stream[w[0]..w[1]]);
                got.extend(drain(&mut r));
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(r.buffered(), 0);
        }

        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8), k in 0u8..4) {
            let kind = [FrameKind::Server, FrameKind::Peer, FrameKind::PeerInit, FrameKind::Distributed][k as usize];
            let mut r = FrameReader::with_limit(kind, 64);
            for c in chunks {
                r.push(&c);
                while let Ok(Some(_)) = r.next_frame() {}
            }
            let _ = r.take_rest();
        }
    }
}
