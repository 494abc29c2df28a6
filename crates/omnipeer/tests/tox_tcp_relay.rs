//! Interop: TCP relays (docs/protocols/tox.md#tcp-relays). Two REAL c-toxcore 0.2.18 bots
//! with UDP switched off (`udp_enabled = false`, the option qTox's "Enable UDP" clears:
//! the test cannot count on being root to block UDP with nftables) reach each other only
//! through a TCP relay: onion announce and search ride the relay (packet 8/9, our onion
//! node is the first hop), and net_crypto runs over routed relay connections. First
//! through `omnipeer tox bootstrap --tcp`, then the same through tox-bootstrapd's relay
//! as the reference. Skips (and passes) when c-toxcore is not installed.

mod tox_support;

use std::time::Duration;
use tox_support::{tox_send, Bootstrapd, Bot, BotOptions, OmniBootstrap, BIN, STATES};

const T: Duration = Duration::from_secs(60);

fn udp_less_pair_chats(spec: &str, logs: &dyn Fn() -> String) {
    let a = Bot::start(BotOptions::new().no_udp().bootstrap(spec).tcp_relay(spec).timeout_secs(170));
    let aid = a.tox_id();
    let mut b = Bot::start(
        BotOptions::new()
            .no_udp()
            .bootstrap(spec)
            .tcp_relay(spec)
            .friend_request(&aid)
            .message("hello over a tcp relay")
            .exit_on_echo()
            .timeout_secs(160),
    );
    let rc = b.wait_exit(Duration::from_secs(170));
    assert_eq!(rc, Some(0), "B got no echo\n{}\n{}\n{}", b.log(), a.log(), logs());
    assert!(a.proc.expect_line("FRIEND_REQUEST ", T).starts_with(&b.public_key()));
    assert_eq!(a.proc.expect_line("MESSAGE 0 ", T), "'hello over a tcp relay'");
    assert_eq!(b.proc.expect_line("MESSAGE 0 ", T), "'echo: hello over a tcp relay'");
    // Connection kind 1 = TCP: nothing went over UDP.
    assert_eq!(a.proc.expect_line("FRIEND 0 CONNECTION ", T), "1", "{}", a.log());
}

#[test]
fn udp_less_c_toxcore_bots_chat_through_omnipeer_tcp_relay() {
    if !tox_support::require("udp_less_c_toxcore_bots_chat_through_omnipeer_tcp_relay") {
        return;
    }
    let omni = OmniBootstrap::start_with_tcp_relay(BIN);
    udp_less_pair_chats(&omni.node_spec(), &|| omni.proc.log());
}

#[test]
fn udp_less_c_toxcore_bots_chat_through_tox_bootstrapd_tcp_relay() {
    if !tox_support::require("udp_less_c_toxcore_bots_chat_through_tox_bootstrapd_tcp_relay") {
        return;
    }
    let bsd = Bootstrapd::start_with_tcp_relay(&[]);
    udp_less_pair_chats(&bsd.node_spec(), &|| bsd.proc.log());
}

/// Our client through a relay: `omnipeer tox send` (UDP on) befriends and chats with a
/// c-toxcore bot whose UDP is off. The bot names our bootstrap node's TCP relay in its
/// DHT-PK packet; we connect to that relay, reach the bot by OOB and then by a routed
/// connection, and the seed's progress states drive the friend connection to Connected.
#[test]
fn tox_send_reaches_a_udp_less_c_toxcore_bot_through_a_tcp_relay() {
    if !tox_support::require("tox_send_reaches_a_udp_less_c_toxcore_bot_through_a_tcp_relay") {
        return;
    }
    let omni_boot = OmniBootstrap::start_with_tcp_relay(BIN);
    send_through_relay(&omni_boot.node_spec(), &|| omni_boot.proc.log());
}

/// The same through tox-bootstrapd's relay: our relay client against c-toxcore's server.
#[test]
fn tox_send_reaches_a_udp_less_c_toxcore_bot_through_tox_bootstrapd_tcp_relay() {
    if !tox_support::require("tox_send_reaches_a_udp_less_c_toxcore_bot_through_tox_bootstrapd_tcp_relay") {
        return;
    }
    let bsd = Bootstrapd::start_with_tcp_relay(&[]);
    send_through_relay(&bsd.node_spec(), &|| bsd.proc.log());
}

fn send_through_relay(spec: &str, logs: &dyn Fn() -> String) {
    let spec = spec.to_owned();
    let bot = Bot::start(BotOptions::new().no_udp().bootstrap(&spec).tcp_relay(&spec).timeout_secs(150));
    let bot_id = bot.tox_id();
    let profile = tempfile::tempdir().unwrap();
    let p = profile.path().join("send.tox");
    let mut send = tox_send(&p, &spec, &bot_id, "hello through a relay", &["--timeout", "130", "--linger", "1"]);
    let rc = send.wait_exit(Duration::from_secs(150));
    assert_eq!(rc, Some(0), "tox send failed\n{}\n{}\n{}", send.log(), bot.log(), logs());
    let lines = send.lines();
    let states: Vec<&str> = lines.iter().map(String::as_str).filter(|l| STATES.contains(l)).collect();
    assert_eq!(states.first(), Some(&"AwaitingDHTKey"), "{}", send.log());
    assert_eq!(states.last(), Some(&"Connected"), "{}", send.log());
    assert!(lines.iter().any(|l| l == "delivered"), "{}", send.log());
    assert!(lines.iter().any(|l| l == "message: echo: hello through a relay"), "{}", send.log());
    assert_eq!(bot.proc.expect_line("MESSAGE 0 ", T), "'hello through a relay'");
    assert_eq!(bot.proc.expect_line("FRIEND 0 CONNECTION ", T), "1", "a TCP friend connection");
}
