//! `omnipeer_tox::dht::Dht::handle_packet` on arbitrary input. The input is split into
//! packets (`[u8 len][bytes]`); each is handed to a DHT node that knows a few nodes and
//! searches a key, between timer ticks. Half of the packets get a valid DHT header with
//! the fuzzer's bytes as the box, the rest go in raw.
//!
//! Checked: nothing panics; every packet the node emits is at most 2048 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::crypto::{KeyPair, PublicKey, SecretKey};
use omnipeer_tox::dht::Dht;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let me = KeyPair::from_secret(SecretKey([7; 32]));
    let mut dht = Dht::new(me, [1; 32], now);
    let peer = KeyPair::from_secret(SecretKey([8; 32]));
    let from: SocketAddr = "127.0.0.1:1000".parse().unwrap();
    dht.bootstrap(from, peer.pk, now);
    dht.add_search(now, PublicKey([9; 32]));
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (pkt, r) = tail.split_at(n);
        rest = r;
        if len & 1 == 0 && !pkt.is_empty() {
            let mut v = vec![pkt[0] % 5];
            v.extend_from_slice(&peer.pk.0);
            v.extend_from_slice(&[1u8; 24]);
            v.extend_from_slice(&pkt[1..]);
            let _ = dht.handle_packet(now, from, &v);
        } else {
            let _ = dht.handle_packet(now, from, pkt);
        }
        now += Duration::from_millis(u64::from(len) * 10);
        dht.tick(now);
        while let Some((_, p)) = dht.poll_transmit() {
            assert!(p.len() <= 2048);
        }
        while dht.poll_event().is_some() {}
    }
});
