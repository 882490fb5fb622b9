//! An Elle-style checker for list-append transactions.
//!
//! Each transaction is a list of micro-operations `[append k v]` (v unique per key) and
//! `[r k [v1 v2 ...]]`. Because appends are unique and reads return whole lists, every
//! read reveals a prefix of the key's version order, so dependencies between
//! transactions can be inferred: write-write (consecutive appends), write-read (the
//! read's last element) and read-write anti-dependencies (the next append after what
//! was read), plus real-time order (one transaction completed before another began).
//! Cycles in that graph are anomalies (Adya's G0, G1c, G-single, G2-item, and their
//! "-realtime" variants when real-time edges are needed); non-cyclic anomalies are
//! aborted reads (G1a), intermediate reads (G1b), duplicates, incompatible orders and
//! internal inconsistencies. Each anomaly rules out the consistency models that
//! proscribe it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::check::CheckError;
use crate::history::{self, Event, Outcome};

/// How long the cycle search may run before giving up (reported as
/// `cycle-search-timeout`).
pub const CYCLE_SEARCH_BUDGET: Duration = Duration::from_secs(10);

/// Consistency models, weakest first.
pub const MODELS: [&str; 7] = [
    "read-uncommitted",
    "read-committed",
    "repeatable-read",
    "snapshot-isolation",
    "serializable",
    "strong-snapshot-isolation",
    "strict-serializable",
];

/// The models an anomaly rules out.
pub fn ruled_out(anomaly: &str) -> &'static [&'static str] {
    match anomaly {
        "G0" | "duplicate-elements" | "incompatible-order" | "internal" | "garbage-read" => &MODELS,
        "G1a" | "G1b" | "G1c" => &MODELS[1..],
        "G-single" => &[
            "repeatable-read",
            "snapshot-isolation",
            "serializable",
            "strong-snapshot-isolation",
            "strict-serializable",
        ],
        "G2-item" => &["repeatable-read", "serializable", "strict-serializable"],
        "G0-realtime" | "G1c-realtime" | "G-single-realtime" => &["strong-snapshot-isolation", "strict-serializable"],
        "G2-item-realtime" => &["strict-serializable"],
        _ => &[],
    }
}

/// One anomaly with a witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Its name (G0, G1a, G-single, ...).
    pub kind: String,
    /// Transactions involved (ids = positions in the operation list).
    pub txns: Vec<usize>,
    /// Explanation.
    pub detail: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.kind, self.txns, self.detail)
    }
}

/// The result of checking a list-append history.
#[derive(Debug, Clone, Default)]
pub struct ElleReport {
    /// Transactions considered.
    pub txns: usize,
    /// Anomalies found.
    pub anomalies: Vec<Anomaly>,
    /// Models ruled out.
    pub not: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum EdgeKind {
    Ww,
    Wr,
    Rw,
    Realtime,
}

#[derive(Debug, Clone)]
enum Micro {
    Append(String, Value),
    Read(String, Option<Vec<Value>>),
}

fn key_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Micro-operations of a transaction. In a completed transaction a `nil` read result
/// is the empty list; in an invocation it is unknown.
fn micro_ops(v: &Value, completed: bool) -> Vec<Micro> {
    v.as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    let m = m.as_array()?;
                    let f = m.first()?.as_str()?;
                    let k = key_of(m.get(1)?);
                    match f {
                        "append" => Some(Micro::Append(k, m.get(2).cloned().unwrap_or(Value::Null))),
                        "r" | "read" => Some(Micro::Read(
                            k,
                            match m.get(2) {
                                Some(Value::Array(list)) => Some(list.clone()),
                                None | Some(Value::Null) if completed => Some(Vec::new()),
                                _ => None,
                            },
                        )),
                        _ => None,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Which models to check: with only `snapshot-isolation`/`repeatable-read`-like
/// models, real-time edges are not considered.
pub fn needs_realtime(models: &[&str]) -> bool {
    models.iter().any(|m| *m == "strict-serializable" || *m == "strong-snapshot-isolation")
}

/// Checks `events` for the default model, strict serializability.
pub fn check(events: &[Event], budget: Duration) -> Result<ElleReport, CheckError> {
    check_models(events, &["strict-serializable"], budget)
}

/// Checks `events` against the given consistency models.
pub fn check_models(events: &[Event], models: &[&str], budget: Duration) -> Result<ElleReport, CheckError> {
    let ops = history::pair(events)?;
    let mut anomalies = Vec::new();
    let txn_ops: Vec<(usize, Outcome, Vec<Micro>, u64, u64)> = ops
        .iter()
        .map(|o| {
            let completed = o.outcome == Outcome::Ok && !o.output.is_null();
            let src = if completed { &o.output } else { &o.input };
            (o.id, o.outcome, micro_ops(src, completed), o.call, o.ret)
        })
        .collect();
    // Writers of each (key, value), and each txn's appends per key in order.
    let mut writer: HashMap<(String, String), (usize, Outcome)> = HashMap::new();
    let mut appends_by: HashMap<(usize, String), Vec<String>> = HashMap::new();
    for (id, outcome, micro, _, _) in &txn_ops {
        for m in micro {
            if let Micro::Append(k, v) = m {
                writer.insert((k.clone(), v.to_string()), (*id, *outcome));
                appends_by.entry((*id, k.clone())).or_default().push(v.to_string());
            }
        }
    }
    // Reads of committed transactions, and the longest read of each key.
    let mut reads: Vec<(usize, String, Vec<String>)> = Vec::new();
    for (id, outcome, micro, _, _) in &txn_ops {
        if *outcome != Outcome::Ok {
            continue;
        }
        let mut own: HashMap<String, Vec<String>> = HashMap::new();
        for m in micro {
            match m {
                Micro::Append(k, v) => own.entry(k.clone()).or_default().push(v.to_string()),
                Micro::Read(k, Some(list)) => {
                    let list: Vec<String> = list.iter().map(Value::to_string).collect();
                    if let Some(mine) = own.get(k) {
                        if !list.ends_with(mine) {
                            anomalies.push(Anomaly {
                                kind: "internal".into(),
                                txns: vec![*id],
                                detail: format!("read of {k} {list:?} misses the txn's own appends {mine:?}"),
                            });
                        }
                    }
                    // What others wrote: the read minus this txn's own trailing appends.
                    let mut external = list.clone();
                    if let Some(mine) = own.get(k) {
                        if external.ends_with(mine) {
                            external.truncate(external.len() - mine.len());
                        }
                    }
                    reads.push((*id, k.clone(), external));
                }
                Micro::Read(_, None) => {}
            }
        }
    }
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, k, list) in &reads {
        let e = order.entry(k.clone()).or_default();
        if list.len() > e.len() {
            *e = list.clone();
        }
    }
    for (id, k, list) in &reads {
        let longest = &order[k];
        if !longest.starts_with(list) {
            anomalies.push(Anomaly {
                kind: "incompatible-order".into(),
                txns: vec![*id],
                detail: format!("read of {k} {list:?} is not a prefix of {longest:?}"),
            });
        }
        let mut seen = BTreeSet::new();
        for v in list {
            if !seen.insert(v) {
                anomalies.push(Anomaly {
                    kind: "duplicate-elements".into(),
                    txns: vec![*id],
                    detail: format!("{k} contains {v} twice"),
                });
            }
            match writer.get(&(k.clone(), v.clone())) {
                None => anomalies.push(Anomaly {
                    kind: "garbage-read".into(),
                    txns: vec![*id],
                    detail: format!("read {v} from {k}, which nobody appended"),
                }),
                Some((w, Outcome::Fail)) => anomalies.push(Anomaly {
                    kind: "G1a".into(),
                    txns: vec![*w, *id],
                    detail: format!("read {v} from {k}, appended by an aborted transaction"),
                }),
                _ => {}
            }
        }
        if let Some(last) = list.last() {
            if let Some((w, _)) = writer.get(&(k.clone(), last.clone())) {
                if w != id && appends_by.get(&(*w, k.clone())).is_some_and(|a| a.last() != Some(last)) {
                    anomalies.push(Anomaly {
                        kind: "G1b".into(),
                        txns: vec![*w, *id],
                        detail: format!("read {last} from {k}, an intermediate append of its transaction"),
                    });
                }
            }
        }
    }
    // The dependency graph.
    let n = ops.len();
    let mut edges: Vec<HashMap<usize, BTreeSet<EdgeKind>>> = vec![HashMap::new(); n];
    let mut add = |a: usize, b: usize, k: EdgeKind| {
        if a != b {
            edges[a].entry(b).or_default().insert(k);
        }
    };
    // Committed appends nobody observed come after every observed one, in an order
    // nobody knows: the last observed writer precedes each of them (ww), and every
    // reader, not having seen them, precedes their writers (rw).
    let mut unobserved: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for ((k, v), (w, outcome)) in &writer {
        if *outcome == Outcome::Ok && !order.get(k).is_some_and(|o| o.contains(v)) {
            unobserved.entry(k.clone()).or_default().push(*w);
        }
    }
    for (k, vs) in &order {
        for pair in vs.windows(2) {
            if let (Some((a, _)), Some((b, _))) =
                (writer.get(&(k.clone(), pair[0].clone())), writer.get(&(k.clone(), pair[1].clone())))
            {
                add(*a, *b, EdgeKind::Ww);
            }
        }
        if let Some((last, _)) = vs.last().and_then(|v| writer.get(&(k.clone(), v.clone()))) {
            for w in unobserved.get(k).into_iter().flatten() {
                add(*last, *w, EdgeKind::Ww);
            }
        }
    }
    for (id, k, list) in &reads {
        if let Some(last) = list.last() {
            if let Some((w, _)) = writer.get(&(k.clone(), last.clone())) {
                add(*w, *id, EdgeKind::Wr);
            }
        }
        if let Some(next) = order.get(k).and_then(|o| o.get(list.len())) {
            if let Some((w, _)) = writer.get(&(k.clone(), next.clone())) {
                add(*id, *w, EdgeKind::Rw);
            }
        }
        for w in unobserved.get(k).into_iter().flatten() {
            add(*id, *w, EdgeKind::Rw);
        }
    }
    let realtime = needs_realtime(models);
    if realtime {
        for (a, b) in realtime_edges(&txn_ops) {
            add(a, b, EdgeKind::Realtime);
        }
    }
    let deadline = Instant::now() + budget;
    let mut cycles = find_cycles(&edges, realtime, deadline);
    anomalies.append(&mut cycles);
    let mut not: BTreeSet<&str> = BTreeSet::new();
    for a in &anomalies {
        not.extend(ruled_out(&a.kind).iter().copied());
    }
    Ok(ElleReport {
        txns: txn_ops.iter().filter(|t| t.1 != Outcome::Fail).count(),
        anomalies,
        not: MODELS.iter().filter(|m| not.contains(*m)).map(|m| m.to_string()).collect(),
    })
}

/// Real-time order, transitively reduced: an edge from each transaction completed
/// before `t` began and not already followed by another such transaction.
fn realtime_edges(txns: &[(usize, Outcome, Vec<Micro>, u64, u64)]) -> Vec<(usize, usize)> {
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for (id, outcome, _, call, ret) in txns {
        if *outcome == Outcome::Fail {
            continue;
        }
        events.push((*call, 1, *id));
        if *ret != u64::MAX {
            events.push((*ret, 0, *id));
        }
    }
    // At equal times, completions first would order them; intervals are closed, so
    // invocations first.
    events.sort_by_key(|(t, kind, _)| (*t, 1 - *kind));
    let mut frontier: BTreeSet<usize> = BTreeSet::new();
    let mut preds: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut out = Vec::new();
    for (_, kind, id) in events {
        if kind == 1 {
            let p: Vec<usize> = frontier.iter().copied().collect();
            for &a in &p {
                out.push((a, id));
            }
            preds.insert(id, p);
        } else {
            for a in preds.remove(&id).unwrap_or_default() {
                frontier.remove(&a);
            }
            frontier.insert(id);
        }
    }
    out
}

fn scc(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    // Iterative Tarjan.
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if *i == 0 {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on[v] = true;
            }
            if *i < adj[v].len() {
                let w = adj[v][*i];
                *i += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(u, _)) = work.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// A path from `from` to `to` using only edges whose kinds are allowed, with at least
/// `min_rw` anti-dependency edges on it (0 or 1 is enough for our classes).
fn path(
    edges: &[HashMap<usize, BTreeSet<EdgeKind>>],
    allowed: &[EdgeKind],
    from: usize,
    to: usize,
    need_rw: bool,
    deadline: Instant,
) -> Option<Vec<usize>> {
    let mut seen: HashMap<(usize, bool), (usize, bool)> = HashMap::new();
    let mut queue = VecDeque::from([(from, false)]);
    seen.insert((from, false), (usize::MAX, false));
    let mut steps = 0u32;
    while let Some((v, has_rw)) = queue.pop_front() {
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() > deadline {
            return None;
        }
        if v == to && (has_rw || !need_rw) {
            let mut p = vec![v];
            let mut cur = (v, has_rw);
            while let Some(&prev) = seen.get(&cur) {
                if prev.0 == usize::MAX {
                    break;
                }
                p.push(prev.0);
                cur = prev;
            }
            p.reverse();
            return Some(p);
        }
        for (w, kinds) in &edges[v] {
            for k in kinds.iter().filter(|k| allowed.contains(k)) {
                let next = (*w, has_rw || *k == EdgeKind::Rw);
                if let std::collections::hash_map::Entry::Vacant(e) = seen.entry(next) {
                    e.insert((v, has_rw));
                    queue.push_back(next);
                }
            }
        }
    }
    None
}

fn find_cycles(edges: &[HashMap<usize, BTreeSet<EdgeKind>>], realtime: bool, deadline: Instant) -> Vec<Anomaly> {
    use EdgeKind::*;
    let mut out = Vec::new();
    let adj_of = |kinds: &[EdgeKind]| -> Vec<Vec<usize>> {
        edges
            .iter()
            .map(|m| m.iter().filter(|(_, k)| k.iter().any(|x| kinds.contains(x))).map(|(w, _)| *w).collect())
            .collect()
    };
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut timed_out = false;
    let classes: Vec<(&str, Vec<EdgeKind>)> = if realtime {
        vec![("", vec![Ww, Wr, Rw]), ("-realtime", vec![Ww, Wr, Rw, Realtime])]
    } else {
        vec![("", vec![Ww, Wr, Rw])]
    };
    for (suffix, all) in classes {
        let with = |extra: &[EdgeKind]| -> Vec<EdgeKind> {
            let mut v: Vec<EdgeKind> = extra.to_vec();
            if suffix == "-realtime" {
                v.push(Realtime);
            }
            v
        };
        // G0: write-write cycles; G1c: adding write-read.
        for (name, kinds) in [("G0", with(&[Ww])), ("G1c", with(&[Ww, Wr]))] {
            let label = format!("{name}{suffix}");
            if found.contains(name) {
                continue;
            }
            if let Some(comp) = scc(&adj_of(&kinds)).into_iter().next() {
                let a = comp[0];
                let b = *edges[a].keys().find(|w| comp.contains(w)).unwrap_or(&comp[1]);
                let witness = path(edges, &kinds, b, a, false, deadline).map(|mut p| {
                    p.insert(0, a);
                    p
                });
                out.push(Anomaly {
                    kind: label.clone(),
                    txns: witness.unwrap_or(comp.clone()),
                    detail: format!("cycle through {:?} edges", kinds),
                });
                found.insert(label.clone());
            }
        }
        // G-single: exactly one anti-dependency; G2-item: more than one.
        for comp in scc(&adj_of(&all)) {
            if Instant::now() > deadline {
                timed_out = true;
                break;
            }
            let members: BTreeSet<usize> = comp.iter().copied().collect();
            for &u in &comp {
                for (v, kinds) in &edges[u] {
                    if !members.contains(v) || !kinds.contains(&Rw) {
                        continue;
                    }
                    let single = format!("G-single{suffix}");
                    if !found.contains(&single) && !found.contains("G-single") {
                        if let Some(p) = path(edges, &with(&[Ww, Wr]), *v, u, false, deadline) {
                            out.push(Anomaly {
                                kind: single.clone(),
                                txns: [vec![u], p].concat(),
                                detail: "one anti-dependency in a cycle".into(),
                            });
                            found.insert(single);
                        }
                    }
                    let g2 = format!("G2-item{suffix}");
                    if !found.contains(&g2) && !found.contains("G2-item") {
                        if let Some(p) = path(edges, &all, *v, u, true, deadline) {
                            out.push(Anomaly {
                                kind: g2.clone(),
                                txns: [vec![u], p].concat(),
                                detail: "several anti-dependencies in a cycle".into(),
                            });
                            found.insert(g2);
                        }
                    }
                    if Instant::now() > deadline {
                        timed_out = true;
                        break;
                    }
                }
                if timed_out {
                    break;
                }
            }
        }
    }
    if timed_out {
        out.push(Anomaly {
            kind: "cycle-search-timeout".into(),
            txns: vec![],
            detail: "the cycle search ran out of time".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventType;
    use serde_json::json;

    fn txn(p: i64, kind: EventType, value: Value) -> Event {
        Event { process: Some(p), kind, f: "txn".into(), key: Value::Null, value, time: None, error: None, node: None }
    }

    #[test]
    fn serial_history_is_clean_and_lost_update_is_caught() {
        let ok = vec![
            txn(1, EventType::Invoke, json!([["append", "x", 1]])),
            txn(1, EventType::Ok, json!([["append", "x", 1]])),
            txn(2, EventType::Invoke, json!([["r", "x", null], ["append", "x", 2]])),
            txn(2, EventType::Ok, json!([["r", "x", [1]], ["append", "x", 2]])),
            txn(1, EventType::Invoke, json!([["r", "x", null]])),
            txn(1, EventType::Ok, json!([["r", "x", [1, 2]]])),
        ];
        assert!(check(&ok, Duration::from_secs(1)).unwrap().anomalies.is_empty());
        // Two transactions both read [] and append: each misses the other (G2/G-single).
        let lost = vec![
            txn(1, EventType::Invoke, json!([["r", "x", null], ["append", "x", 1]])),
            txn(2, EventType::Invoke, json!([["r", "x", null], ["append", "x", 2]])),
            txn(1, EventType::Ok, json!([["r", "x", []], ["append", "x", 1]])),
            txn(2, EventType::Ok, json!([["r", "x", []], ["append", "x", 2]])),
            txn(3, EventType::Invoke, json!([["r", "x", null]])),
            txn(3, EventType::Ok, json!([["r", "x", [1, 2]]])),
        ];
        let r = check(&lost, Duration::from_secs(1)).unwrap();
        assert!(r.anomalies.iter().any(|a| a.kind == "G-single" || a.kind == "G2-item"), "{:?}", r.anomalies);
        assert!(r.not.contains(&"serializable".to_string()));
    }
}
