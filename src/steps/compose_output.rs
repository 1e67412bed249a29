//! `compose-output`: publishes its config as the step's output. Inside a
//! task, the output is also the task's output (`outputs['<task alias>']`),
//! which is how a task hands results to the steps after it.

use futures::FutureExt;

use super::{BuiltinStep, StepContext, StepRun, terminal};
use crate::promotion::engine::{StepResult, StepStatus};

pub const KIND: &str = "compose-output";

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed()).propagating_task_output()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    if !ctx.config.is_object() {
        return StepRun::done(Err(terminal(
            "config: must be an object of output names to values",
        )));
    }
    let mut result = StepResult::new(StepStatus::Succeeded);
    result.output = Some(ctx.config.clone());
    StepRun::done(Ok(result))
}
