//! A segmented download from four sources against one source, in the same run (issue 17's
//! "Done means"): four sharers, each holding the same file and each limited to the same
//! upload rate R, and a downloader node (omnipeer). The default mix is the issue's: two NMDC
//! sources — an omnipeer node (which also runs the NMDC hub and the Soulseek server) and
//! EiskaltDC++ (eiskaltdcpp-daemon) — and two Soulseek sources — another omnipeer node and
//! aioslsk (the venv of scripts/install-slsk-peers.sh). `--omnipeer` runs four omnipeer
//! sharers instead (two per network).
//!
//! How each source is held to R, each by its own upload limiter (no proxy in between):
//! omnipeer by `[transfers].max_upload_kib`; EiskaltDC++ by `EnableThrottle=1` and
//! `MaxUploadSpeedMain` (KiB/s) in its `DCPlusPlus.xml` (DC++'s ThrottleManager: a token
//! bucket refilled every second; without `EnableThrottle` 2.4.2 ignores the limit and served
//! at 170 MiB/s);
//! aioslsk by `network.limits.upload_speed_kbps` (KiB/s, its LimitedRateLimiter), which
//! tests/slsk/aioslsk_peer.py takes from `OMNIPEER_SLSK_UPLOAD_KIB`.
//!
//! First the file is fetched from one NMDC source (the omnipeer one, `"source"` chosen), then
//! from all four at once (no source chosen: a segmented download, docs/protocols/nmdc.md
//! "Segmented downloads"). Printed: both throughputs, the four-source one as a fraction of 4R
//! and as a multiple of the single source's, and the bytes each source delivered.
//!
//! Usage: `cargo build --release -p omnipeer -p omnipeer-bench && target/release/node-segments [MIB] [R_KIB] [--omnipeer]`
//! (defaults: 512 MiB, R = 8192 KiB/s).
//!
//! `NODE_SEGMENTS_DEBUG=1` also prints each finished transfer as the API shows it.
//!
//! Measured 2026-12-07 on the loaded 2-core build machine, 512 MiB, R = 8 MiB/s (two runs of
//! the default mix, one of `--omnipeer`; per-source MiB verified at the last poll, up to
//! 0.25 s before the end, so they add up to a little under 512):
//!
//! | mix | one source | four sources | of 4R | × one source | per source (MiB) |
//! |---|---|---|---|---|---|
//! | omnipeer + EiskaltDC++ / omnipeer + aioslsk | 8.03 MiB/s | 27.61 MiB/s | 0.86 | 3.44 | s1 119, ek 105, s2 142, aio 142 |
//! | the same, again | 8.03 MiB/s | 28.11 MiB/s | 0.88 | 3.50 | s1 119, ek 105, s2 142, aio 142 |
//! | `--omnipeer` (four omnipeer) | 7.99 MiB/s | 27.91 MiB/s | 0.87 | 3.49 | s1 119, s3 105, s2 142, s4 142 |
//!
//! Those runs missed the 0.9 × 4R (0.86–0.88) with the real clients and without
//! them alike: every source ran at R, but at the end both NMDC sources were idle while both
//! Soulseek sources finished long last segments (equally fast sources never race). With each
//! new segment capped at a fair share of what is left (`segments::Scheduler::fresh_range`,
//! commit dcc569b), the same default mix, same machine:
//!
//! | mix | one source | four sources | of 4R | × one source | per source (MiB) |
//! |---|---|---|---|---|---|
//! | omnipeer + EiskaltDC++ / omnipeer + aioslsk | 8.03 MiB/s | 30.88 MiB/s | 0.96 | 3.85 | ek 127, s1 127, s2 126, aio 124 |
//!
//! and all four were still sending at the last poll.

mod common;
mod eiskalt_peer;

// The interop tests' launcher for aioslsk (std + serde_json + tempfile only).
#[allow(unused_imports)]
#[path = "../../crates/omnipeer/tests/slsk_support/mod.rs"]
mod slsk_support;

use common::free_port;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct NodeProc(Child);

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// `omnipeer up` in `data` with `config`, once the clients it runs are logged in.
fn up(data: &Path, config: &str, nmdc: bool, slsk: bool) -> anyhow::Result<NodeProc> {
    std::fs::create_dir_all(data)?;
    std::fs::write(data.join("config.toml"), config)?;
    let exe = std::env::current_exe()?.with_file_name("omnipeer");
    anyhow::ensure!(exe.exists(), "{} is missing: cargo build --release -p omnipeer", exe.display());
    let mut child = Command::new(&exe)
        .args(["--log-level", "warn", "--data-dir"])
        .arg(data)
        .arg("up")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut n, mut s) = (!nmdc, !slsk);
    while !(n && s) {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("omnipeer exited before its clients logged in"))??;
        n |= line.starts_with("the hub: logged in");
        s |= line.starts_with("the Soulseek server: logged in");
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(NodeProc(child))
}

struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.agent.get(format!("{}{path}", self.base)).call()?.body_mut().read_json()?)
    }
    fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self.agent.post(format!("{}{path}", self.base)).send_json(&body)?.body_mut().read_json()?)
    }

    /// Queue `body` and wait until it is done; the time it took, and the last view of
    /// its segments (if it was segmented).
    fn download(&self, body: Value) -> anyhow::Result<(Duration, Value)> {
        let t = Instant::now();
        let tr = self.post("/api/transfers", body)?;
        let id = tr["id"].as_i64().ok_or_else(|| anyhow::anyhow!("not queued: {tr}"))?;
        let mut seg = Value::Null;
        let mut polled = Instant::now();
        loop {
            let t2 = self.get(&format!("/api/transfers/{id}"))?;
            if polled.elapsed() >= Duration::from_millis(250) {
                polled = Instant::now();
                if let Ok(v) = self.agent.get(format!("{}/api/transfers/{id}/segments", self.base)).call() {
                    seg = v.into_body().read_json().unwrap_or(Value::Null);
                }
            }
            match t2["state"].as_str() {
                Some("done") => {
                    if std::env::var_os("NODE_SEGMENTS_DEBUG").is_some() {
                        eprintln!("done: {t2}");
                    }
                    return Ok((t.elapsed(), seg));
                }
                Some("failed") => anyhow::bail!("the download failed: {t2}"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let omnipeer_only = all.iter().any(|a| a == "--omnipeer");
    let args: Vec<&String> = all.iter().filter(|a| !a.starts_with("--")).collect();
    let mib: u64 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(512);
    let kib: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(8192);
    let size = mib << 20;
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("node-segments-").tempdir_in(&base)?;
    let (hub, slsk) = (free_port()?, free_port()?);
    let common =
        "[dcc]\nenabled = false\n[tox_bootstrap]\nenabled = false\n[tox]\nenabled = false\n[share]\nwatch = false\n";
    let payload = dir.path().join("payload.bin");
    common::make_payload(&payload, size)?;
    let mut sharers = Vec::new();
    // (nick, NMDC, Soulseek): the omnipeer sharers, each with its own limit R; the first also
    // runs the hub and the server. With the default mix the third and fourth are EiskaltDC++
    // and aioslsk, started below.
    let omni: &[(&str, bool, bool)] = if omnipeer_only {
        &[("s1", true, false), ("s2", false, true), ("s3", true, false), ("s4", false, true)]
    } else {
        &[("s1", true, false), ("s2", false, true)]
    };
    for (i, &(nick, nmdc, sl)) in omni.iter().enumerate() {
        let d = dir.path().join(nick);
        std::fs::create_dir_all(d.join("share"))?;
        std::fs::copy(&payload, d.join("share/payload.bin"))?;
        let servers = if i == 0 {
            format!("[nmdc_hub]\nlisten = \"127.0.0.1:{hub}\"\n[slsk_server]\nlisten = \"127.0.0.1:{slsk}\"\n")
        } else {
            "[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n".to_owned()
        };
        let api = free_port()?;
        let cfg = format!(
            "[node]\nnick = \"{nick}\"\n{common}{servers}[api]\nlisten = \"127.0.0.1:{api}\"\n\
             [nmdc_client]\nenabled = {nmdc}\nhub = \"127.0.0.1:{hub}\"\n[slsk_client]\nenabled = {sl}\nserver = \"127.0.0.1:{slsk}\"\n\
             [transfers]\nmax_upload_kib = {kib}\n"
        );
        sharers.push(up(&d, &cfg, nmdc, sl)?);
    }
    let (mut _ek, mut _aio) = (None, None);
    if !omnipeer_only {
        anyhow::ensure!(
            eiskalt_peer::available(),
            "eiskaltdcpp-daemon is not installed (scripts/install-test-deps.sh)"
        );
        anyhow::ensure!(slsk_support::available(), "the aioslsk venv is missing (scripts/install-slsk-peers.sh)");
        let ek_dir = dir.path().join("ek");
        std::fs::create_dir_all(ek_dir.join("share"))?;
        std::fs::copy(&payload, ek_dir.join("share/payload.bin"))?;
        eprintln!("EiskaltDC++ is hashing {mib} MiB");
        _ek = Some(eiskalt_peer::Eiskalt::start(&ek_dir, "ek", hub, &ek_dir.join("share"), kib)?);
        // aioslsk's upload limit comes from the driver's environment (read at its start).
        std::env::set_var("OMNIPEER_SLSK_UPLOAD_KIB", kib.to_string());
        let opts = slsk_support::PeerOptions::new("aio").file("Bench/payload.bin", Vec::new());
        let peer = slsk_support::Peer::spawn(slsk_support::Client::Aioslsk, &format!("127.0.0.1:{slsk}"), opts)?;
        // The real payload in place of the placeholder before its share scan counts it.
        std::fs::copy(&payload, peer.share_dir().join("Bench/payload.bin"))?;
        peer.wait_logged_in(Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("aioslsk did not log in: {e}\n{}", peer.stderr_tail(20)))?;
        peer.wait_event("shares_scanned", |_| true, Duration::from_secs(120))
            .ok_or_else(|| anyhow::anyhow!("aioslsk did not scan its share\n{}", peer.stderr_tail(20)))?;
        _aio = Some(peer);
    }
    let api_b = free_port()?;
    let _b = up(
        &dir.path().join("b"),
        &format!(
            "[node]\nnick = \"bob\"\n{common}[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n\
             [nmdc_client]\nhub = \"127.0.0.1:{hub}\"\n[slsk_client]\nserver = \"127.0.0.1:{slsk}\"\n\
             [api]\nlisten = \"127.0.0.1:{api_b}\"\n"
        ),
        true,
        true,
    )?;
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let b = Api { base: format!("http://127.0.0.1:{api_b}"), agent };
    // The merged result with all four sources.
    let end = Instant::now() + Duration::from_secs(120);
    let result = 'found: loop {
        let s = b.post("/api/searches", json!({"query": "payload bin"}))?;
        let sid = s["id"].as_u64().unwrap_or(0);
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let s = b.get(&format!("/api/searches/{sid}"))?;
            let found = s["results"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["tth"].is_string() && r["sources"].as_array().is_some_and(|a| a.len() >= 4));
            if let Some(r) = found {
                break 'found r.clone();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        anyhow::ensure!(Instant::now() < end, "the file never had four sources");
    };
    let rid = result["id"].as_u64().unwrap_or(0);
    let one = result["sources"]
        .as_array()
        .and_then(|a| a.iter().position(|x| x["network"] == "nmdc" && x["user"] == "s1"))
        .ok_or_else(|| anyhow::anyhow!("s1 is not an NMDC source: {result}"))?;
    common::settle();
    let (single, _) = b.download(json!({"result": rid, "source": one}))?;
    common::settle();
    let (four, seg) = b.download(json!({"result": rid}))?;
    let mibs = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let r = kib as f64 / 1024.0;
    let mix = if omnipeer_only {
        "four omnipeer sharers"
    } else {
        "NMDC: omnipeer + EiskaltDC++; Soulseek: omnipeer + aioslsk"
    };
    println!("{mib} MiB, every source limited to R = {r:.1} MiB/s ({mix}):");
    println!(
        "  one NMDC source       {:>9.1} ms  {:>7.2} MiB/s  ({:.2} R)",
        common::ms(single),
        mibs(single),
        mibs(single) / r
    );
    println!(
        "  four sources (2 NMDC, 2 Soulseek, segmented)  {:>9.1} ms  {:>7.2} MiB/s  ({:.2} of 4R; {:.2}x one source)",
        common::ms(four),
        mibs(four),
        mibs(four) / (4.0 * r),
        mibs(four) / mibs(single)
    );
    for x in seg["sources"].as_array().into_iter().flatten() {
        println!(
            "    {} {}: {:.1} MiB verified, {:.2} MiB/s, {} (at the last poll, up to 0.25 s before the end)",
            x["network"].as_str().unwrap_or(""),
            x["user"].as_str().unwrap_or(""),
            x["bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64,
            x["speed"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64,
            x["state"].as_str().unwrap_or("")
        );
    }
    drop(sharers);
    Ok(())
}
