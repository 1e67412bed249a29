//! `yaml-parse`: reads a YAML file of the work directory and outputs the
//! values its `outputs[].fromExpression` expressions pick out of it.

use futures::FutureExt;

use super::BuiltinStep;
use super::document::{self, Format};

pub const KIND: &str = "yaml-parse";

const YAML: Format = Format {
    name: "YAML",
    parse: |text| serde_saphyr::from_str(text).map_err(|e| e.to_string()),
    integers: true,
};

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| async move { document::run(ctx, &YAML) }.boxed())
        .using_work_dir()
        .config::<document::Config>()
}
