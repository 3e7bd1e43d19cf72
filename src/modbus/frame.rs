//! The client's read exchange on the wire (FC1–FC4), pure: request frames
//! out, replies checked against their request in full.
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
//! three bytes ([`rtu_reply_len`]), and those bytes are checked as soon as
//! they arrive, so a wrong answer is rejected without waiting for the
//! timeout.

use crate::tag::Area;

/// Longest Modbus PDU (function code and data), from the 256-byte RTU frame.
pub const MAX_PDU: usize = 253;

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
        if frame.len() < 4 {
            return Err(Mismatch::Crc);
        }
        let (body, crc) = frame.split_at(frame.len() - 2);
        if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
            return Err(Mismatch::Crc);
        }
        self.check_unit(body[0])?;
        self.check_pdu(&body[1..])
    }

    /// TCP: the PDU length (unit id excluded) a reply header announces,
    /// after checking the header against this request's `transaction`.
    /// A wrong transaction id is reported only after the frame was read
    /// ([`Self::check_tcp`]), so the stream stays in step.
    pub fn tcp_pdu_len(header: &[u8; 7]) -> Result<usize, Mismatch> {
        let protocol = u16::from_be_bytes([header[2], header[3]]);
        let length = u16::from_be_bytes([header[4], header[5]]);
        // The length counts the unit id and a PDU of 2..=253 bytes.
        if protocol != 0 || !(3..=1 + MAX_PDU as u16).contains(&length) {
            return Err(Mismatch::Header { protocol, length });
        }
        Ok(usize::from(length) - 1)
    }

    /// TCP: checks a whole reply (header and PDU) against this request.
    pub fn check_tcp(
        &self,
        transaction: u16,
        header: &[u8; 7],
        pdu: &[u8],
    ) -> Result<Answer, Mismatch> {
        let got = u16::from_be_bytes([header[0], header[1]]);
        if got != transaction {
            return Err(Mismatch::Transaction {
                expected: transaction,
                got,
            });
        }
        self.check_unit(header[6])?;
        self.check_pdu(pdu)
    }

    fn check_unit(&self, got: u8) -> Result<(), Mismatch> {
        if got == self.unit {
            Ok(())
        } else {
            Err(Mismatch::Unit {
                asked: self.unit,
                got,
            })
        }
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
}
