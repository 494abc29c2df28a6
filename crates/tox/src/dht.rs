//! A full Tox DHT node as a sans-IO machine (docs/protocols/tox.md#dht).
//!
//! - Ping (0x00/0x01, plaintext `[kind][u64 id]`) and nodes request/response (0x02/0x04)
//!   inside the generic DHT packet, answered for anyone (so c-toxcore adds us).
//! - A node enters our lists only after it *answered* one of our requests: nodes learnt
//!   from responses, and unknown nodes that ping us or ask us for nodes, are probed first
//!   (nodes request / ping) and added when the answer arrives.
//! - Close list: 256 k-buckets of [`BUCKET_SIZE`] indexed by the number of leading bits
//!   shared with our key. Search lists: the [`SEARCH_SIZE`] nodes closest to each key
//!   given to [`Dht::add_search`], looked up iteratively; the searched key's address is
//!   reported as [`DhtEvent::Found`].
//! - Responses are accepted only for ping ids / sendbacks we sent, from the node we sent
//!   them to, within [`PING_TIMEOUT`] / [`NODES_RESPONSE_TIMEOUT`], once (replays fail).
//! - c-toxcore timers: a nodes request to a random node of each list every
//!   [`NODES_REQUEST_INTERVAL`] (and [`QUICK_LOOKUPS`] quick ones at first), each node
//!   re-checked every [`NODE_CHECK_INTERVAL`], bad after [`BAD_NODE_TIMEOUT`] without an
//!   answer, dropped after [`KILL_NODE_TIMEOUT`].
//! - DHT requests 0x20: forwarded unchanged to an addressee in our close list, delivered
//!   when addressed to us (NAT ping answered here, the rest as [`DhtEvent::Request`]).

use crate::crypto::{
    random_nonce, random_u64, rng_from_seed, KeyPair, PublicKey, RngSeed, SharedKey, ToxRng, PUBLIC_KEY_SIZE,
};
use crate::packet::{
    closer, kind, limits::MAX_SENT_NODES, DhtPacket, DhtRequest, NodesRequestPlain, NodesResponsePlain, PackedNode,
    PacketError, PingPlain,
};
use rand::seq::{IndexedRandom, SliceRandom};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Nodes per k-bucket (c-toxcore LCLIENT_NODES).
pub const BUCKET_SIZE: usize = 8;
/// Number of k-buckets (one per possible common-prefix length).
pub const BUCKETS: usize = 256;
/// Nodes kept per searched key (c-toxcore MAX_FRIEND_CLIENTS).
pub const SEARCH_SIZE: usize = 8;
/// Searched keys at most.
pub const MAX_SEARCHES: usize = 1024;
/// A nodes request to a random node of each list this often.
pub const NODES_REQUEST_INTERVAL: Duration = Duration::from_secs(20);
/// Quick lookups when a list gets its first node.
pub const QUICK_LOOKUPS: u8 = 5;
/// Spacing of the quick lookups.
pub const QUICK_LOOKUP_INTERVAL: Duration = Duration::from_millis(500);
/// Every node is asked again this often.
pub const NODE_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// No answer for this long: bad (not given out, not used).
pub const BAD_NODE_TIMEOUT: Duration = Duration::from_secs(122);
/// No answer for this long: removed.
pub const KILL_NODE_TIMEOUT: Duration = Duration::from_secs(182);
/// Ping responses accepted within this time of the request.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Nodes responses accepted within this time of the request.
pub const NODES_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Outstanding pings / nodes requests at most (each).
pub const MAX_PENDING: usize = 8192;
/// An unknown node is probed at most this often (and at most [`MAX_PENDING`] nodes are
/// remembered as probed).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Bootstrap nodes are asked again this often while we have no good node.
pub const BOOTSTRAP_RETRY: Duration = Duration::from_secs(5);
/// Bootstrap nodes remembered at most.
pub const MAX_BOOTSTRAP_NODES: usize = 64;
/// Cached shared keys at most.
pub const MAX_SHARED_KEYS: usize = 4096;
/// A searched key's address is reported again at most this often when unchanged.
pub const FOUND_REPEAT: Duration = Duration::from_secs(5);
/// Timer granularity.
pub const TICK: Duration = Duration::from_millis(250);
/// New search-list nodes asked for the searched key per search and tick.
pub const ASK_PER_TICK: usize = 4;

/// What the DHT tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhtEvent {
    /// A searched DHT key's address (from a nodes response or a packet from it).
    Found { pk: PublicKey, addr: SocketAddr },
    /// A DHT request 0x20 addressed to us (inner `[id][data]`), ids other than NAT ping.
    Request { from: PublicKey, data: Vec<u8> },
}

/// Why a packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhtError {
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("packet kind {0:#04x} is not a DHT packet")]
    NotDht(u8),
    #[error("packet from our own key")]
    FromSelf,
    #[error("response we did not ask for (unknown id, wrong sender or too late)")]
    Unsolicited,
    #[error("DHT request for a node not in our close list")]
    NotRoutable,
}

#[derive(Clone, Debug)]
struct Node {
    pk: PublicKey,
    addr: SocketAddr,
    last_seen: Instant,
    last_checked: Instant,
    /// When this node last listed the searched key in a nodes response (search lists).
    knows_target: Option<Instant>,
    /// Search lists: asked for the searched key since it joined the list.
    asked: bool,
}

impl Node {
    fn new(pk: PublicKey, addr: SocketAddr, now: Instant) -> Self {
        Node { pk, addr, last_seen: now, last_checked: now, knows_target: None, asked: false }
    }
    fn good(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) < BAD_NODE_TIMEOUT
    }
    fn packed(&self) -> PackedNode {
        PackedNode::new(self.addr, self.pk)
    }
}

struct Search {
    nodes: Vec<Node>,
    last_lookup: Option<Instant>,
    quick: u8,
    found: Option<(SocketAddr, Instant)>,
}

struct Pending {
    pk: PublicKey,
    addr: SocketAddr,
    sent: Instant,
    target: PublicKey,
}

/// The DHT node.
pub struct Dht {
    keys: KeyPair,
    buckets: Vec<Vec<Node>>,
    searches: BTreeMap<PublicKey, Search>,
    bootstrap_nodes: Vec<PackedNode>,
    last_bootstrap: Option<Instant>,
    pending_pings: BTreeMap<u64, Pending>,
    pending_nodes: BTreeMap<u64, Pending>,
    probed: BTreeMap<PublicKey, Instant>,
    shared: BTreeMap<PublicKey, SharedKey>,
    last_lookup: Option<Instant>,
    quick: u8,
    next_tick: Instant,
    /// Ping ids, sendbacks, nonces and lookup picks all come from here.
    rng: ToxRng,
    transmit: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<DhtEvent>,
    /// Packets handled without error (for the bench and logs).
    pub handled: u64,
}

/// Number of leading bits `a` and `b` share (256 when equal).
pub fn common_prefix_len(a: &PublicKey, b: &PublicKey) -> usize {
    for i in 0..PUBLIC_KEY_SIZE {
        let x = a.0[i] ^ b.0[i];
        if x != 0 {
            return i * 8 + x.leading_zeros() as usize;
        }
    }
    PUBLIC_KEY_SIZE * 8
}

impl Dht {
    /// `rng_seed` seeds every random choice the node makes (see [`ToxRng`]).
    pub fn new(dht_keys: KeyPair, rng_seed: RngSeed, now: Instant) -> Self {
        Dht {
            rng: rng_from_seed(rng_seed),
            keys: dht_keys,
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            searches: BTreeMap::new(),
            bootstrap_nodes: Vec::new(),
            last_bootstrap: None,
            pending_pings: BTreeMap::new(),
            pending_nodes: BTreeMap::new(),
            probed: BTreeMap::new(),
            shared: BTreeMap::new(),
            last_lookup: None,
            quick: 0,
            next_tick: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            handled: 0,
        }
    }

    /// Our DHT public key.
    pub fn pk(&self) -> PublicKey {
        self.keys.pk
    }

    /// Our DHT key pair.
    pub fn keys(&self) -> &KeyPair {
        &self.keys
    }

    /// Asks `pk` at `addr` for nodes close to us now, and again every
    /// [`BOOTSTRAP_RETRY`] while we have no good node.
    pub fn bootstrap(&mut self, addr: SocketAddr, pk: PublicKey, now: Instant) {
        if pk == self.keys.pk {
            return;
        }
        let n = PackedNode::new(addr, pk);
        if !self.bootstrap_nodes.contains(&n) && self.bootstrap_nodes.len() < MAX_BOOTSTRAP_NODES {
            self.bootstrap_nodes.push(n);
        }
        let me = self.keys.pk;
        self.send_nodes_request(addr, pk, me, now);
    }

    /// Look `dht_pk` up until removed; its address comes as [`DhtEvent::Found`].
    pub fn add_search(&mut self, now: Instant, dht_pk: PublicKey) {
        if dht_pk == self.keys.pk || self.searches.len() >= MAX_SEARCHES {
            return;
        }
        let known: Vec<Node> = {
            let mut v: Vec<Node> = self.buckets.iter().flatten().cloned().collect();
            v.sort_by(|a, b| closer(&dht_pk, &a.pk, &b.pk));
            v.truncate(SEARCH_SIZE);
            v.iter_mut().for_each(|n| {
                n.knows_target = None;
                n.asked = false;
            });
            v
        };
        if self.searches.contains_key(&dht_pk) {
            return;
        }
        let direct = known.iter().find(|n| n.pk == dht_pk && n.good(now)).map(|n| n.addr);
        self.searches.insert(dht_pk, Search { nodes: known, last_lookup: None, quick: 0, found: None });
        // Already in our lists with a fresh address: report it at once.
        if let Some(addr) = direct {
            self.report_found(dht_pk, addr, now);
        }
    }

    pub fn remove_search(&mut self, dht_pk: &PublicKey) {
        self.searches.remove(dht_pk);
    }

    /// The last address seen for a searched key.
    pub fn search_addr(&self, dht_pk: &PublicKey) -> Option<SocketAddr> {
        self.searches.get(dht_pk)?.found.map(|f| f.0)
    }

    /// The `n` good nodes we know closest to `to` (all lists).
    pub fn closest_nodes(&self, to: &PublicKey, n: usize) -> Vec<PackedNode> {
        self.closest_nodes_at(to, n, self.next_tick)
    }

    fn closest_nodes_at(&self, to: &PublicKey, n: usize, now: Instant) -> Vec<PackedNode> {
        let mut v: Vec<PackedNode> = Vec::new();
        let all = self.buckets.iter().flatten().chain(self.searches.values().flat_map(|s| s.nodes.iter()));
        for node in all.filter(|x| x.good(now)) {
            if !v.iter().any(|p| p.pk == node.pk) {
                v.push(node.packed());
            }
        }
        v.sort_by(|a, b| closer(to, &a.pk, &b.pk));
        v.truncate(n);
        v
    }

    /// `n` distinct random nodes good at `now` (for onion paths), picked with the
    /// caller's `rng`.
    pub fn random_nodes<R: rand::Rng + ?Sized>(&self, now: Instant, n: usize, rng: &mut R) -> Vec<PackedNode> {
        let mut v: Vec<PackedNode> = Vec::new();
        let all = self.buckets.iter().flatten().chain(self.searches.values().flat_map(|s| s.nodes.iter()));
        for node in all.filter(|x| x.good(now)) {
            if !v.iter().any(|p| p.pk == node.pk) {
                v.push(node.packed());
            }
        }
        v.shuffle(rng);
        v.truncate(n);
        v
    }

    /// The nodes we were told to bootstrap off (whether they answered or not): with UDP
    /// blocked they are the onion's first destinations through a TCP relay.
    pub fn bootstrap_nodes(&self) -> &[PackedNode] {
        &self.bootstrap_nodes
    }

    /// Good nodes in the close list.
    pub fn good_node_count(&self) -> usize {
        let now = self.next_tick;
        self.buckets.iter().flatten().filter(|n| n.good(now)).count()
    }

    /// Whether the close list holds `pk` (good or not).
    pub fn in_close_list(&self, pk: &PublicKey) -> bool {
        let b = common_prefix_len(&self.keys.pk, pk);
        self.buckets.get(b).is_some_and(|v| v.iter().any(|n| n.pk == *pk))
    }

    /// Has at least one good node.
    pub fn is_connected(&self) -> bool {
        self.good_node_count() > 0
    }

    /// Sends `inner` (`[id][data]`) as DHT request 0x20 to `to`: directly when its
    /// address is known and fresh, and through up to 4 nodes that listed it recently.
    /// False when no route is known.
    pub fn send_dht_request(&mut self, now: Instant, to: &PublicKey, inner: &[u8]) -> bool {
        let mut via: Vec<SocketAddr> = Vec::new();
        if let Some(s) = self.searches.get(to) {
            if let Some((a, t)) = s.found {
                if now.saturating_duration_since(t) < BAD_NODE_TIMEOUT {
                    via.push(a);
                }
            }
            for n in &s.nodes {
                if n.pk != *to
                    && n.good(now)
                    && n.knows_target.is_some_and(|t| now.saturating_duration_since(t) < BAD_NODE_TIMEOUT)
                    && via.len() < 5
                    && !via.contains(&n.addr)
                {
                    via.push(n.addr);
                }
            }
        }
        let b = common_prefix_len(&self.keys.pk, to);
        if let Some(n) = self.buckets.get(b).and_then(|v| v.iter().find(|n| n.pk == *to && n.good(now))) {
            if !via.contains(&n.addr) {
                via.push(n.addr);
            }
        }
        if via.is_empty() {
            return false;
        }
        let key = self.shared_key(to);
        let pkt = DhtRequest::build(to, &self.keys.pk, &key, &random_nonce(&mut self.rng), inner);
        for a in via {
            self.transmit.push_back((a, pkt.clone()));
        }
        true
    }

    /// Handles a packet of kind 0x00 0x01 0x02 0x04 0x20 0x21.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), DhtError> {
        let r = match data.first() {
            None => Err(PacketError::Empty.into()),
            Some(&(kind::PING_REQUEST | kind::PING_RESPONSE | kind::NODES_REQUEST | kind::NODES_RESPONSE)) => {
                self.handle_dht(now, from, data)
            }
            Some(&kind::DHT_REQUEST) => self.handle_dht_request(now, data),
            Some(&kind::LAN_DISCOVERY) => self.handle_lan(now, from, data),
            Some(&k) => Err(DhtError::NotDht(k)),
        };
        if r.is_ok() {
            self.handled += 1;
        }
        r
    }

    fn shared_key(&mut self, pk: &PublicKey) -> SharedKey {
        if let Some(k) = self.shared.get(pk) {
            return k.clone();
        }
        let k = SharedKey::precompute(pk, &self.keys.sk);
        if self.shared.len() >= MAX_SHARED_KEYS {
            if let Some(victim) = self.shared.keys().next().copied() {
                self.shared.remove(&victim);
            }
        }
        self.shared.insert(*pk, k.clone());
        k
    }

    fn handle_dht(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), DhtError> {
        let p = DhtPacket::parse(data)?;
        if p.sender == self.keys.pk {
            return Err(DhtError::FromSelf);
        }
        let key = self.shared_key(&p.sender);
        let plain = p.open(&key)?;
        match p.kind {
            kind::PING_REQUEST | kind::PING_RESPONSE => {
                let ping = PingPlain::decode(&plain)?;
                if ping.response != (p.kind == kind::PING_RESPONSE) {
                    return Err(
                        PacketError::WrongKind { want: p.kind, got: plain.first().copied().unwrap_or(0) }.into()
                    );
                }
                if ping.response {
                    let ok = self.pending_pings.get(&ping.id).is_some_and(|q| {
                        q.pk == p.sender && q.addr == from && now.saturating_duration_since(q.sent) <= PING_TIMEOUT
                    });
                    if !ok {
                        return Err(DhtError::Unsolicited);
                    }
                    self.pending_pings.remove(&ping.id);
                    self.node_answered(p.sender, from, now);
                } else {
                    let resp = PingPlain { response: true, id: ping.id }.encode();
                    let pkt =
                        DhtPacket::build(kind::PING_RESPONSE, &self.keys.pk, &key, &random_nonce(&mut self.rng), &resp);
                    self.transmit.push_back((from, pkt));
                    self.seen_packet_from(p.sender, from, now);
                    self.maybe_probe(p.sender, from, now, true);
                }
            }
            kind::NODES_REQUEST => {
                let req = NodesRequestPlain::decode(&plain)?;
                let mut nodes = self.closest_nodes_at(&req.searched, MAX_SENT_NODES + 1, now);
                nodes.retain(|n| n.pk != p.sender);
                nodes.truncate(MAX_SENT_NODES);
                if !nodes.is_empty() {
                    let resp = NodesResponsePlain { nodes, sendback: req.sendback }.encode();
                    let pkt = DhtPacket::build(
                        kind::NODES_RESPONSE,
                        &self.keys.pk,
                        &key,
                        &random_nonce(&mut self.rng),
                        &resp,
                    );
                    self.transmit.push_back((from, pkt));
                }
                self.seen_packet_from(p.sender, from, now);
                self.maybe_probe(p.sender, from, now, true);
            }
            _ => {
                // NODES_RESPONSE
                let resp = NodesResponsePlain::decode(&plain)?;
                let target = match self.pending_nodes.get(&resp.sendback) {
                    Some(q)
                        if q.pk == p.sender
                            && q.addr == from
                            && now.saturating_duration_since(q.sent) <= NODES_RESPONSE_TIMEOUT =>
                    {
                        q.target
                    }
                    _ => return Err(DhtError::Unsolicited),
                };
                self.pending_nodes.remove(&resp.sendback);
                self.node_answered(p.sender, from, now);
                self.learn_nodes(p.sender, &resp.nodes, target, now);
            }
        }
        Ok(())
    }

    fn handle_dht_request(&mut self, now: Instant, data: &[u8]) -> Result<(), DhtError> {
        let r = DhtRequest::parse(data)?;
        if r.addressee != self.keys.pk {
            let b = common_prefix_len(&self.keys.pk, &r.addressee);
            let to = self
                .buckets
                .get(b)
                .and_then(|v| v.iter().find(|n| n.pk == r.addressee && n.good(now)))
                .map(|n| n.addr)
                .ok_or(DhtError::NotRoutable)?;
            self.transmit.push_back((to, data.to_vec()));
            return Ok(());
        }
        if r.sender == self.keys.pk {
            return Err(DhtError::FromSelf);
        }
        let key = self.shared_key(&r.sender);
        let inner = key.decrypt(&r.nonce, r.boxed).ok_or(PacketError::Decrypt)?;
        match inner.first() {
            None => Err(PacketError::Empty.into()),
            Some(&kind::NAT_PING) => {
                if inner.len() != 10 {
                    return Err(PacketError::BadLength { what: "nat ping", got: inner.len() }.into());
                }
                if inner[1] == 0 {
                    let mut resp = inner.clone();
                    resp[1] = 1;
                    self.send_dht_request(now, &r.sender, &resp);
                }
                // Responses: we never send NAT ping requests (no hole punching needed
                // on the networks we serve), so there is nothing to match them with.
                Ok(())
            }
            Some(_) => {
                self.events.push_back(DhtEvent::Request { from: r.sender, data: inner });
                Ok(())
            }
        }
    }

    fn handle_lan(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), DhtError> {
        if data.len() != 1 + PUBLIC_KEY_SIZE {
            return Err(PacketError::BadLength { what: "lan discovery", got: data.len() }.into());
        }
        let pk = crate::packet::pk_at(data, 1).ok_or(PacketError::Empty)?;
        if pk == self.keys.pk {
            return Err(DhtError::FromSelf);
        }
        self.maybe_probe(pk, from, now, false);
        Ok(())
    }

    /// A valid packet from `pk` at `from`: report it when searched.
    fn seen_packet_from(&mut self, pk: PublicKey, from: SocketAddr, now: Instant) {
        self.report_found(pk, from, now);
    }

    fn report_found(&mut self, pk: PublicKey, addr: SocketAddr, now: Instant) {
        if let Some(s) = self.searches.get_mut(&pk) {
            let emit = match s.found {
                Some((a, t)) => a != addr || now.saturating_duration_since(t) >= FOUND_REPEAT,
                None => true,
            };
            if emit {
                s.found = Some((addr, now));
                self.events.push_back(DhtEvent::Found { pk, addr });
            }
        }
    }

    /// `pk` answered a request of ours from `addr`: refresh it everywhere, add it where
    /// it fits.
    fn node_answered(&mut self, pk: PublicKey, addr: SocketAddr, now: Instant) {
        self.report_found(pk, addr, now);
        let me = self.keys.pk;
        let b = common_prefix_len(&me, &pk);
        if let Some(bucket) = self.buckets.get_mut(b) {
            if let Some(n) = bucket.iter_mut().find(|n| n.pk == pk) {
                n.addr = addr;
                n.last_seen = now;
            } else if bucket.len() < BUCKET_SIZE {
                bucket.push(Node::new(pk, addr, now));
            } else if let Some(bad) = bucket.iter_mut().find(|n| !n.good(now)) {
                *bad = Node::new(pk, addr, now);
            }
        }
        for (target, s) in self.searches.iter_mut() {
            if let Some(n) = s.nodes.iter_mut().find(|n| n.pk == pk) {
                n.addr = addr;
                n.last_seen = now;
                continue;
            }
            if s.nodes.len() < SEARCH_SIZE {
                s.nodes.push(Node::new(pk, addr, now));
            } else {
                // replace a bad node, else the farthest if the new one is closer
                if let Some(bad) = s.nodes.iter_mut().find(|n| !n.good(now)) {
                    *bad = Node::new(pk, addr, now);
                } else {
                    let far = s
                        .nodes
                        .iter()
                        .enumerate()
                        .max_by(|(_, a), (_, b)| closer(target, &a.pk, &b.pk))
                        .map(|(i, n)| (i, n.pk));
                    if let Some((i, fpk)) = far {
                        if closer(target, &pk, &fpk) == std::cmp::Ordering::Less {
                            s.nodes[i] = Node::new(pk, addr, now);
                        }
                    }
                }
            }
        }
    }

    /// Would `pk` enter any list if it answered?
    fn addable(&self, pk: &PublicKey, now: Instant) -> bool {
        if *pk == self.keys.pk {
            return false;
        }
        let b = common_prefix_len(&self.keys.pk, pk);
        if let Some(bucket) = self.buckets.get(b) {
            if !bucket.iter().any(|n| n.pk == *pk)
                && (bucket.len() < BUCKET_SIZE || bucket.iter().any(|n| !n.good(now)))
            {
                return true;
            }
        }
        self.searches.iter().any(|(target, s)| {
            !s.nodes.iter().any(|n| n.pk == *pk)
                && (s.nodes.len() < SEARCH_SIZE
                    || s.nodes.iter().any(|n| !n.good(now))
                    || s.nodes.iter().any(|n| closer(target, pk, &n.pk) == std::cmp::Ordering::Less))
        })
    }

    /// Probe a node that might fit a list (ping, or nodes request for the best target).
    fn maybe_probe(&mut self, pk: PublicKey, addr: SocketAddr, now: Instant, ping: bool) {
        if !self.addable(&pk, now) {
            return;
        }
        if self.probed.len() >= MAX_PENDING
            || self.probed.get(&pk).is_some_and(|t| now.saturating_duration_since(*t) < PROBE_INTERVAL)
        {
            return;
        }
        self.probed.insert(pk, now);
        if ping {
            self.send_ping(addr, pk, now);
        } else {
            let me = self.keys.pk;
            self.send_nodes_request(addr, pk, me, now);
        }
    }

    /// Nodes listed by `by` in answer to a request for `target`.
    fn learn_nodes(&mut self, by: PublicKey, nodes: &[PackedNode], target: PublicKey, now: Instant) {
        for n in nodes {
            if n.pk == self.keys.pk {
                continue;
            }
            if self.searches.contains_key(&n.pk) {
                if let Some(s) = self.searches.get_mut(&n.pk) {
                    if let Some(node) = s.nodes.iter_mut().find(|x| x.pk == by) {
                        node.knows_target = Some(now);
                    }
                }
                self.report_found(n.pk, n.addr, now);
            }
            if !self.addable(&n.pk, now) {
                continue;
            }
            if self.probed.len() >= MAX_PENDING
                || self.probed.get(&n.pk).is_some_and(|t| now.saturating_duration_since(*t) < PROBE_INTERVAL)
            {
                continue;
            }
            self.probed.insert(n.pk, now);
            // Ask it for nodes close to what we were looking for: iterates lookups closer.
            let t = if self.searches.contains_key(&target) { target } else { self.keys.pk };
            self.send_nodes_request(n.addr, n.pk, t, now);
        }
    }

    fn send_ping(&mut self, addr: SocketAddr, pk: PublicKey, now: Instant) {
        if self.pending_pings.len() >= MAX_PENDING {
            return;
        }
        let id = random_u64(&mut self.rng);
        self.pending_pings.insert(id, Pending { pk, addr, sent: now, target: pk });
        let key = self.shared_key(&pk);
        let pkt = DhtPacket::build(
            kind::PING_REQUEST,
            &self.keys.pk,
            &key,
            &random_nonce(&mut self.rng),
            &PingPlain { response: false, id }.encode(),
        );
        self.transmit.push_back((addr, pkt));
    }

    fn send_nodes_request(&mut self, addr: SocketAddr, pk: PublicKey, target: PublicKey, now: Instant) {
        if self.pending_nodes.len() >= MAX_PENDING {
            return;
        }
        let sendback = random_u64(&mut self.rng);
        self.pending_nodes.insert(sendback, Pending { pk, addr, sent: now, target });
        let key = self.shared_key(&pk);
        let plain = NodesRequestPlain { searched: target, sendback }.encode();
        let pkt = DhtPacket::build(kind::NODES_REQUEST, &self.keys.pk, &key, &random_nonce(&mut self.rng), &plain);
        self.transmit.push_back((addr, pkt));
    }

    /// Timers: lookups, node checks, expiry.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        let me = self.keys.pk;

        // expire
        self.pending_pings.retain(|_, q| now.saturating_duration_since(q.sent) <= PING_TIMEOUT);
        self.pending_nodes.retain(|_, q| now.saturating_duration_since(q.sent) <= NODES_RESPONSE_TIMEOUT);
        self.probed.retain(|_, t| now.saturating_duration_since(*t) < PROBE_INTERVAL);
        for b in self.buckets.iter_mut() {
            b.retain(|n| now.saturating_duration_since(n.last_seen) < KILL_NODE_TIMEOUT);
        }
        for s in self.searches.values_mut() {
            s.nodes.retain(|n| now.saturating_duration_since(n.last_seen) < KILL_NODE_TIMEOUT);
            if s.nodes.is_empty() {
                s.quick = 0;
            }
        }

        // re-check every node
        let mut checks: Vec<(SocketAddr, PublicKey, PublicKey)> = Vec::new();
        for b in self.buckets.iter_mut() {
            for n in b.iter_mut() {
                if now.saturating_duration_since(n.last_checked) >= NODE_CHECK_INTERVAL {
                    n.last_checked = now;
                    checks.push((n.addr, n.pk, me));
                }
            }
        }
        for (target, s) in self.searches.iter_mut() {
            for n in s.nodes.iter_mut() {
                if now.saturating_duration_since(n.last_checked) >= NODE_CHECK_INTERVAL {
                    n.last_checked = now;
                    checks.push((n.addr, n.pk, *target));
                }
            }
        }

        // every node that joined a search list is asked for the searched key once (a few
        // per tick): lookups walk toward the key instead of waiting for random picks
        for (target, s) in self.searches.iter_mut() {
            for n in s.nodes.iter_mut().filter(|n| !n.asked && n.good(now)).take(ASK_PER_TICK) {
                n.asked = true;
                checks.push((n.addr, n.pk, *target));
            }
        }

        // lookups toward our own key and each searched key
        let good: Vec<(SocketAddr, PublicKey)> =
            self.buckets.iter().flatten().filter(|n| n.good(now)).map(|n| (n.addr, n.pk)).collect();
        if good.is_empty() {
            self.quick = 0;
        } else if Self::due(self.last_lookup, self.quick, now) {
            if let Some(&(a, pk)) = good.choose(&mut self.rng) {
                checks.push((a, pk, me));
            }
            self.last_lookup = Some(now);
            self.quick = self.quick.saturating_add(1);
        }
        for (target, s) in self.searches.iter_mut() {
            let cands: Vec<(SocketAddr, PublicKey)> =
                s.nodes.iter().filter(|n| n.good(now)).map(|n| (n.addr, n.pk)).collect();
            let cands = if cands.is_empty() { good.clone() } else { cands };
            if cands.is_empty() || !Self::due(s.last_lookup, s.quick, now) {
                continue;
            }
            if let Some(&(a, pk)) = cands.choose(&mut self.rng) {
                checks.push((a, pk, *target));
            }
            s.last_lookup = Some(now);
            s.quick = s.quick.saturating_add(1);
        }

        // bootstrap again while alone
        if good.is_empty()
            && !self.bootstrap_nodes.is_empty()
            && self.last_bootstrap.is_none_or(|t| now.saturating_duration_since(t) >= BOOTSTRAP_RETRY)
        {
            self.last_bootstrap = Some(now);
            for n in self.bootstrap_nodes.clone() {
                checks.push((n.addr, n.pk, me));
            }
        }

        for (a, pk, t) in checks {
            self.send_nodes_request(a, pk, t, now);
        }
    }

    fn due(last: Option<Instant>, quick: u8, now: Instant) -> bool {
        match last {
            None => true,
            Some(t) => {
                let gap = if quick < QUICK_LOOKUPS { QUICK_LOOKUP_INTERVAL } else { NODES_REQUEST_INTERVAL };
                now.saturating_duration_since(t) >= gap
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use std::net::{IpAddr, Ipv4Addr};

    /// In-memory network of DHT nodes at 10.0.0.i:33445, with a simulated clock.
    struct Net {
        nodes: Vec<Dht>,
        addrs: Vec<SocketAddr>,
        now: Instant,
        events: Vec<Vec<DhtEvent>>,
        /// Drop every packet to these indexes (dead nodes).
        dead: Vec<usize>,
        delivered: u64,
        /// (from, to, kind) of every delivered packet.
        log: Vec<(usize, usize, u8)>,
    }

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8)), 33445)
    }

    impl Net {
        fn new(n: usize) -> Net {
            let now = Instant::now();
            // Fixed keys and seeds: every run sees the same network.
            let mut rng = crate::crypto::seeded_rng(n as u64);
            let nodes = (0..n)
                .map(|_| Dht::new(KeyPair::generate(&mut rng), crate::crypto::child_seed(&mut rng), now))
                .collect();
            Net {
                nodes,
                addrs: (0..n).map(addr).collect(),
                now,
                events: vec![Vec::new(); n],
                dead: vec![],
                delivered: 0,
                log: vec![],
            }
        }
        fn idx(&self, a: SocketAddr) -> Option<usize> {
            self.addrs.iter().position(|x| *x == a)
        }
        /// Delivers queued packets until quiet.
        fn pump(&mut self) {
            for _ in 0..100 {
                let mut any = false;
                for i in 0..self.nodes.len() {
                    while let Some((to, pkt)) = self.nodes[i].poll_transmit() {
                        any = true;
                        if let Some(j) = self.idx(to) {
                            if self.dead.contains(&j) {
                                continue;
                            }
                            let from = self.addrs[i];
                            let _ = self.nodes[j].handle_packet(self.now, from, &pkt);
                            self.delivered += 1;
                            self.log.push((i, j, pkt[0]));
                        }
                    }
                    while let Some(e) = self.nodes[i].poll_event() {
                        self.events[i].push(e);
                    }
                }
                if !any {
                    return;
                }
            }
        }
        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += TICK;
                for i in 0..self.nodes.len() {
                    if !self.dead.contains(&i) {
                        self.nodes[i].tick(self.now);
                    }
                }
                self.pump();
            }
        }
    }

    #[test]
    fn common_prefix() {
        let a = PublicKey([0; 32]);
        let mut b = a;
        b.0[0] = 0x80;
        assert_eq!(common_prefix_len(&a, &b), 0);
        b.0[0] = 0x01;
        assert_eq!(common_prefix_len(&a, &b), 7);
        let mut c = a;
        c.0[31] = 1;
        assert_eq!(common_prefix_len(&a, &c), 255);
        assert_eq!(common_prefix_len(&a, &a), 256);
    }

    #[test]
    fn twenty_nodes_bootstrap_off_one_and_find_each_other() {
        let mut net = Net::new(20);
        let (a0, pk0) = (net.addrs[0], net.nodes[0].pk());
        let now = net.now;
        for i in 1..20 {
            net.nodes[i].bootstrap(a0, pk0, now);
        }
        net.pump();
        net.run(Duration::from_secs(30));
        for i in 0..20 {
            assert!(net.nodes[i].is_connected(), "node {i} has no good node");
            assert!(net.nodes[i].good_node_count() >= 5, "node {i}: {}", net.nodes[i].good_node_count());
        }
        // Node 5 searches node 17's key (it never talked to node 0 about it) and finds it.
        let target = net.nodes[17].pk();
        net.nodes[5].add_search(net.now, target);
        // Within 20 s (c-toxcore's slow search interval); 10 s fell short in ~1 run of 8
        // when the random keys put 17 far from everyone 5 knew.
        net.run(Duration::from_secs(20));
        let who: Vec<usize> = (0..20).filter(|&i| net.nodes[i].in_close_list(&target)).collect();
        let s5: Vec<String> =
            net.nodes[5].searches[&target].nodes.iter().map(|n| format!("{}:{}", n.addr, n.good(net.now))).collect();
        assert!(
            net.events[5].iter().any(|e| *e == DhtEvent::Found { pk: target, addr: net.addrs[17] }),
            "{:?} known by {who:?}; 5's search list {s5:?}; pending {}",
            net.events[5],
            net.nodes[5].pending_nodes.len()
        );
        assert_eq!(net.nodes[5].search_addr(&target), Some(net.addrs[17]));
        // Every node can look every other up.
        for i in 0..20 {
            let t = net.nodes[(i + 7) % 20].pk();
            net.nodes[i].add_search(net.now, t);
        }
        net.run(Duration::from_secs(15));
        for i in 0..20 {
            let t = net.nodes[(i + 7) % 20].pk();
            assert_eq!(net.nodes[i].search_addr(&t), Some(net.addrs[(i + 7) % 20]), "node {i}");
        }
        // A key already in the close list is reported as soon as it is searched.
        let n0 = &net.nodes[0];
        let known = n0.buckets.iter().flatten().find(|n| !n0.searches.contains_key(&n.pk)).unwrap().packed();
        net.nodes[0].add_search(net.now, known.pk);
        assert_eq!(net.nodes[0].poll_event(), Some(DhtEvent::Found { pk: known.pk, addr: known.addr }));
    }

    #[test]
    fn dead_nodes_become_bad_then_disappear() {
        let mut rng = crate::crypto::seeded_rng(101);
        let mut net = Net::new(6);
        let (a0, pk0) = (net.addrs[0], net.nodes[0].pk());
        let now = net.now;
        for i in 1..6 {
            net.nodes[i].bootstrap(a0, pk0, now);
        }
        net.pump();
        net.run(Duration::from_secs(10));
        let dead_pk = net.nodes[3].pk();
        assert!(net.nodes[1].in_close_list(&dead_pk));
        net.dead = vec![3];
        net.run(Duration::from_secs(100));
        assert!(net.nodes[1].in_close_list(&dead_pk), "kept while not yet bad");
        assert!(net.nodes[1].closest_nodes(&dead_pk, 8).iter().any(|n| n.pk == dead_pk));
        net.run(Duration::from_secs(30));
        // bad (>122 s): no longer handed out
        assert!(!net.nodes[1].closest_nodes(&dead_pk, 8).iter().any(|n| n.pk == dead_pk));
        assert!(!net.nodes[1].random_nodes(net.now, 8, &mut rng).iter().any(|n| n.pk == dead_pk));
        net.run(Duration::from_secs(60));
        assert!(!net.nodes[1].in_close_list(&dead_pk), "dropped after 182 s");
        // the live ones stayed
        assert!(net.nodes[1].in_close_list(&net.nodes[2].pk()));
    }

    fn pair() -> (Dht, Dht, SocketAddr, SocketAddr, Instant) {
        let now = Instant::now();
        let a = Dht::new(KeyPair::from_secret(SecretKey([1; 32])), [1; 32], now);
        let b = Dht::new(KeyPair::from_secret(SecretKey([2; 32])), [2; 32], now);
        (a, b, addr(1), addr(2), now)
    }

    #[test]
    fn answers_ping_and_probes_back() {
        let (mut a, mut b, aa, ba, now) = pair();
        // a pings b by hand
        a.send_ping(ba, b.pk(), now);
        let (to, ping) = a.poll_transmit().unwrap();
        assert_eq!(to, ba);
        assert_eq!(ping.len(), 82);
        b.handle_packet(now, aa, &ping).unwrap();
        let (to, resp) = b.poll_transmit().unwrap();
        assert_eq!((to, resp[0]), (aa, kind::PING_RESPONSE));
        // b pings a back to be able to add it
        let (to, back) = b.poll_transmit().unwrap();
        assert_eq!((to, back[0]), (aa, kind::PING_REQUEST));
        assert!(!b.in_close_list(&a.pk()));
        a.handle_packet(now, ba, &resp).unwrap();
        assert!(a.in_close_list(&b.pk()));
        // replayed response is refused
        assert_eq!(a.handle_packet(now, ba, &resp), Err(DhtError::Unsolicited));
        a.handle_packet(now, ba, &back).unwrap();
        let (_, resp2) = a.poll_transmit().unwrap();
        b.handle_packet(now, aa, &resp2).unwrap();
        assert!(b.in_close_list(&a.pk()));
    }

    #[test]
    fn unsolicited_late_and_spoofed_responses_are_ignored() {
        let (mut a, mut b, aa, ba, now) = pair();
        // unsolicited ping response
        let key = SharedKey::precompute(&a.pk(), &b.keys.sk);
        let fake = DhtPacket::build(
            kind::PING_RESPONSE,
            &b.pk(),
            &key,
            &[3; 24],
            &PingPlain { response: true, id: 42 }.encode(),
        );
        assert_eq!(a.handle_packet(now, ba, &fake), Err(DhtError::Unsolicited));
        // unsolicited nodes response carrying a node
        let n = PackedNode::new(addr(9), PublicKey([9; 32]));
        let fake = DhtPacket::build(
            kind::NODES_RESPONSE,
            &b.pk(),
            &key,
            &[4; 24],
            &NodesResponsePlain { nodes: vec![n], sendback: 7 }.encode(),
        );
        assert_eq!(a.handle_packet(now, ba, &fake), Err(DhtError::Unsolicited));
        assert!(a.poll_transmit().is_none(), "no probe of nodes from an unsolicited response");
        // late ping response (> 5 s)
        a.send_ping(ba, b.pk(), now);
        let (_, ping) = a.poll_transmit().unwrap();
        b.handle_packet(now, aa, &ping).unwrap();
        let (_, resp) = b.poll_transmit().unwrap();
        assert_eq!(a.handle_packet(now + Duration::from_secs(6), ba, &resp), Err(DhtError::Unsolicited));
        assert!(!a.in_close_list(&b.pk()));
        // response from another address than we asked
        a.send_ping(ba, b.pk(), now);
        let (_, ping) = a.poll_transmit().unwrap();
        while b.poll_transmit().is_some() {}
        b.handle_packet(now, aa, &ping).unwrap();
        let (_, resp) = b.poll_transmit().unwrap();
        assert_eq!(a.handle_packet(now, addr(77), &resp), Err(DhtError::Unsolicited));
        // a nodes response inside a ping-kind packet, bad MAC, truncation
        let mut bad = resp.clone();
        bad[60] ^= 1;
        assert!(matches!(a.handle_packet(now, ba, &bad), Err(DhtError::Packet(PacketError::Decrypt))));
        assert!(a.handle_packet(now, ba, &resp[..40]).is_err());
        assert!(a.handle_packet(now, ba, &[]).is_err());
        assert_eq!(a.handle_packet(now, ba, &[0x99, 1, 2]), Err(DhtError::NotDht(0x99)));
        // finally the right one is still accepted
        a.handle_packet(now, ba, &resp).unwrap();
        assert!(a.in_close_list(&b.pk()));
    }

    #[test]
    fn nodes_request_answered_with_closest_four() {
        let mut rng = crate::crypto::seeded_rng(102);
        let (mut a, mut b, aa, ba, now) = pair();
        for i in 10..20u8 {
            a.node_answered(PublicKey([i; 32]), addr(i as usize), now);
        }
        b.send_nodes_request(aa, a.pk(), PublicKey([12; 32]), now);
        let (_, req) = b.poll_transmit().unwrap();
        assert_eq!(req.len(), 113);
        a.handle_packet(now, ba, &req).unwrap();
        let (to, resp) = a.poll_transmit().unwrap();
        assert_eq!(to, ba);
        assert_eq!(resp.len(), 82 + 4 * 39);
        let p = DhtPacket::parse(&resp).unwrap();
        let plain = p.open(&SharedKey::precompute(&a.pk(), &b.keys.sk)).unwrap();
        let r = NodesResponsePlain::decode(&plain).unwrap();
        let got: Vec<u8> = r.nodes.iter().map(|n| n.pk.0[0]).collect();
        assert_eq!(got, vec![12, 13, 14, 15]); // XOR distance to 0x0c…: 0, 1, 2, 3
        b.handle_packet(now, aa, &resp).unwrap();
        assert!(b.in_close_list(&a.pk()));
        // b probes the 4 nodes it learnt (nodes requests)
        let probes: Vec<_> =
            std::iter::from_fn(|| b.poll_transmit()).filter(|(_, p)| p[0] == kind::NODES_REQUEST).collect();
        assert_eq!(probes.len(), 4);
        // an empty node knows nothing and stays silent
        let now2 = now;
        let mut c = Dht::new(KeyPair::generate(&mut rng), [3; 32], now2);
        b.send_nodes_request(addr(3), c.pk(), b.pk(), now2);
        let (_, req) = b.poll_transmit().unwrap();
        c.handle_packet(now2, ba, &req).unwrap();
        assert!(std::iter::from_fn(|| c.poll_transmit()).all(|(_, p)| p[0] != kind::NODES_RESPONSE));
    }

    #[test]
    fn dht_request_forwarded_delivered_and_nat_ping_answered() {
        let mut rng = crate::crypto::seeded_rng(103);
        let mut net = Net::new(8);
        let (a0, pk0) = (net.addrs[0], net.nodes[0].pk());
        let now = net.now;
        for i in 1..8 {
            net.nodes[i].bootstrap(a0, pk0, now);
        }
        net.pump();
        net.run(Duration::from_secs(10));
        let t = net.nodes[6].pk();
        net.nodes[2].add_search(net.now, t);
        net.run(Duration::from_secs(5));
        assert!(net.nodes[2].send_dht_request(net.now, &t, &[0x9c, 1, 2, 3]));
        net.pump();
        let from = net.nodes[2].pk();
        let got: Vec<_> = net.events[6].iter().filter(|e| matches!(e, DhtEvent::Request { .. })).cloned().collect();
        assert!(!got.is_empty());
        assert!(got.iter().all(|e| *e == DhtEvent::Request { from, data: vec![0x9c, 1, 2, 3] }));
        // NAT ping request addressed to 6 is answered internally (no event)
        let before = net.events[6].len();
        let mut ping = vec![kind::NAT_PING, 0];
        ping.extend_from_slice(&5u64.to_be_bytes());
        // 6 must know a route back to 2
        net.nodes[6].add_search(net.now, from);
        net.run(Duration::from_secs(5));
        let before6 = net.events[6].len();
        assert!(before6 >= before);
        net.log.clear();
        assert!(net.nodes[2].send_dht_request(net.now, &t, &ping));
        net.pump();
        assert!(!net.events[6][before6..].iter().any(|e| matches!(e, DhtEvent::Request { .. })));
        // the response came back to 2 as a DHT request (from 6 directly or forwarded),
        // handled there without an event
        assert!(net.log.iter().any(|&(_, t, k)| t == 2 && k == kind::DHT_REQUEST), "{:?}", net.log);
        assert!(!net.events[2].iter().any(|e| matches!(e, DhtEvent::Request { .. })));
        // Forwarding: a request for a key not in 0's close list is refused.
        let stranger = KeyPair::generate(&mut rng);
        let key = SharedKey::precompute(&stranger.pk, &net.nodes[1].keys.sk);
        let pkt = DhtRequest::build(&stranger.pk, &net.nodes[1].pk(), &key, &[1; 24], &[0x9c]);
        assert_eq!(net.nodes[0].handle_packet(net.now, net.addrs[1], &pkt), Err(DhtError::NotRoutable));
        // A request for a close-list node is forwarded unchanged.
        let dest = net.nodes[0].random_nodes(net.now, 1, &mut rng)[0];
        let key = SharedKey::precompute(&dest.pk, &net.nodes[1].keys.sk);
        let pkt = DhtRequest::build(&dest.pk, &net.nodes[1].pk(), &key, &[1; 24], &[0x9c]);
        while net.nodes[0].poll_transmit().is_some() {}
        net.nodes[0].handle_packet(net.now, net.addrs[1], &pkt).unwrap();
        assert_eq!(net.nodes[0].poll_transmit(), Some((dest.addr, pkt)));
    }

    #[test]
    fn flood_of_strangers_keeps_state_bounded() {
        let mut rng = crate::crypto::seeded_rng(104);
        let now = Instant::now();
        let mut d = Dht::new(KeyPair::generate(&mut rng), [4; 32], now);
        let n = MAX_PENDING + 500;
        let mut answered = 0;
        for i in 0..n {
            let s = KeyPair::generate(&mut rng);
            let k = SharedKey::precompute(&d.pk(), &s.sk);
            let ping = DhtPacket::build(
                kind::PING_REQUEST,
                &s.pk,
                &k,
                &[1; 24],
                &PingPlain { response: false, id: i as u64 }.encode(),
            );
            d.handle_packet(now, addr(i % 60000), &ping).unwrap();
            while let Some((_, p)) = d.poll_transmit() {
                if p[0] == kind::PING_RESPONSE {
                    answered += 1;
                }
            }
        }
        assert_eq!(answered, n, "every ping answered");
        assert!(d.probed.len() <= MAX_PENDING);
        assert!(d.pending_pings.len() <= MAX_PENDING);
        assert!(d.shared.len() <= MAX_SHARED_KEYS);
        // all of it expires
        d.tick(now + NODES_RESPONSE_TIMEOUT + Duration::from_secs(1));
        assert!(d.pending_pings.is_empty() && d.probed.is_empty());
    }

    #[test]
    fn bootstrap_retried_until_the_node_answers() {
        let mut net = Net::new(2);
        let (a0, pk0) = (net.addrs[0], net.nodes[0].pk());
        net.dead = vec![0];
        let now = net.now;
        net.nodes[1].bootstrap(a0, pk0, now);
        net.pump();
        net.run(Duration::from_secs(12));
        assert!(!net.nodes[1].is_connected());
        net.dead.clear();
        net.run(Duration::from_secs(6));
        assert!(net.nodes[1].is_connected());
        assert!(net.nodes[0].is_connected(), "the bootstrap node pinged back and added us");
    }
}
