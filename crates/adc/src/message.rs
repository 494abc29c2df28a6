//! The ADC message codec: one line of text, its header, its parameters and their escapes
//! (docs/protocols/adc.md#syntax), plus the line splitter that cuts a byte stream into
//! lines under a named length limit.
//!
//! ```text
//! BINF AAAB IDKMJ… PDJ3K… NIalice SS12345 SUTCP4,UDP4
//! ^^^^ ^^^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
//! type+command, the sender's SID, parameters (named: two-letter prefix)
//! DMSG AAAB AAAC hello\sthere PMAAAB
//! FSCH AAAB +TCP4-NAT0 ANfoo TOtoken
//! ```
//!
//! A message is `<type><CMD>` (type one of `B C D E F H I U`, command three characters,
//! the first a letter), then what the type needs (the sender's SID, the target SID, a
//! feature selector, the sender's CID), then parameters separated by single spaces, then
//! `\n`. Inside a parameter a space is `\s`, a newline `\n` and a backslash `\\`; any
//! other escape is malformed. Which parameters are positional and which named is the
//! command's business: this codec keeps them in order as unescaped strings, and
//! [`Message::named`] looks up named ones after a command's positional ones.
//!
//! Nothing here panics on input: every decoder returns a [`ParseError`] or
//! [`LineError`], and every length is checked against a limit below.

use data_encoding::BASE32_NOPAD;
use omnipeer_nmdc::framing::{FrameReader, FrameTooLong};
use std::fmt;
use thiserror::Error;

/// Longest line (terminator excluded) a hub accepts from a connection that has not yet
/// sent its `BINF` (`HSUP` and `BINF` are a few hundred bytes: ncdc's BINF ~300, DC++'s
/// with a keyprint ~400), so a connection that never identifies holds at most this much.
pub const MAX_LINE_LOGIN: usize = 8 * 1024;
/// Longest line accepted once a client is identified (a `BINF` update, a chat line, a
/// `BSCH` with many terms, a `DRES`); uhub's default `max_recv_buffer` is 4 KiB, DC++'s
/// own limit is far higher, 64 KiB covers both.
pub const MAX_LINE: usize = 64 * 1024;
/// Most parameters in one message (a `BINF` has ~20, a `BSCH` one per search term).
pub const MAX_PARAMS: usize = 1024;
/// Most feature selectors (`+TCP4`, `-NAT0`) in one `F` message header.
pub const MAX_FEATURE_SELECTORS: usize = 32;
/// Characters in a base32 SID.
pub const SID_LEN: usize = 4;
/// Bytes in a CID or PID (a Tiger hash).
pub const HASH_LEN: usize = 24;
/// Characters in a base32 CID or PID.
pub const HASH_BASE32_LEN: usize = 39;

/// Why a line is not a valid ADC message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Not UTF-8.
    #[error("message is not UTF-8")]
    NotUtf8,
    /// Shorter than a type and a command.
    #[error("message too short")]
    TooShort,
    /// The first byte is not one of `B C D E F H I U`.
    #[error("unknown message type {0:?}")]
    BadType(char),
    /// The command name is not a letter and two letters or digits.
    #[error("bad command name")]
    BadCommand,
    /// A SID is not four base32 characters.
    #[error("bad SID {0:?}")]
    BadSid(String),
    /// A CID is not 39 base32 characters.
    #[error("bad CID")]
    BadCid,
    /// An `F` message's feature selector is malformed.
    #[error("bad feature selector {0:?}")]
    BadFeatures(String),
    /// The header lacks a field its type needs.
    #[error("message header incomplete")]
    MissingHeader,
    /// A backslash not followed by `s`, `n` or `\`.
    #[error("bad escape")]
    BadEscape,
    /// More than [`MAX_PARAMS`] parameters.
    #[error("more than {MAX_PARAMS} parameters")]
    TooManyParams,
}

/// A session id: 20 bits the hub gives each client, four base32 characters on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(u32);

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b32_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'2'..=b'7' => Some(u32::from(c - b'2') + 26),
        _ => None,
    }
}

impl Sid {
    /// Largest SID value (20 bits).
    pub const MAX: u32 = (1 << 20) - 1;

    /// The SID with this value (only the low 20 bits are used).
    pub fn new(v: u32) -> Sid {
        Sid(v & Self::MAX)
    }

    /// Its value.
    pub fn value(self) -> u32 {
        self.0
    }

    /// Parse four base32 characters (upper case only, as the spec requires).
    pub fn parse(s: &str) -> Result<Sid, ParseError> {
        let b = s.as_bytes();
        if b.len() != SID_LEN {
            return Err(ParseError::BadSid(s.chars().take(8).collect()));
        }
        let mut v = 0;
        for &c in b {
            v = (v << 5) | b32_value(c).ok_or_else(|| ParseError::BadSid(s.chars().take(8).collect()))?;
        }
        Ok(Sid(v))
    }

    /// The four characters.
    pub fn to_chars(self) -> [u8; SID_LEN] {
        let mut out = [0u8; SID_LEN];
        for (i, o) in out.iter_mut().enumerate() {
            *o = B32[((self.0 >> (5 * (3 - i))) & 31) as usize];
        }
        out
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.to_chars();
        f.write_str(std::str::from_utf8(&c).expect("base32 is ASCII"))
    }
}

/// A 24-byte Tiger hash in base32: a client's CID, or its secret PID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(pub [u8; HASH_LEN]);

/// A client's private id: secret, sent only to the hub, whose Tiger hash is the CID.
pub type Pid = Cid;

impl Cid {
    /// Parse 39 base32 characters (upper case only).
    pub fn parse(s: &str) -> Result<Cid, ParseError> {
        if s.len() != HASH_BASE32_LEN || s.bytes().any(|c| b32_value(c).is_none()) {
            return Err(ParseError::BadCid);
        }
        let v = BASE32_NOPAD.decode(s.as_bytes()).map_err(|_| ParseError::BadCid)?;
        let mut out = [0u8; HASH_LEN];
        if v.len() != HASH_LEN {
            return Err(ParseError::BadCid);
        }
        out.copy_from_slice(&v);
        // 39 characters hold 195 bits: the last 3 must be zero for the text to be canonical
        // (else two texts would name one CID, and a spoofer could pass a different string).
        if BASE32_NOPAD.encode(&out) != s {
            return Err(ParseError::BadCid);
        }
        Ok(Cid(out))
    }

    /// The CID belonging to this PID: Tiger(PID) (docs/protocols/adc.md#identity).
    pub fn from_pid(pid: &Pid) -> Cid {
        Cid(omnipeer_nmdc::tth::tiger(&pid.0))
    }

    /// The 39 base32 characters.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base32())
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({})", self.to_base32())
    }
}

/// The answer to a hub's `IGPA` challenge: base32 of Tiger(password bytes ‖ challenge
/// bytes), as the `HPAS` parameter (docs/protocols/adc.md#login).
pub fn password_hash(password: &str, challenge: &[u8]) -> String {
    let mut data = Vec::with_capacity(password.len() + challenge.len());
    data.extend_from_slice(password.as_bytes());
    data.extend_from_slice(challenge);
    BASE32_NOPAD.encode(&omnipeer_nmdc::tth::tiger(&data))
}

/// Base32 without padding (the alphabet of SIDs, CIDs, TTHs and `GPA` challenges).
pub fn base32(data: &[u8]) -> String {
    BASE32_NOPAD.encode(data)
}

/// Decode base32 without padding (upper case); `None` if malformed.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    BASE32_NOPAD.decode(s.as_bytes()).ok()
}

/// A four-character feature name (`BASE`, `TIGR`, `TCP4`, `NAT0`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Feature(pub [u8; 4]);

impl Feature {
    /// Parse four upper-case letters or digits.
    pub fn parse(s: &str) -> Option<Feature> {
        let b = s.as_bytes();
        if b.len() != 4 || !b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return None;
        }
        Some(Feature([b[0], b[1], b[2], b[3]]))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("????")
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Feature({})", self.as_str())
    }
}

/// One selector of an `F` message: recipients must (`+`) or must not (`-`) have the
/// feature in their `INF`'s `SU` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureSel {
    /// `+` (required) or `-` (excluded).
    pub required: bool,
    /// The feature.
    pub feature: Feature,
}

/// Check `supports` (the features a recipient announced) against `F` selectors.
pub fn features_match(sels: &[FeatureSel], has: impl Fn(Feature) -> bool) -> bool {
    sels.iter().all(|s| has(s.feature) == s.required)
}

/// What follows the command name, by message type (docs/protocols/adc.md#types).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Header {
    /// Broadcast to every client, from `from`.
    B {
        /// Sender.
        from: Sid,
    },
    /// Client to client, on a direct connection.
    C,
    /// Direct: to `to` only, through the hub.
    D {
        /// Sender.
        from: Sid,
        /// Recipient.
        to: Sid,
    },
    /// Echo: to `to` and back to the sender.
    E {
        /// Sender.
        from: Sid,
        /// Recipient.
        to: Sid,
    },
    /// Feature broadcast: to every client whose features match.
    F {
        /// Sender.
        from: Sid,
        /// Selectors, in order.
        features: Vec<FeatureSel>,
    },
    /// Client to hub.
    H,
    /// Hub to client.
    I,
    /// UDP, from the client with this CID.
    U {
        /// Sender.
        cid: Cid,
    },
}

impl Header {
    /// The type letter.
    pub fn letter(&self) -> u8 {
        match self {
            Header::B { .. } => b'B',
            Header::C => b'C',
            Header::D { .. } => b'D',
            Header::E { .. } => b'E',
            Header::F { .. } => b'F',
            Header::H => b'H',
            Header::I => b'I',
            Header::U { .. } => b'U',
        }
    }

    /// The sender's SID, for `B D E F`.
    pub fn from(&self) -> Option<Sid> {
        match self {
            Header::B { from } | Header::D { from, .. } | Header::E { from, .. } | Header::F { from, .. } => {
                Some(*from)
            }
            _ => None,
        }
    }
}

/// A three-character command name (`SUP`, `INF`, `MSG`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Command(pub [u8; 3]);

#[allow(missing_docs)]
impl Command {
    pub const STA: Command = Command(*b"STA");
    pub const SUP: Command = Command(*b"SUP");
    pub const SID: Command = Command(*b"SID");
    pub const INF: Command = Command(*b"INF");
    pub const MSG: Command = Command(*b"MSG");
    pub const SCH: Command = Command(*b"SCH");
    pub const RES: Command = Command(*b"RES");
    pub const CTM: Command = Command(*b"CTM");
    pub const RCM: Command = Command(*b"RCM");
    pub const GPA: Command = Command(*b"GPA");
    pub const PAS: Command = Command(*b"PAS");
    pub const QUI: Command = Command(*b"QUI");
    pub const GET: Command = Command(*b"GET");
    pub const GFI: Command = Command(*b"GFI");
    pub const SND: Command = Command(*b"SND");
    /// BLOM extension: the hub's request is `GET` of type `blom`, the answer `SND`.
    pub const PSR: Command = Command(*b"PSR");
    /// Keep-alive / hub pinger extension.
    pub const PIN: Command = Command(*b"PIN");
    /// Client-to-client NAT traversal (`NAT0`).
    pub const NAT: Command = Command(*b"NAT");
    pub const RNT: Command = Command(*b"RNT");
    pub const ZON: Command = Command(*b"ZON");
    pub const ZOF: Command = Command(*b"ZOF");

    /// Parse three characters: an upper-case letter, then two upper-case letters or digits.
    pub fn parse(b: &[u8]) -> Option<Command> {
        if b.len() != 3
            || !b[0].is_ascii_uppercase()
            || !b[1..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return None;
        }
        Some(Command([b[0], b[1], b[2]]))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({})", self.as_str())
    }
}

/// One ADC message: header, command and parameters (unescaped, in order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// Type and the addressing it carries.
    pub header: Header,
    /// The command.
    pub cmd: Command,
    /// Parameters in order, escapes removed. None is empty when parsed, except a named
    /// parameter's value (`NI` alone: the field is cleared), which keeps its name.
    pub params: Vec<String>,
}

/// Is this parameter a named one (`XYvalue`: an upper-case letter, then a letter or digit)?
pub fn is_named(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() >= 2 && b[0].is_ascii_uppercase() && (b[1].is_ascii_uppercase() || b[1].is_ascii_digit())
}

impl Message {
    /// A message with no parameters yet.
    pub fn new(header: Header, cmd: Command) -> Message {
        Message { header, cmd, params: Vec::new() }
    }

    /// Add a positional parameter (builder style). It must not be empty.
    pub fn arg(mut self, value: impl Into<String>) -> Message {
        self.params.push(value.into());
        self
    }

    /// Add a named parameter `name` + `value` (builder style).
    pub fn named_arg(mut self, name: &str, value: impl AsRef<str>) -> Message {
        self.params.push(format!("{name}{}", value.as_ref()));
        self
    }

    /// The `i`th parameter.
    pub fn positional(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }

    /// Named parameters after the first `skip` (the command's positional ones): name and
    /// value. Parameters that do not look named are left out.
    pub fn named_params(&self, skip: usize) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().skip(skip).filter(|p| is_named(p)).map(|p| (&p[..2], &p[2..]))
    }

    /// The first named parameter `name` after the first `skip` parameters.
    pub fn named(&self, skip: usize, name: &str) -> Option<&str> {
        self.named_params(skip).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Parse one line (without its `\n`).
    pub fn parse(line: &[u8]) -> Result<Message, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let b = line.as_bytes();
        if b.len() < 4 {
            return Err(ParseError::TooShort);
        }
        let cmd = Command::parse(&b[1..4]).ok_or(ParseError::BadCommand)?;
        let letter = b[0];
        let rest = &line[4..];
        let mut fields: Fields<'_> = Fields::new(rest)?;
        let mut header_field = || fields.next_raw().ok_or(ParseError::MissingHeader);
        let header = match letter {
            b'B' => Header::B { from: Sid::parse(header_field()?)? },
            b'C' => Header::C,
            b'D' | b'E' => {
                let from = Sid::parse(header_field()?)?;
                let to = Sid::parse(header_field()?)?;
                if letter == b'D' {
                    Header::D { from, to }
                } else {
                    Header::E { from, to }
                }
            }
            b'F' => {
                let from = Sid::parse(header_field()?)?;
                Header::F { from, features: parse_features(header_field()?)? }
            }
            b'H' => Header::H,
            b'I' => Header::I,
            b'U' => Header::U { cid: Cid::parse(header_field()?)? },
            other => return Err(ParseError::BadType(char::from(other))),
        };
        let mut params = Vec::new();
        while let Some(raw) = fields.next_raw() {
            if params.len() >= MAX_PARAMS {
                return Err(ParseError::TooManyParams);
            }
            params.push(unescape(raw)?);
        }
        Ok(Message { header, cmd, params })
    }

    /// Append the message and its `\n` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.header.letter());
        out.extend_from_slice(&self.cmd.0);
        match &self.header {
            Header::B { from } => {
                out.push(b' ');
                out.extend_from_slice(&from.to_chars());
            }
            Header::D { from, to } | Header::E { from, to } => {
                out.push(b' ');
                out.extend_from_slice(&from.to_chars());
                out.push(b' ');
                out.extend_from_slice(&to.to_chars());
            }
            Header::F { from, features } => {
                out.push(b' ');
                out.extend_from_slice(&from.to_chars());
                out.push(b' ');
                for f in features {
                    out.push(if f.required { b'+' } else { b'-' });
                    out.extend_from_slice(&f.feature.0);
                }
            }
            Header::U { cid } => {
                out.push(b' ');
                out.extend_from_slice(cid.to_base32().as_bytes());
            }
            Header::C | Header::H | Header::I => {}
        }
        for p in &self.params {
            out.push(b' ');
            escape_into(p, out);
        }
        out.push(b'\n');
    }

    /// The message as bytes, ending with `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.encode();
        f.write_str(String::from_utf8_lossy(&e[..e.len() - 1]).as_ref())
    }
}

/// The space-separated fields after the command name.
struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(rest: &'a str) -> Result<Fields<'a>, ParseError> {
        if rest.is_empty() {
            return Ok(Fields { rest: None });
        }
        // Every field is introduced by one space.
        let Some(r) = rest.strip_prefix(' ') else {
            return Err(ParseError::BadCommand);
        };
        // Empty fields (two spaces in a row) are kept as empty parameters: EiskaltDC++ sends
        // `CSTA 000  RF<hub>`, a status with an empty description (docs/protocols/adc.md#cc).
        // One trailing space (some clients end `HSUP ADBASE ` so) is tolerated.
        let r = r.strip_suffix(' ').unwrap_or(r);
        if r.is_empty() {
            return Ok(Fields { rest: None });
        }
        Ok(Fields { rest: Some(r) })
    }

    fn next_raw(&mut self) -> Option<&'a str> {
        let r = self.rest?;
        match r.find(' ') {
            Some(i) => {
                self.rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                self.rest = None;
                Some(r)
            }
        }
    }
}

fn parse_features(s: &str) -> Result<Vec<FeatureSel>, ParseError> {
    let b = s.as_bytes();
    let bad = || ParseError::BadFeatures(s.chars().take(16).collect());
    if b.is_empty() || !b.len().is_multiple_of(5) || b.len() / 5 > MAX_FEATURE_SELECTORS {
        return Err(bad());
    }
    b.chunks(5)
        .map(|c| {
            let required = match c[0] {
                b'+' => true,
                b'-' => false,
                _ => return Err(bad()),
            };
            let feature = std::str::from_utf8(&c[1..]).ok().and_then(Feature::parse).ok_or_else(bad)?;
            Ok(FeatureSel { required, feature })
        })
        .collect()
}

/// Undo `\s`, `\n`, `\\`.
pub fn unescape(raw: &str) -> Result<String, ParseError> {
    if !raw.contains('\\') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            _ => return Err(ParseError::BadEscape),
        }
    }
    Ok(out)
}

/// Escape a parameter value for the wire.
pub fn escape(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    escape_into(value, &mut out);
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

fn escape_into(value: &str, out: &mut Vec<u8>) {
    for &c in value.as_bytes() {
        match c {
            b' ' => out.extend_from_slice(b"\\s"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            c => out.push(c),
        }
    }
}

/// Why the line splitter gave up. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    /// The peer sent more than the limit without ending the line.
    #[error("line longer than {limit} bytes")]
    TooLong {
        /// The limit exceeded.
        limit: usize,
    },
}

impl From<FrameTooLong> for LineError {
    fn from(e: FrameTooLong) -> Self {
        LineError::TooLong { limit: e.limit }
    }
}

/// Splits a byte stream into `\n`-terminated lines of at most `limit` bytes (the
/// terminator excluded): NMDC's reader with ADC's terminator. Empty lines (keep-alives,
/// which DC++ sends on idle hub connections) are skipped ([`FrameReader::next_frame`]). A
/// peer that never ends a line costs at most `limit` bytes plus one pushed chunk before
/// [`LineError::TooLong`]. The limit is raised from [`MAX_LINE_LOGIN`] to [`MAX_LINE`]
/// after `BINF`.
pub type LineReader = FrameReader<b'\n', MAX_LINE, LineError>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Message {
        Message::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// uhub 0.4.1's greeting, as recorded in docs/protocols/adc.md#uhub.
    #[test]
    fn uhub_greeting_golden() {
        let sup = parse("ISUP ADBASE ADTIGR ADPING ADUCMD");
        assert_eq!(sup.header, Header::I);
        assert_eq!(sup.cmd, Command::SUP);
        assert_eq!(sup.params, ["ADBASE", "ADTIGR", "ADPING", "ADUCMD"]);
        let sid = parse("ISID AAAB");
        assert_eq!(Sid::parse(sid.positional(0).unwrap()).unwrap(), Sid::new(1));
        let inf = parse("IINF CT32 VEuhub/0.4.1-release NIMy\\sHub DEa\\\\b\\nc");
        assert_eq!(inf.named(0, "CT"), Some("32"));
        assert_eq!(inf.named(0, "NI"), Some("My Hub"));
        assert_eq!(inf.named(0, "DE"), Some("a\\b\nc"));
        assert_eq!(inf.encode(), b"IINF CT32 VEuhub/0.4.1-release NIMy\\sHub DEa\\\\b\\nc\n");
        let sta = parse("ISTA 000 Powered\\sby\\suhub/0.4.1");
        assert_eq!(sta.params, ["000", "Powered by uhub/0.4.1"]);
    }

    #[test]
    fn headers_golden() {
        let cid = Cid::from_pid(&Cid([7; 24]));
        let lines = [
            "BINF AAAB NIalice SUTCP4,UDP4".to_owned(),
            "DMSG AAAB AAAC hi PMAAAB".into(),
            "EMSG AAAB AAAC hi PMAAAB".into(),
            "FSCH AAAB +TCP4-NAT0 ANfoo TOabc".into(),
            "CSND file TTH/XYZ 0 10".into(),
            "HPAS ABC".into(),
            format!("URES {cid} FN/a SI3"),
            "BINF 7777".into(),
        ];
        for l in &lines {
            let m = parse(l);
            assert_eq!(String::from_utf8(m.encode()).unwrap(), format!("{l}\n"));
        }
        let f = parse("FSCH AAAB +TCP4-NAT0 ANfoo");
        let Header::F { from, features } = &f.header else { panic!() };
        assert_eq!(*from, Sid::parse("AAAB").unwrap());
        assert_eq!(features.len(), 2);
        assert!(features[0].required && features[0].feature == Feature(*b"TCP4"));
        assert!(!features[1].required && features[1].feature == Feature(*b"NAT0"));
        assert!(features_match(features, |f| f == Feature(*b"TCP4")));
        assert!(!features_match(features, |f| f == Feature(*b"TCP4") || f == Feature(*b"NAT0")));
        assert!(!features_match(features, |_| false));
        assert_eq!(Sid::parse("7777").unwrap().value(), Sid::MAX);
        // A trailing space is tolerated and not kept.
        assert_eq!(parse("HSUP ADBASE ").params, ["ADBASE"]);
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            &b""[..],
            b"BIN",
            b"XINF AAAB",
            b"binf AAAB",
            b"B1NF AAAB",
            b"BINF",
            b"BINF AAA",
            b"BINF AAAA1",
            b"BINF aaab",
            b"BINF AAA1",
            b"BINFAAAB",
            b"DMSG AAAB",
            b"FSCH AAAB",
            b"FSCH AAAB TCP4",
            b"FSCH AAAB +TCP",
            b"FSCH AAAB *TCP4",
            b"FSCH AAAB +tcp4",
            b"USCH AAAB",
            b"BINF AAAB NI\\x",
            b"BINF AAAB NI\\",
            b"HSUP \xff",
        ] {
            assert!(Message::parse(bad).is_err(), "{:?} parsed", String::from_utf8_lossy(bad));
        }
        // An empty field is an empty parameter (EiskaltDC++'s status with no description).
        let sta = Message::parse(b"CSTA 000  RFadc://h:1").unwrap();
        assert_eq!(sta.params, ["000", "", "RFadc://h:1"]);
        let many = format!("HSUP{}", " ADX".repeat(MAX_PARAMS + 1));
        assert_eq!(Message::parse(many.as_bytes()), Err(ParseError::TooManyParams));
    }

    #[test]
    fn cid_is_tiger_of_pid_and_canonical() {
        let pid = Cid([0x11; 24]);
        let cid = Cid::from_pid(&pid);
        assert_eq!(cid.0, omnipeer_nmdc::tth::tiger(&[0x11; 24]));
        let text = cid.to_base32();
        assert_eq!(text.len(), HASH_BASE32_LEN);
        assert_eq!(Cid::parse(&text).unwrap(), cid);
        assert!(Cid::parse(&text.to_lowercase()).is_err());
        // The last character carries 3 unused bits: a non-zero variant names the same bytes
        // but is refused.
        let mut alt = text.clone().into_bytes();
        let last = alt.last_mut().unwrap();
        let v = b32_value(*last).unwrap();
        if v & 7 == 0 {
            *last = B32[(v | 1) as usize];
            assert!(Cid::parse(std::str::from_utf8(&alt).unwrap()).is_err());
        }
        // Tiger of the empty string, as in every Tiger test vector list.
        assert_eq!(
            base32(&omnipeer_nmdc::tth::tiger(b"")),
            base32(&[
                0x32, 0x93, 0xAC, 0x63, 0x0C, 0x13, 0xF0, 0x24, 0x5F, 0x92, 0xBB, 0xB1, 0x76, 0x6E, 0x16, 0x16, 0x7A,
                0x4E, 0x58, 0x49, 0x2D, 0xDE, 0x73, 0xF3
            ])
        );
    }

    #[test]
    fn password_hash_is_tiger_of_password_and_challenge() {
        let h = password_hash("secret", &[1, 2, 3]);
        assert_eq!(h, base32(&omnipeer_nmdc::tth::tiger(b"secret\x01\x02\x03")));
        assert_ne!(h, password_hash("secret", &[1, 2, 4]));
    }

    #[test]
    fn line_reader_limits_and_keepalives() {
        let mut r = LineReader::with_limit(10);
        r.push(b"\n\nHSUP AD");
        assert_eq!(r.next_frame(), Ok(None));
        r.push(b"BASE\nHS");
        // "HSUP ADBASE" is 11 bytes.
        assert_eq!(r.next_frame(), Err(LineError::TooLong { limit: 10 }));
        let mut r = LineReader::with_limit(11);
        r.push(b"HSUP ADBASE\nHSUP ADTIGR1\n");
        assert_eq!(r.next_frame(), Ok(Some(b"HSUP ADBASE".to_vec())));
        assert_eq!(r.next_frame(), Err(LineError::TooLong { limit: 11 }));
        let mut r = LineReader::with_limit(4);
        r.push(b"abcde");
        assert_eq!(r.next_frame(), Err(LineError::TooLong { limit: 4 }));
        let mut r = LineReader::with_limit(4);
        r.push(b"abcd");
        assert_eq!(r.next_frame(), Ok(None));
        r.set_limit(8);
        r.push(b"efgh\nraw");
        assert_eq!(r.next_frame(), Ok(Some(b"abcdefgh".to_vec())));
        assert_eq!(r.take_raw(2), b"ra");
        assert_eq!(r.take_rest(), b"w");
        assert_eq!(r.buffered(), 0);
    }

    fn param() -> impl Strategy<Value = String> {
        // Any text but the empty string, with the escaped characters well represented.
        proptest::string::string_regex("[a-zA-Z0-9 \\\\\n/é€,.+-]{1,12}").unwrap()
    }

    fn sid() -> impl Strategy<Value = Sid> {
        (0..=Sid::MAX).prop_map(Sid::new)
    }

    fn feature() -> impl Strategy<Value = FeatureSel> {
        (any::<bool>(), proptest::string::string_regex("[A-Z][A-Z0-9]{3}").unwrap())
            .prop_map(|(required, f)| FeatureSel { required, feature: Feature::parse(&f).unwrap() })
    }

    fn header() -> impl Strategy<Value = Header> {
        prop_oneof![
            sid().prop_map(|from| Header::B { from }),
            Just(Header::C),
            (sid(), sid()).prop_map(|(from, to)| Header::D { from, to }),
            (sid(), sid()).prop_map(|(from, to)| Header::E { from, to }),
            (sid(), proptest::collection::vec(feature(), 1..4))
                .prop_map(|(from, features)| Header::F { from, features }),
            Just(Header::H),
            Just(Header::I),
            any::<[u8; 24]>().prop_map(|b| Header::U { cid: Cid(b) }),
        ]
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(
            header in header(),
            cmd in proptest::string::string_regex("[A-Z][A-Z0-9]{2}").unwrap(),
            params in proptest::collection::vec(param(), 0..8),
        ) {
            let m = Message { header, cmd: Command::parse(cmd.as_bytes()).unwrap(), params };
            let enc = m.encode();
            prop_assert_eq!(enc.last(), Some(&b'\n'));
            prop_assert!(!enc[..enc.len() - 1].contains(&b'\n'));
            prop_assert_eq!(Message::parse(&enc[..enc.len() - 1]), Ok(m));
        }

        #[test]
        fn sid_round_trip(s in sid()) {
            prop_assert_eq!(Sid::parse(&s.to_string()), Ok(s));
        }

        #[test]
        fn cid_round_trip(b in any::<[u8; 24]>()) {
            prop_assert_eq!(Cid::parse(&Cid(b).to_base32()), Ok(Cid(b)));
        }

        #[test]
        fn parse_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = Message::parse(&bytes) {
                let enc = m.encode();
                prop_assert_eq!(Message::parse(&enc[..enc.len() - 1]), Ok(m));
            }
        }

        #[test]
        fn reader_split_anywhere(lines in proptest::collection::vec("[a-z ]{0,20}", 0..6), cut in 0usize..200) {
            let stream: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            let cut = cut.min(stream.len());
            let mut r = LineReader::with_limit(20);
            let mut got = Vec::new();
            r.push(&stream[..cut]);
            while let Some(l) = r.next_frame().unwrap() { got.push(l); }
            r.push(&stream[cut..]);
            while let Some(l) = r.next_frame().unwrap() { got.push(l); }
            let want: Vec<Vec<u8>> = lines.iter().filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(r.buffered(), 0);
        }
    }
}
