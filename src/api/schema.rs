//! Schema helpers for fields whose shape the derive cannot express.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An arbitrary JSON object kept as-is by the API server.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
