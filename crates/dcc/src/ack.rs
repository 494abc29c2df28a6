//! The data phase: raw file bytes one way, classic DCC acknowledgements the other.
//!
//! After each chunk it reads, the receiver writes a 4-byte big-endian count of the bytes
//! it holds so far, modulo 2³² (Troy Rollo's ircII DCC, used by mIRC). We count the
//! absolute file position, resume offset included, and as a sender accept either that or
//! a count relative to the resume offset. The receiver closes once it has the whole file;
//! the sender must keep reading acknowledgements while it writes, or both ends can block
//! on full socket buffers.

/// The acknowledgement for `position` bytes: `position mod 2³²`, big-endian.
pub fn ack_bytes(position: u64) -> [u8; 4] {
    (position as u32).to_be_bytes()
}

/// Collects 4-byte acknowledgements from a byte stream that may split them anywhere.
#[derive(Debug, Default, Clone)]
pub struct AckDecoder {
    partial: [u8; 4],
    have: usize,
}

impl AckDecoder {
    /// Feed received bytes; returns the last complete acknowledgement among them, if any.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<u32> {
        let mut last = None;
        while !bytes.is_empty() {
            let take = (4 - self.have).min(bytes.len());
            self.partial[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have == 4 {
                // Whole acks in the middle of a long run need not be decoded one by one.
                let whole = bytes.len() / 4 * 4;
                let v = if whole > 0 {
                    let w = &bytes[whole - 4..whole];
                    bytes = &bytes[whole..];
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]])
                } else {
                    u32::from_be_bytes(self.partial)
                };
                last = Some(v);
                self.have = 0;
            }
        }
        last
    }
}

/// The receiving side's count: cuts an overrun at the announced size and produces acks.
#[derive(Debug, Clone)]
pub struct FileReceiver {
    size: u64,
    start: u64,
    position: u64,
    overrun: u64,
}

impl FileReceiver {
    /// Receive a file of `size` bytes of which the first `start` are already held.
    pub fn new(size: u64, start: u64) -> Self {
        let start = start.min(size);
        FileReceiver { size, start, position: start, overrun: 0 }
    }

    /// `n` bytes arrived: how many of them belong to the file (the rest overran the size
    /// and are dropped).
    pub fn accept(&mut self, n: usize) -> usize {
        let room = self.size - self.position;
        let keep = (n as u64).min(room);
        self.position += keep;
        self.overrun = self.overrun.saturating_add(n as u64 - keep);
        keep as usize
    }

    /// The acknowledgement to send now.
    pub fn ack(&self) -> [u8; 4] {
        ack_bytes(self.position)
    }

    /// Whether the whole file has arrived.
    pub fn is_complete(&self) -> bool {
        self.position == self.size
    }

    /// Absolute position (bytes of the file held).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Where this transfer started.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The announced size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes the peer sent beyond the announced size (dropped).
    pub fn overrun(&self) -> u64 {
        self.overrun
    }
}

/// The sending side's count: what was written, what the peer acknowledged.
#[derive(Debug, Clone)]
pub struct FileSender {
    size: u64,
    start: u64,
    position: u64,
    decoder: AckDecoder,
    last_ack: Option<u32>,
}

impl FileSender {
    /// Send a file of `size` bytes starting at `start`.
    pub fn new(size: u64, start: u64) -> Self {
        let start = start.min(size);
        FileSender { size, start, position: start, decoder: AckDecoder::default(), last_ack: None }
    }

    /// Bytes still to write.
    pub fn remaining(&self) -> u64 {
        self.size - self.position
    }

    /// Absolute position of the next byte to write.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Where this transfer started.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The file size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `n` more bytes were written to the peer (never more than [`Self::remaining`]).
    pub fn on_written(&mut self, n: u64) {
        self.position = (self.position + n).min(self.size);
    }

    /// Bytes arrived from the receiver: acknowledgements.
    pub fn on_ack_bytes(&mut self, bytes: &[u8]) {
        if let Some(a) = self.decoder.feed(bytes) {
            self.last_ack = Some(a);
        }
    }

    /// The last acknowledgement received.
    pub fn last_ack(&self) -> Option<u32> {
        self.last_ack
    }

    /// Whether the receiver acknowledged the whole file, counted absolutely (our way and
    /// mIRC's) or from the resume offset (some old clients).
    pub fn is_fully_acked(&self) -> bool {
        if self.start == self.size {
            return true;
        }
        match self.last_ack {
            Some(a) => a == self.size as u32 || a == (self.size - self.start) as u32,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ack_table_from_notes() {
        assert_eq!(ack_bytes(0), [0, 0, 0, 0]);
        assert_eq!(ack_bytes(1_048_576), [0x00, 0x10, 0x00, 0x00]);
        assert_eq!(ack_bytes(4_294_967_296), [0, 0, 0, 0]);
        assert_eq!(ack_bytes(5_368_709_120), [0x40, 0, 0, 0]);
        assert_eq!(ack_bytes(5_368_709_127), [0x40, 0, 0, 7]);
    }

    #[test]
    fn receiver_cuts_overrun_and_completes() {
        let mut r = FileReceiver::new(10, 4);
        assert_eq!(r.accept(3), 3);
        assert_eq!(r.ack(), [0, 0, 0, 7]);
        assert!(!r.is_complete());
        assert_eq!(r.accept(8), 3);
        assert!(r.is_complete());
        assert_eq!(r.overrun(), 5);
        assert_eq!(r.ack(), [0, 0, 0, 10]);
    }

    #[test]
    fn receiver_past_4gib_wraps() {
        let mut r = FileReceiver::new(5 << 30, (4 << 30) - 1);
        assert_eq!(r.ack(), [0xff, 0xff, 0xff, 0xff]);
        r.accept(8);
        assert_eq!(r.ack(), [0, 0, 0, 7]);
        r.accept(usize::MAX);
        assert!(r.is_complete());
        assert_eq!(r.ack(), [0x40, 0, 0, 0]);
    }

    #[test]
    fn sender_accepts_absolute_or_relative_final_ack() {
        let mut s = FileSender::new(100, 40);
        s.on_written(60);
        assert_eq!(s.remaining(), 0);
        assert!(!s.is_fully_acked());
        s.on_ack_bytes(&[0, 0, 0]);
        s.on_ack_bytes(&[50, 0, 0, 0, 100]);
        assert_eq!(s.last_ack(), Some(100));
        assert!(s.is_fully_acked());
        let mut s = FileSender::new(100, 40);
        s.on_ack_bytes(&60u32.to_be_bytes());
        assert!(s.is_fully_acked());
        assert!(FileSender::new(7, 7).is_fully_acked());
    }

    #[test]
    fn sender_over_4gib() {
        let size = (5u64 << 30) + 7;
        let mut s = FileSender::new(size, 0);
        s.on_ack_bytes(&ack_bytes(size));
        assert!(s.is_fully_acked());
    }

    proptest! {
        #[test]
        fn decoder_returns_last_ack_however_split(acks in proptest::collection::vec(any::<u32>(), 1..20),
                                                  cuts in proptest::collection::vec(0usize..80, 0..6)) {
            let bytes: Vec<u8> = acks.iter().flat_map(|a| a.to_be_bytes()).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort();
            let mut d = AckDecoder::default();
            let mut last = None;
            let mut prev = 0;
            for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
                if let Some(a) = d.feed(&bytes[prev..c]) { last = Some(a); }
                prev = c;
            }
            prop_assert_eq!(last, acks.last().copied());
        }
    }
}
