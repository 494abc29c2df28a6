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

/// What the lying user says and sends.
struct Script {
    /// The size in its search result.
    result_size: u64,
    /// The size its n-th TransferRequest announces (the last one again after that).
    announces: Vec<u64>,
    /// Bytes it sends on an F connection before closing.
    send: usize,
    /// TransferRequests sent so far.
    sent: std::sync::atomic::AtomicUsize,
}

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

/// Answer on a P connection: a QueueUpload gets a TransferRequest as the script says; an
/// allowed transfer gets an F connection with the script's bytes.
async fn serve_p(mut s: TcpStream, mut r: FrameReader, node_addr: Arc<Mutex<Option<SocketAddr>>>, script: Arc<Script>) {
    let mut token = 5000u32;
    while let Some(f) = read_frame(&mut s, &mut r).await {
        match PeerMessage::from_frame(&f) {
            Ok(PeerMessage::QueueUpload { filename }) => {
                token += 1;
                let n = script.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let size = script.announces[n.min(script.announces.len() - 1)];
                let req = PeerMessage::TransferRequest {
                    direction: TransferDirection::Upload,
                    token,
                    filename,
                    size: Some(size),
                };
                if s.write_all(&req.encode()).await.is_err() {
                    return;
                }
            }
            Ok(PeerMessage::TransferResponse { token, reply: TransferReply::Allowed { .. } }) => {
                let Some(addr) = *node_addr.lock().unwrap() else {
                    continue;
                };
                let send = script.send;
                tokio::spawn(async move {
                    let Ok(mut f) = TcpStream::connect(addr).await else {
                        return;
                    };
                    let _ = f
                        .write_all(
                            &PeerInit::PeerInit { user: "liar".into(), conn_type: "F".into(), token: 0 }.encode(),
                        )
                        .await;
                    let _ = f.write_all(&token.to_le_bytes()).await;
                    let mut off = [0u8; 8];
                    if f.read_exact(&mut off).await.is_err() {
                        return;
                    }
                    let _ = f.write_all(&vec![0x42u8; send]).await;
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
async fn liar(server: SocketAddr, script: Arc<Script>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let node_addr: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let na = node_addr.clone();
    let sc = script.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (na, sc) = (na.clone(), sc.clone());
            tokio::spawn(async move {
                let mut r = FrameReader::new(FrameKind::PeerInit);
                let Some(init) = read_frame(&mut s, &mut r).await else {
                    return;
                };
                if matches!(PeerInit::from_frame(&init), Ok(PeerInit::PeerInit { ref conn_type, .. }) if conn_type == "P")
                {
                    r.set_kind(FrameKind::Peer);
                    serve_p(s, r, na, sc).await;
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
                    let (na, sc) = (node_addr.clone(), script.clone());
                    tokio::spawn(async move {
                        let Ok(mut s) = TcpStream::connect(addr).await else {
                            return;
                        };
                        let init = PeerInit::PeerInit { user: "liar".into(), conn_type: "P".into(), token: 1 }.encode();
                        let resp = SearchResponse {
                            user: "liar".into(),
                            token,
                            files: vec![SharedFile::new(FILE, sc.result_size)],
                            slot_free: true,
                            avg_speed: 0,
                            queue_len: 0,
                            unknown: Some(0),
                            private_files: None,
                        };
                        if s.write_all(&init).await.is_err()
                            || s.write_all(&PeerMessage::FileSearchResponse(resp).encode()).await.is_err()
                        {
                            return;
                        }
                        // The node may send its QueueUpload on this same connection.
                        serve_p(s, FrameReader::new(FrameKind::Peer), na, sc).await;
                    });
                }
                pending.retain(|(u, _)| *u != user);
            }
            _ => {}
        }
    }
}

fn partial_len(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).max().unwrap_or(0))
        .unwrap_or(0)
}

/// A node that runs the servers, a liar following `script` logged in to its Soulseek
/// server, and the id of the transfer of the liar's search result, queued through the API.
fn node_and_queued_lie(t: &Path, script: Script) -> (Node, i64) {
    let p = Ports::free();
    let dir = t.join("a");
    let node = Node::start(&dir, &server_config("alice", p), p.api);
    let server: SocketAddr = format!("127.0.0.1:{}", p.slsk).parse().unwrap();
    let script = Arc::new(script);
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(liar(server, script));
    });
    let r = wait_for("the liar's search result", 60, || {
        let (code, s) = node.post("/api/searches", json!({ "query": "lies size" }));
        assert_eq!(code, 201, "{s}");
        let id = s["id"].as_u64().unwrap();
        for _ in 0..40 {
            let s = node.get(&format!("/api/searches/{id}"));
            if let Some(r) =
                s["results"].as_array().and_then(|a| a.iter().find(|r| r["name"] == "lies about size.txt").cloned())
            {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    let (code, tr) = node.post("/api/transfers", json!({"result": r["id"], "network": "slsk"}));
    assert_eq!(code, 201, "{tr}");
    (node, tr["id"].as_i64().unwrap())
}

/// Watch transfer `id` until `attempts` attempts have failed with `want` in their error,
/// checking at every look that its partial file holds at most `max` bytes.
fn watch_refusals(node: &Node, id: i64, want: &str, attempts: usize, max: u64) -> serde_json::Value {
    let incomplete = node.dir.join("incomplete").join(id.to_string());
    let mut seen = 0;
    let mut last_retries = -1;
    let t = wait_for(&format!("{attempts} attempts refused with {want:?}"), 120, || {
        let t = node.get(&format!("/api/transfers/{id}"));
        assert!(partial_len(&incomplete) <= max, "the partial file grew to {} bytes: {t}", partial_len(&incomplete));
        assert_ne!(t["state"], "done", "{t}");
        let retries = t["retries"].as_i64().unwrap_or(0);
        let error = t["error"].as_str().unwrap_or("");
        if error.contains(want) && retries != last_retries {
            last_retries = retries;
            seen += 1;
        }
        (seen >= attempts).then_some(t)
    });
    assert!(partial_len(&incomplete) <= max, "{t}");
    t
}

#[test]
fn a_soulseek_peer_offering_another_size_fails_the_transfer_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let script = Script { result_size: 14, announces: vec![OFFERED], send: 4 << 20, sent: Default::default() };
    let (node, id) = node_and_queued_lie(t.path(), script);
    // Two failed attempts (the first and a retry), each with the reason in the API.
    let t = watch_refusals(&node, id, &format!("peer offered {OFFERED} bytes of a file of 14"), 2, 14);
    assert_eq!(t["size"], 14, "{t}");
}

#[test]
fn a_result_without_a_size_takes_the_first_announced_one_and_keeps_it() {
    let t = tempfile::tempdir().unwrap();
    // The result says 0 bytes (unknown): the first TransferRequest's 20 is taken; the
    // liar sends 10 bytes and closes. Every later offer of 4 GiB is refused against 20.
    let script = Script { result_size: 0, announces: vec![20, OFFERED], send: 10, sent: Default::default() };
    let (node, id) = node_and_queued_lie(t.path(), script);
    let t = watch_refusals(&node, id, &format!("peer offered {OFFERED} bytes of a file of 20"), 2, 20);
    assert_eq!(t["size"], 20, "{t}");
    assert_eq!(partial_len(&node.dir.join("incomplete").join(id.to_string())), 10, "{t}");
}
