//! A damaged disk does not take the node down or lose its state silently (issue 12,
//! items 10-12): a share with symlink loops is scanned once per folder in the background
//! (the API answers at once and says "scanning", then "ready"; SIGTERM stops the node
//! during a scan), a missing share folder is a warning and is not created, and a missing,
//! empty or garbage `node.sqlite` in a data directory that holds state is refused with
//! one line naming the file and the way out (the backup made at each clean start).

mod omni;

use omni::node::{free_port, server_config, wait_for, Ports};
use omni::BIN;
use omnipeer_node::app::db::NewTransfer;
use omnipeer_node::store::Store;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `omnipeer --data-dir DIR up ARGS`, its stderr collected; SIGKILLed if still running
/// when dropped (a test that failed must not leave a spinning node behind).
struct Up {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Up {
    fn start(dir: &Path, args: &[&str]) -> Up {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("up")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut v = l.lock().unwrap();
                // Bounded: a node flooding its log must not eat the test's memory.
                if v.len() < 100_000 {
                    v.push(line);
                }
            }
        });
        Up { child, lines }
    }

    fn stderr(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait up to `secs` for it to exit by itself; its exit code.
    fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then wait up to `secs` for it to exit.
    fn terminate(&mut self, secs: u64) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.wait_exit(secs)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(api: u16, path: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut r = agent.get(format!("http://127.0.0.1:{api}{path}")).call().ok()?;
    r.body_mut().read_json().ok()
}

/// A node that runs only the DCC server and the API: quick to start, nothing to log in to.
fn small_config(api: u16, extra: &str) -> String {
    format!(
        "[node]\nnick = \"disk\"\n[dcc]\nlisten = \"127.0.0.1:0\"\n[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n\
         [tox_bootstrap]\nenabled = false\n[tox]\nenabled = false\n[nmdc_client]\nenabled = false\n[slsk_client]\nenabled = false\n\
         [api]\nlisten = \"127.0.0.1:{api}\"\n{extra}"
    )
}

/// `share/real.txt` plus `share/loop/u1 -> ..` and `share/loop/u2 -> ..`: every path
/// through the links leads back to the share, twice at each level.
fn loop_share(dir: &Path) -> PathBuf {
    let share = dir.join("share");
    std::fs::create_dir_all(share.join("loop")).unwrap();
    std::fs::write(share.join("real.txt"), b"the only real file\n").unwrap();
    std::os::unix::fs::symlink("..", share.join("loop/u1")).unwrap();
    std::os::unix::fs::symlink("..", share.join("loop/u2")).unwrap();
    share
}

#[test]
fn a_share_with_symlink_loops_is_scanned_once_and_the_node_comes_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    loop_share(dir);
    let p = Ports::free();
    // Every server and both clients: the DCC server, the NMDC and the Soulseek client
    // all index <data_dir>/share.
    std::fs::write(dir.join("config.toml"), server_config("looper", p)).unwrap();
    let mut node = Up::start(dir, &[]);
    // The API answers within seconds (today: never; no listener, the scan runs forever).
    wait_for("the API to answer", 20, || get(p.api, "/api/status"));
    // The scan ends, and the NMDC client (logged in to the node's own hub) shares the
    // real file exactly once.
    let status = wait_for("the share scan to end and the NMDC client to log in", 60, || {
        let s = get(p.api, "/api/status")?;
        let online = s["networks"].as_array()?.iter().any(|n| n["name"] == "nmdc_client" && n["state"] == "online");
        (s["shares"]["state"] == "ready" && online).then_some(s)
    });
    let files = wait_for("the share index", 30, || {
        let f = get(p.api, "/api/shares/files")?;
        (!f.as_array()?.is_empty()).then_some(f)
    });
    let paths: Vec<&str> = files.as_array().unwrap().iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(paths, vec!["share\\real.txt"], "{files}\n{status}");
    assert_eq!(status["shares"]["files"], 1, "{status}");
    // Soulseek shares it once too: its own server reports the counts it was sent.
    // The log stays small: no line per link walked.
    let code = node.terminate(15);
    let lines = node.stderr();
    assert_eq!(code, Some(0), "the node did not stop on SIGTERM; it printed {} lines", lines.len());
    assert!(lines.len() < 200, "the log is flooded: {} lines, e.g.\n{}", lines.len(), lines[..20].join("\n"));
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("WARN") && l.contains("link")).collect();
    assert!(!warnings.is_empty(), "no warning summarises the skipped links:\n{}", lines.join("\n"));
    assert!(warnings.len() <= 4, "one warning per scan, not one per link:\n{}", lines.join("\n"));
}

#[test]
fn sigterm_stops_the_node_while_a_share_with_loops_is_scanned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    loop_share(dir);
    let api = free_port();
    std::fs::write(dir.join("config.toml"), small_config(api, "")).unwrap();
    let mut node = Up::start(dir, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let code = node.terminate(15);
    assert!(code.is_some(), "the node ignored SIGTERM for 15 s; it printed {} lines", node.stderr().len());
}

#[test]
fn sigterm_stops_the_node_during_a_slow_first_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Many files to walk, and a 4 GiB file (sparse: no disk used) for the NMDC client to
    // hash: the first indexing is still running when SIGTERM comes.
    let share = dir.join("share");
    for d in 0..20 {
        let sub = share.join(format!("d{d:03}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..200 {
            std::fs::write(sub.join(format!("f{f:03}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
    std::fs::File::create(share.join("big.iso")).unwrap().set_len(4 << 30).unwrap();
    let p = Ports::free();
    std::fs::write(dir.join("config.toml"), server_config("slow", p)).unwrap();
    let mut node = Up::start(dir, &[]);
    let s = wait_for("the API to answer", 20, || get(p.api, "/api/status"));
    assert!(matches!(s["shares"]["state"].as_str(), Some("scanning" | "ready")), "{s}");
    let code = node.terminate(15);
    assert_eq!(code, Some(0), "the node did not stop within 15 s of SIGTERM during the scan");
}

#[test]
fn a_missing_share_folder_is_a_warning_and_is_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let missing = tmp.path().join("not-there");
    std::fs::create_dir_all(&dir).unwrap();
    let api = free_port();
    let extra = format!("[share]\nfolders = [{:?}]\n", missing.display().to_string());
    std::fs::write(dir.join("config.toml"), small_config(api, &extra)).unwrap();
    let mut node = Up::start(&dir, &[]);
    wait_for("the API to answer", 20, || get(api, "/api/status"));
    wait_for("the warning", 20, || {
        node.stderr().into_iter().find(|l| l.contains("[share].folders") && l.contains(&missing.display().to_string()))
    });
    assert!(!missing.exists(), "the missing share folder was created");
    assert_eq!(node.terminate(15), Some(0));
}

/// A data directory as a node leaves it: a partial download, the API token, and the
/// database holding three transfers and a changed setting.
fn used_data_dir(dir: &Path, api: u16) {
    std::fs::create_dir_all(dir.join("incomplete/1")).unwrap();
    std::fs::write(dir.join("incomplete/1/part.bin"), vec![1u8; 4096]).unwrap();
    std::fs::write(dir.join("config.toml"), small_config(api, "")).unwrap();
    let store = Store::open(&dir.join("node.sqlite")).unwrap();
    for i in 0..3 {
        store
            .transfer_add(&NewTransfer {
                network: omnipeer_node::app::net::Network::Nmdc,
                source: "peer".into(),
                hub: "127.0.0.1:1".into(),
                remote_path: format!("share\\file{i}.bin"),
                tth: None,
                name: format!("file{i}.bin"),
                size: 1 << 20,
                local_path: String::new(),
                group: None,
            })
            .unwrap();
    }
    store.set_setting("transfers.max_download_kib", "123").unwrap();
    drop(store);
}

fn transfer_names(api: u16) -> Vec<String> {
    let t = get(api, "/api/transfers").unwrap();
    let mut v: Vec<String> = t.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    v.sort();
    v
}

fn setting(api: u16, key: &str) -> Value {
    let s = get(api, "/api/settings").unwrap();
    s.as_array().unwrap().iter().find(|x| x["key"] == key).unwrap()["value"].clone()
}

#[test]
fn an_emptied_database_is_refused_and_the_backup_brings_everything_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let api = free_port();
    used_data_dir(dir, api);
    // A clean start and stop: the backup is made.
    let mut node = Up::start(dir, &[]);
    wait_for("the API to answer", 30, || get(api, "/api/status"));
    assert_eq!(transfer_names(api), ["file0.bin", "file1.bin", "file2.bin"]);
    assert_eq!(node.terminate(15), Some(0));
    let bak = dir.join("node.sqlite.bak");
    assert!(bak.is_file(), "no backup after a clean start");
    // The database is truncated to 0 bytes: `up` refuses, naming the file and the ways out.
    std::fs::write(dir.join("node.sqlite"), b"").unwrap();
    let mut node = Up::start(dir, &[]);
    let code = node.wait_exit(30);
    let err = node.stderr().join("\n");
    assert!(matches!(code, Some(c) if c != 0), "up did not refuse an empty node.sqlite ({code:?}):\n{err}");
    assert!(err.contains("node.sqlite") && err.contains("node.sqlite.bak") && err.contains("--fresh-db"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A missing one as well.
    std::fs::remove_file(dir.join("node.sqlite")).unwrap();
    let mut node = Up::start(dir, &[]);
    let code = node.wait_exit(30);
    let err = node.stderr().join("\n");
    assert!(matches!(code, Some(c) if c != 0), "up did not refuse a missing node.sqlite ({code:?}):\n{err}");
    assert!(err.contains("node.sqlite.bak"), "{err}");
    // Restored as the message says: the transfers and the setting are back.
    std::fs::copy(&bak, dir.join("node.sqlite")).unwrap();
    let mut node = Up::start(dir, &[]);
    wait_for("the API to answer", 30, || get(api, "/api/status"));
    assert_eq!(transfer_names(api), ["file0.bin", "file1.bin", "file2.bin"]);
    assert_eq!(setting(api, "max_download_kib"), 123);
    assert_eq!(node.terminate(15), Some(0));
}

#[test]
fn fresh_db_accepts_starting_over_explicitly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let api = free_port();
    used_data_dir(dir, api);
    std::fs::write(dir.join("node.sqlite"), b"").unwrap();
    let mut node = Up::start(dir, &["--fresh-db"]);
    wait_for("the API to answer", 30, || get(api, "/api/status"));
    assert!(transfer_names(api).is_empty());
    assert_eq!(node.terminate(15), Some(0));
}

#[test]
fn a_garbage_database_is_one_line_naming_the_file_and_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let api = free_port();
    used_data_dir(dir, api);
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(dir.join("node.sqlite"), garbage).unwrap();
    let mut node = Up::start(dir, &[]);
    let code = node.wait_exit(30);
    let lines = node.stderr();
    let err = lines.join("\n");
    assert!(matches!(code, Some(c) if c != 0), "{err}");
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let e = errors[0];
    assert!(e.contains(&dir.join("node.sqlite").display().to_string()) && e.contains("--fresh-db"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn a_truncated_database_is_refused_not_half_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let api = free_port();
    used_data_dir(dir, api);
    // Pad the database with enough rows that cutting it in half loses pages.
    {
        let store = Store::open(&dir.join("node.sqlite")).unwrap();
        for i in 0..2000 {
            store.chat_add("nmdc:hub", "someone", &format!("line {i} {}", "x".repeat(200)), false).unwrap();
        }
    }
    let db = dir.join("node.sqlite");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let mut node = Up::start(dir, &[]);
    let code = node.wait_exit(30);
    let err = node.stderr().join("\n");
    assert!(matches!(code, Some(c) if c != 0), "a truncated node.sqlite was used ({code:?}):\n{err}");
    assert!(err.contains("node.sqlite") && err.contains("--fresh-db"), "{err}");
}
