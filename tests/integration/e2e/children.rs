//! Tasks that enqueue tasks through their supervisor (issue 24, point 1):
//! the demo's `fan_out` asks for `noop` children on a queue no supervisor
//! serves here, so every child written stays there to be counted, each
//! naming its parent in its arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use redis_tasks::protocol::TaskStatus;
use redis_tasks::store::{Limit, Rate};
use serde_json::json;

use super::{Demo, Running, error_of};

/// The children waiting on `queue`, by parent id: the `i` of each.
fn children_by_parent(demo: &Demo, queue: &str) -> BTreeMap<String, Vec<u64>> {
    let mut by_parent: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let q = demo.store.queue(queue);
    let n = q.count().expect("count");
    let ids = q.ids(0, usize::try_from(n).expect("fits")).expect("ids");
    for id in ids {
        let t = demo.task(&id);
        assert_eq!(t.task, "noop");
        let parent = t.args["parent"].as_str().expect("parent").to_owned();
        let i = t.args["i"].as_u64().expect("i");
        by_parent.entry(parent).or_default().push(i);
    }
    by_parent
}

fn fan_out(demo: &Demo, queue: &str, n: u32, mode: &str, then: &str) -> String {
    demo.store
        .queue(queue)
        .enqueue(
            "fan_out",
            &json!({"n": n, "queue": "kids", "mode": mode, "then": then}),
        )
        .expect("enqueue")
}

#[test]
fn children_are_written_now_or_only_when_the_parent_finishes() {
    let demo = Demo::new();
    let now_ok = fan_out(&demo, "default", 3, "now", "finish");
    let now_fail = fan_out(&demo, "default", 2, "now", "fail");
    let held_ok = fan_out(&demo, "default", 3, "on_success", "finish");
    let held_fail = fan_out(&demo, "default", 2, "on_success", "fail");
    let mut sup = demo.start(&["--concurrency", "2", "default"], &[]);
    for id in [&now_ok, &now_fail, &held_ok, &held_fail] {
        demo.wait_ended(id, Duration::from_secs(60));
    }
    sup.stop();
    assert_eq!(demo.task(&now_ok).status, TaskStatus::Finished);
    assert_eq!(demo.task(&held_fail).status, TaskStatus::Failed);

    let kids = children_by_parent(&demo, "kids");
    assert_eq!(kids.get(&now_ok).map(Vec::len), Some(3), "{kids:?}");
    // Written at once: they exist although the parent failed.
    assert_eq!(kids.get(&now_fail).map(Vec::len), Some(2), "{kids:?}");
    assert_eq!(kids.get(&held_ok).map(Vec::len), Some(3), "{kids:?}");
    assert_eq!(kids.get(&held_fail), None, "{kids:?}");

    // The ids the task was given are the ids written.
    let given: BTreeSet<String> = serde_json::from_value(
        demo.task(&held_ok)
            .result
            .clone()
            .expect("the parent returns its children's ids"),
    )
    .expect("ids");
    let written: BTreeSet<String> = demo
        .store
        .queue("kids")
        .ids(0, 100)
        .expect("ids")
        .into_iter()
        .filter(|id| demo.task(id).args["parent"] == held_ok.as_str())
        .collect();
    assert_eq!(given, written);
    for id in &written {
        assert_eq!(demo.task(id).status, TaskStatus::Queued);
    }
}

#[test]
fn a_run_may_not_ask_for_more_children_than_the_setting_allows() {
    let demo = Demo::new();
    let id = fan_out(&demo, "default", 3, "on_success", "finish");
    let mut sup = demo.start(&["default"], &[("RT_MAX_CHILDREN_PER_TASK", "2")]);
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    sup.stop();
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(
        error_of(&t).contains("max_children_per_task"),
        "{}",
        error_of(&t)
    );
    assert!(children_by_parent(&demo, "kids").is_empty());
}

#[test]
fn a_restricted_profile_enqueues_only_what_its_table_lists() {
    let demo = Demo::new();
    let settings = demo.path("settings.toml");
    fs::write(
        &settings,
        "[queues.locked]\nmemory_limit = \"1G\"\n\n\
         [queues.listed]\nmemory_limit = \"1G\"\nenqueue_queues = [\"kids\"]\nenqueue_tasks = [\"noop\"]\n",
    )
    .expect("settings");
    let locked = fan_out(&demo, "locked", 1, "now", "finish");
    let listed = fan_out(&demo, "listed", 2, "on_success", "finish");
    let path = settings.to_str().expect("utf-8");
    let mut sup = demo.cmd_with(super::demo_bin_for_everyone());
    sup.args(["worker", "--burst", "--config", path, "locked", "listed"])
        .timeout(Duration::from_secs(120));
    sup.run();
    let t = demo.task(&locked);
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(error_of(&t).contains("may not enqueue"), "{}", error_of(&t));
    assert_eq!(demo.task(&listed).status, TaskStatus::Finished);
    let kids = children_by_parent(&demo, "kids");
    assert_eq!(kids.get(&listed).map(Vec::len), Some(2), "{kids:?}");
    assert_eq!(kids.get(&locked), None);
}

/// Supervisors SIGKILLed and Redis restarted while parents with
/// on-success children end: every finished parent has each of its
/// children exactly once, no other parent has any.
#[test]
fn on_success_children_exist_once_for_each_finished_parent_under_chaos() {
    use nix::sys::signal::Signal;

    let mut demo = Demo::with_redis(crate::support::RedisServer::start_persistent());
    // Held to 15 starts a second, so that the disturbances fall among
    // the parents' ends rather than after them.
    let rate = "15/1s".parse::<Rate>().expect("rate");
    demo.store
        .limit_queue("default", Limit::Rate(rate))
        .expect("limit");
    let parents: Vec<String> = (0..90)
        .map(|i| {
            let then = if i % 3 == 0 { "fail" } else { "finish" };
            fan_out(&demo, "default", 3, "on_success", then)
        })
        .collect();
    let start = |demo: &Demo, instance: &str| -> Running {
        demo.start(
            &["--concurrency", "2", "--instance", instance, "default"],
            &[("RUST_LOG", "info")],
        )
    };
    let mut sups = vec![start(&demo, "a"), start(&demo, "b")];
    let ended = |demo: &Demo| {
        parents
            .iter()
            .filter(|id| {
                demo.store
                    .task(id)
                    .is_ok_and(|t| matches!(t.status, TaskStatus::Finished | TaskStatus::Failed))
            })
            .count()
    };
    let (mut acts, mut next) = (0, 10);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let done = ended(&demo);
        if done == parents.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} parents ended",
            parents.len()
        );
        if done >= next && acts < 6 {
            next += 12;
            acts += 1;
            if acts % 3 == 0 {
                demo.redis.restart();
            } else {
                let which = acts % 2;
                sups[which].signal(Signal::SIGKILL);
                sups[which].wait_exit(Duration::from_secs(30));
                sups[which] = start(&demo, if which == 0 { "a" } else { "b" });
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        acts >= 4,
        "only {acts} disturbances: the test proves little"
    );
    for s in &mut sups {
        s.stop();
    }
    let kids = children_by_parent(&demo, "kids");
    let (mut finished, mut failed) = (0, 0);
    for id in &parents {
        let t = demo.task(id);
        match t.status {
            TaskStatus::Finished => {
                finished += 1;
                let mut got = kids.get(id).cloned().unwrap_or_default();
                got.sort_unstable();
                assert_eq!(got, vec![0, 1, 2], "children of finished parent {id}");
            }
            _ => {
                failed += 1;
                assert_eq!(kids.get(id), None, "children of {} parent {id}", t.status);
            }
        }
    }
    assert!(
        kids.keys().all(|p| parents.contains(p)),
        "a child names no parent of this test"
    );
    assert!(
        finished > 0 && failed > 0,
        "{finished} finished, {failed} failed"
    );
}

#[test]
fn the_parent_sees_a_refusal_as_an_error_it_can_handle() {
    // A bad queue name is refused by the supervisor; the task sees the
    // error text (here it turns it into its own failure).
    let demo = Demo::new();
    let id = demo
        .store
        .queue("default")
        .enqueue(
            "fan_out",
            &json!({"n": 1, "queue": "bad name", "mode": "now", "then": "finish"}),
        )
        .expect("enqueue");
    let mut sup = demo.start(&["default"], &[]);
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    sup.stop();
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(error_of(&t).contains("enqueue refused"), "{}", error_of(&t));
}
