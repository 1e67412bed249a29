//! `helm-update-chart`: updates the dependencies of the Helm chart at
//! `path`, as Kargo's. Each entry of `charts` sets the `version` of the
//! `dependencies` entry of its `repository` and `name` (and `alias`, when
//! given) in Chart.yaml; only those values change, every other byte of the
//! file stays. Then `helm dependency update` resolves every dependency
//! (SemVer ranges included) into Chart.lock and `charts/*.tgz`; helm leaves
//! Chart.lock alone when what it locks is unchanged.
//!
//! An entry without `version` takes the version of the chart that the
//! Freight the Stage will hold (that of `fromOrigin`, when given) has from
//! the dependency's repository, as Kargo's releases with `fromOrigin` did;
//! current Kargo requires `version` (typically
//! `${{ chartFrom(...).Version }}`), which works here unchanged.
//!
//! Chart repositories over HTTP(S) are reached with the credentials of the
//! Secret labelled `cred-type: helm` whose `repoURL` matches the
//! dependency's `repository` (Kargo looks only for `https://` ones);
//! OCI registries only anonymously. Outputs `commitMessage`, worded as
//! Kargo's, when a locked version changed; nothing otherwise.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::repository::{credential_secrets, select_credentials};
use super::tools::{self, Scratch};
use super::yaml_edit::{self, Document, Kind, Layout, NewScalar, Node, Splice};
use super::{
    BuiltinStep, StepContext, StepRun, helm_template, manifests, parse_config, retryable, terminal,
    text_file,
};
use crate::api::{FreightOrigin, FreightReference};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "helm-update-chart";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
    /// Absent: only what `helm dependency update` does. Kargo's schema
    /// wants at least one entry when the list is given.
    #[serde(default)]
    charts: Option<Vec<ChartConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChartConfig {
    /// The dependency's `repository`, exactly as in Chart.yaml.
    repository: String,
    /// The dependency's `name`, exactly as in Chart.yaml.
    name: String,
    /// Narrows the match to the dependency of this `alias`.
    #[serde(default)]
    alias: String,
    /// Empty: the version of the Freight's chart.
    #[serde(default)]
    version: String,
    /// Whose Freight's chart a missing version comes from (older Kargo).
    #[serde(default)]
    from_origin: Option<FreightOrigin>,
}

/// An entry of Chart.yaml's `dependencies` (or Chart.lock's), the fields
/// this step reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Dependency {
    name: String,
    repository: String,
    version: String,
    alias: String,
}

#[derive(Debug, Default, Deserialize)]
struct Lock {
    #[serde(default)]
    dependencies: Option<Vec<LockedDependency>>,
}

#[derive(Debug, Default, Deserialize)]
struct LockedDependency {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| {
        async move { StepRun::done(run(ctx).await) }.boxed()
    })
    .using_work_dir()
    .config::<Config>()
}

async fn run(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    check(&config)?;
    let updates = config.charts.as_deref().unwrap_or_default();
    let versions = updates
        .iter()
        .enumerate()
        .map(|(i, update)| wanted_version(ctx.subject.freight, i, update))
        .collect::<Result<Vec<_>, _>>()?;

    let chart = ctx.path("path", &config.path)?;
    let label = Path::new(&config.path)
        .join("Chart.yaml")
        .display()
        .to_string();
    let chart_file = ctx.path("path", &label)?;
    let old = text_file::read(&chart_file, "path", &label)?;
    let doc = Document::parse(&old)
        .map_err(|e| terminal(format!("config.path: {label:?} is not valid YAML: {e}")))?;
    let (sequence, dependencies) = dependencies_of(&doc, &label)?;

    // Which entry each update sets, a later update of one entry winning.
    let mut wanted: BTreeMap<usize, &str> = BTreeMap::new();
    for (i, (update, version)) in updates.iter().zip(&versions).enumerate() {
        let index = find(&dependencies, update).ok_or_else(|| {
            let alias = if update.alias.is_empty() {
                String::new()
            } else {
                format!(" and alias {:?}", update.alias)
            };
            terminal(format!(
                "config.charts[{i}]: no dependency in {label:?} has repository {:?} and name {:?}{alias}",
                update.repository, update.name
            ))
        })?;
        wanted.insert(index, version);
    }
    wanted.retain(|index, version| dependencies[*index].version != *version);
    let text = match sequence {
        Some(sequence) if !wanted.is_empty() => {
            let text = set_versions(&doc, sequence, &wanted).map_err(|e| {
                terminal(format!(
                    "config.path: setting dependency versions in {label:?}: {e}"
                ))
            })?;
            // The edit must read back as the versions wanted, or nothing is
            // written.
            let reread = Document::parse(&text)
                .ok()
                .and_then(|doc| dependencies_of(&doc, &label).ok().map(|(_, deps)| deps));
            let reads_back = reread.is_some_and(|deps| {
                deps.len() == dependencies.len()
                    && deps.iter().enumerate().all(|(i, dep)| {
                        dep.version == wanted.get(&i).copied().unwrap_or(&dependencies[i].version)
                    })
            });
            if !reads_back {
                return Err(terminal(format!(
                    "config.path: could not set the dependency versions in {label:?} so that they read back"
                )));
            }
            text
        }
        _ => old.clone(),
    };

    // Nothing outside the work directory may reach helm.
    let work_dir = ctx
        .work_dir()?
        .canonicalize()
        .map_err(|e| retryable(format!("work directory: {e}")))?;
    manifests::symlinks_inside(&work_dir, &chart)
        .map_err(|e| terminal(format!("config.path: {e}")))?;
    let as_json: Vec<Json> = dependencies
        .iter()
        .map(|d| json!({"name": d.name, "repository": d.repository}))
        .collect();
    helm_template::local_dependencies_inside(&work_dir, &chart, &as_json)?;
    let scratch = Scratch::new(&work_dir, KIND)?;
    add_repositories(ctx, &scratch, &dependencies).await?;

    let lock_file = chart.join("Chart.lock");
    let before = locked_versions(&lock_file, &config.path)?.unwrap_or_default();
    text_file::write(&chart_file, "path", &label, &old, &text)?;
    let args: Vec<OsString> = vec![
        "dependency".into(),
        "update".into(),
        "--".into(),
        chart.clone().into_os_string(),
    ];
    let tools = &ctx.services.tools;
    if let Err(e) = scratch
        .run_reporting_stdout(&tools.helm, &args, tools.timeout)
        .await
    {
        let mut error = tools::step_error("path", "helm dependency update", e);
        // Chart.yaml as it was, so that a retry starts over.
        if let Err(restoring) = text_file::write(&chart_file, "path", &label, &text, &old) {
            error.message = format!(
                "{}; restoring {label:?}: {}",
                error.message, restoring.message
            );
        }
        return Err(error);
    }
    let after = locked_versions(&lock_file, &config.path)?.unwrap_or_default();

    let mut result = StepResult::new(StepStatus::Succeeded);
    let changes = changes(&before, &after);
    if !changes.is_empty() {
        result.output = Some(Json::Object(Map::from_iter([(
            "commitMessage".to_string(),
            json!(commit_message(&config.path, &changes)),
        )])));
    }
    Ok(result)
}

/// What Kargo's schema requires of the fields beyond their types.
fn check(config: &Config) -> Result<(), StepError> {
    if config.path.is_empty() {
        return Err(terminal("config.path: is empty"));
    }
    let Some(charts) = &config.charts else {
        return Ok(());
    };
    if charts.is_empty() {
        return Err(terminal(
            "config.charts: lists no chart (leave it out to update only what Chart.yaml's ranges allow)",
        ));
    }
    for (i, chart) in charts.iter().enumerate() {
        for (field, value) in [("repository", &chart.repository), ("name", &chart.name)] {
            if value.is_empty() {
                return Err(terminal(format!("config.charts[{i}].{field}: is empty")));
            }
        }
    }
    Ok(())
}

/// The version update `i` sets: its own, or that of the chart the
/// Freight has from the dependency's repository.
fn wanted_version(
    freight: &[FreightReference],
    i: usize,
    update: &ChartConfig,
) -> Result<String, StepError> {
    if !update.version.is_empty() {
        return Ok(update.version.clone());
    }
    version_from_freight(freight, update)
        .map_err(|e| terminal(format!("config.charts[{i}].version: not given, and {e}")))
}

/// The version of the chart of the update's repository and name in the
/// Freight (of `fromOrigin`, when given), matched as `chartFrom` matches:
/// a classic repository's URL and the chart's name, or, for an OCI
/// registry, `<repository>/<name>` (how Warehouses name OCI charts). Two
/// origins with that chart make it ambiguous. (Kargo finds the ambiguity
/// in the Warehouses' subscriptions, so it also refuses a chart that only
/// may appear.)
fn version_from_freight(
    freight: &[FreightReference],
    update: &ChartConfig,
) -> Result<String, String> {
    let (url, name) = if update.repository.starts_with("oci://") {
        let url = format!(
            "{}/{}",
            update.repository.trim_end_matches('/'),
            update.name
        );
        (url, String::new())
    } else {
        (update.repository.clone(), update.name.clone())
    };
    let mut found: Option<(&FreightOrigin, &str)> = None;
    for piece in freight {
        if update
            .from_origin
            .as_ref()
            .is_some_and(|wanted| *wanted != piece.origin)
        {
            continue;
        }
        let Some(chart) = piece
            .charts
            .iter()
            .find(|c| c.repo_url == url && c.name == name)
        else {
            continue;
        };
        match found {
            Some((origin, _)) if *origin != piece.origin => {
                return Err(format!(
                    "more than one Freight the Stage will hold has a chart from {url}{}: give the version, or fromOrigin",
                    shown_name(&name)
                ));
            }
            Some(_) => {}
            None => found = Some((&piece.origin, &chart.version)),
        }
    }
    match found {
        Some((_, version)) if !version.is_empty() => Ok(version.to_string()),
        Some(_) => Err(format!(
            "the Freight's chart from {url}{} has no version",
            shown_name(&name)
        )),
        None => Err(format!(
            "no Freight the Stage will hold{} has a chart from {url}{}",
            update
                .from_origin
                .as_ref()
                .map(|o| format!(" from {o}"))
                .unwrap_or_default(),
            shown_name(&name)
        )),
    }
}

fn shown_name(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" named {name:?}")
    }
}

/// The first dependency of the update's repository and name (and alias,
/// when it gives one), as Kargo matches them: exactly.
fn find(dependencies: &[Dependency], update: &ChartConfig) -> Option<usize> {
    dependencies.iter().position(|d| {
        d.repository == update.repository
            && d.name == update.name
            && (update.alias.is_empty() || d.alias == update.alias)
    })
}

/// Chart.yaml's `dependencies` node (none when absent or null) and its
/// entries in file order.
fn dependencies_of<'d>(
    doc: &'d Document<'_>,
    label: &str,
) -> Result<(Option<&'d Node>, Vec<Dependency>), StepError> {
    let root = match &doc.root {
        Some(
            root @ Node {
                kind: Kind::Mapping { .. },
                ..
            },
        ) => root,
        _ => {
            return Err(terminal(format!(
                "config.path: {label:?} is not a YAML mapping"
            )));
        }
    };
    let node = match root.get("dependencies") {
        None => return Ok((None, Vec::new())),
        Some(node) if node.is_null() => return Ok((None, Vec::new())),
        Some(node) => node,
    };
    let Kind::Sequence { items, .. } = &node.kind else {
        return Err(terminal(format!(
            "config.path: dependencies in {label:?} is {}, not a list",
            node.what()
        )));
    };
    let dependencies = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            decode(item)
                .map_err(|e| terminal(format!("config.path: dependencies[{i}] in {label:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((Some(node), dependencies))
}

/// An entry as helm reads the fields this step uses: scalars (a null is
/// empty); other keys are ignored.
fn decode(item: &Node) -> Result<Dependency, String> {
    let Kind::Mapping { entries, .. } = &item.kind else {
        return Err(format!("is {}, not a mapping", item.what()));
    };
    let mut dependency = Dependency::default();
    for (key, value) in entries {
        let field = match key.scalar().map(|k| k.value.as_str()) {
            Some("name") => &mut dependency.name,
            Some("repository") => &mut dependency.repository,
            Some("version") => &mut dependency.version,
            Some("alias") => &mut dependency.alias,
            _ => continue,
        };
        *field = match value.scalar() {
            _ if value.is_null() => String::new(),
            Some(s) => s.value.clone(),
            None => {
                let key = key.scalar().map(|k| k.value.as_str()).unwrap_or_default();
                return Err(format!("{key} is {}, not a string", value.what()));
            }
        };
    }
    Ok(dependency)
}

/// The text with the `version` of each `wanted` entry (by index) set: in
/// place, in the style of the old value, or added after the entry's last
/// field when it has none.
fn set_versions(
    doc: &Document<'_>,
    sequence: &Node,
    wanted: &BTreeMap<usize, &str>,
) -> Result<String, yaml_edit::EditError> {
    let Kind::Sequence { items, .. } = &sequence.kind else {
        return Ok(doc.text.to_string());
    };
    let layout = Layout::of(doc);
    let mut splices: Vec<Splice> = Vec::new();
    for (index, version) in wanted {
        let Some(item) = items.get(*index) else {
            continue;
        };
        match item.get("version") {
            Some(node) if node.scalar().is_some() => splices.extend(yaml_edit::set_scalar(
                doc,
                node,
                &NewScalar::Str(version.to_string()),
            )),
            Some(_) => {
                return Err(yaml_edit::EditError::Unsupported(
                    "a dependency version that is not a scalar",
                ));
            }
            None => splices.push(yaml_edit::add_entry(
                doc,
                item,
                None,
                "version",
                &yaml_edit::Value::Str(version.to_string()),
                layout,
            )?),
        }
    }
    yaml_edit::apply(doc.text, splices)
}

/// Writes a helm repositories file into the scratch home listing each
/// HTTP(S) chart repository of the dependencies that a credentials Secret
/// matches, with its username and password; helm then reaches it with
/// them, and reaches the others as it would anyway (anonymously).
async fn add_repositories(
    ctx: &StepContext<'_>,
    scratch: &Scratch,
    dependencies: &[Dependency],
) -> Result<(), StepError> {
    let mut urls: Vec<&str> = dependencies
        .iter()
        .map(|d| d.repository.as_str())
        .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
        .collect();
    urls.sort_unstable();
    urls.dedup();
    if urls.is_empty() {
        return Ok(());
    }
    let secrets = credential_secrets(ctx, "helm").await?;
    let mut repositories = Vec::new();
    for url in urls {
        if let Some(credentials) = select_credentials(&secrets, url)? {
            repositories.push(json!({
                "name": format!("barge-{}", repositories.len()),
                "url": url,
                "username": credentials.username,
                "password": credentials.password,
            }));
        }
    }
    if repositories.is_empty() {
        return Ok(());
    }
    // JSON is YAML, which is how helm reads the file.
    let file = json!({"apiVersion": "", "repositories": repositories}).to_string();
    write_private(&repositories_file(scratch), file.as_bytes())
        .map_err(|e| retryable(format!("helm repositories file: {e}")))
}

/// Where helm looks for its repositories file in the scratch home.
fn repositories_file(scratch: &Scratch) -> PathBuf {
    scratch.path().join("helm/config/repositories.yaml")
}

/// Writes a file only its owner may read (it holds passwords).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// The version Chart.lock locks of each dependency, by name; `None` when
/// there is no Chart.lock.
fn locked_versions(
    lock_file: &Path,
    path: &str,
) -> Result<Option<BTreeMap<String, String>>, StepError> {
    let label = Path::new(path).join("Chart.lock").display().to_string();
    let text = match std::fs::symlink_metadata(lock_file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => text_file::read(lock_file, "path", &label)?,
    };
    let lock: Lock = serde_saphyr::from_str(&text)
        .map_err(|e| terminal(format!("config.path: {label:?} is not a Chart.lock: {e}")))?;
    Ok(Some(
        lock.dependencies
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.name, d.version))
            .collect(),
    ))
}

/// Kargo's changes between two locks, by dependency name: `old -> new`
/// for a new version, the version for a new dependency, empty for one
/// gone.
fn changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut changes = BTreeMap::new();
    for (name, version) in after {
        match before.get(name) {
            Some(old) if old == version => {}
            Some(old) => {
                changes.insert(name.clone(), format!("{old} -> {version}"));
            }
            None => {
                changes.insert(name.clone(), version.clone());
            }
        }
    }
    for name in before.keys().filter(|name| !after.contains_key(*name)) {
        changes.insert(name.clone(), String::new());
    }
    changes
}

/// Kargo's message: `Updated chart dependencies for <path>`, then
/// `- <name>: <change>` per dependency (`removed` for one gone), here in
/// name order (Kargo's order is a Go map's).
fn commit_message(path: &str, changes: &BTreeMap<String, String>) -> String {
    let mut message = format!("Updated chart dependencies for {path}\n");
    for (name, change) in changes {
        let change = if change.is_empty() { "removed" } else { change };
        message.push_str(&format!("\n- {name}: {change}"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(repository: &str, name: &str, alias: &str) -> ChartConfig {
        ChartConfig {
            repository: repository.into(),
            name: name.into(),
            alias: alias.into(),
            version: String::new(),
            from_origin: None,
        }
    }

    fn dependency(repository: &str, name: &str, alias: &str) -> Dependency {
        Dependency {
            name: name.into(),
            repository: repository.into(),
            version: "1.0.0".into(),
            alias: alias.into(),
        }
    }

    #[test]
    fn an_update_matches_the_first_entry_of_its_repository_and_name_or_the_one_of_its_alias() {
        let deps = [
            dependency("https://charts.example.com", "redis", "cache"),
            dependency("https://charts.example.com", "redis", "queue"),
        ];
        let repo = "https://charts.example.com";
        assert_eq!(find(&deps, &update(repo, "redis", "")), Some(0));
        assert_eq!(find(&deps, &update(repo, "redis", "queue")), Some(1));
        assert_eq!(find(&deps, &update(repo, "redis", "other")), None);
        assert_eq!(
            find(&deps, &update("https://charts.example.com/", "redis", "")),
            None
        );
    }

    #[test]
    fn an_oci_dependency_takes_the_version_of_the_freights_chart_named_by_registry_and_name() {
        let freight: FreightReference = serde_json::from_value(json!({
            "name": "f1", "origin": {"kind": "Warehouse", "name": "charts"},
            "charts": [{"repoURL": "oci://ghcr.io/example/app", "version": "2.1.0"}],
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let found = version_from_freight(&[freight], &update("oci://ghcr.io/example/", "app", ""));
        assert_eq!(found, Ok("2.1.0".to_string()));
    }

    #[test]
    fn the_commit_message_lists_changed_added_and_removed_dependencies_by_name() {
        let before = BTreeMap::from([
            ("redis".to_string(), "1.0.0".to_string()),
            ("old".to_string(), "0.1.0".to_string()),
            ("same".to_string(), "3.0.0".to_string()),
        ]);
        let after = BTreeMap::from([
            ("redis".to_string(), "1.1.0".to_string()),
            ("new".to_string(), "2.0.0".to_string()),
            ("same".to_string(), "3.0.0".to_string()),
        ]);
        assert_eq!(
            commit_message("./charts/app", &changes(&before, &after)),
            "Updated chart dependencies for ./charts/app\n\n- new: 2.0.0\n- old: removed\n- redis: 1.0.0 -> 1.1.0"
        );
    }
}
