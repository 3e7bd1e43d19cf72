//! `fieldgate check` against deliberately broken configs, the examples,
//! environment overrides and secrets.
//!
//! Each file in `tests/broken/` holds one mistake and names the problem
//! line it must produce in its first line: `# expect: FILE:LINE: FIELD: MESSAGE`
//! (an error) or `# expect-warning: ...` (a warning, the config still loads).
//! A file that checks that one mistake does not hide another names each
//! problem on its own leading `# expect` line; it must produce exactly as
//! many errors as it names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fieldgate::config::{self, Problem};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The problem as `check` prints it, with the folder of the broken
/// configs removed so expectations stay short.
fn render(p: &Problem) -> String {
    let dir = format!("{}/", root().join("tests/broken").display());
    p.to_string().replace(&dir, "")
}

fn broken_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/broken"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn at_least_twenty_broken_configs() {
    assert!(
        broken_files().len() >= 20,
        "keep at least 20 broken configs"
    );
}

#[test]
fn each_broken_config_reports_its_one_mistake_with_file_line_and_field() {
    let mut failures = Vec::new();
    for file in broken_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        // The leading `# expect` lines: one for most files, more for a
        // file that checks that one mistake does not hide another.
        let expectations: Vec<(bool, &str)> = text
            .lines()
            .map_while(|line| {
                if let Some(e) = line.strip_prefix("# expect: ") {
                    Some((true, e))
                } else {
                    line.strip_prefix("# expect-warning: ").map(|e| (false, e))
                }
            })
            .collect();
        assert!(
            !expectations.is_empty(),
            "{}: first line must be `# expect: ...`",
            file.display()
        );
        let problems: Vec<Problem> = match config::load_with_env(&file, &[]) {
            Ok(loaded) => loaded.warnings,
            Err(problems) => problems.0,
        };
        let errors = problems.iter().filter(|p| p.is_error()).count();
        let rendered: Vec<String> = problems.iter().map(render).collect();
        let mut missing = Vec::new();
        for (want_error, expected) in &expectations {
            let prefix = if *want_error { "error: " } else { "warning: " };
            if !rendered
                .iter()
                .any(|r| r.starts_with(prefix) && r.contains(expected))
            {
                missing.push(format!("{prefix}{expected}"));
            }
        }
        let expected_errors = expectations.iter().filter(|(e, _)| *e).count();
        if !missing.is_empty() || errors != expected_errors {
            failures.push(format!(
                "{}\n  expected {expected_errors} error(s), missing:\n    {}\n  got:\n    {}",
                file.display(),
                missing.join("\n    "),
                rendered.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Every TOML file under `config/` (the example, the demo, the bridge's
/// example; simulator scenarios excluded) and every ```toml block of
/// `docs/` loads cleanly. A block whose first line is `# bridge.toml` is
/// a bridge's config.
#[test]
fn every_example_config_passes() {
    let mut checked = 0;
    let secrets = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let is_bridge = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("bridge"));
        let warnings = if is_bridge {
            // Its secret files are named beside it: written in a folder
            // of the test's own.
            let text = std::fs::read_to_string(&path).unwrap();
            let copy = secrets.path().join("bridge.toml");
            std::fs::write(&copy, &text).unwrap();
            write_secret_files(secrets.path(), &text);
            match config::load_bridge_with_env(&copy, &[]) {
                Ok(loaded) => loaded.warnings,
                Err(p) => panic!("{} does not load:\n{p}", path.display()),
            }
        } else {
            match config::load_with_env(&path, &[]) {
                Ok(loaded) => loaded.warnings,
                Err(p) => panic!("{} does not load:\n{p}", path.display()),
            }
        };
        assert!(
            warnings.is_empty(),
            "{}: warnings:\n{warnings:#?}",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "config/ should hold the example, the demo config and the bridge's example"
    );

    let dir = tempfile::tempdir().unwrap();
    // The secret files the docs' examples name beside the config.
    std::fs::write(dir.path().join("http-token"), "0123456789abcdef0123\n").unwrap();
    for doc in std::fs::read_dir(root().join("docs")).unwrap() {
        let doc = doc.unwrap().path();
        if doc.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&doc).unwrap();
        for (i, block) in toml_blocks(&text).iter().enumerate() {
            // Blocks are copied next to the example tag maps so that a
            // `tags = "tags/pump1.csv"` in the docs resolves.
            let file = dir.path().join(format!("doc-{i}.toml"));
            std::fs::write(&file, block).unwrap();
            copy_dir(&root().join("config/tags"), &dir.path().join("tags"));
            write_secret_files(dir.path(), block);
            let loaded = if block.starts_with("# bridge.toml") {
                config::load_bridge_with_env(&file, &[]).map(|_| ())
            } else {
                config::load_with_env(&file, &[]).map(|_| ())
            };
            if let Err(p) = loaded {
                panic!("{} block {i} does not load:\n{p}\n{block}", doc.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "docs/ should hold at least one toml example");
}

/// Writes a secret in `dir` for every relative `…_file = "name"` of
/// `text` that is not there yet (the examples' API keys and tokens).
pub(crate) fn write_secret_files(dir: &Path, text: &str) {
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.starts_with('#') || !key.ends_with("_file") {
            continue;
        }
        let Some(name) = value
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.split('"').next())
        else {
            continue;
        };
        let path = dir.join(name);
        if Path::new(name).is_relative() && !path.exists() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        }
    }
}

pub(crate) fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

const MINIMAL: &str = r#"
[mqtt]
host = "broker.in.file"
port = 1883

[[devices]]
name = "pump1"
tcp = "127.0.0.1:5020"
tags = [ { name = "temp", address = 30001, type = "f32" } ]
"#;

#[test]
fn environment_overrides_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fieldgate.toml");
    std::fs::write(&file, MINIMAL).unwrap();
    let env = vec![
        (
            "FIELDGATE_MQTT__HOST".to_string(),
            "broker.from.env".to_string(),
        ),
        ("FIELDGATE_MQTT__PORT".to_string(), "8883".to_string()),
        (
            "FIELDGATE_GATEWAY__SITE".to_string(),
            "site-env".to_string(),
        ),
        (
            "FIELDGATE_STORE__MAX_BYTES".to_string(),
            "64MiB".to_string(),
        ),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let loaded = config::load_with_env(&file, &env).unwrap();
    assert_eq!(loaded.config.mqtt.host, "broker.from.env");
    assert_eq!(loaded.config.mqtt.port, 8883);
    assert_eq!(loaded.config.gateway.site, "site-env");
    assert_eq!(loaded.config.store.max_bytes, 64 << 20);

    // A bad value from the environment names the variable.
    let env = vec![("FIELDGATE_MQTT__PORT".to_string(), "eighty".to_string())];
    let problems = config::load_with_env(&file, &env).unwrap_err();
    let text = problems.to_string();
    assert!(
        text.contains("environment FIELDGATE_MQTT__PORT: mqtt.port: wrong type"),
        "{text}"
    );
}

/// Credentials to a remote broker without TLS are warned about (the
/// config still loads); over TLS or to this machine they are not.
#[test]
fn credentials_in_clear_text_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fieldgate.toml");
    let clear = "credentials are sent in clear text";
    let warnings = |text: &str, env: &[(String, String)]| -> Vec<String> {
        std::fs::write(&file, text).unwrap();
        match config::load_with_env(&file, env) {
            Ok(loaded) => loaded.warnings.iter().map(|p| p.to_string()).collect(),
            Err(p) => panic!("does not load:\n{p}\n{text}"),
        }
    };
    let with_user = MINIMAL.replace("port = 1883", "port = 1883\nusername = \"fg\"");

    let got = warnings(&with_user, &[]);
    assert!(
        got.iter().any(|w| w.contains(&format!(
            "mqtt.host: {clear} to broker.in.file:1883; enable [mqtt.tls]"
        ))),
        "{got:?}"
    );
    assert!(warnings(MINIMAL, &[]).iter().all(|w| !w.contains(clear)));
    let local = with_user.replace("broker.in.file", "localhost");
    assert!(warnings(&local, &[]).iter().all(|w| !w.contains(clear)));
    let tls = format!("{with_user}\n[mqtt.tls]\n");
    assert!(warnings(&tls, &[]).iter().all(|w| !w.contains(clear)));

    // A host from the environment is judged too, and named by its variable.
    let env = [("FIELDGATE_MQTT__HOST".to_string(), "10.0.0.7".to_string())];
    let got = warnings(&local, &env);
    assert!(
        got.iter().any(|w| w.contains("FIELDGATE_MQTT__HOST")
            && w.contains(&format!("{clear} to 10.0.0.7:1883"))),
        "{got:?}"
    );
}

#[test]
fn secret_file_is_read_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-Pa55word-that-must-not-leak";
    std::fs::write(dir.path().join("mqtt-password"), format!("{secret}\n")).unwrap();
    std::fs::write(
        dir.path().join("client-key.pem"),
        "-----BEGIN PRIVATE KEY-----\nKEYDATA\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("client.pem"),
        "-----BEGIN CERTIFICATE-----\n",
    )
    .unwrap();
    let file = dir.path().join("fieldgate.toml");
    std::fs::write(
        &file,
        format!(
            "{MINIMAL}\n[mqtt.tls]\ncert_file = \"client.pem\"\nkey_file = \"client-key.pem\"\n"
        )
        .replace(
            "port = 1883",
            "port = 8883\nusername = \"fg\"\npassword_file = \"mqtt-password\"",
        ),
    )
    .unwrap();
    let loaded = config::load_with_env(&file, &[]).unwrap();
    let password = loaded.config.mqtt.password.clone().unwrap();
    assert_eq!(
        password.expose_str(),
        secret,
        "one trailing newline is dropped"
    );
    let key = loaded.config.mqtt.tls.clone().unwrap().key.unwrap();
    assert!(key.expose_str().contains("KEYDATA"));

    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains(secret), "Debug output leaks the password");
    assert!(!debug.contains("KEYDATA"), "Debug output leaks the key");

    // Nor does `check` print it, whatever the log level.
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(&file)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(secret) && !all.contains("KEYDATA"), "{all}");
}

#[test]
fn check_exits_nonzero_and_prints_every_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(root().join("tests/broken/07-duplicate-tag.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("duplicate tag name"), "{stdout}");
    assert!(stdout.contains("1 error"), "{stdout}");

    // Several mistakes in one file are all reported, in line order.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.toml");
    std::fs::write(
        &file,
        r#"[gateway]
sit = "x"
[[devices]]
name = "p1"
tcp = "127.0.0.1:5020"
poll_interval = "5ms"
tags = [
  { name = "a", address = 40001, type = "flaot" },
  { name = "b", area = "holding", address = 3, type = "bit", bit = 16 },
]
[[rules]]
name = "r"
tag = "p1.zz"
condition = "above"
limit = 1.0
"#,
    )
    .unwrap();
    let problems = config::load_with_env(&file, &[]).unwrap_err();
    let lines: Vec<usize> = problems
        .0
        .iter()
        .map(|p| match p.origin {
            config::Origin::Toml { line, .. } => line.unwrap(),
            _ => 0,
        })
        .collect();
    assert_eq!(lines, vec![2, 6, 8, 9, 13], "{problems}");
}

#[test]
fn csv_tag_map_takes_defaults_from_empty_cells() {
    let loaded = config::load_with_env(&root().join("config/fieldgate.example.toml"), &[]).unwrap();
    let pump = loaded.config.device("pump1").unwrap();
    assert_eq!(
        pump.tags_file
            .as_deref()
            .map(|p| p.ends_with("tags/pump1.csv")),
        Some(true)
    );
    let temp = pump.tag("bearing_temp").unwrap();
    assert_eq!(temp.area, fieldgate::tag::Area::InputRegister);
    assert_eq!(temp.address, 0);
    assert_eq!(temp.scale, 1.0, "empty scale cell takes the default");
    let pressure = pump.tag("discharge_pressure").unwrap();
    assert_eq!(pressure.scale, 0.01);
    assert_eq!(
        temp.word_order,
        fieldgate::tag::WordOrder::Abcd,
        "empty cell: the device's order"
    );
    let running = pump.tag("running").unwrap();
    assert_eq!(running.data_type, fieldgate::tag::DataType::Bit(0));
    let label = pump.tag("asset_tag").unwrap();
    assert_eq!(label.data_type, fieldgate::tag::DataType::String(4));

    let demo = config::load_with_env(&root().join("config/demo.toml"), &[]).unwrap();
    let motor = demo.config.device("motor1").unwrap();
    let temp = motor.tag("bearing_temp").unwrap();
    assert_eq!(temp.word_order, fieldgate::tag::WordOrder::Cdab);
}

/// `config/plant.example.toml` and its device list make what their
/// comments say: each pump its template's rules and meters, named after
/// it, with the overrides of its row.
#[test]
fn the_plant_example_makes_what_its_comments_say() {
    let loaded = config::load_with_env(&root().join("config/plant.example.toml"), &[]).unwrap();
    let c = &loaded.config;
    let rule = |name: &str| c.rules.iter().find(|r| r.name == name);
    let meter = |name: &str| c.meters.iter().find(|m| m.name == name);
    assert_eq!(c.devices.len(), 16);

    let pump = c.device("pump07").unwrap();
    assert_eq!(pump.template.as_deref(), Some("pump"));
    assert_eq!(pump.asset.as_deref(), Some("P-107"));
    assert_eq!(pump.location.as_deref(), Some("Pump house"));
    assert_eq!(
        pump.tag("bearing_temp").unwrap().word_order,
        fieldgate::tag::WordOrder::Cdab,
        "the template's word order"
    );
    assert!(rule("pump07_dry_run").is_none(), "dry_run.enabled = FALSE");
    assert!(rule("pump06_dry_run").is_some());

    let hot = rule("pump01_bearing_hot").unwrap();
    assert!(
        matches!(&hot.condition, config::Condition::Above { tag, limit }
            if tag == "pump01.bearing_temp" && *limit == 80.0)
    );
    assert_eq!(
        hot.workorder.title.as_deref(),
        Some("P-101 (pump01): bearing temperature {value} {unit} above {limit} {unit}")
    );
    assert_eq!(
        hot.workorder.snapshot,
        ["pump01.vibration", "pump01.current"]
    );
    let hot4 = rule("pump04_bearing_hot").unwrap();
    assert!(matches!(hot4.condition, config::Condition::Above { limit, .. } if limit == 85.0));
    assert_eq!(hot4.workorder.procedure.as_deref(), Some("SOP-PUMP-012B"));
    assert_eq!(hot4.workorder.problem_code.as_deref(), Some("BRG-HOT"));
    assert!(matches!(&rule("pump03_dry_run").unwrap().condition,
        config::Condition::Expr { expr, .. } if expr == "pump03.running && pump03.flow < 1.0"));

    let seal = c.device("pump09").unwrap();
    assert!(seal.tag("seal_leak").is_some() && seal.tag("flow").is_some());
    assert_eq!(seal.location.as_deref(), Some("Pump house, basement"));
    assert_eq!(
        c.device("pump12").unwrap().poll_interval,
        Duration::from_secs(5)
    );

    let service = |name: &str| match meter(name).unwrap().kind {
        config::MeterKind::Runtime { every } => every,
        config::MeterKind::Count { .. } => panic!("{name} counts"),
    };
    assert_eq!(service("pump01_service"), Duration::from_secs(2000 * 3600));
    assert_eq!(service("pump11_service"), Duration::from_secs(1500 * 3600));
    assert!(meter("pump11_starts").is_some(), "starts.enabled = TRUE");
    assert!(
        meter("pump10_starts").is_none(),
        "enabled = false in the template"
    );

    let fan = c.device("fan2").unwrap();
    assert_eq!(
        fan.asset.as_deref(),
        Some("VFD-fan2"),
        "asset = \"VFD-{{device}}\""
    );
    assert!(matches!(rule("fan2_overcurrent").unwrap().condition,
        config::Condition::Above { limit, .. } if limit == 25.0));
    assert!(matches!(rule("fan1_overcurrent").unwrap().condition,
        config::Condition::Above { limit, .. } if limit == 18.0));
    assert!(!rule("ft301_silent").unwrap().workorder.enabled);
    assert!(
        rule("header_pressure_low").is_some(),
        "a hand-written rule beside them"
    );
    assert_eq!((c.rules.len(), c.meters.len()), (42, 15));
}

// ---------------------------------------------------------------------------
// `[sparkplug]`.

/// What a technician sees for a bad Sparkplug group id: `check` names the
/// file, the line and the field, and fails.
#[test]
fn check_prints_a_bad_sparkplug_group_id_at_its_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fieldgate.toml");
    let text = format!("{MINIMAL}\n[sparkplug]\ngroup_id = \"plant/a\"\n");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = line_of(&text, "group_id");
    let want = format!(
        "error: {}:{line}: sparkplug.group_id: group_id \"plant/a\" contains '/'; \
         Sparkplug B forbids +, # and / in ids (they are MQTT's wildcards and topic-level separator)\n",
        file.display()
    );
    assert!(stdout.contains(&want), "want:\n{want}got:\n{stdout}");
    assert!(stdout.contains(": 1 error, "), "{stdout}");

    // Fixed, the same file passes.
    std::fs::write(&file, text.replace("plant/a", "plant-a")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
}

/// The JSON tree's prefix is refused exactly when its topics would land in
/// the outbox's Sparkplug lane: the config and the store agree on the
/// namespace.
#[test]
fn a_json_prefix_is_refused_exactly_when_the_outbox_would_take_it_for_sparkplug() {
    use fieldgate::store::{Lane, SPARKPLUG_TOPIC_PREFIX};
    assert_eq!(
        format!("{}/", config::SPARKPLUG_NAMESPACE),
        SPARKPLUG_TOPIC_PREFIX
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fieldgate.toml");
    for prefix in [
        "fieldgate",
        "spBv1.0",
        "spBv1.0/plant-a",
        "spBv1.0x",
        "spBv1",
        "spbv1.0",
        "plant/spBv1.0",
    ] {
        let text = MINIMAL.replace(
            "port = 1883",
            &format!("port = 1883\ntopic_prefix = \"{prefix}\""),
        );
        std::fs::write(&file, &text).unwrap();
        let loads = config::load_with_env(&file, &[]).is_ok();
        let lane = Lane::of(&format!("{prefix}/default/gw1/status"));
        assert_eq!(loads, lane == Lane::Json, "{prefix}");
    }
}

// ---------------------------------------------------------------------------
// `[[cmms]]` connectors and `bridge.toml`.

/// A gateway with a meter, before its `[[cmms]]` sections.
const GATEWAY: &str = r#"[gateway]
id = "gw1"
data_dir = "."

[http]
listen = ""

[[devices]]
name = "pump1"
tcp = "127.0.0.1:5020"
tags = [
  { name = "temp", address = 30001, type = "f32" },
  { name = "running", address = 10001 },
]

[[meters]]
name = "pump1_runtime"
tag = "pump1.running"
every = "500h"
"#;

/// The value of every secret file of the CMMS tests: no problem text may
/// ever hold it.
const CMMS_SECRET: &str = "Zq8-cmms-secret-never-printed";

/// A folder with the secret files the `[[cmms]]` tests name.
fn cmms_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for name in ["api-key", "token", "password", "hmac", "inbound"] {
        std::fs::write(secrets.join(name), format!("{CMMS_SECRET}\n")).unwrap();
    }
    std::fs::write(secrets.join("empty"), "").unwrap();
    std::fs::write(secrets.join("spaced"), "two words\n").unwrap();
    std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    dir
}

/// Every problem of the config `text` written as `name` in `dir`, as
/// `check` prints them, the folder removed.
fn problems_of(dir: &Path, name: &str, text: &str, bridge: bool) -> (bool, Vec<String>) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let (ok, problems) = if bridge {
        match config::load_bridge_with_env(&file, &[]) {
            Ok(l) => (true, l.warnings),
            Err(p) => (false, p.0),
        }
    } else {
        match config::load_with_env(&file, &[]) {
            Ok(l) => (true, l.warnings),
            Err(p) => (false, p.0),
        }
    };
    let folder = format!("{}/", dir.display());
    (
        ok,
        problems
            .iter()
            .map(|p| p.to_string().replace(&folder, ""))
            .collect(),
    )
}

/// 1-based line of the last line of `text` that holds `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or_else(|| panic!("{needle:?} is not in\n{text}"))
}

#[test]
fn a_connector_of_each_kind_loads() {
    let dir = cmms_dir();
    let text = format!(
        r#"{GATEWAY}
[[cmms]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/fieldgate"
method = "put"
headers = {{ "X-Site" = "plant-a", "A-Tenant" = "7" }}
auth = "bearer"
token_file = "secrets/token"
body = '{{"title": "{{title}}", "wo": {{json}}}}'
events = ["raised", "closed"]
inbound_secret_file = "secrets/inbound"

[[cmms]]
name = "signed"
kind = "webhook"
url = "http://127.0.0.1:8080/hook"
auth = "hmac"
secret_file = "secrets/hmac"

[[cmms]]
name = "basic"
kind = "webhook"
url = "https://hooks.example.com/basic"
auth = "basic"
username = "fieldgate"
password_file = "secrets/password"

[[cmms]]
name = "maximo"
kind = "maximo"
url = "https://maximo.example.com/maximo"
api_key_file = "secrets/api-key"
site_id = "BEDFORD"
priorities = {{ critical = 0 }}
assets = {{ P-101 = "11430" }}
locations = {{ "Pump house" = "BR300" }}
ca_file = "ca.pem"
timeout = "30s"
retry_min = "2s"
retry_max = "10m"

[[cmms]]
name = "mx"
kind = "maintainx"
url = "https://api.getmaintainx.com/v1"
api_key_file = "secrets/api-key"
assets = {{ P-101 = 4711 }}
meters = {{ pump1_runtime = 881 }}
inbound_token_file = "secrets/inbound"

[[cmms]]
name = "upkeep"
kind = "upkeep"
url = "https://api.onupkeep.com/api/v2"
session_token_file = "secrets/token"
poll_interval = "0s"
work_orders = true
"#
    );
    let file = dir.path().join("fieldgate.toml");
    std::fs::write(&file, &text).unwrap();
    let loaded = match config::load_with_env(&file, &[]) {
        Ok(l) => l,
        Err(p) => panic!("does not load:\n{p}"),
    };
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let cmms = &loaded.config.cmms;
    let names: Vec<&str> = cmms.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["hook", "signed", "basic", "maximo", "mx", "upkeep"]);

    let hook = &cmms[0];
    assert_eq!(hook.timeout, Duration::from_secs(10));
    assert_eq!(hook.retry_min, Duration::from_secs(1));
    assert_eq!(hook.retry_max, Duration::from_secs(300));
    assert_eq!(hook.poll_interval, Some(Duration::from_secs(60)));
    assert!(hook.work_orders);
    assert!(matches!(hook.inbound, Some(config::InboundAuth::Hmac(_))));
    let config::CmmsKind::Webhook(w) = &hook.kind else {
        panic!("{:?}", hook.kind)
    };
    assert_eq!(w.method, "PUT");
    // In the order written, not sorted.
    assert_eq!(
        w.headers,
        [
            ("X-Site".to_string(), "plant-a".to_string()),
            ("A-Tenant".to_string(), "7".to_string())
        ]
    );
    match &w.auth {
        config::WebhookAuth::Bearer(t) => assert_eq!(t.expose_str(), CMMS_SECRET),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.body.as_deref(),
        Some(r#"{"title": "{title}", "wo": {json}}"#)
    );
    assert_eq!(w.content_type, "application/json");
    assert_eq!(w.events, ["raised", "closed"]);

    let config::CmmsKind::Webhook(signed) = &cmms[1].kind else {
        panic!()
    };
    match &signed.auth {
        config::WebhookAuth::Hmac { header, .. } => assert_eq!(header, "X-Fieldgate-Signature"),
        other => panic!("{other:?}"),
    }
    assert_eq!(signed.method, "POST");
    assert_eq!(signed.events, ["raised", "updated", "closed"]);
    let config::CmmsKind::Webhook(basic) = &cmms[2].kind else {
        panic!()
    };
    assert!(
        matches!(&basic.auth, config::WebhookAuth::Basic { username, .. } if username == "fieldgate")
    );

    let maximo = &cmms[3];
    let config::CmmsKind::Maximo(m) = &maximo.kind else {
        panic!()
    };
    assert_eq!(m.site_id, "BEDFORD");
    assert_eq!(m.object_structure, "mxwo");
    assert_eq!(m.api_path, "oslc");
    assert_eq!(
        (
            m.worktype_corrective.as_str(),
            m.worktype_preventive.as_str()
        ),
        ("CM", "PM")
    );
    assert_eq!(m.key_field, "externalrefid");
    assert_eq!(m.priorities, [4, 3, 2, 0]);
    assert_eq!(m.api_key.expose_str(), CMMS_SECRET);
    assert_eq!(maximo.assets["P-101"], "11430");
    assert_eq!(maximo.locations["Pump house"], "BR300");
    assert!(
        maximo
            .ca_file
            .as_deref()
            .is_some_and(|p| p.ends_with("ca.pem"))
    );
    assert_eq!(maximo.timeout, Duration::from_secs(30));
    assert_eq!(maximo.retry_max, Duration::from_secs(600));

    let mx = &cmms[4];
    assert!(matches!(mx.kind, config::CmmsKind::MaintainX(_)));
    assert_eq!(mx.assets["P-101"], "4711", "integer ids are kept as text");
    assert_eq!(mx.meters["pump1_runtime"], "881");
    assert!(matches!(mx.inbound, Some(config::InboundAuth::Token(_))));

    let upkeep = &cmms[5];
    assert!(matches!(upkeep.kind, config::CmmsKind::UpKeep(_)));
    assert_eq!(upkeep.poll_interval, None, "\"0s\" turns polling off");

    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains(CMMS_SECRET), "Debug output leaks a secret");
}

/// Each mistake in a `[[cmms]]` section gives one error, with the file,
/// the line, the field and words that say what to do; no secret is ever
/// in it.
#[test]
fn each_connector_mistake_is_reported_with_file_line_and_field() {
    const HOOK: &str =
        "[[cmms]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://h.example.com/x\"\n";
    const MAXIMO: &str = "[[cmms]]\nname = \"mx\"\nkind = \"maximo\"\nurl = \"https://m.example.com/maximo\"\napi_key_file = \"secrets/api-key\"\nsite_id = \"S1\"\n";
    const UPKEEP: &str = "[[cmms]]\nname = \"up\"\nkind = \"upkeep\"\nurl = \"https://api.onupkeep.com/api/v2\"\nsession_token_file = \"secrets/token\"\n";
    // (the section(s), the text whose (last) line is reported, the field,
    // what the message says)
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            "[[cmms]]\nkind = \"webhook\"\nurl = \"https://h.example.com/x\"\n".into(),
            "[[cmms]]",
            "cmms[0].name",
            "missing connector name",
        ),
        (
            HOOK.replace("\"hook\"", "\"my hook\""),
            "my hook",
            "cmms[0].name",
            "connector name \"my hook\" contains ' '",
        ),
        (
            format!("{HOOK}{}", HOOK.replace("h.example", "i.example")),
            "name = \"hook\"",
            "cmms[1].name",
            "duplicate connector name \"hook\"",
        ),
        (
            HOOK.replace("kind = \"webhook\"\n", ""),
            "[[cmms]]",
            "cmms[0].kind",
            "missing kind (webhook, maximo, maintainx, upkeep)",
        ),
        (
            HOOK.replace("\"webhook\"", "\"sap\""),
            "sap",
            "cmms[0].kind",
            "kind \"sap\" is not one of webhook, maximo, maintainx, upkeep",
        ),
        (
            HOOK.replace("url = \"https://h.example.com/x\"\n", ""),
            "[[cmms]]",
            "cmms[0].url",
            "missing url",
        ),
        (
            HOOK.replace("https://h.example.com/x", "ftp://h.example.com/x"),
            "ftp:",
            "cmms[0].url",
            "the URL's scheme is `ftp`; use https://",
        ),
        (
            HOOK.replace("https://h.example.com/x", "h.example.com/x"),
            "url =",
            "cmms[0].url",
            "not a URL",
        ),
        (
            HOOK.replace("https://h.example.com/x", "https://fg:Pa55@h.example.com/x"),
            "url =",
            "cmms[0].url",
            "the URL holds credentials: put them in a file",
        ),
        (
            format!("{HOOK}timeout = \"500ms\"\n"),
            "timeout",
            "cmms[0].timeout",
            "500ms is out of range (1s to 5m)",
        ),
        (
            format!("{HOOK}retry_min = \"1m\"\nretry_max = \"30s\"\n"),
            "retry_max",
            "cmms[0].retry_max",
            "retry_max 30s is shorter than retry_min 1m",
        ),
        (
            format!("{HOOK}poll_interval = \"2s\"\n"),
            "poll_interval",
            "cmms[0].poll_interval",
            "2s is out of range (5s to 1day)",
        ),
        (
            format!("{HOOK}ca_file = \"no-such-ca.pem\"\n"),
            "ca_file",
            "cmms[0].ca_file",
            "cannot read",
        ),
        (
            format!("{HOOK}inbound_token_file = \"secrets/inbound\"\ninbound_secret_file = \"secrets/inbound\"\n"),
            "inbound_secret_file",
            "cmms[0].inbound_secret_file",
            "give either inbound_token_file or inbound_secret_file, not both",
        ),
        (
            format!("{HOOK}colour = \"red\"\n"),
            "colour",
            "cmms[0].colour",
            "unknown key `colour`",
        ),
        (
            format!("{HOOK}method = \"GET\"\n"),
            "method",
            "cmms[0].method",
            "method \"GET\" is not POST, PUT or PATCH",
        ),
        (
            format!("{HOOK}[cmms.headers]\nAuthorization = \"Bearer {CMMS_SECRET}\"\n"),
            "Authorization",
            "cmms[0].headers.Authorization",
            "use auth",
        ),
        (
            format!("{HOOK}headers = {{ \"Bad Name\" = \"x\" }}\n"),
            "Bad Name",
            "cmms[0].headers.Bad Name",
            "is not an HTTP header name",
        ),
        (
            format!("{HOOK}auth = \"digest\"\n"),
            "digest",
            "cmms[0].auth",
            "auth \"digest\" is not one of none, bearer, basic, hmac",
        ),
        (
            format!("{HOOK}auth = \"bearer\"\n"),
            "[[cmms]]",
            "cmms[0].token_file",
            "missing token_file (the file holding the bearer token)",
        ),
        (
            format!("{HOOK}token_file = \"secrets/token\"\n"),
            "token_file",
            "cmms[0].token_file",
            "`token_file` is for auth = \"bearer\"; this webhook has auth = \"none\"",
        ),
        (
            format!("{HOOK}auth = \"basic\"\nusername = \"fg\"\n"),
            "[[cmms]]",
            "cmms[0].password_file",
            "auth = \"basic\" needs password_file",
        ),
        (
            format!("{HOOK}auth = \"bearer\"\ntoken_file = \"secrets/empty\"\n"),
            "token_file",
            "cmms[0].token_file",
            "is empty",
        ),
        (
            format!("{HOOK}auth = \"bearer\"\ntoken_file = \"secrets/spaced\"\n"),
            "token_file",
            "cmms[0].token_file",
            "the secret holds spaces or characters that cannot go in an HTTP header",
        ),
        (
            format!("{HOOK}events = [\"raised\", \"deleted\"]\n"),
            "events",
            "cmms[0].events[1]",
            "event \"deleted\" is not one of raised, updated, closed",
        ),
        (
            format!("{HOOK}events = []\n"),
            "events",
            "cmms[0].events",
            "events is empty",
        ),
        (
            format!("{HOOK}token = \"{CMMS_SECRET}\"\n"),
            "token =",
            "cmms[0].token",
            "put it in a file: token_file",
        ),
        (
            format!("{HOOK}meters = {{ pump9_runtime = \"m1\" }}\n").replace("webhook", "maintainx")
                + "api_key_file = \"secrets/api-key\"\n",
            "pump9_runtime",
            "cmms[0].meters.pump9_runtime",
            "meter \"pump9_runtime\" is not defined (meters: pump1_runtime)",
        ),
        (
            MAXIMO.replace("api_key_file = \"secrets/api-key\"\n", ""),
            "[[cmms]]",
            "cmms[0].api_key_file",
            "missing api_key_file (the file holding the API key)",
        ),
        (
            MAXIMO.replace("site_id = \"S1\"\n", ""),
            "[[cmms]]",
            "cmms[0].site_id",
            "missing site_id",
        ),
        (
            MAXIMO.replace(
                "api_key_file = \"secrets/api-key\"",
                &format!("api_key = \"{CMMS_SECRET}\""),
            ) + "api_key_file = \"secrets/api-key\"\n",
            "api_key =",
            "cmms[0].api_key",
            "put it in a file: api_key_file",
        ),
        (
            format!("{MAXIMO}priorities = {{ urgent = 1 }}\n"),
            "urgent",
            "cmms[0].priorities.urgent",
            "priority \"urgent\" is not one of low, medium, high, critical",
        ),
        (
            format!("{MAXIMO}method = \"PUT\"\n"),
            "method",
            "cmms[0].method",
            "`method` is a key of webhook connectors; this one is kind = \"maximo\"",
        ),
        (
            MAXIMO.replace("secrets/api-key", "secrets/missing-key"),
            "api_key_file",
            "cmms[0].api_key_file",
            "cannot read secret file",
        ),
        (
            "[[cmms]]\nname = \"x\"\nkind = \"maintainx\"\nurl = \"https://api.getmaintainx.com/v1\"\n".into(),
            "[[cmms]]",
            "cmms[0].api_key_file",
            "missing api_key_file",
        ),
        (
            format!("{UPKEEP}api_key_file = \"secrets/api-key\"\n"),
            "api_key_file",
            "cmms[0].api_key_file",
            "`api_key_file` is a key of maximo and maintainx connectors; this one is kind = \"upkeep\"",
        ),
        (
            UPKEEP.replace("session_token_file = \"secrets/token\"\n", ""),
            "[[cmms]]",
            "cmms[0].session_token_file",
            "missing session_token_file",
        ),
        (
            format!("{UPKEEP}site_id = \"S1\"\n"),
            "site_id",
            "cmms[0].site_id",
            "`site_id` is a key of maximo connectors",
        ),
    ];
    let dir = cmms_dir();
    let mut failures = Vec::new();
    for (section, needle, field, message) in &cases {
        let text = format!("{GATEWAY}\n{section}");
        let expected = format!(
            "error: fieldgate.toml:{}: {field}: ",
            line_of(&text, needle)
        );
        let (ok, got) = problems_of(dir.path(), "fieldgate.toml", &text, false);
        let errors: Vec<&String> = got.iter().filter(|p| p.starts_with("error: ")).collect();
        let found = errors
            .iter()
            .any(|p| p.starts_with(&expected) && p.contains(message));
        if ok || !found || errors.len() != 1 {
            failures.push(format!(
                "{section}\n  expected: {expected}…{message}\n  got:\n    {}",
                got.join("\n    ")
            ));
        }
        for p in &got {
            assert!(
                !p.contains(CMMS_SECRET) && !p.contains("Pa55"),
                "a secret is echoed: {p}"
            );
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// What is allowed but worth knowing: plain HTTP beyond this machine, an
/// unknown placeholder, meters for a CMMS that takes no readings.
#[test]
fn connector_warnings() {
    let dir = cmms_dir();
    let hook = "[[cmms]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://h.example.com/x\"\n";
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            hook.replace("https://h.example.com", "http://10.0.0.9:8080"),
            "url =",
            "cmms[0].url",
            "work orders are sent in clear text to 10.0.0.9 (http://); use https://",
        ),
        (
            "[[cmms]]\nname = \"up\"\nkind = \"upkeep\"\nurl = \"http://upkeep.plant.local/api/v2\"\nsession_token_file = \"secrets/token\"\n".into(),
            "url =",
            "cmms[0].url",
            "credentials and work orders are sent in clear text to upkeep.plant.local",
        ),
        (
            format!("{hook}body = '{{\"t\": \"{{title}}\", \"a\": \"{{assett}}\"}}'\n"),
            "body",
            "cmms[0].body",
            "unknown placeholder {assett} is sent as written; known: id, key, event",
        ),
        (
            "[[cmms]]\nname = \"mx\"\nkind = \"maximo\"\nurl = \"https://m.example.com/maximo\"\napi_key_file = \"secrets/api-key\"\nsite_id = \"S1\"\nmeters = { pump1_runtime = \"M1\" }\n".into(),
            "meters",
            "cmms[0].meters",
            "only MaintainX takes meter readings",
        ),
        (
            format!("{hook}work_orders = false\n"),
            "work_orders",
            "cmms[0].work_orders",
            "this connector delivers nothing",
        ),
    ];
    let mut failures = Vec::new();
    for (section, needle, field, message) in &cases {
        let text = format!("{GATEWAY}\n{section}");
        let expected = format!(
            "warning: fieldgate.toml:{}: {field}: ",
            line_of(&text, needle)
        );
        let (ok, got) = problems_of(dir.path(), "fieldgate.toml", &text, false);
        if !ok || got.len() != 1 || !got[0].starts_with(&expected) || !got[0].contains(message) {
            failures.push(format!(
                "{section}\n  expected: {expected}…{message}\n  got:\n    {}",
                got.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Plain HTTP to this machine is not warned about.
    let local = hook.replace("https://h.example.com", "http://localhost:8080");
    let (ok, got) = problems_of(
        dir.path(),
        "fieldgate.toml",
        &format!("{GATEWAY}\n{local}"),
        false,
    );
    assert!(ok && got.is_empty(), "{got:?}");
}

/// `fieldgate check` prints connector problems as it prints every other,
/// and never the secret written inline.
#[test]
fn check_reports_connector_problems_without_secrets() {
    let dir = cmms_dir();
    let text = format!(
        "{GATEWAY}\n[[cmms]]\nname = \"mx\"\nkind = \"maximo\"\nurl = \"https://m.example.com/maximo\"\napi_key = \"{CMMS_SECRET}\"\nsite_id = \"S1\"\ntimeout = \"1h\"\n"
    );
    let file = dir.path().join("fieldgate.toml");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(&file)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(CMMS_SECRET), "{all}");
    let file = file.display();
    for expected in [
        format!(
            "error: {file}:{}: cmms[0].api_key: a secret is never written in the config: put it in a file: api_key_file",
            line_of(&text, "api_key =")
        ),
        format!(
            "error: {file}:{}: cmms[0].api_key_file: missing api_key_file",
            line_of(&text, "[[cmms]]")
        ),
        format!(
            "error: {file}:{}: cmms[0].timeout: 1h is out of range (1s to 5m)",
            line_of(&text, "timeout")
        ),
    ] {
        assert!(stdout.contains(&expected), "{expected}\n{stdout}");
    }
    assert!(stdout.contains("3 errors"), "{stdout}");

    // A valid connector: `check` says so, and names it.
    let text = format!(
        "{GATEWAY}\n[[cmms]]\nname = \"mx\"\nkind = \"maximo\"\nurl = \"https://m.example.com/maximo\"\napi_key_file = \"secrets/api-key\"\nsite_id = \"S1\"\n"
    );
    std::fs::write(dir.path().join("fieldgate.toml"), &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(dir.path().join("fieldgate.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains(CMMS_SECRET), "{stdout}");
    assert!(stdout.contains("cmms mx"), "{stdout}");
}

#[test]
fn a_bridge_config_loads_with_its_defaults() {
    let dir = cmms_dir();
    let text = r#"[bridge]
id = "it-host-1"

[mqtt]
host = "localhost"

[[cmms]]
name = "mx"
kind = "maintainx"
url = "https://api.getmaintainx.com/v1"
api_key_file = "secrets/api-key"
meters = { pump1_runtime = 881, any_gateways_meter = 882 }
"#;
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, text).unwrap();
    let loaded = match config::load_bridge_with_env(&file, &[]) {
        Ok(l) => l,
        Err(p) => panic!("does not load:\n{p}"),
    };
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.path, file);
    assert_eq!(c.bridge.id, "it-host-1");
    assert_eq!(c.bridge.data_dir, Path::new("/var/lib/fieldgate-bridge"));
    assert_eq!(c.bridge.shared_group.as_deref(), Some("fieldgate-bridge"));
    assert_eq!(c.bridge.topic_prefix, "fieldgate");
    assert_eq!(c.mqtt.client_id, "fieldgate-bridge-it-host-1");
    assert_eq!(c.mqtt.topic_prefix, "fieldgate");
    assert_eq!(c.mqtt.port, 1883);
    assert_eq!(
        c.store.path,
        Path::new("/var/lib/fieldgate-bridge/bridge.db")
    );
    assert_eq!(c.cmms.len(), 1);
    assert_eq!(
        c.cmms[0].meters.len(),
        2,
        "the gateways' meters are not checked"
    );

    // Defaults from other keys, and "" for no shared subscription.
    let text = r#"[bridge]
id = "b2"
data_dir = "state"
shared_group = ""

[mqtt]
topic_prefix = "plant/a"
client_id = "own-id"

[store]
durability = "normal"

[[cmms]]
name = "hook"
kind = "webhook"
url = "https://h.example.com/x"
"#;
    std::fs::write(&file, text).unwrap();
    let c = config::load_bridge_with_env(&file, &[]).unwrap().config;
    assert_eq!(c.bridge.shared_group, None);
    assert_eq!(c.bridge.topic_prefix, "plant/a");
    assert_eq!(c.mqtt.client_id, "own-id");
    assert_eq!(c.bridge.data_dir, dir.path().join("state"));
    assert_eq!(c.store.path, dir.path().join("state/bridge.db"));
    assert_eq!(c.store.durability, config::Durability::Normal);

    // The environment overrides a bridge as it does a gateway.
    let env = [("FIELDGATE_BRIDGE__ID".to_string(), "from-env".to_string())];
    let c = config::load_bridge_with_env(&file, &env).unwrap().config;
    assert_eq!(c.bridge.id, "from-env");
    assert_eq!(c.mqtt.client_id, "own-id");
}

#[test]
fn bridge_config_mistakes_are_reported_with_file_line_and_field() {
    let dir = cmms_dir();
    let text = format!(
        r#"[bridge]
id = "b 1"
shared_group = "a/b"
topic_prefix = "fieldgate"

[mqtt]
topic_prefix = "other"
qos = 0

[[devices]]
name = "pump1"

[[cmms]]
name = "mx"
kind = "maximo"
url = "https://m.example.com/maximo"
api_key = "{CMMS_SECRET}"
api_key_file = "secrets/api-key"

[[cmms]]
name = "mx"
kind = "upkeep"
url = "https://api.onupkeep.com/api/v2"
session_token_file = "secrets/token"
"#
    );
    let (ok, got) = problems_of(dir.path(), "bridge.toml", &text, true);
    assert!(!ok);
    let line = |needle| line_of(&text, needle);
    let expected = [
        format!(
            "error: bridge.toml:{}: bridge.id: bridge name \"b 1\" contains ' '",
            line("b 1")
        ),
        format!(
            "error: bridge.toml:{}: bridge.shared_group: shared group \"a/b\" cannot hold /, +, # or spaces",
            line("shared_group")
        ),
        format!(
            "error: bridge.toml:{}: mqtt.topic_prefix: topic prefix \"other\" differs from [bridge] topic_prefix \"fieldgate\"",
            line("\"other\"")
        ),
        format!("error: bridge.toml:{}: mqtt.qos: QoS 0", line("qos")),
        format!(
            "error: bridge.toml:{}: devices: unknown section `devices`; it is a section of fieldgate.toml (this file has bridge, mqtt, store, cmms)",
            line("[[devices]]")
        ),
        format!(
            "error: bridge.toml:{}: cmms[0].api_key: a secret is never written in the config: put it in a file: api_key_file",
            line("api_key =")
        ),
        format!(
            "error: bridge.toml:{}: cmms[0].site_id: missing site_id",
            text.lines().position(|l| l == "[[cmms]]").unwrap() + 1
        ),
        format!(
            "error: bridge.toml:{}: cmms[1].name: duplicate connector name \"mx\"",
            line("name = \"mx\"")
        ),
    ];
    for e in &expected {
        assert!(
            got.iter().any(|p| p.starts_with(e.as_str())),
            "missing: {e}\ngot:\n{}",
            got.join("\n")
        );
    }
    assert_eq!(
        got.iter().filter(|p| p.starts_with("error: ")).count(),
        expected.len(),
        "{}",
        got.join("\n")
    );
    assert!(got.iter().all(|p| !p.contains(CMMS_SECRET)), "{got:?}");

    // A bridge section in a gateway's config is pointed to the right file.
    let (_, got) = problems_of(
        dir.path(),
        "fieldgate.toml",
        "[bridge]\nid = \"b1\"\n",
        false,
    );
    assert!(
        got.iter().any(|p| p.contains(
            "bridge: unknown section `bridge`; it is a section of bridge.toml (this file has gateway, mqtt"
        )),
        "{got:?}"
    );
    // A bridge with nothing to deliver is warned about.
    let (ok, got) = problems_of(dir.path(), "bridge.toml", "[bridge]\nid = \"b1\"\n", true);
    assert!(ok, "{got:?}");
    assert!(
        got.iter()
            .any(|p| p.contains("cmms: there is no [[cmms]] section: the bridge delivers nothing")),
        "{got:?}"
    );
}

// ---------------------------------------------------------------------------
// Write-back: writable tags, write functions, `[writes]`.

/// Runs `fieldgate check` on `file`: its exit code and what it printed.
fn check(file: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A gateway with two devices that have writable tags, one of them from a
/// CSV tag map.
const WRITABLE: &str = r#"[gateway]
id = "gw1"
data_dir = "."

[http]
listen = ""

[writes]
max_age = "15s"

[[devices]]
name = "dosing"
tcp = "127.0.0.1:5020"
write_functions = [5, 16]
tags = [
  { name = "flow_setpoint", address = 40001, type = "f32", writable = true, min = 0.0, max = 250.0 },
  { name = "fault_reset", address = "00001", writable = true, allowed = [true], confirm = false },
  { name = "flow", address = 30001, type = "f32" },
]

[[devices]]
name = "mixer"
tcp = "127.0.0.1:5021"
write_during_poll = true
tags = "mixer.csv"
"#;

const MIXER_CSV: &str = "name,address,type,writable,min,max,allowed,max_rate\n\
                         mode,40001,u16,true,,,0|1|2,6\n\
                         speed,30001,u16,,,,,\n";

#[test]
fn check_summarises_the_writable_tags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mixer.csv"), MIXER_CSV).unwrap();
    let file = dir.path().join("fieldgate.toml");
    std::fs::write(&file, WRITABLE).unwrap();
    let (code, stdout) = check(&file);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(
            "\n  writes           3 writable tags on 2 devices (max_age 15s); during polls on mixer\n"
        ),
        "{stdout}"
    );
    assert!(stdout.ends_with(": OK\n"), "no warnings: {stdout}");

    let loaded = config::load_with_env(&file, &[]).unwrap();
    let mixer = loaded.config.device("mixer").unwrap();
    let mode = mixer.tag("mode").unwrap().write.clone().unwrap();
    assert_eq!(mode.max_rate, Some(6));
    assert_eq!(mode.allowed.len(), 3);
    assert!(mixer.tag("speed").unwrap().write.is_none());
    assert_eq!(loaded.config.writes.max_age, Duration::from_secs(15));

    // Nothing writable: no line.
    std::fs::write(&file, MINIMAL).unwrap();
    let (code, stdout) = check(&file);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(!stdout.contains("writes"), "{stdout}");

    // An unbounded numeric tag is warned about; the config still loads.
    let open = WRITABLE.replace(", min = 0.0, max = 250.0", "");
    std::fs::write(&file, &open).unwrap();
    let (code, stdout) = check(&file);
    assert_eq!(code, Some(0), "{stdout}");
    let want = format!(
        "warning: {}:{}: devices[0].tags[0].writable: any value the register holds can be written (an f32 holds",
        file.display(),
        line_of(&open, "flow_setpoint")
    );
    assert!(stdout.contains(&want), "want {want}\n{stdout}");
    assert!(stdout.contains(": OK (1 warning)"), "{stdout}");
}

#[test]
fn check_refuses_what_cannot_be_written_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fieldgate.toml");
    // Every mistake at once: one does not hide the next.
    let csv = "name,address,type,writable,min,max,allowed,max_rate\n\
               mode,40001,u16,true,,,0;1;2,\n\
               speed,30001,u16,true,0,1500,,\n\
               level,40002,u16,,0,,,\n";
    std::fs::write(dir.path().join("mixer.csv"), csv).unwrap();
    let text = WRITABLE
        .replace("write_functions = [5, 16]", "write_functions = [5, 6, 3]")
        .replace("min = 0.0, max = 250.0", "min = 0.0, max = 1e39")
        .replace(
            "{ name = \"flow\", address = 30001, type = \"f32\" }",
            "{ name = \"flow\", address = 30001, type = \"f32\", writable = true }",
        )
        .replace("max_age = \"15s\"", "max_age = \"2h\"");
    std::fs::write(&file, &text).unwrap();
    let (code, stdout) = check(&file);
    assert_eq!(code, Some(1), "{stdout}");
    let (f, csv_file) = (
        file.display().to_string(),
        dir.path().join("mixer.csv").display().to_string(),
    );
    let expected = [
        format!(
            "error: {f}:{}: writes.max_age: 2h is out of range (1s to 1h)",
            line_of(&text, "max_age")
        ),
        format!(
            "error: {f}:{}: devices[0].write_functions[2]: function code 3 is not a write function; use 5 (one coil), 6 (one register), 15 (coils) or 16 (registers)",
            line_of(&text, "write_functions")
        ),
        format!(
            "error: {f}:{}: devices[0].tags[0].max: max 1e39 cannot be written to the register: an f32 holds",
            line_of(&text, "flow_setpoint")
        ),
        format!(
            "error: {f}:{}: devices[0].tags[2].writable: an input register is read-only: Modbus has no function that writes it; only coils and holding registers can be written",
            line_of(&text, "name = \"flow\"")
        ),
        format!(
            "error: {csv_file}:2: column allowed: (devices[1].tags[0]) allowed value \"0;1;2\" is a text, not a number: a u16 tag takes numbers (separate the values of a CSV cell with |, like 0|1|2)"
        ),
        format!(
            "error: {csv_file}:3: column writable: (devices[1].tags[1]) an input register is read-only"
        ),
        format!(
            "error: {csv_file}:4: column min: (devices[1].tags[2]) min has no effect: the tag is not writable; add writable = true"
        ),
    ];
    for want in &expected {
        assert!(stdout.contains(want.as_str()), "want {want}\n{stdout}");
    }
    assert!(
        stdout.contains(&format!(": {} errors, 0 warnings", expected.len())),
        "{stdout}"
    );

    // The f32 setpoint without FC16: no code for it.
    let text = WRITABLE.replace("write_functions = [5, 16]", "write_functions = [5, 6]");
    std::fs::write(dir.path().join("mixer.csv"), MIXER_CSV).unwrap();
    std::fs::write(&file, &text).unwrap();
    let (code, stdout) = check(&file);
    assert_eq!(code, Some(1), "{stdout}");
    let want = format!(
        "error: {f}:{}: devices[0].tags[0].writable: the tag cannot be written: an f32 (2 registers) needs function 16, and device \"dosing\" has write_functions = [5, 6]\n",
        line_of(&text, "flow_setpoint")
    );
    assert!(stdout.contains(&want), "want {want}\n{stdout}");
    assert!(stdout.contains(": 1 error, 0 warnings"), "{stdout}");
}
