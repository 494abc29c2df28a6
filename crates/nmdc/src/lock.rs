//! `$Lock` → `$Key`.
//!
//! With `n = len(lock)` (the bytes between `$Lock ` and ` Pk=`):
//!
//! ```text
//! key[0] = lock[0] ^ lock[n-1] ^ lock[n-2] ^ 5
//! key[i] = lock[i] ^ lock[i-1]                          for i = 1..n-1
//! key[i] = ((key[i] << 4) | (key[i] >> 4)) & 0xFF       nibble swap, every byte
//! bytes 0, 5, 36, 96, 124, 126 are sent as /%DCN000%/, /%DCN005%/, /%DCN036%/,
//!                               /%DCN096%/, /%DCN124%/, /%DCN126%/
//! ```
//!
//! The key holds raw bytes ≥ 0x80; it is never UTF-8. Hubs need not check keys but must
//! send a `$Lock`; its lock must start with `EXTENDEDPROTOCOL` (else no `$Supports` is
//! exchanged and ncdc refuses the peer) and ncdc requires a non-empty `Pk=`.

use crate::command::Command;
use crate::limits::MAX_LOCK;
use thiserror::Error;

/// The prefix that announces `$Supports` support.
pub const EXTENDED_PROTOCOL: &[u8] = b"EXTENDEDPROTOCOL";

/// Bytes that must be sent as `/%DCNnnn%/` in a key.
const DCN_BYTES: [u8; 6] = [0, 5, 36, 96, 124, 126];

/// Why no key can be made for a lock.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LockError {
    /// The formula needs at least two bytes.
    #[error("lock shorter than 2 bytes")]
    TooShort,
    /// Longer than [`MAX_LOCK`].
    #[error("lock longer than {MAX_LOCK} bytes")]
    TooLong,
}

/// The key bytes before `/%DCNnnn%/` escaping.
pub fn key_bytes(lock: &[u8]) -> Result<Vec<u8>, LockError> {
    let n = lock.len();
    if n < 2 {
        return Err(LockError::TooShort);
    }
    if n > MAX_LOCK {
        return Err(LockError::TooLong);
    }
    let mut key = Vec::with_capacity(n);
    key.push(lock[0] ^ lock[n - 1] ^ lock[n - 2] ^ 5);
    for i in 1..n {
        key.push(lock[i] ^ lock[i - 1]);
    }
    for k in key.iter_mut() {
        *k = k.rotate_left(4);
    }
    Ok(key)
}

/// The key as sent after `$Key `, with `/%DCNnnn%/` escapes.
pub fn lock_to_key(lock: &[u8]) -> Result<Vec<u8>, LockError> {
    Ok(escape_dcn(&key_bytes(lock)?))
}

/// Replace the six special bytes by `/%DCNnnn%/` (three decimal digits).
pub fn escape_dcn(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    for &b in raw {
        if DCN_BYTES.contains(&b) {
            out.extend_from_slice(format!("/%DCN{b:03}%/").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Undo [`escape_dcn`]. Text that looks like an escape of a byte outside the six special
/// ones (or of a number above 255) is kept as it is.
pub fn unescape_dcn(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        if key[i..].starts_with(b"/%DCN") && key.len() >= i + 10 && &key[i + 8..i + 10] == b"%/" {
            let digits = &key[i + 5..i + 8];
            if digits.iter().all(u8::is_ascii_digit) {
                let v = digits.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 10;
                    continue;
                }
            }
        }
        out.push(key[i]);
        i += 1;
    }
    out
}

/// Whether `key` (as received after `$Key `) is the right answer to `lock`. Escapes are
/// compared decoded, so a peer that escapes more bytes than needed still matches.
pub fn key_matches(lock: &[u8], key: &[u8]) -> bool {
    match key_bytes(lock) {
        Ok(want) => unescape_dcn(key) == want,
        Err(_) => false,
    }
}

/// Whether a lock announces the extended protocol (`$Supports`).
pub fn is_extended(lock: &[u8]) -> bool {
    lock.starts_with(EXTENDED_PROTOCOL)
}

/// Characters used for the random part of our locks: no space, `$`, `|` or escape-prone byte.
const LOCK_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A lock `EXTENDEDPROTOCOL<chars>` with one letter or digit per random byte the caller drew.
pub fn make_lock(random: &[u8]) -> Vec<u8> {
    let mut lock = EXTENDED_PROTOCOL.to_vec();
    lock.extend(
        random
            .iter()
            .take(MAX_LOCK - EXTENDED_PROTOCOL.len())
            .map(|&b| LOCK_ALPHABET[usize::from(b) % LOCK_ALPHABET.len()]),
    );
    lock
}

/// The `$Lock EXTENDEDPROTOCOL<chars> Pk=<pk>` command for a hub or a client connection,
/// from random bytes the caller drew (16 or more is plenty). ncdc ignores a `$Lock` without
/// a non-empty `Pk=`, so an empty `pk` is sent as `omnipeer`. Spaces, `$` and `|` in `pk`
/// are sent as `_`.
pub fn lock_command(random: &[u8], pk: &str) -> Command {
    let pk: String = pk.chars().map(|c| if matches!(c, ' ' | '$' | '|') { '_' } else { c }).collect();
    let pk = if pk.is_empty() { "omnipeer".to_owned() } else { pk };
    Command::Lock { lock: make_lock(random), pk: Some(pk) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Every row of the lock table in docs/protocols/nmdc.md#test-vectors, byte-exact.
    #[test]
    fn notes_vectors() {
        let mut microdc2 = b"/%DCN036%/".to_vec();
        microdc2.extend(hex("d1c011b0a010104120d1b1b1c0c030d0301020301020301020301020301020301020"));
        assert_eq!(hex("2f2544434e303336252f"), b"/%DCN036%/");
        let mut all = hex("34d1c011b0a010104120d1b1b1c0c030d0");
        all.extend_from_slice(b"/%DCN000%/");
        all.extend(hex("02"));
        all.extend_from_slice(b"/%DCN036%/");
        all.extend(hex("26"));
        all.extend_from_slice(b"/%DCN096%/");
        all.extend(hex("62"));
        all.extend_from_slice(b"/%DCN005%/");
        all.extend(hex("941030"));
        let cases: Vec<(&[u8], Vec<u8>)> = vec![
            (
                b"EXTENDEDPROTOCOLABCABCABCABCABCABC",
                hex("14d1c011b0a010104120d1b1b1c0c030d03010203010203010203010203010203010"),
            ),
            (b"EXTENDEDPROTOCOLABCABCABCABCABCABCA", microdc2),
            (b"EXTENDEDPROTOCOL/wut?", hex("b0d1c011b0a010104120d1b1b1c0c03036852010b4")),
            (b"EXTENDEDPROTOCOL_probe", hex("74d1c011b0a010104120d1b1b1c0c03031f220d1d070")),
            (b"EXTENDEDPROTOCOL_verlihub", hex("75d1c011b0a010104120d1b1b1c0c03031923171e15010d171")),
            (b"EXTENDEDPROTOCOL_PtokaX", hex("97d1c011b0a010104120d1b1b1c0c03031f042b140a093")),
            (b"EXTENDEDPROTOCOLAAa#AGa1xyz", all),
            (b"ABCD", hex("34301070")),
        ];
        for (lock, key) in cases {
            assert_eq!(lock_to_key(lock).unwrap(), key, "{}", String::from_utf8_lossy(lock));
            assert!(key_matches(lock, &key));
        }
    }

    #[test]
    fn every_special_byte_is_escaped() {
        // key[i] for i ≥ 1 is swap(lock[i] ^ lock[i-1]); choose lock pairs that give each byte.
        for &b in &DCN_BYTES {
            let x = b.rotate_left(4); // swap is its own inverse
            let lock = [b'A', b'A' ^ x, b'Z'];
            let key = lock_to_key(&lock).unwrap();
            assert!(key.windows(10).any(|w| w == format!("/%DCN{b:03}%/").as_bytes()), "byte {b}");
        }
    }

    #[test]
    fn short_and_long_locks() {
        assert_eq!(lock_to_key(b""), Err(LockError::TooShort));
        assert_eq!(lock_to_key(b"A"), Err(LockError::TooShort));
        assert!(lock_to_key(b"AB").is_ok());
        assert_eq!(lock_to_key(&vec![b'A'; MAX_LOCK + 1]), Err(LockError::TooLong));
        assert!(!key_matches(b"A", b""));
    }

    #[test]
    fn wrong_key_does_not_match() {
        let lock = b"EXTENDEDPROTOCOL_probe";
        let mut key = lock_to_key(lock).unwrap();
        key[3] ^= 1;
        assert!(!key_matches(lock, &key));
    }

    #[test]
    fn dcn_unescape_keeps_lookalikes() {
        assert_eq!(unescape_dcn(b"/%DCN036%/x"), b"$x");
        assert_eq!(unescape_dcn(b"/%DCN999%/"), b"/%DCN999%/");
        assert_eq!(unescape_dcn(b"/%DCN03"), b"/%DCN03");
        assert_eq!(unescape_dcn(b"/%DCNabc%/"), b"/%DCNabc%/");
    }

    #[test]
    fn built_lock_is_extended_and_encodes() {
        let cmd = lock_command(&[0, 61, 62, 255], "omnipeer-0.1.0");
        assert_eq!(cmd.encode(), b"$Lock EXTENDEDPROTOCOLA9AH Pk=omnipeer-0.1.0|");
        let Command::Lock { lock, .. } = &cmd else { panic!() };
        assert!(is_extended(lock));
        assert_eq!(lock_command(b"", "").encode(), b"$Lock EXTENDEDPROTOCOL Pk=omnipeer|");
        assert_eq!(lock_command(b"", "a b$c|").encode(), b"$Lock EXTENDEDPROTOCOL Pk=a_b_c_|");
    }

    proptest! {
        #[test]
        fn key_always_matches_and_has_no_specials(lock in proptest::collection::vec(any::<u8>(), 2..100)) {
            let key = lock_to_key(&lock).unwrap();
            prop_assert!(key_matches(&lock, &key));
            // No special byte is sent raw: no '|' (it would end the command), '$', NUL, ...
            prop_assert!(!key.iter().any(|b| DCN_BYTES.contains(b)));
            prop_assert_eq!(unescape_dcn(&key), key_bytes(&lock).unwrap());
        }

        #[test]
        fn made_locks_are_safe(random in proptest::collection::vec(any::<u8>(), 0..64)) {
            let lock = make_lock(&random);
            prop_assert!(is_extended(&lock));
            prop_assert_eq!(lock.len(), 16 + random.len());
            prop_assert!(lock.iter().all(|b| b.is_ascii_alphanumeric()));
        }
    }
}
