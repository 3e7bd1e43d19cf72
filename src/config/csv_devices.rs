//! The plant's device register kept in a spreadsheet: `devices =
//! "devices.csv"`, one row per device.
//!
//! The columns are the keys of `[[devices]]` (`name,template,tcp,unit,
//! asset,location,...`) and override columns for a template's rules and
//! meters, named `RULE.KEY` (`bearing_hot.limit`; `rules.RULE.KEY` or
//! `meters.METER.KEY` when a template has a rule and a meter of one
//! name). An empty cell leaves the key unset, so the template's value (or
//! the default) applies. As in tag maps, column names are matched without
//! regard to case or surrounding spaces, a `#` at the start of a row makes
//! it a comment, a UTF-8 byte-order mark is skipped, and `TRUE`/`FALSE`
//! are taken in yes/no columns. Lists in one cell (`write_functions`, a
//! work order's `snapshot`) are separated by `|`.
//!
//! Each row becomes the same table a `[[devices]]` element is, with where
//! each of its keys was written, so the rest of loading treats both alike
//! and reports a problem at the row and column.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use figment::value::{Dict, Tag as ValueTag, Value};
use sha2::Sha256;

use super::csv_file::{self, CsvFile};
use super::raw::{ALLOWED_SEPARATOR, DEVICE_FIELDS, METER_KEYS, RULE_KEYS, WORKORDER_KEYS};
use super::report::{Ctx, OwnSite, edit_distance};

/// Which list of a template an override column's first part names:
/// `rules` or `meters`, or why it names neither.
pub(super) type PartOf<'a> = &'a dyn Fn(&str, &str) -> Result<&'static str, String>;

/// One device of the list: its keys, and where they were written.
#[derive(Debug)]
pub(super) struct Row {
    /// The keys, as a `[[devices]]` table would have them.
    pub value: Dict,
    /// The row and the column of each key.
    pub site: OwnSite,
}

/// Device keys read as whole numbers.
const INTEGER_KEYS: &[&str] = &["unit", "retries", "max_registers", "max_bits", "max_gap"];

/// Keys read as true or false (a device's, or an override's).
const FLAG_KEYS: &[&str] = &["write_during_poll", "enabled"];

/// Override keys read as numbers.
const NUMBER_KEYS: &[&str] = &["limit", "low", "high", "rate", "deadband"];

/// Reads the device list at `path` (named by the key at `field`). `part_of`
/// tells, for a row's template and an override column's first part,
/// whether it names a rule or a meter. Problems are recorded in `ctx` with
/// the CSV line and column; a row with an error in a cell is still read
/// without that cell, so the rest of it is checked too. `None` when the
/// list could not be read at all (no file, a header to mend): which
/// devices it holds is then unknown.
pub(super) fn read(
    ctx: &mut Ctx,
    field: &str,
    path: &Path,
    part_of: PartOf<'_>,
    hasher: &mut Sha256,
) -> Option<Vec<Row>> {
    let mut file = CsvFile::open(
        ctx,
        field,
        path,
        hasher,
        "device list",
        "name,template,tcp,unit",
    )?;
    let headers = file.headers.clone();
    let problem = |line: usize, column: Option<&str>, message: String| {
        csv_file::problem(path, field, line, column, message)
    };
    let at = |field: String, line: usize, column: Option<&str>, message: String| {
        csv_file::problem(path, &field, line, column, message)
    };

    // A column is a device key, or an override (`RULE.KEY`) judged row by
    // row, since each row's template says what its rules are.
    let mut columns: Vec<(usize, Column)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut bad_header = false;
    for (i, h) in headers.iter().enumerate() {
        let trimmed = h.trim();
        if trimmed.is_empty() {
            continue;
        }
        let lower = trimmed.to_ascii_lowercase();
        if seen.contains(&lower) {
            ctx.problems
                .push(problem(1, Some(trimmed), "column appears twice".into()));
            bad_header = true;
            continue;
        }
        seen.push(lower.clone());
        if DEVICE_FIELDS.contains(&lower.as_str()) {
            columns.push((i, Column::Key(lower)));
        } else if let Some((first, rest)) = trimmed.split_once('.') {
            let column = match first.to_ascii_lowercase().as_str() {
                list @ ("rules" | "meters") => match rest.split_once('.') {
                    Some((name, key)) => Column::Override {
                        header: trimmed.to_string(),
                        list: Some(if list == "rules" { "rules" } else { "meters" }),
                        name: name.to_string(),
                        key: key.to_ascii_lowercase(),
                    },
                    None => {
                        ctx.problems.push(problem(
                            1,
                            Some(trimmed),
                            format!("write {first}.NAME.KEY, like {first}.bearing_hot.limit"),
                        ));
                        bad_header = true;
                        continue;
                    }
                },
                _ => Column::Override {
                    header: trimmed.to_string(),
                    list: None,
                    name: first.to_string(),
                    key: rest.to_ascii_lowercase(),
                },
            };
            // A key no rule or meter has is the header's mistake, told
            // once rather than in every row.
            if let Column::Override { list, key, .. } = &column
                && let Some(e) = unknown_key(*list, key)
            {
                ctx.problems.push(problem(1, Some(trimmed), e));
                bad_header = true;
                continue;
            }
            columns.push((i, column));
        } else {
            let hint = match DEVICE_FIELDS.iter().find(|f| edit_distance(&lower, f) <= 2) {
                Some(f) => format!("did you mean \"{f}\"?"),
                None => format!(
                    "the columns are the device keys ({}) and overrides of a template's rules and meters, like bearing_hot.limit",
                    DEVICE_FIELDS.join(", ")
                ),
            };
            ctx.problems.push(problem(
                1,
                Some(trimmed),
                format!("unknown column \"{trimmed}\"; {hint}"),
            ));
            bad_header = true;
        }
    }
    if bad_header {
        // The rows cannot be read right; the column problems say why.
        return None;
    }
    if !columns
        .iter()
        .any(|(_, c)| matches!(c, Column::Key(k) if k == "name"))
    {
        ctx.problems.push(problem(
            1,
            None,
            "the header row must have at least the column name".into(),
        ));
        return None;
    }

    let mut rows = Vec::new();
    let mut told: HashSet<(String, String)> = HashSet::new();
    for (line, record) in file.rows(ctx) {
        let row_field = format!("{field}[{}]", rows.len());
        let cell_problem = |column: &str, message: String| {
            at(format!("{row_field}.{column}"), line, Some(column), message)
        };
        let template = columns.iter().find_map(|(i, c)| match c {
            Column::Key(k) if k == "template" => record.get(*i).filter(|t| !t.is_empty()),
            _ => None,
        });
        let mut value = Dict::new();
        let mut placed: HashMap<String, String> = HashMap::new();
        for (i, column) in &columns {
            let cell = record.get(*i).unwrap_or("");
            if cell.is_empty() {
                continue;
            }
            match column {
                Column::Key(key) => match device_cell(key, cell) {
                    Ok(v) => {
                        value.insert(key.clone(), v);
                        placed.insert(key.clone(), key.clone());
                    }
                    Err(e) => ctx.problems.push(cell_problem(key, e)),
                },
                Column::Override {
                    header,
                    list,
                    name,
                    key,
                } => {
                    let Some(template) = template else {
                        ctx.problems.push(cell_problem(
                            header,
                            format!(
                                "overrides a template's {name}, and this device has no template"
                            ),
                        ));
                        continue;
                    };
                    let list = match list {
                        Some(l) => *l,
                        None => match part_of(template, name) {
                            Ok(l) => l,
                            Err(e) => {
                                // A column its template does not know is
                                // told at its first row, not at every row.
                                if told.insert((template.to_string(), header.clone())) {
                                    ctx.problems.push(cell_problem(header, e));
                                }
                                continue;
                            }
                        },
                    };
                    let cell_value = match override_cell(list, key, cell) {
                        Ok(v) => v,
                        Err(e) => {
                            // The field path the key has once it is read:
                            // `devices[3].rules.bearing_hot.limit`.
                            ctx.problems.push(at(
                                format!("{row_field}.{list}.{name}.{key}"),
                                line,
                                Some(header),
                                e,
                            ));
                            continue;
                        }
                    };
                    insert(&mut value, &[list, name, key], cell_value);
                    placed.insert(format!("{list}.{name}.{key}"), header.clone());
                }
            }
        }
        rows.push(Row {
            value,
            site: OwnSite::Csv {
                file: path.to_path_buf(),
                line,
                columns: placed,
            },
        });
    }
    file.warn_if_empty(ctx, rows.len(), "device list");
    Some(rows)
}

/// A column of the device list.
#[derive(Debug)]
enum Column {
    /// A device key (`tcp`, `unit`).
    Key(String),
    /// An override of a template's rule or meter.
    Override {
        /// The header as written, for problems.
        header: String,
        /// `rules` or `meters` when the header says (`rules.NAME.KEY`).
        list: Option<&'static str>,
        /// The rule's or meter's name in the template.
        name: String,
        /// Its key, dotted for a key of its work order
        /// (`workorder.title`).
        key: String,
    },
}

/// Why `key` (`limit`, `workorder.title`) is not a key of a rule (or of
/// a meter, or of either when `list` is `None`), or `None` when it is.
fn unknown_key(list: Option<&str>, key: &str) -> Option<String> {
    let (first, sub) = match key.split_once('.') {
        Some((first, sub)) => (first, Some(sub)),
        None => (key, None),
    };
    let keys: Vec<&str> = match list {
        Some("rules") => RULE_KEYS.to_vec(),
        Some(_) => METER_KEYS.to_vec(),
        None => RULE_KEYS.iter().chain(METER_KEYS).copied().collect(),
    };
    let keys: Vec<&str> = keys.into_iter().filter(|k| *k != "name").collect();
    let close = |known: &[&str], word: &str| {
        known
            .iter()
            .min_by_key(|k| edit_distance(word, k))
            .filter(|k| edit_distance(word, k) <= 2)
            .map(|k| format!("; did you mean \"{k}\"?"))
            .unwrap_or_default()
    };
    if first == "workorder" {
        return match sub {
            Some(sub) if WORKORDER_KEYS.contains(&sub) => None,
            Some(sub) => Some(format!(
                "a work order has no key \"{sub}\"{}",
                close(WORKORDER_KEYS, sub)
            )),
            None => Some("write the work order's key: workorder.title".into()),
        };
    }
    if first == "name" {
        return Some(
            "a template's rules and meters are named by its `names`; a device cannot rename them"
                .into(),
        );
    }
    if sub.is_some() || !(keys.contains(&first) || first == "enabled") {
        return Some(format!(
            "\"{key}\" is not a key of a template's rule or meter{}",
            close(&keys, first)
        ));
    }
    None
}

/// `value` put at the dotted `path` of `dict` (`workorder.title` becomes
/// a key of the `workorder` table).
fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    let parts: Vec<&str> = path.iter().flat_map(|p| p.split('.')).collect();
    let Some((last, tables)) = parts.split_last() else {
        return;
    };
    let mut at = dict;
    for part in tables {
        let entry = at
            .entry((*part).to_string())
            .or_insert_with(|| Value::Dict(ValueTag::Default, Dict::new()));
        if !matches!(entry, Value::Dict(..)) {
            *entry = Value::Dict(ValueTag::Default, Dict::new());
        }
        let Value::Dict(_, inner) = entry else {
            return;
        };
        at = inner;
    }
    at.insert((*last).to_string(), value);
}

/// A device key's cell as the value a `[[devices]]` table would hold.
fn device_cell(key: &str, cell: &str) -> Result<Value, String> {
    if INTEGER_KEYS.contains(&key) {
        cell.parse::<i64>()
            .map(Value::from)
            .map_err(|_| "not a whole number".to_string())
    } else if FLAG_KEYS.contains(&key) {
        flag(cell)
    } else if key == "write_functions" {
        cell.split(ALLOWED_SEPARATOR)
            .map(|c| {
                c.trim().parse::<i64>().map_err(|_| {
                    format!(
                        "\"{}\" is not a function code; write them like 5|6|15|16",
                        c.trim()
                    )
                })
            })
            .collect::<Result<Vec<i64>, String>>()
            .map(Value::from)
    } else {
        Ok(Value::from(cell))
    }
}

/// An override cell of a rule's or meter's `key` as the value the
/// template's table would hold.
fn override_cell(list: &str, key: &str, cell: &str) -> Result<Value, String> {
    if FLAG_KEYS.contains(&key) || key == "workorder.enabled" {
        return flag(cell);
    }
    if key == "workorder.snapshot" {
        return Ok(Value::from(
            cell.split(ALLOWED_SEPARATOR)
                .map(|t| t.trim().to_string())
                .collect::<Vec<_>>(),
        ));
    }
    if list == "rules" && NUMBER_KEYS.contains(&key) {
        return cell
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::from)
            .ok_or_else(|| "not a number".to_string());
    }
    // `value` (of an equals rule) and a meter's `every` may be numbers
    // or text; anything else is text.
    if key == "value" || (list == "meters" && key == "every") {
        return Ok(guess(cell));
    }
    Ok(Value::from(cell))
}

fn flag(cell: &str) -> Result<Value, String> {
    if cell.eq_ignore_ascii_case("true") {
        Ok(Value::from(true))
    } else if cell.eq_ignore_ascii_case("false") {
        Ok(Value::from(false))
    } else {
        Err("not true or false".into())
    }
}

/// A cell that may hold a bool, a number or text.
fn guess(cell: &str) -> Value {
    if let Ok(Value::Bool(_, b)) = flag(cell) {
        Value::from(b)
    } else if let Ok(i) = cell.parse::<i64>() {
        Value::from(i)
    } else if let Some(x) = cell.parse::<f64>().ok().filter(|x| x.is_finite()) {
        Value::from(x)
    } else {
        Value::from(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_typed_by_their_key() {
        assert_eq!(device_cell("unit", "7").unwrap().to_i128(), Some(7));
        assert!(device_cell("unit", "seven").is_err());
        assert_eq!(device_cell("asset", "1234").unwrap().as_str(), Some("1234"));
        assert_eq!(
            device_cell("write_during_poll", "TRUE").unwrap().to_bool(),
            Some(true)
        );
        let codes = device_cell("write_functions", "6|16").unwrap();
        assert_eq!(codes.as_array().map(|c| c.len()), Some(2));
        assert!(device_cell("write_functions", "6|x").is_err());
        assert_eq!(
            override_cell("rules", "limit", "85.5").unwrap().to_f64(),
            Some(85.5)
        );
        assert!(override_cell("rules", "limit", "hot").is_err());
        assert_eq!(
            override_cell("rules", "on_delay", "10s").unwrap().as_str(),
            Some("10s")
        );
        assert_eq!(
            override_cell("meters", "every", "10000").unwrap().to_i128(),
            Some(10000)
        );
        assert_eq!(
            override_cell("meters", "every", "500h").unwrap().as_str(),
            Some("500h")
        );
    }

    #[test]
    fn dotted_keys_make_tables() {
        let mut d = Dict::new();
        insert(
            &mut d,
            &["rules", "hot", "workorder.title"],
            Value::from("t"),
        );
        insert(&mut d, &["rules", "hot", "limit"], Value::from(1.0));
        let hot = d["rules"].as_dict().unwrap()["hot"].as_dict().unwrap();
        assert_eq!(
            hot["workorder"].as_dict().unwrap()["title"].as_str(),
            Some("t")
        );
        assert!(hot.contains_key("limit"));
    }
}
