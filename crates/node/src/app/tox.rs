//! The node's Tox client: one [`ToxClient`] (the sans-IO `omnipeer_tox::tox::Tox` on a UDP
//! socket) run as a task of `up`, its friends kept as contacts (network `tox`, name = the
//! friend's long-term key in hex) and its conversations in the node's chat model under
//! `tox:friend:<KEY>`.
//!
//! - The identity is a profile file in the format of `omnipeer tox id`; friends live in
//!   both the profile and the database and are added again at every start, so they
//!   reconnect after a restart.
//! - Incoming friend requests wait in `tox_requests` until accepted or declined (or are
//!   accepted at once with `[tox].auto_accept`); our own requests wait in `tox_outgoing`
//!   until the friend comes online, and are sent again after a restart.
//! - Own lines are stored with `delivered = false`, sent when the friend is online (at
//!   once, or when it next comes online — like qTox's offline messages) and marked
//!   delivered when every part's read receipt came back (Event::ChatDelivered). Lines
//!   longer than a Tox message go out in parts cut at character boundaries; `/me TEXT`
//!   is sent as an action, and actions arrive as `/me TEXT`.
//!
//! The API talks to the task through a command channel; the task owns the machine.

use super::model::SessionState;
use super::model::{ChatMessage, Event, ToxFriendInfo, ToxRequestInfo};
use super::net::{Network, TransferAction, TransferState};
use super::{Node, NodeError};
use crate::store::tox::StoredFriend;
use crate::tox::client::{load_profile, onion_rendezvous, ToxClient, Wake};
use anyhow::{anyhow, Context};
use omnipeer_tox::crypto::PublicKey;
use omnipeer_tox::friend::Progress;
use omnipeer_tox::messenger::{MessageKind, MAX_MESSAGE_LEN};
use omnipeer_tox::profile::{Profile, MAX_NICKNAME_LEN};
use omnipeer_tox::toxid::ToxId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

mod chats;
pub mod conference;
pub mod group;

/// The contacts' network name for Tox friends.
pub const NETWORK: &str = "tox";
/// Longest friend request message (c-toxcore: TOX_MAX_FRIEND_REQUEST_LENGTH 1016).
pub const MAX_REQUEST_MESSAGE: usize = 1016;
/// Friend request message when none is given.
pub const DEFAULT_REQUEST_MESSAGE: &str = "omnipeer wants to be your friend";
/// Incoming requests kept at most (older ones are dropped first).
pub const MAX_PENDING_REQUESTS: usize = 256;
/// How often the task looks at the DHT and the announcement without an event.
const REFRESH: Duration = Duration::from_secs(2);
/// How often a friend's file in progress reports its bytes (as the download engine does).
const FILE_PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Bootstrap again this often while the DHT knows nobody.
const REBOOTSTRAP: Duration = Duration::from_secs(10);
/// DHT nodes remembered for the next start (like c-toxcore's savedata), saved this often
/// and at shutdown: a restarted node finds its friends through them even when its
/// bootstrap node moved or is gone.
const SAVE_NODES_EVERY: Duration = Duration::from_secs(30);
/// How many.
const SAVED_NODES: usize = 16;
/// The settings key they are kept under.
const NODES_SETTING: &str = "tox.nodes";

/// The chat id of a friend.
pub fn chat_id(pk: &PublicKey) -> String {
    format!("tox:friend:{}", pk.to_hex())
}

/// A public key from 64 hex digits (either case).
pub fn parse_pk(s: &str) -> anyhow::Result<PublicKey> {
    let s = s.trim();
    anyhow::ensure!(s.len() == 64, "{s:?} is not a Tox public key (64 hex digits)");
    PublicKey::from_hex(s).ok_or_else(|| anyhow!("{s:?} is not a Tox public key (64 hex digits)"))
}

/// Cuts `text` into parts of at most `max` bytes at character boundaries (a Tox message
/// is at most 1372 bytes; longer lines go out as several).
pub fn split_message(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max.max(4));
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer cutting after a space when one is in the last quarter.
        if cut < rest.len() {
            if let Some(sp) = rest[..cut].rfind(' ').filter(|&i| i > cut * 3 / 4) {
                cut = sp + 1;
            }
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// `/me TEXT` is an action.
pub fn message_kind(text: &str) -> (MessageKind, &str) {
    match text.strip_prefix("/me ") {
        Some(rest) if !rest.trim().is_empty() => (MessageKind::Action, rest),
        _ => (MessageKind::Normal, text),
    }
}

/// What the API asks of the task.
enum Cmd {
    /// Befriend the owner of a Tox ID (friend request).
    Request { id: ToxId, message: String, reply: oneshot::Sender<anyhow::Result<()>> },
    /// Add a friend without a request (accepting one).
    Add { pk: PublicKey, reply: oneshot::Sender<anyhow::Result<()>> },
    /// Forget a friend.
    Remove { pk: PublicKey, reply: oneshot::Sender<anyhow::Result<()>> },
    /// Send a stored own line (delivered = false) if the friend is online.
    Send { pk: PublicKey, line: i64, text: String },
    /// The running profile as a Tox save (encrypted with the passphrase when given).
    Export { passphrase: Option<String>, reply: oneshot::Sender<anyhow::Result<Vec<u8>>> },
    /// Make `profile` the node's identity from the next start; the client stops.
    Import { profile: Box<Profile>, reply: oneshot::Sender<anyhow::Result<()>> },
    /// Pause, resume or cancel the file a friend sends us, by its transfer row
    /// (`POST /api/transfers/{id}/pause` ...).
    FileControl { transfer: i64, action: TransferAction },
    /// Offer a local file to an online friend; replies with its upload id.
    SendFile { pk: PublicKey, path: PathBuf, reply: oneshot::Sender<anyhow::Result<u64>> },
    /// Conferences (group chats): create, invite, accept, send, leave.
    Conference(conference::ConfCmd),
    /// NGC groups: found, invite, accept, send, leave.
    Group(group::GroupCmd),
}

/// A file we send to a friend, as an upload of the node (`GET /api/uploads`).
struct SendRow {
    upload: u64,
    friend: PublicKey,
    number: u8,
    source: crate::tox::files::Source,
    /// Bytes sent in this transfer (the upload's counter).
    sent: Arc<std::sync::atomic::AtomicU64>,
    path: PathBuf,
}

/// A friend's file as a row of the node's transfers (`GET /api/transfers`).
struct FileRow {
    id: i64,
    friend: PublicKey,
    number: u8,
    /// Bytes received (from the resume point on).
    bytes: u64,
    size: u64,
    /// When progress was last reported, and the bytes then.
    last: (Instant, u64),
}

/// `POST /api/tox/profile/import`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToxImported {
    /// The imported Tox ID (the node's from its next start).
    pub id: String,
    /// Friends in the imported save.
    pub friends: usize,
    /// Always true: the Tox client stopped; restarting the node brings it up as `id`.
    pub restart: bool,
}

/// Live state of a friend (not stored).
#[derive(Debug, Clone, Copy)]
struct Live {
    progress: Progress,
    online: bool,
}

#[derive(Default)]
struct Shared {
    /// Our Tox ID.
    id: String,
    /// Where the client listens.
    address: String,
    /// Announced at a rendezvous node (reachable by friends).
    announced: bool,
    live: HashMap<PublicKey, Live>,
    /// Conferences and invites (docs/protocols/tox.md#conferences).
    conferences: conference::ConfShared,
    /// NGC groups and invites (docs/protocols/tox.md#ngc-group-chats).
    groups: group::GroupShared,
}

/// The running Tox client as the rest of the node sees it.
pub struct ToxHandle {
    cmds: mpsc::UnboundedSender<Cmd>,
    shared: Mutex<Shared>,
}

impl ToxHandle {
    fn live(&self, pk: &PublicKey) -> Option<Live> {
        self.shared.lock().expect("tox").live.get(pk).copied()
    }
}

/// `GET /api/tox`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToxStatus {
    /// Our Tox ID (76 hex): what friends add.
    pub id: String,
    /// Announced at a rendezvous node: friends can find us.
    pub online: bool,
    /// Where the client listens (UDP).
    pub address: String,
    /// Whether friend requests are accepted without asking.
    pub auto_accept: bool,
    /// Every friend.
    pub friends: Vec<ToxFriendInfo>,
    /// Incoming requests waiting for an answer.
    pub requests: Vec<ToxRequestInfo>,
}

impl Node {
    /// The Tox client, when it runs.
    pub fn tox(&self) -> Result<&ToxHandle, NodeError> {
        self.tox.get().map(|h| &**h).ok_or_else(|| NodeError::NotConnected("Tox (the [tox] client is disabled)".into()))
    }

    fn friend_info(&self, f: &StoredFriend, outgoing: &[String]) -> ToxFriendInfo {
        let live = PublicKey::from_hex(&f.pk).and_then(|pk| self.tox.get().and_then(|h| h.live(&pk)));
        ToxFriendInfo {
            pk: f.pk.clone(),
            chat: format!("tox:friend:{}", f.pk),
            nickname: f.nickname.clone(),
            online: live.is_some_and(|l| l.online),
            progress: live.map(|l| l.progress.name()).unwrap_or(Progress::AwaitingDhtKey.name()).to_owned(),
            request_sent: outgoing.iter().any(|id| id.get(..64) == Some(f.pk.as_str())),
            added: f.added,
        }
    }

    fn outgoing_ids(&self) -> Vec<String> {
        self.db
            .lock()
            .expect("db")
            .tox_outgoing()
            .map(|v| v.into_iter().map(|(id, _)| id).collect())
            .unwrap_or_default()
    }

    /// One friend now, if it is one.
    pub fn tox_friend(&self, pk: &PublicKey) -> anyhow::Result<Option<ToxFriendInfo>> {
        let f = self.db.lock().expect("db").tox_friend(&pk.to_hex())?;
        let out = self.outgoing_ids();
        Ok(f.map(|f| self.friend_info(&f, &out)))
    }

    fn emit_friend(&self, pk: &PublicKey) {
        if let Ok(Some(friend)) = self.tox_friend(pk) {
            self.emit(Event::ToxFriend { friend, removed: false });
        }
    }

    /// Our Tox ID, friends and pending requests.
    pub fn tox_status(&self) -> anyhow::Result<ToxStatus> {
        let h = self.tox()?;
        let (id, online, address) = {
            let s = h.shared.lock().expect("tox");
            (s.id.clone(), s.announced, s.address.clone())
        };
        let (friends, requests) = {
            let db = self.db.lock().expect("db");
            (db.tox_friends()?, db.tox_requests()?)
        };
        let out = self.outgoing_ids();
        Ok(ToxStatus {
            id,
            online,
            address,
            auto_accept: self.cfg.tox.auto_accept,
            friends: friends.iter().map(|f| self.friend_info(f, &out)).collect(),
            requests,
        })
    }

    /// Tox friends as chats (for the chat list): name = nickname when known.
    pub(crate) fn tox_chats(&self) -> Vec<(String, String, bool)> {
        if self.tox.get().is_none() {
            return Vec::new();
        }
        let friends = self.db.lock().expect("db").tox_friends().unwrap_or_default();
        let out = Vec::new();
        friends
            .iter()
            .map(|f| {
                let i = self.friend_info(f, &out);
                let name = if i.nickname.is_empty() { i.pk.clone() } else { i.nickname.clone() };
                (i.chat, name, i.online)
            })
            .collect()
    }

    /// A command to the task, and its answer.
    async fn tox_call<T>(&self, make: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> Cmd) -> anyhow::Result<T> {
        let h = self.tox()?;
        let (tx, rx) = oneshot::channel();
        h.cmds.send(make(tx)).map_err(|_| NodeError::NotConnected("Tox (the client stopped)".into()))?;
        rx.await.map_err(|_| NodeError::NotConnected("Tox (the client stopped)".into()))?
    }

    /// The running Tox profile in the standard save format (docs/protocols/tox.md#savedata),
    /// passphrase-encrypted when `passphrase` is given and not empty.
    pub async fn tox_export(&self, passphrase: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let passphrase = passphrase.filter(|p| !p.is_empty()).map(str::to_owned);
        self.tox_call(|reply| Cmd::Export { passphrase, reply }).await
    }

    /// Import a Tox save (qTox's / toxic's profile, plain or encrypted): it replaces the
    /// node's profile (the old one kept as `<profile>.bak`) and its friend list; the Tox
    /// client stops, and the next start runs as the imported identity.
    pub async fn tox_import(&self, data: &[u8], passphrase: Option<&str>) -> anyhow::Result<ToxImported> {
        self.tox()?;
        let pass = passphrase.filter(|p| !p.is_empty()).map(str::as_bytes);
        let profile = crate::tox::profile::parse_savedata(data, pass)
            .map_err(|e| NodeError::Invalid(format!("not a Tox save: {e:#}")))?;
        let imported = ToxImported { id: profile.tox_id().to_hex(), friends: profile.friends.len(), restart: true };
        self.tox_call(|reply| Cmd::Import { profile: Box::new(profile), reply }).await?;
        Ok(imported)
    }

    /// Send a friend request to the owner of `id` (76 hex) and add it as a friend; it
    /// shows up online once it accepts. A pending request from the same key is
    /// accepted instead.
    pub async fn tox_add_friend(&self, id: &str, message: &str) -> anyhow::Result<ToxFriendInfo> {
        let h = self.tox()?;
        let id: ToxId = id.parse().map_err(|e| anyhow!("{id:?} is not a Tox ID (76 hex digits): {e}"))?;
        anyhow::ensure!(id.to_hex() != h.shared.lock().expect("tox").id, "that is this node's own Tox ID");
        let pk_hex = id.pk.to_hex();
        if self.db.lock().expect("db").tox_requests()?.iter().any(|r| r.pk == pk_hex) {
            return self.tox_accept(&pk_hex).await;
        }
        let message = message.trim();
        let message = if message.is_empty() { DEFAULT_REQUEST_MESSAGE } else { message };
        anyhow::ensure!(
            message.len() <= MAX_REQUEST_MESSAGE,
            "a friend request message is at most {MAX_REQUEST_MESSAGE} bytes"
        );
        if let Some(f) = self.tox_friend(&id.pk)? {
            return Ok(f); // a friend already
        }
        {
            let db = self.db.lock().expect("db");
            db.tox_friend_add(&pk_hex)?;
            db.tox_outgoing_add(&id, message)?;
        }
        let message = message.to_owned();
        if let Err(e) = self.tox_call(|reply| Cmd::Request { id, message, reply }).await {
            self.db.lock().expect("db").tox_friend_remove(&pk_hex)?;
            return Err(e);
        }
        self.emit_friend(&id.pk);
        self.tox_friend(&id.pk)?.ok_or_else(|| anyhow!("the friend vanished"))
    }

    /// Accept the pending request from `pk`.
    pub async fn tox_accept(&self, pk: &str) -> anyhow::Result<ToxFriendInfo> {
        self.tox()?;
        let pk = parse_pk(pk)?;
        let hex = pk.to_hex();
        let req = self.db.lock().expect("db").tox_request_take(&hex)?;
        let Some(req) = req else { return Err(NodeError::NotFound(format!("no friend request from {hex}")).into()) };
        self.db.lock().expect("db").tox_friend_add(&hex)?;
        if let Err(e) = self.tox_call(|reply| Cmd::Add { pk, reply }).await {
            let db = self.db.lock().expect("db");
            db.tox_friend_remove(&hex)?;
            db.tox_request_add(&req.pk, &req.message)?;
            return Err(e);
        }
        self.emit(Event::ToxRequest { request: req, pending: false });
        self.emit_friend(&pk);
        self.tox_friend(&pk)?.ok_or_else(|| anyhow!("the friend vanished"))
    }

    /// Decline (forget) the pending request from `pk`.
    pub fn tox_decline(&self, pk: &str) -> anyhow::Result<ToxRequestInfo> {
        self.tox()?;
        let hex = parse_pk(pk)?.to_hex();
        let req = self.db.lock().expect("db").tox_request_take(&hex)?;
        let req = req.ok_or_else(|| NodeError::NotFound(format!("no friend request from {hex}")))?;
        self.emit(Event::ToxRequest { request: req.clone(), pending: false });
        Ok(req)
    }

    /// Remove the friend `pk` (its chat history stays).
    pub async fn tox_remove_friend(&self, pk: &str) -> anyhow::Result<ToxFriendInfo> {
        self.tox()?;
        let pk = parse_pk(pk)?;
        let info =
            self.tox_friend(&pk)?.ok_or_else(|| NodeError::NotFound(format!("{} is not a friend", pk.to_hex())))?;
        self.tox_call(|reply| Cmd::Remove { pk, reply }).await?;
        self.db.lock().expect("db").tox_friend_remove(&pk.to_hex())?;
        let friend = ToxFriendInfo { online: false, ..info };
        self.emit(Event::ToxFriend { friend: friend.clone(), removed: true });
        Ok(friend)
    }

    /// Say something to a friend: stored now (not delivered yet), sent when it is online.
    /// The transfer row of a friend's file changed (`transfer` event).
    fn emit_tox_row(&self, id: i64) {
        if let Ok(Some(t)) = self.transfer(id) {
            self.emit(Event::Transfer { transfer: t });
        }
    }

    /// `POST /api/tox/friends/{pk}/files`: offer a file inside a shared folder or the
    /// downloads folder to an online friend; it shows as an upload.
    pub async fn tox_send_file(&self, pk: &str, path: &str) -> anyhow::Result<crate::upload::UploadInfo> {
        let pk = parse_pk(pk)?;
        let path = self.sendable_path(path)?;
        let (tx, rx) = oneshot::channel();
        self.tox()?.cmds.send(Cmd::SendFile { pk, path, reply: tx }).map_err(|_| anyhow!("the Tox client stopped"))?;
        let id = rx.await.map_err(|_| anyhow!("the Tox client stopped"))??;
        self.uploads.list().into_iter().find(|u| u.id == id).ok_or_else(|| anyhow!("upload {id} already ended"))
    }

    /// A regular file inside a shared folder or the downloads folder (symbolic links and
    /// `..` resolved first, so nothing outside them can be named).
    fn sendable_path(&self, path: &str) -> anyhow::Result<PathBuf> {
        let bad = |why: &str| NodeError::Invalid(format!("{path}: {why}"));
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(bad("not an absolute path").into());
        }
        let real = std::fs::canonicalize(p).map_err(|e| bad(&e.to_string()))?;
        let mut roots = self.share_folders();
        roots.push(self.downloads());
        let inside = roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).any(|r| real.starts_with(&r));
        if !inside {
            return Err(bad("not inside a shared folder or the downloads folder").into());
        }
        if !real.is_file() {
            return Err(bad("not a file").into());
        }
        Ok(real)
    }

    /// A friend's file that will not arrive on this row any more fails (from whatever state
    /// it was left in but a finished one); the friend's next offer of it resumes as a new row.
    fn tox_row_failed(&self, id: i64, why: &str) {
        let store = self.db.lock().expect("db");
        let _ = store.transfer_set_state(
            id,
            &[TransferState::Queued, TransferState::Paused, TransferState::Running],
            TransferState::Running,
        );
        let _ = store.transfer_failed(id, &format!("{why}: it resumes when the friend sends it again"), None);
        drop(store);
        self.emit_tox_row(id);
    }

    /// A transfer row of a friend's file was paused, resumed or cancelled through the
    /// transfers API: the Tox client sends the file control.
    pub(crate) fn tox_file_control(&self, transfer: i64, action: TransferAction) {
        if let Ok(h) = self.tox() {
            let _ = h.cmds.send(Cmd::FileControl { transfer, action });
        }
    }

    pub(crate) fn tox_send_chat(&self, pk_hex: &str, text: &str) -> anyhow::Result<ChatMessage> {
        let h = self.tox()?;
        let pk = parse_pk(pk_hex)?;
        let chat = chat_id(&pk);
        anyhow::ensure!(
            self.db.lock().expect("db").tox_friend(&pk.to_hex())?.is_some(),
            "{} is not a Tox friend (add it first: POST /api/tox/friends)",
            pk.to_hex()
        );
        let m = self.db.lock().expect("db").chat_add_tracked(&chat, &self.nick(), text, true, Some(false))?;
        self.emit(Event::Chat { message: m.clone() });
        let _ = h.cmds.send(Cmd::Send { pk, line: m.id, text: text.to_owned() });
        Ok(m)
    }
}

/// How the node starts its Tox client.
pub(crate) struct ToxStart {
    /// Nodes to bootstrap off.
    pub bootstrap: Vec<(SocketAddr, PublicKey)>,
    /// TCP relays besides `[tox].tcp_relays` (the node's own, beside its bootstrap node).
    pub relays: Vec<(SocketAddr, PublicKey)>,
}

/// The address a bound bootstrap node can be reached at from this machine.
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip: std::net::IpAddr =
            if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// Load the profile (nickname = the node's nick; friends from the database and the
/// profile, both ways), bind the client and register it with the node. Returns the task.
pub(crate) async fn start(
    node: &Arc<Node>,
    start: ToxStart,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static> {
    let t = &node.cfg.tox;
    let profile_path = if t.profile.is_empty() { default_profile(&node.data_dir) } else { PathBuf::from(&t.profile) };
    let mut profile = load_profile(&profile_path)?;
    let mut changed = false;
    let mut nick = node.nick();
    while nick.len() > MAX_NICKNAME_LEN {
        nick.pop();
    }
    if profile.nickname != nick {
        profile.nickname = nick;
        changed = true;
    }
    {
        let db = node.db.lock().expect("db");
        for f in db.tox_friends()? {
            match PublicKey::from_hex(&f.pk) {
                Some(pk) => changed |= profile.add_friend(pk),
                None => tracing::warn!("ignoring a Tox contact that is not a key: {:?}", f.pk),
            }
        }
        for pk in &profile.friends {
            db.tox_friend_add(&pk.to_hex())?;
        }
    }
    if changed {
        crate::tox::profile::save(&profile, &profile_path)
            .with_context(|| format!("saving {}", profile_path.display()))?;
    }
    // Friends' files of the last run cannot go on (their rows were `running`, are queued
    // again by the engine's recovery, or paused): they fail, and resume as new rows when
    // the friends send them again.
    let left: Vec<i64> = node
        .db
        .lock()
        .expect("db")
        .transfers()?
        .iter()
        .filter(|t| t.network == Network::Tox)
        .filter(|t| matches!(t.state, TransferState::Queued | TransferState::Running | TransferState::Paused))
        .map(|t| t.id)
        .collect();
    for id in left {
        node.tox_row_failed(id, "interrupted by a restart of the node");
    }
    let mut client = bind(t.listen, &profile).await?;
    client.set_transport(crate::tox::relay::Transport {
        udp: t.udp,
        tcp_relays: t
            .tcp_relays
            .iter()
            .filter_map(|s| crate::tox::parse_node_spec(s).map_err(|e| tracing::warn!("[tox].tcp_relays: {e}")).ok())
            .chain(start.relays.iter().copied())
            .collect(),
    });
    client.bootstrap(&start.bootstrap);
    // And off the DHT nodes known at the last stop.
    let saved = node.db.lock().expect("db").setting(NODES_SETTING)?.unwrap_or_default();
    client.bootstrap(&parse_saved_nodes(&saved));
    // Our unanswered requests go out again.
    let outgoing = node.db.lock().expect("db").tox_outgoing()?;
    for (id, message) in outgoing {
        match id.parse::<ToxId>() {
            Ok(id) => {
                if let Err(e) = client.tox().send_friend_request(Instant::now(), &id, &message) {
                    tracing::warn!("tox: friend request to {}: {e}", id.pk.to_hex());
                }
            }
            Err(e) => tracing::warn!("tox: dropping a stored request to {id:?}: {e}"),
        }
    }
    conference::load(node, client.tox());
    group::load(node, client.tox());
    let addr = client.local_addr()?;
    let id = profile.tox_id().to_hex();
    let (tx, rx) = mpsc::unbounded_channel();
    let live =
        profile.friends.iter().map(|pk| (*pk, Live { progress: Progress::AwaitingDhtKey, online: false })).collect();
    let handle = Arc::new(ToxHandle {
        cmds: tx,
        shared: Mutex::new(Shared {
            id: id.clone(),
            address: addr.to_string(),
            announced: false,
            live,
            conferences: Default::default(),
            groups: Default::default(),
        }),
    });
    node.tox.set(handle).map_err(|_| anyhow!("the Tox client runs already"))?;
    crate::app::say!("tox client: {} friends, listening on {addr}", profile.friends.len());
    crate::app::say!("tox id: {id}");
    let detail =
        if start.bootstrap.is_empty() { format!("Tox ID {id}; no bootstrap node") } else { format!("Tox ID {id}") };
    node.set_network("tox_client", SessionState::Starting, &addr.to_string(), &detail);
    let task = Task {
        node: node.clone(),
        client,
        profile,
        profile_path,
        bootstrap: start.bootstrap,
        inflight: HashMap::new(),
        parts: HashMap::new(),
        last_bootstrap: Instant::now(),
        last_save: Instant::now(),
        announced: false,
        files: None,
        rows: Vec::new(),
        sends: Vec::new(),
        imported: false,
    };
    Ok(task.run(rx))
}

/// Binds `listen`, or any free port on the same address when that port is taken (a second
/// node on the machine with the default `[tox].listen`).
async fn bind(listen: SocketAddr, profile: &Profile) -> anyhow::Result<ToxClient> {
    match ToxClient::bind(listen, profile, onion_rendezvous(profile)).await {
        Ok(c) => Ok(c),
        Err(e) if listen.port() != 0 && addr_in_use(&e) => {
            let any = SocketAddr::new(listen.ip(), 0);
            let c = ToxClient::bind(any, profile, onion_rendezvous(profile)).await.context("tox client")?;
            tracing::warn!("tox: {listen} is taken; listening on {} instead", c.local_addr()?);
            crate::app::say!("tox client: {listen} is taken; using {} instead", c.local_addr()?);
            Ok(c)
        }
        Err(e) => Err(e.context("tox client")),
    }
}

/// Saved DHT nodes: `ADDR:KEY,...` (ADDR as `SocketAddr` prints it, `[v6]:port` too).
fn format_saved_nodes(nodes: impl IntoIterator<Item = (SocketAddr, PublicKey)>) -> String {
    nodes.into_iter().map(|(a, k)| format!("{a}:{}", k.to_hex())).collect::<Vec<_>>().join(",")
}

/// The saved DHT nodes; entries that do not parse are skipped.
fn parse_saved_nodes(s: &str) -> Vec<(SocketAddr, PublicKey)> {
    s.split(',')
        .filter_map(|spec| {
            let (addr, key) = spec.trim().rsplit_once(':')?;
            Some((addr.parse().ok()?, PublicKey::from_hex(key)?))
        })
        .take(SAVED_NODES)
        .collect()
}

fn addr_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse))
}

struct Task {
    node: Arc<Node>,
    client: ToxClient,
    profile: Profile,
    profile_path: PathBuf,
    bootstrap: Vec<(SocketAddr, PublicKey)>,
    /// (friend, receipt) → line id.
    inflight: HashMap<(PublicKey, u32), i64>,
    /// line id → parts not yet delivered.
    parts: HashMap<i64, usize>,
    last_bootstrap: Instant,
    last_save: Instant,
    announced: bool,
    /// Files friends send (created at the first one): complete ones land in the downloads
    /// folder, partial ones wait in the data dir's `tox-partial` for a resume.
    files: Option<crate::tox::files::Receiver>,
    /// A profile was imported: the task ends (the next start uses it).
    imported: bool,
    /// The files friends send being received, as transfer rows.
    rows: Vec<FileRow>,
    /// The files we send to friends, as uploads.
    sends: Vec<SendRow>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) -> anyhow::Result<()> {
        // The conferences loaded from the last run, for the API.
        self.sync_conferences();
        self.sync_groups();
        let shutdown = self.node.shutdown.clone();
        loop {
            let until = tokio::time::Instant::now() + REFRESH;
            let wake = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.save_nodes();
                    self.client.shutdown().await;
                    self.node.set_network("tox_client", SessionState::Offline, "", "stopped");
                    return Ok(());
                }
                w = self.client.next_with(Some(until), &mut rx) => w,
            };
            match wake {
                Wake::Event(ev) => self.on_event(ev),
                Wake::Command(c) => self.on_command(c),
                Wake::Timeout => {}
                Wake::Closed => return Ok(()),
            }
            if self.imported {
                self.client.shutdown().await;
                let id = self.profile.tox_id().to_hex();
                crate::app::say!("tox client: profile imported; restart to go online as {id}");
                self.node.set_network(
                    "tox_client",
                    SessionState::Offline,
                    "",
                    &format!("profile imported: restart the node to go online as Tox ID {id}"),
                );
                return Ok(());
            }
            self.refresh();
        }
    }

    fn handle(&self) -> &ToxHandle {
        self.node.tox.get().expect("registered before the task runs")
    }

    fn set_live(&self, pk: PublicKey, f: impl FnOnce(&mut Live)) {
        let mut s = self.handle().shared.lock().expect("tox");
        let l = s.live.entry(pk).or_insert(Live { progress: Progress::AwaitingDhtKey, online: false });
        f(l);
    }

    /// The network status, and bootstrapping again while the DHT is empty.
    fn refresh(&mut self) {
        let announced = self.client.tox().is_announced();
        if announced != self.announced {
            self.announced = announced;
            self.handle().shared.lock().expect("tox").announced = announced;
            let (id, addr) = {
                let s = self.handle().shared.lock().expect("tox");
                (s.id.clone(), s.address.clone())
            };
            let state = if announced { SessionState::Online } else { SessionState::Starting };
            self.node.set_network("tox_client", state, &addr, &format!("Tox ID {id}"));
        }
        if !self.bootstrap.is_empty()
            && !self.client.tox().dht().is_connected()
            && self.last_bootstrap.elapsed() >= REBOOTSTRAP
        {
            self.last_bootstrap = Instant::now();
            self.client.bootstrap(&self.bootstrap);
        }
        if self.last_save.elapsed() >= SAVE_NODES_EVERY {
            self.save_nodes();
        }
        self.cancel_stopped_sends();
    }

    /// Remembers the DHT nodes closest to us (`HOST:PORT:KEY,...`) for the next start.
    fn save_nodes(&mut self) {
        self.last_save = Instant::now();
        let dht = self.client.tox().dht();
        let nodes = dht.closest_nodes(&dht.pk(), SAVED_NODES);
        if nodes.is_empty() {
            return;
        }
        let list = format_saved_nodes(nodes.iter().map(|n| (n.addr, n.pk)));
        let saved = self.node.db.lock().expect("db").set_setting(NODES_SETTING, &list);
        if let Err(e) = saved {
            tracing::warn!("tox: cannot save the DHT nodes: {e:#}");
        }
    }

    fn save_profile(&self) {
        if let Err(e) = crate::tox::profile::save(&self.profile, &self.profile_path) {
            tracing::warn!("tox: cannot save {}: {e}", self.profile_path.display());
        }
    }

    fn add_friend(&mut self, pk: PublicKey) -> anyhow::Result<()> {
        self.client.tox().add_friend(Instant::now(), pk)?;
        self.set_live(pk, |_| {});
        if self.profile.add_friend(pk) {
            self.save_profile();
        }
        Ok(())
    }

    fn on_command(&mut self, c: Cmd) {
        match c {
            Cmd::Request { id, message, reply } => {
                let r =
                    self.client.tox().send_friend_request(Instant::now(), &id, &message).map_err(anyhow::Error::from);
                if r.is_ok() {
                    self.set_live(id.pk, |_| {});
                    if self.profile.add_friend(id.pk) {
                        self.save_profile();
                    }
                }
                let _ = reply.send(r);
            }
            Cmd::Add { pk, reply } => {
                let _ = reply.send(self.add_friend(pk));
            }
            Cmd::Remove { pk, reply } => {
                self.client.tox().remove_friend(Instant::now(), &pk);
                self.handle().shared.lock().expect("tox").live.remove(&pk);
                self.inflight.retain(|(f, _), _| *f != pk);
                let before = self.profile.friends.len();
                self.profile.friends.retain(|f| *f != pk);
                if self.profile.friends.len() != before {
                    self.save_profile();
                }
                let _ = reply.send(Ok(()));
            }
            Cmd::Send { pk, line, text } => self.send_line(pk, line, &text),
            Cmd::Export { passphrase, reply } => {
                let bytes =
                    crate::tox::profile::savedata_bytes(&self.profile, passphrase.as_deref().map(str::as_bytes));
                let _ = reply.send(Ok(bytes));
            }
            Cmd::FileControl { transfer, action } => self.file_control(transfer, action),
            Cmd::SendFile { pk, path, reply } => {
                let _ = reply.send(self.send_file(pk, &path));
            }
            Cmd::Conference(c) => self.on_conference_cmd(c),
            Cmd::Group(c) => self.on_group_cmd(c),
            Cmd::Import { profile, reply } => {
                let r = self.import(*profile);
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok {
                    self.imported = true;
                }
            }
        }
    }

    /// Replaces the profile file (the old one copied to `.bak`) and the stored friends.
    fn import(&mut self, profile: Profile) -> anyhow::Result<()> {
        let mut bak = self.profile_path.clone().into_os_string();
        bak.push(".bak");
        let bak = PathBuf::from(bak);
        if self.profile_path.exists() {
            std::fs::copy(&self.profile_path, &bak).with_context(|| format!("backing up to {}", bak.display()))?;
        }
        crate::tox::profile::save(&profile, &self.profile_path)
            .with_context(|| format!("writing {}", self.profile_path.display()))?;
        let db = self.node.db.lock().expect("db");
        let keep: std::collections::HashSet<String> = profile.friends.iter().map(|pk| pk.to_hex()).collect();
        for f in db.tox_friends()? {
            if !keep.contains(&f.pk) {
                db.tox_friend_remove(&f.pk)?;
            }
        }
        for pk in &keep {
            db.tox_friend_add(pk)?;
        }
        drop(db);
        // The running client keeps the old keys: nothing may save them over the import.
        self.profile = profile;
        Ok(())
    }

    /// Sends a stored line if the friend is online and it is not on its way already.
    fn send_line(&mut self, pk: PublicKey, line: i64, text: &str) {
        if self.parts.contains_key(&line) || !self.client.tox().is_online(&pk) {
            return; // in flight, or it goes when the friend comes online
        }
        let (kind, body) = message_kind(text);
        let parts = split_message(body, MAX_MESSAGE_LEN);
        let mut sent = 0;
        for p in &parts {
            match self.client.tox().send_message(Instant::now(), &pk, kind, p) {
                Ok(r) => {
                    self.inflight.insert((pk, r), line);
                    sent += 1;
                }
                Err(e) => {
                    tracing::info!("tox: message to {}: {e}", pk.to_hex());
                    break;
                }
            }
        }
        if sent > 0 {
            self.parts.insert(line, sent);
        }
    }

    fn on_event(&mut self, ev: omnipeer_tox::tox::ToxEvent) {
        use omnipeer_tox::tox::ToxEvent as E;
        let node = self.node.clone();
        match ev {
            E::FriendRequest { from, message } => {
                let hex = from.to_hex();
                tracing::info!("tox: friend request from {hex}: {message}");
                if node.cfg.tox.auto_accept {
                    let added = node.db.lock().expect("db").tox_friend_add(&hex);
                    if let Err(e) = added {
                        tracing::warn!("tox: {e:#}");
                        return;
                    }
                    match self.add_friend(from) {
                        Ok(()) => node.emit_friend(&from),
                        Err(e) => tracing::warn!("tox: accepting {hex}: {e:#}"),
                    }
                    return;
                }
                let kept = node.db.lock().expect("db").tox_request_add(&hex, &message);
                match kept {
                    Ok(request) => node.emit(Event::ToxRequest { request, pending: true }),
                    Err(e) => tracing::warn!("tox: cannot keep a friend request: {e:#}"),
                }
            }
            E::FriendOnline { friend } => {
                self.set_live(friend, |l| {
                    l.online = true;
                    l.progress = Progress::Connected;
                });
                let _ = node.db.lock().expect("db").tox_outgoing_done(&friend.to_hex());
                node.emit_friend(&friend);
                // Lines written while it was away go now, oldest first.
                let waiting = node.db.lock().expect("db").chat_undelivered(&chat_id(&friend)).unwrap_or_default();
                for m in waiting {
                    self.send_line(friend, m.id, &m.text);
                }
            }
            E::FriendOffline { friend } => {
                self.set_live(friend, |l| l.online = false);
                // Receipts for what was in flight will not come: send again next time.
                let lost: Vec<(PublicKey, u32)> = self.inflight.keys().filter(|(f, _)| *f == friend).copied().collect();
                for k in lost {
                    if let Some(line) = self.inflight.remove(&k) {
                        self.parts.remove(&line);
                    }
                }
                node.emit_friend(&friend);
            }
            E::Message { friend, kind, text } => {
                let nick = self.display_name(&friend);
                let text = match kind {
                    MessageKind::Action => format!("/me {text}"),
                    MessageKind::Normal => text,
                };
                node.store_chat(&chat_id(&friend), &nick, &text, false);
            }
            E::Receipt { friend, receipt } => {
                let Some(line) = self.inflight.remove(&(friend, receipt)) else { return };
                let left = self.parts.get_mut(&line).map(|n| {
                    *n = n.saturating_sub(1);
                    *n
                });
                if left == Some(0) {
                    self.parts.remove(&line);
                    let marked = node.db.lock().expect("db").chat_set_delivered(line);
                    match marked {
                        Ok(true) => node.emit(Event::ChatDelivered { chat: chat_id(&friend), id: line }),
                        Ok(false) => {}
                        Err(e) => tracing::warn!("tox: {e:#}"),
                    }
                }
            }
            E::Nickname { friend, name } => {
                let name: String = name.chars().filter(|c| !c.is_control()).collect();
                // (The database lock is released before emit_friend takes it again.)
                let changed = node.db.lock().expect("db").tox_set_nickname(&friend.to_hex(), &name);
                if matches!(changed, Ok(true)) {
                    node.emit_friend(&friend);
                }
            }
            E::Progress { friend, progress } => {
                self.set_live(friend, |l| l.progress = progress);
                node.emit_friend(&friend);
            }
            E::Announced => tracing::info!("tox: announced at a rendezvous node"),
            E::FriendFound { friend } => tracing::debug!("tox: {} found at a rendezvous node", friend.to_hex()),
            E::File(fe) => self.on_file(fe),
            E::Conference(ce) => self.on_conference(ce),
            E::Group(ge) => self.on_group(ge),
            #[allow(unreachable_patterns)]
            other => tracing::debug!("tox: {other:?}"),
        }
    }

    /// A friend's file: accepted into the downloads folder (resuming a partial one with
    /// the same file id), and noted in the friend's chat when it starts and when it is
    /// complete (docs/protocols/tox.md#file-transfers).
    fn on_file(&mut self, fe: omnipeer_tox::file::FileEvent) {
        use crate::tox::files::{Received, Receiver};
        use omnipeer_tox::file::FileEvent;
        if self.files.is_none() {
            let d = &self.node.data_dir;
            match Receiver::with_dirs(&self.node.downloads(), &d.join("tox-partial"), &d.join("tox-avatars")) {
                Ok(r) => self.files = Some(r),
                Err(e) => {
                    tracing::warn!("tox: cannot receive files: {e}");
                    return;
                }
            }
        }
        if self.on_sending(&fe) {
            return;
        }
        if let FileEvent::Chunk { friend, number, data, .. } = &fe {
            if !data.is_empty() {
                self.progress(friend, *number, data.len() as u64);
            }
        }
        let key = match &fe {
            FileEvent::Offer { friend, number, .. }
            | FileEvent::Chunk { friend, number, .. }
            | FileEvent::Broken { friend, number, .. }
            | FileEvent::Control { friend, number, .. } => (*friend, *number),
            FileEvent::ChunkRequest { friend, number, .. } => (*friend, *number),
        };
        let Some(r) = self.files.as_mut() else { return };
        let Some(what) = r.handle(self.client.tox(), &fe) else { return };
        let (friend, line) = match what {
            Received::Accepted { friend, name, size, from } => {
                self.row_start(friend, key.1, &name, size, from);
                let resume = if from > 0 { format!(", resuming at {from}") } else { String::new() };
                (friend, format!("(receiving file {name:?}, {size} bytes{resume})"))
            }
            Received::Complete { friend, path, size } => {
                if let Some(row) = self.row_take(&friend, key.1) {
                    let _ = self.node.db.lock().expect("db").transfer_done(row.id, &path.to_string_lossy(), size);
                    self.node.emit_tox_row(row.id);
                }
                (friend, format!("(received file {}, {size} bytes)", path.display()))
            }
            Received::Refused { friend, name, why } => {
                tracing::info!("tox: refused file {name:?} from {}: {why}", friend.to_hex());
                return;
            }
            Received::Broken { friend, name, have } => {
                if let Some(row) = self.row_take(&friend, key.1) {
                    let _ = self.node.db.lock().expect("db").transfer_set_bytes(row.id, have);
                    self.node.tox_row_failed(row.id, "interrupted");
                }
                (friend, format!("(file {name:?} interrupted at {have} bytes; it resumes when sent again)"))
            }
        };
        let nick = self.display_name(&friend);
        self.node.store_chat(&chat_id(&friend), &nick, &line, false);
    }

    /// Offers `path` to the online friend `pk` and lists it as a running upload; the
    /// friend's ACCEPT starts the chunk requests (docs/protocols/tox.md#file-transfers).
    fn send_file(&mut self, pk: PublicKey, path: &Path) -> anyhow::Result<u64> {
        use omnipeer_tox::file::KIND_DATA;
        if !self.handle().live(&pk).is_some_and(|l| l.online) {
            return Err(NodeError::NotConnected(format!("Tox friend {} (offline)", pk.to_hex())).into());
        }
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        let source = crate::tox::files::Source::open(path).with_context(|| format!("{}", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let file_id = crate::tox::files::file_id_for(path, &meta);
        let number = self.client.tox().file_send(Instant::now(), &pk, KIND_DATA, meta.len(), file_id, &name)?;
        let (upload, sent) = self.node.uploads.untracked(NETWORK, &pk.to_hex(), &path.to_string_lossy(), meta.len(), 0);
        self.sends.push(SendRow { upload, friend: pk, number, source, sent, path: path.to_path_buf() });
        Ok(upload)
    }

    fn send_take(&mut self, friend: &PublicKey, number: u8) -> Option<SendRow> {
        let i = self.sends.iter().position(|r| r.friend == *friend && r.number == number)?;
        Some(self.sends.swap_remove(i))
    }

    /// A file event of a transfer we send; true when it was one.
    fn on_sending(&mut self, fe: &omnipeer_tox::file::FileEvent) -> bool {
        use omnipeer_tox::file::{Control, Direction, FileEvent};
        let now = Instant::now();
        match fe {
            FileEvent::ChunkRequest { friend, number, position, length } => {
                let Some(row) = self.sends.iter_mut().find(|r| r.friend == *friend && r.number == *number) else {
                    return false;
                };
                if *length == 0 {
                    // The friend has the whole file.
                    let row = self.send_take(friend, *number).expect("found above");
                    self.node.uploads.finish(row.upload, Ok(()));
                    return true;
                }
                match row.source.read(*position, *length) {
                    Ok(data) => {
                        if let Err(e) = self.client.tox().file_chunk(now, friend, *number, *position, &data) {
                            tracing::debug!("tox: chunk at {position}: {e}");
                        } else {
                            row.sent.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        let e = format!("reading {}: {e}", row.path.display());
                        let row = self.send_take(friend, *number).expect("found above");
                        let _ = self.client.tox().file_control(now, friend, Direction::Sending, *number, Control::Kill);
                        self.node.uploads.finish(row.upload, Err(e));
                    }
                }
                true
            }
            FileEvent::Control { friend, direction: Direction::Sending, number, control } => {
                match control {
                    Control::Seek(pos) => {
                        if let Some(row) = self.sends.iter().find(|r| r.friend == *friend && r.number == *number) {
                            self.node.uploads.set_start(row.upload, *pos);
                        }
                    }
                    Control::Kill => {
                        if let Some(row) = self.send_take(friend, *number) {
                            self.node.uploads.finish(row.upload, Err("the friend cancelled the transfer".into()));
                        }
                    }
                    _ => {}
                }
                true
            }
            FileEvent::Broken { friend, direction: Direction::Sending, number } => {
                if let Some(row) = self.send_take(friend, *number) {
                    self.node.uploads.finish(row.upload, Err("the friend went offline".into()));
                }
                true
            }
            _ => false,
        }
    }

    /// Uploads to friends cancelled through `DELETE /api/uploads/{id}`: a KILL to the friend.
    fn cancel_stopped_sends(&mut self) {
        use omnipeer_tox::file::{Control, Direction};
        let stopped: Vec<(PublicKey, u8)> = self
            .sends
            .iter()
            .filter(|r| {
                self.node.uploads.stop_flag(r.upload).is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
            })
            .map(|r| (r.friend, r.number))
            .collect();
        for (friend, number) in stopped {
            let _ = self.client.tox().file_control(Instant::now(), &friend, Direction::Sending, number, Control::Kill);
            if let Some(row) = self.send_take(&friend, number) {
                self.node.uploads.finish(row.upload, Err(crate::upload::CANCELLED.into()));
            }
        }
    }

    /// A friend's file was accepted: a running download row of the node's transfers, with
    /// the friend as its source (network `tox`, source = its public key).
    fn row_start(&mut self, friend: PublicKey, number: u8, name: &str, size: u64, from: u64) {
        let t = crate::store::node::NewTransfer {
            network: Network::Tox,
            source: friend.to_hex(),
            hub: String::new(),
            remote_path: name.to_owned(),
            tth: None,
            name: name.to_owned(),
            size,
            local_path: self.node.downloads().join(name).to_string_lossy().into_owned(),
            group: None,
        };
        // Added and set running under one lock: the download engine never sees it queued.
        let store = self.node.db.lock().expect("db");
        let id = match store.transfer_add(&t) {
            Ok(info) => info.id,
            Err(e) => {
                tracing::warn!("tox: cannot list the file as a transfer: {e:#}");
                return;
            }
        };
        let _ = store.transfer_set_state(id, &[TransferState::Queued], TransferState::Running);
        let _ = store.transfer_set_bytes(id, from);
        drop(store);
        self.rows.retain(|r| !(r.friend == friend && r.number == number));
        self.rows.push(FileRow { id, friend, number, bytes: from, size, last: (Instant::now(), from) });
        self.node.emit_tox_row(id);
    }

    fn row_take(&mut self, friend: &PublicKey, number: u8) -> Option<FileRow> {
        let i = self.rows.iter().position(|r| r.friend == *friend && r.number == number)?;
        Some(self.rows.swap_remove(i))
    }

    /// Data arrived for a friend's file: a `progress` event at most every
    /// [`FILE_PROGRESS_EVERY`].
    fn progress(&mut self, friend: &PublicKey, number: u8, n: u64) {
        let Some(row) = self.rows.iter_mut().find(|r| r.friend == *friend && r.number == number) else { return };
        row.bytes += n;
        let now = Instant::now();
        let dt = now.duration_since(row.last.0);
        if dt < FILE_PROGRESS_EVERY {
            return;
        }
        let rate = (row.bytes.saturating_sub(row.last.1) as f64 / dt.as_secs_f64()) as u64;
        row.last = (now, row.bytes);
        let _ = self.node.db.lock().expect("db").transfer_set_bytes(row.id, row.bytes);
        self.node.emit(Event::Progress { id: row.id, bytes: row.bytes, size: row.size, rate });
    }

    /// Pause (Tox PAUSE), resume (ACCEPT after our pause) or cancel (KILL) a friend's
    /// file from its transfer row (docs/protocols/tox.md#file-transfers).
    fn file_control(&mut self, transfer: i64, action: TransferAction) {
        use omnipeer_tox::file::{Control, Direction, FileEvent};
        let Some(row) = self.rows.iter().find(|r| r.id == transfer) else {
            // Paused before the friend went away or the node restarted: nothing to resume.
            if action == TransferAction::Resume {
                self.node.tox_row_failed(transfer, "the friend no longer sends it");
            }
            return;
        };
        let (friend, number) = (row.friend, row.number);
        let now = Instant::now();
        let control = match action {
            TransferAction::Pause => Control::Pause,
            TransferAction::Resume => Control::Accept,
            TransferAction::Cancel => Control::Kill,
            TransferAction::Retry => return,
        };
        if let Err(e) = self.client.tox().file_control(now, &friend, Direction::Receiving, number, control) {
            tracing::info!("tox: file control {action:?} on transfer {transfer}: {e}");
        }
        match action {
            TransferAction::Resume => {
                let store = self.node.db.lock().expect("db");
                let _ = store.transfer_set_state(transfer, &[TransferState::Queued], TransferState::Running);
                drop(store);
                self.node.emit_tox_row(transfer);
            }
            TransferAction::Cancel => {
                // Our KILL ends it at the friend; the receiver closes its partial file as if
                // the friend had (the partial stays for a later offer of the same file id).
                self.row_take(&friend, number);
                if let Some(r) = self.files.as_mut() {
                    let killed =
                        FileEvent::Control { friend, direction: Direction::Receiving, number, control: Control::Kill };
                    r.handle(self.client.tox(), &killed);
                }
            }
            _ => {}
        }
    }

    fn display_name(&self, pk: &PublicKey) -> String {
        let hex = pk.to_hex();
        let f = self.node.db.lock().expect("db").tox_friend(&hex);
        match f {
            Ok(Some(f)) if !f.nickname.is_empty() => f.nickname,
            _ => hex[..8].to_owned(),
        }
    }
}

/// The profile path for a data dir (the default of `[tox].profile`).
pub fn default_profile(data_dir: &Path) -> PathBuf {
    data_dir.join("tox.profile")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn long_lines_split_at_char_boundaries_and_spaces() {
        assert_eq!(split_message("hello", 1372), vec!["hello"]);
        assert!(split_message("", 10).is_empty());
        let s = "é".repeat(700); // 1400 bytes
        let parts = split_message(&s, 1372);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 1372));
        assert_eq!(parts.concat(), s);
        let words = "word ".repeat(400); // 2000 bytes
        let parts = split_message(&words, 1372);
        assert!(parts[0].ends_with(' ') && parts[0].len() <= 1372);
        assert_eq!(parts.concat(), words);
        // A tiny limit still makes progress on 4-byte characters.
        assert_eq!(split_message("😀😀", 1).concat(), "😀😀");
    }

    proptest::proptest! {
        #[test]
        fn split_parts_fit_and_rejoin(text in "\\PC{0,3000}", max in 4usize..1500) {
            let parts = split_message(&text, max);
            proptest::prop_assert_eq!(parts.concat(), text.clone());
            for p in &parts {
                proptest::prop_assert!(!p.is_empty() && p.len() <= max, "{} bytes", p.len());
            }
        }
    }

    #[test]
    fn saved_nodes_round_trip_and_junk_is_skipped() {
        let k1 = PublicKey([1; 32]);
        let k2 = PublicKey([2; 32]);
        let nodes = vec![("127.0.0.1:33445".parse().unwrap(), k1), ("[::1]:5".parse().unwrap(), k2)];
        let s = format_saved_nodes(nodes.clone());
        assert_eq!(parse_saved_nodes(&s), nodes);
        assert!(parse_saved_nodes("").is_empty());
        let junk = format!("nonsense,1.2.3.4:5:XYZ,{s},1.2.3.4:{}", k1.to_hex());
        assert_eq!(parse_saved_nodes(&junk), nodes, "a bad address or key drops only its entry");
    }

    #[test]
    fn me_is_an_action() {
        assert_eq!(message_kind("/me waves"), (MessageKind::Action, "waves"));
        assert_eq!(message_kind("/me "), (MessageKind::Normal, "/me "));
        assert_eq!(message_kind("hi /me"), (MessageKind::Normal, "hi /me"));
    }

    #[test]
    fn keys_parse_in_either_case() {
        let k = "ab".repeat(32);
        assert_eq!(parse_pk(&k).unwrap().to_hex(), "AB".repeat(32));
        assert!(parse_pk("ab").is_err());
        assert!(parse_pk(&"zz".repeat(32)).is_err());
        assert_eq!(chat_id(&parse_pk(&k).unwrap()), format!("tox:friend:{}", "AB".repeat(32)));
    }

    #[test]
    fn unspecified_bootstrap_addresses_become_loopback() {
        assert_eq!(reachable("0.0.0.0:33445".parse().unwrap()), "127.0.0.1:33445".parse().unwrap());
        assert_eq!(reachable("10.1.2.3:5".parse().unwrap()), "10.1.2.3:5".parse().unwrap());
    }

    #[test]
    fn friends_requests_and_outgoing_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.sqlite");
        let a = "AB".repeat(32);
        let b = "CD".repeat(32);
        let id = ToxId::new(parse_pk(&b).unwrap(), omnipeer_tox::toxid::NoSpam([1, 2, 3, 4]));
        {
            let s = Store::open(&path).unwrap();
            s.tox_friend_add(&a).unwrap();
            s.tox_friend_add(&a).unwrap();
            assert!(s.tox_set_nickname(&a, "alice").unwrap());
            assert!(!s.tox_set_nickname(&a, "alice").unwrap(), "unchanged");
            s.tox_request_add(&b, "hi").unwrap();
            s.tox_request_add(&b, "hi again").unwrap();
            s.tox_outgoing_add(&id, "be my friend").unwrap();
            let m = s.chat_add_tracked("tox:friend:X", "me", "line", true, Some(false)).unwrap();
            assert_eq!(s.chat_undelivered("tox:friend:X").unwrap().len(), 1);
            assert!(s.chat_set_delivered(m.id).unwrap());
            assert!(!s.chat_set_delivered(m.id).unwrap(), "once");
            assert!(s.chat_undelivered("tox:friend:X").unwrap().is_empty());
            // Lines of other networks carry no delivery state.
            assert_eq!(s.chat_add("nmdc:hub", "x", "y", false).unwrap().delivered, None);
        }
        let s = Store::open(&path).unwrap();
        let f = s.tox_friends().unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].pk.as_str(), f[0].nickname.as_str()), (a.as_str(), "alice"));
        let r = s.tox_requests().unwrap();
        assert_eq!(r.len(), 1, "one request per key");
        assert_eq!(r[0].message, "hi again");
        assert_eq!(s.tox_outgoing().unwrap(), vec![(id.to_hex(), "be my friend".to_string())]);
        assert_eq!(s.chat_messages("tox:friend:X", None, 10).unwrap()[0].delivered, Some(true));
        assert_eq!(s.tox_request_take(&b).unwrap().unwrap().message, "hi again");
        assert!(s.tox_request_take(&b).unwrap().is_none());
        assert!(s.tox_outgoing_done(&b).unwrap());
        assert!(s.tox_friend_remove(&a).unwrap());
        assert!(!s.tox_friend_remove(&a).unwrap());
        assert!(s.tox_friends().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_taken_port_falls_back_to_any_free_one() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let profile = crate::tox::profile::new_profile("t");
        let c = bind(addr, &profile).await.unwrap();
        let got = c.local_addr().unwrap();
        assert_eq!(got.ip(), addr.ip());
        assert_ne!(got.port(), addr.port());
        // Port 0 asked for: any port, no fallback needed; a bad address is an error.
        assert!(bind("127.0.0.1:0".parse().unwrap(), &profile).await.is_ok());
        assert!(bind("192.0.2.1:9".parse().unwrap(), &profile).await.is_err());
    }

    #[test]
    fn old_requests_are_dropped_beyond_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("n.sqlite")).unwrap();
        for i in 0..(MAX_PENDING_REQUESTS + 5) {
            s.tox_request_add(&format!("{i:064X}"), "x").unwrap();
        }
        assert_eq!(s.tox_requests().unwrap().len(), MAX_PENDING_REQUESTS);
    }
}
