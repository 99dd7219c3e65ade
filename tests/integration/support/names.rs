//! Key names where the store puts them, for tests that read or write
//! Redis directly: the store tests run once on one partition and once on
//! three (`three_partitions`), so a raw `redis_tasks:queue:default` would
//! be right only on the first.

use std::cell::RefCell;

use redis_tasks::store::{Keys, Store};

/// The key builder of a store's layout, with a connection of its own to
/// find where a task's record is.
pub struct Names {
    store: Store,
    conn: RefCell<redis::Connection>,
}

impl Names {
    /// The names of `store`'s layout; `conn` reaches its server.
    pub fn of(store: Store, conn: redis::Connection) -> Names {
        Names {
            store,
            conn: RefCell::new(conn),
        }
    }

    /// The keys of the partition holding queue (or uniqueness key, or
    /// graph id) `name`: where a plain enqueue to it puts the task.
    pub fn home(&self, name: &str) -> Keys {
        self.store.key_names(self.store.partition_of(name))
    }

    /// The keys of partition 0: slot records, the scheduler, locks.
    pub fn first(&self) -> Keys {
        self.store.key_names(0)
    }

    /// `queue:<name>` in its partition.
    pub fn queue(&self, name: &str) -> String {
        self.home(name).queue(name)
    }

    /// The record of task `id` enqueued (plainly) to `queue`.
    pub fn task(&self, queue: &str, id: &str) -> String {
        self.home(queue).task(id)
    }

    /// The record of task `id` in the partition that holds it (that of
    /// partition 0 when none does).
    pub fn task_of(&self, id: &str) -> String {
        let mut conn = self.conn.borrow_mut();
        (0..self.partitions())
            .map(|p| self.store.key_names(p).task(id))
            .find(|key| {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query::<bool>(&mut *conn)
                    .expect("EXISTS")
            })
            .unwrap_or_else(|| self.first().task(id))
    }

    /// The keys of the partition holding task `id`'s record.
    pub fn home_of_task(&self, id: &str) -> Keys {
        let key = self.task_of(id);
        (0..self.partitions())
            .map(|p| self.store.key_names(p))
            .find(|k| k.task(id) == key)
            .unwrap_or_else(|| self.first())
    }

    /// The private list of `slot` in the partition of `queue` (where it
    /// holds a task fetched from that queue).
    pub fn slot_list(&self, queue: &str, slot: &str) -> String {
        self.home(queue).worker_task(slot)
    }

    /// The ids `slot` holds, in every partition (its private lists).
    pub fn held(&self, slot: &str) -> Vec<String> {
        let mut conn = self.conn.borrow_mut();
        let mut ids = Vec::new();
        for p in 0..self.partitions() {
            let some: Vec<String> = redis::cmd("LRANGE")
                .arg(self.store.key_names(p).worker_task(slot))
                .arg(0)
                .arg(-1)
                .query(&mut *conn)
                .expect("LRANGE");
            ids.extend(some);
        }
        ids
    }

    /// The record of `slot` (on partition 0).
    pub fn slot(&self, slot: &str) -> String {
        self.first().worker(slot)
    }

    /// The record of `slot` in the partition of `queue`: every partition
    /// registers every slot, and a task fetched from `queue` marks the
    /// slot busy there.
    pub fn slot_in(&self, queue: &str, slot: &str) -> String {
        self.home(queue).worker(slot)
    }

    /// How many partitions the layout has.
    pub fn partitions(&self) -> usize {
        self.store.partition_count()
    }
}
