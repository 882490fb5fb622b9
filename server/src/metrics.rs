//! Prometheus metrics, under etcd's metric names where etcd has one.

use prometheus::{IntCounter, IntGauge, Registry};

/// The metrics of one member.
#[derive(Clone)]
pub struct Metrics {
    /// The registry rendered at /metrics.
    pub registry: Registry,
    /// etcd_server_proposals_applied_total.
    pub proposals_applied: IntCounter,
    /// etcd_server_proposals_failed_total.
    pub proposals_failed: IntCounter,
    /// etcd_server_proposals_pending.
    pub proposals_pending: IntGauge,
    /// etcd_mvcc_range_total.
    pub range_total: IntCounter,
    /// etcd_mvcc_put_total.
    pub put_total: IntCounter,
    /// etcd_mvcc_delete_total.
    pub delete_total: IntCounter,
    /// etcd_mvcc_txn_total.
    pub txn_total: IntCounter,
    /// etcd_debugging_mvcc_watch_stream_total.
    pub watch_streams: IntGauge,
    /// etcd_debugging_mvcc_watcher_total.
    pub watchers: IntGauge,
    /// etcd_server_has_leader.
    pub has_leader: IntGauge,
    /// etcd_server_is_leader.
    pub is_leader: IntGauge,
    /// etcd_server_is_learner.
    pub is_learner: IntGauge,
    /// etcd_mvcc_db_total_size_in_bytes.
    pub db_total_size: IntGauge,
    /// etcd_mvcc_db_total_size_in_use_in_bytes.
    pub db_in_use_size: IntGauge,
    /// etcd_debugging_mvcc_current_revision.
    pub current_revision: IntGauge,
    /// etcd_debugging_mvcc_compact_revision.
    pub compact_revision: IntGauge,
    /// etcd_server_apply_index (strake: raft applied index).
    pub applied_index: IntGauge,
    /// etcd_server_term.
    pub term: IntGauge,
    /// etcd_server_quota_backend_bytes.
    pub quota_bytes: IntGauge,
    /// etcd_disk_wal_fsync_duration_seconds and etcd_disk_wal_write_bytes_total,
    /// recorded by the Raft log's writer thread.
    pub log: strake_raft::log::LogMetrics,
    /// strake_apply_entry_duration_seconds, strake_apply_entry_writes and
    /// etcd_server_slow_apply_total, recorded by the state machine.
    pub apply: strake_raft::ApplyMetrics,
    /// strake_forward_batch_writes and strake_forwarded_writes_total, recorded by a
    /// follower's forwarder.
    pub forward: strake_raft::ForwardMetrics,
    /// strake_bulk_write_backlog_hold_seconds, recorded by a leader's admission of
    /// bulk writes.
    pub admission: strake_raft::AdmissionMetrics,
    /// grpc_server_* and etcd_network_client_grpc_*_bytes_total, recorded by the
    /// middleware in front of the gRPC services.
    pub grpc: crate::grpc_metrics::GrpcMetrics,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    /// Registers every metric; `version` labels etcd_server_version; `extensive`
    /// adds the per-RPC handling-time histogram (etcd's `--metrics extensive`).
    pub fn new(version: &str, extensive: bool) -> Metrics {
        let r = Registry::new();
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds...
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("unique metric");
        let v = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )
        .expect("valid metric");
        v.with_label_values(&[version]).set(1);
        r.register(Box::new(v)).expect("unique metric");
        Metrics {
            proposals_applied: counter(
                &r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_failed: counter(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            proposals_pending: gauge(
                &r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            range_total: counter(&r, "etcd_mvcc_range_total", "Total number of ranges seen by this member."),
            put_total: counter(&r, "etcd_mvcc_put_total", "Total number of puts seen by this member."),
            delete_total: counter(&r, "etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
            txn_total: counter(&r, "etcd_mvcc_txn_total", "Total number of txns seen by this member."),
            watch_streams: gauge(&r, "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams."),
            watchers: gauge(&r, "etcd_debugging_mvcc_watcher_total", "Total number of watchers."),
            has_leader: gauge(
                &r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                &r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: gauge(
                &r,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            db_total_size: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_in_use_size: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            current_revision: gauge(&r, "etcd_debugging_mvcc_current_revision", "The current revision of store."),
            compact_revision: gauge(
                &r,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            applied_index: gauge(&r, "etcd_server_apply_index", "The current apply index."),
            term: gauge(&r, "etcd_server_term", "The current term."),
            quota_bytes: gauge(&r, "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."),
            log: {
                let log = strake_raft::log::LogMetrics::default();
                log.register(&r).expect("unique metric");
                log
            },
            apply: {
                let apply = strake_raft::ApplyMetrics::default();
                apply.register(&r).expect("unique metric");
                apply
            },
            forward: {
                let forward = strake_raft::ForwardMetrics::default();
                forward.register(&r).expect("unique metric");
                forward
            },
            admission: {
                let admission = strake_raft::AdmissionMetrics::default();
                admission.register(&r).expect("unique metric");
                admission
            },
            grpc: crate::grpc_metrics::GrpcMetrics::register(&r, extensive).expect("unique metric"),
            registry: r,
        }
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("utf-8")
    }
}
