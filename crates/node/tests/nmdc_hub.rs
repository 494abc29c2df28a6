//! The NMDC hub over loopback with raw clients: login, chat, registered passwords from the
//! database, bans that survive a restart, and a stuck client that must not stall the hub.

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

async fn start(
    db: &Path,
    register: Vec<(String, String, bool)>,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let server = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub: HubConfig { name: "test".into(), ..Default::default() },
        db: db.to_path_buf(),
        register,
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    (addr, stop, task)
}

fn tail(s: &str) -> &str {
    let mut i = s.len().saturating_sub(300);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

struct Client {
    s: TcpStream,
    got: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client { s: TcpStream::connect(addr).await.unwrap(), got: String::new() }
    }
    /// Connect from another loopback address (bans by address must not hit the others).
    async fn connect_from(addr: SocketAddr, local: &str) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
        Client { s: sock.connect(addr).await.unwrap(), got: String::new() }
    }
    async fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).await.unwrap();
    }
    /// Read until `needle` has arrived (or fail after 5 s).
    async fn expect(&mut self, needle: &str) -> String {
        let mut buf = [0u8; 65536];
        tokio::time::timeout(Duration::from_secs(5), async {
            while !self.got.contains(needle) {
                let n = self.s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed while waiting for {needle:?}; got {:?}", tail(&self.got));
                self.got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", tail(&self.got)));
        let at = self.got.find(needle).unwrap() + needle.len();
        let seen = self.got[..at].to_string();
        self.got.drain(..at);
        seen
    }
    async fn expect_closed(&mut self) -> String {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match self.s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        })
        .await
        .expect("connection closed");
        all
    }
    async fn login(addr: SocketAddr, nick: &str) -> Client {
        Client::login_from(addr, nick, "127.0.0.1").await
    }
    async fn login_from(addr: SocketAddr, nick: &str, local: &str) -> Client {
        let mut c = Client::connect_from(addr, local).await;
        c.expect("$HubName test|").await;
        c.send(&format!("$Supports NoGetINFO NoHello UserIP2|$Key x|$ValidateNick {nick}|")).await;
        c.expect(&format!("$Hello {nick}|")).await;
        c.send(&format!(
            "$Version 1,0091|$MyINFO $ALL {nick} test<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$0$|$GetNickList|"
        ))
        .await;
        c.expect("$OpList ").await;
        c
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_each_other_and_chat() {
    let t = tempfile::tempdir().unwrap();
    let (addr, stop, task) = start(&t.path().join("hub.sqlite"), vec![]).await;
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    alice.expect("$MyINFO $ALL bob ").await;
    bob.send("<bob> hi alice|").await;
    alice.expect("<bob> hi alice|").await;
    bob.send("$To: alice From: bob $<bob> secret|").await;
    alice.expect("$To: alice From: bob $<bob> secret|").await;
    drop(bob);
    alice.expect("$Quit bob|").await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_passwords_and_bans_persist() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("hub.sqlite");
    let (addr, stop, task) = start(&db, vec![("boss".into(), "s3cret".into(), true)]).await;
    // Wrong password.
    let mut c = Client::connect(addr).await;
    c.send("$Supports NoHello|$ValidateNick boss|").await;
    c.expect("$GetPass|").await;
    c.send("$MyPass wrong|").await;
    assert!(c.expect_closed().await.contains("$BadPass|"));
    // Right password: an operator.
    let mut boss = Client::connect(addr).await;
    boss.send("$Supports NoHello|$ValidateNick boss|").await;
    boss.expect("$GetPass|").await;
    boss.send("$MyPass s3cret|").await;
    boss.expect("$Hello boss|$LogedIn boss|").await;
    boss.send("$MyINFO $ALL boss x$ $100\x01$$0$|$GetNickList|").await;
    boss.expect("$OpList boss$$|").await;
    let mut troll = Client::login_from(addr, "troll", "127.0.0.66").await;
    boss.send("<boss> !ban troll 1d flooding|").await;
    assert!(troll.expect_closed().await.contains("banned"));
    boss.send("<boss> !reg carol pw|").await;
    boss.expect("carol is registered").await;
    stop.cancel();
    task.await.unwrap().unwrap();

    // After a restart: the ban (nick and address) and both registrations are still there.
    let (addr, stop, task) = start(&db, vec![]).await;
    let mut troll = Client::connect(addr).await;
    troll.send("$ValidateNick troll|").await;
    assert!(troll.expect_closed().await.contains("You are banned"));
    let mut other = Client::connect_from(addr, "127.0.0.66").await;
    assert!(other.expect_closed().await.contains("You are banned"), "the address is banned too");
    let mut carol = Client::connect(addr).await;
    carol.send("$ValidateNick carol|").await;
    carol.expect("$GetPass|").await;
    carol.send("$MyPass pw|").await;
    carol.expect("$Hello carol|").await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_is_dropped_and_nobody_else_waits() {
    let t = tempfile::tempdir().unwrap();
    let (addr, stop, task) = start(&t.path().join("hub.sqlite"), vec![("op".into(), "pw".into(), true)]).await;
    // The stuck client logs in and then never reads again.
    let mut stuck = Client::login(addr, "stuck").await;
    let mut alice = Client::login(addr, "alice").await;
    let mut op = Client::connect(addr).await;
    op.send("$Supports NoHello|$ValidateNick op|").await;
    op.expect("$GetPass|").await;
    op.send("$MyPass pw|").await;
    op.expect("$Hello op|").await;
    op.send("$MyINFO $ALL op x$ $100\x01$$0$|").await;
    // Operators are not rate-limited: 20 000 lines of 1 KiB (20 MiB) to everybody. The
    // operator reads its own echo while it writes.
    let line = format!("<op> {}|", "x".repeat(1024));
    let (mut op_rd, mut op_wr) = op.s.into_split();
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = op_rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        for _ in 0..20_000 {
            op_wr.write_all(line.as_bytes()).await.unwrap();
        }
        op_wr.write_all(b"<op> the end|").await.unwrap();
        op_wr
    });
    // alice keeps reading (as fast as a real client) and gets everything up to the last line.
    let mut buf = vec![0u8; 1 << 16];
    let mut window: Vec<u8> = Vec::new();
    let mut total = 0usize;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = alice.s.read(&mut buf).await.unwrap();
            assert!(n > 0, "alice was disconnected after {total} bytes");
            total += n;
            window.extend_from_slice(&buf[..n]);
            if window.windows(13).any(|w| w == b"<op> the end|") {
                break;
            }
            let keep = window.len().saturating_sub(16);
            window.drain(..keep);
        }
    })
    .await
    .expect("alice got the last line");
    assert!(total > 20_000 * 1024, "alice got all {total} bytes");
    let _op = writer.await.unwrap();
    drain.abort();
    // The stuck client was cut off: reading now finds the end of the stream.
    let mut buf = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stuck.s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the stuck client was disconnected");
    stop.cancel();
    task.await.unwrap().unwrap();
}
