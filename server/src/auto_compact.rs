//! Auto-compaction (etcd's --auto-compaction-mode/--auto-compaction-retention),
//! run by the leader, proposed through the log like a client's Compact.

use std::collections::VecDeque;
use std::time::Duration;

use strake_proto::etcdserverpb::CompactionRequest;
use strake_proto::strakepb::write_request::Request as W;

use crate::config::AutoCompaction;
use crate::context::Shared;

/// How often revision-mode compaction runs (etcd: every 5 minutes).
pub const REVISION_MODE_INTERVAL: Duration = Duration::from_secs(300);

/// Runs the policy forever.
pub async fn run(server: Shared, policy: AutoCompaction) {
    match policy {
        AutoCompaction::Disabled => {}
        AutoCompaction::Revision(keep) => {
            let mut tick = tokio::time::interval(REVISION_MODE_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let target = server.store.revision() - keep;
                compact(&server, target).await;
            }
        }
        AutoCompaction::Periodic(retention) => {
            // Sample the revision every tenth of the retention (at most hourly) and
            // compact to the sample taken one retention ago.
            let step = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
            let window = (retention.as_secs_f64() / step.as_secs_f64()).ceil() as usize;
            let mut samples: VecDeque<i64> = VecDeque::new();
            let mut tick = tokio::time::interval(step);
            loop {
                tick.tick().await;
                samples.push_back(server.store.revision());
                if samples.len() > window {
                    let target = samples.pop_front().unwrap_or(0);
                    compact(&server, target).await;
                }
            }
        }
    }
}

async fn compact(server: &Shared, target: i64) {
    if !server.node.status().is_leader || target <= server.store.compact_revision() || target <= 0 {
        return;
    }
    match server.propose(W::Compaction(CompactionRequest { revision: target, physical: false })).await {
        Ok(_) => tracing::info!(revision = target, "auto-compacted"),
        Err(e) => tracing::warn!(revision = target, error = %e.message(), "auto-compaction failed"),
    }
}
