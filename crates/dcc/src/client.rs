//! The client side of the opening exchange, as a sans-IO state machine.

use crate::ack::{FileReceiver, FileSender};
use crate::limits::MAX_LINE;
use crate::line::{LineError, LineReader};
use crate::message::{Message, ParseError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a client waits for each server reply by default.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `100`: chat.
    Chat,
    /// `110`: file server.
    Fserve,
    /// `120`: send a file of `size` bytes named `name`.
    Send {
        /// The file size.
        size: u64,
        /// The name to announce (a base name; may contain spaces).
        name: String,
    },
    /// `130`: get a file asked for with `get` in an fserve session.
    Get {
        /// The name the fserve announced.
        name: String,
    },
}

/// Why the exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// `150`: service switched off or server full.
    #[error("the server answered 150: service unavailable (switched off or server full)")]
    Unavailable,
    /// `151`: refused.
    #[error("the server answered 151: rejected")]
    Rejected,
    /// No reply in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection without a reply.
    #[error("the server closed the connection without a reply")]
    Closed,
    /// A reply line that is not what this request expects.
    #[error("unexpected reply from the server: {0}")]
    Unexpected(String),
    /// A reply line that does not parse.
    #[error("malformed reply from the server: {0}")]
    Malformed(ParseError),
    /// A reply line that is too long.
    #[error("reply from the server: {0}")]
    Framing(LineError),
}

/// What the exchange settled.
#[derive(Debug)]
pub enum Event {
    /// `101`/`111` arrived: the service runs.
    Accepted {
        /// The server's nick.
        server_nick: String,
        /// Bytes that followed the reply line.
        leftover: Vec<u8>,
    },
    /// `121` arrived: write the file from `sender.position()` on.
    SendAccepted {
        /// The server's nick.
        server_nick: String,
        /// Counts bytes written and acks read.
        sender: FileSender,
        /// Bytes that followed the reply (acknowledgements).
        leftover: Vec<u8>,
    },
    /// `131` arrived: answer with [`ClientHandshake::resume_get`].
    GetOffered {
        /// The server's nick.
        server_nick: String,
        /// The file size.
        size: u64,
    },
    /// `132` was sent: file bytes follow.
    Receive {
        /// Counts bytes, cuts overruns, makes acks.
        receiver: FileReceiver,
        /// Bytes received after the `131` line (file data, unlikely but possible).
        leftover: Vec<u8>,
    },
    /// The exchange failed; close the connection.
    Failed(ClientError),
}

/// What to do next.
#[derive(Debug)]
pub enum Output {
    /// Write these bytes.
    Transmit(Vec<u8>),
    /// Something happened.
    Event(Event),
    /// Call [`ClientHandshake::handle_timeout`] at this instant unless input comes first.
    Timeout(Instant),
}

#[derive(Debug)]
enum State {
    AwaitReply,
    GetDecision { size: u64 },
    Done,
}

/// The client's half of the opening exchange.
#[derive(Debug)]
pub struct ClientHandshake {
    nick: String,
    request: Request,
    state: State,
    lines: LineReader,
    timeout: Duration,
    deadline: Instant,
    out: VecDeque<Output>,
}

impl ClientHandshake {
    /// Start: the opening line is the first output.
    pub fn new(nick: impl Into<String>, request: Request, now: Instant, timeout: Duration) -> Self {
        let nick = nick.into();
        let opening = match &request {
            Request::Chat => Message::Chat { nick: nick.clone() },
            Request::Fserve => Message::Fserve { nick: nick.clone() },
            Request::Send { size, name } => Message::Send { nick: nick.clone(), size: *size, name: name.clone() },
            Request::Get { name } => Message::Get { nick: nick.clone(), name: name.clone() },
        };
        let mut out = VecDeque::new();
        out.push_back(Output::Transmit(opening.encode()));
        ClientHandshake {
            nick,
            request,
            state: State::AwaitReply,
            lines: LineReader::new(MAX_LINE),
            timeout,
            deadline: now + timeout,
            out,
        }
    }

    /// Bytes arrived; an empty slice means the server closed.
    pub fn handle_input(&mut self, _now: Instant, bytes: &[u8]) {
        if matches!(self.state, State::GetDecision { .. }) {
            // File data sent ahead of our `132`: keep it (bounded) for the receiver.
            if self.lines.buffered() + bytes.len() > crate::server::MAX_PENDING {
                return self.fail(ClientError::Framing(LineError::TooLong { limit: crate::server::MAX_PENDING }));
            }
            self.lines.push(bytes);
            return;
        }
        if !matches!(self.state, State::AwaitReply) {
            return;
        }
        if bytes.is_empty() {
            return self.fail(ClientError::Closed);
        }
        self.lines.push(bytes);
        let line = match self.lines.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => return self.fail(ClientError::Framing(e)),
        };
        let msg = match Message::parse(&line) {
            Ok(m) => m,
            Err(e) => return self.fail(ClientError::Malformed(e)),
        };
        match (&self.request, msg) {
            (_, Message::Unavailable) => self.fail(ClientError::Unavailable),
            (_, Message::Rejected) => self.fail(ClientError::Rejected),
            (Request::Chat, Message::ChatAccepted { nick }) | (Request::Fserve, Message::FserveAccepted { nick }) => {
                self.state = State::Done;
                let leftover = self.lines.take_rest();
                self.out.push_back(Output::Event(Event::Accepted { server_nick: nick, leftover }));
            }
            (Request::Send { size, .. }, Message::SendAccepted { nick, position }) => {
                if position > *size {
                    return self.fail(ClientError::Unexpected(format!(
                        "resume position {position} is beyond the file size {size}"
                    )));
                }
                self.state = State::Done;
                let sender = FileSender::new(*size, position);
                let leftover = self.lines.take_rest();
                self.out.push_back(Output::Event(Event::SendAccepted { server_nick: nick, sender, leftover }));
            }
            (Request::Get { .. }, Message::GetAccepted { nick, size }) => {
                self.state = State::GetDecision { size };
                self.out.push_back(Output::Event(Event::GetOffered { server_nick: nick, size }));
            }
            (_, other) => self.fail(ClientError::Unexpected(other.to_string())),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::AwaitReply) && now >= self.deadline {
            self.fail(ClientError::Timeout(self.timeout));
        }
    }

    /// After [`Event::GetOffered`]: ask for the file from `position` (the size of the
    /// partial copy already held; clamped to the file size).
    pub fn resume_get(&mut self, position: u64) {
        if let State::GetDecision { size } = self.state {
            let receiver = FileReceiver::new(size, position);
            self.out.push_back(Output::Transmit(
                Message::GetResume { nick: self.nick.clone(), position: receiver.position() }.encode(),
            ));
            self.state = State::Done;
            let leftover = self.lines.take_rest();
            self.out.push_back(Output::Event(Event::Receive { receiver, leftover }));
        }
    }

    /// The next thing to do; `None` once the exchange is over and everything was taken.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        match self.state {
            State::AwaitReply => Some(Output::Timeout(self.deadline)),
            _ => None,
        }
    }

    fn fail(&mut self, e: ClientError) {
        self.state = State::Done;
        self.out.push_back(Output::Event(Event::Failed(e)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(h: &mut ClientHandshake) -> (Vec<u8>, Vec<Event>) {
        let mut tx = Vec::new();
        let mut ev = Vec::new();
        while let Some(o) = h.poll_output() {
            match o {
                Output::Transmit(b) => tx.extend(b),
                Output::Event(e) => ev.push(e),
                Output::Timeout(_) => break,
            }
        }
        (tx, ev)
    }

    #[test]
    fn send_resumes_where_the_server_says() {
        let t0 = Instant::now();
        let mut c = ClientHandshake::new(
            "alice",
            Request::Send { size: 1048576, name: "my file.bin".into() },
            t0,
            REPLY_TIMEOUT,
        );
        let (tx, _) = drain(&mut c);
        assert_eq!(tx, b"120 alice 1048576 my file.bin\n");
        c.handle_input(t0, b"121 bob 524288\n");
        let (_, ev) = drain(&mut c);
        match &ev[..] {
            [Event::SendAccepted { server_nick, sender, .. }] => {
                assert_eq!(server_nick, "bob");
                assert_eq!(sender.position(), 524288);
                assert_eq!(sender.remaining(), 524288);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_and_timeouts() {
        let t0 = Instant::now();
        for (reply, err) in [
            (&b"150 unavailable\n"[..], ClientError::Unavailable),
            (b"151 rejected\n", ClientError::Rejected),
            (b"", ClientError::Closed),
        ] {
            let mut c = ClientHandshake::new("alice", Request::Chat, t0, REPLY_TIMEOUT);
            drain(&mut c);
            c.handle_input(t0, reply);
            let (_, ev) = drain(&mut c);
            assert!(matches!(&ev[..], [Event::Failed(e)] if *e == err));
        }
        let mut c = ClientHandshake::new("alice", Request::Chat, t0, REPLY_TIMEOUT);
        drain(&mut c);
        c.handle_timeout(t0 + Duration::from_secs(29));
        assert!(drain(&mut c).1.is_empty());
        c.handle_timeout(t0 + REPLY_TIMEOUT);
        assert!(matches!(&drain(&mut c).1[..], [Event::Failed(ClientError::Timeout(_))]));
    }

    #[test]
    fn wrong_reply_and_bad_resume() {
        let t0 = Instant::now();
        let mut c = ClientHandshake::new("alice", Request::Chat, t0, REPLY_TIMEOUT);
        drain(&mut c);
        c.handle_input(t0, b"111 bob\n");
        assert!(matches!(&drain(&mut c).1[..], [Event::Failed(ClientError::Unexpected(_))]));
        let mut c = ClientHandshake::new("alice", Request::Send { size: 10, name: "a".into() }, t0, REPLY_TIMEOUT);
        drain(&mut c);
        c.handle_input(t0, b"121 bob 11\n");
        assert!(matches!(&drain(&mut c).1[..], [Event::Failed(ClientError::Unexpected(_))]));
    }

    #[test]
    fn get_exchange() {
        let t0 = Instant::now();
        let mut c = ClientHandshake::new("alice", Request::Get { name: "readme.txt".into() }, t0, REPLY_TIMEOUT);
        assert_eq!(drain(&mut c).0, b"130 alice readme.txt\n");
        c.handle_input(t0, b"131 bob 12345\n");
        let (_, ev) = drain(&mut c);
        assert!(matches!(&ev[..], [Event::GetOffered { size: 12345, .. }]));
        c.resume_get(100);
        let (tx, ev) = drain(&mut c);
        assert_eq!(tx, b"132 alice 100\n");
        assert!(matches!(&ev[..], [Event::Receive { receiver, .. }] if receiver.position() == 100));
    }
}
