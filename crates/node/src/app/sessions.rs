//! Client sessions: the hubs and Soulseek servers the node is logged in to, any number
//! of each. Every session is one [`Session`] behind one interface ([`Client`]) that search,
//! downloads and chat use without knowing which network it is; the network's rules stay
//! in its driver (`crate::nmdc::client`, `crate::slsk::client`) and, below that, in its
//! protocol crate.
//!
//! How an event travels from a socket to the web UI: the driver's task reads the socket
//! and feeds the protocol machine; the machine's events go over the driver's bounded
//! queue (`crate::events`) to this module's [`Node::run_session`] loop, which turns them
//! into [`NetEvent`]s, stores chat lines and search results (`super::search`) and
//! publishes [`super::model::Event`]s on the node's fan-out, which `/api/events` sends
//! to each WebSocket.
//!
//! Adding a network: a driver with a `start(config)` that logs in and a `take_events()`
//! queue, a variant of [`Client`] and of the event conversion in [`Client::next_event`],
//! and a [`Network`] variant; search, downloads, chat and `/api/networks` then take it.

use super::model::{NetworkInfo, PeerUser, Role, SessionRef, SessionState, Source, SourceDetails, TransferInfo};
use super::net::{label_from_address, valid_label, Network, SessionKey};
use super::search::{RawResult, SearchBook};
use super::{is_bind_error, listen_key, wait_offline, Node, NodeError, RECONNECT_EVERY};
use crate::adc::client::{AdcClient, AdcClientConfig, AdcEvent};
use crate::nmdc::client::{ClientConfig, ClientEvent, DcClient};
use crate::ratelimit::TransferControl;
use crate::slsk::client::{SlskClient, SlskClientConfig, SlskEvent};
use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often a saved search runs again on a hub: hubs have no wishlist of their own, and
/// their operators frown on clients that search every few seconds (AirDC++'s automatic
/// searches wait minutes between runs too).
pub const HUB_WISHLIST_INTERVAL: Duration = Duration::from_secs(600);

/// Sessions the node keeps at once (configured and added through the API together).
pub const MAX_SESSIONS: usize = 32;
/// The `node.sqlite` setting that keeps the sessions added through the API.
const ADDED_KEY: &str = "sessions.added";

/// What a session logs in to and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// Its label ("" for `[nmdc_client]` / `[slsk_client]`).
    pub label: String,
    /// `host:port` of the hub or server.
    pub address: String,
    /// Nick or user name; empty: `[node].nick`.
    #[serde(default)]
    pub nick: String,
    /// Password; empty: none (NMDC) or a generated one kept in the data dir (Soulseek).
    #[serde(default)]
    pub password: String,
    /// Added through the API (and kept in `node.sqlite`).
    #[serde(default)]
    pub added: bool,
}

impl SessionSpec {
    /// Its key.
    pub fn key(&self) -> SessionKey {
        SessionKey::new(self.network, &self.label)
    }

    /// A new session's spec from a request: network, address (`dchub://host:port` or
    /// `host:port`; an ADC hub `adc://host:port` or `adcs://host:port[/?kp=...]`, kept with
    /// its scheme), optional label, nick and password.
    pub fn parse(
        network: Network,
        address: &str,
        label: Option<&str>,
        nick: &str,
        password: &str,
    ) -> anyhow::Result<SessionSpec> {
        let address = match network {
            Network::Nmdc => dc_session_address(address)?,
            Network::Slsk => crate::config::slsk_address(address)?,
            other => bail!(NodeError::Invalid(format!("{} has no hubs or servers to log in to", other.title()))),
        };
        let label = match label.filter(|l| !l.is_empty()) {
            Some(l) if valid_label(l) => l.to_owned(),
            Some(l) => bail!(NodeError::Invalid(format!("label {l:?}: 1-64 of A-Z a-z 0-9 . _ -"))),
            None => label_from_address(&adc_hub(&address).map_or(address.clone(), |u| u.address)),
        };
        Ok(SessionSpec {
            network,
            label,
            address,
            nick: nick.trim().to_owned(),
            password: password.into(),
            added: false,
        })
    }
}

/// A live client of one session.
#[derive(Clone)]
pub enum Client {
    /// An NMDC hub session.
    Nmdc(Arc<DcClient>),
    /// A Soulseek server session.
    Slsk(Arc<SlskClient>),
    /// An ADC hub session (network `nmdc`: Direct Connect, results merged by TTH).
    Adc(Arc<AdcClient>),
}

/// A session's events, whatever its network.
#[derive(Debug)]
pub enum NetEvent {
    /// A line in a shared chat: the hub's main chat (`room` None) or a room.
    Said {
        /// The room (Soulseek), None for the hub's main chat.
        room: Option<String>,
        /// Who.
        nick: String,
        /// What.
        text: String,
    },
    /// A private message to us.
    Private {
        /// From.
        from: String,
        /// Text.
        text: String,
    },
    /// A search result.
    Result(RawResult),
    /// We are in this room now.
    Joined(String),
    /// The session ended.
    Closed(String),
    /// Nothing the node keeps.
    Other,
}

/// The events queue of a [`Client`].
pub enum EventRx {
    /// NMDC's.
    Nmdc(mpsc::Receiver<ClientEvent>),
    /// Soulseek's.
    Slsk(mpsc::Receiver<SlskEvent>),
    /// ADC's.
    Adc(mpsc::Receiver<AdcEvent>),
}

impl EventRx {
    /// The next event of the session labelled `label`; None when the session's queue
    /// closed.
    pub async fn next_event(&mut self, label: &str) -> Option<NetEvent> {
        let source = |network, user, path, free_slots, details| Source {
            network,
            session: label.to_owned(),
            user,
            path,
            free_slots,
            details,
        };
        Some(match self {
            EventRx::Nmdc(rx) => match rx.recv().await? {
                ClientEvent::Chat { nick, text } => NetEvent::Said { room: None, nick, text },
                ClientEvent::PrivateMessage { from, text } => NetEvent::Private { from, text },
                ClientEvent::SearchResult(sr) => {
                    let Some(size) = sr.size else { return Some(NetEvent::Other) };
                    let tth = match &sr.tag {
                        omnipeer_nmdc::command::ResultTag::Tth(t) => Some(t.to_base32()),
                        _ => None,
                    };
                    let details = SourceDetails { slots: Some(sr.total_slots), ..SourceDetails::default() };
                    NetEvent::Result(RawResult {
                        source: source(Network::Nmdc, sr.nick.clone(), sr.path.clone(), sr.free_slots, details),
                        size,
                        tth,
                        slsk_token: None,
                    })
                }
                ClientEvent::Closed(r) => NetEvent::Closed(format!("the hub closed the session: {r}")),
                ClientEvent::LoggedIn | ClientEvent::UserJoined(_) | ClientEvent::UserLeft(_) => NetEvent::Other,
            },
            EventRx::Slsk(rx) => match rx.recv().await? {
                SlskEvent::SearchResult { user, path, size, free_slot, queue, speed, audio, token } => {
                    let details = SourceDetails {
                        slots: None,
                        queue: Some(queue),
                        speed: Some(u64::from(speed)),
                        bitrate: audio.bitrate,
                        duration: audio.duration,
                        vbr: audio.vbr,
                        sample_rate: audio.sample_rate,
                        bit_depth: audio.bit_depth,
                    };
                    NetEvent::Result(RawResult {
                        source: source(Network::Slsk, user, path, u32::from(free_slot), details),
                        size,
                        tth: None,
                        slsk_token: Some(token),
                    })
                }
                SlskEvent::PrivateMessage { user, text } => NetEvent::Private { from: user, text },
                SlskEvent::RoomMessage { room, user, text } => NetEvent::Said { room: Some(room), nick: user, text },
                SlskEvent::JoinedRoom { room } => NetEvent::Joined(room),
                SlskEvent::Uploaded { user, path } => {
                    tracing::info!(%user, %path, "upload complete");
                    NetEvent::Other
                }
            },
            EventRx::Adc(rx) => match rx.recv().await? {
                AdcEvent::Chat { nick, text } => NetEvent::Said { room: None, nick, text },
                AdcEvent::Private { from, text } => NetEvent::Private { from, text },
                AdcEvent::SearchResult(r) => {
                    // ADC names files `/share/dir/name`; the node keeps NMDC's `share\dir\name`.
                    let path = r.path.trim_start_matches('/').replace('/', "\\");
                    let details = SourceDetails { slots: r.slots, ..SourceDetails::default() };
                    let free = r.free_slots.or(r.slots).unwrap_or(0);
                    NetEvent::Result(RawResult {
                        source: source(Network::Nmdc, r.nick, path, free, details),
                        size: r.size,
                        tth: r.tth.map(|t| t.to_base32()),
                        slsk_token: None,
                    })
                }
                AdcEvent::Closed(r) => NetEvent::Closed(format!("the hub closed the session: {r}")),
            },
        })
    }
}

/// A running download attempt: where the file went and its size.
pub type DownloadFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<(PathBuf, u64)>> + Send>>;

impl Client {
    /// Whether it is logged in.
    pub fn is_online(&self) -> bool {
        match self {
            Client::Nmdc(c) => c.is_online(),
            Client::Slsk(c) => c.is_online(),
            Client::Adc(c) => c.is_online(),
        }
    }

    /// Its events queue (once).
    fn take_events(&self) -> Option<EventRx> {
        match self {
            Client::Nmdc(c) => c.take_events().map(EventRx::Nmdc),
            Client::Slsk(c) => c.take_events().map(EventRx::Slsk),
            Client::Adc(c) => c.take_events().map(EventRx::Adc),
        }
    }

    /// Send search `id` of `book` from the session labelled `label`.
    pub async fn search(&self, query: &str, book: &Mutex<SearchBook>, id: u64, label: &str) -> anyhow::Result<()> {
        match self {
            Client::Nmdc(c) => c.search(omnipeer_nmdc::command::SearchQuery::text(query)).await,
            Client::Adc(c) => c.search(omnipeer_adc::client::Query::text(query)).await.map(|_| ()),
            Client::Slsk(c) => {
                // The token is recorded under the book's lock, taken before the search is
                // sent: an answer cannot be matched before its token is known.
                let mut book = book.lock().expect("searches");
                let token = c.search(query);
                book.set_slsk_token(id, label, token);
                Ok(())
            }
        }
    }

    /// Send search `id` of `book` as a saved (wishlist) search: Soulseek's WishlistSearch,
    /// a plain search on a hub.
    pub async fn wishlist_search(
        &self,
        query: &str,
        book: &Mutex<SearchBook>,
        id: u64,
        label: &str,
    ) -> anyhow::Result<()> {
        match self {
            Client::Slsk(c) => {
                let mut book = book.lock().expect("searches");
                let token = c.wishlist_search(query);
                book.set_slsk_token(id, label, token);
                Ok(())
            }
            Client::Nmdc(_) | Client::Adc(_) => self.search(query, book, id, label).await,
        }
    }

    /// How often a saved search may run again here: the Soulseek server's
    /// WishlistInterval, [`HUB_WISHLIST_INTERVAL`] on a hub.
    pub fn wishlist_interval(&self) -> Duration {
        match self {
            Client::Slsk(c) => c.wishlist_interval(),
            Client::Nmdc(_) | Client::Adc(_) => HUB_WISHLIST_INTERVAL,
        }
    }

    /// Say something in the hub's main chat (`room` None) or a room.
    pub async fn say(&self, room: Option<&str>, text: &str) -> anyhow::Result<()> {
        match (self, room) {
            (Client::Nmdc(c), None) => c.say(text).await,
            (Client::Adc(c), None) => c.say(text).await,
            (Client::Slsk(c), Some(room)) => {
                c.say_room(room, text);
                Ok(())
            }
            _ => bail!("no such chat"),
        }
    }

    /// Join a room (Soulseek).
    pub fn join_room(&self, room: &str) {
        if let Client::Slsk(c) = self {
            c.join_room(room);
        }
    }

    /// A private message.
    pub async fn private_message(&self, to: &str, text: &str) -> anyhow::Result<()> {
        match self {
            Client::Nmdc(c) => c.private_message(to, text).await,
            Client::Adc(c) => c.private_message(to, text).await,
            Client::Slsk(c) => {
                c.message_user(to, text);
                Ok(())
            }
        }
    }

    /// `user`'s whole share as a tree (NMDC: its file list, fetched into a file in
    /// `tmp_dir`; Soulseek: SharedFileListRequest). Bounded by the caller
    /// (`super::browse::BROWSE_TIMEOUT`) and by each network's own limits.
    pub async fn browse(&self, user: &str, tmp_dir: &Path) -> anyhow::Result<super::browse::Folder> {
        use super::browse::Folder;
        match self {
            Client::Nmdc(c) => {
                let list = c.file_list(user, tmp_dir, super::browse::MAX_BROWSE_FILES).await?;
                Ok(tokio::task::spawn_blocking(move || Folder::from_nmdc(&list)).await?)
            }
            Client::Adc(c) => {
                let list = c.file_list(user, tmp_dir, super::browse::MAX_BROWSE_FILES).await?;
                Ok(tokio::task::spawn_blocking(move || Folder::from_nmdc(&list)).await?)
            }
            Client::Slsk(c) => {
                let list = c.browse(user).await?;
                let files: usize =
                    list.dirs.iter().chain(list.private_dirs.iter().flatten()).map(|d| d.files.len()).sum();
                if files > super::browse::MAX_BROWSE_FILES {
                    bail!("{user} shares {files} files; a browse holds at most {}", super::browse::MAX_BROWSE_FILES);
                }
                Ok(tokio::task::spawn_blocking(move || Folder::from_slsk(&list)).await?)
            }
        }
    }

    /// Who is in the hub's main chat (`room` None) or a room.
    pub async fn users(&self, room: Option<&str>) -> anyhow::Result<Vec<PeerUser>> {
        Ok(match (self, room) {
            (Client::Nmdc(c), None) => c
                .user_list()
                .await?
                .into_iter()
                .map(|u| {
                    let info = u.info.as_ref();
                    let tag = info.and_then(|i| i.tag.as_ref());
                    PeerUser {
                        nick: u.nick.clone(),
                        network: Network::Nmdc,
                        share_size: info.map(|i| i.share_size),
                        files: None,
                        folders: None,
                        description: info
                            .map(|i| omnipeer_nmdc::text::wire_to_utf8(&i.description))
                            .unwrap_or_default(),
                        client: tag
                            .map(|t| format!("{} {}", t.client, t.version.as_deref().unwrap_or("")).trim().to_owned())
                            .unwrap_or_default(),
                        slots: tag.and_then(|t| t.slots),
                        slots_full: None,
                        speed: None,
                        country: String::new(),
                        op: u.op,
                        away: info.is_some_and(|i| i.flag & omnipeer_nmdc::command::flags::AWAY != 0),
                        relation: None,
                    }
                })
                .collect(),
            (Client::Adc(c), None) => c
                .user_list()
                .await?
                .into_iter()
                .filter(|u| u.ct & 32 == 0)
                .map(|u| PeerUser {
                    nick: u.nick.clone(),
                    network: Network::Nmdc,
                    share_size: Some(u.share_size),
                    files: Some(u.shared_files),
                    folders: None,
                    description: u.description.clone(),
                    client: u.client.clone(),
                    slots: u.slots,
                    slots_full: u.free_slots.map(|f| f == 0),
                    speed: None,
                    country: String::new(),
                    op: u.op(),
                    away: u.away != 0,
                    relation: None,
                })
                .collect(),
            (Client::Slsk(c), Some(room)) => c
                .room_members(room)
                .into_iter()
                .map(|u| PeerUser {
                    nick: u.name,
                    network: Network::Slsk,
                    share_size: None,
                    files: Some(u64::from(u.stats.files)),
                    folders: Some(u64::from(u.stats.dirs)),
                    description: String::new(),
                    client: String::new(),
                    slots: None,
                    slots_full: Some(u.slots_full != 0),
                    speed: Some(u64::from(u.stats.avg_speed)),
                    country: u.country,
                    op: false,
                    away: matches!(u.status, omnipeer_slsk::UserStatus::Away),
                    relation: None,
                })
                .collect(),
            _ => bail!(NodeError::NotFound("that chat has no user list".into())),
        })
    }

    /// Whether `nick` can get a private message: on a hub, whether it is there (a hub
    /// drops a message to anyone else without a word); on a Soulseek server, whether the
    /// account exists and is online (the server keeps a message for an offline user).
    /// `None`: the server did not say.
    pub async fn presence(&self, nick: &str) -> anyhow::Result<Option<crate::slsk::client::Presence>> {
        Ok(match self {
            Client::Nmdc(c) => {
                let here = c.users().await?.iter().any(|n| n.eq_ignore_ascii_case(nick));
                Some(crate::slsk::client::Presence { exists: here, online: Some(here) })
            }
            Client::Adc(c) => {
                let here = c.user_list().await?.iter().any(|u| u.nick.eq_ignore_ascii_case(nick));
                Some(crate::slsk::client::Presence { exists: here, online: Some(here) })
            }
            Client::Slsk(c) => c.presence(nick).await,
        })
    }

    /// Rescan the share into the running session.
    async fn reshare(&self) -> anyhow::Result<()> {
        match self {
            Client::Nmdc(c) => c.reshare().await.map(|_| ()),
            Client::Adc(c) => c.reshare().await,
            Client::Slsk(c) => c.reshare().await.map(|n| tracing::info!(files = n, "Soulseek share rescanned")),
        }
    }

    fn close(&self) {
        match self {
            Client::Nmdc(c) => c.close(),
            Client::Slsk(c) => c.close(),
            Client::Adc(c) => c.close(),
        }
    }

    /// One attempt at `t` into `dir`: `progress` gets (bytes on disk, size announced).
    /// A nonzero `t.size` is the size the user chose: a peer that offers another is
    /// refused and nothing past it is written.
    pub fn download(
        &self,
        t: &TransferInfo,
        dir: &Path,
        progress: Arc<(AtomicU64, AtomicU64)>,
        control: Arc<TransferControl>,
    ) -> anyhow::Result<DownloadFuture> {
        Ok(match self {
            Client::Nmdc(_) | Client::Adc(_) => {
                let dc = self.clone();
                let out = dir.join(&t.name);
                let what = match &t.tth {
                    Some(tth) => omnipeer_nmdc::transfer::Identifier::Tth(
                        omnipeer_nmdc::tth::Tth::from_base32(tth).map_err(|e| anyhow!("bad TTH {tth}: {e}"))?,
                    ),
                    None => omnipeer_nmdc::transfer::Identifier::Path(format!("/{}", t.remote_path.replace('\\', "/"))),
                };
                let p = Arc::new(AtomicU64::new(progress.0.load(Ordering::Relaxed)));
                let total = Arc::new(AtomicU64::new(t.size));
                let job = crate::nmdc::cc::DownloadJob {
                    what,
                    out: out.clone(),
                    progress: p.clone(),
                    total: total.clone(),
                    control,
                };
                let source = t.source.clone();
                Box::pin(async move {
                    let fwd = async {
                        loop {
                            progress.0.store(p.load(Ordering::Relaxed), Ordering::Relaxed);
                            progress.1.store(total.load(Ordering::Relaxed), Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    };
                    let r = tokio::select! {
                        r = dc.dc_download(&source, &job) => r,
                        _ = fwd => unreachable!(),
                    };
                    progress.0.store(p.load(Ordering::Relaxed), Ordering::Relaxed);
                    progress.1.store(total.load(Ordering::Relaxed), Ordering::Relaxed);
                    Ok((out, r?.size))
                })
            }
            Client::Slsk(sl) => {
                let sl = sl.clone();
                let (source, path, dir) = (t.source.clone(), t.remote_path.clone(), dir.to_path_buf());
                let expected = (t.size != 0).then_some(t.size);
                Box::pin(async move {
                    let (out, size, _) = sl.download_with(&source, &path, &dir, expected, progress, &control).await?;
                    Ok((out, size))
                })
            }
        })
    }
}

impl Client {
    /// A Direct Connect download, NMDC or ADC.
    async fn dc_download(
        &self,
        from: &str,
        job: &crate::nmdc::cc::DownloadJob,
    ) -> anyhow::Result<crate::nmdc::cc::Downloaded> {
        match self {
            Client::Nmdc(c) => c.download(from, job).await,
            Client::Adc(c) => c.download(from, job).await,
            Client::Slsk(_) => bail!("not a Direct Connect session"),
        }
    }
}

/// The canonical address of an ADC hub (`adc://host:port`, `adcs://host:port/?kp=...`), or
/// None when `url` is not one.
fn adc_url(url: &str) -> Option<String> {
    let u = crate::config::parse_hub_url(url).ok()?;
    if u.protocol != crate::config::HubProtocol::Adc {
        return None;
    }
    let scheme = if u.tls { "adcs" } else { "adc" };
    Some(match &u.keyprint {
        Some(kp) => format!("{scheme}://{}/?kp={kp}", u.address),
        None => format!("{scheme}://{}", u.address),
    })
}

/// The address a Direct Connect session keeps for a hub URL: an ADC hub's with its scheme
/// (and keyprint), which is how `connect` tells the protocols apart; an NMDC hub's as
/// `crate::config::nmdc_session_address` gives it.
pub(crate) fn dc_session_address(url: &str) -> anyhow::Result<String> {
    match adc_url(url) {
        Some(a) => Ok(a),
        None => crate::config::nmdc_session_address(url),
    }
}

/// The parsed address of an ADC hub session's address, None for any other.
fn adc_hub(address: &str) -> Option<crate::config::HubUrl> {
    adc_url(address)?;
    crate::config::parse_hub_url(address).ok()
}

/// One hub or Soulseek server session: its spec, its client while logged in, the rooms
/// it is in, and the token that ends it.
pub struct Session {
    /// What it logs in to.
    pub spec: SessionSpec,
    client: RwLock<Option<Client>>,
    rooms: Mutex<BTreeSet<String>>,
    /// Cancelled when the session is removed (or the node stops).
    pub stop: CancellationToken,
    /// Bumped to log in again (a setting it logs in with changed: `Node::change_settings`).
    relogin: tokio::sync::watch::Sender<u64>,
}

impl Session {
    fn new(spec: SessionSpec, shutdown: &CancellationToken) -> Session {
        Session {
            spec,
            client: RwLock::default(),
            rooms: Mutex::default(),
            stop: shutdown.child_token(),
            relogin: tokio::sync::watch::channel(0).0,
        }
    }

    /// Log out and in again with the settings in force now (at once if it is waiting to
    /// retry; a login under way is redone once it succeeds).
    pub fn log_in_again(&self) {
        self.relogin.send_modify(|n| *n += 1);
    }

    /// Its key.
    pub fn key(&self) -> SessionKey {
        self.spec.key()
    }

    /// Its client, when logged in.
    pub fn client(&self) -> Option<Client> {
        self.client.read().expect("client").clone().filter(Client::is_online)
    }

    /// The rooms it is in.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.lock().expect("rooms").iter().cloned().collect()
    }

    /// Whether it is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms.lock().expect("rooms").contains(room)
    }
}

impl Node {
    /// Every session, in the order they were added.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.read().expect("sessions").clone()
    }

    /// The session with `key`.
    pub fn session(&self, key: &SessionKey) -> Option<Arc<Session>> {
        self.sessions.read().expect("sessions").iter().find(|s| &s.key() == key).cloned()
    }

    /// The session a transfer is from: its network and the hub or server address it was
    /// queued with.
    pub fn session_at(&self, network: Network, address: &str) -> Option<Arc<Session>> {
        self.sessions
            .read()
            .expect("sessions")
            .iter()
            .find(|s| s.spec.network == network && s.spec.address == address)
            .cloned()
    }

    /// The logged-in client of `key`.
    pub fn client(&self, key: &SessionKey) -> Result<Client, NodeError> {
        self.session(key).and_then(|s| s.client()).ok_or_else(|| NodeError::NotConnected(key.describe()))
    }

    /// Start a session and keep it up until it is removed or the node stops.
    pub(crate) fn start_session(self: &Arc<Self>, spec: SessionSpec) -> anyhow::Result<Arc<Session>> {
        let mut all = self.sessions.write().expect("sessions");
        if all.iter().any(|s| s.key() == spec.key()) {
            bail!(NodeError::Conflict(format!(
                "there is already a {} session labelled {:?}",
                spec.network.title(),
                spec.label
            )));
        }
        if all.iter().any(|s| s.spec.network == spec.network && s.spec.address == spec.address) {
            bail!(NodeError::Conflict(format!("already logged in to {}", spec.address)));
        }
        if all.len() >= MAX_SESSIONS {
            bail!(NodeError::Conflict(format!("at most {MAX_SESSIONS} hub and server sessions at once")));
        }
        let s = Arc::new(Session::new(spec, &self.shutdown));
        all.push(s.clone());
        drop(all);
        self.set_session(&s.spec, SessionState::Starting, "waiting for the share scan");
        let node = self.clone();
        let task = s.clone();
        tokio::spawn(async move {
            if let Err(e) = node.clone().run_session(task.clone()).await {
                tracing::warn!("{}: {e:#}", task.key().describe());
            }
        });
        Ok(s)
    }

    /// Add a session at run time and keep it in `node.sqlite` for the next start.
    pub fn add_session(self: &Arc<Self>, mut spec: SessionSpec) -> anyhow::Result<NetworkInfo> {
        spec.added = true;
        let s = self.start_session(spec)?;
        self.save_added_sessions()?;
        self.network_info(&s.key())
            .ok_or_else(|| NodeError::NotFound(format!("{} vanished", s.key().describe())).into())
    }

    /// Remove a session (`/api/networks` name `nmdc_client@LABEL`): it logs out now.
    /// One from the configuration file comes back at the next start.
    pub fn remove_session(&self, name: &str) -> anyhow::Result<()> {
        let mut all = self.sessions.write().expect("sessions");
        let i = all
            .iter()
            .position(|s| s.key().status_name() == name)
            .ok_or_else(|| NodeError::NotFound(format!("no hub or server session {name:?}")))?;
        let s = all.remove(i);
        drop(all);
        s.stop.cancel();
        self.networks.lock().expect("networks").remove(name);
        self.emit(super::model::Event::Network {
            network: NetworkInfo {
                name: name.to_owned(),
                role: Role::Client,
                state: SessionState::Disabled,
                address: s.spec.address.clone(),
                detail: "removed".into(),
                session: Some(session_ref(&s.spec)),
            },
        });
        if s.spec.added {
            self.save_added_sessions()?;
        }
        Ok(())
    }

    fn save_added_sessions(&self) -> anyhow::Result<()> {
        let added: Vec<SessionSpec> = self.sessions().iter().filter(|s| s.spec.added).map(|s| s.spec.clone()).collect();
        self.db.lock().expect("db").set_setting(ADDED_KEY, &serde_json::to_string(&added)?)
    }

    /// The sessions added through the API in an earlier run.
    pub(crate) fn added_sessions(&self) -> Vec<SessionSpec> {
        let stored = self.db.lock().expect("db").setting(ADDED_KEY).ok().flatten();
        match stored.map(|s| serde_json::from_str::<Vec<SessionSpec>>(&s)) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                tracing::warn!("the hubs and servers added through the API cannot be read back: {e}");
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn set_session(&self, spec: &SessionSpec, state: SessionState, detail: &str) {
        self.set_network_info(NetworkInfo {
            name: spec.key().status_name(),
            role: Role::Client,
            state,
            address: spec.address.clone(),
            detail: detail.into(),
            session: Some(session_ref(spec)),
        });
    }

    /// The nick of a session.
    fn nick_of(&self, spec: &SessionSpec) -> String {
        nick_in(&self.settings.read().expect("settings"), spec)
    }

    /// Start the client of `spec` (logged in when it returns).
    async fn connect(&self, spec: &SessionSpec) -> anyhow::Result<Client> {
        let primary = spec.label.is_empty();
        // A rescan asked for while this session was logging out (new share folders with a
        // new nick) is carried out first: a new login takes the index as it is.
        if let Some(index) = self.uploads.share() {
            match tokio::task::spawn_blocking(move || index.rescan_if_requested()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("share rescan: {e:#}"),
                Err(e) => tracing::warn!("share rescan: {e}"),
            }
        }
        Ok(match spec.network {
            Network::Nmdc if adc_hub(&spec.address).is_some() => {
                let hub = adc_hub(&spec.address).ok_or_else(|| anyhow!("not an ADC hub"))?;
                let c = &self.cfg.nmdc_client;
                let listen = self.setting_text("nmdc_listen");
                // Each ADC session listens on a port of its own (chosen by the system).
                let listen: Option<SocketAddr> = if listen.is_empty() { None } else { listen.parse().ok() };
                let listen = listen.map(|mut a| {
                    a.set_port(0);
                    a
                });
                let password = if primary { self.setting_text("nmdc_password") } else { spec.password.clone() };
                Client::Adc(Arc::new(
                    AdcClient::start_in(
                        AdcClientConfig {
                            hub: hub.address.clone(),
                            tls: hub.tls,
                            keyprint: hub.keyprint.clone(),
                            nick: self.nick_of(spec),
                            password: (!password.is_empty()).then_some(password),
                            listen,
                            share: self.share_folders(),
                            slots: c.slots,
                            uploads: Some(self.uploads.clone()),
                            db: self.db_path.clone(),
                            data_dir: self.data_dir.clone(),
                            description: self.setting_text("description"),
                        },
                        &spec.key().to_string(),
                    )
                    .await?,
                ))
            }
            Network::Nmdc => {
                let c = &self.cfg.nmdc_client;
                let listen = self.setting_text("nmdc_listen");
                let listen: Option<SocketAddr> = if listen.is_empty() { None } else { listen.parse().ok() };
                // Every hub session listens on a port of its own (peers name the hub they
                // met us on only through the nick, so one listener per session keeps their
                // connections apart).
                let listen = listen.map(|mut a| {
                    if !primary {
                        a.set_port(0);
                    }
                    a
                });
                let password = match self.own_hub_login.get() {
                    // The node's own hub keeps its nick with the password of its start.
                    Some((nick, password)) if primary && *nick == self.nick_of(spec) => password.clone(),
                    _ if primary => self.setting_text("nmdc_password"),
                    _ => spec.password.clone(),
                };
                Client::Nmdc(Arc::new(
                    DcClient::start_in(
                        ClientConfig {
                            hub: spec.address.clone(),
                            nick: self.nick_of(spec),
                            password: (!password.is_empty()).then_some(password),
                            listen,
                            share: self.share_folders(),
                            slots: c.slots,
                            uploads: Some(self.uploads.clone()),
                            db: self.db_path.clone(),
                            description: self.setting_text("description"),
                        },
                        &spec.key().to_string(),
                    )
                    .await
                    .map_err(|e| if primary { listen_key(e, "[nmdc_client].listen") } else { e })?,
                ))
            }
            Network::Slsk => {
                let c = &self.cfg.slsk_client;
                let mut listen: SocketAddr = self.setting_text("slsk_listen").parse().unwrap_or(c.listen);
                if !primary {
                    listen.set_port(0);
                }
                let password = if !spec.password.is_empty() {
                    spec.password.clone()
                } else if primary {
                    self.slsk_password()?
                } else {
                    super::secret_file(&self.data_dir.join(format!("slsk-password@{}", spec.label)))?
                };
                let client = SlskClient::start_in(
                    SlskClientConfig {
                        server: spec.address.clone(),
                        user: self.nick_of(spec),
                        password,
                        listen,
                        share: self.share_folders(),
                        slots: c.slots,
                        uploads: Some(self.uploads.clone()),
                    },
                    &spec.key().to_string(),
                )
                .await
                .map_err(|e| if primary { listen_key(e, "[slsk_client].listen") } else { e })?;
                client.set_max_distributed_children(c.max_distributed_children);
                Client::Slsk(Arc::new(client))
            }
            other => bail!("{} has no sessions", other.title()),
        })
    }

    /// Keep `s` logged in: log in, pump its events, log in again after a drop, until it
    /// is removed or the node stops. A rescan swaps the new share into the session.
    async fn run_session(self: Arc<Self>, s: Arc<Session>) -> anyhow::Result<()> {
        let spec = &s.spec;
        if !self.share_scan.wait_ready(&s.stop).await {
            return Ok(());
        }
        // The last refusal warned about: said once, again only when it changes.
        let mut warned: Option<String> = None;
        loop {
            // Taken before the settings are read: a change from now on logs in again.
            let mut relogin = s.relogin.subscribe();
            let nick = self.nick_of(spec);
            self.set_session(spec, SessionState::Starting, "indexing the share and logging in");
            let started = tokio::select! {
                r = self.connect(spec) => r,
                _ = s.stop.cancelled() => return Ok(()),
            };
            match started {
                Ok(client) => {
                    let Some(mut rx) = client.take_events() else { unreachable!("a new client's events") };
                    if let Client::Nmdc(dc) = &client {
                        self.record_share(dc);
                    }
                    if spec.network == Network::Slsk {
                        for room in &self.cfg.slsk_client.rooms {
                            client.join_room(room);
                        }
                    }
                    crate::app::say!("{}: logged in to {} as {nick}", spec.key().describe(), spec.address);
                    // Taken before the session shows online: every event from then on
                    // (and those queued since the login) is ours.
                    *s.client.write().expect("client") = Some(client.clone());
                    self.set_session(spec, SessionState::Online, &format!("logged in as {nick}"));
                    let mut rescan = self.rescan.subscribe();
                    let mut check = tokio::time::interval(Duration::from_millis(500));
                    // The rule of crate::events: the session may be parked in `send` until
                    // this loop reads, so nothing here waits for the client (a rescan that
                    // talks to it is spawned).
                    let why = loop {
                        tokio::select! {
                            _ = s.stop.cancelled() => break None,
                            _ = relogin.changed() => break Some(LOG_IN_AGAIN.to_owned()),
                            _ = rescan.changed() => {
                                let (node, c) = (self.clone(), client.clone());
                                tokio::spawn(async move {
                                    match c.reshare().await {
                                        Ok(()) => if let Client::Nmdc(dc) = &c { node.record_share(dc) },
                                        Err(e) => tracing::warn!("share rescan: {e:#}"),
                                    }
                                });
                            }
                            _ = check.tick() => if !client.is_online() {
                                break Some("the server closed the session".to_owned())
                            },
                            ev = rx.next_event(&spec.label) => match ev {
                                Some(NetEvent::Closed(why)) => break Some(why),
                                Some(ev) => self.on_net_event(&s, ev),
                                None => break Some("the session ended".to_owned()),
                            },
                        }
                    };
                    // No one reads any more: a session parked in `send` goes on (and ends).
                    drop(rx);
                    *s.client.write().expect("client") = None;
                    s.rooms.lock().expect("rooms").clear();
                    client.close();
                    wait_offline(|| client.is_online()).await;
                    match why {
                        None => return Ok(()),
                        // At once, with the new settings.
                        Some(w) if w == LOG_IN_AGAIN => {
                            self.set_session(spec, SessionState::Starting, &w);
                            continue;
                        }
                        Some(w) => self.set_session(spec, SessionState::Offline, &w),
                    }
                }
                Err(e) => {
                    if let Some(r) = crate::login::LoginRefused::of(&e) {
                        let text = format!("{e:#}");
                        if warned.as_deref() != Some(text.as_str()) {
                            tracing::warn!(
                                "{} ({}) refused the login as {nick}: {}; {}",
                                spec.key().describe(),
                                spec.address,
                                r.why,
                                self.what_to_change(spec, r.kind)
                            );
                            warned = Some(text);
                        }
                    } else if is_bind_error(&e) {
                        tracing::warn!("{}: {e:#}", spec.key().describe());
                    }
                    self.set_session(spec, SessionState::Offline, &format!("{e:#}"))
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT_EVERY) => {}
                // A changed setting (another nick or password) is tried at once.
                _ = relogin.changed() => {}
                _ = s.stop.cancelled() => return Ok(()),
            }
        }
    }

    /// The setting that fixes a refused login of `spec`.
    fn what_to_change(&self, spec: &SessionSpec, kind: crate::login::Refused) -> String {
        use crate::login::Refused;
        let (nick_key, password_key) = match (spec.network, spec.label.is_empty(), spec.added) {
            (Network::Nmdc, true, _) => ("[node].nick".to_owned(), "[nmdc_client].password".to_owned()),
            (_, true, _) => ("[node].nick".to_owned(), "[slsk_client].password".to_owned()),
            (Network::Nmdc, false, false) => (
                format!("nick of its [[hubs]] entry ({})", spec.label),
                format!("password of its [[hubs]] entry ({})", spec.label),
            ),
            (_, false, false) => (
                format!("user of its [[slsk_servers]] entry ({})", spec.label),
                format!("password of its [[slsk_servers]] entry ({})", spec.label),
            ),
            (_, false, true) => (
                "nick (remove it and add it again: DELETE, then POST /api/networks)".to_owned(),
                "password (remove it and add it again: DELETE, then POST /api/networks)".to_owned(),
            ),
        };
        match (kind, spec.network) {
            (Refused::Name, _) => format!("choose another name: {nick_key}"),
            // Soulseek servers register a name at its first login: another password
            // means someone else has the name.
            (Refused::Password, Network::Slsk) => {
                format!("the name is registered with another password: choose another name ({nick_key}) or set {password_key}")
            }
            (Refused::Password, _) => format!("set {password_key}"),
            (Refused::Registered, _) => {
                format!("set its password ({password_key}) or choose another name ({nick_key})")
            }
            (Refused::Other, _) => "it retries every few seconds".to_owned(),
        }
    }

    fn on_net_event(&self, s: &Session, ev: NetEvent) {
        let key = s.key();
        match &ev {
            NetEvent::Said { nick: who, .. } | NetEvent::Private { from: who, .. }
                if self.is_ignored(key.network, who) =>
            {
                return
            }
            _ => {}
        }
        match ev {
            NetEvent::Said { room, nick, text } => {
                let own = nick == self.nick_of(&s.spec);
                let chat = match &room {
                    Some(r) => key.chat_id("room", r),
                    None => key.chat_id("hub", ""),
                };
                self.store_chat(&chat, &nick, &text, own);
            }
            NetEvent::Private { from, text } => self.store_chat(&key.chat_id("pm", &from), &from, &text, false),
            NetEvent::Result(raw) => self.add_result(raw),
            NetEvent::Joined(room) => {
                s.rooms.lock().expect("rooms").insert(room);
            }
            NetEvent::Closed(_) | NetEvent::Other => {}
        }
    }
}

/// Why a session logs out when a setting it logs in with changed.
const LOG_IN_AGAIN: &str = "logging in again with the new settings";

/// The nick `spec` logs in with under `settings`: its own, else its network's
/// (`nmdc_nick`, `slsk_nick`), else `nick`.
pub(crate) fn nick_in(settings: &super::settings::Settings, spec: &SessionSpec) -> String {
    if !spec.nick.is_empty() {
        return spec.nick.clone();
    }
    let per_network = match spec.network {
        Network::Nmdc => settings.text("nmdc_nick"),
        Network::Slsk => settings.text("slsk_nick"),
        _ => String::new(),
    };
    if per_network.is_empty() {
        settings.text("nick")
    } else {
        per_network
    }
}

fn session_ref(spec: &SessionSpec) -> SessionRef {
    SessionRef { network: spec.network, label: spec.label.clone(), added: spec.added }
}

impl SessionKey {
    /// How a person calls it: `the hub example` / `the Soulseek server`.
    pub fn describe(&self) -> String {
        let what = match self.network {
            Network::Nmdc => "the hub",
            Network::Slsk => "the Soulseek server",
            Network::Dcc => "the DCC server",
            Network::Tox => "Tox",
        };
        if self.label.is_empty() {
            what.to_owned()
        } else {
            format!("{what} {}", self.label)
        }
    }
}
