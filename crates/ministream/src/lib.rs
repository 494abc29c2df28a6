//! I2P ministreaming (the 2004 `apps/ministreaming` protocol), sans-IO.
//!
//! Every ministreaming message is one transport message:
//!
//! ```text
//! +--------+----------------+------------------+
//! | type 1 | id 3 (opaque)  | payload 0..n     |
//! +--------+----------------+------------------+
//! ```
//!
//! Client→server types are `A0` data, `A1` SYN, `A2` close; server→client types are `50`
//! data, `51` ACK, `52` close; a lone `FF` byte is a ping. Every message except the SYN
//! carries the id chosen by its receiver. [`message`] encodes and decodes messages;
//! [`manager::Manager`] runs many streams between one pair of destinations (one
//! transport connection). The machine does no IO, reads no clock and draws no random
//! numbers: time comes in as arguments and ids from a caller-supplied generator.
//!
//! The protocol has no sequence numbers, acknowledgements or window: it needs a reliable,
//! ordered message pipe (the loopback transport is one TCP connection, each message
//! framed by a `u32` big-endian length; see [`frame`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod frame;
pub mod manager;
pub mod message;
pub mod sam;

pub use manager::{Config, Event, Manager, Output, ReadOutcome, Role, StreamId};
pub use message::{DecodeError, Id, Message};

/// Most payload bytes in one data message (the original implementation's 32 KiB).
pub const MAX_PAYLOAD: usize = 32 * 1024;

/// Longest message accepted: header plus [`MAX_PAYLOAD`] (also bounds SYN destinations).
pub const MAX_MESSAGE: usize = 4 + MAX_PAYLOAD;
