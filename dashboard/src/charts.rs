//! Charts of the history of endings as hand-written SVG: no script, no
//! asset, nothing fetched. Each chart names itself in a `<title>` (with the
//! totals it shows), so a screen reader gets the gist; the numbers bar by
//! bar are in a table below them (`pages::history`).
//!
//! Both charts draw the same bars, oldest on the left: [`endings`] stacks
//! the finished, failed, retried and canceled tasks of each bar, [`times`]
//! draws the p50 and p95 of run time and queue wait as lines on a log
//! scale.

use std::fmt::Write;
use std::time::Duration;

use maud::{Markup, html};
use redis_tasks_store::MinuteStats;

/// The drawing's size in SVG units (it scales to the page's width).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
/// Room for the y labels on the left and the x labels below.
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 26.0;
const TOP: f64 = 10.0;

/// One bar of a chart: the endings of its minutes, merged.
pub(crate) struct Bar {
    /// What its x label and tooltip call it ("14:05", "3 h ago").
    pub(crate) label: String,
    pub(crate) stats: MinuteStats,
}

/// A kind of ending: its name, CSS class, and count in a bar.
type Kind = (&'static str, &'static str, fn(&MinuteStats) -> u64);

/// The kinds of ending, in stacking order (bottom first).
const KINDS: [Kind; 4] = [
    ("finished", "h-f", |s| s.finished),
    ("failed", "h-x", |s| s.failed),
    ("retried", "h-r", |s| s.retried),
    ("canceled", "h-c", |s| s.canceled),
];

/// The percentile lines: name, CSS class, which histogram, which rank.
const LINES: [(&str, &str, bool, f64); 4] = [
    ("run time p50", "l-run", true, 0.5),
    ("run time p95", "l-run p95", true, 0.95),
    ("queue wait p50", "l-wait", false, 0.5),
    ("queue wait p95", "l-wait p95", false, 0.95),
];

/// The sums of each kind over `bars`, as "N finished, N failed, ...".
pub(crate) fn totals(bars: &[Bar]) -> String {
    let mut out = String::new();
    for (i, (name, _, count)) in KINDS.iter().enumerate() {
        let n: u64 = bars.iter().map(|b| count(&b.stats)).sum();
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{n} {name}");
    }
    out
}

fn slot_width(bars: &[Bar]) -> f64 {
    (WIDTH - LEFT) / bars.len().max(1) as f64
}

/// The x labels: the first bar's, the middle one's and the last one's.
fn x_labels(bars: &[Bar]) -> Markup {
    let w = slot_width(bars);
    let picks = [0, bars.len() / 2, bars.len().saturating_sub(1)];
    html! {
        @for (n, i) in picks.iter().enumerate() {
            @if let Some(bar) = bars.get(*i) {
                @let anchor = ["start", "middle", "end"][n];
                @let x = match n { 0 => LEFT, 1 => LEFT + w * (*i as f64 + 0.5), _ => WIDTH };
                text.axis x=(fmt(x)) y=(fmt(HEIGHT - 7.0)) text-anchor=(anchor) { (bar.label) }
            }
        }
    }
}

/// Stacked bars of the endings of each bar, `caption` naming the span.
pub(crate) fn endings(bars: &[Bar], caption: &str) -> Markup {
    let peak = bars
        .iter()
        .map(|b| b.stats.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = HEIGHT - BOTTOM - TOP;
    let w = slot_width(bars);
    let title = format!("Endings, {caption}: {}", totals(bars));
    html! {
        figure { svg.chart #endings-chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby="endings-title" {
            title #endings-title { (title) }
            line.grid x1=(fmt(LEFT)) y1=(fmt(TOP)) x2=(fmt(WIDTH)) y2=(fmt(TOP)) {}
            line.grid x1=(fmt(LEFT)) y1=(fmt(TOP + plot)) x2=(fmt(WIDTH)) y2=(fmt(TOP + plot)) {}
            text.axis x=(fmt(LEFT - 6.0)) y=(fmt(TOP + 10.0)) text-anchor="end" { (peak) }
            text.axis x=(fmt(LEFT - 6.0)) y=(fmt(TOP + plot)) text-anchor="end" { "0" }
            @for (i, bar) in bars.iter().enumerate() {
                @if bar.stats.total() > 0 {
                    g {
                        title { (bar.label) ": " (totals(std::slice::from_ref(bar))) }
                        @let x = LEFT + w * i as f64 + w * 0.1;
                        @for (class, y, h) in stack(&bar.stats, plot, peak) {
                            rect class=(class) x=(fmt(x)) y=(fmt(y)) width=(fmt(w * 0.8)) height=(fmt(h)) {}
                        }
                    }
                }
            }
            (x_labels(bars))
        }
        p.legend {
            @for (name, class, _) in &KINDS {
                span { svg.key viewBox="0 0 10 10" aria-hidden="true" { rect class=(class) width="10" height="10" {} } " " (name) }
                " "
            }
        } }
    }
}

/// The rectangles of one bar's kinds, bottom first: class, top, height
/// (kinds with no ending left out).
fn stack(stats: &MinuteStats, plot: f64, peak: u64) -> Vec<(&'static str, f64, f64)> {
    let mut base = TOP + plot;
    let mut out = Vec::new();
    for (_, class, count) in &KINDS {
        let n = count(stats);
        if n > 0 {
            let h = plot * n as f64 / peak as f64;
            base -= h;
            out.push((*class, base, h));
        }
    }
    out
}

/// A percentile of a bar, in ms.
fn ms(bar: &Bar, run: bool, q: f64) -> Option<f64> {
    let h = if run { &bar.stats.run } else { &bar.stats.wait };
    h.percentile(q).map(|d| d.as_secs_f64() * 1000.0)
}

/// Lines of the p50 and p95 of run time and queue wait per bar, on a log
/// scale from 1 ms (or less) up to the largest power of ten needed.
pub(crate) fn times(bars: &[Bar], caption: &str) -> Markup {
    let top_ms = bars
        .iter()
        .flat_map(|b| [ms(b, true, 0.95), ms(b, false, 0.95)])
        .flatten()
        .fold(1000.0f64, f64::max);
    // Decades from 0.1 ms (bucket 0 is drawn there) to above the largest.
    let decades = top_ms.log10().ceil().max(1.0) + 1.0;
    let plot = HEIGHT - BOTTOM - TOP;
    let y_of = |ms: f64| TOP + plot - plot * (ms.max(0.1).log10() + 1.0) / decades;
    let w = slot_width(bars);
    let x_of = |i: usize| LEFT + w * (i as f64 + 0.5);
    let title = format!(
        "Run time and queue wait, {caption}: p50 and p95 per bar, log scale{}",
        overall(bars)
    );
    html! {
        figure { svg.chart #times-chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby="times-title" {
            title #times-title { (title) }
            @for d in 0..=(decades as i32) {
                @let v = 10f64.powi(d - 1);
                @let y = y_of(v);
                line.grid x1=(fmt(LEFT)) y1=(fmt(y)) x2=(fmt(WIDTH)) y2=(fmt(y)) {}
                @if d > 0 {
                    text.axis x=(fmt(LEFT - 6.0)) y=(fmt(y + 6.0)) text-anchor="end" { (duration(Duration::from_secs_f64(v / 1000.0))) }
                }
            }
            @for (name, class, run, q) in &LINES {
                @for points in segments(bars, |b| ms(b, *run, *q)) {
                    @let xy: Vec<String> = points.iter().map(|(i, v)| format!("{},{}", fmt(x_of(*i)), fmt(y_of(*v)))).collect();
                    @if let [(i, v)] = points.as_slice() {
                        circle class=(class) cx=(fmt(x_of(*i))) cy=(fmt(y_of(*v))) r="2.5" { title { (name) } }
                    } @else {
                        polyline class=(class) points=(xy.join(" ")) { title { (name) } }
                    }
                }
            }
            (x_labels(bars))
        }
        p.legend {
            @for (name, class, _, _) in &LINES {
                span { svg.key viewBox="0 0 20 10" aria-hidden="true" { line class=(class) x1="0" y1="5" x2="20" y2="5" {} } " " (name) }
                " "
            }
        } }
    }
}

/// The p50 and p95 over every bar, for the chart's title.
fn overall(bars: &[Bar]) -> String {
    let mut all = MinuteStats::default();
    for b in bars {
        all.merge(&b.stats);
    }
    let p = |h: &redis_tasks_store::Histogram, q| h.percentile(q).map(duration);
    match (
        p(&all.run, 0.5),
        p(&all.run, 0.95),
        p(&all.wait, 0.5),
        p(&all.wait, 0.95),
    ) {
        (Some(r50), Some(r95), Some(w50), Some(w95)) => {
            format!("; overall run time p50 {r50}, p95 {r95}; queue wait p50 {w50}, p95 {w95}")
        }
        _ => "; no run in this span".to_owned(),
    }
}

/// The runs of consecutive bars that have a value: a gap breaks a line.
fn segments(bars: &[Bar], value: impl Fn(&Bar) -> Option<f64>) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, bar) in bars.iter().enumerate() {
        match value(bar) {
            Some(v) => current.push((i, v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A duration as the charts print it: `0.5 ms`, `12 ms`, `1.4 s`, `3 min`,
/// `2.5 h`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    let (v, unit) = match ms {
        m if m < 1000.0 => (m, "ms"),
        m if m < 60_000.0 => (m / 1000.0, "s"),
        m if m < 3_600_000.0 => (m / 60_000.0, "min"),
        m => (m / 3_600_000.0, "h"),
    };
    if v < 10.0 && v.fract() > 0.05 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.0} {unit}")
    }
}

/// A coordinate with one decimal.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, finished: u64, failed: u64, run_bucket: usize) -> Bar {
        let mut stats = MinuteStats {
            finished,
            failed,
            ..MinuteStats::default()
        };
        stats.run.add(run_bucket, finished + failed);
        stats.wait.add(1, finished + failed);
        Bar {
            label: label.to_owned(),
            stats,
        }
    }

    #[test]
    fn the_endings_chart_names_its_totals_and_draws_a_rect_per_kind() {
        let bars = [bar("a", 3, 1, 10), bar("b", 0, 0, 0), bar("c", 2, 0, 20)];
        let svg = endings(&bars, "last hour").into_string();
        assert!(svg.contains("<title id=\"endings-title\">Endings, last hour: 5 finished, 1 failed, 0 retried, 0 canceled</title>"), "{svg}");
        assert_eq!(svg.matches("<rect class=\"h-f\"").count(), 2 + 1, "{svg}");
        assert_eq!(svg.matches("<rect class=\"h-x\"").count(), 1 + 1);
        // Every element is closed (an HTML parser would nest unclosed ones).
        assert_eq!(svg.matches("<rect").count(), svg.matches("</rect>").count());
    }

    #[test]
    fn a_gap_breaks_the_lines() {
        let bars = [
            bar("a", 1, 0, 10),
            bar("b", 0, 0, 0),
            bar("c", 1, 0, 20),
            bar("d", 1, 0, 21),
        ];
        let svg = times(&bars, "last hour").into_string();
        // Four lines, each a dot (bar a) and a polyline (bars c and d).
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains("overall run time p50"), "{svg}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_micros(500)), "0.5 ms");
        assert_eq!(duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(duration(Duration::from_millis(1400)), "1.4 s");
        assert_eq!(duration(Duration::from_secs(180)), "3 min");
        assert_eq!(duration(Duration::from_secs(9000)), "2.5 h");
    }
}
