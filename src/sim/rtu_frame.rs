//! Server-side RTU framing for every simulator server: request frames in,
//! response frames out, CRC-16/MODBUS on both (the TCP server decodes its
//! PDUs through it too).
//!
//! The servers need the bytes of each answer for fault injection, and
//! tokio-modbus's codec lives in a private module. Server-side RTU framing
//! is small enough to own: only the request layouts of the functions the
//! simulator serves need to be known. Pure: bytes in, bytes out. The
//! client's side (gateway reads) is separate, in `modbus::frame`.

use std::borrow::Cow;

use tokio_modbus::{ExceptionCode, Request, Response};

/// Longest RTU frame (address, PDU of at most 253 bytes, CRC).
pub(crate) const MAX_FRAME: usize = 256;

/// The client's CRC: one implementation for both ends of the wire.
pub(crate) use crate::modbus::frame::crc16;

/// What the start of a receive buffer holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoded {
    /// Not a whole frame yet: read more.
    Incomplete,
    /// A request for `unit`, `len` bytes long.
    Request {
        unit: u8,
        request: Request<'static>,
        len: usize,
    },
    /// A well-formed frame with a function we do not serve (answer
    /// exception 01), `len` bytes long.
    Unsupported { unit: u8, function: u8, len: usize },
    /// Bytes that are no frame (bad CRC, impossible length): drop them all,
    /// as a device drops a garbled frame and waits for the next.
    Garbage,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Decodes the first request frame in `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded {
    if buf.len() > MAX_FRAME {
        return Decoded::Garbage;
    }
    let (Some(&unit), Some(&function)) = (buf.first(), buf.get(1)) else {
        return Decoded::Incomplete;
    };
    // Frame length (with CRC) from the function's request layout.
    let len = match function {
        0x01..=0x06 => 8,
        0x0F | 0x10 => match buf.get(6) {
            Some(&n) => 9 + usize::from(n),
            None => return Decoded::Incomplete,
        },
        // Unknown layout: RTU over TCP sends one frame per write, so take
        // the buffer as the frame if its CRC holds.
        _ if buf.len() >= 4 && crc_ok(buf) => {
            return Decoded::Unsupported {
                unit,
                function,
                len: buf.len(),
            };
        }
        _ => return Decoded::Incomplete,
    };
    if buf.len() < len {
        return Decoded::Incomplete;
    }
    let frame = &buf[..len];
    if !crc_ok(frame) {
        return Decoded::Garbage;
    }
    let addr = be16(frame, 2);
    let word = be16(frame, 4);
    let request = match function {
        0x01 => Request::ReadCoils(addr, word),
        0x02 => Request::ReadDiscreteInputs(addr, word),
        0x03 => Request::ReadHoldingRegisters(addr, word),
        0x04 => Request::ReadInputRegisters(addr, word),
        0x05 => match word {
            0xFF00 => Request::WriteSingleCoil(addr, true),
            0x0000 => Request::WriteSingleCoil(addr, false),
            // An illegal coil value is the device's exception 03 to give;
            // a zero-length coil write gets exactly that from the handler.
            _ => Request::WriteMultipleCoils(addr, Cow::Owned(Vec::new())),
        },
        0x06 => Request::WriteSingleRegister(addr, word),
        0x0F => {
            let data = &frame[7..len - 2];
            let qty = usize::from(word);
            if data.len() != qty.div_ceil(8) {
                return Decoded::Garbage;
            }
            let coils = (0..qty)
                .map(|i| data[i / 8] & (1 << (i % 8)) != 0)
                .collect();
            Request::WriteMultipleCoils(addr, Cow::Owned(coils))
        }
        _ => {
            let data = &frame[7..len - 2];
            if data.len() != usize::from(word) * 2 {
                return Decoded::Garbage;
            }
            let words = data.chunks_exact(2).map(|w| be16(w, 0)).collect();
            Request::WriteMultipleRegisters(addr, Cow::Owned(words))
        }
    };
    Decoded::Request { unit, request, len }
}

fn crc_ok(frame: &[u8]) -> bool {
    let (body, crc) = frame.split_at(frame.len() - 2);
    crc16(body) == u16::from_le_bytes([crc[0], crc[1]])
}

fn finish(out: &mut Vec<u8>, start: usize) {
    let crc = crc16(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn push_bits(out: &mut Vec<u8>, bits: &[bool]) {
    // ok: at most 2000 bits, checked by the handler → 250 bytes.
    out.push(bits.len().div_ceil(8) as u8);
    for chunk in bits.chunks(8) {
        out.push(
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |b, (i, on)| b | (u8::from(*on) << i)),
        );
    }
}

fn push_words(out: &mut Vec<u8>, words: &[u16]) {
    // ok: at most 125 registers, checked by the handler → 250 bytes.
    out.push((words.len() * 2) as u8);
    for w in words {
        out.extend_from_slice(&w.to_be_bytes());
    }
}

/// Appends the response frame for `function` to `out`.
pub(crate) fn encode(
    unit: u8,
    function: u8,
    reply: Result<&Response, ExceptionCode>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.push(unit);
    let r = match reply {
        Ok(r) => r,
        Err(e) => {
            out.extend_from_slice(&[function | 0x80, u8::from(e)]);
            return finish(out, start);
        }
    };
    out.push(function);
    match r {
        Response::ReadCoils(b) | Response::ReadDiscreteInputs(b) => push_bits(out, b),
        Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => push_words(out, w),
        Response::WriteSingleCoil(a, on) => {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(if *on { &[0xFF, 0x00] } else { &[0x00, 0x00] });
        }
        Response::WriteSingleRegister(a, v)
        | Response::WriteMultipleCoils(a, v)
        | Response::WriteMultipleRegisters(a, v) => {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        // The handler answers nothing else; say so rather than send junk.
        _ => {
            out.truncate(start + 1);
            out.extend_from_slice(&[
                function | 0x80,
                u8::from(ExceptionCode::ServerDeviceFailure),
            ]);
        }
    }
    finish(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc16(body).to_le_bytes());
        f
    }

    #[test]
    fn crc_of_a_known_frame() {
        // Read holding registers, unit 1, address 0, 1 register: 01 03 00 00 00 01 84 0A
        assert_eq!(frame(&[1, 3, 0, 0, 0, 1]), [1, 3, 0, 0, 0, 1, 0x84, 0x0A]);
    }

    #[test]
    fn decodes_requests() {
        let f = frame(&[7, 3, 0, 10, 0, 125]);
        assert_eq!(
            decode(&f),
            Decoded::Request {
                unit: 7,
                request: Request::ReadHoldingRegisters(10, 125),
                len: 8
            }
        );
        assert_eq!(decode(&f[..5]), Decoded::Incomplete);
        let f = frame(&[1, 0x10, 0, 2, 0, 2, 4, 0, 1, 0xAB, 0xCD]);
        assert_eq!(
            decode(&f),
            Decoded::Request {
                unit: 1,
                request: Request::WriteMultipleRegisters(2, Cow::Owned(vec![1, 0xABCD])),
                len: 13
            }
        );
        let f = frame(&[1, 0x0F, 0, 0, 0, 10, 2, 0b0000_0101, 0b10]);
        let Decoded::Request { request, .. } = decode(&f) else {
            panic!("{:?}", decode(&f));
        };
        let on = [
            true, false, true, false, false, false, false, false, false, true,
        ];
        assert_eq!(
            request,
            Request::WriteMultipleCoils(0, Cow::Owned(on.to_vec()))
        );
        let mut bad = frame(&[1, 3, 0, 0, 0, 1]);
        bad[7] ^= 1;
        assert_eq!(decode(&bad), Decoded::Garbage);
        assert_eq!(
            decode(&frame(&[1, 0x11])),
            Decoded::Unsupported {
                unit: 1,
                function: 0x11,
                len: 4
            }
        );
    }

    #[test]
    fn encodes_responses() {
        let mut out = Vec::new();
        encode(
            1,
            3,
            Ok(&Response::ReadHoldingRegisters(vec![0x1234])),
            &mut out,
        );
        assert_eq!(out, frame(&[1, 3, 2, 0x12, 0x34]));
        out.clear();
        encode(
            1,
            1,
            Ok(&Response::ReadCoils(vec![true, false, true])),
            &mut out,
        );
        assert_eq!(out, frame(&[1, 1, 1, 0b101]));
        out.clear();
        encode(2, 4, Err(ExceptionCode::IllegalDataAddress), &mut out);
        assert_eq!(out, frame(&[2, 0x84, 2]));
    }
}
