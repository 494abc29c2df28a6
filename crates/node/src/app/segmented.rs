//! The driver of segmented downloads: pumps `crate::segments::Scheduler` with one task
//! per source (Direct Connect ranges through `crate::nmdc::ranged` for NMDC hubs and
//! `crate::adc::ranged` for ADC hubs, Soulseek transfers started at an offset through
//! `SlskClient::download_range`), writes verified blocks into the partial
//! file and records them in `node.sqlite` (`store::segments`), so a restart fetches only
//! what is missing.
//!
//! A transfer is segmented when it has a TTH, a known size and more than one source
//! (`POST /api/transfers` from a search result queues every source of the file: NMDC
//! and ADC users with its TTH, Soulseek users with a file of the same name and size).
//! Blocks are checked against the Tiger tree of a Direct Connect source (`$ADCGET tthl` on
//! NMDC, `CGET tthl` on ADC); without a tree from
//! any source the download falls back to one source, as before: nothing else could tell
//! a Soulseek source's bytes good from bad (Soulseek has no hashes).

use super::model::{Event, TransferInfo};
use super::net::Network;
use super::sessions::Client;
use super::Node;
use crate::adc::ranged::AdcRangedSource;
use crate::nmdc::ranged::{RangeError, RangedSource};
use crate::segments::{self, block_hash, Command, Config, Scheduler, SegmentId, Verdict};
use crate::store::segments::ExtraSource;
use anyhow::{anyhow, bail};
use omnipeer_nmdc::tth::{Hash, Tth};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Received blocks of one file waiting for the disk: past it, the file's sources stop
/// reading until the writer catches up (docs/security.md). Each source also holds at most
/// one unfinished block of its own.
pub const WRITE_BACKLOG: u64 = 128 << 20;

/// Soulseek segments are at least this long: each costs a whole transfer negotiation.
pub const SLSK_MIN_SEGMENT: u64 = 8 << 20;
/// Longest NMDC segment, in blocks (each is one `$ADCGET` on a kept connection).
const NMDC_MAX_SEGMENT_BLOCKS: u64 = 16;
/// Longest Soulseek segment, in blocks.
const SLSK_MAX_SEGMENT_BLOCKS: u64 = 128;
/// A Soulseek segment refused as "upload failed" this soon after it was asked for is
/// taken for the uploader's late UploadFailed of the previous segment (closed early by us).
const SLSK_STALE_FAILURE: Duration = Duration::from_secs(5);
/// How long to wait before asking again after such a stale failure.
const SLSK_STALE_PAUSE: Duration = Duration::from_millis(500);
/// How often a segment is asked again after stale failures.
const SLSK_STALE_RETRIES: u32 = 2;
/// How often progress and the block map are reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Sources fetching for segmented downloads now, over every file (capped by
/// `[transfers].segment_sources_total`).
static ACTIVE_SOURCES: AtomicUsize = AtomicUsize::new(0);

/// One source of a segmented download as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentSource {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// The user.
    pub user: String,
    /// `idle`, `downloading`, `waiting` (full, queued or retrying), `dropped` (sent bad
    /// data), `gone`.
    pub state: String,
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// Bytes per second while it had work (0: not measured yet).
    pub speed: u64,
}

/// The live view of a segmented download.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentsView {
    /// Bytes per block.
    pub block_size: u64,
    /// One character per block: `#` verified, `>` being fetched, `.` missing.
    pub blocks: String,
    /// Every source.
    pub sources: Vec<SegmentSource>,
    /// What happened to sources (bad data, given up).
    pub note: String,
}

/// A Direct Connect user as a source of ranges, on an NMDC or an ADC hub.
enum DcRanged {
    Nmdc(RangedSource),
    Adc(AdcRangedSource),
}

impl DcRanged {
    /// `user` on the hub session `client`, if it is a Direct Connect one.
    fn new(client: Client, user: &str) -> Option<DcRanged> {
        match client {
            Client::Nmdc(dc) => Some(DcRanged::Nmdc(RangedSource::new(dc, user))),
            Client::Adc(adc) => Some(DcRanged::Adc(AdcRangedSource::new(adc, user))),
            _ => None,
        }
    }

    fn forget_connection(&mut self) {
        match self {
            DcRanged::Nmdc(s) => s.forget_connection(),
            DcRanged::Adc(s) => s.forget_connection(),
        }
    }

    async fn tthl(&mut self, root: &Tth, size: u64) -> Result<(u64, Vec<Hash>), RangeError> {
        match self {
            DcRanged::Nmdc(s) => s.tthl(root, size).await,
            DcRanged::Adc(s) => s.tthl(root, size).await,
        }
    }

    async fn fetch(
        &mut self,
        root: &Tth,
        start: u64,
        length: u64,
        sink: &mut (dyn FnMut(&[u8]) + Send),
        control: &crate::ratelimit::TransferControl,
    ) -> Result<(), RangeError> {
        match self {
            DcRanged::Nmdc(s) => s.fetch(root, start, length, sink, control).await,
            DcRanged::Adc(s) => s.fetch(root, start, length, sink, control).await,
        }
    }
}

struct Spec {
    network: Network,
    hub: String,
    user: String,
    path: String,
}

enum Ev {
    Moved(SegmentId, u64),
    Block { segment: SegmentId, block: u64, hash: Hash, data: Vec<u8> },
    Ended { segment: SegmentId, result: Result<(), (bool, String)> },
}

struct Job {
    segment: SegmentId,
    start: u64,
    length: u64,
    stop: CancellationToken,
}

/// Holds one of the global source permits while a source fetches.
struct Permit;

impl Permit {
    fn take(cap: usize) -> Option<Permit> {
        let mut n = ACTIVE_SOURCES.load(Ordering::Relaxed);
        loop {
            if n >= cap {
                return None;
            }
            match ACTIVE_SOURCES.compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Permit),
                Err(m) => n = m,
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        ACTIVE_SOURCES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Cuts a source's bytes into blocks, hashes each and sends it on.
struct Blocker {
    segment: SegmentId,
    pos: u64,
    block_size: u64,
    size: u64,
    buf: Vec<u8>,
    tx: mpsc::UnboundedSender<Ev>,
    /// Counts the blocks handed to the writer (its readers wait in `pace` while it is full).
    backlog: Option<Arc<crate::ratelimit::Backlog>>,
}

impl Blocker {
    fn push(&mut self, mut data: &[u8]) {
        let _ = self.tx.send(Ev::Moved(self.segment, data.len() as u64));
        while !data.is_empty() {
            let block = self.pos / self.block_size;
            let block_end = ((block + 1) * self.block_size).min(self.size);
            let want = (block_end - self.pos) as usize;
            let n = want.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.pos == block_end {
                let bytes = std::mem::take(&mut self.buf);
                let hash = block_hash(&bytes);
                if let Some(b) = &self.backlog {
                    b.add(bytes.len() as u64);
                }
                let _ = self.tx.send(Ev::Block { segment: self.segment, block, hash, data: bytes });
            }
        }
    }
}

impl Node {
    /// The live segments of transfer `id`, if it is a running segmented download.
    pub fn transfer_segments(&self, id: i64) -> Option<SegmentsView> {
        self.engine.segments.lock().expect("segments").get(&id).cloned()
    }

    fn segment_specs(&self, t: &TransferInfo) -> Vec<Spec> {
        let mut v =
            vec![Spec { network: t.network, hub: t.hub.clone(), user: t.source.clone(), path: t.remote_path.clone() }];
        let extra = self.db.lock().expect("db").transfer_sources(t.id).unwrap_or_default();
        for ExtraSource { network, hub, source, remote_path } in extra {
            if !v.iter().any(|s| s.network == network && s.hub == hub && s.user.eq_ignore_ascii_case(&source)) {
                v.push(Spec { network, hub, user: source, path: remote_path });
            }
        }
        v
    }

    /// A segmented attempt at `t`, or `None` when `t` is not one (no TTH, no size, one
    /// source, or no source gave a Tiger tree: then it goes to one source as before).
    pub(super) async fn attempt_segmented(
        self: &Arc<Self>,
        t: &TransferInfo,
        dir: &Path,
        stop: &CancellationToken,
        rate: &Arc<AtomicU64>,
        live: &Arc<AtomicU64>,
    ) -> Option<anyhow::Result<(PathBuf, u64)>> {
        let root = Tth::from_base32(t.tth.as_deref()?).ok()?;
        if t.size == 0 {
            return None;
        }
        let specs = self.segment_specs(t);
        if specs.len() < 2 {
            return None;
        }
        // The tree, from the first Direct Connect source (NMDC or ADC hub) that gives one;
        // that source's connection is kept for its ranges.
        let mut tree = None;
        let mut nmdc: HashMap<usize, DcRanged> = HashMap::new();
        for (i, s) in specs.iter().enumerate().filter(|(_, s)| s.network == Network::Nmdc) {
            let Some(mut src) =
                self.session_at(s.network, &s.hub).and_then(|x| x.client()).and_then(|c| DcRanged::new(c, &s.user))
            else {
                continue;
            };
            if tree.is_none() {
                let got = tokio::select! {
                    r = src.tthl(&root, t.size) => r,
                    _ = stop.cancelled() => return Some(Err(anyhow!("stopped"))),
                };
                match got {
                    Ok(x) => tree = Some(x),
                    Err(e) => tracing::info!(id = t.id, user = %s.user, "no Tiger tree: {e}"),
                }
            }
            nmdc.insert(i, src);
        }
        if let Some((bs, _)) = &tree {
            if Scheduler::final_block_size(t.size, *bs) > segments::MAX_BLOCK_SIZE {
                tracing::info!(id = t.id, "blocks too large to hold in memory: downloading from one source");
                tree = None;
            }
        }
        let Some((tree_block, hashes)) = tree else {
            tracing::info!(id = t.id, "no source gave a Tiger tree: downloading from one source");
            self.keep_verified_prefix(t, dir);
            return None;
        };
        Some(self.run_segmented(t, dir, stop, rate, live, root, specs, nmdc, tree_block, hashes).await)
    }

    /// The partial file of a segmented download cut to the blocks verified from its
    /// start, for a single-source attempt that resumes from the file's end.
    fn keep_verified_prefix(&self, t: &TransferInfo, dir: &Path) {
        let path = dir.join(&t.name);
        let Ok(len) = std::fs::metadata(&path).map(|m| m.len()) else { return };
        let store = self.db.lock().expect("db");
        let Ok(Some(bs)) = store
            .conn
            .query_row("SELECT MIN(block_size) FROM transfer_blocks WHERE transfer = ?1", [t.id], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|v| v.map(|b| b as u64))
        else {
            return;
        };
        let blocks = store.transfer_blocks(t.id, bs).unwrap_or_default();
        let prefix = blocks.iter().enumerate().take_while(|(i, b)| *i as u64 == **b).count() as u64;
        let keep = (prefix * bs).min(len);
        if keep < len {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(keep);
            }
        }
        let _ = store.transfer_blocks_clear(t.id);
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_segmented(
        self: &Arc<Self>,
        t: &TransferInfo,
        dir: &Path,
        stop: &CancellationToken,
        rate: &Arc<AtomicU64>,
        live: &Arc<AtomicU64>,
        root: Tth,
        specs: Vec<Spec>,
        mut nmdc: HashMap<usize, DcRanged>,
        tree_block: u64,
        hashes: Vec<Hash>,
    ) -> anyhow::Result<(PathBuf, u64)> {
        let size = t.size;
        let block_size = Scheduler::final_block_size(size, tree_block);
        let mut held = self.db.lock().expect("db").transfer_blocks(t.id, block_size)?;
        // Blocks recorded for a partial file that is gone (cancelled, or its check failed
        // and it was deleted), or shorter than they reach, are fetched again.
        let on_disk = std::fs::metadata(dir.join(&t.name)).map(|m| m.len()).unwrap_or(0);
        let before = held.len();
        held.retain(|&b| (b * block_size).saturating_add(block_size).min(size) <= on_disk);
        if held.len() != before {
            let store = self.db.lock().expect("db");
            store.transfer_blocks_clear(t.id)?;
            for &b in &held {
                store.transfer_block_verified(t.id, block_size, b)?;
            }
        }
        let cfg = Config { sources_per_file: self.cfg.transfers.segment_sources_per_file.max(1), ..Config::default() };
        let total_cap = self.cfg.transfers.segment_sources_total.max(1);
        let mut s = Scheduler::new(size, tree_block, hashes, &held, cfg);
        debug_assert_eq!(s.block_size(), block_size);
        tracing::info!(
            id = t.id,
            sources = specs.len(),
            blocks = s.block_count(),
            held = held.len(),
            block_size,
            "segmented download"
        );
        std::fs::create_dir_all(dir)?;
        let out = dir.join(&t.name);
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&out)?;
        // Unbounded, but what it can hold is: blocks count against `backlog`, and the
        // sources stop reading while it is full; the other events are small and follow reads.
        let (tx, mut rx) = mpsc::unbounded_channel::<Ev>();
        let backlog = Arc::new(crate::ratelimit::Backlog::new(WRITE_BACKLOG));
        let mut workers: Vec<mpsc::UnboundedSender<Job>> = Vec::new();
        let tasks = CancellationToken::new();
        let _end_tasks = tasks.clone().drop_guard();
        for (i, spec) in specs.iter().enumerate() {
            let min = match spec.network {
                Network::Slsk => SLSK_MIN_SEGMENT.div_ceil(block_size).max(1),
                _ => 1,
            };
            let max = if spec.network == Network::Slsk { SLSK_MAX_SEGMENT_BLOCKS } else { NMDC_MAX_SEGMENT_BLOCKS };
            s.add_source(&format!("{} {}", spec.network.as_str(), spec.user), min, max);
            let (jtx, jrx) = mpsc::unbounded_channel::<Job>();
            workers.push(jtx);
            let worker = Worker {
                node: self.clone(),
                network: spec.network,
                hub: spec.hub.clone(),
                user: spec.user.clone(),
                path: spec.path.clone(),
                nmdc: nmdc.remove(&i),
                root,
                size,
                block_size,
                total_cap,
                tx: tx.clone(),
                control: crate::ratelimit::TransferControl::limited(Some(self.download_limit.clone()))
                    .with_backlog(backlog.clone()),
            };
            let end = tasks.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = worker.run(jrx) => {}
                    _ = end.cancelled() => {}
                }
            });
        }
        let mut running: HashMap<SegmentId, CancellationToken> = HashMap::new();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut last = (Instant::now(), s.verified_bytes());
        let mut notes_seen = 0;
        let mut fetched = 0u64;
        s.start(Instant::now());
        loop {
            while let Some(c) = s.poll_command() {
                match c {
                    Command::Start { segment, source, start, length } => {
                        let stop = CancellationToken::new();
                        running.insert(segment, stop.clone());
                        let _ = workers[source].send(Job { segment, start, length, stop });
                    }
                    Command::Cancel { segment, .. } => {
                        if let Some(c) = running.remove(&segment) {
                            c.cancel();
                        }
                    }
                }
            }
            if s.notes().len() > notes_seen {
                notes_seen = s.notes().len();
                let note = s.notes().join("; ");
                let _ = self.db.lock().expect("db").transfer_set_note(t.id, &note);
            }
            if s.is_complete() {
                break;
            }
            if s.is_stuck() {
                self.publish_segments(t.id, &s, &specs);
                bail!("no source can finish the file: {}", s.notes().join("; "));
            }
            let wake = s.next_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
            tokio::select! {
                _ = stop.cancelled() => {
                    for c in running.values() {
                        c.cancel();
                    }
                    bail!("stopped");
                }
                ev = rx.recv() => {
                    let now = Instant::now();
                    match ev.ok_or_else(|| anyhow!("every source task ended"))? {
                        Ev::Moved(seg, n) => s.bytes_moved(seg, n, now),
                        Ev::Block { segment, block, hash, data } => {
                            let kept = s.block_done(segment, block, hash, now) == Verdict::Keep;
                            if kept {
                                let (start, _) = s.block_range(block);
                                write_at(&file, &data, start)?;
                                fetched += 1;
                            }
                            backlog.done(data.len() as u64);
                            if kept {
                                self.db.lock().expect("db").transfer_block_verified(t.id, block_size, block)?;
                            }
                        }
                        Ev::Ended { segment, result } => {
                            running.remove(&segment);
                            if let Err((full, why)) = result {
                                tracing::info!(id = t.id, segment, "segment: {why}");
                                s.segment_failed(segment, full, &why, now);
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => s.handle_timeout(Instant::now()),
                _ = tick.tick() => {
                    let bytes = s.verified_bytes();
                    live.store(bytes, Ordering::Relaxed);
                    let now = Instant::now();
                    let dt = now.duration_since(last.0).as_secs_f64();
                    let r = if dt > 0.0 { (bytes.saturating_sub(last.1) as f64 / dt) as u64 } else { 0 };
                    rate.store(r, Ordering::Relaxed);
                    last = (now, bytes);
                    self.emit(Event::Progress { id: t.id, bytes, size, rate: r });
                    self.publish_segments(t.id, &s, &specs);
                    let _ = self.db.lock().expect("db").transfer_set_bytes(t.id, bytes);
                }
            }
        }
        for c in running.values() {
            c.cancel();
        }
        file.sync_data()?;
        drop(file);
        self.publish_segments(t.id, &s, &specs);
        live.store(size, Ordering::Relaxed);
        rate.store(0, Ordering::Relaxed);
        tracing::info!(id = t.id, fetched, held = held.len(), "segmented download complete");
        let _ = self.db.lock().expect("db").transfer_blocks_clear(t.id);
        Ok((out, size))
    }

    fn publish_segments(&self, id: i64, s: &Scheduler, specs: &[Spec]) {
        let view = SegmentsView {
            block_size: s.block_size(),
            blocks: s.block_map(),
            sources: s
                .sources()
                .into_iter()
                .zip(specs)
                .map(|(v, spec)| SegmentSource {
                    network: spec.network,
                    user: spec.user.clone(),
                    state: v.state.as_str().to_owned(),
                    bytes: v.bytes,
                    speed: v.speed,
                })
                .collect(),
            note: s.notes().join("; "),
        };
        self.engine.segments.lock().expect("segments").insert(id, view.clone());
        self.emit(Event::Segments { id, segments: view });
    }
}

#[cfg(unix)]
fn write_at(file: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

#[cfg(windows)]
fn write_at(file: &std::fs::File, mut data: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, data, offset)?;
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

/// One source's task: takes segments one at a time and fetches them.
struct Worker {
    node: Arc<Node>,
    network: Network,
    hub: String,
    user: String,
    path: String,
    nmdc: Option<DcRanged>,
    root: Tth,
    size: u64,
    block_size: u64,
    total_cap: usize,
    tx: mpsc::UnboundedSender<Ev>,
    /// The node's download limit (`[transfers].max_download_kib`), shared with every
    /// other download.
    control: crate::ratelimit::TransferControl,
}

impl Worker {
    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let segment = job.segment;
            let result = tokio::select! {
                r = self.fetch(&job) => r,
                _ = job.stop.cancelled() => {
                    // Dropped mid-range: that connection cannot be reused.
                    if let Some(n) = self.nmdc.as_mut() {
                        n.forget_connection();
                    }
                    Err((false, "cancelled".to_owned()))
                }
            };
            let _ = self.tx.send(Ev::Ended { segment, result });
        }
    }

    async fn fetch(&mut self, job: &Job) -> Result<(), (bool, String)> {
        let Some(_permit) = Permit::take(self.total_cap) else {
            return Err((true, "the node's segmented-download sources are all busy".to_owned()));
        };
        let mut blocker = Blocker {
            segment: job.segment,
            pos: job.start,
            block_size: self.block_size,
            size: self.size,
            buf: Vec::new(),
            tx: self.tx.clone(),
            backlog: self.control.backlog.clone(),
        };
        let mut sink = |d: &[u8]| blocker.push(d);
        match self.network {
            Network::Nmdc => {
                if self.nmdc.is_none() {
                    let Some(src) = self
                        .node
                        .session_at(self.network, &self.hub)
                        .and_then(|x| x.client())
                        .and_then(|c| DcRanged::new(c, &self.user))
                    else {
                        return Err((false, format!("the hub {} is not connected", self.hub)));
                    };
                    self.nmdc = Some(src);
                }
                let src = self.nmdc.as_mut().expect("set above");
                src.fetch(&self.root, job.start, job.length, &mut sink, &self.control).await.map_err(|e| match e {
                    RangeError::Full(_) => (true, e.to_string()),
                    RangeError::Failed(_) => (false, e.to_string()),
                })
            }
            Network::Slsk => {
                let Some(Client::Slsk(sl)) = self.node.session_at(self.network, &self.hub).and_then(|x| x.client())
                else {
                    return Err((false, format!("the server {} is not connected", self.hub)));
                };
                // A segment closed early makes the uploader send UploadFailed for that
                // transfer, which names only the file: arriving after the next segment's
                // QueueUpload, it fails that one too. Such a stale failure, before any byte
                // came, is not the source's fault: asked again after a pause.
                let started = Instant::now();
                let mut tries = 0;
                loop {
                    let r = sl
                        .download_range(
                            &self.user,
                            &self.path,
                            self.size,
                            job.start,
                            job.length,
                            &mut sink,
                            &self.control,
                        )
                        .await;
                    match r {
                        Err(e)
                            if tries < SLSK_STALE_RETRIES
                                && started.elapsed() < SLSK_STALE_FAILURE
                                && format!("{e:#}").contains("upload failed") =>
                        {
                            tries += 1;
                            tokio::time::sleep(SLSK_STALE_PAUSE).await;
                        }
                        r => break r.map_err(|e| (false, format!("{e:#}"))),
                    }
                }
            }
            Network::Dcc | Network::Tox => Err((false, "this network cannot serve ranges".to_owned())),
        }
    }
}
