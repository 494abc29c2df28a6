//! Running a browser script of tests/web (playwright-core driving Debian's headless
//! Chromium) from an integration test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// tests/web.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// Chromium, Node.js and playwright-core present? Otherwise why not.
pub fn missing_web_deps() -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is missing".into());
    }
    if !web_dir().join("node_modules/playwright-core/package.json").exists() {
        return Some("tests/web/node_modules/playwright-core is missing".into());
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("node (Node.js) is missing".into()),
    }
}

/// Whether the browser test `name` can run here: false (after saying why) when its
/// dependencies are missing, except on CI (CI set), where that is a failure.
pub fn web_deps_or_skip(name: &str) -> bool {
    match missing_web_deps() {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("{name} cannot run on CI: {why} (scripts/install-web-test-deps.sh)")
        }
        Some(why) => {
            eprintln!("skipping {name}: {why}; run scripts/install-web-test-deps.sh");
            false
        }
    }
}

/// Run `node SCRIPT` in tests/web with `env`, for at most `limit`: its stdout lines
/// (echoed on stderr as they come), and whether it ended well (exit 0 after a last line
/// `step done`).
pub fn run_web_script(script: &str, env: &[(&str, String)], limit: Duration) -> (bool, Vec<String>) {
    let mut cmd = Command::new("node");
    cmd.arg(script).current_dir(web_dir()).stdin(Stdio::null()).stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("node runs {script}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let tag = script.to_owned();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("{tag}: {l}");
            lines.push(l);
        }
        lines
    });
    let end = Instant::now() + limit;
    let status = loop {
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
    let lines = reader.join().unwrap();
    let ok = status.is_some_and(|s| s.success()) && lines.last().is_some_and(|l| l == "step done");
    (ok, lines)
}
