//! The old hstox notes' per-friend connection progress and recurring tasks, as explicit types
//! (docs/protocols/tox.md#progress).
//!
//! [`FriendProgress`] follows one friend through `AwaitingDHTKey` → `AcquiringIPAddress`
//! → `AcquiringCookie` → `AwaitingHandshake` → `AwaitingSessionPacket` → `Connected`,
//! fed with protocol events (DHT-PK packets, DHT search results, net_crypto states).
//! [`FriendProgress::tasks`] says which of the recurring tasks (docs/protocols/tox.md#progress) should run for it
//! right now; the client machine (`tox.rs`) carries them out:
//! - `toxid:<our pk>` — announce ourselves at rendezvous nodes, always;
//! - `dhtkey:<friend>` — while not connected, search the friend's long-term key at
//!   rendezvous nodes and send our DHT key through them;
//! - `connect:<friend>` — once its DHT key is known: address stale → search the DHT for
//!   that key; address fresh → handshake (cookie request, handshakes every second).
//!
//! A cookie timeout marks the address stale (back to `AcquiringIPAddress`); an inbound
//! handshake jumps to `AwaitingSessionPacket` from any state; a lost connection goes back
//! to `AcquiringIPAddress`, and to `AwaitingDHTKey` once the DHT key has not been seen
//! for [`DHT_KEY_TIMEOUT`].

use crate::crypto::PublicKey;
use crate::net_crypto::{CloseReason, ConnState};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A friend's DHT key is forgotten this long after it was last seen while not connected
/// (c-toxcore's FRIEND_DHT_TIMEOUT, 122 s).
pub const DHT_KEY_TIMEOUT: Duration = Duration::from_secs(122);

/// The old notes' `ToxProgress` (docs/protocols/tox.md#progress), plus `Connected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Progress {
    /// Waiting to receive their DHT key.
    AwaitingDhtKey,
    /// Searching the DHT to obtain their node's IP and port.
    AcquiringIpAddress,
    /// Attempting to obtain a cookie.
    AcquiringCookie,
    /// Our handshake is out; waiting for theirs.
    AwaitingHandshake,
    /// Connection "accepted" but not yet "confirmed".
    AwaitingSessionPacket,
    /// net_crypto confirmed.
    Connected,
}

impl Progress {
    /// The old notes' spelling (docs/protocols/tox.md#progress), printed by `omnipeer tox send`.
    pub fn name(&self) -> &'static str {
        match self {
            Progress::AwaitingDhtKey => "AwaitingDHTKey",
            Progress::AcquiringIpAddress => "AcquiringIPAddress",
            Progress::AcquiringCookie => "AcquiringCookie",
            Progress::AwaitingHandshake => "AwaitingHandshake",
            Progress::AwaitingSessionPacket => "AwaitingSessionPacket",
            Progress::Connected => "Connected",
        }
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `connect:` does in its current mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// Address stale: search the DHT for this DHT key.
    SearchDht { dht_pk: PublicKey },
    /// Address fresh: run the cookie/handshake exchange with it.
    Handshake { dht_pk: PublicKey, addr: SocketAddr },
}

/// The recurring tasks (docs/protocols/tox.md#progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `toxid:<our pk>`: announce ourselves (always while online).
    ToxId { our_pk: PublicKey },
    /// `dhtkey:<friend>`: search the friend at rendezvous nodes, send it our DHT key.
    DhtKey { friend: PublicKey },
    /// `connect:<friend>`.
    Connect { friend: PublicKey, mode: ConnectMode },
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::ToxId { our_pk } => write!(f, "toxid:{}", our_pk.to_hex()),
            Task::DhtKey { friend } => write!(f, "dhtkey:{}", friend.to_hex()),
            Task::Connect { friend, mode: ConnectMode::SearchDht { .. } } => {
                write!(f, "connect:{} (search DHT)", friend.to_hex())
            }
            Task::Connect { friend, mode: ConnectMode::Handshake { addr, .. } } => {
                write!(f, "connect:{} (handshake {addr})", friend.to_hex())
            }
        }
    }
}

/// One friend's progress.
#[derive(Debug, Clone)]
pub struct FriendProgress {
    real_pk: PublicKey,
    dht_pk: Option<PublicKey>,
    /// When the DHT key was last seen (or the connection carrying it dropped).
    dht_seen: Option<Instant>,
    /// The address is fresh while it is `Some`.
    addr: Option<SocketAddr>,
    progress: Progress,
    entered: VecDeque<Progress>,
}

impl FriendProgress {
    pub fn new(real_pk: PublicKey) -> Self {
        FriendProgress {
            real_pk,
            dht_pk: None,
            dht_seen: None,
            addr: None,
            progress: Progress::AwaitingDhtKey,
            entered: VecDeque::from([Progress::AwaitingDhtKey]),
        }
    }

    pub fn real_pk(&self) -> PublicKey {
        self.real_pk
    }
    pub fn progress(&self) -> Progress {
        self.progress
    }
    pub fn dht_pk(&self) -> Option<PublicKey> {
        self.dht_pk
    }
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// States entered since the last call, oldest first.
    pub fn poll_entered(&mut self) -> Option<Progress> {
        self.entered.pop_front()
    }

    fn enter(&mut self, p: Progress) {
        if p != self.progress {
            self.progress = p;
            self.entered.push_back(p);
        }
    }

    fn in_session(&self) -> bool {
        matches!(self.progress, Progress::AwaitingSessionPacket | Progress::Connected)
    }

    /// The friend's DHT key arrived (DHT-PK packet via onion data or DHT request).
    /// Returns true when a connection exists and the key is new: the friend restarted,
    /// so the old connection is dead and must be dropped (c-toxcore does the same).
    pub fn on_dht_key(&mut self, now: Instant, dht_pk: PublicKey) -> bool {
        if self.dht_pk == Some(dht_pk) {
            self.dht_seen = Some(now);
            return false;
        }
        let restart = self.in_session();
        self.dht_pk = Some(dht_pk);
        self.dht_seen = Some(now);
        self.addr = None;
        if !restart {
            self.enter(Progress::AcquiringIpAddress);
        }
        restart
    }

    /// A DHT search (or a packet from that key) gave the address of `dht_pk`.
    pub fn on_address(&mut self, now: Instant, dht_pk: PublicKey, addr: SocketAddr) {
        if self.dht_pk != Some(dht_pk) {
            return;
        }
        self.dht_seen = Some(now);
        if self.progress == Progress::AcquiringIpAddress {
            self.addr = Some(addr);
            self.enter(Progress::AcquiringCookie);
        } else if self.progress == Progress::AcquiringCookie {
            self.addr = Some(addr);
        }
    }

    /// A valid handshake from the friend: its DHT key and address (inbound or answer).
    pub fn on_handshake(&mut self, now: Instant, dht_pk: PublicKey, addr: SocketAddr) {
        self.dht_pk = Some(dht_pk);
        self.dht_seen = Some(now);
        self.addr = Some(addr);
    }

    /// net_crypto's connection to the friend entered `state`.
    pub fn on_connection(&mut self, now: Instant, state: ConnState) {
        self.dht_seen = Some(now);
        match state {
            ConnState::CookieRequesting => {
                if self.progress < Progress::AcquiringCookie {
                    self.enter(Progress::AcquiringCookie)
                }
            }
            ConnState::HandshakeSent => self.enter(Progress::AwaitingHandshake),
            ConnState::NotConfirmed => self.enter(Progress::AwaitingSessionPacket),
            ConnState::Established => self.enter(Progress::Connected),
        }
    }

    /// The net_crypto connection ended (or friend_connection timed it out).
    pub fn on_closed(&mut self, now: Instant, reason: CloseReason) {
        match reason {
            // A newer connection took over; its own states follow.
            CloseReason::Replaced => {}
            // Cookie/handshake unanswered: the address is stale.
            CloseReason::Timeout(_) => {
                self.addr = None;
                if self.dht_pk.is_some() {
                    self.enter(Progress::AcquiringIpAddress);
                } else {
                    self.enter(Progress::AwaitingDhtKey);
                }
            }
            // Connection lost: find the address again; the key expires in DHT_KEY_TIMEOUT.
            CloseReason::Killed | CloseReason::Local => {
                self.addr = None;
                self.dht_seen = Some(now);
                if self.dht_pk.is_some() {
                    self.enter(Progress::AcquiringIpAddress);
                } else {
                    self.enter(Progress::AwaitingDhtKey);
                }
            }
        }
    }

    /// Expires a stale DHT key while not connected.
    pub fn tick(&mut self, now: Instant) {
        if matches!(self.progress, Progress::AcquiringIpAddress | Progress::AcquiringCookie)
            && self.dht_seen.is_some_and(|t| now >= t + DHT_KEY_TIMEOUT)
        {
            self.dht_pk = None;
            self.dht_seen = None;
            self.addr = None;
            self.enter(Progress::AwaitingDhtKey);
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        if matches!(self.progress, Progress::AcquiringIpAddress | Progress::AcquiringCookie) {
            self.dht_seen.map(|t| t + DHT_KEY_TIMEOUT)
        } else {
            None
        }
    }

    /// The recurring tasks (docs/protocols/tox.md#progress) for this friend right now (`toxid:` is global, see [`tasks`]).
    pub fn tasks(&self) -> Vec<Task> {
        let mut t = Vec::new();
        if self.progress == Progress::Connected {
            return t;
        }
        t.push(Task::DhtKey { friend: self.real_pk });
        if let Some(dht_pk) = self.dht_pk {
            let mode = match (self.progress, self.addr) {
                (Progress::AcquiringIpAddress | Progress::AwaitingDhtKey, _) | (_, None) => {
                    ConnectMode::SearchDht { dht_pk }
                }
                (_, Some(addr)) => ConnectMode::Handshake { dht_pk, addr },
            };
            t.push(Task::Connect { friend: self.real_pk, mode });
        }
        t
    }
}

/// All recurring tasks: `toxid:` first, then each friend's.
pub fn tasks<'a>(our_pk: PublicKey, friends: impl IntoIterator<Item = &'a FriendProgress>) -> Vec<Task> {
    let mut t = vec![Task::ToxId { our_pk }];
    for f in friends {
        t.extend(f.tasks());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPair, SecretKey};

    fn setup() -> (FriendProgress, Instant, PublicKey, SocketAddr) {
        (
            FriendProgress::new(KeyPair::from_secret(SecretKey([1; 32])).pk),
            Instant::now(),
            KeyPair::from_secret(SecretKey([2; 32])).pk,
            "10.0.0.1:33445".parse().unwrap(),
        )
    }

    fn drain(f: &mut FriendProgress) -> Vec<&'static str> {
        std::iter::from_fn(|| f.poll_entered()).map(|p| p.name()).collect()
    }

    #[test]
    fn outbound_happy_path_and_tasks() {
        let mut rng = crate::crypto::seeded_rng(101);
        let (mut f, t0, dht, addr) = setup();
        let me = KeyPair::generate(&mut rng).pk;
        assert_eq!(f.progress(), Progress::AwaitingDhtKey);
        assert_eq!(tasks(me, [&f]), vec![Task::ToxId { our_pk: me }, Task::DhtKey { friend: f.real_pk() }]);
        // An address before the key is meaningless.
        f.on_address(t0, dht, addr);
        assert_eq!(f.progress(), Progress::AwaitingDhtKey);
        f.on_dht_key(t0, dht);
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        assert_eq!(f.tasks()[1], Task::Connect { friend: f.real_pk(), mode: ConnectMode::SearchDht { dht_pk: dht } });
        // A search result for another key is ignored.
        f.on_address(t0, KeyPair::generate(&mut rng).pk, addr);
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        f.on_address(t0, dht, addr);
        assert_eq!(f.progress(), Progress::AcquiringCookie);
        assert_eq!(
            f.tasks()[1],
            Task::Connect { friend: f.real_pk(), mode: ConnectMode::Handshake { dht_pk: dht, addr } }
        );
        f.on_connection(t0, ConnState::CookieRequesting);
        assert_eq!(f.progress(), Progress::AcquiringCookie);
        f.on_connection(t0, ConnState::HandshakeSent);
        f.on_connection(t0, ConnState::NotConfirmed);
        assert_eq!(f.tasks().len(), 2, "dhtkey: and connect: run until connected");
        f.on_connection(t0, ConnState::Established);
        assert_eq!(
            drain(&mut f),
            vec![
                "AwaitingDHTKey",
                "AcquiringIPAddress",
                "AcquiringCookie",
                "AwaitingHandshake",
                "AwaitingSessionPacket",
                "Connected"
            ]
        );
        assert!(f.tasks().is_empty());
        assert_eq!(tasks(me, [&f]), vec![Task::ToxId { our_pk: me }]);
        assert_eq!(format!("{}", tasks(me, [&f])[0]), format!("toxid:{}", me.to_hex()));
    }

    #[test]
    fn cookie_timeout_makes_address_stale() {
        let (mut f, t0, dht, addr) = setup();
        f.on_dht_key(t0, dht);
        f.on_address(t0, dht, addr);
        f.on_connection(t0, ConnState::CookieRequesting);
        f.on_closed(t0 + Duration::from_secs(8), CloseReason::Timeout(ConnState::CookieRequesting));
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        assert_eq!(f.addr(), None);
        assert!(matches!(f.tasks()[1], Task::Connect { mode: ConnectMode::SearchDht { .. }, .. }));
        // The handshake stage timing out is the same.
        f.on_address(t0, dht, addr);
        f.on_connection(t0, ConnState::HandshakeSent);
        f.on_closed(t0, CloseReason::Timeout(ConnState::HandshakeSent));
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
    }

    #[test]
    fn inbound_handshake_jumps_to_awaiting_session_packet() {
        let (mut f, t0, dht, addr) = setup();
        // Straight from AwaitingDHTKey: the handshake delivers the DHT key.
        f.on_handshake(t0, dht, addr);
        f.on_connection(t0, ConnState::NotConfirmed);
        assert_eq!(f.progress(), Progress::AwaitingSessionPacket);
        assert_eq!(f.dht_pk(), Some(dht));
        assert_eq!(drain(&mut f), vec!["AwaitingDHTKey", "AwaitingSessionPacket"]);
        f.on_connection(t0, ConnState::Established);
        assert_eq!(f.progress(), Progress::Connected);
    }

    #[test]
    fn connection_loss_then_key_expiry() {
        let (mut f, t0, dht, addr) = setup();
        f.on_handshake(t0, dht, addr);
        f.on_connection(t0, ConnState::NotConfirmed);
        f.on_connection(t0, ConnState::Established);
        // The same key again changes nothing.
        assert!(!f.on_dht_key(t0, dht));
        assert_eq!(f.progress(), Progress::Connected);
        let lost = t0 + Duration::from_secs(300);
        f.on_closed(lost, CloseReason::Killed);
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        assert_eq!(f.next_timeout(), Some(lost + DHT_KEY_TIMEOUT));
        f.tick(lost + DHT_KEY_TIMEOUT - Duration::from_secs(1));
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        f.tick(lost + DHT_KEY_TIMEOUT);
        assert_eq!(f.progress(), Progress::AwaitingDhtKey);
        assert_eq!(f.dht_pk(), None);
        assert_eq!(f.tasks(), vec![Task::DhtKey { friend: f.real_pk() }]);
        // A fresh sighting restarts the climb.
        f.on_dht_key(lost + DHT_KEY_TIMEOUT, dht);
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
    }

    #[test]
    fn new_dht_key_while_connected_means_restart() {
        let mut rng = crate::crypto::seeded_rng(102);
        let (mut f, t0, dht, addr) = setup();
        f.on_handshake(t0, dht, addr);
        f.on_connection(t0, ConnState::NotConfirmed);
        f.on_connection(t0, ConnState::Established);
        let dht2 = KeyPair::generate(&mut rng).pk;
        assert!(f.on_dht_key(t0, dht2), "the caller must kill the old connection");
        // Killing it brings the friend back to the search, with the new key.
        f.on_closed(t0, CloseReason::Local);
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        assert_eq!(f.dht_pk(), Some(dht2));
        assert_eq!(f.tasks()[1], Task::Connect { friend: f.real_pk(), mode: ConnectMode::SearchDht { dht_pk: dht2 } });
    }

    #[test]
    fn replaced_connection_keeps_state_and_new_key_restarts_search() {
        let mut rng = crate::crypto::seeded_rng(103);
        let (mut f, t0, dht, addr) = setup();
        f.on_dht_key(t0, dht);
        f.on_address(t0, dht, addr);
        f.on_connection(t0, ConnState::CookieRequesting);
        // The friend restarted: a DHT-PK with a new key drops the stale address.
        let dht2 = KeyPair::generate(&mut rng).pk;
        f.on_dht_key(t0, dht2);
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        assert_eq!(f.addr(), None);
        f.on_closed(t0, CloseReason::Replaced);
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
        // The key being re-seen keeps it alive.
        f.on_dht_key(t0 + Duration::from_secs(100), dht2);
        f.tick(t0 + Duration::from_secs(200));
        assert_eq!(f.progress(), Progress::AcquiringIpAddress);
    }
}
