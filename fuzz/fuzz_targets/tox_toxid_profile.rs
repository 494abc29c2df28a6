//! `omnipeer_tox::toxid` and `omnipeer_tox::profile` decoders on arbitrary input.
//!
//! Checked: nothing panics; a parsed Tox ID / profile re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::profile::Profile;
use omnipeer_tox::toxid::ToxId;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = ToxId::from_bytes(data) {
        assert_eq!(&id.to_bytes()[..], data);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = s.parse::<ToxId>() {
            assert_eq!(id.to_hex(), s.trim().to_uppercase());
        }
    }
    if let Ok(p) = Profile::decode(data) {
        assert_eq!(p.encode().unwrap(), data);
    }
});
