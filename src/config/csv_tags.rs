//! Tag maps kept in a spreadsheet: CSV files referenced by a device.
//!
//! The first row names the columns, which are the tag fields of the TOML
//! form (`name,address,type,scale,unit,...`); empty cells take the
//! defaults. Column names are matched without regard to case or
//! surrounding spaces, since spreadsheets add both. A `#` at the start of
//! a row's first cell makes the row a comment. The values of a writable
//! tag's `allowed` share one cell, separated by `|` (`0|1|2`).

use std::path::Path;

use sha2::Sha256;

use super::csv_file::CsvFile;
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
    let Some(mut file) = CsvFile::open(ctx, field, path, hasher, "tag map", "name,address,type")
    else {
        return Vec::new();
    };
    let headers = file.headers.clone();

    // Known columns keep their position; unknown ones are reported once.
    let mut known = Vec::new();
    let mut seen = Vec::new();
    let mut unknown_columns = false;
    for (i, h) in headers.iter().enumerate() {
        let name = h.trim().to_ascii_lowercase();
        if TAG_FIELDS.contains(&name.as_str()) {
            if seen.contains(&name) {
                ctx.problems.push(file.problem(
                    field,
                    1,
                    Some(&name),
                    "column appears twice".into(),
                ));
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
            ctx.problems.push(file.problem(
                field,
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
        ctx.problems.push(file.problem(
            field,
            1,
            None,
            "the header row must have at least the columns name and address".into(),
        ));
        return Vec::new();
    }
    let known_headers =
        csv::StringRecord::from(known.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>());

    let mut rows = Vec::new();
    for (line, record) in file.rows(ctx) {
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
                ctx.problems
                    .push(file.problem(field, line, column.as_deref(), message));
            }
        }
    }
    file.warn_if_empty(ctx, rows.len(), "tag map");
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
