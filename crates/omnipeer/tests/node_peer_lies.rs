//! A node never writes more than the size the user chose (issue 12, item 5), seen through
//! the API: a Soulseek user offers a 14-byte file in a search result, then its
//! TransferRequest announces 4 GiB (and, if allowed, sends 4 MiB). The transfer fails with
//! "peer offered 4294967296 bytes of a file of 14", and across its retries the partial file
//! in `<data_dir>/incomplete/<id>/` never holds more than 14 bytes. The lying user is a raw
//! socket speaking the protocol by hand.

mod omni;

use omni::node::{server_config, wait_for, Node, Ports};
use omnipeer_slsk::framing::{FrameKind, FrameReader};
use omnipeer_slsk::peer::{PeerInit, PeerMessage, SearchResponse, TransferDirection, TransferReply};
use omnipeer_slsk::server::{ServerRequest, ServerResponse};
use omnipeer_slsk::shares::SharedFile;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const FILE: &str = "Pub\\lies about size.txt";
const OFFERED: u64 = 4 << 30;

async fn read_frame(s: &mut (impl AsyncReadExt + Unpin), r: &mut FrameReader) -> Option<omnipeer_slsk::framing::Frame> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = r.next_frame().ok()? {
            return Some(f);
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => r.push(&buf[..n]),
        }
    }
}

/// Answer on a P connection: a QueueUpload gets a TransferRequest of [`OFFERED`] bytes;
/// an allowed transfer gets an F connection with 4 MiB of data.
async fn serve_p(mut s: TcpStream, mut r: FrameReader, node_addr: Arc<Mutex<Option<SocketAddr>>>) {
    let mut token = 5000u32;
    while let Some(f) = read_frame(&mut s, &mut r).await {
        match PeerMessage::from_frame(&f) {
            Ok(PeerMessage::QueueUpload { filename }) => {
                token += 1;
                let req = PeerMessage::TransferRequest { direction: TransferDirection::Upload, token, filename, size: Some(OFFERED) };
                if s.write_all(&req.encode()).await.is_err() {
                    return;
                }
            }
            Ok(PeerMessage::TransferResponse { token, reply: TransferReply::Allowed { .. } }) => {
                let Some(addr) = *node_addr.lock().unwrap() else { continue };
                tokio::spawn(async move {
                    let Ok(mut f) = TcpStream::connect(addr).await else { return };
                    let _ = f.write_all(&PeerInit::PeerInit { user: "liar".into(), conn_type: "F".into(), token: 0 }.encode()).await;
                    let _ = f.write_all(&token.to_le_bytes()).await;
                    let mut off = [0u8; 8];
                    if f.read_exact(&mut off).await.is_err() {
                        return;
                    }
                    let _ = f.write_all(&vec![0x42u8; 4 << 20]).await;
                    let _ = f.shutdown().await;
                    let mut sink = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(20), f.read(&mut sink)).await;
                });
            }
            _ => {}
        }
    }
}

/// The lying user: logs in to `server`, answers searches for "lies" with a 14-byte file,
/// and serves P connections with [`serve_p`].
async fn liar(server: SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let node_addr: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let na = node_addr.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let na = na.clone();
            tokio::spawn(async move {
                let mut r = FrameReader::new(FrameKind::PeerInit);
                let Some(init) = read_frame(&mut s, &mut r).await else { return };
                if matches!(PeerInit::from_frame(&init), Ok(PeerInit::PeerInit { ref conn_type, .. }) if conn_type == "P") {
                    r.set_kind(FrameKind::Peer);
                    serve_p(s, r, na).await;
                }
            });
        }
    });
    let s = TcpStream::connect(server).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    out_tx.send(ServerRequest::login("liar", "pw", 160, 1).encode()).unwrap();
    let mut r = FrameReader::new(FrameKind::Server);
    // The server takes nothing else until it has answered the login.
    let reply = read_frame(&mut rd, &mut r).await.expect("no login reply");
    assert!(matches!(ServerResponse::from_frame(&reply), Ok(ServerResponse::LoginSuccess { .. })));
    out_tx.send(ServerRequest::SetWaitPort { port: u32::from(port), obfuscation: None }.encode()).unwrap();
    out_tx.send(ServerRequest::SetStatus { status: omnipeer_slsk::UserStatus::Online }.encode()).unwrap();
    // Searches waiting for their searcher's address.
    let mut pending: Vec<(String, u32)> = Vec::new();
    while let Some(f) = read_frame(&mut rd, &mut r).await {
        match ServerResponse::from_frame(&f) {
            Ok(ServerResponse::FileSearch { user, token, query }) if query.contains("lies") => {
                out_tx.send(ServerRequest::GetPeerAddress { user: user.clone() }.encode()).unwrap();
                pending.push((user, token));
            }
            Ok(ServerResponse::GetPeerAddress { user, ip, port, .. }) => {
                let addr = SocketAddr::from((ip, port as u16));
                *node_addr.lock().unwrap() = Some(addr);
                for (_, token) in pending.iter().filter(|(u, _)| *u == user) {
                    let token = *token;
                    let na = node_addr.clone();
                    tokio::spawn(async move {
                        let Ok(mut s) = TcpStream::connect(addr).await else { return };
                        let init = PeerInit::PeerInit { user: "liar".into(), conn_type: "P".into(), token: 1 }.encode();
                        let resp = SearchResponse {
                            user: "liar".into(),
                            token,
                            files: vec![SharedFile::new(FILE, 14)],
                            slot_free: true,
                            avg_speed: 0,
                            queue_len: 0,
                            unknown: Some(0),
                            private_files: None,
                        };
                        if s.write_all(&init).await.is_err() || s.write_all(&PeerMessage::FileSearchResponse(resp).encode()).await.is_err() {
                            return;
                        }
                        // The node may send its QueueUpload on this same connection.
                        serve_p(s, FrameReader::new(FrameKind::Peer), na).await;
                    });
                }
                pending.retain(|(u, _)| *u != user);
            }
            _ => {}
        }
    }
}

fn partial_len(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).max().unwrap_or(0)).unwrap_or(0)
}

#[test]
fn a_soulseek_peer_offering_another_size_fails_the_transfer_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let dir = t.path().join("a");
    let node = Node::start(&dir, &server_config("alice", p), p.api);
    let server: SocketAddr = format!("127.0.0.1:{}", p.slsk).parse().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(liar(server));
    });
    // The server must know the liar before the search goes out.
    std::thread::sleep(Duration::from_millis(500));
    let r = wait_for("the liar's search result", 60, || {
        let (code, s) = node.post("/api/searches", json!({ "query": "lies size" }));
        assert_eq!(code, 201, "{s}");
        let id = s["id"].as_u64().unwrap();
        for _ in 0..40 {
            let s = node.get(&format!("/api/searches/{id}"));
            if let Some(r) = s["results"].as_array().and_then(|a| a.iter().find(|r| r["name"] == "lies about size.txt").cloned()) {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    assert_eq!(r["size"], 14, "{r}");
    let (code, tr) = node.post("/api/transfers", json!({"result": r["id"], "network": "slsk"}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    let incomplete = dir.join("incomplete").join(id.to_string());
    let want = format!("peer offered {OFFERED} bytes of a file of 14");
    // Two failed attempts (the first and a retry), each with the reason in the API.
    let mut seen = 0;
    let mut last_retries = -1;
    let t = wait_for("two attempts refused with the reason", 120, || {
        let t = node.get(&format!("/api/transfers/{id}"));
        assert!(partial_len(&incomplete) <= 14, "the partial file grew to {} bytes: {t}", partial_len(&incomplete));
        assert_ne!(t["state"], "done", "{t}");
        let retries = t["retries"].as_i64().unwrap_or(0);
        if t["error"].as_str().is_some_and(|e| !e.is_empty()) && retries != last_retries {
            assert!(t["error"].as_str().unwrap().contains(&want), "{t}");
            last_retries = retries;
            seen += 1;
        }
        (seen >= 2).then_some(t)
    });
    assert!(partial_len(&incomplete) <= 14, "{t}");
}
