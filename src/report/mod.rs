//! `twinload report <summary.json>`: one self-contained HTML page about a finished run, with
//! inline SVG charts from the run's timeline (`<summary>.timeline.ndjson`, written by
//! [`crate::observe::timeline`]): the achieved rate per limit class against the configured
//! limit, throttles and retries, latency, progress; and the summary's figures in tables.
//!
//! - [`svg`]: the line charts.
//! - [`cli`]: the subcommand.

pub mod cli;
pub mod svg;

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::observe::timeline::{self, Sample};
use svg::{escape, line_chart, Series, PALETTE};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a twinload summary: {detail}")]
    NotASummary { path: String, detail: String },
    #[error(
        "cannot read the timeline {path}: {source}. It is written next to the summary by `twinload load --summary`"
    )]
    Timeline { path: String, source: std::io::Error },
}

/// Reads a summary and its timeline and renders the page.
pub fn render_files(summary_path: &Path) -> Result<String, ReportError> {
    let shown = summary_path.display().to_string();
    let text =
        std::fs::read_to_string(summary_path).map_err(|source| ReportError::Read { path: shown.clone(), source })?;
    let summary: Value = serde_json::from_str(&text)
        .map_err(|e| ReportError::NotASummary { path: shown.clone(), detail: e.to_string() })?;
    if !summary["items"].is_object() {
        return Err(ReportError::NotASummary { path: shown, detail: "it has no \"items\"".into() });
    }
    let tl_path = timeline::path_for(summary_path);
    let samples = timeline::read(&tl_path)
        .map_err(|source| ReportError::Timeline { path: tl_path.display().to_string(), source })?;
    Ok(render(&summary, &samples, &shown))
}

fn per_second(n: u64, dt: f64) -> f64 {
    if dt > 0.0 {
        n as f64 / dt
    } else {
        0.0
    }
}

/// The charts, in page order: (id, html).
pub fn charts(samples: &[Sample]) -> Vec<(&'static str, String)> {
    let mut classes: Vec<String> = samples.iter().flat_map(|s| s.requests_by_class.keys().cloned()).collect();
    classes.sort();
    classes.dedup();
    let mut rate = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        rate.push(Series {
            name: format!("{class} achieved"),
            color,
            dashed: false,
            points: samples
                .iter()
                .map(|s| (s.t, per_second(s.requests_by_class.get(class).copied().unwrap_or(0), s.dt)))
                .collect(),
        });
        rate.push(Series {
            name: format!("{class} limit"),
            color,
            dashed: true,
            points: samples.iter().filter_map(|s| s.limit_per_s.get(class).map(|l| (s.t, *l))).collect(),
        });
    }
    let throttles = vec![
        Series {
            name: "throttled (429) /s".into(),
            color: PALETTE[1],
            dashed: false,
            points: samples.iter().map(|s| (s.t, per_second(s.throttled, s.dt))).collect(),
        },
        Series {
            name: "retries /s".into(),
            color: PALETTE[0],
            dashed: false,
            points: samples.iter().map(|s| (s.t, per_second(s.retries, s.dt))).collect(),
        },
        Series {
            name: "in flight".into(),
            color: PALETTE[2],
            dashed: false,
            points: samples.iter().map(|s| (s.t, s.in_flight as f64)).collect(),
        },
    ];
    let latency = vec![Series {
        name: "mean request latency".into(),
        color: PALETTE[0],
        dashed: false,
        points: samples.iter().filter(|s| s.latency_mean_s > 0.0).map(|s| (s.t, s.latency_mean_s * 1000.0)).collect(),
    }];
    let mut progress = Vec::new();
    for (i, kind) in ["models", "twins", "relationships"].iter().enumerate() {
        let planned = samples.last().and_then(|s| s.planned.get(*kind)).copied().unwrap_or(0);
        if planned == 0 {
            continue;
        }
        progress.push(Series {
            name: format!("{kind} done"),
            color: PALETTE[i],
            dashed: false,
            points: samples
                .iter()
                .map(|s| (s.t, 100.0 * s.done.get(*kind).copied().unwrap_or(0) as f64 / planned as f64))
                .collect(),
        });
    }
    vec![
        (
            "chart-rate",
            line_chart("chart-rate", "Achieved rate per limit class against its limit", "requests/s", &rate),
        ),
        (
            "chart-throttles",
            line_chart(
                "chart-throttles",
                "Throttles, retries and requests in flight",
                "per second / count",
                &throttles,
            ),
        ),
        ("chart-latency", line_chart("chart-latency", "Mean request latency per second", "milliseconds", &latency)),
        (
            "chart-progress",
            line_chart("chart-progress", "Progress: items landed or already there", "% of planned", &progress),
        ),
    ]
}

fn row(out: &mut String, cells: &[String]) {
    out.push_str("<tr>");
    for c in cells {
        let _ = write!(out, "<td>{}</td>", escape(c));
    }
    out.push_str("</tr>");
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn map_table(out: &mut String, title: &str, map: &Value) {
    let Some(m) = map.as_object().filter(|m| !m.is_empty()) else { return };
    let _ = write!(out, "<h3>{}</h3><table><tr><th>key</th><th>count</th></tr>", escape(title));
    for (k, v) in m {
        row(out, &[k.clone(), num(v)]);
    }
    out.push_str("</table>");
}

/// The page for a summary and its timeline.
pub fn render(summary: &Value, samples: &[Sample], source: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>twinload run report</title><style>\
         body{{font-family:sans-serif;margin:20px;color:#222;background:#fff}} table{{border-collapse:collapse;margin:8px 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{background:#f3f3f3}} td:first-child{{text-align:left}}\
         .chart{{display:block;margin:12px 0;border:1px solid #ddd}} .tables{{display:flex;gap:24px;flex-wrap:wrap}}\
         </style></head><body><h1>twinload run report</h1><p>From <code>{}</code>: {} samples of one second.</p><h2>Timeline</h2>",
        escape(source),
        samples.len()
    );
    // The charts first: a screenshot of the first screenful shows them all.
    for (_, chart) in charts(samples) {
        out.push_str(&chart);
    }
    out.push_str(
        "<p>Dashed lines: the configured limit. Latency is the mean of the requests answered in each second.</p>",
    );
    let _ = write!(out, "<h2>Summary</h2><table><tr><th>figure</th><th>value</th></tr>");
    for key in [
        "outcome",
        "exit_code",
        "elapsed_s",
        "write_elapsed_s",
        "t_star_s",
        "makespan_ratio",
        "requests_total",
        "throttled_total",
        "throttled_share",
        "retries_total",
        "writer_restarts",
        "file_problems",
    ] {
        row(&mut out, &[key.to_string(), num(&summary[key])]);
    }
    out.push_str("</table><h3>Items</h3><table><tr><th>kind</th><th>landed</th><th>already there</th><th>dead-lettered</th><th>not attempted</th></tr>");
    if let Some(items) = summary["items"].as_object() {
        for (kind, c) in items {
            row(
                &mut out,
                &[
                    kind.clone(),
                    num(&c["landed"]),
                    num(&c["already_existed"]),
                    num(&c["dead_lettered"]),
                    num(&c["not_attempted"]),
                ],
            );
        }
    }
    out.push_str("</table><div class=\"tables\">");
    map_table(&mut out, "Requests by status", &summary["requests_by_status"]);
    map_table(&mut out, "Requests by limit class", &summary["requests_by_class"]);
    map_table(&mut out, "Retries by reason", &summary["retries_by_reason"]);
    map_table(&mut out, "Dead letters by reason", &summary["dead_letters_by_reason"]);
    out.push_str("</div></body></html>\n");
    out
}
