//! Interop with the real Direct Connect clients (ncdc 1.23.1, EiskaltDC++ 2.4.2 daemon,
//! microdc2 0.15.6) against omnipeer's own hub and client:
//! - all three log in to `omnipeer dc hub` and see each other, and main chat reaches them;
//! - microdc2 downloads a file of over 200 kB from `omnipeer dc share` (the old PtokaX page's; docs/protocols/nmdc.md#legacy-get
//!   `$Get`/`$Send` flow);
//! - EiskaltDC++ downloads the file list and a file by TTH from `omnipeer dc share`;
//! - `omnipeer dc get` downloads from EiskaltDC++ (passive and active) and from ncdc.
//!
//! Every test skips (and passes) when a client is not installed, so `cargo test` works on a
//! bare machine; `scripts/install-test-deps.sh` (run by `scripts/test.sh`) installs them.

mod support;

mod omni;

use omni::{Omni, BIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::eiskalt::{Eiskalt, EiskaltConfig};
use support::microdc2::{Microdc2, Microdc2Config};
use support::ncdc::{Ncdc, NcdcConfig};
use support::{free_port, sha256_file, wait_until};

const T: Duration = Duration::from_secs(30);

/// The omnipeer servers these tests run.
struct Servers;

impl Servers {
    /// `omnipeer dc hub` on a free port; returns it and `127.0.0.1:PORT`.
    fn hub() -> (Omni, String) {
        let hub = Omni::start(&["dc", "hub", "--listen", "127.0.0.1:0", "--name", "omnipeer test hub"]);
        let addr = hub.wait_line("listening on ");
        (hub, addr)
    }

    /// `omnipeer dc share` of `dir` as `nick`, active on a free port when `active`.
    fn share(hub: &str, nick: &str, dir: &Path, active: bool) -> Omni {
        let url = format!("dchub://{hub}");
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["dc", "share", "--hub", &url, "--nick", nick, "--share", dir.to_str().unwrap()];
        if active {
            args.extend(["--listen", listen.as_str()]);
        }
        let s = Omni::start(&args);
        s.wait_line("online at");
        s
    }
}

/// `omnipeer dc get …`; returns (exit code, stdout, stderr).
fn dc_get(hub: &str, nick: &str, from: &str, what: &[&str], out: &Path, listen: Option<u16>) -> (i32, String, String) {
    let data = support::temp_dir("omni-get-");
    let url = format!("dchub://{hub}");
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(data.path()).args(["dc", "get", "--hub", &url, "--nick", nick, "--from", from]);
    cmd.args(what).arg("--out").arg(out);
    if let Some(p) = listen {
        cmd.args(["--listen", &format!("127.0.0.1:{p}")]);
    }
    let o = cmd.env_remove("RUST_LOG").stdin(Stdio::null()).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn real_clients_log_in_to_the_omnipeer_hub_and_see_each_other() {
    if !support::require("real_clients_log_in_to_the_omnipeer_hub", &["ncdc", "tmux", "eiskaltdcpp-daemon", "microdc2"])
    {
        return;
    }
    let (_hub, addr) = Servers::hub();
    let n = Ncdc::start(NcdcConfig {
        nick: "alice".into(),
        hub: addr.clone(),
        active_port: Some(free_port()),
        ..Default::default()
    });
    let e = Eiskalt::start(EiskaltConfig {
        nick: "bob".into(),
        hub: addr.clone(),
        active_port: Some(free_port()),
        ..Default::default()
    });
    let mut m = Microdc2::start(Microdc2Config {
        nick: "carol".into(),
        hub: addr.clone(),
        listen_port: Some(free_port()),
        ..Default::default()
    });
    assert!(n.wait_logged_in(T), "ncdc login; log:\n{}", n.protocol_log());
    assert!(e.wait_logged_in(T), "eiskalt login; users {:?}", e.users());
    assert!(m.wait_logged_in(T), "microdc2 login; output:\n{}", m.output());
    let all = vec!["alice".to_owned(), "bob".to_owned(), "carol".to_owned()];
    assert!(wait_until(T, || n.seen_users() == all), "ncdc saw {:?}", n.seen_users());
    assert!(wait_until(T, || e.users() == all), "eiskalt saw {:?}", e.users());
    // microdc2 prints who joins while it is online; alice and bob were there before it, so
    // ask it for the user list.
    m.cmd("who");
    assert!(
        wait_until(T, || {
            let o = m.output();
            o.contains("alice") && o.contains("bob")
        }),
        "microdc2 output:\n{}",
        m.output()
    );
    // Main chat from eiskalt reaches ncdc and microdc2 through our hub.
    e.rpc("hub.say", serde_json::json!({"huburl": e.hub_url(), "message": "hello from bob"})).unwrap();
    assert!(n.wait_log("<bob> hello from bob|", T), "ncdc got bob's chat");
    assert!(m.wait_output("hello from bob", T), "microdc2 printed bob's chat");
}

/// A share folder with `pub/payload.bin` (`size` test bytes from `seed`): the folder (removed
/// on drop), `pub` and the file.
fn pub_payload(size: usize, seed: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let share = support::temp_dir("share-");
    let dir = share.path().join("pub");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("payload.bin");
    support::write_test_file(&file, size, seed);
    (share, dir, file)
}

/// A share folder with the file `name` (`size` test bytes from `seed`): the folder (removed
/// on drop), the file and its TTH (by rhash, not by us).
fn shared_file(name: &str, size: usize, seed: u64) -> (tempfile::TempDir, PathBuf, String) {
    let share = support::temp_dir("share-");
    let file = share.path().join(name);
    support::write_test_file(&file, size, seed);
    let tth = support::tth_rhash(&file).expect("rhash");
    (share, file, tth)
}

#[test]
fn microdc2_downloads_from_omnipeer_share_with_get_and_send() {
    if !support::require("microdc2_downloads_from_omnipeer_share", &["microdc2"]) {
        return;
    }
    let (_hub, addr) = Servers::hub();
    let (_share, dir, file) = pub_payload(300_000, 3);
    let _sharer = Servers::share(&addr, "sharer", &dir, true);
    let mut m = Microdc2::start(Microdc2Config {
        nick: "carol".into(),
        hub: addr.clone(),
        listen_port: Some(free_port()),
        ..Default::default()
    });
    assert!(m.wait_logged_in(T), "microdc2 login:\n{}", m.output());
    std::thread::sleep(Duration::from_millis(500));
    m.cmd("browse sharer");
    assert!(m.wait_output("files.xml.bz2' succeeded", T), "file list:\n{}", m.output());
    m.cmd("cd pub");
    m.cmd("get payload.bin");
    let target = m.download_dir().join("payload.bin");
    assert!(wait_until(T, || m.output().contains("payload.bin' succeeded")), "microdc2 output:\n{}", m.output());
    if std::env::var_os("DC_INTEROP_VERBOSE").is_some() {
        eprintln!("microdc2 output:\n{}", m.output());
    }
    assert_eq!(sha256_file(&target), sha256_file(&file));
}

#[test]
fn eiskalt_downloads_file_list_and_file_by_tth_from_omnipeer_share() {
    if !support::require("eiskalt_downloads_from_omnipeer_share", &["eiskaltdcpp-daemon", "rhash"]) {
        return;
    }
    let (_hub, addr) = Servers::hub();
    let (_share, dir, file) = pub_payload(3_000_000, 5);
    let tth = support::tth_rhash(&file).expect("rhash");
    let _sharer = Servers::share(&addr, "sharer", &dir, true);
    let e = Eiskalt::start(EiskaltConfig {
        nick: "bob".into(),
        hub: addr.clone(),
        active_port: Some(free_port()),
        ..Default::default()
    });
    assert!(e.wait_logged_in(T));
    assert!(wait_until(T, || e.users().contains(&"sharer".to_owned())), "eiskalt sees sharer: {:?}", e.users());
    // Eiskalt is active: its search reaches our share through the hub and our result goes
    // back to it by UDP.
    e.search("payload").unwrap();
    assert!(
        wait_until(T, || {
            let r = e.search_results().to_string();
            r.contains("sharer") && r.contains("payload.bin")
        }),
        "eiskalt search results: {}",
        e.search_results()
    );
    let target = e.download_dir().join("payload.bin");
    assert_eq!(e.add_by_tth("payload.bin", 3_000_000, &tth, &e.download_dir()).unwrap(), 0);
    assert_eq!(e.download_filelist("sharer").unwrap(), 0);
    let list = e.wait_filelist("sharer", T).expect("eiskalt got sharer's file list");
    let xml = support::ncdc::bunzip_to_string(&list);
    assert!(xml.contains(&format!("TTH=\"{tth}\"")), "{xml}");
    e.match_lists().unwrap();
    assert!(e.wait_file(&target, T), "payload downloaded; queue {}", e.queue_list());
    assert_eq!(sha256_file(&target), sha256_file(&file));
}

#[test]
fn omnipeer_gets_from_eiskalt_passive_and_active() {
    if !support::require("omnipeer_gets_from_eiskalt", &["eiskaltdcpp-daemon", "rhash"]) {
        return;
    }
    let (_hub, addr) = Servers::hub();
    let (share, file, tth) = shared_file("eiskalt file.bin", 1_500_000, 9);
    let e = Eiskalt::start(EiskaltConfig {
        nick: "bob".into(),
        hub: addr.clone(),
        share: Some(share.path().into()),
        active_port: Some(free_port()),
        ..Default::default()
    });
    assert!(e.wait_logged_in(T));
    let out = support::temp_dir("out-");
    // Passive: we send $RevConnectToMe, eiskalt (active) connects to us.
    let (code, stdout, stderr) = dc_get(&addr, "getter", "bob", &["--tth", &tth], &out.path().join("p.bin"), None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("verified"), "{stdout}");
    assert_eq!(sha256_file(&out.path().join("p.bin")), sha256_file(&file));
    // Active: we send $ConnectToMe, eiskalt connects to our listener.
    let (code, stdout, stderr) =
        dc_get(&addr, "getter2", "bob", &["--tth", &tth], &out.path().join("a.bin"), Some(free_port()));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("verified"), "{stdout}");
    assert_eq!(sha256_file(&out.path().join("a.bin")), sha256_file(&file));
}

#[test]
fn omnipeer_gets_from_ncdc() {
    if !support::require("omnipeer_gets_from_ncdc", &["ncdc", "tmux", "rhash"]) {
        return;
    }
    let (_hub, addr) = Servers::hub();
    let (share, file, tth) = shared_file("ncdc file.bin", 2_500_000, 11);
    let n = Ncdc::start(NcdcConfig {
        nick: "alice".into(),
        hub: addr.clone(),
        share: Some(share.path().into()),
        active_port: Some(free_port()),
        ..Default::default()
    });
    assert!(n.wait_logged_in(T), "ncdc login:\n{}", n.protocol_log());
    let out = support::temp_dir("out-");
    // ncdc hashes its share after start; retry until it serves the file.
    let mut last = String::new();
    let ok = wait_until(T, || {
        let (code, stdout, stderr) =
            dc_get(&addr, "getter", "alice", &["--tth", &tth], &out.path().join("n.bin"), None);
        last = format!("{stdout}{stderr}");
        code == 0
    });
    assert!(ok, "{last}\nncdc log:\n{}", n.protocol_log());
    assert_eq!(sha256_file(&out.path().join("n.bin")), sha256_file(&file));
    // Active too.
    let (code, _, stderr) =
        dc_get(&addr, "getter2", "alice", &["--tth", &tth], &out.path().join("n2.bin"), Some(free_port()));
    assert_eq!(code, 0, "{stderr}\nncdc log:\n{}", n.protocol_log());
    assert_eq!(sha256_file(&out.path().join("n2.bin")), sha256_file(&file));
}
