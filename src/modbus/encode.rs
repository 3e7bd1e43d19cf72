//! Raw values to registers: the inverse of `decode`, used by the simulator
//! to serve typed values and by `scan`/tests to build register images.
//!
//! Pure: no I/O. Values are *raw* (before scale and offset).

use crate::tag::{DataType, Value, WordOrder};

/// Lays big-endian bytes out as registers in the given word order.
///
/// `bytes.len()` must be even; `ABCD` keeps them as they are, `CDAB`
/// reverses the words, `BADC` swaps the bytes of each word, `DCBA` does both.
pub fn bytes_to_registers(bytes: &[u8], order: WordOrder) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|pair| {
            let hi = pair[0];
            let lo = pair.get(1).copied().unwrap_or(0);
            if order.bytes_swapped() {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if order.words_reversed() {
        words.reverse();
    }
    words
}

/// Encodes a raw value as the registers a device would hold for a tag of
/// `data_type`. Numbers are converted with saturation (a 300 into an `i8`
/// range type is clamped, NaN into an integer is 0); text is truncated or
/// NUL-padded to the string's length. `Bool` and `Bit(n)` give one
/// register (`1` or `1 << n`).
pub fn encode(value: &Value, data_type: DataType, order: WordOrder) -> Vec<u16> {
    let x = value.as_f64().unwrap_or(0.0);
    let int = match value {
        Value::Int(i) => *i as i128,
        Value::UInt(u) => *u as i128,
        Value::Bool(b) => *b as i128,
        _ => x.round() as i128,
    };
    let bytes: Vec<u8> = match data_type {
        DataType::Bool => return vec![(x != 0.0) as u16],
        DataType::Bit(n) => return vec![if x != 0.0 { 1u16 << (n & 15) } else { 0 }],
        DataType::U16 => (int.clamp(0, u16::MAX as i128) as u16)
            .to_be_bytes()
            .to_vec(),
        DataType::I16 => (int.clamp(i16::MIN as i128, i16::MAX as i128) as i16)
            .to_be_bytes()
            .to_vec(),
        DataType::U32 => (int.clamp(0, u32::MAX as i128) as u32)
            .to_be_bytes()
            .to_vec(),
        DataType::I32 => (int.clamp(i32::MIN as i128, i32::MAX as i128) as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::U64 => (int.clamp(0, u64::MAX as i128) as u64)
            .to_be_bytes()
            .to_vec(),
        DataType::I64 => (int.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
            .to_be_bytes()
            .to_vec(),
        DataType::F32 => (x as f32).to_be_bytes().to_vec(),
        DataType::F64 => x.to_be_bytes().to_vec(),
        DataType::String(n) => {
            let text = match value {
                Value::Text(s) => s.clone(),
                other => other.to_string(),
            };
            let mut bytes = text.into_bytes();
            bytes.resize(n as usize * 2, 0);
            // Strings keep their word sequence: only the byte swap applies.
            let order = if order.bytes_swapped() {
                WordOrder::Badc
            } else {
                WordOrder::Abcd
            };
            return bytes_to_registers(&bytes, order);
        }
    };
    bytes_to_registers(&bytes, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_in_all_four_orders() {
        // 1.0f32 = 0x3F80_0000: A=3F B=80 C=00 D=00
        let v = Value::Float(1.0);
        assert_eq!(encode(&v, DataType::F32, WordOrder::Abcd), [0x3F80, 0x0000]);
        assert_eq!(encode(&v, DataType::F32, WordOrder::Cdab), [0x0000, 0x3F80]);
        assert_eq!(encode(&v, DataType::F32, WordOrder::Badc), [0x803F, 0x0000]);
        assert_eq!(encode(&v, DataType::F32, WordOrder::Dcba), [0x0000, 0x803F]);
    }

    #[test]
    fn string_pads_with_nul() {
        let v = Value::Text("ABC".into());
        assert_eq!(
            encode(&v, DataType::String(2), WordOrder::Abcd),
            [0x4142, 0x4300]
        );
        assert_eq!(
            encode(&v, DataType::String(2), WordOrder::Badc),
            [0x4241, 0x0043]
        );
    }

    #[test]
    fn integers_saturate() {
        assert_eq!(encode(&Value::Int(-5), DataType::U16, WordOrder::Abcd), [0]);
        assert_eq!(
            encode(&Value::Int(70000), DataType::I16, WordOrder::Abcd),
            [0x7FFF]
        );
        assert_eq!(
            encode(&Value::Bool(true), DataType::Bit(3), WordOrder::Abcd),
            [8]
        );
    }
}
