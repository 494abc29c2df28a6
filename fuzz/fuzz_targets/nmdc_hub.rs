//! The `hub::Hub` machine with a handful of connections, driven by arbitrary bytes and
//! well-formed client commands per connection, disconnects, password answers and time.
//!
//! Header: `max_users` (1..=4), the login timeout, the chat/search rate limits, whether a
//! topic and a MOTD are set, and an optional ban (by address, by nick, timed or for good).
//! `op` is registered as an operator and `reg` as a user. Then operations chosen by one
//! byte each: accept a new connection (at most 6; addresses 10.0.0.1..=3, so some share
//! one), raw bytes to a connection, a canned client command to a connection (login
//! bundles as ncdc/EiskaltDC++/microdc2 send them, `$MyINFO`, chat and `!` commands,
//! `$To:`, `$ConnectToMe`, `$Search`, `$SR`, `$Kick`, ...), `disconnect`,
//! `password_result` (mostly for a connection that is waiting for one), time passing with
//! `handle_timeout`, and input for a connection id that was never accepted.
//!
//! Checked after every call, with all output drained:
//! - nothing panics;
//! - every `Send`/`Close` names an accepted connection, never one the driver disconnected,
//!   and nothing is sent to a connection after its `Close` (at most one `Close` each);
//! - every `Send` is whole commands that parse; the first thing a connection gets is the
//!   hub's `$Lock EXTENDEDPROTOCOL… Pk=…` (or the ban message);
//! - `LoggedIn`/`LoggedOut` pair up, name accepted connections and their addresses, and
//!   `online_nicks()` is exactly the logged-in nicks in login order, with no duplicate
//!   (ignoring case); `connection_count()` counts accepted minus disconnected connections.
//!
//! Known crate bugs can be skipped with `NMDC_FUZZ_SKIP_KNOWN=1` (see `known_bug`).
#![no_main]

mod common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_nmdc::hub::{Ban, ConnId, Hub, HubConfig, HubEvent, Output, RateLimit};
use omnipeer_nmdc::lock::lock_to_key;
use omnipeer_nmdc::{Command, CommandReader};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LOCK_RANDOM: &[u8] = b"0123456789abcdef";
const MAX_CONNS: u64 = 6;
const NICKS: [&str; 8] = ["alice", "bob", "Alice", "op", "reg", "Hub", "carol", "x$y"];

fn ip_of(conn: ConnId) -> IpAddr {
    IpAddr::from([10, 0, 0, (conn % 3 + 1) as u8])
}

/// Crate bugs already reported; skipped only with `NMDC_FUZZ_SKIP_KNOWN=1`.
fn skip_known() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("NMDC_FUZZ_SKIP_KNOWN").is_some())
}

/// The known send-after-close: an operator who bans himself (`!ban <own nick> …`) is
/// kicked, which closes his connection, and is then told "<nick> is banned (…)".
fn known_send_after_close(sent: &[(ConnId, Vec<Command>)]) -> bool {
    sent.iter().all(|(_, cmds)| {
        cmds.iter().all(|c| matches!(c, Command::Chat { nick, text } if nick == "Hub" && text.contains(" is banned (")))
    })
}

struct Harness {
    hub: Hub,
    t0: Instant,
    accepted: Vec<ConnId>,
    disconnected: HashSet<ConnId>,
    closed: HashSet<ConnId>,
    got_first: HashSet<ConnId>,
    /// Logged-in users in login order.
    online: Vec<(ConnId, String)>,
    /// Connections whose password the hub asked us to check.
    checking: Vec<ConnId>,
    /// The hub's lock, as a client computes its key from.
    hub_lock: Option<Vec<u8>>,
    /// What each connection would send as its nick.
    nick: HashMap<ConnId, &'static str>,
}

fn commands(data: &[u8]) -> Vec<Command> {
    // A user list for a `ZPipe0` client may come as `$ZOn|` and one zlib stream
    // (hub::MIN_ZPIPE_BYTES): check the commands inside.
    let inflated;
    let data = match data.strip_prefix(b"$ZOn|") {
        Some(z) => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(z).read_to_end(&mut out).expect("hub sent a corrupt $ZOn stream");
            inflated = out;
            &inflated[..]
        }
        None => data,
    };
    let mut r = CommandReader::with_limit(omnipeer_nmdc::limits::MAX_LIST_COMMAND);
    r.push(data);
    let mut v = Vec::new();
    loop {
        match r.next_command() {
            Ok(Some(raw)) => v.push(Command::parse(&raw).unwrap_or_else(|e| {
                panic!("hub sent an unparsable command {:?}: {e}", raw.escape_ascii().to_string())
            })),
            Ok(None) => break,
            Err(e) => panic!("hub sent an overlong command: {e}"),
        }
    }
    assert_eq!(r.buffered(), 0, "hub sent a partial command: {:?}", data.escape_ascii().to_string());
    v
}

impl Harness {
    fn settle(&mut self) {
        let mut sent_after_close = Vec::new();
        for _ in 0..100_000 {
            let Some(o) = self.hub.poll_output() else {
                break;
            };
            match o {
                Output::Send { conn, data } => {
                    assert!(self.accepted.contains(&conn), "send to unknown connection {conn}");
                    assert!(
                        !self.disconnected.contains(&conn),
                        "send to disconnected connection {conn}: {:?}",
                        data.escape_ascii().to_string()
                    );
                    assert!(!data.is_empty());
                    let cmds = commands(&data);
                    if self.closed.contains(&conn) {
                        sent_after_close.push((conn, cmds.clone()));
                    }
                    if self.got_first.insert(conn) {
                        match &cmds[0] {
                            Command::Lock { lock, pk } => {
                                assert!(lock.starts_with(b"EXTENDEDPROTOCOL"));
                                assert!(pk.as_deref().is_some_and(|p| !p.is_empty()));
                                self.hub_lock = Some(lock.clone());
                            }
                            Command::Chat { text, .. } => {
                                assert!(text.contains("banned"), "first message {text:?}")
                            }
                            other => panic!("first thing sent to {conn} is {other:?}"),
                        }
                    }
                }
                Output::Broadcast { data, except, .. } => {
                    assert!(!data.is_empty());
                    assert!(!commands(&data).is_empty());
                    if let Some(c) = except {
                        assert!(self.accepted.contains(&c), "broadcast except unknown connection {c}");
                    }
                }
                Output::Join { conn, .. } => {
                    assert!(self.accepted.contains(&conn), "join of unknown connection {conn}");
                    assert!(!self.disconnected.contains(&conn), "join of disconnected connection {conn}");
                    assert!(!self.closed.contains(&conn), "join of closed connection {conn}");
                }
                Output::Leave { conn } => {
                    assert!(self.accepted.contains(&conn), "leave of unknown connection {conn}");
                }
                Output::Close { conn } => {
                    assert!(self.accepted.contains(&conn), "close of unknown connection {conn}");
                    assert!(!self.disconnected.contains(&conn), "close of disconnected connection {conn}");
                    assert!(self.closed.insert(conn), "second Close for {conn}");
                }
                Output::Event(e) => self.event(e),
            }
        }
        assert_eq!(self.hub.poll_output(), None, "poll_output never ran dry");
        if !sent_after_close.is_empty() && !(skip_known() && known_send_after_close(&sent_after_close)) {
            panic!("sent after Close: {sent_after_close:?}");
        }

        let nicks = self.hub.online_nicks();
        let mut seen = HashSet::new();
        for n in &nicks {
            assert!(seen.insert(n.to_lowercase()), "duplicate online nick {n:?} in {nicks:?}");
        }
        let want: Vec<String> = self.online.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(nicks, want, "online_nicks() vs LoggedIn/LoggedOut");
        assert_eq!(self.hub.connection_count(), self.accepted.len() - self.disconnected.len());
        if let Some(t) = self.hub.poll_timeout() {
            assert!(t >= self.t0);
        }
    }

    fn event(&mut self, e: HubEvent) {
        match e {
            HubEvent::LoggedIn { conn, nick, ip, .. } => {
                assert!(self.accepted.contains(&conn) && !self.disconnected.contains(&conn));
                assert!(!self.closed.contains(&conn), "login of a closed connection");
                assert_eq!(ip, ip_of(conn));
                assert!(!self.online.iter().any(|(c, n)| *c == conn || n.to_lowercase() == nick.to_lowercase()));
                self.online.push((conn, nick));
            }
            HubEvent::LoggedOut { conn, nick } => {
                let pos = self
                    .online
                    .iter()
                    .position(|(c, _)| *c == conn)
                    .unwrap_or_else(|| panic!("LoggedOut for {conn} ({nick}) who is not logged in"));
                assert_eq!(self.online[pos].1, nick);
                self.online.remove(pos);
            }
            HubEvent::CheckPassword { conn, nick, .. } => {
                assert!(self.accepted.contains(&conn) && !self.disconnected.contains(&conn));
                assert!(!nick.is_empty());
                self.checking.push(conn);
            }
            HubEvent::Dropped { conn, .. } => {
                assert!(self.accepted.contains(&conn));
            }
            HubEvent::Kicked { nick, .. } => {
                assert!(!nick.is_empty());
            }
            _ => {}
        }
    }

    fn pick(&self, inp: &mut Input<'_>) -> Option<ConnId> {
        if self.accepted.is_empty() {
            return None;
        }
        Some(self.accepted[usize::from(inp.u8()) % self.accepted.len()])
    }
}

fn myinfo(nick: &str, passive: bool) -> String {
    format!(
        "$MyINFO $ALL {nick} fuzz<ncdc V:1.23.1,M:{},H:1/0/0,S:10>$ $100\x01$$3084$|",
        if passive { 'P' } else { 'A' }
    )
}

/// A client command with fuzzed fields, as `conn` (nick `me`) would send it.
fn canned(inp: &mut Input<'_>, h: &Harness, conn: ConnId, me: &str) -> Vec<u8> {
    let kind = inp.u8();
    let other = NICKS[usize::from(inp.u8()) % NICKS.len()];
    let my_ip = ip_of(conn);
    let some_ip = if kind & 0x80 == 0 { my_ip } else { ip_of(conn + 1) };
    let key = h.hub_lock.as_deref().and_then(|l| lock_to_key(l).ok()).unwrap_or_else(|| b"x".to_vec());
    let mut v = Vec::new();
    match kind % 20 {
        0..=2 => {
            // Login bundles, as docs/protocols/nmdc.md#hub-login shows them.
            let supports: &[u8] = match (kind >> 2) % 4 {
                0 => b"$Supports NoGetINFO NoHello UserIP2 TLS|",
                1 => b"$Supports UserCommand NoGetINFO NoHello UserIP2 TTHSearch ZPipe0 DHT0 |",
                2 => b"$Supports TTHSearch NoGetINFO NoHello|",
                _ => b"",
            };
            v.extend_from_slice(supports);
            v.extend_from_slice(b"$Key ");
            v.extend_from_slice(&key);
            v.extend_from_slice(format!("|$ValidateNick {me}|").as_bytes());
        }
        3 => v.extend_from_slice(format!("$ValidateNick {other}|").as_bytes()),
        4 => v.extend_from_slice(b"$MyPass secret|"),
        5 => {
            // ncdc order, or EiskaltDC++/microdc2 order.
            if kind & 0x20 == 0 {
                v.extend_from_slice(format!("$Version 1,0091|{}$GetNickList|", myinfo(me, kind & 0x40 != 0)).as_bytes());
            } else {
                v.extend_from_slice(format!("$Version 1,0091|$GetNickList|{}", myinfo(me, kind & 0x40 != 0)).as_bytes());
            }
        }
        6 => v.extend_from_slice(myinfo(if kind & 0x20 == 0 { me } else { other }, kind & 0x40 != 0).as_bytes()),
        7 | 8 => {
            let text = match inp.u8() % 14 {
                0 => "hello everybody".to_owned(),
                1 => "!help".to_owned(),
                2 => format!("!kick {other} go away"),
                3 => format!("!ban {other} 30m flooding"),
                4 => format!("!ban {other} perm"),
                5 => format!("!unban {other}"),
                6 => "!topic new topic $ | &".to_owned(),
                7 => format!("!reg {other} pw op"),
                8 => format!("!reg {other} pw"),
                9 => format!("!unreg {other}"),
                10 => "!users".to_owned(),
                11 => "!bogus".to_owned(),
                12 => "x".repeat(9000),
                _ => format!("!ban {other} 1s"),
            };
            let speaker = if kind & 0x20 == 0 { me } else { other };
            v.extend(Command::Chat { nick: speaker.into(), text }.encode());
        }
        9 => v.extend_from_slice(format!("$To: {other} From: {me} $<{me}> hi there|").as_bytes()),
        10 => v.extend_from_slice(format!("$ConnectToMe {other} {some_ip}:3000|").as_bytes()),
        11 => v.extend_from_slice(format!("$RevConnectToMe {me} {other}|").as_bytes()),
        12 => v.extend_from_slice(format!("$Search {some_ip}:3000 F?T?0?1?test|").as_bytes()),
        13 => v.extend_from_slice(
            format!("$Search Hub:{} F?T?0?9?TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ|", if kind & 0x20 == 0 { me } else { other })
                .as_bytes(),
        ),
        14 => v.extend_from_slice(
            format!("$SR {me} share\\test.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:411)\x05{other}|")
                .as_bytes(),
        ),
        15 => v.extend_from_slice(format!("$Kick {other}|").as_bytes()),
        16 => v.extend_from_slice(format!("$OpForceMove $Who:{other}$Where:dchub://127.0.0.1:4112$Msg:go there|").as_bytes()),
        17 => v.extend_from_slice(format!("$GetINFO {other} {me}|").as_bytes()),
        18 => v.extend_from_slice(b"$GetNickList|"),
        _ => v.extend_from_slice(format!("$Quit {me}|").as_bytes()),
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let more = inp.u8();
    let cfg = HubConfig {
        max_users: usize::from(flags & 3) + 1,
        login_timeout: match (flags >> 2) % 4 {
            0 => Duration::ZERO,
            1 => Duration::from_millis(500),
            2 => Duration::from_secs(60),
            _ => Duration::from_secs(3600),
        },
        chat_limit: RateLimit { burst: u32::from(more & 3), every: Duration::from_millis(u64::from(more >> 2) * 100) },
        search_limit: RateLimit { burst: 2, every: Duration::from_secs(5) },
        topic: if flags & 0x10 != 0 { "fuzz topic $|&".into() } else { String::new() },
        motd: if flags & 0x20 != 0 { vec!["welcome".into(), "rules: none $ |".into()] } else { vec![] },
        ..HubConfig::default()
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut hub = Hub::new(cfg);
    hub.set_registered("op", true);
    hub.set_registered("reg", false);
    match (flags >> 6) % 4 {
        0 => {}
        1 => hub.add_ban(Ban {
            nick: None,
            ip: Some(ip_of(2)),
            until: Some(t0 + Duration::from_secs(10)),
            reason: "fuzz".into(),
        }),
        2 => hub.add_ban(Ban { nick: Some("BOB".into()), ip: None, until: None, reason: "fuzz".into() }),
        _ => hub.add_ban(Ban {
            nick: Some("carol".into()),
            ip: Some(ip_of(3)),
            until: Some(t0),
            reason: "expired".into(),
        }),
    }
    let mut h = Harness {
        hub,
        t0,
        accepted: Vec::new(),
        disconnected: HashSet::new(),
        closed: HashSet::new(),
        got_first: HashSet::new(),
        online: Vec::new(),
        checking: Vec::new(),
        hub_lock: None,
        nick: HashMap::new(),
    };

    let mut steps = 0;
    while !inp.is_empty() && steps < 400 {
        steps += 1;
        let op = inp.u8();
        if op & 0x80 != 0 {
            now += Duration::from_millis(u64::from(inp.u16()) * 10);
        }
        match op & 0x7f {
            0..=14 => {
                let id = h.accepted.len() as u64 + 1;
                if id <= MAX_CONNS {
                    h.accepted.push(id);
                    h.nick.insert(id, NICKS[usize::from(inp.u8()) % NICKS.len()]);
                    h.hub.accept(now, id, ip_of(id), LOCK_RANDOM);
                }
            }
            15..=34 => {
                if let Some(c) = h.pick(&mut inp) {
                    let chunk = inp.chunk();
                    h.hub.handle_input(now, c, chunk);
                }
            }
            35..=89 => {
                if let Some(c) = h.pick(&mut inp) {
                    let me = h.nick[&c];
                    let line = canned(&mut inp, &h, c, me);
                    let cut = usize::from(inp.u8()) % (line.len() + 1);
                    h.hub.handle_input(now, c, &line[..cut]);
                    h.settle();
                    h.hub.handle_input(now, c, &line[cut..]);
                }
            }
            90..=97 => {
                if let Some(c) = h.pick(&mut inp) {
                    h.hub.disconnect(c);
                    h.disconnected.insert(c);
                }
            }
            98..=109 => {
                // Mostly answer a pending check; sometimes any connection.
                let ok = inp.bool();
                let c = if !h.checking.is_empty() && inp.u8() % 4 != 0 {
                    Some(h.checking.remove(0))
                } else {
                    h.pick(&mut inp)
                };
                if let Some(c) = c {
                    h.hub.password_result(now, c, ok);
                }
            }
            110..=119 => {
                let at = match h.hub.poll_timeout() {
                    Some(t) if inp.bool() => t.max(now),
                    _ => now,
                };
                now = at;
                h.hub.handle_timeout(now);
            }
            _ => {
                // A connection the driver never accepted.
                let chunk = inp.chunk();
                h.hub.handle_input(now, 999, chunk);
                h.hub.password_result(now, 999, true);
                h.hub.disconnect(999);
            }
        }
        h.settle();
    }
});
