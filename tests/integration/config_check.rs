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

/// Every TOML file under `config/` (the example, the demo, simulator
/// scenarios excluded) and every ```toml block of `docs/` loads cleanly.
#[test]
fn every_example_config_passes() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            match config::load_with_env(&path, &[]) {
                Ok(loaded) => assert!(
                    loaded.warnings.is_empty(),
                    "{}: warnings:\n{:#?}",
                    path.display(),
                    loaded.warnings
                ),
                Err(p) => panic!("{} does not load:\n{p}", path.display()),
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "config/ should hold the example and the demo config"
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
            if let Err(p) = config::load_with_env(&file, &[]) {
                panic!("{} block {i} does not load:\n{p}\n{block}", doc.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "docs/ should hold at least one toml example");
}

fn toml_blocks(markdown: &str) -> Vec<String> {
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

fn copy_dir(from: &Path, to: &Path) {
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
