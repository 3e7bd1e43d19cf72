//! The client's exchanges on the wire, pure: read requests (FC1–FC4) and
//! write requests (FC5, FC6, FC15, FC16) out, replies checked against
//! their request in full.
//!
//! # Why the client owns these bytes
//!
//! A reply that is well formed but answers a *different* request (a late
//! answer to an earlier read of the same shape, an answer from another
//! unit) carries plausible values, and nothing later could tell them
//! apart from the right ones. So a reply is accepted only when every
//! field matches what was asked: transaction id and protocol id (TCP),
//! unit, function code, byte count for the quantity asked, and the CRC
//! (RTU). Anything else is a [`Mismatch`], and the transport clears the
//! line before its next request.
//!
//! RTU has no length field: the length of a reply follows from its first
//! bytes ([`ReadRequest::rtu_reply_len`]: three for a read, two for a
//! write, whose normal reply is always eight bytes), and those bytes are
//! checked as soon as they arrive, so a wrong answer is rejected without
//! waiting for the timeout.
//!
//! # Writes
//!
//! A write's normal reply echoes the request: the address and the value
//! (FC5, FC6) or the address and the quantity (FC15, FC16). Each echo is
//! checked like a read's byte count: a reply to another write of the same
//! unit must not pass for this one's. A [`WriteRequest`] is checked when
//! it is built: 1–123 registers, 1–1968 coils, not past address 65535.
//!
//! Both kinds implement [`Exchange`], which is all the transport needs to
//! frame a request and check its reply, so reads and writes share one
//! line discipline.

use crate::tag::Area;

/// Longest Modbus PDU (function code and data), from the 256-byte RTU frame.
pub const MAX_PDU: usize = 253;

/// Longest request frame: a Modbus TCP header (7 bytes) and the longest PDU.
pub const MAX_ADU: usize = 7 + MAX_PDU;

/// Most registers one FC16 may write (the PDU's limit).
pub const MAX_WRITE_REGISTERS: usize = crate::config::MAX_WRITE_REGISTERS as usize;

/// Most coils one FC15 may write (the PDU's limit).
pub const MAX_WRITE_COILS: usize = 1968;

/// CRC-16/MODBUS (reflected polynomial 0xA001, initial value 0xFFFF),
/// sent low byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// One read request: what a reply must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// Unit id (slave address).
    pub unit: u8,
    /// Area read; fixes the function code.
    pub area: Area,
    /// First register (or bit).
    pub start: u16,
    /// Registers (or bits) asked for.
    pub count: u16,
}

/// Why a reply was refused. Every case means the line may hold bytes of
/// another exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The reply came from another unit than the one asked.
    #[error("reply from unit {got}, asked unit {asked}")]
    Unit {
        /// Unit asked.
        asked: u8,
        /// Unit in the reply.
        got: u8,
    },
    /// The reply's function code is neither the request's nor its exception.
    #[error("reply with function code {got:#04x}, asked {asked:#04x}")]
    Function {
        /// Function code asked.
        asked: u8,
        /// Function code in the reply.
        got: u8,
    },
    /// The byte count does not fit the quantity asked.
    #[error("reply with {got} data bytes, expected {expected}")]
    ByteCount {
        /// Bytes the quantity asked for needs.
        expected: usize,
        /// Bytes the reply announced or carried.
        got: usize,
    },
    /// TCP: the reply answers another transaction.
    #[error("reply to transaction {got}, expected {expected}")]
    Transaction {
        /// Our transaction id.
        expected: u16,
        /// The reply's.
        got: u16,
    },
    /// TCP: a protocol id other than 0, or an impossible MBAP length.
    #[error("bad MBAP header (protocol {protocol}, length {length})")]
    Header {
        /// Protocol id in the header.
        protocol: u16,
        /// Length field in the header.
        length: u16,
    },
    /// A write's reply echoes another address, value or quantity than
    /// the request's.
    #[error("reply echoes {what} {got:#06x}, asked {asked:#06x}")]
    Echo {
        /// `address`, `value` or `quantity`.
        what: &'static str,
        /// What the request carried.
        asked: u16,
        /// What the reply echoed.
        got: u16,
    },
    /// RTU: the CRC does not match.
    #[error("CRC mismatch")]
    Crc,
    /// More bytes than one reply.
    #[error("trailing bytes after the reply")]
    Trailing,
}

/// What a reply that matched its request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Registers (FC3/FC4), `count` of them.
    Registers(Vec<u16>),
    /// Bits (FC1/FC2), `count` of them.
    Bits(Vec<bool>),
    /// A Modbus exception with this code.
    Exception(u8),
}

impl ReadRequest {
    /// The function code.
    pub fn function(&self) -> u8 {
        self.area.read_function()
    }

    /// Data bytes a normal reply carries.
    pub fn data_len(&self) -> usize {
        if self.area.is_bit() {
            usize::from(self.count).div_ceil(8)
        } else {
            usize::from(self.count) * 2
        }
    }

    /// The request PDU: function code, start, quantity.
    pub fn pdu(&self) -> [u8; 5] {
        let [s0, s1] = self.start.to_be_bytes();
        let [c0, c1] = self.count.to_be_bytes();
        [self.function(), s0, s1, c0, c1]
    }

    /// The RTU request frame: unit, PDU, CRC.
    pub fn rtu_frame(&self) -> [u8; 8] {
        let mut f = [0u8; 8];
        f[0] = self.unit;
        f[1..6].copy_from_slice(&self.pdu());
        let crc = crc16(&f[..6]).to_le_bytes();
        f[6..].copy_from_slice(&crc);
        f
    }

    /// The Modbus TCP request: MBAP header with `transaction`, then the PDU.
    pub fn tcp_frame(&self, transaction: u16) -> [u8; 12] {
        let mut f = [0u8; 12];
        f[..2].copy_from_slice(&transaction.to_be_bytes());
        // Protocol id 0; length counts the unit id and the 5-byte PDU.
        f[4..6].copy_from_slice(&6u16.to_be_bytes());
        f[6] = self.unit;
        f[7..].copy_from_slice(&self.pdu());
        f
    }

    /// Checks a reply PDU (function code first) against this request.
    pub fn check_pdu(&self, pdu: &[u8]) -> Result<Answer, Mismatch> {
        let asked = self.function();
        let Some(&function) = pdu.first() else {
            return Err(Mismatch::ByteCount {
                expected: self.data_len(),
                got: 0,
            });
        };
        if function == asked | 0x80 {
            return match pdu {
                [_, code] => Ok(Answer::Exception(*code)),
                _ => Err(Mismatch::ByteCount {
                    expected: 1,
                    got: pdu.len() - 1,
                }),
            };
        }
        if function != asked {
            return Err(Mismatch::Function {
                asked,
                got: function,
            });
        }
        let expected = self.data_len();
        let announced = pdu.get(1).map(|&n| usize::from(n));
        let data = pdu.get(2..).unwrap_or_default();
        if announced != Some(expected) || data.len() != expected {
            return Err(Mismatch::ByteCount {
                expected,
                got: announced.unwrap_or(0),
            });
        }
        let count = usize::from(self.count);
        Ok(if self.area.is_bit() {
            Answer::Bits(
                (0..count)
                    .map(|i| data[i / 8] & (1 << (i % 8)) != 0)
                    .collect(),
            )
        } else {
            Answer::Registers(
                data.chunks_exact(2)
                    .map(|w| u16::from_be_bytes([w[0], w[1]]))
                    .collect(),
            )
        })
    }

    /// RTU: the whole reply's length (CRC included), once its first three
    /// bytes are known; refuses at once a head that cannot answer this
    /// request. `Ok(None)`: fewer than three bytes yet.
    pub fn rtu_reply_len(&self, head: &[u8]) -> Result<Option<usize>, Mismatch> {
        let (Some(&unit), Some(&function), Some(&third)) = (head.first(), head.get(1), head.get(2))
        else {
            // The unit is checked as soon as it arrives.
            if let Some(&unit) = head.first() {
                self.check_unit(unit)?;
            }
            return Ok(None);
        };
        self.check_unit(unit)?;
        let asked = self.function();
        if function == asked | 0x80 {
            return Ok(Some(5));
        }
        if function != asked {
            return Err(Mismatch::Function {
                asked,
                got: function,
            });
        }
        let expected = self.data_len();
        if usize::from(third) != expected {
            return Err(Mismatch::ByteCount {
                expected,
                got: usize::from(third),
            });
        }
        Ok(Some(3 + expected + 2))
    }

    /// RTU: checks a whole reply frame (as long as [`Self::rtu_reply_len`] said).
    pub fn check_rtu(&self, frame: &[u8]) -> Result<Answer, Mismatch> {
        check_rtu(self, frame)
    }

    /// TCP: the PDU length (unit id excluded) a reply header announces,
    /// after checking the header against this request's `transaction`.
    /// A wrong transaction id is reported only after the frame was read
    /// ([`Self::check_tcp`]), so the stream stays in step.
    pub fn tcp_pdu_len(header: &[u8; 7]) -> Result<usize, Mismatch> {
        tcp_pdu_len(header)
    }

    /// TCP: checks a whole reply (header and PDU) against this request.
    pub fn check_tcp(
        &self,
        transaction: u16,
        header: &[u8; 7],
        pdu: &[u8],
    ) -> Result<Answer, Mismatch> {
        check_tcp(self, transaction, header, pdu)
    }

    fn check_unit(&self, got: u8) -> Result<(), Mismatch> {
        check_unit(self.unit, got)
    }
}

impl Exchange for ReadRequest {
    type Reply = Answer;

    fn unit(&self) -> u8 {
        self.unit
    }

    fn pdu_into(&self, out: &mut [u8; MAX_PDU]) -> usize {
        let pdu = self.pdu();
        out[..pdu.len()].copy_from_slice(&pdu);
        pdu.len()
    }

    fn check_pdu(&self, pdu: &[u8]) -> Result<Answer, Mismatch> {
        ReadRequest::check_pdu(self, pdu)
    }

    fn rtu_reply_len(&self, head: &[u8]) -> Result<Option<usize>, Mismatch> {
        ReadRequest::rtu_reply_len(self, head)
    }
}

/// A request the transport can exchange: its PDU, and the checks its
/// reply must pass. Framing (MBAP header, CRC) and the checks common to
/// every request (transaction, unit, CRC) are the same for all kinds and
/// live in the free functions of this module.
pub trait Exchange: std::fmt::Debug {
    /// What a reply that matched says.
    type Reply;

    /// Unit id (slave address) asked.
    fn unit(&self) -> u8;

    /// Writes the request PDU (function code first) into `out`; its length.
    fn pdu_into(&self, out: &mut [u8; MAX_PDU]) -> usize;

    /// Checks a reply PDU (function code first) against this request.
    fn check_pdu(&self, pdu: &[u8]) -> Result<Self::Reply, Mismatch>;

    /// RTU: the whole reply's length (CRC included), once enough of its
    /// head is known; refuses at once a head that cannot answer this
    /// request. `Ok(None)`: not enough bytes yet.
    fn rtu_reply_len(&self, head: &[u8]) -> Result<Option<usize>, Mismatch>;
}

/// A request frame, built on the stack.
#[derive(Clone, Copy)]
pub struct Adu {
    bytes: [u8; MAX_ADU],
    len: usize,
}

impl Adu {
    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl PartialEq for Adu {
    fn eq(&self, other: &Adu) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Adu {}

impl std::fmt::Debug for Adu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Adu({:02x?})", self.as_bytes())
    }
}

/// The RTU request frame of `request`: unit, PDU, CRC (low byte first).
pub fn rtu_adu(request: &impl Exchange) -> Adu {
    let mut pdu = [0u8; MAX_PDU];
    let n = request.pdu_into(&mut pdu);
    let mut bytes = [0u8; MAX_ADU];
    bytes[0] = request.unit();
    bytes[1..1 + n].copy_from_slice(&pdu[..n]);
    let crc = crc16(&bytes[..1 + n]).to_le_bytes();
    bytes[1 + n..3 + n].copy_from_slice(&crc);
    Adu { bytes, len: 3 + n }
}

/// The Modbus TCP request of `request`: MBAP header with `transaction`,
/// then the PDU.
pub fn tcp_adu(request: &impl Exchange, transaction: u16) -> Adu {
    let mut pdu = [0u8; MAX_PDU];
    let n = request.pdu_into(&mut pdu);
    let mut bytes = [0u8; MAX_ADU];
    bytes[..2].copy_from_slice(&transaction.to_be_bytes());
    // Protocol id 0; the length counts the unit id and the PDU (at most
    // 254, so the cast cannot truncate).
    bytes[4..6].copy_from_slice(&(1 + n as u16).to_be_bytes());
    bytes[6] = request.unit();
    bytes[7..7 + n].copy_from_slice(&pdu[..n]);
    Adu { bytes, len: 7 + n }
}

/// RTU: checks a whole reply frame to `request` (as long as its
/// `rtu_reply_len` said): CRC, unit, then the PDU.
pub fn check_rtu<E: Exchange>(request: &E, frame: &[u8]) -> Result<E::Reply, Mismatch> {
    if frame.len() < 4 {
        return Err(Mismatch::Crc);
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
        return Err(Mismatch::Crc);
    }
    check_unit(request.unit(), body[0])?;
    request.check_pdu(&body[1..])
}

/// TCP: the PDU length (unit id excluded) a reply header announces, after
/// checking its protocol id and length. A wrong transaction id is
/// reported only after the frame was read ([`check_tcp`]), so the stream
/// stays in step.
pub fn tcp_pdu_len(header: &[u8; 7]) -> Result<usize, Mismatch> {
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    let length = u16::from_be_bytes([header[4], header[5]]);
    // The length counts the unit id and a PDU of 2..=253 bytes.
    if protocol != 0 || !(3..=1 + MAX_PDU as u16).contains(&length) {
        return Err(Mismatch::Header { protocol, length });
    }
    Ok(usize::from(length) - 1)
}

/// TCP: checks a whole reply (header and PDU) to `request`, sent as
/// `transaction`.
pub fn check_tcp<E: Exchange>(
    request: &E,
    transaction: u16,
    header: &[u8; 7],
    pdu: &[u8],
) -> Result<E::Reply, Mismatch> {
    let got = u16::from_be_bytes([header[0], header[1]]);
    if got != transaction {
        return Err(Mismatch::Transaction {
            expected: transaction,
            got,
        });
    }
    check_unit(request.unit(), header[6])?;
    request.check_pdu(pdu)
}

fn check_unit(asked: u8, got: u8) -> Result<(), Mismatch> {
    if got == asked {
        Ok(())
    } else {
        Err(Mismatch::Unit { asked, got })
    }
}

/// What a write sets, which fixes its function code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteData {
    /// FC5: one coil, on (sent as 0xFF00) or off (0x0000).
    Coil(bool),
    /// FC6: one holding register.
    Register(u16),
    /// FC15: coils from the address on.
    Coils(Vec<bool>),
    /// FC16: holding registers from the address on.
    Registers(Vec<u16>),
}

impl WriteData {
    /// The function code.
    pub fn function(&self) -> u8 {
        match self {
            WriteData::Coil(_) => 5,
            WriteData::Register(_) => 6,
            WriteData::Coils(_) => 15,
            WriteData::Registers(_) => 16,
        }
    }

    /// Coils or registers written.
    pub fn quantity(&self) -> usize {
        match self {
            WriteData::Coil(_) | WriteData::Register(_) => 1,
            WriteData::Coils(c) => c.len(),
            WriteData::Registers(r) => r.len(),
        }
    }
}

/// Why a write request cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadWrite {
    /// No coil or register, or more than one request carries.
    #[error("{got} {what} in one write (1 to {most})")]
    Quantity {
        /// `coils` or `registers`.
        what: &'static str,
        /// How many were given.
        got: usize,
        /// The protocol's limit.
        most: usize,
    },
    /// The write would run past address 65535.
    #[error("{count} from address {address} run past address 65535")]
    PastEnd {
        /// First address.
        address: u16,
        /// How many.
        count: usize,
    },
}

/// One write request: what its reply must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    unit: u8,
    address: u16,
    data: WriteData,
}

/// What a reply to a write that matched says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAnswer {
    /// The device echoed the request: it took the write.
    Done,
    /// A Modbus exception with this code: nothing was written.
    Exception(u8),
}

impl WriteRequest {
    /// A write of `data` from `address` on unit `unit`, refused when its
    /// quantity is outside the protocol's limits or it runs past 65535.
    pub fn new(unit: u8, address: u16, data: WriteData) -> Result<WriteRequest, BadWrite> {
        let (what, most) = match data {
            WriteData::Coil(_) | WriteData::Coils(_) => ("coils", MAX_WRITE_COILS),
            WriteData::Register(_) | WriteData::Registers(_) => ("registers", MAX_WRITE_REGISTERS),
        };
        let got = data.quantity();
        if !(1..=most).contains(&got) {
            return Err(BadWrite::Quantity { what, got, most });
        }
        if usize::from(address) + got > 1 << 16 {
            return Err(BadWrite::PastEnd {
                address,
                count: got,
            });
        }
        Ok(WriteRequest {
            unit,
            address,
            data,
        })
    }

    /// Unit id asked.
    pub fn unit(&self) -> u8 {
        self.unit
    }

    /// First coil or register.
    pub fn address(&self) -> u16 {
        self.address
    }

    /// What is written.
    pub fn data(&self) -> &WriteData {
        &self.data
    }

    /// The function code.
    pub fn function(&self) -> u8 {
        self.data.function()
    }

    /// The second field a normal reply echoes: the value (FC5, FC6) or
    /// the quantity (FC15, FC16).
    fn echoed(&self) -> (&'static str, u16) {
        match &self.data {
            WriteData::Coil(on) => ("value", if *on { 0xFF00 } else { 0x0000 }),
            WriteData::Register(v) => ("value", *v),
            // ok: `new` bounds the quantity to 1968.
            other => ("quantity", other.quantity() as u16),
        }
    }

    /// RTU: the whole reply's length (CRC included) once its first two
    /// bytes are known: 8 for the echo, 5 for an exception. Refuses at
    /// once a head from another unit or with another function code.
    pub fn rtu_reply_len(&self, head: &[u8]) -> Result<Option<usize>, Mismatch> {
        let Some(&unit) = head.first() else {
            return Ok(None);
        };
        check_unit(self.unit, unit)?;
        let Some(&function) = head.get(1) else {
            return Ok(None);
        };
        let asked = self.function();
        if function == asked | 0x80 {
            Ok(Some(5))
        } else if function == asked {
            Ok(Some(8))
        } else {
            Err(Mismatch::Function {
                asked,
                got: function,
            })
        }
    }

    /// Checks a reply PDU (function code first): the exception, or the
    /// echo of the address and of the value or quantity.
    pub fn check_pdu(&self, pdu: &[u8]) -> Result<WriteAnswer, Mismatch> {
        let asked = self.function();
        let Some(&function) = pdu.first() else {
            return Err(Mismatch::ByteCount {
                expected: 4,
                got: 0,
            });
        };
        if function == asked | 0x80 {
            return match pdu {
                [_, code] => Ok(WriteAnswer::Exception(*code)),
                _ => Err(Mismatch::ByteCount {
                    expected: 1,
                    got: pdu.len() - 1,
                }),
            };
        }
        if function != asked {
            return Err(Mismatch::Function {
                asked,
                got: function,
            });
        }
        let [_, a0, a1, v0, v1] = pdu else {
            return Err(Mismatch::ByteCount {
                expected: 4,
                got: pdu.len() - 1,
            });
        };
        let address = u16::from_be_bytes([*a0, *a1]);
        if address != self.address {
            return Err(Mismatch::Echo {
                what: "address",
                asked: self.address,
                got: address,
            });
        }
        let (what, asked) = self.echoed();
        let got = u16::from_be_bytes([*v0, *v1]);
        if got != asked {
            return Err(Mismatch::Echo { what, asked, got });
        }
        Ok(WriteAnswer::Done)
    }

    /// RTU: checks a whole reply frame (as long as [`Self::rtu_reply_len`] said).
    pub fn check_rtu(&self, frame: &[u8]) -> Result<WriteAnswer, Mismatch> {
        check_rtu(self, frame)
    }

    /// TCP: checks a whole reply (header and PDU) against this request.
    pub fn check_tcp(
        &self,
        transaction: u16,
        header: &[u8; 7],
        pdu: &[u8],
    ) -> Result<WriteAnswer, Mismatch> {
        check_tcp(self, transaction, header, pdu)
    }
}

impl Exchange for WriteRequest {
    type Reply = WriteAnswer;

    fn unit(&self) -> u8 {
        self.unit
    }

    fn pdu_into(&self, out: &mut [u8; MAX_PDU]) -> usize {
        out[0] = self.function();
        out[1..3].copy_from_slice(&self.address.to_be_bytes());
        match &self.data {
            WriteData::Coil(_) | WriteData::Register(_) => {
                out[3..5].copy_from_slice(&self.echoed().1.to_be_bytes());
                5
            }
            WriteData::Coils(bits) => {
                let bytes = bits.len().div_ceil(8);
                // ok: `new` bounds the quantity to 1968 coils, 246 bytes.
                out[3..5].copy_from_slice(&(bits.len() as u16).to_be_bytes());
                out[5] = bytes as u8;
                let packed = &mut out[6..6 + bytes];
                packed.fill(0);
                for (i, _) in bits.iter().enumerate().filter(|(_, on)| **on) {
                    packed[i / 8] |= 1 << (i % 8);
                }
                6 + bytes
            }
            WriteData::Registers(words) => {
                // ok: `new` bounds the quantity to 123 registers, 246 bytes.
                out[3..5].copy_from_slice(&(words.len() as u16).to_be_bytes());
                out[5] = (words.len() * 2) as u8;
                for (i, w) in words.iter().enumerate() {
                    out[6 + 2 * i..8 + 2 * i].copy_from_slice(&w.to_be_bytes());
                }
                6 + words.len() * 2
            }
        }
    }

    fn check_pdu(&self, pdu: &[u8]) -> Result<WriteAnswer, Mismatch> {
        WriteRequest::check_pdu(self, pdu)
    }

    fn rtu_reply_len(&self, head: &[u8]) -> Result<Option<usize>, Mismatch> {
        WriteRequest::rtu_reply_len(self, head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hr(unit: u8, start: u16, count: u16) -> ReadRequest {
        ReadRequest {
            unit,
            area: Area::HoldingRegister,
            start,
            count,
        }
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc16(body).to_le_bytes());
        f
    }

    #[test]
    fn request_frames() {
        assert_eq!(
            hr(1, 0, 1).rtu_frame(),
            [1, 3, 0, 0, 0, 1, 0x84, 0x0A],
            "the standard's example frame"
        );
        assert_eq!(
            hr(7, 0x0102, 2).tcp_frame(0xABCD),
            [0xAB, 0xCD, 0, 0, 0, 6, 7, 3, 1, 2, 0, 2]
        );
    }

    #[test]
    fn a_matching_rtu_reply_is_accepted() {
        let r = hr(1, 0, 2);
        let f = framed(&[1, 3, 4, 0x3F, 0x80, 0, 0]);
        assert_eq!(r.rtu_reply_len(&f[..3]), Ok(Some(9)));
        assert_eq!(r.check_rtu(&f), Ok(Answer::Registers(vec![0x3F80, 0x0000])));
        let ex = framed(&[1, 0x83, 2]);
        assert_eq!(r.rtu_reply_len(&ex[..3]), Ok(Some(5)));
        assert_eq!(r.check_rtu(&ex), Ok(Answer::Exception(2)));
        let coils = ReadRequest {
            area: Area::Coil,
            count: 10,
            ..r
        };
        let f = framed(&[1, 1, 2, 0b101, 0b10]);
        assert_eq!(coils.rtu_reply_len(&f), Ok(Some(7)));
        let Ok(Answer::Bits(bits)) = coils.check_rtu(&f) else {
            panic!("{:?}", coils.check_rtu(&f));
        };
        assert_eq!(bits.len(), 10);
        assert!(bits[0] && bits[2] && bits[9] && !bits[1]);
    }

    #[test]
    fn every_field_of_an_rtu_reply_is_checked() {
        let r = hr(1, 0, 2);
        assert_eq!(
            r.rtu_reply_len(&[2]),
            Err(Mismatch::Unit { asked: 1, got: 2 })
        );
        assert_eq!(
            r.rtu_reply_len(&[1, 4, 4]),
            Err(Mismatch::Function { asked: 3, got: 4 })
        );
        assert_eq!(
            r.rtu_reply_len(&[1, 3, 255]),
            Err(Mismatch::ByteCount {
                expected: 4,
                got: 255
            })
        );
        assert_eq!(
            r.rtu_reply_len(&[1, 3, 2]),
            Err(Mismatch::ByteCount {
                expected: 4,
                got: 2
            })
        );
        let mut f = framed(&[1, 3, 4, 0, 1, 0, 2]);
        f[4] ^= 0x10;
        assert_eq!(r.check_rtu(&f), Err(Mismatch::Crc));
        assert_eq!(r.check_rtu(&[1, 3]), Err(Mismatch::Crc));
        // An exception frame with a data byte too many.
        assert!(r.check_rtu(&framed(&[1, 0x83, 2, 0])).is_err());
    }

    #[test]
    fn every_field_of_a_tcp_reply_is_checked() {
        let r = hr(1, 0, 1);
        let header = |tid: u16, protocol: u16, len: u16, unit: u8| {
            let [t0, t1] = tid.to_be_bytes();
            let [p0, p1] = protocol.to_be_bytes();
            let [l0, l1] = len.to_be_bytes();
            [t0, t1, p0, p1, l0, l1, unit]
        };
        let pdu = [3, 2, 0x12, 0x34];
        let h = header(9, 0, 5, 1);
        assert_eq!(ReadRequest::tcp_pdu_len(&h), Ok(4));
        assert_eq!(
            r.check_tcp(9, &h, &pdu),
            Ok(Answer::Registers(vec![0x1234]))
        );
        assert_eq!(
            r.check_tcp(8, &h, &pdu),
            Err(Mismatch::Transaction {
                expected: 8,
                got: 9
            })
        );
        assert!(r.check_tcp(9, &header(9, 0, 5, 2), &pdu).is_err());
        assert!(ReadRequest::tcp_pdu_len(&header(9, 0, 65535, 1)).is_err());
        assert!(ReadRequest::tcp_pdu_len(&header(9, 1, 5, 1)).is_err());
        assert!(ReadRequest::tcp_pdu_len(&header(9, 0, 2, 1)).is_err());
        assert!(r.check_pdu(&[3, 255, 0x12, 0x34]).is_err());
        assert!(r.check_pdu(&[3, 2, 0x12]).is_err());
        assert!(r.check_pdu(&[4, 2, 0x12, 0x34]).is_err());
        assert!(r.check_pdu(&[]).is_err());
        assert_eq!(r.check_pdu(&[0x83, 6]), Ok(Answer::Exception(6)));
    }

    #[test]
    fn no_reply_bytes_panic() {
        // Every short prefix of arbitrary bytes is answered, never a panic.
        let r = hr(1, 0, 3);
        let bytes: Vec<u8> = (0..=255u8).collect();
        for len in 0..12 {
            for start in 0..200 {
                let b = &bytes[start..start + len];
                let _ = r.rtu_reply_len(b);
                let _ = r.check_rtu(b);
                let _ = r.check_pdu(b);
            }
        }
    }

    fn write(unit: u8, address: u16, data: WriteData) -> WriteRequest {
        match WriteRequest::new(unit, address, data) {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn read_frames_are_the_same_through_exchange() {
        for r in [
            hr(1, 0, 1),
            hr(247, 0xFFFE, 125),
            ReadRequest {
                unit: 3,
                area: Area::Coil,
                start: 17,
                count: 2000,
            },
            ReadRequest {
                unit: 9,
                area: Area::InputRegister,
                start: 4,
                count: 2,
            },
        ] {
            assert_eq!(rtu_adu(&r).as_bytes(), r.rtu_frame());
            assert_eq!(tcp_adu(&r, 0x1234).as_bytes(), r.tcp_frame(0x1234));
        }
    }

    #[test]
    fn write_request_frames() {
        // The protocol's reference examples, unit 0x11.
        let frame = |d| rtu_adu(&write(0x11, 0, d)).as_bytes().to_vec();
        let at = |a, d| rtu_adu(&write(0x11, a, d)).as_bytes().to_vec();
        assert_eq!(
            at(0xAC, WriteData::Coil(true)),
            [0x11, 5, 0, 0xAC, 0xFF, 0, 0x4E, 0x8B]
        );
        assert_eq!(
            at(1, WriteData::Register(3)),
            [0x11, 6, 0, 1, 0, 3, 0x9A, 0x9B]
        );
        let coils = [
            true, false, true, true, false, false, true, true, true, false,
        ];
        assert_eq!(
            at(0x13, WriteData::Coils(coils.to_vec())),
            [0x11, 0x0F, 0, 0x13, 0, 0x0A, 2, 0xCD, 0x01, 0xBF, 0x0B]
        );
        assert_eq!(
            at(1, WriteData::Registers(vec![0x000A, 0x0102])),
            [0x11, 0x10, 0, 1, 0, 2, 4, 0, 0x0A, 1, 2, 0xC6, 0xF0]
        );
        assert_eq!(frame(WriteData::Coil(false))[4..6], [0, 0]);
        assert_eq!(
            tcp_adu(&write(7, 0x0102, WriteData::Register(0xBEEF)), 0xABCD).as_bytes(),
            [0xAB, 0xCD, 0, 0, 0, 6, 7, 6, 1, 2, 0xBE, 0xEF]
        );
        let long = write(
            1,
            0,
            WriteData::Registers(vec![0x0102; MAX_WRITE_REGISTERS]),
        );
        let adu = tcp_adu(&long, 1);
        assert_eq!(adu.as_bytes().len(), 7 + 6 + 246);
        assert_eq!(adu.as_bytes()[4..6], [0, 253]);
        let coils = write(1, 0, WriteData::Coils(vec![true; MAX_WRITE_COILS]));
        assert_eq!(rtu_adu(&coils).as_bytes().len(), 1 + 6 + 246 + 2);
    }

    #[test]
    fn write_quantities_are_checked() {
        let regs = |n| WriteRequest::new(1, 0, WriteData::Registers(vec![0; n]));
        let coils = |n| WriteRequest::new(1, 0, WriteData::Coils(vec![false; n]));
        assert!(regs(123).is_ok());
        assert!(coils(1968).is_ok());
        for bad in [regs(0), regs(124), coils(0), coils(1969)] {
            assert!(matches!(bad, Err(BadWrite::Quantity { .. })), "{bad:?}");
        }
        assert!(WriteRequest::new(1, 65535, WriteData::Register(1)).is_ok());
        assert!(WriteRequest::new(1, 65534, WriteData::Registers(vec![1, 2])).is_ok());
        assert_eq!(
            WriteRequest::new(1, 65535, WriteData::Registers(vec![1, 2])),
            Err(BadWrite::PastEnd {
                address: 65535,
                count: 2
            })
        );
    }

    #[test]
    fn every_field_of_a_write_reply_is_checked() {
        let w = write(1, 0x0010, WriteData::Register(0x1234));
        let ok = framed(&[1, 6, 0, 0x10, 0x12, 0x34]);
        assert_eq!(w.rtu_reply_len(&ok[..1]), Ok(None));
        assert_eq!(w.rtu_reply_len(&ok[..2]), Ok(Some(8)));
        assert_eq!(w.check_rtu(&ok), Ok(WriteAnswer::Done));
        let ex = framed(&[1, 0x86, 2]);
        assert_eq!(w.rtu_reply_len(&ex[..2]), Ok(Some(5)));
        assert_eq!(w.check_rtu(&ex), Ok(WriteAnswer::Exception(2)));
        // Unit, function code, CRC, length.
        assert_eq!(
            w.rtu_reply_len(&[2]),
            Err(Mismatch::Unit { asked: 1, got: 2 })
        );
        assert_eq!(
            w.rtu_reply_len(&[1, 16]),
            Err(Mismatch::Function { asked: 6, got: 16 })
        );
        let mut bad = ok.clone();
        bad[5] ^= 1;
        assert_eq!(w.check_rtu(&bad), Err(Mismatch::Crc));
        assert!(w.check_rtu(&framed(&[2, 6, 0, 0x10, 0x12, 0x34])).is_err());
        assert!(w.check_pdu(&[6, 0, 0x10, 0x12]).is_err());
        assert!(w.check_pdu(&[6, 0, 0x10, 0x12, 0x34, 0]).is_err());
        assert!(w.check_pdu(&[0x86, 2, 0]).is_err());
        assert!(w.check_pdu(&[]).is_err());
        // The echo: address and value.
        assert_eq!(
            w.check_pdu(&[6, 0, 0x11, 0x12, 0x34]),
            Err(Mismatch::Echo {
                what: "address",
                asked: 0x10,
                got: 0x11
            })
        );
        assert_eq!(
            w.check_pdu(&[6, 0, 0x10, 0x12, 0x35]),
            Err(Mismatch::Echo {
                what: "value",
                asked: 0x1234,
                got: 0x1235
            })
        );
        // FC5 echoes 0xFF00 or 0x0000, nothing else.
        let on = write(1, 3, WriteData::Coil(true));
        assert_eq!(on.check_pdu(&[5, 0, 3, 0xFF, 0]), Ok(WriteAnswer::Done));
        assert!(on.check_pdu(&[5, 0, 3, 0, 1]).is_err());
        assert!(on.check_pdu(&[5, 0, 3, 0, 0]).is_err());
        let off = write(1, 3, WriteData::Coil(false));
        assert_eq!(off.check_pdu(&[5, 0, 3, 0, 0]), Ok(WriteAnswer::Done));
        // FC15 and FC16 echo the quantity.
        let regs = write(1, 100, WriteData::Registers(vec![1, 2, 3]));
        assert_eq!(regs.check_pdu(&[16, 0, 100, 0, 3]), Ok(WriteAnswer::Done));
        assert_eq!(
            regs.check_pdu(&[16, 0, 100, 0, 2]),
            Err(Mismatch::Echo {
                what: "quantity",
                asked: 3,
                got: 2
            })
        );
        assert!(regs.check_pdu(&[6, 0, 100, 0, 3]).is_err());
        let coils = write(1, 100, WriteData::Coils(vec![true; 10]));
        assert_eq!(coils.check_pdu(&[15, 0, 100, 0, 10]), Ok(WriteAnswer::Done));
        assert!(coils.check_pdu(&[15, 0, 100, 0, 9]).is_err());
        assert_eq!(coils.check_pdu(&[0x8F, 4]), Ok(WriteAnswer::Exception(4)));
        // TCP: transaction and unit.
        let header = |tid: u16, unit: u8| {
            let [t0, t1] = tid.to_be_bytes();
            [t0, t1, 0, 0, 0, 6, unit]
        };
        let pdu = [6, 0, 0x10, 0x12, 0x34];
        assert_eq!(w.check_tcp(5, &header(5, 1), &pdu), Ok(WriteAnswer::Done));
        assert_eq!(
            w.check_tcp(5, &header(4, 1), &pdu),
            Err(Mismatch::Transaction {
                expected: 5,
                got: 4
            })
        );
        assert_eq!(
            w.check_tcp(5, &header(5, 3), &pdu),
            Err(Mismatch::Unit { asked: 1, got: 3 })
        );
        // A read's reply does not answer a write, nor the reverse.
        let read = hr(1, 0x10, 1);
        assert!(read.check_pdu(&pdu).is_err());
        assert!(w.check_pdu(&[3, 2, 0x12, 0x34]).is_err());
    }

    #[test]
    fn no_write_reply_bytes_panic() {
        let requests = [
            write(1, 0, WriteData::Coil(true)),
            write(1, 0, WriteData::Register(7)),
            write(1, 0, WriteData::Coils(vec![true; 9])),
            write(1, 0, WriteData::Registers(vec![1; 4])),
        ];
        let bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for w in &requests {
            for len in 0..12 {
                for start in 0..300 {
                    let b = &bytes[start..start + len];
                    let _ = w.rtu_reply_len(b);
                    let _ = w.check_rtu(b);
                    let _ = w.check_pdu(b);
                    if let Some((h, pdu)) = b.split_first_chunk::<7>() {
                        let _ = tcp_pdu_len(h);
                        let _ = w.check_tcp(0, h, pdu);
                    }
                }
            }
        }
    }
}
