//! The errors of inflation. Every error says where it happened (the step, by
//! 1-based index and alias, and for a task's step also the task and the inner
//! step) and which field is wrong, so that a Failed Promotion's message points
//! at the line to fix.

use std::fmt;

use crate::api::TaskKind;

/// Inflation failed: [`location`](Self::location), [`field`](Self::field)
/// and [`reason`](Self::reason) together say what to fix.
///
/// Displayed as `<location>: <field>: <reason>`, for example
/// `steps[2] (alias "deploy"): task.name: ClusterPromotionTask "argocd-sync" not found`.
/// Indexes are 1-based, like the default aliases `step-N` and `task-N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InflateError(Box<Inner>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    location: Location,
    field: String,
    reason: Reason,
}

impl InflateError {
    pub(crate) fn new(location: Location, field: impl Into<String>, reason: Reason) -> Self {
        Self(Box::new(Inner {
            location,
            field: field.into(),
            reason,
        }))
    }

    /// The step (or task, or step of a task) the error is about.
    pub fn location(&self) -> &Location {
        &self.0.location
    }

    /// The offending field, relative to the location (for example `as`,
    /// `task.name`, `vars[2].name`, `spec.vars[1].name`). Empty when the
    /// error is about the location as a whole.
    pub fn field(&self) -> &str {
        &self.0.field
    }

    /// What is wrong.
    pub fn reason(&self) -> &Reason {
        &self.0.reason
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self.location().to_string();
        if !location.is_empty() {
            write!(f, "{location}: ")?;
        }
        if !self.field().is_empty() {
            write!(f, "{}: ", self.field())?;
        }
        write!(f, "{}", self.reason())
    }
}

/// Where an [`InflateError`] happened. Step indexes are 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The promotion as a whole: its promotion-level vars, or the absence of
    /// steps. Displays as nothing; the field says which list is meant.
    Promotion,
    /// A step of the Stage's promotion template (or of the Promotion's own
    /// `spec.steps`).
    Step {
        /// 1-based position in the template.
        index: usize,
        /// The step's alias (`as`, or the default `step-N` / `task-N`).
        alias: String,
    },
    /// The task referenced by a template step, for problems of the task
    /// itself (its vars, its lack of steps).
    Task {
        /// 1-based position of the referencing step in the template.
        index: usize,
        /// The referencing step's alias.
        alias: String,
        /// The kind of the referenced task.
        kind: TaskKind,
        /// The name of the referenced task.
        name: String,
    },
    /// A step of a task referenced by a template step.
    TaskStep {
        /// 1-based position of the referencing step in the template.
        index: usize,
        /// The referencing step's alias.
        alias: String,
        /// The kind of the referenced task.
        kind: TaskKind,
        /// The name of the referenced task.
        name: String,
        /// 1-based position of the step within the task.
        task_index: usize,
        /// The inflated alias of the step: `<alias>::<inner alias>`.
        task_alias: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Promotion => Ok(()),
            Location::Step { index, alias } => write!(f, "steps[{index}] (alias {alias:?})"),
            Location::Task {
                index,
                alias,
                kind,
                name,
            } => write!(f, "steps[{index}] (alias {alias:?}): {kind} {name:?}"),
            Location::TaskStep {
                index,
                alias,
                kind,
                name,
                task_index,
                task_alias,
            } => write!(
                f,
                "steps[{index}] (alias {alias:?}): {kind} {name:?}: steps[{task_index}] (alias {task_alias:?})"
            ),
        }
    }
}

/// What is wrong, without the location.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// Neither the Promotion nor the Stage's promotion template has steps.
    #[error("Stage {stage:?} in namespace {namespace:?} defines no promotion steps")]
    NoSteps {
        /// The Promotion's (and Stage's) namespace.
        namespace: String,
        /// The Stage.
        stage: String,
    },
    /// The referenced PromotionTask or ClusterPromotionTask does not exist.
    #[error("{kind} {name:?} not found")]
    TaskNotFound {
        /// The kind that was looked up.
        kind: TaskKind,
        /// The name that was looked up.
        name: String,
    },
    /// A required field or list is empty (a task's name, a task's steps).
    #[error("must not be empty")]
    Empty,
    /// A template step sets neither `uses` nor `task`.
    #[error("a step must set exactly one of uses and task, but this one sets neither")]
    NeitherUsesNorTask,
    /// A field that a step referencing a task may not set (`uses`, `if`,
    /// `config`, `continueOnError`, `retry`); `field` names it.
    #[error("must not be set on a step that references a task")]
    NotAllowedOnTaskReference,
    /// A step of a task references another task, or sets no `uses`.
    #[error("a step of a task must set uses and must not reference another task")]
    NestedTask,
    /// A task variable without a default was not given a non-empty value by
    /// the Stage, the template, the Promotion or the referencing step.
    #[error("missing value for variable {name:?} required by {kind} {task:?}")]
    MissingVar {
        /// The variable.
        name: String,
        /// The kind of the task that declares it.
        kind: TaskKind,
        /// The name of the task that declares it.
        task: String,
    },
    /// Two steps of the same list (template, or one task) have the same alias.
    #[error("step alias {alias:?} duplicates that of steps[{first}]")]
    DuplicateAlias {
        /// The alias.
        alias: String,
        /// 1-based index of the first step with that alias, in the same list.
        first: usize,
    },
    /// An explicit alias matches `^(step|task)-\d+$`.
    #[error(
        "step alias {alias:?} is reserved: aliases matching ^(step|task)-\\d+$ are assigned automatically"
    )]
    ReservedAlias {
        /// The alias.
        alias: String,
    },
    /// An explicit alias contains `::`, the separator between a task's alias
    /// and the aliases of its steps.
    #[error(
        "step alias {alias:?} must not contain \"::\", which separates a task's alias from the aliases of its steps"
    )]
    AliasSeparator {
        /// The alias.
        alias: String,
    },
    /// The plan would have more steps than a Promotion may run, once tasks
    /// are expanded: a step runs through every earlier step's outputs, so
    /// a plan of ten thousand would keep the controller busy for minutes.
    #[error(
        "the plan would have {steps} steps once tasks are expanded, more than the {max} a Promotion may run"
    )]
    TooManySteps {
        /// The steps planned so far, this one's included.
        steps: usize,
        /// The most a plan may have ([`crate::inflate::MAX_PLAN_STEPS`]).
        max: usize,
    },
    /// A free-form field nests deeper than the controller reads.
    #[error("nests deeper than {max} levels of arrays and objects, the most a free-form value may")]
    TooDeep {
        /// The most levels a free-form value may nest ([`crate::api::free_form::MAX_DEPTH`]).
        max: usize,
    },
    /// A variable name does not match `^[a-zA-Z_]\w*$`.
    #[error("invalid variable name {name:?}: must match ^[a-zA-Z_]\\w*$")]
    InvalidVarName {
        /// The name.
        name: String,
    },
}
