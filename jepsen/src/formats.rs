//! Reading histories written by other tools: Porcupine's etcd logs (Jepsen 2015
//! console lines) and key-value files, Knossos/Elle EDN operation maps, and our own
//! JSON lines. Everything becomes [`Event`]s.

use std::path::Path;

use serde_json::Value;

use crate::edn::{self, Edn};
use crate::history::{self, Event, EventType};

/// A history file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// strake's JSON lines.
    Jsonl,
    /// Porcupine's `jepsen/etcd_NNN.log`.
    PorcupineLog,
    /// Porcupine's `kv/*.txt`.
    PorcupineKv,
    /// Jepsen/Knossos/Elle EDN.
    Edn,
}

/// Why a file cannot be read as a history.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// I/O.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Bad EDN.
    #[error(transparent)]
    Edn(#[from] edn::EdnError),
    /// Bad structure.
    #[error("{0}")]
    History(#[from] history::HistoryError),
    /// A line or form that is not an operation.
    #[error("line {line}: {message}")]
    Malformed {
        /// 1-based line or form number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Guesses the format from the name and content.
pub fn detect(path: &Path, text: &str) -> Format {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".jsonl") || text.trim_start().starts_with("{\"") {
        Format::Jsonl
    } else if text.contains("jepsen.util") || name.ends_with(".log") {
        Format::PorcupineLog
    } else if name.ends_with(".txt") {
        Format::PorcupineKv
    } else {
        Format::Edn
    }
}

/// Reads `path` in `format` (detected when `None`).
pub fn read(path: &Path, format: Option<Format>) -> Result<(Format, Vec<Event>), FormatError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| FormatError::Io { path: path.display().to_string(), source: e })?;
    let format = format.unwrap_or_else(|| detect(path, &text));
    let events = match format {
        Format::Jsonl => history::read_jsonl(text.as_bytes())?,
        Format::PorcupineLog => porcupine_log(&text)?,
        Format::PorcupineKv => {
            let forms = edn::parse_all(&text)?;
            edn_events(&forms)?
        }
        Format::Edn => {
            let forms = edn::parse_all(&text)?;
            let forms = match forms.as_slice() {
                [Edn::List(items)] => items.clone(),
                _ => forms,
            };
            edn_events(&forms)?
        }
    };
    Ok((format, events))
}

fn kind_of(k: &str) -> Option<EventType> {
    Some(match k {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        _ => return None,
    })
}

/// `INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]` (tabs, or runs of spaces).
pub fn porcupine_log(text: &str) -> Result<Vec<Event>, FormatError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.split_once("jepsen.util - ").map(|(_, r)| r) else { continue };
        let mut fields = rest.split_whitespace();
        let bad = |m: &str| FormatError::Malformed { line: n + 1, message: m.to_string() };
        let process: i64 = fields.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("no process"))?;
        let kind = fields.next().and_then(|k| kind_of(k.trim_start_matches(':'))).ok_or_else(|| bad("no type"))?;
        let f = fields.next().ok_or_else(|| bad("no function"))?.trim_start_matches(':').to_string();
        let value_text: Vec<&str> = fields.collect();
        let value = match edn::parse_all(&value_text.join(" "))?.into_iter().next() {
            Some(v) => v.to_json(),
            None => Value::Null,
        };
        out.push(Event {
            process: Some(process),
            kind,
            f,
            key: Value::Null,
            value,
            time: None,
            error: None,
            node: None,
        });
    }
    Ok(out)
}

/// Knossos/Elle/Porcupine-kv operation maps. `:process :nemesis` becomes a nemesis
/// event; a missing `:process` pairs each invocation with the next completion.
pub fn edn_events(forms: &[Edn]) -> Result<Vec<Event>, FormatError> {
    let mut out = Vec::new();
    let mut synthetic = -1i64;
    for (n, form) in forms.iter().enumerate() {
        let bad = |m: &str| FormatError::Malformed { line: n + 1, message: m.to_string() };
        let kind = form.get("type").and_then(Edn::as_keyword).and_then(kind_of).ok_or_else(|| bad("no :type"))?;
        let process = match form.get("process") {
            Some(Edn::Int(p)) => Some(*p),
            Some(Edn::Keyword(k)) if k == "nemesis" => None,
            Some(_) => return Err(bad("bad :process")),
            None => {
                if kind == EventType::Invoke {
                    synthetic -= 1;
                }
                Some(synthetic)
            }
        };
        let f = match form.get("f") {
            Some(Edn::Keyword(k)) | Some(Edn::Str(k)) | Some(Edn::Symbol(k)) => k.clone(),
            _ => "txn".to_string(),
        };
        let error = form.get("error").map(|e| e.to_json().to_string());
        out.push(Event {
            process,
            kind,
            f,
            key: form.get("key").map_or(Value::Null, Edn::to_json),
            value: form.get("value").map_or(Value::Null, Edn::to_json),
            time: None,
            error,
            node: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcupine_lines_with_tabs_and_spaces() {
        let text = "INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\nINFO  jepsen.util - 4   :info   :write   :timed-out\n";
        let ev = porcupine_log(text).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].value, serde_json::json!([3, 0]));
        assert_eq!(ev[1].kind, EventType::Info);
        assert_eq!(ev[1].f, "write");
    }

    #[test]
    fn edn_nemesis_and_missing_process() {
        let forms = edn::parse_all(
            "{:process :nemesis :type :info :f :kill}\n{:type :invoke :value [[:append 1 2]]}\n{:type :ok :value [[:append 1 2]]}",
        )
        .unwrap();
        let ev = edn_events(&forms).unwrap();
        assert_eq!(ev[0].process, None);
        assert_eq!(ev[1].process, ev[2].process);
        assert_eq!(ev[1].f, "txn");
        assert_eq!(ev[1].value, serde_json::json!([["append", 1, 2]]));
    }
}
