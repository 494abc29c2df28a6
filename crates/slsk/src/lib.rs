//! Sans-IO core of the Soulseek protocol: framing, every server, peer-init, peer and
//! distributed message, share lists, login and search rules.
//!
//! Facts and byte layouts come from `docs/protocols/soulseek.md`, which were checked against
//! Nicotine+ 3.3.11 (`pynicotine.slskmessages`) and aioslsk 1.7.1. Where the 2003 document (docs/protocols/soulseek.md#old-document)
//! document and the real clients disagree, this crate follows the real clients: **all
//! integers are little-endian**, Login has five fields, PeerInit has no `300` constant.
//!
//! | module            | what it does                                                        |
//! |-------------------|---------------------------------------------------------------------|
//! | [`framing`]       | [`FrameReader`] for `u32 len, u32 code` and `u32 len, u8 code` frames, raw `F` bytes |
//! | [`wire`]          | [`Reader`]/[`Writer`] for `u8 u16 u32 u64 i32 bool str bytes ip`   |
//! | [`server`]        | [`ServerRequest`] (client → server), [`ServerResponse`] (server → client) |
//! | [`session`]       | [`session::ClientSession`]: the client over the server and its peer connections, sans-IO |
//! | [`peer`]          | [`PeerInit`] (first frame on a peer socket), [`PeerMessage`] (`P`)  |
//! | [`distributed`]   | [`DistributedMessage`] (`D`, and inside EmbeddedMessage 93)        |
//! | [`shares`]        | [`SharedFile`] / [`SharedDirectory`] entries of share lists and results |
//! | [`zlib`]          | deflate, and inflate with a hard output cap                         |
//! | [`login`]         | md5 hashes, user-name and room-name rules                           |
//! | [`search`]        | does a query match a path; excluded phrases                         |
//!
//! Nothing in this crate opens a socket, reads a clock, spawns a thread, touches a file or
//! draws a random number. Every length read from the network is checked against a limit in
//! [`limits`] before anything is allocated for it; decoders return errors, never panic.
//!
//! ```
//! use omnipeer_slsk::{FrameKind, FrameReader, ServerRequest};
//!
//! let mut reader = FrameReader::new(FrameKind::Server);
//! reader.push(&ServerRequest::FileSearch { token: 1234, query: "galway".into() }.encode());
//! let frame = reader.next_frame().unwrap().unwrap();
//! assert_eq!(
//!     ServerRequest::from_frame(&frame).unwrap(),
//!     ServerRequest::FileSearch { token: 1234, query: "galway".into() }
//! );
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod central;
pub mod distributed;
pub mod framing;
pub mod login;
pub mod peer;
pub mod search;
pub mod server;
pub mod session;
pub mod shares;
pub mod tree;
pub mod wire;
pub mod zlib;

pub use distributed::DistributedMessage;
pub use framing::{Frame, FrameError, FrameKind, FrameReader};
pub use peer::{PeerInit, PeerMessage, SearchResponse, SharedFileList, TransferDirection};
pub use peer::{TransferReply, UserInfo};
pub use server::{ServerRequest, ServerResponse, UserStats};
pub use shares::{FileAttribute, SharedDirectory, SharedFile};
pub use wire::{DecodeError, Reader, Writer};

/// Named limits on everything read from the network.
pub mod limits {
    /// Largest server or `P` frame (`len` field). Compressed share lists are the big ones;
    /// Nicotine+ allows 448 MiB for those, we allow 64 MiB (a few million files).
    pub const MAX_FRAME: usize = 64 * 1024 * 1024;
    /// Largest peer-init frame (Nicotine+: 16 KiB).
    pub const MAX_INIT_FRAME: usize = 16 * 1024;
    /// Largest distributed frame (Nicotine+: 16 KiB).
    pub const MAX_DISTRIBUTED_FRAME: usize = 16 * 1024;
    /// Longest `str` field, in bytes.
    pub const MAX_STRING: usize = 1024 * 1024;
    /// Longest `bytes` field (the user-info picture).
    pub const MAX_BYTES: usize = 16 * 1024 * 1024;
    /// Most items in one list (users, rooms, files, directories, …). Counts are also
    /// checked against the bytes left, so a list never allocates more than its body holds.
    pub const MAX_LIST_ITEMS: usize = 4_000_000;
    /// Most attributes on one file (real clients send at most 5).
    pub const MAX_FILE_ATTRIBUTES: usize = 256;
    /// Largest inflated search result (9) or folder contents (37) body — Nicotine+'s cap.
    pub const MAX_DECOMPRESSED: usize = 128 * 1024 * 1024;
    /// Largest inflated shared file list (5).
    pub const MAX_SHARE_LIST_DECOMPRESSED: usize = 512 * 1024 * 1024;
}

/// The connection type named in PeerInit and ConnectToPeer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerConnectionType {
    /// `P`: peer messages.
    P,
    /// `F`: file transfer (raw bytes after the init frame).
    F,
    /// `D`: distributed network.
    D,
}

impl PeerConnectionType {
    /// The wire string: `"P"`, `"F"` or `"D"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerConnectionType::P => "P",
            PeerConnectionType::F => "F",
            PeerConnectionType::D => "D",
        }
    }

    /// From the wire string (exact, case-sensitive); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "P" => Some(PeerConnectionType::P),
            "F" => Some(PeerConnectionType::F),
            "D" => Some(PeerConnectionType::D),
            _ => None,
        }
    }

    /// How frames on such a connection look after the init frame; `None` for `F`, which
    /// carries raw bytes.
    pub fn frame_kind(self) -> Option<FrameKind> {
        match self {
            PeerConnectionType::P => Some(FrameKind::Peer),
            PeerConnectionType::D => Some(FrameKind::Distributed),
            PeerConnectionType::F => None,
        }
    }
}

impl std::fmt::Display for PeerConnectionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's status as sent in GetUserStatus, WatchUser, JoinRoom, SetStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// 0.
    Offline,
    /// 1.
    Away,
    /// 2.
    Online,
    /// Any other value, kept.
    Other(u32),
}

impl From<u32> for UserStatus {
    fn from(v: u32) -> Self {
        match v {
            0 => UserStatus::Offline,
            1 => UserStatus::Away,
            2 => UserStatus::Online,
            v => UserStatus::Other(v),
        }
    }
}

impl From<UserStatus> for u32 {
    fn from(s: UserStatus) -> u32 {
        match s {
            UserStatus::Offline => 0,
            UserStatus::Away => 1,
            UserStatus::Online => 2,
            UserStatus::Other(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_types() {
        for t in [PeerConnectionType::P, PeerConnectionType::F, PeerConnectionType::D] {
            assert_eq!(PeerConnectionType::parse(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(PeerConnectionType::parse("p"), None);
        assert_eq!(PeerConnectionType::parse(""), None);
        assert_eq!(PeerConnectionType::P.frame_kind(), Some(FrameKind::Peer));
        assert_eq!(PeerConnectionType::D.frame_kind(), Some(FrameKind::Distributed));
        assert_eq!(PeerConnectionType::F.frame_kind(), None);
    }

    #[test]
    fn statuses() {
        for v in 0..5u32 {
            assert_eq!(u32::from(UserStatus::from(v)), v);
        }
        assert_eq!(UserStatus::from(2), UserStatus::Online);
        assert_eq!(UserStatus::from(7), UserStatus::Other(7));
    }
}
