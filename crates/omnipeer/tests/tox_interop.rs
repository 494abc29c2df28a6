//! Interop: `omnipeer tox send` / `omnipeer tox echo` (the binary under test) against
//! REAL c-toxcore 0.2.18 bots (tests/tox_support/toxbot.c), bootstrapped off
//! tox-bootstrapd or off `omnipeer tox bootstrap`.
//!
//! - `tox send` befriends a c-toxcore bot (friend request through the onion), prints the
//!   progress states in order (docs/protocols/tox.md#progress), its message is echoed back and the receipt arrives;
//! - a c-toxcore bot befriends `tox echo` and gets its echoes — many messages, in order;
//! - `tox id` prints a stable, valid Tox ID.
//!
//! Skips (and passes) when c-toxcore is not installed; `scripts/install-test-deps.sh`
//! installs it.

mod tox_support;

use std::time::Duration;
use tox_support::{free_udp_port, omni, tox_send, Bootstrapd, Bot, BotOptions, OmniBootstrap, BIN, STATES};

const T: Duration = Duration::from_secs(60);

fn send_befriends_bot(bootstrap_spec: &str, extra: &str) {
    let bot = Bot::start(BotOptions::new().bootstrap(bootstrap_spec).timeout_secs(100));
    let bot_id = bot.tox_id();
    let profile = tempfile::tempdir().unwrap();
    let p = profile.path().join("send.tox");
    let port = free_udp_port();
    let mut send = tox_send(
        &p,
        bootstrap_spec,
        &bot_id,
        "hello c-toxcore",
        &["--listen", &format!("127.0.0.1:{port}"), "--timeout", "80", "--linger", "1"],
    );
    let rc = send.wait_exit(Duration::from_secs(100));
    assert_eq!(rc, Some(0), "tox send failed ({extra})\n{}\n{}", send.log(), bot.log());
    let lines = send.lines();
    // The progress states, in the order of docs/protocols/tox.md#progress: from AwaitingDHTKey to Connected. Which
    // middle ones are entered depends on who handshakes first (c-toxcore's inbound
    // handshake jumps straight to AwaitingSessionPacket).
    let states: Vec<&str> = lines.iter().map(String::as_str).filter(|l| STATES.contains(l)).collect();
    assert_eq!(states.first(), Some(&"AwaitingDHTKey"), "{}", send.log());
    assert_eq!(states.last(), Some(&"Connected"), "{}", send.log());
    let order: Vec<usize> = states.iter().map(|s| STATES.iter().position(|x| x == s).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "states out of order: {states:?}");
    assert!(states.contains(&"AwaitingSessionPacket"), "{}", send.log());
    assert!(lines.iter().any(|l| l == "delivered"), "{}", send.log());
    assert!(lines.iter().any(|l| l == "message: echo: hello c-toxcore"), "{}", send.log());
    // The bot saw our request and our message.
    assert!(bot.proc.wait_line("FRIEND_REQUEST ", T).is_some(), "{}", bot.log());
    assert_eq!(bot.proc.expect_line("MESSAGE 0 ", T), "'hello c-toxcore'");
    assert_eq!(bot.proc.expect_line("FRIEND 0 CONNECTION ", T), "2", "UDP friend connection");
}

#[test]
fn tox_send_befriends_c_toxcore_via_tox_bootstrapd() {
    if !tox_support::require("tox_send_befriends_c_toxcore_via_tox_bootstrapd") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    send_befriends_bot(&bsd.node_spec(), "tox-bootstrapd");
}

#[test]
fn tox_send_befriends_c_toxcore_via_omnipeer_bootstrap() {
    if !tox_support::require("tox_send_befriends_c_toxcore_via_omnipeer_bootstrap") {
        return;
    }
    let boot = OmniBootstrap::start(BIN, &[]);
    send_befriends_bot(&boot.node_spec(), "omnipeer tox bootstrap");
}

#[test]
fn c_toxcore_befriends_tox_echo_many_messages_in_order() {
    if !tox_support::require("c_toxcore_befriends_tox_echo_many_messages_in_order") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let profile = tempfile::tempdir().unwrap();
    let p = profile.path().join("echo.tox");
    let port = free_udp_port();
    let echo = omni(
        "omnipeer-tox-echo",
        &[
            "tox",
            "echo",
            "--profile",
            p.to_str().unwrap(),
            "--bootstrap",
            &bsd.node_spec(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let echo_id = echo
        .wait_for(Duration::from_secs(20), |l| (l.len() == 76).then(|| l.to_owned()))
        .unwrap_or_else(|| panic!("no Tox ID\n{}", echo.log()));
    const N: u32 = 100;
    let mut bot = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .friend_request(&echo_id)
            .message("msg")
            .count(N)
            .exit_on_echo()
            .timeout_secs(90),
    );
    // -x: the bot exits 0 only when every echo came back, in order.
    let rc = bot.wait_exit(Duration::from_secs(100));
    assert_eq!(rc, Some(0), "bot got no (ordered) echoes\n{}\n{}", bot.log(), echo.log());
    let got: Vec<String> = bot.proc.lines().into_iter().filter(|l| l.starts_with("MESSAGE 0 ")).collect();
    let want: Vec<String> = (1..=N).map(|i| format!("MESSAGE 0 'echo: msg #{i}'")).collect();
    assert_eq!(got, want);
    // Every message got its receipt on the bot's side.
    assert!(bot.proc.wait_line(&format!("RECEIPT 0 {N}"), T).is_some(), "{}", bot.log());
    let el = echo.lines();
    let req = format!("friend request from {}: toxbot says hi", bot.public_key());
    assert!(el.contains(&req), "{}", echo.log());
    let msgs: Vec<&String> = el.iter().filter(|l| l.starts_with("message from ")).collect();
    assert_eq!(msgs.len(), N as usize, "{}", echo.log());
    // The accepted friend is saved in the profile: `tox id` on it still works and the
    // profile reloads with one friend.
    let mut id = omni("omnipeer-tox-id", &["tox", "id", "--profile", p.to_str().unwrap()]);
    assert_eq!(id.wait_exit(T), Some(0));
    assert_eq!(id.lines(), vec![echo_id]);
}

#[test]
fn tox_id_creates_a_stable_profile() {
    let profile = tempfile::tempdir().unwrap();
    let p = profile.path().join("me.tox");
    let mut a = omni("omnipeer-tox-id", &["tox", "id", "--profile", p.to_str().unwrap()]);
    assert_eq!(a.wait_exit(T), Some(0), "{}", a.log());
    let id = a.lines();
    assert_eq!(id.len(), 1);
    assert_eq!(id[0].len(), 76);
    assert!(id[0].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    let mut b = omni("omnipeer-tox-id", &["tox", "id", "--profile", p.to_str().unwrap()]);
    assert_eq!(b.wait_exit(T), Some(0));
    assert_eq!(b.lines(), id, "same profile, same Tox ID");
    // A corrupt profile is an error, not a new identity.
    std::fs::write(&p, b"garbage").unwrap();
    let mut c = omni("omnipeer-tox-id", &["tox", "id", "--profile", p.to_str().unwrap()]);
    assert_ne!(c.wait_exit(T), Some(0));
    assert!(c.log().contains("error:"), "{}", c.log());
}

#[test]
fn tox_send_times_out_with_the_state_it_was_stuck_in() {
    // Nobody to bootstrap off: stuck in AwaitingDHTKey.
    let profile = tempfile::tempdir().unwrap();
    let p = profile.path().join("s.tox");
    let dead = free_udp_port();
    let key = "AB".repeat(32);
    let to = "F89EE7B40F7C368A0AB67682AE9FE4B5448DD24D1D5CA721B064BC6847C6E92AEB4F382E4DFE";
    let mut s = tox_send(&p, &format!("127.0.0.1:{dead}:{key}"), to, "x", &["--timeout", "2"]);
    let rc = s.wait_exit(Duration::from_secs(20));
    assert!(rc.is_some() && rc != Some(0), "{}", s.log());
    assert!(s.log().contains("timed out after 2 s in state AwaitingDHTKey"), "{}", s.log());
    assert_eq!(s.lines(), vec!["AwaitingDHTKey"]);
    // A Tox ID with a bad checksum is refused up front.
    let mut bad = tox_send(&p, &format!("127.0.0.1:{dead}:{key}"), &to.replace("4DFE", "4DFF"), "x", &[]);
    assert_ne!(bad.wait_exit(T), Some(0));
    assert!(bad.log().contains("checksum"), "{}", bad.log());
}

/// omnipeer ↔ omnipeer on loopback, bootstrapped off `omnipeer tox bootstrap` (needs no
/// c-toxcore): `tox send` befriends `tox echo`, gets the echo and the receipt.
#[test]
fn tox_send_to_tox_echo_over_omnipeer_bootstrap() {
    let boot = OmniBootstrap::start(BIN, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pe = dir.path().join("echo.tox");
    let ps = dir.path().join("send.tox");
    let echo = omni(
        "omnipeer-tox-echo",
        &[
            "tox",
            "echo",
            "--profile",
            pe.to_str().unwrap(),
            "--bootstrap",
            &boot.node_spec(),
            "--listen",
            &format!("127.0.0.1:{}", free_udp_port()),
        ],
    );
    let echo_id = echo
        .wait_for(Duration::from_secs(20), |l| (l.len() == 76).then(|| l.to_owned()))
        .unwrap_or_else(|| panic!("no Tox ID\n{}", echo.log()));
    let mut send = tox_send(&ps, &boot.node_spec(), &echo_id, "hello omnipeer", &["--timeout", "40", "--linger", "1"]);
    assert_eq!(send.wait_exit(Duration::from_secs(60)), Some(0), "{}\n{}\n{}", send.log(), echo.log(), boot.proc.log());
    let lines = send.lines();
    assert_eq!(lines.first().map(String::as_str), Some("AwaitingDHTKey"));
    assert!(lines.iter().any(|l| l == "Connected"), "{}", send.log());
    assert!(lines.iter().any(|l| l == "delivered"), "{}", send.log());
    assert!(lines.iter().any(|l| l == "message: echo: hello omnipeer"), "{}", send.log());
    assert!(echo.wait_line("message from ", T).is_some_and(|l| l.ends_with(": hello omnipeer")), "{}", echo.log());
    // The sender saved the friend: a second send reuses the profile and the friendship.
    let mut again = tox_send(&ps, &boot.node_spec(), &echo_id, "second", &["--timeout", "40", "--linger", "0"]);
    assert_eq!(again.wait_exit(Duration::from_secs(60)), Some(0), "{}\n{}", again.log(), echo.log());
    assert!(again.lines().iter().any(|l| l == "message: echo: second"), "{}", again.log());
}
