//! An ADC hub session (docs/protocols/adc.md#client): one task pumps the sans-IO
//! [`omnipeer_adc::client::HubSession`]; client-to-client connections (accepted on our
//! listener when active, opened after a CTM) are matched to the download that asked for
//! them by their token and otherwise serve our share (`super::cc`). Search results arrive
//! through the hub (DRES) or by UDP (URES); others' searches are answered the same two ways.
//! The share is the node's one index as the NMDC client sees it (`crate::nmdc::share`).

use super::cc::{self, Stream};
use crate::events::EventSink;
use crate::nmdc::cc::{DownloadJob, Downloaded, UploadContext};
use crate::nmdc::driver::{
    accept, bind_listeners, fetch_file_list, logged_in, login_refused, open_share, reindex_share, upload_context,
    wait_for_login,
};
use crate::nmdc::share::DcShare;
use crate::tls::TlsIdentity;
use crate::upload::Uploads;
use anyhow::{anyhow, bail, Context};
use omnipeer_adc::client::{
    Config, Event, Hit, HubSession, IncomingSearch, LoginFailure, Mode, Output, Query, SearchResult, User,
};
use omnipeer_adc::transfer::Role;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long a requested client-to-client connection may take to arrive.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for a user to appear in the list right after login.
const USER_WAIT: Duration = Duration::from_secs(5);
/// Results we send for one search (DC++ sends at most 10 too; more only cost the hub).
pub const MAX_RESULTS: usize = 10;
/// Client-to-client connections one session runs at once (both directions, handshakes
/// included); more CTMs or incoming connections are refused until one ends, so a flood of
/// CTMs relayed by the hub cannot make us open sockets without end.
pub const MAX_CC_CONNECTIONS: usize = 64;
/// How long the login may take, connection included.
const LOGIN_WAIT: Duration = Duration::from_secs(70);

/// Session settings.
#[derive(Debug, Clone)]
pub struct AdcClientConfig {
    /// The hub, `host:port`.
    pub hub: String,
    /// `adcs://`: TLS to the hub.
    pub tls: bool,
    /// `?kp=SHA256/...`: the hub's certificate must have this keyprint.
    pub keyprint: Option<String>,
    /// Our nick.
    pub nick: String,
    /// Password of a registered nick.
    pub password: Option<String>,
    /// Active: accept client-to-client connections (TCP) and results (UDP) here.
    pub listen: Option<SocketAddr>,
    /// Folders shared.
    pub share: Vec<PathBuf>,
    /// Slots (when `uploads` is None), advertised in INF.
    pub slots: usize,
    /// The node's upload slots, queue and limit.
    pub uploads: Option<Arc<Uploads>>,
    /// Database (hash cache).
    pub db: PathBuf,
    /// Where our PID is kept (`adc-pid`): the same identity (CID) at every login.
    pub data_dir: PathBuf,
    /// DE.
    pub description: String,
}

/// What the session reports.
#[derive(Debug, Clone)]
pub enum AdcEvent {
    /// Main chat (hub messages come as the hub's name).
    Chat {
        /// Speaker.
        nick: String,
        /// Text.
        text: String,
    },
    /// A private message.
    Private {
        /// From.
        from: String,
        /// Text.
        text: String,
    },
    /// A search result.
    SearchResult(SearchResult),
    /// The session ended.
    Closed(String),
}

enum Cmd {
    Search(Query, oneshot::Sender<anyhow::Result<String>>),
    Connect { nick: String, token: String, reply: oneshot::Sender<anyhow::Result<String>> },
    Say(String, oneshot::Sender<anyhow::Result<()>>),
    Pm(String, String, oneshot::Sender<anyhow::Result<()>>),
    Users(oneshot::Sender<Vec<User>>),
    NickOf(String, oneshot::Sender<Option<String>>),
    Reshare(Arc<DcShare>, oneshot::Sender<()>),
}

/// A connection waited for: by token, with the CID it must come from.
struct Waiter {
    cid: String,
    /// The connection, its machine, and whether it is TLS.
    tx: oneshot::Sender<(Stream, omnipeer_adc::transfer::Connection, bool)>,
}
type Waiters = Arc<Mutex<HashMap<String, Waiter>>>;

/// A running ADC hub session.
pub struct AdcClient {
    cmds: mpsc::Sender<Cmd>,
    events: Arc<EventSink<AdcEvent>>,
    waiters: Waiters,
    share: Mutex<Option<Arc<DcShare>>>,
    roots: Vec<PathBuf>,
    shared: Option<crate::share::SharedIndex>,
    db: PathBuf,
    cid: String,
    /// The c-c listener when active.
    pub listen_addr: Option<SocketAddr>,
    reshare_lock: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Our PID, kept in `dir/adc-pid` (created on first use, mode 0600): one identity for the
/// node on every hub, as DC++ keeps one.
pub fn load_pid(dir: &Path) -> anyhow::Result<[u8; 24]> {
    let s = crate::app::secret_file(&dir.join("adc-pid"))?;
    let b = data_encoding::BASE64URL_NOPAD.decode(s.as_bytes()).context("adc-pid cannot be read")?;
    b.try_into().map_err(|_| anyhow!("adc-pid does not hold 24 bytes"))
}

/// Connect to `addr`, with TLS when `tls` (only the certificate with `keyprint` when
/// given: `crate::tls::connect`), showing our certificate if the peer asks.
async fn connect_stream(
    addr: &str,
    tls: bool,
    keyprint: Option<&str>,
    identity: Option<&TlsIdentity>,
) -> anyhow::Result<Stream> {
    let tcp = tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    let _ = tcp.set_nodelay(true);
    if tls {
        let s = crate::tls::connect(tcp, addr, keyprint, identity).await.with_context(|| format!("TLS with {addr}"))?;
        return Ok(Box::new(s));
    }
    Ok(Box::new(tcp))
}

impl AdcClient {
    /// Index the share, connect, log in; returns once logged in. Uploads go by `channel`.
    pub async fn start_in(cfg: AdcClientConfig, channel: &str) -> anyhow::Result<AdcClient> {
        let channel: Arc<str> = channel.into();
        let pid = load_pid(&cfg.data_dir)?;
        // Our certificate (kept in the data dir): for TLS client-to-client connections
        // (ADCS) and shown to TLS hubs that ask for one. Without it we stay plain.
        let dir = cfg.data_dir.clone();
        let identity = match tokio::task::spawn_blocking(move || TlsIdentity::load_or_create(&dir)).await? {
            Ok(id) => Some(Arc::new(id)),
            Err(e) => {
                tracing::warn!("no TLS certificate, ADC client-to-client connections stay plain: {e}");
                None
            }
        };
        let cid = omnipeer_adc::client::cid_of(&pid);
        let shared = cfg.uploads.as_ref().and_then(|u| u.share());
        let (store, share) =
            open_share(cfg.db.clone(), cfg.share.clone(), shared.clone(), cid.clone(), "ADC share").await?;
        let (listener, udp) = bind_listeners(cfg.listen).await?;
        let listen_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let session_cfg = Config {
            nick: cfg.nick.clone(),
            pid,
            password: cfg.password.clone(),
            description: cfg.description.clone(),
            share_size: share.as_ref().map_or(0, |s| s.total_size()),
            shared_files: share.as_ref().map_or(0, |s| s.file_count() as u64),
            slots: cfg.slots as u32,
            mode: match listen_addr {
                Some(a) => Mode::Active { tcp_port: a.port(), udp_port: a.port() },
                None => Mode::Passive,
            },
            version: format!("omnipeer {}", env!("CARGO_PKG_VERSION")),
            keyprint: identity.as_ref().map(|i| i.keyprint().to_owned()),
        };
        let hub = connect_stream(&cfg.hub, cfg.tls, cfg.keyprint.as_deref(), identity.as_deref())
            .await
            .with_context(|| format!("cannot reach the hub {}", cfg.hub))?;
        let session = HubSession::new(session_cfg, Instant::now());

        let (cmds, cmd_rx) = mpsc::channel(64);
        let events: Arc<EventSink<AdcEvent>> = Arc::default();
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
            cid: cid.clone(),
            events: events.clone(),
            waiters: waiters.clone(),
            ctx,
            udp,
            shutdown: shutdown.clone(),
            logged: Some(logged_tx),
            cmd_tx: cmds.downgrade(),
            identity,
            cc_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CC_CONNECTIONS)),
        };
        let mut task = tokio::spawn(runner.run(hub, cmd_rx, listener));
        wait_for_login(logged_rx, &mut task, &shutdown, LOGIN_WAIT, &cfg.hub).await?;
        Ok(AdcClient {
            cmds,
            events,
            waiters,
            share: Mutex::new(share),
            roots: cfg.share.clone(),
            shared,
            db: cfg.db.clone(),
            cid,
            listen_addr,
            reshare_lock: tokio::sync::Mutex::new(()),
            shutdown,
            task,
        })
    }

    /// The events, once.
    pub fn take_events(&self) -> Option<mpsc::Receiver<AdcEvent>> {
        self.events.take()
    }

    /// The share, if any.
    pub fn share(&self) -> Option<Arc<DcShare>> {
        self.share.lock().expect("share").clone()
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(cmd(tx)).await.map_err(|_| anyhow!("the hub session ended"))?;
        rx.await.map_err(|_| anyhow!("the hub session ended"))
    }

    /// Send a search; returns its token.
    pub async fn search(&self, q: Query) -> anyhow::Result<String> {
        self.ask(|tx| Cmd::Search(q, tx)).await?
    }

    /// Main chat.
    pub async fn say(&self, text: &str) -> anyhow::Result<()> {
        self.ask(|tx| Cmd::Say(text.to_owned(), tx)).await?
    }

    /// A private message.
    pub async fn private_message(&self, to: &str, text: &str) -> anyhow::Result<()> {
        self.ask(|tx| Cmd::Pm(to.to_owned(), text.to_owned(), tx)).await?
    }

    /// Everyone on the hub.
    pub async fn user_list(&self) -> anyhow::Result<Vec<User>> {
        self.ask(Cmd::Users).await
    }

    /// Log out without waiting.
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    /// Whether the session is up.
    pub fn is_online(&self) -> bool {
        !self.task.is_finished()
    }

    /// Index the share folders again and serve the new share (SS/SF updated at the hub).
    pub async fn reshare(&self) -> anyhow::Result<()> {
        if self.roots.is_empty() {
            return Ok(());
        }
        let _one = self.reshare_lock.lock().await;
        let (roots, db, cid, shared) = (self.roots.clone(), self.db.clone(), self.cid.clone(), self.shared.clone());
        let share = reindex_share(shared, roots, db, cid, "ADC share").await?;
        self.ask(|tx| Cmd::Reshare(share.clone(), tx)).await?;
        *self.share.lock().expect("share") = Some(share);
        Ok(())
    }

    /// Download one thing from `from`: ask for a connection with a fresh token, wait for
    /// the connection carrying it, fetch. A partial file at `job.out` is resumed.
    pub async fn download(&self, from: &str, job: &DownloadJob) -> anyhow::Result<Downloaded> {
        let (stream, conn, tls) = self.connect_to_download(from).await?;
        cc::download(stream, conn, from, job, tls).await
    }

    /// A ready client-to-client connection to `from` for our GETs (and whether it is
    /// TLS): ask for it with a fresh token and wait for the connection carrying it.
    pub async fn connect_to_download(
        &self,
        from: &str,
    ) -> anyhow::Result<(Stream, omnipeer_adc::transfer::Connection, bool)> {
        let until = Instant::now() + USER_WAIT;
        let cid = loop {
            if let Some(u) = self.user_list().await?.into_iter().find(|u| u.nick.eq_ignore_ascii_case(from)) {
                break u.cid;
            }
            if Instant::now() >= until {
                bail!("{from} is not on the hub");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let token = format!("{:016x}", rand::random::<u64>());
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters").insert(token.clone(), Waiter { cid, tx });
        let asked = self.ask(|reply| Cmd::Connect { nick: from.to_owned(), token: token.clone(), reply }).await;
        let got = match asked.and_then(|r| r) {
            Ok(_) => tokio::time::timeout(CONNECT_WAIT, rx).await,
            Err(e) => {
                self.waiters.lock().expect("waiters").remove(&token);
                return Err(e);
            }
        };
        match got {
            Ok(Ok(x)) => Ok(x),
            _ => {
                self.waiters.lock().expect("waiters").remove(&token);
                bail!("{from} did not connect within {}s (is it active, or are we?)", CONNECT_WAIT.as_secs());
            }
        }
    }

    /// Fetch and parse `from`'s file list (`files.xml.bz2`, the same format as NMDC's),
    /// through a file in `tmp_dir` removed afterwards, within the parser's limits.
    pub async fn file_list(
        &self,
        from: &str,
        tmp_dir: &Path,
        max_entries: usize,
    ) -> anyhow::Result<omnipeer_nmdc::filelist::FileList> {
        fetch_file_list(from, tmp_dir, "adc-files", max_entries, |job| async move { self.download(from, &job).await })
            .await
    }
}

struct Runner {
    /// Slots freed for users queued here: we ask them to connect again (as DC++ does),
    /// so the slot held for them is taken.
    grants: mpsc::UnboundedReceiver<crate::upload::Grant>,
    session: HubSession,
    nick: String,
    cid: String,
    events: Arc<EventSink<AdcEvent>>,
    waiters: Waiters,
    ctx: Option<UploadContext>,
    udp: Arc<UdpSocket>,
    shutdown: CancellationToken,
    logged: Option<oneshot::Sender<anyhow::Result<()>>>,
    /// For c-c tasks to ask who a CID is (weak: the session ends when its owner drops).
    cmd_tx: mpsc::WeakSender<Cmd>,
    /// Our certificate, for ADCS.
    identity: Option<Arc<TlsIdentity>>,
    /// [`MAX_CC_CONNECTIONS`].
    cc_slots: Arc<tokio::sync::Semaphore>,
}

impl Runner {
    async fn run(
        mut self,
        mut hub: Stream,
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
            let Some(deadline) = deadline else {
                return Ok(());
            };
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
                    let token = format!("{:016x}", rand::random::<u64>());
                    if let Err(e) = self.session.request_connection(&g.user, &token) {
                        tracing::debug!(user = %g.user, "cannot call a queued downloader back: {e}");
                    }
                }
                r = accept(&listener) => {
                    if let Ok((stream, _)) = r {
                        let _ = stream.set_nodelay(true);
                        // ADC and ADCS on one port: the connecting side speaks first.
                        let (this, identity) = (self.spawner(), self.identity.clone());
                        let Ok(permit) = self.cc_slots.clone().try_acquire_owned() else {
                            tracing::info!("too many client-to-client connections: one refused");
                            continue;
                        };
                        tokio::spawn(async move {
                            let _permit = permit;
                            match crate::tls::accept_plain_or_tls(stream, identity.as_deref()).await {
                                Ok(s) => {
                                    let tls = s.is_tls();
                                    this.run_cc(Box::new(s), tls, Role::Listener, None, None).await
                                }
                                Err(e) => tracing::info!("ADC client-to-client TLS failed: {e}"),
                            }
                        });
                    }
                }
                r = self.udp.recv_from(&mut udp_buf) => {
                    if let Ok((n, _)) = r {
                        if let Some((cid, mut res)) = omnipeer_adc::client::parse_result_datagram(&udp_buf[..n]) {
                            // Only results from someone on this hub, named as the hub knows them.
                            if let Some(u) = self.session.user_by_cid(&cid) {
                                res.nick = u.nick.clone();
                                self.events.send(AdcEvent::SearchResult(res)).await;
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Search(q, reply) => {
                let _ = reply.send(self.session.search(&q).map_err(|e| anyhow!("{e}")));
            }
            Cmd::Connect { nick, token, reply } => {
                let r = self.session.request_connection(&nick, &token).map(|_| token).map_err(|e| anyhow!("{e}"));
                let _ = reply.send(r);
            }
            Cmd::Say(text, reply) => {
                let _ = reply.send(self.session.say(&text).map_err(|e| anyhow!("{e}")));
            }
            Cmd::Pm(to, text, reply) => {
                let _ = reply.send(self.session.private_message(&to, &text).map_err(|e| anyhow!("{e}")));
            }
            Cmd::Users(reply) => {
                let _ = reply.send(self.session.users().filter(|u| !u.nick.is_empty()).cloned().collect());
            }
            Cmd::NickOf(cid, reply) => {
                let _ = reply.send(self.session.user_by_cid(&cid).map(|u| u.nick.clone()));
            }
            Cmd::Reshare(share, reply) => {
                if let Some(ctx) = &self.ctx {
                    *ctx.share.lock().expect("share") = share.clone();
                }
                self.session.set_share(share.total_size(), share.file_count() as u64);
                let _ = reply.send(());
            }
        }
    }

    /// Some when the session is over.
    async fn on_event(&mut self, ev: Event) -> Option<anyhow::Result<()>> {
        match ev {
            Event::LoggedIn => {
                logged_in(&mut self.logged);
            }
            Event::LoginFailed(f) => {
                use crate::login::{LoginRefused, Refused};
                let (kind, why) = match f {
                    LoginFailure::BadPassword => (Refused::Password, "the hub refused the password".to_owned()),
                    LoginFailure::PasswordRequired => {
                        (Refused::Registered, format!("the nick {} is registered: a password is needed", self.nick))
                    }
                    LoginFailure::RegisteredOnly => {
                        (Refused::Registered, "the hub takes registered users only".to_owned())
                    }
                    LoginFailure::NickTaken | LoginFailure::NickInvalid => {
                        (Refused::Name, format!("the nick {} is taken or not allowed", self.nick))
                    }
                    LoginFailure::HubFull => (Refused::Other, "the hub is full".to_owned()),
                    LoginFailure::Banned(t) => (Refused::Other, format!("banned: {t}")),
                    LoginFailure::Other(code, t) => (Refused::Other, format!("login failed: {t} ({code})")),
                };
                return Some(Err(login_refused(&mut self.logged, LoginRefused { kind, why })));
            }
            Event::Closed(why) => {
                self.events.send(AdcEvent::Closed(why.clone())).await;
                return Some(Err(anyhow!("the hub closed the session: {why}")));
            }
            Event::Chat { nick, text, me } => {
                let text = if me { format!("/me {text}") } else { text };
                self.events.send(AdcEvent::Chat { nick, text }).await;
            }
            Event::Private { from, text, me } => {
                let text = if me { format!("/me {text}") } else { text };
                self.events.send(AdcEvent::Private { from, text }).await;
            }
            Event::HubMessage(text) => {
                let nick = self.session.hub_name().to_owned();
                let nick = if nick.is_empty() { "hub".to_owned() } else { nick };
                self.events.send(AdcEvent::Chat { nick, text }).await;
            }
            Event::SearchResult(r) => {
                self.events.send(AdcEvent::SearchResult(r)).await;
            }
            Event::SearchRequest(s) => self.answer_search(&s).await,
            Event::ConnectToMe { nick, cid, ip, port, token, tls } => {
                if tls && self.identity.is_none() {
                    tracing::info!(%nick, "an ADCS connection asked for, but we have no certificate");
                    return None;
                }
                // A peer's keyprint from its INF (KP) is pinned, as DC++ does.
                let pin = self.session.user(&nick).and_then(|u| u.keyprint.clone());
                let addr = SocketAddr::new(ip.into(), port).to_string();
                let (this, identity) = (self.spawner(), self.identity.clone());
                let Ok(permit) = self.cc_slots.clone().try_acquire_owned() else {
                    tracing::info!(%nick, "too many client-to-client connections: a CTM ignored");
                    return None;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    match connect_stream(&addr, tls, pin.as_deref(), identity.as_deref()).await {
                        Ok(s) => this.run_cc(s, tls, Role::Connector, Some(token), Some((nick, cid))).await,
                        Err(e) => tracing::info!(%addr, "cannot reach a peer that asked us to connect: {e:#}"),
                    }
                });
            }
            Event::RevConnectToMe { nick, token, tls } => {
                if let Err(e) = self.session.connect_to_me(&nick, &token, tls) {
                    tracing::info!(%nick, "cannot answer RCM: {e}");
                }
            }
            Event::UserJoined(_) | Event::UserLeft(_) => {}
        }
        None
    }

    async fn answer_search(&mut self, s: &IncomingSearch) {
        let Some(ctx) = &self.ctx else { return };
        let share = ctx.share.lock().expect("share").clone();
        let free = ctx.uploads.free_slots(&ctx.channel) as u32;
        let query = s.query.clone();
        let hits =
            tokio::task::spawn_blocking(move || search_share(&share, &query, MAX_RESULTS)).await.unwrap_or_default();
        if hits.is_empty() {
            return;
        }
        for dg in self.session.answer(s, &hits, free) {
            let to = SocketAddr::new(dg.ip.into(), dg.port);
            if let Err(e) = self.udp.send_to(&dg.payload, to).await {
                tracing::debug!(%to, "cannot send a search result: {e}");
            }
        }
    }

    fn spawner(&self) -> CcSpawner {
        CcSpawner {
            cid: self.cid.clone(),
            waiters: self.waiters.clone(),
            ctx: self.ctx.clone(),
            cmds: self.cmd_tx.clone(),
        }
    }
}

/// Our files matching `q`, at most `max`, as ADC names them (`/share/dir/name`).
pub fn search_share(share: &DcShare, q: &Query, max: usize) -> Vec<Hit> {
    let fname = |p: String| format!("/{}", p.replace('\\', "/"));
    if let Some(t) = &q.tth {
        return share
            .by_tth(t)
            .map(|f| Hit { path: fname(f.nmdc_path()), size: f.size, tth: Some(f.tth) })
            .into_iter()
            .collect();
    }
    let mut hits = Vec::new();
    for f in share.files() {
        if hits.len() >= max {
            break;
        }
        let p = f.nmdc_path();
        if q.matches_file(&p, f.size, &f.tth) {
            hits.push(Hit { path: fname(p), size: f.size, tth: Some(f.tth) });
        }
    }
    hits
}

#[derive(Clone)]
struct CcSpawner {
    cid: String,
    waiters: Waiters,
    ctx: Option<UploadContext>,
    cmds: mpsc::WeakSender<Cmd>,
}

impl CcSpawner {
    /// Handshake; then hand the connection to the download waiting for its token, or
    /// serve uploads on it.
    async fn run_cc(
        self,
        mut stream: Stream,
        tls: bool,
        role: Role,
        token: Option<String>,
        peer: Option<(String, String)>,
    ) {
        let (conn, peer_cid, peer_token) = match cc::handshake(&mut stream, role, &self.cid, token.as_deref()).await {
            Ok(x) => x,
            Err(e) => {
                tracing::info!("ADC client-to-client connection failed: {e:#}");
                return;
            }
        };
        if let Some((_, cid)) = &peer {
            if *cid != peer_cid {
                tracing::info!("a peer presented another CID than the hub gave for it: dropped");
                return;
            }
        }
        // The token that names this connection: ours when we connected, the peer's when it did.
        let key = if role == Role::Connector { token } else { peer_token };
        let waiter = key.and_then(|k| {
            let mut w = self.waiters.lock().expect("waiters");
            match w.get(&k) {
                Some(x) if x.cid == peer_cid => w.remove(&k),
                _ => None,
            }
        });
        if let Some(w) = waiter {
            let _ = w.tx.send((stream, conn, tls));
            return;
        }
        let Some(ctx) = self.ctx else {
            tracing::info!("a peer wants to download but we share nothing");
            return;
        };
        let nick = match peer {
            Some((nick, _)) => Some(nick),
            None => match self.cmds.upgrade() {
                Some(tx) => {
                    let (rtx, rrx) = oneshot::channel();
                    if tx.send(Cmd::NickOf(peer_cid.clone(), rtx)).await.is_ok() {
                        rrx.await.ok().flatten()
                    } else {
                        None
                    }
                }
                None => None,
            },
        };
        let Some(nick) = nick else {
            tracing::info!("a connection from someone not on the hub: dropped");
            return;
        };
        if let Err(e) = cc::serve_uploads(stream, conn, &nick, ctx).await {
            tracing::info!(peer = %nick, "ADC upload connection ended: {e:#}");
        }
    }
}
