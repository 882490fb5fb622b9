//! The set of synced watchers and the publication of each committed revision.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strake_proto::mvccpb::Event;
use tokio::sync::mpsc;

use super::session::{OfferError, SessionShared};
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

/// Sessions to wake after a revision was offered to them.
type WakeBatch = Vec<Arc<SessionShared>>;

/// Fan-out of committed revisions to watchers. Cheap to share (`Arc` inside).
#[derive(Clone, Default)]
pub struct WatchHub {
    pub(crate) state: Arc<Mutex<HubState>>,
    next_session: Arc<std::sync::atomic::AtomicU64>,
    /// Where the sessions offered a revision are woken (see [`WatchHub::wake_sessions_on`]);
    /// unset, the publisher wakes them itself.
    waker: Arc<std::sync::OnceLock<mpsc::UnboundedSender<WakeBatch>>>,
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

    /// Wakes the sessions offered each revision from a task on `runtime`, the one
    /// their streams run on, rather than from the publisher's thread. The publisher
    /// (the apply thread) then hands over one batch per revision, and the task's
    /// wake-ups are local to the runtime. Waking each watch stream from the apply
    /// thread cost a cross-thread wake-up each (an eventfd `write` when a worker
    /// slept): 9–11% more server CPU with 100 watchers, a fifth fewer events
    /// delivered with 1000 (BENCHMARKS.md, session 18).
    /// Only the wake-up moves: which watcher gets which events, and whether it falls
    /// behind, is still decided when the revision is published. Later calls are
    /// ignored.
    pub fn wake_sessions_on(&self, runtime: &tokio::runtime::Handle) {
        let (tx, mut rx) = mpsc::unbounded_channel::<WakeBatch>();
        if self.waker.set(tx).is_err() {
            return;
        }
        runtime.spawn(async move {
            while let Some(batch) = rx.recv().await {
                for session in batch {
                    session.wake();
                }
            }
        });
    }

    fn wake(&self, batch: WakeBatch) {
        if batch.is_empty() {
            return;
        }
        let batch = match self.waker.get() {
            Some(tx) => match tx.send(batch) {
                Ok(()) => return,
                Err(mpsc::error::SendError(batch)) => batch,
            },
            None => batch,
        };
        for session in batch {
            session.wake();
        }
    }

    /// Number of synced watchers (metrics).
    pub fn synced_watchers(&self) -> usize {
        self.state.lock().watchers.len()
    }

    /// Offers the events of one revision (all of one transaction) to every synced
    /// watcher, then wakes their sessions. Never blocks: a watcher whose session is
    /// full becomes unsynced.
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
        let mut woken: WakeBatch = Vec::with_capacity(matched.len());
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
                let _ = w.session.offer(SessionMessage::Events { watch_id: key.watch_id, events: events.clone() });
            }
            match w.session.offer(SessionMessage::Events { watch_id: key.watch_id, events }) {
                Ok(()) => woken.push(w.session.clone()),
                Err(OfferError::Full) => {
                    let w = state.remove(&key).expect("present");
                    w.session.mark_unsynced(key.watch_id, revision);
                }
                Err(OfferError::Closed) => {
                    state.remove(&key);
                }
            }
        }
        drop(state);
        // A session with several watchers is woken once.
        woken.sort_unstable_by_key(|s| s.id);
        woken.dedup_by_key(|s| s.id);
        self.wake(woken);
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
