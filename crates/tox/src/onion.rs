//! Onion NODE duties (docs/protocols/tox.md#onion): what every Tox node does for others.
//!
//! - Relay onion requests 0x80 → 0x81 → 0x82 → destination, peeling one box per layer
//!   (all forward layers share the packet nonce) and appending a sendback layer sealed
//!   with our private, rotating secretbox key ([`SENDBACK_KEY_LIFETIME`]).
//! - Relay onion responses 0x8c → 0x8d → 0x8e → the original sender, opening our own
//!   sendback layer.
//! - As destination: answer announce requests 0x83 with 0x84 (unforgeable ping_id tokens:
//!   SHA-512 of our secret, the 300-s window, the announcer's key and the last hop's
//!   address; the current and next window accepted), keeping a bounded store of
//!   announcements (entries closest to our DHT key win) for [`ENTRY_TIMEOUT`]; route onion
//!   data 0x85 along the stored return path of its addressee as 0x86.

use crate::crypto::{
    random_bytes, random_nonce, rng_from_seed, sha512, KeyPair, Nonce, PublicKey, RngSeed, SharedKey, ToxRng, MAC_SIZE,
    NONCE_SIZE, PUBLIC_KEY_SIZE,
};
use crate::dht::Dht;
use crate::packet::{
    closer, decode_ip_port, encode_ip_port, kind,
    limits::{IP_PORT_SIZE, MAX_SENT_NODES},
    nonce_at, pk_at, u64_at, PackedNode, PacketError,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Largest onion packet relayed or accepted (c-toxcore ONION_MAX_PACKET_SIZE).
pub const ONION_MAX_PACKET_SIZE: usize = 1400;
/// Sendback layer written by the first hop: nonce + MAC + IP_Port.
pub const RETURN_1: usize = NONCE_SIZE + MAC_SIZE + IP_PORT_SIZE;
/// … by the second hop (wraps RETURN_1).
pub const RETURN_2: usize = NONCE_SIZE + MAC_SIZE + IP_PORT_SIZE + RETURN_1;
/// … by the third hop (wraps RETURN_2); the last 177 bytes of what reaches the destination.
pub const RETURN_3: usize = NONCE_SIZE + MAC_SIZE + IP_PORT_SIZE + RETURN_2;
/// Ping id (announce token) size.
pub const PING_ID_SIZE: usize = 32;
/// Announce request plaintext: ping_id, searched pk, data pk, sendback.
pub const ANNOUNCE_PLAIN_SIZE: usize = PING_ID_SIZE + 2 * PUBLIC_KEY_SIZE + 8;
/// Announce request as sent by the last hop's client (without RETURN_3): 177 bytes.
pub const ANNOUNCE_REQUEST_SIZE: usize = 1 + NONCE_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE + ANNOUNCE_PLAIN_SIZE;
/// Smallest onion data request (without RETURN_3): header + an empty boxed body.
pub const DATA_REQUEST_MIN_SIZE: usize = 1 + PUBLIC_KEY_SIZE + NONCE_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE;
/// Announcements stored at most (c-toxcore ONION_ANNOUNCE_MAX_ENTRIES).
pub const MAX_ENTRIES: usize = 160;
/// An announcement lives this long without being renewed.
pub const ENTRY_TIMEOUT: Duration = Duration::from_secs(300);
/// Self-announcements heard (authenticated, ping id not yet proven) kept for our own client.
pub const MAX_HEARD: usize = 64;
/// How long a heard announcement's return path is used: a client replaces a path that
/// goes unanswered within seconds, so an older one is likely dead.
pub const HEARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Ping id window.
pub const PING_ID_WINDOW: Duration = Duration::from_secs(300);
/// Our sendback key is replaced this often (the previous one still opens).
pub const SENDBACK_KEY_LIFETIME: Duration = Duration::from_secs(3600);

/// First byte of the IP_Port we seal into our own first sendback layer when the request
/// came from a TCP relay client (docs/protocols/tox.md#tcp-relays): only we read it, and it
/// is no UDP family, so [`decode_ip_port`] would refuse it; bytes 1..9 hold the client's
/// connection id.
const TCP_CLIENT_MARK: u8 = 0xfe;

/// Why an onion packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnionError {
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("packet kind {0:#04x} is not for the onion node")]
    NotOnion(u8),
    #[error("sendback layer does not open (not ours or expired)")]
    BadSendback,
    #[error("response kind {0:#04x} may not leave the onion")]
    BadResponseKind(u8),
    #[error("no announcement stored for the addressee")]
    NotAnnounced,
    #[error("{0}")]
    Other(&'static str),
}

/// What the onion node tells its owner (informational).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnionNodeEvent {
    /// Someone announced itself here (new or renewed).
    Stored { pk: PublicKey, data_pk: PublicKey },
    /// Someone asked to be announced here: the request was boxed with its long-term key,
    /// so `pk` is real, but it has not yet proven (with our ping id) that it receives at
    /// the return path. Not stored, never told to searchers; our own client may use it
    /// to reach a friend one announce round earlier ([`OnionNode::deliver_local`]).
    Heard { pk: PublicKey, data_pk: PublicKey },
}

struct Entry {
    pk: PublicKey,
    data_pk: PublicKey,
    ret: Vec<u8>,
    ret_addr: SocketAddr,
    time: Instant,
}

/// An announcement heard but not stored (see [`OnionNodeEvent::Heard`]).
struct Heard {
    pk: PublicKey,
    ret: Vec<u8>,
    ret_addr: SocketAddr,
    time: Instant,
}

/// The onion node.
pub struct OnionNode {
    keys: KeyPair,
    secret: [u8; 32],
    sendback: SharedKey,
    sendback_prev: Option<SharedKey>,
    sendback_since: Instant,
    epoch: Instant,
    entries: Vec<Entry>,
    heard: VecDeque<Heard>,
    shared: BTreeMap<PublicKey, SharedKey>,
    transmit: VecDeque<(SocketAddr, Vec<u8>)>,
    tcp_transmit: VecDeque<(u64, Vec<u8>)>,
    events: VecDeque<OnionNodeEvent>,
    next_tick: Instant,
    /// The ping-id secret, sendback keys and nonces come from here.
    rng: ToxRng,
}

const MAX_SHARED_KEYS: usize = 4096;

impl OnionNode {
    /// `rng_seed` seeds the node's secrets and nonces (see [`ToxRng`]).
    pub fn new(dht_keys: KeyPair, rng_seed: RngSeed, now: Instant) -> Self {
        let mut rng = rng_from_seed(rng_seed);
        OnionNode {
            keys: dht_keys,
            secret: random_bytes(&mut rng),
            sendback: SharedKey::random(&mut rng),
            sendback_prev: None,
            sendback_since: now,
            epoch: now,
            entries: Vec::new(),
            heard: VecDeque::new(),
            shared: BTreeMap::new(),
            transmit: VecDeque::new(),
            tcp_transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: now + Duration::from_secs(1),
            rng,
        }
    }

    /// Number of stored announcements.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The stored data key of `pk`, if it is announced here.
    pub fn announced_data_pk(&self, pk: &PublicKey) -> Option<PublicKey> {
        self.entries.iter().find(|e| e.pk == *pk).map(|e| e.data_pk)
    }

    fn shared_key(&mut self, pk: &PublicKey) -> SharedKey {
        if let Some(k) = self.shared.get(pk) {
            return k.clone();
        }
        let k = SharedKey::precompute(pk, &self.keys.sk);
        if self.shared.len() >= MAX_SHARED_KEYS {
            if let Some(v) = self.shared.keys().next().copied() {
                self.shared.remove(&v);
            }
        }
        self.shared.insert(*pk, k.clone());
        k
    }

    /// Handles 0x80–0x83, 0x85 and 0x8c–0x8e. `dht` gives the nodes closest to a
    /// searched key for announce responses.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8], dht: &Dht) -> Result<(), OnionError> {
        if data.len() > ONION_MAX_PACKET_SIZE {
            return Err(
                PacketError::TooLong { what: "onion packet", max: ONION_MAX_PACKET_SIZE, got: data.len() }.into()
            );
        }
        match data.first() {
            None => Err(PacketError::Empty.into()),
            Some(&kind::ONION_REQUEST_0) => self.request_0(from, data),
            Some(&kind::ONION_REQUEST_1) => self.request_n(from, data, RETURN_1, kind::ONION_REQUEST_2),
            Some(&kind::ONION_REQUEST_2) => self.request_n(from, data, RETURN_2, 0),
            Some(&kind::ANNOUNCE_REQUEST) => self.announce(now, from, data, dht),
            Some(&kind::ONION_DATA_REQUEST) => self.data_request(now, data),
            Some(&kind::ONION_RESPONSE_3) => self.response(data, RETURN_3, Some(kind::ONION_RESPONSE_2)),
            Some(&kind::ONION_RESPONSE_2) => self.response(data, RETURN_2, Some(kind::ONION_RESPONSE_1)),
            Some(&kind::ONION_RESPONSE_1) => self.response(data, RETURN_1, None),
            Some(&k) => Err(OnionError::NotOnion(k)),
        }
    }

    fn seal_sendback(&mut self, inner: &[u8]) -> Vec<u8> {
        let n = random_nonce(&mut self.rng);
        let mut v = Vec::with_capacity(NONCE_SIZE + MAC_SIZE + inner.len());
        v.extend_from_slice(&n);
        v.extend_from_slice(&self.sendback.encrypt(&n, inner));
        v
    }

    fn open_sendback(&self, layer: &[u8]) -> Result<Vec<u8>, OnionError> {
        let n: Nonce = nonce_at(layer, 0).ok_or(OnionError::BadSendback)?;
        let body = layer.get(NONCE_SIZE..).ok_or(OnionError::BadSendback)?;
        self.sendback
            .decrypt(&n, body)
            .or_else(|| self.sendback_prev.as_ref().and_then(|k| k.decrypt(&n, body)))
            .ok_or(OnionError::BadSendback)
    }

    /// An onion request from TCP relay client `conn` (relay packet 8, we are the first
    /// hop): `[N][IP_Port next][PK][box]` — what 0x80 carries once opened — goes on as
    /// 0x81 with a sendback layer naming `conn`; the answer comes out of
    /// [`poll_tcp_response`](Self::poll_tcp_response).
    pub fn handle_tcp_request(&mut self, conn: u64, data: &[u8]) -> Result<(), OnionError> {
        if data.len() > ONION_MAX_PACKET_SIZE {
            return Err(
                PacketError::TooLong { what: "onion packet", max: ONION_MAX_PACKET_SIZE, got: data.len() }.into()
            );
        }
        let min = NONCE_SIZE + IP_PORT_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE;
        if data.len() < min {
            return Err(PacketError::TooShort { what: "tcp onion request", need: min, got: data.len() }.into());
        }
        let nonce = nonce_at(data, 0).ok_or(PacketError::Empty)?;
        let next = decode_ip_port(&data[NONCE_SIZE..])?;
        let rest = &data[NONCE_SIZE + IP_PORT_SIZE..];
        let mut mark = [0u8; IP_PORT_SIZE];
        mark[0] = TCP_CLIENT_MARK;
        mark[1..9].copy_from_slice(&conn.to_be_bytes());
        let s1 = self.seal_sendback(&mark);
        let mut out = Vec::with_capacity(1 + NONCE_SIZE + rest.len() + s1.len());
        out.push(kind::ONION_REQUEST_1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(rest);
        out.extend_from_slice(&s1);
        self.transmit.push_back((next, out));
        Ok(())
    }

    /// Onion responses for TCP relay clients: `(connection id, bare response)`.
    pub fn poll_tcp_response(&mut self) -> Option<(u64, Vec<u8>)> {
        self.tcp_transmit.pop_front()
    }

    /// 0x80 `[N][sender pk][box([IP_Port next][rest])]` → `[0x81][N][rest][S1]`.
    fn request_0(&mut self, from: SocketAddr, data: &[u8]) -> Result<(), OnionError> {
        let min = 1 + NONCE_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE + IP_PORT_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE;
        if data.len() < min {
            return Err(PacketError::TooShort { what: "onion request 0", need: min, got: data.len() }.into());
        }
        let nonce = nonce_at(data, 1).ok_or(PacketError::Empty)?;
        let sender = pk_at(data, 1 + NONCE_SIZE).ok_or(PacketError::Empty)?;
        let key = self.shared_key(&sender);
        let plain = key.decrypt(&nonce, &data[1 + NONCE_SIZE + PUBLIC_KEY_SIZE..]).ok_or(PacketError::Decrypt)?;
        let next = decode_ip_port(&plain)?;
        let rest = &plain[IP_PORT_SIZE..];
        let s1 = self.seal_sendback(&encode_ip_port(&from));
        let mut out = Vec::with_capacity(1 + NONCE_SIZE + rest.len() + s1.len());
        out.push(kind::ONION_REQUEST_1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(rest);
        out.extend_from_slice(&s1);
        self.transmit.push_back((next, out));
        Ok(())
    }

    /// 0x81/0x82 `[N][PK][box([IP_Port next][rest])][S_prev]`: to 0x82 `[N][rest][S]`, or
    /// (layer 2) the bare `rest` to the destination with S3 appended.
    fn request_n(&mut self, from: SocketAddr, data: &[u8], ret_len: usize, next_kind: u8) -> Result<(), OnionError> {
        let min = 1 + NONCE_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE + IP_PORT_SIZE + 1 + ret_len;
        if data.len() < min {
            return Err(PacketError::TooShort { what: "onion request", need: min, got: data.len() }.into());
        }
        let nonce = nonce_at(data, 1).ok_or(PacketError::Empty)?;
        let pk = pk_at(data, 1 + NONCE_SIZE).ok_or(PacketError::Empty)?;
        let body = &data[1 + NONCE_SIZE + PUBLIC_KEY_SIZE..];
        let (boxed, prev) = body.split_at(body.len() - ret_len);
        // A temporary key per path: not worth caching.
        let plain = SharedKey::precompute(&pk, &self.keys.sk).decrypt(&nonce, boxed).ok_or(PacketError::Decrypt)?;
        let next = decode_ip_port(&plain)?;
        let rest = &plain[IP_PORT_SIZE..];
        let mut inner = Vec::with_capacity(IP_PORT_SIZE + prev.len());
        inner.extend_from_slice(&encode_ip_port(&from));
        inner.extend_from_slice(prev);
        let s = self.seal_sendback(&inner);
        let mut out = Vec::with_capacity(1 + NONCE_SIZE + rest.len() + s.len());
        if next_kind != 0 {
            if rest.len() < PUBLIC_KEY_SIZE + MAC_SIZE {
                return Err(PacketError::TooShort {
                    what: "onion layer",
                    need: PUBLIC_KEY_SIZE + MAC_SIZE,
                    got: rest.len(),
                }
                .into());
            }
            out.push(next_kind);
            out.extend_from_slice(&nonce);
        }
        out.extend_from_slice(rest);
        out.extend_from_slice(&s);
        self.transmit.push_back((next, out));
        Ok(())
    }

    /// 0x8c/0x8d/0x8e `[S][response]`: open S, pass `[next kind][S_inner][response]` on,
    /// or (layer 1) the bare response to the original sender.
    fn response(&mut self, data: &[u8], ret_len: usize, next_kind: Option<u8>) -> Result<(), OnionError> {
        let min = 1 + ret_len + 1;
        if data.len() < min {
            return Err(PacketError::TooShort { what: "onion response", need: min, got: data.len() }.into());
        }
        let plain = self.open_sendback(&data[1..1 + ret_len])?;
        if next_kind.is_none() && plain.len() == IP_PORT_SIZE && plain[0] == TCP_CLIENT_MARK {
            let k = data[1 + ret_len];
            if k != kind::ANNOUNCE_RESPONSE && k != kind::ONION_DATA_RESPONSE && k != 0x88 {
                return Err(OnionError::BadResponseKind(k));
            }
            let conn = u64_at(&plain, 1).ok_or(OnionError::BadSendback)?;
            self.tcp_transmit.push_back((conn, data[1 + ret_len..].to_vec()));
            return Ok(());
        }
        let next = decode_ip_port(&plain)?;
        let response = &data[1 + ret_len..];
        let mut out = Vec::with_capacity(data.len());
        match next_kind {
            Some(k) => {
                let inner = &plain[IP_PORT_SIZE..];
                if inner.len() != ret_len - (NONCE_SIZE + MAC_SIZE + IP_PORT_SIZE) {
                    return Err(OnionError::BadSendback);
                }
                out.push(k);
                out.extend_from_slice(inner);
            }
            None => {
                if plain.len() != IP_PORT_SIZE {
                    return Err(OnionError::BadSendback);
                }
                let k = response[0];
                if k != kind::ANNOUNCE_RESPONSE && k != kind::ONION_DATA_RESPONSE && k != 0x88 {
                    return Err(OnionError::BadResponseKind(k));
                }
            }
        }
        out.extend_from_slice(response);
        self.transmit.push_back((next, out));
        Ok(())
    }

    fn ping_id(&self, window: u64, pk: &PublicKey, src: &SocketAddr) -> [u8; PING_ID_SIZE] {
        let mut m = Vec::with_capacity(32 + 8 + 32 + IP_PORT_SIZE);
        m.extend_from_slice(&self.secret);
        m.extend_from_slice(&window.to_be_bytes());
        m.extend_from_slice(&pk.0);
        m.extend_from_slice(&encode_ip_port(src));
        let h = sha512(&m);
        let mut o = [0u8; PING_ID_SIZE];
        o.copy_from_slice(&h[..PING_ID_SIZE]);
        o
    }

    fn window(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / PING_ID_WINDOW.as_secs()
    }

    /// 0x83 at the destination.
    fn announce(&mut self, now: Instant, from: SocketAddr, data: &[u8], dht: &Dht) -> Result<(), OnionError> {
        if data.len() != ANNOUNCE_REQUEST_SIZE + RETURN_3 {
            return Err(PacketError::BadLength { what: "announce request", got: data.len() }.into());
        }
        let nonce = nonce_at(data, 1).ok_or(PacketError::Empty)?;
        let pk = pk_at(data, 1 + NONCE_SIZE).ok_or(PacketError::Empty)?;
        let key = SharedKey::precompute(&pk, &self.keys.sk);
        let plain = key
            .decrypt(&nonce, &data[1 + NONCE_SIZE + PUBLIC_KEY_SIZE..ANNOUNCE_REQUEST_SIZE])
            .ok_or(PacketError::Decrypt)?;
        let ping_id = plain.get(..PING_ID_SIZE).ok_or(PacketError::Empty)?;
        let searched = pk_at(&plain, PING_ID_SIZE).ok_or(PacketError::Empty)?;
        let data_pk = pk_at(&plain, PING_ID_SIZE + PUBLIC_KEY_SIZE).ok_or(PacketError::Empty)?;
        let sendback = plain.get(PING_ID_SIZE + 2 * PUBLIC_KEY_SIZE..).ok_or(PacketError::Empty)?;
        let ret = &data[ANNOUNCE_REQUEST_SIZE..];

        self.expire(now);
        let w = self.window(now);
        let id_now = self.ping_id(w, &pk, &from);
        let id_next = self.ping_id(w + 1, &pk, &from);
        let valid = ping_id == id_now || ping_id == id_next;
        let index = if valid { self.add_entry(now, pk, data_pk, ret, from) } else { self.find(&searched) };
        if !valid && searched == pk {
            self.hear(now, pk, data_pk, ret, from);
        }

        let mut pl = Vec::with_capacity(1 + 32 + MAX_SENT_NODES * 51);
        match index {
            None => {
                pl.push(0);
                pl.extend_from_slice(&id_next);
            }
            Some(i) if self.entries[i].pk == pk => {
                pl.push(if self.entries[i].data_pk == data_pk { 2 } else { 0 });
                pl.extend_from_slice(&id_next);
            }
            Some(i) => {
                pl.push(1);
                pl.extend_from_slice(&self.entries[i].data_pk.0);
            }
        }
        let nodes: Vec<PackedNode> = dht.closest_nodes(&searched, MAX_SENT_NODES);
        for n in &nodes {
            n.encode_into(&mut pl);
        }
        let rn = random_nonce(&mut self.rng);
        let mut out = Vec::with_capacity(1 + RETURN_3 + 1 + 8 + NONCE_SIZE + MAC_SIZE + pl.len());
        out.push(kind::ONION_RESPONSE_3);
        out.extend_from_slice(ret);
        out.push(kind::ANNOUNCE_RESPONSE);
        out.extend_from_slice(sendback);
        out.extend_from_slice(&rn);
        out.extend_from_slice(&key.encrypt(&rn, &pl));
        self.transmit.push_back((from, out));
        Ok(())
    }

    fn find(&self, pk: &PublicKey) -> Option<usize> {
        self.entries.iter().position(|e| e.pk == *pk)
    }

    /// Stores or renews; None when the store is full of entries closer to our key.
    fn add_entry(
        &mut self,
        now: Instant,
        pk: PublicKey,
        data_pk: PublicKey,
        ret: &[u8],
        ret_addr: SocketAddr,
    ) -> Option<usize> {
        let e = Entry { pk, data_pk, ret: ret.to_vec(), ret_addr, time: now };
        let i = if let Some(i) = self.find(&pk) {
            self.entries[i] = e;
            i
        } else if self.entries.len() < MAX_ENTRIES {
            self.entries.push(e);
            self.entries.len() - 1
        } else {
            let me = self.keys.pk;
            let (far, fpk) = self
                .entries
                .iter()
                .enumerate()
                .max_by(|(_, a), (_, b)| closer(&me, &a.pk, &b.pk))
                .map(|(i, e)| (i, e.pk))?;
            if closer(&me, &pk, &fpk) != std::cmp::Ordering::Less {
                return None;
            }
            self.entries[far] = e;
            far
        };
        self.events.push_back(OnionNodeEvent::Stored { pk, data_pk });
        Some(i)
    }

    fn expire(&mut self, now: Instant) {
        self.entries.retain(|e| now.saturating_duration_since(e.time) < ENTRY_TIMEOUT);
        self.heard.retain(|h| now.saturating_duration_since(h.time) < HEARD_TIMEOUT);
    }

    /// Keeps the newest heard self-announcement per key (at most [`MAX_HEARD`]). A replayed
    /// old request can only point at a dead path or an old data key: what is sent that way
    /// is lost, nothing else is affected.
    fn hear(&mut self, now: Instant, pk: PublicKey, data_pk: PublicKey, ret: &[u8], ret_addr: SocketAddr) {
        self.heard.retain(|h| h.pk != pk);
        if self.heard.len() >= MAX_HEARD {
            self.heard.pop_front();
        }
        self.heard.push_back(Heard { pk, ret: ret.to_vec(), ret_addr, time: now });
        self.events.push_back(OnionNodeEvent::Heard { pk, data_pk });
    }

    /// Our own client's onion data request `[0x85][dest pk][nonce][temp pk][box]` (no
    /// return path: it did not travel) for someone announced or heard here: routed back
    /// along the return path they announced through, as [`Self::data_request`] does for
    /// requests from afar. A stored announcement is preferred to a heard one.
    pub fn deliver_local(&mut self, now: Instant, request: &[u8]) -> Result<(), OnionError> {
        if request.len() < DATA_REQUEST_MIN_SIZE || request.len() > ONION_MAX_PACKET_SIZE {
            return Err(PacketError::BadLength { what: "local onion data request", got: request.len() }.into());
        }
        if request.first() != Some(&kind::ONION_DATA_REQUEST) {
            return Err(OnionError::Other("not an onion data request"));
        }
        let dest = pk_at(request, 1).ok_or(PacketError::Empty)?;
        self.expire(now);
        let (ret, to) = if let Some(i) = self.find(&dest) {
            (&self.entries[i].ret, self.entries[i].ret_addr)
        } else if let Some(h) = self.heard.iter().find(|h| h.pk == dest) {
            (&h.ret, h.ret_addr)
        } else {
            return Err(OnionError::NotAnnounced);
        };
        let body = &request[1 + PUBLIC_KEY_SIZE..];
        let mut out = Vec::with_capacity(1 + RETURN_3 + 1 + body.len());
        out.push(kind::ONION_RESPONSE_3);
        out.extend_from_slice(ret);
        out.push(kind::ONION_DATA_RESPONSE);
        out.extend_from_slice(body);
        self.transmit.push_back((to, out));
        Ok(())
    }

    /// 0x85 `[dest pk][nonce][temp pk][box][S3]` → `[0x8c][stored S3][0x86][nonce][temp pk][box]`.
    fn data_request(&mut self, now: Instant, data: &[u8]) -> Result<(), OnionError> {
        if data.len() < DATA_REQUEST_MIN_SIZE + RETURN_3 {
            return Err(PacketError::TooShort {
                what: "onion data request",
                need: DATA_REQUEST_MIN_SIZE + RETURN_3,
                got: data.len(),
            }
            .into());
        }
        let dest = pk_at(data, 1).ok_or(PacketError::Empty)?;
        self.expire(now);
        let i = self.find(&dest).ok_or(OnionError::NotAnnounced)?;
        let body = &data[1 + PUBLIC_KEY_SIZE..data.len() - RETURN_3];
        let e = &self.entries[i];
        let mut out = Vec::with_capacity(1 + RETURN_3 + 1 + body.len());
        out.push(kind::ONION_RESPONSE_3);
        out.extend_from_slice(&e.ret);
        out.push(kind::ONION_DATA_RESPONSE);
        out.extend_from_slice(body);
        let to = e.ret_addr;
        self.transmit.push_back((to, out));
        Ok(())
    }

    /// Timers: key rotation, entry expiry.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + Duration::from_secs(1);
        if now.saturating_duration_since(self.sendback_since) >= SENDBACK_KEY_LIFETIME {
            self.sendback_prev = Some(std::mem::replace(&mut self.sendback, SharedKey::random(&mut self.rng)));
            self.sendback_since = now;
        }
        self.expire(now);
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<OnionNodeEvent> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }
}

/// Client side helpers shared with [`crate::onion_client`]: building the three forward
/// layers of an onion request.
pub mod build {
    use super::*;

    /// A path: three nodes, the fresh keys for layers 2 and 3.
    #[derive(Clone, Debug)]
    pub struct PathKeys {
        pub nodes: [PackedNode; 3],
        pub temp1: KeyPair,
        pub temp2: KeyPair,
    }

    /// `0x80` packet for `nodes[0]` carrying `payload` to `dest` through the path.
    /// `our_dht` boxes the first layer; `n` is a fresh random nonce from the caller.
    pub fn onion_request(n: &Nonce, our_dht: &KeyPair, path: &PathKeys, dest: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let l1 = layer_1(n, path, dest, payload);
        let a = &path.nodes[0];
        let box1 = SharedKey::precompute(&a.pk, &our_dht.sk).encrypt(n, &l1);
        let mut out = Vec::with_capacity(1 + NONCE_SIZE + PUBLIC_KEY_SIZE + box1.len());
        out.push(kind::ONION_REQUEST_0);
        out.extend_from_slice(n);
        out.extend_from_slice(&our_dht.pk.0);
        out.extend_from_slice(&box1);
        out
    }

    /// The same request when `nodes[0]` is a TCP relay we are connected to (relay packet
    /// 8, docs/protocols/tox.md#tcp-relays): `[n][IP_Port B][PK1][box for B]`, no first box.
    pub fn onion_request_tcp(n: &Nonce, path: &PathKeys, dest: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let l1 = layer_1(n, path, dest, payload);
        let mut out = Vec::with_capacity(NONCE_SIZE + l1.len());
        out.extend_from_slice(n);
        out.extend_from_slice(&l1);
        out
    }

    /// `[IP_Port B][PK1][box(PK1 → B)([IP_Port C][PK2][box(PK2 → C)([IP_Port dest][payload])])]`.
    fn layer_1(n: &Nonce, path: &PathKeys, dest: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let n = *n;
        let [_, b, c] = &path.nodes;
        // innermost: for C
        let mut l3 = Vec::with_capacity(IP_PORT_SIZE + payload.len());
        l3.extend_from_slice(&encode_ip_port(&dest));
        l3.extend_from_slice(payload);
        let box3 = SharedKey::precompute(&c.pk, &path.temp2.sk).encrypt(&n, &l3);
        let mut l2 = Vec::with_capacity(IP_PORT_SIZE + PUBLIC_KEY_SIZE + box3.len());
        l2.extend_from_slice(&encode_ip_port(&c.addr));
        l2.extend_from_slice(&path.temp2.pk.0);
        l2.extend_from_slice(&box3);
        let box2 = SharedKey::precompute(&b.pk, &path.temp1.sk).encrypt(&n, &l2);
        let mut l1 = Vec::with_capacity(IP_PORT_SIZE + PUBLIC_KEY_SIZE + box2.len());
        l1.extend_from_slice(&encode_ip_port(&b.addr));
        l1.extend_from_slice(&path.temp1.pk.0);
        l1.extend_from_slice(&box2);
        l1
    }

    /// Announce request 0x83 payload (177 bytes); `n` is a fresh random nonce.
    pub fn announce_request(
        n: &Nonce,
        sender: &KeyPair,
        dest_pk: &PublicKey,
        ping_id: &[u8; PING_ID_SIZE],
        searched: &PublicKey,
        data_pk: &PublicKey,
        sendback: u64,
    ) -> Vec<u8> {
        let n = *n;
        let mut plain = Vec::with_capacity(ANNOUNCE_PLAIN_SIZE);
        plain.extend_from_slice(ping_id);
        plain.extend_from_slice(&searched.0);
        plain.extend_from_slice(&data_pk.0);
        plain.extend_from_slice(&sendback.to_be_bytes());
        let mut out = Vec::with_capacity(ANNOUNCE_REQUEST_SIZE);
        out.push(kind::ANNOUNCE_REQUEST);
        out.extend_from_slice(&n);
        out.extend_from_slice(&sender.pk.0);
        out.extend_from_slice(&SharedKey::precompute(dest_pk, &sender.sk).encrypt(&n, &plain));
        out
    }

    /// Parses an announce response 0x84 `[sendback 8][nonce][box]` header.
    pub fn announce_response_header(b: &[u8]) -> Result<(u64, Nonce, &[u8]), PacketError> {
        let min = 1 + 8 + NONCE_SIZE + MAC_SIZE + 1 + PUBLIC_KEY_SIZE;
        if b.len() < min {
            return Err(PacketError::TooShort { what: "announce response", need: min, got: b.len() });
        }
        let max = min + MAX_SENT_NODES * crate::packet::limits::PACKED_NODE_IPV6_SIZE;
        if b.len() > max {
            return Err(PacketError::TooLong { what: "announce response", max, got: b.len() });
        }
        if b[0] != kind::ANNOUNCE_RESPONSE {
            return Err(PacketError::WrongKind { want: kind::ANNOUNCE_RESPONSE, got: b[0] });
        }
        let sb = u64_at(b, 1).ok_or(PacketError::Empty)?;
        let n = nonce_at(b, 9).ok_or(PacketError::Empty)?;
        Ok((sb, n, &b[9 + NONCE_SIZE..]))
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::crypto::SecretKey;
    use crate::packet::decode_node_entries_all;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 33445))
    }

    struct Hop {
        node: OnionNode,
        dht: Dht,
        addr: SocketAddr,
    }

    impl Hop {
        fn feed(&mut self, now: Instant, from: SocketAddr, pkt: &[u8]) -> Result<(), OnionError> {
            self.node.handle_packet(now, from, pkt, &self.dht)
        }
    }

    fn hop(i: u8, now: Instant) -> Hop {
        let k = KeyPair::from_secret(SecretKey([i; 32]));
        Hop { node: OnionNode::new(k.clone(), [i; 32], now), dht: Dht::new(k, [i; 32], now), addr: addr(i) }
    }

    /// Delivers packets between hops until none is left; returns what went to addresses
    /// that are not hops.
    fn pump(
        hops: &mut [Hop],
        first: (SocketAddr, SocketAddr, Vec<u8>),
        now: Instant,
    ) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let mut q = vec![first];
        let mut out = Vec::new();
        while let Some((from, to, pkt)) = q.pop() {
            match hops.iter_mut().find(|h| h.addr == to) {
                Some(h) => {
                    h.node.handle_packet(now, from, &pkt, &h.dht).unwrap();
                    while let Some((t, p)) = h.node.poll_transmit() {
                        q.push((h.addr, t, p));
                    }
                }
                None => out.push((from, to, pkt)),
            }
        }
        out
    }

    #[test]
    fn announce_from_a_tcp_relay_client_comes_back_to_its_connection() {
        let mut rng = crate::crypto::seeded_rng(102);
        let now = Instant::now();
        let mut hops: Vec<Hop> = (1..=4).map(|i| hop(i, now)).collect();
        let real = KeyPair::generate(&mut rng);
        let path = PathKeys {
            nodes: [
                PackedNode::new(hops[0].addr, hops[0].dht.pk()),
                PackedNode::new(hops[1].addr, hops[1].dht.pk()),
                PackedNode::new(hops[2].addr, hops[2].dht.pk()),
            ],
            temp1: KeyPair::generate(&mut rng),
            temp2: KeyPair::generate(&mut rng),
        };
        let (d_addr, d_pk) = (hops[3].addr, hops[3].dht.pk());
        let ann = announce_request(&random_nonce(&mut rng), &real, &d_pk, &[0; 32], &real.pk, &real.pk, 78);
        let pkt = onion_request_tcp(&random_nonce(&mut rng), &path, d_addr, &ann);
        hops[0].node.handle_tcp_request(42, &pkt).unwrap();
        let (to, p1) = hops[0].node.poll_transmit().unwrap();
        assert_eq!((to, p1[0], p1.len()), (hops[1].addr, 0x81, 395), "the same 0x81 as from a UDP client");
        let a0 = hops[0].addr;
        let back = pump(&mut hops, (a0, to, p1), now);
        assert!(back.is_empty(), "nothing leaves by UDP: {back:?}");
        let (conn, resp) = hops[0].node.poll_tcp_response().unwrap();
        assert_eq!((conn, resp[0]), (42, kind::ANNOUNCE_RESPONSE));
        assert_eq!(announce_response_header(&resp).unwrap().0, 78);
        assert!(hops[0].node.handle_tcp_request(42, &pkt[..40]).is_err());
    }

    #[test]
    fn announce_through_three_hops_sizes_and_store() {
        let mut rng = crate::crypto::seeded_rng(101);
        let now = Instant::now();
        let mut hops: Vec<Hop> = (1..=4).map(|i| hop(i, now)).collect();
        let me_dht = KeyPair::generate(&mut rng);
        let me_addr = addr(100);
        let real = KeyPair::generate(&mut rng);
        let data_kp = KeyPair::generate(&mut rng);
        let path = PathKeys {
            nodes: [
                PackedNode::new(hops[0].addr, hops[0].dht.pk()),
                PackedNode::new(hops[1].addr, hops[1].dht.pk()),
                PackedNode::new(hops[2].addr, hops[2].dht.pk()),
            ],
            temp1: KeyPair::generate(&mut rng),
            temp2: KeyPair::generate(&mut rng),
        };
        let d = &hops[3];
        let (d_addr, d_pk) = (d.addr, d.dht.pk());
        let ann = announce_request(&random_nonce(&mut rng), &real, &d_pk, &[0; 32], &real.pk, &data_kp.pk, 77);
        assert_eq!(ann.len(), 177);
        let pkt = onion_request(&random_nonce(&mut rng), &me_dht, &path, d_addr, &ann);
        assert_eq!(pkt.len(), 403, "c-toxcore's 0x80 announce is 403 bytes");
        // layer sizes on the way (395, 387, 354 at D)
        let ad: Vec<SocketAddr> = hops.iter().map(|h| h.addr).collect();
        hops[0].feed(now, me_addr, &pkt).unwrap();
        let (to, p1) = hops[0].node.poll_transmit().unwrap();
        assert_eq!((to, p1[0], p1.len()), (ad[1], 0x81, 395));
        hops[1].feed(now, ad[0], &p1).unwrap();
        let (to, p2) = hops[1].node.poll_transmit().unwrap();
        assert_eq!((to, p2[0], p2.len()), (ad[2], 0x82, 387));
        hops[2].feed(now, ad[1], &p2).unwrap();
        let (to, p3) = hops[2].node.poll_transmit().unwrap();
        assert_eq!((to, p3[0], p3.len()), (d_addr, 0x83, 354));
        // the rest of the way: response comes back to us as a bare 0x84
        let back = pump(&mut hops, (ad[2], d_addr, p3), now);
        assert_eq!(back.len(), 1);
        let (from, to, resp) = &back[0];
        assert_eq!((*from, *to), (ad[0], me_addr));
        let (sb, n, boxed) = announce_response_header(resp).unwrap();
        assert_eq!(sb, 77);
        let pl = SharedKey::precompute(&d_pk, &real.sk).decrypt(&n, boxed).unwrap();
        assert_eq!(pl[0], 0, "first contact: not stored, ping id given");
        let ping_id: [u8; 32] = pl[1..33].try_into().unwrap();
        assert_eq!(hops[3].node.entry_count(), 0);
        // ... but heard: the node's own client can already reach `real` along that path
        assert_eq!(hops[3].node.poll_event(), Some(OnionNodeEvent::Heard { pk: real.pk, data_pk: data_kp.pk }));
        let mut local = vec![kind::ONION_DATA_REQUEST];
        local.extend_from_slice(&real.pk.0);
        local.extend_from_slice(&[4u8; 24 + 32 + 16 + 5]);
        hops[3].node.deliver_local(now, &local).unwrap();
        let (to, p) = hops[3].node.poll_transmit().unwrap();
        let back = pump(&mut hops, (d_addr, to, p), now);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].1, back[0].2[0]), (me_addr, kind::ONION_DATA_RESPONSE));
        assert_eq!(&back[0].2[1..], &[4u8; 24 + 32 + 16 + 5][..]);
        let mut stranger = local.clone();
        stranger[1] ^= 1;
        assert_eq!(hops[3].node.deliver_local(now, &stranger), Err(OnionError::NotAnnounced));
        assert!(hops[3].node.deliver_local(now, &local[..10]).is_err(), "short requests are refused");
        // heard paths are forgotten after HEARD_TIMEOUT
        assert_eq!(hops[3].node.deliver_local(now + HEARD_TIMEOUT, &local), Err(OnionError::NotAnnounced));
        // second round with the ping id: stored (is_stored = 2)
        let ann = announce_request(&random_nonce(&mut rng), &real, &d_pk, &ping_id, &real.pk, &data_kp.pk, 78);
        let pkt = onion_request(&random_nonce(&mut rng), &me_dht, &path, d_addr, &ann);
        let back = pump(&mut hops, (me_addr, ad[0], pkt), now);
        let (sb, n, boxed) = announce_response_header(&back[0].2).unwrap();
        assert_eq!(sb, 78);
        let pl = SharedKey::precompute(&d_pk, &real.sk).decrypt(&n, boxed).unwrap();
        assert_eq!(pl[0], 2);
        assert_eq!(hops[3].node.announced_data_pk(&real.pk), Some(data_kp.pk));
        assert_eq!(hops[3].node.poll_event(), Some(OnionNodeEvent::Stored { pk: real.pk, data_pk: data_kp.pk }));

        // a searcher (temporary key, ping id 0) learns the data pk: is_stored = 1
        let searcher = KeyPair::generate(&mut rng);
        let ann =
            announce_request(&random_nonce(&mut rng), &searcher, &d_pk, &[0; 32], &real.pk, &PublicKey([0; 32]), 5);
        let pkt = onion_request(&random_nonce(&mut rng), &me_dht, &path, d_addr, &ann);
        let back = pump(&mut hops, (me_addr, ad[0], pkt), now);
        let (_, n, boxed) = announce_response_header(&back[0].2).unwrap();
        let pl = SharedKey::precompute(&d_pk, &searcher.sk).decrypt(&n, boxed).unwrap();
        assert_eq!(pl[0], 1);
        assert_eq!(&pl[1..33], &data_kp.pk.0);
        assert!(decode_node_entries_all(&pl[33..], 4).is_ok());

        // onion data 0x85 to the announced key is routed back along the stored path as 0x86
        let mut d85 = vec![kind::ONION_DATA_REQUEST];
        d85.extend_from_slice(&real.pk.0);
        d85.extend_from_slice(&[9u8; 24 + 32 + 16 + 5]);
        let pkt = onion_request(&random_nonce(&mut rng), &me_dht, &path, d_addr, &d85);
        let back = pump(&mut hops, (me_addr, ad[0], pkt), now);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1, me_addr);
        assert_eq!(back[0].2[0], kind::ONION_DATA_RESPONSE);
        assert_eq!(&back[0].2[1..], &[9u8; 24 + 32 + 16 + 5][..]);
        // data for a key not announced: dropped
        let mut unk = d85.clone();
        unk[1] ^= 1;
        let p = onion_request(&random_nonce(&mut rng), &me_dht, &path, d_addr, &unk);
        let mut q = vec![(me_addr, ad[0], p)];
        let mut err = None;
        while let Some((from, to, pkt)) = q.pop() {
            let h = hops.iter_mut().find(|h| h.addr == to).unwrap();
            match h.feed(now, from, &pkt) {
                Ok(()) => {
                    while let Some((t, p)) = h.node.poll_transmit() {
                        q.push((h.addr, t, p));
                    }
                }
                Err(e) => err = Some(e),
            }
        }
        assert_eq!(err, Some(OnionError::NotAnnounced));
    }

    #[test]
    fn forged_ping_ids_and_foreign_sendbacks_refused() {
        let mut rng = crate::crypto::seeded_rng(102);
        let now = Instant::now();
        let mut h = hop(1, now);
        let real = KeyPair::generate(&mut rng);
        let c = addr(3);
        let mut ann = announce_request(&random_nonce(&mut rng), &real, &h.dht.pk(), &[7; 32], &real.pk, &real.pk, 1);
        ann.extend_from_slice(&[0u8; RETURN_3]);
        h.node.handle_packet(now, c, &ann, &h.dht).unwrap();
        assert_eq!(h.node.entry_count(), 0, "a made-up ping id does not store");
        let (_, resp) = h.node.poll_transmit().unwrap();
        assert_eq!(resp[0], kind::ONION_RESPONSE_3);
        let inner = &resp[1 + RETURN_3..];
        let (_, n, boxed) = announce_response_header(inner).unwrap();
        let pl = SharedKey::precompute(&h.dht.pk(), &real.sk).decrypt(&n, boxed).unwrap();
        let pid: [u8; 32] = pl[1..33].try_into().unwrap();
        // the token is bound to the last hop's address: from elsewhere it does not store
        let mut ann2 = announce_request(&random_nonce(&mut rng), &real, &h.dht.pk(), &pid, &real.pk, &real.pk, 1);
        ann2.extend_from_slice(&[0u8; RETURN_3]);
        h.node.handle_packet(now, addr(4), &ann2, &h.dht).unwrap();
        assert_eq!(h.node.entry_count(), 0);
        // … and it expires after two windows
        h.node.handle_packet(now + Duration::from_secs(601), c, &ann2, &h.dht).unwrap();
        assert_eq!(h.node.entry_count(), 0);
        h.node.handle_packet(now, c, &ann2, &h.dht).unwrap();
        assert_eq!(h.node.entry_count(), 1);
        // responses with sendbacks not made by us
        let mut r = vec![kind::ONION_RESPONSE_1];
        r.extend_from_slice(&[1u8; RETURN_1]);
        r.push(kind::ANNOUNCE_RESPONSE);
        assert_eq!(h.node.handle_packet(now, c, &r, &h.dht), Err(OnionError::BadSendback));
        // a response that is not 0x84/0x86 does not leave the onion
        let mut s1 = vec![kind::ONION_RESPONSE_1];
        s1.extend_from_slice(&h.node.seal_sendback(&encode_ip_port(&addr(9))));
        s1.push(0x00);
        assert_eq!(h.node.handle_packet(now, c, &s1, &h.dht), Err(OnionError::BadResponseKind(0)));
        // after two key rotations our old sendback no longer opens
        let mut ok = s1.clone();
        *ok.last_mut().unwrap() = kind::ONION_DATA_RESPONSE;
        h.node.handle_packet(now, c, &ok, &h.dht).unwrap();
        h.node.tick(now + SENDBACK_KEY_LIFETIME);
        h.node.handle_packet(now, c, &ok, &h.dht).unwrap();
        h.node.tick(now + SENDBACK_KEY_LIFETIME * 2 + Duration::from_secs(2));
        assert_eq!(h.node.handle_packet(now, c, &ok, &h.dht), Err(OnionError::BadSendback));
        // entries expire
        h.node.tick(now + ENTRY_TIMEOUT + Duration::from_secs(1));
        assert_eq!(h.node.entry_count(), 0);
        // junk
        assert!(h.node.handle_packet(now, c, &[], &h.dht).is_err());
        assert!(h.node.handle_packet(now, c, &[0x80; 50], &h.dht).is_err());
        assert!(h.node.handle_packet(now, c, &[0x82; 400], &h.dht).is_err());
        assert!(h.node.handle_packet(now, c, &vec![0x85; 1500], &h.dht).is_err());
    }

    #[test]
    fn store_keeps_entries_closest_to_our_key() {
        let mut rng = crate::crypto::seeded_rng(103);
        let now = Instant::now();
        let mut h = hop(1, now);
        let me = h.dht.pk();
        let mut kps: Vec<KeyPair> = (0..MAX_ENTRIES + 20).map(|_| KeyPair::generate(&mut rng)).collect();
        for kp in &kps {
            let c = addr(3);
            let pid = h.node.ping_id(h.node.window(now) + 1, &kp.pk, &c);
            let mut ann = announce_request(&random_nonce(&mut rng), kp, &me, &pid, &kp.pk, &kp.pk, 1);
            ann.extend_from_slice(&[0u8; RETURN_3]);
            h.node.handle_packet(now, c, &ann, &h.dht).unwrap();
        }
        assert_eq!(h.node.entry_count(), MAX_ENTRIES);
        kps.sort_by(|a, b| closer(&me, &a.pk, &b.pk));
        for (i, kp) in kps.iter().enumerate() {
            assert_eq!(h.node.announced_data_pk(&kp.pk).is_some(), i < MAX_ENTRIES, "rank {i}");
        }
    }
}
