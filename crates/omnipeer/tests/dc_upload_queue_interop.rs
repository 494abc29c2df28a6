//! The NMDC upload queue against a real downloader: EiskaltDC++ 2.4.2 asks omnipeer for a
//! file while omnipeer's only upload slot is busy, is answered `$MaxedOut 1` (the form
//! DC++-family uploaders send, with the queue place), and gets the file once the slot
//! frees: omnipeer holds the slot for it and calls it back with `$ConnectToMe`.
//!
//! Skips (and passes) when eiskaltdcpp-daemon or rhash is not installed;
//! `scripts/install-test-deps.sh` installs them.

mod support;

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_nmdc::transfer::Identifier;
use omnipeer_node::nmdc::cc::DownloadJob;
use omnipeer_node::nmdc::client::{ClientConfig, DcClient};
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use omnipeer_node::upload::Uploads;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use support::eiskalt::{Eiskalt, EiskaltConfig};
use support::{free_port, sha256_file, wait_until};

const T: Duration = Duration::from_secs(30);

fn config(
    hub: &str,
    nick: &str,
    dir: &Path,
    share: Vec<std::path::PathBuf>,
    listen: bool,
    uploads: Option<Arc<Uploads>>,
) -> ClientConfig {
    ClientConfig {
        hub: hub.into(),
        nick: nick.into(),
        password: None,
        listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
        share,
        slots: 1,
        uploads,
        db: dir.join(format!("{nick}.sqlite")),
        description: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eiskalt_is_maxed_out_with_its_place_then_gets_the_freed_slot() {
    if !support::require("eiskalt_is_maxed_out_with_its_place", &["eiskaltdcpp-daemon", "rhash"]) {
        return;
    }
    let dir = support::temp_dir("upq-");
    let hub = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub: HubConfig { name: "queue test".into(), ..Default::default() },
        db: dir.path().join("hub.sqlite"),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let hub_addr = hub.local_addr().to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(hub.run(stop.clone()));

    let share = dir.path().join("pub");
    std::fs::create_dir_all(&share).unwrap();
    let file = share.join("payload.bin");
    support::write_test_file(&file, 4 << 20, 9);
    let tth = support::tth_rhash(&file).expect("rhash");
    // One slot at 512 KiB/s: the first download holds it for about seven seconds.
    let uploads = Uploads::new(1, Default::default(), 512);
    let sharer =
        DcClient::start(config(&hub_addr, "sharer", dir.path(), vec![share.clone()], true, Some(uploads.clone())))
            .await
            .unwrap();
    let first =
        Arc::new(DcClient::start(config(&hub_addr, "first", dir.path(), Vec::new(), false, None)).await.unwrap());

    let ek_cfg = EiskaltConfig {
        nick: "bob".into(),
        hub: hub_addr.clone(),
        active_port: Some(free_port()),
        ..Default::default()
    };
    let e = tokio::task::spawn_blocking(move || Eiskalt::start(ek_cfg)).await.unwrap();
    let e = Arc::new(e);
    let ek = e.clone();
    let listed = tokio::task::spawn_blocking(move || {
        assert!(ek.wait_logged_in(T), "eiskalt logged in");
        assert!(wait_until(T, || ek.users().contains(&"sharer".to_owned())), "eiskalt sees sharer: {:?}", ek.users());
        // The file list goes through a MiniSlot; the file itself is queued without a source
        // until the lists are matched.
        assert_eq!(ek.add_by_tth("payload.bin", 4 << 20, &tth, &ek.download_dir()).unwrap(), 0);
        assert_eq!(ek.download_filelist("sharer").unwrap(), 0);
        ek.wait_filelist("sharer", T).is_some()
    })
    .await
    .unwrap();
    assert!(listed, "eiskalt got sharer's file list");

    // "first" takes the only slot.
    let out = dir.path().join("first.bin");
    let job = DownloadJob {
        what: Identifier::Tth(omnipeer_nmdc::tth::Tth::from_base32(&support::tth_rhash(&file).unwrap()).unwrap()),
        out: out.clone(),
        progress: Arc::new(AtomicU64::new(0)),
        total: Arc::new(AtomicU64::new(0)),
        control: Default::default(),
    };
    let f = first.clone();
    let first_done = tokio::spawn(async move { f.download("sharer", &job).await });
    let up = uploads.clone();
    assert!(
        tokio::task::spawn_blocking(move || wait_until(T, || up
            .list()
            .iter()
            .any(|u| u.user == "first" && u.state == "running")))
        .await
        .unwrap(),
        "first's upload runs"
    );

    // Now EiskaltDC++ asks: $MaxedOut 1, and it is in our queue at place 1.
    let ek = e.clone();
    let up = uploads.clone();
    let queued = tokio::task::spawn_blocking(move || {
        ek.match_lists().unwrap();
        wait_until(T, || up.list().iter().any(|u| u.user == "bob" && u.state == "queued" && u.position == 1))
    })
    .await
    .unwrap();
    assert!(queued, "bob queued at place 1: {:?}", uploads.list());
    assert!(
        uploads.list().iter().any(|u| u.user == "first" && u.state == "running"),
        "the slot was still busy: {:?}",
        uploads.list()
    );

    // The slot frees; the file reaches EiskaltDC++ in full.
    first_done.await.unwrap().unwrap();
    assert_eq!(sha256_file(&out), sha256_file(&file));
    let ek = e.clone();
    let target = e.download_dir().join("payload.bin");
    let t2 = target.clone();
    let got = tokio::task::spawn_blocking(move || ek.wait_file(&t2, Duration::from_secs(90))).await.unwrap();
    assert!(got, "eiskalt got the file after the slot freed; queue {}; uploads {:?}", e.queue_list(), uploads.list());
    assert_eq!(sha256_file(&target), sha256_file(&file));
    let up = uploads.clone();
    assert!(
        tokio::task::spawn_blocking(move || wait_until(T, || up
            .list()
            .iter()
            .any(|u| u.user == "bob" && u.state == "done")))
        .await
        .unwrap(),
        "{:?}",
        uploads.list()
    );
    first.close();
    sharer.stop().await.unwrap();
    stop.cancel();
}
