//! Self-test of the Tox interop harness (`tests/tox_support/`): tox-bootstrapd plus two
//! REAL c-toxcore 0.2.18 bots (toxbot.c) on 127.0.0.1; B sends A a friend request and a
//! message, A auto-accepts and echoes, B exits 0 once the echo is back and A sees the
//! receipt-bearing message. Skips (and passes) when c-toxcore is not installed;
//! `scripts/install-test-deps.sh` installs it.

mod tox_support;

use std::time::Duration;
use tox_support::{Bootstrapd, Bot, BotOptions};

const T: Duration = Duration::from_secs(60);

#[test]
fn two_bots_befriend_via_bootstrapd() {
    if !tox_support::require("two_bots_befriend_via_bootstrapd") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    assert_eq!(bsd.pk.len(), 64, "{}", bsd.proc.log());
    let a = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).timeout_secs(90));
    let aid = a.tox_id();
    assert_eq!(aid.len(), 76);
    let mut b = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .friend_request(&aid)
            .message("hello c-toxcore")
            .exit_on_echo()
            .timeout_secs(80),
    );
    let rc = b.wait_exit(Duration::from_secs(90));
    assert_eq!(rc, Some(0), "B did not get its echo\n{}\n{}", b.log(), a.log());
    let req = a.proc.expect_line("FRIEND_REQUEST ", T);
    assert!(req.starts_with(&b.public_key()), "{req}");
    assert_eq!(a.proc.expect_line("MESSAGE 0 ", T), "'hello c-toxcore'");
    assert_eq!(b.proc.expect_line("MESSAGE 0 ", T), "'echo: hello c-toxcore'");
    assert!(b.proc.wait_line("RECEIPT 0 ", T).is_some(), "{}", b.log());
    assert!(a.wait_self_connected(T).is_some());
}

#[test]
fn processes_are_killed_on_drop_and_ports_are_fixed() {
    if !tox_support::require("processes_are_killed_on_drop_and_ports_are_fixed") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let bot = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).timeout_secs(60));
    // the bot binds the port the harness chose
    assert_eq!(bot.proc.expect_line("PORT ", T), bot.port.to_string());
    assert_eq!(bot.dht_key().len(), 64);
    let pids = [bot.proc.pid(), bsd.proc.pid()];
    for p in pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    drop(bot);
    drop(bsd);
    for p in pids {
        assert!(!std::path::Path::new(&format!("/proc/{p}")).exists(), "pid {p} still there");
    }
}
