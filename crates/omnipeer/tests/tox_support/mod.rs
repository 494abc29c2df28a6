//! Test support for the Tox interop tests: the REAL c-toxcore 0.2.18 (Debian
//! `libtoxcore-dev`, `toxcore-utils`) as a small headless bot ([`toxbot.c`](toxbot.c),
//! compiled once per test process into `CARGO_TARGET_TMPDIR` with `cc` + `pkg-config
//! toxcore`) and `tox-bootstrapd`, on fixed free UDP ports of 127.0.0.1 with temp dirs;
//! their stdout lines can be waited for; processes are killed on drop.
//!
//! Use from an integration test with `mod tox_support;`:
//! ```ignore
//! if !tox_support::require("my_test") { return; }
//! let bsd = Bootstrapd::start(&[]);
//! let a = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()));
//! let id = a.tox_id();
//! let b = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).friend_request(&id).message("hi").exit_on_echo());
//! assert_eq!(b.wait_exit(T), Some(0), "{}", b.log());
//! ```
//! `OMNIPEER_TOX_VERBOSE=1` turns on c-toxcore's log (bot stderr, in its temp dir);
//! `OMNIPEER_KEEP_TMP=1` keeps the temp dirs.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The binary under test (`omnipeer`).
pub const BIN: &str = env!("CARGO_BIN_EXE_omnipeer");

/// The progress states `tox send` prints, in order (docs/protocols/tox.md#progress).
pub const STATES: [&str; 6] = [
    "AwaitingDHTKey",
    "AcquiringIPAddress",
    "AcquiringCookie",
    "AwaitingHandshake",
    "AwaitingSessionPacket",
    "Connected",
];

/// Source of the bot.
pub fn toxbot_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tox_support/toxbot.c")
}

/// What is missing for the interop tests (compiler, toxcore headers, tox-bootstrapd).
pub fn missing() -> Vec<&'static str> {
    let mut m = Vec::new();
    let ok = |cmd: &str, args: &[&str]| {
        Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if !ok("cc", &["--version"]) {
        m.push("gcc");
    }
    if !ok("pkg-config", &["--exists", "toxcore"]) {
        m.push("libtoxcore-dev (pkg-config toxcore)");
    }
    if !ok("sh", &["-c", "command -v tox-bootstrapd"]) {
        m.push("toxcore-utils (tox-bootstrapd)");
    }
    m
}

/// True when everything is installed, else prints why `test` is skipped.
pub fn require(test: &str) -> bool {
    let m = missing();
    if m.is_empty() {
        return true;
    }
    eprintln!("skipping {test}: {} not installed (run scripts/install-test-deps.sh as root)", m.join(", "));
    false
}

/// Compiles toxbot.c once per test process; returns the binary's path. Panics with the
/// compiler's output when it fails.
pub fn toxbot() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("toxbot");
        // Build to a private name, then rename: test binaries may compile concurrently.
        let tmp = dir.join(format!("toxbot.{}.tmp", std::process::id()));
        let flags =
            Command::new("pkg-config").args(["--cflags", "--libs", "toxcore"]).output().expect("pkg-config runs");
        assert!(flags.status.success(), "pkg-config toxcore failed: {}", String::from_utf8_lossy(&flags.stderr));
        let flags = String::from_utf8_lossy(&flags.stdout).to_string();
        let o = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&tmp)
            .arg(toxbot_source())
            .args(flags.split_whitespace())
            .output()
            .expect("cc runs");
        assert!(o.status.success(), "compiling toxbot.c failed:\n{}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

/// The prefix holding c-toxcore 0.2.20 (the NGC bot's library), if unpacked:
/// `OMNIPEER_TOXCORE_NGC`, else /opt/toxcore-0.2.20 (`scripts/install-test-deps.sh`).
pub fn ngc_prefix() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var("OMNIPEER_TOXCORE_NGC").unwrap_or_else(|_| "/opt/toxcore-0.2.20".into()));
    p.join("usr/lib/x86_64-linux-gnu/libtoxcore.so.2").exists().then_some(p)
}

/// [`require`] and c-toxcore 0.2.20 for the NGC bot, else prints why `test` is skipped.
pub fn require_ngc(test: &str) -> bool {
    if ngc_prefix().is_none() {
        eprintln!("SKIP {test}: c-toxcore 0.2.20 not unpacked (run scripts/install-test-deps.sh)");
        return false;
    }
    require(test)
}

/// Compiles toxbot_ngc.c against the 0.2.20 prefix once per test process (rpath to the
/// prefix, so the system's 0.2.18 is not picked up); returns the binary's path.
pub fn toxbot_ngc() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let pre = ngc_prefix().expect("prefix checked by require_ngc");
        let lib = pre.join("usr/lib/x86_64-linux-gnu");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("toxbot_ngc");
        // Build to a private name, then rename: test binaries may compile concurrently.
        let tmp = dir.join(format!("toxbot_ngc.{}.tmp", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tox_support/toxbot_ngc.c");
        let o = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg(format!("-I{}", pre.join("usr/include").display()))
            .arg(format!("-L{}", lib.display()))
            .arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()))
            .arg("-ltoxcore")
            .output()
            .expect("cc runs");
        assert!(o.status.success(), "compiling toxbot_ngc.c failed:\n{}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

/// Starts the NGC bot (c-toxcore 0.2.20) named `name` with raw toxbot_ngc `args`.
pub fn ngc_bot(name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(toxbot_ngc());
    cmd.arg("-p").arg(free_udp_port().to_string()).arg("-n").arg(name).args(args);
    if std::env::var_os("OMNIPEER_TOX_VERBOSE").is_some() {
        cmd.arg("-v");
    }
    let dir = tempfile::Builder::new().prefix("toxbot-ngc-").tempdir().unwrap();
    Proc::spawn(&format!("toxbot_ngc:{name}"), cmd, dir)
}

/// A bot's public key: the first 64 hex digits of the Tox ID it printed (waiting up to `t`).
pub fn bot_pk(p: &Proc, t: Duration) -> String {
    p.expect_line("TOXID ", t)[..64].to_owned()
}

/// Runs `omnipeer ARGS` (the binary under test) with a fresh data dir, its log level from
/// `OMNIPEER_TOX_LOG` (default info).
pub fn omni(name: &str, args: &[&str]) -> Proc {
    let dir = tempfile::Builder::new().prefix("omni-tox-").tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .env("RUST_LOG", std::env::var("OMNIPEER_TOX_LOG").unwrap_or_else(|_| "info".into()));
    Proc::spawn(name, cmd, dir)
}

/// Runs `omnipeer tox send` from `profile` off `bootstrap`: message `message` to Tox ID
/// `to`, with `extra` flags (`--listen`, `--timeout`, `--linger`…).
pub fn tox_send(profile: &Path, bootstrap: &str, to: &str, message: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["tox", "send", "--profile", profile.to_str().unwrap(), "--bootstrap", bootstrap];
    args.extend(["--to", to, "--message", message]);
    args.extend(extra);
    omni("omnipeer-tox-send", &args)
}

/// The Tox ID (76 hex) `tox echo` prints first.
pub fn tox_id_line(p: &Proc) -> String {
    p.wait_for(Duration::from_secs(30), |l| (l.len() == 76).then(|| l.to_owned()))
        .unwrap_or_else(|| panic!("no Tox ID\n{}", p.log()))
}

/// Starts `omnipeer tox echo` on `profile` off `bootstrap` with `extra` flags, on a free
/// port; returns it and its Tox ID.
pub fn echo(profile: &Path, bootstrap: &str, extra: &[&str]) -> (Proc, String) {
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let mut args = vec!["tox", "echo", "--profile", profile.to_str().unwrap(), "--bootstrap", bootstrap];
    args.extend(["--listen", &listen]);
    args.extend(extra);
    let p = omni("omnipeer-tox-echo", &args);
    let id = tox_id_line(&p);
    (p, id)
}

/// Upper-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02X}")).collect()
}

/// A fixed identity from `seed`: (secret key hex, public key hex).
pub fn keys(seed: u8) -> (String, String) {
    let sk = [seed; 32];
    (hex(&sk), hex(&omnipeer_tox::crypto::SecretKey(sk).public_key().0))
}

/// Lines of `p` equal to `line`.
pub fn count(p: &Proc, line: &str) -> usize {
    p.lines().iter().filter(|l| *l == line).count()
}

/// Waits up to `t` until `p` printed `line`; else panics with `why()`.
pub fn expect_or(p: &Proc, line: &str, t: Duration, why: impl Fn() -> String) {
    if p.wait_for(t, |l| (l == line).then_some(())).is_none() {
        panic!("no {line:?}\n{}", why());
    }
}

/// Waits up to `t` until `p` printed `line`; else panics with every log of `logs`.
pub fn expect(p: &Proc, line: &str, t: Duration, logs: &[&Proc]) {
    expect_or(p, line, t, || logs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n"))
}

/// Waits up to `t` for `f`, polling; on timeout panics with `why()`.
pub fn wait<V>(what: &str, t: Duration, mut f: impl FnMut() -> Option<V>, why: impl Fn() -> String) -> V {
    let end = Instant::now() + t;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}\n{}", why());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A UDP port free on 0.0.0.0 (where c-toxcore binds); never the same twice per process.
/// Taken from a range below the usual ephemeral ports to avoid clashes with clients.
pub fn free_udp_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let seed = (std::process::id() as u64).wrapping_mul(2654435761) ^ Instant::now().elapsed().as_nanos() as u64;
    let mut x = seed | 1;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12000) as u16;
        if UdpSocket::bind(("0.0.0.0", port)).is_err() || std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
            continue;
        }
        let mut g = GIVEN.lock().unwrap();
        if g.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Stdout lines of a child, collected by a thread.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    closed: bool,
}

/// A child process whose stdout lines are kept; killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    lines: Arc<(Mutex<Lines>, Condvar)>,
    dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` (stdout captured, stderr to `dir`/stderr.log).
    pub fn spawn(name: &str, mut cmd: Command, dir: tempfile::TempDir) -> Proc {
        let err = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let lines: Arc<(Mutex<Lines>, Condvar)> = Arc::default();
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let (m, c) = &*l2;
                m.lock().unwrap().lines.push(l);
                c.notify_all();
            }
            let (m, c) = &*l2;
            m.lock().unwrap().closed = true;
            c.notify_all();
        });
        Proc { name: name.into(), child, lines, dir }
    }

    /// The first line (ever printed) for which `f` returns `Some`, waiting up to `t`.
    pub fn wait_for<T>(&self, t: Duration, mut f: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let end = Instant::now() + t;
        let (m, c) = &*self.lines;
        let mut g = m.lock().unwrap();
        let mut seen = 0;
        loop {
            while seen < g.lines.len() {
                if let Some(v) = f(&g.lines[seen]) {
                    return Some(v);
                }
                seen += 1;
            }
            let left = end.saturating_duration_since(Instant::now());
            if g.closed || left.is_zero() {
                return None;
            }
            g = c.wait_timeout(g, left).unwrap().0;
        }
    }

    /// The rest of the first line starting with `prefix`, waiting up to `t`.
    pub fn wait_line(&self, prefix: &str, t: Duration) -> Option<String> {
        self.wait_for(t, |l| l.strip_prefix(prefix).map(|r| r.trim().to_owned()))
    }

    /// Like [`wait_line`](Self::wait_line) but panics with the log on timeout.
    pub fn expect_line(&self, prefix: &str, t: Duration) -> String {
        self.wait_line(prefix, t).unwrap_or_else(|| panic!("{} never printed {prefix:?}\n{}", self.name, self.log()))
    }

    /// All stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().lines.clone()
    }

    /// Stdout so far and the tail of stderr, for failure messages.
    pub fn log(&self) -> String {
        let err = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "--- {} stdout:\n{}\n--- {} stderr tail:\n{}",
            self.name,
            self.lines().join("\n"),
            self.name,
            tail.join("\n")
        )
    }

    /// Waits up to `t` for the process to exit; its exit code (None: still running or
    /// killed by a signal).
    pub fn wait_exit(&mut self, t: Duration) -> Option<i32> {
        let end = Instant::now() + t;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                // let the reader thread take the last lines
                self.wait_for(Duration::from_secs(2), |_| None::<()>);
                return s.code();
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("OMNIPEER_KEEP_TMP").is_some() {
            let d = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("{} dir kept: {}", self.name, d.keep().display());
        }
    }
}

/// How to start a [`Bot`].
#[derive(Clone, Debug, Default)]
pub struct BotOptions {
    pub port: Option<u16>,
    pub bootstrap: Vec<String>,
    pub secret_key: Option<String>,
    pub friends: Vec<String>,
    pub friend_request: Option<String>,
    pub request_message: Option<String>,
    pub message: Option<String>,
    pub count: u32,
    pub exit_on_echo: bool,
    pub timeout_secs: u32,
    pub send_file: Option<PathBuf>,
    pub recv_dir: Option<PathBuf>,
    pub exit_on_file: bool,
    pub extra: Vec<String>,
}

impl BotOptions {
    pub fn new() -> Self {
        BotOptions { count: 1, timeout_secs: 120, ..Default::default() }
    }
    /// Fixed UDP port (default: a free one).
    pub fn port(mut self, p: u16) -> Self {
        self.port = Some(p);
        self
    }
    /// Add a bootstrap node `HOST:PORT:DHTKEYHEX`.
    pub fn bootstrap(mut self, spec: &str) -> Self {
        self.bootstrap.push(spec.into());
        self
    }
    /// Fixed long-term secret key (64 hex).
    pub fn secret_key(mut self, sk_hex: &str) -> Self {
        self.secret_key = Some(sk_hex.into());
        self
    }
    /// Pre-arranged friend by long-term public key (64 hex), no request.
    pub fn friend(mut self, pk_hex: &str) -> Self {
        self.friends.push(pk_hex.into());
        self
    }
    /// Send a friend request to this Tox ID (76 hex).
    pub fn friend_request(mut self, tox_id: &str) -> Self {
        self.friend_request = Some(tox_id.into());
        self
    }
    pub fn request_message(mut self, m: &str) -> Self {
        self.request_message = Some(m.into());
        self
    }
    /// Send this message to friend 0 once connected.
    pub fn message(mut self, m: &str) -> Self {
        self.message = Some(m.into());
        self
    }
    /// Send it `n` times as "TEXT #1".."TEXT #n" (echoes must come back in order).
    pub fn count(mut self, n: u32) -> Self {
        self.count = n;
        self
    }
    /// Exit 0 once all echoes came back (1 on timeout).
    pub fn exit_on_echo(mut self) -> Self {
        self.exit_on_echo = true;
        self
    }
    pub fn timeout_secs(mut self, s: u32) -> Self {
        self.timeout_secs = s;
        self
    }
    /// Send this file to friend 0 once connected (again after each reconnection).
    pub fn send_file(mut self, p: &Path) -> Self {
        self.send_file = Some(p.into());
        self
    }
    /// Accept files into this directory (resuming `<file id>.part` files).
    pub fn recv_dir(mut self, p: &Path) -> Self {
        self.recv_dir = Some(p.into());
        self
    }
    /// More raw toxbot arguments (`-W FILE`, `-L FILE`, `-P PASS`, `-n NAME`).
    pub fn args(mut self, a: &[&str]) -> Self {
        self.extra.extend(a.iter().map(|s| s.to_string()));
        self
    }
    /// Exit 0 once the file was sent or one was received.
    /// UDP off (`udp_enabled = false`): the bot reaches anyone only through TCP relays.
    pub fn no_udp(mut self) -> Self {
        self.extra.push("-U".into());
        self
    }

    /// A TCP relay `HOST:PORT:KEY` (tox_add_tcp_relay).
    pub fn tcp_relay(mut self, spec: &str) -> Self {
        self.extra.push("-T".into());
        self.extra.push(spec.into());
        self
    }

    pub fn exit_on_file(mut self) -> Self {
        self.exit_on_file = true;
        self
    }
}

/// A running c-toxcore bot.
pub struct Bot {
    pub proc: Proc,
    pub port: u16,
}

impl Bot {
    pub fn start(o: BotOptions) -> Bot {
        let port = o.port.unwrap_or_else(free_udp_port);
        let mut cmd = Command::new(toxbot());
        cmd.arg("-p").arg(port.to_string()).arg("-t").arg(o.timeout_secs.to_string());
        for b in &o.bootstrap {
            cmd.arg("-b").arg(b);
        }
        if let Some(s) = &o.secret_key {
            cmd.arg("-s").arg(s);
        }
        for f in &o.friends {
            cmd.arg("-F").arg(f);
        }
        if let Some(f) = &o.friend_request {
            cmd.arg("-f").arg(f);
        }
        if let Some(r) = &o.request_message {
            cmd.arg("-r").arg(r);
        }
        if let Some(m) = &o.message {
            cmd.arg("-m").arg(m).arg("-c").arg(o.count.to_string());
        }
        if o.exit_on_echo {
            cmd.arg("-x");
        }
        if let Some(p) = &o.send_file {
            cmd.arg("-S").arg(p);
        }
        if let Some(p) = &o.recv_dir {
            cmd.arg("-R").arg(p);
        }
        if o.exit_on_file {
            cmd.arg("-q");
        }
        cmd.args(&o.extra);
        if std::env::var_os("OMNIPEER_TOX_VERBOSE").is_some() {
            cmd.arg("-v");
        }
        let dir = tempfile::Builder::new().prefix("toxbot-").tempdir().unwrap();
        let proc = Proc::spawn(&format!("toxbot:{port}"), cmd, dir);
        Bot { proc, port }
    }

    /// Its Tox ID (76 hex), printed at start.
    pub fn tox_id(&self) -> String {
        self.proc.expect_line("TOXID ", Duration::from_secs(10))
    }
    /// Its long-term public key (first 64 hex of the Tox ID).
    pub fn public_key(&self) -> String {
        self.tox_id()[..64].to_owned()
    }
    /// Its DHT key (64 hex).
    pub fn dht_key(&self) -> String {
        self.proc.expect_line("DHTKEY ", Duration::from_secs(10))
    }
    /// `127.0.0.1:PORT:DHTKEY` for other bots' `-b`.
    pub fn node_spec(&self) -> String {
        format!("127.0.0.1:{}:{}", self.port, self.dht_key())
    }
    /// Waits for a "SELF CONNECTION n" line with n ≠ 0; returns n.
    pub fn wait_self_connected(&self, t: Duration) -> Option<u32> {
        self.proc
            .wait_for(t, |l| l.strip_prefix("SELF CONNECTION ").and_then(|n| n.trim().parse().ok()).filter(|n| *n != 0))
    }
    /// Waits for "FRIEND <n> CONNECTION c" with c ≠ 0; returns c.
    pub fn wait_friend_connected(&self, n: u32, t: Duration) -> Option<u32> {
        let p = format!("FRIEND {n} CONNECTION ");
        self.proc.wait_for(t, |l| l.strip_prefix(&p).and_then(|c| c.trim().parse().ok()).filter(|c| *c != 0))
    }
    pub fn wait_exit(&mut self, t: Duration) -> Option<i32> {
        self.proc.wait_exit(t)
    }
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// A running tox-bootstrapd (UDP only, no LAN discovery, no TCP relay).
pub struct Bootstrapd {
    pub proc: Proc,
    pub port: u16,
    pub pk: String,
}

impl Bootstrapd {
    /// Starts one bootstrapping off `nodes` (`(port, dht key hex)` on 127.0.0.1).
    pub fn start(nodes: &[(u16, String)]) -> Bootstrapd {
        Self::start_inner(nodes, false)
    }

    /// … with its TCP relay on (`enable_tcp_relay`, `tcp_relay_ports = [port]`: the same
    /// port number as its UDP port).
    pub fn start_with_tcp_relay(nodes: &[(u16, String)]) -> Bootstrapd {
        Self::start_inner(nodes, true)
    }

    fn start_inner(nodes: &[(u16, String)], tcp: bool) -> Bootstrapd {
        let port = free_udp_port();
        let dir = tempfile::Builder::new().prefix("tox-bootstrapd-").tempdir().unwrap();
        let d = dir.path().display().to_string();
        let boot: Vec<String> = nodes
            .iter()
            .map(|(p, k)| format!("{{ address = \"127.0.0.1\"\n port = {p}\n public_key = \"{k}\" }}"))
            .collect();
        let conf = format!(
            "port = {port}\nkeys_file_path = \"{d}/keys\"\npid_file_path = \"{d}/tox-bootstrapd.pid\"\n\
             enable_ipv6 = false\nenable_ipv4_fallback = true\nenable_lan_discovery = false\n\
             enable_tcp_relay = {tcp}\ntcp_relay_ports = [{port}]\nenable_motd = true\n\
             motd = \"omnipeer test bootstrapd\"\nbootstrap_nodes = ({})\n",
            boot.join(",\n")
        );
        let cfg = dir.path().join("tox-bootstrapd.conf");
        std::fs::write(&cfg, conf).unwrap();
        let mut cmd = Command::new("tox-bootstrapd");
        cmd.arg(format!("--config={}", cfg.display())).arg("--foreground").arg("--log-backend=stdout");
        let proc = Proc::spawn(&format!("tox-bootstrapd:{port}"), cmd, dir);
        let pk = proc
            .wait_for(Duration::from_secs(10), |l| {
                l.find("Public Key: ").map(|i| l[i + 12..].split_whitespace().next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| panic!("tox-bootstrapd printed no key\n{}", proc.log()));
        Bootstrapd { proc, port, pk }
    }

    /// `127.0.0.1:PORT:DHTKEY`.
    pub fn node_spec(&self) -> String {
        format!("127.0.0.1:{}:{}", self.port, self.pk)
    }
}

/// A running `omnipeer tox bootstrap` (the binary under test; only in the omnipeer crate's
/// integration tests).
pub struct OmniBootstrap {
    pub proc: Proc,
    pub port: u16,
    pub pk: String,
}

impl OmniBootstrap {
    /// `omnipeer tox bootstrap --listen 127.0.0.1:PORT [extra…]` on a free port; waits for
    /// its DHT key on stdout.
    pub fn start(bin: &str, extra: &[&str]) -> OmniBootstrap {
        let port = free_udp_port();
        Self::start_on(bin, port, extra)
    }

    /// … with its TCP relay on the same port number (`--tcp 127.0.0.1:PORT`).
    pub fn start_with_tcp_relay(bin: &str) -> OmniBootstrap {
        let port = free_udp_port();
        Self::start_on(bin, port, &["--tcp", &format!("127.0.0.1:{port}")])
    }

    fn start_on(bin: &str, port: u16, extra: &[&str]) -> OmniBootstrap {
        let dir = tempfile::Builder::new().prefix("omni-tox-bootstrap-").tempdir().unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(["tox", "bootstrap", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", std::env::var("OMNIPEER_TOX_LOG").unwrap_or_else(|_| "info".into()));
        let proc = Proc::spawn(&format!("omnipeer-tox-bootstrap:{port}"), cmd, dir);
        let pk = proc
            .wait_for(Duration::from_secs(20), |l| {
                let l = l.trim();
                (l.len() == 64 && l.chars().all(|c| c.is_ascii_hexdigit())).then(|| l.to_owned())
            })
            .unwrap_or_else(|| panic!("omnipeer tox bootstrap printed no key\n{}", proc.log()));
        OmniBootstrap { proc, port, pk }
    }

    /// `127.0.0.1:PORT:DHTKEY`.
    pub fn node_spec(&self) -> String {
        format!("127.0.0.1:{}:{}", self.port, self.pk)
    }
}
