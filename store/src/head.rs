//! Building the `head` column family (the newest version of every key, see
//! [`crate::schema`]) for a store written before heads existed or held versions.

use rocksdb::WriteBatch;

use crate::engine::Engine;
use crate::error::Result;
use crate::schema::{self, CF_HEAD, CF_KV, CF_META};

/// Heads written per batch while building.
const HEADS_PER_BATCH: usize = 10_000;

/// Writes the head of every key from `kv` (each key's first, i.e. newest, version),
/// replacing any older-format head, then records the current format. Idempotent: a
/// crash part-way leaves the old format recorded, and the next open builds again.
pub fn build(engine: &Engine) -> Result<u64> {
    let mut it = engine.iter(CF_KV, None);
    it.seek_to_first();
    let mut batch = WriteBatch::default();
    let mut written = 0u64;
    while it.valid() {
        let raw = it.key().expect("valid iterator");
        let (enc, rev) = schema::split_kv_key(raw)?;
        let head = schema::head_value(rev, it.value().expect("valid iterator"));
        let enc = enc.to_vec();
        batch.put_cf(engine.cf(CF_HEAD), &enc, head);
        written += 1;
        if written.is_multiple_of(HEADS_PER_BATCH as u64) {
            engine.write(std::mem::take(&mut batch))?;
        }
        it.seek(schema::after_key(&enc));
    }
    it.status()?;
    batch.put_cf(engine.cf(CF_META), schema::META_FORMAT, schema::encode_u64(schema::FORMAT_VERSION));
    engine.write(batch)?;
    engine.flush()?;
    Ok(written)
}
