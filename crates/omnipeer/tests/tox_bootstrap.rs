//! Interop: `omnipeer tox bootstrap` as the only bootstrap node of REAL c-toxcore 0.2.18
//! bots (toxbot.c, see tests/tox_support/). Two bots that bootstrap only off omnipeer
//! find and befriend each other (friend request, message echoed, receipt), which needs
//! our DHT (they learn each other's addresses from us) and our onion node (their announce
//! and search paths run through us). Also: the keys file keeps the DHT key across
//! restarts. Skips (and passes) when c-toxcore is not installed;
//! `scripts/install-test-deps.sh` installs it.

mod tox_support;

use std::time::Duration;
use tox_support::{Bootstrapd, Bot, BotOptions, OmniBootstrap};

const BIN: &str = env!("CARGO_BIN_EXE_omnipeer");
const T: Duration = Duration::from_secs(60);

#[test]
fn two_c_toxcore_bots_befriend_via_omnipeer_bootstrap() {
    if !tox_support::require("two_c_toxcore_bots_befriend_via_omnipeer_bootstrap") {
        return;
    }
    let omni = OmniBootstrap::start(BIN, &[]);
    let a = Bot::start(BotOptions::new().bootstrap(&omni.node_spec()).timeout_secs(110));
    let aid = a.tox_id();
    let mut b = Bot::start(
        BotOptions::new()
            .bootstrap(&omni.node_spec())
            .friend_request(&aid)
            .message("hello via omnipeer")
            .exit_on_echo()
            .timeout_secs(100),
    );
    let rc = b.wait_exit(Duration::from_secs(110));
    assert_eq!(rc, Some(0), "B got no echo\n{}\n{}\n{}", b.log(), a.log(), omni.proc.log());
    assert!(a.proc.expect_line("FRIEND_REQUEST ", T).starts_with(&b.public_key()));
    assert_eq!(a.proc.expect_line("MESSAGE 0 ", T), "'hello via omnipeer'");
    assert_eq!(b.proc.expect_line("MESSAGE 0 ", T), "'echo: hello via omnipeer'");
    assert!(b.proc.wait_line("RECEIPT 0 ", T).is_some(), "no receipt\n{}", b.log());
    assert!(a.wait_self_connected(T).is_some(), "A never self-connected\n{}", a.log());
    assert!(b.wait_self_connected(T).is_some(), "B never self-connected\n{}", b.log());
}

#[test]
fn bot_bootstrapping_off_omnipeer_gets_self_connection() {
    if !tox_support::require("bot_bootstrapping_off_omnipeer_gets_self_connection") {
        return;
    }
    let omni = OmniBootstrap::start(BIN, &[]);
    let a = Bot::start(BotOptions::new().bootstrap(&omni.node_spec()).timeout_secs(60));
    let c = a.wait_self_connected(T);
    assert!(c.is_some(), "no SELF CONNECTION\n{}\n{}", a.log(), omni.proc.log());
}

/// omnipeer joins an existing c-toxcore network (`--bootstrap` off tox-bootstrapd); a bot
/// that knows only tox-bootstrapd and a bot that knows only omnipeer befriend each other.
#[test]
fn omnipeer_bootstrap_joins_a_c_toxcore_network() {
    if !tox_support::require("omnipeer_bootstrap_joins_a_c_toxcore_network") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let omni = OmniBootstrap::start(BIN, &["--bootstrap", &bsd.node_spec()]);
    let a = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).timeout_secs(110));
    let aid = a.tox_id();
    let mut b = Bot::start(
        BotOptions::new()
            .bootstrap(&omni.node_spec())
            .friend_request(&aid)
            .message("across networks")
            .exit_on_echo()
            .timeout_secs(100),
    );
    let rc = b.wait_exit(Duration::from_secs(110));
    assert_eq!(rc, Some(0), "B got no echo\n{}\n{}\n{}", b.log(), a.log(), omni.proc.log());
    assert_eq!(b.proc.expect_line("MESSAGE 0 ", T), "'echo: across networks'");
}

#[test]
fn keys_file_keeps_the_dht_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let k = keys.to_str().unwrap();
    let first = OmniBootstrap::start(BIN, &["--keys", k]).pk;
    assert_eq!(std::fs::read(&keys).unwrap().len(), 64);
    assert_eq!(&hex(&std::fs::read(&keys).unwrap()[..32]), &first);
    let second = OmniBootstrap::start(BIN, &["--keys", k]).pk;
    assert_eq!(first, second);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}
