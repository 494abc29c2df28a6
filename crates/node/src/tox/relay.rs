//! The client side of TCP relays for [`ToxClient`](super::client::ToxClient)
//! (docs/protocols/tox.md#tcp-relays): connections to the relays friends name in their
//! DHT-PK packets, and net_crypto packets to such a friend carried over the relay (OOB
//! until the relay connects the route, then routed data). The machine sees the friend at a
//! pseudo address in the discard prefix `100::/64` (RFC 6666), one per (relay, friend DHT
//! key); packets to it go to the relay, packets from the relay come from it.
//!
//! Also our **own** relays ([`Transport`]): when UDP is off, or no DHT node has answered
//! over UDP [`UDP_FALLBACK`] after the start, the client keeps [`OWN_RELAYS`] connections
//! to the relays it was given (`--tcp-relay`, `[tox].tcp_relays`) and to its bootstrap
//! nodes' TCP ports (as c-toxcore clients add their bootstrap nodes as relays); its onion
//! requests go through them (packets 8/9), they are listed in its DHT-PK packets, and a
//! friend reaching us through one (OOB, then a route) is answered there.

use omnipeer_tox::crypto::{KeyPair, PublicKey};
use omnipeer_tox::packet::PackedNode;
use omnipeer_tox::tcp_relay::{ClientEvent, TcpRelayClient};
use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Relays connected at most (c-toxcore keeps a handful too).
pub const MAX_RELAYS: usize = 8;
/// Frames queued per relay socket; a relay that does not read them is dropped.
pub const RELAY_WRITE_QUEUE: usize = 1024;
/// Routes (friends through relays) at most.
pub const MAX_ROUTES: usize = 1024;
/// Our own relays kept connected (c-toxcore keeps 3 for its onion and friends).
pub const OWN_RELAYS: usize = 3;
/// With UDP on, our own relays are connected when no DHT node has answered over UDP this
/// long after the start.
pub const UDP_FALLBACK: Duration = Duration::from_secs(5);
/// A relay of ours that failed (refused, timed out, dropped) is tried again after this.
pub const RELAY_RETRY: Duration = Duration::from_secs(10);
/// Frames (sealed or queued for the socket) above which net_crypto packets to a relay are
/// dropped rather than queued, as c-toxcore's client does when its TCP buffer is full:
/// net_crypto sees them lost and its congestion window shrinks; the rest of the queue is
/// kept for pings, routing and onion packets. It must hold a whole window sent at once (a
/// c-toxcore receiver acknowledges every 50 ms or so, and each acknowledgement lets a
/// window go): at 64 the window never passed ~70 packets and 50 MiB went at 0.75 MiB/s;
/// at 512, 3.5 MiB/s, as fast as two c-toxcore peers through the same relay.
pub const RELAY_DATA_HIGH_WATER: usize = 512;
/// Largest read from a relay socket handed to the client at once (4 KiB would be three
/// frames a read, each its own message to the driver; 50 MiB from c-toxcore through
/// tox-bootstrapd's relay took 62 s with it, 20 s with 64 KiB, one run each on the loaded
/// build machine).
pub const RELAY_READ_BUF: usize = 64 * 1024;
/// Send buffer asked of the kernel for a relay socket (bytes): what the kernel queues
/// beyond our own queue is delay that net_crypto cannot see.
pub const RELAY_SEND_BUFFER: u32 = 64 * 1024;

/// Connects with a [`RELAY_SEND_BUFFER`] send buffer.
async fn connect_small(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    let _ = sock.set_send_buffer_size(RELAY_SEND_BUFFER);
    sock.connect(addr).await
}

/// How a client reaches the network: UDP (on unless switched off) and TCP relays of its
/// own (`HOST:PORT:KEY`; the bootstrap nodes are added at their TCP port too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// `--no-udp` / `[tox].udp = false` clear it (as c-toxcore's udp_enabled).
    pub udp: bool,
    /// `--tcp-relay` / `[tox].tcp_relays`.
    pub tcp_relays: Vec<(SocketAddr, PublicKey)>,
}

impl Default for Transport {
    fn default() -> Self {
        Transport { udp: true, tcp_relays: Vec::new() }
    }
}

static DEFAULT_TRANSPORT: Mutex<Option<Transport>> = Mutex::new(None);

/// The transport every [`ToxClient`](super::client::ToxClient) bound after this call starts
/// with (the CLI's `--no-udp` / `--tcp-relay`).
pub fn set_default_transport(t: Transport) {
    *DEFAULT_TRANSPORT.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
}

pub fn default_transport() -> Transport {
    DEFAULT_TRANSPORT.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
}

struct Conn {
    client: TcpRelayClient,
    addr: SocketAddr,
    /// One of our own relays (not only one a friend named).
    own: bool,
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
    /// Pseudo addresses handed out so far (never reused).
    next_route: u64,
    /// Onion responses (packet 9) not yet handed to the machine.
    onion_in: Vec<(PublicKey, Vec<u8>)>,
    /// The set of connected relays changed since [`take_changed`](Self::take_changed).
    changed: bool,
    /// Own relays that failed, and when they may be tried again.
    retry: HashMap<PublicKey, Instant>,
}

/// Is `a` one of our relay pseudo addresses?
pub fn is_relay_addr(a: &SocketAddr) -> bool {
    matches!(a, SocketAddr::V6(v) if v.ip().segments()[..4] == [0x100, 0, 0, 0])
}

impl Relays {
    /// `keys`: our DHT key pair (relays know clients by it).
    pub fn new(keys: KeyPair) -> Self {
        let (rtx, rx) = mpsc::channel(1024);
        Relays {
            keys,
            conns: HashMap::new(),
            rx,
            rtx,
            routes: HashMap::new(),
            by_route: HashMap::new(),
            next_route: 0,
            onion_in: Vec::new(),
            changed: false,
            retry: HashMap::new(),
        }
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
            self.connect(now, relay_addr, relay, false);
        }
        Some(self.new_route(relay, friend_dht))
    }

    fn new_route(&mut self, relay: PublicKey, friend_dht: PublicKey) -> SocketAddr {
        self.next_route += 1;
        let n = self.next_route;
        let s = [0x100, 0, 0, 0, (n >> 48) as u16, (n >> 32) as u16, (n >> 16) as u16, n as u16];
        let a = SocketAddr::new(Ipv6Addr::from(s).into(), 1);
        self.routes.insert(a, (relay, friend_dht));
        self.by_route.insert((relay, friend_dht), a);
        if let Some(c) = self.conns.get_mut(&relay) {
            c.client.routing_request(&friend_dht);
        }
        a
    }

    /// Keeps [`OWN_RELAYS`] of `candidates` connected (or connecting), skipping those that
    /// failed less than [`RELAY_RETRY`] ago.
    pub fn keep_own(&mut self, now: Instant, candidates: &[(SocketAddr, PublicKey)]) {
        self.retry.retain(|_, t| now < *t);
        for (addr, pk) in candidates {
            if self.conns.values().filter(|c| c.own).count() >= OWN_RELAYS || self.conns.len() >= MAX_RELAYS {
                return;
            }
            if let Some(c) = self.conns.get_mut(pk) {
                c.own = true;
                continue;
            }
            if self.retry.contains_key(pk) || *pk == self.keys.pk {
                continue;
            }
            self.connect(now, *addr, *pk, true);
        }
    }

    /// Relays that answered our handshake, own ones first (for our DHT-PK packets and
    /// onion paths).
    pub fn connected(&self) -> Vec<PackedNode> {
        let mut v: Vec<(bool, PackedNode)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.client.is_connected())
            .map(|(k, c)| (!c.own, PackedNode::new(c.addr, *k)))
            .collect();
        v.sort_by_key(|(not_own, n)| (*not_own, n.pk.0));
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// Whether the set of connected relays changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// An onion request (packet 8 body) through `relay`.
    pub fn onion_send(&mut self, relay: &PublicKey, data: &[u8]) {
        if let Some(c) = self.conns.get_mut(relay) {
            c.client.onion_request(data);
        }
    }

    /// Onion responses (packet 9) that arrived: `(relay, 0x84/0x86 packet)`.
    pub fn take_onion(&mut self) -> Vec<(PublicKey, Vec<u8>)> {
        std::mem::take(&mut self.onion_in)
    }

    /// Frames are waiting for room in a relay socket's queue.
    pub fn backlogged(&self) -> bool {
        self.conns.values().any(|c| c.client.queued() > 0)
    }

    fn connect(&mut self, now: Instant, addr: SocketAddr, relay: PublicKey, own: bool) {
        let client = TcpRelayClient::new(self.keys.clone(), relay, super::os_seed(), now);
        let (tx, mut wrx) = mpsc::channel::<Vec<u8>>(RELAY_WRITE_QUEUE);
        let rtx = self.rtx.clone();
        let task = tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(omnipeer_tox::tcp_relay::HANDSHAKE_TIMEOUT, connect_small(addr)).await {
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
            let mut buf = vec![0u8; RELAY_READ_BUF];
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
        self.conns.insert(
            relay,
            Conn { client, addr, own, tx, task: task.abort_handle(), ids: HashMap::new(), online: HashMap::new() },
        );
    }

    /// A net_crypto packet for a pseudo address.
    pub fn send(&mut self, to: &SocketAddr, packet: &[u8]) {
        let Some((relay, dht)) = self.routes.get(to).copied() else { return };
        let Some(c) = self.conns.get_mut(&relay) else { return };
        // Backpressure: past the high-water mark the packet is lost, not queued.
        if c.client.queued() + (RELAY_WRITE_QUEUE - c.tx.capacity()) >= RELAY_DATA_HIGH_WATER {
            return;
        }
        match c.online.get(&dht) {
            Some(&id) => c.client.send_data(id, packet),
            None => c.client.oob_send(&dht, packet),
        }
    }

    /// Moves queued frames to the sockets, as many as their queues take (the rest wait:
    /// a sealed frame cannot be dropped without breaking the stream's nonces).
    pub fn flush(&mut self) {
        for c in self.conns.values_mut() {
            while c.tx.capacity() > 0 {
                let Some(f) = c.client.poll_transmit() else { break };
                if c.tx.try_send(f).is_err() {
                    break; // closed: the reader reports the end
                }
            }
        }
    }

    fn drop_relay(&mut self, relay: &PublicKey) {
        if let Some(c) = self.conns.remove(relay) {
            c.task.abort();
            if c.own {
                self.retry.insert(*relay, Instant::now() + RELAY_RETRY);
            }
            if c.client.is_connected() {
                self.changed = true;
            }
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
        let mut strangers = Vec::new();
        while let Some(ev) = c.client.poll_event() {
            match ev {
                ClientEvent::Connected => {
                    tracing::debug!("tox: connected to TCP relay {}", c.addr);
                    self.changed = true;
                }
                ClientEvent::OnionResponse { data } => self.onion_in.push((relay, data)),
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
                    } else if matches!(data.first(), Some(0x18..=0x1a)) {
                        // A peer reaching us through our relay (it found the relay in our
                        // DHT-PK packet): a cookie request or handshake by OOB. Route it
                        // and answer; net_crypto only lets friends' handshakes through.
                        strangers.push((from, data));
                    }
                }
                _ => {}
            }
        }
        for (from, data) in strangers {
            if self.routes.len() >= MAX_ROUTES {
                break;
            }
            let a = match self.by_route.get(&(relay, from)) {
                Some(a) => *a,
                None => self.new_route(relay, from),
            };
            out.push((a, data));
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
