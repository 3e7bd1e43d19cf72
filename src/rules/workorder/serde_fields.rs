//! serde for the work-order fields whose types have no serde of their
//! own (`#[serde(with = ...)]`): values exact through [`SavedValue`],
//! priorities by their config name. The saved book is read back through
//! these, so each reads exactly what it writes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::Priority;
use crate::rules::saved::SavedValue;
use crate::tag::Value;

/// serde for `Option<Value>`, exact through [`SavedValue`].
pub(super) mod opt_value {
    use super::{Deserialize, Deserializer, SavedValue, Serialize, Serializer, Value};

    /// Writes it.
    pub fn serialize<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(SavedValue::from).serialize(s)
    }

    /// Reads it back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Ok(Option::<SavedValue>::deserialize(d)?
            .as_ref()
            .map(Value::from))
    }
}

/// serde for [`Priority`], by its config name.
pub(super) mod priority_text {
    use super::{Deserialize, Deserializer, Priority, Serializer};

    /// Writes it.
    pub fn serialize<S: Serializer>(p: &Priority, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    /// Reads it back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Priority, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "low" => Ok(Priority::Low),
            "medium" => Ok(Priority::Medium),
            "high" => Ok(Priority::High),
            "critical" => Ok(Priority::Critical),
            other => Err(serde::de::Error::custom(format!(
                "unknown priority \"{other}\""
            ))),
        }
    }
}
