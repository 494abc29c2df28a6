//! Login hashes and the name rules a server enforces (docs/protocols/soulseek.md#login-rules).
//!
//! ```
//! use omnipeer_slsk::login::{login_hash, password_hash, validate_username, UsernameError};
//!
//! assert_eq!(login_hash("username", "password"), "d51c9a7e9353746a6020f9602d452929");
//! assert_eq!(password_hash("pw"), "8fe4c11451281c094a6578e6ddbf5eed");
//! assert_eq!(validate_username(" bob"), Err(UsernameError::LeadingOrTrailingSpaces));
//! assert_eq!(UsernameError::TooLong.detail(), "Nick too long.");
//! ```

use md5::{Digest, Md5};
use thiserror::Error;

/// Longest user name the server accepts, in characters.
pub const MAX_USERNAME_CHARS: usize = 30;

/// Longest room name the server accepts, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 24;

/// Lowercase hex md5 of `data`.
pub fn md5hex(data: &[u8]) -> String {
    let digest = Md5::digest(data);
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

/// The hash a client puts in its Login request: md5hex(user + password).
pub fn login_hash(username: &str, password: &str) -> String {
    let mut v = Vec::with_capacity(username.len() + password.len());
    v.extend_from_slice(username.as_bytes());
    v.extend_from_slice(password.as_bytes());
    md5hex(&v)
}

/// The hash a server puts in a successful Login reply: md5hex(password).
pub fn password_hash(password: &str) -> String {
    md5hex(password.as_bytes())
}

/// Why a user name is refused: the server answers `INVALIDUSERNAME` with
/// [`UsernameError::detail`] as the detail string.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq, Hash)]
pub enum UsernameError {
    /// Empty.
    #[error("Nick empty.")]
    Empty,
    /// More than [`MAX_USERNAME_CHARS`] characters.
    #[error("Nick too long.")]
    TooLong,
    /// A character outside printable ASCII (0x20..=0x7e).
    #[error("Invalid characters in nick.")]
    InvalidCharacters,
    /// Starts or ends with a space.
    #[error("No leading and trailing spaces allowed in nick.")]
    LeadingOrTrailingSpaces,
}

impl UsernameError {
    /// The detail string of the INVALIDUSERNAME login failure, exactly as the real server
    /// sends it.
    pub fn detail(self) -> &'static str {
        match self {
            UsernameError::Empty => "Nick empty.",
            UsernameError::TooLong => "Nick too long.",
            UsernameError::InvalidCharacters => "Invalid characters in nick.",
            UsernameError::LeadingOrTrailingSpaces => "No leading and trailing spaces allowed in nick.",
        }
    }
}

/// Check a login name: non-empty, at most 30 characters, printable ASCII only, no leading
/// or trailing space. Checked in that order; the first failure is returned.
pub fn validate_username(name: &str) -> Result<(), UsernameError> {
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err(UsernameError::TooLong);
    }
    if !name.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(UsernameError::InvalidCharacters);
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(UsernameError::LeadingOrTrailingSpaces);
    }
    Ok(())
}

/// Why a room name is refused. The real server tells the user with a MessageUser from
/// `server`; its exact wording is not recorded, so `Display` here is our own text.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq, Hash)]
pub enum RoomNameError {
    /// Empty.
    #[error("Room name is empty.")]
    Empty,
    /// More than [`MAX_ROOM_NAME_CHARS`] characters.
    #[error("Room name is longer than 24 characters.")]
    TooLong,
    /// A character that is not printable ASCII.
    #[error("Room name may only contain printable ASCII characters.")]
    InvalidCharacters,
    /// Starts or ends with a space.
    #[error("Room name may not start or end with a space.")]
    LeadingOrTrailingSpaces,
    /// Two spaces in a row.
    #[error("Room name may not contain two spaces in a row.")]
    ConsecutiveSpaces,
}

/// Check a room name: non-empty, at most 24 characters, ASCII (control characters refused
/// too), no leading, trailing or double spaces.
pub fn validate_room_name(name: &str) -> Result<(), RoomNameError> {
    if name.is_empty() {
        return Err(RoomNameError::Empty);
    }
    if name.chars().count() > MAX_ROOM_NAME_CHARS {
        return Err(RoomNameError::TooLong);
    }
    if !name.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(RoomNameError::InvalidCharacters);
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(RoomNameError::LeadingOrTrailingSpaces);
    }
    if name.contains("  ") {
        return Err(RoomNameError::ConsecutiveSpaces);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hashes_from_the_notes() {
        assert_eq!(login_hash("username", "password"), "d51c9a7e9353746a6020f9602d452929");
        assert_eq!(password_hash("password"), "5f4dcc3b5aa765d61d8327deb882cf99");
        assert_eq!(password_hash("pw"), "8fe4c11451281c094a6578e6ddbf5eed");
        assert_eq!(md5hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn username_rules() {
        assert_eq!(validate_username("alice"), Ok(()));
        assert_eq!(validate_username("a b"), Ok(()));
        assert_eq!(validate_username("~!@#$%^&*()_+"), Ok(()));
        assert_eq!(validate_username(&"x".repeat(30)), Ok(()));
        assert_eq!(validate_username(""), Err(UsernameError::Empty));
        assert_eq!(validate_username(&"x".repeat(31)), Err(UsernameError::TooLong));
        assert_eq!(validate_username("bé"), Err(UsernameError::InvalidCharacters));
        assert_eq!(validate_username("a\tb"), Err(UsernameError::InvalidCharacters));
        assert_eq!(validate_username("a\x7f"), Err(UsernameError::InvalidCharacters));
        assert_eq!(validate_username(" a"), Err(UsernameError::LeadingOrTrailingSpaces));
        assert_eq!(validate_username("a "), Err(UsernameError::LeadingOrTrailingSpaces));
        // 30 non-ASCII characters are not "too long", they are invalid.
        assert_eq!(validate_username(&"é".repeat(30)), Err(UsernameError::InvalidCharacters));
        assert_eq!(UsernameError::LeadingOrTrailingSpaces.detail(), "No leading and trailing spaces allowed in nick.");
        assert_eq!(UsernameError::Empty.to_string(), UsernameError::Empty.detail());
        assert_eq!(UsernameError::InvalidCharacters.detail(), "Invalid characters in nick.");
    }

    #[test]
    fn room_rules() {
        assert_eq!(validate_room_name("nicotine"), Ok(()));
        assert_eq!(validate_room_name("The Lobby"), Ok(()));
        assert_eq!(validate_room_name(&"r".repeat(24)), Ok(()));
        assert_eq!(validate_room_name(""), Err(RoomNameError::Empty));
        assert_eq!(validate_room_name(&"r".repeat(25)), Err(RoomNameError::TooLong));
        assert_eq!(validate_room_name("café"), Err(RoomNameError::InvalidCharacters));
        assert_eq!(validate_room_name(" a"), Err(RoomNameError::LeadingOrTrailingSpaces));
        assert_eq!(validate_room_name("a "), Err(RoomNameError::LeadingOrTrailingSpaces));
        assert_eq!(validate_room_name("a  b"), Err(RoomNameError::ConsecutiveSpaces));
    }

    proptest! {
        #[test]
        fn valid_names_are_printable_ascii(s in ".{0,40}") {
            if validate_username(&s).is_ok() {
                prop_assert!(!s.is_empty() && s.len() <= 30);
                prop_assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b)));
                prop_assert!(!s.starts_with(' ') && !s.ends_with(' '));
            }
            if validate_room_name(&s).is_ok() {
                prop_assert!(!s.is_empty() && s.len() <= 24 && s.is_ascii());
                prop_assert!(!s.contains("  "));
            }
        }
    }
}
