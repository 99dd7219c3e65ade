//! Partitions: how the data under one prefix is split so that it works on
//! a Redis Cluster and spreads over its masters.
//!
//! Every Lua script of the schema touches several keys, and a Cluster runs
//! a script only when all its keys sit on one hash slot. So the data is
//! split into `N` partitions, each a complete copy of the schema whose keys
//! all carry one hash tag (`P:{p3}:queue:default`), and every script and
//! transaction stays inside one partition. Partition `i`'s tag is picked so
//! that its slot lies in the `i`-th of `N` equal ranges of the 16384 slots,
//! which is how `redis-cli --cluster create` deals slots to masters: the
//! partitions spread evenly over the masters.
//!
//! Where a task goes: a plain enqueue to the partition of its queue (so a
//! queue keeps its order), a unique enqueue to that of its uniqueness key
//! (so the check stays atomic across queues), a graph to that of its id,
//! and the scheduler's runs, locks and supervisor records to partition 0.
//! Workers fetch from every partition. With `N = 1` (the default outside a
//! Cluster) the keys are exactly those of the unpartitioned layout.

use crc::{CRC_16_XMODEM, Crc};

/// The number of hash slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// Partitions on a Cluster when `redis_partitions` is not set: enough to
/// spread evenly over up to 16 masters.
pub(crate) const CLUSTER_DEFAULT_PARTITIONS: u16 = 16;

/// The CRC16 Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    const CRC: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);
    CRC.checksum(bytes)
}

/// The hash slot of `key`: the CRC16 of its hash tag (the text between
/// the first `{` and the next `}`, when not empty), else of the whole key.
pub(crate) fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let slot = u32::from(crc16(tagged.unwrap_or(bytes))) % SLOTS;
    u16::try_from(slot).unwrap_or(0)
}

/// The hash tag of partition `index` of `count`: `p<index>`, or
/// `p<index>.<n>` with the smallest `n` that puts its slot in the
/// partition's range.
pub(crate) fn tag(index: u16, count: u16) -> String {
    let in_range = |tag: &str| {
        let slot = u32::from(key_slot(&format!("{{{tag}}}")));
        slot * u32::from(count) / SLOTS == u32::from(index)
    };
    let plain = format!("p{index}");
    if in_range(&plain) {
        return plain;
    }
    (1u32..)
        .map(|n| format!("p{index}.{n}"))
        .find(|t| in_range(t))
        .unwrap_or(plain)
}

/// The key prefix of partition `index` of `count` under `prefix`:
/// `prefix` itself when there is one partition on a single server, else
/// `prefix:{tag}` (on a Cluster even one partition needs its tag).
pub(crate) fn prefix(prefix: &str, index: u16, count: u16, cluster: bool) -> String {
    if count <= 1 && !cluster {
        return prefix.to_owned();
    }
    format!("{prefix}:{{{}}}", tag(index, count))
}

/// The partition a queue name, uniqueness key or graph id belongs to.
pub(crate) fn of(name: &str, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    usize::from(crc16(name.as_bytes())) % count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
    }

    #[test]
    fn partitions_spread_over_equal_slot_ranges() {
        for count in [2u16, 3, 5, 16, 64] {
            for index in 0..count {
                let p = prefix("rt", index, count, false);
                let slot = u32::from(key_slot(&format!("{p}:queue:default")));
                assert_eq!(slot * u32::from(count) / SLOTS, u32::from(index), "{p}");
                assert_eq!(
                    key_slot(&format!("{p}:task:x")),
                    key_slot(&format!("{p}:schema"))
                );
            }
        }
        assert_eq!(prefix("rt", 0, 1, false), "rt");
        assert_eq!(prefix("rt", 0, 1, true), "rt:{p0}");
    }

    #[test]
    fn names_map_to_a_partition_in_range() {
        for name in ["default", "high", "emails", ""] {
            assert!(of(name, 16) < 16);
            assert_eq!(of(name, 1), 0);
        }
    }
}
