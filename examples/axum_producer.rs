//! An axum service that enqueues tasks and awaits their results with the
//! async producer ([`AsyncStore`], feature `async`), without
//! `spawn_blocking`.
//!
//! - `POST /tasks/{task}` with a JSON body: enqueues one call of `task`
//!   with the body as its arguments on the queue `default` (the query
//!   `?unique=KEY` makes it a unique enqueue); answers `202` with
//!   `{"id": ..., "new": true|false}`.
//! - `GET /tasks/{id}/result?wait=SECS`: waits up to `SECS` seconds
//!   (default 30) for the task's end; answers `200` with
//!   `{"id", "status", "result"}` once it ended, `202` with its current
//!   status when the wait ran out, `404` for an unknown task.
//!
//! Run it next to a supervisor of an application that has the tasks:
//!
//! ```text
//! cargo run --features async --example axum_producer   # REDIS_URL, RT_* as usual
//! curl -X POST localhost:3000/tasks/add -d '{"a": 2, "b": 40}' -H 'content-type: application/json'
//! curl 'localhost:3000/tasks/<id>/result?wait=10'
//! ```
//!
//! The integration test `async_producer` runs this router against a real
//! Redis and a real supervisor.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use redis_tasks::{AsyncStore, EnqueueOptions, Settings, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

/// The queue this service enqueues on.
const QUEUE: &str = "default";

/// The service's routes, on `store`.
pub fn router(store: AsyncStore) -> Router {
    Router::new()
        .route("/tasks/{task}", post(enqueue))
        .route("/tasks/{id}/result", get(result))
        .with_state(store)
}

/// The query of an enqueue.
#[derive(Debug, Deserialize)]
struct EnqueueQuery {
    /// A uniqueness key: while a task holding it is queued, scheduled or
    /// running, no other is enqueued and its id is answered.
    unique: Option<String>,
}

/// `POST /tasks/{task}`: one call of `task` with the JSON body.
async fn enqueue(
    State(store): State<AsyncStore>,
    Path(task): Path<String>,
    Query(query): Query<EnqueueQuery>,
    Json(args): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut options = EnqueueOptions::new();
    if let Some(key) = query.unique {
        options = options.unique(key);
    }
    match store
        .queue(QUEUE)
        .enqueue_with_outcome(&task, &args, &options)
        .await
    {
        Ok(enqueued) => (
            StatusCode::ACCEPTED,
            Json(json!({"id": enqueued.id(), "new": enqueued.is_new()})),
        ),
        Err(e) => refused(&e),
    }
}

/// The query of a result.
#[derive(Debug, Deserialize)]
struct ResultQuery {
    /// How long to wait for the end, in seconds.
    wait: Option<f64>,
}

/// `GET /tasks/{id}/result`: the task's result once it ended.
async fn result(
    State(store): State<AsyncStore>,
    Path(id): Path<String>,
    Query(query): Query<ResultQuery>,
) -> (StatusCode, Json<Value>) {
    let secs = query.wait.unwrap_or(30.0).clamp(0.0, 300.0);
    match store.wait_for_end(&id, Duration::from_secs_f64(secs)).await {
        Ok(Some(record)) => (
            StatusCode::OK,
            Json(json!({"id": id, "status": record.status, "result": record.result})),
        ),
        Ok(None) => match store.task(&id).await {
            Ok(record) => (
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "status": record.status})),
            ),
            Err(e) => refused(&e),
        },
        Err(e) => refused(&e),
    }
}

/// A store error as an HTTP answer: the client's fault or ours.
fn refused(error: &StoreError) -> (StatusCode, Json<Value>) {
    let status = match error {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::InvalidName { .. }
        | StoreError::InvalidOption { .. }
        | StoreError::ArgsTooLarge { .. }
        | StoreError::Args(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(json!({"error": error.to_string()})))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // REDIS_URL and the RT_* variables, as every program of the product.
    let settings = Settings::load(None)?;
    let store = AsyncStore::from_settings(&settings).await?;
    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, router(store)).await?;
    Ok(())
}
