//! File transfers between friends: the FILE_SENDREQUEST / FILE_CONTROL / FILE_DATA
//! Messenger packets and the per-friend transfer table, c-toxcore 0.2.18's rules
//! (docs/protocols/tox.md#file-transfers).
//!
//! The machine holds no file: it asks the driver for chunks
//! ([`FileEvent::ChunkRequest`], answered with [`Files::send_chunk`]) and hands it the
//! chunks it receives ([`FileEvent::Chunk`]), as c-toxcore's callbacks do. How many
//! chunks it asks for is bounded by net_crypto's send room, so a transfer goes exactly
//! as fast as the congestion window lets it.

use crate::crypto::PublicKey;
use crate::net_crypto::{NetCrypto, NetCryptoError, MAX_CRYPTO_DATA_SIZE};
use std::collections::{BTreeMap, VecDeque};

pub mod id {
    pub const FILE_SENDREQUEST: u8 = 0x50;
    pub const FILE_CONTROL: u8 = 0x51;
    pub const FILE_DATA: u8 = 0x52;
}

/// File kinds of the send request (c-toxcore's TOX_FILE_KIND_*).
pub const KIND_DATA: u32 = 0;
/// An avatar: the file id is the image's SHA-256; size 0 means "no avatar".
pub const KIND_AVATAR: u32 = 1;
/// Size of a file id.
pub const FILE_ID_SIZE: usize = 32;
/// Longest file name in a send request (c-toxcore's MAX_FILENAME_LENGTH).
pub const MAX_FILENAME_LEN: usize = 255;
/// Most file bytes in one FILE_DATA packet: `[0x52][file number][data]`.
pub const MAX_FILE_DATA_SIZE: usize = MAX_CRYPTO_DATA_SIZE - 2;
/// Transfers per direction per friend: the file number is one byte
/// (c-toxcore's MAX_CONCURRENT_FILE_PIPES).
pub const MAX_CONCURRENT_FILES: usize = 256;
/// Size meaning "unknown, streamed until a short chunk" (c-toxcore: UINT64_MAX).
pub const SIZE_UNKNOWN: u64 = u64::MAX;
/// Packets of net_crypto's send room left for chat while files are being sent
/// (c-toxcore keeps CRYPTO_MIN_QUEUE_LENGTH / 4 = 16 free).
pub const MIN_SLOTS_FREE: u32 = 16;
/// Most chunk requests outstanding (asked for, not yet supplied) per friend: bounds the
/// events a slow driver can be handed.
pub const MAX_OUTSTANDING_CHUNKS: u32 = 4096;

/// Control types of FILE_CONTROL.
pub mod control {
    pub const ACCEPT: u8 = 0;
    pub const PAUSE: u8 = 1;
    pub const KILL: u8 = 2;
    pub const SEEK: u8 = 3;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("malformed file packet: {0}")]
    Malformed(&'static str),
    #[error("no such file transfer")]
    NoSuchFile,
    #[error("too many file transfers with this friend")]
    TooMany,
    #[error("file name longer than {MAX_FILENAME_LEN} bytes")]
    NameTooLong,
    #[error("not allowed in this transfer state: {0}")]
    State(&'static str),
    #[error("bad chunk: {0}")]
    Chunk(&'static str),
    #[error(transparent)]
    NetCrypto(#[from] NetCryptoError),
}

/// Which side of a transfer a file number names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// We send the file.
    Sending,
    /// We receive it.
    Receiving,
}

/// A control a friend sent about one of our transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Accepted (start) or resumed.
    Accept,
    Pause,
    /// Cancelled; the transfer is gone.
    Kill,
    /// The receiver resumes a partial file from this position (before accepting).
    Seek(u64),
}

/// A decoded file packet (the bytes after the Messenger id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilePacket {
    SendRequest {
        number: u8,
        kind: u32,
        size: u64,
        file_id: [u8; FILE_ID_SIZE],
        name: Vec<u8>,
    },
    /// `sender_receives`: the file is one the packet's sender receives (byte 1), i.e. one
    /// that we send.
    Control {
        sender_receives: bool,
        number: u8,
        control: Control,
    },
    Data {
        number: u8,
        data: Vec<u8>,
    },
}

impl FilePacket {
    /// Decodes `[id][body]` for the three file ids.
    pub fn decode(b: &[u8]) -> Result<Self, FileError> {
        let (&kind, body) = b.split_first().ok_or(FileError::Malformed("empty"))?;
        match kind {
            id::FILE_SENDREQUEST => {
                const HEAD: usize = 1 + 4 + 8 + FILE_ID_SIZE;
                if body.len() < HEAD {
                    return Err(FileError::Malformed("short send request"));
                }
                let name = &body[HEAD..];
                if name.len() > MAX_FILENAME_LEN {
                    return Err(FileError::Malformed("file name too long"));
                }
                let mut file_id = [0u8; FILE_ID_SIZE];
                file_id.copy_from_slice(&body[13..HEAD]);
                Ok(FilePacket::SendRequest {
                    number: body[0],
                    kind: u32::from_be_bytes([body[1], body[2], body[3], body[4]]),
                    size: u64::from_be_bytes(body[5..13].try_into().map_err(|_| FileError::Malformed("size"))?),
                    file_id,
                    name: name.to_vec(),
                })
            }
            id::FILE_CONTROL => {
                let [dir, number, ctl, rest @ ..] = body else {
                    return Err(FileError::Malformed("short control"));
                };
                let control = match (*ctl, rest) {
                    (control::ACCEPT, []) => Control::Accept,
                    (control::PAUSE, []) => Control::Pause,
                    (control::KILL, []) => Control::Kill,
                    (control::SEEK, pos) => Control::Seek(u64::from_be_bytes(
                        pos.try_into().map_err(|_| FileError::Malformed("seek position must be 8 bytes"))?,
                    )),
                    _ => return Err(FileError::Malformed("unknown control")),
                };
                if *dir > 1 {
                    return Err(FileError::Malformed("bad direction byte"));
                }
                Ok(FilePacket::Control { sender_receives: *dir == 1, number: *number, control })
            }
            id::FILE_DATA => {
                let (&number, data) = body.split_first().ok_or(FileError::Malformed("data without file number"))?;
                if data.len() > MAX_FILE_DATA_SIZE {
                    return Err(FileError::Malformed("data chunk too long"));
                }
                Ok(FilePacket::Data { number, data: data.to_vec() })
            }
            _ => Err(FileError::Malformed("not a file packet")),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            FilePacket::SendRequest { number, kind, size, file_id, name } => {
                let mut v = vec![id::FILE_SENDREQUEST, *number];
                v.extend_from_slice(&kind.to_be_bytes());
                v.extend_from_slice(&size.to_be_bytes());
                v.extend_from_slice(file_id);
                v.extend_from_slice(name);
                v
            }
            FilePacket::Control { sender_receives, number, control } => {
                let (c, pos) = match control {
                    Control::Accept => (control::ACCEPT, None),
                    Control::Pause => (control::PAUSE, None),
                    Control::Kill => (control::KILL, None),
                    Control::Seek(p) => (control::SEEK, Some(*p)),
                };
                let mut v = vec![id::FILE_CONTROL, *sender_receives as u8, *number, c];
                if let Some(p) = pos {
                    v.extend_from_slice(&p.to_be_bytes());
                }
                v
            }
            FilePacket::Data { number, data } => [&[id::FILE_DATA, *number][..], data].concat(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    NotAccepted,
    Transferring,
    /// Sending: every byte is queued; waiting for the friend to acknowledge the last packet.
    Finished,
}

#[derive(Debug, Clone)]
struct Transfer {
    status: Status,
    paused_us: bool,
    paused_other: bool,
    size: u64,
    /// Bytes handed over (sending: queued to net_crypto; receiving: passed to the driver).
    transferred: u64,
    /// Sending: bytes asked of the driver.
    requested: u64,
    kind: u32,
    file_id: [u8; FILE_ID_SIZE],
    /// Sending, `Finished`: the packet number of the last chunk.
    last_packet: u32,
}

impl Transfer {
    fn new(size: u64, kind: u32, file_id: [u8; FILE_ID_SIZE]) -> Self {
        Transfer {
            status: Status::NotAccepted,
            paused_us: false,
            paused_other: false,
            size,
            transferred: 0,
            requested: 0,
            kind,
            file_id,
            last_packet: 0,
        }
    }
    fn running(&self) -> bool {
        self.status == Status::Transferring && !self.paused_us && !self.paused_other
    }
}

/// What the file layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    /// The friend offers a file (receiving `number`). Accept with
    /// [`Files::control`]`(Accept)`, after [`Files::seek`] to resume a partial one.
    Offer { friend: PublicKey, number: u8, kind: u32, size: u64, file_id: [u8; FILE_ID_SIZE], name: String },
    /// The friend accepted, paused, resumed or cancelled one of our transfers.
    Control { friend: PublicKey, direction: Direction, number: u8, control: Control },
    /// Receiving: `data` belongs at `position`. Empty `data`: the file is complete.
    Chunk { friend: PublicKey, number: u8, position: u64, data: Vec<u8> },
    /// Sending: supply `length` bytes at `position` with [`Files::send_chunk`].
    /// `length` 0: the friend received the whole file; the transfer is over.
    ChunkRequest { friend: PublicKey, number: u8, position: u64, length: usize },
    /// The friend went offline: the transfer is gone (resume it with a new offer carrying
    /// the same file id).
    Broken { friend: PublicKey, direction: Direction, number: u8 },
}

#[derive(Default)]
struct FriendFiles {
    sending: BTreeMap<u8, Transfer>,
    receiving: BTreeMap<u8, Transfer>,
}

impl FriendFiles {
    /// Chunks requested of the driver and not yet supplied.
    fn outstanding(&self) -> u32 {
        self.sending.values().map(|t| chunks(t.requested.saturating_sub(t.transferred))).sum()
    }
}

/// Every friend's transfers.
#[derive(Default)]
pub struct Files {
    friends: BTreeMap<PublicKey, FriendFiles>,
    events: VecDeque<FileEvent>,
}

fn chunks(bytes: u64) -> u32 {
    bytes.div_ceil(MAX_FILE_DATA_SIZE as u64).min(u32::MAX as u64) as u32
}

impl Files {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn poll_event(&mut self) -> Option<FileEvent> {
        self.events.pop_front()
    }

    /// Offers a file to an online friend; returns its (sending) file number.
    #[allow(clippy::too_many_arguments)]
    pub fn send_file(
        &mut self,
        now: std::time::Instant,
        nc: &mut NetCrypto,
        friend: &PublicKey,
        kind: u32,
        size: u64,
        file_id: [u8; FILE_ID_SIZE],
        name: &str,
    ) -> Result<u8, FileError> {
        if name.len() > MAX_FILENAME_LEN {
            return Err(FileError::NameTooLong);
        }
        let ff = self.friends.entry(*friend).or_default();
        let number = (0..=255u8).find(|n| !ff.sending.contains_key(n)).ok_or(FileError::TooMany)?;
        let p = FilePacket::SendRequest { number, kind, size, file_id, name: name.as_bytes().to_vec() };
        nc.send_lossless(now, friend, &p.encode())?;
        ff.sending.insert(number, Transfer::new(size, kind, file_id));
        Ok(number)
    }

    /// Accept (start or resume), pause or cancel one of our transfers.
    pub fn control(
        &mut self,
        now: std::time::Instant,
        nc: &mut NetCrypto,
        friend: &PublicKey,
        direction: Direction,
        number: u8,
        control: Control,
    ) -> Result<(), FileError> {
        let ff = self.friends.get_mut(friend).ok_or(FileError::NoSuchFile)?;
        let table = match direction {
            Direction::Sending => &mut ff.sending,
            Direction::Receiving => &mut ff.receiving,
        };
        let t = table.get_mut(&number).ok_or(FileError::NoSuchFile)?;
        match control {
            Control::Accept => {
                if t.status == Status::NotAccepted {
                    if direction == Direction::Sending {
                        return Err(FileError::State("only the receiver accepts"));
                    }
                } else if !t.paused_us {
                    return Err(FileError::State("not paused by us"));
                }
            }
            Control::Pause => {
                if t.paused_us || t.status != Status::Transferring {
                    return Err(FileError::State("not transferring"));
                }
            }
            Control::Kill => {}
            Control::Seek(_) => return Err(FileError::State("use seek")),
        }
        let p = FilePacket::Control { sender_receives: direction == Direction::Receiving, number, control };
        nc.send_lossless(now, friend, &p.encode())?;
        match control {
            Control::Accept => {
                t.status = Status::Transferring;
                t.paused_us = false;
            }
            Control::Pause => t.paused_us = true,
            _ => {
                table.remove(&number);
            }
        }
        self.pump(now, nc, friend);
        Ok(())
    }

    /// Receiving, before accepting: resume a partial file from `position`.
    pub fn seek(
        &mut self,
        now: std::time::Instant,
        nc: &mut NetCrypto,
        friend: &PublicKey,
        number: u8,
        position: u64,
    ) -> Result<(), FileError> {
        let t = self.friends.get_mut(friend).and_then(|f| f.receiving.get_mut(&number)).ok_or(FileError::NoSuchFile)?;
        if t.status != Status::NotAccepted {
            return Err(FileError::State("seek only before accepting"));
        }
        if position >= t.size {
            return Err(FileError::State("seek position past the end"));
        }
        let p = FilePacket::Control { sender_receives: true, number, control: Control::Seek(position) };
        nc.send_lossless(now, friend, &p.encode())?;
        t.transferred = position;
        Ok(())
    }

    /// Sending: the chunk asked for by a [`FileEvent::ChunkRequest`].
    pub fn send_chunk(
        &mut self,
        now: std::time::Instant,
        nc: &mut NetCrypto,
        friend: &PublicKey,
        number: u8,
        position: u64,
        data: &[u8],
    ) -> Result<(), FileError> {
        let ff = self.friends.get_mut(friend).ok_or(FileError::NoSuchFile)?;
        let t = ff.sending.get_mut(&number).ok_or(FileError::NoSuchFile)?;
        if t.status != Status::Transferring {
            return Err(FileError::State("not transferring"));
        }
        if data.len() > MAX_FILE_DATA_SIZE || t.size - t.transferred < data.len() as u64 {
            return Err(FileError::Chunk("too long"));
        }
        if t.size != SIZE_UNKNOWN && data.len() != MAX_FILE_DATA_SIZE && t.transferred + data.len() as u64 != t.size {
            return Err(FileError::Chunk("short chunk before the end"));
        }
        if position != t.transferred || (t.requested <= position && t.size != 0) {
            return Err(FileError::Chunk("not the position asked for"));
        }
        let num = nc.send_lossless(now, friend, &FilePacket::Data { number, data: data.to_vec() }.encode())?;
        t.transferred += data.len() as u64;
        if data.len() != MAX_FILE_DATA_SIZE || t.transferred == t.size {
            t.status = Status::Finished;
            t.last_packet = num;
        }
        Ok(())
    }

    /// A file packet from a friend (online: the Messenger checked).
    pub fn handle_packet(
        &mut self,
        now: std::time::Instant,
        nc: &mut NetCrypto,
        friend: &PublicKey,
        data: &[u8],
    ) -> Result<(), FileError> {
        let p = FilePacket::decode(data)?;
        let ff = self.friends.entry(*friend).or_default();
        match p {
            FilePacket::SendRequest { number, kind, size, file_id, name } => {
                if ff.receiving.contains_key(&number) {
                    return Err(FileError::State("file number in use"));
                }
                ff.receiving.insert(number, Transfer::new(size, kind, file_id));
                self.events.push_back(FileEvent::Offer {
                    friend: *friend,
                    number,
                    kind,
                    size,
                    file_id,
                    name: String::from_utf8_lossy(&name).into_owned(),
                });
            }
            FilePacket::Control { sender_receives, number, control } => {
                let direction = if sender_receives { Direction::Sending } else { Direction::Receiving };
                let table = match direction {
                    Direction::Sending => &mut ff.sending,
                    Direction::Receiving => &mut ff.receiving,
                };
                let Some(t) = table.get_mut(&number) else {
                    // Unknown to us: tell the friend to drop it (c-toxcore does the same).
                    let p = FilePacket::Control { sender_receives: !sender_receives, number, control: Control::Kill };
                    let _ = nc.send_lossless(now, friend, &p.encode());
                    return Err(FileError::NoSuchFile);
                };
                match control {
                    Control::Accept => {
                        if direction == Direction::Sending && t.status == Status::NotAccepted {
                            t.status = Status::Transferring;
                        } else if t.paused_other {
                            t.paused_other = false;
                        } else {
                            return Err(FileError::State("resume of a transfer not paused"));
                        }
                    }
                    Control::Pause => {
                        if t.paused_other || t.status != Status::Transferring {
                            return Err(FileError::State("pause of a transfer not running"));
                        }
                        t.paused_other = true;
                    }
                    Control::Kill => {
                        table.remove(&number);
                    }
                    Control::Seek(pos) => {
                        // Only the receiver seeks, only before accepting (c-toxcore's rule).
                        if direction != Direction::Sending || t.status != Status::NotAccepted || pos >= t.size {
                            return Err(FileError::State("seek not allowed"));
                        }
                        t.requested = pos;
                        t.transferred = pos;
                    }
                }
                self.events.push_back(FileEvent::Control { friend: *friend, direction, number, control });
                self.pump(now, nc, friend);
            }
            FilePacket::Data { number, mut data } => {
                let t = ff.receiving.get_mut(&number).ok_or(FileError::NoSuchFile)?;
                if t.status != Status::Transferring {
                    return Err(FileError::State("data for a transfer not accepted"));
                }
                let full = data.len() == MAX_FILE_DATA_SIZE;
                let left = t.size - t.transferred;
                if data.len() as u64 > left {
                    data.truncate(left as usize);
                }
                let position = t.transferred;
                let len = data.len() as u64;
                t.transferred += len;
                let done = len == 0 || t.transferred >= t.size || !full;
                let end = t.transferred;
                if len > 0 {
                    self.events.push_back(FileEvent::Chunk { friend: *friend, number, position, data });
                }
                if done {
                    ff.receiving.remove(&number);
                    self.events.push_back(FileEvent::Chunk { friend: *friend, number, position: end, data: vec![] });
                }
            }
        }
        Ok(())
    }

    /// net_crypto acknowledged our packets below `buffer_start`: finished transfers end,
    /// and the window has room for more chunks.
    pub fn delivered(&mut self, now: std::time::Instant, nc: &mut NetCrypto, friend: &PublicKey, buffer_start: u32) {
        if let Some(ff) = self.friends.get_mut(friend) {
            let done: Vec<u8> = ff
                .sending
                .iter()
                .filter(|(_, t)| {
                    let d = buffer_start.wrapping_sub(t.last_packet);
                    t.status == Status::Finished && d != 0 && d < u32::MAX / 2
                })
                .map(|(n, _)| *n)
                .collect();
            for n in done {
                if let Some(t) = ff.sending.remove(&n) {
                    self.events.push_back(FileEvent::ChunkRequest {
                        friend: *friend,
                        number: n,
                        position: t.transferred,
                        length: 0,
                    });
                }
            }
        }
        self.pump(now, nc, friend);
    }

    /// Asks the driver for as many chunks as net_crypto has room for (round-robin over the
    /// running transfers, as c-toxcore).
    pub fn pump(&mut self, now: std::time::Instant, nc: &mut NetCrypto, friend: &PublicKey) {
        let Some(ff) = self.friends.get_mut(friend) else { return };
        if ff.sending.is_empty() {
            return;
        }
        let room = nc.send_room(friend).saturating_sub(MIN_SLOTS_FREE);
        let outstanding = ff.outstanding();
        let mut room = room.saturating_sub(outstanding).min(MAX_OUTSTANDING_CHUNKS.saturating_sub(outstanding));
        let mut empty = Vec::new();
        loop {
            let mut any = false;
            for (n, t) in ff.sending.iter_mut() {
                if room == 0 {
                    break;
                }
                if !t.running() {
                    continue;
                }
                if t.size == 0 {
                    empty.push(*n);
                    continue;
                }
                if t.requested >= t.size {
                    continue;
                }
                let length = (t.size - t.requested).min(MAX_FILE_DATA_SIZE as u64) as usize;
                let position = t.requested;
                t.requested += length as u64;
                room -= 1;
                any = true;
                self.events.push_back(FileEvent::ChunkRequest { friend: *friend, number: *n, position, length });
            }
            if !any || room == 0 {
                break;
            }
        }
        // An empty file: one empty data packet ends it.
        for n in empty {
            if let Some(t) = ff.sending.get_mut(&n) {
                if let Ok(num) = nc.send_lossless(now, friend, &FilePacket::Data { number: n, data: vec![] }.encode()) {
                    t.status = Status::Finished;
                    t.last_packet = num;
                }
            }
        }
    }

    /// The friend went offline: every transfer with it is broken.
    pub fn friend_offline(&mut self, friend: &PublicKey) {
        if let Some(ff) = self.friends.remove(friend) {
            for n in ff.sending.keys() {
                self.events.push_back(FileEvent::Broken { friend: *friend, direction: Direction::Sending, number: *n });
            }
            for n in ff.receiving.keys() {
                self.events.push_back(FileEvent::Broken {
                    friend: *friend,
                    direction: Direction::Receiving,
                    number: *n,
                });
            }
        }
    }

    /// Drops every transfer with a removed friend.
    pub fn forget(&mut self, friend: &PublicKey) {
        self.friend_offline(friend);
    }

    /// Bytes transferred and size of a transfer.
    pub fn progress(&self, friend: &PublicKey, direction: Direction, number: u8) -> Option<(u64, u64)> {
        let ff = self.friends.get(friend)?;
        let t = match direction {
            Direction::Sending => ff.sending.get(&number),
            Direction::Receiving => ff.receiving.get(&number),
        }?;
        Some((t.transferred, t.size))
    }

    /// The file id of a transfer.
    pub fn file_id(&self, friend: &PublicKey, direction: Direction, number: u8) -> Option<[u8; FILE_ID_SIZE]> {
        let ff = self.friends.get(friend)?;
        let t = match direction {
            Direction::Sending => ff.sending.get(&number),
            Direction::Receiving => ff.receiving.get(&number),
        }?;
        let _ = t.kind;
        Some(t.file_id)
    }

    /// Whether any transfer with `friend` is asking for chunks (the driver's hint to keep
    /// pumping).
    pub fn sending_to(&self, friend: &PublicKey) -> bool {
        self.friends.get(friend).is_some_and(|f| f.sending.values().any(|t| t.running()))
    }

    /// Approximate chunk count, for tests and progress displays.
    pub fn chunks_for(size: u64) -> u32 {
        chunks(size)
    }
}

#[cfg(test)]
mod tests {
    //! File transfers over net_crypto in simulated time, through a bottleneck link with a
    //! drop-tail queue: what a user sees is the file arriving intact, resumable, fast, and
    //! without the sender flooding the link.
    use super::*;
    use crate::crypto::{KeyPair, SecretKey};
    use crate::messenger::Messenger;
    use crate::net_crypto::NetCrypto;
    use crate::toxid::NoSpam;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    /// One direction of a link: `rate` bytes/s, `delay` one way, a queue of `cap` packets.
    struct Link {
        rate: f64,
        delay: Duration,
        cap: usize,
        /// (leaves the queue, arrives, packet)
        q: VecDeque<(Instant, Instant, Vec<u8>)>,
        busy_until: Instant,
        sent: usize,
        dropped: usize,
    }

    impl Link {
        fn new(now: Instant, rate: f64, delay: Duration, cap: usize) -> Self {
            Link { rate, delay, cap, q: VecDeque::new(), busy_until: now, sent: 0, dropped: 0 }
        }
        fn push(&mut self, now: Instant, p: Vec<u8>) {
            self.sent += 1;
            let queued = self.q.iter().filter(|(dep, _, _)| *dep > now).count();
            if queued >= self.cap {
                self.dropped += 1;
                return;
            }
            let start = self.busy_until.max(now);
            let dep = start + Duration::from_secs_f64(p.len() as f64 / self.rate);
            self.busy_until = dep;
            self.q.push_back((dep, dep + self.delay, p));
        }
        fn next(&self) -> Option<Instant> {
            self.q.front().map(|x| x.1)
        }
        fn pop(&mut self, now: Instant) -> Option<Vec<u8>> {
            if self.q.front().is_some_and(|x| x.1 <= now) {
                self.q.pop_front().map(|x| x.2)
            } else {
                None
            }
        }
    }

    struct Side {
        nc: NetCrypto,
        m: Messenger,
        addr: SocketAddr,
        /// What this side sends (by sending file number) and what it received.
        source: Vec<u8>,
        received: Vec<u8>,
        events: Vec<FileEvent>,
        /// Accept offers automatically, seeking to `received.len()` first when non-empty.
        auto_accept: bool,
    }

    struct Sim {
        a: Side,
        b: Side,
        ab: Link,
        ba: Link,
        now: Instant,
    }

    impl Sim {
        fn new(rate: f64, delay: Duration, cap: usize) -> Self {
            let now = Instant::now();
            let side = |n: u8| Side {
                nc: NetCrypto::new(
                    KeyPair::from_secret(SecretKey([n; 32])),
                    KeyPair::from_secret(SecretKey([n + 10; 32])),
                    [n + 20; 32],
                    now,
                ),
                m: Messenger::new(&format!("node{n}"), NoSpam([n; 4])),
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + n as u16)),
                source: vec![],
                received: vec![],
                events: vec![],
                auto_accept: true,
            };
            let mut s = Sim {
                a: side(1),
                b: side(2),
                ab: Link::new(now, rate, delay, cap),
                ba: Link::new(now, rate, delay, cap),
                now,
            };
            let (apk, bpk) = (s.a.nc.real_pk(), s.b.nc.real_pk());
            s.a.m.add_friend(now, bpk, &mut s.a.nc);
            s.b.m.add_friend(now, apk, &mut s.b.nc);
            s.a.nc.connect(now, bpk, s.b.nc.dht_pk(), s.b.addr);
            s.run_until(Duration::from_secs(3), |s| s.a.m.is_online(&bpk) && s.b.m.is_online(&apk));
            assert!(s.a.m.is_online(&bpk) && s.b.m.is_online(&apk));
            s
        }

        fn drive(side: &mut Side, peer: &PublicKey, now: Instant) {
            while let Some(e) = side.nc.poll_event() {
                side.m.handle_net_crypto_event(now, &e, &mut side.nc);
            }
            while side.m.poll_event().is_some() {}
            while let Some(e) = side.m.poll_file_event() {
                match &e {
                    FileEvent::Offer { number, .. } if side.auto_accept => {
                        let files = side.m.files(peer).unwrap();
                        if !side.received.is_empty() {
                            files.seek(now, &mut side.nc, peer, *number, side.received.len() as u64).unwrap();
                        }
                        let files = side.m.files(peer).unwrap();
                        files.control(now, &mut side.nc, peer, Direction::Receiving, *number, Control::Accept).unwrap();
                    }
                    FileEvent::Chunk { position, data, .. } if !data.is_empty() => {
                        assert_eq!(*position, side.received.len() as u64, "chunks arrive in order");
                        side.received.extend_from_slice(data);
                    }
                    FileEvent::ChunkRequest { number, position, length, .. } if *length > 0 => {
                        let p = *position as usize;
                        let chunk = side.source[p..p + length].to_vec();
                        let files = side.m.files(peer).unwrap();
                        // A request may outlive its transfer (cancelled meanwhile): refused then.
                        let _ = files.send_chunk(now, &mut side.nc, peer, *number, *position, &chunk);
                    }
                    _ => {}
                }
                side.events.push(e);
            }
        }

        /// One step: deliver due packets, run timers, move transmits onto the links.
        fn step(&mut self) {
            let (apk, bpk) = (self.a.nc.real_pk(), self.b.nc.real_pk());
            let now = self.now;
            while let Some(p) = self.ab.pop(now) {
                let _ = self.b.nc.handle_packet(now, self.a.addr, &p);
            }
            while let Some(p) = self.ba.pop(now) {
                let _ = self.a.nc.handle_packet(now, self.b.addr, &p);
            }
            for _ in 0..4 {
                Self::drive(&mut self.a, &bpk, now);
                Self::drive(&mut self.b, &apk, now);
            }
            self.a.nc.tick(now);
            self.a.m.tick(now, &mut self.a.nc);
            self.b.nc.tick(now);
            self.b.m.tick(now, &mut self.b.nc);
            Self::drive(&mut self.a, &bpk, now);
            Self::drive(&mut self.b, &apk, now);
            while let Some((_, p)) = self.a.nc.poll_transmit() {
                self.ab.push(now, p);
            }
            while let Some((_, p)) = self.b.nc.poll_transmit() {
                self.ba.push(now, p);
            }
            let next = [
                self.ab.next(),
                self.ba.next(),
                self.a.nc.next_timeout(),
                self.b.nc.next_timeout(),
                self.a.m.next_timeout(),
                self.b.m.next_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(now + Duration::from_millis(10));
            self.now = next.min(now + Duration::from_millis(50)).max(now + Duration::from_micros(50));
        }

        fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> Duration {
            let start = self.now;
            while self.now < start + limit {
                self.step();
                if done(self) {
                    break;
                }
            }
            self.now - start
        }
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed).collect()
    }

    fn finished(ev: &[FileEvent]) -> bool {
        ev.iter().any(|e| matches!(e, FileEvent::ChunkRequest { length: 0, .. }))
    }
    fn complete(ev: &[FileEvent]) -> bool {
        ev.iter().any(|e| matches!(e, FileEvent::Chunk { data, .. } if data.is_empty()))
    }

    #[test]
    fn codec_round_trip_and_limits() {
        let offer = FilePacket::SendRequest { number: 3, kind: 1, size: 5, file_id: [7; 32], name: b"a.png".to_vec() };
        let b = offer.encode();
        assert_eq!(&b[..2], &[0x50, 3]);
        assert_eq!(&b[2..6], &[0, 0, 0, 1]);
        assert_eq!(&b[6..14], &5u64.to_be_bytes());
        assert_eq!(FilePacket::decode(&b).unwrap(), offer);
        let seek = FilePacket::Control { sender_receives: true, number: 9, control: Control::Seek(1 << 40) };
        assert_eq!(seek.encode()[..4], [0x51, 1, 9, 3]);
        assert_eq!(FilePacket::decode(&seek.encode()).unwrap(), seek);
        assert!(FilePacket::decode(&[0x51, 1, 9, 3, 0]).is_err());
        assert!(FilePacket::decode(&[0x51, 2, 9, 0]).is_err());
        assert!(FilePacket::decode(&[0x51, 0, 9, 7]).is_err());
        assert!(FilePacket::decode(&[0x50; 40]).is_err());
        let mut long = b.clone();
        long.extend(std::iter::repeat_n(b'x', 256));
        assert!(FilePacket::decode(&long).is_err());
        assert!(FilePacket::decode(&[0x52]).is_err());
        assert!(FilePacket::decode(&[0x52; MAX_FILE_DATA_SIZE + 3]).is_err());
        assert_eq!(FilePacket::decode(&[0x52, 4]).unwrap(), FilePacket::Data { number: 4, data: vec![] });
    }

    /// 4 MiB each way at once over a 4 MB/s link with a 64-packet queue and 20 ms RTT:
    /// both files arrive intact, the link stays busy (no stall) and the sender does not
    /// flood it (few drops at the queue). Without a congestion window every chunk the
    /// send room allowed went out at once and most were dropped.
    #[test]
    fn both_ways_intact_without_flooding_or_stalling() {
        let rate = 4_000_000.0;
        let mut s = Sim::new(rate, Duration::from_millis(10), 64);
        let size = 4 << 20;
        s.a.source = pattern(size, 1);
        s.b.source = pattern(size, 2);
        let (apk, bpk) = (s.a.nc.real_pk(), s.b.nc.real_pk());
        let now = s.now;
        let fa = s.a.m.files(&bpk).unwrap().send_file(now, &mut s.a.nc, &bpk, KIND_DATA, size as u64, [1; 32], "a.bin");
        let fb = s.b.m.files(&apk).unwrap().send_file(now, &mut s.b.nc, &apk, KIND_DATA, size as u64, [2; 32], "b.bin");
        assert_eq!((fa.unwrap(), fb.unwrap()), (0, 0));
        let took = s.run_until(Duration::from_secs(60), |s| {
            finished(&s.a.events) && finished(&s.b.events) && complete(&s.a.events) && complete(&s.b.events)
        });
        assert!(s.b.received == s.a.source, "A→B file differs ({} of {} bytes)", s.b.received.len(), size);
        assert!(s.a.received == s.b.source, "B→A file differs ({} of {} bytes)", s.a.received.len(), size);
        assert!(finished(&s.a.events) && finished(&s.b.events), "senders never saw the end acknowledged");
        // Each direction carries 4 MiB plus ~2% headers: at least half the link's rate.
        let secs = took.as_secs_f64();
        assert!(secs < 2.0 * (size as f64 * 1.03) / rate, "took {secs:.2} s simulated: the transfer stalls");
        for (name, l) in [("A→B", &s.ab), ("B→A", &s.ba)] {
            assert!(
                l.dropped * 20 < l.sent,
                "{name}: {} of {} packets dropped at the bottleneck: the sender floods",
                l.dropped,
                l.sent
            );
        }
    }

    /// The receiver pauses, resumes, and cancels; a later offer of the same file id is
    /// resumed from the bytes already held (seek), as after a restart.
    #[test]
    fn pause_resume_cancel_then_resume_by_seek() {
        let mut s = Sim::new(2_000_000.0, Duration::from_millis(5), 128);
        let size = 1 << 20;
        s.a.source = pattern(size, 3);
        let (apk, bpk) = (s.a.nc.real_pk(), s.b.nc.real_pk());
        let now = s.now;
        s.a.m.files(&bpk).unwrap().send_file(now, &mut s.a.nc, &bpk, KIND_DATA, size as u64, [5; 32], "f").unwrap();
        s.run_until(Duration::from_secs(10), |s| s.b.received.len() > 100_000);
        let now = s.now;
        s.b.m.files(&apk).unwrap().control(now, &mut s.b.nc, &apk, Direction::Receiving, 0, Control::Pause).unwrap();
        s.run_until(Duration::from_millis(500), |_| false);
        let held = s.b.received.len();
        s.run_until(Duration::from_secs(2), |_| false);
        assert_eq!(s.b.received.len(), held, "data kept flowing while paused");
        assert!(s.a.events.contains(&FileEvent::Control {
            friend: bpk,
            direction: Direction::Sending,
            number: 0,
            control: Control::Pause
        }));
        let now = s.now;
        s.b.m.files(&apk).unwrap().control(now, &mut s.b.nc, &apk, Direction::Receiving, 0, Control::Accept).unwrap();
        s.run_until(Duration::from_secs(10), |s| s.b.received.len() > held + 100_000);
        assert!(s.b.received.len() > held, "resume did not resume");
        let now = s.now;
        s.b.m.files(&apk).unwrap().control(now, &mut s.b.nc, &apk, Direction::Receiving, 0, Control::Kill).unwrap();
        s.run_until(Duration::from_secs(1), |_| false);
        assert!(s.a.events.iter().any(|e| matches!(e, FileEvent::Control { control: Control::Kill, .. })));
        assert_eq!(s.a.m.files_ref().progress(&bpk, Direction::Sending, 0), None, "sender still holds it");
        // Keep only a prefix, as a restarted receiver would, and have it offered again.
        s.b.received.truncate(300_001);
        let seek_from = s.b.received.len() as u64;
        s.a.events.clear();
        let now = s.now;
        s.a.m.files(&bpk).unwrap().send_file(now, &mut s.a.nc, &bpk, KIND_DATA, size as u64, [5; 32], "f").unwrap();
        s.run_until(Duration::from_secs(20), |s| complete(&s.b.events) && s.b.received.len() == size);
        assert!(s.b.received == s.a.source, "resumed file differs");
        let first = s.a.events.iter().find_map(|e| match e {
            FileEvent::ChunkRequest { position, .. } => Some(*position),
            _ => None,
        });
        assert_eq!(first, Some(seek_from), "the sender did not start at the seek position");
    }

    /// A friend going offline breaks its transfers on both sides; an empty file completes.
    #[test]
    fn offline_breaks_and_empty_file_completes() {
        let mut s = Sim::new(2_000_000.0, Duration::from_millis(5), 128);
        let (apk, bpk) = (s.a.nc.real_pk(), s.b.nc.real_pk());
        let now = s.now;
        s.a.m.files(&bpk).unwrap().send_file(now, &mut s.a.nc, &bpk, KIND_AVATAR, 0, [0; 32], "").unwrap();
        s.run_until(Duration::from_secs(5), |s| complete(&s.b.events) && finished(&s.a.events));
        assert!(s.b.events.iter().any(|e| matches!(e, FileEvent::Offer { kind: KIND_AVATAR, size: 0, .. })));
        assert!(complete(&s.b.events) && finished(&s.a.events));
        s.a.source = pattern(1 << 20, 4);
        let now = s.now;
        s.a.m.files(&bpk).unwrap().send_file(now, &mut s.a.nc, &bpk, KIND_DATA, 1 << 20, [6; 32], "x").unwrap();
        s.run_until(Duration::from_secs(5), |s| !s.b.received.is_empty());
        s.b.nc.kill(&apk);
        s.run_until(Duration::from_secs(1), |_| false);
        assert!(s.a.events.iter().any(|e| matches!(e, FileEvent::Broken { direction: Direction::Sending, .. })));
        assert!(s.b.events.iter().any(|e| matches!(e, FileEvent::Broken { direction: Direction::Receiving, .. })));
    }
}
