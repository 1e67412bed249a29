//! `git-clear`: empties a working tree but for its `.git`, so that what a
//! later step writes there replaces the branch's whole content.

use futures::FutureExt;
use serde::Deserialize;

use super::repository::blocking;
use super::{BuiltinStep, StepContext, StepRun, parse_config};
use crate::git;
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "git-clear";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    path: String,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .using_work_dir()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(clear(ctx).await)
}

async fn clear(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    let path = ctx.path("path", &config.path)?;
    blocking(move || {
        git::open(&path)?;
        git::clear(&path)
    })
    .await?;
    Ok(StepResult::new(StepStatus::Succeeded))
}
