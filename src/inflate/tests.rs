//! Unit tests of inflation: the alias scheme, var layering and every error of
//! Kargo's inflation rules (step and task aliases, var layering, required
//! vars, no task inside a task) plus Barge's own checks.

#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::api::{PromotionStepRetry, PromotionTaskReference};

fn var(name: &str, value: &str) -> ExpressionVariable {
    ExpressionVariable {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn uses(kind: &str) -> PromotionStep {
    PromotionStep {
        uses: Some(kind.to_owned()),
        ..Default::default()
    }
}

fn task(kind: TaskKind, name: &str) -> PromotionStep {
    PromotionStep {
        task: Some(PromotionTaskReference {
            name: name.to_owned(),
            kind,
        }),
        ..Default::default()
    }
}

fn named(mut step: PromotionStep, alias: &str) -> PromotionStep {
    step.alias = Some(alias.to_owned());
    step
}

fn with_vars(mut step: PromotionStep, vars: &[(&str, &str)]) -> PromotionStep {
    step.vars = vars.iter().map(|(n, v)| var(n, v)).collect();
    step
}

fn spec(vars: &[(&str, &str)], steps: Vec<PromotionStep>) -> TaskSpec {
    TaskSpec {
        vars: vars.iter().map(|(n, v)| var(n, v)).collect(),
        steps,
    }
}

/// A ClusterPromotionTask `argocd-sync` with a defaulted and a required var,
/// and a namespaced PromotionTask `notify` with two unnamed steps.
fn tasks() -> TaskMap {
    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::ClusterPromotionTask,
        "argocd-sync",
        spec(
            &[("app", "${{ ctx.stage }}"), ("repoURL", "")],
            vec![
                named(
                    PromotionStep {
                        if_: Some("${{ always() }}".into()),
                        continue_on_error: true,
                        retry: Some(PromotionStepRetry {
                            timeout: None,
                            error_threshold: 3,
                        }),
                        config: Some(json!({"apps": [{"name": "${{ vars.app }}"}]})),
                        ..with_vars(uses("argocd-update"), &[("inner", "1")])
                    },
                    "update",
                ),
                uses("argocd-wait"),
            ],
        ),
    );
    tasks.insert(
        TaskKind::PromotionTask,
        "notify",
        spec(&[], vec![uses("http"), uses("compose-output")]),
    );
    tasks
}

fn request(steps: &[PromotionStep]) -> Request<'_> {
    Request {
        namespace: "demo",
        stage: "dev",
        steps,
        ..Default::default()
    }
}

fn aliases(plan: &PromotionPlan) -> Vec<&str> {
    plan.steps
        .iter()
        .map(|s| s.alias.as_deref().unwrap_or(""))
        .collect()
}

fn inflate_err(request: &Request<'_>) -> InflateError {
    match inflate(request, &tasks()) {
        Ok(plan) => panic!("expected an error, got {plan:?}"),
        Err(err) => err,
    }
}

fn vars_of(step: &PromotionStep) -> Vec<(&str, &str)> {
    step.vars
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect()
}

// ---- alias scheme ----

/// The plan of one reference to ClusterPromotionTask `argocd-sync` that
/// passes `vars`.
fn sync_task_with(vars: &[(&str, &str)]) -> PromotionPlan {
    let steps = [with_vars(
        task(TaskKind::ClusterPromotionTask, "argocd-sync"),
        vars,
    )];
    inflate(&request(&steps), &tasks()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn plain_steps_get_step_n_aliases_and_keep_everything() {
    let steps = vec![
        uses("git-clone"),
        named(with_vars(uses("yaml-update"), &[("x", "1")]), "update"),
        uses("git-push"),
    ];
    let plan = inflate(&request(&steps), &TaskMap::new()).unwrap();
    assert_eq!(aliases(&plan), ["step-1", "update", "step-3"]);
    assert_eq!(vars_of(&plan.steps[1]), [("x", "1")]);
    assert_eq!(plan.steps[0].uses.as_deref(), Some("git-clone"));
}

#[test]
fn task_steps_are_expanded_with_namespaced_aliases() {
    let steps = vec![
        uses("git-clone"),
        with_vars(
            task(TaskKind::ClusterPromotionTask, "argocd-sync"),
            &[("repoURL", "r")],
        ),
        named(task(TaskKind::PromotionTask, "notify"), "tell"),
        task(TaskKind::PromotionTask, "notify"),
    ];
    let plan = inflate(&request(&steps), &tasks()).unwrap();
    assert_eq!(
        aliases(&plan),
        [
            "step-1",
            "task-2::update",
            "task-2::step-2",
            "tell::step-1",
            "tell::step-2",
            "task-4::step-1",
            "task-4::step-2",
        ]
    );
    assert!(
        plan.steps
            .iter()
            .all(|s| s.task.is_none() && s.uses.is_some())
    );
    assert_eq!(
        plan.steps
            .iter()
            .map(|s| s.uses.as_deref().unwrap_or(""))
            .collect::<Vec<_>>(),
        [
            "git-clone",
            "argocd-update",
            "argocd-wait",
            "http",
            "compose-output",
            "http",
            "compose-output"
        ]
    );
}

#[test]
fn inner_steps_keep_if_continue_on_error_retry_and_config() {
    let steps = vec![with_vars(
        task(TaskKind::ClusterPromotionTask, "argocd-sync"),
        &[("repoURL", "r")],
    )];
    let plan = inflate(&request(&steps), &tasks()).unwrap();
    let update = &plan.steps[0];
    assert_eq!(update.if_.as_deref(), Some("${{ always() }}"));
    assert!(update.continue_on_error);
    assert_eq!(update.retry.as_ref().map(|r| r.error_threshold), Some(3));
    assert_eq!(
        update.config,
        Some(json!({"apps": [{"name": "${{ vars.app }}"}]}))
    );
    let wait = &plan.steps[1];
    assert_eq!(wait.if_, None);
    assert!(!wait.continue_on_error);
}

#[test]
fn explicit_aliases_are_trimmed_and_blank_ones_default() {
    let steps = vec![
        named(uses("a"), "  build "),
        named(uses("b"), "   "),
        named(uses("c"), ""),
    ];
    let plan = inflate(&request(&steps), &TaskMap::new()).unwrap();
    assert_eq!(aliases(&plan), ["build", "step-2", "step-3"]);
}

#[test]
fn a_promotions_own_task_steps_are_inflated() {
    // Kargo's "task step left un-inflated" (CEL: "Promotion step must have
    // uses set and must not reference a task") cannot happen: inflation runs
    // on whatever steps the Promotion has, its own included.
    let own = vec![task(TaskKind::PromotionTask, "notify")];
    let plan = inflate(&request(&own), &tasks()).unwrap();
    assert_eq!(aliases(&plan), ["task-1::step-1", "task-1::step-2"]);
}

#[test]
fn task_kinds_are_distinct_namespaces() {
    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::PromotionTask,
        "t",
        spec(&[], vec![uses("namespaced")]),
    );
    tasks.insert(
        TaskKind::ClusterPromotionTask,
        "t",
        spec(&[], vec![uses("cluster")]),
    );
    let steps = vec![
        task(TaskKind::PromotionTask, "t"),
        task(TaskKind::ClusterPromotionTask, "t"),
    ];
    let plan = inflate(&request(&steps), &tasks).unwrap();
    assert_eq!(plan.steps[0].uses.as_deref(), Some("namespaced"));
    assert_eq!(plan.steps[1].uses.as_deref(), Some("cluster"));
}

#[test]
fn a_closure_is_a_resolver() {
    let resolver = |kind: TaskKind, name: &str| {
        (kind == TaskKind::PromotionTask && name == "x").then(|| spec(&[], vec![uses("u")]))
    };
    let steps = vec![task(TaskKind::PromotionTask, "x")];
    let plan = inflate(&request(&steps), &resolver).unwrap();
    assert_eq!(aliases(&plan), ["task-1::step-1"]);
}

// ---- var layering ----

#[test]
fn plan_vars_are_stage_then_template_then_promotion() {
    let stage = [var("a", "stage"), var("b", "stage")];
    let template = [var("a", "template")];
    let promotion = [var("c", "promotion")];
    let steps = [uses("x")];
    let plan = inflate(
        &Request {
            stage_vars: &stage,
            template_vars: &template,
            promotion_vars: &promotion,
            ..request(&steps)
        },
        &TaskMap::new(),
    )
    .unwrap();
    let got: Vec<_> = plan
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "stage"),
            ("b", "stage"),
            ("a", "template"),
            ("c", "promotion")
        ]
    );
}

#[test]
fn inner_step_vars_are_task_defaults_then_reference_then_own() {
    let plan = sync_task_with(&[("repoURL", "https://git.example/repo"), ("extra", "e")]);
    assert_eq!(
        vars_of(&plan.steps[0]),
        [
            ("app", "${{ ctx.stage }}"),
            ("repoURL", "https://git.example/repo"),
            ("extra", "e"),
            ("inner", "1"),
        ]
    );
    assert_eq!(
        vars_of(&plan.steps[1]),
        [
            ("app", "${{ ctx.stage }}"),
            ("repoURL", "https://git.example/repo"),
            ("extra", "e"),
        ]
    );
}

#[test]
fn task_defaults_are_dropped_for_non_empty_promotion_vars() {
    let stage = [var("app", "from-stage")];
    let template = [var("repoURL", "from-template")];
    let steps = [task(TaskKind::ClusterPromotionTask, "argocd-sync")];
    let plan = inflate(
        &Request {
            stage_vars: &stage,
            template_vars: &template,
            ..request(&steps)
        },
        &tasks(),
    )
    .unwrap();
    // Both task vars come from the promotion level, so none is copied.
    assert_eq!(vars_of(&plan.steps[0]), [("inner", "1")]);
    assert_eq!(vars_of(&plan.steps[1]), []);
}

#[test]
fn an_empty_promotion_var_does_not_drop_a_task_default() {
    let promotion = [var("app", ""), var("repoURL", "r")];
    let steps = [task(TaskKind::ClusterPromotionTask, "argocd-sync")];
    let plan = inflate(
        &Request {
            promotion_vars: &promotion,
            ..request(&steps)
        },
        &tasks(),
    )
    .unwrap();
    assert_eq!(vars_of(&plan.steps[1]), [("app", "${{ ctx.stage }}")]);
}

#[test]
fn reference_vars_follow_task_defaults_so_they_win() {
    let plan = sync_task_with(&[("app", "mine"), ("repoURL", "r")]);
    assert_eq!(
        vars_of(&plan.steps[1]),
        [
            ("app", "${{ ctx.stage }}"),
            ("app", "mine"),
            ("repoURL", "r")
        ]
    );
}

// ---- errors: each inflation error Kargo reports ----

#[test]
fn required_var_missing() {
    let steps = [named(
        task(TaskKind::ClusterPromotionTask, "argocd-sync"),
        "deploy",
    )];
    let err = inflate_err(&request(&steps));
    assert_eq!(
        err.to_string(),
        r#"steps[1] (alias "deploy"): vars: missing value for variable "repoURL" required by ClusterPromotionTask "argocd-sync""#
    );
    assert_eq!(
        *err.reason(),
        Reason::MissingVar {
            name: "repoURL".into(),
            kind: TaskKind::ClusterPromotionTask,
            task: "argocd-sync".into(),
        }
    );
}

#[test]
fn required_var_set_empty_is_still_missing() {
    let promotion = [var("repoURL", "")];
    let steps = [with_vars(
        task(TaskKind::ClusterPromotionTask, "argocd-sync"),
        &[("repoURL", "")],
    )];
    let err = inflate_err(&Request {
        promotion_vars: &promotion,
        ..request(&steps)
    });
    assert!(
        err.to_string()
            .contains(r#"missing value for variable "repoURL""#),
        "{err}"
    );
}

#[test]
fn required_var_supplied_by_any_promotion_layer() {
    let steps = [task(TaskKind::ClusterPromotionTask, "argocd-sync")];
    let supplied = [var("repoURL", "r")];
    for layer in 0..3 {
        let none: &[ExpressionVariable] = &[];
        let pick = |l| if l == layer { &supplied[..] } else { none };
        let result = inflate(
            &Request {
                stage_vars: pick(0),
                template_vars: pick(1),
                promotion_vars: pick(2),
                ..request(&steps)
            },
            &tasks(),
        );
        assert!(result.is_ok(), "layer {layer}: {result:?}");
    }
}

#[test]
fn unknown_task() {
    let steps = [
        uses("a"),
        named(task(TaskKind::ClusterPromotionTask, "nope"), "deploy"),
    ];
    let err = inflate_err(&request(&steps));
    assert_eq!(
        err.to_string(),
        r#"steps[2] (alias "deploy"): task.name: ClusterPromotionTask "nope" not found"#
    );
    let steps = [task(TaskKind::PromotionTask, "argocd-sync")];
    let err = inflate_err(&request(&steps));
    assert_eq!(
        err.to_string(),
        r#"steps[1] (alias "task-1"): task.name: PromotionTask "argocd-sync" not found"#
    );
    assert_eq!(
        *err.reason(),
        Reason::TaskNotFound {
            kind: TaskKind::PromotionTask,
            name: "argocd-sync".into()
        }
    );
}

#[test]
fn bad_task_kind_is_rejected_when_parsing() {
    // Kargo: `unknown task reference kind "<k>"`. The kind is an enum, so a
    // bad one never reaches inflation.
    let parsed: Result<PromotionStep, _> =
        serde_json::from_value(json!({"task": {"name": "t", "kind": "Pipeline"}}));
    let err = parsed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("Pipeline"), "{err}");
}

#[test]
fn nested_task_reference() {
    let mut tasks = tasks();
    tasks.insert(
        TaskKind::PromotionTask,
        "outer",
        spec(
            &[],
            vec![uses("a"), task(TaskKind::PromotionTask, "notify")],
        ),
    );
    let steps = [named(task(TaskKind::PromotionTask, "outer"), "o")];
    let err = inflate(&request(&steps), &tasks).err();
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        r#"steps[1] (alias "o"): PromotionTask "outer": steps[2] (alias "o::task-2"): task: a step of a task must set uses and must not reference another task"#
    );
}

#[test]
fn task_step_with_both_uses_and_task_inside_a_task() {
    let mut tasks = TaskMap::new();
    let both = PromotionStep {
        uses: Some("x".into()),
        ..task(TaskKind::PromotionTask, "y")
    };
    tasks.insert(TaskKind::PromotionTask, "t", spec(&[], vec![both]));
    let steps = [task(TaskKind::PromotionTask, "t")];
    let err = inflate(&request(&steps), &tasks).err();
    assert_eq!(
        err.map(|e| (e.field().to_owned(), e.reason().clone())),
        Some(("task".into(), Reason::NestedTask))
    );
}

#[test]
fn task_step_without_uses_inside_a_task() {
    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::PromotionTask,
        "t",
        spec(
            &[],
            vec![uses("a"), named(PromotionStep::default(), "empty")],
        ),
    );
    let steps = [task(TaskKind::PromotionTask, "t")];
    let err = inflate(&request(&steps), &tasks).err();
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        r#"steps[1] (alias "task-1"): PromotionTask "t": steps[2] (alias "task-1::empty"): uses: a step of a task must set uses and must not reference another task"#
    );
}

#[test]
fn stage_without_steps() {
    let err = inflate_err(&Request {
        namespace: "barge-demo",
        stage: "prod",
        ..Default::default()
    });
    assert_eq!(
        err.to_string(),
        r#"Stage "prod" in namespace "barge-demo" defines no promotion steps"#
    );
    assert_eq!(*err.location(), Location::Promotion);
}

#[test]
fn fields_not_allowed_on_a_task_reference() {
    let base = || {
        with_vars(
            task(TaskKind::ClusterPromotionTask, "argocd-sync"),
            &[("repoURL", "r")],
        )
    };
    let cases = [
        (
            PromotionStep {
                if_: Some("${{ true }}".into()),
                ..base()
            },
            "if",
        ),
        (
            PromotionStep {
                config: Some(json!({})),
                ..base()
            },
            "config",
        ),
        (
            PromotionStep {
                continue_on_error: true,
                ..base()
            },
            "continueOnError",
        ),
        (
            PromotionStep {
                retry: Some(PromotionStepRetry::default()),
                ..base()
            },
            "retry",
        ),
        (
            PromotionStep {
                uses: Some("argocd-update".into()),
                ..base()
            },
            "uses",
        ),
    ];
    for (step, field) in cases {
        let steps = [uses("first"), named(step, "deploy")];
        let err = inflate_err(&request(&steps));
        assert_eq!(
            err.to_string(),
            format!(
                r#"steps[2] (alias "deploy"): {field}: must not be set on a step that references a task"#
            )
        );
    }
    // A blank `if` is the same as none.
    let steps = [PromotionStep {
        if_: Some(" ".into()),
        ..base()
    }];
    assert!(inflate(&request(&steps), &tasks()).is_ok());
}

// ---- errors: Barge's own checks ----

#[test]
fn step_with_neither_uses_nor_task() {
    let steps = [uses("a"), PromotionStep::default()];
    let err = inflate_err(&request(&steps));
    assert_eq!(
        err.to_string(),
        r#"steps[2] (alias "step-2"): uses: a step must set exactly one of uses and task, but this one sets neither"#
    );
    let blank = [PromotionStep {
        uses: Some("  ".into()),
        ..Default::default()
    }];
    assert_eq!(
        *inflate_err(&request(&blank)).reason(),
        Reason::NeitherUsesNorTask
    );
}

#[test]
fn step_with_both_uses_and_task_gets_the_task_alias() {
    let steps = [PromotionStep {
        uses: Some("argocd-update".into()),
        ..task(TaskKind::PromotionTask, "notify")
    }];
    assert_eq!(
        inflate_err(&request(&steps)).to_string(),
        r#"steps[1] (alias "task-1"): uses: must not be set on a step that references a task"#
    );
}

#[test]
fn duplicate_alias_in_template() {
    let steps = [
        named(uses("a"), "commit"),
        uses("b"),
        named(uses("c"), "commit"),
    ];
    let err = inflate_err(&request(&steps));
    assert_eq!(
        err.to_string(),
        r#"steps[3] (alias "commit"): as: step alias "commit" duplicates that of steps[1]"#
    );
    // A task reference and a plain step share the template's alias space.
    let steps = [
        named(uses("a"), "x"),
        named(task(TaskKind::PromotionTask, "notify"), "x"),
    ];
    assert!(matches!(
        inflate_err(&request(&steps)).reason(),
        Reason::DuplicateAlias { first: 1, .. }
    ));
}

#[test]
fn duplicate_alias_in_task() {
    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::PromotionTask,
        "t",
        spec(
            &[],
            vec![named(uses("a"), "commit"), named(uses("b"), "commit")],
        ),
    );
    let steps = [task(TaskKind::PromotionTask, "t")];
    let err = inflate(&request(&steps), &tasks).err();
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        r#"steps[1] (alias "task-1"): PromotionTask "t": steps[2] (alias "task-1::commit"): as: step alias "commit" duplicates that of steps[1]"#
    );
}

#[test]
fn reserved_alias_in_template() {
    for alias in ["step-42", "task-1", " step-7 "] {
        let steps = [named(uses("a"), alias)];
        let err = inflate_err(&request(&steps));
        assert_eq!(
            err.to_string(),
            format!(
                r#"steps[1] (alias "{0}"): as: step alias "{0}" is reserved: aliases matching ^(step|task)-\d+$ are assigned automatically"#,
                alias.trim()
            )
        );
    }
}

#[test]
fn reserved_alias_in_task() {
    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::PromotionTask,
        "t",
        spec(&[], vec![named(uses("a"), "step-2")]),
    );
    let steps = [named(task(TaskKind::PromotionTask, "t"), "deploy")];
    let err = inflate(&request(&steps), &tasks).err();
    assert_eq!(
        err.map(|e| (e.location().clone(), e.reason().clone())),
        Some((
            Location::TaskStep {
                index: 1,
                alias: "deploy".into(),
                kind: TaskKind::PromotionTask,
                name: "t".into(),
                task_index: 1,
                task_alias: "deploy::step-2".into(),
            },
            Reason::ReservedAlias {
                alias: "step-2".into()
            }
        ))
    );
}

#[test]
fn reserved_task_reference_alias() {
    let steps = [named(task(TaskKind::PromotionTask, "notify"), "task-9")];
    assert!(matches!(
        inflate_err(&request(&steps)).reason(),
        Reason::ReservedAlias { .. }
    ));
}

#[test]
fn alias_with_separator() {
    let steps = [named(uses("a"), "deploy::update")];
    let err = inflate_err(&request(&steps));
    assert_eq!(
        err.to_string(),
        r#"steps[1] (alias "deploy::update"): as: step alias "deploy::update" must not contain "::", which separates a task's alias from the aliases of its steps"#
    );
    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::PromotionTask,
        "t",
        spec(&[], vec![named(uses("a"), "a::b")]),
    );
    let steps = [task(TaskKind::PromotionTask, "t")];
    assert!(matches!(
        inflate(&request(&steps), &tasks)
            .err()
            .map(|e| e.reason().clone()),
        Some(Reason::AliasSeparator { .. })
    ));
}

#[test]
fn empty_task_name() {
    let steps = [task(TaskKind::PromotionTask, " ")];
    assert_eq!(
        inflate_err(&request(&steps)).to_string(),
        r#"steps[1] (alias "task-1"): task.name: must not be empty"#
    );
}

#[test]
fn task_without_steps() {
    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::ClusterPromotionTask,
        "hollow",
        TaskSpec::default(),
    );
    let steps = [task(TaskKind::ClusterPromotionTask, "hollow")];
    let err = inflate(&request(&steps), &tasks).err();
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        r#"steps[1] (alias "task-1"): ClusterPromotionTask "hollow": spec.steps: must not be empty"#
    );
}

#[test]
fn invalid_var_names_everywhere() {
    let bad = [var("ok", "1"), var("1abc", "x")];
    let steps_plain = [uses("a")];
    let msg = |r: &Request<'_>| inflate_err(r).to_string();
    let suffix = r#"invalid variable name "1abc": must match ^[a-zA-Z_]\w*$"#;

    assert_eq!(
        msg(&Request {
            stage_vars: &bad,
            ..request(&steps_plain)
        }),
        format!("Stage spec.vars[2].name: {suffix}")
    );
    assert_eq!(
        msg(&Request {
            template_vars: &bad,
            ..request(&steps_plain)
        }),
        format!("Stage spec.promotionTemplate.spec.vars[2].name: {suffix}")
    );
    assert_eq!(
        msg(&Request {
            promotion_vars: &bad,
            ..request(&steps_plain)
        }),
        format!("Promotion spec.vars[2].name: {suffix}")
    );
    let steps = [with_vars(uses("a"), &[("a-b", "1")])];
    assert_eq!(
        inflate_err(&request(&steps)).to_string(),
        r#"steps[1] (alias "step-1"): vars[1].name: invalid variable name "a-b": must match ^[a-zA-Z_]\w*$"#
    );
    let steps = [with_vars(
        task(TaskKind::PromotionTask, "notify"),
        &[("", "1")],
    )];
    assert_eq!(
        inflate_err(&request(&steps)).to_string(),
        r#"steps[1] (alias "task-1"): vars[1].name: invalid variable name "": must match ^[a-zA-Z_]\w*$"#
    );

    let mut tasks = TaskMap::new();
    tasks.insert(
        TaskKind::PromotionTask,
        "tv",
        spec(&[("é", "1")], vec![uses("a")]),
    );
    tasks.insert(
        TaskKind::PromotionTask,
        "sv",
        spec(&[], vec![with_vars(uses("a"), &[("x y", "1")])]),
    );
    let steps = [task(TaskKind::PromotionTask, "tv")];
    assert_eq!(
        inflate(&request(&steps), &tasks)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        r#"steps[1] (alias "task-1"): PromotionTask "tv": spec.vars[1].name: invalid variable name "é": must match ^[a-zA-Z_]\w*$"#
    );
    let steps = [task(TaskKind::PromotionTask, "sv")];
    assert_eq!(
        inflate(&request(&steps), &tasks)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        r#"steps[1] (alias "task-1"): PromotionTask "sv": steps[1] (alias "task-1::step-1"): vars[1].name: invalid variable name "x y": must match ^[a-zA-Z_]\w*$"#
    );
}

// ---- helpers ----

#[test]
fn reserved_alias_pattern() {
    for yes in [
        "step-1",
        "task-0",
        "step-0042",
        "task-99999999999999999999999",
    ] {
        assert!(is_reserved_alias(yes), "{yes}");
    }
    for no in [
        "step-", "task", "step-1a", "steps-1", "Step-1", "step-١", "xstep-1", "step--1", "step-+1",
    ] {
        assert!(!is_reserved_alias(no), "{no}");
    }
}

#[test]
fn var_name_pattern() {
    for yes in ["a", "_", "_a1", "argocdAppName", "A_B_9"] {
        assert!(is_valid_var_name(yes), "{yes}");
    }
    for no in ["", "1a", "a-b", "a.b", "a b", "é", "a\n"] {
        assert!(!is_valid_var_name(no), "{no}");
    }
}

#[test]
fn alias_namespaces() {
    assert_eq!(alias_namespace("deploy::update"), Some("deploy"));
    assert_eq!(alias_namespace("task-1::step-2"), Some("task-1"));
    assert_eq!(alias_namespace("step-1"), None);
}

#[test]
fn plan_round_trips_through_json_with_kargo_field_names() {
    let plan = sync_task_with(&[("repoURL", "r")]);
    let value = serde_json::to_value(&plan).unwrap();
    assert_eq!(value["steps"][0]["as"], json!("task-1::update"));
    assert_eq!(value["steps"][0]["if"], json!("${{ always() }}"));
    assert_eq!(value["steps"][0]["continueOnError"], json!(true));
    let back: PromotionPlan = serde_json::from_value(value).unwrap();
    assert_eq!(back, plan);
}

#[test]
fn a_promotion_with_its_own_steps_runs_them_without_the_templates_vars() {
    let stage: crate::api::StageSpec = serde_json::from_value(serde_json::json!({
        "requestedFreight": [], "vars": [{"name": "s", "value": "1"}],
        "promotionTemplate": {"spec": {"vars": [{"name": "t", "value": "2"}], "steps": [{"uses": "a"}]}},
    }))
    .unwrap_or_else(|e| panic!("bad fixture: {e}"));
    let own: crate::api::PromotionSpec = serde_json::from_value(serde_json::json!({
        "stage": "dev", "freight": "f1", "vars": [{"name": "p", "value": "3"}], "steps": [{"uses": "b"}],
    }))
    .unwrap_or_else(|e| panic!("bad fixture: {e}"));
    let request = Request::for_promotion("ns", "dev", &stage, Some(&own));
    assert_eq!(request.steps[0].uses.as_deref(), Some("b"));
    assert!(request.template_vars.is_empty());
    assert_eq!(request.promotion_vars.len(), 1);

    let from_template = Request::for_promotion("ns", "dev", &stage, None);
    assert_eq!(from_template.steps[0].uses.as_deref(), Some("a"));
    assert_eq!(from_template.template_vars[0].name, "t");
    assert_eq!(from_template.stage_vars[0].name, "s");
}

// ---- size ----

#[test]
fn a_plan_of_more_than_a_thousand_steps_is_refused_at_the_reference_that_passes_it() {
    let mut tasks = TaskMap::new();
    let hundred = (1..=100)
        .map(|i| named(uses("compose-output"), &format!("s{i}")))
        .collect();
    tasks.insert(TaskKind::PromotionTask, "hundred", spec(&[], hundred));
    let reference = |n: usize| named(task(TaskKind::PromotionTask, "hundred"), &format!("t{n}"));

    let ten: Vec<_> = (1..=10).map(reference).collect();
    let plan = inflate(&request(&ten), &tasks).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.steps.len(), MAX_PLAN_STEPS);

    let eleven: Vec<_> = (1..=11).map(reference).collect();
    let err = match inflate(&request(&eleven), &tasks) {
        Ok(plan) => panic!("expected an error, got {} steps", plan.steps.len()),
        Err(err) => err,
    };
    assert_eq!(
        err.to_string(),
        "steps[11] (alias \"t11\"): the plan would have 1100 steps once tasks are expanded, more than the 1000 a Promotion may run"
    );
}

/// A config as the controller reads one nested `levels` deep: cut past
/// [`crate::api::free_form::MAX_DEPTH`].
fn config_nested(levels: usize) -> serde_json::Value {
    let text = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    crate::api::free_form::value(&mut serde_json::Deserializer::from_str(&text)).unwrap()
}

#[test]
fn a_config_nested_past_the_bound_fails_naming_the_step_and_field() {
    let deep = PromotionStep {
        config: Some(config_nested(1_000)),
        ..uses("compose-output")
    };
    let err = inflate_err(&request(&[named(deep, "own")]));
    assert_eq!(
        err.to_string(),
        r#"steps[1] (alias "own"): config: nests deeper than 100 levels of arrays and objects, the most a free-form value may"#
    );
    let within = PromotionStep {
        config: Some(config_nested(crate::api::free_form::MAX_DEPTH)),
        ..uses("compose-output")
    };
    assert!(inflate(&request(&[within]), &tasks()).is_ok());
}

#[test]
fn a_task_step_config_nested_past_the_bound_fails_naming_the_task_step() {
    let mut tasks = tasks();
    let deep = PromotionStep {
        config: Some(config_nested(500)),
        ..uses("compose-output")
    };
    tasks.insert(TaskKind::PromotionTask, "deep", spec(&[], vec![deep]));
    let steps = [named(task(TaskKind::PromotionTask, "deep"), "d")];
    let err = inflate(&request(&steps), &tasks).err();
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        r#"steps[1] (alias "d"): PromotionTask "deep": steps[1] (alias "d::step-1"): config: nests deeper than 100 levels of arrays and objects, the most a free-form value may"#
    );
}
