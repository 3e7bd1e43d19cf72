//! How numbers are shown to people: with the precision the instrument
//! has, not the float's.
//!
//! A register that counts tenths of a degree holds 214, scaled by 0.1 to
//! 21.400000000000002; a person should read `21.4`, always with one
//! decimal (so a column of values does not jump about). The precision of
//! a tag is its `decimals` when the config gives them, else what its
//! scale (and offset) can express; a float register says nothing of its
//! instrument, so it is shown with [`SIGNIFICANT`] significant digits.
//!
//! Used wherever people read values (the status page mirrors these rules
//! in its script, `fieldgate read`, the demo, work-order texts); payloads
//! always carry the full value. Pure: no I/O, no locale (the point is the
//! decimal mark, the comma groups thousands).

use crate::tag::{DataType, Tag, Value};

/// Significant digits of a float value whose tag has neither `decimals`
/// nor a scale: enough for any plant reading, few enough to drop an
/// f32's noise (`84.71237` → `84.71`).
pub const SIGNIFICANT: u8 = 4;

/// The most decimals a precision from the scale or offset asks for (a
/// scale such as 1/3 would otherwise ask for seventeen).
pub const MAX_DECIMALS: u8 = 9;

/// From this magnitude on, a number is written with an exponent (like the
/// status page's script, whose fixed notation stops there too).
const PLAIN_UP_TO: f64 = 1e21;

/// Below this magnitude, a value shown with significant digits gets an
/// exponent rather than a row of zeros.
const PLAIN_FROM: f64 = 1e-5;

/// How many digits a value is shown with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Exactly this many digits after the point, trailing zeros kept
    /// (`21.40` with 2).
    Decimals(u8),
    /// At most this many significant digits, trailing zeros dropped
    /// (`1235`, `12.35`, `0.01235`, `21.5` with 4).
    Significant(u8),
}

impl Precision {
    /// A tag's precision: its `decimals` when set; else, for a float
    /// type, [`SIGNIFICANT`] digits (its raw value is not a count of
    /// steps, so the scale says nothing of the instrument); else the
    /// decimals one step of the raw register needs after scale and offset
    /// (scale 0.1 → 1, 0.25 → 2, 10 → 0, offset 0.5 → 1; at most
    /// [`MAX_DECIMALS`]). Bools and strings get `Decimals(0)`, which they
    /// never use.
    pub fn of(tag: &Tag) -> Precision {
        if let Some(d) = tag.decimals {
            return Precision::Decimals(d.min(MAX_DECIMALS));
        }
        match tag.data_type {
            DataType::F32 | DataType::F64 => Precision::Significant(SIGNIFICANT),
            _ => Precision::Decimals(step_decimals(tag.scale).max(step_decimals(tag.offset))),
        }
    }

    /// The decimals, when fixed (`None` for significant digits).
    pub fn decimals(self) -> Option<u8> {
        match self {
            Precision::Decimals(d) => Some(d),
            Precision::Significant(_) => None,
        }
    }

    /// The precision of a status document's `decimals` field: that many
    /// decimals, or [`SIGNIFICANT`] digits when `null`.
    pub fn from_decimals(decimals: Option<u8>) -> Precision {
        match decimals {
            Some(d) => Precision::Decimals(d.min(MAX_DECIMALS)),
            None => Precision::Significant(SIGNIFICANT),
        }
    }

    /// A number for people: no `-0`, no exponent below 1e21 (nor above
    /// 1e-5 for significant digits), `NaN`, `inf` and `-inf` as such.
    /// Halves round away from zero, as the page's script does.
    pub fn number(self, x: f64) -> String {
        if !x.is_finite() {
            return x.to_string();
        }
        match self {
            Precision::Decimals(d) if x.abs() < PLAIN_UP_TO => fixed(x, d.min(MAX_DECIMALS)),
            Precision::Decimals(_) => exponent(x, usize::from(SIGNIFICANT)),
            Precision::Significant(n) => significant(x, usize::from(n.clamp(1, 17))),
        }
    }

    /// A value for people: numbers as [`Precision::number`] (integers
    /// exactly, with the decimals' zeros), `true`/`false`, text as is.
    pub fn value(self, v: &Value) -> String {
        match v {
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => self.integer(i.to_string()),
            Value::UInt(u) => self.integer(u.to_string()),
            Value::Float(x) => self.number(*x),
            Value::Text(s) => s.clone(),
        }
    }

    /// An integer's digits (exact, even beyond 2^53) with the decimals'
    /// zeros.
    fn integer(self, digits: String) -> String {
        match self {
            Precision::Decimals(d) if d > 0 => {
                format!("{digits}.{}", "0".repeat(usize::from(d.min(MAX_DECIMALS))))
            }
            _ => digits,
        }
    }
}

/// The decimals needed to show multiples of `step` exactly (0.1 → 1,
/// 0.25 → 2, 0.5 → 1, 1 and 10 → 0), at most [`MAX_DECIMALS`].
pub fn step_decimals(step: f64) -> u8 {
    let step = step.abs();
    if !step.is_finite() || step == 0.0 {
        return 0;
    }
    for d in 0..MAX_DECIMALS {
        let scaled = step * 10f64.powi(i32::from(d));
        let whole = scaled.round();
        // Within float noise of a whole number: 0.1 × 10 is 1, 0.07 × 100
        // is 7.000000000000001.
        if whole >= 1.0 && (scaled - whole).abs() <= 1e-9 * scaled {
            return d;
        }
    }
    MAX_DECIMALS
}

/// `x` with `d` decimals, halves away from zero, no `-0`.
fn fixed(x: f64, d: u8) -> String {
    let d = usize::from(d);
    let text = format!("{x:.d$}");
    // Rust rounds an exact half to even (2.5 → 2); the page's script
    // rounds it away from zero (2.5 → 3). A half is exact only when the
    // digits after it are all zeros (a float's expansion is finite).
    let long = format!("{x:.*}", d + 40);
    let cut = long.len() - 40;
    let is_half = long.as_bytes().get(cut) == Some(&b'5')
        && long.as_bytes()[cut + 1..].iter().all(|b| *b == b'0');
    let text = if is_half {
        let away = if x > 0.0 { x.next_up() } else { x.next_down() };
        format!("{away:.d$}")
    } else {
        text
    };
    no_negative_zero(text)
}

/// `x` with at most `n` significant digits, trailing zeros dropped.
fn significant(x: f64, n: usize) -> String {
    if x == 0.0 {
        return "0".to_owned();
    }
    if !(PLAIN_FROM..PLAIN_UP_TO).contains(&x.abs()) {
        return exponent(x, n);
    }
    // The exponent after rounding to n digits (9999.6 is 1.000e4).
    let e = decimal_exponent(x, n);
    let d = (n as i32 - 1 - e).max(0);
    let d = u8::try_from(d).unwrap_or(u8::MAX).min(20);
    let text = fixed(x, d);
    no_negative_zero(trim_zeros(&text).to_owned())
}

/// The power of ten of `x` written with `n` significant digits.
fn decimal_exponent(x: f64, n: usize) -> i32 {
    let text = format!("{x:.*e}", n - 1);
    text.split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0)
}

/// `1.235e21`: `n` significant digits, trailing zeros dropped.
fn exponent(x: f64, n: usize) -> String {
    let text = format!("{x:.*e}", n.saturating_sub(1));
    match text.split_once('e') {
        Some((mantissa, e)) => format!("{}e{e}", trim_zeros(mantissa)),
        None => text,
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `-0.0` (a small negative value rounded away) is `0.0`.
fn no_negative_zero(text: String) -> String {
    match text.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_owned(),
        _ => text,
    }
}

/// Commas between thousands in the whole part of a written number
/// (`1234567.5` → `1,234,567.5`; `-1234` → `-1,234`); anything but
/// digits before the point is left as it is.
pub fn grouped(number: &str) -> String {
    let (sign, rest) = match number.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", number),
    };
    let (whole, fraction) = match rest.find('.') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if whole.len() < 4 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return number.to_owned();
    }
    let mut out = String::with_capacity(number.len() + whole.len() / 3);
    out.push_str(sign);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(fraction);
    out
}

/// A count (a meter's rising edges) as a whole number with thousands
/// grouped: `1,234`.
pub fn count(n: f64) -> String {
    grouped(&Precision::Decimals(0).number(n))
}

/// Hours as a number, with the precision a running-hours counter has:
/// whole hours from 100 h (`1,850`), one decimal from 1 h (`12.5`), two
/// significant digits below (`0.0083`: a demo's meter).
pub fn hours_number(h: f64) -> String {
    let a = h.abs();
    if a >= 100.0 {
        grouped(&Precision::Decimals(0).number(h))
    } else if a >= 1.0 {
        Precision::Decimals(1).number(h)
    } else {
        Precision::Significant(2).number(h)
    }
}

/// A runtime for people, with its unit: hours (`1,850 h`, `12.5 h`),
/// and below an hour minutes or seconds (`25 min`, `30 s`), which a
/// fraction of an hour (`0.0083 h`) hides.
pub fn hours(h: f64) -> String {
    if !h.is_finite() || h == 0.0 || h.abs() >= 1.0 {
        return format!("{} h", hours_number(h));
    }
    let seconds = (h * 3600.0).round();
    if seconds.abs() < 60.0 {
        return format!("{} s", Precision::Decimals(0).number(seconds));
    }
    let minutes = (seconds / 60.0).round();
    if minutes.abs() < 60.0 {
        format!("{} min", Precision::Decimals(0).number(minutes))
    } else {
        "1.0 h".to_owned()
    }
}

/// A meter's amount for people, by its unit: `h` as [`hours`] (with the
/// unit), `count` as [`count`] (without), anything else with
/// [`SIGNIFICANT`] digits and the unit.
pub fn meter(unit: &str, x: f64) -> String {
    match unit {
        "h" => hours(x),
        "count" => count(x),
        other => {
            let n = Precision::Significant(SIGNIFICANT).number(x);
            if other.is_empty() {
                n
            } else {
                format!("{n} {other}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::Area;
    use proptest::prelude::*;

    fn tag(data_type: DataType, scale: f64, offset: f64) -> Tag {
        let mut t = Tag::new("t", Area::HoldingRegister, 0, data_type);
        t.scale = scale;
        t.offset = offset;
        t
    }

    #[test]
    fn the_precision_of_a_tag() {
        let of = |t: DataType, scale, offset| Precision::of(&tag(t, scale, offset));
        assert_eq!(of(DataType::U16, 0.1, 0.0), Precision::Decimals(1));
        assert_eq!(of(DataType::U16, 0.01, 0.0), Precision::Decimals(2));
        assert_eq!(of(DataType::I16, 0.5, 0.0), Precision::Decimals(1));
        assert_eq!(of(DataType::U32, 0.25, 0.0), Precision::Decimals(2));
        assert_eq!(of(DataType::U16, 1.0, 0.0), Precision::Decimals(0));
        assert_eq!(of(DataType::U16, 10.0, 0.0), Precision::Decimals(0));
        assert_eq!(of(DataType::I16, -0.1, 0.0), Precision::Decimals(1));
        assert_eq!(of(DataType::U16, 1.0, 0.5), Precision::Decimals(1));
        assert_eq!(of(DataType::I16, 0.1, -273.15), Precision::Decimals(2));
        assert_eq!(of(DataType::U16, 1.0 / 3.0, 0.0), Precision::Decimals(9));
        assert_eq!(of(DataType::U64, 1.0, 0.0), Precision::Decimals(0));
        assert_eq!(of(DataType::F32, 1.0, 0.0), Precision::Significant(4));
        assert_eq!(of(DataType::F64, 0.1, 0.0), Precision::Significant(4));
        assert_eq!(of(DataType::Bool, 1.0, 0.0), Precision::Decimals(0));
        let mut t = tag(DataType::F32, 1.0, 0.0);
        t.decimals = Some(1);
        assert_eq!(Precision::of(&t), Precision::Decimals(1));
        let mut t = tag(DataType::U16, 0.01, 0.0);
        t.decimals = Some(0);
        assert_eq!(Precision::of(&t), Precision::Decimals(0));
        assert_eq!(Precision::Decimals(1).decimals(), Some(1));
        assert_eq!(Precision::Significant(4).decimals(), None);
        assert_eq!(Precision::from_decimals(None), Precision::Significant(4));
        assert_eq!(Precision::from_decimals(Some(2)), Precision::Decimals(2));
    }

    #[test]
    fn fixed_decimals() {
        let d = |n, x| Precision::Decimals(n).number(x);
        // 214 × 0.1, as a scaled register gives it.
        assert_eq!(d(1, 214.0 * 0.1), "21.4");
        assert_eq!(d(1, 40.0), "40.0");
        assert_eq!(d(2, 21.4), "21.40");
        assert_eq!(d(0, 1485.4), "1485");
        assert_eq!(d(1, -0.04), "0.0");
        assert_eq!(d(0, -0.4), "0");
        assert_eq!(d(1, -1.25), "-1.3");
        assert_eq!(d(0, 2.5), "3");
        assert_eq!(d(0, -2.5), "-3");
        assert_eq!(d(1, 0.25), "0.3");
        assert_eq!(d(2, 1.005), "1.00", "1.005 is below the half as a float");
        assert_eq!(d(0, 1e20), "100000000000000000000");
        assert_eq!(d(0, 1e21), "1e21");
        assert_eq!(d(1, f64::NAN), "NaN");
        assert_eq!(d(1, f64::INFINITY), "inf");
        assert_eq!(d(1, f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn significant_digits() {
        let s = |x| Precision::Significant(4).number(x);
        assert_eq!(s(1234.567), "1235");
        assert_eq!(s(0.0123456), "0.01235");
        assert_eq!(s(12.3456), "12.35");
        assert_eq!(s(f64::from(84.71237_f32)), "84.71");
        assert_eq!(s(21.5), "21.5");
        assert_eq!(s(80.0), "80");
        assert_eq!(s(0.0), "0");
        assert_eq!(s(-0.0), "0");
        assert_eq!(s(9999.6), "10000");
        assert_eq!(s(123456.7), "123457");
        assert_eq!(s(-12.3456), "-12.35");
        assert_eq!(s(0.000012346), "0.00001235");
        assert_eq!(s(0.0000012346), "1.235e-6");
        assert_eq!(s(3e21), "3e21");
        assert_eq!(s(f64::NAN), "NaN");
    }

    #[test]
    fn values() {
        let one = Precision::Decimals(1);
        assert_eq!(one.value(&Value::Float(21.4)), "21.4");
        assert_eq!(one.value(&Value::Int(-3)), "-3.0");
        assert_eq!(
            Precision::Decimals(0).value(&Value::UInt(u64::MAX)),
            u64::MAX.to_string()
        );
        assert_eq!(
            Precision::Significant(4).value(&Value::Int(123456)),
            "123456"
        );
        assert_eq!(one.value(&Value::Bool(true)), "true");
        assert_eq!(one.value(&Value::Text("P-101".into())), "P-101");
    }

    #[test]
    fn steps() {
        assert_eq!(step_decimals(0.1), 1);
        assert_eq!(step_decimals(0.01), 2);
        assert_eq!(step_decimals(0.07), 2);
        assert_eq!(step_decimals(0.001), 3);
        assert_eq!(step_decimals(0.125), 3);
        assert_eq!(step_decimals(100.0), 0);
        assert_eq!(step_decimals(0.0), 0);
        assert_eq!(step_decimals(f64::NAN), 0);
        assert_eq!(step_decimals(1e-12), MAX_DECIMALS);
    }

    #[test]
    fn meters_in_their_own_units() {
        assert_eq!(grouped("1234"), "1,234");
        assert_eq!(grouped("123"), "123");
        assert_eq!(grouped("-1234567.25"), "-1,234,567.25");
        assert_eq!(grouped("1e21"), "1e21");
        assert_eq!(count(1234.0), "1,234");
        assert_eq!(count(7.0), "7");
        assert_eq!(hours(1850.2), "1,850 h");
        assert_eq!(hours(1234.5), "1,235 h");
        assert_eq!(hours(12.46), "12.5 h");
        assert_eq!(hours(1.0), "1.0 h");
        assert_eq!(hours(0.0), "0 h");
        assert_eq!(hours(30.0 / 3600.0), "30 s");
        assert_eq!(hours(0.5), "30 min");
        assert_eq!(hours(0.9999), "1.0 h");
        assert_eq!(hours_number(2000.0), "2,000");
        assert_eq!(hours_number(30.0 / 3600.0), "0.0083");
        assert_eq!(meter("h", 1850.0), "1,850 h");
        assert_eq!(meter("count", 12000.0), "12,000");
        assert_eq!(meter("m3", 12.345), "12.35 m3");
    }

    proptest! {
        /// Fixed decimals: that many digits after the point, never `-0`,
        /// and the text reads back within half a step of the value.
        #[test]
        fn fixed_reads_back_within_half_a_step(x in -1e12f64..1e12, d in 0u8..=9) {
            let text = Precision::Decimals(d).number(x);
            let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
            prop_assert_eq!(decimals, usize::from(d));
            prop_assert!(!text.starts_with("-0") || text.bytes().any(|b| (b'1'..=b'9').contains(&b)), "{}", text);
            prop_assert!(!text.contains('e'));
            let back: f64 = text.parse().unwrap();
            let step = 10f64.powi(-i32::from(d));
            prop_assert!((back - x).abs() <= step / 2.0 + x.abs() * 1e-15, "{} for {}", text, x);
        }

        /// Significant digits: at most four of them, no exponent for
        /// plant-sized values, within half a unit of the last digit.
        #[test]
        fn significant_reads_back(x in prop_oneof![-1e9f64..1e9, -1.0f64..1.0]) {
            let text = Precision::Significant(4).number(x);
            let back: f64 = text.parse().unwrap();
            if x.abs() >= PLAIN_FROM {
                prop_assert!(!text.contains('e'), "{}", text);
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                let mut significant = digits.trim_start_matches('0');
                if !text.contains('.') {
                    significant = significant.trim_end_matches('0');
                }
                // Whole numbers above four digits keep their integer digits.
                if x.abs() < 1e4 {
                    prop_assert!(significant.len() <= 4, "{} for {}", text, x);
                }
                let unit = 10f64.powi(decimal_exponent(x, 4) - 3).min(1.0);
                prop_assert!((back - x).abs() <= unit / 2.0 + x.abs() * 1e-12, "{} for {}", text, x);
            }
            prop_assert!(text != "-0");
        }

        /// Grouping only adds commas.
        #[test]
        fn grouping_adds_only_commas(x in -1e15f64..1e15, d in 0u8..=3) {
            let plain = Precision::Decimals(d).number(x);
            let grouped = grouped(&plain);
            prop_assert_eq!(grouped.replace(',', ""), plain);
        }

        /// Any integer scale of a tenth, hundredth… gives its decimals.
        #[test]
        fn scales_give_their_decimals(mantissa in 1u32..1000, d in 0i32..6) {
            let scale = f64::from(mantissa) / 10f64.powi(d);
            let expected = (0..=d).find(|k| mantissa % 10u32.pow((d - k) as u32) == 0).map_or(d, |k| k);
            prop_assert_eq!(i32::from(step_decimals(scale)), expected);
        }
    }
}
