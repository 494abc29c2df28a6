//! Encodings shared by the DHT, the onion and the session layer (docs/protocols/tox.md#encodings, #dht, #onion):
//! packed nodes, the 19-byte onion `IP_Port`, the generic DHT packet
//! (`[kind][sender pk][nonce][box]`), the DHT ping / nodes plaintexts, the routed DHT
//! request 0x20 and the DHT-PK announce (0x9c) payload.
//!
//! Every decoder checks each length against a named limit below before reading, and
//! returns [`PacketError`] instead of panicking.

use crate::crypto::{Nonce, PublicKey, SharedKey, MAC_SIZE, NONCE_SIZE, PUBLIC_KEY_SIZE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Packet kinds (first byte of a UDP payload) used by this crate.
pub mod kind {
    pub const PING_REQUEST: u8 = 0x00;
    pub const PING_RESPONSE: u8 = 0x01;
    pub const NODES_REQUEST: u8 = 0x02;
    pub const NODES_RESPONSE: u8 = 0x04;
    pub const COOKIE_REQUEST: u8 = 0x18;
    pub const COOKIE_RESPONSE: u8 = 0x19;
    pub const CRYPTO_HANDSHAKE: u8 = 0x1a;
    pub const CRYPTO_DATA: u8 = 0x1b;
    pub const DHT_REQUEST: u8 = 0x20;
    pub const LAN_DISCOVERY: u8 = 0x21;
    pub const ONION_REQUEST_0: u8 = 0x80;
    pub const ONION_REQUEST_1: u8 = 0x81;
    pub const ONION_REQUEST_2: u8 = 0x82;
    pub const ANNOUNCE_REQUEST: u8 = 0x83;
    pub const ANNOUNCE_RESPONSE: u8 = 0x84;
    pub const ONION_DATA_REQUEST: u8 = 0x85;
    pub const ONION_DATA_RESPONSE: u8 = 0x86;
    pub const ONION_RESPONSE_3: u8 = 0x8c;
    pub const ONION_RESPONSE_2: u8 = 0x8d;
    pub const ONION_RESPONSE_1: u8 = 0x8e;
    pub const BOOTSTRAP_INFO: u8 = 0xf0;
    /// Inner id of a DHT request / onion data packet: DHT-PK announce.
    pub const DHT_PK: u8 = 0x9c;
    /// Inner id of a DHT request: NAT ping.
    pub const NAT_PING: u8 = 0xfe;
    /// Inner id of onion data: friend request.
    pub const FRIEND_REQUEST: u8 = 0x20;
}

/// Named limits.
pub mod limits {
    /// Packed node with an IPv4 address: type 1 + ip 4 + port 2 + pk 32.
    pub const PACKED_NODE_IPV4_SIZE: usize = 39;
    /// Packed node with an IPv6 address: type 1 + ip 16 + port 2 + pk 32.
    pub const PACKED_NODE_IPV6_SIZE: usize = 51;
    /// The onion `IP_Port`: family 1 + address 16 + port 2.
    pub const IP_PORT_SIZE: usize = 19;
    /// `[kind][sender pk][nonce]` in front of a DHT packet's box.
    pub const DHT_HEADER_SIZE: usize = 1 + super::PUBLIC_KEY_SIZE + super::NONCE_SIZE;
    /// Nodes in one nodes response / announce response.
    pub const MAX_SENT_NODES: usize = 4;
    /// Nodes in a DHT-PK announce.
    pub const MAX_DHT_PK_NODES: usize = 4;
    /// Largest UDP payload Tox sends or accepts (c-toxcore's MAX_UDP_PACKET_SIZE).
    pub const MAX_UDP_PACKET_SIZE: usize = 2048;
    /// Ping plaintext: kind 1 + id 8.
    pub const PING_PLAIN_SIZE: usize = 9;
    /// Nodes request plaintext: pk 32 + sendback 8.
    pub const NODES_REQUEST_PLAIN_SIZE: usize = 40;
    /// DHT request 0x20 header: kind, addressee pk, sender pk, nonce.
    pub const DHT_REQUEST_HEADER_SIZE: usize = 1 + 2 * super::PUBLIC_KEY_SIZE + super::NONCE_SIZE;
    /// DHT-PK announce fixed part: id 1 + no_replay 8 + pk 32.
    pub const DHT_PK_FIXED_SIZE: usize = 1 + 8 + super::PUBLIC_KEY_SIZE;
}
use limits::*;

/// Packed node address types.
pub mod ip_type {
    pub const UDP_IPV4: u8 = 2;
    pub const UDP_IPV6: u8 = 10;
    pub const TCP_IPV4: u8 = 130;
    pub const TCP_IPV6: u8 = 138;
}

/// Why a packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{what}: {got} bytes, need {need}")]
    TooShort { what: &'static str, need: usize, got: usize },
    #[error("{what}: {got} bytes, at most {max}")]
    TooLong { what: &'static str, max: usize, got: usize },
    #[error("{what}: wrong length {got}")]
    BadLength { what: &'static str, got: usize },
    #[error("unknown address type {0}")]
    BadIpType(u8),
    #[error("{what}: {got} nodes, at most {max}")]
    TooManyNodes { what: &'static str, max: usize, got: usize },
    #[error("expected packet kind {want:#04x}, got {got:#04x}")]
    WrongKind { want: u8, got: u8 },
    #[error("empty packet")]
    Empty,
    #[error("box does not open")]
    Decrypt,
}

fn need(what: &'static str, b: &[u8], n: usize) -> Result<(), PacketError> {
    if b.len() < n {
        Err(PacketError::TooShort { what, need: n, got: b.len() })
    } else {
        Ok(())
    }
}

pub(crate) fn pk_at(b: &[u8], at: usize) -> Option<PublicKey> {
    Some(PublicKey(b.get(at..at + PUBLIC_KEY_SIZE)?.try_into().ok()?))
}
pub(crate) fn nonce_at(b: &[u8], at: usize) -> Option<Nonce> {
    b.get(at..at + NONCE_SIZE)?.try_into().ok()
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A DHT node: its UDP address and DHT public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedNode {
    pub addr: SocketAddr,
    pub pk: PublicKey,
}

/// One decoded packed-node entry: UDP or TCP (relay) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub tcp: bool,
    pub node: PackedNode,
}

impl PackedNode {
    pub fn new(addr: SocketAddr, pk: PublicKey) -> Self {
        PackedNode { addr, pk }
    }

    /// Encoded size (39 for IPv4, 51 for IPv6).
    pub fn size(&self) -> usize {
        match self.addr {
            SocketAddr::V4(_) => PACKED_NODE_IPV4_SIZE,
            SocketAddr::V6(_) => PACKED_NODE_IPV6_SIZE,
        }
    }

    /// Appends the UDP packed form.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_node_entry(&NodeEntry { tcp: false, node: *self }, out)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size());
        self.encode_into(&mut v);
        v
    }

    /// Decodes one entry (UDP or TCP) at the start of `b`; returns it and its size.
    pub fn decode_entry(b: &[u8]) -> Result<(NodeEntry, usize), PacketError> {
        need("packed node", b, 1)?;
        let (tcp, v6) = match b[0] {
            ip_type::UDP_IPV4 => (false, false),
            ip_type::UDP_IPV6 => (false, true),
            ip_type::TCP_IPV4 => (true, false),
            ip_type::TCP_IPV6 => (true, true),
            t => return Err(PacketError::BadIpType(t)),
        };
        let size = if v6 { PACKED_NODE_IPV6_SIZE } else { PACKED_NODE_IPV4_SIZE };
        need("packed node", b, size)?;
        let iplen = if v6 { 16 } else { 4 };
        let ip: IpAddr = if v6 {
            let a: [u8; 16] = b[1..17].try_into().map_err(|_| PacketError::BadLength { what: "ipv6", got: 0 })?;
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[1], b[2], b[3], b[4]))
        };
        let port = u16::from_be_bytes([b[1 + iplen], b[2 + iplen]]);
        let pk = pk_at(b, 3 + iplen).ok_or(PacketError::TooShort { what: "packed node", need: size, got: b.len() })?;
        Ok((NodeEntry { tcp, node: PackedNode { addr: SocketAddr::new(ip, port), pk } }, size))
    }
}

/// Appends one entry (UDP or TCP type).
pub fn encode_node_entry(e: &NodeEntry, out: &mut Vec<u8>) {
    match e.node.addr.ip() {
        IpAddr::V4(a) => {
            out.push(if e.tcp { ip_type::TCP_IPV4 } else { ip_type::UDP_IPV4 });
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(if e.tcp { ip_type::TCP_IPV6 } else { ip_type::UDP_IPV6 });
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&e.node.addr.port().to_be_bytes());
    out.extend_from_slice(&e.node.pk.0);
}

/// Decodes exactly `count` (≤ `max`) entries from the start of `b`; returns them and the
/// bytes consumed.
pub fn decode_node_entries(b: &[u8], count: usize, max: usize) -> Result<(Vec<NodeEntry>, usize), PacketError> {
    if count > max {
        return Err(PacketError::TooManyNodes { what: "node list", max, got: count });
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let (e, n) = PackedNode::decode_entry(b.get(at..).unwrap_or(&[]))?;
        out.push(e);
        at += n;
    }
    Ok((out, at))
}

/// Decodes entries until `b` is used up (at most `max`).
pub fn decode_node_entries_all(b: &[u8], max: usize) -> Result<Vec<NodeEntry>, PacketError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        if out.len() == max {
            return Err(PacketError::TooManyNodes { what: "node list", max, got: max + 1 });
        }
        let (e, n) = PackedNode::decode_entry(&b[at..])?;
        out.push(e);
        at += n;
    }
    Ok(out)
}

/// The 19-byte `IP_Port` of onion layers: family (2 or 10), 16 address bytes (IPv4 in
/// the first 4, rest zero), big-endian port.
pub fn encode_ip_port(addr: &SocketAddr) -> [u8; IP_PORT_SIZE] {
    let mut o = [0u8; IP_PORT_SIZE];
    match addr.ip() {
        IpAddr::V4(a) => {
            o[0] = ip_type::UDP_IPV4;
            o[1..5].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            o[0] = ip_type::UDP_IPV6;
            o[1..17].copy_from_slice(&a.octets());
        }
    }
    o[17..19].copy_from_slice(&addr.port().to_be_bytes());
    o
}

/// Decodes the first 19 bytes of `b` as an onion `IP_Port` (UDP families only).
pub fn decode_ip_port(b: &[u8]) -> Result<SocketAddr, PacketError> {
    need("ip_port", b, IP_PORT_SIZE)?;
    let port = u16::from_be_bytes([b[17], b[18]]);
    let ip = match b[0] {
        ip_type::UDP_IPV4 => IpAddr::V4(Ipv4Addr::new(b[1], b[2], b[3], b[4])),
        ip_type::UDP_IPV6 => {
            let a: [u8; 16] =
                b[1..17].try_into().map_err(|_| PacketError::BadLength { what: "ip_port", got: b.len() })?;
            IpAddr::V6(Ipv6Addr::from(a))
        }
        t => return Err(PacketError::BadIpType(t)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// A generic DHT packet `[kind][sender pk][nonce][box]`, box not yet opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtPacket<'a> {
    pub kind: u8,
    pub sender: PublicKey,
    pub nonce: Nonce,
    pub boxed: &'a [u8],
}

impl<'a> DhtPacket<'a> {
    /// Splits the header; the box must hold at least a MAC.
    pub fn parse(b: &'a [u8]) -> Result<Self, PacketError> {
        if b.len() > MAX_UDP_PACKET_SIZE {
            return Err(PacketError::TooLong { what: "dht packet", max: MAX_UDP_PACKET_SIZE, got: b.len() });
        }
        need("dht packet", b, DHT_HEADER_SIZE + MAC_SIZE)?;
        let sender = pk_at(b, 1).ok_or(PacketError::Empty)?;
        let nonce = nonce_at(b, 1 + PUBLIC_KEY_SIZE).ok_or(PacketError::Empty)?;
        Ok(DhtPacket { kind: b[0], sender, nonce, boxed: &b[DHT_HEADER_SIZE..] })
    }

    /// Opens the box with the key shared with `sender`.
    pub fn open(&self, key: &SharedKey) -> Result<Vec<u8>, PacketError> {
        key.decrypt(&self.nonce, self.boxed).ok_or(PacketError::Decrypt)
    }

    /// Builds `[kind][our pk][nonce][box(key, nonce)(plain)]`.
    pub fn build(kind: u8, our_pk: &PublicKey, key: &SharedKey, nonce: &Nonce, plain: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(DHT_HEADER_SIZE + MAC_SIZE + plain.len());
        v.push(kind);
        v.extend_from_slice(&our_pk.0);
        v.extend_from_slice(nonce);
        v.extend_from_slice(&key.encrypt(nonce, plain));
        v
    }
}

/// Ping plaintext `[kind][u64 id]` (kind 0x00 request, 0x01 response; docs/protocols/tox.md#dht).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingPlain {
    pub response: bool,
    pub id: u64,
}

impl PingPlain {
    pub fn encode(&self) -> [u8; PING_PLAIN_SIZE] {
        let mut o = [0u8; PING_PLAIN_SIZE];
        o[0] = if self.response { kind::PING_RESPONSE } else { kind::PING_REQUEST };
        o[1..].copy_from_slice(&self.id.to_be_bytes());
        o
    }
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() != PING_PLAIN_SIZE {
            return Err(PacketError::BadLength { what: "ping", got: b.len() });
        }
        let response = match b[0] {
            kind::PING_REQUEST => false,
            kind::PING_RESPONSE => true,
            k => return Err(PacketError::WrongKind { want: kind::PING_REQUEST, got: k }),
        };
        Ok(PingPlain { response, id: u64_at(b, 1).unwrap_or(0) })
    }
}

/// Nodes request plaintext `[searched pk][u64 sendback]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodesRequestPlain {
    pub searched: PublicKey,
    pub sendback: u64,
}

impl NodesRequestPlain {
    pub fn encode(&self) -> [u8; NODES_REQUEST_PLAIN_SIZE] {
        let mut o = [0u8; NODES_REQUEST_PLAIN_SIZE];
        o[..32].copy_from_slice(&self.searched.0);
        o[32..].copy_from_slice(&self.sendback.to_be_bytes());
        o
    }
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() != NODES_REQUEST_PLAIN_SIZE {
            return Err(PacketError::BadLength { what: "nodes request", got: b.len() });
        }
        let searched = pk_at(b, 0).ok_or(PacketError::Empty)?;
        Ok(NodesRequestPlain { searched, sendback: u64_at(b, 32).unwrap_or(0) })
    }
}

/// Nodes response plaintext `[u8 n][n packed nodes][u64 sendback]`. TCP entries are
/// decoded and dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodesResponsePlain {
    pub nodes: Vec<PackedNode>,
    pub sendback: u64,
}

impl NodesResponsePlain {
    pub fn encode(&self) -> Vec<u8> {
        let nodes = &self.nodes[..self.nodes.len().min(MAX_SENT_NODES)];
        let mut v = Vec::with_capacity(1 + nodes.len() * PACKED_NODE_IPV6_SIZE + 8);
        v.push(nodes.len() as u8);
        for n in nodes {
            n.encode_into(&mut v);
        }
        v.extend_from_slice(&self.sendback.to_be_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        need("nodes response", b, 1 + 8)?;
        let (entries, used) = decode_node_entries(&b[1..], b[0] as usize, MAX_SENT_NODES)?;
        if 1 + used + 8 != b.len() {
            return Err(PacketError::BadLength { what: "nodes response", got: b.len() });
        }
        let sendback = u64_at(b, 1 + used).ok_or(PacketError::Empty)?;
        Ok(NodesResponsePlain { nodes: entries.into_iter().filter(|e| !e.tcp).map(|e| e.node).collect(), sendback })
    }
}

/// A routed DHT request `[0x20][addressee pk][sender pk][nonce][box]`, box not opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtRequest<'a> {
    pub addressee: PublicKey,
    pub sender: PublicKey,
    pub nonce: Nonce,
    pub boxed: &'a [u8],
}

impl<'a> DhtRequest<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Self, PacketError> {
        if b.len() > MAX_UDP_PACKET_SIZE {
            return Err(PacketError::TooLong { what: "dht request", max: MAX_UDP_PACKET_SIZE, got: b.len() });
        }
        need("dht request", b, DHT_REQUEST_HEADER_SIZE + MAC_SIZE + 1)?;
        if b[0] != kind::DHT_REQUEST {
            return Err(PacketError::WrongKind { want: kind::DHT_REQUEST, got: b[0] });
        }
        Ok(DhtRequest {
            addressee: pk_at(b, 1).ok_or(PacketError::Empty)?,
            sender: pk_at(b, 33).ok_or(PacketError::Empty)?,
            nonce: nonce_at(b, 65).ok_or(PacketError::Empty)?,
            boxed: &b[DHT_REQUEST_HEADER_SIZE..],
        })
    }

    /// Builds the packet; `key` is shared between sender sk and addressee pk.
    pub fn build(addressee: &PublicKey, sender: &PublicKey, key: &SharedKey, nonce: &Nonce, inner: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(DHT_REQUEST_HEADER_SIZE + MAC_SIZE + inner.len());
        v.push(kind::DHT_REQUEST);
        v.extend_from_slice(&addressee.0);
        v.extend_from_slice(&sender.0);
        v.extend_from_slice(nonce);
        v.extend_from_slice(&key.encrypt(nonce, inner));
        v
    }
}

/// The DHT-PK announce payload (id 0x9c): `[0x9c][u64 no_replay][dht pk][≤4 packed nodes]`.
/// Only UDP nodes are kept by `decode` (TCP relay entries are checked and dropped: we
/// run UDP only); `encode` writes the UDP nodes given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtPkAnnounce {
    pub no_replay: u64,
    pub dht_pk: PublicKey,
    pub nodes: Vec<PackedNode>,
}

impl DhtPkAnnounce {
    /// Encodes; at most [`MAX_DHT_PK_NODES`] nodes are written.
    pub fn encode(&self) -> Vec<u8> {
        let nodes = &self.nodes[..self.nodes.len().min(MAX_DHT_PK_NODES)];
        let mut v = Vec::with_capacity(DHT_PK_FIXED_SIZE + nodes.len() * PACKED_NODE_IPV6_SIZE);
        v.push(kind::DHT_PK);
        v.extend_from_slice(&self.no_replay.to_be_bytes());
        v.extend_from_slice(&self.dht_pk.0);
        for n in nodes {
            n.encode_into(&mut v);
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        Self::decode_with_relays(b).map(|(a, _)| a)
    }

    /// The packet and the TCP relays it lists, from one pass over its entries (c-toxcore
    /// puts the relays it is connected to first; docs/protocols/tox.md#tcp-relays): relays
    /// are not DHT nodes, so [`nodes`](Self::nodes) leaves them out.
    pub fn decode_with_relays(b: &[u8]) -> Result<(Self, Vec<PackedNode>), PacketError> {
        need("dht-pk announce", b, DHT_PK_FIXED_SIZE)?;
        if b[0] != kind::DHT_PK {
            return Err(PacketError::WrongKind { want: kind::DHT_PK, got: b[0] });
        }
        let max = DHT_PK_FIXED_SIZE + MAX_DHT_PK_NODES * PACKED_NODE_IPV6_SIZE;
        if b.len() > max {
            return Err(PacketError::TooLong { what: "dht-pk announce", max, got: b.len() });
        }
        let no_replay = u64_at(b, 1).ok_or(PacketError::Empty)?;
        let dht_pk = pk_at(b, 9).ok_or(PacketError::Empty)?;
        let (relays, nodes): (Vec<NodeEntry>, Vec<NodeEntry>) =
            decode_node_entries_all(&b[DHT_PK_FIXED_SIZE..], MAX_DHT_PK_NODES)?.into_iter().partition(|e| e.tcp);
        let nodes = nodes.into_iter().map(|e| e.node).collect();
        Ok((DhtPkAnnounce { no_replay, dht_pk, nodes }, relays.into_iter().map(|e| e.node).collect()))
    }

    /// The TCP relays listed in a DHT-PK packet; empty when it does not decode.
    pub fn decode_relays(b: &[u8]) -> Vec<PackedNode> {
        Self::decode_with_relays(b).map(|(_, r)| r).unwrap_or_default()
    }
}

/// XOR distance order: is `a` closer to `target` than `b`? (keys as big-endian integers)
pub fn closer(target: &PublicKey, a: &PublicKey, b: &PublicKey) -> std::cmp::Ordering {
    for i in 0..PUBLIC_KEY_SIZE {
        let da = a.0[i] ^ target.0[i];
        let db = b.0[i] ^ target.0[i];
        if da != db {
            return da.cmp(&db);
        }
    }
    std::cmp::Ordering::Equal
}

/// Bootstrap info (0xf0), answered by bootstrap nodes only (tox-bootstrapd's
/// `enable_motd`): a request is exactly [`BootstrapInfo::REQUEST_SIZE`] bytes starting
/// with 0xf0 (the rest is ignored); the reply is `[0xf0][version u32 BE][MOTD]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapInfo {
    pub version: u32,
    pub motd: Vec<u8>,
}

impl BootstrapInfo {
    /// Size of a request (c-toxcore's INFO_REQUEST_PACKET_LENGTH).
    pub const REQUEST_SIZE: usize = 78;
    /// Longest MOTD (c-toxcore's MAX_MOTD_LENGTH).
    pub const MAX_MOTD: usize = 256;

    pub fn is_request(data: &[u8]) -> bool {
        data.len() == Self::REQUEST_SIZE && data.first() == Some(&kind::BOOTSTRAP_INFO)
    }

    /// A request, padded as tox-bootstrapd's own info script pads it.
    pub fn request() -> Vec<u8> {
        let mut v = vec![b'0'; Self::REQUEST_SIZE];
        v[0] = kind::BOOTSTRAP_INFO;
        v
    }

    /// The reply; a longer MOTD is cut at [`Self::MAX_MOTD`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let motd = &self.motd[..self.motd.len().min(Self::MAX_MOTD)];
        let mut v = Vec::with_capacity(5 + motd.len());
        v.push(kind::BOOTSTRAP_INFO);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(motd);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        need("bootstrap info", b, 5)?;
        if b[0] != kind::BOOTSTRAP_INFO {
            return Err(PacketError::WrongKind { want: kind::BOOTSTRAP_INFO, got: b[0] });
        }
        let motd = &b[5..];
        if motd.len() > Self::MAX_MOTD {
            return Err(PacketError::TooLong { what: "bootstrap info MOTD", max: Self::MAX_MOTD, got: motd.len() });
        }
        let version = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        Ok(BootstrapInfo { version, motd: motd.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPair, SecretKey};
    use proptest::prelude::*;

    fn pk(b: u8) -> PublicKey {
        PublicKey([b; 32])
    }

    #[test]
    fn packed_node_golden() {
        let n = PackedNode::new("127.0.0.1:33445".parse().unwrap(), pk(0xab));
        let e = n.encode();
        assert_eq!(e.len(), PACKED_NODE_IPV4_SIZE);
        assert_eq!(&e[..7], &[2, 127, 0, 0, 1, 0x82, 0xa5]);
        assert_eq!(&e[7..], &[0xab; 32]);
        let n6 = PackedNode::new("[::1]:1".parse().unwrap(), pk(1));
        let e6 = n6.encode();
        assert_eq!(e6.len(), PACKED_NODE_IPV6_SIZE);
        assert_eq!(e6[0], 10);
        assert_eq!(e6[16], 1);
        assert_eq!(&e6[17..19], &[0, 1]);
        let mut tcp = e.clone();
        tcp[0] = 130;
        let (t, used) = PackedNode::decode_entry(&tcp).unwrap();
        assert!(t.tcp);
        assert_eq!((t.node, used), (n, 39));
        assert_eq!(PackedNode::decode_entry(&[7; 39]), Err(PacketError::BadIpType(7)));
        assert!(PackedNode::decode_entry(&e[..38]).is_err());
        assert!(PackedNode::decode_entry(&[]).is_err());
    }

    #[test]
    fn ip_port_golden() {
        let a: SocketAddr = "10.1.2.3:33445".parse().unwrap();
        let e = encode_ip_port(&a);
        assert_eq!(e, [2, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x82, 0xa5]);
        assert_eq!(decode_ip_port(&e), Ok(a));
        assert_eq!(decode_ip_port(&e[..18]).unwrap_err(), PacketError::TooShort { what: "ip_port", need: 19, got: 18 });
        let mut bad = e;
        bad[0] = 130;
        assert_eq!(decode_ip_port(&bad), Err(PacketError::BadIpType(130)));
    }

    #[test]
    fn dht_packet_sizes_match_c_toxcore() {
        // docs/protocols/tox.md#packet-kinds: ping 82 bytes, nodes request 113, nodes response 82 + 39·n.
        let a = KeyPair::from_secret(SecretKey([1; 32]));
        let b = KeyPair::from_secret(SecretKey([2; 32]));
        let k = SharedKey::precompute(&b.pk, &a.sk);
        let n = [7u8; 24];
        let ping = DhtPacket::build(0, &a.pk, &k, &n, &PingPlain { response: false, id: 5 }.encode());
        assert_eq!(ping.len(), 82);
        let req = DhtPacket::build(2, &a.pk, &k, &n, &NodesRequestPlain { searched: pk(3), sendback: 9 }.encode());
        assert_eq!(req.len(), 113);
        let nodes: Vec<_> = (0..3).map(|i| PackedNode::new(SocketAddr::from(([127, 0, 0, i], 1000)), pk(i))).collect();
        let resp = NodesResponsePlain { nodes: nodes.clone(), sendback: 9 };
        let pkt = DhtPacket::build(4, &a.pk, &k, &n, &resp.encode());
        assert_eq!(pkt.len(), 82 + 39 * 3);
        // B opens it.
        let p = DhtPacket::parse(&pkt).unwrap();
        assert_eq!(p.sender, a.pk);
        let plain = p.open(&SharedKey::precompute(&a.pk, &b.sk)).unwrap();
        assert_eq!(NodesResponsePlain::decode(&plain).unwrap(), resp);
        let mut bad = pkt.clone();
        bad[70] ^= 1;
        assert_eq!(DhtPacket::parse(&bad).unwrap().open(&k), Err(PacketError::Decrypt));
        assert!(DhtPacket::parse(&pkt[..72]).is_err());
    }

    #[test]
    fn nodes_response_limits() {
        let mut b = vec![5u8];
        b.extend_from_slice(&[0; 8]);
        assert!(matches!(NodesResponsePlain::decode(&b), Err(PacketError::TooManyNodes { .. })));
        let ok = NodesResponsePlain { nodes: vec![], sendback: 1 }.encode();
        assert_eq!(ok.len(), 9);
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(NodesResponsePlain::decode(&trailing).is_err());
        assert!(PingPlain::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(PingPlain::decode(&[0; 8]).is_err());
    }

    #[test]
    fn dht_pk_relays_are_the_tcp_entries() {
        let udp = PackedNode::new("127.0.0.1:2".parse().unwrap(), pk(0x22));
        let tcp = PackedNode::new("127.0.0.1:3".parse().unwrap(), pk(0x33));
        let mut e = DhtPkAnnounce { no_replay: 1, dht_pk: pk(0x11), nodes: vec![] }.encode();
        encode_node_entry(&NodeEntry { tcp: true, node: tcp }, &mut e);
        encode_node_entry(&NodeEntry { tcp: false, node: udp }, &mut e);
        assert_eq!(e[41], ip_type::TCP_IPV4, "as c-toxcore writes a relay");
        assert_eq!(DhtPkAnnounce::decode(&e).unwrap().nodes, vec![udp], "relays are not DHT nodes");
        assert_eq!(DhtPkAnnounce::decode_relays(&e), vec![tcp]);
        assert!(DhtPkAnnounce::decode_relays(&e[..50]).is_empty(), "a truncated packet names none");
        // One pass gives both: the announce (UDP nodes only) and the relays.
        let want = DhtPkAnnounce { no_replay: 1, dht_pk: pk(0x11), nodes: vec![udp] };
        assert_eq!(DhtPkAnnounce::decode_with_relays(&e), Ok((want, vec![tcp])));
        assert!(DhtPkAnnounce::decode_with_relays(&e[..50]).is_err());
    }

    #[test]
    fn dht_pk_golden() {
        let a = DhtPkAnnounce {
            no_replay: 0x0102030405060708,
            dht_pk: pk(0x11),
            nodes: vec![PackedNode::new("127.0.0.1:2".parse().unwrap(), pk(0x22))],
        };
        let e = a.encode();
        assert_eq!(e[0], 0x9c);
        assert_eq!(&e[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(e.len(), 41 + 39);
        assert_eq!(DhtPkAnnounce::decode(&e), Ok(a));
        assert!(DhtPkAnnounce::decode(&e[..40]).is_err());
        assert!(DhtPkAnnounce::decode(&e[..50]).is_err());
        let mut five = e[..41].to_vec();
        for _ in 0..5 {
            five.extend_from_slice(&e[41..]);
        }
        assert!(DhtPkAnnounce::decode(&five).is_err());
    }

    #[test]
    fn xor_order() {
        let t = pk(0);
        let mut a = pk(0);
        a.0[31] = 1;
        let mut b = pk(0);
        b.0[0] = 1;
        assert_eq!(closer(&t, &a, &b), std::cmp::Ordering::Less);
        assert_eq!(closer(&t, &a, &a), std::cmp::Ordering::Equal);
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((Ipv6Addr::from(ip), p))),
        ]
    }
    fn arb_node() -> impl Strategy<Value = PackedNode> {
        (arb_addr(), any::<[u8; 32]>()).prop_map(|(a, k)| PackedNode::new(a, PublicKey(k)))
    }

    proptest! {
        #[test]
        fn node_round_trip(n in arb_node(), tcp in any::<bool>()) {
            let mut v = Vec::new();
            encode_node_entry(&NodeEntry { tcp, node: n }, &mut v);
            prop_assert_eq!(v.len(), n.size());
            prop_assert_eq!(PackedNode::decode_entry(&v), Ok((NodeEntry { tcp, node: n }, v.len())));
        }

        #[test]
        fn ip_port_round_trip(a in arb_addr()) {
            prop_assert_eq!(decode_ip_port(&encode_ip_port(&a)), Ok(a));
        }

        #[test]
        fn nodes_response_round_trip(nodes in proptest::collection::vec(arb_node(), 0..=4), sb in any::<u64>()) {
            let r = NodesResponsePlain { nodes, sendback: sb };
            prop_assert_eq!(NodesResponsePlain::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn dht_pk_round_trip(nodes in proptest::collection::vec(arb_node(), 0..=4), nr in any::<u64>(), k in any::<[u8; 32]>()) {
            let a = DhtPkAnnounce { no_replay: nr, dht_pk: PublicKey(k), nodes };
            prop_assert_eq!(DhtPkAnnounce::decode(&a.encode()), Ok(a));
        }

        #[test]
        fn plain_round_trips(id in any::<u64>(), r in any::<bool>(), k in any::<[u8; 32]>()) {
            let p = PingPlain { response: r, id };
            prop_assert_eq!(PingPlain::decode(&p.encode()), Ok(p));
            let q = NodesRequestPlain { searched: PublicKey(k), sendback: id };
            prop_assert_eq!(NodesRequestPlain::decode(&q.encode()), Ok(q));
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PackedNode::decode_entry(&b);
            let _ = decode_ip_port(&b);
            let _ = DhtPacket::parse(&b);
            let _ = DhtRequest::parse(&b);
            let _ = NodesResponsePlain::decode(&b);
            let _ = DhtPkAnnounce::decode(&b);
            let _ = PingPlain::decode(&b);
        }
    }

    #[test]
    fn bootstrap_info_frames() {
        assert!(BootstrapInfo::is_request(&BootstrapInfo::request()));
        assert!(!BootstrapInfo::is_request(&BootstrapInfo::request()[..77]));
        assert!(!BootstrapInfo::is_request(&[0u8; 78]));
        let i = BootstrapInfo { version: 2_000_000, motd: b"hello".to_vec() };
        let b = i.encode();
        assert_eq!(b, [&[0xf0, 0x00, 0x1e, 0x84, 0x80][..], b"hello"].concat());
        assert_eq!(BootstrapInfo::decode(&b), Ok(i));
        assert_eq!(BootstrapInfo { version: 1, motd: vec![b'x'; 300] }.encode().len(), 5 + 256);
        assert!(BootstrapInfo::decode(&[0xf0, 0, 0]).is_err());
        assert!(BootstrapInfo::decode(&[0xf1, 0, 0, 0, 0]).is_err());
        assert!(BootstrapInfo::decode(&[0xf0; 5 + 257]).is_err());
    }
}
