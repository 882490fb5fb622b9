//! The set of synced watchers and the publication of each committed revision.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strake_proto::mvccpb::Event;
use tokio::sync::mpsc::error::TrySendError;

use super::session::SessionShared;
use super::{single_key, RevisionEvents, SessionMessage, WatchSpec};
use crate::error::Result;
use crate::revision::Revision;

/// Deliveries so far (used only to pace injected bugs).
static DELIVERIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Identifies a watcher across the hub: its session and its watch ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct WatcherKey {
    pub session: u64,
    pub watch_id: i64,
}

pub(crate) struct SyncedWatcher {
    pub session: Arc<SessionShared>,
    pub spec: Arc<WatchSpec>,
}

#[derive(Default)]
pub(crate) struct HubState {
    /// The newest revision published; every synced watcher has been offered every
    /// event up to it.
    pub published: i64,
    pub watchers: HashMap<WatcherKey, SyncedWatcher>,
    pub by_key: HashMap<Bytes, Vec<WatcherKey>>,
    pub ranged: Vec<WatcherKey>,
}

impl HubState {
    pub fn insert(&mut self, key: WatcherKey, w: SyncedWatcher) {
        match single_key(&w.spec.range) {
            Some(k) => self.by_key.entry(k).or_default().push(key),
            None => self.ranged.push(key),
        }
        self.watchers.insert(key, w);
    }

    pub fn remove(&mut self, key: &WatcherKey) -> Option<SyncedWatcher> {
        let w = self.watchers.remove(key)?;
        match single_key(&w.spec.range) {
            Some(k) => {
                if let Some(list) = self.by_key.get_mut(&k) {
                    list.retain(|x| x != key);
                    if list.is_empty() {
                        self.by_key.remove(&k);
                    }
                }
            }
            None => self.ranged.retain(|x| x != key),
        }
        Some(w)
    }
}

/// Fan-out of committed revisions to watchers. Cheap to share (`Arc` inside).
#[derive(Clone, Default)]
pub struct WatchHub {
    pub(crate) state: Arc<Mutex<HubState>>,
    next_session: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("WatchHub").field("published", &s.published).field("synced", &s.watchers.len()).finish()
    }
}

impl WatchHub {
    /// A hub whose history ends at `revision`.
    pub fn new(revision: i64) -> WatchHub {
        let hub = WatchHub::default();
        hub.state.lock().published = revision;
        hub
    }

    /// The newest published revision.
    pub fn published(&self) -> i64 {
        self.state.lock().published
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of synced watchers (metrics).
    pub fn synced_watchers(&self) -> usize {
        self.state.lock().watchers.len()
    }

    /// Offers the events of one revision (all of one transaction) to every synced
    /// watcher. Never blocks: a watcher whose session is full becomes unsynced.
    ///
    /// A deferred previous value is read with `prev_value` (key, revision of the
    /// previous version) once, and only if a watcher asked for `prev_kv`; if the read
    /// fails, those watchers become unsynced and replay the revision from storage.
    pub fn publish(&self, published: &RevisionEvents, prev_value: &dyn Fn(&[u8], Revision) -> Result<Bytes>) {
        let RevisionEvents { revision, events, deferred_prev } = published;
        let revision = *revision;
        let mut state = self.state.lock();
        debug_assert!(revision > state.published, "revisions are published in order");
        state.published = revision;
        if events.is_empty() || state.watchers.is_empty() {
            return;
        }
        // Events completed with their deferred previous value (`None`: the read failed).
        let mut completed: HashMap<usize, Option<Event>> = HashMap::new();
        let mut complete = |index: usize, rev: Revision| -> Option<Event> {
            completed
                .entry(index)
                .or_insert_with(|| {
                    let mut event = events[index].clone();
                    let prev = event.prev_kv.as_mut().expect("a deferred event has a prev_kv");
                    match prev_value(&prev.key, rev) {
                        Ok(value) => prev.value = value,
                        Err(error) => {
                            tracing::warn!(%error, revision, "reading a previous value for watchers failed");
                            return None;
                        }
                    }
                    Some(event)
                })
                .clone()
        };
        let mut matched: HashMap<WatcherKey, Vec<Event>> = HashMap::new();
        let mut failed = Vec::new();
        // In event order (see `RevisionEvents`): one pass, not a search per event (a
        // lease revocation may defer thousands).
        let mut deferred_next = deferred_prev.iter().peekable();
        for (index, event) in events.iter().enumerate() {
            let deferred = deferred_next.next_if(|d| d.event == index);
            let Some(kv) = &event.kv else { continue };
            let candidates = state.by_key.get(&kv.key).into_iter().flatten().chain(state.ranged.iter());
            for key in candidates {
                let w = &state.watchers[key];
                if revision < w.spec.start_revision || !w.spec.wants(event) {
                    continue;
                }
                let shaped = match deferred {
                    Some(d) if w.spec.prev_kv => complete(index, d.rev),
                    _ => Some(w.spec.shape(event)),
                };
                match shaped {
                    Some(e) => matched.entry(*key).or_default().push(e),
                    None => failed.push(*key),
                }
            }
        }
        for key in failed {
            // Nothing of this revision reached it: it replays the revision from storage.
            matched.remove(&key);
            if let Some(w) = state.remove(&key) {
                w.session.mark_unsynced(key.watch_id, revision);
            }
        }
        for (key, events) in matched {
            let w = &state.watchers[&key];
            // Injected bugs: drop or repeat one delivery in fifty.
            let nth = DELIVERIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 50 == 49;
            let armed = |name: &str| {
                nth && (|| {
                    fail::fail_point!(name, |_| true);
                    false
                })()
            };
            if armed("watch-skip-event") {
                continue;
            }
            if armed("watch-duplicate-event") {
                let _ =
                    w.session.tx.try_send(SessionMessage::Events { watch_id: key.watch_id, events: events.clone() });
            }
            match w.session.tx.try_send(SessionMessage::Events { watch_id: key.watch_id, events }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    let w = state.remove(&key).expect("present");
                    w.session.mark_unsynced(key.watch_id, revision);
                }
                Err(TrySendError::Closed(_)) => {
                    state.remove(&key);
                }
            }
        }
    }

    /// Moves every synced watcher back to its session's catch-up path, e.g. after
    /// the store was replaced by a snapshot. Their next revision is `published + 1`.
    pub fn unsync_all(&self, new_published: i64) {
        let mut state = self.state.lock();
        let next = state.published + 1;
        let keys: Vec<WatcherKey> = state.watchers.keys().copied().collect();
        for key in keys {
            if let Some(w) = state.remove(&key) {
                w.session.mark_unsynced(key.watch_id, next.max(w.spec.start_revision));
            }
        }
        state.published = new_published;
    }
}
