//! 100 concurrent downloads through two nodes (`omnipeer up` × 2 on loopback, driven by
//! the HTTP API: search, queue every result, wait until all are done) against 100
//! concurrent plain TCP copies of the same files measured in the same run. Soulseek
//! carries them: NMDC allows one transfer per pair of users at a time.
//!
//! Usage: `cargo build --release -p omnipeer -p omnipeer-bench && target/release/node-transfers [FILES] [MIB_EACH]`

mod common;

use common::free_port;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct NodeProc(Child);

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn up(data: &Path, config: &str) -> anyhow::Result<NodeProc> {
    std::fs::create_dir_all(data)?;
    std::fs::write(data.join("config.toml"), config)?;
    Ok(NodeProc(common::node_up(data)?))
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
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let mib: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("node-transfers-").tempdir_in(&base)?;
    let a_dir = dir.path().join("a");
    let share = a_dir.join("share");
    std::fs::create_dir_all(&share)?;
    let srcs: Vec<PathBuf> = (0..n).map(|i| share.join(format!("payload {i:03}.bin"))).collect();
    for s in &srcs {
        common::make_payload(s, mib << 20)?;
    }
    let total = n as u64 * (mib << 20);

    // Baseline: n plain TCP copies at once.
    let copies = dir.path().join("copies");
    std::fs::create_dir_all(&copies)?;
    common::settle();
    let t = Instant::now();
    let handles: Vec<_> = srcs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (s, d) = (s.clone(), copies.join(format!("{i}.bin")));
            std::thread::spawn(move || common::plain_tcp_copy(&s, &d))
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a copy thread panicked"))??;
    }
    let tcp = t.elapsed();
    std::fs::remove_dir_all(&copies)?;

    let (hub, slsk, api_a, api_b) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let slots = n.max(1);
    let _a = up(
        &a_dir,
        &format!(
            "[node]\nnick = \"alice\"\n[dcc]\nenabled = false\n[nmdc_hub]\nlisten = \"127.0.0.1:{hub}\"\n\
             [slsk_server]\nlisten = \"127.0.0.1:{slsk}\"\n[tox_bootstrap]\nenabled = false\n[tox]\nenabled = false\n[api]\nlisten = \"127.0.0.1:{api_a}\"\n\
             [nmdc_client]\nslots = {slots}\n[slsk_client]\nslots = {slots}\n[share]\nwatch = false\n\
             [transfers]\nupload_slots = {slots}\n"
        ),
    )?;
    let b_dir = dir.path().join("b");
    let _b = up(
        &b_dir,
        &format!(
            "[node]\nnick = \"bob\"\n[dcc]\nenabled = false\n[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n[tox_bootstrap]\nenabled = false\n[tox]\nenabled = false\n\
             [nmdc_client]\nhub = \"127.0.0.1:{hub}\"\n[slsk_client]\nserver = \"127.0.0.1:{slsk}\"\n\
             [api]\nlisten = \"127.0.0.1:{api_b}\"\n[transfers]\nglobal_slots = {slots}\nnetwork_slots = {slots}\n"
        ),
    )?;
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let b = Api { base: format!("http://127.0.0.1:{api_b}"), agent };
    let s = b.post("/api/searches", json!({"query": "payload bin"}))?;
    let sid = s["id"].as_u64().unwrap_or(0);
    let end = Instant::now() + Duration::from_secs(60);
    let results = loop {
        let s = b.get(&format!("/api/searches/{sid}"))?;
        let r: Vec<u64> = s["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["sources"].as_array().is_some_and(|a| a.iter().any(|x| x["network"] == "slsk")))
            .filter_map(|r| r["id"].as_u64())
            .collect();
        if r.len() >= n {
            break r;
        }
        anyhow::ensure!(Instant::now() < end, "only {} of {n} results arrived", r.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    common::settle();
    let t = Instant::now();
    let mut ids = Vec::new();
    for r in results.iter().take(n) {
        ids.push(b.post("/api/transfers", json!({"result": r, "network": "slsk"}))?["id"].as_i64().unwrap_or(0));
    }
    loop {
        let ts = b.get("/api/transfers")?;
        let ts = ts.as_array().cloned().unwrap_or_default();
        let done = ts.iter().filter(|t| ids.contains(&t["id"].as_i64().unwrap_or(-1)) && t["state"] == "done").count();
        if let Some(f) = ts.iter().find(|t| t["state"] == "failed") {
            anyhow::bail!("a download failed: {f}");
        }
        if done == ids.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let omni = t.elapsed();
    let mibs = |d: Duration| total as f64 / (1 << 20) as f64 / d.as_secs_f64();
    println!("{n} concurrent downloads of {mib} MiB each ({} MiB in all):", total >> 20);
    println!("  plain TCP copies      {:>8.1} ms  {:>8.1} MiB/s", common::ms(tcp), mibs(tcp));
    println!(
        "  two omnipeer nodes    {:>8.1} ms  {:>8.1} MiB/s  ({:.2}x the plain copies' throughput)",
        common::ms(omni),
        mibs(omni),
        mibs(omni) / mibs(tcp)
    );
    Ok(())
}
