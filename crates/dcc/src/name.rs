//! File names and nicks from the network.
//!
//! A file name in `120 nick size name` is everything after the second space. mIRC quotes
//! names with spaces in CTCP DCC, so one pair of surrounding double quotes is stripped, and
//! some fserves send full paths, so any directory part (`/` or `\`) is stripped too. What
//! remains must be a single, ordinary path component: that is what [`SafeName`] guarantees,
//! and it is the only kind of network string the runtime ever places in a directory.

use crate::limits::{MAX_FILE_NAME, MAX_NICK};
use thiserror::Error;

/// Why a name or nick was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NameError {
    /// Nothing is left after stripping quotes and directories.
    #[error("empty name")]
    Empty,
    /// Longer than the limit.
    #[error("name longer than {0} bytes")]
    TooLong(usize),
    /// `.` or `..` (after stripping directories).
    #[error("'.' and '..' are not file names")]
    DotName,
    /// NUL or another control character.
    #[error("control character in name")]
    ControlChar,
    /// A nick containing a space.
    #[error("space in nick")]
    SpaceInNick,
}

/// A file name that is exactly one ordinary path component: not empty, not `.`/`..`, no
/// `/`, `\`, NUL or control characters, at most [`MAX_FILE_NAME`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafeName(String);

impl SafeName {
    /// Sanitize a name as received: trim spaces, strip one pair of surrounding double
    /// quotes, strip any directory part, then check what is left.
    pub fn sanitize(raw: &str) -> Result<SafeName, NameError> {
        let mut s = raw.trim();
        if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
            s = s[1..s.len() - 1].trim();
        }
        let base = s.rsplit(['/', '\\']).next().unwrap_or("");
        SafeName::new(base.trim())
    }

    /// Check that `s` is already a single ordinary component (no stripping).
    pub fn new(s: &str) -> Result<SafeName, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_FILE_NAME {
            return Err(NameError::TooLong(MAX_FILE_NAME));
        }
        if s == "." || s == ".." {
            return Err(NameError::DotName);
        }
        if s.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err(NameError::ControlChar);
        }
        Ok(SafeName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SafeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Check a nick: 1..=[`MAX_NICK`] bytes, no spaces or control characters.
pub fn check_nick(nick: &str) -> Result<(), NameError> {
    if nick.is_empty() {
        return Err(NameError::Empty);
    }
    if nick.len() > MAX_NICK {
        return Err(NameError::TooLong(MAX_NICK));
    }
    if nick.contains(' ') {
        return Err(NameError::SpaceInNick);
    }
    if nick.chars().any(char::is_control) {
        return Err(NameError::ControlChar);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_quotes_and_directories() {
        assert_eq!(SafeName::sanitize("my file.bin").unwrap().as_str(), "my file.bin");
        assert_eq!(SafeName::sanitize("\"my file.bin\"").unwrap().as_str(), "my file.bin");
        assert_eq!(SafeName::sanitize("../../etc/passwd").unwrap().as_str(), "passwd");
        assert_eq!(SafeName::sanitize("C:\\mirc\\down\\a b.txt").unwrap().as_str(), "a b.txt");
        assert_eq!(SafeName::sanitize("\"dir/x y\"").unwrap().as_str(), "x y");
    }

    #[test]
    fn refuses_what_is_not_a_file_name() {
        assert_eq!(SafeName::sanitize("../"), Err(NameError::Empty));
        assert_eq!(SafeName::sanitize(".."), Err(NameError::DotName));
        assert_eq!(SafeName::sanitize("a/.."), Err(NameError::DotName));
        assert_eq!(SafeName::sanitize("\"\""), Err(NameError::Empty));
        assert_eq!(SafeName::sanitize("a\0b"), Err(NameError::ControlChar));
        assert_eq!(SafeName::sanitize("a\x07b"), Err(NameError::ControlChar));
        assert_eq!(SafeName::sanitize(&"x".repeat(256)), Err(NameError::TooLong(255)));
        assert!(SafeName::new("a/b").is_err());
    }

    #[test]
    fn nicks() {
        assert!(check_nick("alice").is_ok());
        assert_eq!(check_nick(""), Err(NameError::Empty));
        assert_eq!(check_nick("a b"), Err(NameError::SpaceInNick));
        assert_eq!(check_nick(&"n".repeat(65)), Err(NameError::TooLong(64)));
    }
}
