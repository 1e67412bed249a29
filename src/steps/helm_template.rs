//! `helm-template`: renders the chart at `path` with the helm binary
//! (`helm template`) into `outPath`: one file when it ends in `.yaml` or
//! `.yml`; else a directory, laid out as helm's `--output-dir` lays it out
//! (`outLayout: helm`, the default: `<chart or release name>/templates/...`)
//! or with a file per resource named `[group-]kind[-namespace]-name.yaml`
//! (`outLayout: flat`). Values come from the chart, then `valuesFiles` in
//! order, then `setValues` (`--set`, or `--set-literal` when `literal`).
//! The namespace defaults to the Promotion's (Kargo's project).
//!
//! `buildDependencies` runs `helm dependency build` first (an update when
//! there is no Chart.lock); without it, a chart whose dependencies are not
//! in `charts/` fails as helm says. Chart repositories are reached without
//! credentials.

use std::ffi::OsString;
use std::path::Path;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::Value;

use super::manifests::{self, OutDir, WriteError};
use super::tools::{self, Scratch};
use super::{BuiltinStep, StepContext, StepRun, parse_config, retryable, terminal};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "helm-template";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    path: String,
    out_path: String,
    #[serde(default)]
    out_layout: OutLayout,
    release_name: String,
    #[serde(default)]
    use_release_name: bool,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    values_files: Vec<String>,
    #[serde(default)]
    ignore_missing_value_files: bool,
    #[serde(default)]
    set_values: Vec<SetValue>,
    #[serde(default)]
    build_dependencies: bool,
    #[serde(default, rename = "includeCRDs")]
    include_crds: bool,
    #[serde(default)]
    disable_hooks: bool,
    #[serde(default)]
    skip_tests: bool,
    #[serde(default)]
    kube_version: String,
    #[serde(default)]
    api_versions: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum OutLayout {
    #[default]
    Helm,
    Flat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetValue {
    key: String,
    value: String,
    #[serde(default)]
    literal: bool,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .using_work_dir()
        .config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(
        template(ctx)
            .await
            .map(|()| StepResult::new(StepStatus::Succeeded)),
    )
}

async fn template(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let config: Config = parse_config(ctx.config)?;
    check(&config)?;
    let chart = ctx.existing_path("path", &config.path)?;
    let out = ctx.path("outPath", &config.out_path)?;
    let mut values = Vec::new();
    for (i, file) in config.values_files.iter().enumerate() {
        let field = format!("valuesFiles[{i}]");
        let path = ctx.path(&field, file)?;
        if path.exists() {
            values.push(path);
        } else if !config.ignore_missing_value_files {
            return Err(terminal(format!(
                "config.{field}: {file:?} does not exist in the work directory"
            )));
        }
    }
    let work_dir = ctx
        .work_dir()?
        .canonicalize()
        .map_err(|e| retryable(format!("work directory: {e}")))?;
    if chart.is_dir() {
        manifests::symlinks_inside(&work_dir, &chart)
            .map_err(|e| terminal(format!("config.path: {e}")))?;
    }
    let scratch = Scratch::new(&work_dir, KIND)?;
    let tools = &ctx.services.tools;

    if config.build_dependencies {
        build_dependencies(&work_dir, &chart, &scratch, tools).await?;
    }

    let namespace = if config.namespace.is_empty() {
        ctx.subject.namespace
    } else {
        &config.namespace
    };
    let mut args: Vec<OsString> = vec!["template".into(), tools::flag("namespace", namespace)];
    for file in &values {
        args.push(tools::flag("values", file));
    }
    for set in &config.set_values {
        let flag = if set.literal { "set-literal" } else { "set" };
        args.push(tools::flag(flag, format!("{}={}", set.key, set.value)));
    }
    for (on, flag) in [
        (config.include_crds, "--include-crds"),
        (config.disable_hooks, "--no-hooks"),
        (config.skip_tests, "--skip-tests"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    if !config.kube_version.is_empty() {
        args.push(tools::flag("kube-version", &config.kube_version));
    }
    for version in &config.api_versions {
        args.push(tools::flag("api-versions", version));
    }
    let to_file = manifests::is_file(&config.out_path);
    let layout_dir = scratch.path().join("out");
    if !to_file && config.out_layout == OutLayout::Helm {
        args.push(tools::flag("output-dir", &layout_dir));
        if config.use_release_name {
            args.push("--release-name".into());
        }
    }
    // Positional arguments after `--`, so that no name is taken for a flag.
    args.extend([
        "--".into(),
        config.release_name.clone().into(),
        chart.into_os_string(),
    ]);
    let rendered = scratch
        .run(&tools.helm, &args, tools.timeout)
        .await
        .map_err(|e| tools::step_error("path", "helm template", e))?;

    let failed = |e: WriteError| match e {
        WriteError::Refused(why) => terminal(format!("config.outPath: {why}")),
        WriteError::Io { .. } => retryable(format!("config.outPath: {e}")),
    };
    let io = |source| WriteError::Io {
        path: config.out_path.clone(),
        source,
    };
    if to_file {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io)
                .map_err(failed)?;
        }
        manifests::write_file(&out, &rendered)
            .map_err(io)
            .map_err(failed)
    } else if config.out_layout == OutLayout::Flat {
        let text = String::from_utf8(rendered)
            .map_err(|_| terminal("config.path: helm printed something other than UTF-8"))?;
        write_flat(&out, &text).map_err(failed)
    } else if layout_dir.is_dir() {
        // helm wrote into the scratch directory; moving its files into
        // place writes nothing through a symlink already at outPath.
        manifests::merge_dir(&layout_dir, &out)
            .map_err(io)
            .map_err(failed)
    } else {
        // The chart rendered nothing.
        Ok(())
    }
}

/// What Kargo's schema requires of the fields beyond their types.
fn check(config: &Config) -> Result<(), StepError> {
    if config.release_name.is_empty() {
        return Err(terminal("config.releaseName: is empty"));
    }
    for (field, items) in [
        ("valuesFiles", &config.values_files),
        ("apiVersions", &config.api_versions),
    ] {
        if let Some(i) = items.iter().position(String::is_empty) {
            return Err(terminal(format!("config.{field}[{i}]: is empty")));
        }
    }
    if let Some(i) = config.set_values.iter().position(|s| s.key.is_empty()) {
        return Err(terminal(format!("config.setValues[{i}].key: is empty")));
    }
    Ok(())
}

/// Each resource of the rendered stream (hooks included, unless disabled)
/// in a file of its own, trimmed, as Kargo writes them.
fn write_flat(out: &Path, text: &str) -> Result<(), WriteError> {
    let mut dir = OutDir::new(out);
    let mut unnamed = 0;
    for document in manifests::documents(text).map_err(WriteError::Refused)? {
        let resource = document.trim();
        if resource.is_empty() {
            continue;
        }
        let id = manifests::identity(resource);
        let (name, what) = if id.kind.is_empty() || id.name.is_empty() {
            // Kargo names every such document resource-0.yaml, each
            // overwriting the last; numbering them keeps them all.
            unnamed += 1;
            let name = format!("resource-{}.yaml", unnamed - 1);
            (name, format!("document {unnamed} without a kind and name"))
        } else {
            (flat_file_name(&id), format!("{} {:?}", id.kind, id.name))
        };
        dir.write(&name, what, resource.as_bytes())?;
    }
    Ok(())
}

/// `[group-]kind[-namespace]-name.yaml`, lower-cased, with the group's
/// dots made underscores.
fn flat_file_name(id: &manifests::Identity) -> String {
    let mut name = id.kind.clone();
    if let Some((group, _)) = id.api_version.rsplit_once('/') {
        name = format!("{}-{name}", group.replace('.', "_"));
    }
    if !id.namespace.is_empty() {
        name = format!("{name}-{}", id.namespace);
    }
    format!("{name}-{}.yaml", id.name).to_lowercase()
}

/// Checks the chart's local (`file://`) dependencies stay in the work
/// directory, then has helm fetch them all into `charts/`.
async fn build_dependencies(
    work: &Path,
    chart: &Path,
    scratch: &Scratch,
    tools: &tools::Tools,
) -> Result<(), StepError> {
    let chart_file = chart.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_file)
        .map_err(|e| terminal(format!("config.path: reading Chart.yaml: {e}")))?;
    let metadata: Value = serde_saphyr::from_str(&text)
        .map_err(|e| terminal(format!("config.path: Chart.yaml: {e}")))?;
    let dependencies = metadata["dependencies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if dependencies.is_empty() {
        return Ok(());
    }
    local_dependencies_inside(work, chart, &dependencies)?;
    let args: Vec<OsString> = vec![
        "dependency".into(),
        "build".into(),
        "--".into(),
        chart.as_os_str().to_owned(),
    ];
    scratch
        .run(&tools.helm, &args, tools.timeout)
        .await
        .map_err(|e| tools::step_error("path", "helm dependency build", e))?;
    Ok(())
}

/// Refuses a local (`file://`) dependency of the chart (the `dependencies`
/// of its Chart.yaml) that is absolute, lies outside the work directory
/// `work` (canonical) or has a symlink out of it: helm would package it.
pub fn local_dependencies_inside(
    work: &Path,
    chart: &Path,
    dependencies: &[Value],
) -> Result<(), StepError> {
    for dependency in dependencies {
        let Some(local) = dependency["repository"]
            .as_str()
            .and_then(|r| r.strip_prefix("file://"))
        else {
            continue;
        };
        let refuse = |why: String| {
            terminal(format!(
                "config.path: dependency {}: {why}",
                dependency["name"].as_str().unwrap_or_default()
            ))
        };
        if Path::new(local).is_absolute() {
            return Err(refuse(format!("{local:?} must be relative to the chart")));
        }
        let path = manifests::contained(work, chart, local).map_err(refuse)?;
        if path.is_dir() {
            manifests::symlinks_inside(work, &path).map_err(refuse)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_carry_the_group_with_underscores_and_the_namespace_when_set() {
        let id = |api_version: &str, namespace: &str| manifests::Identity {
            api_version: api_version.into(),
            kind: "Ingress".into(),
            namespace: namespace.into(),
            name: "Web".into(),
        };
        assert_eq!(
            flat_file_name(&id("networking.k8s.io/v1", "dev")),
            "networking_k8s_io-ingress-dev-web.yaml"
        );
        assert_eq!(flat_file_name(&id("v1", "")), "ingress-web.yaml");
    }
}
