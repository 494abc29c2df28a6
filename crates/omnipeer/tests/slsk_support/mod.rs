//! Test support for the Soulseek interop tests: runs the REAL clients aioslsk 1.7.1 and
//! Nicotine+ 3.3.11 headless on 127.0.0.1 through small Python drivers (`tests/slsk/`),
//! plus a TEST-FIXTURE mock server ([`mockserver`]) to validate the harness.
//!
//! Use from an integration test with `mod slsk_support;`. std + serde_json + tempfile only.
//!
//! ```ignore
//! if !slsk_support::require("my_test") { return; }          // venv missing → skip
//! let mut a = Peer::spawn(Client::Aioslsk, &server_addr, PeerOptions::new("alice"))?;
//! a.wait_logged_in(T)?;
//! a.search("galway");
//! let hit = a.wait_event("search_result", |e| e["user"] == "bob", T);
//! ```
//!
//! Python: `$OMNIPEER_SLSK_PYTHON`, else `${OMNIPEER_VENV:-$HOME/.cache/omnipeer/slsk-venv}/bin/python`
//! — the venv `scripts/install-slsk-peers.sh` creates. Each peer gets its own temp dir
//! (share/, downloads/, data/, stderr.log); its process is killed on drop.
//! `OMNIPEER_SLSK_DEBUG=1` makes the drivers log every protocol message to their stderr
//! log; `OMNIPEER_KEEP_TMP=1` keeps the temp dirs.

#![allow(dead_code)]

pub mod mockserver;
pub mod wire;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The real clients the harness drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// aioslsk 1.7.1 (`tests/slsk/aioslsk_peer.py`).
    Aioslsk,
    /// Nicotine+ 3.3.11 core, headless (`tests/slsk/nicotine_peer.py`).
    Nicotine,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Aioslsk => "aioslsk",
            Client::Nicotine => "nicotine",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Client::Aioslsk => "1.7.1",
            Client::Nicotine => "3.3.11",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Client::Aioslsk => "aioslsk_peer.py",
            Client::Nicotine => "nicotine_peer.py",
        }
    }
}

/// The repository root: two levels above crates/omnipeer, one above bench/ (which
/// includes this module too).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = [here.join("../.."), here.join("..")]
        .into_iter()
        .find(|p| p.join("tests/slsk").is_dir())
        .unwrap_or_else(|| here.join("../.."));
    p.canonicalize().unwrap_or(p)
}

/// `tests/slsk/` (the Python drivers).
pub fn driver_dir() -> PathBuf {
    repo_root().join("tests/slsk")
}

/// The venv's python: `$OMNIPEER_SLSK_PYTHON`, else
/// `${OMNIPEER_VENV:-$HOME/.cache/omnipeer/slsk-venv}/bin/python`, if it exists.
pub fn venv_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OMNIPEER_SLSK_PYTHON") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let venv = match std::env::var_os("OMNIPEER_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/omnipeer/slsk-venv"),
    };
    let p = venv.join("bin/python");
    p.is_file().then_some(p)
}

/// True when the venv python and both driver scripts are present.
pub fn available() -> bool {
    venv_python().is_some()
        && driver_dir().join("aioslsk_peer.py").is_file()
        && driver_dir().join("nicotine_peer.py").is_file()
}

/// [`available`], or prints why the test is skipped and returns false.
pub fn require(test: &str) -> bool {
    if available() {
        return true;
    }
    eprintln!(
        "skipping {test}: Soulseek peers not installed (run scripts/install-slsk-peers.sh, \
         or set OMNIPEER_SLSK_PYTHON / OMNIPEER_VENV)"
    );
    false
}

/// A TCP port free on all interfaces (aioslsk binds 0.0.0.0), from 30000-32767: below
/// the kernel's ephemeral range (32768-60999 by default), so no listener on port 0 (a
/// node's DCC server, say) is handed it before the peer binds it. Never the same number
/// twice in one process; the start is spread by process id. `omni::node::free_port` takes
/// 20000-25999, `support::free_port` 26000-29999.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 30_000;
    const COUNT: u32 = 2_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// `len` deterministic pseudo-random bytes from `seed`.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// SHA-256 of a file as lower-case hex.
pub fn sha256_file(path: &Path) -> String {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    wire::sha256_hex(&data)
}

/// How to start one peer.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    pub user: String,
    pub password: String,
    /// 0 = pick a free port.
    pub listen_port: u16,
    /// Files to put in the share dir before start: (relative path, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// Log every protocol message to the stderr log (also on with `OMNIPEER_SLSK_DEBUG`).
    pub debug: bool,
}

impl PeerOptions {
    pub fn new(user: &str) -> PeerOptions {
        PeerOptions {
            user: user.into(),
            password: format!("{user}-pw"),
            listen_port: 0,
            files: Vec::new(),
            debug: false,
        }
    }

    pub fn password(mut self, p: &str) -> Self {
        self.password = p.into();
        self
    }

    pub fn listen_port(mut self, p: u16) -> Self {
        self.listen_port = p;
        self
    }

    pub fn file(mut self, rel: &str, content: Vec<u8>) -> Self {
        self.files.push((rel.into(), content));
        self
    }

    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }
}

#[derive(Default)]
struct EventLog {
    events: Vec<Value>,
    /// stdout closed (the driver exited).
    eof: bool,
}

type Shared = Arc<(Mutex<EventLog>, Condvar)>;

/// One running real client, driven over JSON lines. Killed on drop (after a `quit`).
pub struct Peer {
    pub client: Client,
    pub user: String,
    pub password: String,
    pub listen_port: u16,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    shared: Shared,
    dir: tempfile::TempDir,
    started: Instant,
}

impl Peer {
    /// Starts `client` against the server at `server` (`host:port`).
    pub fn spawn(client: Client, server: &str, opts: PeerOptions) -> std::io::Result<Peer> {
        let python = venv_python().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "venv python not found (run scripts/install-slsk-peers.sh)",
            )
        })?;
        let prefix = format!("slsk-{}-{}-", client.name(), opts.user);
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix);
        if std::env::var_os("OMNIPEER_KEEP_TMP").is_some() {
            b.disable_cleanup(true);
        }
        let dir = b.tempdir()?;
        let share = dir.path().join("share");
        let downloads = dir.path().join("downloads");
        let data = dir.path().join("data");
        for d in [&share, &downloads, &data] {
            std::fs::create_dir_all(d)?;
        }
        for (rel, content) in &opts.files {
            let p = share.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(p, content)?;
        }
        let port = if opts.listen_port == 0 { free_port() } else { opts.listen_port };
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        let mut cmd = Command::new(python);
        cmd.arg(driver_dir().join(client.script()))
            .arg(server)
            .arg(&opts.user)
            .arg(&opts.password)
            .arg(port.to_string())
            .arg(&share)
            .arg(&downloads)
            .arg(&data)
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if opts.debug {
            cmd.env("OMNIPEER_SLSK_DEBUG", "1");
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let shared: Shared = Arc::new((Mutex::new(EventLog::default()), Condvar::new()));
        let s2 = shared.clone();
        let tag = format!("{}:{}", client.name(), opts.user);
        std::thread::Builder::new().name(format!("slsk-events-{tag}")).spawn(move || {
            let echo = std::env::var_os("OMNIPEER_SLSK_ECHO").is_some();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[{tag}] {line}");
                }
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "error", "message": "non-JSON line", "line": line}));
                let (m, cv) = &*s2;
                m.lock().unwrap().events.push(v);
                cv.notify_all();
            }
            let (m, cv) = &*s2;
            m.lock().unwrap().eof = true;
            cv.notify_all();
        })?;
        Ok(Peer {
            client,
            user: opts.user,
            password: opts.password,
            listen_port: port,
            child: Some(child),
            stdin,
            shared,
            dir,
            started: Instant::now(),
        })
    }

    /// Sends one command object (a `cmd` field plus its arguments).
    pub fn send(&mut self, cmd: Value) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "driver stdin closed"))?;
        let mut line = serde_json::to_string(&cmd).unwrap();
        line.push('\n');
        stdin.write_all(line.as_bytes())?;
        stdin.flush()
    }

    fn cmd(&mut self, cmd: Value) {
        if let Err(e) = self.send(cmd.clone()) {
            eprintln!("[{}:{}] cannot send {cmd}: {e}", self.client.name(), self.user);
        }
    }

    pub fn search(&mut self, query: &str) {
        self.cmd(json!({"cmd": "search", "query": query}));
    }

    pub fn download(&mut self, user: &str, remote_path: &str) {
        self.cmd(json!({"cmd": "download", "user": user, "path": remote_path}));
    }

    pub fn browse(&mut self, user: &str) {
        self.cmd(json!({"cmd": "browse", "user": user}));
    }

    pub fn join_room(&mut self, room: &str) {
        self.cmd(json!({"cmd": "join_room", "room": room}));
    }

    pub fn say_room(&mut self, room: &str, text: &str) {
        self.cmd(json!({"cmd": "say_room", "room": room, "text": text}));
    }

    pub fn private_message(&mut self, user: &str, text: &str) {
        self.cmd(json!({"cmd": "private_message", "user": user, "text": text}));
    }

    pub fn quit(&mut self) {
        self.cmd(json!({"cmd": "quit"}));
    }

    /// Waits up to `timeout` for an event named `kind` (any, if `kind` is "") for which
    /// `pred` holds, looking at every event received since the start. None on timeout or
    /// when the driver has exited without producing one.
    pub fn wait_event(&self, kind: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        self.wait_event_from(0, kind, pred, timeout)
    }

    /// Like [`Peer::wait_event`] but only events with index ≥ `from` (see [`Peer::mark`]).
    pub fn wait_event_from(
        &self,
        from: usize,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap();
        let mut seen = from;
        loop {
            while seen < g.events.len() {
                let e = &g.events[seen];
                seen += 1;
                if (kind.is_empty() || e["event"] == kind) && pred(e) {
                    return Some(e.clone());
                }
            }
            let now = Instant::now();
            if g.eof || now >= deadline {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Number of events so far (for [`Peer::wait_event_from`]).
    pub fn mark(&self) -> usize {
        self.shared.0.lock().unwrap().events.len()
    }

    /// Waits for `logged_in`; Err with the `login_failed` event (or a timeout / exit note
    /// and the tail of the driver's stderr) otherwise.
    pub fn wait_logged_in(&self, timeout: Duration) -> Result<Value, String> {
        match self.wait_event("", |e| e["event"] == "logged_in" || e["event"] == "login_failed", timeout) {
            Some(e) if e["event"] == "logged_in" => Ok(e),
            Some(e) => Err(format!("login failed: {e}")),
            None => Err(format!(
                "{}:{} did not log in within {timeout:?}; stderr tail:\n{}",
                self.client.name(),
                self.user,
                self.stderr_tail(40)
            )),
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.shared.0.lock().unwrap().events.clone()
    }

    /// Events named `kind` so far.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == kind).collect()
    }

    /// The driver's stderr (client logs), lossy.
    pub fn stderr(&self) -> String {
        std::fs::read(self.dir.path().join("stderr.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the driver's stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn share_dir(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    pub fn download_dir(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }

    /// Time since spawn.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// True while the driver process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends `quit`, waits up to `timeout` for the process to exit, then kills it.
    pub fn stop(&mut self, timeout: Duration) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = self.send(json!({"cmd": "quit"}));
                self.stdin = None; // EOF also means quit
                let deadline = Instant::now() + timeout;
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(1500));
    }
}
