//! The server's view of the distributed network (`docs/protocols/soulseek.md`, section
//! `#distributed-tree`): who is a branch root, who reports a parent, whom to offer as
//! parents, and who must still get searches from the server itself.
//!
//! Clients report themselves with HaveNoParent(71), AcceptChildren(100), BranchLevel(126),
//! BranchRoot(127) and ChildDepth(129). A user that reports having no parent is offered
//! PossibleParents(102) a little later ([`TreeConfig::offer_delay`], so the burst of reports
//! at login settles first), again every [`TreeConfig::offer_every`] while it still has none.
//! When nobody can take it, it becomes a **branch root**: the server sends it every search
//! as EmbeddedMessage(93) carrying a DistribSearch, which it answers and passes down to its
//! children. A user is **covered** by the tree when it reports a parent (HaveNoParent
//! false, level ≥ 1) under a root that is one of ours; everybody else (users without a
//! parent, clients that never speak of the tree, users whose root is gone) still gets each
//! search straight from the server as FileSearch(26). So nobody is left out and the server
//! sends each user a search at most once.
//!
//! Cycles: only settled users (roots, and covered users) are offered as parents; never the
//! seeker itself nor a user reporting the seeker as its root; and a root looking for a
//! parent is only offered the trees of roots older than itself, so two roots never adopt
//! each other.
//!
//! Per-user state is a fixed set of numbers and one name (a root's, at most
//! [`crate::login::MAX_USERNAME_CHARS`] long, else ignored); a PossibleParents list holds at
//! most [`MAX_POSSIBLE_PARENTS`] users, found by looking at most [`MAX_CANDIDATE_SCAN`]
//! entries of an index ordered by branch level.

use crate::server::PossibleParent;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A connection's id (the server's).
pub type ConnId = u64;

/// Users offered in one PossibleParents (the real server sends up to 10; Nicotine+ dials
/// them all at once).
pub const MAX_POSSIBLE_PARENTS: usize = 10;
/// Index entries looked at to fill one PossibleParents (stale or unsuitable ones are
/// skipped): bounds the work per offer whatever the number of users.
pub const MAX_CANDIDATE_SCAN: usize = 1000;
/// Default wait between a user's report of having no parent and the offer of parents.
pub const PARENT_OFFER_DELAY: Duration = Duration::from_secs(1);
/// Default pause between offers to a user still without a parent.
pub const PARENT_OFFER_EVERY: Duration = Duration::from_secs(30);
/// Deepest branch level a covered user may report; deeper reports are not believed (the
/// user gets searches directly).
pub const MAX_BRANCH_LEVEL: u32 = 64;

/// Tree settings.
#[derive(Debug, Clone)]
pub struct TreeConfig {
    /// Build the tree at all; off: every search goes to every user directly (and nobody
    /// is offered parents).
    pub enabled: bool,
    /// See [`PARENT_OFFER_DELAY`].
    pub offer_delay: Duration,
    /// See [`PARENT_OFFER_EVERY`].
    pub offer_every: Duration,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig { enabled: true, offer_delay: PARENT_OFFER_DELAY, offer_every: PARENT_OFFER_EVERY }
    }
}

/// What one user reported about its place in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUser {
    /// Name.
    pub name: String,
    /// It spoke of the tree at all (HaveNoParent or a branch report).
    pub spoke: bool,
    /// Its last HaveNoParent: looking for a parent.
    pub seeking: bool,
    /// Its last AcceptChildren.
    pub accepts_children: bool,
    /// Its last BranchLevel.
    pub level: u32,
    /// Its last BranchRoot (lower case).
    pub root: String,
    /// Its last ChildDepth.
    pub child_depth: u32,
    /// The server made it a branch root.
    pub is_root: bool,
    /// It gets searches through the tree (not from the server).
    pub covered: bool,
    /// Searches the server sent it directly (FileSearch).
    pub direct_searches: u64,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    key: String,
    ip: Ipv4Addr,
    port: u32,
    spoke: bool,
    seeking: bool,
    accept: bool,
    level: u32,
    root: String,
    child_depth: u32,
    /// Some(order) when a branch root; lower orders are older roots.
    root_order: Option<u64>,
    /// Its key's level in `offerable`, when there.
    indexed: Option<u32>,
    due: Option<Instant>,
    direct_searches: u64,
}

/// Who gets one search, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Branch roots: EmbeddedMessage(DistribSearch).
    pub roots: Vec<ConnId>,
    /// Everybody else not covered by the tree: FileSearch.
    pub direct: Vec<ConnId>,
}

/// The tree. See the module documentation.
#[derive(Debug, Default)]
pub struct Tree {
    cfg: TreeConfig,
    nodes: HashMap<ConnId, Node>,
    by_name: HashMap<String, ConnId>,
    /// (level, conn) of users accepting children: the parents offered, shallowest first.
    offerable: BTreeSet<(u32, ConnId)>,
    /// Branch roots by age.
    roots: BTreeSet<(u64, ConnId)>,
    due: BTreeSet<(Instant, ConnId)>,
    next_root: u64,
    /// The last [`Tree::delivery`] lists, until the tree changes.
    cache: Option<Delivery>,
}

impl Tree {
    /// An empty tree.
    pub fn new(cfg: TreeConfig) -> Tree {
        Tree { cfg, ..Default::default() }
    }

    /// Whether the tree is built at all.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// A user logged in on `conn`.
    pub fn join(&mut self, conn: ConnId, name: &str, ip: Ipv4Addr) {
        self.leave(conn);
        self.cache = None;
        let key = name.to_lowercase();
        self.by_name.insert(key.clone(), conn);
        self.nodes.insert(
            conn,
            Node {
                name: name.to_owned(),
                key,
                ip,
                port: 0,
                spoke: false,
                seeking: false,
                accept: false,
                level: 0,
                root: String::new(),
                child_depth: 0,
                root_order: None,
                indexed: None,
                due: None,
                direct_searches: 0,
            },
        );
    }

    /// The user on `conn` left.
    pub fn leave(&mut self, conn: ConnId) {
        let Some(n) = self.nodes.remove(&conn) else { return };
        if self.by_name.get(&n.key) == Some(&conn) {
            self.by_name.remove(&n.key);
        }
        if let Some(l) = n.indexed {
            self.offerable.remove(&(l, conn));
        }
        self.cache = None;
        if let Some(o) = n.root_order {
            self.roots.remove(&(o, conn));
        }
        if let Some(d) = n.due {
            self.due.remove(&(d, conn));
        }
        if self.nodes.is_empty() {
            // Give back what a crowd held.
            *self = Tree::new(self.cfg.clone());
        } else if self.nodes.capacity() > 64 && self.nodes.len() < self.nodes.capacity() / 4 {
            // Most of a crowd left while some stay: the maps give back their slots too
            // (~0.4 KiB per user who left otherwise; crates/slsk/tests/central_memory.rs).
            // Only below a quarter, so this stays amortised O(1) per leave.
            self.nodes.shrink_to(self.nodes.len() * 2);
            self.by_name.shrink_to(self.by_name.len() * 2);
        }
    }

    /// The user's listening port (SetWaitPort).
    pub fn set_port(&mut self, conn: ConnId, port: u32) {
        if let Some(n) = self.nodes.get_mut(&conn) {
            n.port = port;
        }
    }

    /// HaveNoParent(71).
    pub fn have_no_parent(&mut self, now: Instant, conn: ConnId, no_parent: bool) {
        let delay = self.cfg.offer_delay;
        let Some(n) = self.nodes.get_mut(&conn) else { return };
        n.spoke = true;
        n.seeking = no_parent;
        self.cache = None;
        if no_parent {
            if n.due.is_none() {
                self.schedule(conn, now + delay);
            }
        } else {
            // It found a parent: no longer a root of ours, no more offers.
            self.unroot(conn);
            self.unschedule(conn);
        }
    }

    /// AcceptChildren(100).
    pub fn accept_children(&mut self, conn: ConnId, accept: bool) {
        let Some(n) = self.nodes.get_mut(&conn) else { return };
        n.accept = accept;
        self.reindex(conn);
    }

    /// BranchLevel(126).
    pub fn branch_level(&mut self, conn: ConnId, level: u32) {
        let Some(n) = self.nodes.get_mut(&conn) else { return };
        n.spoke = true;
        n.level = level;
        self.cache = None;
        self.reindex(conn);
    }

    /// BranchRoot(127).
    pub fn branch_root(&mut self, conn: ConnId, root: &str) {
        let Some(n) = self.nodes.get_mut(&conn) else { return };
        n.spoke = true;
        if root.chars().count() <= crate::login::MAX_USERNAME_CHARS {
            n.root = root.to_lowercase();
        }
        self.cache = None;
    }

    /// ChildDepth(129).
    pub fn child_depth(&mut self, conn: ConnId, depth: u32) {
        if let Some(n) = self.nodes.get_mut(&conn) {
            n.child_depth = depth;
        }
    }

    /// The earliest instant [`Tree::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.first().map(|(d, _)| *d)
    }

    /// Offers that are due: (user, its PossibleParents). Users with
    /// nobody to offer become branch roots.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(ConnId, Vec<PossibleParent>)> {
        let mut offers = Vec::new();
        while let Some(&(d, conn)) = self.due.first() {
            if d > now {
                break;
            }
            self.due.remove(&(d, conn));
            let Some(n) = self.nodes.get_mut(&conn) else { continue };
            n.due = None;
            if !n.seeking || !self.cfg.enabled {
                continue;
            }
            let candidates = self.candidates(conn);
            if candidates.is_empty() {
                self.make_root(conn);
            } else {
                offers.push((conn, candidates));
            }
            let every = self.cfg.offer_every;
            self.schedule(conn, now + every);
        }
        offers
    }

    /// Who gets a search from `searcher`: every branch root (the searcher too when it is
    /// one: its subtree needs the search), and every other user the tree does not cover.
    /// The lists are kept between searches until the tree changes, so a search costs the
    /// server work in proportion to the users it sends to, not to the users online.
    pub fn delivery(&mut self, searcher: ConnId) -> Delivery {
        if self.cache.is_none() {
            let mut d = Delivery::default();
            if self.cfg.enabled {
                d.roots = self.roots.iter().map(|(_, c)| *c).collect();
            }
            for &conn in self.nodes.keys() {
                if !self.cfg.enabled || (self.nodes[&conn].root_order.is_none() && !self.covered(conn)) {
                    d.direct.push(conn);
                }
            }
            d.direct.sort_unstable();
            self.cache = Some(d);
        }
        let mut d = self.cache.clone().unwrap_or_default();
        d.direct.retain(|&c| c != searcher);
        for c in &d.direct {
            if let Some(n) = self.nodes.get_mut(c) {
                n.direct_searches += 1;
            }
        }
        d
    }

    /// What the tree knows of every user, by name.
    pub fn users(&self) -> Vec<TreeUser> {
        let mut v: Vec<TreeUser> = self
            .nodes
            .iter()
            .map(|(&c, n)| TreeUser {
                name: n.name.clone(),
                spoke: n.spoke,
                seeking: n.seeking,
                accepts_children: n.accept,
                level: n.level,
                root: n.root.clone(),
                child_depth: n.child_depth,
                is_root: n.root_order.is_some(),
                covered: self.covered(c),
                direct_searches: n.direct_searches,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The name of the user on `conn`.
    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        self.nodes.get(&conn).map(|n| n.name.as_str())
    }

    // ---- helpers ---------------------------------------------------------------------

    /// The branch root (conn) whose tree `conn` is in, when it is one of ours.
    fn tree_root(&self, conn: ConnId) -> Option<ConnId> {
        let n = self.nodes.get(&conn)?;
        if n.root_order.is_some() {
            return Some(conn);
        }
        if n.seeking || n.level == 0 || n.level > MAX_BRANCH_LEVEL {
            return None;
        }
        let r = *self.by_name.get(&n.root)?;
        (r != conn && self.nodes.get(&r)?.root_order.is_some()).then_some(r)
    }

    /// Reached through the tree: it reports a parent under one of our roots.
    fn covered(&self, conn: ConnId) -> bool {
        self.tree_root(conn).is_some_and(|r| r != conn)
    }

    fn candidates(&self, seeker: ConnId) -> Vec<PossibleParent> {
        let s = &self.nodes[&seeker];
        let my_order = s.root_order;
        let mut out = Vec::new();
        for &(_, c) in self.offerable.iter().take(MAX_CANDIDATE_SCAN) {
            if c == seeker {
                continue;
            }
            let n = &self.nodes[&c];
            if !n.accept || n.port == 0 || n.root == s.key {
                continue;
            }
            let Some(root) = self.tree_root(c) else { continue };
            if root == seeker {
                continue;
            }
            if let Some(mine) = my_order {
                // A root joins only an older root's tree: no two roots adopt each other.
                if self.nodes[&root].root_order.is_none_or(|o| o >= mine) {
                    continue;
                }
            }
            out.push(PossibleParent { user: n.name.clone(), ip: n.ip, port: n.port });
            if out.len() == MAX_POSSIBLE_PARENTS {
                break;
            }
        }
        out
    }

    fn make_root(&mut self, conn: ConnId) {
        let order = self.next_root;
        let Some(n) = self.nodes.get_mut(&conn) else { return };
        if n.root_order.is_some() {
            return;
        }
        self.next_root += 1;
        n.root_order = Some(order);
        self.cache = None;
        self.roots.insert((order, conn));
        self.reindex(conn);
    }

    fn unroot(&mut self, conn: ConnId) {
        if let Some(n) = self.nodes.get_mut(&conn) {
            if let Some(o) = n.root_order.take() {
                self.roots.remove(&(o, conn));
                self.cache = None;
            }
        }
        self.reindex(conn);
    }

    /// Keep `offerable` in step with the user's level, root status and AcceptChildren.
    /// (AcceptChildren alone does not change who gets a search: the delivery lists stay.)
    fn reindex(&mut self, conn: ConnId) {
        let Some(n) = self.nodes.get_mut(&conn) else { return };
        if let Some(old) = n.indexed.take() {
            self.offerable.remove(&(old, conn));
        }
        if n.accept {
            let level = if n.root_order.is_some() { 0 } else { n.level };
            n.indexed = Some(level);
            self.offerable.insert((level, conn));
        }
    }

    fn schedule(&mut self, conn: ConnId, at: Instant) {
        self.unschedule(conn);
        if let Some(n) = self.nodes.get_mut(&conn) {
            n.due = Some(at);
            self.due.insert((at, conn));
        }
    }

    fn unschedule(&mut self, conn: ConnId) {
        if let Some(n) = self.nodes.get_mut(&conn) {
            if let Some(d) = n.due.take() {
                self.due.remove(&(d, conn));
            }
        }
    }
}
