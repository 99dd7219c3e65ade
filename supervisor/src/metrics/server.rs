//! The `/metrics` HTTP server: a small blocking server (tiny_http) on a
//! thread of its own; each scrape refreshes the figures read from Redis and
//! encodes the registry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::encoding::prometheus_text;
use redis_tasks_store::Store;
use tracing::warn;

use crate::shared::Shared;

/// The `/metrics` listener, bound before the supervisor starts so that a
/// taken or forbidden address stops it at once.
pub(crate) struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {reason}")]
pub struct MetricsBindError {
    addr: SocketAddr,
    reason: String,
}

impl MetricsServer {
    /// Binds `addr`.
    pub(crate) fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsBindError> {
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsBindError {
            addr,
            reason: e.to_string(),
        })?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        Ok(MetricsServer {
            server: Arc::new(server),
            addr,
        })
    }

    /// Serves scrapes on a thread of its own until [`MetricsThread::stop`].
    pub(crate) fn start(self, shared: Arc<Shared>, store: Store) -> std::io::Result<MetricsThread> {
        let server = Arc::clone(&self.server);
        let addr = self.addr;
        let handle = std::thread::Builder::new()
            .name("metrics".to_owned())
            .spawn(move || serve(&server, &shared, &store))?;
        tracing::info!("serving Prometheus metrics on http://{addr}/metrics");
        Ok(MetricsThread {
            server: self.server,
            handle: Some(handle),
        })
    }
}

/// The running `/metrics` server.
pub(crate) struct MetricsThread {
    server: Arc<tiny_http::Server>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsThread")
    }
}

impl MetricsThread {
    /// Stops serving and waits for the thread.
    pub(crate) fn stop(mut self) {
        self.server.unblock();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for MetricsThread {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn serve(server: &tiny_http::Server, shared: &Shared, store: &Store) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or_default();
        let method = request.method().clone();
        let response = match (&method, path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                shared.metrics.refresh(store);
                text_response(200, shared.metrics.encode(), prometheus_text::CONTENT_TYPE)
            }
            (tiny_http::Method::Get | tiny_http::Method::Head, "/") => text_response(
                200,
                "redis-tasks supervisor: metrics at /metrics\n".to_owned(),
                "text/plain; charset=utf-8",
            ),
            (tiny_http::Method::Get | tiny_http::Method::Head, _) => {
                text_response(404, "not found\n".to_owned(), "text/plain; charset=utf-8")
            }
            _ => text_response(
                405,
                "only GET and HEAD\n".to_owned(),
                "text/plain; charset=utf-8",
            ),
        };
        if let Err(e) = request.respond(response) {
            warn!("metrics: cannot answer a scrape: {e}");
        }
    }
}

fn text_response(
    status: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    response
}
