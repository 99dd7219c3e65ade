//! Where a bulk action's tasks come from (the failed registry, a queue,
//! the delayed set) and what can be done to them there.

use maud::{Markup, html};
use redis_tasks_store::{Listing, RegistryKind};

use crate::filter::{FilterForm, Times};
use crate::layout::seg;

/// What a bulk action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Requeue,
    Delete,
    /// Queued or delayed tasks.
    Cancel,
}

impl Verb {
    pub(super) fn parse(text: &str) -> Option<Verb> {
        match text {
            "requeue" => Some(Verb::Requeue),
            "delete" => Some(Verb::Delete),
            "cancel" => Some(Verb::Cancel),
            _ => None,
        }
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            Verb::Requeue => "requeue",
            Verb::Delete => "delete",
            Verb::Cancel => "cancel",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Verb::Requeue => "Requeue",
            Verb::Delete => "Delete",
            Verb::Cancel => "Cancel",
        }
    }

    pub(super) fn done(self) -> &'static str {
        match self {
            Verb::Requeue => "Requeued",
            Verb::Delete => "Deleted",
            Verb::Cancel => "Canceled",
        }
    }

    /// What the tasks it acts on are called.
    pub(super) fn noun(self, n: u64) -> &'static str {
        match (self, n) {
            (Verb::Cancel, 1) => "task",
            (Verb::Cancel, _) => "tasks",
            (_, 1) => "failed task",
            _ => "failed tasks",
        }
    }

    pub(super) fn class(self) -> &'static str {
        if self == Verb::Requeue {
            "primary"
        } else {
            "danger"
        }
    }
}

/// The listing a bulk form was posted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Failed,
    Queue(String),
    Delayed,
}

impl Source {
    /// The source named by a posted form (`from_queue=NAME`,
    /// `from=delayed`, else the failed registry).
    pub(super) fn of(pairs: &[(String, String)]) -> Source {
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        match (get("from_queue"), get("from").map(String::as_str)) {
            (Some(queue), _) => Source::Queue(queue.clone()),
            (None, Some("delayed")) => Source::Delayed,
            _ => Source::Failed,
        }
    }

    /// The verbs that make sense here.
    pub(super) fn verbs(&self) -> &'static [Verb] {
        match self {
            Source::Failed => &[Verb::Requeue, Verb::Delete],
            Source::Queue(_) | Source::Delayed => &[Verb::Cancel],
        }
    }

    pub(crate) fn listing(&self) -> Listing {
        match self {
            Source::Failed => Listing::Registry(RegistryKind::Failed),
            Source::Queue(name) => Listing::Queue(name.clone()),
            Source::Delayed => Listing::Delayed,
        }
    }

    pub(crate) fn times(&self) -> Times {
        match self {
            Source::Failed => Times::Ended,
            Source::Queue(_) => Times::Enqueued,
            Source::Delayed => Times::Due,
        }
    }

    /// `of queue reports`, `of the delayed set`, or nothing.
    pub(super) fn words(&self) -> String {
        match self {
            Source::Failed => String::new(),
            Source::Queue(name) => format!(" of queue {name}"),
            Source::Delayed => " of the delayed set".to_owned(),
        }
    }

    /// The hidden fields that name the source in a form.
    pub(super) fn hidden(&self) -> Markup {
        html! {
            @match self {
                Source::Failed => {},
                Source::Queue(name) => { input type="hidden" name="from_queue" value=(name); },
                Source::Delayed => { input type="hidden" name="from" value="delayed"; },
            }
        }
    }

    /// The query naming the source (`from_queue=reports`), encoded.
    pub(super) fn query(&self) -> String {
        match self {
            Source::Failed => String::new(),
            Source::Queue(name) => format!("from_queue={}", seg(name)),
            Source::Delayed => "from=delayed".to_owned(),
        }
    }

    /// The page of the listing with the filter `back`.
    pub(super) fn link(&self, back: &FilterForm) -> String {
        let path = match self {
            Source::Failed => "/failed".to_owned(),
            Source::Queue(name) => format!("/queues/{}", seg(name)),
            Source::Delayed => "/delayed".to_owned(),
        };
        let query = back.query();
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
    }
}
