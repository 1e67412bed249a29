//! The Helm chart `charts/barge`: `helm lint` passes; its CRDs are the
//! committed `crds/` (a copy kept by `make chart-crds`, checked here) and are
//! kept on uninstall; `helm template` output with the default values and with
//! `charts/barge/ci/custom-values.yaml` is snapshot-tested
//! (`tests/snapshots/chart-*.yaml`, regenerate with
//! `BARGE_UPDATE_SNAPSHOTS=1 cargo test --test chart`); the Deployment is
//! hardened; the webhook endpoint gets a Service, an optional Ingress and a
//! published URL; `values.schema.json` rejects bad values; and `helm install` into
//! a real kube-apiserver creates every object.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use barge_testenv::TestEnv;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use serde_json::Value;
use support::{Error, TestResult, succeeded};

const UPDATE_SNAPSHOTS: &str = "BARGE_UPDATE_SNAPSHOTS";
const KEEP: &str = "helm.sh/resource-policy";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts/barge")
}

fn custom_values() -> PathBuf {
    chart().join("ci/custom-values.yaml")
}

fn path_str(path: &Path) -> Result<&str, Error> {
    path.to_str()
        .ok_or_else(|| format!("not UTF-8: {}", path.display()).into())
}

/// Runs the control plane's helm (no cluster needed) with its caches and
/// configuration in a temporary directory.
fn helm(args: &[&str]) -> Result<Output, Error> {
    let program = barge_testenv::bin_dir().join("helm");
    if !program.is_file() {
        return Err(format!(
            "{} not found: run `make control-plane` (or set BARGE_K8S_BIN)",
            program.display()
        )
        .into());
    }
    let home = tempfile::tempdir()?;
    Ok(Command::new(&program)
        .args(args)
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env("KUBECONFIG", home.path().join("no-cluster"))
        .output()?)
}

/// `helm template barge charts/barge --namespace barge-system` plus `extra`.
fn template(extra: &[&str]) -> Result<String, Error> {
    let chart = chart();
    let mut args = vec![
        "template",
        "barge",
        path_str(&chart)?,
        "--namespace",
        "barge-system",
    ];
    args.extend_from_slice(extra);
    succeeded(&format!("helm {}", args.join(" ")), helm(&args)?)
}

fn documents(yaml: &str) -> Result<Vec<Value>, Error> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one_of_kind<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value, Error> {
    match of_kind(docs, kind)[..] {
        [one] => Ok(one),
        ref all => Err(format!("expected one {kind}, rendered {}", all.len()).into()),
    }
}

/// The `*.yaml` files of a directory by file name.
fn yaml_files(dir: &Path) -> Result<BTreeMap<String, String>, Error> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            files.insert(name, std::fs::read_to_string(&path)?);
        }
    }
    Ok(files)
}

#[test]
fn helm_lint_passes_with_default_and_custom_values() -> TestResult {
    let chart = chart();
    let values = custom_values();
    succeeded(
        "helm lint --strict charts/barge",
        helm(&["lint", "--strict", path_str(&chart)?])?,
    )?;
    succeeded(
        "helm lint --strict charts/barge -f ci/custom-values.yaml",
        helm(&[
            "lint",
            "--strict",
            path_str(&chart)?,
            "-f",
            path_str(&values)?,
        ])?,
    )?;
    Ok(())
}

#[test]
fn the_chart_installs_the_committed_create_actor_policy_and_trusts_it_only_then() -> TestResult {
    let committed = std::fs::read_to_string(root().join("deploy/create-actor-policy.yaml"))?;
    let copied = std::fs::read_to_string(chart().join("files/create-actor-policy.yaml"))?;
    assert!(
        copied == committed,
        "charts/barge/files/create-actor-policy.yaml differs from deploy/: run `make chart-crds` and commit"
    );
    let expected: Vec<Value> = serde_saphyr::from_multiple::<Value>(&committed)?
        .into_iter()
        .filter(|d| !d.is_null())
        .collect();
    let trusted = |docs: &[Value]| -> Option<String> {
        let deployment = of_kind(docs, "Deployment").into_iter().next()?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        env_value(container, "BARGE_TRUST_CREATE_ACTOR").map(String::from)
    };

    let docs = documents(&template(&[])?)?;
    for object in &expected {
        let kind = object["kind"].as_str().unwrap_or_default();
        let rendered = of_kind(&docs, kind);
        assert_eq!(rendered.len(), 1, "{kind}");
        assert_eq!(rendered[0]["spec"], object["spec"], "{kind}");
    }
    assert_eq!(trusted(&docs).as_deref(), Some("true"));

    let docs = documents(&template(&["--set", "createActorPolicy.enabled=false"])?)?;
    assert!(of_kind(&docs, "ValidatingAdmissionPolicy").is_empty());
    assert!(of_kind(&docs, "ValidatingAdmissionPolicyBinding").is_empty());
    assert_eq!(trusted(&docs).as_deref(), Some("false"));
    Ok(())
}

#[test]
fn the_charts_crds_are_the_committed_crds() -> TestResult {
    let committed = yaml_files(&root().join("crds"))?;
    let copied = yaml_files(&chart().join("files/crds"))?;
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert!(!committed.is_empty(), "crds/ has no CRDs");
    assert_eq!(
        names(&copied),
        names(&committed),
        "charts/barge/files/crds/ does not hold the same files as crds/: run `make chart-crds` and commit"
    );
    for (name, text) in &committed {
        assert!(
            copied.get(name) == Some(text),
            "charts/barge/files/crds/{name} differs from crds/{name}: run `make chart-crds` and commit"
        );
    }
    Ok(())
}

#[test]
fn rendered_crds_are_the_committed_crds_and_kept_on_uninstall() -> TestResult {
    let committed: Vec<Value> = yaml_files(&root().join("crds"))?
        .values()
        .map(|text| serde_saphyr::from_str::<Value>(text))
        .collect::<Result<_, _>>()?;
    let docs = documents(&template(&[])?)?;
    let rendered = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(rendered.len(), committed.len(), "one CRD per file in crds/");
    for crd in &committed {
        let name = &crd["metadata"]["name"];
        let Some(ours) = rendered.iter().find(|r| r["metadata"]["name"] == *name) else {
            return Err(format!("CRD {name} is not rendered").into());
        };
        // Helm's fromYaml reads numbers as floats: compare as numbers.
        assert_eq!(
            normalize_numbers(&ours["spec"]),
            normalize_numbers(&crd["spec"]),
            "the chart's CRD {name} differs from crds/"
        );
        assert_eq!(ours["metadata"]["annotations"][KEEP], "keep", "{name}");
        assert_eq!(
            ours["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "barge"
        );
    }

    let not_kept = documents(&template(&["--set", "crds.keep=false"])?)?;
    for crd in of_kind(&not_kept, "CustomResourceDefinition") {
        assert!(crd["metadata"]["annotations"].get(KEEP).is_none());
    }
    let none = documents(&template(&["--set", "crds.install=false"])?)?;
    assert!(of_kind(&none, "CustomResourceDefinition").is_empty());
    Ok(())
}

fn normalize_numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(normalize_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalize_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `helm template` output for a snapshot: each CRD's `spec` (hundreds of KB,
/// checked against `crds/` above) is replaced by a note.
fn snapshot_text(rendered: &str) -> String {
    let mut out = String::new();
    for doc in rendered.split("\n---\n") {
        if !doc.contains("\nkind: CustomResourceDefinition\n") {
            out.push_str(doc);
        } else {
            for line in doc.lines() {
                if line == "spec:" {
                    out.push_str(
                        "spec: {} # elided: the CRD in files/crds/, checked against crds/ by this test file\n",
                    );
                    break;
                }
                out.push_str(line);
                out.push('\n');
            }
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("---\n");
    }
    out
}

fn check_snapshot(name: &str, rendered: &str) -> TestResult {
    let path = root().join("tests/snapshots").join(name);
    let text = snapshot_text(rendered);
    if std::env::var_os(UPDATE_SNAPSHOTS).is_some() {
        std::fs::create_dir_all(root().join("tests/snapshots"))?;
        std::fs::write(&path, &text)?;
        return Ok(());
    }
    let committed = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e}; create it with {UPDATE_SNAPSHOTS}=1 cargo test --test chart",
            path.display()
        )
    })?;
    if committed != text {
        let (line, old, new) = committed
            .lines()
            .chain(std::iter::repeat("<end of file>"))
            .zip(text.lines().chain(std::iter::repeat("<end of file>")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i + 1, a.to_string(), b.to_string()))
            .unwrap_or_default();
        panic!(
            "helm template output differs from {} at line {line}:\n  snapshot: {old}\n  rendered: {new}\n\
             If the change is intended, regenerate with {UPDATE_SNAPSHOTS}=1 cargo test --test chart and commit.",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn template_with_default_values_matches_the_snapshot() -> TestResult {
    check_snapshot("chart-default.yaml", &template(&[])?)
}

#[test]
fn template_with_custom_values_matches_the_snapshot() -> TestResult {
    let values = custom_values();
    check_snapshot("chart-custom.yaml", &template(&["-f", path_str(&values)?])?)
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[test]
fn the_deployment_is_hardened_and_configured_by_env() -> TestResult {
    let docs = documents(&template(&[])?)?;
    let deployment = one_of_kind(&docs, "Deployment")?;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["serviceAccountName"], "barge");
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["args"], serde_json::json!(["run"]));
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][1]["name"], "webhooks");
    assert_eq!(c["ports"][1]["containerPort"], 8081);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    for (name, value) in [
        ("BARGE_BACKSTOP", "5m"),
        ("BARGE_ARGOCD_NAMESPACE", "argocd"),
        ("BARGE_ARGOCD_ALL_NAMESPACES", "false"),
        ("BARGE_TRUST_CREATE_ACTOR", "true"),
        // The root filesystem is read-only: Promotions' files go to an emptyDir.
        ("BARGE_WORK_DIR", "/var/lib/barge/work"),
        ("BARGE_CONCURRENCY", "16"),
        ("BARGE_LOG_FORMAT", "json"),
        ("BARGE_LEADER_ELECTION", "false"),
        ("BARGE_HTTP_ADDR", "0.0.0.0:8080"),
        ("BARGE_WEBHOOK_ADDR", "0.0.0.0:8081"),
    ] {
        assert_eq!(env_value(c, name), Some(value), "{name}");
    }
    let from_field = |name: &str| {
        c["env"].as_array().and_then(|env| {
            env.iter()
                .find(|e| e["name"] == name)
                .and_then(|e| e["valueFrom"]["fieldRef"]["fieldPath"].as_str())
                .map(String::from)
        })
    };
    assert_eq!(from_field("POD_NAME").as_deref(), Some("metadata.name"));
    assert_eq!(
        from_field("POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    // Unset optional settings are not passed at all.
    assert_eq!(env_value(c, "BARGE_NAMESPACE"), None);
    assert_eq!(env_value(c, "BARGE_SHARD"), None);
    assert_eq!(env_value(c, "BARGE_LEASE_NAME"), None);
    assert_eq!(env_value(c, "BARGE_WEBHOOK_BASE_URL"), None);
    // No leader election with one replica: no Lease access either.
    assert!(
        !of_kind(&docs, "Role")
            .iter()
            .any(|r| r["metadata"]["name"] == "barge-leader-election")
    );

    // Two replicas turn leader election on, with its Role.
    let ha = documents(&template(&["--set", "replicas=2"])?)?;
    let deployment = one_of_kind(&ha, "Deployment")?;
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_value(c, "BARGE_LEADER_ELECTION"), Some("true"));
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let Some(lease_role) = of_kind(&ha, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "barge-leader-election")
    else {
        return Err("replicas=2 renders no leader-election Role".into());
    };
    assert_eq!(lease_role["metadata"]["namespace"], "barge-system");
    assert_eq!(
        lease_role["rules"],
        serde_json::json!([
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["create"],
            },
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": ["barge"],
                "verbs": ["get", "patch"],
            },
        ])
    );
    // The Lease it may read and renew is the one the controller is told to use.
    assert_eq!(env_value(c, "BARGE_LEASE_NAME"), Some("barge"));
    assert_eq!(env_value(c, "BARGE_LEASE_DURATION"), Some("15s"));
    Ok(())
}

#[test]
fn application_access_is_a_role_in_the_argocd_namespace_unless_all_namespaces() -> TestResult {
    let apps = |rules: &Value| {
        rules
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|r| r["apiGroups"][0] == "argoproj.io")
                    .count()
            })
            .unwrap_or_default()
    };
    let docs = documents(&template(&["--set", "controller.argocd.namespace=gitops"])?)?;
    let cluster_role = one_of_kind(&docs, "ClusterRole")?;
    assert_eq!(apps(&cluster_role["rules"]), 0);
    let Some(role) = of_kind(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "barge-argocd")
    else {
        return Err("no Argo CD Role".into());
    };
    assert_eq!(role["metadata"]["namespace"], "gitops");
    assert_eq!(apps(&role["rules"]), 3);

    let all = documents(&template(&[
        "--set",
        "controller.argocd.allNamespaces=true",
    ])?)?;
    assert_eq!(apps(&one_of_kind(&all, "ClusterRole")?["rules"]), 3);
    assert!(
        !of_kind(&all, "Role")
            .iter()
            .any(|r| r["metadata"]["name"] == "barge-argocd")
    );
    Ok(())
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
}

/// The controller container of the one rendered Deployment.
fn controller_container(docs: &[Value]) -> Result<&Value, Error> {
    Ok(&one_of_kind(docs, "Deployment")?["spec"]["template"]["spec"]["containers"][0])
}

#[test]
fn the_webhook_endpoint_has_a_service_an_optional_ingress_and_a_published_url() -> TestResult {
    // By default: served on 8081 by every Pod, behind a ClusterIP Service,
    // no Ingress and no public URL.
    let docs = documents(&template(&[])?)?;
    let Some(service) = named(&docs, "Service", "barge-webhooks") else {
        return Err("no barge-webhooks Service".into());
    };
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(
        service["spec"]["ports"],
        serde_json::json!([
            {"name": "http-webhooks", "port": 80, "targetPort": "webhooks", "protocol": "TCP"},
        ])
    );
    let deployment = one_of_kind(&docs, "Deployment")?;
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert!(of_kind(&docs, "Ingress").is_empty());

    // The live view is off unless asked for, then on its own port.
    assert_eq!(
        env_value(controller_container(&docs)?, "BARGE_DASHBOARD_ADDR"),
        None
    );
    let docs = documents(&template(&["--set", "dashboard.enabled=true"])?)?;
    let c = controller_container(&docs)?;
    assert_eq!(env_value(c, "BARGE_DASHBOARD_ADDR"), Some("0.0.0.0:8090"));
    let ports = c["ports"].as_array().cloned().unwrap_or_default();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "dashboard" && p["containerPort"] == 8090),
        "{ports:?}"
    );

    // An Ingress with a host publishes its URL: http without tls, the path
    // without its trailing slash.
    let docs = documents(&template(&[
        "--set",
        "webhooks.ingress.enabled=true",
        "--set",
        "webhooks.ingress.host=barge.example.com",
        "--set",
        "webhooks.ingress.path=/hooks/",
    ])?)?;
    let Some(ingress) = named(&docs, "Ingress", "barge-webhooks") else {
        return Err("webhooks.ingress.enabled renders no barge-webhooks Ingress".into());
    };
    assert_eq!(ingress["apiVersion"], "networking.k8s.io/v1");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "barge.example.com");
    let path = &rule["http"]["paths"][0];
    assert_eq!(path["path"], "/hooks/");
    assert_eq!(path["pathType"], "Prefix");
    assert_eq!(path["backend"]["service"]["name"], "barge-webhooks");
    assert_eq!(path["backend"]["service"]["port"]["name"], "http-webhooks");
    assert!(ingress["spec"].get("tls").is_none());
    assert_eq!(
        env_value(controller_container(&docs)?, "BARGE_WEBHOOK_BASE_URL"),
        Some("http://barge.example.com/hooks")
    );

    // With tls, https; the path "/" adds nothing.
    let values = custom_values();
    let docs = documents(&template(&["-f", path_str(&values)?])?)?;
    let Some(ingress) = named(&docs, "Ingress", "barge-ha-webhooks") else {
        return Err("ci/custom-values.yaml renders no barge-ha-webhooks Ingress".into());
    };
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"],
        "barge-webhooks-tls"
    );
    let c = controller_container(&docs)?;
    assert_eq!(
        env_value(c, "BARGE_WEBHOOK_BASE_URL"),
        Some("https://barge.example.com")
    );
    assert_eq!(env_value(c, "BARGE_WEBHOOK_ADDR"), Some("0.0.0.0:9091"));

    // An explicit baseURL wins over the Ingress's.
    let docs = documents(&template(&[
        "--set",
        "webhooks.baseURL=https://hooks.example.com/barge",
        "--set",
        "webhooks.ingress.enabled=true",
        "--set",
        "webhooks.ingress.host=barge.example.com",
    ])?)?;
    assert_eq!(
        env_value(controller_container(&docs)?, "BARGE_WEBHOOK_BASE_URL"),
        Some("https://hooks.example.com/barge")
    );

    // Turned off: no listener, no port, no Service, no Ingress.
    let docs = documents(&template(&[
        "--set",
        "webhooks.enabled=false",
        "--set",
        "webhooks.ingress.enabled=true",
        "--set",
        "webhooks.ingress.host=barge.example.com",
    ])?)?;
    let c = controller_container(&docs)?;
    assert_eq!(env_value(c, "BARGE_WEBHOOK_ADDR"), Some(""));
    assert_eq!(env_value(c, "BARGE_WEBHOOK_BASE_URL"), None);
    let ports = c["ports"].as_array().cloned().unwrap_or_default();
    assert!(!ports.iter().any(|p| p["name"] == "webhooks"), "{ports:?}");
    assert!(named(&docs, "Service", "barge-webhooks").is_none());
    assert!(of_kind(&docs, "Ingress").is_empty());

    // The two endpoints cannot share a port.
    let chart = chart();
    let output = helm(&[
        "template",
        "barge",
        path_str(&chart)?,
        "--set",
        "webhooks.port=8080",
    ])?;
    assert!(
        !output.status.success(),
        "webhooks.port=http.port was accepted"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("webhooks.port must differ"));
    Ok(())
}

#[test]
fn the_values_schema_rejects_bad_values() -> TestResult {
    let chart = chart();
    let chart = path_str(&chart)?;
    for (args, complaint) in [
        (vec!["--set", "replicas=two"], "/replicas"),
        (vec!["--set", "replicas=-1"], "/replicas"),
        (vec!["--set", "unknownTopLevel=1"], "unknownTopLevel"),
        (
            vec!["--set", "controller.logFormat=xml"],
            "/controller/logFormat",
        ),
        (
            vec!["--set", "controller.backstop=5"],
            "/controller/backstop",
        ),
        (
            vec!["--set", "controller.backstop=soon"],
            "/controller/backstop",
        ),
        (
            vec!["--set", "controller.concurrency=0"],
            "/controller/concurrency",
        ),
        (vec!["--set", "http.port=70000"], "/http/port"),
        (vec!["--set", "crds.install=maybe"], "/crds/install"),
        (
            vec!["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (
            vec!["--set", "podDisruptionBudget.maxUnavailable=half"],
            "/podDisruptionBudget/maxUnavailable",
        ),
        (
            vec!["--set", "controller.argocd.namespace=Argo_CD"],
            "/controller/argocd/namespace",
        ),
        (vec!["--set", "webhooks.port=webhooks"], "/webhooks/port"),
        (vec!["--set", "webhooks.enabled=yes"], "/webhooks/enabled"),
        (
            vec!["--set", "webhooks.baseURL=barge.example.com"],
            "/webhooks/baseURL",
        ),
        (
            vec!["--set", "webhooks.ingress.pathType=Regex"],
            "/webhooks/ingress/pathType",
        ),
        (vec!["--set", "webhooks.ingress.unknown=1"], "unknown"),
    ] {
        let mut full = vec!["template", "barge", chart];
        full.extend_from_slice(&args);
        let output = helm(&full)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "helm template {} was accepted",
            args.join(" ")
        );
        assert!(
            stderr.contains("schema") && stderr.contains(complaint),
            "helm template {}: expected a schema error at {complaint}, got:\n{stderr}",
            args.join(" ")
        );
    }
    // Good values of the same kinds pass.
    for args in [
        vec!["--set", "replicas=0"],
        vec!["--set", "controller.backstop=1h30m"],
        vec!["--set", "podDisruptionBudget.maxUnavailable=50%"],
        vec!["--set", "controller.logFormat=text"],
        vec!["--set", "webhooks.port=9443"],
        vec!["--set", "webhooks.baseURL=https://barge.example.com/hooks"],
    ] {
        let mut full = vec!["template", "barge", chart];
        full.extend_from_slice(&args);
        succeeded(&format!("helm template {}", args.join(" ")), helm(&full)?)?;
    }
    Ok(())
}

fn helm_in(env: &TestEnv, args: &[&str]) -> Result<String, Error> {
    succeeded(&format!("helm {}", args.join(" ")), env.helm(args)?)
}

fn kubectl_in(env: &TestEnv, args: &[&str]) -> Result<String, Error> {
    succeeded(&format!("kubectl {}", args.join(" ")), env.kubectl(args)?)
}

/// Every object of a release's manifest exists (`kubectl get -f`), and the
/// names kubectl reports are exactly those of the manifest.
fn every_object_exists(env: &TestEnv, release: &str, ns: &str) -> Result<Vec<String>, Error> {
    let manifest = helm_in(env, &["get", "manifest", release, "-n", ns])?;
    let docs = documents(&manifest)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, &manifest)?;
    let names = kubectl_in(env, &["get", "-f", path_str(&file)?, "-o", "name"])?;
    let mut found: Vec<String> = names.lines().map(String::from).collect();
    found.sort();
    assert_eq!(
        found.len(),
        docs.len(),
        "release {release}: {} objects in the manifest, kubectl found {found:?}",
        docs.len()
    );
    Ok(found)
}

#[tokio::test]
async fn helm_install_creates_every_object_and_uninstall_keeps_the_crds() -> TestResult {
    let env = TestEnv::shared().await?;
    let ns = env.namespace().await?;
    let argocd_ns = env.namespace().await?;
    let chart = chart();
    let chart = path_str(&chart)?;
    let argocd_value = format!("controller.argocd.namespace={argocd_ns}");
    helm_in(
        env,
        &["install", "barge", chart, "-n", &ns, "--set", &argocd_value],
    )?;
    let objects = every_object_exists(env, "barge", &ns)?;
    println!("release barge in {ns}: {objects:?}");

    let client = env.client();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("barge")
        .await?;
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("barge")
        .await?;
    Api::<Service>::namespaced(client.clone(), &ns)
        .get("barge-metrics")
        .await?;
    Api::<Service>::namespaced(client.clone(), &ns)
        .get("barge-webhooks")
        .await?;
    let cluster_role = Api::<ClusterRole>::all(client.clone()).get("barge").await?;
    assert!(!cluster_role.rules.unwrap_or_default().is_empty());
    let binding = Api::<ClusterRoleBinding>::all(client.clone())
        .get("barge")
        .await?;
    let subject = binding.subjects.unwrap_or_default();
    assert_eq!(subject.len(), 1);
    assert_eq!(subject[0].kind, "ServiceAccount");
    assert_eq!(subject[0].namespace.as_deref(), Some(ns.as_str()));
    Api::<Role>::namespaced(client.clone(), &argocd_ns)
        .get("barge-argocd")
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), &argocd_ns)
        .get("barge-argocd")
        .await?;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let names: Vec<String> = yaml_files(&root().join("crds"))?
        .keys()
        .map(|f| f.trim_end_matches(".yaml").to_string())
        .collect();
    for name in &names {
        env.wait_crd_established(name).await?;
        let crd = crds.get(name).await?;
        let annotations = crd.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get(KEEP).map(String::as_str), Some("keep"));
    }
    // The CRDs serve their kinds.
    kubectl_in(
        env,
        &[
            "get",
            "stages,promotions,freights,promotiontasks",
            "-n",
            &ns,
        ],
    )?;
    kubectl_in(env, &["get", "clusterpromotiontasks"])?;

    // A second release: no CRDs (the first owns them), three replicas with
    // leader election and its Role, a PodDisruptionBudget, Applications in
    // every namespace, an Ingress to the webhook endpoint.
    let ha_ns = env.namespace().await?;
    helm_in(
        env,
        &[
            "install",
            "ha",
            chart,
            "-n",
            &ha_ns,
            "--set",
            "crds.install=false",
            "--set",
            "replicas=3",
            "--set",
            "podDisruptionBudget.enabled=true",
            "--set",
            "controller.argocd.allNamespaces=true",
            "--set",
            "webhooks.ingress.enabled=true",
            "--set",
            "webhooks.ingress.host=barge.example.com",
        ],
    )?;
    let objects = every_object_exists(env, "ha", &ha_ns)?;
    println!("release ha in {ha_ns}: {objects:?}");
    Api::<Role>::namespaced(client.clone(), &ha_ns)
        .get("ha-barge-leader-election")
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), &ha_ns)
        .get("ha-barge-leader-election")
        .await?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ha_ns)
        .get("ha-barge")
        .await?;
    Api::<Ingress>::namespaced(client.clone(), &ha_ns)
        .get("ha-barge-webhooks")
        .await?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ha_ns)
        .get("ha-barge")
        .await?;
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(3));

    // Uninstalling the release that installed the CRDs keeps them.
    helm_in(env, &["uninstall", "barge", "-n", &ns, "--wait"])?;
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt("barge")
            .await?
            .is_none(),
        "uninstall removes the ClusterRole"
    );
    for name in &names {
        assert!(
            crds.get_opt(name).await?.is_some(),
            "CRD {name} was deleted by helm uninstall despite crds.keep"
        );
    }
    helm_in(env, &["uninstall", "ha", "-n", &ha_ns, "--wait"])?;
    Ok(())
}

/// The image: built with the lock file, from a build context that holds
/// every workspace member (a new member missing from `.dockerignore`'s
/// allow-list would break `docker build`), run as the non-root user; the
/// same static binary, user, entry point, command and environment as the
/// image `make image` builds without Docker (`hack/image/build.sh`, run and
/// checked by tests/image.rs).
#[test]
fn the_dockerfile_builds_the_image_make_image_builds() -> TestResult {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile"))?;
    let ignore = std::fs::read_to_string(root().join(".dockerignore"))?;
    let script = std::fs::read_to_string(root().join("hack/image/build.sh"))?;
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has(
        r#"cargo build --profile image --locked --target "$target" --bin barge"#
    ));
    assert!(
        script.contains(r#"cargo build --locked --profile image --target "$target" --bin barge"#)
    );
    assert!(has("apt-get install -y --no-install-recommends musl-tools"));
    assert!(has("FROM gcr.io/distroless/static-debian12:nonroot"));
    assert!(lines.contains(&"USER 65532:65532"));
    assert!(lines.contains(&r#"ENTRYPOINT ["/barge"]"#));
    assert!(lines.contains(&r#"CMD ["run"]"#));
    assert!(script.contains(r#"\"User\":\"65532:65532\""#));
    assert!(script.contains(r#"\"Entrypoint\":[\"/barge\"],\"Cmd\":[\"run\"]"#));
    for var in [
        "BARGE_KUSTOMIZE=/usr/local/bin/kustomize",
        "BARGE_HELM=/usr/local/bin/helm",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(has(var), "the Dockerfile does not set {var}");
        assert!(script.contains(var), "make image does not set {var}");
    }

    let allowed: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "an allow-list");
    let manifest = toml_like_members(&std::fs::read_to_string(root().join("Cargo.toml"))?);
    assert!(
        manifest.as_array().is_some_and(|m| !m.is_empty()),
        "no [workspace] members found in Cargo.toml"
    );
    for member in manifest.as_array().into_iter().flatten() {
        let member = member.as_str().unwrap_or_default();
        let (cargo_toml, src) = if member == "." {
            ("Cargo.toml".to_string(), "src".to_string())
        } else {
            (format!("{member}/Cargo.toml"), format!("{member}/src"))
        };
        for path in [cargo_toml, src] {
            assert!(
                allowed.contains(&path.as_str()),
                ".dockerignore does not let {path} into the build context"
            );
        }
    }
    for path in ["Cargo.lock", "benches"] {
        assert!(allowed.contains(&path), ".dockerignore drops {path}");
    }
    // The rendering steps' kustomize and helm, from the pinned wrapper modules.
    for tool in ["helm", "kustomize"] {
        let module = format!("hack/control-plane/{tool}");
        assert!(
            allowed.contains(&module.as_str()),
            ".dockerignore drops {module}"
        );
        assert!(
            has(&format!("COPY {module}/")),
            "the image builds {tool} from {module}"
        );
    }
    assert!(has(
        "COPY --from=tools /out/kustomize /out/helm /usr/local/bin/"
    ));
    Ok(())
}

/// `[workspace] members = [...]` of a Cargo.toml, as a JSON array.
fn toml_like_members(cargo_toml: &str) -> Value {
    cargo_toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("members"))
        .and_then(|rest| rest.trim().strip_prefix('='))
        .and_then(|list| serde_json::from_str(list.trim()).ok())
        .unwrap_or(Value::Null)
}

/// The chart's default image is the one `make image` builds: the
/// repository `hack/image/build.sh` names it by, tagged with the crate's
/// version, which must be the chart's appVersion.
#[test]
fn the_default_image_is_the_one_make_image_builds() -> TestResult {
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml"))?;
    let app_version = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"'))
        .ok_or("Chart.yaml has no appVersion")?;
    assert_eq!(
        app_version,
        env!("CARGO_PKG_VERSION"),
        "the chart's appVersion (its default image tag) is not the crate's version, the tag make image gives"
    );
    let script = std::fs::read_to_string(root().join("hack/image/build.sh"))?;
    let repository = script
        .lines()
        .find_map(|l| l.strip_prefix("repository=${IMAGE_REPOSITORY:-"))
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or("hack/image/build.sh names no default repository")?;
    let docs = documents(&template(&[])?)?;
    let container = controller_container(&docs)?;
    assert_eq!(
        container["image"],
        format!("{repository}:{app_version}"),
        "the chart's default image"
    );
    Ok(())
}
