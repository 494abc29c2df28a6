//! Memory of the servers under a flood before login, measured as this process's VmRSS
//! (in a test binary of its own: other tests running beside it would move the figure).
//! 20 connections each announcing a 63 MiB Soulseek Login and sending 8 MiB of it are
//! dropped at the length field; buffered, they took 160 MiB (1.38 GB for whole frames).

use omnipeer_slsk::ServerResponse;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::{slsk_login, start_slsk};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_huge_frames_before_login_are_dropped_at_once() {
    let t = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&t.path().join("server.sqlite")).await;
    let before = rss_kib();
    // 20 connections each announce a 63 MiB Login and send 8 MiB of it.
    let chunk: Arc<Vec<u8>> = Arc::new(vec![b'x'; 1 << 20]);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let mut head = ((63u32 << 20) + 4).to_le_bytes().to_vec();
            head.extend_from_slice(&1u32.to_le_bytes());
            let writer = tokio::spawn(async move {
                if wr.write_all(&head).await.is_err() {
                    return;
                }
                for _ in 0..8 {
                    if wr.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // Hold the rest back, as the flood did.
                std::future::pending::<()>().await;
            });
            // The server closes the connection (the read ends) instead of buffering.
            let mut buf = [0u8; 1024];
            let closed = tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await
            .is_ok();
            writer.abort();
            closed
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "the server dropped the connection");
    }
    let grown = rss_kib().saturating_sub(before);
    eprintln!("VmRSS grew by {grown} KiB");
    // Buffered, the 20 frames would be 160 MiB; dropped, nothing of them is kept.
    assert!(grown < 48 * 1024, "RSS grew by {grown} KiB");
    // The server still serves.
    let (_s, reply) = slsk_login(addr, "after").await;
    assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{reply:?}");
    stop.cancel();
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Connections in the crowd: more than `RELEASE_AFTER_CLOSES`, few enough for a default
/// open-file limit of 1,024 per side... (2 descriptors each here: both ends in this process).
const CROWD: usize = 1000;

/// A crowd comes and goes: 1,000 connections each holding part of a Login, then all close.
/// The server's anonymous memory (heap, stacks: what the system cannot take back without
/// the server giving it) must come back to within 10% of its level before. Before, nothing
/// was handed back for connections that never logged in (the trim counted logouts), and
/// after a logged-in crowd the freed blocks each thread keeps cached (glibc's tcache) held
/// most of the heap the crowd grew resident (bench/src/slsk_server.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_goes_back_after_a_crowd_leaves() {
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
    // A first crowd, so that what the server allocates once (maps, the code's first run)
    // is in the baseline.
    let first = crowd(CROWD).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::spawn(async move { drop(first) }).await.unwrap();
    let wait_release = |n: u64| async move {
        tokio::time::timeout(Duration::from_secs(120), async {
            while releases() < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the server hands memory back after a mass leave")
    };
    wait_release(1).await;
    let before = status_kib("RssAnon:");
    let conns = crowd(CROWD).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = status_kib("RssAnon:");
    tokio::spawn(async move { drop(conns) }).await.unwrap();
    wait_release(2).await;
    let after = status_kib("RssAnon:");
    eprintln!("RssAnon: {before} KiB before, {with} KiB with {CROWD} connections, {after} KiB after they left");
    assert!(with > before + 1024, "the crowd took memory: {before} -> {with} KiB");
    assert!(after * 10 <= before * 11, "{after} KiB after the crowd left, {before} KiB before");
    // The server still serves.
    let (_s, reply) = slsk_login(addr, "after").await;
    assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{reply:?}");
    stop.cancel();
}
