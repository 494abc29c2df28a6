//! The Soulseek server driver: the sans-IO [`Central`] machine on the shared
//! many-connection driver ([`crate::serve`]), with accounts, private messages (kept until
//! acknowledged) and bans in SQLite. Password checks run on blocking threads, at most a few
//! at a time, so a flood of logins costs its senders time, not everybody else.

use crate::serve::{serve, Action, Control, Machine};
use crate::store::{SlskLogin, Store};
use anyhow::Context;
use omnipeer_slsk::central::{Central, CentralConfig, CentralEvent, ConnId, LoginDecision, Output, StoredMessage};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Password checks (Argon2) running at once.
const CONCURRENT_CHECKS: usize = 2;

/// Server settings.
#[derive(Debug, Clone)]
pub struct SlskServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The database.
    pub db: PathBuf,
    /// Login greeting (MOTD).
    pub motd: String,
    /// Refuse unknown users instead of registering them.
    pub private: bool,
    /// Users who may give `server` commands.
    pub admins: Vec<String>,
    /// Accounts to create (or reset) at start: (user, password).
    pub register: Vec<(String, String)>,
}

/// Per-address limits of the server (see [`omnipeer_slsk::central`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLimits {
    /// Accounts one address may create per hour (0: no limit).
    pub max_registrations_per_ip_per_hour: u32,
    /// Sessions at once from one address, administrators aside (0: no limit).
    pub max_sessions_per_ip: usize,
}

impl Default for IpLimits {
    fn default() -> Self {
        IpLimits {
            max_registrations_per_ip_per_hour: omnipeer_slsk::central::MAX_REGISTRATIONS_PER_IP_PER_HOUR,
            max_sessions_per_ip: omnipeer_slsk::central::MAX_SESSIONS_PER_IP,
        }
    }
}

/// A bound server.
pub struct SlskServer {
    listener: TcpListener,
    cfg: SlskServerConfig,
    limits: IpLimits,
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<CentralEvent>,
}

struct CentralMachine(Central);

impl Machine for CentralMachine {
    type Event = CentralEvent;
    fn accept(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        let ip = match peer.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        self.0.accept(now, conn, ip);
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
    fn poll(&mut self) -> Option<Action<CentralEvent>> {
        Some(match self.0.poll_output()? {
            Output::Send { conn, data } => Action::Send(conn, data),
            Output::Close { conn } => Action::Close(conn),
            Output::Event(e) => Action::Event(e),
        })
    }
}

impl SlskServer {
    /// Open the database and bind.
    pub async fn bind(cfg: SlskServerConfig) -> anyhow::Result<SlskServer> {
        let db = cfg.db.clone();
        let register = cfg.register.clone();
        let store = tokio::task::spawn_blocking(move || -> anyhow::Result<Store> {
            let store = Store::open(&db)?;
            for (u, p) in &register {
                store.slsk_register(u, p)?;
            }
            Ok(store)
        })
        .await??;
        let listener = crate::serve::listen(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let (events, _) = broadcast::channel(4096);
        Ok(SlskServer { listener, cfg, limits: IpLimits::default(), store: Arc::new(Mutex::new(store)), events })
    }

    /// Other per-address limits than the defaults.
    pub fn with_ip_limits(mut self, limits: IpLimits) -> SlskServer {
        self.limits = limits;
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CentralEvent> {
        self.events.subscribe()
    }

    /// Serve until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut ccfg = CentralConfig::new(Instant::now(), unix);
        ccfg.private = self.cfg.private;
        ccfg.admins = self.cfg.admins.clone();
        ccfg.max_registrations_per_ip_per_hour = self.limits.max_registrations_per_ip_per_hour;
        ccfg.max_sessions_per_ip = self.limits.max_sessions_per_ip;
        if !self.cfg.motd.is_empty() {
            ccfg.greeting = self.cfg.motd.clone();
        }
        let mut central = Central::new(ccfg);
        {
            let store = self.store.lock().expect("store lock");
            for u in store.slsk_users()? {
                central.add_known_user(&u);
            }
            for u in store.slsk_bans()? {
                central.add_ban(&u);
            }
            central.set_next_message_id(store.slsk_max_message_id()?.wrapping_add(1));
        }
        let SlskServer { listener, cfg, store, events, .. } = self;
        // Changes to store, in order, on one blocking worker.
        let (persist_tx, mut persist_rx) =
            mpsc::unbounded_channel::<Box<dyn FnOnce(&Store) -> anyhow::Result<()> + Send>>();
        let worker_store = store.clone();
        let worker = tokio::task::spawn_blocking(move || {
            while let Some(change) = persist_rx.blocking_recv() {
                if let Err(e) = change(&worker_store.lock().expect("store lock")) {
                    tracing::error!("cannot store a Soulseek server change: {e:#}");
                }
            }
        });
        let checks = Arc::new(Semaphore::new(CONCURRENT_CHECKS));
        let private = cfg.private;
        let handler = move |ev: CentralEvent, control: &mpsc::UnboundedSender<Control<CentralMachine>>| {
            let _ = events.send(ev.clone());
            match ev {
                CentralEvent::CheckLogin { conn, user, password } => {
                    let (store, control, checks) = (store.clone(), control.clone(), checks.clone());
                    tokio::spawn(async move {
                        let Ok(_permit) = checks.acquire_owned().await else { return };
                        let decision = tokio::task::spawn_blocking(move || {
                            match store.lock().expect("store lock").slsk_login(&user, &password, private) {
                                Ok(SlskLogin::Ok) | Ok(SlskLogin::Registered) => LoginDecision::Accept,
                                Ok(SlskLogin::WrongPassword) => LoginDecision::InvalidPass,
                                Ok(SlskLogin::Unknown) => LoginDecision::Private,
                                Err(e) => {
                                    tracing::error!("login check failed: {e:#}");
                                    LoginDecision::InvalidPass
                                }
                            }
                        })
                        .await
                        .unwrap_or(LoginDecision::InvalidPass);
                        let _ = control
                            .send(Box::new(move |m: &mut CentralMachine, now| m.0.login_result(now, conn, decision)));
                    });
                }
                CentralEvent::LoggedIn { conn, user, ip } => {
                    tracing::info!(%user, %ip, "logged in");
                    let (store, control) = (store.clone(), control.clone());
                    tokio::task::spawn_blocking(move || {
                        let stored = store.lock().expect("store lock").slsk_messages_for(&user).unwrap_or_default();
                        if stored.is_empty() {
                            return;
                        }
                        let msgs: Vec<StoredMessage> = stored
                            .into_iter()
                            .map(|(id, from, timestamp, message)| StoredMessage {
                                id,
                                timestamp,
                                from,
                                to: user.clone(),
                                message,
                            })
                            .collect();
                        let _ = control.send(Box::new(move |m: &mut CentralMachine, _| m.0.deliver_stored(conn, msgs)));
                    });
                }
                CentralEvent::LoggedOut { user } => tracing::info!(%user, "logged out"),
                CentralEvent::StoreMessage(m) => {
                    let _ = persist_tx.send(Box::new(move |s: &Store| {
                        s.slsk_store_message(m.id, &m.to, &m.from, m.timestamp, &m.message)
                    }));
                }
                CentralEvent::MessageAcked { user, id } => {
                    let _ = persist_tx.send(Box::new(move |s: &Store| s.slsk_ack_message(&user, id)));
                }
                CentralEvent::Banned { user, by } => {
                    tracing::info!(%user, %by, "banned");
                    let _ = persist_tx.send(Box::new(move |s: &Store| s.slsk_set_ban(&user, &by, true)));
                }
                CentralEvent::Unbanned { user, by } => {
                    tracing::info!(%user, %by, "unbanned");
                    let _ = persist_tx.send(Box::new(move |s: &Store| s.slsk_set_ban(&user, &by, false)));
                }
                CentralEvent::Dropped { conn, why } => tracing::info!(conn, %why, "dropped a connection"),
                CentralEvent::RoomMessage { .. } => {}
            }
        };
        serve(listener, CentralMachine(central), handler, shutdown).await;
        // The handler (and with it the persistence queue) is gone: wait for the last writes.
        let _ = worker.await;
        Ok(())
    }
}
