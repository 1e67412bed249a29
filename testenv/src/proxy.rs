//! A TCP proxy on loopback between a client and a server (the controller and
//! the kube-apiserver): bytes pass through untouched (TLS included), and the
//! network faults a production cluster has can be switched on:
//! [`TcpProxy::cut`] drops every open connection at once, as a load balancer
//! would; [`TcpProxy::refuse`] keeps dropping every connection until turned
//! off (an outage); [`TcpProxy::stall`] holds every byte in both directions,
//! on open and new connections, until turned off (a black hole that keeps
//! connections open).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Error;

/// The faults switched on now.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    /// Bumped by every cut; each connection ends when it changes.
    generation: u64,
    refusing: bool,
    stalled: bool,
}

/// Stops accepting and drops every connection when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    connections: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, Error> {
        let port = crate::process::free_port()?;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| Error::io(Path::new("proxy listener"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(Path::new("proxy listener"), e))?;
        let (faults, _) = watch::channel(Faults::default());
        let connections = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            faults.clone(),
            connections.clone(),
        ));
        Ok(Self {
            addr,
            faults,
            connections,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection open now; new ones are accepted as before.
    pub fn cut(&self) {
        self.faults.send_modify(|f| f.generation += 1);
    }

    /// From `true` until `false`: every open connection is dropped, and every
    /// new one is closed as soon as it is accepted.
    pub fn refuse(&self, on: bool) {
        self.faults.send_modify(|f| {
            f.refusing = on;
            if on {
                f.generation += 1;
            }
        });
    }

    /// From `true` until `false`: no byte passes in either direction, on
    /// open connections and new ones; held bytes flow on when turned off.
    pub fn stall(&self, on: bool) {
        self.faults.send_modify(|f| f.stalled = on);
    }

    /// Connections accepted since the proxy started.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    connections: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        connections.fetch_add(1, Ordering::Relaxed);
        if faults.borrow().refusing {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, upstream, faults.subscribe()));
    }
}

/// Copies both ways until either side closes or the connection is cut.
async fn forward(client: TcpStream, upstream: SocketAddr, mut faults: watch::Receiver<Faults>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let generation = faults.borrow_and_update().generation;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Each direction ends on its own (a half-close passes through).
    let (up, down) = (faults.clone(), faults.clone());
    let both = async move {
        tokio::join!(
            pump(client_read, server_write, up),
            pump(server_read, client_write, down),
        )
    };
    tokio::select! {
        _ = both => {}
        _ = faults.wait_for(|f| f.generation != generation) => {}
    }
}

/// One direction: each chunk read waits while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if faults.wait_for(|f| !f.stalled).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::TcpProxy;

    /// An echo server on loopback: what a connection sends comes back.
    async fn echo() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(conn: &mut TcpStream, byte: u8) -> u8 {
        conn.write_all(&[byte]).await.unwrap();
        let mut buf = [0u8; 1];
        conn.read_exact(&mut buf).await.unwrap();
        buf[0]
    }

    #[tokio::test]
    async fn a_stalled_proxy_holds_the_bytes_until_released_and_then_delivers_them() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut conn, 1).await, 1);

        proxy.stall(true);
        conn.write_all(&[2]).await.unwrap();
        let mut buf = [0u8; 1];
        let held =
            tokio::time::timeout(Duration::from_millis(300), conn.read_exact(&mut buf)).await;
        assert!(held.is_err(), "a byte passed a stalled proxy");

        proxy.stall(false);
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf[0], 2);
    }

    #[tokio::test]
    async fn a_refusing_proxy_drops_open_and_new_connections_until_turned_off() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, 1).await, 1);

        proxy.refuse(true);
        let mut buf = [0u8; 1];
        assert_eq!(
            open.read(&mut buf).await.unwrap_or(0),
            0,
            "the open connection was kept"
        );
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = new.write_all(&[3]).await;
        assert_eq!(
            new.read(&mut buf).await.unwrap_or(0),
            0,
            "a new connection was served"
        );

        proxy.refuse(false);
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut after, 4).await, 4);
    }
}
