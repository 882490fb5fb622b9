//! An SVG chart of latency percentiles, strake next to etcd, per workload.

use std::collections::BTreeMap;

use crate::report::Summary;

/// Grouped bars (p50 and p99, log scale) for every (members, workload).
pub fn latency_svg(agg: &BTreeMap<(usize, String, String), Summary>) -> String {
    let groups: Vec<(usize, String)> = {
        let mut g: Vec<(usize, String)> = agg.keys().map(|k| (k.0, k.1.clone())).collect();
        g.dedup();
        g
    };
    let bar_w = 14.0;
    let group_w = bar_w * 4.0 + 24.0;
    let width = 80.0 + group_w * groups.len().max(1) as f64;
    let height = 360.0;
    let plot_h = 260.0;
    let top = 30.0;
    let max_ms = agg.values().map(|s| s.p99_ms).fold(0.1f64, f64::max);
    let (lo, hi) = (0.01f64.log10(), max_ms.log10().ceil().max(0.0));
    let y = |ms: f64| top + plot_h - (ms.max(0.01).log10() - lo) / (hi - lo) * plot_h;
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' font-size='10'>\n\
         <text x='10' y='16' font-size='13'>Latency p50 / p99 (ms, log scale): strake (blue) vs etcd (orange)</text>\n"
    );
    let mut decade = lo.ceil();
    while decade <= hi {
        let yy = y(10f64.powf(decade));
        svg.push_str(&format!(
            "<line x1='60' x2='{width}' y1='{yy:.1}' y2='{yy:.1}' stroke='#ddd'/><text x='8' y='{:.1}'>{} ms</text>\n",
            yy + 3.0,
            10f64.powf(decade)
        ));
        decade += 1.0;
    }
    for (gi, (m, w)) in groups.iter().enumerate() {
        let x0 = 70.0 + gi as f64 * group_w;
        for (ti, (target, color)) in [("strake", "#1f77b4"), ("etcd", "#ff7f0e")].iter().enumerate() {
            if let Some(s) = agg.get(&(*m, w.clone(), target.to_string())) {
                for (pi, ms) in [s.p50_ms, s.p99_ms].iter().enumerate() {
                    let x = x0 + (ti * 2 + pi) as f64 * bar_w;
                    let yy = y(*ms);
                    let opacity = if pi == 0 { 0.55 } else { 1.0 };
                    svg.push_str(&format!(
                        "<rect x='{x:.1}' y='{yy:.1}' width='{:.1}' height='{:.1}' fill='{color}' fill-opacity='{opacity}'><title>{target} {} {w}: {ms:.2} ms</title></rect>\n",
                        bar_w - 2.0,
                        top + plot_h - yy,
                        if pi == 0 { "p50" } else { "p99" }
                    ));
                }
            }
        }
        svg.push_str(&format!(
            "<text x='{:.1}' y='{:.1}' transform='rotate(35 {:.1} {:.1})'>{w} ({m}m)</text>\n",
            x0,
            top + plot_h + 14.0,
            x0,
            top + plot_h + 14.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
