//! NMDC uploads with every slot taken, omnipeer ↔ omnipeer through our hub: a requester
//! is answered `$MaxedOut <place>` (as EiskaltDC++ does) and remembered; when the slot
//! frees it is held for the head of the queue, so its retry gets it even while a later
//! requester keeps retrying too.

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_nmdc::transfer::Identifier;
use omnipeer_node::nmdc::cc::{self, DownloadJob};
use omnipeer_node::nmdc::client::{ClientConfig, DcClient};
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use omnipeer_node::upload::Uploads;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 17 + i / 1013) as u8).collect()
}

fn config(
    hub: &str,
    nick: &str,
    dir: &Path,
    share: Vec<PathBuf>,
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

fn job(what: Identifier, out: PathBuf) -> DownloadJob {
    DownloadJob {
        what,
        out,
        progress: Arc::new(AtomicU64::new(0)),
        total: Arc::new(AtomicU64::new(0)),
        control: Default::default(),
    }
}

/// Try until it works, as a downloader's retries do; returns the first error and when
/// it finished.
async fn retry(dc: Arc<DcClient>, what: Identifier, out: PathBuf) -> (String, Instant) {
    let mut first = String::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match dc.download("sharer", &job(what.clone(), out.clone())).await {
            Ok(_) => return (first, Instant::now()),
            Err(e) => {
                let e = format!("{e:#}");
                assert!(e.contains("MaxedOut"), "{e}");
                if first.is_empty() {
                    first = e;
                }
            }
        }
        assert!(Instant::now() < until, "never got a slot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_maxed_out_requester_keeps_its_place_and_its_retry_gets_the_freed_slot() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub: HubConfig { name: "test".into(), ..Default::default() },
        db: dir.path().join("hub.sqlite"),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let hub_addr = hub.local_addr().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(hub.run(stop.clone()));

    let share = dir.path().join("pub");
    std::fs::create_dir_all(&share).unwrap();
    let data = pattern(3 << 20);
    std::fs::write(share.join("big.bin"), &data).unwrap();
    let tth = cc::file_tth(&share.join("big.bin")).unwrap();
    // One slot at 1 MiB/s: each upload lasts about two seconds.
    let uploads = Uploads::new(1, Default::default(), 1024);
    let sharer = DcClient::start(config(&hub_addr, "sharer", dir.path(), vec![share], true, Some(uploads.clone())))
        .await
        .unwrap();
    let mut getters = Vec::new();
    for nick in ["first", "second", "third"] {
        getters.push(Arc::new(
            DcClient::start(config(&hub_addr, nick, dir.path(), Vec::new(), false, None)).await.unwrap(),
        ));
    }
    let out = |i: usize| dir.path().join(format!("out{i}.bin"));
    let what = Identifier::Tth(tth);

    let g = getters[0].clone();
    let (w, o) = (what.clone(), out(0));
    let first = tokio::spawn(async move {
        g.download("sharer", &job(w, o)).await.unwrap();
        Instant::now()
    });
    let until = Instant::now() + Duration::from_secs(20);
    while !uploads.list().iter().any(|u| u.state == "running") {
        assert!(Instant::now() < until, "the first upload did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second asks while the slot is taken: $MaxedOut 1, then the third: $MaxedOut 2.
    let second = tokio::spawn(retry(getters[1].clone(), what.clone(), out(1)));
    while uploads.queue_len() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = tokio::spawn(retry(getters[2].clone(), what.clone(), out(2)));
    while uploads.queue_len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued: Vec<(String, String, u32)> =
        uploads.list().into_iter().filter(|u| u.state == "queued").map(|u| (u.user, u.file, u.position)).collect();
    assert_eq!(queued, [("second".into(), "pub\\big.bin".into(), 1), ("third".into(), "pub\\big.bin".into(), 2)]);

    let t1 = first.await.unwrap();
    let (e2, t2) = second.await.unwrap();
    let (e3, t3) = third.await.unwrap();
    assert!(e2.contains("place 1"), "{e2}");
    assert!(e3.contains("place 2"), "{e3}");
    assert!(t1 < t2 && t2 < t3, "served in queue order although both retried");
    for i in 0..3 {
        assert!(std::fs::read(out(i)).unwrap() == data, "copy {i} differs");
    }
    let states: Vec<(String, String)> = uploads.list().into_iter().map(|u| (u.user, u.state)).collect();
    assert_eq!(
        states,
        [("third", "done"), ("second", "done"), ("first", "done")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    for g in getters {
        g.close();
    }
    sharer.stop().await.unwrap();
    stop.cancel();
}
