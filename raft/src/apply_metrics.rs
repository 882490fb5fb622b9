//! [`ApplyMetrics`]: what the state machine measures while it applies committed
//! entries (the server registers them with its /metrics registry).
//!
//! A log entry carries a batch of client writes (see `RaftNode`'s proposal batcher),
//! and the writes of one entry are applied together, in one RocksDB write where the
//! store can. So strake measures per entry, where etcd measures per request: the
//! histogram is strake's own, and a slow entry counts once in etcd's
//! `etcd_server_slow_apply_total`.

use std::time::Duration;

use prometheus::{Histogram, IntCounter};

use crate::metric::{counter, exponential, histogram};

/// An entry whose apply takes longer than this is logged and counted as slow
/// (etcd's `warnApplyDuration`, 100 ms).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The state machine's measurements. Cheap to clone (the handles share their
/// values); the default is a set no registry renders, for tests and tools.
#[derive(Debug, Clone)]
pub struct ApplyMetrics {
    /// strake_apply_entry_duration_seconds: time to apply one log entry, all its
    /// writes included (the wait for the local log's fsync is not).
    pub entry_duration: Histogram,
    /// strake_apply_entry_writes: client writes carried by one applied entry (the
    /// proposal batch size).
    pub entry_writes: Histogram,
    /// etcd_server_slow_apply_total: entries that took longer than [`SLOW_APPLY`].
    pub slow_applies: IntCounter,
}

impl Default for ApplyMetrics {
    fn default() -> Self {
        ApplyMetrics {
            entry_duration: histogram(
                "strake_apply_entry_duration_seconds",
                "The latency distribution of applying one Raft log entry (a batch of writes) to the store.",
                // etcd's apply buckets: 0.1 ms to 52 s, doubling.
                exponential(0.0001, 2.0, 20),
            ),
            entry_writes: histogram(
                "strake_apply_entry_writes",
                "The number of client writes in one applied log entry.",
                exponential(1.0, 2.0, 11),
            ),
            slow_applies: counter(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
        }
    }
}

impl ApplyMetrics {
    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.entry_duration.clone()))?;
        registry.register(Box::new(self.entry_writes.clone()))?;
        registry.register(Box::new(self.slow_applies.clone()))
    }

    /// Records one applied entry of `writes` client writes that took `took`.
    pub fn observe(&self, index: u64, writes: usize, took: Duration) {
        self.entry_duration.observe(took.as_secs_f64());
        if writes > 0 {
            self.entry_writes.observe(writes as f64);
        }
        if took > SLOW_APPLY {
            self.slow_applies.inc();
            tracing::warn!(
                index,
                writes,
                took_ms = took.as_millis() as u64,
                expected_ms = SLOW_APPLY.as_millis() as u64,
                "apply request took too long"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_entry_is_counted_once_and_every_entry_is_timed() {
        let m = ApplyMetrics::default();
        m.observe(1, 10, Duration::from_millis(1));
        m.observe(2, 0, SLOW_APPLY + Duration::from_millis(1));
        assert_eq!(m.entry_duration.get_sample_count(), 2);
        assert_eq!(m.entry_writes.get_sample_count(), 1, "entries without writes are not a batch size");
        assert_eq!(m.slow_applies.get(), 1);
    }
}
