//! The client side of TCP relays for [`ToxClient`](super::client::ToxClient)
//! (docs/protocols/tox.md#tcp-relays): connections to the relays friends name in their
//! DHT-PK packets, and net_crypto packets to such a friend carried over the relay (OOB
//! until the relay connects the route, then routed data). The machine sees the friend at a
//! pseudo address in the discard prefix `100::/64` (RFC 6666), one per (relay, friend DHT
//! key); packets to it go to the relay, packets from the relay come from it.

use omnipeer_tox::crypto::{KeyPair, PublicKey};
use omnipeer_tox::tcp_relay::{ClientEvent, TcpRelayClient};
use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Relays connected at most (c-toxcore keeps a handful too).
pub const MAX_RELAYS: usize = 8;
/// Frames queued per relay socket; a relay that does not read them is dropped.
pub const RELAY_WRITE_QUEUE: usize = 1024;
/// Routes (friends through relays) at most.
pub const MAX_ROUTES: usize = 1024;

struct Conn {
    client: TcpRelayClient,
    tx: mpsc::Sender<Vec<u8>>,
    task: tokio::task::AbortHandle,
    /// connection id → friend DHT key, from routing responses.
    ids: HashMap<u8, PublicKey>,
    /// friend DHT key → connection id, while the relay says it is online.
    online: HashMap<PublicKey, u8>,
}

/// Every relay connection of one client.
pub struct Relays {
    keys: KeyPair,
    conns: HashMap<PublicKey, Conn>,
    rx: mpsc::Receiver<(PublicKey, Option<Vec<u8>>)>,
    rtx: mpsc::Sender<(PublicKey, Option<Vec<u8>>)>,
    /// pseudo address ↔ (relay key, friend DHT key).
    routes: HashMap<SocketAddr, (PublicKey, PublicKey)>,
    by_route: HashMap<(PublicKey, PublicKey), SocketAddr>,
}

/// Is `a` one of our relay pseudo addresses?
pub fn is_relay_addr(a: &SocketAddr) -> bool {
    matches!(a, SocketAddr::V6(v) if v.ip().segments()[..4] == [0x100, 0, 0, 0])
}

impl Relays {
    /// `keys`: our DHT key pair (relays know clients by it).
    pub fn new(keys: KeyPair) -> Self {
        let (rtx, rx) = mpsc::channel(1024);
        Relays { keys, conns: HashMap::new(), rx, rtx, routes: HashMap::new(), by_route: HashMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The pseudo address of `friend_dht` through the relay `relay` at `addr`, connecting
    /// to the relay and asking for the route when new; `None` when over the limits.
    pub fn route(
        &mut self,
        now: Instant,
        relay_addr: SocketAddr,
        relay: PublicKey,
        friend_dht: PublicKey,
    ) -> Option<SocketAddr> {
        if let Some(a) = self.by_route.get(&(relay, friend_dht)) {
            return Some(*a);
        }
        if self.routes.len() >= MAX_ROUTES {
            return None;
        }
        if !self.conns.contains_key(&relay) {
            if self.conns.len() >= MAX_RELAYS {
                return None;
            }
            self.connect(now, relay_addr, relay);
        }
        let n = self.routes.len() as u64 + 1;
        let s = [0x100, 0, 0, 0, (n >> 48) as u16, (n >> 32) as u16, (n >> 16) as u16, n as u16];
        let a = SocketAddr::new(Ipv6Addr::from(s).into(), 1);
        self.routes.insert(a, (relay, friend_dht));
        self.by_route.insert((relay, friend_dht), a);
        if let Some(c) = self.conns.get_mut(&relay) {
            c.client.routing_request(&friend_dht);
        }
        Some(a)
    }

    fn connect(&mut self, now: Instant, addr: SocketAddr, relay: PublicKey) {
        let client = TcpRelayClient::new(self.keys.clone(), relay, super::os_seed(), now);
        let (tx, mut wrx) = mpsc::channel::<Vec<u8>>(RELAY_WRITE_QUEUE);
        let rtx = self.rtx.clone();
        let task = tokio::spawn(async move {
            let stream = match tokio::time::timeout(
                omnipeer_tox::tcp_relay::HANDSHAKE_TIMEOUT,
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => s,
                _ => {
                    let _ = rtx.send((relay, None)).await;
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let (mut rd, mut wr) = stream.into_split();
            let writer = tokio::spawn(async move {
                while let Some(b) = wrx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
            });
            let mut buf = vec![0u8; 4096];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if rtx.send((relay, Some(buf[..n].to_vec()))).await.is_err() {
                            break;
                        }
                    }
                }
            }
            writer.abort();
            let _ = rtx.send((relay, None)).await;
        });
        tracing::debug!("tox: connecting to TCP relay {addr}");
        self.conns
            .insert(relay, Conn { client, tx, task: task.abort_handle(), ids: HashMap::new(), online: HashMap::new() });
    }

    /// A net_crypto packet for a pseudo address.
    pub fn send(&mut self, to: &SocketAddr, packet: &[u8]) {
        let Some((relay, dht)) = self.routes.get(to).copied() else { return };
        let Some(c) = self.conns.get_mut(&relay) else { return };
        match c.online.get(&dht) {
            Some(&id) => c.client.send_data(id, packet),
            None => c.client.oob_send(&dht, packet),
        }
    }

    /// Moves queued frames to the sockets.
    pub fn flush(&mut self) {
        let mut dead = Vec::new();
        for (k, c) in self.conns.iter_mut() {
            while let Some(f) = c.client.poll_transmit() {
                if c.tx.try_send(f).is_err() {
                    dead.push(*k);
                    break;
                }
            }
        }
        for k in dead {
            self.drop_relay(&k);
        }
    }

    fn drop_relay(&mut self, relay: &PublicKey) {
        if let Some(c) = self.conns.remove(relay) {
            c.task.abort();
            tracing::debug!("tox: TCP relay {} dropped", relay.to_hex());
        }
        let gone: Vec<SocketAddr> = self.routes.iter().filter(|(_, (r, _))| r == relay).map(|(a, _)| *a).collect();
        for a in gone {
            if let Some(k) = self.routes.remove(&a) {
                self.by_route.remove(&k);
            }
        }
    }

    /// Waits for bytes from a relay.
    pub async fn recv(&mut self) -> (PublicKey, Option<Vec<u8>>) {
        match self.rx.recv().await {
            Some(m) => m,
            None => std::future::pending().await,
        }
    }

    /// Bytes (or the end) from `relay`; returns the packets for the machine, each with its
    /// pseudo source address.
    pub fn handle(&mut self, now: Instant, relay: PublicKey, bytes: Option<Vec<u8>>) -> Vec<(SocketAddr, Vec<u8>)> {
        let Some(bytes) = bytes else {
            self.drop_relay(&relay);
            return Vec::new();
        };
        let Some(c) = self.conns.get_mut(&relay) else { return Vec::new() };
        if let Err(e) = c.client.receive(now, &bytes) {
            tracing::debug!("tox: TCP relay {}: {e}", relay.to_hex());
            self.drop_relay(&relay);
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(ev) = c.client.poll_event() {
            match ev {
                ClientEvent::Routed { pk, id: Some(id) } => {
                    c.ids.insert(id, pk);
                }
                ClientEvent::Online { id } => {
                    if let Some(pk) = c.ids.get(&id) {
                        c.online.insert(*pk, id);
                    }
                }
                ClientEvent::Offline { id } => {
                    if let Some(pk) = c.ids.get(&id) {
                        c.online.remove(pk);
                    }
                }
                ClientEvent::Data { id, data } => {
                    if let Some(a) = c.ids.get(&id).and_then(|pk| self.by_route.get(&(relay, *pk))) {
                        out.push((*a, data));
                    }
                }
                ClientEvent::Oob { from, data } => {
                    if let Some(a) = self.by_route.get(&(relay, from)) {
                        out.push((*a, data));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Pings; drops relays that stopped answering.
    pub fn tick(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (k, c) in self.conns.iter_mut() {
            if c.client.tick(now).is_err() {
                dead.push(*k);
            }
        }
        for k in dead {
            self.drop_relay(&k);
        }
    }
}
