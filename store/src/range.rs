//! Evaluating a RangeRequest: every option of etcd's Range, in etcd's order
//! (fetch, filter on revisions, sort, truncate to the limit, count ignoring filters).

use strake_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use strake_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use strake_proto::mvccpb::KeyValue;

use crate::error::Result;
use crate::key_range::KeyRange;
use crate::view::{Detail, Version};

/// Something that can list the live versions visible in a key range, in key order.
pub trait VisibleSource {
    /// The revision the source reads at.
    fn revision(&self) -> i64;
    /// See [`crate::view::View::scan`].
    fn scan(
        &self,
        range: &KeyRange,
        detail: Detail,
        visit: &mut dyn FnMut(Option<Version>) -> Option<Detail>,
    ) -> Result<()>;

    /// The number of live keys in `range` if the source can count them without a
    /// scan (`None`: count by scanning).
    fn count(&self, _range: &KeyRange) -> Result<Option<i64>> {
        Ok(None)
    }

    /// The live version of `key` for a compare that does not look at its value: a
    /// source may leave the value empty when reading it would cost more.
    fn key_without_value(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let mut found = None;
        self.scan(&KeyRange::Single(key.to_vec()), Detail::Full, &mut |v| {
            found = v.map(|v| v.to_key_value());
            None
        })?;
        Ok(found)
    }
}

impl VisibleSource for crate::view::View<'_> {
    fn revision(&self) -> i64 {
        crate::view::View::revision(self)
    }
    fn scan(
        &self,
        range: &KeyRange,
        detail: Detail,
        visit: &mut dyn FnMut(Option<Version>) -> Option<Detail>,
    ) -> Result<()> {
        crate::view::View::scan(self, range, detail, visit)
    }
    fn count(&self, range: &KeyRange) -> Result<Option<i64>> {
        match range {
            // One point read is cheaper than the index's lock.
            KeyRange::Single(_) => Ok(None),
            _ => crate::view::View::count(self, range),
        }
    }
}

/// Runs `req` against `source`. The caller has validated the key and the revision.
pub fn evaluate(req: &RangeRequest, source: &dyn VisibleSource) -> Result<RangeResponse> {
    let range = KeyRange::new(&req.key, &req.range_end);
    let has_filters = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let sort_order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    // Without sorting or filters, fetch one more than the limit to learn `more`.
    let fetch_limit: usize = if req.count_only {
        0
    } else if sort_order != SortOrder::None || has_filters || req.limit <= 0 {
        usize::MAX
    } else {
        (req.limit as usize).saturating_add(1)
    };

    // A source that counts without scanning is scanned only for what it returns.
    let counted = if fetch_limit == usize::MAX { None } else { source.count(&range)? };
    let mut scanned: i64 = 0;
    let mut kvs: Vec<KeyValue> = Vec::new();
    if counted.is_none() || fetch_limit > 0 {
        let initial = if fetch_limit == 0 { Detail::Presence } else { Detail::Full };
        source.scan(&range, initial, &mut |item| {
            scanned += 1;
            if let Some(v) = item {
                kvs.push(v.to_key_value());
            }
            match (kvs.len() >= fetch_limit, counted) {
                (false, _) => Some(Detail::Full),
                (true, None) => Some(Detail::Presence),
                (true, Some(_)) => None,
            }
        })?;
    }
    let count = counted.unwrap_or(scanned);

    if has_filters {
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
    }
    sort(&mut kvs, sort_order, sort_target);
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    // Values go only after sorting: a keys-only read may still sort by value.
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Default::default();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: source.revision(), ..Default::default() }),
        kvs,
        more,
        count,
    })
}

/// etcd's sorting rules: a non-key target without an order sorts ascending; keys
/// come out of storage ascending already.
fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    let by = |a: &KeyValue, b: &KeyValue| -> std::cmp::Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    // Stable: equal targets keep key order, which makes results deterministic.
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        _ => kvs.sort_by(by),
    }
}
