//! Interop: omnipeer's sans-IO DHT, onion node and onion client (driven here by a small
//! blocking UDP loop) in a network of REAL c-toxcore 0.2.18 peers (tox-bootstrapd + a
//! toxbot). The bot has our long-term key as a friend (no request): it must find our
//! announcement (so our 0x83 announce with the ping_id round trip was stored by c-toxcore
//! nodes) and send us its DHT key as onion data 0x9c, which we must decrypt (0x86). We
//! in turn search the bot and must find its announcement (FriendFound, its data key).
//! Skips (and passes) when c-toxcore is not installed.

mod tox_support;

use omnipeer_tox::crypto::{KeyPair, PublicKey};
use omnipeer_tox::dht::Dht;
use omnipeer_tox::onion::OnionNode;
use omnipeer_tox::onion_client::{OnionClient, OnionEvent};
use omnipeer_tox::packet::DhtPkAnnounce;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tox_support::{Bootstrapd, Bot, BotOptions};

struct Us {
    sock: UdpSocket,
    dht: Dht,
    onion: OnionNode,
    client: OnionClient,
    events: Vec<OnionEvent>,
}

impl Us {
    fn step(&mut self) {
        let mut buf = [0u8; 4096];
        if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            let now = Instant::now();
            let d = &buf[..n];
            let _ = match d[0] {
                0x00 | 0x01 | 0x02 | 0x04 | 0x20 | 0x21 => self.dht.handle_packet(now, from, d).map_err(|e| e.to_string()),
                0x84 | 0x86 => self.client.handle_packet(now, from, d, &self.dht).map_err(|e| e.to_string()),
                0x80..=0x83 | 0x85 | 0x8c..=0x8e => self.onion.handle_packet(now, from, d, &self.dht).map_err(|e| e.to_string()),
                _ => Ok(()),
            };
        }
        let now = Instant::now();
        self.dht.tick(now);
        self.onion.tick(now);
        self.client.tick(now, &self.dht);
        while self.dht.poll_event().is_some() {}
        while self.onion.poll_event().is_some() {}
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
        let out: Vec<(SocketAddr, Vec<u8>)> = std::iter::from_fn(|| {
            self.dht.poll_transmit().or_else(|| self.onion.poll_transmit()).or_else(|| self.client.poll_transmit())
        })
        .collect();
        for (to, p) in out {
            let _ = self.sock.send_to(&p, to);
        }
    }
}

#[test]
fn our_onion_client_and_c_toxcore_find_each_other() {
    if !tox_support::require("our_onion_client_and_c_toxcore_find_each_other") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let real = KeyPair::generate();
    let bot = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).friend(&real.pk.to_hex()).timeout_secs(100));
    let bot_pk = PublicKey::from_hex(&bot.public_key()).unwrap();
    let bot_dht = PublicKey::from_hex(&bot.dht_key()).unwrap();

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let now = Instant::now();
    let dk = KeyPair::generate();
    let mut us = Us {
        sock,
        dht: Dht::new(dk.clone(), now),
        onion: OnionNode::new(dk, now),
        client: OnionClient::new(real, now),
        events: Vec::new(),
    };
    us.dht.bootstrap(format!("127.0.0.1:{}", bsd.port).parse().unwrap(), PublicKey::from_hex(&bsd.pk).unwrap(), now);
    us.client.add_friend(bot_pk);

    let end = Instant::now() + Duration::from_secs(90);
    let mut got_dht_pk = None;
    while Instant::now() < end {
        us.step();
        got_dht_pk = us.events.iter().find_map(|e| match e {
            OnionEvent::Data { from_real_pk, data } if *from_real_pk == bot_pk && data.first() == Some(&0x9c) => {
                DhtPkAnnounce::decode(data).ok().map(|a| a.dht_pk)
            }
            _ => None,
        });
        if got_dht_pk.is_some() && us.events.contains(&OnionEvent::FriendFound { real_pk: bot_pk }) {
            break;
        }
    }
    let ctx = format!("events: {:?}\n{}\n{}", us.events, bot.log(), bsd.proc.log());
    assert!(us.events.contains(&OnionEvent::Announced), "never announced\n{ctx}");
    assert!(us.events.contains(&OnionEvent::FriendFound { real_pk: bot_pk }), "bot's announcement not found\n{ctx}");
    assert_eq!(got_dht_pk, Some(bot_dht), "no DHT-PK packet from the bot through the onion\n{ctx}");
}
