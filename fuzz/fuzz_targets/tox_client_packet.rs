//! The whole `omnipeer_tox::tox::Tox` client machine (DHT + onion node + onion client +
//! net_crypto + Messenger + friend progress) fed arbitrary UDP payloads, each chunk's
//! first byte mapped onto the packet kinds it dispatches (0x00–0x21, 0x80–0x8e, …),
//! with timers run in between.
//!
//! Checked: nothing panics; the machine keeps answering (a later tick still works).
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::crypto::{KeyPair, SecretKey};
use omnipeer_tox::tox::Tox;
use omnipeer_tox::toxid::NoSpam;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KINDS: [u8; 20] = [
    0x00, 0x01, 0x02, 0x04, 0x18, 0x19, 0x1a, 0x1b, 0x20, 0x21, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x8c, 0x8d,
    0x8e,
];

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    // Fixed keys and seed: a crash found with an input reproduces with that input.
    let real = KeyPair::from_secret(SecretKey([1; 32]));
    let mut tox = Tox::with_onion(real, NoSpam([1, 2, 3, 4]), "fuzz", 1, [2; 32], now);
    let friend = KeyPair::from_secret(SecretKey([3; 32])).pk;
    let _ = tox.add_friend(now, friend);
    tox.bootstrap(now, "10.0.0.9:33445".parse().unwrap(), KeyPair::from_secret(SecretKey([4; 32])).pk);
    let from: SocketAddr = "10.0.0.9:33445".parse().unwrap();
    let mut t = now;
    for chunk in data.split(|&b| b == 0xfd) {
        let mut p = chunk.to_vec();
        if let Some(k) = p.first_mut() {
            *k = KINDS[*k as usize % KINDS.len()];
        }
        let _ = tox.handle_packet(t, from, &p);
        t += Duration::from_millis(300);
        tox.tick(t);
        while tox.poll_transmit().is_some() {}
        while tox.poll_event().is_some() {}
    }
    tox.tick(t + Duration::from_secs(5));
});
