//! A segmented download from four sources against one source, in the same run: four
//! sharer nodes (two on NMDC, two on Soulseek; the first also runs the hub and the
//! server), each holding the same file and each limited to the same upload rate R
//! (`[transfers].max_upload_kib`), and a downloader node. First the file is fetched from
//! one NMDC source (`"source"` chosen), then from all four at once (no source chosen: a
//! segmented download, docs/protocols/nmdc.md "Segmented downloads"). Printed: both
//! throughputs, the four-source one as a fraction of 4R and as a multiple of the single
//! source's.
//!
//! Usage: `cargo build --release -p omnipeer -p omnipeer-bench && target/release/node-segments [MIB] [R_KIB]`
//! (defaults: 512 MiB, R = 8192 KiB/s).

mod common;

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
            if polled.elapsed() >= Duration::from_millis(500) {
                polled = Instant::now();
                if let Ok(v) = self.agent.get(format!("{}/api/transfers/{id}/segments", self.base)).call() {
                    seg = v.into_body().read_json().unwrap_or(Value::Null);
                }
            }
            match t2["state"].as_str() {
                Some("done") => return Ok((t.elapsed(), seg)),
                Some("failed") => anyhow::bail!("the download failed: {t2}"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(512);
    let kib: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8192);
    let size = mib << 20;
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("node-segments-").tempdir_in(&base)?;
    let (hub, slsk) = (free_port()?, free_port()?);
    let common =
        "[dcc]\nenabled = false\n[tox_bootstrap]\nenabled = false\n[tox]\nenabled = false\n[share]\nwatch = false\n";
    let mut sharers = Vec::new();
    // (nick, NMDC, Soulseek): two sharers on each network, each with its own limit R.
    for (i, (nick, nmdc, sl)) in
        [("s1", true, false), ("s2", false, true), ("s3", true, false), ("s4", false, true)].into_iter().enumerate()
    {
        let d = dir.path().join(nick);
        std::fs::create_dir_all(d.join("share"))?;
        let f = d.join("share/payload.bin");
        if i == 0 {
            common::make_payload(&f, size)?;
        } else {
            std::fs::copy(dir.path().join("s1/share/payload.bin"), &f)?;
        }
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
        .and_then(|a| a.iter().position(|x| x["network"] == "nmdc"))
        .ok_or_else(|| anyhow::anyhow!("no NMDC source"))?;
    common::settle();
    let (single, _) = b.download(json!({"result": rid, "source": one}))?;
    common::settle();
    let (four, seg) = b.download(json!({"result": rid}))?;
    let mibs = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let r = kib as f64 / 1024.0;
    println!("{mib} MiB, every source limited to R = {r:.1} MiB/s:");
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
            "    {} {}: {:.1} MiB verified, {:.2} MiB/s, {} (half a second before the end)",
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
