//! A client that stops reading must cost the hub a bounded amount of memory: its queue is
//! capped (`serve::MAX_QUEUED_BYTES`) and it is dropped, not buffered without end. In a
//! test binary of its own, because it measures this process's VmRSS.
//!
//! The stuck client asks for the user list over and over without reading any of it (each
//! list is ~120 KiB here). Before the byte cap, a queue of 4096 messages per client took
//! all of those lists: about 120 MB held for one client, which was never dropped.

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

mod support;
use support::{closed_within, rss_kib};

/// Read from `s` until `needle` arrived (keeping only a short tail), or fail after `secs`.
async fn read_until(s: &mut TcpStream, needle: &[u8], secs: u64) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 16];
    let mut window: Vec<u8> = Vec::new();
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed".to_string());
            }
            window.extend_from_slice(&buf[..n]);
            if window.windows(needle.len()).any(|w| w == needle) {
                return Ok(());
            }
            let keep = window.len().saturating_sub(needle.len());
            window.drain(..keep);
        }
    })
    .await
    .map_err(|_| format!("no {} within {secs} s", String::from_utf8_lossy(needle)))?
}

async fn login(addr: SocketAddr, nick: &str, desc: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    read_until(&mut s, b"$HubName", 30).await.unwrap();
    s.write_all(format!("$Supports NoGetINFO NoHello UserIP2|$Key x|$ValidateNick {nick}|").as_bytes()).await.unwrap();
    read_until(&mut s, format!("$Hello {nick}|").as_bytes(), 30).await.unwrap();
    s.write_all(
        format!("$Version 1,0091|$MyINFO $ALL {nick} {desc}<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$0$|").as_bytes(),
    )
    .await
    .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_with_its_queue_capped() {
    let t = tempfile::tempdir().unwrap();
    let server = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        // Every user comes from 127.0.0.1 here.
        hub: HubConfig { max_users_per_ip: 0, max_logins_per_ip_per_minute: 0, ..Default::default() },
        db: t.path().join("hub.sqlite"),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));

    // 60 users with 2 KiB descriptions: the user list is about 120 KiB.
    let desc = "d".repeat(2048);
    let mut users = Vec::new();
    for i in 0..60 {
        // Whatever they are sent piles up in their kernel buffers only (~120 KiB each).
        users.push(login(addr, &format!("user{i:02}"), &desc).await);
    }
    let mut watcher = login(addr, "watcher", "w").await;
    watcher.write_all(b"$GetNickList|").await.unwrap();
    read_until(&mut watcher, b"$OpList ", 30).await.unwrap();
    let mut stuck = login(addr, "stuck", "s").await;
    read_until(&mut watcher, b"$MyINFO $ALL stuck ", 30).await.unwrap();
    // Let the logins settle, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();

    // 1000 list requests, never read: 120 MB of lists if all were queued.
    stuck.write_all("$GetNickList|".repeat(1000).as_bytes()).await.unwrap();
    let dropped = read_until(&mut watcher, b"$Quit stuck|", 60).await;
    let grown = rss_kib().saturating_sub(before);
    eprintln!("VmRSS grew by {grown} KiB while the stuck client asked for 120 MB of lists");
    assert!(dropped.is_ok(), "the stuck client was not dropped: {dropped:?}");
    assert!(grown < 40 * 1024, "RSS grew by {grown} KiB for one stuck client");

    // The hub still serves: the stuck client's connection is closed, a newcomer gets in.
    let closed = closed_within(&mut stuck, 30).await;
    assert!(closed, "the stuck client's connection was closed");
    let _late = login(addr, "late", "l").await;
    read_until(&mut watcher, b"$MyINFO $ALL late ", 30).await.unwrap();
    drop(users);
    stop.cancel();
    task.await.unwrap().unwrap();
}
