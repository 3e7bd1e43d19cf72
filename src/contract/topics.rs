//! The topic tree (`docs/mqtt.md`), in one place.
//!
//! ```text
//! {prefix}/{site}/{gateway}/status                    out, retained: online / offline (Last Will)
//! {prefix}/{site}/{gateway}/data/{device}             out: one poll of one device
//! {prefix}/{site}/{gateway}/data/{device}/{tag}       out: one tag (when per_tag_topics)
//! {prefix}/{site}/{gateway}/alarms/{rule}             out, retained: alarm state
//! {prefix}/{site}/{gateway}/alarms/{rule}/ack         in
//! {prefix}/{site}/{gateway}/alarms/{rule}/shelve      in
//! {prefix}/{site}/{gateway}/workorders/{id}           out, retained until closed
//! {prefix}/{site}/{gateway}/workorders/{id}/status    in: from the CMMS
//! {prefix}/{site}/{gateway}/meters/{meter}            out, retained
//! {prefix}/{site}/{gateway}/cmd/{device}/{tag}         in: a write command
//! {prefix}/{site}/{gateway}/cmd/{device}/{tag}/result  out: what came of it
//! ```
//!
//! Names in topics are checked by the config (letters, digits, `_`, `-`),
//! so no level can hold `/`, `+` or `#`.
//!
//! A command's result goes one level below the command's own topic, so a
//! client that subscribes to `cmd/+/+/result` sees every result and none of
//! the commands. The gateway subscribes to `cmd/+/+`, which does not match
//! its own results; [`Topics::parse_inbound`] refuses a `…/result` topic
//! anyway, so a result can never be read back as a command.

use crate::config::Config;

/// Builds the topics of one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    /// Topics under `{prefix}/{site}/{gateway}`.
    pub fn new(prefix: &str, site: &str, gateway: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{site}/{gateway}"),
        }
    }

    /// The topics of a configuration.
    pub fn of(config: &Config) -> Topics {
        Topics::new(
            &config.mqtt.topic_prefix,
            &config.gateway.site,
            &config.gateway.id,
        )
    }

    /// `{base}`: the gateway's own level.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Online/offline status (retained; offline is the Last Will).
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// One poll of one device.
    pub fn data(&self, device: &str) -> String {
        format!("{}/data/{device}", self.base)
    }

    /// Where a write command to a tag arrives.
    pub fn command(&self, device: &str, tag: &str) -> String {
        format!("{}/cmd/{device}/{tag}", self.base)
    }

    /// Where the result of a write command to a tag goes.
    pub fn command_result(&self, device: &str, tag: &str) -> String {
        format!("{}/cmd/{device}/{tag}/result", self.base)
    }

    /// One tag of one device.
    pub fn data_tag(&self, device: &str, tag: &str) -> String {
        format!("{}/data/{device}/{tag}", self.base)
    }

    /// A rule's alarm state (retained).
    pub fn alarm(&self, rule: &str) -> String {
        format!("{}/alarms/{rule}", self.base)
    }

    /// Where operators acknowledge a rule's alarm.
    pub fn alarm_ack(&self, rule: &str) -> String {
        format!("{}/alarms/{rule}/ack", self.base)
    }

    /// Where operators shelve a rule's alarm.
    pub fn alarm_shelve(&self, rule: &str) -> String {
        format!("{}/alarms/{rule}/shelve", self.base)
    }

    /// A work order (retained until closed).
    pub fn workorder(&self, id: &str) -> String {
        format!("{}/workorders/{id}", self.base)
    }

    /// A meter's value (retained).
    pub fn meter(&self, name: &str) -> String {
        format!("{}/meters/{name}", self.base)
    }

    /// What an inbound topic asks for, or `None` for a topic outside the
    /// inbound filters (or one with an empty name level).
    pub fn parse_inbound<'a>(&self, topic: &'a str) -> Option<InboundTopic<'a>> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        let mut levels = rest.split('/');
        let parsed = match (levels.next()?, levels.next()?, levels.next()?) {
            ("alarms", rule, "ack") => InboundTopic::Ack { rule },
            ("alarms", rule, "shelve") => InboundTopic::Shelve { rule },
            ("workorders", id, "status") => InboundTopic::WorkOrderStatus { id },
            ("cmd", device, tag) if !device.is_empty() => InboundTopic::Command { device, tag },
            _ => return None,
        };
        let name = match parsed {
            InboundTopic::Ack { rule } | InboundTopic::Shelve { rule } => rule,
            InboundTopic::WorkOrderStatus { id } => id,
            InboundTopic::Command { tag, .. } => tag,
        };
        // One level more is not ours: `cmd/{device}/{tag}/result` is what
        // the gateway itself publishes.
        (levels.next().is_none() && !name.is_empty()).then_some(parsed)
    }

    /// Subscriptions for what the CMMS and operators send in.
    pub fn inbound_filters(&self) -> Vec<String> {
        vec![
            format!("{}/alarms/+/ack", self.base),
            format!("{}/alarms/+/shelve", self.base),
            format!("{}/workorders/+/status", self.base),
            self.command_filter(),
        ]
    }

    /// The inbound filter that carries write commands (one of
    /// [`inbound_filters`](Self::inbound_filters)).
    pub fn command_filter(&self) -> String {
        format!("{}/cmd/+/+", self.base)
    }
}

/// What `fieldgate bridge` takes from any gateway's tree, from its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayTopic<'a> {
    /// `{prefix}/{site}/{gateway}/workorders/{id}`.
    WorkOrder {
        /// Site id.
        site: &'a str,
        /// Gateway id.
        gateway: &'a str,
        /// Work-order id.
        id: &'a str,
    },
    /// `{prefix}/{site}/{gateway}/meters/{meter}`.
    Meter {
        /// Site id.
        site: &'a str,
        /// Gateway id.
        gateway: &'a str,
        /// The meter.
        meter: &'a str,
    },
}

/// Reads a topic of any gateway under `prefix` that the bridge takes;
/// `None` for everything else (statuses, alarms, data, write commands and
/// their results, deeper levels).
pub fn parse_gateway_topic<'a>(prefix: &str, topic: &'a str) -> Option<GatewayTopic<'a>> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut levels = rest.split('/');
    let site = levels.next().filter(|l| !l.is_empty())?;
    let gateway = levels.next().filter(|l| !l.is_empty())?;
    let kind = levels.next()?;
    let name = levels.next().filter(|l| !l.is_empty())?;
    if levels.next().is_some() {
        return None;
    }
    match kind {
        "workorders" => Some(GatewayTopic::WorkOrder {
            site,
            gateway,
            id: name,
        }),
        "meters" => Some(GatewayTopic::Meter {
            site,
            gateway,
            meter: name,
        }),
        _ => None,
    }
}

/// The bridge's subscriptions: every gateway's work orders and meters
/// under `prefix`, shared within `group` when given (`$share/{group}/…`:
/// the broker hands each message to one bridge of the group).
pub fn bridge_filters(prefix: &str, group: Option<&str>) -> Vec<String> {
    let share = group.map(|g| format!("$share/{g}/")).unwrap_or_default();
    vec![
        format!("{share}{prefix}/+/+/workorders/+"),
        format!("{share}{prefix}/+/+/meters/+"),
    ]
}

/// An inbound message's request, from its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundTopic<'a> {
    /// `alarms/{rule}/ack`.
    Ack {
        /// The rule.
        rule: &'a str,
    },
    /// `alarms/{rule}/shelve`.
    Shelve {
        /// The rule.
        rule: &'a str,
    },
    /// `workorders/{id}/status`, from the CMMS.
    WorkOrderStatus {
        /// The work order.
        id: &'a str,
    },
    /// `cmd/{device}/{tag}`: a write command (never `…/result`).
    Command {
        /// The device, as named in the topic.
        device: &'a str,
        /// The tag, as named in the topic.
        tag: &'a str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_reads_every_gateways_work_orders_and_meters() {
        assert_eq!(
            parse_gateway_topic("fieldgate", "fieldgate/plant/gw1/workorders/01J"),
            Some(GatewayTopic::WorkOrder {
                site: "plant",
                gateway: "gw1",
                id: "01J"
            })
        );
        assert_eq!(
            parse_gateway_topic("fieldgate", "fieldgate/plant/gw1/meters/m1"),
            Some(GatewayTopic::Meter {
                site: "plant",
                gateway: "gw1",
                meter: "m1"
            })
        );
        for other in [
            "fieldgate/plant/gw1/workorders/01J/status",
            "fieldgate/plant/gw1/alarms/r",
            "fieldgate/plant//workorders/01J",
            "fieldgatex/plant/gw1/workorders/01J",
            "fieldgate/plant/gw1/workorders/",
            // Write commands and their results are nothing to a bridge.
            "fieldgate/plant/gw1/cmd/pump1/setpoint",
            "fieldgate/plant/gw1/cmd/pump1/setpoint/result",
            "fieldgate/plant/gw1/cmd/pump1",
        ] {
            assert_eq!(parse_gateway_topic("fieldgate", other), None, "{other}");
        }
        assert_eq!(
            bridge_filters("fieldgate", Some("b")),
            vec![
                "$share/b/fieldgate/+/+/workorders/+".to_string(),
                "$share/b/fieldgate/+/+/meters/+".to_string()
            ]
        );
    }

    #[test]
    fn tree() {
        let t = Topics::new("fieldgate", "plant-a", "gw1");
        assert_eq!(t.status(), "fieldgate/plant-a/gw1/status");
        assert_eq!(t.data("pump1"), "fieldgate/plant-a/gw1/data/pump1");
        assert_eq!(
            t.data_tag("pump1", "temp"),
            "fieldgate/plant-a/gw1/data/pump1/temp"
        );
        assert_eq!(t.alarm("hot"), "fieldgate/plant-a/gw1/alarms/hot");
        assert_eq!(t.inbound_filters()[0], "fieldgate/plant-a/gw1/alarms/+/ack");
    }

    #[test]
    fn inbound_topics_parse_back() {
        let t = Topics::new("fieldgate", "plant-a", "gw1");
        assert_eq!(
            t.parse_inbound("fieldgate/plant-a/gw1/alarms/hot/ack"),
            Some(InboundTopic::Ack { rule: "hot" })
        );
        assert_eq!(
            t.parse_inbound("fieldgate/plant-a/gw1/alarms/hot/shelve"),
            Some(InboundTopic::Shelve { rule: "hot" })
        );
        assert_eq!(
            t.parse_inbound("fieldgate/plant-a/gw1/workorders/01J/status"),
            Some(InboundTopic::WorkOrderStatus { id: "01J" })
        );
        for other in [
            "fieldgate/plant-a/gw1/alarms/hot",
            "fieldgate/plant-a/gw1/alarms//ack",
            "fieldgate/plant-a/gw1/alarms/hot/ack/more",
            "fieldgate/plant-a/gw2/alarms/hot/ack",
            "fieldgate/plant-a/gw1x/alarms/hot/ack",
            "fieldgate/plant-a/gw1/data/pump1/status",
        ] {
            assert_eq!(t.parse_inbound(other), None, "{other}");
        }
    }

    #[test]
    fn write_commands_parse_and_their_results_do_not() {
        let t = Topics::new("fieldgate", "plant-a", "gw1");
        assert_eq!(
            t.parse_inbound(&t.command("pump1", "setpoint")),
            Some(InboundTopic::Command {
                device: "pump1",
                tag: "setpoint"
            })
        );
        assert_eq!(
            t.command_result("pump1", "setpoint"),
            "fieldgate/plant-a/gw1/cmd/pump1/setpoint/result"
        );
        for other in [
            // Our own output: never a command.
            "fieldgate/plant-a/gw1/cmd/pump1/setpoint/result",
            "fieldgate/plant-a/gw1/cmd/pump1/setpoint/x",
            "fieldgate/plant-a/gw1/cmd/pump1",
            "fieldgate/plant-a/gw1/cmd/pump1/",
            "fieldgate/plant-a/gw1/cmd//setpoint",
            "fieldgate/plant-a/gw1/cmd",
            "fieldgate/plant-a/gw2/cmd/pump1/setpoint",
            "fieldgate/plant-a/gw1/data/pump1/setpoint",
        ] {
            assert_eq!(t.parse_inbound(other), None, "{other}");
        }
        // The gateway listens for commands, and the filter matches the
        // commands only, not the results.
        let filter = t.command_filter();
        assert_eq!(filter, "fieldgate/plant-a/gw1/cmd/+/+");
        assert!(t.inbound_filters().contains(&filter));
        assert!(rumqttc::matches(&t.command("pump1", "setpoint"), &filter));
        assert!(!rumqttc::matches(
            &t.command_result("pump1", "setpoint"),
            &filter
        ));
        // No bridge subscription takes a command or a result.
        for bridge in bridge_filters("fieldgate", None) {
            for topic in [
                t.command("pump1", "setpoint"),
                t.command_result("pump1", "setpoint"),
            ] {
                assert!(!rumqttc::matches(&topic, &bridge), "{topic} {bridge}");
            }
        }
    }
}
