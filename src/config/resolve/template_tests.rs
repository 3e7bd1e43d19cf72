//! Templates and device lists through the whole load: files in a
//! temporary folder, problems as `fieldgate check` prints them.

use crate::config::{Condition, Config, MeterKind, Problems, load_with_env};

const TAGS: &str = "name,address,type,scale,unit\n\
                    bearing_temp,30001,i16,0.1,degC\n\
                    flow,30002,u16,0.01,m3/h\n\
                    running,10001,bool,,\n";

const HEAD: &str = "[gateway]\nid = \"gw1\"\ndata_dir = \".\"\n\n";

const TEMPLATE: &str = r#"
[[templates]]
name = "pump"
tags = "pump.csv"
poll_interval = "2s"
asset = "P-{device}"

[[templates.rules]]
name = "bearing_hot"
tag = "bearing_temp"
condition = "above"
limit = 80
workorder.title = "{device} ({asset}): bearing hot at {value}"
workorder.snapshot = ["flow"]

[[templates.rules]]
name = "dry_run"
tag = "flow"
condition = "below"
limit = 1.5

[[templates.meters]]
name = "service"
tag = "running"
every = "2000h"
"#;

/// Loads `toml` with the files `extra` beside it.
fn load(toml: &str, extra: &[(&str, &str)]) -> Result<Config, Problems> {
    let dir = tempfile::tempdir().unwrap();
    load_in(dir.path(), toml, extra)
}

/// Loads `toml` written in `dir` with the files `extra` beside it.
fn load_in(dir: &std::path::Path, toml: &str, extra: &[(&str, &str)]) -> Result<Config, Problems> {
    std::fs::write(dir.join("pump.csv"), TAGS).unwrap();
    for (name, text) in extra {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("fieldgate.toml");
    std::fs::write(&path, toml).unwrap();
    load_with_env(&path, &[]).map(|l| l.config)
}

fn errors(toml: &str, extra: &[(&str, &str)]) -> Vec<String> {
    match load(toml, extra) {
        Ok(_) => panic!("loads:\n{toml}"),
        Err(p) => {
            p.0.iter()
                .filter(|p| p.is_error())
                .map(|p| {
                    // Without the temporary folder's path.
                    let text = p.to_string();
                    match text.find("fieldgate.toml") {
                        Some(at) => text[at..].to_string(),
                        None => text
                            .rsplit_once('/')
                            .map(|(_, t)| t.to_string())
                            .unwrap_or(text),
                    }
                })
                .collect()
        }
    }
}

#[test]
fn a_device_gets_the_templates_tags_rules_and_meters() {
    let toml = format!(
        "{HEAD}{TEMPLATE}\n[[devices]]\nname = \"pump7\"\ntemplate = \"pump\"\ntcp = \"10.0.0.7:502\"\n"
    );
    let config = load(&toml, &[]).unwrap();
    let device = config.device("pump7").unwrap();
    assert_eq!(device.template.as_deref(), Some("pump"));
    assert_eq!(device.poll_interval, std::time::Duration::from_secs(2));
    assert_eq!(device.asset.as_deref(), Some("P-pump7"));
    let names: Vec<&str> = device.tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["bearing_temp", "flow", "running"]);
    let rule = &config.rules[0];
    assert_eq!(rule.name, "pump7_bearing_hot");
    assert_eq!(
        rule.condition,
        Condition::Above {
            tag: "pump7.bearing_temp".into(),
            limit: 80.0
        }
    );
    assert_eq!(
        rule.workorder.title.as_deref(),
        Some("pump7 (P-pump7): bearing hot at {value}")
    );
    assert_eq!(rule.workorder.snapshot, ["pump7.flow"]);
    assert_eq!(config.rules[1].name, "pump7_dry_run");
    assert_eq!(config.meters[0].name, "pump7_service");
    assert_eq!(config.meters[0].tag, "pump7.running");
    assert!(matches!(config.meters[0].kind, MeterKind::Runtime { .. }));
}

#[test]
fn a_device_overrides_what_differs() {
    let toml = format!(
        "{HEAD}{TEMPLATE}\n[[devices]]\nname = \"pump1\"\ntemplate = \"pump\"\ntcp = \"10.0.0.1\"\n\n\
         [[devices]]\nname = \"pump2\"\ntemplate = \"pump\"\ntcp = \"10.0.0.2\"\nasset = \"P-002\"\n\
         poll_interval = \"500ms\"\nrules.bearing_hot.limit = 85\nrules.bearing_hot.workorder.procedure = \"SOP-9\"\n\
         rules.dry_run.enabled = false\nmeters.service.every = \"1500h\"\n\
         tags = [{{ name = \"seal_leak\", address = 10005 }}, {{ name = \"flow\", address = 30010, scale = 0.1 }}]\n"
    );
    let config = load(&toml, &[]).unwrap();
    let pump2 = config.device("pump2").unwrap();
    assert_eq!(pump2.asset.as_deref(), Some("P-002"));
    assert_eq!(pump2.poll_interval, std::time::Duration::from_millis(500));
    let flow = pump2.tag("flow").unwrap();
    assert_eq!(
        (flow.address, flow.scale),
        (9, 0.1),
        "the device's flow replaces the template's"
    );
    assert!(pump2.tag("seal_leak").is_some());
    assert_eq!(pump2.tags.len(), 4);
    let rules: Vec<(&str, Option<f64>)> = config
        .rules
        .iter()
        .map(|r| {
            let limit = match r.condition {
                Condition::Above { limit, .. } | Condition::Below { limit, .. } => Some(limit),
                _ => None,
            };
            (r.name.as_str(), limit)
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("pump1_bearing_hot", Some(80.0)),
            ("pump1_dry_run", Some(1.5)),
            ("pump2_bearing_hot", Some(85.0)),
        ]
    );
    let hot2 = &config.rules[2];
    assert_eq!(hot2.workorder.procedure.as_deref(), Some("SOP-9"));
    assert!(
        hot2.workorder
            .title
            .as_deref()
            .is_some_and(|t| t.contains("(P-002)"))
    );
    assert_eq!(
        config.meters[1].kind,
        MeterKind::Runtime {
            every: std::time::Duration::from_secs(1500 * 3600)
        }
    );
}

#[test]
fn a_problem_in_the_template_is_reported_once_naming_the_devices() {
    let mut toml = format!(
        "{HEAD}{}",
        TEMPLATE.replace("tag = \"flow\"", "tag = \"flw\"")
    );
    for i in 1..=5 {
        toml.push_str(&format!(
            "\n[[devices]]\nname = \"pump{i}\"\ntemplate = \"pump\"\ntcp = \"10.0.0.{i}\"\n"
        ));
    }
    let errors = errors(&toml, &[]);
    assert_eq!(
        errors,
        [
            "fieldgate.toml:22: templates[0].rules[1].tag: tag \"{device}.flw\": device \"{device}\" has no tag \"flw\" (in pump1, pump2, pump3 and 2 more)"
        ]
    );
}

#[test]
fn a_devices_own_mistake_is_reported_at_the_device() {
    let toml = format!(
        "{HEAD}{TEMPLATE}\n[[devices]]\nname = \"pump1\"\ntemplate = \"pump\"\ntcp = \"10.0.0.1\"\n\
         rules.bearing_hot.limit = \"hot\"\nrules.dry_rn.enabled = false\n\n\
         [[devices]]\nname = \"pump2\"\ntemplate = \"pmp\"\ntcp = \"10.0.0.2\"\n"
    );
    assert_eq!(
        errors(&toml, &[]),
        [
            "fieldgate.toml:35: devices[0].rules.bearing_hot.limit: wrong type: found string \"hot\", expected a number",
            "fieldgate.toml:36: devices[0].rules.dry_rn: template \"pump\" has no rule \"dry_rn\" (rules: bearing_hot, dry_run)",
            "fieldgate.toml:40: devices[1].template: template \"pmp\" is not defined; did you mean \"pump\"?",
        ]
    );
}

#[test]
fn names_must_tell_devices_and_rules_apart() {
    for (names, wanted) in [
        ("{device}", "must hold {name}"),
        ("x_{name}", "must hold {device}"),
        ("{device}_{rule}", "unknown placeholder {rule}"),
    ] {
        let toml = format!(
            "{HEAD}{}\n[[devices]]\nname = \"pump1\"\ntemplate = \"pump\"\ntcp = \"10.0.0.1\"\n",
            TEMPLATE.replace(
                "asset = \"P-{device}\"",
                &format!("asset = \"P-{{device}}\"\nnames = \"{names}\"")
            )
        );
        let errors = errors(&toml, &[]);
        assert!(
            errors.iter().any(|e| e.contains(wanted)),
            "{names}: {errors:?}"
        );
    }
}

#[test]
fn the_device_list_is_read_row_by_row() {
    let csv = "name,template,tcp,unit,asset,location,bearing_hot.limit,service.every\n\
               pump1,pump,10.0.0.1,1,P-101,Hall A,,\n\
               # spare, not installed\n\
               pump2,pump,10.0.0.2,2,P-102,Hall A,85,1500h\n";
    let toml = format!("devices = \"devices.csv\"\n{HEAD}{TEMPLATE}");
    let config = load(&toml, &[("devices.csv", csv)]).unwrap();
    assert_eq!(config.devices.len(), 2);
    let pump2 = config.device("pump2").unwrap();
    assert_eq!((pump2.unit, pump2.asset.as_deref()), (2, Some("P-102")));
    assert_eq!(pump2.location.as_deref(), Some("Hall A"));
    let hot2 = config
        .rules
        .iter()
        .find(|r| r.name == "pump2_bearing_hot")
        .unwrap();
    assert!(matches!(hot2.condition, Condition::Above { limit, .. } if limit == 85.0));
}

#[test]
fn a_device_lists_problems_have_their_row_and_column() {
    let csv = "name,template,tcp,unit,bearing_hot.limit,nope.limit\n\
               pump1,pump,10.0.0.1,x,,\n\
               pump2,pmp,10.0.0.2,1,,\n\
               pump3,pump,10.0.0.3,300,hot,\n\
               pump4,pump,,1,,\n\
               pump5,pump,10.0.0.5,1,,5\n";
    let toml = format!("devices = \"devices.csv\"\n{HEAD}{TEMPLATE}");
    assert_eq!(
        errors(&toml, &[("devices.csv", csv)]),
        [
            "devices.csv:2: column unit: (devices[0].unit) not a whole number",
            "devices.csv:3: column template: (devices[1].template) template \"pmp\" is not defined; did you mean \"pump\"?",
            "devices.csv:4: column bearing_hot.limit: (devices[2].rules.bearing_hot.limit) not a number",
            "devices.csv:4: column unit: (devices[2].unit) unit id 300 is out of range (0–255)",
            "devices.csv:5: (devices[3]) device \"pump4\" needs exactly one of `tcp = \"host:port\"`, `bus = \"name\"` (RTU) or `rtu_over_tcp = \"host:port\"`",
            "devices.csv:6: column nope.limit: (devices[4].nope.limit) template \"pump\" has no rule or meter \"nope\" (rules: bearing_hot, dry_run; meters: service)",
        ]
    );
}

#[test]
fn a_template_makes_what_the_same_config_written_by_hand_does() {
    let templated = format!(
        "{HEAD}{TEMPLATE}\n[[devices]]\nname = \"pump7\"\ntemplate = \"pump\"\ntcp = \"10.0.0.7:502\"\n\
         rules.bearing_hot.limit = 85\n"
    );
    let by_hand = format!(
        r#"{HEAD}[[devices]]
name = "pump7"
tcp = "10.0.0.7:502"
tags = "pump.csv"
poll_interval = "2s"
asset = "P-pump7"

[[rules]]
name = "pump7_bearing_hot"
tag = "pump7.bearing_temp"
condition = "above"
limit = 85
workorder.title = "pump7 (P-pump7): bearing hot at {{value}}"
workorder.snapshot = ["pump7.flow"]

[[rules]]
name = "pump7_dry_run"
tag = "pump7.flow"
condition = "below"
limit = 1.5

[[meters]]
name = "pump7_service"
tag = "pump7.running"
every = "2000h"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let mut a = load_in(dir.path(), &templated, &[]).unwrap();
    let b = load_in(dir.path(), &by_hand, &[]).unwrap();
    std::sync::Arc::make_mut(&mut a.devices[0]).template = None;
    assert_eq!(*a.devices[0], *b.devices[0]);
    assert_eq!(a.rules, b.rules);
    assert_eq!(a.meters, b.meters);
}

#[test]
fn a_template_written_wrong_is_reported_once_not_in_each_device() {
    let mut toml = format!(
        "{HEAD}{}",
        TEMPLATE.replace(
            "poll_interval = \"2s\"",
            "poll_interval = \"2 parsecs\"\ntcp = \"10.0.0.1\""
        )
    );
    for i in 1..=3 {
        toml.push_str(&format!(
            "\n[[devices]]\nname = \"pump{i}\"\ntemplate = \"pump\"\ntcp = \"10.0.0.{i}\"\n"
        ));
    }
    let errors = errors(&toml, &[]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("fieldgate.toml:9: templates[0].poll_interval:"),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        "fieldgate.toml:10: templates[0].tcp: `tcp` is each device's own: write it in [[devices]] (a template holds what its devices share)"
    );
}

#[test]
fn a_device_list_header_is_mended_once() {
    let toml = format!("devices = \"devices.csv\"\n{HEAD}{TEMPLATE}");
    let rows: String = (1..=5)
        .map(|i| format!("pump{i},pump,10.0.0.{i},85\n"))
        .collect();
    let misspelt = format!("name,template,tcp,bearing_hot.limt\n{rows}");
    let problems = match load(&toml, &[("devices.csv", &misspelt)]) {
        Ok(_) => panic!("loads"),
        Err(p) => p,
    };
    let found: Vec<String> = problems.0.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        found.len(),
        1,
        "no unused-template warning either: {found:?}"
    );
    assert!(
        found[0].ends_with(
            "devices.csv:1: column bearing_hot.limt: (devices) \"limt\" is not a key of a template's rule or meter; did you mean \"limit\"?"
        ),
        "{found:?}"
    );
    let cased = format!("name,template,tcp,Bearing_Hot.limit\n{rows}");
    assert_eq!(
        errors(&toml, &[("devices.csv", &cased)]),
        [
            "devices.csv:2: column Bearing_Hot.limit: (devices[0].Bearing_Hot.limit) template \"pump\" has no rule or meter \"Bearing_Hot\"; did you mean \"bearing_hot\"? (names match as written)"
        ]
    );
}

#[test]
fn a_device_list_below_a_section_is_explained() {
    let toml = format!("{HEAD}devices = \"devices.csv\"\n{TEMPLATE}");
    let errors = errors(&toml, &[("devices.csv", "name,template,tcp\n")]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("gateway.devices: unknown key `devices`: write a device list")),
        "{errors:?}"
    );
}

#[test]
fn the_override_keys_are_the_keys_of_rules_and_meters() {
    use crate::config::raw::{METER_KEYS, RULE_KEYS, RawMeter, RawRule};
    use figment::value::{Dict, Value};
    // Every listed key is one the structures take (an unknown one would
    // be refused); the structures' own lists would name any missing.
    for (keys, is_rule) in [(RULE_KEYS, true), (METER_KEYS, false)] {
        for key in keys {
            let mut d = Dict::new();
            let v = match *key {
                "workorder" => Value::from(Dict::new()),
                "limit" | "low" | "high" | "rate" | "deadband" => Value::from(1.0),
                _ => Value::from("1h"),
            };
            d.insert((*key).to_string(), v);
            let value = Value::from(d);
            let ok = if is_rule {
                value.deserialize::<RawRule>().is_ok()
            } else {
                value.deserialize::<RawMeter>().is_ok()
            };
            assert!(ok, "{key}");
        }
    }
}
