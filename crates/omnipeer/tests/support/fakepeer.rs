//! TEST FIXTURE: a scripted NMDC user and c-c peer, used to make a real client show what it
//! sends (golden frames). [`FakeUser`] logs in to a hub and sends raw commands (e.g. a
//! `$ConnectToMe <client> 127.0.0.1:<our port>|` so the client connects to us);
//! [`cc_accept`] / [`cc_connect`] run the c-c handshake from our side and return every byte
//! the real client sent.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// NMDC Lock→Key (docs/protocols/nmdc.md#lock-and-key), for the lock bytes between `$Lock ` and ` Pk=`.
pub fn lock_to_key(lock: &[u8]) -> Vec<u8> {
    let n = lock.len();
    if n < 3 {
        return Vec::new();
    }
    let mut key = vec![0u8; n];
    key[0] = lock[0] ^ lock[n - 1] ^ lock[n - 2] ^ 5;
    for i in 1..n {
        key[i] = lock[i] ^ lock[i - 1];
    }
    let mut out = Vec::with_capacity(n + 16);
    for k in key {
        let k = k.rotate_left(4);
        match k {
            0 | 5 | 36 | 96 | 124 | 126 => out.extend_from_slice(format!("/%DCN{k:03}%/").as_bytes()),
            _ => out.push(k),
        }
    }
    out
}

/// The lock inside a `$Lock <lock> Pk=…` command (without `$Lock ` and `|`).
pub fn lock_of(cmd: &[u8]) -> Option<&[u8]> {
    let rest = cmd.strip_prefix(b"$Lock ")?;
    let end = rest.windows(4).position(|w| w == b" Pk=").unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Splits a byte stream into `|`-terminated commands (without the `|`; empty ones dropped).
pub fn split_cmds(raw: &[u8]) -> Vec<Vec<u8>> {
    raw.split(|&b| b == b'|').filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect()
}

/// A fake user logged in to a hub; a reader thread records every command it receives.
pub struct FakeUser {
    pub nick: String,
    stream: TcpStream,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FakeUser {
    /// Connects to `hub` (`127.0.0.1:PORT`), logs in as `nick` with a `$MyINFO` (active,
    /// 1 slot, empty share) and waits for `$Hello` (panics after 10 s).
    pub fn login(hub: &str, nick: &str) -> FakeUser {
        let stream = TcpStream::connect(hub).expect("fake user: connect to hub");
        stream.set_write_timeout(Some(Duration::from_secs(5))).ok();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (r, mut rs) = (received.clone(), stream.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = rs.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(p) = buf.iter().position(|&b| b == b'|') {
                    let cmd: Vec<u8> = buf.drain(..=p).take(p).collect();
                    if !cmd.is_empty() {
                        r.lock().unwrap().push(cmd);
                    }
                }
            }
        });
        let mut me = FakeUser { nick: nick.to_owned(), stream, received };
        let lock = me.wait_cmd(b"$Lock ", Duration::from_secs(10)).expect("fake user: hub $Lock");
        let key = lock_to_key(lock_of(&lock).unwrap());
        let mut hello = b"$Supports NoGetINFO NoHello UserIP2|$Key ".to_vec();
        hello.extend_from_slice(&key);
        hello.extend_from_slice(format!("|$ValidateNick {nick}|").as_bytes());
        me.send(&hello);
        me.wait_cmd(format!("$Hello {nick}").as_bytes(), Duration::from_secs(10)).expect("fake user: $Hello");
        me.send(
            format!("$Version 1,0091|$GetNickList|$MyINFO $ALL {nick} fake<fake V:1,M:A,H:1/0/0,S:1>$ $100\x01$$0$|")
                .as_bytes(),
        );
        me
    }

    /// Sends raw bytes (complete `…|` commands).
    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("fake user: send");
    }

    /// Every command received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for a received command starting with `prefix`; returns the first such.
    pub fn wait_cmd(&self, prefix: &[u8], timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.received().into_iter().find(|c| c.starts_with(prefix)) {
                return Some(c);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FakeUser {
    /// Closes the hub connection (the reader thread holds a clone, so shut it down).
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// What our side of a c-c connection sends after the peer's `$Lock`.
pub struct CcScript {
    /// Our nick (`$MyNick`).
    pub nick: String,
    /// `$Direction` we claim; `Download` with a high number makes us the downloader.
    pub direction: String,
    /// Sent once the peer's `$Key` arrived (e.g. `$ADCGET file files.xml.bz2 0 -1|`);
    /// empty = nothing.
    pub request: Vec<u8>,
}

impl CcScript {
    /// Our `$MyNick …|$Lock …|` opening.
    fn opening(&self) -> Vec<u8> {
        format!("$MyNick {}|$Lock EXTENDEDPROTOCOL_probe Pk=probe|", self.nick).into_bytes()
    }

    /// Our `$Supports …|$Direction …|$Key …|` answer to the peer's lock.
    fn answer(&self, their_lock: &[u8]) -> Vec<u8> {
        let mut v =
            format!("$Supports MiniSlots XmlBZList ADCGet TTHL TTHF|$Direction {}|$Key ", self.direction).into_bytes();
        v.extend_from_slice(&lock_to_key(their_lock));
        v.push(b'|');
        v
    }
}

/// A bound c-c listener on 127.0.0.1 (free port).
pub struct CcListener {
    pub listener: TcpListener,
    pub port: u16,
}

impl CcListener {
    /// Binds 127.0.0.1:0.
    pub fn bind() -> CcListener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind c-c listener");
        let port = listener.local_addr().unwrap().port();
        CcListener { listener, port }
    }

    /// Accepts one connection (≤ `timeout`) from a real client that connects to us (after our
    /// `$ConnectToMe`), plays `script` as the listening side and returns every byte the client
    /// sent until `timeout` or until it closed / went quiet for 1.5 s after our request.
    pub fn accept(&self, script: &CcScript, timeout: Duration) -> Option<Vec<u8>> {
        self.listener.set_nonblocking(true).ok();
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return None,
            }
        };
        stream.set_nonblocking(false).ok();
        Some(run_cc(stream, script, false, deadline))
    }
}

/// Connects to a real client's c-c port (after it sent us `$ConnectToMe`), speaks first as
/// the connecting side, plays `script`, and returns every byte the client sent.
pub fn cc_connect(addr: &str, script: &CcScript, timeout: Duration) -> Option<Vec<u8>> {
    let stream = TcpStream::connect(addr).ok()?;
    Some(run_cc(stream, script, true, Instant::now() + timeout))
}

fn run_cc(mut s: TcpStream, script: &CcScript, we_connected: bool, deadline: Instant) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut got = Vec::new();
    if we_connected {
        let _ = s.write_all(&script.opening());
    }
    let (mut answered, mut requested) = (false, false);
    let mut quiet_since = Instant::now();
    let mut chunk = [0u8; 65536];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                quiet_since = Instant::now();
            }
            Err(_) => {
                if requested && quiet_since.elapsed() > Duration::from_millis(1500) {
                    break;
                }
            }
        }
        let cmds = split_cmds(&got);
        if !answered {
            if let Some(lock) = cmds.iter().find_map(|c| lock_of(c).map(<[u8]>::to_vec)) {
                let mut out = if we_connected { Vec::new() } else { script.opening() };
                out.extend_from_slice(&script.answer(&lock));
                let _ = s.write_all(&out);
                answered = true;
                quiet_since = Instant::now();
            }
        }
        if answered && !requested && cmds.iter().any(|c| c.starts_with(b"$Key ")) {
            if !script.request.is_empty() {
                let _ = s.write_all(&script.request);
            }
            requested = true;
            quiet_since = Instant::now();
        }
    }
    got
}
