//! What changed between two configurations: what a reload must restart,
//! and the one-line summary kept in the config log.

use super::Config;

/// The differences between a running configuration and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// Devices, by name.
    pub devices: NamedChanges,
    /// Serial buses, by name.
    pub buses: NamedChanges,
    /// Rules, by name.
    pub rules: NamedChanges,
    /// Meters, by name.
    pub meters: NamedChanges,
    /// CMMS connectors (`[[cmms]]`), by name.
    pub cmms: NamedChanges,
    /// Whole sections that differ: `gateway`, `mqtt`, `store`, `http`,
    /// `sparkplug` (added or removed included), `writes`, `alarms`,
    /// `workorders`.
    pub sections: Vec<&'static str>,
    /// What may now be written to the plant that could not before, and
    /// the reverse, item by item: `pump1.setpoint made writable`,
    /// `pump1.setpoint no longer writable`, `pump1.setpoint min, max`
    /// (the keys that changed), `pump1 write_functions`. Who may change
    /// what in the plant deserves its own words in the config log; the
    /// devices concerned are also in `devices`.
    pub writes: Vec<String>,
}

/// Added, removed and changed items of one list, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedChanges {
    /// In the new config only.
    pub added: Vec<String>,
    /// In the old config only.
    pub removed: Vec<String>,
    /// In both, with different settings.
    pub changed: Vec<String>,
}

impl NamedChanges {
    fn between<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> &str) -> NamedChanges {
        let mut out = NamedChanges::default();
        for n in new {
            match old.iter().find(|o| name(o) == name(n)) {
                None => out.added.push(name(n).to_owned()),
                Some(o) if o != n => out.changed.push(name(n).to_owned()),
                Some(_) => {}
            }
        }
        for o in old {
            if !new.iter().any(|n| name(n) == name(o)) {
                out.removed.push(name(o).to_owned());
            }
        }
        out
    }

    /// Nothing added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl ConfigChanges {
    /// Compares `old` (running) with `new`.
    pub fn between(old: &Config, new: &Config) -> ConfigChanges {
        let mut sections = Vec::new();
        let mut differs = |name: &'static str, same: bool| {
            if !same {
                sections.push(name);
            }
        };
        differs("gateway", old.gateway == new.gateway);
        differs("mqtt", old.mqtt == new.mqtt);
        differs("store", old.store == new.store);
        differs("http", old.http == new.http);
        differs("sparkplug", old.sparkplug == new.sparkplug);
        differs("writes", old.writes == new.writes);
        differs("alarms", old.alarms == new.alarms);
        differs("workorders", old.workorders == new.workorders);
        ConfigChanges {
            devices: NamedChanges::between(&old.devices, &new.devices, |d| &d.name),
            buses: NamedChanges::between(&old.buses, &new.buses, |b| &b.name),
            rules: NamedChanges::between(&old.rules, &new.rules, |r| &r.name),
            meters: NamedChanges::between(&old.meters, &new.meters, |m| &m.name),
            cmms: NamedChanges::between(&old.cmms, &new.cmms, |c| &c.name),
            sections,
            writes: write_changes(old, new),
        }
    }

    /// No difference at all (a tag map edited back and forth, a comment).
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.buses.is_empty()
            && self.rules.is_empty()
            && self.meters.is_empty()
            && self.cmms.is_empty()
            && self.sections.is_empty()
            && self.writes.is_empty()
    }

    /// Whether `[section]` differs.
    pub fn section(&self, name: &str) -> bool {
        self.sections.contains(&name)
    }

    /// The MQTT connections must be made again: another broker, client or
    /// topic tree, or another Sparkplug edge node (turned on or off, or
    /// with other ids, client or readings: its births and its Last Will,
    /// the NDEATH, are given when it connects). (A new gateway location
    /// only changes work orders.)
    pub fn reconnects_mqtt(old: &Config, new: &Config) -> bool {
        old.mqtt != new.mqtt
            || old.sparkplug != new.sparkplug
            || old.gateway.site != new.gateway.site
            || old.gateway.id != new.gateway.id
    }

    /// One line for the log and the config log, e.g. `devices added:
    /// pump3; rules changed: hot; cmms changed: maximo; [mqtt] changed`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, c) in [
            ("devices", &self.devices),
            ("buses", &self.buses),
            ("rules", &self.rules),
            ("meters", &self.meters),
            ("cmms", &self.cmms),
        ] {
            for (how, names) in [
                ("added", &c.added),
                ("removed", &c.removed),
                ("changed", &c.changed),
            ] {
                if !names.is_empty() {
                    parts.push(format!("{what} {how}: {}", name_list(names)));
                }
            }
        }
        if !self.writes.is_empty() {
            parts.push(format!("writes: {}", self.writes.join(", ")));
        }
        for s in &self.sections {
            parts.push(format!("[{s}] changed"));
        }
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// How many names of one list the summary shows before "and N more".
const NAMES_SHOWN: usize = 10;

/// `a, b, c`, or the first [`NAMES_SHOWN`] and how many more: a template's
/// limit changed for 200 pumps is one change, not a line of 200 names.
fn name_list(names: &[String]) -> String {
    if names.len() <= NAMES_SHOWN + 1 {
        names.join(", ")
    } else {
        format!(
            "{} and {} more",
            names[..NAMES_SHOWN].join(", "),
            names.len() - NAMES_SHOWN
        )
    }
}

/// The write-back changes between `old` and `new` (see
/// [`ConfigChanges::writes`]): devices in file order, each device's own
/// settings before its tags.
fn write_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for device in &new.devices {
        let before = old.device(&device.name);
        if let Some(before) = before {
            let mut keys = Vec::new();
            if before.write_functions != device.write_functions {
                keys.push("write_functions");
            }
            if before.write_during_poll != device.write_during_poll {
                keys.push("write_during_poll");
            }
            if !keys.is_empty() {
                out.push(format!("{} {}", device.name, keys.join(", ")));
            }
        }
        for tag in &device.tags {
            let full = format!("{}.{}", device.name, tag.name);
            let was = before
                .and_then(|d| d.tag(&tag.name))
                .and_then(|t| t.write.as_ref());
            match (was, &tag.write) {
                (None, Some(_)) => out.push(format!("{full} made writable")),
                (Some(_), None) => out.push(format!("{full} no longer writable")),
                (Some(a), Some(b)) if a != b => {
                    let keys: Vec<&str> = [
                        ("min", a.min != b.min),
                        ("max", a.max != b.max),
                        ("allowed", a.allowed != b.allowed),
                        ("max_rate", a.max_rate != b.max_rate),
                        ("confirm", a.confirm != b.confirm),
                    ]
                    .into_iter()
                    .filter(|(_, differs)| *differs)
                    .map(|(key, _)| key)
                    .collect();
                    out.push(format!("{full} {}", keys.join(", ")));
                }
                _ => {}
            }
        }
    }
    // Writable tags whose device or tag is gone.
    for device in &old.devices {
        for tag in device.tags.iter().filter(|t| t.write.is_some()) {
            if new
                .device(&device.name)
                .and_then(|d| d.tag(&tag.name))
                .is_none()
            {
                out.push(format!("{}.{} no longer writable", device.name, tag.name));
            }
        }
    }
    out
}

/// The summary of a configuration at start, for the config log.
pub fn started_summary(config: &Config) -> String {
    let mut out = format!(
        "started: {} devices, {} buses, {} rules, {} meters",
        config.devices.len(),
        config.buses.len(),
        config.rules.len(),
        config.meters.len()
    );
    // Only when there are some, so the line of a gateway without
    // connectors reads as it always has.
    if !config.cmms.is_empty() {
        out.push_str(&format!(", {} cmms", config.cmms.len()));
    }
    let (writable, _) = config.writable();
    if writable > 0 {
        out.push_str(&format!(", {writable} writable tags"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).unwrap();
        crate::config::load_with_env(&path, &[]).unwrap().config
    }

    const BASE: &str = r#"
[gateway]
id = "gw"
site = "s"
[http]
listen = ""
[[devices]]
name = "pump1"
tcp = "127.0.0.1:5020"
tags = [{ name = "temp", area = "input", address = 0, type = "f32" }]
[[rules]]
name = "hot"
tag = "pump1.temp"
condition = "above"
limit = 80.0
"#;

    #[test]
    fn the_same_text_is_no_change() {
        let c = ConfigChanges::between(&load(BASE), &load(BASE));
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(c.summary(), "no change");
    }

    #[test]
    fn devices_rules_and_sections_are_named() {
        let new = BASE.replace("limit = 80.0", "limit = 85.0").replace(
            "[[rules]]",
            r#"[[devices]]
name = "pump2"
tcp = "127.0.0.1:5021"
tags = [{ name = "temp", area = "input", address = 0, type = "f32" }]
[mqtt]
port = 1884
[[rules]]"#,
        );
        let (old, new) = (load(BASE), load(&new));
        let c = ConfigChanges::between(&old, &new);
        assert_eq!(c.devices.added, ["pump2"]);
        assert_eq!(c.rules.changed, ["hot"]);
        assert!(c.section("mqtt"));
        assert!(ConfigChanges::reconnects_mqtt(&old, &new));
        assert_eq!(
            c.summary(),
            "devices added: pump2; rules changed: hot; [mqtt] changed"
        );
        let back = ConfigChanges::between(&new, &old);
        assert_eq!(back.devices.removed, ["pump2"]);
    }

    #[test]
    fn a_long_list_of_names_is_cut_short() {
        let names: Vec<String> = (1..=200).map(|i| format!("pump{i}_hot")).collect();
        let c = ConfigChanges {
            rules: NamedChanges {
                changed: names,
                ..NamedChanges::default()
            },
            ..ConfigChanges::default()
        };
        assert_eq!(
            c.summary(),
            "rules changed: pump1_hot, pump2_hot, pump3_hot, pump4_hot, pump5_hot, \
             pump6_hot, pump7_hot, pump8_hot, pump9_hot, pump10_hot and 190 more"
        );
    }

    #[test]
    fn a_sparkplug_change_reconnects_like_an_mqtt_change() {
        let with = |section: &str| format!("{BASE}{section}");
        let off = load(BASE);
        let on = load(&with("[sparkplug]\ngroup_id = \"plant-a\"\n"));
        for (old, new) in [(&off, &on), (&on, &off)] {
            let c = ConfigChanges::between(old, new);
            assert_eq!(c.sections, ["sparkplug"]);
            assert_eq!(c.summary(), "[sparkplug] changed");
            assert!(ConfigChanges::reconnects_mqtt(old, new));
        }
        for other in [
            "[sparkplug]\ngroup_id = \"plant-b\"\n",
            "[sparkplug]\ngroup_id = \"plant-a\"\nprimary_host_id = \"scada\"\n",
            "[sparkplug]\ngroup_id = \"plant-a\"\njson_readings = false\n",
            "[sparkplug]\ngroup_id = \"plant-a\"\nclient_id = \"spb\"\n",
        ] {
            let new = load(&with(other));
            let c = ConfigChanges::between(&on, &new);
            assert_eq!(c.sections, ["sparkplug"], "{other}");
            assert!(ConfigChanges::reconnects_mqtt(&on, &new), "{other}");
        }
        let same = load(&with("[sparkplug]\ngroup_id = \"plant-a\"\n# a comment\n"));
        assert!(ConfigChanges::between(&on, &same).is_empty());
        assert!(!ConfigChanges::reconnects_mqtt(&on, &same));
        // The defaults follow `[gateway] id` and `[mqtt] client_id`: the
        // edge node changes with them.
        let renamed = load(
            &with("[sparkplug]\ngroup_id = \"plant-a\"\n").replace("id = \"gw\"", "id = \"gw2\""),
        );
        let c = ConfigChanges::between(&on, &renamed);
        assert!(c.section("sparkplug") && c.section("gateway"), "{c:?}");
    }

    #[test]
    fn write_changes_are_named_tag_by_tag() {
        let with = |device: &str, tags: &str, writes: &str| {
            format!(
                "[gateway]\nid = \"gw\"\n[http]\nlisten = \"\"\n{writes}\
                 [[devices]]\nname = \"plc\"\ntcp = \"127.0.0.1:5020\"\n{device}tags = [\n{tags}]\n"
            )
        };
        let tags = "{ name = \"sp\", address = 40001, writable = true, min = 0, max = 100 },\n\
                    { name = \"pv\", address = 30001 },\n";
        let base = load(&with("", tags, ""));
        assert!(ConfigChanges::between(&base, &base).is_empty());
        assert_eq!(
            started_summary(&base),
            "started: 1 devices, 0 buses, 0 rules, 0 meters, 1 writable tags"
        );

        let bounds = load(&with(
            "",
            &tags.replace("max = 100", "max = 90, max_rate = 2"),
            "",
        ));
        let c = ConfigChanges::between(&base, &bounds);
        assert_eq!(c.writes, ["plc.sp max, max_rate"]);
        assert_eq!(
            c.summary(),
            "devices changed: plc; writes: plc.sp max, max_rate"
        );

        let more = tags.replace(
            "{ name = \"pv\", address = 30001 }",
            "{ name = \"mode\", address = 40002, writable = true, allowed = [1, 2] }",
        );
        let c = ConfigChanges::between(&base, &load(&with("", &more, "")));
        assert_eq!(c.writes, ["plc.mode made writable"]);
        let c = ConfigChanges::between(&load(&with("", &more, "")), &base);
        assert_eq!(c.writes, ["plc.mode no longer writable"]);

        let off = tags.replace(", writable = true, min = 0, max = 100", "");
        let c = ConfigChanges::between(&base, &load(&with("", &off, "")));
        assert_eq!(c.writes, ["plc.sp no longer writable"]);

        let device = load(&with(
            "write_functions = [16]\nwrite_during_poll = true\n",
            tags,
            "",
        ));
        let c = ConfigChanges::between(&base, &device);
        assert_eq!(c.writes, ["plc write_functions, write_during_poll"]);
        assert_eq!(c.devices.changed, ["plc"]);

        let age = load(&with("", tags, "[writes]\nmax_age = \"30s\"\n"));
        let c = ConfigChanges::between(&base, &age);
        assert!(c.writes.is_empty() && c.devices.is_empty(), "{c:?}");
        assert_eq!(c.summary(), "[writes] changed");

        // A device gone takes its writable tags with it.
        let c = ConfigChanges::between(&base, &load(BASE));
        assert!(
            c.writes.contains(&"plc.sp no longer writable".to_owned()),
            "{c:?}"
        );
    }

    #[test]
    fn connectors_are_named() {
        let with = |url: &str| {
            format!("{BASE}[[cmms]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n")
        };
        let (none, one) = (load(BASE), load(&with("https://a.example/hook")));
        let c = ConfigChanges::between(&none, &one);
        assert_eq!(c.cmms.added, ["hook"]);
        assert_eq!(c.summary(), "cmms added: hook");
        assert_eq!(
            started_summary(&one),
            "started: 1 devices, 0 buses, 1 rules, 0 meters, 1 cmms"
        );
        let moved = load(&with("https://b.example/hook"));
        let c = ConfigChanges::between(&one, &moved);
        assert!(!c.is_empty());
        assert_eq!(c.summary(), "cmms changed: hook");
        assert_eq!(ConfigChanges::between(&one, &none).cmms.removed, ["hook"]);
    }
}
