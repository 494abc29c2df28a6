//! Direct Connect transfers and hashing, each against a baseline measured in the same run:
//! - a 1 GiB `$ADCGET` download omnipeer → omnipeer over loopback (handshake, request,
//!   `$ADCSND`, raw bytes to a file) vs a plain TCP copy of the same file to a file;
//! - TTH (Tiger tree, 1024-byte leaves, keeping the `tthl` level) vs the Tiger crate
//!   hashing the same bytes flat.
//!
//! - when `eiskaltdcpp-daemon` is installed: the same file downloaded by `omnipeer` through
//!   a hub from EiskaltDC++ and from `omnipeer`'s own share.
//!
//! Usage: `cargo run --release -p omnipeer-bench --bin nmdc-transfer -- [SIZE_MIB] [ROUNDS]`

mod common;
use common::{flat_tiger, make_payload, plain_tcp_copy, settle};

// The interop tests' launcher for the real client (std + serde_json only).
#[allow(unused_imports)]
#[path = "../../crates/omnipeer/tests/support/mod.rs"]
mod support;

use omnipeer_nmdc::handshake::Role;
use omnipeer_nmdc::transfer::Identifier;
use omnipeer_node::nmdc::cc::{self, DownloadJob, UploadContext};
use omnipeer_node::nmdc::share::DcShare;
use omnipeer_node::store::Store;
use omnipeer_node::upload::Uploads;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let size = mib << 20;
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("nmdc-").tempdir_in(&base)?;
    let share_dir = dir.path().join("share");
    std::fs::create_dir_all(&share_dir)?;
    let src = share_dir.join("payload.bin");
    make_payload(&src, size)?;

    // Hashing: TTH of the file vs flat Tiger over the same bytes (both from page cache).
    let t = Instant::now();
    let tth = omnipeer_node::nmdc::share::hash_file(&src)?;
    let tth_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let flat = flat_tiger(&src)?;
    let flat_secs = t.elapsed().as_secs_f64();
    std::hint::black_box(flat);

    let mut store = Store::open(&dir.path().join("state.sqlite"))?;
    let (share, _) = DcShare::build(std::slice::from_ref(&share_dir), &mut store, "BENCH")?;
    let root = share.files()[0].tth;
    anyhow::ensure!(root.0 == tth.tth, "the share hashed differently");
    let ctx = UploadContext {
        share: Arc::new(Mutex::new(Arc::new(share))),
        store: Arc::new(Mutex::new(store)),
        uploads: Uploads::new(4, Default::default(), 0),
        channel: "nmdc".into(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (mut best_tcp, mut best_dc) = (f64::MAX, f64::MAX);
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        for dc in order {
            let out = dir.path().join("out.bin");
            let _ = std::fs::remove_file(&out);
            settle();
            if dc {
                let t = Instant::now();
                rt.block_on(adcget(ctx.clone(), Identifier::Tth(root), &out))?;
                let s = t.elapsed().as_secs_f64();
                best_dc = best_dc.min(s);
                eprintln!("round {round}: $ADCGET {:.0} MiB/s", mib as f64 / s);
            } else {
                let s = plain_tcp_copy(&src, &out)?;
                best_tcp = best_tcp.min(s);
                eprintln!("round {round}: plain TCP copy {:.0} MiB/s", mib as f64 / s);
            }
            anyhow::ensure!(std::fs::metadata(&out)?.len() == size, "short copy");
            std::fs::remove_file(&out)?;
        }
    }
    println!("nmdc-transfer: {mib} MiB over loopback, best of {rounds}");
    println!("  plain TCP copy (file -> socket -> file): {:8.0} MiB/s", mib as f64 / best_tcp);
    println!("  omnipeer $ADCGET download (c-c + TTH):   {:8.0} MiB/s", mib as f64 / best_dc);
    println!("  ratio $ADCGET / plain copy: {:.3}  (target >= 0.9)", best_tcp / best_dc);
    if support::have("eiskaltdcpp-daemon") {
        match rt.block_on(vs_eiskalt(&share_dir, root, rounds)) {
            Ok((ek, om)) => {
                println!("  via a hub, omnipeer downloading from EiskaltDC++: {:8.0} MiB/s", mib as f64 / ek);
                println!("  via a hub, omnipeer downloading from omnipeer:    {:8.0} MiB/s", mib as f64 / om);
                println!("  ratio omnipeer / EiskaltDC++ as the uploader: {:.3}", ek / om);
            }
            Err(e) => println!("  EiskaltDC++ comparison failed: {e:#}"),
        }
    } else {
        println!("  (eiskaltdcpp-daemon not installed: no comparison with EiskaltDC++)");
    }
    println!("  TTH hashing:       {:8.0} MiB/s", mib as f64 / tth_secs);
    println!("  flat Tiger (same bytes): {:8.0} MiB/s", mib as f64 / flat_secs);
    println!("  ratio TTH / flat Tiger: {:.3}", flat_secs / tth_secs);
    Ok(())
}

async fn adcget(ctx: UploadContext, what: Identifier, out: &Path) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let (peer, _, leftover) = cc::handshake(&mut s, Role::Listener, "sharer", false, None).await?;
        cc::serve_uploads(s, &peer, leftover, ctx).await
    });
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let (peer, _, leftover) = cc::handshake(&mut s, Role::Connector, "getter", true, None).await?;
    let job = DownloadJob {
        what,
        out: out.to_path_buf(),
        progress: Default::default(),
        total: Default::default(),
        control: Default::default(),
    };
    cc::download(s, &peer, leftover, &job).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// Best download times (EiskaltDC++ as uploader, omnipeer as uploader), both through an
/// omnipeer hub, the downloader passive and the uploaders active.
async fn vs_eiskalt(share_dir: &Path, root: omnipeer_nmdc::tth::Tth, rounds: usize) -> anyhow::Result<(f64, f64)> {
    use omnipeer_node::nmdc::client::{ClientConfig, DcClient};
    use omnipeer_node::nmdc::{HubServer, HubServerConfig};
    let tmp = tempfile::tempdir()?;
    let hub = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse()?,
        hub: Default::default(),
        db: tmp.path().join("hub.sqlite"),
        register: Vec::new(),
    })
    .await?;
    let hub_addr = hub.local_addr().to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(hub.run(stop.clone()));
    let ek_cfg = support::eiskalt::EiskaltConfig {
        nick: "ek".into(),
        hub: hub_addr.clone(),
        share: Some(share_dir.to_path_buf()),
        active_port: Some(support::free_port()),
        password: None,
    };
    let ek = tokio::task::spawn_blocking(move || support::eiskalt::Eiskalt::start(ek_cfg)).await?;
    let cfg = |nick: &str, share: Vec<std::path::PathBuf>, listen: Option<std::net::SocketAddr>| ClientConfig {
        hub: hub_addr.clone(),
        nick: nick.into(),
        password: None,
        listen,
        share,
        slots: 4,
        uploads: None,
        db: tmp.path().join(format!("{nick}.sqlite")),
        description: String::new(),
    };
    let sharer = DcClient::start(cfg("omni", vec![share_dir.to_path_buf()], Some("127.0.0.1:0".parse()?))).await?;
    let getter = DcClient::start(cfg("getter", Vec::new(), None)).await?;
    let logged = tokio::task::spawn_blocking(move || {
        let ok = ek.wait_logged_in(Duration::from_secs(30));
        (ek, ok)
    })
    .await?;
    let _ek = logged.0;
    anyhow::ensure!(logged.1, "EiskaltDC++ did not log in");
    let (mut best_ek, mut best_om) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        for from in ["ek", "omni"] {
            let out = tmp.path().join("dl.bin");
            let _ = std::fs::remove_file(&out);
            settle();
            let job = DownloadJob {
                what: Identifier::Tth(root),
                out,
                progress: Default::default(),
                total: Default::default(),
                control: Default::default(),
            };
            let t = Instant::now();
            getter.download(from, &job).await?;
            let s = t.elapsed().as_secs_f64();
            eprintln!("from {from}: {s:.3} s");
            if from == "ek" {
                best_ek = best_ek.min(s);
            } else {
                best_om = best_om.min(s);
            }
        }
    }
    getter.stop().await?;
    sharer.stop().await?;
    stop.cancel();
    Ok((best_ek, best_om))
}
