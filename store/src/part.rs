//! One partition of the data: its keys and the connections that reach it.
//!
//! A [`Part`] does the work of one partition (every Lua script and command
//! of the schema runs inside one); a [`Store`](crate::Store) holds one
//! `Part` per partition (exactly one, under the plain prefix, when the data
//! is not partitioned) and `route` picks the part for each operation. The
//! `pub(crate)` methods on `Part` in the topic modules are the work; the
//! ones here run a command on the partition's connection.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::{Connection, RedisError};

use crate::keys::Keys;
use crate::{
    RedisConfig, StoreError, connection, lock, nodes, parse_script_wrongtype, partition, schema,
};

/// The options of a store, which every part carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// The limit on the JSON text of one task's arguments.
    pub(crate) max_args_bytes: u64,
    /// The limit on a stored result (`max_result_bytes`), checked by the
    /// fetch script before a record is loaded.
    pub(crate) max_result_bytes: u64,
    /// The longest per-task timeout a producer may ask for
    /// (`max_task_timeout`), in seconds.
    pub(crate) max_task_timeout: u64,
    pub(crate) registry_ttl: u64,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
}

/// One partition: its index, its keys, and its connections.
pub(crate) struct Part {
    /// Its index among the partitions (what a [`Lease`](crate::Lease)
    /// names); 0 when the data is not partitioned.
    pub(crate) index: usize,
    /// The connection settings, aimed at this partition's hash slot.
    config: RedisConfig,
    addr: String,
    /// The prefix as configured (`redis_prefix`), for the layout marker.
    base_prefix: String,
    /// The keys of this partition (the prefix itself when the data is not
    /// partitioned).
    keys: Keys,
    /// Set once the layout marker was checked (shared by the parts of a
    /// store and its independent copies).
    layout: Arc<OnceLock<()>>,
    /// On a Cluster: the slot map and the connections by master, shared
    /// by the parts of a store (then `conn` and `fetch_conn` stay unused).
    nodes: Option<Arc<nodes::Nodes>>,
    conn: Mutex<Option<Connection>>,
    fetch_conn: Mutex<Option<Connection>>,
    pub(crate) opts: Options,
    /// The tasks this partition's fetches ended as expired, until taken
    /// ([`Store::take_expired`](crate::Store::take_expired)).
    pub(crate) expired: crate::fetch::ExpiredNotes,
    /// Whether this partition's server runs the task path's function
    /// library, or only scripts.
    pub(crate) functions: crate::fetch::Functions,
}

impl Part {
    /// Partition `index` of `count` under `base_prefix`, reached as
    /// `config` says (aimed here at the partition's hash slot).
    pub(crate) fn new(
        index: u16,
        count: u16,
        config: &RedisConfig,
        base_prefix: &str,
        layout: &Arc<OnceLock<()>>,
        nodes: Option<&Arc<nodes::Nodes>>,
        opts: Options,
    ) -> Part {
        let keys = Keys::new(&partition::prefix(
            base_prefix,
            index,
            count,
            config.is_cluster(),
        ));
        Part {
            index: usize::from(index),
            config: config.for_slot(partition::key_slot(keys.prefix())),
            addr: config.shown().to_owned(),
            base_prefix: base_prefix.to_owned(),
            keys,
            layout: Arc::clone(layout),
            nodes: nodes.cloned(),
            conn: Mutex::new(None),
            fetch_conn: Mutex::new(None),
            opts,
            expired: crate::fetch::ExpiredNotes::default(),
            functions: crate::fetch::Functions::default(),
        }
    }

    /// The connection settings aimed at this partition.
    pub(crate) fn config(&self) -> &RedisConfig {
        &self.config
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn registry_ttl(&self) -> u64 {
        self.opts.registry_ttl
    }

    pub(crate) fn max_args_bytes(&self) -> u64 {
        self.opts.max_args_bytes
    }

    /// Checks that Redis answers.
    pub(crate) fn ping(&self) -> Result<(), StoreError> {
        self.read(&[], |c, _| redis::cmd("PING").query::<String>(c))
            .map(|_| ())
    }

    /// Runs `f` on the command connection, opening it first if needed.
    ///
    /// `expected` lists keys with the Redis type the schema keeps there; when
    /// Redis answers `WRONGTYPE`, they are checked to name the culprit.
    pub(crate) fn run<T>(
        &self,
        expected: &[(&str, &'static str)],
        f: impl FnOnce(&mut Connection, &Keys) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        self.run_quick(true, expected, f)
    }

    /// Like [`run`](Self::run) for a call that only reads: in durable
    /// mode no `WAIT` follows it.
    pub(crate) fn read<T>(
        &self,
        expected: &[(&str, &'static str)],
        f: impl FnOnce(&mut Connection, &Keys) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        self.run_quick(false, expected, f)
    }

    fn run_quick<T>(
        &self,
        write: bool,
        expected: &[(&str, &'static str)],
        f: impl FnOnce(&mut Connection, &Keys) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        if let Some(nodes) = &self.nodes {
            return self.run_on_node(nodes, write, None, expected, f);
        }
        let mut guard = lock(&self.conn);
        self.run_on(&mut guard, None, write, None, expected, f)
    }

    /// Like [`run`](Self::run) on the fetch connection, with a read timeout
    /// of `wait` plus the usual reply timeout.
    pub(crate) fn run_blocking<T>(
        &self,
        wait: Duration,
        expected: &[(&str, &'static str)],
        f: impl FnOnce(&mut Connection, &Keys) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        if let Some(nodes) = &self.nodes {
            return self.run_on_node(nodes, true, Some(wait), expected, f);
        }
        let mut guard = lock(&self.fetch_conn);
        self.run_on(&mut guard, None, true, Some(wait), expected, f)
    }

    /// [`run`](Self::run) on a Cluster: on the connection to the master of
    /// this partition's slot (the blocking one when `wait` is given); a
    /// connection error makes the next command ask for the slot map again.
    fn run_on_node<T>(
        &self,
        nodes: &nodes::Nodes,
        write: bool,
        wait: Option<Duration>,
        expected: &[(&str, &'static str)],
        f: impl FnOnce(&mut Connection, &Keys) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let slot = self.config.slot().unwrap_or(0);
        let (cell, node) = nodes.cell(
            &self.config,
            slot,
            self.opts.connect_timeout,
            wait.is_some(),
        )?;
        let mut guard = lock(&cell);
        let result = self.run_on(&mut guard, Some(&node), write, wait, expected, f);
        if result.as_ref().is_err_and(StoreError::is_connection_error) {
            nodes.forget_map();
        }
        result
    }

    fn run_on<T>(
        &self,
        slot: &mut Option<Connection>,
        node: Option<&nodes::Node>,
        write: bool,
        wait: Option<Duration>,
        expected: &[(&str, &'static str)],
        f: impl FnOnce(&mut Connection, &Keys) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        if slot
            .as_ref()
            .is_none_or(|c| !redis::ConnectionLike::is_open(c))
        {
            *slot = None;
            *slot = Some(self.connect(node)?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(StoreError::UnexpectedReply {
                what: "connect",
                detail: "no connection".to_owned(),
            });
        };
        if self.layout.get().is_none()
            && let Err(e) = self.check_layout(conn)
        {
            if e.is_connection_error() {
                *slot = None;
            }
            return Err(e);
        }
        let durable = self.config.wait().map(|w| w.timeout).unwrap_or_default();
        let read_timeout = self.opts.io_timeout + wait.unwrap_or_default() + durable;
        if let Err(source) = conn.set_read_timeout(Some(read_timeout)) {
            *slot = None;
            return Err(self.redis_error(source));
        }
        match f(conn, &self.keys) {
            Ok(value) if !write => Ok(value),
            Ok(value) => match self.config.wait_replicas(conn) {
                Ok(()) => Ok(value),
                Err(connection::WaitError::Redis(err)) => {
                    let mapped = self.redis_error(err);
                    if mapped.is_connection_error() {
                        *slot = None;
                    }
                    Err(mapped)
                }
                Err(connection::WaitError::Short { wanted, got }) => {
                    *slot = None;
                    Err(StoreError::NotReplicated {
                        addr: self.addr.clone(),
                        wanted,
                        got,
                        timeout_ms: durable.as_millis().try_into().unwrap_or(u64::MAX),
                    })
                }
            },
            Err(err) => {
                let mapped = self.classify(conn, err, expected);
                if mapped.is_connection_error() {
                    *slot = None;
                }
                Err(mapped)
            }
        }
    }

    fn connect(&self, node: Option<&nodes::Node>) -> Result<Connection, StoreError> {
        let connect_error = |error| StoreError::Connect {
            addr: self.addr.clone(),
            error,
        };
        let conn = match node {
            Some((host, port)) => self
                .config
                .open_node(host, *port, self.opts.connect_timeout)?,
            None => self.config.connect(self.opts.connect_timeout)?,
        };
        conn.set_write_timeout(Some(self.opts.io_timeout))
            .map_err(connect_error)?;
        conn.set_read_timeout(Some(self.opts.io_timeout))
            .map_err(connect_error)?;
        Ok(conn)
    }

    /// A connection for one command on `key`, wherever its slot lives (on
    /// a Cluster), else on the usual server.
    pub(crate) fn connect_for_key(&self, key: &str) -> Result<Connection, StoreError> {
        let conn = self
            .config
            .for_slot(partition::key_slot(key))
            .connect(self.opts.connect_timeout)?;
        conn.set_read_timeout(Some(self.opts.io_timeout))
            .and_then(|()| conn.set_write_timeout(Some(self.opts.io_timeout)))
            .map_err(|error| self.redis_error(error))?;
        Ok(conn)
    }

    pub(crate) fn redis_error(&self, error: RedisError) -> StoreError {
        StoreError::Redis {
            addr: self.addr.clone(),
            error,
        }
    }

    /// Turns a Redis error into a store error, naming the key when the
    /// error is about a key of the wrong type.
    fn classify(
        &self,
        conn: &mut Connection,
        err: RedisError,
        expected: &[(&str, &'static str)],
    ) -> StoreError {
        if let Some(e) = script_error(&self.keys, &err) {
            return e;
        }
        if err.code() == Some("WRONGTYPE") {
            for (key, want) in expected {
                let found: Result<String, _> = redis::cmd("TYPE").arg(*key).query(conn);
                if let Ok(found) = found
                    && found != "none"
                    && found != *want
                {
                    return StoreError::WrongType {
                        key: (*key).to_owned(),
                        expected: (*want).to_owned(),
                        found,
                    };
                }
            }
        }
        self.redis_error(err)
    }
}

/// The value of the layout marker `P:layout` for `count` partitions.
pub(crate) fn marker(count: u16) -> String {
    format!("partitions {count}")
}

/// The data under `base_prefix` was written with another partition count
/// than `count` (`found` says what it holds).
pub(crate) fn layout_mismatch(base_prefix: &str, found: String, count: u16) -> StoreError {
    StoreError::Layout {
        prefix: base_prefix.to_owned(),
        found,
        configured: count,
    }
}

/// Whether the layout marker `found` (after marking fresh data) fits
/// `count` partitions; `marked`: whether this layout carries a marker.
pub(crate) fn layout_verdict(
    base_prefix: &str,
    found: Option<String>,
    count: u16,
    marked: bool,
) -> Result<(), StoreError> {
    match found {
        None if !marked => Ok(()),
        Some(value) if value == marker(count) => Ok(()),
        Some(value) => Err(layout_mismatch(base_prefix, value, count)),
        None => Err(layout_mismatch(base_prefix, "nothing".to_owned(), count)),
    }
}

impl Part {
    /// Checks (once per process and prefix) that the data under the prefix
    /// was written with this store's partition count, and marks fresh data
    /// with it. A single server holding data of the unpartitioned layout
    /// counts as one partition.
    pub(crate) fn check_layout(&self, conn: &mut Connection) -> Result<(), StoreError> {
        let count = self.config.partitions();
        let key = format!("{}:layout", self.base_prefix);
        let mut own;
        let conn = if self.config.is_cluster() {
            own = self.connect_for_key(&key)?;
            &mut own
        } else {
            conn
        };
        let get = |conn: &mut Connection| -> Result<Option<String>, StoreError> {
            redis::cmd("GET")
                .arg(&key)
                .query(conn)
                .map_err(|e| self.redis_error(e))
        };
        let mismatch = |found: String| layout_mismatch(&self.base_prefix, found, count);
        let mut found = get(conn)?;
        // On a Cluster even one partition has tagged keys (not today's
        // layout), so it is marked too: else a program set to another
        // count would take the prefix for fresh.
        let marked = count > 1 || self.config.is_cluster();
        if found.is_none() && marked {
            if !self.config.is_cluster() {
                let old: bool = redis::cmd("EXISTS")
                    .arg(format!("{}:schema", self.base_prefix))
                    .query(conn)
                    .map_err(|e| self.redis_error(e))?;
                if old {
                    return Err(mismatch("the unpartitioned layout".to_owned()));
                }
            }
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(marker(count))
                .arg("NX")
                .query(conn)
                .map_err(|e| self.redis_error(e))?;
            found = get(conn)?;
        }
        layout_verdict(&self.base_prefix, found, count, marked)?;
        let _ = self.layout.set(());
        Ok(())
    }
}

/// The store error a script's own error code stands for (a key of the
/// wrong type, data of another schema or program), if any.
pub(crate) fn script_error(keys: &Keys, err: &RedisError) -> Option<StoreError> {
    match err.code() {
        Some("RTWRONGTYPE") => parse_script_wrongtype(err.detail().unwrap_or_default()),
        Some(code @ ("RTSCHEMA" | "RTFOREIGN")) => Some(schema::foreign_error(
            keys.prefix(),
            code,
            err.detail().unwrap_or_default(),
        )),
        _ => None,
    }
}
