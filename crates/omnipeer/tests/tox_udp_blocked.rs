//! Interop with UDP really blocked (docs/protocols/tox.md#tcp-relays): omnipeer and a REAL
//! c-toxcore 0.2.18 bot, both with their UDP ports dropped by an nftables table of the
//! test's own (the rest of loopback UDP, which the bootstrap node and the other Tox tests
//! running beside use, is untouched). Neither side is told UDP is off: each finds that no
//! DHT node answers and falls back to the TCP relay beside the bootstrap node, the way
//! c-toxcore clients (qTox, toxic) add their bootstrap nodes as relays. Through the relay:
//! our onion announce and search (relay packets 8/9), the bot's relay in its DHT-PK packet
//! and ours in our DHT-PK packet, the friend connection (routing request, OOB cookie and
//! handshake), a message with its echo, then a 50 MiB file (sha256 match).
//!
//! - through our relay (`omnipeer tox bootstrap --tcp`);
//! - through tox-bootstrapd's relay;
//! - the other direction (bot → `omnipeer tox echo --no-udp --tcp-relay`), through each relay;
//! - `omnipeer up` with `[tox] udp = false`: its client uses the relay beside its own
//!   bootstrap node; a bot with its UDP blocked befriends it and a line is echoed.
//!
//! Needs root and `nft` (scripts/install-test-deps.sh installs nftables); skips (and
//! passes) without c-toxcore or without a usable nft.

mod omni;
mod tox_support;

use omni::node::sha256_file as sha;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tox_support::{
    free_udp_port, omni, tox_id_line, tox_send, Bootstrapd, Bot, BotOptions, OmniBootstrap, BIN, STATES,
};

const SIZE: usize = 50 << 20;
/// Generous bound for a friend connection plus a 50 MiB transfer through a relay on a
/// loaded 2-core machine (debug builds of omnipeer and of our relay do every frame's
/// crypto; runs took 19 s to 210 s depending on the load).
const T: Duration = Duration::from_secs(600);

/// An nftables table dropping UDP from and to some ports (on every interface, loopback
/// included), deleted on drop. One table per test, named after the process and ports, so
/// tests running in parallel never touch each other's rules.
struct UdpBlock {
    table: String,
}

impl UdpBlock {
    fn new(ports: &[u16]) -> Option<UdpBlock> {
        let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let table = format!("omnipeer_udp_block_{}_{}", std::process::id(), ports[0]);
        let rules = format!(
            "table inet {table} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n  \
             udp sport {{ {list} }} drop\n  udp dport {{ {list} }} drop\n }}\n}}\n"
        );
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        use std::io::Write;
        child.stdin.take()?.write_all(rules.as_bytes()).ok()?;
        let out = child.wait_with_output().ok()?;
        if !out.status.success() {
            eprintln!("nft: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(UdpBlock { table })
    }
}

impl Drop for UdpBlock {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.table]).status();
    }
}

fn block(test: &str, ports: &[u16]) -> Option<UdpBlock> {
    if !tox_support::require(test) {
        return None;
    }
    let b = UdpBlock::new(ports);
    if b.is_none() {
        eprintln!("SKIP {test}: nft is not usable here (needs root and nftables)");
    }
    b
}

fn test_file(dir: &Path, name: &str, seed: u64) -> std::path::PathBuf {
    omni::tox::test_file(dir, name, seed, SIZE)
}

/// omnipeer → bot: `tox send` (message, echo back), then `tox send-file` (50 MiB), both with
/// their UDP port blocked, the bot's too.
fn omnipeer_to_bot_udp_blocked(spec: &str, logs: &dyn Fn() -> String) {
    let (our_port, bot_port) = (free_udp_port(), free_udp_port());
    let Some(_fw) = block("omnipeer_to_bot_udp_blocked", &[our_port, bot_port]) else { return };
    let work = tempfile::tempdir().unwrap();
    let file = test_file(work.path(), "fifty.bin", 0x7cb);
    let recv = work.path().join("bot-in");
    std::fs::create_dir_all(&recv).unwrap();
    let bot =
        Bot::start(BotOptions::new().port(bot_port).bootstrap(spec).tcp_relay(spec).recv_dir(&recv).timeout_secs(900));
    let bot_id = bot.tox_id();
    let profile = work.path().join("send.tox");
    let listen = format!("127.0.0.1:{our_port}");
    let start = Instant::now();
    let mut send = tox_send(
        &profile,
        spec,
        &bot_id,
        "hello with udp blocked",
        &["--listen", &listen, "--timeout", "200", "--linger", "1"],
    );
    let rc = send.wait_exit(Duration::from_secs(230));
    assert_eq!(rc, Some(0), "tox send failed\n{}\n{}\n{}", send.log(), bot.log(), logs());
    eprintln!("message delivered with UDP blocked after {:.1} s", start.elapsed().as_secs_f64());
    let lines = send.lines();
    let states: Vec<&str> = lines.iter().map(String::as_str).filter(|l| STATES.contains(l)).collect();
    // The relayed friend connection goes through the seed's progress states in order.
    let mut at = 0;
    for s in &states {
        let i = STATES.iter().position(|x| x == s).unwrap();
        assert!(i >= at || i == 0, "states out of order: {states:?}\n{}", send.log());
        at = i;
    }
    assert_eq!(states.first(), Some(&"AwaitingDHTKey"), "{}", send.log());
    assert_eq!(states.last(), Some(&"Connected"), "{}", send.log());
    // Connected is reached only through the states between (which ones depends on who
    // handshakes first): at least one of them was printed.
    assert!(states.iter().any(|s| STATES[1..5].contains(s)), "{states:?}");
    assert!(lines.iter().any(|l| l == "delivered"), "{}", send.log());
    assert!(lines.iter().any(|l| l == "message: echo: hello with udp blocked"), "{}", send.log());
    assert_eq!(bot.proc.expect_line("MESSAGE 0 ", T), "'hello with udp blocked'");
    assert_eq!(bot.proc.expect_line("FRIEND 0 CONNECTION ", T), "1", "a TCP friend connection\n{}", bot.log());

    let start = Instant::now();
    let mut sendf = omni(
        "omnipeer-tox-send-file",
        &[
            "tox",
            "send-file",
            "--profile",
            profile.to_str().unwrap(),
            "--bootstrap",
            spec,
            "--listen",
            &listen,
            "--to",
            &bot_id,
            "--file",
            file.to_str().unwrap(),
            "--timeout",
            "590",
        ],
    );
    let done = bot
        .proc
        .wait_line("FILE_DONE ", T)
        .unwrap_or_else(|| panic!("the bot got no file\n{}\n{}\n{}", sendf.log(), bot.log(), logs()));
    let secs = start.elapsed().as_secs_f64();
    eprintln!("50 MiB omnipeer → c-toxcore through the relay, UDP blocked: {secs:.1} s ({:.2} MiB/s)", 50.0 / secs);
    assert_eq!(sendf.wait_exit(T), Some(0), "{}\n{}", sendf.log(), bot.log());
    assert!(sendf.lines().iter().any(|l| l == &format!("sent {SIZE} bytes")), "{}", sendf.log());
    let got = done.split_once(' ').map(|(_, p)| p.to_owned()).unwrap();
    assert_eq!(sha(Path::new(&got)), sha(&file), "the file differs");
}

#[test]
fn udp_blocked_omnipeer_and_c_toxcore_chat_and_send_a_file_through_omnipeer_relay() {
    if !tox_support::require("udp_blocked_omnipeer_and_c_toxcore_chat_and_send_a_file_through_omnipeer_relay") {
        return;
    }
    let relay = OmniBootstrap::start_with_tcp_relay(BIN);
    omnipeer_to_bot_udp_blocked(&relay.node_spec(), &|| relay.proc.log());
}

#[test]
fn udp_blocked_omnipeer_and_c_toxcore_chat_and_send_a_file_through_tox_bootstrapd_relay() {
    if !tox_support::require("udp_blocked_omnipeer_and_c_toxcore_chat_and_send_a_file_through_tox_bootstrapd_relay") {
        return;
    }
    let bsd = Bootstrapd::start_with_tcp_relay(&[]);
    omnipeer_to_bot_udp_blocked(&bsd.node_spec(), &|| bsd.proc.log());
}

/// bot → omnipeer: `tox echo --no-udp --tcp-relay SPEC --incoming DIR` (UDP switched off in
/// omnipeer AND its port blocked; the bot's port blocked too) receives 50 MiB, through our
/// relay.
#[test]
fn udp_blocked_c_toxcore_sends_a_file_to_tox_echo_through_omnipeer_relay() {
    let (our_port, bot_port) = (free_udp_port(), free_udp_port());
    let Some(_fw) =
        block("udp_blocked_c_toxcore_sends_a_file_to_tox_echo_through_omnipeer_relay", &[our_port, bot_port])
    else {
        return;
    };
    let relay = OmniBootstrap::start_with_tcp_relay(BIN);
    bot_to_tox_echo(&relay.node_spec(), our_port, bot_port, &|| relay.proc.log());
}

/// The same through tox-bootstrapd's relay.
#[test]
fn udp_blocked_c_toxcore_sends_a_file_to_tox_echo_through_tox_bootstrapd_relay() {
    let (our_port, bot_port) = (free_udp_port(), free_udp_port());
    let Some(_fw) =
        block("udp_blocked_c_toxcore_sends_a_file_to_tox_echo_through_tox_bootstrapd_relay", &[our_port, bot_port])
    else {
        return;
    };
    let bsd = Bootstrapd::start_with_tcp_relay(&[]);
    bot_to_tox_echo(&bsd.node_spec(), our_port, bot_port, &|| bsd.proc.log());
}

fn bot_to_tox_echo(spec: &str, our_port: u16, bot_port: u16, logs: &dyn Fn() -> String) {
    let spec = spec.to_owned();
    let work = tempfile::tempdir().unwrap();
    let file = test_file(work.path(), "from-bot.bin", 0xb0b);
    let incoming = work.path().join("incoming");
    let profile = work.path().join("echo.tox");
    // The bootstrap entry points at a port where nothing listens: the relay comes from
    // --tcp-relay alone.
    let dead = format!("127.0.0.1:{}:{}", free_udp_port(), "AB".repeat(32));
    let echo = omni(
        "omnipeer-tox-echo",
        &[
            "tox",
            "echo",
            "--profile",
            profile.to_str().unwrap(),
            "--bootstrap",
            &dead,
            "--tcp-relay",
            &spec,
            "--no-udp",
            "--listen",
            &format!("127.0.0.1:{our_port}"),
            "--incoming",
            incoming.to_str().unwrap(),
        ],
    );
    let echo_id = tox_id_line(&echo);
    let start = Instant::now();
    let mut bot = Bot::start(
        BotOptions::new()
            .port(bot_port)
            .bootstrap(&spec)
            .tcp_relay(&spec)
            .friend_request(&echo_id)
            .send_file(&file)
            .exit_on_file()
            .timeout_secs(590),
    );
    let got = echo
        .wait_line("received ", T)
        .unwrap_or_else(|| panic!("tox echo received no file\n{}\n{}\n{}", echo.log(), bot.log(), logs()));
    let secs = start.elapsed().as_secs_f64();
    eprintln!("50 MiB c-toxcore → omnipeer through the relay, UDP blocked: {secs:.1} s (with the friend connection)");
    assert_eq!(bot.wait_exit(Duration::from_secs(60)), Some(0), "{}", bot.log());
    assert_eq!(bot.proc.expect_line("FRIEND 0 CONNECTION ", T), "1", "a TCP friend connection");
    assert!(got.contains("(52428800 bytes)"), "{got}");
    assert_eq!(sha(&incoming.join("from-bot.bin")), sha(&file), "the file differs");
}

/// `omnipeer up` with `[tox] udp = false` (and nothing else about relays): the client uses
/// the TCP relay the node runs beside its bootstrap node. A c-toxcore bot with its UDP port
/// blocked (nft) sends the node a friend request (auto-accepted); the friend comes online in
/// /api/tox, goes through the progress states, and a line sent with POST
/// /api/chats/messages comes back echoed, over TCP (the bot's connection kind 1).
#[test]
fn node_with_udp_off_befriends_a_udp_blocked_c_toxcore_bot_through_its_own_relay() {
    use omni::node::{server_config, Node, Ports};
    let bot_port = free_udp_port();
    let Some(_fw) = block("node_with_udp_off_befriends_a_udp_blocked_c_toxcore_bot_through_its_own_relay", &[bot_port])
    else {
        return;
    };
    let boot_port = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = server_config("alice", p).replace("[tox]\n", "[tox]\nauto_accept = true\nudp = false\n").replace(
        "[tox_bootstrap]\nlisten = \"127.0.0.1:0\"",
        &format!("[tox_bootstrap]\nlisten = \"127.0.0.1:{boot_port}\""),
    );
    assert!(cfg.contains("udp = false") && cfg.contains(&format!(":{boot_port}")), "{cfg}");
    let n = Node::start(dir.path(), &cfg, p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    let nets = n.get("/api/networks");
    let boot = nets.as_array().unwrap().iter().find(|x| x["name"] == "tox_bootstrap").unwrap().clone();
    let key = boot["detail"].as_str().unwrap().strip_prefix("DHT key ").unwrap().to_owned();
    // The relay listens on the bootstrap node's port (`tcp_listen` empty).
    let spec = format!("127.0.0.1:{boot_port}:{key}");
    let bot = Bot::start(
        BotOptions::new().port(bot_port).bootstrap(&spec).tcp_relay(&spec).friend_request(&id).timeout_secs(300),
    );
    let apk = bot.public_key();
    let logs = || format!("{}\nnode /api/tox: {}", bot.log(), n.get("/api/tox"));
    let online = |t: &serde_json::Value| {
        t["friends"].as_array().and_then(|v| v.iter().find(|f| f["pk"] == apk.as_str() && f["online"] == true).cloned())
    };
    let end = Instant::now() + T;
    while online(&n.get("/api/tox")).is_none() {
        assert!(Instant::now() < end, "the bot never came online\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(online(&n.get("/api/tox")).unwrap()["progress"], "Connected", "{}", logs());
    let chat = format!("tox:friend:{apk}");
    let (code, m) = n.post("/api/chats/messages", serde_json::json!({"chat": chat, "text": "udp is off"}));
    assert_eq!(code, 201, "{m}");
    let echoed = |n: &Node| {
        n.get(&format!("/api/chats/messages?chat={chat}"))
            .as_array()
            .is_some_and(|v| v.iter().any(|l| l["text"] == "echo: udp is off" && l["own"] == false))
    };
    while !echoed(&n) {
        assert!(Instant::now() < end, "no echo\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(bot.proc.expect_line("FRIEND 0 CONNECTION ", T), "1", "a TCP friend connection\n{}", bot.log());
}
