//! Write-back on the wire side: a checked engineering value turned into
//! the registers or coil a device takes (pure: [`fit`], [`plan`],
//! [`matches`]), and the job a link's task executes ([`WriteJob`]).
//!
//! # What a tag takes
//!
//! [`fit`] reads a requested value as the tag's type, in engineering
//! units, before any limit is checked:
//!
//! * `bool` and `bit` tags take `true`/`false`, or the numbers 1 and 0;
//! * numeric tags take numbers. An unscaled integer tag takes only whole
//!   numbers (42.5 for a `u16` is refused, not rounded: the sender meant
//!   something the register cannot hold), and also `true`/`false` as 1/0,
//!   because command words that take 1 to start are often sent a boolean.
//!   A scaled or float tag does not take booleans;
//! * `string` tags take text (ASCII, no NUL, which would end it early).
//!
//! # How it goes on the wire
//!
//! [`plan`] inverts the tag's scaling, `raw = (v − offset) / scale`,
//! rounds to the nearest integer for integer types, refuses a raw value
//! outside the register type (`NotRepresentable`, with the numbers), lays
//! the words out in the tag's word order as [`decode`](super::decode)
//! reads them, and picks the function code the device accepts: FC5 for a
//! coil (FC15 when the device takes only that), FC6 for one register
//! (FC16 when the device takes only that), FC16 for several. A bit of a
//! holding register is a read-modify-write on the link's task
//! ([`WritePlan::Bit`]), so no poll falls between the read and the write.
//!
//! [`matches`] compares a read-back with what was written as the device
//! holds it: the written value goes through the same inverse scaling and
//! back through the decoder, so a scaled or `f32` value that cannot be
//! held exactly is not reported as a mismatch.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::decode;
use super::encode;
use super::frame::{BadWrite, MAX_WRITE_REGISTERS, WriteData, WriteRequest};
use crate::command::{RejectReason, Requested, WriteResult};
use crate::config::Device;
use crate::tag::{Area, DataType, Tag, Value};

/// How a write goes on the wire, chosen from the tag and the function
/// codes its device accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritePlan {
    /// One coil: FC5, or FC15 with a quantity of one when the device
    /// takes only that.
    Coil {
        /// Coil address (0-based).
        address: u16,
        /// On or off.
        on: bool,
        /// 5 or 15.
        function: u8,
    },
    /// Whole registers: FC6 for one (when accepted), FC16 otherwise.
    Registers {
        /// First register (0-based).
        address: u16,
        /// The words, in the tag's word order.
        words: Vec<u16>,
        /// 6 or 16.
        function: u8,
    },
    /// One bit of a holding register: read the register, set or clear the
    /// bit, write it back (on the link's task, so no poll interleaves).
    Bit {
        /// Register (0-based).
        address: u16,
        /// Bit 0–15.
        bit: u8,
        /// Set or clear.
        on: bool,
        /// 6 or 16.
        function: u8,
    },
}

/// Fits a requested value to the tag's type, in engineering units: a
/// number for a numeric tag (an integer type unscaled takes only whole
/// numbers), a bool (or 0/1) for a bool or bit, text for a string.
pub fn fit(tag: &Tag, requested: &Requested) -> Result<Value, RejectReason> {
    let data_type = tag.data_type;
    let wrong = |what: String| Err(RejectReason::WrongType(what));
    match (data_type, requested) {
        (_, Requested::Malformed(why)) => Err(RejectReason::BadPayload(why.clone())),
        (DataType::Bool | DataType::Bit(_), Requested::Bool(b)) => Ok(Value::Bool(*b)),
        (DataType::Bool | DataType::Bit(_), Requested::Number(x)) if *x == 0.0 || *x == 1.0 => {
            Ok(Value::Bool(*x == 1.0))
        }
        (DataType::Bool | DataType::Bit(_), other) => wrong(format!(
            "a {} tag takes true or false (or 1 or 0), not {other}",
            data_type.name()
        )),
        (DataType::String(_), Requested::Text(text)) => Ok(Value::Text(text.clone())),
        (DataType::String(_), other) => wrong(format!("a string tag takes text, not {other}")),
        (_, Requested::Number(x)) => number(tag, *x),
        (_, Requested::Bool(b)) if is_integer(data_type) && tag.is_unscaled() => {
            Ok(Value::Int(i64::from(*b)))
        }
        (_, other) => wrong(format!(
            "a {} tag takes a number, not {other}",
            data_type.name()
        )),
    }
}

/// A JSON number for a numeric tag.
fn number(tag: &Tag, x: f64) -> Result<Value, RejectReason> {
    if !x.is_finite() {
        return Err(RejectReason::WrongType(format!(
            "{x} is not a finite number"
        )));
    }
    if !(is_integer(tag.data_type) && tag.is_unscaled()) {
        return Ok(Value::Float(x));
    }
    if x.fract() != 0.0 {
        return Err(RejectReason::WrongType(format!(
            "an unscaled {} tag takes whole numbers; {x} is not one",
            tag.data_type.name()
        )));
    }
    // Whole and finite: exact in i64 below 2^63, in u64 below 2^64; beyond
    // both it stays a float, which `plan` refuses with the type's range.
    Ok(if (-TWO_63..TWO_63).contains(&x) {
        Value::Int(x as i64)
    } else if (0.0..2.0 * TWO_63).contains(&x) {
        Value::UInt(x as u64)
    } else {
        Value::Float(x)
    })
}

/// 2^63 as a float (exact).
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

fn is_integer(data_type: DataType) -> bool {
    matches!(
        data_type,
        DataType::U16
            | DataType::I16
            | DataType::U32
            | DataType::I32
            | DataType::U64
            | DataType::I64
    )
}

/// Why `tag` of `device` cannot be written at all, whatever the value:
/// a read-only area, no function code the device accepts for it, or more
/// registers than one write carries. `None` when it can be.
pub fn unwritable(device: &Device, tag: &Tag) -> Option<String> {
    let width = usize::from(tag.width());
    match tag.area {
        Area::DiscreteInput => return Some("a discrete input is read-only".into()),
        Area::InputRegister => return Some("an input register is read-only".into()),
        Area::HoldingRegister if width > MAX_WRITE_REGISTERS => {
            return Some(format!(
                "{} is longer than one write ({MAX_WRITE_REGISTERS} registers)",
                tag.data_type
            ));
        }
        Area::Coil | Area::HoldingRegister => {}
    }
    // The same choice of function code as `check` makes.
    if device.write_functions.for_tag(tag).is_some() {
        return None;
    }
    let needs = match (tag.area, width) {
        (Area::Coil, _) => "a coil needs FC5 or FC15".to_owned(),
        (_, 1) => "a register needs FC6 or FC16".to_owned(),
        (_, n) => format!("{n} registers need FC16"),
    };
    Some(format!(
        "{needs}; the device's write_functions are {:?}",
        device.write_functions.codes()
    ))
}

/// Plans the write of `value` (already fitted and range-checked) to
/// `tag` of `device`: inverse scaling (`(v − offset) / scale`, rounded for
/// integer types), range-checked for the register type, laid out in the
/// tag's word order, with the function code the device accepts.
///
/// A tag that cannot be written at all is `NotWritable` (see
/// [`unwritable`] for the reason, which `check` reports at load time).
pub fn plan(device: &Device, tag: &Tag, value: &Value) -> Result<WritePlan, RejectReason> {
    if unwritable(device, tag).is_some() {
        return Err(RejectReason::NotWritable);
    }
    let function = device
        .write_functions
        .for_tag(tag)
        .ok_or(RejectReason::NotWritable)?;
    if tag.area == Area::Coil {
        return Ok(WritePlan::Coil {
            address: tag.address,
            on: as_bool(tag, value)?,
            function,
        });
    }
    if let DataType::Bit(bit) = tag.data_type {
        return Ok(WritePlan::Bit {
            address: tag.address,
            bit: bit & 15,
            on: as_bool(tag, value)?,
            function,
        });
    }
    Ok(WritePlan::Registers {
        address: tag.address,
        words: raw_words(tag, value)?,
        function,
    })
}

/// True when the value read back equals the value written, compared as
/// the registers (or bit) the device holds, so scale and word order
/// cannot make a false mismatch.
pub fn matches(tag: &Tag, written: &Value, read_back: &Value) -> bool {
    if tag.area.is_bit() || matches!(tag.data_type, DataType::Bit(_) | DataType::Bool) {
        return match (as_bool(tag, written), as_bool(tag, read_back)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
    }
    // What the device holds after the write, as the poller reads it.
    match raw_words(tag, written).map(|words| decode::decode(tag, &words)) {
        Ok(Ok(held)) => held == *read_back,
        _ => false,
    }
}

impl WritePlan {
    /// The request that carries this plan to unit `unit`. For a bit,
    /// `register` is the register's value read just before (the other
    /// fifteen bits are written back as they were).
    pub fn request(&self, unit: u8, register: Option<u16>) -> Result<WriteRequest, BadWrite> {
        match self {
            WritePlan::Coil {
                address,
                on,
                function,
            } => {
                let data = if *function == 15 {
                    WriteData::Coils(vec![*on])
                } else {
                    WriteData::Coil(*on)
                };
                WriteRequest::new(unit, *address, data)
            }
            WritePlan::Registers {
                address,
                words,
                function,
            } => {
                let data = match words.as_slice() {
                    [one] if *function == 6 => WriteData::Register(*one),
                    _ => WriteData::Registers(words.clone()),
                };
                WriteRequest::new(unit, *address, data)
            }
            WritePlan::Bit {
                address,
                bit,
                on,
                function,
            } => {
                let mask = 1u16 << (bit & 15);
                let old = register.unwrap_or(0);
                let new = if *on { old | mask } else { old & !mask };
                let data = if *function == 6 {
                    WriteData::Register(new)
                } else {
                    WriteData::Registers(vec![new])
                };
                WriteRequest::new(unit, *address, data)
            }
        }
    }

    /// The function code.
    pub fn function(&self) -> u8 {
        match self {
            WritePlan::Coil { function, .. }
            | WritePlan::Registers { function, .. }
            | WritePlan::Bit { function, .. } => *function,
        }
    }
}

/// A bool (or the numbers 1 and 0) for a coil or a bit.
fn as_bool(tag: &Tag, value: &Value) -> Result<bool, RejectReason> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => match other.as_f64() {
            Some(0.0) => Ok(false),
            Some(1.0) => Ok(true),
            _ => Err(RejectReason::WrongType(format!(
                "a {} tag takes true or false, not {other}",
                tag.data_type.name()
            ))),
        },
    }
}

/// The registers a register tag holds for engineering `value`, in its
/// word order.
fn raw_words(tag: &Tag, value: &Value) -> Result<Vec<u16>, RejectReason> {
    let data_type = tag.data_type;
    let order = tag.word_order;
    let raw = match data_type {
        DataType::Bool | DataType::Bit(_) => Value::Bool(as_bool(tag, value)?),
        DataType::String(n) => Value::Text(text(value, n)?),
        DataType::F32 | DataType::F64 => Value::Float(float_raw(tag, value)?),
        _ => integer_raw(tag, value)?,
    };
    Ok(encode::encode(&raw, data_type, order))
}

/// Text that fits a string of `registers` registers.
fn text(value: &Value, registers: u16) -> Result<String, RejectReason> {
    let Value::Text(text) = value else {
        return Err(RejectReason::WrongType(format!(
            "a string tag takes text, not {value}"
        )));
    };
    let room = usize::from(registers) * 2;
    if !text.is_ascii() {
        return Err(RejectReason::NotRepresentable(
            "only ASCII text fits a string register".into(),
        ));
    }
    if text.contains('\0') {
        return Err(RejectReason::NotRepresentable(
            "text with a NUL character (it would end the text early)".into(),
        ));
    }
    if text.len() > room {
        return Err(RejectReason::NotRepresentable(format!(
            "{} characters, the tag holds {room} ({registers} registers)",
            text.len()
        )));
    }
    Ok(text.clone())
}

/// The engineering value as a number, and the raw value it scales from.
fn unscale(tag: &Tag, value: &Value) -> Result<(f64, f64), RejectReason> {
    let Some(x) = value.as_f64().filter(|_| !matches!(value, Value::Text(_))) else {
        return Err(RejectReason::WrongType(format!(
            "a {} tag takes a number, not {value}",
            tag.data_type.name()
        )));
    };
    if !x.is_finite() {
        return Err(RejectReason::NotRepresentable(format!(
            "{x} is not a finite number"
        )));
    }
    let raw = (x - tag.offset) / tag.scale;
    if !raw.is_finite() {
        return Err(RejectReason::NotRepresentable(format!(
            "{x} gives no raw value with scale {} and offset {}",
            tag.scale, tag.offset
        )));
    }
    Ok((x, raw))
}

fn float_raw(tag: &Tag, value: &Value) -> Result<f64, RejectReason> {
    let (x, raw) = unscale(tag, value)?;
    if tag.data_type == DataType::F32 && (raw as f32).is_infinite() {
        return Err(RejectReason::NotRepresentable(format!(
            "{x} is {raw:e} raw, beyond the f32 range (±{:e})",
            f32::MAX
        )));
    }
    Ok(raw)
}

/// The raw integer of an integer tag, range-checked for its type.
fn integer_raw(tag: &Tag, value: &Value) -> Result<Value, RejectReason> {
    let (lo, hi): (i128, i128) = match tag.data_type {
        DataType::U16 => (0, u16::MAX.into()),
        DataType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::U32 => (0, u32::MAX.into()),
        DataType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::U64 => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    let range = || format!("the {} range {lo} to {hi}", tag.data_type.name());
    // Unscaled integers keep every bit: no trip through a float.
    let exact = match value {
        Value::Int(i) if tag.is_unscaled() => Some(i128::from(*i)),
        Value::UInt(u) if tag.is_unscaled() => Some(i128::from(*u)),
        _ => None,
    };
    let raw = match exact {
        Some(raw) => {
            if !(lo..=hi).contains(&raw) {
                return Err(RejectReason::NotRepresentable(format!(
                    "{raw} is outside {}",
                    range()
                )));
            }
            raw
        }
        None => {
            let (x, raw) = unscale(tag, value)?;
            let rounded = raw.round();
            // The float comparison first: a cast saturates, so 2^64 would
            // pass for u64::MAX.
            if rounded < lo as f64 || rounded > hi as f64 || !(lo..=hi).contains(&(rounded as i128))
            {
                let how = if tag.is_unscaled() {
                    String::new()
                } else {
                    format!(" (({x} − {}) / {})", tag.offset, tag.scale)
                };
                return Err(RejectReason::NotRepresentable(format!(
                    "{x} is {rounded} raw{how}, outside {}",
                    range()
                )));
            }
            rounded as i128
        }
    };
    Ok(match i64::try_from(raw) {
        Ok(i) => Value::Int(i),
        // ok: within u64 by the range check above.
        Err(_) => Value::UInt(raw as u64),
    })
}

/// A write for a link's task: one tag of one of its devices, checked by
/// the write desk and planned.
#[derive(Debug)]
pub struct WriteJob {
    /// The device, by name (one of the link's).
    pub device: String,
    /// The tag's index in the device's tags.
    pub tag: usize,
    /// The value, in engineering units, as fitted.
    pub value: Value,
    /// How it goes on the wire.
    pub plan: WritePlan,
    /// Read the tag back after the write and compare.
    pub confirm: bool,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<WriteDone>,
}

/// What the link's task did with a [`WriteJob`].
#[derive(Debug, Clone, PartialEq)]
pub struct WriteDone {
    /// The tag's value read just before the write.
    pub old: Option<Value>,
    /// The value read back after the write (with `confirm`).
    pub read_back: Option<Value>,
    /// `Rejected` (device down, refused with an exception: nothing
    /// written), `Written`, `Verified` or `Unknown` (no answer to the
    /// write itself).
    pub result: WriteResult,
}

/// Capacity of each link's write queue.
pub const JOBS_CAPACITY: usize = 16;

/// Where to send a device's write jobs: its link's task.
#[derive(Debug, Clone, Default)]
pub struct Writers {
    by_device: HashMap<String, mpsc::Sender<WriteJob>>,
}

impl Writers {
    /// The queue of `device`'s link, if the device is polled.
    pub fn sender(&self, device: &str) -> Option<&mpsc::Sender<WriteJob>> {
        self.by_device.get(device)
    }

    /// Adds `device`'s link queue.
    pub fn insert(&mut self, device: String, tx: mpsc::Sender<WriteJob>) {
        self.by_device.insert(device, tx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Connection, WriteFunctions};
    use crate::tag::WordOrder;
    use proptest::prelude::*;

    fn device(tags: Vec<Tag>) -> Device {
        Device::new(
            "plc",
            Connection::Tcp {
                host: "127.0.0.1".into(),
                port: 502,
            },
            tags,
        )
    }

    fn holding(data_type: DataType) -> Tag {
        Tag::new("t", Area::HoldingRegister, 10, data_type)
    }

    fn scaled(data_type: DataType, scale: f64, offset: f64) -> Tag {
        let mut t = holding(data_type);
        t.scale = scale;
        t.offset = offset;
        t
    }

    fn only(codes: &[u8]) -> WriteFunctions {
        WriteFunctions {
            fc5: codes.contains(&5),
            fc6: codes.contains(&6),
            fc15: codes.contains(&15),
            fc16: codes.contains(&16),
        }
    }

    fn code<T>(r: Result<T, RejectReason>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn fit_reads_the_request_as_the_tags_type() {
        let n = Requested::Number;
        let u16_tag = holding(DataType::U16);
        assert_eq!(fit(&u16_tag, &n(42.0)), Ok(Value::Int(42)));
        assert_eq!(fit(&u16_tag, &Requested::Bool(true)), Ok(Value::Int(1)));
        let half = fit(&u16_tag, &n(42.5));
        assert_eq!(code(half.clone()), "wrong_type");
        assert!(format!("{:?}", half).contains("42.5"), "{half:?}");
        assert_eq!(
            code(fit(&u16_tag, &Requested::Text("42".into()))),
            "wrong_type"
        );
        assert_eq!(code(fit(&u16_tag, &n(f64::NAN))), "wrong_type");
        assert_eq!(code(fit(&u16_tag, &n(f64::INFINITY))), "wrong_type");
        assert_eq!(
            fit(&u16_tag, &Requested::Malformed("no v".into())),
            Err(RejectReason::BadPayload("no v".into()))
        );
        // Scaled integers and floats take any finite number, no booleans.
        let sp = scaled(DataType::U16, 0.1, 0.0);
        assert_eq!(fit(&sp, &n(42.5)), Ok(Value::Float(42.5)));
        assert_eq!(code(fit(&sp, &Requested::Bool(true))), "wrong_type");
        let f = holding(DataType::F32);
        assert_eq!(fit(&f, &n(1.0)), Ok(Value::Float(1.0)));
        assert_eq!(code(fit(&f, &Requested::Bool(false))), "wrong_type");
        // Large whole numbers of unscaled integers.
        let u64_tag = holding(DataType::U64);
        assert_eq!(
            fit(&u64_tag, &n(1e19)),
            Ok(Value::UInt(10_000_000_000_000_000_000))
        );
        assert_eq!(fit(&u64_tag, &n(-5.0)), Ok(Value::Int(-5)));
        // Bools and bits.
        for t in [DataType::Bool, DataType::Bit(3)] {
            let tag = holding(t);
            assert_eq!(fit(&tag, &Requested::Bool(true)), Ok(Value::Bool(true)));
            assert_eq!(fit(&tag, &n(0.0)), Ok(Value::Bool(false)));
            assert_eq!(fit(&tag, &n(1.0)), Ok(Value::Bool(true)));
            assert_eq!(code(fit(&tag, &n(2.0))), "wrong_type");
            assert_eq!(
                code(fit(&tag, &Requested::Text("true".into()))),
                "wrong_type"
            );
        }
        // Strings.
        let s = holding(DataType::String(2));
        assert_eq!(
            fit(&s, &Requested::Text("AB".into())),
            Ok(Value::Text("AB".into()))
        );
        assert_eq!(code(fit(&s, &n(1.0))), "wrong_type");
    }

    #[test]
    fn plans_for_each_area_and_function() {
        let d = device(Vec::new());
        let coil = Tag::new("c", Area::Coil, 3, DataType::Bool);
        assert_eq!(
            plan(&d, &coil, &Value::Bool(true)),
            Ok(WritePlan::Coil {
                address: 3,
                on: true,
                function: 5
            })
        );
        let u16_tag = holding(DataType::U16);
        assert_eq!(
            plan(&d, &u16_tag, &Value::Int(0x1234)),
            Ok(WritePlan::Registers {
                address: 10,
                words: vec![0x1234],
                function: 6
            })
        );
        let f = holding(DataType::F32);
        assert_eq!(
            plan(&d, &f, &Value::Float(1.0)),
            Ok(WritePlan::Registers {
                address: 10,
                words: vec![0x3F80, 0],
                function: 16
            })
        );
        let bit = holding(DataType::Bit(5));
        assert_eq!(
            plan(&d, &bit, &Value::Bool(false)),
            Ok(WritePlan::Bit {
                address: 10,
                bit: 5,
                on: false,
                function: 6
            })
        );
        // A device that takes only FC16 and FC15.
        let mut d16 = device(Vec::new());
        d16.write_functions = only(&[15, 16]);
        assert_eq!(
            plan(&d16, &u16_tag, &Value::Int(1)).map(|p| p.function()),
            Ok(16)
        );
        assert_eq!(
            plan(&d16, &bit, &Value::Bool(true)).map(|p| p.function()),
            Ok(16)
        );
        assert_eq!(
            plan(&d16, &coil, &Value::Bool(true)).map(|p| p.function()),
            Ok(15)
        );
        // Read-only areas, and no function for the tag.
        for area in [Area::DiscreteInput, Area::InputRegister] {
            let t = Tag::new("r", area, 0, DataType::Bool);
            assert_eq!(
                plan(&d, &t, &Value::Bool(true)),
                Err(RejectReason::NotWritable)
            );
            assert!(unwritable(&d, &t).is_some_and(|w| w.contains("read-only")));
        }
        let mut d6 = device(Vec::new());
        d6.write_functions = only(&[6]);
        assert_eq!(
            plan(&d6, &u16_tag, &Value::Int(1)).map(|p| p.function()),
            Ok(6)
        );
        assert_eq!(
            plan(&d6, &f, &Value::Float(1.0)),
            Err(RejectReason::NotWritable)
        );
        assert!(unwritable(&d6, &f).is_some_and(|w| w.contains("FC16")));
        assert_eq!(
            plan(&d6, &coil, &Value::Bool(true)),
            Err(RejectReason::NotWritable)
        );
        let long = holding(DataType::String(124));
        assert!(unwritable(&d, &long).is_some_and(|w| w.contains("123")));
        assert!(unwritable(&d, &holding(DataType::String(123))).is_none());
    }

    #[test]
    fn inverse_scaling_rounds_and_checks_the_range() {
        let d = device(Vec::new());
        let words = |tag: &Tag, v: f64| match plan(&d, tag, &Value::Float(v)) {
            Ok(WritePlan::Registers { words, .. }) => Ok(words),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        // 4.5 bar with 0.1 bar per count: 45.
        let sp = scaled(DataType::U16, 0.1, 0.0);
        assert_eq!(words(&sp, 4.5), Ok(vec![45]));
        assert_eq!(words(&sp, 4.56), Ok(vec![46]), "rounded to the nearest");
        assert_eq!(words(&sp, 6553.5), Ok(vec![65535]));
        let over = words(&sp, 6553.6);
        assert_eq!(code(over.clone()), "not_representable");
        let text = format!("{over:?}");
        assert!(
            text.contains("65536") && text.contains("0 to 65535"),
            "{text}"
        );
        assert_eq!(code(words(&sp, -0.1)), "not_representable");
        // Offset: degC stored as tenths of a kelvin.
        let k = scaled(DataType::I16, 0.1, -273.15);
        assert_eq!(words(&k, 21.85), Ok(vec![2950]));
        assert_eq!(words(&k, -273.15), Ok(vec![0]));
        // Unscaled integers keep every bit.
        let i64_tag = holding(DataType::I64);
        assert_eq!(
            plan(&d, &i64_tag, &Value::Int(i64::MIN)).map(|p| match p {
                WritePlan::Registers { words, .. } => words,
                _ => Vec::new(),
            }),
            Ok(vec![0x8000, 0, 0, 0])
        );
        let u64_tag = holding(DataType::U64);
        assert_eq!(
            plan(&d, &u64_tag, &Value::UInt(u64::MAX)).map(|p| p.function()),
            Ok(16)
        );
        assert_eq!(
            code(plan(&d, &u64_tag, &Value::Int(-1))),
            "not_representable"
        );
        assert_eq!(
            code(plan(&d, &u64_tag, &Value::Float(2f64.powi(64)))),
            "not_representable"
        );
        assert_eq!(
            code(plan(&d, &holding(DataType::U16), &Value::Int(65536))),
            "not_representable"
        );
        assert_eq!(
            code(plan(&d, &holding(DataType::I16), &Value::Int(-32769))),
            "not_representable"
        );
        // f32 overflow and a zero scale.
        assert_eq!(
            code(words(&holding(DataType::F32), 1e39)),
            "not_representable"
        );
        assert!(words(&holding(DataType::F64), 1e39).is_ok());
        assert_eq!(
            code(words(&scaled(DataType::F32, 0.0, 0.0), 1.0)),
            "not_representable"
        );
        // Word order.
        let mut cdab = holding(DataType::F32);
        cdab.word_order = WordOrder::Cdab;
        assert_eq!(words(&cdab, 1.0), Ok(vec![0, 0x3F80]));
    }

    #[test]
    fn strings_are_padded_or_refused() {
        let d = device(Vec::new());
        let s = holding(DataType::String(2));
        let words = |v: &str| plan(&d, &s, &Value::Text(v.into()));
        assert_eq!(
            words("ABC"),
            Ok(WritePlan::Registers {
                address: 10,
                words: vec![0x4142, 0x4300],
                function: 16
            })
        );
        assert!(words("ABCD").is_ok());
        let long = words("ABCDE");
        assert_eq!(code(long.clone()), "not_representable");
        assert!(format!("{long:?}").contains("holds 4"));
        assert_eq!(code(words("Ä")), "not_representable");
        assert_eq!(code(words("A\0B")), "not_representable");
        // One register: FC6 like any single register.
        let one = holding(DataType::String(1));
        assert_eq!(
            plan(&d, &one, &Value::Text("A".into())).map(|p| p.function()),
            Ok(6)
        );
    }

    #[test]
    fn requests_from_plans() {
        let bit = WritePlan::Bit {
            address: 7,
            bit: 3,
            on: true,
            function: 6,
        };
        let r = bit.request(2, Some(0b1010_0001)).map(|r| r.data().clone());
        assert_eq!(r, Ok(WriteData::Register(0b1010_1001)));
        let clear = WritePlan::Bit {
            address: 7,
            bit: 0,
            on: false,
            function: 16,
        };
        let r = clear.request(2, Some(0xFFFF)).map(|r| r.data().clone());
        assert_eq!(r, Ok(WriteData::Registers(vec![0xFFFE])));
        let coil = WritePlan::Coil {
            address: 1,
            on: true,
            function: 15,
        };
        assert_eq!(
            coil.request(1, None).map(|r| r.data().clone()),
            Ok(WriteData::Coils(vec![true]))
        );
        let one = WritePlan::Registers {
            address: 1,
            words: vec![9],
            function: 16,
        };
        assert_eq!(
            one.request(1, None).map(|r| r.data().clone()),
            Ok(WriteData::Registers(vec![9]))
        );
    }

    #[test]
    fn matches_compares_what_the_device_holds() {
        // 0.1 cannot be held exactly by an f32: the read-back is the f32.
        let f = holding(DataType::F32);
        let held = f64::from(0.1f32);
        assert!(matches(&f, &Value::Float(0.1), &Value::Float(held)));
        assert!(!matches(&f, &Value::Float(0.1), &Value::Float(0.2)));
        // A scaled integer reads back as its raw value scaled.
        let sp = scaled(DataType::U16, 0.1, 0.0);
        let back = decode::decode(&sp, &[46]).unwrap_or(Value::Int(0));
        assert!(matches(&sp, &Value::Float(4.56), &back));
        assert!(!matches(&sp, &Value::Float(4.5), &back));
        // Strings lose their trailing padding.
        let s = holding(DataType::String(3));
        assert!(matches(
            &s,
            &Value::Text("AB ".into()),
            &Value::Text("AB".into())
        ));
        assert!(!matches(
            &s,
            &Value::Text("AB".into()),
            &Value::Text("AC".into())
        ));
        let b = holding(DataType::Bit(2));
        assert!(matches(&b, &Value::Bool(true), &Value::Bool(true)));
        assert!(!matches(&b, &Value::Bool(true), &Value::Bool(false)));
        assert!(!matches(
            &holding(DataType::U16),
            &Value::Int(1),
            &Value::Text("1".into())
        ));
    }

    const TYPES: [DataType; 8] = [
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::U64,
        DataType::I64,
        DataType::F32,
        DataType::F64,
    ];
    const SCALES: [(f64, f64); 5] = [
        (1.0, 0.0),
        (0.1, 0.0),
        (0.01, -40.0),
        (10.0, 5.0),
        (-0.5, 0.0),
    ];

    fn int_range(t: DataType) -> (i128, i128) {
        match t {
            DataType::U16 => (0, u16::MAX.into()),
            DataType::I16 => (i16::MIN.into(), i16::MAX.into()),
            DataType::U32 => (0, u32::MAX.into()),
            DataType::I32 => (i32::MIN.into(), i32::MAX.into()),
            DataType::U64 => (0, u64::MAX.into()),
            _ => (i64::MIN.into(), i64::MAX.into()),
        }
    }

    fn words_of(p: Result<WritePlan, RejectReason>) -> Vec<u16> {
        match p {
            Ok(WritePlan::Registers { words, .. }) => words,
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        /// Planned words decode back to the value written, for every type,
        /// word order and scale: exactly for raw integers, within half a
        /// count for scaled integers, within the type's precision for floats.
        #[test]
        fn plan_then_decode_gives_the_value_back(
            t in 0..TYPES.len(),
            o in 0..4usize,
            s in 0..SCALES.len(),
            unit in 0.0f64..1.0,
            frac in -0.49f64..0.49,
        ) {
            let data_type = TYPES[t];
            let (scale, offset) = SCALES[s];
            let mut tag = scaled(data_type, scale, offset);
            tag.word_order = WordOrder::ALL[o];
            let d = device(Vec::new());
            if matches!(data_type, DataType::F32 | DataType::F64) {
                let most = if data_type == DataType::F32 { 1e30 } else { 1e300 };
                let v = (unit * 2.0 - 1.0) * most * scale.abs().min(1.0) + offset;
                let words = words_of(plan(&d, &tag, &Value::Float(v)));
                let back = decode::decode(&tag, &words).ok().and_then(|b| b.as_f64());
                let back = back.unwrap_or(f64::NAN);
                let eps = if data_type == DataType::F32 { 1e-6 } else { 1e-12 };
                prop_assert!((back - v).abs() <= eps * v.abs().max(1.0), "{v} -> {back}");
                prop_assert!(matches(&tag, &Value::Float(v), &Value::Float(back)));
            } else {
                let (lo, hi) = int_range(data_type);
                // Scaled raw values stay below 2^40, where a scale of 0.01
                // still tells counts apart in an f64.
                let (lo, hi) = if tag.is_unscaled() { (lo, hi) } else { (lo.max(-(1 << 40)), hi.min(1 << 40)) };
                let raw = lo + ((hi - lo) as f64 * unit) as i128;
                let raw = raw.clamp(lo, hi);
                let value = if tag.is_unscaled() {
                    match i64::try_from(raw) {
                        Ok(i) => Value::Int(i),
                        Err(_) => Value::UInt(raw as u64),
                    }
                } else {
                    // Anywhere within half a count of the raw value.
                    Value::Float((raw as f64 + frac) * scale + offset)
                };
                let words = words_of(plan(&d, &tag, &value));
                let got = decode::raw_value(data_type, tag.word_order, &words);
                let got = match got {
                    Ok(Value::Int(i)) => i128::from(i),
                    Ok(Value::UInt(u)) => i128::from(u),
                    other => panic!("{other:?}"),
                };
                prop_assert_eq!(got, raw);
                let back = decode::decode(&tag, &words);
                prop_assert!(back.as_ref().is_ok_and(|b| matches(&tag, &value, b)), "{back:?}");
            }
        }

        /// Text up to the tag's length round-trips in every order.
        #[test]
        fn strings_round_trip(text in "[ -~]{0,8}", o in 0..4usize) {
            let text = text.trim_end().to_string();
            let mut tag = holding(DataType::String(4));
            tag.word_order = WordOrder::ALL[o];
            let words = words_of(plan(&device(Vec::new()), &tag, &Value::Text(text.clone())));
            prop_assert_eq!(decode::decode(&tag, &words), Ok(Value::Text(text)));
        }
    }
}
