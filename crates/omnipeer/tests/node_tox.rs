//! Tox friends inside the node (`omnipeer up`), against REAL c-toxcore 0.2.18 bots
//! (tests/tox_support/toxbot.c) that bootstrap off the node's own Tox bootstrap node:
//!
//! - a bot's friend request to the node's Tox ID (from GET /api/tox) shows up as pending;
//!   accepted through the API, the friend comes online, a line sent with POST
//!   /api/chats/messages reaches the bot, its echo appears in the friend's chat and the
//!   own line is marked delivered (read receipt);
//! - another bot's request is declined; a third bot is befriended by the node (POST
//!   /api/tox/friends) and chats too;
//! - after a restart (same data dir) the friend is still there, reconnects and echoes a
//!   new line, sent with `omnipeer chat send tox:friend:<pk>` (the CLI through the node);
//!   removing the friend drops its connection.
//!
//! Skips (and passes) when c-toxcore is not installed; `scripts/install-test-deps.sh`
//! installs it.

mod omni;
mod tox_support;

use omni::node::{server_config, Node, Ports};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tox_support::{Bot, BotOptions};

/// c-toxcore needs several seconds to announce itself and connect; generous on a busy CI.
const T: u64 = 90;

/// Wait up to `secs` for `f`; on timeout panic with `why()` (the logs).
fn wait<V>(what: &str, secs: u64, mut f: impl FnMut() -> Option<V>, why: impl Fn() -> String) -> V {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}\n{}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn friend<'a>(tox: &'a Value, pk: &str) -> Option<&'a Value> {
    tox["friends"].as_array()?.iter().find(|f| f["pk"] == pk)
}

fn lines(n: &Node, chat: &str) -> Vec<Value> {
    n.get(&format!("/api/chats/messages?chat={chat}")).as_array().cloned().unwrap_or_default()
}

/// Says `text` to the friend (API, or the CLI when `cli`) and waits for the bot's echo
/// in the chat and for the own line's read receipt.
fn say_and_get_echo(n: &Node, chat: &str, text: &str, cli: bool, logs: &dyn Fn() -> String) {
    say_and_get(n, chat, text, &format!("echo: {text}"), cli, logs)
}

fn say_and_get(n: &Node, chat: &str, text: &str, echo: &str, cli: bool, logs: &dyn Fn() -> String) {
    if cli {
        let (code, out, err) = n.cli(&["chat", "send", chat, text]);
        assert_eq!(code, 0, "chat send: {out}{err}");
    } else {
        let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": text}));
        assert_eq!(code, 201, "{m}");
        assert_eq!((m["own"].as_bool(), m["chat"].as_str()), (Some(true), Some(chat)), "{m}");
        assert!(m["id"].as_i64().unwrap() > 0, "{m}");
    }
    wait(
        &format!("the echo of {text:?}"),
        T,
        || lines(n, chat).into_iter().find(|l| l["text"] == echo && l["own"] == false),
        logs,
    );
    let own = wait(
        &format!("the read receipt of {text:?}"),
        T,
        || lines(n, chat).into_iter().find(|l| l["text"] == text && l["own"] == true && l["delivered"] == true),
        logs,
    );
    assert_eq!(own["chat"], chat);
}

#[test]
fn node_befriends_c_toxcore_chats_and_the_friend_reconnects_after_a_restart() {
    if !tox_support::require("node_befriends_c_toxcore_chats_and_the_friend_reconnects_after_a_restart") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    // Its own Tox bootstrap node and Tox client on port 0 (server_config), API fixed.
    let n = Node::start(dir.path(), &server_config("alice", p), p.api);
    let tox = n.get("/api/tox");
    let id = tox["id"].as_str().unwrap_or_else(|| panic!("{tox}")).to_owned();
    assert!(id.len() == 76 && id.chars().all(|c| c.is_ascii_hexdigit()), "{tox}");
    assert_eq!(tox["friends"], json!([]));
    assert_eq!(tox["requests"], json!([]));
    let nets = n.get("/api/networks");
    let net = |name: &str| {
        nets.as_array().unwrap().iter().find(|x| x["name"] == name).cloned().unwrap_or_else(|| panic!("{nets}"))
    };
    let client = net("tox_client");
    assert!(client["detail"].as_str().unwrap().contains(&id), "{client}");
    let boot = net("tox_bootstrap");
    let key = boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap().to_owned();
    let spec = format!("{}:{key}", boot["address"].as_str().unwrap());

    // Bot A and bot B ask to be friends; bot C waits to be asked (it accepts anything).
    let a = Bot::start(
        BotOptions::new().bootstrap(&spec).friend_request(&id).request_message("hi from A").timeout_secs(300),
    );
    let b = Bot::start(
        BotOptions::new().bootstrap(&spec).friend_request(&id).request_message("hi from B").timeout_secs(300),
    );
    let c = Bot::start(BotOptions::new().bootstrap(&spec).timeout_secs(300));
    let (apk, bpk, cid) = (a.public_key(), b.public_key(), c.tox_id());
    let cpk = cid[..64].to_owned();
    let logs = || format!("{}\n{}\n{}\nnode /api/tox: {}", a.log(), b.log(), c.log(), n.get("/api/tox"));

    // We ask C (outgoing request): it is a friend at once, with request_sent.
    let (code, f) = n.post("/api/tox/friends", json!({"id": cid, "message": "hello C, it's alice"}));
    assert_eq!(code, 201, "{f}");
    assert_eq!(
        (f["pk"].as_str(), f["request_sent"].as_bool(), f["online"].as_bool()),
        (Some(cpk.as_str()), Some(true), Some(false)),
        "{f}"
    );
    let (code, e) = n.post("/api/tox/friends", json!({"id": "12345"}));
    assert_eq!(code, 400, "{e}");
    let (code, e) = n.post("/api/tox/friends", json!({"id": id}));
    assert_eq!(code, 400, "own id: {e}");

    // A's and B's requests arrive and wait.
    let reqs = wait(
        "both friend requests pending",
        T,
        || {
            let t = n.get("/api/tox");
            let r = t["requests"].as_array()?.clone();
            (r.len() == 2).then_some(r)
        },
        logs,
    );
    let ra = reqs.iter().find(|r| r["pk"] == apk.as_str()).unwrap_or_else(|| panic!("{reqs:?}"));
    assert_eq!(ra["message"], "hi from A");
    assert!(reqs.iter().any(|r| r["pk"] == bpk.as_str() && r["message"] == "hi from B"), "{reqs:?}");
    // Not friends yet: no chat to write to.
    let (code, e) = n.post("/api/chats/messages", json!({"chat": format!("tox:friend:{apk}"), "text": "too early"}));
    assert_eq!(code, 400, "{e}");

    // Decline B, accept A (in lower case: keys are case-insensitive).
    let (code, _, body) = n.request("delete", &format!("/api/tox/requests/{bpk}"), "");
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = n.request("delete", &format!("/api/tox/requests/{bpk}"), "");
    assert_eq!(code, 404, "declined once: {body}");
    let (code, f) = n.post(&format!("/api/tox/requests/{}/accept", apk.to_lowercase()), json!({}));
    assert_eq!(code, 200, "{f}");
    assert_eq!(f["pk"], apk.as_str());
    let t = n.get("/api/tox");
    assert_eq!(t["requests"], json!([]), "{t}");

    let chat_a = format!("tox:friend:{apk}");
    let chat_c = format!("tox:friend:{cpk}");
    wait(
        "A online",
        T,
        || friend(&n.get("/api/tox"), &apk).filter(|f| f["online"] == true && f["progress"] == "Connected").cloned(),
        logs,
    );
    // The chat list has A with its online mark.
    let chats = n.get("/api/chats");
    let ca = chats.as_array().unwrap().iter().find(|x| x["id"] == chat_a.as_str()).unwrap_or_else(|| panic!("{chats}"));
    assert_eq!(
        (ca["network"].as_str(), ca["kind"].as_str(), ca["online"].as_bool()),
        (Some("tox"), Some("friend"), Some(true)),
        "{ca}"
    );

    say_and_get_echo(&n, &chat_a, "hello bot A", false, &logs);
    assert!(a.proc.wait_line("MESSAGE 0 'hello bot A'", Duration::from_secs(5)).is_some(), "{}", a.log());
    // An action: c-toxcore gets an ACTION "waves" (and echoes it as a normal message).
    say_and_get(&n, &chat_a, "/me waves", "echo: waves", false, &logs);

    // C accepted our request: online, the request answered.
    wait(
        "C online",
        T,
        || friend(&n.get("/api/tox"), &cpk).filter(|f| f["online"] == true && f["request_sent"] == false).cloned(),
        logs,
    );
    assert!(
        c.proc
            .wait_line("FRIEND_REQUEST ", Duration::from_secs(5))
            .is_some_and(|l| l.ends_with("'hello C, it's alice'")),
        "{}",
        c.log()
    );
    say_and_get_echo(&n, &chat_c, "hello bot C", false, &logs);
    // B is no friend.
    assert!(friend(&n.get("/api/tox"), &bpk).is_none());

    // Restart on the same data dir: the friends are still there and A reconnects.
    drop(n);
    let n = Node::restart(dir.path(), p.api);
    let logs = || format!("{}\n{}\nnode /api/tox: {}", a.log(), c.log(), n.get("/api/tox"));
    let t = n.get("/api/tox");
    assert_eq!(t["id"], id.as_str(), "same identity");
    assert!(friend(&t, &apk).is_some() && friend(&t, &cpk).is_some(), "{t}");
    assert_eq!(t["friends"].as_array().unwrap().len(), 2, "{t}");
    // Said at once (A is most likely not back yet): stored undelivered, sent when A is
    // online again, echoed, then marked delivered.
    let was_online = friend(&n.get("/api/tox"), &apk).is_some_and(|f| f["online"] == true);
    let (code, out, err) = n.cli(&["chat", "send", &chat_a, "after the restart"]);
    assert_eq!(code, 0, "chat send: {out}{err}");
    if !was_online {
        let l = lines(&n, &chat_a);
        let own = l.iter().find(|l| l["text"] == "after the restart").unwrap_or_else(|| panic!("{l:?}"));
        assert_eq!(own["delivered"], false, "{own}");
    }
    wait("A online again", T, || friend(&n.get("/api/tox"), &apk).filter(|f| f["online"] == true).cloned(), logs);
    wait(
        "the echo of the line said while A was away",
        T,
        || lines(&n, &chat_a).into_iter().find(|l| l["text"] == "echo: after the restart"),
        logs,
    );
    wait(
        "its receipt",
        T,
        || lines(&n, &chat_a).into_iter().find(|l| l["text"] == "after the restart" && l["delivered"] == true),
        logs,
    );
    say_and_get_echo(&n, &chat_a, "and once more", true, &logs);
    // The history survived too.
    assert!(lines(&n, &chat_a).iter().any(|l| l["text"] == "echo: hello bot A"));

    // Remove A: its connection drops at once (kill packet), it is gone from the list.
    let drops = || a.proc.lines().iter().filter(|l| *l == "FRIEND 0 CONNECTION 0").count();
    let before = drops();
    let (code, _, body) = n.request("delete", &format!("/api/tox/friends/{apk}"), "");
    assert_eq!(code, 200, "{body}");
    let t = n.get("/api/tox");
    assert!(friend(&t, &apk).is_none(), "{t}");
    wait("A's connection to drop", 30, || (drops() > before).then_some(()), logs);
    let (code, e) = n.post("/api/chats/messages", json!({"chat": chat_a, "text": "still there?"}));
    assert_eq!(code, 400, "{e}");
}

/// The Tox tab in a real headless Chromium (tests/web/tox.mjs): the Tox ID, a request
/// accepted with a click, the friend online, a chat line echoed and marked delivered,
/// and a bot added through the form.
#[test]
fn web_ui_tox_tab_accepts_a_request_chats_and_adds_a_friend() {
    if !tox_support::require("web_ui_tox_tab_accepts_a_request_chats_and_adds_a_friend") {
        return;
    }
    if !omni::web::web_deps_or_skip("web_ui_tox_tab_accepts_a_request_chats_and_adds_a_friend") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let n = Node::start(dir.path(), &server_config("alice", p), p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let nets = n.get("/api/networks");
    let boot = nets.as_array().unwrap().iter().find(|x| x["name"] == "tox_bootstrap").unwrap().clone();
    let spec = format!(
        "{}:{}",
        boot["address"].as_str().unwrap(),
        boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap()
    );
    let a = Bot::start(BotOptions::new().bootstrap(&spec).friend_request(&id).timeout_secs(300));
    let c = Bot::start(BotOptions::new().bootstrap(&spec).timeout_secs(300));
    let out = dir.path().join("browser");
    let (ok, lines) = omni::web::run_web_script(
        "tox.mjs",
        &[
            ("OMNI_URL", format!("{}/", n.base)),
            ("OMNI_TOXID", id.clone()),
            ("OMNI_REQUEST", a.public_key()),
            ("OMNI_ADD", c.tox_id()),
            ("OMNI_OUT", out.display().to_string()),
        ],
        Duration::from_secs(300),
    );
    if !ok {
        let kept = dir.keep();
        panic!("tox.mjs failed; files kept in {}\n{}\n{}\n{}", kept.display(), lines.join("\n"), a.log(), c.log());
    }
    // What the page did really happened: A is a friend, C got the form's request, the
    // line reached A.
    let t = n.get("/api/tox");
    assert!(friend(&t, &a.public_key()).is_some_and(|f| f["online"] == true), "{t}");
    assert!(friend(&t, &c.public_key()).is_some(), "{t}");
    assert!(
        c.proc
            .wait_line("FRIEND_REQUEST ", Duration::from_secs(5))
            .is_some_and(|l| l.ends_with("'added from the browser'")),
        "{}",
        c.log()
    );
    assert!(a.proc.wait_line("MESSAGE 0 'hello from the browser'", Duration::from_secs(5)).is_some(), "{}", a.log());
}

/// `[tox].auto_accept = true`: a request is accepted without asking; the friend chats.
#[test]
fn auto_accept_befriends_without_asking() {
    if !tox_support::require("auto_accept_befriends_without_asking") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = server_config("alice", p).replace("[tox]\n", "[tox]\nauto_accept = true\n");
    assert!(cfg.contains("auto_accept = true"), "{cfg}");
    let n = Node::start(dir.path(), &cfg, p.api);
    let t = n.get("/api/tox");
    assert_eq!(t["auto_accept"], true, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    // The identity is an `omnipeer tox id` profile.
    let profile = dir.path().join("tox.profile");
    let (code, out, err) = n.cli(&["tox", "id", "--profile", profile.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (0, id.as_str()), "{err}");
    let nets = n.get("/api/networks");
    let boot = nets.as_array().unwrap().iter().find(|x| x["name"] == "tox_bootstrap").unwrap().clone();
    let spec = format!(
        "{}:{}",
        boot["address"].as_str().unwrap(),
        boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap()
    );
    let a = Bot::start(BotOptions::new().bootstrap(&spec).friend_request(&id).timeout_secs(200));
    let apk = a.public_key();
    let logs = || format!("{}\nnode /api/tox: {}", a.log(), n.get("/api/tox"));
    wait("A online", T, || friend(&n.get("/api/tox"), &apk).filter(|f| f["online"] == true).cloned(), logs);
    assert_eq!(n.get("/api/tox")["requests"], json!([]), "nothing waits");
    say_and_get_echo(&n, &format!("tox:friend:{apk}"), "accepted by itself", false, &logs);
}

/// Two omnipeer nodes as Tox friends: bob's client bootstraps off alice's bootstrap node
/// (`[tox].bootstrap`), alice asks, bob accepts, each sees the other under its nickname
/// (the node's nick), and lines go both ways with read receipts.
#[test]
fn two_nodes_are_tox_friends_under_their_nicknames() {
    let da = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let pa = Ports::free();
    let a = Node::start(da.path(), &server_config("alice", pa), pa.api);
    let nets = a.get("/api/networks");
    let boot = nets.as_array().unwrap().iter().find(|x| x["name"] == "tox_bootstrap").unwrap().clone();
    let spec = format!(
        "{}:{}",
        boot["address"].as_str().unwrap(),
        boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap()
    );
    let b_api = omni::node::free_port();
    let cfg = omni::node::joining_config("bob", pa, b_api, "")
        .replace("[tox]\n", &format!("[tox]\nbootstrap = \"{spec}\"\n"));
    assert!(cfg.contains(&spec), "{cfg}");
    let b = Node::start(db.path(), &cfg, b_api);
    let (ida, idb) =
        (a.get("/api/tox")["id"].as_str().unwrap().to_owned(), b.get("/api/tox")["id"].as_str().unwrap().to_owned());
    let (pka, pkb) = (ida[..64].to_owned(), idb[..64].to_owned());
    let logs = || format!("alice /api/tox: {}\nbob /api/tox: {}", a.get("/api/tox"), b.get("/api/tox"));

    let (code, f) = a.post("/api/tox/friends", json!({"id": idb, "message": "alice here"}));
    assert_eq!(code, 201, "{f}");
    let r = wait(
        "alice's request at bob",
        T,
        || b.get("/api/tox")["requests"].as_array()?.iter().find(|r| r["pk"] == pka.as_str()).cloned(),
        logs,
    );
    assert_eq!(r["message"], "alice here");
    let (code, f) = b.post(&format!("/api/tox/requests/{pka}/accept"), json!({}));
    assert_eq!(code, 200, "{f}");
    // Online on both sides, each under the other's nick.
    wait(
        "bob online at alice, as bob",
        T,
        || friend(&a.get("/api/tox"), &pkb).filter(|f| f["online"] == true && f["nickname"] == "bob").cloned(),
        logs,
    );
    wait(
        "alice online at bob, as alice",
        T,
        || friend(&b.get("/api/tox"), &pka).filter(|f| f["online"] == true && f["nickname"] == "alice").cloned(),
        logs,
    );
    let (chat_at_a, chat_at_b) = (format!("tox:friend:{pkb}"), format!("tox:friend:{pka}"));
    let chats = a.get("/api/chats");
    assert!(
        chats
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == chat_at_a.as_str() && c["name"] == "bob" && c["online"] == true),
        "{chats}"
    );

    for (from, to, chat_from, chat_to, nick, text) in [
        (&a, &b, &chat_at_a, &chat_at_b, "alice", "hi bob, over Tox"),
        (&b, &a, &chat_at_b, &chat_at_a, "bob", "hi alice, über Tox ✓"),
    ] {
        let (code, m) = from.post("/api/chats/messages", json!({"chat": chat_from, "text": text}));
        assert_eq!(code, 201, "{m}");
        let got = wait(
            &format!("{text:?} at the other node"),
            T,
            || lines(to, chat_to).into_iter().find(|l| l["text"] == text),
            logs,
        );
        assert_eq!((got["nick"].as_str(), got["own"].as_bool()), (Some(nick), Some(false)), "{got}");
        wait(
            &format!("{text:?} delivered"),
            T,
            || lines(from, chat_from).into_iter().find(|l| l["text"] == text && l["delivered"] == true),
            logs,
        );
    }
}

/// `[tox].enabled = false`: the network says so and the Tox routes answer 503.
#[test]
fn a_disabled_tox_client_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = server_config("alice", p).replace("[tox]\n", "[tox]\nenabled = false\n");
    let n = Node::start(dir.path(), &cfg, p.api);
    let nets = n.get("/api/networks");
    assert!(nets.as_array().unwrap().iter().any(|x| x["name"] == "tox_client" && x["state"] == "disabled"), "{nets}");
    let (code, e) = n.get_status("/api/tox");
    assert_eq!(code, 503, "{e}");
    let chat = format!("tox:friend:{}", "AB".repeat(32));
    let (code, e) = n.post("/api/chats/messages", json!({"chat": chat, "text": "hi"}));
    assert_eq!(code, 503, "{e}");
    assert!(!dir.path().join("tox.profile").exists(), "no identity made");
}

/// A friend's file (c-toxcore's `tox_file_send`) is accepted by the node: it lands in the
/// downloads folder intact, and the friend's chat says it started and where it is.
#[test]
fn a_friends_file_lands_in_the_node_downloads() {
    if !tox_support::require("a_friends_file_lands_in_the_node_downloads") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = server_config("alice", p).replace("[tox]\n", "[tox]\nauto_accept = true\n");
    let n = Node::start(dir.path(), &cfg, p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let nets = n.get("/api/networks");
    let boot = nets.as_array().unwrap().iter().find(|x| x["name"] == "tox_bootstrap").unwrap().clone();
    let spec = format!(
        "{}:{}",
        boot["address"].as_str().unwrap(),
        boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap()
    );
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("holiday photos.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let mut a = Bot::start(
        BotOptions::new().bootstrap(&spec).friend_request(&id).send_file(&file).exit_on_file().timeout_secs(200),
    );
    let apk = a.public_key();
    let chat = format!("tox:friend:{apk}");
    let logs = || format!("{}\nnode /api/tox: {}", a.log(), n.get("/api/tox"));
    let done = wait(
        "the file in the chat",
        T * 2,
        || {
            lines(&n, &chat)
                .into_iter()
                .find_map(|l| l["text"].as_str().and_then(|t| t.strip_prefix("(received file ")).map(str::to_owned))
        },
        logs,
    );
    assert!(lines(&n, &chat).iter().any(|l| l["text"] == "(receiving file \"holiday photos.bin\", 3000000 bytes)"));
    let path = done.rsplit_once(", ").map(|(p, _)| p.to_owned()).unwrap();
    assert!(path.ends_with("holiday photos.bin"), "{done}");
    assert!(std::fs::read(&path).unwrap() == data, "the saved file differs");
    // The friend is a source like any other: the file is a download row of the node's
    // transfers, done, with its size and where it landed.
    let row = wait(
        "the file as a done transfer",
        T,
        || {
            n.get("/api/transfers")
                .as_array()?
                .iter()
                .find(|t| t["network"] == "tox" && t["name"] == "holiday photos.bin" && t["state"] == "done")
                .cloned()
        },
        || format!("{}\n/api/transfers: {}", logs(), n.get("/api/transfers")),
    );
    assert_eq!(row["source"].as_str().map(str::to_ascii_uppercase), Some(apk.to_ascii_uppercase()), "{row}");
    assert_eq!((row["size"].as_u64(), row["bytes"].as_u64()), (Some(3_000_000), Some(3_000_000)), "{row}");
    assert_eq!(row["local_path"].as_str(), Some(path.as_str()), "{row}");
    let on_disk = std::fs::read(row["local_path"].as_str().unwrap()).unwrap();
    assert_eq!(sha256_hex(&on_disk), sha256_hex(&data), "the row's file differs");
    assert_eq!(a.wait_exit(Duration::from_secs(T)), Some(0), "{}", a.log());
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Minimal standard base64 (the API carries saves as base64 JSON strings).
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn unb64(s: &str) -> Vec<u8> {
    let v = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    } as u32;
    let mut out = Vec::new();
    for q in s.trim_end_matches('=').as_bytes().chunks(4) {
        let n = q.iter().enumerate().fold(0u32, |n, (i, &c)| n | v(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..q.len()]);
    }
    out
}

/// Item 3 of issue 18: the profile in the web Tox tab's API. The running identity comes out
/// as a standard Tox save (plain and passphrase-encrypted, readable by the savedata
/// parser that reads c-toxcore's saves); a qTox-style encrypted save goes in, is refused
/// without its passphrase, and after a restart the node IS that identity with its friend.
/// Needs no c-toxcore.
#[test]
fn tox_profile_export_and_import_through_the_api() {
    use omnipeer_tox::savedata::{self, SaveData};
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let n = Node::start(dir.path(), &server_config("alice", p), p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let (code, plain) = n.post("/api/tox/profile/export", json!({}));
    assert_eq!(code, 200, "{plain}");
    assert_eq!((plain["id"].as_str(), plain["encrypted"].as_bool()), (Some(id.as_str()), Some(false)), "{plain}");
    let save = SaveData::parse(&unb64(plain["data"].as_str().unwrap())).unwrap();
    assert_eq!(save.to_profile().tox_id().to_hex(), id);
    let (code, enc) = n.post("/api/tox/profile/export", json!({"passphrase": "s3cret"}));
    assert_eq!((code, enc["encrypted"].as_bool()), (200, Some(true)), "{enc}");
    let bytes = unb64(enc["data"].as_str().unwrap());
    assert!(savedata::decrypt(&bytes, b"wrong").is_err());
    let save = SaveData::parse(&savedata::decrypt(&bytes, b"s3cret").unwrap()).unwrap();
    assert_eq!(save.to_profile().tox_id().to_hex(), id);

    // Another identity with one friend, as qTox would save it (encrypted).
    let mut other = omnipeer_node::tox::profile::new_profile("bob");
    let friend = omnipeer_node::tox::profile::new_profile("carol").keys.pk;
    assert!(other.add_friend(friend));
    let data = b64(&omnipeer_node::tox::profile::savedata_bytes(&other, Some(b"qtox pass")));
    let (code, e) = n.post("/api/tox/profile/import", json!({"data": data}));
    assert_eq!(code, 400, "an encrypted save without its passphrase: {e}");
    let (code, e) = n.post("/api/tox/profile/import", json!({"data": b64(b"not a save at all")}));
    assert_eq!(code, 400, "{e}");
    assert_eq!(n.get("/api/tox")["id"], id, "a refused import changes nothing");
    let (code, r) = n.post("/api/tox/profile/import", json!({"data": data, "passphrase": "qtox pass"}));
    assert_eq!(code, 200, "{r}");
    let new_id = other.tox_id().to_hex();
    assert_eq!(r, json!({"id": new_id, "friends": 1, "restart": true}));
    wait(
        "the Tox client to stop",
        T,
        || {
            let nets = n.get("/api/networks");
            let c = nets.as_array()?.iter().find(|x| x["name"] == "tox_client")?.clone();
            (c["state"] == "offline" && c["detail"].as_str()?.contains(&new_id)).then_some(())
        },
        || n.get("/api/networks").to_string(),
    );
    let bak = omnipeer_node::tox::profile::load(&dir.path().join("tox.profile.bak")).unwrap();
    assert_eq!(bak.tox_id().to_hex(), id, "the old identity is kept beside");
    drop(n);
    let n = Node::restart(dir.path(), p.api);
    let tox = n.get("/api/tox");
    assert_eq!(tox["id"], new_id, "{tox}");
    assert!(friend_pk_listed(&tox, &friend.to_hex()), "{tox}");
}

fn friend_pk_listed(tox: &Value, pk: &str) -> bool {
    friend(tox, pk).is_some()
}

/// The node sends a file to a friend (POST /api/tox/friends/{pk}/files, a path in its
/// downloads folder): c-toxcore's copy matches, and the upload is listed as done with its
/// size. A path outside the shared and downloads folders is refused.
#[test]
fn the_node_sends_a_file_to_a_friend_as_an_upload() {
    if !tox_support::require("the_node_sends_a_file_to_a_friend_as_an_upload") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = server_config("alice", p).replace("[tox]\n", "[tox]\nauto_accept = true\n");
    let n = Node::start(dir.path(), &cfg, p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let nets = n.get("/api/networks");
    let boot = nets.as_array().unwrap().iter().find(|x| x["name"] == "tox_bootstrap").unwrap().clone();
    let spec = format!(
        "{}:{}",
        boot["address"].as_str().unwrap(),
        boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap()
    );
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let file = downloads.join("report.bin");
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i.wrapping_mul(2246822519) >> 11) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let recv = tempfile::tempdir().unwrap();
    let a = Bot::start(
        BotOptions::new().bootstrap(&spec).friend_request(&id).recv_dir(recv.path()).exit_on_file().timeout_secs(200),
    );
    let apk = a.public_key();
    let logs = || format!("{}\nnode /api/tox: {}\n/api/uploads: {}", a.log(), n.get("/api/tox"), n.get("/api/uploads"));
    wait(
        "the friend online",
        T * 2,
        || friend(&n.get("/api/tox"), &apk).filter(|f| f["online"] == true).cloned(),
        logs,
    );
    let outside = work_file();
    let (code, e) = n.post(&format!("/api/tox/friends/{apk}/files"), json!({"path": outside.1.to_string_lossy()}));
    assert_eq!(code, 400, "a file outside the shares and downloads: {e}");
    let (code, up) = n.post(&format!("/api/tox/friends/{apk}/files"), json!({"path": file.to_string_lossy()}));
    assert_eq!(code, 201, "{up}");
    assert_eq!((up["network"].as_str(), up["size"].as_u64()), (Some("tox"), Some(2_500_000)), "{up}");
    let done = a.proc.wait_line("FILE_DONE ", Duration::from_secs(T * 2)).unwrap_or_else(|| panic!("{}", logs()));
    let path = done.split_once(' ').map(|(_, p)| p.to_owned()).unwrap();
    assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), sha256_hex(&data), "the friend's copy differs");
    let row = wait(
        "the upload done",
        T,
        || n.get("/api/uploads").as_array()?.iter().find(|u| u["id"] == up["id"] && u["state"] == "done").cloned(),
        logs,
    );
    assert_eq!(row["size"].as_u64(), Some(2_500_000), "{row}");
    drop(outside);
}

/// A file outside the node's folders (and the temp dir holding it).
fn work_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("secret.txt");
    std::fs::write(&f, b"no").unwrap();
    (d, f)
}

/// A friend's file is cancelled from its transfer row (POST /api/transfers/{id}/cancel):
/// c-toxcore sees the Tox KILL, the row is `cancelled` and nothing lands in the downloads
/// folder. (A 512 MiB sparse file, so the cancel lands long before the end.)
#[test]
fn a_friends_file_is_cancelled_from_the_transfers() {
    if !tox_support::require("a_friends_file_is_cancelled_from_the_transfers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = server_config("alice", p).replace("[tox]\n", "[tox]\nauto_accept = true\n");
    let n = Node::start(dir.path(), &cfg, p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let nets = n.get("/api/networks");
    let boot = nets.as_array().unwrap().iter().find(|x| x["name"] == "tox_bootstrap").unwrap().clone();
    let spec = format!(
        "{}:{}",
        boot["address"].as_str().unwrap(),
        boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap()
    );
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("big.bin");
    std::fs::File::create(&file).unwrap().set_len(512 << 20).unwrap();
    let a = Bot::start(BotOptions::new().bootstrap(&spec).friend_request(&id).send_file(&file).timeout_secs(200));
    let logs = || format!("{}\n/api/transfers: {}", a.log(), n.get("/api/transfers"));
    let row = wait(
        "the file as a running transfer",
        T * 2,
        || {
            n.get("/api/transfers")
                .as_array()?
                .iter()
                .find(|t| t["network"] == "tox" && t["name"] == "big.bin" && t["state"] == "running")
                .cloned()
        },
        logs,
    );
    let tid = row["id"].as_i64().unwrap();
    let (code, t) = n.post(&format!("/api/transfers/{tid}/cancel"), json!({}));
    assert_eq!((code, t["state"].as_str()), (200, Some("cancelled")), "{t}");
    a.proc
        .wait_line("FILE_CONTROL 0 2", Duration::from_secs(T))
        .unwrap_or_else(|| panic!("the bot never saw the KILL\n{}", logs()));
    assert_eq!(n.get(&format!("/api/transfers/{tid}"))["state"], "cancelled");
    assert!(!dir.path().join("downloads").join("big.bin").exists(), "a cancelled file landed in the downloads");
}
