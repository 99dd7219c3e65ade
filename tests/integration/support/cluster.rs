//! A Redis Cluster on loopback: three masters and three replicas, each a
//! [`RedisProc`] with its own free port (and a second free port for the
//! cluster bus), joined by `redis-cli --cluster create`. A test can SIGKILL
//! a master, wait for its replica to take its slots over, and start the
//! killed node again (it comes back as a replica of its successor).
//!
//! Failover on loopback is quick and reliable with:
//! - `cluster-node-timeout 2000`: a master is marked failing 2 s after it
//!   stopped answering (less makes a loaded 2-core test machine look like an
//!   outage, as with Sentinel's `down-after-milliseconds`); the replica's
//!   election follows within about a second.
//! - `cluster-replica-validity-factor 0`: a replica always tries to take
//!   over, however long ago it last heard from its master (on a busy
//!   machine its link may have been slow just before the kill).
//! - `repl-diskless-sync-delay 0`: a replica syncs at once instead of after
//!   the default 5 s, at start and when a killed master comes back.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::topology::{RedisProc, TestCerts};
use super::{free_port, wait_until};

/// How long the harness waits for the cluster to form or heal.
const FORM: Duration = Duration::from_secs(120);

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// One node as `CLUSTER NODES` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    pub port: u16,
    pub flags: Vec<String>,
    /// The id of its master (replicas), else `-`.
    pub master_id: String,
    pub connected: bool,
    /// Slot ranges it serves (masters), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    pub fn is_failing(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }
}

/// Three masters, three replicas (one per master), all slots assigned
/// evenly by `redis-cli --cluster create`.
#[derive(Debug)]
pub struct ClusterSet {
    pub nodes: Vec<RedisProc>,
    /// The ports of the masters when the cluster was created.
    seed_ports: Vec<u16>,
    /// Slots of the masters killed by [`ClusterSet::kill_master`], until
    /// [`ClusterSet::wait_failover`] saw them served again.
    killed_slots: BTreeMap<u16, Vec<(u16, u16)>>,
    /// With TLS ([`ClusterSet::start_tls`]): each node's TLS port by its
    /// plain port (the plain port stays for administration).
    tls_ports: BTreeMap<u16, u16>,
}

impl ClusterSet {
    /// Three masters and three replicas.
    pub fn start() -> ClusterSet {
        Self::start_with(3, 1)
    }

    /// `masters` masters with `replicas` replicas each; waits until every
    /// node says `cluster_state:ok`, knows every other node and agrees on
    /// who serves which slot, and every replica is in sync.
    pub fn start_with(masters: usize, replicas: usize) -> ClusterSet {
        Self::start_inner(masters, replicas, None)
    }

    /// Like [`ClusterSet::start_with`], with TLS everywhere: each node has a
    /// TLS port (certificates from `certs`, no client certificate needed),
    /// replication and the cluster bus use TLS (`tls-cluster yes`), so
    /// `CLUSTER SLOTS` asked over TLS names the TLS ports.
    pub fn start_tls(masters: usize, replicas: usize, certs: &TestCerts) -> ClusterSet {
        Self::start_inner(masters, replicas, Some(certs))
    }

    fn start_inner(masters: usize, replicas: usize, certs: Option<&TestCerts>) -> ClusterSet {
        let total = masters * (1 + replicas);
        let mut tls_ports = BTreeMap::new();
        let nodes: Vec<RedisProc> = (0..total)
            .map(|i| {
                let Some(certs) = certs else {
                    return start_node(i, &[]);
                };
                let tls_port = free_port().expect("free port for TLS");
                let s = |name: &str| certs.file(name).display().to_string();
                let node = start_node(
                    i,
                    &[
                        "--tls-port".to_owned(),
                        tls_port.to_string(),
                        "--tls-cert-file".to_owned(),
                        s("server.pem"),
                        "--tls-key-file".to_owned(),
                        s("server.key"),
                        "--tls-ca-cert-file".to_owned(),
                        s("ca.pem"),
                        // The cluster bus and replication connect as
                        // clients: a certificate made for client auth (the
                        // server one is for server auth only, and a node
                        // presenting it hangs the bus handshake).
                        "--tls-client-cert-file".to_owned(),
                        s("client.pem"),
                        "--tls-client-key-file".to_owned(),
                        s("client.key"),
                        "--tls-auth-clients".to_owned(),
                        "no".to_owned(),
                        "--tls-replication".to_owned(),
                        "yes".to_owned(),
                        "--tls-cluster".to_owned(),
                        "yes".to_owned(),
                    ],
                );
                tls_ports.insert(node.port(), tls_port);
                node
            })
            .collect();
        let mut args = vec!["create".to_owned()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
        args.extend([
            "--cluster-replicas".to_owned(),
            replicas.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        let text = redis_cli_cluster(&args);
        assert!(
            text.contains("All 16384 slots covered"),
            "redis-cli --cluster create:\n{text}"
        );
        let mut set = ClusterSet {
            nodes,
            seed_ports: Vec::new(),
            killed_slots: BTreeMap::new(),
            tls_ports,
        };
        set.wait_healthy(masters, replicas);
        set.seed_ports = set.masters();
        assert_eq!(set.seed_ports.len(), masters, "{:?}", set.nodes_view());
        set
    }

    /// Waits until every live node says `cluster_state:ok` and knows
    /// every node, all live nodes see the same masters with all slots, each
    /// master has `replicas` replicas, and every replica's link is up.
    fn wait_healthy(&self, masters: usize, replicas: usize) {
        let total = self.nodes.len();
        wait_until("the cluster to form", FORM, || {
            let mut views = Vec::new();
            for node in self.live_nodes() {
                let Some(info) = cluster_info(node.port()) else {
                    return false;
                };
                if info.get("cluster_state").map(String::as_str) != Some("ok")
                    || info.get("cluster_known_nodes") != Some(&total.to_string())
                    || info.get("cluster_slots_ok") != Some(&SLOTS.to_string())
                {
                    return false;
                }
                let Some(lines) = cluster_nodes(node.port()) else {
                    return false;
                };
                let mut view: Vec<(u16, Vec<(u16, u16)>)> = lines
                    .iter()
                    .filter(|l| l.is_master() && !l.slots.is_empty())
                    .map(|l| (l.port, l.slots.clone()))
                    .collect();
                view.sort();
                views.push(view);
                let serving = lines
                    .iter()
                    .filter(|l| l.is_master() && !l.slots.is_empty())
                    .collect::<Vec<_>>();
                if serving.len() != masters {
                    return false;
                }
                for m in serving {
                    let followers = lines
                        .iter()
                        .filter(|l| l.master_id == m.id && !l.is_failing() && l.connected)
                        .count();
                    if followers < replicas {
                        return false;
                    }
                }
            }
            if views.windows(2).any(|w| w[0] != w[1]) {
                return false;
            }
            self.live_nodes().all(|n| {
                let info = replication_info(n.port());
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
    }

    /// The live nodes (not killed).
    pub fn live_nodes(&self) -> impl Iterator<Item = &RedisProc> {
        self.nodes.iter().filter(|n| n.pid() != 0)
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisProc {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisProc {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// `127.0.0.1:<port>` of the masters the cluster was created with
    /// (their TLS ports with TLS).
    pub fn seeds(&self) -> Vec<String> {
        self.seed_ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", self.tls_ports.get(p).unwrap_or(p)))
            .collect()
    }

    /// `redis+cluster://127.0.0.1:<m1>,127.0.0.1:<m2>,127.0.0.1:<m3>/`: the
    /// masters the cluster was created with, as seeds.
    pub fn url(&self) -> String {
        let scheme = if self.tls_ports.is_empty() {
            "redis+cluster"
        } else {
            "rediss+cluster"
        };
        format!("{scheme}://{}/", self.seeds().join(","))
    }

    /// What the first answering live node says about every node.
    pub fn nodes_view(&self) -> Vec<NodeLine> {
        self.live_nodes()
            .find_map(|n| cluster_nodes(n.port()))
            .unwrap_or_default()
    }

    /// The ports of the masters serving slots now (as the first answering
    /// live node sees it), sorted.
    pub fn masters(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .nodes_view()
            .into_iter()
            .filter(|l| l.is_master() && !l.slots.is_empty() && !l.is_failing())
            .map(|l| l.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The slot ranges the node on `port` serves now.
    pub fn slots_of(&self, port: u16) -> Vec<(u16, u16)> {
        self.nodes_view()
            .into_iter()
            .find(|l| l.port == port)
            .map(|l| l.slots)
            .unwrap_or_default()
    }

    /// The port of the master serving `slot` now.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.nodes_view()
            .into_iter()
            .find(|l| {
                l.is_master()
                    && !l.is_failing()
                    && l.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .map(|l| l.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {:?}", self.nodes_view()))
    }

    /// The hash slot of `key` (as `CLUSTER KEYSLOT` computes it).
    pub fn keyslot(&self, key: &str) -> u16 {
        let port = self
            .live_nodes()
            .next()
            .map(RedisProc::port)
            .expect("a live node");
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.node(port).client())
            .expect("CLUSTER KEYSLOT")
    }

    /// SIGKILLs the master on `port` (remembering the slots it served, for
    /// [`ClusterSet::wait_failover`]).
    pub fn kill_master(&mut self, port: u16) {
        let slots = self.slots_of(port);
        assert!(
            !slots.is_empty(),
            "node {port} serves no slots: {:?}",
            self.nodes_view()
        );
        self.killed_slots.insert(port, slots);
        self.node_mut(port).kill9();
    }

    /// Waits until the slots of the master killed on `old_port` are served
    /// by another node that says it is a master, and every live node says
    /// `cluster_state:ok` and agrees; returns the new master's port.
    pub fn wait_failover(&mut self, old_port: u16) -> u16 {
        let slots = self
            .killed_slots
            .get(&old_port)
            .cloned()
            .unwrap_or_else(|| panic!("no master was killed on {old_port}"));
        let first = slots.first().map_or(0, |(a, _)| *a);
        let mut new_port = 0;
        wait_until(
            &format!("a replica to take over the slots of {old_port}"),
            FORM,
            || {
                let mut owners = Vec::new();
                for node in self.live_nodes() {
                    let ok = cluster_info(node.port())
                        .is_some_and(|i| i.get("cluster_state").map(String::as_str) == Some("ok"));
                    if !ok {
                        return false;
                    }
                    let Some(lines) = cluster_nodes(node.port()) else {
                        return false;
                    };
                    let owner = lines.iter().find(|l| {
                        l.is_master() && l.slots.iter().any(|(a, b)| (*a..=*b).contains(&first))
                    });
                    match owner {
                        Some(o) if o.port != old_port => owners.push(o.port),
                        _ => return false,
                    }
                }
                let Some(&candidate) = owners.first() else {
                    return false;
                };
                if owners.iter().any(|p| *p != candidate) {
                    return false;
                }
                new_port = candidate;
                replication_info(candidate).contains("role:master")
            },
        );
        self.killed_slots.remove(&old_port);
        new_port
    }

    /// Starts the node killed on `port` again (same port, dir and
    /// `nodes.conf`): it learns it was failed over and comes back as a
    /// replica of its successor. Waits until it is in sync.
    pub fn restart_as_replica(&mut self, port: u16) {
        self.node_mut(port).start_again();
        wait_until(
            &format!("the node on {port} to come back as an in-sync replica"),
            FORM,
            || {
                let info = replication_info(port);
                info.contains("role:slave")
                    && info.contains("master_link_status:up")
                    && cluster_info(port)
                        .is_some_and(|i| i.get("cluster_state").map(String::as_str) == Some("ok"))
            },
        );
    }

    /// Starts an empty master and joins it to the cluster
    /// (`redis-cli --cluster add-node`); it serves no slots until
    /// [`ClusterSet::rebalance`]. Returns its port.
    pub fn add_master(&mut self) -> u16 {
        assert!(
            self.tls_ports.is_empty(),
            "add_master is for plain clusters"
        );
        let node = start_node(self.nodes.len(), &[]);
        let port = node.port();
        let seed = self.masters().first().copied().expect("a master");
        self.nodes.push(node);
        redis_cli_cluster(&[
            "add-node".to_owned(),
            format!("127.0.0.1:{port}"),
            format!("127.0.0.1:{seed}"),
        ]);
        let total = self.live_nodes().count().to_string();
        wait_until("every node to know the new master", FORM, || {
            self.live_nodes().all(|n| {
                cluster_info(n.port()).is_some_and(|i| {
                    i.get("cluster_known_nodes") == Some(&total)
                        && i.get("cluster_state").map(String::as_str) == Some("ok")
                })
            })
        });
        port
    }

    /// Moves slots (with their keys) so that every master, empty ones
    /// included, serves as many (`redis-cli --cluster rebalance
    /// --cluster-use-empty-masters`), then waits until every live node
    /// agrees on who serves what and no slot is migrating.
    pub fn rebalance(&self) {
        let seed = self.masters().first().copied().expect("a master");
        redis_cli_cluster(&[
            "rebalance".to_owned(),
            format!("127.0.0.1:{seed}"),
            "--cluster-use-empty-masters".to_owned(),
        ]);
        wait_until("every node to agree after the rebalance", FORM, || {
            let mut views = Vec::new();
            for node in self.live_nodes() {
                let ok = cluster_info(node.port())
                    .is_some_and(|i| i.get("cluster_state").map(String::as_str) == Some("ok"));
                let Some(text) = cluster_nodes_text(node.port()) else {
                    return false;
                };
                // `[slot->-id]` / `[slot-<-id]`: a migration under way.
                if !ok || text.contains("->-") || text.contains("-<-") {
                    return false;
                }
                let Some(lines) = cluster_nodes(node.port()) else {
                    return false;
                };
                let mut view: Vec<(u16, Vec<(u16, u16)>)> = lines
                    .into_iter()
                    .filter(|l| l.is_master() && !l.slots.is_empty())
                    .map(|l| (l.port, l.slots))
                    .collect();
                view.sort();
                views.push(view);
            }
            views.windows(2).all(|w| w[0] == w[1])
        });
    }

    /// Keys stored on each master now (`DBSIZE`), by port.
    pub fn key_count_per_master(&self) -> BTreeMap<u16, u64> {
        self.masters()
            .into_iter()
            .map(|port| {
                let n: u64 = redis::cmd("DBSIZE")
                    .query(&mut self.node(port).client())
                    .expect("DBSIZE");
                (port, n)
            })
            .collect()
    }

    /// Resets `INFO commandstats` on every live node (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        for node in self.live_nodes() {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query(&mut node.client())
                .expect("CONFIG RESETSTAT");
        }
    }

    /// Data commands each master served since the last
    /// [`ClusterSet::reset_stats`] (see [`data_command_calls`]), by port.
    pub fn commands_per_master(&self) -> BTreeMap<u16, u64> {
        self.masters()
            .into_iter()
            .map(|port| (port, data_command_calls(&commandstats(port))))
            .collect()
    }
}

/// Starts cluster node number `i` (not yet part of a cluster) with
/// `extra` arguments.
fn start_node(i: usize, extra: &[String]) -> RedisProc {
    let bus = free_port().expect("free port for the cluster bus");
    let args: Vec<String> = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
        "--cluster-replica-validity-factor",
        "0",
        "--repl-diskless-sync-delay",
        "0",
        "--cluster-port",
        &bus.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(extra.iter().cloned())
    .collect();
    RedisProc::start(&format!("cluster node {i}"), &args)
}

/// Runs `redis-cli --cluster <args>` (killed after [`FORM`]: it waits
/// forever for nodes that cannot join); panics with its output unless it
/// succeeds; returns the output.
fn redis_cli_cluster(args: &[String]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("redis-cli.out");
    let file = std::fs::File::create(&log).expect("redis-cli output file");
    let mut child =
        Command::new(std::env::var_os("REDIS_CLI_BIN").unwrap_or_else(|| "redis-cli".into()))
            .arg("--cluster")
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("output file"))
            .stderr(file)
            .spawn()
            .expect("run redis-cli --cluster");
    let deadline = std::time::Instant::now() + FORM;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "redis-cli --cluster {args:?} failed ({status:?}, None: timed out after {FORM:?}):\n{text}"
    );
    text
}

/// `INFO commandstats` of the node on `port`: calls per command (`get`,
/// `evalsha`, `cluster|slots`, ...).
pub fn commandstats(port: u16) -> BTreeMap<String, u64> {
    let text: String = connect(port)
        .and_then(|mut c| redis::cmd("INFO").arg("commandstats").query(&mut c).ok())
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The calls of `stats` that read or write data: everything but the
/// administration and connection commands (`INFO`, `CLUSTER ...`, `PING`,
/// `CONFIG ...`, `CLIENT ...`, `HELLO`, `AUTH`, `SELECT`, `COMMAND ...`,
/// `ROLE`, `READONLY`).
pub fn data_command_calls(stats: &BTreeMap<String, u64>) -> u64 {
    const ADMIN: [&str; 11] = [
        "info", "cluster", "ping", "config", "client", "hello", "auth", "select", "command",
        "role", "readonly",
    ];
    stats
        .iter()
        .filter(|(name, _)| {
            let base = name.split('|').next().unwrap_or(name);
            !ADMIN.contains(&base)
        })
        .map(|(_, calls)| *calls)
        .sum()
}

fn connect(port: u16) -> Option<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()
}

/// `CLUSTER INFO` of the node on `port` as fields, `None` if it does not
/// answer.
pub fn cluster_info(port: u16) -> Option<BTreeMap<String, String>> {
    let text: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut connect(port)?)
        .ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

/// `CLUSTER NODES` of the node on `port`, parsed; `None` if it does not
/// answer.
pub fn cluster_nodes(port: u16) -> Option<Vec<NodeLine>> {
    cluster_nodes_text(port)?
        .lines()
        .map(parse_node_line)
        .collect()
}

/// `CLUSTER NODES` of the node on `port` as text.
pub fn cluster_nodes_text(port: u16) -> Option<String> {
    redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut connect(port)?)
        .ok()
}

/// One line of `CLUSTER NODES`:
/// `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
fn parse_node_line(line: &str) -> Option<NodeLine> {
    let mut fields = line.split_whitespace();
    let id = fields.next()?.to_owned();
    let addr = fields.next()?;
    let port = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
    let flags = fields
        .next()?
        .split(',')
        .map(|f| f.trim_start_matches("myself").to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let master_id = fields.next()?.to_owned();
    let _ping = fields.next()?;
    let _pong = fields.next()?;
    let _epoch = fields.next()?;
    let connected = fields.next()? == "connected";
    let slots = fields
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|n| (n, n)),
        })
        .collect();
    Some(NodeLine {
        id,
        port,
        flags,
        master_id,
        connected,
        slots,
    })
}

/// `INFO replication` of the node on `port` (empty if it does not answer).
pub fn replication_info(port: u16) -> String {
    connect(port)
        .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c).ok())
        .unwrap_or_default()
}
