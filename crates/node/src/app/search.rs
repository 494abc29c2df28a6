//! One search over every connected network, results merged: sources with the same TTH,
//! or (when one of them has no TTH) with the same name and size, are one result.
//!
//! A Soulseek result carries the token of its search and joins that search only. NMDC's
//! `$SR` does not say which search it answers, so an NMDC result joins every live search
//! (started in the last [`SEARCH_LIFETIME`]) whose words all appear in its path, as hubs
//! and clients match them.

use super::model::{MergedResult, Source};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a search takes new results; after it the search is finished (the API and the
/// web UI say so, and "no results" when none came). Soulseek peers answer within seconds
/// and hubs relay at once; slskd ends a search after 15 s by default.
pub const SEARCH_LIFETIME: Duration = Duration::from_secs(60);
/// Searches kept (oldest dropped).
pub const MAX_SEARCHES: usize = 64;
/// Results kept per search (the first ones to arrive; docs/api.md). Every result a
/// network delivers reaches the search (crate::events), so within this limit none is lost.
pub const MAX_RESULTS: usize = 2000;
/// Sources kept per result (the first ones to arrive).
pub const MAX_SOURCES: usize = 64;
/// Longest query accepted.
pub const MAX_QUERY: usize = 256;

/// One search.
#[derive(Debug, Clone)]
pub struct Search {
    /// Id.
    pub id: u64,
    /// As typed.
    pub query: String,
    /// Unix time started.
    pub started: i64,
    /// The sessions it was sent to (`nmdc_client`, `slsk_client@LABEL`, …).
    pub sent_to: Vec<String>,
    terms: Vec<String>,
    at: Instant,
    /// The tokens our Soulseek searches were sent with, one per Soulseek session (by its
    /// label): tokens are chosen by each session, so two servers may use the same one.
    slsk_tokens: Vec<(String, u32)>,
    /// Merged results, in arrival order (empty in a [`Search::summary`]).
    pub results: Vec<MergedResult>,
    /// How many results it holds.
    pub result_count: usize,
    /// How many sources over all its results (a Soulseek search can bring tens of
    /// thousands: this is what tells a user how popular a file is without every row).
    pub source_count: usize,
    /// Index into `results` of the first result with each TTH.
    by_tth: HashMap<String, usize>,
    /// Indexes into `results` of the results with each (size, lowercase name). With
    /// these two, a burst of results (a popular Soulseek search brings tens of thousands)
    /// merges in constant time each instead of scanning every kept result.
    by_name: HashMap<(u64, String), Vec<usize>>,
}

/// Every search of this run.
#[derive(Debug, Default)]
pub struct SearchBook {
    next_search: u64,
    next_result: u64,
    searches: VecDeque<Search>,
    /// Result id → search id.
    result_search: HashMap<u64, u64>,
}

/// A raw result from one network.
#[derive(Debug, Clone)]
pub struct RawResult {
    /// The source.
    pub source: Source,
    /// Size.
    pub size: u64,
    /// TTH, base32.
    pub tth: Option<String>,
    /// Soulseek: the token of the search it answers.
    pub slsk_token: Option<u32>,
}

impl Search {
    /// Everything but the results: what a list of searches shows, without copying
    /// tens of thousands of sources.
    pub fn summary(&self) -> Search {
        Search {
            id: self.id,
            query: self.query.clone(),
            started: self.started,
            sent_to: self.sent_to.clone(),
            terms: Vec::new(),
            at: self.at,
            slsk_tokens: Vec::new(),
            results: Vec::new(),
            result_count: self.result_count,
            source_count: self.source_count,
            by_tth: HashMap::new(),
            by_name: HashMap::new(),
        }
    }

    /// Whether it takes no more results, at unix time `unix`.
    pub fn finished(&self, unix: i64) -> bool {
        unix >= self.started + SEARCH_LIFETIME.as_secs() as i64
    }
}

/// What a user narrows results by (the web UI's filters, `GET /api/searches/{id}`'s query,
/// a wishlist item's auto-download). Every field is optional; a result passes when its
/// size and name pass and at least one of its sources does, and only those sources are
/// kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Filters {
    /// Smallest size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u64>,
    /// Largest size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Extensions, any of (comma-separated, without dots, case-insensitive: `mp3,flac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    /// Lowest bitrate in kbps (sources that give none do not pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bitrate: Option<u32>,
    /// Only sources with a free upload slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_slot: Option<bool>,
    /// Only sources on this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<super::net::Network>,
}

impl Filters {
    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// `r` narrowed to its sources that pass, or None when it does not pass.
    pub fn apply(&self, r: &MergedResult) -> Option<MergedResult> {
        if self.min_size.is_some_and(|m| r.size < m) || self.max_size.is_some_and(|m| r.size > m) {
            return None;
        }
        if let Some(exts) = self.ext.as_deref().filter(|e| !e.trim().is_empty()) {
            let ext = r.name.rsplit_once('.').map(|(_, e)| e.to_lowercase()).unwrap_or_default();
            if !exts.split(',').map(|e| e.trim().trim_start_matches('.').to_lowercase()).any(|e| e == ext) {
                return None;
            }
        }
        let sources: Vec<Source> = r
            .sources
            .iter()
            .filter(|s| self.network.is_none_or(|n| s.network == n))
            .filter(|s| self.free_slot != Some(true) || s.free_slots > 0)
            .filter(|s| self.min_bitrate.is_none_or(|m| s.details.bitrate.is_some_and(|b| b >= m)))
            .cloned()
            .collect();
        if sources.is_empty() {
            return None;
        }
        Some(MergedResult { sources, ..r.clone() })
    }
}

fn terms(query: &str) -> Vec<String> {
    query.split_whitespace().filter(|t| !t.starts_with('-')).map(str::to_lowercase).collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

impl SearchBook {
    /// Open a search; `None` if the query has no words.
    pub fn start(&mut self, query: &str, now: Instant, unix: i64) -> Option<Search> {
        let query: String = query.trim().chars().take(MAX_QUERY).collect();
        let t = terms(&query);
        if t.is_empty() {
            return None;
        }
        self.next_search += 1;
        let s = Search {
            id: self.next_search,
            query,
            started: unix,
            sent_to: Vec::new(),
            terms: t,
            at: now,
            slsk_tokens: Vec::new(),
            results: Vec::new(),
            result_count: 0,
            source_count: 0,
            by_tth: HashMap::new(),
            by_name: HashMap::new(),
        };
        self.searches.push_back(s.clone());
        while self.searches.len() > MAX_SEARCHES {
            if let Some(old) = self.searches.pop_front() {
                for r in &old.results {
                    self.result_search.remove(&r.id);
                }
            }
        }
        Some(s)
    }

    /// Soulseek results with `token` from the session labelled `session` answer search `id`.
    pub fn set_slsk_token(&mut self, id: u64, session: &str, token: u32) {
        if let Some(s) = self.searches.iter_mut().find(|s| s.id == id) {
            s.slsk_tokens.push((session.to_owned(), token));
        }
    }

    /// Search `id` was sent to the session `name`.
    pub fn sent(&mut self, id: u64, name: String) {
        if let Some(s) = self.searches.iter_mut().find(|s| s.id == id) {
            s.sent_to.push(name);
        }
    }

    /// All searches (oldest first).
    pub fn list(&self) -> impl Iterator<Item = &Search> {
        self.searches.iter()
    }

    /// One search.
    pub fn get(&self, id: u64) -> Option<&Search> {
        self.searches.iter().find(|s| s.id == id)
    }

    /// One result by its id.
    pub fn result(&self, id: u64) -> Option<&MergedResult> {
        let sid = self.result_search.get(&id)?;
        self.get(*sid)?.results.iter().find(|r| r.id == id)
    }

    /// Add a network's result to every live search it answers; returns what changed in
    /// each: the result with only its new source (a new result has just that one), and
    /// how many sources it has now. Only the new source travels to the web UI: a popular
    /// Soulseek search adds tens of thousands of sources, and sending each result whole
    /// every time it gained one was the square of that in JSON.
    pub fn add(&mut self, raw: RawResult, now: Instant) -> Vec<(MergedResult, usize)> {
        let path_lc = raw.source.path.to_lowercase();
        let name = file_name(&raw.source.path).to_owned();
        let name_lc = name.to_lowercase();
        let mut changed = Vec::new();
        for s in self.searches.iter_mut() {
            let answers = match raw.slsk_token {
                Some(t) => s.slsk_tokens.iter().any(|(l, x)| *x == t && *l == raw.source.session),
                None => s.terms.iter().all(|t| path_lc.contains(t.as_str())),
            };
            if now.duration_since(s.at) > SEARCH_LIFETIME || !answers {
                continue;
            }
            // The first result (in arrival order) that is the same file: the same TTH
            // when both have one, else the same name and size.
            let key = (raw.size, name_lc.clone());
            let same_name = s.by_name.get(&key).into_iter().flatten().copied();
            let same = match &raw.tth {
                None => same_name.min(),
                Some(t) => {
                    let no_tth = same_name.filter(|&i| s.results[i].tth.is_none());
                    no_tth.chain(s.by_tth.get(t).copied()).min()
                }
            };
            match same {
                Some(i) => {
                    let r = &mut s.results[i];
                    if r.sources.iter().any(|x| {
                        x.network == raw.source.network
                            && x.session == raw.source.session
                            && x.user == raw.source.user
                            && x.path == raw.source.path
                    }) || r.sources.len() >= MAX_SOURCES
                    {
                        continue;
                    }
                    r.sources.push(raw.source.clone());
                    s.source_count += 1;
                    let total = r.sources.len();
                    if r.tth.is_none() {
                        r.tth = raw.tth.clone();
                        if let Some(t) = &raw.tth {
                            let first = s.by_tth.entry(t.clone()).or_insert(i);
                            *first = (*first).min(i);
                        }
                    }
                    let r = &s.results[i];
                    let delta = MergedResult {
                        id: r.id,
                        search: r.search,
                        name: r.name.clone(),
                        size: r.size,
                        tth: r.tth.clone(),
                        sources: vec![raw.source.clone()],
                    };
                    changed.push((delta, total));
                }
                None => {
                    if s.results.len() >= MAX_RESULTS {
                        continue;
                    }
                    self.next_result += 1;
                    let r = MergedResult {
                        id: self.next_result,
                        search: s.id,
                        name: name.clone(),
                        size: raw.size,
                        tth: raw.tth.clone(),
                        sources: vec![raw.source.clone()],
                    };
                    self.result_search.insert(r.id, s.id);
                    let at = s.results.len();
                    if let Some(t) = &r.tth {
                        s.by_tth.entry(t.clone()).or_insert(at);
                    }
                    s.by_name.entry(key).or_default().push(at);
                    s.results.push(r.clone());
                    s.result_count += 1;
                    s.source_count += 1;
                    changed.push((r, 1));
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(network: &str, user: &str, path: &str, size: u64, tth: Option<&str>) -> RawResult {
        RawResult {
            source: Source {
                network: network.parse().unwrap(),
                session: String::new(),
                user: user.into(),
                path: path.into(),
                free_slots: 1,
                details: Default::default(),
            },
            size,
            tth: tth.map(str::to_owned),
            slsk_token: None,
        }
    }

    #[test]
    fn same_tth_or_same_name_and_size_is_one_result() {
        let mut b = SearchBook::default();
        let t0 = Instant::now();
        let s = b.start("song mp3", t0, 0).unwrap();
        assert_eq!(b.add(raw("nmdc", "alice", "share\\Song.mp3", 100, Some("AAA")), t0).len(), 1);
        // Same TTH, another name: the same file.
        let c = b.add(raw("nmdc", "bob", "music\\song (copy).mp3", 100, Some("AAA")), t0);
        assert_eq!(c[0].1, 2);
        assert_eq!(c[0].0.sources.iter().map(|x| x.user.as_str()).collect::<Vec<_>>(), ["bob"], "only the new one");
        // Soulseek gives no TTH: same name and size joins.
        let c = b.add(raw("slsk", "alice", "share\\song.MP3", 100, None), t0);
        assert_eq!(c[0].1, 3);
        // Same name, other size: another file.
        b.add(raw("slsk", "carol", "x\\song.mp3", 101, None), t0);
        // Same name and size but a different TTH: another file.
        b.add(raw("nmdc", "dave", "y\\song.mp3", 100, Some("BBB")), t0);
        // The same source again changes nothing.
        assert!(b.add(raw("slsk", "alice", "share\\song.MP3", 100, None), t0).is_empty());
        // Not matching every word: not a result of this search.
        assert!(b.add(raw("slsk", "erin", "song.flac", 100, None), t0).is_empty());
        let s = b.get(s.id).unwrap();
        assert_eq!(s.results.len(), 3);
        let first = b.result(s.results[0].id).unwrap();
        assert_eq!(first.tth.as_deref(), Some("AAA"));
    }

    #[test]
    fn old_searches_take_no_results() {
        let mut b = SearchBook::default();
        let t0 = Instant::now();
        b.start("song", t0, 0).unwrap();
        assert!(b.add(raw("nmdc", "a", "song", 1, None), t0 + SEARCH_LIFETIME + Duration::from_secs(1)).is_empty());
        assert!(b.start("  -x ", t0, 0).is_none());
    }

    #[test]
    fn soulseek_results_join_the_search_of_their_token() {
        let mut b = SearchBook::default();
        let t0 = Instant::now();
        let a = b.start("song", t0, 0).unwrap();
        let c = b.start("song mp3", t0, 0).unwrap();
        b.set_slsk_token(a.id, "", 7);
        b.set_slsk_token(c.id, "", 8);
        let mut r = raw("slsk", "ann", "music\\song.mp3", 5, None);
        r.slsk_token = Some(8);
        let changed = b.add(r.clone(), t0);
        assert_eq!(changed.iter().map(|x| x.0.search).collect::<Vec<_>>(), vec![c.id], "only the search with token 8");
        // a peer may match on words we do not see (a folder name): still its search's result
        r.source.path = "Beatles\\yesterday.flac".into();
        assert_eq!(b.add(r.clone(), t0).len(), 1);
        // a token nobody sent: no search
        r.slsk_token = Some(99);
        assert!(b.add(r, t0).is_empty());
        // NMDC results still join every search whose words they contain
        assert_eq!(b.add(raw("nmdc", "bo", "x\\song.mp3", 9, Some("T")), t0).len(), 2);
    }

    #[test]
    fn soulseek_tokens_belong_to_their_session() {
        let mut b = SearchBook::default();
        let t0 = Instant::now();
        let a = b.start("song", t0, 0).unwrap();
        let c = b.start("song", t0, 0).unwrap();
        // Two servers' sessions picked the same token for two searches.
        b.set_slsk_token(a.id, "one", 5);
        b.set_slsk_token(c.id, "two", 5);
        let mut r = raw("slsk", "ann", "song.mp3", 5, None);
        r.source.session = "two".into();
        r.slsk_token = Some(5);
        assert_eq!(b.add(r.clone(), t0).iter().map(|x| x.0.search).collect::<Vec<_>>(), vec![c.id]);
        // The same user and file through the other server is another source.
        r.source.session = "one".into();
        let changed = b.add(r, t0);
        assert_eq!(changed.iter().map(|x| x.0.search).collect::<Vec<_>>(), vec![a.id]);
        assert_eq!(changed[0].1, 1);
    }
}
