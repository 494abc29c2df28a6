//! The Soulseek server driver: the sans-IO [`Central`] machine on the shared
//! many-connection driver ([`crate::serve`]), with accounts, private messages (kept until
//! acknowledged) and bans in SQLite.
//!
//! Passwords: the slow Argon2id hash (docs/protocols/soulseek.md says nothing of how a
//! server keeps them; we keep only that hash on disk) runs on the server's own threads, one
//! per core, started with it ([`HashPool`]), and never under the store's lock, so logins, relaying and stored-message
//! lookups do not wait behind it. A user who logged in once in this process is checked
//! next time against a fast keyed hash kept in memory ([`Accounts`]): a returning crowd
//! after a network hiccup is back in seconds, while a new account, or a wrong password,
//! still costs a slow hash.

use crate::serve::{serve, Action, Control, Machine};
use crate::store::{hash_password, release_hash_memory, verify_password, Store};
use anyhow::Context;
use omnipeer_slsk::central::{
    Central, CentralConfig, CentralEvent, ConnId, LoginDecision, Output, SortedSet, StoredMessage,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Slow password hashes (Argon2id, 19 MiB of working memory each) running at once: one per
/// core, so they use every core and their working areas do not multiply.
fn slow_hash_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Stack of each slow-hash thread ([`HashPool`]): Argon2id works in its pooled area (on the
/// heap), and the stack holds only its 1 KiB blocks and SQLite's lookup (the store's
/// accounts query), so a quarter of Rust's default 2 MiB is plenty.
pub const HASH_THREAD_STACK: usize = 512 * 1024;

/// A slow-hash job: runs on one of the pool's threads.
type HashJob = Box<dyn FnOnce() + Send>;

/// The threads that run slow password hashes: [`slow_hash_slots`] of them, started with
/// the server and living as long as it. Before, each hash ran on the runtime's blocking
/// pool (at most one per core at once), whose threads come and go: a crowd of new
/// accounts started new threads, each with its own malloc arena and stack, that stayed
/// part of the process's memory after the crowd left (bench/src/slsk_server.rs).
struct HashPool {
    jobs: std::sync::mpsc::Sender<HashJob>,
    /// Jobs queued or running: when the last one finishes, the Argon2 working areas go
    /// back ([`release_hash_memory`]).
    busy: Arc<std::sync::atomic::AtomicUsize>,
}

impl HashPool {
    fn start(threads: usize) -> anyhow::Result<HashPool> {
        let (jobs, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("slsk-hash-{i}"))
                .stack_size(HASH_THREAD_STACK)
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job, not while hashing.
                    let job = rx.lock().expect("hash queue lock").recv();
                    match job {
                        Ok(job) => job(),
                        // The server is gone.
                        Err(_) => return,
                    }
                })
                .context("cannot start a password-hash thread")?;
        }
        Ok(HashPool { jobs, busy: Arc::new(std::sync::atomic::AtomicUsize::new(0)) })
    }

    /// Run `job` on a pool thread; once nothing else is queued or running, give the Argon2
    /// working areas back.
    fn run(&self, job: impl FnOnce() + Send + 'static) {
        use std::sync::atomic::Ordering;
        let busy = self.busy.clone();
        busy.fetch_add(1, Ordering::AcqRel);
        let job: HashJob = Box::new(move || {
            job();
            if busy.fetch_sub(1, Ordering::AcqRel) == 1 {
                // Nothing hashing or waiting to: give the working areas back.
                release_hash_memory();
            }
        });
        if self.jobs.send(job).is_err() {
            tracing::error!("the password-hash threads are gone");
        }
    }
}

/// HMAC-SHA256 (RFC 2104) of `parts` under a 32-byte key.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Bytes of the HMAC kept per verified password ([`Accounts::verified`]): 128 bits, as
/// much as a guess would have to hit (RFC 2104 section 5 allows truncation to half the
/// output), and the key never leaves the process.
const TAG_BYTES: usize = 16;

/// The accounts as the login path sees them.
struct Accounts {
    store: Arc<Mutex<Store>>,
    private: bool,
    /// A random key of this process: the fast hashes below are worthless outside it.
    key: [u8; 32],
    /// HMAC-SHA256(key, user, password), its first 128 bits ([`TAG_BYTES`]), of each
    /// lower-case user and the password that logged in as them in this process (checked
    /// by the slow hash then). Only in memory: the disk keeps the Argon2id hash alone.
    /// Accounts change password only by registering at start (before any login), so an
    /// entry cannot go stale. The tag covers the name and the password, so the set of tags
    /// alone answers "did this user log in with this password": no name and no slot kept.
    /// An entry stays for every account that logged in, so its size is memory a crowd does
    /// not give back: 16 bytes an account in one sorted array ([`SortedSet`]; a hash map of
    /// a 64-bit slot to the tag took 24 bytes a slot in 8,192 slots at 5,000 accounts,
    /// 16,384 at 10,000: 393 KiB, now 176 KiB at most). A guess at a password hits any tag
    /// in the set only by forging a 128-bit HMAC under a key it does not know.
    verified: Mutex<SortedSet<[u8; TAG_BYTES]>>,
    /// Lower-case users who may have stored messages → a stamp of the last one stored (a
    /// login whose lookup finds none forgets the user only if no message came meanwhile).
    pending: Mutex<HashMap<String, u64>>,
    stamp: std::sync::atomic::AtomicU64,
}

impl Accounts {
    fn tag(&self, user: &str, password: &str) -> [u8; TAG_BYTES] {
        let user = user.to_lowercase();
        let h = hmac_sha256(&self.key, &[&(user.len() as u64).to_le_bytes(), user.as_bytes(), password.as_bytes()]);
        h[..TAG_BYTES].try_into().expect("a prefix of the HMAC")
    }

    /// Whether `user` logged in with this password before (in this process). The binary
    /// search compares tags with an early exit: what its timing could tell is how the
    /// guess's tag sorts among the stored ones, and neither is known without the key.
    fn known_password(&self, user: &str, password: &str) -> bool {
        let tag = self.tag(user, password);
        self.verified.lock().expect("verified lock").contains(&tag)
    }

    fn remember(&self, user: &str, password: &str) {
        let tag = self.tag(user, password);
        self.verified.lock().expect("verified lock").insert(tag);
    }

    /// The slow check (on a blocking thread): the store's lock is held only for the
    /// lookup and the insert, never while hashing.
    fn check_slow(&self, user: &str, password: &str) -> anyhow::Result<LoginDecision> {
        for _ in 0..2 {
            let stored = self.store.lock().expect("store lock").slsk_password_hash(user)?;
            match stored {
                Some(h) if verify_password(password, &h) => {
                    self.remember(user, password);
                    return Ok(LoginDecision::Accept);
                }
                Some(_) => return Ok(LoginDecision::InvalidPass),
                None if self.private => return Ok(LoginDecision::Private),
                None => {
                    let h = hash_password(password)?;
                    if self.store.lock().expect("store lock").slsk_add_account(user, &h)? {
                        self.remember(user, password);
                        return Ok(LoginDecision::Accept);
                    }
                    // Another login registered the name meanwhile: check against that.
                }
            }
        }
        Ok(LoginDecision::InvalidPass)
    }

    fn message_stored(&self, to: &str) {
        let stamp = self.stamp.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.pending.lock().expect("pending lock").insert(to.to_lowercase(), stamp);
    }

    /// Whether `user` may have stored messages, and the stamp to forget it by.
    fn may_have_messages(&self, user: &str) -> Option<u64> {
        self.pending.lock().expect("pending lock").get(&user.to_lowercase()).copied()
    }

    fn no_messages(&self, user: &str, stamp: u64) {
        let mut pending = self.pending.lock().expect("pending lock");
        let key = user.to_lowercase();
        if pending.get(&key) == Some(&stamp) {
            pending.remove(&key);
        }
    }
}

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
    tree: omnipeer_slsk::tree::TreeConfig,
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<CentralEvent>,
}

/// The machine and the accounts' fast path: a returning user's login (a password that
/// logged in before in this process, see [`Accounts`]) is answered right where the
/// machine asks, in the same turn of the driver. Answered through the handler, each such
/// login took a turn of its own (a closure on the control channel): in a storm of 10,000
/// returning logins those turns queued behind the connections' input and held room lines
/// back (692 ms p99 measured during the storm).
struct CentralMachine(Central, Arc<Accounts>);

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
    fn release_memory(&mut self) -> Option<Box<dyn FnOnce() + Send>> {
        // SQLite's page cache first: pages it took while the accounts were created sit
        // among the connections' freed buffers and keep theirs from going back.
        let store = self.1.store.clone();
        Some(Box::new(move || {
            if let Err(e) = store.lock().expect("store lock").shrink_memory() {
                tracing::warn!("cannot shrink the database's memory: {e:#}");
            }
        }))
    }
    fn poll(&mut self) -> Option<Action<CentralEvent>> {
        loop {
            return Some(match self.0.poll_output()? {
                Output::Event(CentralEvent::CheckLogin { conn, user, password })
                    if self.1.known_password(&user, &password) =>
                {
                    self.0.login_result(Instant::now(), conn, LoginDecision::Accept);
                    continue;
                }
                Output::Send { conn, data } => Action::Send(conn, data),
                Output::Close { conn } => Action::Close(conn),
                Output::Event(e) => Action::Event(e),
            });
        }
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
        Ok(SlskServer {
            listener,
            cfg,
            limits: IpLimits::default(),
            tree: omnipeer_slsk::tree::TreeConfig::default(),
            store: Arc::new(Mutex::new(store)),
            events,
        })
    }

    /// Other distributed-tree settings than the defaults (`[slsk_server]`
    /// `distributed_tree`, `parent_offer_every_secs`).
    pub fn with_tree(mut self, tree: omnipeer_slsk::tree::TreeConfig) -> SlskServer {
        self.tree = tree;
        self
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
        ccfg.tree = self.tree.clone();
        ccfg.name_key = rand::random();
        if !self.cfg.motd.is_empty() {
            ccfg.greeting = self.cfg.motd.clone();
        }
        let mut central = Central::new(ccfg);
        let mut pending = HashMap::new();
        {
            let store = self.store.lock().expect("store lock");
            for u in store.slsk_recipients()? {
                pending.insert(u.to_lowercase(), 0);
            }
            central.add_known_users(store.slsk_users()?.iter().map(String::as_str));
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
        let hashes = HashPool::start(slow_hash_slots())?;
        let accounts = Arc::new(Accounts {
            store: store.clone(),
            private: cfg.private,
            key: rand::random(),
            verified: Mutex::new(SortedSet::new()),
            pending: Mutex::new(pending),
            stamp: std::sync::atomic::AtomicU64::new(0),
        });
        let machine_accounts = accounts.clone();
        let handler = move |ev: CentralEvent, control: &mpsc::UnboundedSender<Control<CentralMachine>>| {
            let _ = events.send(ev.clone());
            match ev {
                CentralEvent::CheckLogin { conn, user, password } => {
                    // Returning users were answered in `CentralMachine::poll`: this one
                    // needs the slow hash.
                    let (accounts, control) = (accounts.clone(), control.clone());
                    hashes.run(move || {
                        // A panic refuses this login and keeps the pool's thread.
                        let check = std::panic::AssertUnwindSafe(|| accounts.check_slow(&user, &password));
                        let decision = match std::panic::catch_unwind(check) {
                            Ok(Ok(d)) => d,
                            Ok(Err(e)) => {
                                tracing::error!("login check failed: {e:#}");
                                LoginDecision::InvalidPass
                            }
                            Err(_) => LoginDecision::InvalidPass,
                        };
                        let _ = control
                            .send(Box::new(move |m: &mut CentralMachine, now| m.0.login_result(now, conn, decision)));
                    });
                }
                CentralEvent::LoggedIn { conn, user, ip } => {
                    tracing::info!(%user, %ip, "logged in");
                    // Most users have nothing stored: no lookup for them. The lookup goes
                    // after the writes already queued (a message stored just before).
                    let Some(stamp) = accounts.may_have_messages(&user) else { return };
                    let (accounts, control) = (accounts.clone(), control.clone());
                    let _ = persist_tx.send(Box::new(move |s: &Store| {
                        let stored = s.slsk_messages_for(&user)?;
                        if stored.is_empty() {
                            accounts.no_messages(&user, stamp);
                            return Ok(());
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
                        Ok(())
                    }));
                }
                CentralEvent::LoggedOut { user } => {
                    // After a mass leave the driver hands the freed memory back
                    // (`crate::serve::RELEASE_AFTER_CLOSES`).
                    tracing::info!(%user, "logged out");
                }
                CentralEvent::StoreMessage(m) => {
                    accounts.message_stored(&m.to);
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
                CentralEvent::SearchRelayed { user, token, roots, direct, direct_users } => {
                    // One line per search: debug (a busy server searches many times a second).
                    tracing::debug!(%user, token, roots, direct, direct_users = %direct_users.join(","), "search relayed")
                }
                CentralEvent::RoomMessage { .. } => {}
            }
        };
        serve(listener, CentralMachine(central, machine_accounts), handler, shutdown).await;
        // The handler (and with it the persistence queue) is gone: wait for the last writes.
        let _ = worker.await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a returning user's fast check keeps: 16 bytes an account and at most an eighth
    /// more, for every account that logged in (a map of a 64-bit slot to the tag, as before,
    /// took 16,384 slots of 25 bytes for 10,000: 400 KB, kept after they left).
    #[test]
    fn a_verified_password_costs_an_account_little_more_than_its_tag() {
        let t = tempfile::tempdir().unwrap();
        let accounts = Accounts {
            store: Arc::new(Mutex::new(Store::open(&t.path().join("s.sqlite")).unwrap())),
            private: false,
            key: [7; 32],
            verified: Mutex::new(SortedSet::new()),
            pending: Mutex::new(HashMap::new()),
            stamp: std::sync::atomic::AtomicU64::new(0),
        };
        const N: usize = 10_000;
        for i in 0..N {
            accounts.remember(&format!("User{i}"), &format!("pw{i}"));
        }
        let bytes = accounts.verified.lock().unwrap().heap_bytes();
        assert!(bytes <= N * TAG_BYTES * 9 / 8 + 16 * TAG_BYTES, "{bytes} bytes for {N} accounts");
        // Names are case-blind; the password is not; another's password does not do.
        assert!(accounts.known_password("user17", "pw17"));
        assert!(!accounts.known_password("user17", "PW17"));
        assert!(!accounts.known_password("user17", "pw18"));
        assert!(!accounts.known_password("stranger", "pw17"));
    }
}
