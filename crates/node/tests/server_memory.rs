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
use support::{rss_kib, slsk_login, start_slsk};

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
