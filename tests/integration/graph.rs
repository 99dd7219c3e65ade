//! Task graphs: refused without the middleware, `graph show`, and end to
//! end with the demo supervisor (which registers `GraphMiddleware`):
//! order of a diamond, a failing node with both failure policies.

use std::fs;
use std::time::Duration;

use redis_tasks::graph::{GraphError, NodeStatus};
use redis_tasks::{FailurePolicy, Graph, TaskStatus};
use serde_json::json;

use crate::e2e::Demo;
use crate::support::{Cmd, RedisServer, wait_until};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_graph_is_refused_while_no_supervisor_runs_the_middleware() {
    let redis = RedisServer::start();
    let store = redis.store();
    let graph = Graph::new()
        .node("a", "noop", ())
        .node("b", "noop", ())
        .chain(["a", "b"]);
    let err = graph.enqueue(&store).expect_err("no middleware");
    assert!(matches!(err, GraphError::MiddlewareMissing), "{err}");
    assert_eq!(store.queue("default").count().expect("count"), 0);

    store
        .mark_graph_middleware(Duration::from_secs(60))
        .expect("mark");
    let enqueued = graph.enqueue(&store).expect("enqueue");
    assert_eq!(enqueued.started.len(), 1, "only the root starts");
    assert_eq!(
        store.queue("default").ids(0, 10).expect("ids"),
        enqueued.started
    );
    let state = store.graph(&enqueued.id).expect("graph");
    let statuses: Vec<_> = state.nodes.iter().map(|n| n.status).collect();
    assert_eq!(statuses, [NodeStatus::Queued, NodeStatus::Waiting]);

    // The same id twice is refused.
    let again = Graph::new().id(enqueued.id.clone()).node("x", "noop", ());
    assert!(matches!(again.enqueue(&store), Err(GraphError::Exists(_))));
}

#[test]
fn a_node_ending_twice_advances_once() {
    let redis = RedisServer::start();
    let store = redis.store();
    store
        .mark_graph_middleware(Duration::from_secs(60))
        .expect("mark");
    let g = Graph::new()
        .node("a", "noop", ())
        .node("b", "noop", ())
        .node("c", "noop", ())
        .edge("a", "c")
        .edge("b", "c")
        .enqueue(&store)
        .expect("enqueue");
    let state = store.graph(&g.id).expect("graph");
    let id = |n: &str| {
        state
            .nodes
            .iter()
            .find(|x| x.name == n)
            .map(|x| x.task_id.clone())
            .expect("node")
    };
    use redis_tasks::store::Advance;
    let a = store
        .graph_node_ended(&g.id, "a", &id("a"), false)
        .expect("a");
    assert!(
        matches!(&a, Advance::Advanced { enqueued, .. } if enqueued.is_empty()),
        "{a:?}"
    );
    let again = store
        .graph_node_ended(&g.id, "a", &id("a"), false)
        .expect("a");
    assert_eq!(again, Advance::AlreadyEnded("finished".into()));
    let b = store
        .graph_node_ended(&g.id, "b", &id("b"), false)
        .expect("b");
    assert!(
        matches!(&b, Advance::Advanced { enqueued, .. } if enqueued == &["c".to_owned()]),
        "{b:?}"
    );
    assert_eq!(
        store
            .graph_node_ended(&g.id, "b", "some-other-task", false)
            .expect("b"),
        Advance::Stale
    );
    assert_eq!(store.queue("default").count().expect("count"), 3);
}

/// Waits until the supervisor's graph middleware has announced itself.
fn wait_for_middleware(demo: &Demo) {
    let mut conn = demo.redis.client();
    wait_until("the graph middleware to announce itself", WAIT, || {
        redis::cmd("EXISTS")
            .arg("redis_tasks:graph_middleware")
            .query::<bool>(&mut conn)
            .unwrap_or(false)
    });
}

/// Lines of a file the `write_file` tasks append to.
fn lines(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_diamond_runs_in_order_on_a_real_supervisor() {
    let demo = Demo::new();
    let _sup = demo.start(&["-c", "2"], &[]);
    wait_for_middleware(&demo);
    let out = demo.path("order.txt");
    let w = |text: &str| json!({"path": out.display().to_string(), "text": format!("{text}\n")});
    let g = Graph::new()
        .node("a", "write_file", w("a"))
        .node("b", "write_file", w("b"))
        .node("c", "write_file", w("c"))
        .node("d", "write_file", w("d"))
        .edge("a", "b")
        .edge("a", "c")
        .chain(["b", "d"])
        .edge("c", "d")
        .enqueue(&demo.store)
        .expect("enqueue");
    wait_until("the graph to finish", WAIT, || {
        demo.store
            .graph(&g.id)
            .is_ok_and(|s| s.status == "finished")
    });
    let order = lines(&out);
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(order[0], "a");
    assert_eq!(order[3], "d");

    // `graph show` reads it back, in text and JSON.
    let text = Cmd::admin(&demo.redis.url())
        .args(["graph", "show", &g.id])
        .stdout();
    assert!(text.contains("status:      finished"), "{text}");
    let json_text = Cmd::admin(&demo.redis.url())
        .args(["graph", "show", &g.id, "--json"])
        .stdout();
    let v: serde_json::Value = serde_json::from_str(&json_text).expect("json");
    assert_eq!(v["nodes"][3]["name"], "d");
    assert_eq!(v["nodes"][3]["after"], json!(["b", "c"]));
    assert!(
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["status"] == "finished"))
    );
}

#[test]
fn dependents_of_a_failed_node_are_canceled_or_run_as_the_policy_says() {
    let demo = Demo::new();
    let _sup = demo.start(&["-c", "2"], &[]);
    let out = demo.path("order.txt");
    let w = |text: &str| json!({"path": out.display().to_string(), "text": format!("{text}\n")});
    let build = || {
        Graph::new()
            .node("a", "write_file", w("a"))
            .node("boom", "fail", json!({"message": "on purpose"}))
            .node("after_boom", "write_file", w("after_boom"))
            .node("later", "write_file", w("later"))
            .node("side", "write_file", w("side"))
            .chain(["a", "boom", "after_boom", "later"])
            .edge("a", "side")
    };
    // The supervisor announces the middleware at start-up.
    let cancel = {
        let mut result = None;
        wait_until("the supervisor's graph middleware", WAIT, || {
            match build().enqueue(&demo.store) {
                Ok(g) => {
                    result = Some(g);
                    true
                }
                Err(GraphError::MiddlewareMissing) => false,
                Err(e) => panic!("enqueue: {e}"),
            }
        });
        result.expect("graph")
    };
    wait_until("the canceling graph to end", WAIT, || {
        demo.store
            .graph(&cancel.id)
            .is_ok_and(|s| s.status != "running")
    });
    let state = demo.store.graph(&cancel.id).expect("graph");
    assert_eq!(state.status, "failed");
    let status = |name: &str| {
        state
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.status)
            .expect("node")
    };
    assert_eq!(status("a"), NodeStatus::Finished);
    assert_eq!(status("boom"), NodeStatus::Failed);
    assert_eq!(status("after_boom"), NodeStatus::Canceled);
    assert_eq!(status("later"), NodeStatus::Canceled);
    assert_eq!(status("side"), NodeStatus::Finished);
    let boom = state.nodes.iter().find(|n| n.name == "boom").expect("boom");
    assert_eq!(demo.task(&boom.task_id).status, TaskStatus::Failed);
    let mut written = lines(&out);
    written.sort();
    assert_eq!(written, ["a", "side"]);

    fs::remove_file(&out).expect("reset");
    let anyway = build()
        .on_failure(FailurePolicy::RunAnyway)
        .enqueue(&demo.store)
        .expect("enqueue");
    wait_until("the run-anyway graph to end", WAIT, || {
        demo.store
            .graph(&anyway.id)
            .is_ok_and(|s| s.status != "running")
    });
    let state = demo.store.graph(&anyway.id).expect("graph");
    assert_eq!(state.status, "failed", "a node failed");
    let order = lines(&out);
    assert!(
        order.ends_with(&["after_boom".to_owned(), "later".to_owned()]) || {
            let p = |n: &str| order.iter().position(|x| x == n);
            p("after_boom") < p("later") && p("after_boom").is_some()
        },
        "{order:?}"
    );
    assert_eq!(order.len(), 4, "{order:?}");
}

/// The store alone (no supervisor, no middleware): the end of a node,
/// recorded by the store's end transition, moves its graph on in the same
/// call, and passes the parents' outcomes to a node that asked for them.
#[test]
fn a_node_end_moves_its_graph_in_the_same_step_and_passes_outcomes() {
    use jiff::Timestamp;
    use redis_tasks::store::{Ending, SlotInfo};

    let redis = RedisServer::start();
    let store = redis.store();
    store
        .mark_graph_middleware(Duration::from_secs(60))
        .expect("mark");
    store
        .register_slot(&SlotInfo {
            id: "s1".into(),
            description: "host.1/1".into(),
            queues: vec!["default".into()],
            supervisor: "sup".into(),
            host: "host".into(),
            pid: 1,
            started_at: Timestamp::now(),
        })
        .expect("register");
    let g = Graph::new()
        .node("ok", "noop", ())
        .node("bad", "noop", ())
        .node("mid", "noop", ())
        .node("gather", "echo", json!({"label": "all"}))
        .edge("bad", "mid")
        .edge("ok", "gather")
        .edge("mid", "gather")
        .fan_in("gather")
        .enqueue(&store)
        .expect("enqueue");
    let q = vec!["default".to_owned()];
    let mut ended = 0;
    while ended < 2 {
        let t = store
            .fetch("s1", &q, Duration::ZERO)
            .expect("fetch")
            .expect("a root");
        let ending = if t
            .record
            .as_ref()
            .is_ok_and(|r| r.meta["rt_graph"]["node"] == "bad")
        {
            Ending::Failed {
                error: "on purpose",
            }
        } else {
            Ending::Finished {
                result: Some("{\"rows\":3}"),
                children: &[],
            }
        };
        assert!(
            store
                .conclude(&t.lease, ending, Timestamp::now())
                .expect("end")
        );
        ended += 1;
    }
    // `bad` failed: `mid` is canceled, and `gather` (fan-in) counted both
    // of its parents and was enqueued by the second end, in that call.
    let state = store.graph(&g.id).expect("graph");
    let status = |name: &str| {
        state
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.status)
            .expect("node")
    };
    assert_eq!(status("mid"), NodeStatus::Canceled);
    assert_eq!(status("gather"), NodeStatus::Queued);
    let gather = state
        .nodes
        .iter()
        .find(|n| n.name == "gather")
        .expect("gather");
    let args = store.task(&gather.task_id).expect("record").args;
    assert_eq!(args["label"], "all");
    assert_eq!(
        args["parents"]["ok"],
        json!({"status": "finished", "result": {"rows": 3}, "error": null})
    );
    assert_eq!(
        args["parents"]["mid"],
        json!({"status": "canceled", "result": null, "error": null})
    );
}

#[test]
fn a_node_asking_for_outcomes_must_take_an_object() {
    let e = Graph::new()
        .node("a", "noop", ())
        .node("b", "echo", json!([1, 2]))
        .edge("a", "b")
        .pass_results("b")
        .plan()
        .expect_err("not an object");
    assert!(e.to_string().contains("JSON object"), "{e}");
    let e = Graph::new()
        .node("a", "noop", ())
        .node("b", "echo", json!({"parents": 1}))
        .edge("a", "b")
        .fan_in("b")
        .plan()
        .expect_err("parents taken");
    assert!(e.to_string().contains("parents"), "{e}");
    let e = Graph::new().node("a", "noop", ()).fan_in("zz").plan();
    assert!(e.is_err());
}

/// A node whose supervisor is SIGKILLed while it runs is ended by the
/// recovery of the next supervisor, and that end moves the graph on like
/// any other: a fan-in node runs, told its parent failed.
#[test]
fn a_node_ended_by_recovery_moves_its_graph_and_results_reach_the_fan_in() {
    use nix::sys::signal::Signal;

    let demo = Demo::new();
    let mut first = demo.start(&["-c", "2", "--instance", "g"], &[]);
    wait_for_middleware(&demo);
    let g = Graph::new()
        .node("sum", "add", json!({"a": 1, "b": 2}))
        .node("long", "sleep", json!({"secs": 600}))
        .node("gather", "echo", json!({}))
        .edge("sum", "gather")
        .edge("long", "gather")
        .fan_in("gather")
        .enqueue(&demo.store)
        .expect("enqueue");
    let node = |name: &str| {
        demo.store
            .graph(&g.id)
            .expect("graph")
            .nodes
            .into_iter()
            .find(|n| n.name == name)
            .expect("node")
    };
    let long = node("long").task_id;
    demo.wait_status(&long, TaskStatus::Running, WAIT);
    demo.wait_status(&node("sum").task_id, TaskStatus::Finished, WAIT);
    first.signal(Signal::SIGKILL);
    first.wait_exit(WAIT);
    let mut second = demo.start(&["-c", "2", "--instance", "g"], &[]);
    wait_until("the graph to end", WAIT, || {
        demo.store.graph(&g.id).is_ok_and(|s| s.status != "running")
    });
    second.stop();
    assert_eq!(demo.task(&long).status, TaskStatus::Failed);
    let gather = demo.task(&node("gather").task_id);
    assert_eq!(gather.status, TaskStatus::Finished);
    let out = gather.result.expect("echo returns its arguments");
    assert_eq!(out["parents"]["long"]["status"], "failed");
    assert_eq!(out["parents"]["sum"]["result"]["sum"], 3);
    assert_eq!(demo.store.graph(&g.id).expect("graph").status, "failed");
}
