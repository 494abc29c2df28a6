//! The Tox profile file: reading and atomic writing, for the pure encoding in
//! `omnipeer_tox::profile` (the crate does no file I/O). New profiles get their secret key
//! and nospam from the OS random source here.

use super::os_random;
use omnipeer_tox::crypto::SecretKey;
use omnipeer_tox::profile::{Profile, ProfileError, MAX_PROFILE_SIZE};
use omnipeer_tox::toxid::NoSpam;
use std::io::{Read, Write};
use std::path::Path;

/// Why a profile could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ProfileFileError {
    #[error("profile I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Format(#[from] ProfileError),
}

/// A new identity: secret key and nospam from the OS random source.
pub fn new_profile(nickname: &str) -> Profile {
    Profile::new(SecretKey(os_random()), NoSpam(os_random()), nickname)
}

/// Reads and decodes the profile at `path`. At most [`MAX_PROFILE_SIZE`] + 1 bytes are
/// read, so an oversized file is refused without reading it all.
pub fn load(path: &Path) -> Result<Profile, ProfileFileError> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(MAX_PROFILE_SIZE as u64 + 1).read_to_end(&mut buf)?;
    Ok(Profile::decode(&buf)?)
}

/// Writes the profile atomically (temporary file in the same directory, fsync, rename):
/// a crash never leaves a half-written profile. On Unix the file is readable by its owner
/// only: it holds the secret key.
pub fn save(profile: &Profile, path: &Path) -> Result<(), ProfileFileError> {
    let bytes = profile.encode()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "profile".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let res = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(res?)
}

/// Loads the profile, or creates and saves a new one (OS-random keys) if the file does not
/// exist. Returns the profile and whether it was created.
pub fn load_or_create(path: &Path, nickname: &str) -> Result<(Profile, bool), ProfileFileError> {
    match load(path) {
        Ok(p) => Ok((p, false)),
        Err(ProfileFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let p = new_profile(nickname);
            save(&p, path)?;
            Ok((p, true))
        }
        Err(e) => Err(e),
    }
}

/// Reads a Tox save (qTox's / toxic's `NAME.tox`, written by c-toxcore's
/// `tox_get_savedata`), decrypting it with `passphrase` when it is encrypted
/// (toxencryptsave), and returns it as an omnipeer profile. At most
/// `MAX_SAVEDATA_SIZE` + the encryption overhead is read.
pub fn import_savedata(path: &Path, passphrase: Option<&[u8]>) -> anyhow::Result<Profile> {
    use anyhow::Context;
    use omnipeer_tox::savedata::{ENCRYPTION_EXTRA, MAX_SAVEDATA_SIZE};
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut buf = Vec::new();
    f.take((MAX_SAVEDATA_SIZE + ENCRYPTION_EXTRA + 1) as u64).read_to_end(&mut buf)?;
    parse_savedata(&buf, passphrase).with_context(|| format!("{}", path.display()))
}

/// A Tox save's bytes (plain or encrypted) as an omnipeer profile.
pub fn parse_savedata(buf: &[u8], passphrase: Option<&[u8]>) -> anyhow::Result<Profile> {
    use omnipeer_tox::savedata::{self, SaveData};
    let plain = if savedata::is_encrypted(buf) {
        let pass = passphrase.ok_or_else(|| anyhow::anyhow!("the save is encrypted: a passphrase is needed"))?;
        savedata::decrypt(buf, pass)?
    } else {
        buf.to_vec()
    };
    Ok(SaveData::parse(&plain)?.to_profile())
}

/// `profile` as the bytes of a Tox save, encrypted with `passphrase` when given.
pub fn savedata_bytes(profile: &Profile, passphrase: Option<&[u8]>) -> Vec<u8> {
    use omnipeer_tox::savedata::{self, SaveData};
    let plain = SaveData::from_profile(profile).encode();
    match passphrase {
        Some(p) => savedata::encrypt(&plain, p, &os_random(), &os_random()),
        None => plain,
    }
}

/// Writes `profile` as a Tox save that c-toxcore clients load, encrypted with
/// `passphrase` (toxencryptsave, fresh salt and nonce from the OS) when given; atomically,
/// owner-only.
pub fn export_savedata(profile: &Profile, path: &Path, passphrase: Option<&[u8]>) -> anyhow::Result<()> {
    write_private(path, &savedata_bytes(profile, passphrase))?;
    Ok(())
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "save".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let res = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipeer_tox::crypto::PublicKey;

    #[test]
    fn create_load_add_friend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("me.tox");
        let (p, created) = load_or_create(&path, "omnipeer").unwrap();
        assert!(created);
        let (mut q, created) = load_or_create(&path, "other").unwrap();
        assert!(!created);
        assert_eq!(q.tox_id(), p.tox_id());
        assert_eq!(q.nickname, "omnipeer");
        let f = PublicKey([9; 32]);
        assert!(q.add_friend(f));
        save(&q, &path).unwrap();
        let r = load(&path).unwrap();
        assert_eq!(r.friends, vec![f]);
        assert_eq!(r.keys.pk, p.keys.pk);
        // Only the profile is left in the directory: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Two new profiles are two identities (keys from the OS, not a fixed seed).
        assert_ne!(new_profile("a").keys.pk, new_profile("a").keys.pk);
    }

    #[test]
    fn malformed_and_oversized_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tox");
        std::fs::write(&path, b"not a profile").unwrap();
        assert!(matches!(load(&path), Err(ProfileFileError::Format(ProfileError::Magic))));
        std::fs::write(&path, vec![0u8; MAX_PROFILE_SIZE + 10]).unwrap();
        assert!(matches!(load(&path), Err(ProfileFileError::Format(ProfileError::TooLarge(_)))));
        assert!(load_or_create(&path, "x").is_err(), "a bad profile is not replaced");
    }
}
