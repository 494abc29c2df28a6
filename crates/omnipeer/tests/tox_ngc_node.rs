//! The node's NGC groups (docs/api.md#ngc-groups; docs/protocols/tox.md#ngc-group-chats)
//! through its API, with REAL c-toxcore 0.2.20 bots (tests/tox_support/toxbot_ngc.c),
//! bootstrapped off the system's tox-bootstrapd:
//!
//! - the node (`omnipeer up`) founds a group through `POST /api/tox/groups`, invites a
//!   c-toxcore friend, lines go both ways through the chat API (`tox:group:ID`), the friend
//!   is listed as a user of the chat and the group as a chat of kind `group`; leaving is
//!   seen by the friend;
//! - a c-toxcore friend's group invite shows in `GET /api/tox/groups`, is accepted through
//!   the API, and the friend's line arrives in the group's chat;
//! - a group the node founded is kept across a restart of the node: without a new invite
//!   the node is back in, lines go both ways (ignored: the same for a group it joined);
//! - the same through the Tox tab's Groups card in a headless Chromium
//!   (tests/web/tox_group.mjs; skips without scripts/install-web-test-deps.sh's deps).
//!
//! Skips (and passes) without c-toxcore 0.2.20 in /opt/toxcore-0.2.20
//! (`scripts/install-test-deps.sh`; `OMNIPEER_TOXCORE_NGC` overrides the prefix).

mod omni;
mod tox_support;

use omni::node::{Node, Ports};
use omni::tox::{chat_lines, friend_online, listed_chat, start_node, user_nicks};
use serde_json::json;
use std::time::Duration;
use tox_support::{count, ngc_bot as bot, require_ngc as require, wait, Bootstrapd, Proc};

/// Generous bound for friends to connect and a group to form on a loaded machine.
const T: Duration = Duration::from_secs(120);

/// The bot's public key: the first 64 hex digits of its Tox ID.
fn bot_pk(p: &Proc) -> String {
    tox_support::bot_pk(p, T)
}

/// Waits up to `T` until `p` printed `line`, else panics with `why()`.
fn expect(p: &Proc, line: &str, why: impl Fn() -> String) {
    tox_support::expect_or(p, line, T, why)
}

/// Waits up to `T` for `f`; on timeout panics with `why()`.
fn wait_t<V>(what: &str, f: impl FnMut() -> Option<V>, why: impl Fn() -> String) -> V {
    wait(what, T, f, why)
}

/// The node's NGC groups through its API with c-toxcore 0.2.20 friends: Carol joins the
/// group the node founds, Dave invites the node into his.
#[test]
fn node_groups_through_the_api_with_toxcore() {
    if !require("node_groups_through_the_api_with_toxcore") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (n, id) = start_node(dir.path(), Ports::free(), "alice", &bsd.node_spec());
    let carol = bot("carol", &["-b", &bsd.node_spec(), "-f", &id, "-J", "-M", "from carol", "-K", "2", "-t", "400"]);
    let c_pk = bot_pk(&carol);
    let logs = || format!("{}\nnode /api/tox/groups: {}", carol.log(), n.get("/api/tox/groups"));
    wait_t("Carol online", || friend_online(&n, &c_pk), logs);

    // Founded through the API: a chat of kind `group` named by the group.
    let (code, g) = n.post("/api/tox/groups", json!({"name": "node group"}));
    assert_eq!(code, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let chat = format!("tox:group:{gid}");
    assert_eq!((g["chat"].as_str(), g["name"].as_str()), (Some(chat.as_str()), Some("node group")), "{g}");
    let (code, e) = n.post(&format!("/api/tox/groups/{gid}/invite"), json!({"friend": "00"}));
    assert_eq!(code, 400, "{e}");
    let (code, e) = n.post(&format!("/api/tox/groups/{}/invite", "00".repeat(32)), json!({"friend": c_pk}));
    assert_eq!(code, 404, "{e}");
    let (code, g) = n.post(&format!("/api/tox/groups/{gid}/invite"), json!({"friend": c_pk}));
    assert_eq!(code, 200, "{g}");
    expect(&carol, "GROUP_INVITE 0 'node group'", logs);
    expect(&carol, "GROUP_SELF_JOIN 0", logs);
    expect(&carol, "GROUP_PEERS 0 2 'alice' 'carol'", logs);
    wait_t("Carol in the user list", || (user_nicks(&n, &chat) == ["alice", "carol"]).then_some(()), logs);
    let listed = listed_chat(&n, &chat);
    assert_eq!((listed["kind"].as_str(), listed["name"].as_str()), (Some("group"), Some("node group")), "{listed}");
    assert_eq!(listed["online"], true, "{listed}");

    // A line each way, and an action.
    wait_t(
        "Carol's line",
        || chat_lines(&n, &chat).into_iter().find(|l| l["text"] == "from carol" && l["nick"] == "carol"),
        logs,
    );
    let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "hello group"}));
    assert_eq!(code, 201, "{m}");
    assert_eq!(m["own"], true, "{m}");
    expect(&carol, "GROUP_MESSAGE 0 'alice' 'hello group'", logs);
    let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "/me waves"}));
    assert_eq!(code, 201, "{m}");
    expect(&carol, "GROUP_MESSAGE 0 'alice' 'waves'", logs);

    // Dave invites the node into his group: the invite shows, is accepted, his line arrives.
    let dave = bot(
        "dave",
        &["-b", &bsd.node_spec(), "-f", &id, "-C", "dave room", "-G", "0", "-M", "from dave", "-K", "2", "-t", "300"],
    );
    let d_pk = bot_pk(&dave);
    let logs = || format!("{}\nnode /api/tox/groups: {}", dave.log(), n.get("/api/tox/groups"));
    let invite = wait_t("Dave's invite", || n.get("/api/tox/groups")["invites"].as_array()?.first().cloned(), logs);
    assert_eq!((invite["friend"].as_str(), invite["name"].as_str()), (Some(d_pk.as_str()), Some("dave room")));
    let (code, e) = n.post("/api/tox/group-invites/999/accept", json!({}));
    assert_eq!(code, 404, "{e}");
    let (code, joined) = n.post(&format!("/api/tox/group-invites/{}/accept", invite["invite"]), json!({}));
    assert_eq!(code, 200, "{joined}");
    let dchat = format!("tox:group:{}", joined["id"].as_str().unwrap());
    assert_ne!(dchat, chat);
    wait_t(
        "Dave's line",
        || chat_lines(&n, &dchat).into_iter().find(|l| l["text"] == "from dave" && l["nick"] == "dave"),
        logs,
    );
    assert_eq!(n.get("/api/tox/groups")["invites"], json!([]));
    wait_t("Dave in the user list", || (user_nicks(&n, &dchat) == ["alice", "dave"]).then_some(()), logs);
    let dlisted = wait_t(
        "Dave's group named in the chat list",
        || {
            n.get("/api/chats")
                .as_array()?
                .iter()
                .find(|x| x["id"] == dchat.as_str() && x["name"] == "dave room")
                .cloned()
        },
        logs,
    );
    assert_eq!(dlisted["kind"], "group", "{dlisted}");
    let (code, m) = n.post("/api/chats/messages", json!({"chat": dchat, "text": "hi dave"}));
    assert_eq!(code, 201, "{m}");
    expect(&dave, "GROUP_MESSAGE 0 'alice' 'hi dave'", logs);

    // Leaving: Carol sees us go (our PEER_EXIT), the group is no longer listed.
    let logs = || format!("{}\nnode /api/tox/groups: {}", carol.log(), n.get("/api/tox/groups"));
    let before = count(&carol, "GROUP_PEER_EXIT 0 'alice'");
    let (code, _, body) = n.request("delete", &format!("/api/tox/groups/{gid}"), "");
    assert_eq!(code, 200, "{body}");
    // Well before CONFIRMED_PEER_TIMEOUT (58 s): Carol heard our exit, she did not time us out.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while count(&carol, "GROUP_PEER_EXIT 0 'alice'") == before {
        assert!(std::time::Instant::now() < end, "Carol did not see us leave\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let groups = n.get("/api/tox/groups");
    assert!(!groups["groups"].as_array().unwrap().iter().any(|g| g["id"] == gid.as_str()), "{groups}");
    // The chat's history stays.
    assert!(chat_lines(&n, &chat).iter().any(|l| l["text"] == "hello group"));
}

/// The Tox tab's Groups card in a real headless Chromium (tests/web/tox_group.mjs): create
/// with a name, invite an online c-toxcore 0.2.20 friend, chat, see the friend as a user;
/// join another friend's group from its invite; leave.
#[test]
fn web_ui_groups_card() {
    if !require("web_ui_groups_card") || !omni::web::web_deps_or_skip("web_ui_groups_card") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (n, id) = start_node(dir.path(), Ports::free(), "alice", &bsd.node_spec());
    let carol = bot("carol", &["-b", &bsd.node_spec(), "-f", &id, "-J", "-M", "from carol", "-K", "2", "-t", "400"]);
    let dave = bot(
        "dave",
        &["-b", &bsd.node_spec(), "-f", &id, "-C", "dave room", "-G", "0", "-M", "from dave", "-K", "2", "-t", "400"],
    );
    let env = [
        ("OMNI_FRIEND", bot_pk(&carol)),
        ("OMNI_NAME", "carol".into()),
        ("OMNI_LINE", "from carol".into()),
        ("OMNI_INVITER", "dave".into()),
    ];
    let _dir = omni::tox::run_web("tox_group.mjs", &n, dir, &env, || format!("{}\n{}", carol.log(), dave.log()));
    // What the page did really happened: Carol got the line, and saw the node leave.
    let why = || format!("{}\n{}", carol.log(), dave.log());
    expect(&carol, "GROUP_MESSAGE 0 'alice' 'hello group from the browser'", why);
    expect(&carol, "GROUP_PEER_EXIT 0 'alice'", why);
    expect(&dave, "GROUP_PEERS 0 2 'alice' 'dave'", why);
}

/// A group the node founded is kept across a restart of `omnipeer up` on the same data
/// dir (as c-toxcore keeps its groups in the profile): without any new invite the node
/// reconnects to Carol (c-toxcore 0.2.20, who keeps sending a line every 3 s), her next
/// line reaches the node's chat `tox:group:ID` (same id, history kept) and the node's
/// line reaches her.
#[test]
fn node_group_survives_a_restart() {
    if !require("node_group_survives_a_restart") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let (n, id) = start_node(dir.path(), p, "alice", &bsd.node_spec());
    let carol =
        bot("carol", &["-b", &bsd.node_spec(), "-f", &id, "-J", "-M", "from carol", "-K", "2", "-R", "3", "-t", "500"]);
    let c_pk = bot_pk(&carol);
    let logs = || format!("{}\nnode /api/tox/groups: {}", carol.log(), n.get("/api/tox/groups"));
    wait_t("Carol online", || friend_online(&n, &c_pk), logs);
    let (code, g) = n.post("/api/tox/groups", json!({"name": "kept group"}));
    assert_eq!(code, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let chat = format!("tox:group:{gid}");
    let (code, g) = n.post(&format!("/api/tox/groups/{gid}/invite"), json!({"friend": c_pk}));
    assert_eq!(code, 200, "{g}");
    expect(&carol, "GROUP_SELF_JOIN 0", logs);
    wait_t("Carol's line", || chat_lines(&n, &chat).into_iter().find(|l| l["nick"] == "carol"), logs);
    let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "before the restart"}));
    assert_eq!(code, 201, "{m}");
    expect(&carol, "GROUP_MESSAGE 0 'alice' 'before the restart'", logs);

    // Stopped and started again on the same data dir: no new invite.
    drop(n);
    let n = Node::restart(dir.path(), p.api);
    let logs = || format!("{}\nnode /api/tox/groups: {}", carol.log(), n.get("/api/tox/groups"));
    let groups = n.get("/api/tox/groups");
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["id"] == gid.as_str()), "group gone: {groups}");
    // Carol's numbered lines ("from carol #k"): the highest the chat holds now, then a later one.
    let number = |l: &serde_json::Value| -> Option<u32> {
        (l["nick"] == "carol").then_some(())?;
        l["text"].as_str()?.strip_prefix("from carol #")?.parse().ok()
    };
    let last = chat_lines(&n, &chat).iter().filter_map(number).max().unwrap_or(0);
    wait_t(
        "a line from Carol after the restart",
        || chat_lines(&n, &chat).iter().filter_map(number).find(|&k| k > last),
        logs,
    );
    wait_t("Carol back in the user list", || (user_nicks(&n, &chat) == ["alice", "carol"]).then_some(()), logs);
    let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "after the restart"}));
    assert_eq!(code, 201, "{m}");
    expect(&carol, "GROUP_MESSAGE 0 'alice' 'after the restart'", logs);
    // The chat's history from before the restart stays.
    assert!(chat_lines(&n, &chat).iter().any(|l| l["text"] == "before the restart"));
}

/// A group the node joined (Dave's, c-toxcore 0.2.20, the founder) is kept across a
/// restart too: the node asks Dave to let it in again (invite request, sync) by itself,
/// Dave's next line reaches the node's chat and the node's line reaches Dave.
#[test]
fn node_joined_group_survives_a_restart() {
    if !require("node_joined_group_survives_a_restart") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let (n, id) = start_node(dir.path(), p, "alice", &bsd.node_spec());
    let dave = bot(
        "dave",
        &["-b", &bsd.node_spec(), "-f", &id, "-C", "dave room", "-G", "0", "-M", "from dave", "-R", "3", "-t", "500"],
    );
    let logs = || format!("{}\nnode /api/tox/groups: {}", dave.log(), n.get("/api/tox/groups"));
    let invite = wait_t("Dave's invite", || n.get("/api/tox/groups")["invites"].as_array()?.first().cloned(), logs);
    let (code, joined) = n.post(&format!("/api/tox/group-invites/{}/accept", invite["invite"]), json!({}));
    assert_eq!(code, 200, "{joined}");
    let gid = joined["id"].as_str().unwrap().to_owned();
    let chat = format!("tox:group:{gid}");
    wait_t("Dave's line", || chat_lines(&n, &chat).into_iter().find(|l| l["nick"] == "dave"), logs);
    let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "before the restart"}));
    assert_eq!(code, 201, "{m}");
    expect(&dave, "GROUP_MESSAGE 0 'alice' 'before the restart'", logs);

    drop(n);
    let n = Node::restart(dir.path(), p.api);
    let logs = || format!("{}\nnode /api/tox/groups: {}", dave.log(), n.get("/api/tox/groups"));
    let groups = n.get("/api/tox/groups");
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["id"] == gid.as_str()), "group gone: {groups}");
    let number = |l: &serde_json::Value| -> Option<u32> {
        (l["nick"] == "dave").then_some(())?;
        l["text"].as_str()?.strip_prefix("from dave #")?.parse().ok()
    };
    let last = chat_lines(&n, &chat).iter().filter_map(number).max().unwrap_or(0);
    // The node holds its handshakes for omnipeer_tox::ngc::REJOIN_HOLD (63 s) first.
    wait(
        "a line from Dave after the restart",
        T + Duration::from_secs(63),
        || chat_lines(&n, &chat).iter().filter_map(number).find(|&k| k > last),
        logs,
    );
    wait_t("Dave back in the user list", || (user_nicks(&n, &chat) == ["alice", "dave"]).then_some(()), logs);
    let (code, m) = n.post("/api/chats/messages", json!({"chat": chat, "text": "after the restart"}));
    assert_eq!(code, 201, "{m}");
    expect(&dave, "GROUP_MESSAGE 0 'alice' 'after the restart'", logs);
    assert!(chat_lines(&n, &chat).iter().any(|l| l["text"] == "before the restart"));
}
