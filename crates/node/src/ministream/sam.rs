//! I2P ministreaming through a real I2P router: the same [`Manager`] core carried by SAM v3
//! repliable datagrams (`STYLE=DATAGRAM`) of a router such as i2pd.
//!
//! ```text
//!  streams ─ Driver(Manager per peer) ═ framed pipe ═ adapter ─ UDP ─ router's SAM UDP port ─ I2P
//! ```
//!
//! One SAM session (one I2P destination) per [`SamEndpoint`]; its control connection stays
//! open for the session's life. Each peer destination gets its own manager, driven exactly
//! as on the loopback transport, over an in-memory length-framed pipe; an adapter turns each
//! framed message into one datagram `3.0 <session> <peer destination>\n<message>` to the
//! router and each received datagram `<sender destination>[ options]\n<message>` back into a
//! frame for that peer's manager. The router authenticates the sender destination of a
//! repliable datagram, so it is the peer's address; a SYN whose payload (the initiator's
//! destination, as the original sent it) is not that sender is dropped.
//!
//! Datagrams are best-effort: the first one to a destination is normally lost while the
//! router fetches its lease set, so SYNs are resent until answered ([`SYN_RESEND`]); a lost
//! data message is not repaired (ministreaming has no sequence numbers) — the original
//! relied on I2CP's guaranteed delivery, which SAM datagrams do not give.

use super::{spawn_pipe_driver, Command, Stream, ACCEPT_BACKLOG};
use omnipeer_ministream::frame::{self, FrameReader};
use omnipeer_ministream::manager::Config as ManagerConfig;
use omnipeer_ministream::sam::parse_datagram;
use omnipeer_ministream::Manager;

pub use omnipeer_ministream::sam::decode_destination;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

/// Longest SAM reply line we read (a private destination blob is under 1 KiB).
pub const MAX_SAM_LINE: usize = 16 * 1024;
/// Largest UDP datagram we accept from the router.
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Payload bytes per data message over I2P: well under the ~31 KiB an I2P datagram can
/// carry (16 KiB messages crossed two i2pd 2.45 routers intact in our tests).
pub const SAM_MAX_PAYLOAD: usize = 16 * 1024;
/// How often an unanswered SYN is resent.
pub const SYN_RESEND: Duration = Duration::from_secs(3);
/// How long a connect waits for its ACK over I2P (lease-set lookups take seconds).
pub const SAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the router may take to build the session's tunnels (i2pd took 20 s).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// Datagrams queued per peer for its manager; beyond this they are dropped like any lost
/// datagram (the manager's own window is the real bound).
pub const PEER_QUEUE: usize = 256;
/// Most peer destinations served at once.
pub const MAX_PEERS: usize = 1024;
/// Default pacing of the datagrams sent to one peer. Ministreaming has no window and no
/// retransmission, so a sender that outruns the routers' queues or the receiver's socket
/// buffer loses data for good (2 MB sent unpaced through two i2pd 2.45 routers arrived as
/// its first 99 KB); pacing keeps the bursts small enough to get through.
pub const SAM_PEER_RATE: u64 = 1024 * 1024;
/// Receive buffer asked for on the datagram socket.
pub const UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;
/// Capacity of each peer's in-memory framed pipe, per direction.
const PIPE_BYTES: usize = 256 * 1024;

/// Settings of a SAM endpoint.
#[derive(Debug, Clone)]
pub struct SamConfig {
    /// The router's SAM TCP address (i2pd: 127.0.0.1:7656).
    pub sam: SocketAddr,
    /// The router's SAM UDP address. `None`: the SAM TCP port minus one (i2pd's default).
    pub sam_udp: Option<SocketAddr>,
    /// Extra `KEY=VALUE` options for SESSION CREATE (tunnel lengths and the like).
    pub options: Vec<String>,
    /// See [`SAM_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`super::ACCEPT_TIMEOUT`].
    pub accept_timeout: Duration,
    /// See [`SESSION_TIMEOUT`].
    pub session_timeout: Duration,
    /// Bytes per second sent to one peer at most ([`SAM_PEER_RATE`]; 0 = unpaced).
    pub peer_rate: u64,
}

impl SamConfig {
    /// Defaults for the router at `sam`.
    pub fn new(sam: SocketAddr) -> Self {
        SamConfig {
            sam,
            sam_udp: None,
            options: Vec::new(),
            connect_timeout: SAM_CONNECT_TIMEOUT,
            accept_timeout: super::ACCEPT_TIMEOUT,
            session_timeout: SESSION_TIMEOUT,
            peer_rate: SAM_PEER_RATE,
        }
    }

    fn manager(&self) -> ManagerConfig {
        ManagerConfig {
            connect_timeout: self.connect_timeout,
            accept_timeout: self.accept_timeout,
            max_payload: SAM_MAX_PAYLOAD,
            syn_resend: Some(SYN_RESEND),
            ..ManagerConfig::default()
        }
    }
}

struct Peer {
    cmd: mpsc::Sender<Command>,
    inbound: mpsc::Sender<Vec<u8>>,
    tasks: [JoinHandle<()>; 2],
}

struct Shared {
    cfg: SamConfig,
    session: String,
    /// Our public destination (binary): the SYN payload.
    dest: Vec<u8>,
    udp: Arc<UdpSocket>,
    sam_udp: SocketAddr,
    listening: bool,
    accept_tx: mpsc::Sender<Stream>,
    peers: StdMutex<HashMap<String, Peer>>,
}

/// A SAM v3 datagram session carrying ministreaming streams to and from any destination.
pub struct SamEndpoint {
    shared: Arc<Shared>,
    dest_b64: String,
    accept_rx: Mutex<mpsc::Receiver<Stream>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SamEndpoint {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(mut peers) = self.shared.peers.lock() {
            for (_, p) in peers.drain() {
                for t in &p.tasks {
                    t.abort();
                }
            }
        }
    }
}

/// Splits a SAM reply line into its words and `KEY=VALUE` pairs (values may be quoted).
fn sam_pairs(line: &str) -> (Vec<String>, HashMap<String, String>) {
    let mut words = Vec::new();
    let mut pairs = HashMap::new();
    let mut chars = line.trim_end().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut tok = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
                chars.next();
                continue;
            }
            if c.is_whitespace() && !quoted {
                break;
            }
            tok.push(c);
            chars.next();
        }
        match tok.split_once('=') {
            Some((k, v)) => {
                pairs.insert(k.to_string(), v.to_string());
            }
            None => words.push(tok),
        }
    }
    (words, pairs)
}

async fn read_line(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = (&mut *r).take(MAX_SAM_LINE as u64 + 1).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the SAM bridge closed the connection"));
    }
    if !buf.ends_with(b"\n") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "SAM reply line too long"));
    }
    String::from_utf8(buf).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "SAM reply is not UTF-8"))
}

fn sam_error(what: &str, line: &str) -> io::Error {
    let (_, pairs) = sam_pairs(line);
    let result = pairs.get("RESULT").map(String::as_str).unwrap_or("no RESULT");
    let msg = pairs.get("MESSAGE").map(|m| format!(" ({m})")).unwrap_or_default();
    io::Error::other(format!("SAM {what} failed: {result}{msg}"))
}

impl SamEndpoint {
    /// Opens a SAM session on the router (this builds tunnels and may take tens of
    /// seconds). A `listening` endpoint offers incoming streams to [`SamEndpoint::accept`];
    /// otherwise incoming SYNs are refused with `52`.
    pub async fn create(cfg: SamConfig, listening: bool) -> io::Result<SamEndpoint> {
        let bind: SocketAddr = if cfg.sam.ip().is_loopback() {
            SocketAddr::new(cfg.sam.ip(), 0)
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let udp = UdpSocket::bind(bind).await?;
        // Bursts from the router must not overflow the kernel's default buffer.
        if let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(&udp, UDP_RECV_BUFFER) {
            tracing::debug!("SO_RCVBUF: {e}");
        }
        let udp = Arc::new(udp);
        let udp_port = udp.local_addr()?.port();
        let sam_udp = cfg.sam_udp.unwrap_or_else(|| SocketAddr::new(cfg.sam.ip(), cfg.sam.port().saturating_sub(1)));
        let control = TcpStream::connect(cfg.sam)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot reach the SAM bridge at {}: {e}", cfg.sam)))?;
        let (rd, mut wr) = control.into_split();
        let mut rd = BufReader::new(rd);
        wr.write_all(b"HELLO VERSION MIN=3.0 MAX=3.3\n").await?;
        let hello = read_line(&mut rd).await?;
        if !hello.starts_with("HELLO REPLY") || sam_pairs(&hello).1.get("RESULT").map(String::as_str) != Some("OK") {
            return Err(sam_error("HELLO", &hello));
        }
        let session = format!("omnipeer-{:08x}", rand::random::<u32>());
        let host = if cfg.sam.ip().is_loopback() { cfg.sam.ip().to_string() } else { "0.0.0.0".into() };
        let mut create = format!(
            "SESSION CREATE STYLE=DATAGRAM ID={session} DESTINATION=TRANSIENT SIGNATURE_TYPE=7 PORT={udp_port} HOST={host}"
        );
        for o in &cfg.options {
            if o.contains(char::is_whitespace) || !o.contains('=') {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("SAM option {o:?} is not KEY=VALUE")));
            }
            create.push(' ');
            create.push_str(o);
        }
        create.push('\n');
        wr.write_all(create.as_bytes()).await?;
        let status = tokio::time::timeout(cfg.session_timeout, read_line(&mut rd)).await.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "the router did not create the SAM session in time")
        })??;
        if sam_pairs(&status).1.get("RESULT").map(String::as_str) != Some("OK") {
            return Err(sam_error("SESSION CREATE", &status));
        }
        wr.write_all(b"NAMING LOOKUP NAME=ME\n").await?;
        let me = read_line(&mut rd).await?;
        let pairs = sam_pairs(&me).1;
        let dest_b64 = match (pairs.get("RESULT").map(String::as_str), pairs.get("VALUE")) {
            (Some("OK"), Some(v)) => v.clone(),
            _ => return Err(sam_error("NAMING LOOKUP", &me)),
        };
        let dest = decode_destination(&dest_b64).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let shared = Arc::new(Shared {
            cfg,
            session,
            dest,
            udp,
            sam_udp,
            listening,
            accept_tx,
            peers: StdMutex::new(HashMap::new()),
        });
        // The session lives as long as its control connection: keep it open, answer pings.
        let keeper = tokio::spawn(async move {
            loop {
                match read_line(&mut rd).await {
                    Ok(l) if l.starts_with("PING") => {
                        let pong = format!("PONG{}\n", l.trim_end().strip_prefix("PING").unwrap_or(""));
                        if wr.write_all(pong.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    Ok(l) => tracing::debug!("SAM: {}", l.trim_end()),
                    Err(e) => {
                        tracing::warn!("SAM control connection ended: {e}; the session is gone");
                        break;
                    }
                }
            }
        });
        let receiver = tokio::spawn(receive_loop(shared.clone()));
        Ok(SamEndpoint { shared, dest_b64, accept_rx: Mutex::new(accept_rx), tasks: vec![keeper, receiver] })
    }

    /// Our destination, I2P base64 (what peers pass to [`SamEndpoint::connect`]).
    pub fn destination(&self) -> &str {
        &self.dest_b64
    }

    /// Opens a stream to the destination `dest` (I2P base64). The SYN is resent every
    /// [`SYN_RESEND`] until the ACK; `52` gives `ConnectionRefused`, no answer `TimedOut`.
    pub async fn connect(&self, dest: &str) -> io::Result<Stream> {
        let dest = dest.trim();
        decode_destination(dest).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (cmd, _) = peer(&self.shared, dest).ok_or_else(|| io::Error::other("too many peer destinations"))?;
        let (otx, orx) = oneshot::channel();
        cmd.send(Command::Connect(otx)).await.map_err(|_| super::gone())?;
        orx.await.map_err(|_| super::gone())?
    }

    /// The next incoming stream (listening endpoints only).
    pub async fn accept(&self) -> io::Result<Stream> {
        let mut rx = self.accept_rx.lock().await;
        super::accept_next(&mut rx).await
    }
}

/// The peer's driver (its command sender and its inbound datagram queue), created on
/// first use.
fn peer(shared: &Arc<Shared>, dest: &str) -> Option<(mpsc::Sender<Command>, mpsc::Sender<Vec<u8>>)> {
    let mut peers = shared.peers.lock().ok()?;
    if let Some(p) = peers.get(dest) {
        if !p.cmd.is_closed() {
            return Some((p.cmd.clone(), p.inbound.clone()));
        }
        peers.remove(dest);
    }
    if peers.len() >= MAX_PEERS {
        return None;
    }
    let (driver_side, adapter_side) = tokio::io::duplex(PIPE_BYTES);
    let (drd, dwr) = tokio::io::split(driver_side);
    let mut mgr = Manager::new(shared.cfg.manager(), shared.dest.clone(), Box::new(rand::random::<u32>));
    mgr.set_listening(shared.listening);
    let accept = shared.listening.then(|| shared.accept_tx.clone());
    let cmd = spawn_pipe_driver(drd, dwr, mgr, accept);
    let (ard, mut awr) = tokio::io::split(adapter_side);
    let (inbound, mut inbound_rx) = mpsc::channel::<Vec<u8>>(PEER_QUEUE);
    // Datagrams from the peer -> frames for its manager.
    let to_mgr = tokio::spawn(async move {
        while let Some(m) = inbound_rx.recv().await {
            if awr.write_all(&frame::encode(&m)).await.is_err() {
                break;
            }
        }
    });
    // Frames from the manager -> datagrams to the peer.
    let (udp, sam_udp) = (shared.udp.clone(), shared.sam_udp);
    let header = format!("3.0 {} {}\n", shared.session, dest).into_bytes();
    let rate = shared.cfg.peer_rate;
    let to_net = tokio::spawn(async move {
        let mut next_send = tokio::time::Instant::now();
        let mut ard = ard;
        let mut frames = FrameReader::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut dgram = Vec::with_capacity(header.len() + omnipeer_ministream::MAX_MESSAGE);
        loop {
            match frames.next_message() {
                Ok(Some(m)) => {
                    dgram.clear();
                    dgram.extend_from_slice(&header);
                    dgram.extend_from_slice(&m);
                    tracing::debug!("SAM datagram out: {} message bytes, type {:02x?}", m.len(), m.first());
                    if rate > 0 {
                        let now = tokio::time::Instant::now();
                        if next_send > now {
                            tokio::time::sleep_until(next_send).await;
                        }
                        next_send = next_send.max(now) + Duration::from_secs_f64(dgram.len() as f64 / rate as f64);
                    }
                    if let Err(e) = udp.send_to(&dgram, sam_udp).await {
                        tracing::warn!("SAM datagram to the router: {e}");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(_) => break,
            }
            match ard.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => frames.push(&buf[..n]),
            }
        }
    });
    peers.insert(dest.to_string(), Peer { cmd: cmd.clone(), inbound: inbound.clone(), tasks: [to_mgr, to_net] });
    Some((cmd, inbound))
}

/// Reads the router's datagrams and hands each message to its sender's manager.
async fn receive_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match shared.udp.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                tracing::warn!("SAM UDP socket: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (sender, msg) = match parse_datagram(&buf[..n]) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("SAM datagram dropped: {e}");
                continue;
            }
        };
        tracing::debug!("SAM datagram: {} message bytes, type {:02x?}", msg.len(), msg.first());
        let is_syn = msg.first() == Some(&0xA1);
        let known = {
            let Ok(peers) = shared.peers.lock() else { return };
            peers.get(sender).map(|p| p.inbound.clone())
        };
        let inbound = match known {
            Some(i) => i,
            // Only a SYN may introduce a new peer; anything else from a stranger is stray.
            None if is_syn => match peer(&shared, sender) {
                Some((_, i)) => i,
                None => continue,
            },
            None => continue,
        };
        if inbound.try_send(msg.to_vec()).is_err() {
            tracing::debug!("peer queue full: datagram dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        let (w, p) = sam_pairs("SESSION STATUS RESULT=I2P_ERROR MESSAGE=\"no tunnels here\"\n");
        assert_eq!(w, vec!["SESSION", "STATUS"]);
        assert_eq!(p["RESULT"], "I2P_ERROR");
        assert_eq!(p["MESSAGE"], "no tunnels here");
        let e = sam_error("SESSION CREATE", "SESSION STATUS RESULT=DUPLICATED_ID\n");
        assert_eq!(e.to_string(), "SAM SESSION CREATE failed: DUPLICATED_ID");
    }
}
