//! The client's part in the distributed network (`docs/protocols/soulseek.md`, section
//! `#distributed-client`): a parent found among the server's PossibleParents, children
//! accepted up to [`super::SessionConfig::max_children`], searches passed down, and the
//! server told where we stand (HaveNoParent, BranchLevel, BranchRoot, AcceptChildren).
//!
//! As Nicotine+ and aioslsk do: at login and whenever we lose our parent we report
//! HaveNoParent(1), BranchRoot(us), BranchLevel(0), AcceptChildren(0). On PossibleParents
//! (while parentless) we open a `D` connection to each candidate (direct, then through the
//! server's ConnectToPeer with type `D`, like `P` connections); the first candidate to tell
//! us both its branch level and root (level 0 means it is the root itself), or to send a
//! search, becomes our parent and the other candidates are dropped. We then report
//! HaveNoParent(0) with its level + 1 and its root, and accept children. Searches from the
//! parent (DistribSearch, or one embedded in a distributed EmbeddedMessage), and those the
//! server embeds for us when it makes us a branch root (server EmbeddedMessage), are
//! answered like FileSearch and passed to every child unchanged. A `D` connection from
//! another user is a would-be child: taken while we have a parent (or are a root fed by
//! the server) and fewer than the limit, told our level and root; refused otherwise.

use super::{lc, Attempt, ClientSession, ConnId, ConnState, Kind, Output, Purpose, SessionEvent, PEER_CONNECT_WAIT};
use super::{DIRECT_CONNECT_WAIT, PEER_FRAME_TIMEOUT};
use crate::distributed::DistributedMessage;
use crate::framing::{frame_u8, FrameKind, FrameReader};
use crate::server::{PossibleParent, ServerRequest};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::time::Instant;

/// Candidates taken from one PossibleParents (the real server sends up to 10).
pub const MAX_PARENT_CANDIDATES: usize = 10;
/// Default for [`super::SessionConfig::max_children`]: Nicotine+'s ceiling.
pub const DEFAULT_MAX_CHILDREN: usize = 10;

/// The role of a `D` connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// One of the server's candidates, not (yet) our parent.
    Candidate,
    /// Our parent.
    Parent,
    /// One of our children.
    Child,
}

#[derive(Debug, Default)]
pub(super) struct Candidate {
    user: String,
    conn: Option<ConnId>,
    level: Option<u32>,
    root: Option<String>,
}

/// Where we stand in the tree.
#[derive(Debug, Default)]
pub(super) struct Distrib {
    /// (user, connection) of our parent.
    parent: Option<(String, ConnId)>,
    level: u32,
    root: String,
    /// The server sends us searches embedded: we are one of its branch roots.
    server_parent: bool,
    /// Lower-case user → candidate (at most [`MAX_PARENT_CANDIDATES`]).
    candidates: HashMap<String, Candidate>,
    /// Lower-case user → connection (at most `max_children`).
    children: BTreeMap<String, ConnId>,
    /// The last AcceptChildren told to the server.
    accepting: bool,
}

/// Our place in the distributed network, for the driver's status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedStatus {
    /// Our parent, if any.
    pub parent: Option<String>,
    /// Our branch level (0: root or no parent).
    pub level: u32,
    /// Our branch root.
    pub root: String,
    /// The server feeds us searches as a branch root.
    pub server_parent: bool,
    /// Our children.
    pub children: Vec<String>,
}

impl ClientSession {
    /// Where we stand in the distributed network.
    pub fn distributed_status(&self) -> DistributedStatus {
        let d = &self.distrib;
        DistributedStatus {
            parent: d.parent.as_ref().map(|(u, _)| u.clone()),
            level: d.level,
            root: d.root.clone(),
            server_parent: d.server_parent,
            children: d.children.keys().cloned().collect(),
        }
    }

    /// Take at most `n` children from now on (those over it stay until they leave).
    pub fn set_max_children(&mut self, n: usize) {
        self.cfg.max_children = n;
        if self.logged_in {
            self.update_accept();
        }
    }

    /// At login and when the parent is gone: ask for one (Nicotine+'s four messages).
    pub(super) fn have_no_parent(&mut self) {
        let me = self.cfg.user.clone();
        let d = &mut self.distrib;
        d.parent = None;
        d.level = 0;
        d.root = me.clone();
        d.accepting = false;
        self.server(ServerRequest::HaveNoParent { no_parent: true });
        self.server(ServerRequest::BranchRoot { root: me.clone() });
        self.server(ServerRequest::BranchLevel { level: 0 });
        self.server(ServerRequest::AcceptChildren { accept: false });
        // Children learn they hang under nobody now: they report it and the server sends
        // them searches directly until we have a place again.
        self.send_children(&DistributedMessage::BranchLevel { level: 0 }.encode());
        self.send_children(&DistributedMessage::BranchRoot { root: me }.encode());
        self.event(SessionEvent::DistributedChanged(self.distributed_status()));
    }

    /// PossibleParents(102).
    pub(super) fn possible_parents(&mut self, now: Instant, parents: Vec<PossibleParent>) {
        if self.distrib.parent.is_some() {
            return;
        }
        self.drop_candidates();
        for p in parents.into_iter().take(MAX_PARENT_CANDIDATES) {
            let key = lc(&p.user);
            if key == lc(&self.cfg.user) || self.distrib.candidates.contains_key(&key) {
                continue;
            }
            if p.port == 0 || p.port > u32::from(u16::MAX) || p.ip.is_unspecified() {
                continue;
            }
            self.distrib.candidates.insert(key, Candidate { user: p.user.clone(), ..Default::default() });
            let token = self.token();
            let conn = self.conn_id();
            self.attempts.insert(
                token,
                Attempt {
                    user: p.user.clone(),
                    purpose: Purpose::Parent,
                    deadline: now + PEER_CONNECT_WAIT,
                    indirect_at: Some(now + DIRECT_CONNECT_WAIT),
                    dialing: Some(conn),
                    direct_failed: false,
                    indirect_failed: false,
                    want_address: false,
                },
            );
            self.conns.insert(conn, ConnState::DialDirect { attempt: token });
            self.out.push_back(Output::Dial { conn, addr: SocketAddrV4::new(p.ip, p.port as u16) });
        }
    }

    /// Our `D` connection to a candidate is up (PeerInit sent, or their PierceFireWall in).
    pub(super) fn candidate_connected(&mut self, now: Instant, user: &str, conn: ConnId) {
        let key = lc(user);
        let wanted =
            self.distrib.parent.is_none() && self.distrib.candidates.get(&key).is_some_and(|c| c.conn.is_none());
        if !wanted {
            self.out.push_back(Output::Close { conn });
            return;
        }
        if let Some(c) = self.distrib.candidates.get_mut(&key) {
            c.conn = Some(conn);
        }
        self.conns.insert(conn, d_state(user.to_owned(), Role::Candidate, Vec::new(), now).0);
    }

    /// A `D` connection someone opened to us (PeerInit `D`, or our pierce after their
    /// ConnectToPeer `D`): a would-be child.
    pub(super) fn child_connected(&mut self, now: Instant, conn: ConnId, user: String, rest: Vec<u8>) {
        let key = lc(&user);
        let d = &self.distrib;
        let fed = d.parent.is_some() || d.server_parent;
        let refuse = if !fed {
            Some("we have no parent")
        } else if d.candidates.contains_key(&key) || d.parent.as_ref().is_some_and(|(p, _)| lc(p) == key) {
            Some("a parent of ours")
        } else if d.children.len() >= self.cfg.max_children && !d.children.contains_key(&key) {
            Some("no room for more children")
        } else {
            None
        };
        if let Some(why) = refuse {
            // Its init state (an accepted connection) goes with it.
            self.forget_conn(conn);
            self.event(SessionEvent::PeerDropped { conn, why: format!("distributed child {user} refused: {why}") });
            self.out.push_back(Output::Close { conn });
            return;
        }
        if let Some(old) = self.distrib.children.insert(key, conn) {
            if old != conn {
                // Its new connection replaces the old (removed from the map first, so
                // closing it does not count as the child leaving).
                self.forget_conn(old);
                self.out.push_back(Output::Close { conn: old });
            }
        }
        let (state, held) = d_state(user, Role::Child, rest, now);
        self.buffered += held;
        self.conns.insert(conn, state);
        let level = DistributedMessage::BranchLevel { level: self.distrib.level as i32 }.encode();
        let root = DistributedMessage::BranchRoot { root: self.distrib.root.clone() }.encode();
        self.send(conn, level);
        self.send(conn, root);
        self.update_accept();
        self.event(SessionEvent::DistributedChanged(self.distributed_status()));
        if !self.over_budget(conn) {
            self.d_frames(now, conn);
        }
    }

    /// A search the server embedded for us (EmbeddedMessage 93 with a DistribSearch): we
    /// are a branch root.
    pub(super) fn server_embedded(&mut self, body: Vec<u8>) {
        if self.distrib.parent.is_some() {
            // A parent feeds us; the server should not (Nicotine+ ignores it too).
            return;
        }
        let Ok(DistributedMessage::Search { user, token, query }) = DistributedMessage::decode(3, &body) else {
            return;
        };
        if !self.distrib.server_parent {
            self.distrib.server_parent = true;
            self.update_accept();
            self.event(SessionEvent::DistributedChanged(self.distributed_status()));
        }
        self.send_children(&frame_u8(3, &body));
        self.search_request(user, token, query);
    }

    /// ResetDistributed(130): leave the tree and ask for a new place.
    pub(super) fn reset_distributed(&mut self) {
        self.distrib = Distrib::default();
        for c in self.d_conns() {
            self.forget_conn(c);
            self.out.push_back(Output::Close { conn: c });
        }
        self.have_no_parent();
    }

    /// The server connection is gone: so is our place.
    pub(super) fn distrib_logged_out(&mut self) {
        self.distrib = Distrib::default();
        for c in self.d_conns() {
            self.forget_conn(c);
            self.out.push_back(Output::Close { conn: c });
        }
    }

    /// Read what a `D` connection has buffered.
    pub(super) fn d_frames(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(ConnState::Distrib { user, reader, frame_deadline, role }) = self.conns.get_mut(&conn) else {
                return;
            };
            let before = reader.committed();
            let frame = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if before == 0 {
                        *frame_deadline = None;
                    } else if frame_deadline.is_none() {
                        *frame_deadline = Some(now + PEER_FRAME_TIMEOUT);
                    }
                    return;
                }
                Err(e) => return self.drop_conn(conn, format!("bad distributed frame: {e}")),
            };
            let after = reader.committed();
            *frame_deadline = if after > 0 { Some(now + PEER_FRAME_TIMEOUT) } else { None };
            let (user, role) = (user.clone(), *role);
            self.recount(before, after);
            let msg = match DistributedMessage::from_frame(&frame) {
                Ok(m) => m,
                Err(e) => return self.drop_conn(conn, format!("undecodable distributed message {}: {e}", frame.code)),
            };
            self.on_distributed(conn, &user, role, msg, &frame.body);
            if !self.conns.contains_key(&conn) {
                return;
            }
        }
    }

    fn on_distributed(&mut self, conn: ConnId, user: &str, role: Role, msg: DistributedMessage, body: &[u8]) {
        let key = lc(user);
        match (role, msg) {
            (Role::Child, _) => {} // children have nothing to tell us that we use
            (_, DistributedMessage::BranchLevel { level }) if level < 0 => {
                self.drop_conn(conn, format!("branch level {level} from {user}"));
            }
            (Role::Candidate, DistributedMessage::BranchLevel { level }) => {
                if let Some(c) = self.distrib.candidates.get_mut(&key) {
                    c.level = Some(level as u32);
                    if level == 0 {
                        // A root need not send its name as root.
                        c.root = Some(c.user.clone());
                    }
                }
                self.maybe_adopt(conn, &key);
            }
            (Role::Candidate, DistributedMessage::BranchRoot { root }) => {
                if root.is_empty() || root.chars().count() > crate::login::MAX_USERNAME_CHARS {
                    return self.drop_conn(conn, format!("branch root {root:?} from {user}"));
                }
                if let Some(c) = self.distrib.candidates.get_mut(&key) {
                    c.root = Some(root);
                }
                self.maybe_adopt(conn, &key);
            }
            (Role::Candidate, DistributedMessage::Search { .. })
            | (Role::Candidate, DistributedMessage::EmbeddedMessage { code: 3, .. }) => {
                // Nicotine+ adopts the first candidate to send a search (once it knows
                // its level and root).
                self.maybe_adopt(conn, &key);
                if matches!(self.conns.get(&conn), Some(ConnState::Distrib { role: Role::Parent, .. })) {
                    let msg = DistributedMessage::decode(3, body)
                        .or_else(|_| DistributedMessage::decode(93, body))
                        .unwrap_or(DistributedMessage::Ping);
                    self.on_parent_message(msg, body);
                }
            }
            (Role::Parent, msg) => self.on_parent_message(msg, body),
            _ => {}
        }
    }

    fn on_parent_message(&mut self, msg: DistributedMessage, body: &[u8]) {
        match msg {
            DistributedMessage::Search { user, token, query } => {
                self.send_children(&frame_u8(3, body));
                self.search_request(user, token, query);
            }
            DistributedMessage::EmbeddedMessage { code: 3, body: inner } => {
                if let Ok(DistributedMessage::Search { user, token, query }) = DistributedMessage::decode(3, &inner) {
                    self.send_children(&frame_u8(3, &inner));
                    self.search_request(user, token, query);
                }
            }
            DistributedMessage::BranchLevel { level } if level >= 0 => {
                self.distrib.level = level as u32 + 1;
                self.server(ServerRequest::BranchLevel { level: self.distrib.level });
                self.send_children(&DistributedMessage::BranchLevel { level: self.distrib.level as i32 }.encode());
                self.event(SessionEvent::DistributedChanged(self.distributed_status()));
            }
            DistributedMessage::BranchRoot { root } => {
                if root.is_empty() || root.chars().count() > crate::login::MAX_USERNAME_CHARS {
                    return;
                }
                self.distrib.root = root.clone();
                self.server(ServerRequest::BranchRoot { root: root.clone() });
                self.send_children(&DistributedMessage::BranchRoot { root }.encode());
                self.event(SessionEvent::DistributedChanged(self.distributed_status()));
            }
            _ => {}
        }
    }

    /// Make the candidate on `conn` our parent once it told us its level and root.
    fn maybe_adopt(&mut self, conn: ConnId, key: &str) {
        if self.distrib.parent.is_some() {
            return;
        }
        let Some(c) = self.distrib.candidates.get(key) else { return };
        if c.conn != Some(conn) {
            return;
        }
        // Like Nicotine+: not before we know where the candidate stands.
        let (Some(level), Some(root)) = (c.level, c.root.clone()) else { return };
        let user = c.user.clone();
        self.distrib.candidates.remove(key);
        self.drop_candidates();
        if let Some(ConnState::Distrib { role, .. }) = self.conns.get_mut(&conn) {
            *role = Role::Parent;
        }
        if let Some(old) = self.distrib.children.remove(key) {
            self.forget_conn(old);
            self.out.push_back(Output::Close { conn: old });
        }
        let d = &mut self.distrib;
        d.parent = Some((user, conn));
        d.level = level.saturating_add(1);
        d.root = root.clone();
        d.server_parent = false;
        self.server(ServerRequest::HaveNoParent { no_parent: false });
        self.server(ServerRequest::BranchRoot { root: root.clone() });
        self.server(ServerRequest::BranchLevel { level: self.distrib.level });
        self.update_accept();
        self.send_children(&DistributedMessage::BranchLevel { level: self.distrib.level as i32 }.encode());
        self.send_children(&DistributedMessage::BranchRoot { root }.encode());
        self.event(SessionEvent::DistributedChanged(self.distributed_status()));
    }

    /// A `D` connection is gone (closed or dropped).
    pub(super) fn d_closed(&mut self, conn: ConnId, user: &str, role: Role) {
        let key = lc(user);
        match role {
            Role::Parent => {
                if self.distrib.parent.as_ref().is_some_and(|(_, c)| *c == conn) {
                    self.have_no_parent();
                }
            }
            Role::Candidate => {
                if let Some(c) = self.distrib.candidates.get_mut(&key) {
                    if c.conn == Some(conn) {
                        c.conn = None;
                    }
                }
            }
            Role::Child => {
                if self.distrib.children.get(&key) == Some(&conn) {
                    self.distrib.children.remove(&key);
                    self.update_accept();
                    self.event(SessionEvent::DistributedChanged(self.distributed_status()));
                }
            }
        }
    }

    /// Close every candidate connection (not the parent's) and forget the candidates.
    fn drop_candidates(&mut self) {
        for (_, c) in std::mem::take(&mut self.distrib.candidates) {
            if let Some(conn) = c.conn {
                self.forget_conn(conn);
                self.out.push_back(Output::Close { conn });
            }
        }
        // Attempts still under way for candidates end with them.
        let stale: Vec<u32> =
            self.attempts.iter().filter(|(_, a)| a.purpose == Purpose::Parent).map(|(&t, _)| t).collect();
        for t in stale {
            if let Some(a) = self.attempts.remove(&t) {
                if let Some(d) = a.dialing {
                    self.conns.remove(&d);
                    self.out.push_back(Output::Close { conn: d });
                }
            }
        }
    }

    /// Tell the server whether we take children: a limit above zero, a feed (a parent, or
    /// the server's as a root), and room.
    fn update_accept(&mut self) {
        let d = &self.distrib;
        let want = self.cfg.max_children > 0
            && (d.parent.is_some() || d.server_parent)
            && d.children.len() < self.cfg.max_children;
        if want != d.accepting {
            self.distrib.accepting = want;
            self.server(ServerRequest::AcceptChildren { accept: want });
        }
    }

    fn send_children(&mut self, frame: &[u8]) {
        let conns: Vec<ConnId> = self.distrib.children.values().copied().collect();
        for c in conns {
            self.send(c, frame.to_vec());
        }
    }

    fn d_conns(&self) -> Vec<ConnId> {
        self.conns.iter().filter(|(_, s)| matches!(s, ConnState::Distrib { .. })).map(|(&c, _)| c).collect()
    }
}

/// A `D` connection's state with `rest` already buffered; and how many bytes that is.
pub(super) fn d_state(user: String, role: Role, rest: Vec<u8>, now: Instant) -> (ConnState, usize) {
    let mut reader = FrameReader::new(FrameKind::Distributed);
    reader.push(&rest);
    let held = reader.committed();
    let frame_deadline = (held > 0).then_some(now + PEER_FRAME_TIMEOUT);
    (ConnState::Distrib { user, reader, frame_deadline, role }, held)
}

impl Kind {
    /// The kind of an init's connection type.
    pub(super) fn parse(conn_type: &str) -> Option<Kind> {
        match conn_type {
            "P" => Some(Kind::P),
            "F" => Some(Kind::F),
            "D" => Some(Kind::D),
            _ => None,
        }
    }
}
