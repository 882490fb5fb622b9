//! Constructors for the crate's Prometheus metrics ([`crate::log::LogMetrics`],
//! [`crate::ApplyMetrics`]): the names and help texts are fixed at compile time, so
//! a construction error is a programming error and panics.

use prometheus::{Histogram, HistogramOpts, IntCounter};

/// A histogram with `buckets` (upper bounds, ascending).
pub(crate) fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric")
}

/// Upper bounds `start`, `start × factor`, … (`count` of them).
pub(crate) fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).expect("valid buckets")
}

/// A counter.
pub(crate) fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}
