//! The node's Tox conferences (the group chats of c-toxcore 0.2.18;
//! docs/protocols/tox.md#conferences): each is a chat `tox:conference:<64 hex id>` in the
//! node's chat model, its peers are that chat's users (`GET /api/users?chat=…`), invites
//! from friends wait in `GET /api/tox/conferences` until accepted, and the conferences
//! the node is in are kept in the settings table (`tox.conferences`) so they come back
//! after a restart: their peers return frozen and are rejoined as they come online,
//! as c-toxcore does with its saved conferences.

use super::chats::{self, ChatInfo, InviteInfo, Snapshot};
use super::{parse_pk, Cmd, Task};
use crate::app::model::{ChatMessage, Event, PeerUser, ToxConferenceInfo, ToxConferenceInvite, ToxConferencePeer};
use crate::app::{Node, NodeError};
use anyhow::anyhow;
use omnipeer_tox::conference::{ConferenceEvent, ConferenceId, SavedConference, MAX_MESSAGE_DATA_LEN};
use omnipeer_tox::crypto::PublicKey;
use omnipeer_tox::messenger::MessageKind;
use serde_json::{json, Value};
use std::time::Instant;
use tokio::sync::oneshot;

/// The settings key the conferences are kept under.
const SETTING: &str = "tox.conferences";
/// Saved conferences loaded at most at a start (the machine holds at most
/// `omnipeer_tox::conference::MAX_CONFERENCES` anyway).
const MAX_SAVED: usize = omnipeer_tox::conference::MAX_CONFERENCES;

/// What the API asks of the task about conferences.
pub(super) enum ConfCmd {
    New { title: Option<String>, reply: oneshot::Sender<anyhow::Result<String>> },
    Invite { id: ConferenceId, friend: PublicKey, reply: oneshot::Sender<anyhow::Result<()>> },
    Accept { invite: u32, reply: oneshot::Sender<anyhow::Result<String>> },
    Send { id: ConferenceId, text: String, reply: oneshot::Sender<anyhow::Result<()>> },
    Leave { id: ConferenceId, reply: oneshot::Sender<anyhow::Result<()>> },
}

/// The task's view of its conferences, for the API.
#[derive(Default)]
pub(super) struct ConfShared {
    snapshot: Snapshot<ToxConferenceInfo, ToxConferenceInvite>,
    /// What the settings table holds (saved again only when it changes).
    saved: String,
}

/// `GET /api/tox/conferences`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToxConferences {
    /// The conferences we are in.
    pub conferences: Vec<ToxConferenceInfo>,
    /// Invites from friends waiting for an answer.
    pub invites: Vec<ToxConferenceInvite>,
}

impl ChatInfo for ToxConferenceInfo {
    fn id(&self) -> &str {
        &self.id
    }
}

impl InviteInfo for ToxConferenceInvite {
    fn number(&self) -> u32 {
        self.invite
    }
}

/// A conference's chat id.
pub fn chat_id(id: &ConferenceId) -> String {
    chats::chat_id("conference", id)
}

/// A conference id from 64 hex digits.
pub fn parse_id(s: &str) -> anyhow::Result<ConferenceId> {
    chats::parse_id(s, "conference id")
}

fn encode(saved: &[SavedConference]) -> String {
    let v: Vec<Value> = saved
        .iter()
        .map(|c| {
            json!({
                "kind": c.kind, "id": PublicKey(c.id).to_hex(), "peer_number": c.peer_number,
                "message_number": c.message_number, "title": c.title,
                "peers": c.peers.iter().map(|(n, r, t, name)| json!([n, r.to_hex(), t.to_hex(), name])).collect::<Vec<_>>(),
            })
        })
        .collect();
    Value::Array(v).to_string()
}

/// The saved conferences; entries that do not parse are skipped.
fn decode(s: &str) -> Vec<SavedConference> {
    let Ok(Value::Array(v)) = serde_json::from_str::<Value>(s) else { return Vec::new() };
    v.iter()
        .take(MAX_SAVED)
        .filter_map(|c| {
            let peers = c["peers"]
                .as_array()?
                .iter()
                .filter_map(|p| {
                    Some((
                        u16::try_from(p[0].as_u64()?).ok()?,
                        PublicKey::from_hex(p[1].as_str()?)?,
                        PublicKey::from_hex(p[2].as_str()?)?,
                        p[3].as_str()?.to_owned(),
                    ))
                })
                .collect();
            Some(SavedConference {
                kind: u8::try_from(c["kind"].as_u64()?).ok()?,
                id: PublicKey::from_hex(c["id"].as_str()?)?.0,
                peer_number: u16::try_from(c["peer_number"].as_u64()?).ok()?,
                message_number: u32::try_from(c["message_number"].as_u64()?).ok()?,
                title: c["title"].as_str()?.to_owned(),
                peers,
            })
        })
        .collect()
}

/// At start: the conferences of the last run come back (before the first event).
pub(super) fn load(node: &Node, tox: &mut omnipeer_tox::tox::Tox) {
    let saved = node.db.lock().expect("db").setting(SETTING).ok().flatten().unwrap_or_default();
    for c in decode(&saved) {
        if let Err(e) = tox.conference_load(Instant::now(), &c) {
            tracing::warn!("tox: conference {}: {e}", PublicKey(c.id).to_hex());
        }
    }
}

impl Task {
    /// The snapshot the API reads, the settings row, and a `tox_conference` event for
    /// each conference that changed.
    pub(super) fn sync_conferences(&mut self) {
        let tox = self.client.tox();
        let mut infos = Vec::new();
        for n in tox.conferences() {
            let Some(id) = tox.conference_id(n) else { continue };
            let peers = tox
                .conference_peers(n)
                .unwrap_or_default()
                .into_iter()
                .map(|p| ToxConferencePeer { name: p.name, pk: p.pk.to_hex(), ours: p.ours })
                .collect();
            infos.push(ToxConferenceInfo {
                id: PublicKey(id).to_hex(),
                chat: chat_id(&id),
                title: tox.conference_title(n).unwrap_or_default(),
                connected: tox.conference_connected(n),
                peers,
            });
        }
        let invites: Vec<ToxConferenceInvite> = tox
            .conference_invites()
            .into_iter()
            .map(|(invite, friend, id)| ToxConferenceInvite {
                invite,
                friend: friend.to_hex(),
                conference: PublicKey(id).to_hex(),
            })
            .collect();
        let saved = encode(&tox.conference_save());
        let (changes, save) = {
            let mut s = self.handle().shared.lock().expect("tox");
            let c = &mut s.conferences;
            let changes = c.snapshot.replace(infos, invites);
            let save = (c.saved != saved).then(|| {
                c.saved = saved.clone();
                saved
            });
            (changes, save)
        };
        if let Some(s) = save {
            if let Err(e) = self.node.db.lock().expect("db").set_setting(SETTING, &s) {
                tracing::warn!("tox: cannot save the conferences: {e:#}");
            }
        }
        changes.emit(
            &self.node,
            |conference, removed| Event::ToxConference { conference, removed },
            |invite, pending| Event::ToxConferenceInvite { invite, pending },
        );
    }

    /// A conference event: lines into the conference's chat, everything else into the
    /// snapshot.
    pub(super) fn on_conference(&mut self, ev: ConferenceEvent) {
        if let ConferenceEvent::Message { conference, pk, name, kind, text, .. } = &ev {
            let Some(id) = self.client.tox().conference_id(*conference) else { return };
            let name = chats::clean(name);
            let nick = if name.is_empty() { pk.to_hex()[..8].to_owned() } else { name };
            self.store_line(&chat_id(&id), &nick, *kind == MessageKind::Action, text);
            return;
        }
        if let ConferenceEvent::Invite { friend, .. } = &ev {
            tracing::info!("tox: conference invite from {}", friend.to_hex());
        }
        self.sync_conferences();
    }

    fn conference_number(&mut self, id: &ConferenceId) -> anyhow::Result<u32> {
        self.client
            .tox()
            .conference_by_id(id)
            .ok_or_else(|| NodeError::NotFound(format!("no conference {}", PublicKey(*id).to_hex())).into())
    }

    pub(super) fn on_conference_cmd(&mut self, c: ConfCmd) {
        let now = Instant::now();
        match c {
            ConfCmd::New { title, reply } => {
                let r = (|| {
                    let tox = self.client.tox();
                    let n = tox.conference_new(now)?;
                    if let Some(t) = title.filter(|t| !t.trim().is_empty()) {
                        tox.conference_set_title(now, n, t.trim())?;
                    }
                    Ok(PublicKey(tox.conference_id(n).ok_or_else(|| anyhow!("conference gone"))?).to_hex())
                })();
                self.sync_conferences();
                let _ = reply.send(r);
            }
            ConfCmd::Invite { id, friend, reply } => {
                let r = self.conference_number(&id).and_then(|n| {
                    self.friend_online(&friend)?;
                    Ok(self.client.tox().conference_invite(now, n, &friend)?)
                });
                let _ = reply.send(r);
            }
            ConfCmd::Accept { invite, reply } => {
                let friend = self.client.tox().conference_invites().into_iter().find(|i| i.0 == invite).map(|i| i.1);
                let r = self.client.tox().conference_join(now, invite).map_err(anyhow::Error::from).and_then(|n| {
                    Ok(PublicKey(self.client.tox().conference_id(n).ok_or_else(|| anyhow!("conference gone"))?)
                        .to_hex())
                });
                if let Ok(id) = &r {
                    let friend = friend.map(|f| f.to_hex()).unwrap_or_default();
                    let inv = ToxConferenceInvite { invite, friend, conference: id.clone() };
                    self.node.emit(Event::ToxConferenceInvite { invite: inv, pending: false });
                }
                self.sync_conferences();
                let _ = reply.send(r);
            }
            ConfCmd::Send { id, text, reply } => {
                let r = self.conference_number(&id).and_then(|n| {
                    self.send_parts(&text, MAX_MESSAGE_DATA_LEN, |t, action, part| {
                        let kind = if action { MessageKind::Action } else { MessageKind::Normal };
                        Ok(t.client.tox().conference_send(now, n, kind, part)?)
                    })
                });
                let _ = reply.send(r);
            }
            ConfCmd::Leave { id, reply } => {
                let r = self.conference_number(&id).and_then(|n| Ok(self.client.tox().conference_leave(now, n)?));
                self.sync_conferences();
                let _ = reply.send(r);
            }
        }
    }
}

impl Node {
    async fn conf_call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> ConfCmd,
    ) -> anyhow::Result<T> {
        self.tox_call(|reply| Cmd::Conference(make(reply))).await
    }

    /// `GET /api/tox/conferences`.
    pub fn tox_conferences(&self) -> anyhow::Result<ToxConferences> {
        let h = self.tox()?;
        let s = h.shared.lock().expect("tox");
        let c = &s.conferences.snapshot;
        Ok(ToxConferences { conferences: c.chats.clone(), invites: c.invites.clone() })
    }

    fn tox_conference(&self, id: &str) -> anyhow::Result<ToxConferenceInfo> {
        chats::find(self.tox_conferences()?.conferences, parse_id(id)?, "conference")
    }

    /// `POST /api/tox/conferences`: a new conference with us alone in it.
    pub async fn tox_conference_new(&self, title: Option<&str>) -> anyhow::Result<ToxConferenceInfo> {
        let title = title.map(str::to_owned);
        let id = self.conf_call(|reply| ConfCmd::New { title, reply }).await?;
        self.tox_conference(&id)
    }

    /// `POST /api/tox/conferences/{id}/invite`: invites an online friend.
    pub async fn tox_conference_invite(&self, id: &str, friend: &str) -> anyhow::Result<ToxConferenceInfo> {
        let cid = parse_id(id)?;
        let friend = parse_pk(friend).map_err(|e| NodeError::Invalid(e.to_string()))?;
        self.conf_call(|reply| ConfCmd::Invite { id: cid, friend, reply }).await?;
        self.tox_conference(id)
    }

    /// `POST /api/tox/conference-invites/{id}/accept`: joins through the friend who invited.
    pub async fn tox_conference_accept(&self, invite: &str) -> anyhow::Result<ToxConferenceInfo> {
        let invite = chats::pending_invite(invite, &self.tox_conferences()?.invites, "conference")?;
        let id = self.conf_call(|reply| ConfCmd::Accept { invite, reply }).await?;
        self.tox_conference(&id)
    }

    /// `DELETE /api/tox/conferences/{id}`: leaves (the others are told); the chat's
    /// history stays.
    pub async fn tox_conference_leave(&self, id: &str) -> anyhow::Result<ToxConferenceInfo> {
        let info = self.tox_conference(id)?;
        let cid = parse_id(id)?;
        self.conf_call(|reply| ConfCmd::Leave { id: cid, reply }).await?;
        Ok(info)
    }

    /// A line into a conference chat (`POST /api/chats/messages`): sent to the peers
    /// online now (a conference has no offline queue), then stored as our own line.
    pub(crate) async fn tox_conference_send(&self, id: &str, text: &str) -> anyhow::Result<ChatMessage> {
        let cid = parse_id(id)?;
        let t = text.to_owned();
        self.conf_call(|reply| ConfCmd::Send { id: cid, text: t, reply }).await.map_err(|e| {
            match e.downcast_ref::<omnipeer_tox::tox::ToxError>() {
                Some(omnipeer_tox::tox::ToxError::Conference(c)) => {
                    NodeError::NotConnected(format!("the conference ({c})")).into()
                }
                _ => e,
            }
        })?;
        self.tox_store_own(&chat_id(&cid), text)
    }

    /// Conferences as chats (for the chat list): name = title, else the first peers' names.
    pub(crate) fn tox_conference_chats(&self) -> Vec<(String, String, bool)> {
        let Ok(all) = self.tox_conferences() else { return Vec::new() };
        all.conferences
            .into_iter()
            .map(|c| {
                let name = if c.title.is_empty() {
                    let names: Vec<&str> =
                        c.peers.iter().filter(|p| !p.ours && !p.name.is_empty()).map(|p| p.name.as_str()).collect();
                    if names.is_empty() {
                        format!("conference {}", &c.id[..8])
                    } else {
                        names.join(", ")
                    }
                } else {
                    c.title
                };
                let online = c.connected && c.peers.len() > 1;
                (c.chat, name, online)
            })
            .collect()
    }

    /// The peers of conference chat `tox:conference:ID` as users.
    pub(crate) fn tox_conference_users(&self, id: &str) -> anyhow::Result<Vec<PeerUser>> {
        Ok(chats::users(self.tox_conference(id)?.peers.into_iter().map(|p| (p.name, p.pk, p.ours))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_conferences_round_trip_and_junk_is_skipped() {
        let c = SavedConference {
            kind: 0,
            id: [7; 32],
            peer_number: 3,
            message_number: 70000,
            title: "room \"x\"".into(),
            peers: vec![(5, PublicKey([1; 32]), PublicKey([2; 32]), "bob".into())],
        };
        assert_eq!(decode(&encode(std::slice::from_ref(&c))), vec![c.clone()]);
        assert!(decode("nonsense").is_empty());
        let one = encode(std::slice::from_ref(&c));
        let mixed = format!("[{{\"id\": 5}}, {}]", &one[1..one.len() - 1]);
        assert_eq!(decode(&mixed), vec![c]);
    }
}
