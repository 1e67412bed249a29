//! `argocd-wait`: waits, read-only, until Argo CD Applications are healthy
//! and/or synced. Like argocd-update it records the resolved Applications
//! (or its selector) it waits on, so their changes wake it at once.

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::{Value, json};

use super::applications::{
    ARGOCD_STEP_DEFAULTS, AppEntry, describe, parse_apps_config, resolve_all,
};
use super::{BuiltinStep, StepContext, StepRun, terminal};
use crate::argocd::{AppHealth, Application, request_refresh, stale_comparison};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "argocd-wait";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub apps: Vec<AppWait>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppWait {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// What to wait for: `health` (the default), `sync`, or both.
    #[serde(default)]
    pub wait_for: Option<WaitFor>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WaitFor {
    One(String),
    Many(Vec<String>),
}

/// What one `apps[]` entry waits for (Kargo's `waitFor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Conditions {
    /// Health is Healthy.
    health: bool,
    /// Health is Suspended.
    suspended: bool,
    /// Health is Degraded.
    degraded: bool,
    /// Sync status is Synced.
    sync: bool,
    /// No operation is requested or running.
    operation: bool,
}

impl Conditions {
    /// Kargo's default, that of `argocd app wait`: health, sync and operation.
    const DEFAULT: Self = Self {
        health: true,
        suspended: false,
        degraded: false,
        sync: true,
        operation: true,
    };

    fn judges_health(&self) -> bool {
        self.health || self.suspended || self.degraded
    }

    /// Whether `health` is one the entry accepts (they are alternatives).
    fn accepts_health(&self, health: &str) -> bool {
        (self.health && health == "Healthy")
            || (self.suspended && health == "Suspended")
            || (self.degraded && health == "Degraded")
    }

    fn wanted_health(&self) -> String {
        let names = [
            (self.health, "Healthy"),
            (self.suspended, "Suspended"),
            (self.degraded, "Degraded"),
        ];
        let wanted: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        wanted.join(" or ")
    }
}

fn conditions(index: usize, wait_for: &Option<WaitFor>) -> Result<Conditions, StepError> {
    let names: Vec<&str> = match wait_for {
        None => return Ok(Conditions::DEFAULT),
        Some(WaitFor::One(s)) => vec![s.as_str()],
        Some(WaitFor::Many(list)) if list.is_empty() => return Ok(Conditions::DEFAULT),
        Some(WaitFor::Many(list)) => list.iter().map(String::as_str).collect(),
    };
    let mut c = Conditions::default();
    for name in names {
        match name {
            "health" => c.health = true,
            "suspended" => c.suspended = true,
            "degraded" => c.degraded = true,
            "sync" => c.sync = true,
            "operation" => c.operation = true,
            other => {
                return Err(terminal(format!(
                    "config.apps[{index}].waitFor: unknown condition \"{other}\" (use health, sync, operation, suspended or degraded)"
                )));
            }
        }
    }
    Ok(c)
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .with_defaults(ARGOCD_STEP_DEFAULTS)
}

/// What one Application means for the step.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Every wanted condition holds.
    Met,
    /// Still waiting for `what`; `refresh`: ask Argo CD to compare again.
    Wait { what: String, refresh: bool },
    /// The wait cannot succeed.
    Fail(String),
}

/// Judges one Application from its cached state and the health the step saw
/// on its previous run.
fn verdict(app: &Application, wanted: Conditions, health_before: Option<&str>) -> Verdict {
    let errors = app.comparison_errors();
    if !errors.is_empty() {
        return Verdict::Fail(format!("{}: {}", describe(app), errors.join("; ")));
    }
    let wait = |what: String| Verdict::Wait {
        what,
        refresh: false,
    };
    if wanted.operation && app.operation_in_progress() {
        return wait(format!("{} to finish its operation", describe(app)));
    }
    let status = app.status.clone().unwrap_or_default();
    if wanted.judges_health() {
        // Health compared before the last operation ended says nothing of it.
        if let Some(AppHealth::Unknown { reason, refresh }) = stale_comparison(app) {
            return Verdict::Wait {
                what: format!(
                    "{} to be {} ({reason})",
                    describe(app),
                    wanted.wanted_health()
                ),
                refresh,
            };
        }
        let health = status.health.as_ref().map_or("", |h| h.status.as_str());
        let fell = wanted.health
            && health == "Degraded"
            && health_before.is_some_and(|b| !b.is_empty() && b != "Degraded" && b != "Unknown");
        if fell {
            return Verdict::Fail(format!(
                "{} health has regressed from {} to Degraded",
                describe(app),
                health_before.unwrap_or_default()
            ));
        }
        if !wanted.accepts_health(health) {
            let health = if health.is_empty() {
                "not reported"
            } else {
                health
            };
            return wait(format!(
                "{} to be {} (health is {health})",
                describe(app),
                wanted.wanted_health()
            ));
        }
    }
    if wanted.sync && status.sync.as_ref().map(|s| s.status.as_str()) != Some("Synced") {
        return wait(format!("{} to be synced", describe(app)));
    }
    Verdict::Met
}

/// The health the step saw last time, from its previous output.
fn previous_health(ctx: &StepContext<'_>, app: &Application) -> Option<String> {
    ctx.previous_output?
        .get("apps")?
        .as_array()?
        .iter()
        .find(|a| a.get("name").and_then(Value::as_str) == app.metadata.name.as_deref())?
        .get("health")?
        .as_str()
        .map(String::from)
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    let config: Config = match parse_apps_config(ctx.config, |c: &Config| c.apps.len()) {
        Ok(c) => c,
        Err(e) => return StepRun::done(Err(e)),
    };
    let mut entries = Vec::new();
    for (index, entry) in config.apps.iter().enumerate() {
        match conditions(index, &entry.wait_for) {
            Ok(wanted) => entries.push((
                AppEntry::of(&entry.name, &entry.namespace, &entry.selector),
                wanted,
            )),
            Err(e) => return StepRun::done(Err(e)),
        }
    }
    let (targets, awaiting) = match resolve_all(ctx, entries, false).await {
        Ok(resolved) => resolved,
        Err(run) => return run,
    };

    let mut waiting = Vec::new();
    let mut observed = Vec::new();
    for (wanted, app) in &targets {
        let health = app
            .status
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .map(|h| h.status.clone())
            .unwrap_or_default();
        observed.push(json!({"name": app.metadata.name, "namespace": app.metadata.namespace, "health": health}));
        match verdict(app, *wanted, previous_health(ctx, app).as_deref()) {
            Verdict::Met => {}
            Verdict::Wait { what, refresh } => {
                if refresh {
                    // Argo CD's last comparison may predate the sync: ask for
                    // another, whose status change wakes this step.
                    request_refresh(&ctx.services.client, app).await;
                }
                waiting.push(what);
            }
            Verdict::Fail(message) => {
                return StepRun {
                    result: Err(terminal(message)),
                    awaiting,
                };
            }
        }
    }
    let output = json!({"apps": observed});
    if waiting.is_empty() {
        let mut result = StepResult::new(StepStatus::Succeeded);
        result.output = Some(output);
        return StepRun::done(Ok(result));
    }
    let mut result = StepResult::new(StepStatus::Running);
    result.message = Some(format!("waiting for {}", waiting.join("; ")));
    result.output = Some(output);
    StepRun {
        result: Ok(result),
        awaiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(status: Value) -> Application {
        serde_json::from_value(json!({
            "metadata": {"name": "demo-dev", "namespace": "argocd"},
            "spec": {},
            "status": status,
        }))
        .unwrap_or_else(|e| panic!("bad fixture: {e}"))
    }

    const HEALTH: Conditions = Conditions {
        health: true,
        suspended: false,
        degraded: false,
        sync: false,
        operation: false,
    };

    fn wait_for(names: &[&str]) -> Conditions {
        let list = names.iter().map(|n| n.to_string()).collect();
        conditions(0, &Some(WaitFor::Many(list))).unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[test]
    fn a_healthy_application_meets_the_wait() {
        let a = app(json!({"health": {"status": "Healthy"}, "sync": {"status": "Synced"}}));
        assert_eq!(verdict(&a, HEALTH, None), Verdict::Met);
    }

    #[test]
    fn health_that_falls_to_degraded_while_waiting_fails_the_wait() {
        let a = app(json!({"health": {"status": "Degraded"}}));
        assert!(
            matches!(verdict(&a, HEALTH, Some("Progressing")), Verdict::Fail(m) if m.contains("regressed from Progressing to Degraded"))
        );
        // Degraded from the start is waited on: it may recover.
        assert!(matches!(verdict(&a, HEALTH, None), Verdict::Wait { .. }));
    }

    #[test]
    fn a_comparison_from_the_second_the_sync_finished_asks_for_a_refresh() {
        let a = app(json!({
            "health": {"status": "Healthy"}, "sync": {"status": "OutOfSync"},
            "reconciledAt": "2026-11-25T10:00:05Z",
            "operationState": {"phase": "Succeeded", "finishedAt": "2026-11-25T10:00:05Z", "syncResult": {"revision": "abc"}},
        }));
        assert!(matches!(
            verdict(&a, HEALTH, None),
            Verdict::Wait { refresh: true, .. }
        ));
    }

    #[test]
    fn a_comparison_error_fails_the_wait() {
        let a = app(json!({"conditions": [{"type": "ComparisonError", "message": "repo gone"}]}));
        assert!(matches!(verdict(&a, HEALTH, None), Verdict::Fail(m) if m.contains("repo gone")));
    }

    #[test]
    fn waiting_for_sync_needs_argo_cd_to_report_synced() {
        let a = app(json!({"sync": {"status": "OutOfSync"}}));
        assert!(matches!(
            verdict(&a, wait_for(&["sync"]), None),
            Verdict::Wait { .. }
        ));
    }

    #[test]
    fn by_default_the_wait_is_for_health_sync_and_no_operation_as_kargo() {
        assert_eq!(conditions(0, &None).ok(), Some(Conditions::DEFAULT));
        let healthy_out_of_sync =
            app(json!({"health": {"status": "Healthy"}, "sync": {"status": "OutOfSync"}}));
        assert!(matches!(
            verdict(&healthy_out_of_sync, Conditions::DEFAULT, None),
            Verdict::Wait { what, .. } if what.contains("to be synced")
        ));
        let mut syncing =
            app(json!({"health": {"status": "Healthy"}, "sync": {"status": "Synced"}}));
        syncing.operation = Some(json!({"sync": {}}));
        assert!(matches!(
            verdict(&syncing, Conditions::DEFAULT, None),
            Verdict::Wait { what, .. } if what.contains("operation")
        ));
        // Without "operation", a running operation does not hold the wait.
        assert_eq!(verdict(&syncing, wait_for(&["health"]), None), Verdict::Met);
    }

    #[test]
    fn suspended_and_degraded_are_health_states_one_may_wait_for() {
        let suspended = app(json!({"health": {"status": "Suspended"}}));
        assert_eq!(
            verdict(&suspended, wait_for(&["suspended"]), None),
            Verdict::Met
        );
        assert_eq!(
            verdict(&suspended, wait_for(&["health", "suspended"]), None),
            Verdict::Met
        );
        assert!(matches!(
            verdict(&suspended, wait_for(&["health"]), None),
            Verdict::Wait { .. }
        ));
        let degraded = app(json!({"health": {"status": "Degraded"}}));
        // Waiting for Degraded, falling to it is the goal, not a failure.
        assert_eq!(
            verdict(&degraded, wait_for(&["degraded"]), Some("Healthy")),
            Verdict::Met
        );
    }

    #[test]
    fn an_unknown_wait_for_value_is_refused_naming_the_field() {
        let Err(e) = conditions(2, &Some(WaitFor::One("ready".into()))) else {
            panic!("accepted");
        };
        assert!(
            e.message
                .starts_with("config.apps[2].waitFor: unknown condition \"ready\"")
        );
    }

    #[test]
    fn stale_health_asks_argo_cd_for_a_refresh_for_every_health_wait() {
        let a = app(json!({
            "health": {"status": "Suspended"},
            "reconciledAt": "2026-11-25T10:00:00Z",
            "operationState": {"phase": "Succeeded", "finishedAt": "2026-11-25T10:00:05Z"},
        }));
        assert!(matches!(
            verdict(&a, wait_for(&["suspended"]), None),
            Verdict::Wait { refresh: true, .. }
        ));
    }
}
