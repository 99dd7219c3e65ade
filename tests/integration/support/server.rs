//! A real `redis-server` for one test: its own free loopback port and temp
//! dir, no persistence, killed on drop, its log printed when the test fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis_tasks::Store;

use super::wait_until;

/// One running `redis-server` (binary from `REDIS_SERVER_BIN`, else
/// `redis-server` on the `PATH`).
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Append-only file on, fsync on every write: a killed server comes
    /// back with all its data.
    persistent: bool,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// Starts a server that keeps its data in an append-only file synced on
    /// every write, so [`RedisServer::restart`] loses nothing.
    pub fn start_persistent() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(persistent) {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    fn try_start(persistent: bool) -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let port = free_port()?;
        let child = Self::spawn(port, &dir, persistent)?;
        let mut server = RedisServer {
            child,
            port,
            dir,
            persistent,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts `redis-server` on `port` with `dir` as its working directory
    /// (where it finds a `dump.rdb` saved by [`RedisServer::stop_keeping_data`]).
    fn spawn(port: u16, dir: &tempfile::TempDir, persistent: bool) -> Result<Child, String> {
        let (aof, fsync) = if persistent {
            ("yes", "always")
        } else {
            ("no", "everysec")
        };
        let bin = std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
        let log = dir.path().join("redis.log");
        let child = Command::new(&bin)
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(aof)
            .arg("--appendfsync")
            .arg(fsync)
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", PathBuf::from(&bin).display()))?;
        Ok(child)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let server = self;
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "redis-server exited with {status}:\n{}",
                    server.log()
                ));
            }
            if ping(addr) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "redis-server did not answer PING:\n{}",
                    server.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A plain redis-rs connection, for checking and tampering with keys.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis")
    }

    /// A store on this server with the default prefix. With
    /// `RT_REDIS_PARTITIONS` set (which the programs the tests start read
    /// too), the data is partitioned: the whole suite can run that way.
    pub fn store(&self) -> Store {
        let config = redis_tasks::store::RedisConfig::from_url(&self.url(), None)
            .expect("test redis url")
            .with_partitions(test_partitions());
        Store::with_config(config, "redis_tasks").expect("open store")
    }

    /// The key names of [`RedisServer::store`]'s layout.
    pub fn names(&self) -> super::Names {
        super::Names::of(self.store(), self.client())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Saves the data set to disk and stops the server: Redis is down, but
    /// [`RedisServer::start_again`] brings it back with every key.
    pub fn stop_keeping_data(&mut self) {
        let mut conn = self.client();
        let _: () = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
        self.kill();
    }

    /// Starts the server again on the same port and directory.
    pub fn start_again(&mut self) {
        self.child =
            Self::spawn(self.port, &self.dir, self.persistent).expect("restart redis-server");
        self.wait_ready().expect("restarted redis-server answers");
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// directory; with [`RedisServer::start_persistent`] no data is lost.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server now (to test an unreachable Redis).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        wait_until("redis port closed", Duration::from_secs(60), || {
            !ping(SocketAddr::from(([127, 0, 0, 1], self.port)))
        });
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}--- end of redis-server log ---",
                self.port,
                self.log()
            );
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local addr: {e}"))
}

fn ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The test module that runs store tests again on three partitions
/// (main.rs): a test whose name starts with it gets that layout.
pub const THREE_PARTITIONS: &str = "three_partitions::";

/// The partition count of the running test: 3 in the `three_partitions`
/// module (libtest names each test's thread after the test), else
/// `RT_REDIS_PARTITIONS` of the environment (0, the default, when unset).
pub fn test_partitions() -> u16 {
    if std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with(THREE_PARTITIONS))
    {
        return 3;
    }
    std::env::var("RT_REDIS_PARTITIONS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
