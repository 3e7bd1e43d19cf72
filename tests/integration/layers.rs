//! The layers of `src/` stay true: every `crate::…` path in a module names
//! a module of a lower layer (or the module itself), so the dependency
//! graph has no cycle and the pure cores stay at the bottom.
//!
//! Read from the source text rather than from the compiler: a path in a
//! doc comment does not count, every other one does (test modules
//! included: a test that needs a higher layer belongs in the integration
//! tests).

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. A module may use only modules of earlier lines; modules
/// on one line may not use each other.
const LAYERS: &[&[&str]] = &[
    // Plant-level types and plumbing that know nothing of the stages.
    &["tag", "clock", "shutdown", "heartbeat", "events"],
    // The expression compiler of `expr` rules, and how values are shown to
    // people (a tag's decimals): both know only tags and values.
    &["expr", "precision"],
    &["config"],
    &["reading", "systemd", "command"],
    // The pure cores and acquisition.
    &["filter", "modbus", "rules"],
    &["sim", "store", "contract"],
    &["mqtt", "cmms"],
    &["telemetry"],
    &["pipeline", "writeback"],
    &["http"],
    &["app", "bridge"],
    &["demo"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    first.unwrap_or_default().trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::name` in the code of `text` (not in comments), with the
/// line it is on; `crate::{a, b::c}` gives `a` and `b`.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push((n + 1, name));
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((n + 1, name));
            }
        }
    }
    out
}

#[test]
fn imports_go_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut unknown = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = module_of(rel);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unknown.insert(module.clone(), rel.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, used) in uses(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => wrong.push(format!(
                    "src/{}:{line}: `{module}` uses `{used}`, which is not below it",
                    rel.display()
                )),
                // Not a module (a macro or a crate-level item such as
                // `crate::run`): nothing to order.
                None => {}
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS (add each to its layer): {unknown:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_grouped_and_plain_paths_but_not_comments() {
    let text = "use crate::{config::Device, reading};\nlet x = crate::tag::Value::Int(1); // crate::cli\n/// [`crate::app`]\n";
    let got: Vec<String> = uses(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(got, ["config", "reading", "tag"]);
}
