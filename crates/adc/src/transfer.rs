//! ADC client-to-client connections, sans-IO (docs/protocols/adc.md#cc): the handshake
//! (SUP, INF with our CID and, from the side that connected, the token of the CTM/RCM that
//! asked for it), then GET/SND requests and STA errors. Raw file bytes after an SND are the
//! driver's to move: the machine hands over what it had buffered past the SND line and
//! takes no more input for that transfer.

use crate::message::{Command, Header, LineReader, Message};
use omnipeer_nmdc::tth::Tth;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The longest command line taken from a peer (GET, SND, INF and STA are far shorter); a
/// longer one drops the connection.
pub const MAX_CC_LINE: usize = 16 * 1024;
/// How long the handshake (SUP and INF both ways) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection may sit without a request or an answer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The name the full file list goes by (`GET file files.xml.bz2`).
pub const FILE_LIST: &str = "files.xml.bz2";

/// Who opened the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We connected (after a CTM); we send SUP first and the token in our INF.
    Connector,
    /// We accepted it.
    Listener,
}

/// What a GET or SND is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `file`: a file's bytes (or the file list).
    File,
    /// `tthl`: a file's Tiger tree leaves.
    Tthl,
    /// `list`: a partial file list (the node serves `list /` only: the whole list).
    List,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Tthl => "tthl",
            Kind::List => "list",
        }
    }
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "file" => Some(Kind::File),
            "tthl" => Some(Kind::Tthl),
            "list" => Some(Kind::List),
            _ => None,
        }
    }
}

/// Which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    /// `TTH/<root>`.
    Tth(Tth),
    /// `files.xml.bz2`.
    FileList,
    /// Anything else: a share path as sent.
    Path(String),
}

impl Ident {
    fn wire(&self) -> String {
        match self {
            Ident::Tth(t) => format!("TTH/{}", t.to_base32()),
            Ident::FileList => FILE_LIST.to_owned(),
            Ident::Path(p) => p.clone(),
        }
    }
    fn parse(s: &str) -> Ident {
        if let Some(t) = s.strip_prefix("TTH/").and_then(|t| Tth::from_base32(t).ok()) {
            return Ident::Tth(t);
        }
        if s == FILE_LIST || s == "/files.xml.bz2" {
            return Ident::FileList;
        }
        Ident::Path(s.to_owned())
    }
}

/// A GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// What kind.
    pub kind: Kind,
    /// Which.
    pub ident: Ident,
    /// First byte.
    pub start: u64,
    /// How many bytes; None (`-1`): to the end.
    pub len: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake is done.
    Ready {
        /// The peer's CID.
        cid: String,
        /// The token it presented (only the connecting side sends one).
        token: Option<String>,
    },
    /// The peer wants something from us.
    Get(Get),
    /// The peer sends what we asked for: `len` raw bytes follow, the first of them in
    /// `leftover`.
    Snd {
        /// Kind.
        kind: Kind,
        /// Which.
        ident: Ident,
        /// Its first byte's offset.
        start: u64,
        /// Bytes that follow.
        len: u64,
        /// Raw bytes already read.
        leftover: Vec<u8>,
    },
    /// The peer's status (an error answer to a GET: 51 not available, 53 slots full).
    Status {
        /// The three-digit code.
        code: u16,
        /// Its words.
        text: String,
    },
    /// The connection is over.
    Closed(String),
}

/// Output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to write.
    Transmit(Vec<u8>),
    /// An event.
    Event(Event),
    /// The next deadline.
    Timeout(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Ready,
    /// Raw bytes belong to the driver.
    Data,
    Closed,
}

/// One client-to-client connection.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    cid: String,
    token: Option<String>,
    state: State,
    got_sup: bool,
    peer_cid: Option<String>,
    peer_token: Option<String>,
    sent_inf: bool,
    reader: LineReader,
    out: VecDeque<Output>,
    deadline: Instant,
}

impl Connection {
    /// A connection where we are `cid`; `token` is the CTM's (a connector's INF carries it).
    pub fn new(role: Role, cid: &str, token: Option<&str>, now: Instant) -> Connection {
        let mut c = Connection {
            role,
            cid: cid.to_owned(),
            token: token.map(str::to_owned),
            state: State::Handshake,
            got_sup: false,
            peer_cid: None,
            peer_token: None,
            sent_inf: false,
            reader: LineReader::with_limit(MAX_CC_LINE),
            out: VecDeque::new(),
            deadline: now + HANDSHAKE_TIMEOUT,
        };
        if role == Role::Connector {
            c.sup();
        }
        c
    }

    fn sup(&mut self) {
        self.send(Message::new(Header::C, Command::SUP).arg("ADBASE").arg("ADTIGR").encode());
    }

    fn inf(&mut self) {
        let mut p = vec![format!("ID{}", self.cid)];
        if self.role == Role::Connector {
            if let Some(t) = &self.token {
                p.push(format!("TO{t}"));
            }
        }
        self.send(Message { header: Header::C, cmd: Command::INF, params: p }.encode());
        self.sent_inf = true;
    }

    fn send(&mut self, b: Vec<u8>) {
        self.out.push_back(Output::Transmit(b));
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn close(&mut self, why: &str) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.event(Event::Closed(why.to_owned()));
        }
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        match self.state {
            State::Closed | State::Data => None,
            _ => Some(Output::Timeout(self.deadline)),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Handshake | State::Ready) && now >= self.deadline {
            self.close("timed out");
        }
    }

    /// The peer closed.
    pub fn handle_eof(&mut self) {
        self.close("the peer closed the connection");
    }

    /// Bytes from the peer (not the raw bytes of a transfer).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Data {
            self.close("bytes outside a transfer");
            return;
        }
        self.reader.push(data);
        while matches!(self.state, State::Handshake | State::Ready) {
            let line = match self.reader.next_frame() {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(_) => {
                    self.close("a line too long");
                    return;
                }
            };
            let m = match Message::parse(&line) {
                Ok(m) => m,
                Err(e) => {
                    let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
                    self.close(&format!("a malformed line ({e}): {shown:?}"));
                    return;
                }
            };
            self.deadline = now + if self.state == State::Handshake { HANDSHAKE_TIMEOUT } else { IDLE_TIMEOUT };
            self.on_message(m);
        }
    }

    fn on_message(&mut self, m: Message) {
        if m.header != Header::C {
            self.close("not a client-to-client line");
            return;
        }
        match (&m.cmd.0, self.state) {
            (b"SUP", State::Handshake) => {
                if !m.params.iter().any(|p| p == "ADBASE" || p == "ADBAS0") {
                    self.close("the peer does not speak ADC BASE");
                    return;
                }
                self.got_sup = true;
                if self.role == Role::Listener {
                    self.sup();
                }
                if !self.sent_inf {
                    self.inf();
                }
                self.check_ready();
            }
            (b"INF", State::Handshake) => {
                let Some(cid) = m.named(0, "ID").filter(|c| c.len() <= 64) else {
                    self.close("an INF without ID");
                    return;
                };
                self.peer_cid = Some(cid.to_owned());
                self.peer_token = m.named(0, "TO").filter(|t| t.len() <= 64).map(str::to_owned);
                self.check_ready();
            }
            (b"GET", State::Ready) => {
                let get = (|| {
                    let kind = Kind::parse(m.params.first()?)?;
                    let ident = Ident::parse(m.params.get(1)?);
                    let start = m.params.get(2)?.parse().ok()?;
                    let len = match m.params.get(3)?.as_str() {
                        "-1" => None,
                        n => Some(n.parse().ok()?),
                    };
                    Some(Get { kind, ident, start, len })
                })();
                match get {
                    Some(g) => self.event(Event::Get(g)),
                    None => self.status(240, "bad GET"),
                }
            }
            (b"SND", State::Ready) => {
                let snd = (|| {
                    let kind = Kind::parse(m.params.first()?)?;
                    let ident = Ident::parse(m.params.get(1)?);
                    let start: u64 = m.params.get(2)?.parse().ok()?;
                    let len: u64 = m.params.get(3)?.parse().ok()?;
                    Some((kind, ident, start, len))
                })();
                let Some((kind, ident, start, len)) = snd else {
                    self.close("a bad SND");
                    return;
                };
                let leftover = self.reader.take_raw(len.min(self.reader.buffered() as u64) as usize);
                self.state = State::Data;
                self.event(Event::Snd { kind, ident, start, len, leftover });
            }
            (b"STA", _) => {
                let code = m.params.first().and_then(|c| c.parse().ok()).unwrap_or(0);
                let text = m.params.get(1).cloned().unwrap_or_default();
                self.event(Event::Status { code, text });
                if code / 100 == 2 {
                    self.close("the peer gave up");
                }
            }
            (b"GFI", State::Ready) => self.status(151, "GFI not supported"),
            _ => {}
        }
    }

    fn check_ready(&mut self) {
        if self.state == State::Handshake && self.got_sup && self.sent_inf {
            if let Some(cid) = self.peer_cid.clone() {
                self.state = State::Ready;
                let token = self.peer_token.clone();
                self.event(Event::Ready { cid, token });
            }
        }
    }

    /// Whether the handshake is done.
    pub fn ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Ask for something (GET); `len` None: to the end.
    pub fn get(&mut self, now: Instant, g: &Get) {
        let len = g.len.map_or("-1".to_owned(), |l| l.to_string());
        let m = Message::new(Header::C, Command::GET).arg(g.kind.as_str()).arg(g.ident.wire());
        self.send(m.arg(g.start.to_string()).arg(len).encode());
        self.deadline = now + IDLE_TIMEOUT;
    }

    /// Announce `len` bytes from `start` (SND); the driver writes them next.
    pub fn snd(&mut self, kind: Kind, ident: &Ident, start: u64, len: u64) {
        let m = Message::new(Header::C, Command::SND).arg(kind.as_str()).arg(ident.wire());
        self.send(m.arg(start.to_string()).arg(len.to_string()).encode());
    }

    /// The driver sent (or received) all the bytes of a transfer: commands again.
    pub fn transfer_done(&mut self, now: Instant) {
        if self.state == State::Data {
            self.state = State::Ready;
        }
        self.deadline = now + IDLE_TIMEOUT;
    }

    /// A status line (error `1xx` recoverable, `2xx` fatal).
    pub fn status(&mut self, code: u16, text: &str) {
        self.send(Message::new(Header::C, Command::STA).arg(format!("{code:03}")).arg(text).encode());
    }

    /// A GET cannot be served: the file is not there.
    pub fn not_available(&mut self) {
        self.status(151, "File Not Available");
    }

    /// A GET cannot be served now: every slot is taken.
    pub fn slots_full(&mut self) {
        self.status(253, "Slots full");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Connection) -> (Vec<String>, Vec<Event>) {
        let (mut l, mut e) = (Vec::new(), Vec::new());
        while let Some(o) = c.poll_output() {
            match o {
                Output::Transmit(b) => l.push(String::from_utf8(b).unwrap()),
                Output::Event(x) => e.push(x),
                Output::Timeout(_) => break,
            }
        }
        (l, e)
    }

    /// Two machines wired to each other until neither has anything to say.
    fn pump(a: &mut Connection, b: &mut Connection, now: Instant) -> (Vec<Event>, Vec<Event>) {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        loop {
            let (la, xa) = drain(a);
            let (lb, xb) = drain(b);
            ea.extend(xa);
            eb.extend(xb);
            if la.is_empty() && lb.is_empty() {
                return (ea, eb);
            }
            for l in la {
                b.handle_input(now, l.as_bytes());
            }
            for l in lb {
                a.handle_input(now, l.as_bytes());
            }
        }
    }

    #[test]
    fn handshake_lines_and_token() {
        let now = Instant::now();
        let mut c = Connection::new(Role::Connector, "CIDA", Some("tok"), now);
        assert_eq!(drain(&mut c).0, vec!["CSUP ADBASE ADTIGR\n"]);
        let mut l = Connection::new(Role::Listener, "CIDB", None, now);
        l.handle_input(now, b"CSUP ADBASE ADTIGR\n");
        assert_eq!(drain(&mut l).0, vec!["CSUP ADBASE ADTIGR\n", "CINF IDCIDB\n"]);
        c.handle_input(now, b"CSUP ADBASE ADTIGR\nCINF IDCIDB\n");
        let (lines, evs) = drain(&mut c);
        assert_eq!(lines, vec!["CINF IDCIDA TOtok\n"]);
        assert_eq!(evs, vec![Event::Ready { cid: "CIDB".into(), token: None }]);
        l.handle_input(now, b"CINF IDCIDA TOtok\n");
        assert_eq!(drain(&mut l).1, vec![Event::Ready { cid: "CIDA".into(), token: Some("tok".into()) }]);
    }

    #[test]
    fn get_snd_and_raw_bytes() {
        let now = Instant::now();
        let mut down = Connection::new(Role::Connector, "A", Some("t"), now);
        let mut up = Connection::new(Role::Listener, "B", None, now);
        pump(&mut down, &mut up, now);
        let root = Tth([9; 24]);
        down.get(now, &Get { kind: Kind::File, ident: Ident::Tth(root), start: 5, len: None });
        let (l, _) = drain(&mut down);
        assert_eq!(l, vec![format!("CGET file TTH/{} 5 -1\n", root.to_base32())]);
        up.handle_input(now, l[0].as_bytes());
        let (_, e) = drain(&mut up);
        assert_eq!(e, vec![Event::Get(Get { kind: Kind::File, ident: Ident::Tth(root), start: 5, len: None })]);
        up.snd(Kind::File, &Ident::Tth(root), 5, 6);
        let (l, _) = drain(&mut up);
        assert_eq!(l, vec![format!("CSND file TTH/{} 5 6\n", root.to_base32())]);
        let mut bytes = l[0].clone().into_bytes();
        bytes.extend_from_slice(b"abc");
        down.handle_input(now, &bytes);
        let (_, e) = drain(&mut down);
        assert_eq!(
            e,
            vec![Event::Snd { kind: Kind::File, ident: Ident::Tth(root), start: 5, len: 6, leftover: b"abc".to_vec() }]
        );
        assert_eq!(down.poll_output(), None);
    }

    #[test]
    fn file_list_and_errors() {
        let now = Instant::now();
        let mut up = Connection::new(Role::Listener, "B", None, now);
        up.handle_input(now, b"CSUP ADBASE\nCINF IDA TOx\nCGET file files.xml.bz2 0 -1\nCGET list / 0 -1\n");
        let (_, e) = drain(&mut up);
        assert_eq!(e[1], Event::Get(Get { kind: Kind::File, ident: Ident::FileList, start: 0, len: None }));
        assert!(matches!(&e[2], Event::Get(Get { kind: Kind::List, .. })));
        up.not_available();
        up.slots_full();
        assert_eq!(drain(&mut up).0, vec!["CSTA 151 File\\sNot\\sAvailable\n", "CSTA 253 Slots\\sfull\n"]);
        let mut down = Connection::new(Role::Connector, "A", Some("x"), now);
        down.handle_input(now, b"CSUP ADBASE\nCINF IDB\nCSTA 253 Slots\\sfull\n");
        let (_, e) = drain(&mut down);
        assert_eq!(e[1], Event::Status { code: 253, text: "Slots full".into() });
        assert!(matches!(e[2], Event::Closed(_)));
    }

    #[test]
    fn a_status_with_an_empty_description_is_read_for_its_code() {
        // What EiskaltDC++ sends first on a connection it opens.
        let now = Instant::now();
        let mut c = Connection::new(Role::Listener, "B", None, now);
        c.handle_input(now, b"CSTA 000  RFadc://127.0.0.1:1\nCSUP ADBASE\nCINF IDA TOt\n");
        let (_, e) = drain(&mut c);
        assert_eq!(e[0], Event::Status { code: 0, text: String::new() });
        assert_eq!(e[1], Event::Ready { cid: "A".into(), token: Some("t".into()) });
        let mut c = Connection::new(Role::Connector, "A", Some("t"), now);
        c.handle_input(now, b"CSUP ADBASE\nCINF IDB\nCSTA 253  x\n");
        let (_, e) = drain(&mut c);
        assert!(
            matches!(e.as_slice(), [Event::Ready { .. }, Event::Status { code: 253, .. }, Event::Closed(_)]),
            "{e:?}"
        );
    }

    #[test]
    fn limits_and_timeouts() {
        let now = Instant::now();
        let mut c = Connection::new(Role::Listener, "B", None, now);
        c.handle_input(now, &vec![b'C'; MAX_CC_LINE + 2]);
        assert!(matches!(drain(&mut c).1.as_slice(), [Event::Closed(_)]));
        let mut c = Connection::new(Role::Listener, "B", None, now);
        c.handle_timeout(now + HANDSHAKE_TIMEOUT);
        assert!(matches!(drain(&mut c).1.as_slice(), [Event::Closed(_)]));
        let mut c = Connection::new(Role::Listener, "B", None, now);
        c.handle_input(now, b"HSUP ADBASE\n");
        assert!(matches!(drain(&mut c).1.as_slice(), [Event::Closed(_)]));
    }
}
