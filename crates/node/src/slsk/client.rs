//! A Soulseek client: a server session, a listener for peer connections (`P` and `F`,
//! direct by PeerInit or indirect by PierceFireWall after the server relayed our
//! ConnectToPeer), answers to searches relayed by the server, browse (shared file list,
//! folder contents), user info, an upload queue with slots (QueueUpload → TransferRequest
//! → TransferResponse → F connection with token and offset), and downloads that resume.
//!
//! Message layouts, framing and limits come from the sans-IO `omnipeer_slsk` crate; this
//! module is the orchestration of sockets around them.

use crate::share::ShareIndex;
use crate::upload::{Decision, Grant, Uploads};
use anyhow::{anyhow, bail, Context};
use omnipeer_slsk::framing::{FrameKind, FrameReader};
use omnipeer_slsk::peer::{
    PeerInit, PeerMessage, SearchResponse, SharedFileList, TransferDirection, TransferReply, UserInfo,
};
use omnipeer_slsk::search::SearchQuery;
use omnipeer_slsk::server::{ServerRequest, ServerResponse};
use omnipeer_slsk::shares::{SharedDirectory, SharedFile};
use omnipeer_slsk::UserStatus;
use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Our client version in Login: 177 is unassigned ("experimental") per the notes.
pub const MAJOR_VERSION: u32 = 177;
const MINOR_VERSION: u32 = 1;
/// How long connecting to a peer may take (direct and indirect together).
const PEER_CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long a download may wait for the uploader to start.
const TRANSFER_WAIT: Duration = Duration::from_secs(60);
/// Pauses without an answer after which a download's QueueUpload is sent again, each time
/// on a fresh connection.
const QUEUE_RESENDS: [Duration; 2] = [Duration::from_secs(4), Duration::from_secs(8)];
/// Pauses after a TransferRequest before asking again on a fresh connection (within the
/// queue's hold of the slot, `upload::HOLD_FOR`).
const ANSWER_WAITS: [Duration; 3] = [Duration::from_secs(10), Duration::from_secs(20), Duration::from_secs(30)];
/// How long raw file data may stall.
const DATA_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a PlaceInQueueRequest may wait for its answer.
const PLACE_WAIT: Duration = Duration::from_secs(10);
/// Bytes per raw read/write on F connections.
const CHUNK: usize = 256 * 1024;
/// How long a connection to our peer port may take to identify itself (its whole first
/// frame, PeerInit or PierceFireWall, and on an `F` connection the transfer token after
/// it). That frame is at most `omnipeer_slsk::limits::MAX_INIT_FRAME` (16 KiB).
pub const PEER_INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest message we take on a `P` connection (`len` field). Anyone can open one (a
/// PeerInit names a user but proves nothing), and this node only ever receives small
/// messages there (search results, queue and transfer negotiation, requests); 16 MiB still
/// holds a compressed shared file list of a few hundred thousand files. The protocol's own
/// cap, `omnipeer_slsk::limits::MAX_FRAME`, is 64 MiB.
pub const MAX_PEER_MESSAGE: usize = 16 * 1024 * 1024;
/// How long one `P` message may take to arrive once its first bytes are in: a peer that
/// starts a frame and stops is dropped instead of holding its buffer.
pub const PEER_FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of unfinished `P` messages held across all peer connections together; a
/// connection whose next read would go past it is dropped. Without it, N connections
/// could each hold up to [`MAX_PEER_MESSAGE`]; with it, two messages of that size still
/// arrive at once.
pub const PEER_BUFFER_BUDGET: usize = 32 * 1024 * 1024;
/// Largest inflated compressed `P` message we decode (search results are the only
/// compressed ones we act on; a reply of a few thousand files inflates to well under a
/// MiB). Without it a 16 MiB zlib bomb would inflate to `omnipeer_slsk::limits::
/// MAX_DECOMPRESSED` (128 MiB) per message, on every connection at once.
pub const MAX_PEER_INFLATED: usize = 4 * 1024 * 1024;
/// `P` message codes this client acts on; others (unsolicited shared file lists, folder
/// contents, user info: compressed, up to 512 MiB inflated) are skipped undecoded.
const P_CODES_HANDLED: [u32; 11] = [4, 9, 15, 36, 40, 41, 43, 44, 46, 50, 51];

/// Who waits for a user's address (GetPeerAddress): the IP and port, when the server answers.
type AddrWaiter = oneshot::Sender<(Ipv4Addr, u32)>;

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

/// One shared file.
#[derive(Debug, Clone)]
struct Shared {
    vpath: String,
    real: PathBuf,
    root: PathBuf,
    size: u64,
}

#[derive(Default)]
struct Shares {
    files: Vec<Shared>,
    by_path: HashMap<String, usize>,
}

impl Shares {
    fn build(roots: &[PathBuf]) -> anyhow::Result<Shares> {
        if roots.is_empty() {
            return Ok(Shares::default());
        }
        let idx = ShareIndex::scan_roots(roots).context("cannot index the share")?;
        let root_of: HashMap<String, PathBuf> = idx.roots().iter().map(|r| (r.name.clone(), r.path.clone())).collect();
        let mut s = Shares::default();
        for (vp, node) in idx.files() {
            let vpath = vp.components().join("\\");
            let root = root_of.get(&vp.components()[0]).cloned().unwrap_or_default();
            s.by_path.insert(vpath.to_lowercase(), s.files.len());
            s.files.push(Shared { vpath, real: node.real.clone(), root, size: node.size });
        }
        Ok(s)
    }

    fn get(&self, vpath: &str) -> Option<&Shared> {
        self.by_path.get(&vpath.replace('/', "\\").to_lowercase()).map(|&i| &self.files[i])
    }

    fn dirs(&self) -> Vec<SharedDirectory> {
        let mut map: BTreeMap<String, Vec<SharedFile>> = BTreeMap::new();
        for f in &self.files {
            let (dir, name) = f.vpath.rsplit_once('\\').unwrap_or(("", &f.vpath));
            map.entry(dir.to_owned()).or_default().push(file_entry(name, f.size));
        }
        map.into_iter().map(|(path, files)| SharedDirectory { path, files }).collect()
    }

    fn search(&self, query: &str, max: usize) -> Vec<SharedFile> {
        let q = SearchQuery::parse(query);
        if !q.is_searchable() {
            return Vec::new();
        }
        self.files.iter().filter(|f| q.matches(&f.vpath)).take(max).map(|f| file_entry(&f.vpath, f.size)).collect()
    }
}

fn file_entry(name: &str, size: u64) -> SharedFile {
    SharedFile::new(name, size)
}

/// Waiters for PlaceInQueueResponse by (user lower-cased, file).
type PlaceWaiters = HashMap<(String, String), Vec<oneshot::Sender<u32>>>;

/// Removes an attempt's [`PendingDownload`] when the attempt ends, however it ends.
struct PendingGuard<'a> {
    inner: &'a Inner,
    attempt: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.downloads.lock().expect("downloads").retain(|d| d.attempt != self.attempt);
    }
}

/// A pending download: the peer's TransferRequest and F connection end up here.
struct PendingDownload {
    /// Which call of `download_with` it belongs to (its entry goes when the call ends).
    attempt: u32,
    user: String,
    path: String,
    token: Option<u32>,
    size: Option<u64>,
    /// The size the user chose (None: not known; the uploader's is taken).
    expected: Option<u64>,
    f_conn: Option<oneshot::Sender<(TcpStream, Vec<u8>)>>,
    started: Option<oneshot::Sender<Result<u64, String>>>,
}

struct Inner {
    cfg: SlskClientConfig,
    listen_port: u16,
    server_tx: mpsc::UnboundedSender<Vec<u8>>,
    /// The current share; swapped whole by [`SlskClient::reshare`].
    shares: std::sync::RwLock<Arc<Shares>>,
    events: crate::events::EventSink<SlskEvent>,
    next_token: AtomicU32,
    /// Slots, queue, limit and records of uploads.
    up: Arc<Uploads>,
    /// Peer addresses asked of the server.
    addr_waiters: Mutex<HashMap<String, Vec<AddrWaiter>>>,
    /// Our ConnectToPeer tokens → who answers with PierceFireWall.
    pierce_waiters: Mutex<HashMap<u32, oneshot::Sender<TcpStream>>>,
    /// Open P connections' writers by user.
    peers: Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>,
    downloads: Mutex<Vec<PendingDownload>>,
    /// Uploads granted, by transfer token: (user, file, upload id).
    uploads: Mutex<HashMap<u32, (String, String, u64)>>,
    /// Who waits for a PlaceInQueueResponse: (user lower-cased, file).
    place_waiters: Mutex<PlaceWaiters>,
    /// Bytes buffered by `P` connections' frame readers, together ([`PEER_BUFFER_BUDGET`]).
    peer_buffered: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: CancellationToken,
}

impl Inner {
    fn shares(&self) -> Arc<Shares> {
        self.shares.read().expect("shares lock").clone()
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
        let roots = cfg.share.clone();
        let shares = tokio::task::spawn_blocking(move || Shares::build(&roots)).await??;
        let listener =
            TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let listen_port = listener.local_addr()?.port();
        let mut server =
            TcpStream::connect(&cfg.server).await.with_context(|| format!("cannot connect to {}", cfg.server))?;
        let _ = server.set_nodelay(true);
        server
            .write_all(&ServerRequest::login(&cfg.user, &cfg.password, MAJOR_VERSION, MINOR_VERSION).encode())
            .await?;
        let mut reader = FrameReader::new(FrameKind::Server);
        let reply = read_server_frame(&mut server, &mut reader).await.context("waiting for the login reply")?;
        match reply {
            ServerResponse::LoginSuccess { .. } => {}
            ServerResponse::LoginFailure { reason, detail } => {
                bail!("login refused: {reason}{}", detail.map(|d| format!(" ({d})")).unwrap_or_default())
            }
            other => bail!("unexpected first answer from the server: code {}", other.code()),
        }
        let (dirs, files) = {
            let d = shares.dirs();
            (d.len() as u32, shares.files.len() as u32)
        };
        for req in [
            ServerRequest::SetWaitPort { port: u32::from(listen_port), obfuscation: None },
            ServerRequest::HaveNoParent { no_parent: true },
            ServerRequest::SetStatus { status: UserStatus::Online },
            ServerRequest::SharedFoldersFiles { dirs, files },
        ] {
            server.write_all(&req.encode()).await?;
        }
        let (server_tx, server_rx) = mpsc::unbounded_channel();
        let events = crate::events::EventSink::default();
        let shutdown = CancellationToken::new();
        let up = match &cfg.uploads {
            Some(u) => u.clone(),
            None => Uploads::standalone(cfg.slots, shutdown.clone()),
        };
        let grants = up.grants("slsk");
        let inner = Arc::new(Inner {
            cfg,
            listen_port,
            server_tx,
            shares: std::sync::RwLock::new(Arc::new(shares)),
            events,
            next_token: AtomicU32::new(rand::random::<u32>() % 1_000_000 + 1),
            up,
            addr_waiters: Mutex::default(),
            pierce_waiters: Mutex::default(),
            peers: Mutex::default(),
            downloads: Mutex::default(),
            uploads: Mutex::default(),
            place_waiters: Mutex::default(),
            peer_buffered: Arc::default(),
            shutdown,
        });
        tokio::spawn(inner.clone().grant_loop(grants));
        let task = tokio::spawn(run(inner.clone(), server, reader, server_rx, listener));
        Ok(SlskClient { inner, task, reshare_lock: tokio::sync::Mutex::new(()) })
    }

    /// Our listen port.
    pub fn listen_port(&self) -> u16 {
        self.inner.listen_port
    }

    /// Files shared.
    pub fn shared_files(&self) -> usize {
        self.inner.shares().files.len()
    }

    /// Index the share folders again and serve the new share in this session (searches,
    /// browsing, uploads), telling the server the new counts (SharedFoldersFiles). No new
    /// login: running transfers and chats go on. Returns the number of files shared.
    pub async fn reshare(&self) -> anyhow::Result<usize> {
        // one at a time, so the newest index is the one that stays
        let _one = self.reshare_lock.lock().await;
        let roots = self.inner.cfg.share.clone();
        let shares = tokio::task::spawn_blocking(move || Shares::build(&roots)).await??;
        let (dirs, files) = (shares.dirs().len() as u32, shares.files.len() as u32);
        *self.inner.shares.write().expect("shares lock") = Arc::new(shares);
        let _ = self.inner.server_tx.send(ServerRequest::SharedFoldersFiles { dirs, files }.encode());
        Ok(files as usize)
    }

    /// The client's events, from its start, for one consumer (`None` once taken). The
    /// client waits while the consumer is behind (see [`crate::events`]).
    pub fn take_events(&self) -> Option<mpsc::Receiver<SlskEvent>> {
        self.inner.events.take()
    }

    /// Search the network; results arrive as [`SlskEvent::SearchResult`].
    pub fn search(&self, query: &str) -> u32 {
        let token = self.inner.token();
        let _ = self.inner.server_tx.send(ServerRequest::FileSearch { token, query: query.to_owned() }.encode());
        token
    }

    /// Join a chat room (created if it does not exist); [`SlskEvent::JoinedRoom`] follows.
    pub fn join_room(&self, room: &str) {
        let _ = self.inner.server_tx.send(ServerRequest::JoinRoom { room: room.to_owned(), private: false }.encode());
    }

    /// Say something in a room we are in.
    pub fn say_room(&self, room: &str, text: &str) {
        let _ = self
            .inner
            .server_tx
            .send(ServerRequest::SayChatroom { room: room.to_owned(), message: text.to_owned() }.encode());
    }

    /// Send a private message (the server keeps it if the user is offline).
    pub fn message_user(&self, user: &str, text: &str) {
        let _ = self
            .inner
            .server_tx
            .send(ServerRequest::MessageUser { user: user.to_owned(), message: text.to_owned() }.encode());
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
        let (started_tx, started_rx) = oneshot::channel();
        let (f_tx, f_rx) = oneshot::channel();
        let attempt = self.inner.token();
        // A later attempt must not find this one's entry (its channels are dead by then).
        let _pending = PendingGuard { inner: &self.inner, attempt };
        self.inner.downloads.lock().expect("downloads").push(PendingDownload {
            attempt,
            user: user.to_owned(),
            path: path.to_owned(),
            token: None,
            size: None,
            expected,
            f_conn: Some(f_tx),
            started: Some(started_tx),
        });
        let peer = self.inner.peer_conn(user).await?;
        let _ = peer.send(PeerMessage::QueueUpload { filename: path.to_owned() }.encode());
        let mut started_rx = started_rx;
        // The request may have gone into a P connection the peer was just closing (it
        // delivered search results on it): without an answer soon, ask again on a fresh
        // connection (a repeated QueueUpload is harmless: the uploader keeps one place).
        let mut answer = None;
        for wait in QUEUE_RESENDS {
            match tokio::time::timeout(wait, &mut started_rx).await {
                Ok(r) => {
                    answer = Some(r);
                    break;
                }
                Err(_) => {
                    tracing::debug!(%user, %path, "no answer to QueueUpload yet: asking again on a fresh connection");
                    self.inner.peers.lock().expect("peers").remove(&user.to_lowercase());
                    if let Ok(p) = self.inner.peer_conn(user).await {
                        let _ = p.send(PeerMessage::QueueUpload { filename: path.to_owned() }.encode());
                    }
                }
            }
        }
        let size = loop {
            let r = match answer.take() {
                Some(r) => Ok(r),
                None => tokio::time::timeout(TRANSFER_WAIT, &mut started_rx).await,
            };
            match r {
                Ok(Ok(Ok(size))) => break size,
                Ok(Ok(Err(why))) => bail!("{why}"),
                Ok(Err(_)) => bail!("the client stopped"),
                // Still queued there (it says where): keep waiting, as long as it keeps
                // the file in its queue.
                Err(_) => match self.place_in_queue(user, path).await {
                    Ok(place) => tracing::info!(%user, %path, place, "still queued"),
                    Err(_) => bail!("{user} did not start sending {path} within {}s", TRANSFER_WAIT.as_secs()),
                },
            }
        };
        progress.1.store(size, Ordering::Relaxed);
        let (mut stream, leftover) = tokio::time::timeout(TRANSFER_WAIT, f_rx)
            .await
            .map_err(|_| anyhow!("{user} did not open the file connection"))?
            .map_err(|_| anyhow!("the client stopped"))?;
        let have = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let have = if have > size { 0 } else { have };
        // The uploader sent its token (4 bytes, already consumed); we answer with the offset.
        stream.write_all(&have.to_le_bytes()).await?;
        let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&out)?;
        if file.metadata()?.len() != have {
            file.set_len(have)?;
        }
        file.seek(SeekFrom::Start(have))?;
        let mut pos = have;
        let keep = leftover.len().min((size - pos) as usize);
        file.write_all(&leftover[..keep])?;
        pos += keep as u64;
        progress.0.store(pos, Ordering::Relaxed);
        let mut buf = vec![0u8; CHUNK];
        while pos < size {
            let want = ((size - pos) as usize).min(buf.len());
            let n = tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buf[..want]))
                .await
                .map_err(|_| anyhow!("the transfer stalled"))??;
            if n == 0 {
                bail!("{user} closed the connection at byte {pos} of {size} (the partial file is kept)");
            }
            file.write_all(&buf[..n])?;
            pos += n as u64;
            progress.0.store(pos, Ordering::Relaxed);
            control.pace(n).await;
        }
        file.flush()?;
        // The downloader closes once it has every byte.
        let _ = stream.shutdown().await;
        Ok((out, size, have))
    }

    /// Ask `user` where `path` stands in its upload queue (PlaceInQueueRequest, answered
    /// by PlaceInQueueResponse): 1 = next.
    pub async fn place_in_queue(&self, user: &str, path: &str) -> anyhow::Result<u32> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .place_waiters
            .lock()
            .expect("place")
            .entry((user.to_lowercase(), path.to_owned()))
            .or_default()
            .push(tx);
        let peer = self.inner.peer_conn(user).await?;
        let _ = peer.send(PeerMessage::PlaceInQueueRequest { filename: path.to_owned() }.encode());
        tokio::time::timeout(PLACE_WAIT, rx)
            .await
            .map_err(|_| anyhow!("{user} did not say where {path} is in its queue"))?
            .map_err(|_| anyhow!("the client stopped"))
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

impl Inner {
    fn token(&self) -> u32 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// A P connection to `user`: an open one, else direct (GetPeerAddress) raced with
    /// indirect (ConnectToPeer → their PierceFireWall).
    async fn peer_conn(self: &Arc<Self>, user: &str) -> anyhow::Result<mpsc::UnboundedSender<Vec<u8>>> {
        if let Some(tx) = self.peers.lock().expect("peers").get(&user.to_lowercase()) {
            if !tx.is_closed() {
                return Ok(tx.clone());
            }
        }
        let token = self.token();
        let (addr_tx, addr_rx) = oneshot::channel();
        self.addr_waiters.lock().expect("addr").entry(user.to_lowercase()).or_default().push(addr_tx);
        let (pierce_tx, pierce_rx) = oneshot::channel();
        self.pierce_waiters.lock().expect("pierce").insert(token, pierce_tx);
        let _ = self.server_tx.send(ServerRequest::GetPeerAddress { user: user.to_owned() }.encode());
        let _ = self
            .server_tx
            .send(ServerRequest::ConnectToPeer { token, user: user.to_owned(), conn_type: "P".into() }.encode());
        let me = self.cfg.user.clone();
        let direct = async move {
            let (ip, port) = addr_rx.await.map_err(|_| anyhow!("no address"))?;
            if port == 0 || ip.is_unspecified() {
                bail!("offline");
            }
            let mut s = TcpStream::connect((ip, port as u16)).await?;
            s.write_all(&PeerInit::PeerInit { user: me, conn_type: "P".into(), token }.encode()).await?;
            Ok::<_, anyhow::Error>(s)
        };
        let indirect = async move { pierce_rx.await.map_err(|_| anyhow!("no pierce")) };
        let stream = tokio::time::timeout(PEER_CONNECT_WAIT, async {
            tokio::pin!(direct);
            tokio::pin!(indirect);
            let mut direct_done = false;
            let mut indirect_done = false;
            loop {
                tokio::select! {
                    r = &mut direct, if !direct_done => match r { Ok(s) => return Ok(s), Err(_) => direct_done = true },
                    r = &mut indirect, if !indirect_done => match r { Ok(s) => return Ok(s), Err(_) => indirect_done = true },
                }
                if direct_done && indirect_done {
                    return Err(anyhow!("cannot connect to {user}"));
                }
            }
        })
        .await
        .map_err(|_| anyhow!("connecting to {user} timed out"))??;
        self.pierce_waiters.lock().expect("pierce").remove(&token);
        Ok(self.clone().spawn_p(stream, user.to_owned(), Vec::new()))
    }

    /// Run a P connection: returns its writer.
    fn spawn_p(self: Arc<Self>, stream: TcpStream, user: String, leftover: Vec<u8>) -> mpsc::UnboundedSender<Vec<u8>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.peers.lock().expect("peers").insert(user.to_lowercase(), tx.clone());
        let (rd, wr) = stream.into_split();
        tokio::spawn(write_loop(wr, rx, self.shutdown.clone()));
        let this = self.clone();
        let tx2 = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = this.clone().p_loop(rd, user.clone(), leftover, tx2.clone()).await {
                tracing::debug!(%user, "peer connection ended: {e:#}");
            }
            // A connection the peer closed must not be reused: messages written to it
            // would be lost (the write half stays open after the peer's FIN). This
            // happens when both sides connect at once (direct and pierced) and one of
            // the two connections is dropped.
            let mut peers = this.peers.lock().expect("peers");
            if peers.get(&user.to_lowercase()).is_some_and(|t| t.same_channel(&tx2)) {
                peers.remove(&user.to_lowercase());
            }
        });
        tx
    }

    async fn p_loop(
        self: Arc<Self>,
        mut rd: OwnedReadHalf,
        user: String,
        leftover: Vec<u8>,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let mut reader = FrameReader::with_limit(FrameKind::Peer, MAX_PEER_MESSAGE);
        let mut held = BufferShare { total: self.peer_buffered.clone(), mine: 0 };
        held.reserve(leftover.len())?;
        reader.push(&leftover);
        // Every P connection, idle ones included, holds this buffer: kept small (messages
        // here are small and few; a bigger one just takes more reads).
        let mut buf = vec![0u8; 16 * 1024];
        // When the unfinished frame in `reader` must be complete.
        let mut frame_deadline: Option<tokio::time::Instant> = None;
        loop {
            let mut completed = false;
            while let Some(frame) = reader.next_frame()? {
                completed = true;
                if !P_CODES_HANDLED.contains(&frame.code) {
                    tracing::debug!(%user, code = frame.code, "skipping a peer message we do not act on");
                    continue;
                }
                let msg = PeerMessage::decode_limited(frame.code, &frame.body, MAX_PEER_INFLATED)?;
                self.clone().on_peer_message(&user, msg, &tx).await;
            }
            held.set(reader.buffered());
            frame_deadline = match reader.buffered() {
                0 => None,
                _ if completed || frame_deadline.is_none() => Some(tokio::time::Instant::now() + PEER_FRAME_TIMEOUT),
                _ => frame_deadline,
            };
            let n = tokio::select! {
                r = rd.read(&mut buf) => r?,
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = sleep_until_some(frame_deadline) => bail!("a message did not arrive whole within {}s", PEER_FRAME_TIMEOUT.as_secs()),
            };
            if n == 0 {
                return Ok(());
            }
            held.reserve(n)?;
            reader.push(&buf[..n]);
        }
    }

    async fn on_peer_message(self: Arc<Self>, user: &str, msg: PeerMessage, tx: &mpsc::UnboundedSender<Vec<u8>>) {
        match msg {
            PeerMessage::FileSearchResponse(r) => {
                let all = r.files.iter().chain(r.private_files.iter().flatten());
                for f in all {
                    self.events
                        .send(SlskEvent::SearchResult {
                            user: r.user.clone(),
                            path: f.filename.clone(),
                            size: f.size,
                            free_slot: r.slot_free,
                            queue: r.queue_len,
                            token: r.token,
                        })
                        .await;
                }
            }
            PeerMessage::SharedFileListRequest => {
                let list = SharedFileList { dirs: self.shares().dirs(), unknown: Some(0), private_dirs: None };
                let _ = tx.send(PeerMessage::SharedFileListResponse(list).encode());
            }
            PeerMessage::UserInfoRequest => {
                let info = UserInfo {
                    description: "omnipeer".into(),
                    picture: None,
                    total_uploads: self.up.total_slots("slsk") as u32,
                    queue_size: self.up.queue_len() as u32,
                    slots_free: self.up.free_slots("slsk") > 0,
                    upload_permitted: Some(omnipeer_slsk::peer::upload_permission::EVERYONE),
                };
                let _ = tx.send(PeerMessage::UserInfoResponse(info).encode());
            }
            PeerMessage::FolderContentsRequest { token, folder } => {
                let want = folder.replace('/', "\\").to_lowercase();
                let dirs: Vec<SharedDirectory> = self
                    .shares()
                    .dirs()
                    .into_iter()
                    .filter(|d| {
                        d.path.to_lowercase() == want || d.path.to_lowercase().starts_with(&format!("{want}\\"))
                    })
                    .collect();
                let _ = tx.send(PeerMessage::FolderContentsResponse { token, folder, dirs }.encode());
            }
            PeerMessage::QueueUpload { filename } => self.queue_upload(user, filename, tx.clone()),
            PeerMessage::PlaceInQueueRequest { filename } => {
                // Only a file in our queue has a place (as Nicotine+: others get no answer).
                if let Some(place) = self.up.position("slsk", user, &filename) {
                    let _ = tx.send(PeerMessage::PlaceInQueueResponse { filename, place }.encode());
                }
            }
            PeerMessage::PlaceInQueueResponse { filename, place } => {
                let waiters = self
                    .place_waiters
                    .lock()
                    .expect("place")
                    .remove(&(user.to_lowercase(), filename))
                    .unwrap_or_default();
                for w in waiters {
                    let _ = w.send(place);
                }
            }
            PeerMessage::TransferRequest { direction: TransferDirection::Upload, token, filename, size } => {
                // The uploader is ready to send something we queued.
                let mut downloads = self.downloads.lock().expect("downloads");
                let found = downloads
                    .iter_mut()
                    .find(|d| d.user.eq_ignore_ascii_case(user) && d.path == filename && d.token.is_none());
                let reply = match found {
                    Some(d) => match offered_size(d.expected, size) {
                        Ok(size) => {
                            d.token = Some(token);
                            d.size = Some(size);
                            if let Some(s) = d.started.take() {
                                let _ = s.send(Ok(size));
                            }
                            TransferReply::Allowed { size: None }
                        }
                        // Not the file the user chose (or a lie): refused before any F
                        // connection, so nothing is written.
                        Err(why) => {
                            if let Some(s) = d.started.take() {
                                let _ = s.send(Err(why));
                            }
                            TransferReply::Denied { reason: "Cancelled".into() }
                        }
                    },
                    None => TransferReply::Denied { reason: "Cancelled".into() },
                };
                let _ = tx.send(PeerMessage::TransferResponse { token, reply }.encode());
            }
            PeerMessage::TransferResponse { token, reply } => {
                let Some((to, path, id)) = self.uploads.lock().expect("uploads").remove(&token) else { return };
                match reply {
                    TransferReply::Allowed { .. } => {
                        let Some(sent) = self.up.start(id, 0) else {
                            tracing::info!(user = %to, %path, "the slot held for this upload lapsed");
                            return;
                        };
                        let this = self.clone();
                        tokio::spawn(async move {
                            let r = this.clone().upload(&to, &path, token, id, sent).await;
                            if let Err(e) = &r {
                                tracing::info!(user = %to, %path, "upload failed: {e:#}");
                                if let Some(p) = this.peers.lock().expect("peers").get(&to.to_lowercase()) {
                                    let _ = p.send(PeerMessage::UploadFailed { filename: path.clone() }.encode());
                                }
                            }
                            this.up.finish(id, r.map_err(|e| format!("{e:#}")));
                        });
                    }
                    TransferReply::Denied { reason } => self.up.finish(id, Err(format!("refused: {reason}"))),
                }
            }
            PeerMessage::UploadDenied { filename, reason } => self.fail_download(user, &filename, &reason),
            PeerMessage::UploadFailed { filename } => self.fail_download(user, &filename, "upload failed"),
            _ => {}
        }
    }

    fn fail_download(&self, user: &str, path: &str, why: &str) {
        let mut downloads = self.downloads.lock().expect("downloads");
        if let Some(d) = downloads.iter_mut().find(|d| d.user.eq_ignore_ascii_case(user) && d.path == path) {
            if let Some(s) = d.started.take() {
                let _ = s.send(Err(format!("{user} refused {path}: {why}")));
            }
        }
    }

    /// A peer queued one of our files: it gets a slot now, or a place in the queue and a
    /// slot when its turn comes ([`Inner::grant_loop`]).
    fn queue_upload(self: Arc<Self>, user: &str, filename: String, tx: mpsc::UnboundedSender<Vec<u8>>) {
        let Some(f) = self.shares().get(&filename).cloned() else {
            let _ = tx.send(PeerMessage::UploadDenied { filename, reason: "File not shared.".into() }.encode());
            return;
        };
        match self.up.request("slsk", user, &filename, f.size, true) {
            Decision::Granted(id) => {
                let grant = Grant { id, network: "slsk".into(), user: user.to_owned(), file: filename };
                // answered on the connection the request came in on: it is alive
                tokio::spawn(self.grant(grant, Some(tx)));
            }
            Decision::Queued { position, .. } => tracing::info!(%user, %filename, position, "upload queued"),
            Decision::AlreadyGranted(_) => {}
            Decision::Refused => {
                let _ = tx.send(PeerMessage::UploadDenied { filename, reason: "Too many files".into() }.encode());
            }
        }
    }

    /// Start queued uploads as slots free up for them.
    async fn grant_loop(self: Arc<Self>, mut grants: mpsc::UnboundedReceiver<Grant>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                g = grants.recv() => match g {
                    Some(g) => { tokio::spawn(self.clone().grant(g, None)); }
                    None => return,
                },
            }
        }
    }

    /// A slot is held for `g`: offer the file with TransferRequest (direction upload); the
    /// peer's TransferResponse starts or refuses it. An unreachable peer gives it back.
    /// `via`: a live connection from the peer to try first (the QueueUpload's own).
    async fn grant(self: Arc<Self>, g: Grant, mut via: Option<mpsc::UnboundedSender<Vec<u8>>>) {
        let Some(f) = self.shares().get(&g.file).cloned() else {
            self.up.finish(g.id, Err("no longer shared".into()));
            return;
        };
        let token = self.token();
        self.uploads.lock().expect("uploads").insert(token, (g.user.clone(), g.file.clone(), g.id));
        let req = PeerMessage::TransferRequest {
            direction: TransferDirection::Upload,
            token,
            filename: g.file.clone(),
            size: Some(f.size),
        };
        for wait in ANSWER_WAITS {
            let conn = match via.take().filter(|t| !t.is_closed()) {
                Some(t) => Ok(t),
                None => self.peer_conn(&g.user).await,
            };
            match conn {
                Ok(tx) => {
                    let _ = tx.send(req.encode());
                }
                Err(e) => {
                    if self.uploads.lock().expect("uploads").remove(&token).is_some() {
                        self.up.finish(g.id, Err(format!("cannot reach {}: {e:#}", g.user)));
                    }
                    return;
                }
            }
            tokio::time::sleep(wait).await;
            if !self.uploads.lock().expect("uploads").contains_key(&token) {
                return; // answered
            }
            // No answer: the request may have gone into a P connection the peer had
            // already dropped (both sides connecting at once). Ask again on a fresh one.
            tracing::debug!(user = %g.user, file = %g.file, "no answer to TransferRequest: sending it again");
            self.peers.lock().expect("peers").remove(&g.user.to_lowercase());
        }
        // Still nothing: the slot's hold lapses (the queue's timer gives it to the next).
    }

    /// Send a granted file over a new F connection: token, their offset, then bytes
    /// (zero-copy unless the upload limit applies), counted in `sent`.
    async fn upload(
        self: Arc<Self>,
        user: &str,
        vpath: &str,
        token: u32,
        id: u64,
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let f = self.shares().get(vpath).cloned().ok_or_else(|| anyhow!("{vpath} is no longer shared"))?;
        let (file, size) = crate::share::open_inside(&f.real, &f.root)?;
        let mut s = self.f_conn(user).await?;
        s.write_all(&token.to_le_bytes()).await?;
        let mut off = [0u8; 8];
        tokio::time::timeout(TRANSFER_WAIT, s.read_exact(&mut off)).await.map_err(|_| anyhow!("no offset"))??;
        let offset = u64::from_le_bytes(off).min(size);
        self.up.set_start(id, offset);
        let limit = self.up.limit();
        let std = s.into_std()?;
        std.set_nonblocking(false)?;
        std.set_write_timeout(Some(DATA_TIMEOUT))?;
        let std = tokio::task::spawn_blocking(move || -> anyhow::Result<std::net::TcpStream> {
            crate::transfer::send_file_range(&std, &file, offset, size - offset, Some(&limit), DATA_TIMEOUT, &sent)?;
            Ok(std)
        })
        .await??;
        std.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(std)?;
        // The downloader closes once it has everything.
        let mut rest = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut rest)).await;
        self.events.send(SlskEvent::Uploaded { user: user.to_owned(), path: vpath.to_owned() }).await;
        Ok(())
    }

    /// An F connection to `user` (direct raced with indirect).
    async fn f_conn(self: &Arc<Self>, user: &str) -> anyhow::Result<TcpStream> {
        let token = self.token();
        let (addr_tx, addr_rx) = oneshot::channel();
        self.addr_waiters.lock().expect("addr").entry(user.to_lowercase()).or_default().push(addr_tx);
        let (pierce_tx, pierce_rx) = oneshot::channel();
        self.pierce_waiters.lock().expect("pierce").insert(token, pierce_tx);
        let _ = self.server_tx.send(ServerRequest::GetPeerAddress { user: user.to_owned() }.encode());
        let _ = self
            .server_tx
            .send(ServerRequest::ConnectToPeer { token, user: user.to_owned(), conn_type: "F".into() }.encode());
        let me = self.cfg.user.clone();
        let direct = async move {
            let (ip, port) = addr_rx.await.map_err(|_| anyhow!("no address"))?;
            if port == 0 {
                bail!("offline");
            }
            let mut s = TcpStream::connect((ip, port as u16)).await?;
            s.write_all(&PeerInit::PeerInit { user: me, conn_type: "F".into(), token }.encode()).await?;
            Ok::<_, anyhow::Error>(s)
        };
        let r = tokio::time::timeout(PEER_CONNECT_WAIT, async {
            tokio::select! {
                Ok(s) = direct => Ok(s),
                Ok(s) = pierce_rx => Ok(s),
                else => Err(anyhow!("cannot open a file connection to {user}")),
            }
        })
        .await
        .map_err(|_| anyhow!("connecting to {user} timed out"))?;
        self.pierce_waiters.lock().expect("pierce").remove(&token);
        r
    }

    /// Answer a search the server relayed.
    async fn answer_search(self: &Arc<Self>, user: String, token: u32, query: String) {
        if user.eq_ignore_ascii_case(&self.cfg.user) {
            return;
        }
        let files = self.shares().search(&query, 100);
        if files.is_empty() {
            return;
        }
        let resp = SearchResponse {
            user: self.cfg.user.clone(),
            token,
            files,
            slot_free: self.up.free_slots("slsk") > 0,
            avg_speed: 0,
            queue_len: self.up.queue_len() as u32,
            unknown: Some(0),
            private_files: None,
        };
        let this = self.clone();
        tokio::spawn(async move {
            match this.peer_conn(&user).await {
                Ok(tx) => {
                    let _ = tx.send(PeerMessage::FileSearchResponse(resp).encode());
                }
                Err(e) => tracing::debug!(%user, "cannot deliver search results: {e:#}"),
            }
        });
    }

    /// A peer connection we accepted or opened for ConnectToPeer: route it by its first frame.
    async fn incoming(self: Arc<Self>, mut stream: TcpStream) -> anyhow::Result<()> {
        // Before it has identified itself a connection holds at most one init frame
        // (MAX_INIT_FRAME), and only for PEER_INIT_TIMEOUT in all: trickling bytes does not
        // extend it.
        let deadline = tokio::time::Instant::now() + PEER_INIT_TIMEOUT;
        let mut reader = FrameReader::new(FrameKind::PeerInit);
        let mut buf = vec![0u8; 16 * 1024];
        let frame = loop {
            if let Some(f) = reader.next_frame()? {
                break f;
            }
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .map_err(|_| anyhow!("no peer-init within {}s", PEER_INIT_TIMEOUT.as_secs()))??;
            if n == 0 {
                bail!("closed before peer-init");
            }
            reader.push(&buf[..n]);
        };
        let leftover = reader.take_rest();
        match PeerInit::from_frame(&frame)? {
            PeerInit::PierceFireWall { token } => {
                let waiter = self.pierce_waiters.lock().expect("pierce").remove(&token);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(stream);
                    }
                    None => tracing::debug!(token, "unknown PierceFireWall token"),
                }
            }
            PeerInit::PeerInit { user, conn_type, .. } => {
                self.typed(stream, user, &conn_type, leftover, deadline).await?
            }
        }
        Ok(())
    }

    /// Run a connection by its type. `deadline`: when an `F` connection's token must be in.
    async fn typed(
        self: Arc<Self>,
        mut stream: TcpStream,
        user: String,
        conn_type: &str,
        leftover: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<()> {
        match conn_type {
            "P" => {
                self.spawn_p(stream, user, leftover);
            }
            "F" => {
                // The uploader sends its transfer token first.
                let mut have = leftover;
                while have.len() < 4 {
                    let mut b = [0u8; 4];
                    let n = tokio::time::timeout_at(deadline, stream.read(&mut b))
                        .await
                        .map_err(|_| anyhow!("no token"))??;
                    if n == 0 {
                        bail!("F connection closed before its token");
                    }
                    have.extend_from_slice(&b[..n]);
                }
                let token = u32::from_le_bytes([have[0], have[1], have[2], have[3]]);
                let rest = have[4..].to_vec();
                let waiter = {
                    let mut downloads = self.downloads.lock().expect("downloads");
                    let i = downloads.iter().position(|d| d.token == Some(token) && d.user.eq_ignore_ascii_case(&user));
                    i.and_then(|i| downloads.remove(i).f_conn)
                };
                match waiter {
                    Some(tx) => {
                        let _ = tx.send((stream, rest));
                    }
                    None => tracing::debug!(%user, token, "F connection for nothing we asked"),
                }
            }
            other => tracing::debug!(%user, "ignoring a {other} connection (no distributed network here)"),
        }
        Ok(())
    }
}

/// The size a download goes on with, given the size the user chose (`expected`) and the
/// one the uploader's TransferRequest announced; or why it cannot go on. Without a chosen
/// size the announced one is taken (and the node then keeps it for retries).
fn offered_size(expected: Option<u64>, announced: Option<u64>) -> Result<u64, String> {
    match (expected, announced) {
        (Some(m), Some(n)) if n != m => Err(format!("peer offered {n} bytes of a file of {m}")),
        (Some(m), _) => Ok(m),
        (None, Some(n)) => Ok(n),
        (None, None) => Err("the peer did not say how large the file is".into()),
    }
}

/// Sleep until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One `P` connection's share of [`PEER_BUFFER_BUDGET`], given back when it ends.
struct BufferShare {
    total: Arc<std::sync::atomic::AtomicUsize>,
    mine: usize,
}

impl BufferShare {
    /// Take `n` more bytes, or fail (drop the connection) if that goes past the budget.
    fn reserve(&mut self, n: usize) -> anyhow::Result<()> {
        let before = self.total.fetch_add(n, Ordering::Relaxed);
        if before + n > PEER_BUFFER_BUDGET {
            self.total.fetch_sub(n, Ordering::Relaxed);
            bail!("peer connections hold {before} bytes of unfinished messages (limit {PEER_BUFFER_BUDGET}): dropping this one");
        }
        self.mine += n;
        Ok(())
    }

    /// Now holding `n` bytes.
    fn set(&mut self, n: usize) {
        if n > self.mine {
            self.total.fetch_add(n - self.mine, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(self.mine - n, Ordering::Relaxed);
        }
        self.mine = n;
    }
}

impl Drop for BufferShare {
    fn drop(&mut self) {
        self.total.fetch_sub(self.mine, Ordering::Relaxed);
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(d) => if wr.write_all(&d).await.is_err() { return },
                None => return,
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn read_server_frame(s: &mut TcpStream, reader: &mut FrameReader) -> anyhow::Result<ServerResponse> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(f) = reader.next_frame()? {
            return Ok(ServerResponse::from_frame(&f)?);
        }
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .map_err(|_| anyhow!("the server did not answer"))??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        reader.push(&buf[..n]);
    }
}

async fn run(
    inner: Arc<Inner>,
    server: TcpStream,
    mut reader: FrameReader,
    mut server_rx: mpsc::UnboundedReceiver<Vec<u8>>,
    listener: TcpListener,
) -> anyhow::Result<()> {
    let (mut rd, mut wr) = server.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    let mut ping = tokio::time::interval(Duration::from_secs(300));
    ping.tick().await;
    loop {
        while let Some(f) = reader.next_frame()? {
            match ServerResponse::from_frame(&f) {
                Ok(msg) => on_server(&inner, msg).await,
                Err(e) => tracing::debug!(code = f.code, "undecodable server message: {e}"),
            }
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => return Ok(()),
            r = rd.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    bail!("the server closed the connection");
                }
                reader.push(&buf[..n]);
            }
            Some(out) = server_rx.recv() => wr.write_all(&out).await?,
            r = listener.accept() => {
                if let Ok((s, _)) = r {
                    let this = inner.clone();
                    tokio::spawn(async move {
                        if let Err(e) = this.incoming(s).await {
                            tracing::debug!("peer connection: {e:#}");
                        }
                    });
                }
            }
            _ = ping.tick() => wr.write_all(&ServerRequest::ServerPing.encode()).await?,
        }
    }
}

async fn on_server(inner: &Arc<Inner>, msg: ServerResponse) {
    match msg {
        ServerResponse::GetPeerAddress { user, ip, port, .. } => {
            let waiters = inner.addr_waiters.lock().expect("addr").remove(&user.to_lowercase()).unwrap_or_default();
            for w in waiters {
                let _ = w.send((ip, port));
            }
        }
        ServerResponse::ConnectToPeer { user, conn_type, ip, port, token, .. } => {
            // Someone could not reach us: connect to them and pierce.
            let this = inner.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut s)) =
                    tokio::time::timeout(PEER_CONNECT_WAIT, TcpStream::connect((ip, port as u16))).await
                else {
                    let _ = this.server_tx.send(ServerRequest::CantConnectToPeer { token, user }.encode());
                    return;
                };
                if s.write_all(&PeerInit::PierceFireWall { token }.encode()).await.is_err() {
                    return;
                }
                if let Err(e) = this
                    .clone()
                    .typed(s, user, &conn_type, Vec::new(), tokio::time::Instant::now() + PEER_INIT_TIMEOUT)
                    .await
                {
                    tracing::debug!("indirect connection: {e:#}");
                }
            });
        }
        ServerResponse::CantConnectToPeer { token } => {
            inner.pierce_waiters.lock().expect("pierce").remove(&token);
        }
        ServerResponse::FileSearch { user, token, query } => inner.answer_search(user, token, query).await,
        ServerResponse::EmbeddedMessage { code: 3, body } => {
            if let Ok(omnipeer_slsk::distributed::DistributedMessage::Search { user, token, query, .. }) =
                omnipeer_slsk::distributed::DistributedMessage::decode(3, &body)
            {
                inner.answer_search(user, token, query).await;
            }
        }
        ServerResponse::MessageUser { id, user, message, .. } => {
            let _ = inner.server_tx.send(ServerRequest::MessageAcked { id }.encode());
            inner.events.send(SlskEvent::PrivateMessage { user, text: message }).await;
        }
        ServerResponse::SayChatroom { room, user, message } => {
            inner.events.send(SlskEvent::RoomMessage { room, user, text: message }).await;
        }
        ServerResponse::JoinRoom { room, .. } => {
            inner.events.send(SlskEvent::JoinedRoom { room }).await;
        }
        ServerResponse::Relogged => {
            tracing::warn!("logged in elsewhere: the server closed this session");
            inner.shutdown.cancel();
        }
        _ => {}
    }
}
