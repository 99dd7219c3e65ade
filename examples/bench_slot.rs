//! The Redis time of a busy slot's path alone: one slot finishes a task and
//! fetches the next in one script call (`Store::conclude_and_fetch`), over
//! and over, with no supervisor and no worker process, so that the figure
//! is the store's cost and nothing else (docs/performance.md).
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6399 cargo run --release --example bench_slot -- 20000
//! ```
//!
//! It empties nothing: point it at a Redis of its own. It resets the
//! server's `INFO commandstats` and prints the script's Redis microseconds
//! per task and each command the script ran per task.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use redis_tasks::Store;
use redis_tasks::store::{Ending, SlotInfo};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_slot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL to a Redis of its own")?;
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("not a number of tasks: {a}"))?,
        None => 20_000,
    };
    let store = Store::open(&url, "bench-slot")?;
    let queue = store.queue("q");
    for i in 0..n {
        queue.enqueue("noop", &[i])?;
    }
    let slot = SlotInfo {
        id: format!("bench-slot-{}", std::process::id()),
        description: "bench_slot".to_owned(),
        queues: vec!["q".to_owned()],
        supervisor: "bench".to_owned(),
        host: "localhost".to_owned(),
        pid: std::process::id(),
        started_at: jiff::Timestamp::now(),
    };
    store.register_slot(&slot)?;
    let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut conn)?;

    let Some(mut current) = store.fetch(&slot.id, &slot.queues, Duration::ZERO)? else {
        return Err("the queue is empty: is REDIS_URL shared?".into());
    };
    let started = Instant::now();
    let mut done = 0u64;
    loop {
        let finished = Ending::Finished {
            result: None,
            children: &[],
        };
        let (ok, next) = store.conclude_and_fetch(
            &current.lease,
            finished,
            &slot.queues,
            jiff::Timestamp::now(),
        )?;
        if !ok {
            return Err(format!("task {} was not the slot's", current.id).into());
        }
        done += 1;
        match next {
            Some(f) => current = f,
            None => break,
        }
    }
    let wall = started.elapsed().as_secs_f64() * 1e6 / done as f64;
    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut conn)?;
    println!("{done} tasks, {wall:.1} us per task end to end");
    for line in stats.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (calls, usec) = (field("calls="), field("usec="));
        if calls >= done as f64 {
            println!(
                "{name:>14}: {:5.2} calls, {:6.2} us per task",
                calls / done as f64,
                usec / done as f64
            );
        }
    }
    Ok(())
}
