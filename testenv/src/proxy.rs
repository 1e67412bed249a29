//! A TCP proxy on loopback between a client and a server (the controller and
//! the kube-apiserver): bytes pass through untouched (TLS included), and
//! [`TcpProxy::cut`] drops every open connection at once, as a network
//! fault or a load balancer would.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Error;

/// Stops accepting and drops every connection when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    /// Bumped by every cut; each connection ends when it changes.
    generation: watch::Sender<u64>,
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
        let (generation, _) = watch::channel(0u64);
        let connections = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            generation.clone(),
            connections.clone(),
        ));
        Ok(Self {
            addr,
            generation,
            connections,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection open now; new ones are accepted as before.
    pub fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
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
    generation: watch::Sender<u64>,
    connections: Arc<AtomicU64>,
) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        connections.fetch_add(1, Ordering::Relaxed);
        let mut cut = generation.subscribe();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.changed() => {}
            }
        });
    }
}
