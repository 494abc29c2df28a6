//! The Soulseek server's login path under a storm (issue 14): a user who logged in once in
//! this process comes back without a slow (Argon2id) hash, while a new account or a wrong
//! password still costs one, and a returning user is not queued behind registrations.
//! In a test binary of its own: the slow-hash counter is per process.

use omnipeer_node::store::slow_hashes;
use omnipeer_slsk::{FrameKind, FrameReader, ServerRequest, ServerResponse};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::start_slsk;

/// The slow-hash counter is per process: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Client {
    s: TcpStream,
    r: FrameReader,
}

impl Client {
    async fn send_login(addr: SocketAddr, user: &str, password: &str) -> Client {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&ServerRequest::login(user, password, 160, 2).encode()).await.unwrap();
        Client { s, r: FrameReader::new(FrameKind::Server) }
    }

    /// The next message (generous timeout: Argon2 on a loaded machine).
    async fn next(&mut self) -> Option<ServerResponse> {
        let mut buf = vec![0u8; 4096];
        tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if let Some(f) = self.r.next_frame().unwrap() {
                    return Some(ServerResponse::decode(f.code, &f.body).unwrap());
                }
                let n = self.s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.r.push(&buf[..n]);
            }
        })
        .await
        .expect("an answer in time")
    }

    async fn login(addr: SocketAddr, user: &str, password: &str) -> (Client, bool) {
        let mut c = Client::send_login(addr, user, password).await;
        let ok = match c.next().await {
            Some(ServerResponse::LoginSuccess { .. }) => true,
            Some(ServerResponse::LoginFailure { .. }) | None => false,
            Some(other) => panic!("{other:?} before the login reply"),
        };
        (c, ok)
    }

    /// Log out (close the connection).
    async fn leave(self) {
        let Client { s, .. } = self;
        drop(s);
    }
}

/// Log `user` in (replacing its earlier session if the server has not seen it close yet).
async fn login_ok(addr: SocketAddr, user: &str, password: &str) -> Client {
    let (c, ok) = Client::login(addr, user, password).await;
    assert!(ok, "{user} could not log in");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_users_skip_the_slow_hash_new_accounts_and_wrong_passwords_do_not() {
    let _serial = SERIAL.lock().await;
    let t = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&t.path().join("server.sqlite")).await;
    let users = ["ann", "ben", "cat", "dan"];

    // First logins register: one slow hash each.
    let before = slow_hashes();
    let mut sessions = Vec::new();
    for u in users {
        sessions.push(login_ok(addr, u, &format!("{u}-pw")).await);
    }
    assert_eq!(slow_hashes() - before, users.len() as u64, "a new account costs one slow hash");

    // ann leaves; ben sends her a private message, kept for her.
    sessions.remove(0).leave().await;
    let ben = &mut sessions[0];
    loop {
        ben.s.write_all(&ServerRequest::GetUserStatus { user: "ann".into() }.encode()).await.unwrap();
        let offline = loop {
            if let Some(ServerResponse::GetUserStatus { user, status, .. }) = ben.next().await {
                if user == "ann" {
                    break status == omnipeer_slsk::UserStatus::Offline;
                }
            }
        };
        if offline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ben.s
        .write_all(&ServerRequest::MessageUser { user: "ann".into(), message: "while you were away".into() }.encode())
        .await
        .unwrap();
    // The server has taken the message once it answers the next request.
    ben.s.write_all(&ServerRequest::GetUserStatus { user: "ann".into() }.encode()).await.unwrap();
    while !matches!(ben.next().await, Some(ServerResponse::GetUserStatus { .. })) {}
    // The others leave too, then everyone returns: no slow hash at all.
    for c in sessions.drain(..) {
        c.leave().await;
    }
    let before = slow_hashes();
    for round in 0..3 {
        for u in users {
            let mut c = login_ok(addr, u, &format!("{u}-pw")).await;
            if u == "ann" && round == 0 {
                // The stored message still reaches her.
                loop {
                    match c.next().await.expect("the stored message") {
                        ServerResponse::MessageUser { user, message, new_message, .. } => {
                            assert_eq!(
                                (user.as_str(), message.as_str(), new_message),
                                ("ben", "while you were away", false)
                            );
                            break;
                        }
                        _ => continue,
                    }
                }
            }
            sessions.push(c);
        }
        for c in sessions.drain(..) {
            c.leave().await;
        }
    }
    assert_eq!(slow_hashes() - before, 0, "12 returning logins computed slow hashes");

    // A wrong password for a returning user is refused, after a slow hash (guessing stays slow).
    let before = slow_hashes();
    let (_c, ok) = Client::login(addr, "ben", "guess").await;
    assert!(!ok, "a wrong password was accepted");
    assert_eq!(slow_hashes() - before, 1, "a wrong password must cost a slow hash");
    // And the right one still works, fast.
    let before = slow_hashes();
    let _c = login_ok(addr, "ben", "ben-pw").await;
    assert_eq!(slow_hashes() - before, 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_user_is_not_queued_behind_registrations() {
    let _serial = SERIAL.lock().await;
    let t = tempfile::tempdir().unwrap();
    let (addr, stop) = start_slsk(&t.path().join("server.sqlite")).await;
    login_ok(addr, "regular", "pw").await.leave().await;
    // New users register at once, more than two rounds of slow hashes (the server runs
    // one per core), from several addresses (one address may register only so many).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let total = 2 * cores as u64 + 2;
    let base = slow_hashes();
    let mut new_users = Vec::new();
    for i in 0..total {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(std::net::SocketAddr::from(([127, 0, 0, 2 + (i / 8) as u8], 0))).unwrap();
        let mut s = sock.connect(addr).await.unwrap();
        s.write_all(&ServerRequest::login(&format!("newcomer{i}"), "pw", 160, 2).encode()).await.unwrap();
        new_users.push(Client { s, r: FrameReader::new(FrameKind::Server) });
    }
    // Wait until the first of them is through its hash: all are queued by then.
    let waited = tokio::time::timeout(Duration::from_secs(120), async {
        while slow_hashes() == base {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the registrations never started");
    // The regular is back at once, with registrations still waiting for their turn.
    let _c = login_ok(addr, "regular", "pw").await;
    let done = slow_hashes() - base;
    assert!(done + 2 <= total, "the returning user waited for {done} of {total} registrations");
    for mut c in new_users {
        assert!(matches!(c.next().await, Some(ServerResponse::LoginSuccess { .. })));
    }
    stop.cancel();
}
