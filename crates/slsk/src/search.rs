//! Does a search query match a shared file? The rule as Nicotine+ 3.3.11 applies it when
//! answering searches (docs/protocols/soulseek.md#search-relay):
//!
//! - Everything is compared lowercased, and punctuation (ASCII punctuation, which includes
//!   the `\` path separator, and Unicode punctuation) counts as a space. A path is the set
//!   of words that leaves: `@@lvhkp\Album\Kevin_MacLeod-Galway.mp3` has the words `lvhkp`,
//!   `album`, `kevin`, `macleod`, `galway`, `mp3`.
//! - A query word starting with `-` excludes paths having that word; one starting with `*`
//!   matches any path word that *ends with* it (`*way` matches `galway`); every other word
//!   must be a whole word of the path.
//! - A query needs at least one plain word; `*way` alone or `-foo` alone match nothing.
//!   A word that is both plain and excluded (`galway -galway`) is not a plain word.
//!
//! ```
//! use omnipeer_slsk::search::SearchQuery;
//!
//! let q = SearchQuery::parse("GALWAY macleod -flac");
//! assert!(q.matches(r"@@lvhkp\Album\Kevin_MacLeod-Galway.mp3"));
//! assert!(!q.matches(r"@@lvhkp\Album\Kevin_MacLeod-Galway.flac"));
//! assert!(!q.matches(r"@@lvhkp\Album\Galwayish.mp3"));
//! assert!(SearchQuery::parse("kevin *way").matches(r"Music\Kevin - Galway.mp3"));
//! ```
//!
//! Server-side, paths containing a phrase from ExcludedSearchPhrases(160) must not be
//! returned: see [`contains_excluded_phrase`].

use std::collections::BTreeSet;

/// Unicode punctuation beyond ASCII (general category P, as in Nicotine+'s list), as
/// sorted inclusive ranges.
const UNICODE_PUNCTUATION: &[(u32, u32)] = &[
    (0xA1, 0xA1),
    (0xA7, 0xA7),
    (0xAB, 0xAB),
    (0xB6, 0xB7),
    (0xBB, 0xBB),
    (0xBF, 0xBF),
    (0x37E, 0x37E),
    (0x387, 0x387),
    (0x55A, 0x55F),
    (0x589, 0x58A),
    (0x5BE, 0x5BE),
    (0x5C0, 0x5C0),
    (0x5C3, 0x5C3),
    (0x5C6, 0x5C6),
    (0x5F3, 0x5F4),
    (0x609, 0x60A),
    (0x60C, 0x60D),
    (0x61B, 0x61B),
    (0x61D, 0x61F),
    (0x66A, 0x66D),
    (0x6D4, 0x6D4),
    (0x700, 0x70D),
    (0x7F7, 0x7F9),
    (0x830, 0x83E),
    (0x85E, 0x85E),
    (0x964, 0x965),
    (0x970, 0x970),
    (0x9FD, 0x9FD),
    (0xA76, 0xA76),
    (0xAF0, 0xAF0),
    (0xC77, 0xC77),
    (0xC84, 0xC84),
    (0xDF4, 0xDF4),
    (0xE4F, 0xE4F),
    (0xE5A, 0xE5B),
    (0xF04, 0xF12),
    (0xF14, 0xF14),
    (0xF3A, 0xF3D),
    (0xF85, 0xF85),
    (0xFD0, 0xFD4),
    (0xFD9, 0xFDA),
    (0x104A, 0x104F),
    (0x10FB, 0x10FB),
    (0x1360, 0x1368),
    (0x1400, 0x1400),
    (0x166E, 0x166E),
    (0x169B, 0x169C),
    (0x16EB, 0x16ED),
    (0x1735, 0x1736),
    (0x17D4, 0x17D6),
    (0x17D8, 0x17DA),
    (0x1800, 0x180A),
    (0x1944, 0x1945),
    (0x1A1E, 0x1A1F),
    (0x1AA0, 0x1AA6),
    (0x1AA8, 0x1AAD),
    (0x1B5A, 0x1B60),
    (0x1B7D, 0x1B7E),
    (0x1BFC, 0x1BFF),
    (0x1C3B, 0x1C3F),
    (0x1C7E, 0x1C7F),
    (0x1CC0, 0x1CC7),
    (0x1CD3, 0x1CD3),
    (0x2010, 0x2027),
    (0x2030, 0x2043),
    (0x2045, 0x2051),
    (0x2053, 0x205E),
    (0x207D, 0x207E),
    (0x208D, 0x208E),
    (0x2308, 0x230B),
    (0x2329, 0x232A),
    (0x2768, 0x2775),
    (0x27C5, 0x27C6),
    (0x27E6, 0x27EF),
    (0x2983, 0x2998),
    (0x29D8, 0x29DB),
    (0x29FC, 0x29FD),
    (0x2CF9, 0x2CFC),
    (0x2CFE, 0x2CFF),
    (0x2D70, 0x2D70),
    (0x2E00, 0x2E2E),
    (0x2E30, 0x2E4F),
    (0x2E52, 0x2E5D),
    (0x3001, 0x3003),
    (0x3008, 0x3011),
    (0x3014, 0x301F),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x30A0, 0x30A0),
    (0x30FB, 0x30FB),
    (0xA4FE, 0xA4FF),
    (0xA60D, 0xA60F),
    (0xA673, 0xA673),
    (0xA67E, 0xA67E),
    (0xA6F2, 0xA6F7),
    (0xA874, 0xA877),
    (0xA8CE, 0xA8CF),
    (0xA8F8, 0xA8FA),
    (0xA8FC, 0xA8FC),
    (0xA92E, 0xA92F),
    (0xA95F, 0xA95F),
    (0xA9C1, 0xA9CD),
    (0xA9DE, 0xA9DF),
    (0xAA5C, 0xAA5F),
    (0xAADE, 0xAADF),
    (0xAAF0, 0xAAF1),
    (0xABEB, 0xABEB),
    (0xFD3E, 0xFD3F),
    (0xFE10, 0xFE19),
    (0xFE30, 0xFE52),
    (0xFE54, 0xFE66),
    (0xFE68, 0xFE68),
    (0xFE6A, 0xFE6B),
    (0xFF01, 0xFF03),
    (0xFF05, 0xFF0F),
    (0xFF1A, 0xFF20),
    (0xFF3B, 0xFF3D),
    (0xFF3F, 0xFF3F),
    (0xFF5B, 0xFF65),
    (0x10100, 0x10102),
    (0x1039F, 0x1039F),
    (0x103D0, 0x103D0),
    (0x1056F, 0x1056F),
    (0x10857, 0x10857),
    (0x1091F, 0x1091F),
    (0x1093F, 0x1093F),
    (0x10A50, 0x10A58),
    (0x10A7F, 0x10A7F),
    (0x10AF0, 0x10AF6),
    (0x10B39, 0x10B3F),
    (0x10B99, 0x10B9C),
    (0x10EAD, 0x10EAD),
    (0x10F55, 0x10F59),
    (0x10F86, 0x10F89),
    (0x11047, 0x1104D),
    (0x110BB, 0x110BC),
    (0x110BE, 0x110C1),
    (0x11140, 0x11143),
    (0x11174, 0x11175),
    (0x111C5, 0x111C8),
    (0x111CD, 0x111CD),
    (0x111DB, 0x111DB),
    (0x111DD, 0x111DF),
    (0x11238, 0x1123D),
    (0x112A9, 0x112A9),
    (0x1144B, 0x1144F),
    (0x1145A, 0x1145B),
    (0x1145D, 0x1145D),
    (0x114C6, 0x114C6),
    (0x115C1, 0x115D7),
    (0x11641, 0x11643),
    (0x11660, 0x1166C),
    (0x116B9, 0x116B9),
    (0x1173C, 0x1173E),
    (0x1183B, 0x1183B),
    (0x11944, 0x11946),
    (0x119E2, 0x119E2),
    (0x11A3F, 0x11A46),
    (0x11A9A, 0x11A9C),
    (0x11A9E, 0x11AA2),
    (0x11B00, 0x11B09),
    (0x11C41, 0x11C45),
    (0x11C70, 0x11C71),
    (0x11EF7, 0x11EF8),
    (0x11F43, 0x11F4F),
    (0x11FFF, 0x11FFF),
    (0x12470, 0x12474),
    (0x12FF1, 0x12FF2),
    (0x16A6E, 0x16A6F),
    (0x16AF5, 0x16AF5),
    (0x16B37, 0x16B3B),
    (0x16B44, 0x16B44),
    (0x16E97, 0x16E9A),
    (0x16FE2, 0x16FE2),
    (0x1BC9F, 0x1BC9F),
    (0x1DA87, 0x1DA8B),
    (0x1E95E, 0x1E95F),
];

/// Whether `c` counts as a word separator: ASCII punctuation or Unicode punctuation.
pub fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    let c = c as u32;
    UNICODE_PUNCTUATION
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The words of `text`: lowercased, punctuation turned into spaces, split on whitespace.
pub fn words(text: &str) -> Vec<String> {
    let cleaned: String = text.to_lowercase().chars().map(|c| if is_punctuation(c) { ' ' } else { c }).collect();
    cleaned.split_whitespace().map(str::to_owned).collect()
}

/// A parsed search query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    included: BTreeSet<String>,
    excluded: BTreeSet<String>,
    partial: BTreeSet<String>,
}

impl SearchQuery {
    /// Parse a query as received in FileSearch / DistribSearch.
    pub fn parse(query: &str) -> Self {
        let lower = query.to_lowercase();
        let mut excluded = BTreeSet::new();
        let mut partial = BTreeSet::new();
        for word in lower.split_whitespace() {
            if word.starts_with('-') {
                excluded.extend(words(word));
            } else if word.starts_with('*') {
                partial.extend(words(word));
            }
        }
        let included = words(&lower).into_iter().filter(|w| !excluded.contains(w) && !partial.contains(w)).collect();
        SearchQuery { included, excluded, partial }
    }

    /// Words every match must contain.
    pub fn included(&self) -> impl Iterator<Item = &str> {
        self.included.iter().map(String::as_str)
    }

    /// Words no match may contain.
    pub fn excluded(&self) -> impl Iterator<Item = &str> {
        self.excluded.iter().map(String::as_str)
    }

    /// Suffixes (from `*suffix`) some word of a match must end with.
    pub fn partial(&self) -> impl Iterator<Item = &str> {
        self.partial.iter().map(String::as_str)
    }

    /// Whether the query can match anything: it has at least one plain word.
    pub fn is_searchable(&self) -> bool {
        !self.included.is_empty()
    }

    /// Whether a shared file's virtual path matches.
    pub fn matches(&self, path: &str) -> bool {
        if !self.is_searchable() {
            return false;
        }
        let path_words: BTreeSet<String> = words(path).into_iter().collect();
        self.included.iter().all(|w| path_words.contains(w))
            && self.partial.iter().all(|p| path_words.iter().any(|w| w.ends_with(p.as_str())))
            && !self.excluded.iter().any(|w| path_words.contains(w))
    }
}

/// Whether `query` matches `path` (see [`SearchQuery`]).
pub fn matches(query: &str, path: &str) -> bool {
    SearchQuery::parse(query).matches(path)
}

/// Whether `path` contains one of the server's excluded phrases (case-insensitive
/// substring); such files must not be sent in search results.
pub fn contains_excluded_phrase(path: &str, phrases: &[String]) -> bool {
    let lower = path.to_lowercase();
    phrases.iter().filter(|p| !p.is_empty()).any(|p| lower.contains(&p.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: &str = r"@@lvhkp\Album\Kevin_MacLeod-Galway.mp3";

    #[test]
    fn path_words() {
        assert_eq!(words(P), ["lvhkp", "album", "kevin", "macleod", "galway", "mp3"]);
        assert_eq!(words("Björk — «Jóga» (1997)"), ["björk", "jóga", "1997"]);
        assert_eq!(words("日本語「歌」"), ["日本語", "歌"]);
    }

    #[test]
    fn all_words_case_insensitive() {
        assert!(matches("galway", P));
        assert!(matches("GALWAY Kevin", P));
        assert!(matches("kevin_macleod", P));
        assert!(matches("album mp3", P));
        assert!(!matches("galway flac", P));
        assert!(!matches("galw", P), "words match whole, not as substrings");
        assert!(!matches("", P));
        assert!(!matches("   ", P));
    }

    #[test]
    fn exclusions() {
        assert!(!matches("galway -kevin", P));
        assert!(matches("galway -flac", P));
        assert!(!matches("galway -macleod-x", P), "-macleod-x excludes macleod and x");
        assert!(!matches("-flac", P), "needs one plain word");
        assert!(!matches("galway -galway", P));
        assert!(matches("galway -", P));
    }

    #[test]
    fn suffix_wildcards() {
        assert!(matches("kevin *way", P));
        assert!(matches("kevin *galway", P));
        assert!(!matches("kevin *gal", P));
        assert!(!matches("*way", P), "needs one plain word");
    }

    #[test]
    fn excluded_phrases() {
        let phrases = vec!["Kevin_Mac".to_string(), String::new()];
        assert!(contains_excluded_phrase(P, &phrases));
        assert!(!contains_excluded_phrase(r"Music\Other.mp3", &phrases));
        assert!(!contains_excluded_phrase(P, &[]));
    }

    #[test]
    fn punctuation_table_is_sorted() {
        for w in UNICODE_PUNCTUATION.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0);
        }
        assert!(is_punctuation('\\') && is_punctuation('«') && is_punctuation('\u{3001}'));
        assert!(!is_punctuation('a') && !is_punctuation('é') && !is_punctuation(' '));
    }

    proptest! {
        #[test]
        fn a_path_matches_its_own_words(path in "[A-Za-z0-9 _\\\\.-]{1,40}") {
            let w = words(&path);
            if !w.is_empty() {
                prop_assert!(matches(&w.join(" "), &path));
                let neg = format!("{} -{}", w[0], w[w.len() - 1]);
                prop_assert!(!matches(&neg, &path));
            }
        }

        #[test]
        fn never_panics(q in ".{0,30}", p in ".{0,60}") {
            let _ = matches(&q, &p);
        }
    }
}
