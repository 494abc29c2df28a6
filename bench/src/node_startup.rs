//! `omnipeer up` start-up with a large share: time until both clients are logged in (the
//! share walked once into the node's one index, hashed for NMDC on every core, read by
//! Soulseek too) and resident memory then (and its peak), on the first start (every file
//! hashed) and on a warm restart (hashes from the SQLite cache). The baseline, measured in
//! the same run, is a bare walk of the same tree that stats every file (what any start-up
//! must at least do).
//!
//! Usage: `cargo build --release -p omnipeer -p omnipeer-bench && target/release/node-startup [FILES]`

mod common;

use common::free_port;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Start the node; returns it, the time until both clients logged in, and RSS then (and
/// its peak so far).
fn start(data: &Path) -> anyhow::Result<(Child, Duration, (u64, u64))> {
    let t0 = Instant::now();
    let child = common::node_up(data)?;
    let took = t0.elapsed();
    let rss = (common::rss_kib(child.id()), common::peak_rss_kib(child.id()));
    Ok((child, took, rss))
}

fn stop(mut child: Child) -> anyhow::Result<()> {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    child.wait()?;
    Ok(())
}

fn walk(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            n += walk(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

fn main() -> anyhow::Result<()> {
    let files: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("node-startup-").tempdir_in(&base)?;
    let data = dir.path();
    let share = data.join("share");
    let t = Instant::now();
    for i in 0..files {
        let d = share.join(format!("dir{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&d)?;
        }
        // Small files of different contents (so every hash is different work).
        let body = format!("file {i} of the omnipeer start-up benchmark\n").repeat(1 + i % 20);
        std::fs::write(d.join(format!("track {i:06}.mp3")), body)?;
    }
    eprintln!("made {files} files in {:.1}s", t.elapsed().as_secs_f64());
    std::fs::write(
        data.join("config.toml"),
        format!(
            "[dcc]\nlisten = \"127.0.0.1:0\"\n[nmdc_hub]\nlisten = \"127.0.0.1:{}\"\n[slsk_server]\nlisten = \"127.0.0.1:{}\"\n[tox_bootstrap]\nlisten = \"127.0.0.1:0\"\n[tox]\nlisten = \"127.0.0.1:0\"\n\
             [api]\nlisten = \"127.0.0.1:{}\"\n",
            free_port()?,
            free_port()?,
            free_port()?
        ),
    )?;
    common::settle();
    let t = Instant::now();
    let walked = walk(&share);
    let walk_time = t.elapsed();
    anyhow::ensure!(walked == files as u64, "walked {walked} of {files}");

    let (child, first, first_rss) = start(data)?;
    stop(child)?;
    common::settle();
    let (child, warm, warm_rss) = start(data)?;
    stop(child)?;

    println!("node start-up with {files} shared files (until both clients are logged in):");
    println!("  baseline: walk + stat every file     {:>9.1} ms", common::ms(walk_time));
    println!(
        "  first start (hash every file)         {:>9.1} ms  {:>6.1}x the walk   RSS {:>7} KiB (peak {} KiB)",
        common::ms(first),
        first.as_secs_f64() / walk_time.as_secs_f64(),
        first_rss.0,
        first_rss.1
    );
    println!(
        "  warm restart (hashes from the cache)  {:>9.1} ms  {:>6.1}x the walk   RSS {:>7} KiB (peak {} KiB)",
        common::ms(warm),
        warm.as_secs_f64() / walk_time.as_secs_f64(),
        warm_rss.0,
        warm_rss.1
    );
    Ok(())
}
