//! [`LogMetrics`]: what the log's writer thread measures, under etcd's metric names
//! (the server registers them with its /metrics registry).

use prometheus::{Histogram, HistogramOpts, IntCounter};

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
        let fsync_duration = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )
            // etcd's buckets: 1 ms to 8 s, doubling.
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid buckets")),
        )
        .expect("valid metric");
        let write_bytes = IntCounter::new("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.")
            .expect("valid metric");
        LogMetrics { fsync_duration, write_bytes }
    }
}

impl LogMetrics {
    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.fsync_duration.clone()))?;
        registry.register(Box::new(self.write_bytes.clone()))
    }
}
