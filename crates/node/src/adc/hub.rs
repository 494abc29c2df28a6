//! The ADC hub driver: the sans-IO [`Hub`] (docs/protocols/adc.md#hub) pumped by the shared
//! many-connection driver ([`crate::serve`]), with its registrations and bans in SQLite.
//!
//! ADC's `GPA`/`PAS` login proves the password by hashing it with a random challenge, so the
//! hub must know the password itself, not a slow salted hash of it as the NMDC hub keeps:
//! the registrations are in their own database file (`adc-hub.sqlite`, mode 0600), not in
//! the NMDC hub's.
//!
//! With TLS (`adcs://`), connections are accepted on the public address, the handshake
//! runs there ([`crate::tls::accept`], bounded by its timeout), and the clear text goes over
//! a loopback connection into the same driver. The machine is told the client's real
//! address (the loopback source port is recorded before connecting), so `I4`, bans and the
//! per-address limits work as without TLS; a loopback connection nobody recorded (someone
//! on this machine bypassing TLS) is closed at once.

use crate::nmdc::hub::hub_action;
use crate::serve::{serve, Action, Control, Machine};
use anyhow::Context;
use omnipeer_adc::hub::{Ban, ConnId, Hub, CHALLENGE_LEN};
/// The machine's settings and events, for the CLI.
pub use omnipeer_adc::hub::{HubConfig, HubEvent, MAX_LOGINS_PER_IP_PER_MINUTE, MAX_NICK, MAX_USERS_PER_IP};
use rusqlite::{params, Connection};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// TLS handshakes (and their loopback relays being set up) at once: a flood of connections
/// that never finish the handshake holds at most this many sockets past the kernel's
/// backlog, each for at most [`crate::tls::HANDSHAKE_TIMEOUT`].
pub const MAX_TLS_HANDSHAKES: usize = 256;

/// Hub settings.
#[derive(Debug, Clone)]
pub struct AdcHubServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The machine's settings.
    pub hub: HubConfig,
    /// The database of registrations and bans.
    pub db: PathBuf,
    /// Nicks to register at start: (nick, password, op).
    pub register: Vec<(String, String, bool)>,
    /// Serve `adcs://` with this certificate instead of plain `adc://`.
    pub tls: Option<crate::tls::TlsIdentity>,
}

/// The hub's own store: registrations (with their passwords, which `GPA`/`PAS` needs) and
/// bans.
pub struct AdcHubStore {
    conn: Connection,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl AdcHubStore {
    /// Open (or create, readable by its owner only) the database.
    pub fn open(path: &Path) -> anyhow::Result<AdcHubStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Passwords are kept in the clear: the file is the owner's alone.
            let _ = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path);
        }
        let conn = Connection::open(path).with_context(|| format!("cannot open the database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS adc_users (nick TEXT PRIMARY KEY COLLATE NOCASE, password TEXT NOT NULL, op INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS adc_bans (nick TEXT, ip TEXT, until INTEGER, reason TEXT NOT NULL, by TEXT NOT NULL);",
        )
        .with_context(|| format!("cannot set up the database {}", path.display()))?;
        Ok(AdcHubStore { conn })
    }

    /// Register (or re-register) a nick.
    pub fn register(&self, nick: &str, password: &str, op: bool) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO adc_users (nick, password, op) VALUES (?1, ?2, ?3)
             ON CONFLICT(nick) DO UPDATE SET password = ?2, op = ?3",
            params![nick, password, op],
        )?;
        Ok(())
    }

    /// Remove a registration.
    pub fn unregister(&self, nick: &str) -> anyhow::Result<()> {
        self.conn.execute("DELETE FROM adc_users WHERE nick = ?1", params![nick])?;
        Ok(())
    }

    /// Every registration: (nick, password, op).
    pub fn users(&self) -> anyhow::Result<Vec<(String, String, bool)>> {
        let mut st = self.conn.prepare("SELECT nick, password, op FROM adc_users")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Store a ban.
    pub fn ban(&self, ban: &Ban, duration: Option<Duration>, by: &str) -> anyhow::Result<()> {
        let until = duration.map(|d| (unix_now() + d.as_secs()) as i64);
        self.conn.execute(
            "INSERT INTO adc_bans (nick, ip, until, reason, by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ban.nick, ban.ip.map(|i| i.to_string()), until, ban.reason, by],
        )?;
        Ok(())
    }

    /// Lift a nick's bans.
    pub fn unban(&self, nick: &str) -> anyhow::Result<()> {
        self.conn.execute("DELETE FROM adc_bans WHERE nick = ?1 COLLATE NOCASE", params![nick])?;
        Ok(())
    }

    /// Bans in force, as the machine takes them.
    pub fn bans(&self, now: Instant) -> anyhow::Result<Vec<Ban>> {
        let unix = unix_now();
        self.conn.execute("DELETE FROM adc_bans WHERE until IS NOT NULL AND until <= ?1", params![unix as i64])?;
        let mut st = self.conn.prepare("SELECT nick, ip, until, reason FROM adc_bans")?;
        let rows = st.query_map([], |r| {
            let ip: Option<String> = r.get(1)?;
            let until: Option<i64> = r.get(2)?;
            Ok(Ban {
                nick: r.get(0)?,
                ip: ip.and_then(|i| i.parse().ok()),
                until: until.map(|u| now + Duration::from_secs((u as u64).saturating_sub(unix))),
                reason: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

type Persist = Box<dyn FnOnce(&AdcHubStore) -> anyhow::Result<()> + Send>;

/// Client addresses of TLS connections, by the loopback address their clear text comes from.
type RealPeers = Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>;

/// A bound hub.
pub struct AdcHubServer {
    /// The public listener (TLS or plain).
    listener: TcpListener,
    cfg: AdcHubServerConfig,
    store: Arc<Mutex<AdcHubStore>>,
    events: broadcast::Sender<HubEvent>,
}

impl AdcHubServer {
    /// Open the database, apply `register`, and bind.
    pub async fn bind(cfg: AdcHubServerConfig) -> anyhow::Result<AdcHubServer> {
        let (db, register) = (cfg.db.clone(), cfg.register.clone());
        let store = tokio::task::spawn_blocking(move || -> anyhow::Result<AdcHubStore> {
            let store = AdcHubStore::open(&db)?;
            for (nick, pass, op) in &register {
                store.register(nick, pass, *op)?;
            }
            Ok(store)
        })
        .await??;
        let listener = crate::serve::listen(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let (events, _) = broadcast::channel(1024);
        Ok(AdcHubServer { listener, cfg, store: Arc::new(Mutex::new(store)), events })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    /// The certificate's keyprint, when serving TLS.
    pub fn keyprint(&self) -> Option<String> {
        self.cfg.tls.as_ref().map(|t| t.keyprint().to_owned())
    }

    /// The address clients use: `adc://ADDR` or `adcs://ADDR/?kp=SHA256/...`.
    pub fn url(&self) -> String {
        match self.keyprint() {
            Some(kp) => format!("adcs://{}/?kp={kp}", self.local_addr()),
            None => format!("adc://{}", self.local_addr()),
        }
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
            for (nick, pass, op) in store.users()? {
                hub.set_registered(&nick, &pass, op);
            }
            for ban in store.bans(Instant::now())? {
                hub.add_ban(ban);
            }
        }
        let AdcHubServer { listener, cfg, store, events } = self;
        let (persist_tx, mut persist_rx) = mpsc::unbounded_channel::<Persist>();
        let worker_store = store.clone();
        let persist_worker = tokio::task::spawn_blocking(move || {
            while let Some(change) = persist_rx.blocking_recv() {
                if let Err(e) = change(&worker_store.lock().expect("store lock")) {
                    tracing::error!("cannot store an ADC hub change: {e:#}");
                }
            }
        });
        let handler = EventHandler { events, persist_tx };
        let (listener, real_peers) = match cfg.tls {
            None => (listener, None),
            Some(identity) => {
                let inner = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
                let inner_addr = inner.local_addr()?;
                let peers: RealPeers = Arc::default();
                tokio::spawn(tls_front(listener, inner_addr, identity, peers.clone(), shutdown.clone()));
                (inner, Some(peers))
            }
        };
        let machine = HubMachine { hub, real_peers, refused: VecDeque::new() };
        serve(listener, machine, move |ev, control| handler.on_event(ev, control), shutdown).await;
        drop(store);
        let _ = persist_worker.await;
        Ok(())
    }
}

/// Accept TLS on the public listener and relay each connection's clear text over loopback
/// into the driver, recording the client's address first.
async fn tls_front(
    listener: TcpListener,
    inner: SocketAddr,
    identity: crate::tls::TlsIdentity,
    peers: RealPeers,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_TLS_HANDSHAKES));
    let acceptor = match hub_tls_config(&identity) {
        Ok(c) => tokio_rustls::TlsAcceptor::from(c),
        Err(e) => return tracing::error!("cannot set up TLS: {e}"),
    };
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => p.expect("never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, peers, shutdown) = (acceptor.clone(), peers.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let relay = async {
                let sock = TcpSocket::new_v4()?;
                sock.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                let local = sock.local_addr()?;
                peers.lock().expect("peers lock").insert(local, peer);
                match sock.connect(inner).await {
                    Ok(s) => Ok((s, local)),
                    Err(e) => {
                        peers.lock().expect("peers lock").remove(&local);
                        Err(e)
                    }
                }
            };
            let (mut plain, local) = match relay.await {
                Ok(x) => x,
                Err(e) => return tracing::debug!(%peer, "cannot relay a TLS connection: {e}"),
            };
            drop(permit);
            let _ = plain.set_nodelay(true);
            let mut tls = tls;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut tls, &mut plain) => {}
                _ = shutdown.cancelled() => {}
            }
            // In case the driver never took it (shut down first).
            peers.lock().expect("peers lock").remove(&local);
        });
    }
}

/// The identity's certificate without asking clients for theirs: a hub has no use for a
/// client certificate, and ncdc's (an X.509 v1 certificate from GnuTLS) fails the
/// handshake-signature check rustls runs on one ("UnsupportedCertVersion"), which ended
/// every ncdc login right after the handshake.
#[allow(deprecated)] // ring without post-quantum key exchange, as crate::tls uses
fn hub_tls_config(identity: &crate::tls::TlsIdentity) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(identity.server_config().cert_resolver.clone());
    Ok(Arc::new(cfg))
}

/// The hub machine as the shared driver sees it.
struct HubMachine {
    hub: Hub,
    /// With TLS: the clients' addresses by loopback source address.
    real_peers: Option<RealPeers>,
    /// Connections closed before the machine saw them (unrecorded loopback).
    refused: VecDeque<ConnId>,
}

impl Machine for HubMachine {
    type Event = HubEvent;
    fn accept(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        let peer = match &self.real_peers {
            None => peer,
            Some(map) => match map.lock().expect("peers lock").remove(&peer) {
                Some(real) => real,
                None => return self.refused.push_back(conn),
            },
        };
        let challenge: [u8; CHALLENGE_LEN] = rand::random();
        self.hub.accept(now, conn, peer.ip(), challenge);
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
        if let Some(conn) = self.refused.pop_front() {
            return Some(Action::Close(conn));
        }
        self.hub.poll_output().map(hub_action)
    }
}

struct EventHandler {
    events: broadcast::Sender<HubEvent>,
    persist_tx: mpsc::UnboundedSender<Persist>,
}

impl EventHandler {
    fn on_event(&self, ev: HubEvent, _control: &mpsc::UnboundedSender<Control<HubMachine>>) {
        let _ = self.events.send(ev.clone());
        match ev {
            HubEvent::Register { by, nick, password, op } => {
                tracing::info!(%by, %nick, op, "registered");
                self.persist(move |s| s.register(&nick, &password, op));
            }
            HubEvent::Unregister { by, nick } => {
                tracing::info!(%by, %nick, "unregistered");
                self.persist(move |s| s.unregister(&nick));
            }
            HubEvent::Banned { by, ban, duration } => {
                tracing::info!(%by, nick = ?ban.nick, ip = ?ban.ip, ?duration, "banned");
                self.persist(move |s| s.ban(&ban, duration, &by));
            }
            HubEvent::Unbanned { by, nick } => {
                tracing::info!(%by, %nick, "unbanned");
                self.persist(move |s| s.unban(&nick));
            }
            HubEvent::LoggedIn { nick, ip, op, sid, .. } => tracing::info!(%nick, %ip, %sid, op, "logged in"),
            HubEvent::LoggedOut { nick, .. } => tracing::info!(%nick, "logged out"),
            HubEvent::Kicked { by, nick, reason } => tracing::info!(%by, %nick, %reason, "kicked"),
            HubEvent::Dropped { nick, why, .. } => tracing::info!(?nick, %why, "refused a message"),
            HubEvent::Chat { .. } => {}
        }
    }

    fn persist(&self, f: impl FnOnce(&AdcHubStore) -> anyhow::Result<()> + Send + 'static) {
        let _ = self.persist_tx.send(Box::new(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_private_and_keeps_registrations_and_bans() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("adc-hub.sqlite");
        let now = Instant::now();
        {
            let s = AdcHubStore::open(&path).unwrap();
            s.register("Alice", "pw1", false).unwrap();
            s.register("alice", "pw2", true).unwrap();
            s.register("bob", "x", false).unwrap();
            s.unregister("BOB").unwrap();
            let ban = Ban {
                nick: Some("eve".into()),
                ip: Some("10.0.0.9".parse().unwrap()),
                until: None,
                reason: "r".into(),
            };
            s.ban(&ban, Some(Duration::from_secs(3600)), "op").unwrap();
            s.ban(&Ban { nick: Some("gone".into()), ip: None, until: None, reason: "r".into() }, None, "op").unwrap();
            s.unban("GONE").unwrap();
        }
        // Passwords are kept as given (GPA/PAS needs them): the file is the owner's alone.
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let s = AdcHubStore::open(&path).unwrap();
        assert_eq!(s.users().unwrap(), [("Alice".to_owned(), "pw2".to_owned(), true)]);
        let bans = s.bans(now).unwrap();
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].nick.as_deref(), Some("eve"));
        assert_eq!(bans[0].ip, Some("10.0.0.9".parse().unwrap()));
        let left = bans[0].until.unwrap().duration_since(now);
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600), "{left:?}");
    }
}
