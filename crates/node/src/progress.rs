//! Transfer progress for command-line users: a bar with bytes, rate and ETA when stderr is
//! a terminal, plain lines (at most one every few seconds) when it is not, nothing when
//! quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often plain-mode progress lines are printed.
const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

/// Reports one transfer's progress.
pub struct Progress {
    mode: Mode,
    label: String,
    total: u64,
    start_pos: u64,
    started: Instant,
}

enum Mode {
    Quiet,
    Bar(ProgressBar),
    Plain { last: Instant, pos: u64 },
}

impl Progress {
    /// A reporter that shows nothing.
    pub fn quiet() -> Progress {
        Progress { mode: Mode::Quiet, label: String::new(), total: 0, start_pos: 0, started: Instant::now() }
    }

    /// A bar on a terminal, plain lines otherwise.
    pub fn for_stderr(label: impl Into<String>) -> Progress {
        let mode = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            Mode::Bar(bar)
        } else {
            Mode::Plain { last: Instant::now(), pos: 0 }
        };
        Progress { mode, label: label.into(), total: 0, start_pos: 0, started: Instant::now() }
    }

    /// The transfer runs from `start` (resume position) to `total` bytes.
    pub fn start(&mut self, start: u64, total: u64) {
        self.total = total;
        self.start_pos = start;
        self.started = Instant::now();
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Bar(b) => {
                b.set_message(self.label.clone());
                b.set_length(total);
                b.set_position(start);
                b.reset_eta();
            }
            Mode::Plain { pos, .. } => {
                *pos = start;
                if start > 0 {
                    eprintln!("{}: resuming at {} of {}", self.label, human(start), human(total));
                } else {
                    eprintln!("{}: {} to transfer", self.label, human(total));
                }
            }
        }
    }

    /// What the label says besides the name (a segmented download's sources and block
    /// map); shown on the bar, and on plain lines.
    pub fn set_detail(&mut self, detail: &str) {
        let base = self.label.split(" | ").next().unwrap_or_default().to_owned();
        self.label = if detail.is_empty() { base } else { format!("{base} | {detail}") };
        if let Mode::Bar(b) = &self.mode {
            b.set_message(self.label.clone());
        }
    }

    /// The transfer has reached `pos` bytes (absolute).
    pub fn set(&mut self, position: u64) {
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Bar(b) => b.set_position(position),
            Mode::Plain { last, pos } => {
                *pos = position;
                if last.elapsed() >= PLAIN_INTERVAL {
                    *last = Instant::now();
                    let rate = rate(position - self.start_pos, self.started.elapsed());
                    eprintln!(
                        "{}: {} of {} ({}/s)",
                        self.label,
                        human(position),
                        human(self.total),
                        human(rate as u64)
                    );
                }
            }
        }
    }

    /// The transfer ended (successfully or not); prints a summary line in plain mode.
    pub fn finish(&mut self, position: u64) {
        let elapsed = self.started.elapsed();
        let moved = position.saturating_sub(self.start_pos);
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Bar(b) => {
                b.set_position(position);
                b.finish_and_clear();
            }
            Mode::Plain { .. } => {}
        }
        if !matches!(self.mode, Mode::Quiet) {
            eprintln!(
                "{}: {} of {} in {:.1}s ({}/s)",
                self.label,
                human(position),
                human(self.total),
                elapsed.as_secs_f64(),
                human(rate(moved, elapsed) as u64)
            );
        }
    }
}

fn rate(bytes: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        bytes as f64 / s
    } else {
        0.0
    }
}

/// Bytes as a short human string (binary units).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(12), "12 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(5 << 30), "5.0 GiB");
    }
}
