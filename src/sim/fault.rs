//! Fault injection: a simulated device that answers some requests late,
//! as another unit, behind line noise, or with a malformed reply, so that
//! tests can check a client's failure handling against the wire itself.
//!
//! A [`Faults`] schedule picks requests by number (counted per device,
//! from 1, every request routed to it); each picked request gets the next
//! [`Fault`] of the schedule in turn. Pure: the servers ask the schedule
//! which fault a request gets and apply [`mangle`] to its encoded reply.

use std::time::Duration;

use super::rtu_frame::crc16;

/// What one faulty request gets instead of a clean answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The right answer, this much later.
    Late(Duration),
    /// No answer at all.
    Silent,
    /// The right answer, but from the next unit id (unit + 1).
    OtherUnit,
    /// This many random bytes on the line just before the right answer.
    Noise(usize),
    /// A malformed answer instead of the right one.
    Malformed(Malformation),
}

/// Ways an answer can be malformed. Kinds that a transport has no field
/// for (a transaction id on RTU, a CRC on TCP) fall back to the closest
/// kind it has, noted on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// The byte count says 255.
    ByteCount255,
    /// TCP: another transaction id. RTU: a wrong CRC.
    WrongTransaction,
    /// The function code plus one.
    WrongFunction,
    /// TCP: an MBAP length of 65535. RTU: a wrong CRC.
    MbapLength65535,
    /// One register (or one byte of bits) fewer than asked, consistently
    /// framed.
    TooFewRegisters,
    /// Only the first half of the frame.
    Truncated,
    /// RTU: a wrong CRC. TCP: the byte count says 255.
    BadCrc,
}

impl Malformation {
    /// Every kind, for schedules that cycle through them all.
    pub const ALL: [Malformation; 7] = [
        Malformation::ByteCount255,
        Malformation::WrongTransaction,
        Malformation::WrongFunction,
        Malformation::MbapLength65535,
        Malformation::TooFewRegisters,
        Malformation::Truncated,
        Malformation::BadCrc,
    ];
}

/// Which requests of a device get which fault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// The first faulty request (1-based); 0 injects nothing.
    pub first: u64,
    /// After `first`, every `every`-th request is faulty too; 0: only `first`.
    pub every: u64,
    /// The faults, handed out in turn to the faulty requests.
    pub kinds: Vec<Fault>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// `fault` for request `n` only.
    pub fn nth(n: u64, fault: Fault) -> Faults {
        Faults {
            first: n,
            every: 0,
            kinds: vec![fault],
        }
    }

    /// The `kinds` in turn, for every `every`-th request from `first` on.
    pub fn every(first: u64, every: u64, kinds: Vec<Fault>) -> Faults {
        Faults {
            first,
            every,
            kinds,
        }
    }

    /// The fault request number `n` (1-based) gets, if any.
    pub fn for_request(&self, n: u64) -> Option<&Fault> {
        if self.first == 0 || n < self.first || self.kinds.is_empty() {
            return None;
        }
        let since = n - self.first;
        let turn = match self.every {
            0 if since == 0 => 0,
            0 => return None,
            every if since.is_multiple_of(every) => since / every,
            _ => return None,
        };
        let len = u64::try_from(self.kinds.len()).unwrap_or(u64::MAX);
        self.kinds.get(usize::try_from(turn % len).unwrap_or(0))
    }
}

/// How a reply is framed, for [`mangle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// MBAP header (7 bytes), then the PDU.
    Tcp,
    /// Unit, PDU, CRC.
    Rtu,
}

/// Changes an encoded reply `frame` as `fault` says. `noise` supplies the
/// random bytes of [`Fault::Noise`]. Timing faults (late, silent) are the
/// server's to apply; they leave the frame alone.
pub(crate) fn mangle(
    wire: Wire,
    frame: &mut Vec<u8>,
    fault: &Fault,
    noise: &mut dyn FnMut() -> u8,
) {
    let pdu_at = match wire {
        Wire::Tcp => 7,
        Wire::Rtu => 1,
    };
    if frame.len() < pdu_at + 1 {
        return;
    }
    match fault {
        Fault::Late(_) | Fault::Silent => {}
        Fault::OtherUnit => {
            let unit_at = pdu_at - 1;
            frame[unit_at] = frame[unit_at].wrapping_add(1);
            refresh_crc(wire, frame);
        }
        Fault::Noise(n) => {
            let bytes: Vec<u8> = (0..*n).map(|_| noise()).collect();
            frame.splice(0..0, bytes);
        }
        Fault::Malformed(m) => {
            let m = match (wire, m) {
                (Wire::Rtu, Malformation::WrongTransaction | Malformation::MbapLength65535) => {
                    Malformation::BadCrc
                }
                (Wire::Tcp, Malformation::BadCrc) => Malformation::ByteCount255,
                (_, m) => *m,
            };
            match m {
                Malformation::ByteCount255 => {
                    if let Some(b) = frame.get_mut(pdu_at + 1) {
                        *b = 255;
                    }
                    refresh_crc(wire, frame);
                }
                Malformation::WrongTransaction => frame[1] = frame[1].wrapping_add(1),
                Malformation::WrongFunction => {
                    frame[pdu_at] = frame[pdu_at].wrapping_add(1);
                    refresh_crc(wire, frame);
                }
                Malformation::MbapLength65535 => {
                    frame[4] = 0xFF;
                    frame[5] = 0xFF;
                }
                Malformation::TooFewRegisters => fewer(wire, frame, pdu_at),
                Malformation::Truncated => frame.truncate(frame.len() / 2),
                Malformation::BadCrc => {
                    if let Some(last) = frame.last_mut() {
                        *last ^= 0x5A;
                    }
                }
            }
        }
    }
}

/// Drops the last register (two data bytes; one byte of bits) of a read
/// reply and fixes the byte count and the framing around it.
fn fewer(wire: Wire, frame: &mut Vec<u8>, pdu_at: usize) {
    let Some(&count) = frame.get(pdu_at + 1) else {
        return;
    };
    // Exceptions and writes have no byte count: leave them alone.
    let is_read = matches!(frame.get(pdu_at), Some(1..=4));
    let drop = if matches!(frame.get(pdu_at), Some(1 | 2)) {
        1
    } else {
        2
    };
    if !is_read || usize::from(count) < drop {
        return;
    }
    let data_end = pdu_at + 2 + usize::from(count);
    if frame.len() < data_end {
        return;
    }
    frame.drain(data_end - drop..data_end);
    // ok: drop is 1 or 2 and count >= drop.
    frame[pdu_at + 1] = count - drop as u8;
    match wire {
        Wire::Tcp => {
            let len = u16::try_from(frame.len() - 6).unwrap_or(u16::MAX);
            frame[4..6].copy_from_slice(&len.to_be_bytes());
        }
        Wire::Rtu => refresh_crc(wire, frame),
    }
}

/// RTU: recomputes the CRC after a change, so that only the intended
/// field is wrong.
fn refresh_crc(wire: Wire, frame: &mut [u8]) {
    if wire != Wire::Rtu || frame.len() < 3 {
        return;
    }
    let body = frame.len() - 2;
    let crc = crc16(&frame[..body]).to_le_bytes();
    frame[body..].copy_from_slice(&crc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtu(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc16(body).to_le_bytes());
        f
    }

    fn no_noise() -> impl FnMut() -> u8 {
        || 0xAA
    }

    #[test]
    fn schedules_pick_requests_by_number() {
        let once = Faults::nth(3, Fault::Silent);
        let picked: Vec<u64> = (1..10).filter(|&n| once.for_request(n).is_some()).collect();
        assert_eq!(picked, [3]);
        let cycle = Faults::every(2, 10, vec![Fault::OtherUnit, Fault::Noise(3)]);
        assert_eq!(cycle.for_request(2), Some(&Fault::OtherUnit));
        assert_eq!(cycle.for_request(12), Some(&Fault::Noise(3)));
        assert_eq!(cycle.for_request(22), Some(&Fault::OtherUnit));
        assert_eq!(cycle.for_request(13), None);
        assert_eq!(cycle.for_request(1), None);
        assert_eq!(Faults::none().for_request(1), None);
        assert_eq!(Faults::every(1, 1, Vec::new()).for_request(1), None);
    }

    #[test]
    fn rtu_replies_are_mangled_one_field_at_a_time() {
        let clean = rtu(&[1, 3, 4, 0, 1, 0, 2]);
        let apply = |fault: Fault| {
            let mut f = clean.clone();
            mangle(Wire::Rtu, &mut f, &fault, &mut no_noise());
            f
        };
        assert_eq!(apply(Fault::OtherUnit), rtu(&[2, 3, 4, 0, 1, 0, 2]));
        assert_eq!(
            apply(Fault::Malformed(Malformation::ByteCount255)),
            rtu(&[1, 3, 255, 0, 1, 0, 2])
        );
        assert_eq!(
            apply(Fault::Malformed(Malformation::WrongFunction)),
            rtu(&[1, 4, 4, 0, 1, 0, 2])
        );
        assert_eq!(
            apply(Fault::Malformed(Malformation::TooFewRegisters)),
            rtu(&[1, 3, 2, 0, 1])
        );
        assert_eq!(apply(Fault::Malformed(Malformation::Truncated)).len(), 4);
        let bad = apply(Fault::Malformed(Malformation::BadCrc));
        assert_eq!(bad[..7], clean[..7]);
        assert_ne!(bad, clean);
        let noisy = apply(Fault::Noise(2));
        assert_eq!(noisy[..2], [0xAA, 0xAA]);
        assert_eq!(noisy[2..], clean[..]);
        assert_eq!(apply(Fault::Late(Duration::from_secs(1))), clean);
    }

    #[test]
    fn tcp_replies_are_mangled_one_field_at_a_time() {
        let clean = vec![0, 7, 0, 0, 0, 7, 1, 3, 4, 0, 1, 0, 2];
        let apply = |m| {
            let mut f = clean.clone();
            mangle(Wire::Tcp, &mut f, &Fault::Malformed(m), &mut no_noise());
            f
        };
        assert_eq!(apply(Malformation::WrongTransaction)[..2], [0, 8]);
        assert_eq!(apply(Malformation::MbapLength65535)[4..6], [0xFF, 0xFF]);
        assert_eq!(
            apply(Malformation::TooFewRegisters),
            [0, 7, 0, 0, 0, 5, 1, 3, 2, 0, 1]
        );
        assert_eq!(apply(Malformation::BadCrc)[8], 255);
        // An exception reply has no registers to drop.
        let mut ex = vec![0, 7, 0, 0, 0, 3, 1, 0x83, 2];
        let before = ex.clone();
        mangle(
            Wire::Tcp,
            &mut ex,
            &Fault::Malformed(Malformation::TooFewRegisters),
            &mut no_noise(),
        );
        assert_eq!(ex, before);
        // Frames too short to mangle are left alone, never a panic.
        for len in 0..8 {
            for m in Malformation::ALL {
                let mut f = vec![1u8; len];
                mangle(Wire::Tcp, &mut f, &Fault::Malformed(m), &mut no_noise());
                let mut f = vec![1u8; len];
                mangle(Wire::Rtu, &mut f, &Fault::Malformed(m), &mut no_noise());
            }
        }
    }
}
