//! `omnipeer_tox::messenger` on arbitrary input: Messenger/friend_connection packet
//! decoding, friend request payloads, and a Messenger fed the input as lossless packets
//! from a friend (before and after ONLINE) and as onion friend requests.
//!
//! Checked: nothing panics; decoded packets re-encode to packets that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::crypto::{KeyPair, SecretKey};
use omnipeer_tox::messenger::*;
use omnipeer_tox::net_crypto::{NetCrypto, NetCryptoEvent};
use omnipeer_tox::toxid::NoSpam;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = MessengerPacket::decode(data) {
        assert_eq!(MessengerPacket::decode(&p.encode()), Ok(p));
    }
    if let Ok((k, ns, msg)) = decode_friend_request(data) {
        let mut v = vec![k];
        v.extend_from_slice(&ns.0);
        v.extend_from_slice(msg);
        assert_eq!(v, data);
    }
    let now = Instant::now();
    let (real, dht) = (KeyPair::from_secret(SecretKey([1; 32])), KeyPair::from_secret(SecretKey([2; 32])));
    let mut nc = NetCrypto::new(real, dht, [3; 32], now);
    let mut m = Messenger::new("fuzz", NoSpam([1, 2, 3, 4]));
    let friend = KeyPair::from_secret(SecretKey([4; 32])).pk;
    m.add_friend(now, friend, &mut nc);
    let _ = m.handle_onion_friend_request(KeyPair::from_secret(SecretKey([5; 32])).pk, data);
    for (i, chunk) in data.split(|&b| b == 0xff).enumerate() {
        if i == 1 {
            m.handle_net_crypto_event(now, &NetCryptoEvent::Lossless { peer: friend, data: vec![0x18] }, &mut nc);
        }
        m.handle_net_crypto_event(now, &NetCryptoEvent::Lossless { peer: friend, data: chunk.to_vec() }, &mut nc);
        m.handle_net_crypto_event(
            now,
            &NetCryptoEvent::Delivered { peer: friend, buffer_start: chunk.len() as u32 },
            &mut nc,
        );
    }
    m.tick(now, &mut nc);
    while m.poll_event().is_some() {}
});
