//! A client that stops reading must cost the Soulseek server a bounded amount of memory
//! (issue 14: "a load test with a slow reader shows bounded memory for that connection"):
//! its queue is capped (`omnipeer_node::serve::MAX_QUEUED_BYTES`, the driver the NMDC hub
//! shares, see hub_slow_reader.rs) and it is dropped, not buffered without end. In a test
//! binary of its own, because it measures this process's VmRSS.
//!
//! The stuck user sits in a room where another says 4,000 lines of 16 KB (64 MB for each
//! member) and reads none of them.

use omnipeer_slsk::{FrameKind, FrameReader, ServerRequest, ServerResponse};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::{closed_within, rss_kib, slsk_login, start_slsk};

/// Lines the speaker says, and their length (`central::MAX_MESSAGE` is 16 KiB).
const LINES: usize = 4000;
const LINE: usize = 16_000;

/// Log in as `user` and join room `r`, reading until the server's JoinRoom reply.
async fn join(addr: SocketAddr, user: &str) -> (TcpStream, FrameReader) {
    let (mut s, reply) = slsk_login(addr, user).await;
    assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{user}: {reply:?}");
    s.write_all(&ServerRequest::JoinRoom { room: "r".into(), private: false }.encode()).await.unwrap();
    let mut r = FrameReader::new(FrameKind::Server);
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            while let Some(f) = r.next_frame().unwrap() {
                if f.code == 14 {
                    return;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "{user}: closed before joining");
            r.push(&buf[..n]);
        }
    })
    .await
    .expect("the JoinRoom reply");
    (s, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_member_that_stops_reading_is_dropped_with_its_queue_capped() {
    let t = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&t.path().join("server.sqlite")).await;
    let (speaker, _) = join(addr, "speaker").await;
    let (mut watcher, mut wr) = join(addr, "watcher").await;
    let (mut stuck, _) = join(addr, "stuck").await;
    // The speaker reads (and drops) everything, lines of its own included.
    let (mut speaker_rd, mut speaker) = speaker.into_split();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(speaker_rd.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    // The watcher reads everything and reports when the stuck user leaves the room.
    let (left_tx, left_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        let mut left_tx = Some(left_tx);
        loop {
            while let Ok(Some(f)) = wr.next_frame() {
                if f.code == 17 {
                    if let Ok(ServerResponse::UserLeftRoom { user, .. }) = ServerResponse::from_frame(&f) {
                        if user == "stuck" {
                            if let Some(tx) = left_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                }
            }
            match watcher.read(&mut buf).await {
                Ok(n) if n > 0 => wr.push(&buf[..n]),
                _ => return,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // 64 MB of lines for each member; the stuck one reads none.
    let line = ServerRequest::SayChatroom { room: "r".into(), message: "x".repeat(LINE) }.encode();
    let saying = tokio::spawn(async move {
        for _ in 0..LINES {
            if speaker.write_all(&line).await.is_err() {
                break;
            }
        }
        speaker
    });
    let dropped = tokio::time::timeout(Duration::from_secs(120), left_rx).await;
    let _speaker = saying.await.unwrap();
    sampling.abort();
    let grown = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "VmRSS grew by {grown} KiB at most while {} MB of lines went to a member that did not read",
        LINES * LINE / 1_000_000
    );
    assert!(matches!(dropped, Ok(Ok(()))), "the stuck user was not dropped from the room");
    // Its queue (4 MiB) and the lines in flight, not the 64 MB it was sent.
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB for one stuck member");
    // Its connection is closed (after what the kernel holds for it).
    let closed = closed_within(&mut stuck, 60).await;
    assert!(closed, "the stuck user's connection was closed");
    // The server still serves.
    let (_s, reply) = slsk_login(addr, "late").await;
    assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{reply:?}");
    stop.cancel();
}
