//! `[[cmms]]`: the REST connectors that deliver work orders (and meter
//! readings) straight to a CMMS, and `bridge.toml`, the configuration of
//! `fieldgate bridge`, which runs the same connectors for many gateways.
//! `docs/cmms.md` documents every key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{MqttConfig, Secret, StoreConfig};

/// One `[[cmms]]` section: a connector.
#[derive(Debug, Clone, PartialEq)]
pub struct CmmsConfig {
    /// Unique name, used in logs, metrics and the store's queue.
    pub name: String,
    /// Which CMMS, with its own keys.
    pub kind: CmmsKind,
    /// Base URL of the CMMS's API (the webhook's full URL). `http` or
    /// `https`.
    pub url: String,
    /// Whole-request timeout (connect, send, answer).
    pub timeout: Duration,
    /// First retry delay after a failure that may pass (5xx, timeout,
    /// refused); doubled per failure, with jitter.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How often open work orders' status is polled; `None`: not polled
    /// (the CMMS pushes it to `POST /api/workorders/{id}/status`).
    pub poll_interval: Option<Duration>,
    /// CA certificate(s) (PEM) trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Deliver work orders (default true).
    pub work_orders: bool,
    /// fieldgate asset id → the CMMS's asset id.
    pub assets: BTreeMap<String, String>,
    /// fieldgate location → the CMMS's location id.
    pub locations: BTreeMap<String, String>,
    /// fieldgate meter name → the CMMS's meter id: the meters whose
    /// readings are delivered.
    pub meters: BTreeMap<String, String>,
    /// Who may push statuses to `POST /api/workorders/{id}/status` for
    /// this connector.
    pub inbound: Option<InboundAuth>,
}

/// The CMMS a connector talks to, with the keys only it has.
#[derive(Debug, Clone, PartialEq)]
pub enum CmmsKind {
    /// Any HTTP endpoint, with a body template.
    Webhook(WebhookConfig),
    /// IBM Maximo, OSLC REST API.
    Maximo(MaximoConfig),
    /// MaintainX, REST API v1.
    MaintainX(MaintainXConfig),
    /// UpKeep, REST API v2.
    UpKeep(UpKeepConfig),
}

impl CmmsKind {
    /// The config name (`kind = "..."`).
    pub fn as_str(&self) -> &'static str {
        match self {
            CmmsKind::Webhook(_) => "webhook",
            CmmsKind::Maximo(_) => "maximo",
            CmmsKind::MaintainX(_) => "maintainx",
            CmmsKind::UpKeep(_) => "upkeep",
        }
    }
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// `POST` (default), `PUT` or `PATCH`.
    pub method: String,
    /// Extra headers, in the order written.
    pub headers: Vec<(String, String)>,
    /// How requests are authenticated.
    pub auth: WebhookAuth,
    /// Body template; `None`: the work order's JSON as published.
    pub body: Option<String>,
    /// Content type of the body (default `application/json`).
    pub content_type: String,
    /// Which work-order events are sent (default all: `raised`,
    /// `updated`, `closed`).
    pub events: Vec<String>,
}

/// The placeholders a webhook's `body` template may use: `{name}`, a
/// name of letters, digits and `_` between braces. Any other brace is
/// text (a JSON body is full of them); an unknown name is warned about
/// and sent as written.
pub const WEBHOOK_PLACEHOLDERS: &[&str] = &[
    "id",
    "key",
    "event",
    "type",
    "status",
    "priority",
    "created_at",
    "updated_at",
    "site",
    "gateway",
    "asset",
    "location",
    "title",
    "description",
    "problem_code",
    "procedure",
    "rule",
    "meter",
    "tag",
    "value",
    "limit",
    "unit",
    "condition",
    "since",
    "occurrences",
    "cmms_ref",
    "json",
];

/// How a webhook request is authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookAuth {
    /// No credentials.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic ...`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An HMAC-SHA256 of the body, hex, in a header
    /// (`X-Fieldgate-Signature: sha256=<hex>` by default).
    Hmac {
        /// The shared secret.
        secret: Secret,
        /// The header that carries the signature.
        header: String,
    },
}

/// `kind = "maximo"`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaximoConfig {
    /// The `apikey` header's value.
    pub api_key: Secret,
    /// `siteid` of every work order.
    pub site_id: String,
    /// The object structure (default `mxwo`).
    pub object_structure: String,
    /// API root below `url` (default `oslc`; Maximo Application Suite
    /// also serves `api`).
    pub api_path: String,
    /// `worktype` of corrective work orders (default `CM`).
    pub worktype_corrective: String,
    /// `worktype` of preventive work orders (default `PM`).
    pub worktype_preventive: String,
    /// The attribute that holds fieldgate's work-order key (default
    /// `externalrefid`), queried before every create.
    pub key_field: String,
    /// `wopriority` for fieldgate's low, medium, high and critical
    /// (default 4, 3, 2, 1: 1 is Maximo's most urgent).
    pub priorities: [i64; 4],
}

/// `kind = "maintainx"`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintainXConfig {
    /// The API key (`Authorization: Bearer`).
    pub api_key: Secret,
}

/// `kind = "upkeep"`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpKeepConfig {
    /// The session token (`Session-Token` header).
    pub session_token: Secret,
}

/// How a status push to `POST /api/workorders/{id}/status` proves it
/// comes from the CMMS.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundAuth {
    /// `Authorization: Bearer <token>`.
    Token(Secret),
    /// `X-Fieldgate-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    Hmac(Secret),
}

/// `bridge.toml`: `fieldgate bridge`.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `[bridge]`.
    pub bridge: BridgeSection,
    /// `[mqtt]`: the broker the gateways publish to (its `client_id`
    /// defaults to `fieldgate-bridge-{id}`).
    pub mqtt: MqttConfig,
    /// `[store]`: the bridge's own store (default
    /// `{data_dir}/bridge.db`).
    pub store: StoreConfig,
    /// `[[cmms]]`.
    pub cmms: Vec<CmmsConfig>,
}

/// `[bridge]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeSection {
    /// This bridge's id (default the host name).
    pub id: String,
    /// Folder for the bridge's store.
    pub data_dir: PathBuf,
    /// Shared-subscription group (`$share/{group}/...`); `None`: a plain
    /// subscription (a broker without shared subscriptions; run one
    /// bridge).
    pub shared_group: Option<String>,
    /// The gateways' topic prefix (default `fieldgate`).
    pub topic_prefix: String,
}
