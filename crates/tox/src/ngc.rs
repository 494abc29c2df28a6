//! NGC: the "new group chats" of c-toxcore ≥ 0.2.19 (its `tox_group_*` API, toxcore's
//! `group_chats.c`/`group_connection.c`), as c-toxcore 0.2.20 speaks them
//! (docs/protocols/tox.md#ngc-group-chats).
//!
//! - Invites travel between friends as lossless messenger packet 95 holding
//!   `[0xfe][kind][chat id][sender's group key]…`: INVITE (with the group name), ACCEPTED
//!   (the invitee's group key) and CONFIRMATION (the inviter's key, optional TCP relays).
//!   Both sides then know each other's address: the friend's UDP address.
//! - Everything else is UDP between group peers, keyed by per-group keys: a handshake
//!   (0x5a, crypto_box between the peers' permanent group keys, carrying a fresh session
//!   key and the Ed25519 signing key), then lossless (0x5b, numbered, acked, resent) and
//!   lossy (0x5c) packets sealed with the session shared key, padded with leading zeros.
//! - Joining: handshake (request INVITE) → HS_RESPONSE_ACK → INVITE_REQUEST →
//!   INVITE_RESPONSE → SYNC_REQUEST → shared state (signed by the chat key, which is the
//!   chat id), mod list, sanctions list, topic, one SYNC_RESPONSE per other peer (their
//!   key and address) → PEER_INFO exchange (names) with each peer, which are then
//!   "confirmed". Messages are BROADCAST packets sent to every confirmed peer (full mesh;
//!   nobody relays).
//!
//! What this machine does: join a group by a friend's invite, connect to every peer the
//! sync tells about (direct UDP only: the TCP relays in invites, handshakes and
//! announces are parsed and ignored), exchange names, send and receive plain/action
//! messages, see joins/leaves, ping, reassemble fragments, rotate session keys. A group it creates is one it
//! founds: it signs the shared state, answers sync requests and invites friends.
//! Not done: passwords, moderation (kick/roles; lists are accepted unverified), topics
//! beyond showing them, DHT announcements (public
//! groups joined by chat id), private messages, custom packets.
//!
//! Groups are kept across a restart: [`Groups::save`] / [`Groups::load`] (our own
//! versioned format, what c-toxcore's group_pack.c keeps that we use); a restored group
//! sends handshakes to its saved peers (at their last address, or at their friend's
//! address when that friend comes online: [`Groups::friend_online`]) until they answer.
//!
//! Sans-IO: packets to send are queued for the caller: friend packets
//! ([`Groups::poll_friend_transmit`], for net_crypto) and UDP datagrams
//! ([`Groups::poll_udp_transmit`]).

use crate::crypto::{
    random_bytes, random_nonce, rng_from_seed, sha512, KeyPair, Nonce, PublicKey, RngSeed, SecretKey, SharedKey,
    ToxRng, MAC_SIZE, NONCE_SIZE, PUBLIC_KEY_SIZE,
};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The messenger (net_crypto lossless) packet id of group invites.
pub const PACKET_ID_INVITE_GROUPCHAT: u8 = 95;
/// UDP packet ids.
pub mod net_id {
    pub const HANDSHAKE: u8 = 0x5a;
    pub const LOSSLESS: u8 = 0x5b;
    pub const LOSSY: u8 = 0x5c;
}

/// Group packet types inside lossless/lossy packets (group_chats.h `Group_Packet_Type`).
pub mod gp {
    pub const PING: u8 = 0x01;
    pub const MESSAGE_ACK: u8 = 0x02;
    pub const INVITE_RESPONSE_REJECT: u8 = 0x03;
    pub const FRAGMENT: u8 = 0xef;
    pub const KEY_ROTATION: u8 = 0xf0;
    pub const TCP_RELAYS: u8 = 0xf1;
    pub const CUSTOM_PACKET: u8 = 0xf2;
    pub const BROADCAST: u8 = 0xf3;
    pub const PEER_INFO_REQUEST: u8 = 0xf4;
    pub const PEER_INFO_RESPONSE: u8 = 0xf5;
    pub const INVITE_REQUEST: u8 = 0xf6;
    pub const INVITE_RESPONSE: u8 = 0xf7;
    pub const SYNC_REQUEST: u8 = 0xf8;
    pub const SYNC_RESPONSE: u8 = 0xf9;
    pub const TOPIC: u8 = 0xfa;
    pub const SHARED_STATE: u8 = 0xfb;
    pub const MOD_LIST: u8 = 0xfc;
    pub const SANCTIONS_LIST: u8 = 0xfd;
    pub const FRIEND_INVITE: u8 = 0xfe;
    pub const HS_RESPONSE_ACK: u8 = 0xff;
}

/// Broadcast types (first byte of a BROADCAST payload).
pub mod gm {
    pub const STATUS: u8 = 0x00;
    pub const NICK: u8 = 0x01;
    pub const PLAIN_MESSAGE: u8 = 0x02;
    pub const ACTION_MESSAGE: u8 = 0x03;
    pub const PRIVATE_MESSAGE: u8 = 0x04;
    pub const PEER_EXIT: u8 = 0x05;
}

/// Friend invite kinds (second byte of a packet-95 payload).
pub mod invite_kind {
    pub const INVITE: u8 = 0;
    pub const ACCEPTED: u8 = 1;
    pub const CONFIRMATION: u8 = 2;
}

const GH_REQUEST: u8 = 0;
const GH_RESPONSE: u8 = 1;
const HS_INVITE_REQUEST: u8 = 0;
const HS_PEER_INFO_EXCHANGE: u8 = 1;
const HJ_PRIVATE: u8 = 1;
const ACK_RECV: u8 = 0;
const ACK_REQ: u8 = 1;
const GF_PEERS: u16 = 1;
const GF_TOPIC: u16 = 2;
const GF_STATE: u16 = 4;

/// Size of a chat id (the chat's Ed25519 public key).
pub const CHAT_ID_SIZE: usize = 32;
/// Size of an Ed25519 signature.
pub const SIGNATURE_SIZE: usize = 64;
/// Longest group name (MAX_GC_GROUP_NAME_SIZE).
pub const MAX_GROUP_NAME_SIZE: usize = 48;
/// Longest nickname (MAX_GC_NICK_SIZE).
pub const MAX_NICK_SIZE: usize = 128;
/// Longest topic (MAX_GC_TOPIC_SIZE).
pub const MAX_TOPIC_SIZE: usize = 512;
/// Longest message text (GROUP_MAX_MESSAGE_LENGTH).
pub const MAX_MESSAGE_SIZE: usize = 1372;
/// Longest payload of one lossless packet before it is sent as fragments
/// (MAX_GC_PACKET_CHUNK_SIZE).
pub const MAX_CHUNK_SIZE: usize = 500;
/// Longest payload accepted in one incoming packet (MAX_GC_PACKET_INCOMING_CHUNK_SIZE).
pub const MAX_INCOMING_CHUNK_SIZE: usize = 1372;
/// Longest whole (reassembled) group packet (MAX_GC_PACKET_SIZE).
pub const MAX_PACKET_SIZE: usize = 50_000;
/// Longest UDP group datagram accepted (c-toxcore's bound in handle_gc_udp_packet).
pub const MAX_UDP_PACKET_SIZE: usize =
    MAX_INCOMING_CHUNK_SIZE + 1 + PUBLIC_KEY_SIZE + NONCE_SIZE + MAC_SIZE + PUBLIC_KEY_SIZE;
/// Random zero bytes (at most) before the packet type inside a sealed packet.
pub const MAX_PADDING: usize = 8;
/// Packed shared state size (GC_PACKED_SHARED_STATE_SIZE).
pub const SHARED_STATE_SIZE: usize = 64 + 2 + MAX_GROUP_NAME_SIZE + 2 + 1 + 2 + 32 + 32 + 4 + 4 + 1;
/// Packed peer info size: nick length, nick, status (PACKED_GC_PEER_SIZE).
pub const PEER_INFO_SIZE: usize = 2 + MAX_NICK_SIZE + 1;
/// Default peer limit of a group we found (MAX_GC_PEERS_DEFAULT).
pub const DEFAULT_MAX_PEERS: u16 = 100;
/// Most peers we keep per group (those past it are not added).
pub const MAX_PEERS: usize = 256;
/// Most groups we are in.
pub const MAX_GROUPS: usize = 64;
/// Most unanswered invites kept (the oldest is forgotten).
pub const MAX_PENDING_INVITES: usize = 16;
/// Most out-of-order lossless packets held per peer while waiting for a missing one.
pub const MAX_RECV_BUFFER: usize = 256;
/// Most unacknowledged lossless packets held per peer (sending more fails).
pub const MAX_SEND_BUFFER: usize = 1024;
/// How often a pending handshake is sent again (GC_SEND_HANDSHAKE_INTERVAL).
pub const HANDSHAKE_INTERVAL: Duration = Duration::from_secs(3);
/// How often confirmed peers are pinged (GC_PING_TIMEOUT).
pub const PING_INTERVAL: Duration = Duration::from_secs(12);
/// A confirmed peer silent this long is gone (GC_CONFIRMED_PEER_TIMEOUT).
pub const CONFIRMED_PEER_TIMEOUT: Duration = Duration::from_secs(12 * 4 + 10);
/// A peer that has not finished joining within this long is dropped (c-toxcore uses 12 s;
/// we allow for a loaded machine).
pub const UNCONFIRMED_PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// The peer closer to the chat id replaces the session keys this often
/// (GC_KEY_ROTATION_TIMEOUT); a c-toxcore peer farther away drops a connection that went
/// 5 min 12 s without one.
pub const KEY_ROTATION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Key rotation requests closer together than this are ignored (c-toxcore: half the
/// interval), so a peer cannot make us generate keys in a loop.
pub const MIN_KEY_ROTATION_GAP: Duration = Duration::from_secs(150);
/// We ask for a peer list (a peer's ping showed more peers than we know) at most this
/// often (GC_SYNC_REQUEST_LIMIT).
pub const SYNC_REQUEST_INTERVAL: Duration = Duration::from_secs(13);
/// How often [`Groups::tick`] wants to run while a group has peers.
pub const TICK: Duration = Duration::from_millis(500);
/// Most unacknowledged packets sent again per peer and tick (the oldest first), so a peer
/// that never acknowledges is not flooded.
pub const MAX_RESENDS_PER_TICK: usize = 32;
/// An unacknowledged lossless packet is sent again after this long.
pub const RESEND_INTERVAL: Duration = Duration::from_secs(1);

/// Version byte of the format [`Groups::save`] writes (ours, not c-toxcore's: the node
/// keeps it in its settings table; docs/protocols/tox.md#ngc-group-chats).
pub const SAVE_VERSION: u8 = 1;
/// Most peers kept per saved group (c-toxcore saves at most 100 too: GC_MAX_SAVED_PEERS).
pub const MAX_SAVED_PEERS: usize = 100;
/// A restored group tries its saved peers that are not connected again this often (a
/// handshake each), until they answer.
pub const SAVED_PEER_INTERVAL: Duration = Duration::from_secs(10);

/// A restored group we did not found waits this long before its first handshake: a
/// c-toxcore peer that still holds its connection to our previous run clears it on our
/// first request but then resends its old handshake response (old session key) and, when
/// it is the peer closer to the chat id, ignores our later requests (c-toxcore 0.2.20's
/// `handle_gc_handshake_request`); once it timed us out (`CONFIRMED_PEER_TIMEOUT`) our
/// handshake starts a new connection (docs/protocols/tox.md#ngc-group-chats).
pub const REJOIN_HOLD: Duration = Duration::from_secs(12 * 4 + 10 + 5);

/// A 32-byte chat id.
pub type ChatId = [u8; CHAT_ID_SIZE];

/// What the machine tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// A friend invited us: accept with [`Groups::join_invite`].
    Invite {
        invite: u32,
        friend: PublicKey,
        chat_id: ChatId,
        name: String,
    },
    /// We are in: the sync finished (the peer list fills as peers confirm).
    SelfJoin {
        group: u32,
    },
    /// A peer told us its name (first time: it joined).
    PeerJoin {
        group: u32,
        peer: u32,
        name: String,
    },
    /// A peer changed its name.
    PeerName {
        group: u32,
        peer: u32,
        name: String,
    },
    /// A peer left or timed out.
    PeerExit {
        group: u32,
        peer: u32,
        name: String,
    },
    Message {
        group: u32,
        peer: u32,
        name: String,
        action: bool,
        text: String,
    },
    Topic {
        group: u32,
        topic: String,
    },
    /// The peer we joined through refused us (GJ_* reason).
    Rejected {
        group: u32,
        reason: u8,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NgcError {
    #[error("no such group")]
    NoGroup,
    #[error("no such invite")]
    NoInvite,
    #[error("too many groups")]
    TooManyGroups,
    #[error("message empty or longer than {MAX_MESSAGE_SIZE} bytes")]
    BadMessage,
    #[error("not connected to the group yet")]
    NotConnected,
    #[error("packet: {0}")]
    Packet(&'static str),
}

/// A peer in a list from [`Groups::peers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPeer {
    pub peer: u32,
    pub name: String,
    pub is_self: bool,
    pub public_key: PublicKey,
}

fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), NgcError> {
    if b.len() < n {
        Err(NgcError::Packet(what))
    } else {
        Ok(())
    }
}

fn pk_at(b: &[u8], at: usize) -> PublicKey {
    let mut k = [0u8; 32];
    k.copy_from_slice(&b[at..at + 32]);
    PublicKey(k)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// A friend invite packet (payload of messenger packet 95, without the 95).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriendInvite {
    pub kind: u8,
    pub chat_id: ChatId,
    /// The sender's permanent group encryption key.
    pub sender: PublicKey,
    /// INVITE: the group name; CONFIRMATION: packed TCP relays (ignored).
    pub rest: Vec<u8>,
}

impl FriendInvite {
    /// Decodes `[0xfe][kind][chat id][key][rest]` (the bytes after 95).
    pub fn decode(b: &[u8]) -> Result<Self, NgcError> {
        need(b, 2 + CHAT_ID_SIZE + PUBLIC_KEY_SIZE, "friend invite too short")?;
        if b[0] != gp::FRIEND_INVITE {
            return Err(NgcError::Packet("not a group invite"));
        }
        if b.len() > 2 + 64 + MAX_PACKET_SIZE {
            return Err(NgcError::Packet("friend invite too long"));
        }
        let kind = b[1];
        if kind > invite_kind::CONFIRMATION {
            return Err(NgcError::Packet("unknown invite kind"));
        }
        let mut chat_id = [0u8; 32];
        chat_id.copy_from_slice(&b[2..34]);
        let rest = b[66..].to_vec();
        if kind == invite_kind::INVITE && (rest.is_empty() || rest.len() > MAX_GROUP_NAME_SIZE) {
            return Err(NgcError::Packet("invite group name length"));
        }
        Ok(FriendInvite { kind, chat_id, sender: pk_at(b, 34), rest })
    }
    /// `[95][0xfe][kind][chat id][key][rest]`, ready for net_crypto.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![PACKET_ID_INVITE_GROUPCHAT, gp::FRIEND_INVITE, self.kind];
        v.extend_from_slice(&self.chat_id);
        v.extend_from_slice(&self.sender.0);
        v.extend_from_slice(&self.rest);
        v
    }
}

/// The plaintext of a handshake packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub kind: u8,
    pub session_pk: PublicKey,
    pub sig_pk: [u8; 32],
    pub request: u8,
    pub join_type: u8,
}

/// Minimum plaintext size of a handshake (GC_MIN_HS_PACKET_PAYLOAD_SIZE).
pub const HANDSHAKE_PLAIN_MIN: usize = 1 + 32 + 32 + 1 + 1;

impl Handshake {
    pub fn decode(b: &[u8]) -> Result<Self, NgcError> {
        need(b, HANDSHAKE_PLAIN_MIN, "handshake too short")?;
        if b[0] > GH_RESPONSE {
            return Err(NgcError::Packet("handshake kind"));
        }
        if b[65] > HS_PEER_INFO_EXCHANGE {
            return Err(NgcError::Packet("handshake request type"));
        }
        let mut sig_pk = [0u8; 32];
        sig_pk.copy_from_slice(&b[33..65]);
        // The optional packed TCP relay after the fixed part is ignored (UDP only).
        Ok(Handshake { kind: b[0], session_pk: pk_at(b, 1), sig_pk, request: b[65], join_type: b[66] })
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.kind];
        v.extend_from_slice(&self.session_pk.0);
        v.extend_from_slice(&self.sig_pk);
        v.push(self.request);
        v.push(self.join_type);
        v
    }
}

/// A UDP group packet's plaintext header and its still sealed box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpPacket<'a> {
    pub kind: u8,
    pub sender: PublicKey,
    /// Handshakes only: the receiver's permanent group key.
    pub target: Option<PublicKey>,
    pub nonce: Nonce,
    pub boxed: &'a [u8],
}

/// Splits a UDP group packet into its header and box.
pub fn split_udp(b: &[u8]) -> Result<UdpPacket<'_>, NgcError> {
    if b.len() > MAX_UDP_PACKET_SIZE {
        return Err(NgcError::Packet("group packet too long"));
    }
    need(b, 1 + 32 + NONCE_SIZE + MAC_SIZE + 1, "group packet too short")?;
    let kind = b[0];
    let sender = pk_at(b, 1);
    let (target, at) = match kind {
        net_id::HANDSHAKE => {
            need(b, 1 + 64 + NONCE_SIZE + MAC_SIZE + HANDSHAKE_PLAIN_MIN, "handshake too short")?;
            (Some(pk_at(b, 33)), 65)
        }
        net_id::LOSSLESS | net_id::LOSSY => (None, 33),
        _ => return Err(NgcError::Packet("not a group packet")),
    };
    let mut nonce = [0u8; NONCE_SIZE];
    nonce.copy_from_slice(&b[at..at + NONCE_SIZE]);
    Ok(UdpPacket { kind, sender, target, nonce, boxed: &b[at + NONCE_SIZE..] })
}

/// Strips the zero padding of an opened lossless/lossy packet; returns (type, message id
/// for lossless, payload).
pub fn unpad(plain: &[u8], lossless: bool) -> Result<(u8, u64, &[u8]), NgcError> {
    let start = plain.iter().position(|&b| b != 0).ok_or(NgcError::Packet("all padding"))?;
    let p = &plain[start..];
    if lossless {
        need(p, 9, "lossless header")?;
        Ok((p[0], u64_at(p, 1), &p[9..]))
    } else {
        Ok((p[0], 0, &p[1..]))
    }
}

/// Decodes a packed IP_Port (family, 4 or 16 address bytes, port); returns it and its size.
pub fn decode_ip_port(b: &[u8]) -> Result<(SocketAddr, usize), NgcError> {
    need(b, 1, "ip_port")?;
    match b[0] {
        2 => {
            need(b, 7, "ipv4 ip_port")?;
            Ok((SocketAddr::new(IpAddr::V4(Ipv4Addr::new(b[1], b[2], b[3], b[4])), u16_at(b, 5)), 7))
        }
        10 => {
            need(b, 19, "ipv6 ip_port")?;
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[1..17]);
            Ok((SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), u16_at(b, 17)), 19))
        }
        _ => Err(NgcError::Packet("ip_port family")),
    }
}

pub fn encode_ip_port(a: &SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(19);
    match a.ip() {
        IpAddr::V4(ip) => {
            v.push(2);
            v.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v.push(10);
            v.extend_from_slice(&ip.octets());
        }
    }
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// A peer announce inside a SYNC_RESPONSE: key, address if known (TCP relays ignored).
pub fn decode_announce(b: &[u8]) -> Result<(PublicKey, Option<SocketAddr>), NgcError> {
    need(b, 34, "announce")?;
    let pk = pk_at(b, 0);
    let addr = if b[32] != 0 { Some(decode_ip_port(&b[34..])?.0) } else { None };
    Ok((pk, addr))
}

/// The group shared state (the parts we use), as packed by the founder and signed with
/// the chat key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedState {
    pub version: u32,
    pub founder_enc: PublicKey,
    pub founder_sig: [u8; 32],
    pub max_peers: u16,
    pub name: Vec<u8>,
    pub privacy: u8,
    pub topic_lock: u32,
    pub voice: u8,
}

impl SharedState {
    pub fn decode(b: &[u8]) -> Result<Self, NgcError> {
        if b.len() != SHARED_STATE_SIZE {
            return Err(NgcError::Packet("shared state size"));
        }
        let name_len = (u16_at(b, 70) as usize).min(MAX_GROUP_NAME_SIZE);
        let mut founder_sig = [0u8; 32];
        founder_sig.copy_from_slice(&b[36..68]);
        Ok(SharedState {
            version: u32_at(b, 0),
            founder_enc: pk_at(b, 4),
            founder_sig,
            max_peers: u16_at(b, 68),
            name: b[72..72 + name_len].to_vec(),
            privacy: b[120],
            topic_lock: u32_at(b, 187),
            voice: b[191],
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(SHARED_STATE_SIZE);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&self.founder_enc.0);
        v.extend_from_slice(&self.founder_sig);
        v.extend_from_slice(&self.max_peers.to_be_bytes());
        v.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        let mut name = [0u8; MAX_GROUP_NAME_SIZE];
        name[..self.name.len()].copy_from_slice(&self.name);
        v.extend_from_slice(&name);
        v.push(self.privacy);
        v.extend_from_slice(&0u16.to_be_bytes()); // no password
        v.extend_from_slice(&[0u8; 32]);
        v.extend_from_slice(&[0u8; 32]); // mod list hash of an empty list
        v.extend_from_slice(&self.topic_lock.to_be_bytes());
        v.push(self.voice);
        v
    }
}

/// Our keys in a group: Ed25519 signing key and the X25519 key derived from it (as
/// c-toxcore's create_extended_keypair does).
#[derive(Clone)]
struct ExtKeys {
    sig: SigningKey,
    enc: KeyPair,
}

impl ExtKeys {
    fn new(rng: &mut ToxRng) -> Self {
        Self::from_seed(random_bytes(rng))
    }
    /// The keys of an Ed25519 seed (what a save keeps).
    fn from_seed(seed: [u8; 32]) -> Self {
        let sig = SigningKey::from_bytes(&seed);
        let h = sha512(&seed);
        let mut sk = [0u8; 32];
        sk.copy_from_slice(&h[..32]);
        sk[0] &= 248;
        sk[31] &= 127;
        sk[31] |= 64;
        ExtKeys { sig, enc: KeyPair::from_secret(SecretKey(sk)) }
    }
    fn sig_pk(&self) -> [u8; 32] {
        self.sig.verifying_key().to_bytes()
    }
}

#[derive(Clone, Debug)]
struct Sent {
    kind: u8,
    data: Vec<u8>,
    added: Instant,
    last: Instant,
}

struct Peer {
    id: u32,
    enc: PublicKey,
    /// The Tox friend this peer is (the one who invited us, or whom we invited): a restored
    /// group reaches it again at the friend's address when the friend comes online.
    friend: Option<PublicKey>,
    addr: Option<SocketAddr>,
    session: KeyPair,
    shared: Option<SharedKey>,
    handshaked: bool,
    confirmed: bool,
    /// Handshake request type we still have to send (we are the requester).
    pending_request: Option<u8>,
    /// Handshake response type we have to (re)send (we are the responder).
    pending_response: Option<u8>,
    last_handshake: Option<Instant>,
    self_is_closer: bool,
    send_id: u64,
    recv_id: u64,
    unacked: BTreeMap<u64, Sent>,
    held: BTreeMap<u64, (u8, Vec<u8>)>,
    fragments: Option<Vec<u8>>,
    name: String,
    last_heard: Instant,
    last_ping: Instant,
    last_rotation: Instant,
    /// When we last answered its sync request for the peer list.
    last_sync_answer: Option<Instant>,
    /// Our new session keys while our rotation request awaits its response.
    rotating: Option<KeyPair>,
}

struct Group {
    chat_id: ChatId,
    keys: ExtKeys,
    /// The chat's signing key: only when we founded it.
    chat_sig: Option<SigningKey>,
    state: Option<(SharedState, [u8; SIGNATURE_SIZE])>,
    /// The state's bytes as signed (a save keeps these: re-encoding the parts we model
    /// would not match the signature when the founder set fields we do not keep).
    state_packed: Vec<u8>,
    connected: bool,
    joined_event: bool,
    peers: Vec<Peer>,
    next_peer: u32,
    topic: String,
    /// Friends we invited and have not accepted yet.
    invited: Vec<PublicKey>,
    /// When we last asked a peer for its peer list (at most once per
    /// [`SYNC_REQUEST_INTERVAL`]).
    last_sync_request: Option<Instant>,
    /// Restored from a save: the peers to reconnect to (each leaves the list once
    /// confirmed again), tried every [`SAVED_PEER_INTERVAL`].
    saved: Vec<SavedPeer>,
    last_saved_try: Option<Instant>,
    /// No handshake to saved peers before this ([`REJOIN_HOLD`] after a restore).
    hold_until: Option<Instant>,
}

/// A peer as a save keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SavedPeer {
    enc: PublicKey,
    addr: Option<SocketAddr>,
    friend: Option<PublicKey>,
    name: String,
}

impl Group {
    fn peer_by_enc(&mut self, pk: &PublicKey) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.enc == *pk)
    }
}

/// An invite received from a friend, not answered yet.
#[derive(Clone, Debug)]
struct PendingInvite {
    friend: PublicKey,
    chat_id: ChatId,
    inviter: PublicKey,
}

/// Every NGC group we are in.
pub struct Groups {
    nickname: String,
    rng: ToxRng,
    groups: BTreeMap<u32, Group>,
    next_group: u32,
    invites: BTreeMap<u32, PendingInvite>,
    next_invite: u32,
    friend_out: VecDeque<(PublicKey, Vec<u8>)>,
    udp_out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<GroupEvent>,
    last_tick: Option<Instant>,
}

/// Bob Jenkins' one-at-a-time hash (c-toxcore's `jenkins_one_at_a_time_hash`), of a
/// peer's group key: peer lists are compared by the sum of these.
pub fn jenkins_hash(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key {
        h = h.wrapping_add(u32::from(b));
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

fn closer(chat: &ChatId, a: &PublicKey, b: &PublicKey) -> bool {
    for ((c, x), y) in chat.iter().zip(a.0).zip(b.0) {
        let (d1, d2) = (c ^ x, c ^ y);
        if d1 != d2 {
            return d1 < d2;
        }
    }
    false
}

impl Groups {
    pub fn new(nickname: &str, seed: RngSeed) -> Self {
        Groups {
            nickname: nickname.to_owned(),
            rng: rng_from_seed(seed),
            groups: BTreeMap::new(),
            next_group: 0,
            invites: BTreeMap::new(),
            next_invite: 0,
            friend_out: VecDeque::new(),
            udp_out: VecDeque::new(),
            events: VecDeque::new(),
            last_tick: None,
        }
    }

    pub fn set_nickname(&mut self, name: &str) {
        self.nickname = name.to_owned();
    }

    pub fn poll_friend_transmit(&mut self) -> Option<(PublicKey, Vec<u8>)> {
        self.friend_out.pop_front()
    }
    pub fn poll_udp_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.udp_out.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }

    /// Our groups' numbers.
    pub fn list(&self) -> Vec<u32> {
        self.groups.keys().copied().collect()
    }
    pub fn chat_id(&self, group: u32) -> Option<ChatId> {
        self.groups.get(&group).map(|g| g.chat_id)
    }
    pub fn by_chat_id(&self, id: &ChatId) -> Option<u32> {
        self.groups.iter().find(|(_, g)| g.chat_id == *id).map(|(n, _)| *n)
    }
    pub fn is_connected(&self, group: u32) -> bool {
        self.groups.get(&group).is_some_and(|g| g.connected)
    }
    pub fn name(&self, group: u32) -> Option<String> {
        let g = self.groups.get(&group)?;
        Some(g.state.as_ref().map(|(s, _)| String::from_utf8_lossy(&s.name).into_owned()).unwrap_or_default())
    }
    pub fn topic(&self, group: u32) -> Option<String> {
        self.groups.get(&group).map(|g| g.topic.clone())
    }
    /// Unanswered invites: (invite, friend, chat id).
    pub fn invites(&self) -> Vec<(u32, PublicKey, ChatId)> {
        self.invites.iter().map(|(n, i)| (*n, i.friend, i.chat_id)).collect()
    }

    /// Confirmed peers and ourselves (peer 0... our own id is `u32::MAX`).
    pub fn peers(&self, group: u32) -> Option<Vec<GroupPeer>> {
        let g = self.groups.get(&group)?;
        let mut v =
            vec![GroupPeer { peer: u32::MAX, name: self.nickname.clone(), is_self: true, public_key: g.keys.enc.pk }];
        for p in g.peers.iter().filter(|p| p.confirmed) {
            v.push(GroupPeer { peer: p.id, name: p.name.clone(), is_self: false, public_key: p.enc });
        }
        Some(v)
    }

    fn alloc_group(&mut self, g: Group) -> Result<u32, NgcError> {
        if self.groups.len() >= MAX_GROUPS {
            return Err(NgcError::TooManyGroups);
        }
        let n = self.next_group;
        self.next_group += 1;
        self.groups.insert(n, g);
        Ok(n)
    }

    /// Founds a private group named `name`; returns its number.
    pub fn create(&mut self, name: &str) -> Result<u32, NgcError> {
        let name = truncate_bytes(name, MAX_GROUP_NAME_SIZE);
        if name.is_empty() {
            return Err(NgcError::Packet("group name empty"));
        }
        let chat_sig = SigningKey::from_bytes(&random_bytes(&mut self.rng));
        let keys = ExtKeys::new(&mut self.rng);
        let mut state = SharedState {
            version: 1,
            founder_enc: keys.enc.pk,
            founder_sig: keys.sig_pk(),
            max_peers: DEFAULT_MAX_PEERS,
            name: name.as_bytes().to_vec(),
            privacy: 1,
            topic_lock: 0,
            voice: 0,
        };
        state.version = 1;
        let packed = state.encode();
        let sig = chat_sig.sign(&packed).to_bytes();
        let g = Group {
            chat_id: chat_sig.verifying_key().to_bytes(),
            keys,
            chat_sig: Some(chat_sig),
            state: Some((state, sig)),
            state_packed: packed,
            connected: true,
            joined_event: true,
            peers: Vec::new(),
            next_peer: 0,
            topic: String::new(),
            invited: Vec::new(),
            last_sync_request: None,
            saved: Vec::new(),
            last_saved_try: None,
            hold_until: None,
        };
        self.alloc_group(g)
    }

    /// Invites an online friend into a group we are connected to.
    pub fn invite_friend(&mut self, group: u32, friend: &PublicKey) -> Result<(), NgcError> {
        let g = self.groups.get_mut(&group).ok_or(NgcError::NoGroup)?;
        let Some((state, _)) = &g.state else { return Err(NgcError::NotConnected) };
        let inv = FriendInvite {
            kind: invite_kind::INVITE,
            chat_id: g.chat_id,
            sender: g.keys.enc.pk,
            rest: if state.name.is_empty() { b"group".to_vec() } else { state.name.clone() },
        };
        if !g.invited.contains(friend) {
            g.invited.push(*friend);
        }
        self.friend_out.push_back((*friend, inv.encode()));
        Ok(())
    }

    /// Accepts an invite: makes the group and tells the friend; the friend's confirmation
    /// starts the handshake.
    pub fn join_invite(&mut self, now: Instant, invite: u32) -> Result<u32, NgcError> {
        let inv = self.invites.remove(&invite).ok_or(NgcError::NoInvite)?;
        if let Some(n) = self.by_chat_id(&inv.chat_id) {
            return Ok(n);
        }
        let keys = ExtKeys::new(&mut self.rng);
        let g = Group {
            chat_id: inv.chat_id,
            keys,
            chat_sig: None,
            state: None,
            state_packed: Vec::new(),
            connected: false,
            joined_event: false,
            peers: Vec::new(),
            next_peer: 0,
            topic: String::new(),
            invited: Vec::new(),
            last_sync_request: None,
            saved: Vec::new(),
            last_saved_try: None,
            hold_until: None,
        };
        let n = self.alloc_group(g)?;
        let our_pk = self.groups[&n].keys.enc.pk;
        if let Some(id) = self.add_peer(now, n, inv.inviter, None) {
            self.set_friend(n, id, inv.friend);
        }
        let acc = FriendInvite { kind: invite_kind::ACCEPTED, chat_id: inv.chat_id, sender: our_pk, rest: Vec::new() };
        self.friend_out.push_back((inv.friend, acc.encode()));
        Ok(n)
    }

    /// Leaves a group (the peers are told) and forgets it.
    pub fn leave(&mut self, now: Instant, group: u32) -> Result<(), NgcError> {
        if !self.groups.contains_key(&group) {
            return Err(NgcError::NoGroup);
        }
        self.broadcast(now, group, &[gm::PEER_EXIT]);
        self.groups.remove(&group);
        Ok(())
    }

    /// Sends a line to every confirmed peer.
    pub fn send_message(&mut self, now: Instant, group: u32, action: bool, text: &str) -> Result<(), NgcError> {
        if text.is_empty() || text.len() > MAX_MESSAGE_SIZE {
            return Err(NgcError::BadMessage);
        }
        let g = self.groups.get(&group).ok_or(NgcError::NoGroup)?;
        if !g.connected {
            return Err(NgcError::NotConnected);
        }
        let mut b = vec![if action { gm::ACTION_MESSAGE } else { gm::PLAIN_MESSAGE }];
        b.extend_from_slice(&self.rng.next_u32().to_be_bytes());
        b.extend_from_slice(text.as_bytes());
        self.broadcast(now, group, &b);
        Ok(())
    }

    fn broadcast(&mut self, now: Instant, group: u32, payload: &[u8]) {
        let ids: Vec<u32> = match self.groups.get(&group) {
            Some(g) => g.peers.iter().filter(|p| p.confirmed).map(|p| p.id).collect(),
            None => return,
        };
        for id in ids {
            self.send_lossless(now, group, id, gp::BROADCAST, payload);
        }
    }

    /// A lossless messenger packet from an online friend whose first byte is 95.
    /// `friend_addr` is the friend's UDP address as net_crypto knows it.
    pub fn handle_friend_packet(
        &mut self,
        now: Instant,
        friend: &PublicKey,
        friend_addr: Option<SocketAddr>,
        data: &[u8],
    ) -> Result<(), NgcError> {
        let body = data.strip_prefix(&[PACKET_ID_INVITE_GROUPCHAT]).ok_or(NgcError::Packet("not packet 95"))?;
        let inv = FriendInvite::decode(body)?;
        match inv.kind {
            invite_kind::INVITE => {
                if self.by_chat_id(&inv.chat_id).is_some() {
                    return Ok(());
                }
                if self.invites.len() >= MAX_PENDING_INVITES {
                    let oldest = *self.invites.keys().next().expect("not empty");
                    self.invites.remove(&oldest);
                }
                let n = self.next_invite;
                self.next_invite += 1;
                self.invites.insert(n, PendingInvite { friend: *friend, chat_id: inv.chat_id, inviter: inv.sender });
                let name = String::from_utf8_lossy(&inv.rest).into_owned();
                self.events.push_back(GroupEvent::Invite { invite: n, friend: *friend, chat_id: inv.chat_id, name });
            }
            invite_kind::ACCEPTED => {
                let n = self.by_chat_id(&inv.chat_id).ok_or(NgcError::NoGroup)?;
                let g = self.groups.get_mut(&n).expect("found");
                let Some(i) = g.invited.iter().position(|f| f == friend) else {
                    return Err(NgcError::Packet("accepted an invite we did not send"));
                };
                let addr = friend_addr.ok_or(NgcError::Packet("no address for the friend"))?;
                g.invited.remove(i);
                let our = g.keys.enc.pk;
                if g.peers.iter().all(|p| p.enc != inv.sender) {
                    if let Some(id) = self.add_peer(now, n, inv.sender, Some(addr)) {
                        self.set_friend(n, id, *friend);
                    }
                }
                // The invitee sends the handshake request; we answer it.
                let conf = FriendInvite {
                    kind: invite_kind::CONFIRMATION,
                    chat_id: inv.chat_id,
                    sender: our,
                    rest: Vec::new(),
                };
                self.friend_out.push_back((*friend, conf.encode()));
            }
            _ => {
                let n = self.by_chat_id(&inv.chat_id).ok_or(NgcError::NoGroup)?;
                let addr = friend_addr.ok_or(NgcError::Packet("no address for the friend"))?;
                let g = self.groups.get_mut(&n).expect("found");
                let p = g.peer_by_enc(&inv.sender).ok_or(NgcError::Packet("confirmation from an unknown key"))?;
                p.addr = Some(addr);
                p.pending_request = Some(HS_INVITE_REQUEST);
                p.last_handshake = None;
                let id = p.id;
                self.send_handshake(now, n, id);
            }
        }
        Ok(())
    }

    fn add_peer(&mut self, now: Instant, group: u32, enc: PublicKey, addr: Option<SocketAddr>) -> Option<u32> {
        let session = KeyPair::generate(&mut self.rng);
        let g = self.groups.get_mut(&group)?;
        if g.peers.len() >= MAX_PEERS || enc == g.keys.enc.pk {
            return None;
        }
        let id = g.next_peer;
        g.next_peer += 1;
        let self_is_closer = closer(&g.chat_id, &g.keys.enc.pk, &enc);
        g.peers.push(Peer {
            id,
            enc,
            friend: None,
            addr,
            session,
            shared: None,
            handshaked: false,
            confirmed: false,
            pending_request: None,
            pending_response: None,
            last_handshake: None,
            self_is_closer,
            send_id: 1,
            recv_id: 0,
            unacked: BTreeMap::new(),
            held: BTreeMap::new(),
            fragments: None,
            name: String::new(),
            last_heard: now,
            last_ping: now,
            last_rotation: now,
            last_sync_answer: None,
            rotating: None,
        });
        Some(id)
    }

    fn send_handshake(&mut self, now: Instant, group: u32, peer: u32) {
        let Some(g) = self.groups.get_mut(&group) else { return };
        let sig_pk = g.keys.sig_pk();
        let our_sk = g.keys.enc.sk.clone();
        let our_pk = g.keys.enc.pk;
        let Some(p) = g.peers.iter_mut().find(|p| p.id == peer) else { return };
        let Some(addr) = p.addr else { return };
        let (kind, request) = match (p.pending_response, p.pending_request) {
            (Some(r), _) => (GH_RESPONSE, r),
            (None, Some(r)) => (GH_REQUEST, r),
            _ => return,
        };
        p.last_handshake = Some(now);
        let hs = Handshake { kind, session_pk: p.session.pk, sig_pk, request, join_type: HJ_PRIVATE };
        if kind == GH_RESPONSE {
            // The response is the responder's message 2: its next lossless one is 3.
            p.send_id = p.send_id.max(3);
        } else {
            p.send_id = p.send_id.max(2);
        }
        let nonce = random_nonce(&mut self.rng);
        let boxed = crate::crypto::encrypt_data(&p.enc, &our_sk, &nonce, &hs.encode());
        let mut v = vec![net_id::HANDSHAKE];
        v.extend_from_slice(&our_pk.0);
        v.extend_from_slice(&p.enc.0);
        v.extend_from_slice(&nonce);
        v.extend_from_slice(&boxed);
        self.udp_out.push_back((addr, v));
    }

    fn seal(&mut self, shared: &SharedKey, our_pk: &PublicKey, net: u8, kind: u8, id: u64, payload: &[u8]) -> Vec<u8> {
        let pad = (self.rng.next_u32() as usize) % (MAX_PADDING + 1);
        let mut plain = vec![0u8; pad];
        plain.push(kind);
        if net == net_id::LOSSLESS {
            plain.extend_from_slice(&id.to_be_bytes());
        }
        plain.extend_from_slice(payload);
        let nonce = random_nonce(&mut self.rng);
        let mut v = vec![net];
        v.extend_from_slice(&our_pk.0);
        v.extend_from_slice(&nonce);
        v.extend_from_slice(&shared.encrypt(&nonce, &plain));
        v
    }

    fn send_lossy(&mut self, group: u32, peer: u32, kind: u8, payload: &[u8]) {
        let Some(g) = self.groups.get(&group) else { return };
        let our = g.keys.enc.pk;
        let Some(p) = g.peers.iter().find(|p| p.id == peer) else { return };
        let (Some(shared), Some(addr)) = (p.shared.clone(), p.addr) else { return };
        let v = self.seal(&shared, &our, net_id::LOSSY, kind, 0, payload);
        self.udp_out.push_back((addr, v));
    }

    /// Queues a lossless packet (split into fragments past [`MAX_CHUNK_SIZE`]).
    fn send_lossless(&mut self, now: Instant, group: u32, peer: u32, kind: u8, payload: &[u8]) {
        if payload.len() <= MAX_CHUNK_SIZE {
            self.send_one_lossless(now, group, peer, kind, payload);
            return;
        }
        let mut first = vec![kind];
        first.extend_from_slice(&payload[..MAX_CHUNK_SIZE - 1]);
        self.send_one_lossless(now, group, peer, gp::FRAGMENT, &first);
        for c in payload[MAX_CHUNK_SIZE - 1..].chunks(MAX_CHUNK_SIZE) {
            self.send_one_lossless(now, group, peer, gp::FRAGMENT, c);
        }
        self.send_one_lossless(now, group, peer, gp::FRAGMENT, &[]);
    }

    fn send_one_lossless(&mut self, now: Instant, group: u32, peer: u32, kind: u8, payload: &[u8]) {
        let Some(g) = self.groups.get_mut(&group) else { return };
        let our = g.keys.enc.pk;
        let Some(p) = g.peers.iter_mut().find(|p| p.id == peer) else { return };
        if !p.handshaked || p.unacked.len() >= MAX_SEND_BUFFER {
            return;
        }
        let (Some(shared), Some(addr)) = (p.shared.clone(), p.addr) else { return };
        let id = p.send_id;
        p.send_id += 1;
        p.unacked.insert(id, Sent { kind, data: payload.to_vec(), added: now, last: now });
        let v = self.seal(&shared, &our, net_id::LOSSLESS, kind, id, payload);
        self.udp_out.push_back((addr, v));
    }

    /// A UDP datagram whose first byte is 0x5a, 0x5b or 0x5c.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), NgcError> {
        let UdpPacket { kind, sender, target, nonce, boxed } = split_udp(data)?;
        if kind == net_id::HANDSHAKE {
            let target = target.expect("handshakes have a target");
            let n =
                self.groups.iter().find(|(_, g)| g.keys.enc.pk == target).map(|(n, _)| *n).ok_or(NgcError::NoGroup)?;
            let sk = self.groups[&n].keys.enc.sk.clone();
            let plain = crate::crypto::decrypt_data(&sender, &sk, &nonce, boxed)
                .ok_or(NgcError::Packet("handshake does not open"))?;
            let hs = Handshake::decode(&plain)?;
            return self.handle_handshake(now, n, from, sender, hs);
        }
        let n = self
            .groups
            .iter()
            .find(|(_, g)| g.peers.iter().any(|p| p.enc == sender))
            .map(|(n, _)| *n)
            .ok_or(NgcError::NoGroup)?;
        let g = self.groups.get_mut(&n).expect("found");
        let our = g.keys.enc.pk;
        let p = g.peer_by_enc(&sender).expect("found");
        let shared = p.shared.clone().ok_or(NgcError::Packet("no session with this peer"))?;
        let plain = shared.decrypt(&nonce, boxed).ok_or(NgcError::Packet("group packet does not open"))?;
        let lossless = kind == net_id::LOSSLESS;
        let (t, id, payload) = unpad(&plain, lossless)?;
        let peer = p.id;
        if lossless {
            if !p.handshaked && t != gp::HS_RESPONSE_ACK && t != gp::INVITE_REQUEST {
                return Err(NgcError::Packet("lossless packet before the handshake"));
            }
            p.last_heard = now;
            p.addr = Some(from);
            if id <= p.recv_id {
                self.send_ack(n, peer, ACK_RECV, id);
                return Ok(());
            }
            if id > p.recv_id + 1 {
                let want = p.recv_id + 1;
                if p.held.len() < MAX_RECV_BUFFER {
                    p.held.insert(id, (t, payload.to_vec()));
                }
                self.send_ack(n, peer, ACK_REQ, want);
                return Ok(());
            }
            p.recv_id = id;
            let payload = payload.to_vec();
            let r = self.handle_lossless(now, n, peer, t, &payload);
            self.send_ack(n, peer, ACK_RECV, id);
            // Packets that arrived early, now in order.
            while let Some(g) = self.groups.get_mut(&n) {
                let Some(p) = g.peers.iter_mut().find(|p| p.id == peer) else { break };
                let next = p.recv_id + 1;
                let Some((t, d)) = p.held.remove(&next) else { break };
                p.recv_id = next;
                let _ = self.handle_lossless(now, n, peer, t, &d);
                self.send_ack(n, peer, ACK_RECV, next);
            }
            r
        } else {
            if !p.handshaked {
                return Err(NgcError::Packet("lossy packet before the handshake"));
            }
            p.last_heard = now;
            match t {
                gp::MESSAGE_ACK => {
                    need(payload, 9, "ack")?;
                    let id = u64_at(payload, 1);
                    if payload[0] == ACK_RECV {
                        p.unacked.remove(&id);
                    } else if payload[0] == ACK_REQ {
                        if let Some(s) = p.unacked.get_mut(&id) {
                            s.last = now;
                            let (k, d) = (s.kind, s.data.clone());
                            if let (Some(addr), Some(sh)) = (p.addr, p.shared.clone()) {
                                let v = self.seal(&sh, &our, net_id::LOSSLESS, k, id, &d);
                                self.udp_out.push_back((addr, v));
                            }
                        }
                    }
                }
                gp::PING => {
                    // [peer list checksum u16][confirmed peers u16][versions…]: a peer that
                    // knows more peers than we do is asked for its list.
                    need(payload, 20, "ping")?;
                    let theirs = u16_at(payload, 2) as usize;
                    let ours = g.peers.iter().filter(|p| p.confirmed).count() + 1;
                    let due =
                        g.last_sync_request.is_none_or(|t| now.saturating_duration_since(t) >= SYNC_REQUEST_INTERVAL);
                    if g.connected && theirs > ours && due {
                        g.last_sync_request = Some(now);
                        self.send_lossless(now, n, peer, gp::SYNC_REQUEST, &GF_PEERS.to_be_bytes());
                    }
                }
                gp::INVITE_RESPONSE_REJECT => {
                    need(payload, 1, "reject")?;
                    if !g.connected {
                        self.events.push_back(GroupEvent::Rejected { group: n, reason: payload[0] });
                    }
                }
                _ => {}
            }
            Ok(())
        }
    }

    fn send_ack(&mut self, group: u32, peer: u32, kind: u8, id: u64) {
        let mut b = vec![kind];
        b.extend_from_slice(&id.to_be_bytes());
        self.send_lossy(group, peer, gp::MESSAGE_ACK, &b);
    }

    fn handle_handshake(
        &mut self,
        now: Instant,
        n: u32,
        from: SocketAddr,
        sender: PublicKey,
        hs: Handshake,
    ) -> Result<(), NgcError> {
        let g = self.groups.get_mut(&n).expect("found");
        if hs.kind == GH_REQUEST {
            let id = match g.peer_by_enc(&sender) {
                Some(p) => {
                    if p.handshaked {
                        // c-toxcore: a handshaked peer asking again starts over.
                        p.handshaked = false;
                        return Ok(());
                    }
                    if p.self_is_closer && p.pending_request.is_some() {
                        // Both asked at once: the one closer to the chat id is the requester.
                        return Ok(());
                    }
                    p.id
                }
                None => {
                    if !g.connected {
                        return Err(NgcError::NotConnected);
                    }
                    self.add_peer(now, n, sender, Some(from)).ok_or(NgcError::Packet("peer list full"))?
                }
            };
            let g = self.groups.get_mut(&n).expect("found");
            let p = g.peers.iter_mut().find(|p| p.id == id).expect("added");
            p.addr = Some(from);
            p.shared = Some(SharedKey::precompute(&hs.session_pk, &p.session.sk));
            p.recv_id = 1;
            p.send_id = 1;
            p.pending_request = None;
            p.pending_response = Some(hs.request);
            p.last_heard = now;
            // A new session (c-toxcore makes a new connection): e.g. a peer back from a
            // restart asks for the sync again at once.
            p.last_sync_answer = None;
            self.send_handshake(now, n, id);
        } else {
            let p = g.peer_by_enc(&sender).ok_or(NgcError::Packet("response from an unknown peer"))?;
            let Some(request) = p.pending_request else {
                return Err(NgcError::Packet("unexpected handshake response"));
            };
            p.shared = Some(SharedKey::precompute(&hs.session_pk, &p.session.sk));
            p.recv_id = 2;
            p.handshaked = true;
            p.pending_request = None;
            p.addr = Some(from);
            p.last_heard = now;
            let id = p.id;
            self.send_lossless(now, n, id, gp::HS_RESPONSE_ACK, &[]);
            if request == HS_INVITE_REQUEST {
                self.send_lossless(now, n, id, gp::INVITE_REQUEST, &[]);
            } else {
                self.send_peer_exchange(now, n, id);
            }
        }
        Ok(())
    }

    fn self_info(&self) -> Vec<u8> {
        let name = truncate_bytes(&self.nickname, MAX_NICK_SIZE);
        let mut b = (name.len() as u16).to_be_bytes().to_vec();
        let mut nick = [0u8; MAX_NICK_SIZE];
        nick[..name.len()].copy_from_slice(name.as_bytes());
        b.extend_from_slice(&nick);
        b.push(0); // status: none
        b
    }

    fn send_peer_exchange(&mut self, now: Instant, n: u32, peer: u32) {
        let info = self.self_info();
        self.send_lossless(now, n, peer, gp::PEER_INFO_RESPONSE, &info);
        self.send_lossless(now, n, peer, gp::PEER_INFO_REQUEST, &[]);
    }

    fn handle_lossless(&mut self, now: Instant, n: u32, peer: u32, t: u8, d: &[u8]) -> Result<(), NgcError> {
        let g = self.groups.get_mut(&n).ok_or(NgcError::NoGroup)?;
        let p = g.peers.iter_mut().find(|p| p.id == peer).ok_or(NgcError::NoGroup)?;
        match t {
            gp::FRAGMENT => {
                if d.is_empty() {
                    let whole = p.fragments.take().ok_or(NgcError::Packet("fragment end without start"))?;
                    let (&t, rest) = whole.split_first().ok_or(NgcError::Packet("empty fragments"))?;
                    if t == gp::FRAGMENT {
                        return Err(NgcError::Packet("nested fragments"));
                    }
                    return self.handle_lossless(now, n, peer, t, rest);
                }
                let buf = p.fragments.get_or_insert_with(Vec::new);
                if buf.len() + d.len() > MAX_PACKET_SIZE {
                    p.fragments = None;
                    return Err(NgcError::Packet("fragments too long"));
                }
                buf.extend_from_slice(d);
            }
            gp::HS_RESPONSE_ACK => {
                if !p.handshaked {
                    p.handshaked = true;
                    p.pending_response = None;
                    self.send_lossless(now, n, peer, gp::INVITE_REQUEST, &[]);
                }
            }
            gp::INVITE_REQUEST => {
                // Only a member holding the state lets others in.
                if g.state.is_some() && g.connected {
                    self.send_lossless(now, n, peer, gp::INVITE_RESPONSE, &[]);
                }
            }
            gp::INVITE_RESPONSE => {
                if !g.connected {
                    let flags = GF_PEERS | GF_TOPIC | GF_STATE;
                    self.send_lossless(now, n, peer, gp::SYNC_REQUEST, &flags.to_be_bytes());
                } else {
                    // A restored group asked several saved peers at once: the first sync
                    // brought us in, the others only need names exchanged.
                    self.send_peer_exchange(now, n, peer);
                }
            }
            gp::SYNC_REQUEST => {
                need(d, 2, "sync request")?;
                let flags = u16_at(d, 0);
                self.answer_sync(now, n, peer, flags);
            }
            gp::SYNC_RESPONSE => {
                if !d.is_empty() {
                    let (pk, addr) = decode_announce(d)?;
                    if pk != g.keys.enc.pk && g.peers.iter().all(|p| p.enc != pk) {
                        if let Some(addr) = addr {
                            if let Some(id) = self.add_peer(now, n, pk, Some(addr)) {
                                let g = self.groups.get_mut(&n).expect("found");
                                let p = g.peers.iter_mut().find(|p| p.id == id).expect("added");
                                p.pending_request = Some(HS_PEER_INFO_EXCHANGE);
                                self.send_handshake(now, n, id);
                            }
                        }
                    }
                }
                let g = self.groups.get_mut(&n).expect("found");
                g.connected = true;
                let first = !g.joined_event;
                g.joined_event = true;
                self.send_peer_exchange(now, n, peer);
                if first {
                    self.events.push_back(GroupEvent::SelfJoin { group: n });
                }
            }
            gp::SHARED_STATE => {
                need(d, SIGNATURE_SIZE + SHARED_STATE_SIZE, "shared state")?;
                if d.len() != SIGNATURE_SIZE + SHARED_STATE_SIZE {
                    return Err(NgcError::Packet("shared state size"));
                }
                let key = VerifyingKey::from_bytes(&g.chat_id).map_err(|_| NgcError::Packet("chat id is no key"))?;
                let mut sig = [0u8; SIGNATURE_SIZE];
                sig.copy_from_slice(&d[..SIGNATURE_SIZE]);
                key.verify(&d[SIGNATURE_SIZE..], &ed25519_dalek::Signature::from_bytes(&sig))
                    .map_err(|_| NgcError::Packet("shared state signature"))?;
                let st = SharedState::decode(&d[SIGNATURE_SIZE..])?;
                if g.state.as_ref().is_none_or(|(s, _)| st.version >= s.version) && g.chat_sig.is_none() {
                    g.state = Some((st, sig));
                    g.state_packed = d[SIGNATURE_SIZE..].to_vec();
                }
            }
            gp::TOPIC => {
                // [signature][version u32][checksum u16][length u16][topic][setter's sig key]
                need(d, SIGNATURE_SIZE + 8 + 32, "topic")?;
                let info = &d[SIGNATURE_SIZE..];
                let len = u16_at(info, 6) as usize;
                if len > MAX_TOPIC_SIZE || info.len() < 8 + len + 32 {
                    return Err(NgcError::Packet("topic length"));
                }
                let setter = pk_sig(&info[8 + len..8 + len + 32]);
                let key = VerifyingKey::from_bytes(&setter).map_err(|_| NgcError::Packet("topic key"))?;
                let mut sig = [0u8; SIGNATURE_SIZE];
                sig.copy_from_slice(&d[..SIGNATURE_SIZE]);
                key.verify(info, &ed25519_dalek::Signature::from_bytes(&sig))
                    .map_err(|_| NgcError::Packet("topic signature"))?;
                let topic = String::from_utf8_lossy(&info[8..8 + len]).into_owned();
                if topic != g.topic {
                    g.topic = topic.clone();
                    self.events.push_back(GroupEvent::Topic { group: n, topic });
                }
            }
            gp::PEER_INFO_REQUEST => {
                let info = self.self_info();
                self.send_lossless(now, n, peer, gp::PEER_INFO_RESPONSE, &info);
            }
            gp::PEER_INFO_RESPONSE => {
                need(d, PEER_INFO_SIZE, "peer info")?;
                let len = (u16_at(d, 0) as usize).min(MAX_NICK_SIZE);
                let name = String::from_utf8_lossy(&d[2..2 + len]).into_owned();
                let was = p.confirmed;
                p.confirmed = true;
                let enc = p.enc;
                g.saved.retain(|s| s.enc != enc);
                // A restored group reached by a peer's own handshake (a peer-info exchange,
                // no sync): with the verified state we kept, we are in again.
                if !g.connected && g.state.is_some() && g.hold_until.is_some() {
                    g.connected = true;
                    if !g.joined_event {
                        g.joined_event = true;
                        self.events.push_back(GroupEvent::SelfJoin { group: n });
                    }
                }
                let changed = p.name != name;
                p.name = name.clone();
                if !was {
                    self.events.push_back(GroupEvent::PeerJoin { group: n, peer, name });
                } else if changed {
                    self.events.push_back(GroupEvent::PeerName { group: n, peer, name });
                }
            }
            gp::BROADCAST => {
                need(d, 1, "broadcast")?;
                if !p.confirmed {
                    return Err(NgcError::Packet("broadcast from an unconfirmed peer"));
                }
                let m = &d[1..];
                match d[0] {
                    gm::PLAIN_MESSAGE | gm::ACTION_MESSAGE => {
                        if m.len() <= 4 || m.len() > MAX_MESSAGE_SIZE + 4 {
                            return Err(NgcError::Packet("message length"));
                        }
                        let text = String::from_utf8_lossy(&m[4..]).into_owned();
                        let name = p.name.clone();
                        let action = d[0] == gm::ACTION_MESSAGE;
                        self.events.push_back(GroupEvent::Message { group: n, peer, name, action, text });
                    }
                    gm::NICK => {
                        if m.is_empty() || m.len() > MAX_NICK_SIZE {
                            return Err(NgcError::Packet("nick length"));
                        }
                        let name = String::from_utf8_lossy(m).into_owned();
                        p.name = name.clone();
                        self.events.push_back(GroupEvent::PeerName { group: n, peer, name });
                    }
                    gm::PEER_EXIT => {
                        let name = p.name.clone();
                        g.peers.retain(|p| p.id != peer);
                        self.events.push_back(GroupEvent::PeerExit { group: n, peer, name });
                    }
                    // Status, private messages, moderation: not handled.
                    _ => {}
                }
            }
            gp::KEY_ROTATION => {
                // [0 request | 1 response][the sender's new session key]
                need(d, 1 + PUBLIC_KEY_SIZE, "key rotation")?;
                let their = pk_at(d, 1);
                if d[0] != 0 {
                    if let Some(kp) = p.rotating.take() {
                        p.shared = Some(SharedKey::precompute(&their, &kp.sk));
                        p.session = kp;
                    }
                } else if now.saturating_duration_since(p.last_rotation) >= MIN_KEY_ROTATION_GAP {
                    let kp = KeyPair::generate(&mut self.rng);
                    let mut b = vec![1u8];
                    b.extend_from_slice(&kp.pk.0);
                    // The response still goes under the old key; then both switch.
                    self.send_lossless(now, n, peer, gp::KEY_ROTATION, &b);
                    let g = self.groups.get_mut(&n).ok_or(NgcError::NoGroup)?;
                    let p = g.peers.iter_mut().find(|p| p.id == peer).ok_or(NgcError::NoGroup)?;
                    p.shared = Some(SharedKey::precompute(&their, &kp.sk));
                    p.session = kp;
                    p.last_rotation = now;
                }
            }
            // Accepted as sent: moderation lists (we hold no roles), relays, custom packets.
            gp::MOD_LIST | gp::SANCTIONS_LIST | gp::TCP_RELAYS | gp::CUSTOM_PACKET => {}
            _ => return Err(NgcError::Packet("unknown lossless type")),
        }
        Ok(())
    }

    /// Answers a sync request when we hold the state (we founded the group): the signed
    /// state, empty mod and sanctions lists, then one announce per other confirmed peer
    /// (an empty response when there is none).
    fn answer_sync(&mut self, now: Instant, n: u32, peer: u32, flags: u16) {
        let Some(g) = self.groups.get_mut(&n) else { return };
        let Some((st, sig)) = g.state.clone() else { return };
        if !g.connected {
            return;
        }
        let founder = g.chat_sig.is_some();
        // As c-toxcore: one answer per peer per ping interval.
        let Some(p) = g.peers.iter_mut().find(|p| p.id == peer) else { return };
        if p.last_sync_answer.is_some_and(|t| now.saturating_duration_since(t) < PING_INTERVAL) {
            return;
        }
        p.last_sync_answer = Some(now);
        // Only the founder sends the state: members keep no moderation lists to go with it.
        if founder && flags & GF_STATE != 0 {
            let mut b = sig.to_vec();
            b.extend_from_slice(&st.encode());
            self.send_lossless(now, n, peer, gp::SHARED_STATE, &b);
            self.send_lossless(now, n, peer, gp::MOD_LIST, &0u16.to_be_bytes());
            let creds = self.sanctions_creds(n);
            let mut sl = 0u16.to_be_bytes().to_vec();
            sl.extend_from_slice(&creds);
            self.send_lossless(now, n, peer, gp::SANCTIONS_LIST, &sl);
        }
        if flags & GF_PEERS != 0 {
            let Some(g) = self.groups.get(&n) else { return };
            let others: Vec<Vec<u8>> = g
                .peers
                .iter()
                .filter(|p| p.confirmed && p.id != peer)
                .filter_map(|p| {
                    let addr = p.addr?;
                    let mut b = p.enc.0.to_vec();
                    b.push(1);
                    b.push(0);
                    b.extend_from_slice(&encode_ip_port(&addr));
                    Some(b)
                })
                .collect();
            if others.is_empty() {
                self.send_lossless(now, n, peer, gp::SYNC_RESPONSE, &[]);
            }
            for b in others {
                self.send_lossless(now, n, peer, gp::SYNC_RESPONSE, &b);
            }
        }
    }

    /// Sanctions credentials of an empty sanctions list (group_moderation.c): version 0,
    /// the list hash (all zeros for an empty list), its checksum (byte pairs XORed: 0),
    /// the signer's Ed25519 key (ours: the founder's) and its signature over the hash.
    fn sanctions_creds(&mut self, n: u32) -> Vec<u8> {
        let Some(g) = self.groups.get(&n) else { return Vec::new() };
        let hash = [0u8; 32];
        let mut v = 0u32.to_be_bytes().to_vec();
        v.extend_from_slice(&hash);
        v.extend_from_slice(&0u16.to_be_bytes());
        v.extend_from_slice(&g.keys.sig_pk());
        v.extend_from_slice(&g.keys.sig.sign(&hash).to_bytes());
        v
    }

    /// Handshake retries, resends, pings, timeouts.
    pub fn tick(&mut self, now: Instant) {
        self.last_tick = Some(now);
        let due: Vec<u32> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                !g.saved.is_empty()
                    && g.last_saved_try.is_none_or(|t| now.saturating_duration_since(t) >= SAVED_PEER_INTERVAL)
            })
            .map(|(n, _)| *n)
            .collect();
        for n in due {
            self.retry_saved(now, n);
        }
        let mut hs = Vec::new();
        let mut resend = Vec::new();
        let mut pings = Vec::new();
        let mut rotations = Vec::new();
        for (&n, g) in self.groups.iter_mut() {
            let mut gone = Vec::new();
            for p in g.peers.iter_mut() {
                let timeout = if p.confirmed { CONFIRMED_PEER_TIMEOUT } else { UNCONFIRMED_PEER_TIMEOUT };
                // c-toxcore too drops a peer that leaves a packet unacknowledged this long.
                let stuck = p
                    .unacked
                    .values()
                    .next()
                    .is_some_and(|s| now.saturating_duration_since(s.added) >= CONFIRMED_PEER_TIMEOUT);
                if stuck || now.saturating_duration_since(p.last_heard) >= timeout {
                    gone.push(p.id);
                    continue;
                }
                if !p.handshaked
                    && (p.pending_request.is_some() || p.pending_response.is_some())
                    && p.last_handshake.is_none_or(|t| now.saturating_duration_since(t) >= HANDSHAKE_INTERVAL)
                {
                    hs.push((n, p.id));
                }
                if p.handshaked {
                    for (&id, s) in p.unacked.iter_mut().take(MAX_RESENDS_PER_TICK) {
                        if now.saturating_duration_since(s.last) >= RESEND_INTERVAL {
                            s.last = now;
                            resend.push((n, p.id, id, s.kind, s.data.clone()));
                        }
                    }
                }
                if p.confirmed && now.saturating_duration_since(p.last_ping) >= PING_INTERVAL {
                    p.last_ping = now;
                    pings.push((n, p.id));
                }
                if p.confirmed
                    && p.self_is_closer
                    && p.rotating.is_none()
                    && now.saturating_duration_since(p.last_rotation) >= KEY_ROTATION_INTERVAL
                {
                    p.last_rotation = now;
                    rotations.push((n, p.id));
                }
            }
            for id in gone {
                if let Some(i) = g.peers.iter().position(|p| p.id == id) {
                    let p = g.peers.remove(i);
                    if p.confirmed {
                        self.events.push_back(GroupEvent::PeerExit { group: n, peer: id, name: p.name });
                    }
                }
            }
        }
        for (n, id) in hs {
            self.send_handshake(now, n, id);
        }
        for (n, peer, id, kind, data) in resend {
            let Some(g) = self.groups.get(&n) else { continue };
            let our = g.keys.enc.pk;
            let Some(p) = g.peers.iter().find(|p| p.id == peer) else { continue };
            let (Some(sh), Some(addr)) = (p.shared.clone(), p.addr) else { continue };
            let v = self.seal(&sh, &our, net_id::LOSSLESS, kind, id, &data);
            self.udp_out.push_back((addr, v));
        }
        for (n, id) in rotations {
            let kp = KeyPair::generate(&mut self.rng);
            let mut b = vec![0u8];
            b.extend_from_slice(&kp.pk.0);
            self.send_lossless(now, n, id, gp::KEY_ROTATION, &b);
            if let Some(p) = self.groups.get_mut(&n).and_then(|g| g.peers.iter_mut().find(|p| p.id == id)) {
                p.rotating = Some(kp);
            }
        }
        for (n, id) in pings {
            // Our peer count and list checksum (so a peer missing some of ours asks us for
            // them), zeros for state and topic (we never hand those out that way).
            let Some(g) = self.groups.get(&n) else { continue };
            let confirmed = g.peers.iter().filter(|p| p.confirmed);
            let sum = confirmed
                .clone()
                .fold(jenkins_hash(&g.keys.enc.pk.0) as u16, |s, p| s.wrapping_add(jenkins_hash(&p.enc.0) as u16));
            let mut b = [0u8; 20];
            b[..2].copy_from_slice(&sum.to_be_bytes());
            b[2..4].copy_from_slice(&(confirmed.count() as u16 + 1).to_be_bytes());
            self.send_lossy(n, id, gp::PING, &b);
        }
    }

    fn set_friend(&mut self, group: u32, peer: u32, friend: PublicKey) {
        if let Some(p) = self.groups.get_mut(&group).and_then(|g| g.peers.iter_mut().find(|p| p.id == peer)) {
            p.friend = Some(friend);
        }
    }

    /// Handshakes to the saved peers of a restored group that are not peers now: the
    /// founder (who holds the state) asks for a peer info exchange, a member asks to be let
    /// in again (handshake, invite request, sync), as after a fresh invite.
    fn retry_saved(&mut self, now: Instant, n: u32) {
        let Some(g) = self.groups.get_mut(&n) else { return };
        if g.hold_until.is_some_and(|t| now < t) {
            return;
        }
        g.last_saved_try = Some(now);
        let request = if g.connected { HS_PEER_INFO_EXCHANGE } else { HS_INVITE_REQUEST };
        let todo: Vec<SavedPeer> =
            g.saved.iter().filter(|s| s.addr.is_some() && g.peers.iter().all(|p| p.enc != s.enc)).cloned().collect();
        for s in todo {
            let Some(id) = self.add_peer(now, n, s.enc, s.addr) else { continue };
            let Some(p) = self.groups.get_mut(&n).and_then(|g| g.peers.iter_mut().find(|p| p.id == id)) else {
                continue;
            };
            p.friend = s.friend;
            p.name = s.name;
            p.pending_request = Some(request);
            self.send_handshake(now, n, id);
        }
    }

    /// A friend came online at `addr` (its net_crypto UDP address, which is also its group
    /// address): the saved peers of restored groups that are this friend are tried there
    /// now, as c-toxcore reaches its saved group peers through their friend connections.
    pub fn friend_online(&mut self, now: Instant, friend: &PublicKey, addr: SocketAddr) {
        let mut due = Vec::new();
        for (&n, g) in self.groups.iter_mut() {
            let mut any = false;
            for s in g.saved.iter_mut().filter(|s| s.friend == Some(*friend)) {
                s.addr = Some(addr);
                any = true;
                if let Some(p) = g.peers.iter_mut().find(|p| p.enc == s.enc && !p.handshaked) {
                    p.addr = Some(addr);
                    p.last_handshake = None;
                    due.push((n, Some(p.id)));
                }
            }
            if any {
                due.push((n, None));
            }
        }
        for (n, peer) in due {
            match peer {
                Some(id) => self.send_handshake(now, n, id),
                None => self.retry_saved(now, n),
            }
        }
    }

    /// Our groups, to keep across a restart (docs/protocols/tox.md#ngc-group-chats): per
    /// group the chat id, our identity in it (the seed of our per-group keys), the chat's
    /// signing key if we founded it, the last verified shared state with its signature, the
    /// topic, and up to [`MAX_SAVED_PEERS`] peers (confirmed ones, then saved ones not back
    /// yet) with their last address, the friend they are and their name. Restored by
    /// [`Groups::load`].
    pub fn save(&self) -> Vec<u8> {
        let mut v = vec![SAVE_VERSION, self.groups.len() as u8];
        for g in self.groups.values() {
            v.extend_from_slice(&g.chat_id);
            v.extend_from_slice(&g.keys.sig.to_bytes());
            match &g.chat_sig {
                Some(k) => {
                    v.push(1);
                    v.extend_from_slice(&k.to_bytes());
                }
                None => v.push(0),
            }
            match &g.state {
                Some((_, sig)) if g.state_packed.len() == SHARED_STATE_SIZE => {
                    v.push(1);
                    v.extend_from_slice(sig);
                    v.extend_from_slice(&g.state_packed);
                }
                _ => v.push(0),
            }
            let topic = truncate_bytes(&g.topic, MAX_TOPIC_SIZE);
            v.extend_from_slice(&(topic.len() as u16).to_be_bytes());
            v.extend_from_slice(topic.as_bytes());
            let mut peers: Vec<SavedPeer> = g
                .peers
                .iter()
                .filter(|p| p.confirmed)
                .map(|p| SavedPeer { enc: p.enc, addr: p.addr, friend: p.friend, name: p.name.clone() })
                .collect();
            for s in &g.saved {
                if peers.iter().all(|p| p.enc != s.enc) {
                    peers.push(s.clone());
                }
            }
            // A group still joining: the peer we join through (not confirmed yet).
            if peers.is_empty() && !g.connected {
                peers.extend(g.peers.iter().map(|p| SavedPeer {
                    enc: p.enc,
                    addr: p.addr,
                    friend: p.friend,
                    name: p.name.clone(),
                }));
            }
            peers.truncate(MAX_SAVED_PEERS);
            v.extend_from_slice(&(peers.len() as u16).to_be_bytes());
            for p in peers {
                v.extend_from_slice(&p.enc.0);
                match p.addr {
                    Some(a) => {
                        v.push(1);
                        v.extend_from_slice(&encode_ip_port(&a));
                    }
                    None => v.push(0),
                }
                match p.friend {
                    Some(f) => {
                        v.push(1);
                        v.extend_from_slice(&f.0);
                    }
                    None => v.push(0),
                }
                let name = truncate_bytes(&p.name, MAX_NICK_SIZE);
                v.push(name.len() as u8);
                v.extend_from_slice(name.as_bytes());
            }
        }
        v
    }

    /// Restores the groups of a [`Groups::save`] (those we are in already are skipped) and
    /// starts reconnecting to their saved peers; returns the new group numbers. The whole
    /// save is checked first (every length against its limit, the founder key against the
    /// chat id, the state's signature): an error restores nothing.
    pub fn load(&mut self, now: Instant, b: &[u8]) -> Result<Vec<u32>, NgcError> {
        let mut r = Reader(b);
        if r.u8()? != SAVE_VERSION {
            return Err(NgcError::Packet("save version"));
        }
        let count = r.u8()? as usize;
        if count > MAX_GROUPS {
            return Err(NgcError::Packet("too many saved groups"));
        }
        let mut groups = Vec::with_capacity(count);
        for _ in 0..count {
            let chat_id: ChatId = r.array()?;
            let keys = ExtKeys::from_seed(r.array()?);
            let chat_sig = match r.flag()? {
                true => {
                    let k = SigningKey::from_bytes(&r.array()?);
                    if k.verifying_key().to_bytes() != chat_id {
                        return Err(NgcError::Packet("saved founder key is not the chat's"));
                    }
                    Some(k)
                }
                false => None,
            };
            let mut state_packed = Vec::new();
            let state = match r.flag()? {
                true => {
                    let sig: [u8; SIGNATURE_SIZE] = r.array()?;
                    let packed = r.take(SHARED_STATE_SIZE)?;
                    let key = VerifyingKey::from_bytes(&chat_id).map_err(|_| NgcError::Packet("chat id is no key"))?;
                    key.verify(packed, &ed25519_dalek::Signature::from_bytes(&sig))
                        .map_err(|_| NgcError::Packet("saved shared state signature"))?;
                    state_packed = packed.to_vec();
                    Some((SharedState::decode(packed)?, sig))
                }
                false => None,
            };
            if chat_sig.is_some() && state.is_none() {
                return Err(NgcError::Packet("saved founded group without its state"));
            }
            let topic_len = r.u16()? as usize;
            if topic_len > MAX_TOPIC_SIZE {
                return Err(NgcError::Packet("saved topic length"));
            }
            let topic = String::from_utf8_lossy(r.take(topic_len)?).into_owned();
            let npeers = r.u16()? as usize;
            if npeers > MAX_SAVED_PEERS {
                return Err(NgcError::Packet("too many saved peers"));
            }
            let mut saved = Vec::with_capacity(npeers);
            for _ in 0..npeers {
                let enc = PublicKey(r.array()?);
                let addr = match r.flag()? {
                    true => {
                        let (a, used) = decode_ip_port(r.0)?;
                        r.take(used)?;
                        Some(a)
                    }
                    false => None,
                };
                let friend = if r.flag()? { Some(PublicKey(r.array()?)) } else { None };
                let name_len = r.u8()? as usize;
                if name_len > MAX_NICK_SIZE {
                    return Err(NgcError::Packet("saved nick length"));
                }
                let name = String::from_utf8_lossy(r.take(name_len)?).into_owned();
                if enc != keys.enc.pk && saved.iter().all(|s: &SavedPeer| s.enc != enc) {
                    saved.push(SavedPeer { enc, addr, friend, name });
                }
            }
            let founder = chat_sig.is_some();
            groups.push(Group {
                chat_id,
                keys,
                chat_sig,
                state,
                state_packed,
                // The founder holds the state and can let others in at once; a member is
                // in again once a saved peer synced it.
                connected: founder,
                joined_event: founder,
                peers: Vec::new(),
                next_peer: 0,
                topic,
                invited: Vec::new(),
                last_sync_request: None,
                saved,
                last_saved_try: None,
                hold_until: (!founder).then_some(now + REJOIN_HOLD),
            });
        }
        if !r.0.is_empty() {
            return Err(NgcError::Packet("bytes after the saved groups"));
        }
        let mut out = Vec::new();
        for g in groups {
            if self.by_chat_id(&g.chat_id).is_some() {
                continue;
            }
            let n = self.alloc_group(g)?;
            self.retry_saved(now, n);
            out.push(n);
        }
        Ok(out)
    }

    /// When [`Groups::tick`] next has something to do: every [`TICK`] while any group
    /// has peers (retries, resends and pings are all on whole-second scales).
    pub fn next_timeout(&self) -> Option<Instant> {
        let any = self.groups.values().any(|g| !g.peers.is_empty() || !g.saved.is_empty());
        if any {
            self.last_tick.map(|t| t + TICK)
        } else {
            None
        }
    }
}

/// A cursor over saved bytes: every read checks the length left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NgcError> {
        need(self.0, n, "save too short")?;
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], NgcError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, NgcError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, NgcError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn flag(&mut self) -> Result<bool, NgcError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(NgcError::Packet("save flag")),
        }
    }
}

fn pk_sig(b: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&b[..32]);
    k
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated peers: each a `Groups` with an address and a long-term key (for friend
    /// packets); every friend is everyone's friend.
    struct World {
        now: Instant,
        nodes: Vec<(PublicKey, SocketAddr, Groups)>,
        /// UDP from the first node to the second is lost.
        blocked: Option<(usize, usize)>,
    }

    #[allow(clippy::needless_range_loop)] // `i` indexes both the nodes and their events
    impl World {
        fn new(names: &[&str]) -> World {
            let nodes = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let pk = PublicKey([i as u8 + 1; 32]);
                    let addr: SocketAddr = format!("127.0.0.1:{}", 33445 + i).parse().unwrap();
                    (pk, addr, Groups::new(n, [i as u8 + 10; 32]))
                })
                .collect();
            World { now: Instant::now(), nodes, blocked: None }
        }
        /// Delivers everything queued until quiet; returns the events per node.
        fn pump(&mut self, events: &mut [Vec<GroupEvent>]) {
            for _ in 0..1000 {
                let mut any = false;
                for i in 0..self.nodes.len() {
                    while let Some(e) = self.nodes[i].2.poll_event() {
                        events[i].push(e);
                    }
                    let from_pk = self.nodes[i].0;
                    let from_addr = self.nodes[i].1;
                    while let Some((to, data)) = self.nodes[i].2.poll_friend_transmit() {
                        any = true;
                        let j = self.nodes.iter().position(|n| n.0 == to).unwrap();
                        let now = self.now;
                        let _ = self.nodes[j].2.handle_friend_packet(now, &from_pk, Some(from_addr), &data);
                    }
                    while let Some((to, data)) = self.nodes[i].2.poll_udp_transmit() {
                        any = true;
                        // Datagrams to a node that is gone are lost.
                        let Some(j) = self.nodes.iter().position(|n| n.1 == to) else { continue };
                        if self.blocked == Some((i, j)) {
                            continue;
                        }
                        let now = self.now;
                        let _ = self.nodes[j].2.handle_udp(now, from_addr, &data);
                    }
                }
                if !any {
                    return;
                }
            }
            panic!("no quiet");
        }
        fn advance(&mut self, d: Duration, events: &mut [Vec<GroupEvent>]) {
            self.now += d;
            for n in self.nodes.iter_mut() {
                n.2.tick(self.now);
            }
            self.pump(events);
        }
        /// A world of `names` where Alice (node 0) has founded the group `group_name` and
        /// every other node has been invited and has joined; the events so far, per node.
        fn with_group(names: &[&str], group_name: &str) -> (World, Vec<Vec<GroupEvent>>, u32) {
            let mut w = World::new(names);
            let mut ev = vec![Vec::new(); names.len()];
            let g = w.nodes[0].2.create(group_name).unwrap();
            for i in 1..names.len() {
                let friend = w.nodes[i].0;
                w.invite_and_accept(g, &friend, &mut ev);
            }
            (w, ev, g)
        }
        /// Alice (node 0) invites `friend` to `group`, and every pending invite is accepted.
        fn invite_and_accept(&mut self, group: u32, friend: &PublicKey, events: &mut [Vec<GroupEvent>]) {
            self.nodes[0].2.invite_friend(group, friend).unwrap();
            self.pump(events);
            self.accept_invites(events);
        }
        fn accept_invites(&mut self, events: &mut [Vec<GroupEvent>]) {
            for i in 0..self.nodes.len() {
                let invites: Vec<u32> = events[i]
                    .iter()
                    .filter_map(|e| match e {
                        GroupEvent::Invite { invite, .. } => Some(*invite),
                        _ => None,
                    })
                    .collect();
                events[i].retain(|e| !matches!(e, GroupEvent::Invite { .. }));
                for inv in invites {
                    let now = self.now;
                    self.nodes[i].2.join_invite(now, inv).unwrap();
                }
            }
            self.pump(events);
        }
        fn names(&self, i: usize) -> Vec<String> {
            let g = self.nodes[i].2.list()[0];
            let mut v: Vec<String> = self.nodes[i].2.peers(g).unwrap().into_iter().map(|p| p.name).collect();
            v.sort();
            v
        }
    }

    fn messages(ev: &[GroupEvent]) -> Vec<(String, String)> {
        ev.iter()
            .filter_map(|e| match e {
                GroupEvent::Message { name, text, .. } => Some((name.clone(), text.clone())),
                _ => None,
            })
            .collect()
    }

    /// Alice founds a group and invites Bob, then Carol; Carol reaches Bob through the
    /// sync's announce; everyone lists three names and gets every line exactly once.
    #[test]
    fn three_peers_join_by_invite_and_chat() {
        let mut w = World::new(&["alice", "bob", "carol"]);
        let mut ev = vec![Vec::new(), Vec::new(), Vec::new()];
        let g = w.nodes[0].2.create("ngc").unwrap();
        let (bob, carol) = (w.nodes[1].0, w.nodes[2].0);
        w.nodes[0].2.invite_friend(g, &bob).unwrap();
        w.pump(&mut ev);
        assert!(matches!(ev[1][0], GroupEvent::Invite { ref name, .. } if name == "ngc"));
        w.accept_invites(&mut ev);
        assert!(ev[1].contains(&GroupEvent::SelfJoin { group: 0 }), "{:?}", ev[1]);
        w.invite_and_accept(g, &carol, &mut ev);
        for i in 0..3 {
            assert_eq!(w.names(i), ["alice", "bob", "carol"], "node {i}");
        }
        let now = w.now;
        w.nodes[2].2.send_message(now, 0, false, "hi from carol").unwrap();
        w.nodes[0].2.send_message(now, g, true, "waves").unwrap();
        w.pump(&mut ev);
        let mut got = messages(&ev[1]);
        got.sort();
        assert_eq!(got, [("alice".into(), "waves".into()), ("carol".into(), "hi from carol".into())]);
        assert_eq!(messages(&ev[0]), [("carol".to_string(), "hi from carol".to_string())]);
        assert_eq!(messages(&ev[2]), [("alice".to_string(), "waves".to_string())]);
        // Pings keep everyone in for longer than the timeout.
        for _ in 0..10 {
            w.advance(Duration::from_secs(10), &mut ev);
        }
        assert_eq!(w.names(1), ["alice", "bob", "carol"]);
        // Carol leaves: the others see it.
        let now = w.now;
        w.nodes[2].2.leave(now, 0).unwrap();
        w.pump(&mut ev);
        assert!(ev[0].iter().any(|e| matches!(e, GroupEvent::PeerExit { name, .. } if name == "carol")));
        assert_eq!(w.names(1), ["alice", "bob"]);
    }

    /// Restarts node `i`: its groups saved, a fresh machine (new RNG) loading them.
    fn restart(w: &mut World, i: usize, name: &str, ev: &mut [Vec<GroupEvent>]) -> Vec<u32> {
        let saved = w.nodes[i].2.save();
        w.nodes[i].2 = Groups::new(name, [i as u8 + 100; 32]);
        ev[i].clear();
        let now = w.now;
        let n = w.nodes[i].2.load(now, &saved).unwrap();
        w.pump(ev);
        // A member waits REJOIN_HOLD (the others time its old connection out meanwhile);
        // then its handshakes are answered.
        for _ in 0..45 {
            w.advance(Duration::from_secs(2), ev);
        }
        n
    }

    /// A member (Bob) and then the founder (Alice) restart from a save: each comes back
    /// into the same group without any invite, sees everyone, and lines pass both ways.
    #[test]
    fn groups_survive_a_restart_of_a_member_and_of_the_founder() {
        let mut w = World::new(&["alice", "bob", "carol"]);
        let mut ev = vec![Vec::new(), Vec::new(), Vec::new()];
        let g = w.nodes[0].2.create("kept").unwrap();
        let chat = w.nodes[0].2.chat_id(g).unwrap();
        for f in [1, 2] {
            let pk = w.nodes[f].0;
            w.invite_and_accept(g, &pk, &mut ev);
        }
        assert_eq!(w.names(1), ["alice", "bob", "carol"]);

        let groups = restart(&mut w, 1, "bob", &mut ev);
        assert_eq!(groups, [0]);
        assert_eq!(w.nodes[1].2.chat_id(0), Some(chat));
        assert_eq!(w.nodes[1].2.name(0).as_deref(), Some("kept"));
        assert!(ev[1].contains(&GroupEvent::SelfJoin { group: 0 }), "{:?}", ev[1]);
        for i in 0..3 {
            assert_eq!(w.names(i), ["alice", "bob", "carol"], "node {i} after Bob's restart");
        }
        let now = w.now;
        w.nodes[1].2.send_message(now, 0, false, "bob is back").unwrap();
        w.nodes[2].2.send_message(now, 0, false, "hi bob").unwrap();
        w.pump(&mut ev);
        assert!(messages(&ev[0]).contains(&("bob".into(), "bob is back".into())));
        assert!(messages(&ev[1]).contains(&("carol".into(), "hi bob".into())));

        restart(&mut w, 0, "alice", &mut ev);
        assert!(w.nodes[0].2.is_connected(0));
        for i in 0..3 {
            assert_eq!(w.names(i), ["alice", "bob", "carol"], "node {i} after Alice's restart");
        }
        let now = w.now;
        w.nodes[0].2.send_message(now, 0, false, "alice is back").unwrap();
        w.nodes[1].2.send_message(now, 0, false, "hi alice").unwrap();
        w.pump(&mut ev);
        assert!(messages(&ev[2]).contains(&("alice".into(), "alice is back".into())));
        assert!(messages(&ev[0]).contains(&("bob".into(), "hi alice".into())));
        // The restored founder still lets a new friend in.
        let carol = w.nodes[2].0;
        w.nodes[2].2.leave(now, 0).unwrap();
        w.pump(&mut ev);
        w.invite_and_accept(0, &carol, &mut ev);
        assert_eq!(w.names(2), ["alice", "bob", "carol"]);
    }

    /// A peer that is offline at the restart is reached when its friend comes online at a
    /// new address.
    #[test]
    fn a_saved_peer_is_reached_through_its_friend() {
        let (mut w, mut ev, _) = World::with_group(&["alice", "bob"], "kept");
        let bob = w.nodes[1].0;
        let saved = w.nodes[0].2.save();
        // Bob moves while Alice is down: her saved address for him is stale.
        w.nodes[1].1 = "127.0.0.1:40000".parse().unwrap();
        w.nodes[0].2 = Groups::new("alice", [77; 32]);
        let now = w.now;
        w.nodes[0].2.load(now, &saved).unwrap();
        for _ in 0..4 {
            w.advance(Duration::from_secs(2), &mut ev);
        }
        assert_eq!(w.names(0), ["alice"]);
        let (now, addr) = (w.now, w.nodes[1].1);
        w.nodes[0].2.friend_online(now, &bob, addr);
        w.pump(&mut ev);
        for _ in 0..4 {
            w.advance(Duration::from_secs(2), &mut ev);
        }
        assert_eq!(w.names(0), ["alice", "bob"]);
        assert_eq!(w.names(1), ["alice", "bob"]);
    }

    /// A save cut short, with any byte changed, or random bytes: refused or loaded, never
    /// a panic; a cut save restores nothing.
    #[test]
    fn saved_groups_refuse_junk_without_panicking() {
        let (w, _, _) = World::with_group(&["alice", "bob"], "kept");
        let saved = w.nodes[0].2.save();
        let now = w.now;
        for cut in 0..saved.len() {
            let mut m = Groups::new("x", [1; 32]);
            assert!(m.load(now, &saved[..cut]).is_err(), "cut at {cut}");
            assert!(m.list().is_empty());
        }
        for i in 0..saved.len() {
            let mut b = saved.clone();
            b[i] ^= 0x5a;
            let _ = Groups::new("x", [1; 32]).load(now, &b);
        }
        let mut rng = rng_from_seed([3; 32]);
        for len in 0..600 {
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            if let Some(x) = b.first_mut() {
                *x = SAVE_VERSION;
            }
            let _ = Groups::new("x", [1; 32]).load(now, &b);
        }
        let mut m = Groups::new("x", [1; 32]);
        assert_eq!(m.load(now, &saved).unwrap().len(), 1);
        assert_eq!(m.load(now, &saved).unwrap(), Vec::<u32>::new(), "a group we are in is not loaded twice");
        assert!(m.load(now, &[SAVE_VERSION + 1, 0]).is_err());
    }

    /// The peer closer to the chat id rotates the session keys every 5 minutes; lines
    /// still pass after two rotations.
    #[test]
    fn session_keys_rotate() {
        let (mut w, mut ev, g) = World::with_group(&["alice", "bob"], "ngc");
        let key = |w: &World| *w.nodes[0].2.groups[&g].peers[0].shared.as_ref().unwrap().as_bytes();
        let before = key(&w);
        for _ in 0..(11 * 60 / 10) {
            w.advance(Duration::from_secs(10), &mut ev);
        }
        assert_ne!(key(&w), before, "the keys were rotated");
        assert_eq!(*w.nodes[1].2.groups[&0].peers[0].shared.as_ref().unwrap().as_bytes(), key(&w));
        let now = w.now;
        w.nodes[1].2.send_message(now, 0, false, "still here").unwrap();
        w.pump(&mut ev);
        assert_eq!(messages(&ev[0]), [("bob".to_string(), "still here".to_string())]);
    }

    /// Carol's handshakes to Bob are lost until she gives up on him; Alice's pings show
    /// her a longer peer list, she asks Alice for it and reaches Bob after all.
    #[test]
    fn a_missed_peer_is_found_again_through_pings() {
        let mut w = World::new(&["alice", "bob", "carol"]);
        let mut ev = vec![Vec::new(), Vec::new(), Vec::new()];
        let g = w.nodes[0].2.create("ngc").unwrap();
        let (bob, carol) = (w.nodes[1].0, w.nodes[2].0);
        w.invite_and_accept(g, &bob, &mut ev);
        w.blocked = Some((2, 1));
        w.invite_and_accept(g, &carol, &mut ev);
        for _ in 0..8 {
            w.advance(Duration::from_secs(5), &mut ev);
        }
        assert_eq!(w.names(2), ["alice", "carol"], "Carol gave up on Bob");
        w.blocked = None;
        for _ in 0..12 {
            w.advance(Duration::from_secs(5), &mut ev);
        }
        assert_eq!(w.names(2), ["alice", "bob", "carol"]);
        assert_eq!(w.names(1), ["alice", "bob", "carol"]);
    }

    /// A long line travels as fragments and comes out whole; lost packets are resent.
    #[test]
    fn fragments_and_resends() {
        let (mut w, mut ev, g) = World::with_group(&["alice", "bob"], "ngc");
        let long = "x".repeat(MAX_MESSAGE_SIZE);
        let now = w.now;
        w.nodes[0].2.send_message(now, g, false, &long).unwrap();
        // Drop the first datagram (a fragment): Bob asks for it / Alice resends it.
        let first = w.nodes[0].2.poll_udp_transmit().unwrap();
        assert_eq!(first.1[0], net_id::LOSSLESS);
        w.pump(&mut ev);
        w.advance(RESEND_INTERVAL, &mut ev);
        assert_eq!(messages(&ev[1]), [("alice".to_string(), long)]);
    }

    /// A peer that acknowledges nothing gets at most MAX_RESENDS_PER_TICK resends a tick.
    #[test]
    fn resends_are_bounded() {
        let (mut w, _, g) = World::with_group(&["alice", "bob"], "ngc");
        let now = w.now;
        for i in 0..200 {
            w.nodes[0].2.send_message(now, g, false, &format!("line {i}")).unwrap();
        }
        while w.nodes[0].2.poll_udp_transmit().is_some() {}
        w.nodes[0].2.tick(now + RESEND_INTERVAL);
        let mut sent = 0;
        while w.nodes[0].2.poll_udp_transmit().is_some() {
            sent += 1;
        }
        assert!(sent > 0 && sent <= MAX_RESENDS_PER_TICK + 1, "{sent} datagrams in one tick");
    }

    /// A peer that goes silent is dropped after the timeout.
    #[test]
    fn silent_peer_times_out() {
        let (mut w, _, _) = World::with_group(&["alice", "bob"], "ngc");
        assert_eq!(w.names(0), ["alice", "bob"]);
        w.nodes.pop();
        let mut ev1 = vec![Vec::new()];
        for _ in 0..7 {
            w.advance(Duration::from_secs(10), &mut ev1);
        }
        assert!(ev1[0].iter().any(|e| matches!(e, GroupEvent::PeerExit { name, .. } if name == "bob")));
        assert_eq!(w.names(0), ["alice"]);
    }

    #[test]
    fn jenkins_golden() {
        // Bob Jenkins' one-at-a-time: "a" → 0xca2e9442, "The quick brown fox jumps over
        // the lazy dog" → 0x519e91f5 (published values).
        assert_eq!(jenkins_hash(b"a"), 0xca2e9442);
        assert_eq!(jenkins_hash(b"The quick brown fox jumps over the lazy dog"), 0x519e91f5);
    }

    #[test]
    fn decoders_refuse_short_and_long_input() {
        assert!(FriendInvite::decode(&[gp::FRIEND_INVITE, 0]).is_err());
        let mut inv = vec![gp::FRIEND_INVITE, invite_kind::INVITE];
        inv.extend_from_slice(&[7; 64]);
        assert!(FriendInvite::decode(&inv).is_err(), "an invite needs a group name");
        inv.extend_from_slice(&[b'n'; MAX_GROUP_NAME_SIZE + 1]);
        assert!(FriendInvite::decode(&inv).is_err(), "name too long");
        assert!(split_udp(&[net_id::HANDSHAKE; 80]).is_err());
        assert!(split_udp(&vec![net_id::LOSSLESS; MAX_UDP_PACKET_SIZE + 1]).is_err());
        assert!(Handshake::decode(&[0; HANDSHAKE_PLAIN_MIN - 1]).is_err());
        assert!(SharedState::decode(&[0; SHARED_STATE_SIZE - 1]).is_err());
        assert!(decode_announce(&[0; 33]).is_err());
        assert!(decode_ip_port(&[2, 1, 2, 3]).is_err());
        assert!(unpad(&[0, 0, 0], false).is_err());
        assert!(unpad(&[0, gp::BROADCAST, 0, 0], true).is_err());
    }
}
