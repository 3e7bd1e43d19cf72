//! The gateway's check of a device's reply against its request (RTU and
//! Modbus TCP framing), fed arbitrary bytes as a faulty device or a noisy
//! line could send them. It must never panic, and a reply it accepts must
//! answer the request in full: exactly the quantity asked for.
#![no_main]

use fieldgate::modbus::frame::{Answer, ReadRequest};
use fieldgate::tag::Area;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    let area = match head[1] % 4 {
        0 => Area::Coil,
        1 => Area::DiscreteInput,
        2 => Area::HoldingRegister,
        _ => Area::InputRegister,
    };
    // A quantity a real request may ask for (1..=125 registers, 1..=2000 bits).
    let most = if matches!(area, Area::Coil | Area::DiscreteInput) { 2000 } else { 125 };
    let count = u16::from_be_bytes([head[4], head[5]]) % most + 1;
    let request = ReadRequest {
        unit: head[0],
        area,
        start: u16::from_be_bytes([head[2], head[3]]),
        count,
    };
    let accepted = |answer: Answer| match answer {
        Answer::Registers(r) => assert_eq!(r.len(), usize::from(count)),
        Answer::Bits(b) => assert_eq!(b.len(), usize::from(count)),
        Answer::Exception(_) => {}
    };
    let _ = request.rtu_reply_len(rest);
    if let Ok(answer) = request.check_rtu(rest) {
        accepted(answer);
    }
    if let Some((header, pdu)) = rest.split_first_chunk::<7>() {
        let _ = ReadRequest::tcp_pdu_len(header);
        let transaction = u16::from_be_bytes([header[0], header[1]]);
        if let Ok(answer) = request.check_tcp(transaction, header, pdu) {
            accepted(answer);
        }
    }
});
