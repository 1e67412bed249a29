//! Property tests of task inflation: generated templates and tasks never make
//! it panic, a successful plan always has unique aliases and only concrete
//! steps, and vars resolve by Kargo's precedence.

use std::collections::HashMap;

use barge::api::{
    ExpressionVariable, PromotionStep, PromotionStepRetry, PromotionTaskReference, TaskKind,
};
use barge::inflate::{ALIAS_SEPARATOR, PromotionPlan, Reason, Request, TaskMap, TaskSpec, inflate};
use proptest::prelude::*;
use proptest::sample::select;

const TASK_NAMES: &[&str] = &["t1", "t2", "t3", "missing", ""];

fn var_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(vec!["a", "b", "c", "repoURL", "_x"]).prop_map(str::to_owned),
        1 => select(vec!["1x", "a-b", "", "é"]).prop_map(str::to_owned),
    ]
}

fn var_value() -> impl Strategy<Value = String> {
    select(vec!["", "v1", "v2", "${{ ctx.stage }}"]).prop_map(str::to_owned)
}

fn vars() -> impl Strategy<Value = Vec<ExpressionVariable>> {
    prop::collection::vec(
        (var_name(), var_value()).prop_map(|(name, value)| ExpressionVariable { name, value }),
        0..4,
    )
}

fn alias() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        4 => select(vec!["deploy", "build", "x", "update", " deploy ", ""]).prop_map(|s| Some(s.to_owned())),
        1 => select(vec!["step-1", "task-2", "a::b", "   "]).prop_map(|s| Some(s.to_owned())),
    ]
}

fn kind() -> impl Strategy<Value = TaskKind> {
    prop_oneof![
        Just(TaskKind::PromotionTask),
        Just(TaskKind::ClusterPromotionTask)
    ]
}

/// Any step: mostly well-formed, sometimes with both or neither of `uses` and
/// `task`, or with fields a task reference may not have.
fn step() -> impl Strategy<Value = PromotionStep> {
    let uses = prop_oneof![
        3 => Just(None),
        4 => select(vec!["argocd-update", "http", "git-clone"]).prop_map(|s| Some(s.to_owned())),
        1 => Just(Some(String::new())),
    ];
    let task = prop_oneof![
        1 => Just(None),
        1 => (select(TASK_NAMES.to_vec()), kind())
            .prop_map(|(name, kind)| Some(PromotionTaskReference { name: name.to_owned(), kind })),
    ];
    let extras = (
        prop::option::weighted(0.1, Just("${{ always() }}".to_owned())),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.1, Just(PromotionStepRetry::default())),
        prop::option::weighted(0.2, Just(serde_json::json!({"k": "${{ vars.a }}"}))),
    );
    (uses, task, alias(), vars(), extras).prop_map(
        |(uses, task, alias, vars, (if_, continue_on_error, retry, config))| PromotionStep {
            uses,
            task,
            alias,
            if_,
            continue_on_error,
            retry,
            vars,
            config,
        },
    )
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (vars(), prop::collection::vec(step(), 0..4)).prop_map(|(vars, steps)| TaskSpec { vars, steps })
}

fn task_map() -> impl Strategy<Value = TaskMap> {
    prop::collection::vec((kind(), select(vec!["t1", "t2", "t3"]), task_spec()), 0..6).prop_map(
        |tasks| {
            let mut map = TaskMap::new();
            for (kind, name, spec) in tasks {
                map.insert(kind, name, spec);
            }
            map
        },
    )
}

struct Input {
    stage_vars: Vec<ExpressionVariable>,
    template_vars: Vec<ExpressionVariable>,
    promotion_vars: Vec<ExpressionVariable>,
    steps: Vec<PromotionStep>,
    tasks: TaskMap,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("stage_vars", &self.stage_vars)
            .field("template_vars", &self.template_vars)
            .field("promotion_vars", &self.promotion_vars)
            .field("steps", &self.steps)
            .field("tasks", &self.tasks)
            .finish()
    }
}

impl Input {
    fn run(&self) -> Result<PromotionPlan, barge::inflate::InflateError> {
        inflate(
            &Request {
                namespace: "demo",
                stage: "dev",
                stage_vars: &self.stage_vars,
                template_vars: &self.template_vars,
                promotion_vars: &self.promotion_vars,
                steps: &self.steps,
            },
            &self.tasks,
        )
    }
}

/// Inputs with vars from `vars` at each of the Stage, template and
/// Promotion layers, and `steps` and `tasks`.
fn input_of<V: Strategy<Value = Vec<ExpressionVariable>>>(
    vars: impl Fn() -> V,
    steps: impl Strategy<Value = Vec<PromotionStep>>,
    tasks: impl Strategy<Value = TaskMap>,
) -> impl Strategy<Value = Input> {
    (vars(), vars(), vars(), steps, tasks).prop_map(
        |(stage_vars, template_vars, promotion_vars, steps, tasks)| Input {
            stage_vars,
            template_vars,
            promotion_vars,
            steps,
            tasks,
        },
    )
}

/// Anything, mostly invalid.
fn wild_input() -> impl Strategy<Value = Input> {
    input_of(vars, prop::collection::vec(step(), 0..6), task_map())
}

fn tame_vars() -> impl Strategy<Value = Vec<ExpressionVariable>> {
    prop::collection::vec(
        (
            select(vec!["a", "b", "c", "repoURL"]),
            prop_oneof![6 => select(vec!["v1", "v2"]), 1 => Just("")],
        )
            .prop_map(|(name, value)| ExpressionVariable {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
        0..3,
    )
}

fn tame_alias() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => Just(None),
        1 => select(vec!["deploy", "build", "x", "update"]).prop_map(|s| Some(s.to_owned())),
    ]
}

fn tame_inner_step() -> impl Strategy<Value = PromotionStep> {
    (
        select(vec!["argocd-update", "http"]),
        tame_alias(),
        tame_vars(),
        prop::option::weighted(0.3, Just("${{ always() }}".to_owned())),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(uses, alias, vars, if_, continue_on_error)| PromotionStep {
                uses: Some(uses.to_owned()),
                alias,
                vars,
                if_,
                continue_on_error,
                ..Default::default()
            },
        )
}

fn tame_step() -> impl Strategy<Value = PromotionStep> {
    prop_oneof![
        tame_inner_step(),
        (
            select(vec!["t1", "t2", "t3"]),
            kind(),
            tame_alias(),
            tame_vars()
        )
            .prop_map(|(name, kind, alias, vars)| PromotionStep {
                task: Some(PromotionTaskReference {
                    name: name.to_owned(),
                    kind,
                }),
                alias,
                vars,
                ..Default::default()
            }),
    ]
}

fn tame_tasks() -> impl Strategy<Value = TaskMap> {
    prop::collection::vec(
        (tame_vars(), prop::collection::vec(tame_inner_step(), 1..4)),
        6,
    )
    .prop_map(|specs| {
        let mut map = TaskMap::new();
        let names = [TaskKind::PromotionTask, TaskKind::ClusterPromotionTask]
            .into_iter()
            .flat_map(|kind| ["t1", "t2", "t3"].map(|name| (kind, name)));
        for ((kind, name), (vars, steps)) in names.zip(specs) {
            map.insert(kind, name, TaskSpec { vars, steps });
        }
        map
    })
}

/// Mostly well-formed: plain steps and references to existing tasks.
fn tame_input() -> impl Strategy<Value = Input> {
    input_of(
        tame_vars,
        prop::collection::vec(tame_step(), 1..6),
        tame_tasks(),
    )
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![wild_input(), tame_input()]
}

/// Folds vars in order into a map, as the engine evaluates them.
fn fold<'a>(map: &mut HashMap<&'a str, &'a str>, vars: &'a [ExpressionVariable]) {
    for v in vars {
        map.insert(&v.name, &v.value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Inflation never panics; a successful plan has unique aliases, only
    /// concrete steps, and the promotion-level vars in layer order.
    #[test]
    fn successful_plans_are_concrete_with_unique_aliases(input in input()) {
        let Ok(plan) = input.run() else { return Ok(()) };
        let mut seen = HashMap::new();
        for (i, step) in plan.steps.iter().enumerate() {
            let alias = step.alias.as_deref().unwrap_or("");
            prop_assert!(!alias.trim().is_empty(), "step {} has no alias", i);
            prop_assert!(seen.insert(alias.to_owned(), i).is_none(), "alias {:?} repeats", alias);
            prop_assert!(step.task.is_none());
            prop_assert!(step.uses.as_deref().is_some_and(|u| !u.trim().is_empty()));
            // At most one separator: tasks cannot nest.
            prop_assert!(alias.matches(ALIAS_SEPARATOR).count() <= 1, "{:?}", alias);
        }
        let layered: Vec<_> = input.stage_vars.iter()
            .chain(&input.template_vars)
            .chain(&input.promotion_vars)
            .cloned()
            .collect();
        prop_assert_eq!(&plan.vars, &layered);
        prop_assert!(plan.steps.len() >= input.steps.len());
    }

    /// Inflation is a function: the same input gives the same result.
    #[test]
    fn inflation_is_deterministic(input in input()) {
        prop_assert_eq!(input.run(), input.run());
    }
}

/// One variable `x` set (or not) at each of the six layers.
#[derive(Debug, Clone)]
struct Layers {
    stage: Option<String>,
    template: Option<String>,
    promotion: Option<String>,
    task_default: Option<String>,
    reference: Option<String>,
    inner: Option<String>,
}

fn layer_value(tag: &'static str) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => Just(Some(tag.to_owned())),
        1 => Just(Some(String::new())),
    ]
}

fn layers() -> impl Strategy<Value = Layers> {
    (
        layer_value("stage"),
        layer_value("template"),
        layer_value("promotion"),
        layer_value("task"),
        layer_value("reference"),
        layer_value("inner"),
    )
        .prop_map(
            |(stage, template, promotion, task_default, reference, inner)| Layers {
                stage,
                template,
                promotion,
                task_default,
                reference,
                inner,
            },
        )
}

fn x(value: &Option<String>) -> Vec<ExpressionVariable> {
    value
        .iter()
        .map(|value| ExpressionVariable {
            name: "x".into(),
            value: value.clone(),
        })
        .collect()
}

/// Kargo's rule, stated independently of the implementation.
fn expected(l: &Layers) -> Result<Option<String>, ()> {
    let non_empty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let promotion_set = non_empty(&l.stage) || non_empty(&l.template) || non_empty(&l.promotion);
    if l.task_default.as_deref() == Some("") && !promotion_set && !non_empty(&l.reference) {
        return Err(());
    }
    // Highest precedence first.
    let task_default = if promotion_set {
        None
    } else {
        l.task_default.clone().filter(|v| !v.is_empty())
    };
    Ok([
        &l.inner,
        &l.reference,
        &task_default,
        &l.promotion,
        &l.template,
        &l.stage,
    ]
    .into_iter()
    .find_map(|v| v.clone()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// A var defined at several layers resolves, when the plan's vars and then
    /// the step's vars are folded in order, to the value of the
    /// highest-precedence layer: inner step > task reference > task default
    /// (unless a promotion-level var is non-empty) > Promotion > template >
    /// Stage. A required task var nobody supplies is an error.
    #[test]
    fn var_precedence(l in layers(), other in vars()) {
        let mut tasks = TaskMap::new();
        let inner = PromotionStep {
            uses: Some("http".into()),
            vars: x(&l.inner),
            ..Default::default()
        };
        let mut task_vars = x(&l.task_default);
        // Unrelated, valid vars must not disturb `x`.
        task_vars.extend(other.iter().filter(|v| v.name != "x" && !v.value.is_empty() && barge::inflate::is_valid_var_name(&v.name)).cloned());
        tasks.insert(TaskKind::PromotionTask, "t", TaskSpec { vars: task_vars, steps: vec![inner, PromotionStep { uses: Some("http".into()), ..Default::default() }] });
        let steps = vec![PromotionStep {
            task: Some(PromotionTaskReference { name: "t".into(), kind: TaskKind::PromotionTask }),
            vars: x(&l.reference),
            ..Default::default()
        }];
        let (stage, template, promotion) = (x(&l.stage), x(&l.template), x(&l.promotion));
        let result = inflate(
            &Request { stage_vars: &stage, template_vars: &template, promotion_vars: &promotion, steps: &steps, ..Default::default() },
            &tasks,
        );
        match (expected(&l), result) {
            (Err(()), Err(err)) => {
                let is_missing = matches!(err.reason(), Reason::MissingVar { name, .. } if name == "x");
                prop_assert!(is_missing, "{}", err);
            }
            (Ok(want), Ok(plan)) => {
                // The inner step with its own vars, and the one without.
                let without_inner = Layers { inner: None, ..l.clone() };
                let want_plain = expected(&without_inner).ok().flatten();
                for (step, want) in plan.steps.iter().zip([want, want_plain]) {
                    let mut map = HashMap::new();
                    fold(&mut map, &plan.vars);
                    fold(&mut map, &step.vars);
                    prop_assert_eq!(map.get("x").map(|v| v.to_string()), want, "{:?}", step.alias);
                }
            }
            (want, got) => prop_assert!(false, "expected {:?}, got {:?}", want, got),
        }
    }
}

/// Guards the generators: enough generated inputs inflate successfully, and
/// some of those expand tasks, so the properties above are not vacuous.
#[test]
fn generators_reach_successful_task_expansion() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = input();
    let (mut ok, mut with_tasks) = (0, 0);
    for _ in 0..4000 {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        if let Ok(plan) = tree.current().run() {
            ok += 1;
            if plan
                .steps
                .iter()
                .any(|s| s.alias.as_deref().is_some_and(|a| a.contains("::")))
            {
                with_tasks += 1;
            }
        }
    }
    eprintln!("{ok} of 4000 inflated, {with_tasks} with task steps");
    assert!(ok >= 1000, "only {ok} of 4000 generated inputs inflate");
    assert!(
        with_tasks >= 50,
        "only {with_tasks} successful plans expand a task"
    );
}
