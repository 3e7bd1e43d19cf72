//! Registers to typed, scaled values (pure).
//!
//! The inverse of [`super::encode`]: a poller hands over the registers of
//! one tag, exactly `tag.width()` of them, and gets back the tag's value in
//! engineering units. No I/O and no allocation except for strings, because
//! this runs once per tag per poll.
//!
//! # Invariants
//!
//! - Nothing here panics on device data: a register run of the wrong length
//!   is [`DecodeError::WrongLength`], never an out-of-bounds index.
//! - A value that is not a finite number, as sent or after scaling, is
//!   [`DecodeError::NotFinite`]: NaN and infinities would poison deadbands,
//!   rules and JSON payloads downstream, so they never leave this module.
//! - Word order follows [`WordOrder`]; 16-bit values honour the byte swap
//!   too (as `encode` does), and strings honour only the byte swap.

use crate::tag::{DataType, Tag, Value, WordOrder};

/// Why a tag's registers could not be turned into a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The response did not carry the registers the tag needs.
    #[error("expected {expected} registers, got {got}")]
    WrongLength {
        /// Registers the data type occupies.
        expected: usize,
        /// Registers that were passed in.
        got: usize,
    },
    /// The device sent NaN or an infinity.
    #[error("not a finite number")]
    NotFinite,
}

/// Raw value (before scale/offset) of `data_type` from exactly
/// `data_type.width()` registers.
///
/// Integers become [`Value::Int`] (a `u64` above `i64::MAX` becomes
/// [`Value::UInt`]), floats [`Value::Float`], `Bool` (a register read as a
/// flag: nonzero is true) and `Bit(n)` [`Value::Bool`], strings
/// [`Value::Text`]. For `Bit(n)` the index is taken modulo 16, as `encode`
/// does; config validation is where an index above 15 gets rejected.
pub fn raw_value(
    data_type: DataType,
    order: WordOrder,
    regs: &[u16],
) -> Result<Value, DecodeError> {
    let expected = usize::from(data_type.width());
    if regs.len() != expected {
        return Err(DecodeError::WrongLength {
            expected,
            got: regs.len(),
        });
    }
    let value = match data_type {
        // One register, so word order cannot matter; a byte swap cannot
        // turn zero into nonzero either.
        DataType::Bool => Value::Bool(regs.iter().any(|&r| r != 0)),
        // Bits are numbered on the register as the device reports it:
        // the byte swap is about multi-byte numbers, not flag words.
        DataType::Bit(n) => Value::Bool(regs.iter().any(|&r| (r >> (n & 15)) & 1 == 1)),
        DataType::U16 => Value::Int(u16::from_be_bytes(ordered(regs, order)).into()),
        DataType::I16 => Value::Int(i16::from_be_bytes(ordered(regs, order)).into()),
        DataType::U32 => Value::Int(u32::from_be_bytes(ordered(regs, order)).into()),
        DataType::I32 => Value::Int(i32::from_be_bytes(ordered(regs, order)).into()),
        DataType::U64 => {
            let u = u64::from_be_bytes(ordered(regs, order));
            match i64::try_from(u) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::UInt(u),
            }
        }
        DataType::I64 => Value::Int(i64::from_be_bytes(ordered(regs, order))),
        DataType::F32 => finite(f32::from_be_bytes(ordered(regs, order)).into())?,
        DataType::F64 => finite(f64::from_be_bytes(ordered(regs, order)))?,
        DataType::String(_) => Value::Text(text(regs, order)),
    };
    Ok(value)
}

/// Engineering value of a register tag: raw × scale + offset.
///
/// Unscaled integers stay [`Value::Int`] / [`Value::UInt`] so that counters
/// and status words keep every bit; a scaled number is [`Value::Float`]
/// (an `i64`/`u64` beyond 2^53 loses precision there, which a scale factor
/// implies anyway). Floats are always `Float`; `Bit(n)` and `Bool` give
/// [`Value::Bool`] and strings [`Value::Text`], with scale and offset
/// ignored. NaN or ±infinity, raw or after scaling, is
/// [`DecodeError::NotFinite`].
pub fn decode(tag: &Tag, regs: &[u16]) -> Result<Value, DecodeError> {
    let raw = raw_value(tag.data_type, tag.word_order, regs)?;
    if !tag.data_type.is_numeric() || tag.is_unscaled() {
        return Ok(raw);
    }
    match raw.as_f64() {
        Some(x) => finite(x * tag.scale + tag.offset),
        // Numeric types always decode to a number; keep the raw value
        // rather than invent one if that ever changes.
        None => Ok(raw),
    }
}

/// Engineering value of a coil / discrete-input tag.
///
/// Always [`Value::Bool`]: a bit has no scale, and the type of a bit-area
/// tag is checked by config validation, not here.
pub fn decode_bit(tag: &Tag, bit: bool) -> Value {
    // The tag is taken so callers treat bits and registers alike, and so
    // a per-tag option (such as inversion) can be added without changing
    // every call site.
    let _ = tag;
    Value::Bool(bit)
}

/// Turns a register run into big-endian byte order according to
/// `order` (the inverse of [`super::encode::bytes_to_registers`]).
///
/// Four registers give the 8 bytes of a 64-bit value, two the 4 bytes of
/// a 32-bit value; any length works, and `CDAB`/`DCBA` reverse the whole
/// run.
pub fn registers_to_bytes(regs: &[u16], order: WordOrder) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(regs.len() * 2);
    let mut push = |r: u16| bytes.extend_from_slice(&word_bytes(r, order));
    if order.words_reversed() {
        regs.iter().rev().copied().for_each(&mut push);
    } else {
        regs.iter().copied().for_each(&mut push);
    }
    bytes
}

/// Value of an adjacent register pair as `f32` in each of the four orders,
/// in the order of [`WordOrder::ALL`].
///
/// For `scan`, which prints all four so a person can spot the plausible
/// one; NaN and infinities are returned as they are, since showing them is
/// the point.
pub fn decode_all_orders_f32(pair: [u16; 2]) -> [f32; 4] {
    WordOrder::ALL.map(|order| f32::from_be_bytes(ordered(&pair, order)))
}

/// The big-endian bytes of a value `N` bytes wide held in `regs`.
///
/// Callers check that `regs` holds exactly `N / 2` registers; a missing
/// register would read as zero rather than panic.
fn ordered<const N: usize>(regs: &[u16], order: WordOrder) -> [u8; N] {
    let words = N / 2;
    let mut out = [0u8; N];
    for (i, chunk) in out.chunks_exact_mut(2).enumerate() {
        let src = if order.words_reversed() {
            words - 1 - i
        } else {
            i
        };
        let reg = regs.get(src).copied().unwrap_or(0);
        chunk.copy_from_slice(&word_bytes(reg, order));
    }
    out
}

/// The two bytes of one register, high byte first unless `order` swaps.
fn word_bytes(reg: u16, order: WordOrder) -> [u8; 2] {
    let [hi, lo] = reg.to_be_bytes();
    if order.bytes_swapped() {
        [lo, hi]
    } else {
        [hi, lo]
    }
}

/// ASCII text, two characters per register.
///
/// Words are never reordered: devices store strings first character
/// first whatever order they use for numbers, so only the byte swap
/// applies. Trailing NULs and spaces are padding, not content.
fn text(regs: &[u16], order: WordOrder) -> String {
    let mut bytes: Vec<u8> = regs.iter().flat_map(|&r| word_bytes(r, order)).collect();
    while let Some(b'\0' | b' ') = bytes.last() {
        bytes.pop();
    }
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// `x` as a value, or `NotFinite` for NaN and infinities.
fn finite(x: f64) -> Result<Value, DecodeError> {
    if x.is_finite() {
        Ok(Value::Float(x))
    } else {
        Err(DecodeError::NotFinite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::Area;
    use WordOrder::{Abcd, Badc, Cdab, Dcba};

    /// Registers of the big-endian bytes `be` laid out in each of the four
    /// orders, written out by hand per order rather than computed, so the
    /// vectors below check the rule and not a second copy of it.
    fn layouts(be: &[u8]) -> [(WordOrder, Vec<u16>); 4] {
        let words: Vec<u16> = be
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let swapped: Vec<u16> = words.iter().map(|w| w.swap_bytes()).collect();
        let rev = |v: &Vec<u16>| v.iter().rev().copied().collect::<Vec<u16>>();
        [
            (Abcd, words.clone()),
            (Cdab, rev(&words)),
            (Badc, swapped.clone()),
            (Dcba, rev(&swapped)),
        ]
    }

    fn tag(data_type: DataType, order: WordOrder) -> Tag {
        let mut t = Tag::new("t", Area::HoldingRegister, 0, data_type);
        t.word_order = order;
        t
    }

    #[test]
    fn f32_one_in_all_four_orders() {
        assert_eq!(
            raw_value(DataType::F32, Abcd, &[0x3F80, 0x0000]),
            Ok(Value::Float(1.0))
        );
        assert_eq!(
            raw_value(DataType::F32, Cdab, &[0x0000, 0x3F80]),
            Ok(Value::Float(1.0))
        );
        assert_eq!(
            raw_value(DataType::F32, Badc, &[0x803F, 0x0000]),
            Ok(Value::Float(1.0))
        );
        assert_eq!(
            raw_value(DataType::F32, Dcba, &[0x0000, 0x803F]),
            Ok(Value::Float(1.0))
        );
    }

    #[test]
    fn f32_vectors() {
        for x in [-2.5f32, 0.1, f32::MAX, f32::MIN_POSITIVE, -0.0] {
            for (order, regs) in layouts(&x.to_be_bytes()) {
                assert_eq!(
                    raw_value(DataType::F32, order, &regs),
                    Ok(Value::Float(f64::from(x))),
                    "{x} {order}"
                );
            }
        }
    }

    #[test]
    fn u32_123456789_in_all_orders() {
        // 123456789 = 0x075B_CD15
        let expect = Ok(Value::Int(123_456_789));
        assert_eq!(raw_value(DataType::U32, Abcd, &[0x075B, 0xCD15]), expect);
        assert_eq!(raw_value(DataType::U32, Cdab, &[0xCD15, 0x075B]), expect);
        assert_eq!(raw_value(DataType::U32, Badc, &[0x5B07, 0x15CD]), expect);
        assert_eq!(raw_value(DataType::U32, Dcba, &[0x15CD, 0x5B07]), expect);
        assert_eq!(
            raw_value(DataType::U32, Abcd, &[0xFFFF, 0xFFFF]),
            Ok(Value::Int(u32::MAX.into()))
        );
    }

    #[test]
    fn i32_minus_two_in_all_orders() {
        // -2 = 0xFFFF_FFFE
        let expect = Ok(Value::Int(-2));
        assert_eq!(raw_value(DataType::I32, Abcd, &[0xFFFF, 0xFFFE]), expect);
        assert_eq!(raw_value(DataType::I32, Cdab, &[0xFFFE, 0xFFFF]), expect);
        assert_eq!(raw_value(DataType::I32, Badc, &[0xFFFF, 0xFEFF]), expect);
        assert_eq!(raw_value(DataType::I32, Dcba, &[0xFEFF, 0xFFFF]), expect);
    }

    #[test]
    fn f64_one_and_a_half_in_all_orders() {
        // 1.5 = 0x3FF8_0000_0000_0000
        let expect = Ok(Value::Float(1.5));
        assert_eq!(raw_value(DataType::F64, Abcd, &[0x3FF8, 0, 0, 0]), expect);
        assert_eq!(raw_value(DataType::F64, Cdab, &[0, 0, 0, 0x3FF8]), expect);
        assert_eq!(raw_value(DataType::F64, Badc, &[0xF83F, 0, 0, 0]), expect);
        assert_eq!(raw_value(DataType::F64, Dcba, &[0, 0, 0, 0xF83F]), expect);
        // A value whose bytes all differ, so a misplaced word shows.
        let x = -1_234.567_890_123_f64;
        for (order, regs) in layouts(&x.to_be_bytes()) {
            assert_eq!(
                raw_value(DataType::F64, order, &regs),
                Ok(Value::Float(x)),
                "{order}"
            );
        }
    }

    #[test]
    fn i64_min_in_all_orders() {
        // i64::MIN = 0x8000_0000_0000_0000
        let expect = Ok(Value::Int(i64::MIN));
        assert_eq!(raw_value(DataType::I64, Abcd, &[0x8000, 0, 0, 0]), expect);
        assert_eq!(raw_value(DataType::I64, Cdab, &[0, 0, 0, 0x8000]), expect);
        assert_eq!(raw_value(DataType::I64, Badc, &[0x0080, 0, 0, 0]), expect);
        assert_eq!(raw_value(DataType::I64, Dcba, &[0, 0, 0, 0x0080]), expect);
    }

    #[test]
    fn i64_distinct_bytes_in_all_orders() {
        // 0x0102_0304_0506_0708: every byte different.
        let x = 0x0102_0304_0506_0708i64;
        assert_eq!(
            raw_value(DataType::I64, Abcd, &[0x0102, 0x0304, 0x0506, 0x0708]),
            Ok(Value::Int(x))
        );
        assert_eq!(
            raw_value(DataType::I64, Cdab, &[0x0708, 0x0506, 0x0304, 0x0102]),
            Ok(Value::Int(x))
        );
        assert_eq!(
            raw_value(DataType::I64, Badc, &[0x0201, 0x0403, 0x0605, 0x0807]),
            Ok(Value::Int(x))
        );
        assert_eq!(
            raw_value(DataType::I64, Dcba, &[0x0807, 0x0605, 0x0403, 0x0201]),
            Ok(Value::Int(x))
        );
    }

    #[test]
    fn u64_fits_int_or_becomes_uint() {
        for (order, regs) in layouts(&(i64::MAX as u64).to_be_bytes()) {
            assert_eq!(
                raw_value(DataType::U64, order, &regs),
                Ok(Value::Int(i64::MAX))
            );
        }
        for (order, regs) in layouts(&(1u64 << 63).to_be_bytes()) {
            assert_eq!(
                raw_value(DataType::U64, order, &regs),
                Ok(Value::UInt(1 << 63))
            );
        }
        assert_eq!(
            raw_value(DataType::U64, Abcd, &[0xFFFF; 4]),
            Ok(Value::UInt(u64::MAX))
        );
    }

    #[test]
    fn sixteen_bit_types_honour_the_byte_swap() {
        for (order, regs) in layouts(&0x1234u16.to_be_bytes()) {
            assert_eq!(
                raw_value(DataType::U16, order, &regs),
                Ok(Value::Int(0x1234)),
                "{order}"
            );
        }
        for (order, regs) in layouts(&(-300i16).to_be_bytes()) {
            assert_eq!(
                raw_value(DataType::I16, order, &regs),
                Ok(Value::Int(-300)),
                "{order}"
            );
        }
        assert_eq!(
            raw_value(DataType::U16, Abcd, &[0xFFFF]),
            Ok(Value::Int(65535))
        );
        assert_eq!(
            raw_value(DataType::I16, Abcd, &[0xFFFF]),
            Ok(Value::Int(-1))
        );
        assert_eq!(
            raw_value(DataType::I16, Cdab, &[0x8000]),
            Ok(Value::Int(-32768))
        );
    }

    #[test]
    fn bool_register_is_true_when_nonzero() {
        for order in WordOrder::ALL {
            assert_eq!(
                raw_value(DataType::Bool, order, &[0]),
                Ok(Value::Bool(false))
            );
            assert_eq!(
                raw_value(DataType::Bool, order, &[1]),
                Ok(Value::Bool(true))
            );
            assert_eq!(
                raw_value(DataType::Bool, order, &[0x8000]),
                Ok(Value::Bool(true))
            );
        }
    }

    #[test]
    fn bits_are_numbered_from_the_least_significant() {
        let reg = 0b1000_0000_0000_0101u16;
        for order in WordOrder::ALL {
            let bit = |n| raw_value(DataType::Bit(n), order, &[reg]);
            assert_eq!(bit(0), Ok(Value::Bool(true)));
            assert_eq!(bit(1), Ok(Value::Bool(false)));
            assert_eq!(bit(2), Ok(Value::Bool(true)));
            assert_eq!(bit(15), Ok(Value::Bool(true)));
            // Out-of-range indices wrap, as in `encode`, and never panic.
            assert_eq!(bit(16), Ok(Value::Bool(true)));
            assert_eq!(bit(255), Ok(Value::Bool(true)));
        }
    }

    #[test]
    fn string_pump_01_in_all_orders() {
        // "PUMP-01" + NUL: P=50 U=55 M=4D P=50 -=2D 0=30 1=31
        let abcd = [0x5055, 0x4D50, 0x2D30, 0x3100];
        let badc = [0x5550, 0x504D, 0x302D, 0x0031];
        let expect = Ok(Value::Text("PUMP-01".into()));
        assert_eq!(raw_value(DataType::String(4), Abcd, &abcd), expect);
        assert_eq!(raw_value(DataType::String(4), Cdab, &abcd), expect);
        assert_eq!(raw_value(DataType::String(4), Badc, &badc), expect);
        assert_eq!(raw_value(DataType::String(4), Dcba, &badc), expect);
    }

    #[test]
    fn string_padding_is_trimmed() {
        // "PUMP-01" then spaces, then NULs, mixed.
        let abcd: [u16; 7] = [0x5055, 0x4D50, 0x2D30, 0x3120, 0x2020, 0x0000, 0x2000];
        let badc: Vec<u16> = abcd.iter().map(|w| w.swap_bytes()).collect();
        let t = DataType::String(7);
        let expect = Ok(Value::Text("PUMP-01".into()));
        assert_eq!(raw_value(t, Abcd, &abcd), expect);
        assert_eq!(raw_value(t, Cdab, &abcd), expect);
        assert_eq!(raw_value(t, Badc, &badc), expect);
        assert_eq!(raw_value(t, Dcba, &badc), expect);
        // Leading and inner spaces are content.
        assert_eq!(
            raw_value(DataType::String(2), Abcd, &[0x2041, 0x2042]),
            Ok(Value::Text(" A B".into()))
        );
        assert_eq!(
            raw_value(DataType::String(2), Abcd, &[0, 0x2000]),
            Ok(Value::Text(String::new()))
        );
        assert_eq!(
            raw_value(DataType::String(0), Abcd, &[]),
            Ok(Value::Text(String::new()))
        );
    }

    #[test]
    fn string_invalid_utf8_is_replaced() {
        assert_eq!(
            raw_value(DataType::String(2), Abcd, &[0x41FF, 0x4200]),
            Ok(Value::Text("A\u{FFFD}B".into()))
        );
    }

    #[test]
    fn wrong_length_is_an_error_for_every_type() {
        let types = [
            DataType::Bool,
            DataType::Bit(3),
            DataType::U16,
            DataType::I16,
            DataType::U32,
            DataType::I32,
            DataType::U64,
            DataType::I64,
            DataType::F32,
            DataType::F64,
            DataType::String(3),
        ];
        let regs = [0u16; 8];
        for t in types {
            let width = usize::from(t.width());
            for got in [0, width - 1, width + 1, 8] {
                for order in WordOrder::ALL {
                    assert_eq!(
                        raw_value(t, order, &regs[..got]),
                        Err(DecodeError::WrongLength {
                            expected: width,
                            got
                        }),
                        "{t} {order} {got}"
                    );
                    assert_eq!(
                        decode(&tag(t, order), &regs[..got]),
                        Err(DecodeError::WrongLength {
                            expected: width,
                            got
                        })
                    );
                }
            }
        }
        assert_eq!(
            DecodeError::WrongLength {
                expected: 2,
                got: 1
            }
            .to_string(),
            "expected 2 registers, got 1"
        );
    }

    #[test]
    fn nan_and_infinity_are_not_finite() {
        for bits in [0x7FC0_0000u32, 0x7F80_0000, 0xFF80_0000, 0x7F80_0001] {
            for (order, regs) in layouts(&bits.to_be_bytes()) {
                assert_eq!(
                    raw_value(DataType::F32, order, &regs),
                    Err(DecodeError::NotFinite)
                );
                assert_eq!(
                    decode(&tag(DataType::F32, order), &regs),
                    Err(DecodeError::NotFinite)
                );
            }
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for (order, regs) in layouts(&x.to_be_bytes()) {
                assert_eq!(
                    raw_value(DataType::F64, order, &regs),
                    Err(DecodeError::NotFinite)
                );
            }
        }
    }

    #[test]
    fn scaling_that_overflows_is_not_finite() {
        let mut t = tag(DataType::F32, Abcd);
        t.scale = 1e300;
        let regs = encode_f32(f32::MAX);
        assert_eq!(decode(&t, &regs), Err(DecodeError::NotFinite));
        let mut t = tag(DataType::U16, Abcd);
        t.scale = f64::NAN;
        assert_eq!(decode(&t, &[1]), Err(DecodeError::NotFinite));
    }

    fn encode_f32(x: f32) -> Vec<u16> {
        x.to_be_bytes()
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect()
    }

    #[test]
    fn unscaled_integers_keep_their_type() {
        assert_eq!(
            decode(&tag(DataType::U16, Abcd), &[40000]),
            Ok(Value::Int(40000))
        );
        assert_eq!(
            decode(&tag(DataType::I16, Abcd), &[0xFFFE]),
            Ok(Value::Int(-2))
        );
        assert_eq!(
            decode(&tag(DataType::U64, Abcd), &[0xFFFF; 4]),
            Ok(Value::UInt(u64::MAX))
        );
        assert_eq!(
            decode(&tag(DataType::F32, Abcd), &[0x3F80, 0]),
            Ok(Value::Float(1.0))
        );
    }

    #[test]
    fn scale_and_offset_give_a_float() {
        // A temperature in tenths of a degree with a -40 offset.
        let mut t = tag(DataType::I16, Abcd);
        t.scale = 0.1;
        t.offset = -40.0;
        let Ok(Value::Float(x)) = decode(&t, &[625]) else {
            panic!("expected a float");
        };
        assert!((x - 22.5).abs() < 1e-9, "{x}");

        // Offset alone also makes a float.
        let mut t = tag(DataType::U32, Cdab);
        t.offset = 0.5;
        assert_eq!(decode(&t, &[0x0002, 0x0000]), Ok(Value::Float(2.5)));

        let mut t = tag(DataType::F32, Dcba);
        t.scale = 2.0;
        t.offset = 1.0;
        assert_eq!(decode(&t, &[0x0000, 0x803F]), Ok(Value::Float(3.0)));

        let mut t = tag(DataType::U64, Abcd);
        t.scale = 0.5;
        assert_eq!(decode(&t, &[0, 0, 0, 10]), Ok(Value::Float(5.0)));
    }

    #[test]
    fn scale_does_not_apply_to_bits_or_text() {
        let mut t = tag(DataType::Bit(0), Abcd);
        t.scale = 10.0;
        t.offset = 3.0;
        assert_eq!(decode(&t, &[1]), Ok(Value::Bool(true)));
        t.data_type = DataType::Bool;
        assert_eq!(decode(&t, &[0]), Ok(Value::Bool(false)));
        t.data_type = DataType::String(1);
        assert_eq!(decode(&t, &[0x4F4B]), Ok(Value::Text("OK".into())));
    }

    #[test]
    fn decode_bit_is_a_bool() {
        let mut t = Tag::new("run", Area::Coil, 7, DataType::Bool);
        assert_eq!(decode_bit(&t, true), Value::Bool(true));
        t.area = Area::DiscreteInput;
        t.scale = 5.0;
        assert_eq!(decode_bit(&t, false), Value::Bool(false));
    }

    #[test]
    fn registers_to_bytes_inverts_bytes_to_registers() {
        let be = [1u8, 2, 3, 4, 5, 6, 7, 8];
        for order in WordOrder::ALL {
            let regs = super::super::encode::bytes_to_registers(&be, order);
            assert_eq!(registers_to_bytes(&regs, order), be, "{order}");
            assert_eq!(registers_to_bytes(&regs[..2], order).len(), 4);
        }
        assert_eq!(registers_to_bytes(&[0x0102, 0x0304], Cdab), [3, 4, 1, 2]);
        assert_eq!(registers_to_bytes(&[0x0102, 0x0304], Badc), [2, 1, 4, 3]);
        assert_eq!(registers_to_bytes(&[0x0102, 0x0304], Dcba), [4, 3, 2, 1]);
        assert!(registers_to_bytes(&[], Dcba).is_empty());
    }

    #[test]
    fn all_orders_f32_follows_word_order_all() {
        let got = decode_all_orders_f32([0x3F80, 0x0000]);
        assert_eq!(got[0], 1.0);
        // CDAB reads 0x0000_3F80, a tiny subnormal.
        assert_eq!(got[1], f32::from_bits(0x0000_3F80));
        assert_eq!(got[2], f32::from_bits(0x803F_0000));
        assert_eq!(got[3], f32::from_bits(0x0000_803F));
        for (i, order) in WordOrder::ALL.into_iter().enumerate() {
            let regs = super::super::encode::encode(&Value::Float(-7.25), DataType::F32, order);
            let pair = [regs[0], regs[1]];
            assert_eq!(decode_all_orders_f32(pair)[i], -7.25, "{order}");
        }
        // NaN is shown, not rejected.
        assert!(decode_all_orders_f32([0x7FC0, 0])[0].is_nan());
    }
}
