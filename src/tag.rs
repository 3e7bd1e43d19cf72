//! Plant-level types shared by every stage: where a tag lives on a device
//! (area and address), how its registers are read (type and word order),
//! and the value it turns into.
//!
//! These are fieldgate's own types, not tokio-modbus's, so that the config
//! format stays stable when a crate changes.

use std::fmt;

/// One of the four Modbus data areas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    /// Read/write bits, function code 1 (Modicon 0xxxx).
    Coil,
    /// Read-only bits, function code 2 (Modicon 1xxxx).
    DiscreteInput,
    /// Read-only 16-bit registers, function code 4 (Modicon 3xxxx).
    InputRegister,
    /// Read/write 16-bit registers, function code 3 (Modicon 4xxxx).
    HoldingRegister,
}

impl Area {
    /// All areas, in Modicon prefix order.
    pub const ALL: [Area; 4] = [
        Area::Coil,
        Area::DiscreteInput,
        Area::InputRegister,
        Area::HoldingRegister,
    ];

    /// True for the two bit areas (coils and discrete inputs).
    pub fn is_bit(self) -> bool {
        matches!(self, Area::Coil | Area::DiscreteInput)
    }

    /// The Modbus function code that reads this area.
    pub fn read_function(self) -> u8 {
        match self {
            Area::Coil => 1,
            Area::DiscreteInput => 2,
            Area::HoldingRegister => 3,
            Area::InputRegister => 4,
        }
    }

    /// The name used in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Coil => "coil",
            Area::DiscreteInput => "discrete",
            Area::InputRegister => "input",
            Area::HoldingRegister => "holding",
        }
    }

    /// Parses a config name; several spellings are accepted because
    /// device manuals use all of them.
    pub fn parse(s: &str) -> Option<Area> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "coil" | "coils" => Some(Area::Coil),
            "discrete" | "discrete_input" | "discrete_inputs" | "di" => Some(Area::DiscreteInput),
            "input" | "input_register" | "input_registers" | "ir" => Some(Area::InputRegister),
            "holding" | "holding_register" | "holding_registers" | "hr" => {
                Some(Area::HoldingRegister)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the registers (or bit) of a tag are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// A coil or discrete input.
    Bool,
    /// Bit N (0 = least significant) of one register.
    Bit(u8),
    /// Unsigned 16-bit integer, one register.
    U16,
    /// Signed 16-bit integer, one register.
    I16,
    /// Unsigned 32-bit integer, two registers.
    U32,
    /// Signed 32-bit integer, two registers.
    I32,
    /// Unsigned 64-bit integer, four registers.
    U64,
    /// Signed 64-bit integer, four registers.
    I64,
    /// IEEE 754 single precision, two registers.
    F32,
    /// IEEE 754 double precision, four registers.
    F64,
    /// ASCII text of N registers (two characters per register).
    String(u16),
}

/// Why a type could not be built from its config fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// Not a type name fieldgate knows.
    #[error(
        "unknown type \"{0}\"; use bool, bit, u16, i16, u32, i32, u64, i64, f32, f64 or string"
    )]
    Unknown(String),
    /// `bit` without its index.
    #[error("type bit needs `bit` (0–15)")]
    MissingBit,
    /// A bit index beyond 15.
    #[error("bit index {0} is out of range: a register has bits 0 to 15")]
    BitOutOfRange(i64),
    /// `string` without its length.
    #[error("type string needs `length` (in registers, two characters each)")]
    MissingLength,
    /// A string length beyond one request.
    #[error("string length {0} is out of range (1–125 registers)")]
    LengthOutOfRange(i64),
}

impl TypeError {
    /// The config field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            TypeError::Unknown(_) => "type",
            TypeError::MissingBit | TypeError::BitOutOfRange(_) => "bit",
            TypeError::MissingLength | TypeError::LengthOutOfRange(_) => "length",
        }
    }
}

impl DataType {
    /// Builds a type from its config fields: the name (with the spellings
    /// PLC programmers and device manuals use: `float`, `real`, `dint`,
    /// `word`, …), the bit index for `bit` and the length in registers for
    /// `string`. Shared by the gateway's config and the simulator's
    /// scenarios, so both read a tag map the same way.
    pub fn parse(name: &str, bit: Option<i64>, length: Option<i64>) -> Result<DataType, TypeError> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "bool" | "boolean" => DataType::Bool,
            "bit" => match bit {
                Some(b @ 0..=15) => DataType::Bit(b as u8),
                Some(b) => return Err(TypeError::BitOutOfRange(b)),
                None => return Err(TypeError::MissingBit),
            },
            "u16" | "uint16" | "word" | "uint" => DataType::U16,
            "i16" | "int16" | "int" | "short" => DataType::I16,
            "u32" | "uint32" | "dword" | "udint" => DataType::U32,
            "i32" | "int32" | "dint" => DataType::I32,
            "u64" | "uint64" | "ulint" => DataType::U64,
            "i64" | "int64" | "lint" => DataType::I64,
            "f32" | "float" | "float32" | "real" => DataType::F32,
            "f64" | "double" | "float64" | "lreal" => DataType::F64,
            "string" | "str" | "ascii" => match length {
                Some(n @ 1..=125) => DataType::String(n as u16),
                Some(n) => return Err(TypeError::LengthOutOfRange(n)),
                None => return Err(TypeError::MissingLength),
            },
            _ => return Err(TypeError::Unknown(name.trim().to_string())),
        })
    }

    /// How many registers (or bits, for `Bool`) the tag occupies.
    pub fn width(self) -> u16 {
        match self {
            DataType::Bool | DataType::Bit(_) | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::String(n) => n,
        }
    }

    /// The name used in config files (without the bit index or length).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Bit(_) => "bit",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String(_) => "string",
        }
    }

    /// True for types whose value is a number (and so can be scaled).
    pub fn is_numeric(self) -> bool {
        !matches!(
            self,
            DataType::Bool | DataType::Bit(_) | DataType::String(_)
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bit(n) => write!(f, "bit {n}"),
            DataType::String(n) => write!(f, "string of {n} registers"),
            other => f.write_str(other.name()),
        }
    }
}

/// Order of the 16-bit words, and of the bytes inside each word, for
/// values wider than one register. Named by where the bytes of the
/// big-endian value `A B C D` end up on the wire.
///
/// For 64-bit values the same rule extends to eight bytes: `Abcd` is
/// fully big-endian, `Dcba` fully little-endian, `Cdab` reverses the
/// words but keeps each word big-endian, `Badc` keeps the words in order
/// but swaps the bytes inside each. For strings only the byte swap
/// matters: `Abcd`/`Cdab` put the first character in the high byte,
/// `Badc`/`Dcba` in the low byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// Big-endian words, big-endian bytes (the Modbus norm).
    #[default]
    Abcd,
    /// Little-endian words, big-endian bytes ("word swap").
    Cdab,
    /// Big-endian words, little-endian bytes ("byte swap").
    Badc,
    /// Little-endian words, little-endian bytes.
    Dcba,
}

impl WordOrder {
    /// All four orders.
    pub const ALL: [WordOrder; 4] = [
        WordOrder::Abcd,
        WordOrder::Cdab,
        WordOrder::Badc,
        WordOrder::Dcba,
    ];

    /// Parses `ABCD`, `CDAB`, `BADC` or `DCBA` (any case).
    pub fn parse(s: &str) -> Option<WordOrder> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ABCD" => Some(WordOrder::Abcd),
            "CDAB" => Some(WordOrder::Cdab),
            "BADC" => Some(WordOrder::Badc),
            "DCBA" => Some(WordOrder::Dcba),
            _ => None,
        }
    }

    /// True when the words are sent least significant first.
    pub fn words_reversed(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }

    /// True when the two bytes inside each word are swapped.
    pub fn bytes_swapped(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        }
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Report-by-exception threshold of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Deadband {
    /// Publish every poll.
    #[default]
    None,
    /// Publish when the value moves by more than this many engineering units.
    Absolute(f64),
    /// Publish when the value moves by more than this percentage of the
    /// tag's span (`span_high - span_low`).
    Percent(f64),
}

/// One tag of a device, resolved: 0-based address, typed, scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// Short name, unique within its device (`bearing_temp`).
    pub name: String,
    /// Area the tag is read from.
    pub area: Area,
    /// 0-based protocol address of the first register (or bit).
    pub address: u16,
    /// How its registers are interpreted.
    pub data_type: DataType,
    /// Word and byte order for multi-register types and strings.
    pub word_order: WordOrder,
    /// Engineering value = raw × scale + offset.
    pub scale: f64,
    /// Engineering value = raw × scale + offset.
    pub offset: f64,
    /// Engineering unit (`degC`, `bar`, `A`).
    pub unit: Option<String>,
    /// Report-by-exception threshold.
    pub deadband: Deadband,
    /// Lower end of the measuring span, for percent deadbands.
    pub span_low: Option<f64>,
    /// Upper end of the measuring span, for percent deadbands.
    pub span_high: Option<f64>,
    /// Free text for people.
    pub description: Option<String>,
    /// Asset id in the maintenance system (defaults to the device's).
    pub asset: Option<String>,
    /// Declared as a deliberate second view of registers another tag reads.
    pub alias: bool,
    /// Write-back settings: `None` unless the tag is made writable.
    pub write: Option<WriteAccess>,
    /// `decimals`: digits after the point when the value is shown to
    /// people (page, `read`, work-order texts); `None` takes them from the
    /// scale. Payloads always carry the full value.
    pub decimals: Option<u8>,
}

/// What may be written to a writable tag, and how. Nothing is writable
/// unless the configuration says so, tag by tag.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteAccess {
    /// Lowest value accepted, in engineering units (numbers).
    pub min: Option<f64>,
    /// Highest value accepted, in engineering units (numbers).
    pub max: Option<f64>,
    /// The only values accepted (bools and codes), when given.
    pub allowed: Vec<Value>,
    /// At most this many writes a minute to the tag.
    pub max_rate: Option<u32>,
    /// Read the tag back after the write and compare (on by default).
    pub confirm: bool,
}

impl Default for WriteAccess {
    fn default() -> WriteAccess {
        WriteAccess {
            min: None,
            max: None,
            allowed: Vec::new(),
            max_rate: None,
            confirm: true,
        }
    }
}

impl Tag {
    /// A tag with defaults for everything but what locates it.
    pub fn new(name: impl Into<String>, area: Area, address: u16, data_type: DataType) -> Tag {
        Tag {
            name: name.into(),
            area,
            address,
            data_type,
            word_order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            deadband: Deadband::None,
            span_low: None,
            span_high: None,
            description: None,
            asset: None,
            alias: false,
            write: None,
            decimals: None,
        }
    }

    /// Registers (or bits) the tag occupies.
    pub fn width(&self) -> u16 {
        self.data_type.width()
    }

    /// Last address the tag occupies, or `None` when it would run past 65535.
    pub fn last_address(&self) -> Option<u16> {
        self.address.checked_add(self.width().checked_sub(1)?)
    }

    /// True when scale and offset leave the raw value unchanged.
    pub fn is_unscaled(&self) -> bool {
        self.scale == 1.0 && self.offset == 0.0
    }
}

/// A tag's value, in engineering units.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A bit.
    Bool(bool),
    /// A signed integer (unscaled i16/i32/i64, or u16/u32 that fit).
    Int(i64),
    /// An unsigned 64-bit integer too large for `Int`.
    UInt(u64),
    /// A float, or any scaled number.
    Float(f64),
    /// A string.
    Text(String),
}

impl Value {
    /// The value as a number, for rules and deadbands (`true` is 1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(x) => Some(*x),
            Value::Text(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}
