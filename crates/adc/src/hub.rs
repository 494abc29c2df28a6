//! An ADC hub as a sans-IO state machine over many connections
//! (docs/protocols/adc.md#hub), the ADC twin of the NMDC hub (`omnipeer_nmdc::hub`), with
//! the same driver contract: the driver reports connections ([`Hub::accept`],
//! [`Hub::disconnect`]), feeds their bytes ([`Hub::handle_input`]) and the time
//! ([`Hub::handle_timeout`]), and drains [`Hub::poll_output`].
//!
//! A connection goes PROTOCOL (waiting for `HSUP`; the hub answers `ISUP`, `ISID`,
//! `IINF`) → IDENTIFY (waiting for the client's `BINF`) → VERIFY (registered nicks only:
//! `IGPA` sent, waiting for `HPAS`) → NORMAL. The checks on the way in:
//! - `HSUP` must offer `BASE` (or the pre-1.0 `BAS0`) and `TIGR`;
//! - the `BINF` must carry the SID the hub gave, a PID whose Tiger hash is the CID, a CID
//!   nobody else has, and a valid, free nick; `PD` is never stored or relayed, `CT` is set
//!   by the hub (registered/operator), and `I4`/`I6` are set to the address the connection
//!   really comes from;
//! - the per-address caps and login rate, the user cap and bans of the NMDC hub apply.
//!
//! In NORMAL every `B`/`D`/`E`/`F` message must carry the sender's own SID: anything else
//! is answered with `ISTA 240` and the connection closed. `B` messages (chat, INF updates)
//! go to everybody, searches to everybody else (`F` ones only to users whose `SU` matches
//! the selectors), `D` messages to their target only, `E` ones to the target and back to
//! the sender. Chat and searches are rate-limited per user; INF updates are relayed with
//! only the fields that changed.
//!
//! What goes to every online user is one [`Output::Broadcast`], encoded once and shared;
//! `F` selectors on the common features (`TCP4`, `UDP4`, `TCP6`, `NAT0`) become broadcast
//! tags ([`tag`]), so a passive user's search costs one output too.

use crate::message::{
    base32, base32_decode, features_match, is_named, password_hash, Cid, Command, Feature, FeatureSel, Header,
    LineReader, Message, Sid, MAX_LINE, MAX_LINE_LOGIN,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnipeer_nmdc::hub::common::AddressLimits;
use omnipeer_nmdc::hub::{find_ban, lift_bans, parse_op_command, split_command, OpCommand, TokenBucket};
pub use omnipeer_nmdc::hub::{
    parse_duration, Ban, HubOutput, RateLimit, LOGIN_TIMEOUT, MAX_LOGINS_PER_IP_PER_MINUTE, MAX_MESSAGE, MAX_STRIKES,
    MAX_TRACKED_IPS, MAX_USERS_PER_IP,
};

/// A connection's id, chosen by the driver.
pub type ConnId = u64;

/// Longest nick the hub accepts, in bytes (as the NMDC hub's `MAX_HUB_NICK`).
pub const MAX_NICK: usize = 64;
/// Longest value of one `INF` field, in bytes (a description or an e-mail address; the
/// longest real fields, `SU` and `VE`, are well under 100).
pub const MAX_INF_FIELD: usize = 1024;
/// Most fields in one user's `INF` (the spec names about 30).
pub const MAX_INF_FIELDS: usize = 64;
/// Bytes of the random challenge in `IGPA` (the size of a Tiger hash, as uhub sends).
pub const CHALLENGE_LEN: usize = 24;

/// Broadcast tags: which broadcasts a joined connection skips ([`Output::Broadcast`]).
/// Each common feature has a "has it" and a "lacks it" tag, so an `F` selector on it maps
/// to a skip mask.
pub mod tag {
    /// Announces `TCP4` in `SU`.
    pub const TCP4: u8 = 1;
    /// Does not announce `TCP4`.
    pub const NO_TCP4: u8 = 2;
    /// Announces `UDP4`.
    pub const UDP4: u8 = 4;
    /// Does not announce `UDP4`.
    pub const NO_UDP4: u8 = 8;
    /// Announces `TCP6`.
    pub const TCP6: u8 = 16;
    /// Does not announce `TCP6`.
    pub const NO_TCP6: u8 = 32;
    /// Announces `NAT0`.
    pub const NAT0: u8 = 64;
    /// Does not announce `NAT0`.
    pub const NO_NAT0: u8 = 128;
    /// The features with tags, with their (has, lacks) tags.
    pub const FEATURES: [(&[u8; 4], u8, u8); 4] =
        [(b"TCP4", TCP4, NO_TCP4), (b"UDP4", UDP4, NO_UDP4), (b"TCP6", TCP6, NO_TCP6), (b"NAT0", NAT0, NO_NAT0)];
}

/// STA error codes the hub sends (docs/protocols/adc.md#sta): severity digit then code.
pub mod sta {
    /// Success / information.
    pub const OK: &str = "000";
    /// Hub full.
    pub const HUB_FULL: &str = "211";
    /// Login failed, generic (timeout, too many logins).
    pub const LOGIN: &str = "220";
    /// Nick invalid.
    pub const NICK_INVALID: &str = "221";
    /// Nick taken.
    pub const NICK_TAKEN: &str = "222";
    /// Wrong password.
    pub const BAD_PASSWORD: &str = "223";
    /// CID taken.
    pub const CID_TAKEN: &str = "224";
    /// Command not allowed (operators only, say): a warning, not fatal.
    pub const DENIED: &str = "125";
    /// PID does not match the CID.
    pub const BAD_PID: &str = "227";
    /// Banned for good.
    pub const BANNED: &str = "231";
    /// Banned for a while.
    pub const BANNED_TEMP: &str = "232";
    /// Protocol error (a spoofed SID, malformed message).
    pub const PROTOCOL: &str = "240";
    /// A warning about a dropped message.
    pub const DROPPED: &str = "140";
    /// A required INF field is missing or bad.
    pub const INF_FIELD: &str = "243";
    /// A command not valid in this state.
    pub const BAD_STATE: &str = "244";
    /// A required feature is missing.
    pub const FEATURE_MISSING: &str = "245";
    /// No hash function in common.
    pub const NO_HASH: &str = "247";
}

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The hub's name (`NI` of its `IINF`).
    pub name: String,
    /// Its description (`DE`, empty: none).
    pub description: String,
    /// Lines sent as hub messages after login.
    pub motd: Vec<String>,
    /// Users at once (operators and registered users may exceed it).
    pub max_users: usize,
    /// Time from connect to NORMAL.
    pub login_timeout: Duration,
    /// Main chat and private messages per user.
    pub chat_limit: RateLimit,
    /// Searches per user.
    pub search_limit: RateLimit,
    /// Unregistered users at once from one address (0: no limit).
    pub max_users_per_ip: usize,
    /// Logins (`BINF` in IDENTIFY) one address may make per minute (0: no limit).
    pub max_logins_per_ip_per_minute: u32,
    /// Addresses the two per-address limits do not apply to.
    pub exempt_ips: Vec<IpAddr>,
    /// The `VE` of the hub's `IINF`.
    pub version: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            name: "omnipeer ADC hub".into(),
            description: String::new(),
            motd: Vec::new(),
            max_users: 5000,
            login_timeout: LOGIN_TIMEOUT,
            chat_limit: RateLimit { burst: 5, every: Duration::from_secs(1) },
            search_limit: RateLimit { burst: 5, every: Duration::from_secs(5) },
            max_users_per_ip: MAX_USERS_PER_IP,
            max_logins_per_ip_per_minute: MAX_LOGINS_PER_IP_PER_MINUTE,
            exempt_ips: Vec::new(),
            version: "omnipeer".into(),
        }
    }
}

/// Something for the driver to act on (log, persist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// A user reached NORMAL.
    LoggedIn {
        /// The connection.
        conn: ConnId,
        /// Its SID.
        sid: Sid,
        /// The nick.
        nick: String,
        /// The address.
        ip: IpAddr,
        /// Whether an operator.
        op: bool,
    },
    /// A user in NORMAL left.
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
        /// The text.
        text: String,
    },
    /// An operator registered a nick (already in force): persist it.
    Register {
        /// The operator.
        by: String,
        /// The nick.
        nick: String,
        /// The password (ADC's `GPA`/`PAS` needs it in the clear at the hub).
        password: String,
        /// As operator.
        op: bool,
    },
    /// An operator removed a registration (already removed): persist it.
    Unregister {
        /// The operator.
        by: String,
        /// The nick.
        nick: String,
    },
    /// An operator banned someone (already in force): persist it.
    Banned {
        /// The operator.
        by: String,
        /// The ban.
        ban: Ban,
        /// Its length (`None`: for good).
        duration: Option<Duration>,
    },
    /// An operator lifted a nick's bans.
    Unbanned {
        /// The operator.
        by: String,
        /// The nick.
        nick: String,
    },
    /// A user was kicked.
    Kicked {
        /// Who kicked ("hub" for automatic kicks).
        by: String,
        /// Who was kicked.
        nick: String,
        /// Why.
        reason: String,
    },
    /// A message was refused (spoofing, flooding, malformed).
    Dropped {
        /// The connection.
        conn: ConnId,
        /// Its nick, if known.
        nick: Option<String>,
        /// Why.
        why: String,
    },
}

/// What to do next: the same contract as the NMDC hub's ([`HubOutput`]), with this hub's
/// events and [`tag`]s.
pub type Output = HubOutput<HubEvent>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for `HSUP`.
    Protocol,
    /// `ISID` sent, waiting for `BINF`.
    Identify,
    /// `IGPA` sent, waiting for `HPAS`.
    Verify,
    /// Logged in.
    Normal,
    /// Being closed: everything is ignored.
    Closing,
}

/// INF fields: two-letter name and value, in the order first seen.
type InfFields = Vec<([u8; 2], String)>;

#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    sid: Sid,
    state: State,
    reader: LineReader,
    /// The random bytes for this connection's `IGPA` challenge.
    challenge: [u8; CHALLENGE_LEN],
    nick: String,
    cid: Option<Cid>,
    /// INF fields in the order first seen (without `PD`), values unescaped.
    inf: InfFields,
    /// The whole `BINF`, encoded, for newcomers' user lists.
    inf_line: Option<Arc<[u8]>>,
    /// Features from `SU`.
    su: HashSet<Feature>,
    registered: bool,
    op: bool,
    deadline: Option<Instant>,
    chat: TokenBucket,
    search: TokenBucket,
    strikes: u32,
    /// Counted in [`Hub::per_ip`].
    counted: bool,
}

impl Conn {
    fn new(
        ip: IpAddr,
        sid: Sid,
        state: State,
        challenge: [u8; CHALLENGE_LEN],
        deadline: Option<Instant>,
        cfg: &HubConfig,
    ) -> Conn {
        let limit = if state == State::Closing { 0 } else { MAX_LINE_LOGIN };
        Conn {
            ip,
            sid,
            state,
            reader: LineReader::with_limit(limit),
            challenge,
            nick: String::new(),
            cid: None,
            inf: Vec::new(),
            inf_line: None,
            su: HashSet::new(),
            registered: false,
            op: false,
            deadline,
            chat: TokenBucket::new(cfg.chat_limit),
            search: TokenBucket::new(cfg.search_limit),
            strikes: 0,
            counted: false,
        }
    }

    fn tags(&self) -> u8 {
        tag::FEATURES
            .iter()
            .fold(0, |t, (f, has, lacks)| t | if self.su.contains(&Feature(**f)) { *has } else { *lacks })
    }

    fn field(&self, name: &[u8; 2]) -> Option<&str> {
        self.inf.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The hub.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    conns: HashMap<ConnId, Conn>,
    sids: HashMap<Sid, ConnId>,
    next_sid: u32,
    /// Lower-case nick → connection (IDENTIFY passed, or further).
    nicks: HashMap<String, ConnId>,
    cids: HashMap<Cid, ConnId>,
    /// Users in NORMAL, in login order.
    online: Vec<ConnId>,
    /// Lower-case nick → (password, op).
    registered: HashMap<String, (String, bool)>,
    bans: Vec<Ban>,
    out: VecDeque<Output>,
    /// Users in IDENTIFY or further, and logins, per address.
    per_ip: AddressLimits,
}

fn sta(code: &str, text: &str) -> Message {
    Message::new(Header::I, Command::STA).arg(code).arg(text)
}

fn norm_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Hub {
    /// A hub with nobody on it.
    pub fn new(cfg: HubConfig) -> Hub {
        Hub {
            cfg,
            conns: HashMap::new(),
            sids: HashMap::new(),
            next_sid: 1,
            nicks: HashMap::new(),
            cids: HashMap::new(),
            online: Vec::new(),
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

    /// Register `nick` with `password` (the hub needs it in the clear for the salted
    /// Tiger check of `HPAS`), as an operator or not.
    pub fn set_registered(&mut self, nick: &str, password: &str, op: bool) {
        self.registered.insert(nick.to_lowercase(), (password.to_owned(), op));
    }

    /// Whether `nick` is registered, and as an operator.
    pub fn registration(&self, nick: &str) -> Option<bool> {
        self.registered.get(&nick.to_lowercase()).map(|(_, op)| *op)
    }

    /// Put a ban in force (as loaded from storage).
    pub fn add_ban(&mut self, ban: Ban) {
        self.bans.push(ban);
    }

    /// Nicks in NORMAL, in login order.
    pub fn online_nicks(&self) -> Vec<String> {
        self.online.iter().filter_map(|c| self.conns.get(c)).map(|c| c.nick.clone()).collect()
    }

    /// Connections open.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// A connection was accepted from `ip`. `challenge` is fresh random bytes (the `IGPA`
    /// challenge, should this connection need a password).
    pub fn accept(&mut self, now: Instant, conn: ConnId, ip: IpAddr, challenge: [u8; CHALLENGE_LEN]) {
        let ip = norm_ip(ip);
        let sid = self.alloc_sid();
        self.sids.insert(sid, conn);
        let deadline = Some(now + self.cfg.login_timeout);
        self.conns.insert(conn, Conn::new(ip, sid, State::Protocol, challenge, deadline, &self.cfg));
        if let Some(ban) = self.ban_for(now, None, Some(ip)) {
            self.refuse_ban(conn, &ban);
        }
    }

    fn alloc_sid(&mut self) -> Sid {
        // Sequential, skipping AAAA (which some clients take for the hub) and SIDs in use;
        // there are 2^20 of them and far fewer connections.
        loop {
            let v = self.next_sid;
            self.next_sid = if v >= Sid::MAX { 1 } else { v + 1 };
            let sid = Sid::new(v);
            if !self.sids.contains_key(&sid) {
                return sid;
            }
        }
    }

    /// The connection closed (by the peer, or by the driver).
    pub fn disconnect(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        self.forget(conn, &c);
    }

    /// Free what `c` held (SID, nick, CID, its place on its address, its place online),
    /// and tell everybody it left.
    fn forget(&mut self, conn: ConnId, c: &Conn) {
        if self.sids.get(&c.sid) == Some(&conn) {
            self.sids.remove(&c.sid);
        }
        if c.counted {
            self.per_ip.remove_user(c.ip);
        }
        if !c.nick.is_empty() && self.nicks.get(&c.nick.to_lowercase()) == Some(&conn) {
            self.nicks.remove(&c.nick.to_lowercase());
        }
        if let Some(cid) = c.cid {
            if self.cids.get(&cid) == Some(&conn) {
                self.cids.remove(&cid);
            }
        }
        if let Some(pos) = self.online.iter().position(|x| *x == conn) {
            self.online.remove(pos);
            self.out.push_back(Output::Leave { conn });
            let qui = Message::new(Header::I, Command::QUI).arg(c.sid.to_string());
            self.out.push_back(Output::Broadcast { data: qui.encode().into(), except: None, skip: 0 });
            self.out.push_back(Output::Event(HubEvent::LoggedOut { conn, nick: c.nick.clone() }));
        }
    }

    /// Bytes from a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.state == State::Closing {
            return;
        }
        c.reader.push(bytes);
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            if c.state == State::Closing {
                return;
            }
            let line = match c.reader.next_frame() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    if c.reader.buffered() == 0 {
                        // Give back the capacity of a burst.
                        c.reader = LineReader::with_limit(c.reader.limit());
                    }
                    return;
                }
                Err(e) => {
                    self.fatal(conn, sta::PROTOCOL, &e.to_string());
                    return;
                }
            };
            match Message::parse(&line) {
                Ok(m) => self.on_message(now, conn, m),
                Err(e) => {
                    // Before NORMAL a malformed line ends the login; after, it is one strike.
                    if self.conns[&conn].state == State::Normal {
                        self.drop_line(conn, format!("malformed message: {e}"));
                    } else {
                        self.fatal(conn, sta::PROTOCOL, &format!("malformed message: {e}"));
                    }
                }
            }
        }
    }

    /// Time passed: closes logins that took too long, forgets expired bans.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<ConnId> =
            self.conns.iter().filter(|(_, c)| c.deadline.is_some_and(|d| now >= d)).map(|(id, _)| *id).collect();
        for conn in late {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.deadline = None;
            }
            self.fatal(conn, sta::LOGIN, "Login timed out.");
        }
        self.bans.retain(|b| b.until.is_none_or(|u| u > now));
        self.per_ip.forget_idle(now);
    }

    /// When [`Hub::handle_timeout`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().filter_map(|c| c.deadline).min()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ---- output helpers --------------------------------------------------------------

    fn send(&mut self, conn: ConnId, data: Vec<u8>) {
        if self.conns.get(&conn).is_some_and(|c| c.state == State::Closing) {
            return;
        }
        self.out.push_back(Output::Send { conn, data: data.into() });
    }

    fn send_msg(&mut self, conn: ConnId, m: &Message) {
        self.send(conn, m.encode());
    }

    fn say_to(&mut self, conn: ConnId, text: &str) {
        let m = Message::new(Header::I, Command::MSG).arg(text);
        self.send_msg(conn, &m);
    }

    fn broadcast(&mut self, data: Arc<[u8]>, except: Option<ConnId>, skip: u8) {
        self.out.push_back(Output::Broadcast { data, except, skip });
    }

    /// Send `STA code text` and close.
    fn fatal(&mut self, conn: ConnId, code: &str, text: &str) {
        self.send_msg(conn, &sta(code, text));
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.state == State::Closing {
            return;
        }
        let stub = Conn::new(c.ip, c.sid, State::Closing, [0; CHALLENGE_LEN], None, &self.cfg);
        let old = std::mem::replace(self.conns.get_mut(&conn).expect("present"), stub);
        self.forget(conn, &old);
        // The SID stays taken until the driver reports the connection gone.
        self.sids.insert(old.sid, conn);
        self.out.push_back(Output::Close { conn });
    }

    fn drop_line(&mut self, conn: ConnId, why: String) {
        let nick = self.conns.get(&conn).map(|c| c.nick.clone()).filter(|n| !n.is_empty());
        self.out.push_back(Output::Event(HubEvent::Dropped { conn, nick, why: why.clone() }));
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.strikes += 1;
        let strikes = c.strikes;
        if strikes > MAX_STRIKES {
            self.kick(conn, None, "too many refused messages (spoofing or flooding)");
        } else if strikes <= 3 || strikes % 5 == 0 {
            self.send_msg(conn, &sta(sta::DROPPED, &format!("Your message was dropped: {why}.")));
        }
    }

    fn ban_for(&self, now: Instant, nick: Option<&str>, ip: Option<IpAddr>) -> Option<Ban> {
        find_ban(&self.bans, now, nick, ip)
    }

    fn refuse_ban(&mut self, conn: ConnId, ban: &Ban) {
        let (code, text) = match ban.until {
            Some(_) => (sta::BANNED_TEMP, format!("You are banned from this hub for a while: {}", ban.reason)),
            None => (sta::BANNED, format!("You are banned from this hub: {}", ban.reason)),
        };
        self.fatal(conn, code, &text);
    }

    /// Kick `victim`: everybody (the victim included) gets `IQUI` with who and why.
    fn kick(&mut self, victim: ConnId, by: Option<ConnId>, reason: &str) {
        let Some(v) = self.conns.get(&victim) else { return };
        let (sid, nick, online) = (v.sid, v.nick.clone(), v.state == State::Normal);
        let by_nick = by.and_then(|b| self.conns.get(&b)).map_or_else(|| "hub".to_owned(), |b| b.nick.clone());
        let mut qui = Message::new(Header::I, Command::QUI).arg(sid.to_string());
        if let Some(b) = by.and_then(|b| self.conns.get(&b)) {
            qui = qui.named_arg("ID", b.sid.to_string());
        }
        let qui = qui.named_arg("MS", reason);
        if online {
            // The victim leaves the broadcast set with this line as its last.
            self.send_msg(victim, &qui);
            self.online.retain(|c| *c != victim);
            self.out.push_back(Output::Leave { conn: victim });
            self.broadcast(qui.encode().into(), None, 0);
            self.out.push_back(Output::Event(HubEvent::LoggedOut { conn: victim, nick: nick.clone() }));
        } else {
            self.send_msg(victim, &qui);
        }
        self.close(victim);
        self.out.push_back(Output::Event(HubEvent::Kicked { by: by_nick, nick, reason: reason.to_owned() }));
    }

    // ---- messages --------------------------------------------------------------------

    fn on_message(&mut self, now: Instant, conn: ConnId, m: Message) {
        let c = &self.conns[&conn];
        // Anti-spoofing: a B, D, E or F message carries its sender's SID, which must be
        // the one the hub gave this connection (docs/protocols/adc.md#hub-checks).
        if let Some(from) = m.header.from() {
            if from != c.sid {
                let why = format!("{} {} claims SID {from}, yours is {}", char::from(m.header.letter()), m.cmd, c.sid);
                self.out.push_back(Output::Event(HubEvent::Dropped {
                    conn,
                    nick: Some(c.nick.clone()).filter(|n| !n.is_empty()),
                    why: why.clone(),
                }));
                return self.fatal(conn, sta::PROTOCOL, &format!("Spoofed SID: {why}"));
            }
        }
        match c.state.clone() {
            State::Closing => {}
            State::Protocol => self.in_protocol(conn, m),
            State::Identify => match (&m.header, m.cmd) {
                (Header::B { .. }, Command::INF) => self.identify(now, conn, m),
                (Header::H, Command::SUP) => {}
                _ => self.fatal(conn, sta::BAD_STATE, &format!("{} before BINF", m.cmd)),
            },
            State::Verify => match (&m.header, m.cmd) {
                (Header::H, Command::PAS) => self.verify(conn, &m),
                _ => self.fatal(conn, sta::BAD_STATE, &format!("{} before HPAS", m.cmd)),
            },
            State::Normal => self.normal(now, conn, m),
        }
    }

    fn in_protocol(&mut self, conn: ConnId, m: Message) {
        if m.header != Header::H || m.cmd != Command::SUP {
            return self.fatal(conn, sta::BAD_STATE, &format!("{} before HSUP", m.cmd));
        }
        let added: Vec<&str> = m.params.iter().filter_map(|p| p.strip_prefix("AD")).collect();
        if !added.iter().any(|f| *f == "BASE" || *f == "BAS0") {
            let msg = sta(sta::FEATURE_MISSING, "BASE is required").named_arg("FC", "BASE");
            self.send_msg(conn, &msg);
            return self.close(conn);
        }
        if !added.contains(&"TIGR") {
            return self.fatal(conn, sta::NO_HASH, "TIGR is the only hash this hub knows");
        }
        let sid = self.conns[&conn].sid;
        let mut out = Message::new(Header::I, Command::SUP).arg("ADBASE").arg("ADTIGR").encode();
        Message::new(Header::I, Command::SID).arg(sid.to_string()).encode_into(&mut out);
        self.hub_inf().encode_into(&mut out);
        self.conns.get_mut(&conn).expect("present").state = State::Identify;
        self.send(conn, out);
    }

    fn hub_inf(&self) -> Message {
        let mut inf = Message::new(Header::I, Command::INF)
            .named_arg("CT", "32")
            .named_arg("NI", &self.cfg.name)
            .named_arg("VE", &self.cfg.version);
        if !self.cfg.description.is_empty() {
            inf = inf.named_arg("DE", &self.cfg.description);
        }
        inf
    }

    /// Checks on a nick (docs/protocols/adc.md#hub-checks).
    fn nick_ok(&self, nick: &str) -> bool {
        !nick.is_empty()
            && nick.len() <= MAX_NICK
            && !nick.eq_ignore_ascii_case(&self.cfg.name)
            && !nick.eq_ignore_ascii_case("hub")
            && !nick.chars().any(|c| c.is_control() || c.is_whitespace())
    }

    /// INF fields from a `BINF`: name → value, refusing malformed ones. `PD` is returned
    /// apart and never kept.
    fn inf_fields(m: &Message) -> Result<(InfFields, Option<String>), String> {
        let mut fields: InfFields = Vec::new();
        let mut pid = None;
        for p in &m.params {
            if !is_named(p) {
                return Err(format!("INF parameter {:?} is not a named field", p.chars().take(8).collect::<String>()));
            }
            let (name, value) = p.split_at(2);
            if value.len() > MAX_INF_FIELD {
                return Err(format!("INF field {name} longer than {MAX_INF_FIELD} bytes"));
            }
            let key: [u8; 2] = [name.as_bytes()[0], name.as_bytes()[1]];
            if &key == b"PD" {
                pid = Some(value.to_owned());
                continue;
            }
            match fields.iter_mut().find(|(n, _)| *n == key) {
                Some(f) => f.1 = value.to_owned(),
                None => fields.push((key, value.to_owned())),
            }
            if fields.len() > MAX_INF_FIELDS {
                return Err(format!("more than {MAX_INF_FIELDS} INF fields"));
            }
        }
        Ok((fields, pid))
    }

    /// Set the fields only the hub may set: `CT` from the registration, `I4`/`I6` from the
    /// connection's address.
    fn fix_fields(&self, conn: ConnId, fields: &mut InfFields, first: bool) {
        let c = &self.conns[&conn];
        fields.retain(|(n, _)| n != b"CT");
        if first {
            let ct = if c.op { 4 } else { 0 } | if c.registered { 2 } else { 0 };
            if ct != 0 {
                fields.push((*b"CT", ct.to_string()));
            }
        }
        for f in fields.iter_mut() {
            match (&f.0, c.ip) {
                (b"I4", IpAddr::V4(v4)) if !f.1.is_empty() => f.1 = v4.to_string(),
                (b"I6", IpAddr::V6(v6)) if !f.1.is_empty() => f.1 = v6.to_string(),
                _ => {}
            }
        }
        // An address of the other family cannot be checked: it is not relayed.
        fields.retain(|(n, v)| match (n, c.ip) {
            (b"I4", IpAddr::V6(_)) | (b"I6", IpAddr::V4(_)) => v.is_empty(),
            _ => true,
        });
    }

    fn identify(&mut self, now: Instant, conn: ConnId, m: Message) {
        let (mut fields, pid) = match Self::inf_fields(&m) {
            Ok(x) => x,
            Err(e) => return self.fatal(conn, sta::INF_FIELD, &e),
        };
        let get = |n: &[u8; 2]| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let (id, nick) = (get(b"ID"), get(b"NI"));
        let missing = if id.is_none() {
            "ID"
        } else if pid.is_none() {
            "PD"
        } else {
            "NI"
        };
        let (Some(id), Some(pid), Some(nick)) = (id, pid, nick) else {
            let msg = sta(sta::INF_FIELD, "BINF needs ID, PD and NI").named_arg("FM", missing);
            self.send_msg(conn, &msg);
            return self.close(conn);
        };
        let (Ok(cid), Ok(pid)) = (Cid::parse(&id), Cid::parse(&pid)) else {
            return self.fatal(conn, sta::INF_FIELD, "ID and PD must be 39 base32 characters");
        };
        if Cid::from_pid(&pid) != cid {
            // A client claiming somebody else's CID does not know its PID.
            return self.fatal(conn, sta::BAD_PID, "CID is not the Tiger hash of PID");
        }
        let ip = self.conns[&conn].ip;
        let n = self.cfg.max_logins_per_ip_per_minute;
        if !self.per_ip.take_login(now, ip, n, &self.cfg.exempt_ips) {
            return self.fatal(conn, sta::LOGIN, &format!("Too many logins from {ip}: at most {n} a minute."));
        }
        if !self.nick_ok(&nick) {
            return self.fatal(conn, sta::NICK_INVALID, "Invalid nick");
        }
        if self.nicks.contains_key(&nick.to_lowercase()) {
            return self.fatal(conn, sta::NICK_TAKEN, "Nick taken");
        }
        if self.cids.contains_key(&cid) {
            return self.fatal(conn, sta::CID_TAKEN, "CID taken");
        }
        if let Some(ban) = self.ban_for(now, Some(&nick), Some(ip)) {
            return self.refuse_ban(conn, &ban);
        }
        let reg = self.registration(&nick);
        if reg.is_none() && self.online.len() >= self.cfg.max_users {
            return self.fatal(conn, sta::HUB_FULL, "Hub is full");
        }
        let per_ip = self.cfg.max_users_per_ip;
        let full = reg.is_none().then(|| self.per_ip.users_full(ip, per_ip, &self.cfg.exempt_ips)).flatten();
        if let Some(from_ip) = full {
            return self.fatal(
                conn,
                sta::HUB_FULL,
                &format!("This hub takes at most {per_ip} users from one address, and {ip} has {from_ip}."),
            );
        }
        self.nicks.insert(nick.to_lowercase(), conn);
        self.cids.insert(cid, conn);
        let c = self.conns.get_mut(&conn).expect("present");
        c.nick = nick;
        c.cid = Some(cid);
        c.reader.set_limit(MAX_LINE);
        if reg.is_none() {
            c.counted = true;
            self.per_ip.add_user(ip);
        }
        let c = self.conns.get_mut(&conn).expect("present");
        if let Some(op) = reg {
            c.registered = true;
            c.op = op;
        }
        self.fix_fields(conn, &mut fields, true);
        let c = self.conns.get_mut(&conn).expect("present");
        c.inf = fields;
        if reg.is_some() {
            c.state = State::Verify;
            let gpa = Message::new(Header::I, Command::GPA).arg(base32(&c.challenge));
            self.send_msg(conn, &gpa);
        } else {
            self.enter_normal(conn);
        }
    }

    fn verify(&mut self, conn: ConnId, m: &Message) {
        let c = &self.conns[&conn];
        let Some((password, _)) = self.registered.get(&c.nick.to_lowercase()) else {
            return self.fatal(conn, sta::BAD_PASSWORD, "Not registered any more");
        };
        let want = password_hash(password, &c.challenge);
        let got = m.positional(0).unwrap_or("");
        if !constant_time_eq(want.as_bytes(), got.as_bytes()) {
            return self.fatal(conn, sta::BAD_PASSWORD, "Wrong password");
        }
        self.enter_normal(conn);
    }

    fn user_inf(c: &Conn) -> Message {
        let mut m = Message::new(Header::B { from: c.sid }, Command::INF);
        for (n, v) in &c.inf {
            m.params.push(format!("{}{}{v}", char::from(n[0]), char::from(n[1])));
        }
        m
    }

    fn enter_normal(&mut self, conn: ConnId) {
        let c = self.conns.get_mut(&conn).expect("present");
        c.state = State::Normal;
        c.deadline = None;
        c.su = su_features(c.field(b"SU").unwrap_or(""));
        let line: Arc<[u8]> = Self::user_inf(c).encode().into();
        c.inf_line = Some(line.clone());
        let (tags, sid, nick, ip, op) = (c.tags(), c.sid, c.nick.clone(), c.ip, c.op);
        // The newcomer gets everybody's INF, its own last (that ends the list).
        let mut list = Vec::new();
        for u in &self.online {
            if let Some(l) = &self.conns[u].inf_line {
                list.extend_from_slice(l);
            }
        }
        list.extend_from_slice(&line);
        self.send(conn, list);
        // Everybody else gets the newcomer's: one broadcast.
        self.broadcast(line, None, 0);
        self.online.push(conn);
        self.out.push_back(Output::Join { conn, tags });
        let mut welcome = Vec::new();
        for l in &self.cfg.motd {
            Message::new(Header::I, Command::MSG).arg(l.as_str()).encode_into(&mut welcome);
        }
        if !welcome.is_empty() {
            self.send(conn, welcome);
        }
        self.out.push_back(Output::Event(HubEvent::LoggedIn { conn, sid, nick, ip, op }));
    }

    fn normal(&mut self, now: Instant, conn: ConnId, m: Message) {
        let me = self.conns[&conn].nick.clone();
        match (&m.header, m.cmd) {
            (Header::B { .. }, Command::INF) => self.inf_update(conn, m),
            (Header::B { .. }, Command::MSG) => {
                let Some(text) = m.positional(0).map(str::to_owned) else {
                    return self.drop_line(conn, "MSG without text".into());
                };
                if text.len() > MAX_MESSAGE {
                    return self.drop_line(conn, format!("message longer than {MAX_MESSAGE} bytes"));
                }
                // Hub commands count as chat: each `!help` is answered, so unmetered they
                // would let one read of a client queue many times its size for itself.
                if !self.take(now, conn, false) {
                    return self.drop_line(conn, "chat flood: slow down".into());
                }
                if let Some(cmd) = text.strip_prefix('!') {
                    return self.hub_command(now, conn, cmd);
                }
                // B messages go to everybody, the sender included (clients show their own
                // chat line when it comes back).
                self.broadcast(m.encode().into(), None, 0);
                self.out.push_back(Output::Event(HubEvent::Chat { nick: me, text }));
            }
            (Header::B { .. } | Header::F { .. }, Command::SCH) => {
                if !self.take(now, conn, true) {
                    return self.drop_line(conn, "search flood: slow down".into());
                }
                let data: Arc<[u8]> = m.encode().into();
                match &m.header {
                    Header::F { features, .. } => self.feature_broadcast(conn, features, data),
                    _ => self.broadcast(data, Some(conn), 0),
                }
            }
            (Header::D { to, .. } | Header::E { to, .. }, cmd) => {
                let echo = matches!(m.header, Header::E { .. });
                if cmd == Command::MSG {
                    if m.positional(0).is_none_or(|t| t.len() > MAX_MESSAGE) {
                        return self.drop_line(conn, format!("private message empty or longer than {MAX_MESSAGE}"));
                    }
                    if !self.take(now, conn, false) {
                        return self.drop_line(conn, "private message flood: slow down".into());
                    }
                }
                let target = self.sids.get(to).copied().filter(|t| self.conns[t].state == State::Normal);
                match target {
                    Some(t) => {
                        let data: Arc<[u8]> = m.encode().into();
                        self.out.push_back(Output::Send { conn: t, data: data.clone() });
                        if echo && t != conn {
                            self.out.push_back(Output::Send { conn, data });
                        }
                    }
                    None => {
                        let msg = sta(sta::DROPPED, &format!("{to} is not online")).named_arg("FC", m.cmd.as_str());
                        self.send_msg(conn, &msg);
                    }
                }
            }
            (Header::H, Command::SUP | Command::PAS) => {}
            (Header::B { .. } | Header::F { .. }, cmd) => {
                // Other broadcasts (extensions the hub does not know) are not relayed: a
                // hub that relays anything broadcast is a flood amplifier.
                self.drop_line(conn, format!("{}{cmd} is not relayed by this hub", char::from(m.header.letter())));
            }
            (Header::H, _) => {}
            _ => self.drop_line(conn, format!("{}{} is not for the hub", char::from(m.header.letter()), m.cmd)),
        }
    }

    /// Send an `F` message to every other user whose features match `sels`: as one
    /// broadcast when every selector is on a tagged feature, else one shared buffer sent
    /// to each match.
    fn feature_broadcast(&mut self, conn: ConnId, sels: &[FeatureSel], data: Arc<[u8]>) {
        let mut skip = 0u8;
        let mut all_tagged = true;
        for s in sels {
            match tag::FEATURES.iter().find(|(f, _, _)| **f == s.feature.0) {
                Some((_, has, lacks)) => skip |= if s.required { *lacks } else { *has },
                None => all_tagged = false,
            }
        }
        if all_tagged {
            return self.broadcast(data, Some(conn), skip);
        }
        let targets: Vec<ConnId> = self
            .online
            .iter()
            .copied()
            .filter(|u| *u != conn && features_match(sels, |f| self.conns[u].su.contains(&f)))
            .collect();
        for t in targets {
            self.out.push_back(Output::Send { conn: t, data: data.clone() });
        }
    }

    fn take(&mut self, now: Instant, conn: ConnId, search: bool) -> bool {
        let (chat, sch) = (self.cfg.chat_limit, self.cfg.search_limit);
        let c = self.conns.get_mut(&conn).expect("present");
        c.op || if search { c.search.take(now, sch) } else { c.chat.take(now, chat) }
    }

    /// A `BINF` in NORMAL: relay only the fields that changed.
    fn inf_update(&mut self, conn: ConnId, m: Message) {
        let (mut fields, _pid) = match Self::inf_fields(&m) {
            Ok(x) => x,
            Err(e) => return self.drop_line(conn, e),
        };
        let c = &self.conns[&conn];
        if let Some((_, id)) = fields.iter().find(|(n, _)| n == b"ID") {
            if c.cid.map(|x| x.to_base32()).as_deref() != Some(id.as_str()) {
                return self.fatal(conn, sta::PROTOCOL, "The CID cannot change");
            }
        }
        if let Some((_, nick)) = fields.iter().find(|(n, _)| n == b"NI") {
            if *nick != c.nick {
                // Nick changes would dodge registrations and bans: not in this hub.
                return self.drop_line(conn, "the nick cannot change once logged in".into());
            }
        }
        self.fix_fields(conn, &mut fields, false);
        let c = self.conns.get_mut(&conn).expect("present");
        let mut changed = Message::new(Header::B { from: c.sid }, Command::INF);
        for (n, v) in fields {
            let old = c.inf.iter().position(|(k, _)| *k == n);
            let differs = match old {
                Some(i) => c.inf[i].1 != v,
                None => !v.is_empty(),
            };
            if !differs {
                continue;
            }
            changed.params.push(format!("{}{}{v}", char::from(n[0]), char::from(n[1])));
            match (old, v.is_empty()) {
                (Some(i), true) => {
                    c.inf.remove(i);
                }
                (Some(i), false) => c.inf[i].1 = v,
                (None, _) => c.inf.push((n, v)),
            }
        }
        if c.inf.len() > MAX_INF_FIELDS {
            return self.fatal(conn, sta::INF_FIELD, &format!("more than {MAX_INF_FIELDS} INF fields"));
        }
        if changed.params.is_empty() {
            return;
        }
        c.inf_line = Some(Self::user_inf(c).encode().into());
        let su = su_features(c.field(b"SU").unwrap_or(""));
        if su != c.su {
            c.su = su;
            let tags = c.tags();
            self.out.push_back(Output::Join { conn, tags });
        }
        self.broadcast(changed.encode().into(), None, 0);
    }

    /// Main-chat commands: `!help` for everybody, the rest for operators (the NMDC hub's
    /// set but `!topic`: [`parse_op_command`], docs/protocols/adc.md#hub-commands).
    fn hub_command(&mut self, now: Instant, conn: ConnId, line: &str) {
        let (name, args) = split_command(line);
        let c = &self.conns[&conn];
        let (is_op, me) = (c.op, c.nick.clone());
        if name == "help" {
            let mut text = String::from("Commands: !help");
            if is_op {
                text.push_str(
                    ", !kick <nick> [reason], !ban <nick> <duration: 30m, 2h, 7d, perm> [reason], \
                     !unban <nick>, !reg <nick> <password> [op], !unreg <nick>, !users",
                );
            }
            return self.say_to(conn, &text);
        }
        if !is_op {
            let msg = sta(sta::DENIED, &format!("!{name}: you are not an operator (try !help)"));
            return self.send_msg(conn, &msg);
        }
        match parse_op_command(name, args) {
            OpCommand::Kick { victim, reason } => match self.online_by_nick(victim) {
                Some(v) => self.kick(v, Some(conn), &reason),
                None => self.say_to(conn, &format!("{victim} is not online.")),
            },
            OpCommand::Ban { victim, dur, duration, reason } => {
                let v = self.online_by_nick(victim);
                let ip = v.map(|v| self.conns[&v].ip);
                let ban = Ban { nick: Some(victim.to_owned()), ip, until: duration.map(|d| now + d), reason };
                self.bans.push(ban.clone());
                let reason = ban.reason.clone();
                self.out.push_back(Output::Event(HubEvent::Banned { by: me, ban, duration }));
                if let Some(v) = v {
                    self.kick(v, Some(conn), &format!("banned ({dur}): {reason}"));
                }
                self.say_to(conn, &format!("{victim} is banned ({dur})."));
            }
            OpCommand::Unban { victim } => {
                let n = lift_bans(&mut self.bans, victim);
                self.out.push_back(Output::Event(HubEvent::Unbanned { by: me, nick: victim.to_owned() }));
                self.say_to(conn, &format!("{n} ban(s) of {victim} lifted."));
            }
            OpCommand::Reg { nick, password, op } => {
                if !self.nick_ok(nick) {
                    return self.say_to(conn, &format!("'{nick}' is not a valid nick."));
                }
                self.set_registered(nick, password, op);
                self.out.push_back(Output::Event(HubEvent::Register {
                    by: me,
                    nick: nick.to_owned(),
                    password: password.to_owned(),
                    op,
                }));
                self.say_to(conn, &format!("{nick} is registered{}.", if op { " as operator" } else { "" }));
            }
            OpCommand::Unreg { nick } => {
                if self.registered.remove(&nick.to_lowercase()).is_some() {
                    self.out.push_back(Output::Event(HubEvent::Unregister { by: me, nick: nick.to_owned() }));
                    self.say_to(conn, &format!("{nick} is no longer registered."));
                } else {
                    self.say_to(conn, &format!("{nick} is not registered."));
                }
            }
            OpCommand::Users => {
                let list: Vec<String> = self
                    .online
                    .iter()
                    .map(|u| {
                        let uc = &self.conns[u];
                        format!("{} ({}, {}{})", uc.nick, uc.sid, uc.ip, if uc.op { ", op" } else { "" })
                    })
                    .collect();
                self.say_to(conn, &format!("{} online: {}", list.len(), list.join(", ")));
            }
            OpCommand::Refused(text) => self.say_to(conn, &text),
            OpCommand::Other { name, .. } => self.say_to(conn, &format!("Unknown command !{name} (try !help).")),
        }
    }

    fn online_by_nick(&self, nick: &str) -> Option<ConnId> {
        let id = *self.nicks.get(&nick.to_lowercase())?;
        (self.conns.get(&id)?.state == State::Normal).then_some(id)
    }
}

/// The features of an `SU` field (`TCP4,UDP4,ADC0`).
fn su_features(su: &str) -> HashSet<Feature> {
    su.split(',').filter_map(Feature::parse).collect()
}

/// Compare without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decode a base32 `IGPA` challenge (for clients and tests).
pub fn decode_challenge(s: &str) -> Option<Vec<u8>> {
    base32_decode(s)
}

#[cfg(test)]
mod tests;
