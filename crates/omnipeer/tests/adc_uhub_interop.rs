//! ADC hubs through `[[hubs]]` (docs/protocols/adc.md#client): two omnipeer nodes on uhub
//! 0.4.1 (the Debian package) log in with `url = "adc://..."` only, chat, find each other's
//! files (results with a TTH) and download them over the ADC client-to-client protocol;
//! a real client (ncdc) on the same hub is downloaded from.

mod omni;
mod support;

use omni::node::{content, free_port, joining_config, server_config, sha256_file, wait_for, Node, Ports};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A uhub on 127.0.0.1 that anyone may join unregistered; killed on drop.
struct Uhub {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Uhub {
    fn available() -> bool {
        Command::new("uhub").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    }

    /// `tls`: require TLS with a fresh self-signed certificate; returns its keyprint too.
    fn start(tls: bool) -> (Uhub, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "").unwrap();
        let mut conf = format!(
            "server_port={port}\nserver_bind_addr=127.0.0.1\nhub_name=uhub-test\nfile_acl={}\nmax_users=50\n",
            acl.display()
        );
        let mut keyprint = None;
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let st = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=uhub-test"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
            conf.push_str(&format!(
                "tls_enable=yes\ntls_require=yes\ntls_certificate={}\ntls_private_key={}\n",
                cert.display(),
                key.display()
            ));
            keyprint = Some(keyprint_of(&cert));
        }
        let cfg = dir.path().join("uhub.conf");
        std::fs::write(&cfg, conf).unwrap();
        let child =
            Command::new("uhub").arg("-c").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        wait_for("uhub listening", 20, || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        (Uhub { child, port, _dir: dir }, keyprint)
    }
}

/// A uhub ([`Uhub::start`]), or `None` (the test skipped) when uhub is not installed.
fn uhub(tls: bool) -> Option<(Uhub, Option<String>)> {
    if !Uhub::available() {
        eprintln!("uhub is not installed: skipped (scripts/install-test-deps.sh)");
        return None;
    }
    Some(Uhub::start(tls))
}

impl Drop for Uhub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SHA256/<base32 of the SHA-256 of the certificate's DER>` (docs/protocols/adc.md#tls).
fn keyprint_of(pem: &Path) -> String {
    use sha2::Digest;
    let out = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(pem).output().unwrap();
    assert!(out.status.success());
    let digest = sha2::Sha256::digest(&out.stdout);
    // 32 bytes in base32 without padding: the same alphabet as TTH roots.
    format!("SHA256/{}", base32(&digest))
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A node that runs no server and joins only the hub at `url` (label `uhub`).
fn adc_node(dir: &Path, nick: &str, url: &str) -> Node {
    adc_node_with(dir, nick, url, "")
}

/// [`adc_node`] with more `[nmdc_client]` keys (`listen = ""`: passive).
fn adc_node_with(dir: &Path, nick: &str, url: &str, client: &str) -> Node {
    let api = free_port();
    let config = format!(
        "[node]\nnick = \"{nick}\"\n[dcc]\nenabled = false\n[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n\
         [tox_bootstrap]\nenabled = false\n[tox]\nlisten = \"127.0.0.1:0\"\n[nmdc_client]\nenabled = false\n{client}\n\
         [slsk_client]\nenabled = false\n[api]\nlisten = \"127.0.0.1:{api}\"\n\
         [[hubs]]\nurl = \"{url}\"\nname = \"uhub\"\n"
    );
    let n = Node::start_bare(dir, &config, api);
    n.wait_network("nmdc_client@uhub", 60);
    n
}

/// Bob, on the NMDC hub of the node with ports `pa` and on the uhub at `url`, without
/// Soulseek (the hub node's Soulseek source would be another one).
fn bob_on_both_hubs(dir: &Path, pa: Ports, url: &str) -> Node {
    let b_api = free_port();
    let adc = format!("[[hubs]]\nurl = \"{url}\"\nname = \"uhub\"\n");
    let b_cfg = joining_config("bob", pa, b_api, &adc).replace("[slsk_client]\n", "[slsk_client]\nenabled = false\n");
    let b = Node::start_bare(dir, &b_cfg, b_api);
    b.wait_network("nmdc_client", 60);
    b.wait_network("nmdc_client@uhub", 60);
    b
}

fn share(dir: &Path, rel: &str, data: &[u8]) -> PathBuf {
    let p = dir.join("share").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p
}

/// Node B finds node A's file through the hub and downloads it; A shows the upload.
fn find_and_download(url: &str) {
    find_and_download_with(url, "");
}

/// [`find_and_download`] with node B's `[nmdc_client]` keys.
fn find_and_download_with(url: &str, b_client: &str) {
    let t = tempfile::tempdir().unwrap();
    let file = share(&t.path().join("a"), "music/Gamma Tune.flac", &content(2_500_000, 7));
    let want = sha256_file(&file);
    let a = adc_node(&t.path().join("a"), "alice", url);
    let b = adc_node_with(&t.path().join("b"), "bob", url, b_client);

    let r = b.search_again_until("gamma tune", "Gamma Tune.flac", &["nmdc"], 60);
    assert_eq!(r["size"], 2_500_000);
    assert!(r["tth"].as_str().is_some_and(|t| t.len() == 39), "{r}");
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    let done = b.wait_done(tr["id"].as_i64().unwrap(), 90);
    let path = done["local_path"].as_str().unwrap();
    assert_eq!(sha256_file(Path::new(path)), want, "the ADC download differs");
    // Both nodes have a certificate and list ADCS: the transfer went over TLS.
    let log = b.omni.lines_so_far().join("\n");
    assert!(log.lines().any(|l| l.contains("ADC download complete") && l.contains("tls=true")), "{log}");
    wait_for("alice's upload to bob, done", 30, || {
        let ups = a.get("/api/uploads");
        ups.as_array()?
            .iter()
            .any(|u| u["user"] == "bob" && u["state"] == "done" && u["bytes"] == 2_500_000)
            .then_some(())
    });
}

#[test]
fn two_nodes_on_uhub_chat_search_and_download_over_adc() {
    let Some((hub, _)) = uhub(false) else { return };
    let url = format!("adc://127.0.0.1:{}", hub.port);
    let t = tempfile::tempdir().unwrap();
    share(&t.path().join("a"), "docs/Delta Notes.txt", &content(300_000, 3));
    let a = adc_node(&t.path().join("a"), "alice", &url);
    let b = adc_node(&t.path().join("b"), "bob", &url);

    // Main chat and a private message cross the hub.
    let (code, m) = b.post("/api/chats/messages", json!({"chat": "nmdc@uhub:hub", "text": "hello adc hub"}));
    assert_eq!(code, 201, "{m}");
    let (code, m) = b.post("/api/chats/messages", json!({"chat": "nmdc@uhub:pm:alice", "text": "psst over adc"}));
    assert_eq!(code, 201, "{m}");
    for (chat, text) in [("nmdc@uhub:hub", "hello adc hub"), ("nmdc@uhub:pm:bob", "psst over adc")] {
        wait_for(&format!("{text} in {chat} on A"), 30, || {
            let m = a.get(&format!("/api/chats/messages?chat={chat}"));
            m.as_array()?.iter().any(|m| m["text"] == text && m["nick"] == "bob").then_some(())
        });
    }
    // The user list shows the other node with its share.
    wait_for("alice in bob's user list", 30, || {
        let u = b.get("/api/users?chat=nmdc@uhub:hub");
        u.as_array()?.iter().any(|u| u["nick"] == "alice" && u["share_size"] == 300_000).then_some(())
    });
    // A search finds the file, with its TTH; the download matches it byte for byte.
    let r = b.search_again_until("delta notes", "Delta Notes.txt", &["nmdc"], 60);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    let done = b.wait_done(tr["id"].as_i64().unwrap(), 90);
    assert_eq!(
        sha256_file(Path::new(done["local_path"].as_str().unwrap())),
        sha256_file(&t.path().join("a/share/docs/Delta Notes.txt"))
    );
    // An ADC hub can be added at run time like any hub (this one is there already).
    let (code, e) = b.post("/api/networks", json!({"network": "nmdc", "address": url}));
    assert_eq!(code, 409, "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains("already logged in"), "{e}");
    // Browsing alice fetches her file list over ADC.
    let (code, v) = b.get_status("/api/browse?network=nmdc&session=uhub&user=alice&q=delta");
    assert_eq!(code, 200, "{v}");
    assert!(v.to_string().contains("Delta Notes.txt"), "{v}");
}

#[test]
fn a_node_downloads_from_another_on_plain_uhub() {
    let Some((hub, _)) = uhub(false) else { return };
    find_and_download(&format!("adc://127.0.0.1:{}", hub.port));
    // A passive downloader: it asks the active sharer to connect (RCM, then CTM back). A
    // hub of its own: the first pair's nicks may not have left this one yet.
    let (hub2, _) = Uhub::start(false);
    find_and_download_with(&format!("adc://127.0.0.1:{}", hub2.port), "listen = \"\"");
}

#[test]
fn a_node_downloads_from_another_on_uhub_requiring_tls_with_and_without_a_keyprint() {
    let Some((hub, kp)) = uhub(true) else { return };
    let kp = kp.unwrap();
    // Pinned: only that certificate is taken.
    find_and_download(&format!("adcs://127.0.0.1:{}/?kp={kp}", hub.port));
    // Unpinned: any certificate, as ncdc and AirDC++ take it.
    find_and_download(&format!("adcs://127.0.0.1:{}", hub.port));
}

#[test]
fn a_wrong_keyprint_or_plain_adc_is_not_logged_in_to_a_tls_hub() {
    let Some((hub, _)) = uhub(true) else { return };
    let t = tempfile::tempdir().unwrap();
    let wrong = format!("SHA256/{}", "A".repeat(52));
    for (dir, url) in [
        ("kp", format!("adcs://127.0.0.1:{}/?kp={wrong}", hub.port)),
        ("plain", format!("adc://127.0.0.1:{}", hub.port)),
    ] {
        let api = free_port();
        let config = format!(
            "[node]\nnick = \"eve\"\n[dcc]\nenabled = false\n[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n\
             [tox_bootstrap]\nenabled = false\n[tox]\nlisten = \"127.0.0.1:0\"\n[nmdc_client]\nenabled = false\n\
             [slsk_client]\nenabled = false\n[api]\nlisten = \"127.0.0.1:{api}\"\n[[hubs]]\nurl = \"{url}\"\nname = \"uhub\"\n"
        );
        let n = Node::start_bare(&t.path().join(dir), &config, api);
        let detail = wait_for("the session refused", 60, || {
            let s = n.get("/api/status");
            let x = s["networks"].as_array()?.iter().find(|x| x["name"] == "nmdc_client@uhub")?.clone();
            (x["state"] == "offline").then(|| x["detail"].as_str().unwrap_or("").to_owned())
        });
        if dir == "kp" {
            assert!(detail.contains("keyprint"), "{detail}");
        }
        let s = n.get("/api/status");
        assert!(!s.to_string().contains("\"online\""), "{s}");
    }
}

#[test]
fn a_node_downloads_from_ncdc_on_uhub() {
    if !Uhub::available() || !support::require("a_node_downloads_from_ncdc_on_uhub", &["ncdc", "tmux"]) {
        return;
    }
    let (hub, _) = Uhub::start(false);
    let url = format!("adc://127.0.0.1:{}", hub.port);
    let share_dir = tempfile::tempdir().unwrap();
    let file = share_dir.path().join("Epsilon Track.ogg");
    std::fs::write(&file, content(1_500_000, 11)).unwrap();
    let want = sha256_file(&file);
    let n = support::ncdc::Ncdc::start(support::ncdc::NcdcConfig {
        nick: "nancy".into(),
        hub: url.clone(),
        share: Some(share_dir.path().to_path_buf()),
        active_port: Some(support::free_port()),
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    share(&t.path().join("b"), "Zeta Notes.txt", &content(10_000, 5));
    let b = adc_node(&t.path().join("b"), "bob", &url);
    wait_for("nancy on the hub", 60, || {
        let u = b.get("/api/users?chat=nmdc@uhub:hub");
        u.as_array()?.iter().any(|u| u["nick"] == "nancy").then_some(())
    });
    let r = b.search_again_until("epsilon track", "Epsilon Track.ogg", &["nmdc"], 90);
    assert!(r["tth"].as_str().is_some_and(|t| t.len() == 39), "{r}");
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    let done = wait_done_or_show(&b, id, 120, || format!("ncdc log:\n{}", n.protocol_log()));
    assert_eq!(sha256_file(Path::new(done["local_path"].as_str().unwrap())), want);
    // It went over ADC: ncdc logged our GET by TTH.
    assert!(n.protocol_log().contains("CGET file TTH/"), "{}", n.protocol_log());
    // And ncdc fetches our file list from us (an upload to a real client).
    n.browse("bob");
    assert!(
        support::wait_until(std::time::Duration::from_secs(60), || n
            .protocol_log()
            .contains("CSND file files.xml.bz2")),
        "ncdc log:\n{}\nnode log:\n{}",
        n.protocol_log(),
        b.omni.lines_so_far().join("\n")
    );
}

/// A raw ADC user on uhub: logs in as `nick` (active, so CTMs name our address) and
/// returns the stream and the SIDs of everyone the hub listed, by nick.
fn raw_adc_user(port: u16, nick: &str) -> (std::net::TcpStream, String, std::collections::HashMap<String, String>) {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    s.write_all(b"HSUP ADBASE ADTIGR\n").unwrap();
    let pid = [9u8; 24];
    let cid = omnipeer_nmdc::tth::Tth(omnipeer_nmdc::tth::tiger(&pid)).to_base32();
    let pid = omnipeer_nmdc::tth::Tth(pid).to_base32();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut sids = std::collections::HashMap::new();
    let mut mine = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "uhub closed");
        let w: Vec<&str> = line.trim_end().split(' ').collect();
        match w[0] {
            "ISID" => {
                mine = w[1].to_owned();
                let inf =
                    format!("BINF {mine} ID{cid} PD{pid} NI{nick} SL1 SS0 SF0 HN1 HR0 HO0 VEraw SUTCP4 I40.0.0.0\n");
                s.write_all(inf.as_bytes()).unwrap();
            }
            "BINF" => {
                if let Some(n) = w.iter().find_map(|p| p.strip_prefix("NI")) {
                    sids.insert(n.to_owned(), w[1].to_owned());
                }
                if w[1] == mine {
                    return (s, mine, sids);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn a_flood_of_ctms_opens_a_bounded_number_of_connections() {
    use std::io::Write;
    let Some((hub, _)) = uhub(false) else { return };
    let t = tempfile::tempdir().unwrap();
    share(&t.path().join("b"), "x.txt", &content(1000, 1));
    let b = adc_node(&t.path().join("b"), "bob", &format!("adc://127.0.0.1:{}", hub.port));
    // A listener that takes connections and never answers: each holds a handshake open.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in sink.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(c);
        }
    });
    let (mut s, mine, sids) = raw_adc_user(hub.port, "mallory");
    let bob = sids.get("bob").expect("bob on the hub").clone();
    const CTMS: usize = 200;
    for i in 0..CTMS {
        s.write_all(format!("DCTM {mine} {bob} ADC/1.0 {sink_port} tok{i}\n").as_bytes()).unwrap();
    }
    // Bob connects up to its limit and no further while those handshakes hang.
    wait_for("bob's connections", 30, || (accepted.load(std::sync::atomic::Ordering::SeqCst) >= 64).then_some(()));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(n, 64, "bob opened {n} connections for {CTMS} CTMs (MAX_CC_CONNECTIONS is 64)");
    // And bob is still there and answering.
    assert_eq!(b.get_status("/api/status").0, 200);
}

#[test]
fn results_from_an_adc_hub_and_an_nmdc_hub_merge_by_tth() {
    let Some((hub, _)) = uhub(false) else { return };
    let adc = format!("[[hubs]]\nurl = \"adc://127.0.0.1:{}\"\nname = \"uhub\"\n", hub.port);
    let t = tempfile::tempdir().unwrap();
    // Node A runs an NMDC hub and is on uhub too, sharing one file; node B is on both.
    let pa = Ports::free();
    let a_dir = t.path().join("a");
    let file = share(&a_dir, "Eta Song.mp3", &content(400_000, 9));
    let a = Node::start(&a_dir, &format!("{}{adc}", server_config("alice", pa)), pa.api);
    let b_api = free_port();
    let b = Node::start(&t.path().join("b"), &joining_config("bob", pa, b_api, &adc), b_api);
    a.wait_network("nmdc_client@uhub", 60);
    b.wait_network("nmdc_client@uhub", 60);
    // One result, with a source on each hub (the NMDC hub's session has no label).
    let r = wait_for("a source from each hub", 60, || {
        let r = b.search_again_until("eta song", "Eta Song.mp3", &["nmdc"], 30);
        let sessions: Vec<String> =
            r["sources"].as_array()?.iter().map(|x| x["session"].as_str().unwrap_or("").to_owned()).collect();
        (sessions.len() == 2 && sessions.contains(&"uhub".to_owned())).then_some(r)
    });
    assert!(r["tth"].as_str().is_some_and(|t| t.len() == 39), "{r}");
    // A download of that result completes (from whichever source it takes).
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    let done = b.wait_done(tr["id"].as_i64().unwrap(), 90);
    assert_eq!(sha256_file(Path::new(done["local_path"].as_str().unwrap())), sha256_file(&file));
}

#[test]
fn eiskaltdcpp_and_a_node_download_from_each_other_on_uhub() {
    if !Uhub::available() || !support::require("eiskaltdcpp_on_uhub", &["eiskaltdcpp-daemon"]) {
        return;
    }
    use support::eiskalt::{Eiskalt, EiskaltConfig};
    let (hub, _) = Uhub::start(false);
    let url = format!("adc://127.0.0.1:{}", hub.port);
    let t = tempfile::tempdir().unwrap();
    // Eiskalt shares one file; the node another.
    let e_share = t.path().join("e-share");
    std::fs::create_dir_all(&e_share).unwrap();
    let e_file = e_share.join("Theta Clip.mkv");
    std::fs::write(&e_file, content(1_200_000, 21)).unwrap();
    let data = content(900_000, 22);
    let b_file = share(&t.path().join("b"), "Iota Book.epub", &data);
    let e = Eiskalt::start(EiskaltConfig {
        nick: "erin".into(),
        hub: url.clone(),
        share: Some(e_share.clone()),
        active_port: Some(support::free_port()),
        password: None,
    });
    let b = adc_node(&t.path().join("b"), "bob", &url);
    let t60 = std::time::Duration::from_secs(60);
    assert!(support::wait_until(t60, || e.users().contains(&"bob".to_owned())), "eiskalt sees bob: {:?}", e.users());

    // The node finds eiskalt's file and downloads it.
    let r = b.search_again_until("theta clip", "Theta Clip.mkv", &["nmdc"], 90);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    let done = wait_done_or_show(&b, tr["id"].as_i64().unwrap(), 120, || e.daemon_output());
    assert_eq!(sha256_file(Path::new(done["local_path"].as_str().unwrap())), sha256_file(&e_file));

    // Eiskalt fetches the node's file list, then its file by TTH (tiger tree, segments).
    let tth = omnipeer_nmdc::tth::tth(&data).to_base32();
    let target = e.download_dir().join("Iota Book.epub");
    assert_eq!(e.add_by_tth("Iota Book.epub", data.len() as u64, &tth, &e.download_dir()).unwrap(), 0);
    assert_eq!(e.download_filelist("bob").unwrap(), 0);
    assert!(e.wait_filelist("bob", std::time::Duration::from_secs(90)).is_some(), "eiskalt got bob's file list");
    e.match_lists().unwrap();
    assert!(
        e.wait_file(&target, std::time::Duration::from_secs(120)),
        "eiskalt downloaded from bob; queue {}\nnode log:\n{}",
        e.queue_list(),
        b.omni.lines_so_far().join("\n")
    );
    assert_eq!(sha256_file(&target), sha256_file(&b_file));
}

/// Wait up to `secs` for transfer `id` of `n` to be done; on failure or timeout, panic with
/// the transfer, the node's log and `peer()` (the other side's log).
fn wait_done_or_show(n: &Node, id: i64, secs: u64, peer: impl Fn() -> String) -> serde_json::Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let t = n.get(&format!("/api/transfers/{id}"));
        if t["state"] == "done" {
            return t;
        }
        let show = || format!("{t}\n{}\nnode log:\n{}", peer(), n.omni.lines_so_far().join("\n"));
        assert_ne!(t["state"], "failed", "{}", show());
        assert!(std::time::Instant::now() < until, "transfer {id} timed out: {}", show());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_raw_adc_peer_gets_the_list_a_file_range_and_errors_from_a_node() {
    use std::io::{BufRead, BufReader, Read, Write};
    let Some((hub, _)) = uhub(false) else { return };
    let t = tempfile::tempdir().unwrap();
    let data = content(200_000, 31);
    share(&t.path().join("b"), "Kappa Data.bin", &data);
    let tth = omnipeer_nmdc::tth::tth(&data).to_base32();
    let _b = adc_node(&t.path().join("b"), "bob", &format!("adc://127.0.0.1:{}", hub.port));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = l.local_addr().unwrap().port();
    let (mut s, mine, sids) = raw_adc_user(hub.port, "mallory");
    let bob = sids.get("bob").expect("bob on the hub").clone();
    s.write_all(format!("DCTM {mine} {bob} ADC/1.0 {lport} tokA\n").as_bytes()).unwrap();
    let (c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    let mut next = |r: &mut BufReader<std::net::TcpStream>| {
        line.clear();
        r.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    };
    assert_eq!(next(&mut r), "CSUP ADBASE ADTIGR");
    // Mallory's CID as the hub knows it (another one is dropped: the next test).
    let cid = omnipeer_nmdc::tth::Tth(omnipeer_nmdc::tth::tiger(&[9u8; 24])).to_base32();
    w.write_all(format!("CSUP ADBASE ADTIGR\nCINF ID{cid}\n").as_bytes()).unwrap();
    let inf = next(&mut r);
    assert!(inf.starts_with("CINF ID") && inf.ends_with(" TOtokA"), "{inf}");
    // The whole list, uncompressed.
    w.write_all(b"CGET list / 0 -1\n").unwrap();
    let snd = next(&mut r);
    let len: usize = snd.strip_prefix("CSND list / 0 ").unwrap_or_else(|| panic!("{snd}")).parse().unwrap();
    let mut xml = vec![0; len];
    r.read_exact(&mut xml).unwrap();
    assert!(String::from_utf8_lossy(&xml).contains("Kappa Data.bin"));
    // A range of the file by TTH, then its tiger tree, on the same connection.
    w.write_all(format!("CGET file TTH/{tth} 1000 5000\n").as_bytes()).unwrap();
    assert_eq!(next(&mut r), format!("CSND file TTH/{tth} 1000 5000"));
    let mut part = vec![0; 5000];
    r.read_exact(&mut part).unwrap();
    assert_eq!(part, data[1000..6000]);
    w.write_all(format!("CGET tthl TTH/{tth} 0 -1\n").as_bytes()).unwrap();
    let snd = next(&mut r);
    assert!(snd.starts_with(&format!("CSND tthl TTH/{tth} 0 ")), "{snd}");
    let n: usize = snd.rsplit(' ').next().unwrap().parse().unwrap();
    let mut leaves = vec![0; n];
    r.read_exact(&mut leaves).unwrap();
    let root = omnipeer_nmdc::tth::Tth::from_base32(&tth).unwrap();
    assert!(omnipeer_nmdc::tth::verify_tthl(&leaves, &root).is_ok(), "the tiger tree does not match the root");
    // What is not shared, and a start past the end.
    w.write_all(b"CGET file TTH/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA 0 -1\n").unwrap();
    assert!(next(&mut r).starts_with("CSTA 151 "));
    w.write_all(format!("CGET file TTH/{tth} 999999 -1\n").as_bytes()).unwrap();
    assert!(next(&mut r).starts_with("CSTA 152 "));
}

#[test]
fn a_peer_that_answers_a_ctm_with_another_cid_is_dropped() {
    use std::io::{Read, Write};
    let Some((hub, _)) = uhub(false) else { return };
    let t = tempfile::tempdir().unwrap();
    share(&t.path().join("b"), "Lambda.bin", &content(1000, 3));
    let _b = adc_node(&t.path().join("b"), "bob", &format!("adc://127.0.0.1:{}", hub.port));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = l.local_addr().unwrap().port();
    let (mut s, mine, sids) = raw_adc_user(hub.port, "mallory");
    s.write_all(format!("DCTM {mine} {} ADC/1.0 {lport} tokB\n", sids["bob"]).as_bytes()).unwrap();
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let not_mine = omnipeer_nmdc::tth::Tth([1; 24]).to_base32();
    c.write_all(format!("CSUP ADBASE ADTIGR\nCINF ID{not_mine}\nCGET file files.xml.bz2 0 -1\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(!got.contains("CSND"), "a peer with a CID not its own was served: {got}");
}

#[test]
fn the_node_s_own_hub_setting_takes_an_adc_address() {
    let Some((hub, _)) = uhub(false) else { return };
    let url = format!("adc://127.0.0.1:{}", hub.port);
    let t = tempfile::tempdir().unwrap();
    share(&t.path().join("a"), "Mu Song.opus", &content(50_000, 4));
    let _a = adc_node(&t.path().join("a"), "alice", &url);
    let api = free_port();
    let config = format!(
        "[node]\nnick = \"bob\"\n[dcc]\nenabled = false\n[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n\
         [tox_bootstrap]\nenabled = false\n[tox]\nlisten = \"127.0.0.1:0\"\n[nmdc_client]\nhub = \"{url}\"\n\
         [slsk_client]\nenabled = false\n[api]\nlisten = \"127.0.0.1:{api}\"\n"
    );
    let b = Node::start_bare(&t.path().join("b"), &config, api);
    b.wait_network("nmdc_client", 60);
    let r = b.search_again_until("mu song", "Mu Song.opus", &["nmdc"], 60);
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"], "network": "nmdc"}));
    assert_eq!(code, 201, "{tr}");
    b.wait_done(tr["id"].as_i64().unwrap(), 90);
    let (code, m) = b.post("/api/chats/messages", json!({"chat": "nmdc:hub", "text": "hi from the main session"}));
    assert_eq!(code, 201, "{m}");
}

/// A segmented download from a user on an NMDC hub and a user on an ADC hub at once
/// (docs/protocols/nmdc.md, "Segmented downloads"): node A runs the NMDC hub and shares
/// the file there; node C shares the same file on uhub only; node B, on both hubs, gets
/// one merged result with both sources and fetches ranges from both (`$ADCGET` from A,
/// `CGET` from C), every block checked against the Tiger tree.
#[test]
fn a_segmented_download_takes_ranges_from_an_nmdc_and_an_adc_source_at_once() {
    const NAME: &str = "Zeta Movie.mkv";
    const SIZE: usize = 12_000_000;
    // Sharers upload at most this: the file takes seconds, so both sources get work.
    const KIB: u64 = 1024;
    let Some((hub, _)) = uhub(false) else { return };
    let url = format!("adc://127.0.0.1:{}", hub.port);
    let t = tempfile::tempdir().unwrap();
    let data = content(SIZE, 11);
    let pa = Ports::free();
    let a_dir = t.path().join("a");
    let file = share(&a_dir, &format!("video/{NAME}"), &data);
    let a_cfg = format!("{}[transfers]\nmax_upload_kib = {KIB}\n", server_config("alice", pa));
    let a = Node::start(&a_dir, &a_cfg, pa.api);
    let c_dir = t.path().join("c");
    share(&c_dir, &format!("films/{NAME}"), &data);
    let c = adc_node_with(&c_dir, "carol", &url, &format!("[transfers]\nmax_upload_kib = {KIB}\n"));
    // B: on A's NMDC hub and on uhub; no Soulseek (A's Soulseek source would be a third).
    let b = bob_on_both_hubs(&t.path().join("b"), pa, &url);

    let r = wait_for("a source on each hub", 90, || {
        let r = b.search_again_until("zeta movie", NAME, &["nmdc"], 30);
        let users: Vec<String> =
            r["sources"].as_array()?.iter().map(|x| x["user"].as_str().unwrap_or("").to_owned()).collect();
        (users.len() == 2 && users.contains(&"alice".to_owned()) && users.contains(&"carol".to_owned())).then_some(r)
    });
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let id = tr["id"].as_i64().unwrap();
    let line = b.omni.wait_line_containing("segmented download");
    assert!(line.contains("sources=2"), "{line}");
    // The verified bytes each source delivered, as last seen while it ran.
    let mut per_source = std::collections::HashMap::<String, u64>::new();
    let done = wait_for("the segmented download done", 180, || {
        if let (200, seg) = b.get_status(&format!("/api/transfers/{id}/segments")) {
            for s in seg["sources"].as_array().into_iter().flatten() {
                let user = s["user"].as_str().unwrap_or("").to_owned();
                let bytes = s["bytes"].as_u64().unwrap_or(0);
                let e = per_source.entry(user).or_default();
                *e = (*e).max(bytes);
            }
        }
        let tr = b.get(&format!("/api/transfers/{id}"));
        assert_ne!(tr["state"], "failed", "{tr}");
        if tr["state"] == "done" {
            return Some(tr);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        None
    });
    let path = done["local_path"].as_str().unwrap();
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&file), "the file differs");
    for who in ["alice", "carol"] {
        assert!(per_source.get(who).is_some_and(|&n| n > 0), "{who} sent no verified block: {per_source:?}");
    }
    // And each sharer shows uploads of part of it.
    for (n, who) in [(&a, "alice"), (&c, "carol")] {
        let ups = n.get("/api/uploads");
        let sent: u64 = ups.as_array().unwrap().iter().map(|u| u["bytes"].as_u64().unwrap_or(0)).sum();
        assert!(sent > 0, "{who}: {ups}");
    }
    drop(hub);
}

/// An ADC source that answers a range with another start than asked
/// (docs/protocols/adc.md, "Ranges for segmented downloads"): node B refuses the answer
/// before using a byte, and the file still comes whole from the NMDC source. Mallory (a
/// raw ADC user on uhub) answers B's search with the file's TTH, lets B connect after its
/// CTM, has no tree (`CSTA 151`) and offers every range one byte late.
#[test]
fn an_adc_source_answering_another_range_is_refused_and_the_file_still_matches() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const NAME: &str = "Theta Clip.mkv";
    const SIZE: usize = 8_000_000;
    let Some((hub, _)) = uhub(false) else { return };
    let url = format!("adc://127.0.0.1:{}", hub.port);
    let t = tempfile::tempdir().unwrap();
    let data = content(SIZE, 13);
    let tth = omnipeer_nmdc::tth::tth(&data).to_base32();
    let pa = Ports::free();
    let a_dir = t.path().join("a");
    let file = share(&a_dir, &format!("video/{NAME}"), &data);
    // Slow enough that Mallory is asked for ranges before Alice has sent everything.
    let a_cfg = format!("{}[transfers]\nmax_upload_kib = 1024\n", server_config("alice", pa));
    let _a = Node::start(&a_dir, &a_cfg, pa.api);
    let b = bob_on_both_hubs(&t.path().join("b"), pa, &url);

    let (s, mine, _) = raw_adc_user(hub.port, "mallory");
    s.set_read_timeout(None).unwrap();
    let cid = omnipeer_nmdc::tth::Tth(omnipeer_nmdc::tth::tiger(&[9u8; 24])).to_base32();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let (tth2, cid2) = (tth.clone(), cid.clone());
    std::thread::spawn(move || {
        let mut w = s.try_clone().unwrap();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            let p: Vec<&str> = line.split(' ').collect();
            match p[0] {
                "BSCH" if line.contains("ANtheta") => {
                    let Some(tok) = p.iter().find_map(|x| x.strip_prefix("TO")) else { continue };
                    let res = format!("DRES {mine} {} FN/films/Theta\\sClip.mkv SI{SIZE} SL1 TR{tth2} TO{tok}\n", p[1]);
                    let _ = w.write_all(res.as_bytes());
                }
                "DCTM" if p.len() >= 6 => {
                    let (port, token) = (p[4].parse::<u16>().unwrap_or(0), p[5].to_owned());
                    let (counter, cid) = (counter.clone(), cid2.clone());
                    std::thread::spawn(move || {
                        let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
                        let mut w = c.try_clone().unwrap();
                        let _ = w.write_all(b"CSUP ADBASE ADTIGR\n");
                        let mut sent_inf = false;
                        for line in BufReader::new(c).lines() {
                            let Ok(line) = line else { return };
                            let p: Vec<&str> = line.split(' ').collect();
                            let r = match p[0] {
                                "CINF" if !sent_inf => {
                                    sent_inf = true;
                                    w.write_all(format!("CINF ID{cid} TO{token}\n").as_bytes())
                                }
                                "CGET" if p.get(1) == Some(&"tthl") => {
                                    w.write_all(b"CSTA 151 File\\sNot\\sAvailable\n")
                                }
                                "CGET" if p.len() >= 5 => {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    let start: u64 = p[3].parse().unwrap_or(0);
                                    w.write_all(format!("CSND file {} {} {}\n", p[2], start + 1, p[4]).as_bytes())
                                }
                                _ => Ok(()),
                            };
                            if r.is_err() {
                                return;
                            }
                        }
                    });
                }
                _ => {}
            }
        }
    });

    let r = wait_for("a source on each hub", 90, || {
        let r = b.search_again_until("theta clip", NAME, &["nmdc"], 30);
        let users: Vec<String> =
            r["sources"].as_array()?.iter().map(|x| x["user"].as_str().unwrap_or("").to_owned()).collect();
        (users.len() == 2 && users.contains(&"alice".to_owned()) && users.contains(&"mallory".to_owned())).then_some(r)
    });
    assert_eq!(r["tth"], tth.as_str(), "{r}");
    let (code, tr) = b.post("/api/transfers", json!({"result": r["id"]}));
    assert_eq!(code, 201, "{tr}");
    let done = b.wait_done(tr["id"].as_i64().unwrap(), 180);
    let path = done["local_path"].as_str().unwrap();
    assert_eq!(sha256_file(Path::new(path)), sha256_file(&file), "the file differs");
    assert!(asked.load(Ordering::SeqCst) > 0, "mallory was never asked for a range");
    let log = b.omni.lines_so_far().join("\n");
    assert!(log.contains("mallory offered"), "no refused answer from mallory in the log:\n{log}");
    drop(hub);
}
