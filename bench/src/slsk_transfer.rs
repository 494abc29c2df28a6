//! A 1 GiB Soulseek download (QueueUpload, TransferRequest/Response, F connection with token
//! and offset) omnipeer → omnipeer through an omnipeer server, against a plain TCP copy of
//! the same file measured in the same run, and — when the aioslsk venv is installed — the
//! same file served by aioslsk.
//!
//! Usage: `cargo build --release -p omnipeer-bench && target/release/slsk-transfer [SIZE_MIB] [ROUNDS]`

mod common;
use common::{make_payload, plain_tcp_copy, settle};

// The interop tests' launcher for the real clients (std + serde_json + tempfile only).
#[allow(unused_imports)]
#[path = "../../crates/omnipeer/tests/slsk_support/mod.rs"]
mod slsk_support;

use omnipeer_node::slsk::client::{SlskClient, SlskClientConfig};
use omnipeer_node::slsk::{SlskServer, SlskServerConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("slsk-").tempdir_in(&base)?;
    let share = dir.path().join("Share");
    std::fs::create_dir_all(&share)?;
    let src = share.join("payload.bin");
    make_payload(&src, mib << 20)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (best_tcp, best_omni, aioslsk) = rt.block_on(async {
        let server = SlskServer::bind(SlskServerConfig {
            listen: "127.0.0.1:0".parse()?,
            db: dir.path().join("server.sqlite"),
            motd: String::new(),
            private: false,
            admins: Vec::new(),
            register: Vec::new(),
        })
        .await?;
        let addr = server.local_addr().to_string();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(server.run(stop.clone()));
        let cfg = |user: &str, share: Vec<std::path::PathBuf>| SlskClientConfig {
            server: addr.clone(),
            user: user.into(),
            password: "pw".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            share,
            slots: 2,
            uploads: None,
        };
        let sharer = SlskClient::start(cfg("sharer", vec![share.clone()])).await?;
        let getter = SlskClient::start(cfg("getter", Vec::new())).await?;
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out)?;
        let (mut best_tcp, mut best_omni) = (f64::MAX, f64::MAX);
        for round in 1..=rounds {
            let _ = std::fs::remove_file(out.join("payload.bin"));
            settle();
            let t = Instant::now();
            let progress: Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)> =
                Arc::new(Default::default());
            getter.download("sharer", "Share\\payload.bin", &out, progress).await?;
            let s = t.elapsed().as_secs_f64();
            best_omni = best_omni.min(s);
            std::fs::remove_file(out.join("payload.bin"))?;
            settle();
            let c = plain_tcp_copy(&src, &out.join("copy.bin"))?;
            std::fs::remove_file(out.join("copy.bin"))?;
            best_tcp = best_tcp.min(c);
            eprintln!("round {round}: omnipeer {:.0} MiB/s, plain TCP {:.0} MiB/s", mib as f64 / s, mib as f64 / c);
        }
        // The same file served by aioslsk, downloaded by omnipeer.
        let mut aioslsk = None;
        if !slsk_support::available() {
            eprintln!("aioslsk venv not found");
        } else {
            let src2 = src.clone();
            let addr2 = addr.clone();
            let peer = tokio::task::spawn_blocking(move || {
                let opts = slsk_support::PeerOptions::new("aio").file("Bench/payload.bin", Vec::new());
                let p = slsk_support::Peer::spawn(slsk_support::Client::Aioslsk, &addr2, opts)?;
                // Replace the placeholder with the real payload before the scan counts it.
                std::fs::copy(&src2, p.share_dir().join("Bench/payload.bin"))?;
                Ok::<_, std::io::Error>(p)
            })
            .await??;
            let logged = tokio::task::spawn_blocking(move || {
                let ok = peer.wait_logged_in(Duration::from_secs(60)).is_ok()
                    && peer.wait_event("shares_scanned", |_| true, Duration::from_secs(120)).is_some();
                (peer, ok)
            })
            .await?;
            let _peer = logged.0;
            if !logged.1 {
                eprintln!("aioslsk did not log in and scan: {}", _peer.stderr_tail(20));
            }
            // Its virtual path carries the alias aioslsk gives the share: ask by search.
            let mut found = None;
            if logged.1 {
                let mut ev = getter.take_events().expect("a new client's events");
                getter.search("payload");
                let end = tokio::time::Instant::now() + Duration::from_secs(10);
                while let Ok(Some(e)) = tokio::time::timeout_at(end, ev.recv()).await {
                    if let omnipeer_node::slsk::client::SlskEvent::SearchResult { user, path, .. } = e {
                        if user == "aio" {
                            found = Some(path);
                            break;
                        }
                    }
                }
            }
            if found.is_none() && logged.1 {
                eprintln!("aioslsk's file was not found by search");
            }
            if let Some(remote) = found {
                let mut best = f64::MAX;
                for _ in 0..rounds.min(2) {
                    let _ = std::fs::remove_file(out.join("payload.bin"));
                    settle();
                    let t = Instant::now();
                    let progress: Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)> =
                        Arc::new(Default::default());
                    match getter.download("aio", &remote, &out, progress.clone()).await {
                        Ok(_) => best = best.min(t.elapsed().as_secs_f64()),
                        Err(e) => {
                            eprintln!("download from aioslsk failed: {e:#}");
                            break;
                        }
                    }
                }
                if best < f64::MAX {
                    aioslsk = Some(best);
                }
            }
        }
        getter.stop().await?;
        sharer.stop().await?;
        stop.cancel();
        anyhow::Ok((best_tcp, best_omni, aioslsk))
    })?;
    println!("slsk-transfer: {mib} MiB over loopback, best of {rounds}");
    println!("  plain TCP copy (file -> socket -> file): {:8.0} MiB/s", mib as f64 / best_tcp);
    println!("  omnipeer -> omnipeer (F connection):     {:8.0} MiB/s", mib as f64 / best_omni);
    println!("  ratio omnipeer / plain copy: {:.3}  (target >= 0.9)", best_tcp / best_omni);
    match aioslsk {
        Some(a) => {
            println!("  aioslsk -> omnipeer:                     {:8.0} MiB/s", mib as f64 / a);
            println!("  ratio omnipeer / aioslsk as the uploader: {:.3}", a / best_omni);
        }
        None => println!("  (aioslsk not installed or did not serve: no comparison)"),
    }
    Ok(())
}
