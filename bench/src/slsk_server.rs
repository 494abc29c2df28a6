//! The Soulseek server with many logged-in users (default 10,000): login rate (each login
//! checks an Argon2id hash), memory per user, search fan-out (one search delivered to every
//! other user), and room broadcast latency p50/p99 in a room of up to 1,000 members.
//!
//! Usage: `cargo build --release -p omnipeer -p omnipeer-bench &&
//!         target/release/slsk-server [USERS] [ROOM_MEMBERS]`
//! The server runs as a separate `omnipeer slsk server` process so its memory is its own.

mod common;
use common::{ms, pct, rss_kib};

use omnipeer_slsk::framing::{FrameKind, FrameReader};
use omnipeer_slsk::server::{ServerRequest, ServerResponse};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Barrier};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let users: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let room_members: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1000).min(users);
    let dir = tempfile::tempdir()?;
    let (mut server, addr) = common::spawn_server(dir.path(), &["slsk", "server", "--listen", "127.0.0.1:0"])?;
    let pid = server.id();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib(pid);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async move {
        let origin = Instant::now();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(usize, Kind, Duration)>();
        let ready = Arc::new(Barrier::new(users + 1));
        let joined = Arc::new(Barrier::new(room_members + 1));
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let login_start = Instant::now();
        for i in 0..users {
            let (ev_tx, ready, joined, sem) = (ev_tx.clone(), ready.clone(), joined.clone(), sem.clone());
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await.expect("sem");
                let mut s = login(addr, &format!("user{i:05}")).await.unwrap_or_else(|e| panic!("user{i}: {e:#}"));
                drop(permit);
                ready.wait().await;
                if i < room_members {
                    s.write_all(&ServerRequest::JoinRoom { room: "bench".into(), private: false }.encode())
                        .await
                        .unwrap();
                    joined.wait().await;
                }
                listen(s, i, origin, ev_tx).await;
            });
        }
        ready.wait().await;
        let login_secs = login_start.elapsed().as_secs_f64();
        let rss_after = rss_kib(pid);
        joined.wait().await;
        // The sender: one more user who searches and speaks in the room.
        let mut sender = login(addr, "sender").await?;
        sender.write_all(&ServerRequest::JoinRoom { room: "bench".into(), private: false }.encode()).await?;
        tokio::time::sleep(Duration::from_secs(2)).await; // let the joins' broadcasts drain
        while ev_rx.try_recv().is_ok() {}
        // Search fan-out: each search reaches every user.
        let searches = 5;
        let t = Instant::now();
        for k in 0..searches {
            let stamp = origin.elapsed().as_nanos();
            sender.write_all(&ServerRequest::FileSearch { token: k, query: format!("q {stamp}") }.encode()).await?;
        }
        let mut got = 0;
        while got < searches as usize * users {
            match tokio::time::timeout(Duration::from_secs(60), ev_rx.recv()).await {
                Ok(Some((_, Kind::Search, _))) => got += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let fanout_secs = t.elapsed().as_secs_f64();
        // Room broadcast latency.
        let messages = 20;
        let mut lat = Vec::new();
        for _ in 0..messages {
            let stamp = origin.elapsed().as_nanos();
            sender
                .write_all(&ServerRequest::SayChatroom { room: "bench".into(), message: format!("{stamp}") }.encode())
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while lat.len() < messages * room_members {
            match tokio::time::timeout(Duration::from_secs(20), ev_rx.recv()).await {
                Ok(Some((_, Kind::Room, d))) => lat.push(d),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        anyhow::Ok((login_secs, rss_after, got, fanout_secs, lat))
    });
    let _ = server.kill();
    let _ = server.wait();
    let (login_secs, rss_after, delivered, fanout_secs, mut lat) = result?;
    lat.sort();
    println!("slsk-server: {users} logged-in users, room of {room_members}");
    println!("  login (Argon2id check each): {login_secs:.1} s = {:.0} logins/s", users as f64 / login_secs);
    println!(
        "  server memory: {:.1} MiB before, {:.1} MiB with {users} users = {:.1} KiB per user",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / users as f64
    );
    println!(
        "  search fan-out: {delivered} deliveries in {fanout_secs:.2} s = {:.0} deliveries/s",
        delivered as f64 / fanout_secs
    );
    println!(
        "  room broadcast latency: p50 {:.2} ms, p99 {:.2} ms ({} deliveries)",
        ms(pct(&lat, 50.0)),
        ms(pct(&lat, 99.0)),
        lat.len()
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Room,
}

async fn login(addr: SocketAddr, user: &str) -> anyhow::Result<TcpStream> {
    let per_address = omnipeer_slsk::central::MAX_REGISTRATIONS_PER_IP_PER_HOUR as usize;
    let mut s = common::connect_spread(addr, per_address.min(omnipeer_slsk::central::MAX_SESSIONS_PER_IP)).await?;
    s.write_all(&ServerRequest::login(user, "pw", 177, 1).encode()).await?;
    let mut r = FrameReader::new(FrameKind::Server);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(f) = r.next_frame()? {
            match ServerResponse::from_frame(&f)? {
                ServerResponse::LoginSuccess { .. } => break,
                ServerResponse::LoginFailure { reason, .. } => anyhow::bail!("login failed: {reason}"),
                _ => continue,
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(120), s.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed");
        r.push(&buf[..n]);
    }
    s.write_all(&ServerRequest::SetWaitPort { port: 2234, obfuscation: None }.encode()).await?;
    Ok(s)
}

async fn listen(mut s: TcpStream, me: usize, origin: Instant, tx: mpsc::UnboundedSender<(usize, Kind, Duration)>) {
    let mut r = FrameReader::new(FrameKind::Server);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let now = origin.elapsed();
        r.push(&buf[..n]);
        while let Ok(Some(f)) = r.next_frame() {
            match ServerResponse::from_frame(&f) {
                Ok(ServerResponse::FileSearch { .. }) => {
                    let _ = tx.send((me, Kind::Search, Duration::ZERO));
                }
                Ok(ServerResponse::SayChatroom { message, .. }) => {
                    if let Ok(stamp) = message.parse::<u128>() {
                        let _ = tx.send((me, Kind::Room, now.saturating_sub(Duration::from_nanos(stamp as u64))));
                    }
                }
                _ => {}
            }
        }
    }
}
