//! The wishlist (slskd's most-wanted feature, AirDC++'s auto-search): saved searches the
//! node runs again on the interval each network allows — the Soulseek server's
//! WishlistInterval (sent as WishlistSearch), `sessions::HUB_WISHLIST_INTERVAL` on hubs —
//! marking the matches it had not seen before and, when asked, queueing a download of
//! each new one that passes the item's filters.

use super::model::{Event, MergedResult};
use super::net::Network;
use super::search::Filters;
use super::{db, Node, NodeError};
use crate::store::wishlist::WishlistItem;
use std::sync::Arc;
use std::time::Duration;

/// How often the node looks for items due and for new matches of running ones.
pub const WISHLIST_TICK: Duration = Duration::from_secs(5);
/// Saved searches at most.
pub const MAX_WISHLIST: usize = 200;

/// Whether `item` is due at unix time `now` when the networks allow a run every
/// `interval`: never run, or last run at least `interval` ago.
pub fn due(item: &WishlistItem, now: i64, interval: Duration) -> bool {
    item.last_run.is_none_or(|t| now.saturating_sub(t) >= interval.as_secs() as i64)
}

/// What makes a match the same file again on a later run: its TTH, else its size and
/// lower-case name.
pub fn match_key(r: &MergedResult) -> String {
    match &r.tth {
        Some(t) => format!("tth:{t}"),
        None => format!("name:{}:{}", r.size, r.name.to_lowercase()),
    }
}

impl Node {
    /// Save a search; it runs at once and then on each network's interval.
    pub fn wishlist_add(&self, query: &str, filters: Filters, auto_download: bool) -> anyhow::Result<WishlistItem> {
        let query = query.trim();
        if query.split_whitespace().all(|w| w.starts_with('-')) {
            return Err(NodeError::Invalid("the query has no words to search for".into()).into());
        }
        if query.len() > super::search::MAX_QUERY {
            return Err(NodeError::Invalid(format!("a query is at most {} bytes", super::search::MAX_QUERY)).into());
        }
        let db = self.db.lock().expect("db");
        if db.wishlist()?.len() >= MAX_WISHLIST {
            return Err(NodeError::Conflict(format!("the wishlist holds at most {MAX_WISHLIST} searches")).into());
        }
        let item = db.wishlist_add(query, &filters, auto_download)?;
        drop(db);
        self.wishlist_wake.notify_one();
        Ok(item)
    }

    /// The saved searches.
    pub fn wishlist(&self) -> anyhow::Result<Vec<WishlistItem>> {
        self.db.lock().expect("db").wishlist()
    }

    /// Forget a saved search.
    pub fn wishlist_remove(&self, id: i64) -> anyhow::Result<()> {
        if !self.db.lock().expect("db").wishlist_remove(id)? {
            return Err(NodeError::NotFound(format!("no wishlist item {id}")).into());
        }
        Ok(())
    }

    /// The user looked at an item's matches: none is new any more.
    pub fn wishlist_seen(&self, id: i64) -> anyhow::Result<WishlistItem> {
        let db = self.db.lock().expect("db");
        db.wishlist_clear_new(id)?;
        db.wishlist_item(id)?.ok_or_else(|| NodeError::NotFound(format!("no wishlist item {id}")).into())
    }

    /// Run a saved search now, whatever its interval says ("search again").
    pub async fn wishlist_run_now(&self, id: i64) -> anyhow::Result<WishlistItem> {
        let item = self
            .db
            .lock()
            .expect("db")
            .wishlist_item(id)?
            .ok_or_else(|| NodeError::NotFound(format!("no wishlist item {id}")))?;
        self.wishlist_run(&item).await?;
        self.db
            .lock()
            .expect("db")
            .wishlist_item(id)?
            .ok_or_else(|| NodeError::NotFound(format!("no wishlist item {id}")).into())
    }

    /// Send `item` as a wishlist search on every session that is logged in.
    async fn wishlist_run(&self, item: &WishlistItem) -> anyhow::Result<()> {
        let s = self
            .searches
            .lock()
            .expect("searches")
            .start(&item.query, std::time::Instant::now(), db::now())
            .ok_or_else(|| NodeError::Invalid("the query has no words to search for".into()))?;
        let mut sent = 0;
        for session in self.sessions() {
            let Some(client) = session.client() else { continue };
            if item.filters.network.is_some_and(|n| n != session.spec.network) {
                continue;
            }
            match client.wishlist_search(&s.query, &self.searches, s.id, &session.spec.label).await {
                Ok(()) => {
                    sent += 1;
                    self.searches.lock().expect("searches").sent(s.id, session.key().status_name());
                }
                Err(e) => tracing::info!("wishlist search on {}: {e:#}", session.key().describe()),
            }
        }
        if sent == 0 {
            return Err(NodeError::NotConnected("any hub or Soulseek server to search on".into()).into());
        }
        self.db.lock().expect("db").wishlist_ran(item.id, db::now(), s.id)?;
        tracing::info!(item = item.id, query = %item.query, search = s.id, "wishlist search sent");
        Ok(())
    }

    /// The longest wishlist interval of the sessions logged in (each network's rule is
    /// kept by waiting for the slowest).
    fn wishlist_interval(&self) -> Option<Duration> {
        self.sessions().iter().filter_map(|s| s.client()).map(|c| c.wishlist_interval()).max()
    }

    /// Run due items and take the new matches of running ones, until shutdown.
    pub(crate) async fn run_wishlist(self: Arc<Self>) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(WISHLIST_TICK) => {}
                _ = self.wishlist_wake.notified() => {}
            }
            let items = match self.wishlist() {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("wishlist: {e:#}");
                    continue;
                }
            };
            let now = db::now();
            if let Some(interval) = self.wishlist_interval() {
                for item in items.iter().filter(|i| due(i, now, interval)) {
                    if let Err(e) = self.wishlist_run(item).await {
                        tracing::info!("wishlist item {}: {e:#}", item.id);
                    }
                }
            }
            for item in &items {
                self.wishlist_matches(item);
            }
        }
    }

    /// Mark the new matches of `item`'s last search, and queue those that pass its
    /// filters when it auto-downloads.
    fn wishlist_matches(&self, item: &WishlistItem) {
        let Some(search) = item.last_search else { return };
        let results: Vec<MergedResult> = match self.searches.lock().expect("searches").get(search) {
            // (Search ids restart with the node: an item's last search from an earlier run
            // is not this run's search of the same id.)
            Some(s)
                if s.query == item.query.trim()
                    && item.last_run.is_some_and(|t| s.started >= t)
                    && !s.finished(db::now() - WISHLIST_TICK.as_secs() as i64 * 2) =>
            {
                s.results.iter().filter_map(|r| item.filters.apply(r)).collect()
            }
            _ => return,
        };
        for r in results {
            let new = match self.db.lock().expect("db").wishlist_seen(item.id, &match_key(&r)) {
                Ok(new) => new,
                Err(e) => {
                    tracing::warn!("wishlist: {e:#}");
                    return;
                }
            };
            if !new {
                continue;
            }
            self.emit(Event::WishlistMatch { item: item.id, result: r.clone() });
            if item.auto_download {
                // The best of the sources that passed: NMDC with a TTH (verified), then a
                // free slot (the node's own choice among them).
                let network = r
                    .sources
                    .iter()
                    .find(|s| s.network == Network::Nmdc && r.tth.is_some())
                    .or(r.sources.iter().find(|s| s.free_slots > 0))
                    .or(r.sources.first())
                    .map(|s| s.network);
                match self.download_result(r.id, None, network) {
                    Ok(t) => {
                        tracing::info!(item = item.id, transfer = t.id, name = %t.name, "wishlist: downloading a new match")
                    }
                    Err(e) => tracing::info!(item = item.id, "wishlist: cannot download {}: {e:#}", r.name),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(last_run: Option<i64>) -> WishlistItem {
        WishlistItem {
            id: 1,
            query: "x".into(),
            filters: Filters::default(),
            auto_download: false,
            created: 0,
            last_run,
            last_search: None,
            new_matches: 0,
        }
    }

    #[test]
    fn an_item_is_due_once_per_interval() {
        let every = Duration::from_secs(720);
        assert!(due(&item(None), 1000, every), "never run: at once");
        assert!(!due(&item(Some(1000)), 1000 + 719, every));
        assert!(due(&item(Some(1000)), 1000 + 720, every));
    }

    #[test]
    fn the_same_file_is_the_same_match() {
        let r = |name: &str, size, tth: Option<&str>| MergedResult {
            id: 1,
            search: 1,
            name: name.into(),
            size,
            tth: tth.map(Into::into),
            sources: Vec::new(),
        };
        assert_eq!(match_key(&r("A.mp3", 5, None)), match_key(&r("a.MP3", 5, None)));
        assert_ne!(match_key(&r("a.mp3", 5, None)), match_key(&r("a.mp3", 6, None)));
        assert_eq!(match_key(&r("a.mp3", 5, Some("T"))), match_key(&r("b.mp3", 9, Some("T"))));
    }
}
