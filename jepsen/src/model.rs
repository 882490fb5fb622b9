//! Sequential specifications ("models") the checker linearizes against.
//!
//! A model compiles each history operation into its own compact form once, then
//! answers `step(state, op)`: the state after `op`, or `None` if `op` cannot happen
//! in `state`. Steps are pure. An indeterminate (info) operation must be accepted in
//! every state: if its precondition holds it takes effect, otherwise it is a no-op
//! (its result is unknown, so nothing constrains it).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use serde_json::Value;

use crate::history::{Operation, Outcome};

/// A sequential specification.
pub trait Model: Sync {
    /// The state.
    type State: Clone + Eq + Hash + Send + Debug;
    /// A compiled operation.
    type Op: Clone + Send + Sync + Debug;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// Compiles `op`; `Ok(None)` drops it (it certainly had no effect and no result).
    fn compile(&self, op: &Operation) -> Result<Option<Self::Op>, String>;
    /// The state after `op`, or `None` when `op` is impossible in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// The partition `op` belongs to, when the model is P-compositional (e.g. per key).
    fn partition(&self, _op: &Operation) -> Option<String> {
        None
    }
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn pair_of(v: &Value) -> Option<(i64, i64)> {
    let a = v.as_array()?;
    Some((a.first()?.as_i64()?, a.get(1)?.as_i64()?))
}

/// How a compare-and-set ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasResult {
    /// It applied.
    Applied,
    /// It ran and its compare failed (etcd's definite failure).
    Refused,
    /// Unknown.
    Unknown,
}

/// An operation on a single register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// A read that returned this value (`None`: absent); `wildcard` reads match anything.
    Read {
        /// The value read.
        value: Option<i64>,
        /// Matches any state.
        wildcard: bool,
    },
    /// A write.
    Write(i64),
    /// Compare-and-set from `.0` to `.1`.
    Cas(i64, i64, CasResult),
}

/// A register with read, write and compare-and-set.
///
/// * `etcd-register` (Porcupine's Jepsen etcd logs): initially absent; `fail cas` is a
///   definite "compare failed"; a read of nil means absent.
/// * `cas-register` (Knossos): initially 0; a read of nil matches anything; failed
///   operations are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Register {
    /// Initial value (`None`: absent).
    pub initial: Option<i64>,
    /// Knossos semantics (nil reads are wildcards, failures carry no information).
    pub knossos: bool,
}

impl Register {
    /// Porcupine's etcd register.
    pub fn etcd() -> Register {
        Register { initial: None, knossos: false }
    }

    /// Knossos' cas-register with initial value 0.
    pub fn cas() -> Register {
        Register { initial: Some(0), knossos: true }
    }
}

impl Model for Register {
    type State = Option<i64>;
    type Op = RegisterOp;

    fn init(&self) -> Option<i64> {
        self.initial
    }

    fn compile(&self, op: &Operation) -> Result<Option<RegisterOp>, String> {
        let bad = || format!("operation {}: unexpected value for {}", op.id, op.f);
        Ok(match (op.f.as_str(), op.outcome) {
            ("read", Outcome::Ok) => {
                let v = if op.output.is_null() && self.knossos { &op.input } else { &op.output };
                if v.is_null() {
                    Some(RegisterOp::Read { value: None, wildcard: self.knossos })
                } else {
                    Some(RegisterOp::Read { value: Some(int(v).ok_or_else(bad)?), wildcard: false })
                }
            }
            ("read", _) => None,
            ("write", Outcome::Fail) => None,
            ("write", _) => Some(RegisterOp::Write(int(&op.input).ok_or_else(bad)?)),
            ("cas", outcome) => {
                let (a, b) = pair_of(&op.input).ok_or_else(bad)?;
                match outcome {
                    Outcome::Ok => Some(RegisterOp::Cas(a, b, CasResult::Applied)),
                    Outcome::Info => Some(RegisterOp::Cas(a, b, CasResult::Unknown)),
                    Outcome::Fail if self.knossos => None,
                    Outcome::Fail => Some(RegisterOp::Cas(a, b, CasResult::Refused)),
                }
            }
            (f, _) => return Err(format!("operation {}: a register has no {f:?}", op.id)),
        })
    }

    fn step(&self, s: &Option<i64>, op: &RegisterOp) -> Option<Option<i64>> {
        match op {
            RegisterOp::Read { value, wildcard } => (*wildcard || s == value).then_some(*s),
            RegisterOp::Write(v) => Some(Some(*v)),
            RegisterOp::Cas(a, b, CasResult::Applied) => (*s == Some(*a)).then_some(Some(*b)),
            RegisterOp::Cas(a, _, CasResult::Refused) => (*s != Some(*a)).then_some(*s),
            RegisterOp::Cas(a, b, CasResult::Unknown) => Some(if *s == Some(*a) { Some(*b) } else { *s }),
        }
    }

    /// Keyed histories (the harness's register workload) are checked per key.
    fn partition(&self, op: &Operation) -> Option<String> {
        (!op.key.is_null()).then(|| key_string(&op.key))
    }
}

/// A lock operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutexOp {
    /// Acquire (true) or release (false).
    pub acquire: bool,
    /// Whether the outcome is known.
    pub known: bool,
}

/// A mutex: acquire needs it free, release needs it held.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutex;

impl Model for Mutex {
    type State = bool;
    type Op = MutexOp;

    fn init(&self) -> bool {
        false
    }

    fn compile(&self, op: &Operation) -> Result<Option<MutexOp>, String> {
        let acquire = match op.f.as_str() {
            "acquire" => true,
            "release" => false,
            f => return Err(format!("operation {}: a mutex has no {f:?}", op.id)),
        };
        Ok(match op.outcome {
            Outcome::Fail => None,
            Outcome::Ok => Some(MutexOp { acquire, known: true }),
            Outcome::Info => Some(MutexOp { acquire, known: false }),
        })
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match (op.acquire, *held, op.known) {
            (true, false, _) => Some(true),
            (false, true, _) => Some(false),
            (_, h, false) => Some(h),
            _ => None,
        }
    }
}

/// A micro-operation of a multi-register transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicroOp {
    /// Read `key`, which had `value` (`None`: unknown, matches anything).
    Read(String, Option<i64>),
    /// Write `value` to `key`.
    Write(String, i64),
}

/// A multi-register transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOp {
    /// Micro-operations, applied in order and atomically.
    pub ops: Vec<MicroOp>,
}

/// Several registers (default 0) updated atomically by transactions (Knossos'
/// multi-register; nil reads are wildcards).
#[derive(Debug, Clone, Default)]
pub struct MultiRegister {
    /// Registers and their initial values; others start at 0.
    pub initial: BTreeMap<String, i64>,
}

impl Model for MultiRegister {
    type State = BTreeMap<String, i64>;
    type Op = TxnOp;

    fn init(&self) -> Self::State {
        self.initial.clone()
    }

    fn compile(&self, op: &Operation) -> Result<Option<TxnOp>, String> {
        if op.outcome == Outcome::Fail {
            return Ok(None);
        }
        let src = if op.outcome == Outcome::Ok && !op.output.is_null() { &op.output } else { &op.input };
        let bad = || format!("operation {}: bad transaction {src}", op.id);
        let micro = src.as_array().ok_or_else(bad)?;
        let mut ops = Vec::new();
        for m in micro {
            let m = m.as_array().ok_or_else(bad)?;
            let (f, k, v) = (m.first().and_then(Value::as_str), m.get(1), m.get(2));
            let key = match k {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Err(bad()),
            };
            ops.push(match f {
                Some("read") | Some("r") => {
                    let known = op.outcome == Outcome::Ok;
                    MicroOp::Read(key, if known { v.and_then(Value::as_i64) } else { None })
                }
                Some("write") | Some("w") => MicroOp::Write(key, v.and_then(Value::as_i64).ok_or_else(bad)?),
                _ => return Err(bad()),
            });
        }
        Ok(Some(TxnOp { ops }))
    }

    fn step(&self, s: &Self::State, op: &TxnOp) -> Option<Self::State> {
        let mut next = s.clone();
        for m in &op.ops {
            match m {
                MicroOp::Read(k, Some(v)) => {
                    if next.get(k).copied().unwrap_or(0) != *v {
                        return None;
                    }
                }
                MicroOp::Read(_, None) => {}
                MicroOp::Write(k, v) => {
                    next.insert(k.clone(), *v);
                }
            }
        }
        Some(next)
    }
}

/// A key-value operation (Porcupine's kv model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// `get key` returned this string ("" when missing).
    Get(String, String),
    /// `put key value`.
    Put(String, String),
    /// `append key value`.
    Append(String, String),
}

/// A string register with get, put and append: one key of Porcupine's kv model. The
/// kv history is P-compositional by key, so each key is checked with this model.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvAppend;

/// The whole kv map as one state (Porcupine's unpartitioned kv model).
#[derive(Debug, Clone, Copy, Default)]
pub struct KvMap;

fn compile_kv(op: &Operation) -> Result<Option<KvOp>, String> {
    let key = key_string(&op.key);
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_default();
    Ok(match (op.f.as_str(), op.outcome) {
        (_, Outcome::Fail) => None,
        ("get", Outcome::Ok) => Some(KvOp::Get(key, s(&op.output))),
        ("get", _) => None,
        ("put", _) => Some(KvOp::Put(key, s(&op.input))),
        ("append", _) => Some(KvOp::Append(key, s(&op.input))),
        (f, _) => return Err(format!("operation {}: kv has no {f:?}", op.id)),
    })
}

fn key_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Strings reached by a search, hash-consed so a kv state is a small integer: an
/// append is one table lookup instead of a copy of the whole value. One table per
/// thread; a search runs on one thread, so its ids stay consistent.
#[derive(Default)]
struct KvTable {
    strings: Vec<String>,
    ids: std::collections::HashMap<String, u32>,
    appends: std::collections::HashMap<(u32, u32), u32>,
    keys: std::collections::HashMap<String, u32>,
}

impl KvTable {
    fn key_slot(&mut self, k: &str) -> usize {
        let n = self.keys.len() as u32;
        *self.keys.entry(k.to_string()).or_insert(n) as usize
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }
}

thread_local! {
    static KV_TABLE: std::cell::RefCell<KvTable> = std::cell::RefCell::new(KvTable::default());
}

impl Model for KvAppend {
    type State = u32;
    type Op = KvOp;

    fn init(&self) -> u32 {
        KV_TABLE.with(|t| t.borrow_mut().intern(""))
    }

    fn compile(&self, op: &Operation) -> Result<Option<KvOp>, String> {
        compile_kv(op)
    }

    fn step(&self, s: &u32, op: &KvOp) -> Option<u32> {
        KV_TABLE.with(|t| {
            let mut t = t.borrow_mut();
            match op {
                KvOp::Get(_, v) => (t.strings[*s as usize] == *v).then_some(*s),
                KvOp::Put(_, v) => Some(t.intern(v)),
                KvOp::Append(_, v) => {
                    let token = t.intern(v);
                    if let Some(id) = t.appends.get(&(*s, token)) {
                        return Some(*id);
                    }
                    let joined = format!("{}{}", t.strings[*s as usize], v);
                    let id = t.intern(&joined);
                    t.appends.insert((*s, token), id);
                    Some(id)
                }
            }
        })
    }

    fn partition(&self, op: &Operation) -> Option<String> {
        Some(key_string(&op.key))
    }
}

impl Model for KvMap {
    /// Interned value of each key, by interned key number (missing keys are "").
    type State = Vec<u32>;
    type Op = KvOp;

    fn init(&self) -> Vec<u32> {
        Vec::new()
    }

    fn compile(&self, op: &Operation) -> Result<Option<KvOp>, String> {
        compile_kv(op)
    }

    fn step(&self, s: &Vec<u32>, op: &KvOp) -> Option<Vec<u32>> {
        let single = KvAppend;
        let (k, _) = match op {
            KvOp::Get(k, v) | KvOp::Put(k, v) | KvOp::Append(k, v) => (k, v),
        };
        let slot = KV_TABLE.with(|t| t.borrow_mut().key_slot(k));
        let empty = single.init();
        let current = s.get(slot).copied().unwrap_or(empty);
        let next = single.step(&current, op)?;
        if next == current {
            return Some(s.clone());
        }
        let mut n = s.clone();
        if n.len() <= slot {
            n.resize(slot + 1, empty);
        }
        n[slot] = next;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operations_are_accepted_in_every_state() {
        let r = Register::cas();
        assert_eq!(r.step(&Some(1), &RegisterOp::Cas(0, 5, CasResult::Unknown)), Some(Some(1)));
        assert_eq!(r.step(&Some(0), &RegisterOp::Cas(0, 5, CasResult::Unknown)), Some(Some(5)));
        assert_eq!(r.step(&Some(1), &RegisterOp::Cas(0, 5, CasResult::Applied)), None);
        let e = Register::etcd();
        assert_eq!(e.step(&None, &RegisterOp::Read { value: None, wildcard: false }), Some(None));
        assert_eq!(e.step(&Some(1), &RegisterOp::Cas(1, 2, CasResult::Refused)), None);
        assert_eq!(Mutex.step(&true, &MutexOp { acquire: true, known: false }), Some(true));
        assert_eq!(Mutex.step(&true, &MutexOp { acquire: true, known: true }), None);
    }
}
