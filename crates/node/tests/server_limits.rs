//! The NMDC hub and the Soulseek server against one flooding address, over loopback: one
//! address cannot fill the hub nor log in without end, the nick kept for the node's own
//! client still gets in, a Soulseek registration flood stops at its cap, and unfinished
//! huge frames before login are dropped at once instead of being buffered.

use omnipeer_nmdc::hub::{HubConfig, ReservedNick, MAX_LOGINS_PER_IP_PER_MINUTE, MAX_USERS_PER_IP};
use omnipeer_slsk::central::MAX_REGISTRATIONS_PER_IP_PER_HOUR;
use omnipeer_slsk::server::login_failure;
use omnipeer_slsk::ServerResponse;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::{slsk_login, start_hub, start_slsk};

async fn connect_from(addr: SocketAddr, local: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    sock.connect(addr).await.unwrap()
}

/// A raw NMDC hub user.
struct User {
    s: TcpStream,
    got: String,
}

impl User {
    async fn connect(addr: SocketAddr, local: &str) -> User {
        User { s: connect_from(addr, local).await, got: String::new() }
    }
    async fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).await.unwrap();
    }
    /// Read until `needle` arrives, or everything up to the close if the hub closes first.
    /// Returns what was read and whether the needle came.
    async fn read_until(&mut self, needle: &str) -> (String, bool) {
        let mut buf = vec![0u8; 65536];
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while !self.got.contains(needle) {
                match self.s.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => self.got.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            true
        })
        .await
        .unwrap_or_else(|_| panic!("neither {needle:?} nor a close; got {:?}", self.got));
        (std::mem::take(&mut self.got), found)
    }
    async fn expect(&mut self, needle: &str) -> String {
        let (got, found) = self.read_until(needle).await;
        assert!(found, "closed without {needle:?}; got {got:?}");
        got
    }
    async fn expect_closed(&mut self) -> String {
        let (got, found) = self.read_until("\u{0}never\u{0}").await;
        assert!(!found);
        got
    }
    /// Log in like ncdc. `None` if the hub refused (what it said, up to the close).
    async fn login(addr: SocketAddr, nick: &str, local: &str) -> Result<User, String> {
        let mut u = User::connect(addr, local).await;
        u.expect("$HubName").await;
        u.send(&format!("$Supports NoGetINFO NoHello UserIP2|$Key x|$ValidateNick {nick}|")).await;
        let (got, hello) = u.read_until(&format!("$Hello {nick}|")).await;
        if !hello {
            return Err(got);
        }
        u.send(&format!(
            "$Version 1,0091|$MyINFO $ALL {nick} x<ncdc V:1.23.1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|$GetNickList|"
        ))
        .await;
        u.expect("$OpList ").await;
        Ok(u)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_hub_and_the_nodes_own_nick_still_gets_in() {
    let t = tempfile::tempdir().unwrap();
    let cfg = HubConfig {
        name: "test".into(),
        reserved: Some(ReservedNick { nick: "node".into(), password: "n0de-secret".into() }),
        ..Default::default()
    };
    let (addr, stop) = start_hub(&t.path().join("hub.sqlite"), cfg).await;
    let mut users = Vec::new();
    for i in 0..MAX_USERS_PER_IP {
        users.push(User::login(addr, &format!("flood{i}"), "127.0.0.1").await.expect("under the cap"));
    }
    // One more from the same address: told why, then $HubIsFull, then closed.
    let refused = User::login(addr, "flood_more", "127.0.0.1").await.err().expect("refused");
    assert!(refused.contains(&format!("at most {MAX_USERS_PER_IP} users from one address")), "{refused}");
    assert!(refused.ends_with("$HubIsFull|"), "{refused}");
    // A user from another address gets in.
    let mut other = User::login(addr, "other", "127.0.0.2").await.expect("another address");
    // The nick kept for the node's client is not given to a guess...
    let mut thief = User::connect(addr, "127.0.0.1").await;
    thief.send("$Supports NoHello|$ValidateNick node|").await;
    thief.expect("$GetPass|").await;
    thief.send("$MyPass guess|").await;
    assert!(thief.expect_closed().await.contains("$BadPass|"));
    // ...but the node's client gets in from the full address, past every limit.
    let mut node = User::connect(addr, "127.0.0.1").await;
    node.send("$Supports NoHello|$ValidateNick node|").await;
    node.expect("$GetPass|").await;
    node.send("$MyPass n0de-secret|").await;
    node.expect("$Hello node|").await;
    node.send("$MyINFO $ALL node x$ $100\x01$$0$|$GetNickList|").await;
    node.expect("$OpList ").await;
    // Nobody already in was dropped: the first user's chat reaches everybody.
    users[0].send("<flood0> still here|").await;
    for u in users.iter_mut().skip(1) {
        u.expect("<flood0> still here|").await;
    }
    other.expect("<flood0> still here|").await;
    node.expect("<flood0> still here|").await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_from_one_address_are_rate_limited() {
    let t = tempfile::tempdir().unwrap();
    // The per-address user cap off: users leaving may be noticed after the next arrives.
    let cfg = HubConfig { name: "test".into(), max_users_per_ip: 0, ..Default::default() };
    let (addr, stop) = start_hub(&t.path().join("hub.sqlite"), cfg).await;
    for i in 0..MAX_LOGINS_PER_IP_PER_MINUTE {
        let u = User::login(addr, &format!("again{i}"), "127.0.0.1").await.expect("within the rate");
        drop(u);
    }
    let refused = User::login(addr, "again_more", "127.0.0.1").await.err().expect("refused");
    assert!(refused.contains("Too many logins from your address (127.0.0.1)"), "{refused}");
    User::login(addr, "elsewhere", "127.0.0.3").await.expect("another address");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soulseek_registration_flood_from_one_address_stops_at_the_cap() {
    let t = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&t.path().join("server.sqlite")).await;
    let cap = MAX_REGISTRATIONS_PER_IP_PER_HOUR as usize;
    let (mut made, mut refused) = (0, 0);
    for i in 0..cap + 5 {
        let (s, reply) = slsk_login(addr, &format!("flood{i}")).await;
        match reply {
            ServerResponse::LoginSuccess { .. } => made += 1,
            ServerResponse::LoginFailure { reason, .. } => {
                assert_eq!(reason, login_failure::TOO_MANY_REGISTRATIONS);
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
        drop(s);
    }
    assert_eq!((made, refused), (cap, 5), "accounts made and refused from one address");
    // An account made before still logs in from that address.
    let (_s, reply) = slsk_login(addr, "flood0").await;
    assert!(matches!(reply, ServerResponse::LoginSuccess { .. }), "{reply:?}");
    stop.cancel();
}
