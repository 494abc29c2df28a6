//! The ADC client's hub session, sans-IO (docs/protocols/adc.md#client): login
//! (SUP, SID, INF, GPA/PAS), the user list (INF/QUI), main chat and private messages
//! (MSG), searches out and in (SCH/RES), connection requests (CTM/RCM) and status (STA).
//!
//! Bytes and time go in ([`HubSession::handle_input`], [`HubSession::handle_timeout`]),
//! lines to write, events and the next deadline come out of [`HubSession::poll_output`].
//! Identity: the PID is the caller's (kept in the data dir by the node), the CID is its
//! Tiger hash; both travel in base32.

use crate::message::{self, Cid, Command, Header, LineReader, Message, Sid};
use omnipeer_nmdc::tth::Tth;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The longest line taken from the hub: the codec's [`message::MAX_LINE`] (the user list's
/// INF lines are the longest a hub sends, well under a kilobyte each); a longer one ends
/// the session.
pub const MAX_HUB_LINE: usize = message::MAX_LINE;
/// Users kept in the list; INF for more are ignored (a hub this big is not one a node
/// joins).
pub const MAX_USERS: usize = 100_000;
/// How long the login (SUP to our own INF coming back) may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// An empty line goes to the hub this often so that idle sessions are not dropped by it
/// or by a NAT on the way (DC++ does the same; empty lines are ignored by ADC).
pub const KEEPALIVE: Duration = Duration::from_secs(120);
/// Words (AN, NO, EX) taken from one incoming search; more are ignored.
pub const MAX_SEARCH_TERMS: usize = 32;
/// Bytes of a search-result token (TO) we keep; a longer one is not answered.
pub const MAX_TOKEN_LEN: usize = 64;

/// The client-to-client protocol names CTM and RCM carry (docs/protocols/adc.md#cc).
pub const PROTO_PLAIN: &str = "ADC/1.0";
/// The TLS one (ADCS extension).
pub const PROTO_TLS: &str = "ADCS/0.10";

/// Whether we take connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// We listen for client-to-client connections on `tcp_port` and for search results on
    /// `udp_port`; the hub fills in our address (I4 0.0.0.0).
    Active {
        /// Client-to-client listener.
        tcp_port: u16,
        /// Search results.
        udp_port: u16,
    },
    /// We only connect out.
    Passive,
}

/// What we log in with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our nick (NI).
    pub nick: String,
    /// Our private ID; the CID sent is Tiger(PID).
    pub pid: [u8; 24],
    /// Password for a registered nick (GPA/PAS).
    pub password: Option<String>,
    /// DE.
    pub description: String,
    /// SS: bytes shared.
    pub share_size: u64,
    /// SF: files shared.
    pub shared_files: u64,
    /// SL: upload slots.
    pub slots: u32,
    /// Active or passive.
    pub mode: Mode,
    /// VE.
    pub version: String,
    /// Our certificate's keyprint (`SHA256/...`): we advertise ADCS (TLS client-to-client
    /// connections) and send it as KP so that peers can pin it (KEYP).
    pub keyprint: Option<String>,
}

impl Config {
    /// Our CID in base32.
    pub fn cid(&self) -> String {
        cid_of(&self.pid)
    }
}

/// The CID (base32) of a PID.
pub fn cid_of(pid: &[u8; 24]) -> String {
    Cid::from_pid(&Cid(*pid)).to_base32()
}

/// Someone on the hub, from their INF lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Session ID.
    pub sid: Sid,
    /// CID (base32).
    pub cid: String,
    /// Nick.
    pub nick: String,
    /// DE.
    pub description: String,
    /// SS.
    pub share_size: u64,
    /// SF.
    pub shared_files: u64,
    /// SL.
    pub slots: Option<u32>,
    /// FS: free slots.
    pub free_slots: Option<u32>,
    /// VE.
    pub client: String,
    /// I4.
    pub ip4: Option<Ipv4Addr>,
    /// U4: UDP port for search results.
    pub udp4: Option<u16>,
    /// SU features (TCP4, UDP4, ADC0, ADCS...).
    pub features: Vec<String>,
    /// CT: 2 registered, 4 operator, 8 super user, 16 hub owner, 32 hub (bot 1).
    pub ct: u32,
    /// AW: 1 away, 2 extended away.
    pub away: u32,
    /// KP: the keyprint of its certificate (`SHA256/...`), pinned on ADCS connections.
    pub keyprint: Option<String>,
}

impl User {
    /// Whether it listens for client-to-client connections.
    pub fn active(&self) -> bool {
        self.ip4.is_some() && self.supports("TCP4")
    }
    /// Whether it lists feature `f` in SU.
    pub fn supports(&self, f: &str) -> bool {
        self.features.iter().any(|x| x == f)
    }
    /// An operator or more.
    pub fn op(&self) -> bool {
        self.ct & (4 | 8 | 16) != 0
    }
}

/// A search sent or received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// AN: every word must match.
    pub and: Vec<String>,
    /// NO: none may.
    pub not: Vec<String>,
    /// EX: one of these extensions.
    pub ext: Vec<String>,
    /// TR: by TTH.
    pub tth: Option<Tth>,
    /// GE: at least.
    pub min_size: Option<u64>,
    /// LE: at most.
    pub max_size: Option<u64>,
    /// TY: 1 files only, 2 folders only.
    pub kind: Option<u8>,
}

impl Query {
    /// Words of a free-text search (split on spaces; `-word` excludes).
    pub fn text(s: &str) -> Query {
        let mut q = Query::default();
        for w in s.split_whitespace() {
            match w.strip_prefix('-') {
                Some(n) if !n.is_empty() => q.not.push(n.to_owned()),
                _ => q.and.push(w.to_owned()),
            }
        }
        q
    }

    /// Whether a file at `path` (any separators) of `size` bytes with root `tth` matches.
    pub fn matches_file(&self, path: &str, size: u64, tth: &Tth) -> bool {
        if self.kind == Some(2) {
            return false;
        }
        if let Some(t) = &self.tth {
            return t == tth;
        }
        if self.min_size.is_some_and(|m| size < m) || self.max_size.is_some_and(|m| size > m) {
            return false;
        }
        let lower = path.to_lowercase();
        if !self.ext.is_empty() {
            let name = lower.rsplit(['/', '\\']).next().unwrap_or("");
            let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
            if !self.ext.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
                return false;
            }
        }
        self.words_match(&lower)
    }

    /// Whether a folder at `path` matches (TY2 or no TY; no TTH, size or extension).
    pub fn matches_dir(&self, path: &str) -> bool {
        if self.kind == Some(1) || self.tth.is_some() || !self.ext.is_empty() {
            return false;
        }
        if self.min_size.is_some() || self.max_size.is_some() {
            return false;
        }
        self.words_match(&path.to_lowercase())
    }

    fn words_match(&self, lower: &str) -> bool {
        !self.and.is_empty()
            && self.and.iter().all(|w| lower.contains(&w.to_lowercase()))
            && !self.not.iter().any(|w| lower.contains(&w.to_lowercase()))
    }

    fn params(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(t) = &self.tth {
            p.push(format!("TR{}", t.to_base32()));
        } else {
            p.extend(self.and.iter().map(|w| format!("AN{w}")));
            p.extend(self.not.iter().map(|w| format!("NO{w}")));
            p.extend(self.ext.iter().map(|w| format!("EX{w}")));
            if let Some(s) = self.min_size {
                p.push(format!("GE{s}"));
            }
            if let Some(s) = self.max_size {
                p.push(format!("LE{s}"));
            }
            if let Some(k) = self.kind {
                p.push(format!("TY{k}"));
            }
        }
        p
    }

    fn from_params(m: &Message) -> Query {
        let take = |code: &str| {
            m.named_params(0).filter(|(n, _)| *n == code).take(MAX_SEARCH_TERMS).map(|(_, v)| v.to_owned()).collect()
        };
        Query {
            and: take("AN"),
            not: take("NO"),
            ext: take("EX"),
            tth: m.named(0, "TR").and_then(|t| Tth::from_base32(t).ok()),
            min_size: m.named(0, "GE").and_then(|s| s.parse().ok()),
            max_size: m.named(0, "LE").and_then(|s| s.parse().ok()),
            kind: m.named(0, "TY").and_then(|s| s.parse().ok()),
        }
    }
}

/// Where the answer to a search goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// By UDP to the searcher (URES).
    Udp(Ipv4Addr, u16),
    /// Through the hub to this SID (DRES).
    Hub(Sid),
}

/// Someone's search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingSearch {
    /// The searcher's nick.
    pub nick: String,
    /// What they look for.
    pub query: Query,
    /// Their token (TO), echoed in our results.
    pub token: Option<String>,
    /// Where results go.
    pub reply: ReplyTo,
}

/// One of our results to someone's search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// FN: the share path, `/`-separated; a folder ends in `/`.
    pub path: String,
    /// SI.
    pub size: u64,
    /// TR (files).
    pub tth: Option<Tth>,
}

/// A search result for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// Who has it.
    pub nick: String,
    /// Their CID.
    pub cid: String,
    /// FN as sent (`/`-separated).
    pub path: String,
    /// SI.
    pub size: u64,
    /// SL: their upload slots.
    pub slots: Option<u32>,
    /// FS: free slots (not in every client's RES).
    pub free_slots: Option<u32>,
    /// TR.
    pub tth: Option<Tth>,
    /// TO: the token of our search.
    pub token: Option<String>,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Address.
    pub ip: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// The URES line.
    pub payload: Vec<u8>,
}

/// Why the hub refused us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// STA x22: the nick is in use.
    NickTaken,
    /// STA x21: the nick is not allowed.
    NickInvalid,
    /// STA x23.
    BadPassword,
    /// GPA without a password of ours.
    PasswordRequired,
    /// STA x26.
    RegisteredOnly,
    /// STA x11.
    HubFull,
    /// STA x3x: banned, with the hub's words.
    Banned(String),
    /// Anything else: the code and the hub's words.
    Other(u16, String),
}

/// What the session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Our own INF came back: the user list is complete.
    LoggedIn,
    /// The hub refused the login.
    LoginFailed(LoginFailure),
    /// The session ended (after the login).
    Closed(String),
    /// Main chat.
    Chat {
        /// Speaker.
        nick: String,
        /// Text.
        text: String,
        /// A `/me` line (ME1).
        me: bool,
    },
    /// A private message to us.
    Private {
        /// From.
        from: String,
        /// Text.
        text: String,
        /// ME1.
        me: bool,
    },
    /// A message from the hub itself (STA, IMSG).
    HubMessage(String),
    /// Someone arrived.
    UserJoined(String),
    /// Someone left.
    UserLeft(String),
    /// An answer to one of our searches.
    SearchResult(SearchResult),
    /// Someone's search, to answer from our share.
    SearchRequest(IncomingSearch),
    /// A peer asks us to connect to it (CTM).
    ConnectToMe {
        /// Their nick.
        nick: String,
        /// Their CID (checked against the c-c INF).
        cid: String,
        /// Where.
        ip: Ipv4Addr,
        /// Port.
        port: u16,
        /// The token to present in our c-c INF.
        token: String,
        /// ADCS.
        tls: bool,
    },
    /// A passive peer asks us to send it a CTM (RCM).
    RevConnectToMe {
        /// Their nick.
        nick: String,
        /// Token.
        token: String,
        /// ADCS.
        tls: bool,
    },
}

/// What comes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes for the hub.
    Transmit(Vec<u8>),
    /// Something happened.
    Event(Event),
    /// Call [`HubSession::handle_timeout`] then.
    Timeout(Instant),
}

/// Why a command cannot go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Not logged in (yet, or any more).
    #[error("not logged in to the hub")]
    NotLoggedIn,
    /// No such nick.
    #[error("{0} is not on the hub")]
    NoSuchUser(String),
    /// Both sides are passive.
    #[error("the peer is passive, and so are we: no connection is possible")]
    BothPassive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Protocol,
    Identify,
    Verify,
    Normal,
    Closed,
}

/// One hub session.
#[derive(Debug)]
pub struct HubSession {
    cfg: Config,
    cid: String,
    state: State,
    sid: Option<Sid>,
    hub_name: String,
    hub_features: Vec<String>,
    users: HashMap<Sid, User>,
    /// CID → SID of `users`: a UDP result (URES, from anyone on the network) is looked up
    /// without a scan of the user list.
    by_cid: HashMap<String, Sid>,
    reader: LineReader,
    out: VecDeque<Output>,
    login_deadline: Instant,
    keepalive_at: Instant,
    next_token: u64,
}

impl HubSession {
    /// A session that starts with `HSUP` (BASE, TIGR).
    pub fn new(cfg: Config, now: Instant) -> HubSession {
        let cid = cfg.cid();
        let mut s = HubSession {
            cfg,
            cid,
            state: State::Protocol,
            sid: None,
            hub_name: String::new(),
            hub_features: Vec::new(),
            users: HashMap::new(),
            by_cid: HashMap::new(),
            reader: LineReader::with_limit(MAX_HUB_LINE),
            out: VecDeque::new(),
            login_deadline: now + LOGIN_TIMEOUT,
            keepalive_at: now + KEEPALIVE,
            next_token: 1,
        };
        s.send(Message::new(Header::H, Command::SUP).arg("ADBASE").arg("ADTIGR").encode());
        s
    }

    /// Our CID.
    pub fn cid(&self) -> &str {
        &self.cid
    }

    /// Our SID once assigned.
    pub fn sid(&self) -> Option<Sid> {
        self.sid
    }

    /// The hub's name (its IINF NI).
    pub fn hub_name(&self) -> &str {
        &self.hub_name
    }

    /// Whether the login completed and the session is up.
    pub fn logged_in(&self) -> bool {
        self.state == State::Normal
    }

    /// Everyone on the hub (ourselves included), hub bots too.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// The user called `nick` (ASCII case ignored).
    pub fn user(&self, nick: &str) -> Option<&User> {
        self.users.values().find(|u| u.nick.eq_ignore_ascii_case(nick))
    }

    /// The user with CID `cid`.
    pub fn user_by_cid(&self, cid: &str) -> Option<&User> {
        self.by_cid.get(cid).and_then(|sid| self.users.get(sid))
    }

    fn send(&mut self, b: Vec<u8>) {
        self.out.push_back(Output::Transmit(b));
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    /// The next output; a [`Output::Timeout`] comes last.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        match self.state {
            State::Closed => None,
            State::Normal => Some(Output::Timeout(self.keepalive_at)),
            _ => Some(Output::Timeout(self.login_deadline.min(self.keepalive_at))),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.state != State::Normal && now >= self.login_deadline {
            self.fail(LoginFailure::Other(0, "the hub did not complete the login in time".into()));
            return;
        }
        if now >= self.keepalive_at {
            self.keepalive_at = now + KEEPALIVE;
            self.send(b"\n".to_vec());
        }
    }

    /// The hub closed the connection.
    pub fn handle_eof(&mut self) {
        match self.state {
            State::Closed => {}
            State::Normal => self.close("the hub closed the connection".into()),
            _ => self.fail(LoginFailure::Other(0, "the hub closed the connection during the login".into())),
        }
    }

    fn close(&mut self, why: String) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.event(Event::Closed(why));
        }
    }

    fn fail(&mut self, f: LoginFailure) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.event(Event::LoginFailed(f));
        }
    }

    /// Bytes from the hub.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        let _ = now;
        self.reader.push(data);
        while self.state != State::Closed {
            match self.reader.next_frame() {
                Ok(Some(l)) => {
                    // A malformed line is skipped (hubs relay other clients' lines).
                    if let Ok(m) = Message::parse(&l) {
                        self.on_message(m);
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.close(format!("the hub sent a {e}"));
                    return;
                }
            }
        }
    }

    fn nick_of(&self, sid: Sid) -> String {
        self.users.get(&sid).map_or_else(|| sid.to_string(), |u| u.nick.clone())
    }

    fn on_message(&mut self, m: Message) {
        let from = m.header.from();
        let own = from.is_some() && from == self.sid;
        match (m.header.letter(), &m.cmd.0) {
            (b'I', b"SUP") => {
                for p in &m.params {
                    if let Some(f) = p.strip_prefix("AD") {
                        self.hub_features.push(f.to_owned());
                    } else if let Some(f) = p.strip_prefix("RM") {
                        self.hub_features.retain(|x| x != f);
                    }
                }
            }
            (b'I', b"SID") => {
                if self.state != State::Protocol {
                    return;
                }
                let Some(sid) = m.positional(0).and_then(|s| Sid::parse(s).ok()) else {
                    self.fail(LoginFailure::Other(0, "the hub sent a bad SID".into()));
                    return;
                };
                self.sid = Some(sid);
                self.state = State::Identify;
                let inf = self.full_inf();
                self.send(inf);
            }
            (b'I', b"INF") => {
                if let Some(n) = m.named(0, "NI") {
                    self.hub_name = n.to_owned();
                }
            }
            (b'I', b"GPA") => {
                let Some(data) = m.params.first() else { return };
                match &self.cfg.password {
                    Some(pw) => {
                        let Some(random) = message::base32_decode(data) else {
                            self.fail(LoginFailure::Other(0, "the hub sent a bad GPA".into()));
                            return;
                        };
                        let hash = message::password_hash(pw, &random);
                        self.state = State::Verify;
                        self.send(Message::new(Header::H, Command::PAS).arg(hash).encode());
                    }
                    None => self.fail(LoginFailure::PasswordRequired),
                }
            }
            (b'I', b"STA") => self.on_status(&m),
            (b'I', b"MSG") => {
                if let Some(t) = m.params.first() {
                    let t = t.clone();
                    self.event(Event::HubMessage(t));
                }
            }
            (b'I', b"QUI") | (b'B', b"QUI") => {
                let Some(sid) = m.positional(0).and_then(|s| Sid::parse(s).ok()) else { return };
                if Some(sid) == self.sid {
                    let why = m.named(1, "MS").unwrap_or("the hub disconnected us").to_owned();
                    if self.state == State::Normal {
                        self.close(why);
                    } else {
                        self.fail(LoginFailure::Other(0, why));
                    }
                    return;
                }
                if let Some(u) = self.users.remove(&sid) {
                    if self.by_cid.get(&u.cid) == Some(&sid) {
                        self.by_cid.remove(&u.cid);
                    }
                    if self.state == State::Normal {
                        self.event(Event::UserLeft(u.nick));
                    }
                }
            }
            (b'B', b"INF") => {
                let Some(sid) = from else { return };
                let new = !self.users.contains_key(&sid);
                if new && self.users.len() >= MAX_USERS {
                    return;
                }
                let u = self.users.entry(sid).or_insert_with(|| User::new(sid));
                let old_cid = u.cid.clone();
                apply_inf(u, &m);
                let nick = u.nick.clone();
                if u.cid != old_cid {
                    let cid = u.cid.clone();
                    if self.by_cid.get(&old_cid) == Some(&sid) {
                        self.by_cid.remove(&old_cid);
                    }
                    self.by_cid.insert(cid, sid);
                }
                if own && self.state != State::Normal {
                    self.state = State::Normal;
                    self.event(Event::LoggedIn);
                } else if new && self.state == State::Normal && !own {
                    self.event(Event::UserJoined(nick));
                }
            }
            (b'B', b"MSG") => {
                let (Some(sid), Some(text)) = (from, m.params.first()) else { return };
                let nick = self.nick_of(sid);
                let me = m.named(1, "ME") == Some("1");
                let text = text.clone();
                self.event(Event::Chat { nick, text, me });
            }
            (b'D' | b'E', b"MSG") => {
                if own {
                    return; // the echo of our own PM
                }
                let (Some(sid), Some(text)) = (from, m.params.first()) else { return };
                let from = self.nick_of(sid);
                let me = m.named(1, "ME") == Some("1");
                let text = text.clone();
                if m.named(1, "PM").is_some() {
                    self.event(Event::Private { from, text, me });
                } else {
                    self.event(Event::Chat { nick: from, text, me });
                }
            }
            (b'B' | b'F' | b'D' | b'E', b"SCH") => {
                if own || self.state != State::Normal {
                    return;
                }
                let Some(sid) = from else { return };
                let Some(u) = self.users.get(&sid) else { return };
                let token = m.named(0, "TO").map(str::to_owned);
                if token.as_ref().is_some_and(|t| t.len() > MAX_TOKEN_LEN) {
                    return;
                }
                let reply = match (u.ip4, u.udp4, u.supports("UDP4")) {
                    (Some(ip), Some(port), true) => ReplyTo::Udp(ip, port),
                    _ => ReplyTo::Hub(sid),
                };
                let query = Query::from_params(&m);
                let nick = u.nick.clone();
                self.event(Event::SearchRequest(IncomingSearch { nick, query, token, reply }));
            }
            (b'D' | b'E', b"RES") => {
                if own {
                    return;
                }
                let Some(u) = from.and_then(|s| self.users.get(&s)) else { return };
                if let Some(r) = result_from(&m, u.nick.clone(), u.cid.clone()) {
                    self.event(Event::SearchResult(r));
                }
            }
            (b'D' | b'E', b"CTM") => {
                if own {
                    return;
                }
                let Some(u) = from.and_then(|s| self.users.get(&s)) else { return };
                let (Some(proto), Some(port), Some(token)) = (m.params.first(), m.params.get(1), m.params.get(2))
                else {
                    return;
                };
                let tls = match proto.as_str() {
                    PROTO_PLAIN => false,
                    PROTO_TLS => true,
                    _ => return,
                };
                let (Some(ip), Ok(port)) = (u.ip4, port.parse::<u16>()) else { return };
                if token.len() > MAX_TOKEN_LEN || port == 0 {
                    return;
                }
                let ev = Event::ConnectToMe {
                    nick: u.nick.clone(),
                    cid: u.cid.clone(),
                    ip,
                    port,
                    token: token.clone(),
                    tls,
                };
                self.event(ev);
            }
            (b'D' | b'E', b"RCM") => {
                if own {
                    return;
                }
                let Some(u) = from.and_then(|s| self.users.get(&s)) else { return };
                let (Some(proto), Some(token)) = (m.params.first(), m.params.get(1)) else { return };
                let tls = match proto.as_str() {
                    PROTO_PLAIN => false,
                    PROTO_TLS => true,
                    _ => return,
                };
                if token.len() > MAX_TOKEN_LEN {
                    return;
                }
                let ev = Event::RevConnectToMe { nick: u.nick.clone(), token: token.clone(), tls };
                self.event(ev);
            }
            _ => {}
        }
    }

    fn on_status(&mut self, m: &Message) {
        let code = m.params.first().and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
        let text = m.params.get(1).cloned().unwrap_or_default();
        let severity = code / 100;
        let kind = code % 100;
        if severity == 2 && self.state != State::Normal {
            let f = match kind {
                11 => LoginFailure::HubFull,
                21 => LoginFailure::NickInvalid,
                22 => LoginFailure::NickTaken,
                23 => LoginFailure::BadPassword,
                26 => LoginFailure::RegisteredOnly,
                30..=39 => LoginFailure::Banned(text),
                _ => LoginFailure::Other(code, text),
            };
            self.fail(f);
        } else if severity == 2 {
            self.close(format!("the hub: {text} ({code})"));
        } else if !text.is_empty() {
            self.event(Event::HubMessage(text));
        }
    }

    fn features(&self) -> String {
        let mut f = Vec::new();
        if let Mode::Active { .. } = self.cfg.mode {
            f.push("TCP4");
            f.push("UDP4");
        }
        f.push("ADC0");
        if self.cfg.keyprint.is_some() {
            f.push("ADCS");
        }
        f.join(",")
    }

    fn full_inf(&self) -> Vec<u8> {
        let c = &self.cfg;
        let mut p = vec![
            format!("ID{}", self.cid),
            format!("PD{}", Cid(c.pid).to_base32()),
            format!("NI{}", c.nick),
            format!("SL{}", c.slots),
            format!("SS{}", c.share_size),
            format!("SF{}", c.shared_files),
            "HN1".to_owned(),
            format!("HR{}", u8::from(c.password.is_some())),
            "HO0".to_owned(),
            format!("VE{}", c.version),
            format!("SU{}", self.features()),
        ];
        if !c.description.is_empty() {
            p.push(format!("DE{}", c.description));
        }
        if let Some(kp) = &c.keyprint {
            p.push(format!("KP{kp}"));
        }
        if let Mode::Active { udp_port, .. } = c.mode {
            p.push("I40.0.0.0".to_owned());
            p.push(format!("U4{udp_port}"));
        }
        let from = self.sid.unwrap_or(Sid::new(0));
        Message { header: Header::B { from }, cmd: Command::INF, params: p }.encode()
    }

    fn my_sid(&self) -> Result<Sid, SendError> {
        match (self.sid, self.state) {
            (Some(s), State::Normal) => Ok(s),
            _ => Err(SendError::NotLoggedIn),
        }
    }

    /// Main chat; a `/me ` prefix becomes ME1.
    pub fn say(&mut self, text: &str) -> Result<(), SendError> {
        let sid = self.my_sid()?;
        let (text, me) = match text.strip_prefix("/me ") {
            Some(t) => (t, true),
            None => (text, false),
        };
        let mut p = vec![text.to_owned()];
        if me {
            p.push("ME1".into());
        }
        self.send(Message { header: Header::B { from: sid }, cmd: Command::MSG, params: p }.encode());
        Ok(())
    }

    /// A private message to `nick` (EMSG with PM set to our SID, as DC++ sends it).
    pub fn private_message(&mut self, nick: &str, text: &str) -> Result<(), SendError> {
        let sid = self.my_sid()?;
        let to = self.user(nick).ok_or_else(|| SendError::NoSuchUser(nick.to_owned()))?.sid;
        let (text, me) = match text.strip_prefix("/me ") {
            Some(t) => (t, true),
            None => (text, false),
        };
        let mut p = vec![text.to_owned(), format!("PM{sid}")];
        if me {
            p.push("ME1".into());
        }
        self.send(Message { header: Header::E { from: sid, to }, cmd: Command::MSG, params: p }.encode());
        Ok(())
    }

    /// A token for a search or a connection (unique within this session).
    pub fn new_token(&mut self) -> String {
        let t = self.next_token;
        self.next_token += 1;
        format!("{t}")
    }

    /// Send a search; results come back carrying the returned token.
    pub fn search(&mut self, q: &Query) -> Result<String, SendError> {
        let sid = self.my_sid()?;
        let token = self.new_token();
        let mut p = q.params();
        p.push(format!("TO{token}"));
        self.send(Message { header: Header::B { from: sid }, cmd: Command::SCH, params: p }.encode());
        Ok(token)
    }

    /// Answer `search` with `hits`: a datagram to send for an active searcher, lines to the
    /// hub (queued here) for a passive one.
    pub fn answer(&mut self, search: &IncomingSearch, hits: &[Hit], free_slots: u32) -> Vec<Datagram> {
        let Ok(sid) = self.my_sid() else { return Vec::new() };
        let Ok(cid) = Cid::parse(&self.cid) else { return Vec::new() };
        let mut out = Vec::new();
        for h in hits {
            let mut p = vec![format!("FN{}", h.path), format!("SI{}", h.size), format!("SL{free_slots}")];
            if let Some(t) = &h.tth {
                p.push(format!("TR{}", t.to_base32()));
            }
            if let Some(t) = &search.token {
                p.push(format!("TO{t}"));
            }
            match &search.reply {
                ReplyTo::Udp(ip, port) => out.push(Datagram {
                    ip: *ip,
                    port: *port,
                    payload: Message { header: Header::U { cid }, cmd: Command::RES, params: p }.encode(),
                }),
                ReplyTo::Hub(to) => self
                    .send(Message { header: Header::D { from: sid, to: *to }, cmd: Command::RES, params: p }.encode()),
            }
        }
        out
    }

    /// Ask `nick` for a client-to-client connection carrying `token`: a CTM to our port
    /// when we are active, else an RCM (the peer must be active). TLS (ADCS) when both
    /// sides advertise it; returns whether it is.
    pub fn request_connection(&mut self, nick: &str, token: &str) -> Result<bool, SendError> {
        let sid = self.my_sid()?;
        let u = self.user(nick).ok_or_else(|| SendError::NoSuchUser(nick.to_owned()))?;
        let to = u.sid;
        let tls = self.cfg.keyprint.is_some() && u.supports("ADCS");
        let proto = if tls { PROTO_TLS } else { PROTO_PLAIN };
        match self.cfg.mode {
            Mode::Active { tcp_port, .. } => self.send(
                Message::new(Header::D { from: sid, to }, Command::CTM)
                    .arg(proto)
                    .arg(tcp_port.to_string())
                    .arg(token)
                    .encode(),
            ),
            Mode::Passive if u.active() => {
                self.send(Message::new(Header::D { from: sid, to }, Command::RCM).arg(proto).arg(token).encode())
            }
            Mode::Passive => return Err(SendError::BothPassive),
        }
        Ok(tls)
    }

    /// Answer an RCM: a CTM to our port (we must be active), with TLS if the RCM asked for
    /// it and we can.
    pub fn connect_to_me(&mut self, nick: &str, token: &str, tls: bool) -> Result<(), SendError> {
        let sid = self.my_sid()?;
        let tls = tls && self.cfg.keyprint.is_some();
        let to = self.user(nick).ok_or_else(|| SendError::NoSuchUser(nick.to_owned()))?.sid;
        let Mode::Active { tcp_port, .. } = self.cfg.mode else { return Err(SendError::BothPassive) };
        let proto = if tls { PROTO_TLS } else { PROTO_PLAIN };
        self.send(
            Message::new(Header::D { from: sid, to }, Command::CTM)
                .arg(proto)
                .arg(tcp_port.to_string())
                .arg(token)
                .encode(),
        );
        Ok(())
    }

    /// A new share size: an INF update with SS and SF.
    pub fn set_share(&mut self, size: u64, files: u64) {
        self.cfg.share_size = size;
        self.cfg.shared_files = files;
        if let Ok(sid) = self.my_sid() {
            self.send(
                Message::new(Header::B { from: sid }, Command::INF)
                    .named_arg("SS", size.to_string())
                    .named_arg("SF", files.to_string())
                    .encode(),
            );
        }
    }
}

impl User {
    fn new(sid: Sid) -> User {
        User {
            sid,
            cid: String::new(),
            nick: String::new(),
            description: String::new(),
            share_size: 0,
            shared_files: 0,
            slots: None,
            free_slots: None,
            client: String::new(),
            ip4: None,
            udp4: None,
            features: Vec::new(),
            ct: 0,
            away: 0,
            keyprint: None,
        }
    }
}

fn apply_inf(u: &mut User, m: &Message) {
    for p in &m.params {
        if p.len() < 2 || !p.is_char_boundary(2) {
            continue;
        }
        let (code, v) = p.split_at(2);
        match code {
            "ID" => u.cid = v.to_owned(),
            "NI" => u.nick = v.to_owned(),
            "DE" => u.description = v.to_owned(),
            "SS" => u.share_size = v.parse().unwrap_or(0),
            "SF" => u.shared_files = v.parse().unwrap_or(0),
            "SL" => u.slots = v.parse().ok(),
            "FS" => u.free_slots = v.parse().ok(),
            "VE" => u.client = v.to_owned(),
            "I4" => u.ip4 = v.parse().ok().filter(|ip: &Ipv4Addr| !ip.is_unspecified()),
            "U4" => u.udp4 = v.parse().ok().filter(|&p: &u16| p != 0),
            "SU" => u.features = v.split(',').filter(|f| !f.is_empty()).take(64).map(str::to_owned).collect(),
            "CT" => u.ct = v.parse().unwrap_or(0),
            "AW" => u.away = v.parse().unwrap_or(0),
            "KP" => u.keyprint = (!v.is_empty() && v.len() <= 128).then(|| v.to_owned()),
            _ => {}
        }
    }
}

fn result_from(m: &Message, nick: String, cid: String) -> Option<SearchResult> {
    Some(SearchResult {
        nick,
        cid,
        path: m.named(0, "FN")?.to_owned(),
        size: m.named(0, "SI").and_then(|s| s.parse().ok()).unwrap_or(0),
        slots: m.named(0, "SL").and_then(|s| s.parse().ok()),
        free_slots: m.named(0, "FS").and_then(|s| s.parse().ok()),
        tth: m.named(0, "TR").and_then(|t| Tth::from_base32(t).ok()),
        token: m.named(0, "TO").map(str::to_owned),
    })
}

/// A URES datagram (an active search's result): the sender's CID and the result (its
/// nick is looked up by the caller, by CID, in the hub's user list).
pub fn parse_result_datagram(data: &[u8]) -> Option<(String, SearchResult)> {
    if data.len() > MAX_HUB_LINE {
        return None;
    }
    let line = data.strip_suffix(b"\n").unwrap_or(data);
    let m = Message::parse(line).ok()?;
    let Header::U { cid } = &m.header else { return None };
    if m.cmd != Command::RES {
        return None;
    }
    let cid = cid.to_base32();
    let r = result_from(&m, String::new(), cid.clone())?;
    Some((cid, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipeer_nmdc::tth::tiger;

    fn base32_24(b: &[u8; 24]) -> String {
        Tth(*b).to_base32()
    }

    fn cfg(mode: Mode) -> Config {
        Config {
            nick: "me".into(),
            pid: [7; 24],
            password: None,
            description: "a b".into(),
            share_size: 100,
            shared_files: 2,
            slots: 3,
            mode,
            version: "omnipeer 1".into(),
            keyprint: None,
        }
    }

    fn drain(s: &mut HubSession) -> (Vec<String>, Vec<Event>) {
        let (mut lines, mut evs) = (Vec::new(), Vec::new());
        while let Some(o) = s.poll_output() {
            match o {
                Output::Transmit(b) => lines.push(String::from_utf8(b).unwrap()),
                Output::Event(e) => evs.push(e),
                Output::Timeout(_) => break,
            }
        }
        (lines, evs)
    }

    fn logged_in(mode: Mode) -> (HubSession, Instant) {
        let now = Instant::now();
        let mut s = HubSession::new(cfg(mode), now);
        drain(&mut s);
        let cid = s.cid().to_owned();
        s.handle_input(
            now,
            format!(
                "ISUP ADBASE ADTIGR\nISID AAAB\nIINF CT32 NIhub\nBINF BBBB IDX NIbob I4127.0.0.2 U45000 SUTCP4,UDP4\nBINF CCCC IDY NIcarol SUADC0\nBINF AAAB ID{cid} NIme\n"
            )
            .as_bytes(),
        );
        (s, now)
    }

    #[test]
    fn login_sends_sup_then_inf_with_cid_of_pid() {
        let now = Instant::now();
        let mut s = HubSession::new(cfg(Mode::Active { tcp_port: 4000, udp_port: 4001 }), now);
        let (lines, _) = drain(&mut s);
        assert_eq!(lines, vec!["HSUP ADBASE ADTIGR\n"]);
        s.handle_input(now, b"ISUP ADBASE ADTIGR\nISID AAAB\n");
        let (lines, _) = drain(&mut s);
        let pid = base32_24(&[7; 24]);
        let cid = Tth(tiger(&[7; 24])).to_base32();
        assert_eq!(
            lines,
            vec![format!(
                "BINF AAAB ID{cid} PD{pid} NIme SL3 SS100 SF2 HN1 HR0 HO0 VEomnipeer\\s1 SUTCP4,UDP4,ADC0 DEa\\sb I40.0.0.0 U44001\n"
            )]
        );
        s.handle_input(now, format!("BINF BBBB IDX NIbob\nBINF AAAB ID{cid} NIme\n").as_bytes());
        let (_, evs) = drain(&mut s);
        assert_eq!(evs, vec![Event::LoggedIn]);
        assert!(s.logged_in());
        assert_eq!(s.user("BOB").unwrap().sid.to_string(), "BBBB");
    }

    #[test]
    fn password_is_tiger_of_password_and_salt() {
        let now = Instant::now();
        let mut c = cfg(Mode::Passive);
        c.password = Some("pw".into());
        let mut s = HubSession::new(c, now);
        drain(&mut s);
        s.handle_input(now, b"ISUP ADBASE ADTIGR\nISID AAAB\n");
        drain(&mut s);
        let salt = [1u8; 24];
        let salt32 = base32_24(&salt);
        s.handle_input(now, format!("IGPA {salt32}\n").as_bytes());
        let (lines, _) = drain(&mut s);
        let mut b = b"pw".to_vec();
        b.extend_from_slice(&salt);
        assert_eq!(lines, vec![format!("HPAS {}\n", base32_24(&tiger(&b)))]);
        s.handle_input(now, b"ISTA 223 Bad\\spassword\n");
        let (_, evs) = drain(&mut s);
        assert_eq!(evs, vec![Event::LoginFailed(LoginFailure::BadPassword)]);
    }

    #[test]
    fn gpa_without_password_and_taken_nick_fail_the_login() {
        let now = Instant::now();
        let mut s = HubSession::new(cfg(Mode::Passive), now);
        s.handle_input(now, b"ISUP ADBASE\nISID AAAB\nIGPA AAAA\n");
        assert!(drain(&mut s).1.contains(&Event::LoginFailed(LoginFailure::PasswordRequired)));
        let mut s = HubSession::new(cfg(Mode::Passive), now);
        s.handle_input(now, b"ISUP ADBASE\nISID AAAB\nISTA 222 Nick\\staken\n");
        assert!(drain(&mut s).1.contains(&Event::LoginFailed(LoginFailure::NickTaken)));
    }

    #[test]
    fn login_times_out() {
        let now = Instant::now();
        let mut s = HubSession::new(cfg(Mode::Passive), now);
        drain(&mut s);
        s.handle_timeout(now + LOGIN_TIMEOUT);
        assert!(matches!(drain(&mut s).1.as_slice(), [Event::LoginFailed(LoginFailure::Other(..))]));
    }

    #[test]
    fn chat_pm_and_me() {
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        s.say("hi there").unwrap();
        s.say("/me waves").unwrap();
        s.private_message("bob", "psst").unwrap();
        let (lines, _) = drain(&mut s);
        assert_eq!(lines, vec!["BMSG AAAB hi\\sthere\n", "BMSG AAAB waves ME1\n", "EMSG AAAB BBBB psst PMAAAB\n"]);
        s.handle_input(now, b"BMSG BBBB hello\\sall\nEMSG BBBB AAAB secret PMBBBB\nEMSG AAAB BBBB psst PMAAAB\n");
        let (_, evs) = drain(&mut s);
        assert_eq!(
            evs,
            vec![
                Event::Chat { nick: "bob".into(), text: "hello all".into(), me: false },
                Event::Private { from: "bob".into(), text: "secret".into(), me: false },
            ]
        );
        assert_eq!(s.private_message("nobody", "x"), Err(SendError::NoSuchUser("nobody".into())));
    }

    #[test]
    fn users_join_and_leave() {
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        s.handle_input(now, b"BINF DDDD IDZ NIdave\nIQUI BBBB\n");
        let (_, evs) = drain(&mut s);
        assert_eq!(evs, vec![Event::UserJoined("dave".into()), Event::UserLeft("bob".into())]);
        assert!(s.user("bob").is_none());
        assert!(s.user_by_cid("X").is_none(), "bob's CID left with him");
        assert_eq!(s.user_by_cid("Z").map(|u| u.nick.as_str()), Some("dave"));
    }

    #[test]
    fn search_out_and_results_in() {
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        let t = s.search(&Query::text("foo bar -baz")).unwrap();
        let root = Tth([3; 24]);
        let t2 = s.search(&Query { tth: Some(root), ..Query::default() }).unwrap();
        let (lines, _) = drain(&mut s);
        assert_eq!(
            lines,
            vec![format!("BSCH AAAB ANfoo ANbar NObaz TO{t}\n"), format!("BSCH AAAB TR{} TO{t2}\n", root.to_base32())]
        );
        s.handle_input(
            now,
            format!("DRES BBBB AAAB FN/share/foo\\sbar.txt SI12 SL2 TR{} TO{t}\n", root.to_base32()).as_bytes(),
        );
        let (_, evs) = drain(&mut s);
        assert_eq!(
            evs,
            vec![Event::SearchResult(SearchResult {
                nick: "bob".into(),
                cid: "X".into(),
                path: "/share/foo bar.txt".into(),
                size: 12,
                slots: Some(2),
                free_slots: None,
                tth: Some(root),
                token: Some(t.clone()),
            })]
        );
        let x = base32_24(&[4; 24]);
        let (cid, r) = parse_result_datagram(format!("URES {x} FN/a SI5 TO{t}\n").as_bytes()).unwrap();
        assert_eq!((cid, r.path.as_str(), r.size), (x, "/a", 5));
    }

    #[test]
    fn searches_in_are_answered_by_udp_or_through_the_hub() {
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        s.handle_input(now, b"BSCH BBBB ANfoo TOt1\nBSCH CCCC ANfoo EXtxt TOt2\nBSCH AAAB ANfoo\n");
        let (_, evs) = drain(&mut s);
        let [Event::SearchRequest(a), Event::SearchRequest(b)] = evs.as_slice() else { panic!("{evs:?}") };
        assert_eq!(a.reply, ReplyTo::Udp("127.0.0.2".parse().unwrap(), 5000));
        assert_eq!(b.reply, ReplyTo::Hub(Sid::parse("CCCC").unwrap()));
        assert!(b.query.matches_file("/d/foo.txt", 1, &Tth([0; 24])));
        assert!(!b.query.matches_file("/d/foo.mp3", 1, &Tth([0; 24])));
        let hit = Hit { path: "/d/foo.txt".into(), size: 9, tth: Some(Tth([5; 24])) };
        let dg = s.answer(a, std::slice::from_ref(&hit), 2);
        assert_eq!(
            String::from_utf8(dg[0].payload.clone()).unwrap(),
            format!("URES {} FN/d/foo.txt SI9 SL2 TR{} TOt1\n", s.cid(), Tth([5; 24]).to_base32())
        );
        assert!(s.answer(b, &[hit], 2).is_empty());
        let (lines, _) = drain(&mut s);
        assert_eq!(lines, vec![format!("DRES AAAB CCCC FN/d/foo.txt SI9 SL2 TR{} TOt2\n", Tth([5; 24]).to_base32())]);
    }

    #[test]
    fn connection_requests() {
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        assert_eq!(s.request_connection("bob", "tok"), Ok(false));
        assert_eq!(s.request_connection("carol", "t"), Err(SendError::BothPassive));
        let (lines, _) = drain(&mut s);
        assert_eq!(lines, vec!["DRCM AAAB BBBB ADC/1.0 tok\n"]);
        s.handle_input(now, b"DCTM BBBB AAAB ADC/1.0 4111 tok\nDRCM CCCC AAAB ADCS/0.10 t9\n");
        let (_, evs) = drain(&mut s);
        assert_eq!(
            evs,
            vec![
                Event::ConnectToMe {
                    nick: "bob".into(),
                    cid: "X".into(),
                    ip: "127.0.0.2".parse().unwrap(),
                    port: 4111,
                    token: "tok".into(),
                    tls: false
                },
                Event::RevConnectToMe { nick: "carol".into(), token: "t9".into(), tls: true },
            ]
        );
        let (mut a, _) = logged_in(Mode::Active { tcp_port: 4000, udp_port: 4000 });
        drain(&mut a);
        assert_eq!(a.request_connection("carol", "k"), Ok(false));
        assert_eq!(drain(&mut a).0, vec!["DCTM AAAB CCCC ADC/1.0 4000 k\n"]);
        // With a certificate, TLS to a peer that advertises ADCS (and its KP kept).
        let now = Instant::now();
        let mut c = cfg(Mode::Active { tcp_port: 4000, udp_port: 4000 });
        c.keyprint = Some("SHA256/ME".into());
        let mut t = HubSession::new(c, now);
        let cid = t.cid().to_owned();
        t.handle_input(
            now,
            format!("ISUP ADBASE\nISID AAAB\nBINF DDDD IDW NIdan SUADC0,ADCS KPSHA256/DAN\nBINF AAAB ID{cid} NIme\n")
                .as_bytes(),
        );
        let (lines, _) = drain(&mut t);
        assert!(lines[1].contains(" SUTCP4,UDP4,ADC0,ADCS ") && lines[1].contains(" KPSHA256/ME"), "{}", lines[1]);
        assert_eq!(t.user("dan").unwrap().keyprint.as_deref(), Some("SHA256/DAN"));
        assert_eq!(t.request_connection("dan", "k"), Ok(true));
        assert_eq!(drain(&mut t).0, vec!["DCTM AAAB DDDD ADCS/0.10 4000 k\n"]);
    }

    #[test]
    fn fatal_status_and_long_lines_end_the_session() {
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        s.handle_input(now, b"ISTA 000 welcome\n");
        assert_eq!(drain(&mut s).1, vec![Event::HubMessage("welcome".into())]);
        s.handle_input(now, &vec![b'x'; MAX_HUB_LINE + 1]);
        assert!(matches!(drain(&mut s).1.as_slice(), [Event::Closed(_)]));
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        s.handle_input(now, b"IQUI AAAB MSkicked\n");
        assert_eq!(drain(&mut s).1, vec![Event::Closed("kicked".into())]);
    }

    #[test]
    fn keepalive_after_idle() {
        let (mut s, now) = logged_in(Mode::Passive);
        drain(&mut s);
        s.handle_timeout(now + KEEPALIVE);
        assert_eq!(drain(&mut s).0, vec!["\n"]);
    }
}
