//! Every reference history (Porcupine's Jepsen etcd logs and kv files, Knossos'
//! examples, Elle's list-append cases) gets the verdict EXPECTED.tsv gives it, and
//! Knossos' failing-operation indices are reproduced. Prints per-file times.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use strake_jepsen::check::{self, ModelKind};
use strake_jepsen::wgl::Verdict;

fn histories_dir() -> PathBuf {
    std::env::var_os("STRAKE_HISTORIES_DIR")
        .map(PathBuf::from)
        .filter(|p| p.join("EXPECTED.tsv").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/histories"))
}

struct Row {
    file: String,
    model: String,
    expected: String,
    notes: String,
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(histories_dir().join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                file: f[0].into(),
                model: f[1].into(),
                expected: f[2].into(),
                notes: f.get(6).unwrap_or(&"").to_string(),
            }
        })
        .collect()
}

fn model_of(column: &str) -> (ModelKind, bool) {
    if column.starts_with("etcd-register") {
        (ModelKind::EtcdRegister, true)
    } else if column.starts_with("kv-append") {
        (ModelKind::KvAppend, !column.contains("no partitioning"))
    } else if column.starts_with("cas-register") {
        (ModelKind::CasRegister, true)
    } else if column.starts_with("multi-register") {
        (ModelKind::MultiRegister, true)
    } else if column.starts_with("mutex") {
        (ModelKind::Mutex, true)
    } else if column.starts_with("elle") {
        (ModelKind::ListAppend, true)
    } else {
        panic!("unknown model column {column:?}")
    }
}

fn number_after(text: &str, marker: &str) -> Option<usize> {
    let at = text.find(marker)? + marker.len();
    text[at..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn every_reference_history_gets_its_expected_verdict() {
    let mut failures = Vec::new();
    let mut times: Vec<(String, f64)> = Vec::new();
    let rows = rows();
    assert!(rows.len() >= 230, "EXPECTED.tsv has {} rows", rows.len());
    for row in &rows {
        let path = histories_dir().join(&row.file);
        let (kind, partition) = model_of(&row.model);
        if kind == ModelKind::ListAppend {
            continue; // checked below with each case's consistency models
        }
        let started = Instant::now();
        let report = check::check_file(&path, kind, None, partition, Some(Duration::from_secs(60)), false)
            .unwrap_or_else(|e| panic!("{}: {e}", row.file));
        times.push((
            format!("{} ({})", row.file, if partition { "partitioned" } else { "one state" }),
            started.elapsed().as_secs_f64() * 1000.0,
        ));
        let want = match row.expected.as_str() {
            "linearizable" => Verdict::Linearizable,
            "not-linearizable" => Verdict::NotLinearizable,
            // An empty file (the run never started): nothing to violate.
            "none" => Verdict::Linearizable,
            other => panic!("unknown expectation {other:?}"),
        };
        if report.verdict != want {
            failures.push(format!("{}: got {:?}, expected {:?}", row.file, report.verdict, want));
            continue;
        }
        if let Some(index) =
            number_after(&row.notes, "failing :op is index").or_else(|| number_after(&row.notes, "failing :op index"))
        {
            // Knossos' rethink tests use an initially absent register.
            let report = if row.notes.contains("(cas-register nil)") {
                let (_, events) = strake_jepsen::formats::read(&path, None).unwrap();
                let ops = strake_jepsen::history::pair(&events).unwrap();
                let model = strake_jepsen::model::Register { initial: None, knossos: true };
                let (verdict, _, failure, _) = check::check_ops(&model, &ops, true, None, true).unwrap();
                assert_eq!(verdict, Verdict::NotLinearizable, "{}", row.file);
                check::CheckReport { failure, ..report }
            } else {
                check::check_file(&path, kind, None, partition, None, true).unwrap()
            };
            let f = report.failure.as_ref().expect("a failure");
            let got = f.op.as_ref().map(|o| o.index);
            if got != Some(index) {
                failures.push(format!("{}: failing op {got:?}, Knossos says {index}", row.file));
            }
            if let Some(prev) = number_after(&row.notes, "previous-ok index") {
                if f.previous_ok != Some(prev) {
                    failures.push(format!("{}: previous ok {:?}, Knossos says {prev}", row.file, f.previous_ok));
                }
            }
        }
    }
    times.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    let total = |prefix: &str| times.iter().filter(|(f, _)| f.starts_with(prefix)).map(|(_, t)| t).sum::<f64>();
    eprintln!(
        "checker times: jepsen/ {:.1} ms, kv/ {:.1} ms, knossos/ {:.1} ms; slowest:",
        total("jepsen/"),
        total("kv/"),
        total("knossos/")
    );
    for (f, t) in times.iter().take(12) {
        eprintln!("  {t:>9.2} ms  {f}");
    }
    assert!(failures.is_empty(), "{} wrong verdicts:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn elle_cases() {
    let dir = histories_dir().join("elle");
    let read = |name: &str| strake_jepsen::formats::read(&dir.join(name), None).unwrap().1;
    let budget = Duration::from_secs(20);
    // Not repeatable read (G2-item), yet not a snapshot-isolation violation.
    let r = strake_jepsen::elle::check_models(
        &read("si-without-g-single.edn"),
        &["snapshot-isolation", "repeatable-read"],
        budget,
    )
    .unwrap();
    let kinds: Vec<&str> = r.anomalies.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["G2-item"], "{:?}", r.anomalies);
    assert!(r.not.contains(&"repeatable-read".to_string()));
    assert!(!r.not.contains(&"snapshot-isolation".to_string()), "{:?}", r.not);
    // The paper's example: a G2-item cycle.
    let r = strake_jepsen::elle::check(&read("paper-example.edn"), budget).unwrap();
    assert!(r.anomalies.iter().any(|a| a.kind.starts_with("G2-item")), "{:?}", r.anomalies);
    // A huge strongly connected component: invalid, within a bounded search.
    let started = Instant::now();
    let r = strake_jepsen::elle::check(&read("huge-scc.edn"), budget).unwrap();
    assert!(!r.anomalies.is_empty());
    assert!(r.not.contains(&"strong-snapshot-isolation".to_string()), "{:?}", r.not);
    eprintln!("huge-scc: {:?} in {:?}", r.anomalies.iter().map(|a| &a.kind).collect::<Vec<_>>(), started.elapsed());
}
