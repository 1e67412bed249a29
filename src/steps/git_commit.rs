//! `git-commit`: commits every change of a working tree (additions, edits,
//! deletions) to its branch. Output `commit`: the new commit, or the
//! branch's head when nothing changed. The message carries trailers with
//! the Promotion's UID and the step's alias; a run after an interrupted one
//! finds that commit on the branch and makes no second one.

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
    let step = ctx.alias.to_string();
    let committed = blocking(move || {
        let repo = git::open(&path)?;
        let author = author
            .or_else(|| git::default_author(&repo))
            .unwrap_or_else(default_author);
        let mark = git::Mark {
            promotion_uid: &uid,
            step: &step,
        };
        git::commit_all(&repo, &message, &author, mark)
    })
    .await?;
    Ok(StepResult::succeeded_with(
        json!({ "commit": committed.oid().to_string() }),
    ))
}

/// `message`, or the `commitMessage` outputs of `messageFromSteps` joined
/// by blank lines. Inside a task a name is first the task's own step (its
/// alias is `<task>::<name>` in the Promotion); a name with no such output
/// is skipped, and with none at all the message says only that something
/// changed, as Kargo's does.
fn message(ctx: &StepContext<'_>, config: &Config) -> Result<String, StepError> {
    match (&config.message, config.message_from_steps.is_empty()) {
        (Some(_), false) => Err(terminal(
            "config: message and messageFromSteps are mutually exclusive",
        )),
        (Some(message), true) if !message.trim().is_empty() => Ok(message.clone()),
        (_, false) => {
            let task = ctx.alias.rsplit_once("::").map(|(task, _)| task);
            let output = |name: &str| {
                let own = task.map(|task| format!("{task}::{name}"));
                own.and_then(|own| ctx.outputs.get(&own))
                    .or_else(|| ctx.outputs.get(name))
                    .and_then(|o| o.get("commitMessage"))
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
            };
            let parts: Vec<String> = config
                .message_from_steps
                .iter()
                .filter_map(|name| output(name))
                .collect();
            if parts.is_empty() {
                return Ok(NOTHING_SAID.to_string());
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(terminal("config.message: a commit message is required")),
    }
}

/// The message when `messageFromSteps` found nothing to say.
const NOTHING_SAID: &str = "Barge made some changes";
