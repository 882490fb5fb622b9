//! [`RaftNode`]: one member's replication: starting openraft over the log and the
//! store, proposing writes (forwarded to the leader from followers), linearizable
//! read barriers (ReadIndex, batched), the lessor, and membership changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError as OpenRaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use prost::Message;
use strake_proto::etcdserverpb::LeaseRevokeRequest;
use strake_proto::strakepb::{write_request, write_result, WriteBatch, WriteRequest};
use strake_store::Store;
use tokio::sync::{mpsc, oneshot, watch};

use crate::admission::{AdmissionMetrics, BulkAdmission};
use crate::apply_metrics::ApplyMetrics;
use crate::core_runtime::CoreRuntime;
use crate::error::{RaftError, StartError};
use crate::forward::{ForwardMetrics, Forwarder};
use crate::lessor::{Lessor, EXPIRY_CHECK_INTERVAL};
use crate::log::{LogMetrics, LogProgress, LogStore};
use crate::membership::{messages, MembershipChange, MembershipView, MAX_LEARNERS, PROMOTE_READY_RATIO};
use crate::state_machine::{SnapshotDirs, StateMachine};
use crate::transport::client::{PeerClients, PeerNetwork};
use crate::types::{MemberNode, Proposal, Raft};

/// How a member runs its Raft.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's ID.
    pub id: u64,
    /// The cluster's ID (headers).
    pub cluster_id: u64,
    /// Directory for the log (`wal/`) and snapshot staging (`snap/`).
    pub dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout (randomised up to twice this).
    pub election_timeout: Duration,
    /// Applied entries between snapshots (etcd's --snapshot-count).
    pub snapshot_count: u64,
    /// Entries kept in the log after a snapshot for slow followers.
    pub snapshot_catchup_entries: u64,
    /// The log's byte budget (snapshots and purges by bytes as well as by entries).
    pub log_retention: crate::LogRetention,
    /// How long a write or linearizable read may take before "request timed out".
    pub request_timeout: Duration,
    /// Members of a new cluster; `None` when joining an existing one or restarting.
    pub bootstrap: Option<BTreeMap<u64, MemberNode>>,
    /// Where the log's writer records fsync times and bytes written.
    pub log_metrics: LogMetrics,
    /// Where the state machine records apply times, batch sizes and slow applies.
    pub apply_metrics: ApplyMetrics,
    /// Where a follower records the writes it forwards to the leader.
    pub forward_metrics: ForwardMetrics,
    /// Where a leader records the bulk writes it held back (see [`crate::admission`]).
    pub admission_metrics: AdmissionMetrics,
}

/// A snapshot of the node's Raft state for status and headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// Current term.
    pub term: u64,
    /// The leader this member knows, if any.
    pub leader: Option<u64>,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// Whether this member is a learner.
    pub is_learner: bool,
    /// Whether this member is the leader.
    pub is_leader: bool,
}

type ReadWaiter = oneshot::Sender<Result<(), RaftError>>;

/// Longest wait for one ReadIndex request from a follower: the reads sharing it
/// retry against the next leader afterwards, so an unreachable leader must not hold
/// the follower's reads for a whole request timeout.
const FOLLOWER_READ_INDEX_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a follower's read gets the leader's read index.
type ReadIndexWaiter = oneshot::Sender<Result<u64, RaftError>>;

/// A read on a follower waiting for the leader's read index.
struct FollowerRead {
    leader_id: u64,
    leader: MemberNode,
    done: ReadIndexWaiter,
}

/// A write waiting to be proposed in a batch.
struct PendingWrite {
    req: WriteRequest,
    done: oneshot::Sender<Result<write_result::Result, RaftError>>,
}

/// Most batches proposed and not yet applied (a bound on memory; the pacing is
/// done by durability, see [`RaftNode::run_write_batches`]).
pub const MAX_UNAPPLIED_BATCHES: usize = 4;
/// Most writes in one log entry.
pub const MAX_BATCH_WRITES: usize = 1024;
/// Most bytes of writes in one log entry (a single larger write still goes alone).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

struct Shared {
    id: u64,
    cluster_id: u64,
    raft: Raft,
    store: Store,
    peers: PeerClients,
    /// Writes this member forwards while it follows.
    forwarder: Forwarder,
    lessor: Lessor,
    reads: mpsc::UnboundedSender<ReadWaiter>,
    follower_reads: mpsc::UnboundedSender<FollowerRead>,
    writes: mpsc::UnboundedSender<PendingWrite>,
    /// Bulk writes wait here before they join `writes` (see [`crate::admission`]).
    bulk: BulkAdmission,
    request_timeout: Duration,
    transferring: AtomicBool,
    snapshots: Arc<SnapshotDirs>,
    /// How far the log is appended and durable (paces the write batches).
    log_progress: LogProgress,
    /// Where openraft's tasks run.
    core: CoreRuntime,
}

/// Waits until `deadline` for the reply to a request handed to one of the node's
/// tasks: `Timeout` when it does not come in time, `Stopped` when the task is gone.
pub(crate) async fn reply_by<T>(
    deadline: tokio::time::Instant,
    reply: oneshot::Receiver<Result<T, RaftError>>,
) -> Result<T, RaftError> {
    match tokio::time::timeout_at(deadline, reply).await {
        Err(_) => Err(RaftError::Timeout),
        Ok(Err(_)) => Err(RaftError::Stopped),
        Ok(Ok(r)) => r,
    }
}

/// `first` and whatever else `rx` holds already, up to [`MAX_BATCH_WRITES`] writes
/// or [`MAX_BATCH_BYTES`] (`request` names each item's write), in queue order.
pub(crate) fn gather_writes<T>(
    first: T,
    rx: &mut mpsc::UnboundedReceiver<T>,
    request: impl Fn(&T) -> &WriteRequest,
) -> Vec<T> {
    let mut bytes = request(&first).encoded_len();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(w) => {
                bytes += request(&w).encoded_len();
                batch.push(w);
            }
            Err(_) => break,
        }
    }
    batch
}

/// One member's Raft. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode").field("id", &self.shared.id).finish()
    }
}

impl RaftNode {
    /// Opens the log, wraps the store, starts openraft, and bootstraps a new cluster
    /// when `config.bootstrap` is given and this member has no state yet.
    pub async fn start(config: NodeConfig, store: Store) -> Result<RaftNode, StartError> {
        let log = LogStore::open_measured(&config.dir.join("wal"), config.log_metrics.clone())?;
        let log_progress = log.progress();
        let snapshots =
            Arc::new(SnapshotDirs::new(config.dir.join("snap")).map_err(|e| {
                StartError::Config(format!("cannot prepare {}: {e}", config.dir.join("snap").display()))
            })?);
        let sm = StateMachine::new(store.clone(), snapshots.clone())
            .map_err(|e| StartError::Raft(e.to_string()))?
            .with_durable_log(log_progress.clone())
            .with_metrics(config.apply_metrics.clone());
        let election_ms = config.election_timeout.as_millis() as u64;
        let raft_config = Config {
            cluster_name: format!("{:x}", config.cluster_id),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
            max_payload_entries: 1000,
            install_snapshot_timeout: 600_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        let peers = PeerClients::default();
        // Replication gets channels of its own: created by openraft's tasks, their
        // connection tasks run on the core threads too, with no hop to the
        // server's runtime for each AppendEntries.
        let network = PeerNetwork { id: config.id, clients: PeerClients::default() };
        let core = CoreRuntime::start().map_err(|e| StartError::Raft(format!("cannot start raft threads: {e}")))?;
        let id = config.id;
        let raft = core
            .run(async move { Raft::new(id, Arc::new(raft_config), network, log, sm).await })
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if let Some(members) = &config.bootstrap {
            if !raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))? {
                tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "bootstrapping a new cluster");
                match raft.initialize(members.clone()).await {
                    Ok(()) => {}
                    Err(OpenRaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(StartError::Raft(e.to_string())),
                }
            }
        }
        let (reads_tx, reads_rx) = mpsc::unbounded_channel();
        let (follower_reads_tx, follower_reads_rx) = mpsc::unbounded_channel();
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let bulk = BulkAdmission::default().holding_for_backlog(
            {
                let store = store.clone();
                Arc::new(move || {
                    let backlog = store.write_backlog();
                    let near = backlog.is_near_throttling();
                    if near {
                        tracing::trace!(?backlog, "the store's background work is near throttling writes");
                    }
                    near
                })
            },
            config.admission_metrics.clone(),
        );
        let shared = Arc::new(Shared {
            id: config.id,
            cluster_id: config.cluster_id,
            raft,
            store,
            forwarder: Forwarder::start(peers.clone(), config.forward_metrics.clone()),
            peers,
            lessor: Lessor::default(),
            reads: reads_tx,
            follower_reads: follower_reads_tx,
            writes: writes_tx,
            bulk,
            request_timeout: config.request_timeout,
            transferring: AtomicBool::new(false),
            snapshots,
            log_progress,
            core,
        });
        let node = RaftNode { shared };
        tokio::spawn(node.clone().run_read_batches(reads_rx));
        tokio::spawn(node.clone().run_follower_read_batches(follower_reads_rx));
        node.spawn_on_core(node.clone().run_write_batches(writes_rx));
        tokio::spawn(node.clone().run_leadership_watch());
        tokio::spawn(node.clone().run_lease_expiry());
        tokio::spawn(crate::log_retention::run(
            node.shared.raft.clone(),
            node.shared.log_progress.clone(),
            config.log_retention,
        ));
        Ok(node)
    }

    /// Runs `future` on the threads of openraft's core (see [`CoreRuntime`]): the
    /// peer protocol is served there, so an AppendEntries reaches the core without a
    /// hop between runtimes.
    pub fn spawn_on_core<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.core.spawn(future);
    }

    /// This member's ID.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The cluster's ID.
    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// The store this node applies to.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The openraft handle (tests and the peer service).
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// The lessor.
    pub fn lessor(&self) -> &Lessor {
        &self.shared.lessor
    }

    /// Snapshot staging directories.
    pub fn snapshot_dirs(&self) -> &Arc<SnapshotDirs> {
        &self.shared.snapshots
    }

    /// Channels to peers.
    pub fn peers(&self) -> &PeerClients {
        &self.shared.peers
    }

    /// How long requests may take.
    pub fn request_timeout(&self) -> Duration {
        self.shared.request_timeout
    }

    /// The current Raft state.
    pub fn status(&self) -> NodeStatus {
        // Borrowed, not cloned: this runs for every response header.
        let metrics = self.shared.raft.metrics();
        let m = metrics.borrow();
        NodeStatus {
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            is_learner: m.state == ServerState::Learner,
            is_leader: m.state == ServerState::Leader,
        }
    }

    /// The current membership: voters and learners with their attributes.
    pub fn members(&self) -> (BTreeSet<u64>, BTreeMap<u64, MemberNode>) {
        let m = self.shared.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        let nodes = m.membership().nodes().map(|(id, n)| (*id, n.clone())).collect();
        (voters, nodes)
    }

    fn leader_node(&self) -> Option<(u64, MemberNode)> {
        let metrics = self.shared.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node))
    }

    async fn wait_for_leader(&self, deadline: tokio::time::Instant) -> Result<(u64, MemberNode), RaftError> {
        let mut metrics = self.shared.raft.metrics();
        loop {
            if let Some(l) = self.leader_node() {
                return Ok(l);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(RaftError::Stopped),
                Err(_) => return Err(RaftError::NoLeader),
            }
        }
    }

    /// Proposes a write and waits for its result. From a follower the write is
    /// forwarded to the leader (batched with others, see [`crate::forward`]). Errors after the write may have been proposed are
    /// indeterminate (`LeaderChanged`, `Timeout`): it may or may not take effect.
    pub async fn propose(&self, req: WriteRequest) -> Result<write_result::Result, RaftError> {
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        loop {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            if leader == self.shared.id {
                return self.propose_local(req, deadline).await;
            }
            match self.shared.forwarder.forward(leader, &node, req.clone(), deadline).await {
                Ok(result) => return result.result.ok_or_else(|| RaftError::Other("empty forwarded result".into())),
                // The leader refused before proposing, or was not reached: safe to
                // try again (against the next leader once one is elected).
                Err(RaftError::NotLeader) | Err(RaftError::NoLeader) | Err(RaftError::PeerUnreachable) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(RaftError::Timeout);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Proposes on this member, which must believe it is the leader.
    pub async fn propose_local(
        &self,
        req: WriteRequest,
        deadline: tokio::time::Instant,
    ) -> Result<write_result::Result, RaftError> {
        if self.shared.transferring.load(Ordering::SeqCst) {
            return Err(RaftError::LeaderChanged);
        }
        let grant = match &req.request {
            Some(write_request::Request::LeaseGrant(g)) => Some((g.id, g.ttl)),
            _ => None,
        };
        let _admitted = self.shared.bulk.admit(req.encoded_len(), deadline).await?;
        let (done, wait) = oneshot::channel();
        self.shared.writes.send(PendingWrite { req, done }).map_err(|_| RaftError::Stopped)?;
        let result = reply_by(deadline, wait).await?;
        if let (Some((id, ttl)), write_result::Result::LeaseGrant(_)) = (grant, &result) {
            self.shared.lessor.granted(id, ttl, Instant::now());
        }
        Ok(result)
    }

    /// Gathers queued writes into batches, one log entry each. A batch is proposed
    /// once the previous batch's entry is durable (or that batch has finished, e.g.
    /// failed): proposed as the log finishes the previous fsync, it carries every
    /// write that arrived during it, so there are fewer, larger entries (less
    /// per-entry work in openraft and the apply path) at no cost in latency, since
    /// the next fsync could not start earlier. At most [`MAX_UNAPPLIED_BATCHES`] are
    /// proposed and not yet applied. Runs on the core runtime (see `start`): its
    /// hand-offs to openraft and back are then task switches, and a write forwarded
    /// by a follower (served there too) never leaves that thread before its answer.
    async fn run_write_batches(self, mut rx: mpsc::UnboundedReceiver<PendingWrite>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_UNAPPLIED_BATCHES));
        let mut progress = self.shared.log_progress.clone();
        // The log's last index before the previous batch was proposed, and its end.
        let mut previous: Option<(u64, oneshot::Receiver<()>)> = None;
        while let Some(first) = rx.recv().await {
            if let Some((before, mut finished)) = previous.take() {
                tokio::select! {
                    _ = progress.wait_durable_beyond(before) => {}
                    _ = &mut finished => {}
                }
            }
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let batch = gather_writes(first, &mut rx, |w| &w.req);
            let raft = self.shared.raft.clone();
            let (finished_tx, finished_rx) = oneshot::channel();
            previous = Some((progress.last_appended(), finished_rx));
            tokio::spawn(async move {
                let (requests, waiters): (Vec<WriteRequest>, Vec<_>) =
                    batch.into_iter().map(|w| (w.req, w.done)).unzip();
                let outcome = raft.client_write(Proposal(WriteBatch { requests })).await;
                drop(permit);
                let _ = finished_tx.send(());
                match outcome {
                    Ok(resp) => {
                        let mut results = resp.data.0.results.into_iter();
                        for w in waiters {
                            let r = results
                                .next()
                                .and_then(|r| r.result)
                                .ok_or_else(|| RaftError::Other("missing apply result".into()));
                            let _ = w.send(r);
                        }
                    }
                    Err(e) => {
                        let err = match e {
                            OpenRaftError::APIError(ClientWriteError::ForwardToLeader(_)) => RaftError::LeaderChanged,
                            OpenRaftError::Fatal(_) => RaftError::Stopped,
                            other => RaftError::Other(other.to_string()),
                        };
                        for w in waiters {
                            let _ = w.send(Err(err.clone()));
                        }
                    }
                }
            });
        }
    }

    /// Waits until this member's state reflects every write committed before the
    /// call (a linearizable read barrier).
    pub async fn read_barrier(&self) -> Result<(), RaftError> {
        // Injected bug: serve "linearizable" reads from local state (stale reads).
        fail::fail_point!("read-barrier-skip", |_| Ok(()));
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        loop {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            let result = if leader == self.shared.id {
                self.local_read_index(deadline).await.map(|_| ())
            } else {
                match self.leader_read_index(leader, node, deadline).await {
                    Ok(index) => self.wait_applied(index, deadline).await,
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(()) => return Ok(()),
                // Reads have no effect: retry any leadership or reachability trouble
                // until the deadline.
                Err(
                    RaftError::NotLeader | RaftError::LeaderChanged | RaftError::NoLeader | RaftError::PeerUnreachable,
                ) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(RaftError::NotLeader | RaftError::LeaderChanged | RaftError::PeerUnreachable) => {
                    return Err(RaftError::Timeout)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// On the leader: confirms leadership with a quorum (shared by all reads waiting
    /// at that moment) and waits until the confirmed index is applied. Returns it.
    pub async fn local_read_index(&self, deadline: tokio::time::Instant) -> Result<u64, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.shared.reads.send(tx).map_err(|_| RaftError::Stopped)?;
        reply_by(deadline, rx).await.map(|_| self.status().applied_index)
    }

    async fn wait_applied(&self, index: u64, deadline: tokio::time::Instant) -> Result<(), RaftError> {
        let mut metrics = self.shared.raft.metrics();
        loop {
            if metrics.borrow().last_applied.map_or(0, |l| l.index) >= index {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RaftError::Stopped),
                Err(_) => return Err(RaftError::Timeout),
            }
        }
    }

    /// On a follower: the leader's read index, from a request to the leader sent
    /// after this call began (shared with the other reads waiting at that moment).
    async fn leader_read_index(
        &self,
        leader_id: u64,
        leader: MemberNode,
        deadline: tokio::time::Instant,
    ) -> Result<u64, RaftError> {
        let (done, wait) = oneshot::channel();
        let read = FollowerRead { leader_id, leader, done };
        self.shared.follower_reads.send(read).map_err(|_| RaftError::Stopped)?;
        reply_by(deadline, wait).await
    }

    /// On followers, one ReadIndex request to the leader at a time; every read that
    /// arrived before a request is sent shares its answer (etcd's linearizable read
    /// loop does the same), so 40 concurrent reads cost one round trip, not 40.
    async fn run_follower_read_batches(self, mut rx: mpsc::UnboundedReceiver<FollowerRead>) {
        while let Some(first) = rx.recv().await {
            let mut by_leader: BTreeMap<u64, (MemberNode, Vec<ReadIndexWaiter>)> = BTreeMap::new();
            let mut add = |r: FollowerRead| {
                by_leader.entry(r.leader_id).or_insert_with(|| (r.leader, Vec::new())).1.push(r.done);
            };
            add(first);
            while let Ok(r) = rx.try_recv() {
                add(r);
            }
            for (leader, waiters) in by_leader.into_values() {
                let timeout = self.shared.request_timeout.min(FOLLOWER_READ_INDEX_TIMEOUT);
                let result = match self.shared.peers.read_index(&leader, timeout).await {
                    // The leader did not answer in time: the reads retry until their
                    // own deadlines, against whichever member leads by then.
                    Err(RaftError::Timeout) => Err(RaftError::PeerUnreachable),
                    other => other,
                };
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        }
    }

    /// One ReadIndex round at a time; every read that arrived before a round starts
    /// shares it.
    async fn run_read_batches(self, mut rx: mpsc::UnboundedReceiver<ReadWaiter>) {
        while let Some(first) = rx.recv().await {
            let mut waiters = vec![first];
            while let Ok(w) = rx.try_recv() {
                waiters.push(w);
            }
            let result = match self.shared.raft.ensure_linearizable().await {
                Ok(_) => Ok(()),
                Err(OpenRaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(_))) => {
                    Err(RaftError::NotLeader)
                }
                Err(OpenRaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(_))) => {
                    Err(RaftError::LeaderChanged)
                }
                Err(OpenRaftError::Fatal(_)) => Err(RaftError::Stopped),
            };
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// Keeps the lessor's primary state in step with leadership. Watches the server
    /// metrics (state, leader, membership), not the full metrics, which change with
    /// every write and would wake this task (on another runtime) each time.
    async fn run_leadership_watch(self) {
        let mut metrics = self.shared.raft.server_metrics();
        let mut was_leader = false;
        loop {
            let is_leader = metrics.borrow().state == ServerState::Leader;
            if is_leader && !was_leader {
                tracing::info!(id = self.shared.id, "became leader");
                self.shared.lessor.promote(&self.shared.store, Instant::now());
            } else if !is_leader && was_leader {
                tracing::info!(id = self.shared.id, "lost leadership");
                self.shared.lessor.demote();
            }
            was_leader = is_leader;
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// On the leader, revokes expired leases through the log.
    async fn run_lease_expiry(self) {
        let mut tick = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
        loop {
            tick.tick().await;
            if self.shared.raft.metrics().borrow().running_state.is_err() {
                return;
            }
            for id in self.shared.lessor.expired(&self.shared.store, Instant::now()) {
                let req = WriteRequest {
                    request: Some(write_request::Request::LeaseRevoke(LeaseRevokeRequest { id })),
                    proposed_at_ms: 0,
                };
                let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
                if let Err(e) = self.propose_local(req, deadline).await {
                    tracing::debug!(lease = id, error = %e, "could not revoke an expired lease yet");
                    break;
                }
            }
        }
    }

    /// Renews a lease (forwarded to the leader from followers). 0 = unknown lease.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, RaftError> {
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        let (leader, node) = self.wait_for_leader(deadline).await?;
        if leader == self.shared.id {
            return Ok(self.shared.lessor.keep_alive(&self.shared.store, id, Instant::now()));
        }
        self.shared.peers.lease_keep_alive(&node, id, self.shared.request_timeout).await
    }

    /// Remaining and granted TTL of a lease, from the leader. `(-1, 0)` = unknown.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<(i64, i64), RaftError> {
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        let (leader, node) = self.wait_for_leader(deadline).await?;
        if leader == self.shared.id {
            return Ok(self.shared.lessor.time_to_live(&self.shared.store, id, Instant::now()));
        }
        self.shared.peers.lease_time_to_live(&node, id, self.shared.request_timeout).await
    }

    /// Adds a member as a learner (it then catches up by log or snapshot).
    pub async fn add_learner(&self, id: u64, node: MemberNode) -> Result<(), RaftError> {
        self.shared.raft.add_learner(id, node, false).await.map(|_| ()).map_err(membership_error)
    }

    /// Changes the voter set (joint consensus); `retain` keeps removed voters as learners.
    pub async fn change_voters(&self, change: ChangeMembers<u64, MemberNode>, retain: bool) -> Result<(), RaftError> {
        self.shared.raft.change_membership(change, retain).await.map(|_| ()).map_err(membership_error)
    }

    /// Hands leadership to voter `target` (etcd's MoveLeader). New writes are refused
    /// with "leader changed" while the transfer runs.
    ///
    /// openraft 0.9 has no transfer primitive: this leader stops heartbeating so the
    /// followers' leader leases lapse, and asks the target to campaign until it wins.
    pub async fn transfer_leadership(&self, target: u64) -> Result<(), RaftError> {
        let (_, nodes) = self.members();
        let node =
            nodes.get(&target).cloned().ok_or_else(|| RaftError::Membership(messages::MEMBER_NOT_FOUND.into()))?;
        let timeout = self.shared.request_timeout;
        self.shared.transferring.store(true, Ordering::SeqCst);
        self.shared.raft.runtime_config().heartbeat(false);
        let asked = self.shared.peers.take_leadership(&node, timeout).await;
        self.shared.raft.runtime_config().heartbeat(true);
        self.shared.transferring.store(false, Ordering::SeqCst);
        asked?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.shared.raft.metrics();
        while metrics.borrow().current_leader != Some(target) {
            if tokio::time::timeout_at(deadline, metrics.changed()).await.is_err() {
                return Err(RaftError::Timeout);
            }
        }
        Ok(())
    }

    /// Campaigns until this member leads (called by the leader that hands over).
    pub async fn take_leadership(&self, timeout: Duration) -> Result<(), RaftError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.status().is_leader {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RaftError::Timeout);
            }
            self.shared.raft.trigger().elect().await.map_err(|_| RaftError::Stopped)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The membership as this member knows it.
    pub fn membership_view(&self) -> MembershipView {
        let (voters, nodes) = self.members();
        MembershipView { voters, nodes }
    }

    /// Changes the membership: on the leader directly, from a follower by forwarding.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), RaftError> {
        let deadline = tokio::time::Instant::now() + self.shared.request_timeout;
        let (leader, node) = self.wait_for_leader(deadline).await?;
        if leader == self.shared.id {
            return self.change_membership_local(change).await;
        }
        self.shared.peers.change_membership(&node, &change, self.shared.request_timeout).await
    }

    /// Validates and executes a membership change on this member, which must lead.
    pub async fn change_membership_local(&self, change: MembershipChange) -> Result<(), RaftError> {
        if !self.status().is_leader {
            return Err(RaftError::NotLeader);
        }
        let view = self.membership_view();
        let learners = view.nodes.keys().filter(|id| !view.voters.contains(id)).count();
        let url_taken = |node: &MemberNode, except: Option<u64>| {
            view.nodes
                .iter()
                .any(|(id, n)| Some(*id) != except && n.peer_urls.iter().any(|u| node.peer_urls.contains(u)))
        };
        let refused = |m: &str| Err(RaftError::Membership(m.to_string()));
        let raft = &self.shared.raft;
        match change {
            MembershipChange::AddLearner { id, node } | MembershipChange::AddVoter { id, node }
                if view.nodes.contains_key(&id) =>
            {
                let _ = node;
                refused(messages::ID_EXISTS)
            }
            MembershipChange::AddLearner { node, .. } | MembershipChange::AddVoter { node, .. }
                if url_taken(&node, None) =>
            {
                refused(messages::PEER_URL_EXISTS)
            }
            MembershipChange::AddLearner { id, node } => {
                if learners >= MAX_LEARNERS {
                    return refused(messages::TOO_MANY_LEARNERS);
                }
                raft.add_learner(id, node, false).await.map(|_| ()).map_err(membership_error)
            }
            MembershipChange::AddVoter { id, node } => {
                raft.add_learner(id, node, false).await.map_err(membership_error)?;
                self.change_voters(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await
            }
            MembershipChange::Promote { id } => {
                if !view.nodes.contains_key(&id) {
                    return refused(messages::MEMBER_NOT_FOUND);
                }
                if view.voters.contains(&id) {
                    return refused(messages::NOT_LEARNER);
                }
                let m = raft.metrics().borrow().clone();
                let last = m.last_log_index.unwrap_or(0);
                let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |l| l.index);
                if (matched as f64) < PROMOTE_READY_RATIO * last as f64 {
                    return refused(messages::LEARNER_NOT_READY);
                }
                self.change_voters(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await
            }
            MembershipChange::Remove { id } => {
                if !view.nodes.contains_key(&id) {
                    return refused(messages::MEMBER_NOT_FOUND);
                }
                if view.voters.contains(&id) {
                    self.change_voters(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await
                } else {
                    self.change_voters(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await
                }
            }
            MembershipChange::UpdateNode { id, node } => {
                match view.nodes.get(&id) {
                    None => return refused(messages::MEMBER_NOT_FOUND),
                    // Already so: no configuration change (each one restarts replication).
                    Some(current) if *current == node => return Ok(()),
                    Some(_) => {}
                }
                if url_taken(&node, Some(id)) {
                    return refused(messages::PEER_URL_EXISTS);
                }
                self.change_voters(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), false).await
            }
        }
    }

    /// Makes sure the membership carries `node` as this member's attributes (etcd
    /// members publish their name and client URLs after starting). Retries until done
    /// or until this member is no longer part of the cluster.
    pub async fn publish_attributes(&self, node: MemberNode) {
        loop {
            let view = self.membership_view();
            match view.nodes.get(&self.shared.id) {
                None if !view.nodes.is_empty() => return,
                Some(current) if *current == node => return,
                _ => {}
            }
            if !view.nodes.is_empty() {
                // The leader applies the change (or finds it already applied); this
                // member's own view may lag behind, so success ends the loop.
                let change = MembershipChange::UpdateNode { id: self.shared.id, node: node.clone() };
                match self.change_membership(change).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Watches Raft metrics (tests, status).
    pub fn metrics(&self) -> watch::Receiver<openraft::RaftMetrics<u64, MemberNode>> {
        self.shared.raft.metrics()
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        let _ = self.shared.raft.shutdown().await;
        self.shared.core.stop();
    }
}

fn membership_error(e: OpenRaftError<u64, ClientWriteError<u64, MemberNode>>) -> RaftError {
    match e {
        OpenRaftError::APIError(ClientWriteError::ForwardToLeader(_)) => RaftError::NotLeader,
        OpenRaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            RaftError::Membership(format!("etcdserver: {c}"))
        }
        OpenRaftError::Fatal(_) => RaftError::Stopped,
    }
}
