//! Tox DHT: packets handled per second by omnipeer's sans-IO DHT node (`Dht`), against
//! the raw crypto each packet needs, measured in the same run.
//!
//! A DHT node that knows 32 live nodes (a simulated network bootstrapped off it) is fed
//! ping requests and nodes requests built beforehand by SENDERS simulated senders (each
//! its own key pair); every reply and probe it emits is drained (and counted). Two runs:
//! - warm: every sender already seen (its shared key is cached): baseline = one box open
//!   (XSalsa20-Poly1305, precomputed key) per packet;
//! - cold: every packet from a new sender: baseline = one X25519 precompute + box open.
//!
//! Usage: `cargo run --release -p omnipeer-bench --bin tox-dht -- [PACKETS] [SENDERS]`
//! (defaults: 200000 packets, 2000 senders).

use omnipeer_tox::crypto::{child_seed, random_nonce, seeded_rng, KeyPair, SharedKey, ToxRng};
use omnipeer_tox::dht::Dht;
use omnipeer_tox::packet::{kind, DhtPacket, NodesRequestPlain, PingPlain};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 33445))
}

/// A DHT node with `n` live peers in its lists (an in-memory network run for 20 s of
/// simulated time).
fn populated_server(n: usize, now: Instant, rng: &mut ToxRng) -> (Dht, Instant) {
    let mut server = Dht::new(KeyPair::generate(rng), child_seed(rng), now);
    let server_addr = addr(0);
    let mut peers: Vec<Dht> = (0..n).map(|_| Dht::new(KeyPair::generate(rng), child_seed(rng), now)).collect();
    for p in peers.iter_mut() {
        p.bootstrap(server_addr, server.pk(), now);
    }
    let mut t = now;
    for _ in 0..80 {
        t += Duration::from_millis(250);
        server.tick(t);
        for p in peers.iter_mut() {
            p.tick(t);
        }
        for _ in 0..50 {
            let mut q: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
            while let Some((to, pk)) = server.poll_transmit() {
                q.push((server_addr, to, pk));
            }
            for (i, p) in peers.iter_mut().enumerate() {
                while let Some((to, pk)) = p.poll_transmit() {
                    q.push((addr(i + 1), to, pk));
                }
            }
            if q.is_empty() {
                break;
            }
            for (from, to, pkt) in q {
                if to == server_addr {
                    let _ = server.handle_packet(t, from, &pkt);
                } else if let Some(j) = (1..=n).find(|j| addr(*j) == to) {
                    let _ = peers[j - 1].handle_packet(t, from, &pkt);
                }
            }
        }
    }
    while server.poll_event().is_some() {}
    (server, t)
}

/// Ping and nodes requests (alternating) from `senders` keys, `count` in all.
fn build_packets(server: &Dht, senders: &[KeyPair], count: usize, rng: &mut ToxRng) -> Vec<(SocketAddr, Vec<u8>)> {
    let keys: Vec<SharedKey> = senders.iter().map(|s| SharedKey::precompute(&server.pk(), &s.sk)).collect();
    (0..count)
        .map(|i| {
            let s = i % senders.len();
            let pkt = if i % 2 == 0 {
                let plain = PingPlain { response: false, id: i as u64 }.encode();
                DhtPacket::build(kind::PING_REQUEST, &senders[s].pk, &keys[s], &random_nonce(rng), &plain)
            } else {
                let plain =
                    NodesRequestPlain { searched: senders[(s + 1) % senders.len()].pk, sendback: i as u64 }.encode();
                DhtPacket::build(kind::NODES_REQUEST, &senders[s].pk, &keys[s], &random_nonce(rng), &plain)
            };
            (addr(1000 + s), pkt)
        })
        .collect()
}

/// Feeds the packets; returns (seconds, replies emitted).
fn run(server: &mut Dht, now: Instant, packets: &[(SocketAddr, Vec<u8>)]) -> (f64, usize) {
    let mut out = 0usize;
    let t0 = Instant::now();
    for (from, p) in packets {
        server.handle_packet(now, *from, p).expect("valid packet");
        while server.poll_transmit().is_some() {
            out += 1;
        }
    }
    (t0.elapsed().as_secs_f64(), out)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let nsenders: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let start = Instant::now();
    // One fixed seed for keys, nonces and the nodes' generators: every run of the bench
    // simulates the same network and feeds the same packets.
    let mut rng = seeded_rng(1);
    let (mut server, now) = populated_server(32, start, &mut rng);
    let known = server.good_node_count();

    // warm: senders seen before (shared keys cached; at most the cache size)
    let warm_senders: Vec<KeyPair> =
        (0..nsenders.min(omnipeer_tox::dht::MAX_SHARED_KEYS)).map(|_| KeyPair::generate(&mut rng)).collect();
    let warmup = build_packets(&server, &warm_senders, warm_senders.len(), &mut rng);
    run(&mut server, now, &warmup);
    let packets = build_packets(&server, &warm_senders, count, &mut rng);
    let (warm_s, warm_out) = run(&mut server, now, &packets);

    // baseline for warm: one box open per packet with a precomputed key
    let keys: Vec<SharedKey> = warm_senders.iter().map(|s| SharedKey::precompute(&server.pk(), &s.sk)).collect();
    let t0 = Instant::now();
    let mut opened = 0usize;
    for (i, (_, p)) in packets.iter().enumerate() {
        let d = DhtPacket::parse(p)?;
        if d.open(&keys[i % keys.len()]).is_ok() {
            opened += 1;
        }
    }
    let base_warm = t0.elapsed().as_secs_f64();
    assert_eq!(opened, packets.len());

    // cold: every packet from a new sender
    let cold_n = (count / 10).max(1000);
    let cold_senders: Vec<KeyPair> = (0..cold_n).map(|_| KeyPair::generate(&mut rng)).collect();
    let (mut fresh, fnow) = populated_server(32, start, &mut rng);
    let cold = build_packets(&fresh, &cold_senders, cold_n, &mut rng);
    let (cold_s, cold_out) = run(&mut fresh, fnow, &cold);
    let t0 = Instant::now();
    for (i, (_, p)) in cold.iter().enumerate() {
        let d = DhtPacket::parse(p)?;
        let k = SharedKey::precompute(&d.sender, &fresh.keys().sk);
        assert!(d.open(&k).is_ok(), "packet {i}");
    }
    let base_cold = t0.elapsed().as_secs_f64();

    let rate = |n: usize, s: f64| n as f64 / s;
    println!("tox-dht: omnipeer Dht::handle_packet, ping + nodes requests, node knows {known} nodes");
    println!(
        "  warm ({} senders, {count} packets): {:.0} packets/s ({:.2} replies+probes per packet); baseline box open {:.0}/s; ratio {:.3}",
        warm_senders.len(),
        rate(count, warm_s),
        warm_out as f64 / count as f64,
        rate(count, base_warm),
        warm_s / base_warm
    );
    println!(
        "  cold ({cold_n} new senders, 1 packet each): {:.0} packets/s ({:.2} replies+probes per packet); baseline precompute+open {:.0}/s; ratio {:.3}",
        rate(cold_n, cold_s),
        cold_out as f64 / cold_n as f64,
        rate(cold_n, base_cold),
        cold_s / base_cold
    );
    println!("  (ratio = time of the DHT machine / time of the baseline crypto; replies are encrypted too)");
    Ok(())
}
