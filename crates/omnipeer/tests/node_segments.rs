//! Segmented downloads between whole nodes on loopback (`omnipeer_node::segments`): node A
//! runs the hub and the Soulseek server and shares a file on both networks; node C shares
//! a file of the same name and size (on Soulseek, so it joins A's merged result by name
//! and size); node B downloads the merged result from every source at once, each block
//! checked against A's Tiger tree. With EiskaltDC++ installed, a real DC client is one
//! of the NMDC sources (its answers to ranged `$ADCGET`); with the Soulseek peers
//! installed, aioslsk is one of the Soulseek sources (its answers to an F connection's
//! offset, closed at the segment's end).

mod omni;
mod slsk_support;
mod support;

use omni::node::{content, joining_config, server_config, sha256_file, wait_for, Node, Ports};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const NAME: &str = "Large File.bin";
const SIZE: usize = 24_000_000;

fn share(dir: &Path, data: &[u8]) {
    let p = dir.join("share/big").join(NAME);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// A (hub, server, NMDC and Soulseek source), C (a second source: NMDC too when
/// `c_on_nmdc`, else Soulseek only) sharing `c_data`, B (the downloader). Sharers upload
/// at most `kib` KiB/s.
fn three_nodes(t: &Path, c_data: &[u8], c_on_nmdc: bool, kib: u64) -> (Node, Node, Node, Vec<u8>) {
    let data = content(SIZE, 7);
    let pa = Ports::free();
    let a_dir = t.join("a");
    share(&a_dir, &data);
    let a_cfg = format!("{}[transfers]\nmax_upload_kib = {kib}\n", server_config("alice", pa));
    let a = Node::start(&a_dir, &a_cfg, pa.api);
    let c_dir = t.join("c");
    share(&c_dir, c_data);
    let c_api = omni::node::free_port();
    let c_extra = format!("[transfers]\nmax_upload_kib = {kib}\n");
    let mut c_cfg = joining_config("carol", pa, c_api, &c_extra);
    if !c_on_nmdc {
        c_cfg = c_cfg.replace("[nmdc_client]\n", "[nmdc_client]\nenabled = false\n");
    }
    let c = if c_on_nmdc { Node::start(&c_dir, &c_cfg, c_api) } else { Node::start_slsk_only(&c_dir, &c_cfg, c_api) };
    let b_api = omni::node::free_port();
    let b = Node::start(&t.join("b"), &joining_config("bob", pa, b_api, ""), b_api);
    (a, c, b, data)
}

/// Search from `b` until the file has `n` sources; returns the result.
fn result_with_sources(b: &Node, n: usize) -> Value {
    wait_for(&format!("{NAME} with {n} sources"), 90, || {
        let (code, s) = b.post("/api/searches", json!({ "query": "large file" }));
        assert_eq!(code, 201, "{s}");
        let id = s["id"].as_u64().unwrap();
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let s = b.get(&format!("/api/searches/{id}"));
            let found = s["results"].as_array().and_then(|rs| {
                rs.iter()
                    .find(|r| {
                        r["name"] == NAME
                            && r["tth"].is_string()
                            && r["sources"].as_array().is_some_and(|a| a.len() >= n)
                    })
                    .cloned()
            });
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    })
}

/// The number in `key=N` on `line`.
fn field(line: &str, key: &str) -> u64 {
    line.split(&format!("{key}="))
        .nth(1)
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn four_sources_on_both_networks_fill_one_file_and_it_matches_its_tth() {
    let t = tempfile::tempdir().unwrap();
    let data = content(SIZE, 7);
    let (a, c, b, data) = three_nodes(t.path(), &data, true, 0);
    let r = result_with_sources(&b, 4);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    let line = b.omni.wait_line_containing("segmented download");
    assert_eq!(field(&line, "sources"), 4, "{line}");
    let done = b.wait_done(id, 120);
    let path = done["local_path"].as_str().unwrap();
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&a.dir.join("share/big").join(NAME)));
    assert!(std::fs::read(path).unwrap() == data);
    // Both sharers uploaded part of it (the uploads lists of A and C).
    for n in [&a, &c] {
        let ups = n.get("/api/uploads");
        let sent: u64 = ups.as_array().unwrap().iter().map(|u| u["bytes"].as_u64().unwrap_or(0)).sum();
        assert!(sent > 0, "{ups}");
    }
}

#[test]
fn a_source_sending_corrupt_bytes_is_dropped_and_the_file_still_matches() {
    let t = tempfile::tempdir().unwrap();
    // Carol's copy (Soulseek only: no TTH, so it joins by name and size) is wrong from
    // 4 MB to 20 MB.
    let mut bad = content(SIZE, 7);
    for b in &mut bad[4_000_000..20_000_000] {
        *b ^= 0x5a;
    }
    // Slow uploads so that every source gets work before the file is done.
    let (a, _c, b, data) = three_nodes(t.path(), &bad, false, 2048);
    let r = result_with_sources(&b, 3);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    let done = b.wait_done(id, 180);
    let path = done["local_path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == data, "the file is A's, byte for byte");
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&a.dir.join("share/big").join(NAME)));
    assert_eq!(done["tth"], r["tth"]);
    let note = done["note"].as_str().unwrap();
    assert!(note.contains("slsk carol sent bytes") && note.contains("do not match the TTH"), "{note}");
    assert!(note.contains("dropped as a source of this file"), "{note}");
    assert!(!note.contains("alice"), "{note}");
}

#[test]
fn kill9_mid_download_with_several_sources_then_restart_fetches_only_missing_blocks() {
    let t = tempfile::tempdir().unwrap();
    let data = content(SIZE, 7);
    // 24 MB at 4 x 1 MiB/s: about six seconds to kill it in.
    let (a, _c, mut b, data) = three_nodes(t.path(), &data, true, 1024);
    let r = result_with_sources(&b, 4);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    wait_for("a quarter of the file", 60, || {
        let t = b.get(&format!("/api/transfers/{id}"));
        (t["state"] == "running" && t["bytes"].as_u64().unwrap_or(0) > 6_000_000).then_some(())
    });
    let seg = b.get(&format!("/api/transfers/{id}/segments"));
    assert!(seg["blocks"].as_str().unwrap().contains('#'), "{seg}");
    assert_eq!(seg["sources"].as_array().unwrap().len(), 4, "{seg}");
    b.omni.kill9();
    assert!(!b.dir.join("downloads").join(NAME).exists(), "no partial file among finished downloads");

    let b_api = b.base.rsplit(':').next().unwrap().parse().unwrap();
    let b2 = Node::restart(&b.dir, b_api);
    let done = b2.wait_done(id, 120);
    let path = done["local_path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == data);
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&a.dir.join("share/big").join(NAME)));
    // The second run started with the blocks verified before the kill and fetched only the
    // others.
    let start = b2.omni.wait_line_containing("segmented download");
    let (blocks, held) = (field(&start, "blocks"), field(&start, "held"));
    assert!(held > 0 && held < blocks, "{start}");
    let end = b2.omni.wait_line_containing("segmented download complete");
    assert_eq!(field(&end, "fetched"), blocks - held, "{end}");
}

#[test]
fn a_source_vanishing_mid_segment_does_not_stall_the_file() {
    let t = tempfile::tempdir().unwrap();
    let data = content(SIZE, 7);
    let (a, mut c, b, data) = three_nodes(t.path(), &data, true, 1024);
    let r = result_with_sources(&b, 4);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    // Carol is sending when she vanishes.
    wait_for("carol sending", 60, || {
        let s = b.get(&format!("/api/transfers/{id}/segments"));
        s["sources"]
            .as_array()?
            .iter()
            .any(|x| x["user"] == "carol" && x["state"] == "downloading" && x["bytes"].as_u64().unwrap_or(0) > 0)
            .then_some(())
    });
    c.omni.kill9();
    let done = b.wait_done(id, 120);
    let path = done["local_path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == data);
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&a.dir.join("share/big").join(NAME)));
}

/// Alice (a node with the servers) sharing `data` in `t/a`, uploading at most 512 KiB/s,
/// so that another source gets segments too.
fn slow_alice(t: &Path, data: &[u8]) -> (Ports, Node) {
    let pa = Ports::free();
    let a_dir = t.join("a");
    share(&a_dir, data);
    let a_cfg = format!("{}[transfers]\nmax_upload_kib = 512\n", server_config("alice", pa));
    let a = Node::start(&a_dir, &a_cfg, pa.api);
    (pa, a)
}

/// Bob joins alice's servers (ports `pa`) and downloads the file from its three sources;
/// `user` (a real client) delivers verified blocks within `secs`, the file matches and
/// nobody was dropped. `tail`: the real client's log, for a failure.
fn bob_downloads_from_three(
    t: &Path,
    pa: Ports,
    a: &Node,
    data: &[u8],
    user: &str,
    secs: u64,
    tail: impl Fn() -> String,
) {
    let b_api = omni::node::free_port();
    let b = Node::start(&t.join("b"), &joining_config("bob", pa, b_api, ""), b_api);
    let r = result_with_sources(&b, 3);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    wait_for(&format!("{user}'s verified blocks"), secs, || {
        let s = b.get(&format!("/api/transfers/{id}/segments"));
        let t = b.get(&format!("/api/transfers/{id}"));
        assert_ne!(t["state"], "failed", "{t}\n{}", tail());
        s["sources"].as_array()?.iter().any(|x| x["user"] == user && x["bytes"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let done = b.wait_done(id, 180);
    let path = done["local_path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == data);
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&a.dir.join("share/big").join(NAME)));
    assert_eq!(done["note"], "", "nobody was dropped");
}

#[test]
fn eiskaltdcpp_serves_ranges_of_a_segmented_download() {
    use support::eiskalt::{Eiskalt, EiskaltConfig};
    if !Eiskalt::available() {
        eprintln!("skipping: eiskaltdcpp-daemon is not installed (scripts/install-test-deps.sh)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = content(SIZE, 7);
    // A's uploads are slow, so EiskaltDC++ gets segments.
    let (pa, a) = slow_alice(t.path(), &data);
    let ek_share = t.path().join("ek-share");
    std::fs::create_dir_all(&ek_share).unwrap();
    std::fs::write(ek_share.join(NAME), &data).unwrap();
    let ek = Eiskalt::start(EiskaltConfig {
        nick: "ekuser".into(),
        hub: format!("127.0.0.1:{}", pa.hub),
        share: Some(ek_share),
        active_port: Some(support::free_port()),
        ..Default::default()
    });
    assert!(ek.wait_logged_in(Duration::from_secs(30)), "{}", ek.daemon_output());
    // alice on NMDC and Soulseek, ekuser on NMDC.
    bob_downloads_from_three(t.path(), pa, &a, &data, "ekuser", 90, String::new);
}

#[test]
fn aioslsk_serves_segments_from_an_offset() {
    use slsk_support::{Client, Peer, PeerOptions};
    if !slsk_support::require("aioslsk_serves_segments_from_an_offset") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = content(SIZE, 7);
    let (pa, a) = slow_alice(t.path(), &data);
    let peer = Peer::spawn(
        Client::Aioslsk,
        &format!("127.0.0.1:{}", pa.slsk),
        PeerOptions::new("aiouser").file(&format!("Stuff/{NAME}"), data.clone()),
    )
    .expect("spawn aioslsk");
    let wait = Duration::from_secs(60);
    peer.wait_logged_in(wait).unwrap_or_else(|e| panic!("{e}\n{}", peer.stderr_tail(30)));
    peer.wait_event("shares_scanned", |_| true, wait).expect("aioslsk scanned its share");
    // alice on NMDC and Soulseek, aiouser on Soulseek.
    bob_downloads_from_three(t.path(), pa, &a, &data, "aiouser", 120, || peer.stderr_tail(30));
}

#[test]
fn a_segmented_download_keeps_to_the_node_download_limit() {
    let t = tempfile::tempdir().unwrap();
    // 24 MB at 2 MiB/s over all four sources together: at least 11 s (unlimited on
    // loopback it took under five on this loaded machine).
    let (_a, _c, b, data) = three_nodes(t.path(), &content(SIZE, 7), true, 0);
    let (code, v) = {
        let (code, _, body) = b.request("PUT", "/api/settings", r#"{"max_download_kib": 2048}"#);
        (code, body)
    };
    assert_eq!(code, 200, "{v}");
    let r = result_with_sources(&b, 4);
    let started = Instant::now();
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let done = b.wait_done(tr["id"].as_i64().unwrap(), 120);
    let took = started.elapsed();
    assert!(std::fs::read(done["local_path"].as_str().unwrap()).unwrap() == data);
    assert!(took >= Duration::from_secs_f64(SIZE as f64 / (2048.0 * 1024.0) * 0.95), "took {took:?}");
}
