//! The JSON schemas of the published messages (`docs/schemas/`), the
//! contract every MQTT and HTTP payload is checked against.

use std::path::Path;

/// A validator for `docs/schemas/{name}`; panics if the schema is missing
/// or is not a valid schema.
pub fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let schema: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
