//! Distributed-network messages, framed `u32 len, u8 code, body` on `D` connections and
//! carried inside the server's EmbeddedMessage(93) without the length.

use crate::framing::{frame_u8, Frame};
use crate::wire::{DecodeError, Reader, Result, Writer};

/// The constant first field of DistribSearch: 49, ASCII `'1'`.
pub const DISTRIB_SEARCH_UNKNOWN: u32 = 49;

/// A message on a distributed (`D`) connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistributedMessage {
    /// 0 empty (deprecated).
    Ping,
    /// 3 `u32 unknown(=49), str user, u32 token, str query`. Any first field other than 49
    /// is refused with [`DecodeError::Invalid`].
    Search {
        /// Searcher.
        user: String,
        /// Token for the results.
        token: u32,
        /// Query.
        query: String,
    },
    /// 4 `i32 level`.
    BranchLevel {
        /// Sender's level in the tree (0 = branch root).
        level: i32,
    },
    /// 5 `str root`.
    BranchRoot {
        /// Branch root's user name.
        root: String,
    },
    /// 7 `u32 depth` (obsolete).
    ChildDepth {
        /// Depth.
        depth: u32,
    },
    /// 93 `u8 code` + the embedded message's body to the end of the frame (deprecated).
    ///
    /// Older SoulseekQt wrote the outer code 93 as a `u32`, so the body starts with
    /// `00 00 00` before the real code byte; like Nicotine+, decoding skips those three
    /// bytes when they are zero and more bytes follow.
    EmbeddedMessage {
        /// Embedded distributed code.
        code: u8,
        /// Embedded body.
        body: Vec<u8>,
    },
    /// Any other code, body kept as is.
    Unknown {
        /// Code.
        code: u8,
        /// Body.
        body: Vec<u8>,
    },
}

impl DistributedMessage {
    /// The message code.
    pub fn code(&self) -> u8 {
        match self {
            DistributedMessage::Ping => 0,
            DistributedMessage::Search { .. } => 3,
            DistributedMessage::BranchLevel { .. } => 4,
            DistributedMessage::BranchRoot { .. } => 5,
            DistributedMessage::ChildDepth { .. } => 7,
            DistributedMessage::EmbeddedMessage { .. } => 93,
            DistributedMessage::Unknown { code, .. } => *code,
        }
    }

    /// Decode a body with this code.
    pub fn decode(code: u8, body: &[u8]) -> Result<Self> {
        let r = &mut Reader::new(body);
        Ok(match code {
            0 => DistributedMessage::Ping,
            3 => {
                let unknown = r.u32()?;
                if unknown != DISTRIB_SEARCH_UNKNOWN {
                    return Err(DecodeError::Invalid { field: "DistribSearch first field", value: unknown as u64 });
                }
                DistributedMessage::Search { user: r.str()?, token: r.u32()?, query: r.str()? }
            }
            4 => DistributedMessage::BranchLevel { level: r.i32()? },
            5 => DistributedMessage::BranchRoot { root: r.str()? },
            7 => DistributedMessage::ChildDepth { depth: r.u32()? },
            93 => {
                if r.remaining() >= 4 && r.peek_rest()[..3] == [0, 0, 0] {
                    r.take(3)?;
                }
                let code = r.u8()?;
                // Code 0 (Ping) has no body: a body after it can only be the old SoulseekQt
                // padding again, which would not survive a round trip; refuse it.
                if code == 0 && r.remaining() > 0 {
                    return Err(DecodeError::Invalid {
                        field: "embedded Ping body length",
                        value: r.remaining() as u64,
                    });
                }
                DistributedMessage::EmbeddedMessage { code, body: r.rest().to_vec() }
            }
            _ => DistributedMessage::Unknown { code, body: body.to_vec() },
        })
    }

    /// Decode a frame read with [`crate::FrameKind::Distributed`].
    pub fn from_frame(frame: &Frame) -> Result<Self> {
        let code = u8::try_from(frame.code).map_err(|_| DecodeError::UnknownCode(frame.code))?;
        Self::decode(code, &frame.body)
    }

    /// The message an EmbeddedMessage (server 93 or distributed 93) carries.
    pub fn unembed(code: u8, body: &[u8]) -> Result<Self> {
        Self::decode(code, body)
    }

    /// The body (everything after the code).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            DistributedMessage::Ping => {}
            DistributedMessage::Search { user, token, query } => {
                w.u32(DISTRIB_SEARCH_UNKNOWN).str(user).u32(*token).str(query);
            }
            DistributedMessage::BranchLevel { level } => {
                w.i32(*level);
            }
            DistributedMessage::BranchRoot { root } => {
                w.str(root);
            }
            DistributedMessage::ChildDepth { depth } => {
                w.u32(*depth);
            }
            DistributedMessage::EmbeddedMessage { code, body } => {
                w.u8(*code).raw(body);
            }
            DistributedMessage::Unknown { body, .. } => {
                w.raw(body);
            }
        }
        w.into_inner()
    }

    /// The whole frame: `u32 len, u8 code, body`.
    pub fn encode(&self) -> Vec<u8> {
        frame_u8(self.code(), &self.encode_body())
    }
}

/// Every code [`DistributedMessage::decode`] knows.
pub const CODES: &[u8] = &[0, 3, 4, 5, 7, 93];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_first_field_must_be_49() {
        let mut body = DistributedMessage::Search { user: "bob".into(), token: 1, query: "q".into() }.encode_body();
        assert_eq!(&body[..4], b"1\0\0\0");
        body[0] = 50;
        assert_eq!(
            DistributedMessage::decode(3, &body),
            Err(DecodeError::Invalid { field: "DistribSearch first field", value: 50 })
        );
    }

    #[test]
    fn embedded_with_u32_outer_code() {
        // Older SoulseekQt: outer code 93 as u32 → the body starts with 00 00 00.
        let inner = DistributedMessage::BranchRoot { root: "r".into() }.encode_body();
        let mut body = vec![0, 0, 0, 5];
        body.extend_from_slice(&inner);
        let m = DistributedMessage::decode(93, &body).unwrap();
        assert_eq!(m, DistributedMessage::EmbeddedMessage { code: 5, body: inner.clone() });
        let DistributedMessage::EmbeddedMessage { code, body } = m else { unreachable!() };
        assert_eq!(
            DistributedMessage::unembed(code, &body).unwrap(),
            DistributedMessage::BranchRoot { root: "r".into() }
        );
    }

    #[test]
    fn negative_branch_level() {
        let m = DistributedMessage::BranchLevel { level: -1 };
        assert_eq!(m.encode(), [5, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(DistributedMessage::decode(4, &m.encode()[5..]).unwrap(), m);
    }
}
