//! `omnipeer tox bootstrap`: a Tox DHT node and onion node on one UDP socket — what
//! tox-bootstrapd does, so that c-toxcore peers can bootstrap off us, find each other
//! through our DHT, and use us as an onion hop and announce store.

use super::{normalize_addr, os_seed, route, socket_dest, tokio_deadline, Route};
use omnipeer_tox::crypto::{KeyPair, PublicKey};
use omnipeer_tox::dht::{Dht, DhtEvent};
use omnipeer_tox::onion::{OnionNode, OnionNodeEvent};
use omnipeer_tox::packet::BootstrapInfo;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Largest datagram read.
const RECV_BUF: usize = 4096;
/// Bootstrap info answers queued between two flushes at most.
const MAX_INFO_REPLIES: usize = 256;

/// A bound bootstrap node; [`run`](BootstrapNode::run) drives it.
pub struct BootstrapNode {
    sock: UdpSocket,
    dht: Dht,
    onion: OnionNode,
    /// The 0xf0 answer, when a MOTD is set.
    info: Option<Vec<u8>>,
    replies: Vec<(SocketAddr, Vec<u8>)>,
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
            onion: OnionNode::new(keys, os_seed(), now),
            info: None,
            replies: Vec::new(),
        })
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
            let deadline =
                tokio_deadline([self.dht.next_timeout(), self.onion.next_timeout()].into_iter().flatten().min());
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
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
