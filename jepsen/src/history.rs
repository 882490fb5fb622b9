//! Histories: events (invocations and completions) and the operations they pair into.
//!
//! An operation is invoked by a process and completed by the next event of the same
//! process: `ok` (it took effect, with that result), `fail` (it certainly did not take
//! effect) or `info` (unknown: it may take effect at any time after its invocation,
//! so its return time is +∞). An invocation never completed is `info` too. A process
//! runs one operation at a time and is never reused after an `info`.
//!
//! The on-disk format is JSON lines, one [`Event`] per line.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation starts.
    Invoke,
    /// It took effect.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown whether it took effect.
    Info,
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The client process, or `None` for the nemesis.
    pub process: Option<i64>,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The function: read, write, cas, txn, acquire, append, ...
    pub f: String,
    /// The key, for keyed workloads.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub key: Value,
    /// Argument (on invoke) or result (on completion).
    #[serde(default)]
    pub value: Value,
    /// Monotonic nanoseconds since the start of the test; `None` when the file has no
    /// usable times (then file order is time order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// The error, for fail and info completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The member the client talked to, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect with the recorded result.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown (timed out, connection lost, or never completed).
    Info,
}

/// An invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Position of this operation in the history's operation list.
    pub id: usize,
    /// The client process.
    pub process: i64,
    /// The function.
    pub f: String,
    /// The key (null when not keyed).
    pub key: Value,
    /// The invocation's value.
    pub input: Value,
    /// The completion's value (null for info operations).
    pub output: Value,
    /// How it ended.
    pub outcome: Outcome,
    /// When it was invoked (time or event position).
    pub call: u64,
    /// When it completed; `u64::MAX` for info operations.
    pub ret: u64,
    /// Index of the invocation event in the history.
    pub invoke_index: usize,
    /// Index of the completion event, if any.
    pub complete_index: Option<usize>,
    /// The completion's error text.
    pub error: Option<String>,
}

/// The return time given to operations whose effect is unknown.
pub const INFINITY: u64 = u64::MAX;

/// Why events do not form a history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A completion without an open invocation.
    #[error("event {index}: process {process} completes an operation it never invoked")]
    Unmatched {
        /// Event index.
        index: usize,
        /// Process.
        process: i64,
    },
    /// An invocation while the process already has one open.
    #[error("event {index}: process {process} invokes while its previous operation is open")]
    Overlap {
        /// Event index.
        index: usize,
        /// Process.
        process: i64,
    },
    /// A line that does not parse.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Pairs events into operations. Times: the events' `time` when every client event
/// has one, else the event's position. Nemesis events are skipped.
pub fn pair(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    let use_time = events.iter().filter(|e| e.process.is_some()).all(|e| e.time.is_some());
    let at = |i: usize, e: &Event| if use_time { e.time.unwrap_or(0) } else { i as u64 };
    let mut open: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut ops: Vec<Operation> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(p) = e.process else { continue };
        match e.kind {
            EventType::Invoke => {
                if open.contains_key(&p) {
                    return Err(HistoryError::Overlap { index: i, process: p });
                }
                open.insert(p, ops.len());
                ops.push(Operation {
                    id: ops.len(),
                    process: p,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    input: e.value.clone(),
                    output: Value::Null,
                    outcome: Outcome::Info,
                    call: at(i, e),
                    ret: INFINITY,
                    invoke_index: i,
                    complete_index: None,
                    error: None,
                });
            }
            kind => {
                let Some(idx) = open.remove(&p) else {
                    return Err(HistoryError::Unmatched { index: i, process: p });
                };
                let op = &mut ops[idx];
                op.complete_index = Some(i);
                op.error = e.error.clone();
                if op.key.is_null() {
                    op.key = e.key.clone();
                }
                match kind {
                    EventType::Ok => {
                        op.outcome = Outcome::Ok;
                        op.output = e.value.clone();
                        op.ret = at(i, e);
                    }
                    EventType::Fail => {
                        op.outcome = Outcome::Fail;
                        op.output = e.value.clone();
                        op.ret = at(i, e);
                    }
                    _ => op.outcome = Outcome::Info,
                }
            }
        }
    }
    Ok(ops)
}

/// Reads a JSON-lines history.
pub fn read_jsonl(reader: impl BufRead) -> Result<Vec<Event>, HistoryError> {
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| HistoryError::Parse { line: n + 1, message: e.to_string() })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| HistoryError::Parse { line: n + 1, message: e.to_string() })?);
    }
    Ok(out)
}

/// Writes one event as a JSON line.
pub fn write_jsonl(mut w: impl Write, e: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut w, e)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(process: i64, kind: EventType, f: &str, value: Value) -> Event {
        Event {
            process: Some(process),
            kind,
            f: f.into(),
            key: Value::Null,
            value,
            time: None,
            error: None,
            node: None,
        }
    }

    #[test]
    fn pairing_by_process_with_unknown_outcomes() {
        let events = vec![
            ev(1, EventType::Invoke, "write", 1.into()),
            ev(2, EventType::Invoke, "read", Value::Null),
            ev(1, EventType::Ok, "write", 1.into()),
            ev(2, EventType::Info, "read", Value::Null),
            ev(3, EventType::Invoke, "write", 2.into()),
        ];
        let ops = pair(&events).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!((ops[0].outcome, ops[0].call, ops[0].ret), (Outcome::Ok, 0, 2));
        assert_eq!((ops[1].outcome, ops[1].ret), (Outcome::Info, INFINITY));
        assert_eq!((ops[2].outcome, ops[2].complete_index), (Outcome::Info, None));
        let bad = vec![ev(1, EventType::Ok, "write", 1.into())];
        assert!(matches!(pair(&bad), Err(HistoryError::Unmatched { .. })));
    }

    #[test]
    fn jsonl_round_trip() {
        let e = ev(1, EventType::Invoke, "cas", serde_json::json!([1, 2]));
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &e).unwrap();
        assert_eq!(read_jsonl(buf.as_slice()).unwrap(), vec![e]);
    }
}
