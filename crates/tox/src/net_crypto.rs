//! net_crypto: cookie request/response, handshake, encrypted data packets with packet
//! numbers, lost-packet requests, lossless/lossy data and kill — as a sans-IO machine
//! (docs/protocols/tox.md#net-crypto, #nonces).
//!
//! One `NetCrypto` serves every crypto connection of a Tox instance, keyed by the peer's
//! long-term public key. It answers every cookie request (c-toxcore does too), accepts
//! handshakes only from peers `allow`ed by the layer above (friends), and runs one
//! connection per peer through COOKIE_REQUESTING → HANDSHAKE_SENT → NOT_CONFIRMED →
//! ESTABLISHED.
//!
//! Nonces follow c-toxcore, not the spec: each side puts its *own* send nonce into its
//! handshake, encrypts its data with it (+1 per packet), and decrypts the peer's data
//! with the nonce from the peer's handshake.

use crate::crypto::{
    increment_nonce, increment_nonce_by, random_nonce, random_u64, rng_from_seed, sha512, KeyPair, Nonce, PublicKey,
    RngSeed, SharedKey, ToxRng, MAC_SIZE, NONCE_SIZE, PUBLIC_KEY_SIZE,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const PACKET_COOKIE_REQUEST: u8 = 0x18;
pub const PACKET_COOKIE_RESPONSE: u8 = 0x19;
pub const PACKET_HANDSHAKE: u8 = 0x1a;
pub const PACKET_DATA: u8 = 0x1b;

/// Plain cookie: u64 time ‖ requester long-term pk ‖ requester DHT pk.
const COOKIE_PLAIN_SIZE: usize = 8 + 2 * PUBLIC_KEY_SIZE;
/// nonce ‖ secretbox(cookie plain).
pub const COOKIE_SIZE: usize = NONCE_SIZE + MAC_SIZE + COOKIE_PLAIN_SIZE;
/// Cookie request plaintext: sender long-term pk ‖ 32 zero bytes ‖ u64 echo_id.
const COOKIE_REQUEST_PLAIN_SIZE: usize = 2 * PUBLIC_KEY_SIZE + 8;
pub const COOKIE_REQUEST_SIZE: usize = 1 + PUBLIC_KEY_SIZE + NONCE_SIZE + MAC_SIZE + COOKIE_REQUEST_PLAIN_SIZE;
pub const COOKIE_RESPONSE_SIZE: usize = 1 + NONCE_SIZE + MAC_SIZE + COOKIE_SIZE + 8;
/// Handshake plaintext: base nonce ‖ session pk ‖ sha512(cookie) ‖ other cookie.
const HANDSHAKE_PLAIN_SIZE: usize = NONCE_SIZE + PUBLIC_KEY_SIZE + 64 + COOKIE_SIZE;
pub const HANDSHAKE_SIZE: usize = 1 + COOKIE_SIZE + NONCE_SIZE + MAC_SIZE + HANDSHAKE_PLAIN_SIZE;
/// Largest crypto packet c-toxcore sends or accepts.
pub const MAX_CRYPTO_PACKET_SIZE: usize = 1400;
/// [0x1b][u16 nonce tail] + MAC + u32 buffer_start + u32 packet_number.
pub const DATA_OVERHEAD: usize = 1 + 2 + MAC_SIZE + 8;
/// Most bytes of `[id][data]` (plus padding) in one data packet (c-toxcore: 1373).
pub const MAX_CRYPTO_DATA_SIZE: usize = MAX_CRYPTO_PACKET_SIZE - DATA_OVERHEAD;
/// Padding makes `len(padding ‖ id ‖ data) ≡ MAX_CRYPTO_DATA_SIZE (mod 8)`.
const PADDING_MODULUS: usize = 8;
/// When a received nonce is this far (×2) ahead of the saved one, the saved one advances.
pub const DATA_NUM_THRESHOLD: u32 = 21845;

/// Cookies older than this are refused.
pub const COOKIE_TIMEOUT: Duration = Duration::from_secs(15);
/// Cookie requests and handshakes are re-sent at this interval…
pub const SEND_PACKET_INTERVAL: Duration = Duration::from_secs(1);
/// …this many times, then the attempt is dropped.
pub const MAX_SEND_TRIES: u32 = 8;
/// A packet request (data id 1) is sent at least this often while connected; it is what
/// confirms the connection on the other side.
pub const REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// Sooner packet requests when a gap is seen, at most this often.
pub const GAP_REQUEST_INTERVAL: Duration = Duration::from_millis(100);
/// A requested packet is re-sent at most this often.
pub const RESEND_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Lossless packets in flight / held for reordering per connection (c-toxcore: 32768).
pub const PACKET_BUFFER_SIZE: u32 = 32768;

/// Congestion window of a new connection, in lossless packets in flight
/// (docs/protocols/tox.md#congestion-control).
pub const INITIAL_WINDOW: u32 = 32;
/// The window never shrinks below this many packets.
pub const MIN_WINDOW: u32 = 8;
/// Packets queued beyond the window before [`NetCrypto::send_room`] says "full": what a
/// bulk sender (a file transfer) may keep waiting so the window never runs dry.
pub const QUEUE_AHEAD: u32 = 64;
/// While lossless data arrives, a packet request (our acknowledgement) goes out after this
/// many packets…
pub const ACK_EVERY_PACKETS: u32 = 32;
/// …or this long after the first unacknowledged one, whichever comes first.
pub const ACK_DELAY: Duration = Duration::from_millis(10);
/// No acknowledgement progress for this long with packets in flight: the oldest unacked
/// packets are sent again and the window halves (tail losses that no request names).
pub const STALL_RESEND_TIMEOUT: Duration = Duration::from_millis(1000);
/// At most this many packets are re-sent per stall.
pub const STALL_RESEND_MAX: usize = 16;

pub const ID_PADDING: u8 = 0;
pub const ID_REQUEST: u8 = 1;
pub const ID_KILL: u8 = 2;
/// Lossless data ids (c-toxcore's range ends at 191; 255 is never sent).
pub const LOSSLESS_IDS: std::ops::RangeInclusive<u8> = 16..=191;
pub const LOSSY_IDS: std::ops::RangeInclusive<u8> = 192..=254;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetCryptoError {
    #[error("net_crypto packet kind {kind:#04x} has {len} bytes, expected {want}")]
    Size { kind: u8, len: usize, want: &'static str },
    #[error("not a net_crypto packet kind: {0:#04x}")]
    Kind(u8),
    #[error("decryption failed")]
    Decrypt,
    #[error("cookie expired or not ours")]
    Cookie,
    #[error("handshake cookie hash mismatch")]
    CookieHash,
    #[error("no connection for this packet")]
    NoConnection,
    #[error("handshake from a peer that is not a friend")]
    NotFriend,
    #[error("packet not expected in connection state {0:?}")]
    State(ConnState),
    #[error("malformed data packet: {0}")]
    Malformed(&'static str),
    #[error("send buffer full")]
    BufferFull,
    #[error("data id {0} not allowed here")]
    BadId(u8),
    #[error("data too long ({0} bytes, limit {MAX_CRYPTO_DATA_SIZE})")]
    TooLong(usize),
    #[error("connection not established")]
    NotConnected,
}

/// c-toxcore's connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Cookie requests being sent.
    CookieRequesting,
    /// Our handshake sent (we got a cookie), waiting for the peer's.
    HandshakeSent,
    /// Handshakes exchanged ("accepted"), no data packet from the peer yet.
    NotConfirmed,
    /// A valid data packet arrived ("confirmed").
    Established,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent a kill packet.
    Killed,
    /// We called `kill`.
    Local,
    /// Cookie requests or handshakes went unanswered `MAX_SEND_TRIES` times in `state`.
    Timeout(ConnState),
    /// The peer handshook with a different DHT key (it restarted); the old connection is
    /// dropped and the new one takes over.
    Replaced,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCryptoEvent {
    /// The connection to `peer` entered `state`.
    State {
        peer: PublicKey,
        state: ConnState,
    },
    /// A valid handshake from `peer` told us its DHT key and address.
    PeerDhtKey {
        peer: PublicKey,
        dht_pk: PublicKey,
        addr: SocketAddr,
    },
    /// A lossless packet `[id][data]`, in order.
    Lossless {
        peer: PublicKey,
        data: Vec<u8>,
    },
    /// A lossy packet `[id][data]` (id 192–254).
    Lossy {
        peer: PublicKey,
        data: Vec<u8>,
    },
    /// The peer has received all our lossless packets numbered below `buffer_start`.
    Delivered {
        peer: PublicKey,
        buffer_start: u32,
    },
    Closed {
        peer: PublicKey,
        reason: CloseReason,
    },
}

struct SentPacket {
    data: Vec<u8>,
    last_sent: Option<Instant>,
    requested: bool,
}

/// Lossless packets we sent and the peer has not acknowledged: index 0 is `start`.
struct SendBuffer {
    start: u32,
    packets: VecDeque<Option<SentPacket>>,
    /// One past the highest number transmitted at least once; packets from here to `end()`
    /// wait for room in the congestion window.
    sent_end: u32,
    /// Congestion window in packets, AIMD (docs/protocols/tox.md#congestion-control).
    cwnd: f64,
    ssthresh: f64,
    /// A loss of a packet numbered below this belongs to the loss event already counted.
    recovery_end: u32,
    /// Last time `start` advanced (or the first packet went out after an idle spell).
    last_progress: Instant,
}
impl SendBuffer {
    fn end(&self) -> u32 {
        self.start.wrapping_add(self.packets.len() as u32)
    }
    /// Transmitted packets not yet acknowledged by `buffer_start`.
    fn in_flight(&self) -> u32 {
        self.sent_end.wrapping_sub(self.start)
    }
    fn window(&self) -> u32 {
        (self.cwnd as u32).clamp(MIN_WINDOW, PACKET_BUFFER_SIZE)
    }
    /// `k` packets newly acknowledged: slow start below `ssthresh`, then +1 per window.
    fn on_ack(&mut self, k: u32, now: Instant) {
        self.last_progress = now;
        if self.cwnd < self.ssthresh {
            self.cwnd += k as f64;
        } else {
            self.cwnd += k as f64 / self.cwnd.max(1.0);
        }
        self.cwnd = self.cwnd.min(PACKET_BUFFER_SIZE as f64);
    }
    /// A transmitted packet `num` was lost: halve the window once per loss event (one
    /// window's worth of packets).
    fn on_loss(&mut self, num: u32) {
        let d = num.wrapping_sub(self.recovery_end);
        if d < u32::MAX / 2 {
            self.ssthresh = (self.cwnd / 2.0).max(MIN_WINDOW as f64);
            self.cwnd = self.ssthresh;
            self.recovery_end = self.sent_end;
        }
    }
}

/// Lossless packets received out of order: index 0 is `start` (next expected).
struct RecvBuffer {
    start: u32,
    /// One past the highest packet number the peer is known to have sent.
    end: u32,
    packets: VecDeque<Option<Vec<u8>>>,
    /// Lossless packets taken since our last packet request (acknowledgement).
    since_request: u32,
}

struct Conn {
    peer: PublicKey,
    peer_dht: PublicKey,
    addr: SocketAddr,
    state: ConnState,
    session: KeyPair,
    /// Our own send nonce (goes into our handshake).
    sent_nonce: Nonce,
    /// The peer's base nonce from its handshake and the session key.
    recv_nonce: Nonce,
    shared: Option<SharedKey>,
    echo_id: [u8; 8],
    /// Cookie request or handshake being re-sent.
    temp_packet: Option<Vec<u8>>,
    temp_tries: u32,
    temp_last: Instant,
    send: SendBuffer,
    recv: RecvBuffer,
    next_request: Instant,
    last_request: Option<Instant>,
}

impl Conn {
    /// Session key, first nonce and echo id from the machine's generator `rng`.
    fn new(
        peer: PublicKey,
        peer_dht: PublicKey,
        addr: SocketAddr,
        state: ConnState,
        now: Instant,
        rng: &mut ToxRng,
    ) -> Self {
        Conn {
            peer,
            peer_dht,
            addr,
            state,
            session: KeyPair::generate(rng),
            sent_nonce: random_nonce(rng),
            recv_nonce: [0; NONCE_SIZE],
            shared: None,
            echo_id: random_u64(rng).to_be_bytes(),
            temp_packet: None,
            temp_tries: 0,
            temp_last: now,
            send: SendBuffer {
                start: 0,
                packets: VecDeque::new(),
                sent_end: 0,
                cwnd: INITIAL_WINDOW as f64,
                ssthresh: PACKET_BUFFER_SIZE as f64,
                recovery_end: 0,
                last_progress: now,
            },
            recv: RecvBuffer { start: 0, end: 0, packets: VecDeque::new(), since_request: 0 },
            next_request: now,
            last_request: None,
        }
    }
}

/// Bytes after the padding, or `None` if the data is all padding.
fn strip_padding(b: &[u8]) -> Option<&[u8]> {
    let first = b.iter().position(|&x| x != ID_PADDING)?;
    b.get(first..)
}

/// Splits a decrypted data packet into `(buffer_start, packet_number, [id][data])`,
/// skipping the zero padding.
pub fn parse_data_plain(plain: &[u8]) -> Result<(u32, u32, &[u8]), NetCryptoError> {
    let hdr: [u8; 8] =
        plain.get(..8).and_then(|h| h.try_into().ok()).ok_or(NetCryptoError::Malformed("short data header"))?;
    let buffer_start = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let num = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let body = strip_padding(&plain[8..]).ok_or(NetCryptoError::Malformed("only padding"))?;
    Ok((buffer_start, num, body))
}

/// Encodes a packet request for the missing numbers in `[start, end)`, c-toxcore style:
/// one byte per missing packet = distance from the previous missing one (starting at
/// `start − 1`); after 255 without a hit a 0 byte is written and counting restarts at 1.
pub fn encode_request(start: u32, end: u32, is_missing: impl Fn(u32) -> bool) -> Vec<u8> {
    let mut out = vec![ID_REQUEST];
    let mut n: u32 = 1;
    let mut i = start;
    while i != end && out.len() < MAX_CRYPTO_DATA_SIZE {
        if is_missing(i) {
            out.push(n as u8);
            n = 0;
        }
        if n == 255 {
            n = 1;
            out.push(0);
        } else {
            n += 1;
        }
        i = i.wrapping_add(1);
    }
    out
}

/// Decodes a packet request against a send window `[start, end)`: returns the requested
/// numbers and the numbers implicitly acknowledged (between requested ones).
pub fn decode_request(body: &[u8], start: u32, end: u32) -> Result<(Vec<u32>, Vec<u32>), NetCryptoError> {
    let mut requested = Vec::new();
    let mut acked = Vec::new();
    let mut data = body;
    let mut n: u32 = 1;
    let mut i = start;
    while i != end {
        let Some(&b) = data.first() else { break };
        if n == b as u32 {
            requested.push(i);
            data = &data[1..];
            n = 0;
        } else {
            acked.push(i);
        }
        if n == 255 {
            n = 1;
            match data.first() {
                Some(0) => data = &data[1..],
                Some(_) => return Err(NetCryptoError::Malformed("packet request: missing 0 after 255")),
                None => break,
            }
        } else {
            n += 1;
        }
        i = i.wrapping_add(1);
    }
    // Trailing acknowledgements past the last requested packet are not implied.
    if let Some(&last) = requested.last() {
        acked.retain(|&a| a.wrapping_sub(start) < last.wrapping_sub(start));
    } else {
        acked.clear();
    }
    Ok((requested, acked))
}

/// Decrypts a data packet with the peer's saved base nonce, advancing it by
/// `DATA_NUM_THRESHOLD` when the packet is far enough ahead (c-toxcore's rule).
fn open_data(shared: &SharedKey, recv_nonce: &mut Nonce, pkt: &[u8]) -> Option<Vec<u8>> {
    let cur = u16::from_be_bytes([recv_nonce[NONCE_SIZE - 2], recv_nonce[NONCE_SIZE - 1]]);
    let num = u16::from_be_bytes([*pkt.get(1)?, *pkt.get(2)?]);
    let diff = num.wrapping_sub(cur);
    let mut nonce = *recv_nonce;
    increment_nonce_by(&mut nonce, diff as u32);
    let plain = shared.decrypt(&nonce, pkt.get(3..)?)?;
    if diff as u32 > 2 * DATA_NUM_THRESHOLD {
        increment_nonce_by(recv_nonce, DATA_NUM_THRESHOLD);
    }
    Some(plain)
}

pub struct NetCrypto {
    real: KeyPair,
    dht: KeyPair,
    cookie_key: SharedKey,
    epoch: Instant,
    allowed: BTreeSet<PublicKey>,
    conns: BTreeMap<PublicKey, Conn>,
    by_addr: BTreeMap<SocketAddr, PublicKey>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<NetCryptoEvent>,
    /// Cookie key, session keys, nonces and echo ids come from here.
    rng: ToxRng,
}

impl NetCrypto {
    /// `real` = our long-term key pair; `dht` = this run's DHT key pair (cookie requests
    /// are boxed between DHT keys); `rng_seed` seeds every random value (see [`ToxRng`]).
    pub fn new(real: KeyPair, dht: KeyPair, rng_seed: RngSeed, now: Instant) -> Self {
        let mut rng = rng_from_seed(rng_seed);
        NetCrypto {
            real,
            dht,
            cookie_key: SharedKey::random(&mut rng),
            rng,
            epoch: now,
            allowed: BTreeSet::new(),
            conns: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn real_pk(&self) -> PublicKey {
        self.real.pk
    }
    pub fn dht_pk(&self) -> PublicKey {
        self.dht.pk
    }

    /// Accept handshakes from this long-term key (a friend).
    pub fn allow(&mut self, peer: PublicKey) {
        self.allowed.insert(peer);
    }
    pub fn disallow(&mut self, peer: &PublicKey) {
        self.allowed.remove(peer);
    }

    pub fn state(&self, peer: &PublicKey) -> Option<ConnState> {
        self.conns.get(peer).map(|c| c.state)
    }
    pub fn peer_addr(&self, peer: &PublicKey) -> Option<SocketAddr> {
        self.conns.get(peer).map(|c| c.addr)
    }
    pub fn peer_dht_pk(&self, peer: &PublicKey) -> Option<PublicKey> {
        self.conns.get(peer).map(|c| c.peer_dht)
    }
    /// Number the next lossless packet to `peer` will carry.
    pub fn next_packet_number(&self, peer: &PublicKey) -> Option<u32> {
        self.conns.get(peer).map(|c| c.send.end())
    }

    /// How many more lossless packets a bulk sender should queue to `peer` now: the
    /// congestion window plus [`QUEUE_AHEAD`], less what is queued and unacknowledged
    /// (0 when not connected). Chat packets may still be queued past it.
    pub fn send_room(&self, peer: &PublicKey) -> u32 {
        let Some(c) = self.conns.get(peer) else { return 0 };
        if !matches!(c.state, ConnState::NotConfirmed | ConnState::Established) {
            return 0;
        }
        let cap = (c.send.window() + QUEUE_AHEAD).min(PACKET_BUFFER_SIZE);
        cap.saturating_sub(c.send.packets.len() as u32)
    }

    /// The congestion window to `peer`, in packets.
    pub fn window(&self, peer: &PublicKey) -> Option<u32> {
        self.conns.get(peer).map(|c| c.send.window())
    }

    fn cookie_time(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// `nonce`: fresh, from the machine's generator.
    fn make_cookie(&self, now: Instant, real: &PublicKey, dht: &PublicKey, nonce: &Nonce) -> [u8; COOKIE_SIZE] {
        let mut plain = [0u8; COOKIE_PLAIN_SIZE];
        plain[..8].copy_from_slice(&self.cookie_time(now).to_be_bytes());
        plain[8..40].copy_from_slice(&real.0);
        plain[40..72].copy_from_slice(&dht.0);
        let nonce = *nonce;
        let mut out = [0u8; COOKIE_SIZE];
        out[..NONCE_SIZE].copy_from_slice(&nonce);
        out[NONCE_SIZE..].copy_from_slice(&self.cookie_key.encrypt(&nonce, &plain));
        out
    }

    /// Opens one of our cookies: (requester long-term pk, requester DHT pk).
    fn open_cookie(&self, now: Instant, cookie: &[u8]) -> Option<(PublicKey, PublicKey)> {
        let nonce: Nonce = cookie.get(..NONCE_SIZE)?.try_into().ok()?;
        let plain = self.cookie_key.decrypt(&nonce, cookie.get(NONCE_SIZE..)?)?;
        let time = u64::from_be_bytes(plain.get(..8)?.try_into().ok()?);
        let now_t = self.cookie_time(now);
        if time > now_t || now_t - time > COOKIE_TIMEOUT.as_millis() as u64 {
            return None;
        }
        Some((PublicKey(plain.get(8..40)?.try_into().ok()?), PublicKey(plain.get(40..72)?.try_into().ok()?)))
    }

    /// Starts (or re-targets) a connection to `peer` at `addr` whose DHT key is `peer_dht`.
    /// Does nothing if a connection past the cookie stage already exists.
    pub fn connect(&mut self, now: Instant, peer: PublicKey, peer_dht: PublicKey, addr: SocketAddr) {
        self.allowed.insert(peer);
        if let Some(c) = self.conns.get(&peer) {
            if c.state != ConnState::CookieRequesting && c.peer_dht == peer_dht {
                return;
            }
            if c.state == ConnState::CookieRequesting && c.peer_dht == peer_dht && c.addr == addr {
                return;
            }
            if c.state == ConnState::CookieRequesting {
                self.remove_conn(&peer);
            } else {
                self.close(&peer, CloseReason::Replaced);
            }
        }
        let mut c = Conn::new(peer, peer_dht, addr, ConnState::CookieRequesting, now, &mut self.rng);
        // Cookie request: [0x18][our DHT pk][nonce][box(our DHT sk, peer DHT pk)(real pk ‖ 0³² ‖ echo)]
        let mut plain = [0u8; COOKIE_REQUEST_PLAIN_SIZE];
        plain[..32].copy_from_slice(&self.real.pk.0);
        plain[64..].copy_from_slice(&c.echo_id);
        let nonce = random_nonce(&mut self.rng);
        let mut pkt = Vec::with_capacity(COOKIE_REQUEST_SIZE);
        pkt.push(PACKET_COOKIE_REQUEST);
        pkt.extend_from_slice(&self.dht.pk.0);
        pkt.extend_from_slice(&nonce);
        pkt.extend_from_slice(&SharedKey::precompute(&peer_dht, &self.dht.sk).encrypt(&nonce, &plain));
        c.temp_packet = Some(pkt.clone());
        c.temp_tries = 1;
        c.temp_last = now;
        self.transmits.push_back((addr, pkt));
        self.by_addr.insert(addr, peer);
        self.conns.insert(peer, c);
        self.events.push_back(NetCryptoEvent::State { peer, state: ConnState::CookieRequesting });
    }

    /// Sends a kill packet (if the connection has keys) and drops the connection.
    pub fn kill(&mut self, peer: &PublicKey) {
        if let Some(mut c) = self.conns.remove(peer) {
            if c.shared.is_some() && matches!(c.state, ConnState::NotConfirmed | ConnState::Established) {
                let num = c.send.sent_end;
                let pkt = self.build_data(&mut c, num, &[ID_KILL]);
                self.transmits.push_back((c.addr, pkt));
            }
            if self.by_addr.get(&c.addr) == Some(peer) {
                self.by_addr.remove(&c.addr);
            }
            self.events.push_back(NetCryptoEvent::Closed { peer: *peer, reason: CloseReason::Local });
        }
    }

    fn remove_conn(&mut self, peer: &PublicKey) -> Option<Conn> {
        let c = self.conns.remove(peer)?;
        if self.by_addr.get(&c.addr) == Some(peer) {
            self.by_addr.remove(&c.addr);
        }
        Some(c)
    }

    fn close(&mut self, peer: &PublicKey, reason: CloseReason) {
        if self.remove_conn(peer).is_some() {
            self.events.push_back(NetCryptoEvent::Closed { peer: *peer, reason });
        }
    }

    /// Queues a lossless packet `[id][data]` (id 16–191). Returns its packet number.
    pub fn send_lossless(&mut self, now: Instant, peer: &PublicKey, data: &[u8]) -> Result<u32, NetCryptoError> {
        let id = *data.first().ok_or(NetCryptoError::Malformed("empty packet"))?;
        if !LOSSLESS_IDS.contains(&id) {
            return Err(NetCryptoError::BadId(id));
        }
        if data.len() > MAX_CRYPTO_DATA_SIZE {
            return Err(NetCryptoError::TooLong(data.len()));
        }
        let mut c = self.conns.remove(peer).ok_or(NetCryptoError::NotConnected)?;
        let res = if !matches!(c.state, ConnState::NotConfirmed | ConnState::Established) {
            Err(NetCryptoError::NotConnected)
        } else if c.send.packets.len() as u32 >= PACKET_BUFFER_SIZE {
            Err(NetCryptoError::BufferFull)
        } else {
            let num = c.send.end();
            if c.send.in_flight() == 0 {
                c.send.last_progress = now; // the stall clock starts with the first packet in flight
            }
            c.send.packets.push_back(Some(SentPacket { data: data.to_vec(), last_sent: None, requested: false }));
            self.flush_window(now, &mut c);
            Ok(num)
        };
        self.conns.insert(*peer, c);
        res
    }

    /// Sends a lossy packet `[id][data]` (id 192–254) once.
    pub fn send_lossy(&mut self, peer: &PublicKey, data: &[u8]) -> Result<(), NetCryptoError> {
        let id = *data.first().ok_or(NetCryptoError::Malformed("empty packet"))?;
        if !LOSSY_IDS.contains(&id) {
            return Err(NetCryptoError::BadId(id));
        }
        if data.len() > MAX_CRYPTO_DATA_SIZE {
            return Err(NetCryptoError::TooLong(data.len()));
        }
        let mut c = self.conns.remove(peer).ok_or(NetCryptoError::NotConnected)?;
        let res = if c.state != ConnState::Established {
            Err(NetCryptoError::NotConnected)
        } else {
            let num = c.send.sent_end;
            let pkt = self.build_data(&mut c, num, data);
            self.transmits.push_back((c.addr, pkt));
            Ok(())
        };
        self.conns.insert(*peer, c);
        res
    }

    /// Transmits queued lossless packets while the congestion window has room.
    fn flush_window(&mut self, now: Instant, c: &mut Conn) {
        let window = c.send.window();
        while c.send.sent_end != c.send.end() && c.send.in_flight() < window {
            let idx = c.send.sent_end.wrapping_sub(c.send.start) as usize;
            let num = c.send.sent_end;
            c.send.sent_end = c.send.sent_end.wrapping_add(1);
            let Some(Some(p)) = c.send.packets.get_mut(idx) else { continue };
            p.last_sent = Some(now);
            let data = p.data.clone();
            let pkt = self.build_data(c, num, &data);
            self.transmits.push_back((c.addr, pkt));
        }
    }

    /// `[0x1b][nonce tail][box(buffer_start ‖ num ‖ padding ‖ data)]` with our send nonce.
    fn build_data(&self, c: &mut Conn, num: u32, data: &[u8]) -> Vec<u8> {
        let Some(shared) = c.shared.as_ref() else { return Vec::new() };
        let pad = (MAX_CRYPTO_DATA_SIZE - data.len().min(MAX_CRYPTO_DATA_SIZE)) % PADDING_MODULUS;
        let mut plain = Vec::with_capacity(8 + pad + data.len());
        plain.extend_from_slice(&c.recv.start.to_be_bytes());
        plain.extend_from_slice(&num.to_be_bytes());
        plain.resize(8 + pad, 0);
        plain.extend_from_slice(data);
        let nonce = c.sent_nonce;
        let mut out = Vec::with_capacity(DATA_OVERHEAD + pad + data.len());
        out.push(PACKET_DATA);
        out.extend_from_slice(&nonce[NONCE_SIZE - 2..]);
        out.extend_from_slice(&shared.encrypt(&nonce, &plain));
        increment_nonce(&mut c.sent_nonce);
        out
    }

    /// Builds our handshake for `c`, using `their_cookie` (made by the peer).
    /// `nonces`: two fresh ones from the machine's generator (our cookie's, the packet's).
    fn build_handshake(&self, now: Instant, c: &Conn, their_cookie: &[u8], nonces: [Nonce; 2]) -> Vec<u8> {
        let other = self.make_cookie(now, &c.peer, &c.peer_dht, &nonces[0]);
        let mut plain = Vec::with_capacity(HANDSHAKE_PLAIN_SIZE);
        plain.extend_from_slice(&c.sent_nonce);
        plain.extend_from_slice(&c.session.pk.0);
        plain.extend_from_slice(&sha512(their_cookie));
        plain.extend_from_slice(&other);
        let nonce = nonces[1];
        let mut pkt = Vec::with_capacity(HANDSHAKE_SIZE);
        pkt.push(PACKET_HANDSHAKE);
        pkt.extend_from_slice(their_cookie);
        pkt.extend_from_slice(&nonce);
        pkt.extend_from_slice(&SharedKey::precompute(&c.peer, &self.real.sk).encrypt(&nonce, &plain));
        pkt
    }

    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), NetCryptoError> {
        let kind = *data.first().ok_or(NetCryptoError::Kind(0))?;
        match kind {
            PACKET_COOKIE_REQUEST => self.handle_cookie_request(now, from, data),
            PACKET_COOKIE_RESPONSE => self.handle_cookie_response(now, from, data),
            PACKET_HANDSHAKE => self.handle_handshake(now, from, data),
            PACKET_DATA => self.handle_data(now, from, data),
            k => Err(NetCryptoError::Kind(k)),
        }
    }

    fn handle_cookie_request(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), NetCryptoError> {
        if data.len() != COOKIE_REQUEST_SIZE {
            return Err(NetCryptoError::Size { kind: data[0], len: data.len(), want: "145" });
        }
        let sender_dht = PublicKey(data[1..33].try_into().map_err(|_| NetCryptoError::Malformed("pk"))?);
        let nonce: Nonce = data[33..57].try_into().map_err(|_| NetCryptoError::Malformed("nonce"))?;
        let shared = SharedKey::precompute(&sender_dht, &self.dht.sk);
        let plain = shared.decrypt(&nonce, &data[57..]).ok_or(NetCryptoError::Decrypt)?;
        let real = PublicKey(plain[..32].try_into().map_err(|_| NetCryptoError::Malformed("pk"))?);
        let cookie_nonce = random_nonce(&mut self.rng);
        let cookie = self.make_cookie(now, &real, &sender_dht, &cookie_nonce);
        let mut body = Vec::with_capacity(COOKIE_SIZE + 8);
        body.extend_from_slice(&cookie);
        body.extend_from_slice(&plain[64..72]); // echo_id, byte-exact
        let rnonce = random_nonce(&mut self.rng);
        let mut pkt = Vec::with_capacity(COOKIE_RESPONSE_SIZE);
        pkt.push(PACKET_COOKIE_RESPONSE);
        pkt.extend_from_slice(&rnonce);
        pkt.extend_from_slice(&shared.encrypt(&rnonce, &body));
        self.transmits.push_back((from, pkt));
        Ok(())
    }

    fn handle_cookie_response(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), NetCryptoError> {
        if data.len() != COOKIE_RESPONSE_SIZE {
            return Err(NetCryptoError::Size { kind: data[0], len: data.len(), want: "161" });
        }
        let nonce: Nonce = data[1..25].try_into().map_err(|_| NetCryptoError::Malformed("nonce"))?;
        // The connection waiting for a cookie from this address (or any waiting one).
        let mut candidates: Vec<PublicKey> =
            self.conns.values().filter(|c| c.state == ConnState::CookieRequesting).map(|c| c.peer).collect();
        candidates.sort_by_key(|p| self.conns.get(p).map(|c| c.addr != from));
        for peer in candidates {
            let Some(c) = self.conns.get(&peer) else { continue };
            let shared = SharedKey::precompute(&c.peer_dht, &self.dht.sk);
            let Some(plain) = shared.decrypt(&nonce, &data[25..]) else { continue };
            if plain[COOKIE_SIZE..] != c.echo_id {
                continue; // stale or replayed response
            }
            let cookie = &plain[..COOKIE_SIZE];
            let nonces = [random_nonce(&mut self.rng), random_nonce(&mut self.rng)];
            let hs = self.build_handshake(now, c, cookie, nonces);
            let c = self.conns.get_mut(&peer).ok_or(NetCryptoError::NoConnection)?;
            c.state = ConnState::HandshakeSent;
            c.temp_packet = Some(hs.clone());
            c.temp_tries = 1;
            c.temp_last = now;
            let addr = c.addr;
            self.transmits.push_back((addr, hs));
            self.events.push_back(NetCryptoEvent::State { peer, state: ConnState::HandshakeSent });
            return Ok(());
        }
        Err(NetCryptoError::NoConnection)
    }

    fn handle_handshake(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), NetCryptoError> {
        if data.len() != HANDSHAKE_SIZE {
            return Err(NetCryptoError::Size { kind: data[0], len: data.len(), want: "385" });
        }
        let cookie = &data[1..1 + COOKIE_SIZE];
        let (peer, peer_dht) = self.open_cookie(now, cookie).ok_or(NetCryptoError::Cookie)?;
        let nonce: Nonce = data[1 + COOKIE_SIZE..1 + COOKIE_SIZE + NONCE_SIZE]
            .try_into()
            .map_err(|_| NetCryptoError::Malformed("nonce"))?;
        let plain = SharedKey::precompute(&peer, &self.real.sk)
            .decrypt(&nonce, &data[1 + COOKIE_SIZE + NONCE_SIZE..])
            .ok_or(NetCryptoError::Decrypt)?;
        if plain[56..120] != sha512(cookie) {
            return Err(NetCryptoError::CookieHash);
        }
        if !self.allowed.contains(&peer) {
            return Err(NetCryptoError::NotFriend);
        }
        let base: Nonce = plain[..24].try_into().map_err(|_| NetCryptoError::Malformed("nonce"))?;
        let session_pk = PublicKey(plain[24..56].try_into().map_err(|_| NetCryptoError::Malformed("pk"))?);
        let other_cookie = &plain[120..120 + COOKIE_SIZE];

        if let Some(c) = self.conns.get(&peer) {
            if c.peer_dht != peer_dht {
                // The peer restarted (new DHT key): replace the old connection.
                self.close(&peer, CloseReason::Replaced);
            } else if c.state == ConnState::Established {
                return Err(NetCryptoError::State(c.state));
            }
        }
        let (mut c, was) = match self.remove_conn(&peer) {
            Some(c) => {
                let s = c.state;
                (c, Some(s))
            }
            None => (Conn::new(peer, peer_dht, from, ConnState::NotConfirmed, now, &mut self.rng), None),
        };
        c.addr = from;
        c.recv_nonce = base;
        c.shared = Some(SharedKey::precompute(&session_pk, &c.session.sk));
        if matches!(was, None | Some(ConnState::CookieRequesting)) {
            // We have no handshake out yet: answer with one built on the peer's cookie.
            let nonces = [random_nonce(&mut self.rng), random_nonce(&mut self.rng)];
            let hs = self.build_handshake(now, &c, other_cookie, nonces);
            c.temp_packet = Some(hs.clone());
            c.temp_tries = 1;
            c.temp_last = now;
            self.transmits.push_back((from, hs));
        }
        c.state = ConnState::NotConfirmed;
        self.by_addr.insert(from, peer);
        self.conns.insert(peer, c);
        self.events.push_back(NetCryptoEvent::PeerDhtKey { peer, dht_pk: peer_dht, addr: from });
        if was != Some(ConnState::NotConfirmed) {
            self.events.push_back(NetCryptoEvent::State { peer, state: ConnState::NotConfirmed });
        }
        // Confirm the connection on the peer's side right away (c-toxcore does it ~50 ms
        // after the handshakes with its packet request).
        self.send_request(now, &peer);
        Ok(())
    }

    fn handle_data(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), NetCryptoError> {
        if data.len() <= DATA_OVERHEAD || data.len() > MAX_CRYPTO_PACKET_SIZE {
            return Err(NetCryptoError::Size { kind: data[0], len: data.len(), want: "28..=1400" });
        }
        let peer = *self.by_addr.get(&from).ok_or(NetCryptoError::NoConnection)?;
        let mut c = self.conns.remove(&peer).ok_or(NetCryptoError::NoConnection)?;
        let res = self.handle_data_conn(now, &mut c, data);
        match res {
            Ok(true) => {
                // Killed by the peer.
                if self.by_addr.get(&c.addr) == Some(&peer) {
                    self.by_addr.remove(&c.addr);
                }
                self.events.push_back(NetCryptoEvent::Closed { peer, reason: CloseReason::Killed });
                Ok(())
            }
            Ok(false) => {
                self.conns.insert(peer, c);
                Ok(())
            }
            Err(e) => {
                self.conns.insert(peer, c);
                Err(e)
            }
        }
    }

    /// Returns Ok(true) if the peer killed the connection.
    fn handle_data_conn(&mut self, now: Instant, c: &mut Conn, data: &[u8]) -> Result<bool, NetCryptoError> {
        if !matches!(c.state, ConnState::NotConfirmed | ConnState::Established) {
            return Err(NetCryptoError::State(c.state));
        }
        let shared = c.shared.clone().ok_or(NetCryptoError::State(c.state))?;
        let plain = open_data(&shared, &mut c.recv_nonce, data).ok_or(NetCryptoError::Decrypt)?;
        let (buffer_start, num, body) = parse_data_plain(&plain)?;
        let id = *body.first().ok_or(NetCryptoError::Malformed("empty"))?;

        // Acknowledgements: everything below the peer's buffer_start arrived.
        let ack = buffer_start.wrapping_sub(c.send.start);
        if ack > c.send.packets.len() as u32 {
            return Err(NetCryptoError::Malformed("buffer_start beyond what we sent"));
        }

        if c.state == ConnState::NotConfirmed {
            c.state = ConnState::Established;
            c.temp_packet = None;
            self.events.push_back(NetCryptoEvent::State { peer: c.peer, state: ConnState::Established });
        }
        if ack > 0 {
            c.send.packets.drain(..ack as usize);
            c.send.start = buffer_start;
            if c.send.sent_end.wrapping_sub(c.send.start) > c.send.packets.len() as u32 {
                c.send.sent_end = c.send.start; // the peer acknowledged more than we sent: trust it
            }
            c.send.on_ack(ack, now);
            self.events.push_back(NetCryptoEvent::Delivered { peer: c.peer, buffer_start });
        }

        match id {
            ID_KILL => return Ok(true),
            ID_REQUEST => {
                let (requested, acked) = decode_request(&body[1..], c.send.start, c.send.sent_end)?;
                for a in acked {
                    if let Some(slot) = c.send.packets.get_mut(a.wrapping_sub(c.send.start) as usize) {
                        *slot = None;
                    }
                }
                for r in requested {
                    if let Some(Some(p)) = c.send.packets.get_mut(r.wrapping_sub(c.send.start) as usize) {
                        p.requested = true;
                        if p.last_sent.is_some() {
                            c.send.on_loss(r);
                        }
                    }
                }
                self.resend_requested(now, c);
                self.flush_window(now, c);
                self.note_peer_end(now, c, num);
            }
            id if LOSSLESS_IDS.contains(&id) => {
                let off = num.wrapping_sub(c.recv.start);
                if off >= PACKET_BUFFER_SIZE {
                    // Already delivered (a duplicate or replay) or absurdly far ahead.
                    return Ok(false);
                }
                let off = off as usize;
                if c.recv.packets.len() <= off {
                    c.recv.packets.resize(off + 1, None);
                }
                if c.recv.packets[off].is_none() {
                    c.recv.packets[off] = Some(body.to_vec());
                }
                self.note_peer_end(now, c, num.wrapping_add(1));
                while let Some(Some(_)) = c.recv.packets.front() {
                    if let Some(Some(p)) = c.recv.packets.pop_front() {
                        c.recv.start = c.recv.start.wrapping_add(1);
                        self.events.push_back(NetCryptoEvent::Lossless { peer: c.peer, data: p });
                    }
                }
                // Acknowledge bulk data promptly: the sender's window only moves on our
                // buffer_start (docs/protocols/tox.md#congestion-control).
                c.recv.since_request += 1;
                if c.recv.since_request >= ACK_EVERY_PACKETS {
                    self.send_request_conn(now, c);
                } else {
                    let soon = now + ACK_DELAY;
                    if soon < c.next_request {
                        c.next_request = soon;
                    }
                }
                self.flush_window(now, c);
            }
            id if LOSSY_IDS.contains(&id) => {
                self.note_peer_end(now, c, num);
                self.events.push_back(NetCryptoEvent::Lossy { peer: c.peer, data: body.to_vec() });
            }
            other => return Err(NetCryptoError::BadId(other)),
        }
        Ok(false)
    }

    /// The peer has sent lossless packets up to `end` (exclusive); request the missing
    /// ones soon if there is a gap.
    fn note_peer_end(&mut self, now: Instant, c: &mut Conn, end: u32) {
        let ahead = end.wrapping_sub(c.recv.start);
        if ahead > PACKET_BUFFER_SIZE {
            return;
        }
        if ahead > c.recv.end.wrapping_sub(c.recv.start) {
            c.recv.end = end;
        }
        let missing = c.recv.end != c.recv.start;
        if missing {
            let soon = c.last_request.map_or(now, |t| t + GAP_REQUEST_INTERVAL);
            if soon < c.next_request {
                c.next_request = soon;
            }
        }
    }

    fn resend_requested(&mut self, now: Instant, c: &mut Conn) {
        let start = c.send.start;
        let inflight = c.send.in_flight() as usize;
        let mut out = Vec::new();
        for (i, slot) in c.send.packets.iter_mut().take(inflight).enumerate() {
            if let Some(p) = slot {
                if p.requested && p.last_sent.is_none_or(|t| now >= t + RESEND_MIN_INTERVAL) {
                    p.requested = false;
                    p.last_sent = Some(now);
                    out.push((start.wrapping_add(i as u32), p.data.clone()));
                }
            }
        }
        for (num, d) in out {
            let pkt = self.build_data(c, num, &d);
            self.transmits.push_back((c.addr, pkt));
        }
    }

    fn send_request(&mut self, now: Instant, peer: &PublicKey) {
        let Some(mut c) = self.conns.remove(peer) else { return };
        self.send_request_conn(now, &mut c);
        self.conns.insert(*peer, c);
    }

    fn send_request_conn(&mut self, now: Instant, c: &mut Conn) {
        let req = {
            let start = c.recv.start;
            let end = c.recv.end;
            let packets = &c.recv.packets;
            encode_request(start, end, |i| !matches!(packets.get(i.wrapping_sub(start) as usize), Some(Some(_))))
        };
        let num = c.send.sent_end;
        let pkt = self.build_data(c, num, &req);
        self.transmits.push_back((c.addr, pkt));
        c.last_request = Some(now);
        c.next_request = now + REQUEST_INTERVAL;
        c.recv.since_request = 0;
    }

    /// No acknowledgement for [`STALL_RESEND_TIMEOUT`] with packets in flight: the oldest
    /// ones are re-sent and the window halves (a lost tail is named by no request).
    fn check_stall(&mut self, now: Instant, peer: &PublicKey) {
        let Some(mut c) = self.conns.remove(peer) else { return };
        if c.send.in_flight() > 0 && now >= c.send.last_progress + STALL_RESEND_TIMEOUT {
            c.send.last_progress = now;
            let start = c.send.start;
            c.send.on_loss(start);
            let inflight = c.send.in_flight() as usize;
            let mut out = Vec::new();
            for (i, slot) in c.send.packets.iter_mut().take(inflight).enumerate() {
                if let Some(p) = slot {
                    p.last_sent = Some(now);
                    out.push((start.wrapping_add(i as u32), p.data.clone()));
                    if out.len() >= STALL_RESEND_MAX {
                        break;
                    }
                }
            }
            for (num, d) in out {
                let pkt = self.build_data(&mut c, num, &d);
                self.transmits.push_back((c.addr, pkt));
            }
        }
        self.conns.insert(*peer, c);
    }

    pub fn tick(&mut self, now: Instant) {
        let peers: Vec<PublicKey> = self.conns.keys().copied().collect();
        for peer in peers {
            let Some(c) = self.conns.get_mut(&peer) else { continue };
            // Cookie requests / handshakes: every second, 8 times, then give up.
            if c.temp_packet.is_some() && now >= c.temp_last + SEND_PACKET_INTERVAL {
                if c.temp_tries >= MAX_SEND_TRIES {
                    let state = c.state;
                    self.close(&peer, CloseReason::Timeout(state));
                    continue;
                }
                c.temp_tries += 1;
                c.temp_last = now;
                if let Some(tp) = c.temp_packet.clone() {
                    self.transmits.push_back((c.addr, tp));
                }
            }
            let live = matches!(c.state, ConnState::NotConfirmed | ConnState::Established);
            if live && now >= c.next_request {
                self.send_request(now, &peer);
            }
            if live {
                self.check_stall(now, &peer);
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<NetCryptoEvent> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .flat_map(|c| {
                let t = c.temp_packet.as_ref().map(|_| c.temp_last + SEND_PACKET_INTERVAL);
                let live = matches!(c.state, ConnState::NotConfirmed | ConnState::Established);
                let r = live.then_some(c.next_request);
                let s = (live && c.send.in_flight() > 0).then_some(c.send.last_progress + STALL_RESEND_TIMEOUT);
                [t, r, s]
            })
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use rand::{Rng, SeedableRng};

    #[test]
    fn request_encoding_matches_notes() {
        // buffer_start 1: request 1 → 01 01; 1 and 4 → 01 01 03.
        assert_eq!(encode_request(1, 3, |i| i == 1), vec![1, 1]);
        assert_eq!(encode_request(1, 6, |i| i == 1 || i == 4), vec![1, 1, 3]);
        // Distance 255 is one byte 255; 256 needs a 0 then 1; 511 = 0 0 1.
        assert_eq!(encode_request(0, 300, |i| i == 254), vec![1, 255]);
        assert_eq!(encode_request(0, 300, |i| i == 255), vec![1, 0, 1]);
        assert_eq!(encode_request(0, 600, |i| i == 510), vec![1, 0, 0, 1]);
        assert_eq!(encode_request(5, 5, |_| true), vec![1]);
        // Decoding inverts it; packets between requested ones count as received.
        let (req, acked) = decode_request(&[1, 3], 1, 10).unwrap();
        assert_eq!(req, vec![1, 4]);
        assert_eq!(acked, vec![2, 3]);
        assert_eq!(decode_request(&[0, 0, 1], 0, 600).unwrap().0, vec![510]);
        assert_eq!(decode_request(&[7], 0, 3).unwrap(), (vec![], vec![]));
        assert_eq!(decode_request(&[0], 0, 300).unwrap(), (vec![], vec![]));
        // Packets after the last requested one are not implied received.
        assert_eq!(decode_request(&[2], 10, 20).unwrap(), (vec![11], vec![10]));
    }

    proptest::proptest! {
        #[test]
        fn request_round_trip(start in proptest::prelude::any::<u32>(),
                              missing in proptest::collection::btree_set(0u32..2000, 0..50)) {
            let end = start.wrapping_add(2001);
            let enc = encode_request(start, end, |i| missing.contains(&i.wrapping_sub(start)));
            let (req, _) = decode_request(&enc[1..], start, end).unwrap();
            let want: Vec<u32> = missing.iter().map(|m| start.wrapping_add(*m)).collect();
            proptest::prop_assert_eq!(req, want);
        }
    }

    #[test]
    fn nonce_advances_by_threshold() {
        let shared = SharedKey::random(&mut crate::crypto::seeded_rng(1));
        let base: Nonce = [0x10; 24];
        let mut recv = base;
        // A packet 2·21845+1 ahead decrypts and moves the saved base by 21845.
        let mut n = base;
        increment_nonce_by(&mut n, 2 * DATA_NUM_THRESHOLD + 1);
        let mut pkt = vec![PACKET_DATA, n[22], n[23]];
        pkt.extend(shared.encrypt(&n, b"abc"));
        assert_eq!(open_data(&shared, &mut recv, &pkt).unwrap(), b"abc");
        let mut want = base;
        increment_nonce_by(&mut want, DATA_NUM_THRESHOLD);
        assert_eq!(recv, want);
        // A nearby packet leaves it alone.
        let mut recv2 = base;
        let mut n = base;
        increment_nonce_by(&mut n, 5);
        let mut pkt = vec![PACKET_DATA, n[22], n[23]];
        pkt.extend(shared.encrypt(&n, b"x"));
        assert!(open_data(&shared, &mut recv2, &pkt).is_some());
        assert_eq!(recv2, base);
    }

    struct Net {
        a: NetCrypto,
        b: NetCrypto,
        a_addr: SocketAddr,
        b_addr: SocketAddr,
        now: Instant,
        loss: f64,
        rng: rand::rngs::StdRng,
        a_events: Vec<NetCryptoEvent>,
        b_events: Vec<NetCryptoEvent>,
        /// Every packet A sent to B, for replay tests.
        a_sent: Vec<Vec<u8>>,
        sizes: Vec<(u8, usize)>,
    }

    impl Net {
        fn new(loss: f64) -> Self {
            let now = Instant::now();
            Net {
                a: NetCrypto::new(
                    KeyPair::from_secret(SecretKey([1; 32])),
                    KeyPair::from_secret(SecretKey([2; 32])),
                    [3; 32],
                    now,
                ),
                b: NetCrypto::new(
                    KeyPair::from_secret(SecretKey([4; 32])),
                    KeyPair::from_secret(SecretKey([5; 32])),
                    [6; 32],
                    now,
                ),
                a_addr: "127.0.0.1:1001".parse().unwrap(),
                b_addr: "127.0.0.1:1002".parse().unwrap(),
                now,
                loss,
                rng: rand::rngs::StdRng::seed_from_u64(7),
                a_events: vec![],
                b_events: vec![],
                a_sent: vec![],
                sizes: vec![],
            }
        }
        /// Delivers everything in flight (10 ms hop), then advances to the next timer.
        fn step(&mut self) {
            self.now += Duration::from_millis(10);
            let mut moved = true;
            while moved {
                moved = false;
                while let Some((to, p)) = self.a.poll_transmit() {
                    moved = true;
                    assert_eq!(to, self.b_addr);
                    self.sizes.push((p[0], p.len()));
                    self.a_sent.push(p.clone());
                    if self.rng.random::<f64>() >= self.loss {
                        let _ = self.b.handle_packet(self.now, self.a_addr, &p);
                    }
                }
                while let Some((to, p)) = self.b.poll_transmit() {
                    moved = true;
                    assert_eq!(to, self.a_addr);
                    self.sizes.push((p[0], p.len()));
                    if self.rng.random::<f64>() >= self.loss {
                        let _ = self.a.handle_packet(self.now, self.b_addr, &p);
                    }
                }
            }
            while let Some(e) = self.a.poll_event() {
                self.a_events.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.b_events.push(e);
            }
            let next = [self.a.next_timeout(), self.b.next_timeout()].into_iter().flatten().min();
            if let Some(t) = next {
                if t > self.now {
                    self.now = t.min(self.now + Duration::from_millis(200));
                }
            }
            self.a.tick(self.now);
            self.b.tick(self.now);
        }
        fn connect(&mut self) {
            let (bpk, bdht, apk) = (self.b.real_pk(), self.b.dht_pk(), self.a.real_pk());
            self.b.allow(apk);
            self.a.connect(self.now, bpk, bdht, self.b_addr);
            for _ in 0..2000 {
                self.step();
                if self.a.state(&bpk) == Some(ConnState::Established)
                    && self.b.state(&apk) == Some(ConnState::Established)
                {
                    return;
                }
            }
            panic!("no connection: a {:?} b {:?}", self.a.state(&bpk), self.b.state(&apk));
        }
    }

    fn states(ev: &[NetCryptoEvent]) -> Vec<ConnState> {
        ev.iter()
            .filter_map(|e| if let NetCryptoEvent::State { state, .. } = e { Some(*state) } else { None })
            .collect()
    }

    #[test]
    fn connect_golden_sizes_and_states() {
        let mut net = Net::new(0.0);
        net.connect();
        use ConnState::*;
        assert_eq!(states(&net.a_events), vec![CookieRequesting, HandshakeSent, NotConfirmed, Established]);
        assert_eq!(states(&net.b_events), vec![NotConfirmed, Established]);
        assert!(net
            .b_events
            .iter()
            .any(|e| matches!(e, NetCryptoEvent::PeerDhtKey { dht_pk, .. } if *dht_pk == net.a.dht_pk())));
        let size = |k: u8| net.sizes.iter().find(|(kind, _)| *kind == k).map(|s| s.1);
        assert_eq!(size(PACKET_COOKIE_REQUEST), Some(145));
        assert_eq!(size(PACKET_COOKIE_RESPONSE), Some(161));
        assert_eq!(size(PACKET_HANDSHAKE), Some(385));
        // A bare packet request [01] is padded to 5 bytes: 27 + 5 = 32, as c-toxcore's.
        assert_eq!(size(PACKET_DATA), Some(32));
        for (k, s) in &net.sizes {
            if *k == PACKET_DATA {
                assert_eq!((s - DATA_OVERHEAD) % 8, MAX_CRYPTO_DATA_SIZE % 8);
            }
        }
    }

    #[test]
    fn thousand_messages_in_order_with_loss_then_kill() {
        let mut net = Net::new(0.2);
        net.connect();
        let (apk, bpk) = (net.a.real_pk(), net.b.real_pk());
        let mut sent = 0u32;
        let mut last_num = 0;
        for _ in 0..20000 {
            for _ in 0..7 {
                if sent < 1000 {
                    let msg = format!("\u{40}message {sent}");
                    last_num = net.a.send_lossless(net.now, &bpk, msg.as_bytes()).unwrap();
                    sent += 1;
                }
            }
            net.step();
            let got = net.b_events.iter().filter(|e| matches!(e, NetCryptoEvent::Lossless { .. })).count();
            let delivered = net
                .a_events
                .iter()
                .any(|e| matches!(e, NetCryptoEvent::Delivered { buffer_start, .. } if *buffer_start == last_num + 1));
            if got == 1000 && delivered {
                break;
            }
        }
        let got: Vec<Vec<u8>> = net
            .b_events
            .iter()
            .filter_map(|e| if let NetCryptoEvent::Lossless { data, .. } = e { Some(data.clone()) } else { None })
            .collect();
        assert_eq!(got.len(), 1000);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, format!("\u{40}message {i}").as_bytes());
        }
        assert_eq!(last_num, 999);
        // Replaying every data packet A ever sent delivers nothing new.
        let before = net.b_events.len();
        let replay = net.a_sent.clone();
        for p in replay.iter().filter(|p| p[0] == PACKET_DATA) {
            let _ = net.b.handle_packet(net.now, net.a_addr, p);
        }
        while let Some(e) = net.b.poll_event() {
            assert!(!matches!(e, NetCryptoEvent::Lossless { .. }), "replay delivered {e:?}");
            net.b_events.push(e);
        }
        assert!(net.b_events.len() >= before);
        // Kill: B notices (retry until a kill packet survives the loss).
        net.loss = 0.0;
        net.a.kill(&bpk);
        net.step();
        assert!(net.b_events.contains(&NetCryptoEvent::Closed { peer: apk, reason: CloseReason::Killed }));
        assert_eq!(net.b.state(&apk), None);
        assert!(net.a_events.contains(&NetCryptoEvent::Closed { peer: bpk, reason: CloseReason::Local }));
    }

    #[test]
    fn cookie_timeout_after_eight_tries() {
        let mut net = Net::new(1.0); // everything lost
        let bpk = net.b.real_pk();
        net.a.connect(net.now, bpk, net.b.dht_pk(), net.b_addr);
        for _ in 0..100 {
            net.step();
        }
        let reqs = net.sizes.iter().filter(|(k, _)| *k == PACKET_COOKIE_REQUEST).count();
        assert_eq!(reqs, MAX_SEND_TRIES as usize);
        assert!(net.a_events.contains(&NetCryptoEvent::Closed {
            peer: bpk,
            reason: CloseReason::Timeout(ConnState::CookieRequesting)
        }));
    }

    #[test]
    fn handshake_from_stranger_or_with_old_cookie_refused() {
        let mut net = Net::new(0.0);
        let bpk = net.b.real_pk();
        // B does not allow A.
        net.a.connect(net.now, bpk, net.b.dht_pk(), net.b_addr);
        let req = net.a.poll_transmit().unwrap().1;
        net.b.handle_packet(net.now, net.a_addr, &req).unwrap();
        let resp = net.b.poll_transmit().unwrap().1;
        net.a.handle_packet(net.now, net.b_addr, &resp).unwrap();
        // A replayed cookie response is ignored.
        assert_eq!(net.a.handle_packet(net.now, net.b_addr, &resp), Err(NetCryptoError::NoConnection));
        let hs = net.a.poll_transmit().unwrap().1;
        assert_eq!(net.b.handle_packet(net.now, net.a_addr, &hs), Err(NetCryptoError::NotFriend));
        net.b.allow(net.a.real_pk());
        // The cookie inside is B's and expires after 15 s.
        let late = net.now + COOKIE_TIMEOUT + Duration::from_secs(1);
        assert_eq!(net.b.handle_packet(late, net.a_addr, &hs), Err(NetCryptoError::Cookie));
        let mut bad = hs.clone();
        bad[300] ^= 1;
        assert_eq!(net.b.handle_packet(net.now, net.a_addr, &bad), Err(NetCryptoError::Decrypt));
        assert!(net.b.handle_packet(net.now, net.a_addr, &hs[..200]).is_err());
        net.b.handle_packet(net.now, net.a_addr, &hs).unwrap();
        assert_eq!(net.b.state(&net.a.real_pk()), Some(ConnState::NotConfirmed));
    }

    #[test]
    fn malformed_packets_never_panic() {
        let mut net = Net::new(0.0);
        net.connect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for len in 0..1500 {
            for kind in [0x18u8, 0x19, 0x1a, 0x1b, 0x00] {
                let mut p = vec![0u8; len % 1450];
                rng.fill(&mut p[..]);
                if let Some(b) = p.first_mut() {
                    *b = kind;
                }
                let _ = net.b.handle_packet(net.now, net.a_addr, &p);
            }
        }
        assert_eq!(net.b.state(&net.a.real_pk()), Some(ConnState::Established));
    }
}
