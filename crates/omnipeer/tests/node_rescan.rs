//! A share rescan swaps the new index into the running NMDC and Soulseek sessions: a
//! file added to node A's share while it runs is found (and downloaded) by node B on both
//! networks; a user of the hub sees alice's share grow in a new `$MyINFO` and never sees
//! her quit or log in again; downloads B runs from A across the rescan finish on their
//! first attempt.

mod omni;

use omni::node::{content, joining_config, server_config, sha256_file, wait_for, Node, Ports};
use omnipeer_nmdc::client::{Event, HubSession, Output, SessionConfig};
use serde_json::json;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A plain NMDC user on A's hub, logged in with the sans-IO session machine, that keeps
/// every hub event: what any user of the hub sees of alice.
fn hub_watcher(hub_port: u16) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", hub_port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    std::thread::spawn(move || {
        let mut session = HubSession::new(SessionConfig::new("watcher"), Instant::now()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(o) = session.poll_output() {
                match o {
                    Output::Transmit(b) => {
                        if sock.write_all(&b).is_err() {
                            return;
                        }
                    }
                    Output::Event(ev) => out.lock().unwrap().push(ev),
                    Output::Timeout(_) => break,
                }
            }
            match sock.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => session.handle_input(Instant::now(), &buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
            session.handle_timeout(Instant::now());
        }
    });
    seen
}

fn share_file(a_dir: &Path, rel: &str, data: &[u8]) {
    let p = a_dir.join("share").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn a_file_added_while_running_is_found_on_both_networks_and_running_downloads_survive_the_rescan() {
    let t = tempfile::tempdir().unwrap();
    let pa = Ports::free();
    let a_dir = t.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    // 2 MiB/s on B for 16 MB per download: several seconds, long enough to rescan during.
    share_file(&a_dir, "big/Long One.bin", &content(16_000_000, 11));
    let a = Node::start(&a_dir, &server_config("alice", pa), pa.api);
    let b_api = omni::node::free_port();
    let b = Node::start(
        &t.path().join("b"),
        &joining_config("bob", pa, b_api, "[transfers]\nmax_download_kib = 2048\n"),
        b_api,
    );

    let r = b.search_until("long one", "Long One.bin", &["nmdc", "slsk"]);
    let mut ids = Vec::new();
    for network in ["nmdc", "slsk"] {
        let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": network}));
        assert_eq!(code, 201, "{tr}");
        ids.push(tr["id"].as_i64().unwrap());
    }
    for id in &ids {
        wait_for("the download under way", 30, || {
            let t = b.get(&format!("/api/transfers/{id}"));
            (t["state"] == "running" && t["bytes"].as_u64()? > 500_000).then_some(())
        });
    }

    let hub = hub_watcher(pa.hub);
    wait_for("alice in the watcher's user list", 20, || {
        hub.lock().unwrap().iter().any(|e| matches!(e, Event::UserJoined { nick, .. } if nick == "alice")).then_some(())
    });

    // A new file in A's share while both downloads run: the watcher rescans.
    share_file(&a_dir, "fresh/Brand New Tune.mp3", &content(300_000, 12));
    wait_for("A's share index with the new file", 20, || (a.get("/api/shares")["files"] == 2).then_some(()));
    for id in &ids {
        let t = b.get(&format!("/api/transfers/{id}"));
        assert!(t["state"] == "running" && t["retries"] == 0, "the rescan disturbed a running download: {t}");
    }

    // B finds it on both networks (NMDC answers by TTH, so it was hashed).
    let found = b.search_again_until("brand new tune", "Brand New Tune.mp3", &["nmdc", "slsk"], 45);
    assert_eq!(found["size"], 300_000);
    assert!(found["tth"].as_str().is_some_and(|t| t.len() == 39), "{found}");
    // And downloads it over each network: the new index serves it.
    let want = sha256_file(&a_dir.join("share/fresh/Brand New Tune.mp3"));
    for network in ["nmdc", "slsk"] {
        let (code, tr) = b.post("/api/transfers", json!({"result": found["id"], "network": network}));
        assert_eq!(code, 201, "{tr}");
        let done = b.wait_done(tr["id"].as_i64().unwrap(), 60);
        assert_eq!(sha256_file(Path::new(done["local_path"].as_str().unwrap())), want, "{network}");
    }

    // Every user of the hub saw alice's share grow by the new file's size, in a new
    // $MyINFO, and never saw her quit or log in again.
    wait_for("alice's new share size on the hub", 20, || {
        hub.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::UserUpdated { nick, info } if nick == "alice" && info.share_size == 16_300_000))
            .then_some(())
    });
    {
        let seen = hub.lock().unwrap();
        let left = seen.iter().any(|e| matches!(e, Event::UserLeft { nick } if nick == "alice"));
        let joins = seen.iter().filter(|e| matches!(e, Event::UserJoined { nick, .. } if nick == "alice")).count();
        assert!(!left && joins == 1, "alice left or rejoined the hub during the rescan: {seen:?}");
    }

    // The downloads that ran across the rescan finished on their first attempt: A's
    // sessions (and their peer connections) were never torn down.
    let big = sha256_file(&a_dir.join("share/big/Long One.bin"));
    for id in &ids {
        let done = b.wait_done(*id, 60);
        assert_eq!(done["retries"], 0, "{done}");
        assert_eq!(sha256_file(Path::new(done["local_path"].as_str().unwrap())), big);
    }
}
