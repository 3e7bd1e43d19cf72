//! `fieldgate check --expand`: the expansion of every example config
//! loads back to the same configuration, and the command keeps its
//! stdout for the expansion alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use fieldgate::config::{self, Config};

use crate::config_check::{copy_dir, toml_blocks, write_secret_files};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sections an expansion writes; the rest of a file stays as it is.
/// `templates` (and a device list) make devices, so they go too.
const EXPANDED: &[&str] = &["buses", "devices", "rules", "meters", "templates"];

/// `config` without what differs between two files that load the same
/// way: the path, the hash, where the tags were read from, the template a
/// device was made from.
fn comparable(config: &Config) -> Config {
    let mut c = config.clone();
    c.path = PathBuf::new();
    c.hash = String::new();
    for d in &mut c.devices {
        let d = Arc::make_mut(d);
        d.tags_file = None;
        d.template = None;
    }
    c
}

/// Loads `file`, expands it, writes the expansion in place of the
/// sections it covers beside the file's other sections (in the same
/// folder, so relative paths hold), loads that, and compares.
fn round_trip(file: &Path) -> Result<(), String> {
    let name = file.display();
    let first = config::load_with_env(file, &[]).map_err(|p| format!("{name}: {p}"))?;
    let expansion = config::expand(&first.config, None).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(file).unwrap();
    let mut rest: toml_edit::DocumentMut = text.parse().unwrap();
    for section in EXPANDED {
        rest.remove(section);
    }
    let copy = file.with_extension("expanded.toml");
    let combined = format!("{rest}\n{expansion}");
    std::fs::write(&copy, &combined).unwrap();
    let second = config::load_with_env(&copy, &[])
        .map_err(|p| format!("{name}: the expansion does not load:\n{p}\n{combined}"))?;
    if comparable(&first.config) != comparable(&second.config) {
        return Err(format!(
            "{name}: the expansion loads differently:\n{expansion}\nfirst:  {:#?}\nsecond: {:#?}",
            first.config, second.config
        ));
    }
    if first.warnings.len() != second.warnings.len() {
        return Err(format!(
            "{name}: warnings differ:\n{:#?}\n{:#?}",
            first.warnings, second.warnings
        ));
    }
    Ok(())
}

/// Every example config under `config/` and every ```toml block of
/// `docs/` (bridge configs aside: they have no devices), as
/// `config_check::every_example_config_passes` finds them.
#[test]
fn every_example_config_expands_to_itself() {
    let mut failures = Vec::new();
    let mut checked = 0;

    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("config");
    copy_tree(&root().join("config"), &examples);
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let bridge = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("bridge"));
        if path.extension().is_none_or(|e| e != "toml") || bridge {
            continue;
        }
        failures.extend(round_trip(&path).err());
        checked += 1;
    }

    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("http-token"), "0123456789abcdef0123\n").unwrap();
    copy_dir(&root().join("config/tags"), &docs.join("tags"));
    for doc in std::fs::read_dir(root().join("docs")).unwrap() {
        let doc = doc.unwrap().path();
        if doc.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&doc).unwrap();
        let stem = doc.file_stem().unwrap().to_string_lossy().into_owned();
        for (i, block) in toml_blocks(&text).iter().enumerate() {
            if block.starts_with("# bridge.toml") {
                continue;
            }
            let file = docs.join(format!("{stem}-{i}.toml"));
            std::fs::write(&file, block).unwrap();
            write_secret_files(&docs, block);
            failures.extend(round_trip(&file).err());
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    assert!(checked >= 4, "only {checked} examples found");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .arg("check")
        .args(args)
        .env_remove("FIELDGATE_CONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The values of `key = "…"` lines right after each `header` line.
fn names(toml: &str, header: &str) -> Vec<String> {
    let lines: Vec<&str> = toml.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == header)
        .filter_map(|w| w[1].strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"').to_owned())
        .collect()
}

#[test]
fn expand_prints_only_toml_on_stdout_and_it_loads() {
    let example = root().join("config/fieldgate.example.toml");
    let example_arg = example.to_str().unwrap();
    let out = check(&["--expand", "-c", example_arg]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!("# {example_arg} (config ")),
        "{stdout}"
    );
    assert!(!stdout.contains(": OK"), "the summary stays off stdout");
    assert!(stderr.ends_with(": OK\n"), "{stderr}");

    // Redirected into a file beside the example's tag maps, it is a
    // config of its own with the same buses, devices, rules and meters.
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&root().join("config"), dir.path());
    let file = dir.path().join("expanded.toml");
    std::fs::write(&file, &stdout).unwrap();
    let original = config::load_with_env(&example, &[]).unwrap().config;
    let expanded = match config::load_with_env(&file, &[]) {
        Ok(l) => comparable(&l.config),
        Err(p) => panic!("{p}\n{stdout}"),
    };
    let original = comparable(&original);
    assert_eq!(expanded.buses, original.buses);
    assert_eq!(expanded.devices, original.devices);
    assert_eq!(expanded.rules, original.rules);
    assert_eq!(expanded.meters, original.meters);
    let checked = check(&["-c", file.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", text(&checked.stdout));

    // One device: its bus, and only the rules and meters on its tags.
    let out = check(&["--expand", "motor1", "-c", example_arg]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(names(&stdout, "[[buses]]"), ["line1"]);
    assert_eq!(names(&stdout, "[[devices]]"), ["motor1"]);
    let motor1_rules: Vec<String> = original
        .rules
        .iter()
        .filter(|r| r.condition.tags().iter().any(|t| t.starts_with("motor1.")))
        .map(|r| r.name.clone())
        .collect();
    assert!(!motor1_rules.is_empty());
    assert_eq!(names(&stdout, "[[rules]]"), motor1_rules);
    assert_eq!(names(&stdout, "[[meters]]"), ["motor1_starts"]);
}

#[test]
fn expand_refuses_an_unknown_device_and_a_broken_config() {
    let example = root().join("config/fieldgate.example.toml");
    let out = check(&["--expand", "pump", "-c", example.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).ends_with("no device \"pump\"; did you mean pump1?\n"),
        "{}",
        text(&out.stderr)
    );

    let broken = root().join("tests/broken/07-duplicate-tag.toml");
    let out = check(&["--expand", "-c", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("duplicate tag name"), "{stderr}");
    assert!(
        stderr.ends_with("1 error, 0 warnings; nothing to expand\n"),
        "{stderr}"
    );
}
