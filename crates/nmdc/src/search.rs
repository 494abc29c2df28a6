//! Answering `$Search`: does a shared file or directory match, and the `$SR` for a hit.
//!
//! Rules (docs/protocols/nmdc.md#search, and what ncdc does in `nmdc_search` / `fl_search_match_name`):
//!
//! * Text queries: every whitespace-separated term must occur in the virtual path
//!   (`/share/dir/name`), ignoring case. A query without terms matches nothing (no
//!   "list everything" answers).
//! * Size bound (`T?T?<n>` at most, `T?F?<n>` at least) inclusive, for files only; a
//!   size-bounded query matches no directory.
//! * Type 1 matches files and directories, 8 only directories, 9 files whose TTH is the
//!   root in `TTH:<root>`, the others files whose extension is in the type's list
//!   ([`extensions`]). 13 (magnet) is matched like 1. ncdc answers only types 1..9.
//! * Answer at most [`MAX_PASSIVE_RESULTS`] results to a passive searcher (through the hub,
//!   with `\x05<nick>`) and [`MAX_ACTIVE_RESULTS`] to an active one (UDP, no target).
//!
//! Paths here are real (UTF-8) text with `/` separators. The query pattern is a wire
//! string; [`Matcher::new`] reads it as UTF-8 when it is valid UTF-8 (see
//! [`crate::text::wire_to_utf8`]), and the results carry wire strings made with
//! [`crate::text::utf8_to_wire`] — right for UTF-8 hubs, the common case.

use crate::command::{FileType, ResultTag, SearchOrigin, SearchQuery, SearchResult};
use crate::text::{utf8_to_wire, wire_to_utf8};
use crate::tth::Tth;

/// Most results sent to a passive searcher.
pub const MAX_PASSIVE_RESULTS: usize = 5;
/// Most results sent to an active searcher.
pub const MAX_ACTIVE_RESULTS: usize = 10;
/// Most terms in a query that are looked at (the rest are ignored).
pub const MAX_TERMS: usize = 32;

/// How many results a searcher gets.
pub fn max_results(origin: &SearchOrigin) -> usize {
    match origin {
        SearchOrigin::Active { .. } => MAX_ACTIVE_RESULTS,
        SearchOrigin::Passive { .. } => MAX_PASSIVE_RESULTS,
    }
}

/// File extensions (lower case, no dot) of a search type; empty for types that do not
/// filter by extension (any, folder, TTH, magnet).
pub fn extensions(t: FileType) -> &'static [&'static str] {
    match t {
        FileType::Audio => &[
            "aac", "aif", "aiff", "ape", "au", "flac", "m4a", "mid", "midi", "mp2", "mp3", "mpc", "ogg", "opus", "ra",
            "wav", "wma", "wv",
        ],
        FileType::Compressed => &[
            "7z", "ace", "arj", "bz2", "cab", "gz", "lha", "lzh", "lzma", "rar", "tar", "tbz2", "tgz", "txz", "tz",
            "xz", "z", "zip", "zst",
        ],
        FileType::Document => &[
            "csv", "doc", "docx", "htm", "html", "md", "nfo", "odf", "odp", "ods", "odt", "pdf", "ppt", "pptx", "rtf",
            "tex", "txt", "xls", "xlsx", "xml", "xps",
        ],
        FileType::Executable => {
            &["apk", "app", "bat", "cmd", "com", "deb", "dll", "exe", "jar", "msi", "ps1", "rpm", "sh", "vbs", "wsf"]
        }
        FileType::Picture => &[
            "bmp", "cdr", "eps", "gif", "heic", "ico", "jpeg", "jpg", "png", "ps", "psd", "svg", "tga", "tif", "tiff",
            "webp",
        ],
        FileType::Video => &[
            "3gp", "asf", "asx", "avi", "divx", "flv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ogm", "ogv",
            "qt", "rm", "rmvb", "swf", "ts", "vob", "webm", "wmv",
        ],
        FileType::DiskImage => &["bin", "cue", "dmg", "img", "iso", "mdf", "mds", "nrg", "toast", "vcd", "vhd", "vmdk"],
        FileType::Comics => &["cb7", "cba", "cbr", "cbt", "cbz"],
        FileType::Books => &["azw", "azw3", "chm", "djvu", "epub", "fb2", "lit", "lrf", "mobi", "prc"],
        FileType::Any | FileType::Folder | FileType::Tth | FileType::Magnet => &[],
    }
}

/// A `$Search` prepared for matching many shared items.
#[derive(Debug, Clone)]
pub struct Matcher {
    query: SearchQuery,
    /// Lower-cased terms.
    terms: Vec<String>,
    /// The root of a TTH query.
    root: Option<Tth>,
}

impl Matcher {
    /// Prepare a query.
    pub fn new(query: &SearchQuery) -> Matcher {
        let pattern = wire_to_utf8(&query.pattern).to_lowercase();
        let terms = pattern.split_whitespace().take(MAX_TERMS).map(str::to_owned).collect();
        Matcher { query: query.clone(), terms, root: query.tth_root() }
    }

    /// The query.
    pub fn query(&self) -> &SearchQuery {
        &self.query
    }

    /// Whether a shared file matches: `path` is its virtual path (`/share/dir/name`).
    pub fn matches_file(&self, path: &str, size: u64, tth: &Tth) -> bool {
        if !self.query.size_matches(size) {
            return false;
        }
        match self.query.file_type {
            FileType::Folder => false,
            FileType::Tth => self.root.as_ref() == Some(tth),
            t => {
                let exts = extensions(t);
                if !exts.is_empty() {
                    let name = path.rsplit('/').next().unwrap_or(path);
                    let ok = match name.rsplit_once('.') {
                        Some((_, ext)) => exts.iter().any(|e| e.eq_ignore_ascii_case(ext)),
                        None => false,
                    };
                    if !ok {
                        return false;
                    }
                }
                self.terms_match(path)
            }
        }
    }

    /// Whether a shared directory matches (`path` as for files).
    pub fn matches_dir(&self, path: &str) -> bool {
        !self.query.size_restricted
            && matches!(self.query.file_type, FileType::Any | FileType::Folder | FileType::Magnet)
            && self.terms_match(path)
    }

    fn terms_match(&self, path: &str) -> bool {
        if self.terms.is_empty() {
            return false;
        }
        let hay = path.to_lowercase();
        self.terms.iter().all(|t| hay.contains(t.as_str()))
    }
}

/// Whether one file matches a query (prepare a [`Matcher`] to test many).
pub fn matches(query: &SearchQuery, path: &str, size: u64, tth: &Tth) -> bool {
    Matcher::new(query).matches_file(path, size, tth)
}

/// The `$SR` path for a virtual path: no leading `/`, `\` separators.
pub fn sr_path(virtual_path: &str) -> String {
    virtual_path.trim_start_matches('/').replace('/', "\\")
}

/// Who answers a search, with the values every `$SR` repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    /// Our nick on the hub.
    pub nick: String,
    /// Free upload slots.
    pub free_slots: u32,
    /// All upload slots.
    pub total_slots: u32,
    /// The hub's name (sent in directory results).
    pub hub_name: String,
    /// The hub's `ip:port` as we connected to it.
    pub hub_addr: String,
}

impl Responder {
    /// The result for a matching file, addressed as the searcher needs (a passive searcher's
    /// nick as target; none for an active one).
    pub fn file_result(&self, origin: &SearchOrigin, path: &str, size: u64, tth: &Tth) -> SearchResult {
        self.result(origin, path, Some(size), ResultTag::Tth(*tth))
    }

    /// The result for a matching directory.
    pub fn dir_result(&self, origin: &SearchOrigin, path: &str) -> SearchResult {
        self.result(origin, path, None, ResultTag::HubName(utf8_to_wire(&self.hub_name)))
    }

    fn result(&self, origin: &SearchOrigin, path: &str, size: Option<u64>, tag: ResultTag) -> SearchResult {
        SearchResult {
            nick: utf8_to_wire(&self.nick),
            path: utf8_to_wire(&sr_path(path)),
            size,
            free_slots: self.free_slots,
            total_slots: self.total_slots,
            tag,
            hub_addr: self.hub_addr.clone(),
            target: match origin {
                SearchOrigin::Passive { nick } => Some(nick.clone()),
                SearchOrigin::Active { .. } => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::tth::tth;
    use proptest::prelude::*;

    fn q(line: &str) -> SearchQuery {
        match Command::parse(line.as_bytes()).unwrap() {
            Command::Search { query, .. } => query,
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn terms_in_the_path_ignoring_case() {
        let root = tth(b"x");
        let m = Matcher::new(&q("$Search 127.0.0.1:3000 F?T?0?1?test"));
        assert!(m.matches_file("/share2/ektest.txt", 25, &root));
        assert!(m.matches_file("/TEST/a.bin", 25, &root));
        assert!(!m.matches_file("/share2/other.txt", 25, &root));
        let m = Matcher::new(&q("$Search Hub:bob F?F?0?1?share$TEST.TXT"));
        assert!(m.matches_file("/share2/ektest.txt", 25, &root));
        assert!(!m.matches_file("/share2/ektest.bin", 25, &root));
        // Non-ASCII case folding on a UTF-8 hub.
        let pattern = crate::text::utf8_to_wire("ÉTÉ");
        let m = Matcher::new(&SearchQuery::text(&pattern));
        assert!(m.matches_file("/musique/été.mp3", 1, &root));
        // No terms, no results.
        assert!(!Matcher::new(&SearchQuery::text("   ")).matches_file("/a", 1, &root));
        assert!(!Matcher::new(&SearchQuery::text("")).matches_dir("/a"));
    }

    #[test]
    fn size_bounds() {
        let root = tth(b"x");
        let at_least = q("$Search Hub:a T?F?1000?1?x");
        let at_most = q("$Search Hub:a T?T?1000?1?x");
        assert!(matches(&at_least, "/x", 1000, &root) && matches(&at_least, "/x", 1001, &root));
        assert!(!matches(&at_least, "/x", 999, &root));
        assert!(matches(&at_most, "/x", 1000, &root) && matches(&at_most, "/x", 0, &root));
        assert!(!matches(&at_most, "/x", 1001, &root));
        assert!(!Matcher::new(&at_most).matches_dir("/x"));
        assert!(Matcher::new(&q("$Search Hub:a F?T?0?1?x")).matches_dir("/x"));
    }

    #[test]
    fn types_by_extension_and_folders() {
        let root = tth(b"x");
        let video = q("$Search Hub:a F?T?0?7?movie");
        assert!(matches(&video, "/v/My Movie.MKV", 1, &root));
        assert!(!matches(&video, "/v/movie.txt", 1, &root));
        assert!(!matches(&video, "/v/movie", 1, &root));
        assert!(!matches(&video, "/movie.mkv/readme", 1, &root));
        assert!(!Matcher::new(&video).matches_dir("/v/movie"));
        let folder = Matcher::new(&q("$Search Hub:a F?T?0?8?movie"));
        assert!(folder.matches_dir("/v/movies"));
        assert!(!folder.matches_file("/v/movie.mkv", 1, &root));
        for (t, name) in [
            (2, "a.flac"),
            (3, "a.tar"),
            (4, "a.pdf"),
            (5, "a.exe"),
            (6, "a.jpeg"),
            (10, "a.iso"),
            (11, "a.cbz"),
            (12, "a.epub"),
            (13, "a.anything"),
            (1, "a.anything"),
        ] {
            let query = q(&format!("$Search Hub:a F?T?0?{t}?a"));
            assert!(matches(&query, &format!("/d/{name}"), 1, &root), "{t} {name}");
        }
        assert!(!matches(&q("$Search Hub:a F?T?0?2?a"), "/d/a.iso", 1, &root));
    }

    #[test]
    fn tth_queries_match_by_root_only() {
        let data = b"hello world\n";
        let root = tth(data);
        let query = q(&format!("$Search Hub:bob F?T?0?9?TTH:{root}"));
        assert!(matches(&query, "/any/name.bin", 12, &root));
        assert!(!matches(&query, "/any/name.bin", 12, &tth(b"other")));
        assert!(!Matcher::new(&query).matches_dir("/TTH"));
        // A malformed TTH matches nothing.
        let bad = q("$Search Hub:bob F?T?0?9?TTH:NOTBASE32");
        assert!(!matches(&bad, "/x", 1, &root));
    }

    #[test]
    fn results_for_active_and_passive_searchers() {
        let me = Responder {
            nick: "alice".into(),
            free_slots: 2,
            total_slots: 3,
            hub_name: "test hub".into(),
            hub_addr: "127.0.0.1:4111".into(),
        };
        let root = Tth::from_base32("ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI").unwrap();
        let passive = SearchOrigin::Passive { nick: "bob".into() };
        let active = SearchOrigin::Active { host: "127.0.0.1".into(), port: 3000 };
        let r = me.file_result(&passive, "/share2/dir/ektest.txt", 25, &root);
        assert_eq!(
            Command::Sr(r).encode(),
            b"$SR alice share2\\dir\\ektest.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4111)\x05bob|"
        );
        let r = me.file_result(&active, "/share2/ektest.txt", 25, &root);
        assert_eq!(
            Command::Sr(r).encode(),
            b"$SR alice share2\\ektest.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4111)|"
        );
        let d = me.dir_result(&passive, "/share2/dir");
        assert_eq!(Command::Sr(d).encode(), b"$SR alice share2\\dir 2/3\x05test hub (127.0.0.1:4111)\x05bob|");
        let u = me.file_result(&active, "/share2/café $5.txt", 1, &root);
        assert_eq!(
            Command::Sr(u).encode(),
            "$SR alice share2\\café &#36;5.txt\x051 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4111)|".as_bytes()
        );
        assert_eq!(max_results(&passive), 5);
        assert_eq!(max_results(&active), 10);
    }

    proptest! {
        #[test]
        fn a_file_matches_its_own_name(name in "[a-zA-Z0-9]{1,10}", ext in "(mp3|mkv|iso|txt)", size in any::<u64>()) {
            let root = tth(name.as_bytes());
            let path = format!("/share/{name}.{ext}");
            let query = SearchQuery::text(&name.to_uppercase());
            prop_assert!(matches(&query, &path, size, &root));
            prop_assert!(matches(&SearchQuery::tth(&root), &path, size, &root));
        }

        #[test]
        fn never_panics(pattern in "\\PC{0,30}", path in "\\PC{0,30}", t in 1u8..=13, size in any::<u64>()) {
            let query = SearchQuery { size_restricted: size % 2 == 0, is_max: size % 3 == 0, size: size / 2,
                file_type: FileType::from_number(t).unwrap(), pattern };
            let m = Matcher::new(&query);
            let _ = m.matches_file(&path, size, &tth(b""));
            let _ = m.matches_dir(&path);
        }
    }
}
