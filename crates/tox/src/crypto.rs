//! NaCl primitives as Tox uses them, from RustCrypto crates (x25519-dalek, salsa20's
//! HSalsa20, xsalsa20poly1305, sha2). Only the nonce increment is hand written: it is
//! Tox-specific big-endian arithmetic on a 24-byte array that no crate offers.

use rand::{CryptoRng, SeedableRng};
use sha2::{Digest, Sha512};
use xsalsa20poly1305::aead::{Aead, KeyInit};
use xsalsa20poly1305::XSalsa20Poly1305;

pub const PUBLIC_KEY_SIZE: usize = 32;
pub const SECRET_KEY_SIZE: usize = 32;
pub const SHARED_KEY_SIZE: usize = 32;
pub const NONCE_SIZE: usize = 24;
/// Poly1305 tag in front of every box / secretbox ciphertext.
pub const MAC_SIZE: usize = 16;

pub type Nonce = [u8; NONCE_SIZE];

/// A Curve25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_SIZE]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }
    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex_decode(s)?;
        Some(PublicKey(v.try_into().ok()?))
    }
}

/// A Curve25519 secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; SECRET_KEY_SIZE]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn public_key(&self) -> PublicKey {
        let s = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&s).to_bytes())
    }
}

/// The random generator every machine of this crate owns: ChaCha20, a CSPRNG whose
/// output is fixed by its seed (rand_chacha promises the stream across releases, rand's
/// `StdRng` does not). The crate never draws randomness anywhere else: the caller seeds
/// each machine (from the OS in production, from a constant in tests), as quinn-proto's
/// `Endpoint::new` takes an `rng_seed`; so the same seed, keys, inputs and `now`s give
/// the same packets.
pub type ToxRng = rand_chacha::ChaCha20Rng;

/// What a machine's [`ToxRng`] is seeded with.
pub type RngSeed = [u8; 32];

/// The generator for `seed`.
pub fn rng_from_seed(seed: RngSeed) -> ToxRng {
    ToxRng::from_seed(seed)
}

/// A generator with a fixed seed derived from `n`: for tests, fuzz targets and benches,
/// never for a real identity or session.
pub fn seeded_rng(n: u64) -> ToxRng {
    ToxRng::seed_from_u64(n)
}

/// A seed for a sub-machine, drawn from its parent's generator (so one seed given to
/// [`crate::tox::Tox`] determines every machine inside it).
pub fn child_seed<R: CryptoRng + ?Sized>(rng: &mut R) -> RngSeed {
    random_bytes(rng)
}

/// A key pair; the caller supplies the secret key or the generator.
#[derive(Clone, Debug)]
pub struct KeyPair {
    pub pk: PublicKey,
    pub sk: SecretKey,
}

impl KeyPair {
    /// A fresh pair from `rng` (temporary and session keys come from the machine's own
    /// generator; long-term identities are made by the caller).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(SecretKey(random_bytes(rng)))
    }
    pub fn from_secret(sk: SecretKey) -> Self {
        KeyPair { pk: sk.public_key(), sk }
    }
}

/// `crypto_box_beforenm`: HSalsa20(X25519(sk, pk), 0). Also the secretbox key type.
#[derive(Clone)]
pub struct SharedKey {
    key: [u8; SHARED_KEY_SIZE],
    cipher: XSalsa20Poly1305,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

impl SharedKey {
    /// Precomputes the key shared by `our_sk` and `their_pk`.
    pub fn precompute(their_pk: &PublicKey, our_sk: &SecretKey) -> Self {
        let s = x25519_dalek::StaticSecret::from(our_sk.0);
        let dh = s.diffie_hellman(&x25519_dalek::PublicKey::from(their_pk.0));
        let k = salsa20::hsalsa::<salsa20::cipher::consts::U10>(dh.as_bytes().into(), &[0u8; 16].into());
        Self::from_bytes(k.into())
    }
    /// A symmetric key used directly (cookies, onion sendbacks).
    pub fn from_bytes(key: [u8; SHARED_KEY_SIZE]) -> Self {
        SharedKey { key, cipher: XSalsa20Poly1305::new(&key.into()) }
    }
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_bytes(random_bytes(rng))
    }
    pub fn as_bytes(&self) -> &[u8; SHARED_KEY_SIZE] {
        &self.key
    }
    /// MAC ‖ ciphertext.
    pub fn encrypt(&self, nonce: &Nonce, plain: &[u8]) -> Vec<u8> {
        self.cipher
            .encrypt(nonce.into(), plain)
            .expect("xsalsa20poly1305 encryption of an in-memory buffer cannot fail")
    }
    /// Opens MAC ‖ ciphertext; `None` if it is too short or the MAC is wrong.
    pub fn decrypt(&self, nonce: &Nonce, boxed: &[u8]) -> Option<Vec<u8>> {
        if boxed.len() < MAC_SIZE {
            return None;
        }
        self.cipher.decrypt(nonce.into(), boxed).ok()
    }
}

/// `crypto_box`: encrypt for `their_pk` with `our_sk`.
pub fn encrypt_data(their_pk: &PublicKey, our_sk: &SecretKey, nonce: &Nonce, plain: &[u8]) -> Vec<u8> {
    SharedKey::precompute(their_pk, our_sk).encrypt(nonce, plain)
}

/// `crypto_box_open`.
pub fn decrypt_data(their_pk: &PublicKey, our_sk: &SecretKey, nonce: &Nonce, boxed: &[u8]) -> Option<Vec<u8>> {
    SharedKey::precompute(their_pk, our_sk).decrypt(nonce, boxed)
}

pub fn random_nonce<R: CryptoRng + ?Sized>(rng: &mut R) -> Nonce {
    random_bytes(rng)
}

pub fn random_u64<R: CryptoRng + ?Sized>(rng: &mut R) -> u64 {
    rng.next_u64()
}

pub fn random_bytes<const N: usize, R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

pub fn sha512(data: &[u8]) -> [u8; 64] {
    Sha512::digest(data).into()
}

/// Big-endian increment by one with carry; wraps at the top.
pub fn increment_nonce(n: &mut Nonce) {
    for b in n.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            return;
        }
    }
}

/// Big-endian addition of `num` (c-toxcore's `increment_nonce_number`).
pub fn increment_nonce_by(n: &mut Nonce, num: u32) {
    let add = num.to_be_bytes();
    let mut carry = 0u16;
    for i in 0..NONCE_SIZE {
        let idx = NONCE_SIZE - 1 - i;
        let a = if i < 4 { add[3 - i] as u16 } else { 0 };
        let s = n[idx] as u16 + a + carry;
        n[idx] = s as u8;
        carry = s >> 8;
    }
}

/// Hex in either case (surrounding whitespace ignored); `None` unless every character is
/// a hex digit and there is an even number of them.
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    data_encoding::HEXUPPER_PERMISSIVE.decode(s.trim().as_bytes()).ok()
}

/// Upper-case hex, as c-toxcore prints keys and Tox IDs.
pub(crate) fn hex_encode(b: &[u8]) -> String {
    data_encoding::HEXUPPER.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex_decode(s).unwrap()
    }
    fn arr<const N: usize>(s: &str) -> [u8; N] {
        h(s).try_into().unwrap()
    }

    // Vectors produced with c-toxcore 0.2.18's own functions (docs/protocols/tox.md#test-vectors).
    const SKA: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
    const PKA: &str = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
    const SKB: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
    const PKB: &str = "493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d";
    const NONCE: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f7";

    #[test]
    fn c_toxcore_vectors() {
        let ska = SecretKey(arr(SKA));
        let skb = SecretKey(arr(SKB));
        assert_eq!(ska.public_key().0.to_vec(), h(PKA));
        assert_eq!(skb.public_key().0.to_vec(), h(PKB));
        let shared = SharedKey::precompute(&PublicKey(arr(PKB)), &ska);
        assert_eq!(shared.as_bytes().to_vec(), h("baba246eb13dcd2f83d6dfe5e6d254d9f96c7705d141a7719b62685d90405e03"));
        let nonce: Nonce = arr(NONCE);
        let enc = encrypt_data(&PublicKey(arr(PKB)), &ska, &nonce, b"tox interop vector");
        assert_eq!(enc, h("d548324756d8e1c0dd977fc8187f18ab5d4195499c91978a257b4f4838890cdf9f98"));
        assert_eq!(shared.encrypt(&nonce, b"tox interop vector"), enc);
        // B opens it with its own secret and A's public key.
        let plain = decrypt_data(&PublicKey(arr(PKA)), &skb, &nonce, &enc).unwrap();
        assert_eq!(plain, b"tox interop vector");
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(decrypt_data(&PublicKey(arr(PKA)), &skb, &nonce, &bad).is_none());
        assert!(shared.decrypt(&nonce, &enc[..10]).is_none());
        assert_eq!(
            sha512(b"tox interop vector").to_vec(),
            h("ac369520048c8befe7fafd84e035e91e35b572bc5995cf0cd3f7ee87c6501fbca0901522a7cbda03e1b3398423113a79a97e0869494016649093275fde3491d6")
        );
    }

    #[test]
    fn nonce_increment() {
        let mut n: Nonce = [0xff; 24];
        n[0] = 0;
        increment_nonce(&mut n);
        let mut want = [0u8; 24];
        want[0] = 1;
        assert_eq!(n, want);
        let mut n: Nonce = arr(NONCE);
        increment_nonce_by(&mut n, 21845);
        assert_eq!(n.to_vec(), h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f64c4c"));
        let mut all = [0xff; 24];
        increment_nonce(&mut all);
        assert_eq!(all, [0u8; 24]);
    }

    #[test]
    fn hex_round_trip() {
        let pk = PublicKey(arr(PKA));
        assert_eq!(PublicKey::from_hex(&pk.to_hex()), Some(pk));
        assert_eq!(PublicKey::from_hex("zz"), None);
        let signed = format!("+0{}", &pk.to_hex()[2..]);
        assert_eq!(PublicKey::from_hex(&signed), None);
    }
}
