//! A download never writes more than the size the user chose (issue 12, item 5): a peer
//! that announces another length (NMDC `$ADCSND`, a Soulseek TransferRequest) is refused
//! with "peer offered N bytes of a file of M" before a byte is written, retries never grow
//! the partial file, and a peer that announces the right size but keeps sending is cut off
//! at it. The lying peers are raw sockets speaking the protocol by hand.

use omnipeer_nmdc::handshake::Role;
use omnipeer_nmdc::transfer::Identifier;
use omnipeer_nmdc::tth::Tth;
use omnipeer_node::nmdc::cc::{self, DownloadJob};
use omnipeer_node::slsk::client::{SlskClient, SlskClientConfig};
use omnipeer_slsk::framing::{FrameKind, FrameReader};
use omnipeer_slsk::peer::{PeerInit, PeerMessage, TransferDirection, TransferReply};
use omnipeer_slsk::server::{ServerRequest, ServerResponse};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::start_slsk;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 1000) as u8).collect()
}

fn len_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

const TTH: &str = "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ";

/// What the lying NMDC uploader does once asked.
#[derive(Clone, Copy)]
struct Lie {
    /// The length it announces in `$ADCSND` (from the start asked for).
    announce: u64,
    /// The bytes it then sends before closing.
    send: usize,
}

/// An NMDC uploader that completes a normal handshake (ours), then answers the `$ADCGET`
/// by hand with `lie`.
async fn lying_nmdc_uploader(lie: Lie, data: Arc<Vec<u8>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let data = data.clone();
            tokio::spawn(async move {
                let (_, _, mut got) = cc::handshake(&mut s, Role::Listener, "liar", false, None).await.unwrap();
                while !got.contains(&b'|') {
                    let mut b = [0u8; 1024];
                    let n = s.read(&mut b).await.unwrap();
                    assert!(n > 0, "closed before $ADCGET");
                    got.extend_from_slice(&b[..n]);
                }
                let line = String::from_utf8_lossy(&got[..got.iter().position(|&c| c == b'|').unwrap()]).into_owned();
                // $ADCGET file TTH/... <start> <bytes>
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f[0], "$ADCGET", "{line}");
                let start: usize = f[3].parse().unwrap();
                s.write_all(format!("$ADCSND {} {} {} {}|", f[1], f[2], start, lie.announce).as_bytes()).await.unwrap();
                let end = (start + lie.send).min(data.len());
                let _ = s.write_all(&data[start.min(end)..end]).await;
                let _ = s.shutdown().await;
                // Keep reading until the downloader closes, so our close is not a reset.
                let mut sink = vec![0u8; 64 * 1024];
                while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(20), s.read(&mut sink)).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn nmdc_fetch(addr: std::net::SocketAddr, out: &Path, size: u64) -> anyhow::Result<cc::Downloaded> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (peer, _, leftover) = cc::handshake(&mut s, Role::Connector, "getter", true, Some("liar")).await?;
    let job = DownloadJob {
        what: Identifier::Tth(Tth::from_base32(TTH).unwrap()),
        out: out.to_path_buf(),
        progress: Arc::new(AtomicU64::new(0)),
        total: Arc::new(AtomicU64::new(size)),
        control: Default::default(),
    };
    tokio::time::timeout(Duration::from_secs(60), cc::download(s, &peer, leftover, &job))
        .await
        .expect("the download hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmdc_peer_offering_another_size_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small.txt");
    // A 14-byte search result; the peer announces 300 MiB and sends 4 MiB of it.
    let addr = lying_nmdc_uploader(Lie { announce: 300 << 20, send: 4 << 20 }, Arc::new(pattern(4 << 20))).await;
    for attempt in 1..=3 {
        let r = nmdc_fetch(addr, &out, 14).await;
        let e = format!("{:#}", r.expect_err("a peer offering 300 MiB of a 14-byte file must fail"));
        assert!(e.contains(&format!("peer offered {} bytes of a file of 14", 300u64 << 20)), "attempt {attempt}: {e}");
        assert!(len_of(&out) <= 14, "attempt {attempt}: the partial file grew to {} bytes", len_of(&out));
    }
    // A partial file already longer than the file (left by an older version) is started over.
    std::fs::write(&out, vec![0u8; 1000]).unwrap();
    let addr = lying_nmdc_uploader(Lie { announce: 14, send: 14 }, Arc::new(pattern(14))).await;
    let d = nmdc_fetch(addr, &out, 14).await.unwrap();
    assert_eq!((d.size, d.resumed_from), (14, 0));
    assert_eq!(std::fs::read(&out).unwrap(), pattern(14));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmdc_peer_sending_past_the_size_is_cut_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.bin");
    let data = pattern(1000 + (2 << 20));
    // 400 bytes already here: the peer announces the right 600, then sends 2 MiB more.
    std::fs::write(&out, &data[..400]).unwrap();
    let addr = lying_nmdc_uploader(Lie { announce: 600, send: 600 + (2 << 20) }, Arc::new(data.clone())).await;
    let d = nmdc_fetch(addr, &out, 1000).await.unwrap();
    assert_eq!((d.size, d.resumed_from), (1000, 400));
    assert_eq!(len_of(&out), 1000);
    assert!(std::fs::read(&out).unwrap() == data[..1000], "bytes differ");
}

struct World {
    dir: tempfile::TempDir,
    addr: String,
    _stop: tokio_util::sync::DropGuard,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&dir.path().join("server.sqlite")).await;
    let addr = addr.to_string();
    World { dir, addr, _stop: stop.drop_guard() }
}

async fn client(w: &World, user: &str) -> SlskClient {
    SlskClient::start(SlskClientConfig {
        server: w.addr.clone(),
        user: user.into(),
        password: "pw".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        share: Vec::new(),
        slots: 1,
        uploads: None,
    })
    .await
    .unwrap()
}

async fn read_frame(s: &mut TcpStream, r: &mut FrameReader) -> Option<omnipeer_slsk::framing::Frame> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = r.next_frame().unwrap() {
            return Some(f);
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => r.push(&buf[..n]),
        }
    }
}

/// A Soulseek user `liar` (a raw socket logged in to the server) whose answer to a
/// QueueUpload is a TransferRequest announcing `announce` bytes; if the downloader allows
/// it, it opens an F connection to `getter_port` and sends `send` bytes of `data`.
async fn lying_slsk_uploader(w: &World, announce: u64, send: usize, data: Arc<Vec<u8>>, getter_port: Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = TcpStream::connect(&w.addr).await.unwrap();
    server.write_all(&ServerRequest::login("liar", "pw", 160, 1).encode()).await.unwrap();
    // The server takes nothing else until it has answered the login.
    let mut r = FrameReader::new(FrameKind::Server);
    let reply = read_frame(&mut server, &mut r).await.expect("no login reply");
    assert!(matches!(ServerResponse::from_frame(&reply), Ok(ServerResponse::LoginSuccess { .. })));
    server.write_all(&ServerRequest::SetWaitPort { port: u32::from(port), obfuscation: None }.encode()).await.unwrap();
    server.write_all(&ServerRequest::SetStatus { status: omnipeer_slsk::UserStatus::Online }.encode()).await.unwrap();
    // Keep the server session alive; what it says does not matter here.
    tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while let Ok(n) = server.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut token = 1000u32;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            token += 1;
            let (data, getter_port) = (data.clone(), getter_port.clone());
            tokio::spawn(async move {
                let mut r = FrameReader::new(FrameKind::PeerInit);
                let Some(init) = read_frame(&mut s, &mut r).await else {
                    return;
                };
                if !matches!(PeerInit::from_frame(&init), Ok(PeerInit::PeerInit { ref conn_type, .. }) if conn_type == "P")
                {
                    return;
                }
                r.set_kind(FrameKind::Peer);
                while let Some(f) = read_frame(&mut s, &mut r).await {
                    match PeerMessage::from_frame(&f) {
                        Ok(PeerMessage::QueueUpload { filename }) => {
                            let req = PeerMessage::TransferRequest {
                                direction: TransferDirection::Upload,
                                token,
                                filename,
                                size: Some(announce),
                            };
                            if s.write_all(&req.encode()).await.is_err() {
                                return;
                            }
                        }
                        Ok(PeerMessage::TransferResponse { token: t, reply: TransferReply::Allowed { .. } }) => {
                            // Allowed: send the bytes over an F connection.
                            let port = getter_port.load(std::sync::atomic::Ordering::Relaxed) as u16;
                            let mut f = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                            f.write_all(
                                &PeerInit::PeerInit { user: "liar".into(), conn_type: "F".into(), token: 0 }.encode(),
                            )
                            .await
                            .unwrap();
                            f.write_all(&t.to_le_bytes()).await.unwrap();
                            let mut off = [0u8; 8];
                            if f.read_exact(&mut off).await.is_err() {
                                return;
                            }
                            let from = (u64::from_le_bytes(off) as usize).min(data.len());
                            let end = (from + send).min(data.len());
                            let _ = f.write_all(&data[from..end]).await;
                            let _ = f.shutdown().await;
                            let mut sink = vec![0u8; 4096];
                            let _ = tokio::time::timeout(Duration::from_secs(20), f.read(&mut sink)).await;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slsk_transfer_request_of_another_size_is_refused_and_nothing_is_written() {
    let w = world().await;
    let getter_port = Arc::new(AtomicU64::new(0));
    // The user chose a 14-byte file; the peer offers 4 GiB (and would send 4 MiB of it).
    lying_slsk_uploader(&w, 4 << 30, 4 << 20, Arc::new(pattern(4 << 20)), getter_port.clone()).await;
    let getter = client(&w, "getter").await;
    getter_port.store(u64::from(getter.listen_port()), std::sync::atomic::Ordering::Relaxed);
    let out_dir = w.dir.path().join("incomplete");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("small.txt");
    for attempt in 1..=3 {
        let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let r = tokio::time::timeout(
            Duration::from_secs(90),
            getter.download_with("liar", "Pub\\small.txt", &out_dir, Some(14), progress, &Default::default()),
        )
        .await
        .expect("the download hung");
        let e = format!("{:#}", r.expect_err("a peer offering 4 GiB of a 14-byte file must fail"));
        assert!(e.contains(&format!("peer offered {} bytes of a file of 14", 4u64 << 30)), "attempt {attempt}: {e}");
        assert!(len_of(&out) <= 14, "attempt {attempt}: the partial file grew to {} bytes", len_of(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slsk_uploader_sending_past_the_size_is_cut_at_it() {
    let w = world().await;
    let getter_port = Arc::new(AtomicU64::new(0));
    let data = Arc::new(pattern(14 + (2 << 20)));
    // The right size announced, then 2 MiB more than it sent on the F connection.
    lying_slsk_uploader(&w, 14, 14 + (2 << 20), data.clone(), getter_port.clone()).await;
    let getter = client(&w, "getter").await;
    getter_port.store(u64::from(getter.listen_port()), std::sync::atomic::Ordering::Relaxed);
    let out_dir = w.dir.path().join("incomplete");
    std::fs::create_dir_all(&out_dir).unwrap();
    let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let (file, size, from) = tokio::time::timeout(
        Duration::from_secs(90),
        getter.download_with("liar", "Pub\\small.txt", &out_dir, Some(14), progress, &Default::default()),
    )
    .await
    .expect("the download hung")
    .unwrap();
    assert_eq!((size, from), (14, 0));
    assert_eq!(std::fs::read(&file).unwrap(), data[..14]);
}
