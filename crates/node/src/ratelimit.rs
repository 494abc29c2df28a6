//! A token bucket shared by transfers: `take(n)` says how long to wait before `n` more
//! bytes may pass, so one limit holds over every transfer that shares it. Blocking copy
//! loops sleep on their thread, async ones on the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per second over every transfer sharing it, with a one-second burst.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    state: Mutex<(Instant, f64)>,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        let rate = bytes_per_sec.max(1) as f64;
        RateLimit { rate, state: Mutex::new((Instant::now(), rate)) }
    }

    /// Account for `n` bytes at `now`; returns how long to wait before going on.
    pub fn take_at(&self, n: usize, now: Instant) -> Duration {
        let mut s = self.state.lock().expect("rate limit");
        let elapsed = now.saturating_duration_since(s.0).as_secs_f64();
        s.0 = now;
        s.1 = (s.1 + elapsed * self.rate).min(self.rate) - n as f64;
        if s.1 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.1 / self.rate)
        }
    }

    /// [`RateLimit::take_at`] now.
    pub fn take(&self, n: usize) -> Duration {
        self.take_at(n, Instant::now())
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
}
