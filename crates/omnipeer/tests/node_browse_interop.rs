//! Browse and folder download from a real Direct Connect client: EiskaltDC++ 2.4.2
//! (daemon) shares an album folder on node A's hub; node B browses it (its
//! `files.xml.bz2`, as EiskaltDC++ writes it) through the API and the CLI and downloads
//! the folder whole: the files land under downloads/<folder>/ with the shared files'
//! SHA-256 (and their TTHs from the list checked on arrival).
//!
//! Skips (and passes) when eiskaltdcpp-daemon is not installed
//! (`scripts/install-test-deps.sh`).

mod support;

mod omni;

use omni::node::{joining_config, server_config, wait_for, Node, Ports};
use serde_json::json;
use support::eiskalt::{Eiskalt, EiskaltConfig};
use support::{free_port, sha256_file, write_test_file};

/// Node A, running the hub and the Soulseek server the real peers and node B join.
fn hub_and_server(t: &std::path::Path) -> (Node, Ports) {
    let pa = Ports::free();
    let a_dir = t.join("a");
    std::fs::create_dir_all(a_dir.join("share")).unwrap();
    std::fs::write(a_dir.join("share/a.txt"), "a").unwrap();
    (Node::start(&a_dir, &server_config("alice", pa), pa.api), pa)
}

#[test]
fn node_browses_eiskaltdcpp_and_downloads_a_folder() {
    if !Eiskalt::available() {
        eprintln!("skipping: eiskaltdcpp-daemon is not installed (scripts/install-test-deps.sh)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (_a, pa) = hub_and_server(t.path());
    let ek_share = t.path().join("ek-share");
    let files = ["Album/01 First.flac", "Album/02 Second.flac", "Album/art/front.png"];
    for (i, rel) in files.iter().enumerate() {
        let p = ek_share.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_test_file(&p, 150_000 + i * 1_000, 40 + i as u64);
    }
    let ek = Eiskalt::start(EiskaltConfig {
        nick: "ekuser".into(),
        hub: format!("127.0.0.1:{}", pa.hub),
        share: Some(ek_share.clone()),
        active_port: Some(free_port()),
        ..Default::default()
    });
    assert!(ek.wait_logged_in(std::time::Duration::from_secs(30)), "{}", ek.daemon_output());
    let b_api = free_port();
    let b = Node::start(&t.path().join("b"), &joining_config("bob", pa, b_api, ""), b_api);

    let (code, v) = wait_for("a browse of ekuser", 60, || {
        let (code, v) = b.get_status("/api/browse?network=nmdc&user=ekuser&q=album");
        (code == 200).then_some((code, v))
    });
    assert_eq!(code, 200);
    let album = v["hits"].as_array().unwrap().iter().find(|h| h["kind"] == "folder").expect("the Album folder").clone();
    assert_eq!(album["files"], 3, "{v}");
    let path = album["path"].as_str().unwrap().to_owned();
    let (code, tree) = b.get_status(&format!("/api/browse?network=nmdc&user=ekuser&path={}", path.replace('\\', "/")));
    assert_eq!(code, 200, "{tree}");
    assert!(tree["folder"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tth"].as_str().is_some_and(|t| t.len() == 39)));

    let (code, p) =
        b.post("/api/transfers", json!({"network": "nmdc", "user": "ekuser", "path": path, "folder": true}));
    assert_eq!(code, 201, "{p}");
    let group = p["group"].as_i64().unwrap();
    wait_for("the folder from EiskaltDC++", 90, || {
        let gs = b.get("/api/transfers/groups");
        let g = gs.as_array()?.iter().find(|g| g["id"] == group)?.clone();
        assert_ne!(g["state"], "failed", "{g} {}", b.get("/api/transfers"));
        (g["state"] == "done").then_some(())
    });
    for rel in files {
        assert_eq!(sha256_file(&b.dir.join("downloads").join(rel)), sha256_file(&ek_share.join(rel)), "{rel}");
    }
    // The CLI shows the same share, one line per folder and file.
    let (code, out, err) = b.cli(&["browse", "nmdc:ekuser"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.ends_with("Album\\art\\front.png")), "{out}");
    assert!(out.lines().any(|l| l.ends_with("Album\\  (3 files)")), "{out}");
}

mod slsk_support;

/// Browse and folder download from the real Soulseek clients Nicotine+ 3.3.11 and aioslsk
/// 1.7.1 (headless), logged in to node A's Soulseek server: node B browses each
/// (SharedFileListRequest) and downloads its Album folder; the files land under
/// downloads/<user>/<folder>/ (a destination template) with the shared files' SHA-256.
/// Skips (and passes) when the clients' venv is missing (`scripts/install-slsk-peers.sh`).
#[test]
fn node_browses_nicotine_and_aioslsk_and_downloads_a_folder() {
    if !slsk_support::require("node_browses_nicotine_and_aioslsk_and_downloads_a_folder") {
        return;
    }
    use slsk_support::{Client, Peer, PeerOptions};
    let t = tempfile::tempdir().unwrap();
    let (_a, pa) = hub_and_server(t.path());
    let server = format!("127.0.0.1:{}", pa.slsk);
    let files = ["Album/01 First.flac", "Album/02 Second.flac", "Album/art/front.png"];
    let mut peers = Vec::new();
    for (client, user) in [(Client::Nicotine, "nicouser"), (Client::Aioslsk, "aiouser")] {
        let mut opts = PeerOptions::new(user).listen_port(slsk_support::free_port());
        for (i, rel) in files.iter().enumerate() {
            opts = opts.file(rel, slsk_support::test_bytes(120_000 + i * 1_000, 60 + i as u64));
        }
        let p = Peer::spawn(client, &server, opts).expect("spawn the peer");
        p.wait_logged_in(std::time::Duration::from_secs(60)).unwrap_or_else(|e| panic!("{user}: {e}"));
        peers.push(p);
    }
    let b_api = free_port();
    let b = Node::start(&t.path().join("b"), &joining_config("bob", pa, b_api, ""), b_api);
    for p in &peers {
        let user = p.user.clone();
        let (code, v) = b.get_status(&format!("/api/browse?network=slsk&user={user}&q=album"));
        assert_eq!(code, 200, "{user}: {v}\n{}", p.stderr_tail(30));
        let album = v["hits"].as_array().unwrap().iter().find(|h| h["kind"] == "folder").expect("Album").clone();
        assert_eq!(album["files"], 3, "{user}: {v}");
        let (code, pl) = b.post(
            "/api/transfers",
            json!({"network": "slsk", "user": user, "path": album["path"], "destination": "{user}/{folder}"}),
        );
        assert_eq!(code, 201, "{user}: {pl}");
        let group = pl["group"].as_i64().unwrap();
        wait_for(&format!("the folder from {user}"), 120, || {
            let gs = b.get("/api/transfers/groups");
            let g = gs.as_array()?.iter().find(|g| g["id"] == group)?.clone();
            assert_ne!(g["state"], "failed", "{g} {}", b.get("/api/transfers"));
            (g["state"] == "done").then_some(())
        });
        for rel in files {
            let got = b.dir.join("downloads").join(&user).join(rel);
            assert_eq!(sha256_file(&got), sha256_file(&p.share_dir().join(rel)), "{user}: {rel}");
        }
    }
}
