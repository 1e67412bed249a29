//! `copy`: copies a file, or a directory's contents recursively, from one
//! path of the work directory to another. An existing destination
//! directory is merged into and its files overwritten; symlinks in the
//! source are skipped; `.git` and the `ignore` patterns (`.gitignore`
//! syntax, evaluated after the `.git` default, so `!.git/` re-includes it)
//! are left out.

use std::path::Path;

use futures::FutureExt;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Deserialize;

use super::{BuiltinStep, StepContext, StepRun, parse_config, retryable, terminal};
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "copy";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    in_path: String,
    out_path: String,
    #[serde(default)]
    ignore: String,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .using_work_dir()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(copy(ctx).map(|()| StepResult::new(StepStatus::Succeeded)))
}

fn copy(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let config: Config = parse_config(ctx.config)?;
    let from = ctx.path("inPath", &config.in_path)?;
    let to = ctx.path("outPath", &config.out_path)?;
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| retryable(format!("copying {what}: {e}"))
    };
    let meta = std::fs::symlink_metadata(&from).map_err(|_| {
        terminal(format!(
            "config.inPath: {:?} does not exist in the work directory",
            config.in_path
        ))
    })?;
    if meta.is_file() {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::copy(&from, &to).map_err(io(&from))?;
        return Ok(());
    }
    let ignored = ignore_rules(&from, &config.ignore)?;
    copy_dir(&from, &from, &to, &ignored).map_err(|e| retryable(format!("copying: {e}")))
}

/// `.git` first, then the step's patterns, so that they can re-include it.
fn ignore_rules(root: &Path, patterns: &str) -> Result<Gitignore, StepError> {
    let mut builder = GitignoreBuilder::new(root);
    // `.git` is a file in a linked working tree, a directory elsewhere.
    let lines = std::iter::once(".git").chain(patterns.lines());
    for line in lines {
        builder
            .add_line(None, line)
            .map_err(|e| terminal(format!("config.ignore: {line:?}: {e}")))?;
    }
    builder
        .build()
        .map_err(|e| terminal(format!("config.ignore: {e}")))
}

fn copy_dir(root: &Path, dir: &Path, to: &Path, ignored: &Gitignore) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_symlink() {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path);
        if ignored
            .matched_path_or_any_parents(relative, kind.is_dir())
            .is_ignore()
        {
            continue;
        }
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(root, &path, &target, ignored)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}
