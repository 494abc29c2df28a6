//! Running the `omnipeer` binary from integration tests: a long-running process whose
//! stderr lines can be waited for (stopped with SIGTERM on drop), and one-shot commands.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_omnipeer");
/// How long to wait for a line.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `omnipeer` process.
pub struct Omni {
    child: Child,
    killed: bool,
    lines: mpsc::Receiver<String>,
    data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Omni {
    /// Start `omnipeer ARGS` with a fresh data directory.
    pub fn start(args: &[&str]) -> Omni {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = Omni::start_in(tmp.path(), args);
        o._tmp = Some(tmp);
        o
    }

    /// Start `omnipeer --data-dir DATA ARGS`.
    pub fn start_in(data: &Path, args: &[&str]) -> Omni {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("omnipeer starts");
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Omni { child, killed: false, lines, data: data.to_path_buf(), _tmp: None }
    }

    /// Wait for a stderr line starting with `prefix`; returns the rest, trimmed.
    pub fn wait_line(&self, prefix: &str) -> String {
        let end = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let l = self.lines.recv_timeout(end.saturating_duration_since(Instant::now())).unwrap_or_else(|e| {
                panic!("omnipeer never printed {prefix:?} ({e}); it printed:\n{}", seen.join("\n"))
            });
            seen.push(l.clone());
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Wait for a stderr line containing `needle`; returns the line.
    pub fn wait_line_containing(&self, needle: &str) -> String {
        let end = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let l = self.lines.recv_timeout(end.saturating_duration_since(Instant::now())).unwrap_or_else(|e| {
                panic!("omnipeer never printed a line with {needle:?} ({e}); it printed:\n{}", seen.join("\n"))
            });
            seen.push(l.clone());
            if l.contains(needle) {
                return l;
            }
        }
    }

    /// Every stderr line printed since the last wait (does not wait).
    pub fn lines_so_far(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Its resident memory in KiB (Linux: `VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Omni {
    /// `kill -9` it (no clean shutdown) and reap it.
    pub fn kill9(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        self.killed = true;
    }
}

impl Drop for Omni {
    fn drop(&mut self) {
        if self.killed {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        // A node that does not stop within 30 s (a hang) is killed, not waited for forever.
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("omnipeer (pid {}) did not stop within 30 s of SIGTERM: killing it", self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod node;
pub mod tox;
pub mod web;

/// Run `omnipeer --data-dir DATA ARGS` to the end: (exit code, stdout, stderr).
pub fn run_in(data: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// [`run_in`] with a fresh data directory.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    run_in(tmp.path(), args)
}
