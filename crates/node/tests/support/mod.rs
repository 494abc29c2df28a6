//! What the node's integration tests share: our own servers on loopback.
#![allow(dead_code)]

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use omnipeer_node::slsk::client::{SlskClient, SlskClientConfig};
use omnipeer_node::slsk::{SlskServer, SlskServerConfig};
use omnipeer_slsk::{FrameKind, FrameReader, ServerRequest, ServerResponse};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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

/// A node Soulseek client ("victim") logged in to a server of its own; both stop when the
/// guard drops.
pub async fn node_client() -> (SlskClient, tempfile::TempDir, tokio_util::sync::DropGuard) {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&dir.path().join("server.sqlite")).await;
    let c = SlskClient::start(SlskClientConfig {
        server: addr.to_string(),
        user: "victim".into(),
        password: "pw".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        share: Vec::new(),
        slots: 1,
        uploads: None,
    })
    .await
    .unwrap();
    (c, dir, stop.drop_guard())
}

/// A `u32 len, u32 code` P frame header announcing `len` bytes (code 9, a search reply).
pub fn p_header(len: usize) -> Vec<u8> {
    let mut v = (len as u32).to_le_bytes().to_vec();
    v.extend_from_slice(&9u32.to_le_bytes());
    v
}

/// Log in to the Soulseek server; the LoginResponse.
pub async fn slsk_login(addr: SocketAddr, user: &str) -> (TcpStream, ServerResponse) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&ServerRequest::login(user, "pw", 160, 2).encode()).await.unwrap();
    let mut r = FrameReader::new(FrameKind::Server);
    let mut buf = [0u8; 4096];
    let reply = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(f) = r.next_frame().unwrap() {
                return ServerResponse::decode(f.code, &f.body).unwrap();
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without a LoginResponse");
            r.push(&buf[..n]);
        }
    })
    .await
    .expect("a LoginResponse");
    (s, reply)
}

/// This process's resident memory (VmRSS), in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether the other end closes `s` within `secs` (what is still in flight is read and
/// thrown away).
pub async fn closed_within(s: &mut TcpStream, secs: u64) -> bool {
    let mut buf = vec![0u8; 1 << 20];
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}
