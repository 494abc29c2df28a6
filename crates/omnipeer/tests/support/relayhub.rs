//! TEST FIXTURE ONLY — not omnipeer's hub. A minimal NMDC relay hub (std only, one thread
//! per connection) used to validate the real-client harness and to capture what the real
//! clients send (golden frames) before omnipeer's own hub exists.
//!
//! Behaviour (see docs/protocols/nmdc.md#hub-login and #hub-relay): sends `$Lock EXTENDEDPROTOCOL_relay Pk=relay|
//! $HubName relay|`; `$Supports` → `$Supports NoGetINFO NoHello UserIP2|`; `$ValidateNick`
//! → `$Hello nick|` (or `$GetPass|` for a nick given a password, `$ValidateDenide` if taken);
//! `$MyINFO` is relayed to everyone and the newcomer gets the existing users' `$MyINFO`;
//! `$GetNickList` → every `$MyINFO` + `$OpList |` + `$UserIP`; chat is broadcast;
//! `$ConnectToMe`/`$RevConnectToMe`/`$To:` go to the named target; `$Search` to everyone
//! else; `$SR …\x05target` to target with `\x05target` stripped; `$Quit nick|` on disconnect.
//! No anti-spoofing, no op commands. Every raw command received and sent is logged per
//! connection (in memory, see [`RelayHub::frames`], and to `<log_dir>/conn<N>.log`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The hub's `$Lock` line; the clients' `$Key` is derived from it, so it is fixed.
pub const RELAY_LOCK: &[u8] = b"$Lock EXTENDEDPROTOCOL_relay Pk=relay|$HubName relay|";

/// Direction of a logged command, from the hub's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Received from the client.
    In,
    /// Sent to the client.
    Out,
}

/// One logged command (without its trailing `|`).
#[derive(Clone, Debug)]
pub struct Frame {
    pub conn: usize,
    pub dir: Dir,
    pub raw: Vec<u8>,
}

struct Conn {
    nick: Option<String>,
    greeted: bool,
    myinfo: Option<Vec<u8>>,
    ip: String,
    out: Arc<Mutex<TcpStream>>,
    log: Arc<Mutex<BufWriter<File>>>,
}

#[derive(Default)]
struct State {
    conns: HashMap<usize, Conn>,
    frames: Vec<Frame>,
    nicks: HashMap<usize, String>,
    raw_in: HashMap<usize, Vec<u8>>,
    passwords: HashMap<String, String>,
}

/// The running fixture hub; stops (closing every connection) on drop.
pub struct RelayHub {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    log_dir: PathBuf,
}

impl RelayHub {
    /// Starts the hub on 127.0.0.1 (free port), logging into `log_dir` (created).
    pub fn start(log_dir: &Path) -> RelayHub {
        Self::start_with_passwords(log_dir, &[])
    }

    /// Like [`RelayHub::start`], but the given `(nick, password)` pairs are registered:
    /// those nicks get `$GetPass|` and must answer `$MyPass <password>|`.
    pub fn start_with_passwords(log_dir: &Path, passwords: &[(&str, &str)]) -> RelayHub {
        std::fs::create_dir_all(log_dir).expect("relay log dir");
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().passwords = passwords.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, dir) = (state.clone(), stop.clone(), log_dir.to_path_buf());
        thread::spawn(move || {
            for (id, stream) in listener.incoming().enumerate() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (st, dir) = (st.clone(), dir.clone());
                thread::spawn(move || serve(id, stream, st, &dir));
            }
        });
        RelayHub { port, state, stop, log_dir: log_dir.to_path_buf() }
    }

    /// The hub's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the form the client configs take.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `dchub://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("dchub://127.0.0.1:{}", self.port)
    }

    /// Directory holding `conn<N>.log` (one per connection: `< cmd|` received, `> cmd|` sent).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Nicks that have sent a `$MyINFO` and are still connected.
    pub fn users(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<String> =
            st.conns.values().filter(|c| c.myinfo.is_some()).filter_map(|c| c.nick.clone()).collect();
        v.sort();
        v
    }

    /// Every command logged for the connection(s) that validated `nick`, in order.
    pub fn frames(&self, nick: &str, dir: Dir) -> Vec<Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.frames
            .iter()
            .filter(|f| f.dir == dir && st.nicks.get(&f.conn).map(|n| n == nick).unwrap_or(false))
            .map(|f| f.raw.clone())
            .collect()
    }

    /// The exact byte stream received from the connection(s) of `nick` (keep-alive `|`s
    /// included), e.g. to cut golden frames from.
    pub fn raw_in(&self, nick: &str) -> Vec<u8> {
        let st = self.state.lock().unwrap();
        let mut ids: Vec<usize> = st.nicks.iter().filter(|(_, n)| n.as_str() == nick).map(|(id, _)| *id).collect();
        ids.sort();
        ids.iter().filter_map(|id| st.raw_in.get(id)).flatten().copied().collect()
    }

    /// Received commands of `nick` that start with `prefix` (e.g. `b"$Search "`).
    pub fn received(&self, nick: &str, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.frames(nick, Dir::In).into_iter().filter(|f| f.starts_with(prefix)).collect()
    }

    /// Sends raw bytes (one or more complete `…|` commands) to `nick` as if from the hub.
    pub fn inject(&self, nick: &str, raw: &[u8]) -> bool {
        let st = self.state.lock().unwrap();
        match st.conns.iter().find(|(_, c)| c.nick.as_deref() == Some(nick) && c.greeted) {
            Some((&id, _)) => {
                send_locked(&st, id, raw);
                true
            }
            None => false,
        }
    }
}

impl Drop for RelayHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake accept()
        let st = self.state.lock().unwrap();
        for c in st.conns.values() {
            let _ = c.out.lock().unwrap().shutdown(Shutdown::Both);
        }
    }
}

fn log_line(log: &Mutex<BufWriter<File>>, mark: &[u8], raw: &[u8]) {
    let mut l = log.lock().unwrap();
    let _ = l.write_all(mark);
    let _ = l.write_all(raw);
    let _ = l.write_all(b"|\n");
    let _ = l.flush();
}

/// Writes `raw` (complete commands) to connection `id`, logging each command.
fn send_locked(st: &State, id: usize, raw: &[u8]) {
    let Some(c) = st.conns.get(&id) else { return };
    let _ = c.out.lock().unwrap().write_all(raw);
    for cmd in raw.split(|&b| b == b'|').filter(|c| !c.is_empty()) {
        log_line(&c.log, b"> ", cmd);
    }
}

fn send(state: &Mutex<State>, id: usize, raw: &[u8]) {
    let mut st = state.lock().unwrap();
    for cmd in raw.split(|&b| b == b'|').filter(|c| !c.is_empty()) {
        st.frames.push(Frame { conn: id, dir: Dir::Out, raw: cmd.to_vec() });
    }
    send_locked(&st, id, raw);
}

/// Sends to every greeted connection except `except`.
fn broadcast(state: &Mutex<State>, except: Option<usize>, raw: &[u8]) {
    let ids: Vec<usize> = {
        let st = state.lock().unwrap();
        st.conns.iter().filter(|(id, c)| c.greeted && Some(**id) != except).map(|(id, _)| *id).collect()
    };
    for id in ids {
        send(state, id, raw);
    }
}

fn id_of(state: &Mutex<State>, nick: &[u8]) -> Option<usize> {
    let nick = String::from_utf8_lossy(nick);
    let st = state.lock().unwrap();
    st.conns.iter().find(|(_, c)| c.greeted && c.nick.as_deref() == Some(&*nick)).map(|(id, _)| *id)
}

fn with_pipe(cmd: &[u8]) -> Vec<u8> {
    let mut v = cmd.to_vec();
    v.push(b'|');
    v
}

fn serve(id: usize, stream: TcpStream, state: Arc<Mutex<State>>, dir: &Path) {
    let log =
        Arc::new(Mutex::new(BufWriter::new(File::create(dir.join(format!("conn{id}.log"))).expect("relay conn log"))));
    let ip = stream.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let out = Arc::new(Mutex::new(stream.try_clone().expect("clone")));
    state
        .lock()
        .unwrap()
        .conns
        .insert(id, Conn { nick: None, greeted: false, myinfo: None, ip, out, log: log.clone() });
    send(&state, id, RELAY_LOCK);
    let mut reader = stream;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    'conn: loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        state.lock().unwrap().raw_in.entry(id).or_default().extend_from_slice(&chunk[..n]);
        while let Some(pos) = buf.iter().position(|&b| b == b'|') {
            let cmd: Vec<u8> = buf.drain(..=pos).take(pos).collect();
            if cmd.is_empty() {
                continue; // keep-alive
            }
            {
                let mut st = state.lock().unwrap();
                st.frames.push(Frame { conn: id, dir: Dir::In, raw: cmd.clone() });
            }
            log_line(&log, b"< ", &cmd);
            if !handle(id, &cmd, &state) {
                break 'conn;
            }
        }
    }
    let gone = state.lock().unwrap().conns.remove(&id);
    if let Some(c) = gone {
        let _ = c.out.lock().unwrap().shutdown(Shutdown::Both);
        if let (true, Some(nick)) = (c.greeted, c.nick) {
            broadcast(&state, None, format!("$Quit {nick}|").as_bytes());
        }
    }
}

/// Handles one command; false = close the connection.
fn handle(id: usize, cmd: &[u8], state: &Mutex<State>) -> bool {
    let (word, rest) = match cmd.iter().position(|&b| b == b' ') {
        Some(p) => (&cmd[..p], &cmd[p + 1..]),
        None => (cmd, &b""[..]),
    };
    let arg = |i: usize| rest.split(|&b| b == b' ').nth(i).unwrap_or(b"").to_vec();
    match word {
        b"$Supports" => send(state, id, b"$Supports NoGetINFO NoHello UserIP2|"),
        b"$ValidateNick" => {
            let nick = String::from_utf8_lossy(rest).into_owned();
            let (taken, pass) = {
                let mut st = state.lock().unwrap();
                let taken = st.conns.values().any(|c| c.nick.as_deref() == Some(&*nick));
                if !taken {
                    st.conns.get_mut(&id).unwrap().nick = Some(nick.clone());
                    st.nicks.insert(id, nick.clone());
                }
                (taken, st.passwords.contains_key(&nick))
            };
            if taken {
                send(state, id, format!("$ValidateDenide {nick}|").as_bytes());
                return false;
            }
            if pass {
                send(state, id, b"$GetPass|");
            } else {
                greet(id, state);
            }
        }
        b"$MyPass" => {
            let ok = {
                let st = state.lock().unwrap();
                let nick = st.conns[&id].nick.clone().unwrap_or_default();
                st.passwords.get(&nick).map(|p| p.as_bytes() == rest).unwrap_or(false)
            };
            if !ok {
                send(state, id, b"$BadPass|");
                return false;
            }
            greet(id, state);
        }
        b"$MyINFO" => {
            let first = {
                let mut st = state.lock().unwrap();
                let c = st.conns.get_mut(&id).unwrap();
                if !c.greeted {
                    return true;
                }
                c.myinfo.replace(cmd.to_vec()).is_none()
            };
            if first {
                let others: Vec<Vec<u8>> = {
                    let st = state.lock().unwrap();
                    st.conns
                        .iter()
                        .filter(|(cid, _)| **cid != id)
                        .filter_map(|(_, c)| c.myinfo.as_ref().map(|m| with_pipe(m)))
                        .collect()
                };
                send(state, id, &others.concat());
            }
            broadcast(state, None, &with_pipe(cmd));
        }
        b"$GetNickList" => {
            let mut all = Vec::new();
            let mut ips = b"$UserIP ".to_vec();
            {
                let st = state.lock().unwrap();
                for c in st.conns.values().filter(|c| c.myinfo.is_some()) {
                    all.extend_from_slice(&with_pipe(c.myinfo.as_ref().unwrap()));
                    ips.extend_from_slice(format!("{} {}$$", c.nick.as_deref().unwrap_or(""), c.ip).as_bytes());
                }
            }
            all.extend_from_slice(b"$OpList |");
            if ips.len() > 8 {
                ips.push(b'|');
                all.extend_from_slice(&ips);
            }
            send(state, id, &all);
        }
        b"$ConnectToMe" | b"$To:" => {
            if let Some(t) = id_of(state, &arg(0)) {
                send(state, t, &with_pipe(cmd));
            }
        }
        b"$RevConnectToMe" => {
            if let Some(t) = id_of(state, &arg(1)) {
                send(state, t, &with_pipe(cmd));
            }
        }
        b"$Search" => broadcast(state, Some(id), &with_pipe(cmd)),
        b"$SR" => {
            if let Some(p) = cmd.iter().rposition(|&b| b == 0x05) {
                if let Some(t) = id_of(state, &cmd[p + 1..]) {
                    send(state, t, &with_pipe(&cmd[..p]));
                }
            }
        }
        _ if cmd.first() == Some(&b'<') => broadcast(state, None, &with_pipe(cmd)),
        _ => {} // $Key, $Version, $GetINFO, … : logged only
    }
    true
}

fn greet(id: usize, state: &Mutex<State>) {
    let nick = {
        let mut st = state.lock().unwrap();
        let c = st.conns.get_mut(&id).unwrap();
        c.greeted = true;
        c.nick.clone().unwrap_or_default()
    };
    send(state, id, format!("$Hello {nick}|").as_bytes());
}
