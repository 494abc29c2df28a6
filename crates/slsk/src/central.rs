//! A Soulseek server (Soulfind-class) as a sans-IO state machine over many connections.
//!
//! The driver reports connections ([`Central::accept`], [`Central::disconnect`]), feeds
//! their bytes ([`Central::handle_input`]) and time ([`Central::handle_timeout`]), answers
//! the questions only it can answer (is this password right — accounts live in its
//! database: [`CentralEvent::CheckLogin`] → [`Central::login_result`]) and hands over
//! stored private messages at login ([`Central::deliver_stored`]). It drains
//! [`Central::poll_output`]: frames for a connection, connections to close, and events
//! to persist (private messages until acknowledged, bans).
//!
//! Behaviour follows `shared/notes/soulseek.md` §4–§6 as aioslsk 1.7.1 and Nicotine+
//! 3.3.11 expect it: the Login reply is the very first frame after Login, then RoomList,
//! ParentMinSpeed, ParentSpeedRatio, WishlistInterval, PrivilegedUsers and
//! ExcludedSearchPhrases; searches are relayed to every other user as FileSearch (26);
//! ConnectToPeer is relayed with the requester's address; status and stats changes are
//! pushed to watchers and room co-members; a second login of a user sends `Relogged` to
//! the first. Administrators talk to the user `server` by private message.
//!
//! Limits against one address: before a successful Login a connection may buffer at most
//! a [`MAX_LOGIN_FRAME`]-byte frame (a logged-in one [`MAX_CLIENT_FRAME`]), and a login not
//! done within [`CentralConfig::login_timeout`] ([`LOGIN_TIMEOUT`]) is closed; one address
//! may create at most [`CentralConfig::max_registrations_per_ip_per_hour`] accounts an hour
//! and hold [`CentralConfig::max_sessions_per_ip`] sessions at once. A refused login gets a
//! LoginResponse failure whose reason is a sentence (Nicotine+ shows an unknown reason as
//! "Unable to connect to the server. Reason: …", aioslsk puts it in its error). Existing
//! accounts log in whatever the registration count, and administrators (the node's own
//! client) are not held to the session cap.

use crate::framing::{FrameKind, FrameReader};
use crate::login::{password_hash, validate_room_name, validate_username};
use crate::server::{
    login_failure, RoomEntry, RoomList, RoomUser, ServerRequest, ServerResponse, UserStats, WatchedUser,
};
use crate::tree::{Tree, TreeConfig, TreeUser};
use crate::UserStatus;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection's id, chosen by the driver.
pub type ConnId = u64;

/// The name administrators send commands to.
pub const SERVER_USER: &str = "server";
/// Longest private or room message relayed, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Longest search query relayed, in bytes.
pub const MAX_QUERY: usize = 1024;
/// Rooms one user may be in.
pub const MAX_ROOMS_PER_USER: usize = 100;
/// Users one user may watch.
pub const MAX_WATCHED: usize = 10_000;
/// Largest frame read before a successful Login (a Login is user, password and an md5:
/// well under 1 KiB). A connection that never logs in holds at most this plus one read.
pub const MAX_LOGIN_FRAME: usize = 16 * 1024;
/// Largest frame read from a logged-in client: clients send the server nothing long (a
/// message is relayed only up to [`MAX_MESSAGE`], a query up to [`MAX_QUERY`]).
pub const MAX_CLIENT_FRAME: usize = 1024 * 1024;
/// Default time from connect to a successful login.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on accounts created (first logins of new names) from one address per hour:
/// a burst of this many, then one every hour / this.
pub const MAX_REGISTRATIONS_PER_IP_PER_HOUR: u32 = 10;
/// Default cap on sessions at once from one address.
pub const MAX_SESSIONS_PER_IP: usize = 16;
/// Addresses whose registrations are remembered at once; beyond it, those idle for an
/// hour are forgotten (their allowance is whole again anyway).
pub const MAX_TRACKED_IPS: usize = 4096;
/// Default time a room's `UserLeftRoom` announcements wait to go out together, as one
/// shared buffer per batch ([`CentralConfig::room_leave_batch`]). When a 10,000-member
/// room empties at once (a network drop), announcing each leave at once makes N²/2 = 50
/// million sends, most to members that are gone but not yet reported gone by the driver
/// (it queued ~1.9 GB and stalled the server for seconds); batched, each member gets a few
/// buffers holding the same frames in the same order. Anything else said to the room
/// (a line, a join, a ticker) sends the batch first, so order is kept.
pub const ROOM_LEAVE_BATCH: Duration = Duration::from_millis(100);
/// Bytes of batched `UserLeftRoom` frames after which a room's batch goes out at once (so
/// one batch buffer stays small).
pub const MAX_ROOM_BATCH_BYTES: usize = 64 * 1024;

/// Direct recipients of a search named in [`CentralEvent::SearchRelayed`].
pub const MAX_LOGGED_RECIPIENTS: usize = 32;

/// Server settings.
#[derive(Debug, Clone)]
pub struct CentralConfig {
    /// Sent in the Login reply.
    pub greeting: String,
    /// Refuse logins of unknown users (no registration by first login).
    pub private: bool,
    /// Users at once.
    pub max_users: usize,
    /// Time from connect to a successful login.
    pub login_timeout: Duration,
    /// Accounts one address may create per hour (0: no limit).
    pub max_registrations_per_ip_per_hour: u32,
    /// Sessions at once from one address; administrators are not counted against it
    /// (0: no limit).
    pub max_sessions_per_ip: usize,
    /// Sent in ExcludedSearchPhrases.
    pub excluded_phrases: Vec<String>,
    /// Sent in WishlistInterval (seconds).
    pub wishlist_interval: u32,
    /// Searches a user may send at once, then one per `search_every`.
    pub search_burst: u32,
    /// See `search_burst`.
    pub search_every: Duration,
    /// Users who may give `server` commands.
    pub admins: Vec<String>,
    /// Unix time at `start`, to stamp private messages.
    pub unix_at_start: u64,
    /// The instant matching `unix_at_start`.
    pub start: Instant,
    /// How long `UserLeftRoom` announcements may wait to go out as one batch (see
    /// [`ROOM_LEAVE_BATCH`]); zero: each goes out at once, as its own frame.
    pub room_leave_batch: Duration,
    /// The distributed tree (see [`crate::tree`]).
    pub tree: TreeConfig,
    /// Key of the 64-bit hashes by which the server remembers which names have accounts
    /// (a random number from the driver: names cannot be picked to collide).
    pub name_key: u64,
}

impl CentralConfig {
    /// Defaults, with the clock reading given by the driver.
    pub fn new(start: Instant, unix_at_start: u64) -> Self {
        CentralConfig {
            greeting: "Welcome to omnipeer's Soulseek server.".into(),
            private: false,
            max_users: 50_000,
            login_timeout: LOGIN_TIMEOUT,
            max_registrations_per_ip_per_hour: MAX_REGISTRATIONS_PER_IP_PER_HOUR,
            max_sessions_per_ip: MAX_SESSIONS_PER_IP,
            excluded_phrases: Vec::new(),
            wishlist_interval: 720,
            search_burst: 10,
            search_every: Duration::from_secs(2),
            admins: Vec::new(),
            tree: TreeConfig::default(),
            unix_at_start,
            start,
            room_leave_batch: ROOM_LEAVE_BATCH,
            name_key: 0,
        }
    }
}

/// The driver's answer to [`CentralEvent::CheckLogin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginDecision {
    /// The password matches (or the account was just created).
    Accept,
    /// Wrong password.
    InvalidPass,
    /// Unknown user on a private server.
    Private,
    /// Banned: the real server just does not answer; we close.
    Banned,
}

/// A private message kept until its recipient acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: u32,
    /// Unix time it was sent.
    pub timestamp: u32,
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The text.
    pub message: String,
}

/// Something for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CentralEvent {
    /// Check (or create) the account; answer with [`Central::login_result`].
    CheckLogin {
        /// The connection.
        conn: ConnId,
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A user logged in; hand over its stored messages with [`Central::deliver_stored`].
    LoggedIn {
        /// The connection.
        conn: ConnId,
        /// The user.
        user: String,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// A user left.
    LoggedOut {
        /// The user.
        user: String,
    },
    /// Keep this message until [`CentralEvent::MessageAcked`].
    StoreMessage(StoredMessage),
    /// The recipient acknowledged a message: forget it.
    MessageAcked {
        /// The recipient.
        user: String,
        /// The message id.
        id: u32,
    },
    /// An administrator banned a user (persist it).
    Banned {
        /// Who.
        user: String,
        /// By whom.
        by: String,
    },
    /// An administrator lifted a ban (persist it).
    Unbanned {
        /// Who.
        user: String,
        /// By whom.
        by: String,
    },
    /// A connection was dropped for sending garbage or flooding.
    Dropped {
        /// The connection.
        conn: ConnId,
        /// Why.
        why: String,
    },
    /// A search went out (for logs): to `roots` branch roots through the tree and to
    /// `direct` users straight from the server, the first [`MAX_LOGGED_RECIPIENTS`] of
    /// them named in `direct_users`.
    SearchRelayed {
        /// The searcher.
        user: String,
        /// Its token.
        token: u32,
        /// Branch roots sent the search as EmbeddedMessage.
        roots: usize,
        /// Users sent the search as FileSearch.
        direct: usize,
        /// Some of them, by name.
        direct_users: Vec<String>,
    },
    /// A room message (for logs and the node's chat history).
    RoomMessage {
        /// The room.
        room: String,
        /// The speaker.
        user: String,
        /// The text.
        message: String,
    },
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write this frame to this connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// Whole frames: one, shared between recipients of a broadcast, or a batch of a
        /// room's `UserLeftRoom` frames (see [`CentralConfig::room_leave_batch`]).
        data: Arc<[u8]>,
    },
    /// Close this connection after what was sent to it before.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Something for the driver.
    Event(CentralEvent),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    AwaitLogin,
    Checking { user: String, password: String },
    Online { user: String },
    Closing,
}

#[derive(Debug)]
struct Conn {
    ip: Ipv4Addr,
    phase: Phase,
    reader: FrameReader,
    deadline: Option<Instant>,
    port: u32,
    obf_port: u32,
    status: UserStatus,
    stats: UserStats,
    watching: HashSet<String>,
    rooms: HashSet<String>,
    search_tokens: f64,
    search_at: Option<Instant>,
    /// Counted in [`Central::ip_sessions`] (online).
    counted: bool,
}

/// Registrations left to one address: a token bucket.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    tokens: f64,
    at: Instant,
}

/// Slots a [`SortedSet`] grows by when full: a fraction (1 / this) of what it holds, so it
/// keeps at most that much unused room.
pub const SORTED_SET_GROWTH: usize = 8;

/// A set kept as one sorted array: a table that grows with every account a server ever saw
/// (the names known to have one, the passwords verified in this run) costs its items and
/// at most 1/[`SORTED_SET_GROWTH`] of room, not the 1.1-2.3× of a hash table's slots and
/// control bytes (a `HashSet<u64>` of 10,000 names: 16,384 slots of 9 bytes, 144 KiB; as
/// this, 88 KiB at most). Lookups are binary searches (14 steps at 10,000); an insert
/// moves the items above it (at 10,000 names of 8 bytes, 40 KB on average: microseconds,
/// once per account created). Loading many at once: [`SortedSet::extend`].
#[derive(Debug, Clone)]
pub struct SortedSet<T> {
    items: Vec<T>,
}

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet { items: Vec::new() }
    }
}

impl<T: Ord + Copy> SortedSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `x` is in.
    pub fn contains(&self, x: &T) -> bool {
        self.items.binary_search(x).is_ok()
    }

    /// Add `x`; false if it was in already.
    pub fn insert(&mut self, x: T) -> bool {
        match self.items.binary_search(&x) {
            Ok(_) => false,
            Err(i) => {
                if self.items.len() == self.items.capacity() {
                    self.items.reserve_exact((self.items.len() / SORTED_SET_GROWTH).max(16));
                }
                self.items.insert(i, x);
                true
            }
        }
    }

    /// Add many (sorted once, not moved for each).
    pub fn extend(&mut self, xs: impl IntoIterator<Item = T>) {
        self.items.extend(xs);
        self.items.sort_unstable();
        self.items.dedup();
        self.items.shrink_to_fit();
    }

    /// Items in.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing in.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes its array takes (items and unused room).
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>()
    }
}

#[derive(Debug, Default)]
struct Room {
    /// Members in join order.
    members: Vec<ConnId>,
    /// (user, ticker).
    tickers: BTreeMap<String, String>,
    /// `UserLeftRoom` frames not yet sent to the members (see [`ROOM_LEAVE_BATCH`]).
    left: Vec<u8>,
}

/// The server.
#[derive(Debug)]
pub struct Central {
    cfg: CentralConfig,
    conns: HashMap<ConnId, Conn>,
    /// Lower-case user → connection, for users online.
    users: HashMap<String, ConnId>,
    /// Lower-case user → who watches them (lower-case).
    watchers: HashMap<String, HashSet<String>>,
    rooms: BTreeMap<String, Room>,
    banned: HashSet<String>,
    /// Names with an account, as keyed 64-bit hashes of the lower-case name
    /// ([`Central::name_slot`]), not as strings: every account that logged in once stays
    /// here, and a name allocated apart for each, among the connections' buffers during a
    /// login storm, kept their pages from going back to the system after everybody left
    /// (bench/src/slsk_server.rs). A collision only makes an unknown name look known to
    /// WatchUser and to the registration allowance; with a random key nobody can aim one.
    known: SortedSet<u64>,
    next_message_id: u32,
    out: VecDeque<Output>,
    /// Online sessions per address.
    ip_sessions: HashMap<Ipv4Addr, usize>,
    /// Registrations per address.
    ip_registrations: HashMap<Ipv4Addr, Allowance>,
    /// The latest time the driver gave (for message timestamps outside a timed call).
    now: Instant,
    /// Login deadlines of the connections not logged in yet, earliest first: a login storm
    /// of 10,000 connections must not make every turn of the driver scan them all.
    deadlines: BTreeSet<(Instant, ConnId)>,
    /// Rooms with `UserLeftRoom` frames waiting, and when they go out.
    left_due: Option<Instant>,
    left_rooms: Vec<String>,
    tree: Tree,
}

impl Central {
    /// A server with nobody on it.
    pub fn new(cfg: CentralConfig) -> Central {
        let cfg_start = cfg.start;
        let cfg_tree = cfg.tree.clone();
        Central {
            cfg,
            conns: HashMap::new(),
            users: HashMap::new(),
            watchers: HashMap::new(),
            rooms: BTreeMap::new(),
            banned: HashSet::new(),
            known: SortedSet::new(),
            next_message_id: 1,
            out: VecDeque::new(),
            ip_sessions: HashMap::new(),
            ip_registrations: HashMap::new(),
            now: cfg_start,
            deadlines: BTreeSet::new(),
            left_due: None,
            left_rooms: Vec::new(),
            tree: Tree::new(cfg_tree),
        }
    }

    /// Users the driver knows to have accounts (for WatchUser's `exists`).
    pub fn add_known_user(&mut self, user: &str) {
        let slot = self.name_slot(&user.to_lowercase());
        self.known.insert(slot);
    }

    /// Many users known to have accounts (all of them, at start): sorted in once.
    pub fn add_known_users<'a>(&mut self, users: impl IntoIterator<Item = &'a str>) {
        let slots: Vec<u64> = users.into_iter().map(|u| self.name_slot(&u.to_lowercase())).collect();
        self.known.extend(slots);
    }

    /// The keyed hash `known` holds for a lower-case name.
    fn name_slot(&self, key: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cfg.name_key.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }

    /// Put a ban in force (as loaded from storage).
    pub fn add_ban(&mut self, user: &str) {
        self.banned.insert(user.to_lowercase());
    }

    /// Message ids must not repeat stored ones: start after this.
    pub fn set_next_message_id(&mut self, id: u32) {
        self.next_message_id = id.max(1);
    }

    /// Users online, sorted.
    pub fn online_users(&self) -> Vec<String> {
        let mut v: Vec<String> = self.users.values().filter_map(|c| self.user_of(*c).map(str::to_owned)).collect();
        v.sort();
        v
    }

    /// Rooms and their member counts.
    pub fn room_counts(&self) -> Vec<(String, usize)> {
        self.rooms.iter().map(|(n, r)| (n.clone(), r.members.len())).collect()
    }

    /// Every user's place in the distributed tree, by name.
    pub fn tree_users(&self) -> Vec<TreeUser> {
        self.tree.users()
    }

    fn user_of(&self, conn: ConnId) -> Option<&str> {
        match &self.conns.get(&conn)?.phase {
            Phase::Online { user } => Some(user),
            _ => None,
        }
    }

    /// A connection was accepted from `ip`.
    pub fn accept(&mut self, now: Instant, conn: ConnId, ip: Ipv4Addr) {
        self.now = self.now.max(now);
        let deadline = now + self.cfg.login_timeout;
        if let Some(old) = self.conns.get(&conn) {
            // The driver reuses no ids, but a stale deadline must not outlive its entry.
            if let Some(d) = old.deadline {
                self.deadlines.remove(&(d, conn));
            }
        }
        self.deadlines.insert((deadline, conn));
        self.conns.insert(
            conn,
            Conn {
                ip,
                phase: Phase::AwaitLogin,
                reader: FrameReader::with_limit(FrameKind::Server, MAX_LOGIN_FRAME),
                deadline: Some(deadline),
                port: 0,
                obf_port: 0,
                status: UserStatus::Online,
                stats: UserStats::default(),
                watching: HashSet::new(),
                rooms: HashSet::new(),
                search_tokens: f64::from(self.cfg.search_burst),
                search_at: None,
                counted: false,
            },
        );
    }

    /// The connection is gone.
    pub fn disconnect(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(d) = c.deadline {
            self.deadlines.remove(&(d, conn));
        }
        self.shrink_maps();
        if c.counted {
            if let Some(n) = self.ip_sessions.get_mut(&c.ip) {
                *n -= 1;
                if *n == 0 {
                    self.ip_sessions.remove(&c.ip);
                }
            }
        }
        let Phase::Online { user } = c.phase else {
            return;
        };
        let key = user.to_lowercase();
        if self.users.get(&key) == Some(&conn) {
            self.users.remove(&key);
        }
        self.tree.leave(conn);
        for room in &c.rooms {
            self.leave_room(conn, &user, room, false);
        }
        for w in &c.watching {
            if let Some(set) = self.watchers.get_mut(w) {
                set.remove(&key);
            }
        }
        // Watchers learn the user went offline.
        self.push_status(&user, UserStatus::Offline, None);
        self.out.push_back(Output::Event(CentralEvent::LoggedOut { user }));
    }

    /// Bytes from a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.now = self.now.max(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reader.push(bytes);
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.phase == Phase::Closing {
                return;
            }
            let frame = match c.reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    // A reader keeps the capacity of its largest frame; a fresh one (which
                    // allocates nothing until bytes come) gives it back.
                    if c.reader.buffered() == 0 {
                        c.reader = FrameReader::with_limit(FrameKind::Server, c.reader.limit());
                    }
                    return;
                }
                Err(e) => return self.drop_conn(conn, format!("bad frame: {e}")),
            };
            match ServerRequest::from_frame(&frame) {
                Ok(req) => self.on_request(now, conn, req),
                Err(e) => return self.drop_conn(conn, format!("undecodable message {}: {e}", frame.code)),
            }
        }
    }

    /// The driver's answer to [`CentralEvent::CheckLogin`].
    pub fn login_result(&mut self, now: Instant, conn: ConnId, decision: LoginDecision) {
        self.now = self.now.max(now);
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Phase::Checking { user, password } = c.phase.clone() else {
            return;
        };
        match decision {
            LoginDecision::InvalidPass => self.refuse(conn, login_failure::INVALIDPASS, None),
            LoginDecision::Private => self.refuse(conn, login_failure::SVRPRIVATE, None),
            LoginDecision::Banned => self.close(conn),
            LoginDecision::Accept => self.log_in(now, conn, user, &password),
        }
    }

    /// Stored private messages for a user who just logged in (sent with `new = false`).
    pub fn deliver_stored(&mut self, conn: ConnId, messages: Vec<StoredMessage>) {
        for m in messages {
            self.send(
                conn,
                &ServerResponse::MessageUser {
                    id: m.id,
                    timestamp: m.timestamp,
                    user: m.from,
                    message: m.message,
                    new_message: false,
                },
            );
        }
    }

    /// Time passed: logins that took too long are closed; batched room announcements
    /// that are due go out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.left_due.is_some_and(|d| now >= d) {
            self.flush_left_rooms();
        }
        self.forget_idle_ips(now);
        let late: Vec<ConnId> = self.deadlines.iter().take_while(|(d, _)| now >= *d).map(|(_, c)| *c).collect();
        for conn in late {
            self.drop_conn(conn, "no login in time".into());
        }
        for (conn, parents) in self.tree.handle_timeout(now) {
            self.send(conn, &ServerResponse::PossibleParents { parents });
        }
    }

    /// The earliest instant [`Central::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let login = self.deadlines.first().map(|(d, _)| *d);
        [login, self.left_due, self.tree.poll_timeout()].into_iter().flatten().min()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ---- helpers ---------------------------------------------------------------------

    fn send(&mut self, conn: ConnId, msg: &ServerResponse) {
        if self.conns.get(&conn).is_some_and(|c| c.phase != Phase::Closing) {
            self.out.push_back(Output::Send { conn, data: msg.encode().into() });
        }
    }

    fn send_shared(&mut self, conns: impl IntoIterator<Item = ConnId>, msg: &ServerResponse) {
        self.send_data(conns, msg.encode().into());
    }

    /// Encoded frames, one buffer for every recipient.
    fn send_data(&mut self, conns: impl IntoIterator<Item = ConnId>, data: Arc<[u8]>) {
        for conn in conns {
            if self.conns.get(&conn).is_some_and(|c| c.phase != Phase::Closing) {
                self.out.push_back(Output::Send { conn, data: data.clone() });
            }
        }
    }

    /// Give back the slots of maps that held many more users than they do now (a mass
    /// leave): a map keeps its largest capacity otherwise, ~4 MB for 10,000 connections.
    /// Shrinking only below a quarter keeps this amortised O(1) per disconnect.
    fn shrink_maps(&mut self) {
        fn shrink<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
            if m.capacity() > 64 && m.len() < m.capacity() / 4 {
                m.shrink_to(m.len() * 2);
            }
        }
        shrink(&mut self.conns);
        shrink(&mut self.users);
        shrink(&mut self.ip_sessions);
        shrink(&mut self.watchers);
        if self.out.is_empty() && self.out.capacity() > 1024 {
            // A 10,000-member room's line queued 10,000 outputs once.
            self.out = VecDeque::new();
        }
    }

    /// Send `room`'s batched `UserLeftRoom` frames to its members, as one shared buffer.
    fn flush_left(&mut self, room: &str) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.left.is_empty() {
            return;
        }
        let data: Arc<[u8]> = std::mem::take(&mut r.left).into();
        let members = r.members.clone();
        self.send_data(members, data);
    }

    /// Every room's batch (their time has come).
    fn flush_left_rooms(&mut self) {
        self.left_due = None;
        for room in std::mem::take(&mut self.left_rooms) {
            self.flush_left(&room);
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            if c.phase == Phase::Closing {
                return;
            }
            // Leave rooms and tell watchers now; the stub ignores everything after.
            let ip = c.ip;
            self.disconnect(conn);
            self.conns.insert(
                conn,
                Conn {
                    ip,
                    phase: Phase::Closing,
                    reader: FrameReader::with_limit(FrameKind::Server, 0),
                    deadline: None,
                    port: 0,
                    obf_port: 0,
                    status: UserStatus::Offline,
                    stats: UserStats::default(),
                    watching: HashSet::new(),
                    rooms: HashSet::new(),
                    search_tokens: 0.0,
                    search_at: None,
                    counted: false,
                },
            );
            self.out.push_back(Output::Close { conn });
        }
    }

    fn drop_conn(&mut self, conn: ConnId, why: String) {
        self.out.push_back(Output::Event(CentralEvent::Dropped { conn, why }));
        self.close(conn);
    }

    fn refuse(&mut self, conn: ConnId, reason: &str, detail: Option<String>) {
        self.send(conn, &ServerResponse::LoginFailure { reason: reason.to_owned(), detail });
        self.close(conn);
    }

    fn say_from_server(&mut self, conn: ConnId, text: &str) {
        let id = self.next_id();
        let ts = self.unix_now_of(self.now);
        self.send(
            conn,
            &ServerResponse::MessageUser {
                id,
                timestamp: ts,
                user: SERVER_USER.to_owned(),
                message: text.to_owned(),
                new_message: true,
            },
        );
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }

    fn unix_now_of(&self, now: Instant) -> u32 {
        (self.cfg.unix_at_start + now.saturating_duration_since(self.cfg.start).as_secs()) as u32
    }

    fn conn_of(&self, user: &str) -> Option<ConnId> {
        self.users.get(&user.to_lowercase()).copied()
    }

    fn room_user(&self, conn: ConnId) -> Option<RoomUser> {
        let c = self.conns.get(&conn)?;
        let Phase::Online { user } = &c.phase else {
            return None;
        };
        Some(RoomUser { name: user.clone(), status: c.status, stats: c.stats, slots_full: 0, country: String::new() })
    }

    /// Connections that should hear about `user`: its watchers and its rooms' members.
    fn audience(&self, user: &str) -> Vec<ConnId> {
        let key = user.to_lowercase();
        let mut set: HashSet<ConnId> = HashSet::new();
        if let Some(ws) = self.watchers.get(&key) {
            set.extend(ws.iter().filter_map(|w| self.users.get(w).copied()));
        }
        if let Some(conn) = self.users.get(&key) {
            if let Some(c) = self.conns.get(conn) {
                for r in &c.rooms {
                    if let Some(room) = self.rooms.get(r) {
                        set.extend(room.members.iter().copied());
                    }
                }
            }
            set.remove(conn);
        }
        let mut v: Vec<ConnId> = set.into_iter().collect();
        v.sort();
        v
    }

    fn push_status(&mut self, user: &str, status: UserStatus, except: Option<ConnId>) {
        let audience: Vec<ConnId> = self.audience(user).into_iter().filter(|c| Some(*c) != except).collect();
        self.send_shared(audience, &ServerResponse::GetUserStatus { user: user.to_owned(), status, privileged: false });
    }

    fn push_stats(&mut self, user: &str, stats: UserStats) {
        let audience = self.audience(user);
        self.send_shared(audience, &ServerResponse::GetUserStats { user: user.to_owned(), stats });
    }

    fn room_list(&self) -> RoomList {
        RoomList {
            public: self
                .rooms
                .iter()
                .map(|(n, r)| RoomEntry { name: n.clone(), users: r.members.len() as u32 })
                .collect(),
            ..Default::default()
        }
    }

    // ---- requests --------------------------------------------------------------------

    fn on_request(&mut self, now: Instant, conn: ConnId, req: ServerRequest) {
        let phase = self.conns[&conn].phase.clone();
        match phase {
            Phase::AwaitLogin => match req {
                ServerRequest::Login { username, password, .. } => self.on_login(now, conn, username, password),
                // Nothing but Login before login.
                _ => self.drop_conn(conn, "a message before Login".into()),
            },
            Phase::Checking { .. } | Phase::Closing => {}
            Phase::Online { user } => self.online_request(now, conn, &user, req),
        }
    }

    fn on_login(&mut self, now: Instant, conn: ConnId, user: String, password: String) {
        if let Err(e) = validate_username(&user) {
            return self.refuse(conn, login_failure::INVALIDUSERNAME, Some(e.detail().to_owned()));
        }
        if user.eq_ignore_ascii_case(SERVER_USER) {
            return self.refuse(conn, login_failure::INVALIDUSERNAME, Some("Reserved name.".to_owned()));
        }
        if password.is_empty() {
            return self.refuse(conn, login_failure::EMPTYPASSWORD, None);
        }
        if self.banned.contains(&user.to_lowercase()) {
            // The real server does not answer banned users.
            return self.close(conn);
        }
        let key = user.to_lowercase();
        let relogin = self.users.contains_key(&key);
        if !relogin && self.users.len() >= self.cfg.max_users {
            return self.refuse(conn, login_failure::SVRFULL, None);
        }
        if self.too_many_sessions(conn, &user) {
            return self.refuse(conn, login_failure::TOO_MANY_SESSIONS, None);
        }
        // A first login registers the name (unless the server is private): that is what
        // one address may do only so often. Known accounts are not counted.
        if !self.cfg.private && !self.known.contains(&self.name_slot(&key)) {
            let ip = self.conns[&conn].ip;
            if !self.take_registration(now, ip) {
                return self.refuse(conn, login_failure::TOO_MANY_REGISTRATIONS, None);
            }
        }
        self.conns.get_mut(&conn).expect("present").phase =
            Phase::Checking { user: user.clone(), password: password.clone() };
        self.out.push_back(Output::Event(CentralEvent::CheckLogin { conn, user, password }));
    }

    fn log_in(&mut self, _now: Instant, conn: ConnId, user: String, password: &str) {
        let key = user.to_lowercase();
        // Checked again: a ban or other logins may have come while the password was checked.
        if self.banned.contains(&key) {
            return self.close(conn);
        }
        if !self.users.contains_key(&key) && self.users.len() >= self.cfg.max_users {
            return self.refuse(conn, login_failure::SVRFULL, None);
        }
        if self.too_many_sessions(conn, &user) {
            return self.refuse(conn, login_failure::TOO_MANY_SESSIONS, None);
        }
        if let Some(old) = self.users.get(&key).copied() {
            if old != conn {
                self.send(old, &ServerResponse::Relogged);
                self.close(old);
            }
        }
        // Administrators (the node's own client) neither count nor are counted.
        let counted = !self.cfg.admins.iter().any(|a| a.eq_ignore_ascii_case(&user));
        let ip = {
            let c = self.conns.get_mut(&conn).expect("present");
            c.phase = Phase::Online { user: user.clone() };
            if let Some(d) = c.deadline.take() {
                self.deadlines.remove(&(d, conn));
            }
            c.reader.set_limit(MAX_CLIENT_FRAME);
            c.counted = counted;
            c.ip
        };
        if counted {
            *self.ip_sessions.entry(ip).or_insert(0) += 1;
        }
        self.known.insert(self.name_slot(&key));
        self.users.insert(key, conn);
        self.tree.join(conn, &user, ip);
        // The Login reply must be the very first frame (aioslsk insists).
        self.send(
            conn,
            &ServerResponse::LoginSuccess {
                greet: self.cfg.greeting.clone(),
                own_ip: ip,
                password_hash: password_hash(password),
                supporter: false,
            },
        );
        let list = self.room_list();
        self.send(conn, &ServerResponse::RoomList(list));
        self.send(conn, &ServerResponse::ParentMinSpeed { speed: 1 });
        self.send(conn, &ServerResponse::ParentSpeedRatio { ratio: 50 });
        self.send(conn, &ServerResponse::WishlistInterval { seconds: self.cfg.wishlist_interval });
        self.send(conn, &ServerResponse::PrivilegedUsers { users: Vec::new() });
        let phrases = self.cfg.excluded_phrases.clone();
        self.send(conn, &ServerResponse::ExcludedSearchPhrases { phrases });
        self.push_status(&user, UserStatus::Online, Some(conn));
        self.out.push_back(Output::Event(CentralEvent::LoggedIn { conn, user, ip }));
    }

    /// Whether `user` logging in on `conn` would be one session too many from its
    /// address. Administrators and a user replacing its own session are not held to it.
    fn too_many_sessions(&self, conn: ConnId, user: &str) -> bool {
        let cap = self.cfg.max_sessions_per_ip;
        if cap == 0
            || self.users.contains_key(&user.to_lowercase())
            || self.cfg.admins.iter().any(|a| a.eq_ignore_ascii_case(user))
        {
            return false;
        }
        let ip = self.conns[&conn].ip;
        self.ip_sessions.get(&ip).copied().unwrap_or(0) >= cap
    }

    /// Take one registration from `ip`'s hourly allowance.
    fn take_registration(&mut self, now: Instant, ip: Ipv4Addr) -> bool {
        let per_hour = self.cfg.max_registrations_per_ip_per_hour;
        if per_hour == 0 {
            return true;
        }
        if self.ip_registrations.len() >= MAX_TRACKED_IPS && !self.ip_registrations.contains_key(&ip) {
            self.forget_idle_ips(now);
        }
        let burst = f64::from(per_hour);
        let a = self.ip_registrations.entry(ip).or_insert(Allowance { tokens: burst, at: now });
        let gained = now.saturating_duration_since(a.at).as_secs_f64() / 3600.0 * burst;
        a.tokens = (a.tokens + gained).min(burst);
        a.at = a.at.max(now);
        if a.tokens >= 1.0 {
            a.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forget addresses that registered nothing for an hour (their allowance is whole).
    fn forget_idle_ips(&mut self, now: Instant) {
        self.ip_registrations.retain(|_, a| now.saturating_duration_since(a.at) < Duration::from_secs(3600));
    }

    fn take_search(&mut self, now: Instant, conn: ConnId) -> bool {
        let (burst, every) = (f64::from(self.cfg.search_burst), self.cfg.search_every.as_secs_f64().max(1e-9));
        let c = self.conns.get_mut(&conn).expect("present");
        if let Some(at) = c.search_at {
            c.search_tokens = (c.search_tokens + now.saturating_duration_since(at).as_secs_f64() / every).min(burst);
        }
        c.search_at = Some(now);
        if c.search_tokens >= 1.0 {
            c.search_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn online_request(&mut self, now: Instant, conn: ConnId, me: &str, req: ServerRequest) {
        match req {
            ServerRequest::Login { .. } => {} // already logged in
            ServerRequest::SetWaitPort { port, obfuscation } => {
                let c = self.conns.get_mut(&conn).expect("present");
                c.port = port;
                c.obf_port = obfuscation.map_or(0, |o| o.port);
                self.tree.set_port(conn, port);
            }
            ServerRequest::GetPeerAddress { user } => {
                let (ip, port) = match self.conn_of(&user).and_then(|c| self.conns.get(&c)) {
                    Some(c) => (c.ip, c.port),
                    None => (Ipv4Addr::UNSPECIFIED, 0),
                };
                self.send(conn, &ServerResponse::GetPeerAddress { user, ip, port, obf_type: 0, obf_port: 0 });
            }
            ServerRequest::WatchUser { user } => {
                let key = user.to_lowercase();
                let mine = self.conns.get_mut(&conn).expect("present");
                if mine.watching.len() < MAX_WATCHED {
                    mine.watching.insert(key.clone());
                    self.watchers.entry(key.clone()).or_default().insert(me.to_lowercase());
                }
                let reply = match self.conn_of(&user).and_then(|c| self.conns.get(&c)) {
                    Some(c) => ServerResponse::WatchUser {
                        user,
                        exists: true,
                        details: Some(WatchedUser { status: c.status, stats: c.stats, country: Some(String::new()) }),
                    },
                    None if self.known.contains(&self.name_slot(&key)) => ServerResponse::WatchUser {
                        user,
                        exists: true,
                        details: Some(WatchedUser {
                            status: UserStatus::Offline,
                            stats: UserStats::default(),
                            country: None,
                        }),
                    },
                    None => ServerResponse::WatchUser { user, exists: false, details: None },
                };
                self.send(conn, &reply);
            }
            ServerRequest::UnwatchUser { user } => {
                let key = user.to_lowercase();
                self.conns.get_mut(&conn).expect("present").watching.remove(&key);
                if let Some(set) = self.watchers.get_mut(&key) {
                    set.remove(&me.to_lowercase());
                }
            }
            ServerRequest::GetUserStatus { user } => {
                let status =
                    self.conn_of(&user).and_then(|c| self.conns.get(&c)).map_or(UserStatus::Offline, |c| c.status);
                self.send(conn, &ServerResponse::GetUserStatus { user, status, privileged: false });
            }
            ServerRequest::SetStatus { status } => {
                let status = match status {
                    UserStatus::Away => UserStatus::Away,
                    _ => UserStatus::Online,
                };
                self.conns.get_mut(&conn).expect("present").status = status;
                self.push_status(me, status, None);
            }
            ServerRequest::SharedFoldersFiles { dirs, files } => {
                let c = self.conns.get_mut(&conn).expect("present");
                c.stats.dirs = dirs;
                c.stats.files = files;
                let stats = c.stats;
                self.push_stats(me, stats);
            }
            ServerRequest::SendUploadSpeed { speed } => {
                let c = self.conns.get_mut(&conn).expect("present");
                let n = u64::from(c.stats.upload_num);
                c.stats.avg_speed = ((u64::from(c.stats.avg_speed) * n + u64::from(speed)) / (n + 1)) as u32;
                c.stats.upload_num = c.stats.upload_num.saturating_add(1);
            }
            ServerRequest::GetUserStats { user } => {
                let stats =
                    self.conn_of(&user).and_then(|c| self.conns.get(&c)).map_or(UserStats::default(), |c| c.stats);
                self.send(conn, &ServerResponse::GetUserStats { user, stats });
            }
            ServerRequest::CheckPrivileges => self.send(conn, &ServerResponse::CheckPrivileges { seconds_left: 0 }),
            ServerRequest::RoomList => {
                let list = self.room_list();
                self.send(conn, &ServerResponse::RoomList(list));
            }
            ServerRequest::JoinRoom { room, .. } => self.join_room(conn, me, room),
            ServerRequest::LeaveRoom { room } if self.conns[&conn].rooms.contains(&room) => {
                self.leave_room(conn, me, &room, true);
            }
            ServerRequest::LeaveRoom { .. } => {}
            ServerRequest::SayChatroom { room, message } => {
                if message.len() > MAX_MESSAGE || !self.conns[&conn].rooms.contains(&room) {
                    return;
                }
                self.flush_left(&room);
                // One encoded frame for every member, and no copy of the member list.
                let data: Arc<[u8]> =
                    ServerResponse::SayChatroom { room: room.clone(), user: me.to_owned(), message: message.clone() }
                        .encode()
                        .into();
                if let Some(r) = self.rooms.get(&room) {
                    for &member in &r.members {
                        if self.conns.get(&member).is_some_and(|c| c.phase != Phase::Closing) {
                            self.out.push_back(Output::Send { conn: member, data: data.clone() });
                        }
                    }
                }
                self.out.push_back(Output::Event(CentralEvent::RoomMessage { room, user: me.to_owned(), message }));
            }
            ServerRequest::RoomTickerSet { room, ticker } => {
                if !self.conns[&conn].rooms.contains(&room) || ticker.len() > MAX_MESSAGE {
                    return;
                }
                self.flush_left(&room);
                let members = match self.rooms.get_mut(&room) {
                    Some(r) => {
                        if ticker.is_empty() {
                            r.tickers.remove(me);
                        } else {
                            r.tickers.insert(me.to_owned(), ticker.clone());
                        }
                        r.members.clone()
                    }
                    None => return,
                };
                let msg = if ticker.is_empty() {
                    ServerResponse::RoomTickerRemove { room, user: me.to_owned() }
                } else {
                    ServerResponse::RoomTickerAdd { room, user: me.to_owned(), ticker }
                };
                self.send_shared(members, &msg);
            }
            ServerRequest::ConnectToPeer { token, user, conn_type } => {
                let (ip, port) = {
                    let c = &self.conns[&conn];
                    (c.ip, c.port)
                };
                match self.conn_of(&user) {
                    Some(target) => self.send(
                        target,
                        &ServerResponse::ConnectToPeer {
                            user: me.to_owned(),
                            conn_type,
                            ip,
                            port,
                            token,
                            privileged: false,
                            obf_type: 0,
                            obf_port: 0,
                        },
                    ),
                    None => self.send(conn, &ServerResponse::CantConnectToPeer { token }),
                }
            }
            ServerRequest::CantConnectToPeer { token, user } => {
                if let Some(target) = self.conn_of(&user) {
                    self.send(target, &ServerResponse::CantConnectToPeer { token });
                }
            }
            ServerRequest::MessageUser { user, message } => {
                if message.len() > MAX_MESSAGE {
                    return;
                }
                if user.eq_ignore_ascii_case(SERVER_USER) {
                    return self.admin_command(conn, me, &message);
                }
                if validate_username(&user).is_err() {
                    return;
                }
                let id = self.next_id();
                let timestamp = self.unix_now_of(now);
                let stored =
                    StoredMessage { id, timestamp, from: me.to_owned(), to: user.clone(), message: message.clone() };
                self.out.push_back(Output::Event(CentralEvent::StoreMessage(stored)));
                if let Some(target) = self.conn_of(&user) {
                    self.send(
                        target,
                        &ServerResponse::MessageUser { id, timestamp, user: me.to_owned(), message, new_message: true },
                    );
                }
            }
            ServerRequest::MessageAcked { id } => {
                self.out.push_back(Output::Event(CentralEvent::MessageAcked { user: me.to_owned(), id }));
            }
            ServerRequest::FileSearch { token, query } | ServerRequest::WishlistSearch { token, query } => {
                if query.len() > MAX_QUERY || !self.take_search(now, conn) {
                    return;
                }
                self.relay_search(conn, me, token, query);
            }
            ServerRequest::UserSearch { user, token, query } => {
                if query.len() > MAX_QUERY || !self.take_search(now, conn) {
                    return;
                }
                if let Some(target) = self.conn_of(&user) {
                    self.send(target, &ServerResponse::FileSearch { user: me.to_owned(), token, query });
                }
            }
            ServerRequest::RoomSearch { room, token, query } => {
                if query.len() > MAX_QUERY || !self.take_search(now, conn) {
                    return;
                }
                let members: Vec<ConnId> = self
                    .rooms
                    .get(&room)
                    .map(|r| r.members.iter().copied().filter(|c| *c != conn).collect())
                    .unwrap_or_default();
                self.send_shared(members, &ServerResponse::FileSearch { user: me.to_owned(), token, query });
            }
            ServerRequest::EnableRoomInvitations { enabled } => {
                self.send(conn, &ServerResponse::EnableRoomInvitations { enabled })
            }
            ServerRequest::HaveNoParent { no_parent } => self.tree.have_no_parent(now, conn, no_parent),
            ServerRequest::AcceptChildren { accept } => self.tree.accept_children(conn, accept),
            ServerRequest::BranchLevel { level } => self.tree.branch_level(conn, level),
            ServerRequest::BranchRoot { root } => self.tree.branch_root(conn, &root),
            ServerRequest::ChildDepth { depth } => self.tree.child_depth(conn, depth),
            // Pings, interests, obsolete messages: accepted and ignored.
            _ => {}
        }
    }

    /// A global search: to the branch roots inside EmbeddedMessage(93) as a DistribSearch
    /// (they pass it down the tree), and as FileSearch(26) to everybody the tree does not
    /// cover (docs/protocols/soulseek.md, `#search-relay`).
    fn relay_search(&mut self, conn: ConnId, me: &str, token: u32, query: String) {
        let d = self.tree.delivery(conn);
        if !d.roots.is_empty() {
            let body =
                crate::distributed::DistributedMessage::Search { user: me.to_owned(), token, query: query.clone() }
                    .encode_body();
            self.send_shared(d.roots.iter().copied(), &ServerResponse::EmbeddedMessage { code: 3, body });
        }
        let direct_users = d
            .direct
            .iter()
            .take(MAX_LOGGED_RECIPIENTS)
            .filter_map(|c| self.tree.name_of(*c).map(str::to_owned))
            .collect();
        self.send_shared(d.direct.iter().copied(), &ServerResponse::FileSearch { user: me.to_owned(), token, query });
        self.out.push_back(Output::Event(CentralEvent::SearchRelayed {
            user: me.to_owned(),
            token,
            roots: d.roots.len(),
            direct: d.direct.len(),
            direct_users,
        }));
    }

    fn join_room(&mut self, conn: ConnId, me: &str, room: String) {
        if let Err(e) = validate_room_name(&room) {
            return self.say_from_server(conn, &format!("Could not join room {room:?}: {e}"));
        }
        if self.conns[&conn].rooms.contains(&room) {
            return;
        }
        if self.conns[&conn].rooms.len() >= MAX_ROOMS_PER_USER {
            return self.say_from_server(conn, "You are in too many rooms.");
        }
        // Who left before this join is told first: the joiner's member list and these
        // announcements then agree for everybody.
        self.flush_left(&room);
        let members = {
            let r = self.rooms.entry(room.clone()).or_default();
            r.members.push(conn);
            r.members.clone()
        };
        self.conns.get_mut(&conn).expect("present").rooms.insert(room.clone());
        let users: Vec<RoomUser> = members.iter().filter_map(|c| self.room_user(*c)).collect();
        self.send(conn, &ServerResponse::JoinRoom { room: room.clone(), users, private: None });
        let tickers: Vec<(String, String)> =
            self.rooms[&room].tickers.iter().map(|(u, t)| (u.clone(), t.clone())).collect();
        self.send(conn, &ServerResponse::RoomTickers { room: room.clone(), tickers });
        if let Some(me_user) = self.room_user(conn) {
            let others: Vec<ConnId> = members.into_iter().filter(|c| *c != conn).collect();
            self.send_shared(others, &ServerResponse::UserJoinedRoom { room, user: me_user });
        }
        let _ = me;
    }

    fn leave_room(&mut self, conn: ConnId, me: &str, room: &str, reply: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.rooms.remove(room);
        }
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.members.retain(|c| *c != conn);
        if r.members.capacity() > 64 && r.members.len() < r.members.capacity() / 4 {
            // A crowd left a room others stay in: its list gives back the slots.
            r.members.shrink_to(r.members.len() * 2);
        }
        r.tickers.remove(me);
        let empty = r.members.is_empty();
        let frame = ServerResponse::UserLeftRoom { room: room.to_owned(), user: me.to_owned() }.encode();
        if empty {
            self.rooms.remove(room);
        } else if self.cfg.room_leave_batch.is_zero() {
            let members = r.members.clone();
            self.send_data(members, frame.into());
        } else {
            // Batched (see ROOM_LEAVE_BATCH): members still there when it goes out get it.
            let first = r.left.is_empty();
            r.left.extend_from_slice(&frame);
            let full = r.left.len() >= MAX_ROOM_BATCH_BYTES;
            if full {
                self.flush_left(room);
            } else if first {
                self.left_rooms.push(room.to_owned());
                if self.left_due.is_none() {
                    self.left_due = Some(self.now + self.cfg.room_leave_batch);
                }
            }
        }
        if reply {
            self.send(conn, &ServerResponse::LeaveRoom { room: room.to_owned() });
        }
    }

    /// `help`, `users`, `ban USER`, `unban USER`, `kick USER`, `announce TEXT`, `uptime`.
    fn admin_command(&mut self, conn: ConnId, me: &str, line: &str) {
        let is_admin = self.cfg.admins.iter().any(|a| a.eq_ignore_ascii_case(me));
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("").to_ascii_lowercase();
        let rest: Vec<&str> = words.collect();
        if !is_admin {
            return self.say_from_server(conn, "You are not an administrator of this server.");
        }
        match cmd.as_str() {
            "help" | "" => self.say_from_server(
                conn,
                "Commands: help, users, ban <user>, unban <user>, kick <user>, announce <text>, uptime",
            ),
            "users" => {
                let list = self.online_users();
                self.say_from_server(conn, &format!("{} online: {}", list.len(), list.join(", ")));
            }
            "uptime" => {
                let secs = self.now.saturating_duration_since(self.cfg.start).as_secs();
                self.say_from_server(conn, &format!("Up {}h {}m {}s.", secs / 3600, secs / 60 % 60, secs % 60));
            }
            "kick" | "ban" => {
                let Some(user) = rest.first().map(|s| s.to_string()) else {
                    return self.say_from_server(conn, &format!("Usage: {cmd} <user>"));
                };
                if cmd == "ban" {
                    self.banned.insert(user.to_lowercase());
                    self.out.push_back(Output::Event(CentralEvent::Banned { user: user.clone(), by: me.to_owned() }));
                }
                match self.conn_of(&user) {
                    Some(target) => {
                        self.send(target, &ServerResponse::Relogged);
                        self.close(target);
                        self.say_from_server(
                            conn,
                            &format!("{user} was {}.", if cmd == "ban" { "banned" } else { "kicked" }),
                        );
                    }
                    None if cmd == "ban" => self.say_from_server(conn, &format!("{user} is banned.")),
                    None => self.say_from_server(conn, &format!("{user} is not online.")),
                }
            }
            "unban" => {
                let Some(user) = rest.first().map(|s| s.to_string()) else {
                    return self.say_from_server(conn, "Usage: unban <user>");
                };
                self.banned.remove(&user.to_lowercase());
                self.out.push_back(Output::Event(CentralEvent::Unbanned { user: user.clone(), by: me.to_owned() }));
                self.say_from_server(conn, &format!("{user} is no longer banned."));
            }
            "announce" | "announcement" => {
                let text = rest.join(" ");
                let everyone: Vec<ConnId> = self.users.values().copied().collect();
                self.send_shared(everyone, &ServerResponse::AdminMessage { message: text });
            }
            other => self.say_from_server(conn, &format!("Unknown command '{other}'. Try help.")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{FrameKind, FrameReader};

    #[test]
    fn a_sorted_set_holds_its_items_in_little_more_than_their_size() {
        let mut s = SortedSet::new();
        // Inserted out of order (a seeded walk), one repeated.
        let mut x = 7u64;
        let mut all = Vec::new();
        for _ in 0..10_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            all.push(x);
            assert!(s.insert(x));
        }
        assert!(!s.insert(all[123]), "already in");
        assert_eq!(s.len(), 10_000);
        assert!(all.iter().all(|v| s.contains(v)));
        assert!(!s.contains(&1));
        // 8 bytes an item and at most an eighth more (a HashSet<u64>: 16,384 slots of 9).
        assert!(s.heap_bytes() <= 10_000 * 8 * 9 / 8 + 16 * 8, "{} bytes", s.heap_bytes());
        let mut bulk = SortedSet::new();
        bulk.extend(all.iter().copied().chain([all[5]]));
        assert_eq!(bulk.len(), 10_000);
        assert!(all.iter().all(|v| bulk.contains(v)));
        assert_eq!(bulk.heap_bytes(), 10_000 * 8);
    }

    struct T {
        c: Central,
        now: Instant,
        inbox: HashMap<ConnId, Vec<ServerResponse>>,
        closed: Vec<ConnId>,
        events: Vec<CentralEvent>,
    }

    impl T {
        fn new() -> T {
            let now = Instant::now();
            let mut cfg = CentralConfig::new(now, 1_700_000_000);
            cfg.admins = vec!["admin".into()];
            T { c: Central::new(cfg), now, inbox: HashMap::new(), closed: Vec::new(), events: Vec::new() }
        }
        fn pump(&mut self) {
            while let Some(o) = self.c.poll_output() {
                match o {
                    Output::Send { conn, data } => {
                        // One frame, or a batch of UserLeftRoom frames.
                        let mut r = FrameReader::new(FrameKind::Server);
                        r.push(&data);
                        while let Some(f) = r.next_frame().unwrap() {
                            let m = ServerResponse::decode(f.code, &f.body).unwrap();
                            self.inbox.entry(conn).or_default().push(m);
                        }
                        assert_eq!(r.buffered(), 0, "a Send of whole frames");
                    }
                    Output::Close { conn } => self.closed.push(conn),
                    Output::Event(e) => {
                        if let CentralEvent::CheckLogin { conn, user, password } = &e {
                            let d =
                                if password == "wrong" { LoginDecision::InvalidPass } else { LoginDecision::Accept };
                            let _ = user;
                            self.events.push(e.clone());
                            self.c.login_result(self.now, *conn, d);
                            continue;
                        }
                        self.events.push(e)
                    }
                }
            }
        }
        fn send(&mut self, conn: ConnId, req: ServerRequest) {
            self.c.handle_input(self.now, conn, &req.encode());
            self.pump();
        }
        fn take(&mut self, conn: ConnId) -> Vec<ServerResponse> {
            self.inbox.remove(&conn).unwrap_or_default()
        }
        fn login(&mut self, conn: ConnId, user: &str) {
            self.c.accept(self.now, conn, Ipv4Addr::new(127, 0, 0, 1));
            self.send(conn, ServerRequest::login(user, "pw", 160, 2));
            self.send(conn, ServerRequest::SetWaitPort { port: 2234 + conn as u32, obfuscation: None });
        }
    }

    impl T {
        /// Move the clock on and run the timers.
        fn tick(&mut self, secs: u64) {
            self.now += Duration::from_secs(secs);
            self.c.handle_timeout(self.now);
            self.pump();
        }
        fn parents_offered(&mut self, conn: ConnId) -> Option<Vec<String>> {
            self.take(conn).into_iter().rev().find_map(|m| match m {
                ServerResponse::PossibleParents { parents } => Some(parents.into_iter().map(|p| p.user).collect()),
                _ => None,
            })
        }
        fn seek(&mut self, conn: ConnId, accept: bool) {
            self.send(conn, ServerRequest::HaveNoParent { no_parent: true });
            self.send(conn, ServerRequest::AcceptChildren { accept });
        }
        fn adopt(&mut self, conn: ConnId, level: u32, root: &str) {
            self.send(conn, ServerRequest::HaveNoParent { no_parent: false });
            self.send(conn, ServerRequest::BranchLevel { level });
            self.send(conn, ServerRequest::BranchRoot { root: root.into() });
        }
        /// What `conn` got of a search: Some(true) embedded, Some(false) FileSearch.
        fn search_got(&mut self, conn: ConnId) -> Option<bool> {
            self.take(conn).into_iter().find_map(|m| match m {
                ServerResponse::EmbeddedMessage { code: 3, .. } => Some(true),
                ServerResponse::FileSearch { .. } => Some(false),
                _ => None,
            })
        }
    }

    #[test]
    fn searches_go_to_branch_roots_embedded_and_directly_only_to_users_outside_the_tree() {
        let mut t = T::new();
        for (conn, user) in [(1, "alice"), (2, "bob"), (3, "carol"), (4, "dave"), (5, "eve")] {
            t.login(conn, user);
        }
        // Alice asks first: nobody can take her, so she becomes a branch root (no offer).
        t.seek(1, true);
        t.tick(2);
        assert_eq!(t.parents_offered(1), None);
        // Bob is offered alice, takes her; carol is offered alice and bob, shallowest first.
        t.seek(2, true);
        t.tick(2);
        assert_eq!(t.parents_offered(2), Some(vec!["alice".to_string()]));
        t.adopt(2, 1, "alice");
        t.seek(3, false);
        t.tick(2);
        assert_eq!(t.parents_offered(3), Some(vec!["alice".to_string(), "bob".to_string()]));
        t.adopt(3, 2, "alice");
        // Eve (no tree at all) searches: the root gets it embedded, dave (never spoke of
        // the tree) directly, bob and carol nothing from the server.
        for c in 1..=5 {
            t.take(c);
        }
        t.send(5, ServerRequest::FileSearch { token: 7, query: "galway".into() });
        let embedded = t.inbox.get(&1).and_then(|m| {
            m.iter().find_map(|m| match m {
                ServerResponse::EmbeddedMessage { code: 3, body } => Some(body.clone()),
                _ => None,
            })
        });
        assert_eq!(
            crate::distributed::DistributedMessage::decode(3, &embedded.expect("alice got it embedded")).unwrap(),
            crate::distributed::DistributedMessage::Search { user: "eve".into(), token: 7, query: "galway".into() }
        );
        assert_eq!(t.search_got(1), Some(true));
        assert_eq!(t.search_got(2), None, "bob gets it through the tree only");
        assert_eq!(t.search_got(3), None, "carol gets it through the tree only");
        assert_eq!(t.search_got(4), Some(false), "dave directly");
        assert_eq!(t.search_got(5), None);
        assert!(t
            .events
            .iter()
            .any(|e| matches!(e, CentralEvent::SearchRelayed { roots: 1, direct: 1, direct_users, .. }
            if direct_users == &["dave".to_string()])));
        let carol = t.c.tree_users().into_iter().find(|u| u.name == "carol").unwrap();
        assert!(carol.covered && !carol.is_root && carol.level == 2 && carol.direct_searches == 0, "{carol:?}");
        // The root leaves: its branch gets searches directly again (nobody left out).
        t.c.disconnect(1);
        t.pump();
        t.send(5, ServerRequest::FileSearch { token: 8, query: "galway".into() });
        assert_eq!(t.search_got(2), Some(false));
        assert_eq!(t.search_got(3), Some(false));
        assert_eq!(t.search_got(4), Some(false));
        // A parent found again under a root of ours: covered again.
        t.seek(2, true);
        t.tick(2);
        assert_eq!(t.parents_offered(2), None, "nobody to offer: bob is the new root");
        t.adopt(3, 1, "bob");
        t.send(5, ServerRequest::FileSearch { token: 9, query: "galway".into() });
        assert_eq!(t.search_got(2), Some(true));
        assert_eq!(t.search_got(3), None);
    }

    #[test]
    fn roots_never_adopt_each_other_and_nobody_is_offered_its_own_branch() {
        let mut t = T::new();
        for (conn, user) in [(1, "alice"), (2, "bob"), (3, "carol")] {
            t.login(conn, user);
        }
        // Both seek before either accepts children: both become roots, alice first.
        t.seek(1, false);
        t.seek(2, false);
        t.tick(2);
        assert!(t.c.tree_users().iter().all(|u| u.is_root || u.name == "carol"));
        t.send(1, ServerRequest::AcceptChildren { accept: true });
        t.send(2, ServerRequest::AcceptChildren { accept: true });
        // Carol joins bob's branch.
        t.seek(3, true);
        t.tick(2);
        t.take(3);
        t.adopt(3, 1, "bob");
        // The next offers: alice (older) is offered nobody; bob only alice, never carol
        // (in his own branch).
        t.tick(PARENT_OFFER_EVERY_SECS);
        assert_eq!(t.parents_offered(1), None);
        assert_eq!(t.parents_offered(2), Some(vec!["alice".to_string()]));
        // The tree can be turned off: every search goes directly, no offers.
        let mut t = T::new();
        t.c = Central::new(CentralConfig {
            tree: TreeConfig { enabled: false, ..Default::default() },
            ..CentralConfig::new(t.now, 0)
        });
        t.login(1, "alice");
        t.login(2, "bob");
        t.seek(1, true);
        t.tick(60);
        assert_eq!(t.parents_offered(1), None);
        t.send(2, ServerRequest::FileSearch { token: 1, query: "x".into() });
        assert_eq!(t.search_got(1), Some(false));
    }

    #[test]
    fn tree_limits_offers_levels_and_root_names() {
        let mut t = T::new();
        t.c = Central::new(CentralConfig {
            max_registrations_per_ip_per_hour: 0,
            max_sessions_per_ip: 0,
            ..CentralConfig::new(t.now, 0)
        });
        t.login(1, "root");
        t.seek(1, true);
        t.tick(2);
        // Twelve users under the root, all taking children.
        for i in 0..12u64 {
            let conn = 10 + i;
            t.login(conn, &format!("u{i}"));
            t.adopt(conn, 1, "root");
            t.send(conn, ServerRequest::AcceptChildren { accept: true });
        }
        t.send(1, ServerRequest::FileSearch { token: 1, query: "warm".into() });
        t.login(2, "seeker");
        t.seek(2, false);
        t.tick(2);
        let offered = t.parents_offered(2).expect("an offer");
        assert_eq!(offered.len(), crate::tree::MAX_POSSIBLE_PARENTS);
        assert_eq!(offered[0], "root", "the shallowest first");
        // A level deeper than believable, or a root name longer than a user name can be,
        // leaves the user to direct delivery.
        t.adopt(2, crate::tree::MAX_BRANCH_LEVEL + 1, "root");
        t.login(3, "longname");
        t.adopt(3, 2, "root");
        t.send(3, ServerRequest::BranchRoot { root: "x".repeat(crate::login::MAX_USERNAME_CHARS + 1) });
        for c in [2, 3, 10] {
            t.take(c);
        }
        t.send(1, ServerRequest::FileSearch { token: 2, query: "x".into() });
        assert_eq!(t.search_got(2), Some(false), "level over MAX_BRANCH_LEVEL");
        assert_eq!(t.search_got(3), None, "an over-long root name is ignored: the last good one stands");
        assert_eq!(t.search_got(10), None);
    }

    const PARENT_OFFER_EVERY_SECS: u64 = crate::tree::PARENT_OFFER_EVERY.as_secs();

    #[test]
    fn login_reply_comes_first_then_what_clients_expect() {
        let mut t = T::new();
        t.login(1, "alice");
        let got = t.take(1);
        assert!(matches!(&got[0], ServerResponse::LoginSuccess { password_hash, own_ip, .. }
            if password_hash == &password_hash_of("pw") && *own_ip == Ipv4Addr::new(127, 0, 0, 1)));
        let codes: Vec<u32> = got.iter().map(|m| m.code()).collect();
        assert_eq!(codes, vec![1, 64, 83, 84, 104, 69, 160]);
    }

    fn password_hash_of(p: &str) -> String {
        crate::login::password_hash(p)
    }

    #[test]
    fn bad_logins() {
        let mut t = T::new();
        for (conn, user, pass, reason) in [
            (1, "", "pw", "INVALIDUSERNAME"),
            (2, " alice", "pw", "INVALIDUSERNAME"),
            (3, "bob", "", "EMPTYPASSWORD"),
            (4, "bob", "wrong", "INVALIDPASS"),
            (5, "server", "pw", "INVALIDUSERNAME"),
        ] {
            t.c.accept(t.now, conn, Ipv4Addr::LOCALHOST);
            t.send(conn, ServerRequest::login(user, pass, 160, 2));
            match &t.take(conn)[..] {
                [ServerResponse::LoginFailure { reason: r, .. }] => assert_eq!(r, reason, "{user:?}"),
                other => panic!("{user:?}: {other:?}"),
            }
            assert!(t.closed.contains(&conn));
        }
    }

    #[test]
    fn garbage_and_messages_before_login_cost_the_connection() {
        let mut t = T::new();
        t.c.accept(t.now, 1, Ipv4Addr::LOCALHOST);
        t.c.handle_input(t.now, 1, &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
        t.pump();
        assert!(t.closed.contains(&1));
        t.c.accept(t.now, 2, Ipv4Addr::LOCALHOST);
        t.send(2, ServerRequest::FileSearch { token: 1, query: "x".into() });
        assert!(t.closed.contains(&2));
        t.login(3, "alice");
        assert!(!t.closed.contains(&3), "others are not affected");
    }

    #[test]
    fn relogin_sends_relogged_to_the_first_session() {
        let mut t = T::new();
        t.login(1, "alice");
        t.login(2, "alice");
        assert!(t.take(1).contains(&ServerResponse::Relogged));
        assert!(t.closed.contains(&1));
        assert_eq!(t.c.online_users(), vec!["alice"]);
    }

    #[test]
    fn searches_go_to_everybody_else_and_connect_to_peer_is_relayed() {
        let mut t = T::new();
        t.login(1, "alice");
        t.login(2, "bob");
        t.login(3, "carol");
        for c in 1..=3 {
            t.take(c);
        }
        t.send(1, ServerRequest::FileSearch { token: 42, query: "galway".into() });
        for c in [2, 3] {
            assert_eq!(
                t.take(c),
                vec![ServerResponse::FileSearch { user: "alice".into(), token: 42, query: "galway".into() }]
            );
        }
        assert!(t.take(1).is_empty());
        t.send(1, ServerRequest::UserSearch { user: "carol".into(), token: 7, query: "x".into() });
        assert!(t.take(2).is_empty());
        assert_eq!(t.take(3).len(), 1);
        t.send(2, ServerRequest::ConnectToPeer { token: 9, user: "alice".into(), conn_type: "P".into() });
        match &t.take(1)[..] {
            [ServerResponse::ConnectToPeer { user, port, token: 9, ip, .. }] => {
                assert_eq!((user.as_str(), *port, *ip), ("bob", 2236, Ipv4Addr::LOCALHOST));
            }
            other => panic!("{other:?}"),
        }
        t.send(2, ServerRequest::GetPeerAddress { user: "carol".into() });
        assert!(matches!(&t.take(2)[..], [ServerResponse::GetPeerAddress { port: 2237, .. }]));
        t.send(2, ServerRequest::GetPeerAddress { user: "nobody".into() });
        assert!(matches!(&t.take(2)[..], [ServerResponse::GetPeerAddress { port: 0, ip, .. }] if ip.is_unspecified()));
    }

    #[test]
    fn search_flood_is_limited() {
        let mut t = T::new();
        t.login(1, "alice");
        t.login(2, "bob");
        t.take(2);
        for i in 0..50 {
            t.send(1, ServerRequest::FileSearch { token: i, query: "x".into() });
        }
        assert_eq!(t.take(2).len(), 10, "the burst, then nothing");
        t.now += Duration::from_secs(4);
        t.send(1, ServerRequest::FileSearch { token: 99, query: "x".into() });
        assert_eq!(t.take(2).len(), 1);
    }

    #[test]
    fn rooms_private_messages_and_pushes() {
        let mut t = T::new();
        t.login(1, "alice");
        t.login(2, "bob");
        t.take(1);
        t.take(2);
        t.send(1, ServerRequest::JoinRoom { room: "music".into(), private: false });
        assert!(
            matches!(&t.take(1)[..], [ServerResponse::JoinRoom { users, .. }, ServerResponse::RoomTickers { .. }] if users.len() == 1)
        );
        t.send(2, ServerRequest::JoinRoom { room: "music".into(), private: false });
        assert!(matches!(&t.take(1)[..], [ServerResponse::UserJoinedRoom { user, .. }] if user.name == "bob"));
        t.take(2);
        t.send(2, ServerRequest::SayChatroom { room: "music".into(), message: "hi".into() });
        for c in [1, 2] {
            assert_eq!(
                t.take(c),
                vec![ServerResponse::SayChatroom { room: "music".into(), user: "bob".into(), message: "hi".into() }]
            );
        }
        // Stats go to room co-members.
        t.send(2, ServerRequest::SharedFoldersFiles { dirs: 3, files: 30 });
        assert!(matches!(&t.take(1)[..], [ServerResponse::GetUserStats { stats, .. }] if stats.files == 30));
        t.send(1, ServerRequest::MessageUser { user: "bob".into(), message: "psst".into() });
        assert!(
            matches!(&t.take(2)[..], [ServerResponse::MessageUser { user, message, new_message: true, .. }] if user == "alice" && message == "psst")
        );
        assert!(t.events.iter().any(|e| matches!(e, CentralEvent::StoreMessage(m) if m.to == "bob")));
        t.send(2, ServerRequest::LeaveRoom { room: "music".into() });
        assert!(t.take(1).is_empty(), "leaves are announced in batches");
        t.now += ROOM_LEAVE_BATCH;
        assert_eq!(t.c.poll_timeout(), Some(t.now));
        t.c.handle_timeout(t.now);
        t.pump();
        assert!(matches!(&t.take(1)[..], [ServerResponse::UserLeftRoom { user, .. }] if user == "bob"));
        t.c.disconnect(1);
        t.pump();
        assert!(t.c.room_counts().is_empty(), "empty rooms go away");
    }

    #[test]
    fn admin_commands() {
        let mut t = T::new();
        t.login(1, "admin");
        t.login(2, "troll");
        t.take(1);
        t.take(2);
        t.send(2, ServerRequest::MessageUser { user: "server".into(), message: "ban admin".into() });
        assert!(
            matches!(&t.take(2)[..], [ServerResponse::MessageUser { message, .. }] if message.contains("not an administrator"))
        );
        t.send(1, ServerRequest::MessageUser { user: "server".into(), message: "ban troll".into() });
        assert!(t.closed.contains(&2));
        assert!(t.events.contains(&CentralEvent::Banned { user: "troll".into(), by: "admin".into() }));
        t.c.accept(t.now, 3, Ipv4Addr::LOCALHOST);
        t.send(3, ServerRequest::login("troll", "pw", 160, 2));
        assert!(t.take(3).is_empty(), "no answer for banned users");
        assert!(t.closed.contains(&3));
        assert!(t
            .take(1)
            .iter()
            .any(|m| matches!(m, ServerResponse::MessageUser { message, .. } if message == "troll was banned.")));
        t.send(1, ServerRequest::MessageUser { user: "server".into(), message: "users".into() });
        assert!(
            matches!(&t.take(1)[..], [ServerResponse::MessageUser { message, .. }] if message.starts_with("1 online: admin"))
        );
    }

    #[test]
    fn bans_and_the_user_limit_hold_while_passwords_are_checked() {
        let now = Instant::now();
        let mut cfg = CentralConfig::new(now, 0);
        cfg.max_users = 2;
        cfg.admins = vec!["admin".into()];
        let mut c = Central::new(cfg);
        let login = |c: &mut Central, id, u: &str| {
            c.accept(now, id, Ipv4Addr::LOCALHOST);
            c.handle_input(now, id, &ServerRequest::login(u, "pw", 160, 2).encode());
        };
        login(&mut c, 1, "admin");
        c.login_result(now, 1, LoginDecision::Accept);
        login(&mut c, 2, "bob");
        login(&mut c, 3, "carol");
        c.handle_input(
            now,
            1,
            &ServerRequest::MessageUser { user: "server".into(), message: "ban bob".into() }.encode(),
        );
        c.login_result(now, 2, LoginDecision::Accept);
        c.login_result(now, 3, LoginDecision::Accept);
        assert_eq!(c.online_users(), vec!["admin", "carol"], "bob is banned");
        login(&mut c, 4, "dave");
        login(&mut c, 5, "erin");
        c.login_result(now, 4, LoginDecision::Accept);
        c.login_result(now, 5, LoginDecision::Accept);
        assert_eq!(c.online_users().len(), 2, "at most max_users");
    }

    fn login_from(t: &mut T, conn: ConnId, user: &str, ip: [u8; 4]) -> Vec<ServerResponse> {
        t.c.accept(t.now, conn, Ipv4Addr::from(ip));
        t.send(conn, ServerRequest::login(user, "pw", 160, 2));
        t.take(conn)
    }

    fn refusal(got: &[ServerResponse]) -> Option<&str> {
        match got {
            [ServerResponse::LoginFailure { reason, .. }] => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn registrations_per_address_are_rate_limited_and_accounts_still_log_in() {
        let mut t = T::new();
        t.c.cfg.max_registrations_per_ip_per_hour = 3;
        t.c.add_known_user("old");
        for (i, u) in ["u1", "u2", "u3"].into_iter().enumerate() {
            assert!(refusal(&login_from(&mut t, i as u64 + 1, u, [10, 0, 0, 1])).is_none(), "{u}");
        }
        let got = login_from(&mut t, 4, "u4", [10, 0, 0, 1]);
        assert_eq!(refusal(&got), Some(login_failure::TOO_MANY_REGISTRATIONS));
        assert!(t.closed.contains(&4));
        assert!(
            !t.events.iter().any(|e| matches!(e, CentralEvent::CheckLogin { user, .. } if user == "u4")),
            "no account made"
        );
        // Existing accounts (made before, or just now) log in from that address.
        assert!(refusal(&login_from(&mut t, 5, "old", [10, 0, 0, 1])).is_none());
        t.c.disconnect(1);
        assert!(refusal(&login_from(&mut t, 6, "U1", [10, 0, 0, 1])).is_none());
        // Another address registers; the first gets one more after 20 minutes.
        assert!(refusal(&login_from(&mut t, 7, "v1", [10, 0, 0, 2])).is_none());
        t.now += Duration::from_secs(20 * 60 + 1);
        assert!(refusal(&login_from(&mut t, 8, "u5", [10, 0, 0, 1])).is_none());
        assert_eq!(refusal(&login_from(&mut t, 9, "u6", [10, 0, 0, 1])), Some(login_failure::TOO_MANY_REGISTRATIONS));
        t.now += Duration::from_secs(2 * 3600);
        t.c.handle_timeout(t.now);
        assert!(t.c.ip_registrations.is_empty(), "idle addresses are forgotten");
    }

    #[test]
    fn sessions_per_address_are_capped_but_not_for_administrators() {
        let mut t = T::new();
        t.c.cfg.max_sessions_per_ip = 2;
        assert!(refusal(&login_from(&mut t, 1, "a", [10, 0, 0, 1])).is_none());
        assert!(refusal(&login_from(&mut t, 2, "b", [10, 0, 0, 1])).is_none());
        assert_eq!(refusal(&login_from(&mut t, 3, "c", [10, 0, 0, 1])), Some(login_failure::TOO_MANY_SESSIONS));
        assert!(refusal(&login_from(&mut t, 4, "admin", [10, 0, 0, 1])).is_none());
        // A user replacing its own session, and another address, are fine.
        assert!(refusal(&login_from(&mut t, 5, "a", [10, 0, 0, 1])).is_none());
        assert!(t.closed.contains(&1));
        assert!(refusal(&login_from(&mut t, 6, "c", [10, 0, 0, 2])).is_none());
        assert_eq!(t.c.online_users(), vec!["a", "admin", "b", "c"]);
        // One leaves: room for one more.
        t.c.disconnect(2);
        assert!(refusal(&login_from(&mut t, 7, "d", [10, 0, 0, 1])).is_none());
    }

    #[test]
    fn a_huge_frame_before_login_is_refused_at_its_header() {
        let mut t = T::new();
        t.c.accept(t.now, 1, Ipv4Addr::LOCALHOST);
        // The length of a 63 MiB Login frame, and its first bytes.
        let mut bytes = ((63u32 << 20) + 4).to_le_bytes().to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4096]);
        t.c.handle_input(t.now, 1, &bytes);
        t.pump();
        assert!(t.closed.contains(&1), "a frame over {MAX_LOGIN_FRAME} bytes before login");
        // Logged in, a frame may be longer (up to MAX_CLIENT_FRAME) and may come in pieces.
        t.login(2, "alice");
        let mut msg =
            ServerRequest::SayChatroom { room: "r".into(), message: "m".repeat(MAX_LOGIN_FRAME * 2) }.encode();
        let rest = msg.split_off(MAX_LOGIN_FRAME);
        t.c.handle_input(t.now, 2, &msg);
        t.c.handle_input(t.now, 2, &rest);
        t.pump();
        assert!(!t.closed.contains(&2));
        let mut big = ((MAX_CLIENT_FRAME as u32) + 1).to_le_bytes().to_vec();
        big.extend_from_slice(&13u32.to_le_bytes());
        t.c.handle_input(t.now, 2, &big);
        t.pump();
        assert!(t.closed.contains(&2), "a frame over {MAX_CLIENT_FRAME} bytes after login");
    }

    /// Everybody leaves a big room at once (a network drop): the members still there get
    /// every `UserLeftRoom`, in order, in a few shared buffers, instead of one send per
    /// leave per member (N²/2: 499,500 sends for 1,000 members, most to members about to
    /// go; at 10,000 that queued ~1.9 GB in the driver).
    #[test]
    fn a_mass_leave_is_announced_in_a_few_shared_batches() {
        const N: u64 = 1000;
        let mut t = T::new();
        for conn in 1..=N {
            t.c.accept(t.now, conn, Ipv4Addr::new(10, 0, (conn >> 8) as u8, conn as u8));
            t.c.handle_input(t.now, conn, &ServerRequest::login(&format!("u{conn}"), "pw", 160, 2).encode());
            while let Some(o) = t.c.poll_output() {
                if let Output::Event(CentralEvent::CheckLogin { conn, .. }) = o {
                    t.c.login_result(t.now, conn, LoginDecision::Accept);
                }
            }
            t.c.handle_input(t.now, conn, &ServerRequest::JoinRoom { room: "big".into(), private: false }.encode());
            while t.c.poll_output().is_some() {}
        }
        let mut sends = 0;
        let mut left: HashMap<ConnId, Vec<String>> = HashMap::new();
        let mut count = |c: &mut Central, left: &mut HashMap<ConnId, Vec<String>>| {
            while let Some(o) = c.poll_output() {
                if let Output::Send { conn, data } = o {
                    sends += 1;
                    let mut r = FrameReader::new(FrameKind::Server);
                    r.push(&data);
                    while let Some(f) = r.next_frame().unwrap() {
                        match ServerResponse::decode(f.code, &f.body).unwrap() {
                            ServerResponse::UserLeftRoom { room, user } if room == "big" => {
                                left.entry(conn).or_default().push(user)
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                }
            }
        };
        // All but the last ten leave, a few milliseconds apart.
        for conn in 1..=N - 10 {
            if conn % 100 == 0 {
                t.now += Duration::from_millis(30);
                if t.c.poll_timeout().is_some_and(|d| d <= t.now) {
                    t.c.handle_timeout(t.now);
                }
            }
            t.c.disconnect(conn);
            count(&mut t.c, &mut left);
        }
        t.now += ROOM_LEAVE_BATCH;
        t.c.handle_timeout(t.now);
        count(&mut t.c, &mut left);
        let want: Vec<String> = (1..=N - 10).map(|c| format!("u{c}")).collect();
        for conn in N - 9..=N {
            assert_eq!(left.get(&conn), Some(&want), "member {conn} heard every leave, in order");
        }
        assert!(sends <= 20 * N, "{sends} sends for {N} leaves");
        assert_eq!(t.c.poll_timeout(), None, "nothing left to send");
    }

    /// Batched leaves never reach a member after something that came later: a line or a
    /// join in the room sends the batch first, and a member who joins later is not told of
    /// leaves before its time.
    #[test]
    fn batched_leaves_keep_their_order_with_lines_and_joins() {
        let mut t = T::new();
        for (c, u) in [(1, "a"), (2, "b"), (3, "c")] {
            t.login(c, u);
            t.send(c, ServerRequest::JoinRoom { room: "r".into(), private: false });
        }
        for c in 1..=3 {
            t.take(c);
        }
        t.send(3, ServerRequest::LeaveRoom { room: "r".into() });
        t.send(2, ServerRequest::SayChatroom { room: "r".into(), message: "hi".into() });
        assert_eq!(
            t.take(1),
            vec![
                ServerResponse::UserLeftRoom { room: "r".into(), user: "c".into() },
                ServerResponse::SayChatroom { room: "r".into(), user: "b".into(), message: "hi".into() },
            ]
        );
        t.send(2, ServerRequest::LeaveRoom { room: "r".into() });
        t.login(4, "d");
        t.take(4);
        t.send(4, ServerRequest::JoinRoom { room: "r".into(), private: false });
        assert!(
            matches!(&t.take(1)[..], [ServerResponse::UserLeftRoom { user, .. }, ServerResponse::UserJoinedRoom { user: j, .. }] if user == "b" && j.name == "d")
        );
        assert!(
            matches!(&t.take(4)[..], [ServerResponse::JoinRoom { users, .. }, ServerResponse::RoomTickers { .. }] if users.len() == 2)
        );
    }

    #[test]
    fn login_timeout() {
        let mut t = T::new();
        t.c.accept(t.now, 1, Ipv4Addr::LOCALHOST);
        t.c.handle_timeout(t.now + LOGIN_TIMEOUT);
        t.pump();
        assert!(t.closed.contains(&1));
    }
}
