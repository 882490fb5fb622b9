//! Bounds the Raft log in bytes as well as in entries.
//!
//! openraft snapshots every `snapshot_count` entries and keeps
//! `snapshot_catchup_entries` behind each snapshot: both are counts of entries, and an
//! entry is a batch of up to 1024 writes or 4 MiB. Under a bulk load those counts held
//! far more than the store: a 1M-key load left a 293 MiB log beside a 54 MiB store,
//! and 5,000 catch-up entries of 1 MiB batches are 5 GiB. This task, on every member,
//! also snapshots once the entries after the last snapshot hold more than
//! [`LogRetention::bytes`], and purges snapshotted entries beyond the newest
//! [`LogRetention::bytes`] of them. So the log holds at most about twice that budget
//! plus one segment.
//!
//! A follower further behind than the kept entries is sent a snapshot instead, as
//! it is when it falls behind the kept count.

use std::time::Duration;

use crate::log::LogProgress;
use crate::types::Raft;

/// How often the log's size is checked.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The byte budget of the log (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// Record bytes after which a snapshot is taken, and that are kept behind it.
    pub bytes: u64,
}

impl Default for LogRetention {
    fn default() -> LogRetention {
        LogRetention { bytes: 256 << 20 }
    }
}

/// How long a requested snapshot may take before it is asked for again (openraft
/// ignores a request while it is building one, or when nothing new was applied).
const SNAPSHOT_RETRY: Duration = Duration::from_secs(10);

/// Runs until the Raft stops (see the module documentation). A budget of 0 bytes
/// turns the byte policy off: only openraft's entry counts apply.
pub async fn run(raft: Raft, log: LogProgress, retention: LogRetention) {
    if retention.bytes == 0 {
        return;
    }
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The snapshot index when this task last asked for a snapshot, and when: ask
    // again once that one is done, or after SNAPSHOT_RETRY.
    let mut requested: Option<(Option<u64>, tokio::time::Instant)> = None;
    loop {
        tick.tick().await;
        let (snapshot, purged) = {
            let m = raft.metrics();
            let m = m.borrow();
            if m.running_state.is_err() {
                return;
            }
            (m.snapshot.map(|l| l.index), m.purged.map(|l| l.index))
        };
        if requested.is_some_and(|(at, when)| at != snapshot || when.elapsed() > SNAPSHOT_RETRY) {
            requested = None;
        }
        if requested.is_none() && log.bytes_after(snapshot.unwrap_or(0)) > retention.bytes {
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            requested = Some((snapshot, tokio::time::Instant::now()));
        }
        if let Some(upto) = snapshot.and_then(|s| log.purge_point(s, retention.bytes)) {
            if purged.is_none_or(|p| upto > p) {
                tracing::debug!(upto, "purging the raft log by bytes");
                if raft.trigger().purge_log(upto).await.is_err() {
                    return;
                }
            }
        }
    }
}
