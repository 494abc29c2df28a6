//! Self-test of the Direct Connect interop harness (`tests/support/`): the REAL clients ncdc,
//! eiskaltdcpp-daemon and microdc2 are started headless on 127.0.0.1 against the fixture
//! relay hub, log in, see each other, and eiskalt downloads from ncdc through a
//! `$ConnectToMe` routed by the relay. Each test skips (and passes) when a client binary is
//! missing; `scripts/install-test-deps.sh` installs them.
//!
//! `capture_golden_frames` (ignored; run with `-- --ignored capture_golden_frames`)
//! rewrites `tests/fixtures/nmdc/` from what the real clients send.

mod support;

use std::time::{Duration, Instant};
use support::eiskalt::{Eiskalt, EiskaltConfig};
use support::fakepeer::FakeUser;
use support::microdc2::{Microdc2, Microdc2Config};
use support::ncdc::{Ncdc, NcdcConfig};
use support::relayhub::{Dir, RelayHub};
use support::{free_port, sha256_file, wait_until};

const T: Duration = Duration::from_secs(20);

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The relay fixture itself, with two scripted users: login, `$MyINFO` relay, routing of
/// `$ConnectToMe` / `$RevConnectToMe` / `$To:` / `$SR`, `$Search` fan-out, `$Quit`, logs.
#[test]
fn relay_fixture_routes_and_logs() {
    let logs = tempfile::tempdir().unwrap();
    let hub = RelayHub::start(logs.path());
    let mut a = FakeUser::login(&hub.addr(), "ann");
    let mut b = FakeUser::login(&hub.addr(), "ben");
    assert!(a.wait_cmd(b"$MyINFO $ALL ben ", T).is_some(), "ann sees ben");
    assert!(b.wait_cmd(b"$MyINFO $ALL ann ", T).is_some(), "ben sees ann");
    assert!(wait_until(T, || hub.users() == ["ann", "ben"]));

    a.send(b"$ConnectToMe ben 127.0.0.1:1234|$RevConnectToMe ann ben|<ann> hi all|");
    a.send(b"$Search Hub:ann F?T?0?1?x|$To: ben From: ann $<ann> psst|");
    b.send(b"$SR ben \\x.bin\x0510 1/1\x05TTH:AAAA (127.0.0.1:1)\x05ann|");
    assert!(b.wait_cmd(b"$ConnectToMe ben 127.0.0.1:1234", T).is_some());
    assert!(b.wait_cmd(b"$RevConnectToMe ann ben", T).is_some());
    assert!(b.wait_cmd(b"$Search Hub:ann ", T).is_some());
    assert!(b.wait_cmd(b"$To: ben From: ann", T).is_some());
    assert!(b.wait_cmd(b"<ann> hi all", T).is_some());
    let sr = a.wait_cmd(b"$SR ben ", T).expect("ann gets the $SR");
    assert_eq!(sr, b"$SR ben \\x.bin\x0510 1/1\x05TTH:AAAA (127.0.0.1:1)", "\\x05ann stripped");
    assert!(a.received().iter().all(|c| !c.starts_with(b"$Search")), "no echo to the searcher");

    drop(b);
    assert!(a.wait_cmd(b"$Quit ben", T).is_some());
    let sent = hub.frames("ann", Dir::In);
    assert!(sent.iter().any(|c| c.starts_with(b"$ValidateNick ann")));
    let log = support::read_lossy(&logs.path().join("conn0.log"));
    assert!(log.contains("< $ValidateNick ann|") && log.contains("> $Hello ann|"), "{log}");
}

/// (a) ncdc, eiskalt and microdc2 each log in to the relay and each sees the others.
/// Clients that are not installed are left out (all missing → skip).
#[test]
fn real_clients_log_in_and_see_each_other() {
    let t0 = Instant::now();
    let (have_n, have_e, have_m) = (Ncdc::available(), Eiskalt::available(), Microdc2::available());
    if !(have_n || have_e || have_m) {
        support::require("real_clients_log_in_and_see_each_other", &["ncdc", "eiskaltdcpp-daemon", "microdc2"]);
        return;
    }
    if !(have_n && have_e && have_m) {
        eprintln!("note: running with ncdc={have_n} eiskalt={have_e} microdc2={have_m}");
    }
    let logs = support::temp_dir("relay-");
    let hub = RelayHub::start(logs.path());
    let share = support::temp_dir("share-");
    support::write_test_file(&share.path().join("a.bin"), 3000, 1);

    let mut nicks = Vec::new();
    let mut e = have_e.then(|| {
        nicks.push("bob");
        Eiskalt::start(EiskaltConfig {
            nick: "bob".into(),
            hub: hub.addr(),
            share: Some(share.path().into()),
            active_port: Some(free_port()),
            password: None,
        })
    });
    let mut m = have_m.then(|| {
        nicks.push("carol");
        Microdc2::start(Microdc2Config {
            nick: "carol".into(),
            hub: hub.addr(),
            share: Some(share.path().into()),
            listen_port: Some(free_port()),
            password: None,
        })
    });
    let mut n = have_n.then(|| {
        nicks.push("alice");
        Ncdc::start(NcdcConfig {
            nick: "alice".into(),
            hub: hub.addr(),
            share: None,
            active_port: Some(free_port()),
            password: None,
        })
    });
    nicks.sort();
    eprintln!("clients started after {:?}", t0.elapsed());

    if let Some(n) = &n {
        assert!(n.wait_logged_in(T), "ncdc login; log:\n{}", n.protocol_log());
    }
    if let Some(e) = &e {
        assert!(e.wait_logged_in(T), "eiskalt login; users {:?}", e.users());
    }
    if let Some(m) = &m {
        assert!(m.wait_logged_in(T), "microdc2 login; output:\n{}", m.output());
    }
    assert!(wait_until(T, || hub.users() == nicks), "relay users {:?}", hub.users());
    eprintln!("all logged in after {:?}", t0.elapsed());

    if let Some(n) = &n {
        let ok = wait_until(T, || n.seen_users() == nicks);
        assert!(ok, "ncdc saw {:?}, want {nicks:?}", n.seen_users());
        let want = format!("{} users", nicks.len());
        assert!(wait_until(T, || n.screen().contains(&want)), "ncdc screen:\n{}", n.screen());
    }
    if let Some(e) = &e {
        assert!(wait_until(T, || e.users() == nicks), "eiskalt saw {:?}", e.users());
    }
    if let Some(m) = &mut m {
        // microdc2 has no user-list command output we can rely on; `raw` makes it ask the
        // hub again and the relay shows what it was sent.
        m.cmd("raw $GetNickList|");
        let ok = wait_until(T, || {
            let got: Vec<String> = hub
                .frames("carol", Dir::Out)
                .iter()
                .filter_map(|f| f.strip_prefix(b"$MyINFO $ALL ".as_slice()).map(s))
                .filter_map(|r| r.split(' ').next().map(str::to_owned))
                .collect();
            nicks.iter().all(|x| got.iter().any(|g| g == x))
        });
        assert!(ok, "microdc2 was not sent every $MyINFO");
        assert!(hub.received("carol", b"$GetNickList").len() >= 2, "raw command reached the hub");
    }
    // Chat from eiskalt reaches everybody.
    if let Some(e) = &e {
        e.rpc("hub.say", serde_json::json!({"huburl": e.hub_url(), "message": "hello from bob"})).unwrap();
        if let Some(n) = &n {
            assert!(n.wait_log("<bob> hello from bob|", T), "ncdc got bob's chat");
        }
        if let Some(m) = &m {
            assert!(m.wait_output("hello from bob", T), "microdc2 printed bob's chat");
        }
    }
    if let Some(n) = &mut n {
        n.stop();
    }
    if let Some(e) = &mut e {
        e.stop();
    }
    if let Some(m) = &mut m {
        m.stop();
    }
    assert!(wait_until(T, || hub.users().is_empty()), "all left: {:?}", hub.users());
    eprintln!("login test done in {:?}", t0.elapsed());
}

/// (b) eiskalt downloads ncdc's file list and then a file by TTH, both over one c-c
/// connection opened by the relayed `$ConnectToMe`; hashes match.
#[test]
fn eiskalt_downloads_from_ncdc_through_relay() {
    if !support::require(
        "eiskalt_downloads_from_ncdc_through_relay",
        &["ncdc", "tmux", "eiskaltdcpp-daemon", "bzip2", "rhash"],
    ) {
        return;
    }
    let t0 = Instant::now();
    let logs = support::temp_dir("relay-");
    let hub = RelayHub::start(logs.path());
    let share = support::temp_dir("share-");
    let file = share.path().join("payload.bin");
    support::write_test_file(&file, 300_000, 7);
    let tth = support::tth_rhash(&file).expect("rhash --tth");
    let size = std::fs::metadata(&file).unwrap().len();

    let n = Ncdc::start(NcdcConfig {
        nick: "alice".into(),
        hub: hub.addr(),
        share: Some(share.path().into()),
        active_port: Some(free_port()),
        password: None,
    });
    let e_port = free_port();
    let e = Eiskalt::start(EiskaltConfig {
        nick: "bob".into(),
        hub: hub.addr(),
        share: None,
        active_port: Some(e_port),
        password: None,
    });
    assert!(n.wait_logged_in(T), "ncdc login");
    assert!(wait_until(T, || e.users().contains(&"alice".to_owned())), "eiskalt sees alice");
    eprintln!("both logged in after {:?}", t0.elapsed());

    // Queue the file first (no source yet), then the list: one c-c connection serves both
    // (DC++ waits 60 s before reconnecting to a user whose connection closed).
    let target = e.download_dir().join("payload.bin");
    assert_eq!(e.add_by_tth("payload.bin", size, &tth, &e.download_dir()).unwrap(), 0);
    assert_eq!(e.download_filelist("alice").unwrap(), 0);
    let list = e.wait_filelist("alice", T).expect("eiskalt got alice's file list");
    eprintln!("file list after {:?}", t0.elapsed());
    let ctm = format!("$ConnectToMe alice 127.0.0.1:{e_port}");
    assert!(!hub.received("bob", ctm.as_bytes()).is_empty(), "bob sent {ctm} via the relay");
    assert!(hub.frames("alice", Dir::Out).iter().any(|f| f.starts_with(ctm.as_bytes())));
    assert!(n.wait_log("> $ADCSND file files.xml.bz2 0 ", T));
    assert_eq!(sha256_file(&list), sha256_file(&n.own_filelist()), "list bytes as ncdc serves them");

    e.match_lists().unwrap();
    assert!(e.wait_file(&target, T), "payload downloaded; queue {}", e.queue_list());
    assert_eq!(sha256_file(&target), sha256_file(&file));
    // eiskalt asks for the hash tree first, then segments (65536, 131072, rest).
    let log = n.protocol_log();
    assert!(log.contains(&format!("< $ADCGET tthl TTH/{tth} 0 -1|")), "tthl request");
    assert!(log.contains(&format!("< $ADCGET file TTH/{tth} 0 ")), "file request");
    eprintln!("file downloaded after {:?}", t0.elapsed());
}

/// Hub passwords: each installed client answers `$GetPass` with the configured password
/// (ncdc `/hset password`, eiskalt `Favorites.xml`, microdc2 `set password`).
#[test]
fn real_clients_send_hub_password() {
    let (have_n, have_e, have_m) = (Ncdc::available(), Eiskalt::available(), Microdc2::available());
    if !(have_n || have_e || have_m) {
        support::require("real_clients_send_hub_password", &["ncdc", "eiskaltdcpp-daemon", "microdc2"]);
        return;
    }
    let t0 = Instant::now();
    let logs = support::temp_dir("relay-");
    let pws = [("alice", "pw-a"), ("bob", "pw b&c"), ("carol", "pw-c")];
    let hub = RelayHub::start_with_passwords(logs.path(), &pws);
    let n = have_n.then(|| {
        Ncdc::start(NcdcConfig {
            nick: "alice".into(),
            hub: hub.addr(),
            password: Some("pw-a".into()),
            ..Default::default()
        })
    });
    let e = have_e.then(|| {
        Eiskalt::start(EiskaltConfig {
            nick: "bob".into(),
            hub: hub.addr(),
            password: Some("pw b&c".into()),
            ..Default::default()
        })
    });
    let m = have_m.then(|| {
        Microdc2::start(Microdc2Config {
            nick: "carol".into(),
            hub: hub.addr(),
            password: Some("pw-c".into()),
            ..Default::default()
        })
    });
    for (nick, pw) in pws {
        let started = match nick {
            "alice" => n.is_some(),
            "bob" => e.is_some(),
            _ => m.is_some(),
        };
        if !started {
            continue;
        }
        let want = format!("$MyPass {pw}");
        let ok = wait_until(T, || hub.received(nick, want.as_bytes()).len() == 1);
        assert!(
            ok,
            "{nick} sent {want:?}; got {:?}",
            hub.frames(nick, Dir::In).iter().map(|f| s(f)).collect::<Vec<_>>()
        );
        assert!(wait_until(T, || hub.users().contains(&nick.to_owned())), "{nick} logged in");
    }
    eprintln!("password logins done in {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------
// Golden frames: what each real client sends, captured through the relay and fake peers.
// ---------------------------------------------------------------------------------------

/// One real client under capture.
enum Real {
    N(Ncdc),
    E(Eiskalt),
    M(Microdc2),
}

impl Real {
    fn search(&mut self, q: &str) {
        match self {
            Real::N(n) => n.search(q),
            Real::E(e) => {
                e.search(q).unwrap();
            }
            Real::M(m) => m.cmd(&format!("search {q}")),
        }
    }

    /// TTH search (microdc2 has none).
    fn search_tth(&mut self, tth: &str) -> bool {
        match self {
            Real::N(n) => n.search(&format!("-tth {tth}")),
            Real::E(e) => {
                let p = serde_json::json!({"searchstring": tth, "searchtype": 8, "sizemode": 0,
                    "sizetype": 0, "size": 0.0, "huburls": e.hub_url()});
                e.rpc("search.send", p).unwrap();
            }
            Real::M(_) => return false,
        }
        true
    }

    /// Starts downloading `nick`'s file list.
    fn browse(&mut self, nick: &str) {
        match self {
            Real::N(n) => n.browse(nick),
            Real::E(e) => {
                e.download_filelist(nick).unwrap();
            }
            Real::M(m) => m.cmd(&format!("browse {nick}")),
        }
    }

    /// What the client shows (for failure messages).
    fn debug(&self) -> String {
        match self {
            Real::N(n) => n.screen(),
            Real::E(e) => format!("{}\nqueue: {}", e.daemon_output(), e.queue_list()),
            Real::M(m) => m.output(),
        }
    }

    fn stop(&mut self) {
        match self {
            Real::N(n) => n.stop(),
            Real::E(e) => e.stop(),
            Real::M(m) => m.stop(),
        }
    }
}

/// `raw` cut after the end of the first command starting with each of `ends` (all must be
/// present), i.e. exactly the bytes sent up to and including the last of them.
fn cut_after(raw: &[u8], ends: &[&[u8]]) -> Option<Vec<u8>> {
    let mut pos = 0;
    let mut last = 0;
    let mut found = vec![false; ends.len()];
    for cmd in raw.split(|&b| b == b'|') {
        let end = pos + cmd.len() + 1;
        for (i, e) in ends.iter().enumerate() {
            if !found[i] && cmd.starts_with(e) {
                found[i] = true;
                last = last.max(end);
            }
        }
        pos = end;
    }
    found.iter().all(|f| *f).then(|| raw[..last.min(raw.len())].to_vec())
}

/// `raw` cut after the end of the first command starting with `end` (None if absent).
fn upto(raw: &[u8], end: &[u8]) -> Option<Vec<u8>> {
    cut_after(raw, &[end])
}

fn with_pipe(mut v: Vec<u8>) -> Vec<u8> {
    v.push(b'|');
    v
}

/// Starts `client` as `nick` on `hub`.
fn start_real(
    client: &str,
    nick: &str,
    hub: &RelayHub,
    share: Option<std::path::PathBuf>,
    port: Option<u16>,
    password: Option<String>,
) -> Real {
    match client {
        "ncdc" => {
            Real::N(Ncdc::start(NcdcConfig { nick: nick.into(), hub: hub.addr(), share, active_port: port, password }))
        }
        "eiskalt" => Real::E(Eiskalt::start(EiskaltConfig {
            nick: nick.into(),
            hub: hub.addr(),
            share,
            active_port: port,
            password,
        })),
        _ => Real::M(Microdc2::start(Microdc2Config {
            nick: nick.into(),
            hub: hub.addr(),
            share,
            listen_port: port,
            password,
        })),
    }
}

fn nick_of(client: &str) -> &'static str {
    match client {
        "ncdc" => "alice",
        "eiskalt" => "bob",
        _ => "carol",
    }
}

/// Login to a hub that asks for a password (`$GetPass|` → `$MyPass`), passive, no share.
fn capture_password_login(client: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let nick = nick_of(client);
    let logs = support::temp_dir("relay-");
    let hub = RelayHub::start_with_passwords(logs.path(), &[(nick, "secret")]);
    let mut real = start_real(client, nick, &hub, None, None, Some("secret".into()));
    let ends: [&[u8]; 3] = [b"$MyPass ", b"$MyINFO ", b"$GetNickList"];
    let ok = wait_until(T, || cut_after(&hub.raw_in(nick), &ends).is_some());
    std::thread::sleep(Duration::from_millis(500));
    match cut_after(&hub.raw_in(nick), &ends) {
        Some(b) if ok => out.push((format!("{client}-password-login.txt"), b)),
        _ => eprintln!("{client}: no password login; got {:?}", s(&hub.raw_in(nick))),
    }
    real.stop();
}

/// Captures one client in one mode; returns (file name, bytes) pairs.
fn capture(client: &str, active: bool, out: &mut Vec<(String, Vec<u8>)>) {
    use support::fakepeer::{cc_connect, CcListener, CcScript};
    let mode = if active { "active" } else { "passive" };
    let name = |s: &str| format!("{client}-{mode}-{s}.txt");
    let nick = nick_of(client);
    let logs = support::temp_dir("relay-");
    let hub = RelayHub::start(logs.path());
    let sharetmp = support::temp_dir("share-");
    let share = sharetmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("golden.txt"), b"omnipeer golden frame\n").unwrap();
    let tth = support::tth_rhash(&share.join("golden.txt")).unwrap();
    let mut probe = FakeUser::login(&hub.addr(), "probe");
    let port = active.then(free_port);
    let mut real = start_real(client, nick, &hub, Some(share.clone()), port, None);
    let logged_in = wait_until(T, || cut_after(&hub.raw_in(nick), &[b"$MyINFO ", b"$GetNickList"]).is_some());
    assert!(logged_in, "{client} {mode}: no login; got {:?}", s(&hub.raw_in(nick)));
    // microdc2 hashes in the background: wait until its $MyINFO shows a non-zero share.
    wait_until(T, || hub.received(nick, b"$MyINFO ").iter().any(|m| !m.ends_with(b"$$0$")));
    std::thread::sleep(Duration::from_millis(500));
    out.push((name("login"), cut_after(&hub.raw_in(nick), &[b"$MyINFO ", b"$GetNickList"]).unwrap()));

    let first_new = |prefix: &[u8], before: usize| -> Option<Vec<u8>> {
        let mut got = None;
        wait_until(T, || {
            got = hub.received(nick, prefix).into_iter().nth(before);
            got.is_some()
        });
        got.map(with_pipe)
    };

    // The client searches.
    real.search("golden");
    match first_new(b"$Search ", 0) {
        Some(f) => out.push((name("search"), f)),
        None => eprintln!("{client} {mode}: no $Search"),
    }
    std::thread::sleep(Duration::from_secs(1));
    if real.search_tth(&tth) {
        match first_new(b"$Search ", 1) {
            Some(f) => out.push((name("search-tth"), f)),
            None => eprintln!("{client} {mode}: no TTH $Search\n{}", real.debug()),
        }
    }

    // Order matters: eiskalt marks a user passive once it sees `$Search Hub:<user>`, and
    // keeps wanting to download from a user whose list it queued; so uploads first, the
    // client's own download next, searches of its share last.
    // probe wants the client's list: unsolicited $ConnectToMe, client connects and uploads.
    let req: &[u8] = b"$ADCGET file files.xml.bz2 0 -1|";
    let downloader = CcScript { nick: "probe".into(), direction: "Download 32000".into(), request: req.to_vec() };
    let l = CcListener::bind();
    probe.send(format!("$ConnectToMe {nick} 127.0.0.1:{}|", l.port).as_bytes());
    match l.accept(&downloader, Duration::from_secs(10)) {
        Some(b) => {
            // Keep the handshake and the reply header, not the (variable) list bytes.
            let cut = upto(&b, b"$ADCSND ").or_else(|| upto(&b, b"$Error")).unwrap_or(b);
            out.push((name("cc-connector-upload"), cut));
        }
        None => eprintln!("{client} {mode}: did not connect to upload"),
    }
    if client == "microdc2" {
        // microdc2's own download path is $Get; see how it serves one.
        let legacy = CcScript {
            nick: "probe".into(),
            direction: "Download 32000".into(),
            request: b"$Get files.xml.bz2$1|".to_vec(),
        };
        let l = CcListener::bind();
        probe.send(format!("$ConnectToMe {nick} 127.0.0.1:{}|", l.port).as_bytes());
        match l.accept(&legacy, Duration::from_secs(10)) {
            Some(b) => {
                let cut = upto(&b, b"$FileLength ").or_else(|| upto(&b, b"$Error")).unwrap_or(b);
                out.push((name("cc-connector-upload-get"), cut));
            }
            None => eprintln!("{client} {mode}: did not connect for $Get"),
        }
    }

    // The client downloads from probe: $ConnectToMe (active) / $RevConnectToMe (passive),
    // then the c-c handshake with the client as downloader.
    let uploader = CcScript { nick: "probe".into(), direction: "Upload 1".into(), request: Vec::new() };
    let before = hub.received(nick, b"$ConnectToMe probe ").len();
    real.browse("probe");
    if active {
        match first_new(b"$ConnectToMe probe ", before) {
            Some(f) => {
                out.push((name("connecttome"), f.clone()));
                let addr = s(&f).trim_end_matches('|').rsplit(' ').next().unwrap().to_owned();
                match cc_connect(&addr, &uploader, Duration::from_secs(6)) {
                    Some(b) => out.push((name("cc-listener-download"), b)),
                    None => eprintln!("{client} {mode}: could not connect to {addr}"),
                }
            }
            None => eprintln!("{client} {mode}: no $ConnectToMe\n{}", real.debug()),
        }
    } else {
        match first_new(b"$RevConnectToMe ", 0) {
            Some(f) => {
                out.push((name("revconnecttome"), f));
                let l = CcListener::bind();
                probe.send(format!("$ConnectToMe {nick} 127.0.0.1:{}|", l.port).as_bytes());
                match l.accept(&uploader, Duration::from_secs(8)) {
                    Some(b) => out.push((name("cc-connector-download"), b)),
                    None => eprintln!("{client} {mode}: did not connect for its download"),
                }
            }
            None => eprintln!("{client} {mode}: no $RevConnectToMe\n{}", real.debug()),
        }
    }

    // probe is passive and asks an active client to connect: $RevConnectToMe → $ConnectToMe,
    // then probe connects and downloads (the client listens and uploads).
    if active {
        let before = hub.received(nick, b"$ConnectToMe probe ").len();
        probe.send(format!("$RevConnectToMe probe {nick}|").as_bytes());
        match first_new(b"$ConnectToMe probe ", before) {
            Some(f) => {
                out.push((name("connecttome-after-rev"), f.clone()));
                let addr = s(&f).trim_end_matches('|').rsplit(' ').next().unwrap().to_owned();
                match cc_connect(&addr, &downloader, Duration::from_secs(6)) {
                    Some(b) => {
                        let cut = upto(&b, b"$ADCSND ").or_else(|| upto(&b, b"$Error")).unwrap_or(b);
                        out.push((name("cc-listener-upload"), cut));
                    }
                    None => eprintln!("{client} {mode}: could not connect to {addr}"),
                }
            }
            None => eprintln!("{client} {mode}: no $ConnectToMe after $RevConnectToMe"),
        }
    }

    // Someone searches the client's share: passive searcher (reply via hub) ...
    probe.send(b"$Search Hub:probe F?T?0?1?golden|");
    match first_new(b"$SR ", 0) {
        Some(f) => out.push((name("sr-via-hub"), f)),
        None => eprintln!("{client} {mode}: no $SR via hub"),
    }
    // ... and active searcher (reply by UDP).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let uport = udp.local_addr().unwrap().port();
    probe.send(format!("$Search 127.0.0.1:{uport} F?T?0?1?golden|").as_bytes());
    let mut dgram = vec![0u8; 65536];
    match udp.recv(&mut dgram) {
        Ok(n) => out.push((name("sr-udp"), dgram[..n].to_vec())),
        Err(_) => eprintln!("{client} {mode}: no UDP $SR"),
    }

    real.stop();
}

/// Rewrites `tests/fixtures/nmdc/` (or `$OMNIPEER_GOLDEN_DIR`) from the real clients.
/// Run: `cargo test -p omnipeer --test dc_harness_selftest -- --ignored capture_golden_frames`.
#[test]
#[ignore = "writes tests/fixtures/nmdc; run on demand"]
fn capture_golden_frames() {
    let dir = std::env::var_os("OMNIPEER_GOLDEN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nmdc"));
    std::fs::create_dir_all(&dir).unwrap();
    let only = std::env::var("OMNIPEER_GOLDEN_ONLY").unwrap_or_default();
    let mut out = Vec::new();
    for (client, ok) in
        [("ncdc", Ncdc::available()), ("eiskalt", Eiskalt::available()), ("microdc2", Microdc2::available())]
    {
        if !ok || (!only.is_empty() && !only.split(',').any(|o| o == client)) {
            eprintln!("skipping {client}");
            continue;
        }
        for active in [true, false] {
            let t = Instant::now();
            capture(client, active, &mut out);
            eprintln!("{client} active={active}: {:?}", t.elapsed());
        }
        capture_password_login(client, &mut out);
    }
    for (name, bytes) in &out {
        std::fs::write(dir.join(name), bytes).unwrap();
        eprintln!("{name}: {}", s(bytes).replace('\x05', "\\x05").replace('\x01', "\\x01"));
    }
}
