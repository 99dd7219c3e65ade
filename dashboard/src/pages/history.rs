//! The history section of the overview and of a queue's page: the
//! endings of the last hour, day or three days (`?range=1h|24h|72h`, plain
//! links) in bars, drawn by `charts`, with the numbers in a table.

use jiff::Timestamp;
use maud::{Markup, html};
use redis_tasks_store::{MinuteStats, Store, StoreError};
use serde::Deserialize;

use crate::charts::{self, Bar};
use crate::layout::seg;

/// How far back the charts look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Range {
    /// 60 bars of a minute.
    Hour,
    /// 96 bars of 15 minutes.
    Day,
    /// 72 bars of an hour.
    ThreeDays,
}

/// `?range=` of the pages with charts; anything unknown is the last hour.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeQuery {
    range: Option<String>,
}

impl RangeQuery {
    pub(crate) fn range(&self) -> Range {
        match self.range.as_deref() {
            Some("24h") => Range::Day,
            Some("72h") => Range::ThreeDays,
            _ => Range::Hour,
        }
    }
}

impl Range {
    const ALL: [Range; 3] = [Range::Hour, Range::Day, Range::ThreeDays];

    fn param(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::ThreeDays => "72h",
        }
    }

    fn caption(self) -> &'static str {
        match self {
            Range::Hour => "last hour, per minute",
            Range::Day => "last 24 hours, per 15 minutes",
            Range::ThreeDays => "last 72 hours, per hour",
        }
    }

    /// Minutes per bar, and how many bars.
    fn shape(self) -> (i64, i64) {
        match self {
            Range::Hour => (1, 60),
            Range::Day => (15, 96),
            Range::ThreeDays => (60, 72),
        }
    }
}

/// What the section shows: the bars, and the raw minutes of the span (for
/// the last few minutes' counts).
pub(crate) struct History {
    range: Range,
    pub(crate) bars: Vec<Bar>,
    minutes: Vec<MinuteStats>,
    now_minute: i64,
}

impl History {
    /// The endings of the last `minutes` minutes (this one included).
    pub(crate) fn recent(&self, minutes: i64) -> MinuteStats {
        let mut sum = MinuteStats::default();
        for m in self
            .minutes
            .iter()
            .filter(|m| m.minute > self.now_minute - minutes)
        {
            sum.merge(m);
        }
        sum
    }
}

/// Reads the history of `queue` (every queue for `None`) over `range`
/// up to `now`: one pipeline of `HGETALL`s per partition.
pub(crate) fn read(
    store: &Store,
    queue: Option<&str>,
    range: Range,
    now: Timestamp,
) -> Result<History, StoreError> {
    let (per, count) = range.shape();
    let now_minute = now.as_second().div_euclid(60);
    let last_start = now_minute - now_minute.rem_euclid(per);
    let first_start = last_start - (count - 1) * per;
    let since = Timestamp::from_second(first_start * 60).unwrap_or(now);
    let minutes = store.history(queue, since, now)?;
    let mut bars: Vec<Bar> = (0..count)
        .map(|i| Bar {
            label: label(first_start + i * per, now_minute),
            stats: MinuteStats::default(),
        })
        .collect();
    for m in &minutes {
        let i = (m.minute - first_start).div_euclid(per);
        if let Some(bar) = usize::try_from(i).ok().and_then(|i| bars.get_mut(i)) {
            bar.stats.merge(m);
        }
    }
    Ok(History {
        range,
        bars,
        minutes,
        now_minute,
    })
}

/// A bar's label: how long before now it starts ("now", "45 min ago",
/// "2 h 15 min ago").
fn label(start: i64, now_minute: i64) -> String {
    let ago = (now_minute - start).max(0);
    match (ago / 60, ago % 60) {
        (0, 0) => "now".to_owned(),
        (0, m) => format!("{m} min ago"),
        (h, 0) => format!("{h} h ago"),
        (h, m) => format!("{h} h {m} min ago"),
    }
}

/// The section: range links, both charts, and the table of the bars that
/// have endings. `path`: the page's own path, for the links.
pub(crate) fn section(path: &str, h: &History) -> Markup {
    let caption = h.range.caption();
    html! {
        section.history #history {
            h2 { "History, " (caption) }
            p.ranges {
                @for r in Range::ALL {
                    @if r == h.range {
                        strong aria-current="page" { (r.param()) }
                    } @else {
                        a href={ (path) "?range=" (r.param()) } { (r.param()) }
                    }
                    " "
                }
            }
            p #history-totals { (charts::totals(&h.bars)) " (" (caption) ")." }
            div.charts {
                (charts::endings(&h.bars, caption))
                (charts::times(&h.bars, caption))
            }
            details {
                summary { "The numbers" }
                (table(&h.bars))
            }
        }
    }
}

fn table(bars: &[Bar]) -> Markup {
    let p = |h: &redis_tasks_store::Histogram, q| {
        h.percentile(q).map(charts::duration).unwrap_or_default()
    };
    html! {
        div.scroll { table #history-table {
            thead { tr {
                th { "from" } th { "finished" } th { "failed" } th { "retried" } th { "canceled" }
                th { "run p50" } th { "run p95" } th { "wait p50" } th { "wait p95" }
            } }
            tbody {
                @for b in bars.iter().filter(|b| b.stats.total() > 0) {
                    @let s = &b.stats;
                    tr {
                        td { (b.label) }
                        td.num { (s.finished) } td.num { (s.failed) } td.num { (s.retried) } td.num { (s.canceled) }
                        td.num { (p(&s.run, 0.5)) } td.num { (p(&s.run, 0.95)) }
                        td.num { (p(&s.wait, 0.5)) } td.num { (p(&s.wait, 0.95)) }
                    }
                }
            }
        } }
    }
}

/// The path of queue `name`'s page.
pub(crate) fn queue_path(name: &str) -> String {
    format!("/queues/{}", seg(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_how_long_ago_a_bar_starts() {
        assert_eq!(label(100, 100), "now");
        assert_eq!(label(55, 100), "45 min ago");
        assert_eq!(label(0, 120), "2 h ago");
        assert_eq!(label(0, 135), "2 h 15 min ago");
    }

    #[test]
    fn unknown_ranges_are_the_last_hour() {
        let of = |r: Option<&str>| {
            RangeQuery {
                range: r.map(str::to_owned),
            }
            .range()
        };
        assert_eq!(of(Some("24h")), Range::Day);
        assert_eq!(of(Some("72h")), Range::ThreeDays);
        assert_eq!(of(Some("<script>")), Range::Hour);
        assert_eq!(of(None), Range::Hour);
    }
}
