//! `compose-output`: publishes its config as the step's output. Inside a
//! task, the output is also the task's output (`outputs['<task alias>']`),
//! which is how a task hands results to the steps after it.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{StepContext, StepRun, StepRunner, terminal};
use crate::promotion::engine::{StepResult, StepStatus};

pub const KIND: &str = "compose-output";

pub struct ComposeOutput;

impl StepRunner for ComposeOutput {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn propagates_task_output(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepRun> {
        async move {
            if !ctx.config.is_object() {
                return StepRun::done(Err(terminal(
                    "config: must be an object of output names to values",
                )));
            }
            let mut result = StepResult::new(StepStatus::Succeeded);
            result.output = Some(ctx.config.clone());
            StepRun::done(Ok(result))
        }
        .boxed()
    }
}
