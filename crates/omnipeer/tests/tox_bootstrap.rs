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

/// Bootstrap info (0xf0): `omnipeer tox bootstrap --motd` answers a 78-byte request the
/// way tox-bootstrapd with the same MOTD does (same frame, NUL-terminated MOTD; only the
/// version differs: each reports its own), and ignores a request of another size.
#[test]
fn bootstrap_info_answers_like_tox_bootstrapd() {
    if !tox_support::require("bootstrap_info_answers_like_tox_bootstrapd") {
        return;
    }
    use omnipeer_tox::packet::BootstrapInfo;
    let motd = "omnipeer test bootstrapd"; // what tox_support's Bootstrapd is configured with
    let real = Bootstrapd::start(&[]);
    let omni = OmniBootstrap::start(BIN, &["--motd", motd]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let ask = |port: u16, req: &[u8]| -> Option<Vec<u8>> {
        for _ in 0..5 {
            sock.send_to(req, ("127.0.0.1", port)).unwrap();
            let mut buf = [0u8; 1024];
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                assert_eq!(from.port(), port);
                return Some(buf[..n].to_vec());
            }
        }
        None
    };
    let theirs = ask(real.port, &BootstrapInfo::request()).expect("tox-bootstrapd answers bootstrap info");
    let ours = ask(omni.port, &BootstrapInfo::request()).unwrap_or_else(|| panic!("no answer\n{}", omni.proc.log()));
    let (t, o) = (BootstrapInfo::decode(&theirs).unwrap(), BootstrapInfo::decode(&ours).unwrap());
    assert_eq!(t.motd, format!("{motd}\0").into_bytes(), "tox-bootstrapd's MOTD is NUL-terminated");
    assert_eq!(o.motd, t.motd);
    assert_eq!(ours.len(), theirs.len());
    assert!(t.version >= 1_000_000_000 && o.version >= 1_000_000_000, "{} {}", t.version, o.version);
    // a request of another length is not answered (by either)
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let short = &BootstrapInfo::request()[..77];
    assert_eq!(ask(omni.port, short), None);
    assert_eq!(ask(real.port, short), None);
}
