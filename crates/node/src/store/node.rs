//! The node's queries over its SQLite tables (schema: migration 4 in `store.rs`): the
//! download queue, chat history, contacts, settings and the share index. The API reaches
//! them only through `crate::app::Node`'s methods.

use crate::app::model::{ChatInfo, ChatMessage, TransferInfo};
use crate::app::net::{Network, Relation, TransferState};
use crate::store::Store;
use anyhow::Context;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A download to queue.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    /// `nmdc` or `slsk`.
    pub network: Network,
    /// Source user.
    pub source: String,
    /// Hub/server.
    pub hub: String,
    /// Remote path.
    pub remote_path: String,
    /// TTH.
    pub tth: Option<String>,
    /// File name.
    pub name: String,
    /// Size.
    pub size: u64,
    /// Final local path.
    pub local_path: String,
    /// The folder download it belongs to ([`Store::transfer_group_add`]).
    pub group: Option<i64>,
}

/// A folder download as stored: what was asked for and where it lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// Row id.
    pub id: i64,
    /// Network.
    pub network: Network,
    /// Whose folder.
    pub source: String,
    /// The hub or server.
    pub hub: String,
    /// The folder's path on the source.
    pub remote_path: String,
    /// The folder's name.
    pub name: String,
    /// The local folder its files go to.
    pub local_dir: String,
    /// Unix time queued.
    pub created: i64,
}

// The database edge of the typed names: stored as the same text the API shows.
impl ToSql for Network {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Network {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Network> {
        v.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for TransferState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for TransferState {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<TransferState> {
        v.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// `'queued','running'` for an SQL `IN (…)` (the names are fixed words, not input).
fn state_list(states: &[TransferState]) -> String {
    states.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",")
}

/// Finished uploads kept in `node.sqlite`.
pub const KEEP_UPLOADS: usize = 1000;

const TRANSFER_COLS: &str =
    "id, network, source, hub, remote_path, tth, name, size, local_path, state, bytes, retries, next_attempt, error, created, updated, grp, note";

fn transfer_row(r: &Row<'_>) -> rusqlite::Result<TransferInfo> {
    Ok(TransferInfo {
        id: r.get(0)?,
        network: r.get(1)?,
        source: r.get(2)?,
        hub: r.get(3)?,
        remote_path: r.get(4)?,
        tth: r.get(5)?,
        name: r.get(6)?,
        size: r.get::<_, i64>(7)? as u64,
        local_path: r.get(8)?,
        state: r.get(9)?,
        bytes: r.get::<_, i64>(10)? as u64,
        retries: r.get::<_, i64>(11)? as u32,
        next_attempt: r.get(12)?,
        error: r.get(13)?,
        created: r.get(14)?,
        updated: r.get(15)?,
        rate: 0,
        group: r.get(16)?,
        note: r.get(17)?,
    })
}

fn chat_row(r: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: r.get(0)?,
        chat: r.get(1)?,
        nick: r.get(2)?,
        text: r.get(3)?,
        own: r.get(4)?,
        ts: r.get(5)?,
        delivered: r.get(6)?,
    })
}

impl Store {
    /// Queue a download; returns its row.
    pub fn transfer_add(&self, t: &NewTransfer) -> anyhow::Result<TransferInfo> {
        let now = now();
        self.conn.execute(
            "INSERT INTO transfers (network, source, hub, remote_path, tth, name, size, local_path, state, created, updated, grp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?9, ?10)",
            params![t.network, t.source, t.hub, t.remote_path, t.tth, t.name, t.size as i64, t.local_path, now, t.group],
        )?;
        let id = self.conn.last_insert_rowid();
        self.transfer(id)?.ok_or_else(|| anyhow::anyhow!("transfer {id} vanished"))
    }

    /// Record a folder download; its files are queued with `group` = the returned id.
    pub fn transfer_group_add(
        &self,
        network: Network,
        source: &str,
        hub: &str,
        remote_path: &str,
        name: &str,
        local_dir: &str,
    ) -> anyhow::Result<i64> {
        self.conn.execute(
            "INSERT INTO transfer_groups (network, source, hub, remote_path, name, local_dir, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![network, source, hub, remote_path, name, local_dir, now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every folder download, newest first.
    pub fn transfer_groups(&self) -> anyhow::Result<Vec<GroupRow>> {
        let mut st = self.conn.prepare(
            "SELECT id, network, source, hub, remote_path, name, local_dir, created FROM transfer_groups ORDER BY id DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(GroupRow {
                id: r.get(0)?,
                network: r.get(1)?,
                source: r.get(2)?,
                hub: r.get(3)?,
                remote_path: r.get(4)?,
                name: r.get(5)?,
                local_dir: r.get(6)?,
                created: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One transfer.
    pub fn transfer(&self, id: i64) -> anyhow::Result<Option<TransferInfo>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {TRANSFER_COLS} FROM transfers WHERE id = ?1"), params![id], transfer_row)
            .optional()?)
    }

    /// Every transfer, newest first.
    pub fn transfers(&self) -> anyhow::Result<Vec<TransferInfo>> {
        let mut st = self.conn.prepare(&format!("SELECT {TRANSFER_COLS} FROM transfers ORDER BY id DESC"))?;
        let rows = st.query_map([], transfer_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Queued transfers whose next attempt is due, oldest first.
    pub fn transfers_due(&self, now: i64) -> anyhow::Result<Vec<TransferInfo>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {TRANSFER_COLS} FROM transfers WHERE state = 'queued' AND next_attempt <= ?1 ORDER BY id"
        ))?;
        let rows = st.query_map(params![now], transfer_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record the size a transfer queued without one was found to have (only if it is
    /// still unknown).
    pub fn transfer_adopt_size(&self, id: i64, size: u64) -> anyhow::Result<()> {
        self.conn.execute("UPDATE transfers SET size = ?1 WHERE id = ?2 AND size = 0", params![size as i64, id])?;
        Ok(())
    }

    /// Counts by state.
    pub fn transfer_counts(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut st = self.conn.prepare("SELECT state, COUNT(*) FROM transfers GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Move a transfer from one of `from` states to `to`; false if it was in none of them.
    /// A transfer that starts running has no error any more (the last attempt's error is
    /// not this attempt's).
    pub fn transfer_set_state(&self, id: i64, from: &[TransferState], to: TransferState) -> anyhow::Result<bool> {
        let list = state_list(from);
        let n = self.conn.execute(
            &format!(
                "UPDATE transfers SET state = ?1, updated = ?2,
                   error = CASE WHEN ?1 = 'running' THEN '' ELSE error END
                 WHERE id = ?3 AND state IN ({list})"
            ),
            params![to, now(), id],
        )?;
        Ok(n > 0)
    }

    /// Forget a transfer; false if there was none.
    pub fn transfer_delete(&self, id: i64) -> anyhow::Result<bool> {
        Ok(self.conn.execute("DELETE FROM transfers WHERE id = ?1", params![id])? > 0)
    }

    /// Forget every finished transfer (done or cancelled); their ids.
    pub fn transfers_clear_finished(&self) -> anyhow::Result<Vec<i64>> {
        let mut st = self.conn.prepare("DELETE FROM transfers WHERE state IN ('done', 'cancelled') RETURNING id")?;
        let ids = st.query_map([], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Back in the queue with retries reset (retry).
    pub fn transfer_requeue(&self, id: i64, from: &[TransferState]) -> anyhow::Result<bool> {
        let list = state_list(from);
        let n = self.conn.execute(
            &format!(
                "UPDATE transfers SET state = 'queued', retries = 0, next_attempt = 0, error = '', updated = ?1
                 WHERE id = ?2 AND state IN ({list})"
            ),
            params![now(), id],
        )?;
        Ok(n > 0)
    }

    /// Record bytes on disk.
    pub fn transfer_set_bytes(&self, id: i64, bytes: u64) -> anyhow::Result<()> {
        self.conn.execute("UPDATE transfers SET bytes = ?1 WHERE id = ?2", params![bytes as i64, id])?;
        Ok(())
    }

    /// A running transfer failed: queue it again after `delay_secs`, or fail it for good.
    pub fn transfer_failed(&self, id: i64, error: &str, retry_after: Option<i64>) -> anyhow::Result<bool> {
        let now = now();
        let n = match retry_after {
            Some(delay) => self.conn.execute(
                "UPDATE transfers SET state = 'queued', retries = retries + 1, next_attempt = ?1, error = ?2, updated = ?3
                 WHERE id = ?4 AND state = 'running'",
                params![now + delay, error, now, id],
            )?,
            None => self.conn.execute(
                "UPDATE transfers SET state = 'failed', error = ?1, updated = ?2 WHERE id = ?3 AND state = 'running'",
                params![error, now, id],
            )?,
        };
        Ok(n > 0)
    }

    /// A running transfer finished.
    pub fn transfer_done(&self, id: i64, local_path: &str, bytes: u64) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "UPDATE transfers SET state = 'done', local_path = ?1, bytes = ?2, error = '', next_attempt = 0, updated = ?3
             WHERE id = ?4 AND state = 'running'",
            params![local_path, bytes as i64, now(), id],
        )?;
        Ok(n > 0)
    }

    /// After a crash or a stop, nothing is running: what was goes back to the queue.
    pub fn transfers_recover(&self) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .execute("UPDATE transfers SET state = 'queued', updated = ?1 WHERE state = 'running'", params![now()])?)
    }

    /// Whether a local path is already someone's destination.
    pub fn transfer_local_path_taken(&self, path: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM transfers WHERE local_path = ?1 AND state != 'cancelled' LIMIT 1",
                params![path],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

impl Store {
    /// Store a chat line; returns it with its id.
    pub fn chat_add(&self, chat: &str, nick: &str, text: &str, own: bool) -> anyhow::Result<ChatMessage> {
        self.chat_add_tracked(chat, nick, text, own, None)
    }

    /// Store a chat line whose delivery is tracked (`Some(false)` until its receipt).
    pub fn chat_add_tracked(
        &self,
        chat: &str,
        nick: &str,
        text: &str,
        own: bool,
        delivered: Option<bool>,
    ) -> anyhow::Result<ChatMessage> {
        let ts = now();
        self.conn.execute(
            "INSERT INTO chat_messages (chat, nick, text, own, ts, delivered) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![chat, nick, text, own, ts, delivered],
        )?;
        Ok(ChatMessage {
            id: self.conn.last_insert_rowid(),
            chat: chat.into(),
            nick: nick.into(),
            text: text.into(),
            own,
            ts,
            delivered,
        })
    }

    /// Mark an own line delivered; false if it was not waiting for delivery.
    pub fn chat_set_delivered(&self, id: i64) -> anyhow::Result<bool> {
        Ok(self.conn.execute("UPDATE chat_messages SET delivered = 1 WHERE id = ?1 AND delivered = 0", params![id])?
            > 0)
    }

    /// Own lines of `chat` still waiting for delivery, oldest first.
    pub fn chat_undelivered(&self, chat: &str) -> anyhow::Result<Vec<ChatMessage>> {
        let mut st = self.conn.prepare(
            "SELECT id, chat, nick, text, own, ts, delivered FROM chat_messages WHERE chat = ?1 AND own = 1 AND delivered = 0 ORDER BY id",
        )?;
        let rows = st.query_map(params![chat], chat_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Lines of a chat with id > `after` (oldest first), or the last `limit` lines.
    pub fn chat_messages(&self, chat: &str, after: Option<i64>, limit: usize) -> anyhow::Result<Vec<ChatMessage>> {
        let limit = limit as i64;
        match after {
            Some(a) => {
                let mut st = self.conn.prepare(
                    "SELECT id, chat, nick, text, own, ts, delivered FROM chat_messages WHERE chat = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                )?;
                let rows = st.query_map(params![chat, a, limit], chat_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            None => {
                let mut st = self.conn.prepare(
                    "SELECT id, chat, nick, text, own, ts, delivered FROM chat_messages WHERE chat = ?1 ORDER BY id DESC LIMIT ?2",
                )?;
                let rows = st.query_map(params![chat, limit], chat_row)?;
                let mut v: Vec<ChatMessage> = rows.collect::<Result<_, _>>()?;
                v.reverse();
                Ok(v)
            }
        }
    }

    /// Every chat with history and its last line.
    pub fn chats(&self) -> anyhow::Result<Vec<ChatInfo>> {
        let mut st = self.conn.prepare(
            "SELECT m.id, m.chat, m.nick, m.text, m.own, m.ts, m.delivered FROM chat_messages m
             JOIN (SELECT chat, MAX(id) AS id FROM chat_messages GROUP BY chat) l ON m.id = l.id ORDER BY m.id DESC",
        )?;
        let rows = st.query_map([], chat_row)?;
        let mut out = Vec::new();
        for m in rows {
            let m = m?;
            if let Some(c) = ChatInfo::parse_id(&m.chat) {
                let mut info = ChatInfo::empty(m.chat.clone(), &c);
                info.last = Some(m.clone());
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Add a contact (a user whose PMs we keep as a conversation).
    pub fn contact_add(&self, network: &str, name: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO contacts (network, name, added) VALUES (?1, ?2, ?3)",
            params![network, name, now()],
        )?;
        Ok(())
    }

    /// Mark `name` of `network` as a buddy or as ignored (`relation`), or unmark it
    /// (None).
    pub fn set_relation(&self, network: Network, name: &str, relation: Option<Relation>) -> anyhow::Result<()> {
        match relation {
            Some(r) => self.conn.execute(
                "INSERT INTO contacts (network, name, added, relation) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (network, name) DO UPDATE SET relation = ?4",
                params![network, name, now(), r.as_str()],
            )?,
            None => self.conn.execute(
                "DELETE FROM contacts WHERE network = ?1 AND name = ?2 AND relation != ''",
                params![network, name],
            )?,
        };
        Ok(())
    }

    /// Every marked user: (network, name, relation).
    pub fn relations(&self) -> anyhow::Result<Vec<(Network, String, Relation)>> {
        let mut st = self
            .conn
            .prepare("SELECT network, name, relation FROM contacts WHERE relation != '' ORDER BY network, name")?;
        let rows = st.query_map([], |r| {
            let rel: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, rel))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (n, name, rel) = row?;
            if let Ok(rel) = rel.parse() {
                out.push((n, name, rel));
            }
        }
        Ok(out)
    }

    /// Keep a finished upload of run `run` (the newest [`KEEP_UPLOADS`] are kept).
    pub fn upload_history_add(&self, run: i64, u: &crate::upload::UploadInfo) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO upload_history (run, id, network, user, file, size, start, bytes, state, error, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                run,
                u.id as i64,
                u.network,
                u.user,
                u.file,
                u.size as i64,
                u.start as i64,
                u.bytes as i64,
                u.state,
                u.error,
                u.updated
            ],
        )?;
        self.conn.execute(
            "DELETE FROM upload_history WHERE row <= (SELECT MAX(row) FROM upload_history) - ?1",
            params![KEEP_UPLOADS as i64],
        )?;
        Ok(())
    }

    /// Finished uploads of runs other than `run`, newest first, at most `limit`.
    pub fn upload_history(&self, run: i64, limit: usize) -> anyhow::Result<Vec<crate::upload::UploadInfo>> {
        let mut st = self.conn.prepare(
            "SELECT id, network, user, file, size, start, bytes, state, error, updated FROM upload_history
             WHERE run != ?1 ORDER BY row DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![run, limit as i64], |r| {
            Ok(crate::upload::UploadInfo {
                id: r.get::<_, i64>(0)? as u64,
                network: r.get(1)?,
                user: r.get(2)?,
                file: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
                start: r.get::<_, i64>(5)? as u64,
                bytes: r.get::<_, i64>(6)? as u64,
                state: r.get(7)?,
                position: 0,
                rate: 0,
                error: r.get(8)?,
                updated: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Contacts: (network, name).
    pub fn contacts(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT network, name FROM contacts ORDER BY network, name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A stored setting.
    pub fn setting(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| r.get(0)).optional()?)
    }

    /// Store a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![key, value])?;
        Ok(())
    }

    /// Forget a stored setting.
    pub fn delete_setting(&self, key: &str) -> anyhow::Result<()> {
        self.conn.execute("DELETE FROM settings WHERE key = ?1", params![key])?;
        Ok(())
    }

    /// Store (`Some`) or forget (`None`) several settings at once: all or none.
    pub fn set_settings(&mut self, writes: &[(String, Option<String>)]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        for (key, value) in writes {
            match value {
                Some(v) => {
                    tx.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![key, v])?
                }
                None => tx.execute("DELETE FROM settings WHERE key = ?1", params![key])?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    /// Replace the share index: (real path, virtual path, size, mtime ns, tth).
    pub fn shared_files_replace(&mut self, files: &[(String, String, u64, i64, Option<String>)]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM shared_files", [])?;
        {
            let mut st = tx.prepare(
                "INSERT OR REPLACE INTO shared_files (path, vpath, size, mtime_ns, tth) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (path, vpath, size, mtime, tth) in files {
                st.execute(params![path, vpath, *size as i64, mtime, tth])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A page of the share index: (virtual path, size, tth).
    pub fn shared_files(&self, offset: usize, limit: usize) -> anyhow::Result<Vec<(String, u64, Option<String>)>> {
        let mut st =
            self.conn.prepare("SELECT vpath, size, tth FROM shared_files ORDER BY vpath LIMIT ?1 OFFSET ?2")?;
        let rows = st.query_map(params![limit as i64, offset as i64], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Files and bytes in the share index, and how many have a hash.
    pub fn shared_totals(&self) -> anyhow::Result<(u64, u64, u64)> {
        Ok(self.conn.query_row("SELECT COUNT(*), COALESCE(SUM(size), 0), COUNT(tth) FROM shared_files", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
        })?)
    }
}

/// Open `<data_dir>/node.sqlite` for a start of the node, refusing to lose state
/// silently (docs/operations.md, "Backups and recovery"):
///
/// - a missing or empty database in a data directory that holds state from an earlier
///   run (`incomplete/`, `api-token`, `tox.profile`, ...) is refused, naming what is there
///   and the ways out: restore `node.sqlite.bak`, or `fresh` (`omnipeer up --fresh-db`);
/// - a damaged one (not a database, truncated, failing `PRAGMA quick_check`) is refused in
///   one line naming the file and the ways out; with `fresh` it is kept aside as
///   `node.sqlite.damaged` and a new one started;
/// - after a good open, the database as the last run left it is copied (SQLite's
///   `VACUUM INTO`, consistent while open) to `node.sqlite.bak`, replacing the previous
///   backup. A new, empty database never replaces an existing backup.
pub fn open_node_db(
    data_dir: &Path,
    path: &Path,
    default_downloads: Option<&Path>,
    fresh: bool,
) -> anyhow::Result<Store> {
    let bak = backup_path(path);
    let has_content = [path.to_path_buf(), sidecar(path, "-wal")]
        .iter()
        .any(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false));
    let mut version = 0;
    if has_content {
        match check_db(path) {
            Ok(v) => version = v,
            Err(CheckError::Damaged(why)) if fresh => {
                let aside = sidecar(path, ".damaged");
                std::fs::rename(path, &aside).with_context(|| format!("cannot move {} aside", path.display()))?;
                for ext in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(sidecar(path, ext));
                }
                tracing::warn!(
                    "{} was damaged ({why}): kept as {}, starting with a new, empty database as --fresh-db asked",
                    path.display(),
                    aside.display()
                );
            }
            Err(CheckError::Damaged(why)) => anyhow::bail!(
                "{} is damaged ({why}). To recover, stop the node and either restore the backup made at the last clean start \
                 ({}): `cp {} {}` and delete {}-wal and {}-shm if present; or start afresh with `omnipeer up --fresh-db` \
                 (it keeps the damaged file as {}.damaged)",
                path.display(),
                bak_state(&bak),
                bak.display(),
                path.display(),
                path.display(),
                path.display(),
                path.display(),
            ),
            Err(CheckError::Other(e)) => return Err(e),
        }
    }
    if version == 0 {
        let (state, provisioned) = earlier_state(data_dir, default_downloads);
        if state.is_empty() && !provisioned.is_empty() {
            // Files a user or a deployment may well put in a new data directory before
            // the first start: likely a first start, but say so loudly in case it is not.
            tracing::warn!(
                "{} is missing or empty while {} holds {}: starting with a new, empty database. If the node ran here \
                 before, stop it: its download queue, settings and chat history are not in this one (restore {} if \
                 you have it)",
                path.display(),
                data_dir.display(),
                provisioned.join(", "),
                bak.display()
            );
        }
        if !state.is_empty() {
            let what = if has_content {
                "empty (no tables)"
            } else if path.exists() {
                "empty (0 bytes)"
            } else {
                "missing"
            };
            if !fresh {
                anyhow::bail!(
                    "{} is {what}, but {} holds state from an earlier run ({}): starting now would forget the download \
                     queue, the settings and the chat history. Restore the backup made at the last clean start ({}): \
                     `cp {} {}` and delete {}-wal and {}-shm if present; or, to start afresh on purpose, run \
                     `omnipeer up --fresh-db`",
                    path.display(),
                    data_dir.display(),
                    state.join(", "),
                    bak_state(&bak),
                    bak.display(),
                    path.display(),
                    path.display(),
                    path.display(),
                );
            }
            tracing::warn!(
                "{} is {what}: starting with a new, empty database as --fresh-db asked; the download queue, settings \
                 and chat history of the earlier run are not in it ({} holds {})",
                path.display(),
                data_dir.display(),
                state.join(", ")
            );
        }
    }
    let store = Store::open(path)?;
    if version > 0 {
        if let Err(e) = backup(&store, &bak) {
            tracing::warn!("cannot back up {} to {}: {e:#}", path.display(), bak.display());
        }
    }
    Ok(store)
}

/// `<path>.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    sidecar(path, ".bak")
}

fn sidecar(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

fn bak_state(bak: &Path) -> String {
    match std::fs::metadata(bak) {
        Ok(m) => {
            let when = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| format!(", made at unix time {}", d.as_secs()))
                .unwrap_or_default();
            format!("{}{when}", bak.display())
        }
        Err(_) => {
            format!("there is none at {}: restore node.sqlite from your own backups if you have one", bak.display())
        }
    }
}

enum CheckError {
    /// Not a database, or a damaged one.
    Damaged(String),
    /// Anything else (permissions, locked by another process).
    Other(anyhow::Error),
}

/// Open `path` as it is and check it: its schema version (0: no tables), and that
/// `PRAGMA quick_check` finds nothing wrong.
fn check_db(path: &Path) -> Result<usize, CheckError> {
    use rusqlite::{Connection, ErrorCode, OpenFlags};
    let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => CheckError::Damaged(e.to_string()),
        _ => CheckError::Other(anyhow::Error::new(e).context(format!("cannot open the database {}", path.display()))),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(classify)?;
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(classify)?;
    let mut st = conn.prepare("PRAGMA quick_check").map_err(classify)?;
    let problems: Vec<String> =
        st.query_map([], |r| r.get::<_, String>(0)).map_err(classify)?.collect::<Result<_, _>>().map_err(classify)?;
    if problems.len() != 1 || problems[0] != "ok" {
        let first = problems.first().cloned().unwrap_or_default();
        return Err(CheckError::Damaged(format!("quick_check: {first}")));
    }
    Ok(version)
}

/// What a data directory holds from an earlier run of the node: (what only the node
/// leaves: partial and finished downloads, the backup, the Soulseek password it
/// generated; what a user may also put there before a first start: `api-token`,
/// `tox.profile` imported from another client).
fn earlier_state(data_dir: &Path, default_downloads: Option<&Path>) -> (Vec<String>, Vec<String>) {
    let entries = |p: &Path| std::fs::read_dir(p).map(|rd| rd.flatten().count()).unwrap_or(0);
    let mut v = Vec::new();
    let n = entries(&data_dir.join("incomplete"));
    if n > 0 {
        v.push(format!("incomplete/ with {n} partial download(s)"));
    }
    if let Some(d) = default_downloads {
        let n = entries(d);
        if n > 0 {
            v.push(format!("downloads/ with {n} file(s)"));
        }
    }
    let present = |names: &[&str]| -> Vec<String> {
        names.iter().filter(|f| data_dir.join(f).exists()).map(|f| f.to_string()).collect()
    };
    v.extend(present(&["node.sqlite.bak", "slsk-password"]));
    let mut provisioned = present(&["api-token", "tox.profile"]);
    if !v.is_empty() {
        // Named with the rest in the refusal.
        v.append(&mut provisioned);
    }
    (v, provisioned)
}

/// Copy the open database to `bak` (through a temporary file, renamed over the old
/// backup only once complete).
fn backup(store: &Store, bak: &Path) -> anyhow::Result<()> {
    let tmp = sidecar(bak, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    let target = tmp.to_str().ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", tmp.display()))?;
    if let Err(e) = store.conn.execute("VACUUM INTO ?1", params![target]) {
        // (a full disk: no half-written copy left behind)
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, bak)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nt(name: &str) -> NewTransfer {
        NewTransfer {
            network: Network::Nmdc,
            source: "alice".into(),
            hub: "127.0.0.1:4111".into(),
            remote_path: format!("share\\{name}"),
            tth: None,
            name: name.into(),
            size: 10,
            local_path: format!("/d/{name}"),
            group: None,
        }
    }

    #[test]
    fn a_folder_download_is_a_group_its_transfers_name() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("n.sqlite")).unwrap();
        let g = s.transfer_group_add(Network::Slsk, "alice", "h:1", "music\\Album", "Album", "/d/Album").unwrap();
        let t = s.transfer_add(&NewTransfer { group: Some(g), ..nt("a.mp3") }).unwrap();
        assert_eq!(t.group, Some(g));
        assert_eq!(s.transfer_add(&nt("b")).unwrap().group, None);
        let groups = s.transfer_groups().unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].id, groups[0].name.as_str(), groups[0].local_dir.as_str()), (g, "Album", "/d/Album"));
    }

    #[test]
    fn the_queue_survives_reopening_and_running_rows_are_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("node.sqlite");
        let id = {
            let s = Store::open(&db).unwrap();
            let t = s.transfer_add(&nt("a.bin")).unwrap();
            assert_eq!(t.state, TransferState::Queued);
            assert!(s.transfer_set_state(t.id, &[TransferState::Queued], TransferState::Running).unwrap());
            s.transfer_set_bytes(t.id, 4).unwrap();
            s.transfer_add(&nt("b.bin")).unwrap();
            t.id
        };
        let s = Store::open(&db).unwrap();
        assert_eq!(s.transfers_recover().unwrap(), 1);
        let t = s.transfer(id).unwrap().unwrap();
        assert_eq!((t.state, t.bytes), (TransferState::Queued, 4));
        assert_eq!(s.transfers_due(now()).unwrap().len(), 2);
        assert!(s.transfer_local_path_taken("/d/b.bin").unwrap());
    }

    #[test]
    fn failures_back_off_then_fail() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("n.sqlite")).unwrap();
        let t = s.transfer_add(&nt("a")).unwrap();
        assert!(!s.transfer_failed(t.id, "x", Some(10)).unwrap(), "only running transfers fail");
        s.transfer_set_state(t.id, &[TransferState::Queued], TransferState::Running).unwrap();
        assert!(s.transfer_failed(t.id, "peer gone", Some(10)).unwrap());
        let t2 = s.transfer(t.id).unwrap().unwrap();
        assert_eq!((t2.state, t2.retries, t2.error.as_str()), (TransferState::Queued, 1, "peer gone"));
        assert!(t2.next_attempt >= now() + 9);
        assert!(s.transfers_due(now()).unwrap().is_empty());
        s.transfer_set_state(t.id, &[TransferState::Queued], TransferState::Running).unwrap();
        // The next attempt runs: the last one's error is not shown on it.
        assert_eq!(s.transfer(t.id).unwrap().unwrap().error, "");
        assert!(s.transfer_failed(t.id, "again", None).unwrap());
        assert_eq!(s.transfer(t.id).unwrap().unwrap().state, TransferState::Failed);
        assert!(s.transfer_requeue(t.id, &[TransferState::Failed]).unwrap());
        let t3 = s.transfer(t.id).unwrap().unwrap();
        assert_eq!((t3.state, t3.retries), (TransferState::Queued, 0));
    }

    #[test]
    fn rows_are_removed_one_by_one_or_every_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("n.sqlite")).unwrap();
        let ids: Vec<i64> = ["a", "b", "c", "d"].iter().map(|n| s.transfer_add(&nt(n)).unwrap().id).collect();
        s.transfer_set_state(ids[0], &[TransferState::Queued], TransferState::Running).unwrap();
        s.transfer_done(ids[0], "/x/a", 1).unwrap();
        s.transfer_set_state(ids[1], &[TransferState::Queued], TransferState::Cancelled).unwrap();
        assert!(s.transfer_delete(ids[2]).unwrap());
        assert!(!s.transfer_delete(ids[2]).unwrap());
        let mut cleared = s.transfers_clear_finished().unwrap();
        cleared.sort();
        assert_eq!(cleared, vec![ids[0], ids[1]]);
        let left: Vec<i64> = s.transfers().unwrap().iter().map(|t| t.id).collect();
        assert_eq!(left, vec![ids[3]]);
    }

    #[test]
    fn chat_history_pages() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("n.sqlite")).unwrap();
        for i in 0..5 {
            s.chat_add("nmdc:hub", "bob", &format!("line {i}"), false).unwrap();
        }
        let m = s.chat_add("slsk:pm:carol", "me", "hi", true).unwrap();
        let last2 = s.chat_messages("nmdc:hub", None, 2).unwrap();
        assert_eq!(last2.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["line 3", "line 4"]);
        let after = s.chat_messages("nmdc:hub", Some(last2[0].id), 10).unwrap();
        assert_eq!(after.len(), 1);
        let chats = s.chats().unwrap();
        assert_eq!(chats[0].id, "slsk:pm:carol");
        assert_eq!(chats[0].last.as_ref().unwrap().id, m.id);
        assert_eq!(chats.len(), 2);
    }

    #[test]
    fn node_db_is_backed_up_and_an_emptied_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (d, db) = (dir.path(), dir.path().join("node.sqlite"));
        let bak = backup_path(&db);
        // A first start: nothing to back up.
        open_node_db(d, &db, None, false).unwrap().transfer_add(&nt("a.bin")).unwrap();
        assert!(!bak.exists());
        // A clean start: the backup holds what the last run left.
        drop(open_node_db(d, &db, None, false).unwrap());
        assert_eq!(Store::open(&bak).unwrap().transfers().unwrap().len(), 1);
        // Emptied: refused (the backup itself is state), naming the file and the ways out.
        std::fs::write(&db, b"").unwrap();
        let e = format!("{:#}", open_node_db(d, &db, None, false).err().unwrap());
        assert!(e.contains("empty (0 bytes)") && e.contains("node.sqlite.bak") && e.contains("--fresh-db"), "{e}");
        // Accepted with --fresh-db, and the new empty database does not replace the backup.
        let s = open_node_db(d, &db, None, true).unwrap();
        assert!(s.transfers().unwrap().is_empty());
        drop(s);
        assert_eq!(Store::open(&bak).unwrap().transfers().unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_node_db_is_refused_or_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (d, db) = (dir.path(), dir.path().join("node.sqlite"));
        std::fs::write(&db, vec![0x5au8; 8192]).unwrap();
        let e = format!("{:#}", open_node_db(d, &db, None, false).err().unwrap());
        assert!(e.contains("is damaged") && e.contains("--fresh-db"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        open_node_db(d, &db, None, true).unwrap();
        assert_eq!(std::fs::read(sidecar(&db, ".damaged")).unwrap(), vec![0x5au8; 8192]);
    }

    #[test]
    fn a_missing_node_db_is_fine_in_a_new_data_dir_only() {
        let dir = tempfile::tempdir().unwrap();
        let (d, db) = (dir.path(), dir.path().join("node.sqlite"));
        std::fs::create_dir_all(d.join("incomplete")).unwrap();
        open_node_db(d, &db, None, false).unwrap();
        std::fs::remove_file(&db).unwrap();
        // A token put there before a first start is not enough to refuse (a warning).
        std::fs::write(d.join("api-token"), b"t").unwrap();
        open_node_db(d, &db, None, false).unwrap();
        std::fs::remove_file(&db).unwrap();
        std::fs::write(d.join("slsk-password"), b"p").unwrap();
        let e = format!("{:#}", open_node_db(d, &db, None, false).err().unwrap());
        assert!(e.contains("is missing") && e.contains("slsk-password") && e.contains("api-token"), "{e}");
    }
}
