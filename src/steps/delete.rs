//! `delete`: removes files or directories from the Promotion's work
//! directory: `path` or `paths`, literal or (with `pathsAreGlobs`) glob
//! patterns; with `strict`, a path that does not exist or a pattern that
//! matches nothing is an error.

use std::path::{Path, PathBuf};

use futures::FutureExt;
use serde::Deserialize;

use super::{BuiltinStep, StepContext, StepRun, parse_config, retryable, terminal};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "delete";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    paths_are_globs: bool,
    #[serde(default)]
    strict: bool,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .using_work_dir()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(delete(ctx).map(|()| StepResult::new(StepStatus::Succeeded)))
}

fn delete(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let config: Config = parse_config(ctx.config)?;
    let named: Vec<(String, &str)> = match (&config.path, config.paths.is_empty()) {
        (Some(path), true) => vec![("path".into(), path.as_str())],
        (None, false) => config
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("paths[{i}]"), p.as_str()))
            .collect(),
        _ => {
            return Err(terminal(
                "config: exactly one of path and paths must be set",
            ));
        }
    };
    let root = ctx.work_dir()?;
    for (field, path) in named {
        let targets = if config.paths_are_globs {
            matches(ctx, &root, &field, path)?
        } else {
            let target = ctx.path(&field, path)?;
            if std::fs::symlink_metadata(&target).is_ok() {
                vec![target]
            } else {
                Vec::new()
            }
        };
        if targets.is_empty() && config.strict {
            return Err(terminal(format!(
                "config.{field}: {path:?} matches nothing in the work directory"
            )));
        }
        for target in targets {
            remove(&target).map_err(|e| {
                retryable(format!(
                    "config.{field}: removing {}: {e}",
                    target.display()
                ))
            })?;
        }
    }
    Ok(())
}

/// The paths a glob pattern matches, searched from its literal prefix
/// (which must lie inside the work directory) without following symlinks.
fn matches(
    ctx: &StepContext<'_>,
    root: &Path,
    field: &str,
    pattern: &str,
) -> Result<Vec<PathBuf>, StepError> {
    let literal: Vec<&str> = pattern
        .split('/')
        .take_while(|part| !part.contains(['*', '?', '[', '{']))
        .collect();
    let start = ctx.path(field, &format!("./{}", literal.join("/")))?;
    let base = root
        .canonicalize()
        .map_err(|e| retryable(format!("work directory: {e}")))?;
    // Matched against paths relative to the work directory, normalised as
    // any path the step names (a `..` that leaves it is refused there).
    let relative_pattern = ctx
        .path(field, pattern)?
        .strip_prefix(&base)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let glob = globset::GlobBuilder::new(&relative_pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| terminal(format!("config.{field}: {e}")))?
        .compile_matcher();
    let mut found = Vec::new();
    let start_relative = start.strip_prefix(&base).unwrap_or(&start);
    if glob.is_match(start_relative) && std::fs::symlink_metadata(&start).is_ok() {
        return Ok(vec![start]);
    }
    let mut pending = vec![start];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(&base).unwrap_or(&path);
            if glob.is_match(relative) {
                found.push(path);
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            }
        }
    }
    Ok(found)
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
