//! Sans-IO implementation of the Direct Connect protocol as spoken by NMDC hubs and clients.
//!
//! Facts and byte layouts come from `docs/protocols/nmdc.md`, checked against real clients
//! (ncdc 1.23.1, EiskaltDC++ 2.4.2, microdc2 0.15.6). Where the PtokaX wiki page (docs/protocols/nmdc.md#old-document) and a
//! real client disagree, this crate follows the real client.
//!
//! | module        | what it does                                                            |
//! |---------------|-------------------------------------------------------------------------|
//! | [`framing`]   | split a byte stream on `\|`, switch to raw file bytes, `&#36;` escapes   |
//! | [`text`]      | protocol text as Latin-1 strings (byte-exact), UTF-8 conversion helpers  |
//! | [`lock`]      | `$Lock` → `$Key` with `/%DCNnnn%/` escapes, building our own `$Lock`     |
//! | [`command`]   | the typed [`Command`] enum: parse and encode every hub and c-c command   |
//! | [`handshake`] | client-to-client handshake machine (`$MyNick`…`$Key`, direction rule)    |
//! | [`tth`]       | Tiger Tree Hash: streaming hasher, base32 roots, `tthl` leaf data        |
//! | [`filelist`]  | `files.xml(.bz2)` writer and bounded parser                              |
//! | [`search`]    | does a shared file match a `$Search`, and the `$SR` line for a hit       |
//!
//! Nothing in this crate opens a socket, reads a clock, spawns a thread, touches a file or
//! draws a random number. Bytes come in as slices and go out as `Vec<u8>`; randomness (the
//! `$Direction` number, lock strings) comes in as arguments.
//!
//! ```
//! use omnipeer_nmdc::{Command, CommandReader};
//!
//! let mut reader = CommandReader::new();
//! reader.push(b"$MyNick bob|$Lock EXTENDEDPROTOCOLABCABCABCABCABCABC Pk=DCPLUSPLUS2.4.2|");
//! let raw = reader.next_command().unwrap().unwrap();
//! assert_eq!(Command::parse(&raw).unwrap(), Command::MyNick("bob".into()));
//! let raw = reader.next_command().unwrap().unwrap();
//! let Command::Lock { lock, .. } = Command::parse(&raw).unwrap() else { unreachable!() };
//! let key = omnipeer_nmdc::lock::lock_to_key(&lock).unwrap();
//! assert_eq!(Command::Key(key).encode()[..7], *b"$Key \x14\xd1");
//! ```
//!
//! # Text
//! NMDC has no standard charset. Every text field of a [`Command`] is a `String` holding the
//! wire bytes one char per byte (Latin-1), so parsing and encoding are byte-exact for any
//! input. Hubs and clients today mostly send UTF-8: turn such a field into real text with
//! [`text::wire_to_utf8`] and real text into a field with [`text::utf8_to_wire`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod command;
pub mod filelist;
pub mod framing;
pub mod handshake;
pub mod hub;
pub mod lock;
pub mod search;
pub mod text;
pub mod transfer;
pub mod tth;

pub use command::{Command, MyInfo, ParseError, SearchQuery, SearchResult};
pub use framing::{CommandReader, FramingError};
pub use tth::{TigerTree, Tth, TthResult};

/// Named limits on everything read from the network.
pub mod limits {
    /// Longest command (terminator excluded) the default [`crate::CommandReader`] accepts.
    /// `$MyINFO`, `$SR`, `$Search`, `$ADCGET` and chat lines fit easily.
    pub const MAX_COMMAND: usize = 64 * 1024;
    /// Longest command [`crate::Command::parse`] accepts. Hub connections may raise the
    /// reader's limit this far, since `$NickList`, `$OpList` and `$UserIP` on a big hub list
    /// every user in one command.
    pub const MAX_LIST_COMMAND: usize = 1024 * 1024;
    /// Most entries in one `$NickList`, `$OpList` or `$UserIP`.
    pub const MAX_LIST_ITEMS: usize = 100_000;
    /// Longest nick in bytes.
    pub const MAX_NICK: usize = 256;
    /// Longest lock (the bytes between `$Lock ` and ` Pk=`).
    pub const MAX_LOCK: usize = 1024;
    /// Most features in one `$Supports`.
    pub const MAX_SUPPORTS: usize = 256;
    /// Longest share path in `$Get`, `$ADCGET`, `$SR` (bytes, escapes removed).
    pub const MAX_PATH: usize = 4096;
    /// Longest decimal number (u64::MAX has 20 digits).
    pub const MAX_NUMBER_DIGITS: usize = 20;
    /// Most bytes of `tthl` data accepted (65 536 hashes; DC++ sends at most 512, ncdc 128).
    pub const MAX_TTHL: usize = 24 * 65_536;
    /// Largest compressed `files.xml.bz2` accepted.
    pub const MAX_FILELIST_COMPRESSED: usize = 64 * 1024 * 1024;
    /// Largest decompressed `files.xml`; bzip2 output is cut off here while decompressing.
    pub const MAX_FILELIST_DECOMPRESSED: usize = 512 * 1024 * 1024;
    /// Deepest directory nesting in a file list.
    pub const MAX_DEPTH: usize = 64;
    /// Most `Directory` plus `File` entries in a file list.
    pub const MAX_ENTRIES: usize = 2_000_000;
    /// Longest file or directory name in a file list, in bytes.
    pub const MAX_NAME: usize = 1024;
}
