//! The Modbus servers: TCP, RTU on a serial port or pty, and RTU over TCP,
//! all framed here ([`super::rtu_frame`] for RTU and for the PDU inside a
//! TCP frame) rather than by tokio-modbus's server side, because fault
//! injection ([`super::fault`]) needs the bytes of each answer: to hold it
//! back, change one field, or put noise in front of it.
//!
//! Every server task ends when the simulator's stop signal fires (or its
//! sender is dropped). Connection tasks end with their server: a listener
//! keeps its connections in a `JoinSet`, which aborts them when it is
//! dropped.
//!
//! A TCP or RTU-over-TCP listener has a [`Gate`]: while every device it
//! serves is offline the gate is closed, which ends its connections and
//! refuses new ones (accepted, then closed at once), like a device that
//! lost power. A listener that still has an online device keeps its
//! connections and simply does not answer for the offline units.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_modbus::{ExceptionCode, Request};
use tokio_serial::{SerialPort as _, SerialPortBuilderExt as _, SerialStream};

use super::SimError;
use super::device::DeviceCell;
use super::fault::{self, Fault, Wire};
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
            let wire = if is_tcp { Wire::Tcp } else { Wire::Rtu };
            tokio::spawn(serve_listener(listener, bus, gate_rx, stop, wire))
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

/// A permit for a new connection, unless the gate is closed or the
/// listener is full.
fn admit(gate: &watch::Receiver<bool>, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if *gate.borrow() {
        return None;
    }
    Arc::clone(permits).try_acquire_owned().ok()
}

async fn serve_listener(
    listener: TcpListener,
    bus: Arc<Bus>,
    gate: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    wire: Wire,
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
                    // Replies are single writes; no reason to let Nagle hold them.
                    let _ = stream.set_nodelay(true);
                    let bus = Arc::clone(&bus);
                    let gate = gate.clone();
                    connections.spawn(async move {
                        let _permit = permit;
                        // The peer hanging up is how a connection ends.
                        let _ = serve_frames(stream, bus, Some(gate), wire).await;
                    });
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

/// What the start of a Modbus TCP receive buffer holds.
enum Mbap {
    /// Not a whole frame yet.
    Incomplete,
    /// A header no client sends: the connection is closed.
    Garbage,
    /// A whole frame, `len` bytes; `request` is `None` for a PDU too
    /// malformed to serve (answered with exception 03).
    Frame {
        transaction: u16,
        unit: u8,
        function: u8,
        request: Option<Request<'static>>,
        len: usize,
    },
}

/// Decodes the first Modbus TCP frame in `buf`. The PDU is decoded by
/// the RTU codec (unit, PDU and a CRC make an RTU frame), so both
/// transports read requests the same way.
fn decode_mbap(buf: &[u8]) -> Mbap {
    let Some(header) = buf.get(..7) else {
        return Mbap::Incomplete;
    };
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
    // The length counts the unit id and a PDU of at most 253 bytes.
    if protocol != 0 || !(2..=254).contains(&length) {
        return Mbap::Garbage;
    }
    let Some(frame) = buf.get(..6 + length) else {
        return Mbap::Incomplete;
    };
    let unit = frame[6];
    let function = frame[7];
    let mut rtu = frame[6..].to_vec();
    let crc = rtu_frame::crc16(&rtu).to_le_bytes();
    rtu.extend_from_slice(&crc);
    let request = match rtu_frame::decode(&rtu) {
        Decoded::Request { request, len, .. } if len == rtu.len() => Some(request),
        Decoded::Unsupported { function, .. } => Some(Request::Custom(function, Vec::new().into())),
        _ => None,
    };
    Mbap::Frame {
        transaction: u16::from_be_bytes([header[0], header[1]]),
        unit,
        function,
        request,
        len: 6 + length,
    }
}

/// Resolves when the gate closes; never without a gate.
async fn gate_closed(gate: &mut Option<watch::Receiver<bool>>) {
    match gate {
        Some(g) => {
            let _ = g.wait_for(|closed| *closed).await;
        }
        None => std::future::pending().await,
    }
}

/// Serves frames on one stream (a TCP connection, a serial port or pty)
/// until the peer closes it, an I/O error occurs or the gate closes.
/// Requests are answered one after the other, as a device does: a late
/// answer holds back the ones behind it. Faults scheduled for a device
/// are applied to its answers here.
async fn serve_frames<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    bus: Arc<Bus>,
    mut gate: Option<watch::Receiver<bool>>,
    wire: Wire,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(2 * MAX_FRAME);
    let mut out = Vec::with_capacity(MAX_FRAME + 7);
    let mut chunk = [0u8; MAX_FRAME];
    let mut noise = || rand::random::<u8>();
    loop {
        let n = tokio::select! {
            r = stream.read(&mut chunk) => match r? {
                0 => return Ok(()),
                n => n,
            },
            () = gate_closed(&mut gate) => return Ok(()),
        };
        buf.extend_from_slice(&chunk[..n]);
        // Bounded: every round consumes bytes or leaves the loop.
        loop {
            let (transaction, unit, function, request, len) = match wire {
                Wire::Rtu => match rtu_frame::decode(&buf) {
                    Decoded::Incomplete => break,
                    Decoded::Garbage => {
                        buf.clear();
                        break;
                    }
                    Decoded::Request { unit, request, len } => {
                        (None, unit, buf[1], Some(request), len)
                    }
                    Decoded::Unsupported {
                        unit,
                        function,
                        len,
                    } => (
                        None,
                        unit,
                        function,
                        Some(Request::Custom(function, Vec::new().into())),
                        len,
                    ),
                },
                Wire::Tcp => match decode_mbap(&buf) {
                    Mbap::Incomplete => break,
                    Mbap::Garbage => return Ok(()),
                    Mbap::Frame {
                        transaction,
                        unit,
                        function,
                        request,
                        len,
                    } => (Some(transaction), unit, function, request, len),
                },
            };
            buf.drain(..len);
            let reply = match &request {
                Some(request) => bus.handle(unit, request, wall_ms()),
                None => Reply::Exception(ExceptionCode::IllegalDataValue),
            };
            let fault = bus.next_fault(unit);
            out.clear();
            match reply {
                Reply::Response(r) => rtu_frame::encode(unit, function, Ok(&r), &mut out),
                Reply::Exception(e) => rtu_frame::encode(unit, function, Err(e), &mut out),
                Reply::Silent => continue,
            }
            if let Some(transaction) = transaction {
                to_mbap(transaction, &mut out);
            }
            match &fault {
                Some(Fault::Silent) => continue,
                Some(Fault::Late(delay)) => tokio::time::sleep(*delay).await,
                Some(other) => fault::mangle(wire, &mut out, other, &mut noise),
                None => {}
            }
            stream.write_all(&out).await?;
        }
    }
}

/// Turns an encoded RTU frame (unit, PDU, CRC) into a Modbus TCP frame.
fn to_mbap(transaction: u16, frame: &mut Vec<u8>) {
    frame.truncate(frame.len().saturating_sub(2));
    // ok: unit and a PDU of at most 253 bytes.
    let len = frame.len() as u16;
    let [t0, t1] = transaction.to_be_bytes();
    let [l0, l1] = len.to_be_bytes();
    frame.splice(0..0, [t0, t1, 0, 0, l0, l1]);
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
            tokio::select! {
                r = serve_frames(s, Arc::clone(&bus), None, Wire::Rtu) => {
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
