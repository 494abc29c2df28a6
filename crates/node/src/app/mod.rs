//! The node: every network the configuration enables, as server and client, behind one
//! state (SQLite), one event bus, one download engine, one search and one chat model.
//! `omnipeer up` runs [`up`]; the HTTP API (`crate::api`) is a view of [`Node`].

/// A line for the person who started the node, on stderr; a closed stderr (the terminal
/// went away) is ignored rather than a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use say;

/// The node's queries (all SQL lives under `crate::store`).
pub use crate::store::node as db;
pub mod browse;
pub mod error;
pub mod model;
pub mod net;
pub mod search;
pub mod segmented;
pub mod sessions;
pub mod settings;
pub mod tox;
pub mod transfers;
pub mod users;
pub mod wishlist;

use crate::config::Config;
use crate::nmdc::client::DcClient;
use crate::store::Store;
use anyhow::{anyhow, Context};
use model::{ChatInfo, ChatMessage, Event, NetworkInfo, Role, SessionState};
use net::{Network, SessionKey};
use search::{RawResult, SearchBook};
use sessions::{Session, SessionSpec};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events buffered for slow listeners of the node's fan-out (`/api/events`): one
/// further behind gets [`Event::Resync`] and re-reads over REST. (Drivers hand their
/// events to the node over bounded queues that lose nothing: crate::events.)
pub const EVENT_BUFFER: usize = 1024;
/// Longest chat line sent.
pub const MAX_CHAT_TEXT: usize = 2000;
/// Who says, in a private chat, that its Soulseek user is offline (a line of the node's,
/// not of a peer: `*` as IRC and DC clients mark such notes).
pub const OFFLINE_NOTE_NICK: &str = "*";
/// Pause between reconnection attempts of a client.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);

/// The running node.
pub struct Node {
    /// The configuration it runs.
    pub cfg: Config,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Incomplete folders of earlier settings whose partial downloads could not be moved
    /// to the one in force (another file system): still looked in (`partial_dir`).
    old_incomplete: Mutex<Vec<PathBuf>>,
    /// Bumped when the share folders change (the watcher watches the new ones).
    folders_changed: tokio::sync::watch::Sender<u64>,
    /// `<data_dir>/node.sqlite`.
    pub(crate) db: Arc<Mutex<Store>>,
    db_path: PathBuf,
    events: broadcast::Sender<Event>,
    networks: Mutex<BTreeMap<String, NetworkInfo>>,
    /// The hub and Soulseek server sessions (`app::sessions`).
    sessions: RwLock<Vec<Arc<Session>>>,
    /// This run's start (unix microseconds): the upload history's rows of this run are
    /// the ones in memory.
    run: i64,
    /// Wakes the wishlist's runner (an item was added).
    wishlist_wake: tokio::sync::Notify,
    /// Buddies and ignored users (`app::users`).
    marks: RwLock<users::Marks>,
    /// The DCC server, whose chats are in the chat model as `dcc:chat:NICK`.
    dcc: RwLock<Option<crate::dcc::DccServerHandle>>,
    /// The searches of this run.
    pub(crate) searches: Mutex<SearchBook>,
    /// Recent browses (`app::browse`).
    browses: Mutex<browse::BrowseCache>,
    engine: transfers::Engine,
    /// Cancelled to stop everything.
    pub shutdown: CancellationToken,
    /// The download limit shared by every download (changeable: `max_download_kib`).
    download_limit: Arc<crate::ratelimit::RateLimit>,
    /// Nick, folders, addresses, passwords, slots, retries and limits in force (the
    /// configuration, overridden through the API: `app::settings`).
    settings: RwLock<settings::Settings>,
    /// One settings change at a time.
    settings_change: Mutex<()>,
    /// The nick and password this run's own hub keeps for the node's client (set by
    /// [`up`]): that client logs in with that password while it has that nick, whatever
    /// `nmdc_password` says now (the hub takes a new one at the next start).
    pub(crate) own_hub_login: std::sync::OnceLock<(String, String)>,
    rescan: tokio::sync::watch::Sender<u64>,
    /// The Tox client, once `up` started it (`app::tox`).
    tox: std::sync::OnceLock<Arc<tox::ToxHandle>>,
    /// Upload slots, queue, limit and records shared by every network.
    pub uploads: Arc<crate::upload::Uploads>,
    /// The first scan of the share folders, run in the background by [`up`].
    pub share_scan: Arc<ShareScan>,
}

/// How `omnipeer up` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Accept a missing, empty or damaged `node.sqlite` in a data directory that holds
    /// state from an earlier run, and start with a new one (`omnipeer up --fresh-db`).
    pub fresh_db: bool,
}

/// The first scan of the share folders. It runs in the background so that every
/// listener and the API come up at once; the API reports it (`shares.state`:
/// `scanning`, then `ready`), and the NMDC and Soulseek clients log in once it is done
/// (they then index the share as a rescan does, from the file system's warm cache).
#[derive(Debug)]
pub struct ShareScan {
    /// Its progress; cancelled at shutdown.
    pub ctl: crate::share::ScanControl,
    ready: tokio::sync::watch::Sender<bool>,
}

impl ShareScan {
    fn new() -> ShareScan {
        ShareScan { ctl: crate::share::ScanControl::default(), ready: tokio::sync::watch::channel(false).0 }
    }

    /// `scanning` or `ready`.
    pub fn state(&self) -> &'static str {
        if *self.ready.borrow() {
            "ready"
        } else {
            "scanning"
        }
    }

    /// Wait until the scan is done; false if `shutdown` came first.
    async fn wait_ready(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::select! {
            r = rx.wait_for(|r| *r) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }
}

impl Node {
    /// Open the state (migrating it) and recover the queue after a stop or a crash.
    pub fn open(cfg: Config, data_dir: &Path, shutdown: CancellationToken) -> anyhow::Result<Arc<Node>> {
        Node::open_with(cfg, data_dir, shutdown, &UpOptions::default())
    }

    /// [`Node::open`] as `opts` ask. `node.sqlite` is checked first (see
    /// [`db::open_node_db`]): a missing, empty or damaged one in a data directory that
    /// holds state is refused unless `opts.fresh_db`; a good one is backed up.
    pub fn open_with(
        cfg: Config,
        data_dir: &Path,
        shutdown: CancellationToken,
        opts: &UpOptions,
    ) -> anyhow::Result<Arc<Node>> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let default_downloads = cfg.share.downloads.is_empty().then(|| data_dir.join("downloads"));
        let db_path = data_dir.join("node.sqlite");
        let store = db::open_node_db(data_dir, &db_path, default_downloads.as_deref(), opts.fresh_db)?;
        // The configuration file's values, then the ones set through the API over them.
        let default_share = data_dir.join("share");
        if cfg.share.folders.is_empty() {
            // The default folder is the node's own: created.
            std::fs::create_dir_all(&default_share)
                .with_context(|| format!("cannot create the share folder {}", default_share.display()))?;
        }
        let settings = Node::load_settings(&cfg, data_dir, &store)?;
        let share_folders: Vec<PathBuf> = settings.list_of("share_folders").iter().map(PathBuf::from).collect();
        // Folders the user named are theirs: one that is missing (an unmounted disk, a
        // typo) is not created, and the others are shared.
        let folders_key = if settings.list().iter().any(|s| s.key == "share_folders" && s.overridden) {
            "share_folders (set in the Settings, PUT /api/settings)"
        } else {
            "[share].folders"
        };
        for d in share_folders.iter().filter(|d| !d.is_dir()) {
            let why = if d.exists() { "is not a folder" } else { "does not exist" };
            tracing::warn!(
                "{folders_key}: {} {why}: not shared and not created (create it, then rescan: POST /api/shares/rescan)",
                d.display()
            );
        }
        let downloads = PathBuf::from(settings.text("downloads"));
        std::fs::create_dir_all(&downloads)
            .with_context(|| format!("cannot create the downloads folder {} (downloads)", downloads.display()))?;
        let incomplete = PathBuf::from(settings.text("incomplete"));
        std::fs::create_dir_all(&incomplete)
            .with_context(|| format!("cannot create the incomplete folder {} (incomplete)", incomplete.display()))?;
        let requeued = store.transfers_recover()?;
        if requeued > 0 {
            tracing::info!(requeued, "downloads interrupted by the last stop are queued again");
        }
        // What is on disk is what we have, whatever the database last heard.
        for t in store.transfers()? {
            if matches!(t.state.as_str(), "queued" | "paused") {
                let on_disk = transfers::partial_len(&incomplete.join(t.id.to_string()));
                if on_disk != t.bytes {
                    store.transfer_set_bytes(t.id, on_disk)?;
                }
            }
        }
        let marks = Node::load_marks(&store)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let download_limit = Arc::new(crate::ratelimit::RateLimit::unlimited());
        download_limit.set_rate(settings.get("max_download_kib") * 1024);
        let cfg_upload =
            (cfg.transfers.upload_slots, cfg.nmdc_client.slots, cfg.slsk_client.slots, settings.get("max_upload_kib"));
        Ok(Arc::new(Node {
            cfg,
            data_dir: data_dir.to_path_buf(),
            old_incomplete: Mutex::default(),
            folders_changed: tokio::sync::watch::channel(0).0,
            db: Arc::new(Mutex::new(store)),
            db_path,
            events,
            networks: Mutex::default(),
            sessions: RwLock::default(),
            marks: RwLock::new(marks),
            wishlist_wake: tokio::sync::Notify::new(),
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0),
            dcc: RwLock::default(),
            searches: Mutex::default(),
            browses: Mutex::default(),
            engine: transfers::Engine::default(),
            download_limit,
            settings: RwLock::new(settings),
            settings_change: Mutex::new(()),
            own_hub_login: std::sync::OnceLock::new(),
            shutdown,
            rescan: tokio::sync::watch::channel(0).0,
            tox: std::sync::OnceLock::new(),
            uploads: crate::upload::Uploads::new(
                cfg_upload.0,
                BTreeMap::from([("nmdc".to_owned(), cfg_upload.1), ("slsk".to_owned(), cfg_upload.2)]),
                cfg_upload.3,
            ),
            share_scan: Arc::new(ShareScan::new()),
        }))
        .inspect(|n: &Arc<Node>| n.uploads.set_banned(users::banned(&n.marks.read().expect("marks"))))
    }

    /// Events from now on, for a listener such as a WebSocket: the only `broadcast` in
    /// the node, where a listener that falls [`EVENT_BUFFER`] behind gets
    /// `RecvError::Lagged` (sent on as [`Event::Resync`]) instead of slowing the node.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publish an event.
    pub fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Record the state of a server role of the node (and publish it).
    pub fn set_network(&self, name: &str, state: SessionState, address: &str, detail: &str) {
        self.set_network_info(NetworkInfo {
            name: name.into(),
            role: if name.ends_with("_client") { Role::Client } else { Role::Server },
            state,
            address: address.into(),
            detail: detail.into(),
            session: None,
        });
    }

    /// Record a network role's state (and publish it when it changed).
    pub fn set_network_info(&self, n: NetworkInfo) {
        let changed = self.networks.lock().expect("networks").insert(n.name.clone(), n.clone()).as_ref() != Some(&n);
        if changed {
            self.emit(Event::Network { network: n });
        }
    }

    /// Every network role's state: the servers, then one entry per client session.
    pub fn networks(&self) -> Vec<NetworkInfo> {
        self.networks.lock().expect("networks").values().cloned().collect()
    }

    /// The state of the session `key`.
    pub fn network_info(&self, key: &SessionKey) -> Option<NetworkInfo> {
        self.networks.lock().expect("networks").get(&key.status_name()).cloned()
    }

    /// Ask for a share rescan.
    pub fn request_rescan(&self) {
        // Asked of the one index first: the network that gets to it walks, the others
        // take its snapshot.
        if let Some(s) = self.uploads.share() {
            s.request_rescan();
        }
        self.rescan.send_modify(|n| *n += 1);
    }

    /// Start a search on every logged-in session of every network that can search.
    pub async fn search(&self, query: &str) -> anyhow::Result<search::Search> {
        let s = self
            .searches
            .lock()
            .expect("searches")
            .start(query, Instant::now(), db::now())
            .ok_or_else(|| NodeError::Invalid("the query has no words to search for".into()))?;
        let mut sent = 0;
        for session in self.sessions() {
            let Some(client) = session.client() else { continue };
            match client.search(&s.query, &self.searches, s.id, &session.spec.label).await {
                Ok(()) => {
                    sent += 1;
                    self.searches.lock().expect("searches").sent(s.id, session.key().status_name());
                }
                Err(e) => tracing::info!("search on {}: {e:#}", session.key().describe()),
            }
        }
        if sent == 0 {
            return Err(NotConnected("any hub or Soulseek server to search on".into()).into());
        }
        self.search_get(s.id)
    }

    /// The searches of this run, oldest first.
    pub fn search_list(&self) -> Vec<search::Search> {
        self.searches.lock().expect("searches").list().map(search::Search::summary).collect()
    }

    /// One search with its results.
    pub fn search_get(&self, id: u64) -> anyhow::Result<search::Search> {
        let book = self.searches.lock().expect("searches");
        Ok(book.get(id).cloned().ok_or_else(|| NodeError::NotFound(format!("no search {id}")))?)
    }

    /// Downloads by state, every state present (0 when none).
    pub fn transfer_counts(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut counts: BTreeMap<String, u64> =
            net::TransferState::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
        counts.extend(self.db.lock().expect("db").transfer_counts()?);
        Ok(counts)
    }

    /// Lines of a chat, oldest first: after line `after`, at most `limit`.
    pub fn chat_messages(&self, chat: &str, after: Option<i64>, limit: usize) -> anyhow::Result<Vec<ChatMessage>> {
        self.db.lock().expect("db").chat_messages(&ChatInfo::canonical_id(chat), after, limit)
    }

    /// A page of the shared files: (path, size, TTH).
    pub fn shared_files(&self, offset: usize, limit: usize) -> anyhow::Result<Vec<(String, u64, Option<String>)>> {
        self.db.lock().expect("db").shared_files(offset, limit)
    }

    fn add_result(&self, raw: RawResult) {
        if self.is_ignored(raw.source.network, &raw.source.user) {
            return;
        }
        let changed = self.searches.lock().expect("searches").add(raw, Instant::now());
        for (r, sources) in changed {
            self.emit(Event::SearchResult { search: r.search, result: r, source_count: sources });
        }
    }

    /// Where a search result would land (the downloads folder, by its name) and whether a
    /// file is there already: (name, destination folder, the files in the way), for the
    /// warning before a download of a file already on disk.
    pub fn result_on_disk(&self, result: u64) -> anyhow::Result<(String, String, Vec<String>)> {
        let name = self
            .searches
            .lock()
            .expect("searches")
            .result(result)
            .map(|r| r.name.clone())
            .ok_or_else(|| NodeError::NotFound(format!("no search result {result}")))?;
        let dir = self.downloads();
        let existing = omnipeer_dcc::SafeName::sanitize(&name)
            .map(|n| dir.join(n.as_str()))
            .ok()
            .filter(|p| p.is_file())
            .map(|p| vec![p.to_string_lossy().into_owned()])
            .unwrap_or_default();
        Ok((name, dir.to_string_lossy().into_owned(), existing))
    }

    /// Queue a download of a search result from one of its sources.
    pub fn download_result(
        &self,
        result: u64,
        source: Option<usize>,
        network: Option<Network>,
    ) -> anyhow::Result<model::TransferInfo> {
        let r = self
            .searches
            .lock()
            .expect("searches")
            .result(result)
            .cloned()
            .ok_or_else(|| NodeError::NotFound(format!("no search result {result}")))?;
        let idx = match (source, network) {
            (Some(i), _) => i,
            (None, Some(n)) => r
                .sources
                .iter()
                .position(|s| s.network == n)
                .ok_or_else(|| NodeError::NotFound(format!("result {result} has no source on {n}")))?,
            // Prefer NMDC with a TTH (verified on arrival) and free slots.
            (None, None) => (0..r.sources.len())
                .max_by_key(|&i| {
                    let s = &r.sources[i];
                    (
                        (s.network == Network::Nmdc && r.tth.is_some()) as u8,
                        (s.free_slots > 0) as u8,
                        std::cmp::Reverse(i),
                    )
                })
                .unwrap_or(0),
        };
        let s =
            r.sources.get(idx).ok_or_else(|| NodeError::NotFound(format!("result {result} has no source {idx}")))?;
        let session = self
            .session(&SessionKey::new(s.network, &s.session))
            .ok_or_else(|| NotConnected(SessionKey::new(s.network, &s.session).describe()))?;
        let tth = if s.network == Network::Nmdc { r.tth.clone() } else { None };
        // No source chosen and a TTH to check blocks against: every other source of the
        // file (NMDC users with its TTH, Soulseek users with the same name and size) is
        // kept for a segmented download (`segmented`).
        let mut extra = Vec::new();
        if source.is_none() && network.is_none() && tth.is_some() && r.size > 0 {
            for (i, o) in r.sources.iter().enumerate() {
                if i == idx || !matches!(o.network, Network::Nmdc | Network::Slsk) {
                    continue;
                }
                let Some(sess) = self.session(&SessionKey::new(o.network, &o.session)) else { continue };
                extra.push(crate::store::segments::ExtraSource {
                    network: o.network,
                    hub: sess.spec.address.clone(),
                    source: o.user.clone(),
                    remote_path: o.path.clone(),
                });
            }
        }
        let dir = self.downloads();
        self.queue_download_sources(
            db::NewTransfer {
                network: s.network,
                source: s.user.clone(),
                hub: session.spec.address.clone(),
                remote_path: s.path.clone(),
                tth,
                name: r.name.clone(),
                size: r.size,
                local_path: String::new(),
                group: None,
            },
            &dir,
            &extra,
        )
    }

    fn store_chat(&self, chat: &str, nick: &str, text: &str, own: bool) {
        let m = self.db.lock().expect("db").chat_add(chat, nick, text, own);
        match m {
            Ok(m) => self.emit(Event::Chat { message: m }),
            Err(e) => tracing::warn!("cannot store a chat line: {e:#}"),
        }
    }

    /// Every chat: those with history, the hub's main chat and the rooms we are in.
    pub fn chats(&self) -> anyhow::Result<Vec<ChatInfo>> {
        let mut v = self.db.lock().expect("db").chats()?;
        let mut extra = Vec::new();
        for session in self.sessions() {
            let key = session.key();
            if session.spec.network == Network::Nmdc && session.client().is_some() {
                extra.push(key.chat_id("hub", ""));
            }
            for r in session.rooms() {
                extra.push(key.chat_id("room", &r));
            }
        }
        for id in extra {
            if !v.iter().any(|c| c.id == id) {
                if let Some(c) = ChatInfo::parse_id(&id) {
                    let info = ChatInfo::empty(id.clone(), &c);
                    v.push(info);
                }
            }
        }
        // DCC chats: open ones (a line may not have come yet), and whether each is open.
        let open: Vec<String> = self.dcc.read().expect("dcc").as_ref().map(|h| h.chat_nicks()).unwrap_or_default();
        for nick in &open {
            let id = format!("dcc:chat:{nick}");
            if !v.iter().any(|c| c.id == id) {
                v.push(ChatInfo {
                    id,
                    network: Network::Dcc,
                    session: String::new(),
                    kind: "chat".into(),
                    name: nick.clone(),
                    last: None,
                    online: None,
                });
            }
        }
        for c in v.iter_mut().filter(|c| c.network == Network::Dcc) {
            c.online = Some(open.iter().any(|n| n.eq_ignore_ascii_case(&c.name)));
        }
        // Tox friends, with or without history: nickname and online mark; conferences:
        // title (or peers' names) and whether anyone else is in; NGC groups: name and
        // whether anyone else is in.
        let tox = [
            ("friend", self.tox_chats()),
            ("conference", self.tox_conference_chats()),
            ("group", self.tox_group_chats()),
        ];
        for (kind, chats) in tox {
            for (id, name, online) in chats {
                match v.iter_mut().find(|c| c.id == id) {
                    Some(c) => {
                        c.name = name;
                        c.online = Some(online);
                    }
                    None => v.push(ChatInfo {
                        id,
                        network: Network::Tox,
                        session: String::new(),
                        kind: kind.into(),
                        name,
                        last: None,
                        online: Some(online),
                    }),
                }
            }
        }
        Ok(v)
    }

    /// Say something in a chat. PMs are stored at once; hub and room lines when the
    /// hub/server echoes them (the answer then has id 0).
    pub async fn send_chat(&self, chat: &str, text: &str) -> anyhow::Result<ChatMessage> {
        let id = ChatInfo::parse_id(chat).ok_or_else(|| NodeError::Invalid(format!("no chat {chat:?} (nmdc:hub, nmdc:pm:NICK, slsk:room:ROOM, slsk:pm:USER, tox:friend:PUBLICKEY, tox:conference:ID, tox:group:ID, dcc:chat:NICK; nmdc@LABEL:… and slsk@LABEL:… for the sessions of [[hubs]] and [[slsk_servers]])")))?;
        let text = text.trim_end();
        if text.is_empty() {
            return Err(NodeError::Invalid("nothing to say".into()).into());
        }
        if text.len() > MAX_CHAT_TEXT {
            return Err(NodeError::Invalid(format!("a chat line is at most {MAX_CHAT_TEXT} bytes")).into());
        }
        let name = id.name;
        let key = id.session();
        let mut nick = self.nick();
        let mut offline_note = false;
        match id.network {
            // A conference line goes to the peers online now, then is stored.
            Network::Tox if id.kind == "conference" => return self.tox_conference_send(name, text).await,
            // An NGC group line goes to the peers confirmed now, then is stored.
            Network::Tox if id.kind == "group" => return self.tox_group_send(name, text).await,
            // Stored at once (not delivered yet); sent when the friend is online.
            Network::Tox => return self.tox_send_chat(name, text),
            Network::Dcc => {
                let h = self.dcc.read().expect("dcc").clone().ok_or(NotConnected("the DCC server".into()))?;
                if h.say(Some(name), text) == 0 {
                    return Err(NotConnected("that DCC chat (it is closed)".into()).into());
                }
            }
            Network::Nmdc | Network::Slsk => {
                let session = self.session(&key).ok_or_else(|| NotConnected(key.describe()))?;
                let client = session.client().ok_or_else(|| NotConnected(key.describe()))?;
                if !session.spec.nick.is_empty() {
                    nick = session.spec.nick.clone();
                }
                match id.kind {
                    // Hub and room lines are stored when the hub or server echoes them
                    // (the answer then has id 0).
                    "hub" | "room" => {
                        if id.kind == "room" && !session.in_room(name) {
                            client.join_room(name);
                        }
                        client.say((id.kind == "room").then_some(name), text).await?;
                        return Ok(ChatMessage {
                            id: 0,
                            chat: chat.into(),
                            nick,
                            text: text.into(),
                            own: true,
                            ts: db::now(),
                            delivered: None,
                        });
                    }
                    _ => {
                        // A hub drops a message to a nick that is not there without a word,
                        // and a Soulseek server one to a user that does not exist: say so
                        // instead of storing a line nobody gets. A Soulseek server keeps a
                        // message for an offline user until they log in: said in the chat.
                        match client.presence(name).await? {
                            Some(p) if !p.exists => {
                                let why = match id.network {
                                    Network::Nmdc => format!(
                                        "{name} is not on {} (a private message reaches only someone online)",
                                        key.describe()
                                    ),
                                    _ => format!("{} has no user {name}", key.describe()),
                                };
                                return Err(NodeError::NotFound(why).into());
                            }
                            Some(p) if p.online == Some(false) => offline_note = true,
                            _ => {}
                        }
                        client.private_message(name, text).await?
                    }
                }
            }
        }
        let m = self.db.lock().expect("db").chat_add(chat, &nick, text, true)?;
        self.emit(Event::Chat { message: m.clone() });
        if offline_note {
            let note = format!("{} is offline: the server keeps the message until they log in", id.name);
            let n = self.db.lock().expect("db").chat_add(chat, OFFLINE_NOTE_NICK, &note, false)?;
            self.emit(Event::Chat { message: n });
        }
        Ok(m)
    }

    /// Share totals: (files, bytes, hashed).
    pub fn share_totals(&self) -> (u64, u64, u64) {
        self.db.lock().expect("db").shared_totals().unwrap_or((0, 0, 0))
    }

    fn record_share(&self, dc: &DcClient) {
        let Some(share) = dc.share() else { return };
        // The table is rewritten only when the share changed (a restart with the same
        // files writes nothing): a fingerprint of what the rows would hold is kept beside it.
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for f in share.files() {
                (f.nmdc_path(), f.size, f.tth.0).hash(&mut h);
            }
            format!("{:016x}", h.finish())
        };
        let db = self.db.lock().expect("db");
        if db.setting("shared_files_fingerprint").ok().flatten().as_deref() != Some(fingerprint.as_str()) {
            drop(db);
            let rows: Vec<(String, String, u64, i64, Option<String>)> = share
                .files()
                .iter()
                .map(|f| (f.real().to_string_lossy().into_owned(), f.nmdc_path(), f.size, 0, Some(f.tth.to_base32())))
                .collect();
            let mut db = self.db.lock().expect("db");
            match db.shared_files_replace(&rows) {
                Ok(()) => {
                    let _ = db.set_setting("shared_files_fingerprint", &fingerprint);
                }
                Err(e) => tracing::warn!("cannot store the share index: {e:#}"),
            }
        } else {
            drop(db);
        }
        let (files, bytes, _) = self.share_totals();
        self.emit(Event::Shares { files, bytes });
    }
}

impl Node {
    /// Every upload: running and queued (in queue order), then finished, newest first.
    /// Uploads of earlier runs follow those of this one (kept in `node.sqlite`).
    pub fn upload_list(&self) -> Vec<crate::upload::UploadInfo> {
        let mut v = self.uploads.list();
        match self.db.lock().expect("db").upload_history(self.run, crate::upload::KEEP_FINISHED) {
            Ok(old) => v.extend(old),
            Err(e) => tracing::warn!("cannot read the upload history: {e:#}"),
        }
        v
    }

    /// Change the upload limit over every network at run time (KiB/s, 0: none);
    /// running uploads follow from their next chunk.
    pub fn set_upload_limit(&self, kib: u64) {
        self.uploads.set_limit_kib(kib);
    }

    /// A number in force (see [`settings::KEYS`]).
    pub fn setting(&self, name: &str) -> u64 {
        self.settings.read().expect("settings").get(name)
    }

    /// A text setting in force (nick, folder, address, password).
    pub fn setting_text(&self, name: &str) -> String {
        self.settings.read().expect("settings").text(name)
    }

    /// The nick on every network (a session's own, or `nmdc_nick` / `slsk_nick`, win).
    pub fn nick(&self) -> String {
        self.setting_text("nick")
    }

    /// The shared folders.
    pub fn share_folders(&self) -> Vec<PathBuf> {
        self.settings.read().expect("settings").list_of("share_folders").iter().map(PathBuf::from).collect()
    }

    /// Where finished downloads go (those queued from now on).
    pub fn downloads(&self) -> PathBuf {
        PathBuf::from(self.setting_text("downloads"))
    }

    /// Where partial downloads are kept, one folder per transfer.
    pub fn incomplete(&self) -> PathBuf {
        PathBuf::from(self.setting_text("incomplete"))
    }

    /// The folder of transfer `id`'s partial file: in the incomplete folder in force,
    /// unless it is still in one of earlier settings (not moved: another file system).
    pub fn partial_dir(&self, id: i64) -> PathBuf {
        let here = self.incomplete().join(id.to_string());
        if here.exists() {
            return here;
        }
        let old = self.old_incomplete.lock().expect("old incomplete");
        old.iter().map(|d| d.join(id.to_string())).find(|d| d.exists()).unwrap_or(here)
    }

    /// The settings: the configuration file's values under those stored in node.sqlite.
    fn load_settings(cfg: &Config, data_dir: &Path, store: &Store) -> anyhow::Result<settings::Settings> {
        use serde_json::json;
        let t = &cfg.transfers;
        let or_default = |v: &str, d: &str| if v.is_empty() { data_dir.join(d) } else { PathBuf::from(v) };
        let folders: Vec<String> = if cfg.share.folders.is_empty() {
            vec![data_dir.join("share").display().to_string()]
        } else {
            cfg.share.folders.clone()
        };
        let from_file: BTreeMap<&'static str, serde_json::Value> = BTreeMap::from([
            ("nick", json!(cfg.node.nick)),
            ("nmdc_nick", json!("")),
            ("slsk_nick", json!("")),
            ("description", json!(cfg.nmdc_client.description)),
            ("share_folders", json!(folders)),
            ("downloads", json!(or_default(&cfg.share.downloads, "downloads").display().to_string())),
            ("incomplete", json!(or_default(&cfg.share.incomplete, "incomplete").display().to_string())),
            ("nmdc_listen", json!(cfg.nmdc_client.listen)),
            ("slsk_listen", json!(cfg.slsk_client.listen.to_string())),
            ("api_listen", json!(cfg.api.listen.to_string())),
            ("nmdc_password", json!(cfg.nmdc_client.password)),
            ("slsk_password", json!(cfg.slsk_client.password)),
            ("global_slots", json!(t.global_slots)),
            ("network_slots", json!(t.network_slots)),
            ("max_retries", json!(t.max_retries)),
            ("retry_base_secs", json!(t.retry_base_secs)),
            ("max_download_kib", json!(t.max_download_kib)),
            ("max_upload_kib", json!(t.max_upload_kib)),
        ]);
        let mut stored = BTreeMap::new();
        for k in settings::KEYS {
            if let Some(v) = store.setting(&settings::stored_key(k.name))? {
                stored.insert(k.name.to_owned(), v);
            }
        }
        Ok(settings::Settings::new(from_file, &stored))
    }

    /// The settings, for the API.
    pub fn settings(&self) -> Vec<settings::SettingInfo> {
        let mut list = self.settings.read().expect("settings").list();
        for s in list.iter_mut().filter(|s| s.key == "api_listen") {
            // What the file says now against what this run listens on.
            s.restart_needed = self.cfg.api.listen.to_string() != s.value.as_str().unwrap_or("");
        }
        list
    }

    /// Change settings (`{"key": value | null}`; null: back to the configuration file's
    /// value): checked whole first (shapes, then folders and addresses on this machine),
    /// then kept in the database in one transaction and put in force at once: a nick,
    /// description, listen address or password change logs the sessions it concerns in
    /// again; new share folders are rescanned and served on every network; downloads
    /// queued from now on go to the new downloads folder; partial downloads move to the
    /// new incomplete folder (running ones when they stop). Nothing changes when any
    /// value is wrong (the error names the key: [`settings::BadSetting`]).
    pub fn change_settings(
        &self,
        change: &serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<Vec<settings::SettingInfo>> {
        let _one = self.settings_change.lock().expect("settings change");
        let before = self.settings.read().expect("settings").clone();
        let plan = before.plan(change)?;
        let next = before.with(&plan);
        self.check_on_disk(&before, &next)?;
        self.db.lock().expect("db").set_settings(&settings::Settings::writes(&plan))?;
        *self.settings.write().expect("settings") = next.clone();

        let changed = |k: &str| before.value(k) != next.value(k);
        self.download_limit.set_rate(next.get("max_download_kib") * 1024);
        self.uploads.set_limit_kib(next.get("max_upload_kib"));
        self.engine.wake();
        if changed("share_folders") {
            let folders = self.share_folders();
            tracing::info!(
                "share folders now {}: rescanning",
                folders.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
            if let Some(index) = self.uploads.share() {
                index.set_roots(folders);
            }
            self.folders_changed.send_modify(|n| *n += 1);
            self.request_rescan();
        }
        if changed("incomplete") {
            self.move_partials(&PathBuf::from(before.text("incomplete")));
        }
        // The sessions that log in again: those whose nick, description, address or
        // password changed. (A hub session that started sharing nothing picks up new
        // folders only by logging in again: crate::nmdc::client::DcClient::reshare.)
        let shared_nothing = before.list_of("share_folders").is_empty() && changed("share_folders");
        for s in self.sessions() {
            let primary = s.spec.label.is_empty();
            let again = sessions::nick_in(&before, &s.spec) != sessions::nick_in(&next, &s.spec)
                || match s.spec.network {
                    net::Network::Nmdc => {
                        changed("description")
                            || shared_nothing
                            || (primary && (changed("nmdc_listen") || changed("nmdc_password")))
                    }
                    net::Network::Slsk => primary && (changed("slsk_listen") || changed("slsk_password")),
                    _ => false,
                };
            if again {
                s.log_in_again();
            }
        }
        drop(_one);
        Ok(self.settings())
    }

    /// What a settings change needs of this machine: each share folder is a folder, the
    /// downloads and incomplete folders can be created and written, a new listen address
    /// is free. A folder created for the check is removed again when the change fails.
    fn check_on_disk(&self, before: &settings::Settings, next: &settings::Settings) -> anyhow::Result<()> {
        use settings::bad;
        let changed = |k: &str| before.value(k) != next.value(k);
        if changed("share_folders") {
            for f in next.list_of("share_folders") {
                let p = Path::new(&f);
                if !p.exists() {
                    return Err(bad("share_folders", format!("{f} does not exist")));
                }
                if !p.is_dir() {
                    return Err(bad("share_folders", format!("{f} is not a folder")));
                }
                if std::fs::read_dir(p).is_err() {
                    return Err(bad("share_folders", format!("{f} cannot be read")));
                }
            }
        }
        for key in ["nmdc_listen", "slsk_listen"] {
            let a = next.text(key);
            if !changed(key) || a.is_empty() {
                continue;
            }
            let addr: SocketAddr = a.parse().map_err(|_| bad(key, format!("{a} is not an address")))?;
            if addr.port() != 0 {
                if let Err(e) = std::net::TcpListener::bind(addr) {
                    return Err(bad(key, format!("cannot listen on {addr}: {e}")));
                }
            }
        }
        let mut created: Vec<PathBuf> = Vec::new();
        let r = (|| {
            for key in ["downloads", "incomplete"] {
                if changed(key) {
                    let dir = PathBuf::from(next.text(key));
                    writable_folder(&dir, &mut created).map_err(|why| bad(key, why))?;
                }
            }
            if next.text("downloads") == next.text("incomplete") {
                return Err(bad("incomplete", "the incomplete folder must not be the downloads folder"));
            }
            Ok(())
        })();
        if r.is_err() {
            // Deepest first; only folders still empty go.
            for d in created.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        r
    }

    /// Move the partial downloads that are not running from `old` into the incomplete
    /// folder in force; one that cannot be renamed (another file system) stays and is
    /// still found there ([`Node::partial_dir`]). A running one keeps its folder until it
    /// stops.
    fn move_partials(&self, old: &Path) {
        let new = self.incomplete();
        let running = self.engine.running_ids();
        let mut left = false;
        if let Ok(entries) = std::fs::read_dir(old) {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(id) = name.to_str().and_then(|n| n.parse::<i64>().ok()) else { continue };
                if running.contains(&id) {
                    left = true;
                    continue;
                }
                if std::fs::rename(e.path(), new.join(&name)).is_err() {
                    left = true;
                }
            }
        }
        if left {
            self.old_incomplete.lock().expect("old incomplete").push(old.to_path_buf());
        }
    }

    /// The upload limit in KiB/s (0: none).
    pub fn upload_limit(&self) -> u64 {
        self.uploads.limit_kib()
    }

    /// Run the uploads' timers and publish their changes as [`Event::Upload`].
    async fn run_uploads(self: Arc<Self>) -> anyhow::Result<()> {
        tokio::spawn(self.uploads.clone().run(self.shutdown.clone()));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                batch = self.uploads.changes() => for upload in batch {
                    if matches!(upload.state.as_str(), "done" | "failed" | "stopped") {
                        if let Err(e) = self.db.lock().expect("db").upload_history_add(self.run, &upload) {
                            tracing::warn!("cannot keep a finished upload: {e:#}");
                        }
                    }
                    self.emit(Event::Upload { upload });
                },
            }
        }
    }
}

pub use error::NodeError;
use NodeError::NotConnected;

/// Whether an error comes from binding a listener to an address that is taken or not
/// this machine's.
fn is_bind_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable))
    })
}

/// A listener that cannot bind names the configuration key to change ("address in use"
/// is the user's to fix); other errors pass unchanged.
fn listen_key(e: anyhow::Error, key: &str) -> anyhow::Error {
    if is_bind_error(&e) {
        e.context(key.to_owned())
    } else {
        e
    }
}

/// What [`up`] started.
pub struct Up {
    /// The node.
    pub node: Arc<Node>,
    /// The DCC server's handle (its events), if it runs.
    pub dcc: Option<crate::dcc::DccServerHandle>,
    /// Every task; each ends at shutdown.
    pub tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    /// The API's address, if it runs.
    pub api: Option<SocketAddr>,
}

/// Start everything the configuration enables; prints what it started on stderr.
pub async fn up(cfg: Config, data_dir: &Path, shutdown: CancellationToken) -> anyhow::Result<Up> {
    up_with(cfg, data_dir, shutdown, UpOptions::default()).await
}

/// [`up`] as `opts` ask.
pub async fn up_with(cfg: Config, data_dir: &Path, shutdown: CancellationToken, opts: UpOptions) -> anyhow::Result<Up> {
    let cfg = with_own_hub_password(cfg);
    let node = Node::open_with(cfg.clone(), data_dir, shutdown.clone(), &opts)?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(node.clone().first_share_scan());
    let mut dcc = None;
    if cfg.dcc.enabled {
        let dcfg = crate::dcc::DccServerConfig::from_config(&cfg, data_dir)?;
        let server = crate::dcc::DccServer::bind(dcfg.clone()).await.map_err(|e| listen_key(e, "[dcc].listen"))?;
        let addr = server.local_addr();
        crate::app::say!(
            "dcc server: nick {}, share {}, incoming {}",
            dcfg.nick,
            dcfg.share.display(),
            dcfg.incoming.display()
        );
        crate::app::say!("listening on {addr}");
        node.set_network("dcc", SessionState::Online, &addr.to_string(), "");
        server.set_uploads(node.uploads.clone());
        dcc = Some(server.handle());
        *node.dcc.write().expect("dcc") = Some(server.handle());
        tasks.spawn(node.clone().run_dcc_chats(server.handle()));
        tasks.spawn(server.run(shutdown.clone()));
    } else {
        node.set_network("dcc", SessionState::Disabled, "", "");
    }
    let mut own_hub = None;
    if cfg.nmdc_hub.enabled {
        let h = &cfg.nmdc_hub;
        let db = if h.db.is_empty() { data_dir.join("hub.sqlite") } else { PathBuf::from(&h.db) };
        let mut server = crate::nmdc::HubServer::bind(crate::nmdc::HubServerConfig {
            listen: h.listen,
            hub: omnipeer_nmdc::hub::HubConfig {
                name: omnipeer_nmdc::text::utf8_to_wire(&h.name),
                topic: omnipeer_nmdc::text::utf8_to_wire(&h.topic),
                motd: h.motd.iter().map(|m| omnipeer_nmdc::text::utf8_to_wire(m)).collect(),
                max_users: h.max_users,
                max_users_per_ip: h.max_users_per_ip,
                max_logins_per_ip_per_minute: h.max_logins_per_ip_per_minute,
                exempt_ips: h.exempt_ips.clone(),
                reserved: {
                    let (nick, password) = (node.nick(), node.setting_text("nmdc_password"));
                    let reserved = own_hub_client(&cfg, &nick, &password);
                    if reserved.is_some() {
                        let _ = node.own_hub_login.set((nick, password));
                    }
                    reserved
                },
                ..Default::default()
            },
            db,
            register: Vec::new(),
        })
        .await
        .map_err(|e| listen_key(e, "[nmdc_hub].listen"))?;
        let addr = server.local_addr();
        own_hub = Some(addr);
        crate::app::say!("nmdc hub: dchub://{addr}");
        crate::app::say!("listening on {addr}");
        if !h.tls_listen.trim().is_empty() {
            let tls_addr: std::net::SocketAddr =
                h.tls_listen.trim().parse().with_context(|| format!("[nmdc_hub].tls_listen {:?}", h.tls_listen))?;
            let dir = data_dir.to_path_buf();
            let identity = tokio::task::spawn_blocking(move || crate::tls::TlsIdentity::load_or_create(&dir))
                .await?
                .context("[nmdc_hub].tls_listen")?;
            let kp = identity.keyprint().to_owned();
            let bound = server.listen_tls(tls_addr, identity).map_err(|e| listen_key(e, "[nmdc_hub].tls_listen"))?;
            crate::app::say!("nmdc hub over TLS: nmdcs://{bound}/?kp={kp}");
        }
        node.set_network("nmdc_hub", SessionState::Online, &addr.to_string(), &h.name);
        tasks.spawn(server.run(shutdown.clone()));
    } else {
        node.set_network("nmdc_hub", SessionState::Disabled, "", "");
    }
    if cfg.adc_hub.enabled {
        // The ADC hub (docs/protocols/adc.md#hub), on its own port beside the NMDC hub.
        let h = &cfg.adc_hub;
        let tls = if h.tls {
            Some(crate::tls::TlsIdentity::load_or_create(data_dir).map_err(|e| anyhow::anyhow!("[adc_hub].tls: {e}"))?)
        } else {
            None
        };
        let server = crate::adc::AdcHubServer::bind(crate::adc::AdcHubServerConfig {
            listen: h.listen,
            hub: omnipeer_adc::hub::HubConfig {
                name: h.name.clone(),
                description: h.description.clone(),
                motd: h.motd.clone(),
                max_users: h.max_users,
                max_users_per_ip: h.max_users_per_ip,
                max_logins_per_ip_per_minute: h.max_logins_per_ip_per_minute,
                exempt_ips: h.exempt_ips.clone(),
                ..Default::default()
            },
            db: if h.db.is_empty() { data_dir.join("adc-hub.sqlite") } else { PathBuf::from(&h.db) },
            register: Vec::new(),
            tls,
        })
        .await
        .map_err(|e| listen_key(e, "[adc_hub].listen"))?;
        let addr = server.local_addr();
        crate::app::say!("adc hub: {}", server.url());
        if let Some(kp) = server.keyprint() {
            crate::app::say!("keyprint {kp}");
        }
        crate::app::say!("listening on {addr}");
        node.set_network("adc_hub", SessionState::Online, &server.url(), &h.name);
        tasks.spawn(server.run(shutdown.clone()));
    }
    let mut own_slsk = None;
    if cfg.slsk_server.enabled {
        let s = &cfg.slsk_server;
        let server = crate::slsk::SlskServer::bind(crate::slsk::SlskServerConfig {
            listen: s.listen,
            db: if s.db.is_empty() { data_dir.join("slsk-server.sqlite") } else { PathBuf::from(&s.db) },
            motd: s.motd.clone(),
            private: s.private,
            admins: vec![node.nick()],
            register: Vec::new(),
        })
        .await
        .map_err(|e| listen_key(e, "[slsk_server].listen"))?
        .with_ip_limits(crate::slsk::IpLimits {
            max_registrations_per_ip_per_hour: s.max_registrations_per_ip_per_hour,
            max_sessions_per_ip: s.max_sessions_per_ip,
        })
        .with_tree(omnipeer_slsk::tree::TreeConfig {
            enabled: s.distributed_tree,
            offer_every: std::time::Duration::from_secs(s.parent_offer_every_secs.max(1)),
            ..Default::default()
        });
        let addr = server.local_addr();
        own_slsk = Some(addr);
        crate::app::say!("soulseek server: {addr}");
        crate::app::say!("listening on {addr}");
        node.set_network("slsk_server", SessionState::Online, &addr.to_string(), "");
        tasks.spawn(server.run(shutdown.clone()));
    } else {
        node.set_network("slsk_server", SessionState::Disabled, "", "");
    }
    let mut own_tox_boot = None;
    let mut own_tox_relay = None;
    if cfg.tox_bootstrap.enabled {
        let t = &cfg.tox_bootstrap;
        let keys_path = if t.keys.is_empty() { data_dir.join("tox-bootstrap.keys") } else { PathBuf::from(&t.keys) };
        let keys = crate::tox::load_or_create_keys(&keys_path)?;
        let nodes =
            if t.bootstrap.trim().is_empty() { Vec::new() } else { crate::tox::parse_node_specs(&t.bootstrap)? };
        let mut boot = crate::tox::bootstrap::BootstrapNode::bind(t.listen, keys)
            .await
            .with_context(|| format!("tox bootstrap: cannot listen on {}", t.listen))
            .map_err(|e| listen_key(e, "[tox_bootstrap].listen"))?;
        boot.bootstrap(&nodes);
        if !t.motd.is_empty() {
            boot.set_motd(&t.motd);
        }
        let addr = boot.local_addr()?;
        let key = boot.dht_pk().to_hex();
        crate::app::say!("tox bootstrap node: {}:{}:{key}", addr.ip(), addr.port());
        crate::app::say!("listening on {addr}");
        // The detail stays the bare DHT key (docs/api.md): the relay uses the same key.
        let detail = format!("DHT key {key}");
        if let Some(tcp) =
            crate::tox::bootstrap::tcp_listen_addr(&t.tcp_listen, t.listen).context("[tox_bootstrap].tcp_listen")?
        {
            let tcp = boot
                .listen_tcp(tcp)
                .await
                .with_context(|| format!("tox TCP relay: cannot listen on {tcp}"))
                .map_err(|e| listen_key(e, "[tox_bootstrap].tcp_listen"))?;
            crate::app::say!("tox tcp relay: {}:{}:{key}", tcp.ip(), tcp.port());
            own_tox_relay = Some((tox::reachable(tcp), boot.dht_pk()));
        }
        node.set_network("tox_bootstrap", SessionState::Online, &addr.to_string(), &detail);
        own_tox_boot = Some((tox::reachable(addr), boot.dht_pk()));
        tasks.spawn(boot.run(shutdown.clone()));
    } else {
        node.set_network("tox_bootstrap", SessionState::Disabled, "", "");
    }
    // The Tox client: friends and their chats (app::tox).
    if cfg.tox.enabled {
        let bootstrap = if cfg.tox.bootstrap.trim().is_empty() {
            own_tox_boot.into_iter().collect()
        } else {
            crate::tox::parse_node_specs(&cfg.tox.bootstrap).context("[tox].bootstrap")?
        };
        // Our own relay too, when UDP fails (docs/protocols/tox.md#tcp-relays).
        let relays = own_tox_relay.into_iter().collect();
        tasks.spawn(tox::start(&node, tox::ToxStart { bootstrap, relays }).await?);
    } else {
        node.set_network("tox_client", SessionState::Disabled, "", "");
    }

    let api = if cfg.api.enabled {
        let (addr, task) = crate::api::serve(node.clone(), cfg.api.listen, &cfg.api.token).await?;
        crate::app::say!("api and web ui: http://{addr}/ (docs/api.md; OpenAPI at /api/openapi.json)");
        crate::app::say!("listening on {addr}");
        tasks.spawn(task);
        Some(addr)
    } else {
        None
    };

    crate::app::say!(
        "shares: {}",
        node.share_folders().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    crate::app::say!("downloads: {}", node.downloads().display());

    // The hub and Soulseek server sessions (app::sessions): [nmdc_client] and
    // [slsk_client] (unlabelled), [[hubs]] and [[slsk_servers]], and those added
    // through the API in an earlier run.
    let mut specs = Vec::new();
    if cfg.nmdc_client.enabled {
        let hub = if cfg.nmdc_client.hub.is_empty() {
            own_hub
                .map(|a| a.to_string())
                .ok_or_else(|| anyhow!("[nmdc_client].hub is empty and this node runs no hub"))?
        } else {
            sessions::dc_session_address(&cfg.nmdc_client.hub).context("[nmdc_client].hub")?
        };
        specs.push(SessionSpec {
            network: Network::Nmdc,
            label: String::new(),
            address: hub,
            nick: String::new(),
            password: String::new(),
            added: false,
        });
    } else {
        node.set_network("nmdc_client", SessionState::Disabled, "", "");
    }
    if cfg.slsk_client.enabled {
        let server = if cfg.slsk_client.server.is_empty() {
            own_slsk
                .map(|a| a.to_string())
                .ok_or_else(|| anyhow!("[slsk_client].server is empty and this node runs no Soulseek server"))?
        } else {
            cfg.slsk_client.server.clone()
        };
        specs.push(SessionSpec {
            network: Network::Slsk,
            label: String::new(),
            address: server,
            nick: String::new(),
            password: String::new(),
            added: false,
        });
    } else {
        node.set_network("slsk_client", SessionState::Disabled, "", "");
    }
    for h in &cfg.hubs {
        specs.push(SessionSpec::parse(Network::Nmdc, &h.url, Some(&h.name), &h.nick, &h.password)?);
    }
    for s in &cfg.slsk_servers {
        specs.push(SessionSpec::parse(Network::Slsk, &s.address, Some(&s.name), &s.user, &s.password)?);
    }
    specs.extend(node.added_sessions());
    for spec in specs {
        let what = format!("{} ({})", spec.key().describe(), spec.address);
        if let Err(e) = node.start_session(spec) {
            tracing::warn!("{what}: {e:#}");
        }
    }
    if cfg.share.watch {
        match watch_shares(node.clone()) {
            Ok(task) => {
                tasks.spawn(task);
            }
            Err(e) => tracing::warn!("cannot watch the share folders (rescan by hand): {e:#}"),
        }
    }
    let engine = node.clone();
    tasks.spawn(async move {
        engine.run_engine().await;
        Ok(())
    });
    tasks.spawn(node.clone().run_uploads());
    tasks.spawn(node.clone().run_wishlist());
    crate::app::say!("omnipeer is up as {} (data in {}); Ctrl-C to stop", node.nick(), data_dir.display());
    Ok(Up { node, dcc, tasks, api })
}

/// The node's client on its own hub (`[nmdc_client].hub` empty) logs in with a password
/// only it knows: the configured one, else a random one for this run. The hub keeps the
/// node's nick for that password, past its per-address limits.
fn with_own_hub_password(mut cfg: Config) -> Config {
    if cfg.nmdc_hub.enabled
        && cfg.nmdc_client.enabled
        && cfg.nmdc_client.hub.is_empty()
        && cfg.nmdc_client.password.is_empty()
    {
        let random: [u8; 16] = rand::random();
        cfg.nmdc_client.password = random.iter().map(|b| format!("{b:02x}")).collect();
    }
    cfg
}

/// The nick the own hub keeps for the node's client, if that client logs in to it.
fn own_hub_client(cfg: &Config, nick: &str, password: &str) -> Option<omnipeer_nmdc::hub::ReservedNick> {
    (cfg.nmdc_client.enabled && cfg.nmdc_client.hub.is_empty() && !password.is_empty()).then(|| {
        omnipeer_nmdc::hub::ReservedNick {
            nick: omnipeer_nmdc::text::utf8_to_wire(nick),
            password: omnipeer_nmdc::text::utf8_to_wire(password),
        }
    })
}

impl Node {
    /// The first scan of the share folders (see [`ShareScan`]), stopped at shutdown.
    async fn first_share_scan(self: Arc<Self>) -> anyhow::Result<()> {
        let (index, scan) = (crate::share::SharedIndex::new(self.share_folders()), self.share_scan.clone());
        // The one index every network reads (they find it beside the upload slots).
        self.uploads.set_share(index.clone());
        let started = Instant::now();
        let walk = tokio::task::spawn_blocking(move || index.rescan(&scan.ctl));
        let r = tokio::select! {
            r = walk => r,
            _ = self.shutdown.cancelled() => {
                // The walk sees this at its next entry and ends.
                self.share_scan.ctl.cancel();
                return Ok(());
            }
        };
        match r {
            Ok(Ok(idx)) => tracing::info!(
                files = idx.file_count(),
                folders = self.share_scan.ctl.dirs(),
                secs = started.elapsed().as_secs_f64(),
                "share scanned"
            ),
            Ok(Err(e)) => tracing::warn!("share scan: {e}"),
            Err(e) => tracing::warn!("share scan: {e}"),
        }
        self.share_scan.ready.send_replace(true);
        Ok(())
    }

    /// DCC chats into the chat model: each line a client says is stored under
    /// `dcc:chat:NICK`; chats opening and closing change the chat list.
    async fn run_dcc_chats(self: Arc<Self>, h: crate::dcc::DccServerHandle) -> anyhow::Result<()> {
        use crate::dcc::ServerEvent;
        let Some(mut rx) = h.take_events() else { return Ok(()) };
        // The rule of crate::events: nothing in this loop waits for the DCC server.
        loop {
            let ev = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                ev = rx.recv() => ev,
            };
            match ev {
                Some(ServerEvent::ChatLine { nick, text, .. }) => {
                    self.store_chat(&format!("dcc:chat:{nick}"), &nick, &text, false)
                }
                Some(ServerEvent::ChatOpened { nick, peer, .. }) => {
                    tracing::info!(%nick, %peer, "DCC chat opened");
                    self.emit(Event::ChatOpen { chat: format!("dcc:chat:{nick}"), open: true });
                }
                Some(ServerEvent::ChatClosed { nick, .. }) => {
                    self.emit(Event::ChatOpen { chat: format!("dcc:chat:{nick}"), open: false });
                }
                Some(_) => {}
                None => return Ok(()),
            }
        }
    }

    /// `slsk_password` (`[slsk_client].password`), else one generated once into
    /// `<data_dir>/slsk-password`.
    fn slsk_password(&self) -> anyhow::Result<String> {
        let set = self.setting_text("slsk_password");
        if !set.is_empty() {
            return Ok(set);
        }
        secret_file(&self.data_dir.join("slsk-password"))
    }
}

/// Watch the share folders; a change (after `[share].watch_delay_secs` without more)
/// asks for a rescan. Returns the task that owns the watcher.
fn watch_shares(
    node: Arc<Node>,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    };
    // Links are not followed: a link loop in a share would make the watcher walk it
    // (links to folders are not shared twice anyway, see crate::share).
    let mut watcher = notify::RecommendedWatcher::new(handler, notify::Config::default().with_follow_symlinks(false))?;
    let watch_all = |watcher: &mut notify::RecommendedWatcher, folders: Vec<PathBuf>| {
        let mut watched = Vec::new();
        for d in folders.into_iter().filter(|d| d.is_dir()) {
            match watcher.watch(&d, notify::RecursiveMode::Recursive) {
                Ok(()) => watched.push(d),
                Err(e) => tracing::warn!("cannot watch the share folder {} (rescan by hand): {e}", d.display()),
            }
        }
        watched
    };
    let mut watched = watch_all(&mut watcher, node.share_folders());
    let mut folders = node.folders_changed.subscribe();
    let delay = Duration::from_secs(node.cfg.share.watch_delay_secs);
    Ok(async move {
        let mut watcher = watcher;
        loop {
            tokio::select! {
                _ = node.shutdown.cancelled() => return Ok(()),
                r = rx.recv() => if r.is_none() { return Ok(()) },
                // The share folders changed (settings): watch the new ones.
                r = folders.changed() => {
                    if r.is_err() {
                        return Ok(());
                    }
                    for d in watched.drain(..) {
                        let _ = watcher.unwatch(&d);
                    }
                    watched = watch_all(&mut watcher, node.share_folders());
                    continue;
                }
            }
            // Let a burst of changes (a copy, an unpacked archive) settle.
            loop {
                tokio::select! {
                    _ = node.shutdown.cancelled() => return Ok(()),
                    r = rx.recv() => if r.is_none() { return Ok(()) },
                    _ = tokio::time::sleep(delay) => break,
                }
            }
            tracing::info!("the share changed: rescanning");
            node.request_rescan();
        }
    })
}

/// Create `dir` if needed (recording in `created` the folders made, outermost first) and
/// check a file can be written in it.
fn writable_folder(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p.filter(|d| !d.exists()) {
        missing.push(d.to_path_buf());
        p = d.parent();
    }
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let made = std::fs::create_dir_all(dir);
    created.extend(missing.into_iter().rev());
    made.map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".omnipeer-write-check-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot write in {}: {e}", dir.display())),
    }
}

/// Wait (at most 5 s) for a closed client's session to end.
async fn wait_offline(online: impl Fn() -> bool) {
    for _ in 0..100 {
        if !online() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Read a secret kept in a file, creating it (random, owner-only) the first time.
pub fn secret_file(path: &Path) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_owned();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let bytes: [u8; 24] = rand::random();
    let s = data_encoding::BASE64URL_NOPAD.encode(&bytes);
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(s.as_bytes())?;
    f.sync_all()?;
    Ok(s)
}
