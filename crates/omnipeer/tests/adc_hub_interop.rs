//! Interop of the real ADC clients (ncdc 1.23.1, EiskaltDC++ 2.4.2 daemon) with
//! `omnipeer adc hub` (docs/protocols/adc.md#hub), plain (`adc://`) and over TLS
//! (`adcs://`): they log in and see each other, chat both ways, search each other and
//! download from each other; and a raw client that claims another user's SID, or a CID that
//! is not the Tiger hash of its PID, is refused.
//!
//! Every test skips (and passes) when a client is not installed;
//! `scripts/install-test-deps.sh` installs them.

mod support;

mod omni;

use omni::Omni;
use omnipeer_nmdc::tth::{tiger, Tth};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::eiskalt::{Eiskalt, EiskaltConfig};
use support::ncdc::{Ncdc, NcdcConfig};
use support::{free_port, sha256_file, wait_until};

const T: Duration = Duration::from_secs(40);

/// `omnipeer adc hub` on a free port (`--tls` when `tls`); returns it and the address
/// clients use (`adc://127.0.0.1:PORT` or `adcs://127.0.0.1:PORT/?kp=SHA256/...`).
fn hub(tls: bool) -> (Omni, String) {
    hub_with(tls, &[])
}

/// [`hub`] with more arguments.
fn hub_with(tls: bool, more: &[&str]) -> (Omni, String) {
    let mut args = vec!["adc", "hub", "--listen", "127.0.0.1:0", "--name", "omnipeer ADC test hub"];
    if tls {
        args.push("--tls");
    }
    args.extend(more);
    let hub = Omni::start(&args);
    let url = hub.wait_line("hub address ");
    hub.wait_line("listening on ");
    (hub, url)
}

/// The nicks ncdc received a `BINF` for (its protocol log holds `... < BINF SID ... NInick ...`).
fn ncdc_users(n: &Ncdc) -> Vec<String> {
    let mut v: Vec<String> = n
        .protocol_log()
        .lines()
        .filter(|l| l.contains("< BINF "))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("NI")).map(str::to_owned))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// ncdc and EiskaltDC++ on our hub: see each other, chat both ways, search each other, and
/// each downloads a file from the other. With `ncdc_active` false ncdc is passive: its
/// search goes out as `FSCH … +TCP4` to active users only, results come back through the
/// hub (`DRES`), and it asks for connections with `DRCM`.
fn two_clients_on_our_hub(tls: bool, ncdc_active: bool) {
    let (_hub, url) = hub(tls);
    let dir_a = support::temp_dir("share-a-");
    let file_a = dir_a.path().join("alice song.bin");
    support::write_test_file(&file_a, 1_200_000, 21);
    let dir_b = support::temp_dir("share-b-");
    let file_b = dir_b.path().join("bob movie.bin");
    support::write_test_file(&file_b, 900_000, 22);
    let tth_a = support::tth_rhash(&file_a).expect("rhash");
    let tth_b = support::tth_rhash(&file_b).expect("rhash");

    let n = Ncdc::start(NcdcConfig {
        nick: "alice".into(),
        hub: url.clone(),
        share: Some(dir_a.path().into()),
        active_port: ncdc_active.then(free_port),
        ..Default::default()
    });
    let e = Eiskalt::start(EiskaltConfig {
        nick: "bob".into(),
        hub: url.clone(),
        share: Some(dir_b.path().into()),
        active_port: Some(free_port()),
        ..Default::default()
    });
    let both = vec!["alice".to_owned(), "bob".to_owned()];
    assert!(wait_until(T, || ncdc_users(&n) == both), "ncdc saw {:?}; log:\n{}", ncdc_users(&n), n.protocol_log());
    assert!(wait_until(T, || e.users() == both), "eiskalt saw {:?}; output:\n{}", e.users(), e.daemon_output());

    // Chat: eiskalt → ncdc, and ncdc → eiskalt.
    e.rpc("hub.say", serde_json::json!({"huburl": e.hub_url(), "message": "hello from bob"})).unwrap();
    assert!(n.wait_log("BMSG", T) && n.wait_log("hello\\sfrom\\sbob", T), "ncdc got bob's chat:\n{}", n.protocol_log());
    n.hub_tab();
    n.cmd("hello from alice");
    let chat =
        || e.rpc("hub.getchat", serde_json::json!({"huburl": e.hub_url(), "separator": "\n"})).unwrap_or_default();
    assert!(wait_until(T, || chat().to_string().contains("hello from alice")), "eiskalt chat: {}", chat());

    // Search: eiskalt finds alice's file, ncdc finds bob's.
    e.search("alice song").unwrap();
    assert!(
        wait_until(T, || e.search_results().to_string().contains("alice song.bin")),
        "eiskalt search results: {}",
        e.search_results()
    );
    n.search("bob movie");
    assert!(
        wait_until(T, || n.screen().contains("bob movie.bin")),
        "ncdc search screen:\n{}\nlog:\n{}",
        n.screen(),
        n.protocol_log()
    );

    // Downloads: eiskalt gets alice's file by TTH (from her file list), ncdc gets bob's from
    // its search result.
    let target = e.download_dir().join("alice song.bin");
    assert_eq!(e.add_by_tth("alice song.bin", 1_200_000, &tth_a, &e.download_dir()).unwrap(), 0);
    assert_eq!(e.download_filelist("alice").unwrap(), 0);
    assert!(e.wait_filelist("alice", T).is_some(), "eiskalt got alice's list; output:\n{}", e.daemon_output());
    e.match_lists().unwrap();
    assert!(e.wait_file(&target, T), "eiskalt downloaded alice's file; queue {}", e.queue_list());
    assert_eq!(sha256_file(&target), sha256_file(&file_a));

    n.search(&format!("-tth {tth_b}"));
    assert!(wait_until(T, || n.screen().contains("bob movie.bin")), "ncdc tth search:\n{}", n.screen());
    n.keys(&["d"]);
    let got = n.download_dir().join("bob movie.bin");
    assert!(
        wait_until(T, || got.is_file() && sha256_file(&got) == sha256_file(&file_b)),
        "ncdc downloaded bob's file; screen:\n{}\nlog:\n{}",
        n.screen(),
        n.protocol_log()
    );
}

#[test]
fn ncdc_and_eiskalt_chat_search_and_download_on_our_adc_hub() {
    if !support::require("ncdc_and_eiskalt_on_our_adc_hub", &["ncdc", "tmux", "eiskaltdcpp-daemon", "rhash"]) {
        return;
    }
    two_clients_on_our_hub(false, true);
}

#[test]
fn passive_ncdc_and_active_eiskalt_search_and_download_through_our_adc_hub() {
    if !support::require("passive_ncdc_and_eiskalt_on_our_adc_hub", &["ncdc", "tmux", "eiskaltdcpp-daemon", "rhash"]) {
        return;
    }
    two_clients_on_our_hub(false, false);
}

#[test]
fn ncdc_and_eiskalt_chat_search_and_download_on_our_adc_hub_over_tls() {
    if !support::require("ncdc_and_eiskalt_on_our_adcs_hub", &["ncdc", "tmux", "eiskaltdcpp-daemon", "rhash"]) {
        return;
    }
    two_clients_on_our_hub(true, true);
}

/// A raw ADC client on a TCP connection, for what real clients never send.
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
    sid: String,
}

impl Raw {
    /// Connects to `hub` (`adc://127.0.0.1:PORT`) and sends `HSUP`; reads up to `ISID`.
    fn connect(hub: &str) -> Raw {
        let addr = hub.strip_prefix("adc://").unwrap();
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(T)).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        let mut me = Raw { w, r, sid: String::new() };
        me.send("HSUP ADBASE ADTIGR");
        me.sid = me.read_until("ISID ").trim_start_matches("ISID ").to_owned();
        me
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// The next line; "" at the end of the stream.
    fn line(&mut self) -> String {
        let mut l = String::new();
        let _ = self.r.read_line(&mut l);
        l.trim_end_matches('\n').to_owned()
    }

    /// Lines until one starting with `prefix` (returned); panics at the end of the stream.
    fn read_until(&mut self, prefix: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let l = self.line();
            if l.starts_with(prefix) {
                return l;
            }
            assert!(!l.is_empty(), "no {prefix:?} before the end; got {seen:?}");
            seen.push(l);
        }
    }

    /// Lines up to and including one starting with `prefix`.
    fn lines_until(&mut self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "no {prefix:?} before the end; got {seen:?}");
            let done = l.starts_with(prefix);
            seen.push(l);
            if done {
                return seen;
            }
        }
    }

    /// Every line until the hub closes the connection.
    fn until_closed(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                return v;
            }
            v.push(l);
        }
    }
}

/// A PID and its CID (Tiger of the PID), base32.
fn identity(seed: u8) -> (String, String) {
    let pid = [seed; 24];
    (Tth(pid).to_base32(), Tth(tiger(&pid)).to_base32())
}

#[test]
fn a_client_claiming_another_sid_or_cid_is_refused() {
    let (_hub, url) = hub(false);
    let (pid_a, cid_a) = identity(1);
    let mut a = Raw::connect(&url);
    a.send(&format!("BINF {} ID{cid_a} PD{pid_a} NIalice", a.sid));
    let own = a.read_until(&format!("BINF {} ", a.sid));
    assert!(!own.contains("PD"), "the PID is never sent back: {own}");

    // Mallory logs in properly, then speaks as alice.
    let (pid_m, cid_m) = identity(2);
    let mut m = Raw::connect(&url);
    m.send(&format!("BINF {} ID{cid_m} PD{pid_m} NImallory", m.sid));
    m.read_until(&format!("BINF {} ", m.sid));
    let seen = a.read_until(&format!("BINF {} ", m.sid));
    assert!(seen.contains("NImallory") && !seen.contains(&pid_m), "alice sees mallory without her PID: {seen}");
    m.send(&format!("BMSG {} I\\sam\\salice", a.sid));
    let rest = m.until_closed();
    assert!(rest.iter().any(|l| l.starts_with("ISTA 240 ")), "mallory refused: {rest:?}");
    // Alice gets mallory's departure, never the spoofed line.
    let quit = a.read_until("IQUI ");
    assert_eq!(quit, format!("IQUI {}", m.sid));
    a.send(&format!("BMSG {} still\\shere", a.sid));
    let between = a.lines_until("BMSG ");
    assert_eq!(between, [format!("BMSG {} still\\shere", a.sid)], "nothing from mallory came between");

    // Eve claims alice's CID with a PID of her own: refused before she is in.
    let (pid_e, _) = identity(3);
    let mut e = Raw::connect(&url);
    e.send(&format!("BINF {} ID{cid_a} PD{pid_e} NIeve", e.sid));
    let rest = e.until_closed();
    assert!(rest.iter().any(|l| l.starts_with("ISTA 227 ")), "eve refused: {rest:?}");
    assert!(!rest.iter().any(|l| l.starts_with("BINF")), "eve got no user list: {rest:?}");
    // Nobody saw eve.
    a.send(&format!("BMSG {} bye", a.sid));
    assert_eq!(a.lines_until("BMSG "), [format!("BMSG {} bye", a.sid)]);
}

/// RFC 4648 base32 without padding (keyprints).
fn base32(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(A[((acc >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(A[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Connects with `openssl s_client`, sends `HSUP`, and returns what the hub answered and the
/// keyprint of the certificate it showed.
fn tls_hello(addr: &str, dir: &std::path::Path) -> (String, String) {
    use std::process::{Command, Stdio};
    let mut c = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-quiet", "-no_ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"HSUP ADBASE ADTIGR\n").unwrap();
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut got = String::new();
    while !got.contains("IINF ") {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        got.push_str(&l);
    }
    drop(stdin);
    let _ = c.kill();
    let _ = c.wait();
    // The certificate's DER bytes, hashed as KEYP does.
    let pem = dir.join("tls").join("cert.pem");
    let der = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(&pem).output().unwrap().stdout;
    use sha2::Digest;
    (got, format!("SHA256/{}", base32(&sha2::Sha256::digest(&der))))
}

#[test]
fn up_runs_the_adc_hub_over_tls_with_a_certificate_kept_in_the_data_dir() {
    if !support::require("up_runs_the_adc_hub_over_tls", &["openssl"]) {
        return;
    }
    let data = support::temp_dir("adc-up-");
    let port = free_port();
    let config = data.path().join("omnipeer.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nnick = \"adcnode\"\n[dcc]\nenabled = false\n[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n\
             [tox_bootstrap]\nenabled = false\n[tox]\nenabled = false\n[nmdc_client]\nenabled = false\n\
             [slsk_client]\nenabled = false\n[api]\nenabled = false\n\
             [adc_hub]\nenabled = true\ntls = true\nlisten = \"127.0.0.1:{port}\"\nname = \"node hub\"\n"
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "up"];
    let addr = format!("127.0.0.1:{port}");
    let first = {
        let up = Omni::start_in(data.path(), &args);
        let url = up.wait_line("adc hub: ");
        let kp = up.wait_line("keyprint ");
        assert_eq!(url, format!("adcs://{addr}/?kp={kp}"));
        up.wait_line(&format!("listening on {addr}"));
        let (hello, cert_kp) = tls_hello(&addr, data.path());
        assert!(hello.starts_with("ISUP ADBASE ADTIGR\nISID "), "over TLS: {hello:?}");
        assert!(hello.contains("IINF CT32 NInode\\shub"), "{hello:?}");
        assert_eq!(kp, cert_kp, "the printed keyprint is the certificate's");
        kp
    };
    // Restarted, the node keeps its certificate: a pinned keyprint stays valid.
    let up = Omni::start_in(data.path(), &args);
    assert_eq!(up.wait_line("keyprint "), first);
}

#[test]
fn a_registered_operator_logs_in_with_its_password_and_kicks() {
    if !support::require("a_registered_operator_on_our_adc_hub", &["ncdc", "tmux", "eiskaltdcpp-daemon"]) {
        return;
    }
    let (_hub, url) = hub_with(false, &["--register", "alice:s3cret:op", "--register", "carol:other"]);
    let n = Ncdc::start(NcdcConfig {
        nick: "alice".into(),
        hub: url.clone(),
        password: Some("s3cret".into()),
        ..Default::default()
    });
    let e = Eiskalt::start(EiskaltConfig { nick: "bob".into(), hub: url.clone(), ..Default::default() });
    assert!(wait_until(T, || e.users().len() == 2), "eiskalt saw {:?}", e.users());
    // ncdc answered the salted challenge, and the hub marked it registered operator (CT 2|4).
    let log = n.protocol_log();
    assert!(log.contains("< IGPA ") && log.contains("> HPAS "), "{log}");
    assert!(
        log.lines().any(|l| l.contains("< BINF AAAB ") && l.contains(" CT6")),
        "alice's INF as the hub relays it:\n{log}"
    );
    // The operator kicks bob from main chat.
    n.hub_tab();
    n.cmd("!kick bob spamming");
    assert!(n.wait_log("IQUI AAAC IDAAAB MSspamming", T), "{}", n.protocol_log());
    assert!(wait_until(T, || !e.users().contains(&"bob".to_owned())), "bob still sees {:?}", e.users());

    // A wrong password is refused.
    let mut c = Ncdc::start(NcdcConfig {
        nick: "carol".into(),
        hub: url.clone(),
        password: Some("wrong".into()),
        ..Default::default()
    });
    assert!(c.wait_log("< ISTA 223 ", T), "{}", c.protocol_log());
    c.stop();
}

#[test]
fn before_its_binf_a_client_cannot_send_a_long_line() {
    let (_hub, url) = hub(false);
    let mut r = Raw::connect(&url);
    // 8 KiB (MAX_LINE_LOGIN) and more without a newline: refused and closed, not buffered.
    let _ = r.w.write_all(&vec![b'x'; 9 * 1024]);
    let rest = r.until_closed();
    assert!(rest.iter().any(|l| l.starts_with("ISTA 240 line\\slonger\\sthan\\s8192")), "{rest:?}");
    // After it, a long chat line is fine.
    let (pid, cid) = identity(7);
    let mut a = Raw::connect(&url);
    a.send(&format!("BINF {} ID{cid} PD{pid} NIalice", a.sid));
    a.read_until(&format!("BINF {} ", a.sid));
    let long = "y".repeat(8000);
    a.send(&format!("BMSG {} {long} {long}", a.sid));
    assert!(a.read_until("BMSG ").contains(&long));
}
