//! The gateway's check of a device's reply against its request (RTU and
//! Modbus TCP framing), fed arbitrary bytes as a faulty device or a noisy
//! line could send them. It must never panic, and a reply it accepts must
//! answer the request in full: exactly the quantity asked for by a read,
//! the echo of a write's address and value (or quantity).
#![no_main]

use fieldgate::modbus::frame::{
    self, Answer, ReadRequest, WriteAnswer, WriteData, WriteRequest, crc16,
};
use fieldgate::tag::Area;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    if head[1] % 8 >= 4 {
        write_reply(head, rest);
        return;
    }
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

/// A write request of the kind `head` picks (FC5, FC6, FC15 or FC16,
/// within the protocol's quantities), and `rest` as its reply.
fn write_reply(head: &[u8; 6], rest: &[u8]) {
    let address = u16::from_be_bytes([head[2], head[3]]);
    let word = u16::from_be_bytes([head[4], head[5]]);
    let data = match head[1] % 4 {
        0 => WriteData::Coil(word & 1 == 1),
        1 => WriteData::Register(word),
        2 => WriteData::Coils((0..usize::from(word % 1968 + 1)).map(|i| i % 3 == 0).collect()),
        _ => WriteData::Registers((0..word % 123 + 1).collect()),
    };
    // Past address 65535 it is refused at once, and never sent.
    let Ok(request) = WriteRequest::new(head[0], address, data) else {
        return;
    };
    // A normal reply carries the function code, the address and the value
    // or quantity of the request; anything else is an exception.
    let echoed = |pdu: &[u8], answer: WriteAnswer| match answer {
        WriteAnswer::Done => {
            assert_eq!(pdu.len(), 5);
            assert_eq!(pdu[0], request.function());
            assert_eq!(u16::from_be_bytes([pdu[1], pdu[2]]), address);
        }
        WriteAnswer::Exception(code) => {
            assert_eq!(pdu, [request.function() | 0x80, code]);
        }
    };
    if let Ok(Some(len)) = request.rtu_reply_len(rest) {
        assert!(len == 5 || len == 8);
    }
    if let Ok(answer) = request.check_rtu(rest) {
        assert_eq!(rest[0], head[0]);
        let body = &rest[..rest.len() - 2];
        assert_eq!(
            crc16(body).to_le_bytes(),
            [rest[rest.len() - 2], rest[rest.len() - 1]]
        );
        echoed(&body[1..], answer);
    }
    if let Some((header, pdu)) = rest.split_first_chunk::<7>() {
        let _ = frame::tcp_pdu_len(header);
        let transaction = u16::from_be_bytes([header[0], header[1]]);
        if let Ok(answer) = request.check_tcp(transaction, header, pdu) {
            echoed(pdu, answer);
        }
    }
}
