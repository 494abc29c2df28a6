//! Time on the Soulseek peer port (issue 12, item 6): a connection that does not identify
//! itself within `PEER_INIT_TIMEOUT` (even trickling bytes), or starts a message and stops
//! for `PEER_FRAME_TIMEOUT`, is dropped. Also the NMDC client-to-client handshake: a line
//! without its `|` (64 KiB limit) or no handshake at all (its 30 s timeout). The memory
//! side is in peer_port_memory.rs.

use omnipeer_nmdc::handshake::Role;
use omnipeer_node::nmdc::cc;
use omnipeer_node::slsk::client::{PEER_FRAME_TIMEOUT, PEER_INIT_TIMEOUT};
use omnipeer_slsk::peer::PeerInit;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::{node_client, p_header};

/// Whether the other end closed (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    closed_by(s, tokio::time::Instant::now() + within).await
}

/// Whether the other end closed (EOF or reset) by `until`.
async fn closed_by(s: &mut TcpStream, until: tokio::time::Instant) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_port_drops_slow_identification_and_stalled_messages() {
    let (victim, _dir, _stop) = node_client().await;
    let port = victim.listen_port();
    let start = Instant::now();
    // Trickles its PeerInit a byte every 5 s: each read comes within any per-read timeout.
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let init = PeerInit::PeerInit { user: "slowpoke".into(), conn_type: "P".into(), token: 1 }.encode();
        for b in init {
            if s.write_all(&[b]).await.is_err() {
                return start.elapsed();
            }
            let mut x = [0u8; 16];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut x)).await {
                return start.elapsed();
            }
        }
        panic!("the whole PeerInit went through, one byte every 5 s");
    });
    // Sends nothing at all.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Identifies itself, starts a 1000-byte message and stops.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stalled
        .write_all(&PeerInit::PeerInit { user: "staller".into(), conn_type: "P".into(), token: 2 }.encode())
        .await
        .unwrap();
    stalled.write_all(&p_header(1000)).await.unwrap();
    stalled.write_all(&[0u8; 10]).await.unwrap();

    let margin = Duration::from_secs(30);
    assert!(
        closed_within(&mut idle, PEER_INIT_TIMEOUT + margin).await,
        "an idle connection was held past {PEER_INIT_TIMEOUT:?}"
    );
    let slow_closed =
        tokio::time::timeout(PEER_INIT_TIMEOUT + margin, slow).await.expect("a trickled PeerInit was held").unwrap();
    assert!(slow_closed >= PEER_INIT_TIMEOUT - Duration::from_secs(1), "closed too early: {slow_closed:?}");
    let left = (PEER_FRAME_TIMEOUT + margin).saturating_sub(start.elapsed());
    assert!(closed_within(&mut stalled, left).await, "a stalled message was held past {PEER_FRAME_TIMEOUT:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmdc_handshake_refuses_a_long_line_and_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut r = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.unwrap();
            let t = Instant::now();
            let e = cc::handshake(&mut s, Role::Listener, "me", false, None).await.expect_err("no handshake");
            r.push((t.elapsed(), format!("{e:#}")));
        }
        r
    });
    // A $MyNick that never ends: refused at the command limit (64 KiB), not buffered on.
    let mut long = TcpStream::connect(addr).await.unwrap();
    long.write_all(b"$MyNick ").await.unwrap();
    let junk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        if long.write_all(&junk).await.is_err() {
            break;
        }
    }
    // Nothing at all: the handshake's own timeout.
    let _idle = TcpStream::connect(addr).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(90), server).await.expect("a handshake was held").unwrap();
    assert!(r[0].0 < Duration::from_secs(20), "{r:?}");
    assert!(r[1].0 <= omnipeer_nmdc::handshake::HANDSHAKE_TIMEOUT + Duration::from_secs(5), "{r:?}");
}
