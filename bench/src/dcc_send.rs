//! A DCC send over loopback (`omnipeer dcc send` → `omnipeer dcc server`: 120/121, raw bytes
//! one way, 4-byte acks the other, written to the incoming folder) against a plain TCP copy
//! of the same bytes from the same file to a file, measured in the same run.
//!
//! Usage: `cargo run --release -p omnipeer-bench --bin dcc-send -- [SIZE_MIB] [ROUNDS]`
//! (defaults: 1024 MiB, 3 rounds; the best round of each counts).

mod common;
use common::{make_payload, plain_tcp_copy, settle};

use omnipeer_dcc::Services;
use omnipeer_node::dcc::{self, ClientOptions, DccServer, DccServerConfig};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let size = mib << 20;
    let dir = tempfile::Builder::new().prefix("omnipeer-bench-").tempdir_in(bench_dir())?;
    let src = dir.path().join("payload.bin");
    make_payload(&src, size)?;
    eprintln!("payload: {} MiB in {}", mib, dir.path().display());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let incoming = dir.path().join("incoming");
    let cfg = DccServerConfig {
        listen: "127.0.0.1:0".parse()?,
        nick: "bench".into(),
        services: Services::ALL,
        share: dir.path().join("share"),
        incoming: incoming.clone(),
        max_connections: 4,
        handshake_timeout: Duration::from_secs(15),
        fserve_idle_timeout: Duration::from_secs(60),
        transfer_idle_timeout: Duration::from_secs(60),
        max_gets: 1,
        get_expiry: Duration::from_secs(60),
        max_incoming_bytes: omnipeer_dcc::limits::DEFAULT_MAX_INCOMING_BYTES,
        welcome: None,
    };
    let shutdown = CancellationToken::new();
    let server = rt.block_on(DccServer::bind(cfg))?;
    let addr = server.local_addr().to_string();
    let task = rt.spawn(server.run(shutdown.clone()));

    let mut best_tcp = f64::MAX;
    let mut best_dcc = f64::MAX;
    for round in 1..=rounds {
        // Alternate which goes first, so neither always inherits the other's writeback.
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        let (mut t_tcp, mut t_dcc) = (0.0, 0.0);
        for dcc_turn in order {
            if dcc_turn {
                let received = incoming.join("payload.bin");
                let _ = std::fs::remove_file(&received);
                settle();
                let cpu0 = cpu_secs();
                let started = Instant::now();
                let summary = rt.block_on(dcc::client::send(&addr, &ClientOptions::new("client"), &src))?;
                t_dcc = started.elapsed().as_secs_f64();
                eprintln!("  dcc: {:.3} s wall, {:.3} s cpu", t_dcc, cpu_secs() - cpu0);
                anyhow::ensure!(summary.resumed_from == 0, "the send resumed: stale file in incoming");
                check_size(&received, size)?;
                std::fs::remove_file(&received)?;
            } else {
                let dst = dir.path().join("tcp-copy.bin");
                settle();
                let cpu0 = cpu_secs();
                t_tcp = plain_tcp_copy(&src, &dst)?;
                eprintln!("  tcp: {:.3} s wall, {:.3} s cpu", t_tcp, cpu_secs() - cpu0);
                check_size(&dst, size)?;
                std::fs::remove_file(&dst)?;
            }
        }
        best_tcp = best_tcp.min(t_tcp);
        best_dcc = best_dcc.min(t_dcc);
        eprintln!(
            "round {round}: plain TCP copy {:.0} MiB/s, DCC send {:.0} MiB/s",
            mib as f64 / t_tcp,
            mib as f64 / t_dcc
        );
    }
    shutdown.cancel();
    rt.block_on(task)??;

    let tcp_rate = mib as f64 / best_tcp;
    let dcc_rate = mib as f64 / best_dcc;
    println!("dcc-send: {mib} MiB over loopback, best of {rounds}");
    println!("  plain TCP copy (file -> socket -> file): {tcp_rate:8.0} MiB/s  ({best_tcp:.3} s)");
    println!("  omnipeer DCC send (120/121 + acks):      {dcc_rate:8.0} MiB/s  ({best_dcc:.3} s)");
    println!("  ratio DCC / plain copy: {:.3}  (target >= 0.9)", dcc_rate / tcp_rate);
    Ok(())
}

/// Benchmarks write real files: keep them off tmpfs so both sides pay the same disk cost.
fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("OMNIPEER_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp"))
        .tap_mkdir()
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        let _ = std::fs::create_dir_all(&self);
        self
    }
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn check_size(path: &Path, size: u64) -> anyhow::Result<()> {
    let got = std::fs::metadata(path)?.len();
    anyhow::ensure!(got == size, "{} has {got} bytes, expected {size}", path.display());
    Ok(())
}
