//! Fuzzes `modbus::decode` with whatever a device could send.
//!
//! Input layout:
//!
//! | byte | meaning                                                      |
//! |------|--------------------------------------------------------------|
//! | 0    | data type (`% 11`, see `data_type`)                          |
//! | 1    | bits 0-1: word order; bit 2: scale/offset from the next 16   |
//! |      | bytes (two big-endian f64, any bit pattern) instead of a     |
//! |      | table entry picked by bits 3-7                               |
//! | 2    | bit index for `Bit`, register count for `String`             |
//! | ...  | register payload, big-endian pairs (an odd last byte is      |
//! |      | dropped, as a framing layer would)                           |
//!
//! The payload length is free, so most inputs exercise the length check
//! and some hit the exact width; the asserts check that the outcome is
//! consistent with the input, not only that nothing panics.

#![no_main]

use fieldgate::modbus::decode::{
    DecodeError, decode, decode_all_orders_f32, raw_value, registers_to_bytes,
};
use fieldgate::tag::{Area, DataType, Tag, Value, WordOrder};
use libfuzzer_sys::fuzz_target;

/// Scale/offset pairs seen in real configs, plus the awkward ones.
const SCALES: [(f64, f64); 8] = [
    (1.0, 0.0),
    (0.1, 0.0),
    (0.1, -40.0),
    (1e-3, 0.0),
    (-1.0, 0.0),
    (1e300, 0.0),
    (0.0, f64::MAX),
    (f64::NAN, 0.0),
];

fn data_type(selector: u8, param: u8) -> DataType {
    match selector % 11 {
        0 => DataType::Bool,
        1 => DataType::Bit(param),
        2 => DataType::U16,
        3 => DataType::I16,
        4 => DataType::U32,
        5 => DataType::I32,
        6 => DataType::U64,
        7 => DataType::I64,
        8 => DataType::F32,
        9 => DataType::F64,
        _ => DataType::String(u16::from(param)),
    }
}

fn f64_at(bytes: &[u8]) -> f64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    f64::from_be_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let [selector, flags, param, rest @ ..] = data else {
        return;
    };
    let data_type = data_type(*selector, *param);
    let order = WordOrder::ALL[usize::from(flags & 3)];
    let (scale, offset, payload) = if flags & 4 != 0 && rest.len() >= 16 {
        (f64_at(rest), f64_at(&rest[8..]), &rest[16..])
    } else {
        let (s, o) = SCALES[usize::from(flags >> 3) % SCALES.len()];
        (s, o, rest)
    };
    let regs: Vec<u16> = payload
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();

    let width = usize::from(data_type.width());
    let is_float = matches!(data_type, DataType::F32 | DataType::F64);
    let raw = raw_value(data_type, order, &regs);
    match &raw {
        Err(DecodeError::WrongLength { expected, got }) => {
            assert_eq!(*expected, width);
            assert_eq!(*got, regs.len());
            assert_ne!(*got, width);
        }
        Err(DecodeError::NotFinite) => assert!(is_float && regs.len() == width),
        Ok(value) => {
            assert_eq!(regs.len(), width);
            match (data_type, value) {
                (DataType::Bool | DataType::Bit(_), Value::Bool(_)) => {}
                (DataType::String(_), Value::Text(_)) => {}
                (DataType::F32 | DataType::F64, Value::Float(x)) => assert!(x.is_finite()),
                (_, Value::Int(_)) => {}
                (DataType::U64, Value::UInt(u)) => assert!(*u > i64::MAX as u64),
                (t, v) => panic!("{t} decoded to {v:?}"),
            }
        }
    }

    let mut tag = Tag::new("fuzz", Area::HoldingRegister, 0, data_type);
    tag.word_order = order;
    tag.scale = scale;
    tag.offset = offset;
    match decode(&tag, &regs) {
        Ok(Value::Float(x)) => assert!(x.is_finite()),
        Ok(v) => assert!(
            raw.as_ref() == Ok(&v),
            "unscaled or unscalable {data_type} changed: {raw:?} -> {v:?}"
        ),
        // A raw error passes through unchanged; NotFinite may also come
        // from scaling a finite raw value.
        Err(DecodeError::NotFinite) => {
            assert!(raw.is_err() || data_type.is_numeric())
        }
        Err(e) => assert_eq!(Err(e), raw),
    }

    assert_eq!(registers_to_bytes(&regs, order).len(), regs.len() * 2);
    if let [a, b, ..] = regs[..] {
        let all = decode_all_orders_f32([a, b]);
        assert_eq!(all[0].to_bits(), (u32::from(a) << 16) | u32::from(b));
    }
});
