//! Interop: omnipeer's sans-IO DHT, onion node and onion client (driven here by a small
//! blocking UDP loop) in a network of REAL c-toxcore 0.2.18 peers (tox-bootstrapd + a
//! toxbot). The bot has our long-term key as a friend (no request): it must find our
//! announcement (so our 0x83 announce with the ping_id round trip was stored by c-toxcore
//! nodes) and send us its DHT key as onion data 0x9c, which we must decrypt (0x86). We
//! in turn search the bot and must find its announcement (FriendFound, its data key).
//! Then we send our DHT-PK to the bot through the onion (0x85 → 0x86, decrypted by
//! c-toxcore), look its DHT key up (DhtEvent::Found with its address) and receive its
//! DHT-PK as a routed DHT request 0x20 (DhtEvent::Request) or — when it already has a
//! direct route to us, in which case c-toxcore does not route 0x20 — a cookie request
//! boxed to our DHT key: both only possible once it has our DHT key from our onion data.
//! Skips (and passes) when c-toxcore is not installed.

mod tox_support;

use omnipeer_node::tox::{new_keypair, os_seed};
use omnipeer_tox::crypto::{PublicKey, SharedKey};
use omnipeer_tox::dht::{Dht, DhtEvent};
use omnipeer_tox::onion::OnionNode;
use omnipeer_tox::onion_client::{OnionClient, OnionEvent};
use omnipeer_tox::packet::{DhtPacket, DhtPkAnnounce};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tox_support::{Bootstrapd, Bot, BotOptions};

struct Us {
    sock: UdpSocket,
    dht: Dht,
    onion: OnionNode,
    client: OnionClient,
    events: Vec<OnionEvent>,
    dht_events: Vec<DhtEvent>,
    /// (source, first byte) → count, for failure messages.
    seen: std::collections::BTreeMap<(SocketAddr, u8), u32>,
    /// Senders of cookie requests (0x18) boxed to our DHT key: they know our DHT key.
    cookie_from: Vec<PublicKey>,
}

impl Us {
    fn step(&mut self) {
        let mut buf = [0u8; 4096];
        if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            let now = Instant::now();
            let d = &buf[..n];
            *self.seen.entry((from, d[0])).or_default() += 1;
            let _ = match d[0] {
                0x00 | 0x01 | 0x02 | 0x04 | 0x20 | 0x21 => {
                    self.dht.handle_packet(now, from, d).map_err(|e| e.to_string())
                }
                0x84 | 0x86 => self.client.handle_packet(now, from, d, &self.dht).map_err(|e| e.to_string()),
                0x18 => {
                    if let Ok(p) = DhtPacket::parse(d) {
                        let k = SharedKey::precompute(&p.sender, &self.dht.keys().sk);
                        if p.open(&k).is_ok() && !self.cookie_from.contains(&p.sender) {
                            self.cookie_from.push(p.sender);
                        }
                    }
                    Ok(())
                }
                0x80..=0x83 | 0x85 | 0x8c..=0x8e => {
                    self.onion.handle_packet(now, from, d, &self.dht).map_err(|e| e.to_string())
                }
                _ => Ok(()),
            };
        }
        let now = Instant::now();
        self.dht.tick(now);
        self.onion.tick(now);
        self.client.tick(now, &self.dht);
        while let Some(e) = self.dht.poll_event() {
            self.dht_events.push(e);
        }
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
    // Two more c-toxcore nodes: c-toxcore routes a DHT request 0x20 to a friend only when
    // at least 2 nodes report the friend's address (DHT.c route_to_friend).
    let bsd2 = Bootstrapd::start(&[(bsd.port, bsd.pk.clone())]);
    let bsd3 = Bootstrapd::start(&[(bsd.port, bsd.pk.clone())]);
    // Keys and generator seeds from the OS, as the node's drivers make them.
    let real = new_keypair();
    let bot = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).friend(&real.pk.to_hex()).timeout_secs(100));
    let bot_pk = PublicKey::from_hex(&bot.public_key()).unwrap();
    let bot_dht = PublicKey::from_hex(&bot.dht_key()).unwrap();

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let now = Instant::now();
    let dk = new_keypair();
    let mut us = Us {
        sock,
        dht: Dht::new(dk.clone(), os_seed(), now),
        onion: OnionNode::new(dk, os_seed(), now),
        client: OnionClient::new(real, os_seed(), now),
        events: Vec::new(),
        dht_events: Vec::new(),
        seen: Default::default(),
        cookie_from: Vec::new(),
    };
    us.dht.bootstrap(format!("127.0.0.1:{}", bsd.port).parse().unwrap(), PublicKey::from_hex(&bsd.pk).unwrap(), now);
    us.client.add_friend(now, bot_pk);

    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(90);
    let mut got_dht_pk = None;
    let mut seen = 0;
    while Instant::now() < end {
        us.step();
        for e in &us.events[seen..] {
            let what = match e {
                OnionEvent::Announced => "announced".to_string(),
                OnionEvent::FriendFound { .. } => "found the bot's announcement".to_string(),
                OnionEvent::Data { data, .. } => {
                    format!("onion data {:#04x} from the bot", data.first().copied().unwrap_or(0))
                }
            };
            eprintln!("{:>6} ms: {what}", t0.elapsed().as_millis());
        }
        seen = us.events.len();
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

    // Now tell the bot our DHT key through the onion (0x85 → 0x86 at the bot), and look
    // its DHT key up in the DHT: we must find its address, and the bot, knowing our DHT
    // key, sends its DHT-PK as a DHT request 0x20 that reaches us (directly or routed).
    let ours = DhtPkAnnounce { no_replay: 1, dht_pk: us.dht.pk(), nodes: us.dht.closest_nodes(&us.dht.pk(), 2) };
    let mut copies = 0;
    let bot_addr: SocketAddr = format!("127.0.0.1:{}", bot.port).parse().unwrap();
    us.dht.add_search(Instant::now(), bot_dht);
    let end = Instant::now() + Duration::from_secs(60);
    let mut last_send = Instant::now() - Duration::from_secs(10);
    let dht_request = |us: &Us| {
        us.dht_events
            .iter()
            .any(|e| matches!(e, DhtEvent::Request { from, data } if *from == bot_dht && data.first() == Some(&0x9c)))
    };
    let done = |us: &Us| {
        us.dht_events.contains(&DhtEvent::Found { pk: bot_dht, addr: bot_addr })
            && (dht_request(us) || us.cookie_from.contains(&bot_dht))
    };
    while Instant::now() < end && !done(&us) {
        if last_send.elapsed() >= Duration::from_secs(5) {
            copies += us.client.send_data(Instant::now(), &bot_pk, &ours.encode());
            last_send = Instant::now();
        }
        us.step();
    }
    let ctx = format!(
        "dht events: {:?}\nreceived (from, kind) -> count: {:?}\nbot {bot_addr}, bsd {} {} {}\n{}",
        us.dht_events.iter().filter(|e| matches!(e, DhtEvent::Request { .. })).collect::<Vec<_>>(),
        us.seen,
        bsd.port,
        bsd2.port,
        bsd3.port,
        bot.log()
    );
    assert!(copies > 0, "no onion path to the bot\n{ctx}");
    assert!(us.dht_events.contains(&DhtEvent::Found { pk: bot_dht, addr: bot_addr }), "bot's DHT key not found\n{ctx}");
    // c-toxcore learnt our DHT key from our onion data: it sends its DHT-PK as a DHT
    // request 0x20 while it has no direct route to us (DHT.c route_to_friend gives up
    // when the friend is directly connected), and cookie requests boxed to our DHT key
    // once it has our address. Either proves it; which one comes first is a race.
    eprintln!(
        "DHT request 0x9c from the bot: {}; cookie request from the bot: {}",
        dht_request(&us),
        us.cookie_from.contains(&bot_dht)
    );
    assert!(dht_request(&us) || us.cookie_from.contains(&bot_dht), "the bot never used our DHT key\n{ctx}");
}
