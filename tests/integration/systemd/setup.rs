//! What booting needs: the machine's prerequisites (or why the test must
//! skip), and the files the namespace is built from: its units, its user
//! database and the script PID 1 starts as.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the test's temp dir appears inside the namespace.
pub(super) const HOST: &str = "/run/redis-tasks-test/host";
/// Where the directory holding the demo binary appears inside.
pub(super) const BIN: &str = "/run/redis-tasks-test/bin";
/// The namespace's default target.
const TARGET: &str = "redis-tasks-test.target";
/// The Redis unit.
pub const REDIS_UNIT: &str = "redis-tasks-test-redis.service";
/// Set to `1` (as CI does) to make a missing prerequisite a failure
/// instead of a skip.
pub(super) const REQUIRE_VAR: &str = "REDIS_TASKS_REQUIRE_SYSTEMD_TEST";

/// Candidates for systemd's PID 1 binary.
const SYSTEMD_BINS: [&str; 2] = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"];

/// What booting needs from the machine.
pub(super) struct Prereq {
    /// The systemd binary.
    pub systemd: &'static str,
    /// The test's own cgroup, on the host, in the cgroup2 hierarchy.
    pub parent_cgroup: PathBuf,
    /// The redis-server binary.
    pub redis_server: PathBuf,
}

/// What this machine offers for booting, or why it cannot boot here.
pub(super) fn prerequisites() -> Result<Prereq, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (namespaces, cgroups, nsenter)".into());
    }
    let systemd = SYSTEMD_BINS
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("systemd is not installed (no /lib/systemd/systemd)")?;
    for tool in ["systemctl", "unshare", "nsenter", "script", "sh"] {
        find_in_path(tool).ok_or_else(|| format!("{tool} is not installed"))?;
    }
    let redis_server = match std::env::var_os("REDIS_SERVER_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => find_in_path("redis-server").ok_or("redis-server is not installed")?,
    };
    let parent_cgroup = own_cgroup2().ok_or("no cgroup2 hierarchy is mounted")?;
    let probe = Command::new("unshare")
        .args([
            "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "--cgroup", "true",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "namespaces are not available: unshare said {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(Prereq {
        systemd,
        parent_cgroup,
        redis_server,
    })
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The host path of this process's cgroup in the cgroup2 hierarchy.
fn own_cgroup2() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    // "<id> <parent> <dev> <root> <mount point> <options> ... - cgroup2 ..."
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(PathBuf::from))?
    })?;
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(path.trim_start_matches('/')))
}

/// Quotes `s` for `sh`.
pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub(super) fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("create dir");
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// The default target, empty stand-ins for the targets every service
/// depends on by default, and the Redis unit.
pub(super) fn write_base_units(dir: &Path, redis_server: &Path) {
    let units = dir.join("units");
    write(
        &units.join(TARGET),
        &format!(
            "[Unit]\nDescription=redis-tasks test system\nWants={REDIS_UNIT}\n\
             After={REDIS_UNIT}\n"
        ),
    );
    // Stand-ins: without them a service's default dependencies would pull
    // nothing, but systemctl would list them as not found; and the real
    // ones (with their .wants/ directories) are not on the unit path.
    for target in [
        "sysinit.target",
        "basic.target",
        "shutdown.target",
        "network.target",
        "network-online.target",
        "multi-user.target",
    ] {
        write(
            &units.join(target),
            "[Unit]\nDescription=test stand-in\nDefaultDependencies=no\n",
        );
    }
    write(
        &units.join(REDIS_UNIT),
        &format!(
            "[Unit]\nDescription=the test's Redis\n\n[Service]\nType=notify\n\
             TimeoutStartSec=30\n\
             ExecStart={} --port 6379 --bind 127.0.0.1 --unixsocket {HOST}/redis.sock \
             --unixsocketperm 700 --save \"\" --appendonly no \
             --dir /run/redis-tasks-test/redis --logfile {HOST}/redis.log \
             --supervised systemd\n",
            redis_server.display()
        ),
    );
}

/// Copies of the machine's user and group databases with a `redis-tasks`
/// system user, for the namespace to bind-mount over its own.
pub(super) fn write_users(dir: &Path) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let mut passwd = passwd.trim_end().to_owned();
    let mut group = group.trim_end().to_owned();
    if !passwd.lines().any(|l| l.starts_with("redis-tasks:")) {
        passwd.push_str(
            "\nredis-tasks:x:64990:64990:redis-tasks test user:/nonexistent:/usr/sbin/nologin",
        );
    }
    if !group.lines().any(|l| l.starts_with("redis-tasks:")) {
        group.push_str("\nredis-tasks:x:64990:");
    }
    write(&dir.join("passwd"), &format!("{passwd}\n"));
    write(&dir.join("group"), &format!("{group}\n"));
}

/// The script PID 1 starts as (before it execs systemd): private mounts,
/// then systemd with the test's unit path.
pub(super) fn boot_script_text(dir: &Path, bin_dir: &Path, systemd: &str) -> String {
    let host = sh_quote(&dir.to_string_lossy());
    let bin = sh_quote(&bin_dir.to_string_lossy());
    format!(
        r#"set -eu
# Everything here changes this mount namespace only.
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p {HOST} {BIN} /run/redis-tasks-test/redis
mount --bind {host} {HOST}
mount --bind {bin} {BIN}
mount -o remount,bind,ro {BIN}
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount --bind {HOST}/passwd /etc/passwd
mount --bind {HOST}/group /etc/group
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind /sys /sys
mount -o remount,bind,ro /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --bind "$(tty)" /dev/console
exec env -i container=redis-tasks-test \
    SYSTEMD_UNIT_PATH={HOST}/units \
    SYSTEMD_GENERATOR_PATH={HOST}/none \
    SYSTEMD_ENVIRONMENT_GENERATOR_PATH={HOST}/none \
    {systemd} --system --unit={TARGET} \
    --log-target=console --log-level=debug --log-color=no --show-status=no
"#
    )
}
