//! Conferences: the group chats of c-toxcore 0.2.18 (its `tox_conference_*` API, toxcore's
//! `group.c`), spoken over friend connections (docs/protocols/tox.md#conferences).
//!
//! c-toxcore 0.2.18 has no NGC (`tox_group_*`); conferences are the group chats its clients
//! (qTox and toxic of that era) use, so they are what this machine speaks.
//!
//! - Invites travel as lossless packet 96 between friends: INVITE carries the inviter's
//!   conference number, the type and the 32-byte conference id; INVITE_ACCEPT (a new
//!   member) or INVITE_MEMBER (already a member) answers it.
//! - 97 (ONLINE) pairs up two conference instances over an existing friend connection;
//!   98 (DIRECT) carries the peer list (query/response), the title and "introduced";
//!   99 (MESSAGE) carries `[peer number][message number][message id][data]` messages that
//!   every peer relays to its other connections, de-duplicated per peer by message number
//!   (c-toxcore keeps the last 8 and refuses anything older).
//! - A peer silent for 60 s (pings every 20 s) is frozen: out of the peer list until it
//!   is heard again.
//!
//! This machine keeps conference connections to online friends only: a conference peer
//! that is not our friend is reached through the peers that relay for it (the inviter,
//! at least), and its attempts to connect to us directly are refused by net_crypto like
//! any stranger's. It holds no socket and no clock: packets to send are queued per friend
//! ([`Conferences::poll_transmit`]) for the caller's net_crypto.

use crate::crypto::{random_bytes, rng_from_seed, PublicKey, RngSeed, ToxRng, PUBLIC_KEY_SIZE};
use crate::messenger::MessageKind;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Lossless packet ids (c-toxcore's net_crypto.h).
pub mod id {
    pub const INVITE: u8 = 96;
    pub const ONLINE: u8 = 97;
    pub const DIRECT: u8 = 98;
    pub const MESSAGE: u8 = 99;
    pub const REJOIN: u8 = 100;
    /// Lossy conference packets (audio); not handled.
    pub const LOSSY: u8 = 199;
}

/// First byte inside an INVITE (96) packet.
pub mod invite_id {
    pub const INVITE: u8 = 0;
    pub const ACCEPT: u8 = 1;
    pub const MEMBER: u8 = 2;
}

/// First byte inside a DIRECT (98) packet's body.
pub mod direct_id {
    pub const INTRODUCED: u8 = 1;
    pub const QUERY: u8 = 8;
    pub const RESPONSE: u8 = 9;
    pub const TITLE: u8 = 10;
}

/// Message ids inside a MESSAGE (99) packet.
pub mod message_id {
    pub const PING: u8 = 0;
    pub const NEW_PEER: u8 = 16;
    pub const KILL_PEER: u8 = 17;
    pub const FREEZE_PEER: u8 = 18;
    pub const NAME: u8 = 48;
    pub const TITLE: u8 = 49;
    pub const MESSAGE: u8 = 64;
    pub const ACTION: u8 = 65;
}

/// Size of a conference id (a random symmetric-key-sized value).
pub const CONFERENCE_ID_SIZE: usize = 32;
/// The text conference type (1 is audio/video, which we do not join).
pub const TYPE_TEXT: u8 = 0;
/// Longest peer name and title (c-toxcore's MAX_NAME_LENGTH).
pub const MAX_NAME_LEN: usize = 128;
/// Largest net_crypto payload (c-toxcore's MAX_CRYPTO_DATA_SIZE): no conference packet
/// is longer.
pub const MAX_PACKET_LEN: usize = 1373;
/// Longest message data after `[id][group][peer][number][message id]` (c-toxcore's
/// MAX_GROUP_MESSAGE_DATA_LEN).
pub const MAX_MESSAGE_DATA_LEN: usize = MAX_PACKET_LEN - (1 + 2 + 2 + 4 + 1);
/// Conferences one node is in at once.
pub const MAX_CONFERENCES: usize = 64;
/// Peers (online and frozen) remembered per conference; a NEW_PEER or peer-list entry
/// beyond this is dropped.
pub const MAX_PEERS: usize = 256;
/// Frozen peers remembered per conference (c-toxcore's MAX_FROZEN_DEFAULT); the longest
/// frozen are forgotten first.
pub const MAX_FROZEN: usize = 128;
/// Invites from friends waiting for an answer; the oldest is forgotten first.
pub const MAX_PENDING_INVITES: usize = 32;
/// Message numbers remembered per peer for de-duplication (c-toxcore's
/// MAX_LAST_MESSAGE_INFOS): anything older than all of them is refused.
pub const MAX_MESSAGE_INFOS: usize = 8;
/// A ping message goes out this often in every joined conference.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A peer silent this long is frozen (c-toxcore's FREEZE_TIMEOUT, three pings).
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(60);

/// Length of an invite cookie: `[conference number u16][type][id]`.
pub const COOKIE_LEN: usize = 2 + 1 + CONFERENCE_ID_SIZE;
const PEER_ENTRY_MIN: usize = 2 + 2 * PUBLIC_KEY_SIZE + 1;

pub type ConferenceId = [u8; CONFERENCE_ID_SIZE];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConferenceError {
    #[error("conference packet: {0}")]
    Malformed(&'static str),
    #[error("no such conference")]
    NoSuchConference,
    #[error("no such invite")]
    NoSuchInvite,
    #[error("already in that conference")]
    AlreadyJoined,
    #[error("too many conferences")]
    TooMany,
    #[error("not connected to the conference (no peer online)")]
    NotConnected,
    #[error("friend not online")]
    NotOnline,
    #[error("message must be 1..={MAX_MESSAGE_DATA_LEN} bytes")]
    BadLength,
}

/// One entry of a peer list (DIRECT RESPONSE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    pub number: u16,
    pub real_pk: PublicKey,
    pub temp_pk: PublicKey,
    pub name: Vec<u8>,
}

/// The body of a DIRECT (98) packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    Introduced,
    Query,
    Response(Vec<PeerEntry>),
    Title(Vec<u8>),
}

/// The body of a MESSAGE (99) packet, after its message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ping,
    NewPeer {
        number: u16,
        real_pk: PublicKey,
        temp_pk: PublicKey,
    },
    KillPeer(u16),
    FreezePeer(u16),
    Name(Vec<u8>),
    Title(Vec<u8>),
    Text(MessageKind, Vec<u8>),
    /// An id we do not know: neither handled nor relayed (as c-toxcore).
    Other(u8, Vec<u8>),
}

/// A decoded conference packet (the whole lossless packet, id byte included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferencePacket {
    /// Sent to a friend: join `group` (the sender's number).
    Invite {
        group: u16,
        kind: u8,
        id: ConferenceId,
    },
    /// Answer to an invite: `group` is the sender's number, `their_group` the inviter's.
    /// `peer` is the sender's peer number when it is already a member (INVITE_MEMBER).
    InviteResponse {
        group: u16,
        their_group: u16,
        kind: u8,
        id: ConferenceId,
        peer: Option<u16>,
    },
    Online {
        group: u16,
        kind: u8,
        id: ConferenceId,
    },
    /// `group` is the receiver's conference number.
    Direct {
        group: u16,
        body: Direct,
    },
    /// `group` is the receiver's conference number; `peer` and `number` identify the
    /// message for de-duplication.
    Message {
        group: u16,
        peer: u16,
        number: u32,
        body: Message,
    },
    Rejoin {
        kind: u8,
        id: ConferenceId,
    },
    Lossy,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ConferenceError> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]])).ok_or(ConferenceError::Malformed("truncated"))
}

fn pk_at(b: &[u8], at: usize) -> Result<PublicKey, ConferenceError> {
    let s = b.get(at..at + PUBLIC_KEY_SIZE).ok_or(ConferenceError::Malformed("truncated key"))?;
    let mut k = [0u8; PUBLIC_KEY_SIZE];
    k.copy_from_slice(s);
    Ok(PublicKey(k))
}

fn name(b: &[u8], what: &'static str) -> Result<Vec<u8>, ConferenceError> {
    if b.len() > MAX_NAME_LEN {
        return Err(ConferenceError::Malformed(what));
    }
    Ok(b.to_vec())
}

impl Message {
    fn id(&self) -> u8 {
        match self {
            Message::Ping => message_id::PING,
            Message::NewPeer { .. } => message_id::NEW_PEER,
            Message::KillPeer(_) => message_id::KILL_PEER,
            Message::FreezePeer(_) => message_id::FREEZE_PEER,
            Message::Name(_) => message_id::NAME,
            Message::Title(_) => message_id::TITLE,
            Message::Text(MessageKind::Normal, _) => message_id::MESSAGE,
            Message::Text(MessageKind::Action, _) => message_id::ACTION,
            Message::Other(i, _) => *i,
        }
    }

    fn decode(mid: u8, d: &[u8]) -> Result<Self, ConferenceError> {
        if d.len() > MAX_MESSAGE_DATA_LEN {
            return Err(ConferenceError::Malformed("message data too long"));
        }
        Ok(match mid {
            message_id::PING => Message::Ping,
            message_id::NEW_PEER => {
                if d.len() != 2 + 2 * PUBLIC_KEY_SIZE {
                    return Err(ConferenceError::Malformed("new peer length"));
                }
                Message::NewPeer {
                    number: u16_at(d, 0)?,
                    real_pk: pk_at(d, 2)?,
                    temp_pk: pk_at(d, 2 + PUBLIC_KEY_SIZE)?,
                }
            }
            message_id::KILL_PEER | message_id::FREEZE_PEER => {
                if d.len() != 2 {
                    return Err(ConferenceError::Malformed("kill peer length"));
                }
                let n = u16_at(d, 0)?;
                if mid == message_id::KILL_PEER {
                    Message::KillPeer(n)
                } else {
                    Message::FreezePeer(n)
                }
            }
            message_id::NAME => Message::Name(name(d, "name too long")?),
            message_id::TITLE => Message::Title(name(d, "title too long")?),
            message_id::MESSAGE => Message::Text(MessageKind::Normal, d.to_vec()),
            message_id::ACTION => Message::Text(MessageKind::Action, d.to_vec()),
            other => Message::Other(other, d.to_vec()),
        })
    }

    fn encode_into(&self, v: &mut Vec<u8>) {
        v.push(self.id());
        match self {
            Message::Ping => {}
            Message::NewPeer { number, real_pk, temp_pk } => {
                v.extend_from_slice(&number.to_be_bytes());
                v.extend_from_slice(&real_pk.0);
                v.extend_from_slice(&temp_pk.0);
            }
            Message::KillPeer(n) | Message::FreezePeer(n) => v.extend_from_slice(&n.to_be_bytes()),
            Message::Name(d) | Message::Title(d) | Message::Text(_, d) | Message::Other(_, d) => v.extend_from_slice(d),
        }
    }
}

impl ConferencePacket {
    /// Decodes a lossless packet whose first byte is 96..=100 or 199. Every length is
    /// checked against the limits above; nothing here panics.
    pub fn decode(b: &[u8]) -> Result<Self, ConferenceError> {
        if b.len() > MAX_PACKET_LEN {
            return Err(ConferenceError::Malformed("packet too long"));
        }
        let (&pid, body) = b.split_first().ok_or(ConferenceError::Malformed("empty"))?;
        let cookie = |b: &[u8], at: usize| -> Result<(u16, u8, ConferenceId), ConferenceError> {
            let g = u16_at(b, at)?;
            let kind = *b.get(at + 2).ok_or(ConferenceError::Malformed("truncated"))?;
            Ok((g, kind, pk_at(b, at + 3)?.0))
        };
        match pid {
            id::INVITE => {
                let (&iid, rest) = body.split_first().ok_or(ConferenceError::Malformed("empty invite"))?;
                match iid {
                    invite_id::INVITE if rest.len() == COOKIE_LEN => {
                        let (group, kind, id) = cookie(rest, 0)?;
                        Ok(ConferencePacket::Invite { group, kind, id })
                    }
                    invite_id::ACCEPT | invite_id::MEMBER => {
                        let member = iid == invite_id::MEMBER;
                        if rest.len() != 2 + COOKIE_LEN + if member { 2 } else { 0 } {
                            return Err(ConferenceError::Malformed("invite response length"));
                        }
                        let group = u16_at(rest, 0)?;
                        let (their_group, kind, id) = cookie(rest, 2)?;
                        let peer = if member { Some(u16_at(rest, 2 + COOKIE_LEN)?) } else { None };
                        Ok(ConferencePacket::InviteResponse { group, their_group, kind, id, peer })
                    }
                    _ => Err(ConferenceError::Malformed("invite kind or length")),
                }
            }
            id::ONLINE => {
                if body.len() != COOKIE_LEN {
                    return Err(ConferenceError::Malformed("online length"));
                }
                let (group, kind, id) = cookie(body, 0)?;
                Ok(ConferencePacket::Online { group, kind, id })
            }
            id::REJOIN => {
                // c-toxcore accepts (and ignores) trailing bytes here.
                if body.len() < 1 + CONFERENCE_ID_SIZE {
                    return Err(ConferenceError::Malformed("rejoin length"));
                }
                Ok(ConferencePacket::Rejoin { kind: body[0], id: pk_at(body, 1)?.0 })
            }
            id::DIRECT => {
                let group = u16_at(body, 0)?;
                let d = &body[2..];
                let (&did, rest) = d.split_first().ok_or(ConferenceError::Malformed("empty direct"))?;
                let body = match did {
                    direct_id::INTRODUCED => Direct::Introduced,
                    direct_id::QUERY => Direct::Query,
                    direct_id::TITLE => {
                        if rest.is_empty() {
                            return Err(ConferenceError::Malformed("empty title"));
                        }
                        Direct::Title(name(rest, "title too long")?)
                    }
                    direct_id::RESPONSE => {
                        let mut peers = Vec::new();
                        let mut at = 0;
                        // Trailing bytes shorter than an entry are ignored, as c-toxcore does.
                        while rest.len() - at >= PEER_ENTRY_MIN {
                            let number = u16_at(rest, at)?;
                            let real_pk = pk_at(rest, at + 2)?;
                            let temp_pk = pk_at(rest, at + 2 + PUBLIC_KEY_SIZE)?;
                            let len = rest[at + 2 + 2 * PUBLIC_KEY_SIZE] as usize;
                            at += PEER_ENTRY_MIN;
                            let n = rest.get(at..at + len).ok_or(ConferenceError::Malformed("peer name truncated"))?;
                            peers.push(PeerEntry { number, real_pk, temp_pk, name: name(n, "peer name too long")? });
                            at += len;
                        }
                        Direct::Response(peers)
                    }
                    _ => return Err(ConferenceError::Malformed("unknown direct packet")),
                };
                Ok(ConferencePacket::Direct { group, body })
            }
            id::MESSAGE => {
                if body.len() < 2 + 2 + 4 + 1 {
                    return Err(ConferenceError::Malformed("message too short"));
                }
                let group = u16_at(body, 0)?;
                let peer = u16_at(body, 2)?;
                let number = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                let body = Message::decode(body[8], &body[9..])?;
                Ok(ConferencePacket::Message { group, peer, number, body })
            }
            id::LOSSY => Ok(ConferencePacket::Lossy),
            _ => Err(ConferenceError::Malformed("not a conference packet")),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let cookie = |v: &mut Vec<u8>, g: u16, kind: u8, id: &ConferenceId| {
            v.extend_from_slice(&g.to_be_bytes());
            v.push(kind);
            v.extend_from_slice(id);
        };
        match self {
            ConferencePacket::Invite { group, kind, id } => {
                v.extend_from_slice(&[id::INVITE, invite_id::INVITE]);
                cookie(&mut v, *group, *kind, id);
            }
            ConferencePacket::InviteResponse { group, their_group, kind, id: cid, peer } => {
                v.extend_from_slice(&[id::INVITE, if peer.is_some() { invite_id::MEMBER } else { invite_id::ACCEPT }]);
                v.extend_from_slice(&group.to_be_bytes());
                cookie(&mut v, *their_group, *kind, cid);
                if let Some(p) = peer {
                    v.extend_from_slice(&p.to_be_bytes());
                }
            }
            ConferencePacket::Online { group, kind, id: cid } => {
                v.push(id::ONLINE);
                cookie(&mut v, *group, *kind, cid);
            }
            ConferencePacket::Rejoin { kind, id: cid } => {
                v.extend_from_slice(&[id::REJOIN, *kind]);
                v.extend_from_slice(cid);
            }
            ConferencePacket::Direct { group, body } => {
                v.push(id::DIRECT);
                v.extend_from_slice(&group.to_be_bytes());
                match body {
                    Direct::Introduced => v.push(direct_id::INTRODUCED),
                    Direct::Query => v.push(direct_id::QUERY),
                    Direct::Title(t) => {
                        v.push(direct_id::TITLE);
                        v.extend_from_slice(t);
                    }
                    Direct::Response(peers) => {
                        v.push(direct_id::RESPONSE);
                        for p in peers {
                            v.extend_from_slice(&p.number.to_be_bytes());
                            v.extend_from_slice(&p.real_pk.0);
                            v.extend_from_slice(&p.temp_pk.0);
                            v.push(p.name.len() as u8);
                            v.extend_from_slice(&p.name);
                        }
                    }
                }
            }
            ConferencePacket::Message { group, peer, number, body } => {
                v.push(id::MESSAGE);
                v.extend_from_slice(&group.to_be_bytes());
                v.extend_from_slice(&peer.to_be_bytes());
                v.extend_from_slice(&number.to_be_bytes());
                body.encode_into(&mut v);
            }
            ConferencePacket::Lossy => v.push(id::LOSSY),
        }
        v
    }
}

/// Whether a lossless packet id belongs to conferences.
pub fn is_conference_packet(first: u8) -> bool {
    matches!(first, id::INVITE..=id::REJOIN | id::LOSSY)
}

/// A peer as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferencePeer {
    pub number: u16,
    pub pk: PublicKey,
    pub name: String,
    /// This peer is us.
    pub ours: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceEvent {
    /// A friend invites us; answer with [`Conferences::join`] (`invite`) or ignore it.
    Invite {
        invite: u32,
        friend: PublicKey,
        kind: u8,
        id: ConferenceId,
    },
    /// We have our peer number in a conference we joined: lines can go out.
    Connected {
        conference: u32,
    },
    Message {
        conference: u32,
        peer: u16,
        pk: PublicKey,
        name: String,
        kind: MessageKind,
        text: String,
    },
    /// Somebody joined, left, was frozen or changed name; see [`Conferences::peers`].
    PeerList {
        conference: u32,
    },
    Title {
        conference: u32,
        title: String,
    },
}

#[derive(Debug, Clone)]
struct Peer {
    real_pk: PublicKey,
    temp_pk: PublicKey,
    name: Vec<u8>,
    name_set: bool,
    last_active: Instant,
    /// (message number, message id), newest first (c-toxcore's last_message_infos).
    infos: Vec<(u32, u8)>,
}

#[derive(Debug, Clone, Default)]
struct Conn {
    /// The friend's number for this conference once paired.
    their_group: u16,
    online: bool,
    /// We joined (or rejoin) through this friend: it answers our peer queries.
    introducer: bool,
    /// This friend joined through us: it gets NEW_PEER and our name on pairing.
    introducing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// We sent INVITE_ACCEPT and wait for a peer list that names us.
    Joining,
    Connected,
}

struct Conference {
    kind: u8,
    id: ConferenceId,
    status: Status,
    peer_number: u16,
    message_number: u32,
    title: Vec<u8>,
    peers: BTreeMap<u16, Peer>,
    frozen: BTreeMap<u16, Peer>,
    conns: BTreeMap<PublicKey, Conn>,
    last_ping: Option<Instant>,
    need_send_name: bool,
}

impl Conference {
    fn online_conns(&self) -> usize {
        self.conns.values().filter(|c| c.online).count()
    }
    fn number_of(&self, pk: &PublicKey) -> Option<u16> {
        self.peers.iter().chain(self.frozen.iter()).find(|(_, p)| p.real_pk == *pk).map(|(n, _)| *n)
    }
}

struct Invite {
    friend: PublicKey,
    cookie: [u8; COOKIE_LEN],
}

/// Everything a node keeps to be back in a conference after a restart (its peers come
/// back frozen and are rejoined when they are online friends again, as c-toxcore does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedConference {
    pub kind: u8,
    pub id: ConferenceId,
    pub peer_number: u16,
    pub message_number: u32,
    pub title: String,
    /// (peer number, real pk, temp pk, name) of every other peer.
    pub peers: Vec<(u16, PublicKey, PublicKey, String)>,
}

/// All our conferences.
pub struct Conferences {
    self_pk: PublicKey,
    self_temp_pk: PublicKey,
    name: Vec<u8>,
    rng: ToxRng,
    confs: BTreeMap<u16, Conference>,
    invites: BTreeMap<u32, Invite>,
    next_invite: u32,
    friends_online: BTreeMap<PublicKey, PublicKey>,
    out: VecDeque<(PublicKey, Vec<u8>)>,
    events: VecDeque<ConferenceEvent>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn trunc(s: &str, max: usize) -> Vec<u8> {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.as_bytes()[..cut].to_vec()
}

impl Conferences {
    /// `self_pk` is our long-term key, `self_temp_pk` our DHT key (peers list both).
    pub fn new(self_pk: PublicKey, self_temp_pk: PublicKey, name: &str, seed: RngSeed) -> Self {
        Conferences {
            self_pk,
            self_temp_pk,
            name: trunc(name, MAX_NAME_LEN),
            rng: rng_from_seed(seed),
            confs: BTreeMap::new(),
            invites: BTreeMap::new(),
            next_invite: 1,
            friends_online: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(PublicKey, Vec<u8>)> {
        self.out.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<ConferenceEvent> {
        self.events.pop_front()
    }

    fn send(&mut self, to: PublicKey, p: ConferencePacket) {
        self.out.push_back((to, p.encode()));
    }

    fn free_number(&self) -> Option<u16> {
        (0..MAX_CONFERENCES as u16).find(|n| !self.confs.contains_key(n))
    }

    /// Our conferences (their numbers).
    pub fn list(&self) -> Vec<u32> {
        self.confs.keys().map(|&n| n as u32).collect()
    }

    pub fn id(&self, conference: u32) -> Option<ConferenceId> {
        self.conf(conference).map(|c| c.id)
    }

    pub fn by_id(&self, id: &ConferenceId) -> Option<u32> {
        self.confs.iter().find(|(_, c)| c.id == *id).map(|(&n, _)| n as u32)
    }

    pub fn title(&self, conference: u32) -> Option<String> {
        self.conf(conference).map(|c| lossy(&c.title))
    }

    /// Whether we have our peer number (lines can go out once a peer is online too).
    pub fn is_connected(&self, conference: u32) -> bool {
        self.conf(conference).is_some_and(|c| c.status == Status::Connected)
    }

    fn conf(&self, n: u32) -> Option<&Conference> {
        u16::try_from(n).ok().and_then(|n| self.confs.get(&n))
    }

    /// The peer list (frozen peers left out), ourselves included once we are connected.
    pub fn peers(&self, conference: u32) -> Option<Vec<ConferencePeer>> {
        let c = self.conf(conference)?;
        Some(
            c.peers
                .iter()
                .map(|(&number, p)| ConferencePeer {
                    number,
                    pk: p.real_pk,
                    name: lossy(&p.name),
                    ours: p.real_pk == self.self_pk,
                })
                .collect(),
        )
    }

    /// Creates a conference with us as its founder (peer 0).
    pub fn create(&mut self, now: Instant) -> Result<u32, ConferenceError> {
        let n = self.free_number().ok_or(ConferenceError::TooMany)?;
        let id: ConferenceId = random_bytes(&mut self.rng);
        let mut c = self.empty(TYPE_TEXT, id, Status::Connected);
        c.peer_number = 0;
        c.peers.insert(0, self.own_peer(now));
        self.confs.insert(n, c);
        Ok(n as u32)
    }

    fn own_peer(&self, now: Instant) -> Peer {
        Peer {
            real_pk: self.self_pk,
            temp_pk: self.self_temp_pk,
            name: self.name.clone(),
            name_set: true,
            last_active: now,
            infos: vec![],
        }
    }

    fn empty(&self, kind: u8, id: ConferenceId, status: Status) -> Conference {
        Conference {
            kind,
            id,
            status,
            peer_number: 0,
            message_number: 0,
            title: vec![],
            peers: BTreeMap::new(),
            frozen: BTreeMap::new(),
            conns: BTreeMap::new(),
            last_ping: None,
            need_send_name: false,
        }
    }

    /// Invites an online friend.
    pub fn invite(&mut self, conference: u32, friend: &PublicKey) -> Result<(), ConferenceError> {
        let c = self.conf(conference).ok_or(ConferenceError::NoSuchConference)?;
        if c.status != Status::Connected {
            return Err(ConferenceError::NotConnected);
        }
        if !self.friends_online.contains_key(friend) {
            return Err(ConferenceError::NotOnline);
        }
        let p = ConferencePacket::Invite { group: conference as u16, kind: c.kind, id: c.id };
        self.send(*friend, p);
        Ok(())
    }

    /// Pending invites: (invite, friend, conference id).
    pub fn invites(&self) -> Vec<(u32, PublicKey, ConferenceId)> {
        self.invites
            .iter()
            .map(|(&n, i)| {
                let mut id = [0u8; CONFERENCE_ID_SIZE];
                id.copy_from_slice(&i.cookie[3..]);
                (n, i.friend, id)
            })
            .collect()
    }

    /// Accepts invite `invite`: we become a member through the friend who sent it.
    pub fn join(&mut self, now: Instant, invite: u32) -> Result<u32, ConferenceError> {
        let inv = self.invites.get(&invite).ok_or(ConferenceError::NoSuchInvite)?;
        let (friend, cookie) = (inv.friend, inv.cookie);
        let r = self.join_cookie(now, &friend, &cookie);
        if !matches!(r, Err(ConferenceError::NotOnline)) {
            self.invites.remove(&invite);
        }
        r
    }

    /// Joins with an invite's cookie (`[number][type][id]`) from `friend`.
    pub fn join_cookie(&mut self, now: Instant, friend: &PublicKey, cookie: &[u8]) -> Result<u32, ConferenceError> {
        if cookie.len() != COOKIE_LEN {
            return Err(ConferenceError::Malformed("cookie length"));
        }
        let their_group = u16::from_be_bytes([cookie[0], cookie[1]]);
        let kind = cookie[2];
        if kind != TYPE_TEXT {
            return Err(ConferenceError::Malformed("not a text conference"));
        }
        let mut id = [0u8; CONFERENCE_ID_SIZE];
        id.copy_from_slice(&cookie[3..]);
        if self.by_id(&id).is_some() {
            return Err(ConferenceError::AlreadyJoined);
        }
        if !self.friends_online.contains_key(friend) {
            return Err(ConferenceError::NotOnline);
        }
        let n = self.free_number().ok_or(ConferenceError::TooMany)?;
        let mut c = self.empty(kind, id, Status::Joining);
        c.conns.insert(*friend, Conn { their_group, online: true, introducer: true, introducing: false });
        c.last_ping = Some(now);
        self.confs.insert(n, c);
        self.send(*friend, ConferencePacket::InviteResponse { group: n, their_group, kind, id, peer: None });
        self.send(*friend, ConferencePacket::Direct { group: their_group, body: Direct::Query });
        Ok(n as u32)
    }

    /// Sends a line (or an action) to everyone in the conference.
    pub fn send_message(
        &mut self,
        now: Instant,
        conference: u32,
        kind: MessageKind,
        text: &str,
    ) -> Result<(), ConferenceError> {
        if text.is_empty() || text.len() > MAX_MESSAGE_DATA_LEN {
            return Err(ConferenceError::BadLength);
        }
        self.broadcast(now, conference, Message::Text(kind, text.as_bytes().to_vec()))
    }

    /// Sets the title and tells everyone.
    pub fn set_title(&mut self, now: Instant, conference: u32, title: &str) -> Result<(), ConferenceError> {
        let t = trunc(title, MAX_NAME_LEN);
        if t.is_empty() {
            return Err(ConferenceError::BadLength);
        }
        let c = self.conf_mut(conference)?;
        c.title = t.clone();
        if c.online_conns() > 0 {
            self.broadcast(now, conference, Message::Title(t))?;
        }
        Ok(())
    }

    /// Our name changed: every joined conference hears it.
    pub fn set_name(&mut self, now: Instant, name: &str) {
        self.name = trunc(name, MAX_NAME_LEN);
        let self_pk = self.self_pk;
        let name = self.name.clone();
        for n in self.list() {
            if let Some(c) = self.confs.get_mut(&(n as u16)) {
                if let Some(p) = c.peers.values_mut().find(|p| p.real_pk == self_pk) {
                    p.name = name.clone();
                }
            }
            let _ = self.broadcast(now, n, Message::Name(name.clone()));
        }
    }

    /// Leaves a conference (the others hear KILL_PEER) and forgets it.
    pub fn leave(&mut self, now: Instant, conference: u32) -> Result<(), ConferenceError> {
        let c = self.conf(conference).ok_or(ConferenceError::NoSuchConference)?;
        let me = c.peer_number;
        if c.status == Status::Connected {
            let _ = self.broadcast(now, conference, Message::KillPeer(me));
        }
        self.confs.remove(&(conference as u16));
        Ok(())
    }

    fn conf_mut(&mut self, n: u32) -> Result<&mut Conference, ConferenceError> {
        u16::try_from(n).ok().and_then(|n| self.confs.get_mut(&n)).ok_or(ConferenceError::NoSuchConference)
    }

    /// Sends our own message to every online connection.
    fn broadcast(&mut self, now: Instant, conference: u32, body: Message) -> Result<(), ConferenceError> {
        let c = self.conf_mut(conference)?;
        if c.status != Status::Connected || c.online_conns() == 0 {
            return Err(ConferenceError::NotConnected);
        }
        c.message_number = c.message_number.wrapping_add(1).max(1);
        let (peer, number) = (c.peer_number, c.message_number);
        if matches!(body, Message::Ping) {
            c.last_ping = Some(now);
        }
        let targets: Vec<(PublicKey, u16)> =
            c.conns.iter().filter(|(_, k)| k.online).map(|(pk, k)| (*pk, k.their_group)).collect();
        for (pk, group) in targets {
            self.send(pk, ConferencePacket::Message { group, peer, number, body: body.clone() });
        }
        Ok(())
    }

    /// A friend's friend connection is up (its Messenger ONLINE came in); `temp_pk` is
    /// its DHT key. Conference connections with it are paired again (97), and frozen
    /// conferences it was in are rejoined (100).
    pub fn friend_online(&mut self, friend: PublicKey, temp_pk: PublicKey) {
        self.friends_online.insert(friend, temp_pk);
        let mut to_send = vec![];
        for (&n, c) in self.confs.iter_mut() {
            if c.status != Status::Connected {
                continue;
            }
            if c.frozen.values().any(|p| p.real_pk == friend) {
                c.conns.entry(friend).or_default().introducer = true;
                to_send.push(ConferencePacket::Rejoin { kind: c.kind, id: c.id });
            }
            if c.conns.contains_key(&friend) {
                to_send.push(ConferencePacket::Online { group: n, kind: c.kind, id: c.id });
            }
        }
        for p in to_send {
            self.send(friend, p);
        }
    }

    /// A friend's connection went down: its conference connections wait for it again;
    /// a conference with no connection left freezes every other peer (c-toxcore too).
    pub fn friend_offline(&mut self, friend: &PublicKey) {
        self.friends_online.remove(friend);
        let mut changed = vec![];
        for (&n, c) in self.confs.iter_mut() {
            let Some(k) = c.conns.get_mut(friend) else { continue };
            k.online = false;
            if c.online_conns() == 0 {
                let others: Vec<u16> = c.peers.keys().copied().filter(|&p| p != c.peer_number).collect();
                for p in others {
                    freeze(c, p);
                }
                changed.push(n);
            }
        }
        for n in changed {
            self.events.push_back(ConferenceEvent::PeerList { conference: n as u32 });
        }
    }

    /// A conference packet (lossless 96–100, 199) from an online friend. Malformed or
    /// unexpected packets are dropped (the friend connection stays, as in c-toxcore).
    pub fn handle_packet(&mut self, now: Instant, friend: &PublicKey, data: &[u8]) -> Result<(), ConferenceError> {
        if !self.friends_online.contains_key(friend) {
            return Err(ConferenceError::NotOnline);
        }
        match ConferencePacket::decode(data)? {
            ConferencePacket::Invite { group, kind, id } => self.on_invite(friend, group, kind, id),
            ConferencePacket::InviteResponse { group, their_group, kind, id, peer } => {
                self.on_invite_response(now, friend, group, their_group, kind, id, peer)
            }
            ConferencePacket::Online { group, kind, id } => self.on_online(now, friend, group, kind, id),
            ConferencePacket::Rejoin { kind, id } => self.on_rejoin(now, friend, kind, id),
            ConferencePacket::Direct { group, body } => self.on_direct(now, friend, group, body),
            ConferencePacket::Message { group, peer, number, body } => {
                self.on_message(now, friend, group, peer, number, body)
            }
            ConferencePacket::Lossy => Ok(()),
        }
    }

    fn on_invite(&mut self, friend: &PublicKey, group: u16, kind: u8, id: ConferenceId) -> Result<(), ConferenceError> {
        let mut cookie = [0u8; COOKIE_LEN];
        cookie[..2].copy_from_slice(&group.to_be_bytes());
        cookie[2] = kind;
        cookie[3..].copy_from_slice(&id);
        if let Some(n) = self.by_id(&id) {
            // Already a member: answer as one (INVITE_MEMBER), like c-toxcore.
            let c = &self.confs[&(n as u16)];
            if c.status == Status::Connected && c.kind == kind {
                let me = c.peer_number;
                let c = self.confs.get_mut(&(n as u16)).expect("just found");
                let k = c.conns.entry(*friend).or_default();
                k.introducer = true;
                k.introducing = true;
                k.their_group = group;
                k.online = true;
                self.send(
                    *friend,
                    ConferencePacket::InviteResponse { group: n as u16, their_group: group, kind, id, peer: Some(me) },
                );
                self.send(*friend, ConferencePacket::Direct { group, body: Direct::Query });
            }
            return Ok(());
        }
        if let Some((&n, _)) = self.invites.iter().find(|(_, i)| i.friend == *friend && i.cookie == cookie) {
            let _ = n; // the same invite again: already reported
            return Ok(());
        }
        if self.invites.len() >= MAX_PENDING_INVITES {
            let oldest = *self.invites.keys().next().expect("not empty");
            self.invites.remove(&oldest);
        }
        let invite = self.next_invite;
        self.next_invite = self.next_invite.wrapping_add(1).max(1);
        self.invites.insert(invite, Invite { friend: *friend, cookie });
        self.events.push_back(ConferenceEvent::Invite { invite, friend: *friend, kind, id });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_invite_response(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        their_group: u16,
        our_group: u16,
        kind: u8,
        id: ConferenceId,
        peer: Option<u16>,
    ) -> Result<(), ConferenceError> {
        let temp_pk = self.friends_online.get(friend).copied().ok_or(ConferenceError::NotOnline)?;
        let c = self.confs.get(&our_group).ok_or(ConferenceError::NoSuchConference)?;
        if c.kind != kind || c.id != id {
            return Err(ConferenceError::Malformed("invite response for another conference"));
        }
        let number = match peer {
            Some(p) => p,
            None => {
                let mut tries = 0;
                loop {
                    let p = u16::from_be_bytes(random_bytes(&mut self.rng));
                    if !c.peers.contains_key(&p) && !c.frozen.contains_key(&p) {
                        break p;
                    }
                    tries += 1;
                    if tries > 32 {
                        return Err(ConferenceError::TooMany);
                    }
                }
            }
        };
        let c = self.confs.get_mut(&our_group).expect("checked");
        let k = c.conns.entry(*friend).or_default();
        k.introducing = true;
        k.their_group = their_group;
        k.online = true;
        self.add_peer(now, our_group, *friend, temp_pk, number, true);
        if peer.is_some() {
            let c = self.confs.get_mut(&our_group).expect("checked");
            c.conns.entry(*friend).or_default().introducer = true;
            self.send(*friend, ConferencePacket::Direct { group: their_group, body: Direct::Query });
        }
        let _ = self.broadcast(now, our_group as u32, Message::NewPeer { number, real_pk: *friend, temp_pk });
        Ok(())
    }

    fn on_online(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        their_group: u16,
        kind: u8,
        id: ConferenceId,
    ) -> Result<(), ConferenceError> {
        let n = self.by_id(&id).ok_or(ConferenceError::NoSuchConference)? as u16;
        let temp_pk = self.friends_online.get(friend).copied().unwrap_or(*friend);
        let c = self.confs.get_mut(&n).expect("found");
        if c.kind != kind {
            return Err(ConferenceError::NoSuchConference);
        }
        let connected = c.online_conns();
        let Some(k) = c.conns.get_mut(friend) else {
            return Err(ConferenceError::Malformed("online for a connection we do not keep"));
        };
        if k.online {
            return Ok(());
        }
        k.online = true;
        k.their_group = their_group;
        let (introducer, introducing) = (k.introducer, k.introducing);
        let (ckind, cid) = (c.kind, c.id);
        if connected == 0 || introducer {
            self.send(*friend, ConferencePacket::Direct { group: their_group, body: Direct::Query });
        }
        self.send(*friend, ConferencePacket::Online { group: n, kind: ckind, id: cid });
        if introducing {
            if let Some(p) = self.confs[&n].peers.iter().find(|(_, p)| p.real_pk == *friend).map(|(n, _)| *n) {
                let _ = self.broadcast(now, n as u32, Message::NewPeer { number: p, real_pk: *friend, temp_pk });
            }
            if let Some(c) = self.confs.get_mut(&n) {
                c.need_send_name = true;
            }
        }
        self.ping_due(now, n);
        Ok(())
    }

    fn on_rejoin(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        kind: u8,
        id: ConferenceId,
    ) -> Result<(), ConferenceError> {
        let n = self.by_id(&id).ok_or(ConferenceError::NoSuchConference)? as u16;
        let temp_pk = self.friends_online.get(friend).copied().unwrap_or(*friend);
        let c = &self.confs[&n];
        if c.kind != kind {
            return Err(ConferenceError::NoSuchConference);
        }
        let number = c.number_of(friend).ok_or(ConferenceError::Malformed("rejoin from a stranger"))?;
        let c = self.confs.get_mut(&n).expect("found");
        let k = c.conns.entry(*friend).or_default();
        k.introducing = true;
        k.online = false;
        let (ckind, cid) = (c.kind, c.id);
        self.add_peer(now, n, *friend, temp_pk, number, true);
        self.send(*friend, ConferencePacket::Online { group: n, kind: ckind, id: cid });
        Ok(())
    }

    fn on_direct(&mut self, now: Instant, friend: &PublicKey, group: u16, body: Direct) -> Result<(), ConferenceError> {
        let self_pk = self.self_pk;
        let c = self.confs.get_mut(&group).ok_or(ConferenceError::NoSuchConference)?;
        let k = c.conns.get_mut(friend).ok_or(ConferenceError::Malformed("not a conference connection"))?;
        match body {
            Direct::Introduced => k.introducing = false,
            Direct::Query => {
                if !k.online {
                    return Ok(());
                }
                let their = k.their_group;
                // Chunks that fit one packet (c-toxcore splits the same way).
                let mut chunks: Vec<Vec<PeerEntry>> = vec![vec![]];
                let mut size = 4;
                for (&number, p) in &c.peers {
                    let e = PeerEntry { number, real_pk: p.real_pk, temp_pk: p.temp_pk, name: p.name.clone() };
                    let len = PEER_ENTRY_MIN + e.name.len();
                    if size + len > MAX_PACKET_LEN {
                        chunks.push(vec![]);
                        size = 4;
                    }
                    size += len;
                    chunks.last_mut().expect("not empty").push(e);
                }
                let title = c.title.clone();
                for ch in chunks {
                    self.send(*friend, ConferencePacket::Direct { group: their, body: Direct::Response(ch) });
                }
                if !title.is_empty() {
                    self.send(*friend, ConferencePacket::Direct { group: their, body: Direct::Title(title) });
                }
            }
            Direct::Response(entries) => {
                let mut connected_now = false;
                let mut named = false;
                for e in entries {
                    let c = self.confs.get_mut(&group).expect("found");
                    if c.status == Status::Joining && e.real_pk == self_pk {
                        c.peer_number = e.number;
                        c.status = Status::Connected;
                        c.need_send_name = true;
                        connected_now = true;
                    }
                    if self.add_peer(now, group, e.real_pk, e.temp_pk, e.number, false) {
                        let c = self.confs.get_mut(&group).expect("found");
                        if let Some(p) = c.peers.get_mut(&e.number) {
                            if !p.name_set && p.real_pk != self_pk {
                                named |= p.name != e.name;
                                p.name = e.name;
                                p.name_set = true;
                            }
                        }
                    }
                }
                if connected_now {
                    let own = self.own_peer(now);
                    let c = self.confs.get_mut(&group).expect("found");
                    let me = c.peer_number;
                    c.peers.insert(me, own);
                    self.events.push_back(ConferenceEvent::Connected { conference: group as u32 });
                }
                self.connect_friends(group);
                // New peers were reported by add_peer; names learnt here are reported once.
                if named || connected_now {
                    self.events.push_back(ConferenceEvent::PeerList { conference: group as u32 });
                }
            }
            Direct::Title(t) => {
                if c.title != t && !t.is_empty() {
                    c.title = t.clone();
                    self.events.push_back(ConferenceEvent::Title { conference: group as u32, title: lossy(&t) });
                }
            }
        }
        Ok(())
    }

    /// Adds or refreshes a peer (c-toxcore's addpeer). `fresh` marks it active (and thaws
    /// it). Returns whether the peer is in the list afterwards under `number`.
    fn add_peer(
        &mut self,
        now: Instant,
        group: u16,
        real_pk: PublicKey,
        temp_pk: PublicKey,
        number: u16,
        fresh: bool,
    ) -> bool {
        let Some(c) = self.confs.get_mut(&group) else { return false };
        if fresh {
            thaw(c, number, now);
        }
        if let Some(p) = c.peers.get_mut(&number) {
            if p.real_pk != real_pk {
                return false;
            }
            p.temp_pk = temp_pk;
            if fresh {
                p.last_active = now;
            }
            return true;
        }
        if let Some(p) = c.frozen.get_mut(&number) {
            if p.real_pk == real_pk {
                p.temp_pk = temp_pk;
            }
            return false;
        }
        // The same key under another number: the old entry goes (c-toxcore too).
        c.peers.retain(|_, p| p.real_pk != real_pk);
        c.frozen.retain(|_, p| p.real_pk != real_pk);
        if c.peers.len() + c.frozen.len() >= MAX_PEERS {
            return false;
        }
        let me = real_pk == self.self_pk;
        c.peers.insert(
            number,
            Peer {
                real_pk,
                temp_pk,
                name: if me { self.name.clone() } else { vec![] },
                name_set: me,
                last_active: now,
                infos: vec![],
            },
        );
        self.events.push_back(ConferenceEvent::PeerList { conference: group as u32 });
        self.connect_friends(group);
        true
    }

    /// Friends in the conference get a conference connection of their own (c-toxcore's
    /// "closest" connections, which for us are only ever friends): paired with 97.
    fn connect_friends(&mut self, group: u16) {
        let Some(c) = self.confs.get_mut(&group) else { return };
        if c.status != Status::Connected {
            return;
        }
        let new: Vec<PublicKey> = c
            .peers
            .values()
            .map(|p| p.real_pk)
            .filter(|pk| *pk != self.self_pk && !c.conns.contains_key(pk) && self.friends_online.contains_key(pk))
            .collect();
        let (kind, id) = (c.kind, c.id);
        for pk in new {
            c.conns.insert(pk, Conn::default());
            self.out.push_back((pk, ConferencePacket::Online { group, kind, id }.encode()));
        }
    }

    fn on_message(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        group: u16,
        peer: u16,
        number: u32,
        body: Message,
    ) -> Result<(), ConferenceError> {
        let c = self.confs.get_mut(&group).ok_or(ConferenceError::NoSuchConference)?;
        let k = c.conns.get(friend).ok_or(ConferenceError::Malformed("not a conference connection"))?.clone();
        if peer == c.peer_number && c.status == Status::Connected {
            // Our own message relayed back to us: already shown, already sent on.
            return Ok(());
        }
        let is_freeze = matches!(body, Message::FreezePeer(_));
        let thawed = !is_freeze && thaw(c, peer, now);
        if !c.peers.contains_key(&peer) {
            if !is_freeze && k.online {
                // A relayed message from a peer we do not know: ask the relay for its list.
                self.send(*friend, ConferencePacket::Direct { group: k.their_group, body: Direct::Query });
            }
            return Ok(());
        }
        if thawed {
            self.events.push_back(ConferenceEvent::PeerList { conference: group as u32 });
        }
        let c = self.confs.get_mut(&group).expect("found");
        let p = c.peers.get_mut(&peer).expect("checked");
        if !is_freeze {
            p.last_active = now;
        }
        if !check_message_info(&mut p.infos, number, body.id()) {
            return Ok(());
        }
        let sender = p.real_pk;
        let direct_from_sender = sender == *friend;
        match &body {
            Message::Ping => {}
            Message::NewPeer { number: np, real_pk, temp_pk } => {
                self.add_peer(now, group, *real_pk, *temp_pk, *np, true);
            }
            Message::KillPeer(x) | Message::FreezePeer(x) => {
                if *x != peer {
                    return Ok(());
                }
                let c = self.confs.get_mut(&group).expect("found");
                if matches!(body, Message::KillPeer(_)) {
                    c.peers.remove(&peer);
                } else {
                    freeze(c, peer);
                }
                self.events.push_back(ConferenceEvent::PeerList { conference: group as u32 });
            }
            Message::Name(nm) => {
                let c = self.confs.get_mut(&group).expect("found");
                let p = c.peers.get_mut(&peer).expect("checked");
                p.name_set = true;
                if p.name != *nm {
                    p.name = nm.clone();
                    self.events.push_back(ConferenceEvent::PeerList { conference: group as u32 });
                }
            }
            Message::Title(t) => {
                if t.is_empty() {
                    return Ok(());
                }
                let c = self.confs.get_mut(&group).expect("found");
                if c.title != *t {
                    c.title = t.clone();
                    self.events.push_back(ConferenceEvent::Title { conference: group as u32, title: lossy(t) });
                }
            }
            Message::Text(kind, t) => {
                if t.is_empty() {
                    return Ok(());
                }
                let c = &self.confs[&group];
                let name = c.peers.get(&peer).map(|p| lossy(&p.name)).unwrap_or_default();
                self.events.push_back(ConferenceEvent::Message {
                    conference: group as u32,
                    peer,
                    pk: sender,
                    name,
                    kind: *kind,
                    text: lossy(t),
                });
            }
            Message::Other(..) => return Ok(()),
        }
        // Relay to every other online connection; back to the sender too when it came
        // straight from it (a peer with one connection only sees its line that way).
        let Some(c) = self.confs.get(&group) else { return Ok(()) };
        let targets: Vec<(PublicKey, u16)> = c
            .conns
            .iter()
            .filter(|(pk, k)| k.online && (direct_from_sender || *pk != friend))
            .map(|(pk, k)| (*pk, k.their_group))
            .collect();
        for (pk, g) in targets {
            self.send(pk, ConferencePacket::Message { group: g, peer, number, body: body.clone() });
        }
        Ok(())
    }

    fn ping_due(&mut self, now: Instant, n: u16) {
        let due = self.confs.get(&n).is_some_and(|c| c.last_ping.is_none_or(|t| now >= t + PING_INTERVAL));
        if due {
            let _ = self.broadcast(now, n as u32, Message::Ping);
        }
    }

    /// Pings every 20 s, freezes peers silent for 60 s, sends our name when due.
    pub fn tick(&mut self, now: Instant) {
        for n in self.confs.keys().copied().collect::<Vec<_>>() {
            let c = &self.confs[&n];
            if c.status != Status::Connected {
                continue;
            }
            self.ping_due(now, n);
            let c = self.confs.get_mut(&n).expect("listed");
            let me = c.peer_number;
            let stale: Vec<u16> = c
                .peers
                .iter()
                .filter(|(&p, q)| p != me && now >= q.last_active + FREEZE_TIMEOUT)
                .map(|(p, _)| *p)
                .collect();
            for p in &stale {
                freeze(c, *p);
            }
            if !stale.is_empty() {
                self.events.push_back(ConferenceEvent::PeerList { conference: n as u32 });
            }
            let c = self.confs.get_mut(&n).expect("listed");
            if c.need_send_name && c.online_conns() > 0 {
                c.need_send_name = false;
                let name = self.name.clone();
                let _ = self.broadcast(now, n as u32, Message::Name(name));
            }
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.confs
            .values()
            .filter(|c| c.status == Status::Connected)
            .flat_map(|c| {
                let ping = c.last_ping.map(|t| t + PING_INTERVAL);
                let freeze = c
                    .peers
                    .iter()
                    .filter(|(&p, _)| p != c.peer_number)
                    .map(|(_, q)| q.last_active + FREEZE_TIMEOUT)
                    .min();
                [ping, freeze]
            })
            .flatten()
            .min()
    }

    /// What to keep across a restart.
    pub fn save(&self) -> Vec<SavedConference> {
        self.confs
            .values()
            .filter(|c| c.status == Status::Connected)
            .map(|c| SavedConference {
                kind: c.kind,
                id: c.id,
                peer_number: c.peer_number,
                // Jump ahead so peers that remember our last numbers take the new ones
                // (c-toxcore adds 2^16 on save for the same reason).
                message_number: c.message_number.wrapping_add(1 << 16),
                title: lossy(&c.title),
                peers: c
                    .peers
                    .iter()
                    .chain(c.frozen.iter())
                    .filter(|(_, p)| p.real_pk != self.self_pk)
                    .map(|(&n, p)| (n, p.real_pk, p.temp_pk, lossy(&p.name)))
                    .collect(),
            })
            .collect()
    }

    /// Restores a saved conference: its peers frozen until they are heard again.
    pub fn load(&mut self, now: Instant, s: &SavedConference) -> Result<u32, ConferenceError> {
        if self.by_id(&s.id).is_some() {
            return Err(ConferenceError::AlreadyJoined);
        }
        let n = self.free_number().ok_or(ConferenceError::TooMany)?;
        let mut c = self.empty(s.kind, s.id, Status::Connected);
        c.peer_number = s.peer_number;
        c.message_number = s.message_number;
        c.title = trunc(&s.title, MAX_NAME_LEN);
        c.peers.insert(s.peer_number, self.own_peer(now));
        for (num, real_pk, temp_pk, name) in s.peers.iter().take(MAX_FROZEN) {
            if *num == s.peer_number || *real_pk == self.self_pk {
                continue;
            }
            c.frozen.insert(
                *num,
                Peer {
                    real_pk: *real_pk,
                    temp_pk: *temp_pk,
                    name: trunc(name, MAX_NAME_LEN),
                    name_set: false,
                    last_active: now,
                    infos: vec![],
                },
            );
        }
        self.confs.insert(n, c);
        Ok(n as u32)
    }
}

/// Moves a peer to the frozen list (bounded: the oldest frozen go first).
fn freeze(c: &mut Conference, number: u16) {
    if let Some(p) = c.peers.remove(&number) {
        c.conns.retain(|pk, k| *pk != p.real_pk || k.introducer || k.online);
        c.frozen.insert(number, p);
        while c.frozen.len() > MAX_FROZEN {
            let oldest = c.frozen.iter().min_by_key(|(_, p)| p.last_active).map(|(n, _)| *n).expect("not empty");
            c.frozen.remove(&oldest);
        }
    }
}

/// Brings a frozen peer back; true if it was frozen.
fn thaw(c: &mut Conference, number: u16, now: Instant) -> bool {
    match c.frozen.remove(&number) {
        Some(mut p) => {
            p.last_active = now;
            c.peers.insert(number, p);
            c.need_send_name = true;
            true
        }
        None => false,
    }
}

/// c-toxcore's de-duplication: the last [`MAX_MESSAGE_INFOS`] message numbers per peer,
/// newest first; a number already seen, or older than all kept ones, is refused. NAME and
/// TITLE older than the newest of their kind are refused too.
fn check_message_info(infos: &mut Vec<(u32, u8)>, number: u32, mid: u8) -> bool {
    let ignore_older = mid == message_id::NAME || mid == message_id::TITLE;
    let mut at = infos.len();
    for (i, &(n, m)) in infos.iter().enumerate() {
        // Wrapping "number > n".
        if number.wrapping_sub(n.wrapping_add(1)) <= 1 << 31 {
            at = i;
            break;
        }
        if number == n {
            return false;
        }
        if ignore_older && m == mid {
            return false;
        }
    }
    if at == MAX_MESSAGE_INFOS {
        return false;
    }
    infos.insert(at, (number, mid));
    infos.truncate(MAX_MESSAGE_INFOS);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pk(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    /// Three (or more) machines whose friend connections are a graph of our choosing;
    /// packets are carried between friends until quiet.
    struct Net {
        nodes: Vec<Conferences>,
        now: Instant,
        events: Vec<Vec<ConferenceEvent>>,
        /// Every packet carried: (from, to, bytes).
        wire: Vec<(usize, usize, Vec<u8>)>,
    }

    impl Net {
        fn new(n: usize) -> Self {
            let nodes = (0..n)
                .map(|i| Conferences::new(pk(i as u8 + 1), pk(i as u8 + 101), &format!("peer{i}"), [i as u8; 32]))
                .collect();
            Net { nodes, now: Instant::now(), events: vec![vec![]; n], wire: vec![] }
        }
        fn befriend(&mut self, a: usize, b: usize) {
            let (pa, pb) = (pk(a as u8 + 1), pk(b as u8 + 1));
            self.nodes[a].friend_online(pb, pk(b as u8 + 101));
            self.nodes[b].friend_online(pa, pk(a as u8 + 101));
            self.pump();
        }
        fn index(&self, p: &PublicKey) -> usize {
            (p.0[0] - 1) as usize
        }
        fn pump(&mut self) {
            loop {
                let mut moved = false;
                for i in 0..self.nodes.len() {
                    while let Some((to, data)) = self.nodes[i].poll_transmit() {
                        moved = true;
                        let j = self.index(&to);
                        self.wire.push((i, j, data.clone()));
                        let from = pk(i as u8 + 1);
                        let _ = self.nodes[j].handle_packet(self.now, &from, &data);
                    }
                    while let Some(e) = self.nodes[i].poll_event() {
                        self.events[i].push(e);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        fn advance(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now = (self.now + Duration::from_secs(1)).min(end);
                for n in &mut self.nodes {
                    n.tick(self.now);
                }
                self.pump();
            }
        }
        fn lines(&self, i: usize) -> Vec<(String, String)> {
            self.events[i]
                .iter()
                .filter_map(|e| match e {
                    ConferenceEvent::Message { name, text, .. } => Some((name.clone(), text.clone())),
                    _ => None,
                })
                .collect()
        }
        fn invite_of(&self, i: usize) -> u32 {
            self.events[i]
                .iter()
                .rev()
                .find_map(|e| if let ConferenceEvent::Invite { invite, .. } = e { Some(*invite) } else { None })
                .expect("an invite")
        }
    }

    #[test]
    fn packets_round_trip() {
        let id = [7u8; 32];
        let ps = vec![
            ConferencePacket::Invite { group: 3, kind: 0, id },
            ConferencePacket::InviteResponse { group: 1, their_group: 2, kind: 0, id, peer: None },
            ConferencePacket::InviteResponse { group: 1, their_group: 2, kind: 0, id, peer: Some(999) },
            ConferencePacket::Online { group: 5, kind: 0, id },
            ConferencePacket::Rejoin { kind: 0, id },
            ConferencePacket::Direct { group: 1, body: Direct::Query },
            ConferencePacket::Direct { group: 1, body: Direct::Introduced },
            ConferencePacket::Direct { group: 1, body: Direct::Title(b"t".to_vec()) },
            ConferencePacket::Direct {
                group: 1,
                body: Direct::Response(vec![
                    PeerEntry { number: 1, real_pk: pk(1), temp_pk: pk(2), name: b"alice".to_vec() },
                    PeerEntry { number: 2, real_pk: pk(3), temp_pk: pk(4), name: vec![] },
                ]),
            },
            ConferencePacket::Message { group: 1, peer: 2, number: 3, body: Message::Ping },
            ConferencePacket::Message {
                group: 1,
                peer: 2,
                number: 3,
                body: Message::NewPeer { number: 9, real_pk: pk(5), temp_pk: pk(6) },
            },
            ConferencePacket::Message { group: 1, peer: 2, number: 3, body: Message::KillPeer(2) },
            ConferencePacket::Message { group: 1, peer: 2, number: 3, body: Message::Name(b"bob".to_vec()) },
            ConferencePacket::Message {
                group: 1,
                peer: 2,
                number: 3,
                body: Message::Text(MessageKind::Action, b"waves".to_vec()),
            },
        ];
        for p in ps {
            assert_eq!(ConferencePacket::decode(&p.encode()), Ok(p));
        }
        // The wire layout of an invite, as group.c builds it.
        let inv = ConferencePacket::Invite { group: 0x0102, kind: 0, id }.encode();
        assert_eq!(&inv[..5], &[96, 0, 1, 2, 0]);
        assert_eq!(inv.len(), 2 + COOKIE_LEN);
    }

    #[test]
    fn decoder_refuses_bad_lengths() {
        assert!(ConferencePacket::decode(&[]).is_err());
        assert!(ConferencePacket::decode(&[96, 0, 1, 2]).is_err());
        assert!(ConferencePacket::decode(&[96, 1]).is_err());
        assert!(ConferencePacket::decode(&[97, 0, 0, 0]).is_err());
        assert!(ConferencePacket::decode(&[99, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let mut name_long = vec![98, 0, 0, direct_id::RESPONSE, 0, 1];
        name_long.extend_from_slice(&[0; 64]);
        name_long.push(200);
        name_long.extend_from_slice(&[b'x'; 200]);
        assert!(ConferencePacket::decode(&name_long).is_err());
        let mut truncated = vec![98, 0, 0, direct_id::RESPONSE, 0, 1];
        truncated.extend_from_slice(&[0; 64]);
        truncated.push(10);
        truncated.push(b'x');
        assert!(ConferencePacket::decode(&truncated).is_err());
        let mut huge = vec![99, 0, 0, 0, 0, 0, 0, 0, 1, 64];
        huge.resize(MAX_PACKET_LEN + 1, b'a');
        assert!(ConferencePacket::decode(&huge).is_err());
    }

    #[test]
    fn dedup_keeps_eight_and_refuses_older() {
        let mut infos = vec![];
        for n in 1..=10 {
            assert!(check_message_info(&mut infos, n, 64));
        }
        assert!(!check_message_info(&mut infos, 10, 64), "duplicate");
        assert!(!check_message_info(&mut infos, 2, 64), "older than all kept");
        assert!(check_message_info(&mut infos, 12, 64));
        assert!(check_message_info(&mut infos, 11, 64), "a late one within the window");
        assert!(!check_message_info(&mut infos, 11, 64));
        assert!(check_message_info(&mut infos, 20, message_id::NAME));
        assert!(!check_message_info(&mut infos, 19, message_id::NAME), "an older name");
    }

    /// A (0) is friends with B (1) and C (2); B and C are strangers. A creates, invites
    /// both; every line reaches the other two exactly once, B's and C's through A.
    #[test]
    fn three_peers_relay_through_the_inviter() {
        let mut net = Net::new(3);
        net.befriend(0, 1);
        net.befriend(0, 2);
        let conf = net.nodes[0].create(net.now).unwrap();
        net.nodes[0].set_title(net.now, conf, "our room").unwrap();
        for f in [1u8, 2] {
            net.nodes[0].invite(conf, &pk(f + 1)).unwrap();
            net.pump();
            let inv = net.invite_of(f as usize);
            net.nodes[f as usize].join(net.now, inv).unwrap();
            net.pump();
        }
        net.advance(Duration::from_secs(2));
        for i in 0..3 {
            let n = net.nodes[i].list()[0];
            let mut names: Vec<String> = net.nodes[i].peers(n).unwrap().into_iter().map(|p| p.name).collect();
            names.sort();
            assert_eq!(names, ["peer0", "peer1", "peer2"], "peer list at {i}");
            assert_eq!(net.nodes[i].title(n).as_deref(), Some("our room"));
            assert!(net.nodes[i].is_connected(n));
        }
        for i in 0..3 {
            let n = net.nodes[i].list()[0];
            net.nodes[i].send_message(net.now, n, MessageKind::Normal, &format!("hi from {i}")).unwrap();
            net.pump();
        }
        net.advance(Duration::from_secs(1));
        for i in 0..3 {
            let mut got = net.lines(i);
            got.sort();
            let want: Vec<(String, String)> =
                (0..3).filter(|&j| j != i).map(|j| (format!("peer{j}"), format!("hi from {j}"))).collect();
            assert_eq!(got, want, "lines at {i} (each exactly once, none of our own)");
        }
        // B's line reached C only through A: B and C never exchanged a packet.
        assert!(!net.wire.iter().any(|(f, t, _)| (*f, *t) == (1, 2) || (*f, *t) == (2, 1)));
        // Pings keep everyone in the list for minutes.
        net.advance(Duration::from_secs(180));
        for i in 0..3 {
            let n = net.nodes[i].list()[0];
            assert_eq!(net.nodes[i].peers(n).unwrap().len(), 3, "at {i} after pings");
        }
    }

    /// A relayed duplicate (the same peer and message number arriving again by another
    /// path) is shown once; a peer silent for 60 s leaves the list and comes back with its
    /// next message.
    #[test]
    fn duplicates_dropped_and_silent_peers_frozen() {
        let mut net = Net::new(3);
        net.befriend(0, 1);
        net.befriend(0, 2);
        net.befriend(1, 2);
        let conf = net.nodes[0].create(net.now).unwrap();
        for f in [1u8, 2] {
            net.nodes[0].invite(conf, &pk(f + 1)).unwrap();
            net.pump();
            let inv = net.invite_of(f as usize);
            net.nodes[f as usize].join(net.now, inv).unwrap();
            net.pump();
        }
        net.advance(Duration::from_secs(2));
        // B and C are friends too: they paired directly, so A's lines reach C twice
        // (straight and through B) and are shown once.
        let n = net.nodes[0].list()[0];
        net.nodes[0].send_message(net.now, n, MessageKind::Action, "waves").unwrap();
        net.pump();
        let to_c = net
            .wire
            .iter()
            .filter(|(_, t, d)| *t == 2 && d.first() == Some(&id::MESSAGE) && d.ends_with(b"waves"))
            .count();
        assert!(to_c >= 2, "C got the line by two paths ({to_c})");
        assert_eq!(net.lines(2), [("peer0".to_string(), "waves".to_string())]);
        // C goes silent (its friends lose it): after 60 s it is frozen at A.
        net.nodes[0].friend_offline(&pk(3));
        net.nodes[1].friend_offline(&pk(3));
        net.advance(FREEZE_TIMEOUT + Duration::from_secs(2));
        let names: Vec<String> = net.nodes[0].peers(n).unwrap().into_iter().map(|p| p.name).collect();
        assert!(!names.contains(&"peer2".to_string()), "{names:?}");
    }

    #[test]
    fn invite_from_a_non_friend_or_when_offline_is_refused() {
        let mut net = Net::new(2);
        let conf = net.nodes[0].create(net.now).unwrap();
        assert_eq!(net.nodes[0].invite(conf, &pk(2)), Err(ConferenceError::NotOnline));
        let p = ConferencePacket::Invite { group: 0, kind: 0, id: [1; 32] }.encode();
        assert_eq!(net.nodes[1].handle_packet(net.now, &pk(1), &p), Err(ConferenceError::NotOnline));
    }

    #[test]
    fn save_and_load_rejoins() {
        let mut net = Net::new(2);
        net.befriend(0, 1);
        let conf = net.nodes[0].create(net.now).unwrap();
        net.nodes[0].invite(conf, &pk(2)).unwrap();
        net.pump();
        let inv = net.invite_of(1);
        net.nodes[1].join(net.now, inv).unwrap();
        net.advance(Duration::from_secs(2));
        let saved = net.nodes[1].save();
        assert_eq!(saved.len(), 1);
        // B restarts: a fresh machine loads its conference; once A is online, it rejoins.
        net.nodes[1] = Conferences::new(pk(2), pk(102), "peer1", [9; 32]);
        net.nodes[0].friend_offline(&pk(2));
        let n = net.nodes[1].load(net.now, &saved[0]).unwrap();
        assert_eq!(net.nodes[1].peers(n).unwrap().len(), 1, "others frozen until heard");
        net.befriend(0, 1);
        // A is thawed by its next message (a ping within 20 s).
        net.advance(PING_INTERVAL + Duration::from_secs(2));
        assert_eq!(net.nodes[1].peers(n).unwrap().len(), 2);
        net.nodes[1].send_message(net.now, n, MessageKind::Normal, "back").unwrap();
        net.pump();
        assert!(net.lines(0).contains(&("peer1".to_string(), "back".to_string())));
    }

    proptest! {
        /// The machine fed arbitrary conference packets (valid ids, random bodies) from a
        /// friend in two conferences: no panic, and its limits hold.
        #[test]
        fn machine_survives_arbitrary_packets(
            packets in proptest::collection::vec((96u8..=100, proptest::collection::vec(any::<u8>(), 0..200)), 0..40)
        ) {
            let now = Instant::now();
            let friend = pk(9);
            let mut c = Conferences::new(pk(1), pk(2), "me", [3; 32]);
            c.friend_online(friend, pk(10));
            let own = c.create(now).unwrap();
            c.invite(own, &friend).unwrap();
            let inv = ConferencePacket::Invite { group: 0, kind: TYPE_TEXT, id: [9; 32] }.encode();
            c.handle_packet(now, &friend, &inv).unwrap();
            c.join(now, 1).unwrap();
            for (i, (id, body)) in packets.iter().enumerate() {
                let mut p = vec![*id];
                // Aim most packets at our two conferences.
                p.extend_from_slice(&[0, (i % 2) as u8]);
                p.extend_from_slice(body);
                let _ = c.handle_packet(now, &friend, &p);
                let _ = c.send_message(now, (i % 2) as u32, MessageKind::Normal, "x");
            }
            c.tick(now + FREEZE_TIMEOUT);
            for n in c.list() {
                prop_assert!(c.peers(n).unwrap().len() <= MAX_PEERS);
            }
            prop_assert!(c.invites().len() <= MAX_PENDING_INVITES);
            while let Some((_, p)) = c.poll_transmit() {
                prop_assert!(p.len() <= MAX_PACKET_LEN);
            }
        }

        #[test]
        fn decode_never_panics_and_reencodes(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
            if let Ok(p) = ConferencePacket::decode(&data) {
                prop_assert_eq!(ConferencePacket::decode(&p.encode()), Ok(p));
            }
        }
    }
}
