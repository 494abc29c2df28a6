//! Direct Connect over TLS (docs/protocols/nmdc.md#tls): our NMDC hub's TLS port
//! (`nmdcs://`), keyprint pinning (`?kp=`), and TLS client-to-client transfers
//! (`$ConnectToMe <nick> <ip>:<port>S`), between omnipeer nodes and with EiskaltDC++ 2.4.2.
//!
//! Also the NMDC niceties beside it: a TTH search (type 9) is exact on both ends.
//!
//! The EiskaltDC++ test skips (and passes) when eiskaltdcpp-daemon or rhash is not
//! installed; `scripts/install-test-deps.sh` installs them.

mod omni;
mod support;

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_nmdc::transfer::Identifier;
use omnipeer_node::nmdc::cc::DownloadJob;
use omnipeer_node::nmdc::client::{ClientConfig, DcClient};
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use omnipeer_node::tls::TlsIdentity;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::eiskalt::{Eiskalt, EiskaltConfig};
use support::{free_port, sha256_file, wait_until};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(60);

/// Our hub with a plain port and a TLS port; returns (plain, tls address, keyprint).
async fn tls_hub(dir: &Path, stop: &CancellationToken) -> (String, String, String) {
    let mut hub = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub: HubConfig { name: "tls test".into(), ..Default::default() },
        db: dir.join("hub.sqlite"),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let identity = TlsIdentity::load_or_create(&dir.join("hub-data")).unwrap();
    let kp = identity.keyprint().to_owned();
    let tls = hub.listen_tls("127.0.0.1:0".parse().unwrap(), identity).unwrap();
    let plain = hub.local_addr().to_string();
    tokio::spawn(hub.run(stop.clone()));
    (plain, tls.to_string(), kp)
}

fn config(hub: &str, nick: &str, dir: &Path, share: Vec<PathBuf>, active: bool) -> ClientConfig {
    // Each node its own data dir (its own certificate).
    let data = dir.join(nick);
    std::fs::create_dir_all(&data).unwrap();
    ClientConfig {
        hub: hub.into(),
        nick: nick.into(),
        password: None,
        listen: active.then(|| "127.0.0.1:0".parse().unwrap()),
        share,
        slots: 2,
        uploads: None,
        db: data.join("node.sqlite"),
        description: String::new(),
    }
}

fn job(what: Identifier, out: &Path) -> DownloadJob {
    DownloadJob { what, out: out.to_owned(), progress: Arc::default(), total: Arc::default(), control: Arc::default() }
}

/// An omnipeer node on our hub over `nmdcs://`: with the hub's keyprint it logs in; with
/// another one it is refused before a byte of NMDC, and the error names both keyprints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_on_our_hub_over_nmdcs_right_and_wrong_keyprint() {
    let dir = support::temp_dir("tlskp-");
    let stop = CancellationToken::new();
    let (_plain, tls, kp) = tls_hub(dir.path(), &stop).await;

    let right = DcClient::start(config(&format!("nmdcs://{tls}/?kp={kp}"), "alice", dir.path(), vec![], false))
        .await
        .expect("the right keyprint logs in");
    assert!(right.users().await.unwrap().iter().any(|u| u == "alice"), "alice is on the hub");
    // Without a keyprint: any certificate (as ncdc and AirDC++ do).
    let open = DcClient::start(config(&format!("nmdcs://{tls}"), "carol", dir.path(), vec![], false)).await.unwrap();

    let wrong = TlsIdentity::generate().unwrap();
    let e = match DcClient::start(config(
        &format!("nmdcs://{tls}/?kp={}", wrong.keyprint()),
        "mallory",
        dir.path(),
        vec![],
        false,
    ))
    .await
    {
        Ok(_) => panic!("a wrong keyprint logged in"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("pinned") && e.contains(wrong.keyprint()) && e.contains(&kp), "{e}");
    assert!(!right.users().await.unwrap().iter().any(|u| u == "mallory"));
    open.stop().await.unwrap();
    right.stop().await.unwrap();
    stop.cancel();
}

/// Two omnipeer nodes on our hub's TLS port: the downloader asks for `$ConnectToMe …S`
/// (both advertise TLS), the transfer runs over TLS and the bytes are the file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_download_between_two_nodes() {
    let dir = support::temp_dir("tlscc-");
    let stop = CancellationToken::new();
    let (_plain, tls, kp) = tls_hub(dir.path(), &stop).await;
    let hub = format!("nmdcs://{tls}/?kp={kp}");
    let share = dir.path().join("pub");
    std::fs::create_dir_all(&share).unwrap();
    let file = share.join("payload.bin");
    support::write_test_file(&file, (3 << 20) + 17, 5);

    let sharer = DcClient::start(config(&hub, "sharer", dir.path(), vec![share.clone()], true)).await.unwrap();
    let getter_share = dir.path().join("getter-pub");
    std::fs::create_dir_all(&getter_share).unwrap();
    support::write_test_file(&getter_share.join("small.txt"), 1000, 6);
    // Both active: the getter sends `$ConnectToMe sharer <ip>:<port>S`, the sharer connects
    // back with TLS.
    let getter = DcClient::start(config(&hub, "getter", dir.path(), vec![getter_share], true)).await.unwrap();
    let out = dir.path().join("got.bin");
    let tth = omnipeer_node::nmdc::cc::file_tth(&file).unwrap();
    let got = getter.download("sharer", &job(Identifier::Tth(tth), &out)).await.unwrap();
    assert!(got.tls, "the client-to-client connection was plain");
    assert_eq!(got.size, (3 << 20) + 17);
    assert_eq!(sha256_file(&out), sha256_file(&file));
    // The other way round too (the sharer downloads the getter's file list, over TLS).
    let list = sharer.file_list("getter", &dir.path().join("lists"), 1000).await;
    assert!(list.is_ok(), "{list:?}");
    getter.stop().await.unwrap();
    sharer.stop().await.unwrap();
    stop.cancel();
}

/// EiskaltDC++ on our hub over `nmdcs://` with TLS required for client-to-client
/// connections (`RequireTLS=1`: a plain one is refused), and omnipeer downloading from it
/// and it from omnipeer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eiskalt_on_our_hub_over_nmdcs_with_tls_transfers() {
    if !support::require("eiskalt_on_our_hub_over_nmdcs", &["eiskaltdcpp-daemon", "rhash"]) {
        return;
    }
    let dir = support::temp_dir("tlsek-");
    let stop = CancellationToken::new();
    let (_plain, tls, kp) = tls_hub(dir.path(), &stop).await;

    // Each side shares a file.
    let ours = dir.path().join("ours");
    std::fs::create_dir_all(&ours).unwrap();
    let our_file = ours.join("from-omnipeer.bin");
    support::write_test_file(&our_file, (2 << 20) + 3, 11);
    let our_tth = support::tth_rhash(&our_file).unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    let their_file = theirs.join("from-eiskalt.bin");
    support::write_test_file(&their_file, (1 << 20) + 5, 12);
    let their_tth = support::tth_rhash(&their_file).unwrap();

    let node =
        DcClient::start(config(&format!("nmdcs://{tls}/?kp={kp}"), "omni", dir.path(), vec![ours.clone()], true))
            .await
            .unwrap();
    let ek_cfg = EiskaltConfig {
        nick: "bob".into(),
        hub: format!("nmdcs://{tls}"),
        share: Some(theirs.clone()),
        active_port: Some(free_port()),
        ..Default::default()
    };
    let ek = Arc::new(tokio::task::spawn_blocking(move || Eiskalt::start_with_tls(ek_cfg, true)).await.unwrap());
    let e = ek.clone();
    let seen = tokio::task::spawn_blocking(move || {
        e.wait_logged_in(T) && wait_until(T, || e.users().contains(&"omni".to_owned()))
    })
    .await
    .unwrap();
    assert!(seen, "eiskalt logged in over nmdcs:// and sees omni; its output:\n{}", ek.daemon_output());
    let until = std::time::Instant::now() + T;
    while !node.users().await.unwrap().iter().any(|u| u == "bob") {
        assert!(std::time::Instant::now() < until, "omni never saw bob");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // EiskaltDC++ downloads from omnipeer: queue the file, fetch our list, match.
    let e = ek.clone();
    let tth = our_tth.clone();
    let queued = tokio::task::spawn_blocking(move || {
        e.add_by_tth("from-omnipeer.bin", (2 << 20) + 3, &tth, &e.download_dir()).is_ok()
            && e.download_filelist("omni").is_ok()
            && e.wait_filelist("omni", T).is_some()
            && e.match_lists().is_ok()
    })
    .await
    .unwrap();
    assert!(queued, "eiskalt fetched omni's file list over TLS; output:\n{}", ek.daemon_output());
    let e = ek.clone();
    let target = ek.download_dir().join("from-omnipeer.bin");
    let t2 = target.clone();
    let fetched = tokio::task::spawn_blocking(move || e.wait_file(&t2, T)).await.unwrap();
    assert!(fetched, "eiskalt downloaded from omni; output:\n{}", ek.daemon_output());
    assert_eq!(sha256_file(&target), sha256_file(&our_file));

    // omnipeer downloads from EiskaltDC++: $ConnectToMe bob 127.0.0.1:<port>S.
    let out = dir.path().join("got-from-eiskalt.bin");
    let t = omnipeer_nmdc::tth::Tth::from_base32(&their_tth).unwrap();
    let got = node.download("bob", &job(Identifier::Tth(t), &out)).await.unwrap();
    assert!(got.tls, "the connection with eiskalt was plain");
    assert_eq!(sha256_file(&out), sha256_file(&their_file));
    node.stop().await.unwrap();
    stop.cancel();
}

/// `omnipeer dc search --tth` shows only results with that TTH: a peer that answers a TTH
/// search with another file (a client matching `TTH:…` as words, or a liar) is not a hit,
/// and a sharer answers with exactly the file whose root it is (`TTH:<root>` in its `$SR`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tth_search_shows_only_that_file() {
    let dir = support::temp_dir("tth-");
    let stop = CancellationToken::new();
    let hub = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub: HubConfig { name: "tth test".into(), ..Default::default() },
        db: dir.path().join("hub.sqlite"),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let hub_addr = hub.local_addr().to_string();
    tokio::spawn(hub.run(stop.clone()));
    let share = dir.path().join("pub");
    std::fs::create_dir_all(&share).unwrap();
    support::write_test_file(&share.join("wanted.bin"), 70_000, 1);
    support::write_test_file(&share.join("other.bin"), 70_000, 2);
    let root = omnipeer_node::nmdc::cc::file_tth(&share.join("wanted.bin")).unwrap().to_base32();
    let sharer = DcClient::start(config(&hub_addr, "sharer", dir.path(), vec![share.clone()], true)).await.unwrap();

    // A liar answers every TTH search with a file of another root.
    let (h, r) = (hub_addr.clone(), root.clone());
    let liar = std::thread::spawn(move || {
        let mut liar = support::fakepeer::FakeUser::login(&h, "liar");
        let search = liar.wait_cmd(b"$Search Hub:bob ", Duration::from_secs(60));
        let seen = search.as_deref().is_some_and(|s| s.ends_with(format!("?9?TTH:{r}").as_bytes()));
        liar.send(
            format!("$SR liar share\\wanted.bin\x0570000 1/1\x05TTH:{} ({h})\x05bob|", "A".repeat(39)).as_bytes(),
        );
        std::thread::sleep(Duration::from_secs(4));
        seen
    });
    let data = dir.path().join("cli");
    let (r, h) = (root.clone(), format!("dchub://{hub_addr}"));
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        // Wait for the liar to be on the hub before searching.
        std::thread::sleep(Duration::from_millis(500));
        omni::run_in(&data, &["dc", "search", "--hub", &h, "--nick", "bob", "--timeout", "3", "--tth", &r])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(liar.join().unwrap(), "the liar saw the TTH search as type 9 with TTH:<root>");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one result, the sharer's:\n{out}");
    let cols: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(cols[..4], ["sharer", "pub\\wanted.bin", "70000", root.as_str()], "{out}");
    sharer.stop().await.unwrap();
    stop.cancel();
}

/// Through the node: `omnipeer up` with a TLS hub port (`[nmdc_hub] tls_listen`), and another node joining it by `[[hubs]]` over `nmdcs://`
/// twice: with that keyprint the session is online, with another one it stays offline and
/// says why.
#[test]
fn node_hubs_over_nmdcs_right_and_wrong_keyprint() {
    use omni::node::{free_port, joining_config, server_config, wait_for, Node, Ports};
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let tls_port = free_port();
    let cfg = server_config("alice", p)
        .replace("[nmdc_hub]\n", &format!("[nmdc_hub]\ntls_listen = \"127.0.0.1:{tls_port}\"\n"));
    let a = Node::start(&t.path().join("a"), &cfg, p.api);
    // The certificate the hub made and kept in its data dir.
    assert!(t.path().join("a/tls/cert.pem").is_file(), "the hub certificate is kept in the data dir");
    let kp = TlsIdentity::load_or_create(&t.path().join("a")).unwrap().keyprint().to_owned();

    let wrong = TlsIdentity::generate().unwrap();
    let extra = format!(
        "[[hubs]]\nurl = \"nmdcs://127.0.0.1:{tls_port}/?kp={kp}\"\nname = \"tlsok\"\nnick = \"bob2\"\n\
         [[hubs]]\nurl = \"nmdcs://127.0.0.1:{tls_port}/?kp={}\"\nname = \"tlsbad\"\nnick = \"bob3\"\n",
        wrong.keyprint()
    );
    let b_api = free_port();
    let b = Node::start(&t.path().join("b"), &joining_config("bob", p, b_api, &extra), b_api);
    let net = |name: &str| {
        let nets = b.get("/api/networks");
        nets.as_array().and_then(|a| a.iter().find(|x| x["name"] == name).cloned())
    };
    wait_for("the pinned TLS session online", 40, || net("nmdc_client@tlsok").filter(|n| n["state"] == "online"));
    let bad = wait_for("the wrong keyprint refused", 40, || {
        net("nmdc_client@tlsbad").filter(|n| n["detail"].as_str().is_some_and(|d| d.contains("pinned")))
    });
    assert_ne!(bad["state"], "online");
    let detail = bad["detail"].as_str().unwrap();
    assert!(detail.contains(wrong.keyprint()) && detail.contains(&kp), "{detail}");
    drop(b);
    drop(a);
}

/// The hub's TLS port relays each user over loopback to the plain listener, yet the hub
/// sees the address the user came from (bans, per-address limits and `$UserIP` depend on
/// it): a user connecting from 127.0.0.5 is logged in as 127.0.0.5, not as the relay's
/// 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_user_keeps_its_own_address_on_the_hub() {
    use omnipeer_nmdc::client::{Event, HubSession, Output, SessionConfig};
    use omnipeer_nmdc::hub::HubEvent;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = support::temp_dir("tlsip-");
    let stop = CancellationToken::new();
    let mut hub = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub: HubConfig { name: "ip test".into(), ..Default::default() },
        db: dir.path().join("hub.sqlite"),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let identity = TlsIdentity::generate().unwrap();
    let kp = identity.keyprint().to_owned();
    let tls = hub.listen_tls("127.0.0.1:0".parse().unwrap(), identity).unwrap();
    let mut events = hub.subscribe();
    tokio::spawn(hub.run(stop.clone()));

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(tls).await.unwrap();
    let mut stream = omnipeer_node::tls::connect(tcp, "127.0.0.1", Some(&kp), None).await.unwrap();
    let mut session = HubSession::new(SessionConfig::new("far"), std::time::Instant::now()).unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let logged = tokio::time::timeout(T, async {
        loop {
            while let Some(o) = session.poll_output() {
                match o {
                    Output::Transmit(b) => stream.write_all(&b).await.unwrap(),
                    Output::Event(Event::LoggedIn) => return true,
                    Output::Event(Event::LoginFailed(f)) => panic!("{f:?}"),
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the hub closed");
            session.handle_input(std::time::Instant::now(), &buf[..n]);
        }
    })
    .await;
    assert_eq!(logged, Ok(true));
    let ip = tokio::time::timeout(T, async {
        loop {
            if let HubEvent::LoggedIn { nick, ip, .. } = events.recv().await.unwrap() {
                if nick == "far" {
                    return ip;
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ip.to_string(), "127.0.0.5");
    stop.cancel();
}

/// Silent connections to the hub's TLS port: one address holds at most
/// `MAX_PENDING_TLS_HANDSHAKES_PER_IP` handshakes (further ones are closed at once), and a
/// user from another address still gets in meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_from_one_address_do_not_lock_others_out() {
    use omnipeer_node::nmdc::hub::MAX_PENDING_TLS_HANDSHAKES_PER_IP;
    use tokio::io::AsyncReadExt;
    let dir = support::temp_dir("tlsflood-");
    let stop = CancellationToken::new();
    let (_plain, tls, kp) = tls_hub(dir.path(), &stop).await;
    let tls: std::net::SocketAddr = tls.parse().unwrap();
    let from = |ip: &str| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        s.connect(tls)
    };
    let mut silent = Vec::new();
    for _ in 0..MAX_PENDING_TLS_HANDSHAKES_PER_IP {
        silent.push(from("127.0.0.7").await.unwrap());
    }
    // One more from the same address: closed without a byte.
    let mut extra = from("127.0.0.7").await.unwrap();
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "the extra connection was not closed: {r:?}");
    // The held ones are still open (their handshake may take up to HANDSHAKE_TIMEOUT).
    let r = tokio::time::timeout(Duration::from_millis(300), silent[0].read(&mut b)).await;
    assert!(r.is_err(), "a held connection was closed early: {r:?}");
    // Another address logs in.
    let c = DcClient::start(config(&format!("nmdcs://{tls}/?kp={kp}"), "other", dir.path(), vec![], false)).await;
    assert!(c.is_ok(), "{:?}", c.err());
    c.unwrap().stop().await.unwrap();
    drop(silent);
    stop.cancel();
}

/// `omnipeer dc hub --tls` prints the address to pin (`nmdcs://ADDR/?kp=…`), keeps its
/// certificate in the data dir (the same keyprint after a restart), and a client with that
/// address logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc_hub_tls_prints_a_stable_keyprint() {
    let dir = support::temp_dir("tlscli-");
    let data = dir.path().join("hubdata");
    let start = || {
        let hub = omni::Omni::start_in(&data, &["dc", "hub", "--tls", "--listen", "127.0.0.1:0"]);
        let url = format!("nmdcs://{}", hub.wait_line("nmdcs://"));
        (hub, url)
    };
    let (hub, url) = start();
    let kp = url.split("?kp=").nth(1).expect("a keyprint in the printed address").to_owned();
    assert_eq!(kp, TlsIdentity::load_or_create(&data).unwrap().keyprint(), "{url}");
    let c = DcClient::start(config(&url, "alice", dir.path(), vec![], false)).await.unwrap();
    c.stop().await.unwrap();
    drop(hub);
    let (_hub, again) = start();
    assert_eq!(again.split("?kp=").nth(1), Some(kp.as_str()), "the keyprint changed across a restart");
}

/// Our hub compresses a big user list for clients that say `ZPipe0` (`$ZOn|` + zlib, as
/// PtokaX does), and EiskaltDC++, which says `ZPipe0`, reads it: it sees every user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eiskalt_reads_a_compressed_user_list_from_our_hub() {
    if !support::require("eiskalt_reads_a_compressed_user_list", &["eiskaltdcpp-daemon"]) {
        return;
    }
    use omnipeer_nmdc::client::{Event, HubSession, Output, SessionConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const USERS: usize = 24;
    let dir = support::temp_dir("zon-");
    let stop = CancellationToken::new();
    let hub = HubServer::bind(HubServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub: HubConfig { max_users_per_ip: 0, max_logins_per_ip_per_minute: 0, ..Default::default() },
        db: dir.path().join("hub.sqlite"),
        register: Vec::new(),
    })
    .await
    .unwrap();
    let addr = hub.local_addr().to_string();
    tokio::spawn(hub.run(stop.clone()));
    // USERS users with a 900-byte description each: a list well over MIN_ZPIPE_BYTES.
    let a = addr.clone();
    let fakes = tokio::task::spawn_blocking(move || {
        (0..USERS)
            .map(|i| {
                let mut u = support::fakepeer::FakeUser::login(&a, &format!("user{i}"));
                let d = "d".repeat(900);
                u.send(format!("$MyINFO $ALL user{i} {d}<fake V:1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|").as_bytes());
                u
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();

    // A ZPipe0 client (our session) gets the list as `$ZOn|` + zlib.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut s = HubSession::new(SessionConfig::new("probe"), std::time::Instant::now()).unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let users = tokio::time::timeout(T, async {
        let mut logged = false;
        loop {
            while let Some(o) = s.poll_output() {
                match o {
                    Output::Transmit(b) => tcp.write_all(&b).await.unwrap(),
                    Output::Event(Event::LoggedIn) => logged = true,
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
            let n = s.users().filter(|u| u.info.is_some() && u.nick.starts_with("user")).count();
            if logged && n == USERS {
                return n;
            }
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the hub closed");
            raw.extend_from_slice(&buf[..n]);
            s.handle_input(std::time::Instant::now(), &buf[..n]);
        }
    })
    .await
    .expect("our session read the whole list");
    assert_eq!(users, USERS);
    assert!(raw.windows(5).any(|w| w == b"$ZOn|"), "the list was not compressed");

    let ek_cfg = EiskaltConfig { nick: "bob".into(), hub: addr.clone(), ..Default::default() };
    let ek = tokio::task::spawn_blocking(move || Eiskalt::start(ek_cfg)).await.unwrap();
    let ek = Arc::new(ek);
    let e = ek.clone();
    let seen = tokio::task::spawn_blocking(move || {
        wait_until(T, || e.users().iter().filter(|u| u.starts_with("user")).count() == USERS)
    })
    .await
    .unwrap();
    assert!(seen, "eiskalt sees {:?}; output:\n{}", ek.users(), ek.daemon_output());
    drop(fakes);
    stop.cancel();
}
