//! Property tests of `modbus::decode`.
//!
//! Three checks, each over every data type and all four word orders:
//!
//! 1. decoding inverts an encoder written here, independently of
//!    `modbus::encode`, so a rule misread in both places is still caught;
//! 2. `encode::encode` and `decode::raw_value` agree on random values;
//! 3. `raw_value` and `decode` never panic, whatever registers arrive.

use fieldgate::modbus::decode::{DecodeError, decode, raw_value};
use fieldgate::modbus::encode::encode;
use fieldgate::tag::{Area, DataType, Tag, Value, WordOrder};
use proptest::prelude::*;

// ---------------------------------------------------------------------
// The independent encoder.
//
// Instead of "reverse the words, then swap the bytes" (what the crate
// does), each order is read straight off the little- or big-endian bytes
// of the value. For the value A B C D:
//
//   ABCD  big-endian bytes,    each pair read big-endian     AB CD
//   BADC  big-endian bytes,    each pair read little-endian  BA DC
//   DCBA  little-endian bytes, each pair read big-endian     DC BA
//   CDAB  little-endian bytes, each pair read little-endian  CD AB
//
// and the same for 2 and 8 bytes.
// ---------------------------------------------------------------------

/// Reads one register from two bytes, high-first or low-first.
type PairReader = fn([u8; 2]) -> u16;

/// Registers holding a number whose big- and little-endian bytes are
/// `be` and `le`, in `order`.
fn number_registers(be: &[u8], le: &[u8], order: WordOrder) -> Vec<u16> {
    let (bytes, pair): (&[u8], PairReader) = match order {
        WordOrder::Abcd => (be, u16::from_be_bytes),
        WordOrder::Badc => (be, u16::from_le_bytes),
        WordOrder::Dcba => (le, u16::from_be_bytes),
        WordOrder::Cdab => (le, u16::from_le_bytes),
    };
    bytes.chunks_exact(2).map(|p| pair([p[0], p[1]])).collect()
}

/// Registers holding `bytes` as a string: words never move, the first
/// character is high for ABCD/CDAB and low for BADC/DCBA.
fn string_registers(bytes: &[u8], order: WordOrder) -> Vec<u16> {
    let pair: PairReader = match order {
        WordOrder::Abcd | WordOrder::Cdab => u16::from_be_bytes,
        WordOrder::Badc | WordOrder::Dcba => u16::from_le_bytes,
    };
    bytes.chunks_exact(2).map(|p| pair([p[0], p[1]])).collect()
}

macro_rules! regs_of {
    ($x:expr, $order:expr) => {
        number_registers(&$x.to_be_bytes(), &$x.to_le_bytes(), $order)
    };
}

fn order() -> impl Strategy<Value = WordOrder> {
    prop::sample::select(WordOrder::ALL.to_vec())
}

/// Any f32 bit pattern, NaNs and infinities included, with the finite
/// ones over-represented so most cases check a value.
fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => any::<f32>(),
        1 => any::<u32>().prop_map(f32::from_bits),
    ]
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        1 => any::<u64>().prop_map(f64::from_bits),
    ]
}

/// What decoding a float should give: the value, or `NotFinite`.
fn float_expect(x: f64) -> Result<Value, DecodeError> {
    if x.is_finite() {
        Ok(Value::Float(x))
    } else {
        Err(DecodeError::NotFinite)
    }
}

/// Every data type, with bit indices and string lengths left free.
fn any_type() -> impl Strategy<Value = DataType> {
    prop_oneof![
        Just(DataType::Bool),
        any::<u8>().prop_map(DataType::Bit),
        Just(DataType::U16),
        Just(DataType::I16),
        Just(DataType::U32),
        Just(DataType::I32),
        Just(DataType::U64),
        Just(DataType::I64),
        Just(DataType::F32),
        Just(DataType::F64),
        (0u16..=130).prop_map(DataType::String),
    ]
}

proptest! {
    // ---- 1. round trip against the independent encoder ----

    #[test]
    fn u16_round_trips(x: u16, order in order()) {
        prop_assert_eq!(raw_value(DataType::U16, order, &regs_of!(x, order)), Ok(Value::Int(x.into())));
    }

    #[test]
    fn i16_round_trips(x: i16, order in order()) {
        prop_assert_eq!(raw_value(DataType::I16, order, &regs_of!(x, order)), Ok(Value::Int(x.into())));
    }

    #[test]
    fn u32_round_trips(x: u32, order in order()) {
        prop_assert_eq!(raw_value(DataType::U32, order, &regs_of!(x, order)), Ok(Value::Int(x.into())));
    }

    #[test]
    fn i32_round_trips(x: i32, order in order()) {
        prop_assert_eq!(raw_value(DataType::I32, order, &regs_of!(x, order)), Ok(Value::Int(x.into())));
    }

    #[test]
    fn u64_round_trips(x: u64, order in order()) {
        let expect = if x <= i64::MAX as u64 { Value::Int(x as i64) } else { Value::UInt(x) };
        prop_assert_eq!(raw_value(DataType::U64, order, &regs_of!(x, order)), Ok(expect));
    }

    #[test]
    fn i64_round_trips(x: i64, order in order()) {
        prop_assert_eq!(raw_value(DataType::I64, order, &regs_of!(x, order)), Ok(Value::Int(x)));
    }

    #[test]
    fn f32_round_trips(x in any_f32(), order in order()) {
        let got = raw_value(DataType::F32, order, &regs_of!(x, order));
        prop_assert_eq!(&got, &float_expect(f64::from(x)));
        // Equal as numbers is not enough for -0.0: compare the bits.
        if let Ok(Value::Float(y)) = got {
            prop_assert_eq!((y as f32).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn f64_round_trips(x in any_f64(), order in order()) {
        let got = raw_value(DataType::F64, order, &regs_of!(x, order));
        prop_assert_eq!(&got, &float_expect(x));
        if let Ok(Value::Float(y)) = got {
            prop_assert_eq!(y.to_bits(), x.to_bits());
        }
    }

    #[test]
    fn bool_is_nonzero(reg: u16, order in order()) {
        prop_assert_eq!(raw_value(DataType::Bool, order, &[reg]), Ok(Value::Bool(reg != 0)));
    }

    #[test]
    fn bit_n_is_that_bit(reg: u16, n in 0u8..16, order in order()) {
        prop_assert_eq!(
            raw_value(DataType::Bit(n), order, &[reg]),
            Ok(Value::Bool(reg & (1 << n) != 0))
        );
    }

    #[test]
    fn ascii_string_round_trips(
        (n, text, pad) in (0u16..=40).prop_flat_map(|n| {
            let chars = 2 * usize::from(n);
            (Just(n), prop::collection::vec(0x20u8..0x7F, 0..=chars), prop::collection::vec(prop::sample::select(vec![0u8, b' ']), chars))
        }),
        order in order(),
    ) {
        // Text, then a random mix of NUL and space padding.
        let mut bytes = text.clone();
        bytes.extend_from_slice(&pad[..pad.len() - text.len()]);
        let expect = String::from_utf8(text).unwrap().trim_end_matches([' ', '\0']).to_owned();
        prop_assert_eq!(
            raw_value(DataType::String(n), order, &string_registers(&bytes, order)),
            Ok(Value::Text(expect))
        );
    }

    #[test]
    fn any_string_bytes_decode_lossily(
        bytes in (0usize..=40).prop_flat_map(|n| prop::collection::vec(any::<u8>(), 2 * n)),
        order in order(),
    ) {
        let n = u16::try_from(bytes.len() / 2).unwrap();
        let lossy = String::from_utf8_lossy(&bytes);
        let expect = lossy.trim_end_matches([' ', '\0']);
        // NUL and space are single ASCII bytes, which always end an invalid
        // sequence, so trimming before or after the lossy step is the same.
        prop_assert_eq!(
            raw_value(DataType::String(n), order, &string_registers(&bytes, order)),
            Ok(Value::Text(expect.to_owned()))
        );
    }

    // ---- 2. `encode::encode` and `decode::raw_value` agree ----

    #[test]
    fn encode_then_decode_integers(x: i64, u: u64, order in order()) {
        let cases: [(DataType, Value, Value); 6] = [
            (DataType::U16, Value::Int(x.rem_euclid(1 << 16)), Value::Int(x.rem_euclid(1 << 16))),
            (DataType::I16, Value::Int(i64::from(x as i16)), Value::Int(i64::from(x as i16))),
            (DataType::U32, Value::Int(x.rem_euclid(1 << 32)), Value::Int(x.rem_euclid(1 << 32))),
            (DataType::I32, Value::Int(i64::from(x as i32)), Value::Int(i64::from(x as i32))),
            (DataType::I64, Value::Int(x), Value::Int(x)),
            (
                DataType::U64,
                Value::UInt(u),
                if u <= i64::MAX as u64 { Value::Int(u as i64) } else { Value::UInt(u) },
            ),
        ];
        for (t, value, expect) in cases {
            let regs = encode(&value, t, order);
            prop_assert_eq!(raw_value(t, order, &regs), Ok(expect), "{} {}", t, order);
        }
    }

    #[test]
    fn encode_then_decode_floats(x in any_f32(), y in any_f64(), order in order()) {
        let regs = encode(&Value::Float(f64::from(x)), DataType::F32, order);
        prop_assert_eq!(raw_value(DataType::F32, order, &regs), float_expect(f64::from(x)));
        let regs = encode(&Value::Float(y), DataType::F64, order);
        prop_assert_eq!(raw_value(DataType::F64, order, &regs), float_expect(y));
    }

    #[test]
    fn encode_then_decode_bits(b: bool, n in 0u8..16, order in order()) {
        for t in [DataType::Bool, DataType::Bit(n)] {
            let regs = encode(&Value::Bool(b), t, order);
            prop_assert_eq!(raw_value(t, order, &regs), Ok(Value::Bool(b)));
        }
    }

    #[test]
    fn encode_then_decode_text(
        (n, text) in (0u16..=40).prop_flat_map(|n| (Just(n), prop::collection::vec(0x21u8..0x7F, 0..=2 * usize::from(n)))),
        inner_space: bool,
        order in order(),
    ) {
        let mut text = String::from_utf8(text).unwrap();
        if inner_space && text.len() >= 2 {
            text.replace_range(0..1, " ");
        }
        let regs = encode(&Value::Text(text.clone()), DataType::String(n), order);
        prop_assert_eq!(raw_value(DataType::String(n), order, &regs), Ok(Value::Text(text)));
    }

    // ---- 3. never panics ----

    #[test]
    fn raw_value_never_panics(
        t in any_type(),
        order in order(),
        regs in prop::collection::vec(any::<u16>(), 0..140),
    ) {
        let width = usize::from(t.width());
        match raw_value(t, order, &regs) {
            Err(DecodeError::WrongLength { expected, got }) => {
                prop_assert_eq!(expected, width);
                prop_assert_eq!(got, regs.len());
                prop_assert_ne!(got, expected);
            }
            Err(DecodeError::NotFinite) => {
                prop_assert!(matches!(t, DataType::F32 | DataType::F64));
            }
            Ok(_) => prop_assert_eq!(regs.len(), width),
        }
    }

    #[test]
    fn exact_width_never_panics(
        (t, regs) in any_type().prop_flat_map(|t| {
            (Just(t), prop::collection::vec(any::<u16>(), usize::from(t.width())))
        }),
        order in order(),
        scale in any_f64(),
        offset in any_f64(),
    ) {
        let got = raw_value(t, order, &regs);
        if !matches!(t, DataType::F32 | DataType::F64) {
            prop_assert!(got.is_ok());
        }
        let mut tag = Tag::new("p", Area::HoldingRegister, 0, t);
        tag.word_order = order;
        tag.scale = scale;
        tag.offset = offset;
        match decode(&tag, &regs) {
            Ok(Value::Float(x)) => prop_assert!(x.is_finite()),
            Ok(_) | Err(DecodeError::NotFinite) => {}
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
