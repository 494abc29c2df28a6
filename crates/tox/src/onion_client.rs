//! The onion CLIENT (docs/protocols/tox.md#announce): announce ourselves at the DHT nodes closest to our
//! long-term key, search friends' announcements, and send / receive onion data.
//!
//! - Paths: three random good DHT nodes each; [`NUM_PATHS`] for announcing and as many
//!   for searching. An unconfirmed path is dropped after [`PATH_TRIES_UNCONFIRMED`]
//!   unanswered requests ([`PATH_TIMEOUT_UNCONFIRMED`] each), a confirmed one after
//!   [`PATH_TRIES_CONFIRMED`] ([`PATH_TIMEOUT_CONFIRMED`]), any after [`PATH_LIFETIME`].
//! - Announce: 0x83 with `ping_id` 0 first; the node answers `is_stored = 0` and a ping id;
//!   we repeat with it at once until `is_stored = 2`. Every answer lists up to 4 nodes
//!   closer to our key; we keep the [`MAX_ANNOUNCE_NODES`] closest. Re-announced every
//!   [`ANNOUNCE_INTERVAL`] when stored, every [`ANNOUNCE_INTERVAL_NOT_STORED`] until then.
//! - Friend search: 0x83 with a per-friend temporary key, the friend's key as searched
//!   key and a zero data key, iterating toward closer nodes ([`MAX_FRIEND_NODES`] kept);
//!   `is_stored = 1` means the friend is announced there and carries its data key.
//! - Data: 0x85 to each node where the friend is announced; 0x86 arriving at us is opened
//!   with our per-session data key, then the sender's long-term key.
//!
//! Responses are accepted only for sendbacks we issued, arriving from the first hop of the
//! path they were sent through, once.

use crate::crypto::{
    random_nonce, random_u64, rng_from_seed, KeyPair, PublicKey, RngSeed, SharedKey, ToxRng, MAC_SIZE, NONCE_SIZE,
    PUBLIC_KEY_SIZE,
};
use crate::dht::Dht;
use crate::onion::build::{announce_request, announce_response_header, onion_request, onion_request_tcp, PathKeys};
use crate::onion::{OnionError, ONION_MAX_PACKET_SIZE, PING_ID_SIZE};
use crate::packet::{
    closer, decode_node_entries_all, kind, limits::MAX_SENT_NODES, nonce_at, pk_at, PackedNode, PacketError,
};
use rand::seq::IndexedRandom;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Paths kept for announcing (and as many for searching).
pub const NUM_PATHS: usize = 6;
/// Nodes we announce ourselves to.
pub const MAX_ANNOUNCE_NODES: usize = 12;
/// Nodes kept per searched friend.
pub const MAX_FRIEND_NODES: usize = 8;
/// Friends searched at most.
pub const MAX_FRIENDS: usize = 1024;
/// Re-announce to a node that stored us.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(15);
/// Announce again to a node that has not stored us yet.
pub const ANNOUNCE_INTERVAL_NOT_STORED: Duration = Duration::from_secs(3);
/// Search again at a node while the friend is not found.
pub const SEARCH_INTERVAL: Duration = Duration::from_secs(3);
/// How often a friend not yet found is searched, by time since the search (re)started:
/// a friend who just came online announces within seconds, one offline for long is
/// unlikely to appear in the next second (c-toxcore backs off exponentially too).
pub fn search_interval(since: Duration) -> Duration {
    let s = since.as_secs();
    match s {
        0..10 => Duration::from_secs(1),
        10..30 => Duration::from_secs(2),
        30..120 => SEARCH_INTERVAL,
        _ => (SEARCH_INTERVAL * 2u32.saturating_pow(((s - 120) / 120).min(5) as u32 + 1)).min(SEARCH_INTERVAL_MAX),
    }
}
/// The longest gap between searches for a friend not found.
pub const SEARCH_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// … once found.
pub const SEARCH_INTERVAL_FOUND: Duration = Duration::from_secs(15);
/// Unconfirmed path: a request counts as lost after this long.
pub const PATH_TIMEOUT_UNCONFIRMED: Duration = Duration::from_secs(4);
/// Unconfirmed path: dropped after this many lost requests.
pub const PATH_TRIES_UNCONFIRMED: u8 = 2;
/// Confirmed path: a request counts as lost after this long.
pub const PATH_TIMEOUT_CONFIRMED: Duration = Duration::from_secs(10);
/// Confirmed path: dropped after this many lost requests in a row.
pub const PATH_TRIES_CONFIRMED: u8 = 4;
/// A path is replaced after this long whatever happens.
pub const PATH_LIFETIME: Duration = Duration::from_secs(1200);
/// A node that missed this many answers in a row leaves our lists.
pub const NODE_MAX_MISSES: u8 = 3;
/// Outstanding requests at most.
pub const MAX_PENDING: usize = 1024;
/// A data key our own onion node heard is used this long (its return path ages).
pub const LOCAL_FRESH: Duration = crate::onion::HEARD_TIMEOUT;
/// Inner onion data (`[id][data]`) at most.
pub const MAX_DATA_SIZE: usize = ONION_MAX_PACKET_SIZE
    - (1 + PUBLIC_KEY_SIZE + NONCE_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE)
    - 200;
/// Timer granularity.
pub const TICK: Duration = Duration::from_millis(250);
/// TCP relays used as first hops at most (c-toxcore keeps NUM_ONION_TCP_CONNECTIONS = 3
/// connected; the driver may name a few more).
pub const MAX_TCP_RELAYS: usize = 8;

/// What the onion client tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnionEvent {
    /// We are stored at ≥ 1 node (after not being stored anywhere).
    Announced,
    /// A friend is announced somewhere (its data key is known).
    FriendFound { real_pk: PublicKey },
    /// Decrypted onion data `[id][data]` (0x9c DHT-PK, 0x20 friend request).
    Data { from_real_pk: PublicKey, data: Vec<u8> },
}

struct Path {
    keys: PathKeys,
    /// A TCP path: its first hop is this relay we are connected to, not `keys.nodes[0]`
    /// (docs/protocols/tox.md#tcp-relays, relay packet 8).
    relay: Option<PublicKey>,
    created: Instant,
    confirmed: bool,
    misses: u8,
    /// Last answer through this path.
    last_ok: Option<Instant>,
}

#[derive(Clone)]
struct ANode {
    pk: PublicKey,
    addr: SocketAddr,
    ping_id: [u8; PING_ID_SIZE],
    /// Self list: stored us. Friend lists: the friend is announced here.
    stored: bool,
    last_sent: Option<Instant>,
    misses: u8,
    /// The path this node is asked through (nodes bind ping ids to the last hop).
    path: Option<u64>,
}

impl ANode {
    fn new(n: &PackedNode) -> Self {
        ANode {
            pk: n.pk,
            addr: n.addr,
            ping_id: [0; PING_ID_SIZE],
            stored: false,
            last_sent: None,
            misses: 0,
            path: None,
        }
    }
}

struct Friend {
    temp: KeyPair,
    nodes: Vec<ANode>,
    data_pk: Option<PublicKey>,
    /// When the current search began (the interval grows from here).
    search_start: Instant,
    /// The friend's data key as our own onion node heard it announce (and when):
    /// data for it also goes out through [`OnionClient::poll_local`].
    local: Option<(PublicKey, Instant)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Me,
    Friend(PublicKey),
}

/// Where a request left us: a UDP first hop, or a TCP relay (its answer comes back as relay
/// packet 9 on that relay).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hop {
    Udp(SocketAddr),
    Tcp(PublicKey),
}

struct Pending {
    target: Target,
    node: PublicKey,
    path: u64,
    first_hop: Hop,
    sent: Instant,
    timeout: Duration,
}

/// The onion client.
pub struct OnionClient {
    real: KeyPair,
    data_kp: KeyPair,
    announce_nodes: Vec<ANode>,
    friends: BTreeMap<PublicKey, Friend>,
    paths: [BTreeMap<u64, Path>; 2],
    next_path_id: u64,
    pending: BTreeMap<u64, Pending>,
    shared: BTreeMap<PublicKey, SharedKey>,
    announced: bool,
    /// Time of the last tick (stamps requests made between ticks).
    now: Instant,
    /// Our DHT keys (first onion layer), taken from the DHT at each tick.
    dht_keys: Option<KeyPair>,
    next_tick: Instant,
    transmit: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Onion requests for a TCP relay (packet 8 bodies), by relay key.
    tcp_transmit: VecDeque<(PublicKey, Vec<u8>)>,
    /// The TCP relays the driver is connected to (first hops of TCP paths).
    tcp_relays: Vec<PublicKey>,
    local_out: VecDeque<Vec<u8>>,
    events: VecDeque<OnionEvent>,
    announce_requests: u64,
    announce_nodes_added: u64,
    /// Data key, temporary keys, path choices, nonces and sendbacks come from here.
    rng: ToxRng,
}

const ANNOUNCE_POOL: usize = 0;
const SEARCH_POOL: usize = 1;
const MAX_SHARED_KEYS: usize = 1024;

impl OnionClient {
    /// `real_keys` is the long-term identity (made by the caller); `rng_seed` seeds the
    /// per-session data key and every random choice (see [`ToxRng`]).
    pub fn new(real_keys: KeyPair, rng_seed: RngSeed, now: Instant) -> Self {
        let mut rng = rng_from_seed(rng_seed);
        OnionClient {
            real: real_keys,
            data_kp: KeyPair::generate(&mut rng),
            rng,
            announce_nodes: Vec::new(),
            friends: BTreeMap::new(),
            paths: [BTreeMap::new(), BTreeMap::new()],
            next_path_id: 1,
            pending: BTreeMap::new(),
            shared: BTreeMap::new(),
            announced: false,
            now,
            dht_keys: None,
            announce_requests: 0,
            announce_nodes_added: 0,
            next_tick: now,
            transmit: VecDeque::new(),
            tcp_transmit: VecDeque::new(),
            tcp_relays: Vec::new(),
            local_out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Our per-session data public key (what we announce; 0x86 for us is boxed to it).
    pub fn data_pk(&self) -> PublicKey {
        self.data_kp.pk
    }

    /// Our long-term public key.
    pub fn real_pk(&self) -> PublicKey {
        self.real.pk
    }

    pub fn add_friend(&mut self, now: Instant, real_pk: PublicKey) {
        if real_pk == self.real.pk || self.friends.len() >= MAX_FRIENDS {
            return;
        }
        self.now = self.now.max(now);
        let rng = &mut self.rng;
        self.friends.entry(real_pk).or_insert_with(|| Friend {
            temp: KeyPair::generate(rng),
            nodes: Vec::new(),
            data_pk: None,
            search_start: now,
            local: None,
        });
    }

    /// Searches the friend at the fast pace again (it went offline: it may be back soon).
    pub fn search_again(&mut self, now: Instant, real_pk: &PublicKey) {
        if let Some(f) = self.friends.get_mut(real_pk) {
            f.search_start = now;
            for n in &mut f.nodes {
                n.last_sent = None;
            }
        }
        self.next_tick = self.next_tick.min(now);
    }

    /// Our own onion node heard the friend announce itself with `data_pk` (an
    /// authenticated request, see `OnionNodeEvent::Heard`): it is found, and data for it
    /// is also handed out by [`Self::poll_local`] for that node to route.
    pub fn local_announcement(&mut self, now: Instant, real_pk: &PublicKey, data_pk: PublicKey) {
        let Some(f) = self.friends.get_mut(real_pk) else { return };
        f.local = Some((data_pk, now));
        if f.data_pk != Some(data_pk) {
            f.data_pk = Some(data_pk);
            self.events.push_back(OnionEvent::FriendFound { real_pk: *real_pk });
        }
    }

    /// Onion data requests `[0x85][dest pk][nonce][temp pk][box]` for our own onion node.
    pub fn poll_local(&mut self) -> Option<Vec<u8>> {
        self.local_out.pop_front()
    }

    pub fn remove_friend(&mut self, real_pk: &PublicKey) {
        self.friends.remove(real_pk);
    }

    /// Stored at ≥ 1 node.
    pub fn is_announced(&self) -> bool {
        self.announce_nodes.iter().any(|n| n.stored)
    }

    /// Announce requests (for ourselves) sent so far.
    pub fn announce_requests_sent(&self) -> u64 {
        self.announce_requests
    }

    /// Number of nodes that report us stored.
    pub fn announced_count(&self) -> usize {
        self.announce_nodes.iter().filter(|n| n.stored).count()
    }

    /// The friend is announced at ≥ 1 node we know of (its data key is known).
    pub fn is_friend_found(&self, real_pk: &PublicKey) -> bool {
        self.friends
            .get(real_pk)
            .is_some_and(|f| f.data_pk.is_some() && (f.nodes.iter().any(|n| n.stored) || f.local.is_some()))
    }

    /// The friend's data key as last reported.
    pub fn friend_data_pk(&self, real_pk: &PublicKey) -> Option<PublicKey> {
        self.friends.get(real_pk)?.data_pk
    }

    fn shared_key(&mut self, pk: &PublicKey) -> SharedKey {
        if let Some(k) = self.shared.get(pk) {
            return k.clone();
        }
        let k = SharedKey::precompute(pk, &self.real.sk);
        if self.shared.len() >= MAX_SHARED_KEYS {
            if let Some(v) = self.shared.keys().next().copied() {
                self.shared.remove(&v);
            }
        }
        self.shared.insert(*pk, k.clone());
        k
    }

    /// Sends `inner` (`[id][data]`) to every node where the friend is announced; returns
    /// how many copies went out (0: not found yet, or no path).
    pub fn send_data(&mut self, now: Instant, to_real_pk: &PublicKey, inner: &[u8]) -> usize {
        if inner.is_empty() || inner.len() > MAX_DATA_SIZE {
            return 0;
        }
        self.now = self.now.max(now);
        let Some(f) = self.friends.get(to_real_pk) else { return 0 };
        let Some(data_pk) = f.data_pk else { return 0 };
        let nodes: Vec<SocketAddr> = f.nodes.iter().filter(|n| n.stored).map(|n| n.addr).collect();
        let local =
            f.local.filter(|(k, at)| *k == data_pk && self.now.saturating_duration_since(*at) < LOCAL_FRESH).is_some();
        let mut sent = 0;
        if local {
            let p = self.data_request(to_real_pk, &data_pk, inner);
            self.local_out.push_back(p);
            sent += 1;
        }
        for naddr in nodes {
            let Some(pid) = self.pick_path(SEARCH_POOL) else { break };
            let p = self.data_request(to_real_pk, &data_pk, inner);
            if self.send_via(SEARCH_POOL, pid, naddr, &p, None).is_some() {
                sent += 1;
            }
        }
        sent
    }

    /// `[0x85][dest pk][nonce][temp pk][box(temp, data pk)([our real pk][box(real keys)(inner)])]`.
    fn data_request(&mut self, to_real_pk: &PublicKey, data_pk: &PublicKey, inner: &[u8]) -> Vec<u8> {
        let nonce = random_nonce(&mut self.rng);
        let inner_box = self.shared_key(to_real_pk).encrypt(&nonce, inner);
        let mut mid = Vec::with_capacity(PUBLIC_KEY_SIZE + inner_box.len());
        mid.extend_from_slice(&self.real.pk.0);
        mid.extend_from_slice(&inner_box);
        let temp = KeyPair::generate(&mut self.rng);
        let outer = SharedKey::precompute(data_pk, &temp.sk).encrypt(&nonce, &mid);
        let mut p = Vec::with_capacity(1 + 2 * PUBLIC_KEY_SIZE + NONCE_SIZE + outer.len());
        p.push(kind::ONION_DATA_REQUEST);
        p.extend_from_slice(&to_real_pk.0);
        p.extend_from_slice(&nonce);
        p.extend_from_slice(&temp.pk.0);
        p.extend_from_slice(&outer);
        p
    }

    /// Path keys of a pool's path, and the packet sent through it; with `track`, a
    /// pending entry is made (returns its sendback).
    fn send_via(
        &mut self,
        pool: usize,
        pid: u64,
        dest: SocketAddr,
        payload: &[u8],
        track: Option<(Target, PublicKey, u64)>,
    ) -> Option<()> {
        let dht_keys = self.dht_keys.clone()?;
        let path = self.paths[pool].get(&pid)?;
        let nonce = random_nonce(&mut self.rng);
        let (pkt, first) = match path.relay {
            Some(relay) => (onion_request_tcp(&nonce, &path.keys, dest, payload), Hop::Tcp(relay)),
            None => (onion_request(&nonce, &dht_keys, &path.keys, dest, payload), Hop::Udp(path.keys.nodes[0].addr)),
        };
        if let Some((target, node, sendback)) = track {
            let timeout = if path.confirmed { PATH_TIMEOUT_CONFIRMED } else { PATH_TIMEOUT_UNCONFIRMED };
            self.pending
                .insert(sendback, Pending { target, node, path: pid, first_hop: first, sent: self.now, timeout });
        }
        match first {
            Hop::Udp(a) => self.transmit.push_back((a, pkt)),
            Hop::Tcp(r) => self.tcp_transmit.push_back((r, pkt)),
        }
        Some(())
    }

    /// The node's path if it still exists, else a random one.
    fn node_path(&mut self, pool: usize, current: Option<u64>) -> Option<u64> {
        match current {
            Some(p) if self.paths[pool].contains_key(&p) => Some(p),
            _ => self.pick_path(pool),
        }
    }

    fn pick_path(&mut self, pool: usize) -> Option<u64> {
        let ids: Vec<u64> = self.paths[pool].keys().copied().collect();
        ids.choose(&mut self.rng).copied()
    }

    fn refill_paths(&mut self, dht: &Dht, now: Instant) {
        // Paths built while we knew fewer than 3 nodes repeat nodes; replace them once we
        // know enough.
        let enough = dht.random_nodes(now, 3, &mut self.rng).len() == 3;
        // No DHT node answers over UDP (blocked, or switched off) but TCP relays are
        // connected: paths start at a relay, as c-toxcore's when it is not UDP-connected.
        let tcp = self.use_tcp(dht);
        let relays = self.tcp_relays.clone();
        for pool in [ANNOUNCE_POOL, SEARCH_POOL] {
            self.paths[pool].retain(|_, p| {
                if p.relay.is_some() != tcp || p.relay.is_some_and(|r| !relays.contains(&r)) {
                    return false;
                }
                let max = if p.confirmed { PATH_TRIES_CONFIRMED } else { PATH_TRIES_UNCONFIRMED };
                let [a, b, c] = &p.keys.nodes;
                let degenerate = a.pk == b.pk || b.pk == c.pk || a.pk == c.pk;
                // a path that lost a request and has not carried an answer for as long as
                // its tries take is dead even when it is used too rarely to reach `max`
                let quiet = now.saturating_duration_since(p.last_ok.unwrap_or(p.created));
                let stale = p.misses > 0 && quiet > PATH_TIMEOUT_CONFIRMED * u32::from(PATH_TRIES_CONFIRMED);
                p.misses < max
                    && !stale
                    && now.saturating_duration_since(p.created) < PATH_LIFETIME
                    && !(enough && degenerate)
            });
            while tcp && self.paths[pool].len() < NUM_PATHS {
                let Some(keys) = self.tcp_path(dht, now) else { break };
                let id = self.next_path_id;
                self.next_path_id += 1;
                let relay = Some(keys.nodes[0].pk);
                self.paths[pool]
                    .insert(id, Path { keys, relay, created: now, confirmed: false, misses: 0, last_ok: None });
            }
            while !tcp && self.paths[pool].len() < NUM_PATHS {
                let mut nodes = dht.random_nodes(now, 3, &mut self.rng);
                if nodes.is_empty() {
                    return;
                }
                // Tiny networks: repeat nodes (c-toxcore tolerates it).
                while nodes.len() < 3 {
                    let n = nodes[nodes.len() % nodes.len().max(1)];
                    nodes.push(n);
                }
                let keys = PathKeys {
                    nodes: [nodes[0], nodes[1], nodes[2]],
                    temp1: KeyPair::generate(&mut self.rng),
                    temp2: KeyPair::generate(&mut self.rng),
                };
                let id = self.next_path_id;
                self.next_path_id += 1;
                self.paths[pool]
                    .insert(id, Path { keys, relay: None, created: now, confirmed: false, misses: 0, last_ok: None });
            }
        }
    }

    /// Over UDP or through a TCP relay? TCP when relays are connected and no DHT node
    /// answers us over UDP.
    fn use_tcp(&self, dht: &Dht) -> bool {
        !self.tcp_relays.is_empty() && !dht.is_connected()
    }

    /// A TCP path: a connected relay, then two nodes that carry it on over UDP — good DHT
    /// nodes if any, else nodes that answered our announces, else the bootstrap nodes
    /// (c-toxcore's path nodes are the same kinds).
    fn tcp_path(&mut self, dht: &Dht, now: Instant) -> Option<PathKeys> {
        let relay = *self.tcp_relays.choose(&mut self.rng)?;
        let mut pool = dht.random_nodes(now, 2, &mut self.rng);
        if pool.len() < 2 {
            // Nodes that answered us are known to be up; until there are some, the
            // bootstrap nodes, each hop drawn on its own (repeats allowed, as c-toxcore),
            // so a dead one spoils only some paths, which then time out.
            let answered: Vec<PackedNode> = self
                .announce_nodes
                .iter()
                .filter(|n| n.stored || n.ping_id != [0; PING_ID_SIZE])
                .map(|n| PackedNode::new(n.addr, n.pk))
                .collect();
            // Among bootstrap nodes, those that are also a relay we are connected to (the
            // same key: tox-bootstrapd's relay and DHT node) are up.
            let boot = dht.bootstrap_nodes();
            let live: Vec<PackedNode> = boot.iter().filter(|n| self.tcp_relays.contains(&n.pk)).copied().collect();
            let more = if !answered.is_empty() {
                answered
            } else if !live.is_empty() {
                live
            } else {
                boot.to_vec()
            };
            while pool.len() < 2 {
                let Some(n) = more.choose(&mut self.rng) else { break };
                pool.push(*n);
            }
        }
        let first = *pool.first()?;
        let second = pool.get(1).copied().unwrap_or(first);
        let placeholder = SocketAddr::from(([0, 0, 0, 0], 0));
        Some(PathKeys {
            nodes: [PackedNode::new(placeholder, relay), first, second],
            temp1: KeyPair::generate(&mut self.rng),
            temp2: KeyPair::generate(&mut self.rng),
        })
    }

    /// The TCP relays we are connected to (by key); paths through others are dropped.
    pub fn set_tcp_relays(&mut self, relays: Vec<PublicKey>) {
        self.tcp_relays = relays;
        self.tcp_relays.truncate(MAX_TCP_RELAYS);
        self.next_tick = self.now;
    }

    /// Onion requests for a TCP relay: `(relay key, packet 8 body)`.
    pub fn poll_tcp_transmit(&mut self) -> Option<(PublicKey, Vec<u8>)> {
        self.tcp_transmit.pop_front()
    }

    /// An onion response (0x84 / 0x86) that came back as packet 9 on the relay `relay`.
    pub fn handle_tcp_packet(&mut self, now: Instant, relay: PublicKey, data: &[u8]) -> Result<(), OnionError> {
        self.dispatch(now, Hop::Tcp(relay), data)
    }

    /// Handles 0x84 and 0x86 arriving at us. (`dht` is part of the contract's signature;
    /// responses carry everything needed, so it is not consulted.)
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8], _dht: &Dht) -> Result<(), OnionError> {
        self.dispatch(now, Hop::Udp(from), data)
    }

    fn dispatch(&mut self, now: Instant, from: Hop, data: &[u8]) -> Result<(), OnionError> {
        if data.len() > ONION_MAX_PACKET_SIZE {
            return Err(
                PacketError::TooLong { what: "onion response", max: ONION_MAX_PACKET_SIZE, got: data.len() }.into()
            );
        }
        match data.first() {
            Some(&kind::ANNOUNCE_RESPONSE) => self.announce_response(now, from, data),
            Some(&kind::ONION_DATA_RESPONSE) => self.data_response(data),
            Some(&k) => Err(OnionError::NotOnion(k)),
            None => Err(PacketError::Empty.into()),
        }
    }

    fn announce_response(&mut self, now: Instant, from: Hop, data: &[u8]) -> Result<(), OnionError> {
        let (sendback, nonce, boxed) = announce_response_header(data)?;
        let p = match self.pending.get(&sendback) {
            Some(p) if p.first_hop == from => p,
            _ => return Err(OnionError::Other("announce response we did not ask for")),
        };
        let (target, node_pk, path) = (p.target, p.node, p.path);
        let key = match target {
            Target::Me => self.shared_key(&node_pk),
            Target::Friend(f) => match self.friends.get(&f) {
                Some(fr) => SharedKey::precompute(&node_pk, &fr.temp.sk),
                None => {
                    self.pending.remove(&sendback);
                    return Err(OnionError::Other("response for a removed friend"));
                }
            },
        };
        let plain = key.decrypt(&nonce, boxed).ok_or(PacketError::Decrypt)?;
        self.pending.remove(&sendback);
        let is_stored = plain.first().copied().ok_or(PacketError::Empty)?;
        let value: [u8; 32] = plain.get(1..33).and_then(|s| s.try_into().ok()).ok_or(PacketError::Empty)?;
        let nodes: Vec<PackedNode> = decode_node_entries_all(&plain[33..], MAX_SENT_NODES)?
            .into_iter()
            .filter(|e| !e.tcp)
            .map(|e| e.node)
            .collect();
        for pool in &mut self.paths {
            if let Some(p) = pool.get_mut(&path) {
                p.confirmed = true;
                p.last_ok = Some(now);
                p.misses = 0;
            }
        }
        match target {
            Target::Me => {
                let was = self.is_announced();
                let mut resend = None;
                if let Some(n) = self.announce_nodes.iter_mut().find(|n| n.pk == node_pk) {
                    n.misses = 0;
                    n.stored = is_stored == 2;
                    if is_stored != 2 && n.ping_id != value {
                        n.ping_id = value;
                        resend = Some(n.pk);
                    } else {
                        n.ping_id = value;
                    }
                }
                if !was && self.is_announced() && !self.announced {
                    self.announced = true;
                    self.events.push_back(OnionEvent::Announced);
                }
                let me = self.real.pk;
                self.announce_nodes_added +=
                    Self::merge_nodes(&mut self.announce_nodes, &nodes, &me, MAX_ANNOUNCE_NODES) as u64;
                if let Some(pk) = resend {
                    // repeat at once with the fresh ping id
                    if let Some(n) = self.announce_nodes.iter_mut().find(|n| n.pk == pk) {
                        n.last_sent = None;
                    }
                    self.announce_due(now);
                }
            }
            Target::Friend(fpk) => {
                let mut found = None;
                if let Some(f) = self.friends.get_mut(&fpk) {
                    if let Some(n) = f.nodes.iter_mut().find(|n| n.pk == node_pk) {
                        n.misses = 0;
                        n.stored = is_stored == 1;
                    }
                    if is_stored == 1 {
                        let dpk = PublicKey(value);
                        if f.data_pk != Some(dpk) {
                            f.data_pk = Some(dpk);
                            found = Some(fpk);
                        }
                    }
                    Self::merge_nodes(&mut f.nodes, &nodes, &fpk, MAX_FRIEND_NODES);
                }
                if let Some(real_pk) = found {
                    self.events.push_back(OnionEvent::FriendFound { real_pk });
                }
                self.search_due(now);
            }
        }
        Ok(())
    }

    /// Adds nodes closer to `target` than the farthest we keep (or while not full).
    /// Returns how many nodes were added.
    fn merge_nodes(list: &mut Vec<ANode>, nodes: &[PackedNode], target: &PublicKey, max: usize) -> usize {
        let mut added = 0;
        for n in nodes {
            if list.iter().any(|x| x.pk == n.pk) {
                continue;
            }
            if list.len() < max {
                list.push(ANode::new(n));
                added += 1;
                continue;
            }
            let far =
                list.iter().enumerate().max_by(|(_, a), (_, b)| closer(target, &a.pk, &b.pk)).map(|(i, x)| (i, x.pk));
            if let Some((i, fpk)) = far {
                if closer(target, &n.pk, &fpk) == std::cmp::Ordering::Less {
                    list[i] = ANode::new(n);
                    added += 1;
                }
            }
        }
        added
    }

    fn data_response(&mut self, data: &[u8]) -> Result<(), OnionError> {
        let min = 1 + NONCE_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE + PUBLIC_KEY_SIZE + MAC_SIZE + 1;
        if data.len() < min {
            return Err(PacketError::TooShort { what: "onion data response", need: min, got: data.len() }.into());
        }
        let nonce = nonce_at(data, 1).ok_or(PacketError::Empty)?;
        let temp = pk_at(data, 1 + NONCE_SIZE).ok_or(PacketError::Empty)?;
        let mid = SharedKey::precompute(&temp, &self.data_kp.sk)
            .decrypt(&nonce, &data[1 + NONCE_SIZE + PUBLIC_KEY_SIZE..])
            .ok_or(PacketError::Decrypt)?;
        let sender = pk_at(&mid, 0).ok_or(PacketError::Empty)?;
        let inner = self.shared_key(&sender).decrypt(&nonce, &mid[PUBLIC_KEY_SIZE..]).ok_or(PacketError::Decrypt)?;
        if inner.is_empty() {
            return Err(PacketError::Empty.into());
        }
        self.events.push_back(OnionEvent::Data { from_real_pk: sender, data: inner });
        Ok(())
    }

    /// Timers: paths, announces, searches, lost requests.
    pub fn tick(&mut self, now: Instant, dht: &Dht) {
        self.now = now;
        self.dht_keys = Some(dht.keys().clone());
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;

        // lost requests count against their path and node
        let lost: Vec<(u64, Pending)> = {
            let ids: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| now.saturating_duration_since(p.sent) >= p.timeout)
                .map(|(k, _)| *k)
                .collect();
            ids.into_iter().filter_map(|k| self.pending.remove(&k).map(|p| (k, p))).collect()
        };
        let was = self.is_announced();
        for (_, p) in lost {
            for pool in &mut self.paths {
                if let Some(path) = pool.get_mut(&p.path) {
                    path.misses = path.misses.saturating_add(1);
                }
            }
            let list = match p.target {
                Target::Me => Some(&mut self.announce_nodes),
                Target::Friend(f) => self.friends.get_mut(&f).map(|f| &mut f.nodes),
            };
            if let Some(list) = list {
                if let Some(n) = list.iter_mut().find(|n| n.pk == p.node) {
                    n.misses = n.misses.saturating_add(1);
                }
                list.retain(|n| n.misses < NODE_MAX_MISSES);
            }
        }
        if was && !self.is_announced() {
            // announced again (and Announced reported again) once a node stores us
            self.announced = false;
        }

        self.refill_paths(dht, now);
        if self.paths[ANNOUNCE_POOL].is_empty() {
            return;
        }

        // fill the lists from the DHT while short
        if self.announce_nodes.len() < MAX_ANNOUNCE_NODES {
            let me = self.real.pk;
            let mut cands = dht.closest_nodes(&me, MAX_ANNOUNCE_NODES);
            if cands.is_empty() && self.announce_nodes.is_empty() {
                // No DHT node answers (UDP blocked): ask the bootstrap nodes through a
                // TCP path; their answers name the nodes closer to us.
                cands = dht.bootstrap_nodes().to_vec();
            }
            self.announce_nodes_added +=
                Self::merge_nodes(&mut self.announce_nodes, &cands, &me, MAX_ANNOUNCE_NODES) as u64;
        }
        let fkeys: Vec<PublicKey> = self.friends.keys().copied().collect();
        for fpk in fkeys {
            if let Some(f) = self.friends.get_mut(&fpk) {
                if f.nodes.len() < MAX_FRIEND_NODES {
                    let mut cands = dht.closest_nodes(&fpk, MAX_FRIEND_NODES);
                    if cands.is_empty() && f.nodes.is_empty() {
                        cands = dht.bootstrap_nodes().to_vec();
                    }
                    Self::merge_nodes(&mut f.nodes, &cands, &fpk, MAX_FRIEND_NODES);
                }
            }
        }
        self.announce_due(now);
        self.search_due(now);
    }

    fn announce_due(&mut self, now: Instant) {
        let due: Vec<usize> = (0..self.announce_nodes.len())
            .filter(|&i| {
                let n = &self.announce_nodes[i];
                let gap = if n.stored { ANNOUNCE_INTERVAL } else { ANNOUNCE_INTERVAL_NOT_STORED };
                n.last_sent.is_none_or(|t| now.saturating_duration_since(t) >= gap)
            })
            .collect();
        for i in due {
            if self.pending.len() >= MAX_PENDING {
                return;
            }
            let Some(pid) = self.node_path(ANNOUNCE_POOL, self.announce_nodes[i].path) else { return };
            self.announce_nodes[i].path = Some(pid);
            let n = self.announce_nodes[i].clone();
            let sendback = random_u64(&mut self.rng);
            let nonce = random_nonce(&mut self.rng);
            let payload =
                announce_request(&nonce, &self.real, &n.pk, &n.ping_id, &self.real.pk, &self.data_kp.pk, sendback);
            if self.send_via(ANNOUNCE_POOL, pid, n.addr, &payload, Some((Target::Me, n.pk, sendback))).is_some() {
                self.announce_nodes[i].last_sent = Some(now);
                self.announce_requests += 1;
            }
        }
    }

    fn search_due(&mut self, now: Instant) {
        let mut jobs: Vec<(PublicKey, PackedNode)> = Vec::new();
        for (fpk, f) in self.friends.iter() {
            let found = f.data_pk.is_some() && f.nodes.iter().any(|n| n.stored);
            let gap = if found {
                SEARCH_INTERVAL_FOUND
            } else {
                search_interval(now.saturating_duration_since(f.search_start))
            };
            for n in f.nodes.iter() {
                if n.last_sent.is_none_or(|t| now.saturating_duration_since(t) >= gap) {
                    jobs.push((*fpk, PackedNode::new(n.addr, n.pk)));
                }
            }
        }
        for (fpk, node) in jobs {
            if self.pending.len() >= MAX_PENDING {
                return;
            }
            let current =
                self.friends.get(&fpk).and_then(|f| f.nodes.iter().find(|n| n.pk == node.pk)).and_then(|n| n.path);
            let Some(pid) = self.node_path(SEARCH_POOL, current) else { return };
            if let Some(n) = self.friends.get_mut(&fpk).and_then(|f| f.nodes.iter_mut().find(|n| n.pk == node.pk)) {
                n.last_sent = Some(now);
                n.path = Some(pid);
            }
            let sendback = random_u64(&mut self.rng);
            let nonce = random_nonce(&mut self.rng);
            let Some(f) = self.friends.get(&fpk) else {
                continue;
            };
            let payload =
                announce_request(&nonce, &f.temp, &node.pk, &[0; PING_ID_SIZE], &fpk, &PublicKey([0; 32]), sendback);
            self.send_via(SEARCH_POOL, pid, node.addr, &payload, Some((Target::Friend(fpk), node.pk, sendback)));
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<OnionEvent> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::DhtEvent;
    use crate::onion::OnionNode;

    /// A node of the simulated network: DHT + onion node, optionally an onion client.
    struct Peer {
        addr: SocketAddr,
        dht: Dht,
        onion: OnionNode,
        client: Option<OnionClient>,
        events: Vec<OnionEvent>,
        node_events: Vec<crate::onion::OnionNodeEvent>,
    }

    struct Net {
        peers: Vec<Peer>,
        now: Instant,
        /// Packets addressed to these are lost.
        dead: Vec<usize>,
        /// These peers' UDP is blocked both ways; their onion goes through peer 0's TCP
        /// relay (its onion node is the first hop, the relay connection id is the peer's).
        blocked: Vec<usize>,
    }

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 33445))
    }

    impl Net {
        fn new(n: usize, clients: &[usize]) -> Net {
            let now = Instant::now();
            // Fixed keys and seeds: every run sees the same network (with OS-random
            // keys a test failed now and then, when the keys came out unlucky).
            let mut rng = crate::crypto::seeded_rng(n as u64);
            let peers = (0..n)
                .map(|i| {
                    let k = KeyPair::generate(&mut rng);
                    let client = clients.contains(&i).then(|| {
                        OnionClient::new(KeyPair::generate(&mut rng), crate::crypto::child_seed(&mut rng), now)
                    });
                    Peer {
                        addr: addr(i),
                        dht: Dht::new(k.clone(), crate::crypto::child_seed(&mut rng), now),
                        onion: OnionNode::new(k, crate::crypto::child_seed(&mut rng), now),
                        client,
                        events: Vec::new(),
                        node_events: Vec::new(),
                    }
                })
                .collect();
            let mut net = Net { peers, now, dead: vec![], blocked: vec![] };
            let (a0, pk0) = (net.peers[0].addr, net.peers[0].dht.pk());
            for i in 1..n {
                net.peers[i].dht.bootstrap(a0, pk0, now);
            }
            net
        }

        fn deliver(&mut self, from: SocketAddr, to: SocketAddr, pkt: &[u8]) {
            let Some(j) = self.peers.iter().position(|p| p.addr == to) else { return };
            if self.dead.contains(&j) || self.blocked.contains(&j) {
                return;
            }
            if self.peers.iter().position(|p| p.addr == from).is_some_and(|i| self.blocked.contains(&i)) {
                return;
            }
            let now = self.now;
            let p = &mut self.peers[j];
            let _ = match pkt.first() {
                Some(0x00..=0x04 | 0x20 | 0x21) => p.dht.handle_packet(now, from, pkt).map_err(|_| ()),
                Some(0x84 | 0x86) => match p.client.as_mut() {
                    Some(c) => c.handle_packet(now, from, pkt, &p.dht).map_err(|_| ()),
                    None => Err(()),
                },
                Some(_) => p.onion.handle_packet(now, from, pkt, &p.dht).map_err(|_| ()),
                None => Err(()),
            };
        }

        fn pump(&mut self) {
            for _ in 0..200 {
                let mut q = Vec::new();
                for p in self.peers.iter_mut() {
                    while let Some((to, pkt)) = p.dht.poll_transmit() {
                        q.push((p.addr, to, pkt));
                    }
                    while let Some((to, pkt)) = p.onion.poll_transmit() {
                        q.push((p.addr, to, pkt));
                    }
                    while let Some(e) = p.onion.poll_event() {
                        p.node_events.push(e);
                    }
                    while let Some(DhtEvent::Found { .. } | DhtEvent::Request { .. }) = p.dht.poll_event() {}
                    if let Some(c) = p.client.as_mut() {
                        while let Some((to, pkt)) = c.poll_transmit() {
                            q.push((p.addr, to, pkt));
                        }
                        while let Some(e) = c.poll_event() {
                            p.events.push(e);
                        }
                    }
                }
                // TCP relay traffic: requests from blocked peers to peer 0, answers back.
                let mut tcp = Vec::new();
                for (i, p) in self.peers.iter_mut().enumerate() {
                    if let Some(c) = p.client.as_mut() {
                        while let Some((_relay, pkt)) = c.poll_tcp_transmit() {
                            tcp.push((i, pkt));
                        }
                    }
                }
                for (i, pkt) in &tcp {
                    let _ = self.peers[0].onion.handle_tcp_request(*i as u64, pkt);
                }
                let relay = self.peers[0].dht.pk();
                let mut answers = Vec::new();
                while let Some((conn, resp)) = self.peers[0].onion.poll_tcp_response() {
                    answers.push((conn as usize, resp));
                }
                let now = self.now;
                for (i, resp) in &answers {
                    let p = &mut self.peers[*i];
                    if let Some(c) = p.client.as_mut() {
                        let _ = c.handle_tcp_packet(now, relay, resp);
                        while let Some(e) = c.poll_event() {
                            p.events.push(e);
                        }
                    }
                }
                if q.is_empty() && tcp.is_empty() && answers.is_empty() {
                    return;
                }
                for (from, to, pkt) in q {
                    self.deliver(from, to, &pkt);
                }
            }
        }

        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += TICK;
                let now = self.now;
                for (i, p) in self.peers.iter_mut().enumerate() {
                    if self.dead.contains(&i) {
                        continue;
                    }
                    p.dht.tick(now);
                    p.onion.tick(now);
                    if let Some(c) = p.client.as_mut() {
                        c.tick(now, &p.dht);
                    }
                }
                self.pump();
            }
        }

        fn client(&mut self, i: usize) -> &mut OnionClient {
            self.peers[i].client.as_mut().unwrap()
        }
    }

    #[test]
    fn announce_find_friend_and_exchange_data() {
        let mut net = Net::new(12, &[3, 9]);
        net.pump();
        net.run(Duration::from_secs(5));
        net.run(Duration::from_secs(10));
        assert!(net.client(3).is_announced(), "3 not announced");
        assert!(net.client(9).is_announced(), "9 not announced");
        assert!(net.peers[3].events.contains(&OnionEvent::Announced));
        assert_eq!(net.peers[3].events.iter().filter(|e| **e == OnionEvent::Announced).count(), 1);
        assert!(net.client(3).announced_count() >= 4, "{}", net.client(3).announced_count());
        // the nodes storing 3 are the closest to its key among the network
        let pk3 = net.client(3).real_pk();
        let stored_at = net.peers.iter().filter(|p| p.onion.announced_data_pk(&pk3).is_some()).count();
        assert!(stored_at >= 4);
        assert!(net.peers.iter().all(|p| p
            .onion
            .announced_data_pk(&pk3)
            .is_none_or(|d| d == net.peers[3].client.as_ref().unwrap().data_pk())));

        // 3 searches 9 and finds it
        let pk9 = net.client(9).real_pk();
        net.peers[3].client.as_mut().unwrap().add_friend(net.now, pk9);
        net.run(Duration::from_secs(8));
        assert!(net.client(3).is_friend_found(&pk9));
        assert!(net.peers[3].events.contains(&OnionEvent::FriendFound { real_pk: pk9 }));
        assert_eq!(net.client(3).friend_data_pk(&pk9), Some(net.peers[9].client.as_ref().unwrap().data_pk()));
        // and sends it data through the onion
        let copies = net.peers[3].client.as_mut().unwrap().send_data(net.now, &pk9, &[0x9c, 1, 2, 3]);
        assert!(copies >= 1);
        net.pump();
        let got: Vec<&OnionEvent> =
            net.peers[9].events.iter().filter(|e| matches!(e, OnionEvent::Data { .. })).collect();
        assert_eq!(got.len(), copies, "one delivery per copy");
        assert!(got.iter().all(|e| **e == OnionEvent::Data { from_real_pk: pk3, data: vec![0x9c, 1, 2, 3] }));
        // not a friend: nothing sent
        assert_eq!(net.peers[3].client.as_mut().unwrap().send_data(net.now, &PublicKey([5; 32]), &[1]), 0);
    }

    /// Two clients whose UDP is blocked both ways (their DHT never hears an answer) reach
    /// the onion through a TCP relay (peer 0, packets 8/9): each announces itself, one
    /// finds the other and its onion data arrives — the sans-IO half of
    /// tests/tox_udp_blocked.rs. Without the relay, nothing at all.
    #[test]
    fn udp_blocked_clients_announce_find_and_talk_through_a_tcp_relay() {
        let mut net = Net::new(12, &[3, 9]);
        net.blocked = vec![3, 9];
        net.pump();
        net.run(Duration::from_secs(10));
        assert!(!net.client(3).is_announced(), "announced with UDP blocked and no relay");
        assert!(net.peers[3].dht.closest_nodes(&PublicKey([0; 32]), 4).is_empty(), "UDP is not blocked");
        let relay = net.peers[0].dht.pk();
        net.client(3).set_tcp_relays(vec![relay]);
        net.client(9).set_tcp_relays(vec![relay]);
        net.run(Duration::from_secs(15));
        assert!(net.client(3).is_announced(), "3 not announced through the relay");
        assert!(net.client(9).is_announced(), "9 not announced through the relay");
        let pk9 = net.client(9).real_pk();
        let pk3 = net.client(3).real_pk();
        let now = net.now;
        net.client(3).add_friend(now, pk9);
        net.run(Duration::from_secs(10));
        assert!(net.client(3).is_friend_found(&pk9), "3 did not find 9");
        let copies = net.client(3).send_data(now, &pk9, &[0x9c, 7]);
        assert!(copies >= 1);
        net.pump();
        assert!(net.peers[9].events.contains(&OnionEvent::Data { from_real_pk: pk3, data: vec![0x9c, 7] }));
        // Nothing of theirs went over UDP.
        assert_eq!(net.client(3).poll_transmit(), None);
    }

    /// Nodes bind ping ids to the last hop's address, so each announce node must be
    /// asked through the same path: then one round trip after the ping id arrives it
    /// stores us, in a network big enough that random paths rarely share a last hop.
    #[test]
    fn announce_uses_one_path_per_node_and_is_stored_fast() {
        let mut net = Net::new(60, &[7]);
        net.pump();
        net.run(Duration::from_secs(6));
        let c = net.client(7);
        let answered = c.announce_nodes.iter().filter(|n| n.ping_id != [0; 32]).count();
        assert!(answered >= 5, "{answered}");
        assert_eq!(c.announced_count(), answered, "every node that gave us a ping id stored us");
        // two requests per node (ping id 0, then the ping id), for every node ever tried
        let tried = c.announce_nodes_added as usize;
        assert!(
            c.announce_requests_sent() as usize <= 2 * tried + 4,
            "{} requests for {tried} nodes",
            c.announce_requests_sent()
        );
    }

    #[test]
    fn lost_paths_replaced_and_forged_responses_ignored() {
        let mut rng = crate::crypto::seeded_rng(101);
        let mut net = Net::new(10, &[4]);
        net.pump();
        net.run(Duration::from_secs(15));
        assert!(net.client(4).is_announced());
        // kill two nodes: paths through them are dropped and rebuilt, we stay announced
        net.dead = vec![1, 2];
        let death = net.now;
        net.run(Duration::from_secs(60));
        assert!(net.client(4).is_announced());
        let c = net.peers[4].client.as_ref().unwrap();
        // Every path that answered since the deaths avoids the dead nodes. (A path just
        // built from DHT entries not yet known to be dead may still cross them; it times
        // out unanswered and is replaced.)
        for n in c.announce_nodes.iter().filter(|n| n.stored) {
            if let Some(p) = n.path.and_then(|id| c.paths[ANNOUNCE_POOL].get(&id)) {
                if p.last_ok.is_some_and(|t| t > death) {
                    assert!(p.keys.nodes.iter().all(|x| x.addr != addr(1) && x.addr != addr(2)));
                }
            }
            assert!(n.addr != addr(1) && n.addr != addr(2));
        }
        // unsolicited / forged 0x84 and 0x86
        let dht = Dht::new(KeyPair::generate(&mut rng), [5; 32], net.now);
        let now = net.now;
        let c = net.client(4);
        let mut fake = vec![kind::ANNOUNCE_RESPONSE];
        fake.extend_from_slice(&[0u8; 8 + 24 + 16 + 33]);
        assert!(c.handle_packet(now, addr(0), &fake, &dht).is_err());
        let mut fake86 = vec![kind::ONION_DATA_RESPONSE];
        fake86.extend_from_slice(&[1u8; 24 + 32 + 16 + 32 + 16 + 4]);
        assert!(c.handle_packet(now, addr(0), &fake86, &dht).is_err());
        assert!(c.handle_packet(now, addr(0), &[], &dht).is_err());
        assert!(c.handle_packet(now, addr(0), &[0x84; 20], &dht).is_err());
    }

    #[test]
    fn search_pace_starts_fast_and_backs_off() {
        assert_eq!(search_interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(search_interval(Duration::from_secs(15)), Duration::from_secs(2));
        assert_eq!(search_interval(Duration::from_secs(60)), SEARCH_INTERVAL);
        let mut last = Duration::ZERO;
        for s in 0..10_000 {
            let i = search_interval(Duration::from_secs(s));
            assert!(i >= last && i <= SEARCH_INTERVAL_MAX, "{s}: {i:?}");
            last = i;
        }
        assert_eq!(last, SEARCH_INTERVAL_MAX);
    }

    /// When our own onion node hears a friend ask to be announced, the friend is found
    /// at once and onion data reaches it back along the path it announced through,
    /// before any search could see it stored.
    #[test]
    fn friend_heard_by_our_own_node_is_reached_at_once() {
        use crate::onion::OnionNodeEvent;
        // every peer runs a client; the first whose own node hears 9 plays "us"
        let all: Vec<usize> = (0..12).collect();
        let mut net = Net::new(12, &all);
        let pk9 = net.client(9).real_pk();
        net.pump();
        let mut heard = None;
        for _ in 0..120 {
            net.run(TICK);
            heard = (0..12).filter(|&i| i != 9).find_map(|i| {
                net.peers[i].node_events.iter().find_map(|e| match e {
                    OnionNodeEvent::Heard { pk, data_pk } if *pk == pk9 => Some((i, *data_pk)),
                    _ => None,
                })
            });
            if heard.is_some() {
                break;
            }
        }
        let (us, data_pk) = heard.expect("9 asks nodes of this small network to announce it");
        let pk_us = net.client(us).real_pk();
        net.peers[us].client.as_mut().unwrap().add_friend(net.now, pk9);
        net.peers[us].events.clear();
        assert_eq!(data_pk, net.peers[9].client.as_ref().unwrap().data_pk());
        assert!(!net.client(us).is_friend_found(&pk9), "no node has stored 9 yet");
        let now = net.now;
        net.client(us).local_announcement(now, &pk9, data_pk);
        assert!(net.client(us).is_friend_found(&pk9));
        net.pump();
        assert_eq!(net.peers[us].events.iter().filter(|e| **e == OnionEvent::FriendFound { real_pk: pk9 }).count(), 1);
        assert_eq!(net.peers[us].client.as_mut().unwrap().send_data(net.now, &pk9, &[0x9c, 7]), 1, "the local copy");
        let local = net.client(us).poll_local().expect("a request for our own node");
        assert!(net.client(us).poll_local().is_none());
        net.peers[us].onion.deliver_local(now, &local).unwrap();
        net.pump();
        assert!(net.peers[9].events.contains(&OnionEvent::Data { from_real_pk: pk_us, data: vec![0x9c, 7] }));
        // the same key heard again is not a new finding; an old sighting is not used
        net.client(us).local_announcement(now, &pk9, data_pk);
        net.pump();
        assert_eq!(net.peers[us].events.iter().filter(|e| **e == OnionEvent::FriendFound { real_pk: pk9 }).count(), 1);
        net.client(us).friends.get_mut(&pk9).unwrap().local = Some((data_pk, now - LOCAL_FRESH));
        let copies = net.peers[us].client.as_mut().unwrap().send_data(net.now, &pk9, &[0x9c, 8]);
        assert!(net.client(us).poll_local().is_none());
        assert_eq!(copies, net.client(us).friends[&pk9].nodes.iter().filter(|n| n.stored).count());
    }
}
