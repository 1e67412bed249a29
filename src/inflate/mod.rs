//! Task expansion ("inflation"): turning a Stage's promotion template (or a
//! Promotion's own steps) into the frozen plan of concrete steps that a
//! Promotion runs.
//!
//! Inflation is a pure function ([`inflate`]): no API server, no async. Tasks
//! are looked up through a [`TaskResolver`]; the controller implements it over
//! its cache of PromotionTasks and ClusterPromotionTasks, tests and
//! `barge expand` use a [`TaskMap`].
//!
//! The rules are Kargo's (`pkg/api/promotion.go`, `InflateSteps`):
//!
//! - A step with `uses` keeps everything and gets the alias `as`, or `step-N`
//!   (N is its 1-based position in the template).
//! - A step with `task` is replaced by the task's steps. Its alias is `as` or
//!   `task-N`; each inner step gets `<taskAlias>::<innerAlias>`, where
//!   `innerAlias` is the inner step's `as` or `step-M` (M is 1-based within
//!   the task). Inner steps keep their `if`, `continueOnError`, `retry` and
//!   `config`.
//! - Each inner step's `vars` are, in order: the task's var defaults, except
//!   those whose name has a non-empty promotion-level var; then the
//!   referencing step's `vars`; then the inner step's own `vars`. Vars are
//!   evaluated in order into one map, after the promotion-level vars, so later
//!   entries win: Stage < template < Promotion < task default < task reference
//!   < inner step.
//! - A task var with an empty value is required: the promotion-level vars or
//!   the referencing step must give it a non-empty value.
//!
//! Barge additionally rejects, at inflation time and with the step and field
//! named: explicit aliases containing `::` (they would be mistaken for a
//! task's steps), tasks without steps, and invalid var names anywhere. The
//! resulting plan's aliases are always unique.

mod error;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::api::{ExpressionVariable, PromotionStep, TaskKind};

pub use error::{InflateError, Location, Reason};

/// Separates a task step's alias from the alias of the step inside the task:
/// `<taskAlias>::<innerAlias>`.
pub const ALIAS_SEPARATOR: &str = "::";

/// The most steps a plan may have once tasks are expanded (a list of steps
/// holds at most 100 at admission, so a template of task references could
/// reach 10,000).
pub const MAX_PLAN_STEPS: usize = 1000;

/// What inflation needs from a PromotionTask or ClusterPromotionTask: its
/// `spec` (`vars` and `steps`). A `ClusterPromotionTaskSpec` converts with
/// `into()`.
pub use crate::api::PromotionTaskSpec as TaskSpec;

/// The frozen plan of a Promotion (`status.plan`): the promotion-level vars
/// (Stage ++ template ++ Promotion) and the concrete steps, each with `uses`
/// and `as` set and no `task`.
pub use crate::api::PromotionPlan;

/// Looks up tasks by kind and name. A PromotionTask is looked up in the
/// namespace of the Promotion being inflated; the resolver is expected to be
/// bound to it.
pub trait TaskResolver {
    /// The task's spec, or `None` if there is no such task.
    fn resolve(&self, kind: TaskKind, name: &str) -> Option<TaskSpec>;
}

impl<F> TaskResolver for F
where
    F: Fn(TaskKind, &str) -> Option<TaskSpec>,
{
    fn resolve(&self, kind: TaskKind, name: &str) -> Option<TaskSpec> {
        self(kind, name)
    }
}

/// An in-memory [`TaskResolver`]: PromotionTasks (of one namespace) and
/// ClusterPromotionTasks by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskMap {
    promotion_tasks: BTreeMap<String, TaskSpec>,
    cluster_promotion_tasks: BTreeMap<String, TaskSpec>,
}

impl TaskMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces, returning the old one) a task. Takes a
    /// `PromotionTaskSpec` or a `ClusterPromotionTaskSpec`.
    pub fn insert(
        &mut self,
        kind: TaskKind,
        name: impl Into<String>,
        spec: impl Into<TaskSpec>,
    ) -> Option<TaskSpec> {
        self.by_kind_mut(kind).insert(name.into(), spec.into())
    }

    fn by_kind_mut(&mut self, kind: TaskKind) -> &mut BTreeMap<String, TaskSpec> {
        match kind {
            TaskKind::PromotionTask => &mut self.promotion_tasks,
            TaskKind::ClusterPromotionTask => &mut self.cluster_promotion_tasks,
        }
    }
}

impl TaskResolver for TaskMap {
    fn resolve(&self, kind: TaskKind, name: &str) -> Option<TaskSpec> {
        let by_kind = match kind {
            TaskKind::PromotionTask => &self.promotion_tasks,
            TaskKind::ClusterPromotionTask => &self.cluster_promotion_tasks,
        };
        by_kind.get(name).cloned()
    }
}

/// The input of [`inflate`]. `namespace` and `stage` are used only in error
/// messages. The three var lists are layered in the order Stage, template,
/// Promotion; pass an empty template list when the Promotion brings its own
/// steps and the template's vars should not apply.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// The namespace of the Promotion and Stage (Kargo's project).
    pub namespace: &'a str,
    /// The Stage's name.
    pub stage: &'a str,
    /// Stage `spec.vars`.
    pub stage_vars: &'a [ExpressionVariable],
    /// Stage `spec.promotionTemplate.spec.vars`.
    pub template_vars: &'a [ExpressionVariable],
    /// Promotion `spec.vars`.
    pub promotion_vars: &'a [ExpressionVariable],
    /// The steps to inflate: Promotion `spec.steps` if set, otherwise Stage
    /// `spec.promotionTemplate.spec.steps`.
    pub steps: &'a [PromotionStep],
}

impl<'a> Request<'a> {
    /// What a Promotion of Stage `stage` (named `stage_name`) asks to run:
    /// its own steps if it has any, else the Stage's template with the
    /// template's vars. `promotion` is `None` for a preview without one.
    pub fn for_promotion(
        namespace: &'a str,
        stage_name: &'a str,
        stage: &'a crate::api::StageSpec,
        promotion: Option<&'a crate::api::PromotionSpec>,
    ) -> Self {
        let own = promotion.filter(|p| !p.steps.is_empty());
        let template = stage.promotion_template.as_ref().map(|t| &t.spec);
        let (steps, template_vars) = match (own, template) {
            (Some(p), _) => (&p.steps[..], &[][..]),
            (None, Some(t)) => (&t.steps[..], &t.vars[..]),
            (None, None) => (&[][..], &[][..]),
        };
        Self {
            namespace,
            stage: stage_name,
            stage_vars: &stage.vars,
            template_vars,
            promotion_vars: promotion.map(|p| &p.vars[..]).unwrap_or_default(),
            steps,
        }
    }
}

/// Inflates `request` into a frozen plan, expanding task references through
/// `tasks`. Returns the first problem found, naming the step and field.
pub fn inflate<R>(request: &Request<'_>, tasks: &R) -> Result<PromotionPlan, InflateError>
where
    R: TaskResolver + ?Sized,
{
    let vars = promotion_vars(request)?;
    if request.steps.is_empty() {
        return Err(InflateError::new(
            Location::Promotion,
            "",
            Reason::NoSteps {
                namespace: request.namespace.to_owned(),
                stage: request.stage.to_owned(),
            },
        ));
    }
    // Names that the promotion-level vars set to a non-empty value: these beat
    // task defaults and satisfy required task vars.
    let promotion_set: HashSet<&str> = vars
        .iter()
        .filter(|v| !v.value.is_empty())
        .map(|v| v.name.as_str())
        .collect();

    let mut steps = Vec::with_capacity(request.steps.len());
    let mut explicit = HashMap::new();
    let mut planned = HashMap::new();
    for (i, step) in request.steps.iter().enumerate() {
        let index = i + 1;
        let alias = alias_of(step, index);
        let location = Location::Step {
            index,
            alias: alias.clone(),
        };
        check_explicit_alias(step, index, &mut explicit, &location)?;
        let first = steps.len();
        match (non_blank(&step.uses), &step.task) {
            (Some(_), Some(_)) => {
                return Err(InflateError::new(
                    location,
                    "uses",
                    Reason::NotAllowedOnTaskReference,
                ));
            }
            (None, None) => {
                return Err(InflateError::new(
                    location,
                    "uses",
                    Reason::NeitherUsesNorTask,
                ));
            }
            (Some(_), None) => {
                check_var_names(&step.vars, "vars", &location)?;
                check_config(step, &location)?;
                let mut step = step.clone();
                step.alias = Some(alias);
                steps.push(step);
            }
            (None, Some(_)) => {
                expand_task(step, index, alias, &promotion_set, tasks, &mut steps)?;
            }
        }
        // Guaranteed by the alias rules above; checked so that a plan with
        // duplicate aliases can never be produced.
        for planned_step in &steps[first..] {
            let alias = planned_step.alias.clone().unwrap_or_default();
            if let Some(&earlier) = planned.get(&alias) {
                return Err(InflateError::new(
                    location.clone(),
                    "as",
                    Reason::DuplicateAlias {
                        alias,
                        first: earlier,
                    },
                ));
            }
            planned.insert(alias, index);
        }
        if steps.len() > MAX_PLAN_STEPS {
            return Err(InflateError::new(
                location,
                "",
                Reason::TooManySteps {
                    steps: steps.len(),
                    max: MAX_PLAN_STEPS,
                },
            ));
        }
    }
    Ok(PromotionPlan::new(vars, steps))
}

/// Whether `alias` matches `^(step|task)-\d+$`: such aliases are assigned
/// automatically and may not be chosen with `as`.
pub fn is_reserved_alias(alias: &str) -> bool {
    let rest = alias
        .strip_prefix("step-")
        .or_else(|| alias.strip_prefix("task-"));
    matches!(rest, Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a valid variable name: `^[a-zA-Z_]\w*$` (ASCII).
pub fn is_valid_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() || first == b'_' => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        _ => false,
    }
}

/// The alias of the task an inflated step came from (`deploy` for
/// `deploy::update`), or `None` for a step that did not come from a task. This
/// scopes `task.outputs` and `status()`.
pub fn alias_namespace(alias: &str) -> Option<&str> {
    alias
        .split_once(ALIAS_SEPARATOR)
        .map(|(namespace, _)| namespace)
}

/// Stage vars ++ template vars ++ Promotion vars, with every name checked.
fn promotion_vars(request: &Request<'_>) -> Result<Vec<ExpressionVariable>, InflateError> {
    let layers = [
        ("Stage spec.vars", request.stage_vars),
        (
            "Stage spec.promotionTemplate.spec.vars",
            request.template_vars,
        ),
        ("Promotion spec.vars", request.promotion_vars),
    ];
    let mut vars = Vec::with_capacity(layers.iter().map(|(_, list)| list.len()).sum());
    for (layer, list) in layers {
        check_var_names(list, layer, &Location::Promotion)?;
        vars.extend_from_slice(list);
    }
    Ok(vars)
}

/// Expands the task referenced by `step` (the template's `index`th step, with
/// alias `alias`) into `out`.
fn expand_task<R>(
    step: &PromotionStep,
    index: usize,
    alias: String,
    promotion_set: &HashSet<&str>,
    tasks: &R,
    out: &mut Vec<PromotionStep>,
) -> Result<(), InflateError>
where
    R: TaskResolver + ?Sized,
{
    let location = Location::Step {
        index,
        alias: alias.clone(),
    };
    let reference = task_reference(step, &location)?;
    check_var_names(&step.vars, "vars", &location)?;
    let kind = reference.kind;
    let name = reference.name.as_str();
    let Some(task) = tasks.resolve(kind, name) else {
        return Err(InflateError::new(
            location,
            "task.name",
            Reason::TaskNotFound {
                kind,
                name: name.to_owned(),
            },
        ));
    };
    let task_location = Location::Task {
        index,
        alias: alias.clone(),
        kind,
        name: name.to_owned(),
    };
    if task.steps.is_empty() {
        return Err(InflateError::new(
            task_location,
            "spec.steps",
            Reason::Empty,
        ));
    }
    check_var_names(&task.vars, "spec.vars", &task_location)?;

    let vars = task_vars(&task.vars, &step.vars, promotion_set, kind, name, &location)?;

    let mut explicit = HashMap::new();
    out.reserve(task.steps.len());
    for (j, inner) in task.steps.into_iter().enumerate() {
        let task_index = j + 1;
        let task_alias = format!("{alias}{ALIAS_SEPARATOR}{}", alias_of(&inner, task_index));
        let inner_location = Location::TaskStep {
            index,
            alias: alias.clone(),
            kind,
            name: name.to_owned(),
            task_index,
            task_alias: task_alias.clone(),
        };
        check_explicit_alias(&inner, task_index, &mut explicit, &inner_location)?;
        check_task_step(&inner, inner_location)?;
        let mut inner = inner;
        let own = std::mem::take(&mut inner.vars);
        inner.vars = Vec::with_capacity(vars.len() + own.len());
        inner.vars.extend_from_slice(&vars);
        inner.vars.extend(own);
        inner.alias = Some(task_alias);
        out.push(inner);
    }
    Ok(())
}

/// A task's own step must run a step kind: a task may not reference a task.
fn check_task_step(inner: &PromotionStep, location: Location) -> Result<(), InflateError> {
    if inner.task.is_some() {
        return Err(InflateError::new(location, "task", Reason::NestedTask));
    }
    if non_blank(&inner.uses).is_none() {
        return Err(InflateError::new(location, "uses", Reason::NestedTask));
    }
    check_config(inner, &location)?;
    check_var_names(&inner.vars, "vars", &location)
}

/// A config nested deeper than a free-form value may was cut when read
/// (see [`crate::api::free_form`]): running the step on what is left would
/// act on part of what the user wrote.
fn check_config(step: &PromotionStep, location: &Location) -> Result<(), InflateError> {
    match &step.config {
        Some(config) if crate::api::free_form::too_deep(config) => Err(InflateError::new(
            location.clone(),
            "config",
            Reason::TooDeep {
                max: crate::api::free_form::MAX_DEPTH,
            },
        )),
        _ => Ok(()),
    }
}

/// The task a step references, refusing the fields a reference may not set.
fn task_reference<'s>(
    step: &'s PromotionStep,
    location: &Location,
) -> Result<&'s crate::api::PromotionTaskReference, InflateError> {
    let location = location.clone();
    let Some(reference) = &step.task else {
        return Err(InflateError::new(
            location,
            "uses",
            Reason::NeitherUsesNorTask,
        ));
    };
    if non_blank(&step.if_).is_some() {
        return Err(InflateError::new(
            location,
            "if",
            Reason::NotAllowedOnTaskReference,
        ));
    }
    if step.config.is_some() {
        return Err(InflateError::new(
            location,
            "config",
            Reason::NotAllowedOnTaskReference,
        ));
    }
    if step.continue_on_error {
        return Err(InflateError::new(
            location,
            "continueOnError",
            Reason::NotAllowedOnTaskReference,
        ));
    }
    if step.retry.is_some() {
        return Err(InflateError::new(
            location,
            "retry",
            Reason::NotAllowedOnTaskReference,
        ));
    }
    if reference.name.trim().is_empty() {
        return Err(InflateError::new(location, "task.name", Reason::Empty));
    }
    Ok(reference)
}

/// Kargo's promotionTaskVarsToStepVars: the task's defaults (those the
/// Promotion does not set itself), then the reference's own vars. A task
/// var with no default must be given by the reference.
fn task_vars(
    task_vars: &[ExpressionVariable],
    reference_vars: &[ExpressionVariable],
    promotion_set: &HashSet<&str>,
    kind: TaskKind,
    name: &str,
    location: &Location,
) -> Result<Vec<ExpressionVariable>, InflateError> {
    let reference_set: HashSet<&str> = reference_vars
        .iter()
        .filter(|v| !v.value.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    let mut vars = Vec::with_capacity(task_vars.len() + reference_vars.len());
    for var in task_vars {
        if promotion_set.contains(var.name.as_str()) {
            continue;
        }
        if !var.value.is_empty() {
            vars.push(var.clone());
        } else if !reference_set.contains(var.name.as_str()) {
            return Err(InflateError::new(
                location.clone(),
                "vars",
                Reason::MissingVar {
                    name: var.name.clone(),
                    kind,
                    task: name.to_owned(),
                },
            ));
        }
    }
    vars.extend_from_slice(reference_vars);
    Ok(vars)
}

/// The step's alias: its trimmed `as` when not blank, otherwise `task-N` for a
/// task reference and `step-N` for anything else.
fn alias_of(step: &PromotionStep, index: usize) -> String {
    match non_blank(&step.alias) {
        Some(alias) => alias.to_owned(),
        None if step.task.is_some() => format!("task-{index}"),
        None => format!("step-{index}"),
    }
}

/// Rejects a reserved, separator-containing or duplicate explicit alias;
/// `seen` maps the explicit aliases of the same list to their 1-based index.
fn check_explicit_alias(
    step: &PromotionStep,
    index: usize,
    seen: &mut HashMap<String, usize>,
    location: &Location,
) -> Result<(), InflateError> {
    let Some(alias) = non_blank(&step.alias) else {
        return Ok(());
    };
    let reason = if is_reserved_alias(alias) {
        Reason::ReservedAlias {
            alias: alias.to_owned(),
        }
    } else if alias.contains(ALIAS_SEPARATOR) {
        Reason::AliasSeparator {
            alias: alias.to_owned(),
        }
    } else if let Some(&first) = seen.get(alias) {
        Reason::DuplicateAlias {
            alias: alias.to_owned(),
            first,
        }
    } else {
        seen.insert(alias.to_owned(), index);
        return Ok(());
    };
    Err(InflateError::new(location.clone(), "as", reason))
}

/// Rejects the first var whose name is not `^[a-zA-Z_]\w*$`; `list` names the
/// field holding `vars` (1-based indexes).
fn check_var_names(
    vars: &[ExpressionVariable],
    list: &str,
    location: &Location,
) -> Result<(), InflateError> {
    match vars.iter().position(|v| !is_valid_var_name(&v.name)) {
        None => Ok(()),
        Some(i) => Err(InflateError::new(
            location.clone(),
            format!("{list}[{}].name", i + 1),
            Reason::InvalidVarName {
                name: vars[i].name.clone(),
            },
        )),
    }
}

/// `value` trimmed, if set and not blank.
fn non_blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
