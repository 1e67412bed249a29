//! Specifications of the step execution model.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::engine::*;
use crate::api::{PromotionStep, PromotionStepRetry};

fn step(alias: &str) -> PromotionStep {
    PromotionStep {
        uses: Some("test".into()),
        alias: Some(alias.into()),
        ..PromotionStep::default()
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ok(status: StepStatus) -> Result<StepResult, StepError> {
    Ok(StepResult::new(status))
}

fn retryable(msg: &str) -> Result<StepResult, StepError> {
    Err(StepError {
        message: msg.into(),
        terminal: false,
        unavailable: false,
    })
}

/// Step 0 of `plan` reports `result` at `at`, with the default timeout and threshold.
fn report(
    progress: &mut Progress,
    plan: &[PromotionStep],
    result: Result<StepResult, StepError>,
    at: Timestamp,
) -> Recorded {
    record(progress, plan, 0, result, StepDefaults::default(), at)
}

fn run_all(plan: &[PromotionStep], results: Vec<Result<StepResult, StepError>>) -> Progress {
    let mut progress = Progress::default();
    let mut results = results.into_iter();
    while let Next::Start(i) | Next::Resume(i) = next(plan, &progress) {
        start(&mut progress, plan, i, t(0));
        let Some(result) = results.next() else { break };
        record(
            &mut progress,
            plan,
            i,
            result,
            StepDefaults::default(),
            t(1),
        );
    }
    progress
}

/// The Promotion is done, in `phase`, with no message.
fn finished(phase: FinalPhase) -> Next {
    Next::Done {
        phase,
        message: None,
    }
}

#[test]
fn steps_run_in_order_and_the_promotion_succeeds() {
    let plan = vec![step("a"), step("b")];
    let progress = run_all(
        &plan,
        vec![ok(StepStatus::Succeeded), ok(StepStatus::Succeeded)],
    );
    assert_eq!(next(&plan, &progress), finished(FinalPhase::Succeeded));
    assert_eq!(progress.metas.len(), 2);
}

#[test]
fn a_running_step_waits_and_resumes_later() {
    let plan = vec![step("a")];
    let mut progress = Progress::default();
    assert_eq!(next(&plan, &progress), Next::Start(0));
    start(&mut progress, &plan, 0, t(0));
    assert_eq!(
        report(&mut progress, &plan, ok(StepStatus::Running), t(0)),
        Recorded::Wait { wake_at: None }
    );
    assert_eq!(next(&plan, &progress), Next::Resume(0));
}

#[test]
fn output_is_kept_even_while_the_step_runs() {
    let plan = vec![step("a")];
    let mut progress = Progress::default();
    start(&mut progress, &plan, 0, t(0));
    let result = StepResult {
        output: Some(json!({"apps": ["x"]})),
        ..StepResult::new(StepStatus::Running)
    };
    report(&mut progress, &plan, Ok(result), t(0));
    assert_eq!(progress.state.get("a"), Some(&json!({"apps": ["x"]})));
}

#[test]
fn a_timeout_is_a_wake_up_deadline_and_errors_the_step_when_passed() {
    let mut s = step("a");
    s.retry = Some(PromotionStepRetry {
        timeout: "3s".parse().ok(),
        error_threshold: 0,
    });
    let plan = vec![s];
    let mut progress = Progress::default();
    start(&mut progress, &plan, 0, t(0));
    let waited = report(&mut progress, &plan, ok(StepStatus::Running), t(1));
    assert_eq!(
        waited,
        Recorded::Wait {
            wake_at: Some(t(3))
        }
    );
    assert_eq!(
        report(&mut progress, &plan, ok(StepStatus::Running), t(3)),
        Recorded::Continue
    );
    let Next::Done { phase, message } = next(&plan, &progress) else {
        panic!("not done")
    };
    assert_eq!(phase, FinalPhase::Errored);
    assert_eq!(message.as_deref(), Some("step \"a\" timed out after 3s"));
}

#[test]
fn a_running_step_that_polls_wakes_at_its_poll_time_or_its_deadline_whichever_is_first() {
    let mut s = step("a");
    s.retry = Some(PromotionStepRetry {
        timeout: "60s".parse().ok(),
        error_threshold: 0,
    });
    let plan = vec![s];
    let polling = |after: u64| {
        Ok(StepResult {
            poll_after: Some(Duration::from_secs(after)),
            ..StepResult::new(StepStatus::Running)
        })
    };
    let mut progress = Progress::default();
    start(&mut progress, &plan, 0, t(0));
    assert_eq!(
        report(&mut progress, &plan, polling(30), t(10)),
        Recorded::Wait {
            wake_at: Some(t(40))
        }
    );
    assert_eq!(
        report(&mut progress, &plan, polling(30), t(40)),
        Recorded::Wait {
            wake_at: Some(t(60))
        }
    );
}

#[test]
fn the_step_kinds_default_timeout_applies_when_retry_is_unset_and_zero_disables_it() {
    let defaults = StepDefaults {
        timeout: Some(Duration::from_secs(300)),
        error_threshold: 1,
    };
    // A running step, checked at `at`, wakes at its deadline.
    let wake = |plan: Vec<PromotionStep>, at| {
        let mut progress = Progress::default();
        start(&mut progress, &plan, 0, t(0));
        record(
            &mut progress,
            &plan,
            0,
            ok(StepStatus::Running),
            defaults,
            at,
        )
    };
    assert_eq!(
        wake(vec![step("a")], t(1)),
        Recorded::Wait {
            wake_at: Some(t(300))
        }
    );

    let mut s = step("a");
    s.retry = Some(PromotionStepRetry {
        timeout: "0s".parse().ok(),
        error_threshold: 0,
    });
    assert_eq!(wake(vec![s], t(10_000)), Recorded::Wait { wake_at: None });
}

#[test]
fn errors_below_the_threshold_are_retried_then_the_step_errors() {
    let mut s = step("a");
    s.retry = Some(PromotionStepRetry {
        timeout: None,
        error_threshold: 3,
    });
    let plan = vec![s];
    let mut progress = Progress::default();
    start(&mut progress, &plan, 0, t(0));
    assert!(matches!(
        report(&mut progress, &plan, retryable("boom"), t(1)),
        Recorded::Wait { wake_at: Some(_) }
    ));
    assert_eq!(
        progress.metas[0].message.as_deref(),
        Some("boom; step will be retried")
    );
    assert!(matches!(
        report(&mut progress, &plan, retryable("boom"), t(2)),
        Recorded::Wait { .. }
    ));
    assert_eq!(
        report(&mut progress, &plan, retryable("boom"), t(3)),
        Recorded::Continue
    );
    assert_eq!(
        progress.metas[0].message.as_deref(),
        Some("step \"a\" met error threshold of 3: boom")
    );
    assert_eq!(progress.metas[0].status, Some(StepStatus::Errored));
}

#[test]
fn an_api_server_that_does_not_answer_is_retried_without_counting_against_the_threshold() {
    // The default threshold is 1: one counted error would end the step.
    let plan = vec![step("a")];
    let mut progress = Progress::default();
    start(&mut progress, &plan, 0, t(0));
    let unavailable = || {
        Err(StepError {
            message: "reading Application: 504 Gateway Timeout".into(),
            terminal: false,
            unavailable: true,
        })
    };
    for _ in 0..3 {
        assert!(matches!(
            report(&mut progress, &plan, unavailable(), t(1)),
            Recorded::Wait { wake_at: Some(_) }
        ));
    }
    assert_eq!(progress.metas[0].error_count, 0);
    assert_eq!(progress.metas[0].status, Some(StepStatus::Running));
    assert!(matches!(
        report(&mut progress, &plan, ok(StepStatus::Succeeded), t(2)),
        Recorded::Continue
    ));
    assert_eq!(progress.metas[0].status, Some(StepStatus::Succeeded));
}

#[test]
fn a_terminal_error_ends_the_step_at_once() {
    let plan = vec![step("a")];
    let progress = run_all(
        &plan,
        vec![Err(StepError {
            message: "bad config".into(),
            terminal: true,
            unavailable: false,
        })],
    );
    assert_eq!(
        next(&plan, &progress),
        Next::Done {
            phase: FinalPhase::Errored,
            message: Some("step \"a\": an unrecoverable error occurred: bad config".into())
        }
    );
}

#[test]
fn a_failure_with_continue_on_error_does_not_fail_the_promotion() {
    let mut a = step("a");
    a.continue_on_error = true;
    let plan = vec![a, step("b")];
    let progress = run_all(
        &plan,
        vec![ok(StepStatus::Failed), ok(StepStatus::Succeeded)],
    );
    assert_eq!(next(&plan, &progress), finished(FinalPhase::Succeeded));
}

#[test]
fn the_worst_step_decides_the_phase() {
    let plan = vec![step("a"), step("b"), step("c")];
    let progress = run_all(
        &plan,
        vec![
            ok(StepStatus::Failed),
            ok(StepStatus::Errored),
            ok(StepStatus::Skipped),
        ],
    );
    assert!(matches!(
        next(&plan, &progress),
        Next::Done {
            phase: FinalPhase::Errored,
            ..
        }
    ));
}

#[test]
fn skipping_moves_on_and_counts_as_success() {
    let plan = vec![step("a"), step("b")];
    let mut progress = Progress::default();
    skip(&mut progress, &plan, 0, t(0));
    assert_eq!(next(&plan, &progress), Next::Start(1));
    assert_eq!(progress.metas[0].status, Some(StepStatus::Skipped));
}

#[test]
fn abort_marks_the_running_step_aborted() {
    let plan = vec![step("a"), step("b")];
    let mut progress = Progress::default();
    start(&mut progress, &plan, 0, t(0));
    abort(&mut progress, &plan, t(5));
    assert_eq!(progress.metas[0].status, Some(StepStatus::Aborted));
    assert_eq!(final_phase(&progress).0, FinalPhase::Aborted);
}

#[test]
fn health_checks_are_kept_only_for_succeeded_steps() {
    let plan = vec![step("a"), step("b")];
    let check = Some(("argocd-update".to_string(), json!({"apps": []})));
    let progress = run_all(
        &plan,
        vec![
            Ok(StepResult {
                health_check: check.clone(),
                ..StepResult::new(StepStatus::Succeeded)
            }),
            Ok(StepResult {
                health_check: check,
                ..StepResult::new(StepStatus::Failed)
            }),
        ],
    );
    assert_eq!(progress.health_checks.len(), 1);
}

#[test]
fn go_durations_read_like_kargos() {
    assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    assert_eq!(go_duration(Duration::from_secs(3)), "3s");
    assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
}

fn ended(alias: &str, status: StepStatus, message: &str) -> StepMeta {
    StepMeta {
        alias: alias.into(),
        status: Some(status),
        message: Some(message.into()),
        ..StepMeta::default()
    }
}

#[test]
fn the_first_of_equally_bad_steps_explains_the_final_phase() {
    let progress = Progress {
        metas: vec![
            ended("a", StepStatus::Failed, "first"),
            ended("b", StepStatus::Failed, "second"),
        ],
        ..Progress::default()
    };
    assert_eq!(
        final_phase(&progress),
        (FinalPhase::Failed, Some("step \"a\": first".into()))
    );
}

#[test]
fn a_step_left_running_when_the_promotion_ends_makes_it_errored() {
    let progress = Progress {
        metas: vec![
            ended("a", StepStatus::Succeeded, ""),
            ended("b", StepStatus::Running, "still syncing"),
        ],
        ..Progress::default()
    };
    assert_eq!(final_phase(&progress).0, FinalPhase::Errored);
}
