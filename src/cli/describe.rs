//! `barge describe`: one Promotion (its plan, each step's state, what the
//! running step waits on and when it is looked at next) or one Stage, as
//! text for people. Rendering is pure, over the objects.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::Api;

use super::columns::{promotion_freight, stage_promotion};
use super::error::CliError;
use super::kube_args::KubeArgs;
use super::table::{self, duration};
use crate::api::{AwaitedObject, Promotion, Stage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DescribeKind {
    #[value(name = "promotion", aliases = ["promotions", "promo"])]
    Promotion,
    #[value(name = "stage", alias = "stages")]
    Stage,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[arg(value_enum)]
    kind: DescribeKind,
    /// The object's name.
    name: String,
    #[command(flatten)]
    kube: KubeArgs,
}

pub async fn main(args: DescribeArgs) -> Result<ExitCode, CliError> {
    let target = args.kube.connect().await?;
    let (client, ns) = (&target.client, target.namespace.as_str());
    let now = Timestamp::now();
    let text = match args.kind {
        DescribeKind::Promotion => {
            let api: Api<Promotion> = Api::namespaced(client.clone(), ns);
            let p = api.get_opt(&args.name).await?.ok_or_else(|| {
                CliError::refused(format!("no Promotion {:?} in namespace {ns:?}", args.name))
            })?;
            promotion(&p, now)
        }
        DescribeKind::Stage => {
            let api: Api<Stage> = Api::namespaced(client.clone(), ns);
            let s = api.get_opt(&args.name).await?.ok_or_else(|| {
                CliError::refused(format!("no Stage {:?} in namespace {ns:?}", args.name))
            })?;
            let promotions: Vec<Promotion> = super::get::list(client, Some(ns)).await?;
            stage(&s, &promotions, now)
        }
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// A time as written in status, with how long ago (or until) it is.
pub fn when(time: Option<&Time>, now: Timestamp) -> String {
    match time {
        None => "<none>".to_string(),
        Some(t) => {
            let at = t.0.strftime("%Y-%m-%dT%H:%M:%SZ");
            if t.0 > now {
                format!("{at} (in {})", duration(t.0.duration_since(now)))
            } else {
                format!("{at} ({} ago)", duration(now.duration_since(t.0)))
            }
        }
    }
}

/// `Kind namespace/name`, or the selector, of an awaited object.
pub fn awaited_target(a: &AwaitedObject) -> String {
    let what = match (&a.name, &a.selector) {
        (Some(name), _) => format!("{}/{name}", a.namespace),
        (None, Some(_)) => format!(
            "{} matching {}",
            a.namespace,
            a.selector_labels().unwrap_or_default()
        ),
        (None, None) => a.namespace.clone(),
    };
    match &a.repo_url {
        Some(repo) => format!("{} {what} of {repo}", a.kind),
        None => format!("{} {what}", a.kind),
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// A Promotion for people: what it promotes, its plan with each step's
/// state, and what the running step waits on.
pub fn promotion(p: &Promotion, now: Timestamp) -> String {
    let status = p.status.clone().unwrap_or_default();
    let mut out = String::new();
    let freight = promotion_freight(p);
    let freight = if freight == p.spec.freight {
        freight
    } else {
        format!("{} ({freight})", p.spec.freight)
    };
    let created = p.metadata.creation_timestamp.as_ref();
    for (label, value) in [
        ("Name", p.name_any()),
        ("Namespace", p.namespace().unwrap_or_default()),
        ("Stage", p.spec.stage.clone()),
        ("Freight", freight),
        ("Phase", p.phase().to_string()),
        ("Message", table::cell(&status.message)),
        ("Created", when(created, now)),
        ("Started", when(status.started_at.as_ref(), now)),
        ("Finished", when(status.finished_at.as_ref(), now)),
    ] {
        let _ = writeln!(out, "{:<11}{value}", format!("{label}:"));
    }
    out.push_str("Steps:\n");
    match &status.plan {
        None => out.push_str("  <not planned yet: the controller has not picked it up>\n"),
        Some(plan) => {
            let rows: Vec<Vec<String>> = plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    let alias = step.alias.clone().unwrap_or_default();
                    let record = status.step_record(&alias);
                    let state = record
                        .and_then(|m| m.status)
                        .map_or_else(|| "-".to_string(), |s| s.to_string());
                    let took = record.and_then(|m| {
                        let start = m.started_at.as_ref()?.0;
                        let end = m.finished_at.as_ref().map_or(now, |t| t.0);
                        Some(duration(end.duration_since(start)))
                    });
                    let errors = record.map_or(0, |m| m.error_count);
                    vec![
                        (i + 1).to_string(),
                        alias,
                        step.uses.clone().unwrap_or_default(),
                        state,
                        took.unwrap_or_else(|| "-".to_string()),
                        errors.to_string(),
                        record.map(|m| m.message.clone()).unwrap_or_default(),
                    ]
                })
                .collect();
            let text = table::render(
                &["#", "alias", "uses", "status", "took", "errors", "message"],
                &rows,
            );
            out.push_str(&indent(&text, "  "));
        }
    }
    if !p.is_terminal() {
        out.push_str("Waiting:\n");
        if status.awaiting.is_empty() {
            out.push_str("  <nothing recorded>\n");
        }
        for a in &status.awaiting {
            let _ = writeln!(out, "  {}: {}", table::cell(&a.alias), awaited_target(a));
            if !a.message.is_empty() {
                let _ = writeln!(out, "    for:        {}", a.message);
            }
            let _ = writeln!(out, "    since:      {}", when(a.since.as_ref(), now));
            let _ = writeln!(out, "    next check: {}", when(a.deadline.as_ref(), now));
        }
    }
    out
}

fn conditions(list: &[Condition], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                table::age(Some(c.last_transition_time.0), now),
                c.message.clone(),
            ]
        })
        .collect();
    table::render(&["type", "status", "reason", "age", "message"], &rows)
}

/// A Stage for people: where its Freight comes from, what it uses, its
/// health and Promotion, its steps and conditions.
pub fn stage(s: &Stage, promotions: &[Promotion], now: Timestamp) -> String {
    let status = s.status.clone().unwrap_or_default();
    let mut out = String::new();
    let health = status.health.clone().unwrap_or_default();
    let promotion = stage_promotion(s, promotions).map_or_else(
        || "<none>".to_string(),
        |(name, phase)| format!("{name} ({phase})"),
    );
    for (label, value) in [
        ("Name", s.name_any()),
        ("Namespace", s.namespace().unwrap_or_default()),
        ("Freight", table::cell(&status.freight_summary)),
        (
            "Health",
            health
                .status
                .map_or_else(|| "<none>".to_string(), |h| h.to_string()),
        ),
        ("Promotion", promotion),
        ("Auto", status.auto_promotion_enabled.to_string()),
        ("Created", when(s.metadata.creation_timestamp.as_ref(), now)),
    ] {
        let _ = writeln!(out, "{:<11}{value}", format!("{label}:"));
    }
    for issue in &health.issues {
        let _ = writeln!(out, "  issue: {issue}");
    }
    out.push_str("Requested Freight:\n");
    for r in &s.spec.requested_freight {
        let mut from: Vec<String> = Vec::new();
        if r.sources.direct {
            from.push("direct".to_string());
        }
        from.extend(r.sources.stages.iter().map(|st| format!("stage {st}")));
        let _ = writeln!(out, "  {} from {}", r.origin, from.join(", "));
    }
    out.push_str("Steps:\n");
    let steps = s
        .spec
        .promotion_template
        .as_ref()
        .map(|t| t.spec.steps.clone())
        .unwrap_or_default();
    if steps.is_empty() {
        out.push_str("  <none: a control-flow Stage>\n");
    }
    for (i, step) in steps.iter().enumerate() {
        let what = match (&step.uses, &step.task) {
            (Some(uses), _) => uses.clone(),
            (None, Some(task)) => format!("task {}", task.name),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}. {} ({what})",
            i + 1,
            step.alias.clone().unwrap_or_default()
        );
    }
    out.push_str("Conditions:\n");
    out.push_str(&indent(&conditions(&status.conditions, now), "  "));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T10:05:00Z".parse().unwrap()
    }

    fn waiting() -> Promotion {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "p1", "namespace": "demo", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "spec": {"stage": "dev", "freight": "f1"},
            "status": {
                "phase": "Running",
                "startedAt": "2026-01-01T10:00:00Z",
                "plan": {"freightAlias": "brave-otter", "steps": [
                    {"as": "render", "uses": "compose-output"},
                    {"as": "update", "uses": "argocd-update"},
                    {"as": "check", "uses": "http"},
                ]},
                "currentStep": 1,
                "stepExecutionMetadata": [
                    {"alias": "render", "status": "Succeeded",
                     "startedAt": "2026-01-01T10:00:00Z", "finishedAt": "2026-01-01T10:00:01Z"},
                    {"alias": "update", "status": "Running", "startedAt": "2026-01-01T10:00:01Z"},
                ],
                "awaiting": [{"alias": "update", "kind": "Application", "namespace": "argocd", "name": "app",
                              "message": "sync of revision abc1234 to finish",
                              "since": "2026-01-01T10:00:01Z", "deadline": "2026-01-01T11:00:01Z"}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_waiting_promotion_shows_its_plan_its_steps_and_what_it_waits_on() {
        let want = "\
Name:      p1
Namespace: demo
Stage:     dev
Freight:   f1 (brave-otter)
Phase:     Running
Message:   <none>
Created:   2026-01-01T10:00:00Z (5m ago)
Started:   2026-01-01T10:00:00Z (5m ago)
Finished:  <none>
Steps:
  #   ALIAS    USES             STATUS      TOOK    ERRORS   MESSAGE
  1   render   compose-output   Succeeded   1s      0
  2   update   argocd-update    Running     4m59s   0
  3   check    http             -           -       0
Waiting:
  update: Application argocd/app
    for:        sync of revision abc1234 to finish
    since:      2026-01-01T10:00:01Z (4m59s ago)
    next check: 2026-01-01T11:00:01Z (in 55m)
";
        assert_eq!(promotion(&waiting(), now()), want);
    }

    #[test]
    fn an_ended_promotion_has_no_waiting_section() {
        let mut p = waiting();
        if let Some(s) = p.status.as_mut() {
            s.phase = Some(crate::api::PromotionPhase::Succeeded);
        }
        assert!(!promotion(&p, now()).contains("Waiting:"));
    }

    #[test]
    fn a_promotion_not_yet_picked_up_says_so() {
        let p: Promotion = serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "p1"}, "spec": {"stage": "dev", "freight": "f1"},
        }))
        .unwrap();
        let text = promotion(&p, now());
        assert!(text.contains("Phase:     Pending"), "{text}");
        assert!(text.contains("<not planned yet"), "{text}");
    }

    #[test]
    fn a_stage_shows_where_its_freight_comes_from_and_its_steps() {
        let s: Stage = serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": "prod", "namespace": "demo"},
            "spec": {
                "requestedFreight": [{"origin": {"kind": "Warehouse", "name": "w"}, "sources": {"direct": true, "stages": ["staging"]}}],
                "promotionTemplate": {"spec": {"steps": [{"as": "update", "uses": "argocd-update"}, {"as": "t", "task": {"name": "verify"}}]}},
            },
            "status": {"freightSummary": "f1", "lastPromotion": {"name": "p1", "status": {"phase": "Failed"}}},
        }))
        .unwrap();
        let text = stage(&s, &[], now());
        for want in [
            "Freight:   f1",
            "Promotion: p1 (Failed)",
            "  Warehouse/w from direct, stage staging",
            "  1. update (argocd-update)",
            "  2. t (task verify)",
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
    }
}
