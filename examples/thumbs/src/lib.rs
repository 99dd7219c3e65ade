// src/lib.rs
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis_tasks::{App, Child, TaskContext, TaskOptions};
use serde::{Deserialize, Serialize};

pub mod producer; // section 4
pub mod web; // section 4, from async code

#[derive(Deserialize)]
pub struct Resize {
    pub image: String,
    pub width: u32,
}

#[derive(Serialize, Deserialize)]
pub struct Resized {
    pub path: String,
    pub bytes: u64,
}

/// Built once in each worker process by the setup hook (section 6).
pub struct Pool {
    pub used: AtomicU64,
}

fn resize(ctx: &TaskContext, r: Resize) -> Result<Resized, String> {
    let pool = ctx.state::<Pool>().ok_or("no pool")?;
    pool.used.fetch_add(1, Ordering::Relaxed);
    ctx.progress(1, Some(1), "resized");
    Ok(Resized {
        path: format!("{}-{}.png", r.image, r.width),
        bytes: u64::from(r.width) * 10,
    })
}

/// One `resize` per width, written only if this task finishes (section 5).
fn resize_all(ctx: &TaskContext, image: String) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    for width in [64, 256] {
        let args = serde_json::json!({ "image": image, "width": width });
        let child = Child::new("resize", &args).map_err(|e| e.to_string())?;
        ids.push(ctx.enqueue(child.on_success()).map_err(|e| e.to_string())?);
    }
    Ok(ids)
}

async fn fetch_page(_ctx: &TaskContext, url: String) -> Result<usize, String> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(url.len())
}

pub fn app() -> App {
    App::new("thumbs")
        .version(env!("CARGO_PKG_VERSION"))
        .setup(|| {
            Ok::<_, String>(Pool {
                used: AtomicU64::new(0),
            })
        })
        .task("resize", resize)
        .task("resize_all", resize_all)
        .task_with(
            "import",
            TaskOptions::new()
                .reentrant(true)
                .timeout(Duration::from_secs(600)),
            |_ctx: &TaskContext, rows: u64| Ok::<u64, String>(rows),
        )
        .task_async("fetch_page", fetch_page)
}
