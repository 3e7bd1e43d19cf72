//! The Modbus servers: TCP and RTU on a serial port or pty through
//! tokio-modbus's server side, RTU over TCP through [`super::rtu_frame`].
//!
//! Every server task ends when the simulator's stop signal fires (or its
//! sender is dropped). Connection tasks end with their server: tokio-modbus
//! cancels its per-connection tasks when `serve` is dropped, and the
//! RTU-over-TCP server keeps its connections in a `JoinSet`, which aborts
//! them when it is dropped.
//!
//! A TCP or RTU-over-TCP listener has a [`Gate`]: while every device it
//! serves is offline the gate is closed, which ends its connections and
//! refuses new ones (accepted, then closed at once), like a device that
//! lost power. A listener that still has an online device keeps its
//! connections and simply does not answer for the offline units.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_modbus::Request;
use tokio_serial::{SerialPort as _, SerialPortBuilderExt as _, SerialStream};

use super::SimError;
use super::device::DeviceCell;
use super::handler::{Bus, Framing, Reply, wall_ms};
use super::resolve::{Parity, ServerPlan, Transport};
use super::rtu_frame::{self, Decoded, MAX_FRAME};

/// Connections one TCP or RTU-over-TCP listener accepts at once; beyond
/// that a new connection is accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Pause after a failed accept or serial error before trying again, so a
/// persistent error (out of file descriptors) does not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Resolves when the stop flag turns true or its sender is dropped.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: that is a stop too.
    let _ = stop.wait_for(|s| *s).await;
}

/// Closes a listener's connections while every device on it is offline.
#[derive(Debug)]
pub(crate) struct Gate {
    devices: Vec<usize>,
    closed: watch::Sender<bool>,
}

impl Gate {
    /// Closes the gate for good (shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Re-reads the devices' offline flags.
    pub fn update(&self, cells: &[DeviceCell]) {
        let all = self
            .devices
            .iter()
            .all(|&i| cells.get(i).is_some_and(DeviceCell::is_offline));
        self.closed.send_if_modified(|closed| {
            let changed = *closed != all;
            *closed = all;
            changed
        });
    }

    /// True when `device` is behind this gate.
    pub fn covers(&self, device: usize) -> bool {
        self.devices.contains(&device)
    }
}

/// A started server.
#[derive(Debug)]
pub(crate) struct Running {
    /// Device indices it serves.
    pub devices: Vec<usize>,
    /// Bound address (TCP and RTU over TCP).
    pub addr: Option<SocketAddr>,
    /// Path a client opens (pty).
    pub pty_path: Option<String>,
    /// The pty end clients open by path, held so the pty stays up while
    /// no client has it open.
    pub pty_keep: Option<SerialStream>,
    /// Its gate (TCP and RTU over TCP); the simulator moves it out to
    /// share it with the ticker.
    pub gate: Option<Gate>,
    /// The server task (always set once started).
    pub task: Option<JoinHandle<()>>,
}

/// Binds or opens the server's transport, then spawns its task.
pub(crate) async fn start(
    plan: &ServerPlan,
    devices: Arc<[DeviceCell]>,
    stop: watch::Receiver<bool>,
) -> Result<Running, SimError> {
    let mut running = Running {
        devices: plan.devices.clone(),
        addr: None,
        pty_path: None,
        pty_keep: None,
        gate: None,
        task: None,
    };
    let task = match &plan.transport {
        Transport::Tcp(addr) | Transport::RtuOverTcp(addr) => {
            let listener =
                TcpListener::bind(addr.as_str())
                    .await
                    .map_err(|source| SimError::Bind {
                        addr: addr.clone(),
                        source,
                    })?;
            running.addr = listener.local_addr().ok();
            let (closed, gate_rx) = watch::channel(false);
            let gate = Gate {
                devices: plan.devices.clone(),
                closed,
            };
            gate.update(&devices);
            running.gate = Some(gate);
            let is_tcp = matches!(plan.transport, Transport::Tcp(_));
            let framing = if is_tcp { Framing::Tcp } else { Framing::Rtu };
            tracing::info!(addr = ?running.addr, ?framing, "simulator listening");
            let bus = Arc::new(Bus::new(devices, &plan.devices, framing));
            if is_tcp {
                tokio::spawn(serve_tcp(listener, bus, gate_rx, stop))
            } else {
                tokio::spawn(serve_rtu_over_tcp(listener, bus, gate_rx, stop))
            }
        }
        Transport::Serial { path, baud, parity } => {
            let open = SerialOpen {
                path: path.clone(),
                baud: *baud,
                parity: *parity,
            };
            let stream = open.open()?;
            tracing::info!(%path, baud, "simulator serving RTU");
            let bus = Arc::new(Bus::new(devices, &plan.devices, Framing::Rtu));
            tokio::spawn(serve_serial(stream, Some(open), bus, stop))
        }
        Transport::Pty(name) => {
            let (server_end, client_end) =
                SerialStream::pair().map_err(|source| SimError::Serial {
                    path: name.clone(),
                    source,
                })?;
            running.pty_path = client_end.name();
            running.pty_keep = Some(client_end);
            tracing::info!(path = ?running.pty_path, "simulator serving RTU on a pty");
            let bus = Arc::new(Bus::new(devices, &plan.devices, Framing::Rtu));
            tokio::spawn(serve_serial(server_end, None, bus, stop))
        }
    };
    running.task = Some(task);
    Ok(running)
}

/// How to (re)open a serial port.
#[derive(Debug, Clone)]
struct SerialOpen {
    path: String,
    baud: u32,
    parity: Parity,
}

impl SerialOpen {
    fn open(&self) -> Result<SerialStream, SimError> {
        let parity = match self.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        };
        tokio_serial::new(&self.path, self.baud)
            .parity(parity)
            .open_native_async()
            .map_err(|source| SimError::Serial {
                path: self.path.clone(),
                source,
            })
    }
}

async fn serve_tcp(
    listener: TcpListener,
    bus: Arc<Bus>,
    gate: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let on_connected = |stream: TcpStream, _peer: SocketAddr| {
        let admitted = admit(&gate, &permits);
        let bus = Arc::clone(&bus);
        let gate = gate.clone();
        async move {
            // `None` makes tokio-modbus drop (close) the connection.
            let Some(permit) = admitted else {
                return Ok(None);
            };
            // Replies are single writes; no reason to let Nagle hold them.
            let _ = stream.set_nodelay(true);
            Ok(Some((bus, Gated::new(stream, gate, permit))))
        }
    };
    let on_error = |err: io::Error| tracing::debug!(%err, "simulator connection ended");
    // Bounded by the stop signal; each round is one `serve` that only
    // returns on an accept error.
    loop {
        tokio::select! {
            r = server.serve(&on_connected, on_error) => {
                if let Err(err) = r {
                    tracing::warn!(%err, "simulator accept failed");
                }
            }
            () = stopped(&mut stop) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_PAUSE) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// A permit for a new connection, unless the gate is closed or the
/// listener is full.
fn admit(gate: &watch::Receiver<bool>, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if *gate.borrow() {
        return None;
    }
    Arc::clone(permits).try_acquire_owned().ok()
}

/// A TCP stream that reads end-of-file once its gate closes, which makes
/// tokio-modbus end the connection. Holds the connection's permit.
struct Gated {
    inner: TcpStream,
    /// Resolves when the gate closes; `None` once it has.
    closed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    _permit: OwnedSemaphorePermit,
}

impl Gated {
    fn new(
        inner: TcpStream,
        mut gate: watch::Receiver<bool>,
        permit: OwnedSemaphorePermit,
    ) -> Gated {
        let closed = Box::pin(async move {
            let _ = gate.wait_for(|closed| *closed).await;
        });
        Gated {
            inner,
            closed: Some(closed),
            _permit: permit,
        }
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.closed.as_mut().map(|c| c.as_mut().poll(cx)) {
            Some(Poll::Pending) => Pin::new(&mut this.inner).poll_read(cx, buf),
            // Closed: report end-of-file without touching the socket.
            Some(Poll::Ready(())) | None => {
                this.closed = None;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn serve_rtu_over_tcp(
    listener: TcpListener,
    bus: Arc<Bus>,
    gate: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped when this task returns, which aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stopped(&mut stop) => return,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _peer)) => {
                if let Some(permit) = admit(&gate, &permits) {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(rtu_connection(
                        stream,
                        Arc::clone(&bus),
                        gate.clone(),
                        permit,
                    ));
                }
            }
            Err(err) => {
                tracing::warn!(%err, "simulator accept failed");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    () = stopped(&mut stop) => return,
                }
            }
        }
    }
}

/// Serves RTU frames on one TCP connection until the peer closes it, an
/// I/O error occurs or the gate closes.
async fn rtu_connection(
    mut stream: TcpStream,
    bus: Arc<Bus>,
    mut gate: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let mut buf = Vec::with_capacity(2 * MAX_FRAME);
    let mut out = Vec::with_capacity(MAX_FRAME);
    let mut chunk = [0u8; MAX_FRAME];
    loop {
        let n = tokio::select! {
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = gate.wait_for(|closed| *closed) => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Bounded: every round consumes bytes or leaves the loop.
        loop {
            let (unit, function, request, len) = match rtu_frame::decode(&buf) {
                Decoded::Incomplete => break,
                Decoded::Garbage => {
                    buf.clear();
                    break;
                }
                Decoded::Request { unit, request, len } => (unit, buf[1], request, len),
                Decoded::Unsupported {
                    unit,
                    function,
                    len,
                } => (
                    unit,
                    function,
                    Request::Custom(function, Vec::new().into()),
                    len,
                ),
            };
            buf.drain(..len);
            match bus.handle(unit, &request, wall_ms()) {
                Reply::Response(r) => rtu_frame::encode(unit, function, Ok(&r), &mut out),
                Reply::Exception(e) => rtu_frame::encode(unit, function, Err(e), &mut out),
                Reply::Silent => {}
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

async fn serve_serial(
    first: SerialStream,
    reopen: Option<SerialOpen>,
    bus: Arc<Bus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut stream = Some(first);
    // Bounded by the stop signal. A real port is reopened after an error
    // (a USB adapter unplugged and back); a pty cannot be, so its server
    // ends on the first error.
    loop {
        if let Some(s) = stream.take() {
            let server = tokio_modbus::server::rtu::Server::new(s);
            tokio::select! {
                r = server.serve_forever(Arc::clone(&bus)) => {
                    tracing::warn!(result = ?r, "simulator RTU server stopped");
                }
                () = stopped(&mut stop) => return,
            }
        }
        let Some(open) = &reopen else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep(RETRY_PAUSE) => {}
            () = stopped(&mut stop) => return,
        }
        match open.open() {
            Ok(s) => stream = Some(s),
            Err(err) => tracing::warn!(%err, "simulator cannot reopen its serial port"),
        }
    }
}
