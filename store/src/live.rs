//! [`LiveIndex`]: every key the store holds, in key order, in memory, with when its
//! liveness last changed, so that counting a range (etcd's `count`, asked by every
//! paged list of kube-apiserver) walks a B-tree instead of reading each key's head
//! from RocksDB (k8s-mix: counting was 28% of the server's CPU).
//!
//! A key's entry says whether its newest version is live and the main revision at
//! which that last changed: its creation, or (for a deleted key) the revision of the
//! batch that deleted it. The recorded revision is never earlier than the true
//! change, so a key whose entry changed at or before `R` was in the same state at
//! `R` as now; a key whose entry changed after `R` is *unsure* and the caller reads
//! it at `R` (its head, see [`crate::view`]). A key live at any readable revision
//! `R` has an entry: it was created at or before `R`, and only compaction past its
//! deletion drops an entry ([`LiveIndex::forget_deleted_through`]), after which no
//! revision where it was live can be read.
//!
//! Invariants: the index is updated from each batch RocksDB has accepted, before the
//! batch's revision is published ([`crate::write::Pending::write`]), so a reader at a
//! published revision finds every change up to it; updates come only from the apply
//! path (under the store's apply lock), reads take the read lock only to walk the
//! range. Replacing the whole store (a snapshot) rebuilds it ([`LiveIndex::build`]).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::engine::Engine;
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::schema::{self, HeadBody, CF_HEAD};
use crate::view::Version;

/// A key's state now and the main revision at which it last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The newest version is live; the key was created at `since`.
    Live {
        /// The key's create revision.
        since: i64,
    },
    /// The newest version is a tombstone written at or before `at`.
    Deleted {
        /// The revision of the batch that deleted the key.
        at: i64,
    },
}

impl Liveness {
    /// The revision of the last change.
    fn changed(self) -> i64 {
        match self {
            Liveness::Live { since } => since,
            Liveness::Deleted { at } => at,
        }
    }
}

/// What [`LiveIndex::count`] found: keys it is sure of, and keys to read at the
/// revision because they changed after it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// Keys surely live at the revision.
    pub live: i64,
    /// Keys whose state at the revision the index cannot tell, in key order.
    pub unsure: Vec<Bytes>,
}

/// The entries a batch changes, given its newest versions (`None`: the key was
/// deleted) and that it took the store from revision `committed` to `revision`.
/// A key created before the batch and live at its end was live throughout (a
/// deletion in between would have given it a new create revision), so most updates
/// change nothing.
pub fn changes<'a>(
    newest: impl IntoIterator<Item = (&'a Bytes, &'a Option<Version>)>,
    committed: i64,
    revision: i64,
) -> impl Iterator<Item = (&'a Bytes, Liveness)> {
    newest.into_iter().filter_map(move |(key, version)| match version {
        Some(v) if v.record.create_revision <= committed => None,
        Some(v) => Some((key, Liveness::Live { since: v.record.create_revision })),
        None => Some((key, Liveness::Deleted { at: revision })),
    })
}

/// Keys [`LiveIndex::count`] walks per taking of the read lock: bounds how long the
/// apply path can wait for a count.
pub const KEYS_PER_LOCK: usize = 4096;

/// Every key with a version in the store and its [`Liveness`] (see the module doc).
#[derive(Debug, Default)]
pub struct LiveIndex {
    keys: BTreeMap<Box<[u8]>, Liveness>,
    /// Deleted keys in the order they were recorded, with the revision recorded, so
    /// compaction can drop them without walking every key.
    deleted: VecDeque<(i64, Box<[u8]>)>,
}

impl LiveIndex {
    /// The index of the store in `engine`, from every key's head. Run while nothing
    /// writes (opening or restoring the store), so no head changes under the scan.
    pub fn build(engine: &Engine) -> Result<LiveIndex> {
        let mut it = engine.iter_once(CF_HEAD);
        it.seek_to_first();
        let mut entries = Vec::new();
        while it.valid() {
            let encoded = it.key().expect("valid iterator");
            let (rev, body) =
                schema::parse_head_value(encoded, it.value().expect("valid iterator"))?.settled(encoded)?;
            let liveness = match body {
                _ if body.is_tombstone() => Liveness::Deleted { at: rev.main },
                HeadBody::Whole(record) => {
                    Liveness::Live { since: schema::KvRecord::decode_meta(encoded, record)?.create_revision }
                }
                HeadBody::Named(Some(meta)) => Liveness::Live { since: meta.create_revision },
                // A head of format 3 names its version without the create revision:
                // the version's own revision is a later, so still safe, change.
                HeadBody::Named(None) => Liveness::Live { since: rev.main },
            };
            entries.push((schema::decode_user_key(encoded)?.into_boxed_slice(), liveness));
            it.next();
        }
        it.status()?;
        let mut deleted: Vec<(i64, Box<[u8]>)> = entries
            .iter()
            .filter_map(|(key, l)| match l {
                Liveness::Deleted { at } => Some((*at, key.clone())),
                Liveness::Live { .. } => None,
            })
            .collect();
        deleted.sort_by_key(|(at, _)| *at);
        Ok(LiveIndex { keys: entries.into_iter().collect(), deleted: deleted.into() })
    }

    /// Records the changes of a batch RocksDB has just written (see [`changes`]).
    pub fn absorb<'a>(&mut self, changes: impl IntoIterator<Item = (&'a Bytes, Liveness)>) {
        for (key, now) in changes {
            match self.keys.get_mut(key.as_ref()) {
                Some(known) if *known == now => continue,
                Some(known) => *known = now,
                // Copied: the key may share its buffer with a whole request.
                None => {
                    self.keys.insert(Box::from(key.as_ref()), now);
                }
            }
            if let Liveness::Deleted { at } = now {
                self.deleted.push_back((at, Box::from(key.as_ref())));
            }
        }
    }

    /// Drops the keys deleted at or before `revision` (a compaction's): no revision
    /// where they were live can be read any more.
    pub fn forget_deleted_through(&mut self, revision: i64) {
        while let Some((at, _)) = self.deleted.front() {
            if *at > revision {
                break;
            }
            let (at, key) = self.deleted.pop_front().expect("front exists");
            // Recreated (or deleted again later) since: the entry is not this one.
            if self.keys.get(&key) == Some(&Liveness::Deleted { at }) {
                self.keys.remove(&key);
            }
        }
    }

    /// Counts the keys of `range` live at revision `at` that `index` is sure of, and
    /// lists the others (see [`Counted`]). The read lock is taken for
    /// [`KEYS_PER_LOCK`] keys at a time, so the apply path never waits long; between
    /// two steps the index may change, but only with changes after `at` (unsure
    /// either way) or compaction past `at` (which the reader checks after reading).
    pub fn count(index: &RwLock<LiveIndex>, range: &KeyRange, at: i64) -> Counted {
        let mut counted = Counted::default();
        if range.is_empty() {
            return counted;
        }
        let end = match range {
            KeyRange::Single(key) => Bound::Included(key.as_slice()),
            KeyRange::Bounded { end, .. } => Bound::Excluded(end.as_slice()),
            KeyRange::From(_) => Bound::Unbounded,
        };
        let mut from: Bound<Box<[u8]>> = Bound::Included(Box::from(range.start()));
        loop {
            let index = index.read();
            let mut keys = index.keys.range::<[u8], _>((from.as_ref().map(|k| &**k), end));
            let mut last = None;
            for (key, liveness) in keys.by_ref().take(KEYS_PER_LOCK) {
                if liveness.changed() > at {
                    counted.unsure.push(Bytes::copy_from_slice(key));
                } else if matches!(liveness, Liveness::Live { .. }) {
                    counted.live += 1;
                }
                last = Some(key);
            }
            match (keys.next(), last) {
                (Some(_), Some(last)) => from = Bound::Excluded(last.clone()),
                _ => return counted,
            }
        }
    }

    /// Keys in the index (live and recently deleted).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::Revision;
    use crate::schema::KvRecord;

    fn live(key: &str, created: i64, rev: i64) -> (Bytes, Option<Version>) {
        let record = KvRecord { tombstone: false, create_revision: created, version: 1, lease: 0, value: Bytes::new() };
        (
            Bytes::from(key.to_owned()),
            Some(Version { key: Bytes::from(key.to_owned()), rev: Revision { main: rev, sub: 0 }, record }),
        )
    }

    fn gone(key: &str) -> (Bytes, Option<Version>) {
        (Bytes::from(key.to_owned()), None)
    }

    fn absorb(index: &mut LiveIndex, batch: &[(Bytes, Option<Version>)], revision: i64) {
        index.absorb(changes(batch.iter().map(|(k, v)| (k, v)), revision - 1, revision));
    }

    fn all() -> KeyRange {
        KeyRange::new(b"\0", b"\0")
    }

    fn count(index: &LiveIndex, range: &KeyRange, at: i64) -> Counted {
        let index = RwLock::new(LiveIndex { keys: index.keys.clone(), deleted: index.deleted.clone() });
        LiveIndex::count(&index, range, at)
    }

    #[test]
    fn counts_across_many_takings_of_the_lock() {
        let mut index = LiveIndex::default();
        let keys: Vec<(Bytes, Option<Version>)> =
            (0..3 * KEYS_PER_LOCK + 7).map(|i| live(&format!("k{i:06}"), 2, 2)).collect();
        absorb(&mut index, &keys, 2);
        absorb(&mut index, &[gone("k000100"), gone(&format!("k{:06}", 2 * KEYS_PER_LOCK))], 3);
        let total = keys.len() as i64;
        assert_eq!(count(&index, &all(), 3), Counted { live: total - 2, unsure: vec![] });
        let at_2 = count(&index, &all(), 2);
        assert_eq!((at_2.live, at_2.unsure.len()), (total - 2, 2));
        let tail = KeyRange::new(format!("k{:06}", KEYS_PER_LOCK - 1).as_bytes(), b"\0");
        // From key KEYS_PER_LOCK - 1 on, one of them deleted.
        assert_eq!(count(&index, &tail, 3).live, total - (KEYS_PER_LOCK as i64 - 1) - 1);
    }

    #[test]
    fn counts_what_did_not_change_after_the_revision_and_lists_the_rest() {
        let mut index = LiveIndex::default();
        absorb(&mut index, &[live("a", 2, 2), live("b", 2, 2), live("c", 2, 2)], 2);
        absorb(&mut index, &[live("a", 2, 3)], 3); // an update: no change of liveness
        absorb(&mut index, &[gone("b"), live("d", 4, 4)], 4);
        assert_eq!(count(&index, &all(), 4), Counted { live: 3, unsure: vec![] });
        assert_eq!(count(&index, &all(), 3), Counted { live: 2, unsure: vec![Bytes::from("b"), Bytes::from("d")] });
        assert_eq!(count(&index, &KeyRange::new(b"b", b"d"), 3), Counted { live: 1, unsure: vec![Bytes::from("b")] });
        assert_eq!(count(&index, &KeyRange::new(b"c", b""), 4), Counted { live: 1, unsure: vec![] });
        assert_eq!(count(&index, &KeyRange::new(b"d", b"a"), 4), Counted::default());
    }

    #[test]
    fn a_key_created_and_deleted_in_one_batch_is_unsure_below_the_batch() {
        let mut index = LiveIndex::default();
        absorb(&mut index, &[gone("x")], 7);
        assert_eq!(count(&index, &all(), 6), Counted { live: 0, unsure: vec![Bytes::from("x")] });
        assert_eq!(count(&index, &all(), 7), Counted::default());
    }

    #[test]
    fn compaction_forgets_only_deletions_it_passed_and_not_recreated_keys() {
        let mut index = LiveIndex::default();
        absorb(&mut index, &[live("a", 2, 2), live("b", 2, 2), live("c", 2, 2)], 2);
        absorb(&mut index, &[gone("a"), gone("b")], 3);
        absorb(&mut index, &[live("a", 5, 5), gone("c")], 5);
        index.forget_deleted_through(4);
        // b is gone; a was recreated, so its entry stays; c was deleted after 4.
        assert_eq!(index.len(), 2);
        assert_eq!(count(&index, &all(), 5), Counted { live: 1, unsure: vec![] });
        index.forget_deleted_through(5);
        assert_eq!(index.len(), 1);
        assert!(index.deleted.is_empty());
    }
}
