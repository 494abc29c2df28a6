//! The upload side of the transfer engine, shared by every network of a node: upload
//! slots (global, and optionally per network), one queue with positions, a shared upload
//! rate limit that can change at run time, and the live list of uploads the API shows.
//!
//! [`UploadQueue`] is the pure part (no clock, no I/O: `now` is passed in) and holds the
//! rules; [`Uploads`] wraps it for the drivers (NMDC client-to-client, Soulseek F
//! connections), keeps each upload's record and byte counter, and reports changes.
//!
//! How the two networks use it, as their users expect:
//! - Soulseek (as Nicotine+): a QueueUpload with every slot taken is queued, not refused;
//!   PlaceInQueueRequest is answered with the real position; when a slot frees, the head
//!   of the queue is *granted*: the slot is held for it while the driver sends
//!   TransferRequest, and given back if the peer refuses or does not answer in time.
//! - NMDC (as DC++/EiskaltDC++): a request with every slot taken is answered
//!   `$MaxedOut <position>` and the requester is remembered in the same queue; the
//!   downloader retries on its own, and when a slot frees for it the slot is held for a
//!   while so that its retry gets it instead of a newcomer's request.
//!
//! Uploads are keyed by *channel*: the network name (`nmdc`, `slsk`, `dcc`) for the
//! session of `[nmdc_client]` / `[slsk_client]`, `nmdc@LABEL` / `slsk@LABEL` for the
//! other hub and server sessions (crate::app::sessions). Per-network slot caps count every
//! channel of the network together; grants go to the channel whose session queued the
//! request, since only that session can reach the peer.

use crate::ratelimit::RateLimit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// How long a slot freed for a queued peer is held for it (Soulseek: until it answers
/// our TransferRequest; NMDC: until its downloader retries).
pub const HOLD_FOR: Duration = Duration::from_secs(90);
/// A queued NMDC requester that has not asked again for this long has given up.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Finished uploads kept in the list.
pub const KEEP_FINISHED: usize = 200;
/// Most uploads waiting in the queue; beyond it requests are refused.
pub const MAX_QUEUED: usize = 10_000;
/// How often running uploads report progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The error of an upload the user cancelled.
pub const CANCELLED: &str = "cancelled by this node's user";

/// Whether an upload's error says the downloader went away (paused, cancelled, closed its
/// client) rather than something going wrong here: the socket was reset or closed early.
pub fn stopped_by_peer(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    ["connection reset", "broken pipe", "the connection ended", "unexpected eof", "early eof", "connection aborted"]
        .iter()
        .any(|p| e.contains(p))
}

/// The network of an upload channel: `slsk@two` → `slsk`.
pub fn network_of(channel: &str) -> &str {
    channel.split_once('@').map_or(channel, |(n, _)| n)
}

/// Where a queued upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Waiting for a slot.
    Waiting,
    /// A slot is held for it until then.
    Held {
        /// When the hold lapses.
        until: Instant,
    },
    /// Sending.
    Active,
}

/// One upload the queue knows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique id.
    pub id: u64,
    /// `nmdc` or `slsk`.
    pub network: String,
    /// The peer.
    pub user: String,
    /// The file, as the peer named it.
    pub file: String,
    /// Where it stands.
    pub slot: Slot,
    /// When the peer last asked for it.
    pub seen: Instant,
    /// Asked for again while it held a slot (Soulseek: queued once more, e.g. a resume
    /// right after a transfer the peer already had all bytes of): queue it again when it
    /// ends.
    pub again: bool,
}

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A slot is the request's now: held for it (`hold`) or active.
    Granted(u64),
    /// Every slot is taken: waiting at this 1-based position.
    Queued {
        /// The entry.
        id: u64,
        /// 1 = next.
        position: u32,
    },
    /// That upload already holds a slot (a repeated request).
    AlreadyGranted(u64),
    /// The queue is full.
    Refused,
}

/// A slot freed for a queued upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The entry.
    pub id: u64,
    /// Its network.
    pub network: String,
    /// The peer.
    pub user: String,
    /// The file.
    pub file: String,
}

/// Upload slots and the queue: the rules, without clock or I/O.
#[derive(Debug, Clone)]
pub struct UploadQueue {
    global: usize,
    per_network: BTreeMap<String, usize>,
    entries: Vec<Entry>,
    next_id: u64,
}

impl UploadQueue {
    /// `global` slots over every network; a network in `per_network` has at most that
    /// many of them.
    pub fn new(global: usize, per_network: BTreeMap<String, usize>) -> UploadQueue {
        UploadQueue { global, per_network, entries: Vec::new(), next_id: 1 }
    }

    /// Every entry, in arrival order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry `id`.
    pub fn entry(&self, id: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    fn holding(&self, network: Option<&str>) -> usize {
        self.entries
            .iter()
            .filter(|e| e.slot != Slot::Waiting && network.is_none_or(|n| network_of(&e.network) == n))
            .count()
    }

    /// Slots of `channel`'s network free now.
    pub fn free_slots(&self, channel: &str) -> usize {
        let network = network_of(channel);
        let global = self.global.saturating_sub(self.holding(None));
        match self.per_network.get(network) {
            Some(&n) => global.min(n.saturating_sub(self.holding(Some(network)))),
            None => global,
        }
    }

    /// Slots `channel`'s network may use at most.
    pub fn total_slots(&self, channel: &str) -> usize {
        self.per_network.get(network_of(channel)).map_or(self.global, |&n| n.min(self.global))
    }

    /// Uploads waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.entries.iter().filter(|e| e.slot == Slot::Waiting).count()
    }

    /// The 1-based queue position of `id` (None unless it is waiting).
    pub fn position_of(&self, id: u64) -> Option<u32> {
        let mut n = 0u32;
        for e in &self.entries {
            if e.slot == Slot::Waiting {
                n += 1;
                if e.id == id {
                    return Some(n);
                }
            }
        }
        None
    }

    fn find(&self, network: &str, user: &str, file: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.network == network && e.user.eq_ignore_ascii_case(user) && e.file == file)
    }

    /// The queue position of a peer's file: Some(0) when a slot is held for it or it
    /// runs, None when the queue does not know it.
    pub fn position(&self, network: &str, user: &str, file: &str) -> Option<u32> {
        let e = &self.entries[self.find(network, user, file)?];
        Some(self.position_of(e.id).unwrap_or(0))
    }

    /// A peer asks for a file. With `hold`, a granted slot is only held (until `now +
    /// HOLD_FOR`, see [`UploadQueue::start`]); without, the upload is active at once.
    pub fn request(&mut self, network: &str, user: &str, file: &str, hold: bool, now: Instant) -> Decision {
        let slot = if hold { Slot::Held { until: now + HOLD_FOR } } else { Slot::Active };
        // A slot held for this peer (NMDC: for the peer, whatever it asks now).
        let held = self.find(network, user, file).or_else(|| {
            (!hold)
                .then(|| {
                    self.entries.iter().position(|e| {
                        e.network == network && e.user.eq_ignore_ascii_case(user) && matches!(e.slot, Slot::Held { .. })
                    })
                })
                .flatten()
        });
        if let Some(i) = held {
            let e = &mut self.entries[i];
            e.seen = now;
            match e.slot {
                Slot::Active => {
                    e.again |= hold;
                    return Decision::AlreadyGranted(e.id);
                }
                Slot::Held { .. } if hold => return Decision::AlreadyGranted(e.id),
                Slot::Held { .. } => {
                    e.slot = Slot::Active;
                    e.file = file.to_owned();
                    return Decision::Granted(e.id);
                }
                Slot::Waiting => {
                    let id = e.id;
                    return Decision::Queued { id, position: self.position_of(id).unwrap_or(1) };
                }
            }
        }
        // A newcomer gets a free slot only when no one waiting could use it.
        let someone_first = self.entries.iter().any(|e| e.slot == Slot::Waiting && self.free_slots(&e.network) > 0);
        let id = self.next_id;
        if self.free_slots(network) > 0 && !someone_first {
            self.next_id += 1;
            self.entries.push(Entry {
                id,
                network: network.into(),
                user: user.into(),
                file: file.into(),
                slot,
                seen: now,
                again: false,
            });
            return Decision::Granted(id);
        }
        if self.waiting() >= MAX_QUEUED {
            return Decision::Refused;
        }
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            network: network.into(),
            user: user.into(),
            file: file.into(),
            slot: Slot::Waiting,
            seen: now,
            again: false,
        });
        Decision::Queued { id, position: self.position_of(id).unwrap_or(1) }
    }

    /// The peer took the slot held for `id` (Soulseek: it allowed our TransferRequest).
    /// False if the hold lapsed or the entry is gone.
    pub fn start(&mut self, id: u64) -> bool {
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) if e.slot != Slot::Waiting => {
                e.slot = Slot::Active;
                true
            }
            _ => false,
        }
    }

    /// `id` ended (done, failed, refused, or withdrawn while waiting): its slot goes to
    /// the next in the queue. Returns the slots freed for queued uploads.
    pub fn finish(&mut self, id: u64, now: Instant) -> Vec<Grant> {
        self.entries.retain(|e| e.id != id);
        self.promote(now)
    }

    /// Give free slots to the queue's head, in order.
    fn promote(&mut self, now: Instant) -> Vec<Grant> {
        let mut grants = Vec::new();
        for i in 0..self.entries.len() {
            if self.entries[i].slot == Slot::Waiting && self.free_slots(&self.entries[i].network.clone()) > 0 {
                let e = &mut self.entries[i];
                e.slot = Slot::Held { until: now + HOLD_FOR };
                grants.push(Grant { id: e.id, network: e.network.clone(), user: e.user.clone(), file: e.file.clone() });
            }
        }
        grants
    }

    /// Drop lapsed holds and NMDC requesters that stopped asking; returns the removed
    /// entries' ids and the slots freed for queued uploads.
    pub fn expire(&mut self, now: Instant) -> (Vec<u64>, Vec<Grant>) {
        let mut gone = Vec::new();
        self.entries.retain(|e| {
            let lapsed = match e.slot {
                Slot::Held { until } => now >= until,
                Slot::Waiting => {
                    network_of(&e.network) == "nmdc" && now.saturating_duration_since(e.seen) >= FORGET_AFTER
                }
                Slot::Active => false,
            };
            if lapsed {
                gone.push(e.id);
            }
            !lapsed
        });
        let grants = if gone.is_empty() { Vec::new() } else { self.promote(now) };
        (gone, grants)
    }
}

/// One upload as the API and the event stream show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadInfo {
    /// Unique over the node's run.
    pub id: u64,
    /// `nmdc`, `slsk`, `dcc` or `tox` (a file sent to a Tox friend: `user` is its key).
    pub network: String,
    /// The peer.
    pub user: String,
    /// The file, as the peer asked for it.
    pub file: String,
    /// Bytes in the file (0 if not known).
    pub size: u64,
    /// Where the transfer started (a resume).
    pub start: u64,
    /// Bytes sent so far in this transfer.
    pub bytes: u64,
    /// `queued` (waiting at `position`), `starting` (a slot is held for the peer),
    /// `running`, `done`, `stopped` (the peer paused or went away: `error` says "stopped
    /// by the peer"), `cancelled` (by this node's user) or `failed`.
    pub state: String,
    /// 1-based queue position while queued, else 0.
    pub position: u32,
    /// Bytes per second now (running only).
    pub rate: u64,
    /// Why it failed.
    pub error: String,
    /// Unix time of the last change.
    pub updated: i64,
}

struct Live {
    info: UploadInfo,
    sent: Arc<AtomicU64>,
    /// Set by [`Uploads::cancel`]; the driver's send loop looks at it every chunk.
    stop: Arc<std::sync::atomic::AtomicBool>,
    last: (Instant, u64),
}

struct State {
    queue: UploadQueue,
    live: BTreeMap<u64, Live>,
    finished: Vec<UploadInfo>,
}

/// The node's uploads: slots, queue, limit and records, shared by every driver.
pub struct Uploads {
    state: Mutex<State>,
    limit: Arc<RateLimit>,
    /// Changes not yet taken by [`Uploads::changes`]: the newest record of each upload
    /// that changed, so a slow consumer misses no final state (done, failed) and the
    /// memory is bounded by the uploads that exist, not by how often they changed.
    changed: Mutex<BTreeMap<u64, UploadInfo>>,
    /// Wakes [`Uploads::changes`].
    notify: Notify,
    /// Whether anyone takes changes (a standalone client's uploads keep none).
    watched: std::sync::atomic::AtomicBool,
    grants: Mutex<HashMap<String, mpsc::UnboundedSender<Grant>>>,
    dcc_ids: AtomicU64,
    /// Users whose requests are refused: (network, lower-case name).
    banned: std::sync::RwLock<std::collections::HashSet<(String, String)>>,
    /// What is uploaded from: the node's one share index, read by every network.
    share: std::sync::OnceLock<crate::share::SharedIndex>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads").field("limit", &self.limit).finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Uploads {
    /// `global` slots, per-network caps, and an upload limit in KiB/s (0: none).
    pub fn new(global: usize, per_network: BTreeMap<String, usize>, max_upload_kib: u64) -> Arc<Uploads> {
        let limit = RateLimit::unlimited();
        limit.set_rate(max_upload_kib.saturating_mul(1024));
        Arc::new(Uploads {
            state: Mutex::new(State {
                queue: UploadQueue::new(global, per_network),
                live: BTreeMap::new(),
                finished: Vec::new(),
            }),
            limit: Arc::new(limit),
            changed: Mutex::default(),
            notify: Notify::new(),
            watched: std::sync::atomic::AtomicBool::new(false),
            grants: Mutex::default(),
            // DCC gets are not queued; their ids count down from the top so they never
            // meet the queue's.
            dcc_ids: AtomicU64::new(u64::MAX / 2),
            banned: std::sync::RwLock::default(),
            share: std::sync::OnceLock::new(),
        })
    }

    /// Serve every network from `share` (the node's one index); the first call wins.
    pub fn set_share(&self, share: crate::share::SharedIndex) {
        let _ = self.share.set(share);
    }

    /// The node's share index, if one was set: the networks read it instead of indexing
    /// the share folders each on their own.
    pub fn share(&self) -> Option<crate::share::SharedIndex> {
        self.share.get().cloned()
    }

    /// A client's own uploads (no node around it): `slots` slots, no limit; its timers
    /// run until `shutdown`.
    pub fn standalone(slots: usize, shutdown: CancellationToken) -> Arc<Uploads> {
        let u = Uploads::new(slots, BTreeMap::new(), 0);
        tokio::spawn(u.clone().run(shutdown));
        u
    }

    /// The shared upload limit.
    pub fn limit(&self) -> Arc<RateLimit> {
        self.limit.clone()
    }

    /// Change the upload limit (KiB/s, 0: none); running uploads follow at once.
    pub fn set_limit_kib(&self, kib: u64) {
        self.limit.set_rate(kib.saturating_mul(1024));
    }

    /// The upload limit in KiB/s (0: none).
    pub fn limit_kib(&self) -> u64 {
        self.limit.rate() / 1024
    }

    /// The next changes (state changes and progress; the newest record of each upload
    /// changed since the last call), waiting for one. Changes are recorded from the first
    /// call on. For one consumer.
    pub async fn changes(&self) -> Vec<UploadInfo> {
        self.watched.store(true, Ordering::SeqCst);
        loop {
            let batch = std::mem::take(&mut *self.changed.lock().expect("upload changes"));
            if !batch.is_empty() {
                return batch.into_values().collect();
            }
            // A change between the take and here leaves a permit: no wake-up is lost.
            self.notify.notified().await;
        }
    }

    /// Record a change for [`Uploads::changes`]. Never waits: it runs under the callers'
    /// locks and in sync code.
    fn emit(&self, info: UploadInfo) {
        if !self.watched.load(Ordering::SeqCst) {
            return;
        }
        self.changed.lock().expect("upload changes").insert(info.id, info);
        self.notify.notify_one();
    }

    /// Slots freed for `network`'s queued uploads arrive here (one receiver per network;
    /// a new one replaces the old).
    pub fn grants(&self, network: &str) -> mpsc::UnboundedReceiver<Grant> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.grants.lock().expect("grants").insert(network.to_owned(), tx);
        rx
    }

    /// Free slots of `network` now.
    pub fn free_slots(&self, network: &str) -> usize {
        self.state.lock().expect("uploads").queue.free_slots(network)
    }

    /// Slots `network` may use.
    pub fn total_slots(&self, network: &str) -> usize {
        self.state.lock().expect("uploads").queue.total_slots(network)
    }

    /// Uploads waiting for a slot.
    pub fn queue_len(&self) -> usize {
        self.state.lock().expect("uploads").queue.waiting()
    }

    /// Where a peer's file stands: Some(0) running or about to, Some(n) queued n-th.
    pub fn position(&self, network: &str, user: &str, file: &str) -> Option<u32> {
        self.state.lock().expect("uploads").queue.position(network, user, file)
    }

    /// Every upload: running and queued first (in queue order), then finished, newest
    /// first.
    pub fn list(&self) -> Vec<UploadInfo> {
        let s = self.state.lock().expect("uploads");
        let mut v: Vec<UploadInfo> =
            s.queue.entries().iter().filter_map(|e| s.live.get(&e.id)).map(with_live).collect();
        v.extend(s.live.iter().filter(|(id, _)| s.queue.entry(**id).is_none()).map(|(_, l)| with_live(l)));
        v.extend(s.finished.iter().rev().cloned());
        v
    }

    /// Refuse every request of these users from now on: (network, name).
    pub fn set_banned(&self, users: impl IntoIterator<Item = (String, String)>) {
        *self.banned.write().expect("banned") = users.into_iter().map(|(n, u)| (n, u.to_lowercase())).collect();
    }

    /// Whether `user` of `channel`'s network is banned from uploads.
    pub fn is_banned(&self, channel: &str, user: &str) -> bool {
        self.banned.read().expect("banned").contains(&(network_of(channel).to_owned(), user.to_lowercase()))
    }

    /// The stop flag of upload `id`, for its send loop (`transfer::send_file_range`).
    pub fn stop_flag(&self, id: u64) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        self.state.lock().expect("uploads").live.get(&id).map(|l| l.stop.clone())
    }

    /// Cancel upload `id`: one waiting in the queue leaves it at once, one running stops
    /// after its current chunk (its driver then finishes it). False if there is none.
    pub fn cancel(&self, id: u64) -> bool {
        let s = self.state.lock().expect("uploads");
        let Some(l) = s.live.get(&id) else { return false };
        let running = l.info.state == "running";
        l.stop.store(true, Ordering::Relaxed);
        drop(s);
        if !running {
            self.finish(id, Err(CANCELLED.into()));
        }
        true
    }

    /// A peer asks for a file of `size` bytes (see [`UploadQueue::request`]). A banned
    /// user is refused.
    pub fn request(&self, network: &str, user: &str, file: &str, size: u64, hold: bool) -> Decision {
        if self.is_banned(network, user) {
            return Decision::Refused;
        }
        let now = Instant::now();
        let mut s = self.state.lock().expect("uploads");
        let d = s.queue.request(network, user, file, hold, now);
        let id = match d {
            Decision::Granted(id) | Decision::AlreadyGranted(id) | Decision::Queued { id, .. } => id,
            Decision::Refused => return d,
        };
        let live = s.live.entry(id).or_insert_with(|| Live {
            info: UploadInfo {
                id,
                network: network.into(),
                user: user.into(),
                file: file.into(),
                size,
                start: 0,
                bytes: 0,
                state: String::new(),
                position: 0,
                rate: 0,
                error: String::new(),
                updated: 0,
            },
            sent: Arc::default(),
            stop: Arc::default(),
            last: (now, 0),
        });
        live.info.file = file.into();
        live.info.size = size;
        let changed = refresh(&mut s);
        drop(s);
        self.publish(changed);
        d
    }

    /// The upload `id` starts sending from `start`; returns its byte counter (bytes sent
    /// in this transfer), or None if its slot was lost (the hold lapsed).
    pub fn start(&self, id: u64, start: u64) -> Option<Arc<AtomicU64>> {
        let mut s = self.state.lock().expect("uploads");
        if !s.queue.start(id) {
            return None;
        }
        let l = s.live.get_mut(&id)?;
        l.info.start = start;
        l.info.bytes = 0;
        l.sent.store(0, Ordering::Relaxed);
        l.last = (Instant::now(), 0);
        let sent = l.sent.clone();
        let changed = refresh(&mut s);
        drop(s);
        self.publish(changed);
        Some(sent)
    }

    /// The upload `id` starts from byte `start` of its file (the peer's resume offset).
    pub fn set_start(&self, id: u64, start: u64) {
        let mut s = self.state.lock().expect("uploads");
        if let Some(l) = s.live.get_mut(&id) {
            l.info.start = start;
            let info = with_live(l);
            drop(s);
            self.emit(info);
        }
    }

    /// The upload `id` ended: `Ok` done, `Err` failed (or refused) with the reason. Its
    /// slot goes to the queue; a queued upload withdrawn before it ran leaves no record.
    pub fn finish(&self, id: u64, result: Result<(), String>) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("uploads");
        let again = s.queue.entry(id).filter(|e| e.again).map(|e| (e.network.clone(), e.user.clone(), e.file.clone()));
        let mut grants = s.queue.finish(id, now);
        if let Some(l) = s.live.remove(&id) {
            let mut info = with_live(&l);
            info.rate = 0;
            info.position = 0;
            info.updated = unix_now();
            match result {
                Ok(()) => info.state = "done".into(),
                Err(e) if e == CANCELLED || e.contains("the transfer was cancelled") => {
                    info.state = "cancelled".into();
                    info.error = CANCELLED.into();
                }
                // The downloader paused or closed its client: a normal end, not an error.
                Err(e) if stopped_by_peer(&e) => {
                    info.state = "stopped".into();
                    info.error = "stopped by the peer".into();
                }
                Err(e) => {
                    info.state = "failed".into();
                    info.error = e;
                }
            }
            s.finished.push(info.clone());
            if s.finished.len() > KEEP_FINISHED {
                s.finished.remove(0);
            }
            self.emit(info);
        }
        let changed = refresh(&mut s);
        drop(s);
        self.publish(changed);
        if let Some((network, user, file)) = again {
            let size = self.list().iter().find(|u| u.id == id).map_or(0, |u| u.size);
            if let Decision::Granted(id) = self.request(&network, &user, &file, size, true) {
                grants.push(Grant { id, network, user, file });
            }
        }
        self.send_grants(grants);
    }

    /// Record an upload that takes no queued slot (a DCC get): running at once. Finish it
    /// with [`Uploads::finish`].
    pub fn untracked(&self, network: &str, user: &str, file: &str, size: u64, start: u64) -> (u64, Arc<AtomicU64>) {
        let id = self.dcc_ids.fetch_sub(1, Ordering::Relaxed);
        let sent: Arc<AtomicU64> = Arc::default();
        let info = UploadInfo {
            id,
            network: network.into(),
            user: user.into(),
            file: file.into(),
            size,
            start,
            bytes: 0,
            state: "running".into(),
            position: 0,
            rate: 0,
            error: String::new(),
            updated: unix_now(),
        };
        self.state.lock().expect("uploads").live.insert(
            id,
            Live { info: info.clone(), sent: sent.clone(), stop: Arc::default(), last: (Instant::now(), 0) },
        );
        self.emit(info);
        (id, sent)
    }

    fn send_grants(&self, grants: Vec<Grant>) {
        let g = self.grants.lock().expect("grants");
        for grant in grants {
            if let Some(tx) = g.get(&grant.network) {
                let _ = tx.send(grant);
            }
        }
    }

    fn publish(&self, changed: Vec<UploadInfo>) {
        for i in changed {
            self.emit(i);
        }
    }

    /// Expire lapsed holds and report running uploads' progress.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("uploads");
        let (gone, grants) = s.queue.expire(now);
        let mut changed = Vec::new();
        for id in gone {
            if let Some(l) = s.live.remove(&id) {
                let mut info = with_live(&l);
                info.error = match info.state.as_str() {
                    "starting" => "the peer did not take the slot held for it".into(),
                    _ => "the peer stopped asking".into(),
                };
                info.state = "failed".into();
                info.position = 0;
                info.updated = unix_now();
                s.finished.push(info.clone());
                if s.finished.len() > KEEP_FINISHED {
                    s.finished.remove(0);
                }
                changed.push(info);
            }
        }
        changed.extend(refresh(&mut s));
        for l in s.live.values_mut() {
            if l.info.state != "running" {
                continue;
            }
            let bytes = l.sent.load(Ordering::Relaxed);
            let dt = now.duration_since(l.last.0).as_secs_f64();
            let rate = if dt > 0.0 { (bytes.saturating_sub(l.last.1) as f64 / dt) as u64 } else { 0 };
            l.last = (now, bytes);
            if bytes != l.info.bytes || rate != l.info.rate {
                l.info.bytes = bytes;
                l.info.rate = rate;
                l.info.updated = unix_now();
                changed.push(l.info.clone());
            }
        }
        drop(s);
        self.publish(changed);
        self.send_grants(grants);
    }

    /// Run [`Uploads::tick`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut t = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = t.tick() => self.tick(),
            }
        }
    }
}

fn with_live(l: &Live) -> UploadInfo {
    let mut i = l.info.clone();
    if i.state == "running" {
        i.bytes = l.sent.load(Ordering::Relaxed);
    }
    i
}

/// Bring every live record's state and position in line with the queue; returns those
/// that changed.
fn refresh(s: &mut State) -> Vec<UploadInfo> {
    let mut changed = Vec::new();
    let positions: Vec<(u64, &'static str, u32)> = s
        .queue
        .entries()
        .iter()
        .map(|e| match e.slot {
            Slot::Waiting => (e.id, "queued", s.queue.position_of(e.id).unwrap_or(0)),
            Slot::Held { .. } => (e.id, "starting", 0),
            Slot::Active => (e.id, "running", 0),
        })
        .collect();
    for (id, state, position) in positions {
        if let Some(l) = s.live.get_mut(&id) {
            if l.info.state != state || l.info.position != position {
                l.info.state = state.into();
                l.info.position = position;
                l.info.updated = unix_now();
                changed.push(with_live(l));
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(global: usize) -> UploadQueue {
        UploadQueue::new(global, BTreeMap::new())
    }

    #[test]
    fn a_full_queue_gives_positions_and_hands_freed_slots_on_in_order() {
        let t = Instant::now();
        let mut q = q(1);
        let a = q.request("slsk", "a", "x", true, t);
        let Decision::Granted(a) = a else { panic!("{a:?}") };
        assert!(q.start(a));
        assert_eq!(q.request("slsk", "b", "y", true, t), Decision::Queued { id: 2, position: 1 });
        assert_eq!(q.request("slsk", "c", "z", true, t), Decision::Queued { id: 3, position: 2 });
        // Asking again keeps the place.
        assert_eq!(q.request("slsk", "C", "z", true, t), Decision::Queued { id: 3, position: 2 });
        assert_eq!(q.position("slsk", "c", "z"), Some(2));
        assert_eq!(q.position("slsk", "a", "x"), Some(0));
        assert_eq!(q.position("slsk", "nobody", "x"), None);
        let g = q.finish(a, t);
        assert_eq!(g, vec![Grant { id: 2, network: "slsk".into(), user: "b".into(), file: "y".into() }]);
        assert_eq!(q.position("slsk", "c", "z"), Some(1));
        // A newcomer does not jump the queue while a slot is held.
        assert_eq!(q.request("slsk", "d", "w", true, t), Decision::Queued { id: 4, position: 2 });
        assert!(q.start(2));
        assert_eq!(q.finish(2, t).iter().map(|g| g.id).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn per_network_caps_hold_inside_the_global_count() {
        let t = Instant::now();
        let mut q = UploadQueue::new(3, BTreeMap::from([("nmdc".to_owned(), 1)]));
        assert_eq!(q.request("nmdc", "a", "x", false, t), Decision::Granted(1));
        assert_eq!(q.free_slots("nmdc"), 0);
        assert_eq!(q.free_slots("slsk"), 2);
        assert_eq!(q.total_slots("nmdc"), 1);
        assert_eq!(q.request("nmdc", "b", "y", false, t), Decision::Queued { id: 2, position: 1 });
        // The waiting NMDC request cannot use a Soulseek-only free slot: slsk goes ahead.
        assert_eq!(q.request("slsk", "c", "z", true, t), Decision::Granted(3));
        assert_eq!(q.request("slsk", "d", "z", true, t), Decision::Granted(4));
        assert_eq!(q.request("slsk", "e", "z", true, t), Decision::Queued { id: 5, position: 2 });
    }

    #[test]
    fn an_nmdc_retry_gets_the_slot_held_for_it_and_others_stay_maxed_out() {
        let t = Instant::now();
        let mut q = q(1);
        assert_eq!(q.request("nmdc", "a", "x", false, t), Decision::Granted(1));
        assert_eq!(q.request("nmdc", "b", "y", false, t), Decision::Queued { id: 2, position: 1 });
        let g = q.finish(1, t);
        assert_eq!(g.len(), 1);
        assert_eq!(q.free_slots("nmdc"), 0, "held for b");
        assert_eq!(q.request("nmdc", "c", "z", false, t), Decision::Queued { id: 3, position: 1 });
        // b comes back (for another file even) and gets it.
        assert_eq!(q.request("nmdc", "B", "other", false, t + Duration::from_secs(5)), Decision::Granted(2));
        assert_eq!(q.entry(2).unwrap().file, "other");
    }

    #[test]
    fn lapsed_holds_and_forgotten_requesters_go() {
        let t = Instant::now();
        let mut q = q(1);
        assert_eq!(q.request("nmdc", "a", "x", false, t), Decision::Granted(1));
        assert!(matches!(q.request("slsk", "b", "y", true, t), Decision::Queued { .. }));
        assert!(matches!(q.request("nmdc", "c", "z", false, t), Decision::Queued { .. }));
        assert!(matches!(q.request("slsk", "d", "w", true, t), Decision::Queued { .. }));
        assert_eq!(q.finish(1, t).iter().map(|g| g.id).collect::<Vec<_>>(), vec![2]);
        // b never answers: its hold lapses and c is next.
        let (gone, g) = q.expire(t + HOLD_FOR);
        assert_eq!(gone, vec![2]);
        assert_eq!(g.iter().map(|g| g.id).collect::<Vec<_>>(), vec![3]);
        // c never retries either; d (Soulseek, remembered) is next.
        let (gone, g) = q.expire(t + HOLD_FOR * 2);
        assert_eq!(gone, vec![3]);
        assert_eq!(g.iter().map(|g| g.id).collect::<Vec<_>>(), vec![4]);
        assert!(!q.start(3), "a lapsed hold cannot start");
    }

    #[test]
    fn an_active_upload_asked_again_is_not_granted_twice() {
        let t = Instant::now();
        let mut q = q(2);
        assert_eq!(q.request("slsk", "a", "x", true, t), Decision::Granted(1));
        assert_eq!(q.request("slsk", "a", "x", true, t), Decision::AlreadyGranted(1));
        assert!(q.start(1));
        assert_eq!(q.request("slsk", "a", "x", true, t), Decision::AlreadyGranted(1));
        assert_eq!(q.free_slots("slsk"), 1);
    }

    #[tokio::test]
    async fn a_downloader_that_goes_away_stopped_the_upload_it_did_not_fail() {
        let u = Uploads::new(2, BTreeMap::new(), 0);
        let Decision::Granted(a) = u.request("slsk", "a", "x", 10, true) else { panic!() };
        let Decision::Granted(b) = u.request("nmdc", "b", "y", 10, false) else { panic!() };
        u.start(a, 0).unwrap();
        u.start(b, 0).unwrap();
        u.finish(a, Err("Connection reset by peer (os error 104)".into()));
        u.finish(b, Err("cannot read /share/y: Permission denied (os error 13)".into()));
        let list = u.list();
        let get = |id| list.iter().find(|i| i.id == id).unwrap();
        assert_eq!((get(a).state.as_str(), get(a).error.as_str()), ("stopped", "stopped by the peer"));
        assert_eq!(get(b).state, "failed");
    }

    #[tokio::test]
    async fn sessions_of_one_network_share_its_slots_and_get_their_own_grants() {
        // Two Soulseek sessions (`slsk` and `slsk@two`), two Soulseek slots in all.
        let u = Uploads::new(5, BTreeMap::from([("slsk".to_owned(), 2)]), 0);
        let mut one = u.grants("slsk");
        let mut two = u.grants("slsk@two");
        let Decision::Granted(a) = u.request("slsk", "a", "x", 10, true) else { panic!() };
        let Decision::Granted(b) = u.request("slsk@two", "b", "y", 10, true) else { panic!() };
        assert_eq!((u.free_slots("slsk"), u.free_slots("slsk@two"), u.total_slots("slsk@two")), (0, 0, 2));
        // Queued through the second server: its grant goes to that session only.
        assert!(matches!(u.request("slsk@two", "c", "z", 10, true), Decision::Queued { position: 1, .. }));
        u.start(a, 0).unwrap();
        u.finish(a, Ok(()));
        let g = tokio::time::timeout(Duration::from_secs(5), two.recv()).await.unwrap().unwrap();
        assert_eq!((g.network.as_str(), g.user.as_str()), ("slsk@two", "c"));
        assert!(one.try_recv().is_err(), "the first session cannot reach c");
        u.start(b, 0).unwrap();
        u.finish(b, Ok(()));
    }

    #[tokio::test]
    async fn a_file_queued_again_while_it_is_sent_is_offered_again_after() {
        let u = Uploads::new(1, BTreeMap::new(), 0);
        let mut grants = u.grants("slsk");
        let Decision::Granted(a) = u.request("slsk", "a", "x", 10, true) else { panic!() };
        u.start(a, 0).unwrap();
        assert_eq!(u.request("slsk", "a", "x", 10, true), Decision::AlreadyGranted(a));
        u.finish(a, Ok(()));
        let g = grants.recv().await.unwrap();
        assert_eq!((g.user.as_str(), g.file.as_str()), ("a", "x"));
        assert_ne!(g.id, a);
    }

    #[tokio::test]
    async fn records_follow_the_queue_and_report_changes() {
        let u = Uploads::new(1, BTreeMap::new(), 0);
        let mut grants = u.grants("slsk");
        // (nothing pending: the first call starts recording)
        assert!(tokio::time::timeout(Duration::from_millis(10), u.changes()).await.is_err());
        let Decision::Granted(a) = u.request("slsk", "a", "x", 10, true) else { panic!() };
        let one = |v: Vec<UploadInfo>, user: &str| v.into_iter().find(|i| i.user == user).unwrap();
        assert_eq!(one(u.changes().await, "a").state, "starting");
        let sent = u.start(a, 0).unwrap();
        assert_eq!(one(u.changes().await, "a").state, "running");
        assert!(matches!(u.request("slsk", "b", "y", 20, true), Decision::Queued { position: 1, .. }));
        let q = one(u.changes().await, "b");
        assert_eq!((q.user.as_str(), q.state.as_str(), q.position), ("b", "queued", 1));
        sent.store(10, Ordering::Relaxed);
        u.finish(a, Ok(()));
        // A consumer that comes late still sees each upload's newest state.
        let late = u.changes().await;
        let done = one(late.clone(), "a");
        assert_eq!((done.state.as_str(), done.bytes), ("done", 10));
        assert_eq!(one(late, "b").state, "starting");
        assert_eq!(grants.recv().await.unwrap().user, "b");
        let list = u.list();
        assert_eq!(
            list.iter().map(|i| (i.user.as_str(), i.state.as_str())).collect::<Vec<_>>(),
            vec![("b", "starting"), ("a", "done")]
        );
        u.set_limit_kib(256);
        assert_eq!(u.limit().rate(), 256 * 1024);
    }
}
