//! Tag maps kept in a spreadsheet: CSV files referenced by a device.
//!
//! The first row names the columns, which are the tag fields of the TOML
//! form (`name,address,type,scale,unit,...`); empty cells take the
//! defaults. Column names are matched without regard to case or
//! surrounding spaces, since spreadsheets add both. A `#` at the start of
//! a row's first cell makes the row a comment. The values of a writable
//! tag's `allowed` share one cell, separated by `|` (`0|1|2`).

use std::path::Path;

use sha2::{Digest, Sha256};

use super::problem::{Origin, Problem, Severity};
use super::raw::{RawTag, TAG_FIELDS};
use super::report::{Ctx, TagSite, edit_distance};

/// Reads the tag rows of one CSV file. Problems are recorded in `ctx`
/// with the CSV line and column; rows with an error are left out.
pub(super) fn read(
    ctx: &mut Ctx,
    field: &str,
    path: &Path,
    hasher: &mut Sha256,
) -> Vec<(TagSite, RawTag)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            ctx.error(
                field,
                format!("cannot read tag map {}: {e}", path.display()),
            );
            return Vec::new();
        }
    };
    hasher.update(path.to_string_lossy().as_bytes());
    hasher.update(&bytes);

    let problem = |line: usize, column: Option<&str>, message: String| Problem {
        severity: Severity::Error,
        origin: Origin::Csv {
            file: path.to_path_buf(),
            line,
            column: column.map(str::to_string),
        },
        field: field.to_string(),
        message,
        instances: Vec::new(),
    };

    // A UTF-8 byte-order mark is what Excel writes at the start of
    // "CSV UTF-8"; it would otherwise become part of the first column name.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);

    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            ctx.problems
                .push(problem(1, None, format!("cannot read the header row: {e}")));
            return Vec::new();
        }
    };
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        ctx.problems.push(problem(
            1,
            None,
            "the file is empty; the first row must name the columns (name,address,type,...)".into(),
        ));
        return Vec::new();
    }

    // Known columns keep their position; unknown ones are reported once.
    let mut known = Vec::new();
    let mut seen = Vec::new();
    let mut unknown_columns = false;
    for (i, h) in headers.iter().enumerate() {
        let name = h.trim().to_ascii_lowercase();
        if TAG_FIELDS.contains(&name.as_str()) {
            if seen.contains(&name) {
                ctx.problems
                    .push(problem(1, Some(&name), "column appears twice".into()));
                continue;
            }
            seen.push(name.clone());
            known.push((i, name));
        } else if !name.is_empty() {
            unknown_columns = true;
            let hint = match TAG_FIELDS.iter().find(|f| edit_distance(&name, f) <= 2) {
                Some(f) => format!("did you mean \"{f}\"?"),
                None => format!("the columns are: {}", TAG_FIELDS.join(", ")),
            };
            ctx.problems.push(problem(
                1,
                Some(h),
                format!("unknown column \"{h}\"; {hint}"),
            ));
        }
    }
    if unknown_columns {
        // The rows cannot be read right; the column problems say why.
        return Vec::new();
    }
    if !seen.iter().any(|c| c == "name") || !seen.iter().any(|c| c == "address") {
        ctx.problems.push(problem(
            1,
            None,
            "the header row must have at least the columns name and address".into(),
        ));
        return Vec::new();
    }
    let known_headers =
        csv::StringRecord::from(known.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>());

    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("the row has {len} cells but the header has {expected_len}")
                    }
                    _ => e.to_string(),
                };
                ctx.problems.push(problem(line, None, message));
                continue;
            }
        };
        let line = record
            .position()
            .map(|p| p.line() as usize)
            .unwrap_or(index + 2);
        if record.iter().all(str::is_empty) {
            continue;
        }
        // Spreadsheets export booleans as TRUE and FALSE: any case is
        // taken in the yes/no columns (anything else is still refused).
        let row = csv::StringRecord::from(
            known
                .iter()
                .map(|(i, name)| {
                    let cell = record.get(*i).unwrap_or("");
                    if FLAG_COLUMNS.contains(&name.as_str())
                        && (cell.eq_ignore_ascii_case("true") || cell.eq_ignore_ascii_case("false"))
                    {
                        cell.to_ascii_lowercase()
                    } else {
                        cell.to_owned()
                    }
                })
                .collect::<Vec<_>>(),
        );
        match row.deserialize::<RawTag>(Some(&known_headers)) {
            Ok(raw) => rows.push((
                TagSite::Csv {
                    file: path.to_path_buf(),
                    line,
                    field: format!("{field}[{}]", rows.len()),
                },
                raw,
            )),
            Err(e) => {
                let (column, message) = match e.kind() {
                    csv::ErrorKind::Deserialize { err, .. } => (
                        err.field()
                            .and_then(|f| known_headers.get(f as usize))
                            .map(str::to_string),
                        describe(err),
                    ),
                    _ => (None, e.to_string()),
                };
                ctx.problems.push(problem(line, column.as_deref(), message));
            }
        }
    }
    if rows.is_empty()
        && !ctx
            .problems
            .iter()
            .any(|p| matches!(&p.origin, Origin::Csv { file, .. } if file == path))
    {
        ctx.problems.push(Problem {
            severity: Severity::Warning,
            ..problem(1, None, "the tag map has no rows".into())
        });
    }
    rows
}

/// The columns that hold `true` or `false`.
const FLAG_COLUMNS: &[&str] = &["alias", "writable", "confirm"];

/// The csv crate's message for a cell, in plain words.
fn describe(err: &csv::DeserializeError) -> String {
    match err.kind() {
        csv::DeserializeErrorKind::ParseFloat(_) => "not a number".into(),
        csv::DeserializeErrorKind::ParseInt(_) => "not a whole number".into(),
        csv::DeserializeErrorKind::ParseBool(_) => "not true or false".into(),
        other => other.to_string(),
    }
}
