//! A Direct Connect client: one task pumps the hub session machine; client-to-client
//! connections (incoming on our listener when active, outgoing after a `$ConnectToMe`)
//! serve our share or carry a download we asked for; search results arrive through the
//! hub (passive) or by UDP (active), and we answer others' searches the same two ways.
//!
//! TLS (docs/protocols/nmdc.md#tls): an `nmdcs://` hub address connects with TLS, pinned to
//! its `?kp=` keyprint when it has one. Client-to-client connections use TLS when both ends
//! can: our certificate is the one kept in the data dir (crate::tls, next to the database),
//! we advertise it (`TLS` in `$Supports`, the `$MyINFO` TLS bit), ask TLS users for
//! `$ConnectToMe …S`, connect with TLS when asked to, and our one listening port takes plain
//! and TLS connections alike ([`crate::tls::accept_plain_or_tls`]).

use super::cc::{self, DcStream, DownloadJob, Downloaded, UploadContext};
use super::driver::{
    accept, bind_listeners, fetch_file_list, logged_in, login_refused, open_share, reindex_share, upload_context,
    wait_for_login,
};
use super::share::DcShare;
use crate::events::EventSink;
use crate::tls::{MaybeTls, TlsIdentity};
use crate::upload::Uploads;
use anyhow::{anyhow, bail, Context};
use omnipeer_nmdc::client::{ClientMode, Event, HubSession, LoginFailure, Output, SessionConfig};
use omnipeer_nmdc::command::{DirectionOutcome, SearchOrigin, SearchQuery, SearchResult};
use omnipeer_nmdc::handshake::{Peer, Role};
use omnipeer_nmdc::search::{max_results, Responder};
use omnipeer_nmdc::text::utf8_to_wire;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long to wait for a user to appear in the list after login.
const USER_WAIT: Duration = Duration::from_secs(5);
/// How long a requested client-to-client connection may take to arrive.
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// How long the login may take, connection included.
const LOGIN_WAIT: Duration = Duration::from_secs(70);

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The hub: `host:port`, `dchub://host:port`, or `nmdcs://host:port[/?kp=SHA256/…]` for
    /// TLS (crate::config::parse_hub_url).
    pub hub: String,
    /// Our nick.
    pub nick: String,
    /// Password for a registered nick.
    pub password: Option<String>,
    /// Active mode: accept c-c connections (TCP) and search results (UDP) here.
    pub listen: Option<SocketAddr>,
    /// Folders to share (empty: share nothing).
    pub share: Vec<PathBuf>,
    /// Upload slots (when `uploads` is None), also advertised in `$MyINFO`.
    pub slots: usize,
    /// Upload slots, queue and limit shared with the node's other networks; None: the
    /// client's own, with `slots` slots and no limit.
    pub uploads: Option<Arc<Uploads>>,
    /// Database (hash cache).
    pub db: PathBuf,
    /// Description in `$MyINFO`.
    pub description: String,
}

/// What the client reports.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// Logged in.
    LoggedIn,
    /// Main chat.
    Chat {
        /// Speaker.
        nick: String,
        /// Text.
        text: String,
    },
    /// A private message.
    PrivateMessage {
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// A search result (through the hub or by UDP).
    SearchResult(SearchResult),
    /// A user joined.
    UserJoined(String),
    /// A user left.
    UserLeft(String),
    /// The hub session ended.
    Closed(String),
}

enum Cmd {
    Search(SearchQuery, oneshot::Sender<anyhow::Result<()>>),
    RequestConnection(String, oneshot::Sender<anyhow::Result<()>>),
    Say(String),
    Pm(String, String, oneshot::Sender<anyhow::Result<()>>),
    Users(oneshot::Sender<Vec<omnipeer_nmdc::client::User>>),
    /// Serve this share from now on and announce its size.
    Reshare(Arc<DcShare>, oneshot::Sender<()>),
}

/// Who waits for a connection from a peer (by lowercased nick), oldest first: a download
/// and a file list fetch from the same peer each get a connection of their own (every
/// wait asked for one), instead of the later one taking the earlier one's place.
type Waiters = Arc<Mutex<HashMap<String, Vec<oneshot::Sender<(DcStream, Peer, Vec<u8>)>>>>>;

/// A running client.
pub struct DcClient {
    cmds: mpsc::Sender<Cmd>,
    events: Arc<EventSink<ClientEvent>>,
    waiters: Waiters,
    /// The c-c listener's address when active.
    pub listen_addr: Option<SocketAddr>,
    share: Mutex<Option<Arc<DcShare>>>,
    roots: Vec<PathBuf>,
    /// The node's share index, read by every network (None: this client indexes its own).
    shared: Option<crate::share::SharedIndex>,
    db: PathBuf,
    cid: String,
    /// One rescan at a time, so the newest index is the one that stays.
    reshare_lock: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl DcClient {
    /// Hash the share, connect, log in. Returns once logged in.
    pub async fn start(cfg: ClientConfig) -> anyhow::Result<DcClient> {
        DcClient::start_in(cfg, "nmdc").await
    }

    /// [`DcClient::start`] for one of several hub sessions sharing `cfg.uploads`: its
    /// uploads go by `channel` there (crate::upload).
    pub async fn start_in(cfg: ClientConfig, channel: &str) -> anyhow::Result<DcClient> {
        let channel: Arc<str> = channel.into();
        let cid = cid();
        let shared = cfg.uploads.as_ref().and_then(|u| u.share());
        let (store, share) =
            open_share(cfg.db.clone(), cfg.share.clone(), shared.clone(), cid.clone(), "share hashed").await?;
        let (listener, udp) = bind_listeners(cfg.listen).await?;
        let listen_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;

        let url = crate::config::parse_hub_url(&cfg.hub)?;
        if url.protocol != crate::config::HubProtocol::Nmdc {
            bail!("hub {:?}: not an NMDC hub address (dchub:// or nmdcs://)", cfg.hub);
        }
        // Our certificate for TLS client-to-client connections, kept beside the database
        // (the data dir); without one we only do plain connections.
        let identity = {
            let dir = cfg.db.parent().map(PathBuf::from).unwrap_or_default();
            match tokio::task::spawn_blocking(move || TlsIdentity::load_or_create(&dir)).await? {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!("no TLS for client-to-client connections: {e}");
                    None
                }
            }
        };
        let mut scfg = SessionConfig::new(&cfg.nick);
        scfg.tls = identity.is_some();
        scfg.password = cfg.password.clone();
        scfg.description = cfg.description.clone();
        scfg.share_size = share.as_ref().map_or(0, |s| s.total_size());
        scfg.slots = cfg.slots as u32;
        scfg.client_name = "omnipeer".into();
        scfg.client_version = env!("CARGO_PKG_VERSION").into();
        scfg.mode = match listen_addr {
            Some(a) => ClientMode::Active {
                ip: (!a.ip().is_unspecified()).then_some(a.ip()),
                tcp_port: a.port(),
                udp_port: a.port(),
            },
            None => ClientMode::Passive,
        };
        let session = HubSession::new(scfg, Instant::now()).map_err(|e| anyhow!("{e}"))?;
        let tcp = TcpStream::connect(&url.address)
            .await
            .with_context(|| format!("cannot connect to the hub {}", url.address))?;
        let _ = tcp.set_nodelay(true);
        let hub = if url.tls {
            let host = url.address.rsplit_once(':').map_or(url.address.as_str(), |(h, _)| h);
            let s = crate::tls::connect(tcp, host, url.keyprint.as_deref(), identity.as_ref())
                .await
                .with_context(|| format!("hub {}", cfg.hub))?;
            tracing::info!(hub = %url.address, keyprint = ?s.peer_keyprint(), pinned = url.keyprint.is_some(), "TLS to the hub");
            s
        } else {
            MaybeTls::Plain(tcp)
        };

        let (cmds, cmd_rx) = mpsc::channel(64);
        let events: Arc<EventSink<ClientEvent>> = Arc::default();
        let waiters: Waiters = Arc::default();
        let shutdown = CancellationToken::new();
        let (uploads, ctx) =
            upload_context(cfg.uploads.as_ref(), cfg.slots, &shutdown, share.as_ref(), &store, &channel);
        let (logged_tx, logged_rx) = oneshot::channel();
        let grants = uploads.grants(&channel);
        let runner = Runner {
            grants,
            session,
            nick: cfg.nick.clone(),
            hub_addr: url.address.clone(),
            identity,
            events: events.clone(),
            waiters: waiters.clone(),
            ctx,
            udp: udp.clone(),
            shutdown: shutdown.clone(),
            logged: Some(logged_tx),
        };
        let mut task = tokio::spawn(runner.run(hub, cmd_rx, listener));
        wait_for_login(logged_rx, &mut task, &shutdown, LOGIN_WAIT, &cfg.hub).await?;
        Ok(DcClient {
            cmds,
            events,
            waiters,
            listen_addr,
            share: Mutex::new(share),
            roots: cfg.share.clone(),
            shared,
            db: cfg.db.clone(),
            cid,
            reshare_lock: tokio::sync::Mutex::new(()),
            shutdown,
            task,
        })
    }

    /// The shared files, if any.
    pub fn share(&self) -> Option<Arc<DcShare>> {
        self.share.lock().expect("share lock").clone()
    }

    /// Index the share folders again (unchanged files keep their cached hashes) and
    /// serve the new share in this session: searches, the file list and uploads use it,
    /// and the hub gets a `$MyINFO` with the new size. No new login: running transfers
    /// and chats go on. A client that started sharing nothing keeps sharing nothing.
    pub async fn reshare(&self) -> anyhow::Result<Option<Arc<DcShare>>> {
        if self.roots.is_empty() {
            return Ok(None);
        }
        let _one = self.reshare_lock.lock().await;
        let (roots, db, cid, shared) = (self.roots.clone(), self.db.clone(), self.cid.clone(), self.shared.clone());
        let share = reindex_share(shared, roots, db, cid, "share rescanned").await?;
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Reshare(share.clone(), tx)).await.map_err(|_| anyhow!("the hub session ended"))?;
        rx.await.map_err(|_| anyhow!("the hub session ended"))?;
        *self.share.lock().expect("share lock") = Some(share.clone());
        Ok(Some(share))
    }

    /// The client's events, from its start, for one consumer (`None` once taken). The
    /// session waits while the consumer is [`crate::events::EVENT_QUEUE`] events behind,
    /// so the consumer must not wait for this client in its loop (see [`crate::events`]).
    pub fn take_events(&self) -> Option<mpsc::Receiver<ClientEvent>> {
        self.events.take()
    }

    /// Send a search (results arrive as [`ClientEvent::SearchResult`]).
    pub async fn search(&self, query: SearchQuery) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Search(query, tx)).await.map_err(|_| anyhow!("the hub session ended"))?;
        rx.await.map_err(|_| anyhow!("the hub session ended"))?
    }

    /// Say something in main chat.
    pub async fn say(&self, text: &str) -> anyhow::Result<()> {
        self.cmds.send(Cmd::Say(text.to_owned())).await.map_err(|_| anyhow!("the hub session ended"))
    }

    /// Send a private message.
    pub async fn private_message(&self, to: &str, text: &str) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Pm(to.to_owned(), text.to_owned(), tx))
            .await
            .map_err(|_| anyhow!("the hub session ended"))?;
        rx.await.map_err(|_| anyhow!("the hub session ended"))?
    }

    /// Log out without waiting (the session ends shortly; see [`DcClient::is_online`]).
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    /// Whether the hub session is still up.
    pub fn is_online(&self) -> bool {
        !self.task.is_finished()
    }

    /// Nicks online.
    pub async fn users(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.user_list().await?.into_iter().map(|u| u.nick).collect())
    }

    /// Everyone on the hub, with their last `$MyINFO` and op mark.
    pub async fn user_list(&self) -> anyhow::Result<Vec<omnipeer_nmdc::client::User>> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Users(tx)).await.map_err(|_| anyhow!("the hub session ended"))?;
        rx.await.map_err(|_| anyhow!("the hub session ended"))
    }

    /// Download one thing from `from`: ask for a connection the way our mode allows, wait
    /// for it, fetch. A partial file at `job.out` is resumed.
    pub async fn download(&self, from: &str, job: &DownloadJob) -> anyhow::Result<Downloaded> {
        let (stream, peer, leftover) = self.connect_to_download(from).await?;
        cc::download(stream, &peer, leftover, job).await
    }

    /// A client-to-client connection to `from` on which we download (asked for the way
    /// our mode allows): the stream, the peer and bytes that came with the handshake.
    pub async fn connect_to_download(
        &self,
        from: &str,
    ) -> anyhow::Result<(super::cc::DcStream, omnipeer_nmdc::handshake::Peer, Vec<u8>)> {
        // Right after login the user list may still be arriving.
        let until = Instant::now() + USER_WAIT;
        loop {
            if self.users().await?.iter().any(|u| u.eq_ignore_ascii_case(from)) {
                break;
            }
            if Instant::now() >= until {
                bail!("{from} is not on the hub");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").entry(from.to_lowercase()).or_default().push(tx);
        let (ctx, crx) = oneshot::channel();
        self.cmds
            .send(Cmd::RequestConnection(from.to_owned(), ctx))
            .await
            .map_err(|_| anyhow!("the hub session ended"))?;
        crx.await.map_err(|_| anyhow!("the hub session ended"))??;
        let (stream, peer, leftover) = match tokio::time::timeout(CONNECT_WAIT, rx).await {
            Ok(Ok(x)) => x,
            _ => {
                // Ours is the one whose receiver is gone now (this timeout dropped it).
                let mut w = self.waiters.lock().expect("waiters lock");
                let key = from.to_lowercase();
                if let Some(v) = w.get_mut(&key) {
                    v.retain(|s| !s.is_closed());
                    if v.is_empty() {
                        w.remove(&key);
                    }
                }
                drop(w);
                bail!("{from} did not connect within {}s (is it active, or are we?)", CONNECT_WAIT.as_secs());
            }
        };
        Ok((stream, peer, leftover))
    }

    /// Fetch and parse `from`'s file list (`files.xml.bz2`, docs/protocols/nmdc.md): it
    /// travels like a file over a client-to-client connection (no slot needed) into a
    /// file in `tmp_dir`, removed afterwards, and is read within the parser's limits
    /// (`omnipeer_nmdc::filelist::Limits`, with at most `max_entries` folders and files;
    /// a list above `MAX_FILELIST_COMPRESSED` is refused before it is written).
    pub async fn file_list(
        &self,
        from: &str,
        tmp_dir: &std::path::Path,
        max_entries: usize,
    ) -> anyhow::Result<omnipeer_nmdc::filelist::FileList> {
        fetch_file_list(from, tmp_dir, "files", max_entries, |job| async move { self.download(from, &job).await }).await
    }

    /// Log out and stop.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }

    /// Run until `shutdown` or the hub closes.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let DcClient { shutdown: own, mut task, .. } = self;
        tokio::select! {
            _ = shutdown.cancelled() => { own.cancel(); (&mut task).await? }
            r = &mut task => r?,
        }
    }
}

fn cid() -> String {
    let random: [u8; 24] = rand::random();
    omnipeer_nmdc::tth::Tth(random).to_base32()
}

struct Runner {
    /// Slots freed for queued NMDC requesters: we ask them to connect (as DC++ does),
    /// so a client that keeps its queue comes back for the slot held for it.
    grants: mpsc::UnboundedReceiver<crate::upload::Grant>,
    session: HubSession,
    nick: String,
    hub_addr: String,
    /// Our certificate for TLS client-to-client connections.
    identity: Option<TlsIdentity>,
    events: Arc<EventSink<ClientEvent>>,
    waiters: Waiters,
    ctx: Option<UploadContext>,
    udp: Arc<UdpSocket>,
    shutdown: CancellationToken,
    logged: Option<oneshot::Sender<anyhow::Result<()>>>,
}

impl Runner {
    async fn run(
        mut self,
        mut hub: DcStream,
        mut cmds: mpsc::Receiver<Cmd>,
        listener: Option<TcpListener>,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut udp_buf = vec![0u8; 64 * 1024];
        loop {
            let mut deadline = None;
            while let Some(o) = self.session.poll_output() {
                match o {
                    Output::Transmit(b) => hub.write_all(&b).await.context("writing to the hub")?,
                    Output::Timeout(t) => {
                        deadline = Some(t);
                        break;
                    }
                    Output::Event(ev) => {
                        if let Some(end) = self.on_event(ev).await {
                            let _ = hub.shutdown().await;
                            return end;
                        }
                    }
                }
            }
            let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = hub.shutdown().await;
                    return Ok(());
                }
                r = hub.read(&mut buf) => match r {
                    Ok(0) | Err(_) => self.session.handle_eof(),
                    Ok(n) => self.session.handle_input(Instant::now(), &buf[..n]),
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.session.handle_timeout(Instant::now()),
                Some(cmd) = cmds.recv() => self.on_cmd(cmd),
                Some(g) = self.grants.recv() => {
                    if self.session.user(&g.user).is_some() {
                        if let Err(e) = self.session.request_connection(&g.user) {
                            tracing::debug!(user = %g.user, "cannot call a queued downloader back: {e}");
                        }
                    }
                }
                r = accept(&listener) => {
                    if let Ok((stream, _)) = r {
                        self.spawn_cc(stream, Role::Listener);
                    }
                }
                r = self.udp.recv_from(&mut udp_buf) => {
                    if let Ok((n, _)) = r {
                        match omnipeer_nmdc::client::parse_sr_datagram(&udp_buf[..n]) {
                            Ok(sr) => { self.events.send(ClientEvent::SearchResult(sr)).await; }
                            Err(e) => tracing::debug!("bad UDP datagram: {e}"),
                        }
                    }
                }
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Search(q, reply) => {
                let _ = reply.send(self.session.search(&q).map(|_| ()).map_err(|e| anyhow!("{e}")));
            }
            Cmd::RequestConnection(nick, reply) => {
                let r = if self.session.user(&nick).is_none() {
                    Err(anyhow!("{nick} is not on the hub"))
                } else {
                    self.session.request_connection(&nick).map_err(|e| anyhow!("{e}"))
                };
                let _ = reply.send(r);
            }
            Cmd::Say(text) => {
                if let Err(e) = self.session.say(&text) {
                    tracing::warn!("cannot say: {e}");
                }
            }
            Cmd::Pm(to, text, reply) => {
                let _ = reply.send(self.session.private_message(&to, &text).map_err(|e| anyhow!("{e}")));
            }
            Cmd::Users(reply) => {
                let _ = reply.send(self.session.users().cloned().collect());
            }
            Cmd::Reshare(share, reply) => {
                if let Some(ctx) = &self.ctx {
                    *ctx.share.lock().expect("share lock") = share.clone();
                    self.session.set_share_size(share.total_size());
                }
                let _ = reply.send(());
            }
        }
    }

    /// Returns `Some` when the session is over.
    async fn on_event(&mut self, ev: Event) -> Option<anyhow::Result<()>> {
        match ev {
            Event::LoggedIn => {
                logged_in(&mut self.logged);
                self.events.send(ClientEvent::LoggedIn).await;
            }
            Event::LoginFailed(f) => {
                use crate::login::{LoginRefused, Refused};
                let (kind, why) = match f {
                    LoginFailure::BadPassword => (Refused::Password, "the hub refused the password".to_owned()),
                    LoginFailure::PasswordRequired => {
                        (Refused::Registered, format!("the nick {} is registered: a password is needed", self.nick))
                    }
                    LoginFailure::NickTaken => {
                        (Refused::Name, format!("the nick {} is taken or not allowed", self.nick))
                    }
                    LoginFailure::HubFull => (Refused::Other, "the hub is full".to_owned()),
                    other => (Refused::Other, format!("login failed: {other:?}")),
                };
                return Some(Err(login_refused(&mut self.logged, LoginRefused { kind, why })));
            }
            Event::Closed(r) => {
                self.events.send(ClientEvent::Closed(format!("{r:?}"))).await;
                return Some(Err(anyhow!("the hub closed the session: {r:?}")));
            }
            Event::Chat { nick, text } => {
                self.events.send(ClientEvent::Chat { nick, text }).await;
            }
            Event::PrivateMessage { from, text } => {
                self.events.send(ClientEvent::PrivateMessage { from, text }).await;
            }
            Event::SearchResult(sr) => {
                self.events.send(ClientEvent::SearchResult(sr)).await;
            }
            Event::UserJoined { nick, .. } => {
                self.events.send(ClientEvent::UserJoined(nick)).await;
            }
            Event::UserLeft { nick } => {
                self.events.send(ClientEvent::UserLeft(nick)).await;
            }
            Event::SearchRequest { origin, query } => self.answer_search(&origin, &query).await,
            Event::ConnectToMe { host, port, tls } => {
                let ip = host.trim_start_matches('[').trim_end_matches(']').to_owned();
                let addr = match ip.parse::<std::net::IpAddr>() {
                    Ok(a) => SocketAddr::new(a, port).to_string(),
                    Err(_) => format!("{ip}:{port}"),
                };
                let this = self.spawn_ctx();
                // `S`: the peer listens for TLS; without a certificate of our own we try plain
                // (DC++ does the same).
                let identity = if tls { self.identity.clone() } else { None };
                tokio::spawn(async move {
                    let tcp = match tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(&addr)).await {
                        Ok(Ok(s)) => s,
                        _ => return tracing::info!(%addr, "cannot reach a peer that asked us to connect"),
                    };
                    let _ = tcp.set_nodelay(true);
                    let stream = match &identity {
                        Some(id) => match crate::tls::connect(tcp, &ip, None, Some(id)).await {
                            Ok(s) => s,
                            Err(e) => return tracing::info!(%addr, "client-to-client TLS failed: {e}"),
                        },
                        None => MaybeTls::Plain(tcp),
                    };
                    this.run_cc(stream, Role::Connector).await
                });
            }
            Event::RevConnectToMe { from } => {
                // Only an active client can answer; request_connection sends $ConnectToMe.
                if let Err(e) = self.session.request_connection(&from) {
                    tracing::info!(%from, "cannot answer $RevConnectToMe: {e}");
                }
            }
            _ => {}
        }
        None
    }

    async fn answer_search(&mut self, origin: &SearchOrigin, query: &SearchQuery) {
        let Some(ctx) = &self.ctx else { return };
        let share = ctx.share.lock().expect("share lock").clone();
        let responder = Responder {
            nick: utf8_to_wire(&self.nick),
            free_slots: ctx.uploads.free_slots(&ctx.channel) as u32,
            total_slots: ctx.uploads.total_slots(&ctx.channel) as u32,
            hub_name: self.session.hub_name().unwrap_or("hub").to_owned(),
            hub_addr: self.hub_addr.clone(),
        };
        let (files, dirs) = share.search(query, max_results(origin));
        let mut results: Vec<SearchResult> = files
            .iter()
            .map(|f| responder.file_result(origin, &utf8_to_wire(&f.nmdc_path()), f.size, &f.tth))
            .collect();
        results.extend(dirs.iter().map(|d| responder.dir_result(origin, &utf8_to_wire(d))));
        for r in results {
            match self.session.send_search_result(origin, r) {
                Ok(Some(dg)) => {
                    let target = format!("{}:{}", dg.host, dg.port);
                    if let Err(e) = self.udp.send_to(&dg.payload, &target).await {
                        tracing::debug!(%target, "cannot send a search result: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("cannot answer a search: {e}"),
            }
        }
    }

    fn spawn_ctx(&self) -> CcSpawner {
        CcSpawner { nick: self.nick.clone(), waiters: self.waiters.clone(), ctx: self.ctx.clone() }
    }

    /// An accepted connection: TLS or plain, as its first byte says.
    fn spawn_cc(&self, stream: TcpStream, role: Role) {
        let this = self.spawn_ctx();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match crate::tls::accept_plain_or_tls(stream, identity.as_ref()).await {
                Ok(s) => this.run_cc(s, role).await,
                Err(e) => tracing::info!("client-to-client connection failed: {e}"),
            }
        });
    }
}

#[derive(Clone)]
struct CcSpawner {
    nick: String,
    waiters: Waiters,
    ctx: Option<UploadContext>,
}

impl CcSpawner {
    async fn run_cc(self, mut stream: DcStream, role: Role) {
        let want_download = self.waiters.lock().expect("waiters lock").values().flatten().any(|s| !s.is_closed());
        let (peer, outcome, leftover) = match cc::handshake(&mut stream, role, &self.nick, want_download, None).await {
            Ok(x) => x,
            Err(e) => {
                tracing::info!("client-to-client connection failed: {e:#}");
                return;
            }
        };
        match outcome {
            DirectionOutcome::WeDownload => {
                let waiter = {
                    let mut w = self.waiters.lock().expect("waiters lock");
                    let key = peer.nick.to_lowercase();
                    let v = w.get_mut(&key);
                    let first = v.and_then(|v| {
                        v.retain(|s| !s.is_closed());
                        (!v.is_empty()).then(|| v.remove(0))
                    });
                    if w.get(&key).is_some_and(Vec::is_empty) {
                        w.remove(&key);
                    }
                    first
                };
                match waiter {
                    Some(tx) => {
                        let _ = tx.send((stream, peer, leftover));
                    }
                    None => tracing::info!(peer = %peer.nick, "connection from a peer we want nothing from"),
                }
            }
            DirectionOutcome::TheyDownload => match self.ctx {
                Some(ctx) => {
                    if let Err(e) = cc::serve_uploads(stream, &peer, leftover, ctx).await {
                        tracing::info!(peer = %peer.nick, "upload connection ended: {e:#}");
                    }
                }
                None => tracing::info!(peer = %peer.nick, "a peer wants to download but we share nothing"),
            },
            other => tracing::info!(peer = %peer.nick, "nothing to transfer: {other:?}"),
        }
    }
}
