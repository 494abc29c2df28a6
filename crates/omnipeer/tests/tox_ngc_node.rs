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
//! - the same through the Tox tab's Groups card in a headless Chromium
//!   (tests/web/tox_group.mjs; skips without scripts/install-web-test-deps.sh's deps).
//!
//! Skips (and passes) without c-toxcore 0.2.20 in /opt/toxcore-0.2.20
//! (`scripts/install-test-deps.sh`; `OMNIPEER_TOXCORE_NGC` overrides the prefix).

mod omni;
mod tox_support;

use omni::node::{server_config, Node, Ports};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use tox_support::{free_udp_port, Bootstrapd, Proc};

/// Generous bound for friends to connect and a group to form on a loaded machine.
const T: Duration = Duration::from_secs(120);

/// The prefix holding c-toxcore 0.2.20, if unpacked.
fn prefix() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var("OMNIPEER_TOXCORE_NGC").unwrap_or_else(|_| "/opt/toxcore-0.2.20".into()));
    p.join("usr/lib/x86_64-linux-gnu/libtoxcore.so.2").exists().then_some(p)
}

fn require(test: &str) -> bool {
    if prefix().is_none() {
        eprintln!("SKIP {test}: c-toxcore 0.2.20 not unpacked (run scripts/install-test-deps.sh)");
        return false;
    }
    tox_support::require(test)
}

/// Compiles toxbot_ngc.c against the 0.2.20 prefix once per test process (as
/// tox_ngc_interop.rs does: rpath to the prefix, so the system's 0.2.18 is not picked up).
fn toxbot_ngc() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let pre = prefix().expect("prefix checked by require");
        let lib = pre.join("usr/lib/x86_64-linux-gnu");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("toxbot_ngc_node");
        let tmp = dir.join(format!("toxbot_ngc_node.{}.tmp", std::process::id()));
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tox_support/toxbot_ngc.c");
        let o = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg(format!("-I{}", pre.join("usr/include").display()))
            .arg(format!("-L{}", lib.display()))
            .arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()))
            .arg("-ltoxcore")
            .output()
            .expect("cc runs");
        assert!(o.status.success(), "compiling toxbot_ngc.c failed:\n{}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

fn bot(name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(toxbot_ngc());
    cmd.arg("-p").arg(free_udp_port().to_string()).arg("-n").arg(name).args(args);
    if std::env::var_os("OMNIPEER_TOX_VERBOSE").is_some() {
        cmd.arg("-v");
    }
    let dir = tempfile::Builder::new().prefix("toxbot-ngc-").tempdir().unwrap();
    Proc::spawn(&format!("toxbot_ngc:{name}"), cmd, dir)
}

/// The bot's public key: the first 64 hex digits of its Tox ID.
fn bot_pk(p: &Proc) -> String {
    p.expect_line("TOXID ", T)[..64].to_owned()
}

fn count(p: &Proc, line: &str) -> usize {
    p.lines().iter().filter(|l| l.as_str() == line).count()
}

fn expect(p: &Proc, line: &str, why: impl Fn() -> String) {
    if p.wait_for(T, |l| (l == line).then_some(())).is_none() {
        panic!("no {line:?}\n{}", why());
    }
}

/// Waits up to `T` for `f`; on timeout panics with `why()`.
fn wait<V>(what: &str, mut f: impl FnMut() -> Option<V>, why: impl Fn() -> String) -> V {
    let end = std::time::Instant::now() + T;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}\n{}", why());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn chat_lines(n: &Node, chat: &str) -> Vec<Value> {
    n.get(&format!("/api/chats/messages?chat={chat}")).as_array().cloned().unwrap_or_default()
}

fn user_nicks(n: &Node, chat: &str) -> Vec<String> {
    let u = n.get(&format!("/api/users?chat={chat}"));
    u.as_array().map(|a| a.iter().filter_map(|x| x["nick"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
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
    let p = Ports::free();
    let cfg = server_config("alice", p)
        .replace("[tox]\n", &format!("[tox]\nauto_accept = true\nbootstrap = \"{}\"\n", bsd.node_spec()));
    let n = Node::start(dir.path(), &cfg, p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let carol = bot("carol", &["-b", &bsd.node_spec(), "-f", &id, "-J", "-M", "from carol", "-K", "2", "-t", "400"]);
    let c_pk = bot_pk(&carol);
    let logs = || format!("{}\nnode /api/tox/groups: {}", carol.log(), n.get("/api/tox/groups"));
    let online = |n: &Node, pk: &str| {
        n.get("/api/tox")["friends"].as_array()?.iter().find(|f| f["pk"] == pk && f["online"] == true).cloned()
    };
    wait("Carol online", || online(&n, &c_pk), logs);

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
    wait("Carol in the user list", || (user_nicks(&n, &chat) == ["alice", "carol"]).then_some(()), logs);
    let chats = n.get("/api/chats");
    let listed = chats.as_array().unwrap().iter().find(|x| x["id"] == chat.as_str()).cloned();
    let listed = listed.unwrap_or_else(|| panic!("{chats}"));
    assert_eq!((listed["kind"].as_str(), listed["name"].as_str()), (Some("group"), Some("node group")), "{listed}");
    assert_eq!(listed["online"], true, "{listed}");

    // A line each way, and an action.
    wait(
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
    let invite = wait("Dave's invite", || n.get("/api/tox/groups")["invites"].as_array()?.first().cloned(), logs);
    assert_eq!((invite["friend"].as_str(), invite["name"].as_str()), (Some(d_pk.as_str()), Some("dave room")));
    let (code, e) = n.post("/api/tox/group-invites/999/accept", json!({}));
    assert_eq!(code, 404, "{e}");
    let (code, joined) = n.post(&format!("/api/tox/group-invites/{}/accept", invite["invite"]), json!({}));
    assert_eq!(code, 200, "{joined}");
    let dchat = format!("tox:group:{}", joined["id"].as_str().unwrap());
    assert_ne!(dchat, chat);
    wait(
        "Dave's line",
        || chat_lines(&n, &dchat).into_iter().find(|l| l["text"] == "from dave" && l["nick"] == "dave"),
        logs,
    );
    assert_eq!(n.get("/api/tox/groups")["invites"], json!([]));
    wait("Dave in the user list", || (user_nicks(&n, &dchat) == ["alice", "dave"]).then_some(()), logs);
    let dlisted = wait(
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
    let p = Ports::free();
    let cfg = server_config("alice", p)
        .replace("[tox]\n", &format!("[tox]\nauto_accept = true\nbootstrap = \"{}\"\n", bsd.node_spec()));
    let n = Node::start(dir.path(), &cfg, p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let carol = bot("carol", &["-b", &bsd.node_spec(), "-f", &id, "-J", "-M", "from carol", "-K", "2", "-t", "400"]);
    let dave = bot(
        "dave",
        &["-b", &bsd.node_spec(), "-f", &id, "-C", "dave room", "-G", "0", "-M", "from dave", "-K", "2", "-t", "400"],
    );
    let out = dir.path().join("browser");
    let (ok, lines) = omni::web::run_web_script(
        "tox_group.mjs",
        &[
            ("OMNI_URL", format!("{}/", n.base)),
            ("OMNI_FRIEND", bot_pk(&carol)),
            ("OMNI_NAME", "carol".into()),
            ("OMNI_LINE", "from carol".into()),
            ("OMNI_INVITER", "dave".into()),
            ("OMNI_OUT", out.display().to_string()),
        ],
        Duration::from_secs(300),
    );
    if !ok {
        let kept = dir.keep();
        panic!(
            "tox_group.mjs failed; files kept in {}\n{}\n{}\n{}",
            kept.display(),
            lines.join("\n"),
            carol.log(),
            dave.log()
        );
    }
    // What the page did really happened: Carol got the line, and saw the node leave.
    let why = || format!("{}\n{}", carol.log(), dave.log());
    expect(&carol, "GROUP_MESSAGE 0 'alice' 'hello group from the browser'", why);
    expect(&carol, "GROUP_PEER_EXIT 0 'alice'", why);
    expect(&dave, "GROUP_PEERS 0 2 'alice' 'dave'", why);
}
