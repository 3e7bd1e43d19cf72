//! From the file to a [`Config`]: read the file and the lines of its keys,
//! merge the `FIELDGATE_*` environment over it with figment, then resolve
//! every section and element and validate the result. `bridge.toml` is
//! read and merged the same way ([`merge`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use sha2::{Digest, Sha256};

use super::problem::{Origin, Problem, Problems, Severity};
use super::raw::{BRIDGE_SECTIONS, SECTIONS};
use super::report::{Ctx, edit_distance, merge_instances};
use super::resolved::{KeyOrder, Resolved};
use super::source_map::SourceMap;
use super::{Config, ENV_PREFIX, Loaded, resolve, validate};

/// A config file read and merged with the environment, before its
/// sections are resolved.
pub(super) struct Merged {
    /// The collector, with the problems found so far.
    pub ctx: Ctx,
    /// The merged values, by section.
    pub root: figment::value::Dict,
    /// The file's text.
    pub text: String,
    /// The order of the tables whose order matters.
    pub key_order: KeyOrder,
}

/// Reads the file at `path`, merges the `FIELDGATE_*` variables of `env`
/// over it and reports every top-level key that is not one of `sections`;
/// `other` (the other config file's name and sections) makes the hint
/// for a section written in the wrong file. `Err` when nothing more can
/// be read: no file, a syntax error.
pub(super) fn merge(
    path: &Path,
    env: &[(String, String)],
    sections: &[&str],
    other: (&str, &[&str]),
) -> Result<Merged, Problems> {
    let file = path.to_path_buf();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(Problems(vec![Problem {
                severity: Severity::Error,
                origin: Origin::File { file },
                field: "config".into(),
                message: format!("cannot read the config file: {e}"),
                instances: Vec::new(),
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
                instances: Vec::new(),
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
        scopes: HashMap::new(),
        current: None,
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
        if !sections.contains(&section) {
            if !CLI_ENV.contains(&rest) {
                ctx.problems.push(Problem {
                    severity: Severity::Warning,
                    origin: Origin::Env { var: name.clone() },
                    field: key.clone(),
                    message: format!(
                        "ignored: `{section}` is not a config section (use {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}MQTT__HOST)"
                    ),
                    instances: Vec::new(),
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
    let (other_file, other_sections) = other;
    for key in root.keys() {
        if !sections.contains(&key.as_str()) {
            let hint = if other_sections.contains(&key.as_str()) {
                format!(
                    "; it is a section of {other_file} (this file has {})",
                    sections.join(", ")
                )
            } else {
                sections
                    .iter()
                    .min_by_key(|s| edit_distance(key, s))
                    .filter(|s| edit_distance(key, s) <= 3)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default()
            };
            ctx.error(key, format!("unknown section `{key}`{hint}"));
        }
    }
    let key_order = key_order(&text);
    Ok(Merged {
        ctx,
        root,
        text,
        key_order,
    })
}

/// Reads, merges, resolves and validates a config file. See [`super::load()`].
pub(super) fn load(path: &Path, env: &[(String, String)]) -> Result<Loaded, Problems> {
    let Merged {
        mut ctx,
        root,
        text,
        key_order,
    } = merge(path, env, SECTIONS, ("bridge.toml", BRIDGE_SECTIONS))?;

    // The hash is published (retained on MQTT, /api/status, /metrics):
    // hashing an inline password would let anyone who reads it test
    // guesses offline, so secrets are replaced before hashing.
    let mut hasher = Sha256::new();
    hasher.update(without_inline_secrets(&text).as_bytes());

    // Two steps that do not call each other: each element on its own
    // first, then the checks across elements on the typed result.
    let resolved = resolve::resolve(&mut ctx, &root, &key_order, &mut hasher);
    validate::validate(&mut ctx, &resolved);

    let Resolved {
        gateway,
        mqtt,
        store,
        http,
        sparkplug,
        writes,
        alarms,
        workorders,
        buses,
        devices,
        rules,
        meters,
        cmms,
        ..
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
        buses: buses.into_iter().map(|b| b.value).collect(),
        devices: devices.into_iter().map(|d| Arc::new(d.value)).collect(),
        rules: rules.into_iter().filter_map(|r| r.value).collect(),
        meters: meters.into_iter().filter_map(|m| m.value).collect(),
        cmms: cmms.into_iter().filter_map(|c| c.value).collect(),
        sparkplug,
        writes,
    };
    let mut problems = Problems(merge_instances(ctx.problems));
    problems.sort();
    if problems.has_errors() {
        return Err(problems);
    }
    Ok(Loaded {
        config,
        warnings: problems.0,
    })
}

/// The order in which the file writes the keys of each `[[cmms]]`
/// element's `headers` (written `[[cmms]]` or `cmms = [{...}]`), which
/// figment's sorted tables lose: headers go out in the order written.
fn key_order(text: &str) -> KeyOrder {
    let mut order = KeyOrder::new();
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return order;
    };
    let elements: Vec<&dyn toml_edit::TableLike> = match doc.get("cmms") {
        Some(toml_edit::Item::ArrayOfTables(a)) => {
            a.iter().map(|t| t as &dyn toml_edit::TableLike).collect()
        }
        Some(toml_edit::Item::Value(toml_edit::Value::Array(a))) => a
            .iter()
            .filter_map(|v| v.as_inline_table())
            .map(|t| t as &dyn toml_edit::TableLike)
            .collect(),
        _ => Vec::new(),
    };
    for (i, element) in elements.into_iter().enumerate() {
        if let Some(headers) = element.get("headers").and_then(|h| h.as_table_like()) {
            order.insert(
                format!("cmms[{i}].headers"),
                headers.iter().map(|(k, _)| k.to_string()).collect(),
            );
        }
    }
    order
}

/// `FIELDGATE_*` variables that belong to the command line, not the file.
const CLI_ENV: &[&str] = &["CONFIG", "LOG_FORMAT", "LOG"];

/// Keys whose value is a secret written in the file itself (the other
/// secrets are read from files the config names, and only their paths
/// are in the text).
const INLINE_SECRETS: &[(&str, &str)] = &[("mqtt", "password")];

/// What an inline secret is replaced with before hashing.
const SECRET_PLACEHOLDER: &str = "***";

/// `text` with the value of every [`INLINE_SECRETS`] key replaced by
/// [`SECRET_PLACEHOLDER`], everything else (comments and layout included)
/// as written, so the hash still changes when anything but a secret does.
/// The key is found however it is written: under `[mqtt]`, as a dotted
/// `mqtt.password` or in an inline table. The values of every
/// `[[cmms]]` element's `headers` are replaced too: a webhook that wants
/// its API key in a header of its own (`X-Api-Key`) has it written there.
fn without_inline_secrets(text: &str) -> String {
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        // Unreachable: the source map parsed the same text. Hashing
        // nothing is safe, hashing the text would not be.
        return String::new();
    };
    for (section, key) in INLINE_SECRETS {
        let value = doc
            .get_mut(section)
            .and_then(|s| s.get_mut(key))
            .and_then(|item| item.as_value_mut());
        if let Some(value) = value {
            let decor = value.decor().clone();
            *value = toml_edit::Value::from(SECRET_PLACEHOLDER);
            *value.decor_mut() = decor;
        }
    }
    let mut connectors: Vec<&mut dyn toml_edit::TableLike> = match doc.get_mut("cmms") {
        Some(toml_edit::Item::ArrayOfTables(a)) => a
            .iter_mut()
            .map(|t| t as &mut dyn toml_edit::TableLike)
            .collect(),
        Some(toml_edit::Item::Value(toml_edit::Value::Array(a))) => a
            .iter_mut()
            .filter_map(|v| v.as_inline_table_mut())
            .map(|t| t as &mut dyn toml_edit::TableLike)
            .collect(),
        _ => Vec::new(),
    };
    for connector in &mut connectors {
        let Some(headers) = connector
            .get_mut("headers")
            .and_then(|h| h.as_table_like_mut())
        else {
            continue;
        };
        for (_, item) in headers.iter_mut() {
            if let Some(value) = item.as_value_mut() {
                let decor = value.decor().clone();
                *value = toml_edit::Value::from(SECRET_PLACEHOLDER);
                *value.decor_mut() = decor;
            }
        }
    }
    doc.to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The hash of `text` written as `fieldgate.toml` in `dir`.
    fn hash_of(dir: &Path, text: &str) -> String {
        let path = dir.join("fieldgate.toml");
        std::fs::write(&path, text).unwrap();
        match super::load(&path, &[]) {
            Ok(loaded) => loaded.config.hash,
            Err(p) => panic!("does not load:\n{p}\n{text}"),
        }
    }

    /// A config with `mqtt` first, so that dotted `mqtt.*` keys are at the
    /// root rather than in a table above them.
    fn config(mqtt: &str, device_port: u16) -> String {
        format!(
            "{mqtt}\n\n[gateway]\nid = \"gw1\"\ndata_dir = \".\"\n\n\
             [[devices]]\nname = \"pump1\"\ntcp = \"127.0.0.1:{device_port}\"\ntags = \"tags.csv\"\n"
        )
    }

    const TAGS: &str = "name,address,type\ntemp,30001,f32\n";

    #[test]
    fn the_hash_leaves_the_inline_password_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tags.csv"), TAGS).unwrap();
        for (a, b) in [
            (
                "[mqtt]\nusername = \"gw\"\npassword = \"hunter2\"",
                "[mqtt]\nusername = \"gw\"\npassword = \"correct horse\"",
            ),
            (
                "mqtt.username = \"gw\"\nmqtt.password = 'hunter2'",
                "mqtt.username = \"gw\"\nmqtt.password = 'correct horse'",
            ),
            (
                "mqtt = { username = \"gw\", password = \"hunter2\" }",
                "mqtt = { username = \"gw\", password = \"correct horse\" }",
            ),
        ] {
            let one = hash_of(dir.path(), &config(a, 5020));
            let other = hash_of(dir.path(), &config(b, 5020));
            assert_eq!(one, other, "{a}\n{b}");
            assert_eq!(one.len(), 64);
        }
    }

    #[test]
    fn the_hash_changes_with_anything_but_the_password() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tags.csv"), TAGS).unwrap();
        let mqtt = "[mqtt]\nusername = \"gw\"\npassword = \"hunter2\"";
        let base = hash_of(dir.path(), &config(mqtt, 5020));
        let others = [
            config("[mqtt]\nusername = \"gw2\"\npassword = \"hunter2\"", 5020),
            config(mqtt, 5021),
            format!("# a comment\n{}", config(mqtt, 5020)),
        ];
        for other in &others {
            assert_ne!(base, hash_of(dir.path(), other), "{other}");
        }
        // The tag map counts too.
        std::fs::write(
            dir.path().join("tags.csv"),
            format!("{TAGS}flow,30003,f32\n"),
        )
        .unwrap();
        assert_ne!(base, hash_of(dir.path(), &config(mqtt, 5020)));
    }

    #[test]
    fn webhook_header_values_are_left_out_of_the_hash() {
        let text = "[[cmms]]\nname = \"a\"\nheaders = { X-Api-Key = \"k1\" } # key\n\
                    [[cmms]]\nname = \"b\"\n[cmms.headers]\nX-Token = 'k2'\n";
        assert_eq!(
            super::without_inline_secrets(text),
            "[[cmms]]\nname = \"a\"\nheaders = { X-Api-Key = \"***\" } # key\n\
             [[cmms]]\nname = \"b\"\n[cmms.headers]\nX-Token = \"***\"\n"
        );
        let inline = "cmms = [{ name = \"a\", headers = { K = \"v\" } }]\n";
        assert_eq!(
            super::without_inline_secrets(inline),
            "cmms = [{ name = \"a\", headers = { K = \"***\" } }]\n"
        );
    }

    #[test]
    fn headers_keep_the_order_written() {
        let text = "[[cmms]]\nname = \"a\"\n[cmms.headers]\nZed = \"1\"\nAlpha = \"2\"\n\n\
                    [[cmms]]\nname = \"b\"\n\n\
                    [[cmms]]\nheaders = { \"X-B\" = \"1\", \"X-A\" = \"2\", Mid = \"3\" }\n";
        let order = super::key_order(text);
        assert_eq!(order["cmms[0].headers"], ["Zed", "Alpha"]);
        assert!(!order.contains_key("cmms[1].headers"));
        assert_eq!(order["cmms[2].headers"], ["X-B", "X-A", "Mid"]);
        let inline = "cmms = [{ name = \"a\" }, { headers = { B = \"1\", A = \"2\" } }]\n";
        assert_eq!(super::key_order(inline)["cmms[1].headers"], ["B", "A"]);
        assert!(super::key_order("not toml [").is_empty());
    }

    #[test]
    fn only_the_secret_is_replaced() {
        let text = "[mqtt] # broker\nhost = \"b\"\npassword = \"hunter2\" # inline\n";
        assert_eq!(
            super::without_inline_secrets(text),
            "[mqtt] # broker\nhost = \"b\"\npassword = \"***\" # inline\n"
        );
    }
}
