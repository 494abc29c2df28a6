//! Memory handed back to the system after a crowd leaves the Soulseek server (issue 14:
//! "RSS after they go within 10% of before"), measured as this process's anonymous RSS (in
//! a test binary of its own: other tests running beside it would move the figure; the
//! flood test in server_memory.rs leaves tens of MiB behind).

use omnipeer_slsk::ServerResponse;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod support;
use support::{slsk_login, start_slsk};

/// The tests here measure the process's RSS: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Connections in the crowd: more than `omnipeer_node::serve::RELEASE_AFTER_CLOSES` (500).
/// Both ends are in this process: 2,000 descriptors, as hub_memory.rs's 1,000 users.
const CROWD: usize = 1000;

/// A crowd comes and goes: 1,000 connections each holding part of a Login, then all close.
/// The server's anonymous memory (heap, stacks: what the system cannot take back without
/// the server giving it) must come back to within 10% of its level before. Before, nothing
/// was handed back for connections that never logged in (the trim counted logouts), and
/// after a logged-in crowd the freed blocks each thread keeps cached (glibc's tcache) held
/// most of the heap the crowd grew resident (bench/src/slsk_server.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_goes_back_after_a_crowd_leaves() {
    let _serial = SERIAL.lock().await;
    // As the omnipeer binary does at start.
    omnipeer_node::store::pin_mmap_threshold();
    let t = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&t.path().join("server.sqlite")).await;
    // Everything runs on the runtime's workers (whose caches the server empties), not on
    // this test's own thread.
    let crowd = |n: usize| {
        tokio::spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..n {
                let mut s = TcpStream::connect(addr).await.unwrap();
                // A Login announcing 2,000 bytes, 1,200 of them sent: the server holds them.
                let mut frame = 2000u32.to_le_bytes().to_vec();
                frame.extend_from_slice(&1u32.to_le_bytes());
                frame.resize(1200, b'x');
                s.write_all(&frame).await.unwrap();
                conns.push(s);
            }
            conns
        })
    };
    let releases = omnipeer_node::serve::memory_releases;
    // A few connections first, so that what the server sets up at its first connections
    // is in the baseline.
    let few = crowd(20).await.unwrap();
    tokio::spawn(async move { drop(few) }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, before) = (status_kib("VmRSS:"), status_kib("RssAnon:"));
    let conns = crowd(CROWD).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = status_kib("RssAnon:");
    tokio::spawn(async move { drop(conns) }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        while releases() < 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the server hands memory back after a mass leave");
    let (rss_after, after) = (status_kib("VmRSS:"), status_kib("RssAnon:"));
    eprintln!(
        "RssAnon: {before} KiB before, {with} KiB with {CROWD} connections, {after} KiB after they left; \
         VmRSS {rss_before} / {rss_after} KiB"
    );
    assert!(with > before + 512, "the crowd took memory: {before} -> {with} KiB");
    assert!(after * 10 <= before * 11, "{after} KiB after the crowd left, {before} KiB before");
    // The server still serves.
    let (_s, reply) = slsk_login(addr, "after").await;
    assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{reply:?}");
    stop.cancel();
}

/// The mechanism under the test above, alone: a thread allocates a crowd's worth of small
/// records (3.4 MB of 64 sizes up to 1,032 bytes) and frees them in no order. glibc keeps
/// the last 7 freed of each size in the thread's cache (tcache), in use as far as
/// `malloc_trim` can tell: each keeps its page resident (448 pages, 1.75 MiB at most). The
/// server empties its threads' caches before trimming (`take_thread_cache`, freed on a
/// thread that exits); the memory then goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threads_cache_of_freed_blocks_does_not_keep_the_heap() {
    use omnipeer_node::store::{free_on_exiting_thread, release_free_heap, take_thread_cache};
    let _serial = SERIAL.lock().await;
    omnipeer_node::store::pin_mmap_threshold();
    let (before, with, after) = std::thread::spawn(|| {
        release_free_heap();
        let before = status_kib("RssAnon:");
        let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(6400);
        for i in 0..6400 {
            // 64 sizes, interleaved (as a crowd's records are), each written (resident).
            blocks.push(vec![1u8; 16 * (i % 64) + 24]);
        }
        let with = status_kib("RssAnon:");
        // Freed in a scattered (seeded) order: the last of each size are anywhere.
        let mut x = 12345u64;
        while !blocks.is_empty() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = (x >> 33) as usize % blocks.len();
            drop(blocks.swap_remove(i));
        }
        drop(blocks);
        free_on_exiting_thread(take_thread_cache());
        release_free_heap();
        (before, with, status_kib("RssAnon:"))
    })
    .join()
    .unwrap();
    eprintln!("RssAnon: {before} KiB before, {with} KiB with the records, {after} KiB after they were freed");
    assert!(with > before + 2048, "the records took memory: {before} -> {with} KiB");
    // What stays: at most a quarter of what the records took.
    assert!(after <= before + (with - before) / 4, "{after} KiB after, {before} KiB before, {with} KiB with");
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// A crowd of new accounts (each a slow Argon2id hash) starts no thread: the hashes run on
/// the server's own threads, there from its start (`HASH_THREAD_STACK` each). Before, they
/// ran on the runtime's blocking pool, which started a thread for each hash running at
/// once and ended it 10 s after the crowd: each new thread took a malloc arena of its own
/// (kept, with what the thread left in it, after the thread ended) and a stack (cached by
/// glibc), memory the crowd did not give back (bench/src/slsk_server.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_accounts_are_hashed_on_threads_the_server_started_with() {
    let _serial = SERIAL.lock().await;
    let t = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&t.path().join("server.sqlite")).await;
    let (_first, reply) = slsk_login(addr, "first").await;
    assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{reply:?}");
    // The runtime's idle blocking threads (opening the database, say) end after 10 s.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = threads();
    // New accounts at once (one address may make 10 an hour: `MAX_REGISTRATIONS_PER_IP_PER_HOUR`).
    let logins: Vec<_> =
        (0..8).map(|i| tokio::spawn(async move { slsk_login(addr, &format!("new{i}")).await })).collect();
    let mut most = before;
    while !logins.iter().all(|l| l.is_finished()) {
        most = most.max(threads());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for l in logins {
        let (_s, reply) = l.await.unwrap();
        assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{reply:?}");
    }
    eprintln!("threads: {before} before 8 new accounts, at most {most} while they were hashed");
    assert_eq!(most, before, "threads were started for the hashes");
    stop.cancel();
}
