//! `fail`: fails the Promotion, with the config's `message` if it has one;
//! used behind an `if` that detects what must stop the promotion.

use futures::FutureExt;
use serde::Deserialize;

use super::{BuiltinStep, StepContext, StepRun, parse_config};
use crate::promotion::engine::{StepResult, StepStatus};

pub const KIND: &str = "fail";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    message: Option<String>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed()).config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    let config: Config = match parse_config(ctx.config) {
        Ok(c) => c,
        Err(e) => return StepRun::done(Err(e)),
    };
    let mut result = StepResult::new(StepStatus::Failed);
    result.message = Some(
        config
            .message
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| "failed by the fail step".into()),
    );
    StepRun::done(Ok(result))
}
