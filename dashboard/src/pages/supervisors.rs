//! The supervisors page: every running supervisor as it reports itself in
//! Redis, its slots and what each runs, and the quiet, stop and scale
//! buttons.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use redis_tasks_protocol::TaskRecord;
use redis_tasks_store::{MAX_SLOTS, StoreError, SupervisorState, WorkerInfo};
use serde::Deserialize;

use super::{listed, store_error};
use crate::AppState;
use crate::layout::{action, flash, page, seg, short};

/// One supervisor with its slots (and the record of each one's task).
type Row = (SupervisorState, Vec<(WorkerInfo, Option<TaskRecord>)>);

/// `?done=...` after a supervisor action: one of a few fixed words.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SupervisorFlash {
    done: Option<String>,
}

impl SupervisorFlash {
    fn text(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "quiet" => Some(
                "Quiet sent: the supervisor stops fetching within a second; running tasks go on.",
            ),
            "stop" => Some(
                "Stop sent: the supervisor stops fetching, lets running tasks drain, then exits.",
            ),
            "scale" => Some("Scale sent: the supervisor starts or retires slots in a moment."),
            _ => None,
        }
    }
}

/// `/supervisors`.
pub(crate) async fn supervisors(
    State(state): State<Arc<AppState>>,
    Query(flash_q): Query<SupervisorFlash>,
) -> Response {
    let read = state
        .blocking(|store| {
            let supervisors = store.supervisors()?;
            let workers = store.worker_infos()?;
            let mut rows: Vec<Row> = Vec::new();
            for s in supervisors {
                let own: Vec<WorkerInfo> = workers
                    .iter()
                    .filter(|w| w.supervisor == s.id && w.state != "dead")
                    .cloned()
                    .collect();
                let ids: Vec<String> = own.iter().filter_map(|w| w.current_task.clone()).collect();
                let mut records = listed(store, &ids)?.into_iter();
                let slots = own
                    .into_iter()
                    .map(|w| {
                        let record = match w.current_task {
                            Some(_) => records.next().and_then(Result::ok),
                            None => None,
                        };
                        (w, record)
                    })
                    .collect();
                rows.push((s, slots));
            }
            Ok::<_, StoreError>(rows)
        })
        .await;
    let rows = match read {
        Ok(rows) => rows,
        Err(e) => return store_error(&state, &e),
    };
    let now = Timestamp::now();
    let body = html! {
        h1 { "Supervisors" }
        (flash(flash_q.text()))
        p.muted {
            "Every running supervisor, as it reported itself at its last heartbeat. "
            em { "Quiet" } ", " em { "Stop" } " and " em { "Scale" }
            " reach it through Redis and act as SIGTSTP, SIGTERM and SIGTTIN/SIGTTOU do."
        }
        @if rows.is_empty() {
            p.muted { "No supervisor is running." }
        }
        @for (s, slots) in &rows {
            (supervisor(&state, s, slots, now))
        }
    };
    page(&state, "Supervisors", true, body).into_response()
}

fn mib(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "-".to_owned(),
    }
}

fn supervisor(
    state: &AppState,
    s: &SupervisorState,
    slots: &[(WorkerInfo, Option<TaskRecord>)],
    now: Timestamp,
) -> Markup {
    let base = format!("/supervisors/{}", seg(&s.id));
    let csrf = crate::auth::csrf().filter(|_| !state.options.read_only);
    html! {
        section.supervisor id={ "supervisor-" (s.id) } {
            h2 { code.sup-id { (s.id) } " " span.muted { (s.description) } }
            dl {
                dt { "state" } dd.mode { span class={ "status s-" (s.mode.replace(' ', "-")) } { (s.mode) } }
                dt { "host, pid" } dd { (s.host) ", " (s.pid) }
                dt { "version" } dd { (s.version) }
                dt { "up" } dd { (short(now.duration_since(s.started_at).as_secs().max(0))) }
                dt { "queues" } dd { (s.queues.join(", ")) }
                dt { "slots" } dd.slots { (s.busy) " busy of " (s.slots) ", " (s.wanted_slots) " wanted" }
                dt { "memory (RSS)" } dd { "supervisor " (mib(s.rss_bytes)) ", worker processes " (mib(s.workers_rss_bytes)) }
            }
            @if !s.mode.starts_with("stopping") && s.mode != "draining" {
                div.actions {
                    @if s.mode != "quiet" {
                        (action(state, &format!("{base}/quiet"), "Quiet", ""))
                    }
                    (action(state, &format!("{base}/stop"), "Stop", ""))
                    @if let Some(csrf) = &csrf {
                        form.inline method="post" action={ (base) "/scale" } {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="number" name="slots" min="1" max=(MAX_SLOTS) value=(s.wanted_slots) required aria-label="slots";
                            button type="submit" { "Scale" }
                        }
                    }
                }
            }
            div.scroll { table.slots {
                thead { tr { th { "slot" } th { "task" } th { "for" } } }
                tbody {
                    @for (w, record) in slots {
                        tr {
                            td { code { (w.id) } }
                            td {
                                @match (&w.current_task, record) {
                                    (Some(id), Some(r)) => a href={ "/tasks/" (seg(id)) } { (r.description) },
                                    (Some(id), None) => a href={ "/tasks/" (seg(id)) } { code { (id) } },
                                    (None, _) => span.muted { "idle" },
                                }
                            }
                            td {
                                @if let Some(started) = record.as_ref().and_then(|r| r.started_at) {
                                    (short(now.duration_since(started).as_secs().max(0)))
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}
