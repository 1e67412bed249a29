//! Schema helpers for fields whose shape the derive cannot express.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An arbitrary JSON object kept as-is by the API server.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A map of arbitrary JSON values kept as-is by the API server.
pub fn free_form_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

/// Any JSON value (object, array, string, number, boolean) kept as-is by the
/// API server.
pub fn any_json(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A non-negative 32-bit integer. (schemars writes `format: uint32`, which
/// the API server does not know and warns about.)
pub fn uint32(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "integer",
        "format": "int32",
        "minimum": 0
    })
}
