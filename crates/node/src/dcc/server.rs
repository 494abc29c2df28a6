//! The DCC Server driver: accepts TCP connections, pumps `omnipeer_dcc::server`'s
//! handshake machine, then runs the service the client asked for — chat, fserve, an
//! incoming send or a get ordered in an fserve session.

use super::{write_lines, ChatLineReader};
use crate::share::Share;
use crate::transfer::{self, TransferError};
use omnipeer_dcc::fserve::{FserveConfig, FserveSession, VPath};
use omnipeer_dcc::server::{CloseReason, Event, Output, ServerConfig, ServerHandshake};
use omnipeer_dcc::{limits, FileReceiver, FileSender, LineReader, SafeName, Services};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How stale the share index may be when an fserve session starts.
const SHARE_MAX_AGE: Duration = Duration::from_secs(5);

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct DccServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Our nick.
    pub nick: String,
    /// Services offered.
    pub services: Services,
    /// The fserve home directory.
    pub share: PathBuf,
    /// Where incoming sends are written.
    pub incoming: PathBuf,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for the opening line (15 s, docs/protocols/dcc.md#handshake).
    pub handshake_timeout: Duration,
    /// Fserve sessions silent this long are closed.
    pub fserve_idle_timeout: Duration,
    /// Transfers stalled this long are dropped.
    pub transfer_idle_timeout: Duration,
    /// Gets per fserve session.
    pub max_gets: usize,
    /// How long a get waits for its `130`.
    pub get_expiry: Duration,
    /// Welcome file inside the share.
    pub welcome: Option<String>,
    /// Largest incoming send accepted; larger ones (and ones the incoming folder's file
    /// system has no room for) get `151 rejected`.
    pub max_incoming_bytes: u64,
}

impl DccServerConfig {
    /// Build from the `[dcc]` section of the configuration and the data directory.
    pub fn from_config(cfg: &crate::config::Config, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let d = &cfg.dcc;
        let nick = if d.nick.is_empty() { cfg.node.nick.clone() } else { d.nick.clone() };
        let dir = |s: &str, default: &str| {
            if s.is_empty() {
                data_dir.join(default)
            } else {
                PathBuf::from(s)
            }
        };
        // The default share is the node's own folder: made for the user to fill. A folder
        // the user named is never created (a typo or an unmounted disk stays visible).
        if d.share.is_empty() {
            let share = data_dir.join("share");
            std::fs::create_dir_all(&share)
                .map_err(|e| anyhow::anyhow!("cannot create the share folder {}: {e}", share.display()))?;
        }
        Ok(DccServerConfig {
            listen: d.listen,
            nick,
            services: d.services()?,
            share: dir(&d.share, "share"),
            incoming: dir(&d.incoming, "incoming"),
            max_connections: d.max_connections,
            handshake_timeout: d.handshake_timeout(),
            fserve_idle_timeout: Duration::from_secs(d.fserve_idle_timeout_secs),
            transfer_idle_timeout: Duration::from_secs(d.transfer_idle_timeout_secs),
            max_gets: d.max_gets,
            get_expiry: Duration::from_secs(d.get_expiry_secs),
            welcome: Some(d.welcome.clone()).filter(|w| !w.is_empty()),
            max_incoming_bytes: d.max_incoming_bytes,
        })
    }
}

/// What happens on the server, for a console or the node's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A chat opened.
    ChatOpened {
        /// Connection id.
        id: u64,
        /// The client's nick.
        nick: String,
        /// Its address.
        peer: SocketAddr,
    },
    /// A chat line arrived.
    ChatLine {
        /// Connection id.
        id: u64,
        /// The client's nick.
        nick: String,
        /// The text.
        text: String,
    },
    /// A chat closed.
    ChatClosed {
        /// Connection id.
        id: u64,
        /// The client's nick.
        nick: String,
    },
    /// An incoming send started.
    ReceiveStarted {
        /// The client's nick.
        nick: String,
        /// The file name.
        name: String,
        /// Its size.
        size: u64,
        /// The resume position.
        position: u64,
    },
    /// An incoming send completed; the file is in the incoming folder.
    ReceiveDone {
        /// The client's nick.
        nick: String,
        /// Where it is.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// An incoming send broke off (the partial file is kept for a resume).
    ReceiveFailed {
        /// The client's nick.
        nick: String,
        /// The file name.
        name: String,
        /// Why.
        error: String,
    },
    /// An fserve session opened.
    FserveOpened {
        /// The client's nick.
        nick: String,
        /// Its address.
        peer: SocketAddr,
    },
    /// A file ordered with `get` was sent completely.
    GetDone {
        /// The client's nick.
        nick: String,
        /// The file's path in the share.
        path: String,
        /// Bytes sent in this connection.
        bytes: u64,
    },
    /// A get broke off.
    GetFailed {
        /// The client's nick.
        nick: String,
        /// The file's path in the share.
        path: String,
        /// Why.
        error: String,
    },
}

#[derive(Debug)]
struct PendingGet {
    id: u64,
    session: u64,
    nick: String,
    ip: IpAddr,
    name: String,
    path: VPath,
    expires: Instant,
    active: bool,
}

struct State {
    cfg: DccServerConfig,
    share: Share,
    events: crate::events::EventSink<ServerEvent>,
    next_id: AtomicU64,
    active: AtomicUsize,
    gets: Mutex<Vec<PendingGet>>,
    receiving: Mutex<HashSet<String>>,
    chats: Mutex<HashMap<u64, (String, mpsc::UnboundedSender<String>)>>,
    /// The node's uploads (records and the shared upload limit), when it runs in one.
    uploads: std::sync::OnceLock<Arc<crate::upload::Uploads>>,
}

/// A handle for talking to a running server: take its events, answer chats.
#[derive(Clone)]
pub struct DccServerHandle {
    state: Arc<State>,
}

impl DccServerHandle {
    /// The server's events, from its start, for one consumer (`None` once taken). The
    /// server's connections wait while the consumer is behind (see [`crate::events`]).
    pub fn take_events(&self) -> Option<mpsc::Receiver<ServerEvent>> {
        self.state.events.take()
    }

    /// Send a chat line to the open chats with `nick` (case-insensitive), or to every open
    /// chat when `nick` is `None`. Returns how many chats got it.
    pub fn say(&self, nick: Option<&str>, text: &str) -> usize {
        let chats = self.state.chats.lock().expect("chats lock");
        chats
            .values()
            .filter(|(n, _)| nick.is_none_or(|want| n.eq_ignore_ascii_case(want)))
            .filter(|(_, tx)| tx.send(text.to_owned()).is_ok())
            .count()
    }

    /// Nicks of the open chats.
    pub fn chat_nicks(&self) -> Vec<String> {
        self.state.chats.lock().expect("chats lock").values().map(|(n, _)| n.clone()).collect()
    }
}

/// A bound DCC server.
pub struct DccServer {
    listener: TcpListener,
    state: Arc<State>,
}

impl DccServer {
    /// Create the folders, index the share and bind the listener.
    pub async fn bind(cfg: DccServerConfig) -> anyhow::Result<DccServer> {
        use anyhow::Context;
        std::fs::create_dir_all(&cfg.incoming)
            .with_context(|| format!("cannot create the incoming folder {}", cfg.incoming.display()))?;
        // A share folder that does not exist is a warning, not created (docs/operations.md):
        // the file server lists nothing until it appears.
        let share = if std::fs::symlink_metadata(&cfg.share).is_err() {
            tracing::warn!(
                "the DCC share folder {} does not exist: fserve shares nothing until it is created (it is not created)",
                cfg.share.display()
            );
            Share::missing(&cfg.share)
        } else {
            let share_dir = cfg.share.clone();
            tokio::task::spawn_blocking(move || Share::open_single(&share_dir))
                .await?
                .with_context(|| format!("cannot index the share folder {}", cfg.share.display()))?
        };
        let listener =
            TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let events = crate::events::EventSink::default();
        let state = Arc::new(State {
            cfg,
            share,
            events,
            next_id: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            gets: Mutex::new(Vec::new()),
            receiving: Mutex::new(HashSet::new()),
            chats: Mutex::new(HashMap::new()),
            uploads: std::sync::OnceLock::new(),
        });
        Ok(DccServer { listener, state })
    }

    /// Record gets in the node's uploads and pace them by its upload limit (set once,
    /// before [`DccServer::run`]).
    pub fn set_uploads(&self, uploads: Arc<crate::upload::Uploads>) {
        let _ = self.state.uploads.set(uploads);
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// A handle for events and chat answers.
    pub fn handle(&self) -> DccServerHandle {
        DccServerHandle { state: self.state.clone() }
    }

    /// Serve until `shutdown` is cancelled, then close every connection (partial files
    /// stay for a resume).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = tokio_util::task::TaskTracker::new();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let active = self.state.active.fetch_add(1, Ordering::SeqCst);
            let max = self.state.cfg.max_connections;
            if active >= max.saturating_mul(2) {
                // Far over the limit: not even a `150`, to bound what a flood costs.
                self.state.active.fetch_sub(1, Ordering::SeqCst);
                drop(stream);
                continue;
            }
            let full = active >= max;
            let state = self.state.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                let _guard = ActiveGuard(state.clone());
                let _ = stream.set_nodelay(true);
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = serve(state, stream, peer, full) => {}
                }
            });
        }
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

struct ActiveGuard(Arc<State>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(state: Arc<State>, mut stream: TcpStream, peer: SocketAddr, full: bool) {
    let cfg = ServerConfig {
        nick: state.cfg.nick.clone(),
        services: state.cfg.services,
        handshake_timeout: state.cfg.handshake_timeout,
    };
    let mut hs = ServerHandshake::new(cfg, Instant::now(), full);
    let mut buf = [0u8; 2048];
    // The file a pending send or get resolved to, kept until the handshake settles.
    let mut send_target: Option<(PathBuf, SafeName)> = None;
    let mut get_target: Option<(std::fs::File, String, u64)> = None;
    loop {
        let mut deadline = None;
        while let Some(out) = hs.poll_output() {
            match out {
                Output::Transmit(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Output::Timeout(t) => {
                    deadline = Some(t);
                    break;
                }
                Output::Event(ev) => match ev {
                    Event::Closed(reason) => {
                        if let Some((_, name)) = send_target.take() {
                            // A send refused after its name was reserved: free the name.
                            state.receiving.lock().expect("receiving lock").remove(&name.as_str().to_lowercase());
                        }
                        log_close(peer, &reason);
                        let _ = stream.shutdown().await;
                        return;
                    }
                    Event::Chat { nick, leftover } => return run_chat(&state, stream, peer, nick, leftover).await,
                    Event::Fserve { nick, leftover } => return run_fserve(&state, stream, peer, nick, leftover).await,
                    Event::SendOffered { nick, size, name } => match decide_send(&state, &name, size) {
                        Ok((path, position)) => {
                            tracing::info!(%peer, %nick, %name, size, position, "incoming send offered");
                            send_target = Some((path, name));
                            let free = free_space(&state.cfg.incoming);
                            hs.accept_send_within(position, state.cfg.max_incoming_bytes, free);
                        }
                        Err(why) => {
                            tracing::info!(%peer, %nick, %name, "incoming send refused: {why}");
                            hs.reject(why);
                        }
                    },
                    Event::Receive { nick, name: _, receiver, leftover } => {
                        let (path, name) = send_target.take().expect("send decided before receive");
                        return run_receive(&state, stream, nick, path, name, receiver, leftover).await;
                    }
                    Event::GetRequested { nick, name } => match decide_get(&state, &nick, peer.ip(), &name) {
                        GetDecision::Ignore => hs.ignore(),
                        GetDecision::Reject(why) => hs.reject(why),
                        GetDecision::Accept { file, size, path, id } => {
                            get_target = Some((file, path, id));
                            hs.accept_get(Instant::now(), size);
                        }
                    },
                    Event::SendFile { nick, name: _, sender, leftover } => {
                        let (file, path, id) = get_target.take().expect("get decided before send");
                        return run_get(&state, stream, nick, GetTarget { file, path, id }, sender, leftover).await;
                    }
                },
            }
        }
        let Some(deadline) = deadline else {
            // No deadline and nothing to do: only decisions can be pending, and they are
            // all made synchronously above.
            return;
        };
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(n) => hs.handle_input(Instant::now(), &buf[..n]),
                Err(_) => hs.handle_input(Instant::now(), &[]),
            },
            _ = tokio::time::sleep_until(deadline.into()) => hs.handle_timeout(Instant::now()),
        }
    }
}

fn log_close(peer: SocketAddr, reason: &CloseReason) {
    match reason {
        CloseReason::Unavailable(None) => tracing::info!(%peer, "server full: answered 150"),
        CloseReason::Unavailable(Some(s)) => {
            tracing::info!(%peer, "service {} is switched off: answered 150", s.name())
        }
        CloseReason::Rejected(why) => tracing::info!(%peer, "answered 151: {why}"),
        CloseReason::Timeout => tracing::info!(%peer, "no opening line within the handshake timeout: closed"),
        CloseReason::Ignored => tracing::info!(%peer, "get without a matching fserve get: ignored"),
        other => tracing::info!(%peer, "closed during the handshake: {other:?}"),
    }
}

/// Bytes free for an unprivileged writer on the file system of `dir`; `u64::MAX` when
/// it cannot be measured (the write then fails on its own if the disk fills).
fn free_space(dir: &std::path::Path) -> u64 {
    match rustix::fs::statvfs(dir) {
        Ok(v) => v.f_bavail.saturating_mul(v.f_frsize),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot measure the free space: {e}");
            u64::MAX
        }
    }
}

/// Where an incoming file goes and from which byte: the size of what the incoming folder
/// already holds under that name.
fn decide_send(state: &State, name: &SafeName, size: u64) -> Result<(PathBuf, u64), String> {
    // A SafeName is exactly one ordinary path component, so this join stays in `incoming`.
    let path = state.cfg.incoming.join(name.as_str());
    let position = match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.file_type().is_file() => return Err("not a regular file in the incoming folder".into()),
        Ok(m) if m.len() > size => {
            return Err(format!("a larger file named {name} ({} bytes) is already there", m.len()))
        }
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("cannot inspect the incoming folder: {e}")),
    };
    let key = name.as_str().to_lowercase();
    if !state.receiving.lock().expect("receiving lock").insert(key) {
        return Err(format!("{name} is already being received"));
    }
    Ok((path, position))
}

enum GetDecision {
    Ignore,
    Reject(String),
    Accept { file: std::fs::File, size: u64, path: String, id: u64 },
}

fn decide_get(state: &State, nick: &str, ip: IpAddr, name: &SafeName) -> GetDecision {
    let now = Instant::now();
    let mut gets = state.gets.lock().expect("gets lock");
    gets.retain(|g| g.active || g.expires > now);
    let Some(i) = gets.iter().position(|g| {
        !g.active && g.ip == ip && g.nick.eq_ignore_ascii_case(nick) && g.name.eq_ignore_ascii_case(name.as_str())
    }) else {
        return GetDecision::Ignore;
    };
    match state.share.snapshot().open(&gets[i].path) {
        Ok((file, size)) => {
            gets[i].active = true;
            GetDecision::Accept { file, size, path: gets[i].path.to_string(), id: gets[i].id }
        }
        Err(e) => {
            let g = gets.remove(i);
            GetDecision::Reject(format!("{}: {e}", g.path))
        }
    }
}

fn gets_in_use(state: &State, session: u64) -> usize {
    let now = Instant::now();
    let mut gets = state.gets.lock().expect("gets lock");
    gets.retain(|g| g.active || g.expires > now);
    gets.iter().filter(|g| g.session == session).count()
}

async fn run_chat(state: &Arc<State>, stream: TcpStream, peer: SocketAddr, nick: String, leftover: Vec<u8>) {
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    state.chats.lock().expect("chats lock").insert(id, (nick.clone(), tx));
    tracing::info!(%peer, %nick, "chat opened");
    state.events.send(ServerEvent::ChatOpened { id, nick: nick.clone(), peer }).await;
    let (mut rd, mut wr) = stream.into_split();
    let mut lines = ChatLineReader::new(leftover);
    loop {
        tokio::select! {
            line = lines.next(&mut rd) => match line {
                Ok(Some(text)) => {
                    state.events.send(ServerEvent::ChatLine { id, nick: nick.clone(), text }).await;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%peer, %nick, "chat closed: {e}");
                    break;
                }
            },
            Some(text) = rx.recv() => {
                if write_lines(&mut wr, std::slice::from_ref(&text)).await.is_err() {
                    break;
                }
            }
        }
    }
    state.chats.lock().expect("chats lock").remove(&id);
    let _ = wr.shutdown().await;
    tracing::info!(%peer, %nick, "chat closed");
    state.events.send(ServerEvent::ChatClosed { id, nick }).await;
}

async fn run_fserve(state: &Arc<State>, stream: TcpStream, peer: SocketAddr, nick: String, leftover: Vec<u8>) {
    let session_id = state.next_id.fetch_add(1, Ordering::SeqCst);
    tracing::info!(%peer, %nick, "fserve session opened");
    state.events.send(ServerEvent::FserveOpened { nick: nick.clone(), peer }).await;
    let share = state.share.clone();
    let Ok(index) = tokio::task::spawn_blocking(move || share.refresh_if_older(SHARE_MAX_AGE)).await else {
        return;
    };
    let welcome = state.cfg.welcome.as_deref().and_then(|w| VPath::root().resolve(w).ok());
    let mut session =
        FserveSession::new(FserveConfig { server_nick: state.cfg.nick.clone(), max_gets: state.cfg.max_gets, welcome });
    let (mut rd, mut wr) = stream.into_split();
    if write_lines(&mut wr, &session.welcome(&*index)).await.is_err() {
        return;
    }
    let mut lines = LineReader::new(limits::MAX_LINE);
    lines.push(&leftover);
    let mut buf = [0u8; 2048];
    let idle = state.cfg.fserve_idle_timeout;
    'session: loop {
        loop {
            let line = match lines.next_line() {
                Ok(Some(l)) => omnipeer_dcc::decode_text(&l),
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%peer, %nick, "fserve closed: {e}");
                    break 'session;
                }
            };
            let in_use = gets_in_use(state, session_id);
            let index = state.share.snapshot();
            // `read` and `cd` read at most a page of a small text file from the share.
            let reply = session.handle_line(&*index, &line, in_use);
            if let Some(order) = &reply.get {
                tracing::info!(%peer, %nick, path = %order.path, size = order.size, "fserve get ordered");
                state.gets.lock().expect("gets lock").push(PendingGet {
                    id: state.next_id.fetch_add(1, Ordering::SeqCst),
                    session: session_id,
                    nick: nick.clone(),
                    ip: peer.ip(),
                    name: order.name.clone(),
                    path: order.path.clone(),
                    expires: Instant::now() + state.cfg.get_expiry,
                    active: false,
                });
            }
            if write_lines(&mut wr, &reply.lines).await.is_err() {
                break 'session;
            }
            if reply.close {
                break 'session;
            }
        }
        match tokio::time::timeout(idle, rd.read(&mut buf)).await {
            Err(_) => {
                let _ = write_lines(&mut wr, &["Idle timeout: closing.".to_string()]).await;
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => lines.push(&buf[..n]),
        }
    }
    let _ = wr.shutdown().await;
    tracing::info!(%peer, %nick, "fserve session closed");
}

async fn run_receive(
    state: &Arc<State>,
    mut stream: TcpStream,
    nick: String,
    path: PathBuf,
    name: SafeName,
    receiver: FileReceiver,
    leftover: Vec<u8>,
) {
    let key = name.as_str().to_lowercase();
    let size = receiver.size();
    state
        .events
        .send(ServerEvent::ReceiveStarted {
            nick: nick.clone(),
            name: name.to_string(),
            size,
            position: receiver.position(),
        })
        .await;
    let result = match transfer::open_for_receive(&path, receiver.position()) {
        Err(e) => Err(TransferError::Io(e)),
        Ok(_) if receiver.is_complete() => {
            // Nothing left to send: acknowledge the whole file and close.
            let r = stream.write_all(&receiver.ack()).await;
            let _ = stream.shutdown().await;
            r.map_err(TransferError::Io)
        }
        Ok(file) => transfer::receive(stream, file, receiver, leftover, state.cfg.transfer_idle_timeout, &mut |_| {})
            .await
            .map(|_| ()),
    };
    state.receiving.lock().expect("receiving lock").remove(&key);
    match result {
        Ok(()) => {
            tracing::info!(%nick, path = %path.display(), size, "incoming send complete");
            state.events.send(ServerEvent::ReceiveDone { nick, path, size }).await;
        }
        Err(e) => {
            tracing::warn!(%nick, %name, "incoming send failed: {e}");
            state.events.send(ServerEvent::ReceiveFailed { nick, name: name.to_string(), error: e.to_string() }).await;
        }
    }
}

/// The file a decided `get` sends: the open file, its share path and the get's id.
struct GetTarget {
    file: std::fs::File,
    path: String,
    id: u64,
}

async fn run_get(
    state: &Arc<State>,
    stream: TcpStream,
    nick: String,
    target: GetTarget,
    sender: FileSender,
    leftover: Vec<u8>,
) {
    let GetTarget { file, path, id } = target;
    tracing::info!(%nick, %path, from = sender.position(), size = sender.size(), "get: sending");
    let bytes = sender.remaining();
    let start = sender.position();
    let record = state.uploads.get().map(|u| {
        let (rid, sent) = u.untracked("dcc", &nick, &path, sender.size(), start);
        (u.clone(), rid, sent)
    });
    let limit = record.as_ref().map(|(u, _, _)| u.limit());
    let sent = record.as_ref().map(|(_, _, s)| s.clone());
    let mut progress = |p: u64| {
        if let Some(s) = &sent {
            s.store(p.saturating_sub(start), std::sync::atomic::Ordering::Relaxed);
        }
    };
    let result =
        transfer::send_limited(stream, file, sender, leftover, state.cfg.transfer_idle_timeout, limit, &mut progress)
            .await;
    if let Some((u, rid, _)) = &record {
        u.finish(*rid, result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    }
    state.gets.lock().expect("gets lock").retain(|g| g.id != id);
    match result {
        Ok(_) => {
            tracing::info!(%nick, %path, "get complete");
            state.events.send(ServerEvent::GetDone { nick, path, bytes }).await;
        }
        Err(e) => {
            tracing::warn!(%nick, %path, "get failed: {e}");
            state.events.send(ServerEvent::GetFailed { nick, path, error: e.to_string() }).await;
        }
    }
}
