//! The frame every page shares, its style sheet (inline: no asset is
//! fetched from anywhere), and formatting helpers.

use jiff::{SignedDuration, Timestamp};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use redis_tasks_protocol::TaskStatus;

use crate::AppState;

/// The style sheet: readable on a phone (one column, tables scroll
/// sideways), light and dark.
const STYLE: &str = r#"
:root { color-scheme: light dark; --fg:#1d1f21; --bg:#fafafa; --muted:#6a6f75; --line:#d8dbe0;
  --ok:#1a7f37; --bad:#c62828; --warn:#9a6700; --run:#0b62d6; --card:#fff; }
@media (prefers-color-scheme: dark) { :root { --fg:#e6e6e6; --bg:#15171a; --muted:#9aa0a6;
  --line:#33373d; --card:#1d2024; --ok:#4ac26b; --bad:#ff6b6b; --warn:#d29922; --run:#58a6ff; } }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; flex-wrap:wrap; gap:.3rem 1rem; align-items:baseline; padding:.6rem 1rem; border-bottom:1px solid var(--line); background:var(--card); }
header strong { font-size:1.05rem; margin-right:.5rem; }
header a { color:var(--fg); text-decoration:none; padding:.15rem 0; }
header a:hover { text-decoration:underline; }
header .ro { color:var(--warn); font-size:.85rem; }
header form.search { margin-left:auto; } header form.search input { padding:.2rem .4rem; }
form.filter { margin:.3rem 0 .8rem; } form.filter input[type=text] { padding:.25rem; }
main { padding:1rem; max-width:72rem; margin:0 auto; }
h1 { font-size:1.3rem; margin:.2rem 0 1rem; word-break:break-all; }
h2 { font-size:1.05rem; margin:1.5rem 0 .5rem; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(9rem, 1fr)); gap:.6rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:.6rem .8rem; }
.card .n { font-size:1.5rem; font-weight:600; }
.card .l { color:var(--muted); font-size:.85rem; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; background:var(--card); }
th, td { text-align:left; padding:.35rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:.8rem; color:var(--muted); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
code, pre { font-family:ui-monospace, "SFMono-Regular", Menlo, monospace; font-size:.85rem; }
pre { white-space:pre-wrap; word-break:break-word; background:var(--card); border:1px solid var(--line); padding:.6rem; border-radius:6px; margin:0; }
.muted { color:var(--muted); }
.status { font-weight:600; }
.s-finished { color:var(--ok); } .s-failed, .s-canceled { color:var(--bad); }
.s-running { color:var(--run); } .s-queued, .s-paused { color:var(--warn); } .s-active { color:var(--ok); }
ol.runs { margin:0; padding-left:1.2rem; }
.s-serving { color:var(--ok); } .s-quiet, .s-draining { color:var(--warn); } .s-stopping, .s-stopping-now { color:var(--bad); }
section.supervisor { margin-bottom:1.5rem; } div.actions { margin:.5rem 0; } input[type=number] { font:inherit; width:5rem; padding:.3rem; }
.flash { background:var(--card); border-left:4px solid var(--ok); padding:.5rem .8rem; margin-bottom:1rem; }
.flash.err { border-color:var(--bad); }
form.inline { display:inline; }
button { font:inherit; padding:.35rem .8rem; border-radius:6px; border:1px solid var(--line); background:var(--card); color:var(--fg); cursor:pointer; }
button.primary { border-color:var(--run); color:var(--run); }
button.danger { border-color:var(--bad); color:var(--bad); }
.actions { display:flex; flex-wrap:wrap; gap:.5rem; margin:.8rem 0; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:.3rem 1rem; margin:0; }
dt { color:var(--muted); } dd { margin:0; word-break:break-word; }
.charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(20rem, 1fr)); gap:0 1rem; } figure { margin:0; }
svg.chart { display:block; width:100%; height:auto; background:var(--card); border:1px solid var(--line); border-radius:6px; margin-top:.4rem; }
svg.chart .grid { stroke:var(--line); } svg.chart .axis { fill:var(--muted); font-size:17px; }
.h-f { fill:var(--ok); } .h-x { fill:var(--bad); } .h-r { fill:var(--warn); } .h-c { fill:var(--muted); }
.l-run, .l-wait { fill:none; stroke-width:1.6; } .l-run { stroke:var(--run); } .l-wait { stroke:var(--warn); }
circle.l-run { fill:var(--run); } circle.l-wait { fill:var(--warn); } .p95 { stroke-dasharray:4 3; }
p.legend { margin:.2rem 0 .6rem; font-size:.85rem; color:var(--muted); } svg.key { width:1.4em; height:.8em; vertical-align:middle; }
input[type=text], input[type=password] { font:inherit; padding:.35rem; border:1px solid var(--line); border-radius:6px; background:var(--card); color:var(--fg); max-width:100%; }
@media (max-width: 40rem) { main { padding:.6rem; } th, td { padding:.3rem .4rem; } }
"#;

/// A whole page: the frame around `body`, reloaded every
/// `refresh_secs` when `live`.
pub(crate) fn page(state: &AppState, title: &str, live: bool, body: Markup) -> Markup {
    let refresh = if live { state.options.refresh_secs } else { 0 };
    page_refreshed(state, title, refresh, body)
}

/// A whole page reloaded every `refresh` seconds (0: never).
pub(crate) fn page_refreshed(state: &AppState, title: &str, refresh: u32, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh > 0 {
                    meta http-equiv="refresh" content=(refresh);
                }
                title { (title) " · redis-tasks" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "redis-tasks" }
                    a href="/" { "Overview" }
                    a href="/running" { "Running" }
                    a href="/failed" { "Failed" }
                    a href="/finished" { "Finished" }
                    a href="/expired" { "Expired" }
                    a href="/canceled" { "Canceled" }
                    a href="/delayed" { "Delayed" }
                    a href="/supervisors" { "Supervisors" }
                    a href="/schedule" { "Schedule" }
                    a href="/graphs" { "Graphs" }
                    form.search method="get" action="/search" role="search" {
                        input type="text" name="q" placeholder="task id or prefix" aria-label="task id or prefix" maxlength="128" size="16";
                    }
                    @if state.options.read_only {
                        span.ro { "read-only" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A task status, coloured.
pub(crate) fn status(status: TaskStatus) -> Markup {
    let word = status.as_str();
    html! { span class={ "status s-" (word) } { (word) } }
}

/// A time, with how long ago it was.
pub(crate) fn time(t: Option<Timestamp>, now: Timestamp) -> Markup {
    match t {
        None => html! { span.muted { "-" } },
        Some(t) => html! {
            span title=(t.to_string()) { (ago(now.duration_since(t))) }
        },
    }
}

/// `3 s ago`, `5 min ago`, `in 2 h` for a signed span.
pub(crate) fn ago(span: SignedDuration) -> String {
    let secs = span.as_secs();
    if secs < 0 {
        format!("in {}", short(-secs))
    } else {
        format!("{} ago", short(secs))
    }
}

/// A length of time in its largest sensible unit: `42 s`, `3 min`, `5 h`,
/// `2 d`.
pub(crate) fn short(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

/// The message after an action, if any.
pub(crate) fn flash(done: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = done {
            div.flash #flash role="status" { (text) }
        }
    }
}

/// A POST button with the CSRF token (nothing in read-only mode).
pub(crate) fn action(state: &AppState, path: &str, label: &str, class: &str) -> Markup {
    // No credential, no token: the page has no action to offer.
    let Some(csrf) = crate::auth::csrf().filter(|_| !state.options.read_only) else {
        return html! {};
    };
    html! {
        form.inline method="post" action=(path) {
            input type="hidden" name="csrf" value=(csrf);
            button class=(class) type="submit" { (label) }
        }
    }
}

/// The path segment `s` with everything but unreserved characters
/// percent-encoded (task ids and queue names come from Redis).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("abc-1_2.x~"), "abc-1_2.x~");
        assert_eq!(seg("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn spans_read_in_their_unit() {
        assert_eq!(short(5), "5 s");
        assert_eq!(short(600), "10 min");
        assert_eq!(short(3 * 3600), "3 h");
        assert_eq!(ago(SignedDuration::from_secs(-90)), "in 90 s");
    }
}
