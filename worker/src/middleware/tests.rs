use std::sync::{Arc, Mutex};

use redis_tasks_protocol::{FailureKind, Outcome, TaskRecord, TaskStatus};
use serde_json::{Map, Value, json};

use super::*;
use crate::context::MetaSink;
use crate::registry::TaskOptions;
use crate::shutdown::ShutdownState;

struct NoMeta;
impl MetaSink for NoMeta {
    fn send_meta(&self, _: &str, _: &Map<String, Value>) -> Result<(), String> {
        Ok(())
    }
}

fn ctx() -> TaskContext {
    TaskContext::new(
        "id",
        "t",
        Map::new(),
        Arc::new(NoMeta),
        ShutdownState::passive(),
    )
}

type Log = Arc<Mutex<Vec<String>>>;

/// Records the task's argument on every call.
fn recording_task(log: &Log) -> TaskDef {
    let log = Arc::clone(log);
    TaskDef::new("t", TaskOptions::new(), move |_ctx, n: i64| {
        log.lock().expect("log").push(format!("task({n})"));
        if n < 0 { Err("negative") } else { Ok(()) }
    })
}

/// A middleware that logs around `next` and adds `add` to the argument.
struct Around {
    name: &'static str,
    add: i64,
    times: usize,
    log: Log,
}

impl Middleware for Around {
    fn name(&self) -> &str {
        self.name
    }
    fn run_task(&self, ctx: &TaskContext, args: Value, next: Next<'_>) -> Result<(), TaskError> {
        self.log
            .lock()
            .expect("log")
            .push(format!("{} before", self.name));
        let n = args.as_i64().unwrap_or(0) + self.add;
        for _ in 0..self.times {
            next.run(ctx, json!(n))?;
        }
        self.log
            .lock()
            .expect("log")
            .push(format!("{} after", self.name));
        Ok(())
    }
    fn process_outcome(&self, _task: &TaskRecord, outcome: Outcome) -> Outcome {
        self.log
            .lock()
            .expect("log")
            .push(format!("{} outcome", self.name));
        outcome
    }
}

fn around(name: &'static str, add: i64, times: usize, log: &Log) -> Arc<dyn Middleware> {
    Arc::new(Around {
        name,
        add,
        times,
        log: Arc::clone(log),
    })
}

fn record() -> TaskRecord {
    TaskRecord {
        id: "id".into(),
        task: "t".into(),
        args: json!(1),
        status: TaskStatus::Running,
        queue: "default".into(),
        description: "t(1)".into(),
        error: None,
        enqueued_at: jiff::Timestamp::UNIX_EPOCH,
        started_at: None,
        ended_at: None,
        meta: Map::new(),
        aborted_runs: Vec::new(),
        timeout: None,
        retry: None,
        attempts: Vec::new(),
        run_at: None,
        result: None,
        unique: None,
        expires_at: None,
        traceparent: None,
    }
}

#[test]
fn first_registered_is_outermost_and_may_change_args_and_repeat() {
    let log = Log::default();
    let chain = MiddlewareChain::select(
        &[around("outer", 10, 1, &log), around("inner", 1, 2, &log)],
        &[],
    )
    .expect("select");
    chain
        .run_task(&recording_task(&log), &ctx(), json!(0))
        .expect("runs");
    assert_eq!(
        *log.lock().expect("log"),
        [
            "outer before",
            "inner before",
            "task(11)",
            "task(11)",
            "inner after",
            "outer after"
        ]
    );
}

#[test]
fn a_middleware_may_skip_the_task() {
    let log = Log::default();
    let chain = MiddlewareChain::select(&[around("skip", 0, 0, &log)], &[]).expect("select");
    chain
        .run_task(&recording_task(&log), &ctx(), json!(1))
        .expect("runs");
    assert_eq!(*log.lock().expect("log"), ["skip before", "skip after"]);
}

#[test]
fn task_errors_and_bad_args_come_back_typed() {
    let log = Log::default();
    let chain = MiddlewareChain::default();
    let err = chain
        .run_task(&recording_task(&log), &ctx(), json!(-1))
        .expect_err("fails");
    assert_eq!(err, TaskError::Failed("negative".into()));
    let err = chain
        .run_task(&recording_task(&log), &ctx(), json!("x"))
        .expect_err("bad args");
    assert!(matches!(err, TaskError::InvalidArgs { .. }), "{err}");
}

#[test]
fn process_outcome_runs_in_reverse_order_and_survives_panics() {
    struct Panics;
    impl Middleware for Panics {
        fn process_outcome(&self, _: &TaskRecord, _: Outcome) -> Outcome {
            panic!("report server down")
        }
    }
    struct Handles;
    impl Middleware for Handles {
        fn process_outcome(&self, _: &TaskRecord, _: Outcome) -> Outcome {
            Outcome::Success
        }
    }
    let log = Log::default();
    let chain = MiddlewareChain::select(
        &[
            around("a", 0, 1, &log),
            Arc::new(Panics),
            around("b", 0, 1, &log),
        ],
        &[],
    )
    .expect("select");
    let out = chain.process_outcome(&record(), Outcome::Success);
    assert_eq!(*log.lock().expect("log"), ["b outcome", "a outcome"]);
    let text = out.error_text().expect("the panic became the failure");
    assert!(
        text.contains("Panics") && text.contains("report server down"),
        "{text}"
    );

    let chain = MiddlewareChain::select(&[Arc::new(Handles)], &[]).expect("select");
    let failed = Outcome::failure(FailureKind::WorkerDied);
    assert_eq!(chain.process_outcome(&record(), failed), Outcome::Success);
}

#[test]
fn settings_choose_and_order_middleware_by_name() {
    let log = Log::default();
    let registered = [around("a", 0, 1, &log), around("b", 0, 1, &log)];
    let chain = MiddlewareChain::select(&registered, &["b".into(), "a".into()]).expect("select");
    assert_eq!(chain.names(), ["b", "a"]);
    let err = MiddlewareChain::select(&registered, &["c".into()]).expect_err("unknown");
    assert!(
        err.to_string().contains("\"c\"") && err.to_string().contains("a, b"),
        "{err}"
    );
}

#[test]
fn a_failing_check_names_the_middleware() {
    struct NeedsSmtp;
    impl Middleware for NeedsSmtp {
        fn check(&self, _: &redis_tasks_config::Settings) -> Result<(), String> {
            Err("SMTP_HOST is not set".into())
        }
    }
    let chain = MiddlewareChain::select(&[Arc::new(NeedsSmtp)], &[]).expect("select");
    let err = chain
        .check(&redis_tasks_config::Settings::default())
        .expect_err("check fails");
    assert_eq!(
        err.to_string(),
        "middleware \"NeedsSmtp\" failed its start-up check: SMTP_HOST is not set"
    );
}
