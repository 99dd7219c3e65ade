//! Sentinel: a master, a replica and three sentinels on loopback. The
//! master is SIGKILLed while a producer enqueues and a supervisor (with its
//! scheduler) runs tasks; after the failover everything carries on, and the
//! test counts what was lost. In the durable mode (`redis_wait_replicas =
//! 1`) nothing acknowledged is lost: no enqueue, no recorded outcome.
//! The first test also connects as the documented ACL user (plus `+role`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_tasks::Store;
use redis_tasks::protocol::TaskStatus;
use serde_json::{Value, json};

use crate::support::topology::SentinelSet;
use crate::support::wait_until;

use super::{AppEnv, Losses, WAIT};

#[test]
fn every_program_follows_a_sentinel_failover_and_the_losses_are_counted() {
    let set = SentinelSet::start();
    // With the documented ACL user (plus +role, for Sentinel), on both
    // servers (ACL rules are not replicated), named in the URL; the
    // password comes from a file.
    let rules = format!("{} +role", super::acl::ACL_RULES);
    for node in [&set.master, &set.replica] {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("rt_app");
        for rule in rules.split_whitespace() {
            cmd.arg(rule);
        }
        cmd.arg(">s3cret")
            .query::<()>(&mut node.client())
            .expect("ACL SETUSER");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").expect("password file");
    let url = set
        .url()
        .replace("redis+sentinel://", "redis+sentinel://rt_app@");
    let app = AppEnv::new(&[
        ("REDIS_URL", url),
        ("RT_REDIS_PASSWORD_FILE", file.display().to_string()),
    ]);
    let losses = failover_under_load(set, &app);
    eprintln!("sentinel failover without WAIT: {losses:?}");
}

#[test]
fn in_durable_mode_a_failover_loses_no_acknowledged_enqueue_or_outcome() {
    let set = SentinelSet::start();
    // The settings form this time: sentinels and master name as settings;
    // redis_url gives only the scheme (its host is not used).
    let sentinels: Vec<String> = set
        .sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect();
    let app = AppEnv::new(&[
        ("REDIS_URL", "redis://sentinel-managed".to_owned()),
        ("RT_REDIS_SENTINELS", sentinels.join(",")),
        ("RT_REDIS_SENTINEL_MASTER", "mymaster".to_owned()),
        ("RT_REDIS_WAIT_REPLICAS", "1".to_owned()),
        ("RT_REDIS_WAIT_TIMEOUT_MS", "3000".to_owned()),
    ]);
    let losses = failover_under_load(set, &app);
    eprintln!("sentinel failover with WAIT 1: {losses:?}");
    assert_eq!(losses.lost_enqueues, 0, "{losses:?}");
    assert_eq!(losses.lost_outcomes, 0, "{losses:?}");
    assert_eq!(losses.unfinished, 0, "{losses:?}");
}

/// Runs tasks through a SIGKILL of the master; returns what was lost.
fn failover_under_load(mut set: SentinelSet, app: &AppEnv) -> Losses {
    let toml = "[schedule.tick]\ntask = \"noop\"\nevery = \"1s\"\nsingleton = false\n";
    let mut sup = app.start(&["worker", "--scheduler", "-c", "4"], toml, &[]);
    let store = app.store();

    // A producer thread: enqueues until told to stop, keeping the ids it
    // got back (acknowledged) and when.
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = Arc::clone(&stop);
        let killed = Arc::clone(&killed);
        let settings = app.settings();
        std::thread::spawn(move || {
            let store = Store::from_settings(&settings).expect("producer store");
            let mut acked: Vec<(String, bool)> = Vec::new();
            let mut errors = 0u64;
            let mut after_kill = 0;
            // Enough after the failover to show it carries on, not a flood.
            while !stop.load(Ordering::SeqCst) && after_kill < 200 {
                let before_kill = !killed.load(Ordering::SeqCst);
                after_kill += usize::from(!before_kill);
                match store.queue("default").enqueue("noop", &json!(null)) {
                    Ok(id) => acked.push((id, before_kill)),
                    Err(_) => {
                        errors += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (acked, errors)
        })
    };

    // Tasks flow: some done, then SIGKILL the master.
    wait_until("tasks to flow before the failover", WAIT, || {
        store.finished().count().is_ok_and(|n| n >= 100)
    });
    let old_port = set.master.port();
    killed.store(true, Ordering::SeqCst);
    set.master.kill9();
    let killed_at = Instant::now();
    let mut new_port = 0;
    wait_until("the sentinels to promote the replica", WAIT, || {
        new_port = set.current_master_port().unwrap_or(old_port);
        new_port != old_port
    });
    let failover = killed_at.elapsed();
    // The old master comes back as a replica of the new one, as its config
    // file rewritten by Sentinel says (the durable mode needs a replica).
    set.master.start_again_as_replica_of(new_port);
    wait_until("the old master to become a replica", WAIT, || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut set.master.client())
            .unwrap_or_default();
        info.contains("role:slave") && info.contains("master_link_status:up")
    });

    // Everything carries on: tasks enqueued after the failover finish,
    // the scheduler enqueues again, the admin CLI answers.
    let after = store_after_failover(&store);
    let scheduled_before = sup.log().matches("scheduler: enqueued").count();
    wait_until("the scheduler to enqueue after the failover", WAIT, || {
        sup.log().matches("scheduler: enqueued").count() > scheduled_before
    });
    let info = app.admin(&["info"]).stdout();
    assert!(info.contains("default"), "{info}");
    stop.store(true, Ordering::SeqCst);
    let (acked, producer_errors) = producer.join().expect("producer thread");
    super::wait_status(&store, &after, TaskStatus::Finished);

    // Let every acknowledged task settle (finished, or gone for good).
    let deadline = Instant::now() + WAIT;
    let status: BTreeMap<String, Option<TaskStatus>> = loop {
        let status: BTreeMap<String, Option<TaskStatus>> = acked
            .iter()
            .map(|(id, _)| (id.clone(), store.task(id).ok().map(|t| t.status)))
            .collect();
        let settled = status
            .values()
            .all(|s| matches!(s, None | Some(TaskStatus::Finished | TaskStatus::Failed)));
        if settled || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let runs = outcome_runs(app);
    let mut losses = Losses {
        acked: acked.len(),
        acked_before_kill: acked.iter().filter(|(_, before)| *before).count(),
        ..Losses::default()
    };
    for (id, _) in &acked {
        let st = status.get(id).copied().flatten();
        if st.is_none() {
            losses.lost_enqueues += 1;
        }
        if st != Some(TaskStatus::Finished) {
            losses.unfinished += 1;
            if runs.get(id).copied().unwrap_or(0) > 0 {
                losses.lost_outcomes += 1;
            }
        }
        if runs.get(id).copied().unwrap_or(0) > 1 {
            losses.ran_twice += 1;
        }
    }
    eprintln!(
        "failover took {failover:?}; producer errors during it: {producer_errors}; \
         acked {} ({} before the kill)",
        losses.acked, losses.acked_before_kill
    );
    sup.stop();
    losses
}

/// Enqueues one task after the failover (retrying while the new master is
/// being found) and returns its id.
fn store_after_failover(store: &Store) -> String {
    let mut id = String::new();
    wait_until("an enqueue after the failover", WAIT, || {
        match store.queue("default").enqueue("noop", &json!(null)) {
            Ok(got) => {
                id = got;
                true
            }
            Err(_) => false,
        }
    });
    id
}

/// Runs per task id, from the demo's outcome log.
pub(super) fn outcome_runs(app: &AppEnv) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(app.path("outcomes.jsonl")).unwrap_or_default();
    let mut runs = BTreeMap::new();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line)
            && let Some(id) = v["id"].as_str()
        {
            *runs.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    runs
}

#[test]
fn sentinels_that_do_not_answer_give_a_clear_error_instead_of_a_hang() {
    // One port nobody listens on, one that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let closed = crate::support::free_port().expect("free port");
    let url = format!("redis+sentinel://127.0.0.1:{closed},127.0.0.1:{silent_port}/mymaster");
    let store = Store::open(&url, "redis_tasks")
        .expect("open")
        .with_timeouts(Duration::from_millis(500), Duration::from_millis(500));
    let err = store.ping().expect_err("no master");
    let text = err.to_string();
    assert!(
        text.contains("no sentinel named a reachable master"),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{closed}")), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{silent_port}")), "{text}");
    assert!(err.is_connection_error());
    drop(silent);
}

#[test]
fn every_program_works_with_tls_to_a_sentinel_managed_master_across_a_failover() {
    let certs = crate::support::topology::TestCerts::generate();
    let mut set = SentinelSet::start_tls(&certs);
    let app = AppEnv::new(&[
        ("REDIS_URL", set.url()),
        (
            "RT_REDIS_TLS_CA_FILE",
            certs.file("ca.pem").display().to_string(),
        ),
    ]);
    assert!(set.url().starts_with("rediss+sentinel://"));
    app.exercise_every_program();

    // The master fails; the programs follow the sentinels to the new one,
    // still over TLS.
    let old = set.current_master_port().expect("a master");
    set.master.kill9();
    wait_until("the sentinels to promote the replica", WAIT, || {
        set.current_master_port().is_some_and(|p| p != old)
    });
    let mut sup = app.start(&["worker", "-c", "1"], "", &[]);
    let store = app.store();
    let mut id = String::new();
    wait_until("an enqueue on the new master", WAIT, || {
        match app.admin(&["enqueue", "noop"]).output() {
            out if out.status.success() => {
                id = out.stdout.trim().to_owned();
                true
            }
            _ => false,
        }
    });
    super::wait_status(&store, &id, TaskStatus::Finished);
    sup.stop();
}

#[test]
fn sentinels_that_require_a_password_are_asked_with_the_sentinel_credentials() {
    let set = SentinelSet::start();
    // Every sentinel gets a user for the programs and stops answering
    // anyone else (after this, only the programs can talk to them).
    for s in &set.sentinels {
        let mut c = s.client();
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("lookup")
            .arg("on")
            .arg(">sentinel-secret")
            .arg("-@all")
            .arg("+sentinel|get-master-addr-by-name")
            .exec(&mut c)
            .expect("acl setuser");
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("off")
            .exec(&mut c)
            .expect("default off");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sentinel-password");
    std::fs::write(&file, "sentinel-secret\n").expect("password file");
    let app = AppEnv::new(&[
        ("REDIS_URL", set.url()),
        ("RT_REDIS_SENTINEL_USERNAME", "lookup".to_owned()),
        (
            "RT_REDIS_SENTINEL_PASSWORD_FILE",
            file.display().to_string(),
        ),
    ]);
    app.exercise_every_program();

    // Without the credentials the error says which settings to check.
    let bare = AppEnv::new(&[("REDIS_URL", set.url())]);
    let err = bare
        .store()
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
        .ping()
        .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("redis_sentinel_password_file"), "{text}");
}

#[test]
fn sentinels_can_be_reached_over_tls_too() {
    let certs = crate::support::topology::TestCerts::generate();
    let set = SentinelSet::start_tls(&certs);
    let ca = certs.file("ca.pem").display().to_string();
    let app = AppEnv::new(&[
        ("REDIS_URL", set.tls_sentinels_url()),
        ("RT_REDIS_TLS_CA_FILE", ca.clone()),
        ("RT_REDIS_SENTINEL_TLS", "true".to_owned()),
    ]);
    app.exercise_every_program();

    // Plain TCP to a TLS port gets no answer it can read: the switch is
    // needed, and the error says which sentinels failed.
    let plain = AppEnv::new(&[
        ("REDIS_URL", set.tls_sentinels_url()),
        ("RT_REDIS_TLS_CA_FILE", ca),
    ]);
    let err = plain
        .store()
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
        .ping()
        .expect_err("plain TCP to TLS sentinels");
    assert!(
        err.to_string()
            .contains("no sentinel named a reachable master"),
        "{err}"
    );
}
