//! A fetch whose reply is lost (the connection drops or the master fails
//! over after Redis moved the id into the slot's list) leaves an id in the
//! slot's list that no worker runs. The slot hands it back to its queue
//! and runs it, instead of retrying the fetch forever.

use std::time::Duration;

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use crate::e2e::Demo;
use crate::support::wait_until;

#[test]
fn a_task_left_in_a_slot_list_by_a_lost_fetch_reply_runs() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    let mut slot = String::new();
    wait_until("the slot to register", Duration::from_secs(30), || {
        slot = demo
            .store
            .worker_infos()
            .ok()
            .and_then(|w| w.first().map(|w| w.id.clone()))
            .unwrap_or_default();
        !slot.is_empty()
    });
    // Quiet (SIGTSTP): the slot stops fetching, after the fetch under way.
    sup.signal(Signal::SIGTSTP);
    // What a fetch does in Redis, with its reply lost: the id leaves the
    // queue for the slot's list. A task the slot fetched as the quiet
    // began is handed back to the queue; one it had started runs to its
    // end; then another is enqueued.
    let mut conn = demo.redis.client();
    let mut enqueued: Vec<String> = Vec::new();
    let mut id = String::new();
    wait_until(
        "a task moved into the slot's list behind its back",
        Duration::from_secs(60),
        || {
            let settled = enqueued.iter().all(|e| {
                demo.store
                    .task(e)
                    .is_ok_and(|t| t.status == TaskStatus::Finished)
            });
            if settled {
                enqueued.push(demo.enqueue("noop", json!(null)));
            }
            let moved: Option<String> = redis::cmd("LMOVE")
                .arg("redis_tasks:queue:default")
                .arg(format!("redis_tasks:worker:{slot}:task"))
                .arg("LEFT")
                .arg("RIGHT")
                .query(&mut conn)
                .expect("LMOVE");
            id = moved.unwrap_or_default();
            !id.is_empty()
        },
    );
    sup.signal(Signal::SIGCONT);
    let t = demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(60));
    assert!(t.error.is_none(), "{t:?}");
    assert_eq!(demo.outcomes_of(&id).len(), 1);
    assert!(
        sup.log().contains("reply to a fetch was lost"),
        "{}",
        sup.log()
    );
    sup.stop();
}
