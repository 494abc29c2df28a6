//! The NMDC hub with thousands of logged-in users: main-chat broadcast latency (p50/p99
//! over every receiver), login time, and hub memory per user — against a plain TCP
//! fan-out relay (no protocol at all) serving the same clients in the same run.
//!
//! Usage: `cargo build --release -p omnipeer -p omnipeer-bench &&
//!         target/release/nmdc-hub [USERS] [MESSAGES]`   (defaults: 5000 users, 20 messages)
//! The hub runs as a separate `omnipeer dc hub` process so its memory is its own.

mod common;
use common::{ms, pct, rss_kib};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Barrier};

/// Every simulated user's outgoing queue, to broadcast from the load loop.
type Writers = Arc<tokio::sync::Mutex<Vec<mpsc::Sender<Arc<[u8]>>>>>;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let users: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let messages: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let dir = tempfile::tempdir()?;
    let max_users = (users + 10).to_string();
    let (mut hub, addr) = common::spawn_server(
        dir.path(),
        &["dc", "hub", "--listen", "127.0.0.1:0", "--register", "sender:pw:op", "--max-users", &max_users],
    )?;
    let pid = hub.id();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib(pid);

    let result = rt.block_on(async {
        let login_start = Instant::now();
        let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<Duration>();
        let origin = Instant::now();
        let ready = Arc::new(Barrier::new(users + 1));
        let sem = Arc::new(tokio::sync::Semaphore::new(256));
        for i in 0..users {
            let (lat_tx, ready, sem) = (lat_tx.clone(), ready.clone(), sem.clone());
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await.expect("semaphore");
                let mut s = match hub_login(addr, &format!("user{i:05}")).await {
                    Ok(s) => s,
                    Err(e) => panic!("user{i} could not log in: {e:#}"),
                };
                drop(permit);
                ready.wait().await;
                receive_pings(&mut s, messages + 1, origin, lat_tx).await;
            });
        }
        ready.wait().await;
        let login_secs = login_start.elapsed().as_secs_f64();
        let rss_after = rss_kib(pid);
        // The sender is an operator, so the hub's chat flood limit does not apply.
        let mut sender = TcpStream::connect(addr).await?;
        sender.write_all(b"$Supports NoHello|$ValidateNick sender|").await?;
        expect(&mut sender, b"$GetPass|").await?;
        sender.write_all(b"$MyPass pw|").await?;
        expect(&mut sender, b"$Hello sender|").await?;
        sender.write_all(b"$MyINFO $ALL sender x$ $100\x01$$0$|").await?;
        let (mut srd, mut swr) = sender.into_split();
        tokio::spawn(async move {
            let mut b = vec![0u8; 1 << 16];
            while let Ok(n) = srd.read(&mut b).await {
                if n == 0 {
                    break;
                }
            }
        });
        // Warm-up: the logins' $MyINFO broadcasts (N² of them) must drain first. One ping
        // that every user has received marks a quiet hub; its latency is not counted.
        let t = origin.elapsed().as_nanos();
        swr.write_all(format!("<sender> ping {t}|").as_bytes()).await?;
        let mut warm = 0;
        while warm < users {
            match tokio::time::timeout(Duration::from_secs(120), lat_rx.recv()).await {
                Ok(Some(_)) => warm += 1,
                _ => anyhow::bail!("only {warm} of {users} users got the warm-up line"),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..messages {
            let t = origin.elapsed().as_nanos();
            swr.write_all(format!("<sender> ping {t}|").as_bytes()).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(lat_tx);
        let mut lat = Vec::with_capacity(users * messages);
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(20), lat_rx.recv()).await {
            lat.push(d);
            if lat.len() == users * messages {
                break;
            }
        }
        anyhow::Ok((login_secs, rss_after, lat))
    });
    let _ = hub.kill();
    let _ = hub.wait();
    let (login_secs, rss_after, mut lat) = result?;
    lat.sort();
    let hub_p = (pct(&lat, 50.0), pct(&lat, 99.0));
    let delivered = lat.len();

    // Baseline: the same clients on a relay that copies every byte it receives to everyone.
    let (relay_p, relay_n) = rt.block_on(relay_baseline(users, messages))?;

    println!("nmdc-hub: {users} logged-in users, {messages} main-chat lines from one sender");
    println!("  login of all users: {login_secs:.1} s ({:.0} logins/s)", users as f64 / login_secs);
    println!(
        "  hub memory: {:.1} MiB before, {:.1} MiB with {users} users = {:.1} KiB per user",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before)) as f64 / users as f64
    );
    println!(
        "  broadcast latency, hub:        p50 {:>8.2} ms  p99 {:>8.2} ms  ({delivered} deliveries)",
        ms(hub_p.0),
        ms(hub_p.1)
    );
    println!(
        "  broadcast latency, raw relay:  p50 {:>8.2} ms  p99 {:>8.2} ms  ({relay_n} deliveries)",
        ms(relay_p.0),
        ms(relay_p.1)
    );
    println!(
        "  ratio hub / raw relay: p50 {:.2}, p99 {:.2}",
        ms(hub_p.0) / ms(relay_p.0).max(1e-6),
        ms(hub_p.1) / ms(relay_p.1).max(1e-6)
    );
    Ok(())
}

async fn expect(s: &mut TcpStream, needle: &[u8]) -> anyhow::Result<()> {
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(60), async {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = s.read(&mut b).await?;
            anyhow::ensure!(n > 0, "closed waiting for {}", String::from_utf8_lossy(needle));
            got.extend_from_slice(&b[..n]);
            if got.len() > 1 << 16 {
                got.drain(..got.len() - 1024);
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out waiting for {}", String::from_utf8_lossy(needle)))?
}

async fn hub_login(addr: SocketAddr, nick: &str) -> anyhow::Result<TcpStream> {
    let mut s = common::connect_spread(addr, omnipeer_nmdc::hub::MAX_USERS_PER_IP).await?;
    expect(&mut s, b"$HubName").await?;
    // No $GetNickList: a newcomer's list grows with the hub, and this measures chat.
    s.write_all(format!("$Supports NoGetINFO NoHello|$Key x|$ValidateNick {nick}|").as_bytes()).await?;
    expect(&mut s, format!("$Hello {nick}|").as_bytes()).await?;
    s.write_all(
        format!("$Version 1,0091|$MyINFO $ALL {nick} bench<bench V:1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|").as_bytes(),
    )
    .await?;
    Ok(s)
}

/// Read until `messages` pings arrived, reporting each one's latency.
async fn receive_pings(s: &mut TcpStream, messages: usize, origin: Instant, lat: mpsc::UnboundedSender<Duration>) {
    let mut buf = vec![0u8; 1 << 16];
    let mut pending: Vec<u8> = Vec::new();
    let mut seen = 0;
    while seen < messages {
        let n = match tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        let now = origin.elapsed();
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'|') {
            let cmd: Vec<u8> = pending.drain(..=end).collect();
            if let Some(rest) = cmd.strip_prefix(b"<sender> ping ") {
                let t: u128 = String::from_utf8_lossy(&rest[..rest.len() - 1]).parse().unwrap_or(0);
                let _ = lat.send(now.saturating_sub(Duration::from_nanos(t as u64)));
                seen += 1;
            }
        }
    }
}

/// The same fan-out without a protocol: every byte one client sends goes to all.
async fn relay_baseline(users: usize, messages: usize) -> anyhow::Result<((Duration, Duration), usize)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let writers: Writers = Default::default();
    let w2 = writers.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (mut rd, mut wr) = s.into_split();
            let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(4096);
            w2.lock().await.push(tx);
            tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    if wr.write_all(&d).await.is_err() {
                        break;
                    }
                }
            });
            let w3 = w2.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                while let Ok(n) = rd.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                    let data: Arc<[u8]> = b[..n].to_vec().into();
                    for tx in w3.lock().await.iter() {
                        let _ = tx.try_send(data.clone());
                    }
                }
            });
        }
    });
    let origin = Instant::now();
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel();
    let mut conns = Vec::new();
    for _ in 0..users {
        conns.push(TcpStream::connect(addr).await?);
    }
    while writers.lock().await.len() < users {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for mut s in conns {
        let lat_tx = lat_tx.clone();
        tokio::spawn(async move { receive_pings(&mut s, messages, origin, lat_tx).await });
    }
    let mut sender = TcpStream::connect(addr).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..messages {
        let t = origin.elapsed().as_nanos();
        sender.write_all(format!("<sender> ping {t}|").as_bytes()).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(lat_tx);
    let mut lat = Vec::new();
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(20), lat_rx.recv()).await {
        lat.push(d);
        if lat.len() == users * messages {
            break;
        }
    }
    lat.sort();
    let n = lat.len();
    Ok(((pct(&lat, 50.0), pct(&lat, 99.0)), n))
}
