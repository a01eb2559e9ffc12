//! The JetStream journal client against a real 3-node cluster (started by the harness): appends,
//! fencing, idempotent retries, reads, validation of existing streams, bad URLs, and a stream
//! leader SIGKILLed under appends. Skips (saying so) without nats-server unless `CI` is set.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ss_nats::cluster::{server_for_test, Cluster, ClusterOptions};
use ss_nats::{Nats, NatsError, StreamSpec};

const R3: StreamSpec = StreamSpec { replicas: 3 };

fn start(test: &str) -> Option<Cluster> {
    let server = server_for_test(test)?;
    Some(Cluster::start(ClusterOptions::new(server)).expect("cluster starts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_appends_fences_and_reads() {
    let Some(cluster) = start("journal_appends_fences_and_reads") else {
        return;
    };
    let nats = Nats::connect(&cluster.urls()).await.unwrap();
    let j = nats.journal("t-000", R3).await.unwrap();
    // Regression: an existing stream made by `journal` itself must validate (the unlimited
    // limits were once compared as "-1" against "-1 (unlimited)").
    nats.journal("t-000", R3)
        .await
        .expect("a stream stream-sum made is accepted");
    nats.check_existing("t-000", R3).await.unwrap();
    assert_eq!(j.head().await.unwrap(), 0);
    assert!(j.last().await.unwrap().is_none());

    assert_eq!(j.append(Bytes::from_static(b"a"), None, "id-a").await.unwrap(), 1);
    assert_eq!(
        j.append(Bytes::from_static(b"b"), Some(1), "id-b").await.unwrap(),
        2
    );
    // A stale writer that still thinks the head is 1 is fenced and writes nothing.
    match j
        .append(Bytes::from_static(b"zombie"), Some(1), "id-zombie")
        .await
    {
        Err(NatsError::Fenced {
            expected: 1,
            actual: 2,
            ..
        }) => {}
        other => panic!("expected a fence, got {other:?}"),
    }
    // A retry of a conditional append that already landed is ours, not a fence: same sequence.
    assert_eq!(
        j.append(Bytes::from_static(b"b"), Some(1), "id-b").await.unwrap(),
        2
    );
    // A plain retry of a landed append is dropped by the server's duplicate window.
    assert_eq!(j.append(Bytes::from_static(b"a"), None, "id-a").await.unwrap(), 1);
    assert_eq!(j.head().await.unwrap(), 2);
    let last = j.last().await.unwrap().unwrap();
    assert_eq!(
        (last.sequence, &last.payload[..], last.msg_id.as_deref()),
        (2, &b"b"[..], Some("id-b"))
    );

    let mut r = j.reader(0).await.unwrap();
    let f1 = r.next().await.unwrap();
    let f2 = r.next().await.unwrap();
    assert_eq!((f1.sequence, &f1.payload[..]), (1, &b"a"[..]));
    assert_eq!((f2.sequence, &f2.payload[..]), (2, &b"b"[..]));
    assert!(r
        .next_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    // Tailing: a frame appended later arrives.
    j.append(Bytes::from_static(b"c"), Some(2), "id-c").await.unwrap();
    let f3 = r
        .next_timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("tail sees the new frame");
    assert_eq!(f3.sequence, 3);
    // Reading after a position starts past it.
    let mut r2 = j.reader(2).await.unwrap();
    assert_eq!(r2.next().await.unwrap().sequence, 3);

    // The server's max payload bounds a frame; larger is refused before sending.
    let big = Bytes::from(vec![0u8; j.frame_max_bytes() + 1]);
    assert!(matches!(
        j.append(big, None, "id-big").await,
        Err(NatsError::TooLarge { .. })
    ));
    let max = Bytes::from(vec![7u8; j.frame_max_bytes()]);
    assert_eq!(j.append(max, Some(3), "id-max").await.unwrap(), 4);
    assert_eq!(nats.journal_names().await.unwrap(), vec!["t-000".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_refuses_bad_input() {
    let Some(cluster) = start("journal_refuses_bad_input") else {
        return;
    };
    // Unreachable: a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    match Nats::connect(&format!("nats://{closed}")).await {
        Err(NatsError::Connect { urls, .. }) => assert!(urls.contains(&closed.port().to_string())),
        Err(e) => panic!("expected a connect error, got {e}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(
        Nats::connect("not a url::").await,
        Err(NatsError::Connect { .. })
    ));

    // An existing stream with other settings: every difference is named, nothing is changed.
    let nats = Nats::connect(&cluster.urls()).await.unwrap();
    nats.jetstream()
        .create_stream(async_nats::jetstream::stream::Config {
            name: "bad-000".into(),
            subjects: vec!["ss.bad-000".into()],
            num_replicas: 1,
            max_messages: 10,
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = match nats.journal("bad-000", R3).await {
        Err(e @ NatsError::StreamMismatch { .. }) => e.to_string(),
        Err(e) => panic!("expected a mismatch, got {e}"),
        Ok(_) => panic!("accepted a stream with other settings"),
    };
    for what in ["replicas is 1", "storage is Memory", "max_msgs is 10"] {
        assert!(e.contains(what), "{e:?} does not name {what:?}");
    }
    let mut s = nats.jetstream().get_stream("bad-000").await.unwrap();
    assert_eq!(
        s.info().await.unwrap().config.num_replicas,
        1,
        "validation must not change the stream"
    );
    assert!(matches!(
        nats.existing_journal("absent-000").await,
        Err(NatsError::NoSuchStream { .. })
    ));
    assert!(matches!(
        nats.journal("a.b", R3).await,
        Err(NatsError::BadName { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_refuses_server_without_jetstream() {
    let Some(server) = server_for_test("journal_refuses_server_without_jetstream") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(server)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = Nats::connect(&url).await;
    child.kill().unwrap();
    child.wait().unwrap();
    match result {
        Err(NatsError::NoJetStream { .. }) => {}
        Err(e) => panic!("expected NoJetStream, got {e}"),
        Ok(_) => panic!("accepted a server without JetStream"),
    }
}

/// SIGKILLs the stream leader while a writer appends conditionally, restarts it, and checks
/// that every acknowledged append is in the stream exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_survives_leader_kill() {
    let Some(mut cluster) = start("journal_survives_leader_kill") else {
        return;
    };
    let nats = Nats::connect(&cluster.urls()).await.unwrap();
    let j = nats.journal("kill-000", R3).await.unwrap();
    let writer = {
        let j = j.clone();
        tokio::spawn(async move {
            let mut head = 0;
            let mut acked = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(12) {
                let n = acked.len();
                let seq = j
                    .append(Bytes::from(format!("m{n}")), Some(head), &format!("w-{n}"))
                    .await
                    .expect("appends survive a leader kill (retried)");
                assert_eq!(seq, head + 1);
                head = seq;
                acked.push(seq);
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut s = nats.jetstream().get_stream("kill-000").await.unwrap();
    let leader = s.info().await.unwrap().cluster.clone().unwrap().leader.unwrap();
    let i = cluster.node_index(&leader).unwrap();
    let killed_at = Instant::now();
    cluster.kill(i).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| cluster.restart(i)).unwrap();
    let acked = writer.await.unwrap();
    eprintln!(
        "leader {leader} killed; {} appends acknowledged; restarted after {:?}",
        acked.len(),
        killed_at.elapsed()
    );
    let head = j.head().await.unwrap();
    assert_eq!(
        head,
        *acked.last().unwrap(),
        "no unacknowledged extra message, none lost"
    );
    let mut r = j.reader(0).await.unwrap();
    for n in 0..acked.len() {
        let f = r.next().await.unwrap();
        assert_eq!(
            (f.sequence, f.payload),
            (n as u64 + 1, Bytes::from(format!("m{n}")))
        );
    }
}

/// Two writers race conditional appends on the same expected head, many times over: exactly one
/// may land each round (the fencing the shard log relies on), and the stream holds exactly the
/// winners, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_racing_conditional_appends_one_wins() {
    let Some(cluster) = start("journal_racing_conditional_appends_one_wins") else {
        return;
    };
    let a = Nats::connect(&cluster.urls()).await.unwrap();
    let b = Nats::connect(&cluster.urls()).await.unwrap();
    let ja = a.journal("race-000", R3).await.unwrap();
    let jb = b.existing_journal("race-000").await.unwrap();
    let mut winners = Vec::new();
    for round in 0..200u64 {
        let (ida, idb) = (format!("a-{round}"), format!("b-{round}"));
        let (ra, rb) = tokio::join!(
            ja.append(Bytes::from(format!("a{round}")), Some(round), &ida),
            jb.append(Bytes::from(format!("b{round}")), Some(round), &idb),
        );
        match (ra, rb) {
            (Ok(s), Err(NatsError::Fenced { .. })) => winners.push((s, format!("a{round}"))),
            (Err(NatsError::Fenced { .. }), Ok(s)) => winners.push((s, format!("b{round}"))),
            other => panic!("round {round}: exactly one writer must land, got {other:?}"),
        }
        assert_eq!(winners.last().unwrap().0, round + 1);
    }
    let mut r = ja.reader(0).await.unwrap();
    for (seq, payload) in winners {
        let f = r.next().await.unwrap();
        assert_eq!((f.sequence, f.payload), (seq, Bytes::from(payload)));
    }
    assert!(r
        .next_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
}
