//! The lease table: which leases exist and their granted TTL.
//!
//! Only the *existence* and granted TTL of leases are state-machine data. When a
//! lease expires is decided outside the store, by the leader's lessor, which then
//! proposes a revocation through the log: the store never reads a clock.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::engine::Engine;
use crate::error::Result;
use crate::schema::{self, CF_LEASE, CF_LEASE_KEYS};

/// Largest TTL a lease may be granted, seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// A lease as the store knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease ID.
    pub id: i64,
    /// The TTL it was granted with, seconds.
    pub granted_ttl: i64,
}

/// In-memory mirror of the `lease` column family; changed only by apply.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: RwLock<BTreeMap<i64, i64>>,
}

impl LeaseTable {
    /// Loads every lease from storage.
    pub fn load(engine: &Engine) -> Result<LeaseTable> {
        let mut leases = BTreeMap::new();
        let mut it = engine.iter(CF_LEASE, None);
        it.seek_to_first();
        while it.valid() {
            let key = it.key().expect("valid iterator");
            let id = schema::parse_lease_key(key)?;
            let ttl = schema::decode_lease_ttl(key, it.value().expect("valid iterator"))?;
            leases.insert(id, ttl);
            it.next();
        }
        it.status()?;
        Ok(LeaseTable { leases: RwLock::new(leases) })
    }

    /// Whether lease `id` exists.
    pub fn exists(&self, id: i64) -> bool {
        self.leases.read().contains_key(&id)
    }

    /// One lease.
    pub fn get(&self, id: i64) -> Option<LeaseInfo> {
        self.leases.read().get(&id).map(|ttl| LeaseInfo { id, granted_ttl: *ttl })
    }

    /// Every lease, by ID.
    pub fn list(&self) -> Vec<LeaseInfo> {
        self.leases.read().iter().map(|(id, ttl)| LeaseInfo { id: *id, granted_ttl: *ttl }).collect()
    }

    pub(crate) fn insert(&self, id: i64, ttl: i64) {
        self.leases.write().insert(id, ttl);
    }

    pub(crate) fn remove(&self, id: i64) {
        self.leases.write().remove(&id);
    }

    pub(crate) fn replace_all(&self, other: LeaseTable) {
        *self.leases.write() = other.leases.into_inner();
    }
}

/// The keys attached to lease `id`, in key order.
pub fn attached_keys(engine: &Engine, id: i64) -> Result<Vec<Vec<u8>>> {
    let prefix = schema::lease_key(id);
    let upper = schema::lease_key(id.wrapping_add(1));
    let upper = if id == -1 { None } else { Some(upper.to_vec()) };
    let mut it = engine.iter(CF_LEASE_KEYS, upper);
    it.seek(prefix);
    let mut keys = Vec::new();
    while it.valid() {
        let k = it.key().expect("valid iterator");
        if !k.starts_with(&prefix) {
            break;
        }
        keys.push(k[prefix.len()..].to_vec());
        it.next();
    }
    it.status()?;
    Ok(keys)
}
