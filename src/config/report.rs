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
    /// The elements made from a template or read from a device list, by
    /// the field path they are resolved at (`devices[3]`,
    /// `devices[3].rules.bearing_hot`): where their own values are, and
    /// the template the rest comes from.
    pub scopes: HashMap<String, Scope>,
    /// While a device made from a template is resolved: the template's
    /// field path and the device's name, so that a problem in a tag the
    /// template gave it is reported at the template, naming the device.
    pub current: Option<(String, String)>,
}

/// Where an element's own values were written, when it is not a plain
/// TOML element: a device (or one of its rule overrides) of a template
/// or of a device list.
#[derive(Debug, Clone)]
pub(super) enum OwnSite {
    /// In the TOML file, at the scope's field path.
    Toml,
    /// A row of a device list.
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The keys the row sets, with the header of the column that
        /// holds each (`limit` → `bearing_hot.limit`).
        columns: HashMap<String, String>,
    },
}

/// An element resolved at a field path of its own, whose values come from
/// its own site and, for what it does not set, from a template.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    /// Where its own values are.
    pub own: OwnSite,
    /// The template's field path (`templates[0]`, `templates[0].rules[2]`).
    pub template: Option<String>,
    /// The device's name.
    pub instance: String,
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
        let (field, origin, instance) = self.locate(field);
        let problem = Problem {
            severity,
            origin,
            field,
            message,
            instances: Vec::new(),
        };
        self.problems.push(with_instance(problem, instance));
    }

    /// The scope `field` is in, the innermost first, with its path.
    fn scope_of<'a>(&'a self, field: &'a str) -> Option<(&'a str, &'a Scope)> {
        if self.scopes.is_empty() {
            return None;
        }
        let mut p = field;
        loop {
            if let Some(scope) = self.scopes.get(p) {
                return Some((p, scope));
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// Where a problem at `field` is reported: the field path, its origin,
    /// and the device it concerns when it is reported at a template.
    ///
    /// Within a scope, a key the element sets itself is reported where it
    /// set it (its TOML line, or its device list's row and column); a key
    /// it takes from its template is reported at the template, naming the
    /// device; a missing key at the element, or at the template when the
    /// element has no site of its own (a template's rule the device does
    /// not override).
    fn locate(&self, field: &str) -> (String, Origin, Option<String>) {
        if let Some((path, scope)) = self.scope_of(field) {
            let rest = &field[path.len()..];
            let key = rest
                .trim_start_matches('.')
                .split(['.', '['])
                .next()
                .filter(|k| !k.is_empty() && !rest.starts_with('['));
            let own_exists = match &scope.own {
                OwnSite::Toml => self.map.contains(path),
                OwnSite::Csv { .. } => true,
            };
            let own_sets = |k: &str| match &scope.own {
                OwnSite::Toml => self.map.contains(&format!("{path}.{k}")),
                OwnSite::Csv { columns, .. } => {
                    columns.contains_key(k)
                        || columns.keys().any(|c| c.starts_with(&format!("{k}.")))
                }
            };
            if let Some(template) = &scope.template {
                let to_template = match key {
                    None => !own_exists,
                    Some(k) => {
                        !own_sets(k)
                            && (!own_exists || self.map.contains(&format!("{template}.{k}")))
                    }
                };
                if to_template {
                    let at = format!("{template}{rest}");
                    let origin = Origin::Toml {
                        file: self.file.clone(),
                        line: self.map.line(&at),
                    };
                    return (at, origin, Some(scope.instance.clone()));
                }
            }
            if let OwnSite::Csv {
                file,
                line,
                columns,
            } = &scope.own
            {
                // The column of the key, or of the first key within it
                // (`rules.bearing_hot` → `bearing_hot.limit`).
                let dotted = rest.trim_start_matches('.');
                let column = key.and_then(|k| {
                    columns.get(k).cloned().or_else(|| {
                        columns
                            .iter()
                            .filter(|(c, _)| c.starts_with(dotted))
                            .map(|(_, header)| header.clone())
                            .min()
                    })
                });
                let origin = Origin::Csv {
                    file: file.clone(),
                    line: *line,
                    column,
                };
                return (field.to_string(), origin, None);
            }
            return (field.to_string(), self.origin(field), None);
        }
        let instance = self
            .current
            .as_ref()
            .filter(|(template, _)| within(field, template))
            .map(|(_, device)| device.clone());
        (field.to_string(), self.origin(field), instance)
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
            TagSite::Csv { file, line, field } => {
                let instance = self
                    .current
                    .as_ref()
                    .filter(|(template, _)| within(field, template))
                    .map(|(_, device)| device.clone());
                let problem = Problem {
                    severity,
                    origin: Origin::Csv {
                        file: file.clone(),
                        line: *line,
                        column: key.map(str::to_string),
                    },
                    field: field.clone(),
                    message,
                    instances: Vec::new(),
                };
                self.problems.push(with_instance(problem, instance));
            }
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

/// True when `field` is `prefix` or a path within it.
fn within(field: &str, prefix: &str) -> bool {
    field
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `problem` reported at a template for `instance`: the device's name in
/// its message is written `{device}`, so that the same problem found in
/// each device made from the template reads the same and is reported
/// once, naming them all ([`merge_instances`]).
fn with_instance(mut problem: Problem, instance: Option<String>) -> Problem {
    if let Some(name) = instance {
        problem.message = generalize(&problem.message, &name);
        problem.instances.push(name);
    }
    problem
}

/// `text` with every mention of the device `name` written `{device}`: a
/// mention is the name not inside a longer name (letters, digits, `_` or
/// `-` before it; letters, digits or `-` after it: `pump7_bearing_hot`
/// and `pump7.flow` mention `pump7`, `pump70` does not).
fn generalize(text: &str, name: &str) -> String {
    if name.is_empty() {
        return text.to_string();
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + name.len()..].chars().next();
        let mention = !before.is_some_and(word)
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
        out.push_str(&rest[..at]);
        out.push_str(if mention { "{device}" } else { name });
        rest = &rest[at + name.len()..];
    }
    out.push_str(rest);
    out
}

/// Problems found in several devices made from one template, at the same
/// place and in the same words, made one that names every device.
pub(super) fn merge_instances(problems: Vec<Problem>) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::with_capacity(problems.len());
    let mut index: HashMap<(Severity, String, String, String), usize> = HashMap::new();
    for problem in problems {
        if problem.instances.is_empty() {
            out.push(problem);
            continue;
        }
        let key = (
            problem.severity,
            format!("{:?}", problem.origin),
            problem.field.clone(),
            problem.message.clone(),
        );
        match index.get(&key) {
            Some(&i) => {
                for name in problem.instances {
                    if !out[i].instances.contains(&name) {
                        out[i].instances.push(name);
                    }
                }
            }
            None => {
                index.insert(key, out.len());
                out.push(problem);
            }
        }
    }
    out
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
        // TOML puts a key written below a [section] inside that section:
        // a device list written after the first section lands here.
        Kind::UnknownField(name, _) if name == "devices" => "unknown key `devices`: write a device list (devices = \"devices.csv\") at the top of the file, before the first [section] or [[table]], or TOML reads it as a key of the table above it".to_string(),
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
    fn a_device_is_named_where_it_is_mentioned() {
        assert_eq!(
            generalize("tag \"pump7.flow\" of pump7 (pump70, xpump7)", "pump7"),
            "tag \"{device}.flow\" of {device} (pump70, xpump7)"
        );
        assert_eq!(
            generalize("rule \"pump7_bearing_hot\"", "pump7"),
            "rule \"{device}_bearing_hot\""
        );
        assert_eq!(generalize("pump7-b", "pump7"), "pump7-b");
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
