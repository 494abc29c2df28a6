//! The wishlist's tables in `node.sqlite` (schema: migration 8 in `crate::store`).

use crate::app::search::Filters;
use crate::store::Store;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// A saved search, as `GET /api/wishlist` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WishlistItem {
    /// Id.
    pub id: i64,
    /// What is searched for.
    pub query: String,
    /// What its results must pass (also for auto-download).
    pub filters: Filters,
    /// Queue a download of every new match that passes the filters.
    pub auto_download: bool,
    /// Unix time saved.
    pub created: i64,
    /// Unix time it last ran (None: not yet).
    pub last_run: Option<i64>,
    /// The search of its last run (in `GET /api/searches/{id}` while the node runs).
    pub last_search: Option<u64>,
    /// Matches found since the user last looked (`POST /api/wishlist/{id}/seen`).
    pub new_matches: u32,
}

fn item_row(r: &Row<'_>) -> rusqlite::Result<WishlistItem> {
    let filters: String = r.get(2)?;
    Ok(WishlistItem {
        id: r.get(0)?,
        query: r.get(1)?,
        filters: serde_json::from_str(&filters).unwrap_or_default(),
        auto_download: r.get::<_, i64>(3)? != 0,
        created: r.get(4)?,
        last_run: r.get(5)?,
        last_search: r.get::<_, Option<i64>>(6)?.map(|s| s as u64),
        new_matches: r.get::<_, i64>(7)? as u32,
    })
}

const COLS: &str = "id, query, filters, auto_download, created, last_run, last_search, new_matches";

impl Store {
    /// Save a search.
    pub fn wishlist_add(&self, query: &str, filters: &Filters, auto_download: bool) -> anyhow::Result<WishlistItem> {
        self.conn.execute(
            "INSERT INTO wishlist (query, filters, auto_download, created) VALUES (?1, ?2, ?3, ?4)",
            params![query, serde_json::to_string(filters)?, auto_download as i64, super::node::now()],
        )?;
        let id = self.conn.last_insert_rowid();
        self.wishlist_item(id)?.ok_or_else(|| anyhow::anyhow!("wishlist item {id} vanished"))
    }

    /// One saved search.
    pub fn wishlist_item(&self, id: i64) -> anyhow::Result<Option<WishlistItem>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLS} FROM wishlist WHERE id = ?1"), params![id], item_row)
            .optional()?)
    }

    /// Every saved search, oldest first.
    pub fn wishlist(&self) -> anyhow::Result<Vec<WishlistItem>> {
        let mut st = self.conn.prepare(&format!("SELECT {COLS} FROM wishlist ORDER BY id"))?;
        let rows = st.query_map([], item_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forget a saved search; false if there was none.
    pub fn wishlist_remove(&self, id: i64) -> anyhow::Result<bool> {
        self.conn.execute("DELETE FROM wishlist_seen WHERE item = ?1", params![id])?;
        Ok(self.conn.execute("DELETE FROM wishlist WHERE id = ?1", params![id])? > 0)
    }

    /// It ran now as search `search`.
    pub fn wishlist_ran(&self, id: i64, at: i64, search: u64) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE wishlist SET last_run = ?1, last_search = ?2 WHERE id = ?3",
            params![at, search as i64, id],
        )?;
        Ok(())
    }

    /// Record a match `key` of item `id`; true if it is new (then counted as new).
    pub fn wishlist_seen(&self, id: i64, key: &str) -> anyhow::Result<bool> {
        let n =
            self.conn.execute("INSERT OR IGNORE INTO wishlist_seen (item, key) VALUES (?1, ?2)", params![id, key])?;
        if n > 0 {
            self.conn.execute("UPDATE wishlist SET new_matches = new_matches + 1 WHERE id = ?1", params![id])?;
        }
        Ok(n > 0)
    }

    /// The user looked at item `id`'s matches.
    pub fn wishlist_clear_new(&self, id: i64) -> anyhow::Result<bool> {
        Ok(self.conn.execute("UPDATE wishlist SET new_matches = 0 WHERE id = ?1", params![id])? > 0)
    }

    /// How many matches item `id` has had.
    pub fn wishlist_matches(&self, id: i64) -> anyhow::Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM wishlist_seen WHERE item = ?1", params![id], |r| r.get::<_, i64>(0))?
            as u64)
    }
}
