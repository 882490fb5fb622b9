//! The watch hub: delivers the events of every committed revision to watchers.
//!
//! Guarantees (etcd's): for each watcher, events arrive in revision order, never
//! duplicated, never skipped, and all events of one revision together. Applying a
//! write never blocks on a watcher: the hub only queues events in a session's bounded
//! queue; a watcher whose session cannot take an event falls out of the hub
//! ("unsynced") and its session replays the missed revisions from storage before
//! rejoining, under the hub's lock, at exactly the next revision.
//!
//! * [`hub`]: the synced watchers and the publication of each revision.
//! * [`session`]: one client stream's watchers, catch-up from storage, progress.

pub mod hub;
pub mod session;

use bytes::Bytes;
use strake_proto::mvccpb::{event::EventType, Event};

use crate::key_range::KeyRange;
use crate::revision::Revision;

/// The events of one revision, as the apply path hands them to the hub.
///
/// Invariant: `deferred_prev` is in event order, and each [`DeferredPrev`] names an
/// event of `events` whose `prev_kv` is complete except for its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevisionEvents {
    /// The revision the events were written at.
    pub revision: i64,
    /// The events, in the order the transaction made them.
    pub events: Vec<Event>,
    /// Events whose previous value was not read when they were applied.
    pub deferred_prev: Vec<DeferredPrev>,
}

/// An event whose `prev_kv` lacks its value: the previous version was a long record
/// its head only names, and a put needs only its metadata. The hub reads the value
/// (the version at `rev` of the event's key) only for a watcher that asked for
/// `prev_kv`, as etcd reads it only then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredPrev {
    /// Index of the event in [`RevisionEvents::events`].
    pub event: usize,
    /// Where the previous version is stored.
    pub rev: Revision,
}

/// What a watcher asks for.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The watched keys.
    pub range: KeyRange,
    /// First revision to deliver (resolved: never 0).
    pub start_revision: i64,
    /// Include the previous version in each event.
    pub prev_kv: bool,
    /// Drop PUT events.
    pub no_put: bool,
    /// Drop DELETE events.
    pub no_delete: bool,
    /// The client wants periodic progress notifications.
    pub progress_notify: bool,
}

impl WatchSpec {
    /// Whether `event` is for this watcher (range and filters).
    pub fn wants(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        let is_put = event.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        self.range.contains(&kv.key)
    }

    /// The event as this watcher sees it (without `prev_kv` unless asked).
    pub fn shape(&self, event: &Event) -> Event {
        let mut e = event.clone();
        if !self.prev_kv {
            e.prev_kv = None;
        }
        e
    }
}

/// A message for a session's consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionMessage {
    /// Events for one watcher, of one or more whole revisions, in order.
    Events {
        /// The watcher.
        watch_id: i64,
        /// The events.
        events: Vec<Event>,
    },
    /// The watcher was cancelled because its next revision is compacted.
    Compacted {
        /// The watcher.
        watch_id: i64,
        /// The store's compaction revision.
        compact_revision: i64,
    },
    /// Every watcher of the session has received every event up to `revision`
    /// (answer to a progress request; etcd sends it with watch_id -1).
    Progress {
        /// The revision all watchers have reached.
        revision: i64,
    },
    /// One watcher has received every event up to `revision` (progress_notify).
    WatcherProgress {
        /// The watcher.
        watch_id: i64,
        /// The revision it has reached.
        revision: i64,
    },
}

/// Key used to index single-key watchers.
pub(crate) fn single_key(range: &KeyRange) -> Option<Bytes> {
    match range {
        KeyRange::Single(k) => Some(Bytes::copy_from_slice(k)),
        _ => None,
    }
}
