//! Admission of bulk writes: a byte budget so that large writes cannot build a queue
//! that small writes have to wait behind.
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
//! Invariant: at most `budget` bytes of admitted bulk writes are in flight at once,
//! except a single write larger than the budget, which is admitted alone (it takes
//! the whole budget).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::RaftError;

/// Writes at least this large (encoded) are bulk writes.
pub const BULK_WRITE_BYTES: usize = 32 << 10;
/// Most bytes of bulk writes in flight on a leader.
pub const BULK_BUDGET_BYTES: usize = 1 << 20;

/// The bulk-write budget of one leader.
#[derive(Debug, Clone)]
pub struct BulkAdmission {
    threshold: usize,
    budget: usize,
    permits: Arc<Semaphore>,
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
        BulkAdmission { threshold, budget, permits: Arc::new(Semaphore::new(budget)) }
    }

    /// Waits until a write of `size` encoded bytes may be proposed, or fails with
    /// [`RaftError::Timeout`] at `deadline` (the write was not proposed).
    pub async fn admit(&self, size: usize, deadline: tokio::time::Instant) -> Result<Admitted, RaftError> {
        if size < self.threshold {
            return Ok(Admitted(None));
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
    use std::time::Duration;

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(60)
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
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        assert_eq!(admission.admit(200, deadline).await.unwrap_err(), RaftError::Timeout);
        assert_eq!(admission.available(), 0);
    }
}
