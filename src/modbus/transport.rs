//! Opens and uses one Modbus connection: a TCP socket, a serial port, or
//! RTU framing on a TCP socket.
//!
//! # The trap this file exists for
//!
//! tokio-modbus has no request timeout, and after a timeout or transport
//! error its context is out of step with the wire: over TCP the next call
//! fails on a transaction-id mismatch, over RTU it can silently return the
//! *previous* request's data. So every call here is wrapped in a timeout,
//! and any error other than a clean Modbus exception drops the context;
//! the next request reconnects (or reopens the port). A response whose
//! length does not match the request is rejected the same way.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{Slave, SlaveContext};

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

/// One connection, opened on demand and dropped on any doubt.
pub struct Link {
    endpoint: Endpoint,
    context: Option<Context>,
    /// Serial only: when the line last carried a frame, for the
    /// inter-frame silence the RTU standard requires.
    quiet_from: Option<Instant>,
}

impl Link {
    /// A link that connects on first use.
    pub fn new(endpoint: Endpoint) -> Link {
        Link {
            endpoint,
            context: None,
            quiet_from: None,
        }
    }

    /// Where it goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// True while a context is open.
    pub fn is_connected(&self) -> bool {
        self.context.is_some()
    }

    /// Drops the connection; the next request opens a new one.
    pub fn disconnect(&mut self) {
        self.context = None;
    }

    /// Opens the connection if it is not open.
    pub async fn connect(&mut self, limit: Duration) -> Result<(), PollError> {
        if self.context.is_some() {
            return Ok(());
        }
        let context = match &self.endpoint {
            Endpoint::Tcp(addr) => {
                let stream = connect_tcp(addr, limit).await?;
                tokio_modbus::client::tcp::attach_slave(stream, Slave(1))
            }
            Endpoint::RtuOverTcp(addr) => {
                let stream = connect_tcp(addr, limit).await?;
                tokio_modbus::client::rtu::attach_slave(stream, Slave(1))
            }
            Endpoint::Serial(bus) => {
                let port = open_serial(bus)?;
                tokio_modbus::client::rtu::attach_slave(port, Slave(1))
            }
        };
        self.context = Some(context);
        Ok(())
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
        self.connect(limit).await?;
        if let (Endpoint::Serial(bus), Some(quiet)) = (&self.endpoint, self.quiet_from) {
            sleep_until(quiet + bus.frame_gap()).await;
        }
        let Some(context) = self.context.as_mut() else {
            return Err(PollError::Connection("not connected".into()));
        };
        context.set_slave(Slave(unit));
        let call = async {
            match area {
                Area::Coil => context
                    .read_coils(start, count)
                    .await
                    .map(|r| r.map(Block::Bits)),
                Area::DiscreteInput => context
                    .read_discrete_inputs(start, count)
                    .await
                    .map(|r| r.map(Block::Bits)),
                Area::HoldingRegister => context
                    .read_holding_registers(start, count)
                    .await
                    .map(|r| r.map(Block::Registers)),
                Area::InputRegister => context
                    .read_input_registers(start, count)
                    .await
                    .map(|r| r.map(Block::Registers)),
            }
        };
        let outcome = timeout(limit, call).await;
        if matches!(self.endpoint, Endpoint::Serial(_)) {
            self.quiet_from = Some(Instant::now());
        }
        let result = match outcome {
            Err(_) => Err(PollError::Timeout(limit)),
            Ok(Err(tokio_modbus::Error::Transport(e))) => Err(PollError::Connection(e.to_string())),
            Ok(Err(tokio_modbus::Error::Protocol(e))) => Err(PollError::Protocol(e.to_string())),
            Ok(Ok(Err(exception))) => return Err(PollError::Exception(u8::from(exception))),
            Ok(Ok(Ok(block))) => {
                let got = match &block {
                    Block::Registers(r) => r.len(),
                    Block::Bits(b) => b.len(),
                };
                if got == usize::from(count) {
                    return Ok(block);
                }
                Err(PollError::Protocol(format!(
                    "asked for {count} {}, got {got}",
                    if area.is_bit() { "bits" } else { "registers" }
                )))
            }
        };
        // Anything but a clean answer or exception: the context may be out
        // of step with the wire, so it is dropped (see the module docs).
        self.context = None;
        result
    }
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
