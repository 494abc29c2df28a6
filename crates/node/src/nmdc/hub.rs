//! The NMDC hub driver: the sans-IO [`Hub`] machine pumped by the shared many-connection
//! driver ([`crate::serve`]: bounded per-client queues, stuck clients dropped).
//! Registrations and bans live in SQLite; password checks run on blocking threads.

use crate::serve::{serve, Action, Control, Machine};
use crate::store::{verify_password, Store};
use anyhow::Context;
use omnipeer_nmdc::hub::{Ban, ConnId, Hub, HubConfig, HubEvent, Output};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
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
}

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
        let HubServer { listener, store, events, persist_tx, persist_worker, .. } = self;
        let handler = EventHandler { store, events, persist_tx, checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)) };
        serve(listener, HubMachine(hub), move |ev, control| handler.on_event(ev, control), shutdown).await;
        // Everything changed before the shutdown is on disk before `run` returns.
        let _ = persist_worker.await;
        Ok(())
    }
}

/// The hub machine as the shared driver sees it.
struct HubMachine(Hub);

impl Machine for HubMachine {
    type Event = HubEvent;
    fn accept(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        let random: [u8; 16] = rand::random();
        self.0.accept(now, conn, peer.ip(), &random);
    }
    fn input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.0.handle_input(now, conn, bytes);
    }
    fn disconnect(&mut self, conn: ConnId) {
        self.0.disconnect(conn);
    }
    fn timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn poll(&mut self) -> Option<Action<HubEvent>> {
        Some(match self.0.poll_output()? {
            Output::Send { conn, data } => Action::Send(conn, data),
            Output::Broadcast { data, except, skip } => Action::Broadcast { data, except, skip },
            Output::Join { conn, tags } => Action::Join(conn, tags),
            Output::Leave { conn } => Action::Leave(conn),
            Output::Close { conn } => Action::Close(conn),
            Output::Event(e) => Action::Event(e),
        })
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
                    let _ = control.send(Box::new(move |m: &mut HubMachine, now| m.0.password_result(now, conn, ok)));
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
