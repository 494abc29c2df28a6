//! What the I2P SAM v3 datagram transport needs without doing IO: I2P's base64 for
//! destinations, and the parsing of the repliable datagrams a router forwards
//! (`<sender destination>[ options]\n<message>`), with the check that a SYN carries its
//! sender's own destination. The socket side lives in `omnipeer-node`.

use data_encoding::{Encoding, Specification};
use std::sync::OnceLock;

/// Smallest destination: 256-byte public key, 128-byte signing key, 3-byte certificate.
pub const MIN_DESTINATION: usize = 387;
/// Longest header line of a received datagram (destination plus SAM 3.2 port options).
pub const MAX_DATAGRAM_HEADER: usize = 4096;
/// I2P's base64: the standard alphabet with `-` and `~` for `+` and `/`, padded.
fn i2p_base64() -> &'static Encoding {
    static E: OnceLock<Encoding> = OnceLock::new();
    E.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~");
        spec.padding = Some('=');
        spec.encoding().expect("a valid base64 specification")
    })
}

/// Decodes an I2P-base64 destination.
pub fn decode_destination(b64: &str) -> Result<Vec<u8>, DestinationError> {
    let bytes = i2p_base64().decode(b64.trim().as_bytes()).map_err(|_| DestinationError::NotBase64)?;
    // A destination is at least 387 bytes (public key, signing key, certificate header).
    if bytes.len() < MIN_DESTINATION || bytes.len() > MAX_DATAGRAM_HEADER {
        return Err(DestinationError::Length(bytes.len()));
    }
    Ok(bytes)
}

/// Encodes a destination in I2P base64.
pub fn encode_destination(bytes: &[u8]) -> String {
    i2p_base64().encode(bytes)
}

/// Why a destination string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DestinationError {
    /// Not I2P base64 (which uses `-` and `~` for `+` and `/`).
    #[error("not an I2P base64 destination")]
    NotBase64,
    /// Too short or too long for a destination.
    #[error("an I2P destination is 387..4096 bytes, this one is {0}")]
    Length(usize),
}

/// Why a received datagram was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatagramError {
    /// No `\n` within [`MAX_DATAGRAM_HEADER`] bytes.
    #[error("no header line")]
    NoHeader,
    /// The header is not UTF-8 or names no sender.
    #[error("bad header line")]
    BadHeader,
    /// The message is longer than a ministreaming message can be.
    #[error("message of {0} bytes is over the limit")]
    TooLong(usize),
    /// A SYN whose destination payload is not the sender the router vouches for.
    #[error("SYN destination is not its sender's")]
    SpoofedSyn,
}

/// Splits a repliable datagram from the router, `<sender destination>[ options]\n<message>`,
/// into the sender (I2P base64) and the ministreaming message, and checks that a SYN
/// carries its sender's own destination.
pub fn parse_datagram(d: &[u8]) -> Result<(&str, &[u8]), DatagramError> {
    let nl = d.iter().take(MAX_DATAGRAM_HEADER).position(|&b| b == b'\n').ok_or(DatagramError::NoHeader)?;
    let header = std::str::from_utf8(&d[..nl]).map_err(|_| DatagramError::BadHeader)?;
    let sender = header.split_whitespace().next().ok_or(DatagramError::BadHeader)?;
    let msg = &d[nl + 1..];
    if msg.len() > crate::MAX_MESSAGE {
        return Err(DatagramError::TooLong(msg.len()));
    }
    if let [0xA1, _, _, _, dest @ ..] = msg {
        match decode_destination(sender) {
            Ok(d) if d == dest => {}
            _ => return Err(DatagramError::SpoofedSyn),
        }
    }
    Ok((sender, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_parse_and_spoofed_syns_are_dropped() {
        let me: Vec<u8> = (0..391u32).map(|i| i as u8).collect();
        let other: Vec<u8> = (0..391u32).map(|i| (i + 1) as u8).collect();
        let b64 = i2p_base64().encode(&me);
        let mut d = format!("{b64} FROM_PORT=0 TO_PORT=0\n").into_bytes();
        d.extend_from_slice(&[0x50, 0, 0, 1, b'h', b'i']);
        assert_eq!(parse_datagram(&d), Ok((b64.as_str(), &[0x50, 0, 0, 1, b'h', b'i'][..])));
        let mut syn = format!("{b64}\n").into_bytes();
        syn.extend_from_slice(&[0xA1, 0, 0, 5]);
        let good = [syn.clone(), me.clone()].concat();
        assert!(parse_datagram(&good).is_ok());
        let spoofed = [syn, other].concat();
        assert_eq!(parse_datagram(&spoofed), Err(DatagramError::SpoofedSyn));
        assert_eq!(parse_datagram(b"no newline"), Err(DatagramError::NoHeader));
        assert_eq!(parse_datagram(b"\n\x50\0\0\x01"), Err(DatagramError::BadHeader));
        let long = [format!("{b64}\n").into_bytes(), vec![0x50; crate::MAX_MESSAGE + 1]].concat();
        assert!(matches!(parse_datagram(&long), Err(DatagramError::TooLong(_))));
    }

    #[test]
    fn destinations_use_i2p_base64() {
        let raw: Vec<u8> = (0..391u32).map(|i| (i * 7 + 3) as u8).collect();
        let b64 = i2p_base64().encode(&raw);
        assert!(!b64.contains('+') && !b64.contains('/'));
        assert!(b64.contains('-') || b64.contains('~'));
        assert_eq!(decode_destination(&b64).unwrap(), raw);
        assert!(decode_destination("AAAA").is_err(), "too short for a destination");
        assert!(decode_destination(&b64.replace('-', "+")).is_err(), "standard base64 is not I2P base64");
    }
}
