//! A Soulseek client: the driver of [`omnipeer_slsk::session::ClientSession`], the sans-IO
//! machine that owns the protocol (login, searches, browse, peer connections direct and
//! indirect, the download and upload negotiations with every wait and resend, and the
//! limits on what peers send: `docs/protocols/soulseek.md#client-session`).
//!
//! This module keeps only what a machine cannot: sockets (the server connection, the
//! peer port, dials), files (the share index, downloads written to disk, uploads sent with
//! `sendfile`), the node's shared upload slots and queue ([`Uploads`]), and the clock.
//! One task, the pump, owns the machine; every socket has a small task that writes what
//! the pump hands it and reads one chunk per permission from the pump, so that when the
//! machine hands an `F` connection over no byte of it is left behind in a channel.
//!
//! Here: the client's API, the pump that owns the machine and carries out its outputs,
//! and the translation of its events for the node. Beside it: [`shares`] (the share as
//! peers ask about it), [`sockets`] (one task per socket), [`files`] (downloads written,
//! uploads served).

mod files;
mod shares;
mod sockets;

use crate::share::{ShareIndex, SharedIndex};
use crate::upload::Uploads;
use anyhow::{anyhow, bail, Context};
use omnipeer_slsk::peer::{PeerMessage, SearchResponse, SharedFileList};
use omnipeer_slsk::session::{
    ClientSession, ConnId, DownloadId, Output, PeerRequest, SessionConfig, SessionEvent, UploadId, SERVER,
};
use omnipeer_slsk::shares::SharedDirectory;
use omnipeer_slsk::UserStatus;
use shares::Shares;
use sockets::{conn_task, sleep_until_some, ConnCmd, Input};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use omnipeer_slsk::session::{
    MAX_PEER_INFLATED, MAX_PEER_MESSAGE, PEER_BUFFER_BUDGET, PEER_FRAME_TIMEOUT, PEER_INIT_TIMEOUT,
};

/// Our client version in Login: 177 is unassigned ("experimental").
pub const MAJOR_VERSION: u32 = 177;
const MINOR_VERSION: u32 = 1;
/// How long a TCP connect to a peer may take (the machine gives up the attempt itself
/// after `session::PEER_CONNECT_WAIT`; this only ends the socket call).
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long raw file data may stall.
const DATA_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a PlaceInQueueRequest may wait for its answer.
const PLACE_WAIT: Duration = Duration::from_secs(10);
/// How long the server may take to say whether a user exists ([`SlskClient::presence`]).
pub const PRESENCE_WAIT: Duration = Duration::from_secs(10);
/// What the server says of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// The account exists.
    pub exists: bool,
    /// Online or away (`None`: no status, the account does not exist).
    pub online: Option<bool>,
}
/// How long the server may take to answer Login.
const LOGIN_WAIT: Duration = Duration::from_secs(30);
/// Bytes per raw read on F connections.
const CHUNK: usize = 256 * 1024;

/// Client settings.
#[derive(Debug, Clone)]
pub struct SlskClientConfig {
    /// The server, host:port.
    pub server: String,
    /// Our user name.
    pub user: String,
    /// Our password.
    pub password: String,
    /// Where we accept peer connections (`0` port: any free one).
    pub listen: SocketAddr,
    /// Shared folders (each a top-level virtual folder named after it).
    pub share: Vec<PathBuf>,
    /// Upload slots (when `uploads` is None).
    pub slots: usize,
    /// Upload slots, queue and limit shared with the node's other networks; None: the
    /// client's own, with `slots` slots and no limit.
    pub uploads: Option<Arc<Uploads>>,
}

/// What the client reports.
#[derive(Debug, Clone)]
pub enum SlskEvent {
    /// A search result (one per file).
    SearchResult {
        /// Who has it.
        user: String,
        /// Its virtual path.
        path: String,
        /// Its size.
        size: u64,
        /// Whether the user has a free slot.
        free_slot: bool,
        /// The user's queue length.
        queue: u32,
        /// The user's average upload speed, bytes/s.
        speed: u32,
        /// Audio attributes, when the sharer gave them.
        audio: omnipeer_slsk::shares::AudioInfo,
        /// The token of the search it answers ([`SlskClient::search`]'s return value).
        token: u32,
    },
    /// A private message.
    PrivateMessage {
        /// From.
        user: String,
        /// Text.
        text: String,
    },
    /// A line said in a chat room we are in (our own lines come back this way too).
    RoomMessage {
        /// Room.
        room: String,
        /// Speaker.
        user: String,
        /// Text.
        text: String,
    },
    /// We are in a room now (the server's JoinRoom answer).
    JoinedRoom {
        /// Room.
        room: String,
    },
    /// An upload finished.
    Uploaded {
        /// To whom.
        user: String,
        /// What.
        path: String,
    },
}

/// Waiters for PlaceInQueueResponse by (user lower-cased, file).
type PlaceWaiters = HashMap<(String, String), Vec<oneshot::Sender<u32>>>;
/// Who waits for a user's SharedFileListResponse (by lowercased user).
type BrowseWaiters = HashMap<String, Vec<oneshot::Sender<Result<SharedFileList, String>>>>;
/// Who waits for a FolderContentsResponse: by token, with the user asked.
type FolderWaiters = HashMap<u32, (String, oneshot::Sender<Result<Vec<SharedDirectory>, String>>)>;

/// A download's `F` connection, handed over by the machine: the offset is ours to write.
struct FConn {
    stream: TcpStream,
    size: u64,
    rest: Vec<u8>,
}

/// The machine and what the driver keeps beside it, under one lock.
struct Core {
    session: ClientSession,
    /// Socket tasks by connection.
    conns: HashMap<ConnId, mpsc::UnboundedSender<ConnCmd>>,
    /// Dialled sockets not yet given a task (within one flush), and bytes for them.
    fresh: HashMap<ConnId, (TcpStream, Vec<u8>)>,
    /// Who waits for a download's `F` connection.
    downloads: HashMap<DownloadId, oneshot::Sender<Result<FConn, String>>>,
    /// Uploads granted: (user, file).
    granted: HashMap<UploadId, (String, String)>,
    /// Who waits for a PlaceInQueueResponse.
    place_waiters: PlaceWaiters,
    /// Who waits for what the server says of a user ([`SlskClient::presence`]), by
    /// lower-cased user.
    presence_waiters: HashMap<String, Vec<oneshot::Sender<Presence>>>,
    /// Who waits for a browse ([`SlskClient::browse`]).
    browse_waiters: BrowseWaiters,
    /// Who waits for a folder's contents ([`SlskClient::folder_contents`]).
    folder_waiters: FolderWaiters,
    /// Who waits for the login answer.
    login: Option<oneshot::Sender<Result<(), String>>>,
    /// Events for the node, handed over by the pump outside the lock (where it may wait:
    /// the node's queue is bounded and nothing is dropped, crate::events).
    events: std::collections::VecDeque<SlskEvent>,
}

struct Inner {
    cfg: SlskClientConfig,
    listen_port: u16,
    /// The node's share index (or the client's own), replaced whole by a rescan.
    shares: SharedIndex,
    /// Whether `shares` is the client's own (not the node's).
    own_index: bool,
    events: crate::events::EventSink<SlskEvent>,
    /// Slots, queue, limit and records of uploads.
    up: Arc<Uploads>,
    /// The name this session's uploads go by in `up` (`slsk`, or `slsk@LABEL`).
    channel: String,
    core: std::sync::Mutex<Core>,
    /// Socket tasks → pump.
    input: mpsc::UnboundedSender<Input>,
    /// Wakes the pump when a method changed the machine (its next timer may be earlier).
    wake: tokio::sync::Notify,
    shutdown: CancellationToken,
}

impl Inner {
    fn shares(&self) -> Shares {
        Shares(self.shares.current())
    }

    /// Act on the machine, then carry out what it asks.
    fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut Core, std::time::Instant) -> R) -> R {
        let mut core = self.core.lock().expect("slsk core");
        let r = f(&mut core, std::time::Instant::now());
        self.flush(&mut core);
        drop(core);
        self.wake.notify_one();
        r
    }
}

/// A running client.
pub struct SlskClient {
    inner: Arc<Inner>,
    reshare_lock: tokio::sync::Mutex<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl SlskClient {
    /// Connect, log in, listen. Returns once logged in.
    pub async fn start(cfg: SlskClientConfig) -> anyhow::Result<SlskClient> {
        SlskClient::start_in(cfg, "slsk").await
    }

    /// [`SlskClient::start`] for one of several server sessions sharing `cfg.uploads`:
    /// its uploads go by `channel` there (crate::upload).
    pub async fn start_in(cfg: SlskClientConfig, channel: &str) -> anyhow::Result<SlskClient> {
        // The node's index when it has one (every network reads the same), else our own.
        let node_index = cfg.uploads.as_ref().and_then(|u| u.share());
        let own_index = node_index.is_none();
        let index = node_index.unwrap_or_else(|| SharedIndex::new(cfg.share.clone()));
        let scan = index.clone();
        let shares = Shares(tokio::task::spawn_blocking(move || scan.scanned()).await??);
        let listener =
            TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let listen_port = listener.local_addr()?.port();
        let server =
            TcpStream::connect(&cfg.server).await.with_context(|| format!("cannot connect to {}", cfg.server))?;
        let _ = server.set_nodelay(true);
        let session = ClientSession::new(SessionConfig {
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            listen_port,
            major_version: MAJOR_VERSION,
            minor_version: MINOR_VERSION,
            first_token: rand::random::<u32>() % 1_000_000 + 1,
            shared: (shares.dir_count() as u32, shares.file_count() as u32),
            max_children: omnipeer_slsk::session::DEFAULT_MAX_CHILDREN,
        });
        let events = crate::events::EventSink::default();
        let shutdown = CancellationToken::new();
        let up = match &cfg.uploads {
            Some(u) => u.clone(),
            None => Uploads::standalone(cfg.slots, shutdown.clone()),
        };
        let grants = up.grants(channel);
        let (input, input_rx) = mpsc::unbounded_channel();
        let (login_tx, login_rx) = oneshot::channel();
        let core = Core {
            session,
            conns: HashMap::new(),
            fresh: HashMap::new(),
            downloads: HashMap::new(),
            granted: HashMap::new(),
            place_waiters: HashMap::new(),
            presence_waiters: HashMap::new(),
            browse_waiters: HashMap::new(),
            folder_waiters: HashMap::new(),
            login: Some(login_tx),
            events: std::collections::VecDeque::new(),
        };
        let inner = Arc::new(Inner {
            cfg,
            listen_port,
            shares: index,
            own_index,
            events,
            up,
            channel: channel.to_owned(),
            core: std::sync::Mutex::new(core),
            input,
            wake: tokio::sync::Notify::new(),
            shutdown,
        });
        inner.spawn_conn(SERVER, server);
        inner.with(|c, now| c.session.server_connected(now));
        let task = tokio::spawn(pump(inner.clone(), input_rx, listener));
        let login = tokio::time::timeout(LOGIN_WAIT, login_rx).await;
        let refused = match login {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(why))) => {
                use crate::login::{LoginRefused, Refused};
                // The server's reasons (docs/protocols/soulseek.md): INVALIDPASS,
                // INVALIDUSERNAME, … .
                let kind = match why.to_ascii_uppercase() {
                    w if w.contains("PASS") => Refused::Password,
                    w if w.contains("USERNAME") || w.contains("NAME") => Refused::Name,
                    _ => Refused::Other,
                };
                Some(anyhow::Error::new(LoginRefused { kind, why: format!("login refused: {why}") }))
            }
            Ok(Err(_)) => Some(anyhow!("the server closed the connection")),
            Err(_) => Some(anyhow!("the server did not answer")),
        };
        if let Some(e) = refused {
            inner.shutdown.cancel();
            let _ = task.await;
            return Err(e.context("waiting for the login reply"));
        }
        tokio::spawn(inner.clone().grant_loop(grants));
        Ok(SlskClient { inner, task, reshare_lock: tokio::sync::Mutex::new(()) })
    }

    /// Take at most `n` distributed children (`[slsk_client] max_distributed_children`;
    /// [`omnipeer_slsk::session::DEFAULT_MAX_CHILDREN`] until set).
    pub fn set_max_distributed_children(&self, n: usize) {
        self.inner.with(|c, _| c.session.set_max_children(n));
    }

    /// Our listen port.
    pub fn listen_port(&self) -> u16 {
        self.inner.listen_port
    }

    /// The share index this client reads (the node's one index when it has one).
    pub fn share_index(&self) -> Arc<ShareIndex> {
        self.inner.shares.current()
    }

    /// Files shared.
    pub fn shared_files(&self) -> usize {
        self.inner.shares().file_count()
    }

    /// Index the share folders again and serve the new share in this session (searches,
    /// browsing, uploads), telling the server the new counts (SharedFoldersFiles). No new
    /// login: running transfers and chats go on. Returns the number of files shared.
    pub async fn reshare(&self) -> anyhow::Result<usize> {
        // one at a time, so the newest index is the one that stays
        let _one = self.reshare_lock.lock().await;
        // The node's index: the rescan it requested (unless another network did it);
        // our own: a rescan now.
        let (index, own) = (self.inner.shares.clone(), self.inner.own_index);
        let shares = Shares(
            tokio::task::spawn_blocking(move || {
                if own {
                    index.request_rescan();
                }
                index.rescan_if_requested()
            })
            .await??,
        );
        let (dirs, files) = (shares.dir_count() as u32, shares.file_count() as u32);
        self.inner.with(|c, _| c.session.set_shared(dirs, files));
        Ok(files as usize)
    }

    /// The client's events, from its start, for one consumer (`None` once taken). The
    /// client waits while the consumer is behind (see [`crate::events`]).
    pub fn take_events(&self) -> Option<mpsc::Receiver<SlskEvent>> {
        self.inner.events.take()
    }

    /// Search the network; results arrive as [`SlskEvent::SearchResult`].
    pub fn search(&self, query: &str) -> u32 {
        self.inner.with(|c, _| c.session.search(query))
    }

    /// Send a wishlist search (see [`omnipeer_slsk::session::ClientSession::wishlist_search`]).
    pub fn wishlist_search(&self, query: &str) -> u32 {
        self.inner.with(|c, _| c.session.wishlist_search(query))
    }

    /// How often the server lets wishlist searches run.
    pub fn wishlist_interval(&self) -> Duration {
        self.inner.with(|c, _| c.session.wishlist_interval())
    }

    /// The members of a room we are in.
    pub fn room_members(&self, room: &str) -> Vec<omnipeer_slsk::server::RoomUser> {
        self.inner.with(|c, _| c.session.room_members(room))
    }

    /// Join a chat room (created if it does not exist); [`SlskEvent::JoinedRoom`] follows.
    pub fn join_room(&self, room: &str) {
        self.inner.with(|c, _| c.session.join_room(room))
    }

    /// Say something in a room we are in.
    pub fn say_room(&self, room: &str, text: &str) {
        self.inner.with(|c, _| c.session.say_room(room, text))
    }

    /// What the server says of `user`: whether the account exists and whether it is
    /// online (`None` when the server did not answer within [`PRESENCE_WAIT`]).
    pub async fn presence(&self, user: &str) -> Option<Presence> {
        let (tx, rx) = oneshot::channel();
        self.inner.with(|c, _| {
            let waiters = c.presence_waiters.entry(user.to_lowercase()).or_default();
            // Askers that gave up (timed out) are not kept.
            waiters.retain(|w| !w.is_closed());
            waiters.push(tx);
            c.session.ask_presence(user);
        });
        tokio::time::timeout(PRESENCE_WAIT, rx).await.ok()?.ok()
    }

    /// Send a private message (the server keeps it if the user is offline).
    pub fn message_user(&self, user: &str, text: &str) {
        self.inner.with(|c, _| c.session.message_user(user, text))
    }

    /// Log out without waiting (the session ends shortly; see [`SlskClient::is_online`]).
    pub fn close(&self) {
        self.inner.shutdown.cancel();
    }

    /// Whether the server session is still up.
    pub fn is_online(&self) -> bool {
        !self.task.is_finished()
    }

    /// Download `path` from `user` into `out_dir`, resuming a partial file there, at
    /// whatever size the uploader announces. `progress` gets (bytes held, total).
    pub async fn download(
        &self,
        user: &str,
        path: &str,
        out_dir: &std::path::Path,
        progress: Arc<(AtomicU64, AtomicU64)>,
    ) -> anyhow::Result<(PathBuf, u64, u64)> {
        self.download_with(user, path, out_dir, None, progress, &crate::ratelimit::TransferControl::default()).await
    }

    /// [`SlskClient::download`] paced by `control`'s rate limit. With `expected` (the size
    /// the user chose, e.g. from the search result), an uploader whose TransferRequest
    /// announces another size is refused before a byte is written ("peer offered N bytes
    /// of a file of M"), and no more than `expected` bytes are ever written.
    pub async fn download_with(
        &self,
        user: &str,
        path: &str,
        out_dir: &std::path::Path,
        expected: Option<u64>,
        progress: Arc<(AtomicU64, AtomicU64)>,
        control: &crate::ratelimit::TransferControl,
    ) -> anyhow::Result<(PathBuf, u64, u64)> {
        let name = path.rsplit(['\\', '/']).next().unwrap_or(path);
        let safe = omnipeer_dcc::SafeName::sanitize(name).map_err(|e| anyhow!("cannot store {name:?}: {e}"))?;
        // A SafeName is one ordinary path component: the join stays inside `out_dir`.
        let out = out_dir.join(safe.as_str());
        let (done_tx, done_rx) = oneshot::channel();
        // The machine asks, resends, waits and matches; this call waits for its verdict.
        let id = self.inner.with(|c, now| {
            let id = c.session.download(now, user, path, expected);
            c.downloads.insert(id, done_tx);
            id
        });
        // However this call ends (cancelled by the node included), the machine forgets the
        // attempt: a retry never meets its leftovers.
        let _forget = ForgetDownload { inner: &self.inner, id };
        let FConn { stream, size, rest } =
            done_rx.await.map_err(|_| anyhow!("the client stopped"))?.map_err(|why| anyhow!("{why}"))?;
        files::receive(FConn { stream, size, rest }, user, &out, &progress, control).await
    }

    /// `length` bytes of `path` from `user` starting at `start`, handed to `sink` as they
    /// come, for a segmented download (`crate::segments`): the usual negotiation (queued
    /// at the uploader, which sends a TransferRequest when a slot frees), then `start` as
    /// the F connection's file offset, and the connection closed once the segment is in
    /// (docs/protocols/soulseek.md, "Offsets and segments"). The uploader must announce
    /// `size`. Paced by `control`'s download limit.
    #[allow(clippy::too_many_arguments)]
    pub async fn download_range(
        &self,
        user: &str,
        path: &str,
        size: u64,
        start: u64,
        length: u64,
        sink: &mut (dyn FnMut(&[u8]) + Send),
        control: &crate::ratelimit::TransferControl,
    ) -> anyhow::Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        let id = self.inner.with(|c, now| {
            let id = c.session.download(now, user, path, Some(size));
            c.downloads.insert(id, done_tx);
            id
        });
        let _forget = ForgetDownload { inner: &self.inner, id };
        let conn = done_rx.await.map_err(|_| anyhow!("the client stopped"))?.map_err(|why| anyhow!("{why}"))?;
        files::receive_range(conn, user, start, length, sink, control).await
    }

    /// Ask `user` where `path` stands in its upload queue (PlaceInQueueRequest, answered
    /// by PlaceInQueueResponse): 1 = next.
    pub async fn place_in_queue(&self, user: &str, path: &str) -> anyhow::Result<u32> {
        let (tx, rx) = oneshot::channel();
        self.inner.with(|c, now| {
            c.place_waiters.entry((user.to_lowercase(), path.to_owned())).or_default().push(tx);
            c.session.ask_place_of(now, user, path);
        });
        tokio::time::timeout(PLACE_WAIT, rx)
            .await
            .map_err(|_| anyhow!("{user} did not say where {path} is in its queue"))?
            .map_err(|_| anyhow!("the client stopped"))
    }

    /// Browse `user`'s whole share (SharedFileListRequest(4), answered by
    /// SharedFileListResponse(5)): the machine connects, asks, and gives up after
    /// `omnipeer_slsk::session::BROWSE_WAIT`; an unreachable user fails sooner.
    pub async fn browse(&self, user: &str) -> anyhow::Result<SharedFileList> {
        let (tx, rx) = oneshot::channel();
        self.inner.with(|c, now| {
            c.browse_waiters.entry(user.to_lowercase()).or_default().push(tx);
            c.session.browse(now, user);
        });
        rx.await.map_err(|_| anyhow!("the client stopped"))?.map_err(|why| anyhow!("{user} did not answer: {why}"))
    }

    /// One folder of `user`'s share and its subfolders (FolderContentsRequest(36),
    /// answered by FolderContentsResponse(37)).
    pub async fn folder_contents(&self, user: &str, folder: &str) -> anyhow::Result<Vec<SharedDirectory>> {
        let (tx, rx) = oneshot::channel();
        self.inner.with(|c, now| {
            let token = c.session.folder_contents(now, user, folder);
            c.folder_waiters.insert(token, (user.to_lowercase(), tx));
        });
        rx.await.map_err(|_| anyhow!("the client stopped"))?.map_err(|why| anyhow!("{user} did not answer: {why}"))
    }

    /// The uploads this client serves (shared with the node when it gave them).
    pub fn uploads(&self) -> Arc<Uploads> {
        self.inner.up.clone()
    }

    /// Log out.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.inner.shutdown.cancel();
        self.task.await?
    }

    /// Run until `shutdown` or the server closes.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let SlskClient { inner, mut task, .. } = self;
        tokio::select! {
            _ = shutdown.cancelled() => { inner.shutdown.cancel(); (&mut task).await? }
            r = &mut task => r?,
        }
    }
}

/// Tells the machine a download call ended (a no-op when it already handed the file over).
struct ForgetDownload<'a> {
    inner: &'a Arc<Inner>,
    id: DownloadId,
}

impl Drop for ForgetDownload<'_> {
    fn drop(&mut self) {
        let id = self.id;
        self.inner.with(|c, _| {
            c.session.cancel_download(id);
            c.downloads.remove(&id);
        });
    }
}

impl Inner {
    /// Give `stream` a task that writes what the pump sends and reads on permission.
    fn spawn_conn(&self, conn: ConnId, stream: TcpStream) -> mpsc::UnboundedSender<ConnCmd> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.core.lock().expect("slsk core").conns.insert(conn, tx.clone());
        tokio::spawn(conn_task(conn, stream, rx, self.input.clone(), self.shutdown.clone()));
        tx
    }

    /// Carry out everything the machine asks.
    fn flush(self: &Arc<Self>, core: &mut Core) {
        while let Some(out) = core.session.poll_output() {
            match out {
                Output::Dial { conn, addr } => {
                    let input = self.input.clone();
                    tokio::spawn(async move {
                        let s = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await;
                        let _ = input.send(Input::Dialed(conn, s.ok().and_then(|r| r.ok())));
                    });
                }
                Output::Send { conn, data } => {
                    if let Some(tx) = core.conns.get(&conn) {
                        let _ = tx.send(ConnCmd::Write(data));
                    } else if let Some((_, prefix)) = core.fresh.get_mut(&conn) {
                        prefix.extend_from_slice(&data);
                    }
                }
                Output::Close { conn } => {
                    if let Some(tx) = core.conns.remove(&conn) {
                        let _ = tx.send(ConnCmd::Close);
                    }
                    core.fresh.remove(&conn);
                }
                Output::Event(e) => self.on_event(core, e),
            }
        }
        // Dialled sockets the machine kept: they get their task now, with what it wrote.
        let fresh: Vec<(ConnId, (TcpStream, Vec<u8>))> = core.fresh.drain().collect();
        for (conn, (stream, prefix)) in fresh {
            let (tx, rx) = mpsc::unbounded_channel();
            if !prefix.is_empty() {
                let _ = tx.send(ConnCmd::Write(prefix));
            }
            core.conns.insert(conn, tx);
            tokio::spawn(conn_task(conn, stream, rx, self.input.clone(), self.shutdown.clone()));
        }
    }

    /// Take a connection back from the machine's world: its socket (once what was written
    /// to it is out), and bytes still to write first.
    fn take_stream(&self, core: &mut Core, conn: ConnId) -> (oneshot::Receiver<TcpStream>, Vec<u8>) {
        let (tx, rx) = oneshot::channel();
        if let Some((stream, prefix)) = core.fresh.remove(&conn) {
            let _ = tx.send(stream);
            return (rx, prefix);
        }
        if let Some(task) = core.conns.remove(&conn) {
            let _ = task.send(ConnCmd::Handoff(tx));
        }
        (rx, Vec::new())
    }

    fn on_event(self: &Arc<Self>, core: &mut Core, e: SessionEvent) {
        let now = std::time::Instant::now();
        match e {
            SessionEvent::LoggedIn => {
                if let Some(l) = core.login.take() {
                    let _ = l.send(Ok(()));
                }
            }
            SessionEvent::LoginFailed { reason } => {
                if let Some(l) = core.login.take() {
                    let _ = l.send(Err(reason));
                }
            }
            SessionEvent::Relogged => {
                tracing::warn!("logged in elsewhere: the server closed this session");
                self.shutdown.cancel();
            }
            SessionEvent::SearchResults { token, user, files, free_slot, queue, speed } => {
                for f in files {
                    let audio = f.audio();
                    core.events.push_back(SlskEvent::SearchResult {
                        user: user.clone(),
                        path: f.filename,
                        size: f.size,
                        free_slot,
                        queue,
                        speed,
                        audio,
                        token,
                    });
                }
            }
            SessionEvent::SearchRequest { user, token, query } => {
                let files = self.shares().search(&query, 100);
                if !files.is_empty() {
                    let resp = SearchResponse {
                        user: self.cfg.user.clone(),
                        token,
                        files,
                        slot_free: self.up.free_slots(&self.channel) > 0,
                        avg_speed: 0,
                        queue_len: self.up.queue_len() as u32,
                        unknown: Some(0),
                        private_files: None,
                    };
                    core.session.answer_search(now, &user, resp);
                }
            }
            SessionEvent::PeerRequest { user, request } => {
                let msg = match request {
                    PeerRequest::SharedFileList => PeerMessage::SharedFileListResponse(SharedFileList {
                        dirs: self.shares().dirs(),
                        unknown: Some(0),
                        private_dirs: None,
                    }),
                    PeerRequest::UserInfo => ClientSession::user_info(
                        "omnipeer",
                        self.up.total_slots(&self.channel) as u32,
                        self.up.queue_len() as u32,
                        self.up.free_slots(&self.channel) > 0,
                    ),
                    PeerRequest::FolderContents { token, folder } => {
                        let want = folder.replace('/', "\\").to_lowercase();
                        let dirs: Vec<SharedDirectory> = self
                            .shares()
                            .dirs()
                            .into_iter()
                            .filter(|d| {
                                d.path.to_lowercase() == want || d.path.to_lowercase().starts_with(&format!("{want}\\"))
                            })
                            .collect();
                        PeerMessage::FolderContentsResponse { token, folder, dirs }
                    }
                };
                core.session.reply(now, &user, msg);
            }
            SessionEvent::PrivateMessage { user, text } => {
                core.events.push_back(SlskEvent::PrivateMessage { user, text })
            }
            SessionEvent::RoomMessage { room, user, text } => {
                core.events.push_back(SlskEvent::RoomMessage { room, user, text })
            }
            SessionEvent::JoinedRoom { room } => core.events.push_back(SlskEvent::JoinedRoom { room }),
            SessionEvent::DownloadPlace { id, place } => tracing::info!(id, place, "download still queued"),
            SessionEvent::Presence { user, exists, status } => {
                let online = status.map(|s| s != UserStatus::Offline);
                for w in core.presence_waiters.remove(&user.to_lowercase()).unwrap_or_default() {
                    let _ = w.send(Presence { exists, online });
                }
            }
            SessionEvent::QueuePlace { user, filename, place } => {
                for w in core.place_waiters.remove(&(user.to_lowercase(), filename)).unwrap_or_default() {
                    let _ = w.send(place);
                }
            }
            SessionEvent::DownloadConnected { id, conn, size, rest } => {
                let (stream, _) = self.take_stream(core, conn);
                // Nobody waiting (the call ended meanwhile): the socket just closes.
                if let Some(w) = core.downloads.remove(&id) {
                    tokio::spawn(async move {
                        if let Ok(stream) = stream.await {
                            let _ = w.send(Ok(FConn { stream, size, rest }));
                        }
                    });
                }
            }
            SessionEvent::DownloadFailed { id, why } => {
                if let Some(w) = core.downloads.remove(&id) {
                    let _ = w.send(Err(why));
                }
            }
            SessionEvent::UploadRequested { user, filename } => self.queue_upload(core, now, user, filename),
            SessionEvent::PlaceRequested { user, filename } => {
                // Only a file in our queue has a place (as Nicotine+: others get no answer).
                if let Some(place) = self.up.position(&self.channel, &user, &filename) {
                    core.session.place_reply(now, &user, &filename, place);
                }
            }
            SessionEvent::UploadConnected { id, conn } => {
                let (stream, prefix) = self.take_stream(core, conn);
                let Some((user, path)) = core.granted.remove(&id) else { return };
                let Some(sent) = self.up.start(id, 0) else {
                    tracing::info!(%user, %path, "the slot held for this upload lapsed");
                    return;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let r = this.clone().upload(stream, prefix, &user, &path, id, sent).await;
                    if let Err(e) = &r {
                        tracing::info!(%user, %path, "upload failed: {e:#}");
                        this.with(|c, now| c.session.upload_broke(now, &user, &path));
                    }
                    this.up.finish(id, r.map_err(|e| format!("{e:#}")));
                });
            }
            SessionEvent::UploadFailed { id, why } => {
                if core.granted.remove(&id).is_some() {
                    self.up.finish(id, Err(why));
                }
            }
            // The slot's hold lapses (the queue's timer gives it to the next).
            SessionEvent::UploadUnanswered { id } => {
                core.granted.remove(&id);
            }
            SessionEvent::Browsed { user, list } => {
                let waiters = core.browse_waiters.remove(&user.to_lowercase()).unwrap_or_default();
                if waiters.is_empty() {
                    tracing::debug!(%user, "a share list nobody waits for");
                }
                for w in waiters {
                    let _ = w.send(Ok(list.clone()));
                }
            }
            SessionEvent::FolderContents { user, token, dirs, .. } => match core.folder_waiters.remove(&token) {
                Some((_, w)) => {
                    let _ = w.send(Ok(dirs));
                }
                None => tracing::debug!(%user, "folder contents nobody waits for"),
            },
            SessionEvent::BrowseFailed { user, why } => {
                // The machine names only the user: every browse of that user fails.
                tracing::debug!(%user, "browse failed: {why}");
                let key = user.to_lowercase();
                for w in core.browse_waiters.remove(&key).unwrap_or_default() {
                    let _ = w.send(Err(why.clone()));
                }
                let tokens: Vec<u32> =
                    core.folder_waiters.iter().filter(|(_, (u, _))| *u == key).map(|(t, _)| *t).collect();
                for t in tokens {
                    if let Some((_, w)) = core.folder_waiters.remove(&t) {
                        let _ = w.send(Err(why.clone()));
                    }
                }
            }
            SessionEvent::PeerDropped { conn, why } => tracing::debug!(conn, "peer connection dropped: {why}"),
            SessionEvent::DistributedChanged(d) => tracing::info!(
                parent = %d.parent.as_deref().unwrap_or("-"),
                level = d.level,
                root = %d.root,
                server_parent = d.server_parent,
                children = %d.children.join(","),
                "distributed network"
            ),
        }
    }
}

/// The pump: socket reports, accepted connections and time into the machine.
async fn pump(
    inner: Arc<Inner>,
    mut input: mpsc::UnboundedReceiver<Input>,
    listener: TcpListener,
) -> anyhow::Result<()> {
    loop {
        // Events the machine produced (here or in an API call's `with`) go to the node
        // first, outside the lock: while the node is behind, this waits, no socket is read
        // (each reads on the pump's permission) and TCP slows the peers. Nothing is dropped.
        loop {
            let ev = inner.core.lock().expect("slsk core").events.pop_front();
            let Some(ev) = ev else { break };
            tokio::select! {
                _ = inner.shutdown.cancelled() => return Ok(()),
                _ = inner.events.send(ev) => {}
            }
        }
        let next = inner.core.lock().expect("slsk core").session.poll_timeout();
        tokio::select! {
            _ = inner.shutdown.cancelled() => return Ok(()),
            _ = inner.wake.notified() => {}
            _ = sleep_until_some(next) => inner.with(|c, now| c.session.handle_timeout(now)),
            r = listener.accept() => {
                if let Ok((s, _)) = r {
                    let conn = inner.with(|c, now| c.session.accepted(now));
                    inner.spawn_conn(conn, s);
                }
            }
            i = input.recv() => match i {
                None => return Ok(()),
                Some(Input::Bytes(conn, data)) => {
                    inner.with(|c, now| c.session.handle_input(now, conn, &data));
                    // Still the machine's (not closed, not handed over): read the next chunk.
                    // Asked only now, after the machine acted on these bytes, so a socket
                    // it hands over has nothing read past what it consumed.
                    if let Some(tx) = inner.core.lock().expect("slsk core").conns.get(&conn) {
                        let _ = tx.send(ConnCmd::Read);
                    }
                }
                Some(Input::Closed(conn)) => {
                    inner.with(|c, now| {
                        c.conns.remove(&conn);
                        c.session.closed(now, conn);
                    });
                    if conn == SERVER {
                        if let Some(l) = inner.core.lock().expect("slsk core").login.take() {
                            let _ = l.send(Err("the server closed the connection".into()));
                        }
                        bail!("the server closed the connection");
                    }
                }
                Some(Input::Dialed(conn, stream)) => inner.with(|c, now| match stream {
                    Some(s) => {
                        let _ = s.set_nodelay(true);
                        c.fresh.insert(conn, (s, Vec::new()));
                        c.session.connected(now, conn);
                    }
                    None => c.session.connect_failed(now, conn),
                }),
            },
        }
    }
}
