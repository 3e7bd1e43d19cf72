//! Opens and uses one Modbus connection: a TCP socket, a serial port, or
//! RTU framing on a TCP socket.
//!
//! # Owning the bytes
//!
//! Reads and writes are exchanged here, not through tokio-modbus: after a timeout or
//! a bad reply the wire can hold bytes of an earlier exchange (a late
//! answer waits in the kernel's tty buffer, reopening a port does not
//! flush it), and a late answer to a read of the same shape passes every
//! check tokio-modbus makes, so it would be taken for the next request's
//! answer, quality good, shifted by one read for ever. So:
//!
//! * every reply is checked against its request in full
//!   ([`frame`](super::frame): unit, function code, byte count for the
//!   quantity asked, CRC on RTU, transaction id and header on TCP), and a
//!   serial reply must be followed by the inter-frame silence, since a
//!   second frame right behind it means the first was not ours alone;
//! * before every request, stray bytes are discarded (the tty input queue
//!   is flushed, a socket is drained of what has arrived);
//! * after a timeout, a CRC or framing error, or any reply that does not
//!   match, the line is *settled* before the next request: flushed, then
//!   read and discarded until it has been silent for the inter-frame gap
//!   plus a margin (the rest of a bad frame). A line that never goes
//!   quiet fails the request (`bad:protocol`).
//! * A timed-out request's answer may still be on its way. It can only be
//!   mistaken for the answer to another request *of the same unit* (the
//!   unit is checked), and an answer to the same request carries the
//!   right registers. So before a different request to that unit, within
//!   one more timeout of the first, the line is settled until that window
//!   has passed: a late answer up to twice the timeout is discarded, and
//!   other devices on the bus and retries do not pay for the wait.
//! * Modbus TCP, whose transaction ids tell late answers apart, keeps its
//!   connection after a well-framed mismatch; a timeout or a header that
//!   loses the framing (an MBAP length of 65535) drops it, and the next
//!   request reconnects. A serial port stays open: reopening it would not
//!   clear it.
//!
//! Each call has a timeout; a Modbus exception is an answer like any
//! other and leaves the line in step.
//!
//! # Writes
//!
//! A write ([`Link::write`]) goes through the same discipline as a read
//! (stray bytes out, settling, the owed late answer on RTU, a new TCP
//! connection after a timeout), and its reply is checked in full (the echo
//! of address and value or quantity). It is never retried here, and its
//! failure says what the device may have done ([`WriteError`]): an
//! exception is an answer (nothing written); a failure before the request
//! went out (connecting, a line that will not go quiet) means nothing was
//! written; a timeout, a broken connection or a reply that does not match
//! *after* it went out means the write may or may not have happened.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_serial::{ClearBuffer, SerialPort as _, SerialStream};

use super::frame::{
    Adu, Answer, Exchange, MAX_PDU, Mismatch, ReadRequest, WriteAnswer, WriteRequest, check_rtu,
    check_tcp, rtu_adu, tcp_adu, tcp_pdu_len,
};
use crate::config::{Bus, Parity};
use crate::reading::BadReason;
use crate::tag::Area;

/// Why a request failed. Maps one-to-one onto [`BadReason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect, or the connection broke.
    #[error("connection: {0}")]
    Connection(String),
    /// The device answered with a Modbus exception.
    #[error("Modbus exception {0:#04x} ({name})", name = exception_name(*.0))]
    Exception(u8),
    /// The answer did not match the request; it was rejected.
    #[error("rejected response: {0}")]
    Protocol(String),
}

impl PollError {
    /// The quality reason for readings this error spoils.
    pub fn reason(&self) -> BadReason {
        match self {
            PollError::Timeout(_) => BadReason::Timeout,
            PollError::Connection(_) => BadReason::Connection,
            PollError::Exception(code) => BadReason::Exception(*code),
            PollError::Protocol(_) => BadReason::Protocol,
        }
    }

    /// True when another attempt may succeed (not a Modbus exception).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, PollError::Exception(_))
    }
}

/// The standard name of a Modbus exception code.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// Why a write failed, by what it means for the device: whether the
/// write may have happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Nothing was sent (no connection, or the line would not go quiet
    /// before the request): the write did not happen.
    #[error("not sent: {0}")]
    NotSent(PollError),
    /// The device answered with this Modbus exception: it refused the
    /// write, nothing changed.
    #[error("Modbus exception {0:#04x} ({name})", name = exception_name(*.0))]
    Refused(u8),
    /// The request went out but no reply that answers it came back (a
    /// timeout, a broken connection, a reply that does not match): the
    /// write may or may not have happened.
    #[error("{0}")]
    Unknown(PollError),
}

/// A failed exchange, and whether the request had started to go out.
struct Failed {
    error: PollError,
    sent: bool,
}

/// What one read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Registers (FC3, FC4).
    Registers(Vec<u16>),
    /// Bits (FC1, FC2).
    Bits(Vec<bool>),
}

/// Where a link goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// Modbus TCP to `host:port`.
    Tcp(String),
    /// RTU frames over TCP to `host:port`.
    RtuOverTcp(String),
    /// A serial bus.
    Serial(Bus),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp {a}"),
            Endpoint::RtuOverTcp(a) => write!(f, "rtu-over-tcp {a}"),
            Endpoint::Serial(bus) if bus.name == bus.port => write!(f, "serial {}", bus.port),
            Endpoint::Serial(bus) => write!(f, "bus {} ({})", bus.name, bus.port),
        }
    }
}

/// Silence, beyond the inter-frame gap, that settling a line after a bad
/// reply waits for: USB serial adapters and RTU-over-TCP gateways deliver
/// the rest of a frame in bursts some milliseconds apart.
const SETTLE_MARGIN: Duration = Duration::from_millis(20);

/// The inter-frame gap assumed on RTU over TCP, where the bus behind the
/// gateway is unknown: the standard's fixed value above 19200 baud.
const GATEWAY_FRAME_GAP: Duration = Duration::from_micros(1_750);

/// How much longer than one silence window settling may take before the
/// line is declared noisy: a line that chatters for good fails the
/// request rather than stalling the link.
const SETTLE_ROUNDS: u32 = 4;

/// An open connection.
enum Wire {
    /// Modbus TCP.
    Tcp(TcpStream),
    /// RTU frames on a TCP socket.
    RtuOverTcp(TcpStream),
    /// A serial port (or pty).
    Serial(SerialStream),
}

impl Wire {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Wire::Tcp(s) | Wire::RtuOverTcp(s) => s.read(buf).await,
            Wire::Serial(p) => p.read(buf).await,
        }
    }

    /// Discards what has arrived and nobody asked for; how many bytes.
    fn discard_stray(&mut self) -> Result<usize, Failure> {
        match self {
            Wire::Tcp(s) | Wire::RtuOverTcp(s) => {
                let mut scratch = [0u8; 256];
                let mut discarded = 0;
                // Bounded: each round consumes bytes; a flood that never
                // ends would be a peer gone mad, and then the cap stops it.
                for _ in 0..64 {
                    match s.try_read(&mut scratch) {
                        Ok(0) => return Err(Failure::Io("connection closed".into())),
                        Ok(n) => discarded += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(Failure::Io(e.to_string())),
                    }
                }
                Ok(discarded)
            }
            Wire::Serial(p) => {
                let waiting = p.bytes_to_read().unwrap_or(0);
                p.clear(ClearBuffer::Input)
                    .map_err(|e| Failure::Io(format!("flush: {e}")))?;
                Ok(usize::try_from(waiting).unwrap_or(usize::MAX))
            }
        }
    }
}

/// How an exchange failed, which decides how the line is recovered.
#[derive(Debug)]
enum Failure {
    /// No whole answer before the deadline.
    Timeout,
    /// The connection broke (or could not be written).
    Io(String),
    /// A reply that does not answer the request.
    Mismatch(Mismatch),
    /// A TCP header that loses the framing: the stream cannot be trusted.
    Lost(Mismatch),
}

/// One connection, opened on demand, kept in step with the wire.
pub struct Link {
    endpoint: Endpoint,
    wire: Option<Wire>,
    /// Serial only: when the line last carried a frame, for the
    /// inter-frame silence the RTU standard requires.
    quiet_from: Option<Instant>,
    /// Set when the line may hold bytes of an earlier exchange: how long
    /// it must stay silent before the next request goes out.
    settle: Option<Duration>,
    /// RTU: the last request that timed out (its RTU frame, unit first),
    /// and until when its late answer is waited out before another
    /// request to its unit.
    owed: Option<(Adu, Instant)>,
    /// Modbus TCP: the last transaction id sent.
    transaction: u16,
}

impl Link {
    /// A link that connects on first use.
    pub fn new(endpoint: Endpoint) -> Link {
        Link {
            endpoint,
            wire: None,
            quiet_from: None,
            settle: None,
            owed: None,
            transaction: 0,
        }
    }

    /// Where it goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// True while a connection is open.
    pub fn is_connected(&self) -> bool {
        self.wire.is_some()
    }

    /// Drops the connection; the next request opens a new one.
    pub fn disconnect(&mut self) {
        self.wire = None;
    }

    /// Opens the connection if it is not open.
    pub async fn connect(&mut self, limit: Duration) -> Result<(), PollError> {
        if self.wire.is_some() {
            return Ok(());
        }
        let wire = match &self.endpoint {
            Endpoint::Tcp(addr) => Wire::Tcp(connect_tcp(addr, limit).await?),
            Endpoint::RtuOverTcp(addr) => Wire::RtuOverTcp(connect_tcp(addr, limit).await?),
            Endpoint::Serial(bus) => {
                let port = open_serial(bus)?;
                // Opening a port does not flush it (serialport on Linux):
                // whatever the tty buffered while it was closed goes now.
                let _ = port.clear(ClearBuffer::All);
                Wire::Serial(port)
            }
        };
        self.wire = Some(wire);
        Ok(())
    }

    /// The inter-frame gap of this link's line.
    fn frame_gap(&self) -> Duration {
        match &self.endpoint {
            Endpoint::Serial(bus) => bus.frame_gap(),
            _ => GATEWAY_FRAME_GAP,
        }
    }

    /// Reads `count` registers or bits of `area` from `start` on unit `unit`,
    /// connecting first if needed.
    pub async fn read(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
        limit: Duration,
    ) -> Result<Block, PollError> {
        let request = ReadRequest {
            unit,
            area,
            start,
            count,
        };
        match self.transact(&request, limit).await {
            Ok(Answer::Registers(r)) => Ok(Block::Registers(r)),
            Ok(Answer::Bits(b)) => Ok(Block::Bits(b)),
            Ok(Answer::Exception(code)) => Err(PollError::Exception(code)),
            Err(failed) => Err(failed.error),
        }
    }

    /// Sends one write request and checks its reply, connecting first if
    /// needed, with the same line discipline as reads. Never retried here:
    /// a write that got no answer may have happened, and a pulse or a
    /// counter reset must not happen twice.
    pub async fn write(
        &mut self,
        request: &WriteRequest,
        limit: Duration,
    ) -> Result<(), WriteError> {
        match self.transact(request, limit).await {
            Ok(WriteAnswer::Done) => Ok(()),
            Ok(WriteAnswer::Exception(code)) => Err(WriteError::Refused(code)),
            Err(Failed { error, sent: false }) => Err(WriteError::NotSent(error)),
            Err(Failed { error, sent: true }) => Err(WriteError::Unknown(error)),
        }
    }

    /// One request on the line: connect, wait out what an earlier
    /// exchange may still send, send, check the reply; on failure, leave
    /// the line ready to be put back in step before the next request.
    async fn transact<E: Exchange>(
        &mut self,
        request: &E,
        limit: Duration,
    ) -> Result<E::Reply, Failed> {
        let not_sent = |error| Failed { error, sent: false };
        self.connect(limit).await.map_err(not_sent)?;
        let unit = request.unit();
        let frame = rtu_adu(request);
        let now = Instant::now();
        let wait_out = match &self.owed {
            Some((_, until)) if *until <= now => {
                self.owed = None;
                None
            }
            Some((owed, until)) if owed.as_bytes()[0] == unit && *owed != frame => {
                let until = *until;
                self.owed = None;
                Some(until)
            }
            _ => None,
        };
        let settle = self.settle.take();
        if let Some(until) = wait_out {
            let silence = settle.unwrap_or(self.frame_gap() + SETTLE_MARGIN);
            self.settle_line(silence, until, limit)
                .await
                .map_err(not_sent)?;
        } else if let Some(silence) = settle {
            self.settle_line(silence, now, limit)
                .await
                .map_err(not_sent)?;
        }
        let serial = matches!(self.endpoint, Endpoint::Serial(_));
        if let (true, Some(quiet)) = (serial, self.quiet_from) {
            sleep_until(quiet + self.frame_gap()).await;
        }
        self.transaction = self.transaction.wrapping_add(1);
        let transaction = self.transaction;
        let gap = self.frame_gap();
        let deadline = Instant::now() + limit;
        let mut sent = false;
        let outcome = match self.wire.as_mut() {
            None => Err(Failure::Io("not connected".into())),
            Some(wire) => exchange(wire, request, transaction, deadline, gap, &mut sent).await,
        };
        if serial {
            self.quiet_from = Some(Instant::now());
        }
        let failure = match outcome {
            Ok(reply) => return Ok(reply),
            Err(failure) => failure,
        };
        tracing::debug!(link = %self.endpoint, ?request, ?failure, "request failed");
        let tcp = matches!(self.endpoint, Endpoint::Tcp(_));
        let error = match failure {
            Failure::Timeout => {
                if tcp {
                    // Transaction ids would reject a late answer, but a
                    // device that missed one may be wedged: start afresh.
                    self.wire = None;
                } else {
                    // The late answer may still come (see the module docs).
                    self.settle = Some(gap + SETTLE_MARGIN);
                    self.owed = Some((frame, Instant::now() + limit));
                }
                PollError::Timeout(limit)
            }
            Failure::Io(e) => {
                self.wire = None;
                PollError::Connection(e)
            }
            Failure::Mismatch(m) => {
                // A well-framed TCP reply was read whole: the stream is in
                // step. RTU has no framing but silence, so wait for it.
                if !tcp {
                    self.settle = Some(gap + SETTLE_MARGIN);
                }
                PollError::Protocol(m.to_string())
            }
            Failure::Lost(m) => {
                self.wire = None;
                PollError::Protocol(m.to_string())
            }
        };
        Err(Failed { error, sent })
    }

    /// Flushes the line, then discards whatever arrives until `not_before`
    /// and until it has been silent for `silence`. A line that will not go
    /// quiet within a few windows fails with `Protocol` (and is settled
    /// again next time).
    async fn settle_line(
        &mut self,
        silence: Duration,
        not_before: Instant,
        limit: Duration,
    ) -> Result<(), PollError> {
        let Some(wire) = self.wire.as_mut() else {
            return Ok(());
        };
        let give_up = not_before.max(Instant::now()) + silence.max(limit) * SETTLE_ROUNDS;
        let mut discarded = match wire.discard_stray() {
            Ok(n) => n,
            Err(e) => return Err(self.settle_failed(e, silence)),
        };
        let mut scratch = [0u8; 256];
        loop {
            let quiet_until = (Instant::now() + silence).max(not_before);
            match timeout_at(quiet_until, wire.read(&mut scratch)).await {
                Err(_) => break,
                Ok(Ok(0)) => {
                    let e = Failure::Io("connection closed".into());
                    return Err(self.settle_failed(e, silence));
                }
                Ok(Ok(n)) => discarded += n,
                Ok(Err(e)) => return Err(self.settle_failed(Failure::Io(e.to_string()), silence)),
            }
            if Instant::now() >= give_up {
                self.settle = Some(silence);
                tracing::debug!(link = %self.endpoint, discarded, "line does not go quiet");
                return Err(PollError::Protocol(format!(
                    "line not quiet for {silence:?} (noise or a babbling device)"
                )));
            }
        }
        if discarded > 0 {
            tracing::debug!(link = %self.endpoint, discarded, "discarded stray bytes");
        }
        Ok(())
    }

    fn settle_failed(&mut self, failure: Failure, silence: Duration) -> PollError {
        match failure {
            Failure::Io(e) => {
                self.wire = None;
                PollError::Connection(e)
            }
            other => {
                self.settle = Some(silence);
                PollError::Protocol(format!("{other:?}"))
            }
        }
    }
}

/// One exchange on an open wire: stray bytes out, request in, reply
/// checked against the request, all before `deadline`. `sent` turns true
/// as the request starts going out: from then on a failure may leave the
/// request carried out by the device.
async fn exchange<E: Exchange>(
    wire: &mut Wire,
    request: &E,
    transaction: u16,
    deadline: Instant,
    gap: Duration,
    sent: &mut bool,
) -> Result<E::Reply, Failure> {
    let discarded = wire.discard_stray()?;
    if discarded > 0 {
        tracing::debug!(discarded, "discarded stray bytes before a request");
    }
    match wire {
        Wire::Tcp(s) => {
            *sent = true;
            send(s, tcp_adu(request, transaction).as_bytes(), deadline).await?;
            let mut header = [0u8; 7];
            read_exact_by(s, &mut header, deadline).await?;
            let len = tcp_pdu_len(&header).map_err(Failure::Lost)?;
            let mut pdu = [0u8; MAX_PDU];
            read_exact_by(s, &mut pdu[..len], deadline).await?;
            check_tcp(request, transaction, &header, &pdu[..len]).map_err(Failure::Mismatch)
        }
        Wire::RtuOverTcp(s) => {
            *sent = true;
            send(s, rtu_adu(request).as_bytes(), deadline).await?;
            // TCP segments carry no frame timing: no end-of-frame silence.
            rtu_reply(s, request, deadline, None).await
        }
        Wire::Serial(p) => {
            *sent = true;
            send(p, rtu_adu(request).as_bytes(), deadline).await?;
            rtu_reply(p, request, deadline, Some(gap)).await
        }
    }
}

async fn send<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), Failure> {
    match timeout_at(deadline, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
    {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(e)) => Err(Failure::Io(e.to_string())),
        Ok(Ok(())) => Ok(()),
    }
}

async fn read_exact_by<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(), Failure> {
    match timeout_at(deadline, stream.read_exact(buf)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Failure::Io("connection closed".into()))
        }
        Ok(Err(e)) => Err(Failure::Io(e.to_string())),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Reads one RTU reply to `request`, never past its end, checking its
/// head as soon as it arrives. With `gap`, the frame must be followed by
/// that much silence.
async fn rtu_reply<S: AsyncRead + Unpin, E: Exchange>(
    stream: &mut S,
    request: &E,
    deadline: Instant,
    gap: Option<Duration>,
) -> Result<E::Reply, Failure> {
    let mut buf = [0u8; 256];
    let mut have = 0;
    let total = loop {
        let want = match request.rtu_reply_len(&buf[..have]) {
            Err(m) => return Err(Failure::Mismatch(m)),
            Ok(Some(n)) if have >= n => break n,
            Ok(Some(n)) => n,
            // Byte by byte until the unit is known, then up to the head.
            Ok(None) if have == 0 => 1,
            Ok(None) => 3,
        };
        match timeout_at(deadline, stream.read(&mut buf[have..want])).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Ok(0)) => return Err(Failure::Io("connection closed".into())),
            Ok(Ok(n)) => have += n,
            Ok(Err(e)) => return Err(Failure::Io(e.to_string())),
        }
    };
    let answer = check_rtu(request, &buf[..total]).map_err(Failure::Mismatch)?;
    if let Some(gap) = gap {
        let mut next = [0u8; 1];
        match timeout(gap, stream.read(&mut next)).await {
            Err(_) => {}
            Ok(Ok(0)) => return Err(Failure::Io("connection closed".into())),
            Ok(Ok(_)) => return Err(Failure::Mismatch(Mismatch::Trailing)),
            Ok(Err(e)) => return Err(Failure::Io(e.to_string())),
        }
    }
    Ok(answer)
}

async fn connect_tcp(addr: &str, limit: Duration) -> Result<TcpStream, PollError> {
    let stream = timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            PollError::Connection(format!("connect to {addr}: no answer within {limit:?}"))
        })?
        .map_err(|e| PollError::Connection(format!("connect to {addr}: {e}")))?;
    // Requests are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a serial port with the bus's line settings.
pub fn open_serial(bus: &Bus) -> Result<tokio_serial::SerialStream, PollError> {
    use tokio_serial::SerialPortBuilderExt;
    let data_bits = match bus.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match bus.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = if bus.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    tokio_serial::new(&bus.port, bus.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(|e| PollError::Connection(format!("open {}: {e}", bus.port)))
}
