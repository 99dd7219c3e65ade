// src/producer.rs
use std::time::Duration;

use redis_tasks::{
    CancelResult, EnqueueOptions, Enqueued, RetryPolicy, Settings, Store, StoreError,
};
use serde_json::json;

use crate::Resized;

pub fn produce() -> anyhow::Result<()> {
    // From the settings file and environment, like the binaries:
    let store = Store::from_settings(&Settings::load(None)?)?;
    // or directly: Store::open("redis://127.0.0.1:6379", "redis_tasks")?

    let queue = store.queue("default");
    let id: String = queue.enqueue("resize", &json!({"image": "cat", "width": 64}))?;

    // Wait for the end (no polling: the waiter blocks on Redis), at most 30 s.
    match store.wait_for_end(&id, Duration::from_secs(30))? {
        Some(record) => {
            let result: Option<Resized> = record.result_as()?;
            println!("{:?}: {:?}", record.status, result.map(|r| r.path));
        }
        None => println!("still running after 30 s"),
    }

    // Or look without waiting: store.task(&id)?.result (JSON, None until it finished).
    Ok(())
}

pub fn import_once(store: &Store) -> Result<String, StoreError> {
    let options = EnqueueOptions::new().unique("import:42");
    match store
        .queue("default")
        .enqueue_with_outcome("import", &42u64, &options)?
    {
        Enqueued::New(id) => Ok(id),
        Enqueued::Existing(id) => Ok(id), // a live task holds the key: nothing was written
    }
}

pub fn checked(store: &Store) -> anyhow::Result<String> {
    let app = crate::app();
    let args = json!({"image": "cat", "width": 64});
    app.check_call("resize", &args)?; // a wrong argument type is an error here
    let enqueued = app.enqueue_checked(
        &store.queue("default"),
        "resize",
        &args,
        &EnqueueOptions::new(),
    )?;
    Ok(enqueued.into_id()) // Enqueued::New(id), or Existing(id) with a uniqueness key
}

pub fn later_retried_then_canceled(store: &Store) -> Result<CancelResult, StoreError> {
    let options = EnqueueOptions::new()
        .delay(Duration::from_secs(60)) // runs in a minute (or .at(timestamp))
        .retry(RetryPolicy::new(3).base(Duration::from_secs(10))) // up to 3 more tries, 10 s, 20 s, 40 s apart
        .timeout(Duration::from_secs(120)); // this call only; the task's own timeout otherwise
    let id = store.queue("default").enqueue_with(
        "resize",
        &json!({"image": "dog", "width": 32}),
        &options,
    )?;
    // Queued or scheduled: canceled at once. Running: its supervisor stops it.
    store.cancel_task(&id)
}
