//! `omnipeer tox bootstrap`: a Tox DHT node and onion node on one UDP socket — what
//! tox-bootstrapd does, so that c-toxcore peers can bootstrap off us, find each other
//! through our DHT, and use us as an onion hop and announce store; with
//! [`listen_tcp`](BootstrapNode::listen_tcp) also a TCP relay on the same key, as
//! tox-bootstrapd's `tcp_relay_ports` (docs/protocols/tox.md#tcp-relays).

use super::{normalize_addr, os_seed, route, socket_dest, tokio_deadline, Route};
use omnipeer_tox::crypto::{KeyPair, PublicKey};
use omnipeer_tox::dht::{Dht, DhtEvent};
use omnipeer_tox::onion::{OnionNode, OnionNodeEvent};
use omnipeer_tox::packet::BootstrapInfo;
use omnipeer_tox::tcp_relay::{ConnId, ServerOutput, TcpRelayServer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest datagram read.
const RECV_BUF: usize = 4096;
/// Bootstrap info answers queued between two flushes at most.
const MAX_INFO_REPLIES: usize = 256;

/// Frames queued for one relay client's socket; a client that does not read them fast
/// enough is dropped rather than buffered without end.
pub const TCP_WRITE_QUEUE: usize = 256;
/// With fewer free places than this in a client's queue, data routed to it is dropped
/// (the sender's net_crypto sees a loss and slows down) rather than queued; control
/// frames still fit, so a client that reads slowly is not dropped for a burst of data.
pub const TCP_BUSY_BELOW: usize = TCP_WRITE_QUEUE / 4;
/// Reads from all relay clients queued for the node loop (readers wait when it is full).
const TCP_READ_QUEUE: usize = 1024;
/// Largest TCP read handed to the relay at once.
const TCP_READ_BUF: usize = 4096;

/// The TCP relay beside the node.
struct Relay {
    server: TcpRelayServer,
    conns: HashMap<ConnId, (mpsc::Sender<Vec<u8>>, tokio::task::AbortHandle)>,
    tx: mpsc::Sender<(ConnId, Option<Vec<u8>>)>,
}

/// `[tox_bootstrap].tcp_listen` / `--tcp`: `off` → none; empty → the configured UDP
/// address `udp`, same port (port 0 stays 0: a free TCP port); else an address.
pub fn tcp_listen_addr(spec: &str, udp: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    match spec.trim() {
        "off" => Ok(None),
        "" => Ok(Some(udp)),
        s => Ok(Some(s.parse().map_err(|e| anyhow::anyhow!("{s:?}: {e}"))?)),
    }
}

/// A bound bootstrap node; [`run`](BootstrapNode::run) drives it.
pub struct BootstrapNode {
    sock: UdpSocket,
    dht: Dht,
    onion: OnionNode,
    /// The 0xf0 answer, when a MOTD is set.
    info: Option<Vec<u8>>,
    replies: Vec<(SocketAddr, Vec<u8>)>,
    keys: KeyPair,
    tcp_listener: Option<TcpListener>,
    tcp_rx: Option<mpsc::Receiver<(ConnId, Option<Vec<u8>>)>>,
    relay: Option<Relay>,
}

async fn accept_opt(l: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Our version as bootstrap info reports it: tox-bootstrapd sends
/// `1000000000 + major·1000000 + minor·1000 + patch` of its c-toxcore; we send our own
/// version in the same shape.
pub fn info_version() -> u32 {
    let v = |s: &str| s.parse::<u32>().unwrap_or(0);
    1_000_000_000
        + v(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
        + v(env!("CARGO_PKG_VERSION_MINOR")) * 1000
        + v(env!("CARGO_PKG_VERSION_PATCH"))
}

impl BootstrapNode {
    /// Binds `listen` with `keys` as the DHT key pair.
    pub async fn bind(listen: SocketAddr, keys: KeyPair) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(listen).await?;
        let now = Instant::now();
        Ok(BootstrapNode {
            sock,
            dht: Dht::new(keys.clone(), os_seed(), now),
            onion: OnionNode::new(keys.clone(), os_seed(), now),
            info: None,
            replies: Vec::new(),
            keys,
            tcp_listener: None,
            tcp_rx: None,
            relay: None,
        })
    }

    /// Also run a TCP relay on `listen`, with the node's DHT key as the relay key (as
    /// tox-bootstrapd does: clients add it with the same HOST:PORT:KEY triple).
    pub async fn listen_tcp(&mut self, listen: SocketAddr) -> std::io::Result<SocketAddr> {
        let l = TcpListener::bind(listen).await?;
        let addr = l.local_addr()?;
        let (tx, rx) = mpsc::channel(TCP_READ_QUEUE);
        self.tcp_listener = Some(l);
        self.tcp_rx = Some(rx);
        self.relay =
            Some(Relay { server: TcpRelayServer::new(self.keys.clone(), os_seed()), conns: HashMap::new(), tx });
        Ok(addr)
    }

    /// The TCP relay's address, when it runs.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    fn tcp_accept(&mut self, stream: tokio::net::TcpStream) {
        let Some(relay) = self.relay.as_mut() else { return };
        let Some(id) = relay.server.accept(Instant::now()) else {
            tracing::debug!("tox tcp relay: full, refusing a client");
            return;
        };
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(TCP_WRITE_QUEUE);
        tokio::spawn(async move {
            while let Some(b) = wrx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let tx = relay.tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; TCP_READ_BUF];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send((id, None)).await;
                        return;
                    }
                    Ok(n) => {
                        if tx.send((id, Some(buf[..n].to_vec()))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        relay.conns.insert(id, (wtx, reader.abort_handle()));
    }

    /// Moves relay outputs to sockets and onion requests/answers between relay and onion node.
    fn tcp_flush(&mut self) {
        let Some(relay) = self.relay.as_mut() else { return };
        loop {
            let mut moved = false;
            while let Some(o) = relay.server.poll_output() {
                moved = true;
                match o {
                    ServerOutput::Send { conn, data } => {
                        let full = relay.conns.get(&conn).is_some_and(|(w, _)| w.try_send(data).is_err());
                        if full {
                            tracing::debug!("tox tcp relay: client {conn} does not read, dropped");
                            relay.server.closed(conn);
                            if let Some((_, r)) = relay.conns.remove(&conn) {
                                r.abort();
                            }
                        }
                    }
                    ServerOutput::Close { conn } => {
                        if let Some((_, r)) = relay.conns.remove(&conn) {
                            r.abort();
                        }
                    }
                    ServerOutput::OnionRequest { conn, data } => {
                        if let Err(e) = self.onion.handle_tcp_request(conn, &data) {
                            tracing::debug!("tox tcp relay: onion request from {conn}: {e}");
                        }
                    }
                }
            }
            while let Some((conn, resp)) = self.onion.poll_tcp_response() {
                moved = true;
                relay.server.onion_response(conn, &resp);
            }
            if !moved {
                return;
            }
        }
    }

    /// Answer bootstrap info requests (0xf0) with this message of the day, as
    /// tox-bootstrapd with `enable_motd` does (NUL-terminated, at most 256 bytes in all).
    pub fn set_motd(&mut self, motd: &str) {
        let mut m = motd.as_bytes().to_vec();
        m.truncate(BootstrapInfo::MAX_MOTD - 1);
        m.push(0);
        self.info = Some(BootstrapInfo { version: info_version(), motd: m }.encode());
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub fn dht_pk(&self) -> PublicKey {
        self.dht.pk()
    }

    /// Bootstrap off other nodes too (optional).
    pub fn bootstrap(&mut self, nodes: &[(SocketAddr, PublicKey)]) {
        let now = Instant::now();
        for (a, k) in nodes {
            self.dht.bootstrap(*a, *k, now);
        }
    }

    /// Runs until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            self.flush().await;
            let relay_timeout = self.relay.as_ref().and_then(|r| r.server.next_timeout());
            let deadline = tokio_deadline(
                [self.dht.next_timeout(), self.onion.next_timeout(), relay_timeout].into_iter().flatten().min(),
            );
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = accept_opt(self.tcp_listener.as_ref()) => match r {
                    Ok((stream, _)) => self.tcp_accept(stream),
                    Err(e) => tracing::debug!("tox tcp relay: accept: {e}"),
                },
                m = recv_opt(self.tcp_rx.as_mut()) => if let (Some((conn, bytes)), Some(relay)) = (m, self.relay.as_mut()) {
                    match bytes {
                        Some(b) => {
                            for (id, (w, _)) in relay.conns.iter() {
                                relay.server.set_busy(*id, w.capacity() < TCP_BUSY_BELOW);
                            }
                            relay.server.receive(Instant::now(), conn, &b)
                        }
                        None => {
                            relay.server.closed(conn);
                            relay.conns.remove(&conn);
                        }
                    }
                },
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.handle(normalize_addr(from), &buf[..n]),
                    // ICMP errors from earlier sends surface here on Linux; not fatal.
                    Err(e) => tracing::debug!("tox: recv: {e}"),
                },
                _ = tokio::time::sleep_until(deadline) => {}
            }
            let now = Instant::now();
            self.dht.tick(now);
            self.onion.tick(now);
            if let Some(r) = self.relay.as_mut() {
                r.server.tick(now);
            }
        }
    }

    fn handle(&mut self, from: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        let Some(&first) = data.first() else { return };
        if BootstrapInfo::is_request(data) {
            // (bounded: a flood of requests between two flushes is answered in part)
            if let Some(info) = self.info.as_ref().filter(|_| self.replies.len() < MAX_INFO_REPLIES) {
                self.replies.push((from, info.clone()));
            }
            return;
        }
        let r = match route(first) {
            Route::Dht => self.dht.handle_packet(now, from, data).map_err(|e| e.to_string()),
            Route::OnionNode => self.onion.handle_packet(now, from, data, &self.dht).map_err(|e| e.to_string()),
            _ => Err(format!("kind {first:#04x} not handled by a bootstrap node")),
        };
        if let Err(e) = r {
            tracing::debug!("tox: dropped {} bytes from {from}: {e}", data.len());
        }
    }

    async fn flush(&mut self) {
        self.tcp_flush();
        let local = self.sock.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        while let Some(e) = self.dht.poll_event() {
            match e {
                DhtEvent::Found { pk, addr } => tracing::debug!("tox: found {} at {addr}", pk.to_hex()),
                DhtEvent::Request { from, data } => {
                    tracing::debug!(
                        "tox: DHT request {:#04x} from {}",
                        data.first().copied().unwrap_or(0),
                        from.to_hex()
                    )
                }
            }
        }
        while let Some(e) = self.onion.poll_event() {
            if let OnionNodeEvent::Stored { pk, .. } = e {
                tracing::debug!("tox: announcement stored for {}", pk.to_hex());
            }
        }
        let mut replies = std::mem::take(&mut self.replies).into_iter();
        while let Some((to, p)) =
            self.dht.poll_transmit().or_else(|| self.onion.poll_transmit()).or_else(|| replies.next())
        {
            if let Err(e) = self.sock.send_to(&p, socket_dest(local, to)).await {
                tracing::debug!("tox: send to {to}: {e}");
            }
        }
    }
}
