//! `omnipeer ministream listen|connect` over loopback: a 10 MB echo through the binary,
//! a refused connect, an unanswered connect and an unreachable peer give one `error:` line and a non-zero exit.

mod omni;

use omni::{run, Omni, BIN};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// Runs `omnipeer ministream connect --peer ADDR` with `input` on stdin.
fn connect(peer: &str, input: Vec<u8>) -> (i32, Vec<u8>, String) {
    connect_with(peer, input, &[])
}

fn connect_with(peer: &str, input: Vec<u8>, extra: &[&str]) -> (i32, Vec<u8>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["ministream", "connect", "--peer", peer])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    feeder.join().unwrap();
    (code, out, err)
}

#[test]
fn echo_of_10_mb_through_the_binary() {
    let l = Omni::start(&["ministream", "listen", "--bind", "127.0.0.1:0", "--echo"]);
    let addr = l.wait_line("listening on ");
    let data: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (code, out, err) = connect(&addr, data.clone());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), data.len());
    assert!(out == data, "echoed bytes differ");
}

#[test]
fn refused_connect_exits_nonzero_with_one_error_line() {
    // A peer that answers every SYN with a close (52 <client id>).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut msg).unwrap();
        s.write_all(&[0, 0, 0, 4, 0x52, msg[1], msg[2], msg[3]]).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(5));
    });
    let (code, out, err) = connect(&addr, Vec::new());
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("refused"), "{err}");
}

#[test]
fn unanswered_connect_times_out_with_one_error_line() {
    // A peer that reads the SYN and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let t0 = std::time::Instant::now();
    let (code, out, err) = connect_with(&addr, Vec::new(), &["--connect-timeout-ms", "500"]);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(500));
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("no answer"), "{err}");
}

#[test]
fn unreachable_peer_exits_nonzero() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let (code, _, err) = run(&["ministream", "connect", "--peer", &addr]);
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn listen_without_echo_pipes_stdin_and_stdout() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let mut l = Command::new(BIN)
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["ministream", "listen", "--bind", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    l.stdin.take().unwrap().write_all(b"from the listener\n").unwrap();
    let mut err = std::io::BufReader::new(l.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).trim().to_owned();
    let (code, out, cerr) = connect(&addr, b"from the connector\n".to_vec());
    assert_eq!(code, 0, "{cerr}");
    assert_eq!(out, b"from the listener\n");
    let _ = Command::new("kill").args(["-TERM", &l.id().to_string()]).status();
    let mut lout = Vec::new();
    l.stdout.take().unwrap().read_to_end(&mut lout).unwrap();
    let _ = l.wait();
    assert_eq!(lout, b"from the connector\n");
}
