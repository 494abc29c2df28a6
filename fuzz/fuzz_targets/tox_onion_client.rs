//! `omnipeer_tox::onion_client::OnionClient::handle_packet` (0x84 announce responses and
//! 0x86 onion data) on arbitrary input, with a client that has a friend and has ticked
//! once (so it has pending requests). Inputs are split into `[u8 len][bytes]` packets;
//! the first byte of each is forced to 0x84 or 0x86 half of the time.
//!
//! Checked: nothing panics; forged input never yields events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::crypto::{KeyPair, PublicKey, SecretKey};
use omnipeer_tox::dht::Dht;
use omnipeer_tox::onion_client::OnionClient;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let dht = Dht::new(KeyPair::from_secret(SecretKey([4; 32])), [4; 32], now);
    let mut c = OnionClient::new(KeyPair::from_secret(SecretKey([5; 32])), [5; 32], now);
    c.add_friend(now, PublicKey([6; 32]));
    c.tick(now, &dht);
    let from: SocketAddr = "127.0.0.1:3000".parse().unwrap();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (pkt, r) = tail.split_at(n);
        rest = r;
        let mut v = pkt.to_vec();
        if len & 1 == 1 && !v.is_empty() {
            v[0] = if len & 2 == 0 { 0x84 } else { 0x86 };
        }
        let _ = c.handle_packet(now, from, &v, &dht);
        now += Duration::from_millis(300);
        c.tick(now, &dht);
        assert!(c.poll_event().is_none());
        while c.poll_transmit().is_some() {}
    }
});
