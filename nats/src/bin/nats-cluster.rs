//! Starts a 3-node JetStream cluster on loopback for `stream-sum run --nats`, prints its URLs,
//! and stops it on Ctrl-C (or end of standard input).
//!
//! `cargo run -p ss-nats --bin nats-cluster -- [--dir DIR] [--sync-always] [--nodes N]`

use std::io::Read;
use std::path::PathBuf;

use ss_nats::cluster::{find_server, server_version, Cluster, ClusterOptions, SERVER_ENV};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(server) = find_server() else {
        eprintln!("nats-cluster: nats-server not found (install it, or set {SERVER_ENV})");
        std::process::exit(3);
    };
    let mut opts = ClusterOptions::new(server.clone());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => opts.dir = args.next().map(PathBuf::from),
            "--sync-always" => opts.sync_always = true,
            "--nodes" => opts.nodes = args.next().and_then(|n| n.parse().ok()).unwrap_or(3),
            _ => {
                eprintln!("usage: nats-cluster [--dir DIR] [--sync-always] [--nodes N]");
                std::process::exit(2);
            }
        }
    }
    let version = server_version(&server).unwrap_or_default();
    let cluster = match Cluster::start(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nats-cluster: {e}");
            std::process::exit(3);
        }
    };
    println!(
        "{} ({version}): {} nodes in {}",
        server.display(),
        cluster.node_count(),
        cluster.dir().display()
    );
    for i in 0..cluster.node_count() {
        println!("  {} pid {}", cluster.node_name(i), cluster.pid(i).unwrap_or(0));
    }
    println!("--nats {}", cluster.urls());
    println!("(Ctrl-C or end of input stops the cluster)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stdin = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        });
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = stdin => {}
        }
    });
    drop(cluster);
}
