//! [`LogMetrics`]: what the log's writer thread measures, under etcd's metric names
//! (the server registers them with its /metrics registry).

use prometheus::{Histogram, IntCounter};

use crate::metric::{counter, exponential, histogram};

/// The log writer's measurements. Cheap to clone (the handles share their values);
/// the default is a set no registry renders, for tests and tools.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    /// etcd_disk_wal_fsync_duration_seconds: one observation per group-commit
    /// `fdatasync` round (all segments an append batch touched).
    pub fsync_duration: Histogram,
    /// etcd_disk_wal_write_bytes_total: bytes of records written to segments.
    pub write_bytes: IntCounter,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            fsync_duration: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                // etcd's buckets: 1 ms to 8 s, doubling.
                exponential(0.001, 2.0, 14),
            ),
            write_bytes: counter("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL."),
        }
    }
}

impl LogMetrics {
    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.fsync_duration.clone()))?;
        registry.register(Box::new(self.write_bytes.clone()))
    }
}
