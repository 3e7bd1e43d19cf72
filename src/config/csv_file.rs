//! A CSV file the config names (a tag map, a device list), read the way a
//! spreadsheet writes it: a header row naming the columns, cells trimmed,
//! `#` rows as comments, Excel's UTF-8 byte-order mark skipped, and every
//! problem placed at its line (and column, where there is one).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::problem::{Origin, Problem, Severity};
use super::report::Ctx;

/// An open CSV file and its header row.
pub(super) struct CsvFile {
    /// The file, for problems.
    pub path: PathBuf,
    /// The field path of the key that names it, for problems.
    pub field: String,
    /// The header row as written.
    pub headers: csv::StringRecord,
    reader: csv::Reader<std::io::Cursor<Vec<u8>>>,
}

impl CsvFile {
    /// Reads the file at `path`, named by the key at `field`, into
    /// `hasher` (the config hash covers it) and reads its header row.
    /// `what` names the file in problems (`tag map`); `columns` shows the
    /// first columns the header should name (`name,address,type`). `None`
    /// when there is nothing to read (reported).
    pub fn open(
        ctx: &mut Ctx,
        field: &str,
        path: &Path,
        hasher: &mut Sha256,
        what: &str,
        columns: &str,
    ) -> Option<CsvFile> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                ctx.error(field, format!("cannot read {what} {}: {e}", path.display()));
                return None;
            }
        };
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update(&bytes);
        // A UTF-8 byte-order mark is what Excel writes at the start of
        // "CSV UTF-8"; it would otherwise become part of the first column
        // name.
        let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => rest.to_vec(),
            None => bytes,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(std::io::Cursor::new(bytes));
        let header_problem = |message: String| problem(path, field, 1, None, message);
        let headers = match reader.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                ctx.problems
                    .push(header_problem(format!("cannot read the header row: {e}")));
                return None;
            }
        };
        if headers.is_empty() || headers.iter().all(str::is_empty) {
            ctx.problems.push(header_problem(format!(
                "the file is empty; the first row must name the columns ({columns},...)"
            )));
            return None;
        }
        Some(CsvFile {
            path: path.to_path_buf(),
            field: field.to_string(),
            headers,
            reader,
        })
    }

    /// An error at `line` (and `column`) of this file, for the key at
    /// `field`.
    pub fn problem(
        &self,
        field: &str,
        line: usize,
        column: Option<&str>,
        message: String,
    ) -> Problem {
        problem(&self.path, field, line, column, message)
    }

    /// The rows after the header that have a cell, with their 1-based
    /// line; a row that cannot be read (a cell too many or too few) is
    /// reported and left out.
    pub fn rows(&mut self, ctx: &mut Ctx) -> Vec<(usize, csv::StringRecord)> {
        let mut out = Vec::new();
        let records: Vec<_> = self.reader.records().collect();
        for (index, record) in records.into_iter().enumerate() {
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
                    ctx.problems
                        .push(self.problem(&self.field, line, None, message));
                    continue;
                }
            };
            if record.iter().all(str::is_empty) {
                continue;
            }
            let line = record
                .position()
                .map(|p| p.line() as usize)
                .unwrap_or(index + 2);
            out.push((line, record));
        }
        out
    }

    /// Warns that the file has no rows (`what`: `tag map`), unless a
    /// problem in it already says why.
    pub fn warn_if_empty(&self, ctx: &mut Ctx, read: usize, what: &str) {
        if read == 0
            && !ctx
                .problems
                .iter()
                .any(|p| matches!(&p.origin, Origin::Csv { file, .. } if *file == self.path))
        {
            ctx.problems.push(Problem {
                severity: Severity::Warning,
                ..self.problem(&self.field, 1, None, format!("the {what} has no rows"))
            });
        }
    }
}

/// An error at `line` (and `column`) of the CSV file `path`, for the key
/// at `field`.
pub(super) fn problem(
    path: &Path,
    field: &str,
    line: usize,
    column: Option<&str>,
    message: String,
) -> Problem {
    Problem {
        severity: Severity::Error,
        origin: Origin::Csv {
            file: path.to_path_buf(),
            line,
            column: column.map(str::to_string),
        },
        field: field.to_string(),
        message,
        instances: Vec::new(),
    }
}
