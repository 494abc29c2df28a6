//! A PtokaX-class NMDC hub as a sans-IO state machine over many connections.
//!
//! The driver tells the hub about connections ([`Hub::accept`], [`Hub::disconnect`]),
//! feeds their bytes ([`Hub::handle_input`]) and the time ([`Hub::handle_timeout`]), and
//! answers the questions the hub cannot answer itself (password checks, which need a slow
//! hash: [`HubEvent::CheckPassword`] → [`Hub::password_result`]). It drains
//! [`Hub::poll_output`]: bytes for one connection, connections to close, and events to
//! persist or show (registrations, bans, kicks, chat).
//!
//! Login follows what ncdc, EiskaltDC++ and microdc2 do (`shared/notes/nmdc.md` §4):
//! `$Lock … Pk=` and `$HubName` on connect; the client's `$Supports`, `$Key`,
//! `$ValidateNick` come together; `$Supports NoGetINFO NoHello UserIP2` back, then
//! `$GetPass` for registered nicks, `$ValidateDenide`, `$HubIsFull`, or `$Hello <nick>`;
//! then `$Version`, `$MyINFO` and `$GetNickList` in either order.
//!
//! What goes to every online user is one [`Output::Broadcast`] (encoded once, shared),
//! not one send per recipient: the driver keeps who is online ([`Output::Join`],
//! [`Output::Leave`]) and which broadcasts each skips ([`tag`]). A login at N users thus
//! costs the hub O(1) outputs instead of N (N² for a login storm).
//!
//! Relay (§5) with anti-spoofing: the nick in `<nick>` chat, `$To: … From:`, `$MyINFO`,
//! `$RevConnectToMe`, `$SR` and `$Search Hub:` must be the sender's own, and the address in
//! `$ConnectToMe` and active `$Search` must be the sender's IP; anything else is dropped
//! and the sender warned, and a sender that keeps trying is kicked. Chat and searches are
//! rate-limited per user.
//!
//! One address cannot fill the hub (as Verlihub's `max_users_from_ip` and its "reconnecting
//! too fast" check do): at most [`HubConfig::max_users_per_ip`] unregistered users at once
//! and [`HubConfig::max_logins_per_ip_per_minute`] `$ValidateNick`s a minute from one
//! address, except from [`HubConfig::exempt_ips`]. A refused newcomer gets a hub chat line
//! saying why, then `$HubIsFull` (too many users) and the close; nobody already in is
//! dropped. [`HubConfig::reserved`] keeps one nick (the node's own client) out of every limit:
//! only a client that knows its password gets it, and a second login with that password
//! replaces a stale first session.
//!
//! Before `$ValidateNick` a connection may buffer at most [`MAX_LOGIN_COMMAND`] bytes of
//! an unterminated command, and a login not complete within [`HubConfig::login_timeout`]
//! ([`LOGIN_TIMEOUT`]) is closed.

use crate::command::{Command, Mode, MyInfo, SearchOrigin};
use crate::framing::CommandReader;
use crate::lock;
use common::AddressLimits;
pub use common::{find_ban, lift_bans, parse_op_command, split_command, HubOutput, OpCommand, TokenBucket};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection's id, chosen by the driver.
pub type ConnId = u64;

pub mod common;

/// Longest command a hub accepts from a client (clients send no long lists).
pub const MAX_CLIENT_COMMAND: usize = 16 * 1024;
/// A newcomer that listed `ZPipe0` (or `ZPipe`) in `$Supports` gets its user list as
/// `$ZOn|` and a zlib stream when the list is at least this long (docs/protocols/nmdc.md#zpipe);
/// shorter ones go plain (compression would save little).
pub const MIN_ZPIPE_BYTES: usize = 16 * 1024;
/// Longest command a hub accepts before `$ValidateNick` (`$Supports`, `$Key` and
/// `$ValidateNick` are a few hundred bytes), so a connection that never logs in holds at
/// most this much (plus one read) until [`LOGIN_TIMEOUT`].
pub const MAX_LOGIN_COMMAND: usize = 4 * 1024;
/// Default time from connect to a complete login (ncdc, EiskaltDC++ and microdc2 need
/// well under a second; a password check a few).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on unregistered users logged in (or logging in) at once from one address.
/// Verlihub's `max_users_from_ip` is off by default and set to about 10 on hubs that use
/// it; 8 leaves room for a household or office behind one NAT address.
pub const MAX_USERS_PER_IP: usize = 8;
/// Default cap on logins (`$ValidateNick`) from one address per minute: a burst of this
/// many, then one every 60 s / this. Real clients reconnect at most every few seconds.
pub const MAX_LOGINS_PER_IP_PER_MINUTE: u32 = 20;
/// Addresses whose login rate is remembered at once; beyond it, addresses idle for a
/// minute are forgotten (their bucket is full again anyway).
pub const MAX_TRACKED_IPS: usize = 4096;
/// Longest nick the hub accepts.
pub const MAX_HUB_NICK: usize = 64;
/// Longest chat or private message the hub relays, in bytes.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// Dropped lines (spoofing, flooding) a user may cause before being kicked.
pub const MAX_STRIKES: u32 = 20;
/// Most bytes of answers meant for one client alone (user lists, search results relayed to
/// it, ...) that one read of its input may cause. One 16 KiB read holds ~1,200
/// `$GetNickList`s: answered all at once they would queue ~120 MB for a client that may
/// never read them, before the driver's per-client output cap could drop it. Past this the
/// client is closed as flooding. The same size as the driver's per-client output cap.
pub const MAX_ANSWERS_PER_READ: usize = 4 * 1024 * 1024;

/// A token bucket: `burst` events at once, then one every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed at once.
    pub burst: u32,
    /// One more event allowed per this interval.
    pub every: Duration,
}

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// `$HubName`.
    pub name: String,
    /// `$HubTopic` (empty: none).
    pub topic: String,
    /// Lines sent as hub chat after login.
    pub motd: Vec<String>,
    /// The nick the hub speaks as in chat.
    pub bot_nick: String,
    /// Users at once (operators and registered users may exceed it).
    pub max_users: usize,
    /// Time from connect to a complete login.
    pub login_timeout: Duration,
    /// Main chat and private messages per user.
    pub chat_limit: RateLimit,
    /// Searches per user.
    pub search_limit: RateLimit,
    /// Unregistered users at once from one address (0: no limit).
    pub max_users_per_ip: usize,
    /// `$ValidateNick`s one address may send per minute (0: no limit).
    pub max_logins_per_ip_per_minute: u32,
    /// Addresses the two per-address limits do not apply to.
    pub exempt_ips: Vec<IpAddr>,
    /// A nick kept for one client (the node's own): no limit applies to it, and only its
    /// password gets it.
    pub reserved: Option<ReservedNick>,
}

/// A nick kept for one client; see [`HubConfig::reserved`].
#[derive(Clone, PartialEq, Eq)]
pub struct ReservedNick {
    /// The nick (compared without regard to case).
    pub nick: String,
    /// The password its client sends in `$MyPass` (Latin-1 wire text).
    pub password: String,
}

impl std::fmt::Debug for ReservedNick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReservedNick").field("nick", &self.nick).finish_non_exhaustive()
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            name: "omnipeer hub".into(),
            topic: String::new(),
            motd: Vec::new(),
            bot_nick: "Hub".into(),
            max_users: 5000,
            login_timeout: LOGIN_TIMEOUT,
            chat_limit: RateLimit { burst: 5, every: Duration::from_secs(1) },
            search_limit: RateLimit { burst: 5, every: Duration::from_secs(5) },
            max_users_per_ip: MAX_USERS_PER_IP,
            max_logins_per_ip_per_minute: MAX_LOGINS_PER_IP_PER_MINUTE,
            exempt_ips: Vec::new(),
            reserved: None,
        }
    }
}

/// A ban, by nick and/or address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Banned nick (compared without regard to case).
    pub nick: Option<String>,
    /// Banned address.
    pub ip: Option<IpAddr>,
    /// Until when (`None`: for good).
    pub until: Option<Instant>,
    /// Why.
    pub reason: String,
}

/// Something for the driver to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// Check `password` for the registered `nick`; answer with [`Hub::password_result`].
    CheckPassword {
        /// The connection.
        conn: ConnId,
        /// The registered nick.
        nick: String,
        /// What the user sent (Latin-1 wire text).
        password: String,
    },
    /// A user completed login.
    LoggedIn {
        /// The connection.
        conn: ConnId,
        /// The nick.
        nick: String,
        /// The address.
        ip: IpAddr,
        /// Whether an operator.
        op: bool,
    },
    /// A logged-in user left.
    LoggedOut {
        /// The connection.
        conn: ConnId,
        /// The nick.
        nick: String,
    },
    /// A main-chat line was relayed.
    Chat {
        /// The speaker.
        nick: String,
        /// The text (wire text, unescaped).
        text: String,
    },
    /// An operator registered a nick: store a salted hash of `password`, then call
    /// [`Hub::set_registered`].
    Register {
        /// The operator.
        by: String,
        /// The nick.
        nick: String,
        /// The password.
        password: String,
        /// Register as operator.
        op: bool,
    },
    /// An operator removed a registration (already removed from the hub).
    Unregister {
        /// The operator.
        by: String,
        /// The nick.
        nick: String,
    },
    /// An operator banned someone (already in force; persist it).
    Banned {
        /// The operator.
        by: String,
        /// The ban.
        ban: Ban,
        /// Its length (`None`: for good), for storing as wall-clock time.
        duration: Option<Duration>,
    },
    /// An operator lifted a nick's bans (already lifted; persist it).
    Unbanned {
        /// The operator.
        by: String,
        /// The nick.
        nick: String,
    },
    /// A user was kicked.
    Kicked {
        /// Who kicked (the hub's bot nick for automatic kicks).
        by: String,
        /// Who was kicked.
        nick: String,
        /// Why.
        reason: String,
    },
    /// The topic changed.
    TopicChanged {
        /// The operator.
        by: String,
        /// The new topic.
        topic: String,
    },
    /// A line was dropped: spoofing or flooding.
    Dropped {
        /// The connection.
        conn: ConnId,
        /// Its nick, if known.
        nick: Option<String>,
        /// Why.
        why: String,
    },
}

/// Tags of an online connection ([`Output::Join`]), which broadcasts may skip
/// ([`Output::Broadcast`]).
pub mod tag {
    /// A passive user: cannot answer a passive search.
    pub const PASSIVE: u8 = 1;
    /// A client that sent `NoHello`: gets no `$Hello` of newcomers.
    pub const NO_HELLO: u8 = 2;
    /// Not an operator whose client sent `UserIP2`: gets no `$UserIP` of others.
    pub const NO_USERIP: u8 = 4;
}

/// What to do next ([`HubOutput`], with this hub's events).
pub type Output = HubOutput<HubEvent>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Waiting for `$ValidateNick`.
    AwaitNick,
    /// `$GetPass` sent, waiting for `$MyPass`.
    AwaitPass { nick: String },
    /// `$MyPass` under check by the driver.
    Checking { nick: String },
    /// `$Hello` sent, waiting for the first `$MyINFO`.
    AwaitInfo { nick: String },
    /// Logged in.
    Online { nick: String },
    /// Being closed; ignore everything.
    Closing,
}

#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    phase: Phase,
    reader: CommandReader,
    no_hello: bool,
    no_getinfo: bool,
    userip2: bool,
    /// Said `ZPipe0`/`ZPipe`: takes `$ZOn|` and a zlib stream.
    zpipe: bool,
    registered: bool,
    op: bool,
    wants_list: bool,
    myinfo: Option<Arc<[u8]>>,
    passive: bool,
    deadline: Option<Instant>,
    chat: TokenBucket,
    search: TokenBucket,
    strikes: u32,
    /// Counted in [`Hub::per_ip`] (has a validated nick).
    counted: bool,
}

impl Conn {
    /// A connection from `ip` in `phase`, reading commands of at most `limit` bytes, with
    /// nothing said about it yet.
    fn new(ip: IpAddr, phase: Phase, limit: usize, deadline: Option<Instant>, cfg: &HubConfig) -> Conn {
        Conn {
            ip,
            phase,
            reader: CommandReader::with_limit(limit),
            no_hello: false,
            no_getinfo: false,
            userip2: false,
            zpipe: false,
            registered: false,
            op: false,
            wants_list: false,
            myinfo: None,
            passive: false,
            deadline,
            chat: TokenBucket::new(cfg.chat_limit),
            search: TokenBucket::new(cfg.search_limit),
            strikes: 0,
            counted: false,
        }
    }

    /// Which broadcasts it skips ([`tag`]).
    fn tags(&self) -> u8 {
        let mut t = 0;
        if self.passive {
            t |= tag::PASSIVE;
        }
        if self.no_hello {
            t |= tag::NO_HELLO;
        }
        if !(self.op && self.userip2) {
            t |= tag::NO_USERIP;
        }
        t
    }
}

/// The hub.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    conns: HashMap<ConnId, Conn>,
    /// Lower-case nick → connection, for every nick validated (logging in or online).
    nicks: HashMap<String, ConnId>,
    /// Online users in login order (for lists).
    online: Vec<ConnId>,
    /// Online users without the tag [`tag::NO_HELLO`] / [`tag::NO_USERIP`]: when there
    /// are none, the broadcast they alone would get is not made at all.
    online_hello: usize,
    online_userip: usize,
    /// Lower-case nick → (nick, op).
    registered: HashMap<String, (String, bool)>,
    bans: Vec<Ban>,
    out: VecDeque<Output>,
    /// Connections with a validated nick, and `$ValidateNick`s, per address.
    per_ip: AddressLimits,
}

impl Hub {
    /// A hub with no users.
    pub fn new(cfg: HubConfig) -> Hub {
        Hub {
            cfg,
            conns: HashMap::new(),
            nicks: HashMap::new(),
            online: Vec::new(),
            online_hello: 0,
            online_userip: 0,
            registered: HashMap::new(),
            bans: Vec::new(),
            out: VecDeque::new(),
            per_ip: AddressLimits::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// Mark `nick` as registered (the driver holds the password hash).
    pub fn set_registered(&mut self, nick: &str, op: bool) {
        self.registered.insert(nick.to_lowercase(), (nick.to_owned(), op));
    }

    /// Whether `nick` is registered, and as an operator.
    pub fn registration(&self, nick: &str) -> Option<bool> {
        self.registered.get(&nick.to_lowercase()).map(|(_, op)| *op)
    }

    /// Put a ban in force (as loaded from storage).
    pub fn add_ban(&mut self, ban: Ban) {
        self.bans.push(ban);
    }

    /// Nicks online, in login order.
    pub fn online_nicks(&self) -> Vec<String> {
        self.online.iter().filter_map(|c| self.nick_of(*c).map(str::to_owned)).collect()
    }

    /// Connections open (logging in or online).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn nick_of(&self, conn: ConnId) -> Option<&str> {
        match &self.conns.get(&conn)?.phase {
            Phase::AwaitPass { nick }
            | Phase::Checking { nick }
            | Phase::AwaitInfo { nick }
            | Phase::Online { nick } => Some(nick),
            _ => None,
        }
    }

    /// A connection was accepted. `lock_random` makes our `$Lock` (16 random bytes).
    pub fn accept(&mut self, now: Instant, conn: ConnId, ip: IpAddr, lock_random: &[u8]) {
        self.conns.insert(
            conn,
            Conn::new(ip, Phase::AwaitNick, MAX_LOGIN_COMMAND, Some(now + self.cfg.login_timeout), &self.cfg),
        );
        if let Some(ban) = self.ban_for(now, None, Some(ip)) {
            let msg = ban_message(&ban);
            self.say_to(conn, &msg);
            self.close(conn);
            return;
        }
        let mut hello = lock::lock_command(lock_random, "omnipeer").encode();
        hello.extend(Command::HubName(self.cfg.name.clone()).encode());
        self.send(conn, hello);
    }

    /// The connection closed (by the peer, or by the driver, e.g. because its outbound
    /// queue overflowed).
    pub fn disconnect(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        if c.counted {
            self.per_ip.remove_user(c.ip);
        }
        let nick = match &c.phase {
            Phase::AwaitPass { nick }
            | Phase::Checking { nick }
            | Phase::AwaitInfo { nick }
            | Phase::Online { nick } => Some(nick.clone()),
            _ => None,
        };
        if let Some(nick) = &nick {
            if self.nicks.get(&nick.to_lowercase()) == Some(&conn) {
                self.nicks.remove(&nick.to_lowercase());
            }
        }
        if let Some(pos) = self.online.iter().position(|x| *x == conn) {
            self.online.remove(pos);
            self.count_online(c.tags(), false);
            let nick = nick.unwrap_or_default();
            self.out.push_back(Output::Leave { conn });
            let quit: Arc<[u8]> = Command::Quit(nick.clone()).encode().into();
            self.out.push_back(Output::Broadcast { data: quit, except: None, skip: 0 });
            self.out.push_back(Output::Event(HubEvent::LoggedOut { conn, nick }));
        }
    }

    /// Bytes from a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.reader.push(bytes);
        let mut answered = 0usize;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            if c.phase == Phase::Closing {
                return;
            }
            let raw = match c.reader.next_command() {
                Ok(Some(raw)) => raw,
                Ok(None) => {
                    // A reader keeps the capacity of its largest burst; a fresh one (which
                    // allocates nothing until bytes come) gives it back.
                    if c.reader.buffered() == 0 {
                        c.reader = CommandReader::with_limit(c.reader.limit());
                    }
                    return;
                }
                Err(e) => {
                    self.drop_line(conn, format!("{e}"));
                    self.close(conn);
                    return;
                }
            };
            let mark = self.out.len();
            match Command::parse(&raw) {
                Ok(cmd) => self.on_command(now, conn, cmd, raw),
                Err(e) => self.drop_line(conn, format!("malformed command: {e}")),
            }
            answered += self
                .out
                .range(mark..)
                .map(|o| match o {
                    Output::Send { conn: to, data } if *to == conn => data.len(),
                    _ => 0,
                })
                .sum::<usize>();
            if answered > MAX_ANSWERS_PER_READ {
                self.drop_line(conn, format!("more than {MAX_ANSWERS_PER_READ} bytes of answers asked for at once"));
                self.close(conn);
                return;
            }
        }
    }

    /// The driver checked a password asked for with [`HubEvent::CheckPassword`].
    pub fn password_result(&mut self, now: Instant, conn: ConnId, ok: bool) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Phase::Checking { nick } = c.phase.clone() else { return };
        if !ok {
            self.send(conn, Command::BadPass.encode());
            self.close(conn);
            return;
        }
        let op = self.registration(&nick).unwrap_or(false);
        let c = self.conns.get_mut(&conn).expect("present");
        c.registered = true;
        c.op = op;
        c.phase = Phase::AwaitInfo { nick: nick.clone() };
        let _ = now;
        let mut reply = Command::Hello(nick.clone()).encode();
        if op {
            reply.extend(Command::LogedIn(nick).encode());
        }
        self.send(conn, reply);
    }

    /// Time passed: closes logins that took too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<ConnId> =
            self.conns.iter().filter(|(_, c)| c.deadline.is_some_and(|d| now >= d)).map(|(id, _)| *id).collect();
        for conn in late {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.deadline = None;
            }
            self.say_to(conn, "Login timed out.");
            self.close(conn);
        }
        self.bans.retain(|b| b.until.is_none_or(|u| u > now));
        self.per_ip.forget_idle(now);
    }

    /// The earliest instant [`Hub::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().filter_map(|c| c.deadline).min()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ---- helpers -------------------------------------------------------------------

    /// Count a user with `tags` coming online (`true`) or leaving.
    fn count_online(&mut self, tags: u8, joins: bool) {
        for (bit, n) in [(tag::NO_HELLO, &mut self.online_hello), (tag::NO_USERIP, &mut self.online_userip)] {
            if tags & bit == 0 {
                *n = if joins { *n + 1 } else { n.saturating_sub(1) };
            }
        }
    }

    fn send(&mut self, conn: ConnId, data: Vec<u8>) {
        // Nothing goes to a connection after its Close (an operator banning himself).
        if self.conns.get(&conn).is_some_and(|c| c.phase == Phase::Closing) {
            return;
        }
        self.out.push_back(Output::Send { conn, data: data.into() });
    }

    fn say_to(&mut self, conn: ConnId, text: &str) {
        let line = Command::Chat { nick: self.cfg.bot_nick.clone(), text: text.to_owned() }.encode();
        self.send(conn, line);
    }

    fn broadcast(&mut self, data: Arc<[u8]>, except: Option<ConnId>) {
        self.out.push_back(Output::Broadcast { data, except, skip: 0 });
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.phase != Phase::Closing {
                // Free the nick at once, announce the departure, then close.
                let id = conn;
                self.disconnect_keep(id);
                self.out.push_back(Output::Close { conn: id });
            }
        }
    }

    /// Like [`Hub::disconnect`] but the connection stays known (as closing) until the driver
    /// reports it closed.
    fn disconnect_keep(&mut self, conn: ConnId) {
        let Some(mut c) = self.conns.remove(&conn) else { return };
        let reader = std::mem::take(&mut c.reader);
        self.conns.insert(conn, c);
        self.disconnect(conn);
        let _ = reader;
        // Re-insert a closing stub so later input and events are ignored.
        self.conns.insert(conn, Conn::new(IpAddr::from([0, 0, 0, 0]), Phase::Closing, 1, None, &self.cfg));
    }

    fn drop_line(&mut self, conn: ConnId, why: String) {
        let nick = self.nick_of(conn).map(str::to_owned);
        self.out.push_back(Output::Event(HubEvent::Dropped { conn, nick: nick.clone(), why: why.clone() }));
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.strikes += 1;
        let strikes = c.strikes;
        if strikes > MAX_STRIKES {
            let by = self.cfg.bot_nick.clone();
            self.kick(conn, &by, "too many refused commands (spoofing or flooding)");
        } else if strikes <= 3 || strikes % 5 == 0 {
            self.say_to(conn, &format!("Your command was dropped: {why}."));
        }
    }

    fn ban_for(&self, now: Instant, nick: Option<&str>, ip: Option<IpAddr>) -> Option<Ban> {
        find_ban(&self.bans, now, nick, ip)
    }

    fn conn_by_nick(&self, nick: &str) -> Option<ConnId> {
        let id = *self.nicks.get(&nick.to_lowercase())?;
        matches!(self.conns.get(&id)?.phase, Phase::Online { .. }).then_some(id)
    }

    fn kick(&mut self, victim: ConnId, by: &str, reason: &str) {
        let Some(nick) = self.nick_of(victim).map(str::to_owned) else { return };
        self.say_to(victim, &format!("You were kicked by {by}: {reason}"));
        self.close(victim);
        let note = format!("{nick} was kicked by {by}: {reason}");
        let line: Arc<[u8]> = Command::Chat { nick: self.cfg.bot_nick.clone(), text: note }.encode().into();
        self.broadcast(line, None);
        self.out.push_back(Output::Event(HubEvent::Kicked { by: by.to_owned(), nick, reason: reason.to_owned() }));
    }

    // ---- commands ------------------------------------------------------------------

    fn on_command(&mut self, now: Instant, conn: ConnId, cmd: Command, raw: Vec<u8>) {
        let phase = self.conns[&conn].phase.clone();
        match phase {
            Phase::Closing => {}
            Phase::Online { nick } => self.online_command(now, conn, &nick, cmd, raw),
            _ => self.login_command(now, conn, phase, cmd, raw),
        }
    }

    fn login_command(&mut self, now: Instant, conn: ConnId, phase: Phase, cmd: Command, raw: Vec<u8>) {
        match (phase, cmd) {
            (_, Command::Supports { features, .. }) => {
                let c = self.conns.get_mut(&conn).expect("present");
                c.no_hello = features.iter().any(|f| f == "NoHello");
                c.no_getinfo = features.iter().any(|f| f == "NoGetINFO");
                c.userip2 = features.iter().any(|f| f == "UserIP2");
                c.zpipe = features.iter().any(|f| f == "ZPipe0" || f == "ZPipe");
                self.send(conn, Command::supports(&["NoGetINFO", "NoHello", "UserIP2"]).encode());
            }
            (_, Command::Key(_)) | (_, Command::Version(_)) => {}
            (_, Command::GetNickList) => self.conns.get_mut(&conn).expect("present").wants_list = true,
            (Phase::AwaitNick, Command::ValidateNick(nick)) => self.validate_nick(now, conn, nick),
            (Phase::AwaitPass { nick }, Command::MyPass(password)) if self.is_reserved(&nick) => {
                self.reserved_password(conn, nick, &password)
            }
            (Phase::AwaitPass { nick }, Command::MyPass(password)) => {
                self.conns.get_mut(&conn).expect("present").phase = Phase::Checking { nick: nick.clone() };
                self.out.push_back(Output::Event(HubEvent::CheckPassword { conn, nick, password }));
            }
            (Phase::AwaitInfo { nick }, Command::MyInfo(info)) => {
                if !info.nick.eq(&nick) {
                    self.drop_line(conn, format!("$MyINFO for {} is not yours ({nick})", info.nick));
                    return;
                }
                self.log_in(conn, &nick, info, raw);
            }
            (_, other) => {
                // Anything else before login: the protocol allows nothing else here.
                self.drop_line(conn, format!("{} before login", other.name()));
            }
        }
    }

    fn is_reserved(&self, nick: &str) -> bool {
        self.cfg.reserved.as_ref().is_some_and(|r| r.nick.eq_ignore_ascii_case(nick))
    }

    /// Give `conn` the nick `nick`: counted for its address (unless `counted` is false: the
    /// reserved nick takes no place of its address), and commands after it may be as long
    /// as [`MAX_CLIENT_COMMAND`].
    fn take_nick(&mut self, conn: ConnId, nick: &str, counted: bool) {
        self.nicks.insert(nick.to_lowercase(), conn);
        let c = self.conns.get_mut(&conn).expect("present");
        c.reader.set_limit(MAX_CLIENT_COMMAND);
        if counted && !c.counted {
            c.counted = true;
            self.per_ip.add_user(c.ip);
        }
    }

    fn validate_nick(&mut self, now: Instant, conn: ConnId, nick: String) {
        let bad = nick.is_empty()
            || nick.len() > MAX_HUB_NICK
            || nick.eq_ignore_ascii_case(&self.cfg.bot_nick)
            || nick.chars().any(|c| c.is_control() || matches!(c, ' ' | '$' | '|' | '<' | '>'));
        let ip = self.conns[&conn].ip;
        if !bad && self.is_reserved(&nick) {
            // The node's own client: no limit, no ban and no "taken" (its password decides,
            // and a stale session of its own is replaced).
            self.conns.get_mut(&conn).expect("present").phase = Phase::AwaitPass { nick };
            self.send(conn, Command::GetPass { salt: None }.encode());
            return;
        }
        let n = self.cfg.max_logins_per_ip_per_minute;
        if !self.per_ip.take_login(now, ip, n, &self.cfg.exempt_ips) {
            self.say_to(
                conn,
                &format!("Too many logins from your address ({ip}): at most {n} a minute. Try again in a minute."),
            );
            self.close(conn);
            return;
        }
        let taken = self.nicks.contains_key(&nick.to_lowercase());
        if bad || taken {
            self.send(conn, Command::ValidateDenide(nick).encode());
            self.close(conn);
            return;
        }
        if let Some(ban) = self.ban_for(now, Some(&nick), Some(ip)) {
            let msg = ban_message(&ban);
            self.say_to(conn, &msg);
            self.close(conn);
            return;
        }
        let reg = self.registration(&nick);
        if reg.is_none() && self.online.len() >= self.cfg.max_users {
            self.send(conn, Command::HubIsFull.encode());
            self.close(conn);
            return;
        }
        let per_ip = self.cfg.max_users_per_ip;
        let full = reg.is_none().then(|| self.per_ip.users_full(ip, per_ip, &self.cfg.exempt_ips)).flatten();
        if let Some(from_ip) = full {
            // What Verlihub does: say why, then $HubIsFull (ncdc and DC++ stop there).
            self.say_to(
                conn,
                &format!("This hub takes at most {per_ip} users from one address, and {ip} has {from_ip}."),
            );
            self.send(conn, Command::HubIsFull.encode());
            self.close(conn);
            return;
        }
        self.take_nick(conn, &nick, true);
        let c = self.conns.get_mut(&conn).expect("present");
        if reg.is_some() {
            c.phase = Phase::AwaitPass { nick };
            self.send(conn, Command::GetPass { salt: None }.encode());
        } else {
            c.phase = Phase::AwaitInfo { nick: nick.clone() };
            self.send(conn, Command::Hello(nick).encode());
        }
    }

    /// `$MyPass` for the reserved nick: checked here (the password is in the config, not
    /// the database).
    fn reserved_password(&mut self, conn: ConnId, nick: String, password: &str) {
        let ok =
            self.cfg.reserved.as_ref().is_some_and(|r| constant_time_eq(r.password.as_bytes(), password.as_bytes()));
        if !ok {
            self.send(conn, Command::BadPass.encode());
            self.close(conn);
            return;
        }
        if let Some(old) = self.nicks.get(&nick.to_lowercase()).copied().filter(|o| *o != conn) {
            self.say_to(old, "You logged in again from another connection.");
            self.close(old);
        }
        self.take_nick(conn, &nick, false);
        let c = self.conns.get_mut(&conn).expect("present");
        c.registered = true;
        c.phase = Phase::AwaitInfo { nick: nick.clone() };
        self.send(conn, Command::Hello(nick).encode());
    }

    fn log_in(&mut self, conn: ConnId, nick: &str, info: MyInfo, raw: Vec<u8>) {
        let mut myinfo = raw;
        myinfo.push(b'|');
        let myinfo: Arc<[u8]> = myinfo.into();
        let c = self.conns.get_mut(&conn).expect("present");
        c.phase = Phase::Online { nick: nick.to_owned() };
        c.deadline = None;
        c.myinfo = Some(myinfo.clone());
        c.passive = info.tag.as_ref().and_then(|t| t.mode) == Some(Mode::Passive);
        let (ip, op, wants_list, tags) = (c.ip, c.op, c.wants_list, c.tags());
        c.wants_list = false;
        self.online.push(conn);
        self.count_online(tags, true);
        self.out.push_back(Output::Join { conn, tags });
        // Everybody else learns about the newcomer: one broadcast each, whatever the number
        // of users ($Hello first, for clients without NoHello).
        let except = Some(conn);
        if self.online_hello > usize::from(tags & tag::NO_HELLO == 0) {
            let hello: Arc<[u8]> = Command::Hello(nick.to_owned()).encode().into();
            self.out.push_back(Output::Broadcast { data: hello, except, skip: tag::NO_HELLO });
        }
        self.out.push_back(Output::Broadcast { data: myinfo, except, skip: 0 });
        if self.online_userip > usize::from(tags & tag::NO_USERIP == 0) {
            let userip: Arc<[u8]> = Command::UserIp(vec![(nick.to_owned(), ip.to_string())]).encode().into();
            self.out.push_back(Output::Broadcast { data: userip, except, skip: tag::NO_USERIP });
        }
        if op {
            // Everybody else learns that the newcomer is an operator.
            let ops: Arc<[u8]> = Command::OpList(vec![nick.to_owned()]).encode().into();
            self.out.push_back(Output::Broadcast { data: ops, except, skip: 0 });
        }
        if wants_list {
            self.send_list(conn);
        }
        let mut welcome = Vec::new();
        if !self.cfg.topic.is_empty() {
            welcome.extend(Command::HubTopic(self.cfg.topic.clone()).encode());
        }
        for line in &self.cfg.motd {
            welcome.extend(Command::Chat { nick: self.cfg.bot_nick.clone(), text: line.clone() }.encode());
        }
        if !welcome.is_empty() {
            self.send(conn, welcome);
        }
        self.out.push_back(Output::Event(HubEvent::LoggedIn { conn, nick: nick.to_owned(), ip, op }));
    }

    /// The user list for `conn`: every `$MyINFO` (NoHello clients) or a `$NickList`, then
    /// `$OpList` and, for UserIP2 clients, `$UserIP`.
    fn send_list(&mut self, conn: ConnId) {
        let c = &self.conns[&conn];
        let (no_hello, userip2, is_op, zpipe) = (c.no_hello, c.userip2, c.op, c.zpipe);
        let mut data = Vec::new();
        let mut nicks = Vec::new();
        let mut ops = Vec::new();
        let mut ips = Vec::new();
        for &u in &self.online {
            let uc = &self.conns[&u];
            let Phase::Online { nick } = &uc.phase else { continue };
            if no_hello {
                if let Some(mi) = &uc.myinfo {
                    data.extend_from_slice(mi);
                }
            }
            nicks.push(nick.clone());
            if uc.op {
                ops.push(nick.clone());
            }
            if u == conn || is_op {
                ips.push((nick.clone(), uc.ip.to_string()));
            }
        }
        if !no_hello {
            data.extend(Command::NickList(nicks).encode());
        }
        data.extend(Command::OpList(ops).encode());
        if userip2 {
            data.extend(Command::UserIp(ips).encode());
        }
        if zpipe && data.len() >= MIN_ZPIPE_BYTES {
            data = zon(&data);
        }
        self.send(conn, data);
    }

    fn online_command(&mut self, now: Instant, conn: ConnId, me: &str, cmd: Command, raw: Vec<u8>) {
        let my_ip = self.conns[&conn].ip;
        match cmd {
            Command::Chat { nick, text } => {
                if nick != me {
                    return self.drop_line(conn, format!("chat as <{nick}> (you are {me})"));
                }
                if text.len() > MAX_MESSAGE {
                    return self.drop_line(conn, format!("message longer than {MAX_MESSAGE} bytes"));
                }
                if let Some(command) = text.strip_prefix('!') {
                    return self.hub_command(now, conn, me, command);
                }
                if !self.take_chat(now, conn) {
                    return self.drop_line(conn, "chat flood: slow down".into());
                }
                let mut line = raw;
                line.push(b'|');
                self.broadcast(line.into(), None);
                self.out.push_back(Output::Event(HubEvent::Chat { nick, text }));
            }
            Command::To { to, from, speaker, text } => {
                if from != me || speaker.as_deref().is_some_and(|s| s != me) {
                    return self.drop_line(conn, format!("private message from {from} (you are {me})"));
                }
                if text.len() > MAX_MESSAGE {
                    return self.drop_line(conn, format!("message longer than {MAX_MESSAGE} bytes"));
                }
                if !self.take_chat(now, conn) {
                    return self.drop_line(conn, "private message flood: slow down".into());
                }
                match self.conn_by_nick(&to) {
                    Some(target) => {
                        let mut line = raw;
                        line.push(b'|');
                        self.send(target, line);
                    }
                    None => {
                        let reply = Command::To {
                            to: me.to_owned(),
                            from: to.clone(),
                            speaker: Some(self.cfg.bot_nick.clone()),
                            text: format!("{to} is not online."),
                        };
                        self.send(conn, reply.encode());
                    }
                }
            }
            Command::MyInfo(info) => {
                if info.nick != me {
                    return self.drop_line(conn, format!("$MyINFO for {} (you are {me})", info.nick));
                }
                let mut line = raw;
                line.push(b'|');
                let c = self.conns.get_mut(&conn).expect("present");
                if c.myinfo.as_deref() == Some(&line[..]) {
                    // Everybody has this one already (clients repeat an unchanged $MyINFO).
                    return;
                }
                let line: Arc<[u8]> = line.into();
                c.myinfo = Some(line.clone());
                let passive = info.tag.as_ref().and_then(|t| t.mode) == Some(Mode::Passive);
                if passive != c.passive {
                    c.passive = passive;
                    let tags = c.tags();
                    self.out.push_back(Output::Join { conn, tags });
                }
                self.broadcast(line, None);
            }
            Command::GetNickList => self.send_list(conn),
            Command::GetInfo { other, me: asker } => {
                if asker != me {
                    return self.drop_line(conn, format!("$GetINFO as {asker} (you are {me})"));
                }
                if let Some(t) = self.conn_by_nick(&other) {
                    if let Some(mi) = self.conns[&t].myinfo.clone() {
                        self.out.push_back(Output::Send { conn, data: mi });
                    }
                }
            }
            Command::ConnectToMe { target, host, .. } => {
                if host.parse::<IpAddr>().ok() != Some(my_ip) {
                    return self.drop_line(conn, format!("$ConnectToMe with address {host} (yours is {my_ip})"));
                }
                match self.conn_by_nick(&target) {
                    Some(t) => {
                        let mut line = raw;
                        line.push(b'|');
                        self.send(t, line);
                    }
                    None => self.say_to(conn, &format!("{target} is not online.")),
                }
            }
            Command::RevConnectToMe { from, target } => {
                if from != me {
                    return self.drop_line(conn, format!("$RevConnectToMe from {from} (you are {me})"));
                }
                if let Some(t) = self.conn_by_nick(&target) {
                    let mut line = raw;
                    line.push(b'|');
                    self.send(t, line);
                }
            }
            Command::Search { origin, .. } => {
                let passive_origin = match &origin {
                    SearchOrigin::Active { host, .. } => {
                        if host.parse::<IpAddr>().ok() != Some(my_ip) {
                            return self.drop_line(conn, format!("$Search answering to {host} (yours is {my_ip})"));
                        }
                        false
                    }
                    SearchOrigin::Passive { nick } => {
                        if nick != me {
                            return self.drop_line(conn, format!("$Search as Hub:{nick} (you are {me})"));
                        }
                        true
                    }
                };
                if !self.take_search(now, conn) {
                    return self.drop_line(conn, "search flood: slow down".into());
                }
                let mut line = raw;
                line.push(b'|');
                let skip = if passive_origin { tag::PASSIVE } else { 0 };
                self.out.push_back(Output::Broadcast { data: line.into(), except: Some(conn), skip });
            }
            Command::Sr(sr) => {
                if sr.nick != me {
                    return self.drop_line(conn, format!("$SR from {} (you are {me})", sr.nick));
                }
                let (sr, target) = sr.split_target();
                if let Some(t) = target.and_then(|t| self.conn_by_nick(&t)) {
                    self.send(t, Command::Sr(sr).encode());
                }
            }
            Command::Kick(victim) => {
                if !self.conns[&conn].op {
                    return self.drop_line(conn, "$Kick is for operators".into());
                }
                match self.conn_by_nick(&victim) {
                    Some(v) => self.kick(v, me, "kicked by an operator"),
                    None => self.say_to(conn, &format!("{victim} is not online.")),
                }
            }
            Command::OpForceMove { who, address, message } => {
                if !self.conns[&conn].op {
                    return self.drop_line(conn, "$OpForceMove is for operators".into());
                }
                if let Some(v) = self.conn_by_nick(&who) {
                    let note = Command::To {
                        to: who.clone(),
                        from: me.to_owned(),
                        speaker: Some(me.to_owned()),
                        text: format!("You are being moved to {address}: {message}"),
                    };
                    let mut data = note.encode();
                    data.extend(Command::ForceMove(address).encode());
                    self.send(v, data);
                    self.close(v);
                }
            }
            // Login commands again, keep-alive style commands, and commands for other
            // clients only: nothing to relay.
            _ => {}
        }
    }

    fn take_chat(&mut self, now: Instant, conn: ConnId) -> bool {
        let limit = self.cfg.chat_limit;
        let c = self.conns.get_mut(&conn).expect("present");
        c.op || c.chat.take(now, limit)
    }

    fn take_search(&mut self, now: Instant, conn: ConnId) -> bool {
        let limit = self.cfg.search_limit;
        let c = self.conns.get_mut(&conn).expect("present");
        c.op || c.search.take(now, limit)
    }

    /// Main-chat commands: `!help` for everybody, the rest for operators (those both hubs
    /// take: [`parse_op_command`]; and `!topic`).
    fn hub_command(&mut self, now: Instant, conn: ConnId, me: &str, line: &str) {
        let (name, args) = split_command(line);
        let is_op = self.conns[&conn].op;
        if name == "help" {
            let mut text = String::from("Commands: !help");
            if is_op {
                text.push_str(
                    ", !kick <nick> [reason], !ban <nick> <duration: 30m, 2h, 7d, perm> [reason], \
                     !unban <nick>, !topic <text>, !reg <nick> <password> [op], !unreg <nick>, !users",
                );
            }
            return self.say_to(conn, &text);
        }
        if !is_op {
            return self.say_to(conn, &format!("!{name}: you are not an operator (try !help)."));
        }
        match parse_op_command(name, args) {
            OpCommand::Kick { victim, reason } => match self.conn_by_nick(victim) {
                Some(v) => self.kick(v, me, &reason),
                None => self.say_to(conn, &format!("{victim} is not online.")),
            },
            OpCommand::Ban { victim, dur, duration, reason } => {
                let victim_conn = self.conn_by_nick(victim);
                let ip = victim_conn.map(|v| self.conns[&v].ip);
                let ban =
                    Ban { nick: Some(victim.to_owned()), ip, until: duration.map(|d| now + d), reason: reason.clone() };
                self.bans.push(ban.clone());
                self.out.push_back(Output::Event(HubEvent::Banned { by: me.to_owned(), ban, duration }));
                if let Some(v) = victim_conn {
                    self.kick(v, me, &format!("banned ({dur}): {reason}"));
                }
                self.say_to(conn, &format!("{victim} is banned ({dur})."));
            }
            OpCommand::Unban { victim } => {
                let n = lift_bans(&mut self.bans, victim);
                self.out.push_back(Output::Event(HubEvent::Unbanned { by: me.to_owned(), nick: victim.to_owned() }));
                self.say_to(conn, &format!("{n} ban(s) of {victim} lifted."));
            }
            OpCommand::Other { name, args } if name == "topic" => {
                let topic = args.join(" ");
                self.cfg.topic = topic.clone();
                self.broadcast(Command::HubTopic(topic.clone()).encode().into(), None);
                let note =
                    Command::Chat { nick: self.cfg.bot_nick.clone(), text: format!("{me} set the topic: {topic}") };
                self.broadcast(note.encode().into(), None);
                self.out.push_back(Output::Event(HubEvent::TopicChanged { by: me.to_owned(), topic }));
            }
            OpCommand::Reg { nick, password, op } => {
                if !crate::command::is_valid_nick(nick) || nick.len() > MAX_HUB_NICK {
                    return self.say_to(conn, &format!("'{nick}' is not a valid nick."));
                }
                self.set_registered(nick, op);
                self.out.push_back(Output::Event(HubEvent::Register {
                    by: me.to_owned(),
                    nick: nick.to_owned(),
                    password: password.to_owned(),
                    op,
                }));
                self.say_to(conn, &format!("{nick} is registered{}.", if op { " as operator" } else { "" }));
            }
            OpCommand::Unreg { nick } => {
                if self.registered.remove(&nick.to_lowercase()).is_some() {
                    self.out
                        .push_back(Output::Event(HubEvent::Unregister { by: me.to_owned(), nick: nick.to_owned() }));
                    self.say_to(conn, &format!("{nick} is no longer registered."));
                } else {
                    self.say_to(conn, &format!("{nick} is not registered."));
                }
            }
            OpCommand::Users => {
                let list: Vec<String> = self
                    .online
                    .iter()
                    .filter_map(|c| {
                        let uc = &self.conns[c];
                        let Phase::Online { nick } = &uc.phase else { return None };
                        Some(format!("{nick} ({}{})", uc.ip, if uc.op { ", op" } else { "" }))
                    })
                    .collect();
                self.say_to(conn, &format!("{} online: {}", list.len(), list.join(", ")));
            }
            OpCommand::Refused(text) => self.say_to(conn, &text),
            OpCommand::Other { name, .. } => self.say_to(conn, &format!("Unknown command !{name} (try !help).")),
        }
    }
}

/// Compare without stopping at the first difference (the reserved nick's password).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ban_message(ban: &Ban) -> String {
    match ban.until {
        Some(_) => format!("You are banned from this hub for a while: {}", ban.reason),
        None => format!("You are banned from this hub: {}", ban.reason),
    }
}

/// `30s`, `30m`, `2h`, `7d`, `2w`, or `perm`/`forever` (→ `Some(None)`).
pub fn parse_duration(s: &str) -> Option<Option<Duration>> {
    let s = s.to_ascii_lowercase();
    if s == "perm" || s == "forever" || s == "permanent" {
        return Some(None);
    }
    let unit_at = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(unit_at);
    let n: u64 = n.parse().ok().filter(|n| *n > 0 && *n < 1_000_000)?;
    let secs = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(Some(Duration::from_secs(n * secs)))
}

/// `$ZOn|` and `data` as one zlib stream (what PtokaX sends to `ZPipe0` clients).
pub fn zon(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = b"$ZOn|".to_vec();
    let mut e = flate2::write::ZlibEncoder::new(&mut out, flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(data);
    let _ = e.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &[u8] = &[7u8; 16];

    struct T {
        hub: Hub,
        now: Instant,
        /// Everything each connection was sent, as text.
        inbox: HashMap<ConnId, String>,
        closed: Vec<ConnId>,
        events: Vec<HubEvent>,
        /// Connections that get broadcasts, with their tags (what the driver keeps).
        joined: HashMap<ConnId, u8>,
    }

    impl T {
        fn new(cfg: HubConfig) -> T {
            T {
                hub: Hub::new(cfg),
                now: Instant::now(),
                inbox: HashMap::new(),
                closed: Vec::new(),
                events: Vec::new(),
                joined: HashMap::new(),
            }
        }
        fn pump(&mut self) {
            while let Some(o) = self.hub.poll_output() {
                match o {
                    Output::Send { conn, data } => {
                        self.inbox.entry(conn).or_default().push_str(&crate::text::decode(&data))
                    }
                    Output::Broadcast { data, except, skip } => {
                        for (&c, &tags) in &self.joined {
                            if Some(c) != except && tags & skip == 0 {
                                self.inbox.entry(c).or_default().push_str(&crate::text::decode(&data));
                            }
                        }
                    }
                    Output::Join { conn, tags } => {
                        self.joined.insert(conn, tags);
                    }
                    Output::Leave { conn } => {
                        self.joined.remove(&conn);
                    }
                    Output::Close { conn } => self.closed.push(conn),
                    Output::Event(e) => self.events.push(e),
                }
            }
        }
        fn accept(&mut self, conn: ConnId, ip: &str) {
            self.hub.accept(self.now, conn, ip.parse().unwrap(), LOCK);
            self.pump();
        }
        fn input(&mut self, conn: ConnId, s: &str) {
            self.hub.handle_input(self.now, conn, &crate::text::encode(s));
            self.pump();
        }
        fn take(&mut self, conn: ConnId) -> String {
            self.inbox.remove(&conn).unwrap_or_default()
        }
        /// Log in like ncdc does.
        fn login(&mut self, conn: ConnId, nick: &str, mode: char) {
            self.login_from(conn, nick, mode, "127.0.0.1");
        }
        fn login_from(&mut self, conn: ConnId, nick: &str, mode: char, ip: &str) {
            self.accept(conn, ip);
            self.input(conn, &format!("$Supports NoGetINFO NoHello UserIP2 TLS|$Key x|$ValidateNick {nick}|"));
            self.input(
                conn,
                &format!("$Version 1,0091|$MyINFO $ALL {nick} d<ncdc V:1.23.1,M:{mode},H:1/0/0,S:10>$ $100\x01$$3084$|$GetNickList|"),
            );
            self.take(conn);
        }
        /// `nick`, registered as an operator, logs in on `conn` (`NoHello UserIP2`) up to
        /// its `$MyINFO`, its password accepted.
        fn op_validates(&mut self, conn: ConnId, nick: &str) {
            self.hub.set_registered(nick, true);
            self.accept(conn, "127.0.0.1");
            self.input(conn, &format!("$Supports NoHello UserIP2|$ValidateNick {nick}|$MyPass pw|"));
            self.hub.password_result(self.now, conn, true);
            self.pump();
        }
    }

    #[test]
    fn ncdc_login_sequence() {
        let mut t = T::new(HubConfig { name: "test hub".into(), ..Default::default() });
        t.accept(1, "127.0.0.1");
        let hello = t.take(1);
        assert!(hello.starts_with("$Lock EXTENDEDPROTOCOL"), "{hello}");
        assert!(hello.contains(" Pk=omnipeer|$HubName test hub|"), "{hello}");
        t.input(1, "$Supports NoGetINFO NoHello UserIP2 TLS|$Key abc|$ValidateNick alice|");
        assert_eq!(t.take(1), "$Supports NoGetINFO NoHello UserIP2|$Hello alice|");
        t.input(1, "$Version 1,0091|$MyINFO $ALL alice rust-nmdc-test<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$3084$|$GetNickList|");
        let list = t.take(1);
        assert_eq!(
            list,
            "$MyINFO $ALL alice rust-nmdc-test<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$3084$|$OpList |$UserIP alice 127.0.0.1$$|"
        );
        assert!(matches!(&t.events[..], [HubEvent::LoggedIn { nick, .. }] if nick == "alice"));
        assert_eq!(t.hub.online_nicks(), vec!["alice"]);
    }

    #[test]
    fn eiskalt_and_microdc2_see_each_other() {
        let mut t = T::new(HubConfig::default());
        // EiskaltDC++: $GetNickList before $MyINFO.
        t.accept(1, "127.0.0.1");
        t.input(1, "$Supports UserCommand NoGetINFO NoHello UserIP2 TTHSearch ZPipe0 DHT0 |$Key k|$ValidateNick bob|");
        t.input(1, "$Version 1,0091|$GetNickList|$MyINFO $ALL bob eiskalt-test <EiskaltDC++ V:2.4.2,M:A,H:1/0/0,S:3>$ $100\x01$$5025$|");
        let bob = t.take(1);
        assert!(bob.contains("$MyINFO $ALL bob eiskalt-test"), "{bob}");
        // microdc2: no NoHello... it sends NoHello too; use a client without it.
        t.accept(2, "127.0.0.1");
        t.input(2, "$Key k|$ValidateNick carol|");
        assert!(t.take(2).ends_with("$Hello carol|"));
        t.input(2, "$Version 1,0091|$GetNickList|$MyINFO $ALL carol microdc2-test<microdc2 V:0.15.6,M:A,H:1/0/0,S:3>$ $LAN(T1)\x01$$3084$|");
        let carol = t.take(2);
        assert!(carol.contains("$NickList bob$$carol$$|"), "{carol}");
        assert!(carol.contains("$OpList |"), "{carol}");
        assert!(!carol.contains("$UserIP"), "no UserIP2: {carol}");
        // bob (NoHello) gets carol's $MyINFO without $Hello.
        let bob = t.take(1);
        assert_eq!(bob, "$MyINFO $ALL carol microdc2-test<microdc2 V:0.15.6,M:A,H:1/0/0,S:3>$ $LAN(T1)\x01$$3084$|");
        // carol leaves: bob sees $Quit.
        t.hub.disconnect(2);
        t.pump();
        assert_eq!(t.take(1), "$Quit carol|");
    }

    #[test]
    fn nicks_are_unique_and_checked() {
        let mut t = T::new(HubConfig::default());
        t.login(1, "alice", 'A');
        t.accept(2, "127.0.0.2");
        t.input(2, "$ValidateNick ALICE|");
        assert!(t.take(2).ends_with("$ValidateDenide ALICE|"));
        assert!(t.closed.contains(&2));
        t.accept(3, "127.0.0.3");
        t.input(3, "$ValidateNick Hub|");
        assert!(t.take(3).ends_with("$ValidateDenide Hub|"));
    }

    #[test]
    fn registered_nick_needs_its_password() {
        let mut t = T::new(HubConfig::default());
        t.hub.set_registered("boss", true);
        t.accept(1, "127.0.0.1");
        t.input(1, "$Supports NoHello|$ValidateNick boss|");
        assert!(t.take(1).ends_with("$GetPass|"));
        t.input(1, "$MyPass secret|");
        assert!(
            matches!(&t.events[..], [HubEvent::CheckPassword { conn: 1, nick, password }] if nick == "boss" && password == "secret")
        );
        t.hub.password_result(t.now, 1, true);
        t.pump();
        assert_eq!(t.take(1), "$Hello boss|$LogedIn boss|");
        t.accept(2, "127.0.0.1");
        t.input(2, "$ValidateNick boss|");
        assert!(t.take(2).ends_with("$ValidateDenide boss|"), "taken while logged in");
        t.hub.set_registered("other", false);
        t.accept(3, "127.0.0.1");
        t.input(3, "$ValidateNick other|$MyPass wrong|");
        t.hub.password_result(t.now, 3, false);
        t.pump();
        assert!(t.take(3).ends_with("$BadPass|"));
        assert!(t.closed.contains(&3));
    }

    #[test]
    fn chat_and_private_messages_cannot_be_spoofed() {
        let mut t = T::new(HubConfig::default());
        t.login(1, "alice", 'A');
        t.login(2, "bob", 'A');
        t.take(1);
        t.input(1, "<alice> hello all|");
        assert_eq!(t.take(2), "<alice> hello all|");
        assert_eq!(t.take(1), "<alice> hello all|", "the speaker sees its own line");
        t.input(1, "<bob> I am bob|");
        assert_eq!(t.take(2), "");
        assert!(t.take(1).contains("Your command was dropped"));
        t.input(1, "$To: bob From: alice $<alice> psst|");
        assert_eq!(t.take(2), "$To: bob From: alice $<alice> psst|");
        t.input(1, "$To: bob From: carol $<carol> psst|");
        t.input(1, "$To: bob From: alice $<carol> psst|");
        assert_eq!(t.take(2), "");
        t.input(1, "$MyINFO $ALL bob x$ $100\x01$$0$|");
        assert_eq!(t.take(2), "");
        t.input(1, "$RevConnectToMe bob alice|");
        assert_eq!(t.take(2), "");
        t.input(1, "$RevConnectToMe alice bob|");
        assert_eq!(t.take(2), "$RevConnectToMe alice bob|");
        t.input(1, "$ConnectToMe bob 10.0.0.9:4000|");
        assert_eq!(t.take(2), "", "not alice's address");
        t.input(1, "$ConnectToMe bob 127.0.0.1:4000|");
        assert_eq!(t.take(2), "$ConnectToMe bob 127.0.0.1:4000|");
        let dropped = t.events.iter().filter(|e| matches!(e, HubEvent::Dropped { .. })).count();
        assert_eq!(dropped, 6);
    }

    #[test]
    fn persistent_spoofer_is_kicked() {
        let mut t = T::new(HubConfig::default());
        t.login(1, "alice", 'A');
        t.login(2, "bob", 'A');
        for _ in 0..=MAX_STRIKES {
            t.input(1, "<bob> spoof|");
        }
        assert!(t.closed.contains(&1));
        assert!(t.take(2).contains("$Quit alice|"));
        assert!(t.events.iter().any(|e| matches!(e, HubEvent::Kicked { nick, .. } if nick == "alice")));
    }

    #[test]
    fn flooding_chat_is_dropped_then_allowed_again() {
        let mut t = T::new(HubConfig::default());
        t.login(1, "alice", 'A');
        t.login(2, "bob", 'A');
        for i in 0..10 {
            t.input(1, &format!("<alice> line {i}|"));
        }
        let got = t.take(2);
        assert_eq!(got.matches("<alice> line").count(), 5, "{got}");
        t.now += Duration::from_secs(2);
        t.input(1, "<alice> later|");
        assert_eq!(t.take(2), "<alice> later|");
    }

    #[test]
    fn searches_and_results_are_routed() {
        let mut t = T::new(HubConfig::default());
        t.login(1, "alice", 'A');
        t.login(2, "pete", 'P');
        t.login(3, "bob", 'A');
        for c in 1..=3 {
            t.take(c);
        }
        // Active search: everybody else.
        t.input(1, "$Search 127.0.0.1:3000 F?T?0?1?test|");
        assert_eq!(t.take(2), "$Search 127.0.0.1:3000 F?T?0?1?test|");
        assert_eq!(t.take(3), "$Search 127.0.0.1:3000 F?T?0?1?test|");
        assert_eq!(t.take(1), "");
        // Passive search: only active users can answer.
        t.input(2, "$Search Hub:pete F?T?0?9?TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ|");
        assert!(t.take(1).starts_with("$Search Hub:pete"));
        assert!(t.take(3).starts_with("$Search Hub:pete"));
        // Spoofed passive search.
        t.input(2, "$Search Hub:alice F?T?0?1?x|");
        assert_eq!(t.take(1), "");
        assert!(t.take(2).contains("dropped"));
        // Passive result: to pete only, target stripped.
        t.input(
            1,
            "$SR alice share\\a.txt\x0512 3/3\x05TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ (127.0.0.1:411)\x05pete|",
        );
        assert_eq!(
            t.take(2),
            "$SR alice share\\a.txt\x0512 3/3\x05TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ (127.0.0.1:411)|"
        );
        assert_eq!(t.take(3), "");
    }

    #[test]
    fn operators_kick_ban_and_register() {
        let mut t = T::new(HubConfig::default());
        t.op_validates(1, "op");
        t.input(1, "$MyINFO $ALL op x$ $100\x01$$0$|$GetNickList|");
        t.login(2, "troll", 'A');
        t.take(1);
        t.input(2, "<troll> !kick op|");
        assert!(t.take(2).contains("you are not an operator"));
        t.input(1, "<op> !ban troll 2h spamming|");
        assert!(t.closed.contains(&2));
        assert!(t.events.iter().any(|e| matches!(e, HubEvent::Banned { ban, duration: Some(d), .. }
            if ban.nick.as_deref() == Some("troll") && *d == Duration::from_secs(7200))));
        // The ban holds for the nick and the address until it expires.
        t.accept(3, "127.0.0.9");
        t.input(3, "$ValidateNick troll|");
        assert!(t.take(3).contains("You are banned"));
        assert!(t.closed.contains(&3));
        t.now += Duration::from_secs(7201);
        t.hub.handle_timeout(t.now);
        t.accept(4, "127.0.0.9");
        t.input(4, "$ValidateNick troll|");
        assert!(t.take(4).ends_with("$Hello troll|"));
        t.input(1, "<op> !reg newbie pw123|");
        assert!(t.events.iter().any(|e| matches!(e, HubEvent::Register { nick, password, op: false, .. } if nick == "newbie" && password == "pw123")));
        assert_eq!(t.hub.registration("NEWBIE"), Some(false));
        t.input(1, "<op> !topic Be nice|");
        assert!(t.take(4).contains("$HubTopic Be nice|") || t.hub.config().topic == "Be nice");
    }

    #[test]
    fn slow_logins_time_out() {
        let mut t = T::new(HubConfig::default());
        t.accept(1, "127.0.0.1");
        assert_eq!(t.hub.poll_timeout(), Some(t.now + LOGIN_TIMEOUT));
        t.hub.handle_timeout(t.now + LOGIN_TIMEOUT);
        t.pump();
        assert!(t.closed.contains(&1));
        t.login(2, "alice", 'A');
        assert_eq!(t.hub.poll_timeout(), None, "online users have no deadline");
    }

    #[test]
    fn full_hub_turns_newcomers_away() {
        let mut t = T::new(HubConfig { max_users: 1, ..Default::default() });
        t.login(1, "alice", 'A');
        t.accept(2, "127.0.0.1");
        t.input(2, "$ValidateNick bob|");
        assert!(t.take(2).ends_with("$HubIsFull|"));
        assert!(t.closed.contains(&2));
    }

    #[test]
    fn one_address_cannot_fill_the_hub() {
        let cfg =
            HubConfig { max_users_per_ip: 2, exempt_ips: vec!["10.0.0.1".parse().unwrap()], ..Default::default() };
        let mut t = T::new(cfg);
        t.hub.set_registered("reg", false);
        t.login(1, "alice", 'A');
        t.login(2, "bob", 'A');
        assert_eq!(t.hub.online_nicks(), vec!["alice", "bob"]);
        // A third unregistered nick from the same address: told why, then $HubIsFull.
        t.accept(3, "127.0.0.1");
        t.input(3, "$Supports NoHello|$ValidateNick carol|");
        let got = t.take(3);
        assert!(got.contains("at most 2 users from one address") && got.ends_with("$HubIsFull|"), "{got}");
        assert!(t.closed.contains(&3));
        // Nobody already in was dropped; another address, an exempt one and a registered
        // nick still get in.
        assert!(!t.closed.contains(&1) && !t.closed.contains(&2));
        t.login_from(4, "dave", 'A', "127.0.0.2");
        t.login_from(5, "erin", 'A', "10.0.0.1");
        t.login_from(6, "erin2", 'A', "10.0.0.1");
        t.login_from(7, "erin3", 'A', "10.0.0.1");
        t.accept(8, "127.0.0.1");
        t.input(8, "$ValidateNick reg|");
        assert!(t.take(8).ends_with("$GetPass|"));
        t.hub.disconnect(8);
        assert_eq!(t.hub.online_nicks(), vec!["alice", "bob", "dave", "erin", "erin2", "erin3"]);
        // A user from the full address leaves: the next one gets in.
        t.hub.disconnect(2);
        t.pump();
        t.login(9, "frank", 'A');
        assert!(t.hub.online_nicks().contains(&"frank".to_string()));
        // A nick refused as taken or a login that times out frees nothing it did not take.
        t.accept(10, "127.0.0.1");
        t.input(10, "$ValidateNick alice|");
        assert!(t.take(10).ends_with("$ValidateDenide alice|"));
        t.accept(11, "127.0.0.1");
        t.input(11, "$ValidateNick gina|");
        assert!(t.take(11).ends_with("$HubIsFull|"), "alice and frank are the two");
    }

    #[test]
    fn logins_per_address_are_rate_limited() {
        let cfg = HubConfig { max_logins_per_ip_per_minute: 3, max_users_per_ip: 0, ..Default::default() };
        let mut t = T::new(cfg);
        for i in 0..3 {
            t.login(i, &format!("u{i}"), 'A');
            t.hub.disconnect(i);
            t.pump();
        }
        t.accept(10, "127.0.0.1");
        t.input(10, "$ValidateNick u10|");
        let got = t.take(10);
        assert!(got.contains("Too many logins from your address (127.0.0.1)"), "{got}");
        assert!(t.closed.contains(&10));
        // Another address is not affected.
        t.login_from(11, "other", 'A', "127.0.0.2");
        assert!(t.hub.online_nicks().contains(&"other".to_string()));
        // One more login every 20 s (3 a minute).
        t.now += Duration::from_secs(21);
        t.login(12, "later", 'A');
        assert!(t.hub.online_nicks().contains(&"later".to_string()));
        // Addresses idle for a minute are forgotten.
        t.now += Duration::from_secs(61);
        t.hub.handle_timeout(t.now);
        assert_eq!(t.hub.per_ip.tracked_logins(), 0);
    }

    #[test]
    fn the_reserved_nick_gets_in_past_every_limit_and_only_with_its_password() {
        let cfg = HubConfig {
            max_users: 1,
            max_users_per_ip: 1,
            max_logins_per_ip_per_minute: 1,
            reserved: Some(ReservedNick { nick: "node".into(), password: "secret".into() }),
            ..Default::default()
        };
        let mut t = T::new(cfg);
        t.login(1, "flooder", 'A');
        // The hub is full, the address has its user and its login for the minute.
        t.accept(2, "127.0.0.1");
        t.input(2, "$ValidateNick NODE|");
        assert!(t.take(2).ends_with("$GetPass|"), "the reserved nick is not given without its password");
        t.input(2, "$MyPass guess|");
        assert!(t.take(2).ends_with("$BadPass|"));
        assert!(t.closed.contains(&2));
        t.accept(3, "127.0.0.1");
        t.input(3, "$Supports NoHello|$ValidateNick node|$MyPass secret|");
        assert!(t.take(3).ends_with("$Hello node|"));
        t.input(3, "$MyINFO $ALL node x$ $100\x01$$0$|$GetNickList|");
        assert_eq!(t.hub.online_nicks(), vec!["flooder", "node"]);
        // A second login with the password replaces the first (a session the node lost).
        t.accept(4, "127.0.0.1");
        t.input(4, "$Supports NoHello|$ValidateNick node|$MyPass secret|");
        assert!(t.take(4).ends_with("$Hello node|"));
        assert!(t.closed.contains(&3));
        t.input(4, "$MyINFO $ALL node x$ $100\x01$$0$|");
        assert_eq!(t.hub.online_nicks(), vec!["flooder", "node"]);
        assert!(!t.closed.contains(&1), "nobody else was dropped");
        // The reserved nick takes no place of its address.
        assert_eq!(t.hub.per_ip.users_from("127.0.0.1".parse::<IpAddr>().unwrap()), 1);
    }

    #[test]
    fn before_validatenick_only_a_short_command_is_buffered() {
        let mut t = T::new(HubConfig::default());
        t.accept(1, "127.0.0.1");
        t.input(1, &"x".repeat(MAX_LOGIN_COMMAND + 1));
        assert!(t.closed.contains(&1), "an unterminated command longer than {MAX_LOGIN_COMMAND} before login");
        // After $ValidateNick the usual limit applies: a long $MyINFO description is fine.
        t.accept(2, "127.0.0.1");
        t.input(2, "$Supports NoHello|$ValidateNick alice|");
        let desc = "d".repeat(MAX_LOGIN_COMMAND * 2);
        t.input(2, &format!("$MyINFO $ALL alice {desc}$ $100\x01$$0$|"));
        assert!(!t.closed.contains(&2));
        assert_eq!(t.hub.online_nicks(), vec!["alice"]);
    }

    #[test]
    fn a_login_costs_one_broadcast_whatever_the_number_of_users() {
        // Issue 14: with one send per recipient a login storm of N users cost N² outputs
        // (and as many queue pushes and writer wake-ups in the driver).
        let mut t = T::new(HubConfig { max_users_per_ip: 0, max_logins_per_ip_per_minute: 0, ..Default::default() });
        for i in 0..200 {
            t.login(i, &format!("u{i}"), 'A');
        }
        t.inbox.clear();
        t.hub.accept(t.now, 500, "127.0.0.1".parse().unwrap(), LOCK);
        t.hub.handle_input(t.now, 500, b"$Supports NoGetINFO NoHello UserIP2|$Key x|$ValidateNick late|");
        t.hub.handle_input(t.now, 500, b"$Version 1,0091|$MyINFO $ALL late d<ncdc V:1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|");
        let mut outputs = Vec::new();
        while let Some(o) = t.hub.poll_output() {
            outputs.push(o);
        }
        assert!(outputs.len() < 10, "{} outputs for one login among 200 users", outputs.len());
        let myinfo = "$MyINFO $ALL late d<ncdc V:1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|";
        assert!(outputs.iter().any(|o| matches!(o, Output::Broadcast { data, except: Some(500), skip: 0 }
            if &data[..] == myinfo.as_bytes())));
        // Delivered, it still reaches every other user once (and not the newcomer).
        for o in outputs {
            t.hub.out.push_back(o);
        }
        t.pump();
        assert_eq!(t.take(7), myinfo);
        assert_eq!(t.take(500).matches("$MyINFO").count(), 0);
    }

    #[test]
    fn a_read_asking_for_more_answers_than_the_cap_closes_the_client() {
        // 60 users with 2 KiB descriptions: each user list is ~120 KiB; 1,000 requests in
        // one read would queue ~120 MB for one client.
        let mut t = T::new(HubConfig { max_users_per_ip: 0, max_logins_per_ip_per_minute: 0, ..Default::default() });
        let desc = "d".repeat(2048);
        for i in 0..60 {
            t.login(i, &format!("u{i}"), 'A');
            t.input(i, &format!("$MyINFO $ALL u{i} {desc}<ncdc V:1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|"));
        }
        t.login(100, "flood", 'A');
        t.take(100);
        t.hub.handle_input(t.now, 100, "$GetNickList|".repeat(1000).as_bytes());
        let mut sent = 0;
        while let Some(o) = t.hub.poll_output() {
            match o {
                Output::Send { conn: 100, data } => sent += data.len(),
                Output::Close { conn: 100 } => t.closed.push(100),
                _ => {}
            }
        }
        assert!(t.closed.contains(&100), "the flooding client was not closed");
        assert!(sent <= MAX_ANSWERS_PER_READ + 256 * 1024, "{sent} bytes queued for it");
        // One list is fine.
        t.login(101, "calm", 'A');
        t.input(101, "$GetNickList|");
        assert!(!t.closed.contains(&101));
    }

    #[test]
    fn an_unchanged_myinfo_is_not_relayed_again() {
        let mut t = T::new(HubConfig::default());
        t.login(1, "alice", 'A');
        t.login(2, "bob", 'A');
        t.take(1);
        let same = "$MyINFO $ALL bob d<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$3084$|";
        t.input(2, same);
        assert_eq!(t.take(1), "", "alice has this $MyINFO of bob already");
        let changed = "$MyINFO $ALL bob d<ncdc V:1.23.1,M:P,H:1/0/0,S:10>$ $100\x01$$3084$|";
        t.input(2, changed);
        assert_eq!(t.take(1), changed);
        // bob is passive now: a passive search of another passive user skips him.
        t.login(3, "pete", 'P');
        t.take(1);
        t.take(2);
        t.input(3, "$Search Hub:pete F?T?0?1?x|");
        assert!(t.take(1).contains("$Search Hub:pete"));
        assert_eq!(t.take(2), "");
    }

    #[test]
    fn hello_and_userip_go_only_to_who_needs_them() {
        let mut t = T::new(HubConfig::default());
        t.op_validates(1, "op");
        t.input(1, "$MyINFO $ALL op x$ $100\x01$$0$|");
        t.login(2, "alice", 'A');
        // microdc2-style client without NoHello.
        t.accept(3, "127.0.0.1");
        t.input(3, "$Key k|$ValidateNick old|$MyINFO $ALL old x$ $100\x01$$0$|");
        t.take(1);
        t.take(2);
        t.take(3);
        t.login_from(4, "newbie", 'A', "127.0.0.4");
        assert_eq!(
            t.take(1),
            "$MyINFO $ALL newbie d<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$3084$|$UserIP newbie 127.0.0.4$$|"
        );
        assert_eq!(t.take(2), "$MyINFO $ALL newbie d<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$3084$|");
        assert_eq!(t.take(3), "$Hello newbie|$MyINFO $ALL newbie d<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$3084$|");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Some(Some(Duration::from_secs(1800))));
        assert_eq!(parse_duration("perm"), Some(None));
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
