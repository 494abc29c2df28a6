//! Tox file transfer throughput on loopback UDP: a file (256 MiB by default)
//! omnipeer → c-toxcore and c-toxcore → omnipeer against c-toxcore → c-toxcore, measured
//! in the same run, omnipeer → omnipeer (our stack at both ends), and a plain TCP copy of the same file on loopback as the ceiling.
//!
//! Each Tox round starts its own network (one `tox-bootstrapd`) and two peers: the
//! receiver accepts the friend request, then the file offer; the time is from the accept
//! to the last byte (receiver side: first offer → file complete; omnipeer sender: accept →
//! the friend's acknowledgement of the last packet). Peers: c-toxcore 0.2.18 bots
//! (tests/tox_support/toxbot.c, `-S` / `-R`), omnipeer's Tox client in process
//! (`omnipeer tox send-file`'s and `tox echo --incoming`'s code). Files are checked with
//! SHA-256 after each round. docs/protocols/tox.md#congestion-control says what bounds it.
//!
//! One run (release build, 256 MiB, 2-core machine): c-toxcore → c-toxcore 17.2 MiB/s,
//! omnipeer → c-toxcore 38.8 (2.26×), c-toxcore → omnipeer 18.8 (1.09×), omnipeer →
//! omnipeer 89.6 (5.20×; 5.1 before the client asked for 2 MiB UDP socket buffers), TCP
//! copy 793 MiB/s (Tox reaches 0.11 of it at best: every 1.4 KB packet is sealed, acked
//! and windowed, and c-toxcore paces whatever it sends or receives).
//!
//! Needs gcc, pkg-config, libtoxcore-dev and toxcore-utils (scripts/install-test-deps.sh).
//! Usage: `cargo run --release -p omnipeer-bench --bin tox-files -- [MIB] [ROUNDS]`
//! (defaults 256 and 1).

#[path = "../tox_bots.rs"]
mod tox_bots;

use anyhow::{anyhow, bail, Context};
use omnipeer_node::tox::client::{load_profile, onion_rendezvous, run_send_file, SendFileOptions, ToxClient};
use omnipeer_node::tox::files::{Received, Receiver};
use omnipeer_tox::tox::ToxEvent;
use omnipeer_tox::toxid::ToxId;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tox_bots::{bot, build_bot, start_bootstrapd};

/// The bots' own give-up time (toxbot's `-t`), in seconds.
const BOT_TIMEOUT: u32 = 600;
const LIMIT: Duration = Duration::from_secs(600);

fn sha(p: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().to_vec())
}

fn make_file(p: &Path, size: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut left = size;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let n = left.min(8);
        f.write_all(&b[..n])?;
        left -= n;
    }
    f.flush()?;
    Ok(())
}

/// c-toxcore → c-toxcore.
fn c_to_c(bin: &Path, dir: &Path, file: &Path) -> anyhow::Result<Duration> {
    let (_bsd, spec) = start_bootstrapd(dir)?;
    let inbox = dir.join("c-in");
    std::fs::create_dir_all(&inbox)?;
    let mut a = bot(bin, &spec, BOT_TIMEOUT, &["-R", inbox.to_str().unwrap_or_default(), "-q"])?;
    let (_, id) = a.wait(Duration::from_secs(10), |l| l.strip_prefix("TOXID ").map(str::to_owned))?;
    let _b = bot(bin, &spec, BOT_TIMEOUT, &["-f", &id, "-S", file.to_str().unwrap_or_default()])?;
    let (t0, _) = a.wait(LIMIT, |l| l.starts_with("FILE_RECV ").then_some(()))?;
    let (t1, path) =
        a.wait(LIMIT, |l| l.strip_prefix("FILE_DONE ").and_then(|r| r.split_once(' ')).map(|r| r.1.to_owned()))?;
    if sha(Path::new(&path))? != sha(file)? {
        bail!("c-toxcore -> c-toxcore: file differs");
    }
    Ok(t1 - t0)
}

/// omnipeer → c-toxcore.
fn omni_to_c(bin: &Path, dir: &Path, file: &Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<Duration> {
    let (_bsd, spec) = start_bootstrapd(dir)?;
    let inbox = dir.join("c-in");
    std::fs::create_dir_all(&inbox)?;
    let mut a = bot(bin, &spec, BOT_TIMEOUT, &["-R", inbox.to_str().unwrap_or_default(), "-q"])?;
    let (_, id) = a.wait(Duration::from_secs(10), |l| l.strip_prefix("TOXID ").map(str::to_owned))?;
    let nodes = omnipeer_node::tox::parse_node_specs(&spec)?;
    let to: ToxId = id.parse().map_err(|e| anyhow!("{e}"))?;
    let profile = dir.join("omni-send.tox");
    let o = SendFileOptions {
        profile: &profile,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        bootstrap: &nodes,
        to,
        file,
        timeout: LIMIT,
    };
    let report = rt.block_on(run_send_file(o, onion_rendezvous))?;
    let (_, path) =
        a.wait(LIMIT, |l| l.strip_prefix("FILE_DONE ").and_then(|r| r.split_once(' ')).map(|r| r.1.to_owned()))?;
    if sha(Path::new(&path))? != sha(file)? {
        bail!("omnipeer -> c-toxcore: file differs");
    }
    Ok(report.transfer)
}

/// c-toxcore → omnipeer.
fn c_to_omni(bin: &Path, dir: &Path, file: &Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<Duration> {
    let (_bsd, spec) = start_bootstrapd(dir)?;
    let nodes = omnipeer_node::tox::parse_node_specs(&spec)?;
    let inbox = dir.join("omni-in");
    let profile = dir.join("omni-recv.tox");
    rt.block_on(async {
        let p = load_profile(&profile)?;
        let mut c = ToxClient::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &p, onion_rendezvous(&p)).await?;
        c.bootstrap(&nodes);
        let mut recv = Receiver::new(&inbox)?;
        let _b = bot(bin, &spec, BOT_TIMEOUT, &["-f", &p.tox_id().to_hex(), "-S", file.to_str().unwrap_or_default()])?;
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut t0 = None;
        loop {
            let ev = c.next_event(Some(deadline)).await.ok_or_else(|| anyhow!("c-toxcore -> omnipeer: timed out"))?;
            match ev {
                ToxEvent::FriendRequest { from, .. } => c.tox().add_friend(Instant::now(), from)?,
                ToxEvent::File(fe) => match recv.handle(c.tox(), &fe) {
                    Some(Received::Accepted { .. }) => t0 = Some(Instant::now()),
                    Some(Received::Complete { path, .. }) => {
                        let took = t0.map(|t| t.elapsed()).unwrap_or_default();
                        c.shutdown().await;
                        if sha(&path)? != sha(file)? {
                            bail!("c-toxcore -> omnipeer: file differs");
                        }
                        return Ok(took);
                    }
                    Some(other) => bail!("c-toxcore -> omnipeer: {other:?}"),
                    None => {}
                },
                _ => {}
            }
        }
    })
}

/// omnipeer → omnipeer: both ends ours, so neither is held to c-toxcore's pace. The
/// receiver is `omnipeer tox echo --incoming` in a process of its own (`OMNIPEER_EXE`, or
/// `omnipeer` next to this benchmark), as a friend on another machine would be: in one
/// process the sender's bursts and the receiver's socket reads share a runtime.
fn omni_to_omni(dir: &Path, file: &Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<Duration> {
    use std::io::BufRead;
    let (_bsd, spec) = start_bootstrapd(dir)?;
    let nodes = omnipeer_node::tox::parse_node_specs(&spec)?;
    let exe = match std::env::var_os("OMNIPEER_EXE") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("omnipeer"),
    };
    anyhow::ensure!(exe.exists(), "{} is missing: cargo build --release -p omnipeer", exe.display());
    let recv_profile = dir.join("omni-recv.tox");
    let to: ToxId = load_profile(&recv_profile)?.tox_id();
    let inbox = dir.join("omni-in");
    let mut child = std::process::Command::new(&exe)
        .args(["--log-level", "warn", "tox", "echo", "--profile"])
        .arg(&recv_profile)
        .args(["--bootstrap", &spec, "--listen", "127.0.0.1:0", "--incoming"])
        .arg(&inbox)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("received ") {
                let _ = tx.send(rest.split(" (").next().unwrap_or_default().to_owned());
            }
        }
    });
    let send_profile = dir.join("omni-send.tox");
    let o = SendFileOptions {
        profile: &send_profile,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        bootstrap: &nodes,
        to,
        file,
        timeout: LIMIT,
    };
    let report = rt.block_on(run_send_file(o, onion_rendezvous));
    let path = report.as_ref().ok().and_then(|_| rx.recv_timeout(Duration::from_secs(60)).ok());
    let _ = child.kill();
    let _ = child.wait();
    let report = report?;
    let path = path.ok_or_else(|| anyhow!("omnipeer -> omnipeer: tox echo never said it had the file"))?;
    if sha(Path::new(&path))? != sha(file)? {
        bail!("omnipeer -> omnipeer: file differs");
    }
    Ok(report.transfer)
}

/// A plain TCP copy of the file over loopback (read from disk, written to disk).
fn tcp_copy(dir: &Path, file: &Path) -> anyhow::Result<Duration> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let out = dir.join("tcp-copy");
    let out2 = out.clone();
    let t0 = Instant::now();
    let h = std::thread::spawn(move || -> anyhow::Result<()> {
        let (mut s, _) = l.accept()?;
        let mut f = std::fs::File::create(&out2)?;
        std::io::copy(&mut s, &mut f)?;
        Ok(())
    });
    {
        let mut s = std::net::TcpStream::connect(addr)?;
        let mut f = std::fs::File::open(file)?;
        std::io::copy(&mut f, &mut s)?;
    }
    h.join().map_err(|_| anyhow!("tcp receiver panicked"))??;
    let took = t0.elapsed();
    if sha(&out)? != sha(file)? {
        bail!("tcp copy differs");
    }
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let mib: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let rounds: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let dir = tempfile::tempdir()?;
    let bin = build_bot(dir.path())?;
    let file = dir.path().join("payload.bin");
    make_file(&file, mib << 20).context("writing the payload")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mbs = |d: Duration| (mib as f64) / d.as_secs_f64();
    let (mut cc, mut oc, mut co, mut oo, mut tcp) = (vec![], vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let t = tcp_copy(dir.path(), &file)?;
        let d = tempfile::tempdir()?;
        let c = c_to_c(&bin, d.path(), &file)?;
        let d = tempfile::tempdir()?;
        let o = omni_to_c(&bin, d.path(), &file, &rt)?;
        let d = tempfile::tempdir()?;
        let i = c_to_omni(&bin, d.path(), &file, &rt)?;
        let d = tempfile::tempdir()?;
        let w = omni_to_omni(d.path(), &file, &rt)?;
        println!(
            "round {}: {mib} MiB  c-toxcore->c-toxcore {:.1} MiB/s, omnipeer->c-toxcore {:.1} MiB/s, \
             c-toxcore->omnipeer {:.1} MiB/s, omnipeer->omnipeer {:.1} MiB/s, TCP copy {:.1} MiB/s",
            r + 1,
            mbs(c),
            mbs(o),
            mbs(i),
            mbs(w),
            mbs(t)
        );
        oo.push(mbs(w));
        cc.push(mbs(c));
        oc.push(mbs(o));
        co.push(mbs(i));
        tcp.push(mbs(t));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (c, o, i, w, t) = (median(&mut cc), median(&mut oc), median(&mut co), median(&mut oo), median(&mut tcp));
    println!("{mib} MiB over loopback UDP (median of {rounds}):");
    println!("  c-toxcore -> c-toxcore  {c:.1} MiB/s");
    println!("  omnipeer  -> c-toxcore  {o:.1} MiB/s   ratio {:.2}x  ({:.2} of TCP)", o / c, o / t);
    println!("  c-toxcore -> omnipeer   {i:.1} MiB/s   ratio {:.2}x  ({:.2} of TCP)", i / c, i / t);
    println!("  omnipeer  -> omnipeer   {w:.1} MiB/s   ratio {:.2}x  ({:.2} of TCP)", w / c, w / t);
    println!("  plain TCP copy          {t:.1} MiB/s");
    Ok(())
}
