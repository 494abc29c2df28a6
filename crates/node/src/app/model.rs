//! The node's shared data types, as the API and the event stream show them (see
//! docs/api.md for their JSON).

use serde::{Deserialize, Serialize};

/// One network role of the node and how it is doing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkInfo {
    /// `dcc`, `nmdc_hub`, `slsk_server`, `nmdc_client`, `slsk_client`.
    pub name: String,
    /// `server` or `client`.
    pub role: String,
    /// `starting`, `online`, `offline`, `disabled`.
    pub state: String,
    /// Where it listens (servers) or what it is connected to (clients).
    pub address: String,
    /// Free text: who we are logged in as, or why it is offline.
    pub detail: String,
}

/// One place a search result can be downloaded from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    /// `nmdc` or `slsk`.
    pub network: String,
    /// Who has it.
    pub user: String,
    /// Its path on that network (backslash separators).
    pub path: String,
    /// Free upload slots the source reported.
    pub free_slots: u32,
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
    pub network: String,
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
    pub state: String,
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
}

/// One chat line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// Row id (0 for a line not stored yet).
    pub id: i64,
    /// Chat id: `nmdc:hub`, `nmdc:pm:NICK`, `slsk:room:ROOM`, `slsk:pm:USER`,
    /// `tox:friend:PUBLICKEY`.
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
    /// `nmdc`, `slsk` or `tox`.
    pub network: String,
    /// `hub`, `room`, `pm` or `friend`.
    pub kind: String,
    /// Room, hub or peer name (a Tox friend's nickname when known, else its key).
    pub name: String,
    /// The latest line, if any.
    pub last: Option<ChatMessage>,
    /// Whether the peer is online, where the network tells (Tox friends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
}

impl ChatInfo {
    /// Parse a chat id into (network, kind, name).
    pub fn parse_id(id: &str) -> Option<(&str, &str, &str)> {
        let mut it = id.splitn(3, ':');
        let network = it.next()?;
        let kind = it.next()?;
        let name = it.next().unwrap_or("");
        match (network, kind) {
            ("nmdc", "hub") if name.is_empty() => Some((network, kind, name)),
            ("nmdc", "pm") | ("slsk", "pm") | ("slsk", "room") | ("dcc", "chat")
                if !name.is_empty() && name.len() <= 256 =>
            {
                Some((network, kind, name))
            }
            ("tox", "friend") if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some((network, kind, name))
            }
            _ => None,
        }
    }

    /// The one spelling of a chat id (Tox keys in upper-case hex, as Tox IDs are shown).
    pub fn canonical_id(id: &str) -> String {
        match id.strip_prefix("tox:friend:") {
            Some(pk) if Self::parse_id(id).is_some() => format!("tox:friend:{}", pk.to_ascii_uppercase()),
            _ => id.to_owned(),
        }
    }
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
        /// The result as merged so far.
        result: MergedResult,
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

    #[test]
    fn chat_ids_parse() {
        assert_eq!(ChatInfo::parse_id("nmdc:hub"), Some(("nmdc", "hub", "")));
        assert_eq!(ChatInfo::parse_id("slsk:room:a:b"), Some(("slsk", "room", "a:b")));
        assert_eq!(ChatInfo::parse_id("slsk:pm:"), None);
        assert_eq!(ChatInfo::parse_id("irc:pm:x"), None);
        assert_eq!(ChatInfo::parse_id("nmdc:hub:x"), None);
        let pk = "ab".repeat(32);
        assert_eq!(ChatInfo::parse_id(&format!("tox:friend:{pk}")), Some(("tox", "friend", pk.as_str())));
        assert_eq!(ChatInfo::canonical_id(&format!("tox:friend:{pk}")), format!("tox:friend:{}", "AB".repeat(32)));
        assert_eq!(ChatInfo::canonical_id("slsk:pm:Bob"), "slsk:pm:Bob");
        assert_eq!(ChatInfo::parse_id(&format!("tox:friend:{}", "ab".repeat(31))), None);
        assert_eq!(ChatInfo::parse_id(&format!("tox:friend:{}x", "ab".repeat(31) + "a")), None);
        assert_eq!(ChatInfo::parse_id("tox:pm:x"), None);
    }
}
