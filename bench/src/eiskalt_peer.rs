//! The least of crates/omnipeer/tests/support/eiskalt.rs a benchmark needs: eiskaltdcpp-daemon
//! with a pre-seeded `DCPlusPlus.xml` (the same gotchas as there: plain c-c connections, our
//! own IP, no hashing delay) plus an upload limit, one shared directory hashed before it joins
//! the hub, driven over its JSON-RPC interface (docs/protocols/nmdc.md#real-clients).

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running eiskaltdcpp-daemon; killed on drop.
pub struct Eiskalt {
    child: Child,
    rpc_port: u16,
    hub_url: String,
    nick: String,
}

impl Drop for Eiskalt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `eiskaltdcpp-daemon` is on the PATH.
pub fn available() -> bool {
    Command::new("sh")
        .args(["-c", "command -v eiskaltdcpp-daemon"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Eiskalt {
    /// Starts it in `base` as `nick` in active mode, limited to `upload_kib` KiB/s
    /// (`EnableThrottle`, `MaxUploadSpeedMain`), shares `share` and waits (up to 10 min) until it is
    /// hashed, then joins `dchub://127.0.0.1:<hub>` and waits for the login.
    pub fn start(base: &Path, nick: &str, hub: u16, share: &Path, upload_kib: u64) -> anyhow::Result<Eiskalt> {
        let conf = base.join("conf");
        let local = base.join("local");
        for d in [&conf, &local, &base.join("dl"), &base.join("incomplete")] {
            std::fs::create_dir_all(d)?;
        }
        let port = free_port()?;
        let tls_port = free_port()?;
        let xml = format!(
            r#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>
<DCPlusPlus>
<Settings>
<Nick type="string">{nick}</Nick>
<Description type="string">omnipeer-bench</Description>
<UploadSpeed type="string">100</UploadSpeed>
<DownloadDirectory type="string">{b}/dl/</DownloadDirectory>
<TempDownloadDirectory type="string">{b}/incomplete/</TempDownloadDirectory>
<IncomingConnections type="int">0</IncomingConnections>
<InPort type="int">{port}</InPort>
<UDPPort type="int">{port}</UDPPort>
<TLSPort type="int">{tls_port}</TLSPort>
<BindAddress type="string">127.0.0.1</BindAddress>
<ExternalIp type="string">127.0.0.1</ExternalIp>
<NoIpOverride type="int">1</NoIpOverride>
<UseTLS type="int">0</UseTLS>
<RequireTLS type="int">0</RequireTLS>
<HashingStartDelay type="int">0</HashingStartDelay>
<MinimumSearchInterval type="int">0</MinimumSearchInterval>
<EnableThrottle type="int">1</EnableThrottle>
<TimeDependentThrottle type="int">0</TimeDependentThrottle>
<MaxUploadSpeedMain type="int">{upload_kib}</MaxUploadSpeedMain>
</Settings>
</DCPlusPlus>
"#,
            b = base.display(),
        );
        std::fs::write(conf.join("DCPlusPlus.xml"), xml)?;
        let rpc_port = free_port()?;
        let out = std::fs::File::create(base.join("daemon.out"))?;
        let child = Command::new("eiskaltdcpp-daemon")
            .args(["-L", "127.0.0.1", "-P", &rpc_port.to_string()])
            .arg("-c")
            .arg(format!("{}/", conf.display()))
            .arg("-l")
            .arg(format!("{}/", local.display()))
            .current_dir(base)
            .env("HOME", base)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let me = Eiskalt { child, rpc_port, hub_url: format!("dchub://127.0.0.1:{hub}"), nick: nick.to_owned() };
        anyhow::ensure!(
            wait_until(Duration::from_secs(15), || me.rpc("show.version", json!({})).is_ok()),
            "eiskaltdcpp-daemon RPC did not answer"
        );
        let d = format!("{}/", share.display().to_string().trim_end_matches('/'));
        me.rpc("share.add", json!({"directory": d, "virtname": "share"}))?;
        me.rpc("share.refresh", json!({}))?;
        // Hashed: the hasher idle with nothing left, three polls in a row, and the share listed
        // with a size (the same test as the interop harness).
        let mut idle = 0;
        let hashed = wait_until(Duration::from_secs(600), || {
            let st = me.rpc("hash.status", json!({})).unwrap_or(Value::Null);
            let done = st["filesleft"].as_u64() == Some(0) && st["bytesleft"].as_u64() == Some(0);
            let listed = me
                .rpc("share.list", json!({"separator": "|"}))
                .ok()
                .and_then(|v| v.as_str().map(|s| s.contains(&d) && !s.contains("|0 B|")))
                .unwrap_or(false);
            idle = if done && listed { idle + 1 } else { 0 };
            idle >= 3
        });
        anyhow::ensure!(hashed, "EiskaltDC++ did not finish hashing {d}");
        me.rpc("hub.add", json!({"huburl": me.hub_url, "enc": ""}))?;
        let logged = wait_until(Duration::from_secs(60), || {
            let r = me.rpc("hub.getusers", json!({"huburl": me.hub_url, "separator": ";"}));
            r.ok().and_then(|v| v.as_str().map(|s| s.split(';').any(|n| n == me.nick))).unwrap_or(false)
        });
        anyhow::ensure!(logged, "EiskaltDC++ did not log in to {}", me.hub_url);
        Ok(me)
    }

    /// One JSON-RPC 2.0 call (HTTP/1.0 POST, 10 s timeouts); `result`, or the error as text.
    fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.rpc_port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST / HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.rpc_port,
            body.len()
        )?;
        let mut resp = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => resp.extend_from_slice(&buf[..n]),
                Err(e) if resp.is_empty() => return Err(e.into()),
                Err(_) => break,
            }
            // It may keep the connection open: stop at Content-Length.
            if let Some(len) = complete_len(&resp) {
                resp.truncate(len);
                break;
            }
        }
        let text = String::from_utf8_lossy(&resp);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).ok_or_else(|| anyhow::anyhow!("no HTTP body"))?;
        let v: Value = serde_json::from_str(body.trim())?;
        if let Some(err) = v.get("error") {
            anyhow::bail!("{method}: {err}");
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }
}

fn complete_len(resp: &[u8]) -> Option<usize> {
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&resp[..head_end]).to_ascii_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok())?;
    (resp.len() >= head_end + len).then_some(head_end + len)
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
