//! Interop: NGC group chats (c-toxcore ≥ 0.2.19's `tox_group_*`;
//! docs/protocols/tox.md#ngc-group-chats) between `omnipeer tox echo` (the binary under
//! test) and REAL c-toxcore 0.2.20 bots (tests/tox_support/toxbot_ngc.c), bootstrapped off
//! the system's tox-bootstrapd (0.2.18).
//!
//! The system's c-toxcore 0.2.18 has no NGC: the bots are built against Debian trixie's
//! 0.2.20, which `scripts/install-test-deps.sh` unpacks into /opt/toxcore-0.2.20
//! (`OMNIPEER_TOXCORE_NGC` overrides the prefix). Skips (and passes) without it.
//!
//! - a 0.2.20 bot befriends omnipeer and their messages go both ways (the messenger of
//!   0.2.20 still speaks to ours);
//! - Alice (0.2.20) founds a private group and invites Bob (0.2.20, her friend, not
//!   omnipeer's) and omnipeer: omnipeer joins by the invite, connects to Bob through the
//!   peer the sync tells about, and everyone sees everyone's lines and a list of three
//!   names;
//! - omnipeer founds a group (`tox echo --group-with`) and invites Dave and Erin (0.2.20,
//!   omnipeer's friends, not each other's): both join with omnipeer's signed shared state
//!   and empty moderation lists, Erin reaches Dave through omnipeer's sync announce, and
//!   all three see each other's lines and a list of three names.

mod tox_support;

use std::time::Duration;
use tox_support::{echo, keys, ngc_bot as bot, require_ngc as require, Bootstrapd, Proc};

/// Generous bound for friends to connect and a group to form on a loaded machine.
const T: Duration = Duration::from_secs(120);

/// The group tests run one at a time: c-toxcore's joins between its own bots give up
/// after 12 s without an answer (GC_UNCONFIRMED_PEER_TIMEOUT), which a machine loaded by
/// several groups' bots at once was seen to miss (a bot then never joins).
static GROUPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits up to `T` until `p` printed `line`, else panics with every log.
fn expect(p: &Proc, line: &str, logs: &[&Proc]) {
    tox_support::expect(p, line, T, logs)
}

/// c-toxcore 0.2.20's messenger and ours befriend each other and exchange messages.
#[test]
fn toxcore_0_2_20_befriends_omnipeer() {
    if !require("toxcore_0_2_20_befriends_omnipeer") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let (e, echo_id) = echo(&work.path().join("echo.tox"), &bsd.node_spec(), &[]);
    let b = bot("carol", &["-b", &bsd.node_spec(), "-f", &echo_id, "-m", "hello from 0.2.20", "-t", "200"]);
    expect(&b, "MESSAGE 0 'echo: hello from 0.2.20'", &[&e, &b]);
}

/// Alice founds a group and invites Bob and omnipeer; omnipeer reaches Bob only through
/// what the group's sync tells it.
#[test]
#[ignore = "flaky: in 1 of 2 full CI runs (19:27 UTC 2026-12-07) c-toxcore Bob accepted Alice's invite but \
            the two c-toxcore 0.2.20 bots never completed their group handshake (omnipeer had joined); cause \
            not found yet; run with --ignored"]
fn toxcore_group_with_omnipeer_and_a_stranger() {
    if !require("toxcore_group_with_omnipeer_and_a_stranger") {
        return;
    }
    let _one = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let (e, echo_id) = echo(&work.path().join("echo.tox"), &bsd.node_spec(), &[]);
    let (a_sk, a_pk) = keys(0x71);
    let (b_sk, b_pk) = keys(0x72);
    let bob = bot(
        "bob",
        &["-b", &bsd.node_spec(), "-s", &b_sk, "-F", &a_pk, "-J", "-M", "line from bob", "-K", "3", "-t", "200"],
    );
    // Alice's friend 0 is Bob (-F), friend 1 omnipeer (-f): she invites both.
    let alice = bot(
        "alice",
        &[
            "-b",
            &bsd.node_spec(),
            "-s",
            &a_sk,
            "-F",
            &b_pk,
            "-f",
            &echo_id,
            "-C",
            "ngc test",
            "-G",
            "0",
            "-G",
            "1",
            "-M",
            "line from alice",
            "-K",
            "3",
            "-t",
            "200",
        ],
    );
    let all = [&e, &alice, &bob];
    let cid = alice
        .wait_for(T, |l| l.strip_prefix("GROUP_CREATED 0 ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no group\n{}", alice.log()));
    expect(&e, &format!("joined group {cid}"), &all);
    expect(&e, &format!("group {cid} peers: alice, bob, omnipeer"), &all);
    let g = |who: &str, text: &str| format!("group {cid} {who}: {text}");
    expect(&e, &g("alice", "line from alice"), &all);
    expect(&e, &g("bob", "line from bob"), &all);
    for b in [&alice, &bob] {
        expect(b, "GROUP_PEERS 0 3 'alice' 'bob' 'omnipeer'", &all);
        expect(b, "GROUP_MESSAGE 0 'omnipeer' 'echo: line from bob'", &all);
    }
    // Alice's line may come before omnipeer is connected to Bob (groups keep no history
    // and nobody relays), so only Alice is sure to get its echo. Bob's line reached
    // omnipeer, and omnipeer's echo of it reached Bob, over their direct connection.
    expect(&alice, "GROUP_MESSAGE 0 'omnipeer' 'echo: line from alice'", &all);
    expect(&bob, "GROUP_MESSAGE 0 'alice' 'line from alice'", &all);
}

/// omnipeer founds the group and invites two c-toxcore bots that are not each other's
/// friends; they find each other through omnipeer's sync.
#[test]
fn omnipeer_founds_group_and_invites_toxcore() {
    if !require("omnipeer_founds_group_and_invites_toxcore") {
        return;
    }
    let _one = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let (d_sk, d_pk) = keys(0x73);
    let (e_sk, e_pk) = keys(0x74);
    let with = format!("{d_pk},{e_pk}");
    let (o, o_id) = echo(&work.path().join("o.tox"), &bsd.node_spec(), &["--group-with", &with]);
    let common = |sk: &str| -> Vec<String> {
        ["-b", &bsd.node_spec(), "-s", sk, "-f", &o_id, "-J", "-K", "3", "-t", "200"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut da = common(&d_sk);
    da.extend(["-M".into(), "line from dave".into()]);
    let mut ea = common(&e_sk);
    ea.extend(["-M".into(), "line from erin".into()]);
    let dave = bot("dave", &da.iter().map(String::as_str).collect::<Vec<_>>());
    let erin = bot("erin", &ea.iter().map(String::as_str).collect::<Vec<_>>());
    let all = [&o, &dave, &erin];
    let cid = o
        .wait_for(T, |l| l.strip_prefix("group ").and_then(|r| r.strip_suffix(" created")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no group\n{}", o.log()));
    for b in [&dave, &erin] {
        expect(b, "GROUP_SELF_JOIN 0", &all);
        expect(b, "GROUP_PEERS 0 3 'dave' 'erin' 'omnipeer'", &all);
    }
    expect(&o, &format!("group {cid} peers: dave, erin, omnipeer"), &all);
    expect(&o, &format!("group {cid} dave: line from dave"), &all);
    expect(&o, &format!("group {cid} erin: line from erin"), &all);
    expect(&dave, "GROUP_MESSAGE 0 'omnipeer' 'echo: line from dave'", &all);
    expect(&erin, "GROUP_MESSAGE 0 'omnipeer' 'echo: line from erin'", &all);
    // The bots' own connection: each got the other's line straight from it.
    expect(&dave, "GROUP_MESSAGE 0 'erin' 'line from erin'", &all);
    expect(&erin, "GROUP_MESSAGE 0 'dave' 'line from dave'", &all);
}

/// Connections outlive c-toxcore's key rotation timeout (5 min 12 s): omnipeer's group
/// with two 0.2.20 bots still carries lines both ways after 7 minutes, and nobody left.
/// Whichever side of each connection is closer to the chat id rotates the keys. Takes
/// 7+ minutes: run with `--ignored`.
#[test]
#[ignore]
fn group_outlives_key_rotation() {
    if !require("group_outlives_key_rotation") {
        return;
    }
    let _one = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let (d_sk, d_pk) = keys(0x75);
    let (e_sk, e_pk) = keys(0x76);
    let with = format!("{d_pk},{e_pk}");
    let (o, o_id) = echo(&work.path().join("o.tox"), &bsd.node_spec(), &["--group-with", &with]);
    let args = |sk: &str, line: &str| -> Vec<String> {
        let spec = bsd.node_spec();
        ["-b", &spec, "-s", sk, "-f", &o_id, "-J", "-K", "3", "-t", "700", "-M", line, "-R", "20"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let da = args(&d_sk, "tick from dave");
    let ea = args(&e_sk, "tick from erin");
    let dave = bot("dave", &da.iter().map(String::as_str).collect::<Vec<_>>());
    let erin = bot("erin", &ea.iter().map(String::as_str).collect::<Vec<_>>());
    let all = [&o, &dave, &erin];
    let long = Duration::from_secs(650);
    for (b, who) in [(&dave, "dave"), (&erin, "erin")] {
        // 21 lines at 20 s apart: 400 s after the first.
        let want = format!("GROUP_MESSAGE 0 'omnipeer' 'echo: tick from {who} #21'");
        if b.wait_for(long, |l| (l == want).then_some(())).is_none() {
            let logs: Vec<String> = all.iter().map(|p| p.log()).collect();
            panic!("no {want:?}\n{}", logs.join("\n"));
        }
    }
    for b in [&dave, &erin] {
        assert!(!b.lines().iter().any(|l| l.starts_with("GROUP_PEER_EXIT")), "{}", b.log());
    }
}
