//! Fuzzes task inflation: arbitrary bytes become a template, promotion-level
//! vars and a set of tasks, either structurally (via `arbitrary`, with names
//! drawn mostly from a small pool so that task references resolve and aliases
//! collide) or, when the first byte is odd, by parsing the rest as JSON.
//! Inflation must never panic, and a plan it returns must be concrete with
//! unique aliases.

#![no_main]

use std::collections::HashSet;

use arbitrary::{Arbitrary, Unstructured};
use barge::api::{
    ExpressionVariable, PromotionStep, PromotionStepRetry, PromotionTaskReference, TaskKind,
};
use barge::inflate::{ALIAS_SEPARATOR, PromotionPlan, Request, TaskMap, TaskSpec, inflate};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

const POOL: &[&str] = &[
    "", " ", "t1", "t2", "deploy", "update", "x", "a", "repoURL", "step-1", "task-2", "a::b",
    "1x", "é", "${{ vars.a }}",
];

/// A string, usually from `POOL`.
#[derive(Debug)]
struct Name(String);

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        if u.ratio(7, 8)? {
            Ok(Name((*u.choose(POOL)?).to_owned()))
        } else {
            Ok(Name(String::arbitrary(u)?))
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Var {
    name: Name,
    value: Name,
}

#[derive(Arbitrary, Debug)]
struct Step {
    uses: Option<Name>,
    task: Option<(bool, Name)>,
    alias: Option<Name>,
    if_: Option<Name>,
    continue_on_error: bool,
    retry: Option<u32>,
    vars: Vec<Var>,
    config: Option<Name>,
}

#[derive(Arbitrary, Debug)]
struct Task {
    cluster: bool,
    name: Name,
    vars: Vec<Var>,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Structured {
    stage_vars: Vec<Var>,
    template_vars: Vec<Var>,
    promotion_vars: Vec<Var>,
    steps: Vec<Step>,
    tasks: Vec<Task>,
}

/// The same input as JSON with Kargo's field names.
#[derive(Deserialize, Debug, Default)]
#[serde(default, rename_all = "camelCase")]
struct Json {
    stage_vars: Vec<ExpressionVariable>,
    template_vars: Vec<ExpressionVariable>,
    promotion_vars: Vec<ExpressionVariable>,
    steps: Vec<PromotionStep>,
    tasks: Vec<JsonTask>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct JsonTask {
    kind: TaskKind,
    name: String,
    spec: TaskSpec,
}

fn kind(cluster: bool) -> TaskKind {
    if cluster {
        TaskKind::ClusterPromotionTask
    } else {
        TaskKind::PromotionTask
    }
}

fn vars(vars: Vec<Var>) -> Vec<ExpressionVariable> {
    vars.into_iter()
        .map(|v| ExpressionVariable {
            name: v.name.0,
            value: v.value.0,
        })
        .collect()
}

fn step(s: Step) -> PromotionStep {
    PromotionStep {
        uses: s.uses.map(|n| n.0),
        task: s.task.map(|(cluster, name)| PromotionTaskReference {
            name: name.0,
            kind: kind(cluster),
        }),
        alias: s.alias.map(|n| n.0),
        if_: s.if_.map(|n| n.0),
        continue_on_error: s.continue_on_error,
        retry: s.retry.map(|error_threshold| PromotionStepRetry {
            timeout: None,
            error_threshold,
        }),
        vars: vars(s.vars),
        config: s.config.map(|n| serde_json::json!({ "k": n.0 })),
    }
}

fn into_json(s: Structured) -> Json {
    Json {
        stage_vars: vars(s.stage_vars),
        template_vars: vars(s.template_vars),
        promotion_vars: vars(s.promotion_vars),
        steps: s.steps.into_iter().map(step).collect(),
        tasks: s
            .tasks
            .into_iter()
            .map(|t| JsonTask {
                kind: kind(t.cluster),
                name: t.name.0,
                spec: TaskSpec {
                    vars: vars(t.vars),
                    steps: t.steps.into_iter().map(step).collect(),
                },
            })
            .collect(),
    }
}

fn check(plan: &PromotionPlan, input: &Json) {
    let mut seen = HashSet::new();
    for step in &plan.steps {
        let alias = step.alias.as_deref().unwrap_or("");
        assert!(!alias.trim().is_empty(), "a step without alias: {plan:?}");
        assert!(seen.insert(alias), "duplicate alias {alias:?}: {plan:?}");
        assert!(alias.matches(ALIAS_SEPARATOR).count() <= 1, "{alias:?}");
        assert!(step.task.is_none(), "{plan:?}");
        assert!(step.uses.as_deref().is_some_and(|u| !u.trim().is_empty()), "{plan:?}");
    }
    assert!(plan.steps.len() >= input.steps.len());
    assert_eq!(
        plan.vars.len(),
        input.stage_vars.len() + input.template_vars.len() + input.promotion_vars.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode % 2 == 1 {
        match serde_json::from_slice::<Json>(rest) {
            Ok(json) => json,
            Err(_) => return,
        }
    } else {
        match Structured::arbitrary(&mut Unstructured::new(rest)) {
            Ok(s) => into_json(s),
            Err(_) => return,
        }
    };
    let mut tasks = TaskMap::new();
    for task in &input.tasks {
        tasks.insert(task.kind, task.name.clone(), task.spec.clone());
    }
    let request = Request {
        namespace: "demo",
        stage: "dev",
        stage_vars: &input.stage_vars,
        template_vars: &input.template_vars,
        promotion_vars: &input.promotion_vars,
        steps: &input.steps,
    };
    match inflate(&request, &tasks) {
        Ok(plan) => check(&plan, &input),
        Err(err) => {
            // Every error renders, and names a field or says what is missing.
            assert!(!err.to_string().is_empty());
        }
    }
});
