//! The anonymous list pages last rendered, kept by what they were made from: a page that
//! every anonymous reader is sent is rendered once for each version of the data, not once
//! for each reader. Bounded in bytes (the oldest page goes first); 0 keeps nothing.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::body::Bytes;

/// What a page was made from: which page, the data's version and the query (what its
/// `ETag` is made from, in full, not hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey(String);

impl PageKey {
    pub fn new(flavour: &str, version: &str, query: &str) -> PageKey {
        PageKey(format!("{flavour}\u{1f}{version}\u{1f}{query}"))
    }
}

/// The pages, newest last.
pub struct PageCache {
    pages: Mutex<VecDeque<(PageKey, Bytes)>>,
    budget: usize,
}

impl PageCache {
    /// At most `budget` bytes of pages.
    pub fn new(budget: usize) -> PageCache {
        PageCache {
            pages: Mutex::new(VecDeque::new()),
            budget,
        }
    }

    pub fn get(&self, key: &PageKey) -> Option<Bytes> {
        let pages = self.pages.lock().ok()?;
        pages
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, page)| page.clone())
    }

    /// Keep `page` (unless it alone is over the budget), dropping the oldest pages to stay
    /// within it.
    pub fn put(&self, key: PageKey, page: Bytes) {
        if page.len() > self.budget {
            return;
        }
        let Ok(mut pages) = self.pages.lock() else {
            return;
        };
        pages.retain(|(k, _)| *k != key);
        let mut used: usize = pages.iter().map(|(_, p)| p.len()).sum::<usize>() + page.len();
        while used > self.budget {
            match pages.pop_front() {
                Some((_, dropped)) => used -= dropped.len(),
                None => break,
            }
        }
        pages.push_back((key, page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_found_by_version_and_query_and_bounded_in_bytes() {
        let cache = PageCache::new(10);
        let (a, b, c) = (
            PageKey::new("page", "v1", "page 1"),
            PageKey::new("page", "v2", "page 1"),
            PageKey::new("page", "v1", "page 2"),
        );
        cache.put(a.clone(), Bytes::from_static(b"aaaa"));
        cache.put(b.clone(), Bytes::from_static(b"bbbb"));
        assert_eq!(cache.get(&a).as_deref(), Some(&b"aaaa"[..]));
        assert_eq!(cache.get(&b).as_deref(), Some(&b"bbbb"[..]));
        assert_eq!(cache.get(&c), None, "another query");
        cache.put(c.clone(), Bytes::from_static(b"cccc"));
        assert_eq!(
            cache.get(&a),
            None,
            "the oldest went to stay within 10 bytes"
        );
        assert!(cache.get(&b).is_some() && cache.get(&c).is_some());
        cache.put(a.clone(), Bytes::from_static(b"too large a page"));
        assert_eq!(cache.get(&a), None, "a page over the budget is not kept");
        let off = PageCache::new(0);
        off.put(a.clone(), Bytes::from_static(b"x"));
        assert_eq!(off.get(&a), None, "0 keeps nothing");
    }
}
