//! Gitea's (and Forgejo's) API: `/api/v1`, GitHub-like JSON, merges by
//! `POST …/merge` with `Do`.

use serde_json::{Value, json};

use super::{
    HostError, Mergeable, NewPullRequest, PullRequest, RepoUrl, escape, flag, number,
    optional_text, text,
};

/// Merge styles Gitea accepts in `Do`.
pub const MERGE_METHODS: &[&str] = &[
    "merge",
    "rebase",
    "rebase-merge",
    "squash",
    "fast-forward-only",
    "manually-merged",
];

/// The API base and `owner/name`; a Gitea served under a path prefix keeps
/// it in the API base.
pub fn locate(url: &RepoUrl) -> Result<(String, String), HostError> {
    let n = url.path.len();
    let prefix: String = url.path[..n - 2].iter().map(|s| format!("/{s}")).collect();
    Ok((
        format!("{}://{}{prefix}/api/v1", url.scheme, url.authority),
        format!("{}/{}", escape(&url.path[n - 2]), escape(&url.path[n - 1])),
    ))
}

// Gitea's pull-request paths are GitHub's.
pub use super::github::{merge_path, pull_path, pulls_path};

/// Gitea filters pull requests by state, not by branch: the newest fifty
/// of any state, filtered by the caller.
pub fn list_path(repo: &str, _base: &str) -> String {
    format!("/repos/{repo}/pulls?state=all&sort=recentupdate&limit=50")
}

pub fn labels_path(repo: &str) -> String {
    format!("/repos/{repo}/labels?limit=50")
}

/// Gitea takes label IDs: the IDs of the repository's labels named
/// `wanted`, or an error naming one that does not exist.
pub fn label_ids(listed: &Value, wanted: &[String]) -> Result<Vec<u64>, HostError> {
    let labels = listed.as_array().map(Vec::as_slice).unwrap_or_default();
    wanted
        .iter()
        .map(|name| {
            labels
                .iter()
                .find(|l| l.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .and_then(|l| l.get("id").and_then(Value::as_u64))
                .ok_or_else(|| {
                    HostError::Config(format!(
                        "config.labels: the repository has no label {name:?} (Gitea applies existing labels only)"
                    ))
                })
        })
        .collect()
}

pub fn open_body(new: &NewPullRequest<'_>, labels: &[u64]) -> Value {
    let mut body = json!({
        "head": new.head,
        "base": new.base,
        "title": new.title,
        "body": new.body,
    });
    if !labels.is_empty() {
        body["labels"] = json!(labels);
    }
    body
}

pub fn merge_body(method: Option<&str>) -> Result<Value, HostError> {
    let method = method.unwrap_or("merge");
    if !MERGE_METHODS.contains(&method) {
        return Err(HostError::Config(format!(
            "config.mergeMethod: Gitea merges with one of {}, not {method:?}",
            MERGE_METHODS.join(", ")
        )));
    }
    Ok(json!({ "Do": method }))
}

pub fn pull_request(json: &Value) -> Result<PullRequest, String> {
    let open = text(json, "/state")? == "open";
    // Gitea reports a conflict and a conflict check in progress alike as
    // `mergeable: false`; the merge step tells them apart.
    let mergeable = if flag(json, "/draft") || !flag(json, "/mergeable") {
        Mergeable::NotYet
    } else {
        Mergeable::Yes
    };
    Ok(PullRequest {
        number: number(json, "/number")?,
        url: text(json, "/html_url")?,
        open,
        merged: flag(json, "/merged"),
        merge_commit: optional_text(json, "/merge_commit_sha"),
        head_branch: text(json, "/head/ref")?,
        head_sha: optional_text(json, "/head/sha").unwrap_or_default(),
        base_branch: text(json, "/base/ref")?,
        created_at: optional_text(json, "/created_at").unwrap_or_default(),
        mergeable,
    })
}
