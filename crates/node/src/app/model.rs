//! The node's shared data types, as the API and the event stream show them (see
//! docs/api.md for their JSON).

pub use super::net::{Network, SessionKey, TransferState};
use serde::{Deserialize, Serialize};

/// One network role of the node and how it is doing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkInfo {
    /// `dcc`, `nmdc_hub`, `slsk_server`, `tox_bootstrap`, `tox_client`, and one entry per
    /// client session: `nmdc_client`, `slsk_client` (the sessions of `[nmdc_client]` and
    /// `[slsk_client]`), `nmdc_client@LABEL`, `slsk_client@LABEL` (`[[hubs]]`,
    /// `[[slsk_servers]]` and those added through the API).
    pub name: String,
    /// Server or client.
    pub role: Role,
    /// How it is doing.
    pub state: SessionState,
    /// Where it listens (servers) or what it is connected to (clients).
    pub address: String,
    /// Free text: who we are logged in as, or why it is offline.
    pub detail: String,
    /// A client session's network and label (chat ids of the session start with
    /// `NETWORK@LABEL:`, or `NETWORK:` for the empty label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRef>,
}

/// Which session a [`NetworkInfo`] is, and whether it can be removed at run time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRef {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// The label ("" for `[nmdc_client]` / `[slsk_client]`).
    pub label: String,
    /// Added through the API (kept in `node.sqlite`); otherwise from the configuration.
    pub added: bool,
}

/// A server or a client.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Something the node serves to others.
    Server,
    /// A session the node keeps with someone else's server.
    Client,
}

/// How a network role is doing.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Waiting for the share scan, connecting or logging in.
    Starting,
    /// Serving, or logged in.
    Online,
    /// Not connected (the detail says why); a client tries again.
    Offline,
    /// Off in the configuration.
    Disabled,
}

/// One place a search result can be downloaded from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// The label of the session (hub or server) it was found on; "" for the session of
    /// `[nmdc_client]` / `[slsk_client]`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// Who has it.
    pub user: String,
    /// Its path on that network (backslash separators).
    pub path: String,
    /// Free upload slots the source reported.
    pub free_slots: u32,
    /// What else the source told about itself and the file (per source: figures of
    /// different networks are never summed).
    #[serde(flatten)]
    pub details: SourceDetails,
}

/// A source's figures, each when its network gives it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceDetails {
    /// All its upload slots (NMDC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Uploads waiting in its queue (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Its average upload speed in bytes per second (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u64>,
    /// Bitrate in kbps (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u32>,
    /// Duration in seconds (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Variable bitrate (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vbr: Option<bool>,
    /// Sample rate in Hz (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Bits per sample (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_depth: Option<u32>,
}

/// One file found by a search, merged over its sources.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MergedResult {
    /// Unique over the node's lifetime.
    pub id: u64,
    /// The search it belongs to.
    pub search: u64,
    /// File name (the last path component).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Tiger tree hash (base32) when a source gave one.
    pub tth: Option<String>,
    /// Where it can be had.
    pub sources: Vec<Source>,
}

/// A download in the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransferInfo {
    /// Row id.
    pub id: i64,
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// The user we download from.
    pub source: String,
    /// The hub or server the source is on.
    pub hub: String,
    /// The path on the source.
    pub remote_path: String,
    /// TTH (base32) to ask for and verify against, NMDC only.
    pub tth: Option<String>,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Where the finished file goes.
    pub local_path: String,
    /// `queued`, `running`, `paused`, `done`, `failed`, `cancelled`.
    pub state: TransferState,
    /// Bytes on disk.
    pub bytes: u64,
    /// Failed attempts so far.
    pub retries: u32,
    /// Unix time of the next attempt (queued after a failure), else 0.
    pub next_attempt: i64,
    /// The last error.
    pub error: String,
    /// Unix time queued.
    pub created: i64,
    /// Unix time of the last change.
    pub updated: i64,
    /// Bytes per second now (running only).
    pub rate: u64,
    /// The folder download it is part of (`GET /api/transfers/groups`), if any.
    pub group: Option<i64>,
    /// What happened to the sources of a segmented download (one dropped for sending
    /// data that did not match the TTH, one given up): `app::segmented`.
    #[serde(default)]
    pub note: String,
}

/// One chat line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// Row id (0 for a line not stored yet).
    pub id: i64,
    /// Chat id: `nmdc:hub`, `nmdc:pm:NICK`, `slsk:room:ROOM`, `slsk:pm:USER`,
    /// `tox:friend:PUBLICKEY`, `dcc:chat:NICK`; in a labelled session `nmdc@LABEL:hub` …
    pub chat: String,
    /// Speaker.
    pub nick: String,
    /// Text.
    pub text: String,
    /// Said by this node.
    pub own: bool,
    /// Unix time.
    pub ts: i64,
    /// Own lines on networks with read receipts (Tox): whether the peer has it. Absent
    /// elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
}

/// A conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatInfo {
    /// Chat id.
    pub id: String,
    /// `nmdc`, `slsk`, `dcc` or `tox`.
    pub network: Network,
    /// The label of the hub's or server's session ("" for the default one; absent).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// `hub`, `room`, `pm`, `chat` or `friend`.
    pub kind: String,
    /// Room, hub or peer name (a Tox friend's nickname when known, else its key).
    pub name: String,
    /// The latest line, if any.
    pub last: Option<ChatMessage>,
    /// Whether the peer is online, where the network tells (Tox friends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
}

/// A chat id taken apart: `NETWORK[@LABEL]:KIND[:NAME]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatId<'a> {
    /// The network.
    pub network: Network,
    /// The session's label ("" for the default session and for DCC and Tox).
    pub label: &'a str,
    /// `hub`, `pm`, `room`, `chat` or `friend`.
    pub kind: &'a str,
    /// The peer, room or friend ("" for a hub's main chat).
    pub name: &'a str,
}

impl ChatId<'_> {
    /// The session it belongs to.
    pub fn session(&self) -> SessionKey {
        SessionKey::new(self.network, self.label)
    }
}

impl ChatInfo {
    /// A chat with no history yet.
    pub fn empty(id: String, c: &ChatId<'_>) -> ChatInfo {
        ChatInfo {
            network: c.network,
            session: c.label.to_owned(),
            kind: c.kind.to_owned(),
            name: c.name.to_owned(),
            id,
            last: None,
            online: None,
        }
    }

    /// Parse a chat id.
    pub fn parse_id(id: &str) -> Option<ChatId<'_>> {
        let mut it = id.splitn(3, ':');
        let head = it.next()?;
        let kind = it.next()?;
        let name = it.next().unwrap_or("");
        let (network, label) = match head.split_once('@') {
            Some((n, l)) if super::net::valid_label(l) => (n, l),
            Some(_) => return None,
            None => (head, ""),
        };
        let network: Network = network.parse().ok()?;
        let labelled = matches!(network, Network::Nmdc | Network::Slsk);
        if !label.is_empty() && !labelled {
            return None;
        }
        let ok = match (network, kind) {
            (Network::Nmdc, "hub") => name.is_empty(),
            (Network::Nmdc, "pm") | (Network::Slsk, "pm") | (Network::Slsk, "room") | (Network::Dcc, "chat") => {
                !name.is_empty() && name.len() <= 256
            }
            (Network::Tox, "friend") => name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            // A conference (group chat) by its 32-byte id (docs/protocols/tox.md#conferences).
            (Network::Tox, "conference") => name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            // An NGC group by its 32-byte chat id (docs/protocols/tox.md#ngc-group-chats).
            (Network::Tox, "group") => name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            _ => false,
        };
        ok.then_some(ChatId { network, label, kind, name })
    }

    /// The one spelling of a chat id (Tox keys in upper-case hex, as Tox IDs are shown).
    pub fn canonical_id(id: &str) -> String {
        match id.strip_prefix("tox:friend:") {
            Some(pk) if Self::parse_id(id).is_some() => format!("tox:friend:{}", pk.to_ascii_uppercase()),
            _ => match id.strip_prefix("tox:conference:") {
                Some(c) if Self::parse_id(id).is_some() => format!("tox:conference:{}", c.to_ascii_uppercase()),
                _ => match id.strip_prefix("tox:group:") {
                    Some(g) if Self::parse_id(id).is_some() => format!("tox:group:{}", g.to_ascii_uppercase()),
                    _ => id.to_owned(),
                },
            },
        }
    }
}

/// Someone in a hub's main chat or a Soulseek room, as `GET /api/users` lists them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerUser {
    /// Nick or user name.
    pub nick: String,
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// Bytes shared (NMDC's `$MyINFO`; Soulseek tells only counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_size: Option<u64>,
    /// Files shared (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Folders shared (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folders: Option<u64>,
    /// Description (NMDC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Client and version (NMDC's tag).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// Upload slots (NMDC's tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Every upload slot taken (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_full: Option<bool>,
    /// Average upload speed in bytes per second (Soulseek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u64>,
    /// Country code (Soulseek).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
    /// A hub operator.
    pub op: bool,
    /// Away.
    pub away: bool,
    /// Marked by the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<super::net::Relation>,
}

/// A Tox friend, as `GET /api/tox` and the `tox_friend` event show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxFriendInfo {
    /// Long-term public key (64 hex).
    pub pk: String,
    /// Its chat id, `tox:friend:PK`.
    pub chat: String,
    /// The nickname it last told us ("" until then).
    pub nickname: String,
    /// Friend connection up and ONLINE exchanged.
    pub online: bool,
    /// Connection progress: `AwaitingDHTKey` … `Connected` (docs/protocols/tox.md#progress).
    pub progress: String,
    /// Our friend request to it is not answered yet.
    pub request_sent: bool,
    /// Unix time added.
    pub added: i64,
}

/// A friend request waiting for accept or decline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxRequestInfo {
    /// The requester's long-term public key (64 hex).
    pub pk: String,
    /// Its message.
    pub message: String,
    /// Unix time received.
    pub received: i64,
}

/// A Tox conference (group chat) the node is in, as `GET /api/tox/conferences` and the
/// `tox_conference` event show it (docs/protocols/tox.md#conferences).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxConferenceInfo {
    /// The conference id (64 hex).
    pub id: String,
    /// Its chat id, `tox:conference:ID`.
    pub chat: String,
    /// Its title ("" when none was set).
    pub title: String,
    /// We have our peer number: lines can go out (once a peer is online).
    pub connected: bool,
    /// Who is in it (frozen peers left out), us included.
    pub peers: Vec<ToxConferencePeer>,
}

/// A peer of a Tox conference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxConferencePeer {
    /// Its name ("" until it tells).
    pub name: String,
    /// Its long-term public key (64 hex).
    pub pk: String,
    /// This peer is us.
    pub ours: bool,
}

/// An invite into a Tox conference from a friend, waiting to be accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxConferenceInvite {
    /// Its number (`POST /api/tox/conference-invites/{id}/accept`).
    pub invite: u32,
    /// The friend who sent it (64 hex).
    pub friend: String,
    /// The conference id (64 hex).
    pub conference: String,
}

/// An NGC group (the group chats of c-toxcore ≥ 0.2.19) the node is in, as `GET
/// /api/tox/groups` and the `tox_group` event show it (docs/protocols/tox.md#ngc-group-chats).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxGroupInfo {
    /// The group's chat id (64 hex).
    pub id: String,
    /// Its chat id in the node's chat model, `tox:group:ID`.
    pub chat: String,
    /// Its name ("" until the sync with a peer brought it).
    pub name: String,
    /// In the group: lines can go out (to the peers confirmed now).
    pub connected: bool,
    /// Its confirmed peers, us included.
    pub peers: Vec<ToxGroupPeer>,
}

/// A peer of an NGC group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxGroupPeer {
    /// Its nick in the group ("" until it tells).
    pub name: String,
    /// Its public key in this group (64 hex; a group key, not its Tox ID's).
    pub pk: String,
    /// This peer is us.
    pub ours: bool,
}

/// An invite into an NGC group from a friend, waiting to be accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToxGroupInvite {
    /// Its number (`POST /api/tox/group-invites/{id}/accept`).
    pub invite: u32,
    /// The friend who sent it (64 hex).
    pub friend: String,
    /// The group's chat id (64 hex).
    pub group: String,
    /// The group's name as the invite gives it.
    pub name: String,
}

/// Everything the node reports, as the WebSocket event stream sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A network changed state.
    Network {
        /// Its new state.
        network: NetworkInfo,
    },
    /// A search result arrived or gained a source.
    SearchResult {
        /// The search.
        search: u64,
        /// The result with only the source that is new (the others came before).
        result: MergedResult,
        /// How many sources it has now.
        source_count: usize,
    },
    /// A transfer changed state.
    Transfer {
        /// The transfer now.
        transfer: TransferInfo,
    },
    /// A running transfer's progress.
    Progress {
        /// Transfer id.
        id: i64,
        /// Bytes on disk.
        bytes: u64,
        /// Size.
        size: u64,
        /// Bytes per second.
        rate: u64,
    },
    /// A running segmented download's sources and block map
    /// (`GET /api/transfers/{id}/segments`).
    Segments {
        /// Transfer id.
        id: i64,
        /// The view.
        segments: super::segmented::SegmentsView,
    },
    /// A chat line.
    Chat {
        /// The line.
        message: ChatMessage,
    },
    /// The share was (re)scanned.
    Shares {
        /// Files shared.
        files: u64,
        /// Bytes shared.
        bytes: u64,
    },
    /// An own line on a network with read receipts reached the peer.
    ChatDelivered {
        /// The chat.
        chat: String,
        /// The line's id.
        id: i64,
    },
    /// A Tox friend was added or changed (online, offline, nickname, progress), or was
    /// removed (`removed` true).
    ToxFriend {
        /// The friend now.
        friend: ToxFriendInfo,
        /// It is no longer a friend.
        removed: bool,
    },
    /// A Tox friend request arrived (`pending` true) or was accepted/declined (false).
    ToxRequest {
        /// The request.
        request: ToxRequestInfo,
        /// Still waiting for an answer.
        pending: bool,
    },
    /// A Tox conference was joined or created, changed (peers, names, title), or was
    /// left (`removed` true).
    ToxConference {
        /// The conference now.
        conference: ToxConferenceInfo,
        /// We left it.
        removed: bool,
    },
    /// A friend invited us into a Tox conference (`pending` true), or the invite was
    /// accepted (false).
    ToxConferenceInvite {
        /// The invite.
        invite: ToxConferenceInvite,
        /// Still waiting for an answer.
        pending: bool,
    },
    /// An NGC group was joined or founded, changed (peers, names), or was left
    /// (`removed` true).
    ToxGroup {
        /// The group now.
        group: ToxGroupInfo,
        /// We left it.
        removed: bool,
    },
    /// A friend invited us into an NGC group (`pending` true), or the invite was accepted
    /// (false).
    ToxGroupInvite {
        /// The invite.
        invite: ToxGroupInvite,
        /// Still waiting for an answer.
        pending: bool,
    },
    /// Transfers were removed from the list (`DELETE /api/transfers/{id}`, `POST
    /// /api/transfers/clear`).
    TransfersRemoved {
        /// Their ids.
        ids: Vec<i64>,
    },
    /// A wishlist item found a match it had not seen before.
    WishlistMatch {
        /// The item.
        item: i64,
        /// The match (narrowed to the sources that pass the item's filters).
        result: MergedResult,
    },
    /// A chat with a live connection of its own (DCC) opened or closed.
    ChatOpen {
        /// The chat.
        chat: String,
        /// Open now.
        open: bool,
    },
    /// An upload was queued, moved in the queue, started, progressed or ended.
    Upload {
        /// The upload now.
        upload: crate::upload::UploadInfo,
    },
    /// The listener (a WebSocket) fell behind the node's fan-out and missed `missed`
    /// events: it should re-read what it shows over REST. Only the fan-out to listeners
    /// can lag; the node itself takes every driver event (crate::events).
    Resync {
        /// How many events it missed.
        missed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_type() {
        let e = Event::Progress { id: 3, bytes: 5, size: 10, rate: 1 };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v, serde_json::json!({"type": "progress", "id": 3, "bytes": 5, "size": 10, "rate": 1}));
    }

    fn parts(id: &str) -> Option<(&str, &str, &str)> {
        ChatInfo::parse_id(id).map(|c| (c.network.as_str(), c.kind, c.name))
    }

    #[test]
    fn chat_ids_of_labelled_sessions() {
        let c = ChatInfo::parse_id("nmdc@hub2:pm:bob").unwrap();
        assert_eq!((c.network, c.label, c.kind, c.name), (Network::Nmdc, "hub2", "pm", "bob"));
        assert_eq!(c.session().chat_id("pm", "bob"), "nmdc@hub2:pm:bob");
        assert!(ChatInfo::parse_id("slsk@b:room:x").is_some());
        assert!(ChatInfo::parse_id("nmdc@:hub").is_none());
        assert!(ChatInfo::parse_id("nmdc@a b:hub").is_none());
        assert!(ChatInfo::parse_id("dcc@x:chat:bob").is_none());
        let pk = "ab".repeat(32);
        assert!(ChatInfo::parse_id(&format!("tox@x:friend:{pk}")).is_none());
    }

    #[test]
    fn chat_ids_parse() {
        assert_eq!(parts("nmdc:hub"), Some(("nmdc", "hub", "")));
        assert_eq!(parts("slsk:room:a:b"), Some(("slsk", "room", "a:b")));
        assert_eq!(parts("slsk:pm:"), None);
        assert_eq!(parts("irc:pm:x"), None);
        assert_eq!(parts("nmdc:hub:x"), None);
        let pk = "ab".repeat(32);
        assert_eq!(parts(&format!("tox:friend:{pk}")), Some(("tox", "friend", pk.as_str())));
        assert_eq!(ChatInfo::canonical_id(&format!("tox:friend:{pk}")), format!("tox:friend:{}", "AB".repeat(32)));
        assert_eq!(ChatInfo::canonical_id("slsk:pm:Bob"), "slsk:pm:Bob");
        assert_eq!(parts(&format!("tox:friend:{}", "ab".repeat(31))), None);
        assert_eq!(parts(&format!("tox:friend:{}x", "ab".repeat(31) + "a")), None);
        assert_eq!(parts("tox:pm:x"), None);
    }
}
