//! The client side of Soulseek as a sans-IO state machine over many connections:
//! [`ClientSession`] — the counterpart of NMDC's `HubSession` and of our server's
//! [`crate::central::Central`].
//!
//! One session is one login on one server plus every peer connection that login opens or
//! accepts. The driver owns sockets and files only:
//!
//! - it connects to the server and calls [`ClientSession::server_connected`]; it accepts
//!   connections on the peer port and calls [`ClientSession::accepted`];
//! - it dials what [`Output::Dial`] asks and reports [`ClientSession::connected`] or
//!   [`ClientSession::connect_failed`]; it feeds bytes ([`ClientSession::handle_input`]),
//!   closes ([`ClientSession::closed`]) and time ([`ClientSession::handle_timeout`] at
//!   [`ClientSession::poll_timeout`]);
//! - it drains [`ClientSession::poll_output`]: bytes to write, connections to dial or
//!   close, and [`SessionEvent`]s — among them the questions only it can answer (is this
//!   file shared, where is it in our queue: [`SessionEvent::UploadRequested`],
//!   [`SessionEvent::PlaceRequested`], [`SessionEvent::SearchRequest`],
//!   [`SessionEvent::PeerRequest`]), answered by calling the session back.
//!
//! An `F` connection, once both sides know which transfer it carries, is handed to the
//! driver ([`SessionEvent::DownloadConnected`], [`SessionEvent::UploadConnected`]) and the
//! session forgets it: file bytes never pass through here.
//!
//! The orchestration (`docs/protocols/soulseek.md`, section `#client-session`):
//!
//! - **Peer connections**: a message for a user goes on that user's current `P`
//!   connection, or waits in an outbox while one is opened: direct first (GetPeerAddress,
//!   dial, PeerInit), then indirect (ConnectToPeer through the server, the peer connects
//!   to us and sends PierceFireWall with our token) when the direct way fails or takes
//!   [`DIRECT_CONNECT_WAIT`]; the first to work wins, all within [`PEER_CONNECT_WAIT`].
//! - **Downloads**: QueueUpload, sent again on a fresh connection after each of
//!   [`QUEUE_RESENDS`] without an answer (the first may have gone into a connection the
//!   uploader was closing); then up to [`TRANSFER_WAIT`] for the uploader's
//!   TransferRequest, asking PlaceInQueueRequest when it lapses (an answer within
//!   [`PLACE_WAIT`] restarts the wait); a TransferRequest is matched only to a download
//!   still waiting for one, and its size checked against the size the user chose ("peer
//!   offered N bytes of a file of M"); its `F` connection is matched by token and user.
//!   A download that ends is forgotten at once: a later attempt at the same file never
//!   meets its leftovers.
//! - **Uploads**: the driver decides (slots, queue); a granted upload's TransferRequest is
//!   sent again on a fresh connection after each of [`ANSWER_WAITS`]; the peer's allowed
//!   TransferResponse opens an `F` connection (direct, then indirect) that starts with
//!   our token.
//! - **Distributed network** (`docs/protocols/soulseek.md`, `#distributed-client`): a
//!   parent taken from PossibleParents over a `D` connection, searches from it (or
//!   embedded by the server when we are a branch root) answered and passed to at most
//!   [`SessionConfig::max_children`] children; see the `distrib` submodule.
//! - **Limits** on what peers send: [`PEER_INIT_TIMEOUT`], [`MAX_PEER_MESSAGE`],
//!   [`PEER_FRAME_TIMEOUT`], [`PEER_BUFFER_BUDGET`] over all connections together,
//!   [`MAX_PEER_INFLATED`], and codes outside [`P_CODES_HANDLED`] skipped undecoded.
//!
//! Nothing here reads a clock or draws a random number: time comes in as `now`, and the
//! first token from [`SessionConfig::first_token`].

use crate::framing::{FrameKind, FrameReader};
use crate::peer::{PeerInit, PeerMessage, SearchResponse, SharedFileList, TransferDirection, TransferReply, UserInfo};
use crate::server::{RoomUser, ServerRequest, ServerResponse};
use crate::shares::{SharedDirectory, SharedFile};
use crate::UserStatus;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

mod distrib;
pub use distrib::{DistributedStatus, DEFAULT_MAX_CHILDREN, MAX_PARENT_CANDIDATES};

/// A connection's id, chosen by the session (for the server connection: [`SERVER`]).
pub type ConnId = u64;
/// The server connection.
pub const SERVER: ConnId = 0;
/// A download's id, chosen by the session ([`ClientSession::download`]).
pub type DownloadId = u64;
/// An upload's id, chosen by the driver ([`ClientSession::upload_granted`]).
pub type UploadId = u64;

/// How long connecting to a peer may take, direct and indirect together.
pub const PEER_CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long the direct way alone is tried before the indirect one (ConnectToPeer) is
/// asked too: a firewalled peer's address swallows our SYNs without an answer.
pub const DIRECT_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long a download waits for the uploader's TransferRequest (then asks its place),
/// and, once allowed, for its `F` connection.
pub const TRANSFER_WAIT: Duration = Duration::from_secs(60);
/// Pauses without an answer after which a download's QueueUpload is sent again, each time
/// on a fresh connection.
pub const QUEUE_RESENDS: [Duration; 2] = [Duration::from_secs(4), Duration::from_secs(8)];
/// Pauses after an upload's TransferRequest before asking again on a fresh connection;
/// after the last one the upload is given up ([`SessionEvent::UploadUnanswered`]).
pub const ANSWER_WAITS: [Duration; 3] = [Duration::from_secs(10), Duration::from_secs(20), Duration::from_secs(30)];
/// How long a PlaceInQueueRequest may wait for its answer.
pub const PLACE_WAIT: Duration = Duration::from_secs(10);
/// How long a browse (SharedFileListRequest, FolderContentsRequest) may wait for its answer.
pub const BROWSE_WAIT: Duration = Duration::from_secs(120);
/// How long a connection to our peer port may take to identify itself (its whole first
/// frame, PeerInit or PierceFireWall, and on an `F` connection the transfer token after
/// it). That frame is at most [`crate::limits::MAX_INIT_FRAME`] (16 KiB).
pub const PEER_INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest message taken on a `P` connection (`len` field). Anyone can open one (a
/// PeerInit names a user but proves nothing), and a client receives only small messages
/// there except shared file lists it asked for; 16 MiB holds a compressed list of a few
/// hundred thousand files. The protocol's own cap, [`crate::limits::MAX_FRAME`], is 64 MiB.
pub const MAX_PEER_MESSAGE: usize = 16 * 1024 * 1024;
/// How long one `P` message may take to arrive once its first bytes are in: a peer that
/// starts a frame and stops is dropped instead of holding its buffer.
pub const PEER_FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of unfinished `P` messages held or announced (a frame counts whole from its
/// length field on) across all peer connections together; a connection whose input would
/// go past it is dropped. Without it, N connections could each hold up to
/// [`MAX_PEER_MESSAGE`]; with it, two messages of that size still arrive at once.
pub const PEER_BUFFER_BUDGET: usize = 2 * (4 + MAX_PEER_MESSAGE);
/// Largest inflated compressed `P` message decoded unasked-for-size (search results: a
/// reply of a few thousand files inflates to well under a MiB). Without it a 16 MiB zlib
/// bomb would inflate to [`crate::limits::MAX_DECOMPRESSED`] (128 MiB).
pub const MAX_PEER_INFLATED: usize = 4 * 1024 * 1024;
/// Largest inflated shared file list or folder contents we asked for (a browse).
pub const MAX_BROWSE_INFLATED: usize = 64 * 1024 * 1024;
/// `P` codes acted on always; 5 and 37 (share lists, folder contents) only while a browse
/// of that user waits for them. Others are skipped undecoded.
pub const P_CODES_HANDLED: [u32; 11] = [4, 9, 15, 36, 40, 41, 43, 44, 46, 50, 51];
/// Searches of ours whose results are still taken; the oldest is forgotten beyond it.
pub const MAX_OPEN_SEARCHES: usize = 1024;
/// Messages waiting for one user's `P` connection to open; more are dropped.
pub const MAX_OUTBOX: usize = 256;
/// How often the server is pinged (ServerPing) once logged in.
pub const SERVER_PING_INTERVAL: Duration = Duration::from_secs(300);

/// Client settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our user name.
    pub user: String,
    /// Our password.
    pub password: String,
    /// Where we accept peer connections (told to the server: SetWaitPort).
    pub listen_port: u16,
    /// Login version numbers.
    pub major_version: u32,
    /// Login minor version.
    pub minor_version: u32,
    /// The first token this session hands out (searches, connections, transfers); the
    /// driver draws it at random so two sessions of one user do not collide.
    pub first_token: u32,
    /// Shared folders and files (SharedFoldersFiles after login).
    pub shared: (u32, u32),
    /// Distributed children we pass searches to, at most ([`DEFAULT_MAX_CHILDREN`]; 0:
    /// none, we only take a parent).
    pub max_children: usize,
}

/// What a peer asked of our share (answer with [`ClientSession::reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRequest {
    /// GetSharedFileList(4).
    SharedFileList,
    /// UserInfoRequest(15).
    UserInfo,
    /// FolderContentsRequest(36).
    FolderContents {
        /// Token to answer with.
        token: u32,
        /// The folder.
        folder: String,
    },
}

/// What the session tells the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The server accepted our login.
    LoggedIn,
    /// The server refused our login (it closes the connection).
    LoginFailed {
        /// Its reason.
        reason: String,
    },
    /// Someone logged in as us elsewhere: the server ends this session.
    Relogged,
    /// Results of one of our searches from one user.
    SearchResults {
        /// The search ([`ClientSession::search`]'s token).
        token: u32,
        /// Who has them.
        user: String,
        /// The files (public, then private).
        files: Vec<SharedFile>,
        /// Whether the user has a free slot.
        free_slot: bool,
        /// The user's queue length.
        queue: u32,
        /// The user's average upload speed, bytes/s.
        speed: u32,
    },
    /// Someone searches: answer with [`ClientSession::answer_search`] if we have matches.
    SearchRequest {
        /// Who.
        user: String,
        /// Their token.
        token: u32,
        /// The query.
        query: String,
    },
    /// A peer asks about our share: answer with [`ClientSession::reply`].
    PeerRequest {
        /// Who.
        user: String,
        /// What.
        request: PeerRequest,
    },
    /// A private message.
    PrivateMessage {
        /// From.
        user: String,
        /// Text.
        text: String,
    },
    /// What the server said of a user we asked about ([`ClientSession::ask_presence`]):
    /// whether the account exists and, when it does, its status.
    Presence {
        /// The user, as the server spells it.
        user: String,
        /// Whether the server knows the account.
        exists: bool,
        /// Its status (present when it exists).
        status: Option<UserStatus>,
    },
    /// A line in a room we are in.
    RoomMessage {
        /// Room.
        room: String,
        /// Speaker.
        user: String,
        /// Text.
        text: String,
    },
    /// We are in a room now.
    JoinedRoom {
        /// Room.
        room: String,
    },
    /// The uploader told us where a download stands in its queue (1 = next).
    DownloadPlace {
        /// The download.
        id: DownloadId,
        /// Its place.
        place: u32,
    },
    /// A user told us where one of its files stands in its queue for us (every
    /// PlaceInQueueResponse; a download's also comes as [`SessionEvent::DownloadPlace`]).
    QueuePlace {
        /// Whose queue.
        user: String,
        /// The file.
        filename: String,
        /// Its place (1 = next).
        place: u32,
    },
    /// The uploader's `F` connection for a download is here: write the `u64` offset, then
    /// read `size - offset` bytes (`rest` holds the first of them, if any came with the
    /// token). The session has forgotten the download and the connection.
    DownloadConnected {
        /// The download.
        id: DownloadId,
        /// Its connection (now the driver's alone).
        conn: ConnId,
        /// The size to read up to (the user's choice when given, else the uploader's).
        size: u64,
        /// Bytes after the token.
        rest: Vec<u8>,
    },
    /// A download ended without a transfer (the session has forgotten it).
    DownloadFailed {
        /// The download.
        id: DownloadId,
        /// Why, for the user.
        why: String,
    },
    /// A peer asks for one of our files (QueueUpload): answer with
    /// [`ClientSession::upload_granted`] (now or when a slot frees),
    /// [`ClientSession::upload_refused`], or nothing (queued).
    UploadRequested {
        /// Who.
        user: String,
        /// The virtual path.
        filename: String,
    },
    /// A peer asks where its file stands in our queue: answer with
    /// [`ClientSession::place_reply`] if it is queued.
    PlaceRequested {
        /// Who.
        user: String,
        /// The virtual path.
        filename: String,
    },
    /// A granted upload's `F` connection is open and our token written: read the `u64`
    /// offset, then send the file from there. The session has forgotten the upload and
    /// the connection.
    UploadConnected {
        /// The upload.
        id: UploadId,
        /// Its connection (now the driver's alone).
        conn: ConnId,
    },
    /// A granted upload will not happen (refused, unreachable).
    UploadFailed {
        /// The upload.
        id: UploadId,
        /// Why.
        why: String,
    },
    /// A granted upload's TransferRequest was never answered: its slot's hold may lapse.
    UploadUnanswered {
        /// The upload.
        id: UploadId,
    },
    /// A user's shared file list ([`ClientSession::browse`]).
    Browsed {
        /// Whose.
        user: String,
        /// The list.
        list: SharedFileList,
    },
    /// A folder's contents ([`ClientSession::folder_contents`]).
    FolderContents {
        /// Whose.
        user: String,
        /// The request's token.
        token: u32,
        /// The folder.
        folder: String,
        /// It and its subfolders.
        dirs: Vec<SharedDirectory>,
    },
    /// A browse or folder request got no answer.
    BrowseFailed {
        /// Whose.
        user: String,
        /// Why.
        why: String,
    },
    /// Our place in the distributed network changed (a parent taken or lost, a child
    /// taken or gone, the server made us a branch root).
    DistributedChanged(DistributedStatus),
    /// A peer connection was dropped for breaking a rule (for logs).
    PeerDropped {
        /// The connection.
        conn: ConnId,
        /// Why.
        why: String,
    },
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to `addr` as `conn`; then call [`ClientSession::connected`] or
    /// [`ClientSession::connect_failed`].
    Dial {
        /// The id it will have.
        conn: ConnId,
        /// Where.
        addr: SocketAddrV4,
    },
    /// Write these bytes to this connection.
    Send {
        /// The connection ([`SERVER`] for the server).
        conn: ConnId,
        /// Whole frames (or, on an `F` connection, the bare token).
        data: Vec<u8>,
    },
    /// Close this connection after what was written to it.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Something for the driver.
    Event(SessionEvent),
}

/// `P`, `F` or `D` (distributed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    P,
    F,
    D,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::P => "P",
            Kind::F => "F",
            Kind::D => "D",
        }
    }
}

/// What a connection is doing.
#[derive(Debug)]
enum ConnState {
    /// Being dialled for one of our attempts (direct way).
    DialDirect { attempt: u32 },
    /// Being dialled to answer a peer's ConnectToPeer (we send PierceFireWall).
    DialPierce { token: u32, user: String, kind: Kind },
    /// Accepted: waiting for PeerInit or PierceFireWall.
    AwaitInit { reader: FrameReader, deadline: Instant },
    /// An `F` connection from `user`: waiting for the uploader's `u32` token.
    AwaitToken { user: String, have: Vec<u8>, deadline: Instant },
    /// A `P` connection with `user`.
    Peer { user: String, reader: FrameReader, frame_deadline: Option<Instant> },
    /// A `D` connection with `user` (see [`distrib`]).
    Distrib { user: String, reader: FrameReader, frame_deadline: Option<Instant>, role: distrib::Role },
}

/// Why we open a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The user's `P` connection (the outbox waits for it).
    P,
    /// An upload's `F` connection.
    Upload(UploadId),
    /// A `D` connection to a would-be parent.
    Parent,
}

/// One of our attempts to connect to a user, keyed by its token.
#[derive(Debug)]
struct Attempt {
    user: String,
    purpose: Purpose,
    /// When the whole attempt gives up.
    deadline: Instant,
    /// When the indirect way is asked too (None once asked).
    indirect_at: Option<Instant>,
    /// The direct dial, while it runs.
    dialing: Option<ConnId>,
    direct_failed: bool,
    indirect_failed: bool,
    /// Still waiting for GetPeerAddress.
    want_address: bool,
}

impl Attempt {
    fn kind(&self) -> Kind {
        match self.purpose {
            Purpose::P => Kind::P,
            Purpose::Upload(_) => Kind::F,
            Purpose::Parent => Kind::D,
        }
    }
}

/// Who is waiting for a message in a user's outbox (told when the connection fails).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Download(DownloadId),
    Upload(UploadId),
    Browse,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DlState {
    /// QueueUpload sent; `resends` of [`QUEUE_RESENDS`] used so far.
    Queueing { resends: usize },
    /// Waiting for TransferRequest.
    Waiting,
    /// PlaceInQueueRequest sent after a [`TRANSFER_WAIT`] without TransferRequest.
    AskingPlace,
    /// TransferRequest allowed: waiting for the `F` connection with this token.
    Offered { token: u32, size: u64 },
}

#[derive(Debug)]
struct Download {
    user: String,
    path: String,
    expected: Option<u64>,
    state: DlState,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpState {
    /// TransferRequest sent; `sends` of [`ANSWER_WAITS`] used so far.
    Offering { sends: usize },
    /// Allowed: opening the `F` connection (attempt token).
    Connecting,
}

#[derive(Debug)]
struct Upload {
    user: String,
    filename: String,
    size: u64,
    token: u32,
    state: UpState,
    deadline: Option<Instant>,
}

/// A browse waiting for its answer.
#[derive(Debug)]
struct Browse {
    user: String,
    /// None: the whole list; Some: a folder request's token.
    token: Option<u32>,
    deadline: Instant,
}

/// The Soulseek client session. See the module documentation.
#[derive(Debug)]
pub struct ClientSession {
    cfg: SessionConfig,
    next_token: u32,
    next_conn: ConnId,
    next_download: DownloadId,
    server_reader: FrameReader,
    logged_in: bool,
    ping_at: Option<Instant>,
    conns: HashMap<ConnId, ConnState>,
    /// Bytes buffered by `P` and init readers together ([`PEER_BUFFER_BUDGET`]).
    buffered: usize,
    /// Lower-case user → the `P` connection messages to them go on.
    peers: HashMap<String, ConnId>,
    /// Lower-case user → messages waiting for a `P` connection.
    outbox: HashMap<String, Vec<(Origin, Vec<u8>)>>,
    /// Lower-case user → the token of our `P` attempt under way.
    p_attempts: HashMap<String, u32>,
    attempts: HashMap<u32, Attempt>,
    downloads: HashMap<DownloadId, Download>,
    uploads: HashMap<UploadId, Upload>,
    browses: Vec<Browse>,
    searches: VecDeque<u32>,
    /// The members of each room we are in (JoinRoom's list, then UserJoinedRoom and
    /// UserLeftRoom), by lower-case name; at most [`MAX_ROOM_MEMBERS`] each.
    rooms: HashMap<String, BTreeMap<String, RoomUser>>,
    wishlist_interval: Duration,
    distrib: distrib::Distrib,
    out: VecDeque<Output>,
}

/// The wishlist interval until the server gives one (Soulseek's usual 12 minutes).
pub const DEFAULT_WISHLIST_INTERVAL: Duration = Duration::from_secs(720);
/// The shortest wishlist interval taken from a server (one that says 0 would have us
/// search without pause).
pub const MIN_WISHLIST_INTERVAL: Duration = Duration::from_secs(60);

/// Members kept per room (the server's list of a huge room is cut there; a member who
/// joins later is still listed while there is room).
pub const MAX_ROOM_MEMBERS: usize = 20_000;

fn lc(user: &str) -> String {
    user.to_lowercase()
}

/// The size a download goes on with, given the size the user chose (`expected`) and the
/// one the uploader's TransferRequest announced; or why it cannot go on. Without a chosen
/// size the announced one is taken.
pub fn offered_size(expected: Option<u64>, announced: Option<u64>) -> Result<u64, String> {
    match (expected, announced) {
        (Some(m), Some(n)) if n != m => Err(format!("peer offered {n} bytes of a file of {m}")),
        (Some(m), _) => Ok(m),
        (None, Some(n)) => Ok(n),
        (None, None) => Err("the peer did not say how large the file is".into()),
    }
}

impl ClientSession {
    /// A session, not yet connected.
    pub fn new(cfg: SessionConfig) -> ClientSession {
        ClientSession {
            next_token: cfg.first_token,
            cfg,
            next_conn: SERVER + 1,
            next_download: 1,
            server_reader: FrameReader::new(FrameKind::Server),
            logged_in: false,
            ping_at: None,
            conns: HashMap::new(),
            buffered: 0,
            peers: HashMap::new(),
            outbox: HashMap::new(),
            p_attempts: HashMap::new(),
            attempts: HashMap::new(),
            downloads: HashMap::new(),
            uploads: HashMap::new(),
            browses: Vec::new(),
            rooms: HashMap::new(),
            wishlist_interval: DEFAULT_WISHLIST_INTERVAL,
            searches: VecDeque::new(),
            distrib: distrib::Distrib::default(),
            out: VecDeque::new(),
        }
    }

    /// Whether the server accepted our login.
    pub fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    /// Downloads under way (waiting for the uploader or its connection).
    pub fn downloads(&self) -> usize {
        self.downloads.len()
    }

    /// The members of `room` (empty when we are not in it), by name.
    pub fn room_members(&self, room: &str) -> Vec<RoomUser> {
        self.rooms.get(room).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// The rooms we are in.
    pub fn joined_rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// Peer connections the session tracks (not those handed to the driver).
    pub fn peer_connections(&self) -> usize {
        self.conns.len()
    }

    // ---- inputs ----------------------------------------------------------------------

    /// The server connection is open: Login goes out.
    pub fn server_connected(&mut self, _now: Instant) {
        let login =
            ServerRequest::login(&self.cfg.user, &self.cfg.password, self.cfg.major_version, self.cfg.minor_version);
        self.server(login);
    }

    /// A connection accepted on our peer port; returns its id.
    pub fn accepted(&mut self, now: Instant) -> ConnId {
        let conn = self.conn_id();
        let reader = FrameReader::new(FrameKind::PeerInit);
        self.conns.insert(conn, ConnState::AwaitInit { reader, deadline: now + PEER_INIT_TIMEOUT });
        conn
    }

    /// A dial ([`Output::Dial`]) worked.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        match self.conns.remove(&conn) {
            Some(ConnState::DialDirect { attempt }) => {
                let Some(a) = self.attempts.get_mut(&attempt) else {
                    // The attempt is over (the indirect way won, or it gave up).
                    self.out.push_back(Output::Close { conn });
                    return;
                };
                a.dialing = None;
                let init = PeerInit::PeerInit {
                    user: self.cfg.user.clone(),
                    conn_type: a.kind().as_str().into(),
                    token: attempt,
                };
                self.send(conn, init.encode());
                self.established(now, attempt, conn);
            }
            Some(ConnState::DialPierce { token, user, kind }) => {
                self.send(conn, PeerInit::PierceFireWall { token }.encode());
                self.typed(now, conn, user, kind, Vec::new(), now + PEER_INIT_TIMEOUT);
            }
            Some(other) => {
                self.conns.insert(conn, other);
            }
            // A dial the session gave up on (the other way won, or the attempt ended).
            None => self.out.push_back(Output::Close { conn }),
        }
    }

    /// A dial failed.
    pub fn connect_failed(&mut self, now: Instant, conn: ConnId) {
        match self.conns.remove(&conn) {
            Some(ConnState::DialDirect { attempt }) => {
                if let Some(a) = self.attempts.get_mut(&attempt) {
                    a.dialing = None;
                    a.direct_failed = true;
                }
                self.direct_gone(now, attempt);
            }
            Some(ConnState::DialPierce { token, user, .. }) => {
                self.server(ServerRequest::CantConnectToPeer { token, user });
            }
            Some(other) => {
                self.conns.insert(conn, other);
            }
            None => {}
        }
    }

    /// A connection closed (by the peer, or after [`Output::Close`]). For [`SERVER`]: the
    /// session is over.
    pub fn closed(&mut self, now: Instant, conn: ConnId) {
        if conn == SERVER {
            self.logged_in = false;
            self.ping_at = None;
            self.rooms.clear();
            self.distrib_logged_out();
            return;
        }
        if matches!(self.conns.get(&conn), Some(ConnState::DialDirect { .. })) {
            return self.connect_failed(now, conn);
        }
        self.forget_conn(conn);
    }

    /// Bytes from a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        if conn == SERVER {
            return self.server_input(now, bytes);
        }
        let Some(state) = self.conns.get_mut(&conn) else { return };
        match state {
            ConnState::AwaitInit { reader, deadline } => {
                let before = reader.committed();
                reader.push(bytes);
                let deadline = *deadline;
                let got = match reader.next_frame() {
                    // The init reader is done with: what follows belongs to the connection.
                    Ok(Some(f)) => Ok(Some((f, reader.take_rest()))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                let after = reader.committed();
                self.recount(before, after);
                if self.over_budget(conn) {
                    return;
                }
                match got {
                    Ok(None) => {}
                    Ok(Some((f, rest))) => match PeerInit::from_frame(&f) {
                        Ok(init) => self.on_init(now, conn, init, rest, deadline),
                        Err(e) => self.drop_conn(conn, format!("bad peer-init: {e}")),
                    },
                    Err(e) => self.drop_conn(conn, format!("bad peer-init frame: {e}")),
                }
            }
            ConnState::AwaitToken { have, .. } => {
                have.extend_from_slice(bytes);
                if have.len() >= 4 {
                    self.f_token(now, conn);
                }
            }
            ConnState::Peer { reader, .. } => {
                let before = reader.committed();
                reader.push(bytes);
                let after = reader.committed();
                self.recount(before, after);
                if self.over_budget(conn) {
                    return;
                }
                self.peer_frames(now, conn);
            }
            ConnState::Distrib { reader, .. } => {
                let before = reader.committed();
                reader.push(bytes);
                let after = reader.committed();
                self.recount(before, after);
                if self.over_budget(conn) {
                    return;
                }
                self.d_frames(now, conn);
            }
            ConnState::DialDirect { .. } | ConnState::DialPierce { .. } => {}
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ping_at.is_some_and(|t| now >= t) {
            self.server(ServerRequest::ServerPing);
            self.ping_at = Some(now + SERVER_PING_INTERVAL);
        }
        // Connections that took too long.
        let late: Vec<(ConnId, &'static str)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| match c {
                ConnState::AwaitInit { deadline, .. } | ConnState::AwaitToken { deadline, .. } if now >= *deadline => {
                    Some((id, "no peer-init within the init timeout"))
                }
                ConnState::Peer { frame_deadline: Some(d), .. }
                | ConnState::Distrib { frame_deadline: Some(d), .. }
                    if now >= *d =>
                {
                    Some((id, "a message did not arrive whole in time"))
                }
                _ => None,
            })
            .collect();
        for (conn, why) in late {
            self.drop_conn(conn, why.into());
        }
        // Connection attempts.
        let tokens: Vec<u32> = self.attempts.keys().copied().collect();
        for t in tokens {
            let Some(a) = self.attempts.get_mut(&t) else { continue };
            if now >= a.deadline {
                self.attempt_failed(now, t, "timed out");
            } else if a.indirect_at.is_some_and(|at| now >= at) {
                self.ask_indirect(t);
            }
        }
        // Downloads.
        let ids: Vec<DownloadId> =
            self.downloads.iter().filter(|(_, d)| now >= d.deadline).map(|(&id, _)| id).collect();
        for id in ids {
            self.download_timer(now, id);
        }
        // Uploads.
        let ids: Vec<UploadId> =
            self.uploads.iter().filter(|(_, u)| u.deadline.is_some_and(|d| now >= d)).map(|(&id, _)| id).collect();
        for id in ids {
            self.upload_timer(now, id);
        }
        // Browses.
        let (late, keep): (Vec<Browse>, Vec<Browse>) =
            std::mem::take(&mut self.browses).into_iter().partition(|b| now >= b.deadline);
        self.browses = keep;
        for b in late {
            self.event(SessionEvent::BrowseFailed { user: b.user, why: "no answer".into() });
        }
    }

    /// The earliest instant [`ClientSession::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| match c {
            ConnState::AwaitInit { deadline, .. } | ConnState::AwaitToken { deadline, .. } => Some(*deadline),
            ConnState::Peer { frame_deadline, .. } | ConnState::Distrib { frame_deadline, .. } => *frame_deadline,
            _ => None,
        });
        let attempts = self.attempts.values().map(|a| a.indirect_at.unwrap_or(a.deadline).min(a.deadline));
        let downloads = self.downloads.values().map(|d| d.deadline);
        let uploads = self.uploads.values().filter_map(|u| u.deadline);
        let browses = self.browses.iter().map(|b| b.deadline);
        conns.chain(attempts).chain(downloads).chain(uploads).chain(browses).chain(self.ping_at).min()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ---- commands --------------------------------------------------------------------

    /// Search the network; results come as [`SessionEvent::SearchResults`] with the
    /// returned token.
    pub fn search(&mut self, query: &str) -> u32 {
        let token = self.token();
        self.searches.push_back(token);
        while self.searches.len() > MAX_OPEN_SEARCHES {
            self.searches.pop_front();
        }
        self.server(ServerRequest::FileSearch { token, query: query.to_owned() });
        token
    }

    /// A wishlist search (WishlistSearch, 103): like [`ClientSession::search`], sent as the
    /// server expects a saved search to be re-run, at most every
    /// [`ClientSession::wishlist_interval`].
    pub fn wishlist_search(&mut self, query: &str) -> u32 {
        let token = self.token();
        self.searches.push_back(token);
        while self.searches.len() > MAX_OPEN_SEARCHES {
            self.searches.pop_front();
        }
        self.server(ServerRequest::WishlistSearch { token, query: query.to_owned() });
        token
    }

    /// How often the server lets wishlist searches run (its WishlistInterval at login;
    /// [`DEFAULT_WISHLIST_INTERVAL`] until it says).
    pub fn wishlist_interval(&self) -> Duration {
        self.wishlist_interval
    }

    /// Stop taking results of a search.
    pub fn end_search(&mut self, token: u32) {
        self.searches.retain(|&t| t != token);
    }

    /// Join a chat room.
    pub fn join_room(&mut self, room: &str) {
        self.server(ServerRequest::JoinRoom { room: room.to_owned(), private: false });
    }

    /// Say something in a room.
    pub fn say_room(&mut self, room: &str, text: &str) {
        self.server(ServerRequest::SayChatroom { room: room.to_owned(), message: text.to_owned() });
    }

    /// Ask the server whether `user` exists and is online (WatchUser(5), the question
    /// Nicotine+ asks before a private chat); the answer is a [`SessionEvent::Presence`].
    pub fn ask_presence(&mut self, user: &str) {
        self.server(ServerRequest::WatchUser { user: user.to_owned() });
    }

    /// Send a private message.
    pub fn message_user(&mut self, user: &str, text: &str) {
        self.server(ServerRequest::MessageUser { user: user.to_owned(), message: text.to_owned() });
    }

    /// Tell the server new share counts.
    pub fn set_shared(&mut self, dirs: u32, files: u32) {
        self.cfg.shared = (dirs, files);
        if self.logged_in {
            self.server(ServerRequest::SharedFoldersFiles { dirs, files });
        }
    }

    /// Download `path` from `user`. `expected`: the size the user chose (an uploader
    /// announcing another is refused). Ends with [`SessionEvent::DownloadConnected`] or
    /// [`SessionEvent::DownloadFailed`].
    pub fn download(&mut self, now: Instant, user: &str, path: &str, expected: Option<u64>) -> DownloadId {
        let id = self.next_download;
        self.next_download += 1;
        self.downloads.insert(
            id,
            Download {
                user: user.to_owned(),
                path: path.to_owned(),
                expected,
                state: DlState::Queueing { resends: 0 },
                deadline: now + QUEUE_RESENDS[0],
            },
        );
        self.send_peer(now, user, Origin::Download(id), PeerMessage::QueueUpload { filename: path.to_owned() });
        id
    }

    /// Forget a download (the user cancelled it, or its transfer is over). Whatever the
    /// uploader sends for it later is refused or ignored.
    pub fn cancel_download(&mut self, id: DownloadId) {
        self.downloads.remove(&id);
    }

    /// Ask now where a download stands in the uploader's queue
    /// ([`SessionEvent::DownloadPlace`]).
    pub fn ask_place(&mut self, now: Instant, id: DownloadId) {
        if let Some(d) = self.downloads.get(&id) {
            let (user, filename) = (d.user.clone(), d.path.clone());
            self.send_peer(now, &user, Origin::Other, PeerMessage::PlaceInQueueRequest { filename });
        }
    }

    /// Ask `user` where `filename` stands in its queue for us ([`SessionEvent::QueuePlace`]).
    pub fn ask_place_of(&mut self, now: Instant, user: &str, filename: &str) {
        self.send_peer(now, user, Origin::Other, PeerMessage::PlaceInQueueRequest { filename: filename.to_owned() });
    }

    /// Browse a user's whole share ([`SessionEvent::Browsed`]).
    pub fn browse(&mut self, now: Instant, user: &str) {
        self.browses.push(Browse { user: user.to_owned(), token: None, deadline: now + BROWSE_WAIT });
        self.send_peer(now, user, Origin::Browse, PeerMessage::SharedFileListRequest);
    }

    /// Ask for one folder of a user's share ([`SessionEvent::FolderContents`]).
    pub fn folder_contents(&mut self, now: Instant, user: &str, folder: &str) -> u32 {
        let token = self.token();
        self.browses.push(Browse { user: user.to_owned(), token: Some(token), deadline: now + BROWSE_WAIT });
        let msg = PeerMessage::FolderContentsRequest { token, folder: folder.to_owned() };
        self.send_peer(now, user, Origin::Browse, msg);
        token
    }

    /// Answer a [`SessionEvent::SearchRequest`] (on a `P` connection to the searcher).
    pub fn answer_search(&mut self, now: Instant, user: &str, response: SearchResponse) {
        self.send_peer(now, user, Origin::Other, PeerMessage::FileSearchResponse(response));
    }

    /// Answer a [`SessionEvent::PeerRequest`] (SharedFileListResponse, UserInfoResponse,
    /// FolderContentsResponse) or send any other message to a user.
    pub fn reply(&mut self, now: Instant, user: &str, msg: PeerMessage) {
        self.send_peer(now, user, Origin::Other, msg);
    }

    /// A user info answer with our counts.
    pub fn user_info(description: &str, slots: u32, queue: u32, free: bool) -> PeerMessage {
        PeerMessage::UserInfoResponse(UserInfo {
            description: description.to_owned(),
            picture: None,
            total_uploads: slots,
            queue_size: queue,
            slots_free: free,
            upload_permitted: Some(crate::peer::upload_permission::EVERYONE),
        })
    }

    /// Refuse a [`SessionEvent::UploadRequested`] (UploadDenied with `reason`, one of
    /// [`crate::peer::reject_reason`]).
    pub fn upload_refused(&mut self, now: Instant, user: &str, filename: &str, reason: &str) {
        let msg = PeerMessage::UploadDenied { filename: filename.to_owned(), reason: reason.to_owned() };
        self.send_peer(now, user, Origin::Other, msg);
    }

    /// Where a queued file stands ([`SessionEvent::PlaceRequested`]).
    pub fn place_reply(&mut self, now: Instant, user: &str, filename: &str, place: u32) {
        self.send_peer(
            now,
            user,
            Origin::Other,
            PeerMessage::PlaceInQueueResponse { filename: filename.to_owned(), place },
        );
    }

    /// A slot is held for `user`'s `filename` (`size` bytes): offer it (TransferRequest).
    /// Ends with [`SessionEvent::UploadConnected`], [`SessionEvent::UploadFailed`] or
    /// [`SessionEvent::UploadUnanswered`].
    pub fn upload_granted(&mut self, now: Instant, id: UploadId, user: &str, filename: &str, size: u64) {
        let token = self.token();
        self.uploads.insert(
            id,
            Upload {
                user: user.to_owned(),
                filename: filename.to_owned(),
                size,
                token,
                state: UpState::Offering { sends: 1 },
                deadline: Some(now + ANSWER_WAITS[0]),
            },
        );
        self.offer(now, id);
    }

    /// A started upload's transfer broke: tell the downloader (UploadFailed) so it queues
    /// again.
    pub fn upload_broke(&mut self, now: Instant, user: &str, filename: &str) {
        self.send_peer(now, user, Origin::Other, PeerMessage::UploadFailed { filename: filename.to_owned() });
    }

    // ---- server ----------------------------------------------------------------------

    fn server_input(&mut self, now: Instant, bytes: &[u8]) {
        self.server_reader.push(bytes);
        loop {
            match self.server_reader.next_frame() {
                Ok(Some(f)) => match ServerResponse::from_frame(&f) {
                    Ok(msg) => self.on_server(now, msg),
                    // An unknown or odd server message is skipped, as real clients do.
                    Err(_) => continue,
                },
                Ok(None) => return,
                Err(_) => {
                    self.out.push_back(Output::Close { conn: SERVER });
                    return;
                }
            }
        }
    }

    fn on_server(&mut self, now: Instant, msg: ServerResponse) {
        match msg {
            ServerResponse::LoginSuccess { .. } => {
                self.logged_in = true;
                self.ping_at = Some(now + SERVER_PING_INTERVAL);
                let (dirs, files) = self.cfg.shared;
                self.server(ServerRequest::SetWaitPort { port: u32::from(self.cfg.listen_port), obfuscation: None });
                self.have_no_parent();
                for req in [
                    ServerRequest::SetStatus { status: UserStatus::Online },
                    ServerRequest::SharedFoldersFiles { dirs, files },
                ] {
                    self.server(req);
                }
                self.event(SessionEvent::LoggedIn);
            }
            ServerResponse::LoginFailure { reason, detail } => {
                let reason = match detail {
                    Some(d) => format!("{reason} ({d})"),
                    None => reason,
                };
                self.event(SessionEvent::LoginFailed { reason });
            }
            ServerResponse::GetPeerAddress { user, ip, port, .. } => self.on_address(now, &user, ip, port),
            ServerResponse::ConnectToPeer { user, conn_type, ip, port, token, .. } => {
                // Someone could not reach us: we connect and pierce.
                let Some(kind) = Kind::parse(&conn_type) else { return };
                if port == 0 || port > u32::from(u16::MAX) || ip.is_unspecified() {
                    self.server(ServerRequest::CantConnectToPeer { token, user });
                    return;
                }
                let conn = self.conn_id();
                self.conns.insert(conn, ConnState::DialPierce { token, user, kind });
                self.out.push_back(Output::Dial { conn, addr: SocketAddrV4::new(ip, port as u16) });
            }
            ServerResponse::CantConnectToPeer { token } => {
                if let Some(a) = self.attempts.get_mut(&token) {
                    a.indirect_failed = true;
                    if a.indirect_at.is_none() && (a.direct_failed || a.want_address) && a.dialing.is_none() {
                        self.attempt_failed(now, token, "cannot connect");
                    }
                }
            }
            ServerResponse::FileSearch { user, token, query } => self.search_request(user, token, query),
            ServerResponse::EmbeddedMessage { code: 3, body } => self.server_embedded(body),
            ServerResponse::PossibleParents { parents } => self.possible_parents(now, parents),
            ServerResponse::ResetDistributed => self.reset_distributed(),
            ServerResponse::MessageUser { id, user, message, .. } => {
                self.server(ServerRequest::MessageAcked { id });
                self.event(SessionEvent::PrivateMessage { user, text: message });
            }
            ServerResponse::WatchUser { user, exists, details } => {
                let status = details.map(|d| d.status);
                self.event(SessionEvent::Presence { user, exists, status });
            }
            ServerResponse::SayChatroom { room, user, message } => {
                self.event(SessionEvent::RoomMessage { room, user, text: message })
            }
            ServerResponse::JoinRoom { room, users, .. } => {
                let members = users.into_iter().take(MAX_ROOM_MEMBERS).map(|u| (u.name.to_lowercase(), u)).collect();
                self.rooms.insert(room.clone(), members);
                self.event(SessionEvent::JoinedRoom { room })
            }
            ServerResponse::UserJoinedRoom { room, user } => {
                if let Some(m) = self.rooms.get_mut(&room) {
                    if m.len() < MAX_ROOM_MEMBERS || m.contains_key(&user.name.to_lowercase()) {
                        m.insert(user.name.to_lowercase(), user);
                    }
                }
            }
            ServerResponse::WishlistInterval { seconds } => {
                self.wishlist_interval = Duration::from_secs(u64::from(seconds)).max(MIN_WISHLIST_INTERVAL);
            }
            ServerResponse::UserLeftRoom { room, user } => {
                if let Some(m) = self.rooms.get_mut(&room) {
                    m.remove(&user.to_lowercase());
                }
            }
            ServerResponse::LeaveRoom { room } => {
                self.rooms.remove(&room);
            }
            ServerResponse::Relogged => {
                self.logged_in = false;
                self.event(SessionEvent::Relogged);
                self.out.push_back(Output::Close { conn: SERVER });
            }
            _ => {}
        }
    }

    fn search_request(&mut self, user: String, token: u32, query: String) {
        if !user.eq_ignore_ascii_case(&self.cfg.user) {
            self.event(SessionEvent::SearchRequest { user, token, query });
        }
    }

    // ---- connecting ------------------------------------------------------------------

    /// Send `msg` to `user` on its `P` connection, opening one if needed.
    fn send_peer(&mut self, now: Instant, user: &str, origin: Origin, msg: PeerMessage) {
        let key = lc(user);
        if let Some(&conn) = self.peers.get(&key) {
            self.send(conn, msg.encode());
            return;
        }
        let queue = self.outbox.entry(key.clone()).or_default();
        let data = msg.encode();
        // A resend while the first copy still waits for the connection is the same message.
        if queue.len() < MAX_OUTBOX && !queue.iter().any(|(o, d)| *o == origin && *d == data) {
            queue.push((origin, data));
        }
        if !self.p_attempts.contains_key(&key) {
            let token = self.start_attempt(now, user, Purpose::P);
            self.p_attempts.insert(key, token);
        }
    }

    /// Stop sending to `user`'s current `P` connection (it is kept for reading): the next
    /// message opens a fresh one.
    fn forget_peer(&mut self, user: &str) {
        self.peers.remove(&lc(user));
    }

    fn start_attempt(&mut self, now: Instant, user: &str, purpose: Purpose) -> u32 {
        let token = self.token();
        self.attempts.insert(
            token,
            Attempt {
                user: user.to_owned(),
                purpose,
                deadline: now + PEER_CONNECT_WAIT,
                indirect_at: Some(now + DIRECT_CONNECT_WAIT),
                dialing: None,
                direct_failed: false,
                indirect_failed: false,
                want_address: true,
            },
        );
        self.server(ServerRequest::GetPeerAddress { user: user.to_owned() });
        token
    }

    fn on_address(&mut self, now: Instant, user: &str, ip: Ipv4Addr, port: u32) {
        let waiting: Vec<u32> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.want_address && a.user.eq_ignore_ascii_case(user))
            .map(|(&t, _)| t)
            .collect();
        for t in waiting {
            let Some(a) = self.attempts.get_mut(&t) else { continue };
            a.want_address = false;
            if port == 0 || port > u32::from(u16::MAX) || ip.is_unspecified() {
                a.direct_failed = true;
                self.direct_gone(now, t);
            } else {
                let conn = self.conn_id();
                if let Some(a) = self.attempts.get_mut(&t) {
                    a.dialing = Some(conn);
                }
                self.conns.insert(conn, ConnState::DialDirect { attempt: t });
                self.out.push_back(Output::Dial { conn, addr: SocketAddrV4::new(ip, port as u16) });
            }
        }
    }

    /// The direct way failed: ask the indirect one now, or give up if it failed too.
    fn direct_gone(&mut self, now: Instant, token: u32) {
        let Some(a) = self.attempts.get(&token) else { return };
        if a.indirect_at.is_some() {
            self.ask_indirect(token);
        } else if a.indirect_failed {
            self.attempt_failed(now, token, "cannot connect");
        }
    }

    fn ask_indirect(&mut self, token: u32) {
        let Some(a) = self.attempts.get_mut(&token) else { return };
        if a.indirect_at.take().is_none() {
            return;
        }
        let req = ServerRequest::ConnectToPeer { token, user: a.user.clone(), conn_type: a.kind().as_str().into() };
        self.server(req);
    }

    /// Attempt `token` has its connection `conn` (our PeerInit, or their PierceFireWall,
    /// already exchanged).
    fn established(&mut self, now: Instant, token: u32, conn: ConnId) {
        let Some(a) = self.attempts.remove(&token) else {
            self.out.push_back(Output::Close { conn });
            return;
        };
        if let Some(d) = a.dialing {
            // The indirect way won: the direct dial is not needed.
            self.conns.remove(&d);
            self.out.push_back(Output::Close { conn: d });
        }
        match a.purpose {
            Purpose::P => {
                let key = lc(&a.user);
                if self.p_attempts.get(&key) == Some(&token) {
                    self.p_attempts.remove(&key);
                }
                self.conns.insert(conn, peer_state(a.user.clone(), Vec::new(), now).0);
                self.register_p(&a.user, conn);
            }
            Purpose::Upload(id) => {
                let Some(u) = self.uploads.remove(&id) else {
                    self.out.push_back(Output::Close { conn });
                    return;
                };
                // The uploader writes the transfer token first (docs: #transfer).
                self.send(conn, crate::framing::encode_file_transfer_init(u.token).to_vec());
                self.event(SessionEvent::UploadConnected { id, conn });
            }
            Purpose::Parent => self.candidate_connected(now, &a.user, conn),
        }
    }

    fn attempt_failed(&mut self, _now: Instant, token: u32, why: &str) {
        let Some(a) = self.attempts.remove(&token) else { return };
        if let Some(d) = a.dialing {
            self.conns.remove(&d);
            self.out.push_back(Output::Close { conn: d });
        }
        let why = format!("cannot connect to {}: {why}", a.user);
        match a.purpose {
            Purpose::P => {
                let key = lc(&a.user);
                if self.p_attempts.get(&key) == Some(&token) {
                    self.p_attempts.remove(&key);
                }
                for (origin, _) in self.outbox.remove(&key).unwrap_or_default() {
                    match origin {
                        Origin::Download(id) => {
                            if self.downloads.remove(&id).is_some() {
                                self.event(SessionEvent::DownloadFailed { id, why: why.clone() });
                            }
                        }
                        Origin::Upload(id) => {
                            if self.uploads.remove(&id).is_some() {
                                self.event(SessionEvent::UploadFailed { id, why: why.clone() });
                            }
                        }
                        Origin::Browse => {
                            self.browses.retain(|b| !b.user.eq_ignore_ascii_case(&a.user));
                            self.event(SessionEvent::BrowseFailed { user: a.user.clone(), why: why.clone() });
                        }
                        Origin::Other => {}
                    }
                }
            }
            Purpose::Upload(id) => {
                if self.uploads.remove(&id).is_some() {
                    self.event(SessionEvent::UploadFailed { id, why });
                }
            }
            // The candidate stays without a connection; another may answer.
            Purpose::Parent => {}
        }
    }

    /// `conn` is now the `P` connection to `user`: what waited for one goes out on it.
    fn register_p(&mut self, user: &str, conn: ConnId) {
        let key = lc(user);
        self.peers.insert(key.clone(), conn);
        for (_, data) in self.outbox.remove(&key).unwrap_or_default() {
            self.send(conn, data);
        }
    }

    fn on_init(&mut self, now: Instant, conn: ConnId, init: PeerInit, rest: Vec<u8>, deadline: Instant) {
        match init {
            PeerInit::PierceFireWall { token } => {
                // Only a token of ours whose indirect way we asked.
                let asked = self.attempts.get(&token).is_some_and(|a| a.indirect_at.is_none());
                if !asked {
                    return self.drop_conn(conn, format!("unknown PierceFireWall token {token}"));
                }
                self.conns.remove(&conn);
                self.established(now, token, conn);
                // Bytes after the pierce on a P connection are its first messages.
                if !rest.is_empty() {
                    self.handle_input(now, conn, &rest);
                }
            }
            PeerInit::PeerInit { user, conn_type, .. } => {
                let Some(kind) = Kind::parse(&conn_type) else {
                    return self.drop_conn(conn, format!("a {conn_type:?} connection"));
                };
                self.typed(now, conn, user, kind, rest, deadline);
            }
        }
    }

    /// `conn` is a `kind` connection with `user` (initialised either way).
    fn typed(&mut self, now: Instant, conn: ConnId, user: String, kind: Kind, rest: Vec<u8>, deadline: Instant) {
        match kind {
            Kind::P => {
                let (state, held) = peer_state(user.clone(), rest, now);
                self.buffered += held;
                self.conns.insert(conn, state);
                if self.over_budget(conn) {
                    return;
                }
                self.register_p(&user, conn);
                self.peer_frames(now, conn);
            }
            Kind::F => {
                self.conns.insert(conn, ConnState::AwaitToken { user, have: rest, deadline });
                self.f_token(now, conn);
            }
            Kind::D => self.child_connected(now, conn, user, rest),
        }
    }

    /// An `F` connection from an uploader: once its token is in, hand it to the download
    /// waiting for exactly that token from exactly that user.
    fn f_token(&mut self, _now: Instant, conn: ConnId) {
        let Some(ConnState::AwaitToken { user, have, .. }) = self.conns.get(&conn) else { return };
        let Some((token, used)) = crate::framing::decode_file_transfer_init(have) else { return };
        let rest = have[used..].to_vec();
        let user = user.clone();
        self.conns.remove(&conn);
        let found = self.downloads.iter().find_map(|(&id, d)| match d.state {
            DlState::Offered { token: t, size } if t == token && d.user.eq_ignore_ascii_case(&user) => Some((id, size)),
            _ => None,
        });
        match found {
            Some((id, size)) => {
                self.downloads.remove(&id);
                self.event(SessionEvent::DownloadConnected { id, conn, size, rest });
            }
            None => {
                self.event(SessionEvent::PeerDropped {
                    conn,
                    why: format!("F connection from {user} for nothing we asked"),
                });
                self.out.push_back(Output::Close { conn });
            }
        }
    }

    // ---- P connections ---------------------------------------------------------------

    fn peer_frames(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(ConnState::Peer { user, reader, frame_deadline }) = self.conns.get_mut(&conn) else { return };
            let before = reader.committed();
            let frame = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    // A message under way must finish within PEER_FRAME_TIMEOUT of its
                    // first bytes (or of the previous message).
                    if before == 0 {
                        *frame_deadline = None;
                    } else if frame_deadline.is_none() {
                        *frame_deadline = Some(now + PEER_FRAME_TIMEOUT);
                    }
                    return;
                }
                Err(e) => return self.drop_conn(conn, format!("bad frame: {e}")),
            };
            let after = reader.committed();
            *frame_deadline = if after > 0 { Some(now + PEER_FRAME_TIMEOUT) } else { None };
            let user = user.clone();
            self.recount(before, after);
            let browsing =
                |code| (code == 5 || code == 37) && self.browses.iter().any(|b| b.user.eq_ignore_ascii_case(&user));
            let max = if browsing(frame.code) {
                MAX_BROWSE_INFLATED
            } else if P_CODES_HANDLED.contains(&frame.code) {
                MAX_PEER_INFLATED
            } else {
                continue;
            };
            match PeerMessage::decode_limited(frame.code, &frame.body, max) {
                Ok(msg) => self.on_peer(now, conn, &user, msg),
                Err(e) => return self.drop_conn(conn, format!("undecodable message {}: {e}", frame.code)),
            }
        }
    }

    fn on_peer(&mut self, now: Instant, conn: ConnId, user: &str, msg: PeerMessage) {
        match msg {
            PeerMessage::FileSearchResponse(r) => {
                if !self.searches.contains(&r.token) {
                    return;
                }
                let mut files = r.files;
                files.extend(r.private_files.into_iter().flatten());
                self.event(SessionEvent::SearchResults {
                    token: r.token,
                    user: r.user,
                    files,
                    free_slot: r.slot_free,
                    queue: r.queue_len,
                    speed: r.avg_speed,
                });
            }
            PeerMessage::SharedFileListRequest => {
                self.event(SessionEvent::PeerRequest { user: user.to_owned(), request: PeerRequest::SharedFileList })
            }
            PeerMessage::UserInfoRequest => {
                self.event(SessionEvent::PeerRequest { user: user.to_owned(), request: PeerRequest::UserInfo })
            }
            PeerMessage::FolderContentsRequest { token, folder } => self.event(SessionEvent::PeerRequest {
                user: user.to_owned(),
                request: PeerRequest::FolderContents { token, folder },
            }),
            PeerMessage::SharedFileListResponse(list) => {
                let Some(i) = self.browses.iter().position(|b| b.token.is_none() && b.user.eq_ignore_ascii_case(user))
                else {
                    return;
                };
                self.browses.remove(i);
                self.event(SessionEvent::Browsed { user: user.to_owned(), list });
            }
            PeerMessage::FolderContentsResponse { token, folder, dirs } => {
                let Some(i) =
                    self.browses.iter().position(|b| b.token == Some(token) && b.user.eq_ignore_ascii_case(user))
                else {
                    return;
                };
                self.browses.remove(i);
                self.event(SessionEvent::FolderContents { user: user.to_owned(), token, folder, dirs });
            }
            PeerMessage::QueueUpload { filename } => {
                self.event(SessionEvent::UploadRequested { user: user.to_owned(), filename })
            }
            PeerMessage::PlaceInQueueRequest { filename } => {
                self.event(SessionEvent::PlaceRequested { user: user.to_owned(), filename })
            }
            PeerMessage::PlaceInQueueResponse { filename, place } => {
                let ids: Vec<DownloadId> = self
                    .downloads
                    .iter()
                    .filter(|(_, d)| d.user.eq_ignore_ascii_case(user) && d.path == filename)
                    .map(|(&id, _)| id)
                    .collect();
                for id in ids {
                    let Some(d) = self.downloads.get_mut(&id) else { continue };
                    if !matches!(d.state, DlState::Offered { .. }) {
                        // It is queued there: wait again, as long as it keeps it.
                        d.state = DlState::Waiting;
                        d.deadline = now + TRANSFER_WAIT;
                    }
                    self.event(SessionEvent::DownloadPlace { id, place });
                }
                self.event(SessionEvent::QueuePlace { user: user.to_owned(), filename, place });
            }
            PeerMessage::TransferRequest { direction: TransferDirection::Upload, token, filename, size } => {
                // The uploader is ready: only a download still waiting for this offer
                // takes it (never one that ended, nor one already offered).
                let found = self
                    .downloads
                    .iter()
                    .filter(|(_, d)| {
                        d.user.eq_ignore_ascii_case(user)
                            && d.path == filename
                            && !matches!(d.state, DlState::Offered { .. })
                    })
                    .map(|(&id, _)| id)
                    .min();
                let reply = match found {
                    Some(id) => {
                        let d = self.downloads.get_mut(&id).expect("found above");
                        match offered_size(d.expected, size) {
                            Ok(size) => {
                                d.state = DlState::Offered { token, size };
                                d.deadline = now + TRANSFER_WAIT;
                                TransferReply::Allowed { size: None }
                            }
                            // Not the file the user chose (or a lie): refused before
                            // any F connection, so nothing is written.
                            Err(why) => {
                                self.downloads.remove(&id);
                                self.event(SessionEvent::DownloadFailed { id, why });
                                TransferReply::Denied { reason: crate::peer::reject_reason::CANCELLED.into() }
                            }
                        }
                    }
                    None => TransferReply::Denied { reason: crate::peer::reject_reason::CANCELLED.into() },
                };
                // Answered on the connection it came on: it is alive.
                self.send(conn, PeerMessage::TransferResponse { token, reply }.encode());
            }
            PeerMessage::TransferResponse { token, reply } => {
                let Some(id) = self
                    .uploads
                    .iter()
                    .find(|(_, u)| u.token == token && u.user.eq_ignore_ascii_case(user))
                    .map(|(&id, _)| id)
                else {
                    return;
                };
                match reply {
                    TransferReply::Allowed { .. } => {
                        let Some(u) = self.uploads.get_mut(&id) else { return };
                        if u.state != UpState::Connecting {
                            u.state = UpState::Connecting;
                            u.deadline = None;
                            let user = u.user.clone();
                            self.start_attempt(now, &user, Purpose::Upload(id));
                        }
                    }
                    TransferReply::Denied { reason } => {
                        self.uploads.remove(&id);
                        self.event(SessionEvent::UploadFailed { id, why: format!("refused: {reason}") });
                    }
                }
            }
            PeerMessage::UploadDenied { filename, reason } => self.fail_download(user, &filename, &reason),
            PeerMessage::UploadFailed { filename } => self.fail_download(user, &filename, "upload failed"),
            _ => {}
        }
    }

    fn fail_download(&mut self, user: &str, path: &str, why: &str) {
        let ids: Vec<DownloadId> = self
            .downloads
            .iter()
            .filter(|(_, d)| d.user.eq_ignore_ascii_case(user) && d.path == path)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.downloads.remove(&id);
            self.event(SessionEvent::DownloadFailed { id, why: format!("{user} refused {path}: {why}") });
        }
    }

    // ---- timers ----------------------------------------------------------------------

    fn download_timer(&mut self, now: Instant, id: DownloadId) {
        let Some(d) = self.downloads.get_mut(&id) else { return };
        let (user, path) = (d.user.clone(), d.path.clone());
        match d.state {
            DlState::Queueing { resends } => {
                // No answer: the QueueUpload may have gone into a P connection the
                // uploader was closing. Ask again on a fresh one (a repeated QueueUpload
                // is harmless: the uploader keeps one place).
                if resends + 1 < QUEUE_RESENDS.len() {
                    d.state = DlState::Queueing { resends: resends + 1 };
                    d.deadline = now + QUEUE_RESENDS[resends + 1];
                } else {
                    d.state = DlState::Waiting;
                    d.deadline = now + TRANSFER_WAIT;
                }
                self.forget_peer(&user);
                self.send_peer(now, &user, Origin::Download(id), PeerMessage::QueueUpload { filename: path });
            }
            DlState::Waiting => {
                d.state = DlState::AskingPlace;
                d.deadline = now + PLACE_WAIT;
                self.send_peer(now, &user, Origin::Download(id), PeerMessage::PlaceInQueueRequest { filename: path });
            }
            DlState::AskingPlace => {
                self.downloads.remove(&id);
                let why = format!("{user} did not start sending {path} within {}s", TRANSFER_WAIT.as_secs());
                self.event(SessionEvent::DownloadFailed { id, why });
            }
            DlState::Offered { .. } => {
                self.downloads.remove(&id);
                self.event(SessionEvent::DownloadFailed {
                    id,
                    why: format!("{user} did not open the file connection"),
                });
            }
        }
    }

    fn upload_timer(&mut self, now: Instant, id: UploadId) {
        let Some(u) = self.uploads.get_mut(&id) else { return };
        let UpState::Offering { sends } = u.state else {
            u.deadline = None;
            return;
        };
        if sends >= ANSWER_WAITS.len() {
            self.uploads.remove(&id);
            self.event(SessionEvent::UploadUnanswered { id });
            return;
        }
        // No answer: the request may have gone into a P connection the peer had already
        // dropped (both sides connecting at once). Ask again on a fresh one.
        u.state = UpState::Offering { sends: sends + 1 };
        u.deadline = Some(now + ANSWER_WAITS[sends]);
        let user = u.user.clone();
        self.forget_peer(&user);
        self.offer(now, id);
    }

    fn offer(&mut self, now: Instant, id: UploadId) {
        let Some(u) = self.uploads.get(&id) else { return };
        let req = PeerMessage::TransferRequest {
            direction: TransferDirection::Upload,
            token: u.token,
            filename: u.filename.clone(),
            size: Some(u.size),
        };
        let user = u.user.clone();
        self.send_peer(now, &user, Origin::Upload(id), req);
    }

    // ---- helpers ---------------------------------------------------------------------

    fn token(&mut self) -> u32 {
        let t = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        t
    }

    fn conn_id(&mut self) -> ConnId {
        let c = self.next_conn;
        self.next_conn += 1;
        c
    }

    fn server(&mut self, req: ServerRequest) {
        self.out.push_back(Output::Send { conn: SERVER, data: req.encode() });
    }

    fn send(&mut self, conn: ConnId, data: Vec<u8>) {
        self.out.push_back(Output::Send { conn, data });
    }

    fn event(&mut self, e: SessionEvent) {
        self.out.push_back(Output::Event(e));
    }

    /// A reader went from `before` to `after` buffered bytes.
    /// Every byte a peer connection holds or has announced for the message under way
    /// ([`FrameReader::committed`]) counts against [`PEER_BUFFER_BUDGET`]; the connection
    /// that takes the total past it is dropped (and gives its share back).
    fn over_budget(&mut self, conn: ConnId) -> bool {
        if self.buffered <= PEER_BUFFER_BUDGET {
            return false;
        }
        let held = self.buffered;
        self.drop_conn(
            conn,
            format!(
                "peer connections hold or announce {held} bytes of unfinished messages (limit {PEER_BUFFER_BUDGET})"
            ),
        );
        true
    }

    fn recount(&mut self, before: usize, after: usize) {
        self.buffered = (self.buffered + after).saturating_sub(before);
    }

    fn forget_conn(&mut self, conn: ConnId) {
        match self.conns.remove(&conn) {
            Some(ConnState::AwaitInit { reader, .. }) | Some(ConnState::Peer { reader, .. }) => {
                self.buffered = self.buffered.saturating_sub(reader.committed());
            }
            Some(ConnState::Distrib { reader, user, role, .. }) => {
                self.buffered = self.buffered.saturating_sub(reader.committed());
                self.d_closed(conn, &user, role);
            }
            _ => {}
        }
        // A connection the peer closed is not reused: what is written to it is lost.
        self.peers.retain(|_, &mut c| c != conn);
    }

    fn drop_conn(&mut self, conn: ConnId, why: String) {
        self.forget_conn(conn);
        self.event(SessionEvent::PeerDropped { conn, why });
        self.out.push_back(Output::Close { conn });
    }
}

/// A `P` connection's state with `rest` already buffered; and how many bytes that is.
fn peer_state(user: String, rest: Vec<u8>, now: Instant) -> (ConnState, usize) {
    let mut reader = FrameReader::with_limit(FrameKind::Peer, MAX_PEER_MESSAGE);
    reader.push(&rest);
    let held = reader.committed();
    let frame_deadline = (held > 0).then_some(now + PEER_FRAME_TIMEOUT);
    (ConnState::Peer { user, reader, frame_deadline }, held)
}

/// Simulated-time tests: every wait and resend is driven by `now`, so the races the node
/// met under load (a QueueUpload lost in a closing connection, a TransferRequest never
/// answered, a stale attempt matching a retry) are replayed exactly, in microseconds.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Frame;

    const PEER: &str = "Uploader";
    const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);

    struct Sim {
        s: ClientSession,
        t0: Instant,
        now: Instant,
    }

    fn frames(kind: FrameKind, data: &[u8]) -> Vec<Frame> {
        let mut r = FrameReader::new(kind);
        r.push(data);
        let mut v = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            v.push(f);
        }
        assert_eq!(r.buffered(), 0, "whole frames only");
        v
    }

    impl Sim {
        fn new() -> Sim {
            let t0 = Instant::now();
            let s = ClientSession::new(SessionConfig {
                user: "me".into(),
                password: "pw".into(),
                listen_port: 2234,
                major_version: 177,
                minor_version: 1,
                first_token: 100,
                shared: (1, 3),
                max_children: DEFAULT_MAX_CHILDREN,
            });
            let mut sim = Sim { s, t0, now: t0 };
            sim.s.server_connected(t0);
            let out = sim.drain();
            assert!(matches!(server_msgs(&out)[0], ServerRequest::Login { .. }));
            let out = sim.server_says(ServerResponse::LoginSuccess {
                greet: "hi".into(),
                own_ip: Ipv4Addr::LOCALHOST,
                password_hash: String::new(),
                supporter: false,
            });
            assert!(out.contains(&Output::Event(SessionEvent::LoggedIn)));
            assert!(sim.s.is_logged_in());
            sim
        }

        fn drain(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.s.poll_output()).collect()
        }

        /// Move the clock to `secs` after the start and run the timers.
        fn at(&mut self, secs: u64) -> Vec<Output> {
            self.now = self.t0 + Duration::from_secs(secs);
            self.s.handle_timeout(self.now);
            self.drain()
        }

        fn server_says(&mut self, msg: ServerResponse) -> Vec<Output> {
            self.s.handle_input(self.now, SERVER, &msg.encode());
            self.drain()
        }

        fn peer_says(&mut self, conn: ConnId, msg: PeerMessage) -> Vec<Output> {
            self.s.handle_input(self.now, conn, &msg.encode());
            self.drain()
        }

        /// A user's `P` connection opened the direct way; returns it and what went on it
        /// after our PeerInit.
        fn dial_p(&mut self, out: &[Output]) -> (ConnId, Vec<PeerMessage>) {
            assert!(server_msgs(out).contains(&ServerRequest::GetPeerAddress { user: PEER.into() }));
            let out = self.server_says(address(2235));
            let (conn, addr) = dials(&out)[0];
            assert_eq!(addr, SocketAddrV4::new(PEER_IP, 2235));
            self.s.connected(self.now, conn);
            let out = self.drain();
            let data = sent(&out, conn);
            let init = PeerInit::from_frame(&frames(FrameKind::PeerInit, &data[0])[0]).unwrap();
            assert!(
                matches!(init, PeerInit::PeerInit { ref user, ref conn_type, .. } if user == "me" && conn_type == "P")
            );
            (conn, peer_msgs(&data[1..]))
        }

        /// The peer opens a `P` connection to us.
        fn incoming_p(&mut self) -> ConnId {
            let conn = self.s.accepted(self.now);
            let init = PeerInit::PeerInit { user: PEER.into(), conn_type: "P".into(), token: 0 };
            self.s.handle_input(self.now, conn, &init.encode());
            conn
        }
    }

    fn server_msgs(out: &[Output]) -> Vec<ServerRequest> {
        sent(out, SERVER)
            .iter()
            .flat_map(|d| frames(FrameKind::Server, d))
            .map(|f| ServerRequest::from_frame(&f).unwrap())
            .collect()
    }

    fn address(port: u32) -> ServerResponse {
        ServerResponse::GetPeerAddress { user: PEER.into(), ip: PEER_IP, port, obf_type: 0, obf_port: 0 }
    }

    fn sent(out: &[Output], conn: ConnId) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, data } if *c == conn => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    fn peer_msgs(data: &[Vec<u8>]) -> Vec<PeerMessage> {
        data.iter().flat_map(|d| frames(FrameKind::Peer, d)).map(|f| PeerMessage::from_frame(&f).unwrap()).collect()
    }

    fn dials(out: &[Output]) -> Vec<(ConnId, SocketAddrV4)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Dial { conn, addr } => Some((*conn, *addr)),
                _ => None,
            })
            .collect()
    }

    fn events(out: &[Output]) -> Vec<SessionEvent> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn queue(path: &str) -> PeerMessage {
        PeerMessage::QueueUpload { filename: path.into() }
    }

    fn offer(token: u32, path: &str, size: u64) -> PeerMessage {
        PeerMessage::TransferRequest {
            direction: TransferDirection::Upload,
            token,
            filename: path.into(),
            size: Some(size),
        }
    }

    /// An `F` connection from the uploader carrying `token` (and `extra` bytes after it).
    fn f_conn(sim: &mut Sim, token: u32, extra: &[u8]) -> (ConnId, Vec<Output>) {
        let conn = sim.s.accepted(sim.now);
        let mut bytes = PeerInit::PeerInit { user: PEER.into(), conn_type: "F".into(), token: 0 }.encode();
        bytes.extend_from_slice(&token.to_le_bytes());
        bytes.extend_from_slice(extra);
        sim.s.handle_input(sim.now, conn, &bytes);
        (conn, sim.drain())
    }

    #[test]
    fn download_over_a_direct_connection() {
        let mut sim = Sim::new();
        let id = sim.s.download(sim.now, PEER, "music\\a.flac", Some(1000));
        let out = sim.drain();
        let (p, msgs) = sim.dial_p(&out);
        assert_eq!(msgs, vec![queue("music\\a.flac")]);
        let out = sim.peer_says(p, offer(77, "music\\a.flac", 1000));
        assert_eq!(
            peer_msgs(&sent(&out, p)),
            vec![PeerMessage::TransferResponse { token: 77, reply: TransferReply::Allowed { size: None } }]
        );
        let (f, out) = f_conn(&mut sim, 77, b"abc");
        assert_eq!(
            events(&out),
            vec![SessionEvent::DownloadConnected { id, conn: f, size: 1000, rest: b"abc".to_vec() }]
        );
        assert_eq!(sim.s.downloads(), 0);
        // No resend happens later: the download is over for the session.
        assert!(dials(&sim.at(30)).is_empty());
    }

    #[test]
    fn direct_failure_falls_back_to_indirect() {
        let mut sim = Sim::new();
        sim.s.download(sim.now, PEER, "a.mp3", None);
        let out = sim.drain();
        let get = server_msgs(&out);
        assert_eq!(get, vec![ServerRequest::GetPeerAddress { user: PEER.into() }]);
        let out = sim.server_says(address(2235));
        let (dial, _) = dials(&out)[0];
        // Not yet: the direct way is tried alone first.
        assert!(!server_msgs(&out).iter().any(|m| matches!(m, ServerRequest::ConnectToPeer { .. })));
        sim.s.connect_failed(sim.now, dial);
        let out = sim.drain();
        let token = match &server_msgs(&out)[..] {
            [ServerRequest::ConnectToPeer { token, user, conn_type }] if user == PEER && conn_type == "P" => *token,
            other => panic!("expected ConnectToPeer, got {other:?}"),
        };
        // A stranger's pierce with another token is dropped.
        let stranger = sim.s.accepted(sim.now);
        sim.s.handle_input(sim.now, stranger, &PeerInit::PierceFireWall { token: token + 1 }.encode());
        assert!(sim.drain().contains(&Output::Close { conn: stranger }));
        // The peer connects to us and pierces with our token: QueueUpload goes there.
        let conn = sim.s.accepted(sim.now);
        sim.s.handle_input(sim.now, conn, &PeerInit::PierceFireWall { token }.encode());
        let out = sim.drain();
        assert_eq!(peer_msgs(&sent(&out, conn)), vec![queue("a.mp3")]);
    }

    #[test]
    fn slow_direct_dial_gets_indirect_too_and_the_first_wins() {
        let mut sim = Sim::new();
        sim.s.download(sim.now, PEER, "a.mp3", None);
        sim.drain();
        let out = sim.server_says(address(2235));
        let (dial, _) = dials(&out)[0];
        // The dial hangs (a firewall swallowing SYNs): after DIRECT_CONNECT_WAIT the
        // server is asked to have the peer connect to us.
        assert!(server_msgs(&sim.at(4)).is_empty());
        let out = sim.at(DIRECT_CONNECT_WAIT.as_secs());
        let token = match &server_msgs(&out)[..] {
            [ServerRequest::ConnectToPeer { token, .. }] => *token,
            other => panic!("expected ConnectToPeer, got {other:?}"),
        };
        let conn = sim.s.accepted(sim.now);
        sim.s.handle_input(sim.now, conn, &PeerInit::PierceFireWall { token }.encode());
        let out = sim.drain();
        assert_eq!(peer_msgs(&sent(&out, conn)), vec![queue("a.mp3")]);
        assert!(out.contains(&Output::Close { conn: dial }), "the hanging direct dial is given up: {out:?}");
        // A late success of that dial is closed, not used.
        sim.s.connected(sim.now, dial);
        let out = sim.drain();
        assert_eq!(out, vec![Output::Close { conn: dial }]);
    }

    #[test]
    fn unreachable_peer_fails_the_download() {
        let mut sim = Sim::new();
        let id = sim.s.download(sim.now, PEER, "a.mp3", None);
        sim.drain();
        // Offline (port 0): indirect at once; the peer cannot connect either.
        let out = sim.server_says(address(0));
        let token = match &server_msgs(&out)[..] {
            [ServerRequest::ConnectToPeer { token, .. }] => *token,
            other => panic!("expected ConnectToPeer, got {other:?}"),
        };
        let out = sim.server_says(ServerResponse::CantConnectToPeer { token });
        assert!(matches!(&events(&out)[..], [SessionEvent::DownloadFailed { id: i, .. }] if *i == id));
        // And without CantConnectToPeer, PEER_CONNECT_WAIT ends it.
        let mut sim = Sim::new();
        let id = sim.s.download(sim.now, PEER, "a.mp3", None);
        sim.drain();
        sim.server_says(address(0));
        assert!(events(&sim.at(PEER_CONNECT_WAIT.as_secs() - 1)).is_empty());
        let out = sim.at(PEER_CONNECT_WAIT.as_secs());
        assert!(matches!(&events(&out)[..], [SessionEvent::DownloadFailed { id: i, .. }] if *i == id));
    }

    /// Race 1 (commit a579e6a): the QueueUpload went into a P connection the uploader was
    /// closing, so no answer ever came; the node waited 60 s. Now it is sent again on a
    /// fresh connection after 4 s, and again after 8 more.
    #[test]
    fn queue_upload_lost_in_a_closing_connection_is_sent_again_on_a_fresh_one() {
        let mut sim = Sim::new();
        // The uploader had opened a P connection to deliver search results; it is
        // closing it, but we have not seen the FIN yet.
        let old = sim.incoming_p();
        sim.drain();
        sim.s.download(sim.now, PEER, "a.mp3", None);
        let out = sim.drain();
        assert_eq!(peer_msgs(&sent(&out, old)), vec![queue("a.mp3")]);
        assert!(server_msgs(&out).is_empty(), "an open connection is used");
        // Lost. Nothing before 4 s...
        assert!(sim.drain().is_empty());
        assert!(sim.at(3).is_empty());
        // ...then a fresh connection carries it again.
        let out = sim.at(QUEUE_RESENDS[0].as_secs());
        let (fresh, msgs) = sim.dial_p(&out);
        assert_ne!(fresh, old);
        assert_eq!(msgs, vec![queue("a.mp3")]);
        // The uploader answers on the fresh one; the old one is no longer written to.
        let out = sim.peer_says(fresh, offer(9, "a.mp3", 5));
        assert!(sent(&out, old).is_empty());
        assert_eq!(peer_msgs(&sent(&out, fresh)).len(), 1);
        let (f, out) = f_conn(&mut sim, 9, b"");
        assert!(matches!(&events(&out)[..], [SessionEvent::DownloadConnected { conn, size: 5, .. }] if *conn == f));
    }

    #[test]
    fn queue_upload_resends_stop_after_the_second() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        sim.s.download(sim.now, PEER, "a.mp3", None);
        sim.drain();
        let (p2, _) = {
            let out = sim.at(4);
            sim.dial_p(&out)
        };
        let (p3, msgs) = {
            let out = sim.at(4 + 8);
            sim.dial_p(&out)
        };
        assert!(p != p2 && p2 != p3);
        assert_eq!(msgs, vec![queue("a.mp3")]);
        // Then only the wait for the uploader (TRANSFER_WAIT): no dial, no resend.
        assert!(sim.at(4 + 8 + 59).is_empty());
    }

    /// Race 2 (commit 1f2074f): our TransferRequest for a granted upload went into a P
    /// connection the downloader had dropped and was never answered. It is sent again, with
    /// the same token, on a fresh connection after each of ANSWER_WAITS.
    #[test]
    fn unanswered_transfer_request_is_sent_again_on_a_fresh_connection() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        let out = sim.peer_says(p, queue("share\\b.ogg"));
        assert_eq!(
            events(&out),
            vec![SessionEvent::UploadRequested { user: PEER.into(), filename: "share\\b.ogg".into() }]
        );
        sim.s.upload_granted(sim.now, 42, PEER, "share\\b.ogg", 300);
        let out = sim.drain();
        let token = match &peer_msgs(&sent(&out, p))[..] {
            [PeerMessage::TransferRequest { direction: TransferDirection::Upload, token, size: Some(300), .. }] => {
                *token
            }
            other => panic!("expected TransferRequest, got {other:?}"),
        };
        assert!(sim.at(9).is_empty());
        let (fresh, msgs) = {
            let out = sim.at(ANSWER_WAITS[0].as_secs());
            sim.dial_p(&out)
        };
        assert_eq!(msgs, vec![offer(token, "share\\b.ogg", 300)]);
        // Answered: the file goes over an F connection that starts with our token.
        let out =
            sim.peer_says(fresh, PeerMessage::TransferResponse { token, reply: TransferReply::Allowed { size: None } });
        assert!(server_msgs(&out).contains(&ServerRequest::GetPeerAddress { user: PEER.into() }));
        let out = sim.server_says(address(2235));
        let (f, _) = dials(&out)[0];
        sim.s.connected(sim.now, f);
        let out = sim.drain();
        let data = sent(&out, f);
        let init = PeerInit::from_frame(&frames(FrameKind::PeerInit, &data[0])[0]).unwrap();
        assert!(matches!(init, PeerInit::PeerInit { conn_type, .. } if conn_type == "F"));
        assert_eq!(data[1], token.to_le_bytes().to_vec());
        assert_eq!(events(&out), vec![SessionEvent::UploadConnected { id: 42, conn: f }]);
        // Nothing more for it.
        assert!(sim.at(200).iter().all(|o| !matches!(o, Output::Event(_))));
    }

    #[test]
    fn transfer_request_never_answered_gives_the_slot_back() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        sim.s.upload_granted(sim.now, 7, PEER, "x", 1);
        sim.drain();
        let mut sends = 1;
        let mut at = 0;
        for wait in &ANSWER_WAITS[..2] {
            at += wait.as_secs();
            let (fresh, msgs) = {
                let out = sim.at(at);
                sim.dial_p(&out)
            };
            assert_ne!(fresh, p);
            assert!(matches!(msgs[..], [PeerMessage::TransferRequest { .. }]));
            sends += 1;
        }
        assert_eq!(sends, ANSWER_WAITS.len());
        at += ANSWER_WAITS[2].as_secs();
        assert!(events(&sim.at(at - 1)).is_empty());
        assert_eq!(events(&sim.at(at)), vec![SessionEvent::UploadUnanswered { id: 7 }]);
    }

    /// Race 3 (commit 1f2074f): an attempt that had ended left its entry behind; the
    /// uploader's TransferRequest and F connection for the retry matched the dead entry.
    /// Now an ended download is gone, and an F connection must carry the token that the
    /// live attempt accepted.
    #[test]
    fn a_stale_attempt_never_matches_a_retry() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        let first = sim.s.download(sim.now, PEER, "a.mp3", Some(10));
        sim.drain();
        // The uploader offers it, we allow, but the first attempt ends (cancelled by the
        // node, e.g. its F connection did not come in time) before the F connection.
        sim.peer_says(p, offer(500, "a.mp3", 10));
        sim.s.cancel_download(first);
        // The retry.
        let retry = sim.s.download(sim.now, PEER, "a.mp3", Some(10));
        assert_ne!(first, retry);
        let out = sim.drain();
        assert_eq!(peer_msgs(&sent(&out, p)), vec![queue("a.mp3")]);
        // The first attempt's F connection arrives late: it matches nothing.
        let (stale, out) = f_conn(&mut sim, 500, b"");
        assert!(out.contains(&Output::Close { conn: stale }));
        assert!(!events(&out).iter().any(|e| matches!(e, SessionEvent::DownloadConnected { .. })));
        // The retry's own offer and connection go to the retry.
        let out = sim.peer_says(p, offer(501, "a.mp3", 10));
        assert_eq!(
            peer_msgs(&sent(&out, p)),
            vec![PeerMessage::TransferResponse { token: 501, reply: TransferReply::Allowed { size: None } }]
        );
        // A second offer of the same file while the retry waits for its F connection is
        // refused: the retry has its token.
        let out = sim.peer_says(p, offer(502, "a.mp3", 10));
        assert!(matches!(
            &peer_msgs(&sent(&out, p))[..],
            [PeerMessage::TransferResponse { token: 502, reply: TransferReply::Denied { .. } }]
        ));
        let (f, out) = f_conn(&mut sim, 501, b"");
        assert_eq!(events(&out), vec![SessionEvent::DownloadConnected { id: retry, conn: f, size: 10, rest: vec![] }]);
    }

    #[test]
    fn an_offer_of_another_size_is_refused_before_any_byte() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        let id = sim.s.download(sim.now, PEER, "a.mp3", Some(100));
        sim.drain();
        let out = sim.peer_says(p, offer(3, "a.mp3", 200));
        assert!(matches!(
            &peer_msgs(&sent(&out, p))[..],
            [PeerMessage::TransferResponse { token: 3, reply: TransferReply::Denied { .. } }]
        ));
        assert_eq!(
            events(&out),
            vec![SessionEvent::DownloadFailed { id, why: "peer offered 200 bytes of a file of 100".into() }]
        );
        let (f, out) = f_conn(&mut sim, 3, b"");
        assert!(out.contains(&Output::Close { conn: f }));
    }

    #[test]
    fn queue_places_are_asked_and_keep_the_download_waiting() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        let id = sim.s.download(sim.now, PEER, "a.mp3", None);
        sim.drain();
        // The uploader queues it and says so when asked; the download waits on.
        let out = sim.peer_says(p, PeerMessage::PlaceInQueueResponse { filename: "a.mp3".into(), place: 5 });
        assert_eq!(
            events(&out),
            vec![
                SessionEvent::DownloadPlace { id, place: 5 },
                SessionEvent::QueuePlace { user: PEER.into(), filename: "a.mp3".into(), place: 5 }
            ]
        );
        // An answer stops the QueueUpload resends.
        assert!(sim.at(30).is_empty());
        // After TRANSFER_WAIT without an offer, it asks where it stands.
        let out = sim.at(TRANSFER_WAIT.as_secs());
        assert_eq!(peer_msgs(&sent(&out, p)), vec![PeerMessage::PlaceInQueueRequest { filename: "a.mp3".into() }]);
        let out = sim.peer_says(p, PeerMessage::PlaceInQueueResponse { filename: "a.mp3".into(), place: 2 });
        assert_eq!(
            events(&out),
            vec![
                SessionEvent::DownloadPlace { id, place: 2 },
                SessionEvent::QueuePlace { user: PEER.into(), filename: "a.mp3".into(), place: 2 }
            ]
        );
        // Waiting again; the next question goes unanswered: the download ends.
        let out = sim.at(2 * TRANSFER_WAIT.as_secs());
        assert_eq!(peer_msgs(&sent(&out, p)).len(), 1);
        assert!(events(&sim.at(2 * TRANSFER_WAIT.as_secs() + PLACE_WAIT.as_secs() - 1)).is_empty());
        let out = sim.at(2 * TRANSFER_WAIT.as_secs() + PLACE_WAIT.as_secs());
        assert!(
            matches!(&events(&out)[..], [SessionEvent::DownloadFailed { id: i, why }] if *i == id && why.contains("did not start sending"))
        );

        // Our side: a peer asks where its file stands; the driver knows the place.
        let out = sim.peer_says(p, PeerMessage::PlaceInQueueRequest { filename: "mine.mp3".into() });
        assert_eq!(events(&out), vec![SessionEvent::PlaceRequested { user: PEER.into(), filename: "mine.mp3".into() }]);
        sim.s.place_reply(sim.now, PEER, "mine.mp3", 3);
        let out = sim.drain();
        assert_eq!(
            peer_msgs(&sent(&out, p)),
            vec![PeerMessage::PlaceInQueueResponse { filename: "mine.mp3".into(), place: 3 }]
        );
    }

    #[test]
    fn a_refusal_ends_the_download() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        let id = sim.s.download(sim.now, PEER, "a.mp3", None);
        sim.drain();
        let out =
            sim.peer_says(p, PeerMessage::UploadDenied { filename: "a.mp3".into(), reason: "File not shared.".into() });
        assert!(
            matches!(&events(&out)[..], [SessionEvent::DownloadFailed { id: i, why }] if *i == id && why.contains("File not shared."))
        );
        assert!(sim.at(100).is_empty(), "no resend for an ended download");
    }

    #[test]
    fn searches_results_and_requests() {
        let mut sim = Sim::new();
        let token = sim.s.search("galway girl");
        let out = sim.drain();
        assert_eq!(server_msgs(&out), vec![ServerRequest::FileSearch { token, query: "galway girl".into() }]);
        let p = sim.incoming_p();
        let result = |t| {
            PeerMessage::FileSearchResponse(SearchResponse {
                user: PEER.into(),
                token: t,
                files: vec![SharedFile::new("m\\galway girl.mp3", 12)],
                slot_free: true,
                avg_speed: 0,
                queue_len: 4,
                unknown: Some(0),
                private_files: None,
            })
        };
        let out = sim.peer_says(p, result(token));
        assert_eq!(
            events(&out),
            vec![SessionEvent::SearchResults {
                token,
                user: PEER.into(),
                files: vec![SharedFile::new("m\\galway girl.mp3", 12)],
                free_slot: true,
                queue: 4,
                speed: 0,
            }]
        );
        // Results for a search that is not ours are dropped.
        assert!(events(&sim.peer_says(p, result(token + 999))).is_empty());
        // Someone else searches: the driver is asked; our own searches are not.
        let out = sim.server_says(ServerResponse::FileSearch { user: "x".into(), token: 5, query: "q".into() });
        assert_eq!(events(&out), vec![SessionEvent::SearchRequest { user: "x".into(), token: 5, query: "q".into() }]);
        let out = sim.server_says(ServerResponse::FileSearch { user: "me".into(), token: 6, query: "q".into() });
        assert!(events(&out).is_empty());
    }

    #[test]
    fn a_peer_that_asks_us_to_connect_gets_a_pierce() {
        let mut sim = Sim::new();
        let out = sim.server_says(ServerResponse::ConnectToPeer {
            user: PEER.into(),
            conn_type: "P".into(),
            ip: PEER_IP,
            port: 2240,
            token: 31,
            privileged: false,
            obf_type: 0,
            obf_port: 0,
        });
        let (conn, addr) = dials(&out)[0];
        assert_eq!(addr.port(), 2240);
        sim.s.connected(sim.now, conn);
        let out = sim.drain();
        let init = PeerInit::from_frame(&frames(FrameKind::PeerInit, &sent(&out, conn)[0])[0]).unwrap();
        assert_eq!(init, PeerInit::PierceFireWall { token: 31 });
        // It is the user's P connection now: our messages go there.
        let out = sim.peer_says(conn, PeerMessage::UserInfoRequest);
        assert_eq!(events(&out), vec![SessionEvent::PeerRequest { user: PEER.into(), request: PeerRequest::UserInfo }]);
        sim.s.reply(sim.now, PEER, ClientSession::user_info("omnipeer", 2, 0, true));
        let out = sim.drain();
        assert!(matches!(&peer_msgs(&sent(&out, conn))[..], [PeerMessage::UserInfoResponse(_)]));
        // A failed pierce dial is reported to the server.
        let out = sim.server_says(ServerResponse::ConnectToPeer {
            user: PEER.into(),
            conn_type: "F".into(),
            ip: PEER_IP,
            port: 2240,
            token: 32,
            privileged: false,
            obf_type: 0,
            obf_port: 0,
        });
        let (conn, _) = dials(&out)[0];
        sim.s.connect_failed(sim.now, conn);
        let out = sim.drain();
        assert_eq!(server_msgs(&out), vec![ServerRequest::CantConnectToPeer { token: 32, user: PEER.into() }]);
    }

    #[test]
    fn browse_and_folder_contents() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        sim.drain();
        // A share list nobody asked for is skipped undecoded (its body is garbage here).
        let mut junk = 5u32.to_le_bytes().to_vec();
        junk.extend_from_slice(b"not zlib");
        let mut frame = (junk.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&junk);
        sim.s.handle_input(sim.now, p, &frame);
        assert!(sim.drain().is_empty());
        sim.s.browse(sim.now, PEER);
        let out = sim.drain();
        assert_eq!(peer_msgs(&sent(&out, p)), vec![PeerMessage::SharedFileListRequest]);
        let list = SharedFileList {
            dirs: vec![SharedDirectory { path: "m".into(), files: vec![SharedFile::new("a.mp3", 1)] }],
            unknown: Some(0),
            private_dirs: None,
        };
        let out = sim.peer_says(p, PeerMessage::SharedFileListResponse(list.clone()));
        assert_eq!(events(&out), vec![SessionEvent::Browsed { user: PEER.into(), list }]);
        let token = sim.s.folder_contents(sim.now, PEER, "m");
        sim.drain();
        assert_eq!(
            events(&sim.at(BROWSE_WAIT.as_secs())),
            vec![SessionEvent::BrowseFailed { user: PEER.into(), why: "no answer".into() }]
        );
        let out = sim.peer_says(p, PeerMessage::FolderContentsResponse { token, folder: "m".into(), dirs: vec![] });
        assert!(events(&out).is_empty(), "a late answer is dropped");
    }

    #[test]
    fn peer_init_must_come_in_time() {
        let mut sim = Sim::new();
        let conn = sim.s.accepted(sim.now);
        // Trickling bytes does not extend the deadline.
        sim.s.handle_input(sim.now, conn, &[1, 0]);
        sim.at(20);
        sim.s.handle_input(sim.now, conn, &[0]);
        assert!(sim.at(PEER_INIT_TIMEOUT.as_secs() - 1).is_empty());
        assert!(sim.at(PEER_INIT_TIMEOUT.as_secs()).contains(&Output::Close { conn }));
        // An F connection's token too.
        let f = sim.s.accepted(sim.now);
        let init = PeerInit::PeerInit { user: PEER.into(), conn_type: "F".into(), token: 0 };
        sim.s.handle_input(sim.now, f, &init.encode());
        sim.s.handle_input(sim.now, f, &[1, 2]);
        assert!(sim.at(2 * PEER_INIT_TIMEOUT.as_secs()).contains(&Output::Close { conn: f }));
        assert_eq!(sim.s.peer_connections(), 0);
    }

    #[test]
    fn peer_message_limits() {
        let mut sim = Sim::new();
        // Over MAX_PEER_MESSAGE: refused from the header.
        let p = sim.incoming_p();
        sim.s.handle_input(sim.now, p, &((MAX_PEER_MESSAGE + 1) as u32).to_le_bytes());
        assert!(sim.drain().contains(&Output::Close { conn: p }));
        // A message begun and never finished: dropped after PEER_FRAME_TIMEOUT.
        let p = sim.incoming_p();
        let mut part = 100u32.to_le_bytes().to_vec();
        part.extend_from_slice(&4u32.to_le_bytes());
        sim.s.handle_input(sim.now, p, &part);
        let start = sim.now - sim.t0;
        assert!(sim.at(start.as_secs() + PEER_FRAME_TIMEOUT.as_secs() - 1).is_empty());
        assert!(sim.at(start.as_secs() + PEER_FRAME_TIMEOUT.as_secs()).contains(&Output::Close { conn: p }));
        // PEER_BUFFER_BUDGET over all connections: the one that would go past it is
        // dropped, the others keep their bytes.
        let chunk = MAX_PEER_MESSAGE - 1024;
        let mut big = (MAX_PEER_MESSAGE as u32).to_le_bytes().to_vec();
        big.extend_from_slice(&4u32.to_le_bytes());
        big.resize(chunk, 0);
        let conns: Vec<ConnId> = (0..3).map(|_| sim.incoming_p()).collect();
        sim.drain();
        for &c in &conns {
            sim.s.handle_input(sim.now, c, &big);
        }
        let out = sim.drain();
        assert!(!out.contains(&Output::Close { conn: conns[0] }));
        assert!(!out.contains(&Output::Close { conn: conns[1] }));
        assert!(out.contains(&Output::Close { conn: conns[2] }));
        // Closing one gives its share back.
        sim.s.closed(sim.now, conns[0]);
        let c = sim.incoming_p();
        sim.s.handle_input(sim.now, c, &big);
        assert!(!sim.drain().contains(&Output::Close { conn: c }));
    }

    #[test]
    fn a_message_the_budget_cannot_hold_is_refused_at_its_length() {
        let mut sim = Sim::new();
        // Two connections announce the largest message: the budget holds both, though
        // neither has sent its body yet.
        let header = |len: usize| {
            let mut h = (len as u32).to_le_bytes().to_vec();
            h.extend_from_slice(&4u32.to_le_bytes());
            h
        };
        let conns: Vec<ConnId> = (0..3).map(|_| sim.incoming_p()).collect();
        sim.drain();
        sim.s.handle_input(sim.now, conns[0], &header(MAX_PEER_MESSAGE));
        sim.s.handle_input(sim.now, conns[1], &header(MAX_PEER_MESSAGE));
        assert!(sim.drain().iter().all(|o| !matches!(o, Output::Close { .. })));
        // A third announcing even a small message past what is left is dropped at once,
        // eight bytes in.
        sim.s.handle_input(sim.now, conns[2], &header(1024));
        assert!(sim.drain().contains(&Output::Close { conn: conns[2] }));
        // The first two still take their bodies.
        let body = vec![0u8; MAX_PEER_MESSAGE - 4];
        sim.s.handle_input(sim.now, conns[0], &body);
        assert!(!sim.drain().contains(&Output::Close { conn: conns[0] }));
        // Finished, its share is back: a new connection's small message is taken.
        let c = sim.incoming_p();
        sim.drain();
        sim.s.handle_input(sim.now, c, &header(1024));
        assert!(!sim.drain().contains(&Output::Close { conn: c }));
    }

    #[test]
    fn room_members_follow_joins_and_leaves() {
        use crate::server::{RoomUser, UserStats};
        use crate::UserStatus;
        let member = |name: &str| RoomUser {
            name: name.into(),
            status: UserStatus::Online,
            stats: UserStats { avg_speed: 1, upload_num: 0, unknown: 0, files: 10, dirs: 2 },
            slots_full: 0,
            country: String::new(),
        };
        let mut sim = Sim::new();
        sim.server_says(ServerResponse::JoinRoom {
            room: "r".into(),
            users: vec![member("Ann"), member("bob")],
            private: None,
        });
        sim.server_says(ServerResponse::UserJoinedRoom { room: "r".into(), user: member("carl") });
        sim.server_says(ServerResponse::UserLeftRoom { room: "r".into(), user: "BOB".into() });
        let names: Vec<String> = sim.s.room_members("r").into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["Ann", "carl"]);
        assert_eq!(sim.s.joined_rooms(), ["r"]);
        // Someone joining a room we are not in is not kept.
        sim.server_says(ServerResponse::UserJoinedRoom { room: "other".into(), user: member("dan") });
        assert!(sim.s.room_members("other").is_empty());
        sim.server_says(ServerResponse::LeaveRoom { room: "r".into() });
        assert!(sim.s.room_members("r").is_empty());
    }

    #[test]
    fn a_closed_connection_is_not_reused() {
        let mut sim = Sim::new();
        let p = sim.incoming_p();
        sim.s.closed(sim.now, p);
        sim.s.download(sim.now, PEER, "a.mp3", None);
        let out = sim.drain();
        assert!(sent(&out, p).is_empty());
        let (_, msgs) = sim.dial_p(&out);
        assert_eq!(msgs, vec![queue("a.mp3")]);
    }

    #[test]
    fn chat_and_keepalive() {
        let mut sim = Sim::new();
        let out = sim.server_says(ServerResponse::MessageUser {
            id: 9,
            timestamp: 0,
            user: "a".into(),
            message: "hi".into(),
            new_message: true,
        });
        assert_eq!(server_msgs(&out), vec![ServerRequest::MessageAcked { id: 9 }]);
        assert_eq!(events(&out), vec![SessionEvent::PrivateMessage { user: "a".into(), text: "hi".into() }]);
        let out = sim.at(SERVER_PING_INTERVAL.as_secs());
        assert_eq!(server_msgs(&out), vec![ServerRequest::ServerPing]);
        assert_eq!(sim.s.poll_timeout(), Some(sim.now + SERVER_PING_INTERVAL));
    }

    #[test]
    fn presence_asked_and_told() {
        use crate::server::{UserStats, WatchedUser};
        let mut sim = Sim::new();
        sim.s.ask_presence("Nobody");
        let out = sim.drain();
        assert_eq!(server_msgs(&out), vec![ServerRequest::WatchUser { user: "Nobody".into() }]);
        let out = sim.server_says(ServerResponse::WatchUser { user: "Nobody".into(), exists: false, details: None });
        assert_eq!(events(&out), vec![SessionEvent::Presence { user: "Nobody".into(), exists: false, status: None }]);
        let details = WatchedUser { status: UserStatus::Offline, stats: UserStats::default(), country: None };
        let out =
            sim.server_says(ServerResponse::WatchUser { user: "carol".into(), exists: true, details: Some(details) });
        assert_eq!(
            events(&out),
            vec![SessionEvent::Presence { user: "carol".into(), exists: true, status: Some(UserStatus::Offline) }]
        );
    }

    // ---- distributed network -----------------------------------------------------------

    use crate::distributed::DistributedMessage;
    use crate::server::PossibleParent;

    fn d_msgs(data: &[Vec<u8>]) -> Vec<DistributedMessage> {
        data.iter()
            .flat_map(|d| frames(FrameKind::Distributed, d))
            .map(|f| DistributedMessage::from_frame(&f).unwrap())
            .collect()
    }

    fn d_search(user: &str, token: u32, query: &str) -> DistributedMessage {
        DistributedMessage::Search { user: user.into(), token, query: query.into() }
    }

    /// A sim whose login output is returned too.
    fn sim_with(max_children: usize) -> (Sim, Vec<Output>) {
        let t0 = Instant::now();
        let s = ClientSession::new(SessionConfig {
            user: "me".into(),
            password: "pw".into(),
            listen_port: 2234,
            major_version: 177,
            minor_version: 1,
            first_token: 100,
            shared: (1, 3),
            max_children,
        });
        let mut sim = Sim { s, t0, now: t0 };
        sim.s.server_connected(t0);
        sim.drain();
        let out = sim.server_says(ServerResponse::LoginSuccess {
            greet: "hi".into(),
            own_ip: Ipv4Addr::LOCALHOST,
            password_hash: String::new(),
            supporter: false,
        });
        (sim, out)
    }

    /// A user opens a `D` connection to us; returns it.
    fn incoming_d(sim: &mut Sim, user: &str) -> (ConnId, Vec<Output>) {
        let conn = sim.s.accepted(sim.now);
        let init = PeerInit::PeerInit { user: user.into(), conn_type: "D".into(), token: 0 };
        sim.s.handle_input(sim.now, conn, &init.encode());
        (conn, sim.drain())
    }

    fn closes(out: &[Output], conn: ConnId) -> bool {
        out.contains(&Output::Close { conn })
    }

    #[test]
    fn joins_the_first_candidate_that_tells_its_place_and_passes_searches_down() {
        let (mut sim, out) = sim_with(DEFAULT_MAX_CHILDREN);
        let login = server_msgs(&out);
        for m in [
            ServerRequest::HaveNoParent { no_parent: true },
            ServerRequest::BranchRoot { root: "me".into() },
            ServerRequest::BranchLevel { level: 0 },
            ServerRequest::AcceptChildren { accept: false },
        ] {
            assert!(login.contains(&m), "{m:?} at login: {login:?}");
        }
        // No parent, not a root: a would-be child is refused.
        let (kid, out) = incoming_d(&mut sim, "kid");
        assert!(closes(&out, kid));
        assert_eq!(sim.s.peer_connections(), 0, "the refused connection is forgotten");
        // Two candidates: both dialled, each gets our PeerInit D.
        let parent =
            |user: &str, last: u8| PossibleParent { user: user.into(), ip: Ipv4Addr::new(10, 0, 0, last), port: 2000 };
        let out = sim.server_says(ServerResponse::PossibleParents {
            parents: vec![parent("p1", 1), parent("p2", 2), parent("me", 3)],
        });
        let d = dials(&out);
        assert_eq!(
            d.iter().map(|(_, a)| *a.ip()).collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
        );
        let (c1, c2) = (d[0].0, d[1].0);
        for c in [c1, c2] {
            sim.s.connected(sim.now, c);
            let out = sim.drain();
            let init = PeerInit::from_frame(&frames(FrameKind::PeerInit, &sent(&out, c)[0])[0]).unwrap();
            assert!(matches!(init, PeerInit::PeerInit { ref conn_type, .. } if conn_type == "D"));
        }
        // p2 says where it stands first: it is our parent, p1 is dropped.
        sim.s.handle_input(sim.now, c2, &DistributedMessage::BranchLevel { level: 1 }.encode());
        assert!(sim.drain().iter().all(|o| !matches!(o, Output::Send { conn: SERVER, .. })), "not before the root");
        sim.s.handle_input(sim.now, c2, &DistributedMessage::BranchRoot { root: "top".into() }.encode());
        let out = sim.drain();
        assert!(closes(&out, c1));
        let told = server_msgs(&out);
        assert_eq!(
            told,
            [
                ServerRequest::HaveNoParent { no_parent: false },
                ServerRequest::BranchRoot { root: "top".into() },
                ServerRequest::BranchLevel { level: 2 },
                ServerRequest::AcceptChildren { accept: true },
            ]
        );
        assert_eq!(sim.s.distributed_status().parent.as_deref(), Some("p2"));
        // A child now is taken and told our place.
        let (kid, out) = incoming_d(&mut sim, "kid");
        assert!(!closes(&out, kid));
        assert_eq!(
            d_msgs(&sent(&out, kid)),
            [DistributedMessage::BranchLevel { level: 2 }, DistributedMessage::BranchRoot { root: "top".into() }]
        );
        // A search from the parent: asked of us, and passed down unchanged.
        sim.s.handle_input(sim.now, c2, &d_search("bob", 5, "galway").encode());
        let out = sim.drain();
        assert!(events(&out).contains(&SessionEvent::SearchRequest {
            user: "bob".into(),
            token: 5,
            query: "galway".into()
        }));
        assert_eq!(d_msgs(&sent(&out, kid)), [d_search("bob", 5, "galway")]);
        // Our own search coming back down is passed on but not answered.
        sim.s.handle_input(sim.now, c2, &d_search("me", 6, "x").encode());
        let out = sim.drain();
        assert!(!events(&out).iter().any(|e| matches!(e, SessionEvent::SearchRequest { .. })));
        // The parent's level changes: ours follows, told to the server and the child.
        sim.s.handle_input(sim.now, c2, &DistributedMessage::BranchLevel { level: 3 }.encode());
        let out = sim.drain();
        assert_eq!(server_msgs(&out), [ServerRequest::BranchLevel { level: 4 }]);
        assert_eq!(d_msgs(&sent(&out, kid)), [DistributedMessage::BranchLevel { level: 4 }]);
        // The parent goes: back to asking for one; the child hears we hang under nobody.
        sim.s.closed(sim.now, c2);
        let out = sim.drain();
        let told = server_msgs(&out);
        assert!(told.contains(&ServerRequest::HaveNoParent { no_parent: true }));
        assert!(told.contains(&ServerRequest::AcceptChildren { accept: false }));
        assert_eq!(
            d_msgs(&sent(&out, kid)),
            [DistributedMessage::BranchLevel { level: 0 }, DistributedMessage::BranchRoot { root: "me".into() }]
        );
        // Garbage on a D connection costs that connection only.
        sim.s.handle_input(sim.now, kid, &[3, 0, 0, 0, 4, 1, 2]);
        sim.s.handle_input(sim.now, kid, &[0xff, 0xff, 0xff, 0x7f, 3]);
        assert!(closes(&sim.drain(), kid));
        assert!(sim.s.is_logged_in());
    }

    #[test]
    fn a_branch_root_fed_by_the_server_takes_children_up_to_the_limit() {
        let (mut sim, _) = sim_with(1);
        let body = d_search("bob", 9, "galway").encode_body();
        let out = sim.server_says(ServerResponse::EmbeddedMessage { code: 3, body: body.clone() });
        assert!(events(&out).contains(&SessionEvent::SearchRequest {
            user: "bob".into(),
            token: 9,
            query: "galway".into()
        }));
        assert_eq!(server_msgs(&out), [ServerRequest::AcceptChildren { accept: true }]);
        assert!(sim.s.distributed_status().server_parent);
        let (kid, out) = incoming_d(&mut sim, "kid");
        assert!(!closes(&out, kid));
        assert_eq!(d_msgs(&sent(&out, kid))[0], DistributedMessage::BranchLevel { level: 0 });
        assert_eq!(server_msgs(&out), [ServerRequest::AcceptChildren { accept: false }], "full at 1");
        let (kid2, out) = incoming_d(&mut sim, "kid2");
        assert!(closes(&out, kid2), "over the limit");
        // The next embedded search reaches the child as a distributed search.
        let out = sim.server_says(ServerResponse::EmbeddedMessage { code: 3, body });
        assert_eq!(d_msgs(&sent(&out, kid)), [d_search("bob", 9, "galway")]);
        // The child leaves: room again.
        sim.s.closed(sim.now, kid);
        assert_eq!(server_msgs(&sim.drain()), [ServerRequest::AcceptChildren { accept: true }]);
        // A ConnectToPeer of type D (a firewalled would-be child): we dial and pierce.
        let out = sim.server_says(ServerResponse::ConnectToPeer {
            user: "kid3".into(),
            conn_type: "D".into(),
            ip: PEER_IP,
            port: 2240,
            token: 77,
            privileged: false,
            obf_type: 0,
            obf_port: 0,
        });
        let (c, _) = dials(&out)[0];
        sim.s.connected(sim.now, c);
        let out = sim.drain();
        let data = sent(&out, c);
        assert_eq!(
            PeerInit::from_frame(&frames(FrameKind::PeerInit, &data[0])[0]).unwrap(),
            PeerInit::PierceFireWall { token: 77 }
        );
        assert_eq!(d_msgs(&data[1..])[0], DistributedMessage::BranchLevel { level: 0 });
        assert_eq!(sim.s.distributed_status().children, ["kid3"]);
    }

    #[test]
    fn an_unreachable_candidate_is_tried_through_the_server_and_pierces_to_us() {
        let (mut sim, _) = sim_with(DEFAULT_MAX_CHILDREN);
        let out = sim.server_says(ServerResponse::PossibleParents {
            parents: vec![PossibleParent { user: "p1".into(), ip: PEER_IP, port: 2000 }],
        });
        let (c, _) = dials(&out)[0];
        sim.s.connect_failed(sim.now, c);
        let out = sim.drain();
        let token = match &server_msgs(&out)[..] {
            [ServerRequest::ConnectToPeer { token, user, conn_type }] if user == "p1" && conn_type == "D" => *token,
            other => panic!("{other:?}"),
        };
        let conn = sim.s.accepted(sim.now);
        let mut bytes = PeerInit::PierceFireWall { token }.encode();
        bytes.extend(DistributedMessage::BranchLevel { level: 0 }.encode());
        sim.s.handle_input(sim.now, conn, &bytes);
        let out = sim.drain();
        assert!(server_msgs(&out).contains(&ServerRequest::BranchLevel { level: 1 }));
        assert!(server_msgs(&out).contains(&ServerRequest::BranchRoot { root: "p1".into() }));
        assert_eq!(sim.s.distributed_status().parent.as_deref(), Some("p1"));
        // A reset from the server: parent dropped, asking again.
        let out = sim.server_says(ServerResponse::ResetDistributed);
        assert!(closes(&out, conn));
        assert!(server_msgs(&out).contains(&ServerRequest::HaveNoParent { no_parent: true }));
    }
}
