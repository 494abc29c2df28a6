//! The `omnipeer` binary as users and scripts drive it (README.md "The two commands"); no protocol page: `listening on ADDR`,
//! exit codes, one-line errors, SIGTERM, the DCC commands end to end.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_omnipeer");

fn omnipeer(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir").arg(data).env_remove("RUST_LOG").env("NO_COLOR", "1");
    c
}

/// A running server: its address (from `listening on ADDR`) and the rest of its stderr.
struct Server {
    child: Child,
    addr: String,
    stderr_lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A test that failed half-way must not leave the server running (a no-op once
        // sigterm has reaped it).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("omnipeer starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        forward_lines(stderr, tx);
        // Owned by the Server from here on, so a panic below still ends the child (Drop kills it).
        let mut server = Server { child, addr: String::new(), stderr_lines: rx };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = server
                .stderr_lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("server printed 'listening on ADDR'");
            if let Some(addr) = line.strip_prefix("listening on ") {
                server.addr = addr.trim().to_owned();
                return server;
            }
        }
    }

    fn sigterm(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn forward_lines(stderr: ChildStderr, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dcc_server(data: &Path, extra: &[&str]) -> Command {
    let mut c = omnipeer(data);
    c.args(["dcc", "server", "--listen", "127.0.0.1:0", "--nick", "bob"])
        .arg("--share")
        .arg(data.join("share"))
        .arg("--incoming")
        .arg(data.join("incoming"))
        .args(extra);
    c
}

#[test]
fn config_default_prints_the_embedded_toml() {
    let t = tempfile::tempdir().unwrap();
    let (code, out, _) = run(omnipeer(t.path()).args(["config", "default"]));
    assert_eq!(code, 0);
    assert!(out.contains("[dcc]") && out.contains("handshake_timeout_secs = 15"), "{out}");
    // The printed file is a valid configuration of its own.
    let f = t.path().join("c.toml");
    std::fs::write(&f, &out).unwrap();
    let (code, out, err) = run(omnipeer(t.path()).arg("--config").arg(&f).args(["config", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max_connections: 64"), "{out}");
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    let t = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = t.path().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    let (code, _, err) = run(omnipeer(t.path()).args(["dcc", "send", &format!("127.0.0.1:{port}")]).arg(&file));
    assert_ne!(code, 0);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("cannot connect"), "{err}");

    let (code, _, err) = run(omnipeer(t.path()).args(["dcc", "send", "127.0.0.1:1", "/no/such/file"]));
    assert_ne!(code, 0);
    assert!(err.trim_end().starts_with("error: cannot open /no/such/file"), "{err}");

    let bad = t.path().join("bad.toml");
    std::fs::write(&bad, "[dcc]\nlisten_adr = \"x\"\n").unwrap();
    let (code, _, err) = run(omnipeer(t.path()).arg("--config").arg(&bad).args(["config", "check"]));
    assert_ne!(code, 0);
    assert!(err.contains("unknown configuration key 'dcc.listen_adr'"), "{err}");

    let (code, _, _) = run(omnipeer(t.path()).args(["dcc", "frobnicate"]));
    assert_ne!(code, 0);

    // An I2P destination may start with '-' (I2P base64 has it): it is the peer, not an
    // option. (Here the SAM bridge is missing, which is the error the user sees.)
    let dest = format!("-Gz5{}", "A".repeat(512));
    let (code, _, err) =
        run(omnipeer(t.path()).args(["ministream", "connect", "--sam", &format!("127.0.0.1:{port}"), "--peer", &dest]));
    assert_ne!(code, 0);
    assert!(!err.contains("unexpected argument"), "{err}");
    assert!(err.contains("error:") && err.contains(&port.to_string()), "{err}");
}

#[test]
fn help_documents_the_commands() {
    let t = tempfile::tempdir().unwrap();
    let (code, out, _) = run(omnipeer(t.path()).args(["help", "dcc"]));
    assert_eq!(code, 0);
    for sub in ["server", "chat", "send", "fserve"] {
        assert!(out.contains(sub), "{out}");
    }
    let (code, out, _) = run(omnipeer(t.path()).args(["dcc", "server", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("--services") && out.contains("--incoming"), "{out}");
}

#[test]
fn up_with_defaults_serves_dcc_and_stops_on_sigterm() {
    let t = tempfile::tempdir().unwrap();
    // Port 0 so parallel test runs never collide; everything else is the embedded default.
    std::fs::create_dir_all(t.path()).unwrap();
    std::fs::write(
        t.path().join("config.toml"),
        "[dcc]\nlisten = \"127.0.0.1:0\"\n[nmdc_hub]\nlisten = \"127.0.0.1:0\"\n[slsk_server]\nlisten = \"127.0.0.1:0\"\n[tox_bootstrap]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n[tox]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let server = Server::start({
        let mut c = omnipeer(t.path());
        c.arg("up");
        c
    });
    assert!(t.path().join("share").is_dir());
    assert!(t.path().join("incoming").is_dir());
    // The NMDC hub is up too: it greets with $Lock.
    let hub_addr = loop {
        let l = server.stderr_lines.recv_timeout(Duration::from_secs(10)).expect("the hub's listening line");
        if let Some(a) = l.strip_prefix("listening on ") {
            break a.trim().to_owned();
        }
    };
    // The Tox bootstrap node prints HOST:PORT:DHTKEY, its key kept in the data dir.
    let tox = loop {
        let l = server.stderr_lines.recv_timeout(Duration::from_secs(10)).expect("the tox bootstrap line");
        if let Some(a) = l.strip_prefix("tox bootstrap node: ") {
            break a.trim().to_owned();
        }
    };
    let key = tox.rsplit(':').next().unwrap();
    let keys = std::fs::read(t.path().join("tox-bootstrap.keys")).unwrap();
    assert_eq!(keys.len(), 64);
    let hex: String = keys[..32].iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(key, hex, "{tox}");
    // The Tox client prints its Tox ID (76 hex), its identity kept in the data dir.
    let tox_id = loop {
        let l = server.stderr_lines.recv_timeout(Duration::from_secs(10)).expect("the tox id line");
        if let Some(a) = l.strip_prefix("tox id: ") {
            break a.trim().to_owned();
        }
    };
    assert!(tox_id.len() == 76 && tox_id.chars().all(|c| c.is_ascii_hexdigit()), "{tox_id}");
    assert!(t.path().join("tox.profile").is_file());
    let mut hub = std::net::TcpStream::connect(&hub_addr).unwrap();
    hub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 16];
    hub.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"$Lock EXTENDEDPR");
    std::fs::write(t.path().join("share/hello.txt"), "hi\n").unwrap();
    // Send a file into the node.
    let src = t.path().join("gift.bin");
    std::fs::write(&src, vec![42u8; 100_000]).unwrap();
    let (code, out, err) =
        run(omnipeer(t.path()).args(["dcc", "send", &server.addr]).arg(&src).args(["--nick", "alice"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "sent gift.bin (100000 bytes) to omnipeer");
    assert_eq!(std::fs::read(t.path().join("incoming/gift.bin")).unwrap(), vec![42u8; 100_000]);
    let st = server.sigterm();
    assert!(st.success(), "{st:?}");
}

#[test]
fn dcc_send_fserve_and_json_through_the_binary() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("share/docs")).unwrap();
    std::fs::write(t.path().join("share/docs/a b.txt"), "some text\n").unwrap();
    let server = Server::start(dcc_server(t.path(), &[]));
    let out_dir = t.path().join("dl");
    let (code, out, err) = run(omnipeer(t.path())
        .args(["dcc", "fserve", &server.addr, "--nick", "alice", "--cmd", "cd docs", "--cmd", "get a b.txt"])
        .arg("--out")
        .arg(&out_dir));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Sending a b.txt (10 bytes)"), "{out}");
    assert_eq!(std::fs::read(out_dir.join("a b.txt")).unwrap(), b"some text\n");

    let src = t.path().join("data.bin");
    std::fs::write(&src, vec![1u8; 5000]).unwrap();
    let (code, out, err) = run(omnipeer(t.path()).args(["--json", "dcc", "send", &server.addr]).arg(&src));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["event"], "sent");
    assert_eq!(v["summary"]["size"], 5000);
    assert_eq!(v["summary"]["server_nick"], "bob");
    assert!(server.sigterm().success());
}

#[test]
fn refused_services_exit_non_zero_with_the_reason() {
    let t = tempfile::tempdir().unwrap();
    let server = Server::start(dcc_server(t.path(), &["--services", "chat"]));
    let src = t.path().join("x.bin");
    std::fs::write(&src, "x").unwrap();
    let (code, _, err) = run(omnipeer(t.path()).args(["dcc", "send", &server.addr]).arg(&src));
    assert_ne!(code, 0);
    assert!(err.contains("150"), "{err}");
    assert!(server.sigterm().success());
}

#[test]
fn chat_between_two_processes_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let mut server = Server::start(dcc_server(t.path(), &["--chat-stdin"]));
    let mut server_stdout = BufReader::new(server.child.stdout.take().unwrap());
    let mut server_stdin = server.child.stdin.take().unwrap();
    let mut client = omnipeer(t.path())
        .args(["dcc", "chat", &server.addr, "--nick", "alice", "--linger", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client_stdin = client.stdin.take().unwrap();
    writeln!(client_stdin, "hello bob").unwrap();
    client_stdin.flush().unwrap();
    // The server shows the line on its console ...
    let mut line = String::new();
    server_stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "<alice> hello bob\n");
    // ... and its operator answers from stdin.
    writeln!(server_stdin, "hi alice").unwrap();
    server_stdin.flush().unwrap();
    let mut client_out = BufReader::new(client.stdout.take().unwrap());
    let mut reply = String::new();
    client_out.read_line(&mut reply).unwrap();
    assert_eq!(reply, "hi alice\n");
    drop(client_stdin);
    let st = client.wait().unwrap();
    assert!(st.success());
    // The server saw the chat close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = server.stderr_lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap();
        if l.contains("chat with alice closed") {
            break;
        }
    }
    let mut rest = String::new();
    let _ = client_out.read_to_string(&mut rest);
    assert!(server.sigterm().success());
}

/// The sections of `omnipeer up` that have a `listen` key.
const UP_SECTIONS: &[&str] =
    &["dcc", "nmdc_hub", "slsk_server", "tox_bootstrap", "tox", "nmdc_client", "slsk_client", "api"];

/// A configuration for `omnipeer up` with only `enable` (and the API) switched on, every
/// listener on a free port except `taken` = (section, address).
fn up_config(enable: &[&str], taken: Option<(&str, &str)>) -> String {
    let mut s = String::from("[share]\nwatch = false\n");
    for sec in UP_SECTIONS {
        let on = *sec == "api" || enable.contains(sec);
        let listen = taken.filter(|(t, _)| t == sec).map_or("127.0.0.1:0", |(_, a)| a);
        s += &format!("[{sec}]\nenabled = {on}\nlisten = \"{listen}\"\n");
    }
    s
}

/// Runs `omnipeer up` with `config` until it exits or `secs` pass (then kills it):
/// `(exit code, stderr)`, or `None` if it was still running.
fn up_until_exit(data: &Path, config: &str, secs: u64) -> Option<(i32, String)> {
    std::fs::create_dir_all(data).unwrap();
    let cfg = data.join("up.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = omnipeer(data)
        .arg("--config")
        .arg(&cfg)
        .arg("up")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = reader.join().unwrap();
    status.map(|st| (st.code().unwrap_or(-1), err))
}

/// Item 12: when a listener's address is taken, `up` fails with one line that names the
/// configuration key to change, for every listener that fails the start.
#[test]
fn up_names_the_config_key_of_a_listen_address_in_use() {
    for sec in ["dcc", "nmdc_hub", "slsk_server", "api", "tox_bootstrap"] {
        let t = tempfile::tempdir().unwrap();
        // Hold the address: UDP for the Tox bootstrap node, TCP for the others.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = if sec == "tox_bootstrap" { udp.local_addr() } else { tcp.local_addr() }.unwrap().to_string();
        // The API alone is no network: run the DCC server beside it.
        let enable: &[&str] = if sec == "api" { &["dcc"] } else { &[sec] };
        let (code, err) = up_until_exit(t.path(), &up_config(enable, Some((sec, &addr))), 30)
            .unwrap_or_else(|| panic!("up kept running with [{sec}].listen taken"));
        assert_ne!(code, 0);
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains(&format!("[{sec}].listen")) && line.contains(&addr), "{sec}: {line}");
    }
}

/// Item 15: a configuration that enables only the Tox client is something to run.
#[test]
fn up_runs_with_only_tox_enabled() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("config.toml"), up_config(&["tox"], None)).unwrap();
    let mut child =
        omnipeer(t.path()).arg("up").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    forward_lines(child.stderr.take().unwrap(), tx);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => match l.strip_prefix("tox id: ") {
                Some(id) => break id.trim().to_owned(),
                None => seen.push(l),
            },
            Err(_) => {
                let _ = child.kill();
                panic!("no tox id; stderr: {seen:#?}");
            }
        }
    };
    assert_eq!(id.len(), 76, "{id}");
    let server = Server { child, addr: String::new(), stderr_lines: rx };
    assert!(server.sigterm().success());
}

/// Item 12: a log level that is none is an error naming where it came from, not a
/// silently ignored filter.
#[test]
fn an_invalid_log_level_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let (code, _, err) = run(omnipeer(t.path()).args(["--log-level", "verbose", "config", "check"]));
    assert_ne!(code, 0, "{err}");
    assert!(err.starts_with("error:") && err.contains("--log-level") && err.contains("verbose"), "{err}");

    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, "[node]\nlog_level = \"loud\"\n").unwrap();
    let (code, _, err) = run(omnipeer(t.path()).arg("--config").arg(&cfg).args(["config", "check"]));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("[node].log_level") && err.contains("loud"), "{err}");

    // Valid levels and per-module directives still work.
    for ok in ["debug", "WARN", "omnipeer_node=debug,info", "off"] {
        let (code, _, err) = run(omnipeer(t.path()).args(["--log-level", ok, "config", "check"]));
        assert_eq!(code, 0, "{ok}: {err}");
    }
}

/// Item 12, the client listeners: `up` keeps running (the client retries), and the
/// reason it cannot start names the key to change.
#[test]
fn a_client_listen_address_in_use_names_its_config_key() {
    for (server, client) in [("nmdc_hub", "nmdc_client"), ("slsk_server", "slsk_client")] {
        let t = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        std::fs::write(t.path().join("config.toml"), up_config(&[server, client], Some((client, &addr)))).unwrap();
        let mut child = omnipeer(t.path())
            .arg("up")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        forward_lines(child.stderr.take().unwrap(), tx);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let found = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains(&format!("[{client}].listen")) => break l,
                Ok(l) => seen.push(l),
                Err(_) => {
                    let _ = child.kill();
                    panic!("{client}: no line names [{client}].listen; stderr: {seen:#?}");
                }
            }
        };
        assert!(found.contains(&addr), "{found}");
        let server = Server { child, addr: String::new(), stderr_lines: rx };
        assert!(server.sigterm().success());
    }
}
