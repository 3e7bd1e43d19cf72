//! Where a problem is: the collector that gives every problem its file,
//! line (or environment variable) and field path, shared by loading,
//! resolving and validating, and figment's errors put in plain words.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use figment::value::Value;
use serde::de::DeserializeOwned;

use super::ENV_PREFIX;
use super::problem::{Origin, Problem, Severity};
use super::source_map::SourceMap;

/// Collects problems with their location while a config is resolved and
/// validated.
pub(super) struct Ctx {
    /// The TOML file.
    pub file: PathBuf,
    /// The folder relative paths in the config are taken from.
    pub base: PathBuf,
    /// Lines of the TOML file's keys.
    pub map: SourceMap,
    /// Environment variables that override the file (`FIELDGATE_*`).
    pub env_vars: HashMap<String, String>,
    /// Everything found so far.
    pub problems: Vec<Problem>,
}

/// Where a tag was written: a TOML path or a CSV line.
#[derive(Debug, Clone)]
pub(super) enum TagSite {
    /// Inline in the TOML file at this field path.
    Toml(String),
    /// A CSV row.
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// Field path of the device's `tags` key plus the row index.
        field: String,
    },
}

impl Ctx {
    fn origin(&self, field: &str) -> Origin {
        let var = env_var_for(field);
        if self.env_vars.contains_key(&var) {
            return Origin::Env { var };
        }
        Origin::Toml {
            file: self.file.clone(),
            line: self.map.line(field),
        }
    }

    fn push(&mut self, severity: Severity, field: &str, message: String) {
        let origin = self.origin(field);
        self.problems.push(Problem {
            severity,
            origin,
            field: field.to_string(),
            message,
            instances: Vec::new(),
        });
    }

    /// Records an error at a TOML field path.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, field, message.into());
    }

    /// Records a warning at a TOML field path.
    pub fn warn(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, field, message.into());
    }

    /// Records a problem about a field of a tag, wherever the tag was written.
    pub fn tag_problem(
        &mut self,
        site: &TagSite,
        key: Option<&str>,
        severity: Severity,
        message: String,
    ) {
        match site {
            TagSite::Toml(path) => {
                let field = match key {
                    Some(k) => format!("{path}.{k}"),
                    None => path.clone(),
                };
                self.push(severity, &field, message);
            }
            TagSite::Csv { file, line, field } => self.problems.push(Problem {
                severity,
                origin: Origin::Csv {
                    file: file.clone(),
                    line: *line,
                    column: key.map(str::to_string),
                },
                field: field.clone(),
                message,
                instances: Vec::new(),
            }),
        }
    }

    /// A path from the config, relative to the config file's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Records figment's deserialization errors under `prefix`.
    pub fn figment_errors(&mut self, prefix: &str, err: figment::Error) {
        for e in err {
            let mut path: Vec<String> = e.path.clone();
            if let figment::error::Kind::UnknownField(name, _) = &e.kind
                && path.last() != Some(name)
            {
                path.push(name.clone());
            }
            let field = join_path(prefix, &path);
            self.error(&field, friendly(&e.kind));
        }
    }

    /// Deserializes one value on its own, recording its errors.
    pub fn read<T: DeserializeOwned + Default>(
        &mut self,
        field: &str,
        value: Option<&Value>,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(T::default());
        };
        match value.deserialize::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.figment_errors(field, e);
                None
            }
        }
    }
}

/// The environment variable that would override `field` (`mqtt.port` →
/// `FIELDGATE_MQTT__PORT`).
fn env_var_for(field: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        field.replace('.', "__").to_ascii_uppercase()
    )
}

fn join_path(prefix: &str, rest: &[String]) -> String {
    let mut out = prefix.to_string();
    for part in rest {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// figment's messages, in words a technician reads without a Rust book.
fn friendly(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(name, expected) => {
            let close = expected
                .iter()
                .min_by_key(|e| edit_distance(name, e))
                .filter(|e| edit_distance(name, e) <= 3);
            match close {
                Some(c) => format!("unknown key `{name}`; did you mean `{c}`?"),
                None => format!(
                    "unknown key `{name}`; expected one of: {}",
                    expected.join(", ")
                ),
            }
        }
        Kind::InvalidType(actual, expected) => {
            format!(
                "wrong type: found {actual}, expected {}",
                plain_type(expected)
            )
        }
        Kind::MissingField(name) => format!("missing key `{name}`"),
        other => other.to_string(),
    }
}

fn plain_type(expected: &str) -> String {
    match expected {
        "i64" | "u64" | "i32" | "u32" | "u16" | "u8" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a string" | "a boolean" => expected.into(),
        "bool" => "true or false".into(),
        "a sequence" => "an array".into(),
        other => other.into(),
    }
}

/// Edit distance, for "did you mean" hints.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("flaot", "float"), 2);
    }

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_for("mqtt.host"), "FIELDGATE_MQTT__HOST");
        assert_eq!(
            env_var_for("mqtt.tls.ca_file"),
            "FIELDGATE_MQTT__TLS__CA_FILE"
        );
    }
}
