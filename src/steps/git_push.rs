//! `git-push`: pushes a working tree's HEAD to a branch (its own, the one
//! named, or `barge/promotion/<name>`) or pushes a tag. When the branch
//! moved on meanwhile (another Promotion pushed), fetches, rebases and
//! tries again, up to `maxAttempts`; a conflict stops it. Outputs `branch`,
//! `commit` and `commitURL`.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::repository::{access_of_tree, blocking};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal};
use crate::git::{self, PushTarget};
use crate::promotion::engine::{StepError, StepResult};

pub const KIND: &str = "git-push";

const DEFAULT_MAX_ATTEMPTS: u32 = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    path: String,
    target_branch: Option<String>,
    max_attempts: Option<u32>,
    #[serde(default)]
    generate_target_branch: bool,
    tag: Option<String>,
    #[serde(default)]
    force: bool,
    provider: Option<String>,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| run(ctx).boxed())
        .config::<Config>()
        .using_work_dir()
}

async fn run(ctx: &StepContext<'_>) -> StepRun {
    StepRun::done(push(ctx).await)
}

async fn push(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    let path = ctx.path("path", &config.path)?;
    let named = [
        config.target_branch.is_some(),
        config.generate_target_branch,
        config.tag.is_some(),
    ];
    if named.iter().filter(|n| **n).count() > 1 {
        return Err(terminal(
            "config: targetBranch, generateTargetBranch and tag are mutually exclusive",
        ));
    }
    if config.max_attempts == Some(0) {
        return Err(terminal("config.maxAttempts: must be at least 1"));
    }
    let provider = match config.provider.as_deref() {
        None | Some("") => None,
        Some(p) => Some(Provider::named(p).ok_or_else(|| {
            terminal(format!(
                "config.provider: {p:?} is not one of azure, bitbucket, gitea, github, gitlab"
            ))
        })?),
    };
    let generated = format!("barge/promotion/{}", ctx.subject.promotion);
    let access = access_of_tree(ctx, path.clone()).await?;
    let max_attempts = config.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    let (branch, pushed, url) = blocking(move || {
        let repo = git::open(&path)?;
        let target = if let Some(tag) = config.tag {
            PushTarget::Tag(tag)
        } else {
            let name = match (config.target_branch, config.generate_target_branch) {
                (Some(branch), _) => branch,
                (None, true) => generated,
                (None, false) => git::current_branch(&repo).ok_or_else(|| {
                    git::Error::Refused(
                        "config.targetBranch: the working tree is on no branch (it holds a commit or tag); name the branch to push to"
                            .to_string(),
                    )
                })?,
            };
            if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
                return Err(git::Error::Refused(format!(
                    "config.targetBranch: {name:?} is not a valid branch name"
                )));
            }
            PushTarget::Branch {
                name,
                force: config.force,
            }
        };
        let pushed = git::push(&repo, &target, &access, max_attempts)?;
        let branch = match target {
            PushTarget::Branch { name, .. } => name,
            PushTarget::Tag(_) => String::new(),
        };
        let (url, _) = git::access_of(&repo)?;
        Ok((branch, pushed, url))
    })
    .await?;
    let commit = pushed.commit.to_string();
    let commit_url = provider
        .or_else(|| Provider::of_url(&url))
        .map(|p| p.commit_url(&url, &commit))
        .unwrap_or_default();
    Ok(StepResult::succeeded_with(json!({
        "branch": branch,
        "commit": commit,
        "commitURL": commit_url,
    })))
}

/// A Git host, for the web address of a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    Azure,
    Bitbucket,
    Gitea,
    GitHub,
    GitLab,
}

impl Provider {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "azure" => Self::Azure,
            "bitbucket" => Self::Bitbucket,
            "gitea" => Self::Gitea,
            "github" => Self::GitHub,
            "gitlab" => Self::GitLab,
            _ => return None,
        })
    }

    fn of_url(url: &str) -> Option<Self> {
        let host = web_base(url)?.split('/').nth(2)?.to_ascii_lowercase();
        [
            ("github", Self::GitHub),
            ("gitlab", Self::GitLab),
            ("bitbucket", Self::Bitbucket),
            ("dev.azure.com", Self::Azure),
            ("visualstudio.com", Self::Azure),
            ("gitea", Self::Gitea),
        ]
        .into_iter()
        .find_map(|(needle, p)| host.contains(needle).then_some(p))
    }

    fn commit_url(self, url: &str, commit: &str) -> String {
        let Some(base) = web_base(url) else {
            return String::new();
        };
        match self {
            Self::GitHub | Self::Gitea | Self::Azure => format!("{base}/commit/{commit}"),
            Self::GitLab => format!("{base}/-/commit/{commit}"),
            Self::Bitbucket => format!("{base}/commits/{commit}"),
        }
    }
}

/// The repository's web address: HTTP(S), no user information, no `.git`.
fn web_base(url: &str) -> Option<String> {
    let redacted = git::redact_url(url);
    if !(redacted.starts_with("https://") || redacted.starts_with("http://")) {
        return None;
    }
    let trimmed = redacted.trim_end_matches('/');
    Some(trimmed.strip_suffix(".git").unwrap_or(trimmed).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_urls_follow_each_hosts_layout() {
        let commit = "abc123";
        let cases = [
            (
                "https://github.com/org/app.git",
                "https://github.com/org/app/commit/abc123",
            ),
            (
                "https://bot:t@gitlab.com/org/app",
                "https://gitlab.com/org/app/-/commit/abc123",
            ),
            (
                "https://bitbucket.org/org/app.git",
                "https://bitbucket.org/org/app/commits/abc123",
            ),
        ];
        for (url, expected) in cases {
            let provider = Provider::of_url(url).map(|p| p.commit_url(url, commit));
            assert_eq!(provider.as_deref(), Some(expected), "{url}");
        }
        assert_eq!(Provider::of_url("http://localhost:3000/org/app.git"), None);
        assert_eq!(
            Provider::Gitea.commit_url("http://localhost:3000/org/app.git", commit),
            "http://localhost:3000/org/app/commit/abc123"
        );
    }
}
