//! Search delivery to 10,000 simulated users (issue 16): through the distributed tree
//! against straight from the server, side by side in the same run. The server is the
//! sans-IO machine itself (`omnipeer_slsk::central::Central`) in this process, fed the
//! very frames clients send; what it would write to sockets is counted from its outputs.
//!
//! Three servers, each with the same users:
//!
//! - **direct**: the tree turned off (`[slsk_server] distributed_tree = false`): every
//!   search goes to every user as FileSearch(26), as before issue 16;
//! - **tree**: every user joins the tree as Nicotine+ does (HaveNoParent, then the first
//!   PossibleParents candidate with room; at most 10 children each, Nicotine+'s ceiling);
//! - **tree, 10% silent**: one user in ten never speaks of the tree (an old client): the
//!   server still sends those theirs directly.
//!
//! For each: server bytes written per search, and the server's CPU per search (this
//! process's user + system time over at least [`MIN_SEARCHES`] searches and [`MIN_CPU`]
//! seconds, nothing else running in it), then both as ratios against direct.
//!
//! Usage: `cargo run --release -p omnipeer-bench --bin slsk-tree [USERS]` (default 10000).
//!
//! Measured 2026-12-07 on the shared 2-core machine (debug build, other builds running;
//! the ratios are what counts):
//!
//! | server | bytes sent per search | CPU per search | sent directly | branch roots | tree depth | bytes vs direct | CPU vs direct |
//! |---|---|---|---|---|---|---|---|
//! | direct | 479952 B | 5208.3 µs | 9999 | 0 | 0 | 1.0000x | 1.0000x |
//! | tree | 53 B | 4.8 µs | 0 | 1 | 4 | 0.0001x | 0.0009x |
//! | tree, 10% silent | 48048 B | 541.5 µs | 1000 | 1 | 4 | 0.1001x | 0.1040x |

mod common;

use omnipeer_slsk::central::{Central, CentralConfig, ConnId, LoginDecision, Output};
use omnipeer_slsk::framing::{FrameKind, FrameReader};
use omnipeer_slsk::server::{ServerRequest, ServerResponse};
use omnipeer_slsk::tree::{TreeConfig, PARENT_OFFER_DELAY};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Searches measured per server, at least.
const MIN_SEARCHES: usize = 256;
/// Server CPU measured per server, at least (seconds; the clock ticks in 10 ms steps).
const MIN_CPU: f64 = 2.0;
/// Children a simulated client takes (Nicotine+'s ceiling).
const CHILDREN: usize = 10;

struct Row {
    name: &'static str,
    bytes_per_search: f64,
    cpu_us_per_search: f64,
    direct: usize,
    roots: usize,
    depth: u32,
}

fn main() -> anyhow::Result<()> {
    let users: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let rows =
        [run("direct", users, false, 0)?, run("tree", users, true, 0)?, run("tree, 10% silent", users, true, 10)?];
    let base = &rows[0];
    println!();
    println!("search delivery to {users} users");
    println!("| server | bytes sent per search | CPU per search | sent directly | branch roots | tree depth | bytes vs direct | CPU vs direct |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} B | {:.1} µs | {} | {} | {} | {:.4}x | {:.4}x |",
            r.name,
            r.bytes_per_search,
            r.cpu_us_per_search,
            r.direct,
            r.roots,
            r.depth,
            r.bytes_per_search / base.bytes_per_search,
            r.cpu_us_per_search / base.cpu_us_per_search,
        );
    }
    Ok(())
}

/// Everything the server wants sent, by connection.
fn drain(c: &mut Central, now: Instant) -> HashMap<ConnId, Vec<ServerResponse>> {
    let mut inbox: HashMap<ConnId, Vec<ServerResponse>> = HashMap::new();
    while let Some(o) = c.poll_output() {
        match o {
            Output::Send { conn, data } => {
                let mut r = FrameReader::new(FrameKind::Server);
                r.push(&data);
                while let Ok(Some(f)) = r.next_frame() {
                    if let Ok(m) = ServerResponse::from_frame(&f) {
                        inbox.entry(conn).or_default().push(m);
                    }
                }
            }
            Output::Event(omnipeer_slsk::central::CentralEvent::CheckLogin { conn, .. }) => {
                c.login_result(now, conn, LoginDecision::Accept);
            }
            _ => {}
        }
    }
    inbox
}

fn send(c: &mut Central, now: Instant, conn: ConnId, req: ServerRequest) {
    c.handle_input(now, conn, &req.encode());
}

fn run(name: &'static str, users: usize, tree: bool, silent_pct: usize) -> anyhow::Result<Row> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut cfg = CentralConfig::new(t0, 1_700_000_000);
    cfg.max_registrations_per_ip_per_hour = 0;
    cfg.max_sessions_per_ip = 0;
    cfg.max_users = users + 10;
    cfg.search_burst = u32::MAX;
    cfg.tree = TreeConfig { enabled: tree, ..Default::default() };
    let mut c = Central::new(cfg);
    // Log everybody in.
    for i in 0..users {
        let conn = i as ConnId + 1;
        c.accept(now, conn, Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
        send(&mut c, now, conn, ServerRequest::login(&format!("user{i}"), "pw", 160, 3));
        drain(&mut c, now);
        send(&mut c, now, conn, ServerRequest::SetWaitPort { port: 2234, obfuscation: None });
    }
    drain(&mut c, now);
    // Join the tree one by one, as clients do: HaveNoParent, then the first candidate with
    // room once the server offers it (or a branch root when it offers nobody).
    let mut level: HashMap<String, u32> = HashMap::new();
    let mut root_of: HashMap<String, String> = HashMap::new();
    let mut children: HashMap<String, usize> = HashMap::new();
    let mut conn_of: HashMap<String, ConnId> = HashMap::new();
    let mut depth = 0;
    for i in 0..users {
        let conn = i as ConnId + 1;
        let me = format!("user{i}");
        conn_of.insert(me.clone(), conn);
        if silent_pct > 0 && i % (100 / silent_pct) == 1 {
            continue; // never speaks of the tree
        }
        send(&mut c, now, conn, ServerRequest::HaveNoParent { no_parent: true });
        send(&mut c, now, conn, ServerRequest::AcceptChildren { accept: true });
        now += PARENT_OFFER_DELAY + Duration::from_millis(1);
        c.handle_timeout(now);
        let offered = drain(&mut c, now).remove(&conn).unwrap_or_default().into_iter().find_map(|m| match m {
            ServerResponse::PossibleParents { parents } => Some(parents),
            _ => None,
        });
        let Some(parent) =
            offered.and_then(|ps| ps.into_iter().find(|p| children.get(&p.user).copied().unwrap_or(0) < CHILDREN))
        else {
            // A branch root (or the tree is off).
            level.insert(me.clone(), 0);
            root_of.insert(me.clone(), me.clone());
            continue;
        };
        let l = level[&parent.user] + 1;
        let root = root_of[&parent.user].clone();
        depth = depth.max(l);
        level.insert(me.clone(), l);
        root_of.insert(me.clone(), root.clone());
        let n = children.entry(parent.user.clone()).or_insert(0);
        *n += 1;
        if *n == CHILDREN {
            send(&mut c, now, conn_of[&parent.user], ServerRequest::AcceptChildren { accept: false });
        }
        send(&mut c, now, conn, ServerRequest::HaveNoParent { no_parent: false });
        send(&mut c, now, conn, ServerRequest::BranchRoot { root });
        send(&mut c, now, conn, ServerRequest::BranchLevel { level: l });
    }
    drain(&mut c, now);
    // Searches from leaves (the last users), measured: what the server writes, and its CPU.
    let mut bytes = 0usize;
    let mut last;
    let cpu0 = common::cpu_secs(std::process::id());
    let mut searches = 0;
    // At least MIN_SEARCHES, and at least MIN_CPU of CPU: the clock ticks in 10 ms steps.
    let cpu = loop {
        let searcher = (users - 1 - searches % 100) as ConnId + 1;
        let req = ServerRequest::FileSearch { token: searches as u32, query: "kevin macleod galway".into() };
        send(&mut c, now, searcher, req);
        searches += 1;
        let (mut roots, mut direct) = (0, 0);
        while let Some(o) = c.poll_output() {
            if let Output::Send { data, .. } = o {
                bytes += data.len();
                // The frame's code: 93 embedded (to a root), else FileSearch (direct).
                match data.get(4) {
                    Some(93) => roots += 1,
                    _ => direct += 1,
                }
            }
        }
        last = (roots, direct);
        if searches >= MIN_SEARCHES && searches % 64 == 0 {
            let cpu = common::cpu_secs(std::process::id()) - cpu0;
            if cpu >= MIN_CPU {
                break cpu;
            }
        }
    };
    let row = Row {
        name,
        bytes_per_search: bytes as f64 / searches as f64,
        cpu_us_per_search: cpu * 1e6 / searches as f64,
        roots: last.0,
        direct: last.1,
        depth,
    };
    eprintln!(
        "{name}: {:.0} B and {:.1} µs per search ({} roots, {} direct, depth {})",
        row.bytes_per_search, row.cpu_us_per_search, row.roots, row.direct, row.depth
    );
    Ok(row)
}
