//! One download engine for every network: a queue in SQLite, global and per-network
//! slots, one download at a time per NMDC source (its client-to-client connection is
//! keyed by nick), retries with exponential backoff, pause/resume/cancel/retry, and
//! resume from the bytes on disk after a restart or a crash.
//!
//! Partial data lives in `<data_dir>/incomplete/<id>/`; only a complete (and, when the
//! source gave a TTH, verified) file is renamed into the downloads folder, so a crash
//! never leaves a truncated file where finished ones go.

use super::db::{self, NewTransfer};
use super::model::{Event, TransferInfo};
use super::net::{Network, TransferAction, TransferState};
use super::sessions::DownloadFuture;
use super::{Node, NodeError};
use anyhow::{anyhow, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Longest wait between retries.
pub const MAX_BACKOFF_SECS: u64 = 300;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often bytes on disk are written to the database while running.
const PERSIST_EVERY: Duration = Duration::from_secs(2);

struct Running {
    network: Network,
    hub: String,
    source: String,
    stop: CancellationToken,
    rate: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

/// The engine's live state (the queue itself is in the database).
#[derive(Default)]
pub struct Engine {
    running: Mutex<HashMap<i64, Running>>,
    wake: Notify,
    /// The live view of running segmented downloads (`super::segmented`).
    pub(super) segments: Mutex<HashMap<i64, super::segmented::SegmentsView>>,
}

/// The delay before retry number `retries + 1`.
pub fn backoff(base_secs: u64, retries: u32) -> u64 {
    base_secs.saturating_mul(1u64 << retries.min(20)).min(MAX_BACKOFF_SECS)
}

/// `dir/name`, or `dir/name (2).ext`, ... if taken on disk or by another transfer.
pub fn unique_path(dir: &Path, name: &str, taken: impl Fn(&Path) -> bool) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() && !taken(&first) {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
        _ => (name.to_owned(), String::new()),
    };
    for n in 2.. {
        let p = dir.join(format!("{stem} ({n}){ext}"));
        if !p.exists() && !taken(&p) {
            return p;
        }
    }
    unreachable!("some name is free")
}

impl Engine {
    /// Look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The current rate and bytes on disk of a running transfer.
    pub fn live(&self, id: i64) -> Option<(u64, u64)> {
        self.running
            .lock()
            .expect("running")
            .get(&id)
            .map(|r| (r.rate.load(Ordering::Relaxed), r.bytes.load(Ordering::Relaxed)))
    }

    /// The transfers running now.
    pub(super) fn running_ids(&self) -> Vec<i64> {
        self.running.lock().expect("running").keys().copied().collect()
    }

    fn stop(&self, id: i64) {
        if let Some(r) = self.running.lock().expect("running").get(&id) {
            r.stop.cancel();
        }
    }
}

impl Node {
    /// Queue a download into the downloads folder.
    pub fn queue_download(&self, t: NewTransfer) -> anyhow::Result<TransferInfo> {
        let dir = self.downloads();
        self.queue_download_in(t, &dir)
    }

    /// Queue a download into `dir`, a folder inside the downloads folder (made of safe
    /// components by `super::browse`; created when the file is complete).
    pub fn queue_download_in(&self, t: NewTransfer, dir: &Path) -> anyhow::Result<TransferInfo> {
        self.queue_download_sources(t, dir, &[])
    }

    /// [`Node::queue_download_in`] with more sources of the same file, for a segmented
    /// download (`super::segmented`); they are stored before the engine can start it.
    pub fn queue_download_sources(
        &self,
        mut t: NewTransfer,
        dir: &Path,
        extra: &[crate::store::segments::ExtraSource],
    ) -> anyhow::Result<TransferInfo> {
        if !dir.starts_with(self.downloads()) {
            bail!(NodeError::Invalid(format!("{} is not inside the downloads folder", dir.display())));
        }
        let name = omnipeer_dcc::SafeName::sanitize(&t.name).map_err(|e| anyhow!("cannot store {:?}: {e}", t.name))?;
        let store = self.db.lock().expect("db");
        let local =
            unique_path(dir, name.as_str(), |p| store.transfer_local_path_taken(&p.to_string_lossy()).unwrap_or(true));
        t.name = name.as_str().to_owned();
        t.local_path = local.to_string_lossy().into_owned();
        let info = store.transfer_add(&t)?;
        for e in extra {
            store.transfer_source_add(info.id, e)?;
        }
        drop(store);
        self.emit(Event::Transfer { transfer: info.clone() });
        self.engine.wake();
        Ok(info)
    }

    /// A transfer with its live rate.
    pub fn transfer(&self, id: i64) -> anyhow::Result<Option<TransferInfo>> {
        let t = self.db.lock().expect("db").transfer(id)?;
        Ok(t.map(|mut t| {
            if let Some((rate, bytes)) = self.engine.live(t.id) {
                t.rate = rate;
                t.bytes = t.bytes.max(bytes);
            }
            t
        }))
    }

    /// Every transfer with live rates, newest first.
    pub fn transfers(&self) -> anyhow::Result<Vec<TransferInfo>> {
        let mut v = self.db.lock().expect("db").transfers()?;
        for t in &mut v {
            if let Some((rate, bytes)) = self.engine.live(t.id) {
                t.rate = rate;
                t.bytes = t.bytes.max(bytes);
            }
        }
        Ok(v)
    }

    fn emit_transfer(&self, id: i64) {
        if let Ok(Some(t)) = self.transfer(id) {
            self.emit(Event::Transfer { transfer: t });
        }
    }

    /// Remove a transfer from the list, whatever its state: one under way is stopped and
    /// its partial file deleted; a finished file stays where it is.
    pub fn transfer_remove(&self, id: i64) -> anyhow::Result<()> {
        let removed = self.db.lock().expect("db").transfer_delete(id)?;
        if !removed {
            bail!(NodeError::NotFound(format!("no transfer {id}")));
        }
        // The worker sees the row gone when it ends; its partial folder goes either way.
        self.engine.stop(id);
        self.engine.segments.lock().expect("segments").remove(&id);
        self.tox_file_control(id, TransferAction::Cancel);
        if !self.engine.running.lock().expect("running").contains_key(&id) {
            let _ = std::fs::remove_dir_all(self.partial_dir(id));
        }
        self.emit(Event::TransfersRemoved { ids: vec![id] });
        Ok(())
    }

    /// Remove every finished (done or cancelled) transfer from the list; their ids.
    pub fn transfers_clear_finished(&self) -> anyhow::Result<Vec<i64>> {
        let ids = self.db.lock().expect("db").transfers_clear_finished()?;
        let mut views = self.engine.segments.lock().expect("segments");
        for id in &ids {
            views.remove(id);
        }
        drop(views);
        if !ids.is_empty() {
            self.emit(Event::TransfersRemoved { ids: ids.clone() });
        }
        Ok(ids)
    }

    /// Pause, resume, cancel or retry. Errors with `Conflict` when the state forbids it.
    pub fn transfer_action(&self, id: i64, action: TransferAction) -> anyhow::Result<TransferInfo> {
        use TransferState::*;
        let no_such = || NodeError::NotFound(format!("no transfer {id}"));
        let store = self.db.lock().expect("db");
        let t = store.transfer(id)?.ok_or_else(no_such)?;
        // A Tox friend's file comes when the friend sends it: it cannot be asked for again.
        if t.network == Network::Tox && action == TransferAction::Retry {
            bail!(NodeError::Conflict("a Tox friend's file resumes when the friend sends it again".into()));
        }
        let ok = match action {
            TransferAction::Pause => store.transfer_set_state(id, &[Queued, Running], Paused),
            TransferAction::Resume => store.transfer_set_state(id, &[Paused], Queued),
            TransferAction::Cancel => store.transfer_set_state(id, &[Queued, Running, Paused, Failed], Cancelled),
            TransferAction::Retry => store.transfer_requeue(id, &[Failed, Cancelled]),
        }?;
        drop(store);
        if !ok {
            bail!(NodeError::Conflict(format!("cannot {} a transfer that is {}", action.as_str(), t.state)));
        }
        match action {
            // A Tox friend's file is driven by the Tox client, not the engine.
            _ if t.network == Network::Tox => self.tox_file_control(id, action),
            TransferAction::Pause | TransferAction::Cancel => self.engine.stop(id),
            _ => self.engine.wake(),
        }
        if action == TransferAction::Cancel && !self.engine.running.lock().expect("running").contains_key(&id) {
            let _ = std::fs::remove_dir_all(self.partial_dir(id));
        }
        self.emit_transfer(id);
        Ok(self.transfer(id)?.ok_or_else(no_such)?)
    }

    /// The scheduler: start due transfers while slots are free. Runs until shutdown.
    pub async fn run_engine(self: Arc<Self>) {
        loop {
            if let Err(e) = self.schedule() {
                tracing::warn!("transfer queue: {e:#}");
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.engine.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        // Stop workers; their rows stay `running` and are re-queued at the next start,
        // exactly as after a crash.
        for r in self.engine.running.lock().expect("running").values() {
            r.stop.cancel();
        }
    }

    fn schedule(self: &Arc<Self>) -> anyhow::Result<()> {
        let due = self.db.lock().expect("db").transfers_due(db::now())?;
        for t in due {
            let mut running = self.engine.running.lock().expect("running");
            if running.len() as u64 >= self.setting("global_slots") {
                break;
            }
            if running.values().filter(|r| r.network == t.network).count() as u64 >= self.setting("network_slots") {
                continue;
            }
            // One download at a time per NMDC source: its client-to-client connection is
            // keyed by nick.
            if t.network == Network::Nmdc
                && running
                    .values()
                    .any(|r| r.network == Network::Nmdc && r.hub == t.hub && r.source.eq_ignore_ascii_case(&t.source))
            {
                continue;
            }
            let online = self.session_at(t.network, &t.hub).is_some_and(|s| s.client().is_some());
            if !online {
                continue;
            }
            if !self.db.lock().expect("db").transfer_set_state(
                t.id,
                &[TransferState::Queued],
                TransferState::Running,
            )? {
                continue;
            }
            let stop = CancellationToken::new();
            let rate = Arc::new(AtomicU64::new(0));
            let bytes = Arc::new(AtomicU64::new(t.bytes));
            running.insert(
                t.id,
                Running {
                    network: t.network,
                    hub: t.hub.clone(),
                    source: t.source.clone(),
                    stop: stop.clone(),
                    rate: rate.clone(),
                    bytes: bytes.clone(),
                },
            );
            drop(running);
            self.emit_transfer(t.id);
            let node = self.clone();
            tokio::spawn(async move {
                let id = t.id;
                node.work(t, stop, rate, bytes).await;
                node.engine.running.lock().expect("running").remove(&id);
                node.engine.wake();
            });
        }
        Ok(())
    }

    async fn work(
        self: &Arc<Self>,
        t: TransferInfo,
        stop: CancellationToken,
        rate: Arc<AtomicU64>,
        live: Arc<AtomicU64>,
    ) {
        let id = t.id;
        let dir = self.partial_dir(id);
        let result = self.attempt(&t, &dir, &stop, &rate, &live).await;
        let state = self.db.lock().expect("db").transfer(id).ok().flatten().map(|t| t.state);
        match (result, state) {
            // Cancelled, or removed from the list while it ran: the partial file goes.
            (_, Some(TransferState::Cancelled) | None) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            (_, Some(TransferState::Paused)) => {
                let bytes = self.partial_bytes(&t, &dir);
                let _ = self.db.lock().expect("db").transfer_set_bytes(id, bytes);
            }
            (Ok((file, size)), _) => match self.finish(&t, &file, size).await {
                Ok(path) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = self.db.lock().expect("db").transfer_done(id, &path.to_string_lossy(), size);
                    tracing::info!(id, path = %path.display(), "download complete");
                }
                Err(e) => {
                    tracing::warn!(id, "download did not check out: {e:#}");
                    let _ = std::fs::remove_dir_all(&dir);
                    let store = self.db.lock().expect("db");
                    let _ = store.transfer_set_bytes(id, 0);
                    let _ = store.transfer_failed(id, &format!("{e:#}"), None);
                }
            },
            (Err(e), _) if self.shutdown.is_cancelled() => tracing::info!(id, "stopped by shutdown: {e:#}"),
            (Err(e), _) => {
                let store = self.db.lock().expect("db");
                let bytes =
                    store.transfer_verified_bytes(id, t.size).ok().flatten().unwrap_or_else(|| dir_file_len(&dir));
                let _ = store.transfer_set_bytes(id, bytes);
                let retry = (u64::from(t.retries) < self.setting("max_retries"))
                    .then(|| backoff(self.setting("retry_base_secs"), t.retries) as i64);
                tracing::info!(id, retry_in = ?retry, "download attempt failed: {e:#}");
                let _ = store.transfer_failed(id, &format!("{e:#}"), retry);
            }
        }
        // The incomplete folder changed while this ran (`app::settings`): what is left of
        // the partial file moves there now (where it cannot, it stays and is still found:
        // `Node::partial_dir`).
        let here = self.incomplete();
        if dir.exists()
            && dir.parent() != Some(here.as_path())
            && std::fs::rename(&dir, here.join(id.to_string())).is_ok()
        {
            tracing::info!(id, "partial download moved to {}", here.display());
        }
        if !self.shutdown.is_cancelled() {
            self.emit_transfer(id);
        }
    }

    /// One attempt; returns the complete file in `dir` and its size.
    async fn attempt(
        self: &Arc<Self>,
        t: &TransferInfo,
        dir: &Path,
        stop: &CancellationToken,
        rate: &Arc<AtomicU64>,
        live: &Arc<AtomicU64>,
    ) -> anyhow::Result<(PathBuf, u64)> {
        std::fs::create_dir_all(dir)?;
        // Several sources and a Tiger tree: segments (`super::segmented`).
        let segmented = self.attempt_segmented(t, dir, stop, rate, live).await;
        // A finished segmented download keeps its last view (which source sent what)
        // until its row goes; a stopped or failed attempt's view goes now.
        if !matches!(segmented, Some(Ok(_))) {
            self.engine.segments.lock().expect("segments").remove(&t.id);
        }
        if let Some(r) = segmented {
            return r;
        }
        let on_disk = dir_file_len(dir);
        live.store(on_disk, Ordering::Relaxed);
        if on_disk > 0 {
            tracing::info!(id = t.id, from = on_disk, "resuming from the bytes on disk");
        }
        let progress = Arc::new((AtomicU64::new(on_disk), AtomicU64::new(t.size)));
        let control = Arc::new(crate::ratelimit::TransferControl::limited(Some(self.download_limit.clone())));
        let session = self
            .session_at(t.network, &t.hub)
            .ok_or_else(|| anyhow!("{} {} is no longer a session of this node", t.network.title(), t.hub))?;
        let client = session.client().ok_or_else(|| NodeError::NotConnected(session.key().describe()))?;
        let fut: DownloadFuture = client.download(t, dir, progress.clone(), control.clone())?;
        let mut fut = fut;
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut last = (Instant::now(), progress.0.load(Ordering::Relaxed));
        let mut persisted = Instant::now();
        // Queued without a size: the first size a peer announces is adopted and kept, so
        // a retry (or another peer) can never write past it.
        let mut adopted = t.size != 0;
        let mut adopt = |node: &Node| {
            let size = progress.1.load(Ordering::Relaxed);
            if !adopted && size != 0 {
                adopted = true;
                tracing::info!(id = t.id, size, "the download had no size: taking the one the peer announced");
                let _ = node.db.lock().expect("db").transfer_adopt_size(t.id, size);
            }
        };
        loop {
            tokio::select! {
                r = &mut fut => {
                    rate.store(0, Ordering::Relaxed);
                    adopt(self);
                    return r;
                }
                _ = stop.cancelled() => {
                    control.stop.store(true, Ordering::Relaxed);
                    // NMDC copies on a blocking thread: let it see the flag and end, so
                    // no stray write lands after a resume starts.
                    let _ = tokio::time::timeout(Duration::from_secs(10), &mut fut).await;
                    adopt(self);
                    bail!("stopped");
                }
                _ = tick.tick() => {
                    adopt(self);
                    let bytes = progress.0.load(Ordering::Relaxed);
                    live.store(bytes, Ordering::Relaxed);
                    let now = Instant::now();
                    let dt = now.duration_since(last.0).as_secs_f64();
                    let r = if dt > 0.0 { (bytes.saturating_sub(last.1) as f64 / dt) as u64 } else { 0 };
                    rate.store(r, Ordering::Relaxed);
                    last = (now, bytes);
                    let size = progress.1.load(Ordering::Relaxed).max(t.size);
                    self.emit(Event::Progress { id: t.id, bytes, size, rate: r });
                    if persisted.elapsed() >= PERSIST_EVERY {
                        persisted = now;
                        let _ = self.db.lock().expect("db").transfer_set_bytes(t.id, bytes);
                    }
                }
            }
        }
    }

    /// Verify and move a complete file into the downloads folder.
    async fn finish(&self, t: &TransferInfo, file: &Path, size: u64) -> anyhow::Result<PathBuf> {
        let on_disk = std::fs::metadata(file)?.len();
        if on_disk != size || (t.size != 0 && size != t.size) {
            bail!("the file has {on_disk} bytes, expected {}", t.size);
        }
        if let Some(want) = &t.tth {
            let f = file.to_path_buf();
            let got = tokio::task::spawn_blocking(move || crate::nmdc::cc::file_tth(&f)).await??;
            if &got.to_base32() != want {
                bail!("TTH mismatch: got {}, expected {want}", got.to_base32());
            }
        }
        let mut dest = PathBuf::from(&t.local_path);
        // Queued into a folder of the downloads folder (a folder download), or straight
        // into it.
        // (Its folder was chosen inside the downloads folder in force when it was queued:
        // a download keeps it when the downloads folder changes later, `app::settings`.)
        let downloads = self.downloads();
        let dir = dest.parent().filter(|d| d.is_absolute()).unwrap_or(&downloads).to_path_buf();
        if dest.exists() {
            let taken = |p: &Path| p.exists();
            dest = unique_path(&dir, &t.name, taken);
        }
        std::fs::create_dir_all(&dir)?;
        if std::fs::rename(file, &dest).is_err() {
            // Another file system: copy, then drop the partial.
            std::fs::copy(file, &dest)?;
            std::fs::remove_file(file)?;
        }
        Ok(dest)
    }
}

/// Bytes in the partial file of a transfer's incomplete folder (0 if none).
pub fn partial_len(dir: &Path) -> u64 {
    dir_file_len(dir)
}

/// Bytes in the (single) partial file of a transfer's incomplete folder.
impl Node {
    /// What a stopped download holds: its verified blocks when it was segmented (the
    /// partial file is sparse), else the partial file's length.
    fn partial_bytes(&self, t: &TransferInfo, dir: &Path) -> u64 {
        let verified = self.db.lock().expect("db").transfer_verified_bytes(t.id, t.size).ok().flatten();
        verified.unwrap_or_else(|| dir_file_len(dir))
    }
}

fn dir_file_len(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .ok()
        .and_then(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).max())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(2, 0), 2);
        assert_eq!(backoff(2, 1), 4);
        assert_eq!(backoff(2, 4), 32);
        assert_eq!(backoff(2, 30), MAX_BACKOFF_SECS);
    }

    #[test]
    fn unique_paths_skip_taken_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.mp3"), b"x").unwrap();
        let p = unique_path(d.path(), "a.mp3", |p| p.ends_with("a (2).mp3"));
        assert_eq!(p, d.path().join("a (3).mp3"));
        assert_eq!(unique_path(d.path(), "b", |_| false), d.path().join("b"));
    }
}
