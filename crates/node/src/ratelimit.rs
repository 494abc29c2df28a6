//! A token bucket shared by transfers: `take(n)` says how long to wait before `n` more
//! bytes may pass, so one limit holds over every transfer that shares it. Blocking copy
//! loops sleep on their thread, async ones on the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl TransferControl {
    /// A control with a limit.
    pub fn limited(limit: Option<Arc<RateLimit>>) -> TransferControl {
        TransferControl { stop: AtomicBool::new(false), limit }
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

    /// After `n` bytes, wait (async) as the limit says.
    pub async fn pace(&self, n: usize) {
        if let Some(l) = &self.limit {
            let d = l.take(n);
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
