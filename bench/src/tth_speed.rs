//! TTH hashing against flat Tiger over the same bytes, and the share hashing of the node
//! (many files, every core) against one core:
//! - one file of SIZE_MIB MiB from the page cache: `hash_file` (Tiger tree, 1024-byte
//!   leaves, keeping the `tthl` level) vs the Tiger crate hashing the same bytes flat, in
//!   one thread each, best of ROUNDS;
//! - FILES files of 8 MiB hashed by `DcShare::build` with an empty hash cache (the first
//!   start of a node) vs the same bytes hashed one file after another in one thread.
//!
//! Usage: `cargo run --release -p omnipeer-bench --bin tth-speed -- [SIZE_MIB] [ROUNDS] [FILES]`

mod common;
use common::flat_tiger;

use omnipeer_node::nmdc::share::DcShare;
use omnipeer_node::store::Store;
use std::path::Path;
use std::time::Instant;

fn best(rounds: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let files: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("tth-").tempdir_in(&base)?;
    let src = dir.path().join("payload.bin");
    common::make_payload(&src, mib << 20)?;
    // Warm the page cache.
    flat_tiger(&src)?;

    // Each round hashes with both, one after the other, so that both see the same load
    // (the machine may be shared); the best round of each counts.
    let (mut tth, mut flat) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        tth = tth.min(best(1, || {
            std::hint::black_box(omnipeer_node::nmdc::share::hash_file(&src)?);
            Ok(())
        })?);
        flat = flat.min(best(1, || {
            std::hint::black_box(flat_tiger(&src)?);
            Ok(())
        })?);
    }
    println!("TTH vs flat Tiger, one {mib} MiB file from the page cache, one thread, best of {rounds}:");
    println!("  flat Tiger (tiger crate)   {:8.0} MiB/s", mib as f64 / flat);
    println!("  TTH (hash_file)            {:8.0} MiB/s", mib as f64 / tth);
    println!("  ratio TTH / flat Tiger     {:8.3}", flat / tth);
    // The same in memory (no reads): the hash functions alone.
    let data = std::fs::read(&src)?;
    let (mut tth, mut flat) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        tth = tth.min(best(1, || {
            let mut t = omnipeer_nmdc::tth::TigerTree::for_file_size(data.len() as u64);
            t.update(&data);
            std::hint::black_box(t.finish());
            Ok(())
        })?);
        flat = flat.min(best(1, || {
            use tiger::Digest;
            std::hint::black_box(tiger::Tiger::digest(&data));
            Ok(())
        })?);
    }
    println!(
        "  in memory: TTH {:.0} MiB/s, flat Tiger {:.0} MiB/s, ratio {:.3}",
        mib as f64 / tth,
        mib as f64 / flat,
        flat / tth
    );
    drop(data);

    // The share: FILES files of 8 MiB, hashed with an empty cache.
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share)?;
    for i in 0..files {
        let p = share.join(format!("f{i:03}.bin"));
        common::make_payload(&p, 8 << 20)?;
        // Different contents per file (the payload generator is deterministic).
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&p)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&(i as u64).to_le_bytes())?;
    }
    let total_mib = (files * 8) as f64;
    let one = best(rounds, || {
        for e in std::fs::read_dir(&share)? {
            std::hint::black_box(omnipeer_node::nmdc::share::hash_file(&e?.path())?);
        }
        Ok(())
    })?;
    let mut n = 0;
    let pool = best(rounds, || {
        n += 1;
        let mut store = Store::open(&dir.path().join(format!("state{n}.sqlite")))?;
        let (s, stats) = DcShare::build(std::slice::from_ref(&share), &mut store, "BENCH")?;
        anyhow::ensure!(stats.cached == 0 && s.files().len() == files, "not all hashed now");
        Ok(())
    })?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("share hashing, {files} files of 8 MiB, empty hash cache, best of {rounds} ({cores} cores):");
    println!("  one thread, file after file   {:8.0} MiB/s", total_mib / one);
    println!("  DcShare::build                {:8.0} MiB/s  ({:.2}x)", total_mib / pool, one / pool);
    Ok(())
}
