//! Interop: conferences (the group chats of c-toxcore 0.2.18, its `tox_conference_*` API;
//! docs/protocols/tox.md#conferences) between `omnipeer tox echo` (the binary under test)
//! and REAL c-toxcore bots (tests/tox_support/toxbot.c), bootstrapped off tox-bootstrapd.
//!
//! c-toxcore 0.2.18 has no NGC (`tox_group_*`): conferences are the group chats it has.
//!
//! - a c-toxcore bot creates a conference and invites omnipeer and a second bot that is
//!   not omnipeer's friend: everyone sees everyone's lines exactly once (the second bot's
//!   reach omnipeer only through the first, which relays them) and a list of three names;
//! - omnipeer creates a conference and invites a c-toxcore bot and a second omnipeer that
//!   is not the bot's friend: lines go both ways, and the bot's line reaches the second
//!   omnipeer (and its echo comes back) only through the first omnipeer's relaying,
//!   exactly once;
//! - the node (`omnipeer up`) creates a conference through its API, invites a c-toxcore
//!   friend, chats with it through the chat API and lists its peers as the chat's users;
//!   after a restart it is still in the conference and the friend rejoins; an invite from
//!   another c-toxcore friend is shown and accepted through the API;
//! - the same through the web UI in a headless Chromium (tests/web/tox_conference.mjs).
//!
//! Skips (and passes) when c-toxcore is not installed; `scripts/install-test-deps.sh`
//! installs it.

mod omni;
mod tox_support;

use omni::node::{Node, Ports};
use omni::tox::{chat_lines, friend_online, listed_chat, start_node, user_nicks};
use serde_json::json;
use std::time::Duration;
use tox_support::{count, echo, keys, omni, tox_send, wait, Bootstrapd, Bot, BotOptions, Proc};

/// Generous bound for friends to connect and a conference to form on a loaded machine.
const T: Duration = Duration::from_secs(120);
/// How long duplicates get to show up after the last expected line.
const SETTLE: Duration = Duration::from_secs(5);

/// Waits up to `T` until `p` printed `line`, else panics with every log.
fn expect(p: &Proc, line: &str, logs: &[&Proc]) {
    tox_support::expect(p, line, T, logs)
}

/// The conference id (64 hex) in omnipeer's "joined conference ID" / "conference ID
/// created" line.
fn conference_id(p: &Proc) -> String {
    p.wait_for(T, |l| {
        l.strip_prefix("joined conference ")
            .or_else(|| l.strip_prefix("conference ").and_then(|r| r.strip_suffix(" created")))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no conference\n{}", p.log()))
}

/// Alice (c-toxcore) creates the conference and invites omnipeer and Bob (c-toxcore, her
/// friend but not omnipeer's). Bob's lines reach omnipeer only through Alice.
#[test]
fn c_toxcore_creates_conference_with_omnipeer_and_a_stranger() {
    if !tox_support::require("c_toxcore_creates_conference_with_omnipeer_and_a_stranger") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let (e, echo_id) = echo(&work.path().join("echo.tox"), &bsd.node_spec(), &[]);
    let (a_sk, a_pk) = keys(0x61);
    let (b_sk, b_pk) = keys(0x62);
    let bob = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .secret_key(&b_sk)
            .friend(&a_pk)
            .args(&["-n", "bob", "-J", "-M", "line from bob", "-K", "3"])
            .timeout_secs(200),
    );
    // Alice's friend 0 is Bob (-F), friend 1 omnipeer (-f): she invites both.
    let alice = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .secret_key(&a_sk)
            .friend(&b_pk)
            .friend_request(&echo_id)
            .args(&["-n", "alice", "-G", "0", "-G", "1", "-M", "line from alice", "-K", "3"])
            .timeout_secs(200),
    );
    let all = [&e, &alice.proc, &bob.proc];
    let cid = conference_id(&e);
    let c = |who: &str, text: &str| format!("conference {cid} {who}: {text}");
    expect(&e, &format!("conference {cid} peers: alice, bob, omnipeer"), &all);
    // omnipeer sees both lines (Bob's relayed by Alice) and echoes them.
    expect(&e, &c("alice", "line from alice"), &all);
    expect(&e, &c("bob", "line from bob"), &all);
    for bot in [&alice, &bob] {
        let peers = bot.proc.wait_for(T, |l| {
            let rest = l.strip_prefix("CONFERENCE_PEERS 0 3 ")?;
            let mut names: Vec<&str> = rest.split(' ').collect();
            names.sort();
            (names == ["'alice'", "'bob'", "'omnipeer'"]).then_some(())
        });
        assert!(peers.is_some(), "no list of three names\n{}", bot.log());
        expect(&bot.proc, "CONFERENCE_MESSAGE 0 'omnipeer' 'echo: line from alice'", &all);
        expect(&bot.proc, "CONFERENCE_MESSAGE 0 'omnipeer' 'echo: line from bob'", &all);
    }
    expect(&alice.proc, "CONFERENCE_MESSAGE 0 'bob' 'line from bob'", &all);
    expect(&bob.proc, "CONFERENCE_MESSAGE 0 'alice' 'line from alice'", &all);
    std::thread::sleep(SETTLE);
    // Exactly once each: nothing dropped, nothing duplicated along the relays.
    assert_eq!(count(&e, &c("alice", "line from alice")), 1, "{}", e.log());
    assert_eq!(count(&e, &c("bob", "line from bob")), 1, "{}", e.log());
    for bot in [&alice, &bob] {
        for l in ["echo: line from alice", "echo: line from bob"] {
            assert_eq!(count(&bot.proc, &format!("CONFERENCE_MESSAGE 0 'omnipeer' '{l}'")), 1, "{}", bot.log());
        }
    }
}

/// omnipeer (O1) creates the conference and invites Carol (c-toxcore) and O2 (a second
/// omnipeer): both are O1's friends, not each other's, and omnipeer connects to no
/// stranger, so Carol's line reaches O2, and O2's echo of it reaches Carol, only through
/// O1's relaying.
#[test]
fn omnipeer_creates_conference_and_relays_between_its_friends() {
    if !tox_support::require("omnipeer_creates_conference_and_relays_between_its_friends") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let (c_sk, c_pk) = keys(0x63);
    // O2's profile, befriended with O1 by `tox send` (which saves the friend).
    let p2 = work.path().join("o2.tox");
    let mut id = omni("omnipeer-tox-id", &["tox", "id", "--profile", p2.to_str().unwrap()]);
    assert_eq!(id.wait_exit(Duration::from_secs(30)), Some(0), "{}", id.log());
    let o2_pk = id.lines()[0][..64].to_owned();
    let with = format!("{c_pk},{o2_pk}");
    let (o1, o1_id) = echo(&work.path().join("o1.tox"), &bsd.node_spec(), &["--conference-with", &with]);
    let mut send = tox_send(&p2, &bsd.node_spec(), &o1_id, "befriend", &["--timeout", "100"]);
    assert_eq!(send.wait_exit(T), Some(0), "{}\n{}", send.log(), o1.log());
    let (o2, _) = echo(&p2, &bsd.node_spec(), &[]);
    let carol = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .secret_key(&c_sk)
            .friend_request(&o1_id)
            .args(&["-n", "carol", "-J", "-M", "line from carol", "-K", "3"])
            .timeout_secs(200),
    );
    let all = [&o1, &o2, &carol.proc];
    let cid = conference_id(&o1);
    assert_eq!(conference_id(&o2), cid, "O2 joined another conference");
    expect(&o1, &format!("invited {c_pk} to conference {cid}"), &all);
    for o in [&o1, &o2] {
        expect(o, &format!("conference {cid} peers: carol, omnipeer, omnipeer"), &all);
        // Carol's line: at O2 only through O1.
        expect(o, &format!("conference {cid} carol: line from carol"), &all);
    }
    expect(&carol.proc, "CONFERENCE_JOINED 0", &all);
    // Both omnipeers echo Carol's line; O2's echo reaches Carol only through O1.
    let echo_line = "CONFERENCE_MESSAGE 0 'omnipeer' 'echo: line from carol'";
    let mut seen = 0;
    let two = carol.proc.wait_for(T, |l| {
        seen += (l == echo_line) as usize;
        (seen >= 2).then_some(())
    });
    assert!(two.is_some(), "not both echoes\n{}\n{}\n{}", carol.log(), o1.log(), o2.log());
    std::thread::sleep(SETTLE);
    assert_eq!(count(&carol.proc, echo_line), 2, "{}", carol.log());
    for o in [&o1, &o2] {
        assert_eq!(count(o, &format!("conference {cid} carol: line from carol")), 1, "{}", o.log());
        // Each omnipeer sees the other's echo once (never its own).
        assert_eq!(count(o, &format!("conference {cid} omnipeer: echo: line from carol")), 1, "{}", o.log());
    }
}

/// Waits up to `T` for `f`; on timeout panics with `why()`.
fn wait_t<V>(what: &str, f: impl FnMut() -> Option<V>, why: impl Fn() -> String) -> V {
    wait(what, T, f, why)
}

/// A bootstrap node, a node (`alice`, in a temp dir, with its Tox ID) and Carol, a
/// c-toxcore bot that befriends it, joins every conference and echoes every line, running
/// at most `secs`.
fn node_and_carol(secs: u32) -> (Bootstrapd, tempfile::TempDir, Ports, Node, String, Bot) {
    let bsd = Bootstrapd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let (n, id) = start_node(dir.path(), p, "alice", &bsd.node_spec());
    let carol = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .friend_request(&id)
            .args(&["-n", "carol", "-J", "-E"])
            .timeout_secs(secs),
    );
    (bsd, dir, p, n, id, carol)
}

/// The node's conference chats through its API, with a c-toxcore friend (Carol echoes
/// every line), across a restart; then an invite from Dave accepted through the API.
#[test]
fn node_conference_through_the_api_survives_a_restart() {
    if !tox_support::require("node_conference_through_the_api_survives_a_restart") {
        return;
    }
    let (bsd, dir, p, n, id, carol) = node_and_carol(400);
    let c_pk = carol.public_key();
    let logs = || format!("{}\nnode /api/tox/conferences: {}", carol.log(), n.get("/api/tox/conferences"));
    wait_t("Carol online", || friend_online(&n, &c_pk), logs);
    let (code, c) = n.post("/api/tox/conferences", json!({"title": "node room"}));
    assert_eq!(code, 201, "{c}");
    let cid = c["id"].as_str().unwrap().to_owned();
    let chat = format!("tox:conference:{cid}");
    assert_eq!((c["chat"].as_str(), c["title"].as_str()), (Some(chat.as_str()), Some("node room")), "{c}");
    let (code, e) = n.post(&format!("/api/tox/conferences/{cid}/invite"), json!({"friend": "00"}));
    assert_eq!(code, 400, "{e}");
    let (code, c) = n.post(&format!("/api/tox/conferences/{cid}/invite"), json!({"friend": c_pk}));
    assert_eq!(code, 200, "{c}");
    expect(&carol.proc, "CONFERENCE_JOINED 0", &[&carol.proc]);
    // The title reached c-toxcore with the peer list.
    expect(&carol.proc, "CONFERENCE_TITLE 0 'node room'", &[&carol.proc]);
    wait_t("Carol in the user list", || (user_nicks(&n, &chat) == ["alice", "carol"]).then_some(()), logs);
    let listed = listed_chat(&n, &chat);
    assert_eq!((listed["kind"].as_str(), listed["name"].as_str()), (Some("conference"), Some("node room")), "{listed}");
    // A line each way.
    let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "hello conference"}));
    assert_eq!(code, 201, "{m}");
    expect(&carol.proc, "CONFERENCE_MESSAGE 0 'alice' 'hello conference'", &[&carol.proc]);
    let echo = |n: &Node, text: &str| {
        chat_lines(n, &chat).into_iter().find(|l| l["text"] == text && l["nick"] == "carol" && l["own"] == false)
    };
    wait_t("Carol's echo", || echo(&n, "echo: hello conference"), logs);

    // A restart: still in the conference, Carol rejoins, lines flow again.
    drop(n);
    let n = Node::restart(dir.path(), p.api);
    let logs = || format!("{}\nnode /api/tox/conferences: {}", carol.log(), n.get("/api/tox/conferences"));
    let confs = n.get("/api/tox/conferences");
    assert!(confs["conferences"].as_array().unwrap().iter().any(|c| c["id"] == cid.as_str()), "{confs}");
    wait_t("Carol back in the user list", || (user_nicks(&n, &chat) == ["alice", "carol"]).then_some(()), logs);
    let sent = wait_t(
        "a line after the restart",
        || {
            let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "after the restart"}));
            (code == 201).then_some(m)
        },
        logs,
    );
    assert_eq!(sent["own"], true, "{sent}");
    wait_t("Carol's echo after the restart", || echo(&n, "echo: after the restart"), logs);

    // Dave invites the node: the invite shows, is accepted, Dave's line arrives.
    let dave = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .friend_request(&id)
            .args(&["-n", "dave", "-G", "0", "-M", "from dave", "-K", "2"])
            .timeout_secs(300),
    );
    let logs = || format!("{}\nnode /api/tox/conferences: {}", dave.log(), n.get("/api/tox/conferences"));
    let invite =
        wait_t("Dave's invite", || n.get("/api/tox/conferences")["invites"].as_array()?.first().cloned(), logs);
    assert_eq!(invite["friend"], dave.public_key(), "{invite}");
    let (code, e) = n.post("/api/tox/conference-invites/999/accept", json!({}));
    assert_eq!(code, 404, "{e}");
    let (code, joined) = n.post(&format!("/api/tox/conference-invites/{}/accept", invite["invite"]), json!({}));
    assert_eq!(code, 200, "{joined}");
    let dchat = format!("tox:conference:{}", joined["id"].as_str().unwrap());
    assert_ne!(dchat, chat);
    wait_t(
        "Dave's line",
        || chat_lines(&n, &dchat).into_iter().find(|l| l["text"] == "from dave" && l["nick"] == "dave"),
        logs,
    );
    assert_eq!(n.get("/api/tox/conferences")["invites"], json!([]));

    // Leaving: Carol sees us go (KILL_PEER), the conference is no longer listed.
    // (Carol printed that list once already, when the restart froze us.)
    let alone = "CONFERENCE_PEERS 0 1 'carol'";
    let before = count(&carol.proc, alone);
    let (code, _, body) = n.request("delete", &format!("/api/tox/conferences/{cid}"), "");
    assert_eq!(code, 200, "{body}");
    // Well before FREEZE_TIMEOUT (60 s): Carol heard our KILL_PEER, she did not time us out.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while count(&carol.proc, alone) == before {
        assert!(std::time::Instant::now() < end, "Carol did not see us leave\n{}", carol.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let confs = n.get("/api/tox/conferences");
    assert!(!confs["conferences"].as_array().unwrap().iter().any(|c| c["id"] == cid.as_str()), "{confs}");
}

/// The Tox tab's conference card in a real headless Chromium (tests/web/tox_conference.mjs):
/// create with a title, invite an online c-toxcore friend, chat, see the friend as a user.
#[test]
fn web_ui_creates_a_conference_and_chats() {
    if !tox_support::require("web_ui_creates_a_conference_and_chats") {
        return;
    }
    if !omni::web::web_deps_or_skip("web_ui_creates_a_conference_and_chats") {
        return;
    }
    let (_bsd, dir, _, n, _, carol) = node_and_carol(300);
    let env = [("OMNI_FRIEND", carol.public_key()), ("OMNI_NAME", "carol".into())];
    let _dir = omni::tox::run_web("tox_conference.mjs", &n, dir, &env, || carol.log());
    // What the page did really happened: carol got the line from alice.
    expect(&carol.proc, "CONFERENCE_MESSAGE 0 'alice' 'hello conference from the browser'", &[&carol.proc]);
}
