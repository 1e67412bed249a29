//! Kargo's generic webhook receiver: for any POST to its path, each action
//! whose `whenExpression` holds refreshes the Warehouses its
//! `targetSelectionCriteria` select (by name, labels and the
//! `subscribedURLs` index, values static or `${{ }}` expressions).
//!
//! Expressions see what Kargo's see: `request.body` (the parsed JSON body,
//! `nil` when empty), `request.header(name)`, `request.headers(name)`,
//! `request.params(name)` (a query parameter), Barge's `request.method`
//! and `request.url` too, the action's `params`, and the functions
//! `normalizeGit()`, `normalizeImage()`, `normalizeChart()`. The
//! selection is a pure function over the request and the namespace's
//! Warehouses ([`select`]); only the refresh touches the API server.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use super::event::Headers;
use super::warehouses::subscribed_urls;
use crate::api::project_config::{
    GenericReceiverConfig, GenericWebhookAction, GenericWebhookTargetKind,
    GenericWebhookTargetSelectionCriteria, IndexSelectorOperator,
};
use crate::api::warehouse::Warehouse;
use crate::expr::template::evaluate_string;
use crate::expr::{Document, Engine, Env, Scope};

/// The one index key Warehouses have (Kargo's `subscribedURLs`).
pub const INDEX_SUBSCRIBED_URLS: &str = "subscribedURLs";

/// A delivery as the expressions see it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path and query the delivery was sent to.
    pub url: &'a str,
    pub headers: &'a Headers,
    pub body: &'a [u8],
}

/// The request's environment: `request` (and, per action, `params`).
/// `Err` when the body is not JSON (Kargo answers 400).
pub fn base_environment(request: &Request<'_>) -> Result<Map<String, Json>, String> {
    let body: Json = if request.body.iter().all(u8::is_ascii_whitespace) {
        Json::Null
    } else {
        serde_json::from_slice(request.body).map_err(|e| format!("invalid request body: {e}"))?
    };
    let headers: Map<String, Json> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), json!([v])))
        .collect();
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some((_, q)) = request.url.split_once('?') {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query
                .entry(percent_decode(k))
                .or_default()
                .push(percent_decode(v));
        }
    }
    let mut env = Map::new();
    env.insert(
        "request".into(),
        json!({
            "body": body,
            "headers": headers,
            "query": query,
            "method": request.method,
            "url": request.url,
        }),
    );
    Ok(env)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(decoded) => {
                    out.push(decoded);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Kargo's action results.
pub const RESULT_NOT_APPLICABLE: &str = "NotApplicable";
pub const RESULT_ERROR: &str = "Error";
pub const RESULT_SUCCESS: &str = "Success";
pub const RESULT_PARTIAL_SUCCESS: &str = "PartialSuccess";
pub const RESULT_FAILURE: &str = "Failure";

/// What became of one action, in the shape of Kargo's response.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    #[serde(flatten)]
    pub action: GenericWebhookAction,
    pub matched_when_expression: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selected_targets: Vec<SelectedTarget>,
    pub result: String,
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectedTarget {
    pub namespace: String,
    pub name: String,
    pub success: bool,
}

/// Evaluates every action of `config` against the request and selects
/// its Warehouses among `warehouses` (those of the receiver's namespace).
/// Selected targets are not yet refreshed (`success: false`); those whose
/// when-expression or selection failed carry the error. Pure.
pub fn select(
    config: &GenericReceiverConfig,
    base: &Map<String, Json>,
    warehouses: &[Warehouse],
) -> Vec<ActionResult> {
    config
        .actions
        .iter()
        .map(|action| select_one(action, base, warehouses))
        .collect()
}

fn environment(fields: Map<String, Json>) -> Env {
    Env {
        document: Some(Document {
            fields,
            integers: false,
        }),
        ..Env::default()
    }
}

fn select_one(
    action: &GenericWebhookAction,
    base: &Map<String, Json>,
    warehouses: &[Warehouse],
) -> ActionResult {
    let mut result = ActionResult {
        action: action.clone(),
        matched_when_expression: false,
        selected_targets: Vec::new(),
        result: String::new(),
        summary: String::new(),
    };
    let request_env = environment(base.clone());
    // Parameters: static, or expressions over the request.
    let mut params = Map::new();
    for (key, value) in &action.parameters {
        match evaluate_string(value, &request_env, Scope::Webhook) {
            Ok(v) => {
                params.insert(key.clone(), v);
            }
            Err(e) => {
                result.result = RESULT_ERROR.into();
                result.summary = format!("Error evaluating parameter {key:?}: {e}");
                return result;
            }
        }
    }
    let mut fields = base.clone();
    fields.insert("params".into(), Json::Object(params));
    let env = environment(fields);
    match when(&action.when_expression, &env) {
        Ok(true) => result.matched_when_expression = true,
        Ok(false) => {
            result.result = RESULT_NOT_APPLICABLE.into();
            result.summary = "Request did not match whenExpression".into();
            return result;
        }
        Err(e) => {
            result.result = RESULT_ERROR.into();
            result.summary = format!("Error evaluating whenExpression: {e}");
            return result;
        }
    }
    let mut selected: Vec<(String, String)> = Vec::new();
    for (i, criteria) in action.target_selection_criteria.iter().enumerate() {
        match select_targets(criteria, &env, warehouses) {
            Ok(names) => selected.extend(names),
            Err(e) => {
                result.result = RESULT_ERROR.into();
                result.summary = format!("Error evaluating targetSelectionCriteria[{i}]: {e}");
                return result;
            }
        }
    }
    selected.sort();
    selected.dedup();
    result.selected_targets = selected
        .into_iter()
        .map(|(namespace, name)| SelectedTarget {
            namespace,
            name,
            success: false,
        })
        .collect();
    result
}

fn when(expression: &str, env: &Env) -> Result<bool, String> {
    if expression.trim().is_empty() {
        return Ok(true);
    }
    match Engine::default().evaluate(expression, env, Scope::Webhook) {
        Ok(Json::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "the expression's result is {}, not a bool",
            kind_of(&other)
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "nil",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a map",
    }
}

/// A criterion's value: static, or an expression that must give a string.
fn value(template: &str, env: &Env, what: &str) -> Result<String, String> {
    match evaluate_string(template, env, Scope::Webhook) {
        Ok(Json::String(s)) => Ok(s),
        Ok(other) => Err(format!(
            "{what}: the value is {}, not a string",
            kind_of(&other)
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn select_targets(
    criteria: &GenericWebhookTargetSelectionCriteria,
    env: &Env,
    warehouses: &[Warehouse],
) -> Result<Vec<(String, String)>, String> {
    if criteria.kind != GenericWebhookTargetKind::Warehouse {
        return Err(
            "kind Promotion is not supported by Barge: only Warehouses are refreshed \
             (Promotions are woken by pull-request events)"
                .into(),
        );
    }
    let name = if criteria.name.is_empty() {
        None
    } else {
        Some(value(&criteria.name, env, "name")?)
    };
    let labels = match &criteria.label_selector {
        Some(selector) => Some(evaluated_selector(selector, env)?),
        None => None,
    };
    let mut indices = Vec::new();
    for (i, requirement) in criteria
        .index_selector
        .iter()
        .flat_map(|s| &s.match_indices)
        .enumerate()
    {
        if requirement.key != INDEX_SUBSCRIBED_URLS {
            return Err(format!(
                "indexSelector.matchIndices[{i}]: Warehouses have no index {:?} (only {INDEX_SUBSCRIBED_URLS})",
                requirement.key
            ));
        }
        let v = value(
            &requirement.value,
            env,
            &format!("indexSelector.matchIndices[{i}].value"),
        )?;
        indices.push((requirement.operator, v));
    }
    Ok(warehouses
        .iter()
        .filter(|w| name.as_ref().is_none_or(|n| &w.name_any() == n))
        .filter(|w| {
            labels
                .as_ref()
                .is_none_or(|s| selector_matches(s, w.labels()))
        })
        .filter(|w| {
            let urls = subscribed_urls(w);
            indices.iter().all(|(op, v)| match op {
                IndexSelectorOperator::Equals => urls.contains(v),
                IndexSelectorOperator::NotEquals => !urls.contains(v),
            })
        })
        .map(|w| (w.namespace().unwrap_or_default(), w.name_any()))
        .collect())
}

fn evaluated_selector(selector: &LabelSelector, env: &Env) -> Result<LabelSelector, String> {
    let mut selector = selector.clone();
    if let Some(labels) = selector.match_labels.as_mut() {
        for (key, v) in labels.iter_mut() {
            *v = value(v, env, &format!("labelSelector.matchLabels[{key}]"))?;
        }
    }
    if let Some(requirements) = selector.match_expressions.as_mut() {
        for r in requirements.iter_mut() {
            for v in r.values.iter_mut().flatten() {
                *v = value(
                    v,
                    env,
                    &format!("labelSelector.matchExpressions[{}]", r.key),
                )?;
            }
        }
    }
    Ok(selector)
}

/// Whether `labels` satisfy `selector` (Kubernetes' semantics; an empty
/// selector selects everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        let value = labels.get(&r.key);
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// Kargo's overall answer: 500 when any action erred or failed in part.
pub fn any_failed(results: &[ActionResult]) -> bool {
    results.iter().any(|r| {
        matches!(
            r.result.as_str(),
            RESULT_ERROR | RESULT_FAILURE | RESULT_PARTIAL_SUCCESS
        )
    })
}

/// Records how the refresh of the selected targets went (`refreshed`: the
/// names annotated), with Kargo's result and summary.
pub fn record_refresh(result: &mut ActionResult, refreshed: &[String]) {
    if !result.result.is_empty() {
        return;
    }
    let total = result.selected_targets.len();
    let mut successes = 0;
    for target in &mut result.selected_targets {
        target.success = refreshed.contains(&target.name);
        successes += usize::from(target.success);
    }
    result.result = if successes == total {
        RESULT_SUCCESS
    } else if successes == 0 {
        RESULT_FAILURE
    } else {
        RESULT_PARTIAL_SUCCESS
    }
    .into();
    result.summary = format!("Refreshed {successes} of {total} selected resources");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::warehouse::WarehouseSpec;

    fn warehouse(name: &str, labels: &[(&str, &str)], repo: &str) -> Warehouse {
        let mut w = Warehouse::new(
            name,
            WarehouseSpec {
                subscriptions: vec![json!({"image": {"repoURL": repo}})],
                ..Default::default()
            },
        );
        w.metadata.namespace = Some("demo".into());
        w.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        w
    }

    fn warehouses() -> Vec<Warehouse> {
        vec![
            warehouse("api", &[("team", "backend")], "ghcr.io/acme/api"),
            warehouse("web", &[("team", "frontend")], "docker.io/library/nginx"),
            warehouse("worker", &[("team", "backend")], "ghcr.io/acme/worker"),
        ]
    }

    fn config(actions: Json) -> GenericReceiverConfig {
        serde_json::from_value(json!({"secretRef": {"name": "s"}, "actions": actions})).unwrap()
    }

    fn run(
        config: &GenericReceiverConfig,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Vec<ActionResult> {
        let headers: Headers = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let request = Request {
            method: "POST",
            url: "/generic/abc?env=prod&x=a%20b",
            headers: &headers,
            body: body.as_bytes(),
        };
        let base = base_environment(&request).unwrap();
        select(config, &base, &warehouses())
    }

    fn names(result: &ActionResult) -> Vec<&str> {
        result
            .selected_targets
            .iter()
            .map(|t| t.name.as_str())
            .collect()
    }

    #[test]
    fn an_action_runs_only_when_its_expression_holds() {
        let c = config(json!([{
            "action": "Refresh",
            "whenExpression": "request.header('X-Event') == 'push' && request.body.ref == 'refs/heads/main'",
            "targetSelectionCriteria": [{"kind": "Warehouse", "name": "api"}]
        }]));
        let yes = run(&c, r#"{"ref":"refs/heads/main"}"#, &[("X-Event", "push")]);
        assert!(yes[0].matched_when_expression);
        assert_eq!(names(&yes[0]), vec!["api"]);
        let no = run(&c, r#"{"ref":"refs/heads/dev"}"#, &[("X-Event", "push")]);
        assert!(!no[0].matched_when_expression);
        assert_eq!(no[0].result, RESULT_NOT_APPLICABLE);
        assert!(no[0].selected_targets.is_empty());
    }

    #[test]
    fn a_when_expression_that_fails_or_is_not_a_bool_is_an_error_result() {
        let c = config(json!([
            {"action": "Refresh", "whenExpression": "request.body.ref",
             "targetSelectionCriteria": [{"kind": "Warehouse"}]},
            {"action": "Refresh", "whenExpression": "1 +",
             "targetSelectionCriteria": [{"kind": "Warehouse"}]}
        ]));
        let results = run(&c, r#"{"ref":"x"}"#, &[]);
        assert_eq!(results[0].result, RESULT_ERROR);
        assert!(
            results[0].summary.contains("not a bool"),
            "{}",
            results[0].summary
        );
        assert_eq!(results[1].result, RESULT_ERROR);
        assert!(any_failed(&results));
    }

    #[test]
    fn targets_are_selected_by_name_expression_labels_and_index() {
        let c = config(json!([
            {"action": "Refresh",
             "targetSelectionCriteria": [{"kind": "Warehouse", "name": "${{ request.body.name }}"}]},
            {"action": "Refresh",
             "parameters": {"team": "${{ request.params('team') == '' ? 'backend' : 'x' }}"},
             "targetSelectionCriteria": [{"kind": "Warehouse",
                "labelSelector": {"matchLabels": {"team": "${{ params.team }}"}}}]},
            {"action": "Refresh",
             "targetSelectionCriteria": [{"kind": "Warehouse",
                "indexSelector": {"matchIndices": [{"key": "subscribedURLs", "operator": "Equals",
                    "value": "${{ normalizeImage(request.body.image) }}"}]}}]},
            {"action": "Refresh",
             "targetSelectionCriteria": [{"kind": "Warehouse",
                "labelSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["backend"]}]},
                "indexSelector": {"matchIndices": [{"key": "subscribedURLs", "operator": "NotEquals",
                    "value": "ghcr.io/acme/api"}]}}]}
        ]));
        let results = run(
            &c,
            r#"{"name":"worker","image":"index.docker.io/library/nginx:1.27"}"#,
            &[],
        );
        assert_eq!(names(&results[0]), vec!["worker"]);
        assert_eq!(names(&results[1]), vec!["api", "worker"]);
        assert_eq!(names(&results[2]), vec!["web"]);
        assert_eq!(names(&results[3]), vec!["worker"]);
        assert!(results.iter().all(|r| r.matched_when_expression));
    }

    #[test]
    fn the_request_is_seen_as_kargo_shows_it() {
        let c = config(json!([{"action": "Refresh",
            "whenExpression": "request.params('x') == 'a b' && request.headers('X-Token')[0] == 't' && request.method == 'POST' && request.body == nil",
            "targetSelectionCriteria": [{"kind": "Warehouse", "name": "web"}]}]));
        let results = run(&c, "", &[("X-Token", "t")]);
        assert_eq!(results[0].result, "", "{:?}", results[0]);
        assert_eq!(names(&results[0]), vec!["web"]);
    }

    #[test]
    fn promotions_and_unknown_indices_are_refused_by_name() {
        let c = config(json!([
            {"action": "Refresh", "targetSelectionCriteria": [{"kind": "Promotion", "name": "p"}]},
            {"action": "Refresh", "targetSelectionCriteria": [{"kind": "Warehouse",
                "indexSelector": {"matchIndices": [{"key": "receiverPaths", "operator": "Equals", "value": "x"}]}}]}
        ]));
        let results = run(&c, "{}", &[]);
        assert!(
            results[0].summary.contains("Promotion"),
            "{}",
            results[0].summary
        );
        assert!(
            results[1].summary.contains("receiverPaths"),
            "{}",
            results[1].summary
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused() {
        let headers = Headers::new();
        let request = Request {
            method: "POST",
            url: "/generic/abc",
            headers: &headers,
            body: b"{nope",
        };
        assert!(base_environment(&request).is_err());
    }

    #[test]
    fn a_refresh_is_summarized_as_kargo_does() {
        let c = config(json!([{"action": "Refresh",
            "targetSelectionCriteria": [{"kind": "Warehouse", "labelSelector": {"matchLabels": {"team": "backend"}}}]}]));
        let mut results = run(&c, "{}", &[]);
        record_refresh(&mut results[0], &["api".to_string()]);
        assert_eq!(results[0].result, RESULT_PARTIAL_SUCCESS);
        assert_eq!(results[0].summary, "Refreshed 1 of 2 selected resources");
        let json = serde_json::to_value(&results[0]).unwrap();
        assert_eq!(json["action"], "Refresh");
        assert_eq!(json["selectedTargets"][0]["success"], true);
    }
}
