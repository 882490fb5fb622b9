//! The watch hub: delivers the events of every committed revision to watchers.
//!
//! Guarantees (etcd's): for each watcher, events arrive in revision order, never
//! duplicated, never skipped, and all events of one revision together. Applying a
//! write never blocks on a watcher: the hub only `try_send`s to a session's bounded
//! channel; a watcher whose session cannot take an event falls out of the hub
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
