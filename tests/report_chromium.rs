//! The run report as a person sees it: a small load against the mock (with throttles) writes
//! its summary and timeline, `twinload report` renders the page, and the page opens in a real
//! headless Chromium (Debian's `chromium`, installed by tests/run.sh). The screenshot is kept
//! under the target dir (`$CARGO_TARGET_TMPDIR/report-screenshot.png`) and checked: every
//! chart's plot area holds drawn series. The HTML is checked too: every chart has polylines
//! with points, and the rate chart has its dashed limit line.
//!
//! Nothing is skipped: without Chromium the test fails and says how to install it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use twinload::report::svg;

const BIN: &str = env!("CARGO_BIN_EXE_twinload");
const CHARTS: [&str; 4] = ["chart-rate", "chart-throttles", "chart-latency", "chart-progress"];
/// The page's CSS: body margin 20 px, chart border 1 px.
const PAGE_MARGIN: u32 = 20;
const WINDOW: (u32, u32) = (1200, 2000);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(path).is_file() {
            return PathBuf::from(path);
        }
    }
    panic!("chromium is not installed: run tests/run.sh (it installs it) or `apt-get install -y chromium`");
}

/// Runs a small throttled load and returns the summary's path.
fn small_load(dir: &Path) -> PathBuf {
    let mut mock = Command::new(BIN)
        .args(["mock-adt", "--no-auth", "--fault-429-rate", "0.05", "--seed", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(mock.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let _mock = Killed(mock);
    let url = first[first.find("http://").expect("the mock prints its address")..].trim().to_string();
    let fleet = dir.join("fleet.ndjson");
    assert!(Command::new(BIN).args(["gen", "--twins", "100", "--out"]).arg(&fleet).status().unwrap().success());
    let summary = dir.join("run.json");
    // adt-2021 (50 creates/s): about 6 s of writing, so the timeline has several seconds.
    let status = Command::new(BIN)
        .args(["load", "--endpoint", &url, "--limits", "adt-2021", "--input"])
        .arg(&fleet)
        .arg("--summary")
        .arg(&summary)
        .arg("--dead-letter")
        .arg(dir.join("dead.ndjson"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the load lands everything");
    summary
}

/// `points="x,y x,y …"` of every polyline in one chart's SVG.
fn polylines(html: &str, chart: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let start = html.find(&format!("id=\"{chart}\"")).unwrap_or_else(|| panic!("no chart {chart}"));
    let end = start + html[start..].find("</svg>").unwrap();
    html[start..end]
        .split("<polyline")
        .skip(1)
        .map(|p| {
            let tag = &p[..p.find("/>").unwrap()];
            let points = tag.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            let pts = points
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            (tag.to_string(), pts)
        })
        .collect()
}

#[test]
fn the_report_page_shows_its_charts_with_data_in_chromium() {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let summary = small_load(dir.path());
    let page = dir.path().join("report.html");
    let out = Command::new(BIN).arg("report").arg(&summary).arg("--out").arg(&page).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), page.display().to_string(), "it prints the page's path");

    // The HTML: self-contained, every chart with series of several points inside the plot.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script") && !html.contains("src=\"http"), "the page stands alone");
    for chart in CHARTS {
        let lines = polylines(&html, chart);
        assert!(!lines.is_empty(), "{chart} has no series");
        for (tag, pts) in &lines {
            assert!(pts.len() >= 3, "{chart}: a series with {} points: {tag}", pts.len());
            for (x, y) in pts {
                assert!((svg::LEFT..=svg::WIDTH - svg::RIGHT).contains(x), "{chart}: x {x} outside the plot");
                assert!((svg::TOP..=svg::HEIGHT - svg::BOTTOM).contains(y), "{chart}: y {y} outside the plot");
            }
        }
    }
    let rate = polylines(&html, "chart-rate");
    assert!(rate.iter().any(|(tag, _)| tag.contains("create_delete limit") && tag.contains("stroke-dasharray")));
    // The achieved create/delete rate is drawn above the x axis somewhere (it moved).
    let achieved = &rate.iter().find(|(tag, _)| tag.contains("create_delete achieved")).unwrap().1;
    assert!(achieved.iter().any(|(_, y)| *y < svg::HEIGHT - svg::BOTTOM - 1.0));
    assert!(html.contains("<td>twins</td>") && html.contains("makespan_ratio"));

    // The screenshot, kept as an artifact.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "chromium did not finish the screenshot");
        std::thread::sleep(Duration::from_millis(200));
    }
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("chromium wrote the screenshot"));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width, info.height);
    let px = |x: u32, y: u32| {
        let i = ((y * w + x) as usize) * channels;
        (buf[i], buf[i + 1], buf[i + 2])
    };

    // The charts' frames: rows where the 1 px #ddd border runs the chart's width.
    let chart_w = svg::WIDTH as u32;
    let border_rows: Vec<u32> = (0..h)
        .filter(|&y| (PAGE_MARGIN..PAGE_MARGIN + chart_w).filter(|&x| px(x, y) == (221, 221, 221)).count() > 900)
        .collect();
    let mut frames = Vec::new();
    let mut rows = border_rows.iter().peekable();
    while let Some(&top) = rows.next() {
        // The frame's bottom border is the chart's height (plus the border) below its top.
        let bottom = top + svg::HEIGHT as u32 + 1;
        if border_rows.contains(&bottom) {
            frames.push(top);
            while rows.peek().is_some_and(|&&r| r <= bottom) {
                rows.next();
            }
        }
    }
    assert_eq!(frames.len(), CHARTS.len(), "chart frames found at rows {frames:?} (borders at {border_rows:?})");
    for (chart, top) in CHARTS.iter().zip(&frames) {
        // Inside the plot area: anything clearly colored is a drawn series (axes, grid and text
        // are grey or black).
        let x0 = PAGE_MARGIN + 1 + svg::LEFT as u32 + 2;
        let x1 = PAGE_MARGIN + 1 + (svg::WIDTH - svg::RIGHT) as u32 - 2;
        let y0 = top + 1 + svg::TOP as u32 + 2;
        let y1 = top + 1 + (svg::HEIGHT - svg::BOTTOM) as u32 + 1;
        let colored = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let (r, g, b) = px(x, y);
                r.max(g).max(b) - r.min(g).min(b) > 60
            })
            .count();
        assert!(
            colored > 500,
            "{chart}: only {colored} colored pixels in its plot area (screenshot {})",
            shot.display()
        );
    }
}
