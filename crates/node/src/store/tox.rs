//! The Tox client's tables in `node.sqlite` (schema: `crate::store` migrations): friends
//! (kept in `contacts` with network `tox`), incoming friend requests and our own
//! unanswered ones.

use crate::app::model::ToxRequestInfo;
use crate::store::Store;
use omnipeer_tox::toxid::ToxId;
use rusqlite::{params, OptionalExtension};

use crate::app::tox::MAX_PENDING_REQUESTS;

/// A friend as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFriend {
    /// Long-term key, hex.
    pub pk: String,
    /// Last nickname heard.
    pub nickname: String,
    /// Unix time added.
    pub added: i64,
}

impl Store {
    /// Every Tox friend.
    pub fn tox_friends(&self) -> anyhow::Result<Vec<StoredFriend>> {
        let mut st = self
            .conn
            .prepare("SELECT name, nickname, added FROM contacts WHERE network = 'tox' ORDER BY added, name")?;
        let rows = st.query_map([], |r| Ok(StoredFriend { pk: r.get(0)?, nickname: r.get(1)?, added: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One Tox friend.
    pub fn tox_friend(&self, pk: &str) -> anyhow::Result<Option<StoredFriend>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, nickname, added FROM contacts WHERE network = 'tox' AND name = ?1",
                params![pk],
                |r| Ok(StoredFriend { pk: r.get(0)?, nickname: r.get(1)?, added: r.get(2)? }),
            )
            .optional()?)
    }

    /// Add a Tox friend (no-op if it is one).
    pub fn tox_friend_add(&self, pk: &str) -> anyhow::Result<()> {
        self.contact_add("tox", pk)
    }

    /// Forget a Tox friend and any request to or from it; false if it was none.
    pub fn tox_friend_remove(&self, pk: &str) -> anyhow::Result<bool> {
        let n = self.conn.execute("DELETE FROM contacts WHERE network = 'tox' AND name = ?1", params![pk])?;
        self.conn.execute("DELETE FROM tox_outgoing WHERE pk = ?1", params![pk])?;
        self.conn.execute("DELETE FROM tox_requests WHERE pk = ?1", params![pk])?;
        Ok(n > 0)
    }

    /// Remember a friend's nickname; true if it changed.
    pub fn tox_set_nickname(&self, pk: &str, nickname: &str) -> anyhow::Result<bool> {
        Ok(self.conn.execute(
            "UPDATE contacts SET nickname = ?1 WHERE network = 'tox' AND name = ?2 AND nickname != ?1",
            params![nickname, pk],
        )? > 0)
    }

    /// Keep an incoming friend request (replacing an older one from the same key).
    pub fn tox_request_add(&self, pk: &str, message: &str) -> anyhow::Result<ToxRequestInfo> {
        let received = super::node::now();
        self.conn.execute(
            "INSERT OR REPLACE INTO tox_requests (pk, message, received) VALUES (?1, ?2, ?3)",
            params![pk, message, received],
        )?;
        self.conn.execute(
            "DELETE FROM tox_requests WHERE pk NOT IN (SELECT pk FROM tox_requests ORDER BY received DESC, pk LIMIT ?1)",
            params![MAX_PENDING_REQUESTS as i64],
        )?;
        Ok(ToxRequestInfo { pk: pk.into(), message: message.into(), received })
    }

    /// Incoming requests, oldest first.
    pub fn tox_requests(&self) -> anyhow::Result<Vec<ToxRequestInfo>> {
        let mut st = self.conn.prepare("SELECT pk, message, received FROM tox_requests ORDER BY received, pk")?;
        let rows =
            st.query_map([], |r| Ok(ToxRequestInfo { pk: r.get(0)?, message: r.get(1)?, received: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Take an incoming request out of the list.
    pub fn tox_request_take(&self, pk: &str) -> anyhow::Result<Option<ToxRequestInfo>> {
        let r = self
            .conn
            .query_row("SELECT pk, message, received FROM tox_requests WHERE pk = ?1", params![pk], |r| {
                Ok(ToxRequestInfo { pk: r.get(0)?, message: r.get(1)?, received: r.get(2)? })
            })
            .optional()?;
        self.conn.execute("DELETE FROM tox_requests WHERE pk = ?1", params![pk])?;
        Ok(r)
    }

    /// Remember our friend request (until the friend comes online).
    pub fn tox_outgoing_add(&self, id: &ToxId, message: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO tox_outgoing (pk, tox_id, message, created) VALUES (?1, ?2, ?3, ?4)",
            params![id.pk.to_hex(), id.to_hex(), message, super::node::now()],
        )?;
        Ok(())
    }

    /// Our unanswered friend requests: (Tox ID, message).
    pub fn tox_outgoing(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT tox_id, message FROM tox_outgoing ORDER BY created")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The friend answered (it came online): forget our request; true if there was one.
    pub fn tox_outgoing_done(&self, pk: &str) -> anyhow::Result<bool> {
        Ok(self.conn.execute("DELETE FROM tox_outgoing WHERE pk = ?1", params![pk])? > 0)
    }
}
