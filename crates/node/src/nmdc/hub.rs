//! The NMDC hub driver: the sans-IO [`Hub`] machine pumped by the shared many-connection
//! driver ([`crate::serve`]: bounded per-client queues, stuck clients dropped).
//! Registrations and bans live in SQLite; password checks run on blocking threads.
//!
//! TLS (`nmdcs://`, docs/protocols/nmdc.md#tls): [`HubServer::listen_tls`] adds a port that
//! speaks TLS only, as PtokaX's TLS ports do, beside (or instead of) the plain one. Each
//! TLS connection is terminated here and relayed over loopback to the plain listener, as
//! Verlihub's TLS proxy does, but inside the process: the relay's loopback source address
//! is mapped back to the user's real address before the hub machine sees the connection,
//! so bans, per-address limits and `$UserIP` see the real address. At most
//! [`MAX_PENDING_TLS_HANDSHAKES`] handshakes run at once, [`MAX_PENDING_TLS_HANDSHAKES_PER_IP`]
//! from one address (each at most [`crate::tls::HANDSHAKE_TIMEOUT`]); connections beyond
//! that are closed at once.

use crate::serve::{serve, Action, Control, Machine};
use crate::store::{verify_password, Store};
use crate::tls::TlsIdentity;
use anyhow::Context;
use omnipeer_nmdc::hub::{Ban, ConnId, Hub, HubConfig, HubEvent, HubOutput};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The machine's settings (name, topic, limits).
    pub hub: HubConfig,
    /// The database of registrations and bans.
    pub db: PathBuf,
    /// Nicks to register at start: (nick, password, op).
    pub register: Vec<(String, String, bool)>,
}

/// A bound hub.
pub struct HubServer {
    listener: TcpListener,
    cfg: HubServerConfig,
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<HubEvent>,
    /// Changes to store, applied in order by one blocking worker.
    persist_tx: mpsc::UnboundedSender<Persist>,
    persist_worker: tokio::task::JoinHandle<()>,
    /// TLS ports and the certificate each serves.
    tls: Vec<(TcpListener, TlsIdentity)>,
}

/// TLS handshakes running at once on the hub's TLS ports; further connections are closed
/// at once (a flood of silent connections costs sockets, not memory or logins).
pub const MAX_PENDING_TLS_HANDSHAKES: usize = 256;

/// TLS handshakes running at once from one address: one address cannot take every
/// handshake slot and lock others out of the TLS port.
pub const MAX_PENDING_TLS_HANDSHAKES_PER_IP: usize = 8;

/// Handshakes in progress per address.
type PendingPerIp = Arc<Mutex<HashMap<std::net::IpAddr, usize>>>;

/// One handshake counted against its address until dropped.
struct PendingSlot {
    map: PendingPerIp,
    ip: std::net::IpAddr,
}

impl PendingSlot {
    fn take(map: &PendingPerIp, ip: std::net::IpAddr) -> Option<PendingSlot> {
        let mut m = map.lock().expect("pending per ip");
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_PENDING_TLS_HANDSHAKES_PER_IP {
            return None;
        }
        *n += 1;
        Some(PendingSlot { map: map.clone(), ip })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().expect("pending per ip");
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Loopback source address of a TLS relay connection → the user's real address.
type RelayPeers = Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>;

type Persist = Box<dyn FnOnce(&Store) -> anyhow::Result<()> + Send>;

/// Password checks (Argon2) running at once: a flood of `$MyPass` costs its senders time,
/// not every core of the machine.
const CONCURRENT_CHECKS: usize = 2;

impl HubServer {
    /// Open the database, apply `--register`, and bind.
    pub async fn bind(cfg: HubServerConfig) -> anyhow::Result<HubServer> {
        let db = cfg.db.clone();
        let register = cfg.register.clone();
        let store = tokio::task::spawn_blocking(move || -> anyhow::Result<Store> {
            let store = Store::open(&db)?;
            for (nick, pass, op) in &register {
                store.hub_register(nick, pass, *op)?;
            }
            Ok(store)
        })
        .await??;
        let listener = crate::serve::listen(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let (events, _) = broadcast::channel(1024);
        let store = Arc::new(Mutex::new(store));
        let (persist_tx, mut persist_rx) = mpsc::unbounded_channel::<Persist>();
        let worker_store = store.clone();
        let persist_worker = tokio::task::spawn_blocking(move || {
            while let Some(change) = persist_rx.blocking_recv() {
                if let Err(e) = change(&worker_store.lock().expect("store lock")) {
                    tracing::error!("cannot store a hub change: {e:#}");
                }
            }
        });
        Ok(HubServer { listener, cfg, store, events, persist_tx, persist_worker, tls: Vec::new() })
    }

    /// Also accept TLS (`nmdcs://`) connections on `addr`, with `identity`'s certificate
    /// (users pin [`TlsIdentity::keyprint`]). Returns the bound address. For a TLS-only hub,
    /// bind the plain listener to `127.0.0.1:0`: the relay reaches it there.
    pub fn listen_tls(&mut self, addr: SocketAddr, identity: TlsIdentity) -> anyhow::Result<SocketAddr> {
        let l = crate::serve::listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let bound = l.local_addr()?;
        self.tls.push((l, identity));
        Ok(bound)
    }

    /// The addresses of the TLS ports.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls.iter().filter_map(|(l, _)| l.local_addr().ok()).collect()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    /// The hub's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }

    /// Serve until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut hub = Hub::new(self.cfg.hub.clone());
        {
            let store = self.store.lock().expect("store lock");
            for (nick, op) in store.hub_users()? {
                hub.set_registered(&nick, op);
            }
            let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let now = Instant::now();
            for b in store.hub_bans()? {
                hub.add_ban(Ban {
                    nick: b.nick,
                    ip: b.ip.and_then(|i| i.parse().ok()),
                    until: b.until.map(|u| now + Duration::from_secs(u.saturating_sub(now_unix))),
                    reason: b.reason,
                });
            }
        }
        let HubServer { listener, store, events, persist_tx, persist_worker, tls, .. } = self;
        let relay_peers: RelayPeers = Arc::default();
        let plain = listener.local_addr()?;
        // The relay connects to the plain listener over loopback.
        let inner = match plain.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], plain.port())),
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, plain.port()))
            }
            _ => plain,
        };
        let handshakes = Arc::new(Semaphore::new(MAX_PENDING_TLS_HANDSHAKES));
        for (l, identity) in tls {
            let (peers, shutdown, handshakes) = (relay_peers.clone(), shutdown.clone(), handshakes.clone());
            tokio::spawn(accept_tls(l, identity, inner, peers, handshakes, shutdown));
        }
        let handler = EventHandler { store, events, persist_tx, checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)) };
        let machine = HubMachine { hub, relay_peers };
        serve(listener, machine, move |ev, control| handler.on_event(ev, control), shutdown).await;
        // Everything changed before the shutdown is on disk before `run` returns.
        let _ = persist_worker.await;
        Ok(())
    }
}

/// Accept TLS connections on `listener` and relay each to the plain listener at `inner`.
async fn accept_tls(
    listener: TcpListener,
    identity: TlsIdentity,
    inner: SocketAddr,
    peers: RelayPeers,
    handshakes: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let per_ip: PendingPerIp = Arc::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("TLS accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes at once: closed");
            continue;
        };
        let Some(slot) = PendingSlot::take(&per_ip, peer.ip()) else {
            tracing::debug!(%peer, "too many TLS handshakes from this address: closed");
            continue;
        };
        let (identity, peers, shutdown) = (identity.clone(), peers.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match crate::tls::accept(tcp, &identity).await {
                Ok(s) => s,
                Err(e) => return tracing::debug!(%peer, "TLS handshake: {e}"),
            };
            drop((permit, slot));
            match relay_connect(inner, peer, &peers).await {
                Ok(plain) => relay(tls, plain, shutdown).await,
                Err(e) => tracing::warn!(%peer, "cannot reach the hub's own listener {inner}: {e}"),
            }
        });
    }
}

/// Connect to the plain listener, recording our source address as `peer` first, so the
/// hub machine sees the real address from its very first look at the connection.
async fn relay_connect(inner: SocketAddr, peer: SocketAddr, peers: &RelayPeers) -> std::io::Result<TcpStream> {
    let socket = if inner.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(inner.ip(), 0))?;
    let local = socket.local_addr()?;
    peers.lock().expect("relay peers").insert(local, peer);
    match socket.connect(inner).await {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Err(e) => {
            peers.lock().expect("relay peers").remove(&local);
            Err(e)
        }
    }
}

/// Copy both ways until either side ends; then close both (a user the hub dropped is
/// disconnected even if it keeps quiet).
async fn relay<T: AsyncRead + AsyncWrite + Unpin>(tls: T, plain: TcpStream, shutdown: CancellationToken) {
    let (mut tls_r, mut tls_w) = tokio::io::split(tls);
    let (mut plain_r, mut plain_w) = plain.into_split();
    let up = tokio::io::copy(&mut tls_r, &mut plain_w);
    let down = async {
        let _ = tokio::io::copy(&mut plain_r, &mut tls_w).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), tls_w.shutdown()).await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = shutdown.cancelled() => {}
    }
}

/// The hub machine as the shared driver sees it.
struct HubMachine {
    hub: Hub,
    relay_peers: RelayPeers,
}

impl Machine for HubMachine {
    type Event = HubEvent;
    fn accept(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        let random: [u8; 16] = rand::random();
        // A TLS user relayed over loopback: the address it came from.
        let peer = if peer.ip().is_loopback() {
            self.relay_peers.lock().expect("relay peers").remove(&peer).unwrap_or(peer)
        } else {
            peer
        };
        self.hub.accept(now, conn, peer.ip(), &random);
    }
    fn input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.hub.handle_input(now, conn, bytes);
    }
    fn disconnect(&mut self, conn: ConnId) {
        self.hub.disconnect(conn);
    }
    fn timeout(&mut self, now: Instant) {
        self.hub.handle_timeout(now);
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.hub.poll_timeout()
    }
    fn poll(&mut self) -> Option<Action<HubEvent>> {
        self.hub.poll_output().map(hub_action)
    }
}

/// A hub machine's output as the shared driver's action: the NMDC and the ADC hub have the
/// same contract (`omnipeer_nmdc::hub::HubOutput`).
pub(crate) fn hub_action<E>(o: HubOutput<E>) -> Action<E> {
    match o {
        HubOutput::Send { conn, data } => Action::Send(conn, data),
        HubOutput::Broadcast { data, except, skip } => Action::Broadcast { data, except, skip },
        HubOutput::Join { conn, tags } => Action::Join(conn, tags),
        HubOutput::Leave { conn } => Action::Leave(conn),
        HubOutput::Close { conn } => Action::Close(conn),
        HubOutput::Event(e) => Action::Event(e),
    }
}

struct EventHandler {
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<HubEvent>,
    persist_tx: mpsc::UnboundedSender<Persist>,
    checks: Arc<Semaphore>,
}

impl EventHandler {
    fn on_event(&self, ev: HubEvent, control: &mpsc::UnboundedSender<Control<HubMachine>>) {
        let _ = self.events.send(ev.clone());
        match ev {
            HubEvent::CheckPassword { conn, nick, password } => {
                let (store, control, checks) = (self.store.clone(), control.clone(), self.checks.clone());
                tokio::spawn(async move {
                    let Ok(_permit) = checks.acquire_owned().await else { return };
                    let ok = tokio::task::spawn_blocking(move || {
                        let hash = store.lock().expect("store lock").hub_password_hash(&nick).ok().flatten();
                        hash.is_some_and(|h| verify_password(&password, &h))
                    })
                    .await
                    .unwrap_or(false);
                    let _ = control.send(Box::new(move |m: &mut HubMachine, now| m.hub.password_result(now, conn, ok)));
                });
            }
            HubEvent::Register { by, nick, password, op } => {
                tracing::info!(%by, %nick, op, "registered");
                self.persist(move |s| s.hub_register(&nick, &password, op));
            }
            HubEvent::Unregister { by, nick } => {
                tracing::info!(%by, %nick, "unregistered");
                self.persist(move |s| s.hub_unregister(&nick).map(|_| ()));
            }
            HubEvent::Banned { by, ban, duration } => {
                tracing::info!(%by, nick = ?ban.nick, ip = ?ban.ip, ?duration, "banned");
                self.persist(move |s| {
                    s.hub_ban(ban.nick.as_deref(), ban.ip.map(|i| i.to_string()).as_deref(), duration, &ban.reason, &by)
                });
            }
            HubEvent::Unbanned { by, nick } => {
                tracing::info!(%by, %nick, "unbanned");
                self.persist(move |s| s.hub_unban(&nick).map(|_| ()));
            }
            HubEvent::LoggedIn { nick, ip, op, .. } => tracing::info!(%nick, %ip, op, "logged in"),
            HubEvent::LoggedOut { nick, .. } => tracing::info!(%nick, "logged out"),
            HubEvent::Kicked { by, nick, reason } => tracing::info!(%by, %nick, %reason, "kicked"),
            HubEvent::Dropped { nick, why, .. } => tracing::info!(?nick, %why, "dropped a command"),
            HubEvent::TopicChanged { by, topic } => tracing::info!(%by, %topic, "topic"),
            HubEvent::Chat { .. } => {}
        }
    }

    fn persist(&self, f: impl FnOnce(&Store) -> anyhow::Result<()> + Send + 'static) {
        let _ = self.persist_tx.send(Box::new(f));
    }
}
