//! Two nodes on loopback: node A runs the community (hub, Soulseek server) and shares
//! files; node B joins it, searches, downloads over NMDC and Soulseek (through the API and
//! through the CLI client commands), chats, and survives `kill -9` mid-download.

mod omni;

use omni::node::{content, joining_config, server_config, sha256_file, wait_for, Node, Ports};
use serde_json::{json, Value};
use std::path::Path;

fn share_file(a_dir: &Path, rel: &str, data: &[u8]) {
    let p = a_dir.join("share").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn two_nodes(t: &Path, b_extra: &str, files: &[(&str, Vec<u8>)]) -> (Node, Node, Ports) {
    let pa = Ports::free();
    let a_dir = t.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    for (rel, data) in files {
        share_file(&a_dir, rel, data);
    }
    share_file(&a_dir, "music/Alpha Song.mp3", &content(3_000_000, 1));
    share_file(&a_dir, "docs/beta notes.txt", &content(200_000, 2));
    let a = Node::start(&a_dir, &server_config("alice", pa), pa.api);
    let b_api = omni::node::free_port();
    let b = Node::start(&t.join("b"), &joining_config("bob", pa, b_api, b_extra), b_api);
    (a, b, pa)
}

#[test]
fn node_b_finds_and_downloads_node_a_files_over_nmdc_and_soulseek_via_api_and_cli() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(t.path(), "", &[]);
    let want = sha256_file(&a.dir.join("share/music/Alpha Song.mp3"));

    // One merged result with a source on each network.
    let r = b.search_until("alpha song", "Alpha Song.mp3", &["nmdc", "slsk"]);
    assert_eq!(r["size"], 3_000_000);
    assert!(r["tth"].as_str().is_some_and(|t| t.len() == 39), "{r}");
    let rid = r["id"].as_u64().unwrap();

    for network in ["nmdc", "slsk"] {
        let (code, t) = b.post("/api/transfers", json!({"result": rid, "network": network}));
        assert_eq!(code, 201, "{t}");
        assert_eq!(t["network"], network);
        let done = b.wait_done(t["id"].as_i64().unwrap(), 60);
        let path = done["local_path"].as_str().unwrap();
        assert!(path.starts_with(b.dir.join("downloads").to_str().unwrap()), "{path}");
        assert_eq!(sha256_file(Path::new(path)), want, "{network} download differs");
        assert_eq!(done["bytes"], 3_000_000);
    }
    // Node A saw both as uploads to bob, one per network, finished with every byte.
    let ups = wait_for("node A's uploads to end", 20, || {
        let ups = a.get("/api/uploads");
        let list = ups.as_array()?.clone();
        (list.len() == 2 && list.iter().all(|u| u["state"] == "done")).then_some(list)
    });
    let mut nets: Vec<&str> = ups.iter().map(|u| u["network"].as_str().unwrap()).collect();
    nets.sort();
    assert_eq!(nets, ["nmdc", "slsk"], "{ups:?}");
    for u in &ups {
        assert_eq!(
            (u["user"].as_str(), u["bytes"].as_u64(), u["size"].as_u64()),
            (Some("bob"), Some(3_000_000), Some(3_000_000)),
            "{u}"
        );
        assert!(u["file"].as_str().unwrap().ends_with("Alpha Song.mp3"), "{u}");
    }
    // Asked first (dry run), a download of it again says the file is on disk already.
    let (code, plan) = b.post("/api/transfers", json!({"result": rid, "dry_run": true}));
    assert_eq!(code, 200, "{plan}");
    let existing = plan["existing"].as_array().unwrap();
    assert!(existing.len() == 1 && existing[0].as_str().unwrap().ends_with("Alpha Song.mp3"), "{plan}");
    // An unknown result is a 404 with a message.
    let (code, e) = b.post("/api/transfers", json!({"result": 999_999}));
    assert_eq!(code, 404);
    assert!(e["error"].as_str().unwrap().contains("999999"), "{e}");

    // The same through the CLI client commands.
    let (code, out, err) = b.cli(&["search", "--timeout", "4", "beta", "notes"]);
    assert_eq!(code, 0, "{err}");
    let line =
        out.lines().find(|l| l.contains("beta notes.txt")).unwrap_or_else(|| panic!("no result line in {out:?}"));
    let num = line.trim_start_matches('[').split(']').next().unwrap().to_owned();
    assert!(num.parse::<u64>().is_ok(), "{line}");
    let want = sha256_file(&a.dir.join("share/docs/beta notes.txt"));
    for network in ["slsk", "nmdc"] {
        let (code, out, err) = b.cli(&["get", &num, "--network", network]);
        assert_eq!(code, 0, "{err}");
        let path = out.trim().rsplit_once(" to ").unwrap_or_else(|| panic!("{out:?}")).1;
        assert!(out.starts_with("downloaded beta notes.txt (200000 bytes)"), "{out}");
        assert_eq!(sha256_file(Path::new(path)), want, "{network} download through the CLI differs");
    }
    let (code, out, _) = b.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("nmdc_client") && out.contains("online") && out.contains("4 done"), "{out}");
    // A client command without a node says what to do.
    let (code, _, err) = b.cli(&["status", "--api", "127.0.0.1:1"]);
    assert_ne!(code, 0);
    assert!(err.starts_with("error: cannot reach the node") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn chat_crosses_between_nodes_on_both_networks() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(t.path(), "", &[]);
    // Both joined the default room.
    for n in [&a, &b] {
        wait_for("the room joined", 20, || {
            n.get("/api/chats").as_array()?.iter().any(|c| c["id"] == "slsk:room:omnipeer").then_some(())
        });
    }
    for (chat, text) in [
        ("nmdc:hub", "hello hub"),
        ("slsk:room:omnipeer", "hello room"),
        ("nmdc:pm:alice", "psst over dc"),
        ("slsk:pm:alice", "psst over slsk"),
    ] {
        let (code, out, err) = b.cli(&["chat", "send", chat, text]);
        assert_eq!(code, 0, "{out}{err}");
    }
    // Node A sees each line in the right conversation, from bob.
    for (chat, text) in [
        ("nmdc:hub", "hello hub"),
        ("slsk:room:omnipeer", "hello room"),
        ("nmdc:pm:bob", "psst over dc"),
        ("slsk:pm:bob", "psst over slsk"),
    ] {
        wait_for(&format!("{text} in {chat} on A"), 20, || {
            let m = a.get(&format!("/api/chats/messages?chat={chat}"));
            m.as_array()?.iter().any(|m| m["text"] == text && m["nick"] == "bob" && m["own"] == false).then_some(())
        });
    }
    // A answers through the API; B's history has it, and `chat list` shows it.
    let (code, m) = a.post("/api/chats/messages", json!({"chat": "slsk:pm:bob", "text": "got it"}));
    assert_eq!(code, 201, "{m}");
    assert_eq!(m["own"], true);
    wait_for("A's answer on B", 20, || {
        let m = b.get("/api/chats/messages?chat=slsk:pm:alice");
        m.as_array()?.iter().any(|m| m["text"] == "got it" && m["nick"] == "alice").then_some(())
    });
    let (code, out, _) = b.cli(&["chat", "list"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("slsk:pm:alice") && l.contains("<alice> got it")), "{out}");
    // Our own hub line came back from the hub and is stored as ours on B.
    let own = b.get("/api/chats/messages?chat=nmdc:hub");
    assert!(own.as_array().unwrap().iter().any(|m| m["text"] == "hello hub" && m["own"] == true), "{own}");
    // A chat id that names nothing is refused.
    let (code, e) = b.post("/api/chats/messages", json!({"chat": "irc:#x", "text": "hi"}));
    assert_eq!(code, 400, "{e}");
}

/// Kill node B with SIGKILL in the middle of a download; after a restart the queued
/// download completes from where the bytes on disk end, with the right checksum.
fn kill9_resume(network: &str) {
    let t = tempfile::tempdir().unwrap();
    // 4 MiB/s for 24 MB: about six seconds to kill it in.
    let (a, mut b, _) = two_nodes(
        t.path(),
        "[transfers]\nmax_download_kib = 4096\n",
        &[("big/Large File.bin", content(24_000_000, 7))],
    );
    let r = b.search_until("large file", "Large File.bin", &[network]);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": network}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let t = b.get(&format!("/api/transfers/{id}"));
        if t["state"] == "running" && t["bytes"].as_u64().unwrap_or(0) > 3_000_000 {
            break;
        }
        *last.borrow_mut() = t;
        assert!(
            std::time::Instant::now() < end,
            "no few MB on disk in 30 s; the transfer: {}\nA said: {:#?}\nB said: {:#?}",
            last.borrow(),
            a.omni.lines_so_far(),
            b.omni.lines_so_far()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    b.omni.kill9();
    let partial = b.dir.join(format!("incomplete/{id}/Large File.bin"));
    let held = std::fs::metadata(&partial).unwrap().len();
    assert!(held > 3_000_000 && held < 24_000_000, "{held} bytes on disk");
    assert!(!b.dir.join("downloads/Large File.bin").exists(), "no partial file among finished downloads");

    let b_api = b.base.rsplit(':').next().unwrap().parse().unwrap();
    let b2 = Node::restart(&b.dir, b_api);
    // The queue survived, and knows what is on disk.
    let t0 = b2.get(&format!("/api/transfers/{id}"));
    assert!(t0["state"] == "queued" || t0["state"] == "running", "{t0}");
    assert!(t0["bytes"].as_u64().unwrap() >= held, "{t0}");
    let done = b2.wait_done(id, 60);
    let path = done["local_path"].as_str().unwrap();
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&a.dir.join("share/big/Large File.bin")));
    if network == "nmdc" {
        assert_eq!(done["tth"], r["tth"], "verified against the TTH");
    }
    // It resumed: the log says from which byte, and that is at least what was on disk.
    let line = b2.omni.wait_line_containing("resuming from the bytes on disk");
    let from: u64 = line
        .split("from=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {line:?}"));
    assert!(from >= held, "resumed from {from}, {held} were on disk");
}

#[test]
fn kill9_during_an_nmdc_download_then_restart_completes_it_with_the_right_tth() {
    kill9_resume("nmdc");
}

#[test]
fn kill9_during_a_soulseek_download_then_restart_completes_it_with_the_right_sha256() {
    kill9_resume("slsk");
}

/// A rescan swaps the new share into the running sessions: a download from the node in
/// progress during it finishes without a retry, the new file is found on both networks,
/// and neither client logs in again.
#[test]
fn a_rescan_swaps_the_share_in_without_logging_in_again() {
    let t = tempfile::tempdir().unwrap();
    let big = content(4_000_000, 7);
    let (a, b, _) = two_nodes(t.path(), "[transfers]\nmax_download_kib = 1000\n", &[("big/slow.bin", big.clone())]);
    let files_before = a.get("/api/shares")["files"].as_u64().unwrap();
    let r = b.search_until("slow", "slow.bin", &["nmdc"]);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    wait_for("the download running", 30, || {
        (b.get(&format!("/api/transfers/{id}"))["bytes"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let _ = a.omni.lines_so_far();

    share_file(&a.dir, "new/gamma ray.txt", &content(50_000, 9));
    let (code, _) = a.post("/api/shares/rescan", json!({}));
    assert_eq!(code, 202);
    wait_for("the new file in A's index", 30, || {
        (a.get("/api/shares")["files"].as_u64() == Some(files_before + 1)).then_some(())
    });
    b.search_until("gamma ray", "gamma ray.txt", &["nmdc", "slsk"]);

    let done = b.wait_done(id, 60);
    assert_eq!(done["retries"], 0, "the rescan interrupted the download: {done}");
    assert_eq!(
        sha256_file(Path::new(done["local_path"].as_str().unwrap())),
        sha256_file(&a.dir.join("share/big/slow.bin"))
    );
    let relogins: Vec<String> = a.omni.lines_so_far().into_iter().filter(|l| l.contains("logged in to")).collect();
    assert!(relogins.is_empty(), "a client logged in again: {relogins:?}");
    let nets = a.get("/api/status")["networks"].clone();
    for name in ["nmdc_client", "slsk_client"] {
        assert!(nets.as_array().unwrap().iter().any(|n| n["name"] == name && n["state"] == "online"), "{nets}");
    }
}

/// A download limit set through the settings API applies at once to the next download
/// (a lower bound on its duration: the limit's own correctness, not a speed target).
#[test]
fn a_download_limit_set_through_the_api_applies_at_once() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(t.path(), "", &[("limit/one mb.bin", content(1_000_000, 5))]);
    let (code, _, body) = b.request("PUT", "/api/settings", r#"{"max_download_kib": 250}"#);
    assert_eq!(code, 200, "{body}");
    let r = b.search_until("one mb", "one mb.bin", &["slsk"]);
    let started = std::time::Instant::now();
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "slsk"}));
    assert_eq!(code, 201, "{tr}");
    let done = b.wait_done(tr["id"].as_i64().unwrap(), 60);
    let took = started.elapsed().as_secs_f64();
    // 1,000,000 bytes at 256,000 B/s after a one-second burst: at least ~2.9 s
    assert!(took >= 2.5, "1 MB at 250 KiB/s took only {took:.2} s");
    assert_eq!(
        sha256_file(Path::new(done["local_path"].as_str().unwrap())),
        sha256_file(&a.dir.join("share/limit/one mb.bin"))
    );
}

/// The path of the folder named `name` in `user`'s share on `network`, found by a search
/// within the browse.
fn browsed_folder(b: &Node, network: &str, user: &str, name: &str) -> String {
    let (code, v) = b.get_status(&format!("/api/browse?network={network}&user={user}&q={name}"));
    assert_eq!(code, 200, "{v}");
    let hit = v["hits"].as_array().unwrap().iter().find(|h| h["kind"] == "folder").cloned();
    hit.unwrap_or_else(|| panic!("no folder {name} in {v}"))["path"].as_str().unwrap().to_owned()
}

fn wait_group(b: &Node, group: i64) -> Value {
    wait_for(&format!("group {group} done"), 90, || {
        let gs = b.get("/api/transfers/groups");
        let g = gs.as_array()?.iter().find(|g| g["id"] == group)?.clone();
        assert_ne!(g["state"], "failed", "{g}");
        (g["state"] == "done").then_some(g)
    })
}

#[test]
fn node_b_browses_node_a_on_both_networks_and_downloads_a_whole_folder() {
    let t = tempfile::tempdir().unwrap();
    let album = [
        ("music/Album/01 Intro.mp3", content(300_000, 11)),
        ("music/Album/02 Outro.mp3", content(200_000, 12)),
        ("music/Album/scans/cover.jpg", content(50_000, 13)),
    ];
    let (a, b, _) = two_nodes(t.path(), "", &album);
    let sha = |rel: &str| sha256_file(&a.dir.join("share").join(rel));
    let downloads = b.dir.join("downloads");

    for network in ["nmdc", "slsk"] {
        // The whole share as a tree: sizes and counts of everything below each folder.
        let (code, v) = b.get_status(&format!("/api/browse?network={network}&user=alice&depth=0"));
        assert_eq!(code, 200, "{network}: {v}");
        assert_eq!(v["folder"]["files"], 5, "{network}: {v}");
        assert_eq!(v["folder"]["size"], 300_000 + 200_000 + 50_000 + 3_000_000 + 200_000, "{v}");
        let path = browsed_folder(&b, network, "alice", "album");
        assert!(path.ends_with("music\\Album"), "{path}");
        let (code, v) =
            b.get_status(&format!("/api/browse?network={network}&user=alice&path={}", path.replace('\\', "/")));
        assert_eq!(code, 200, "{v}");
        let f = &v["folder"];
        assert_eq!((f["files"].as_u64(), f["size"].as_u64()), (Some(3), Some(550_000)), "{f}");
        let intro = f["entries"].as_array().unwrap().iter().find(|e| e["name"] == "01 Intro.mp3").unwrap();
        assert_eq!(intro["size"], 300_000);
        if network == "nmdc" {
            assert_eq!(intro["tth"].as_str().map(str::len), Some(39), "{intro}");
        }
        assert_eq!(f["folders"][0]["name"], "scans");
    }

    // The folder over NMDC with the default template: downloads/Album/...
    let path = browsed_folder(&b, "nmdc", "alice", "album");
    let (code, plan) =
        b.post("/api/transfers", json!({"network": "nmdc", "user": "alice", "path": path, "dry_run": true}));
    assert_eq!(code, 200, "{plan}");
    assert_eq!((plan["files"].as_u64(), plan["existing"].as_array().map(Vec::len)), (Some(3), Some(0)), "{plan}");
    assert!(b.get("/api/transfers").as_array().unwrap().is_empty(), "a dry run queues nothing");
    let (code, p) = b.post("/api/transfers", json!({"network": "nmdc", "user": "alice", "path": path, "folder": true}));
    assert_eq!(code, 201, "{p}");
    // A new browse of the same user while her files come: each gets a connection.
    let (code, v) = b.get_status("/api/browse?network=nmdc&user=alice&refresh=true&depth=0");
    assert_eq!(code, 200, "{v}");
    let g = wait_group(&b, p["group"].as_i64().unwrap());
    assert_eq!((g["files"].as_u64(), g["done"].as_u64(), g["bytes"].as_u64()), (Some(3), Some(3), Some(550_000)));
    for (rel, _) in &album {
        let local = downloads.join(rel.strip_prefix("music/").unwrap());
        assert_eq!(sha256_file(&local), sha(rel), "{}", local.display());
    }
    // Every file of it is a transfer of the group.
    let ts = b.get("/api/transfers");
    assert_eq!(ts.as_array().unwrap().iter().filter(|t| t["group"] == p["group"]).count(), 3, "{ts}");

    // The same folder over Soulseek: the default place is taken, and says so first.
    let path = browsed_folder(&b, "slsk", "alice", "album");
    let (code, plan) =
        b.post("/api/transfers", json!({"network": "slsk", "user": "alice", "path": path, "dry_run": true}));
    assert_eq!(code, 200, "{plan}");
    assert_eq!(plan["existing"].as_array().map(Vec::len), Some(3), "{plan}");
    // A destination that leaves the downloads folder is refused.
    for bad in ["../out", "/tmp/x", "{user}/../../x"] {
        let (code, e) =
            b.post("/api/transfers", json!({"network": "slsk", "user": "alice", "path": path, "destination": bad}));
        assert_eq!(code, 400, "{bad}: {e}");
    }
    let (code, p) = b.post(
        "/api/transfers",
        json!({"network": "slsk", "user": "alice", "path": path, "destination": "{network}/{user}/{folder}"}),
    );
    assert_eq!(code, 201, "{p}");
    wait_group(&b, p["group"].as_i64().unwrap());
    for (rel, _) in &album {
        let local = downloads.join("slsk/alice").join(rel.strip_prefix("music/").unwrap());
        assert_eq!(sha256_file(&local), sha(rel), "{}", local.display());
    }
    assert!(!b.dir.join("out").exists() && !t.path().join("x").exists());

    // Unknown session, unknown user, unknown folder.
    let (code, e) = b.get_status("/api/browse?network=nmdc&session=nope&user=alice");
    assert_eq!(code, 404, "{e}");
    for network in ["nmdc", "slsk"] {
        let (code, e) = b.get_status(&format!("/api/browse?network={network}&user=nobody"));
        assert_eq!(code, 503, "{network}: {e}");
        assert!(e["error"].as_str().unwrap().contains("nobody"), "{e}");
    }
    let (code, e) = b.get_status("/api/browse?network=slsk&user=alice&path=no/such");
    assert_eq!(code, 404, "{e}");

    // The CLI: browse prints one line per folder and file with sizes; get takes a file
    // or a folder by path.
    let (code, out, err) = b.cli(&["browse", "slsk:alice"]);
    assert_eq!(code, 0, "{err}");
    let line = |needle: &str| out.lines().find(|l| l.ends_with(needle)).unwrap_or_else(|| panic!("{needle} in {out}"));
    assert!(line("01 Intro.mp3").trim_start().starts_with("293"), "{out}");
    assert!(out.lines().any(|l| l.contains("music\\Album\\") && l.contains("(3 files)")), "{out}");
    assert_eq!(out.lines().count(), 5 + 5, "5 files and 5 folders (share, music, Album, scans, docs): {out}");
    let (code, out, err) = b.cli(&["browse", "nmdc:alice", &path.replace('\\', "/"), "--find", "cover"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().ends_with("scans\\cover.jpg"), "{out}");
    let file = format!("nmdc:alice:{}", path.replace('\\', "/")).replace("Album", "Album/02 Outro.mp3");
    let (code, out, err) = b.cli(&["get", &file]);
    assert_eq!(code, 0, "{err}");
    let got = out.trim().rsplit_once(" to ").unwrap().1.to_owned();
    assert_eq!(sha256_file(Path::new(&got)), sha("music/Album/02 Outro.mp3"));
    assert_eq!(Path::new(&got).parent().unwrap(), downloads, "a single file lands in the downloads folder itself");
    let (code, out, err) = b.cli(&["get", &format!("slsk:alice:{path}"), "--destination", "cli/{folder}"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("downloaded folder Album (3 files, 550000 bytes)"), "{out}");
    assert_eq!(sha256_file(&downloads.join("cli/Album/scans/cover.jpg")), sha("music/Album/scans/cover.jpg"));
    let (code, _, err) = b.cli(&["browse", "irc:alice"]);
    assert_ne!(code, 0);
    assert!(err.contains("nmdc or slsk"), "{err}");
}

/// Rows leave the Transfers list: one under way is removed (stopped, its partial file
/// deleted), finished ones are cleared at once, and a finished file stays on disk.
#[test]
fn transfers_are_removed_and_finished_ones_cleared() {
    let t = tempfile::tempdir().unwrap();
    // 512 KiB/s: the 3 MB file takes about six seconds, long enough to remove it running.
    let (_a, b, _) = two_nodes(t.path(), "[transfers]\nmax_download_kib = 512\n", &[]);
    let r = b.search_until("beta notes", "beta notes.txt", &["nmdc"]);
    let (code, done) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{done}");
    let done = b.wait_done(done["id"].as_i64().unwrap(), 60);
    let r = b.search_until("alpha song", "Alpha Song.mp3", &["nmdc"]);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    wait_for("the download running with bytes on disk", 30, || {
        let t = b.get(&format!("/api/transfers/{id}"));
        (t["state"] == "running" && t["bytes"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let (code, _, body) = b.request("delete", &format!("/api/transfers/{id}"), "");
    assert_eq!(code, 204, "{body}");
    let (code, _) = b.get_status(&format!("/api/transfers/{id}"));
    assert_eq!(code, 404);
    wait_for("the partial file gone", 20, || (!b.dir.join(format!("incomplete/{id}")).exists()).then_some(()));
    assert!(!b.dir.join("downloads/Alpha Song.mp3").exists());
    // Clear finished: the done row goes, its file stays.
    let (code, c) = b.post("/api/transfers/clear", json!({}));
    assert_eq!(code, 200, "{c}");
    assert_eq!(c["removed"], json!([done["id"]]));
    assert_eq!(b.get("/api/transfers"), json!([]));
    assert!(Path::new(done["local_path"].as_str().unwrap()).exists());
    let (code, _, _) = b.request("delete", &format!("/api/transfers/{id}"), "");
    assert_eq!(code, 404);
}

/// Who is here: the hub's users and the room's members with what they share, from the
/// API and the CLI; a marked user (buddy, ignored) — an ignored one's lines and search
/// results are dropped; a private message to a nick not on the hub is refused.
#[test]
fn users_lists_buddies_and_ignored_users() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, pa) = two_nodes(t.path(), "", &[]);
    let users = wait_for("alice and bob on the hub with their shares", 30, || {
        let u = b.get("/api/users?chat=nmdc:hub");
        let list = u.as_array()?.clone();
        let alice = list.iter().find(|x| x["nick"] == "alice")?.clone();
        (list.iter().any(|x| x["nick"] == "bob") && alice["share_size"].as_u64()? > 3_000_000).then_some(list)
    });
    let alice = users.iter().find(|x| x["nick"] == "alice").unwrap();
    assert_eq!(alice["network"], "nmdc");
    assert!(alice["client"].as_str().unwrap().starts_with("omnipeer"), "{alice}");
    assert!(alice["slots"].as_u64().is_some(), "{alice}");
    let room = wait_for("both in the room", 30, || {
        let u = b.get("/api/users?chat=slsk:room:omnipeer");
        let list = u.as_array()?.clone();
        (list.iter().any(|x| x["nick"] == "alice") && list.iter().any(|x| x["nick"] == "bob")).then_some(list)
    });
    let alice_room = room.iter().find(|x| x["nick"] == "alice").unwrap();
    assert!(alice_room["files"].as_u64().unwrap() >= 2, "{alice_room}");
    let (code, out, err) = b.cli(&["users", "nmdc:hub"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("alice") && l.contains("MiB")), "{out}");
    assert!(err.contains("2 users in nmdc:hub"), "{err}");
    // A private chat has no user list; a PM to someone not on the hub is refused.
    let (code, _) = b.get_status("/api/users?chat=nmdc:pm:alice");
    assert_eq!(code, 404);
    let (code, e) = b.post("/api/chats/messages", json!({"chat": "nmdc:pm:nobody", "text": "hi"}));
    assert_eq!(code, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("nobody is not on the hub"), "{e}");
    // On Soulseek: a user the server does not know is refused; one it knows but who is
    // offline gets the message kept by the server, and the chat says so; an online one
    // gets it with no note.
    let (code, e) = b.post("/api/chats/messages", json!({"chat": "slsk:pm:nobody", "text": "hi"}));
    assert_eq!(code, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("has no user nobody"), "{e}");
    let server = format!("127.0.0.1:{}", pa.slsk);
    let (code, _, err) =
        b.cli(&["slsk", "search", "--server", &server, "--user", "carol", "--password", "pw", "--timeout", "1", "x"]);
    assert_eq!(code, 0, "carol registers by logging in once: {err}");
    for (who, offline) in [("carol", true), ("alice", false)] {
        let chat = format!("slsk:pm:{who}");
        let (code, m) = b.post("/api/chats/messages", json!({"chat": chat, "text": "are you there"}));
        assert_eq!(code, 201, "{m}");
        let lines = b.get(&format!("/api/chats/messages?chat={chat}"));
        let note =
            lines.as_array().unwrap().iter().any(|l| {
                l["nick"] == "*" && l["text"].as_str().is_some_and(|t| t.contains(&format!("{who} is offline")))
            });
        assert_eq!(note, offline, "{who}: {lines}");
    }

    // Buddy on Soulseek, ignored on NMDC.
    let (code, _, c) =
        b.request("put", "/api/contacts", r#"{"network": "slsk", "name": "alice", "relation": "buddy"}"#);
    assert_eq!(code, 200, "{c}");
    let (code, _, c) =
        b.request("put", "/api/contacts", r#"{"network": "nmdc", "name": "Alice", "relation": "ignored"}"#);
    assert_eq!(code, 200, "{c}");
    let marks = b.get("/api/contacts");
    assert_eq!(marks.as_array().unwrap().len(), 2, "{marks}");
    let u = b.get("/api/users?chat=nmdc:hub");
    assert_eq!(u.as_array().unwrap().iter().find(|x| x["nick"] == "alice").unwrap()["relation"], "ignored");
    let u = b.get("/api/users?chat=slsk:room:omnipeer");
    assert_eq!(u.as_array().unwrap().iter().find(|x| x["nick"] == "alice").unwrap()["relation"], "buddy");
    // alice's hub line and PM are dropped on B; her room line is not.
    for (chat, text) in
        [("nmdc:hub", "ignored hub line"), ("nmdc:pm:bob", "ignored pm"), ("slsk:room:omnipeer", "room line")]
    {
        let (code, m) = a.post("/api/chats/messages", json!({"chat": chat, "text": text}));
        assert_eq!(code, 201, "{m}");
    }
    wait_for("the room line on B", 20, || {
        let m = b.get("/api/chats/messages?chat=slsk:room:omnipeer");
        m.as_array()?.iter().any(|m| m["text"] == "room line").then_some(())
    });
    // (sent before the room line, over the same links: had they been kept, they would be)
    std::thread::sleep(std::time::Duration::from_millis(500));
    let hub = b.get("/api/chats/messages?chat=nmdc:hub");
    assert!(!hub.as_array().unwrap().iter().any(|m| m["text"] == "ignored hub line"), "{hub}");
    let pm = b.get("/api/chats/messages?chat=nmdc:pm:alice");
    assert!(!pm.as_array().unwrap().iter().any(|m| m["text"] == "ignored pm"), "{pm}");
    // Her NMDC search results are dropped; her Soulseek ones come.
    let r = b.search_until("alpha song", "Alpha Song.mp3", &["slsk"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let s = b.get(&format!("/api/searches/{}", r["search"]));
    let res = s["results"].as_array().unwrap().iter().find(|x| x["name"] == "Alpha Song.mp3").unwrap().clone();
    assert!(res["sources"].as_array().unwrap().iter().all(|x| x["network"] == "slsk"), "{res}");
    // Unmarked, she is heard again.
    let (code, _, _) = b.request("put", "/api/contacts", r#"{"network": "nmdc", "name": "alice", "relation": null}"#);
    assert_eq!(code, 200);
    let (code, _) = a.post("/api/chats/messages", json!({"chat": "nmdc:hub", "text": "heard again"}));
    assert_eq!(code, 201);
    wait_for("the hub line on B", 20, || {
        let m = b.get("/api/chats/messages?chat=nmdc:hub");
        m.as_array()?.iter().any(|m| m["text"] == "heard again").then_some(())
    });
}

/// A small file (no slot needed: NMDC's MiniSlots) is an upload in the list like any
/// other, with every byte counted.
#[test]
fn small_uploads_are_listed() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(t.path(), "", &[("docs/tiny readme.txt", content(10_000, 9))]);
    let r = b.search_until("tiny readme", "tiny readme.txt", &["nmdc"]);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    b.wait_done(tr["id"].as_i64().unwrap(), 60);
    let up = wait_for("the small upload listed as done on A", 20, || {
        let ups = a.get("/api/uploads");
        ups.as_array()?.iter().find(|u| u["file"].as_str().is_some_and(|f| f.ends_with("tiny readme.txt"))).cloned()
    });
    wait_for("done with every byte", 20, || {
        let ups = a.get("/api/uploads");
        let u = ups.as_array()?.iter().find(|u| u["id"] == up["id"])?.clone();
        (u["state"] == "done" && u["bytes"] == 10_000 && u["user"] == "bob" && u["network"] == "nmdc").then_some(())
    });
}

/// Finished uploads outlive a restart of the node that made them.
#[test]
fn the_upload_history_survives_a_restart() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, pa) = two_nodes(t.path(), "", &[]);
    let r = b.search_until("beta notes", "beta notes.txt", &["slsk"]);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "slsk"}));
    assert_eq!(code, 201, "{tr}");
    b.wait_done(tr["id"].as_i64().unwrap(), 60);
    let done = |n: &Node| {
        let ups = n.get("/api/uploads");
        ups.as_array()?
            .iter()
            .find(|u| u["state"] == "done" && u["file"].as_str().is_some_and(|f| f.ends_with("beta notes.txt")))
            .cloned()
    };
    let before = wait_for("the upload done on A", 20, || done(&a));
    let a_dir = a.dir.clone();
    drop(a);
    let a = Node::restart(&a_dir, pa.api);
    let after = done(&a).expect("the finished upload is listed after a restart");
    assert_eq!(
        (&after["user"], &after["bytes"], &after["network"]),
        (&before["user"], &before["bytes"], &before["network"])
    );
}

/// The uploader's user cancels a running upload (it ends `cancelled`, the downloader's
/// attempt fails) and bans the downloader, whose requests are refused from then on.
#[test]
fn an_upload_is_cancelled_and_its_downloader_banned() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(t.path(), "[transfers]\nmax_retries = 0\n", &[]);
    let (code, _, body) = a.request("put", "/api/settings", r#"{"max_upload_kib": 256}"#);
    assert_eq!(code, 200, "{body}");
    let r = b.search_until("alpha song", "Alpha Song.mp3", &["slsk"]);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "slsk"}));
    assert_eq!(code, 201, "{tr}");
    let tid = tr["id"].as_i64().unwrap();
    let up = wait_for("the upload running on A", 30, || {
        let ups = a.get("/api/uploads");
        ups.as_array()?.iter().find(|u| u["state"] == "running" && u["bytes"].as_u64() > Some(0)).cloned()
    });
    let (code, c) = a.post(&format!("/api/uploads/{}/cancel", up["id"]), json!({}));
    assert_eq!(code, 202, "{c}");
    wait_for("the upload cancelled on A", 20, || {
        let ups = a.get("/api/uploads");
        ups.as_array()?.iter().find(|u| u["id"] == up["id"] && u["state"] == "cancelled").map(|_| ())
    });
    let failed = wait_for("B's attempt failed", 60, || {
        let t = b.get(&format!("/api/transfers/{tid}"));
        (t["state"] == "failed").then_some(t)
    });
    assert!(failed["bytes"].as_u64().unwrap() < 3_000_000, "{failed}");
    let (code, _) = a.post(&format!("/api/uploads/{}/cancel", up["id"]), json!({}));
    assert_eq!(code, 404, "a finished upload cannot be cancelled");

    // Banned: B's retry is refused and no upload to bob starts.
    let (code, _, body) =
        a.request("put", "/api/contacts", r#"{"network": "slsk", "name": "bob", "relation": "banned"}"#);
    assert_eq!(code, 200, "{body}");
    let (code, t2) = b.post(&format!("/api/transfers/{tid}/retry"), json!({}));
    assert_eq!(code, 200, "{t2}");
    let refused = wait_for("B's retry refused", 60, || {
        let t = b.get(&format!("/api/transfers/{tid}"));
        (t["state"] == "failed" && t["retries"].as_u64().is_some()).then_some(t)
    });
    assert!(refused["error"].as_str().unwrap().ends_with("Banned"), "{refused}");
    let ups = a.get("/api/uploads");
    let to_bob = ups.as_array().unwrap().iter().filter(|u| u["user"] == "bob").count();
    assert_eq!(to_bob, 1, "only the cancelled one: {ups}");
}

/// A wishlist item saved before the file exists finds it once it is shared, marks it
/// new, downloads it by itself (only what passes its filters), and does not take it
/// twice.
#[test]
fn a_wishlist_item_finds_a_file_shared_later_and_downloads_it() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _) = two_nodes(t.path(), "", &[]);
    let (code, item) =
        b.post("/api/wishlist", json!({"query": "zeta track", "filters": {"ext": "flac"}, "auto_download": true}));
    assert_eq!(code, 201, "{item}");
    let id = item["id"].as_i64().unwrap();
    // It ran at once and found nothing.
    wait_for("the first run", 20, || b.get("/api/wishlist")[0]["last_run"].as_i64());
    assert_eq!(b.get("/api/wishlist")[0]["new_matches"], 0);
    // alice shares two matching files; only the FLAC passes the item's filters.
    share_file(&a.dir, "music/zeta track.flac", &content(400_000, 21));
    share_file(&a.dir, "music/zeta track.mp3", &content(300_000, 22));
    let (code, _) = a.post("/api/shares/rescan", json!({}));
    assert_eq!(code, 202);
    let want = sha256_file(&a.dir.join("share/music/zeta track.flac"));
    let done = wait_for("the new match downloaded by itself", 90, || {
        // "search again" rather than the 10-minute interval of hubs
        let (code, _) = b.post(&format!("/api/wishlist/{id}/run"), json!({}));
        assert_eq!(code, 200);
        std::thread::sleep(std::time::Duration::from_secs(2));
        let ts = b.get("/api/transfers");
        ts.as_array()?.iter().find(|t| t["name"] == "zeta track.flac" && t["state"] == "done").cloned()
    });
    assert_eq!(sha256_file(Path::new(done["local_path"].as_str().unwrap())), want);
    let w = b.get("/api/wishlist");
    assert_eq!(w[0]["new_matches"], 1, "{w}");
    // Again: the same file is no new match and is not taken twice.
    let (code, _) = b.post(&format!("/api/wishlist/{id}/run"), json!({}));
    assert_eq!(code, 200);
    std::thread::sleep(std::time::Duration::from_secs(7));
    assert_eq!(b.get("/api/wishlist")[0]["new_matches"], 1);
    let ts = b.get("/api/transfers");
    assert_eq!(ts.as_array().unwrap().len(), 1, "only the FLAC, once: {ts}");
    let (code, seen) = b.post(&format!("/api/wishlist/{id}/seen"), json!({}));
    assert_eq!((code, &seen["new_matches"]), (200, &json!(0)));
    let (code, _, _) = b.request("delete", &format!("/api/wishlist/{id}"), "");
    assert_eq!(code, 204);
    assert_eq!(b.get("/api/wishlist"), json!([]));
}

/// A search says where it went and narrows by size, extension, network and free slot;
/// each source carries its own network's figures.
#[test]
fn search_results_carry_per_source_figures_and_filter() {
    let t = tempfile::tempdir().unwrap();
    let (_a, b, _) = two_nodes(t.path(), "", &[("docs/beta notes.pdf", content(50_000, 31))]);
    let r = b.search_until("beta notes", "beta notes.txt", &["nmdc", "slsk"]);
    wait_for("the pdf too", 30, || {
        let s = b.get(&format!("/api/searches/{}", r["search"]));
        s["results"].as_array()?.iter().any(|x| x["name"] == "beta notes.pdf").then_some(())
    });
    let s = b.get(&format!("/api/searches/{}", r["search"]));
    assert_eq!(s["state"], "running", "{s}");
    let mut sent: Vec<&str> = s["sent_to"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    sent.sort();
    assert_eq!(sent, ["nmdc_client", "slsk_client"]);
    let txt = s["results"].as_array().unwrap().iter().find(|x| x["name"] == "beta notes.txt").unwrap();
    for src in txt["sources"].as_array().unwrap() {
        match src["network"].as_str().unwrap() {
            "nmdc" => assert!(src["slots"].as_u64().is_some() && src.get("queue").is_none(), "{src}"),
            _ => assert!(src["queue"].as_u64().is_some() && src["speed"].as_u64().is_some(), "{src}"),
        }
    }
    let names = |q: &str| -> Vec<String> {
        let s = b.get(&format!("/api/searches/{}?{q}", r["search"]));
        let mut v: Vec<String> = s["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| format!("{}:{}", x["name"].as_str().unwrap(), x["sources"].as_array().unwrap().len()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("ext=pdf"), ["beta notes.pdf:2"]);
    assert_eq!(names("ext=txt&network=slsk"), ["beta notes.txt:1"]);
    assert_eq!(names("min_size=100000"), ["beta notes.txt:2"]);
    assert_eq!(names("max_size=100000&ext=PDF,mp3"), ["beta notes.pdf:2"]);
    assert!(names("min_bitrate=128").is_empty(), "no source gives a bitrate");
}
