//! Tox ID: `long-term pk 32 ‖ nospam 4 ‖ checksum 2`, written as 76 hex digits.
//!
//! The checksum is the XOR of the 36 preceding bytes taken in pairs
//! (`c[i % 2] ^= id[i]`). The nospam is 4 opaque bytes: copied verbatim into friend
//! requests and compared verbatim (docs/protocols/tox.md#encodings), never reinterpreted as a number.

use crate::crypto::{hex_decode, PublicKey, PUBLIC_KEY_SIZE};

pub const NOSPAM_SIZE: usize = 4;
pub const CHECKSUM_SIZE: usize = 2;
/// Bytes in a Tox ID.
pub const TOX_ID_SIZE: usize = PUBLIC_KEY_SIZE + NOSPAM_SIZE + CHECKSUM_SIZE;
/// Hex digits in a Tox ID.
pub const TOX_ID_HEX_LEN: usize = TOX_ID_SIZE * 2;

/// The 4 opaque nospam bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct NoSpam(pub [u8; NOSPAM_SIZE]);

impl NoSpam {
    /// A fresh nospam from the caller's generator.
    pub fn random<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        NoSpam(crate::crypto::random_bytes(rng))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ToxId {
    pub pk: PublicKey,
    pub nospam: NoSpam,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToxIdError {
    #[error("a Tox ID has {TOX_ID_HEX_LEN} hex digits, got {0} characters")]
    Length(usize),
    #[error("a Tox ID must be hex digits only")]
    NotHex,
    #[error("Tox ID checksum mismatch (expected {expected:04X}, found {found:04X})")]
    Checksum { expected: u16, found: u16 },
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_SIZE] {
    let mut c = [0u8; CHECKSUM_SIZE];
    for (i, b) in body.iter().enumerate() {
        c[i % 2] ^= b;
    }
    c
}

impl ToxId {
    pub fn new(pk: PublicKey, nospam: NoSpam) -> Self {
        ToxId { pk, nospam }
    }

    pub fn to_bytes(&self) -> [u8; TOX_ID_SIZE] {
        let mut out = [0u8; TOX_ID_SIZE];
        out[..PUBLIC_KEY_SIZE].copy_from_slice(&self.pk.0);
        out[PUBLIC_KEY_SIZE..PUBLIC_KEY_SIZE + NOSPAM_SIZE].copy_from_slice(&self.nospam.0);
        let c = checksum(&out[..PUBLIC_KEY_SIZE + NOSPAM_SIZE]);
        out[PUBLIC_KEY_SIZE + NOSPAM_SIZE..].copy_from_slice(&c);
        out
    }

    /// Parses the 38 raw bytes, checking the checksum.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ToxIdError> {
        if b.len() != TOX_ID_SIZE {
            return Err(ToxIdError::Length(b.len() * 2));
        }
        let (body, sum) = b.split_at(PUBLIC_KEY_SIZE + NOSPAM_SIZE);
        let expected = checksum(body);
        if expected != sum {
            return Err(ToxIdError::Checksum {
                expected: u16::from_be_bytes(expected),
                found: u16::from_be_bytes([sum[0], sum[1]]),
            });
        }
        let mut pk = [0u8; PUBLIC_KEY_SIZE];
        pk.copy_from_slice(&body[..PUBLIC_KEY_SIZE]);
        let mut ns = [0u8; NOSPAM_SIZE];
        ns.copy_from_slice(&body[PUBLIC_KEY_SIZE..]);
        Ok(ToxId { pk: PublicKey(pk), nospam: NoSpam(ns) })
    }

    /// 76 uppercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::crypto::hex_encode(&self.to_bytes())
    }
}

impl std::fmt::Display for ToxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for ToxId {
    type Err = ToxIdError;
    /// Accepts 76 hex digits in either case; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, ToxIdError> {
        let s = s.trim();
        if s.len() != TOX_ID_HEX_LEN {
            return Err(ToxIdError::Length(s.len()));
        }
        let b = hex_decode(s).ok_or(ToxIdError::NotHex)?;
        ToxId::from_bytes(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Real IDs printed by c-toxcore 0.2.18 bots (docs/protocols/tox.md#test-vectors).
    const ID_A: &str = "F89EE7B40F7C368A0AB67682AE9FE4B5448DD24D1D5CA721B064BC6847C6E92AEB4F382E4DFE";
    const ID_B: &str = "BFA46BB07E073F63F90787451A94FBB0EA188E316D5A3FBC7F616C8A5C6D1E20C99D8CA72845";

    #[test]
    fn real_ids_parse_and_reencode() {
        let a: ToxId = ID_A.parse().unwrap();
        assert_eq!(
            a.pk,
            PublicKey::from_hex("F89EE7B40F7C368A0AB67682AE9FE4B5448DD24D1D5CA721B064BC6847C6E92A").unwrap()
        );
        assert_eq!(a.nospam, NoSpam([0xEB, 0x4F, 0x38, 0x2E]));
        assert_eq!(a.to_hex(), ID_A);
        let b: ToxId = ID_B.to_lowercase().parse().unwrap();
        assert_eq!(b.nospam, NoSpam([0xC9, 0x9D, 0x8C, 0xA7]));
        assert_eq!(b.to_hex(), ID_B);
        assert_eq!(&b.to_bytes()[36..], &[0x28, 0x45]);
    }

    #[test]
    fn bad_ids_rejected() {
        let mut bad = ID_A.to_string();
        bad.replace_range(75..76, "F");
        assert!(matches!(bad.parse::<ToxId>(), Err(ToxIdError::Checksum { .. })));
        // A flipped nospam byte also breaks the checksum.
        let mut bad = ID_A.to_string();
        bad.replace_range(64..66, "EC");
        assert!(matches!(bad.parse::<ToxId>(), Err(ToxIdError::Checksum { .. })));
        assert_eq!(ID_A[..74].parse::<ToxId>(), Err(ToxIdError::Length(74)));
        let mut nothex = ID_A.to_string();
        nothex.replace_range(0..2, "ZZ");
        assert_eq!(nothex.parse::<ToxId>(), Err(ToxIdError::NotHex));
        assert!("é".repeat(38).parse::<ToxId>().is_err());
        // Found by fuzzing: a sign inside a hex pair.
        let mut signed = ID_A.to_string();
        signed.replace_range(18..20, "+0");
        assert_eq!(signed.parse::<ToxId>(), Err(ToxIdError::NotHex));
    }

    proptest! {
        #[test]
        fn round_trip(pk in any::<[u8; 32]>(), ns in any::<[u8; 4]>()) {
            let id = ToxId::new(PublicKey(pk), NoSpam(ns));
            prop_assert_eq!(id.to_hex().parse::<ToxId>(), Ok(id));
            prop_assert_eq!(ToxId::from_bytes(&id.to_bytes()), Ok(id));
        }
    }
}
