//! `git-clone`: a bare clone of a remote, and a working tree per checkout
//! (a commit, a tag, a branch, or a new orphan branch) at a path of the work
//! directory. Output `commits`: the commit each checkout holds, by its `as`
//! or its path.
//!
//! `blobless` and `sparse` are accepted and do a full clone and checkout:
//! libgit2 has neither partial clones nor sparse checkouts, and the full
//! tree holds everything the sparse one would.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::repository::{access, blocking, clone_dir};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal};
use crate::git::{self, Revision};
use crate::promotion::engine::{StepError, StepResult};

pub const KIND: &str = "git-clone";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(rename = "repoURL")]
    repo_url: String,
    #[serde(default, rename = "insecureSkipTLSVerify")]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    #[allow(dead_code)]
    blobless: bool,
    #[serde(default)]
    recurse_submodules: bool,
    author: Option<AuthorConfig>,
    checkout: Vec<Checkout>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AuthorConfig {
    pub name: Option<String>,
    pub email: Option<String>,
    pub signing_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Checkout {
    #[serde(rename = "as")]
    alias: Option<String>,
    branch: Option<String>,
    #[serde(default)]
    create: bool,
    commit: Option<String>,
    tag: Option<String>,
    path: String,
    #[serde(default)]
    #[allow(dead_code)]
    sparse: Vec<String>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .using_work_dir()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(clone(ctx).await)
}

async fn clone(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    if config.checkout.is_empty() {
        return Err(terminal(
            "config.checkout: at least one checkout is required",
        ));
    }
    let author = match &config.author {
        Some(author) => Some(author_of(author, "config.author")?),
        None => None,
    };
    let mut checkouts = Vec::new();
    for (i, checkout) in config.checkout.iter().enumerate() {
        let field = format!("checkout[{i}]");
        let revision =
            revision(checkout).map_err(|why| terminal(format!("config.{field}: {why}")))?;
        let path = ctx.path(&format!("{field}.path"), &checkout.path)?;
        let key = checkout
            .alias
            .clone()
            .unwrap_or_else(|| checkout.path.clone());
        checkouts.push((field, revision, path, key));
    }
    let access = access(ctx, &config.repo_url, config.insecure_skip_tls_verify).await?;
    let url = config.repo_url.clone();
    let bare_dir = clone_dir(ctx);
    let submodules = config.recurse_submodules;
    let commits = blocking(move || {
        // A run of this step before (interrupted before its result was
        // recorded) left its clone and checkouts: start them again.
        for (_, _, path, _) in &checkouts {
            if git::open(path).is_ok_and(|r| r.commondir().starts_with(&bare_dir)) {
                let _ = std::fs::remove_dir_all(path);
            }
        }
        let _ = std::fs::remove_dir_all(&bare_dir);
        let bare = git::clone_bare(&url, &bare_dir, &access)?;
        if let Some(author) = &author {
            git::set_default_author(&bare, author)?;
        }
        let mut commits = Map::new();
        for (field, revision, path, key) in &checkouts {
            let commit = git::add_worktree(&bare, revision, path).map_err(|e| match e {
                git::Error::Refused(why) => git::Error::Refused(format!("config.{field}: {why}")),
                other => other,
            })?;
            if submodules {
                git::update_submodules(path, &access)?;
            }
            let commit = commit.map(|c| c.to_string()).unwrap_or_default();
            commits.insert(key.clone(), Value::String(commit));
        }
        Ok(commits)
    })
    .await?;
    Ok(StepResult::succeeded_with(json!({ "commits": commits })))
}

fn revision(checkout: &Checkout) -> Result<Revision, String> {
    let named = [
        checkout.branch.is_some(),
        checkout.commit.is_some(),
        checkout.tag.is_some(),
    ];
    if named.iter().filter(|n| **n).count() > 1 {
        return Err("branch, commit and tag are mutually exclusive".to_string());
    }
    if checkout.create && checkout.branch.is_none() {
        return Err("create needs a branch".to_string());
    }
    let nonempty = |what: &str, value: &str| {
        if value.trim().is_empty() {
            Err(format!("{what} is empty"))
        } else {
            Ok(value.to_string())
        }
    };
    Ok(match (&checkout.branch, &checkout.commit, &checkout.tag) {
        (Some(branch), _, _) => Revision::Branch {
            name: nonempty("branch", branch)?,
            create: checkout.create,
        },
        (_, Some(commit), _) => Revision::Commit(nonempty("commit", commit)?),
        (_, _, Some(tag)) => Revision::Tag(nonempty("tag", tag)?),
        _ => Revision::Default,
    })
}

/// An author from a step's config; signing is refused rather than ignored.
pub(super) fn author_of(author: &AuthorConfig, field: &str) -> Result<git::Author, StepError> {
    if author.signing_key.as_deref().is_some_and(|k| !k.is_empty()) {
        return Err(terminal(format!(
            "{field}.signingKey: Barge does not sign commits"
        )));
    }
    let fallback = super::repository::default_author();
    Ok(git::Author {
        name: author
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or(fallback.name),
        email: author
            .email
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or(fallback.email),
    })
}
