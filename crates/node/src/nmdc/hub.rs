//! The NMDC hub driver: one task owns the sans-IO [`Hub`] machine; each connection has a
//! reader task that feeds it and a writer task that drains a bounded queue. A client whose
//! queue is full (slow or stuck) is disconnected instead of stalling anybody else.
//! Registrations and bans live in SQLite; password checks run on blocking threads.

use crate::store::{verify_password, Store};
use anyhow::Context;
use omnipeer_nmdc::hub::{Ban, ConnId, Hub, HubConfig, HubEvent, Output};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Messages queued for one client before it counts as stuck and is dropped.
pub const OUTBOUND_QUEUE: usize = 4096;
/// Most bytes gathered from the queue into one write.
const WRITE_BATCH: usize = 256 * 1024;
/// Bytes read from a client at once.
const READ_CHUNK: usize = 16 * 1024;

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

enum ToHub {
    Input { conn: ConnId, bytes: Vec<u8> },
    Closed { conn: ConnId },
    Password { conn: ConnId, ok: bool },
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
}

type Persist = Box<dyn FnOnce(&Store) -> anyhow::Result<()> + Send>;

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
        let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
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
        Ok(HubServer { listener, cfg, store, events, persist_tx, persist_worker })
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
        let (to_hub, mut from_conns) = mpsc::channel::<ToHub>(8192);
        let tracker = tokio_util::task::TaskTracker::new();
        let mut writers: HashMap<ConnId, (mpsc::Sender<Arc<[u8]>>, CancellationToken)> = HashMap::new();
        let mut next_id: ConnId = 1;
        loop {
            // Drain the machine.
            while let Some(out) = hub.poll_output() {
                match out {
                    Output::Send { conn, data } => {
                        if let Some((tx, close)) = writers.get(&conn) {
                            if tx.try_send(data).is_err() {
                                tracing::warn!(conn, "outbound queue full: dropping a slow client");
                                close.cancel();
                                writers.remove(&conn);
                                hub.disconnect(conn);
                            }
                        }
                    }
                    Output::Close { conn } => {
                        if let Some((_, close)) = writers.remove(&conn) {
                            close.cancel();
                        }
                    }
                    Output::Event(ev) => self.on_event(ev, &to_hub),
                }
            }
            let deadline = hub.poll_timeout();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => {
                    let Ok((stream, peer)) = r else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let conn = next_id;
                    next_id += 1;
                    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
                    let close = CancellationToken::new();
                    writers.insert(conn, (tx, close.clone()));
                    let random: [u8; 16] = rand::random();
                    hub.accept(Instant::now(), conn, peer.ip(), &random);
                    tracker.spawn(serve_conn(conn, stream, rx, close, to_hub.clone(), shutdown.clone()));
                }
                Some(msg) = from_conns.recv() => match msg {
                    ToHub::Input { conn, bytes } => hub.handle_input(Instant::now(), conn, &bytes),
                    ToHub::Closed { conn } => {
                        writers.remove(&conn);
                        hub.disconnect(conn);
                    }
                    ToHub::Password { conn, ok } => hub.password_result(Instant::now(), conn, ok),
                },
                _ = sleep_until_opt(deadline) => hub.handle_timeout(Instant::now()),
            }
        }
        drop(writers);
        tracker.close();
        tracker.wait().await;
        // Everything changed before the shutdown is on disk before `run` returns.
        let HubServer { persist_tx, persist_worker, .. } = self;
        drop(persist_tx);
        let _ = persist_worker.await;
        Ok(())
    }

    fn on_event(&self, ev: HubEvent, to_hub: &mpsc::Sender<ToHub>) {
        let _ = self.events.send(ev.clone());
        match ev {
            HubEvent::CheckPassword { conn, nick, password } => {
                let store = self.store.clone();
                let to_hub = to_hub.clone();
                tokio::spawn(async move {
                    let ok = tokio::task::spawn_blocking(move || {
                        let hash = store.lock().expect("store lock").hub_password_hash(&nick).ok().flatten();
                        hash.is_some_and(|h| verify_password(&password, &h))
                    })
                    .await
                    .unwrap_or(false);
                    let _ = to_hub.send(ToHub::Password { conn, ok }).await;
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

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn serve_conn(
    conn: ConnId,
    stream: TcpStream,
    mut rx: mpsc::Receiver<Arc<[u8]>>,
    close: CancellationToken,
    to_hub: mpsc::Sender<ToHub>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let writer = async {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(data) => {
                        // Coalesce what is queued into one write: a busy hub sends many
                        // small commands, and one syscall each would fall behind.
                        batch.clear();
                        batch.extend_from_slice(&data);
                        while batch.len() < WRITE_BATCH {
                            match rx.try_recv() {
                                Ok(more) => batch.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                        if wr.write_all(&batch).await.is_err() { break }
                    }
                    None => break,
                },
                _ = close.cancelled() => {
                    // Flush what was queued before the close (e.g. $BadPass), then stop.
                    while let Ok(data) = rx.try_recv() {
                        if wr.write_all(&data).await.is_err() { break }
                    }
                    break;
                }
            }
        }
        let _ = wr.shutdown().await;
    };
    let reader = async {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_hub.send(ToHub::Input { conn, bytes: buf[..n].to_vec() }).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    // The reader ending (peer gone) closes the writer too; a close from the hub ends both.
    let reader = async {
        tokio::select! {
            _ = reader => close.cancel(),
            _ = close.cancelled() => {}
        }
    };
    tokio::select! {
        _ = async { tokio::join!(writer, reader) } => {}
        _ = shutdown.cancelled() => {}
    }
    let _ = to_hub.send(ToHub::Closed { conn }).await;
}
