//! What several benchmarks share: a payload file, the plain TCP copy baseline, and letting
//! the file system settle between measurements.
// Each benchmark binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Buffer size for the baseline copy (the same the omnipeer data paths use).
pub const BUF: usize = 256 * 1024;

/// An incompressible payload (xorshift) of `size` bytes.
pub fn make_payload(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(BUF, std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; BUF];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(BUF as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Let the file system finish what the previous run left (freeing a deleted 1 GiB file,
/// writeback) before the next measurement starts.
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

/// The baseline: read the file, write it to a socket; the other end reads the socket and
/// writes a file. No protocol at all. Returns the seconds it took.
pub fn plain_tcp_copy(src: &Path, dst: &Path) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let dst = dst.to_path_buf();
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut out = std::fs::File::create(&dst)?;
        let mut buf = vec![0u8; BUF];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
    });
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut file = std::fs::File::open(src)?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n])?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    receiver.join().expect("receiver thread")?;
    Ok(started.elapsed().as_secs_f64())
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th percentile of sorted durations.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

/// One line of a process's /proc status (`VmRSS`, `RssAnon`, `RssFile`...), KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':')).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Start `omnipeer ARGS` (built next to this benchmark) and wait for `listening on ADDR`.
pub fn spawn_server(data_dir: &Path, args: &[&str]) -> anyhow::Result<(std::process::Child, std::net::SocketAddr)> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?.with_file_name("omnipeer");
    anyhow::ensure!(exe.exists(), "{} is missing: cargo build --release -p omnipeer", exe.display());
    let mut child = std::process::Command::new(&exe)
        .args(["--log-level", "warn", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("omnipeer exited"))??;
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, addr))
}

/// A free TCP port of 127.0.0.1 (for a config that needs a fixed one).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Start the release `omnipeer up` next to this benchmark in `data` (with the
/// config.toml there) and return it once both its clients are logged in; the rest of its
/// stderr is drained in the background.
pub fn node_up(data: &Path) -> anyhow::Result<std::process::Child> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?.with_file_name("omnipeer");
    anyhow::ensure!(exe.exists(), "{} is missing: cargo build --release -p omnipeer", exe.display());
    let mut child = Command::new(&exe)
        .args(["--log-level", "warn", "--data-dir"])
        .arg(data)
        .arg("up")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut nmdc, mut slsk) = (false, false);
    while !(nmdc && slsk) {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("omnipeer exited before its clients logged in"))??;
        // Today's wording ("the hub: logged in to …"), and the one before the sessions
        // (issue 13), so a binary of an older commit can be measured too.
        nmdc |= line.starts_with("the hub: logged in") || line.starts_with("nmdc client: logged in");
        slsk |= line.starts_with("the Soulseek server: logged in") || line.starts_with("soulseek client: logged in");
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(child)
}

/// Connect to `addr` from one of the loopback addresses 127.1.0.1, 127.1.0.2, ..., `per_address`
/// connections (in the order of calls) from each: the servers take only so many users (and
/// new accounts) from one address (`omnipeer_nmdc::hub::MAX_USERS_PER_IP`,
/// `omnipeer_slsk::central::MAX_REGISTRATIONS_PER_IP_PER_HOUR`).
pub async fn connect_spread(addr: std::net::SocketAddr, per_address: usize) -> anyhow::Result<tokio::net::TcpStream> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let a = N.fetch_add(1, Ordering::Relaxed) / per_address.max(1);
    let local = std::net::Ipv4Addr::new(127, 1 + (a / 62_500) as u8, (a / 250 % 250) as u8, 1 + (a % 250) as u8);
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind((local, 0).into())?;
    Ok(sock.connect(addr).await?)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces), counted from 3: utime is 14,
    // stime 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(14) + ticks(15)) as f64 / clock_ticks() as f64
}

fn clock_ticks() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Peak resident memory of a process (VmHWM), KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// This process's soft limit on open files (`ulimit -n`); the servers it starts inherit it.
pub fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Max open files")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        .unwrap_or(1024)
}

/// The kernel's count of connections dropped at a listen socket (TcpExt `ListenDrops`,
/// which includes `ListenOverflows`: a full accept queue), for the whole machine.
pub fn listen_drops() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/net/netstat") else { return 0 };
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines[..] else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| *n == "ListenDrops")
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

/// Flat Tiger (the `tiger` crate) over a whole file, read 1 MiB at a time: the baseline a
/// tree hash is measured against.
pub fn flat_tiger(path: &std::path::Path) -> anyhow::Result<[u8; 24]> {
    use std::io::Read;
    use tiger::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = tiger::Tiger::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}
