//! The saved profile: long-term key pair, nospam, nickname and friends.
//!
//! File format (version 1), all integers big-endian:
//! ```text
//! "OPTOXPRF" magic 8 · u8 version = 1 · secret key 32 · nospam 4
//! · u8 nickname length (≤ 128) · nickname UTF-8
//! · u16 friend count (≤ MAX_FRIENDS) · per friend: long-term pk 32
//! ```
//! The public key is derived from the secret key on load. Nothing may follow the last
//! friend. This is pure data — bytes in, bytes out; no file access, no clock, no
//! randomness: the caller makes the keys and nospam, and the node reads and (atomically)
//! writes the file (`omnipeer_node::tox::profile`).

use crate::crypto::{KeyPair, PublicKey, SecretKey, PUBLIC_KEY_SIZE, SECRET_KEY_SIZE};
use crate::toxid::{NoSpam, ToxId, NOSPAM_SIZE};

pub const PROFILE_MAGIC: &[u8; 8] = b"OPTOXPRF";
pub const PROFILE_VERSION: u8 = 1;
/// Longest nickname c-toxcore accepts (TOX_MAX_NAME_LENGTH).
pub const MAX_NICKNAME_LEN: usize = 128;
/// Most friends a profile may hold.
pub const MAX_FRIENDS: usize = 4096;
/// Largest valid profile file.
pub const MAX_PROFILE_SIZE: usize =
    8 + 1 + SECRET_KEY_SIZE + NOSPAM_SIZE + 1 + MAX_NICKNAME_LEN + 2 + MAX_FRIENDS * PUBLIC_KEY_SIZE;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("not an omnipeer Tox profile (bad magic)")]
    Magic,
    #[error("unsupported profile version {0}")]
    Version(u8),
    #[error("profile truncated")]
    Truncated,
    #[error("profile too large ({0} bytes, limit {MAX_PROFILE_SIZE})")]
    TooLarge(usize),
    #[error("nickname too long or not UTF-8")]
    Nickname,
    #[error("too many friends ({0}, limit {MAX_FRIENDS})")]
    TooManyFriends(usize),
    #[error("{0} trailing bytes after the profile")]
    Trailing(usize),
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub keys: KeyPair,
    pub nospam: NoSpam,
    pub nickname: String,
    /// Friends' long-term public keys, in the order they were added.
    pub friends: Vec<PublicKey>,
}

struct Reader<'a>(&'a [u8]);
impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProfileError> {
        if self.0.len() < n {
            return Err(ProfileError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProfileError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

impl Profile {
    /// A new identity with no friends, from keys and nospam the caller made (the node
    /// draws them from the OS); the nickname is cut to [`MAX_NICKNAME_LEN`] bytes.
    pub fn new(secret: SecretKey, nospam: NoSpam, nickname: &str) -> Self {
        let mut nickname = nickname.to_string();
        truncate_utf8(&mut nickname, MAX_NICKNAME_LEN);
        Profile { keys: KeyPair::from_secret(secret), nospam, nickname, friends: Vec::new() }
    }

    pub fn tox_id(&self) -> ToxId {
        ToxId::new(self.keys.pk, self.nospam)
    }

    /// Adds a friend; false if already present or the list is full.
    pub fn add_friend(&mut self, pk: PublicKey) -> bool {
        if self.friends.contains(&pk) || self.friends.len() >= MAX_FRIENDS || pk == self.keys.pk {
            return false;
        }
        self.friends.push(pk);
        true
    }

    pub fn encode(&self) -> Result<Vec<u8>, ProfileError> {
        if self.nickname.len() > MAX_NICKNAME_LEN {
            return Err(ProfileError::Nickname);
        }
        if self.friends.len() > MAX_FRIENDS {
            return Err(ProfileError::TooManyFriends(self.friends.len()));
        }
        let mut out = Vec::with_capacity(64 + self.nickname.len() + 32 * self.friends.len());
        out.extend_from_slice(PROFILE_MAGIC);
        out.push(PROFILE_VERSION);
        out.extend_from_slice(&self.keys.sk.0);
        out.extend_from_slice(&self.nospam.0);
        out.push(self.nickname.len() as u8);
        out.extend_from_slice(self.nickname.as_bytes());
        out.extend_from_slice(&(self.friends.len() as u16).to_be_bytes());
        for f in &self.friends {
            out.extend_from_slice(&f.0);
        }
        Ok(out)
    }

    pub fn decode(b: &[u8]) -> Result<Self, ProfileError> {
        if b.len() > MAX_PROFILE_SIZE {
            return Err(ProfileError::TooLarge(b.len()));
        }
        let mut r = Reader(b);
        if r.take(PROFILE_MAGIC.len()).map_err(|_| ProfileError::Magic)? != PROFILE_MAGIC {
            return Err(ProfileError::Magic);
        }
        let [version] = r.array::<1>()?;
        if version != PROFILE_VERSION {
            return Err(ProfileError::Version(version));
        }
        let sk = SecretKey(r.array::<SECRET_KEY_SIZE>()?);
        let nospam = NoSpam(r.array::<NOSPAM_SIZE>()?);
        let [nlen] = r.array::<1>()?;
        if nlen as usize > MAX_NICKNAME_LEN {
            return Err(ProfileError::Nickname);
        }
        let nickname = std::str::from_utf8(r.take(nlen as usize)?).map_err(|_| ProfileError::Nickname)?.to_string();
        let count = u16::from_be_bytes(r.array::<2>()?) as usize;
        if count > MAX_FRIENDS {
            return Err(ProfileError::TooManyFriends(count));
        }
        let mut friends = Vec::with_capacity(count);
        for _ in 0..count {
            friends.push(PublicKey(r.array::<PUBLIC_KEY_SIZE>()?));
        }
        if !r.0.is_empty() {
            return Err(ProfileError::Trailing(r.0.len()));
        }
        Ok(Profile { keys: KeyPair::from_secret(sk), nospam, nickname, friends })
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_then_add_friend() {
        let p = Profile::new(SecretKey([3; 32]), NoSpam([1, 2, 3, 4]), &"é".repeat(100));
        assert_eq!(p.nickname.len(), 128, "cut to MAX_NICKNAME_LEN on a char boundary");
        assert_eq!(p.keys.pk, SecretKey([3; 32]).public_key());
        let mut q = Profile::decode(&p.encode().unwrap()).unwrap();
        assert_eq!(q.tox_id(), p.tox_id());
        let f = PublicKey([9; 32]);
        assert!(q.add_friend(f));
        assert!(!q.add_friend(f));
        assert!(!q.add_friend(q.keys.pk));
        assert_eq!(Profile::decode(&q.encode().unwrap()).unwrap().friends, vec![f]);
    }

    #[test]
    fn golden_layout() {
        let p = Profile {
            keys: KeyPair::from_secret(SecretKey([7; 32])),
            nospam: NoSpam([1, 2, 3, 4]),
            nickname: "ab".into(),
            friends: vec![PublicKey([9; 32])],
        };
        let b = p.encode().unwrap();
        let mut want = b"OPTOXPRF\x01".to_vec();
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[1, 2, 3, 4, 2, b'a', b'b', 0, 1]);
        want.extend_from_slice(&[9; 32]);
        assert_eq!(b, want);
    }

    #[test]
    fn malformed_refused() {
        let p = Profile::new(SecretKey([5; 32]), NoSpam([6; 4]), "x");
        let b = p.encode().unwrap();
        for cut in 0..b.len() {
            assert!(Profile::decode(&b[..cut]).is_err(), "prefix {cut} accepted");
        }
        let mut t = b.clone();
        t.push(0);
        assert!(matches!(Profile::decode(&t), Err(ProfileError::Trailing(1))));
        let mut v = b.clone();
        v[8] = 2;
        assert!(matches!(Profile::decode(&v), Err(ProfileError::Version(2))));
        let mut m = b.clone();
        m[0] = b'X';
        assert!(matches!(Profile::decode(&m), Err(ProfileError::Magic)));
        let mut n = b.clone();
        n[8 + 1 + 32 + 4] = 200;
        assert!(matches!(Profile::decode(&n), Err(ProfileError::Nickname)));
        assert!(matches!(Profile::decode(&vec![0; MAX_PROFILE_SIZE + 1]), Err(ProfileError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn round_trip(sk in any::<[u8; 32]>(), ns in any::<[u8; 4]>(), nick in "\\PC{0,40}",
                      friends in proptest::collection::vec(any::<[u8; 32]>(), 0..20)) {
            let mut nick = nick;
            truncate_utf8(&mut nick, MAX_NICKNAME_LEN);
            let p = Profile { keys: KeyPair::from_secret(SecretKey(sk)), nospam: NoSpam(ns), nickname: nick,
                              friends: friends.into_iter().map(PublicKey).collect() };
            let q = Profile::decode(&p.encode().unwrap()).unwrap();
            prop_assert_eq!(q.keys.pk, p.keys.pk);
            prop_assert_eq!(q.nospam, p.nospam);
            prop_assert_eq!(&q.nickname, &p.nickname);
            prop_assert_eq!(&q.friends, &p.friends);
        }
    }
}
