//! Where the data of a name lives, for programs that read Redis directly:
//! the partition of a queue, uniqueness key or graph id, and the key names
//! of each partition (docs/redis.md).

use crate::{Store, keys::Keys, partition};

impl Store {
    /// The partition holding the data of queue, uniqueness key or graph
    /// id `name` (0 on unpartitioned data).
    pub fn partition_of(&self, name: &str) -> usize {
        partition::of(name, self.partition_count())
    }

    /// The key names of partition `index` (of partition 0 when out of
    /// range; on unpartitioned data, the one set of keys).
    pub fn key_names(&self, index: usize) -> Keys {
        self.nth(index).keys().clone()
    }
}
