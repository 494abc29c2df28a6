//! Tox: time from start to a friend connection, omnipeer ↔ c-toxcore against
//! c-toxcore ↔ c-toxcore, measured in the same run on loopback (UDP only).
//!
//! Each round starts a fresh tox-bootstrapd-like network: one `tox-bootstrapd`, and an
//! echo bot A (c-toxcore 0.2.18, tests/tox_support/toxbot.c) that accepts friend requests.
//! Once A has printed its Tox ID, the clock starts and an initiator befriends A:
//! - baseline: a second c-toxcore bot B (`-f A`), timed to its `FRIEND 0 CONNECTION`;
//! - omnipeer: the `Tox` client of `omnipeer tox send` (in process), timed to the
//!   `Connected` progress state (and to the receipt of its first message);
//! - omnipeer, search only: the same with the local rendezvous off. In a network this
//!   small every node is one of A's announce nodes, so our own onion node hears A ask to
//!   be announced and we reach A at once; this variant shows the time when only the
//!   onion search finds A (as on the public network, where we are rarely A's node).
//!
//! Needs gcc, pkg-config, libtoxcore-dev and toxcore-utils (scripts/install-test-deps.sh).
//! Usage: `cargo run --release -p omnipeer-bench --bin tox-connect -- [ROUNDS]` (default 3).

#[path = "../tox_bots.rs"]
mod tox_bots;

use anyhow::anyhow;
use omnipeer_node::tox::client::{load_profile, onion_rendezvous, ToxClient};
use omnipeer_tox::friend::Progress;
use omnipeer_tox::messenger::MessageKind;
use omnipeer_tox::tox::ToxEvent;
use omnipeer_tox::toxid::ToxId;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tox_bots::{bot, build_bot, start_bootstrapd, Proc};

/// The bots' own give-up time (toxbot's `-t`), in seconds.
const BOT_TIMEOUT: u32 = 100;
const LIMIT: Duration = Duration::from_secs(90);

/// A bootstrapd and an echo bot; returns them, the bot's Tox ID and the node spec.
fn network(bin: &Path, dir: &Path) -> anyhow::Result<(Proc, Proc, String, String)> {
    let (bsd, spec) = start_bootstrapd(dir)?;
    let mut a = bot(bin, &spec, BOT_TIMEOUT, &[])?;
    let (_, id) = a.wait(Duration::from_secs(10), |l| l.strip_prefix("TOXID ").map(str::to_owned))?;
    Ok((bsd, a, id, spec))
}

fn c_toxcore_round(bin: &Path, dir: &Path) -> anyhow::Result<Duration> {
    let (_bsd, _a, id, spec) = network(bin, dir)?;
    let t0 = Instant::now();
    let mut b = bot(bin, &spec, BOT_TIMEOUT, &["-f", &id, "-m", "bench"])?;
    let (at, _) = b.wait(LIMIT, |l| l.starts_with("FRIEND 0 CONNECTION ").then_some(()))?;
    Ok(at - t0)
}

/// (connected, receipt, friend first found at a rendezvous node) after start.
fn omnipeer_round(
    bin: &Path,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    local_rendezvous: bool,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let (_bsd, _a, id, spec) = network(bin, dir)?;
    let nodes = omnipeer_node::tox::parse_node_specs(&spec)?;
    let to: ToxId = id.parse().map_err(|e| anyhow!("{e}"))?;
    let profile = dir.join(format!("omni-{}.tox", std::process::id()));
    let _ = std::fs::remove_file(&profile);
    rt.block_on(async {
        let t0 = Instant::now();
        let p = load_profile(&profile)?;
        let mut c = ToxClient::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &p, onion_rendezvous(&p)).await?;
        c.bootstrap(&nodes);
        c.tox().set_local_rendezvous(local_rendezvous);
        c.tox().send_friend_request(Instant::now(), &to, "bench")?;
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut connected = None;
        let mut receipt = None;
        let mut found = None;
        loop {
            let ev = c.next_event(Some(deadline)).await.ok_or_else(|| anyhow!("omnipeer: no connection in time"))?;
            match ev {
                ToxEvent::Progress { progress: Progress::Connected, .. } if connected.is_none() => {
                    connected = Some(t0.elapsed())
                }
                ToxEvent::FriendOnline { friend } if receipt.is_none() => {
                    receipt = Some(c.tox().send_message(Instant::now(), &friend, MessageKind::Normal, "bench")?);
                }
                ToxEvent::FriendFound { .. } if found.is_none() => found = Some(t0.elapsed()),
                ToxEvent::Receipt { receipt: r, .. } if Some(r) == receipt => {
                    return Ok((connected.unwrap_or_default(), t0.elapsed(), found.unwrap_or_default()));
                }
                _ => {}
            }
        }
    })
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let bin = build_bot(dir.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (mut base, mut omni, mut omni_rcpt, mut omni_found) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut search, mut search_found) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let d = tempfile::tempdir()?;
        let c = c_toxcore_round(&bin, d.path())?;
        let d = tempfile::tempdir()?;
        let (o, rc, found) = omnipeer_round(&bin, d.path(), &rt, true)?;
        let d = tempfile::tempdir()?;
        let (s, _, sfound) = omnipeer_round(&bin, d.path(), &rt, false)?;
        println!(
            "round {}: c-toxcore<->c-toxcore {:.2} s, omnipeer<->c-toxcore {:.2} s (receipt {:.2} s; \
             the c-toxcore bot was found at {:.2} s), search only {:.2} s (found at {:.2} s)",
            r + 1,
            c.as_secs_f64(),
            o.as_secs_f64(),
            rc.as_secs_f64(),
            found.as_secs_f64(),
            s.as_secs_f64(),
            sfound.as_secs_f64()
        );
        search.push(s.as_secs_f64());
        search_found.push(sfound.as_secs_f64());
        omni_found.push(found.as_secs_f64());
        base.push(c.as_secs_f64());
        omni.push(o.as_secs_f64());
        omni_rcpt.push(rc.as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (b, o, rc, f) = (median(&mut base), median(&mut omni), median(&mut omni_rcpt), median(&mut omni_found));
    println!("start -> friend connection (median of {rounds}):");
    println!("  c-toxcore <-> c-toxcore  {b:.2} s");
    let (s, sf) = (median(&mut search), median(&mut search_found));
    println!("  omnipeer  <-> c-toxcore  {o:.2} s   (first receipt {rc:.2} s; bot found at {f:.2} s)");
    println!(
        "  omnipeer, search only    {s:.2} s   (bot found at {sf:.2} s: its announcement stored, seen by our search)"
    );
    println!("  ratio (c-toxcore / omnipeer): {:.2}x; search only {:.2}x", b / o, b / s);
    Ok(())
}
