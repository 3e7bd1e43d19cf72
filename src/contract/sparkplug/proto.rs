//! The Sparkplug B payload types, generated at build time from
//! `proto/sparkplug_b.proto` (build.rs), and the datatype codes of the
//! specification (`Metric.datatype`, `PropertyValue.type`).

#![allow(missing_docs)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/org.eclipse.tahu.protobuf.rs"));

/// Datatype codes of the specification (section 6.4.16). Only the ones
/// fieldgate writes or reads are named.
pub mod datatype {
    /// Signed 8-bit, in `int_value` (two's complement in 32 bits).
    pub const INT8: u32 = 1;
    /// Signed 16-bit, in `int_value` (two's complement in 32 bits).
    pub const INT16: u32 = 2;
    /// Signed 32-bit, in `int_value` (two's complement).
    pub const INT32: u32 = 3;
    /// Signed 64-bit, in `long_value` (two's complement).
    pub const INT64: u32 = 4;
    /// Unsigned 16-bit, in `int_value`.
    pub const UINT16: u32 = 6;
    /// Unsigned 32-bit, in `int_value`.
    pub const UINT32: u32 = 7;
    /// Unsigned 64-bit, in `long_value`.
    pub const UINT64: u32 = 8;
    /// IEEE single, in `float_value`.
    pub const FLOAT: u32 = 9;
    /// IEEE double, in `double_value`.
    pub const DOUBLE: u32 = 10;
    /// `boolean_value`.
    pub const BOOLEAN: u32 = 11;
    /// `string_value`.
    pub const STRING: u32 = 12;
    /// Milliseconds since the epoch, in `long_value`.
    pub const DATETIME: u32 = 13;

    /// The specification's name of a datatype code, for logs and docs.
    pub fn name(code: u32) -> &'static str {
        match code {
            INT8 => "Int8",
            INT16 => "Int16",
            INT32 => "Int32",
            INT64 => "Int64",
            5 => "UInt8",
            UINT16 => "UInt16",
            UINT32 => "UInt32",
            UINT64 => "UInt64",
            FLOAT => "Float",
            DOUBLE => "Double",
            BOOLEAN => "Boolean",
            STRING => "String",
            DATETIME => "DateTime",
            14 => "Text",
            _ => "Unknown",
        }
    }
}
