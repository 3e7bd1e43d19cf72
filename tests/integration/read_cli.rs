//! `fieldgate read` against the built-in simulator: the table shows each
//! value with its tag's precision (`decimals`, else from the scale; a
//! float with 4 significant digits), whatever float noise the scaling
//! left, and the raw registers beside it.

use std::process::Command;

use crate::common::sim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_shows_values_with_their_tags_precision() {
    let sim = sim::start(
        r#"
seed = 1
[[devices]]
name = "boiler"
unit = 1
listen = "127.0.0.1:0"
points = [
  { name = "temp", value = 21.4, area = "holding", address = 0, type = "u16", scale = 0.01 },
  { name = "flow", value = 12.3456, area = "holding", address = 1, type = "f32" },
  { name = "starts", value = 1485.0, area = "holding", address = 3, type = "u16" },
]
"#,
    )
    .await;
    let addr = sim.addr("boiler").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fieldgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[gateway]
id = "gw1"
site = "plant-a"
data_dir = "data"

[mqtt]
host = "127.0.0.1"

[[devices]]
name = "boiler"
tcp = "{addr}"
timeout = "2s"
tags = [
  # Hundredths in the register, shown in tenths.
  {{ name = "temp", area = "holding", address = 0, scale = 0.01, unit = "degC", decimals = 1 }},
  # The same register with the scale's own two decimals.
  {{ name = "temp_fine", area = "holding", address = 0, scale = 0.01, unit = "degC", alias = true }},
  {{ name = "flow", area = "holding", address = 1, type = "f32", unit = "m3/h" }},
  {{ name = "starts", area = "holding", address = 3 }},
]
"#
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fieldgate"))
            .arg("read")
            .arg("-c")
            .arg(&path)
            .arg("boiler")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // TAG VALUE UNIT QUALITY ADDRESS RAW
    let row = |tag: &str| -> Vec<String> {
        stdout
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|cols| cols.first().is_some_and(|c| c == tag))
            .unwrap_or_else(|| panic!("no row for {tag}:\n{stdout}"))
    };
    assert_eq!(row("temp")[1..3], ["21.4", "degC"], "{stdout}");
    assert_eq!(row("temp")[3], "good");
    // 2140 = 0x085C: the register as it is.
    assert_eq!(row("temp").last().map(String::as_str), Some("085C"));
    assert_eq!(row("temp_fine")[1], "21.40", "{stdout}");
    assert_eq!(row("flow")[1], "12.35", "{stdout}");
    assert_eq!(row("starts")[1], "1485", "{stdout}");
    sim.shutdown().await;
}
