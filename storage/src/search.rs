//! Substring search of Chinese text by character bigrams.
//!
//! Text is normalised (lowercase, whitespace removed) and split into overlapping two-character
//! grams; a query of two or more characters matches rows holding every gram of the query, and the
//! candidates are then confirmed with a `LIKE` on the normalised text. A one-character query falls
//! back to the `LIKE` scan. This finds any substring of length ≥ 2 (two-character names
//! included) without a full scan, on both engines.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bound on grams used to look a query up (long queries use an even spread of grams, and
/// the `LIKE` confirms the rest).
pub const MAX_QUERY_GRAMS: usize = 6;

/// Normalise text for indexing and matching: lowercase, no whitespace.
pub fn normalize(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// The distinct bigrams of the normalised text of each field, for the index.
pub fn index_grams<'a>(fields: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in fields {
        let chars: Vec<char> = normalize(f).chars().collect();
        for w in chars.windows(2) {
            out.insert(w.iter().collect());
        }
    }
    out
}

/// The grams to look a normalised query up with (empty for queries under two characters).
pub fn query_grams(query: &str) -> Vec<String> {
    let chars: Vec<char> = query.chars().collect();
    if chars.len() < 2 {
        return Vec::new();
    }
    let all: Vec<String> = chars.windows(2).map(|w| w.iter().collect()).collect();
    let mut uniq: Vec<String> = Vec::new();
    for g in all {
        if !uniq.contains(&g) {
            uniq.push(g);
        }
    }
    if uniq.len() <= MAX_QUERY_GRAMS {
        return uniq;
    }
    // An even spread that always includes the first and the last gram.
    let n = uniq.len();
    (0..MAX_QUERY_GRAMS)
        .map(|i| uniq[i * (n - 1) / (MAX_QUERY_GRAMS - 1)].clone())
        .collect()
}

/// A `LIKE` pattern matching `query` as a substring, with `\` escaping `%`, `_` and `\`.
pub fn like_pattern(query: &str) -> String {
    let mut p = String::with_capacity(query.len() + 2);
    p.push('%');
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// How long a counted total or a gram frequency is reused.
pub const COUNT_TTL: Duration = Duration::from_secs(30);

/// Totals of recent searches and posting-list sizes of recent grams, reused for
/// [`COUNT_TTL`] and dropped whenever this node writes the registry. Counting every match of a
/// broad query (thousands of rows) is the expensive part of a search; the page itself is read
/// fresh every time. Another node's writes show in a total within [`COUNT_TTL`].
#[derive(Debug, Default)]
pub struct CountCache {
    entries: Mutex<HashMap<String, (i64, Instant)>>,
}

impl CountCache {
    /// Most entries kept.
    const MAX_ENTRIES: usize = 10_000;

    /// A fresh cached count for `key`.
    pub fn get(&self, key: &str) -> Option<i64> {
        let m = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(key)
            .filter(|(_, at)| at.elapsed() < COUNT_TTL)
            .map(|(n, _)| *n)
    }

    /// Remember a count.
    pub fn put(&self, key: String, n: i64) {
        let mut m = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= Self::MAX_ENTRIES {
            m.retain(|_, (_, at)| at.elapsed() < COUNT_TTL);
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert(key, (n, Instant::now()));
    }

    /// Forget everything (after a write).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigrams_cover_two_character_names() {
        let g = index_grams(["上海 华新钢铁", "91310000132200821H"]);
        assert!(g.contains("华新"));
        assert!(g.contains("海华"));
        assert!(g.contains("91"));
        assert!(g.contains("1h"));
        assert_eq!(query_grams("华新"), vec!["华新".to_string()]);
        assert!(query_grams("华").is_empty());
    }

    #[test]
    fn long_queries_are_bounded() {
        let q = normalize("上海市浦东新区某某某化工有限公司");
        let g = query_grams(&q);
        assert_eq!(g.len(), MAX_QUERY_GRAMS);
        assert_eq!(g[0], "上海");
        assert_eq!(g.last().unwrap(), "公司");
    }

    #[test]
    fn like_escapes_wildcards() {
        assert_eq!(like_pattern("a%b_"), "%a\\%b\\_%");
    }
}
