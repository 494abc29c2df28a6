//! TEST FIXTURE — a minimal mock Soulseek server, NOT omnipeer's server.
//!
//! It exists only to validate the real-client harness (and to capture what the real
//! clients send) before omnipeer's own server exists. std only, one thread per connection,
//! written from the byte layouts in docs/protocols/soulseek.md#login, #server-codes and #search-relay:
//!
//! - Login (first login registers the account; wrong password → `INVALIDPASS`; a second
//!   login of the same user → `Relogged(41)` to the old session), success reply exactly
//!   `bool 1, str greet, ip, str md5hex(password), bool 0`, then RoomList(64),
//!   ParentMinSpeed(83)=1, ParentSpeedRatio(84)=50, WishlistInterval(104)=720,
//!   PrivilegedUsers(69), ExcludedSearchPhrases(160) and queued private messages.
//! - SetWaitPort(2) (port with or without obfuscation fields), GetPeerAddress(3) reply with
//!   `u32 obf_type, u16 obf_port`, WatchUser(5)/UnwatchUser(6), GetUserStatus(7),
//!   GetUserStats(36), SetStatus(28), SharedFoldersFiles(35), CheckPrivileges(92) → 0,
//!   SendUploadSpeed(121), EnableRoomInvitations(141) echo, RoomList(64).
//! - ConnectToPeer(18) relayed to the target with `privileged, obf_type, obf_port`;
//!   CantConnectToPeer(1001) forwarded to the requester.
//! - FileSearch(26) / WishlistSearch(103) relayed to every other user as FileSearch(26)
//!   S→C (or as EmbeddedMessage(93)+DistribSearch with [`MockConfig::embedded_search`]);
//!   UserSearch(42) to one user; RoomSearch(120) to room members.
//! - MessageUser(22) → MessageUser S→C `id, ts, from, msg, new`; kept until MessageAcked(23).
//! - JoinRoom(14) / LeaveRoom(15) / SayChatroom(13) with UserJoinedRoom(16) / UserLeftRoom(17).
//! - Every frame in and out is logged ([`MockServer::frames`], [`MockServer::write_log`]).
//!
//! With [`MockConfig::tap_peers`] the server advertises, for each user, a logging TCP proxy
//! ("tap") in front of the user's real listen port in GetPeerAddress and ConnectToPeer, so
//! every peer connection (P and F, direct or pierced) passes through it and its bytes are
//! recorded ([`MockServer::tap_conns`]) — that is how the golden peer frames are captured.

use super::wire::{frame, frame8, md5_hex, server_code_name, R, W};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest frame the fixture accepts from a client.
const MAX_FRAME: usize = 4 << 20;
/// Bytes recorded per direction of a tapped peer connection.
const TAP_CAP: usize = 1 << 20;

/// Options of the fixture server.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Greeting in the Login reply.
    pub greeting: String,
    /// Put a logging proxy in front of every user's listen port (see the module doc).
    pub tap_peers: bool,
    /// Relay global searches as EmbeddedMessage(93)+DistribSearch instead of FileSearch(26).
    pub embedded_search: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig { greeting: "omnipeer test-fixture mock server".into(), tap_peers: false, embedded_search: false }
    }
}

/// Direction of a logged server frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → server.
    In,
    /// Server → client.
    Out,
}

/// One logged server frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: usize,
    /// Time since the server started.
    pub at: Duration,
    /// Connection number (1, 2, …).
    pub conn: u64,
    /// User of the connection ("" before login).
    pub user: String,
    pub dir: Dir,
    pub code: u32,
    /// The whole frame, header included.
    pub bytes: Vec<u8>,
}

impl Frame {
    /// The body after the `u32 len, u32 code` header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[8.min(self.bytes.len())..]
    }
}

/// One peer connection seen by the tap (snapshot).
#[derive(Clone, Debug, Default)]
pub struct TapConn {
    pub id: u64,
    /// The user whose listen port was dialled (accepting side).
    pub owner: String,
    /// The connecting user: from PeerInit, or for PierceFireWall the target of the
    /// ConnectToPeer that carried the token. None if not known (yet).
    pub initiator: Option<String>,
    /// Connection type `P`, `F` or `D` (None if not known yet).
    pub kind: Option<String>,
    /// True if the first frame was PierceFireWall (indirect connection).
    pub pierced: bool,
    pub token: Option<u32>,
    /// Bytes initiator → owner (starts with the peer-init frame), capped at 1 MiB.
    pub to_owner: Vec<u8>,
    /// Bytes owner → initiator, capped at 1 MiB.
    pub from_owner: Vec<u8>,
    pub to_owner_total: u64,
    pub from_owner_total: u64,
    pub closed: bool,
}

impl TapConn {
    /// The messages the initiator sent: the peer-init frame, then (for `P`) each
    /// `u32 len, u32 code` frame, or (for `F`) the raw 4-byte token / 8-byte offset /
    /// data chunks as they are defined by the protocol (see [`split_file_stream`]).
    pub fn initiator_frames(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let Some(n) = peek_len(&self.to_owner) else {
            return out;
        };
        let init_end = (4 + n).min(self.to_owner.len());
        out.push(self.to_owner[..init_end].to_vec());
        let rest = &self.to_owner[init_end..];
        match self.kind.as_deref() {
            Some("F") => out.extend(split_file_stream(rest, self.initiator_uploads())),
            _ => out.extend(split_frames(rest)),
        }
        out
    }

    /// The messages the owner sent (no peer-init frame on this side).
    pub fn owner_frames(&self) -> Vec<Vec<u8>> {
        match self.kind.as_deref() {
            Some("F") => split_file_stream(&self.from_owner, !self.initiator_uploads()),
            _ => split_frames(&self.from_owner),
        }
    }

    /// For `F`: true when the initiator is the uploader. The uploader opens F itself with
    /// PeerInit(`F`), or the downloader opens it with PierceFireWall answering the
    /// uploader's ConnectToPeer(`F`) (docs/protocols/soulseek.md#transfer); either way the uploader sends the token.
    pub fn initiator_uploads(&self) -> bool {
        !self.pierced
    }
}

fn peek_len(b: &[u8]) -> Option<usize> {
    if b.len() < 4 {
        return None;
    }
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Splits a stream of `u32 len` frames (a trailing partial frame is returned as is).
pub fn split_frames(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = match peek_len(b) {
            Some(n) => (4 + n).min(b.len()),
            None => b.len(),
        };
        out.push(b[..n].to_vec());
        b = &b[n..];
    }
    out
}

/// Splits one direction of an `F` connection after the peer-init frame: the uploader's
/// side is `u32 token` then file bytes; the downloader's side is `u64 offset`.
pub fn split_file_stream(b: &[u8], uploader: bool) -> Vec<Vec<u8>> {
    let head = if uploader { 4 } else { 8 };
    let mut out = Vec::new();
    if b.is_empty() {
        return out;
    }
    let h = head.min(b.len());
    out.push(b[..h].to_vec());
    if b.len() > h {
        out.push(b[h..].to_vec());
    }
    out
}

struct Sess {
    conn: u64,
    tx: Sender<Vec<u8>>,
    ip: [u8; 4],
    /// Port from SetWaitPort (0 until sent).
    port: u32,
    status: u32,
    avgspeed: u32,
    uploadnum: u32,
    files: u32,
    dirs: u32,
    watching: HashSet<String>,
    stream: TcpStream,
}

struct Pm {
    id: u32,
    ts: u32,
    from: String,
    to: String,
    text: String,
}

struct Tap {
    port: u16,
    real_port: Arc<AtomicU32>,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, String>,
    online: HashMap<String, Sess>,
    rooms: BTreeMap<String, Vec<String>>,
    pms: Vec<Pm>,
    next_pm: u32,
    /// (requester, token) → (target, type) of relayed ConnectToPeer requests.
    pierce: HashMap<(String, u32), (String, String)>,
    taps: HashMap<String, Tap>,
}

struct Inner {
    cfg: MockConfig,
    start: Instant,
    stop: AtomicBool,
    next_conn: AtomicU64,
    st: Mutex<State>,
    log: Mutex<Vec<Frame>>,
    tapped: Mutex<Vec<Arc<Mutex<TapConn>>>>,
    streams: Mutex<Vec<TcpStream>>,
}

/// The fixture server; stops (closing every socket) on drop.
pub struct MockServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl MockServer {
    /// Starts on 127.0.0.1 with an ephemeral port and default options.
    pub fn start() -> MockServer {
        MockServer::start_with(MockConfig::default())
    }

    pub fn start_with(cfg: MockConfig) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock server");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let inner = Arc::new(Inner {
            cfg,
            start: Instant::now(),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            st: Mutex::new(State { next_pm: 1, ..State::default() }),
            log: Mutex::new(Vec::new()),
            tapped: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
        });
        let i2 = inner.clone();
        thread::Builder::new().name("slsk-mock-accept".into()).spawn(move || accept_loop(i2, listener)).unwrap();
        MockServer { addr, inner }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Logged-in users, sorted.
    pub fn online(&self) -> Vec<String> {
        let st = self.inner.st.lock().unwrap();
        let mut v: Vec<String> = st.online.keys().cloned().collect();
        v.sort();
        v
    }

    /// The listen port a user announced with SetWaitPort (None if offline / not sent).
    pub fn wait_port(&self, user: &str) -> Option<u32> {
        let st = self.inner.st.lock().unwrap();
        st.online.get(user).map(|s| s.port).filter(|p| *p != 0)
    }

    /// Every frame in and out so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Frames a user sent to the server, its Login frame included.
    pub fn frames_from(&self, user: &str) -> Vec<Frame> {
        self.frames().into_iter().filter(|f| f.dir == Dir::In && f.user == user).collect()
    }

    /// Frames the server sent to a user.
    pub fn frames_to(&self, user: &str) -> Vec<Frame> {
        self.frames().into_iter().filter(|f| f.dir == Dir::Out && f.user == user).collect()
    }

    /// Waits up to `timeout` for a logged frame matching `pred`.
    pub fn wait_frame(&self, timeout: Duration, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.inner.log.lock().unwrap().iter().find(|f| pred(f)) {
                return Some(f.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Snapshots of the tapped peer connections (empty unless `tap_peers`).
    pub fn tap_conns(&self) -> Vec<TapConn> {
        let list: Vec<Arc<Mutex<TapConn>>> = self.inner.tapped.lock().unwrap().clone();
        let st = self.inner.st.lock().unwrap();
        list.iter()
            .map(|c| {
                let mut t = c.lock().unwrap().clone();
                resolve_tap(&st, &mut t);
                t
            })
            .collect()
    }

    /// Writes the frame log as text: `seconds #conn user C>S|S>C code Name hex` per line.
    pub fn write_log(&self, path: &Path) -> std::io::Result<()> {
        let mut s = String::new();
        for f in self.frames() {
            s.push_str(&format!(
                "{:9.3} #{} {} {} {} {} {}\n",
                f.at.as_secs_f64(),
                f.conn,
                if f.user.is_empty() { "-" } else { &f.user },
                if f.dir == Dir::In { "C>S" } else { "S>C" },
                f.code,
                server_code_name(f.code),
                super::wire::hex(&f.bytes)
            ));
        }
        for t in self.tap_conns() {
            s.push_str(&format!(
                "tap #{} {} -> {} kind={:?} pierced={} to_owner={}B from_owner={}B\n",
                t.id,
                t.initiator.as_deref().unwrap_or("?"),
                t.owner,
                t.kind,
                t.pierced,
                t.to_owner_total,
                t.from_owner_total
            ));
        }
        std::fs::write(path, s)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        for s in self.inner.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    while !inner.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                if let Ok(c) = stream.try_clone() {
                    inner.streams.lock().unwrap().push(c);
                }
                let id = inner.next_conn.fetch_add(1, Ordering::SeqCst);
                let i2 = inner.clone();
                thread::Builder::new()
                    .name(format!("slsk-mock-conn{id}"))
                    .spawn(move || handle_conn(i2, stream, id))
                    .unwrap();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = u32::from_le_bytes(len) as usize;
    if !(4..=MAX_FRAME).contains(&n) {
        return None;
    }
    let mut f = vec![0u8; 4 + n];
    f[..4].copy_from_slice(&len);
    s.read_exact(&mut f[4..]).ok()?;
    Some(f)
}

fn now_secs() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

impl Inner {
    fn log_frame(&self, conn: u64, user: &str, dir: Dir, bytes: &[u8]) {
        let code =
            if bytes.len() >= 8 { u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) } else { u32::MAX };
        let mut log = self.log.lock().unwrap();
        let seq = log.len();
        log.push(Frame {
            seq,
            at: self.start.elapsed(),
            conn,
            user: user.to_string(),
            dir,
            code,
            bytes: bytes.to_vec(),
        });
    }

    /// Queues a frame to an online user (logged as Out). False if the user is offline.
    fn send(&self, st: &State, user: &str, code: u32, body: W) -> bool {
        let Some(s) = st.online.get(user) else {
            return false;
        };
        let f = frame(code, &body.0);
        self.log_frame(s.conn, user, Dir::Out, &f);
        s.tx.send(f).is_ok()
    }

    /// The port to advertise for a user: the tap's, or the real one.
    fn advertised_port(&self, st: &State, user: &str) -> u32 {
        let real = st.online.get(user).map(|s| s.port).unwrap_or(0);
        if real != 0 {
            if let Some(t) = st.taps.get(user) {
                return t.port as u32;
            }
        }
        real
    }

    fn stats_body(s: &Sess, w: W) -> W {
        w.u32(s.avgspeed).u32(s.uploadnum).u32(0).u32(s.files).u32(s.dirs)
    }

    /// GetUserStatus(7) about `user` to everyone watching it or sharing a room with it.
    fn push_status(&self, st: &State, user: &str) {
        let status = st.online.get(user).map(|s| s.status).unwrap_or(0);
        for to in self.interested(st, user) {
            self.send(st, &to, 7, W::new().str(user).u32(status).bool(false));
        }
    }

    /// GetUserStats(36) about `user` to everyone watching it or sharing a room with it.
    fn push_stats(&self, st: &State, user: &str) {
        let Some(s) = st.online.get(user) else { return };
        let body = Self::stats_body(s, W::new().str(user));
        for to in self.interested(st, user) {
            self.send(st, &to, 36, body.clone());
        }
    }

    fn interested(&self, st: &State, user: &str) -> Vec<String> {
        let mut set: HashSet<String> = st
            .online
            .iter()
            .filter(|(n, s)| n.as_str() != user && s.watching.contains(user))
            .map(|(n, _)| n.clone())
            .collect();
        for members in st.rooms.values() {
            if members.iter().any(|m| m == user) {
                set.extend(members.iter().filter(|m| *m != user).cloned());
            }
        }
        let mut v: Vec<String> = set.into_iter().collect();
        v.sort();
        v
    }

    fn leave_room(&self, st: &mut State, room: &str, user: &str) {
        if let Some(m) = st.rooms.get_mut(room) {
            m.retain(|x| x != user);
            let members = m.clone();
            if members.is_empty() {
                st.rooms.remove(room);
            }
            for to in members {
                self.send(st, &to, 17, W::new().str(room).str(user));
            }
        }
    }
}

fn handle_conn(inner: Arc<Inner>, mut stream: TcpStream, conn: u64) {
    let ip = match stream.peer_addr() {
        Ok(SocketAddr::V4(a)) => a.ip().octets(),
        _ => [127, 0, 0, 1],
    };
    let (tx, rx) = channel::<Vec<u8>>();
    if let Ok(mut w) = stream.try_clone() {
        thread::Builder::new()
            .name(format!("slsk-mock-w{conn}"))
            .spawn(move || {
                for f in rx {
                    if w.write_all(&f).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
    }
    let mut user: Option<String> = None;
    while let Some(f) = read_frame(&mut stream) {
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        if f.len() < 8 {
            inner.log_frame(conn, user.as_deref().unwrap_or(""), Dir::In, &f);
            continue;
        }
        let code = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
        let body = &f[8..];
        // A Login frame is logged under the name it carries (so frames_from(user) has it).
        let as_user = match (&user, code) {
            (Some(u), _) => u.clone(),
            (None, 1) => R::new(body).str().unwrap_or_default(),
            (None, _) => String::new(),
        };
        inner.log_frame(conn, &as_user, Dir::In, &f);
        match &user {
            None => {
                if code == 1 {
                    user = login(&inner, &stream, conn, ip, &tx, body);
                }
                // anything else before login is ignored
            }
            Some(u) => dispatch(&inner, u, code, body),
        }
    }
    // Disconnected.
    if let Some(u) = user {
        let mut st = inner.st.lock().unwrap();
        if st.online.get(&u).map(|s| s.conn) == Some(conn) {
            let rooms: Vec<String> = st.rooms.iter().filter(|(_, m)| m.contains(&u)).map(|(r, _)| r.clone()).collect();
            // status 0 to the interested before the session disappears
            let watchers = inner.interested(&st, &u);
            st.online.remove(&u);
            for to in watchers {
                inner.send(&st, &to, 7, W::new().str(&u).u32(0).bool(false));
            }
            for r in rooms {
                inner.leave_room(&mut st, &r, &u);
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn login_error(name: &str) -> Option<(&'static str, &'static str)> {
    if name.is_empty() {
        return Some(("INVALIDUSERNAME", "Nick empty."));
    }
    if name.len() > 30 {
        return Some(("INVALIDUSERNAME", "Nick too long."));
    }
    if !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Some(("INVALIDUSERNAME", "Invalid characters in nick."));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Some(("INVALIDUSERNAME", "No leading and trailing spaces allowed in nick."));
    }
    None
}

fn login(
    inner: &Arc<Inner>,
    stream: &TcpStream,
    conn: u64,
    ip: [u8; 4],
    tx: &Sender<Vec<u8>>,
    body: &[u8],
) -> Option<String> {
    let mut r = R::new(body);
    let name = r.str().unwrap_or_default();
    let pass = r.str().unwrap_or_default();
    let _major = r.u32();
    let _md5 = r.str();
    let _minor = r.u32();

    let reply = |inner: &Inner, user: &str, w: W| {
        let f = frame(1, &w.0);
        inner.log_frame(conn, user, Dir::Out, &f);
        let _ = tx.send(f);
    };
    let fail = |reason: &str, detail: Option<&str>| {
        let mut w = W::new().bool(false).str(reason);
        if let Some(d) = detail {
            w = w.str(d);
        }
        reply(inner, "", w);
        None
    };
    if let Some((reason, detail)) = login_error(&name) {
        return fail(reason, Some(detail));
    }
    if pass.is_empty() {
        return fail("EMPTYPASSWORD", None);
    }

    let mut st = inner.st.lock().unwrap();
    match st.accounts.get(&name).cloned() {
        Some(p) if p != pass => {
            drop(st);
            return fail("INVALIDPASS", None);
        }
        Some(_) => {}
        None => {
            st.accounts.insert(name.clone(), pass.clone());
        }
    }
    // Same user logged in elsewhere → Relogged(41) and close the old session.
    if let Some(old) = st.online.remove(&name) {
        let f = frame(41, &[]);
        inner.log_frame(old.conn, &name, Dir::Out, &f);
        let _ = old.tx.send(f);
        let s = old.stream;
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            let _ = s.shutdown(Shutdown::Both);
        });
    }
    // The Login reply must be the very first frame after Login (aioslsk insists).
    reply(inner, &name, W::new().bool(true).str(&inner.cfg.greeting).ip(ip).str(&md5_hex(pass.as_bytes())).bool(false));
    st.online.insert(
        name.clone(),
        Sess {
            conn,
            tx: tx.clone(),
            ip,
            port: 0,
            status: 2,
            avgspeed: 0,
            uploadnum: 0,
            files: 0,
            dirs: 0,
            watching: HashSet::new(),
            stream: stream.try_clone().expect("clone"),
        },
    );
    let st = &mut *st;
    inner.send(st, &name, 64, room_list(st));
    inner.send(st, &name, 83, W::new().u32(1));
    inner.send(st, &name, 84, W::new().u32(50));
    inner.send(st, &name, 104, W::new().u32(720));
    inner.send(st, &name, 69, W::new().u32(0));
    inner.send(st, &name, 160, W::new().u32(0));
    // Queued private messages (new = 0); they stay until acked.
    for pm in st.pms.iter().filter(|p| p.to == name) {
        inner.send(st, &name, 22, W::new().u32(pm.id).u32(pm.ts).str(&pm.from).str(&pm.text).bool(false));
    }
    inner.push_status(st, &name);
    Some(name)
}

fn room_list(st: &State) -> W {
    let mut w = W::new().u32(st.rooms.len() as u32);
    for r in st.rooms.keys() {
        w = w.str(r);
    }
    w = w.u32(st.rooms.len() as u32);
    for m in st.rooms.values() {
        w = w.u32(m.len() as u32);
    }
    // owned private, their counts, private, their counts, operated private
    w.u32(0).u32(0).u32(0).u32(0).u32(0)
}

fn dispatch(inner: &Arc<Inner>, me: &str, code: u32, body: &[u8]) {
    let mut r = R::new(body);
    let mut guard = inner.st.lock().unwrap();
    let st = &mut *guard;
    if !st.online.contains_key(me) {
        return; // relogged elsewhere
    }
    match code {
        // SetWaitPort: u32 port [, u32 obf_type, u32 obf_port]
        2 => {
            let port = r.u32().unwrap_or(0);
            if let Some(s) = st.online.get_mut(me) {
                s.port = port;
            }
            if inner.cfg.tap_peers && port != 0 {
                match st.taps.get(me) {
                    Some(t) => t.real_port.store(port, Ordering::SeqCst),
                    None => {
                        if let Some(t) = start_tap(inner, me, port) {
                            st.taps.insert(me.to_string(), t);
                        }
                    }
                }
            }
        }
        // GetPeerAddress: str user → str user, ip, u32 port, u32 obf_type, u16 obf_port
        3 => {
            let Some(u) = r.str() else { return };
            let (ip, port) = match st.online.get(&u) {
                Some(s) => (s.ip, inner.advertised_port(st, &u)),
                None => ([0, 0, 0, 0], 0),
            };
            inner.send(st, me, 3, W::new().str(&u).ip(ip).u32(port).u32(0).u16(0));
        }
        // WatchUser
        5 => {
            let Some(u) = r.str() else { return };
            if let Some(s) = st.online.get_mut(me) {
                s.watching.insert(u.clone());
            }
            let w = match st.online.get(&u) {
                Some(s) => {
                    let w = Inner::stats_body(s, W::new().str(&u).bool(true).u32(s.status));
                    w.str("")
                }
                None if st.accounts.contains_key(&u) => {
                    W::new().str(&u).bool(true).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0)
                }
                None => W::new().str(&u).bool(false),
            };
            inner.send(st, me, 5, w);
        }
        // UnwatchUser
        6 => {
            let Some(u) = r.str() else { return };
            if let Some(s) = st.online.get_mut(me) {
                s.watching.remove(&u);
            }
        }
        // GetUserStatus → str user, u32 status, bool privileged
        7 => {
            let Some(u) = r.str() else { return };
            let status = st.online.get(&u).map(|s| s.status).unwrap_or(0);
            inner.send(st, me, 7, W::new().str(&u).u32(status).bool(false));
        }
        // SayChatroom: str room, str msg → str room, str user, str msg to every member
        13 => {
            let (Some(room), Some(msg)) = (r.str(), r.str()) else {
                return;
            };
            let Some(members) = st.rooms.get(&room).cloned() else {
                return;
            };
            if !members.iter().any(|m| m == me) {
                return;
            }
            for to in members {
                inner.send(st, &to, 13, W::new().str(&room).str(me).str(&msg));
            }
        }
        // JoinRoom: str room [, u32 private]
        14 => {
            let Some(room) = r.str() else { return };
            if room.is_empty() || room.len() > 24 || !room.is_ascii() || room.trim() != room || room.contains("  ") {
                inner.send(st, me, 1003, W::new().str(&room));
                return;
            }
            let members = st.rooms.entry(room.clone()).or_default();
            if !members.iter().any(|m| m == me) {
                members.push(me.to_string());
            }
            let members = members.clone();
            let mut w = W::new().str(&room).u32(members.len() as u32);
            for m in &members {
                w = w.str(m);
            }
            w = w.u32(members.len() as u32);
            for m in &members {
                w = w.u32(st.online.get(m).map(|s| s.status).unwrap_or(0));
            }
            w = w.u32(members.len() as u32);
            for m in &members {
                w = match st.online.get(m) {
                    Some(s) => Inner::stats_body(s, w),
                    None => w.u32(0).u32(0).u32(0).u32(0).u32(0),
                };
            }
            w = w.u32(members.len() as u32);
            for _ in &members {
                w = w.u32(0);
            }
            w = w.u32(members.len() as u32);
            for _ in &members {
                w = w.str("");
            }
            inner.send(st, me, 14, w);
            let s = st.online.get(me).unwrap();
            let joined = Inner::stats_body(s, W::new().str(&room).str(me).u32(s.status)).u32(0).str("");
            for m in members.iter().filter(|m| *m != me) {
                inner.send(st, m, 16, joined.clone());
            }
        }
        // LeaveRoom
        15 => {
            let Some(room) = r.str() else { return };
            inner.leave_room(st, &room, me);
            inner.send(st, me, 15, W::new().str(&room));
        }
        // ConnectToPeer: u32 token, str user, str type
        18 => {
            let (Some(token), Some(target), Some(kind)) = (r.u32(), r.str(), r.str()) else {
                return;
            };
            if st.online.contains_key(&target) {
                let ip = st.online.get(me).map(|s| s.ip).unwrap_or([127, 0, 0, 1]);
                let port = inner.advertised_port(st, me);
                st.pierce.insert((me.to_string(), token), (target.clone(), kind.clone()));
                inner.send(
                    st,
                    &target,
                    18,
                    W::new().str(me).str(&kind).ip(ip).u32(port).u32(token).bool(false).u32(0).u32(0),
                );
            } else {
                inner.send(st, me, 1001, W::new().u32(token));
            }
        }
        // MessageUser: str user, str msg
        22 => {
            let (Some(to), Some(text)) = (r.str(), r.str()) else {
                return;
            };
            let id = st.next_pm;
            st.next_pm += 1;
            let ts = now_secs();
            inner.send(st, &to, 22, W::new().u32(id).u32(ts).str(me).str(&text).bool(true));
            st.pms.push(Pm { id, ts, from: me.to_string(), to, text });
        }
        // MessageAcked: u32 id
        23 => {
            let Some(id) = r.u32() else { return };
            st.pms.retain(|p| !(p.id == id && p.to == me));
        }
        // FileSearch / WishlistSearch: u32 token, str query → everyone else
        26 | 103 => {
            let (Some(token), Some(query)) = (r.u32(), r.str()) else {
                return;
            };
            let mut others: Vec<String> = st.online.keys().filter(|u| *u != me).cloned().collect();
            others.sort();
            for to in others {
                relay_search(inner, st, &to, me, token, &query);
            }
        }
        // SetStatus: i32 status
        28 => {
            let Some(status) = r.u32() else { return };
            if let Some(s) = st.online.get_mut(me) {
                s.status = status;
            }
            inner.push_status(st, me);
        }
        // SharedFoldersFiles: u32 dirs, u32 files
        35 => {
            let (Some(dirs), Some(files)) = (r.u32(), r.u32()) else {
                return;
            };
            if let Some(s) = st.online.get_mut(me) {
                s.dirs = dirs;
                s.files = files;
            }
            inner.push_stats(st, me);
        }
        // GetUserStats
        36 => {
            let Some(u) = r.str() else { return };
            let w = match st.online.get(&u) {
                Some(s) => Inner::stats_body(s, W::new().str(&u)),
                None => W::new().str(&u).u32(0).u32(0).u32(0).u32(0).u32(0),
            };
            inner.send(st, me, 36, w);
        }
        // UserSearch: str user, u32 token, str query
        42 => {
            let (Some(to), Some(token), Some(query)) = (r.str(), r.u32(), r.str()) else {
                return;
            };
            inner.send(st, &to, 26, W::new().str(me).u32(token).str(&query));
        }
        // RoomList
        64 => {
            let w = room_list(st);
            inner.send(st, me, 64, w);
        }
        // CheckPrivileges → 92 u32 seconds left
        92 => {
            inner.send(st, me, 92, W::new().u32(0));
        }
        // RoomSearch: str room, u32 token, str query
        120 => {
            let (Some(room), Some(token), Some(query)) = (r.str(), r.u32(), r.str()) else {
                return;
            };
            let members = st.rooms.get(&room).cloned().unwrap_or_default();
            for to in members.iter().filter(|m| *m != me) {
                inner.send(st, to, 26, W::new().str(me).u32(token).str(&query));
            }
        }
        // SendUploadSpeed: u32 speed
        121 => {
            let Some(speed) = r.u32() else { return };
            if let Some(s) = st.online.get_mut(me) {
                let n = s.uploadnum as u64;
                s.avgspeed = ((s.avgspeed as u64 * n + speed as u64) / (n + 1)) as u32;
                s.uploadnum += 1;
            }
        }
        // EnableRoomInvitations: echo
        141 => {
            let v = r.bool().unwrap_or(false);
            inner.send(st, me, 141, W::new().bool(v));
        }
        // CantConnectToPeer: u32 token, str user → u32 token to that user
        1001 => {
            let (Some(token), Some(to)) = (r.u32(), r.str()) else {
                return;
            };
            inner.send(st, &to, 1001, W::new().u32(token));
        }
        // ServerPing, distributed-network bookkeeping (71, 73, 100, 126, 127, 129) and
        // everything else: accepted and ignored.
        _ => {}
    }
}

fn relay_search(inner: &Inner, st: &State, to: &str, searcher: &str, token: u32, query: &str) {
    if inner.cfg.embedded_search {
        // EmbeddedMessage(93): u8 3 + DistribSearch body (u32 49, str user, u32 token, str q)
        let body = W::new().u8(3).u32(49).str(searcher).u32(token).str(query);
        inner.send(st, to, 93, body);
    } else {
        inner.send(st, to, 26, W::new().str(searcher).u32(token).str(query));
    }
}

// ---------------------------------------------------------------------------------------
// Tap: a logging proxy in front of a user's listen port.

fn start_tap(inner: &Arc<Inner>, owner: &str, real_port: u32) -> Option<Tap> {
    let l = TcpListener::bind("127.0.0.1:0").ok()?;
    let port = l.local_addr().ok()?.port();
    l.set_nonblocking(true).ok()?;
    let real = Arc::new(AtomicU32::new(real_port));
    let (i2, r2, owner2) = (inner.clone(), real.clone(), owner.to_string());
    thread::Builder::new()
        .name(format!("slsk-tap-{owner}"))
        .spawn(move || {
            while !i2.stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let port = r2.load(Ordering::SeqCst) as u16;
                        let (i3, o3) = (i2.clone(), owner2.clone());
                        thread::spawn(move || tap_relay(i3, s, o3, port));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        })
        .ok()?;
    Some(Tap { port, real_port: real })
}

fn tap_relay(inner: Arc<Inner>, client: TcpStream, owner: String, port: u16) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let Ok(server) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = {
        let mut l = inner.tapped.lock().unwrap();
        let id = l.len() as u64 + 1;
        l.push(Arc::new(Mutex::new(TapConn { id, owner: owner.clone(), ..TapConn::default() })));
        id
    };
    let rec = inner.tapped.lock().unwrap()[(id - 1) as usize].clone();
    {
        let mut s = inner.streams.lock().unwrap();
        for x in [&client, &server] {
            if let Ok(c) = x.try_clone() {
                s.push(c);
            }
        }
    }
    let pump = |mut from: TcpStream, mut to: TcpStream, rec: Arc<Mutex<TapConn>>, up: bool| {
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                {
                    let mut g = rec.lock().unwrap();
                    let t = &mut *g;
                    let (v, total) = if up {
                        (&mut t.to_owner, &mut t.to_owner_total)
                    } else {
                        (&mut t.from_owner, &mut t.from_owner_total)
                    };
                    *total += n as u64;
                    let room = TAP_CAP.saturating_sub(v.len()).min(n);
                    v.extend_from_slice(&buf[..room]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
        })
    };
    let a = pump(client.try_clone().unwrap(), server.try_clone().unwrap(), rec.clone(), true);
    let b = pump(server, client, rec.clone(), false);
    let _ = a.join();
    let _ = b.join();
    rec.lock().unwrap().closed = true;
}

/// Fills in initiator / kind / token from the first peer-init frame.
fn resolve_tap(st: &State, t: &mut TapConn) {
    let Some(n) = peek_len(&t.to_owner) else {
        return;
    };
    if t.to_owner.len() < 4 + n || n < 1 {
        return;
    }
    let f = &t.to_owner[4..4 + n];
    let mut r = R::new(&f[1..]);
    match f[0] {
        1 => {
            t.initiator = r.str();
            t.kind = r.str();
            t.token = r.u32();
        }
        0 => {
            t.pierced = true;
            t.token = r.u32();
            if let Some(tok) = t.token {
                if let Some((target, kind)) = st.pierce.get(&(t.owner.clone(), tok)) {
                    t.initiator = Some(target.clone());
                    t.kind = Some(kind.clone());
                }
            }
        }
        _ => {}
    }
}

/// A peer-init PeerInit frame (for tests that play a peer).
pub fn peer_init(user: &str, kind: &str, token: u32) -> Vec<u8> {
    frame8(1, &W::new().str(user).str(kind).u32(token).0)
}
