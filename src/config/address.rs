//! Tag addresses: 0-based protocol addresses, or Modicon notation.
//!
//! # The rule
//!
//! * With `area` given, `address` is the 0-based protocol address, the
//!   number that goes on the wire (0–65535).
//! * Without `area`, `address` is Modicon notation, whose first digit
//!   names the area and whose rest is 1-based:
//!
//!   | 5-digit       | 6-digit         | area             | 0-based address  |
//!   |---------------|-----------------|------------------|------------------|
//!   | 00001–09999   | 000001–065536   | coil             | number − 1       |
//!   | 10001–19999   | 100001–165536   | discrete input   | number − 10001   |
//!   | 30001–39999   | 300001–365536   | input register   | number − 30001   |
//!   | 40001–49999   | 400001–465536   | holding register | number − 40001   |
//!
//!   A number of six digits is always read as the 6-digit form. Coils in
//!   5-digit form must be written as a string with their leading zeros
//!   (`"00017"`), because a bare `17` is more likely a forgotten `area`
//!   than a coil; fieldgate refuses it and says so.
//! * With `area` given *and* a number that looks like Modicon for that same
//!   area (`area = "holding", address = 40001`), fieldgate keeps the
//!   0-based reading but warns: it is the most common mistake in tag maps.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::tag::Area;

/// An address as written: a number or a string of digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawAddress {
    /// Written as a TOML integer.
    Number(i64),
    /// Written as a string (CSV cells are always strings); keeps leading zeros.
    Text(String),
}

impl<'de> Deserialize<'de> for RawAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawAddress;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address: a number like 12 or 40013, or a string like \"00017\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAddress, E> {
                Ok(RawAddress::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAddress, E> {
                i64::try_from(v)
                    .map(RawAddress::Number)
                    .map_err(|_| E::custom(format!("address {v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAddress, E> {
                Ok(RawAddress::Text(v.trim().to_string()))
            }
        }
        // deserialize_str: self-describing formats (TOML) still hand us
        // integers, while CSV hands us the cell text with its leading zeros.
        d.deserialize_str(V)
    }
}

/// A resolved address, and the rule that produced it (for `check`'s
/// explanations and warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The data area.
    pub area: Area,
    /// 0-based protocol address.
    pub address: u16,
    /// A warning about how the address was read, if any.
    pub warning: Option<String>,
}

/// Resolves an address with an optional explicit area, per the rule in
/// the module documentation.
pub fn resolve(raw: &RawAddress, area: Option<Area>) -> Result<Resolved, String> {
    let (digits, text) = match raw {
        RawAddress::Number(n) => {
            if *n < 0 {
                return Err(format!("address {n} is negative"));
            }
            (None, n.to_string())
        }
        RawAddress::Text(s) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "address \"{s}\" is not a number; write e.g. 12, 40013 or \"00017\""
                ));
            }
            (Some(s.len()), s.clone())
        }
    };
    let value: u64 = text
        .parse()
        .map_err(|_| format!("address {text} is out of range"))?;

    if let Some(area) = area {
        let address = u16::try_from(value).map_err(|_| {
            format!(
                "address {value} is beyond 65535; with `area` set, addresses are 0-based protocol addresses"
            )
        })?;
        let warning = looks_modicon(value, area).then(|| {
            format!(
                "{area} address {value} is taken as the 0-based protocol address {value}; \
                 if you meant Modicon {value} ({area} {}), remove `area`",
                modicon_offset(value)
            )
        });
        return Ok(Resolved {
            area,
            address,
            warning,
        });
    }

    let six = digits == Some(6) || value > 99_999;
    let (area, base) = if six {
        match value / 100_000 {
            0 => (Area::Coil, 1),
            1 => (Area::DiscreteInput, 100_001),
            3 => (Area::InputRegister, 300_001),
            4 => (Area::HoldingRegister, 400_001),
            _ => return Err(modicon_error(&text)),
        }
    } else {
        match value / 10_000 {
            0 if digits == Some(5) => (Area::Coil, 1),
            0 => {
                return Err(format!(
                    "address {text} has no `area`; set `area` (coil, discrete, input, holding) \
                     for a 0-based address, or write Modicon notation (40001 = holding 0, \
                     \"00001\" = coil 0)"
                ));
            }
            1 => (Area::DiscreteInput, 10_001),
            3 => (Area::InputRegister, 30_001),
            4 => (Area::HoldingRegister, 40_001),
            _ => return Err(modicon_error(&text)),
        }
    };
    if value < base {
        return Err(format!(
            "Modicon address {text} is 0 within its area; Modicon numbering starts at 1 ({})",
            base
        ));
    }
    let address = u16::try_from(value - base).map_err(|_| modicon_error(&text))?;
    Ok(Resolved {
        area,
        address,
        warning: None,
    })
}

/// True when `value` reads as a 5- or 6-digit Modicon number of `area`.
fn looks_modicon(value: u64, area: Area) -> bool {
    let (five, six) = match area {
        Area::Coil => return false,
        Area::DiscreteInput => (10_001..=19_999, 100_001..=165_536),
        Area::InputRegister => (30_001..=39_999, 300_001..=365_536),
        Area::HoldingRegister => (40_001..=49_999, 400_001..=465_536),
    };
    five.contains(&value) || six.contains(&value)
}

fn modicon_offset(value: u64) -> u64 {
    if value > 99_999 {
        value % 100_000 - 1
    } else {
        value % 10_000 - 1
    }
}

fn modicon_error(text: &str) -> String {
    format!(
        "address {text} is not valid Modicon notation (0xxxx coils, 1xxxx discrete inputs, \
         3xxxx input registers, 4xxxx holding registers, or the 6-digit forms); \
         or set `area` and give the 0-based address"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modicon(n: i64) -> Result<(Area, u16), String> {
        resolve(&RawAddress::Number(n), None).map(|r| (r.area, r.address))
    }

    #[test]
    fn five_digit_forms() {
        assert_eq!(modicon(40001), Ok((Area::HoldingRegister, 0)));
        assert_eq!(modicon(49999), Ok((Area::HoldingRegister, 9998)));
        assert_eq!(modicon(30010), Ok((Area::InputRegister, 9)));
        assert_eq!(modicon(10001), Ok((Area::DiscreteInput, 0)));
        let coil = resolve(&RawAddress::Text("00017".into()), None).unwrap();
        assert_eq!((coil.area, coil.address), (Area::Coil, 16));
    }

    #[test]
    fn six_digit_forms() {
        assert_eq!(modicon(400001), Ok((Area::HoldingRegister, 0)));
        assert_eq!(modicon(465536), Ok((Area::HoldingRegister, 65535)));
        assert_eq!(modicon(300101), Ok((Area::InputRegister, 100)));
        let coil = resolve(&RawAddress::Text("000001".into()), None).unwrap();
        assert_eq!((coil.area, coil.address), (Area::Coil, 0));
        assert!(modicon(465537).is_err());
    }

    #[test]
    fn bare_small_number_needs_area() {
        assert!(modicon(17).unwrap_err().contains("no `area`"));
        assert!(modicon(20001).is_err());
        assert!(modicon(40000).is_err());
    }

    #[test]
    fn explicit_area_is_zero_based_and_warns_on_modicon_lookalike() {
        let r = resolve(&RawAddress::Number(40001), Some(Area::HoldingRegister)).unwrap();
        assert_eq!(r.address, 40001);
        assert!(r.warning.unwrap().contains("remove `area`"));
        let r = resolve(&RawAddress::Number(12), Some(Area::InputRegister)).unwrap();
        assert_eq!((r.address, r.warning), (12, None));
        assert!(resolve(&RawAddress::Number(70000), Some(Area::Coil)).is_err());
    }
}
