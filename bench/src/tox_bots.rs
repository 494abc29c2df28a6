//! What the Tox benchmarks (tox-connect, tox-files) share: c-toxcore peers as child
//! processes whose output lines are waited for, the echo bot built from
//! tests/tox_support/toxbot.c, and a loopback `tox-bootstrapd`.
// Each benchmark binary includes this module and may use only a part of it.
#![allow(dead_code)]

use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child whose stdout lines arrive on a channel; killed on drop.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Proc> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), l)).is_err() {
                    return;
                }
            }
        });
        Ok(Proc { child, lines: rx, seen: Vec::new() })
    }

    /// The first line satisfying `f` (and when it was read), waiting up to `t`.
    pub fn wait<T>(&mut self, t: Duration, f: impl Fn(&str) -> Option<T>) -> anyhow::Result<(Instant, T)> {
        for (at, l) in &self.seen {
            if let Some(v) = f(l) {
                return Ok((*at, v));
            }
        }
        let end = Instant::now() + t;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let (at, l) = self.lines.recv_timeout(left).map_err(|_| anyhow!("timed out waiting for a line"))?;
            self.seen.push((at, l.clone()));
            if let Some(v) = f(&l) {
                return Ok((at, v));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port free on 127.0.0.1 now.
pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Compile the c-toxcore echo bot (tests/tox_support/toxbot.c) into `dir`.
pub fn build_bot(dir: &Path) -> anyhow::Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/omnipeer/tests/tox_support/toxbot.c");
    let flags = Command::new("pkg-config").args(["--cflags", "--libs", "toxcore"]).output()?;
    if !flags.status.success() {
        bail!("pkg-config toxcore failed: install libtoxcore-dev (scripts/install-test-deps.sh)");
    }
    let out = dir.join("toxbot");
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .args(String::from_utf8_lossy(&flags.stdout).split_whitespace())
        .status()?;
    if !st.success() {
        bail!("compiling toxbot.c failed");
    }
    Ok(out)
}

/// Start a `tox-bootstrapd` on loopback with its files in `dir`; returns it and its node
/// spec (`127.0.0.1:PORT:KEY`).
pub fn start_bootstrapd(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let port = free_udp_port()?;
    let d = dir.display();
    let conf = format!(
        "port = {port}\nkeys_file_path = \"{d}/keys\"\npid_file_path = \"{d}/bsd.pid\"\nenable_ipv6 = false\n\
         enable_ipv4_fallback = true\nenable_lan_discovery = false\nenable_tcp_relay = false\nenable_motd = false\n\
         bootstrap_nodes = ()\n"
    );
    let cfg = dir.join("bsd.conf");
    std::fs::write(&cfg, conf)?;
    let mut cmd = Command::new("tox-bootstrapd");
    cmd.arg(format!("--config={}", cfg.display())).arg("--foreground").arg("--log-backend=stdout");
    let mut p = Proc::spawn(cmd).context("tox-bootstrapd (install toxcore-utils)")?;
    let (_, key) = p.wait(Duration::from_secs(10), |l| {
        l.find("Public Key: ").map(|i| l[i + 12..].split_whitespace().next().unwrap_or("").to_owned())
    })?;
    Ok((p, format!("127.0.0.1:{port}:{key}")))
}

/// Start the echo bot `bin` on a free port, bootstrapping from `spec`, giving up after
/// `timeout_secs` (its `-t`), with `extra` options.
pub fn bot(bin: &Path, spec: &str, timeout_secs: u32, extra: &[&str]) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(free_udp_port()?.to_string())
        .arg("-b")
        .arg(spec)
        .args(["-t", &timeout_secs.to_string()])
        .args(extra);
    Proc::spawn(cmd)
}
