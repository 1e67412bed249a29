//! Drives the pure engine: evaluates each step's `if` and config, runs the
//! step's runner, records the result, and goes on until a step has to wait
//! or the plan is done. Everything it learns ends up in the returned outcome;
//! the caller persists it.

use jiff::Timestamp;

use serde_json::{Map, Value};

use super::{Registry, Services, StepContext, StepRunner};
use crate::api::PromotionStep;
use crate::await_index::AwaitTarget;
use crate::promotion::engine::{self, FinalPhase, Next, Progress, Recorded, StepMeta};
use crate::promotion::evaluate::StepEvaluator;

pub use super::Subject;

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

/// Whether a step already run kept files in a work directory that no
/// longer exists, and a step yet to run needs them. A Promotion waiting on
/// a pull request or a sync after its last file step does not start over
/// when its pod is replaced.
fn lost_work_dir(
    subject: &Subject<'_>,
    steps: &[PromotionStep],
    progress: &Progress,
    registry: &Registry,
    services: &Services,
) -> bool {
    let uses_files = |step: &PromotionStep| {
        registry
            .get(step.uses.as_deref().unwrap_or_default())
            .is_some_and(|runner| runner.uses_work_dir())
    };
    let (ran, to_run) = steps.split_at(progress.current_step.min(steps.len()));
    ran.iter().any(uses_files)
        && to_run.iter().any(uses_files)
        && !services.work_dirs.of(subject.promotion_uid).exists()
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
    if lost_work_dir(subject, steps, progress, registry, services) {
        // The files earlier steps left (clones, renders) are gone with the
        // directory (a new pod, say): only running them again brings them
        // back. Steps that push recognise what they pushed before.
        tracing::info!(
            promotion = subject.promotion,
            "the work directory is gone; running the plan again from its first step"
        );
        *progress = Progress::default();
    }
    loop {
        let (index, starting) = match engine::next(steps, progress) {
            Next::Done { phase, message } => return Stop::Finished { phase, message },
            Next::Start(i) => (i, true),
            Next::Resume(i) => (i, false),
        };
        let alias = engine::alias_of(steps, index);
        let Some((runner, config)) = crate::cpu_bound::cpu_bound(|| {
            prepare(steps, index, starting, progress, registry, evaluator)
        }) else {
            continue;
        };
        let previous = progress.state.get(&alias).cloned();
        let ctx = StepContext {
            subject,
            alias: &alias,
            config: &config,
            previous_output: previous.as_ref(),
            outputs: &progress.state,
            services,
        };
        let mut run = runner.run(&ctx).await;
        if runner.uses_work_dir()
            && run.result.is_ok()
            && let Some((used, limit)) = services.work_dirs.over_limit(subject.promotion_uid)
        {
            run = super::StepRun::done(Err(super::terminal(format!(
                "the Promotion's files take {} MiB, more than the limit of {} MiB (--work-dir-limit-mib)",
                used.div_ceil(1 << 20),
                limit >> 20
            ))));
        }
        // The status keeps outputs; one nested deeper than the controller
        // reads back would come back cut (see crate::api::free_form).
        if let Ok(result) = &run.result
            && result
                .output
                .as_ref()
                .is_some_and(crate::api::free_form::too_deep)
        {
            run = super::StepRun::done(Err(super::terminal(format!(
                "output {}, the most a Promotion's status keeps",
                crate::api::free_form::too_deep_message()
            ))));
        }
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
        // `outputs['<task alias>']` by later template steps; several
        // compose-output steps in one task add up.
        if runner.propagates_task_output()
            && let (Some(output), Some((task, _))) =
                (output, alias.split_once(crate::inflate::ALIAS_SEPARATOR))
        {
            merge_task_output(&mut progress.state, task, output);
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

/// Adds `output`'s keys to task `task`'s output (a later step's value wins).
fn merge_task_output(state: &mut Map<String, Value>, task: &str, output: Value) {
    match (state.get_mut(task), output) {
        (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
        (_, output) => {
            state.insert(task.to_string(), output);
        }
    }
}

/// Gets step `index` ready to run: its `if` (when starting), its runner and
/// its evaluated config. `None` when it must not run: the engine then has
/// it recorded Skipped or Errored.
fn prepare<'r>(
    steps: &[PromotionStep],
    index: usize,
    starting: bool,
    progress: &mut Progress,
    registry: &'r Registry,
    evaluator: &dyn StepEvaluator,
) -> Option<(&'r dyn StepRunner, Value)> {
    let step = &steps[index];
    let alias = engine::alias_of(steps, index);
    let now = Timestamp::now();
    if starting {
        match evaluator.should_run(step, &alias, progress) {
            Ok(true) => {}
            Ok(false) => {
                engine::skip(progress, steps, index, now);
                return None;
            }
            Err(e) => {
                engine::error_before_run(progress, steps, index, e.to_string(), now);
                return None;
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
        return None;
    };
    if starting {
        engine::start(progress, steps, index, now);
    }
    match evaluator.config(step, &alias, progress) {
        Ok(config) => Some((runner.as_ref(), config)),
        Err(e) => {
            engine::error_before_run(progress, steps, index, e.to_string(), now);
            None
        }
    }
}

/// A step that finished during one run of the executor, for the step
/// duration metric.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTiming {
    pub kind: String,
    pub status: String,
    pub took: std::time::Duration,
}

/// The steps that finished between two snapshots of a Promotion's step
/// metadata (before and after [`execute`]).
pub fn finished_since(
    steps: &[PromotionStep],
    before: &[StepMeta],
    after: &[StepMeta],
) -> Vec<StepTiming> {
    let was_finished = |alias: &str| {
        before
            .iter()
            .any(|m| m.alias == alias && m.finished_at.is_some())
    };
    after
        .iter()
        .filter(|m| !was_finished(&m.alias))
        .filter_map(|m| {
            let (status, started, finished) = (m.status?, m.started_at?, m.finished_at?);
            let kind = (0..steps.len())
                .find(|&i| engine::alias_of(steps, i) == m.alias)
                .and_then(|i| steps[i].uses.clone())
                .unwrap_or_default();
            Some(StepTiming {
                kind,
                status: status.to_string(),
                took: finished.duration_since(started).unsigned_abs(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotion::engine::StepStatus;

    fn step(alias: &str, uses: &str) -> PromotionStep {
        serde_json::from_value(serde_json::json!({"as": alias, "uses": uses}))
            .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    fn meta(alias: &str, finished: Option<i64>) -> StepMeta {
        StepMeta {
            alias: alias.into(),
            started_at: Some(Timestamp::UNIX_EPOCH),
            finished_at: finished.and_then(|s| Timestamp::from_second(s).ok()),
            status: Some(if finished.is_some() {
                StepStatus::Succeeded
            } else {
                StepStatus::Running
            }),
            ..StepMeta::default()
        }
    }

    #[test]
    fn outputs_of_two_compose_steps_in_one_task_add_up() {
        let mut state = Map::new();
        merge_task_output(
            &mut state,
            "deploy",
            serde_json::json!({"a": 1, "shared": "first"}),
        );
        merge_task_output(
            &mut state,
            "deploy",
            serde_json::json!({"b": 2, "shared": "second"}),
        );
        assert_eq!(
            state["deploy"],
            serde_json::json!({"a": 1, "b": 2, "shared": "second"})
        );
    }

    #[test]
    fn only_steps_that_finished_during_the_run_are_timed_with_their_kind() {
        let steps = [step("a", "compose-output"), step("b", "argocd-update")];
        let before = [meta("a", Some(1)), meta("b", None)];
        let after = [meta("a", Some(1)), meta("b", Some(3))];
        assert_eq!(
            finished_since(&steps, &before, &after),
            vec![StepTiming {
                kind: "argocd-update".into(),
                status: "Succeeded".into(),
                took: std::time::Duration::from_secs(3),
            }]
        );
    }
}
