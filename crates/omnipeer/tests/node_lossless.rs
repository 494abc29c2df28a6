//! Lossless events (issue 13, item 3), seen through the API of a running node:
//!
//! - a fake hub (a raw socket speaking NMDC) sends 20,000 main-chat lines in one burst while
//!   a WebSocket client of `/api/events` reads nothing: every line is in the chat history
//!   (`GET /api/chats/messages`), in order, and the WebSocket client, which fell behind,
//!   gets a `resync` event (it is told to re-read, rather than silently missing lines);
//! - a fake Soulseek user answers one search with 100,000 results in a burst: every one
//!   within the node's per-search limits (2000 results, 64 sources each; here 2000 files
//!   from 50 folders, 50 sources each) reaches `GET /api/searches/{id}`.
//!
//! Both with the node's resident memory bounded.

mod omni;

use omni::node::{free_port, server_config, wait_for, Node, Ports};
use omnipeer_slsk::framing::{FrameKind, FrameReader};
use omnipeer_slsk::peer::{PeerInit, PeerMessage, SearchResponse};
use omnipeer_slsk::server::{ServerRequest, ServerResponse};
use omnipeer_slsk::shares::SharedFile;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Main-chat lines in the burst.
const LINES: usize = 20_000;
/// Padding of each line: the burst (about 20 MB of events) is far more than a WebSocket's
/// socket buffers and the node's fan-out buffer hold, so a client that does not read lags.
const PAD: usize = 1000;
/// A generous bound on the node's resident memory during a burst (KiB).
const RSS_BOUND_KIB: u64 = 600 * 1024;

fn read_until(s: &mut std::net::TcpStream, needle: &[u8]) {
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = s.read(&mut b).expect("the node's client");
        assert!(n > 0, "the node's client left: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&b[..n]);
    }
}

/// The fake hub: logs `nick` in, then, once `go` says so, sends the burst; keeps the
/// connection open until `done`.
fn fake_hub(
    listener: std::net::TcpListener,
    nick: &str,
    go: std::sync::mpsc::Receiver<()>,
    done: std::sync::mpsc::Receiver<()>,
) {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"$Lock EXTENDEDPROTOCOLABCABCABCABCABCABC Pk=fakehub|$HubName fake|").unwrap();
    read_until(&mut s, format!("$ValidateNick {nick}|").as_bytes());
    s.write_all(format!("$Hello {nick}|").as_bytes()).unwrap();
    read_until(&mut s, b"$MyINFO");
    // Whatever else the client says is read and dropped.
    let mut r = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while r.read(&mut b).is_ok_and(|n| n > 0) {}
    });
    go.recv().unwrap();
    let pad = "x".repeat(PAD);
    let mut burst = Vec::with_capacity(LINES * (PAD + 32));
    for i in 0..LINES {
        write!(burst, "<talker> line {i:05} {pad}|").unwrap();
    }
    s.write_all(&burst).unwrap();
    let _ = done.recv();
}

fn ws_url(node: &Node, api: u16) -> String {
    match &node.token {
        Some(t) => format!("ws://127.0.0.1:{api}/api/events?token={t}"),
        None => format!("ws://127.0.0.1:{api}/api/events"),
    }
}

#[test]
fn a_burst_of_hub_chat_reaches_the_history_whole_and_a_slow_websocket_is_told_to_resync() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let hub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hub_port = hub.local_addr().unwrap().port();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let hub_thread = std::thread::spawn(move || fake_hub(hub, "alice", go_rx, done_rx));
    let config = format!("{}[nmdc_client]\nhub = \"127.0.0.1:{hub_port}\"\n", server_config("alice", p));
    let node = Node::start(&t.path().join("a"), &config, p.api);
    // A WebSocket client that reads nothing while the burst arrives.
    let (mut ws, _) = tungstenite::connect(ws_url(&node, p.api).as_str()).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    go_tx.send(()).unwrap();
    // Every line reaches the history, in order.
    let mut lines: Vec<String> = Vec::new();
    let mut max_rss = 0;
    let whole = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&format!("{LINES} lines in the chat history"), 120, || {
            max_rss = max_rss.max(node.omni.rss_kib());
            let after = match lines.len() {
                0 => String::new(),
                _ => format!("&after={}", lines.last().unwrap().split(' ').next().unwrap()),
            };
            let page = node.get(&format!("/api/chats/messages?chat=nmdc:hub&limit=1000{after}"));
            for m in page.as_array().unwrap() {
                if m["nick"] == "talker" {
                    lines.push(format!("{} {}", m["id"], m["text"].as_str().unwrap()));
                }
            }
            (lines.len() >= LINES).then_some(())
        })
    }));
    assert!(whole.is_ok(), "{} of {LINES} lines in the chat history", lines.len());
    assert_eq!(lines.len(), LINES);
    for (i, l) in lines.iter().enumerate() {
        let text = l.split_once(' ').unwrap().1;
        assert!(text.starts_with(&format!("line {i:05} ")), "line {i} is {text:.20}");
    }
    eprintln!("node VmRSS peak seen: {max_rss} KiB");
    assert!(max_rss < RSS_BOUND_KIB, "the node grew to {max_rss} KiB");
    // The slow WebSocket client missed events, and is told so.
    let mut chat_events = 0;
    let resync = loop {
        let m = ws.read().expect("a resync event within 30 s");
        let Ok(text) = m.to_text() else { continue };
        let Ok(ev) = serde_json::from_str::<Value>(text) else { continue };
        match ev["type"].as_str() {
            Some("chat") => chat_events += 1,
            Some("resync") => break ev,
            _ => {}
        }
    };
    assert!(resync["missed"].as_u64().unwrap() > 0, "{resync}");
    assert!(chat_events < LINES, "{chat_events}");
    done_tx.send(()).unwrap();
    drop(node);
    hub_thread.join().unwrap();
}

/// Results in the burst: 2000 files (the node's per-search limit) in 50 folders each.
const FILES: usize = 2000;
const FOLDERS: usize = 50;
/// Files per FileSearchResponse.
const PER_MESSAGE: usize = 1000;

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

/// A user logged in to `server` that answers a search for "flood" with
/// `FILES * FOLDERS` results, [`PER_MESSAGE`] per message, as fast as it can write.
async fn flooder(server: SocketAddr, logged_in: std::sync::mpsc::Sender<()>) {
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(&ServerRequest::login("flooder", "pw", 160, 1).encode()).await.unwrap();
    let mut r = FrameReader::new(FrameKind::Server);
    let reply = read_frame(&mut s, &mut r).await.expect("no login reply");
    assert!(matches!(ServerResponse::from_frame(&reply), Ok(ServerResponse::LoginSuccess { .. })));
    s.write_all(&ServerRequest::SetWaitPort { port: u32::from(free_port()), obfuscation: None }.encode())
        .await
        .unwrap();
    s.write_all(&ServerRequest::SetStatus { status: omnipeer_slsk::UserStatus::Online }.encode()).await.unwrap();
    logged_in.send(()).unwrap();
    let mut pending: Vec<(String, u32)> = Vec::new();
    while let Some(f) = read_frame(&mut s, &mut r).await {
        match ServerResponse::from_frame(&f) {
            Ok(ServerResponse::FileSearch { user, token, query }) if query.contains("flood") => {
                s.write_all(&ServerRequest::GetPeerAddress { user: user.clone() }.encode()).await.unwrap();
                pending.push((user, token));
            }
            Ok(ServerResponse::GetPeerAddress { user, ip, port, .. }) => {
                let addr = SocketAddr::from((ip, port as u16));
                for (_, token) in pending.iter().filter(|(u, _)| *u == user) {
                    let token = *token;
                    tokio::spawn(async move {
                        let mut p = TcpStream::connect(addr).await.unwrap();
                        let init = PeerInit::PeerInit { user: "flooder".into(), conn_type: "P".into(), token: 1 };
                        p.write_all(&init.encode()).await.unwrap();
                        let all: Vec<usize> = (0..FILES * FOLDERS).collect();
                        for chunk in all.chunks(PER_MESSAGE) {
                            let files = chunk
                                .iter()
                                .map(|g| {
                                    let (folder, file) = (g / FILES, g % FILES);
                                    SharedFile::new(
                                        format!("Flood\\d{folder:02}\\flood {file:04}.mp3"),
                                        1000 + file as u64,
                                    )
                                })
                                .collect();
                            let resp = SearchResponse {
                                user: "flooder".into(),
                                token,
                                files,
                                slot_free: true,
                                avg_speed: 0,
                                queue_len: 0,
                                unknown: Some(0),
                                private_files: None,
                            };
                            p.write_all(&PeerMessage::FileSearchResponse(resp).encode()).await.unwrap();
                        }
                        // Held open until the test ends.
                        let mut b = [0u8; 1024];
                        while p.read(&mut b).await.is_ok_and(|n| n > 0) {}
                    });
                }
                pending.retain(|(u, _)| *u != user);
            }
            _ => {}
        }
    }
}

#[test]
fn a_burst_of_soulseek_results_keeps_every_one_within_the_search_limit() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let node = Node::start(&t.path().join("a"), &server_config("alice", p), p.api);
    let server: SocketAddr = format!("127.0.0.1:{}", p.slsk).parse().unwrap();
    let (tx, logged_in) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(flooder(server, tx));
    });
    logged_in.recv_timeout(Duration::from_secs(30)).expect("the flooder logged in");
    let (code, s) = node.post("/api/searches", json!({ "query": "flood" }));
    assert_eq!(code, 201, "{s}");
    let id = s["id"].as_u64().unwrap();
    let mut max_rss = 0;
    let mut last = (0, 0);
    let want = (FILES, FILES * FOLDERS);
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The list's counts while the burst arrives (as a user watching them would);
        // the whole search, every source of every row, once they are all in.
        wait_for("every result of the burst", 120, || {
            max_rss = max_rss.max(node.omni.rss_kib());
            let list = node.get("/api/searches");
            let s = list.as_array()?.iter().find(|s| s["id"].as_u64() == Some(id))?;
            last = (s["result_count"].as_u64()? as usize, s["source_count"].as_u64()? as usize);
            if last == want {
                return Some(());
            }
            std::thread::sleep(Duration::from_millis(500));
            None
        });
        let mut rows = Vec::new();
        while rows.len() < want.0 {
            let page = node.get(&format!("/api/searches/{id}?offset={}&limit=500", rows.len()));
            let page = page["results"].as_array().expect("a page of results").clone();
            assert!(!page.is_empty(), "rows end at {} of {}", rows.len(), want.0);
            rows.extend(page);
        }
        let sources: usize = rows.iter().map(|r| r["sources"].as_array().map_or(0, Vec::len)).sum();
        assert_eq!((rows.len(), sources), want, "the rows against the counts");
        json!({ "results": rows })
    }));
    let s = got.unwrap_or_else(|_| panic!("(results, sources) {last:?}, want {want:?}"));
    for r in s["results"].as_array().unwrap() {
        assert_eq!(r["sources"].as_array().unwrap().len(), FOLDERS, "{}", r["name"]);
    }
    eprintln!("node VmRSS peak seen: {max_rss} KiB");
    assert!(max_rss < RSS_BOUND_KIB, "the node grew to {max_rss} KiB");
}
