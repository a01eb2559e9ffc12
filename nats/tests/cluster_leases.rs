//! Leases in the key-value bucket and the harness's partitions, against a real 3-node cluster.
//! Skips (saying so) without nats-server unless `CI` is set.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ss_nats::cluster::{server_for_test, Cluster, ClusterOptions};
use ss_nats::{Leases, Nats, NatsError, StreamSpec};

fn start(test: &str) -> Option<Cluster> {
    let server = server_for_test(test)?;
    Some(Cluster::start(ClusterOptions::new(server)).expect("cluster starts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_exclusive_renewable_and_expires() {
    let Some(cluster) = start("lease_is_exclusive_renewable_and_expires") else {
        return;
    };
    let nats = Nats::connect(&cluster.urls()).await.unwrap();
    let ttl = Duration::from_secs(2);
    let leases = Leases::open(nats.jetstream(), 3, ttl).await.unwrap();
    let mut a = leases
        .try_acquire("shard-000", "A")
        .await
        .unwrap()
        .expect("free lease");
    assert!(
        leases.try_acquire("shard-000", "B").await.unwrap().is_none(),
        "held by A"
    );
    // Renewing keeps it: B still cannot take it after the first TTL has passed.
    for _ in 0..3 {
        tokio::time::sleep(ttl / 2).await;
        assert!(leases.renew(&mut a).await.unwrap());
    }
    assert!(
        leases.try_acquire("shard-000", "B").await.unwrap().is_none(),
        "renewed by A"
    );
    // A stops renewing: once expired, B takes it, and A's next renewal finds it lost.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let b = leases
        .try_acquire("shard-000", "B")
        .await
        .unwrap()
        .expect("expired lease is free");
    assert_eq!(b.owner, "B");
    assert!(!leases.renew(&mut a).await.unwrap(), "A's lease was taken");
    // Release frees it at once.
    leases.release(&b).await.unwrap();
    assert!(leases.try_acquire("shard-000", "C").await.unwrap().is_some());
    // Racers for one expired lease: exactly one wins each time (compare-and-set on the
    // revision; on 2.9.10 the key-value client's own CAS let both win about one time in two).
    let mut key = String::new();
    for round in 0..20 {
        key = format!("race-{round}");
        let (x, y) = tokio::join!(leases.try_acquire(&key, "X"), leases.try_acquire(&key, "Y"));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            x.is_some() as u8 + y.is_some() as u8,
            1,
            "round {round}: {x:?} {y:?}"
        );
    }
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let (x, y) = tokio::join!(leases.try_acquire(&key, "X2"), leases.try_acquire(&key, "Y2"));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.is_some() as u8 + y.is_some() as u8, 1, "expired: {x:?} {y:?}");
}

/// Partitions one node from the others and from clients: the majority keeps a leader and keeps
/// accepting appends, the cut node loses its meta leader; after healing it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_partitions_a_node() {
    let Some(mut cluster) = start("harness_partitions_a_node") else {
        return;
    };
    let client = cluster.client_proxies().unwrap();
    let nats = Nats::connect(&client.urls()).await.unwrap();
    let j = nats.journal("p-000", StreamSpec { replicas: 3 }).await.unwrap();
    j.append(Bytes::from_static(b"before"), Some(0), "p-0")
        .await
        .unwrap();
    cluster.partition_node(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.meta_leader_seen_by(0).unwrap().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cluster.meta_leader_seen_by(0).unwrap(),
        None,
        "the cut node must lose its meta leader"
    );
    let majority_leader = cluster.meta_leader_seen_by(1).unwrap();
    assert!(majority_leader.is_some() && majority_leader.as_deref() != Some("n0"));
    let seq = j
        .append(Bytes::from_static(b"during"), Some(1), "p-1")
        .await
        .unwrap();
    assert_eq!(seq, 2);
    cluster.heal_node(0);
    tokio::task::block_in_place(|| cluster.wait_ready(Duration::from_secs(30))).unwrap();
    assert_eq!(
        j.append(Bytes::from_static(b"after"), Some(2), "p-2")
            .await
            .unwrap(),
        3
    );

    // A client cut from the whole cluster: its requests fail as unavailable, bounded.
    client.partition();
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(60), j.head()).await {
        Ok(Err(NatsError::Unavailable { .. })) => {}
        Ok(other) => panic!("expected Unavailable from a cut client, got {other:?}"),
        Err(_) => panic!("a cut client's request was not bounded"),
    }
    assert!(started.elapsed() >= ss_nats::journal::RETRY_FOR);
    client.heal();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match j.head().await {
            Ok(h) => {
                assert_eq!(h, 3);
                break;
            }
            Err(e) if Instant::now() > deadline => panic!("client did not reconnect after healing: {e}"),
            Err(_) => {}
        }
    }
}
