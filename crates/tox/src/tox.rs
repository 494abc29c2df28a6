//! The whole Tox client as one sans-IO machine: DHT node + onion node + the onion client
//! (rendezvous) + net_crypto + Messenger + per-friend progress (docs/protocols/tox.md).
//!
//! Incoming UDP payloads are dispatched by their first byte (0x00 0x01 0x02 0x04 0x20 0x21
//! → DHT; 0x18–0x1b → net_crypto; 0x84/0x86 → onion client; other 0x80–0x8e → onion
//! node). Each friend is driven by [`FriendProgress`]; its recurring tasks are carried out
//! here:
//! - `dhtkey:` — our DHT-PK announce (0x9c, monotonic no_replay) to the friend through the
//!   onion every 30 s once it is found at a rendezvous node, and as a DHT request every
//!   20 s once its DHT key is known;
//! - `connect:` — `Dht::add_search` for the friend's DHT key while its address is stale,
//!   net_crypto handshakes once it is fresh.
//!
//! DHT-PK packets are accepted only from friends and only with a larger no_replay than the
//! last one. The onion client is used through the [`Rendezvous`] trait.

use crate::conference::{ConferenceError, ConferenceEvent, ConferenceId, ConferencePeer, Conferences, SavedConference};
use crate::crypto::{
    child_seed, decrypt_data, encrypt_data, random_nonce, rng_from_seed, KeyPair, PublicKey, RngSeed, ToxRng,
    NONCE_SIZE, PUBLIC_KEY_SIZE,
};
use crate::dht::{Dht, DhtEvent};
use crate::file::{Control, Direction, FileError, FileEvent, FILE_ID_SIZE};
use crate::friend::{ConnectMode, FriendProgress, Progress, Task};
use crate::messenger::{MessageKind, Messenger, MessengerError, MessengerEvent, RequestVia};
use crate::net_crypto::{NetCrypto, NetCryptoEvent};
use crate::onion::{OnionNode, OnionNodeEvent};
use crate::onion_client::{OnionClient, OnionEvent};
use crate::packet::{kind, DhtPkAnnounce, PackedNode};
use crate::toxid::{NoSpam, ToxId};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// DHT-PK through the onion this often (c-toxcore: 30 s).
pub const DHTPK_ONION_INTERVAL: Duration = Duration::from_secs(30);
/// DHT-PK as a DHT request this often (c-toxcore: 20 s).
pub const DHTPK_DHT_INTERVAL: Duration = Duration::from_secs(20);
/// While our friend request is outstanding, DHT-PK goes through the onion this often: the
/// friend drops DHT-PK packets until it has accepted the request, so the first one after
/// acceptance should not wait 30 s (c-toxcore's interval).
pub const DHTPK_PENDING_REQUEST_INTERVAL: Duration = Duration::from_secs(2);
/// Retry sooner while the friend is not yet found at any rendezvous node.
pub const DHTPK_RETRY: Duration = Duration::from_secs(1);
/// Tasks are reconciled at least this often.
pub const TASK_INTERVAL: Duration = Duration::from_millis(250);
/// Friends at most.
pub const MAX_FRIENDS: usize = 1024;
/// Relay hints (friends' DHT-PK packets naming TCP relays) kept at most.
pub const MAX_RELAY_HINTS: usize = 64;
/// A friend UDP has not found this long after it named TCP relays is reached through one.
pub const RELAY_FALLBACK: Duration = Duration::from_secs(3);
/// Our TCP relays listed in our DHT-PK packets at most (c-toxcore: MAX_SENT_NODES / 2).
pub const MAX_DHT_PK_RELAYS: usize = 2;

/// What the client needs from an onion client (tox-net's `OnionClient` implements it).
pub trait Rendezvous {
    /// Start searching this friend at rendezvous nodes.
    fn add_friend(&mut self, now: Instant, real_pk: PublicKey);
    fn remove_friend(&mut self, real_pk: &PublicKey);
    /// Packets 0x84 and 0x86 addressed to us.
    fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8], dht: &Dht) -> Result<(), String>;
    fn tick(&mut self, now: Instant, dht: &Dht);
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)>;
    fn poll_event(&mut self) -> Option<RendezvousEvent>;
    fn next_timeout(&self) -> Option<Instant>;
    /// Sends `[id][data]` to the friend through every node where it is announced;
    /// returns how many copies went out (0: not found yet).
    fn send_data(&mut self, now: Instant, to_real_pk: &PublicKey, inner: &[u8]) -> usize;
    fn is_announced(&self) -> bool;
    /// Our own onion node heard the friend announce itself with `data_pk`.
    fn local_announcement(&mut self, _now: Instant, _real_pk: &PublicKey, _data_pk: PublicKey) {}
    /// Onion data requests (`[0x85][dest pk]...`, no return path) for our own onion node.
    fn poll_local(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// The friend went offline: search it at the fast pace again.
    fn search_again(&mut self, _now: Instant, _real_pk: &PublicKey) {}
    /// The TCP relays the driver is connected to (docs/protocols/tox.md#tcp-relays): used
    /// as first hops while no DHT node answers over UDP.
    fn set_tcp_relays(&mut self, _relays: Vec<PublicKey>) {}
    /// Onion requests to send through a relay: `(relay key, packet 8 body)`.
    fn poll_tcp_transmit(&mut self) -> Option<(PublicKey, Vec<u8>)> {
        None
    }
    /// An onion response that came back as packet 9 on relay `relay`.
    fn handle_tcp_packet(&mut self, _now: Instant, _relay: PublicKey, _data: &[u8]) -> Result<(), String> {
        Err("no onion over TCP".into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RendezvousEvent {
    /// We are stored at ≥ 1 rendezvous node.
    Announced,
    /// The friend is announced somewhere.
    FriendFound { real_pk: PublicKey },
    /// Onion data `[id][data]` from a peer (0x9c DHT-PK, 0x20 friend request).
    Data { from_real_pk: PublicKey, data: Vec<u8> },
}

/// tox-net's onion client is the real rendezvous.
impl Rendezvous for OnionClient {
    fn add_friend(&mut self, now: Instant, real_pk: PublicKey) {
        OnionClient::add_friend(self, now, real_pk)
    }
    fn remove_friend(&mut self, real_pk: &PublicKey) {
        OnionClient::remove_friend(self, real_pk)
    }
    fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8], dht: &Dht) -> Result<(), String> {
        OnionClient::handle_packet(self, now, from, data, dht).map_err(|e| e.to_string())
    }
    fn tick(&mut self, now: Instant, dht: &Dht) {
        OnionClient::tick(self, now, dht)
    }
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        OnionClient::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<RendezvousEvent> {
        OnionClient::poll_event(self).map(|e| match e {
            OnionEvent::Announced => RendezvousEvent::Announced,
            OnionEvent::FriendFound { real_pk } => RendezvousEvent::FriendFound { real_pk },
            OnionEvent::Data { from_real_pk, data } => RendezvousEvent::Data { from_real_pk, data },
        })
    }
    fn next_timeout(&self) -> Option<Instant> {
        OnionClient::next_timeout(self)
    }
    fn send_data(&mut self, now: Instant, to_real_pk: &PublicKey, inner: &[u8]) -> usize {
        OnionClient::send_data(self, now, to_real_pk, inner)
    }
    fn is_announced(&self) -> bool {
        OnionClient::is_announced(self)
    }
    fn local_announcement(&mut self, now: Instant, real_pk: &PublicKey, data_pk: PublicKey) {
        OnionClient::local_announcement(self, now, real_pk, data_pk)
    }
    fn poll_local(&mut self) -> Option<Vec<u8>> {
        OnionClient::poll_local(self)
    }
    fn search_again(&mut self, now: Instant, real_pk: &PublicKey) {
        OnionClient::search_again(self, now, real_pk)
    }
    fn set_tcp_relays(&mut self, relays: Vec<PublicKey>) {
        OnionClient::set_tcp_relays(self, relays)
    }
    fn poll_tcp_transmit(&mut self) -> Option<(PublicKey, Vec<u8>)> {
        OnionClient::poll_tcp_transmit(self)
    }
    fn handle_tcp_packet(&mut self, now: Instant, relay: PublicKey, data: &[u8]) -> Result<(), String> {
        OnionClient::handle_tcp_packet(self, now, relay, data).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToxEvent {
    /// `friend` entered a progress state.
    Progress {
        friend: PublicKey,
        progress: Progress,
    },
    /// We are announced at a rendezvous node (the `toxid:` task succeeded).
    Announced,
    /// The friend was found announced at a rendezvous node (`dhtkey:` can deliver).
    FriendFound {
        friend: PublicKey,
    },
    FriendRequest {
        from: PublicKey,
        message: String,
    },
    FriendOnline {
        friend: PublicKey,
    },
    FriendOffline {
        friend: PublicKey,
    },
    Message {
        friend: PublicKey,
        kind: MessageKind,
        text: String,
    },
    Receipt {
        friend: PublicKey,
        receipt: u32,
    },
    Nickname {
        friend: PublicKey,
        name: String,
    },
    /// A file transfer event (docs/protocols/tox.md#file-transfers).
    File(FileEvent),
    /// A conference event (docs/protocols/tox.md#conferences).
    Conference(ConferenceEvent),
    /// An NGC group event (docs/protocols/tox.md#ngc-group-chats).
    Group(crate::ngc::GroupEvent),
}

#[derive(Debug, thiserror::Error)]
pub enum ToxError {
    #[error("packet dropped: {0}")]
    Dropped(String),
    #[error(transparent)]
    Messenger(#[from] MessengerError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("too many friends")]
    TooManyFriends,
    #[error("that is our own Tox ID")]
    OwnId,
    #[error(transparent)]
    Conference(#[from] ConferenceError),
    #[error(transparent)]
    Group(#[from] crate::ngc::NgcError),
}

struct FriendSlot {
    progress: FriendProgress,
    /// Last no_replay accepted from this friend's DHT-PK packets.
    last_no_replay: Option<u64>,
    next_onion_dhtpk: Instant,
    next_dht_dhtpk: Instant,
    /// The DHT key we are searching for (to remove the search when it changes).
    searching: Option<PublicKey>,
}

pub struct Tox {
    real: KeyPair,
    dht: Dht,
    onion_node: OnionNode,
    rendezvous: Box<dyn Rendezvous + Send>,
    nc: NetCrypto,
    messenger: Messenger,
    friends: BTreeMap<PublicKey, FriendSlot>,
    /// no_replay of our DHT-PK packets: `base + seconds since start`, strictly increasing.
    no_replay_base: u64,
    last_no_replay: u64,
    self_addr: Option<SocketAddr>,
    start: Instant,
    next_tasks: Instant,
    events: VecDeque<ToxEvent>,
    relay_hints: BTreeMap<PublicKey, (Instant, PublicKey, Vec<PackedNode>)>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    local_rendezvous: bool,
    /// The DHT key pair, the sub-machines' seeds and our nonces come from here.
    rng: ToxRng,
    /// Conferences (docs/protocols/tox.md#conferences).
    conferences: Conferences,
    /// TCP relays we are connected to (real TCP addresses), listed first in our DHT-PK.
    tcp_relays: Vec<PackedNode>,
    /// NGC group chats (docs/protocols/tox.md#ngc-group-chats).
    groups: crate::ngc::Groups,
}

impl Tox {
    /// `no_replay_base` should grow across restarts (the driver passes UNIX seconds), as
    /// friends only accept DHT-PK packets with a larger no_replay than the last one.
    /// `real` is the long-term identity, made by the caller. `rng_seed` seeds everything
    /// random in the machine — this run's DHT key pair, and through seeds drawn from it
    /// the DHT, onion node and net_crypto (see [`ToxRng`]): the driver passes 32 bytes
    /// from the OS, tests a constant.
    pub fn new(
        real: KeyPair,
        nospam: NoSpam,
        nickname: &str,
        no_replay_base: u64,
        rendezvous: Box<dyn Rendezvous + Send>,
        rng_seed: RngSeed,
        now: Instant,
    ) -> Self {
        let mut rng = rng_from_seed(rng_seed);
        let dht_keys = KeyPair::generate(&mut rng);
        let dht_pk = dht_keys.pk;
        Tox {
            dht: Dht::new(dht_keys.clone(), child_seed(&mut rng), now),
            onion_node: OnionNode::new(dht_keys.clone(), child_seed(&mut rng), now),
            rendezvous,
            nc: NetCrypto::new(real.clone(), dht_keys, child_seed(&mut rng), now),
            conferences: Conferences::new(real.pk, dht_pk, nickname, child_seed(&mut rng)),
            groups: crate::ngc::Groups::new(nickname, child_seed(&mut rng)),
            rng,
            messenger: Messenger::new(nickname, nospam),
            real,
            friends: BTreeMap::new(),
            no_replay_base,
            last_no_replay: 0,
            self_addr: None,
            start: now,
            next_tasks: now,
            events: VecDeque::new(),
            relay_hints: BTreeMap::new(),
            transmits: VecDeque::new(),
            local_rendezvous: true,
            tcp_relays: Vec::new(),
        }
    }

    /// Whether a friend's announcement heard by our own onion node (we are one of the
    /// nodes it announces to: likely in a small network such as a LAN or one node's
    /// community, rare on the public one) is used to reach it at once, without waiting
    /// for our search to see it stored. On by default.
    pub fn set_local_rendezvous(&mut self, on: bool) {
        self.local_rendezvous = on;
    }

    /// A client with tox-net's onion client as its rendezvous; both machines' seeds are
    /// drawn from `rng_seed`.
    pub fn with_onion(
        real: KeyPair,
        nospam: NoSpam,
        nickname: &str,
        no_replay_base: u64,
        rng_seed: RngSeed,
        now: Instant,
    ) -> Self {
        let mut rng = rng_from_seed(rng_seed);
        let onion = OnionClient::new(real.clone(), child_seed(&mut rng), now);
        Self::new(real, nospam, nickname, no_replay_base, Box::new(onion), child_seed(&mut rng), now)
    }

    pub fn tox_id(&self) -> ToxId {
        ToxId::new(self.real.pk, self.messenger.nospam())
    }
    pub fn real_pk(&self) -> PublicKey {
        self.real.pk
    }
    pub fn dht_pk(&self) -> PublicKey {
        self.dht.pk()
    }
    pub fn dht(&self) -> &Dht {
        &self.dht
    }
    pub fn net_crypto(&self) -> &NetCrypto {
        &self.nc
    }
    pub fn is_announced(&self) -> bool {
        self.rendezvous.is_announced()
    }
    pub fn progress(&self, friend: &PublicKey) -> Option<Progress> {
        self.friends.get(friend).map(|f| f.progress.progress())
    }
    pub fn is_online(&self, friend: &PublicKey) -> bool {
        self.messenger.is_online(friend)
    }
    /// The recurring tasks (docs/protocols/tox.md#progress) as they stand now.
    pub fn tasks(&self) -> Vec<Task> {
        crate::friend::tasks(self.real.pk, self.friends.values().map(|f| &f.progress))
    }

    pub fn bootstrap(&mut self, now: Instant, addr: SocketAddr, dht_pk: PublicKey) {
        self.dht.bootstrap(addr, dht_pk, now);
    }

    /// Adds a friend without a request (pre-arranged friendship, or accepting one).
    pub fn add_friend(&mut self, now: Instant, pk: PublicKey) -> Result<(), ToxError> {
        if pk == self.real.pk {
            return Err(ToxError::OwnId);
        }
        if self.friends.contains_key(&pk) {
            return Ok(());
        }
        if self.friends.len() >= MAX_FRIENDS {
            return Err(ToxError::TooManyFriends);
        }
        self.messenger.add_friend(now, pk, &mut self.nc);
        self.rendezvous.add_friend(now, pk);
        let mut progress = FriendProgress::new(pk);
        if let Some(p) = progress.poll_entered() {
            self.events.push_back(ToxEvent::Progress { friend: pk, progress: p });
        }
        self.friends.insert(
            pk,
            FriendSlot { progress, last_no_replay: None, next_onion_dhtpk: now, next_dht_dhtpk: now, searching: None },
        );
        self.next_tasks = now;
        Ok(())
    }

    /// Forgets a friend: its connection is killed (kill packet), its handshakes are
    /// refused, and the rendezvous and DHT searches for it stop. False if it was not a
    /// friend. (Messenger keeps a dormant entry for it; adding it again reuses that.)
    pub fn remove_friend(&mut self, now: Instant, pk: &PublicKey) -> bool {
        let Some(f) = self.friends.remove(pk) else { return false };
        self.messenger.remove_friend(pk, &mut self.nc);
        self.conferences.friend_offline(pk);
        self.rendezvous.remove_friend(pk);
        if let Some(dht_pk) = f.searching {
            self.dht.remove_search(&dht_pk);
        }
        self.process(now);
        true
    }

    /// Adds the owner of `id` as a friend and sends it a friend request.
    pub fn send_friend_request(&mut self, now: Instant, id: &ToxId, message: &str) -> Result<(), ToxError> {
        self.add_friend(now, id.pk)?;
        self.messenger.send_friend_request(now, id.pk, id.nospam, message, &mut self.nc)?;
        self.next_tasks = now;
        Ok(())
    }

    pub fn send_message(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        kind: MessageKind,
        text: &str,
    ) -> Result<u32, ToxError> {
        let r = self.messenger.send_message(now, &mut self.nc, friend, kind, text)?;
        Ok(r)
    }

    /// Ends every friend connection with a kill packet (so friends notice at once, not
    /// after 32 s of silence). Call before dropping the machine; then flush transmits.
    /// Offers a file to an online friend; returns its sending file number. Its chunks are
    /// asked for with [`FileEvent::ChunkRequest`] once the friend accepts.
    pub fn file_send(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        kind: u32,
        size: u64,
        file_id: [u8; FILE_ID_SIZE],
        name: &str,
    ) -> Result<u8, ToxError> {
        let r = self.messenger.files(friend)?.send_file(now, &mut self.nc, friend, kind, size, file_id, name)?;
        self.process(now);
        Ok(r)
    }

    /// Accept / pause / resume / cancel a transfer.
    pub fn file_control(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        direction: Direction,
        number: u8,
        control: Control,
    ) -> Result<(), ToxError> {
        self.messenger.files(friend)?.control(now, &mut self.nc, friend, direction, number, control)?;
        self.process(now);
        Ok(())
    }

    /// Resume an offered file from `position` (before accepting it).
    pub fn file_seek(&mut self, now: Instant, friend: &PublicKey, number: u8, position: u64) -> Result<(), ToxError> {
        self.messenger.files(friend)?.seek(now, &mut self.nc, friend, number, position)?;
        self.process(now);
        Ok(())
    }

    /// The bytes a [`FileEvent::ChunkRequest`] asked for.
    pub fn file_chunk(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        number: u8,
        position: u64,
        data: &[u8],
    ) -> Result<(), ToxError> {
        self.messenger.files(friend)?.send_chunk(now, &mut self.nc, friend, number, position, data)?;
        Ok(())
    }

    /// Bytes done and size of a transfer.
    pub fn file_progress(&self, friend: &PublicKey, direction: Direction, number: u8) -> Option<(u64, u64)> {
        self.messenger.files_ref().progress(friend, direction, number)
    }

    pub fn shutdown(&mut self, now: Instant) {
        let peers: Vec<PublicKey> = self.friends.keys().copied().collect();
        for p in peers {
            self.nc.kill(&p);
        }
        self.process(now);
    }

    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), ToxError> {
        let Some(&k) = data.first() else { return Err(ToxError::Dropped("empty".into())) };
        let r = match k {
            kind::PING_REQUEST
            | kind::PING_RESPONSE
            | kind::NODES_REQUEST
            | kind::NODES_RESPONSE
            | kind::DHT_REQUEST
            | kind::LAN_DISCOVERY => self.dht.handle_packet(now, from, data).map_err(|e| e.to_string()),
            0x18..=0x1b => self.nc.handle_packet(now, from, data).map_err(|e| e.to_string()),
            kind::ANNOUNCE_RESPONSE | kind::ONION_DATA_RESPONSE => {
                self.rendezvous.handle_packet(now, from, data, &self.dht)
            }
            0x80..=0x8e => self.onion_node.handle_packet(now, from, data, &self.dht).map_err(|e| e.to_string()),
            crate::ngc::net_id::HANDSHAKE..=crate::ngc::net_id::LOSSY => {
                self.groups.handle_udp(now, from, data).map_err(|e| e.to_string())
            }
            other => Err(format!("unhandled packet kind {other:#04x}")),
        };
        self.process(now);
        r.map_err(ToxError::Dropped)
    }

    pub fn tick(&mut self, now: Instant) {
        self.dht.tick(now);
        self.onion_node.tick(now);
        self.rendezvous.tick(now, &self.dht);
        self.nc.tick(now);
        self.messenger.tick(now, &mut self.nc);
        self.conferences.tick(now);
        self.groups.tick(now);
        for f in self.friends.values_mut() {
            f.progress.tick(now);
        }
        if now >= self.next_tasks {
            self.run_tasks(now);
            self.next_tasks = now + TASK_INTERVAL;
        }
        self.process(now);
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.dht
            .poll_transmit()
            .or_else(|| self.nc.poll_transmit())
            .or_else(|| self.onion_node.poll_transmit())
            .or_else(|| self.rendezvous.poll_transmit())
    }

    pub fn poll_event(&mut self) -> Option<ToxEvent> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        [
            self.dht.next_timeout(),
            self.onion_node.next_timeout(),
            self.rendezvous.next_timeout(),
            self.nc.next_timeout(),
            self.messenger.next_timeout(),
            self.conferences.next_timeout(),
            self.groups.next_timeout(),
            Some(self.next_tasks),
        ]
        .into_iter()
        .flatten()
        .chain(self.friends.values().filter_map(|f| f.progress.next_timeout()))
        .min()
    }

    fn next_no_replay(&mut self, now: Instant) -> u64 {
        let t = self.no_replay_base.saturating_add(now.saturating_duration_since(self.start).as_secs());
        self.last_no_replay = t.max(self.last_no_replay.saturating_add(1));
        self.last_no_replay
    }

    /// The address friends can reach us at, when the driver knows it (a specific bound
    /// address, not 0.0.0.0). It goes first in our DHT-PK packets' node list: a friend
    /// asks every listed node for nodes near our DHT key, so it hears from us directly
    /// and learns our address one round trip after our DHT key.
    pub fn set_self_addr(&mut self, addr: Option<SocketAddr>) {
        self.self_addr = addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
    }

    fn dhtpk_announce(&mut self, now: Instant) -> Vec<u8> {
        let max = crate::packet::limits::MAX_DHT_PK_NODES;
        let mut nodes: Vec<PackedNode> =
            self.self_addr.map(|a| PackedNode::new(a, self.dht.pk())).into_iter().collect();
        let relays: Vec<PackedNode> = self.tcp_relays.iter().take(MAX_DHT_PK_RELAYS).copied().collect();
        nodes.extend(self.dht.closest_nodes(&self.dht.pk(), max - nodes.len() - relays.len()));
        // Our TCP relays go first, as TCP entries (c-toxcore: up to 2, then DHT nodes),
        // so a friend whose UDP fails too reaches us through them.
        let mut v =
            DhtPkAnnounce { no_replay: self.next_no_replay(now), dht_pk: self.dht.pk(), nodes: Vec::new() }.encode();
        for r in relays {
            crate::packet::encode_node_entry(&crate::packet::NodeEntry { tcp: true, node: r }, &mut v);
        }
        for n in &nodes {
            n.encode_into(&mut v);
        }
        v
    }

    /// `[0x9c][our real pk][nonce][box(our real sk, friend real pk)(DHT-PK packet)]`.
    fn dhtpk_dht_request(&mut self, friend: &PublicKey, announce: &[u8]) -> Vec<u8> {
        let nonce = random_nonce(&mut self.rng);
        let mut v = Vec::with_capacity(1 + PUBLIC_KEY_SIZE + NONCE_SIZE + 16 + announce.len());
        v.push(kind::DHT_PK);
        v.extend_from_slice(&self.real.pk.0);
        v.extend_from_slice(&nonce);
        v.extend_from_slice(&encrypt_data(friend, &self.real.sk, &nonce, announce));
        v
    }

    fn run_tasks(&mut self, now: Instant) {
        // Outgoing friend requests through the onion (before DHT-PK: the friend accepts
        // DHT-PK only once it has accepted the request).
        while let Some((to, payload)) = self.messenger.poll_friend_request(now) {
            if self.rendezvous.send_data(now, &to, &payload) == 0 {
                self.messenger.friend_request_unsent(now, &to);
            }
        }
        let tasks = self.tasks();
        for t in tasks {
            match t {
                // The onion client announces us on its own schedule.
                Task::ToxId { .. } => {}
                Task::DhtKey { friend } => {
                    let Some(f) = self.friends.get(&friend) else { continue };
                    let (due_onion, due_dht, dht_pk) =
                        (now >= f.next_onion_dhtpk, now >= f.next_dht_dhtpk, f.progress.dht_pk());
                    if due_onion {
                        let ann = self.dhtpk_announce(now);
                        let copies = self.rendezvous.send_data(now, &friend, &ann);
                        let interval = if copies == 0 {
                            DHTPK_RETRY
                        } else if self.messenger.has_pending_request(&friend) {
                            DHTPK_PENDING_REQUEST_INTERVAL
                        } else {
                            DHTPK_ONION_INTERVAL
                        };
                        if let Some(f) = self.friends.get_mut(&friend) {
                            f.next_onion_dhtpk = now + interval;
                        }
                    }
                    if let (true, Some(dht_pk)) = (due_dht, dht_pk) {
                        let ann = self.dhtpk_announce(now);
                        let req = self.dhtpk_dht_request(&friend, &ann);
                        let sent = self.dht.send_dht_request(now, &dht_pk, &req);
                        if let Some(f) = self.friends.get_mut(&friend) {
                            f.next_dht_dhtpk = now + if sent { DHTPK_DHT_INTERVAL } else { DHTPK_RETRY };
                        }
                    }
                }
                Task::Connect { friend, mode: ConnectMode::SearchDht { dht_pk } } => {
                    let Some(f) = self.friends.get_mut(&friend) else { continue };
                    if f.searching != Some(dht_pk) {
                        if let Some(old) = f.searching.replace(dht_pk) {
                            self.dht.remove_search(&old);
                        }
                        self.dht.add_search(now, dht_pk);
                    }
                    if let Some(addr) = self.dht.search_addr(&dht_pk) {
                        f.progress.on_address(now, dht_pk, addr);
                    }
                }
                Task::Connect { friend, mode: ConnectMode::Handshake { dht_pk, addr } } => {
                    if self.nc.state(&friend).is_none() {
                        self.nc.connect(now, friend, dht_pk, addr);
                    }
                }
            }
        }
    }

    /// A friend's DHT-PK packet named TCP relays: kept, and handed to the driver
    /// ([`poll_relay_hint`](Self::poll_relay_hint)) if UDP has not found the friend within
    /// [`RELAY_FALLBACK`].
    fn relay_hint(&mut self, now: Instant, friend: PublicKey, dht_pk: PublicKey, relays: Vec<PackedNode>) {
        if relays.is_empty() || !self.friends.contains_key(&friend) || self.is_online(&friend) {
            return;
        }
        if self.relay_hints.len() >= MAX_RELAY_HINTS && !self.relay_hints.contains_key(&friend) {
            return;
        }
        let since = self.relay_hints.get(&friend).filter(|h| h.1 == dht_pk).map_or(now, |h| h.0);
        self.relay_hints.insert(friend, (since, dht_pk, relays));
    }

    /// `(friend, its DHT key, the TCP relays it listed)` for a friend that UDP has not found
    /// [`RELAY_FALLBACK`] after it named relays (c-toxcore too prefers UDP).
    pub fn poll_relay_hint(&mut self, now: Instant) -> Option<(PublicKey, PublicKey, Vec<PackedNode>)> {
        let due = self.relay_hints.iter().find(|(_, h)| now >= h.0 + RELAY_FALLBACK).map(|(f, _)| *f)?;
        let (_, dht_pk, relays) = self.relay_hints.remove(&due)?;
        let waiting = self.friends.get(&due).is_some_and(|f| {
            f.progress.progress() == Progress::AcquiringIpAddress && f.progress.dht_pk() == Some(dht_pk)
        });
        if waiting {
            Some((due, dht_pk, relays))
        } else {
            self.poll_relay_hint(now)
        }
    }

    /// The driver reaches `friend` (DHT key `dht_pk`) at `addr` through a TCP relay: use it
    /// as the friend's address if none is known (the progress states go on as for UDP).
    pub fn relay_address(&mut self, now: Instant, friend: &PublicKey, dht_pk: PublicKey, addr: SocketAddr) {
        if let Some(f) = self.friends.get_mut(friend) {
            f.progress.on_address(now, dht_pk, addr);
            self.next_tasks = now;
        }
    }

    fn handle_dhtpk(&mut self, now: Instant, friend: PublicKey, ann: DhtPkAnnounce) {
        let Some(f) = self.friends.get_mut(&friend) else { return };
        if f.last_no_replay.is_some_and(|last| ann.no_replay <= last) {
            return; // replayed or reordered
        }
        f.last_no_replay = Some(ann.no_replay);
        if f.progress.dht_pk() != Some(ann.dht_pk) && f.progress.progress() != Progress::Connected {
            // A new key (first sighting, or the friend restarted): answer with ours now
            // rather than at the next 30 s / 20 s slot, so both sides can handshake.
            f.next_onion_dhtpk = now;
            f.next_dht_dhtpk = now;
        }
        if f.progress.on_dht_key(now, ann.dht_pk) {
            // The friend restarted: its old connection is dead.
            self.nc.kill(&friend);
        }
        let Some(f) = self.friends.get_mut(&friend) else { return };
        for n in &ann.nodes {
            if n.pk == ann.dht_pk {
                f.progress.on_address(now, ann.dht_pk, n.addr);
            }
            self.dht.bootstrap(n.addr, n.pk, now);
        }
        self.next_tasks = now;
    }

    /// A DHT request with id 0x9c: `[0x9c][real pk][nonce][box(DHT-PK packet)]`, whose
    /// DHT key must be the request's sender.
    fn handle_dht_request(&mut self, now: Instant, from_dht: PublicKey, data: &[u8]) {
        if data.first() != Some(&kind::DHT_PK) || data.len() < 1 + PUBLIC_KEY_SIZE + NONCE_SIZE + 16 {
            return;
        }
        let Ok(pk) = <[u8; 32]>::try_from(&data[1..33]) else { return };
        let real = PublicKey(pk);
        if !self.friends.contains_key(&real) {
            return;
        }
        let Ok(nonce) = <[u8; 24]>::try_from(&data[33..57]) else { return };
        let Some(plain) = decrypt_data(&real, &self.real.sk, &nonce, &data[57..]) else { return };
        let Ok((ann, relays)) = DhtPkAnnounce::decode_with_relays(&plain) else { return };
        if ann.dht_pk != from_dht {
            return;
        }
        self.relay_hint(now, real, ann.dht_pk, relays);
        self.handle_dhtpk(now, real, ann);
    }

    /// Drains every sub-machine's events until quiet.
    fn process(&mut self, now: Instant) {
        loop {
            let mut any = false;
            while let Some(e) = self.dht.poll_event() {
                any = true;
                match e {
                    DhtEvent::Found { pk, addr } => {
                        for f in self.friends.values_mut() {
                            f.progress.on_address(now, pk, addr);
                        }
                        self.next_tasks = now;
                    }
                    DhtEvent::Request { from, data } => self.handle_dht_request(now, from, &data),
                }
            }
            while let Some(e) = self.rendezvous.poll_event() {
                any = true;
                match e {
                    RendezvousEvent::Announced => self.events.push_back(ToxEvent::Announced),
                    RendezvousEvent::FriendFound { real_pk } => {
                        if let Some(f) = self.friends.get_mut(&real_pk) {
                            f.next_onion_dhtpk = now;
                            self.next_tasks = now;
                            self.messenger.friend_request_due_now(now, &real_pk);
                            self.events.push_back(ToxEvent::FriendFound { friend: real_pk });
                        }
                    }
                    RendezvousEvent::Data { from_real_pk, data } => match data.first() {
                        Some(&kind::DHT_PK) => {
                            if let Ok((ann, relays)) = DhtPkAnnounce::decode_with_relays(&data) {
                                self.relay_hint(now, from_real_pk, ann.dht_pk, relays);
                                self.handle_dhtpk(now, from_real_pk, ann);
                            }
                        }
                        Some(&kind::FRIEND_REQUEST) => {
                            let _ = self.messenger.handle_onion_friend_request(from_real_pk, &data);
                        }
                        _ => {}
                    },
                }
            }
            while let Some(e) = self.onion_node.poll_event() {
                let (OnionNodeEvent::Stored { pk, data_pk } | OnionNodeEvent::Heard { pk, data_pk }) = e;
                let waiting = self.friends.get(&pk).is_some_and(|f| f.progress.progress() != Progress::Connected);
                if self.local_rendezvous && waiting {
                    any = true;
                    self.rendezvous.local_announcement(now, &pk, data_pk);
                }
            }
            while let Some(p) = self.rendezvous.poll_local() {
                any = true;
                // Fails only when the heard path aged out meanwhile: the copies sent
                // through rendezvous nodes still go.
                let _ = self.onion_node.deliver_local(now, &p);
            }
            while let Some(e) = self.nc.poll_event() {
                any = true;
                match &e {
                    NetCryptoEvent::State { peer, state } => {
                        if let Some(f) = self.friends.get_mut(peer) {
                            f.progress.on_connection(now, *state);
                        }
                    }
                    NetCryptoEvent::PeerDhtKey { peer, dht_pk, addr } => {
                        if let Some(f) = self.friends.get_mut(peer) {
                            f.progress.on_handshake(now, *dht_pk, *addr);
                        }
                    }
                    NetCryptoEvent::Closed { peer, reason } => {
                        if let Some(f) = self.friends.get_mut(peer) {
                            f.progress.on_closed(now, *reason);
                            self.rendezvous.search_again(now, peer);
                        }
                        self.next_tasks = now;
                    }
                    _ => {}
                }
                self.messenger.handle_net_crypto_event(now, &e, &mut self.nc);
                if let NetCryptoEvent::Lossless { peer, data } = &e {
                    let conf = data.first().is_some_and(|&b| crate::conference::is_conference_packet(b));
                    if conf && self.messenger.is_online(peer) {
                        // Its ONLINE may have come in this very batch, before the
                        // FriendOnline event below: the conferences hear of it first.
                        if !self.conferences.is_friend_online(peer) {
                            let temp = self.nc.peer_dht_pk(peer).unwrap_or(*peer);
                            self.conferences.friend_online(*peer, temp);
                        }
                        // Malformed or unexpected: dropped, the friend stays (c-toxcore too).
                        let _ = self.conferences.handle_packet(now, peer, data);
                    }
                    if data.first() == Some(&crate::ngc::PACKET_ID_INVITE_GROUPCHAT) && self.messenger.is_online(peer) {
                        let addr = self.nc.peer_addr(peer);
                        let _ = self.groups.handle_friend_packet(now, peer, addr, data);
                    }
                }
            }
            while let Some(e) = self.messenger.poll_event() {
                any = true;
                match &e {
                    MessengerEvent::FriendOnline { friend } => {
                        let temp = self.nc.peer_dht_pk(friend).unwrap_or(*friend);
                        self.conferences.friend_online(*friend, temp);
                        if let Some(addr) = self.nc.peer_addr(friend) {
                            self.groups.friend_online(now, friend, addr);
                        }
                    }
                    MessengerEvent::FriendOffline { friend } => self.conferences.friend_offline(friend),
                    _ => {}
                }
                let ev = match e {
                    MessengerEvent::FriendOnline { friend } => ToxEvent::FriendOnline { friend },
                    MessengerEvent::FriendOffline { friend } => ToxEvent::FriendOffline { friend },
                    MessengerEvent::Message { friend, kind, text } => ToxEvent::Message { friend, kind, text },
                    MessengerEvent::Receipt { friend, receipt } => ToxEvent::Receipt { friend, receipt },
                    MessengerEvent::Nickname { friend, name } => ToxEvent::Nickname { friend, name },
                    MessengerEvent::FriendRequest { from, message, via } => {
                        if via == RequestVia::NetCrypto || self.friends.contains_key(&from) {
                            continue;
                        }
                        ToxEvent::FriendRequest { from, message }
                    }
                    _ => continue,
                };
                self.events.push_back(ev);
            }
            while let Some(e) = self.messenger.poll_file_event() {
                any = true;
                self.events.push_back(ToxEvent::File(e));
            }
            while let Some((to, data)) = self.conferences.poll_transmit() {
                any = true;
                let _ = self.nc.send_lossless(now, &to, &data);
            }
            while let Some(e) = self.conferences.poll_event() {
                any = true;
                self.events.push_back(ToxEvent::Conference(e));
            }
            while let Some((to, data)) = self.groups.poll_friend_transmit() {
                any = true;
                let _ = self.nc.send_lossless(now, &to, &data);
            }
            while let Some(t) = self.groups.poll_udp_transmit() {
                any = true;
                self.transmits.push_back(t);
            }
            while let Some(e) = self.groups.poll_event() {
                any = true;
                self.events.push_back(ToxEvent::Group(e));
            }
            for (pk, f) in self.friends.iter_mut() {
                while let Some(p) = f.progress.poll_entered() {
                    self.events.push_back(ToxEvent::Progress { friend: *pk, progress: p });
                }
            }
            if !any {
                break;
            }
        }
    }

    // Conferences (docs/protocols/tox.md#conferences): c-toxcore 0.2.18's group chats.

    /// Creates a conference with us as its only member; returns its number.
    pub fn conference_new(&mut self, now: Instant) -> Result<u32, ToxError> {
        let n = self.conferences.create(now)?;
        self.process(now);
        Ok(n)
    }

    /// Invites an online friend into a conference.
    pub fn conference_invite(&mut self, now: Instant, conference: u32, friend: &PublicKey) -> Result<(), ToxError> {
        self.conferences.invite(conference, friend)?;
        self.process(now);
        Ok(())
    }

    /// Accepts an invite (from [`ConferenceEvent::Invite`]); returns the conference number.
    pub fn conference_join(&mut self, now: Instant, invite: u32) -> Result<u32, ToxError> {
        let n = self.conferences.join(now, invite)?;
        self.process(now);
        Ok(n)
    }

    /// Sends a line (or an action) to a conference.
    pub fn conference_send(
        &mut self,
        now: Instant,
        conference: u32,
        kind: MessageKind,
        text: &str,
    ) -> Result<(), ToxError> {
        self.conferences.send_message(now, conference, kind, text)?;
        self.process(now);
        Ok(())
    }

    pub fn conference_set_title(&mut self, now: Instant, conference: u32, title: &str) -> Result<(), ToxError> {
        self.conferences.set_title(now, conference, title)?;
        self.process(now);
        Ok(())
    }

    /// Leaves a conference (the others are told) and forgets it.
    pub fn conference_leave(&mut self, now: Instant, conference: u32) -> Result<(), ToxError> {
        self.conferences.leave(now, conference)?;
        self.process(now);
        Ok(())
    }

    /// The peer list (ourselves included once joined), or None for no such conference.
    pub fn conference_peers(&self, conference: u32) -> Option<Vec<ConferencePeer>> {
        self.conferences.peers(conference)
    }

    /// Our conferences' numbers.
    pub fn conferences(&self) -> Vec<u32> {
        self.conferences.list()
    }

    pub fn conference_id(&self, conference: u32) -> Option<ConferenceId> {
        self.conferences.id(conference)
    }

    pub fn conference_by_id(&self, id: &ConferenceId) -> Option<u32> {
        self.conferences.by_id(id)
    }

    pub fn conference_title(&self, conference: u32) -> Option<String> {
        self.conferences.title(conference)
    }

    pub fn conference_connected(&self, conference: u32) -> bool {
        self.conferences.is_connected(conference)
    }

    /// Invites not answered yet: (invite, friend, conference id).
    pub fn conference_invites(&self) -> Vec<(u32, PublicKey, ConferenceId)> {
        self.conferences.invites()
    }

    /// The conferences to keep across a restart.
    pub fn conference_save(&self) -> Vec<SavedConference> {
        self.conferences.save()
    }

    /// Restores a saved conference (its peers rejoin as they come online).
    pub fn conference_load(&mut self, now: Instant, saved: &SavedConference) -> Result<u32, ToxError> {
        Ok(self.conferences.load(now, saved)?)
    }

    /// The TCP relays the driver is connected to (their TCP addresses and keys): listed
    /// in our DHT-PK packets, and the first hops of onion paths while UDP gets no answer
    /// (docs/protocols/tox.md#tcp-relays).
    pub fn set_tcp_relays(&mut self, relays: Vec<PackedNode>) {
        self.rendezvous.set_tcp_relays(relays.iter().map(|r| r.pk).collect());
        self.tcp_relays = relays;
    }

    /// Onion requests for a TCP relay: `(relay key, packet 8 body)`.
    pub fn poll_tcp_onion(&mut self) -> Option<(PublicKey, Vec<u8>)> {
        self.rendezvous.poll_tcp_transmit()
    }

    /// Relay packet 9 (an onion response) from the relay `relay`.
    pub fn handle_tcp_onion(&mut self, now: Instant, relay: PublicKey, data: &[u8]) -> Result<(), ToxError> {
        let r = self.rendezvous.handle_tcp_packet(now, relay, data);
        self.process(now);
        r.map_err(ToxError::Dropped)
    }

    // NGC group chats (docs/protocols/tox.md#ngc-group-chats): c-toxcore ≥ 0.2.19's groups.

    /// Founds a private group named `name`; returns its number.
    pub fn group_new(&mut self, now: Instant, name: &str) -> Result<u32, ToxError> {
        let n = self.groups.create(name)?;
        self.process(now);
        Ok(n)
    }

    /// Invites an online friend into a group.
    pub fn group_invite_friend(&mut self, now: Instant, group: u32, friend: &PublicKey) -> Result<(), ToxError> {
        self.groups.invite_friend(group, friend)?;
        self.process(now);
        Ok(())
    }

    /// Accepts an invite (from [`crate::ngc::GroupEvent::Invite`]); returns the group number.
    pub fn group_join_invite(&mut self, now: Instant, invite: u32) -> Result<u32, ToxError> {
        let n = self.groups.join_invite(now, invite)?;
        self.process(now);
        Ok(n)
    }

    /// Sends a line (or an action) to a group.
    pub fn group_send(&mut self, now: Instant, group: u32, action: bool, text: &str) -> Result<(), ToxError> {
        self.groups.send_message(now, group, action, text)?;
        self.process(now);
        Ok(())
    }

    /// Leaves a group (its peers are told) and forgets it.
    pub fn group_leave(&mut self, now: Instant, group: u32) -> Result<(), ToxError> {
        self.groups.leave(now, group)?;
        self.process(now);
        Ok(())
    }

    /// The group's confirmed peers and ourselves, or None for no such group.
    pub fn group_peers(&self, group: u32) -> Option<Vec<crate::ngc::GroupPeer>> {
        self.groups.peers(group)
    }

    /// Our groups' numbers.
    pub fn groups(&self) -> Vec<u32> {
        self.groups.list()
    }

    pub fn group_chat_id(&self, group: u32) -> Option<crate::ngc::ChatId> {
        self.groups.chat_id(group)
    }

    pub fn group_connected(&self, group: u32) -> bool {
        self.groups.is_connected(group)
    }

    /// Group invites not answered yet: (invite, friend, chat id).
    pub fn group_invites(&self) -> Vec<(u32, PublicKey, crate::ngc::ChatId)> {
        self.groups.invites()
    }

    /// The group's name (from its shared state; "" until the sync brought it).
    pub fn group_name(&self, group: u32) -> Option<String> {
        self.groups.name(group)
    }

    /// The number of the group with this chat id.
    pub fn group_by_chat_id(&self, id: &crate::ngc::ChatId) -> Option<u32> {
        self.groups.by_chat_id(id)
    }

    /// The groups to keep across a restart ([`crate::ngc::Groups::save`]).
    pub fn group_save(&self) -> Vec<u8> {
        self.groups.save()
    }

    /// Restores saved groups; they reconnect to their saved peers by themselves.
    pub fn group_load(&mut self, now: Instant, saved: &[u8]) -> Result<Vec<u32>, ToxError> {
        let n = self.groups.load(now, saved)?;
        self.process(now);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An in-memory rendezvous: every client "announced" in the hub can be sent data to.
    /// It stands in for the onion (tested on its own in onion*.rs) so that the client's
    /// composition — DHT, net_crypto, Messenger, progress states — runs in simulated time.
    #[derive(Default)]
    struct Hub {
        announced: Vec<PublicKey>,
        mail: Vec<(PublicKey, PublicKey, Vec<u8>)>, // (to, from, data)
    }
    struct HubClient {
        me: PublicKey,
        hub: Arc<Mutex<Hub>>,
        friends: Vec<PublicKey>,
        announced: bool,
        events: VecDeque<RendezvousEvent>,
    }
    impl Rendezvous for HubClient {
        fn add_friend(&mut self, _now: Instant, pk: PublicKey) {
            self.friends.push(pk);
        }
        fn remove_friend(&mut self, pk: &PublicKey) {
            self.friends.retain(|f| f != pk);
        }
        fn handle_packet(&mut self, _: Instant, _: SocketAddr, _: &[u8], _: &Dht) -> Result<(), String> {
            Err("no onion in this test".into())
        }
        fn tick(&mut self, _now: Instant, dht: &Dht) {
            let mut hub = self.hub.lock().unwrap();
            if !self.announced && dht.is_connected() {
                self.announced = true;
                hub.announced.push(self.me);
                self.events.push_back(RendezvousEvent::Announced);
            }
            let me = self.me;
            let mut keep = vec![];
            for (to, from, data) in hub.mail.drain(..) {
                if to == me {
                    self.events.push_back(RendezvousEvent::Data { from_real_pk: from, data });
                } else {
                    keep.push((to, from, data));
                }
            }
            hub.mail = keep;
        }
        fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
            None
        }
        fn poll_event(&mut self) -> Option<RendezvousEvent> {
            self.events.pop_front()
        }
        fn next_timeout(&self) -> Option<Instant> {
            None
        }
        fn send_data(&mut self, _now: Instant, to: &PublicKey, inner: &[u8]) -> usize {
            let mut hub = self.hub.lock().unwrap();
            if !self.announced || !hub.announced.contains(to) {
                return 0;
            }
            hub.mail.push((*to, self.me, inner.to_vec()));
            1
        }
        fn is_announced(&self) -> bool {
            self.announced
        }
    }

    struct World {
        nodes: Vec<(SocketAddr, Tox, Vec<ToxEvent>)>,
        now: Instant,
        /// Fraction of datagrams lost.
        loss: f64,
        rng: rand::rngs::StdRng,
        /// Every datagram sent, in order: (from, to, bytes).
        wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    }

    impl World {
        fn new(n: usize) -> Self {
            Self::build(n, false)
        }
        /// With tox-net's real onion client (every node is also an onion node).
        fn with_onion(n: usize) -> Self {
            Self::build(n, true)
        }
        fn build(n: usize, onion: bool) -> Self {
            Self::seeded(n, onion, 1, Instant::now())
        }
        /// Keys and machine seeds all derive from `seed`.
        fn seeded(n: usize, onion: bool, seed: u64, now: Instant) -> Self {
            let mut rng = crate::crypto::seeded_rng(seed);
            let hub = Arc::new(Mutex::new(Hub::default()));
            let mut nodes = vec![];
            for i in 0..n {
                let keys = KeyPair::generate(&mut rng);
                let machine_seed = child_seed(&mut rng);
                let rv = HubClient {
                    me: keys.pk,
                    hub: hub.clone(),
                    friends: vec![],
                    announced: false,
                    events: VecDeque::new(),
                };
                let tox = if onion {
                    Tox::with_onion(keys, NoSpam([i as u8; 4]), &format!("n{i}"), 1000, machine_seed, now)
                } else {
                    Tox::new(keys, NoSpam([i as u8; 4]), &format!("n{i}"), 1000, Box::new(rv), machine_seed, now)
                };
                nodes.push((SocketAddr::from(([10, 0, 0, i as u8 + 1], 33445)), tox, vec![]));
            }
            // Everyone bootstraps off node 0.
            let (a0, pk0) = (nodes[0].0, nodes[0].1.dht_pk());
            for (_, t, _) in nodes.iter_mut().skip(1) {
                t.bootstrap(now, a0, pk0);
            }
            World { nodes, now, loss: 0.0, rng: rand::SeedableRng::seed_from_u64(11), wire: vec![] }
        }
        fn run(&mut self, d: Duration, mut until: impl FnMut(&World) -> bool) -> bool {
            let end = self.now + d;
            while self.now < end {
                // Deliver packets (instant, lossless network).
                let mut moved = true;
                while moved {
                    moved = false;
                    for i in 0..self.nodes.len() {
                        while let Some((to, p)) = self.nodes[i].1.poll_transmit() {
                            moved = true;
                            let from = self.nodes[i].0;
                            self.wire.push((from, to, p.clone()));
                            let lost = rand::Rng::random::<f64>(&mut self.rng) < self.loss;
                            if let Some(j) = self.nodes.iter().position(|n| n.0 == to).filter(|_| !lost) {
                                let now = self.now;
                                let _ = self.nodes[j].1.handle_packet(now, from, &p);
                            }
                        }
                    }
                }
                for n in self.nodes.iter_mut() {
                    while let Some(e) = n.1.poll_event() {
                        n.2.push(e);
                    }
                }
                if until(self) {
                    return true;
                }
                self.now += Duration::from_millis(50);
                let now = self.now;
                for n in self.nodes.iter_mut() {
                    n.1.tick(now);
                }
            }
            false
        }
    }

    fn progress_names(ev: &[ToxEvent], friend: PublicKey) -> Vec<&'static str> {
        ev.iter()
            .filter_map(|e| match e {
                ToxEvent::Progress { friend: f, progress } if *f == friend => Some(progress.name()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_clients_befriend_through_every_progress_state() {
        befriend(&mut World::new(4), 2, 3, true);
    }

    #[test]
    fn two_clients_befriend_over_the_real_onion() {
        let n = 10;
        befriend(&mut World::with_onion(n), n - 2, n - 1, false);
    }

    #[test]
    fn befriend_over_the_real_onion_with_ten_percent_loss() {
        let n = 10;
        let mut w = World::with_onion(n);
        w.loss = 0.1;
        befriend(&mut w, n - 2, n - 1, false);
    }

    /// Two worlds built from the same seed and keys, fed the same inputs at the same
    /// `now`s (bootstrap, friend request, acceptance, a message, ticks every 50 ms),
    /// put the same bytes on the wire, datagram for datagram; another seed does not.
    #[test]
    fn same_seed_and_inputs_give_the_same_packets() {
        let run = |seed: u64, now: Instant| {
            let n = 6;
            let mut w = World::seeded(n, true, seed, now);
            befriend(&mut w, n - 2, n - 1, false);
            w.wire
        };
        let now = Instant::now();
        let a = run(77, now);
        let b = run(77, now);
        assert!(a.len() > 100, "only {} datagrams", a.len());
        assert_eq!(a.len(), b.len(), "datagram counts differ");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(x == y, "datagram {i} differs: {:?} {:02x?} vs {:?} {:02x?}", (x.0, x.1), &x.2, (y.0, y.1), &y.2);
        }
        // A later base instant changes nothing either: only durations matter.
        assert!(run(77, now + Duration::from_secs(1000)) == a);
        let c = run(78, now);
        assert!(c.iter().zip(&a).any(|(x, y)| x != y), "another seed gave the same packets");
    }

    fn befriend(w: &mut World, a: usize, b: usize, full_sequence: bool) {
        let b_id = w.nodes[b].1.tox_id();
        let (apk, bpk) = (w.nodes[a].1.real_pk(), b_id.pk);
        let now = w.now;
        w.nodes[a].1.send_friend_request(now, &b_id, "hello from a").unwrap();
        // B accepts the request once it arrives.
        let ok = w.run(Duration::from_secs(120), |w| {
            w.nodes[b].2.iter().any(
                |e| matches!(e, ToxEvent::FriendRequest { from, message } if *from == apk && message == "hello from a"),
            )
        });
        assert!(ok, "no friend request at B");
        let now = w.now;
        w.nodes[b].1.add_friend(now, apk).unwrap();
        let ok = w.run(Duration::from_secs(120), |w| w.nodes[a].1.is_online(&bpk) && w.nodes[b].1.is_online(&apk));
        assert!(ok, "not connected: {:?}", progress_names(&w.nodes[a].2, bpk));
        // The progress states in order (docs/protocols/tox.md#progress), from AwaitingDHTKey to Connected; which middle
        // ones A passes depends on who handshakes first (an inbound handshake jumps to
        // AwaitingSessionPacket), so only the lossless in-memory world pins all six.
        let names = progress_names(&w.nodes[a].2, bpk);
        let all = [
            "AwaitingDHTKey",
            "AcquiringIPAddress",
            "AcquiringCookie",
            "AwaitingHandshake",
            "AwaitingSessionPacket",
            "Connected",
        ];
        let idx: Vec<usize> = names.iter().map(|n| all.iter().position(|x| x == n).unwrap()).collect();
        assert!(idx.windows(2).all(|p| p[0] < p[1]), "{names:?}");
        assert_eq!(names.first(), Some(&"AwaitingDHTKey"));
        assert_eq!(names.last(), Some(&"Connected"));
        if full_sequence {
            assert_eq!(names, all);
        }
        assert_eq!(progress_names(&w.nodes[b].2, apk).last(), Some(&"Connected"));
        let now = w.now;
        let r = w.nodes[a].1.send_message(now, &bpk, MessageKind::Normal, "ping").unwrap();
        let ok =
            w.run(Duration::from_secs(5), |w| w.nodes[a].2.contains(&ToxEvent::Receipt { friend: bpk, receipt: r }));
        assert!(ok);
        assert!(w.nodes[b].2.contains(&ToxEvent::Message {
            friend: apk,
            kind: MessageKind::Normal,
            text: "ping".into()
        }));
        // B's nickname came right after its ONLINE (re-requested if it was lost).
        let nick = ToxEvent::Nickname { friend: bpk, name: format!("n{b}") };
        w.run(Duration::from_secs(5), |w| w.nodes[a].2.contains(&nick));
        assert!(
            w.nodes[a].2.contains(&ToxEvent::Nickname { friend: bpk, name: format!("n{b}") }),
            "A: {:?}\nB: {:?}",
            w.nodes[a].2,
            w.nodes[b].2
        );
        assert!(w.nodes[a].1.tasks().len() == 1, "only toxid: runs when connected");
    }

    #[test]
    fn dhtpk_lists_our_own_address_first_when_known() {
        let mut w = World::new(1);
        let now = w.now;
        let t = &mut w.nodes[0].1;
        t.set_self_addr(Some("0.0.0.0:33445".parse().unwrap()));
        assert!(DhtPkAnnounce::decode(&t.dhtpk_announce(now)).unwrap().nodes.is_empty());
        let me: SocketAddr = "192.0.2.7:33445".parse().unwrap();
        t.set_self_addr(Some(me));
        let a = DhtPkAnnounce::decode(&t.dhtpk_announce(now)).unwrap();
        assert_eq!(a.nodes.first(), Some(&PackedNode::new(me, t.dht_pk())));
        assert_eq!(a.dht_pk, t.dht_pk());
        // no_replay strictly increases.
        let b = DhtPkAnnounce::decode(&t.dhtpk_announce(now)).unwrap();
        assert!(b.no_replay > a.no_replay);
    }

    #[test]
    fn dhtpk_replay_and_strangers_refused() {
        let mut w = World::new(2);
        let now = w.now;
        let mut rng = crate::crypto::seeded_rng(5);
        let friend = KeyPair::generate(&mut rng);
        let stranger = KeyPair::generate(&mut rng);
        w.nodes[1].1.add_friend(now, friend.pk).unwrap();
        let dht1 = KeyPair::generate(&mut rng).pk;
        let dht2 = KeyPair::generate(&mut rng).pk;
        let t = &mut w.nodes[1].1;
        t.handle_dhtpk(now, friend.pk, DhtPkAnnounce { no_replay: 10, dht_pk: dht1, nodes: vec![] });
        assert_eq!(t.friends[&friend.pk].progress.dht_pk(), Some(dht1));
        // Same or older no_replay: ignored.
        t.handle_dhtpk(now, friend.pk, DhtPkAnnounce { no_replay: 10, dht_pk: dht2, nodes: vec![] });
        t.handle_dhtpk(now, friend.pk, DhtPkAnnounce { no_replay: 9, dht_pk: dht2, nodes: vec![] });
        assert_eq!(t.friends[&friend.pk].progress.dht_pk(), Some(dht1));
        t.handle_dhtpk(now, friend.pk, DhtPkAnnounce { no_replay: 11, dht_pk: dht2, nodes: vec![] });
        assert_eq!(t.friends[&friend.pk].progress.dht_pk(), Some(dht2));
        // Not a friend: nothing recorded.
        t.handle_dhtpk(now, stranger.pk, DhtPkAnnounce { no_replay: 99, dht_pk: dht1, nodes: vec![] });
        assert!(!t.friends.contains_key(&stranger.pk));
        // A DHT-request DHT-PK whose inner key is not the sender's DHT key is refused.
        let ann = DhtPkAnnounce { no_replay: 50, dht_pk: dht1, nodes: vec![] }.encode();
        let nonce = random_nonce(&mut rng);
        let mut req = vec![kind::DHT_PK];
        req.extend_from_slice(&friend.pk.0);
        req.extend_from_slice(&nonce);
        req.extend_from_slice(&encrypt_data(&t.real_pk(), &friend.sk, &nonce, &ann));
        t.handle_dht_request(now, dht2, &req);
        assert_eq!(t.friends[&friend.pk].progress.dht_pk(), Some(dht2));
        t.handle_dht_request(now, dht1, &req);
        assert_eq!(t.friends[&friend.pk].progress.dht_pk(), Some(dht1));
        // Garbage is ignored.
        t.handle_dht_request(now, dht1, &req[..40]);
        assert!(t.handle_packet(now, "1.2.3.4:5".parse().unwrap(), &[0x77, 1, 2]).is_err());
    }

    /// Conferences through the whole client: node 0 is friends with 1 and 2 (who are
    /// strangers); 0 creates a conference and invites both, and every line reaches the
    /// other two, 1's and 2's relayed by 0.
    #[test]
    fn conference_of_three_with_relaying() {
        let mut w = World::new(3);
        befriend(&mut w, 0, 1, false);
        befriend(&mut w, 0, 2, false);
        let now = w.now;
        let c = w.nodes[0].1.conference_new(now).unwrap();
        for f in [1, 2] {
            let pk = w.nodes[f].1.real_pk();
            let now = w.now;
            w.nodes[0].1.conference_invite(now, c, &pk).unwrap();
            let invite = |w: &World| {
                w.nodes[f].2.iter().find_map(|e| match e {
                    ToxEvent::Conference(ConferenceEvent::Invite { invite, .. }) => Some(*invite),
                    _ => None,
                })
            };
            assert!(w.run(Duration::from_secs(5), |w| invite(w).is_some()), "no invite at {f}");
            let inv = invite(&w).unwrap();
            let now = w.now;
            w.nodes[f].1.conference_join(now, inv).unwrap();
            assert!(w.run(Duration::from_secs(5), |w| w.nodes[f].1.conference_connected(0)), "{f} not joined");
        }
        let full = |w: &World| (0..3).all(|i| w.nodes[i].1.conference_peers(0).is_some_and(|p| p.len() == 3));
        assert!(w.run(Duration::from_secs(5), full), "peer lists not full");
        for i in 0..3 {
            let now = w.now;
            w.nodes[i].1.conference_send(now, 0, MessageKind::Normal, &format!("line {i}")).unwrap();
        }
        let lines = |w: &World, i: usize| -> Vec<String> {
            let mut v: Vec<String> = w.nodes[i]
                .2
                .iter()
                .filter_map(|e| match e {
                    ToxEvent::Conference(ConferenceEvent::Message { text, .. }) => Some(text.clone()),
                    _ => None,
                })
                .collect();
            v.sort();
            v
        };
        w.run(Duration::from_secs(5), |w| (0..3).all(|i| lines(w, i).len() >= 2));
        w.run(Duration::from_secs(1), |_| false);
        for i in 0..3 {
            let want: Vec<String> = (0..3).filter(|&j| j != i).map(|j| format!("line {j}")).collect();
            assert_eq!(lines(&w, i), want, "at {i}");
        }
    }

    /// Our connected TCP relays go first in our DHT-PK packets, as TCP entries, at most
    /// MAX_DHT_PK_RELAYS of them, before our UDP address (docs/protocols/tox.md#tcp-relays).
    #[test]
    fn dhtpk_lists_our_tcp_relays_first() {
        let mut w = World::new(1);
        let now = w.now;
        let t = &mut w.nodes[0].1;
        let me: SocketAddr = "192.0.2.7:33445".parse().unwrap();
        t.set_self_addr(Some(me));
        let relays: Vec<PackedNode> =
            (1..=3u8).map(|i| PackedNode::new(SocketAddr::from(([192, 0, 2, i], 443)), PublicKey([i; 32]))).collect();
        t.set_tcp_relays(relays.clone());
        let p = t.dhtpk_announce(now);
        assert_eq!(DhtPkAnnounce::decode_relays(&p), relays[..MAX_DHT_PK_RELAYS].to_vec());
        assert_eq!(DhtPkAnnounce::decode(&p).unwrap().nodes.first(), Some(&PackedNode::new(me, t.dht_pk())));
        t.set_tcp_relays(Vec::new());
        assert!(DhtPkAnnounce::decode_relays(&t.dhtpk_announce(now)).is_empty());
    }
}
