//! A token bucket shared by transfers: `take(n)` says how long to wait before `n` more
//! bytes may pass, so one limit holds over every transfer that shares it. Blocking copy
//! loops sleep on their thread, async ones on the runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per second over every transfer sharing it, with a one-second burst. The rate can
/// be changed while transfers run ([`RateLimit::set_rate`]); a rate of 0 means no limit
/// (only [`RateLimit::unlimited`] and `set_rate(0)` make one).
#[derive(Debug)]
pub struct RateLimit {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; 0 = unlimited.
    rate: f64,
    last: Instant,
    /// Bytes that may pass now (negative: debt).
    tokens: f64,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        let rate = bytes_per_sec.max(1) as f64;
        RateLimit { state: Mutex::new(Bucket { rate, last: Instant::now(), tokens: rate }) }
    }

    /// No limit until [`RateLimit::set_rate`] sets one.
    pub fn unlimited() -> RateLimit {
        RateLimit { state: Mutex::new(Bucket { rate: 0.0, last: Instant::now(), tokens: 0.0 }) }
    }

    /// Change the rate (0: no limit). Transfers sharing it follow from their next chunk;
    /// a new limit starts with a full one-second burst and no debt.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        let mut s = self.state.lock().expect("rate limit");
        s.rate = bytes_per_sec as f64;
        s.tokens = s.rate;
        s.last = Instant::now();
    }

    /// The rate in bytes per second (0: no limit).
    pub fn rate(&self) -> u64 {
        self.state.lock().expect("rate limit").rate as u64
    }

    /// Whether a limit applies now.
    pub fn is_limited(&self) -> bool {
        self.rate() > 0
    }

    /// Account for `n` bytes at `now`; returns how long to wait before going on.
    pub fn take_at(&self, n: usize, now: Instant) -> Duration {
        let mut s = self.state.lock().expect("rate limit");
        if s.rate <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        s.tokens = (s.tokens + elapsed * s.rate).min(s.rate) - n as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / s.rate)
        }
    }

    /// [`RateLimit::take_at`] now.
    pub fn take(&self, n: usize) -> Duration {
        self.take_at(n, Instant::now())
    }

    /// [`RateLimit::take`], sleeping this thread as long as it says.
    pub fn pace_blocking(&self, n: usize) {
        let d = self.take(n);
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

/// What a running transfer is told from outside: stop, and how fast it may go.
#[derive(Debug, Default)]
pub struct TransferControl {
    /// Set to stop (pause or cancel): the copy loop ends at its next chunk with an error,
    /// leaving what it wrote on disk.
    pub stop: AtomicBool,
    /// A shared download limit, if any.
    pub limit: Option<Arc<RateLimit>>,
    /// Bytes received but not yet on disk, if the receiver hands them to a writer that may
    /// fall behind (segmented downloads): [`TransferControl::pace`] waits while it is full.
    pub backlog: Option<Arc<Backlog>>,
}

/// Bytes handed from a transfer's readers to its writer and not yet written, with a cap:
/// the readers stop reading (and their peers' TCP windows close) while the writer is
/// behind, so a slow disk never turns into unbounded memory.
#[derive(Debug)]
pub struct Backlog {
    queued: AtomicU64,
    max: u64,
    drained: tokio::sync::Notify,
}

impl Backlog {
    /// A backlog that makes readers wait once `max` bytes are queued.
    pub fn new(max: u64) -> Backlog {
        Backlog { queued: AtomicU64::new(0), max, drained: tokio::sync::Notify::new() }
    }

    /// `n` more bytes handed to the writer.
    pub fn add(&self, n: u64) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` bytes written (or dropped): readers waiting for room are woken.
    pub fn done(&self, n: u64) {
        let _ = self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(n)));
        self.drained.notify_waiters();
    }

    /// Bytes queued now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Wait until fewer than the cap are queued.
    pub async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a `done` between the check and the wait
            // is not missed.
            drained.as_mut().enable();
            if self.queued() < self.max {
                return;
            }
            drained.await;
        }
    }
}

impl TransferControl {
    /// A control with a limit.
    pub fn limited(limit: Option<Arc<RateLimit>>) -> TransferControl {
        TransferControl { stop: AtomicBool::new(false), limit, backlog: None }
    }

    /// This control with a writer backlog readers wait on ([`Backlog`]).
    pub fn with_backlog(mut self, backlog: Arc<Backlog>) -> TransferControl {
        self.backlog = Some(backlog);
        self
    }

    /// Whether the transfer should stop.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// After `n` bytes, wait (blocking) as the limit says.
    pub fn pace_blocking(&self, n: usize) {
        if let Some(l) = &self.limit {
            let d = l.take(n);
            if !d.is_zero() {
                std::thread::sleep(d);
            }
        }
    }

    /// After `n` bytes, wait (async) as the limit says, and while the writer's backlog is
    /// full.
    pub async fn pace(&self, n: usize) {
        if let Some(l) = &self.limit {
            let d = l.take(n);
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
        if let Some(b) = &self.backlog {
            b.room().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_backlog_holds_the_reader_until_the_writer_drains_it() {
        let b = Arc::new(Backlog::new(100));
        let control = Arc::new(TransferControl::limited(None).with_backlog(b.clone()));
        b.add(150);
        let reader = {
            let control = control.clone();
            tokio::spawn(async move { control.pace(10).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished(), "the reader went on with 150 of 100 bytes queued");
        b.done(40);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished(), "110 of 100 bytes queued: still full");
        b.done(20);
        tokio::time::timeout(Duration::from_secs(5), reader).await.expect("the reader was not woken").unwrap();
        assert_eq!(b.queued(), 90);
    }

    #[test]
    fn the_bucket_allows_the_rate_and_a_one_second_burst() {
        let t0 = Instant::now();
        let l = RateLimit::new(1000);
        assert_eq!(l.take_at(1000, t0), Duration::ZERO, "the first second's worth passes at once");
        assert_eq!(l.take_at(500, t0), Duration::from_millis(500));
        // Half a second later the debt is paid.
        assert_eq!(l.take_at(0, t0 + Duration::from_millis(500)), Duration::ZERO);
        // A long idle time does not bank more than one second.
        assert_eq!(l.take_at(1500, t0 + Duration::from_secs(100)), Duration::from_millis(500));
    }

    #[test]
    fn the_rate_changes_at_run_time_and_zero_lifts_the_limit() {
        let l = RateLimit::unlimited();
        assert!(!l.is_limited());
        let t0 = Instant::now();
        assert_eq!(l.take_at(1 << 30, t0), Duration::ZERO);
        l.set_rate(1000);
        assert_eq!(l.rate(), 1000);
        let t1 = Instant::now();
        assert_eq!(l.take_at(1000, t1), Duration::ZERO, "a new limit starts with a full burst");
        assert_eq!(l.take_at(2000, t1), Duration::from_secs(2));
        l.set_rate(0);
        assert_eq!(l.take_at(1 << 30, t1), Duration::ZERO, "the debt goes with the limit");
    }
}
