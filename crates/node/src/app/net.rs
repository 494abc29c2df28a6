//! The node's typed vocabulary: which network something belongs to, which session of that
//! network (a node may be logged in to several hubs and several Soulseek servers), and the
//! state of a download. These are strings only at the edges: the JSON of the API (serde
//! spells them as before) and the columns of `node.sqlite` (`as_str` / `FromStr`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A network the node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Direct Connect (NMDC hubs).
    Nmdc,
    /// Soulseek.
    Slsk,
    /// mIRC DCC Server.
    Dcc,
    /// Tox.
    Tox,
}

impl Network {
    /// Every network, in the order the node shows them.
    pub const ALL: [Network; 4] = [Network::Nmdc, Network::Slsk, Network::Dcc, Network::Tox];

    /// The name used in the API, chat ids and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Nmdc => "nmdc",
            Network::Slsk => "slsk",
            Network::Dcc => "dcc",
            Network::Tox => "tox",
        }
    }

    /// Whether a search can be sent on it (hubs and Soulseek servers can; Tox and DCC
    /// have no search).
    pub fn can_search(self) -> bool {
        matches!(self, Network::Nmdc | Network::Slsk)
    }

    /// How people call it.
    pub fn title(self) -> &'static str {
        match self {
            Network::Nmdc => "Direct Connect",
            Network::Slsk => "Soulseek",
            Network::Dcc => "DCC",
            Network::Tox => "Tox",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Network`]'s (or of [`TransferState`]'s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    what: &'static str,
    name: String,
}

impl FromStr for Network {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Network, UnknownName> {
        Network::ALL.into_iter().find(|n| n.as_str() == s).ok_or(UnknownName { what: "network", name: s.into() })
    }
}

/// Where a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    /// Waiting for a slot, a session or its retry time.
    Queued,
    /// An attempt is under way.
    Running,
    /// Stopped by the user; resumes from the bytes on disk.
    Paused,
    /// Complete (and verified when the source gave a TTH).
    Done,
    /// Out of retries, or refused for good.
    Failed,
    /// Cancelled by the user; the partial file is gone.
    Cancelled,
}

impl TransferState {
    /// Every state.
    pub const ALL: [TransferState; 6] = [
        TransferState::Queued,
        TransferState::Running,
        TransferState::Paused,
        TransferState::Done,
        TransferState::Failed,
        TransferState::Cancelled,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Queued => "queued",
            TransferState::Running => "running",
            TransferState::Paused => "paused",
            TransferState::Done => "done",
            TransferState::Failed => "failed",
            TransferState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TransferState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransferState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<TransferState, UnknownName> {
        TransferState::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or(UnknownName { what: "transfer state", name: s.into() })
    }
}

/// What the user asks of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferAction {
    /// Stop it, keeping the partial file.
    Pause,
    /// Queue a paused one again.
    Resume,
    /// Stop it for good and delete the partial file.
    Cancel,
    /// Queue a failed or cancelled one again, retries reset.
    Retry,
}

impl TransferAction {
    /// The name in the API (`POST /api/transfers/{id}/{action}`).
    pub fn as_str(self) -> &'static str {
        match self {
            TransferAction::Pause => "pause",
            TransferAction::Resume => "resume",
            TransferAction::Cancel => "cancel",
            TransferAction::Retry => "retry",
        }
    }
}

impl FromStr for TransferAction {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<TransferAction, UnknownName> {
        [TransferAction::Pause, TransferAction::Resume, TransferAction::Cancel, TransferAction::Retry]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(UnknownName { what: "action", name: s.into() })
    }
}

/// What the user made of another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    /// A buddy: listed, marked in user lists.
    Buddy,
    /// Ignored: their private messages, chat lines and search results are dropped.
    Ignored,
    /// Banned from uploads: their requests are refused.
    Banned,
}

impl Relation {
    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Buddy => "buddy",
            Relation::Ignored => "ignored",
            Relation::Banned => "banned",
        }
    }
}

impl FromStr for Relation {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Relation, UnknownName> {
        [Relation::Buddy, Relation::Ignored, Relation::Banned]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownName { what: "relation", name: s.into() })
    }
}

/// Longest session label.
pub const MAX_LABEL: usize = 64;

/// Whether `label` can name a session: 1–[`MAX_LABEL`] of `A-Z a-z 0-9 . _ -` (it is part
/// of chat ids such as `nmdc@LABEL:hub`, where `:` and `@` separate fields).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A label made from an address: `hub.example.org:411` → `hub.example.org-411`.
pub fn label_from_address(address: &str) -> String {
    let a = address.split("://").last().unwrap_or(address);
    let mut l = String::new();
    for c in a.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' };
        // One dash for a run of separators: `[::1]:2242` → `1-2242`.
        if !(c == '-' && (l.is_empty() || l.ends_with('-'))) && l.len() < MAX_LABEL {
            l.push(c);
        }
    }
    let l = l.trim_end_matches('-').to_owned();
    if l.is_empty() {
        "session".into()
    } else {
        l
    }
}

/// Which session of a network a chat, a search result or a transfer belongs to: the
/// network and the session's label. The session of the single-hub and single-server
/// settings (`[nmdc_client].hub`, `[slsk_client].server`) has the empty label, so its
/// chat ids are the plain ones (`nmdc:hub`, `slsk:room:ROOM`); every other session's
/// ids carry its label (`nmdc@LABEL:hub`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// The network.
    pub network: Network,
    /// The label ("" for the default session).
    pub label: String,
}

impl SessionKey {
    /// The key of `network`'s session `label`.
    pub fn new(network: Network, label: &str) -> SessionKey {
        SessionKey { network, label: label.to_owned() }
    }

    /// The prefix of this session's chat ids: `nmdc` or `nmdc@LABEL`.
    pub fn chat_prefix(&self) -> String {
        if self.label.is_empty() {
            self.network.as_str().to_owned()
        } else {
            format!("{}@{}", self.network, self.label)
        }
    }

    /// A chat id in this session: `chat_id("pm", "bob")` → `nmdc@LABEL:pm:bob`.
    pub fn chat_id(&self, kind: &str, name: &str) -> String {
        if name.is_empty() {
            format!("{}:{kind}", self.chat_prefix())
        } else {
            format!("{}:{kind}:{name}", self.chat_prefix())
        }
    }

    /// The name of this session in `/api/networks`: `nmdc_client` or `nmdc_client@LABEL`.
    pub fn status_name(&self) -> String {
        if self.label.is_empty() {
            format!("{}_client", self.network)
        } else {
            format!("{}_client@{}", self.network, self.label)
        }
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chat_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in Network::ALL {
            assert_eq!(n.as_str().parse::<Network>(), Ok(n));
            assert_eq!(serde_json::to_value(n).unwrap(), serde_json::json!(n.as_str()));
        }
        for s in TransferState::ALL {
            assert_eq!(s.as_str().parse::<TransferState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert!("irc".parse::<Network>().is_err());
        assert!("Queued".parse::<TransferState>().is_err());
    }

    #[test]
    fn labels() {
        assert!(valid_label("hub-2.example_org"));
        assert!(!valid_label("a:b") && !valid_label("") && !valid_label("a@b") && !valid_label(&"a".repeat(65)));
        assert_eq!(label_from_address("dchub://hub.example.org:411"), "hub.example.org-411");
        assert_eq!(label_from_address("[::1]:2242"), "1-2242");
        assert!(valid_label(&label_from_address("::::")));
        let k = SessionKey::new(Network::Nmdc, "");
        assert_eq!((k.chat_id("hub", ""), k.status_name()), ("nmdc:hub".into(), "nmdc_client".into()));
        let k = SessionKey::new(Network::Slsk, "two");
        assert_eq!(k.chat_id("room", "a:b"), "slsk@two:room:a:b");
        assert_eq!(k.status_name(), "slsk_client@two");
    }
}
