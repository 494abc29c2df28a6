//! The client side of a hub connection, as a sans-IO state machine: [`HubSession`].
//!
//! # Login (docs/protocols/nmdc.md#hub-login, observed with ncdc, EiskaltDC++ and microdc2)
//!
//! ```text
//! H: $Lock EXTENDEDPROTOCOL<random> Pk=<something>|   [$HubName <name>|]
//! C: $Supports NoGetINFO NoHello UserIP2 TTHSearch ZPipe0|$Key <key>|$ValidateNick <nick>|   (together)
//! H: $Supports NoGetINFO NoHello UserIP2|
//!    $GetPass|                 → C: $MyPass <password>|   → H: $BadPass| + close, or on
//!    $ValidateDenide <nick>|   nick taken or reserved          (login failed)
//!    $HubIsFull|                                               (login failed)
//!    $ForceMove <address>|     redirect                        (login failed)
//! H: $Hello <nick>|            the first $Hello with our nick: logged in
//! C: $Version 1,0091|$GetNickList|$MyINFO $ALL <nick> <description><tag>$ $<connection><flag>$<email>$<share>$|
//! H: one $MyINFO per user (ourselves included), $OpList a$$b$$|, $UserIP <nick> <ip>$$|, MOTD chat
//! ```
//!
//! `$Supports` is sent only when the hub's lock starts with `EXTENDEDPROTOCOL`. Our tag is
//! `<omnipeer V:<version>,M:<A|P>,H:<normal>/<registered>/<op>,S:<slots>>`.
//!
//! # After login
//!
//! ```text
//! H: $MyINFO $ALL …|  $Quit <nick>|  $NickList a$$b$$|  $OpList a$$|  $UserIP nick ip$$|  $Hello <nick>|
//! H: <nick> text|                           main chat (text with $ | & escaped as &#36; &#124; &amp;)
//! H: $To: <us> From: <from> $<<from>> text| private message
//! H: $Search <ip>:<udp port> <query>|  $Search Hub:<nick> <query>|
//! H: $SR <nick> <path>\x05<size> <free>/<total>\x05TTH:<root> (<hub ip>:<port>)|   (passive results)
//! H: $ConnectToMe <us> <ip>:<port>[S]|      connect there (S: TLS wanted)
//! H: $RevConnectToMe <from> <us>|           a passive user asks for our $ConnectToMe
//! H: $HubName <name>|  $HubTopic <topic>|  $ForceMove <address>|  |  (a lone | is a keep-alive)
//! ```
//!
//! # TLS and compression
//!
//! With [`SessionConfig::tls`] (we can run TLS client-to-client connections) the session
//! adds `TLS` to `$Supports`, sets the TLS bit (0x10) of our `$MyINFO` flag, and asks for
//! TLS (`$ConnectToMe <nick> <ip>:<port>S|`) from users whose flag has that bit, as DC++
//! does; a `$ConnectToMe` with `S` is reported with `tls: true`. The hub connection's own
//! TLS (`nmdcs://`) is the driver's business: the session sees the same bytes.
//!
//! `ZPipe0` in our `$Supports` lets PtokaX and Verlihub compress: `$ZOn|` is followed by a
//! zlib stream whose inflated bytes are more commands; at the stream's end plain commands
//! resume. Inflated bytes are handed to the command reader [`ZPIPE_CHUNK`] at a time (so
//! commands are parsed as they come out, never held whole) and one stream may inflate to at
//! most [`MAX_ZPIPE_INFLATED`] bytes; a corrupt stream or one over the limit ends the
//! session ([`FramingError::Inflate`]).
//!
//! Keep-alive: like ncdc, we send a lone `|` after [`KEEPALIVE_INTERVAL`] without anything
//! received from the hub, and one more every interval while the silence lasts; a lone `|`
//! from the hub is not answered.
//!
//! # Text
//!
//! Plain strings in this API (nicks, chat, private messages, hub name, topic, password,
//! description) are real text, UTF-8; the session converts them from and to wire strings
//! with [`crate::text::wire_to_utf8`] / [`crate::text::utf8_to_wire`] (UTF-8 hubs, the
//! common case). Values of the crate's command types — [`MyInfo`], [`SearchQuery`],
//! [`SearchOrigin`], [`SearchResult`] — keep wire strings as everywhere in the crate, so
//! they go straight into [`crate::search::Matcher`] and [`crate::search::Responder`].
//! A nick passed to a method is matched against the users seen (by their UTF-8 form), so a
//! non-UTF-8 nick on a Latin-1 hub still reaches the right user.

use crate::command::{
    flags, is_valid_nick, Command, HubCounts, Mode, MyInfo, ParseError, SearchOrigin, SearchQuery, SearchResult, Tag,
};
use crate::framing::{CommandReader, FramingError};
use crate::limits::{MAX_COMMAND, MAX_LIST_COMMAND, MAX_LIST_ITEMS, MAX_NICK};
use crate::lock::{is_extended, lock_to_key};
use crate::text::{utf8_to_wire, wire_to_utf8};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long the hub may take from connect to `$Hello` (our choice; hub.rs gives clients
/// the same 60 s).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Silence from the hub after which we send a lone `|` (ncdc: 2 minutes).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(120);
/// The `$Supports` we send to hubs.
/// `ZPipe0`: the hub may send `$ZOn|` and a zlib stream (module doc).
pub const DEFAULT_SUPPORTS: &[&str] = &["NoGetINFO", "NoHello", "UserIP2", "TTHSearch", "ZPipe0"];
/// Most bytes one `$ZOn` zlib stream may inflate to. PtokaX compresses bursts like the user
/// list at login (a `$MyINFO` is under 200 bytes: 32 MiB is over 150 000 users).
pub const MAX_ZPIPE_INFLATED: usize = 32 * 1024 * 1024;
/// Inflated bytes produced before the commands in them are parsed.
pub const ZPIPE_CHUNK: usize = 64 * 1024;
/// The `$Version` every client sends.
pub const PROTOCOL_VERSION: &str = "1,0091";
/// Most users tracked; further ones are not added.
pub const MAX_USERS: usize = MAX_LIST_ITEMS;
/// Longest `$MyINFO` kept for a user (real ones are under 200 bytes); longer ones are
/// ignored.
pub const MAX_MYINFO: usize = 4096;
/// Longest description, e-mail, connection, client name or version we send, in wire bytes.
pub const MAX_FIELD: usize = 1024;

/// How peers reach us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// We accept connections and search results by UDP.
    Active {
        /// Our address as others see it; `None`: learn it from the hub's `$UserIP`.
        ip: Option<IpAddr>,
        /// Where we accept client-to-client connections.
        tcp_port: u16,
        /// Where we receive `$SR` datagrams.
        udp_port: u16,
    },
    /// We accept nothing: peers get our `$RevConnectToMe`, results come through the hub.
    Passive,
}

/// What the session sends about us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our nick (UTF-8).
    pub nick: String,
    /// The password for a registered nick.
    pub password: Option<String>,
    /// `$MyINFO` description (UTF-8).
    pub description: String,
    /// Connection speed text, e.g. `100` or `LAN(T1)`.
    pub connection: String,
    /// E-mail (UTF-8).
    pub email: String,
    /// Shared bytes.
    pub share_size: u64,
    /// Upload slots.
    pub slots: u32,
    /// Active or passive.
    pub mode: ClientMode,
    /// Client name in the tag.
    pub client_name: String,
    /// Client version in the tag.
    pub client_version: String,
    /// The tag's `H:` counts (the driver knows on how many hubs we are, and as what).
    pub hubs: HubCounts,
    /// Our `$Supports` features.
    pub supports: Vec<String>,
    /// See [`LOGIN_TIMEOUT`].
    pub login_timeout: Duration,
    /// See [`KEEPALIVE_INTERVAL`].
    pub keepalive: Duration,
    /// We can run TLS client-to-client connections: `TLS` in `$Supports`, the TLS flag bit,
    /// `$ConnectToMe …S` to users with that bit.
    pub tls: bool,
}

impl SessionConfig {
    /// A passive configuration with defaults: no password, connection `100`, 3 slots,
    /// `omnipeer` and this crate's version in the tag, `H:1/0/0`, [`DEFAULT_SUPPORTS`].
    pub fn new(nick: &str) -> SessionConfig {
        SessionConfig {
            nick: nick.to_owned(),
            password: None,
            description: String::new(),
            connection: "100".to_owned(),
            email: String::new(),
            share_size: 0,
            slots: 3,
            mode: ClientMode::Passive,
            client_name: "omnipeer".to_owned(),
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            hubs: HubCounts { normal: 1, registered: 0, op: 0 },
            supports: DEFAULT_SUPPORTS.iter().map(|s| (*s).to_owned()).collect(),
            login_timeout: LOGIN_TIMEOUT,
            keepalive: KEEPALIVE_INTERVAL,
            tls: false,
        }
    }
}

/// A configuration the session cannot send.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The nick is empty, too long, or has a space, `$`, `|` or control character.
    #[error("invalid nick {0:?}: use 1 to {MAX_NICK} bytes without spaces, '$', '|' or control characters")]
    InvalidNick(String),
    /// Another field cannot be sent.
    #[error("invalid {field}: {why}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

/// Why the login did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// `$BadPass`.
    BadPassword,
    /// `$GetPass` but no password configured.
    PasswordRequired,
    /// `$ValidateDenide`: the nick is taken, reserved or not allowed.
    NickTaken,
    /// `$HubIsFull`.
    HubFull,
    /// `$ForceMove <address>`: try that hub instead.
    Redirected(String),
    /// The hub's `$Lock` gives no key (too short or too long).
    BadLock,
    /// No `$Hello` in time.
    Timeout,
    /// A command longer than the limit.
    Framing(FramingError),
    /// The hub closed the connection; its last line, if that was a message (a ban reason).
    HubClosed {
        /// The message (UTF-8).
        last_message: Option<String>,
    },
}

/// Why a logged-in session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// `$ForceMove <address>`.
    Redirected(String),
    /// The hub closed the connection right after a message about a kick (PtokaX, Verlihub
    /// and our hub say "…kicked…" to the victim, then close).
    Kicked {
        /// That message (UTF-8).
        message: String,
    },
    /// The hub closed the connection; its last line, if that was a message.
    HubClosed {
        /// The message (UTF-8).
        last_message: Option<String>,
    },
    /// A command longer than the limit.
    Framing(FramingError),
}

/// A user on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The nick (UTF-8).
    pub nick: String,
    /// The last `$MyINFO` (wire strings); `None` until one arrives.
    pub info: Option<MyInfo>,
    /// Listed in `$OpList`.
    pub op: bool,
    /// From `$UserIP`.
    pub ip: Option<IpAddr>,
}

/// Something that happened on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `$HubName`.
    HubName(String),
    /// `$HubTopic`.
    HubTopic(String),
    /// Our `$Hello` came; `$Version`, `$GetNickList` and `$MyINFO` were sent.
    LoggedIn,
    /// The login failed; close the connection once the transmits before this are written.
    LoginFailed(LoginFailure),
    /// The first `$MyINFO` of a user (also ours).
    UserJoined {
        /// The nick (UTF-8).
        nick: String,
        /// The info (wire strings).
        info: MyInfo,
    },
    /// A further `$MyINFO`, or the user became an operator.
    UserUpdated {
        /// The nick (UTF-8).
        nick: String,
        /// The info (wire strings).
        info: MyInfo,
    },
    /// `$Quit`. Users known only from `$NickList` never got a [`Event::UserJoined`].
    UserLeft {
        /// The nick (UTF-8).
        nick: String,
    },
    /// Main chat.
    Chat {
        /// The speaker (UTF-8).
        nick: String,
        /// The message (UTF-8, unescaped).
        text: String,
    },
    /// A hub line that is not `<nick> text` (MOTD lines).
    HubMessage(String),
    /// A private message to us.
    PrivateMessage {
        /// The sender (UTF-8).
        from: String,
        /// The message (UTF-8, unescaped).
        text: String,
    },
    /// Someone else searches: match with [`crate::search::Matcher`], answer with
    /// [`HubSession::send_search_result`]. Our own searches are not reported, nor passive
    /// searches while we are passive (neither side could connect).
    SearchRequest {
        /// Where the results go.
        origin: SearchOrigin,
        /// What is searched (wire strings).
        query: SearchQuery,
    },
    /// A result the hub routed to us (our passive search).
    SearchResult(SearchResult),
    /// `$ConnectToMe`: open a client-to-client connection to this address and run
    /// [`crate::handshake::CcHandshake`] as the connector.
    ConnectToMe {
        /// The address (a numeric IP).
        host: String,
        /// The port.
        port: u16,
        /// The `S` suffix: TLS wanted.
        tls: bool,
    },
    /// `$RevConnectToMe`: a passive user wants a connection; answer with
    /// [`HubSession::connect_to_me`] if we are active.
    RevConnectToMe {
        /// Who asks (UTF-8).
        from: String,
    },
    /// A line from the hub that does not parse; it was skipped.
    BadCommand(ParseError),
    /// The logged-in session ended; close the connection.
    Closed(CloseReason),
}

/// What to do next.
// Events carry a `MyInfo` or `SearchResult` inline; outputs are short-lived, so no boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the hub.
    Transmit(Vec<u8>),
    /// Something happened.
    Event(Event),
    /// Call [`HubSession::handle_timeout`] at this instant unless input comes first.
    Timeout(Instant),
}

/// A call the session cannot carry out; nothing was sent.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SessionError {
    /// Only possible after [`Event::LoggedIn`].
    #[error("not logged in yet")]
    NotLoggedIn,
    /// The session is over.
    #[error("the hub connection is closed")]
    Closed,
    /// Not a nick that can be sent.
    #[error("invalid nick {0:?}")]
    InvalidNick(String),
    /// The command would be longer than other clients accept.
    #[error("message too long: at most {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// Active mode but our IP is unknown (not configured, no `$UserIP` from the hub yet).
    #[error("our IP address is unknown: set it in the configuration")]
    NoAddress,
    /// Passive mode cannot do this.
    #[error("not possible in passive mode")]
    Passive,
}

/// A `$SR` for an active searcher: send `payload` as one UDP datagram to `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The searcher's address.
    pub host: String,
    /// Its UDP port.
    pub port: u16,
    /// `$SR …|`.
    pub payload: Vec<u8>,
}

/// A `$SR` datagram received on our UDP port (an active search's result).
pub fn parse_sr_datagram(datagram: &[u8]) -> Result<SearchResult, ParseError> {
    if datagram.len() > MAX_COMMAND + 1 {
        return Err(ParseError::TooLong { limit: MAX_COMMAND });
    }
    let body = datagram.strip_suffix(b"|").unwrap_or(datagram);
    match Command::parse(body)? {
        Command::Sr(r) => Ok(r),
        _ => Err(ParseError::Invalid { command: "$SR", field: "command" }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitLock,
    AwaitHello { password_sent: bool },
    Online,
    Done,
}

/// The client side of one hub connection.
#[derive(Debug)]
pub struct HubSession {
    cfg: SessionConfig,
    /// Our nick as a wire string.
    nick: String,
    phase: Phase,
    reader: CommandReader,
    out: VecDeque<Output>,
    login_deadline: Instant,
    /// Last time the hub sent anything, or we sent a keep-alive.
    last_activity: Instant,
    hub_supports: Vec<String>,
    hub_name: Option<String>,
    /// Wire nick → user.
    users: HashMap<String, User>,
    /// UTF-8 nick → wire nick.
    names: HashMap<String, String>,
    learned_ip: Option<IpAddr>,
    /// Inflating a `$ZOn` stream, and how many bytes it gave so far.
    zpipe: Option<(flate2::Decompress, usize)>,
    /// The last line from the hub, when it was a message (UTF-8).
    last_message: Option<String>,
    registered: bool,
}

impl HubSession {
    /// A session for a connection opened at `now`. The hub speaks first (`$Lock`).
    pub fn new(cfg: SessionConfig, now: Instant) -> Result<HubSession, ConfigError> {
        let nick = utf8_to_wire(&cfg.nick);
        if !is_valid_nick(&nick) {
            return Err(ConfigError::InvalidNick(cfg.nick.clone()));
        }
        check_config(&cfg)?;
        Ok(HubSession {
            login_deadline: now + cfg.login_timeout,
            last_activity: now,
            cfg,
            nick,
            phase: Phase::AwaitLock,
            reader: CommandReader::with_limit(MAX_LIST_COMMAND),
            out: VecDeque::new(),
            hub_supports: Vec::new(),
            hub_name: None,
            users: HashMap::new(),
            names: HashMap::new(),
            learned_ip: None,
            zpipe: None,
            last_message: None,
            registered: false,
        })
    }

    // ---- state ----------------------------------------------------------------------

    /// Our nick (UTF-8).
    pub fn nick(&self) -> &str {
        &self.cfg.nick
    }

    /// Whether [`Event::LoggedIn`] happened and the session is not over.
    pub fn is_logged_in(&self) -> bool {
        self.phase == Phase::Online
    }

    /// Whether the session is over (login failed or closed).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether we logged in with a password.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// The hub's name (UTF-8), once sent.
    pub fn hub_name(&self) -> Option<&str> {
        self.hub_name.as_deref()
    }

    /// Whether the hub's `$Supports` listed `feature`.
    pub fn hub_supports(&self, feature: &str) -> bool {
        self.hub_supports.iter().any(|f| f == feature)
    }

    /// Users online, ourselves included once the hub sent our `$MyINFO`.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// A user by nick (UTF-8).
    pub fn user(&self, nick: &str) -> Option<&User> {
        self.users.get(&self.resolve(nick))
    }

    /// Whether `nick`'s `$MyINFO` flag says it runs TLS client-to-client connections.
    pub fn wants_tls(&self, nick: &str) -> bool {
        self.user(nick).and_then(|u| u.info.as_ref()).is_some_and(|i| i.flag & flags::TLS != 0)
    }

    /// Whether `nick` is an operator (listed in `$OpList`).
    pub fn is_op(&self, nick: &str) -> bool {
        self.user(nick).is_some_and(|u| u.op)
    }

    /// The IP we announce in active mode: the configured one, else what the hub's
    /// `$UserIP` said about us.
    pub fn our_ip(&self) -> Option<IpAddr> {
        match self.cfg.mode {
            ClientMode::Active { ip: Some(ip), .. } => Some(ip),
            _ => self.learned_ip,
        }
    }

    /// Our `$MyINFO` as it is sent.
    pub fn my_info(&self) -> MyInfo {
        let mode = match self.cfg.mode {
            ClientMode::Active { .. } => Mode::Active,
            ClientMode::Passive => Mode::Passive,
        };
        MyInfo {
            nick: self.nick.clone(),
            description: utf8_to_wire(&self.cfg.description),
            tag: Some(Tag {
                client: utf8_to_wire(&self.cfg.client_name),
                version: Some(utf8_to_wire(&self.cfg.client_version)),
                mode: Some(mode),
                hubs: Some(self.cfg.hubs),
                slots: Some(self.cfg.slots),
                extra: Vec::new(),
            }),
            connection: utf8_to_wire(&self.cfg.connection),
            flag: if self.cfg.tls { flags::NORMAL | flags::TLS } else { flags::NORMAL },
            email: utf8_to_wire(&self.cfg.email),
            share_size: self.cfg.share_size,
        }
    }

    // ---- driver input ---------------------------------------------------------------

    /// Bytes from the hub.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_done() {
            return;
        }
        if self.phase != Phase::Online && now >= self.login_deadline {
            return self.fail(LoginFailure::Timeout);
        }
        self.last_activity = now;
        if self.zpipe.is_none() {
            self.reader.push(bytes);
            if self.drain_commands(now) {
                // `$ZOn|`: what follows it is compressed.
                let rest = self.reader.take_rest();
                self.inflate(now, &rest);
            }
        } else {
            self.inflate(now, bytes);
        }
    }

    /// Parse and handle the buffered commands. Returns true when a `$ZOn` started a zlib
    /// stream: the bytes still buffered are compressed.
    fn drain_commands(&mut self, now: Instant) -> bool {
        while !self.is_done() {
            let raw = match self.reader.next_command() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => {
                    self.framing_error(e);
                    return false;
                }
            };
            if raw == b"$ZOn" {
                // A `$ZOn` inside a compressed stream changes nothing.
                if self.zpipe.is_none() {
                    self.zpipe = Some((flate2::Decompress::new(true), 0));
                    return true;
                }
                continue;
            }
            match Command::parse(&raw) {
                Ok(cmd) => self.on_command(now, cmd, raw.len()),
                Err(e) => {
                    self.last_message = None;
                    self.event(Event::BadCommand(e));
                }
            }
        }
        false
    }

    /// Bytes of a `$ZOn` stream (and whatever follows its end, plain).
    fn inflate(&mut self, now: Instant, input: &[u8]) {
        let mut input: std::borrow::Cow<'_, [u8]> = input.into();
        let mut pos = 0;
        let mut out = Vec::with_capacity(ZPIPE_CHUNK);
        while !self.is_done() {
            let Some((z, total)) = self.zpipe.as_mut() else {
                // The stream ended: the rest is plain, and may hold another `$ZOn`.
                self.reader.push(&input[pos..]);
                if !self.drain_commands(now) {
                    return;
                }
                input = self.reader.take_rest().into();
                pos = 0;
                continue;
            };
            out.clear();
            let before = z.total_in();
            let status = z.decompress_vec(&input[pos..], &mut out, flate2::FlushDecompress::None);
            let used = (z.total_in() - before) as usize;
            pos += used;
            *total += out.len();
            let over = *total > MAX_ZPIPE_INFLATED;
            let ended = match status {
                Err(_) => return self.framing_error(FramingError::Inflate { why: "corrupt zlib stream after $ZOn" }),
                Ok(flate2::Status::StreamEnd) => true,
                Ok(_) => false,
            };
            if over {
                return self
                    .framing_error(FramingError::Inflate { why: "a $ZOn stream inflates past MAX_ZPIPE_INFLATED" });
            }
            if ended {
                self.zpipe = None;
            }
            self.reader.push(&out);
            // A `$ZOn` among inflated commands is ignored (the stream is already on).
            self.drain_commands(now);
            // Input used up and the output buffer not filled: wait for more bytes.
            if !ended && (pos >= input.len() && out.len() < out.capacity() || used == 0 && out.is_empty()) {
                return;
            }
        }
    }

    fn framing_error(&mut self, e: FramingError) {
        match self.phase {
            Phase::Online => self.close(CloseReason::Framing(e)),
            _ => self.fail(LoginFailure::Framing(e)),
        }
    }

    /// The time is `now`: the login timeout, the keep-alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Done => {}
            Phase::Online => {
                if now >= self.last_activity + self.cfg.keepalive {
                    self.out.push_back(Output::Transmit(b"|".to_vec()));
                    self.last_activity = now;
                }
            }
            _ => {
                if now >= self.login_deadline {
                    self.fail(LoginFailure::Timeout);
                }
            }
        }
    }

    /// The hub closed the connection.
    pub fn handle_eof(&mut self) {
        let last_message = self.last_message.take();
        match self.phase {
            Phase::Done => {}
            Phase::Online => self.close(match last_message {
                Some(m) if m.to_ascii_lowercase().contains("kick") => CloseReason::Kicked { message: m },
                last_message => CloseReason::HubClosed { last_message },
            }),
            _ => self.fail(LoginFailure::HubClosed { last_message }),
        }
    }

    /// The next thing to do; `None` once the session is over and everything was taken.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        match self.phase {
            Phase::Done => None,
            Phase::Online => Some(Output::Timeout(self.last_activity + self.cfg.keepalive)),
            _ => Some(Output::Timeout(self.login_deadline)),
        }
    }

    // ---- actions --------------------------------------------------------------------

    /// Say `text` in main chat: `<nick> text|`.
    pub fn say(&mut self, text: &str) -> Result<(), SessionError> {
        self.check_online()?;
        let cmd = Command::Chat { nick: self.nick.clone(), text: utf8_to_wire(text) };
        self.transmit_checked(cmd.encode())
    }

    /// A private message: `$To: <to> From: <us> $<<us>> text|`.
    pub fn private_message(&mut self, to: &str, text: &str) -> Result<(), SessionError> {
        self.check_online()?;
        let to = self.target(to)?;
        let cmd =
            Command::To { to, from: self.nick.clone(), speaker: Some(self.nick.clone()), text: utf8_to_wire(text) };
        self.transmit_checked(cmd.encode())
    }

    /// Search: `$Search <ip>:<udp port> <query>|` when active (results come by UDP, see
    /// [`parse_sr_datagram`]), `$Search Hub:<nick> <query>|` when passive (results come as
    /// [`Event::SearchResult`]). `query` holds wire strings: for words typed by a person use
    /// `SearchQuery::text(&text::utf8_to_wire(words))`. Returns the origin sent.
    pub fn search(&mut self, query: &SearchQuery) -> Result<SearchOrigin, SessionError> {
        self.check_online()?;
        let origin = match self.cfg.mode {
            ClientMode::Active { udp_port, .. } => {
                SearchOrigin::Active { host: self.our_ip().ok_or(SessionError::NoAddress)?.to_string(), port: udp_port }
            }
            ClientMode::Passive => SearchOrigin::Passive { nick: self.nick.clone() },
        };
        let cmd = Command::Search { origin: origin.clone(), query: query.clone() };
        self.transmit_checked(cmd.encode())?;
        Ok(origin)
    }

    /// Answer a [`Event::SearchRequest`] with one result (made by
    /// [`crate::search::Responder`]; send at most [`crate::search::max_results`]). Passive
    /// searcher: sent through the hub with `\x05<searcher>` and `Ok(None)`. Active searcher:
    /// `Ok(Some(datagram))` for the driver to send by UDP.
    pub fn send_search_result(
        &mut self,
        origin: &SearchOrigin,
        result: SearchResult,
    ) -> Result<Option<Datagram>, SessionError> {
        let mut result = result;
        result.nick = self.nick.clone();
        match origin {
            SearchOrigin::Passive { nick } => {
                self.check_online()?;
                let bytes = Command::Sr(result.with_target(nick)).encode();
                self.transmit_checked(bytes)?;
                Ok(None)
            }
            SearchOrigin::Active { host, port } => {
                if self.is_done() {
                    return Err(SessionError::Closed);
                }
                result.target = None;
                let payload = Command::Sr(result).encode();
                if payload.len() > MAX_COMMAND + 1 {
                    return Err(SessionError::TooLong { limit: MAX_COMMAND });
                }
                Ok(Some(Datagram { host: host.clone(), port: *port, payload }))
            }
        }
    }

    /// `$ConnectToMe <target> <ip>:<port>[S]|`: `target` should connect to us there. The IP is
    /// numeric (ncdc accepts nothing else); IPv6 is sent as `[ip]:port`. `S` (TLS) when we
    /// have [`SessionConfig::tls`] and the target's `$MyINFO` flag has the TLS bit.
    pub fn connect_to_me(&mut self, target: &str, ip: IpAddr, port: u16) -> Result<(), SessionError> {
        self.check_online()?;
        let tls = self.cfg.tls && self.wants_tls(target);
        let target = self.target(target)?;
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let cmd = Command::ConnectToMe { target, host, port, tls };
        self.transmit_checked(cmd.encode())
    }

    /// `$RevConnectToMe <us> <target>|`: ask `target` (who must be active) for a
    /// `$ConnectToMe`.
    pub fn rev_connect_to_me(&mut self, target: &str) -> Result<(), SessionError> {
        self.check_online()?;
        let target = self.target(target)?;
        let cmd = Command::RevConnectToMe { from: self.nick.clone(), target };
        self.transmit_checked(cmd.encode())
    }

    /// Get a client-to-client connection with `target` the way our mode allows (what ncdc
    /// does): `$ConnectToMe` with our IP and TCP port when active, `$RevConnectToMe` when
    /// passive.
    pub fn request_connection(&mut self, target: &str) -> Result<(), SessionError> {
        match self.cfg.mode {
            ClientMode::Active { tcp_port, .. } => {
                self.check_online()?;
                let ip = self.our_ip().ok_or(SessionError::NoAddress)?;
                self.connect_to_me(target, ip, tcp_port)
            }
            ClientMode::Passive => self.rev_connect_to_me(target),
        }
    }

    /// A new share size; re-sends `$MyINFO` when logged in.
    pub fn set_share_size(&mut self, bytes: u64) {
        self.cfg.share_size = bytes;
        self.resend_info();
    }

    /// New `H:` counts for the tag; re-sends `$MyINFO` when logged in.
    pub fn set_hub_counts(&mut self, hubs: HubCounts) {
        self.cfg.hubs = hubs;
        self.resend_info();
    }

    // ---- internals ------------------------------------------------------------------

    fn resend_info(&mut self) {
        if self.phase == Phase::Online {
            let bytes = Command::MyInfo(self.my_info()).encode();
            self.out.push_back(Output::Transmit(bytes));
        }
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn transmit(&mut self, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit(bytes));
    }

    fn transmit_checked(&mut self, bytes: Vec<u8>) -> Result<(), SessionError> {
        if bytes.len() > MAX_COMMAND + 1 {
            return Err(SessionError::TooLong { limit: MAX_COMMAND });
        }
        self.transmit(bytes);
        Ok(())
    }

    fn check_online(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::Online => Ok(()),
            Phase::Done => Err(SessionError::Closed),
            _ => Err(SessionError::NotLoggedIn),
        }
    }

    /// The wire nick for a UTF-8 nick: a known user's, else the plain conversion.
    fn resolve(&self, nick: &str) -> String {
        self.names.get(nick).cloned().unwrap_or_else(|| utf8_to_wire(nick))
    }

    fn target(&self, nick: &str) -> Result<String, SessionError> {
        let wire = self.resolve(nick);
        if is_valid_nick(&wire) {
            Ok(wire)
        } else {
            Err(SessionError::InvalidNick(nick.to_owned()))
        }
    }

    fn fail(&mut self, why: LoginFailure) {
        self.phase = Phase::Done;
        self.event(Event::LoginFailed(why));
    }

    fn close(&mut self, why: CloseReason) {
        self.phase = Phase::Done;
        self.event(Event::Closed(why));
    }

    fn on_command(&mut self, now: Instant, cmd: Command, raw_len: usize) {
        self.last_message = None;
        match (self.phase, cmd) {
            (Phase::Done, _) => {}
            (_, Command::HubName(name)) => {
                let name = wire_to_utf8(&name);
                self.hub_name = Some(name.clone());
                self.event(Event::HubName(name));
            }
            (_, Command::HubTopic(topic)) => self.event(Event::HubTopic(wire_to_utf8(&topic))),
            (_, Command::Chat { nick, text }) => {
                let text = wire_to_utf8(&text);
                self.last_message = Some(text.clone());
                self.event(Event::Chat { nick: wire_to_utf8(&nick), text });
            }
            (_, Command::Text(text)) => {
                let text = wire_to_utf8(&text);
                self.last_message = Some(text.clone());
                self.event(Event::HubMessage(text));
            }
            (_, Command::To { to, from, text, .. }) if to == self.nick => {
                let text = wire_to_utf8(&text);
                self.last_message = Some(text.clone());
                self.event(Event::PrivateMessage { from: wire_to_utf8(&from), text });
            }
            (Phase::Online, Command::ForceMove(address)) => self.close(CloseReason::Redirected(wire_to_utf8(&address))),
            (_, Command::ForceMove(address)) => self.fail(LoginFailure::Redirected(wire_to_utf8(&address))),
            (Phase::AwaitLock, Command::Lock { lock, .. }) => {
                let Ok(key) = lock_to_key(&lock) else {
                    return self.fail(LoginFailure::BadLock);
                };
                let mut bytes = Vec::new();
                if is_extended(&lock) {
                    let mut features = self.cfg.supports.clone();
                    if self.cfg.tls && !features.iter().any(|f| f == "TLS") {
                        features.push("TLS".to_owned());
                    }
                    bytes.extend(Command::Supports { features, trailing_space: false }.encode());
                }
                bytes.extend(Command::Key(key).encode());
                bytes.extend(Command::ValidateNick(self.nick.clone()).encode());
                self.transmit(bytes);
                self.phase = Phase::AwaitHello { password_sent: false };
            }
            (Phase::AwaitLock, _) => {}
            (_, Command::Supports { features, .. }) => self.hub_supports = features,
            (Phase::AwaitHello { password_sent }, Command::GetPass { .. }) => {
                if password_sent {
                    return;
                }
                match &self.cfg.password {
                    Some(pw) => {
                        let bytes = Command::MyPass(utf8_to_wire(pw)).encode();
                        self.transmit(bytes);
                        self.phase = Phase::AwaitHello { password_sent: true };
                    }
                    None => self.fail(LoginFailure::PasswordRequired),
                }
            }
            (Phase::AwaitHello { .. }, Command::BadPass) => self.fail(LoginFailure::BadPassword),
            (Phase::AwaitHello { .. }, Command::ValidateDenide(_)) => self.fail(LoginFailure::NickTaken),
            (Phase::AwaitHello { .. }, Command::HubIsFull) => self.fail(LoginFailure::HubFull),
            (Phase::AwaitHello { password_sent }, Command::Hello(nick)) if nick == self.nick => {
                self.registered = password_sent;
                let mut bytes = Command::Version(PROTOCOL_VERSION.to_owned()).encode();
                bytes.extend(Command::GetNickList.encode());
                bytes.extend(Command::MyInfo(self.my_info()).encode());
                self.transmit(bytes);
                self.phase = Phase::Online;
                self.last_activity = now;
                self.event(Event::LoggedIn);
            }
            // Verlihub sends our $Hello twice.
            (_, Command::Hello(nick)) if nick == self.nick => {}
            (_, Command::Hello(nick)) => {
                let wanted = self.add_users(vec![nick]);
                self.get_info(wanted);
            }
            (_, Command::NickList(nicks)) => {
                let wanted = self.add_users(nicks);
                self.get_info(wanted);
            }
            (_, Command::MyInfo(info)) if raw_len <= MAX_MYINFO => self.user_info(info),
            (_, Command::OpList(nicks)) => self.ops(nicks),
            (_, Command::LogedIn(nick)) => self.ops(vec![nick]),
            (_, Command::UserIp(list)) => self.user_ips(list),
            (_, Command::Quit(nick)) => {
                if let Some(user) = self.users.remove(&nick) {
                    if self.names.get(&user.nick) == Some(&nick) {
                        self.names.remove(&user.nick);
                    }
                    self.event(Event::UserLeft { nick: user.nick });
                }
            }
            (Phase::Online, Command::Search { origin, query }) if !self.is_own_or_unanswerable(&origin) => {
                self.event(Event::SearchRequest { origin, query })
            }
            (Phase::Online, Command::Sr(result)) if result.target.as_ref().is_none_or(|t| *t == self.nick) => {
                self.event(Event::SearchResult(result))
            }
            (Phase::Online, Command::ConnectToMe { target, host, port, tls }) if target == self.nick => {
                self.event(Event::ConnectToMe { host, port, tls })
            }
            (Phase::Online, Command::RevConnectToMe { from, target }) if target == self.nick => {
                self.event(Event::RevConnectToMe { from: wire_to_utf8(&from) })
            }
            // $Lock again, $GetINFO, $Kick, unknown extensions ($ZOn, $BotList, ...): ignored.
            _ => {}
        }
    }

    /// Track `nicks`; the ones without a `$MyINFO` yet.
    fn add_users(&mut self, nicks: Vec<String>) -> Vec<String> {
        let mut wanted = Vec::new();
        for nick in nicks {
            if nick == self.nick {
                continue;
            }
            if self.ensure_user(&nick) && self.users[&nick].info.is_none() {
                wanted.push(nick);
            }
        }
        wanted
    }

    /// `$GetINFO <nick> <us>` for each, unless the hub sends every `$MyINFO` by itself.
    fn get_info(&mut self, nicks: Vec<String>) {
        if nicks.is_empty() || self.hub_supports("NoGetINFO") {
            return;
        }
        let mut bytes = Vec::new();
        for other in nicks {
            bytes.extend(Command::GetInfo { other, me: self.nick.clone() }.encode());
        }
        self.transmit(bytes);
    }

    /// Whether the user is tracked (added now if there is room).
    fn ensure_user(&mut self, wire: &str) -> bool {
        if self.users.contains_key(wire) {
            return true;
        }
        if self.users.len() >= MAX_USERS {
            return false;
        }
        let nick = wire_to_utf8(wire);
        self.names.insert(nick.clone(), wire.to_owned());
        self.users.insert(wire.to_owned(), User { nick, info: None, op: false, ip: None });
        true
    }

    fn user_info(&mut self, info: MyInfo) {
        let wire = info.nick.clone();
        if !self.ensure_user(&wire) {
            return;
        }
        let Some(user) = self.users.get_mut(&wire) else {
            return;
        };
        let first = user.info.is_none();
        user.info = Some(info.clone());
        let nick = user.nick.clone();
        self.event(if first { Event::UserJoined { nick, info } } else { Event::UserUpdated { nick, info } });
    }

    fn ops(&mut self, nicks: Vec<String>) {
        // Additive, as DC++ and ncdc do: hubs also send one-nick $OpLists for new ops.
        for wire in nicks {
            if !self.ensure_user(&wire) {
                continue;
            }
            let Some(user) = self.users.get_mut(&wire) else {
                continue;
            };
            if user.op {
                continue;
            }
            user.op = true;
            if let Some(info) = user.info.clone() {
                let nick = user.nick.clone();
                self.event(Event::UserUpdated { nick, info });
            }
        }
    }

    fn user_ips(&mut self, list: Vec<(String, String)>) {
        for (wire, ip) in list {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                continue;
            };
            if wire == self.nick {
                self.learned_ip = Some(ip);
            }
            if self.ensure_user(&wire) {
                if let Some(user) = self.users.get_mut(&wire) {
                    user.ip = Some(ip);
                }
            }
        }
    }

    /// Our own search echoed, or a passive search while we are passive.
    fn is_own_or_unanswerable(&self, origin: &SearchOrigin) -> bool {
        match (origin, self.cfg.mode) {
            (SearchOrigin::Passive { nick }, _) if *nick == self.nick => true,
            (SearchOrigin::Passive { .. }, ClientMode::Passive) => true,
            (SearchOrigin::Active { host, port }, ClientMode::Active { udp_port, .. }) => {
                *port == udp_port && self.our_ip().is_some_and(|ip| host.parse::<IpAddr>().ok() == Some(ip))
            }
            _ => false,
        }
    }
}

fn check_config(cfg: &SessionConfig) -> Result<(), ConfigError> {
    let field = |field: &'static str, value: &str, forbidden: &[char]| {
        let wire = utf8_to_wire(value);
        if wire.len() > MAX_FIELD {
            return Err(ConfigError::InvalidField { field, why: "longer than MAX_FIELD bytes" });
        }
        if wire.chars().any(|c| forbidden.contains(&c) || c.is_control()) {
            return Err(ConfigError::InvalidField { field, why: "contains a character that cannot be sent there" });
        }
        Ok(())
    };
    // Description and e-mail are escaped on the wire; the others are not.
    field("description", &cfg.description, &[])?;
    field("email", &cfg.email, &[])?;
    field("connection", &cfg.connection, &['$', '|'])?;
    field("client name", &cfg.client_name, &['$', '|', '<', '>', ',', ':'])?;
    field("client version", &cfg.client_version, &['$', '|', '<', '>', ','])?;
    if cfg.client_name.trim().is_empty() {
        return Err(ConfigError::InvalidField { field: "client name", why: "empty" });
    }
    if let Some(pw) = &cfg.password {
        if pw.is_empty() || pw.contains('|') || utf8_to_wire(pw).len() > MAX_FIELD {
            return Err(ConfigError::InvalidField {
                field: "password",
                why: "must be 1 to MAX_FIELD bytes without '|'",
            });
        }
    }
    if cfg.supports.len() > crate::limits::MAX_SUPPORTS
        || cfg.supports.iter().any(|f| f.is_empty() || f.contains([' ', '$', '|']))
    {
        return Err(ConfigError::InvalidField {
            field: "supports",
            why: "features must be non-empty words without ' ', '$' or '|'",
        });
    }
    if cfg.keepalive.is_zero() {
        return Err(ConfigError::InvalidField { field: "keepalive", why: "must be longer than zero" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{HubCounts, ResultTag};
    use crate::hub::{self, Hub, HubConfig, HubEvent};
    use crate::search::{Matcher, Responder};
    use crate::tth::Tth;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn drain(s: &mut HubSession) -> (Vec<u8>, Vec<Event>, Option<Instant>) {
        let mut bytes = Vec::new();
        let mut events = Vec::new();
        let mut timeout = None;
        while let Some(o) = s.poll_output() {
            match o {
                Output::Transmit(b) => bytes.extend(b),
                Output::Event(e) => events.push(e),
                Output::Timeout(t) => {
                    timeout = Some(t);
                    break;
                }
            }
        }
        (bytes, events, timeout)
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// PtokaX/Verlihub to a `ZPipe0` client: `$ZOn|`, a zlib stream of commands, then plain
    /// commands again; fed one byte at a time, so every split is crossed.
    #[test]
    fn zon_blocks_are_inflated_and_plain_resumes() {
        let now = Instant::now();
        let mut s = logged_in(alice_config(), now);
        let mut wire = b"<Hub> before|$ZOn|".to_vec();
        wire.extend(zlib(
            b"$MyINFO $ALL bob eiskalt-test <EiskaltDC++ V:2.4.2,M:A,H:1/0/0,S:3>$ $100\x01$$5025$|<Hub> inside|",
        ));
        wire.extend(b"<Hub> after|$ZOn|");
        wire.extend(zlib(b"<Hub> again|"));
        wire.extend(b"<Hub> end|");
        for b in &wire {
            s.handle_input(now, std::slice::from_ref(b));
        }
        let (_, events, _) = drain(&mut s);
        let said: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Chat { text, .. } => Some(text.clone()),
                Event::UserJoined { nick, .. } => Some(format!("joined {nick}")),
                _ => None,
            })
            .collect();
        assert_eq!(said, ["before", "joined bob", "inside", "after", "again", "end"]);
        assert!(s.is_logged_in());
        // The same bytes in one read.
        let mut s = logged_in(alice_config(), now);
        s.handle_input(now, &wire);
        let (_, events, _) = drain(&mut s);
        assert_eq!(events.iter().filter(|e| matches!(e, Event::Chat { .. })).count(), 5, "{events:?}");
    }

    #[test]
    fn a_zon_bomb_or_garbage_ends_the_session() {
        let now = Instant::now();
        let mut s = logged_in(alice_config(), now);
        let mut wire = b"$ZOn|".to_vec();
        wire.extend(zlib(&vec![b'|'; MAX_ZPIPE_INFLATED + 1]));
        assert!(wire.len() < 1024 * 1024);
        s.handle_input(now, &wire);
        let (_, events, _) = drain(&mut s);
        assert!(
            matches!(events.last(), Some(Event::Closed(CloseReason::Framing(FramingError::Inflate { .. })))),
            "{events:?}"
        );
        let mut s = logged_in(alice_config(), now);
        s.handle_input(now, b"$ZOn|this is not zlib at all|<Hub> x|");
        let (_, events, _) = drain(&mut s);
        assert!(matches!(events.last(), Some(Event::Closed(CloseReason::Framing(_)))), "{events:?}");
    }

    /// Our hub machine compresses a big user list (`$ZOn|` + zlib, hub::MIN_ZPIPE_BYTES)
    /// for a newcomer that said `ZPipe0`, and our session reads it: every user is there.
    /// A newcomer without `ZPipe0` gets the same list plain.
    #[test]
    fn a_big_user_list_comes_compressed_from_our_hub_and_is_read() {
        const USERS: usize = 40;
        let now = Instant::now();
        let mut hub =
            Hub::new(HubConfig { max_users_per_ip: 0, max_logins_per_ip_per_minute: 0, ..HubConfig::default() });
        let mut sessions: Vec<HubSession> = Vec::new();
        let mut joined = std::collections::BTreeMap::new();
        let mut zon = Vec::new();
        let mut pump = |hub: &mut Hub, sessions: &mut Vec<HubSession>, zon: &mut Vec<bool>| {
            for _ in 0..1000 {
                let mut moved = false;
                for (i, s) in sessions.iter_mut().enumerate() {
                    while let Some(o) = s.poll_output() {
                        match o {
                            Output::Transmit(b) => {
                                moved = true;
                                hub.handle_input(now, i as u64, &b)
                            }
                            Output::Event(_) => {}
                            Output::Timeout(_) => break,
                        }
                    }
                }
                while let Some(o) = hub.poll_output() {
                    moved = true;
                    match o {
                        hub::Output::Send { conn, data } => {
                            zon[conn as usize] |= data.starts_with(b"$ZOn|");
                            sessions[conn as usize].handle_input(now, &data)
                        }
                        hub::Output::Broadcast { data, except, .. } => {
                            for &conn in joined.keys() {
                                if Some(conn) != except {
                                    sessions[conn as usize].handle_input(now, &data)
                                }
                            }
                        }
                        hub::Output::Join { conn, tags } => {
                            joined.insert(conn, tags);
                        }
                        _ => {}
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("did not settle");
        };
        for i in 0..USERS + 1 {
            let mut cfg = SessionConfig::new(&format!("user{i}"));
            cfg.description = "d".repeat(900);
            if i == USERS {
                cfg.supports.retain(|f| f != "ZPipe0");
            }
            sessions.push(HubSession::new(cfg, now).unwrap());
            zon.push(false);
            hub.accept(now, i as u64, LOCAL, b"0123456789abcdef");
            pump(&mut hub, &mut sessions, &mut zon);
        }
        // The late newcomers' lists were over the threshold: compressed for ZPipe0 users.
        assert!(zon[USERS - 1], "no $ZOn for a ZPipe0 newcomer");
        assert!(!zon[USERS], "$ZOn for a client that did not say ZPipe0");
        assert!(!zon[0], "$ZOn for a list under MIN_ZPIPE_BYTES");
        for i in [USERS - 1, USERS] {
            assert!(sessions[i].is_logged_in());
            assert_eq!(sessions[i].users().filter(|u| u.info.is_some()).count(), USERS + 1, "user{i}");
        }
    }

    /// With TLS on: `TLS` in `$Supports`, flag 0x11, and `$ConnectToMe …S` only to a user
    /// whose flag has the TLS bit.
    #[test]
    fn tls_is_advertised_and_asked_of_tls_users_only() {
        let now = Instant::now();
        let mut cfg = alice_config();
        cfg.tls = true;
        cfg.mode = ClientMode::Active { ip: Some("127.0.0.1".parse().unwrap()), tcp_port: 3010, udp_port: 3011 };
        let mut s = HubSession::new(cfg, now).unwrap();
        s.handle_input(now, b"$Lock EXTENDEDPROTOCOL_verlihub Pk=version0.9.8e-r2|");
        let (sent, _, _) = drain(&mut s);
        assert!(sent.starts_with(b"$Supports NoGetINFO NoHello UserIP2 TTHSearch ZPipe0 TLS|"), "{sent:?}");
        s.handle_input(now, b"$Supports NoGetINFO NoHello UserIP2|$Hello alice|");
        let (sent, _, _) = drain(&mut s);
        assert!(sent.ends_with(b"$ $100\x11$$3084$|"), "{}", String::from_utf8_lossy(&sent));
        s.handle_input(
            now,
            b"$MyINFO $ALL bob d<EiskaltDC++ V:2.4.2,M:A,H:1/0/0,S:3>$ $100\x11$$5025$|\
              $MyINFO $ALL carol d<ncdc V:1,M:A,H:1/0/0,S:3>$ $100\x01$$5025$|",
        );
        drain(&mut s);
        s.request_connection("bob").unwrap();
        s.request_connection("carol").unwrap();
        let (sent, _, _) = drain(&mut s);
        assert_eq!(sent, b"$ConnectToMe bob 127.0.0.1:3010S|$ConnectToMe carol 127.0.0.1:3010|");
        // Without TLS of our own: never `S`, flag 0x01, no `TLS` feature.
        let mut s = logged_in(alice_config(), now);
        assert_eq!(s.my_info().flag, flags::NORMAL);
        s.handle_input(now, b"$MyINFO $ALL bob d<EiskaltDC++ V:2.4.2,M:A,H:1/0/0,S:3>$ $100\x11$$5025$|");
        drain(&mut s);
        s.connect_to_me("bob", "127.0.0.1".parse().unwrap(), 3010).unwrap();
        assert_eq!(drain(&mut s).0, b"$ConnectToMe bob 127.0.0.1:3010|");
    }

    fn alice_config() -> SessionConfig {
        let mut cfg = SessionConfig::new("alice");
        cfg.description = "rust test".into();
        cfg.share_size = 3084;
        cfg.client_version = "0.1".into();
        cfg.mode = ClientMode::Active { ip: None, tcp_port: 3010, udp_port: 3011 };
        cfg
    }

    /// A session past `$Hello`, with the bytes it sent at login dropped.
    fn logged_in(cfg: SessionConfig, now: Instant) -> HubSession {
        let nick = utf8_to_wire(&cfg.nick);
        let mut s = HubSession::new(cfg, now).unwrap();
        s.handle_input(now, b"$Lock EXTENDEDPROTOCOL_verlihub Pk=version0.9.8e-r2|");
        let mut hello = b"$Supports NoGetINFO NoHello UserIP2|".to_vec();
        hello.extend(Command::Hello(nick).encode());
        s.handle_input(now, &hello);
        let (_, events, _) = drain(&mut s);
        assert!(events.contains(&Event::LoggedIn), "{events:?}");
        s
    }

    /// The login of docs/protocols/nmdc.md#hub-login, byte for byte: our three commands together, the key for the
    /// `EXTENDEDPROTOCOL_verlihub` vector of docs/protocols/nmdc.md#test-vectors, then `$Version|$GetNickList|$MyINFO`
    /// (eiskalt/microdc2 order) with the tag `<omnipeer V:0.1,M:A,H:1/0/0,S:3>`.
    #[test]
    fn login_as_in_the_notes() {
        let now = Instant::now();
        let mut s = HubSession::new(alice_config(), now).unwrap();
        assert_eq!(drain(&mut s), (vec![], vec![], Some(now + LOGIN_TIMEOUT)));
        s.handle_input(now, b"$Lock EXTENDEDPROTOCOL_verlihub Pk=version0.9.8e-r2|$HubName Test hub|");
        let (sent, events, _) = drain(&mut s);
        let mut want = b"$Supports NoGetINFO NoHello UserIP2 TTHSearch ZPipe0|$Key ".to_vec();
        want.extend(hex("75d1c011b0a010104120d1b1b1c0c03031923171e15010d171"));
        want.extend(b"|$ValidateNick alice|");
        assert_eq!(sent, want);
        assert_eq!(events, vec![Event::HubName("Test hub".into())]);
        assert_eq!(s.hub_name(), Some("Test hub"));

        s.handle_input(now, b"$Supports NoGetINFO NoHello UserIP2|$Hello alice|");
        let (sent, events, timeout) = drain(&mut s);
        assert_eq!(
            sent,
            b"$Version 1,0091|$GetNickList|$MyINFO $ALL alice rust test<omnipeer V:0.1,M:A,H:1/0/0,S:3>$ $100\x01$$3084$|"
        );
        assert_eq!(events, vec![Event::LoggedIn]);
        assert_eq!(timeout, Some(now + KEEPALIVE_INTERVAL));
        assert!(s.is_logged_in() && !s.is_registered());
        assert!(s.hub_supports("NoHello"));

        // The user list as hub.rs and real hubs send it: the three $MyINFOs of docs/protocols/nmdc.md#myinfo
        // (ours included), $OpList, $UserIP with our own address.
        s.handle_input(
            now,
            b"$MyINFO $ALL alice rust test<omnipeer V:0.1,M:A,H:1/0/0,S:3>$ $100\x01$$3084$|\
              $MyINFO $ALL bob eiskalt-test <EiskaltDC++ V:2.4.2,M:A,H:1/0/0,S:3>$ $100\x01$$5025$|\
              $MyINFO $ALL carol microdc2-test<microdc2 V:0.15.6,M:A,H:1/0/0,S:3>$ $LAN(T1)\x01$$3084$|\
              $OpList bob$$|$UserIP alice 127.0.0.1$$|<Hub> Welcome!|",
        );
        let (sent, events, _) = drain(&mut s);
        assert!(sent.is_empty());
        let joined: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::UserJoined { nick, .. } => Some(nick.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(joined, ["alice", "bob", "carol"]);
        assert!(events.contains(&Event::Chat { nick: "Hub".into(), text: "Welcome!".into() }));
        // bob became an operator after his info: an update.
        assert!(events.iter().any(|e| matches!(e, Event::UserUpdated { nick, .. } if nick == "bob")));
        assert_eq!(s.users().count(), 3);
        assert!(s.is_op("bob") && !s.is_op("carol"));
        assert_eq!(s.our_ip(), Some(LOCAL));
        let carol = s.user("carol").unwrap();
        assert_eq!(carol.info.as_ref().unwrap().connection, "LAN(T1)");
        assert_eq!(carol.info.as_ref().unwrap().tag.as_ref().unwrap().client, "microdc2");

        s.handle_input(now, b"$Quit carol|$Quit nobody|");
        assert_eq!(drain(&mut s).1, vec![Event::UserLeft { nick: "carol".into() }]);
        assert!(s.user("carol").is_none());

        // A new share size goes out at once.
        s.set_share_size(1 << 30);
        assert_eq!(
            drain(&mut s).0,
            b"$MyINFO $ALL alice rust test<omnipeer V:0.1,M:A,H:1/0/0,S:3>$ $100\x01$$1073741824$|"
        );
        s.set_hub_counts(HubCounts { normal: 0, registered: 1, op: 0 });
        assert!(String::from_utf8_lossy(&drain(&mut s).0).contains(",H:0/1/0,"));
    }

    #[test]
    fn password_and_refusals() {
        let now = Instant::now();
        let lock = b"$Lock EXTENDEDPROTOCOL_PtokaX Pk=PtokaX|";
        let run = |password: Option<&str>, hub: &[u8]| {
            let mut cfg = SessionConfig::new("alice");
            cfg.password = password.map(str::to_owned);
            let mut s = HubSession::new(cfg, now).unwrap();
            s.handle_input(now, lock);
            drain(&mut s);
            s.handle_input(now, hub);
            let out = drain(&mut s);
            (s, out)
        };
        let (s, (sent, events, _)) = run(Some("sécret"), b"$GetPass|$Hello alice|");
        assert!(sent.starts_with(b"$MyPass s\xc3\xa9cret|$Version 1,0091|"));
        assert_eq!(events, vec![Event::LoggedIn]);
        assert!(s.is_registered());
        // Passive tag.
        assert!(String::from_utf8_lossy(&sent).contains(",M:P,"));

        let cases: [(Option<&str>, &[u8], LoginFailure); 6] = [
            (Some("pw"), b"$GetPass|$BadPass|", LoginFailure::BadPassword),
            (None, b"$GetPass|", LoginFailure::PasswordRequired),
            (None, b"$ValidateDenide alice|", LoginFailure::NickTaken),
            (None, b"$HubIsFull|", LoginFailure::HubFull),
            (None, b"$ForceMove other.hub:411|", LoginFailure::Redirected("other.hub:411".into())),
            (
                None,
                &[b'x'; MAX_LIST_COMMAND + 1],
                LoginFailure::Framing(FramingError::TooLong { limit: MAX_LIST_COMMAND }),
            ),
        ];
        for (pw, hub, want) in cases {
            let (s, (_, events, timeout)) = run(pw, hub);
            assert_eq!(events.last(), Some(&Event::LoginFailed(want)));
            assert!(s.is_done());
            assert_eq!(timeout, None);
        }
        // A hub that says why and closes.
        let (mut s, _) = run(None, b"<Hub> You are banned.|");
        s.handle_eof();
        assert_eq!(
            drain(&mut s).1,
            vec![Event::LoginFailed(LoginFailure::HubClosed { last_message: Some("You are banned.".into()) })]
        );
        // An old-style lock: no $Supports.
        let mut s = HubSession::new(SessionConfig::new("bob"), now).unwrap();
        s.handle_input(now, b"$Lock ABCD Pk=x|");
        let mut want = b"$Key ".to_vec();
        want.extend(hex("34301070"));
        want.extend(b"|$ValidateNick bob|");
        assert_eq!(drain(&mut s).0, want);
        // A lock that gives no key.
        let mut s = HubSession::new(SessionConfig::new("bob"), now).unwrap();
        s.handle_input(now, b"$Lock A Pk=x|");
        assert_eq!(drain(&mut s).1, vec![Event::LoginFailed(LoginFailure::BadLock)]);
    }

    #[test]
    fn login_timeout_and_keepalive() {
        let now = Instant::now();
        let mut s = HubSession::new(SessionConfig::new("alice"), now).unwrap();
        s.handle_input(now, b"$Lock EXTENDEDPROTOCOLx Pk=x|");
        drain(&mut s);
        s.handle_timeout(now + LOGIN_TIMEOUT - Duration::from_millis(1));
        assert!(!s.is_done());
        s.handle_timeout(now + LOGIN_TIMEOUT);
        assert_eq!(drain(&mut s), (vec![], vec![Event::LoginFailed(LoginFailure::Timeout)], None));
        // Input after the deadline counts as a timeout too.
        let mut s = HubSession::new(SessionConfig::new("alice"), now).unwrap();
        s.handle_input(now + LOGIN_TIMEOUT, b"$Lock EXTENDEDPROTOCOLx Pk=x|");
        assert_eq!(drain(&mut s).1, vec![Event::LoginFailed(LoginFailure::Timeout)]);

        // Keep-alive: a lone | from the hub is not answered but counts as activity; after
        // two silent minutes we send one, then one per further two minutes.
        let mut s = logged_in(SessionConfig::new("alice"), now);
        let t1 = now + Duration::from_secs(100);
        s.handle_input(t1, b"|");
        assert_eq!(drain(&mut s), (vec![], vec![], Some(t1 + KEEPALIVE_INTERVAL)));
        s.handle_timeout(t1 + KEEPALIVE_INTERVAL - Duration::from_millis(1));
        assert_eq!(drain(&mut s).0, b"");
        let t2 = t1 + KEEPALIVE_INTERVAL;
        s.handle_timeout(t2);
        assert_eq!(drain(&mut s), (b"|".to_vec(), vec![], Some(t2 + KEEPALIVE_INTERVAL)));
        s.handle_timeout(t2 + KEEPALIVE_INTERVAL);
        assert_eq!(drain(&mut s).0, b"|");
        // No login timeout once logged in.
        assert!(!s.is_done());
    }

    #[test]
    fn chat_private_messages_and_text() {
        let now = Instant::now();
        let mut s = logged_in(SessionConfig::new("alice"), now);
        s.handle_input(
            now,
            b"<bob> caf\xc3\xa9 &#36;5 &#124; a&amp;b|$To: alice From: bob $<bob> hi &#36;|\
              $To: carol From: bob $<bob> not for us|MOTD line|$HubTopic t&#36;|",
        );
        let (_, events, _) = drain(&mut s);
        assert_eq!(
            events,
            vec![
                Event::Chat { nick: "bob".into(), text: "café $5 | a&b".into() },
                Event::PrivateMessage { from: "bob".into(), text: "hi $".into() },
                Event::HubMessage("MOTD line".into()),
                Event::HubTopic("t$".into()),
            ]
        );
        s.say("héllo $ | there").unwrap();
        assert_eq!(drain(&mut s).0, b"<alice> h\xc3\xa9llo &#36; &#124; there|");
        s.private_message("bob", "psst").unwrap();
        assert_eq!(drain(&mut s).0, b"$To: bob From: alice $<alice> psst|");
        assert_eq!(s.private_message("b b", "x"), Err(SessionError::InvalidNick("b b".into())));
        assert_eq!(s.say(&"x".repeat(MAX_COMMAND)), Err(SessionError::TooLong { limit: MAX_COMMAND }));
        // Not before login.
        let mut s = HubSession::new(SessionConfig::new("alice"), now).unwrap();
        assert_eq!(s.say("x"), Err(SessionError::NotLoggedIn));
        assert_eq!(s.rev_connect_to_me("bob"), Err(SessionError::NotLoggedIn));
        assert_eq!(s.search(&SearchQuery::text("x")).unwrap_err(), SessionError::NotLoggedIn);
        s.handle_eof();
        assert_eq!(s.say("x"), Err(SessionError::Closed));
    }

    /// A nick that is not UTF-8 (Latin-1 hub) shows as Latin-1 text and still reaches the
    /// right user; a UTF-8 nick round-trips too.
    #[test]
    fn non_utf8_nicks_round_trip() {
        let now = Instant::now();
        let mut s = logged_in(SessionConfig::new("zoë"), now);
        assert_eq!(s.nick(), "zoë");
        s.handle_input(now, b"$MyINFO $ALL Andr\xe9 d$ $100\x01$$0$|$RevConnectToMe Andr\xe9 zo\xc3\xab|");
        let (_, events, _) = drain(&mut s);
        assert!(matches!(&events[0], Event::UserJoined { nick, .. } if nick == "André"));
        assert_eq!(events[1], Event::RevConnectToMe { from: "André".into() });
        s.private_message("André", "x").unwrap();
        assert_eq!(drain(&mut s).0, b"$To: Andr\xe9 From: zo\xc3\xab $<zo\xc3\xab> x|");
    }

    #[test]
    fn searches_results_and_connections() {
        let now = Instant::now();
        let mut cfg = alice_config();
        cfg.mode = ClientMode::Active { ip: None, tcp_port: 3010, udp_port: 3011 };
        let mut s = logged_in(cfg, now);
        // Active search needs our address: none configured, none learned yet.
        assert_eq!(s.search(&SearchQuery::text("x")), Err(SessionError::NoAddress));
        assert_eq!(s.request_connection("bob"), Err(SessionError::NoAddress));
        s.handle_input(now, b"$UserIP alice 127.0.0.1$$|");
        let origin = s.search(&SearchQuery::text(&utf8_to_wire("café test"))).unwrap();
        assert_eq!(origin, SearchOrigin::Active { host: "127.0.0.1".into(), port: 3011 });
        assert_eq!(drain(&mut s).0, b"$Search 127.0.0.1:3011 F?T?0?1?caf\xc3\xa9$test|");

        // Incoming searches of docs/protocols/nmdc.md#search; our own active search echoed is skipped.
        s.handle_input(
            now,
            b"$Search 127.0.0.1:3000 F?T?0?1?test|\
              $Search Hub:bob F?T?0?9?TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ|\
              $Search 127.0.0.1:3011 F?T?0?1?mine|$Search Hub:alice F?T?0?1?mine|",
        );
        let (_, events, _) = drain(&mut s);
        assert_eq!(events.len(), 2, "{events:?}");
        let Event::SearchRequest { origin, query } = &events[1] else { panic!("{events:?}") };
        assert_eq!(*origin, SearchOrigin::Passive { nick: "bob".into() });
        let empty = Tth::from_base32("LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ").unwrap();
        assert!(Matcher::new(query).matches_file("/share/empty.txt", 0, &empty));
        // Answer the passive searcher through the hub, the active one by UDP.
        let responder = Responder {
            nick: "alice".into(),
            free_slots: 3,
            total_slots: 3,
            hub_name: "Test".into(),
            hub_addr: "127.0.0.1:411".into(),
        };
        let r = responder.file_result(origin, "/share/empty.txt", 0, &empty);
        assert_eq!(s.send_search_result(origin, r).unwrap(), None);
        assert_eq!(
            drain(&mut s).0,
            b"$SR alice share\\empty.txt\x050 3/3\x05TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ (127.0.0.1:411)\x05bob|"
        );
        let active = SearchOrigin::Active { host: "127.0.0.1".into(), port: 3000 };
        let r = responder.file_result(&active, "/share/empty.txt", 0, &empty);
        let d = s.send_search_result(&active, r).unwrap().unwrap();
        assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", 3000));
        assert_eq!(
            d.payload,
            b"$SR alice share\\empty.txt\x050 3/3\x05TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ (127.0.0.1:411)|"
        );
        let parsed = parse_sr_datagram(&d.payload).unwrap();
        assert_eq!(parsed.tag, ResultTag::Tth(empty));
        assert!(parse_sr_datagram(b"$Send|").is_err());

        // A passive result routed to us by the hub.
        s.handle_input(
            now,
            b"$SR bob share2\\ektest.txt\x0525 3/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4120)|",
        );
        assert!(matches!(&drain(&mut s).1[..], [Event::SearchResult(r)] if r.nick == "bob" && r.size == Some(25)));

        // Connections: $ConnectToMe to us, to someone else (ignored), $RevConnectToMe.
        s.handle_input(
            now,
            b"$ConnectToMe alice 127.0.0.2:3000|$ConnectToMe carol 1.2.3.4:5|$ConnectToMe alice 127.0.0.3:4000S|$RevConnectToMe carol alice|",
        );
        assert_eq!(
            drain(&mut s).1,
            vec![
                Event::ConnectToMe { host: "127.0.0.2".into(), port: 3000, tls: false },
                Event::ConnectToMe { host: "127.0.0.3".into(), port: 4000, tls: true },
                Event::RevConnectToMe { from: "carol".into() },
            ]
        );
        s.request_connection("carol").unwrap();
        s.connect_to_me("carol", "::1".parse().unwrap(), 7).unwrap();
        s.rev_connect_to_me("bob").unwrap();
        assert_eq!(
            drain(&mut s).0,
            b"$ConnectToMe carol 127.0.0.1:3010|$ConnectToMe carol [::1]:7|$RevConnectToMe alice bob|"
        );

        // Redirect after login.
        s.handle_input(now, b"$ForceMove elsewhere:411|");
        assert_eq!(drain(&mut s).1, vec![Event::Closed(CloseReason::Redirected("elsewhere:411".into()))]);
    }

    /// A hub without NoHello/NoGetINFO announces users by `$Hello`/`$NickList`: we ask for
    /// their `$MyINFO`s, as DC++ and ncdc do.
    #[test]
    fn old_hub_gets_getinfo() {
        let now = Instant::now();
        let mut s = HubSession::new(SessionConfig::new("alice"), now).unwrap();
        s.handle_input(now, b"$Lock OLDHUB Pk=x|");
        drain(&mut s);
        s.handle_input(now, b"$Hello alice|$Hello alice|$NickList alice$$bob$$carol$$|$Hello dave|");
        let (sent, events, _) = drain(&mut s);
        assert_eq!(events, vec![Event::LoggedIn]);
        assert!(sent.ends_with(b"$GetINFO bob alice|$GetINFO carol alice|$GetINFO dave alice|"));
        assert_eq!(s.users().count(), 3);
        assert!(s.user("dave").unwrap().info.is_none());
    }

    #[test]
    fn bad_config_is_refused() {
        let now = Instant::now();
        for nick in ["", "a b", "a$b", "a|b"] {
            assert_eq!(
                HubSession::new(SessionConfig::new(nick), now).unwrap_err(),
                ConfigError::InvalidNick(nick.into())
            );
        }
        let mut cfg = SessionConfig::new("a");
        cfg.connection = "10$0".into();
        assert!(HubSession::new(cfg, now).is_err());
        let mut cfg = SessionConfig::new("a");
        cfg.client_name = "a,b".into();
        assert!(HubSession::new(cfg, now).is_err());
        let mut cfg = SessionConfig::new("a");
        cfg.password = Some("a|b".into());
        assert!(HubSession::new(cfg, now).is_err());
        let mut cfg = SessionConfig::new("a");
        cfg.description = "$|& are escaped".into();
        let s = HubSession::new(cfg, now).unwrap();
        let line = Command::MyInfo(s.my_info()).encode();
        assert_eq!(Command::parse(&line[..line.len() - 1]).unwrap(), Command::MyInfo(s.my_info()));
    }

    /// Sessions against the hub machine of this crate, connected by a simulated network:
    /// login, user lists, chat, a passive search answered through the hub, a
    /// `$RevConnectToMe` answered by `$ConnectToMe`, and a kick.
    #[test]
    fn sessions_against_the_hub_machine() {
        struct Net {
            hub: Hub,
            sessions: Vec<HubSession>,
            events: Vec<Vec<Event>>,
            now: Instant,
            /// Connections that get the hub's broadcasts, with their tags.
            joined: std::collections::BTreeMap<u64, u8>,
        }
        impl Net {
            fn pump(&mut self) {
                for _ in 0..100 {
                    let mut moved = false;
                    for (i, s) in self.sessions.iter_mut().enumerate() {
                        while let Some(o) = s.poll_output() {
                            match o {
                                Output::Transmit(b) => {
                                    moved = true;
                                    self.hub.handle_input(self.now, i as u64, &b)
                                }
                                Output::Event(e) => self.events[i].push(e),
                                Output::Timeout(_) => break,
                            }
                        }
                    }
                    while let Some(o) = self.hub.poll_output() {
                        moved = true;
                        match o {
                            hub::Output::Send { conn, data } => {
                                self.sessions[conn as usize].handle_input(self.now, &data)
                            }
                            hub::Output::Broadcast { data, except, skip } => {
                                for (&conn, &tags) in &self.joined {
                                    if Some(conn) != except && tags & skip == 0 {
                                        self.sessions[conn as usize].handle_input(self.now, &data)
                                    }
                                }
                            }
                            hub::Output::Join { conn, tags } => {
                                self.joined.insert(conn, tags);
                            }
                            hub::Output::Leave { conn } => {
                                self.joined.remove(&conn);
                            }
                            hub::Output::Close { conn } => {
                                self.sessions[conn as usize].handle_eof();
                                self.hub.disconnect(conn);
                            }
                            hub::Output::Event(HubEvent::CheckPassword { conn, password, .. }) => {
                                self.hub.password_result(self.now, conn, password == "pw")
                            }
                            hub::Output::Event(_) => {}
                        }
                    }
                    if !moved {
                        return;
                    }
                }
                panic!("the network did not settle");
            }
            fn take(&mut self, i: usize) -> Vec<Event> {
                std::mem::take(&mut self.events[i])
            }
        }

        let now = Instant::now();
        let mut hub =
            Hub::new(HubConfig { name: "Loop hub".into(), motd: vec!["Welcome".into()], ..HubConfig::default() });
        hub.set_registered("op", true);
        let mut alice = alice_config();
        alice.mode = ClientMode::Active { ip: Some(LOCAL), tcp_port: 3010, udp_port: 3011 };
        let bob = SessionConfig::new("bob"); // passive
        let mut op = SessionConfig::new("op");
        op.password = Some("pw".into());
        let mut net = Net { hub, sessions: Vec::new(), events: vec![Vec::new(); 3], now, joined: Default::default() };
        for (i, cfg) in [alice, bob, op].into_iter().enumerate() {
            net.sessions.push(HubSession::new(cfg, now).unwrap());
            net.hub.accept(now, i as u64, LOCAL, b"0123456789abcdef");
            net.pump();
        }
        for i in 0..3 {
            let events = net.take(i);
            assert!(events.contains(&Event::LoggedIn), "{i}: {events:?}");
            assert!(events.contains(&Event::HubName("Loop hub".into())));
        }
        assert!(net.sessions[2].is_registered());
        assert_eq!(net.sessions[0].users().count(), 3);
        // The operator's own list marks it (hub.rs sends $OpList only in the login list).
        assert!(net.sessions[2].is_op("op") && !net.sessions[2].is_op("bob"));
        assert_eq!(
            net.sessions[1].user("alice").unwrap().info.as_ref().unwrap().tag.as_ref().unwrap().mode,
            Some(Mode::Active)
        );

        // Chat reaches everybody.
        net.sessions[1].say("hello $all").unwrap();
        net.pump();
        let hello = Event::Chat { nick: "bob".into(), text: "hello $all".into() };
        assert_eq!(net.take(0), vec![hello.clone()]);
        assert_eq!(net.take(2), vec![hello]);
        net.take(1);

        // bob (passive) searches; the hub passes it to alice (active), who answers through
        // the hub; bob gets the result.
        net.sessions[1].search(&SearchQuery::text("movie")).unwrap();
        net.pump();
        let events = net.take(0);
        let [Event::SearchRequest { origin, query }] = &events[..] else { panic!("{events:?}") };
        let root = crate::tth::tth(b"abc");
        assert!(Matcher::new(query).matches_file("/share/a movie.mkv", 3, &root));
        let responder = Responder {
            nick: "alice".into(),
            free_slots: 2,
            total_slots: 3,
            hub_name: "Loop hub".into(),
            hub_addr: "127.0.0.1:411".into(),
        };
        let result = responder.file_result(origin, "/share/a movie.mkv", 3, &root);
        assert_eq!(net.sessions[0].send_search_result(origin, result).unwrap(), None);
        net.pump();
        let events = net.take(1);
        let [Event::SearchResult(r)] = &events[..] else { panic!("{events:?}") };
        assert_eq!((r.nick.as_str(), r.path.as_str()), ("alice", "share\\a movie.mkv"));
        assert_eq!(r.tth(), Some(root));
        assert_eq!(r.target, None);

        // bob wants a connection: $RevConnectToMe; alice answers with $ConnectToMe.
        net.sessions[1].request_connection("alice").unwrap();
        net.pump();
        assert_eq!(net.take(0), vec![Event::RevConnectToMe { from: "bob".into() }]);
        net.sessions[0].request_connection("bob").unwrap();
        net.pump();
        assert_eq!(net.take(1), vec![Event::ConnectToMe { host: "127.0.0.1".into(), port: 3010, tls: false }]);

        // The operator kicks bob: bob's session ends as kicked, the others see him leave.
        net.sessions[2].say("!kick bob spam").unwrap();
        net.pump();
        let events = net.take(1);
        assert!(
            matches!(events.last(), Some(Event::Closed(CloseReason::Kicked { message })) if message.contains("spam")),
            "{events:?}"
        );
        assert!(net.take(0).contains(&Event::UserLeft { nick: "bob".into() }));
        assert!(net.sessions[0].user("bob").is_none());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Input(Vec<u8>),
        Advance(u64),
        Say(String),
        Pm(String, String),
        Search,
        Sr(bool),
        Ctm(String),
        Rctm(String),
        Share(u64),
        Eof,
    }

    fn step() -> impl Strategy<Value = Step> {
        let line = prop_oneof![
            Just(b"$Lock EXTENDEDPROTOCOLabc Pk=x|".to_vec()),
            Just(b"$Hello alice|".to_vec()),
            Just(b"$GetPass|".to_vec()),
            Just(b"$MyINFO $ALL bob d<x V:1,M:P,H:1/0/0,S:1>$ $1\x01$$5$|".to_vec()),
            Just(b"$NickList a$$b$$|$OpList a$$|$UserIP a 1.2.3.4$$alice ::1$$|".to_vec()),
            Just(b"$Search Hub:bob F?T?0?1?x|$Search 1.2.3.4:5 F?T?0?1?x|".to_vec()),
            Just(b"$ConnectToMe alice 1.2.3.4:5|$RevConnectToMe bob alice|$Quit a|".to_vec()),
            "[ -~]{0,30}\\|".prop_map(|s| s.into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        prop_oneof![
            line.prop_map(Step::Input),
            (0u64..300).prop_map(Step::Advance),
            "\\PC{0,10}".prop_map(Step::Say),
            ("\\PC{0,5}", "\\PC{0,5}").prop_map(|(a, b)| Step::Pm(a, b)),
            Just(Step::Search),
            any::<bool>().prop_map(Step::Sr),
            "\\PC{0,5}".prop_map(Step::Ctm),
            "\\PC{0,5}".prop_map(Step::Rctm),
            any::<u64>().prop_map(Step::Share),
            Just(Step::Eof),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(steps in proptest::collection::vec(step(), 0..40), active in any::<bool>()) {
            let mut now = Instant::now();
            let mut cfg = SessionConfig::new("alice");
            cfg.password = Some("pw".into());
            if active {
                cfg.mode = ClientMode::Active { ip: None, tcp_port: 1, udp_port: 2 };
            }
            let mut s = HubSession::new(cfg, now).unwrap();
            let root = crate::tth::tth(b"");
            for st in steps {
                match st {
                    Step::Input(b) => s.handle_input(now, &b),
                    Step::Advance(secs) => { now += Duration::from_secs(secs); s.handle_timeout(now); }
                    Step::Say(t) => { let _ = s.say(&t); }
                    Step::Pm(to, t) => { let _ = s.private_message(&to, &t); }
                    Step::Search => { let _ = s.search(&SearchQuery::text("x")); }
                    Step::Sr(passive) => {
                        let origin = if passive {
                            SearchOrigin::Passive { nick: "bob".into() }
                        } else {
                            SearchOrigin::Active { host: "1.2.3.4".into(), port: 5 }
                        };
                        let r = Responder { nick: "alice".into(), free_slots: 1, total_slots: 1,
                            hub_name: "h".into(), hub_addr: "1.2.3.4:411".into() }
                            .file_result(&origin, "/a", 1, &root);
                        let _ = s.send_search_result(&origin, r);
                    }
                    Step::Ctm(t) => { let _ = s.request_connection(&t); }
                    Step::Rctm(t) => { let _ = s.rev_connect_to_me(&t); }
                    Step::Share(n) => s.set_share_size(n),
                    Step::Eof => s.handle_eof(),
                }
                while let Some(o) = s.poll_output() {
                    if let Output::Transmit(b) = &o {
                        // Whole commands only, none longer than the limit.
                        prop_assert!(b.ends_with(b"|"), "{:?}", String::from_utf8_lossy(b));
                        prop_assert!(b.split(|c| *c == b'|').all(|c| c.len() <= MAX_COMMAND));
                    }
                    if matches!(o, Output::Timeout(_)) { break; }
                }
                let _ = (s.users().count(), s.our_ip(), s.is_op("a"));
            }
        }
    }
}
