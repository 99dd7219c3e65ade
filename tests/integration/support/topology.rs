//! Redis deployments beyond one plain server, on loopback: a TLS server
//! with certificates made by the test (`rcgen`), and a Sentinel-managed
//! pair (master, replica, three sentinels) whose master a test can SIGKILL.
//!
//! Every process has its own free port and temp dir, is killed on drop, and
//! prints its log when the test fails.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until};

/// One `redis-server` process (plain, TLS, replica or sentinel) with a
/// plain loopback port for readiness checks and administration.
#[derive(Debug)]
pub struct RedisProc {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// A config file to pass first (sentinels need a writable one).
    conf: Option<PathBuf>,
    name: String,
}

impl RedisProc {
    /// Starts `redis-server` on a free port with `extra` arguments (the
    /// port, bind address, dir and log file are set here) and waits until
    /// it answers `PING` on its plain port.
    pub fn start(name: &str, extra: &[String]) -> RedisProc {
        Self::start_inner(name, None, extra)
    }

    /// Starts a sentinel with `conf_body` as its config file (`port` and
    /// `dir` are added here).
    pub fn start_sentinel(name: &str, conf_body: &str) -> RedisProc {
        Self::start_inner(name, Some(conf_body), &["--sentinel".to_owned()])
    }

    fn start_inner(name: &str, conf_body: Option<&str>, extra: &[String]) -> RedisProc {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let conf = conf_body.map(|body| {
                let path = dir.path().join("redis.conf");
                std::fs::write(&path, body).expect("write redis.conf");
                path
            });
            let mut proc = RedisProc {
                child: None,
                port,
                dir,
                args: extra.to_vec(),
                conf,
                name: name.to_owned(),
            };
            match proc.spawn().and_then(|()| proc.wait_ready()) {
                Ok(()) => return proc,
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server ({name}): {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin = std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
        let mut cmd = Command::new(&bin);
        if let Some(conf) = &self.conf {
            cmd.arg(conf);
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if self.conf.is_none() {
            cmd.args(["--save", "", "--appendonly", "no"]);
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", PathBuf::from(&bin).display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if answers_ping(self.port) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("did not answer PING:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The plain port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A path in the process's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A plain connection (as the default user) on the plain port.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("connect to {} on {}: {e}", self.name, self.port))
    }

    /// SIGKILLs the process and waits until its port is closed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_until("redis port closed", Duration::from_secs(60), || {
            !answers_ping(port)
        });
    }

    /// Starts the process again with the same port, dir and arguments.
    pub fn start_again(&mut self) {
        self.spawn().expect("restart redis-server");
        self.wait_ready().expect("restarted redis-server answers");
    }

    /// Starts the process again as a replica of the server on `port` (as
    /// a server whose config file Sentinel rewrote comes back).
    pub fn start_again_as_replica_of(&mut self, port: u16) {
        self.args.retain(|a| a != "--replicaof");
        self.args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            port.to_string(),
        ]);
        self.start_again();
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} log (port {}) ---\n{}--- end of {} log ---",
                self.name,
                self.port,
                self.log(),
                self.name
            );
        }
    }
}

/// Whether something on `port` answers `PING` with `+PONG`.
pub fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
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

/// Certificates made for one test: a CA, a server certificate for
/// `127.0.0.1` and `localhost`, a client certificate, all signed by the CA,
/// and a second CA that signed nothing (the "wrong CA").
#[derive(Debug)]
pub struct TestCerts {
    pub dir: tempfile::TempDir,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        };
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let ca = CertifiedIssuer::self_signed(
            ca_params("redis-tasks test CA"),
            KeyPair::generate().expect("key"),
        )
        .expect("CA");
        write("ca.pem", ca.pem());
        let other = CertifiedIssuer::self_signed(
            ca_params("some other CA"),
            KeyPair::generate().expect("key"),
        )
        .expect("other CA");
        write("other-ca.pem", other.pem());

        let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose, stem: &str| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(sans).expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &ca).expect("sign");
            write(&format!("{stem}.pem"), cert.pem());
            write(&format!("{stem}.key"), key.serialize_pem());
        };
        leaf(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "redis server",
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        leaf(
            Vec::new(),
            "redis-tasks client",
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        TestCerts { dir }
    }

    /// A file of the set: `ca.pem`, `other-ca.pem`, `server.pem`,
    /// `server.key`, `client.pem`, `client.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A redis-server with a TLS port (certificates from `certs`) besides its
/// plain port; `require_client_cert` turns on mutual TLS.
#[derive(Debug)]
pub struct TlsRedis {
    pub proc: RedisProc,
    pub tls_port: u16,
}

impl TlsRedis {
    pub fn start(certs: &TestCerts, require_client_cert: bool) -> TlsRedis {
        let tls_port = free_port().expect("free port");
        let s = |p: &Path| p.display().to_string();
        let args = vec![
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            s(&certs.file("server.pem")),
            "--tls-key-file".to_owned(),
            s(&certs.file("server.key")),
            "--tls-ca-cert-file".to_owned(),
            s(&certs.file("ca.pem")),
            "--tls-auth-clients".to_owned(),
            if require_client_cert { "yes" } else { "no" }.to_owned(),
        ];
        let proc = RedisProc::start("tls redis-server", &args);
        TlsRedis { proc, tls_port }
    }

    /// `rediss://127.0.0.1:<tls port>`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }
}

/// A master, a replica and three sentinels (quorum 2) watching them as
/// `mymaster`, with a short `down-after-milliseconds` so a failover takes
/// a few seconds (2 s: less makes a loaded test machine look like an
/// outage).
#[derive(Debug)]
pub struct SentinelSet {
    pub master: RedisProc,
    pub replica: RedisProc,
    pub sentinels: Vec<RedisProc>,
    /// Started by [`SentinelSet::start_tls`].
    pub tls: bool,
    /// With TLS: the sentinels' TLS ports (besides their plain ones).
    pub sentinel_tls_ports: Vec<u16>,
}

/// The master name the sentinels of a [`SentinelSet`] watch.
pub const MASTER_NAME: &str = "mymaster";

impl SentinelSet {
    /// Starts the set and waits until every sentinel knows the replica and
    /// the other sentinels.
    pub fn start() -> SentinelSet {
        Self::start_with(None)
    }

    /// Like [`SentinelSet::start`], with TLS between everyone (certificates
    /// from `certs`, no client certificates required): the sentinels
    /// monitor and name the TLS ports; their own port stays plain.
    pub fn start_tls(certs: &TestCerts) -> SentinelSet {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&TestCerts>) -> SentinelSet {
        let tls_args = |port: u16| -> Vec<String> {
            let Some(certs) = certs else {
                return Vec::new();
            };
            let s = |name: &str| certs.file(name).display().to_string();
            vec![
                "--tls-port".to_owned(),
                port.to_string(),
                "--tls-cert-file".to_owned(),
                s("server.pem"),
                "--tls-key-file".to_owned(),
                s("server.key"),
                "--tls-ca-cert-file".to_owned(),
                s("ca.pem"),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
                "--tls-replication".to_owned(),
                "yes".to_owned(),
            ]
        };
        let master_tls = free_port().expect("free port");
        let master = RedisProc::start("master", &tls_args(master_tls));
        // The port the others reach the master on.
        let master_port = if certs.is_some() {
            master_tls
        } else {
            master.port()
        };
        let mut replica_args = tls_args(free_port().expect("free port"));
        replica_args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master_port.to_string(),
        ]);
        let replica = RedisProc::start("replica", &replica_args);
        wait_until("the replica to sync", Duration::from_secs(60), || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.client())
                .unwrap_or_default();
            info.contains("master_link_status:up")
        });
        let mut conf = format!(
            "sentinel resolve-hostnames no\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 2000\n\
             sentinel failover-timeout {MASTER_NAME} 10000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n"
        );
        if let Some(certs) = certs {
            let s = |name: &str| certs.file(name).display().to_string();
            conf.push_str(&format!(
                "tls-replication yes\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                s("server.pem"),
                s("server.key"),
                s("ca.pem")
            ));
        }
        let mut sentinel_tls_ports = Vec::new();
        let sentinels: Vec<RedisProc> = (0..3)
            .map(|i| {
                // With TLS, sentinels talk TLS to each other too: each gets
                // a TLS port besides the plain one the programs use.
                let mut conf = conf.clone();
                if certs.is_some() {
                    let port = free_port().expect("free port");
                    conf.push_str(&format!("tls-port {port}\ntls-auth-clients no\n"));
                    sentinel_tls_ports.push(port);
                }
                RedisProc::start_sentinel(&format!("sentinel {i}"), &conf)
            })
            .collect();
        let set = SentinelSet {
            master,
            replica,
            sentinels,
            tls: certs.is_some(),
            sentinel_tls_ports,
        };
        wait_until(
            "every sentinel to see the replica and two other sentinels",
            Duration::from_secs(60),
            || {
                set.sentinels.iter().all(|s| {
                    let info: Vec<(String, String)> = redis::cmd("SENTINEL")
                        .arg("MASTER")
                        .arg(MASTER_NAME)
                        .query::<Vec<String>>(&mut s.client())
                        .map(|flat| {
                            flat.chunks(2)
                                .filter_map(|c| Some((c.first()?.clone(), c.get(1)?.clone())))
                                .collect()
                        })
                        .unwrap_or_default();
                    let get = |k: &str| {
                        info.iter()
                            .find(|(key, _)| key == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    get("num-slaves") == "1" && get("num-other-sentinels") == "2"
                })
            },
        );
        set
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let scheme = if self.tls {
            "rediss+sentinel"
        } else {
            "redis+sentinel"
        };
        format!("{scheme}://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// `rediss+sentinel://` naming the sentinels' TLS ports (a set started
    /// with TLS), for programs that talk TLS to the sentinels too.
    pub fn tls_sentinels_url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_tls_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("rediss+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The port of the master the first answering sentinel names now.
    pub fn current_master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", s.port()))
                .ok()?
                .get_connection_with_timeout(Duration::from_secs(2))
                .ok()?;
            let addr: Vec<String> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME)
                .query(&mut conn)
                .ok()?;
            addr.get(1)?.parse().ok()
        })
    }

    /// A plain connection to whichever process has `port`.
    pub fn node(&self, port: u16) -> &RedisProc {
        if self.master.port() == port {
            &self.master
        } else {
            &self.replica
        }
    }
}
