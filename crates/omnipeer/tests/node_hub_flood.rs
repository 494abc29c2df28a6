//! A node's own hub flooded from the loopback address its own NMDC client logs in from:
//! the flood stops at the per-address cap and the login rate, and the node's client, kicked
//! out while the flood holds the address, logs in again (its nick is kept for it, past
//! every per-address limit).

mod omni;

use omni::node::{server_config, wait_for, Node, Ports};
use omni::Omni;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw NMDC hub user.
struct User {
    s: TcpStream,
    got: String,
}

impl User {
    async fn connect(addr: SocketAddr, local: &str) -> User {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
        User { s: sock.connect(addr).await.unwrap(), got: String::new() }
    }
    async fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).await.unwrap();
    }
    /// Read until `needle` (true) or the close (false).
    async fn read_until(&mut self, needle: &str, secs: u64) -> (String, bool) {
        let mut buf = vec![0u8; 65536];
        let found = tokio::time::timeout(Duration::from_secs(secs), async {
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
        let got = match self.got.find(needle) {
            Some(at) if found => self.got.drain(..at + needle.len()).collect(),
            _ => std::mem::take(&mut self.got),
        };
        (got, found)
    }
    async fn expect(&mut self, needle: &str, secs: u64) -> String {
        let (got, found) = self.read_until(needle, secs).await;
        assert!(found, "closed without {needle:?}; got {got:?}");
        got
    }
    /// Log in like ncdc; `Err` with what the hub said if it refused.
    async fn login(addr: SocketAddr, nick: &str) -> Result<User, String> {
        let mut u = User::connect(addr, "127.0.0.1").await;
        u.expect("$HubName", 20).await;
        u.send(&format!("$Supports NoGetINFO NoHello UserIP2|$Key x|$ValidateNick {nick}|")).await;
        let (got, hello) = u.read_until(&format!("$Hello {nick}|"), 20).await;
        if !hello {
            return Err(got);
        }
        u.send(&format!(
            "$Version 1,0091|$MyINFO $ALL {nick} x<ncdc V:1.23.1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|$GetNickList|"
        ))
        .await;
        u.expect("$OpList ", 20).await;
        Ok(u)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_flood_cannot_keep_the_nodes_own_client_off_its_hub() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("node");
    std::fs::create_dir_all(&dir).unwrap();
    // An operator registered in the hub's database beforehand (to kick the node's client).
    {
        let hub = Omni::start_in(&dir, &["dc", "hub", "--listen", "127.0.0.1:0", "--register", "op:pw:op"]);
        hub.wait_line("listening on");
    }
    let ports = Ports::free();
    let node = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || Node::start(&dir, &server_config("keeper", ports), ports.api)
    })
    .await
    .unwrap();
    let hub: SocketAddr = format!("127.0.0.1:{}", ports.hub).parse().unwrap();

    // The flood from the node client's own address: 8 users, then refusals.
    let mut flood = Vec::new();
    for i in 0..8 {
        flood.push(User::login(hub, &format!("flood{i}")).await.expect("under the per-address cap"));
    }
    let refused = User::login(hub, "flood8").await.err().expect("over the per-address cap");
    assert!(refused.contains("at most 8 users from one address") && refused.ends_with("$HubIsFull|"), "{refused}");
    // Keep trying until the address's logins for the minute are used up.
    let mut rate_limited = false;
    for i in 9..40 {
        let said = User::login(hub, &format!("flood{i}")).await.err().expect("refused");
        if said.contains("Too many logins from your address") {
            rate_limited = true;
            break;
        }
    }
    assert!(rate_limited, "the login rate of the address ran out");

    // The node's client is kicked; it logs in again from that same address.
    let mut op = User::connect(hub, "127.0.0.2").await;
    op.send("$Supports NoHello|$ValidateNick op|").await;
    op.expect("$GetPass|", 20).await;
    op.send("$MyPass pw|").await;
    op.expect("$Hello op|", 20).await;
    op.send("$MyINFO $ALL op x$ $100\x01$$0$|<op> !kick keeper flood test|").await;
    flood[0].expect("keeper was kicked by op", 20).await;
    flood[0].expect("$MyINFO $ALL keeper ", 60).await;
    wait_for("the node's NMDC client online again", 60, || {
        let s = node.get("/api/status");
        let nets = s["networks"].as_array()?.clone();
        nets.iter().any(|x| x["name"] == "nmdc_client" && x["state"] == "online").then_some(())
    });
    // Nobody of the flood was dropped for it.
    flood[7].send("<flood7> still here|").await;
    flood[1].expect("<flood7> still here|", 20).await;
    drop(node);
}
