//! Expressions in a Promotion's plan, evaluated against the Promotion: the
//! `ctx`, the layered vars, earlier steps' outputs and statuses, the
//! Freight frozen in status, and the project's ConfigMaps, Secrets and
//! metadata the caller fetched. Shared by the controller and `barge
//! expand`.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::engine::Progress;
use crate::api::{ExpressionVariable, FreightCollection, FreightReference, PromotionStep};
use crate::expr::{
    self, Ctx, Env, ExprError, FreightSnapshot, ProjectData, Scope, StepStatus, StepStatuses,
};

/// An expression of a step that could not be evaluated, with the path of
/// the field it is in (`if`, `vars.image`, `config.apps[0].name`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{path}: {source}")]
pub struct EvalError {
    pub path: String,
    #[source]
    pub source: ExprError,
}

impl EvalError {
    fn at(path: impl Into<String>) -> impl FnOnce(ExprError) -> Self {
        let path = path.into();
        move |source| Self { path, source }
    }
}

/// Evaluates the expressions of one step against the Promotion's progress.
pub trait StepEvaluator: Send + Sync {
    /// Whether the step runs: its `if`, or `success()` when it has none.
    fn should_run(
        &self,
        step: &PromotionStep,
        alias: &str,
        progress: &Progress,
    ) -> Result<bool, EvalError>;

    /// The step's config with every expression evaluated.
    fn config(
        &self,
        step: &PromotionStep,
        alias: &str,
        progress: &Progress,
    ) -> Result<Value, EvalError>;
}

/// Evaluates one Promotion's expressions.
#[derive(Clone, Debug)]
pub struct ExprEvaluator {
    ctx: Ctx,
    promotion_vars: Vec<ExpressionVariable>,
    freight: FreightSnapshot,
    data: Arc<ProjectData>,
    now: Option<Timestamp>,
}

/// What a Promotion's expressions see of the Promotion itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct PromotionFacts<'a> {
    pub namespace: &'a str,
    pub stage: &'a str,
    pub promotion: &'a str,
    /// Who created it, when that can be believed.
    pub actor: Option<&'a str>,
    /// The Freight being promoted (`ctx.targetFreight`).
    pub freight: Option<&'a FreightReference>,
    pub freight_alias: &'a str,
    /// The promoted Freight with the Stage's Freight of its other origins:
    /// what `commitFrom`, `imageFrom` and `chartFrom` search.
    pub collection: Option<&'a FreightCollection>,
    /// What `configMap()`, `secret()`, `sharedConfigMap()`,
    /// `sharedSecret()`, `stageMetadata()` and `freightMetadata()` read
    /// (see [`ProjectData`] for each map). `None`: nothing fetched, every
    /// object missing (empty maps from the first four, nil from the
    /// metadata functions).
    pub data: Option<&'a ProjectData>,
    /// What `now()` returns. `None`: the clock, read each time a step's
    /// environment is built (so all of a step's vars and its config, or its
    /// `if`, see one instant).
    pub now: Option<Timestamp>,
}

impl ExprEvaluator {
    pub fn new(facts: &PromotionFacts<'_>, promotion_vars: &[ExpressionVariable]) -> Self {
        let freight = facts.freight;
        let ctx = Ctx {
            project: facts.namespace.to_string(),
            stage: facts.stage.to_string(),
            promotion: facts.promotion.to_string(),
            target_freight_name: freight.map(|f| f.name.clone()).unwrap_or_default(),
            target_freight_alias: facts.freight_alias.to_string(),
            target_freight_origin: freight.map(|f| f.origin.name.clone()).unwrap_or_default(),
            actor: facts.actor.unwrap_or_default().to_string(),
            ..Ctx::default()
        };
        let items: Vec<&FreightReference> = match facts.collection {
            Some(collection) if !collection.items.is_empty() => collection.items.values().collect(),
            _ => freight.into_iter().collect(),
        };
        let freight = FreightSnapshot {
            freight: items
                .into_iter()
                .filter_map(|f| serde_json::to_value(f).ok())
                .collect(),
        };
        Self {
            ctx,
            promotion_vars: promotion_vars.to_vec(),
            freight,
            data: Arc::new(facts.data.cloned().unwrap_or_default()),
            now: facts.now,
        }
    }

    /// The environment of step `alias`: promotion vars, then the step's own
    /// vars, each seeing the ones before it.
    pub fn env(
        &self,
        step: Option<&PromotionStep>,
        alias: &str,
        progress: &Progress,
    ) -> Result<Env, EvalError> {
        let now = self.now.unwrap_or_else(Timestamp::now);
        // Promotion vars see the context and the Freight, not the steps.
        let mut promotion = Env {
            ctx: self.ctx.clone(),
            freight: self.freight.clone(),
            data: self.data.clone(),
            now: Some(now),
            ..Env::default()
        };
        for var in &self.promotion_vars {
            let value = evaluate_text(&var.value, &promotion, Scope::Vars)
                .map_err(EvalError::at(format!("vars.{}", var.name)))?;
            promotion.vars.insert(var.name.clone(), value);
        }
        let mut env = self.bare_env(alias, progress, now);
        env.vars = promotion.vars;
        for var in step.map(|s| &s.vars[..]).unwrap_or_default() {
            let value = evaluate_text(&var.value, &env, Scope::Vars)
                .map_err(EvalError::at(format!("vars.{}", var.name)))?;
            env.vars.insert(var.name.clone(), value);
        }
        Ok(env)
    }

    /// The environment without any vars: enough for the steps' statuses.
    fn bare_env(&self, alias: &str, progress: &Progress, now: Timestamp) -> Env {
        Env {
            ctx: Ctx {
                step_alias: alias.to_string(),
                ..self.ctx.clone()
            },
            freight: self.freight.clone(),
            outputs: Some(progress.state.clone()),
            step_metas: Some(step_metas(progress)),
            statuses: StepStatuses {
                steps: progress
                    .metas
                    .iter()
                    .map(|m| StepStatus {
                        alias: m.alias.clone(),
                        status: m.status.map(|s| s.to_string()).unwrap_or_default(),
                        continue_on_error: m.continue_on_error,
                    })
                    .collect(),
            },
            data: self.data.clone(),
            now: Some(now),
            ..Env::default()
        }
    }
}

fn step_metas(progress: &Progress) -> Map<String, Value> {
    progress
        .metas
        .iter()
        .map(|m| {
            let meta = serde_json::json!({
                "alias": m.alias,
                "startedAt": m.started_at.map(|t| t.to_string()),
                "finishedAt": m.finished_at.map(|t| t.to_string()),
                "errorCount": m.error_count,
                "status": m.status.map(|s| s.to_string()).unwrap_or_default(),
                "message": m.message.clone().unwrap_or_default(),
                "continueOnError": m.continue_on_error,
            });
            (m.alias.clone(), meta)
        })
        .collect()
}

fn evaluate_text(text: &str, env: &Env, scope: Scope) -> Result<Value, expr::ExprError> {
    expr::template::evaluate_string(text, env, scope)
}

/// Evaluates every string in `value`, naming the path of the first one that
/// fails (e.g. `config.apps[0].name: ...`).
pub fn evaluate_tree(
    value: &Value,
    env: &Env,
    scope: Scope,
    path: &str,
) -> Result<Value, EvalError> {
    match value {
        Value::String(text) => evaluate_text(text, env, scope).map_err(EvalError::at(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| evaluate_tree(v, env, scope, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                evaluate_tree(v, env, scope, &format!("{path}.{k}")).map(|v| (k.clone(), v))
            })
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

impl StepEvaluator for ExprEvaluator {
    fn should_run(
        &self,
        step: &PromotionStep,
        alias: &str,
        progress: &Progress,
    ) -> Result<bool, EvalError> {
        let condition = step.if_.as_deref().map(str::trim).unwrap_or_default();
        // Without an `if` the step runs on `success()`, which needs no vars:
        // a step skipped after a failure must not error on vars that read
        // the failed step's outputs.
        let env = if condition.is_empty() {
            self.bare_env(alias, progress, self.now.unwrap_or_else(Timestamp::now))
        } else {
            self.env(Some(step), alias, progress)?
        };
        expr::template::evaluate_condition(condition, &env).map_err(EvalError::at("if"))
    }

    fn config(
        &self,
        step: &PromotionStep,
        alias: &str,
        progress: &Progress,
    ) -> Result<Value, EvalError> {
        let env = self.env(Some(step), alias, progress)?;
        let config = step
            .config
            .clone()
            .unwrap_or_else(|| Value::Object(Map::new()));
        evaluate_tree(&config, &env, Scope::Config, "config")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(config: Value) -> PromotionStep {
        PromotionStep {
            uses: Some("fake".to_string()),
            config: Some(config),
            ..PromotionStep::default()
        }
    }

    fn config_of(facts: &PromotionFacts<'_>, config: Value) -> Result<Value, EvalError> {
        let evaluator = ExprEvaluator::new(facts, &[]);
        evaluator.config(&step(config), "step-1", &Progress::default())
    }

    #[test]
    fn now_is_the_instant_the_facts_give() {
        let facts = PromotionFacts {
            now: "2024-03-15T13:04:05Z".parse().ok(),
            ..PromotionFacts::default()
        };
        let config = serde_json::json!({"at": "${{ now() }}", "day": "${{ now().Day() }}"});
        assert_eq!(
            config_of(&facts, config).ok(),
            Some(serde_json::json!({"at": "2024-03-15T13:04:05Z", "day": 15}))
        );
    }

    #[test]
    fn now_is_one_instant_throughout_a_step() {
        let config = serde_json::json!({"a": "${{ now() }}", "b": "${{ now() }}"});
        let Ok(out) = config_of(&PromotionFacts::default(), config) else {
            panic!("config did not evaluate");
        };
        assert_eq!(out["a"], out["b"]);
    }

    #[test]
    fn data_functions_read_the_data_the_facts_give() {
        let mut data = ProjectData::default();
        data.config_maps.insert(
            "settings".to_string(),
            [("region".to_string(), "eu".to_string())].into(),
        );
        data.secrets.insert(
            "creds".to_string(),
            [("token".to_string(), "s3cr3t".to_string())].into(),
        );
        let facts = PromotionFacts {
            data: Some(&data),
            ..PromotionFacts::default()
        };
        let config = serde_json::json!({
            "region": "${{ configMap('settings').region }}",
            "auth": "Bearer ${{ secret('creds').token }}",
        });
        assert_eq!(
            config_of(&facts, config).ok(),
            Some(serde_json::json!({"region": "eu", "auth": "Bearer s3cr3t"}))
        );
    }

    #[test]
    fn without_data_every_object_is_missing() {
        let config = serde_json::json!({
            "cm": "${{ configMap('settings') }}",
            "meta": "${{ stageMetadata('prod') }}",
        });
        assert_eq!(
            config_of(&PromotionFacts::default(), config).ok(),
            Some(serde_json::json!({"cm": {}, "meta": null}))
        );
    }
}
