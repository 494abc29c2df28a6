//! Who is in a hub's main chat or a Soulseek room, and the users the person marked:
//! buddies; ignored users, whose private messages, chat lines and search results the
//! node drops (as Nicotine+ and DC++ do with their ignore lists); and users banned from
//! uploads, whose requests are refused.

use super::model::{ChatInfo, PeerUser};
use super::net::{Network, Relation};
use super::{Node, NodeError};
use std::collections::HashMap;

/// The marks, in memory for the hot paths (every chat line and search result asks).
pub(crate) type Marks = HashMap<(Network, String), Relation>;

/// One marked user, as `GET /api/contacts` lists them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct MarkedUser {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// Nick or user name.
    pub name: String,
    /// Buddy or ignored.
    pub relation: Relation,
}

/// The users banned from uploads, as `crate::upload::Uploads::set_banned` takes them.
pub(crate) fn banned(marks: &Marks) -> Vec<(String, String)> {
    marks
        .iter()
        .filter(|(_, r)| **r == Relation::Banned)
        .map(|((n, u), _)| (n.as_str().to_owned(), u.clone()))
        .collect()
}

fn key(network: Network, name: &str) -> (Network, String) {
    (network, name.to_lowercase())
}

impl Node {
    /// The marks kept in `node.sqlite`.
    pub(crate) fn load_marks(store: &crate::store::Store) -> anyhow::Result<Marks> {
        Ok(store.relations()?.into_iter().map(|(n, name, r)| (key(n, &name), r)).collect())
    }

    /// Who is in chat `chat` (a hub's main chat `nmdc[@LABEL]:hub` or a room
    /// `slsk[@LABEL]:room:ROOM`), by nick, with the marks.
    pub async fn users(&self, chat: &str) -> anyhow::Result<Vec<PeerUser>> {
        let id = ChatInfo::parse_id(chat).ok_or_else(|| NodeError::Invalid(format!("no chat {chat:?}")))?;
        let room = match id.kind {
            "hub" => None,
            "room" => Some(id.name),
            "conference" => return self.tox_conference_users(id.name),
            "group" => return self.tox_group_users(id.name),
            _ => return Err(NodeError::NotFound(format!("{chat} has no user list (a hub or a room has)")).into()),
        };
        let client = self.client(&id.session())?;
        let mut users = client.users(room).await?;
        let marks = self.marks.read().expect("marks");
        for u in &mut users {
            u.relation = marks.get(&key(u.network, &u.nick)).copied();
        }
        users.sort_by(|a, b| b.op.cmp(&a.op).then_with(|| a.nick.to_lowercase().cmp(&b.nick.to_lowercase())));
        Ok(users)
    }

    /// Mark a user as a buddy or ignored, or unmark them (None).
    pub fn set_relation(&self, network: Network, name: &str, relation: Option<Relation>) -> anyhow::Result<()> {
        if !matches!(network, Network::Nmdc | Network::Slsk) {
            return Err(NodeError::Invalid(format!("{} users cannot be marked", network.title())).into());
        }
        let name = name.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(NodeError::Invalid("a user name is 1 to 256 bytes".into()).into());
        }
        self.db.lock().expect("db").set_relation(network, name, relation)?;
        let mut marks = self.marks.write().expect("marks");
        match relation {
            Some(r) => marks.insert(key(network, name), r),
            None => marks.remove(&key(network, name)),
        };
        self.uploads.set_banned(banned(&marks));
        Ok(())
    }

    /// Every marked user.
    pub fn marked_users(&self) -> anyhow::Result<Vec<MarkedUser>> {
        let rows = self.db.lock().expect("db").relations()?;
        Ok(rows.into_iter().map(|(network, name, relation)| MarkedUser { network, name, relation }).collect())
    }

    /// Whether what `name` says or offers on `network` is dropped.
    pub(crate) fn is_ignored(&self, network: Network, name: &str) -> bool {
        self.marks.read().expect("marks").get(&key(network, name)) == Some(&Relation::Ignored)
    }
}
