//! `omnipeer_tox::onion::OnionNode::handle_packet` on arbitrary input, plus the announce
//! response header parser. The input is split into packets (`[u8 len_hi][u8 len_lo][bytes]`)
//! handed to one onion node between timer ticks; packets of 354 bytes starting 0x83 may
//! store announcements, so the store is exercised too.
//!
//! Checked: nothing panics; the store never exceeds MAX_ENTRIES; nothing emitted exceeds
//! the onion packet limit plus one sendback layer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::crypto::{KeyPair, SecretKey};
use omnipeer_tox::dht::Dht;
use omnipeer_tox::onion::{build, OnionNode, MAX_ENTRIES, ONION_MAX_PACKET_SIZE, RETURN_3};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let _ = build::announce_response_header(data);
    let mut now = Instant::now();
    let k = KeyPair::from_secret(SecretKey([3; 32]));
    let dht = Dht::new(k.clone(), [1; 32], now);
    let mut node = OnionNode::new(k, [2; 32], now);
    let from: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = (usize::from(rest[0]) << 8 | usize::from(rest[1])).min(rest.len() - 2);
        let pkt = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let _ = node.handle_packet(now, from, pkt, &dht);
        now += Duration::from_secs(u64::from(len as u8 % 8));
        node.tick(now);
        assert!(node.entry_count() <= MAX_ENTRIES);
        while let Some((_, p)) = node.poll_transmit() {
            assert!(p.len() <= ONION_MAX_PACKET_SIZE + RETURN_3 + 1);
        }
        while node.poll_event().is_some() {}
    }
});
