//! `omnipeer tox bootstrap`: a Tox DHT node and onion node on one UDP socket — what
//! tox-bootstrapd does, so that c-toxcore peers can bootstrap off us, find each other
//! through our DHT, and use us as an onion hop and announce store.

use super::{normalize_addr, route, socket_dest, tokio_deadline, Route};
use omnipeer_tox::crypto::{KeyPair, PublicKey};
use omnipeer_tox::dht::{Dht, DhtEvent};
use omnipeer_tox::onion::{OnionNode, OnionNodeEvent};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Largest datagram read.
const RECV_BUF: usize = 4096;

/// A bound bootstrap node; [`run`](BootstrapNode::run) drives it.
pub struct BootstrapNode {
    sock: UdpSocket,
    dht: Dht,
    onion: OnionNode,
}

impl BootstrapNode {
    /// Binds `listen` with `keys` as the DHT key pair.
    pub async fn bind(listen: SocketAddr, keys: KeyPair) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(listen).await?;
        let now = Instant::now();
        Ok(BootstrapNode { sock, dht: Dht::new(keys.clone(), now), onion: OnionNode::new(keys, now) })
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
            let deadline = tokio_deadline(
                [self.dht.next_timeout(), self.onion.next_timeout()].into_iter().flatten().min(),
            );
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
                    tracing::debug!("tox: DHT request {:#04x} from {}", data.first().copied().unwrap_or(0), from.to_hex())
                }
            }
        }
        while let Some(e) = self.onion.poll_event() {
            if let OnionNodeEvent::Stored { pk, .. } = e {
                tracing::debug!("tox: announcement stored for {}", pk.to_hex());
            }
        }
        while let Some((to, p)) = self.dht.poll_transmit().or_else(|| self.onion.poll_transmit()) {
            if let Err(e) = self.sock.send_to(&p, socket_dest(local, to)).await {
                tracing::debug!("tox: send to {to}: {e}");
            }
        }
    }
}
