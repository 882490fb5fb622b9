//! Admission of bulk writes: a byte budget so that large writes cannot build a queue
//! that small writes have to wait behind, and a hold while the store's background
//! work is behind.
//!
//! Every proposal goes through the same FIFO pipeline (batcher, log append and sync,
//! apply), so a small write waits for every byte proposed before it. Under a bulk
//! load (say 16 clients, each with a 128 KiB transaction outstanding) that is 2 MiB
//! to sync and apply before a 100-byte update gets through, and linearizable reads
//! wait for the same bytes to be applied. The leader therefore admits writes of at
//! least [`BULK_WRITE_BYTES`] only while fewer than [`BULK_BUDGET_BYTES`] of them are
//! in flight; the rest wait here, in arrival order, before they are proposed. Small
//! writes are never held back. A bulk load keeps enough bytes in flight to fill the
//! pipeline's two batches, so its own throughput hardly changes (measured in
//! BENCHMARKS.md, "Large dataset").
//!
//! A bulk load can also outrun RocksDB's flushes and level-0 compactions, and then
//! RocksDB slows or stops writes on the apply thread: every write and linearizable
//! read waits, the smallest too. With a [`BacklogProbe`] (the store's
//! [`strake_store::WriteBacklog::is_near_throttling`]), bulk writes are held here
//! while the backlog is near that point, at most [`MAX_BACKLOG_HOLD`] each, so the
//! bulk load waits for the background work instead of everyone else.
//!
//! Invariant: at most `budget` bytes of admitted bulk writes are in flight at once,
//! except a single write larger than the budget, which is admitted alone (it takes
//! the whole budget).

use std::sync::Arc;
use std::time::Duration;

use prometheus::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::RaftError;
use crate::metric::{exponential, histogram};

/// Writes at least this large (encoded) are bulk writes.
pub const BULK_WRITE_BYTES: usize = 32 << 10;
/// Most bytes of bulk writes in flight on a leader.
pub const BULK_BUDGET_BYTES: usize = 1 << 20;
/// Longest a bulk write is held for the store's backlog; after that it goes on, and
/// RocksDB's own throttling applies. Well below any request timeout.
pub const MAX_BACKLOG_HOLD: Duration = Duration::from_secs(2);
/// How often the backlog is looked at while bulk writes are held (and at most how
/// stale the answer a bulk write gets is).
pub const BACKLOG_POLL: Duration = Duration::from_millis(5);

/// Says whether the store's background work is near throttling writes.
pub type BacklogProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// What admission records.
#[derive(Debug, Clone)]
pub struct AdmissionMetrics {
    /// strake_bulk_write_backlog_hold_seconds: how long each bulk write that had to
    /// wait for the store's backlog waited.
    pub backlog_hold: Histogram,
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        AdmissionMetrics {
            backlog_hold: histogram(
                "strake_bulk_write_backlog_hold_seconds",
                "How long a bulk write was held because the store's flushes and compactions were behind.",
                exponential(0.005, 2.0, 10),
            ),
        }
    }
}

impl AdmissionMetrics {
    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.backlog_hold.clone()))
    }
}

/// The bulk-write budget of one leader.
#[derive(Clone)]
pub struct BulkAdmission {
    threshold: usize,
    budget: usize,
    permits: Arc<Semaphore>,
    backlog: Option<Arc<BacklogGauge>>,
}

impl std::fmt::Debug for BulkAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkAdmission")
            .field("threshold", &self.threshold)
            .field("budget", &self.budget)
            .field("available", &self.permits.available_permits())
            .field("watches_backlog", &self.backlog.is_some())
            .finish()
    }
}

/// A [`BacklogProbe`] asked at most once per [`BACKLOG_POLL`]. The lock is held
/// while the probe runs (a few property reads), so held writes waking together
/// ask RocksDB once, not once each.
struct BacklogGauge {
    probe: BacklogProbe,
    last: parking_lot::Mutex<Option<(Instant, bool)>>,
    metrics: AdmissionMetrics,
}

impl BacklogGauge {
    fn is_behind(&self) -> bool {
        let mut last = self.last.lock();
        match *last {
            Some((at, behind)) if at.elapsed() < BACKLOG_POLL => behind,
            _ => {
                let behind = (self.probe)();
                *last = Some((Instant::now(), behind));
                behind
            }
        }
    }

    /// Waits while the backlog is behind, until `until` at the latest. True if it
    /// had to wait.
    async fn hold(&self, until: Instant) -> bool {
        let mut held = false;
        while self.is_behind() && Instant::now() < until {
            held = true;
            tokio::time::sleep_until(until.min(Instant::now() + BACKLOG_POLL)).await;
        }
        held
    }
}

/// Proof of admission; the write's bytes return to the budget when it is dropped.
#[derive(Debug)]
pub struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Default for BulkAdmission {
    fn default() -> Self {
        BulkAdmission::new(BULK_WRITE_BYTES, BULK_BUDGET_BYTES)
    }
}

impl BulkAdmission {
    /// Writes of at least `threshold` bytes share `budget` bytes in flight.
    pub fn new(threshold: usize, budget: usize) -> BulkAdmission {
        let budget = budget.clamp(1, Semaphore::MAX_PERMITS);
        BulkAdmission { threshold, budget, permits: Arc::new(Semaphore::new(budget)), backlog: None }
    }

    /// Bulk writes are also held while `probe` says the store is behind; how long
    /// goes to `metrics`.
    pub fn holding_for_backlog(mut self, probe: BacklogProbe, metrics: AdmissionMetrics) -> BulkAdmission {
        self.backlog = Some(Arc::new(BacklogGauge { probe, last: Default::default(), metrics }));
        self
    }

    /// Waits until a write of `size` encoded bytes may be proposed, or fails with
    /// [`RaftError::Timeout`] at `deadline` (the write was not proposed).
    pub async fn admit(&self, size: usize, deadline: Instant) -> Result<Admitted, RaftError> {
        if size < self.threshold {
            return Ok(Admitted(None));
        }
        if let Some(backlog) = &self.backlog {
            let started = Instant::now();
            if backlog.hold(deadline.min(started + MAX_BACKLOG_HOLD)).await {
                let held = started.elapsed();
                backlog.metrics.backlog_hold.observe(held.as_secs_f64());
                tracing::debug!(held_ms = held.as_millis() as u64, size, "bulk write held for the store's backlog");
            }
            if Instant::now() >= deadline {
                return Err(RaftError::Timeout);
            }
        }
        let cost = size.min(self.budget) as u32;
        match tokio::time::timeout_at(deadline, self.permits.clone().acquire_many_owned(cost)).await {
            Ok(Ok(permit)) => Ok(Admitted(Some(permit))),
            Ok(Err(_closed)) => Err(RaftError::Stopped),
            Err(_elapsed) => Err(RaftError::Timeout),
        }
    }

    /// Bytes of the budget not taken by admitted bulk writes.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn behind_while(flag: &Arc<AtomicBool>) -> BacklogProbe {
        let flag = flag.clone();
        Arc::new(move || flag.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn small_writes_pass_while_the_bulk_budget_is_taken() {
        let admission = BulkAdmission::new(100, 1000);
        let _a = admission.admit(600, far()).await.unwrap();
        assert_eq!(admission.available(), 400);
        // A second bulk write does not fit, a small one does.
        assert!(admission.admit(600, far()).now_or_never().is_none());
        assert!(admission.admit(99, far()).now_or_never().is_some());
        assert_eq!(admission.available(), 400);
    }

    #[tokio::test]
    async fn bytes_return_to_the_budget_when_a_write_finishes() {
        let admission = BulkAdmission::new(100, 1000);
        let first = admission.admit(600, far()).await.unwrap();
        let second = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(600, far()).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!(admission.available(), 1000);
    }

    #[tokio::test]
    async fn a_write_larger_than_the_budget_goes_alone() {
        let admission = BulkAdmission::new(100, 1000);
        let huge = admission.admit(5000, far()).await.unwrap();
        assert_eq!(admission.available(), 0);
        assert!(admission.admit(100, far()).now_or_never().is_none());
        drop(huge);
        assert!(admission.admit(100, far()).now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_write_not_admitted_by_its_deadline_times_out() {
        let admission = BulkAdmission::new(100, 1000);
        let _held = admission.admit(1000, far()).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(admission.admit(200, deadline).await.unwrap_err(), RaftError::Timeout);
        assert_eq!(admission.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_writes_wait_while_the_store_is_behind_and_small_ones_do_not() {
        let behind = Arc::new(AtomicBool::new(true));
        let admission =
            BulkAdmission::new(100, 1000).holding_for_backlog(behind_while(&behind), AdmissionMetrics::default());
        assert!(admission.admit(99, far()).now_or_never().is_some());
        let bulk = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(200, far()).await.map(|_| Instant::now()) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!bulk.is_finished());
        // It did not take budget while it was held.
        assert_eq!(admission.available(), 1000);
        behind.store(false, Ordering::SeqCst);
        let cleared = Instant::now();
        let admitted_at = bulk.await.unwrap().unwrap();
        assert!(admitted_at - cleared <= BACKLOG_POLL * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bulk_write_is_held_for_the_backlog_at_most_so_long() {
        let behind = Arc::new(AtomicBool::new(true));
        let metrics = AdmissionMetrics::default();
        let admission = BulkAdmission::new(100, 1000).holding_for_backlog(behind_while(&behind), metrics.clone());
        let started = Instant::now();
        let _admitted = admission.admit(200, far()).await.unwrap();
        let held = started.elapsed();
        assert!(held >= MAX_BACKLOG_HOLD && held <= MAX_BACKLOG_HOLD + BACKLOG_POLL, "{held:?}");
        assert_eq!(metrics.backlog_hold.get_sample_count(), 1);
        assert!(metrics.backlog_hold.get_sample_sum() >= MAX_BACKLOG_HOLD.as_secs_f64());
        // A deadline sooner than the longest hold ends the wait: the write times out
        // without being proposed.
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(admission.admit(200, deadline).await.unwrap_err(), RaftError::Timeout);
        assert_eq!(Instant::now(), deadline);
    }
}
