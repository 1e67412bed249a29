//! Drives the pure engine: evaluates each step's `if` and config, runs the
//! step's runner, records the result, and goes on until a step has to wait
//! or the plan is done. Everything it learns ends up in the returned outcome;
//! the caller persists it.

use jiff::Timestamp;
use serde_json::Value;

use super::engine::{self, FinalPhase, Next, Progress, Recorded};
use crate::api::PromotionStep;
use crate::controller::await_index::AwaitTarget;
use crate::steps::{Registry, Services, StepContext};

/// Evaluates the expressions of one step against the Promotion's progress.
pub trait StepEvaluator: Send + Sync {
    /// Whether the step runs: its `if`, or `success()` when it has none.
    fn should_run(
        &self,
        step: &PromotionStep,
        alias: &str,
        progress: &Progress,
    ) -> Result<bool, String>;

    /// The step's config with every expression evaluated.
    fn config(
        &self,
        step: &PromotionStep,
        alias: &str,
        progress: &Progress,
    ) -> Result<Value, String>;
}

/// Who is promoting what, where.
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub promotion: &'a str,
    pub stage: &'a str,
    pub actor: Option<&'a str>,
}

/// Where the run stopped.
#[derive(Debug, PartialEq)]
pub enum Stop {
    /// A step is running and waits on `awaiting`; look again by `wake_at` at the latest.
    Waiting {
        alias: String,
        awaiting: Vec<AwaitTarget>,
        message: Option<String>,
        wake_at: Option<Timestamp>,
    },
    /// Every step is finished.
    Finished {
        phase: FinalPhase,
        message: Option<String>,
    },
}

/// Runs steps from the current one until one waits or all are done.
pub async fn execute(
    subject: &Subject<'_>,
    steps: &[PromotionStep],
    progress: &mut Progress,
    registry: &Registry,
    services: &Services,
    evaluator: &dyn StepEvaluator,
) -> Stop {
    loop {
        let (index, starting) = match engine::next(steps, progress) {
            Next::Done { phase, message } => return Stop::Finished { phase, message },
            Next::Start(i) => (i, true),
            Next::Resume(i) => (i, false),
        };
        let step = &steps[index];
        let alias = engine::alias_of(steps, index);
        let now = Timestamp::now();

        if starting {
            match evaluator.should_run(step, &alias, progress) {
                Ok(true) => {}
                Ok(false) => {
                    engine::skip(progress, steps, index, now);
                    continue;
                }
                Err(e) => {
                    engine::error_before_run(progress, steps, index, format!("if: {e}"), now);
                    continue;
                }
            }
        }
        let kind = step.uses.as_deref().unwrap_or_default();
        let Some(runner) = registry.get(kind) else {
            let message = format!(
                "uses: step kind \"{kind}\" is not registered (known kinds: {})",
                registry.kinds().join(", ")
            );
            engine::error_before_run(progress, steps, index, message, now);
            continue;
        };
        if starting {
            engine::start(progress, steps, index, now);
        }
        let config = match evaluator.config(step, &alias, progress) {
            Ok(config) => config,
            Err(e) => {
                engine::error_before_run(progress, steps, index, e, now);
                continue;
            }
        };
        let previous = progress.state.get(&alias).cloned();
        let ctx = StepContext {
            namespace: subject.namespace,
            promotion: subject.promotion,
            stage: subject.stage,
            actor: subject.actor,
            alias: &alias,
            config: &config,
            previous_output: previous.as_ref(),
            services,
        };
        let run = runner.run(&ctx).await;
        let output = run.result.as_ref().ok().and_then(|r| r.output.clone());
        let recorded = engine::record(
            progress,
            steps,
            index,
            run.result,
            runner.defaults(),
            Timestamp::now(),
        );
        // A task's composed output is also the task's own output, seen as
        // `outputs['<task alias>']` by later template steps.
        if runner.propagates_task_output()
            && let (Some(output), Some((task, _))) =
                (output, alias.split_once(crate::inflate::ALIAS_SEPARATOR))
        {
            progress.state.insert(task.to_string(), output);
        }
        if let Some(meta) = progress.metas.iter().find(|m| m.alias == alias)
            && let (Some(status), Some(started), Some(finished)) =
                (meta.status, meta.started_at, meta.finished_at)
        {
            let took = finished.duration_since(started).unsigned_abs();
            services
                .metrics
                .step_finished(kind, &status.to_string(), took);
        }
        if let Recorded::Wait { wake_at } = recorded {
            let message = progress
                .metas
                .iter()
                .find(|m| m.alias == alias)
                .and_then(|m| m.message.clone());
            return Stop::Waiting {
                alias,
                awaiting: run.awaiting,
                message,
                wake_at,
            };
        }
    }
}
