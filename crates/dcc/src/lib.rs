//! Sans-IO implementation of mIRC's DCC Server protocol.
//!
//! The protocol (mIRC help, "DCC Server Protocol"; facts and conventions in
//! `docs/protocols/dcc.md#handshake`) runs one service per TCP connection. The client speaks first with
//! one text line, the server answers with one line, and the service runs on the same socket:
//!
//! | client                          | server                         | then                      |
//! |---------------------------------|--------------------------------|---------------------------|
//! | `100 clientnick`                | `101 servernick`               | chat lines both ways      |
//! | `110 clientnick`                | `111 servernick`               | fserve command lines      |
//! | `120 clientnick size name`      | `121 servernick resumepos`     | file bytes client→server  |
//! | `130 clientnick name`           | `131 servernick size`          | client: `132 nick pos`    |
//! | anything                        | `150 unavailable` / `151 rejected` | close                 |
//!
//! Nothing in this crate touches a socket, a clock or a file. Time comes in as an
//! [`std::time::Instant`] argument, bytes come in as slices, and what to send comes out of
//! `poll_output`. The [`fserve`] session reads the shared tree through the [`fserve::ShareView`]
//! trait that the runtime implements over its share index.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ack;
pub mod client;
pub mod fserve;
pub mod line;
pub mod message;
pub mod name;
pub mod server;

pub use ack::{AckDecoder, FileReceiver, FileSender};
pub use line::{LineError, LineReader};
pub use message::{Message, ParseError};
pub use name::{NameError, SafeName};

/// Named limits on everything read from the network.
pub mod limits {
    /// Longest handshake or fserve command line, terminator included.
    pub const MAX_LINE: usize = 1024;
    /// Longest chat line (mIRC's own limit is lower; this leaves room for formatting codes).
    pub const MAX_CHAT_LINE: usize = 8192;
    /// Longest nick in bytes.
    pub const MAX_NICK: usize = 64;
    /// Longest file name in bytes (one path component, after stripping directories).
    pub const MAX_FILE_NAME: usize = 255;
    /// Longest decimal number (u64::MAX has 20 digits).
    pub const MAX_NUMBER_DIGITS: usize = 20;
    /// Largest incoming send (`120 nick size name`) accepted by default (the node's
    /// `[dcc].max_incoming_bytes`): 64 GiB, above a dual-layer Blu-ray image (50 GB) or
    /// any single file people commonly pass around over DCC, yet far below the 2^64 − 1 a
    /// lying client can announce. Larger sends get `151 rejected`; so does a send that
    /// needs more room than the incoming folder's file system has free.
    pub const DEFAULT_MAX_INCOMING_BYTES: u64 = 64 << 30;
}

/// What kind of service a connection asks for (the first digit pair of its opening code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `100`/`101`: DCC chat.
    Chat,
    /// `110`/`111`: file server session.
    Fserve,
    /// `120`/`121`: the client sends a file to the server.
    Send,
    /// `130`/`131`/`132`: the client gets a file it asked for in an fserve session.
    Get,
}

impl Service {
    /// The name used in configuration and on the command line (`--services chat,send,fserve`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Chat => "chat",
            Service::Fserve => "fserve",
            Service::Send => "send",
            Service::Get => "get",
        }
    }
}

/// Which services a server offers. Get belongs to fserve: it is only used to fetch files
/// requested in an fserve session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    /// Offer DCC chat.
    pub chat: bool,
    /// Accept incoming file sends.
    pub send: bool,
    /// Offer the file server (and the Get protocol it uses).
    pub fserve: bool,
}

impl Services {
    /// Every service on.
    pub const ALL: Services = Services { chat: true, send: true, fserve: true };

    /// Whether the service asked for is switched on.
    pub fn offers(&self, s: Service) -> bool {
        match s {
            Service::Chat => self.chat,
            Service::Send => self.send,
            Service::Fserve | Service::Get => self.fserve,
        }
    }

    /// Parse a comma-separated list such as `chat,send,fserve` (empty = none).
    pub fn parse_list(list: &str) -> Result<Services, String> {
        let mut s = Services { chat: false, send: false, fserve: false };
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "chat" => s.chat = true,
                "send" => s.send = true,
                "fserve" => s.fserve = true,
                other => return Err(format!("unknown DCC service '{other}' (expected chat, send or fserve)")),
            }
        }
        Ok(s)
    }
}

impl Default for Services {
    fn default() -> Self {
        Services::ALL
    }
}

/// Decode protocol text: UTF-8 when it is valid (mIRC 7 and later), else Latin-1, so no
/// byte is ever lost or replaced.
pub fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}
