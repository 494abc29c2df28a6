//! `omnipeer dc hub|share|search|get` end to end over loopback: search by words and TTH,
//! downloads active and passive, by TTH, by path and the file list, resume, TTH check.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_omnipeer");

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(data: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Proc { child, lines }
    }
    fn wait_line(&self, prefix: &str) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let l = self.lines.recv_timeout(end.saturating_duration_since(Instant::now())).unwrap_or_else(|_| panic!("no line {prefix:?}"));
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("--data-dir").arg(data).args(args).env_remove("RUST_LOG").stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn share_search_and_get_active_and_passive() {
    let t = tempfile::tempdir().unwrap();
    let share = t.path().join("pub");
    std::fs::create_dir_all(share.join("music")).unwrap();
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(share.join("music/Song Title.mp3"), &data).unwrap();
    std::fs::write(share.join("notes.txt"), b"hello world\n").unwrap();

    let hub = Proc::start(&t.path().join("hub"), &["dc", "hub", "--listen", "127.0.0.1:0", "--name", "Test Hub"]);
    let hub_addr = format!("dchub://{}", hub.wait_line("listening on "));
    let share_listen = free_addr();
    let sharer = Proc::start(
        &t.path().join("sharer"),
        &["dc", "share", "--hub", &hub_addr, "--nick", "alice", "--share", share.to_str().unwrap(), "--listen", &share_listen],
    );
    sharer.wait_line("online at");

    // Search by words (passive searcher: results come through the hub).
    let c = t.path().join("client");
    let (code, out, err) = run(&c, &["dc", "search", "--hub", &hub_addr, "--nick", "bob", "--timeout", "2", "song", "title"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().next().unwrap_or_else(|| panic!("no result: {err}"));
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(&cols[..3], ["alice", "pub\\music\\Song Title.mp3", "2500000"], "{line}");
    let tth = cols[3].to_owned();
    assert_eq!(tth.len(), 39);
    // Search by TTH, as JSON.
    let (code, out, _) = run(&c, &["--json", "dc", "search", "--hub", &hub_addr, "--nick", "bob", "--timeout", "2", "--tth", &tth]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["size"], 2_500_000);

    // Passive download by TTH, with a partial file to resume.
    let dl = t.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(dl.join("a.mp3"), &data[..1_000_000]).unwrap();
    let (code, out, err) = run(&c, &["dc", "get", "--hub", &hub_addr, "--nick", "bob", "--from", "alice", "--tth", &tth, "--out", dl.join("a.mp3").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resumed at byte 1000000") && out.contains("verified"), "{out}");
    assert_eq!(std::fs::read(dl.join("a.mp3")).unwrap(), data);

    // Active download by path.
    let my_listen = free_addr();
    let (code, out, err) = run(
        &c,
        &["dc", "get", "--hub", &hub_addr, "--nick", "carol", "--from", "alice", "--path", "pub/music/Song Title.mp3", "--out", dl.join("b.mp3").to_str().unwrap(), "--listen", &my_listen],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verified"), "{out}");
    assert_eq!(std::fs::read(dl.join("b.mp3")).unwrap(), data);

    // The file list.
    let (code, _, err) = run(&c, &["dc", "get", "--hub", &hub_addr, "--nick", "dave", "--from", "alice", "--filelist", "--out", dl.join("alice.xml.bz2").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bz = std::fs::read(dl.join("alice.xml.bz2")).unwrap();
    assert_eq!(&bz[..3], b"BZh");

    // Errors: a user who is not there, a file that is not shared.
    let (code, _, err) = run(&c, &["dc", "get", "--hub", &hub_addr, "--nick", "erin", "--from", "nobody", "--filelist", "--out", dl.join("x").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("nobody is not on the hub"), "{err}");
    let (code, _, err) = run(&c, &["dc", "get", "--hub", &hub_addr, "--nick", "erin", "--from", "alice", "--path", "pub/missing.bin", "--out", dl.join("y").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("does not share"), "{err}");
    drop(sharer);
    drop(hub);
}
