//! A loopback TCP proxy that can be partitioned: the harness routes cluster routes and client
//! connections through these, so a network partition is a proxy that stops forwarding.
//!
//! While forwarding, every accepted connection is joined to a fresh connection to the target and
//! bytes are copied both ways by two threads. [`Proxy::partition`] severs every connection it
//! carries (both sides are shut down, as a peer would see after its keepalives fail) and, until
//! [`Proxy::heal`], accepts new connections but never connects them upstream nor answers: a peer
//! sees a connect that hangs, then its own timeout, as across a real partition. Healing closes
//! those held connections, and new ones are forwarded again.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

struct Shared {
    target: SocketAddr,
    partitioned: AtomicBool,
    stopped: AtomicBool,
    /// Both ends of every live connection, so they can be severed.
    conns: Mutex<Vec<(u64, TcpStream, Option<TcpStream>)>>,
    next_id: AtomicU64,
}

/// One listening port on 127.0.0.1 forwarding to one target. Stops (and severs everything) on drop.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            partitioned: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        });
        let accept_shared = shared.clone();
        thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))?;
        Ok(Proxy { addr, shared })
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    pub fn is_partitioned(&self) -> bool {
        self.shared.partitioned.load(Ordering::SeqCst)
    }

    /// Severs every connection and holds new ones unanswered until [`Proxy::heal`].
    pub fn partition(&self) {
        self.shared.partitioned.store(true, Ordering::SeqCst);
        self.shared.sever_all();
    }

    /// Closes the connections held during the partition and forwards new ones again.
    pub fn heal(&self) {
        self.shared.partitioned.store(false, Ordering::SeqCst);
        self.shared.sever_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.sever_all();
        // Wake the accept loop so it sees `stopped` and exits.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

impl Shared {
    fn sever_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        for (_, a, b) in conns {
            let _ = a.shutdown(Shutdown::Both);
            if let Some(b) = b {
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }

    fn forget(&self, id: u64) {
        self.conns.lock().unwrap().retain(|(i, _, _)| *i != id);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if shared.partitioned.load(Ordering::SeqCst) {
            // Held: neither forwarded nor closed until the partition heals.
            if let Ok(c) = client.try_clone() {
                shared.conns.lock().unwrap().push((id, c, None));
            }
            continue;
        }
        let upstream = match TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) {
            Ok(u) => u,
            Err(_) => continue, // the target is down: the client sees its connection closed
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        ) else {
            continue;
        };
        {
            let mut conns = shared.conns.lock().unwrap();
            // A partition that began since the check above must still sever this one.
            if shared.partitioned.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
                continue;
            }
            conns.push((id, c3, Some(u3)));
        }
        let s1 = shared.clone();
        let _ = thread::Builder::new().name("proxy-copy".into()).spawn(move || {
            copy(client, upstream);
            s1.forget(id);
        });
        let _ = thread::Builder::new()
            .name("proxy-copy".into())
            .spawn(move || copy(u2, c2));
    }
}

/// Copies until either side closes or errs, then shuts both down.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks forwarding, that a partition severs a live connection and holds a new one
    /// unanswered, and that healing forwards again.
    #[test]
    fn proxy_forwards_partitions_and_heals() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        thread::spawn(move || {
            for c in echo.incoming() {
                let mut c = c.unwrap();
                thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(echo_addr).unwrap();
        let roundtrip = |s: &mut TcpStream| -> bool {
            s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let mut b = [0u8; 5];
            s.write_all(b"hello").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"hello"
        };
        let mut live = TcpStream::connect(proxy.addr()).unwrap();
        assert!(roundtrip(&mut live));
        proxy.partition();
        assert!(!roundtrip(&mut live), "a partition must sever live connections");
        let mut held = TcpStream::connect(proxy.addr()).unwrap();
        assert!(
            !roundtrip(&mut held),
            "a partition must not forward new connections"
        );
        proxy.heal();
        let mut after = TcpStream::connect(proxy.addr()).unwrap();
        assert!(roundtrip(&mut after), "a healed proxy forwards again");
    }
}
