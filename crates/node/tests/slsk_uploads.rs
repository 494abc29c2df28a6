//! Soulseek uploads over loopback through our server: with one upload slot, later
//! downloaders are queued (not refused), learn their real place with PlaceInQueueRequest,
//! and are served in order as the slot frees; and the shared upload limit holds.

use omnipeer_node::slsk::client::{SlskClient, SlskClientConfig};
use omnipeer_node::upload::Uploads;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod support;
use support::start_slsk;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + i / 977) as u8).collect()
}

struct World {
    dir: tempfile::TempDir,
    addr: String,
    stop: CancellationToken,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&dir.path().join("server.sqlite")).await;
    let addr = addr.to_string();
    World { dir, addr, stop }
}

impl World {
    async fn client(&self, user: &str, share: Option<&Path>, uploads: Option<Arc<Uploads>>) -> SlskClient {
        SlskClient::start(SlskClientConfig {
            server: self.addr.clone(),
            user: user.into(),
            password: "pw".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            share: share.map(|p| vec![p.to_path_buf()]).unwrap_or_default(),
            slots: 1,
            uploads,
        })
        .await
        .unwrap()
    }
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_one_slot_later_downloaders_queue_learn_their_place_and_finish_in_order() {
    let w = world().await;
    let share = w.dir.path().join("Music");
    std::fs::create_dir_all(&share).unwrap();
    let data = pattern(3 << 20);
    std::fs::write(share.join("song.bin"), &data).unwrap();
    // One slot; 1 MiB/s so that the first upload lasts two seconds while the others queue.
    let uploads = Uploads::new(1, Default::default(), 1024);
    let sharer = w.client("sharer", Some(&share), Some(uploads.clone())).await;
    let path = "Music\\song.bin";
    let mut getters = Vec::new();
    for name in ["first", "second", "third"] {
        getters.push(Arc::new(w.client(name, None, None).await));
    }
    let mut tasks = Vec::new();
    for (i, g) in getters.iter().enumerate() {
        let g = g.clone();
        let out = w.dir.path().join(format!("out{i}"));
        std::fs::create_dir_all(&out).unwrap();
        tasks.push(tokio::spawn(async move {
            let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
            let r = g.download("sharer", path, &out, progress).await;
            (r, Instant::now())
        }));
        // Queue them one after the other so the order is known.
        let want = i + 1;
        wait_for("the request to reach the uploader", || uploads.list().len() == want).await;
    }
    let states: Vec<(String, String, u32)> =
        uploads.list().into_iter().map(|u| (u.user, u.state, u.position)).collect();
    assert_eq!(states[0].0, "first");
    assert!(matches!(states[0].1.as_str(), "starting" | "running"), "{states:?}");
    assert_eq!(states[1..], [("second".into(), "queued".into(), 1), ("third".into(), "queued".into(), 2)]);
    // What a Nicotine+ user sees with "Get place in queue".
    assert_eq!(getters[2].place_in_queue("sharer", path).await.unwrap(), 2);
    assert_eq!(getters[1].place_in_queue("sharer", path).await.unwrap(), 1);
    // A file not in the queue gets no answer (as Nicotine+).
    assert!(getters[1].place_in_queue("sharer", "Music\\other.bin").await.is_err());

    let mut ends = Vec::new();
    for t in tasks {
        let (r, at) = t.await.unwrap();
        let (out, size, from) = r.unwrap();
        assert_eq!((size, from), (data.len() as u64, 0));
        assert_eq!(Sha256::digest(std::fs::read(&out).unwrap()), Sha256::digest(&data));
        ends.push(at);
    }
    assert!(ends[0] < ends[1] && ends[1] < ends[2], "served in queue order: {ends:?}");
    let done: Vec<(String, String)> = uploads.list().into_iter().map(|u| (u.user, u.state)).collect();
    assert_eq!(
        done,
        [("third", "done"), ("second", "done"), ("first", "done")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    for g in getters {
        Arc::try_unwrap(g).ok().unwrap().stop().await.unwrap();
    }
    sharer.stop().await.unwrap();
    w.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_under_a_limit_takes_at_least_its_time_and_a_resume_sends_the_rest() {
    let w = world().await;
    let share = w.dir.path().join("Pub");
    std::fs::create_dir_all(&share).unwrap();
    let data = pattern(512 * 1024);
    std::fs::write(share.join("half.bin"), &data).unwrap();
    let uploads = Uploads::new(2, Default::default(), 256);
    let sharer = w.client("sharer", Some(&share), Some(uploads.clone())).await;
    let getter = w.client("getter", None, None).await;
    let out = w.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let t = Instant::now();
    let (file, size, _) = getter.download("sharer", "Pub\\half.bin", &out, progress.clone()).await.unwrap();
    let took = t.elapsed();
    assert_eq!(std::fs::read(&file).unwrap(), data);
    // 512 KiB at 256 KiB/s with a one-second burst: the second half waits a second.
    assert!(took >= Duration::from_millis(950), "took {took:?}");
    assert_eq!(size, data.len() as u64);

    // Lift the limit at run time and resume from a partial file: zero-copy from an offset
    // (forced: on loopback the default leaves sendfile out, see `transfer::ZeroCopy`).
    omnipeer_node::transfer::set_zero_copy(omnipeer_node::transfer::ZeroCopy::Always);
    uploads.set_limit_kib(0);
    std::fs::write(&file, &data[..100_001]).unwrap();
    let (file, _, from) = getter.download("sharer", "Pub\\half.bin", &out, progress).await.unwrap();
    assert_eq!(from, 100_001);
    assert_eq!(std::fs::read(&file).unwrap(), data);
    // The uploader ends the record when the downloader closes, just after it has the bytes.
    wait_for("the upload to end", || uploads.list()[0].state != "running").await;
    let list = uploads.list();
    assert_eq!(
        (list[0].start, list[0].bytes, list[0].state.as_str()),
        (100_001, (data.len() - 100_001) as u64, "done")
    );
    getter.stop().await.unwrap();
    sharer.stop().await.unwrap();
    w.stop.cancel();
}
