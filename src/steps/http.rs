//! `http`: one HTTP request, judged by `successExpression` /
//! `failureExpression` over the response. Failure is terminal; success
//! gives the `outputs`; neither keeps the step Running, asked again after
//! `pollInterval` (at least 10 s, 30 s by default) by a timer, since nothing
//! else would wake it. Without either expression a 2xx succeeds and
//! anything else is an error that is retried.
//!
//! The expressions see `response`: `status`, `headers` (canonical names,
//! each a list of values, as Go's `http.Header`) and `body` (JSON or YAML
//! parsed by content type, plain text as a string, an empty map when empty).

use std::sync::Once;
use std::time::Duration;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    BuiltinStep, StepContext, StepRun, config_duration as duration, parse_config, retryable,
    terminal,
};
use crate::expr::{Document, Engine, Env, Scope};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "http";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_POLL: Duration = Duration::from_secs(30);
const MIN_POLL: Duration = Duration::from_secs(10);
/// Responses larger than this are refused rather than held in memory.
const MAX_BODY: usize = 8 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    query_params: Vec<NameValue>,
    body: Option<String>,
    #[serde(default, rename = "insecureSkipTLSVerify")]
    insecure_skip_tls_verify: bool,
    proxy: Option<String>,
    timeout: Option<String>,
    poll_interval: Option<String>,
    response_content_type: Option<String>,
    success_expression: Option<String>,
    failure_expression: Option<String>,
    error_expression: Option<String>,
    #[serde(default)]
    outputs: Vec<Output>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Output {
    name: String,
    from_expression: String,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed()).config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(request(ctx).await)
}

async fn request(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    let timeout = duration(config.timeout.as_deref(), "timeout")?.unwrap_or(DEFAULT_TIMEOUT);
    let poll = duration(config.poll_interval.as_deref(), "pollInterval")?
        .unwrap_or(DEFAULT_POLL)
        .max(MIN_POLL);
    let client = client(&config, timeout)?;
    let method = config
        .method
        .as_deref()
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| terminal(format!("config.method: {method:?} is not an HTTP method")))?;
    let mut url =
        reqwest::Url::parse(&config.url).map_err(|e| terminal(format!("config.url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(terminal("config.url: only http and https URLs are allowed"));
    }
    if !config.query_params.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for param in &config.query_params {
            pairs.append_pair(&param.name, &param.value);
        }
    }
    let mut request = client.request(method, url);
    for header in &config.headers {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    if let Some(body) = &config.body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        // Without the URL: it may carry a token in its query.
        .map_err(|e| retryable(format!("sending the request: {}", e.without_url())))?;
    let response = read(response, config.response_content_type.as_deref()).await?;
    judge(&config, response, poll)
}

/// rustls needs a process-wide crypto provider; ring is the one kube uses.
static PROVIDER: Once = Once::new();

fn client(config: &Config, timeout: Duration) -> Result<reqwest::Client, StepError> {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .danger_accept_invalid_certs(config.insecure_skip_tls_verify);
    if let Some(proxy) = config.proxy.as_deref().filter(|p| !p.is_empty()) {
        if !proxy.contains("://") {
            return Err(terminal("config.proxy: the proxy URL needs a scheme"));
        }
        let proxy =
            reqwest::Proxy::all(proxy).map_err(|e| terminal(format!("config.proxy: {e}")))?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| retryable(format!("building the HTTP client: {e}")))
}

/// The response as the expressions see it.
async fn read(response: reqwest::Response, forced_type: Option<&str>) -> Result<Value, StepError> {
    let status = response.status().as_u16();
    let mut headers: Map<String, Value> = Map::new();
    for (name, value) in response.headers() {
        let values = headers
            .entry(canonical(name.as_str()))
            .or_insert_with(|| json!([]));
        if let Value::Array(values) = values {
            values.push(Value::String(
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
        }
    }
    let content_type = forced_type
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .or_else(|| {
            response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let mut response = response;
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| retryable(format!("reading the response: {}", e.without_url())))?
    {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(terminal(format!(
                "the response body is larger than {} MiB",
                MAX_BODY >> 20
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = body(&content_type, &bytes);
    Ok(json!({"status": status, "headers": headers, "body": body}))
}

/// `content-type` as Go writes header names: `Content-Type`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn body(content_type: &str, bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return json!({});
    }
    let text = String::from_utf8_lossy(bytes);
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "text/plain" => Value::String(text.into_owned()),
        "application/yaml" | "text/yaml" | "application/x-yaml" => {
            serde_saphyr::from_str(&text).unwrap_or_else(|_| json!({}))
        }
        _ => serde_json::from_str(&text).unwrap_or_else(|_| json!({})),
    }
}

fn judge(config: &Config, response: Value, poll: Duration) -> Result<StepResult, StepError> {
    let status = response["status"].as_u64().unwrap_or_default();
    let env = Env {
        document: Some(Document {
            fields: [("response".to_string(), response)].into_iter().collect(),
            integers: true,
        }),
        ..Env::default()
    };
    let engine = Engine::default();
    let check = |field: &str, expression: &Option<String>| -> Result<Option<bool>, StepError> {
        let Some(expression) = expression.as_deref().filter(|e| !e.trim().is_empty()) else {
            return Ok(None);
        };
        match engine.evaluate(expression, &env, Scope::Vars) {
            Ok(Value::Bool(b)) => Ok(Some(b)),
            Ok(other) => Err(terminal(format!(
                "config.{field}: evaluated to {other}, not a boolean"
            ))),
            Err(e) => Err(terminal(format!("config.{field}: {e}"))),
        }
    };
    let failed = check("failureExpression", &config.failure_expression)?;
    let succeeded = check("successExpression", &config.success_expression)?;
    if failed == Some(true) {
        let detail = config
            .error_expression
            .as_deref()
            .filter(|e| !e.trim().is_empty())
            .and_then(|e| engine.evaluate(e, &env, Scope::Vars).ok())
            .and_then(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string));
        let message = match detail {
            Some(detail) => format!("HTTP ({status}) response met failure criteria: {detail:?}"),
            None => format!("HTTP ({status}) response met failure criteria"),
        };
        return Err(terminal(message));
    }
    let success = match (succeeded, failed) {
        (Some(s), _) => s,
        (None, Some(false)) => true,
        (None, _) => {
            if !(200..300).contains(&status) {
                return Err(retryable(format!(
                    "HTTP ({status}) response is not a success"
                )));
            }
            true
        }
    };
    if !success {
        let mut result = StepResult::new(StepStatus::Running);
        result.message = Some(format!(
            "HTTP ({status}) response met neither the success nor the failure criteria"
        ));
        result.poll_after = Some(poll);
        return Ok(result);
    }
    let mut outputs = Map::new();
    for (i, output) in config.outputs.iter().enumerate() {
        let value = engine
            .evaluate(&output.from_expression, &env, Scope::Vars)
            .map_err(|e| terminal(format!("config.outputs[{i}].fromExpression: {e}")))?;
        outputs.insert(output.name.clone(), value);
    }
    Ok(StepResult::succeeded_with(Value::Object(outputs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_canonical_as_in_go() {
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("x-request-id"), "X-Request-Id");
    }

    #[test]
    fn bodies_are_parsed_by_content_type() {
        assert_eq!(
            body("application/json; charset=utf-8", b"{\"a\":1}"),
            json!({"a": 1})
        );
        assert_eq!(body("application/yaml", b"a: 1\n"), json!({"a": 1}));
        assert_eq!(body("text/plain", b"ok"), json!("ok"));
        assert_eq!(body("application/octet-stream", b"not json"), json!({}));
        assert_eq!(body("application/json", b""), json!({}));
    }
}
