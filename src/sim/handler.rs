//! Answers one Modbus request for a server's devices.
//!
//! The decision table, in order:
//!
//! 1. Unit id not served by this server: on TCP, exception 0x0B (gateway
//!    target device failed to respond) — what a TCP gateway answers for a
//!    device it cannot reach, and it lets a client tell "wrong unit id"
//!    from "dead server" without waiting for a timeout. On RTU, no answer,
//!    as on a real bus. Unit 0 on RTU is a broadcast: writes go to every
//!    online device of the bus, nothing is answered.
//! 2. Device offline: no answer (the client times out).
//! 3. Device with a forced exception: that exception.
//! 4. A function the device's scenario refuses (`refuse_functions`):
//!    exception 01.
//! 5. Otherwise FC 1/2/3/4 read and FC 5/6/15/16 write the image. A
//!    request that touches an address not served answers exception 02; a
//!    quantity outside the protocol limits exception 03; any other
//!    function exception 01.
//!
//! Synchronous and allocation-light: one `Vec` per read response.

use std::future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use super::device::DeviceCell;
use super::fault::Fault;
use super::image::OutOfRange;
use crate::tag::Area;

/// Most bits one read may ask for (FC 1/2).
const MAX_READ_BITS: u16 = 2000;
/// Most registers one read may ask for (FC 3/4).
const MAX_READ_REGISTERS: u16 = 125;
/// Most coils one FC 15 may write.
const MAX_WRITE_BITS: usize = 1968;
/// Most registers one FC 16 may write.
const MAX_WRITE_REGISTERS: usize = 123;

/// What a server does with a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// Send this response.
    Response(Response),
    /// Send this exception.
    Exception(ExceptionCode),
    /// Send nothing.
    Silent,
}

/// How the server frames requests, which decides what an unknown unit gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Modbus TCP (MBAP header).
    Tcp,
    /// RTU, on a serial line or over TCP.
    Rtu,
}

/// The devices behind one server, routed by unit id.
#[derive(Debug)]
pub(crate) struct Bus {
    devices: Arc<[DeviceCell]>,
    /// Unit id → index into `devices`.
    routes: Box<[Option<usize>; 256]>,
    framing: Framing,
}

impl Bus {
    /// A bus serving the devices at `indices`.
    pub fn new(devices: Arc<[DeviceCell]>, indices: &[usize], framing: Framing) -> Bus {
        let mut routes = Box::new([None; 256]);
        for &i in indices {
            if let Some(d) = devices.get(i) {
                routes[usize::from(d.unit)] = Some(i);
            }
        }
        Bus {
            devices,
            routes,
            framing,
        }
    }

    /// Answers one request; `wall_ms` fills clock points.
    pub fn handle(&self, unit: u8, req: &Request<'_>, wall_ms: u64) -> Reply {
        let Some(cell) = self.routes[usize::from(unit)].and_then(|i| self.devices.get(i)) else {
            if self.framing == Framing::Rtu {
                if unit == 0 {
                    self.broadcast(req);
                }
                return Reply::Silent;
            }
            return Reply::Exception(ExceptionCode::GatewayTargetDevice);
        };
        if cell.is_offline() {
            return Reply::Silent;
        }
        if let Some(code) = cell.forced_exception() {
            return Reply::Exception(ExceptionCode::new(code));
        }
        if cell.read().refuses(req.function_code().value()) {
            return Reply::Exception(ExceptionCode::IllegalFunction);
        }
        match answer(cell, req, wall_ms) {
            Ok(r) => Reply::Response(r),
            Err(e) => Reply::Exception(e),
        }
    }

    /// Counts one request for `unit` and returns the fault its answer
    /// gets, if any (none for units not served).
    pub fn next_fault(&self, unit: u8) -> Option<Fault> {
        self.routes[usize::from(unit)]
            .and_then(|i| self.devices.get(i))
            .and_then(DeviceCell::next_fault)
    }

    fn broadcast(&self, req: &Request<'_>) {
        let is_write = matches!(
            req,
            Request::WriteSingleCoil(..)
                | Request::WriteMultipleCoils(..)
                | Request::WriteSingleRegister(..)
                | Request::WriteMultipleRegisters(..)
        );
        if !is_write {
            return;
        }
        for cell in self
            .routes
            .iter()
            .flatten()
            .filter_map(|&i| self.devices.get(i))
        {
            if !cell.is_offline() && !cell.read().refuses(req.function_code().value()) {
                // A broadcast gets no answer, so errors have nowhere to go.
                let _ = answer(cell, req, 0);
            }
        }
    }
}

fn out_of_range(_: OutOfRange) -> ExceptionCode {
    ExceptionCode::IllegalDataAddress
}

fn check(count: usize, max: usize) -> Result<(), ExceptionCode> {
    if (1..=max).contains(&count) {
        Ok(())
    } else {
        Err(ExceptionCode::IllegalDataValue)
    }
}

fn answer(cell: &DeviceCell, req: &Request<'_>, wall_ms: u64) -> Result<Response, ExceptionCode> {
    use Request as Q;
    let bits = |area, addr, n: u16| {
        check(usize::from(n), usize::from(MAX_READ_BITS))?;
        cell.read().read_bits(area, addr, n).map_err(out_of_range)
    };
    let regs = |area, addr, n: u16| {
        check(usize::from(n), usize::from(MAX_READ_REGISTERS))?;
        cell.read()
            .read_registers(area, addr, n, wall_ms)
            .map_err(out_of_range)
    };
    Ok(match req {
        Q::ReadCoils(a, n) => Response::ReadCoils(bits(Area::Coil, *a, *n)?),
        Q::ReadDiscreteInputs(a, n) => {
            Response::ReadDiscreteInputs(bits(Area::DiscreteInput, *a, *n)?)
        }
        Q::ReadHoldingRegisters(a, n) => {
            Response::ReadHoldingRegisters(regs(Area::HoldingRegister, *a, *n)?)
        }
        Q::ReadInputRegisters(a, n) => {
            Response::ReadInputRegisters(regs(Area::InputRegister, *a, *n)?)
        }
        Q::WriteSingleCoil(a, v) => {
            cell.write().write_coils(*a, &[*v]).map_err(out_of_range)?;
            Response::WriteSingleCoil(*a, *v)
        }
        Q::WriteMultipleCoils(a, v) => {
            check(v.len(), MAX_WRITE_BITS)?;
            cell.write().write_coils(*a, v).map_err(out_of_range)?;
            // ok: `check` bounds the length to 1968.
            Response::WriteMultipleCoils(*a, v.len() as u16)
        }
        Q::WriteSingleRegister(a, v) => {
            cell.write()
                .write_registers(*a, &[*v])
                .map_err(out_of_range)?;
            Response::WriteSingleRegister(*a, *v)
        }
        Q::WriteMultipleRegisters(a, v) => {
            check(v.len(), MAX_WRITE_REGISTERS)?;
            cell.write().write_registers(*a, v).map_err(out_of_range)?;
            // ok: `check` bounds the length to 123.
            Response::WriteMultipleRegisters(*a, v.len() as u16)
        }
        _ => return Err(ExceptionCode::IllegalFunction),
    })
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Service for Bus {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        future::ready(match self.handle(req.slave, &req.request, wall_ms()) {
            Reply::Response(r) => Ok(Some(r)),
            Reply::Exception(e) => Err(e),
            Reply::Silent => Ok(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::sim::Scenario;
    use crate::sim::device::Device;

    fn bus(framing: Framing) -> Bus {
        let text = r#"
            [[devices]]
            name = "a"
            unit = 1
            listen = "127.0.0.1:0"
            registers = 10
            points = [{ value = true, area = "coil", address = 0, type = "bool" }]
            [[devices]]
            name = "b"
            unit = 2
            listen = "127.0.0.1:0"
            registers = 10
        "#;
        let plan = match Scenario::from_toml_str(text).and_then(|s| s.plan()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let cells: Vec<DeviceCell> = plan
            .devices
            .iter()
            .map(|d| DeviceCell::new(d.name.clone(), d.unit, Device::new(d, 0)))
            .collect();
        Bus::new(cells.into(), &[0, 1], framing)
    }

    #[test]
    fn decision_table() {
        let tcp = bus(Framing::Tcp);
        let read = Request::ReadHoldingRegisters(0, 2);
        assert_eq!(
            tcp.handle(1, &read, 0),
            Reply::Response(Response::ReadHoldingRegisters(vec![0, 1]))
        );
        assert_eq!(
            tcp.handle(9, &read, 0),
            Reply::Exception(ExceptionCode::GatewayTargetDevice)
        );
        let ex = |e| Reply::Exception(e);
        assert_eq!(
            tcp.handle(1, &Request::ReadHoldingRegisters(9, 2), 0),
            ex(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            tcp.handle(1, &Request::ReadHoldingRegisters(0, 126), 0),
            ex(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            tcp.handle(1, &Request::ReadInputRegisters(0, 1), 0),
            ex(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            tcp.handle(1, &Request::ReportServerId, 0),
            ex(ExceptionCode::IllegalFunction)
        );
        assert_eq!(
            tcp.handle(1, &Request::ReadCoils(0, 1), 0),
            Reply::Response(Response::ReadCoils(vec![true]))
        );
        tcp.devices[0].set_exception(Some(4));
        assert_eq!(
            tcp.handle(1, &read, 0),
            ex(ExceptionCode::ServerDeviceFailure)
        );
        tcp.devices[0].set_offline(true);
        assert_eq!(tcp.handle(1, &read, 0), Reply::Silent);
        assert!(matches!(tcp.handle(2, &read, 0), Reply::Response(_)));

        let rtu = bus(Framing::Rtu);
        assert_eq!(rtu.handle(9, &read, 0), Reply::Silent);
    }

    #[test]
    fn writes_and_broadcast() {
        let rtu = bus(Framing::Rtu);
        let w = Request::WriteMultipleRegisters(3, Cow::Owned(vec![42, 43]));
        assert_eq!(
            rtu.handle(1, &w, 0),
            Reply::Response(Response::WriteMultipleRegisters(3, 2))
        );
        assert_eq!(
            rtu.handle(0, &Request::WriteSingleRegister(5, 7), 0),
            Reply::Silent
        );
        for unit in [1, 2] {
            let r = rtu.handle(unit, &Request::ReadHoldingRegisters(5, 1), 0);
            assert_eq!(r, Reply::Response(Response::ReadHoldingRegisters(vec![7])));
        }
        assert_eq!(
            rtu.handle(1, &Request::WriteSingleRegister(10, 1), 0),
            Reply::Exception(ExceptionCode::IllegalDataAddress)
        );
    }

    #[test]
    fn refused_functions_get_exception_01() {
        let text = r#"
            [[devices]]
            name = "fc16_only"
            unit = 1
            listen = "127.0.0.1:0"
            registers = 10
            refuse_functions = [6]
        "#;
        let plan = match Scenario::from_toml_str(text).and_then(|s| s.plan()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let d = &plan.devices[0];
        let cells: Vec<DeviceCell> =
            vec![DeviceCell::new(d.name.clone(), d.unit, Device::new(d, 0))];
        let bus = Bus::new(cells.into(), &[0], Framing::Tcp);
        assert_eq!(
            bus.handle(1, &Request::WriteSingleRegister(3, 7), 0),
            Reply::Exception(ExceptionCode::IllegalFunction)
        );
        let w = Request::WriteMultipleRegisters(3, Cow::Owned(vec![7]));
        assert_eq!(
            bus.handle(1, &w, 0),
            Reply::Response(Response::WriteMultipleRegisters(3, 1))
        );
        assert!(Scenario::from_toml_str(&text.replace("[6]", "[0]")).is_err());
    }
}
