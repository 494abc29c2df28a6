//! The web UI end to end, in a real headless Chromium (Debian's `chromium`, driven by
//! playwright-core from tests/web/e2e.mjs): two nodes run (`omnipeer up`), node A
//! (alice) shares three files and runs the hub and the Soulseek server, node B (bob)
//! logs in to both; B's API has a token. Through B's web UI a user gives the token the
//! page asks for, sees the networks online, searches and sees A's file arrive live (one
//! result, a source on each network), downloads it and watches the progress bar move
//! (B's download rate is limited; paused part-way it stands still, resumed it goes on
//! from there) to done, downloads a third file from its Soulseek source, says a line in
//! the hub chat, the Soulseek room and a private message to alice, and sees each stored
//! and alice's reply arrive; a file dropped into the share folder the page names is
//! listed after Rescan. Then node A stops: the status shows the network drop live, and
//! a download of A's second file from its Soulseek source (which cannot run now) is
//! paused, resumed, cancelled and retried from its row. Last node B restarts: the page
//! shows its event stream down, reconnects by itself and shows the transfers kept.
//! Here, in Rust: the downloaded files have the shared files' SHA-256, and alice really
//! received bob's lines (she answers each only after reading it from A's API).
//!
//! Needs chromium and tests/web/node_modules (scripts/install-web-test-deps.sh); skipped
//! when they are missing, except on CI (CI set), where that is a failure. On failure the
//! screenshot and the page's HTML are kept in the test's temp dir (printed).

mod omni;

use omni::node::{content, joining_config, server_config, sha256_file, Node, Ports};
use omni::Omni;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const FILE: &str = "sunrise-over-omnipeer.flac";
const QUERY: &str = "sunrise omnipeer";
/// Found by the same search; downloaded after alice left, to drive the controls.
const FILE2: &str = "sunrise-over-omnipeer-live.flac";
/// Found by the same search; downloaded from its Soulseek source.
const FILE3: &str = "sunrise-over-omnipeer-slsk.flac";
const SIZE3: usize = 3 * 1024 * 1024 + 5;
/// Not a multiple of any block size.
const SIZE: usize = 24 * 1024 * 1024 + 777;
/// Node B's download rate limit (KiB/s): FILE takes about 4 s, long enough to watch the
/// bar move and to pause it part-way (on loopback it would otherwise arrive within one
/// of the node's progress ticks).
const LIMIT_KIB: u64 = 6 * 1024;
/// Node B's API token: the page has to ask for it.
const TOKEN: &str = "web-ui-test-token";
/// (chat id on B, chat id on A, bob says, alice answers, bob looks away meanwhile: alice
/// takes a second, and the answer must show as unread).
const CHATS: [(&str, &str, &str, &str, bool); 4] = [
    ("nmdc:hub", "nmdc:hub", "hello from bob's browser", "welcome bob, alice here", false),
    ("slsk:room:omnipeer", "slsk:room:omnipeer", "bob joins the room", "alice waves in the room", false),
    ("slsk:pm:alice", "slsk:pm:bob", "bob to alice, privately", "alice to bob, privately", false),
    ("slsk:pm:alice", "slsk:pm:bob", "back in a second", "answered while you were away", true),
];
/// The whole browser session.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// Chromium, Node.js and playwright-core present? Otherwise why not.
fn missing_deps() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing"));
    }
    if !web_dir().join("node_modules/playwright-core/package.json").exists() {
        return Some("tests/web/node_modules/playwright-core is missing".into());
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("node (Node.js) is missing".into()),
    }
}

/// GET `base + path` (with the bearer token, if any): the JSON answer.
fn get(base: &str, path: &str, token: Option<&str>) -> Value {
    let mut req = ureq::get(&format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    req.call().unwrap_or_else(|e| panic!("GET {path}: {e}")).body_mut().read_json().unwrap()
}

/// POST JSON to `base + path`: the JSON answer.
fn post(base: &str, path: &str, body: Value) -> Value {
    ureq::post(&format!("{base}{path}"))
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .body_mut()
        .read_json()
        .unwrap()
}

#[test]
fn web_ui_search_download_progress_chat() {
    if let Some(why) = missing_deps() {
        if std::env::var_os("CI").is_some() {
            panic!("web UI test cannot run on CI: {why} (scripts/install-web-test-deps.sh)");
        }
        eprintln!("skipped: {why}; run scripts/install-web-test-deps.sh");
        return;
    }
    let tmp = tempfile::Builder::new().prefix("omnipeer-web-ui-").tempdir().unwrap();
    let (a_dir, b_dir, out) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("browser"));
    for d in [&a_dir, &b_dir, &out] {
        std::fs::create_dir_all(d).unwrap();
    }

    // Node A: alice, the hub and the Soulseek server, sharing three files (the node
    // helper's harness: up with both clients online).
    let share = a_dir.join("share/music");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join(FILE), content(SIZE, 11)).unwrap();
    std::fs::write(share.join(FILE2), content(300_000, 12)).unwrap();
    std::fs::write(share.join(FILE3), content(SIZE3, 13)).unwrap();
    let pa = Ports::free();
    let a = Node::start(&a_dir, &server_config("alice", pa), pa.api);
    let a_base = a.base.clone();

    // Node B: bob, only the clients, logged in to A's hub and server; its API wants a
    // token, its downloads are rate limited. It reads <data>/config.toml, so the restart
    // below brings it back on the same port.
    let b_port = omni::node::free_port();
    let b_base = format!("http://127.0.0.1:{b_port}");
    let extra = format!("token = \"{TOKEN}\"\n[transfers]\nmax_download_kib = {LIMIT_KIB}\n");
    std::fs::write(b_dir.join("config.toml"), joining_config("bob", pa, b_port, &extra)).unwrap();
    let b = Omni::start_in(&b_dir, &["up"]);
    b.wait_line("omnipeer is up");

    // Alice answers each of bob's lines once she has read it (from A's API, as a user of
    // A would).
    let stop = Arc::new(AtomicBool::new(false));
    let answered = {
        let (a_base, stop) = (a_base.clone(), stop.clone());
        std::thread::spawn(move || -> usize {
            let mut done = 0;
            while done < CHATS.len() && !stop.load(Ordering::Relaxed) {
                let (_, on_a, say, reply, away) = CHATS[done];
                let msgs = get(&a_base, &format!("/api/chats/messages?chat={on_a}"), None);
                let heard = msgs
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["nick"] == "bob" && m["text"] == say && m["own"] == false);
                if heard {
                    if away {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    post(&a_base, "/api/chats/messages", json!({"chat": on_a, "text": reply}));
                    done += 1;
                    continue;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            done
        })
    };
    let chats = Value::Array(
        CHATS
            .iter()
            .map(|(on_b, _, say, reply, away)| json!({"chat": on_b, "say": say, "reply": reply, "away": away}))
            .collect(),
    );

    // The browser session.
    let mut child = Command::new("node")
        .arg("e2e.mjs")
        .current_dir(web_dir())
        .env("OMNI_URL", format!("{b_base}/"))
        .env("OMNI_URL_A", format!("{a_base}/"))
        .env("OMNI_QUERY", QUERY)
        .env("OMNI_FILE", FILE)
        .env("OMNI_FILE2", FILE2)
        .env("OMNI_FILE3", FILE3)
        .env("OMNI_SIZE", SIZE.to_string())
        .env("OMNI_PEER", "alice")
        .env("OMNI_CHATS", chats.to_string())
        .env("OMNI_OUT", &out)
        .env("OMNI_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs e2e.mjs");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("e2e: {l}");
            let _ = tx.send(l);
        }
    });
    let end = Instant::now() + SCRIPT_LIMIT;
    let mut a = Some(a);
    let mut b = Some(b);
    let mut lines = Vec::new();
    let status = loop {
        while let Ok(l) = rx.try_recv() {
            if l == "step outage" {
                // Node A goes away (SIGTERM, waited for).
                a.take();
            }
            if l == "step restart" {
                // Node B stops and starts again on the same data and port.
                b.take();
                std::thread::sleep(Duration::from_millis(500));
                let again = Omni::start_in(&b_dir, &["up"]);
                again.wait_line("omnipeer is up");
                b = Some(again);
            }
            lines.push(l);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    stop.store(true, Ordering::Relaxed);
    lines.extend(rx.try_iter());
    let ok = status.is_some_and(|s| s.success()) && lines.iter().any(|l| l == "step done");
    if !ok {
        let kept = tmp.keep();
        panic!(
            "the web UI session failed ({}):\n{}\n{stderr}\nscreenshot and page kept in {}",
            match status {
                Some(s) => format!("exit {s}"),
                None => format!("no end within {SCRIPT_LIMIT:?}"),
            },
            lines.join("\n"),
            kept.join("browser").display()
        );
    }
    assert_eq!(answered.join().unwrap(), CHATS.len(), "alice received each of bob's lines");

    // What the UI said it downloaded is the file alice shares, byte for byte.
    let fact = |k: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("fact {k} ")))
            .unwrap_or_else(|| panic!("no fact {k}"))
            .to_owned()
    };
    let shown_path = PathBuf::from(fact("local_path"));
    assert_eq!(shown_path, b_dir.join("downloads").join(FILE), "the UI shows where the file went");
    assert_eq!(std::fs::metadata(&shown_path).unwrap().len(), SIZE as u64);
    assert_eq!(
        sha256_file(&shown_path),
        sha256_file(&share.join(FILE)),
        "the downloaded file (paused and resumed) is the shared one"
    );
    let shown3 = PathBuf::from(fact("local_path3"));
    assert_eq!(shown3, b_dir.join("downloads").join(FILE3));
    assert_eq!(sha256_file(&shown3), sha256_file(&share.join(FILE3)), "the Soulseek download is the shared file");
    let transfers = get(&b_base, "/api/transfers", Some(TOKEN));
    let by_name = |n: &str| {
        transfers
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("no transfer of {n}"))
            .clone()
    };
    let done = by_name(FILE);
    assert_eq!(done["state"], "done");
    assert_eq!(done["bytes"], SIZE as u64);
    // The one driven by the buttons was retried last: queued again (or trying).
    let retried = by_name(FILE2);
    assert_eq!(retried["network"], "slsk", "the source picked in the page");
    assert!(["queued", "running"].contains(&retried["state"].as_str().unwrap()), "{retried}");
    assert!(!b_dir.join("downloads").join(FILE2).exists(), "a file that never came is not in downloads");
    eprintln!(
        "web UI: first result {} ms, merged {} ms; download {} ms at {LIMIT_KIB} KiB/s, running showed {}, paused at {}; bar {}",
        fact("first_result_ms"),
        fact("merged_result_ms"),
        fact("download_ms"),
        fact("running_shows"),
        fact("paused_at"),
        fact("progress_seen")
    );
    drop(b);
    drop(a);
}
