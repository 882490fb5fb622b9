//! One client watch stream: its watchers, the catch-up of unsynced watchers from
//! storage, and progress notifications.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::hub::{SyncedWatcher, WatcherKey};
use super::{SessionMessage, WatchSpec};
use crate::error::StoreError;
use crate::Store;

/// Messages a session buffers before its watchers fall back to catch-up.
pub const SESSION_QUEUE_CAPACITY: usize = 1024;
/// Most events one catch-up step reads from storage (whole revisions are kept together).
pub const CATCH_UP_EVENTS_MAX: usize = 1000;

/// The part of a session the hub sees.
///
/// The hub queues messages with [`SessionShared::offer`], which does not wake the
/// session's task: the hub wakes every session it offered a revision to once the
/// revision is offered ([`SessionShared::wake`]), from the server's runtime when
/// one is installed (see [`super::hub::WatchHub::wake_sessions_on`]).
pub(crate) struct SessionShared {
    pub id: u64,
    queue: Mutex<Queue>,
    /// Watchers that fell behind, with the next revision each must receive.
    unsynced: Mutex<Vec<(i64, i64)>>,
    notify: Notify,
}

#[derive(Default)]
struct Queue {
    messages: std::collections::VecDeque<SessionMessage>,
    /// The session is gone: nothing more is accepted.
    closed: bool,
}

/// Why [`SessionShared::offer`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OfferError {
    /// [`SESSION_QUEUE_CAPACITY`] messages are waiting.
    Full,
    /// The session has ended.
    Closed,
}

impl SessionShared {
    fn new(id: u64) -> SessionShared {
        SessionShared {
            id,
            queue: Mutex::new(Queue::default()),
            unsynced: Mutex::new(Vec::new()),
            notify: Notify::new(),
        }
    }

    pub fn mark_unsynced(&self, watch_id: i64, next_revision: i64) {
        self.unsynced.lock().push((watch_id, next_revision));
        self.notify.notify_one();
    }

    /// Queues `msg` without waking the session (see [`SessionShared::wake`]).
    pub fn offer(&self, msg: SessionMessage) -> Result<(), OfferError> {
        let mut queue = self.queue.lock();
        if queue.closed {
            return Err(OfferError::Closed);
        }
        if queue.messages.len() >= SESSION_QUEUE_CAPACITY {
            return Err(OfferError::Full);
        }
        queue.messages.push_back(msg);
        Ok(())
    }

    /// Wakes the session's task to take what was offered.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<SessionMessage> {
        self.queue.lock().messages.pop_front()
    }

    fn is_empty(&self) -> bool {
        self.queue.lock().messages.is_empty()
    }

    fn close(&self) {
        let mut queue = self.queue.lock();
        queue.closed = true;
        queue.messages.clear();
    }
}

/// Why a watcher could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchCreateError {
    /// The client chose a watch ID already in use on this stream.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    /// `range_end <= key`.
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
}

/// The watchers of one client stream. Owned by the task serving that stream.
pub struct WatchSession {
    shared: Arc<SessionShared>,
    store: Store,
    watchers: HashMap<i64, Arc<WatchSpec>>,
    next_auto_id: i64,
    progress_requested: bool,
    watcher_progress_requested: bool,
}

impl std::fmt::Debug for WatchSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSession").field("id", &self.shared.id).field("watchers", &self.watchers.len()).finish()
    }
}

impl WatchSession {
    /// Opens a session on `store`.
    pub fn new(store: Store) -> WatchSession {
        let shared = Arc::new(SessionShared::new(store.hub().next_session_id()));
        WatchSession {
            shared,
            store,
            watchers: HashMap::new(),
            next_auto_id: 0,
            progress_requested: false,
            watcher_progress_requested: false,
        }
    }

    /// Number of watchers on this stream.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    /// Whether the stream has no watcher.
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Creates a watcher. `watch_id == 0` picks the next free ID (etcd's auto IDs
    /// count from 0). `spec.start_revision == 0` means "after the current revision".
    /// Returns the watcher's ID and the revision the stream is at.
    pub fn create(&mut self, watch_id: i64, mut spec: WatchSpec) -> Result<(i64, i64), WatchCreateError> {
        if spec.range.is_empty() {
            return Err(WatchCreateError::EmptyRange);
        }
        let id = if watch_id != 0 {
            if self.watchers.contains_key(&watch_id) {
                return Err(WatchCreateError::DuplicateId);
            }
            watch_id
        } else {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id += 1;
            self.next_auto_id - 1
        };
        let hub = self.store.hub();
        let mut state = hub.state.lock();
        let published = state.published;
        if spec.start_revision <= 0 {
            spec.start_revision = published + 1;
        }
        let spec = Arc::new(spec);
        self.watchers.insert(id, spec.clone());
        if spec.start_revision > published {
            state.insert(
                WatcherKey { session: self.shared.id, watch_id: id },
                SyncedWatcher { session: self.shared.clone(), spec: spec.clone() },
            );
        } else {
            self.shared.unsynced.lock().push((id, spec.start_revision));
        }
        Ok((id, published))
    }

    /// Cancels a watcher; `false` if there is no such watcher.
    pub fn cancel(&mut self, watch_id: i64) -> bool {
        if self.watchers.remove(&watch_id).is_none() {
            return false;
        }
        self.store.hub().state.lock().remove(&WatcherKey { session: self.shared.id, watch_id });
        self.shared.unsynced.lock().retain(|(id, _)| *id != watch_id);
        true
    }

    /// Asks for a [`SessionMessage::Progress`] once every watcher is synced.
    pub fn request_progress(&mut self) {
        self.progress_requested = true;
        self.shared.notify.notify_one();
    }

    /// Asks for a [`SessionMessage::WatcherProgress`] for every synced watcher that
    /// wants progress notifications.
    pub fn request_watcher_progress(&mut self) {
        self.watcher_progress_requested = true;
        self.shared.notify.notify_one();
    }

    /// The next message for the client, in order. Cancel-safe.
    pub async fn next(&mut self) -> SessionMessage {
        loop {
            while let Some(msg) = self.shared.pop() {
                if self.is_live(&msg) {
                    return msg;
                }
            }
            if let Some(msg) = self.catch_up_step() {
                return msg;
            }
            if let Some(msg) = self.progress_if_synced() {
                return msg;
            }
            // Every producer (an offer, a watcher falling behind, a progress request)
            // notifies after its change; a notification sent while nobody waits is
            // kept for the next wait.
            self.shared.notify.notified().await;
        }
    }

    fn is_live(&self, msg: &SessionMessage) -> bool {
        match msg {
            SessionMessage::Events { watch_id, .. }
            | SessionMessage::Compacted { watch_id, .. }
            | SessionMessage::WatcherProgress { watch_id, .. } => self.watchers.contains_key(watch_id),
            SessionMessage::Progress { .. } => true,
        }
    }

    /// Replays history for the first unsynced watcher: one bounded chunk of events,
    /// or, when it has caught up, moves it back into the hub.
    fn catch_up_step(&mut self) -> Option<SessionMessage> {
        loop {
            let (watch_id, next) = *self.shared.unsynced.lock().first()?;
            let Some(spec) = self.watchers.get(&watch_id).cloned() else {
                self.shared.unsynced.lock().retain(|(id, _)| *id != watch_id);
                continue;
            };
            let target = self.store.hub().published();
            if next <= target {
                match self.store.history(&spec.range, next, target, CATCH_UP_EVENTS_MAX, spec.prev_kv) {
                    Ok(chunk) => {
                        self.set_next(watch_id, chunk.scanned_to + 1);
                        let events: Vec<_> =
                            chunk.events.iter().filter(|e| spec.wants(e)).map(|e| spec.shape(e)).collect();
                        if !events.is_empty() {
                            return Some(SessionMessage::Events { watch_id, events });
                        }
                        continue;
                    }
                    Err(StoreError::Compacted) => {
                        self.shared.unsynced.lock().retain(|(id, _)| *id != watch_id);
                        self.watchers.remove(&watch_id);
                        return Some(SessionMessage::Compacted {
                            watch_id,
                            compact_revision: self.store.compact_revision(),
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, watch_id, "watch catch-up failed; retrying");
                        return None;
                    }
                }
            }
            // Caught up to `target`: rejoin the hub unless something was published
            // since. `next` may lie beyond `published + 1` (a future start revision,
            // or after a restore): the hub only offers revisions from the start on.
            let hub = self.store.hub();
            let mut state = hub.state.lock();
            if state.published >= next {
                continue;
            }
            self.shared.unsynced.lock().retain(|(id, _)| *id != watch_id);
            state.insert(
                WatcherKey { session: self.shared.id, watch_id },
                SyncedWatcher { session: self.shared.clone(), spec },
            );
        }
    }

    fn set_next(&self, watch_id: i64, next: i64) {
        if let Some(entry) = self.shared.unsynced.lock().iter_mut().find(|(id, _)| *id == watch_id) {
            entry.1 = next;
        }
    }

    /// Emits requested progress once all watchers are synced and every event already
    /// offered to them has been taken from the queue.
    fn progress_if_synced(&mut self) -> Option<SessionMessage> {
        if !self.progress_requested && !self.watcher_progress_requested {
            return None;
        }
        let hub = self.store.hub();
        let state = hub.state.lock();
        if !self.shared.is_empty() || !self.shared.unsynced.lock().is_empty() {
            return None;
        }
        let revision = state.published;
        drop(state);
        if self.progress_requested {
            self.progress_requested = false;
            return Some(SessionMessage::Progress { revision });
        }
        self.watcher_progress_requested = false;
        let mut ids: Vec<i64> = self.watchers.iter().filter(|(_, s)| s.progress_notify).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        // One message per watcher; queue the rest behind the first.
        let first = ids.first().copied()?;
        for id in ids.into_iter().skip(1) {
            let _ = self.shared.offer(SessionMessage::WatcherProgress { watch_id: id, revision });
        }
        Some(SessionMessage::WatcherProgress { watch_id: first, revision })
    }
}

impl Drop for WatchSession {
    fn drop(&mut self) {
        self.shared.close();
        let hub = self.store.hub();
        let mut state = hub.state.lock();
        for id in self.watchers.keys() {
            state.remove(&WatcherKey { session: self.shared.id, watch_id: *id });
        }
    }
}
