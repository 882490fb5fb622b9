//! Results of a run: throughput, latency percentiles, errors; as a table and as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency histogram in microseconds (1 µs .. 100 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds")
}

/// Summary of one workload run against one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Workload name.
    pub workload: String,
    /// Target label (e.g. "strake" or "etcd").
    pub target: String,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations, by error text.
    pub errors: BTreeMap<String, u64>,
    /// Wall time of the measured phase, seconds.
    pub seconds: f64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
}

impl Summary {
    /// Builds a summary from a merged histogram.
    pub fn new(
        workload: &str,
        target: &str,
        h: &Histogram<u64>,
        errors: BTreeMap<String, u64>,
        elapsed: Duration,
    ) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Summary {
            workload: workload.to_string(),
            target: target.to_string(),
            ops: h.len(),
            errors,
            seconds,
            ops_per_sec: h.len() as f64 / seconds,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A human table of summaries.
pub fn table(rows: &[Summary]) -> String {
    let mut out = format!(
        "{:<22} {:<8} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
        "workload", "target", "ops", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms", "errors"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<22} {:<8} {:>10} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}\n",
            r.workload,
            r.target,
            r.ops,
            r.ops_per_sec,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            r.error_count()
        ));
    }
    out
}
