//! The handshake lines of the DCC Server protocol, parsed and encoded byte-exactly.

use crate::limits::MAX_NUMBER_DIGITS;
use crate::line::encode_line;
use crate::name::{check_nick, NameError};
use thiserror::Error;

/// One handshake line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `100 clientnick`: open a chat.
    Chat {
        /// The client's nick.
        nick: String,
    },
    /// `101 servernick`: chat accepted.
    ChatAccepted {
        /// The server's nick.
        nick: String,
    },
    /// `110 clientnick`: open a file-server session.
    Fserve {
        /// The client's nick.
        nick: String,
    },
    /// `111 servernick`: file-server session accepted.
    FserveAccepted {
        /// The server's nick.
        nick: String,
    },
    /// `120 clientnick filesize filename`: the client offers a file. The name is everything
    /// after the second space, as received (it may hold spaces, quotes or a path; see
    /// [`crate::SafeName::sanitize`]).
    Send {
        /// The client's nick.
        nick: String,
        /// The size of the whole file.
        size: u64,
        /// The file name as received.
        name: String,
    },
    /// `121 servernick resumeposition`: send accepted, from this byte on.
    SendAccepted {
        /// The server's nick.
        nick: String,
        /// Where the data starts (0..=size).
        position: u64,
    },
    /// `130 clientnick filename`: fetch a file asked for with `get` in an fserve session.
    Get {
        /// The client's nick.
        nick: String,
        /// The file name as received.
        name: String,
    },
    /// `131 servernick filesize`: the file is there and this big.
    GetAccepted {
        /// The server's nick.
        nick: String,
        /// The size of the whole file.
        size: u64,
    },
    /// `132 clientnick resumeposition`: send from this byte on.
    GetResume {
        /// The client's nick.
        nick: String,
        /// Where the data starts (0..=size).
        position: u64,
    },
    /// `150 unavailable` (any line starting `150` is read as this).
    Unavailable,
    /// `151 rejected` (any line starting `151` is read as this).
    Rejected,
}

/// Why a line is not a valid handshake line.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ParseError {
    /// The line does not start with a three-digit code.
    #[error("line does not start with a three-digit code")]
    NoCode,
    /// A code this protocol does not have.
    #[error("unknown code {0}")]
    UnknownCode(u16),
    /// A field is missing.
    #[error("code {code}: missing {field}")]
    Missing {
        /// The line's code.
        code: u16,
        /// Which field.
        field: &'static str,
    },
    /// A size or position that is not a decimal u64.
    #[error("code {code}: {field} is not a number")]
    BadNumber {
        /// The line's code.
        code: u16,
        /// Which field.
        field: &'static str,
    },
    /// A nick that is empty, too long, or has spaces or control characters.
    #[error("bad nick: {0}")]
    BadNick(NameError),
}

impl Message {
    /// The three-digit code of this line.
    pub fn code(&self) -> u16 {
        match self {
            Message::Chat { .. } => 100,
            Message::ChatAccepted { .. } => 101,
            Message::Fserve { .. } => 110,
            Message::FserveAccepted { .. } => 111,
            Message::Send { .. } => 120,
            Message::SendAccepted { .. } => 121,
            Message::Get { .. } => 130,
            Message::GetAccepted { .. } => 131,
            Message::GetResume { .. } => 132,
            Message::Unavailable => 150,
            Message::Rejected => 151,
        }
    }

    /// Parse one line (terminator already removed).
    pub fn parse(line: &[u8]) -> Result<Message, ParseError> {
        let text = crate::decode_text(line);
        let b = text.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || (b.len() > 3 && b[3] != b' ') {
            return Err(ParseError::NoCode);
        }
        let code: u16 = text[..3].parse().map_err(|_| ParseError::NoCode)?;
        let rest = if text.len() > 4 { &text[4..] } else { "" };
        match code {
            150 => return Ok(Message::Unavailable),
            151 => return Ok(Message::Rejected),
            100 | 101 | 110 | 111 | 120 | 121 | 130 | 131 | 132 => {}
            other => return Err(ParseError::UnknownCode(other)),
        }
        let (nick, after) = match rest.split_once(' ') {
            Some((n, a)) => (n, a),
            None => (rest, ""),
        };
        let nick = nick.trim_end();
        if nick.is_empty() {
            return Err(ParseError::Missing { code, field: "nick" });
        }
        check_nick(nick).map_err(ParseError::BadNick)?;
        let nick = nick.to_owned();
        let number = |s: &str, field: &'static str| -> Result<u64, ParseError> {
            let s = s.trim();
            if s.is_empty() {
                return Err(ParseError::Missing { code, field });
            }
            if s.len() > MAX_NUMBER_DIGITS || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(ParseError::BadNumber { code, field });
            }
            s.parse().map_err(|_| ParseError::BadNumber { code, field })
        };
        // Chat and fserve lines carry only a nick: a space means the nick has one.
        let single = || -> Result<(), ParseError> {
            if after.trim().is_empty() {
                Ok(())
            } else {
                Err(ParseError::BadNick(NameError::SpaceInNick))
            }
        };
        Ok(match code {
            100 => {
                single()?;
                Message::Chat { nick }
            }
            101 => {
                single()?;
                Message::ChatAccepted { nick }
            }
            110 => {
                single()?;
                Message::Fserve { nick }
            }
            111 => {
                single()?;
                Message::FserveAccepted { nick }
            }
            120 => {
                let (size, name) = after.split_once(' ').unwrap_or((after, ""));
                let size = number(size, "filesize")?;
                if name.trim().is_empty() {
                    return Err(ParseError::Missing { code, field: "filename" });
                }
                Message::Send { nick, size, name: name.to_owned() }
            }
            121 => Message::SendAccepted { nick, position: number(after, "resumeposition")? },
            130 => {
                if after.trim().is_empty() {
                    return Err(ParseError::Missing { code, field: "filename" });
                }
                Message::Get { nick, name: after.to_owned() }
            }
            131 => Message::GetAccepted { nick, size: number(after, "filesize")? },
            132 => Message::GetResume { nick, position: number(after, "resumeposition")? },
            _ => unreachable!("codes filtered above"),
        })
    }

    /// The line as sent, `\n` included.
    pub fn encode(&self) -> Vec<u8> {
        encode_line(&self.to_string())
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Chat { nick } => write!(f, "100 {nick}"),
            Message::ChatAccepted { nick } => write!(f, "101 {nick}"),
            Message::Fserve { nick } => write!(f, "110 {nick}"),
            Message::FserveAccepted { nick } => write!(f, "111 {nick}"),
            Message::Send { nick, size, name } => write!(f, "120 {nick} {size} {name}"),
            Message::SendAccepted { nick, position } => write!(f, "121 {nick} {position}"),
            Message::Get { nick, name } => write!(f, "130 {nick} {name}"),
            Message::GetAccepted { nick, size } => write!(f, "131 {nick} {size}"),
            Message::GetResume { nick, position } => write!(f, "132 {nick} {position}"),
            Message::Unavailable => f.write_str("150 unavailable"),
            Message::Rejected => f.write_str("151 rejected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Message, ParseError> {
        Message::parse(s.as_bytes())
    }

    #[test]
    fn seed_lines_byte_exact() {
        let cases: Vec<(Message, &[u8])> = vec![
            (Message::Chat { nick: "alice".into() }, b"100 alice\n"),
            (Message::ChatAccepted { nick: "bob".into() }, b"101 bob\n"),
            (Message::Fserve { nick: "alice".into() }, b"110 alice\n"),
            (Message::FserveAccepted { nick: "bob".into() }, b"111 bob\n"),
            (
                Message::Send { nick: "alice".into(), size: 1048576, name: "my file.bin".into() },
                b"120 alice 1048576 my file.bin\n",
            ),
            (Message::SendAccepted { nick: "bob".into(), position: 524288 }, b"121 bob 524288\n"),
            (Message::Get { nick: "alice".into(), name: "readme.txt".into() }, b"130 alice readme.txt\n"),
            (Message::GetAccepted { nick: "bob".into(), size: 12345 }, b"131 bob 12345\n"),
            (Message::GetResume { nick: "alice".into(), position: 0 }, b"132 alice 0\n"),
            (Message::Unavailable, b"150 unavailable\n"),
            (Message::Rejected, b"151 rejected\n"),
        ];
        for (msg, bytes) in cases {
            assert_eq!(msg.encode(), bytes, "{msg:?}");
            assert_eq!(Message::parse(&bytes[..bytes.len() - 1]).unwrap(), msg);
        }
    }

    #[test]
    fn refusals_with_other_text_still_parse() {
        assert_eq!(p("150 bob").unwrap(), Message::Unavailable);
        assert_eq!(p("151 bob").unwrap(), Message::Rejected);
        assert_eq!(p("151").unwrap(), Message::Rejected);
    }

    #[test]
    fn big_sizes_and_bad_numbers() {
        assert_eq!(
            p("120 a 18446744073709551615 x").unwrap(),
            Message::Send { nick: "a".into(), size: u64::MAX, name: "x".into() }
        );
        assert!(matches!(p("120 a 18446744073709551616 x"), Err(ParseError::BadNumber { .. })));
        assert!(matches!(p("120 a -1 x"), Err(ParseError::BadNumber { .. })));
        assert!(matches!(p("120 a 12"), Err(ParseError::Missing { field: "filename", .. })));
        assert!(matches!(p("121 bob"), Err(ParseError::Missing { .. })));
        assert!(matches!(p("121 bob 1x"), Err(ParseError::BadNumber { .. })));
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(p(""), Err(ParseError::NoCode));
        assert_eq!(p("10"), Err(ParseError::NoCode));
        assert_eq!(p("1000 alice"), Err(ParseError::NoCode));
        assert_eq!(p("abc alice"), Err(ParseError::NoCode));
        assert_eq!(p("199 alice"), Err(ParseError::UnknownCode(199)));
        assert!(matches!(p("100"), Err(ParseError::Missing { field: "nick", .. })));
        assert!(matches!(p("100 a b"), Err(ParseError::BadNick(_))));
        assert!(matches!(p("100 a\x01"), Err(ParseError::BadNick(_))));
    }

    #[test]
    fn latin1_names_survive() {
        let m = Message::parse(b"120 a 3 caf\xe9.txt").unwrap();
        assert_eq!(m, Message::Send { nick: "a".into(), size: 3, name: "café.txt".into() });
    }

    proptest! {
        #[test]
        fn send_round_trips(nick in "[a-zA-Z0-9_\\[\\]^-]{1,30}", size in any::<u64>(),
                            name in "[a-zA-Z0-9 ._()-]{0,40}[a-zA-Z0-9]") {
            let m = Message::Send { nick, size, name };
            let enc = m.encode();
            prop_assert_eq!(Message::parse(&enc[..enc.len()-1]).unwrap(), m);
        }

        #[test]
        fn numbers_round_trip(nick in "[a-z]{1,10}", n in any::<u64>()) {
            for m in [Message::SendAccepted { nick: nick.clone(), position: n },
                      Message::GetAccepted { nick: nick.clone(), size: n },
                      Message::GetResume { nick: nick.clone(), position: n }] {
                let enc = m.encode();
                prop_assert_eq!(Message::parse(&enc[..enc.len()-1]).unwrap(), m);
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::parse(&bytes);
        }
    }
}
