//! Ministreaming messages.
//!
//! ```text
//! A0 <server id 3> data...        client -> server data
//! A1 <client id 3> destination... client -> server SYN (payload: the client's destination)
//! A2 <server id 3>                client -> server close
//! 50 <client id 3> data...        server -> client data
//! 51 <client id 3> <server id 3>  server -> client ACK (payload exactly 3 bytes)
//! 52 <client id 3> [server id 3]  server -> client close (an extra 3-byte id tolerated)
//! FF                              ping / chaff, one byte, ignored
//! ```

use crate::MAX_MESSAGE;
use std::fmt;

/// A 3-byte stream id; never `00 00 00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(u32);

impl Id {
    /// The largest id.
    pub const MAX: u32 = 0x00FF_FFFF;

    /// An id from its value; `None` for 0 or values above 3 bytes.
    pub fn new(v: u32) -> Option<Id> {
        (v != 0 && v <= Self::MAX).then_some(Id(v))
    }

    /// The value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The three wire bytes (big-endian; ids are opaque, so any fixed order works).
    pub fn to_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    /// An id from three wire bytes; `None` for `00 00 00`.
    pub fn from_bytes(b: [u8; 3]) -> Option<Id> {
        Id::new(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

/// Message type bytes.
pub mod types {
    /// Client -> server data.
    pub const CLIENT_DATA: u8 = 0xA0;
    /// Client -> server SYN.
    pub const SYN: u8 = 0xA1;
    /// Client -> server close.
    pub const CLIENT_CLOSE: u8 = 0xA2;
    /// Server -> client data.
    pub const SERVER_DATA: u8 = 0x50;
    /// Server -> client ACK.
    pub const ACK: u8 = 0x51;
    /// Server -> client close.
    pub const SERVER_CLOSE: u8 = 0x52;
    /// One-byte ping.
    pub const PING: u8 = 0xFF;
}

/// One ministreaming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `A0`: data for the server's stream `server_id`.
    ClientData {
        /// The server's id of the stream.
        server_id: Id,
        /// The data.
        data: Vec<u8>,
    },
    /// `A1`: open a stream; the client chose `client_id`.
    Syn {
        /// The client's new id.
        client_id: Id,
        /// The client's destination (32-byte key on the loopback transport).
        destination: Vec<u8>,
    },
    /// `A2`: the client closes the server's stream `server_id`.
    ClientClose {
        /// The server's id of the stream.
        server_id: Id,
    },
    /// `50`: data for the client's stream `client_id`.
    ServerData {
        /// The client's id of the stream.
        client_id: Id,
        /// The data.
        data: Vec<u8>,
    },
    /// `51`: the server accepted the SYN of `client_id` and chose `server_id`.
    Ack {
        /// The client's id of the stream.
        client_id: Id,
        /// The server's new id.
        server_id: Id,
    },
    /// `52`: the server closes (or refuses) the client's stream `client_id`.
    ServerClose {
        /// The client's id of the stream.
        client_id: Id,
        /// The 3-byte payload the original sent when refusing (kept for round trips).
        extra: Option<[u8; 3]>,
    },
    /// `FF`: ping, ignored.
    Ping,
    /// A type this implementation does not know; dropped by the manager.
    Unknown {
        /// The type byte.
        ty: u8,
        /// The id bytes.
        id: [u8; 3],
        /// The payload.
        payload: Vec<u8>,
    },
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the 4-byte header (and not a ping).
    #[error("message of {0} bytes is shorter than its 4-byte header")]
    TooShort(usize),
    /// Longer than [`MAX_MESSAGE`].
    #[error("message of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        /// The length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The id (or the id in an ACK) is `00 00 00`.
    #[error("id 000000 is reserved")]
    ZeroId,
    /// An ACK whose payload is not exactly 3 bytes.
    #[error("ACK payload of {0} bytes (must be 3)")]
    BadAck(usize),
    /// A close with a payload other than none or 3 bytes.
    #[error("close payload of {0} bytes (must be 0 or 3)")]
    BadClose(usize),
}

impl Message {
    /// Decodes exactly one message (the whole transport message).
    pub fn decode(b: &[u8]) -> Result<Message, DecodeError> {
        if b == [types::PING] {
            return Ok(Message::Ping);
        }
        if b.len() < 4 {
            return Err(DecodeError::TooShort(b.len()));
        }
        if b.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLong { len: b.len(), limit: MAX_MESSAGE });
        }
        let ty = b[0];
        let raw = [b[1], b[2], b[3]];
        let payload = &b[4..];
        let known = matches!(
            ty,
            types::CLIENT_DATA
                | types::SYN
                | types::CLIENT_CLOSE
                | types::SERVER_DATA
                | types::ACK
                | types::SERVER_CLOSE
        );
        if !known {
            return Ok(Message::Unknown { ty, id: raw, payload: payload.to_vec() });
        }
        let id = Id::from_bytes(raw).ok_or(DecodeError::ZeroId)?;
        Ok(match ty {
            types::CLIENT_DATA => Message::ClientData { server_id: id, data: payload.to_vec() },
            types::SYN => Message::Syn { client_id: id, destination: payload.to_vec() },
            types::CLIENT_CLOSE => {
                if !payload.is_empty() && payload.len() != 3 {
                    return Err(DecodeError::BadClose(payload.len()));
                }
                Message::ClientClose { server_id: id }
            }
            types::SERVER_DATA => Message::ServerData { client_id: id, data: payload.to_vec() },
            types::ACK => {
                let p: [u8; 3] = payload.try_into().map_err(|_| DecodeError::BadAck(payload.len()))?;
                let server_id = Id::from_bytes(p).ok_or(DecodeError::ZeroId)?;
                Message::Ack { client_id: id, server_id }
            }
            _ => {
                let extra = match payload.len() {
                    0 => None,
                    3 => Some([payload[0], payload[1], payload[2]]),
                    n => return Err(DecodeError::BadClose(n)),
                };
                Message::ServerClose { client_id: id, extra }
            }
        })
    }

    /// Encodes the message (without transport framing).
    pub fn encode(&self) -> Vec<u8> {
        let (ty, id, payload): (u8, [u8; 3], &[u8]) = match self {
            Message::Ping => return vec![types::PING],
            Message::ClientData { server_id, data } => (types::CLIENT_DATA, server_id.to_bytes(), data),
            Message::Syn { client_id, destination } => (types::SYN, client_id.to_bytes(), destination),
            Message::ClientClose { server_id } => (types::CLIENT_CLOSE, server_id.to_bytes(), &[]),
            Message::ServerData { client_id, data } => (types::SERVER_DATA, client_id.to_bytes(), data),
            Message::Ack { client_id, server_id } => {
                let mut v = vec![types::ACK];
                v.extend_from_slice(&client_id.to_bytes());
                v.extend_from_slice(&server_id.to_bytes());
                return v;
            }
            Message::ServerClose { client_id, extra } => {
                (types::SERVER_CLOSE, client_id.to_bytes(), extra.as_ref().map_or(&[][..], |e| &e[..]))
            }
            Message::Unknown { ty, id, payload } => (*ty, *id, payload),
        };
        let mut v = Vec::with_capacity(4 + payload.len());
        v.push(ty);
        v.extend_from_slice(&id);
        v.extend_from_slice(payload);
        v
    }
}
