//! `omnipeer_tox::conference` on arbitrary input: conference packet decoding, and a
//! conference machine (one conference created, one joined by invite) fed the input as
//! lossless packets from an online friend, split at 0xff bytes.
//!
//! Checked: nothing panics; decoded packets re-encode to packets that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::conference::*;
use omnipeer_tox::crypto::PublicKey;
use omnipeer_tox::messenger::MessageKind;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ConferencePacket::decode(data) {
        assert_eq!(ConferencePacket::decode(&p.encode()), Ok(p));
    }
    let now = Instant::now();
    let friend = PublicKey([4; 32]);
    let mut c = Conferences::new(PublicKey([1; 32]), PublicKey([2; 32]), "fuzz", [3; 32]);
    c.friend_online(friend, PublicKey([5; 32]));
    let own = c.create(now).unwrap();
    let _ = c.invite(own, &friend);
    let invite = ConferencePacket::Invite { group: 0, kind: TYPE_TEXT, id: [9; 32] }.encode();
    let _ = c.handle_packet(now, &friend, &invite);
    let _ = c.join(now, 1);
    for chunk in data.split(|&b| b == 0xff) {
        let _ = c.handle_packet(now, &friend, chunk);
        for n in c.list() {
            let _ = c.send_message(now, n, MessageKind::Normal, "x");
            let _ = c.peers(n);
        }
    }
    c.tick(now + Duration::from_secs(61));
    let _ = c.save();
    c.friend_offline(&friend);
    while c.poll_transmit().is_some() {}
    while c.poll_event().is_some() {}
});
