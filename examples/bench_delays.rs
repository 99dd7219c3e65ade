//! The bench's delayed-task and cancel phase (a module of `bench.rs`):
//! how late a delayed task starts after it is due, and how long a cancel
//! of a running task takes to be recorded, on one running supervisor with
//! idle slots.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use redis_tasks::{CancelResult, Store, TaskRecord, TaskStatus};

/// The figures of this phase, in milliseconds: p50, p99, max.
pub struct Figures {
    /// Delayed tasks: start minus due time.
    pub lateness_ms: (f64, f64, f64),
    /// How many delayed tasks were measured.
    pub delayed: usize,
    /// Cancels: recorded end minus the moment the cancel was asked.
    pub cancel_ms: (f64, f64, f64),
    /// How many cancels were measured.
    pub cancels: usize,
}

fn wait_for(
    store: &Store,
    id: &str,
    done: impl Fn(&TaskRecord) -> bool,
) -> Result<TaskRecord, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = store.task(id).map_err(|e| e.to_string())?;
        if done(&t) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(format!("task {id} stayed {}", t.status));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn ms(d: SignedDuration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn spread(mut v: Vec<f64>, percentile: impl Fn(&[f64], f64) -> f64) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

/// Runs the phase against `store`, whose prefix a supervisor serves with
/// idle slots; `slow` is a task that runs until killed.
pub fn measure(
    store: &Store,
    slow: &str,
    percentile: impl Fn(&[f64], f64) -> f64 + Copy,
) -> Result<Figures, String> {
    let queue = store.queue("default");
    // Delayed tasks due every 10 ms from 100 ms on: each due while the
    // slots are idle, so lateness is the promotion's alone.
    let mut delayed = Vec::new();
    for i in 0..200u64 {
        let delay = Duration::from_millis(100 + 10 * i);
        let id = queue
            .enqueue_in(delay, "noop", &())
            .map_err(|e| e.to_string())?;
        delayed.push((id, delay));
    }
    let mut lateness = Vec::new();
    for (id, delay) in &delayed {
        let t = wait_for(store, id, |t| t.status == TaskStatus::Finished)?;
        let due = t.enqueued_at + SignedDuration::try_from(*delay).map_err(|e| e.to_string())?;
        if let Some(started) = t.started_at {
            lateness.push(ms(started.duration_since(due)));
        }
    }
    let mut cancel = Vec::new();
    for _ in 0..40 {
        let id = queue.enqueue(slow, &()).map_err(|e| e.to_string())?;
        wait_for(store, &id, |t| t.status == TaskStatus::Running)?;
        let asked = Timestamp::now();
        match store.cancel_task(&id).map_err(|e| e.to_string())? {
            CancelResult::Requested => {}
            CancelResult::Canceled => return Err(format!("task {id} was not running")),
        }
        let t = wait_for(store, &id, |t| t.status == TaskStatus::Canceled)?;
        if let Some(ended) = t.ended_at {
            cancel.push(ms(ended.duration_since(asked)));
        }
    }
    Ok(Figures {
        delayed: lateness.len(),
        lateness_ms: spread(lateness, percentile),
        cancels: cancel.len(),
        cancel_ms: spread(cancel, percentile),
    })
}
