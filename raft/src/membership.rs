//! Membership changes as etcd expresses them, mapped onto openraft: a learner is an
//! openraft learner; a voter joins by joint consensus; attributes (name, URLs) are
//! node data changed with `SetNodes`. Executed on the leader; followers forward.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::MemberNode;

/// A change to the cluster's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a member that does not vote (etcd: `member add --learner`).
    AddLearner {
        /// Its ID.
        id: u64,
        /// Its attributes.
        node: MemberNode,
    },
    /// Add a voting member (joint consensus).
    AddVoter {
        /// Its ID.
        id: u64,
        /// Its attributes.
        node: MemberNode,
    },
    /// Make a learner vote; refused unless it has caught up.
    Promote {
        /// Its ID.
        id: u64,
    },
    /// Remove a member (voter or learner), possibly the leader itself.
    Remove {
        /// Its ID.
        id: u64,
    },
    /// Replace a member's attributes (publishing name and client URLs, MemberUpdate).
    UpdateNode {
        /// Its ID.
        id: u64,
        /// The new attributes.
        node: MemberNode,
    },
}

/// A snapshot of the membership as a member sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    /// Voting members.
    pub voters: BTreeSet<u64>,
    /// Every member with its attributes (voters and learners).
    pub nodes: BTreeMap<u64, MemberNode>,
}

impl MembershipView {
    /// The member whose peer URLs are exactly `peer_urls` (order ignored).
    pub fn find_by_peer_urls(&self, peer_urls: &[String]) -> Option<u64> {
        let mut want = peer_urls.to_vec();
        want.sort();
        self.nodes.iter().find_map(|(id, n)| {
            let mut have = n.peer_urls.clone();
            have.sort();
            (have == want).then_some(*id)
        })
    }
}

/// Share of the leader's log a learner must have to be promoted (etcd: 90%).
pub const PROMOTE_READY_RATIO: f64 = 0.9;

/// etcd's messages for refused membership changes.
pub mod messages {
    /// MemberAdd with a peer URL already in use.
    pub const PEER_URL_EXISTS: &str = "etcdserver: Peer URLs already exists";
    /// A member ID that is not in the cluster.
    pub const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
    /// Promote of a voter.
    pub const NOT_LEARNER: &str = "etcdserver: can only promote a learner member";
    /// Promote of a learner that has not caught up.
    pub const LEARNER_NOT_READY: &str = "etcdserver: can only promote a learner member which is in sync with leader";
    /// More than the maximum number of learners.
    pub const TOO_MANY_LEARNERS: &str = "etcdserver: too many learner members in cluster";
    /// A member ID that is taken.
    pub const ID_EXISTS: &str = "etcdserver: member ID already exist";
}

/// Most learners at once (etcd's default --max-learners).
pub const MAX_LEARNERS: usize = 1;
