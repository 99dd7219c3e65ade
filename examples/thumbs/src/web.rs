// src/web.rs
use std::time::Duration;

use redis_tasks::{AsyncStore, Settings};
use serde_json::json;

use crate::Resized;

/// Once, at start-up: the same settings as the binaries. Clones of the
/// store share one connection; put one in your web framework's state.
pub async fn connect() -> anyhow::Result<AsyncStore> {
    Ok(AsyncStore::from_settings(&Settings::load(None)?).await?)
}

/// In a request handler: enqueue, and answer with the id at once.
pub async fn start_resize(store: &AsyncStore, image: &str) -> anyhow::Result<String> {
    let args = json!({"image": image, "width": 64});
    Ok(store.queue("default").enqueue("resize", &args).await?)
}

/// In another handler: the result, awaited without blocking a thread of
/// the runtime; `None` if the task has not ended within `wait`.
pub async fn resized(
    store: &AsyncStore,
    id: &str,
    wait: Duration,
) -> anyhow::Result<Option<Resized>> {
    match store.wait_for_end(id, wait).await? {
        Some(record) => Ok(record.result_as()?),
        None => Ok(None),
    }
}
