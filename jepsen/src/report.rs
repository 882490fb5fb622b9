//! A self-contained HTML report: a timeline of operations per process with the
//! fault windows shaded and, on failure, the operations of the failing window
//! highlighted; then the verdict and its details.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::check::CheckReport;
use crate::history::{self, Event, Outcome};
use crate::runner::{RunConfig, Window};
use crate::wgl::Verdict;

/// Most operations drawn (the rest are summarised).
pub const MAX_DRAWN_OPS: usize = 20_000;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&#39;")
}

/// The timeline of `events` as an SVG element. `highlight` holds the event indices of
/// operations to emphasise.
pub fn timeline_svg(events: &[Event], windows: &[Window], highlight: &BTreeSet<usize>) -> String {
    let ops = history::pair(events).unwrap_or_default();
    let end_time = events.iter().filter_map(|e| e.time).max().unwrap_or(1).max(1) as f64;
    let use_time = events.iter().all(|e| e.time.is_some());
    let t = |op_time: u64, index: usize| if use_time { op_time as f64 } else { index as f64 };
    let span = if use_time { end_time } else { events.len().max(1) as f64 };
    let processes: BTreeSet<i64> = ops.iter().map(|o| o.process).collect();
    let row: BTreeMap<i64, usize> = processes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let (width, row_h, left) = (1400.0, 14.0, 60.0);
    let height = 30.0 + row_h * processes.len().max(1) as f64;
    let x = |v: f64| left + (width - left - 10.0) * v / span;
    let mut svg = format!("<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='monospace' font-size='10'>");
    for w in windows {
        let _ = write!(
            svg,
            "<rect x='{:.1}' y='0' width='{:.1}' height='{height}' fill='#f5c2c2' fill-opacity='0.45'><title>{}</title></rect>",
            x(w.start as f64),
            (x(w.end as f64) - x(w.start as f64)).max(1.0),
            esc(&w.label)
        );
    }
    for (p, r) in &row {
        let _ = write!(svg, "<text x='2' y='{:.1}'>p{p}</text>", 22.0 + row_h * *r as f64);
    }
    for op in ops.iter().take(MAX_DRAWN_OPS) {
        let y = 14.0 + row_h * row[&op.process] as f64;
        let start = x(t(op.call, op.invoke_index));
        let stop = match op.complete_index {
            Some(ci) if op.outcome != Outcome::Info => x(t(op.ret, ci)),
            _ => width - 10.0,
        };
        let hot = highlight.contains(&op.complete_index.unwrap_or(op.invoke_index));
        let color = match (hot, op.outcome) {
            (true, _) => "#d62728",
            (_, Outcome::Ok) => "#2ca02c",
            (_, Outcome::Fail) => "#ff9896",
            (_, Outcome::Info) => "#bbbbbb",
        };
        let _ = write!(
            svg,
            "<rect x='{start:.1}' y='{y:.1}' width='{:.1}' height='{:.1}' fill='{color}' stroke='{}'><title>#{} p{} {} {} {} → {} ({:?})</title></rect>",
            (stop - start).max(1.5),
            row_h - 3.0,
            if hot { "black" } else { "none" },
            op.complete_index.unwrap_or(op.invoke_index),
            op.process,
            esc(&op.f),
            esc(&op.key.to_string()),
            esc(&op.input.to_string()),
            esc(&op.output.to_string()),
            op.outcome
        );
    }
    svg.push_str("</svg>");
    svg
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>{}</title><style>\
         body{{font-family:sans-serif;margin:20px}} .ok{{color:#2ca02c}} .bad{{color:#d62728}} .unknown{{color:#888}}\
         pre{{background:#f6f6f6;padding:8px;overflow:auto}} .scroll{{overflow:auto;border:1px solid #ddd}}\
         table{{border-collapse:collapse}} td,th{{border:1px solid #ddd;padding:2px 6px;font-size:12px}}</style></head><body>{}</body></html>",
        esc(title),
        body
    )
}

fn verdict_html(v: Verdict) -> &'static str {
    match v {
        Verdict::Linearizable => "<h2 class='ok'>valid</h2>",
        Verdict::NotLinearizable => "<h2 class='bad'>anomaly found</h2>",
        Verdict::Unknown => "<h2 class='unknown'>undecided</h2>",
    }
}

fn check_details(check: &CheckReport) -> (String, BTreeSet<usize>) {
    let mut body = String::new();
    let mut hot = BTreeSet::new();
    let _ = write!(
        body,
        "<p>model <b>{:?}</b>, {} operations, {:.1} ms, {} partition(s)</p>",
        check.model,
        check.ops,
        check.elapsed_ms,
        check.partitions.len()
    );
    if let Some(f) = &check.failure {
        if let Some(op) = &f.op {
            hot.insert(op.index);
            let _ = write!(
                body,
                "<p class='bad'>First operation that cannot be linearized: event #{} — process {} {} key {} input {} output {}</p>",
                op.index,
                op.process,
                esc(&op.f),
                esc(&op.key.to_string()),
                esc(&op.input.to_string()),
                esc(&op.output.to_string())
            );
        }
        if let Some(p) = f.previous_ok {
            let _ = write!(body, "<p>Last ok completion before it: event #{p}</p>");
        }
        body.push_str("<h3>A minimal non-linearizable sub-history</h3><table><tr><th>event</th><th>process</th><th>f</th><th>key</th><th>input</th><th>output</th><th>outcome</th></tr>");
        for op in &f.minimal {
            hot.insert(op.index);
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td></tr>",
                op.index,
                op.process,
                esc(&op.f),
                esc(&op.key.to_string()),
                esc(&op.input.to_string()),
                esc(&op.output.to_string()),
                op.outcome
            );
        }
        body.push_str("</table>");
    }
    if !check.anomalies.is_empty() {
        let _ = write!(
            body,
            "<p class='bad'>Anomalies: {}</p><p>Ruled out: {}</p>",
            esc(&check.anomalies.join(", ")),
            esc(&check.not.join(", "))
        );
        body.push_str("<pre>");
        for n in &check.notes {
            let _ = writeln!(body, "{}", esc(n));
        }
        body.push_str("</pre>");
    }
    (body, hot)
}

/// The report of a harness run.
pub fn html(
    cfg: &RunConfig,
    events: &[Event],
    windows: &[Window],
    check: Option<&CheckReport>,
    problems: &[String],
    verdict: Verdict,
) -> String {
    let mut body = format!(
        "<h1>strake jepsen: {} × {} members, {:?}</h1><p>{:?} for {:?}, {} processes, faults {:?}</p>{}",
        esc(&cfg.target.name),
        cfg.target.members,
        cfg.workload,
        cfg.target.flavor,
        cfg.duration,
        cfg.concurrency,
        cfg.faults,
        verdict_html(verdict)
    );
    let (details, hot) = check.map(check_details).unwrap_or_default();
    body.push_str(&details);
    if !problems.is_empty() {
        body.push_str("<h3 class='bad'>Watch violations</h3><pre>");
        for p in problems {
            let _ = writeln!(body, "{}", esc(p));
        }
        body.push_str("</pre>");
    }
    body.push_str("<h3>Timeline</h3><p>Bars run from invocation to completion: green ok, pink failed, grey unknown (open-ended), red the failing window; shaded bands are faults.</p><div class='scroll'>");
    body.push_str(&timeline_svg(events, windows, &hot));
    body.push_str("</div>");
    page("strake jepsen report", &body)
}

/// The report of a stored history checked with `strake jepsen check`.
pub fn check_html(events: &[Event], check: &CheckReport) -> String {
    let mut body = format!("<h1>{}</h1>{}", esc(&check.file), verdict_html(check.verdict));
    let (details, hot) = check_details(check);
    body.push_str(&details);
    body.push_str("<h3>Timeline</h3><div class='scroll'>");
    body.push_str(&timeline_svg(events, &[], &hot));
    body.push_str("</div>");
    page(&check.file, &body)
}
