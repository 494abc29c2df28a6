//! [`PeerMessage::decode_limited`]: a program that expects only small compressed messages
//! can cap their inflated size below the protocol's own limits.

use omnipeer_slsk::peer::{PeerMessage, SearchResponse};
use omnipeer_slsk::shares::SharedFile;
use omnipeer_slsk::DecodeError;

fn search_reply(files: usize) -> PeerMessage {
    PeerMessage::FileSearchResponse(SearchResponse {
        user: "someone".into(),
        token: 7,
        files: (0..files)
            .map(|i| SharedFile::new(format!("Music\\album\\track {i:06}.flac"), 1000 + i as u64))
            .collect(),
        slot_free: true,
        avg_speed: 0,
        queue_len: 0,
        unknown: Some(0),
        private_files: None,
    })
}

#[test]
fn a_search_reply_past_the_callers_cap_is_refused_and_one_within_it_decodes() {
    let big = search_reply(20_000);
    let frame = big.encode();
    let body = &frame[8..];
    let plain = big.encode_plain_body().len();
    assert!(body.len() < plain / 4, "compressed: {} of {plain}", body.len());
    // Within the protocol's limit, past the caller's.
    assert_eq!(PeerMessage::decode(9, body).unwrap(), big);
    let cap = plain - 1;
    assert_eq!(PeerMessage::decode_limited(9, body, cap), Err(DecodeError::DecompressedTooLarge { limit: cap }));
    assert_eq!(PeerMessage::decode_limited(9, body, plain).unwrap(), big);
    // Uncompressed messages are not affected.
    let q = PeerMessage::QueueUpload { filename: "x".repeat(1000) };
    let f = q.encode();
    assert_eq!(PeerMessage::decode_limited(43, &f[8..], 10).unwrap(), q);
}
