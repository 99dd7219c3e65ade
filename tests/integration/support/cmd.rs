//! Running a binary (the admin CLI) the way a user would, with failures that
//! print the command, its status, stdout and stderr.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Whether an environment variable could make a child read settings from
/// the developer's machine (`REDIS_URL`, `RT_*`); such variables are removed
/// from every command.
/// Settings variables of the environment are not passed on, except
/// `RT_REDIS_PARTITIONS`, with which the whole suite runs on partitioned
/// data (see `support::server::test_partitions`).
fn is_settings_var(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    (name == "REDIS_URL" || name.starts_with("RT_")) && name != "RT_REDIS_PARTITIONS"
}

/// The admin binary built for these tests.
pub fn admin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_redis-tasks"))
}

/// A command under test, with a deadline.
#[derive(Debug)]
pub struct Cmd {
    cmd: Command,
    timeout: Duration,
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Cmd {
    /// A command running `bin`, with a 60 s deadline.
    pub fn new(bin: impl AsRef<Path>) -> Cmd {
        let mut cmd = Command::new(bin.as_ref());
        for (var, _) in std::env::vars_os() {
            if is_settings_var(&var) {
                cmd.env_remove(var);
            }
        }
        let partitions = crate::support::server::test_partitions();
        if partitions > 0 {
            cmd.env("RT_REDIS_PARTITIONS", partitions.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Cmd {
            cmd,
            timeout: Duration::from_secs(60),
        }
    }

    /// The admin CLI, pointed at `url` with `--redis-url`.
    pub fn admin(url: &str) -> Cmd {
        let mut c = Cmd::new(admin_bin());
        c.arg("--redis-url").arg(url);
        c
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Cmd {
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Cmd {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Cmd {
        self.cmd.env(key, value);
        self
    }

    /// Sets the deadline after which the child is killed and the test fails.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Cmd {
        self.timeout = timeout;
        self
    }

    fn describe(&self) -> String {
        let mut parts: Vec<OsString> = vec![self.cmd.get_program().to_owned()];
        parts.extend(self.cmd.get_args().map(OsStr::to_owned));
        parts
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion (or the deadline), whatever the status.
    pub fn output(&mut self) -> Output {
        let start = Instant::now();
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.describe()));
        // Drain both pipes on threads so a chatty child never blocks.
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for child") {
                break status;
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "command timed out after {:?}: {}\nstdout:\n{}\nstderr:\n{}",
                    self.timeout,
                    self.describe(),
                    out.join().unwrap_or_default(),
                    err.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            elapsed: start.elapsed(),
        }
    }

    /// Runs and asserts success; returns the output.
    pub fn run(&mut self) -> Output {
        let o = self.output();
        if !o.status.success() {
            panic!("{}", self.report("command failed", &o));
        }
        o
    }

    /// Runs and asserts failure; returns the output.
    pub fn fails(&mut self) -> Output {
        let o = self.output();
        if o.status.success() {
            panic!(
                "{}",
                self.report("command succeeded but should have failed", &o)
            );
        }
        o
    }

    /// Runs, asserts success and returns stdout with the trailing newline
    /// removed.
    pub fn stdout(&mut self) -> String {
        self.run().stdout.trim_end_matches('\n').to_owned()
    }

    fn report(&self, what: &str, o: &Output) -> String {
        format!(
            "{what}\ncommand: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.describe(),
            o.status,
            o.stdout,
            o.stderr
        )
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}
