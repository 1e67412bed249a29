//! Shared set-up for the double's tests: one control plane per test binary,
//! a fresh namespace and a double watching only it per test.

#![allow(dead_code)]

use std::time::Duration;

use barge_argocd_double::fixtures::{Recorder, applications};
use barge_argocd_double::{CRD_YAML, Double, DoubleConfig, DoubleHandle, Journal};
use barge_testenv::TestEnv;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::Value;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Generous: the machine is shared with concurrent builds.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Setup {
    pub env: &'static TestEnv,
    pub ns: String,
    pub client: Client,
    pub api: Api<DynamicObject>,
    pub double: DoubleHandle,
}

impl Setup {
    pub fn journal(&self) -> Journal {
        self.double.journal()
    }

    pub async fn record(&self, name: &str) -> Result<Recorder, Box<dyn std::error::Error>> {
        Ok(Recorder::start(&self.api, name).await?)
    }
}

pub async fn env() -> Result<&'static TestEnv, Box<dyn std::error::Error>> {
    let env = TestEnv::shared().await?;
    env.apply_crds(CRD_YAML).await?;
    Ok(env)
}

/// A namespace with a double (configured by `config`) watching it.
pub async fn setup(
    config: impl FnOnce(DoubleConfig) -> DoubleConfig,
) -> Result<Setup, Box<dyn std::error::Error>> {
    let env = env().await?;
    let ns = env.namespace().await?;
    let client = env.client();
    let double = Double::new(client.clone(), config(DoubleConfig::namespaced(&ns))).spawn();
    Ok(Setup {
        env,
        api: applications(client.clone(), &ns),
        ns,
        client,
        double,
    })
}

pub fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

pub fn phase(v: &Value) -> Option<&str> {
    s(v, "/status/operationState/phase")
}

pub fn has_operation(v: &Value) -> bool {
    v.get("operation").is_some_and(|o| !o.is_null())
}

/// A completed operation state (Succeeded, Failed or Error).
pub fn completed(v: &Value) -> bool {
    matches!(phase(v), Some("Succeeded" | "Failed" | "Error"))
}

/// Argo CD's "refreshed after the operation": `reconciledAt >= finishedAt`.
/// Both are RFC 3339 UTC at second precision, so they compare as text.
pub fn reconciled_after_finish(v: &Value) -> bool {
    match (
        s(v, "/status/reconciledAt"),
        s(v, "/status/operationState/finishedAt"),
    ) {
        (Some(r), Some(f)) => {
            assert_second_precision(r);
            assert_second_precision(f);
            r >= f
        }
        _ => false,
    }
}

pub fn assert_second_precision(ts: &str) {
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "not RFC 3339 UTC at second precision: {ts}"
    );
}

/// The index of the first version satisfying `pred`, at or after `from`.
pub fn first(versions: &[Value], from: usize, pred: impl Fn(&Value) -> bool) -> Option<usize> {
    versions
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, v)| pred(v))
        .map(|(i, _)| i)
}

pub fn describe(versions: &[Value]) -> String {
    versions
        .iter()
        .map(|v| {
            format!(
                "rv={} phase={:?} msg={:?} sync={:?}/{:?} health={:?} history={} op={} refresh={:?} reconciled={:?} finished={:?}",
                s(v, "/metadata/resourceVersion").unwrap_or_default(),
                phase(v),
                s(v, "/status/operationState/message"),
                s(v, "/status/sync/status"),
                s(v, "/status/sync/revision"),
                s(v, "/status/health/status"),
                v.pointer("/status/history")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
                has_operation(v),
                s(v, "/metadata/annotations/argocd.argoproj.io~1refresh"),
                s(v, "/status/reconciledAt"),
                s(v, "/status/operationState/finishedAt"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
