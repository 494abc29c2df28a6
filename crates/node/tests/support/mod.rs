//! What the node's integration tests share: our own servers on loopback.
#![allow(dead_code)]

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use omnipeer_node::slsk::{SlskServer, SlskServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// Our Soulseek server on a free loopback port, its accounts in `db`; runs until the
/// token is cancelled.
pub async fn start_slsk(db: &Path) -> (SocketAddr, CancellationToken) {
    let server = SlskServer::bind(SlskServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: db.to_path_buf(),
        motd: String::new(),
        private: false,
        admins: Vec::new(),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(server.run(stop.clone()));
    (addr, stop)
}

/// Our NMDC hub on a free loopback port, registrations in `db`; runs until the token is
/// cancelled.
pub async fn start_hub(db: &Path, hub: HubConfig) -> (SocketAddr, CancellationToken) {
    let server = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub,
        db: db.to_path_buf(),
        register: vec![],
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(server.run(stop.clone()));
    (addr, stop)
}
