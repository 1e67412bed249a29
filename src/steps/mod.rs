//! Step runners: one file per step kind, behind one trait, found by kind in
//! a registry. A runner gets its config already evaluated and reports a
//! result plus, while it waits, exactly what it waits on.

pub mod applications;
pub mod argocd_update;
pub mod argocd_wait;
pub mod compose_output;
pub mod copy;
pub mod delete;
mod document;
pub mod executor;
pub mod fail;
pub mod git_clear;
pub mod git_clone;
pub mod git_commit;
pub mod git_merge_pr;
pub mod git_open_pr;
pub mod git_push;
pub mod git_tag;
pub mod git_wait_for_pr;
pub mod helm_template;
pub mod helm_update_chart;
pub mod helm_update_image;
pub mod http;
mod json_edit;
pub mod json_parse;
pub mod json_update;
pub mod kustomize_build;
pub mod kustomize_set_image;
mod manifests;
mod pull_request;
pub mod repository;
pub mod set_metadata;
#[cfg(test)]
mod tests;
mod text_file;
pub mod tools;
pub mod workdir;
mod yaml_edit;
pub mod yaml_parse;
pub mod yaml_update;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::reflector::Store;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::argocd::{AppScope, Application};
use crate::await_index::{AwaitTarget, SharedAwaitIndex};
use crate::promotion::engine::{StepDefaults, StepError, StepResult};

/// What the controller shares with every step run.
#[derive(Clone)]
pub struct Services {
    pub client: Client,
    /// The Application cache; steps read it instead of the API server.
    pub applications: Store<Application>,
    /// Where Applications are looked up when a step names none.
    pub argocd_namespace: String,
    /// Which Promotions an object's change wakes.
    pub waits: SharedAwaitIndex,
    /// Where the Application cache has Applications from.
    pub app_scope: AppScope,
    /// Where each Promotion's files live.
    pub work_dirs: workdir::WorkDirs,
    /// The programs the rendering steps run.
    pub tools: tools::Tools,
    /// The webhook receivers this replica serves: whether pull-request
    /// events reach a namespace decides how often its waits poll.
    pub receivers: crate::webhook::Receivers,
}

/// Who is promoting what, where.
pub struct Subject<'a> {
    /// The Promotion's namespace (Kargo's project).
    pub namespace: &'a str,
    pub promotion: &'a str,
    /// The Promotion's UID: what tells it from an earlier one of its name.
    pub promotion_uid: &'a str,
    pub stage: &'a str,
    /// Who asked for the Promotion, if a person did (and that can be believed).
    pub actor: Option<&'a str>,
    /// The Freight the Stage will hold: the one promoted, and the current
    /// Freight of the Stage's other origins.
    pub freight: &'a [crate::api::FreightReference],
}

/// Everything one run of one step may look at.
pub struct StepContext<'a> {
    /// The Promotion the step runs for.
    pub subject: &'a Subject<'a>,
    pub alias: &'a str,
    /// The step's config with every expression evaluated.
    pub config: &'a Value,
    /// What this step wrote on its previous run, if it ran before.
    pub previous_output: Option<&'a Value>,
    /// Every earlier step's output, by alias.
    pub outputs: &'a serde_json::Map<String, Value>,
    pub services: &'a Services,
}

impl StepContext<'_> {
    /// The Promotion's work directory, created on first use.
    pub fn work_dir(&self) -> Result<std::path::PathBuf, StepError> {
        let dir = self.services.work_dirs.of(self.subject.promotion_uid);
        std::fs::create_dir_all(&dir)
            .map_err(|e| retryable(format!("work directory {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// The path the step config's `field` names, inside the work directory.
    pub fn path(&self, field: &str, relative: &str) -> Result<std::path::PathBuf, StepError> {
        workdir::resolve(&self.work_dir()?, field, relative)
    }

    /// As [`StepContext::path`], for a path that must exist already.
    pub fn existing_path(
        &self,
        field: &str,
        relative: &str,
    ) -> Result<std::path::PathBuf, StepError> {
        let path = self.path(field, relative)?;
        if !path.exists() {
            return Err(terminal(format!(
                "config.{field}: {relative:?} does not exist in the work directory"
            )));
        }
        Ok(path)
    }

    /// Says what the step waits on before it looks or acts, so that a change
    /// from then on wakes the Promotion (the reconciler records the same
    /// targets again when the step returns).
    pub fn register_waits(&self, targets: &[AwaitTarget]) {
        let key = (
            self.subject.namespace.to_string(),
            self.subject.promotion.to_string(),
        );
        self.services.waits.set(key, targets.to_vec());
    }
}

/// The outcome of one run: the engine's result plus what the step now waits
/// on (empty unless it is Running).
pub struct StepRun {
    pub result: Result<StepResult, StepError>,
    pub awaiting: Vec<AwaitTarget>,
}

impl StepRun {
    pub fn done(result: Result<StepResult, StepError>) -> Self {
        Self {
            result,
            awaiting: Vec::new(),
        }
    }
}

/// A kind of step.
pub trait StepRunner: Send + Sync {
    /// The name steps use in `uses`.
    fn kind(&self) -> &'static str;

    /// Timeout and error threshold when the step's `retry` leaves them unset.
    fn defaults(&self) -> StepDefaults {
        StepDefaults::default()
    }

    /// Steps whose output a task's later steps and the template see as the
    /// task's output (`compose-output`).
    fn propagates_task_output(&self) -> bool {
        false
    }

    /// Whether `config` fits the step's config schema (field names and
    /// types), checked before anything runs (`barge expand`). The error
    /// names the field.
    fn check_config(&self, _config: &Value) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Whether the step reads or writes the Promotion's work directory, so
    /// that losing the directory means running the plan again.
    fn uses_work_dir(&self) -> bool {
        false
    }

    fn run<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepRun>;
}

/// A config field's Go-style duration (`30s`, `2m`); `None` when unset.
pub fn config_duration(
    text: Option<&str>,
    field: &str,
) -> Result<Option<std::time::Duration>, StepError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<kube::core::Duration>() {
            Ok(d) if !d.is_negative() => Ok(Some(std::time::Duration::from(d))),
            Ok(_) => Err(terminal(format!("config.{field}: {text:?} is negative"))),
            Err(e) => Err(terminal(format!("config.{field}: {e}"))),
        },
    }
}

/// Checks a config against a step's schema.
type ConfigCheck = fn(&Value) -> Result<(), ConfigError>;

/// A built-in step kind: a kind name and one async function.
pub struct BuiltinStep {
    kind: &'static str,
    defaults: StepDefaults,
    propagates_task_output: bool,
    uses_work_dir: bool,
    check: Option<ConfigCheck>,
    run: for<'a> fn(&'a StepContext<'a>) -> BoxFuture<'a, StepRun>,
}

impl BuiltinStep {
    pub fn new(
        kind: &'static str,
        run: for<'a> fn(&'a StepContext<'a>) -> BoxFuture<'a, StepRun>,
    ) -> Self {
        Self {
            kind,
            defaults: StepDefaults::default(),
            propagates_task_output: false,
            uses_work_dir: false,
            check: None,
            run,
        }
    }

    pub fn with_defaults(self, defaults: StepDefaults) -> Self {
        Self { defaults, ..self }
    }

    /// Checks configs against `C`, the type the step parses its config as.
    pub fn config<C: DeserializeOwned>(self) -> Self {
        Self {
            check: Some(check_config::<C>),
            ..self
        }
    }

    /// Marks a step that keeps files in the work directory.
    pub fn using_work_dir(self) -> Self {
        Self {
            uses_work_dir: true,
            ..self
        }
    }

    pub fn propagating_task_output(self) -> Self {
        Self {
            propagates_task_output: true,
            ..self
        }
    }
}

impl StepRunner for BuiltinStep {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn defaults(&self) -> StepDefaults {
        self.defaults
    }

    fn propagates_task_output(&self) -> bool {
        self.propagates_task_output
    }

    fn uses_work_dir(&self) -> bool {
        self.uses_work_dir
    }

    fn check_config(&self, config: &Value) -> Result<(), ConfigError> {
        self.check.map_or(Ok(()), |check| check(config))
    }

    fn run<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepRun> {
        (self.run)(ctx)
    }
}

/// The step kinds this controller can run.
#[derive(Clone, Default)]
pub struct Registry {
    runners: HashMap<&'static str, Arc<dyn StepRunner>>,
}

impl Registry {
    /// Every built-in step kind.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.register(Arc::new(argocd_update::step()));
        registry.register(Arc::new(argocd_wait::step()));
        registry.register(Arc::new(compose_output::step()));
        registry.register(Arc::new(copy::step()));
        registry.register(Arc::new(delete::step()));
        registry.register(Arc::new(fail::step()));
        registry.register(Arc::new(git_clear::step()));
        registry.register(Arc::new(git_clone::step()));
        registry.register(Arc::new(git_commit::step()));
        registry.register(Arc::new(git_merge_pr::step()));
        registry.register(Arc::new(git_open_pr::step()));
        registry.register(Arc::new(git_push::step()));
        registry.register(Arc::new(git_wait_for_pr::step()));
        registry.register(Arc::new(git_tag::step()));
        registry.register(Arc::new(helm_template::step()));
        registry.register(Arc::new(helm_update_chart::step()));
        registry.register(Arc::new(helm_update_image::step()));
        registry.register(Arc::new(http::step()));
        registry.register(Arc::new(json_parse::step()));
        registry.register(Arc::new(json_update::step()));
        registry.register(Arc::new(kustomize_build::step()));
        registry.register(Arc::new(kustomize_set_image::step()));
        registry.register(Arc::new(set_metadata::step()));
        registry.register(Arc::new(yaml_parse::step()));
        registry.register(Arc::new(yaml_update::step()));
        registry
    }

    pub fn register(&mut self, runner: Arc<dyn StepRunner>) {
        self.runners.insert(runner.kind(), runner);
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn StepRunner>> {
        self.runners.get(kind)
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.runners.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }
}

/// A config that does not fit its step's schema: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// serde's path to the field (`apps[0].sources[1].repoURL`), `.` for
    /// the config itself.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path == "." {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config.{}: {}", self.path, self.message)
        }
    }
}

/// Parses a config as `T`, naming the offending field on error.
fn parse<T: DeserializeOwned>(config: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(config).map_err(|e| ConfigError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

fn check_config<T: DeserializeOwned>(config: &Value) -> Result<(), ConfigError> {
    parse::<T>(config).map(|_| ())
}

/// Parses a step's evaluated config, naming the offending field on error
/// (e.g. `config.apps[0].sources[1].repoURL: missing field`). Bad config
/// can't get better by retrying, so the error is terminal.
pub fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, StepError> {
    parse(config).map_err(|e| terminal(e.to_string()))
}

/// A terminal error with a message.
pub fn terminal(message: impl Into<String>) -> StepError {
    StepError {
        message: message.into(),
        terminal: true,
        unavailable: false,
    }
}

/// A retryable error with a message.
pub fn retryable(message: impl Into<String>) -> StepError {
    StepError {
        message: message.into(),
        terminal: false,
        unavailable: false,
    }
}

/// A failed request to the Kubernetes API server, `what` saying what it was
/// for: when the server was unreachable, overloaded or throttling (a
/// transport error, 429, 5xx) it is retried without counting against the
/// step's error threshold; any other answer is a retryable error.
pub fn api_error(what: impl std::fmt::Display, e: &kube::Error) -> StepError {
    let unavailable = match e {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::Service(_) | kube::Error::HyperError(_) => true,
        _ => false,
    };
    StepError {
        message: format!("{what}: {e}"),
        terminal: false,
        unavailable,
    }
}
