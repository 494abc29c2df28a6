//! The standard Tox save format — what c-toxcore's `tox_get_savedata` writes and qTox,
//! toxic and every other c-toxcore client keep as `NAME.tox` — and its passphrase-encrypted
//! form (toxencryptsave). docs/protocols/tox.md#savedata.
//!
//! Pure data: bytes in, bytes out; the salt and nonce of an encryption are the caller's.

use crate::crypto::{KeyPair, Nonce, PublicKey, SecretKey, SharedKey, NONCE_SIZE, PUBLIC_KEY_SIZE, SECRET_KEY_SIZE};
use crate::profile::{Profile, MAX_FRIENDS, MAX_NICKNAME_LEN};
use crate::toxid::{NoSpam, NOSPAM_SIZE};
use sha2::{Digest, Sha256};

/// Largest save accepted (a save with `MAX_FRIENDS` friends is about 9 MiB).
pub const MAX_SAVEDATA_SIZE: usize = 16 << 20;
/// First 8 bytes: a `u32` 0, then `MESSENGER_STATE_COOKIE_GLOBAL`, both little-endian.
pub const STATE_COOKIE_GLOBAL: u32 = 0x15ed_1b1f;
/// High half of every section's type word.
pub const SECTION_COOKIE: u16 = 0x01ce;
/// Size of one saved friend record (c-toxcore's `friend_size()`, padding included).
pub const SAVED_FRIEND_SIZE: usize = 2216;
/// Friend request message space in a saved friend.
const SAVED_REQUEST_SIZE: usize = 1024;
/// Longest status message in a saved friend (TOX_MAX_STATUS_MESSAGE_LENGTH).
const SAVED_STATUS_MESSAGE_SIZE: usize = 1007;

pub mod section {
    pub const NOSPAMKEYS: u16 = 1;
    pub const DHT: u16 = 2;
    pub const FRIENDS: u16 = 3;
    pub const NAME: u16 = 4;
    pub const STATUSMESSAGE: u16 = 5;
    pub const STATUS: u16 = 6;
    pub const TCP_RELAY: u16 = 10;
    pub const PATH_NODE: u16 = 11;
    pub const CONFERENCES: u16 = 20;
    pub const END: u16 = 255;
}

/// toxencryptsave: `"toxEsave"` ‖ salt 32 ‖ nonce 24 ‖ secretbox(MAC 16 ‖ save).
pub const ENCRYPTED_MAGIC: &[u8; 8] = b"toxEsave";
pub const SALT_SIZE: usize = 32;
/// Bytes an encryption adds (TOX_PASS_ENCRYPTION_EXTRA_LENGTH).
pub const ENCRYPTION_EXTRA: usize = 8 + SALT_SIZE + NONCE_SIZE + 16;
/// scrypt parameters libsodium picks for `OPSLIMIT_INTERACTIVE * 2` and
/// `MEMLIMIT_INTERACTIVE` (what toxencryptsave asks for): N = 2¹⁴, r = 8, p = 2.
pub const SCRYPT_LOG_N: u8 = 14;
pub const SCRYPT_R: u32 = 8;
pub const SCRYPT_P: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    #[error("not a Tox save (bad header)")]
    Header,
    #[error("save truncated")]
    Truncated,
    #[error("save too large ({0} bytes, limit {MAX_SAVEDATA_SIZE})")]
    TooLarge(usize),
    #[error("section {0} malformed")]
    Section(u16),
    #[error("no keys section in the save")]
    NoKeys,
    #[error("too many friends ({0}, limit {MAX_FRIENDS})")]
    TooManyFriends(usize),
    #[error("the save is encrypted: a passphrase is needed")]
    Encrypted,
    #[error("wrong passphrase or damaged save")]
    Decrypt,
}

/// One friend of a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFriend {
    pub pk: PublicKey,
    /// 1 added (request not sent yet), 2 request sent, 3 confirmed, 4 online.
    pub status: u8,
    /// Our friend request message (status 1 and 2).
    pub request_message: Vec<u8>,
    pub name: String,
    pub status_message: String,
    /// The nospam our request went to.
    pub request_nospam: [u8; NOSPAM_SIZE],
}

/// What a save holds that omnipeer uses (DHT nodes, relays and conferences are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveData {
    pub secret: SecretKey,
    pub nospam: NoSpam,
    pub name: String,
    pub status_message: String,
    pub status: u8,
    pub friends: Vec<SavedFriend>,
}

fn text(b: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned();
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn parse_friend(f: &[u8]) -> SavedFriend {
    let info_size = (le16(&f[1058..1060]) as usize).min(SAVED_REQUEST_SIZE);
    let name_len = (le16(&f[1188..1190]) as usize).min(MAX_NICKNAME_LEN);
    let sm_len = (le16(&f[2198..2200]) as usize).min(SAVED_STATUS_MESSAGE_SIZE);
    let mut pk = [0u8; PUBLIC_KEY_SIZE];
    pk.copy_from_slice(&f[1..33]);
    let mut ns = [0u8; NOSPAM_SIZE];
    ns.copy_from_slice(&f[2204..2208]);
    SavedFriend {
        pk: PublicKey(pk),
        status: f[0],
        request_message: f[33..33 + info_size].to_vec(),
        name: text(&f[1060..1060 + name_len], MAX_NICKNAME_LEN),
        status_message: text(&f[1190..1190 + sm_len], SAVED_STATUS_MESSAGE_SIZE),
        request_nospam: ns,
    }
}

fn encode_friend(f: &SavedFriend, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + SAVED_FRIEND_SIZE, 0);
    let r = &mut out[start..];
    r[0] = f.status;
    r[1..33].copy_from_slice(&f.pk.0);
    let info = &f.request_message[..f.request_message.len().min(SAVED_REQUEST_SIZE)];
    r[33..33 + info.len()].copy_from_slice(info);
    r[1058..1060].copy_from_slice(&(info.len() as u16).to_le_bytes());
    let name = &f.name.as_bytes()[..f.name.len().min(MAX_NICKNAME_LEN)];
    r[1060..1060 + name.len()].copy_from_slice(name);
    r[1188..1190].copy_from_slice(&(name.len() as u16).to_le_bytes());
    let sm = &f.status_message.as_bytes()[..f.status_message.len().min(SAVED_STATUS_MESSAGE_SIZE)];
    r[1190..1190 + sm.len()].copy_from_slice(sm);
    r[2198..2200].copy_from_slice(&(sm.len() as u16).to_le_bytes());
    r[2204..2208].copy_from_slice(&f.request_nospam);
    // last seen (big-endian u64 UNIX time) left 0: unknown.
}

impl SaveData {
    /// Parses a plain (not encrypted) save. Unknown sections are skipped; a save must
    /// have its keys.
    pub fn parse(b: &[u8]) -> Result<SaveData, SaveError> {
        if b.len() > MAX_SAVEDATA_SIZE {
            return Err(SaveError::TooLarge(b.len()));
        }
        if b.starts_with(ENCRYPTED_MAGIC) {
            return Err(SaveError::Encrypted);
        }
        if b.len() < 8 || le32(&b[0..4]) != 0 || le32(&b[4..8]) != STATE_COOKIE_GLOBAL {
            return Err(SaveError::Header);
        }
        let mut rest = &b[8..];
        let mut keys: Option<(NoSpam, SecretKey)> = None;
        let mut save = SaveData {
            secret: SecretKey([0; SECRET_KEY_SIZE]),
            nospam: NoSpam([0; NOSPAM_SIZE]),
            name: String::new(),
            status_message: String::new(),
            status: 0,
            friends: Vec::new(),
        };
        while rest.len() >= 8 {
            let len = le32(&rest[0..4]) as usize;
            let word = le32(&rest[4..8]);
            let (kind, cookie) = ((word & 0xffff) as u16, (word >> 16) as u16);
            if cookie != SECTION_COOKIE {
                return Err(SaveError::Header);
            }
            let body = rest.get(8..8 + len).ok_or(SaveError::Truncated)?;
            rest = &rest[8 + len..];
            match kind {
                section::NOSPAMKEYS => {
                    if len != NOSPAM_SIZE + PUBLIC_KEY_SIZE + SECRET_KEY_SIZE {
                        return Err(SaveError::Section(kind));
                    }
                    let mut ns = [0u8; NOSPAM_SIZE];
                    ns.copy_from_slice(&body[..4]);
                    let mut sk = [0u8; SECRET_KEY_SIZE];
                    sk.copy_from_slice(&body[4 + PUBLIC_KEY_SIZE..]);
                    // The stored public key must be the secret key's.
                    if SecretKey(sk).public_key().0 != body[4..4 + PUBLIC_KEY_SIZE] {
                        return Err(SaveError::Section(kind));
                    }
                    keys = Some((NoSpam(ns), SecretKey(sk)));
                }
                section::FRIENDS => {
                    if !len.is_multiple_of(SAVED_FRIEND_SIZE) {
                        return Err(SaveError::Section(kind));
                    }
                    let n = len / SAVED_FRIEND_SIZE;
                    if n > MAX_FRIENDS {
                        return Err(SaveError::TooManyFriends(n));
                    }
                    save.friends = body.chunks_exact(SAVED_FRIEND_SIZE).map(parse_friend).collect();
                }
                section::NAME => save.name = text(body, MAX_NICKNAME_LEN),
                section::STATUSMESSAGE => save.status_message = text(body, SAVED_STATUS_MESSAGE_SIZE),
                section::STATUS => save.status = body.first().copied().unwrap_or(0),
                section::END => break,
                _ => {} // DHT, relays, path nodes, conferences, groups: not used
            }
        }
        let (nospam, secret) = keys.ok_or(SaveError::NoKeys)?;
        save.nospam = nospam;
        save.secret = secret;
        Ok(save)
    }

    /// Writes the save as c-toxcore does (keys, friends, name, status message, status,
    /// end); c-toxcore and its clients load it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&STATE_COOKIE_GLOBAL.to_le_bytes());
        let sec = |out: &mut Vec<u8>, kind: u16, body: &[u8]| {
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&(((SECTION_COOKIE as u32) << 16) | kind as u32).to_le_bytes());
            out.extend_from_slice(body);
        };
        let mut keys = self.nospam.0.to_vec();
        keys.extend_from_slice(&self.secret.public_key().0);
        keys.extend_from_slice(&self.secret.0);
        sec(&mut out, section::NOSPAMKEYS, &keys);
        let mut friends = Vec::with_capacity(self.friends.len() * SAVED_FRIEND_SIZE);
        for f in &self.friends {
            encode_friend(f, &mut friends);
        }
        sec(&mut out, section::FRIENDS, &friends);
        sec(&mut out, section::NAME, self.name.as_bytes());
        sec(&mut out, section::STATUSMESSAGE, self.status_message.as_bytes());
        sec(&mut out, section::STATUS, &[self.status]);
        sec(&mut out, section::END, &[]);
        out
    }

    /// The omnipeer profile of this save: its identity, name and friends (friends whose
    /// request was still pending become friends too: we connect when they accept).
    pub fn to_profile(&self) -> Profile {
        let mut p = Profile::new(self.secret.clone(), self.nospam, &self.name);
        for f in &self.friends {
            p.add_friend(f.pk);
        }
        p
    }

    /// A save of an omnipeer profile (every friend confirmed).
    pub fn from_profile(p: &Profile) -> SaveData {
        SaveData {
            secret: p.keys.sk.clone(),
            nospam: p.nospam,
            name: p.nickname.clone(),
            status_message: String::new(),
            status: 0,
            friends: p
                .friends
                .iter()
                .map(|pk| SavedFriend {
                    pk: *pk,
                    status: 3,
                    request_message: Vec::new(),
                    name: String::new(),
                    status_message: String::new(),
                    request_nospam: [0; NOSPAM_SIZE],
                })
                .collect(),
        }
    }
}

/// Whether `b` is a toxencryptsave file.
pub fn is_encrypted(b: &[u8]) -> bool {
    b.starts_with(ENCRYPTED_MAGIC)
}

/// toxencryptsave's key: scrypt(SHA-256(passphrase), salt), N 2¹⁴, r 8, p 2, 32 bytes.
pub fn derive_key(passphrase: &[u8], salt: &[u8; SALT_SIZE]) -> SharedKey {
    let pass = Sha256::digest(passphrase);
    let params = scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, 32).expect("valid scrypt parameters");
    let mut key = [0u8; 32];
    scrypt::scrypt(&pass, salt, &params, &mut key).expect("32-byte output is valid");
    SharedKey::from_bytes(key)
}

/// Decrypts a toxencryptsave file.
pub fn decrypt(b: &[u8], passphrase: &[u8]) -> Result<Vec<u8>, SaveError> {
    if b.len() > MAX_SAVEDATA_SIZE + ENCRYPTION_EXTRA {
        return Err(SaveError::TooLarge(b.len()));
    }
    if !is_encrypted(b) {
        return Err(SaveError::Header);
    }
    if b.len() <= ENCRYPTION_EXTRA {
        return Err(SaveError::Truncated);
    }
    let mut salt = [0u8; SALT_SIZE];
    salt.copy_from_slice(&b[8..8 + SALT_SIZE]);
    let mut nonce: Nonce = [0; NONCE_SIZE];
    nonce.copy_from_slice(&b[8 + SALT_SIZE..8 + SALT_SIZE + NONCE_SIZE]);
    derive_key(passphrase, &salt).decrypt(&nonce, &b[8 + SALT_SIZE + NONCE_SIZE..]).ok_or(SaveError::Decrypt)
}

/// Encrypts a save as toxencryptsave does (`salt` and `nonce` fresh from the caller).
pub fn encrypt(plain: &[u8], passphrase: &[u8], salt: &[u8; SALT_SIZE], nonce: &Nonce) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + ENCRYPTION_EXTRA);
    out.extend_from_slice(ENCRYPTED_MAGIC);
    out.extend_from_slice(salt);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&derive_key(passphrase, salt).encrypt(nonce, plain));
    out
}

/// A key pair check helper for callers comparing identities.
pub fn public_key_of(save: &SaveData) -> PublicKey {
    KeyPair::from_secret(save.secret.clone()).pk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SaveData {
        SaveData {
            secret: SecretKey([7; 32]),
            nospam: NoSpam([1, 2, 3, 4]),
            name: "alice".into(),
            status_message: "here".into(),
            status: 1,
            friends: vec![
                SavedFriend {
                    pk: SecretKey([8; 32]).public_key(),
                    status: 3,
                    request_message: vec![],
                    name: "bob".into(),
                    status_message: "busy".into(),
                    request_nospam: [0; 4],
                },
                SavedFriend {
                    pk: SecretKey([9; 32]).public_key(),
                    status: 2,
                    request_message: b"add me".to_vec(),
                    name: String::new(),
                    status_message: String::new(),
                    request_nospam: [5, 6, 7, 8],
                },
            ],
        }
    }

    #[test]
    fn round_trip_layout_and_profile() {
        let s = sample();
        let b = s.encode();
        assert_eq!(&b[..8], &[0, 0, 0, 0, 0x1f, 0x1b, 0xed, 0x15]);
        // First section: 68 bytes of NOSPAMKEYS, type 1 cookie 0x01ce.
        assert_eq!(&b[8..16], &[68, 0, 0, 0, 1, 0, 0xce, 0x01]);
        assert_eq!(&b[16..20], &[1, 2, 3, 4]);
        assert_eq!(SaveData::parse(&b).unwrap(), s);
        let p = s.to_profile();
        assert_eq!(p.nickname, "alice");
        assert_eq!(p.friends.len(), 2);
        assert_eq!(p.tox_id().nospam, NoSpam([1, 2, 3, 4]));
        let back = SaveData::from_profile(&p);
        assert_eq!(back.secret, s.secret);
        assert_eq!(back.friends.iter().map(|f| f.pk).collect::<Vec<_>>(), p.friends);
    }

    #[test]
    fn malformed_saves_are_refused_not_panicked_on() {
        let b = sample().encode();
        for n in 0..b.len() {
            let _ = SaveData::parse(&b[..n]);
        }
        assert_eq!(SaveData::parse(&b[..8]), Err(SaveError::NoKeys));
        let mut bad = b.clone();
        bad[4] ^= 1;
        assert_eq!(SaveData::parse(&bad), Err(SaveError::Header));
        let mut bad = b.clone();
        bad[20] ^= 1; // the stored public key no longer matches
        assert_eq!(SaveData::parse(&bad), Err(SaveError::Section(section::NOSPAMKEYS)));
        let mut bad = b.clone();
        bad[11] = 0x7f; // a section longer than the file
        assert_eq!(SaveData::parse(&bad), Err(SaveError::Truncated));
    }

    #[test]
    fn encrypted_round_trip_and_wrong_passphrase() {
        let plain = sample().encode();
        let e = encrypt(&plain, b"correct horse", &[3; 32], &[4; 24]);
        assert!(is_encrypted(&e));
        assert_eq!(e.len(), plain.len() + ENCRYPTION_EXTRA);
        assert_eq!(SaveData::parse(&e), Err(SaveError::Encrypted));
        assert_eq!(decrypt(&e, b"correct horse").unwrap(), plain);
        assert_eq!(decrypt(&e, b"wrong"), Err(SaveError::Decrypt));
        assert_eq!(decrypt(&e[..ENCRYPTION_EXTRA], b"correct horse"), Err(SaveError::Truncated));
    }
}
