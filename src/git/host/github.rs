//! GitHub's REST API (github.com, and GitHub Enterprise Server under
//! `/api/v3`).

use serde_json::{Value, json};

use super::{
    HostError, Mergeable, NewPullRequest, PullRequest, RepoUrl, escape, flag, number,
    optional_text, text,
};

pub const MERGE_METHODS: &[&str] = &["merge", "rebase", "squash"];

pub fn locate(url: &RepoUrl) -> Result<(String, String), HostError> {
    if url.path.len() != 2 {
        return Err(HostError::Config(format!(
            "config.repoURL: a GitHub repository's path is owner/name, not {}",
            url.path.join("/")
        )));
    }
    let host = url.authority.to_ascii_lowercase();
    let api = if host == "github.com" || host == "www.github.com" {
        "https://api.github.com".to_string()
    } else if host.ends_with(".ghe.com") {
        format!("https://api.{host}")
    } else {
        format!("{}://{}/api/v3", url.scheme, url.authority)
    };
    Ok((
        api,
        format!("{}/{}", escape(&url.path[0]), escape(&url.path[1])),
    ))
}

pub fn pulls_path(repo: &str) -> String {
    format!("/repos/{repo}/pulls")
}

pub fn pull_path(repo: &str, number: u64) -> String {
    format!("/repos/{repo}/pulls/{number}")
}

pub fn merge_path(repo: &str, number: u64) -> String {
    format!("/repos/{repo}/pulls/{number}/merge")
}

pub fn labels_path(repo: &str, number: u64) -> String {
    format!("/repos/{repo}/issues/{number}/labels")
}

/// GitHub filters by `owner:branch` for the head and by base.
pub fn list_path(repo: &str, head: &str, base: &str) -> String {
    let owner = repo.split('/').next().unwrap_or_default();
    format!(
        "/repos/{repo}/pulls?state=all&head={owner}:{}&base={}&per_page=100",
        escape(head),
        escape(base)
    )
}

pub fn open_body(new: &NewPullRequest<'_>) -> Value {
    json!({
        "head": new.head,
        "base": new.base,
        "title": new.title,
        "body": new.body,
    })
}

pub fn merge_body(method: Option<&str>) -> Result<Value, HostError> {
    match method {
        None => Ok(json!({})),
        Some(m) if MERGE_METHODS.contains(&m) => Ok(json!({ "merge_method": m })),
        Some(m) => Err(HostError::Config(format!(
            "config.mergeMethod: GitHub merges with one of {}, not {m:?}",
            MERGE_METHODS.join(", ")
        ))),
    }
}

pub fn pull_request(json: &Value) -> Result<PullRequest, String> {
    let merged = flag(json, "/merged") || optional_text(json, "/merged_at").is_some();
    // `mergeable_state` says more than `mergeable`: `dirty` is a conflict;
    // `unknown` (still computed), `blocked`, `behind` and `draft` may clear.
    let mergeable = match json.pointer("/mergeable_state").and_then(Value::as_str) {
        Some("clean" | "unstable" | "has_hooks") => Mergeable::Yes,
        Some("dirty") => Mergeable::Conflict,
        Some(_) => Mergeable::NotYet,
        None if flag(json, "/mergeable") && !flag(json, "/draft") => Mergeable::Yes,
        None => Mergeable::NotYet,
    };
    Ok(PullRequest {
        number: number(json, "/number")?,
        url: text(json, "/html_url")?,
        open: text(json, "/state")? == "open",
        merged,
        // Before the merge this is a test merge's commit: only a merged
        // pull request's counts.
        merge_commit: merged
            .then(|| optional_text(json, "/merge_commit_sha"))
            .flatten(),
        head_branch: text(json, "/head/ref")?,
        head_sha: optional_text(json, "/head/sha").unwrap_or_default(),
        base_branch: text(json, "/base/ref")?,
        created_at: optional_text(json, "/created_at").unwrap_or_default(),
        mergeable,
    })
}
