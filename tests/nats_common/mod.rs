//! Helpers shared by the tests that run against a real JetStream cluster.

use std::time::Duration;

use ss_nats::Nats;

/// The node leading `stream`, waiting up to 30 s for the stream to exist and have a leader (the
/// `run` processes create their streams as they start, which takes longer on a loaded machine).
pub fn stream_leader(rt: &tokio::runtime::Runtime, nats: &Nats, stream: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leader = rt.block_on(async {
            let mut s = nats
                .jetstream()
                .get_stream(stream)
                .await
                .map_err(|e| e.to_string())?;
            let info = s.info().await.map_err(|e| e.to_string())?;
            info.cluster
                .clone()
                .and_then(|c| c.leader)
                .ok_or_else(|| "no leader yet".to_string())
        });
        match leader {
            Ok(leader) => return leader,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for the leader of {stream}: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("no leader for stream {stream} within 30 s: {e}"),
        }
    }
}
