//! Protocol text as Latin-1 strings.
//!
//! NMDC text is bytes in whatever charset the hub uses. The crate keeps every byte as one
//! `char` (U+0000..=U+00FF), so `encode(decode(b)) == b` for any bytes: `$Key` values with
//! bytes ≥ 0x80 and descriptions in any charset survive a parse/encode cycle unchanged.
//!
//! To show a field to a person, or to put a person's text into a field, convert with
//! [`wire_to_utf8`] / [`utf8_to_wire`] (UTF-8 hubs, the common case today).

/// Wire bytes as a Latin-1 string: one char per byte.
pub fn decode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// A Latin-1 string back to wire bytes. A char above U+00FF cannot be sent as one byte and
/// becomes `?`; convert real text with [`utf8_to_wire`] first.
pub fn encode(text: &str) -> Vec<u8> {
    text.chars().map(|c| if (c as u32) <= 0xFF { c as u8 } else { b'?' }).collect()
}

/// Whether every char fits in one wire byte.
pub fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| (c as u32) <= 0xFF)
}

/// The wire string for real text on a UTF-8 hub: each UTF-8 byte of `text` as one char.
pub fn utf8_to_wire(text: &str) -> String {
    decode(text.as_bytes())
}

/// Real text from a wire string: its bytes decoded as UTF-8 when they are valid UTF-8,
/// else the string as it is (read as Latin-1, so no byte is lost or replaced).
pub fn wire_to_utf8(wire: &str) -> String {
    if !is_latin1(wire) {
        return wire.to_owned();
    }
    match String::from_utf8(encode(wire)) {
        Ok(s) => s,
        Err(_) => wire.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn high_bytes_survive() {
        let bytes = [0x00, 0x7f, 0x80, 0xe9, 0xff, b'|'];
        let s = decode(&bytes);
        assert_eq!(s.chars().count(), 6);
        assert_eq!(encode(&s), bytes);
    }

    #[test]
    fn utf8_conversion() {
        let wire = utf8_to_wire("café €");
        assert_eq!(encode(&wire), "café €".as_bytes());
        assert_eq!(wire_to_utf8(&wire), "café €");
        // Latin-1 text that is not UTF-8 stays as it is.
        let latin = decode(b"caf\xe9");
        assert_eq!(wire_to_utf8(&latin), "café");
        // Chars above U+00FF cannot be sent as is.
        assert_eq!(encode("a€b"), b"a?b");
        assert_eq!(wire_to_utf8("a€b"), "a€b");
    }

    proptest! {
        #[test]
        fn bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(encode(&decode(&bytes)), bytes);
        }

        #[test]
        fn utf8_round_trip(s in "\\PC{0,40}") {
            prop_assert_eq!(wire_to_utf8(&utf8_to_wire(&s)), s);
        }
    }
}
