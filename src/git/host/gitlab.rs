//! GitLab's REST API (`/api/v4`): merge requests, by project path and
//! `iid`.

use serde_json::{Value, json};

use super::{
    HostError, Mergeable, NewPullRequest, PullRequest, RepoUrl, escape, number, optional_text, text,
};

pub const MERGE_METHODS: &[&str] = &["merge", "squash"];

/// GitLab names a project by its whole path (groups nest), URL-encoded.
pub fn locate(url: &RepoUrl) -> (String, String) {
    (
        format!("{}://{}/api/v4", url.scheme, url.authority),
        escape(&url.path.join("/")),
    )
}

pub fn merge_requests_path(project: &str) -> String {
    format!("/projects/{project}/merge_requests")
}

pub fn merge_request_path(project: &str, iid: u64) -> String {
    format!("/projects/{project}/merge_requests/{iid}")
}

pub fn merge_path(project: &str, iid: u64) -> String {
    format!("/projects/{project}/merge_requests/{iid}/merge")
}

pub fn list_path(project: &str, head: &str, base: &str) -> String {
    format!(
        "/projects/{project}/merge_requests?state=all&source_branch={}&target_branch={}&per_page=100",
        escape(head),
        escape(base)
    )
}

pub fn open_body(new: &NewPullRequest<'_>) -> Value {
    let mut body = json!({
        "source_branch": new.head,
        "target_branch": new.base,
        "title": new.title,
        "description": new.body,
    });
    if !new.labels.is_empty() {
        body["labels"] = json!(new.labels.join(","));
    }
    body
}

pub fn merge_body(method: Option<&str>) -> Result<Value, HostError> {
    match method {
        None | Some("merge") => Ok(json!({})),
        Some("squash") => Ok(json!({ "squash": true })),
        Some(m) => Err(HostError::Config(format!(
            "config.mergeMethod: GitLab merges with one of {}, not {m:?}",
            MERGE_METHODS.join(", ")
        ))),
    }
}

pub fn merge_request(json: &Value) -> Result<PullRequest, String> {
    let state = text(json, "/state")?;
    let merged = state == "merged";
    let mergeable = match json
        .pointer("/detailed_merge_status")
        .and_then(Value::as_str)
    {
        Some("mergeable") => Mergeable::Yes,
        Some("conflict" | "broken_status") => Mergeable::Conflict,
        Some(_) => Mergeable::NotYet,
        None => match json.pointer("/merge_status").and_then(Value::as_str) {
            Some("can_be_merged") => Mergeable::Yes,
            Some("cannot_be_merged")
                if json.pointer("/has_conflicts").and_then(Value::as_bool) == Some(true) =>
            {
                Mergeable::Conflict
            }
            _ => Mergeable::NotYet,
        },
    };
    Ok(PullRequest {
        number: number(json, "/iid")?,
        url: text(json, "/web_url")?,
        open: state == "opened" || state == "locked",
        merged,
        // A fast-forward merge makes no merge commit: the head (or the
        // squash commit) is what the target branch now points at.
        merge_commit: optional_text(json, "/merge_commit_sha")
            .or_else(|| optional_text(json, "/squash_commit_sha"))
            .or_else(|| merged.then(|| optional_text(json, "/sha")).flatten()),
        head_branch: text(json, "/source_branch")?,
        head_sha: optional_text(json, "/sha").unwrap_or_default(),
        base_branch: text(json, "/target_branch")?,
        created_at: optional_text(json, "/created_at").unwrap_or_default(),
        mergeable,
    })
}
