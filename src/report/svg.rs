//! Line charts as inline SVG: axes with round ticks, one `<polyline>` per series (dashed for
//! limits), a legend. No scripts and no external files, so the page stands alone.

use std::fmt::Write;

pub const WIDTH: f64 = 1000.0;
pub const HEIGHT: f64 = 300.0;
pub const LEFT: f64 = 70.0;
pub const RIGHT: f64 = 20.0;
/// Room above the plot for the title (first row) and the legend (second row).
pub const TOP: f64 = 44.0;
pub const BOTTOM: f64 = 40.0;

/// Colors of successive series (colorblind-safe palette).
pub const PALETTE: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// A limit or target line: drawn dashed.
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A round step giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn label(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A chart `id` with the x axis in seconds and the y axis in `unit`.
pub fn line_chart(id: &str, title: &str, unit: &str, series: &[Series]) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let x_max = all().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max);
    let y_step = nice_step(if y_max > 0.0 { y_max } else { 1.0 }, 5.0);
    let y_top = ((if y_max > 0.0 { y_max } else { 1.0 }) / y_step).ceil() * y_step;
    let x_step = nice_step(x_max, 10.0);
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let sx = |x: f64| LEFT + x / x_max * pw;
    let sy = |y: f64| TOP + ph - (y / y_top).clamp(0.0, 1.0) * ph;

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}">"#,
        t = escape(title)
    );
    let _ = write!(out, r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = write!(out, r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#, escape(title));
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= y_top + y_step / 2.0 {
        let py = sy(y);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            label(y)
        );
        y += y_step;
    }
    let mut x = 0.0;
    while x <= x_max + x_step / 2.0 {
        let px = sx(x);
        let _ = write!(
            out,
            r#"<text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            TOP + ph + 16.0,
            label(x)
        );
        x += x_step;
    }
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph,
        LEFT + pw,
        TOP + ph,
        TOP + ph
    );
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">seconds since the start</text><text x="14" y="{:.1}" font-size="11" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 6.0,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(unit)
    );
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let dash = if s.dashed { r#" stroke-dasharray="8 5""# } else { "" };
        let _ = write!(
            out,
            r#"<polyline class="series" data-name="{}" fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            escape(&s.name),
            s.color,
            points.join(" ")
        );
    }
    // Legend, under the title, one row.
    let mut lx = LEFT;
    for s in series {
        let dash = if s.dashed { r#" stroke-dasharray="8 5""# } else { "" };
        let _ = write!(
            out,
            r#"<line x1="{lx:.1}" x2="{:.1}" y1="31" y2="31" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="35" font-size="11">{}</text>"#,
            lx + 18.0,
            s.color,
            lx + 22.0,
            escape(&s.name)
        );
        lx += 30.0 + 6.5 * s.name.len() as f64;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_one_polyline_per_series_within_the_plot() {
        let s = |name: &str, pts: Vec<(f64, f64)>| Series {
            name: name.into(),
            color: PALETTE[0],
            dashed: false,
            points: pts,
        };
        let svg =
            line_chart("c", "A <title>", "req/s", &[s("a", vec![(0.0, 0.0), (10.0, 50.0)]), s("b", vec![(5.0, 25.0)])]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("A &lt;title&gt;"));
        assert!(svg.contains(r#"points="70.0,260.0 980.0,44.0""#), "{svg}");
        assert_eq!(nice_step(93.0, 5.0), 20.0);
    }
}
