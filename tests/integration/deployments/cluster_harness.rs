//! Redis Cluster: three masters and three replicas on loopback
//! ([`ClusterSet`]), the harness itself: the cluster forms, and a
//! SIGKILLed master's replica takes its slots over with its data.

use crate::support::cluster::{ClusterSet, SLOTS};

#[test]
fn the_cluster_harness_forms_and_a_killed_master_fails_over_to_its_replica() {
    let mut set = ClusterSet::start();
    let masters = set.masters();
    assert_eq!(masters.len(), 3, "{:?}", set.nodes_view());
    // The slots are split evenly (what partitions rely on) and covered.
    let mut covered = 0u32;
    for &m in &masters {
        let n: u32 = set
            .slots_of(m)
            .iter()
            .map(|(a, b)| u32::from(b - a) + 1)
            .sum();
        assert!((5400..=5500).contains(&n), "master {m} has {n} slots");
        covered += n;
    }
    assert_eq!(covered, u32::from(SLOTS));
    assert_eq!(
        set.url(),
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/",
            masters[0], masters[1], masters[2]
        )
    );

    // A key on the victim, acknowledged by its replica.
    let victim = masters[1];
    let victim_slots = set.slots_of(victim);
    let key = (0..)
        .map(|i| format!("probe:{i}"))
        .find(|k| {
            let slot = set.keyslot(k);
            victim_slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
        })
        .expect("a key on the victim");
    let mut conn = set.node(victim).client();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("kept")
        .query(&mut conn)
        .expect("SET");
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut conn)
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica did not acknowledge");
    // Another master redirects to the victim.
    let other = masters[0];
    let err = redis::cmd("GET")
        .arg(&key)
        .query::<Option<String>>(&mut set.node(other).client())
        .expect_err("another master serves the key");
    assert!(
        format!("{err:?}").contains(&victim.to_string()),
        "redirect to {victim}: {err:?}"
    );

    set.kill_master(victim);
    let new = set.wait_failover(victim);
    assert_ne!(new, victim);
    let now = set.masters();
    assert_eq!(now.len(), 3, "{:?}", set.nodes_view());
    assert!(now.contains(&new) && !now.contains(&victim), "{now:?}");
    assert_eq!(set.slots_of(new), victim_slots);

    // The replica serves the slots, with the data; the others redirect to it.
    let mut conn = set.node(new).client();
    let got: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query(&mut conn)
        .expect("GET on the new master");
    assert_eq!(got.as_deref(), Some("kept"));
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("written after")
        .query(&mut conn)
        .expect("SET on the new master");
    let err = redis::cmd("GET")
        .arg(&key)
        .query::<Option<String>>(&mut set.node(other).client())
        .expect_err("another master serves the key");
    assert!(
        format!("{err:?}").contains(&new.to_string()),
        "redirect to {new}: {err:?}"
    );

    // The killed node comes back as the new master's replica.
    set.restart_as_replica(victim);
    let info = crate::support::cluster::replication_info(victim);
    assert!(info.contains(&format!("master_port:{new}")), "{info}");
    let got: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query(&mut set.node(new).client())
        .expect("GET");
    assert_eq!(got.as_deref(), Some("written after"));
}
