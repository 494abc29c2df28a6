//! Classic DCC acknowledgements: `AckDecoder`, `FileReceiver`, `FileSender`.
//!
//! The input is read twice:
//! 1. as an acknowledgement stream: byte 0 gives the number of cut points (0..=15), then two
//!    bytes per cut, then the stream. `AckDecoder::feed` on each chunk must return exactly
//!    what a reference returns: the last 4-byte big-endian word completed by that chunk.
//!    `FileSender::on_ack_bytes` must end with the same last acknowledgement.
//! 2. as a receiver program: size, resume start, then amounts of bytes arriving.
//!    `FileReceiver::accept` must keep `position <= size`, keep exactly what fits, count
//!    the overrun, and produce the acknowledgement of its position.
#![no_main]

mod common;

use common::{cuts, split_at_cuts, Input};
use libfuzzer_sys::fuzz_target;
use omnipeer_dcc::ack::ack_bytes;
use omnipeer_dcc::{AckDecoder, FileReceiver, FileSender};

/// The reference decoder: the whole stream so far, read in 4-byte words.
#[derive(Default)]
struct RefDecoder {
    stream: Vec<u8>,
}

impl RefDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Option<u32> {
        let before = self.stream.len() / 4;
        self.stream.extend_from_slice(bytes);
        let after = self.stream.len() / 4;
        (after > before).then(|| {
            let w = &self.stream[(after - 1) * 4..after * 4];
            u32::from_be_bytes([w[0], w[1], w[2], w[3]])
        })
    }
}

fn acks(data: &[u8]) {
    let mut inp = Input::new(data);
    let n = (inp.u8() & 0x0f) as usize;
    let header = inp.take(2 * n);
    let stream = inp.rest();
    let cuts = cuts(&mut Input::new(header), n, stream.len());
    let mut d = AckDecoder::default();
    let mut r = RefDecoder::default();
    let mut last = None;
    for chunk in split_at_cuts(stream, &cuts) {
        let got = d.feed(chunk);
        assert_eq!(got, r.feed(chunk), "chunk {chunk:?} (cuts {cuts:?})");
        last = got.or(last);
    }
    let mut s = FileSender::new(u64::MAX, 0);
    for chunk in split_at_cuts(stream, &cuts) {
        s.on_ack_bytes(chunk);
    }
    assert_eq!(s.last_ack(), last);
}

fn receiver(data: &[u8]) {
    let mut inp = Input::new(data);
    let size = inp.number();
    let start = inp.number();
    let mut r = FileReceiver::new(size, start);
    assert_eq!(r.start(), start.min(size));
    assert_eq!(r.position(), start.min(size));
    assert_eq!(r.size(), size);
    // Overrun in u128: the reference must not overflow where the code under test may not.
    let mut overrun: u128 = 0;
    let mut steps = 0;
    while !inp.is_empty() && steps < 64 {
        steps += 1;
        let n = inp.number() as usize;
        let before = r.position();
        let keep = r.accept(n);
        assert!(keep <= n);
        assert_eq!(keep as u64, (n as u64).min(size - before), "accept({n}) at {before}/{size}");
        assert_eq!(r.position(), before + keep as u64);
        assert!(r.position() <= r.size(), "position {} beyond size {}", r.position(), r.size());
        overrun += (n - keep) as u128;
        // The overrun counter saturates instead of overflowing.
        assert_eq!(r.overrun() as u128, overrun.min(u64::MAX as u128));
        assert_eq!(r.ack(), ack_bytes(r.position()));
        assert_eq!(r.ack(), (r.position() as u32).to_be_bytes());
        assert_eq!(r.is_complete(), r.position() == size);
    }

    // The sending side of the same transfer, written as its contract allows
    // (never more than `remaining`), acknowledged with the receiver's own acks.
    let mut s = FileSender::new(size, start);
    let mut rx = FileReceiver::new(size, start);
    assert_eq!(s.remaining(), size - start.min(size));
    let mut steps = 0;
    while !inp.is_empty() && steps < 64 {
        steps += 1;
        let n = match s.remaining().checked_add(1) {
            Some(m) => inp.number() % m,
            None => inp.number(),
        };
        s.on_written(n);
        let keep = rx.accept(n as usize);
        assert_eq!(keep as u64, n);
        assert_eq!(s.position(), rx.position());
        s.on_ack_bytes(&rx.ack());
        assert_eq!(s.last_ack(), Some(rx.position() as u32));
        if rx.is_complete() {
            assert!(s.is_fully_acked(), "complete at {} of {size} but not fully acked", rx.position());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    acks(data);
    receiver(data);
});
