//! Ministreaming over the loopback TCP transport: 10 MB echo, 100 concurrent streams on one
//! connection, refused and timed-out connects.

use omnipeer_node::ministream::{Config, Endpoint, Listener, Stream};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn echo_listener() -> SocketAddr {
    let mut l = Listener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok(s) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(s);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
        drop(l);
    });
    addr
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `data` and reads as many bytes back, concurrently.
async fn round_trip(s: Stream, data: Vec<u8>) -> Vec<u8> {
    let len = data.len();
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w
    });
    let mut got = vec![0u8; len];
    r.read_exact(&mut got).await.unwrap();
    let _w = writer.await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn echo_of_10_mb_is_intact() {
    let addr = echo_listener().await;
    let ep = Endpoint::default();
    let s = ep.connect(addr).await.unwrap();
    let data = pattern(7, 10 * 1024 * 1024);
    let got = tokio::time::timeout(Duration::from_secs(60), round_trip(s, data.clone())).await.unwrap();
    assert!(got == data, "echoed bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_streams_are_intact() {
    let addr = echo_listener().await;
    let ep = std::sync::Arc::new(Endpoint::default());
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let ep = ep.clone();
        tasks.push(tokio::spawn(async move {
            let s = ep.connect(addr).await.unwrap();
            let data = pattern(i + 1, 50_000 + i as usize * 997);
            let got = round_trip(s, data.clone()).await;
            assert!(got == data, "stream {i} differs");
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .unwrap();
}

/// A peer speaking raw frames: answers each SYN with `reply(client id)` (or nothing).
async fn raw_peer(reply: Option<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut msg).await.unwrap();
            assert_eq!(msg[0], 0xA1);
            assert_eq!(msg.len(), 4 + 32, "SYN payload is the 32-byte destination key");
            if let Some(ty) = reply {
                s.write_all(&[0, 0, 0, 4, ty, msg[1], msg[2], msg[3]]).await.unwrap();
            }
        }
    });
    addr
}

#[tokio::test]
async fn refused_connect_is_an_error() {
    let addr = raw_peer(Some(0x52)).await;
    let e = Endpoint::default().connect(addr).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn unanswered_connect_times_out() {
    let addr = raw_peer(None).await;
    let ep = Endpoint::new(Config { connect_timeout: Duration::from_millis(300), ..Config::default() });
    let t0 = std::time::Instant::now();
    let e = ep.connect(addr).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(t0.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn no_listener_is_a_transport_error() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    assert!(Endpoint::default().connect(addr).await.is_err());
}

#[tokio::test]
async fn server_close_gives_eof_after_data() {
    let mut l = Listener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = l.local_addr();
    tokio::spawn(async move {
        let mut s = l.accept().await.unwrap();
        s.write_all(b"hello, ").await.unwrap();
        s.write_all(b"world").await.unwrap();
        s.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut s = Endpoint::default().connect(addr).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"hello, world");
    // No half-close: writing to a stream the peer closed fails.
    let e = s.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_to_one_peer_share_one_tcp_connection() {
    let target = echo_listener().await;
    // A forwarder in front of the listener counts the TCP connections made through it.
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = front.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut b = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
        }
    });
    let ep = std::sync::Arc::new(Endpoint::default());
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let ep = ep.clone();
        tasks.push(tokio::spawn(async move {
            let s = ep.connect(addr).await.unwrap();
            let data = pattern(i + 100, 10_000);
            assert!(round_trip(s, data.clone()).await == data);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn syn_not_accepted_in_time_is_refused() {
    let cfg = Config { accept_timeout: Duration::from_millis(300), ..Config::default() };
    let mut l = Listener::bind_with("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
    let addr = l.local_addr();
    let ep = Endpoint::default();
    let e = ep.connect(addr).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    // The refused stream is skipped; a later one is accepted.
    let accepting = tokio::spawn(async move {
        let mut s = l.accept().await.unwrap();
        s.write_all(b"ok").await.unwrap();
        s.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let mut s = ep.connect(addr).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ok");
    accepting.abort();
}

/// Reads one length-framed message from a raw peer's socket.
async fn read_frame(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut msg).await.unwrap();
    msg
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

/// A frame of 0 to 3 bytes holds no ministreaming message (docs/protocols/ministream.md#loopback:
/// such a message is dropped). It is dropped alone: both streams on the connection go on,
/// in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_frames_are_dropped_alone_and_other_streams_go_on() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        // Two SYNs; answer them with server ids 00 00 01 and 00 00 02.
        let mut clients = Vec::new();
        for sid in 1u8..=2 {
            let syn = read_frame(&mut s).await;
            assert_eq!(syn[0], 0xA1);
            let cid = [syn[1], syn[2], syn[3]];
            s.write_all(&framed(&[0x51, cid[0], cid[1], cid[2], 0, 0, sid])).await.unwrap();
            clients.push(cid);
        }
        let data = |cid: [u8; 3], text: &[u8]| framed(&[&[0x50, cid[0], cid[1], cid[2]][..], text].concat());
        s.write_all(&data(clients[0], b"one-a ")).await.unwrap();
        s.write_all(&data(clients[1], b"two-a ")).await.unwrap();
        // The short frames: 0, 1 (not the FF ping), 2 and 3 bytes.
        for short in [&[][..], &[0x50], &[0x50, clients[0][0]], &[0x50, clients[1][0], clients[1][1]]] {
            s.write_all(&framed(short)).await.unwrap();
        }
        s.write_all(&data(clients[0], b"one-b")).await.unwrap();
        s.write_all(&data(clients[1], b"two-b")).await.unwrap();
        // Each stream still carries data the other way: one message from each.
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(read_frame(&mut s).await);
        }
        got.sort();
        assert_eq!(got, vec![b"\xA0\x00\x00\x01up-one".to_vec(), b"\xA0\x00\x00\x02up-two".to_vec()]);
        for cid in &clients {
            s.write_all(&framed(&[0x52, cid[0], cid[1], cid[2]])).await.unwrap();
        }
        // Keep the connection until the client side is done with it.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    });
    let ep = Endpoint::default();
    let mut one = ep.connect(addr).await.unwrap();
    let mut two = ep.connect(addr).await.unwrap();
    let mut buf = vec![0u8; 11];
    tokio::time::timeout(Duration::from_secs(20), one.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf, b"one-a one-b");
    tokio::time::timeout(Duration::from_secs(20), two.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf, b"two-a two-b");
    one.write_all(b"up-one").await.unwrap();
    one.flush().await.unwrap();
    two.write_all(b"up-two").await.unwrap();
    two.flush().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), one.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    tokio::time::timeout(Duration::from_secs(20), two.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    drop((one, two));
    tokio::time::timeout(Duration::from_secs(20), peer).await.unwrap().unwrap();
}

/// A stream whose reader stops does not buffer without end: the writer's writes stop
/// being taken once the reader's queue, its receive window, the drivers' buffers and the
/// socket buffers are full (well under [`FLOOD`]); when the reader reads again (the driver
/// is woken by the reader making room, not by every chunk it takes) everything arrives
/// intact, and a second stream on the same connection carries data after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_bounds_buffering_and_resumes_intact() {
    /// What the writer tries to push while nobody reads.
    const FLOOD: usize = 64 * 1024 * 1024;
    /// The most that may be taken meanwhile: receive window (256 KiB) and stream queue
    /// (4 x 32 KiB) at the reader, two drivers' buffers (256 KiB output, 4 messages read
    /// ahead), the command queue (64 x 32 KiB), and loopback socket buffers (a few MiB
    /// each way with autotuning). Unbounded buffering would take all of FLOOD.
    const BOUND: usize = 24 * 1024 * 1024;
    let mut l = Listener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = l.local_addr();
    let ep = Endpoint::default();
    let (a, ra) = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(ep.connect(addr), l.accept()) })
        .await
        .unwrap();
    let (a, mut ra) = (a.unwrap(), ra.unwrap());
    let data = std::sync::Arc::new(pattern(11, FLOOD));
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (d, t) = (data.clone(), taken.clone());
    let writer = tokio::spawn(async move {
        let mut a = a;
        for chunk in d.chunks(64 * 1024) {
            a.write_all(chunk).await.unwrap();
            t.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
        a
    });
    // Wait until the writer is stuck: no progress for 2 s (or, if buffering were
    // unbounded, until it wrote everything).
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = taken.load(std::sync::atomic::Ordering::SeqCst);
        if now == last || writer.is_finished() {
            break;
        }
        last = now;
    }
    let stuck_at = taken.load(std::sync::atomic::Ordering::SeqCst);
    assert!(stuck_at < BOUND, "{stuck_at} bytes taken from a writer whose reader stopped");
    assert!(!writer.is_finished());
    // The reader comes back: everything arrives, in order.
    let mut got = vec![0u8; FLOOD];
    tokio::time::timeout(Duration::from_secs(120), ra.read_exact(&mut got)).await.unwrap().unwrap();
    assert!(got[..] == data[..], "bytes differ after the stall");
    let _a = writer.await.unwrap();
    // The connection still carries other streams.
    let (b, rb) = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(ep.connect(addr), l.accept()) })
        .await
        .unwrap();
    let (mut b, mut rb) = (b.unwrap(), rb.unwrap());
    b.write_all(b"after").await.unwrap();
    let mut five = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(30), rb.read_exact(&mut five)).await.unwrap().unwrap();
    assert_eq!(&five, b"after");
}
