//! From the file to a [`Config`]: read the file and the lines of its keys,
//! merge the `FIELDGATE_*` environment over it with figment, then resolve
//! every section and element and validate the result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use sha2::{Digest, Sha256};

use super::problem::{Origin, Problem, Problems, Severity};
use super::raw::SECTIONS;
use super::report::{Ctx, edit_distance};
use super::resolved::Resolved;
use super::source_map::SourceMap;
use super::{Config, ENV_PREFIX, Loaded, resolve, validate};

/// Reads, merges, resolves and validates a config file. See [`super::load()`].
pub(super) fn load(path: &Path, env: &[(String, String)]) -> Result<Loaded, Problems> {
    let file = path.to_path_buf();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(Problems(vec![Problem {
                severity: Severity::Error,
                origin: Origin::File { file },
                field: "config".into(),
                message: format!("cannot read the config file: {e}"),
            }]));
        }
    };
    let map = match SourceMap::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            return Err(Problems(vec![Problem {
                severity: Severity::Error,
                origin: Origin::Toml { file, line: e.line },
                field: "syntax".into(),
                message: format!("TOML syntax error: {}", e.message),
            }]));
        }
    };
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));

    let mut ctx = Ctx {
        file,
        base,
        map,
        env_vars: HashMap::new(),
        problems: Vec::new(),
    };

    // Environment overrides. Variables that name no section are reported,
    // because a typo in a unit file would otherwise be silently ignored.
    let mut figment = Figment::new().merge(Toml::string(&text));
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let section = key.split('.').next().unwrap_or("");
        if !SECTIONS.contains(&section) {
            if !CLI_ENV.contains(&rest) {
                ctx.problems.push(Problem {
                    severity: Severity::Warning,
                    origin: Origin::Env { var: name.clone() },
                    field: key.clone(),
                    message: format!(
                        "ignored: `{section}` is not a config section (use {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}MQTT__HOST)"
                    ),
                });
            }
            continue;
        }
        let parsed: Value = value.parse().unwrap_or_else(|_| Value::from(value.clone()));
        figment = figment.merge(Serialized::default(&key, parsed));
        ctx.env_vars.insert(name.clone(), value.clone());
    }

    let root: figment::value::Dict = match figment.extract() {
        Ok(d) => d,
        Err(e) => {
            ctx.figment_errors("", e);
            return Err(Problems(ctx.problems));
        }
    };
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let hint = SECTIONS
                .iter()
                .min_by_key(|s| edit_distance(key, s))
                .filter(|s| edit_distance(key, s) <= 3)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ctx.error(key, format!("unknown section `{key}`{hint}"));
        }
    }

    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());

    // Two steps that do not call each other: each element on its own
    // first, then the checks across elements on the typed result.
    let resolved = resolve::resolve(&mut ctx, &root, &mut hasher);
    validate::validate(&mut ctx, &resolved);

    let Resolved {
        gateway,
        mqtt,
        store,
        http,
        alarms,
        workorders,
        buses,
        devices,
        rules,
        meters,
    } = resolved;
    let config = Config {
        path: path.to_path_buf(),
        hash: hex(&hasher.finalize()),
        gateway,
        mqtt,
        store,
        http,
        alarms,
        workorders,
        buses,
        devices: devices.into_iter().map(|d| Arc::new(d.value)).collect(),
        rules: rules.into_iter().filter_map(|r| r.value).collect(),
        meters: meters.into_iter().filter_map(|m| m.value).collect(),
    };
    let mut problems = Problems(ctx.problems);
    problems.sort();
    if problems.has_errors() {
        return Err(problems);
    }
    Ok(Loaded {
        config,
        warnings: problems.0,
    })
}

/// `FIELDGATE_*` variables that belong to the command line, not the file.
const CLI_ENV: &[&str] = &["CONFIG", "LOG_FORMAT", "LOG"];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
