//! Several hubs and Soulseek servers at once (issue 13, item 4): node B is logged in to
//! two hubs and two Soulseek servers, run by two other `omnipeer up` processes. The
//! second hub is added through the API while B runs; the second server comes from
//! `[[slsk_servers]]`. One search finds files from all four sessions, B downloads from
//! each, keeps four separate chats, and a session removed through the API logs out; the
//! one added through the API comes back after a restart.

mod omni;

use omni::node::{content, free_port, joining_config, server_config, sha256_file, wait_for, Node, Ports};
use serde_json::{json, Value};
use std::path::Path;

fn server_node(dir: &Path, nick: &str, file: &str, seed: u64) -> (Node, Ports) {
    let p = Ports::free();
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join(file), content(700_000 + seed as usize, seed)).unwrap();
    (Node::start(dir, &server_config(nick, p), p.api), p)
}

fn online(n: &Node, name: &str) -> Option<Value> {
    let nets = n.get("/api/networks");
    nets.as_array()?.iter().find(|x| x["name"] == name && x["state"] == "online").cloned()
}

/// The sources of the result named `name`, as (network, session) pairs, once there are
/// `want` of them.
fn sources_of(b: &Node, search: u64, name: &str, want: usize) -> (Value, Vec<(String, String)>) {
    wait_for(&format!("{want} sources of {name}"), 40, || {
        let s = b.get(&format!("/api/searches/{search}"));
        let r = s["results"].as_array()?.iter().find(|r| r["name"] == name)?.clone();
        let src: Vec<(String, String)> = r["sources"]
            .as_array()?
            .iter()
            .map(|x| (x["network"].as_str().unwrap().to_owned(), x["session"].as_str().unwrap_or("").to_owned()))
            .collect();
        (src.len() >= want).then_some((r, src))
    })
}

#[test]
fn one_node_on_two_hubs_and_two_soulseek_servers() {
    let t = tempfile::tempdir().unwrap();
    let (a1, p1) = server_node(&t.path().join("a1"), "alice", "gamma one.bin", 1);
    let (a2, p2) = server_node(&t.path().join("a2"), "carol", "gamma two.bin", 2);
    let b_api = free_port();
    let extra = format!("[[slsk_servers]]\naddress = \"127.0.0.1:{}\"\nname = \"srv2\"\n", p2.slsk);
    let b = Node::start(&t.path().join("b"), &joining_config("bob", p1, b_api, &extra), b_api);
    wait_for("the second Soulseek server's session", 30, || online(&b, "slsk_client@srv2"));

    // The second hub, added while B runs, comes online without a restart.
    let (code, n) = b.post(
        "/api/networks",
        json!({"network": "nmdc", "address": format!("dchub://127.0.0.1:{}", p2.hub), "label": "hub2"}),
    );
    assert_eq!(code, 201, "{n}");
    assert_eq!((n["name"].as_str(), n["session"]["label"].as_str()), (Some("nmdc_client@hub2"), Some("hub2")));
    let hub2 = wait_for("the added hub online", 30, || online(&b, "nmdc_client@hub2"));
    assert_eq!(hub2["address"], format!("127.0.0.1:{}", p2.hub));
    // The same hub twice, or a label taken, is a conflict; a bad address is refused.
    let (code, e) = b.post("/api/networks", json!({"network": "nmdc", "address": format!("127.0.0.1:{}", p2.hub)}));
    assert_eq!(code, 409, "{e}");
    let (code, e) = b.post("/api/networks", json!({"network": "nmdc", "address": "ftp://x:1"}));
    assert_eq!(code, 400, "{e}");
    // /api/networks lists each session as its own entry.
    let nets = b.get("/api/networks");
    let names: Vec<&str> = nets.as_array().unwrap().iter().filter_map(|n| n["name"].as_str()).collect();
    for want in ["nmdc_client", "slsk_client", "nmdc_client@hub2", "slsk_client@srv2"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }

    // One search: each file from the two sessions of the node that shares it.
    let (code, s) = b.post("/api/searches", json!({"query": "gamma"}));
    assert_eq!(code, 201, "{s}");
    let sid = s["id"].as_u64().unwrap();
    let (r1, mut src1) = sources_of(&b, sid, "gamma one.bin", 2);
    let (r2, mut src2) = sources_of(&b, sid, "gamma two.bin", 2);
    src1.sort();
    src2.sort();
    let pair = |n: &str, s: &str| (n.to_owned(), s.to_owned());
    assert_eq!(src1, [pair("nmdc", ""), pair("slsk", "")], "{r1}");
    assert_eq!(src2, [pair("nmdc", "hub2"), pair("slsk", "srv2")], "{r2}");

    // A download from each of the four sessions.
    for (r, dir, file) in [(&r1, &a1.dir, "gamma one.bin"), (&r2, &a2.dir, "gamma two.bin")] {
        let want = sha256_file(&dir.join("share").join(file));
        for i in 0..2 {
            let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "source": i}));
            assert_eq!(code, 201, "{tr}");
            let done = b.wait_done(tr["id"].as_i64().unwrap(), 60);
            let got = sha256_file(Path::new(done["local_path"].as_str().unwrap()));
            assert_eq!(got, want, "{file} from source {i}: {done}");
        }
    }

    // Four separate chats: each line reaches the hub or server it was said on, only.
    for (chat, text) in [
        ("nmdc:hub", "to hub one"),
        ("nmdc@hub2:hub", "to hub two"),
        ("slsk:room:omnipeer", "to server one"),
        ("slsk@srv2:room:omnipeer", "to server two"),
    ] {
        if chat.contains("room") {
            wait_for(&format!("{chat} joined"), 30, || {
                b.get("/api/chats").as_array()?.iter().any(|c| c["id"] == chat).then_some(())
            });
        }
        let (code, m) = b.post("/api/chats/messages", json!({"chat": chat, "text": text}));
        assert_eq!(code, 201, "{chat}: {m}");
    }
    let heard = |n: &Node, chat: &str, text: &str| {
        let m = n.get(&format!("/api/chats/messages?chat={chat}"));
        m.as_array().is_some_and(|m| m.iter().any(|m| m["text"] == text && m["nick"] == "bob"))
    };
    for (node, chat, text) in [
        (&a1, "nmdc:hub", "to hub one"),
        (&a2, "nmdc:hub", "to hub two"),
        (&a1, "slsk:room:omnipeer", "to server one"),
        (&a2, "slsk:room:omnipeer", "to server two"),
    ] {
        wait_for(&format!("{text:?} heard"), 20, || heard(node, chat, text).then_some(()));
    }
    assert!(!heard(&a1, "nmdc:hub", "to hub two") && !heard(&a2, "nmdc:hub", "to hub one"));
    // B keeps them apart too: each session's echo is in its own chat.
    wait_for("B's four chats", 20, || {
        let ok = heard(&b, "nmdc:hub", "to hub one")
            && heard(&b, "nmdc@hub2:hub", "to hub two")
            && heard(&b, "slsk:room:omnipeer", "to server one")
            && heard(&b, "slsk@srv2:room:omnipeer", "to server two")
            && !heard(&b, "nmdc:hub", "to hub two");
        ok.then_some(())
    });
    // A private message from A2 arrives in the PM chat of the second hub's session.
    let (code, m) = a2.post("/api/chats/messages", json!({"chat": "nmdc:pm:bob", "text": "hi from two"}));
    assert_eq!(code, 201, "{m}");
    wait_for("the PM in nmdc@hub2:pm:carol", 20, || {
        let m = b.get("/api/chats/messages?chat=nmdc@hub2:pm:carol");
        m.as_array()?.iter().any(|m| m["text"] == "hi from two").then_some(())
    });

    // The added hub survives a restart (it is kept in node.sqlite) …
    let b_dir = b.dir.clone();
    drop(b);
    let b = Node::restart(&b_dir, b_api);
    wait_for("the added hub online after a restart", 30, || online(&b, "nmdc_client@hub2"));
    // … and, removed, logs out and is gone.
    let (code, _, body) = b.request("delete", "/api/networks/nmdc_client@hub2", "");
    assert_eq!(code, 204, "{body}");
    let nets = b.get("/api/networks");
    assert!(!nets.as_array().unwrap().iter().any(|n| n["name"] == "nmdc_client@hub2"), "{nets}");
    let (code, _, _) = b.request("delete", "/api/networks/nmdc_client@hub2", "");
    assert_eq!(code, 404);
    let (code, m) = b.post("/api/chats/messages", json!({"chat": "nmdc@hub2:hub", "text": "x"}));
    assert_eq!(code, 503, "{m}");
}

/// The same through the web UI in a real headless Chromium (tests/web/sessions.mjs): a
/// hub added with the Status page's form comes online, its main chat is listed apart from
/// the first hub's and a line said there reaches that hub only; its row's Remove button
/// logs out of it.
#[test]
fn web_ui_adds_a_hub_chats_there_and_removes_it() {
    if !omni::web::web_deps_or_skip("web_ui_adds_a_hub_chats_there_and_removes_it") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a1, p1) = server_node(&t.path().join("a1"), "alice", "delta one.bin", 3);
    let (a2, p2) = server_node(&t.path().join("a2"), "carol", "delta two.bin", 4);
    let b_api = free_port();
    let b = Node::start(&t.path().join("b"), &joining_config("bob", p1, b_api, ""), b_api);
    let say = "bob says hello to the second hub";
    let (ok, lines) = omni::web::run_web_script(
        "sessions.mjs",
        &[
            ("OMNI_URL", format!("{}/", b.base)),
            ("OMNI_HUB", format!("dchub://127.0.0.1:{}", p2.hub)),
            ("OMNI_SAY", say.to_owned()),
            ("OMNI_OUT", t.path().join("browser").display().to_string()),
        ],
        std::time::Duration::from_secs(180),
    );
    if !ok {
        let kept = t.keep();
        panic!("sessions.mjs failed; files kept in {}\n{}", kept.display(), lines.join("\n"));
    }
    // What the page did really happened: the line reached the second hub, not the first,
    // and the session is gone from B.
    let heard = |n: &Node| {
        let m = n.get("/api/chats/messages?chat=nmdc:hub");
        m.as_array().is_some_and(|m| m.iter().any(|m| m["text"] == say && m["nick"] == "bob"))
    };
    wait_for("the line on the second hub", 20, || heard(&a2).then_some(()));
    assert!(!heard(&a1), "the line reached the first hub");
    let nets = b.get("/api/networks");
    assert!(!nets.as_array().unwrap().iter().any(|n| n["name"] == "nmdc_client@hub2"), "{nets}");
    // The buddy mark the page set is kept.
    let marks = b.get("/api/contacts");
    assert_eq!(marks, serde_json::json!([{"network": "nmdc", "name": "carol", "relation": "buddy"}]));
}

/// A second node with the first one's name (the README's recipe without a nick of its
/// own): each refused login is a warning on the terminal naming the setting to change,
/// said once, not again at every retry.
#[test]
fn a_refused_login_names_the_setting_to_change() {
    let t = tempfile::tempdir().unwrap();
    let (_a, p) = server_node(&t.path().join("a"), "alice", "epsilon.bin", 5);
    let b_dir = t.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::write(b_dir.join("config.toml"), joining_config("alice", p, free_port(), "")).unwrap();
    let b = omni::Omni::start_in(&b_dir, &["up"]);
    let hub = b.wait_line_containing("the hub (127.0.0.1");
    // (The hub keeps its own node's nick for it: registered, in effect.)
    assert!(hub.contains("refused the login as alice") && hub.contains("another name ([node].nick)"), "{hub}");
    let slsk = b.wait_line_containing("the Soulseek server (127.0.0.1");
    assert!(slsk.contains("refused the login as alice") && slsk.contains("registered with another password"), "{slsk}");
    // Retries (every 5 s) do not repeat it.
    std::thread::sleep(std::time::Duration::from_secs(12));
    let later = b.lines_so_far();
    assert!(!later.iter().any(|l| l.contains("refused the login")), "said again: {later:#?}");
}
