//! Writes a follower forwards to the leader, gathered into batches.
//!
//! A client may send a write to any member; a follower passes it to the leader over
//! the peer protocol. One `Forward` call per write cost the cluster as much CPU as
//! the rest of the write (a tonic call on each side: 3 members, 64 clients spread
//! over all of them, 110 µs of CPU per put against 78 with every client on the
//! leader). The [`Forwarder`] queues the writes and sends everything queued when its
//! task runs in one `ForwardBatch` call, without waiting for earlier calls to
//! finish: batches form from the bursts in which writes arrive (a batch of answers
//! releases a burst of clients), and a lone write leaves at once.
//!
//! Invariants: the writes of one call are proposed by the leader in the order they
//! were queued here (but for bulk writes waiting for admission, see
//! [`crate::admission`]); each waiter gets exactly one outcome. A failure before the
//! leader proposed anything (no connection, the leader does not know the batch
//! call) is reported as [`RaftError::PeerUnreachable`] or the leader's own
//! "not leader", which the caller may retry; any other failure of the call is
//! reported to every write of it as the indeterminate error it maps to.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter};
use strake_proto::strakepb::{WriteRequest, WriteResult};
use tokio::sync::{mpsc, oneshot};

use crate::error::RaftError;
use crate::metric::{counter, exponential, histogram};
use crate::node::{gather_writes, reply_by};
use crate::transport::client::PeerClients;
use crate::types::MemberNode;

/// How long a follower sends single `Forward` calls after a leader answered that
/// it does not know `ForwardBatch` (an older version, during a rolling upgrade).
const SINGLE_CALLS_AFTER_UNIMPLEMENTED: Duration = Duration::from_secs(60);

/// What a follower measures of the writes it forwards (the server registers them
/// with its /metrics registry). Cheap to clone; the default is a set no registry
/// renders.
#[derive(Debug, Clone)]
pub struct ForwardMetrics {
    /// strake_forward_batch_writes: writes in one `ForwardBatch` call.
    pub batch_writes: Histogram,
    /// strake_forwarded_writes_total: writes forwarded to the leader (every attempt).
    pub writes: IntCounter,
}

impl Default for ForwardMetrics {
    fn default() -> Self {
        ForwardMetrics {
            batch_writes: histogram(
                "strake_forward_batch_writes",
                "The number of client writes a follower forwarded to the leader in one call.",
                exponential(1.0, 2.0, 11),
            ),
            writes: counter("strake_forwarded_writes_total", "The number of client writes forwarded to the leader."),
        }
    }
}

impl ForwardMetrics {
    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.batch_writes.clone()))?;
        registry.register(Box::new(self.writes.clone()))
    }
}

/// A write waiting to be forwarded.
struct Forwarded {
    leader_id: u64,
    leader: MemberNode,
    req: WriteRequest,
    deadline: tokio::time::Instant,
    done: oneshot::Sender<Result<WriteResult, RaftError>>,
}

/// The follower side of forwarded writes. Cheap to clone; one per node.
#[derive(Clone)]
pub struct Forwarder {
    peers: PeerClients,
    metrics: ForwardMetrics,
    queue: mpsc::UnboundedSender<Forwarded>,
    /// Until when to use single calls (the leader did not know the batch call).
    single_until: std::sync::Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder over `peers`; its task runs on the current tokio runtime.
    pub fn start(peers: PeerClients, metrics: ForwardMetrics) -> Forwarder {
        let (queue, rx) = mpsc::unbounded_channel();
        let forwarder = Forwarder { peers, metrics, queue, single_until: Default::default() };
        tokio::spawn(forwarder.clone().run(rx));
        forwarder
    }

    /// Forwards `req` to the leader `leader_id` (`leader`) and waits for its outcome
    /// until `deadline`.
    pub async fn forward(
        &self,
        leader_id: u64,
        leader: &MemberNode,
        req: WriteRequest,
        deadline: tokio::time::Instant,
    ) -> Result<WriteResult, RaftError> {
        self.metrics.writes.inc();
        if self.single_until.lock().is_some_and(|until| Instant::now() < until) {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            return self.peers.forward(leader, req, remaining).await;
        }
        let (done, outcome) = oneshot::channel();
        let write = Forwarded { leader_id, leader: leader.clone(), req, deadline, done };
        self.queue.send(write).map_err(|_| RaftError::Stopped)?;
        reply_by(deadline, outcome).await
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Forwarded>) {
        while let Some(first) = rx.recv().await {
            // The handlers made ready with the one that woke us queue their writes
            // before we look.
            tokio::task::yield_now().await;
            let mut batch = gather_writes(first, &mut rx, |w| &w.req);
            // One call per leader, in queue order (a leader change splits a batch).
            while !batch.is_empty() {
                let leader_id = batch[0].leader_id;
                let same = batch.iter().take_while(|w| w.leader_id == leader_id).count();
                let rest = batch.split_off(same);
                tokio::spawn(self.clone().send(batch));
                batch = rest;
            }
        }
    }

    /// Sends one batch (all for one leader) and hands each write its outcome.
    async fn send(self, batch: Vec<Forwarded>) {
        let leader = batch[0].leader.clone();
        let deadline = batch.iter().map(|w| w.deadline).max().expect("a batch is never empty");
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (requests, waiters): (Vec<WriteRequest>, Vec<_>) = batch.into_iter().map(|w| (w.req, w.done)).unzip();
        let count = waiters.len();
        self.metrics.batch_writes.observe(count as f64);
        match self.peers.forward_batch(&leader, requests, timeout).await {
            Ok(Some(outcomes)) => {
                let mut outcomes = outcomes.into_iter();
                for done in waiters {
                    let outcome = outcomes.next().unwrap_or_else(|| {
                        Err(RaftError::Other(format!("the leader answered fewer than the {count} forwarded writes")))
                    });
                    let _ = done.send(outcome);
                }
            }
            Ok(None) => {
                tracing::info!(%leader, "the leader does not batch forwarded writes; forwarding them one by one");
                *self.single_until.lock() = Some(Instant::now() + SINGLE_CALLS_AFTER_UNIMPLEMENTED);
                for done in waiters {
                    // Nothing was proposed: the caller tries again, with a single call.
                    let _ = done.send(Err(RaftError::PeerUnreachable));
                }
            }
            Err(error) => {
                for done in waiters {
                    let _ = done.send(Err(error.clone()));
                }
            }
        }
    }
}
