//! A loopback TCP proxy between the gateway and the broker, for network
//! faults: [`Proxy::cut`] drops every connection and refuses new ones (they
//! are accepted and closed at once) until [`Proxy::restore`];
//! [`Proxy::stall`] holds back everything the broker sends (acks included)
//! while the gateway's packets still reach the broker.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; dropping it stops it.
pub struct Proxy {
    addr: SocketAddr,
    /// `true` while cut; every connection task watches it.
    cut: watch::Sender<bool>,
    /// `true` while the broker-to-gateway direction is held back.
    stalled: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Ends the connection tasks too.
        self.cut.send_replace(true);
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, _) = watch::channel(false);
        let (stalled, _) = watch::channel(false);
        let watcher = cut.clone();
        let stall_watcher = stalled.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *watcher.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(
                    client,
                    upstream,
                    watcher.subscribe(),
                    stall_watcher.subscribe(),
                ));
            }
        });
        Proxy {
            addr,
            cut,
            stalled,
            task,
        }
    }

    /// Where the gateway connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Holds back what the broker sends until [`restore`](Self::restore)
    /// (or a cut, which drops it): the broker gets the publishes, the
    /// gateway never sees their acks.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Accepts connections again and ends a stall.
    pub fn restore(&self) {
        self.stalled.send_replace(false);
        self.cut.send_replace(false);
    }
}

async fn pipe(
    client: TcpStream,
    upstream: SocketAddr,
    mut cut: watch::Receiver<bool>,
    mut stalled: watch::Receiver<bool>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = tokio::io::copy(&mut client_rx, &mut server_tx);
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = server_rx.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            // Held while stalled; dropped if cut meanwhile.
            if stalled.wait_for(|s| !*s).await.is_err() {
                return Ok(());
            }
            client_tx.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
    // Both sockets drop here: the gateway and the broker see the
    // connection end.
}
