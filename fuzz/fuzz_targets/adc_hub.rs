//! The ADC `hub::Hub` machine (docs/protocols/adc.md#hub) with a handful of connections,
//! driven by arbitrary bytes and well-formed client lines per connection, disconnects and
//! time.
//!
//! Header: `max_users` (1..=4), the per-address cap (0..=3), whether a ban on an address is
//! in force. `op` is registered as an operator and `reg` as a user. Then operations chosen
//! by one byte each: accept a new connection (at most 6; addresses 10.0.0.1..=3, so some
//! share one), raw bytes to a connection, a canned line to a connection (`HSUP`, `BINF`
//! with right and wrong SIDs, CIDs and PIDs, `HPAS` with the right and a wrong hash, chat
//! and `!` commands, PMs, searches with feature selectors, `DCTM`, `DRES`, ...),
//! `disconnect`, time passing with `handle_timeout`, and input for a connection that was
//! never accepted.
//!
//! Checked after every call, with all output drained:
//! - nothing panics;
//! - every `Send`/`Close`/`Join` names an accepted connection the driver has not
//!   disconnected, nothing is sent after a `Close`, and there is at most one `Close` each;
//! - every `Send` and `Broadcast` is whole lines that parse as ADC messages, and none
//!   carries a `PD` (a PID) field;
//! - `online_nicks()` has no duplicate (ignoring case) and only connections that reached
//!   NORMAL (`LoggedIn`) and did not leave are joined.
#![no_main]

mod common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_adc::hub::{Ban, ConnId, Hub, HubConfig, HubEvent, Output, CHALLENGE_LEN};
use omnipeer_adc::message::{password_hash, Cid, Message};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const MAX_CONNS: u64 = 6;
const NICKS: [&str; 6] = ["alice", "bob", "Alice", "op", "reg", "a b"];

fn ip_of(conn: ConnId) -> IpAddr {
    IpAddr::from([10, 0, 0, (conn % 3 + 1) as u8])
}

fn sid_text(v: u8) -> String {
    omnipeer_adc::message::Sid::new(u32::from(v % 8)).to_string()
}

fn challenge(conn: ConnId) -> [u8; CHALLENGE_LEN] {
    [conn as u8; CHALLENGE_LEN]
}

/// A canned client line; `me` is the connection's own SID when known.
fn canned(inp: &mut Input<'_>, conn: ConnId, me: Option<&str>) -> String {
    let mine = me.map(str::to_owned).unwrap_or_else(|| sid_text(1));
    let other = sid_text(inp.u8());
    let sid = if inp.bool() { mine.clone() } else { other.clone() };
    let seed = inp.u8() % 4;
    let pid = Cid([seed; 24]);
    let cid = if inp.u8() % 8 == 0 { Cid([seed ^ 1; 24]) } else { Cid::from_pid(&pid) };
    let nick = NICKS[inp.u8() as usize % NICKS.len()].replace(' ', "\\s");
    match inp.u8() % 16 {
        0 => "HSUP ADBASE ADTIGR".into(),
        1 => "HSUP ADBAS0 ADBASE ADTIGR ADUCM0 ADBLO0 ADZLIF".into(),
        2 => "HSUP ADTIGR".into(),
        3 => format!("BINF {sid} ID{cid} PD{pid} NI{nick} SL3 SS1 I40.0.0.0 SUTCP4,UDP4"),
        4 => format!("BINF {sid} ID{cid} PD{pid} NI{nick} CT4 I6::1 SUSEGA"),
        5 => format!("BINF {sid} SS{} SU{}", inp.u8(), if inp.bool() { "TCP4" } else { "" }),
        6 => {
            let pw = if inp.bool() { "pw" } else { "nope" };
            format!("HPAS {}", password_hash(pw, &challenge(conn)))
        }
        7 => format!("BMSG {sid} hello\\sthere"),
        8 => {
            let cmd = ["help", "kick bob", "ban alice 1m x", "ban op perm", "unban alice", "reg carol pw op", "unreg reg", "users"]
                [inp.u8() as usize % 8];
            format!("BMSG {sid} !{}", cmd.replace(' ', "\\s"))
        }
        9 => format!("EMSG {sid} {other} pm PM{sid}"),
        10 => format!("DMSG {sid} {other} pm PM{sid}"),
        11 => format!("BSCH {sid} ANfoo TO1"),
        12 => format!("FSCH {sid} {} ANfoo", ["+TCP4", "-TCP4", "+SEGA", "+TCP4-NAT0+UDP4"][inp.u8() as usize % 4]),
        13 => format!("DCTM {sid} {other} ADC/1.0 3000 t"),
        14 => format!("DRES {sid} {other} FN/a SI1 SL1 TO1"),
        _ => format!("BQUI {sid}"),
    }
}

fn check_lines(data: &[u8], what: &str) {
    assert_eq!(data.last(), Some(&b'\n'), "{what} does not end with a newline");
    for line in data[..data.len() - 1].split(|&b| b == b'\n') {
        let m = Message::parse(line).unwrap_or_else(|e| panic!("{what}: {:?} does not parse: {e}", line.escape_ascii()));
        assert!(
            !m.params.iter().any(|p| p.starts_with("PD")) || m.cmd.as_str() == "MSG",
            "{what} carries a PID: {m}"
        );
    }
}

struct State {
    accepted: HashSet<ConnId>,
    gone: HashSet<ConnId>,
    closed: HashSet<ConnId>,
    joined: HashSet<ConnId>,
    online: HashSet<ConnId>,
    sids: HashMap<ConnId, String>,
}

fn drain(hub: &mut Hub, st: &mut State) {
    while let Some(o) = hub.poll_output() {
        match o {
            Output::Send { conn, data } => {
                assert!(st.accepted.contains(&conn) && !st.gone.contains(&conn), "send to unknown {conn}");
                assert!(!st.closed.contains(&conn), "send to {conn} after its close");
                check_lines(&data, "send");
                if let Some(l) = data.split(|&b| b == b'\n').find(|l| l.starts_with(b"ISID ")) {
                    st.sids.insert(conn, String::from_utf8_lossy(&l[5..]).into_owned());
                }
            }
            Output::Broadcast { data, except, .. } => {
                check_lines(&data, "broadcast");
                if let Some(e) = except {
                    assert!(st.accepted.contains(&e));
                }
            }
            Output::Join { conn, .. } => {
                // (`LoggedIn` follows it in the same batch: checked after the drain.)
                assert!(!st.closed.contains(&conn) && !st.gone.contains(&conn));
                st.joined.insert(conn);
            }
            Output::Leave { conn } => {
                st.joined.remove(&conn);
            }
            Output::Close { conn } => {
                assert!(st.accepted.contains(&conn) && !st.gone.contains(&conn), "close of unknown {conn}");
                assert!(st.closed.insert(conn), "{conn} closed twice");
            }
            Output::Event(HubEvent::LoggedIn { conn, .. }) => {
                assert!(st.online.insert(conn), "{conn} logged in twice");
            }
            Output::Event(HubEvent::LoggedOut { conn, .. }) => {
                assert!(st.online.remove(&conn), "{conn} logged out without logging in");
            }
            Output::Event(_) => {}
        }
    }
    let nicks = hub.online_nicks();
    let unique: HashSet<String> = nicks.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(unique.len(), nicks.len(), "duplicate nicks online: {nicks:?}");
    assert_eq!(nicks.len(), st.online.len());
    assert!(st.joined.is_subset(&st.online), "joined but not online");
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let start = Instant::now();
    let mut now = start;
    let cfg = HubConfig {
        max_users: 1 + (inp.u8() % 4) as usize,
        max_users_per_ip: (inp.u8() % 4) as usize,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(cfg);
    hub.set_registered("op", "pw", true);
    hub.set_registered("reg", "pw", false);
    if inp.bool() {
        hub.add_ban(Ban { nick: None, ip: Some(ip_of(2)), until: Some(now + Duration::from_secs(60)), reason: "x".into() });
    }
    let mut st = State {
        accepted: HashSet::new(),
        gone: HashSet::new(),
        closed: HashSet::new(),
        joined: HashSet::new(),
        online: HashSet::new(),
        sids: HashMap::new(),
    };
    let mut next: ConnId = 1;
    while !inp.is_empty() {
        let conn = 1 + ConnId::from(inp.u8()) % next.max(1);
        let live = st.accepted.contains(&conn) && !st.gone.contains(&conn);
        match inp.u8() % 8 {
            0 if next <= MAX_CONNS => {
                let c = next;
                next += 1;
                st.accepted.insert(c);
                hub.accept(now, c, ip_of(c), challenge(c));
            }
            1 if live => hub.handle_input(now, conn, inp.chunk()),
            2..=4 if live => {
                let me = st.sids.get(&conn).cloned();
                let line = canned(&mut inp, conn, me.as_deref());
                hub.handle_input(now, conn, format!("{line}\n").as_bytes());
            }
            5 if live => {
                hub.disconnect(conn);
                st.gone.insert(conn);
                st.joined.remove(&conn);
                // A driver forgets what the machine says about a connection it dropped:
                // its LoggedOut comes now.
                drain(&mut hub, &mut st);
            }
            6 => {
                now += Duration::from_millis(u64::from(inp.u16()) * 20);
                hub.handle_timeout(now);
            }
            7 => hub.handle_input(now, 1000 + conn, b"HSUP ADBASE ADTIGR\n"),
            _ => {}
        }
        drain(&mut hub, &mut st);
        let _ = hub.poll_timeout();
    }
    assert!(now >= start);
});
