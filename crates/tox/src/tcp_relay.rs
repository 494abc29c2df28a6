//! TCP relays (docs/protocols/tox.md#tcp-relays), sans-IO: the relay **server** that
//! `tox-bootstrapd` runs beside its DHT node ([`TcpRelayServer`]) and the **client** side
//! of one relay connection ([`TcpRelayClient`]). Bytes read from a TCP stream go in,
//! bytes to write and events come out; the driver owns the sockets and the clock.
//!
//! Wire format, as c-toxcore 0.2.18's TCP_server / TCP_client:
//!
//! - client → server handshake (128 bytes): `[client pk 32][nonce 24][box(client sk →
//!   server pk)(temp pk 32 ‖ client's sending nonce 24)]`; server → client (96 bytes):
//!   `[nonce 24][box(server sk → client pk)(temp pk 32 ‖ server's sending nonce 24)]`. The
//!   session key is `precompute(their temp pk, our temp sk)`; each side encrypts with the
//!   nonce IT sent (+1 per packet) and decrypts with the other's.
//! - then frames: `[u16 length BE][box(session key, nonce)(plaintext)]`, `length` ≤
//!   [`MAX_PACKET_SIZE`].
//! - plaintext ids ([`id`]): 0 routing request `[pk]`, 1 routing response `[conn id][pk]`
//!   (id 0 = refused), 2 connect / 3 disconnect notification `[conn id]`, 4 ping / 5 pong
//!   `[u64]`, 6 OOB send `[dest pk][data]`, 7 OOB receive `[sender pk][data]`, 8 onion
//!   request `[nonce][IP_Port][pk][box]` (the relay is the path's first hop), 9 onion
//!   response `[response]`, 10/11 group forwarding (ignored), ≥ 16 data on a connection id.

use crate::crypto::{
    increment_nonce, random_nonce, random_u64, rng_from_seed, KeyPair, Nonce, PublicKey, RngSeed, SharedKey, ToxRng,
    MAC_SIZE, NONCE_SIZE, PUBLIC_KEY_SIZE,
};
use crate::packet::{nonce_at, pk_at, u64_at};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Plaintext of either handshake: temp pk + sending nonce.
pub const HANDSHAKE_PLAIN_SIZE: usize = PUBLIC_KEY_SIZE + NONCE_SIZE;
/// The client's handshake: 128 bytes.
pub const CLIENT_HANDSHAKE_SIZE: usize = PUBLIC_KEY_SIZE + NONCE_SIZE + MAC_SIZE + HANDSHAKE_PLAIN_SIZE;
/// The server's handshake: 96 bytes.
pub const SERVER_HANDSHAKE_SIZE: usize = NONCE_SIZE + MAC_SIZE + HANDSHAKE_PLAIN_SIZE;
/// Largest encrypted frame (the `u16` length field), c-toxcore MAX_PACKET_SIZE; a larger
/// announced length drops the connection.
pub const MAX_PACKET_SIZE: usize = 2048;
/// Connection ids below this are packet ids; routed connections use 16..=255.
pub const NUM_RESERVED_PORTS: u8 = 16;
/// Routes (other clients) one client may ask the relay for (c-toxcore NUM_CLIENT_CONNECTIONS).
pub const NUM_CLIENT_CONNECTIONS: usize = 256 - NUM_RESERVED_PORTS as usize;
/// Largest out-of-band payload relayed (c-toxcore TCP_MAX_OOB_DATA_LENGTH).
pub const MAX_OOB_DATA: usize = 1024;
/// A connection must complete its handshake and send its first packet within this
/// (c-toxcore TCP_CONNECTION_TIMEOUT).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The relay and the client ping each other this often (c-toxcore TCP_PING_FREQUENCY)…
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// …and drop the connection when the pong does not come within this (TCP_PING_TIMEOUT).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients one relay serves at once; more are refused at accept.
pub const MAX_CLIENTS: usize = 1024;
/// Smallest onion request over TCP: nonce, IP_Port, pk, and a non-empty box.
pub const ONION_REQUEST_MIN: usize = NONCE_SIZE + crate::packet::limits::IP_PORT_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE + 1;

/// Plaintext packet ids.
pub mod id {
    pub const ROUTING_REQUEST: u8 = 0;
    pub const ROUTING_RESPONSE: u8 = 1;
    pub const CONNECT_NOTIFICATION: u8 = 2;
    pub const DISCONNECT_NOTIFICATION: u8 = 3;
    pub const PING: u8 = 4;
    pub const PONG: u8 = 5;
    pub const OOB_SEND: u8 = 6;
    pub const OOB_RECV: u8 = 7;
    pub const ONION_REQUEST: u8 = 8;
    pub const ONION_RESPONSE: u8 = 9;
    pub const FORWARD_REQUEST: u8 = 10;
    pub const FORWARDING: u8 = 11;
}

/// Why a relay connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    #[error("handshake does not open")]
    Handshake,
    #[error("frame length {0} out of range")]
    FrameLength(usize),
    #[error("frame does not decrypt")]
    Decrypt,
    #[error("malformed packet {0:#04x}")]
    Malformed(u8),
    #[error("empty packet")]
    Empty,
}

/// The encrypted frame layer shared by both ends.
struct Channel {
    key: SharedKey,
    send_nonce: Nonce,
    recv_nonce: Nonce,
    inbuf: Vec<u8>,
}

impl Channel {
    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let boxed = self.key.encrypt(&self.send_nonce, plain);
        increment_nonce(&mut self.send_nonce);
        let mut v = Vec::with_capacity(2 + boxed.len());
        v.extend_from_slice(&(boxed.len() as u16).to_be_bytes());
        v.extend_from_slice(&boxed);
        v
    }

    /// Appends `bytes` and returns every complete plaintext. The buffer never holds more
    /// than one partial frame (≤ 2 + [`MAX_PACKET_SIZE`]) between calls.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TcpError> {
        self.inbuf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while self.inbuf.len() - at >= 2 {
            let len = u16::from_be_bytes([self.inbuf[at], self.inbuf[at + 1]]) as usize;
            if len <= MAC_SIZE || len > MAX_PACKET_SIZE {
                return Err(TcpError::FrameLength(len));
            }
            if self.inbuf.len() - at < 2 + len {
                break;
            }
            let plain =
                self.key.decrypt(&self.recv_nonce, &self.inbuf[at + 2..at + 2 + len]).ok_or(TcpError::Decrypt)?;
            increment_nonce(&mut self.recv_nonce);
            if plain.is_empty() {
                return Err(TcpError::Empty);
            }
            out.push(plain);
            at += 2 + len;
        }
        self.inbuf.drain(..at);
        Ok(out)
    }
}

/// A relay client's connection id on the server.
pub type ConnId = u64;

/// What the server asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput {
    /// Write these bytes to the connection.
    Send { conn: ConnId, data: Vec<u8> },
    /// Close the connection (after writing what was queued before).
    Close { conn: ConnId },
    /// An onion request from a client: `[nonce][IP_Port][pk][box]`, for the onion node
    /// (`OnionNode::handle_tcp_request`); its answer comes back through
    /// [`TcpRelayServer::onion_response`].
    OnionRequest { conn: ConnId, data: Vec<u8> },
}

#[derive(Clone, Copy)]
struct Route {
    pk: PublicKey,
    /// The other client's connection and its slot for us, once both asked.
    other: Option<(ConnId, usize)>,
}

struct ServerConn {
    handshake: Vec<u8>,
    chan: Option<Channel>,
    pk: PublicKey,
    confirmed: bool,
    deadline: Instant,
    routes: Vec<Option<Route>>,
    last_ping: Instant,
    ping_id: u64,
    /// The driver says this client's socket queue is nearly full: data routed or sent
    /// out-of-band to it is dropped (before sealing), as c-toxcore's relay drops
    /// non-priority packets it cannot write, instead of dropping the client.
    busy: bool,
}

/// The relay server (c-toxcore TCP_server).
pub struct TcpRelayServer {
    keys: KeyPair,
    rng: ToxRng,
    next_id: ConnId,
    conns: BTreeMap<ConnId, ServerConn>,
    by_pk: BTreeMap<PublicKey, ConnId>,
    out: VecDeque<ServerOutput>,
}

impl TcpRelayServer {
    /// `keys` is the relay's long-term key (tox-bootstrapd uses its DHT key for both).
    pub fn new(keys: KeyPair, rng_seed: RngSeed) -> Self {
        TcpRelayServer {
            keys,
            rng: rng_from_seed(rng_seed),
            next_id: 1,
            conns: BTreeMap::new(),
            by_pk: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    pub fn pk(&self) -> PublicKey {
        self.keys.pk
    }

    /// Clients connected (in any state).
    pub fn client_count(&self) -> usize {
        self.conns.len()
    }

    /// A new TCP connection; `None` when [`MAX_CLIENTS`] are connected (close it).
    pub fn accept(&mut self, now: Instant) -> Option<ConnId> {
        if self.conns.len() >= MAX_CLIENTS {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            ServerConn {
                handshake: Vec::new(),
                chan: None,
                pk: PublicKey([0; PUBLIC_KEY_SIZE]),
                confirmed: false,
                deadline: now + HANDSHAKE_TIMEOUT,
                routes: vec![None; NUM_CLIENT_CONNECTIONS],
                last_ping: now,
                ping_id: 0,
                busy: false,
            },
        );
        Some(id)
    }

    /// Bytes read from `conn`. A protocol error closes that connection only.
    pub fn receive(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        if self.receive_inner(now, conn, bytes).is_err() {
            self.close(conn);
        }
    }

    fn receive_inner(&mut self, now: Instant, conn: ConnId, mut bytes: &[u8]) -> Result<(), TcpError> {
        let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
        if c.chan.is_none() {
            let take = (CLIENT_HANDSHAKE_SIZE - c.handshake.len()).min(bytes.len());
            c.handshake.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if c.handshake.len() < CLIENT_HANDSHAKE_SIZE {
                return Ok(());
            }
            let hs = std::mem::take(&mut c.handshake);
            let pk = pk_at(&hs, 0).ok_or(TcpError::Handshake)?;
            let nonce = nonce_at(&hs, PUBLIC_KEY_SIZE).ok_or(TcpError::Handshake)?;
            let key = SharedKey::precompute(&pk, &self.keys.sk);
            let plain = key.decrypt(&nonce, &hs[PUBLIC_KEY_SIZE + NONCE_SIZE..]).ok_or(TcpError::Handshake)?;
            let their_temp = pk_at(&plain, 0).ok_or(TcpError::Handshake)?;
            let their_nonce = nonce_at(&plain, PUBLIC_KEY_SIZE).ok_or(TcpError::Handshake)?;
            let temp = KeyPair::generate(&mut self.rng);
            let our_nonce = random_nonce(&mut self.rng);
            let mut reply_plain = Vec::with_capacity(HANDSHAKE_PLAIN_SIZE);
            reply_plain.extend_from_slice(&temp.pk.0);
            reply_plain.extend_from_slice(&our_nonce);
            let n = random_nonce(&mut self.rng);
            let mut reply = Vec::with_capacity(SERVER_HANDSHAKE_SIZE);
            reply.extend_from_slice(&n);
            reply.extend_from_slice(&key.encrypt(&n, &reply_plain));
            c.pk = pk;
            c.chan = Some(Channel {
                key: SharedKey::precompute(&their_temp, &temp.sk),
                send_nonce: our_nonce,
                recv_nonce: their_nonce,
                inbuf: Vec::new(),
            });
            self.out.push_back(ServerOutput::Send { conn, data: reply });
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let packets =
            self.conns.get_mut(&conn).and_then(|c| c.chan.as_mut()).ok_or(TcpError::Handshake)?.feed(bytes)?;
        for p in packets {
            self.confirm(now, conn);
            self.packet(now, conn, &p)?;
            if !self.conns.contains_key(&conn) {
                break;
            }
        }
        Ok(())
    }

    /// The first packet after the handshake confirms a connection; a client already
    /// connected with the same key is replaced (c-toxcore does the same).
    fn confirm(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.confirmed {
            return;
        }
        c.confirmed = true;
        c.last_ping = now;
        let pk = c.pk;
        if let Some(old) = self.by_pk.insert(pk, conn) {
            if old != conn {
                self.close(old);
                self.by_pk.insert(pk, conn);
            }
        }
    }

    fn send(&mut self, conn: ConnId, plain: &[u8]) {
        if let Some(chan) = self.conns.get_mut(&conn).and_then(|c| c.chan.as_mut()) {
            let data = chan.seal(plain);
            self.out.push_back(ServerOutput::Send { conn, data });
        }
    }

    fn packet(&mut self, now: Instant, conn: ConnId, p: &[u8]) -> Result<(), TcpError> {
        let kind = p[0];
        match kind {
            id::ROUTING_REQUEST => {
                let pk = pk_at(p, 1).filter(|_| p.len() == 1 + PUBLIC_KEY_SIZE).ok_or(TcpError::Malformed(kind))?;
                self.routing_request(conn, pk);
            }
            id::CONNECT_NOTIFICATION | id::ROUTING_RESPONSE | id::OOB_RECV | id::ONION_RESPONSE => {
                // server → client packets; c-toxcore drops a client sending them.
                return Err(TcpError::Malformed(kind));
            }
            id::DISCONNECT_NOTIFICATION => {
                let cid = *p.get(1).filter(|_| p.len() == 2).ok_or(TcpError::Malformed(kind))?;
                if cid >= NUM_RESERVED_PORTS {
                    self.unroute(conn, (cid - NUM_RESERVED_PORTS) as usize);
                }
            }
            id::PING => {
                let ping = u64_at(p, 1).filter(|_| p.len() == 9).ok_or(TcpError::Malformed(kind))?;
                let mut r = vec![id::PONG];
                r.extend_from_slice(&ping.to_be_bytes());
                self.send(conn, &r);
            }
            id::PONG => {
                let ping = u64_at(p, 1).filter(|_| p.len() == 9).ok_or(TcpError::Malformed(kind))?;
                if let Some(c) = self.conns.get_mut(&conn) {
                    if ping != 0 && ping == c.ping_id {
                        c.ping_id = 0;
                        c.last_ping = now;
                    }
                }
            }
            id::OOB_SEND => {
                let dest = pk_at(p, 1).ok_or(TcpError::Malformed(kind))?;
                let data = &p[1 + PUBLIC_KEY_SIZE..];
                if data.is_empty() || data.len() > MAX_OOB_DATA {
                    return Err(TcpError::Malformed(kind));
                }
                let from = self.conns[&conn].pk;
                if let Some(&to) = self.by_pk.get(&dest).filter(|to| !self.conns.get(to).is_some_and(|c| c.busy)) {
                    let mut r = Vec::with_capacity(p.len());
                    r.push(id::OOB_RECV);
                    r.extend_from_slice(&from.0);
                    r.extend_from_slice(data);
                    self.send(to, &r);
                }
            }
            id::ONION_REQUEST => {
                if p.len() < 1 + ONION_REQUEST_MIN {
                    return Err(TcpError::Malformed(kind));
                }
                self.out.push_back(ServerOutput::OnionRequest { conn, data: p[1..].to_vec() });
            }
            // Group forwarding (0.2.18 announce 0x87 over TCP) and reserved ids: not served.
            id::FORWARD_REQUEST..=15 => {}
            cid => {
                let slot = (cid - NUM_RESERVED_PORTS) as usize;
                let other = self.conns.get(&conn).and_then(|c| c.routes[slot]).and_then(|r| r.other);
                if let Some((to, their_slot)) = other.filter(|(to, _)| !self.conns.get(to).is_some_and(|c| c.busy)) {
                    let mut r = Vec::with_capacity(p.len());
                    r.push(NUM_RESERVED_PORTS + their_slot as u8);
                    r.extend_from_slice(&p[1..]);
                    self.send(to, &r);
                }
            }
        }
        Ok(())
    }

    fn routing_request(&mut self, conn: ConnId, pk: PublicKey) {
        let c = &self.conns[&conn];
        let refuse = |s: &mut Self| {
            let mut r = vec![id::ROUTING_RESPONSE, 0];
            r.extend_from_slice(&pk.0);
            s.send(conn, &r);
        };
        if pk == c.pk {
            return refuse(self);
        }
        let slot = match c.routes.iter().position(|r| r.is_some_and(|r| r.pk == pk)) {
            Some(s) => s,
            None => match c.routes.iter().position(|r| r.is_none()) {
                Some(s) => s,
                None => return refuse(self),
            },
        };
        let existing = c.routes[slot].is_some();
        let our_pk = c.pk;
        let mut r = vec![id::ROUTING_RESPONSE, NUM_RESERVED_PORTS + slot as u8];
        r.extend_from_slice(&pk.0);
        self.send(conn, &r);
        if existing {
            return;
        }
        self.conns.get_mut(&conn).expect("present").routes[slot] = Some(Route { pk, other: None });
        // Both asked for each other: link and tell both.
        let Some(&other) = self.by_pk.get(&pk) else { return };
        let Some(their_slot) = self
            .conns
            .get(&other)
            .and_then(|o| o.routes.iter().position(|r| r.is_some_and(|r| r.pk == our_pk && r.other.is_none())))
        else {
            return;
        };
        if let Some(Some(r)) = self.conns.get_mut(&conn).map(|c| &mut c.routes[slot]) {
            r.other = Some((other, their_slot));
        }
        if let Some(Some(r)) = self.conns.get_mut(&other).map(|c| &mut c.routes[their_slot]) {
            r.other = Some((conn, slot));
        }
        self.send(conn, &[id::CONNECT_NOTIFICATION, NUM_RESERVED_PORTS + slot as u8]);
        self.send(other, &[id::CONNECT_NOTIFICATION, NUM_RESERVED_PORTS + their_slot as u8]);
    }

    /// Forget `conn`'s route in `slot`; the other end (if linked) is told and waits again.
    fn unroute(&mut self, conn: ConnId, slot: usize) {
        let Some(route) = self.conns.get_mut(&conn).and_then(|c| c.routes.get_mut(slot)).and_then(|r| r.take()) else {
            return;
        };
        if let Some((other, their_slot)) = route.other {
            if let Some(Some(r)) = self.conns.get_mut(&other).map(|c| &mut c.routes[their_slot]) {
                r.other = None;
            }
            self.send(other, &[id::DISCONNECT_NOTIFICATION, NUM_RESERVED_PORTS + their_slot as u8]);
        }
    }

    /// The driver saw `conn` close (EOF, error) or closes it: forget it, tell its peers.
    pub fn closed(&mut self, conn: ConnId) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        for slot in 0..NUM_CLIENT_CONNECTIONS {
            self.unroute(conn, slot);
        }
        if let Some(c) = self.conns.remove(&conn) {
            if self.by_pk.get(&c.pk) == Some(&conn) {
                self.by_pk.remove(&c.pk);
            }
        }
    }

    fn close(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.closed(conn);
            self.out.push_back(ServerOutput::Close { conn });
        }
    }

    /// An onion response (the bare 0x84/0x86) for the client that sent the request.
    pub fn onion_response(&mut self, conn: ConnId, response: &[u8]) {
        if response.len() + 1 + MAC_SIZE > MAX_PACKET_SIZE {
            return;
        }
        let mut r = Vec::with_capacity(1 + response.len());
        r.push(id::ONION_RESPONSE);
        r.extend_from_slice(response);
        self.send(conn, &r);
    }

    /// Handshake deadlines and pings.
    pub fn tick(&mut self, now: Instant) {
        let mut dead = Vec::new();
        let mut pings = Vec::new();
        for (&id, c) in self.conns.iter_mut() {
            if !c.confirmed {
                if now >= c.deadline {
                    dead.push(id);
                }
            } else if c.ping_id != 0 {
                if now >= c.last_ping + PING_TIMEOUT {
                    dead.push(id);
                }
            } else if now >= c.last_ping + PING_INTERVAL {
                let ping = random_u64(&mut self.rng).max(1);
                c.ping_id = ping;
                c.last_ping = now;
                pings.push((id, ping));
            }
        }
        for id in dead {
            self.close(id);
        }
        for (id, ping) in pings {
            let mut p = vec![id::PING];
            p.extend_from_slice(&ping.to_be_bytes());
            self.send(id, &p);
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .map(|c| {
                if !c.confirmed {
                    c.deadline
                } else if c.ping_id != 0 {
                    c.last_ping + PING_TIMEOUT
                } else {
                    c.last_ping + PING_INTERVAL
                }
            })
            .min()
    }

    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.out.pop_front()
    }

    /// The driver's view of `conn`'s socket queue: while busy, data for it is dropped.
    pub fn set_busy(&mut self, conn: ConnId, busy: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.busy = busy;
        }
    }
}

/// What a relay connection tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The relay answered our handshake.
    Connected,
    /// Our routing request for `pk` got connection id `id` (`None`: refused).
    Routed {
        pk: PublicKey,
        id: Option<u8>,
    },
    /// The other end of `id` is connected to the relay and asked for us too.
    Online {
        id: u8,
    },
    /// … went away.
    Offline {
        id: u8,
    },
    Data {
        id: u8,
        data: Vec<u8>,
    },
    Oob {
        from: PublicKey,
        data: Vec<u8>,
    },
    OnionResponse {
        data: Vec<u8>,
    },
}

/// One connection to a relay (c-toxcore TCP_client). Our key is our DHT key, as c-toxcore's.
pub struct TcpRelayClient {
    keys: KeyPair,
    server_pk: PublicKey,
    temp: KeyPair,
    our_nonce: Nonce,
    handshake_in: Vec<u8>,
    chan: Option<Channel>,
    confirmed_at: Option<Instant>,
    started: Instant,
    last_ping: Instant,
    ping_id: u64,
    rng: ToxRng,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    /// Plaintexts queued before the handshake completes.
    pending: Vec<Vec<u8>>,
}

impl TcpRelayClient {
    /// Starts a connection: the handshake is the first thing to write.
    pub fn new(keys: KeyPair, server_pk: PublicKey, rng_seed: RngSeed, now: Instant) -> Self {
        let mut rng = rng_from_seed(rng_seed);
        let temp = KeyPair::generate(&mut rng);
        let our_nonce = random_nonce(&mut rng);
        let n = random_nonce(&mut rng);
        let mut plain = Vec::with_capacity(HANDSHAKE_PLAIN_SIZE);
        plain.extend_from_slice(&temp.pk.0);
        plain.extend_from_slice(&our_nonce);
        let mut hs = Vec::with_capacity(CLIENT_HANDSHAKE_SIZE);
        hs.extend_from_slice(&keys.pk.0);
        hs.extend_from_slice(&n);
        hs.extend_from_slice(&SharedKey::precompute(&server_pk, &keys.sk).encrypt(&n, &plain));
        TcpRelayClient {
            keys,
            server_pk,
            temp,
            our_nonce,
            handshake_in: Vec::new(),
            chan: None,
            confirmed_at: None,
            started: now,
            last_ping: now,
            ping_id: 0,
            rng,
            transmit: VecDeque::from([hs]),
            events: VecDeque::new(),
            pending: Vec::new(),
        }
    }

    pub fn server_pk(&self) -> PublicKey {
        self.server_pk
    }

    pub fn is_connected(&self) -> bool {
        self.chan.is_some()
    }

    /// Bytes read from the relay. `Err`: close the connection.
    pub fn receive(&mut self, now: Instant, mut bytes: &[u8]) -> Result<(), TcpError> {
        if self.chan.is_none() {
            let take = (SERVER_HANDSHAKE_SIZE - self.handshake_in.len()).min(bytes.len());
            self.handshake_in.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.handshake_in.len() < SERVER_HANDSHAKE_SIZE {
                return Ok(());
            }
            let n = nonce_at(&self.handshake_in, 0).ok_or(TcpError::Handshake)?;
            let plain = SharedKey::precompute(&self.server_pk, &self.keys.sk)
                .decrypt(&n, &self.handshake_in[NONCE_SIZE..])
                .ok_or(TcpError::Handshake)?;
            let their_temp = pk_at(&plain, 0).ok_or(TcpError::Handshake)?;
            let their_nonce = nonce_at(&plain, PUBLIC_KEY_SIZE).ok_or(TcpError::Handshake)?;
            self.chan = Some(Channel {
                key: SharedKey::precompute(&their_temp, &self.temp.sk),
                send_nonce: self.our_nonce,
                recv_nonce: their_nonce,
                inbuf: Vec::new(),
            });
            self.confirmed_at = Some(now);
            self.last_ping = now;
            self.events.push_back(ClientEvent::Connected);
            // The relay confirms us on our first packet: a ping, as c-toxcore's client does.
            self.send_ping();
            for p in std::mem::take(&mut self.pending) {
                self.send(&p);
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let packets = self.chan.as_mut().ok_or(TcpError::Handshake)?.feed(bytes)?;
        for p in packets {
            self.packet(now, &p)?;
        }
        Ok(())
    }

    fn packet(&mut self, now: Instant, p: &[u8]) -> Result<(), TcpError> {
        let kind = p[0];
        let bad = || TcpError::Malformed(kind);
        match kind {
            id::ROUTING_RESPONSE => {
                let cid = *p.get(1).ok_or_else(bad)?;
                let pk = pk_at(p, 2).filter(|_| p.len() == 2 + PUBLIC_KEY_SIZE).ok_or_else(bad)?;
                self.events.push_back(ClientEvent::Routed { pk, id: (cid >= NUM_RESERVED_PORTS).then_some(cid) });
            }
            id::CONNECT_NOTIFICATION | id::DISCONNECT_NOTIFICATION => {
                let cid = *p.get(1).filter(|&&c| p.len() == 2 && c >= NUM_RESERVED_PORTS).ok_or_else(bad)?;
                self.events.push_back(if kind == id::CONNECT_NOTIFICATION {
                    ClientEvent::Online { id: cid }
                } else {
                    ClientEvent::Offline { id: cid }
                });
            }
            id::PING => {
                let ping = u64_at(p, 1).filter(|_| p.len() == 9).ok_or_else(bad)?;
                let mut r = vec![id::PONG];
                r.extend_from_slice(&ping.to_be_bytes());
                self.send(&r);
            }
            id::PONG => {
                let ping = u64_at(p, 1).filter(|_| p.len() == 9).ok_or_else(bad)?;
                if ping != 0 && ping == self.ping_id {
                    self.ping_id = 0;
                    self.last_ping = now;
                }
            }
            id::OOB_RECV => {
                let from = pk_at(p, 1).ok_or_else(bad)?;
                let data = p[1 + PUBLIC_KEY_SIZE..].to_vec();
                self.events.push_back(ClientEvent::Oob { from, data });
            }
            id::ONION_RESPONSE => {
                if p.len() < 2 {
                    return Err(bad());
                }
                self.events.push_back(ClientEvent::OnionResponse { data: p[1..].to_vec() });
            }
            0..=15 => {}
            cid => self.events.push_back(ClientEvent::Data { id: cid, data: p[1..].to_vec() }),
        }
        Ok(())
    }

    fn send(&mut self, plain: &[u8]) {
        match self.chan.as_mut() {
            Some(chan) => {
                let f = chan.seal(plain);
                self.transmit.push_back(f);
            }
            None => self.pending.push(plain.to_vec()),
        }
    }

    fn send_ping(&mut self) {
        self.ping_id = random_u64(&mut self.rng).max(1);
        let mut p = vec![id::PING];
        p.extend_from_slice(&self.ping_id.to_be_bytes());
        self.send(&p);
    }

    /// Ask the relay for a route to `pk` (a DHT key); answered by [`ClientEvent::Routed`].
    pub fn routing_request(&mut self, pk: &PublicKey) {
        let mut p = vec![id::ROUTING_REQUEST];
        p.extend_from_slice(&pk.0);
        self.send(&p);
    }

    /// Send `data` to the client on connection `id`.
    pub fn send_data(&mut self, id: u8, data: &[u8]) {
        if id < NUM_RESERVED_PORTS || data.len() + 1 + MAC_SIZE > MAX_PACKET_SIZE {
            return;
        }
        let mut p = Vec::with_capacity(1 + data.len());
        p.push(id);
        p.extend_from_slice(data);
        self.send(&p);
    }

    /// Forget the route `id`.
    pub fn disconnect(&mut self, id: u8) {
        self.send(&[id::DISCONNECT_NOTIFICATION, id]);
    }

    /// Send `data` (≤ [`MAX_OOB_DATA`]) to whoever is connected to the relay with `to`.
    pub fn oob_send(&mut self, to: &PublicKey, data: &[u8]) {
        if data.is_empty() || data.len() > MAX_OOB_DATA {
            return;
        }
        let mut p = vec![id::OOB_SEND];
        p.extend_from_slice(&to.0);
        p.extend_from_slice(data);
        self.send(&p);
    }

    /// An onion request with the relay as first hop: `[nonce][IP_Port][pk][box]`.
    pub fn onion_request(&mut self, data: &[u8]) {
        let mut p = vec![id::ONION_REQUEST];
        p.extend_from_slice(data);
        self.send(&p);
    }

    /// Pings; `Err` when the relay stopped answering or the handshake never completed.
    pub fn tick(&mut self, now: Instant) -> Result<(), TcpError> {
        if self.chan.is_none() {
            return if now >= self.started + HANDSHAKE_TIMEOUT { Err(TcpError::Handshake) } else { Ok(()) };
        }
        if self.ping_id != 0 && now >= self.last_ping + PING_TIMEOUT {
            return Err(TcpError::Malformed(id::PONG));
        }
        if self.ping_id == 0 && now >= self.last_ping + PING_INTERVAL {
            self.last_ping = now;
            self.send_ping();
        }
        Ok(())
    }

    pub fn next_timeout(&self) -> Instant {
        match (&self.chan, self.ping_id) {
            (None, _) => self.started + HANDSHAKE_TIMEOUT,
            (Some(_), 0) => self.last_ping + PING_INTERVAL,
            (Some(_), _) => self.last_ping + PING_TIMEOUT,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// Sealed frames not yet taken by [`poll_transmit`](Self::poll_transmit).
    pub fn queued(&self) -> usize {
        self.transmit.len()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seeded_rng;

    struct Net {
        server: TcpRelayServer,
        clients: Vec<(ConnId, TcpRelayClient)>,
        onion: Vec<(ConnId, Vec<u8>)>,
        closed: Vec<ConnId>,
    }

    impl Net {
        fn new(n: usize, now: Instant) -> Self {
            let mut rng = seeded_rng(7);
            let server = TcpRelayServer::new(KeyPair::generate(&mut rng), [1; 32]);
            let spk = server.pk();
            let mut net = Net { server, clients: Vec::new(), onion: Vec::new(), closed: Vec::new() };
            for i in 0..n {
                let conn = net.server.accept(now).unwrap();
                let c = TcpRelayClient::new(KeyPair::generate(&mut rng), spk, [i as u8 + 10; 32], now);
                net.clients.push((conn, c));
            }
            net.pump(now);
            net
        }

        /// Moves bytes both ways (in odd-sized pieces, as TCP may) until quiet.
        fn pump(&mut self, now: Instant) {
            loop {
                let mut moved = false;
                for (conn, c) in self.clients.iter_mut() {
                    while let Some(b) = c.poll_transmit() {
                        for piece in b.chunks(7) {
                            self.server.receive(now, *conn, piece);
                        }
                        moved = true;
                    }
                }
                while let Some(o) = self.server.poll_output() {
                    moved = true;
                    match o {
                        ServerOutput::Send { conn, data } => {
                            let c = &mut self.clients.iter_mut().find(|(id, _)| *id == conn).unwrap().1;
                            c.receive(now, &data).unwrap();
                        }
                        ServerOutput::Close { conn } => self.closed.push(conn),
                        ServerOutput::OnionRequest { conn, data } => self.onion.push((conn, data)),
                    }
                }
                if !moved {
                    return;
                }
            }
        }

        fn events(&mut self, i: usize) -> Vec<ClientEvent> {
            std::iter::from_fn(|| self.clients[i].1.poll_event()).collect()
        }
    }

    #[test]
    fn two_clients_route_data_and_disconnect_through_the_relay() {
        let now = Instant::now();
        let mut net = Net::new(2, now);
        assert_eq!(net.events(0), vec![ClientEvent::Connected]);
        assert_eq!(net.events(1), vec![ClientEvent::Connected]);
        let (a, b) = (net.clients[0].1.keys.pk, net.clients[1].1.keys.pk);
        net.clients[0].1.routing_request(&b);
        net.pump(now);
        assert_eq!(net.events(0), vec![ClientEvent::Routed { pk: b, id: Some(16) }]);
        // b asks for an unrelated key first, then for a: the route to a gets slot 17.
        net.clients[1].1.routing_request(&PublicKey([9; 32]));
        net.clients[1].1.routing_request(&a);
        net.pump(now);
        assert_eq!(
            net.events(1),
            vec![
                ClientEvent::Routed { pk: PublicKey([9; 32]), id: Some(16) },
                ClientEvent::Routed { pk: a, id: Some(17) },
                ClientEvent::Online { id: 17 }
            ]
        );
        assert_eq!(net.events(0), vec![ClientEvent::Online { id: 16 }]);
        net.clients[0].1.send_data(16, b"hello over tcp");
        net.clients[1].1.send_data(17, &[0xab; 1500]);
        net.pump(now);
        assert_eq!(net.events(1), vec![ClientEvent::Data { id: 17, data: b"hello over tcp".to_vec() }]);
        assert_eq!(net.events(0), vec![ClientEvent::Data { id: 16, data: vec![0xab; 1500] }]);
        // OOB reaches a client by key without a route.
        net.clients[1].1.oob_send(&a, b"oob");
        net.pump(now);
        assert_eq!(net.events(0), vec![ClientEvent::Oob { from: b, data: b"oob".to_vec() }]);
        // a hangs up: b hears it.
        let conn_a = net.clients[0].0;
        net.server.closed(conn_a);
        net.pump(now);
        assert_eq!(net.events(1), vec![ClientEvent::Offline { id: 17 }]);
        // Routing to oneself is refused.
        net.clients[1].1.routing_request(&b);
        net.pump(now);
        assert_eq!(net.events(1), vec![ClientEvent::Routed { pk: b, id: None }]);
    }

    /// A client whose socket queue the driver reports nearly full gets no routed or OOB
    /// data (dropped before sealing: the stream stays decodable), and is not dropped;
    /// once it drains, data flows again.
    #[test]
    fn busy_clients_lose_data_not_their_connection() {
        let now = Instant::now();
        let mut net = Net::new(2, now);
        let (a, b) = (net.clients[0].1.keys.pk, net.clients[1].1.keys.pk);
        net.clients[0].1.routing_request(&b);
        net.clients[1].1.routing_request(&a);
        net.pump(now);
        net.events(0);
        net.events(1);
        let conn_b = net.clients[1].0;
        net.server.set_busy(conn_b, true);
        net.clients[0].1.send_data(16, b"dropped");
        net.clients[0].1.oob_send(&b, b"dropped too");
        net.pump(now);
        assert_eq!(net.events(1), vec![]);
        assert!(net.closed.is_empty());
        net.server.set_busy(conn_b, false);
        net.clients[0].1.send_data(16, b"after");
        net.pump(now);
        assert_eq!(net.events(1), vec![ClientEvent::Data { id: 16, data: b"after".to_vec() }]);
    }

    #[test]
    fn onion_requests_go_to_the_onion_node_and_responses_come_back() {
        let now = Instant::now();
        let mut net = Net::new(1, now);
        net.events(0);
        let req = vec![3u8; ONION_REQUEST_MIN + 20];
        net.clients[0].1.onion_request(&req);
        net.pump(now);
        assert_eq!(net.onion, vec![(net.clients[0].0, req)]);
        net.server.onion_response(net.clients[0].0, &[0x84, 1, 2, 3]);
        net.pump(now);
        assert_eq!(net.events(0), vec![ClientEvent::OnionResponse { data: vec![0x84, 1, 2, 3] }]);
    }

    #[test]
    fn garbage_and_oversized_frames_drop_only_that_client() {
        let now = Instant::now();
        let mut net = Net::new(2, now);
        let bad = net.clients[0].0;
        // A frame length past MAX_PACKET_SIZE.
        net.server.receive(now, bad, &((MAX_PACKET_SIZE + 1) as u16).to_be_bytes());
        net.pump(now);
        assert_eq!(net.closed, vec![bad]);
        assert_eq!(net.server.client_count(), 1);
        // A bad handshake.
        let c = net.server.accept(now).unwrap();
        net.server.receive(now, c, &[0u8; CLIENT_HANDSHAKE_SIZE]);
        net.pump(now);
        assert_eq!(net.closed, vec![bad, c]);
        // The other client still works.
        net.clients[1].1.onion_request(&[1; ONION_REQUEST_MIN]);
        net.pump(now);
        assert_eq!(net.onion.len(), 1);
    }

    #[test]
    fn silent_clients_time_out_and_pings_are_answered() {
        let now = Instant::now();
        let mut net = Net::new(1, now);
        let half_open = net.server.accept(now).unwrap();
        net.server.tick(now + HANDSHAKE_TIMEOUT);
        net.pump(now);
        assert_eq!(net.closed, vec![half_open]);
        // The relay pings the confirmed client, which answers: still connected.
        let t = now + PING_INTERVAL;
        net.server.tick(t);
        net.pump(t);
        net.server.tick(t + PING_TIMEOUT);
        net.pump(t + PING_TIMEOUT);
        assert_eq!(net.server.client_count(), 1);
    }
}
