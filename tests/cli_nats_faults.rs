//! The seed's soak "crashes and partitions components", on a real 3-node JetStream cluster with
//! two `run --nats` processes: SIGKILL of a shard log's stream leader (then restarted), one
//! server partitioned from the other two, one `run` process partitioned from the whole cluster
//! for longer than a lease, and SIGKILL of a `run` process replaced by a new one. Afterwards:
//! no process saw a violation (wrong, missing, late or duplicate Sum for its own streams), the
//! shard logs hold no duplicate Sum at all, each surviving run's finished streams each have
//! exactly one, and the partitioned process gave its shards up (fenced or lease lost) rather
//! than writing twice. The Sum latency (p99, max) over each run, outages included, is printed.
//! Skips (saying so) without nats-server unless `CI` is set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ss_chunker::stream_gen::split_stream_id;
use ss_consumer::message::{Message, StreamId};
use ss_nats::cluster::{server_for_test, Cluster, ClusterOptions};
use ss_nats::Nats;

mod nats_common;
use nats_common::stream_leader;

const PARTITIONS: usize = 4;

fn spawn_run(urls: &str, seed: &str, duration: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stream-sum"))
        .args([
            "run",
            "--nats",
            urls,
            "--duration",
            duration,
            "--partitions",
            "4",
            "--chunkers",
            "1",
            "--streams",
            "8",
            "--seed",
            seed,
            "--sla",
            "90s",
            "--lease-ttl",
            "4s",
            "--json",
            "--progress-interval",
            "2s",
        ])
        // The membership event the test waits for is logged at info.
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A `run` child whose stderr a thread collects line by line, so the test can wait for what it
/// says (a fixed sleep once partitioned process B before it had taken any shard: on a loaded
/// machine its start took 14 s, and with no lease to lose it could not be fenced).
struct Watched {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    fn new(mut child: Child) -> Watched {
        let pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Watched {
            child,
            stderr,
            reader,
        }
    }

    /// Waits up to `timeout` for a line containing `needle`; says whether one came.
    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

fn finish(name: &str, watched: Watched) -> serde_json::Value {
    let out = watched.child.wait_with_output().unwrap();
    watched.reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = watched.stderr.lock().unwrap().clone();
    eprintln!("--- {name}: {:?}\n{stderr}", out.status);
    assert!(out.status.success(), "{name} failed: {stdout}");
    let s: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON summary");
    eprintln!(
        "{name}: run {} {} streams verified, {} transactions, gave up shards {} times, Sum latency p50 {} ms p99 {} ms max {} ms",
        s["run_id"], s["sums_verified"], s["shard_transactions"], s["fencings"], s["latency_ms_p50"], s["latency_ms_p99"], s["latency_ms_max"]
    );
    s
}

#[test]
fn nats_survives_kills_and_partitions() {
    let Some(server) = server_for_test("nats_survives_kills_and_partitions") else {
        return;
    };
    let mut cluster = Cluster::start(ClusterOptions::new(server)).expect("cluster starts");
    let (pa, pb) = (
        cluster.client_proxies().unwrap(),
        cluster.client_proxies().unwrap(),
    );
    let a = spawn_run(&pa.urls(), "1", "forever");
    std::thread::sleep(Duration::from_millis(500));
    let b = Watched::new(spawn_run(&pb.urls(), "2", "45s"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nats = rt.block_on(Nats::connect(&cluster.urls())).unwrap();
    std::thread::sleep(Duration::from_secs(5));

    // 1. SIGKILL the leader of a shard log's stream, restart it 5 s later.
    let leader = stream_leader(&rt, &nats, "sums-000");
    let i = cluster.node_index(&leader).unwrap();
    let t = Instant::now();
    cluster.kill(i).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    cluster.restart(i).unwrap();
    eprintln!(
        "killed stream leader {leader} of sums-000, restarted after {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));

    // 2. Partition one server from the other two (and from clients) for 8 s.
    cluster.partition_node(1);
    std::thread::sleep(Duration::from_secs(8));
    cluster.heal_node(1);
    cluster.wait_ready(Duration::from_secs(60)).unwrap();
    eprintln!("partitioned server n1 for 8 s, healed");
    std::thread::sleep(Duration::from_secs(3));

    // 3. Partition process B from the whole cluster for 10 s: longer than its 4 s leases, so
    // process A takes its shards; B must give them up, fenced, not write twice. First B must
    // hold shards: it says so when it sees both processes, and takes its share within a lease.
    assert!(
        b.wait_for("membership changed", Duration::from_secs(90)),
        "process B never took shards:\n{}",
        b.stderr.lock().unwrap()
    );
    std::thread::sleep(Duration::from_secs(4));
    pb.partition();
    std::thread::sleep(Duration::from_secs(10));
    pb.heal();
    eprintln!("partitioned process B for 10 s, healed");
    std::thread::sleep(Duration::from_secs(3));

    // 4. SIGKILL process A; start C in its place.
    let mut a = a;
    a.kill().unwrap();
    let _ = a.wait_with_output();
    eprintln!("SIGKILLed process A");
    let c = Watched::new(spawn_run(&pa.urls(), "3", "10s"));

    let sb = finish("B", b);
    let sc = finish("C", c);
    for s in [&sb, &sc] {
        assert_eq!(s["violations"], 0, "{s}");
        assert_eq!(s["sums_verified"], s["streams_finished"], "{s}");
        assert!(s["completed"].as_bool().unwrap());
    }
    assert!(
        sb["fencings"].as_u64().unwrap() >= 1,
        "B, cut off past its leases, must give shards up: {sb}"
    );

    // The shard logs: no Sum twice, and every stream B and C finished has its Sum.
    let mut sums: HashMap<u64, usize> = HashMap::new();
    rt.block_on(async {
        for p in 0..PARTITIONS {
            let j = nats.existing_journal(&format!("sums-{p:03}")).await.unwrap();
            let head = j.head().await.unwrap();
            let mut r = j.reader(0).await.unwrap();
            while r.position() < head {
                let f = r.next().await.unwrap();
                for m in ss_log::frame::messages(&f.payload) {
                    if let Message::Sum(s) = Message::decode(m.unwrap()).unwrap() {
                        *sums.entry(s.stream.0).or_insert(0) += 1;
                    }
                }
            }
        }
    });
    let duplicated: Vec<_> = sums.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicate Sums: {duplicated:?}");
    for s in [&sb, &sc] {
        let run = s["run_id"].as_u64().unwrap() as u32;
        let landed = sums
            .keys()
            .filter(|id| split_stream_id(StreamId(**id)).0 == run)
            .count() as u64;
        assert_eq!(landed, s["streams_finished"].as_u64().unwrap(), "run {run}");
    }
}
