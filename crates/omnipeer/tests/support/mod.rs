//! Test support for the Direct Connect (NMDC) interop tests: launchers that run the REAL
//! clients headless on 127.0.0.1 (docs/protocols/nmdc.md#real-clients) and a fixture relay hub.
//!
//! Use from an integration test with `mod support;`. Each launcher gets its own temp dir,
//! every wait is bounded, and every process (and tmux session) is killed on drop.
//!
//! - [`ncdc::Ncdc`] — ncdc 1.23.1 driven through tmux (`send-keys` / `capture-pane`).
//! - [`eiskalt::Eiskalt`] — eiskaltdcpp-daemon 2.4.2 driven over JSON-RPC (HTTP, std only).
//! - [`microdc2::Microdc2`] — microdc2 0.15.6 driven through a FIFO on its stdin.
//! - [`relayhub::RelayHub`] — TEST FIXTURE hub that relays and logs every command.
//! - [`fakepeer`] — a scripted NMDC user / c-c listener to capture what a real client sends.
//!
//! When a client binary is missing, tests should call [`have`] (or the `available()` of a
//! launcher) and return early with an `eprintln!`, so `cargo test` passes on a bare box.
//! `scripts/install-test-deps.sh` installs them all.

#![allow(dead_code)]

pub mod eiskalt;
pub mod fakepeer;
pub mod microdc2;
pub mod ncdc;
pub mod relayhub;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A hub address as the real clients take it: `host:port` becomes `dchub://host:port`; an
/// address with a scheme (`adc://`, `adcs://`, `nmdcs://`) stays as it is.
pub fn hub_url(hub: &str) -> String {
    if hub.contains("://") {
        hub.to_owned()
    } else {
        format!("dchub://{hub}")
    }
}

/// A free TCP port on 127.0.0.1 whose UDP side is free too (clients use the same number
/// for both), from 26000-29999: below the kernel's ephemeral range (32768-60999 by
/// default), so no listener on port 0 is handed it before the peer binds it. Never the
/// same number twice in one test process; the start is spread by process id.
/// `omni::node::free_port` takes 20000-25999, `slsk_support::free_port` 30000-32767.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 26_000;
    const COUNT: u32 = 4_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `cond` every 100 ms until it returns true (→ true) or `timeout` passes (→ false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when `bin` is an executable found on `PATH`.
pub fn have(bin: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        let p = d.join(bin);
        std::fs::metadata(&p).map(|m| m.is_file()).unwrap_or(false)
    })
}

/// True when every binary in `bins` is on `PATH`; otherwise prints which are missing
/// (“skipping <test>: …; run scripts/install-test-deps.sh”) and returns false.
pub fn require(test: &str, bins: &[&str]) -> bool {
    let missing: Vec<&str> = bins.iter().copied().filter(|b| !have(b)).collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!("skipping {test}: {} not installed (run scripts/install-test-deps.sh as root)", missing.join(", "));
    false
}

/// The file's content as a lossy string ("" if it does not exist).
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// A fresh directory `<prefix>XXXXXX` in the system temp dir (`$TMPDIR` or /tmp; short
/// paths), removed on drop unless `OMNIPEER_KEEP_TMP` is set (to inspect client logs).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    if std::env::var_os("OMNIPEER_KEEP_TMP").is_some() {
        b.disable_cleanup(true);
    }
    b.tempdir().expect("temp dir")
}

/// SHA-256 of a file as lower-case hex (the harness checks downloads with it).
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect()
}

/// TTH root (39 upper-case base32) of a file, computed with `rhash --tth` (None if rhash is
/// missing or fails).
pub fn tth_rhash(path: &Path) -> Option<String> {
    let out = Command::new("rhash").arg("--tth").arg("--simple").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace().next().map(|h| h.to_ascii_uppercase())
}

/// Writes `len` deterministic pseudo-random bytes (seeded by `seed`) to `path`.
pub fn write_test_file(path: &Path, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct KillOnDrop(pub Option<Child>);

impl KillOnDrop {
    /// Spawns `cmd` with stdin/stdout/stderr as already configured on it.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<KillOnDrop> {
        Ok(KillOnDrop(Some(cmd.spawn()?)))
    }

    /// The child's pid (0 if already gone).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// True while the child has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.0.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits up to `timeout` for the child to exit by itself, then kills it.
    pub fn wait_or_kill(&mut self, timeout: Duration) {
        if let Some(mut c) = self.0.take() {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `Command` with the given program and null stdio (the launchers redirect to files).
pub(crate) fn quiet(program: &str) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Creates `dir` and returns it (convenience for config paths).
pub(crate) fn mkdir(dir: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}
