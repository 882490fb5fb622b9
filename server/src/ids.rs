//! Member and cluster IDs, derived the way etcd derives them: a member's ID from its
//! peer URLs, the cluster token and (for members added later) the time it was added;
//! the cluster's ID from its founding members' IDs. strake uses SHA-256 where etcd
//! uses SHA-1, so the values differ from etcd's but are as stable.

use sha2::{Digest, Sha256};

fn first_u64(digest: &[u8]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("digest has 8 bytes"))
}

/// The ID of a member with these peer URLs in a cluster with this token.
/// `added_at_unix_ms` distinguishes members added at runtime (etcd mixes in the time).
pub fn member_id(peer_urls: &[String], token: &str, added_at_unix_ms: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha256::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    if let Some(t) = added_at_unix_ms {
        h.update(t.to_be_bytes());
    }
    // Raft reserves 0 for "none"; etcd IDs are never 0 either.
    first_u64(&h.finalize()).max(1)
}

/// The ID of a cluster founded by these members.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = member_id(&["http://127.0.0.1:2380".into()], "etcd-cluster", None);
        assert_eq!(a, member_id(&["http://127.0.0.1:2380".into()], "etcd-cluster", None));
        assert_ne!(a, member_id(&["http://127.0.0.1:2380".into()], "other", None));
        assert_ne!(a, member_id(&["http://127.0.0.1:2380".into()], "etcd-cluster", Some(1)));
        assert_eq!(cluster_id(&[1, 2]), cluster_id(&[2, 1]));
    }
}
