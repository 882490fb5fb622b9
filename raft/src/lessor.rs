//! The lessor: when leases expire.
//!
//! Lease existence is state-machine data (the store); *time* is not. Only the leader
//! tracks deadlines, on its monotonic clock: a grant or a keep-alive sets the
//! deadline to now + TTL. When a member becomes leader it gives every lease a full
//! TTL from that moment (etcd's rule: a leader change extends leases rather than
//! expiring them early). The leader proposes a revocation through the log for each
//! expired lease; every member deletes the attached keys when it applies it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The time a lease of `ttl_seconds` lives from now. Injected bug
/// ("lease-early-expiry"): a quarter of it.
fn lifetime(ttl_seconds: i64) -> Duration {
    let full = Duration::from_secs(ttl_seconds.max(0) as u64);
    fail::fail_point!("lease-early-expiry", |_| full / 4);
    full
}
use strake_store::Store;

/// Most revocations proposed per expiry round.
pub const MAX_REVOKES_PER_ROUND: usize = 500;
/// How often the leader looks for expired leases.
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Lease deadlines held by the leader.
#[derive(Debug, Default)]
pub struct Lessor {
    state: Mutex<LessorState>,
}

#[derive(Debug, Default)]
struct LessorState {
    primary: bool,
    deadlines: HashMap<i64, Instant>,
}

impl Lessor {
    /// This member became leader at `now`: every lease gets a full TTL from now.
    pub fn promote(&self, store: &Store, now: Instant) {
        let mut s = self.state.lock();
        s.primary = true;
        s.deadlines = store.leases().into_iter().map(|l| (l.id, now + lifetime(l.granted_ttl))).collect();
    }

    /// This member is no longer leader.
    pub fn demote(&self) {
        let mut s = self.state.lock();
        s.primary = false;
        s.deadlines.clear();
    }

    /// Whether this member tracks deadlines (is the leader).
    pub fn is_primary(&self) -> bool {
        self.state.lock().primary
    }

    /// Renews lease `id` at `now`. Returns the TTL, or 0 if the lease is unknown.
    pub fn keep_alive(&self, store: &Store, id: i64, now: Instant) -> i64 {
        let Some(lease) = store.lease(id) else { return 0 };
        let mut s = self.state.lock();
        if s.primary {
            s.deadlines.insert(id, now + lifetime(lease.granted_ttl));
        }
        lease.granted_ttl
    }

    /// Records a just-granted lease.
    pub fn granted(&self, id: i64, ttl: i64, now: Instant) {
        let mut s = self.state.lock();
        if s.primary {
            s.deadlines.insert(id, now + lifetime(ttl));
        }
    }

    /// Remaining and granted TTL of lease `id` in whole seconds, `(-1, 0)` if unknown.
    pub fn time_to_live(&self, store: &Store, id: i64, now: Instant) -> (i64, i64) {
        let Some(lease) = store.lease(id) else { return (-1, 0) };
        let mut s = self.state.lock();
        let deadline = *s.deadlines.entry(id).or_insert_with(|| now + lifetime(lease.granted_ttl));
        let remaining = deadline.saturating_duration_since(now).as_secs() as i64;
        (remaining, lease.granted_ttl)
    }

    /// Leases whose deadline has passed at `now` (at most [`MAX_REVOKES_PER_ROUND`]).
    /// Leases the store no longer has are forgotten; leases without a deadline get one.
    pub fn expired(&self, store: &Store, now: Instant) -> Vec<i64> {
        let leases = store.leases();
        let mut s = self.state.lock();
        if !s.primary {
            return Vec::new();
        }
        let live: std::collections::HashSet<i64> = leases.iter().map(|l| l.id).collect();
        s.deadlines.retain(|id, _| live.contains(id));
        let mut out = Vec::new();
        for l in leases {
            let deadline = *s.deadlines.entry(l.id).or_insert_with(|| now + lifetime(l.granted_ttl));
            if deadline <= now && out.len() < MAX_REVOKES_PER_ROUND {
                out.push(l.id);
            }
        }
        out
    }
}
