//! [`LatestCache`]: the newest version of recently written keys, so the apply path
//! reads a key's previous version (for create revision, version, lease and the
//! event's `prev_kv`) from memory instead of RocksDB (one point read of the key's
//! head, two for a value the head only names).
//!
//! The apply path uses it under the store's apply lock; single-key reads peek with
//! `try_lock` (`View::with_latest`). It is filled only
//! from batches RocksDB has accepted ([`LatestCache::absorb`]), so every entry is the
//! key's newest version at the store's revision: writes are the only way a key's
//! newest version changes. Compaction never removes a key's live version, and the
//! heads it drops belong to deleted keys, which the cache holds as `None` (absent
//! either way). Replacing the whole store (a snapshot) must [`LatestCache::clear`] it.

use std::collections::HashMap;

use bytes::Bytes;

use crate::view::Version;

/// Bytes an entry costs beyond its key and value (map slot, `Version`, `Bytes` headers).
const ENTRY_OVERHEAD: usize = 120;

/// The newest version (`None`: deleted) of recently written keys, bounded in memory.
///
/// Two generations give an approximate LRU at O(1) per operation: writes go to
/// `young`; when `young` holds half the budget, it becomes `old` and the previous
/// `old` is dropped. A key is therefore forgotten only after at least half the
/// budget's worth of other keys was written since its last write.
#[derive(Debug)]
pub struct LatestCache {
    young: HashMap<Bytes, Option<Version>>,
    old: HashMap<Bytes, Option<Version>>,
    young_bytes: usize,
    generation_bytes: usize,
}

impl LatestCache {
    /// A cache holding about `budget_bytes` of keys and values (0 disables it).
    pub fn new(budget_bytes: usize) -> LatestCache {
        LatestCache { young: HashMap::new(), old: HashMap::new(), young_bytes: 0, generation_bytes: budget_bytes / 2 }
    }

    /// The newest version of `key` if the cache knows it: `Some(None)` means the key
    /// has no live version.
    pub fn get(&self, key: &[u8]) -> Option<Option<Version>> {
        self.young.get(key).or_else(|| self.old.get(key)).cloned()
    }

    /// Records the newest versions of a batch RocksDB has just written.
    pub fn absorb<'a>(&mut self, newest: impl IntoIterator<Item = (&'a Bytes, &'a Option<Version>)>) {
        if self.generation_bytes == 0 {
            return;
        }
        for (key, version) in newest {
            self.old.remove(key.as_ref());
            let cost = key.len() + version.as_ref().map_or(0, |v| v.record.value.len()) + ENTRY_OVERHEAD;
            if self.young.insert(key.clone(), version.clone()).is_none() {
                self.young_bytes += cost;
            }
            if self.young_bytes >= self.generation_bytes {
                self.old = std::mem::take(&mut self.young);
                self.young_bytes = 0;
            }
        }
    }

    /// Forgets everything (the store's content was replaced).
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
        self.young_bytes = 0;
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::Revision;
    use crate::schema::KvRecord;

    fn version(key: &str, main: i64, value_len: usize) -> (Bytes, Option<Version>) {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let record = KvRecord {
            tombstone: false,
            create_revision: main,
            version: 1,
            lease: 0,
            value: Bytes::from(vec![b'v'; value_len]),
        };
        (key.clone(), Some(Version { key, rev: Revision { main, sub: 0 }, record }))
    }

    #[test]
    fn newest_write_wins_and_deletions_are_remembered() {
        let mut cache = LatestCache::new(1 << 20);
        let (k, v1) = version("a", 2, 10);
        cache.absorb([(&k, &v1)]);
        let (_, v2) = version("a", 3, 10);
        cache.absorb([(&k, &v2)]);
        assert_eq!(cache.get(b"a"), Some(v2));
        cache.absorb([(&k, &None)]);
        assert_eq!(cache.get(b"a"), Some(None));
        assert_eq!(cache.get(b"b"), None);
    }

    #[test]
    fn memory_stays_within_the_budget_and_recent_keys_survive() {
        let budget = 64 * 1024;
        let mut cache = LatestCache::new(budget);
        for i in 0..10_000 {
            let (k, v) = version(&format!("key{i:05}"), i + 2, 100);
            cache.absorb([(&k, &v)]);
        }
        let per_entry = ENTRY_OVERHEAD + 8 + 100;
        assert!(cache.len() * per_entry <= budget + per_entry, "{} entries", cache.len());
        assert!(cache.get(b"key09999").is_some(), "the newest key was evicted");
        assert!(cache.get(b"key00000").is_none(), "the oldest key was kept");
    }

    #[test]
    fn a_zero_budget_keeps_nothing_and_clear_forgets() {
        let (k, v) = version("a", 2, 1);
        let mut off = LatestCache::new(0);
        off.absorb([(&k, &v)]);
        assert!(off.is_empty());
        let mut on = LatestCache::new(1 << 20);
        on.absorb([(&k, &v)]);
        on.clear();
        assert_eq!(on.get(b"a"), None);
    }
}
