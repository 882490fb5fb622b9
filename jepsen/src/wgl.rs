//! The Wing–Gong / Lowe linearizability search with memoisation, as in Porcupine.
//!
//! Calls and returns are sorted by time (calls first at equal times: intervals are
//! closed) into a linked list. The search walks it: at a call it tries to linearize
//! the operation now (the model accepts it and the pair (set of linearized
//! operations, state) was not seen before), removing the call and its return from the
//! list; at a return it must backtrack (that operation returned before being
//! linearized). Unknown operations return at +∞, so they can always be linearized
//! last, which means "never happened". An empty list means linearizable.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::model::Model;

/// An operation ready for the search.
#[derive(Debug, Clone)]
pub struct SearchOp<O> {
    /// The operation's id in the history.
    pub id: usize,
    /// Invocation time.
    pub call: u64,
    /// Return time (`u64::MAX` when unknown).
    pub ret: u64,
    /// The compiled operation.
    pub op: O,
}

/// The answer of one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable,
    /// The search was stopped (time budget or cancellation) before deciding.
    Unknown,
}

/// The result of one search.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// The answer.
    pub verdict: Verdict,
    /// The longest linearizable prefix found, as operation ids in linearization order.
    pub longest: Vec<usize>,
    /// Search steps taken.
    pub steps: u64,
}

/// FxHash: a fast, non-cryptographic hasher for the memo table.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Fx = BuildHasherDefault<FxHasher>;

/// The set of linearized operations: inline for up to 256 operations (no allocation
/// when memoised), on the heap beyond.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Bits {
    Inline([u64; 4]),
    Heap(Box<[u64]>),
}

impl Bits {
    fn new(n: usize) -> Bits {
        if n <= 256 {
            Bits::Inline([0; 4])
        } else {
            Bits::Heap(vec![0; n.div_ceil(64)].into_boxed_slice())
        }
    }
    fn words(&mut self) -> &mut [u64] {
        match self {
            Bits::Inline(w) => w,
            Bits::Heap(w) => w,
        }
    }
    fn set(&mut self, i: usize) {
        self.words()[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.words()[i / 64] &= !(1 << (i % 64));
    }
}

const NIL: u32 = u32::MAX;

/// How often (in steps) the deadline and cancellation are checked.
const CHECK_EVERY: u64 = 1 << 12;

/// Searches for a linearization of `ops` from the model's initial state.
pub fn search<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Op>],
    deadline: Option<Instant>,
    cancel: &AtomicBool,
) -> SearchResult {
    search_bounded(model, ops, deadline, cancel, u64::MAX)
}

/// [`search`] that gives up (answering Unknown) after `max_steps` steps.
pub fn search_bounded<M: Model>(
    model: &M,
    ops: &[SearchOp<M::Op>],
    deadline: Option<Instant>,
    cancel: &AtomicBool,
    max_steps: u64,
) -> SearchResult {
    let n = ops.len();
    // Entries 0..2n: call of op i is entry 2i, its return 2i+1; `order` sorts them.
    let mut order: Vec<u32> = (0..2 * n as u32).collect();
    let key = |e: u32| {
        let op = &ops[(e / 2) as usize];
        if e.is_multiple_of(2) {
            (op.call, 0u8)
        } else {
            (op.ret, 1u8)
        }
    };
    order.sort_by_key(|&e| key(e));
    // Linked list over positions in `order`, with a head sentinel at position 2n.
    let head = 2 * n as u32;
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut pos_of = vec![0u32; 2 * n];
    let mut last = head;
    for (p, &e) in order.iter().enumerate() {
        pos_of[e as usize] = p as u32;
        next[last as usize] = p as u32;
        prev[p] = last;
        last = p as u32;
    }
    let unlink = |next: &mut Vec<u32>, prev: &mut Vec<u32>, p: u32| {
        let (a, b) = (prev[p as usize], next[p as usize]);
        next[a as usize] = b;
        if b != NIL {
            prev[b as usize] = a;
        }
    };
    let relink = |next: &mut Vec<u32>, prev: &mut Vec<u32>, p: u32| {
        let (a, b) = (prev[p as usize], next[p as usize]);
        next[a as usize] = p;
        if b != NIL {
            prev[b as usize] = p;
        }
    };

    let mut state = model.init();
    let mut bits = Bits::new(n);
    let mut cache: HashSet<(Bits, M::State), Fx> = HashSet::default();
    let mut stack: Vec<(u32, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut cursor = next[head as usize];
    let mut steps = 0u64;
    while next[head as usize] != NIL {
        steps += 1;
        if steps >= max_steps
            || (steps.is_multiple_of(CHECK_EVERY)
                && (cancel.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() > d)))
        {
            return SearchResult { verdict: Verdict::Unknown, longest, steps };
        }
        let entry = order[cursor as usize];
        let i = (entry / 2) as usize;
        if entry.is_multiple_of(2) {
            if let Some(new_state) = model.step(&state, &ops[i].op) {
                bits.set(i);
                if cache.insert((bits.clone(), new_state.clone())) {
                    stack.push((cursor, std::mem::replace(&mut state, new_state)));
                    unlink(&mut next, &mut prev, cursor);
                    unlink(&mut next, &mut prev, pos_of[entry as usize + 1]);
                    if stack.len() > longest.len() {
                        longest =
                            stack.iter().map(|(p, _)| (order[*p as usize] / 2) as usize).map(|j| ops[j].id).collect();
                    }
                    cursor = next[head as usize];
                    continue;
                }
                bits.clear(i);
            }
            cursor = next[cursor as usize];
        } else {
            // A return before its call was linearized: undo the last choice.
            let Some((call_pos, old)) = stack.pop() else {
                return SearchResult { verdict: Verdict::NotLinearizable, longest, steps };
            };
            state = old;
            let e = order[call_pos as usize];
            bits.clear((e / 2) as usize);
            relink(&mut next, &mut prev, pos_of[e as usize + 1]);
            relink(&mut next, &mut prev, call_pos);
            cursor = next[call_pos as usize];
        }
        if cursor == NIL {
            // Only possible when every remaining call was tried and failed with no
            // return left: nothing can be linearized next.
            let Some((call_pos, old)) = stack.pop() else {
                return SearchResult { verdict: Verdict::NotLinearizable, longest, steps };
            };
            state = old;
            let e = order[call_pos as usize];
            bits.clear((e / 2) as usize);
            relink(&mut next, &mut prev, pos_of[e as usize + 1]);
            relink(&mut next, &mut prev, call_pos);
            cursor = next[call_pos as usize];
        }
    }
    let order_ids = stack.iter().map(|(p, _)| ops[(order[*p as usize] / 2) as usize].id).collect();
    SearchResult { verdict: Verdict::Linearizable, longest: order_ids, steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CasResult, Register, RegisterOp};

    fn op(id: usize, call: u64, ret: u64, op: RegisterOp) -> SearchOp<RegisterOp> {
        SearchOp { id, call, ret, op }
    }

    fn check(ops: &[SearchOp<RegisterOp>]) -> Verdict {
        search(&Register::etcd(), ops, None, &AtomicBool::new(false)).verdict
    }

    #[test]
    fn concurrent_write_and_read() {
        let read1 = RegisterOp::Read { value: Some(1), wildcard: false };
        // write(1) [0,3], read -> 1 [1,2]: linearizable (write first).
        assert_eq!(check(&[op(0, 0, 3, RegisterOp::Write(1)), op(1, 1, 2, read1.clone())]), Verdict::Linearizable);
        // read -> 1 [0,1] strictly before write(1) [2,3]: not linearizable.
        assert_eq!(check(&[op(0, 2, 3, RegisterOp::Write(1)), op(1, 0, 1, read1.clone())]), Verdict::NotLinearizable);
        // An unknown write may take effect whenever after its call.
        assert_eq!(check(&[op(0, 0, u64::MAX, RegisterOp::Write(1)), op(1, 5, 6, read1)]), Verdict::Linearizable);
        // An unknown CAS whose compare fails is a no-op.
        assert_eq!(
            check(&[op(0, 0, u64::MAX, RegisterOp::Cas(7, 8, CasResult::Unknown)), op(1, 1, 2, RegisterOp::Write(1))]),
            Verdict::Linearizable
        );
    }
}
