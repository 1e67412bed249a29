//! `json-parse`: reads a JSON file of the work directory and outputs the
//! values its `outputs[].fromExpression` expressions pick out of it.

use futures::FutureExt;

use super::BuiltinStep;
use super::document::{self, Format};

pub const KIND: &str = "json-parse";

const JSON: Format = Format {
    name: "JSON",
    parse: |text| serde_json::from_str(text).map_err(|e| e.to_string()),
    integers: false,
};

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| async move { document::run(ctx, &JSON) }.boxed())
        .using_work_dir()
        .config::<document::Config>()
}
