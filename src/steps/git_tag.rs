//! `git-tag`: an annotated tag on a working tree's HEAD. Output `commit`:
//! the commit tagged. Signed tags are refused rather than made unsigned.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::repository::blocking;
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal};
use crate::git;
use crate::promotion::engine::{StepError, StepResult};

pub const KIND: &str = "git-tag";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    path: String,
    tag: String,
    signer: Option<Signer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Signer {
    name: Option<String>,
    email: Option<String>,
    signing_key: Option<String>,
    signing_message: Option<String>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .using_work_dir()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(tag(ctx).await)
}

async fn tag(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    let path = ctx.path("path", &config.path)?;
    if !git2::Reference::is_valid_name(&format!("refs/tags/{}", config.tag)) {
        return Err(terminal(format!(
            "config.tag: {:?} is not a valid tag name",
            config.tag
        )));
    }
    let signer = config.signer.unwrap_or_default();
    if signer.signing_key.as_deref().is_some_and(|k| !k.is_empty()) {
        return Err(terminal(
            "config.signer.signingKey: Barge does not sign tags",
        ));
    }
    let tagger = git::Author {
        name: signer.name.unwrap_or_else(|| "Barge".to_string()),
        email: signer
            .email
            .unwrap_or_else(|| "no-reply@barge.dev".to_string()),
    };
    let message = signer.signing_message.unwrap_or_else(|| config.tag.clone());
    let name = config.tag.clone();
    let commit = blocking(move || {
        let repo = git::open(&path)?;
        git::tag(&repo, &name, &message, &tagger).map_err(|e| match e {
            git::Error::Refused(why) => git::Error::Refused(format!("config.tag: {why}")),
            other => other,
        })
    })
    .await?;
    Ok(StepResult::succeeded_with(
        json!({ "commit": commit.to_string() }),
    ))
}
