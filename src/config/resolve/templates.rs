//! `[[templates]]`: what identical devices share, and the devices made
//! from one.
//!
//! A template is read once: its device defaults, its tags (inline or a
//! CSV tag map, read once however many devices use it), and its rules and
//! meters, whose tags are written relative to the device. Each device that
//! names it is then made by plain substitution before it is resolved like
//! a hand-written one: the template's defaults under the device's own
//! keys, the template's tags beside the device's extra tags, and one rule
//! and meter per template rule and meter, named from the device
//! (`pump7_bearing_hot`) and overridden by the device's `rules.NAME` and
//! `meters.NAME` tables. The result is ordinary devices, rules and meters:
//! nothing after loading knows a template was there.
//!
//! Every element made so is resolved at a field path of its own
//! (`devices[3]`, `devices[3].rules.bearing_hot`) registered as a
//! [`Scope`], so that a problem in what the device wrote is reported where
//! it wrote it, and a problem in what the template gave is reported at the
//! template, naming the devices it shows up in.

use std::collections::HashSet;
use std::path::PathBuf;

use figment::value::{Dict, Tag as ValueTag, Value};
use sha2::Sha256;

use super::devices;
use super::fields::check_name;
use crate::config::raw::{RawMeter, RawRule, RawTag, RawTemplate, TEMPLATE_DEVICE_KEYS};
use crate::config::report::{Ctx, OwnSite, Scope, TagSite, edit_distance};

/// How the rules and meters of a device made from a template are named
/// when the template does not say (`names`).
pub(crate) const DEFAULT_NAMES: &str = "{device}_{name}";

/// Device keys a template may not hold: how each device is reached, and
/// which template it is.
const OWN_KEYS: &[&str] = &["tcp", "bus", "rtu_over_tcp", "template"];

/// The placeholders a template's `names` may use.
const NAME_PLACEHOLDERS: &[&str] = &["device", "asset", "location", "name"];

/// A template as read.
#[derive(Debug)]
pub(super) struct Template {
    /// Its field path (`templates[0]`).
    pub field: String,
    /// Its name, as devices name it.
    pub name: String,
    /// How its rules and meters are named in each device.
    pub names: String,
    /// The device keys it sets, as written.
    pub defaults: Dict,
    /// Its tags, read once.
    pub tags: Vec<(TagSite, RawTag)>,
    /// The CSV tag map they came from, if any.
    pub tags_file: Option<PathBuf>,
    /// Its rules.
    pub rules: Vec<Part>,
    /// Its meters.
    pub meters: Vec<Part>,
    /// True when it could not be read (reported): the devices that name
    /// it are not made.
    pub broken: bool,
}

/// A rule or meter of a template.
#[derive(Debug, Clone)]
pub(super) struct Part {
    /// Its name in the template (`bearing_hot`), which a device's
    /// overrides use.
    pub name: String,
    /// Its field path (`templates[0].rules[2]`).
    pub field: String,
    /// Its keys as written, `enabled` left out.
    pub value: Dict,
    /// `enabled` (default true): a device may turn it on or off.
    pub enabled: bool,
    /// False when it is written wrong (reported once, at the template):
    /// devices do not get it, and may still name it in overrides.
    pub readable: bool,
}

/// Rules or meters: the two lists a template and a device's overrides have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartKind {
    /// `rules`.
    Rule,
    /// `meters`.
    Meter,
}

impl PartKind {
    /// The key of the list (`rules`, `meters`).
    pub(crate) fn key(self) -> &'static str {
        match self {
            PartKind::Rule => "rules",
            PartKind::Meter => "meters",
        }
    }

    fn what(self) -> &'static str {
        match self {
            PartKind::Rule => "rule",
            PartKind::Meter => "meter",
        }
    }
}

impl Template {
    /// A template at `field` that could not be read.
    fn broken(field: &str, name: &str) -> Template {
        Template {
            field: field.to_string(),
            name: name.to_string(),
            names: DEFAULT_NAMES.to_string(),
            defaults: Dict::new(),
            tags: Vec::new(),
            tags_file: None,
            rules: Vec::new(),
            meters: Vec::new(),
            broken: true,
        }
    }

    /// Its rules or meters.
    pub(super) fn parts(&self, kind: PartKind) -> &[Part] {
        match kind {
            PartKind::Rule => &self.rules,
            PartKind::Meter => &self.meters,
        }
    }
}

/// Reads every `[[templates]]` element of `root`; the CSV tag maps they
/// name go into `hasher`.
pub(super) fn read(
    ctx: &mut Ctx,
    elements: Vec<(usize, Value)>,
    hasher: &mut Sha256,
) -> Vec<Template> {
    let mut out: Vec<Template> = Vec::new();
    for (i, mut value) in elements {
        let field = format!("templates[{i}]");
        // What is each device's own gets its own words, and the rest of
        // the template is still read.
        if let Value::Dict(_, dict) = &mut value {
            for key in OWN_KEYS {
                if dict.remove(*key).is_some() {
                    ctx.error(
                        &format!("{field}.{key}"),
                        format!(
                            "`{key}` is each device's own: write it in [[devices]] (a template holds what its devices share)"
                        ),
                    );
                }
            }
        }
        let Some(raw) = ctx.read::<RawTemplate>(&field, Some(&value)) else {
            // Reported; the devices that name it are left out without a
            // second word, rather than told it does not exist.
            if let Some(name) = value.find_ref("name").and_then(Value::as_str) {
                out.push(Template::broken(&field, name));
            }
            continue;
        };
        let Some(name) = raw.name.clone() else {
            ctx.error(&format!("{field}.name"), "missing template name");
            continue;
        };
        if !check_name(ctx, &format!("{field}.name"), "template", &name) {
            continue;
        }
        if out.iter().any(|t| t.name == name) {
            ctx.error(
                &format!("{field}.name"),
                format!("duplicate template name \"{name}\""),
            );
            continue;
        }
        let names = raw.names.clone().unwrap_or_else(|| DEFAULT_NAMES.into());
        check_names(ctx, &format!("{field}.names"), &names);
        let defaults: Dict = value
            .as_dict()
            .map(|d| {
                d.iter()
                    .filter(|(k, _)| TEMPLATE_DEVICE_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let (tags, tags_file) = match raw.tags {
            None => (Vec::new(), None),
            Some(v) => devices::tag_sites(ctx, &format!("{field}.tags"), v, hasher),
        };
        let rules = parts(ctx, &field, PartKind::Rule, raw.rules.unwrap_or_default());
        let meters = parts(ctx, &field, PartKind::Meter, raw.meters.unwrap_or_default());
        if tags.is_empty() && tags_file.is_none() && rules.is_empty() && meters.is_empty() {
            ctx.warn(
                &field,
                format!("template \"{name}\" has no tags, rules or meters"),
            );
        }
        out.push(Template {
            field,
            name,
            names,
            defaults,
            tags,
            tags_file,
            rules,
            meters,
            broken: false,
        });
    }
    out
}

/// `names`: known placeholders, `{name}` (else a template's rules would
/// share one name) and `{device}` or `{asset}` (else every device's rule
/// would have the same name).
fn check_names(ctx: &mut Ctx, field: &str, names: &str) {
    let used = match placeholders(names) {
        Ok(used) => used,
        Err(e) => {
            ctx.error(field, e);
            return;
        }
    };
    if let Some(bad) = used
        .iter()
        .find(|p| !NAME_PLACEHOLDERS.contains(&p.as_str()))
    {
        ctx.error(
            field,
            format!(
                "unknown placeholder {{{bad}}}; names may use {}",
                NAME_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    } else if !used.iter().any(|p| p == "name") {
        ctx.error(
            field,
            "names must hold {name} (the rule's or meter's name in the template), or all of them would have one name",
        );
    } else if !used.iter().any(|p| p == "device" || p == "asset") {
        ctx.error(
            field,
            "names must hold {device} (or {asset}), or every device would give its rules the same names",
        );
    }
}

/// The `{placeholders}` of `text`, in order; `Err` when a `{` is not closed.
fn placeholders(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err("a `{` is never closed".into());
        };
        out.push(rest[open + 1..open + close].to_string());
        rest = &rest[open + close + 1..];
    }
    Ok(out)
}

/// The rules or meters of the template at `field`, each read once to
/// report a mistake in how it is written once, not once per device.
fn parts(ctx: &mut Ctx, field: &str, kind: PartKind, values: Vec<Value>) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::new();
    for (k, value) in values.into_iter().enumerate() {
        let at = format!("{field}.{}[{k}]", kind.key());
        let Some(mut dict) = value.into_dict() else {
            ctx.error(&at, format!("a template's {} is a table", kind.what()));
            continue;
        };
        let enabled = match dict.remove("enabled") {
            None => true,
            Some(Value::Bool(_, b)) => b,
            Some(_) => {
                ctx.error(&format!("{at}.enabled"), "enabled is true or false");
                continue;
            }
        };
        let readable = match kind {
            PartKind::Rule => ctx
                .read::<RawRule>(&at, Some(&Value::Dict(ValueTag::Default, dict.clone())))
                .is_some(),
            PartKind::Meter => ctx
                .read::<RawMeter>(&at, Some(&Value::Dict(ValueTag::Default, dict.clone())))
                .is_some(),
        };
        let Some(name) = dict.get("name").and_then(Value::as_str).map(str::to_string) else {
            ctx.error(
                &format!("{at}.name"),
                format!("missing {} name", kind.what()),
            );
            continue;
        };
        if !check_name(ctx, &format!("{at}.name"), kind.what(), &name) {
            continue;
        }
        if out.iter().any(|p| p.name == name) {
            ctx.error(
                &format!("{at}.name"),
                format!("duplicate {} name \"{name}\" in this template", kind.what()),
            );
            continue;
        }
        out.push(Part {
            name,
            field: at,
            value: dict,
            enabled,
            readable,
        });
    }
    out
}

/// The template `name` among `templates`, or an error at `field` with the
/// closest name.
pub(super) fn find<'a>(
    ctx: &mut Ctx,
    field: &str,
    name: &str,
    templates: &'a [Template],
) -> Option<&'a Template> {
    if let Some(t) = templates.iter().find(|t| t.name == name) {
        return Some(t);
    }
    let hint = templates
        .iter()
        .map(|t| t.name.as_str())
        .min_by_key(|t| edit_distance(name, t))
        .filter(|t| edit_distance(name, t) <= 3)
        .map(|t| format!("; did you mean \"{t}\"?"))
        .unwrap_or_else(|| {
            if templates.is_empty() {
                "; there is no [[templates]] section".into()
            } else {
                format!(
                    " (templates: {})",
                    templates
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        });
    ctx.error(field, format!("template \"{name}\" is not defined{hint}"));
    None
}

/// A device made from a template, ready to be resolved like any other.
#[derive(Debug)]
pub(super) struct Instance {
    /// The device's keys: the template's defaults under its own.
    pub device: Value,
    /// The template's tags, with the device's to come beside them.
    pub tags: Vec<(TagSite, RawTag)>,
    /// The template's CSV tag map, if any.
    pub tags_file: Option<PathBuf>,
    /// Its rules: the field path each is resolved at, and its keys.
    pub rules: Vec<(String, Value)>,
    /// Its meters, likewise.
    pub meters: Vec<(String, Value)>,
}

/// The device at `field`, written as `device` at `own`, made from
/// `template`; registers the scopes of the device and of its rules and
/// meters. `None` when the device has no usable name (reported when it is
/// resolved).
pub(super) fn instantiate(
    ctx: &mut Ctx,
    field: &str,
    own: &OwnSite,
    device: &Dict,
    template: &Template,
) -> Option<Instance> {
    let name = device.get("name").and_then(Value::as_str)?.to_string();
    ctx.scopes.insert(
        field.to_string(),
        Scope {
            own: own.clone(),
            template: Some(template.field.clone()),
            instance: name.clone(),
        },
    );

    // The device's own keys win; the template's asset and location may
    // name the device.
    let mut merged = Dict::new();
    for (key, value) in &template.defaults {
        let value = match value {
            Value::String(tag, text) => {
                Value::String(*tag, fill(text, &[("device", Some(name.as_str()))]))
            }
            other => other.clone(),
        };
        merged.insert(key.clone(), value);
    }
    for (key, value) in device {
        if key != "rules" && key != "meters" {
            merged.insert(key.clone(), value.clone());
        }
    }
    let text_of = |key: &str| merged.get(key).and_then(Value::as_str).map(str::to_string);
    let asset = text_of("asset");
    let location = text_of("location");
    let vars = Vars {
        device: &name,
        asset: asset.as_deref(),
        location: location.as_deref(),
    };

    let mut made = [Vec::new(), Vec::new()];
    for (slot, kind) in [PartKind::Rule, PartKind::Meter].into_iter().enumerate() {
        let overrides = overrides(ctx, field, kind, device, template);
        for part in template.parts(kind) {
            let over = overrides
                .iter()
                .find(|(n, _)| *n == part.name)
                .map(|(_, d)| d.clone());
            let at = format!("{field}.{}.{}", kind.key(), part.name);
            let mut over = over.unwrap_or_default();
            let enabled = match over.remove("enabled") {
                None => part.enabled,
                Some(Value::Bool(_, b)) => b,
                Some(_) => {
                    ctx.error(&format!("{at}.enabled"), "enabled is true or false");
                    part.enabled
                }
            };
            if !enabled || !part.readable {
                continue;
            }
            if over.contains_key("name") {
                ctx.error(
                    &format!("{at}.name"),
                    format!(
                        "the {} is named by the template's `names` ({}); a device cannot rename it",
                        kind.what(),
                        template.names
                    ),
                );
                over.remove("name");
            }
            let own_site = match own {
                OwnSite::Toml => OwnSite::Toml,
                OwnSite::Csv {
                    file,
                    line,
                    columns,
                } => OwnSite::Csv {
                    file: file.clone(),
                    line: *line,
                    columns: columns
                        .iter()
                        .filter_map(|(key, header)| {
                            let rest =
                                key.strip_prefix(&format!("{}.{}.", kind.key(), part.name))?;
                            Some((rest.split('.').next()?.to_string(), header.clone()))
                        })
                        .collect(),
                },
            };
            ctx.scopes.insert(
                at.clone(),
                Scope {
                    own: own_site,
                    template: Some(part.field.clone()),
                    instance: name.clone(),
                },
            );
            let mut value = part.value.clone();
            merge(&mut value, over);
            let Some(full) = part_name(ctx, &template.names, &part.name, &vars, &at) else {
                continue;
            };
            value.insert("name".into(), Value::from(full));
            relative(&mut value, &vars);
            made[slot].push((at, Value::Dict(ValueTag::Default, value)));
        }
    }
    let [rules, meters] = made;
    Some(Instance {
        device: Value::Dict(ValueTag::Default, merged),
        tags: template.tags.clone(),
        tags_file: template.tags_file.clone(),
        rules,
        meters,
    })
}

/// The device's `rules` or `meters` overrides, by the template's names;
/// a name the template does not have is reported.
fn overrides(
    ctx: &mut Ctx,
    field: &str,
    kind: PartKind,
    device: &Dict,
    template: &Template,
) -> Vec<(String, Dict)> {
    let Some(value) = device.get(kind.key()) else {
        return Vec::new();
    };
    let at = format!("{field}.{}", kind.key());
    let Some(dict) = value.as_dict() else {
        ctx.error(
            &at,
            format!(
                "`{}` overrides the template's {}s by name: {}.NAME.KEY = value",
                kind.key(),
                kind.what(),
                kind.key()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, over) in dict {
        let Some(part) = template.parts(kind).iter().find(|p| p.name == *name) else {
            let known: Vec<&str> = template
                .parts(kind)
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            ctx.error(
                &format!("{at}.{name}"),
                if known.is_empty() {
                    format!(
                        "template \"{}\" has no {}s to override",
                        template.name,
                        kind.what()
                    )
                } else {
                    format!(
                        "template \"{}\" has no {} \"{name}\" ({}s: {})",
                        template.name,
                        kind.what(),
                        kind.what(),
                        known.join(", ")
                    )
                },
            );
            continue;
        };
        match over.as_dict() {
            Some(d) => out.push((part.name.clone(), d.clone())),
            None => ctx.error(
                &format!("{at}.{name}"),
                format!(
                    "an override is a table of the {}'s keys: {}.{name}.limit = 85",
                    kind.what(),
                    kind.key()
                ),
            ),
        }
    }
    out
}

/// `over` merged into `base`: tables key by key (a device overrides one
/// key of a rule's `workorder`), anything else replaced.
fn merge(base: &mut Dict, over: Dict) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Dict(_, inner)), Value::Dict(_, over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// What a device gives its template's placeholders.
struct Vars<'a> {
    device: &'a str,
    asset: Option<&'a str>,
    location: Option<&'a str>,
}

impl Vars<'_> {
    fn pairs(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("device", Some(self.device)),
            ("asset", self.asset),
            ("location", self.location),
        ]
    }
}

/// `text` with each `{key}` of `vars` that has a value replaced; any other
/// placeholder is left as written (a work order's `{value}` is filled
/// when it is raised).
fn fill(text: &str, vars: &[(&str, Option<&str>)]) -> String {
    let mut out = text.to_string();
    for (key, value) in vars {
        if let Some(value) = value {
            out = out.replace(&format!("{{{key}}}"), value);
        }
    }
    out
}

/// The name of a template's rule or meter in one device, from `names`;
/// `None` when a placeholder it needs has no value (reported).
fn part_name(ctx: &mut Ctx, names: &str, name: &str, vars: &Vars, at: &str) -> Option<String> {
    for (key, value) in vars.pairs() {
        if value.is_none() && names.contains(&format!("{{{key}}}")) {
            ctx.error(
                &format!("{at}.name"),
                format!(
                    "names \"{names}\" uses {{{key}}}, and device \"{}\" has no {key}",
                    vars.device
                ),
            );
            return None;
        }
    }
    let mut pairs = vars.pairs().to_vec();
    pairs.push(("name", Some(name)));
    Some(fill(names, &pairs))
}

/// A template rule's or meter's keys made the device's: its tags written
/// relative to the device (`bearing_temp` → `pump7.bearing_temp`), and the
/// placeholders of its texts filled.
fn relative(value: &mut Dict, vars: &Vars) {
    let pairs = vars.pairs();
    let tag = |t: &str| {
        let t = fill(t, &pairs);
        if t.contains('.') {
            t
        } else {
            format!("{}.{t}", vars.device)
        }
    };
    if let Some(Value::String(_, t)) = value.get_mut("tag") {
        *t = tag(t);
    }
    if let Some(Value::String(_, t)) = value.get_mut("expr") {
        *t = fill(t, &pairs);
    }
    // An asset or location that names what the device does not have is
    // left out: the rule then takes the device's, as a hand-written one.
    for key in ["asset", "location"] {
        if let Some(Value::String(_, t)) = value.get_mut(key) {
            *t = fill(t, &pairs);
            if t.contains("{asset}") || t.contains("{location}") {
                value.remove(key);
            }
        }
    }
    if let Some(Value::Dict(_, wo)) = value.get_mut("workorder") {
        for key in ["title", "description", "problem_code", "procedure"] {
            if let Some(Value::String(_, t)) = wo.get_mut(key) {
                *t = fill(t, &pairs);
            }
        }
        if let Some(Value::Array(_, tags)) = wo.get_mut("snapshot") {
            for v in tags.iter_mut() {
                if let Value::String(_, t) = v {
                    *t = tag(t);
                }
            }
        }
    }
}

/// Warns of every template no device uses: its rules and tags are only
/// checked through the devices made from it.
pub(super) fn unused(ctx: &mut Ctx, templates: &[Template], used: &HashSet<String>) {
    for t in templates {
        if !used.contains(&t.name) {
            ctx.warn(
                &format!("{}.name", t.field),
                format!(
                    "template \"{}\" is used by no device; its tags and rules are checked only in the devices made from it",
                    t.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_when_known() {
        let vars = [("device", Some("pump7")), ("asset", None)];
        assert_eq!(
            fill("{device} at {asset}: {value}", &vars),
            "pump7 at {asset}: {value}"
        );
        assert_eq!(placeholders("{device}_{name}").unwrap(), ["device", "name"]);
        assert!(placeholders("{device").is_err());
    }

    #[test]
    fn tables_merge_key_by_key() {
        let mut base: Dict = [
            ("limit".to_string(), Value::from(80)),
            (
                "workorder".to_string(),
                Value::Dict(
                    ValueTag::Default,
                    [
                        ("title".to_string(), Value::from("hot")),
                        ("procedure".to_string(), Value::from("SOP-1")),
                    ]
                    .into_iter()
                    .collect(),
                ),
            ),
        ]
        .into_iter()
        .collect();
        let over: Dict = [
            ("limit".to_string(), Value::from(85)),
            (
                "workorder".to_string(),
                Value::Dict(
                    ValueTag::Default,
                    [("title".to_string(), Value::from("hotter"))]
                        .into_iter()
                        .collect(),
                ),
            ),
        ]
        .into_iter()
        .collect();
        merge(&mut base, over);
        assert_eq!(base["limit"].to_i128(), Some(85));
        let wo = base["workorder"].as_dict().unwrap();
        assert_eq!(wo["title"].as_str(), Some("hotter"));
        assert_eq!(wo["procedure"].as_str(), Some("SOP-1"));
    }

    #[test]
    fn tags_are_relative_to_the_device() {
        let vars = Vars {
            device: "pump7",
            asset: Some("P-007"),
            location: None,
        };
        let mut rule: Dict = [
            ("tag".to_string(), Value::from("bearing_temp")),
            ("asset".to_string(), Value::from("{asset}")),
            ("location".to_string(), Value::from("{location}")),
            (
                "workorder".to_string(),
                Value::Dict(
                    ValueTag::Default,
                    [
                        ("title".to_string(), Value::from("{device} hot: {value}")),
                        (
                            "snapshot".to_string(),
                            Value::from(vec!["flow", "plant.ambient"]),
                        ),
                    ]
                    .into_iter()
                    .collect(),
                ),
            ),
        ]
        .into_iter()
        .collect();
        relative(&mut rule, &vars);
        assert_eq!(rule["tag"].as_str(), Some("pump7.bearing_temp"));
        assert_eq!(rule["asset"].as_str(), Some("P-007"));
        assert!(!rule.contains_key("location"), "no location to name");
        let wo = rule["workorder"].as_dict().unwrap();
        assert_eq!(wo["title"].as_str(), Some("pump7 hot: {value}"));
        let snap: Vec<&str> = wo["snapshot"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(snap, ["pump7.flow", "plant.ambient"]);
    }
}
