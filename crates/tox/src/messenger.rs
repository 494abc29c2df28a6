//! friend_connection + Messenger on top of [`NetCrypto`] (docs/protocols/tox.md#messenger, #old-document items 2 and 3, #dht-pk).
//!
//! - friend_connection: ALIVE (0x10) every 8 s; a connection without any packet for 32 s
//!   is killed. Friend requests over net_crypto (0x12) are decoded.
//! - Messenger: ONLINE (0x18) is sent first on every new connection and nothing from a
//!   friend is accepted before its ONLINE (c-toxcore does the same); NICKNAME,
//!   STATUSMESSAGE, USERSTATUS, TYPING, MESSAGE and ACTION. A message's receipt fires
//!   when the friend's `buffer_start` passes the packet number that carried it — there
//!   is no receipt packet in c-toxcore 0.2.18.
//! - Friend requests: `[0x20][nospam][msg]` (onion data) and `[0x12][nospam][msg]`
//!   (net_crypto), nospam compared verbatim, duplicates and requests from friends dropped;
//!   outgoing requests are repeated with exponential backoff (2, 4, 8 … s, capped) until
//!   the friend comes online.
//!
//! The machine holds no socket and no clock; it drives the `NetCrypto` it is handed.

use crate::crypto::PublicKey;
use crate::file::{FileEvent, Files};
use crate::net_crypto::{NetCrypto, NetCryptoError, NetCryptoEvent};
use crate::toxid::{NoSpam, NOSPAM_SIZE};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

pub mod id {
    pub const ALIVE: u8 = 0x10;
    pub const SHARE_RELAYS: u8 = 0x11;
    pub const FRIEND_REQUEST: u8 = 0x12;
    pub const ONLINE: u8 = 0x18;
    pub const OFFLINE: u8 = 0x19;
    pub const NICKNAME: u8 = 0x30;
    pub const STATUSMESSAGE: u8 = 0x31;
    pub const USERSTATUS: u8 = 0x32;
    pub const TYPING: u8 = 0x33;
    pub const MESSAGE: u8 = 0x40;
    pub const ACTION: u8 = 0x41;
    /// Friend request id inside onion data.
    pub const ONION_FRIEND_REQUEST: u8 = 0x20;
}

pub const MAX_NICKNAME_LEN: usize = 128;
pub const MAX_STATUS_MESSAGE_LEN: usize = 1007;
pub const MAX_MESSAGE_LEN: usize = 1372;
/// Longest friend request message (c-toxcore's TOX_MAX_FRIEND_REQUEST_LENGTH).
pub const MAX_FRIEND_REQUEST_LEN: usize = 1016;
/// Friend requests remembered for de-duplication.
pub const MAX_SEEN_REQUESTS: usize = 1024;
/// Messages waiting for their receipt, per friend.
pub const MAX_PENDING_RECEIPTS: usize = 16384;

pub const ALIVE_INTERVAL: Duration = Duration::from_secs(8);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(32);
pub const REQUEST_FIRST_RETRY: Duration = Duration::from_secs(2);
pub const REQUEST_MAX_RETRY: Duration = Duration::from_secs(64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessengerError {
    #[error("friend request: {0}")]
    FriendRequest(&'static str),
    #[error("friend request with the wrong nospam")]
    NoSpam,
    #[error("message: {0}")]
    Message(&'static str),
    #[error("not a friend")]
    NotFriend,
    #[error("friend not online")]
    NotOnline,
    #[error(transparent)]
    NetCrypto(#[from] NetCryptoError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Normal,
    Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Online,
    Away,
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVia {
    Onion,
    NetCrypto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessengerEvent {
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
    /// The friend received our message `receipt`.
    Receipt {
        friend: PublicKey,
        receipt: u32,
    },
    Nickname {
        friend: PublicKey,
        name: String,
    },
    StatusMessage {
        friend: PublicKey,
        message: String,
    },
    UserStatus {
        friend: PublicKey,
        status: UserStatus,
    },
    Typing {
        friend: PublicKey,
        typing: bool,
    },
    FriendRequest {
        from: PublicKey,
        message: String,
        via: RequestVia,
    },
    /// The friend_connection timed out (32 s silent); its net_crypto connection was killed.
    ConnectionTimeout {
        friend: PublicKey,
    },
}

/// Encodes a friend request payload: `[id][nospam][message]`.
pub fn encode_friend_request(id: u8, nospam: NoSpam, message: &str) -> Result<Vec<u8>, MessengerError> {
    if message.is_empty() || message.len() > MAX_FRIEND_REQUEST_LEN {
        return Err(MessengerError::FriendRequest("message must be 1..=1016 bytes"));
    }
    let mut v = Vec::with_capacity(1 + NOSPAM_SIZE + message.len());
    v.push(id);
    v.extend_from_slice(&nospam.0);
    v.extend_from_slice(message.as_bytes());
    Ok(v)
}

/// Decodes `[id][nospam][message]` (either id 0x20 or 0x12).
pub fn decode_friend_request(b: &[u8]) -> Result<(u8, NoSpam, &[u8]), MessengerError> {
    let (&kind, rest) = b.split_first().ok_or(MessengerError::FriendRequest("empty"))?;
    if kind != id::ONION_FRIEND_REQUEST && kind != id::FRIEND_REQUEST {
        return Err(MessengerError::FriendRequest("wrong id"));
    }
    if rest.len() <= NOSPAM_SIZE {
        return Err(MessengerError::FriendRequest("no message"));
    }
    let (ns, msg) = rest.split_at(NOSPAM_SIZE);
    if msg.len() > MAX_FRIEND_REQUEST_LEN {
        return Err(MessengerError::FriendRequest("message too long"));
    }
    let mut nospam = [0u8; NOSPAM_SIZE];
    nospam.copy_from_slice(ns);
    Ok((kind, NoSpam(nospam), msg))
}

/// A decoded Messenger / friend_connection packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessengerPacket {
    Alive,
    ShareRelays,
    FriendRequest {
        nospam: NoSpam,
        message: Vec<u8>,
    },
    Online,
    Offline,
    Nickname(String),
    StatusMessage(String),
    UserStatus(UserStatus),
    Typing(bool),
    Message(MessageKind, String),
    /// Ids we do not handle (file transfer, conferences, AV, custom).
    Other(u8),
}

fn text(b: &[u8], max: usize, what: &'static str) -> Result<String, MessengerError> {
    if b.len() > max {
        return Err(MessengerError::Message(what));
    }
    // Invalid UTF-8 becomes U+FFFD (c-toxcore does not check); keep within the limit.
    let mut s = String::from_utf8_lossy(b).into_owned();
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    Ok(s)
}

impl MessengerPacket {
    pub fn decode(b: &[u8]) -> Result<Self, MessengerError> {
        let (&kind, body) = b.split_first().ok_or(MessengerError::Message("empty packet"))?;
        Ok(match kind {
            id::ALIVE => MessengerPacket::Alive,
            id::SHARE_RELAYS => MessengerPacket::ShareRelays,
            id::FRIEND_REQUEST => {
                let (_, nospam, msg) = decode_friend_request(b)?;
                MessengerPacket::FriendRequest { nospam, message: msg.to_vec() }
            }
            id::ONLINE => MessengerPacket::Online,
            id::OFFLINE => MessengerPacket::Offline,
            id::NICKNAME => MessengerPacket::Nickname(text(body, MAX_NICKNAME_LEN, "nickname too long")?),
            id::STATUSMESSAGE => {
                MessengerPacket::StatusMessage(text(body, MAX_STATUS_MESSAGE_LEN, "status message too long")?)
            }
            id::USERSTATUS => MessengerPacket::UserStatus(match body {
                [0] => UserStatus::Online,
                [1] => UserStatus::Away,
                [2] => UserStatus::Busy,
                _ => return Err(MessengerError::Message("bad user status")),
            }),
            id::TYPING => MessengerPacket::Typing(match body {
                [0] => false,
                [1] => true,
                _ => return Err(MessengerError::Message("bad typing flag")),
            }),
            id::MESSAGE | id::ACTION => {
                if body.is_empty() {
                    return Err(MessengerError::Message("empty message"));
                }
                let k = if kind == id::MESSAGE { MessageKind::Normal } else { MessageKind::Action };
                MessengerPacket::Message(k, text(body, MAX_MESSAGE_LEN, "message too long")?)
            }
            other => MessengerPacket::Other(other),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            MessengerPacket::Alive => vec![id::ALIVE],
            MessengerPacket::ShareRelays => vec![id::SHARE_RELAYS],
            MessengerPacket::FriendRequest { nospam, message } => {
                let mut v = vec![id::FRIEND_REQUEST];
                v.extend_from_slice(&nospam.0);
                v.extend_from_slice(message);
                v
            }
            MessengerPacket::Online => vec![id::ONLINE],
            MessengerPacket::Offline => vec![id::OFFLINE],
            MessengerPacket::Nickname(s) => [&[id::NICKNAME][..], s.as_bytes()].concat(),
            MessengerPacket::StatusMessage(s) => [&[id::STATUSMESSAGE][..], s.as_bytes()].concat(),
            MessengerPacket::UserStatus(s) => vec![
                id::USERSTATUS,
                match s {
                    UserStatus::Online => 0,
                    UserStatus::Away => 1,
                    UserStatus::Busy => 2,
                },
            ],
            MessengerPacket::Typing(t) => vec![id::TYPING, *t as u8],
            MessengerPacket::Message(k, s) => {
                let i = if *k == MessageKind::Normal { id::MESSAGE } else { id::ACTION };
                [&[i][..], s.as_bytes()].concat()
            }
            MessengerPacket::Other(i) => vec![*i],
        }
    }
}

struct Friend {
    /// net_crypto connection established.
    connected: bool,
    /// ONLINE received.
    online: bool,
    last_recv: Instant,
    last_alive: Instant,
    /// (packet number, receipt id), in sending order.
    pending: VecDeque<(u32, u32)>,
}

struct OutRequest {
    payload: Vec<u8>,
    next: Instant,
    interval: Duration,
}

pub struct Messenger {
    nickname: String,
    status_message: String,
    user_status: UserStatus,
    nospam: NoSpam,
    friends: BTreeMap<PublicKey, Friend>,
    outgoing_requests: BTreeMap<PublicKey, OutRequest>,
    seen_requests: BTreeSet<PublicKey>,
    next_receipt: u32,
    events: VecDeque<MessengerEvent>,
    /// File transfers with every friend (docs/protocols/tox.md#file-transfers).
    files: Files,
}

impl Messenger {
    pub fn new(nickname: &str, nospam: NoSpam) -> Self {
        let mut nickname = nickname.to_string();
        while nickname.len() > MAX_NICKNAME_LEN {
            nickname.pop();
        }
        Messenger {
            nickname,
            status_message: String::new(),
            user_status: UserStatus::Online,
            nospam,
            friends: BTreeMap::new(),
            outgoing_requests: BTreeMap::new(),
            seen_requests: BTreeSet::new(),
            next_receipt: 1,
            events: VecDeque::new(),
            files: Files::new(),
        }
    }

    pub fn nospam(&self) -> NoSpam {
        self.nospam
    }

    /// The file transfers; their calls need the friend online (checked here) and the
    /// machine's `NetCrypto`.
    pub fn files(&mut self, friend: &PublicKey) -> Result<&mut Files, MessengerError> {
        if !self.is_online(friend) {
            return Err(MessengerError::NotOnline);
        }
        Ok(&mut self.files)
    }

    pub fn files_ref(&self) -> &Files {
        &self.files
    }

    pub fn poll_file_event(&mut self) -> Option<FileEvent> {
        self.files.poll_event()
    }

    /// Adds a friend (its handshakes are accepted from now on).
    pub fn add_friend(&mut self, now: Instant, pk: PublicKey, nc: &mut NetCrypto) {
        nc.allow(pk);
        self.friends.entry(pk).or_insert(Friend {
            connected: false,
            online: false,
            last_recv: now,
            last_alive: now,
            pending: VecDeque::new(),
        });
    }

    /// Removes a friend: its connection is killed, its handshakes refused, a friend request
    /// to it stops, its transfers end, and a new request from it is reported again.
    pub fn remove_friend(&mut self, pk: &PublicKey, nc: &mut NetCrypto) -> bool {
        let was = self.friends.remove(pk).is_some();
        self.outgoing_requests.remove(pk);
        self.seen_requests.remove(pk);
        self.files.forget(pk);
        nc.kill(pk);
        nc.disallow(pk);
        was
    }

    pub fn is_friend(&self, pk: &PublicKey) -> bool {
        self.friends.contains_key(pk)
    }
    pub fn is_online(&self, pk: &PublicKey) -> bool {
        self.friends.get(pk).is_some_and(|f| f.online)
    }
    pub fn friends(&self) -> impl Iterator<Item = &PublicKey> {
        self.friends.keys()
    }

    /// Adds `to` as a friend and starts sending it a friend request (payload for onion
    /// data, id 0x20) — collected with [`Messenger::poll_friend_request`].
    pub fn send_friend_request(
        &mut self,
        now: Instant,
        to: PublicKey,
        their_nospam: NoSpam,
        message: &str,
        nc: &mut NetCrypto,
    ) -> Result<(), MessengerError> {
        let payload = encode_friend_request(id::ONION_FRIEND_REQUEST, their_nospam, message)?;
        self.add_friend(now, to, nc);
        self.outgoing_requests.insert(to, OutRequest { payload, next: now, interval: REQUEST_FIRST_RETRY });
        Ok(())
    }

    /// A friend request due for sending through the onion, if any (exponential backoff;
    /// stops once the friend is online).
    pub fn poll_friend_request(&mut self, now: Instant) -> Option<(PublicKey, Vec<u8>)> {
        let (pk, r) = self.outgoing_requests.iter_mut().find(|(_, r)| r.next <= now)?;
        r.next = now + r.interval;
        r.interval = (r.interval * 2).min(REQUEST_MAX_RETRY);
        Some((*pk, r.payload.clone()))
    }

    /// Whether a friend request to `to` is still being sent (it is not online yet).
    pub fn has_pending_request(&self, to: &PublicKey) -> bool {
        self.outgoing_requests.contains_key(to)
    }

    /// Makes the pending request to `to` due now (the friend was just found).
    pub fn friend_request_due_now(&mut self, now: Instant, to: &PublicKey) {
        if let Some(r) = self.outgoing_requests.get_mut(to) {
            r.next = now;
        }
    }

    /// The request returned by `poll_friend_request` could not be sent (the friend is not
    /// found at any rendezvous node yet): try again in a second, without backing off.
    pub fn friend_request_unsent(&mut self, now: Instant, to: &PublicKey) {
        if let Some(r) = self.outgoing_requests.get_mut(to) {
            r.next = now + Duration::from_secs(1);
            r.interval = REQUEST_FIRST_RETRY;
        }
    }

    /// A friend request that arrived as onion data (`[0x20][nospam][msg]`).
    pub fn handle_onion_friend_request(&mut self, from: PublicKey, data: &[u8]) -> Result<(), MessengerError> {
        let (kind, nospam, msg) = decode_friend_request(data)?;
        if kind != id::ONION_FRIEND_REQUEST {
            return Err(MessengerError::FriendRequest("wrong id for onion data"));
        }
        self.friend_request(from, nospam, msg, RequestVia::Onion)
    }

    fn friend_request(
        &mut self,
        from: PublicKey,
        nospam: NoSpam,
        msg: &[u8],
        via: RequestVia,
    ) -> Result<(), MessengerError> {
        if nospam != self.nospam {
            return Err(MessengerError::NoSpam);
        }
        if self.friends.contains_key(&from) || self.seen_requests.contains(&from) {
            return Ok(()); // duplicate (c-toxcore resends with backoff) or already a friend
        }
        if self.seen_requests.len() >= MAX_SEEN_REQUESTS {
            self.seen_requests.clear();
        }
        self.seen_requests.insert(from);
        self.events.push_back(MessengerEvent::FriendRequest {
            from,
            message: String::from_utf8_lossy(msg).into_owned(),
            via,
        });
        Ok(())
    }

    fn send_packet(
        &mut self,
        now: Instant,
        nc: &mut NetCrypto,
        friend: &PublicKey,
        p: &MessengerPacket,
    ) -> Result<u32, MessengerError> {
        Ok(nc.send_lossless(now, friend, &p.encode())?)
    }

    /// Sends a message; returns its receipt id (reported by `MessengerEvent::Receipt`).
    pub fn send_message(
        &mut self,
        now: Instant,
        nc: &mut NetCrypto,
        friend: &PublicKey,
        kind: MessageKind,
        text: &str,
    ) -> Result<u32, MessengerError> {
        if text.is_empty() || text.len() > MAX_MESSAGE_LEN {
            return Err(MessengerError::Message("message must be 1..=1372 bytes"));
        }
        let f = self.friends.get(friend).ok_or(MessengerError::NotFriend)?;
        if !f.online {
            return Err(MessengerError::NotOnline);
        }
        if f.pending.len() >= MAX_PENDING_RECEIPTS {
            return Err(MessengerError::NetCrypto(NetCryptoError::BufferFull));
        }
        let num = self.send_packet(now, nc, friend, &MessengerPacket::Message(kind, text.to_string()))?;
        let receipt = self.next_receipt;
        self.next_receipt = self.next_receipt.wrapping_add(1).max(1);
        if let Some(f) = self.friends.get_mut(friend) {
            f.pending.push_back((num, receipt));
        }
        Ok(receipt)
    }

    /// Feeds a net_crypto event to the friend layer.
    pub fn handle_net_crypto_event(&mut self, now: Instant, ev: &NetCryptoEvent, nc: &mut NetCrypto) {
        match ev {
            NetCryptoEvent::State { peer, state: crate::net_crypto::ConnState::Established } => {
                let Some(f) = self.friends.get_mut(peer) else { return };
                f.connected = true;
                f.online = false;
                f.last_recv = now;
                f.last_alive = now;
                f.pending.clear();
                // Our friend request, if it has not been answered yet, goes over the new
                // connection too (0x12, friend_connection's FRIEND_REQUEST, as c-toxcore
                // does once a crypto connection to the friend exists).
                if let Some(r) = self.outgoing_requests.get(peer) {
                    let mut p = r.payload.clone();
                    if let Some(first) = p.first_mut() {
                        *first = id::FRIEND_REQUEST;
                    }
                    let _ = nc.send_lossless(now, peer, &p);
                }
                // ONLINE first, then who we are (c-toxcore does the same).
                let nick = MessengerPacket::Nickname(self.nickname.clone());
                let status = MessengerPacket::StatusMessage(self.status_message.clone());
                let us = MessengerPacket::UserStatus(self.user_status);
                for p in [MessengerPacket::Online, nick, status, us] {
                    let _ = self.send_packet(now, nc, peer, &p);
                }
            }
            NetCryptoEvent::Lossless { peer, data } => {
                if let Err(_e) = self.handle_packet(now, peer, data, nc) {
                    // Malformed packet from a friend: dropped, connection kept (c-toxcore too).
                }
            }
            NetCryptoEvent::Delivered { peer, buffer_start } => {
                if self.is_online(peer) {
                    self.files.delivered(now, nc, peer, *buffer_start);
                }
                let Some(f) = self.friends.get_mut(peer) else { return };
                while let Some(&(num, receipt)) = f.pending.front() {
                    // Wrapping "num < buffer_start".
                    let d = buffer_start.wrapping_sub(num);
                    if d == 0 || d > u32::MAX / 2 {
                        break;
                    }
                    f.pending.pop_front();
                    self.events.push_back(MessengerEvent::Receipt { friend: *peer, receipt });
                }
            }
            NetCryptoEvent::Closed { peer, .. } => self.went_offline(peer),
            _ => {}
        }
    }

    fn went_offline(&mut self, peer: &PublicKey) {
        if let Some(f) = self.friends.get_mut(peer) {
            let was_online = f.online;
            f.connected = false;
            f.online = false;
            f.pending.clear();
            self.files.friend_offline(peer);
            if was_online {
                self.events.push_back(MessengerEvent::FriendOffline { friend: *peer });
            }
        }
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        peer: &PublicKey,
        data: &[u8],
        nc: &mut NetCrypto,
    ) -> Result<(), MessengerError> {
        let p = MessengerPacket::decode(data)?;
        let Some(f) = self.friends.get_mut(peer) else {
            return Err(MessengerError::NotFriend);
        };
        f.last_recv = now;
        let online = f.online;
        match p {
            MessengerPacket::Other(crate::file::id::FILE_SENDREQUEST..=crate::file::id::FILE_DATA) if online => {
                // Malformed or out-of-state file packets are dropped, as c-toxcore does.
                let _ = self.files.handle_packet(now, nc, peer, data);
            }
            MessengerPacket::Alive | MessengerPacket::ShareRelays | MessengerPacket::Other(_) => {}
            MessengerPacket::FriendRequest { nospam, message } => {
                self.friend_request(*peer, nospam, &message, RequestVia::NetCrypto)?;
            }
            MessengerPacket::Online => {
                if !online {
                    if let Some(f) = self.friends.get_mut(peer) {
                        f.online = true;
                    }
                    self.outgoing_requests.remove(peer);
                    self.events.push_back(MessengerEvent::FriendOnline { friend: *peer });
                }
            }
            // Everything else only after ONLINE.
            _ if !online => return Err(MessengerError::NotOnline),
            MessengerPacket::Offline => self.went_offline(peer),
            MessengerPacket::Nickname(name) => self.events.push_back(MessengerEvent::Nickname { friend: *peer, name }),
            MessengerPacket::StatusMessage(message) => {
                self.events.push_back(MessengerEvent::StatusMessage { friend: *peer, message })
            }
            MessengerPacket::UserStatus(status) => {
                self.events.push_back(MessengerEvent::UserStatus { friend: *peer, status })
            }
            MessengerPacket::Typing(typing) => self.events.push_back(MessengerEvent::Typing { friend: *peer, typing }),
            MessengerPacket::Message(kind, text) => {
                self.events.push_back(MessengerEvent::Message { friend: *peer, kind, text })
            }
        }
        let _ = nc;
        Ok(())
    }

    /// ALIVE every 8 s; a friend silent for 32 s is disconnected.
    pub fn tick(&mut self, now: Instant, nc: &mut NetCrypto) {
        let peers: Vec<PublicKey> = self.friends.iter().filter(|(_, f)| f.connected).map(|(p, _)| *p).collect();
        for peer in peers {
            let Some(f) = self.friends.get_mut(&peer) else { continue };
            if now >= f.last_recv + CONNECTION_TIMEOUT {
                nc.kill(&peer);
                // Consume the Closed event's effect right here.
                self.went_offline(&peer);
                self.events.push_back(MessengerEvent::ConnectionTimeout { friend: peer });
                continue;
            }
            if now >= f.last_alive + ALIVE_INTERVAL {
                f.last_alive = now;
                let _ = self.send_packet(now, nc, &peer, &MessengerPacket::Alive);
            }
            if self.is_online(&peer) {
                self.files.pump(now, nc, &peer);
            }
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let f = self
            .friends
            .values()
            .filter(|f| f.connected)
            .flat_map(|f| [f.last_alive + ALIVE_INTERVAL, f.last_recv + CONNECTION_TIMEOUT])
            .min();
        let r = self.outgoing_requests.values().map(|r| r.next).min();
        [f, r].into_iter().flatten().min()
    }

    pub fn poll_event(&mut self) -> Option<MessengerEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use crate::crypto::SecretKey;
    use crate::net_crypto::ConnState;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    struct Side {
        nc: NetCrypto,
        m: Messenger,
        addr: SocketAddr,
        events: Vec<MessengerEvent>,
    }

    struct Pair {
        a: Side,
        b: Side,
        now: Instant,
        /// Drop everything B sends (to test timeouts).
        b_mute: bool,
        a_wire: Vec<Vec<u8>>,
        /// Every lossless packet B took from A, decrypted.
        b_lossless: Vec<Vec<u8>>,
    }

    impl Pair {
        fn new() -> Self {
            let now = Instant::now();
            let side = |port: u16| Side {
                nc: NetCrypto::new(
                    KeyPair::from_secret(SecretKey([port as u8; 32])),
                    KeyPair::from_secret(SecretKey([port as u8 + 10; 32])),
                    [port as u8 + 20; 32],
                    now,
                ),
                m: Messenger::new(&format!("node{port}"), NoSpam([1, 2, 3, port as u8])),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                events: vec![],
            };
            Pair { a: side(1), b: side(2), now, b_mute: false, a_wire: vec![], b_lossless: vec![] }
        }
        fn pump(&mut self) {
            let mut moved = true;
            while moved {
                moved = false;
                while let Some((_, p)) = self.a.nc.poll_transmit() {
                    moved = true;
                    self.a_wire.push(p.clone());
                    let _ = self.b.nc.handle_packet(self.now, self.a.addr, &p);
                }
                while let Some((_, p)) = self.b.nc.poll_transmit() {
                    moved = true;
                    if !self.b_mute {
                        let _ = self.a.nc.handle_packet(self.now, self.b.addr, &p);
                    }
                }
                for (i, s) in [&mut self.a, &mut self.b].into_iter().enumerate() {
                    while let Some(e) = s.nc.poll_event() {
                        moved = true;
                        if let (1, NetCryptoEvent::Lossless { data, .. }) = (i, &e) {
                            self.b_lossless.push(data.clone());
                        }
                        s.m.handle_net_crypto_event(self.now, &e, &mut s.nc);
                    }
                    while let Some(e) = s.m.poll_event() {
                        s.events.push(e);
                    }
                }
            }
        }
        fn advance(&mut self, d: Duration) {
            let end = self.now + d;
            loop {
                self.pump();
                let next = [
                    self.a.nc.next_timeout(),
                    self.b.nc.next_timeout(),
                    self.a.m.next_timeout(),
                    self.b.m.next_timeout(),
                ]
                .into_iter()
                .flatten()
                .filter(|t| *t > self.now)
                .min();
                match next {
                    Some(t) if t <= end => self.now = t,
                    _ => {
                        self.now = end;
                        self.tick();
                        self.pump();
                        return;
                    }
                }
                self.tick();
            }
        }
        fn tick(&mut self) {
            for s in [&mut self.a, &mut self.b] {
                s.nc.tick(self.now);
                s.m.tick(self.now, &mut s.nc);
            }
        }
        fn befriend_and_connect(&mut self) {
            let (apk, bpk) = (self.a.nc.real_pk(), self.b.nc.real_pk());
            self.a.m.add_friend(self.now, bpk, &mut self.a.nc);
            self.b.m.add_friend(self.now, apk, &mut self.b.nc);
            self.a.nc.connect(self.now, bpk, self.b.nc.dht_pk(), self.b.addr);
            self.advance(Duration::from_secs(2));
        }
    }

    #[test]
    fn online_first_then_messages_and_receipts() {
        let mut p = Pair::new();
        p.befriend_and_connect();
        let (apk, bpk) = (p.a.nc.real_pk(), p.b.nc.real_pk());
        assert!(p.a.m.is_online(&bpk) && p.b.m.is_online(&apk));
        assert_eq!(p.a.events.first(), Some(&MessengerEvent::FriendOnline { friend: bpk }));
        assert!(p.a.events.contains(&MessengerEvent::Nickname { friend: bpk, name: "node2".into() }));
        assert!(p.a.events.contains(&MessengerEvent::UserStatus { friend: bpk, status: UserStatus::Online }));
        let r1 = p.a.m.send_message(p.now, &mut p.a.nc, &bpk, MessageKind::Normal, "hello").unwrap();
        let r2 = p.a.m.send_message(p.now, &mut p.a.nc, &bpk, MessageKind::Action, "waves").unwrap();
        // No receipt before B's buffer_start passes the messages.
        assert!(!p.a.events.iter().any(|e| matches!(e, MessengerEvent::Receipt { .. })));
        p.advance(Duration::from_millis(1500));
        assert!(p.b.events.contains(&MessengerEvent::Message {
            friend: apk,
            kind: MessageKind::Normal,
            text: "hello".into()
        }));
        assert!(p.b.events.contains(&MessengerEvent::Message {
            friend: apk,
            kind: MessageKind::Action,
            text: "waves".into()
        }));
        let receipts: Vec<u32> =
            p.a.events
                .iter()
                .filter_map(|e| if let MessengerEvent::Receipt { receipt, .. } = e { Some(*receipt) } else { None })
                .collect();
        assert_eq!(receipts, vec![r1, r2]);
    }

    #[test]
    fn packets_before_online_are_dropped() {
        let mut rng = crate::crypto::seeded_rng(101);
        let mut m = Messenger::new("x", NoSpam::default());
        let now = Instant::now();
        let mut nc = NetCrypto::new(KeyPair::generate(&mut rng), KeyPair::generate(&mut rng), [9; 32], now);
        let f = KeyPair::generate(&mut rng).pk;
        m.add_friend(now, f, &mut nc);
        let msg = MessengerPacket::Message(MessageKind::Normal, "early".into()).encode();
        assert_eq!(m.handle_packet(now, &f, &msg, &mut nc), Err(MessengerError::NotOnline));
        assert_eq!(m.poll_event(), None);
        m.handle_packet(now, &f, &[id::ONLINE], &mut nc).unwrap();
        m.handle_packet(now, &f, &msg, &mut nc).unwrap();
        assert_eq!(m.poll_event(), Some(MessengerEvent::FriendOnline { friend: f }));
        assert_eq!(
            m.poll_event(),
            Some(MessengerEvent::Message { friend: f, kind: MessageKind::Normal, text: "early".into() })
        );
    }

    #[test]
    fn alive_keeps_connection_and_silence_times_out() {
        let mut p = Pair::new();
        p.befriend_and_connect();
        let (apk, bpk) = (p.a.nc.real_pk(), p.b.nc.real_pk());
        let wire_before = p.a_wire.len();
        p.advance(Duration::from_secs(60));
        // Still connected after a minute of ALIVEs; A sent at least 7 more packets.
        assert!(p.a.m.is_online(&bpk) && p.b.m.is_online(&apk));
        assert!(p.a_wire.len() - wire_before >= 7);
        // B goes silent: A kills the connection 32 s after B's last Messenger packet
        // (B's last ALIVE was at most 8 s before it went silent).
        p.b_mute = true;
        p.advance(CONNECTION_TIMEOUT - ALIVE_INTERVAL - Duration::from_secs(1));
        assert!(p.a.m.is_online(&bpk));
        p.advance(ALIVE_INTERVAL + Duration::from_secs(2));
        assert!(!p.a.m.is_online(&bpk));
        assert!(p.a.events.contains(&MessengerEvent::ConnectionTimeout { friend: bpk }));
        assert!(p.a.events.contains(&MessengerEvent::FriendOffline { friend: bpk }));
        assert_eq!(p.a.nc.state(&bpk), None);
    }

    #[test]
    fn friend_requests_nospam_dedup_and_backoff() {
        let mut rng = crate::crypto::seeded_rng(102);
        let now = Instant::now();
        let mut m = Messenger::new("me", NoSpam([9, 9, 9, 9]));
        let mut nc = NetCrypto::new(KeyPair::generate(&mut rng), KeyPair::generate(&mut rng), [9; 32], now);
        let from = KeyPair::generate(&mut rng).pk;
        let good = encode_friend_request(0x20, NoSpam([9, 9, 9, 9]), "hi there").unwrap();
        assert_eq!(&good[..5], &[0x20, 9, 9, 9, 9]);
        let bad = encode_friend_request(0x20, NoSpam([9, 9, 9, 8]), "hi there").unwrap();
        assert_eq!(m.handle_onion_friend_request(from, &bad), Err(MessengerError::NoSpam));
        m.handle_onion_friend_request(from, &good).unwrap();
        m.handle_onion_friend_request(from, &good).unwrap(); // duplicate
        assert_eq!(
            m.poll_event(),
            Some(MessengerEvent::FriendRequest { from, message: "hi there".into(), via: RequestVia::Onion })
        );
        assert_eq!(m.poll_event(), None);
        assert!(m.handle_onion_friend_request(from, &[0x20, 9, 9, 9, 9]).is_err());
        assert!(m.handle_onion_friend_request(from, &[0x12, 9, 9, 9, 9, b'x']).is_err());
        // A friend's request over net_crypto is dropped as already-known.
        m.add_friend(now, from, &mut nc);
        m.handle_packet(now, &from, &[0x12, 9, 9, 9, 9, b'x'], &mut nc).unwrap();
        assert_eq!(m.poll_event(), None);
        // Outgoing: due now, then after 2, 4, 8 s.
        let to = KeyPair::generate(&mut rng).pk;
        m.send_friend_request(now, to, NoSpam([1, 2, 3, 4]), "add me", &mut nc).unwrap();
        let mut times = vec![];
        let mut t = now;
        while t < now + Duration::from_secs(15) {
            if let Some((pk, payload)) = m.poll_friend_request(t) {
                assert_eq!(pk, to);
                assert_eq!(payload, [&[0x20, 1, 2, 3, 4][..], b"add me"].concat());
                times.push((t - now).as_secs());
            }
            t += Duration::from_millis(500);
        }
        assert_eq!(times, vec![0, 2, 6, 14]);
        // Stops once the friend is online.
        m.handle_packet(now, &to, &[id::ONLINE], &mut nc).unwrap();
        assert_eq!(m.poll_friend_request(now + Duration::from_secs(100)), None);
    }

    #[test]
    fn connection_loss_and_reconnect() {
        let mut p = Pair::new();
        p.befriend_and_connect();
        let (apk, bpk) = (p.a.nc.real_pk(), p.b.nc.real_pk());
        p.b.nc.kill(&apk);
        p.advance(Duration::from_millis(100));
        assert!(p.a.events.contains(&MessengerEvent::FriendOffline { friend: bpk }));
        assert!(!p.a.m.is_online(&bpk));
        assert!(matches!(
            p.a.m.send_message(p.now, &mut p.a.nc, &bpk, MessageKind::Normal, "x"),
            Err(MessengerError::NotOnline)
        ));
        // Reconnect: ONLINE again, messages flow.
        p.b.nc.connect(p.now, apk, p.a.nc.dht_pk(), p.a.addr);
        p.advance(Duration::from_secs(2));
        assert_eq!(p.a.nc.state(&bpk), Some(ConnState::Established));
        assert!(p.a.m.is_online(&bpk));
        p.a.m.send_message(p.now, &mut p.a.nc, &bpk, MessageKind::Normal, "again").unwrap();
        p.advance(Duration::from_millis(100));
        assert!(p.b.events.contains(&MessengerEvent::Message {
            friend: apk,
            kind: MessageKind::Normal,
            text: "again".into()
        }));
    }

    /// A friend request still unanswered when the connection comes up goes over it as
    /// 0x12 (with the friend's nospam and our message); removing the friend then kills the
    /// connection, stops the request and forgets it inside the machine.
    #[test]
    fn request_over_net_crypto_then_remove_friend() {
        let mut p = Pair::new();
        let (apk, bpk) = (p.a.nc.real_pk(), p.b.nc.real_pk());
        let now = p.now;
        p.a.m.send_friend_request(now, bpk, NoSpam([1, 2, 3, 2]), "add me", &mut p.a.nc).unwrap();
        // B added A by its key on its own (both sides added each other).
        p.b.m.add_friend(now, apk, &mut p.b.nc);
        p.a.nc.connect(now, bpk, p.b.nc.dht_pk(), p.b.addr);
        p.advance(Duration::from_secs(2));
        assert!(p.a.m.is_online(&bpk));
        let want = [&[id::FRIEND_REQUEST, 1, 2, 3, 2][..], b"add me"].concat();
        assert!(p.b_lossless.contains(&want), "no 0x12 request over net_crypto: {:02x?}", p.b_lossless);
        // Online: the request is answered and stops.
        assert!(!p.a.m.has_pending_request(&bpk));
        // Remove B while a new request to it is pending.
        p.a.m.send_friend_request(p.now, bpk, NoSpam([1, 2, 3, 2]), "again", &mut p.a.nc).unwrap();
        assert!(p.a.m.remove_friend(&bpk, &mut p.a.nc));
        p.advance(Duration::from_millis(200));
        assert!(!p.a.m.is_friend(&bpk) && !p.a.m.is_online(&bpk));
        assert_eq!(p.a.nc.state(&bpk), None);
        assert!(p.b.events.contains(&MessengerEvent::FriendOffline { friend: apk }));
        assert_eq!(p.a.m.poll_friend_request(p.now + Duration::from_secs(100)), None, "request still sent");
        // B cannot come back in: its handshakes are refused.
        p.b.nc.connect(p.now, apk, p.a.nc.dht_pk(), p.a.addr);
        p.advance(Duration::from_secs(3));
        assert_eq!(p.a.nc.state(&bpk), None);
        assert!(!p.a.m.is_online(&bpk));
        // A request from B is reported again (it is a stranger now).
        let req = encode_friend_request(id::ONION_FRIEND_REQUEST, p.a.m.nospam(), "me again").unwrap();
        p.a.m.handle_onion_friend_request(bpk, &req).unwrap();
        assert!(std::iter::from_fn(|| p.a.m.poll_event())
            .any(|e| matches!(e, MessengerEvent::FriendRequest { from, .. } if from == bpk)));
    }

    proptest! {
        #[test]
        fn packet_round_trip(kind in 0u8..=255, body in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let mut data = vec![kind];
            data.extend_from_slice(&body);
            if let Ok(p) = MessengerPacket::decode(&data) {
                let again = MessengerPacket::decode(&p.encode()).unwrap();
                prop_assert_eq!(again, p);
            }
        }
        #[test]
        fn friend_request_round_trip(ns in any::<[u8; 4]>(), msg in "[a-z ]{1,200}") {
            let e = encode_friend_request(0x20, NoSpam(ns), &msg).unwrap();
            let (k, n, m) = decode_friend_request(&e).unwrap();
            prop_assert_eq!((k, n, m), (0x20, NoSpam(ns), msg.as_bytes()));
        }
    }
}
