//! `git-commit`: commits every change of a working tree (additions, edits,
//! deletions) to its branch. Output `commit`: the new commit, or the
//! branch's head when nothing changed. The message carries a trailer with
//! the Promotion's UID; a run after an interrupted one finds that commit on
//! the branch and makes no second one.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::git_clone::{AuthorConfig, author_of};
use super::repository::{blocking, default_author};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal};
use crate::git;
use crate::promotion::engine::{StepError, StepResult};

pub const KIND: &str = "git-commit";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    path: String,
    message: Option<String>,
    #[serde(default)]
    message_from_steps: Vec<String>,
    author: Option<AuthorConfig>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .using_work_dir()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(commit(ctx).await)
}

async fn commit(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    let path = ctx.path("path", &config.path)?;
    let message = message(ctx, &config)?;
    let author = match &config.author {
        Some(author) => Some(author_of(author, "config.author")?),
        None => None,
    };
    let uid = ctx.subject.promotion_uid.to_string();
    let committed = blocking(move || {
        let repo = git::open(&path)?;
        let author = author
            .or_else(|| git::default_author(&repo))
            .unwrap_or_else(default_author);
        git::commit_all(&repo, &message, &author, &uid)
    })
    .await?;
    Ok(StepResult::succeeded_with(
        json!({ "commit": committed.oid().to_string() }),
    ))
}

/// `message`, or the `commitMessage` outputs of `messageFromSteps` joined
/// by blank lines.
fn message(ctx: &StepContext<'_>, config: &Config) -> Result<String, StepError> {
    match (&config.message, config.message_from_steps.is_empty()) {
        (Some(_), false) => Err(terminal(
            "config: message and messageFromSteps are mutually exclusive",
        )),
        (Some(message), true) if !message.trim().is_empty() => Ok(message.clone()),
        (_, false) => {
            let mut parts = Vec::new();
            for (i, alias) in config.message_from_steps.iter().enumerate() {
                match ctx.outputs.get(alias).and_then(|o| o.get("commitMessage")) {
                    Some(Value::String(text)) if !text.is_empty() => parts.push(text.clone()),
                    Some(Value::String(_)) | None if ctx.outputs.contains_key(alias) => {}
                    _ => {
                        return Err(terminal(format!(
                            "config.messageFromSteps[{i}]: no earlier step {alias:?} has a commitMessage output"
                        )));
                    }
                }
            }
            if parts.is_empty() {
                return Err(terminal(
                    "config.messageFromSteps: the steps named gave no commit message",
                ));
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(terminal("config.message: a commit message is required")),
    }
}
