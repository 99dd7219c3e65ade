//! The `/metrics` HTTP server: one thread, one `poll` loop, a fixed number
//! of connections, so that no client can hurt the supervisor.
//!
//! Whoever reaches the metrics port is outside the trust boundary. The
//! rules, each against an attack seen on the old thread-per-connection
//! server:
//!
//! - **One thread, whatever the clients do.** Connections are non-blocking
//!   sockets multiplexed by `poll(2)`; no thread is started per connection,
//!   so thousands of half-open clients cannot exhaust the supervisor's task
//!   budget (`TasksMax=`) and starve the slots of worker processes.
//! - **At most [`MAX_CONNECTIONS`] open at once.** A new connection beyond
//!   that closes the oldest one (the likeliest idle attacker; a scraper
//!   sends its request at once and is answered within one loop).
//! - **A deadline per connection** ([`DEADLINE`]) for reading the request
//!   and writing the answer; a request head over [`MAX_HEAD`] bytes is
//!   refused.
//! - **One request per connection** (`Connection: close`): a client that
//!   pipelines requests without reading gets one answer and is closed; it
//!   never holds up another connection.
//! - **One refresh per [`FRESH_FOR`]**: scrapes within that time share one
//!   encoded page, so a flood of scrapes is not a flood of Redis reads.
//! - **Accept errors are waited out** (`EMFILE` and friends: the listener is
//!   left alone for [`ACCEPT_PAUSE`]), never fatal and never a busy loop.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use prometheus_client::encoding::prometheus_text;
use redis_tasks_store::Store;
use tracing::{debug, warn};

use crate::shared::Shared;

/// Connections open at once; more close the oldest.
const MAX_CONNECTIONS: usize = 64;
/// Time a connection has from its accept to the end of the answer.
const DEADLINE: Duration = Duration::from_secs(10);
/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// How long one encoded page answers scrapes.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// How long the listener is left alone after an accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
/// Longest sleep of the loop with nothing to do.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// The `/metrics` listener, bound before the supervisor starts so that a
/// taken or forbidden address stops it at once.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
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
        let failed = |e: io::Error| MetricsBindError {
            addr,
            reason: e.to_string(),
        };
        let listener = TcpListener::bind(addr).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(MetricsServer { listener, addr })
    }

    /// Serves scrapes on a thread of its own until [`MetricsThread::stop`].
    pub(crate) fn start(self, shared: Arc<Shared>, store: Store) -> io::Result<MetricsThread> {
        let (waker, wakee) = UnixStream::pair()?;
        wakee.set_nonblocking(true)?;
        let addr = self.addr;
        let listener = self.listener;
        let handle = std::thread::Builder::new()
            .name("metrics".to_owned())
            .spawn(move || {
                let mut server = Server {
                    listener,
                    wakee,
                    conns: VecDeque::new(),
                    page: None,
                    accept_paused_until: None,
                    shared,
                    store,
                };
                server.run();
            })?;
        tracing::info!("serving Prometheus metrics on http://{addr}/metrics");
        Ok(MetricsThread {
            waker: Some(waker),
            handle: Some(handle),
        })
    }
}

/// The running `/metrics` server.
#[derive(Debug)]
pub(crate) struct MetricsThread {
    /// Closed (dropped) to stop the loop.
    waker: Option<UnixStream>,
    handle: Option<JoinHandle<()>>,
}

impl MetricsThread {
    /// Stops serving and waits for the thread.
    pub(crate) fn stop(mut self) {
        self.waker = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    state: State,
}

enum State {
    /// Reading the request head.
    Reading(Vec<u8>),
    /// Writing `head` then `body`; `sent` bytes of the two are out.
    Writing {
        head: Vec<u8>,
        body: Arc<Vec<u8>>,
        sent: usize,
    },
    /// Answer sent and our side shut: reading what the client still sends
    /// (pipelined requests) until it closes, so that closing with unread
    /// data cannot reset the connection before the client read the answer.
    Draining,
    /// To be closed.
    Done,
}

/// An encoded page and when it was made.
struct Page {
    at: Instant,
    body: Arc<Vec<u8>>,
}

struct Server {
    listener: TcpListener,
    /// Readable (end of file) once the [`MetricsThread`] is stopped or dropped.
    wakee: UnixStream,
    conns: VecDeque<Conn>,
    page: Option<Page>,
    accept_paused_until: Option<Instant>,
    shared: Arc<Shared>,
    store: Store,
}

impl Server {
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            self.conns
                .retain(|c| c.deadline > now && !matches!(c.state, State::Done));
            if self.accept_paused_until.is_some_and(|t| t <= now) {
                self.accept_paused_until = None;
            }
            let accepting = self.accept_paused_until.is_none();
            let wake_at = self
                .conns
                .iter()
                .map(|c| c.deadline)
                .chain(self.accept_paused_until)
                .min()
                .map_or(IDLE_WAKE, |t| {
                    t.saturating_duration_since(now).min(IDLE_WAKE)
                });
            let timeout = PollTimeout::try_from(wake_at + Duration::from_millis(1))
                .unwrap_or(PollTimeout::MAX);
            let (stop, listener_ready, ready) = {
                let mut fds = Vec::with_capacity(self.conns.len() + 2);
                fds.push(PollFd::new(self.wakee.as_fd(), PollFlags::POLLIN));
                let listen_flags = if accepting {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                };
                fds.push(PollFd::new(self.listener.as_fd(), listen_flags));
                for conn in &self.conns {
                    let flags = match conn.state {
                        State::Writing { .. } => PollFlags::POLLOUT,
                        _ => PollFlags::POLLIN,
                    };
                    fds.push(PollFd::new(conn.stream.as_fd(), flags));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        // Not expected; never a busy loop.
                        warn!("metrics: poll failed: {e}");
                        std::thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                }
                let any = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                let ready: Vec<bool> = fds[2..].iter().map(any).collect();
                (any(&fds[0]), any(&fds[1]), ready)
            };
            if stop && self.stopped() {
                return;
            }
            let mut conns = std::mem::take(&mut self.conns);
            for (conn, ready) in conns.iter_mut().zip(ready) {
                if ready {
                    let state = std::mem::replace(&mut conn.state, State::Done);
                    conn.state = self.advance(conn, state);
                }
            }
            self.conns = conns;
            if listener_ready {
                self.accept();
            }
        }
    }

    /// Whether the [`MetricsThread`] is gone (the waker closed).
    fn stopped(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match (&self.wakee).read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted
            }
        }
    }

    /// Accepts what the listener holds, closing the oldest connections
    /// beyond [`MAX_CONNECTIONS`].
    fn accept(&mut self) {
        for _ in 0..MAX_CONNECTIONS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.conns.pop_front();
                    }
                    let mut conn = Conn {
                        stream,
                        deadline: Instant::now() + DEADLINE,
                        state: State::Done,
                    };
                    // A scraper's request is usually there already.
                    conn.state = self.advance(&mut conn, State::Reading(Vec::new()));
                    self.conns.push_back(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors or memory: leave the listener
                    // alone a moment rather than spin on it.
                    debug!("metrics: cannot accept a connection: {e}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Moves `conn` on as far as its socket allows from `state`.
    fn advance(&mut self, conn: &mut Conn, mut state: State) -> State {
        loop {
            state = match state {
                State::Reading(mut head) => {
                    let mut buf = [0u8; 1024];
                    match conn.stream.read(&mut buf) {
                        Ok(0) => return State::Done,
                        Ok(n) => {
                            head.extend_from_slice(&buf[..n]);
                            if let Some(end) = find(&head, b"\r\n\r\n") {
                                head.truncate(end);
                                self.answer(&head)
                            } else if head.len() > MAX_HEAD {
                                reply(
                                    431,
                                    "text/plain; charset=utf-8",
                                    b"request head too large\n".to_vec().into(),
                                    true,
                                )
                            } else {
                                State::Reading(head)
                            }
                        }
                        Err(e) if blocked(&e) => return State::Reading(head),
                        Err(_) => return State::Done,
                    }
                }
                State::Writing { head, body, sent } => {
                    let total = head.len() + body.len();
                    if sent >= total {
                        let _ = conn.stream.shutdown(Shutdown::Write);
                        State::Draining
                    } else {
                        let chunk = if sent < head.len() {
                            &head[sent..]
                        } else {
                            &body[sent - head.len()..]
                        };
                        match conn.stream.write(chunk) {
                            Ok(0) => return State::Done,
                            Ok(n) => State::Writing {
                                head,
                                body,
                                sent: sent + n,
                            },
                            Err(e) if blocked(&e) => return State::Writing { head, body, sent },
                            Err(_) => return State::Done,
                        }
                    }
                }
                State::Draining => {
                    let mut buf = [0u8; 4096];
                    match conn.stream.read(&mut buf) {
                        Ok(0) => return State::Done,
                        Ok(_) => State::Draining,
                        Err(e) if blocked(&e) => return State::Draining,
                        Err(_) => return State::Done,
                    }
                }
                State::Done => return State::Done,
            }
        }
    }

    /// The answer to the request whose head is `head`.
    fn answer(&mut self, head: &[u8]) -> State {
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut words = line.split_whitespace();
        let (method, target) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        let path = target.split('?').next().unwrap_or_default();
        let with_body = method != "HEAD";
        let text = "text/plain; charset=utf-8";
        match (method, path) {
            ("GET" | "HEAD", "/metrics") => {
                let body = self.page();
                reply(200, prometheus_text::CONTENT_TYPE, body, with_body)
            }
            ("GET" | "HEAD", "/") => reply(
                200,
                text,
                b"redis-tasks supervisor: metrics at /metrics\n"
                    .to_vec()
                    .into(),
                with_body,
            ),
            ("GET" | "HEAD", _) => reply(404, text, b"not found\n".to_vec().into(), with_body),
            _ => reply(405, text, b"only GET and HEAD\n".to_vec().into(), true),
        }
    }

    /// The encoded page, refreshed from Redis at most once per [`FRESH_FOR`].
    fn page(&mut self) -> Arc<Vec<u8>> {
        if let Some(page) = &self.page
            && page.at.elapsed() < FRESH_FOR
        {
            return Arc::clone(&page.body);
        }
        self.shared.metrics.refresh(&self.store);
        let body = Arc::new(self.shared.metrics.encode().into_bytes());
        self.page = Some(Page {
            at: Instant::now(),
            body: Arc::clone(&body),
        });
        body
    }
}

fn blocked(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A whole `Connection: close` answer.
fn reply(status: u16, content_type: &str, body: Arc<Vec<u8>>, with_body: bool) -> State {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let body = if with_body {
        body
    } else {
        Arc::new(Vec::new())
    };
    State::Writing {
        head,
        body,
        sent: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_request_head_is_found() {
        assert_eq!(
            find(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest", b"\r\n\r\n"),
            Some(23)
        );
        assert_eq!(find(b"GET / HTTP/1.1\r\n", b"\r\n\r\n"), None);
    }
}
