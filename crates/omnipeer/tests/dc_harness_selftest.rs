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
        e.rpc("hub.say", serde_json::json!({"huburl": e.hub_url(), "message": "hello from bob"}))
            .unwrap();
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
