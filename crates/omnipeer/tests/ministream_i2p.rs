//! I2P ministreaming through real i2pd routers: a private two-router I2P network inside a
//! new network namespace (tests/i2p/two_routers.sh), `omnipeer ministream listen --sam`
//! on one router and `connect --sam` on the other echo 1 MB intact; a connect to a
//! destination nobody has ends in a clear timeout error.
//!
//! Needs root and a kernel that lets it create network namespaces (`unshare -n`); where
//! that is not possible the test says so and is skipped. i2pd comes from
//! scripts/install-test-deps.sh; if it is missing the test fails.

mod omni;

use std::path::Path;
use std::process::Command;

fn can_unshare() -> Result<(), String> {
    match Command::new("unshare").args(["-n", "true"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("unshare: {e}")),
    }
}

#[test]
fn echo_through_two_i2pd_routers() {
    if let Err(why) = can_unshare() {
        eprintln!("SKIPPED: cannot create a network namespace here ({why}); the I2P test needs `unshare -n` as root");
        return;
    }
    assert!(
        Command::new("sh").args(["-c", "command -v i2pd"]).output().unwrap().status.success(),
        "i2pd is not installed: run scripts/install-test-deps.sh"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/i2p");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .arg("-n")
        .arg(dir.join("two_routers.sh"))
        .arg(work.path())
        .arg("--")
        .arg(dir.join("echo.sh"))
        .arg(omni::BIN)
        .arg(work.path())
        .arg("1000000")
        .env("HOME", work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !out.status.success() {
        for f in ["listen.err", "connect.err", "nowhere.err"] {
            let p = work.path().join(f);
            eprintln!("--- {f}\n{}", std::fs::read_to_string(&p).unwrap_or_default());
        }
        for r in ["r1", "r2"] {
            let log = std::fs::read_to_string(work.path().join(r).join("i2pd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- {r}/i2pd.log (last lines)\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        panic!("the I2P echo failed ({}):\n{stderr}", out.status);
    }
    assert!(stdout.contains("connect rc=0 bytes_in=1000000 bytes_out=1000000"), "{stdout}");
    assert!(stdout.contains("nowhere rc=1"), "{stdout}");
    assert!(stdout.contains("echo.sh: OK"), "{stdout}");
}
