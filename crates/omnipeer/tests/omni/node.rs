//! Running whole nodes (`omnipeer up`) and talking to their HTTP API.

use super::{run_in, Omni};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A loopback port free right now, from 20000-25999: below the kernel's ephemeral range
/// (`ip_local_port_range`, 32768-60999 by default), so a listener on port 0 (the node's
/// DCC server, say) is never handed it between this check and the node's bind (seen: the
/// DCC server took the port chosen for the hub). Never the same number twice in one test
/// process; the start is spread by process id. `support::free_port` takes 26000-29999,
/// `slsk_support::free_port` 30000-32767.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 6_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The ports of a node that runs the servers.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// NMDC hub.
    pub hub: u16,
    /// Soulseek server.
    pub slsk: u16,
    /// API.
    pub api: u16,
}

impl Ports {
    /// Fresh free ports.
    pub fn free() -> Ports {
        Ports { hub: free_port(), slsk: free_port(), api: free_port() }
    }
}

/// The config of a node that runs every server (nick `nick`).
pub fn server_config(nick: &str, p: Ports) -> String {
    format!(
        "[node]\nnick = \"{nick}\"\n[dcc]\nlisten = \"127.0.0.1:0\"\n[nmdc_hub]\nlisten = \"127.0.0.1:{}\"\n\
         [slsk_server]\nlisten = \"127.0.0.1:{}\"\n[tox_bootstrap]\nlisten = \"127.0.0.1:0\"\n[tox]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:{}\"\n",
        p.hub, p.slsk, p.api
    )
}

/// The config of a node that runs no server and joins `of`'s hub and server.
pub fn joining_config(nick: &str, of: Ports, api: u16, extra: &str) -> String {
    format!(
        "[node]\nnick = \"{nick}\"\n[dcc]\nenabled = false\n[nmdc_hub]\nenabled = false\n[slsk_server]\nenabled = false\n[tox_bootstrap]\nenabled = false\n[tox]\nlisten = \"127.0.0.1:0\"\n\
         [nmdc_client]\nhub = \"127.0.0.1:{}\"\n[slsk_client]\nserver = \"127.0.0.1:{}\"\n[api]\nlisten = \"127.0.0.1:{api}\"\n{extra}",
        of.hub, of.slsk
    )
}

/// A running node.
pub struct Node {
    /// The process.
    pub omni: Omni,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// The bearer token it generated, if any.
    pub token: Option<String>,
    agent: ureq::Agent,
}

/// Wait up to `secs` for `f` to give something.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Node {
    /// Write `config` to `dir/config.toml`, run `omnipeer up` there and wait until its
    /// clients are logged in.
    pub fn start(dir: &Path, config: &str, api_port: u16) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Node::restart(dir, api_port)
    }

    /// [`Node::start`] for a node whose NMDC client is off: waits for its Soulseek
    /// client only.
    pub fn start_slsk_only(dir: &Path, config: &str, api_port: u16) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Node::restart_waiting(dir, api_port, &["slsk_client"])
    }

    /// Run `omnipeer up` in `dir` (its config.toml as it is).
    pub fn restart(dir: &Path, api_port: u16) -> Node {
        Node::restart_waiting(dir, api_port, &["nmdc_client", "slsk_client"])
    }

    /// [`Node::restart`], waiting until the clients in `online` are logged in.
    pub fn restart_waiting(dir: &Path, api_port: u16, online: &[&str]) -> Node {
        let n = Node::launch(dir, api_port);
        n.wait_clients(online);
        n
    }

    /// Write `config` and run `omnipeer up` there, waiting only until it is up (a node whose
    /// sessions are `[[hubs]]` entries: wait for those with [`Node::wait_network`]).
    pub fn start_bare(dir: &Path, config: &str, api_port: u16) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Node::launch(dir, api_port)
    }

    /// Wait up to `secs` until the network `name` (`/api/status`) is online.
    pub fn wait_network(&self, name: &str, secs: u64) {
        wait_for(&format!("{name} online"), secs, || {
            let s = self.get("/api/status");
            s["networks"].as_array()?.iter().any(|x| x["name"] == name && x["state"] == "online").then_some(())
        });
    }

    fn launch(dir: &Path, api_port: u16) -> Node {
        let omni = Omni::start_in(dir, &["up"]);
        omni.wait_line("omnipeer is up");
        // A node that stops answering fails the test instead of hanging it.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let token = std::fs::read_to_string(dir.join("api-token")).ok().map(|t| t.trim().to_owned());
        Node { omni, base: format!("http://127.0.0.1:{api_port}"), dir: dir.to_path_buf(), token, agent }
    }

    /// Wait until the clients in `names` are logged in.
    pub fn wait_clients(&self, names: &[&str]) {
        wait_for(&format!("{names:?} online"), 30, || {
            let s = self.get("/api/status");
            let nets = s["networks"].as_array()?.clone();
            let online = |name: &str| nets.iter().any(|x| x["name"] == name && x["state"] == "online");
            names.iter().all(|n| online(n)).then_some(())
        });
    }

    /// Wait until both clients are logged in.
    pub fn wait_online(&self) {
        self.wait_clients(&["nmdc_client", "slsk_client"]);
    }

    /// GET; the JSON body (Null on a non-JSON answer).
    pub fn get(&self, path: &str) -> Value {
        self.get_status(path).1
    }

    /// GET; (status, JSON body).
    pub fn get_status(&self, path: &str) -> (u16, Value) {
        self.get_with(path, self.token.as_deref())
    }

    /// GET with this token (or none); (status, JSON body).
    pub fn get_with(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut r = req.call().unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// POST JSON; (status, JSON body).
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut r = req.send_json(&body).unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// Search through the API until a result named `name` has a source on every network
    /// in `networks`; returns the result.
    pub fn search_until(&self, query: &str, name: &str, networks: &[&str]) -> Value {
        let (code, s) = self.post("/api/searches", json!({ "query": query }));
        assert_eq!(code, 201, "{s}");
        let id = s["id"].as_u64().unwrap();
        wait_for(&format!("{name} from {networks:?}"), 30, || self.found_in(id, name, networks))
    }

    /// Search again and again (a search sent before a rescan or a re-login cannot find
    /// what came after it), each for 3 s, until `name` has a source on every network in
    /// `networks`, for at most `secs`.
    pub fn search_again_until(&self, query: &str, name: &str, networks: &[&str], secs: u64) -> Value {
        wait_for(&format!("{name} on {networks:?}"), secs, || {
            let (code, s) = self.post("/api/searches", json!({ "query": query }));
            assert_eq!(code, 201, "{s}");
            let id = s["id"].as_u64().unwrap();
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if let Some(r) = self.found_in(id, name, networks) {
                    return Some(r);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            None
        })
    }

    /// The result of search `id` named `name` with a source on every one of `networks`.
    fn found_in(&self, id: u64, name: &str, networks: &[&str]) -> Option<Value> {
        let s = self.get(&format!("/api/searches/{id}"));
        s["results"]
            .as_array()?
            .iter()
            .find(|r| {
                r["name"] == name
                    && networks
                        .iter()
                        .all(|n| r["sources"].as_array().is_some_and(|a| a.iter().any(|x| x["network"] == *n)))
            })
            .cloned()
    }

    /// Wait until transfer `id` is done; returns it.
    pub fn wait_done(&self, id: i64, secs: u64) -> Value {
        wait_for(&format!("transfer {id} done"), secs, || {
            let t = self.get(&format!("/api/transfers/{id}"));
            assert_ne!(t["state"], "failed", "{t}");
            (t["state"] == "done").then_some(t)
        })
    }

    /// Any method, raw body; (status, content type, body).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        let url = format!("{}{path}", self.base);
        let resp = match method.to_ascii_lowercase().as_str() {
            "get" => self.agent.get(&url).call(),
            "post" => self.agent.post(&url).header("Content-Type", "application/json").send(body),
            "delete" => self.agent.delete(&url).call(),
            "put" => self.agent.put(&url).header("Content-Type", "application/json").send(body),
            other => panic!("method {other}"),
        };
        let mut r = resp.unwrap();
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (r.status().as_u16(), ct, r.body_mut().read_to_string().unwrap_or_default())
    }

    /// Run `omnipeer --data-dir DIR ARGS` (a client of this node).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        run_in(&self.dir, args)
    }
}

/// `len` deterministic pseudo-random bytes (xorshift).
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// sha256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect()
}
