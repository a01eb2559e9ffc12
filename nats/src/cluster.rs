//! A real NATS JetStream cluster on loopback for tests and for users: `nats-server` processes,
//! one store directory each, free ports, every route and client connection through a
//! [`Proxy`] the harness controls.
//!
//! [`Cluster::start`] writes one config per node, starts the servers and waits until every
//! running node names the same JetStream meta leader. Node `i` reaches node `j` only through
//! the route proxy `(i, j)` (routes are listed explicitly both ways, and each node advertises a
//! closed port, so gossip never opens a route around the proxies), and clients reach the
//! servers through [`ClientProxies`] (servers do not advertise their client URLs). So:
//!
//! - [`Cluster::kill`] / [`Cluster::restart`]: SIGKILL a node by PID, start it again on the same
//!   store directory and ports;
//! - [`Cluster::partition_node`] / [`Cluster::heal_node`]: cut one node from the others and from
//!   every client;
//! - [`ClientProxies::partition`]: cut one client (a `run` process) from the whole cluster.
//!
//! Every server is killed when the [`Cluster`] is dropped. The servers' logs are kept in the
//! cluster directory (`n<i>.log`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::proxy::Proxy;

/// Environment variable naming the `nats-server` binary to use (else `nats-server` on `PATH`).
pub const SERVER_ENV: &str = "SS_NATS_SERVER";

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// The `nats-server` binary.
    pub server: PathBuf,
    /// Where the store directories, configs and logs go; a temporary directory if `None`
    /// (removed on drop).
    pub dir: Option<PathBuf>,
    /// `jetstream { sync_interval: always }`: fsync every write (nats-server 2.10 and later).
    /// Otherwise the server's default (2.9 and later: fsync every 2 minutes).
    pub sync_always: bool,
    /// The servers' `max_pending`: bytes a server queues for one connection before it closes it
    /// as a slow consumer (the server's default, 64 MB, if `None`). Tests lower it to show what
    /// a reader asks for at once.
    pub max_pending_bytes: Option<u64>,
}

impl ClusterOptions {
    pub fn new(server: PathBuf) -> ClusterOptions {
        ClusterOptions {
            nodes: 3,
            server,
            dir: None,
            sync_always: false,
            max_pending_bytes: None,
        }
    }
}

/// Finds `nats-server`: `$SS_NATS_SERVER`, else the first `nats-server` on `PATH`, else
/// `/usr/sbin/nats-server` (Debian's package, not on a normal user's `PATH`).
pub fn find_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(SERVER_ENV) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|p| p.is_file())
}

/// For tests: the server binary, or `None` after printing why the test is skipped. Under CI
/// (`CI` set) a missing server is a failure, not a skip.
pub fn server_for_test(test: &str) -> Option<PathBuf> {
    match find_server() {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: nats-server not found (set {SERVER_ENV} or install it; .ci/run does) and CI is set"
            )
        }
        None => {
            eprintln!("{test}: SKIPPED: nats-server not found (set {SERVER_ENV} or install it)");
            None
        }
    }
}

/// `nats-server --version`, e.g. `nats-server: v2.9.10`.
pub fn server_version(server: &Path) -> std::io::Result<String> {
    let out = Command::new(server).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// One client's way into the cluster: a proxy in front of each node's client port.
pub struct ClientProxies {
    proxies: Vec<Arc<Proxy>>,
}

impl ClientProxies {
    /// `nats://127.0.0.1:P1,nats://...`: the URL list for `--nats`.
    pub fn urls(&self) -> String {
        self.proxies
            .iter()
            .map(|p| format!("nats://{}", p.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts this client from every node.
    pub fn partition(&self) {
        self.proxies.iter().for_each(|p| p.partition());
    }

    pub fn heal(&self) {
        self.proxies.iter().for_each(|p| p.heal());
    }
}

/// Why one attempt to start a cluster failed.
enum StartError {
    /// A node exited before the cluster was ready: worth another attempt on fresh ports.
    NodeExited(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> StartError {
        StartError::Io(e)
    }
}

/// A running cluster. Kills its servers on drop.
pub struct Cluster {
    opts: ClusterOptions,
    dir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
    /// `routes[i][j]`: node `i`'s way to node `j`'s route port (`None` on the diagonal).
    routes: Vec<Vec<Option<Arc<Proxy>>>>,
    /// The proxies of every [`ClientProxies`] handed out, with their node, so that
    /// partitioning a node also cuts clients from it.
    client_proxies: Vec<(usize, Weak<Proxy>)>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cluster {
    /// Starts the nodes and waits (up to 60 s) for a meta leader that all of them agree on.
    /// A node that exits while starting (most often: a port picked free was taken by another
    /// process before the node bound it) fails the attempt at once; in a temporary directory the
    /// cluster is then started again on fresh ports, up to three attempts.
    pub fn start(opts: ClusterOptions) -> std::io::Result<Cluster> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match Cluster::start_once(opts.clone()) {
                Err(StartError::NodeExited(reason)) if opts.dir.is_none() && attempt < ATTEMPTS => {
                    eprintln!(
                        "nats cluster: attempt {attempt} of {ATTEMPTS} failed ({reason}); trying fresh ports"
                    );
                    attempt += 1;
                }
                Err(StartError::NodeExited(reason)) => return Err(std::io::Error::other(reason)),
                Err(StartError::Io(e)) => return Err(e),
                Ok(cluster) => return Ok(cluster),
            }
        }
    }

    fn start_once(opts: ClusterOptions) -> Result<Cluster, StartError> {
        assert!(opts.nodes >= 1);
        let (dir, tempdir) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("ss-nats-cluster").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut nodes = Vec::new();
        for i in 0..opts.nodes {
            nodes.push(Node {
                name: format!("n{i}"),
                client_port: free_port()?,
                route_port: free_port()?,
                http_port: free_port()?,
                config: dir.join(format!("n{i}.conf")),
                log: dir.join(format!("n{i}.log")),
                child: None,
            });
        }
        let mut routes = Vec::new();
        for i in 0..opts.nodes {
            let mut row = Vec::new();
            for (j, node) in nodes.iter().enumerate() {
                row.push(if i == j {
                    None
                } else {
                    Some(Arc::new(Proxy::start(loopback(node.route_port))?))
                });
            }
            routes.push(row);
        }
        let mut cluster = Cluster {
            opts,
            dir,
            _tempdir: tempdir,
            nodes,
            routes,
            client_proxies: Vec::new(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.write_config(i)?;
            cluster.spawn(i)?;
        }
        cluster.wait_started(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// [`Cluster::wait_ready`], telling a node that exited from the rest.
    fn wait_started(&mut self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(reason) = self.exited_node()? {
                return Err(StartError::NodeExited(reason));
            }
            let last = match self.meta_leader_agreed() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => "no agreed meta leader yet".to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(StartError::Io(std::io::Error::other(format!(
                    "cluster in {} not ready after {timeout:?}: {last}",
                    self.dir.display()
                ))));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A node that has exited: its name, status and the end of its log.
    fn exited_node(&mut self) -> std::io::Result<Option<String>> {
        for node in &mut self.nodes {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            if let Some(status) = child.try_wait()? {
                node.child = None;
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                return Ok(Some(format!(
                    "node {} exited ({status}) while starting: {}",
                    node.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
        }
        Ok(None)
    }

    fn write_config(&self, i: usize) -> std::io::Result<()> {
        let node = &self.nodes[i];
        let store = self.dir.join(&node.name);
        std::fs::create_dir_all(&store)?;
        let routes: Vec<String> = self.routes[i]
            .iter()
            .flatten()
            .map(|p| format!("\"nats-route://{}\"", p.addr()))
            .collect();
        let sync = if self.opts.sync_always {
            "\n  sync_interval: always"
        } else {
            ""
        };
        let max_pending = self
            .opts
            .max_pending_bytes
            .map_or(String::new(), |b| format!("max_pending: {b}\n"));
        let config = format!(
            "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{http}\"\n{max_pending}\
             jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 256MB\n  max_file_store: 64GB{sync}\n}}\n\
             cluster {{\n  name: ss\n  listen: \"127.0.0.1:{route}\"\n  no_advertise: true\n  \
             advertise: \"127.0.0.1:1\"\n  routes: [{routes}]\n}}\n",
            name = node.name,
            client = node.client_port,
            http = node.http_port,
            store = store.display(),
            route = node.route_port,
            routes = routes.join(", "),
        );
        std::fs::write(&node.config, config)
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {} is running", node.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(&self.opts.server)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The server name of node `i` (`n<i>`), as stream info names leaders.
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node named `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Direct client URLs (no proxies) of every node.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A new set of client proxies, one per node: hand its [`ClientProxies::urls`] to one
    /// client to be able to partition that client alone.
    pub fn client_proxies(&mut self) -> std::io::Result<ClientProxies> {
        let mut proxies = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let p = Arc::new(Proxy::start(loopback(n.client_port))?);
            self.client_proxies.push((i, Arc::downgrade(&p)));
            proxies.push(p);
        }
        self.client_proxies.retain(|(_, p)| p.strong_count() > 0);
        Ok(ClientProxies { proxies })
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) -> std::io::Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts node `i` again (same ports, same store) and waits for a meta leader.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.spawn(i)?;
        self.wait_ready(Duration::from_secs(60))
    }

    /// Cuts node `i` from the other nodes and from every client that goes through proxies
    /// (existing connections are severed, new ones hang).
    pub fn partition_node(&self, i: usize) {
        self.node_proxies(i).iter().for_each(|p| p.partition());
    }

    pub fn heal_node(&self, i: usize) {
        self.node_proxies(i).iter().for_each(|p| p.heal());
    }

    fn node_proxies(&self, i: usize) -> Vec<Arc<Proxy>> {
        let outgoing = self.routes[i].iter().flatten().cloned();
        let incoming = self.routes.iter().filter_map(|row| row[i].clone());
        let clients = self
            .client_proxies
            .iter()
            .filter(|(n, _)| *n == i)
            .filter_map(|(_, p)| p.upgrade());
        outgoing.chain(incoming).chain(clients).collect()
    }

    /// Waits until every running node reports the same JetStream meta leader; fails at once if
    /// a node exits meanwhile.
    pub fn wait_ready(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.wait_started(timeout).map_err(|e| match e {
            StartError::NodeExited(reason) => std::io::Error::other(reason),
            StartError::Io(e) => e,
        })
    }

    /// The meta leader's name if every running node names the same one.
    pub fn meta_leader_agreed(&self) -> std::io::Result<Option<String>> {
        let mut agreed: Option<String> = None;
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Some(leader) = meta_leader(node.http_port)? else {
                return Ok(None);
            };
            match &agreed {
                Some(a) if *a != leader => return Ok(None),
                _ => agreed = Some(leader),
            }
        }
        Ok(agreed)
    }

    /// The meta leader as node `i` sees it.
    pub fn meta_leader_seen_by(&self, i: usize) -> std::io::Result<Option<String>> {
        meta_leader(self.nodes[i].http_port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.kill(i);
        }
    }
}

/// Reads `meta_cluster.leader` from a node's monitoring endpoint (`/jsz`).
fn meta_leader(http_port: u16) -> std::io::Result<Option<String>> {
    let body = http_get(http_port, "/jsz")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(std::io::Error::other)?;
    Ok(v["meta_cluster"]["leader"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    match resp.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_string()),
        None => Err(std::io::Error::other("malformed HTTP response")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that exits while the cluster starts (here: a "server" that is `false`, as a node
    /// whose port was taken would) fails the start at once, after three attempts on fresh
    /// ports, naming the node, instead of waiting out the 60 s for a meta leader.
    #[test]
    fn a_node_exiting_at_start_fails_the_start_at_once_and_names_it() {
        let started = Instant::now();
        let error = match Cluster::start(ClusterOptions::new(PathBuf::from("/bin/false"))) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a cluster of `false` started"),
        };
        assert!(
            error.contains("exited") && error.contains("while starting"),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}
