//! eiskaltdcpp-daemon 2.4.2 driven over its JSON-RPC 2.0 interface (HTTP POST, implemented
//! here on `std::net::TcpStream`; docs/protocols/nmdc.md#real-clients).
//!
//! Gotchas handled here: `DCPlusPlus.xml` is pre-seeded before the first start (it is only
//! read at startup) with `RequireTLS=0` (the default 1 makes it answer plain c-c connections
//! with `$Error Secure connection required!`), `UseTLS=0` (both 1 with
//! [`Eiskalt::start_with_tls`]: it then makes an X.509 v1 certificate in `conf/Certificates/` and
//! listens for TLS on its own `TLSPort`), `ExternalIp=127.0.0.1` +
//! `NoIpOverride=1` (else it advertises whatever the hub reports), `HashingStartDelay=0`,
//! `MinimumSearchInterval=0` (default 60: searches are queued and sent one per 61 s);
//! RPC params must be a JSON object; the hub password comes from `Favorites.xml`, matched
//! on the exact hub URL. After a c-c connection closes, DC++ waits 60 s before it connects
//! to the same user again — tests should queue everything they want before the first
//! connection (e.g. `add_by_tth` then `download_filelist` then `match_lists`).

use super::{have, mkdir, temp_dir, wait_until, KillOnDrop};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How to start eiskaltdcpp-daemon.
#[derive(Clone, Debug, Default)]
pub struct EiskaltConfig {
    /// Nick.
    pub nick: String,
    /// Hub as `127.0.0.1:PORT` (connected as `dchub://127.0.0.1:PORT`), or a whole address
    /// with its scheme (`adc://127.0.0.1:PORT`, `adcs://...`, `nmdcs://...`).
    pub hub: String,
    /// Directory shared as `share` (hashed by [`Eiskalt::start`] before connecting).
    pub share: Option<PathBuf>,
    /// Active mode on this TCP+UDP port; `None` = passive (`IncomingConnections=3`).
    pub active_port: Option<u16>,
    /// Hub password (written to `Favorites.xml` for this hub URL).
    pub password: Option<String>,
}

/// A running eiskaltdcpp-daemon; killed on drop.
pub struct Eiskalt {
    /// The configuration it was started with.
    pub config: EiskaltConfig,
    /// JSON-RPC port on 127.0.0.1.
    pub rpc_port: u16,
    child: KillOnDrop,
    base: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Eiskalt {
    /// True when `eiskaltdcpp-daemon` is installed.
    pub fn available() -> bool {
        have("eiskaltdcpp-daemon")
    }

    /// Writes the config, starts the daemon (own RPC port), waits for RPC to answer, shares
    /// (waiting for hashing) and adds the hub. Does not wait for the login; see
    /// [`Eiskalt::wait_logged_in`]. Panics if the daemon does not answer within 15 s.
    pub fn start(config: EiskaltConfig) -> Eiskalt {
        Eiskalt::start_with_tls(config, false)
    }

    /// [`Eiskalt::start`] with TLS client-to-client connections when `tls`: `UseTLS=1` and
    /// `RequireTLS=1` (plain c-c connections are refused, so a transfer that works was
    /// TLS). It then makes its own certificate and listens for TLS on its `TLSPort`.
    pub fn start_with_tls(config: EiskaltConfig, tls: bool) -> Eiskalt {
        let tmp = temp_dir("ek-");
        let base = tmp.path().to_path_buf();
        let conf = mkdir(base.join("conf"));
        let local = mkdir(base.join("local"));
        let dl = mkdir(base.join("dl"));
        let incomplete = mkdir(base.join("incomplete"));
        let (mode, port) = match config.active_port {
            Some(p) => (0, p),               // INCOMING_DIRECT
            None => (3, super::free_port()), // INCOMING_FIREWALL_PASSIVE
        };
        let tls_port = super::free_port();
        let xml = format!(
            r#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>
<DCPlusPlus>
<Settings>
<Nick type="string">{nick}</Nick>
<Description type="string">omnipeer-test</Description>
<UploadSpeed type="string">100</UploadSpeed>
<DownloadDirectory type="string">{dl}/</DownloadDirectory>
<TempDownloadDirectory type="string">{inc}/</TempDownloadDirectory>
<IncomingConnections type="int">{mode}</IncomingConnections>
<InPort type="int">{port}</InPort>
<UDPPort type="int">{port}</UDPPort>
<TLSPort type="int">{tls_port}</TLSPort>
<BindAddress type="string">127.0.0.1</BindAddress>
<ExternalIp type="string">127.0.0.1</ExternalIp>
<NoIpOverride type="int">1</NoIpOverride>
<UseTLS type="int">{tls}</UseTLS>
<RequireTLS type="int">{tls}</RequireTLS>
<HashingStartDelay type="int">0</HashingStartDelay>
<MinimumSearchInterval type="int">0</MinimumSearchInterval>
</Settings>
</DCPlusPlus>
"#,
            nick = xml_escape(&config.nick),
            dl = xml_escape(&dl.display().to_string()),
            inc = xml_escape(&incomplete.display().to_string()),
            tls = u8::from(tls),
        );
        std::fs::write(conf.join("DCPlusPlus.xml"), xml).unwrap();
        if let Some(pw) = &config.password {
            let fav = format!(
                r#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>
<Favorites><Hubs><Hub Name="test" Server="{}" Nick="{}" Password="{}" Connect="0"/></Hubs></Favorites>
"#,
                xml_escape(&super::hub_url(&config.hub)),
                xml_escape(&config.nick),
                xml_escape(pw)
            );
            std::fs::write(conf.join("Favorites.xml"), fav).unwrap();
        }

        let rpc_port = super::free_port();
        let out = std::fs::File::create(base.join("daemon.out")).unwrap();
        let child = KillOnDrop::spawn(
            Command::new("eiskaltdcpp-daemon")
                .arg("-L")
                .arg("127.0.0.1")
                .arg("-P")
                .arg(rpc_port.to_string())
                .arg("-c")
                .arg(format!("{}/", conf.display()))
                .arg("-l")
                .arg(format!("{}/", local.display()))
                .current_dir(&base)
                .env("HOME", &base)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        )
        .expect("spawn eiskaltdcpp-daemon");
        let me = Eiskalt { config, rpc_port, child, base, _tmp: tmp };
        let up = wait_until(Duration::from_secs(15), || me.rpc("show.version", json!({})).is_ok());
        assert!(up, "eiskaltdcpp-daemon RPC did not answer; output:\n{}", me.daemon_output());
        if let Some(share) = me.config.share.clone() {
            let ok = me.share_and_wait_hashed(&share, Duration::from_secs(30));
            assert!(ok, "eiskalt did not finish hashing {}", share.display());
        }
        me.add_hub();
        me
    }

    /// One JSON-RPC 2.0 call (HTTP/1.0 POST to `127.0.0.1:<rpc_port>/`, 10 s timeouts).
    /// Returns `result`, or `Err` with the `error` object / transport error as text.
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.rpc_port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.set_write_timeout(Some(Duration::from_secs(10))).ok();
        let req = format!(
            "POST / HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.rpc_port,
            body.len(),
            body
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => resp.extend_from_slice(&buf[..n]),
                Err(e) if resp.is_empty() => return Err(e.to_string()),
                Err(_) => break,
            }
            // Stop at Content-Length if the server keeps the connection open.
            if let Some(len) = complete_len(&resp) {
                resp.truncate(len);
                break;
            }
        }
        let text = String::from_utf8_lossy(&resp);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).ok_or("no HTTP body")?;
        let v: Value = serde_json::from_str(body.trim()).map_err(|e| format!("{e}: {body}"))?;
        if let Some(err) = v.get("error") {
            return Err(err.to_string());
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }

    /// `dchub://<hub>` (or the configured address with its scheme), the hub URL the RPC
    /// methods take.
    pub fn hub_url(&self) -> String {
        super::hub_url(&self.config.hub)
    }

    /// `hub.add` for the configured hub.
    pub fn add_hub(&self) {
        let _ = self.rpc("hub.add", json!({"huburl": self.hub_url(), "enc": ""}));
    }

    /// `share.add <dir> as "share"` + `share.refresh`, then waits until the hasher is idle
    /// with nothing left (seen three polls in a row) and the share is non-empty.
    pub fn share_and_wait_hashed(&self, dir: &Path, timeout: Duration) -> bool {
        let d = format!("{}/", dir.display().to_string().trim_end_matches('/'));
        let _ = self.rpc("share.add", json!({"directory": d, "virtname": "share"}));
        let _ = self.rpc("share.refresh", json!({}));
        let mut idle = 0;
        wait_until(timeout, || {
            let st = self.rpc("hash.status", json!({})).unwrap_or(Value::Null);
            let done = st["filesleft"].as_u64() == Some(0) && st["bytesleft"].as_u64() == Some(0);
            let listed = self
                .rpc("share.list", json!({"separator": "|"}))
                .ok()
                .and_then(|v| v.as_str().map(|s| s.contains(&d) && !s.contains("|0 B|")))
                .unwrap_or(false);
            idle = if done && listed { idle + 1 } else { 0 };
            idle >= 3
        })
    }

    /// Nicks on the hub as eiskalt sees them (`hub.getusers`), including its own.
    pub fn users(&self) -> Vec<String> {
        let r = self.rpc("hub.getusers", json!({"huburl": self.hub_url(), "separator": ";"}));
        let s = r.ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let mut v: Vec<String> = s.split(';').filter(|n| !n.is_empty()).map(str::to_owned).collect();
        v.sort();
        v
    }

    /// Waits until `hub.getusers` lists our own nick (the hub accepted us).
    pub fn wait_logged_in(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.users().contains(&self.config.nick))
    }

    /// `list.download` of `nick`'s file list (result 0 = queued).
    pub fn download_filelist(&self, nick: &str) -> Result<Value, String> {
        self.rpc("list.download", json!({"huburl": self.hub_url(), "nick": nick}))
    }

    /// The downloaded file list of `nick` (`local/FileLists/<nick>.<CID>.xml.bz2`), if any.
    pub fn filelist_path(&self, nick: &str) -> Option<PathBuf> {
        let dir = self.base.join("local").join("FileLists");
        std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{nick}.")) && n.ends_with(".xml.bz2")
        })
    }

    /// Waits for `nick`'s file list to be completely downloaded (file present and non-empty,
    /// and its queue item `FileLists/<nick>.<CID>` gone — the file is created before it is
    /// written); returns its path.
    pub fn wait_filelist(&self, nick: &str, timeout: Duration) -> Option<PathBuf> {
        let mut found = None;
        let prefix = self.base.join("local").join("FileLists").join(format!("{nick}."));
        let prefix = prefix.display().to_string();
        let done = wait_until(timeout, || {
            found = self.filelist_path(nick);
            let written = found.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len() > 0);
            let queued = match self.queue_list() {
                Value::Object(m) => m.keys().any(|k| k.starts_with(&prefix)),
                _ => false,
            };
            written == Some(true) && !queued
        });
        found.filter(|_| done)
    }

    /// `queue.add`: queue `name` (`size` bytes, TTH root `tth`) into directory `dir`. It has
    /// no source until a file list with that TTH is matched ([`Eiskalt::match_lists`]) or a
    /// search result arrives.
    pub fn add_by_tth(&self, name: &str, size: u64, tth: &str, dir: &Path) -> Result<Value, String> {
        self.rpc(
            "queue.add",
            json!({"directory": dir.display().to_string(), "filename": name, "size": size, "tth": tth}),
        )
    }

    /// `queue.matchlists`: match every downloaded file list against the queue (adds sources).
    pub fn match_lists(&self) -> Result<Value, String> {
        self.rpc("queue.matchlists", json!({}))
    }

    /// `queue.list`: object keyed by target path (null when empty).
    pub fn queue_list(&self) -> Value {
        self.rpc("queue.list", json!({})).unwrap_or(Value::Null)
    }

    /// `search.send` of `query` (type any) on our hub.
    pub fn search(&self, query: &str) -> Result<Value, String> {
        self.rpc(
            "search.send",
            json!({"searchstring": query, "searchtype": 0, "sizemode": 0, "sizetype": 0,
                   "size": 0.0, "huburls": self.hub_url()}),
        )
    }

    /// `search.getresults` for our hub (array of result objects).
    pub fn search_results(&self) -> Value {
        self.rpc("search.getresults", json!({"huburl": self.hub_url()})).unwrap_or(Value::Null)
    }

    /// Waits until `path` exists and is no longer a queue target (download finished; partial
    /// data lives in a separate temp dir, so the file appears only when complete).
    pub fn wait_file(&self, path: &Path, timeout: Duration) -> bool {
        let key = path.display().to_string();
        wait_until(timeout, || path.is_file() && self.queue_list().get(&key).is_none())
    }

    /// Where downloads go by default (`DownloadDirectory`).
    pub fn download_dir(&self) -> PathBuf {
        self.base.join("dl")
    }

    /// The instance's temp dir (conf/, local/, dl/, daemon.out).
    pub fn dir(&self) -> &Path {
        &self.base
    }

    /// What the daemon printed on stdout/stderr.
    pub fn daemon_output(&self) -> String {
        super::read_lossy(&self.base.join("daemon.out"))
    }

    /// `daemon.stop`, waits up to 5 s for the exit, then kills.
    pub fn stop(&mut self) {
        if self.child.running() {
            let _ = self.rpc("daemon.stop", json!({}));
        }
        self.child.wait_or_kill(Duration::from_secs(5));
    }
}

/// Escapes text for an XML attribute or element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Total length of an HTTP response once headers and `Content-Length` bytes are in.
fn complete_len(resp: &[u8]) -> Option<usize> {
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&resp[..head_end]).to_ascii_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok())?;
    (resp.len() >= head_end + len).then_some(head_end + len)
}
