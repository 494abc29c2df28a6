//! The node's NGC groups (the group chats of c-toxcore ≥ 0.2.19 and current qTox;
//! docs/protocols/tox.md#ngc-group-chats): each is a chat `tox:group:<64 hex chat id>` in
//! the node's chat model, its confirmed peers are that chat's users (`GET
//! /api/users?chat=…`), and invites from friends wait in `GET /api/tox/groups` until
//! accepted. The groups the node is in are kept in the settings table (`tox.groups`,
//! `omnipeer_tox::ngc::Groups::save` as hex) so they come back after a restart, as
//! c-toxcore keeps them in its profile: the group reconnects to its saved peers by itself
//! (no new invite), and its chat keeps its id and history.

use super::chats::{self, clean, ChatInfo, InviteInfo, Snapshot};
use super::{parse_pk, Cmd, Task};
use crate::app::model::{ChatMessage, Event, PeerUser, ToxGroupInfo, ToxGroupInvite, ToxGroupPeer};
use crate::app::{Node, NodeError};
use anyhow::anyhow;
use omnipeer_tox::crypto::PublicKey;
use omnipeer_tox::ngc::{ChatId, GroupEvent, MAX_GROUP_NAME_SIZE, MAX_MESSAGE_SIZE, MAX_PENDING_INVITES};
use std::collections::HashMap;
use std::time::Instant;
use tokio::sync::oneshot;

/// The settings key the groups are kept under.
const SETTING: &str = "tox.groups";
/// Longest settings value read back as a save (hex: two digits a byte): 64 groups of
/// 100 peers each stay well under it.
const MAX_SAVED_HEX: usize = 4 << 20;

/// The name a group founded without one gets (NGC groups must have a name).
const DEFAULT_NAME: &str = "omnipeer group";

/// What the API asks of the task about groups.
pub(super) enum GroupCmd {
    New { name: String, reply: oneshot::Sender<anyhow::Result<String>> },
    Invite { id: ChatId, friend: PublicKey, reply: oneshot::Sender<anyhow::Result<()>> },
    Accept { invite: u32, reply: oneshot::Sender<anyhow::Result<String>> },
    Send { id: ChatId, text: String, reply: oneshot::Sender<anyhow::Result<()>> },
    Leave { id: ChatId, reply: oneshot::Sender<anyhow::Result<()>> },
}

/// The task's view of its groups, for the API.
#[derive(Default)]
pub(super) struct GroupShared {
    snapshot: Snapshot<ToxGroupInfo, ToxGroupInvite>,
    /// The group names the invites gave, by invite number (the machine keeps at most
    /// `MAX_PENDING_INVITES` invites; names of answered or dropped ones are pruned).
    invite_names: HashMap<u32, String>,
    /// What the settings table holds (saved again only when it changes).
    saved: String,
}

/// `GET /api/tox/groups`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToxGroups {
    /// The groups we are in.
    pub groups: Vec<ToxGroupInfo>,
    /// Invites from friends waiting for an answer.
    pub invites: Vec<ToxGroupInvite>,
}

impl ChatInfo for ToxGroupInfo {
    fn id(&self) -> &str {
        &self.id
    }
}

impl InviteInfo for ToxGroupInvite {
    fn number(&self) -> u32 {
        self.invite
    }
}

/// A group's chat id in the node's chat model.
pub fn chat_id(id: &ChatId) -> String {
    chats::chat_id("group", id)
}

/// A group chat id from 64 hex digits.
pub fn parse_id(s: &str) -> anyhow::Result<ChatId> {
    chats::parse_id(s, "group chat id")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > MAX_SAVED_HEX {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// At start: the groups of the last run come back and start reconnecting.
pub(super) fn load(node: &Node, tox: &mut omnipeer_tox::tox::Tox) {
    let saved = node.db.lock().expect("db").setting(SETTING).ok().flatten().unwrap_or_default();
    if saved.is_empty() {
        return;
    }
    match unhex(&saved) {
        Some(b) => {
            if let Err(e) = tox.group_load(Instant::now(), &b) {
                tracing::warn!("tox: the saved groups do not load: {e}");
            }
        }
        None => tracing::warn!("tox: the saved groups are not hex"),
    }
}

impl Task {
    /// The snapshot the API reads, the settings row, and a `tox_group` event for each
    /// group that changed.
    pub(super) fn sync_groups(&mut self) {
        let tox = self.client.tox();
        let mut infos = Vec::new();
        for n in tox.groups() {
            let Some(id) = tox.group_chat_id(n) else { continue };
            let peers = tox
                .group_peers(n)
                .unwrap_or_default()
                .into_iter()
                .map(|p| ToxGroupPeer { name: clean(&p.name), pk: p.public_key.to_hex(), ours: p.is_self })
                .collect();
            infos.push(ToxGroupInfo {
                id: PublicKey(id).to_hex(),
                chat: chat_id(&id),
                name: clean(&tox.group_name(n).unwrap_or_default()),
                connected: tox.group_connected(n),
                peers,
            });
        }
        let pending = tox.group_invites();
        let saved = hex(&tox.group_save());
        let (changes, save) = {
            let mut s = self.handle().shared.lock().expect("tox");
            let g = &mut s.groups;
            g.invite_names.retain(|n, _| pending.iter().any(|i| i.0 == *n));
            let invites: Vec<ToxGroupInvite> = pending
                .iter()
                .map(|(invite, friend, id)| ToxGroupInvite {
                    invite: *invite,
                    friend: friend.to_hex(),
                    group: PublicKey(*id).to_hex(),
                    name: g.invite_names.get(invite).cloned().unwrap_or_default(),
                })
                .collect();
            let save = (g.saved != saved).then(|| {
                g.saved = saved.clone();
                saved
            });
            (g.snapshot.replace(infos, invites), save)
        };
        if let Some(s) = save {
            if let Err(e) = self.node.db.lock().expect("db").set_setting(SETTING, &s) {
                tracing::warn!("tox: cannot save the groups: {e:#}");
            }
        }
        changes.emit(
            &self.node,
            |group, removed| Event::ToxGroup { group, removed },
            |invite, pending| Event::ToxGroupInvite { invite, pending },
        );
    }

    /// A group event: lines into the group's chat, everything else into the snapshot.
    pub(super) fn on_group(&mut self, ev: GroupEvent) {
        match ev {
            GroupEvent::Message { group, peer, name, action, text } => {
                let Some(id) = self.client.tox().group_chat_id(group) else { return };
                let name = clean(&name);
                let nick = if name.is_empty() { format!("peer {peer}") } else { name };
                self.store_line(&chat_id(&id), &nick, action, &text);
            }
            GroupEvent::Invite { invite, friend, name, .. } => {
                tracing::info!("tox: group invite from {}", friend.to_hex());
                {
                    let mut s = self.handle().shared.lock().expect("tox");
                    // Bounded as the machine's invites are (older ones are pruned at the sync).
                    if s.groups.invite_names.len() < MAX_PENDING_INVITES * 2 {
                        s.groups.invite_names.insert(invite, clean(&name));
                    }
                }
                self.sync_groups();
            }
            GroupEvent::Rejected { group, reason } => {
                tracing::warn!("tox: group {group}: the peer we joined through refused us ({reason})");
                self.sync_groups();
            }
            _ => self.sync_groups(),
        }
    }

    fn group_number(&mut self, id: &ChatId) -> anyhow::Result<u32> {
        self.client
            .tox()
            .group_by_chat_id(id)
            .ok_or_else(|| NodeError::NotFound(format!("no group {}", PublicKey(*id).to_hex())).into())
    }

    pub(super) fn on_group_cmd(&mut self, c: GroupCmd) {
        let now = Instant::now();
        match c {
            GroupCmd::New { name, reply } => {
                let r = (|| {
                    let tox = self.client.tox();
                    let n = tox.group_new(now, &name)?;
                    Ok(PublicKey(tox.group_chat_id(n).ok_or_else(|| anyhow!("group gone"))?).to_hex())
                })();
                self.sync_groups();
                let _ = reply.send(r);
            }
            GroupCmd::Invite { id, friend, reply } => {
                let r = self.group_number(&id).and_then(|n| {
                    self.friend_online(&friend)?;
                    Ok(self.client.tox().group_invite_friend(now, n, &friend)?)
                });
                let _ = reply.send(r);
            }
            GroupCmd::Accept { invite, reply } => {
                let pending = self.client.tox().group_invites().into_iter().find(|i| i.0 == invite);
                let name = self.handle().shared.lock().expect("tox").groups.invite_names.get(&invite).cloned();
                let r = self.client.tox().group_join_invite(now, invite).map_err(anyhow::Error::from).and_then(|n| {
                    Ok(PublicKey(self.client.tox().group_chat_id(n).ok_or_else(|| anyhow!("group gone"))?).to_hex())
                });
                if let Ok(id) = &r {
                    let friend = pending.map(|i| i.1.to_hex()).unwrap_or_default();
                    let inv = ToxGroupInvite { invite, friend, group: id.clone(), name: name.unwrap_or_default() };
                    self.node.emit(Event::ToxGroupInvite { invite: inv, pending: false });
                }
                self.sync_groups();
                let _ = reply.send(r);
            }
            GroupCmd::Send { id, text, reply } => {
                let r = self.group_number(&id).and_then(|n| {
                    self.send_parts(&text, MAX_MESSAGE_SIZE, |t, action, part| {
                        Ok(t.client.tox().group_send(now, n, action, part)?)
                    })
                });
                let _ = reply.send(r);
            }
            GroupCmd::Leave { id, reply } => {
                let r = self.group_number(&id).and_then(|n| Ok(self.client.tox().group_leave(now, n)?));
                self.sync_groups();
                let _ = reply.send(r);
            }
        }
    }
}

impl Node {
    async fn group_call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> GroupCmd,
    ) -> anyhow::Result<T> {
        self.tox_call(|reply| Cmd::Group(make(reply))).await
    }

    /// `GET /api/tox/groups`.
    pub fn tox_groups(&self) -> anyhow::Result<ToxGroups> {
        let h = self.tox()?;
        let s = h.shared.lock().expect("tox");
        let g = &s.groups.snapshot;
        Ok(ToxGroups { groups: g.chats.clone(), invites: g.invites.clone() })
    }

    fn tox_group(&self, id: &str) -> anyhow::Result<ToxGroupInfo> {
        chats::find(self.tox_groups()?.groups, parse_id(id)?, "group")
    }

    /// `POST /api/tox/groups`: founds a private group (us alone in it, named `name`, cut
    /// to `MAX_GROUP_NAME_SIZE` bytes).
    pub async fn tox_group_new(&self, name: Option<&str>) -> anyhow::Result<ToxGroupInfo> {
        let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NAME).to_owned();
        if name.len() > MAX_GROUP_NAME_SIZE {
            return Err(NodeError::Invalid(format!("a group name is at most {MAX_GROUP_NAME_SIZE} bytes")).into());
        }
        let id = self.group_call(|reply| GroupCmd::New { name, reply }).await?;
        self.tox_group(&id)
    }

    /// `POST /api/tox/groups/{id}/invite`: invites an online friend.
    pub async fn tox_group_invite(&self, id: &str, friend: &str) -> anyhow::Result<ToxGroupInfo> {
        let gid = parse_id(id)?;
        let friend = parse_pk(friend).map_err(|e| NodeError::Invalid(e.to_string()))?;
        self.group_call(|reply| GroupCmd::Invite { id: gid, friend, reply }).await?;
        self.tox_group(id)
    }

    /// `POST /api/tox/group-invites/{id}/accept`: joins through the friend who invited.
    pub async fn tox_group_accept(&self, invite: &str) -> anyhow::Result<ToxGroupInfo> {
        let invite = chats::pending_invite(invite, &self.tox_groups()?.invites, "group")?;
        let id = self.group_call(|reply| GroupCmd::Accept { invite, reply }).await?;
        self.tox_group(&id)
    }

    /// `DELETE /api/tox/groups/{id}`: leaves (the peers are told); the chat's history stays.
    pub async fn tox_group_leave(&self, id: &str) -> anyhow::Result<ToxGroupInfo> {
        let info = self.tox_group(id)?;
        let gid = parse_id(id)?;
        self.group_call(|reply| GroupCmd::Leave { id: gid, reply }).await?;
        Ok(info)
    }

    /// A line into a group chat (`POST /api/chats/messages`): sent to the peers confirmed
    /// now (a group has no offline queue), then stored as our own line.
    pub(crate) async fn tox_group_send(&self, id: &str, text: &str) -> anyhow::Result<ChatMessage> {
        let gid = parse_id(id)?;
        let t = text.to_owned();
        self.group_call(|reply| GroupCmd::Send { id: gid, text: t, reply }).await.map_err(|e| {
            match e.downcast_ref::<omnipeer_tox::tox::ToxError>() {
                Some(omnipeer_tox::tox::ToxError::Group(g)) => {
                    NodeError::NotConnected(format!("the group ({g})")).into()
                }
                _ => e,
            }
        })?;
        self.tox_store_own(&chat_id(&gid), text)
    }

    /// Groups as chats (for the chat list): named by the group's name.
    pub(crate) fn tox_group_chats(&self) -> Vec<(String, String, bool)> {
        let Ok(all) = self.tox_groups() else { return Vec::new() };
        all.groups
            .into_iter()
            .map(|g| {
                let name = if g.name.is_empty() { format!("group {}", &g.id[..8]) } else { g.name };
                let online = g.connected && g.peers.len() > 1;
                (g.chat, name, online)
            })
            .collect()
    }

    /// The confirmed peers of group chat `tox:group:ID` as users.
    pub(crate) fn tox_group_users(&self, id: &str) -> anyhow::Result<Vec<PeerUser>> {
        Ok(chats::users(self.tox_group(id)?.peers.into_iter().map(|p| (p.name, p.pk, p.ours))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_hex_round_trips_and_junk_is_refused() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)), Some(b));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }

    #[test]
    fn group_chat_ids_parse_only_64_hex() {
        let id = [0xab; 32];
        assert_eq!(chat_id(&id), format!("tox:group:{}", "AB".repeat(32)));
        assert_eq!(parse_id(&"ab".repeat(32)).unwrap(), id);
        assert!(parse_id("ab").is_err());
        assert!(parse_id(&"zz".repeat(32)).is_err());
    }
}
