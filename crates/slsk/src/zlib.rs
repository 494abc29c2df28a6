//! zlib for peer messages 5 (shares), 9 (search results) and 37 (folder contents), whose
//! whole body after the code is one zlib stream (deflate with zlib header, any level).
//!
//! [`inflate`] never produces more than its limit: output is produced in small pieces and
//! inflating stops with [`DecodeError::DecompressedTooLarge`] as soon as the limit would be
//! passed, so a zlib bomb costs at most `limit` bytes of memory.

use crate::wire::DecodeError;
use flate2::{Compress, Compression, Decompress, FlushDecompress, Status};

/// Compress `data` as a zlib stream (default level, as `zlib.compress` in Nicotine+).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), true);
    // zlib's worst case is a little over the input size.
    let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
    loop {
        let before = c.total_in() as usize;
        let status = c
            .compress_vec(&data[before..], &mut out, flate2::FlushCompress::Finish)
            .expect("in-memory deflate cannot fail");
        if status == Status::StreamEnd {
            return out;
        }
        out.reserve(out.capacity().max(64));
    }
}

/// Inflate a zlib stream to at most `limit` bytes. Bytes after the end of the stream are
/// ignored; a stream that stops before its end is an error.
pub fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    const CHUNK: usize = 64 * 1024;
    let mut d = Decompress::new(true);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let in_before = d.total_in() as usize;
        let out_before = d.total_out() as usize;
        let status = d
            .decompress(&data[in_before..], &mut chunk, FlushDecompress::None)
            .map_err(|e| DecodeError::Zlib(e.to_string()))?;
        let produced = d.total_out() as usize - out_before;
        let consumed = d.total_in() as usize - in_before;
        if produced > 0 {
            if out.len() + produced > limit {
                return Err(DecodeError::DecompressedTooLarge { limit });
            }
            if out.capacity() < out.len() + produced {
                // Grow geometrically but never past the limit.
                let want = (out.capacity() * 2).max(out.len() + produced).min(limit);
                out.reserve_exact(want - out.len());
            }
            out.extend_from_slice(&chunk[..produced]);
        }
        match status {
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::BufError => {
                if produced == 0 && consumed == 0 {
                    return Err(DecodeError::Zlib("truncated zlib stream".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_header() {
        let data = b"hello hello hello hello".repeat(100);
        let z = deflate(&data);
        assert_eq!(z[0], 0x78, "zlib header");
        assert!(z.len() < data.len() / 10);
        assert_eq!(inflate(&z, data.len()).unwrap(), data);
        assert_eq!(inflate(&deflate(b""), 0).unwrap(), b"");
    }

    #[test]
    fn limit_is_exact() {
        let data = vec![7u8; 1000];
        let z = deflate(&data);
        assert_eq!(inflate(&z, 1000).unwrap().len(), 1000);
        assert_eq!(inflate(&z, 999), Err(DecodeError::DecompressedTooLarge { limit: 999 }));
    }

    #[test]
    fn zlib_bomb_stops_at_the_limit() {
        // 1 GiB of zeros is about 1 MB compressed; inflating stops after the limit.
        let mut c = Compress::new(Compression::best(), true);
        let zeros = vec![0u8; 1 << 20];
        let mut bomb = Vec::with_capacity(2 << 20);
        for _ in 0..1024 {
            let before = c.total_in();
            c.compress_vec(&zeros, &mut bomb, flate2::FlushCompress::None).unwrap();
            assert_eq!(c.total_in() - before, zeros.len() as u64);
            if bomb.capacity() - bomb.len() < 4096 {
                bomb.reserve(1 << 20);
            }
        }
        c.compress_vec(&[], &mut bomb, flate2::FlushCompress::Finish).unwrap();
        assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
        assert_eq!(inflate(&bomb, 4 << 20), Err(DecodeError::DecompressedTooLarge { limit: 4 << 20 }));
    }

    #[test]
    fn corrupt_and_truncated() {
        assert!(matches!(inflate(b"not zlib", 100), Err(DecodeError::Zlib(_))));
        let z = deflate(&b"abcdefgh".repeat(50));
        assert!(matches!(inflate(&z[..z.len() - 5], 10_000), Err(DecodeError::Zlib(_))));
        assert!(matches!(inflate(&[], 10), Err(DecodeError::Zlib(_))));
        // Trailing bytes after the stream are ignored.
        let mut t = deflate(b"xyz");
        t.extend_from_slice(b"junk");
        assert_eq!(inflate(&t, 10).unwrap(), b"xyz");
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = inflate(&b, 1000);
            let mut z = vec![0x78, 0x9c];
            z.extend_from_slice(&b);
            let _ = inflate(&z, 1000);
        }

        #[test]
        fn round_trips(b in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(inflate(&deflate(&b), b.len()).unwrap(), b);
        }
    }
}
