//! The filter of a listing page (`?queue=&task=&error=&text=&since=&before=`):
//! read from a query string or a form, checked, turned into the store's
//! [`TaskFilter`] for the listing's sense of time ([`Times`]), written back
//! into links and hidden fields, and said in words for a confirmation.

use jiff::{SignedDuration, Timestamp};
use maud::{Markup, html};
use redis_tasks_config::schedule::parse_duration;
use redis_tasks_store::TaskFilter;
use serde::Deserialize;

use crate::layout::seg;

/// Longest value a filter field takes (a queue name, a task name, a piece
/// of an error, a duration).
const FIELD_MAX: usize = 200;

/// The filter fields as given (empty ones are unset).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct FilterForm {
    #[serde(default)]
    pub(crate) queue: Option<String>,
    #[serde(default)]
    pub(crate) task: Option<String>,
    #[serde(default)]
    pub(crate) error: Option<String>,
    /// Text in the error or the description.
    #[serde(default)]
    pub(crate) text: Option<String>,
    /// A duration: newer than that (due within it, for the delayed set).
    #[serde(default)]
    pub(crate) since: Option<String>,
    /// A duration: older than that (due later than it, for the delayed
    /// set).
    #[serde(default)]
    pub(crate) before: Option<String>,
}

/// What a listing's time is, and which fields its form shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Times {
    /// A registry: when the task ended; every field.
    Ended,
    /// A queue's tasks: when they were enqueued; no queue field.
    Enqueued,
    /// The delayed set: when a task is due, in the future.
    Due,
    /// Running tasks: when they started.
    Started,
}

impl Times {
    fn since_label(self) -> &'static str {
        match self {
            Times::Ended => "ended within",
            Times::Enqueued => "enqueued within",
            Times::Due => "due within",
            Times::Started => "started within",
        }
    }

    fn before_label(self) -> &'static str {
        match self {
            Times::Ended => "ended over",
            Times::Enqueued => "enqueued over",
            Times::Due => "due after",
            Times::Started => "started over",
        }
    }
}

/// A set field's value, trimmed; `None` when empty.
fn set(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl FilterForm {
    /// The form of the `(name, value)` pairs of a posted form (other
    /// names are ignored).
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> FilterForm {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        FilterForm {
            queue: get("queue"),
            task: get("task"),
            error: get("error"),
            text: get("text"),
            since: get("since"),
            before: get("before"),
        }
    }

    /// Whether any field is set.
    pub(crate) fn is_set(&self) -> bool {
        self.fields().iter().any(|(_, v)| v.is_some())
    }

    fn fields(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("queue", set(&self.queue)),
            ("task", set(&self.task)),
            ("error", set(&self.error)),
            ("text", set(&self.text)),
            ("since", set(&self.since)),
            ("before", set(&self.before)),
        ]
    }

    /// The store's filter at `now` for a listing whose time is `times`,
    /// or why the form is not one (a field too long, a duration that does
    /// not parse).
    pub(crate) fn to_filter(&self, now: Timestamp, times: Times) -> Result<TaskFilter, String> {
        for (name, value) in self.fields() {
            if value.is_some_and(|v| v.len() > FIELD_MAX) {
                return Err(format!(
                    "the {name} filter is longer than {FIELD_MAX} bytes"
                ));
            }
        }
        let ago = |name: &str, field: &Option<String>| match set(field) {
            None => Ok(None),
            Some(text) => {
                let secs = parse_duration(text)
                    .map_err(|e| format!("{name}: {e} (give a duration such as 30m, 2h or 1d)"))?;
                let span = SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX));
                Ok::<_, String>(Some(if times == Times::Due {
                    now.checked_add(span).unwrap_or(Timestamp::MAX)
                } else {
                    now.checked_sub(span).unwrap_or(Timestamp::MIN)
                }))
            }
        };
        let (newer, older) = (ago("since", &self.since)?, ago("before", &self.before)?);
        // In the future, "within" is the upper end and "after" the lower.
        let (since, until) = if times == Times::Due {
            (older, newer)
        } else {
            (newer, older)
        };
        Ok(TaskFilter {
            queue: set(&self.queue).map(str::to_owned),
            task: set(&self.task).map(str::to_owned),
            error_contains: set(&self.error).map(str::to_owned),
            text: set(&self.text).map(str::to_owned),
            since,
            until,
        })
    }

    /// `queue=mail&error=timeout` (set fields only, percent-encoded), to
    /// follow `?` or `&` in a link.
    pub(crate) fn query(&self) -> String {
        self.fields()
            .iter()
            .filter_map(|(name, value)| value.map(|v| format!("{name}={}", seg(v))))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `queue=mail, error contains 'timeout'`: the filter in words, its
    /// time as the listing's (`times`).
    pub(crate) fn describe(&self, times: Times) -> String {
        let mut parts = Vec::new();
        if let Some(q) = set(&self.queue) {
            parts.push(format!("queue={q}"));
        }
        if let Some(t) = set(&self.task) {
            parts.push(format!("task={t}"));
        }
        if let Some(e) = set(&self.error) {
            parts.push(format!("error contains '{e}'"));
        }
        if let Some(t) = set(&self.text) {
            parts.push(format!("error or description contains '{t}'"));
        }
        if let Some(s) = set(&self.since) {
            parts.push(format!("{} {s}", times.since_label()));
        }
        if let Some(s) = set(&self.before) {
            let ago = if times == Times::Due { "" } else { " ago" };
            parts.push(format!("{} {s}{ago}", times.before_label()));
        }
        parts.join(", ")
    }

    /// The set fields as hidden inputs (for a form that carries the
    /// filter on).
    pub(crate) fn hidden(&self) -> Markup {
        html! {
            @for (name, value) in self.fields() {
                @if let Some(v) = value {
                    input type="hidden" name=(name) value=(v);
                }
            }
        }
    }

    /// The GET form of a listing page at `path` whose time is `times`,
    /// filled in (a queue's page has no queue field).
    pub(crate) fn form(&self, path: &str, times: Times) -> Markup {
        let value = |v: &Option<String>| v.clone().unwrap_or_default();
        html! {
            form.filter #filter method="get" action=(path) {
                @if times != Times::Enqueued {
                    label { "queue " input type="text" name="queue" size="10" maxlength=(FIELD_MAX) value=(value(&self.queue)); }
                    " "
                }
                label { "task " input type="text" name="task" size="12" maxlength=(FIELD_MAX) value=(value(&self.task)); }
                " "
                label { "error contains " input type="text" name="error" size="14" maxlength=(FIELD_MAX) value=(value(&self.error)); }
                " "
                label { "error or description contains " input type="text" name="text" size="14" maxlength=(FIELD_MAX) value=(value(&self.text)); }
                " "
                label { (times.since_label()) " " input type="text" name="since" size="5" maxlength="20" placeholder="2h" value=(value(&self.since)); }
                " "
                label { (times.before_label()) " " input type="text" name="before" size="5" maxlength="20" placeholder="10m" value=(value(&self.before)); }
                " "
                button type="submit" { "Filter" }
                @if self.is_set() {
                    " " a href=(path) { "clear" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(queue: &str, error: &str, since: &str) -> FilterForm {
        FilterForm {
            queue: Some(queue.to_owned()),
            task: None,
            error: Some(error.to_owned()),
            text: None,
            since: Some(since.to_owned()),
            before: None,
        }
    }

    #[test]
    fn empty_fields_are_unset() {
        let f = form(" ", "", "");
        assert!(!f.is_set());
        assert_eq!(f.query(), "");
        assert_eq!(
            f.to_filter(Timestamp::now(), Times::Ended).expect("filter"),
            TaskFilter::default()
        );
    }

    #[test]
    fn a_filter_goes_into_links_and_words() {
        let f = form("mail", "time out&x", "2h");
        assert_eq!(f.query(), "queue=mail&error=time%20out%26x&since=2h");
        assert_eq!(
            f.describe(Times::Ended),
            "queue=mail, error contains 'time out&x', ended within 2h"
        );
        let now = Timestamp::now();
        let filter = f.to_filter(now, Times::Ended).expect("filter");
        assert_eq!(filter.since, Some(now - SignedDuration::from_hours(2)));
        assert_eq!(filter.error_contains.as_deref(), Some("time out&x"));
        // In the future, "within" bounds from above.
        let due = f.to_filter(now, Times::Due).expect("filter");
        assert_eq!(due.until, Some(now + SignedDuration::from_hours(2)));
        assert_eq!(due.since, None);
    }

    #[test]
    fn bad_fields_are_refused() {
        assert!(
            form("", "", "soon")
                .to_filter(Timestamp::now(), Times::Ended)
                .is_err()
        );
        let long = "x".repeat(FIELD_MAX + 1);
        assert!(
            form(&long, "", "")
                .to_filter(Timestamp::now(), Times::Ended)
                .is_err()
        );
    }
}
