//! `kustomize-build`: renders the kustomization at `path` with the kustomize
//! binary into `outPath`: one file when it ends in `.yaml` or `.yml`, else a
//! directory with a file per resource, named `[namespace-]kind-name.yaml`
//! (`outputFormat: kargo`, the default) or as `kustomize build -o dir/`
//! names them (`outputFormat: kustomize`). Helm charts inflate
//! (`helmCharts`) with the configured helm; `plugin.helm` sets their API
//! and Kubernetes versions. Exec and container plugins stay disabled.
//!
//! kustomize runs with its default load restrictions: a kustomization reads
//! files only under its own directory. Kargo builds in a filesystem rooted
//! at the work directory instead, so files elsewhere in the work directory
//! (`../patch.yaml`) load there and are refused here; kustomizations and
//! chart homes outside the work directory are refused by both.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::Path;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::Value;

use super::manifests::{self, Identity, OutDir, WriteError};
use super::tools::{self, Scratch};
use super::{BuiltinStep, StepContext, StepRun, parse_config, retryable, terminal};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "kustomize-build";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    path: String,
    out_path: String,
    #[serde(default)]
    output_format: OutputFormat,
    plugin: Option<Plugin>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum OutputFormat {
    #[default]
    Kargo,
    Kustomize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plugin {
    helm: Option<HelmPlugin>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HelmPlugin {
    #[serde(default)]
    api_versions: Vec<String>,
    #[serde(default)]
    kube_version: String,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .using_work_dir()
        .config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(
        build(ctx)
            .await
            .map(|()| StepResult::new(StepStatus::Succeeded)),
    )
}

async fn build(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let config: Config = parse_config(ctx.config)?;
    let helm = config.plugin.as_ref().and_then(|p| p.helm.as_ref());
    if let Some(i) = helm.and_then(|h| h.api_versions.iter().position(|v| v.is_empty())) {
        return Err(terminal(format!(
            "config.plugin.helm.apiVersions[{i}]: is empty"
        )));
    }
    let dir = ctx.existing_path("path", &config.path)?;
    if !dir.is_dir() {
        return Err(terminal(format!(
            "config.path: {:?} is not a directory",
            config.path
        )));
    }
    let out = ctx.path("outPath", &config.out_path)?;
    let work_dir = ctx
        .work_dir()?
        .canonicalize()
        .map_err(|e| retryable(format!("work directory: {e}")))?;
    let scratch = Scratch::new(&work_dir, KIND)?;
    check_reach(&work_dir, &dir, scratch.path())
        .map_err(|e| terminal(format!("config.path: {e}")))?;

    let tools = &ctx.services.tools;
    let mut args: Vec<OsString> = vec![
        "build".into(),
        tools::flag("load-restrictor", "LoadRestrictionsRootOnly"),
        "--enable-helm".into(),
        tools::flag("helm-command", &tools.helm),
    ];
    if let Some(helm) = helm {
        for version in &helm.api_versions {
            args.push(tools::flag("helm-api-versions", version));
        }
        if !helm.kube_version.is_empty() {
            args.push(tools::flag("helm-kube-version", &helm.kube_version));
        }
    }
    args.extend(["--".into(), dir.into_os_string()]);
    let rendered = scratch
        .run(&tools.kustomize, &args, tools.timeout)
        .await
        .map_err(|e| tools::step_error("path", "kustomize build", e))?;

    let failed = |e: WriteError| match e {
        WriteError::Refused(why) => terminal(format!("config.outPath: {why}")),
        WriteError::Io { .. } => retryable(format!("config.outPath: {e}")),
    };
    if manifests::is_file(&config.out_path) {
        write_file(&out, &rendered).map_err(failed)
    } else {
        let text = String::from_utf8(rendered)
            .map_err(|_| terminal("config.path: kustomize printed something other than UTF-8"))?;
        write_dir(&out, &text, config.output_format).map_err(failed)
    }
}

fn write_file(out: &Path, rendered: &[u8]) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: out.display().to_string(),
        source,
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    manifests::write_file(out, rendered).map_err(io)
}

/// One file per resource, in kustomize's rendering of it.
fn write_dir(out: &Path, text: &str, format: OutputFormat) -> Result<(), WriteError> {
    std::fs::create_dir_all(out).map_err(|source| WriteError::Io {
        path: out.display().to_string(),
        source,
    })?;
    let documents = manifests::documents(text).map_err(WriteError::Refused)?;
    let resources: Vec<(Identity, &str)> = documents
        .into_iter()
        .filter(|d| !d.trim().is_empty())
        .map(|d| (manifests::identity(d), d))
        .collect();
    // kustomize names files by namespace only when resources span several
    // (an unset namespace counts as "default"; cluster-scoped kinds none).
    let namespaces: BTreeSet<&str> = resources
        .iter()
        .filter(|(id, _)| !cluster_scoped(id))
        .map(|(id, _)| match id.namespace.as_str() {
            "" => "default",
            ns => ns,
        })
        .collect();
    let several = namespaces.len() > 1;
    let mut dir = OutDir::new(out);
    for (id, document) in &resources {
        let name = match format {
            OutputFormat::Kargo => kargo_file_name(id),
            OutputFormat::Kustomize => kustomize_file_name(id, several && !cluster_scoped(id)),
        };
        let mut text = document.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let what = format!("{} {:?}", id.kind, id.name);
        dir.write(&name, what, text.as_bytes())?;
    }
    Ok(())
}

/// `[namespace-]kind-name.yaml`, lower-cased.
fn kargo_file_name(id: &Identity) -> String {
    let name = if id.namespace.is_empty() {
        format!("{}-{}.yaml", id.kind, id.name)
    } else {
        format!("{}-{}-{}.yaml", id.namespace, id.kind, id.name)
    };
    name.to_lowercase()
}

/// `[namespace_]group_version_kind_name.yaml` (empty parts left out),
/// lower-cased, as `kustomize build -o dir/` names files.
fn kustomize_file_name(id: &Identity, with_namespace: bool) -> String {
    let (group, version) = id
        .api_version
        .split_once('/')
        .unwrap_or(("", id.api_version.as_str()));
    let gvk: Vec<&str> = [group, version, id.kind.as_str()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect();
    let base = format!("{}_{}.yaml", gvk.join("_"), id.name).to_lowercase();
    if with_namespace && !id.namespace.is_empty() {
        format!("{}_{base}", id.namespace.to_lowercase())
    } else {
        base
    }
}

/// The built-in kinds kustomize knows to be cluster-scoped (its precomputed
/// table); any other kind it takes for namespaced.
const CLUSTER_SCOPED: [(&str, &str); 38] = [
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io/v1beta1",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io/v1beta1",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"),
    ("apiregistration.k8s.io/v1", "APIService"),
    ("apiregistration.k8s.io/v1beta1", "APIService"),
    ("certificates.k8s.io/v1", "CertificateSigningRequest"),
    ("certificates.k8s.io/v1beta1", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"),
    (
        "flowcontrol.apiserver.k8s.io/v1beta1",
        "PriorityLevelConfiguration",
    ),
    ("networking.k8s.io/v1", "IngressClass"),
    ("networking.k8s.io/v1beta1", "IngressClass"),
    ("node.k8s.io/v1", "RuntimeClass"),
    ("node.k8s.io/v1beta1", "RuntimeClass"),
    ("policy/v1beta1", "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("scheduling.k8s.io/v1beta1", "PriorityClass"),
    ("storage.k8s.io/v1", "CSIDriver"),
    ("storage.k8s.io/v1", "CSINode"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("storage.k8s.io/v1", "VolumeAttachment"),
    ("storage.k8s.io/v1beta1", "CSIDriver"),
    ("storage.k8s.io/v1beta1", "CSINode"),
    ("storage.k8s.io/v1beta1", "StorageClass"),
    ("storage.k8s.io/v1beta1", "VolumeAttachment"),
    ("v1", "ComponentStatus"),
    ("v1", "Namespace"),
    ("v1", "Node"),
    ("v1", "NodeProxyOptions"),
    ("v1", "PersistentVolume"),
];

fn cluster_scoped(id: &Identity) -> bool {
    CLUSTER_SCOPED
        .iter()
        .any(|(api_version, kind)| *api_version == id.api_version && *kind == id.kind)
}

const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
/// Fields whose entries kustomize may load as kustomization directories,
/// wherever they are.
const DIRECTORY_FIELDS: [&str; 6] = [
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];
const MAX_KUSTOMIZATIONS: usize = 10_000;

/// Refuses what kustomize would reach outside the work directory (`work`,
/// canonical) despite its load restrictions: other kustomizations (bases,
/// components, ...) and helm chart or config homes, following local
/// kustomizations from `root`. Remote ones are left to kustomize, and so is
/// a kustomization it cannot parse (it says why better).
fn check_reach(work: &Path, root: &Path, scratch: &Path) -> Result<(), String> {
    let mut pending = vec![root.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(dir) = pending.pop() {
        let Ok(dir) = dir.canonicalize() else {
            continue;
        };
        if !seen.insert(dir.clone()) {
            continue;
        }
        if seen.len() > MAX_KUSTOMIZATIONS {
            return Err(format!(
                "more than {MAX_KUSTOMIZATIONS} kustomizations reached"
            ));
        }
        let Some((file, kustomization)) = read_kustomization(&dir) else {
            continue;
        };
        let shown = file
            .strip_prefix(work)
            .unwrap_or(&file)
            .display()
            .to_string();
        let refuse = |field: &str, why: String| format!("{shown}: {field}: {why}");
        for field in DIRECTORY_FIELDS {
            for entry in strings(&kustomization[field]) {
                // Generators and transformers may be inline YAML.
                if entry.contains('\n') {
                    continue;
                }
                let path = manifests::contained(work, &dir, entry).map_err(|e| refuse(field, e))?;
                if path.is_dir() {
                    pending.push(path);
                } else if field != "resources" && path.is_file() {
                    // A plugin config file: a HelmChartInflationGenerator
                    // names its chart and config homes in it.
                    check_helm_homes(work, &dir, scratch, &plugin_configs(&path))
                        .map_err(|e| refuse(field, e))?;
                }
            }
        }
        let mut configs = vec![kustomization["helmGlobals"].clone()];
        configs.extend(strings_or_objects(
            &kustomization["helmChartInflationGenerator"],
        ));
        check_helm_homes(work, &dir, scratch, &configs).map_err(|e| refuse("helm", e))?;
    }
    Ok(())
}

/// A chart home is relative to the kustomization; a config home, which
/// kustomize hands helm as it is, to the directory kustomize runs in.
fn check_helm_homes(
    work: &Path,
    dir: &Path,
    scratch: &Path,
    configs: &[Value],
) -> Result<(), String> {
    for config in configs {
        for (field, base) in [
            ("chartHome", dir),
            ("helmHome", dir),
            ("configHome", scratch),
        ] {
            if let Some(home) = config[field].as_str().filter(|h| !h.is_empty()) {
                manifests::contained(work, base, home).map_err(|e| format!("{field}: {e}"))?;
            }
        }
    }
    Ok(())
}

fn read_kustomization(dir: &Path) -> Option<(std::path::PathBuf, Value)> {
    KUSTOMIZATION_FILES.iter().find_map(|name| {
        let file = dir.join(name);
        let text = std::fs::read_to_string(&file).ok()?;
        let value = serde_saphyr::from_str::<Value>(&text).ok()?;
        Some((file, value))
    })
}

/// The documents of a plugin config file (none when it does not parse).
fn plugin_configs(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| serde_saphyr::from_multiple::<Value>(&text).ok())
        .unwrap_or_default()
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn strings_or_objects(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(api_version: &str, kind: &str, namespace: &str, name: &str) -> Identity {
        Identity {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn kargo_names_carry_the_namespace_whenever_the_resource_has_one() {
        assert_eq!(
            kargo_file_name(&id("apps/v1", "Deployment", "Dev", "Web")),
            "dev-deployment-web.yaml"
        );
        assert_eq!(
            kargo_file_name(&id("v1", "Namespace", "", "dev")),
            "namespace-dev.yaml"
        );
    }

    #[test]
    fn kustomize_names_leave_out_empty_parts_and_add_the_namespace_when_asked() {
        let deployment = id("apps/v1", "Deployment", "dev", "web");
        assert_eq!(
            kustomize_file_name(&deployment, false),
            "apps_v1_deployment_web.yaml"
        );
        assert_eq!(
            kustomize_file_name(&deployment, true),
            "dev_apps_v1_deployment_web.yaml"
        );
        assert_eq!(
            kustomize_file_name(&id("v1", "ConfigMap", "", "cfg"), true),
            "v1_configmap_cfg.yaml"
        );
    }
}
