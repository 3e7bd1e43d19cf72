//! The Sparkplug namespace of one edge node: `spBv1.0/{group}/{type}/{node}[/{device}]`.
//!
//! The pipeline stores device rows under their DDATA, DBIRTH and DDEATH
//! topics; the edge node reads the kind back from the topic
//! ([`SparkplugTopics::row_kind`]) and decides at publish time what goes on
//! the wire (a stored DBIRTH sent as history becomes DDATA).

use super::NAMESPACE;

/// The topics of one edge node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkplugTopics {
    group: String,
    node: String,
}

/// What a stored row of the Sparkplug lane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind<'a> {
    /// Readings and alarm metrics of a device (by exception).
    Data {
        /// The device.
        device: &'a str,
    },
    /// The device answers again: every metric's current value.
    Birth {
        /// The device.
        device: &'a str,
    },
    /// The device stopped answering.
    Death {
        /// The device.
        device: &'a str,
    },
    /// Node metrics (the alarms of rules that span devices).
    NodeData,
}

/// A message the edge node subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundTopic<'a> {
    /// `NCMD` to this node.
    NodeCommand,
    /// `DCMD` to one of its devices.
    DeviceCommand {
        /// The device.
        device: &'a str,
    },
    /// `STATE` of a host application.
    State {
        /// The host id.
        host: &'a str,
    },
}

impl SparkplugTopics {
    /// The topics of edge node `node` in group `group`.
    pub fn new(group: &str, node: &str) -> SparkplugTopics {
        SparkplugTopics {
            group: group.to_owned(),
            node: node.to_owned(),
        }
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The edge node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn node_topic(&self, kind: &str) -> String {
        format!("{NAMESPACE}/{}/{kind}/{}", self.group, self.node)
    }

    fn device_topic(&self, kind: &str, device: &str) -> String {
        format!("{NAMESPACE}/{}/{kind}/{}/{device}", self.group, self.node)
    }

    /// `NBIRTH`.
    pub fn nbirth(&self) -> String {
        self.node_topic("NBIRTH")
    }

    /// `NDEATH` (the Last Will).
    pub fn ndeath(&self) -> String {
        self.node_topic("NDEATH")
    }

    /// `NDATA`.
    pub fn ndata(&self) -> String {
        self.node_topic("NDATA")
    }

    /// `NCMD` (subscribed).
    pub fn ncmd(&self) -> String {
        self.node_topic("NCMD")
    }

    /// `DBIRTH` of a device.
    pub fn dbirth(&self, device: &str) -> String {
        self.device_topic("DBIRTH", device)
    }

    /// `DDATA` of a device.
    pub fn ddata(&self, device: &str) -> String {
        self.device_topic("DDATA", device)
    }

    /// `DDEATH` of a device.
    pub fn ddeath(&self, device: &str) -> String {
        self.device_topic("DDEATH", device)
    }

    /// `DCMD` of every device of this node (a subscription filter).
    pub fn dcmd_filter(&self) -> String {
        self.device_topic("DCMD", "+")
    }

    /// `spBv1.0/STATE/{host}`: a host application's state (retained).
    pub fn state(host: &str) -> String {
        format!("{NAMESPACE}/STATE/{host}")
    }

    /// The kind and device of a stored row's topic; `None` for a topic
    /// that is not one of this node's device topics.
    pub fn row_kind<'a>(&self, topic: &'a str) -> Option<RowKind<'a>> {
        let rest = topic.strip_prefix(NAMESPACE)?.strip_prefix('/')?;
        let rest = rest.strip_prefix(self.group.as_str())?.strip_prefix('/')?;
        let (kind, rest) = rest.split_once('/')?;
        if kind == "NDATA" && rest == self.node {
            return Some(RowKind::NodeData);
        }
        let device = rest.strip_prefix(self.node.as_str())?.strip_prefix('/')?;
        if device.is_empty() || device.contains('/') {
            return None;
        }
        match kind {
            "DDATA" => Some(RowKind::Data { device }),
            "DBIRTH" => Some(RowKind::Birth { device }),
            "DDEATH" => Some(RowKind::Death { device }),
            _ => None,
        }
    }

    /// What a received topic is, if it is one the edge node listens to.
    pub fn parse_inbound<'a>(&self, topic: &'a str) -> Option<InboundTopic<'a>> {
        let rest = topic.strip_prefix(NAMESPACE)?.strip_prefix('/')?;
        if let Some(host) = rest.strip_prefix("STATE/") {
            return (!host.is_empty() && !host.contains('/'))
                .then_some(InboundTopic::State { host });
        }
        let rest = rest.strip_prefix(self.group.as_str())?.strip_prefix('/')?;
        let (kind, rest) = rest.split_once('/')?;
        match (kind, rest.split_once('/')) {
            ("NCMD", None) if rest == self.node => Some(InboundTopic::NodeCommand),
            ("DCMD", Some((node, device)))
                if node == self.node && !device.is_empty() && !device.contains('/') =>
            {
                Some(InboundTopic::DeviceCommand { device })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_namespace() {
        let t = SparkplugTopics::new("plant1", "gw1");
        assert_eq!(t.nbirth(), "spBv1.0/plant1/NBIRTH/gw1");
        assert_eq!(t.ndeath(), "spBv1.0/plant1/NDEATH/gw1");
        assert_eq!(t.ncmd(), "spBv1.0/plant1/NCMD/gw1");
        assert_eq!(t.ddata("pump1"), "spBv1.0/plant1/DDATA/gw1/pump1");
        assert_eq!(t.dcmd_filter(), "spBv1.0/plant1/DCMD/gw1/+");
        assert_eq!(SparkplugTopics::state("scada"), "spBv1.0/STATE/scada");
    }

    #[test]
    fn stored_rows_are_read_back_by_kind() {
        let t = SparkplugTopics::new("g", "n");
        assert_eq!(
            t.row_kind(&t.ddata("pump1")),
            Some(RowKind::Data { device: "pump1" })
        );
        assert_eq!(
            t.row_kind(&t.dbirth("pump1")),
            Some(RowKind::Birth { device: "pump1" })
        );
        assert_eq!(
            t.row_kind(&t.ddeath("pump1")),
            Some(RowKind::Death { device: "pump1" })
        );
        assert_eq!(t.row_kind("spBv1.0/g/DDATA/other/pump1"), None);
        assert_eq!(t.row_kind("spBv1.0/g/NDATA/n"), Some(RowKind::NodeData));
        assert_eq!(t.row_kind("spBv1.0/g/NBIRTH/n"), None);
        assert_eq!(t.row_kind("spBv1.0/g/DDATA/n/a/b"), None);
        assert_eq!(t.row_kind("fieldgate/s/g/data/pump1"), None);
    }

    #[test]
    fn inbound_topics_are_ours_only() {
        let t = SparkplugTopics::new("g", "n");
        assert_eq!(
            t.parse_inbound("spBv1.0/g/NCMD/n"),
            Some(InboundTopic::NodeCommand)
        );
        assert_eq!(
            t.parse_inbound("spBv1.0/g/DCMD/n/pump1"),
            Some(InboundTopic::DeviceCommand { device: "pump1" })
        );
        assert_eq!(
            t.parse_inbound("spBv1.0/STATE/scada"),
            Some(InboundTopic::State { host: "scada" })
        );
        assert_eq!(t.parse_inbound("spBv1.0/g/NCMD/other"), None);
        assert_eq!(t.parse_inbound("spBv1.0/h/NCMD/n"), None);
        assert_eq!(t.parse_inbound("spBv1.0/STATE/"), None);
        assert_eq!(t.parse_inbound("spBv1.0/g/DCMD/n/"), None);
        assert_eq!(t.parse_inbound("spBv1.0/g/NCMD/n/x"), None);
    }
}
