//! What the node's two kinds of Tox group chat share: conferences (`conference.rs`,
//! docs/protocols/tox.md#conferences) and NGC groups (`group.rs`,
//! docs/protocols/tox.md#ngc-group-chats). Both are chats `tox:<kind>:<64 hex id>`, keep a
//! snapshot of the chats and the invites for the API, turn their peers into users, and talk
//! to the task through the same command channel; only the machine calls and the names
//! differ, and those stay in the two modules.

use super::{message_kind, split_message, Task};
use crate::app::model::{ChatMessage, Event, PeerUser};
use crate::app::net::Network;
use crate::app::{Node, NodeError};
use omnipeer_tox::crypto::PublicKey;
use omnipeer_tox::messenger::MessageKind;

/// A chat of either kind as the API shows it (`ToxConferenceInfo`, `ToxGroupInfo`).
pub(super) trait ChatInfo: Clone + PartialEq {
    /// Its id (64 hex).
    fn id(&self) -> &str;
}

/// An invite of either kind (`ToxConferenceInvite`, `ToxGroupInvite`).
pub(super) trait InviteInfo: Clone + PartialEq {
    /// Its number.
    fn number(&self) -> u32;
}

/// The task's snapshot of one kind's chats and pending invites, for the API.
pub(super) struct Snapshot<C, I> {
    pub chats: Vec<C>,
    pub invites: Vec<I>,
}

impl<C, I> Default for Snapshot<C, I> {
    fn default() -> Self {
        Snapshot { chats: Vec::new(), invites: Vec::new() }
    }
}

/// What a new snapshot changed: to be sent as events.
pub(super) struct Changes<C, I> {
    /// Chats new or different.
    changed: Vec<C>,
    /// Chats no longer there.
    gone: Vec<C>,
    /// Invites not seen before.
    new_invites: Vec<I>,
}

impl<C: ChatInfo, I: InviteInfo> Snapshot<C, I> {
    /// Takes the new view and says what changed against the old one.
    pub fn replace(&mut self, chats: Vec<C>, invites: Vec<I>) -> Changes<C, I> {
        let changed = chats.iter().filter(|i| !self.chats.contains(i)).cloned().collect();
        let gone = self.chats.iter().filter(|o| !chats.iter().any(|i| i.id() == o.id())).cloned().collect();
        let new_invites = invites.iter().filter(|i| !self.invites.contains(i)).cloned().collect();
        self.chats = chats;
        self.invites = invites;
        Changes { changed, gone, new_invites }
    }
}

impl<C, I> Changes<C, I> {
    /// The events: `chat(info, removed)` for each chat changed or gone, `invite(invite,
    /// pending = true)` for each new invite.
    pub fn emit(self, node: &Node, chat: impl Fn(C, bool) -> Event, invite: impl Fn(I, bool) -> Event) {
        for c in self.changed {
            node.emit(chat(c, false));
        }
        for c in self.gone {
            node.emit(chat(c, true));
        }
        for i in self.new_invites {
            node.emit(invite(i, true));
        }
    }
}

/// A chat's id in the node's chat model: `tox:<kind>:<64 hex>`.
pub(super) fn chat_id(kind: &str, id: &[u8; 32]) -> String {
    format!("tox:{kind}:{}", PublicKey(*id).to_hex())
}

/// An id from 64 hex digits; `what` names it in the error ("conference id").
pub(super) fn parse_id(s: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let s = s.trim();
    let pk = PublicKey::from_hex(s)
        .filter(|_| s.len() == 64)
        .ok_or_else(|| NodeError::NotFound(format!("{s:?} is not a Tox {what} (64 hex digits)")))?;
    Ok(pk.0)
}

/// Control characters out of a name a peer chose.
pub(super) fn clean(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).collect()
}

/// The chat `id` (64 hex, any case) among `chats`; `kind` names it in the error.
pub(super) fn find<C: ChatInfo>(chats: Vec<C>, id: [u8; 32], kind: &str) -> anyhow::Result<C> {
    let id = PublicKey(id).to_hex();
    chats.into_iter().find(|c| c.id() == id).ok_or_else(|| NodeError::NotFound(format!("no {kind} {id}")).into())
}

/// An invite number the API was given, if it is one of `invites`; `kind` names it in the
/// error.
pub(super) fn pending_invite<I: InviteInfo>(invite: &str, invites: &[I], kind: &str) -> anyhow::Result<u32> {
    let n: u32 = invite.trim().parse().map_err(|_| NodeError::NotFound(format!("no {kind} invite {invite:?}")))?;
    if !invites.iter().any(|i| i.number() == n) {
        return Err(NodeError::NotFound(format!("no {kind} invite {n}")).into());
    }
    Ok(n)
}

/// Peers `(name, public key hex, ours)` as users, sorted by nick (a peer without a name
/// shows the start of its key).
pub(super) fn users(peers: impl IntoIterator<Item = (String, String, bool)>) -> Vec<PeerUser> {
    let mut users: Vec<PeerUser> = peers
        .into_iter()
        .map(|(name, pk, ours)| PeerUser {
            nick: if name.is_empty() { pk[..8].to_owned() } else { name },
            network: Network::Tox,
            share_size: None,
            files: None,
            folders: None,
            description: if ours { "you".into() } else { pk },
            client: String::new(),
            slots: None,
            slots_full: None,
            speed: None,
            country: String::new(),
            op: false,
            away: false,
            relation: None,
        })
        .collect();
    users.sort_by_key(|a| a.nick.to_lowercase());
    users
}

impl Task {
    /// A line that came in: into chat `chat`, an action as `/me TEXT`.
    pub(super) fn store_line(&self, chat: &str, nick: &str, action: bool, text: &str) {
        let text = if action { format!("/me {text}") } else { text.to_owned() };
        self.node.store_chat(chat, nick, &text, false);
    }

    /// Invites go only to a friend online now.
    pub(super) fn friend_online(&mut self, friend: &PublicKey) -> anyhow::Result<()> {
        if !self.client.tox().is_online(friend) {
            return Err(NodeError::NotConnected(format!("Tox friend {} (offline)", friend.to_hex())).into());
        }
        Ok(())
    }

    /// Our line `text` in parts of at most `max` bytes, each given to `send` with whether it
    /// is an action (`/me TEXT`).
    pub(super) fn send_parts(
        &mut self,
        text: &str,
        max: usize,
        mut send: impl FnMut(&mut Self, bool, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (kind, body) = message_kind(text);
        for part in split_message(body, max) {
            send(self, kind == MessageKind::Action, part)?;
        }
        Ok(())
    }
}

impl Node {
    /// Our own line, sent, into chat `chat`.
    pub(super) fn tox_store_own(&self, chat: &str, text: &str) -> anyhow::Result<ChatMessage> {
        let m = self.db.lock().expect("db").chat_add(chat, &self.nick(), text, true)?;
        self.emit(Event::Chat { message: m.clone() });
        Ok(m)
    }
}
