//! Settings for everything (issue 15): the nick, description, share folders, folders,
//! listen addresses and passwords change through `PUT /api/settings` while the node runs,
//! all or nothing, and are kept in node.sqlite over the configuration file. Node A runs
//! the hub and the Soulseek server; node B joins them and changes its settings; A sees the
//! changes as any other user of the hub or searcher would.

mod omni;

use omni::node::{content, free_port, joining_config, server_config, wait_for, Node, Ports};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn setting(n: &Node, key: &str) -> Value {
    let all = n.get("/api/settings");
    all.as_array().unwrap_or_else(|| panic!("{all}")).iter().find(|s| s["key"] == key).cloned().unwrap_or(Value::Null)
}

fn put(n: &Node, change: Value) -> (u16, Value) {
    let (code, _, body) = n.request("PUT", "/api/settings", &change.to_string());
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The hub's users as A (which runs the hub and is logged in to it) lists them.
fn hub_user(a: &Node, nick: &str) -> Option<Value> {
    let users = a.get("/api/users?chat=nmdc:hub");
    users.as_array()?.iter().find(|u| u["nick"] == nick).cloned()
}

fn two_nodes(dir: &Path) -> (Node, Node, Ports, u16) {
    let pa = Ports::free();
    let a = Node::start(&dir.join("a"), &server_config("alice", pa), pa.api);
    let b_api = free_port();
    let b = Node::start(&dir.join("b"), &joining_config("bob", pa, b_api, ""), b_api);
    wait_for("bob on the hub", 30, || hub_user(&a, "bob"));
    (a, b, pa, b_api)
}

/// A nick and description changed on B log B in to the hub again: the hub (run by A)
/// lists the new nick with the new description and no longer the old one, without B
/// restarting. The change is kept across a restart of B, and `null` brings the file's
/// nick back.
#[test]
fn a_nick_change_logs_in_again_and_the_hub_lists_the_new_nick() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _, b_api) = two_nodes(t.path());
    assert_eq!(setting(&b, "nick")["value"], "bob");

    let (code, body) = put(&b, json!({"nick": "robert", "description": "changed through settings"}));
    assert_eq!(code, 200, "{body}");
    let robert = wait_for("robert on the hub", 30, || hub_user(&a, "robert"));
    assert_eq!(robert["description"], "changed through settings", "{robert}");
    wait_for("bob gone from the hub", 30, || hub_user(&a, "bob").is_none().then_some(()));
    assert_eq!(b.get("/api/status")["nick"], "robert");
    let s = setting(&b, "nick");
    assert_eq!(
        (s["value"].as_str(), s["config"].as_str(), s["overridden"].as_bool()),
        (Some("robert"), Some("bob"), Some(true)),
        "{s}"
    );
    // The Soulseek session logged in again as robert too: B is online there as robert.
    b.wait_online();
    let nets = b.get("/api/networks");
    let slsk = nets.as_array().unwrap().iter().find(|n| n["name"] == "slsk_client").cloned().unwrap();
    assert!(slsk["detail"].as_str().unwrap_or("").contains("robert"), "{slsk}");

    // Kept across a restart, over the file's nick.
    let dir = b.dir.clone();
    drop(b);
    let b = Node::restart(&dir, b_api);
    assert_eq!(b.get("/api/status")["nick"], "robert");
    wait_for("robert back on the hub", 30, || hub_user(&a, "robert"));

    // null: the file's nick again, at once.
    let (code, body) = put(&b, json!({"nick": null}));
    assert_eq!(code, 200, "{body}");
    wait_for("bob back on the hub", 30, || hub_user(&a, "bob"));
    let s = setting(&b, "nick");
    assert_eq!((s["value"].as_str(), s["overridden"].as_bool()), (Some("bob"), Some(false)), "{s}");

    // The node that runs the hub changes its own nick (and hub password): its client logs
    // in to its own hub again as alicia; reset, it is alice again (the nick its hub keeps
    // for it, with the password of its start).
    let (code, body) = put(&a, json!({"nick": "alicia", "nmdc_password": "another-one"}));
    assert_eq!(code, 200, "{body}");
    wait_for("alicia on A's own hub", 30, || hub_user(&a, "alicia"));
    let (code, body) = put(&a, json!({"nick": null, "nmdc_password": null}));
    assert_eq!(code, 200, "{body}");
    wait_for("alice back on A's own hub", 30, || hub_user(&a, "alice"));
    a.wait_online();
}

/// A partial download that is not running moves to a new incomplete folder and resumes
/// from there: the file arrives whole.
#[test]
fn a_paused_download_moves_to_a_new_incomplete_folder_and_finishes() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _, _) = two_nodes(t.path());
    let data = content(3_000_000, 41);
    std::fs::write(a.dir.join("share").join("iota partial.bin"), &data).unwrap();
    let (code, _) = a.post("/api/shares/rescan", json!({}));
    assert_eq!(code, 202);
    // 256 KiB/s: about 12 s for the file, time enough to pause it part way.
    let (code, body) = put(&b, json!({"max_download_kib": 256}));
    assert_eq!(code, 200, "{body}");
    let r = b.search_again_until("iota partial", "iota partial.bin", &["slsk"], 60);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "slsk"}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    wait_for("some bytes", 30, || (b.get(&format!("/api/transfers/{id}"))["bytes"].as_u64()? > 0).then_some(()));
    let (code, p) = b.post(&format!("/api/transfers/{id}/pause"), json!({}));
    assert_eq!(code, 200, "{p}");
    let old = b.dir.join("incomplete").join(id.to_string());
    wait_for("the partial file kept", 30, || {
        let t = b.get(&format!("/api/transfers/{id}"));
        (t["state"] == "paused" && t["bytes"].as_u64()? > 0 && old.exists()).then_some(())
    });
    let new_incomplete = t.path().join("new incomplete");
    let (code, body) = put(&b, json!({"incomplete": new_incomplete.display().to_string(), "max_download_kib": 0}));
    assert_eq!(code, 200, "{body}");
    // (At once, or when the paused attempt has wound down.)
    wait_for("the partial moved", 30, || (!old.exists() && new_incomplete.join(id.to_string()).is_dir()).then_some(()));
    let (code, body) = b.post(&format!("/api/transfers/{id}/resume"), json!({}));
    assert_eq!(code, 200, "{body}");
    let done = b.wait_done(id, 60);
    let got = std::fs::read(done["local_path"].as_str().unwrap()).unwrap();
    assert!(got == data, "the file arrived damaged: {done}");
    // The downloads folder and the incomplete folder cannot be one.
    let (code, body) = put(&b, json!({"downloads": new_incomplete.display().to_string()}));
    assert_eq!((code, body["key"].as_str()), (400, Some("incomplete")), "{body}");
}

/// A change with one wrong value changes nothing: a valid nick next to a share folder
/// that does not exist is a 400 naming `share_folders`, and the nick stays (the hub
/// still lists bob). Passwords are write-only.
#[test]
fn an_invalid_change_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _, _) = two_nodes(t.path());
    let folders_before = setting(&b, "share_folders")["value"].clone();
    let missing = t.path().join("no such folder");
    let (code, body) = put(&b, json!({"nick": "carl", "share_folders": [missing.display().to_string()]}));
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["key"], "share_folders", "{body}");
    assert!(body["error"].as_str().unwrap().contains("does not exist"), "{body}");
    // A downloads folder that cannot be created (under a file) is refused too, and the
    // valid nick beside it is not taken.
    let file = t.path().join("a file");
    std::fs::write(&file, b"x").unwrap();
    let (code, body) = put(&b, json!({"nick": "carl", "downloads": file.join("sub").display().to_string()}));
    assert_eq!((code, body["key"].as_str()), (400, Some("downloads")), "{body}");
    let (code, body) = put(&b, json!({"nick": "two words"}));
    assert_eq!((code, body["key"].as_str()), (400, Some("nick")), "{body}");

    assert_eq!(setting(&b, "nick")["value"], "bob");
    assert_eq!(setting(&b, "share_folders")["value"], folders_before);
    assert_eq!(b.get("/api/status")["nick"], "bob");
    std::thread::sleep(Duration::from_secs(2));
    assert!(hub_user(&a, "bob").is_some() && hub_user(&a, "carl").is_none());

    // A password is never shown: only whether one is set.
    let (code, body) = put(&b, json!({"slsk_password": "hunter2-settings"}));
    assert_eq!(code, 200, "{body}");
    let all = b.get("/api/settings").to_string();
    assert!(!all.contains("hunter2-settings"), "{all}");
    let pw = setting(&b, "slsk_password");
    assert_eq!((pw["set"].as_bool(), &pw["value"]), (Some(true), &Value::Null), "{pw}");
}

/// A share folder added on B is rescanned and served on both networks: A finds its file
/// from B on the hub and on the Soulseek server, and downloads it; new downloads of B go
/// to a downloads folder set through the settings. Both survive a restart; `null` brings
/// the file's folders back.
#[test]
fn a_share_folder_added_is_served_and_a_new_downloads_folder_is_used() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, _, b_api) = two_nodes(t.path());
    let extra = t.path().join("more music");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("zeta settings track.bin"), content(300_000, 21)).unwrap();
    let mut folders: Vec<Value> = setting(&b, "share_folders")["value"].as_array().unwrap().clone();
    folders.push(json!(extra.display().to_string()));
    let (code, body) = put(&b, json!({"share_folders": folders}));
    assert_eq!(code, 200, "{body}");
    let r = a.search_again_until("zeta settings", "zeta settings track.bin", &["nmdc", "slsk"], 60);
    let sources = r["sources"].as_array().unwrap();
    assert!(sources.iter().all(|s| s["user"] == "bob"), "{r}");
    let shares = b.get("/api/shares");
    assert!(shares["folders"].to_string().contains("more music"), "{shares}");

    // B's downloads go to a new folder from now on (created for it).
    std::fs::write(a.dir.join("share").join("eta download.bin"), content(200_000, 22)).unwrap();
    let new_downloads = t.path().join("new downloads");
    let (code, body) = put(&b, json!({"downloads": new_downloads.display().to_string()}));
    assert_eq!(code, 200, "{body}");
    assert!(new_downloads.is_dir());
    let (code, _) = a.post("/api/shares/rescan", json!({}));
    assert_eq!(code, 202);
    let r = b.search_again_until("eta download", "eta download.bin", &["slsk"], 60);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "slsk"}));
    assert_eq!(code, 201, "{tr}");
    let done = b.wait_done(tr["id"].as_i64().unwrap(), 60);
    let path = done["local_path"].as_str().unwrap();
    assert!(Path::new(path).starts_with(&new_downloads), "{done}");

    // Kept across a restart; null resets the share folders to the file's.
    let dir = b.dir.clone();
    drop(b);
    let b = Node::restart(&dir, b_api);
    let s = setting(&b, "share_folders");
    assert!(s["value"].to_string().contains("more music") && s["overridden"] == true, "{s}");
    assert_eq!(setting(&b, "downloads")["value"], new_downloads.display().to_string());
    let (code, body) = put(&b, json!({"share_folders": null, "downloads": null}));
    assert_eq!(code, 200, "{body}");
    let s = setting(&b, "share_folders");
    assert!(!s["value"].to_string().contains("more music") && s["overridden"] == false, "{s}");
    assert_eq!(setting(&b, "downloads")["value"], dir.join("downloads").display().to_string());
}

/// The same through the web UI in a real headless Chromium (tests/web/settings.mjs): on
/// the Settings page a new nick with a missing share folder is refused (the reason beside
/// the folders, nothing changed); then the nick and a real folder are saved and both are
/// in force without a restart: the page sees the new nick in the hub's user list and the
/// folder's file among the shared files, and A (the hub) lists the new nick and finds
/// the file from B.
#[test]
fn web_ui_changes_the_nick_and_a_share_folder_without_a_restart() {
    if !omni::web::web_deps_or_skip("web_ui_changes_the_nick_and_a_share_folder_without_a_restart") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b, _, _) = two_nodes(t.path());
    let folder = t.path().join("web folder");
    std::fs::create_dir_all(&folder).unwrap();
    let file = "theta web settings.bin";
    std::fs::write(folder.join(file), content(150_000, 31)).unwrap();
    let (ok, lines) = omni::web::run_web_script(
        "settings.mjs",
        &[
            ("OMNI_URL", format!("{}/", b.base)),
            ("OMNI_OLD", "bob".to_owned()),
            ("OMNI_NICK", "bobby".to_owned()),
            ("OMNI_FOLDER", folder.display().to_string()),
            ("OMNI_FILE", file.to_owned()),
            ("OMNI_MISSING", t.path().join("no such folder").display().to_string()),
            ("OMNI_OUT", t.path().join("browser").display().to_string()),
        ],
        Duration::from_secs(180),
    );
    if !ok {
        let kept = t.keep();
        panic!("settings.mjs failed; files kept in {}\n{}", kept.display(), lines.join("\n"));
    }
    // What the page did really happened, seen from the other node.
    wait_for("bobby on the hub", 30, || hub_user(&a, "bobby"));
    assert!(hub_user(&a, "bob").is_none());
    let r = a.search_again_until("theta web settings", file, &["nmdc", "slsk"], 60);
    assert!(r["sources"].as_array().unwrap().iter().all(|s| s["user"] == "bobby"), "{r}");
}
