//! Pull requests on a Git hosting service's API: Gitea (and Forgejo, which
//! speaks the same API), GitHub and GitLab. One [`GitHost`] per repository;
//! each provider's module turns its JSON into a [`PullRequest`] and says
//! which endpoints it uses, so the shapes are tested without a server.

mod gitea;
mod github;
mod gitlab;

use std::fmt;
use std::sync::Once;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::credentials::Credentials;

/// Which API a repository's host speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Gitea,
    GitHub,
    GitLab,
}

impl Provider {
    pub const NAMES: &[&str] = &["gitea", "github", "gitlab"];

    /// The provider a step's `provider` field names.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "gitea" | "forgejo" => Some(Self::Gitea),
            "github" => Some(Self::GitHub),
            "gitlab" => Some(Self::GitLab),
            _ => None,
        }
    }

    /// The provider a repository's host name suggests, as Kargo infers it.
    pub fn infer(host: &str) -> Option<Self> {
        let host = host.to_ascii_lowercase();
        if host.contains("github") || host.ends_with(".ghe.com") {
            Some(Self::GitHub)
        } else if host.contains("gitlab") {
            Some(Self::GitLab)
        } else if host.contains("gitea") || host.contains("forgejo") || host == "codeberg.org" {
            Some(Self::Gitea)
        } else {
            None
        }
    }
}

/// A pull (GitLab: merge) request as the steps see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    /// Its web page.
    pub url: String,
    pub open: bool,
    pub merged: bool,
    /// The commit the merge made on the target branch.
    pub merge_commit: Option<String>,
    pub head_branch: String,
    pub head_sha: String,
    pub base_branch: String,
    /// RFC 3339, to prefer the newest of several candidates.
    pub created_at: String,
    pub mergeable: Mergeable,
}

/// Whether the host would merge an open pull request now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mergeable {
    Yes,
    /// Not yet (checks running, a draft, mergeability still computed,
    /// required reviews missing): may clear by itself.
    #[default]
    NotYet,
    /// Conflicts with its target branch: clears only when someone resolves
    /// them.
    Conflict,
}

/// What opening a pull request needs.
#[derive(Clone, Debug)]
pub struct NewPullRequest<'a> {
    pub head: &'a str,
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub labels: &'a [String],
}

/// What a merge attempt ended in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    Merged(PullRequest),
    /// The host would not merge it yet; why.
    NotReady(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// The configuration cannot work: a retry would fail the same way.
    #[error("{0}")]
    Config(String),
    /// The host refused the credentials or their permissions.
    #[error("{what}: the host answered {status}{hint}")]
    Denied {
        what: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{what}: not found (HTTP 404){hint}")]
    NotFound { what: String, hint: &'static str },
    /// The pull request cannot be merged, and waiting will not change it.
    #[error("{0}")]
    Unmergeable(String),
    /// The host or the network failed; worth another try.
    #[error("{what}: {message}")]
    Unavailable { what: String, message: String },
    /// The host refused the request (a 4xx other than 401, 403 and 404):
    /// `message` is `HTTP <status>` and the host's words.
    #[error("{what}: {message}")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
    /// The host answered something this client does not understand.
    #[error("{what}: unexpected answer: {message}")]
    Malformed { what: String, message: String },
}

impl HostError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Rejected { .. })
    }
}

pub type Result<T> = std::result::Result<T, HostError>;

/// A repository on its host, and how to call the host's API for it.
pub struct GitHost {
    provider: Provider,
    /// The API's base URL, without a trailing `/`.
    api: String,
    /// Provider-specific path to the repository: `owner/name`, or GitLab's
    /// URL-encoded project path.
    repo: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for GitHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHost")
            .field("provider", &self.provider)
            .field("api", &self.api)
            .field("repo", &self.repo)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// rustls needs a process-wide crypto provider; ring is the one kube uses.
static CRYPTO: Once = Once::new();

/// The parts of a repository URL the APIs need.
#[derive(Debug, PartialEq, Eq)]
pub struct RepoUrl {
    /// `http` or `https` (SSH URLs are reached over HTTPS).
    pub scheme: String,
    /// Host and port, as written.
    pub authority: String,
    /// The repository's path without `.git`, as written (case kept).
    pub path: Vec<String>,
}

/// Splits a repository URL into what the APIs need; an SSH or SCP-style
/// URL's host is taken to serve its API over HTTPS.
pub fn parse_repo_url(url: &str) -> Result<RepoUrl> {
    let bad = |why: &str| HostError::Config(format!("config.repoURL {url:?}: {why}"));
    let trimmed = url.trim();
    let (scheme, rest, ssh) = match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            let ssh = scheme == "ssh";
            (scheme, rest.to_string(), ssh)
        }
        // SCP-style: user@host:path.
        None => match trimmed.split_once(':') {
            Some((user_host, path)) if user_host.contains('@') && !path.is_empty() => {
                ("ssh".to_string(), format!("{user_host}/{path}"), true)
            }
            _ => return Err(bad("not a URL")),
        },
    };
    let scheme = match scheme.as_str() {
        "http" => "http".to_string(),
        "https" | "ssh" => "https".to_string(),
        other => return Err(bad(&format!("scheme {other} has no pull-request API"))),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // An SSH URL's port is SSH's, not the API's.
    let authority = if ssh {
        authority.split(':').next().unwrap_or(authority)
    } else {
        authority
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let authority = authority.to_string();
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let path: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if path.len() < 2 {
        return Err(bad("no owner and repository in its path"));
    }
    Ok(RepoUrl {
        scheme,
        authority,
        path,
    })
}

impl GitHost {
    /// The host of `repo_url`, speaking `provider` (inferred from the host
    /// name when `None`), authenticated with the password (token) of
    /// `credentials`.
    pub fn new(
        repo_url: &str,
        provider: Option<&str>,
        credentials: Option<&Credentials>,
        insecure_skip_tls_verify: bool,
    ) -> Result<Self> {
        let parsed = parse_repo_url(repo_url)?;
        let host_name = parsed.authority.split(':').next().unwrap_or_default();
        let provider = match provider.filter(|p| !p.is_empty()) {
            Some(name) => Provider::named(name).ok_or_else(|| {
                HostError::Config(format!(
                    "config.provider: {name:?} is not one of {}",
                    Provider::NAMES.join(", ")
                ))
            })?,
            None => Provider::infer(host_name).ok_or_else(|| {
                HostError::Config(format!(
                    "config.provider: cannot tell which API {host_name} speaks from its name; set provider to one of {}",
                    Provider::NAMES.join(", ")
                ))
            })?,
        };
        let (api, repo) = match provider {
            Provider::Gitea => gitea::locate(&parsed)?,
            Provider::GitHub => github::locate(&parsed)?,
            Provider::GitLab => gitlab::locate(&parsed),
        };
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("barge/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(insecure_skip_tls_verify)
            .build()
            .map_err(|e| HostError::Unavailable {
                what: "building the HTTP client".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            provider,
            api,
            repo,
            token: credentials
                .map(|c| c.password.clone())
                .filter(|t| !t.is_empty()),
            http,
        })
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Opens a pull request from `new.head` into `new.base`.
    pub async fn open(&self, new: &NewPullRequest<'_>) -> Result<PullRequest> {
        let what = format!("opening a pull request from {} into {}", new.head, new.base);
        match self.provider {
            Provider::Gitea => {
                let labels = if new.labels.is_empty() {
                    Vec::new()
                } else {
                    let listed = self
                        .call(
                            Method::GET,
                            "listing the repository's labels",
                            &gitea::labels_path(&self.repo),
                            None,
                        )
                        .await?;
                    gitea::label_ids(&listed, new.labels)?
                };
                let body = gitea::open_body(new, &labels);
                let created = self
                    .call(
                        Method::POST,
                        &what,
                        &gitea::pulls_path(&self.repo),
                        Some(body),
                    )
                    .await?;
                gitea::pull_request(&created).map_err(|m| malformed(&what, m))
            }
            Provider::GitHub => {
                let created = self
                    .call(
                        Method::POST,
                        &what,
                        &github::pulls_path(&self.repo),
                        Some(github::open_body(new)),
                    )
                    .await?;
                let pr = github::pull_request(&created).map_err(|m| malformed(&what, m))?;
                if !new.labels.is_empty() {
                    self.call(
                        Method::POST,
                        "labelling the pull request",
                        &github::labels_path(&self.repo, pr.number),
                        Some(serde_json::json!({ "labels": new.labels })),
                    )
                    .await?;
                }
                Ok(pr)
            }
            Provider::GitLab => {
                let created = self
                    .call(
                        Method::POST,
                        &what,
                        &gitlab::merge_requests_path(&self.repo),
                        Some(gitlab::open_body(new)),
                    )
                    .await?;
                gitlab::merge_request(&created).map_err(|m| malformed(&what, m))
            }
        }
    }

    /// Pull request `number`.
    pub async fn get(&self, number: u64) -> Result<PullRequest> {
        let what = format!("reading pull request {number}");
        let path = match self.provider {
            Provider::Gitea => gitea::pull_path(&self.repo, number),
            Provider::GitHub => github::pull_path(&self.repo, number),
            Provider::GitLab => gitlab::merge_request_path(&self.repo, number),
        };
        let json = self.call(Method::GET, &what, &path, None).await?;
        self.parse(&json).map_err(|m| malformed(&what, m))
    }

    /// The pull requests from `head` into `base`, in any state, newest
    /// first (at most the newest hundred).
    pub async fn list(&self, head: &str, base: &str) -> Result<Vec<PullRequest>> {
        let what = format!("listing pull requests from {head} into {base}");
        let path = match self.provider {
            Provider::Gitea => gitea::list_path(&self.repo, base),
            Provider::GitHub => github::list_path(&self.repo, head, base),
            Provider::GitLab => gitlab::list_path(&self.repo, head, base),
        };
        let json = self.call(Method::GET, &what, &path, None).await?;
        let items = json
            .as_array()
            .ok_or_else(|| malformed(&what, "not a list".into()))?;
        let mut found = Vec::new();
        for item in items {
            let pr = self.parse(item).map_err(|m| malformed(&what, m))?;
            if pr.head_branch == head && pr.base_branch == base {
                found.push(pr);
            }
        }
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(found)
    }

    /// Merges pull request `number` with `method` (the provider's default
    /// when `None`), if the host would merge it now.
    pub async fn merge(&self, number: u64, method: Option<&str>) -> Result<MergeOutcome> {
        let pr = self.get(number).await?;
        if pr.merged {
            return Ok(MergeOutcome::Merged(pr));
        }
        if !pr.open {
            return Err(HostError::Unmergeable(format!(
                "pull request {number} was closed without being merged"
            )));
        }
        match pr.mergeable {
            Mergeable::Yes => {}
            Mergeable::Conflict => {
                return Err(HostError::Unmergeable(format!(
                    "pull request {number} conflicts with {}; resolve the conflicts, or close it and promote again",
                    pr.base_branch
                )));
            }
            Mergeable::NotYet => {
                return Ok(MergeOutcome::NotReady(format!(
                    "pull request {number} is not mergeable yet"
                )));
            }
        }
        let what = format!("merging pull request {number}");
        let (verb, path, body) = match self.provider {
            Provider::Gitea => (
                Method::POST,
                gitea::merge_path(&self.repo, number),
                gitea::merge_body(method)?,
            ),
            Provider::GitHub => (
                Method::PUT,
                github::merge_path(&self.repo, number),
                github::merge_body(method)?,
            ),
            Provider::GitLab => (
                Method::PUT,
                gitlab::merge_path(&self.repo, number),
                gitlab::merge_body(method)?,
            ),
        };
        match self.call(verb, &what, &path, Some(body)).await {
            Ok(_) => {}
            // 405 (GitHub, Gitea, GitLab): not mergeable in its state; 409:
            // the head moved; 406/422 (GitLab): not mergeable now. Read the
            // pull request again to tell a conflict from "not yet".
            Err(HostError::Rejected {
                status: 400..=409 | 422,
                message,
                ..
            }) => {
                let again = self.get(number).await?;
                return match again.mergeable {
                    Mergeable::Conflict => Err(HostError::Unmergeable(format!(
                        "pull request {number} conflicts with {}; resolve the conflicts, or close it and promote again",
                        again.base_branch
                    ))),
                    _ if again.merged => Ok(MergeOutcome::Merged(again)),
                    _ => Ok(MergeOutcome::NotReady(format!(
                        "the host would not merge pull request {number} yet ({message})"
                    ))),
                };
            }
            Err(e) => return Err(e),
        }
        let merged = self.get(number).await?;
        if merged.merged {
            Ok(MergeOutcome::Merged(merged))
        } else {
            Err(HostError::Unmergeable(format!(
                "the host accepted the merge of pull request {number} but reports it unmerged"
            )))
        }
    }

    fn parse(&self, json: &Value) -> std::result::Result<PullRequest, String> {
        match self.provider {
            Provider::Gitea => gitea::pull_request(json),
            Provider::GitHub => github::pull_request(json),
            Provider::GitLab => gitlab::merge_request(json),
        }
    }

    /// One API call; the answer's JSON (`null` when it has no body).
    async fn call(
        &self,
        method: Method,
        what: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.api);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = match self.provider {
                Provider::Gitea => request.header("Authorization", format!("token {token}")),
                Provider::GitHub => request
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Accept", "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28"),
                Provider::GitLab => request.header("PRIVATE-TOKEN", token.as_str()),
            };
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| HostError::Unavailable {
            what: what.to_string(),
            // Without the URL: it could carry what a user typed into it.
            message: e.without_url().to_string(),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| HostError::Unavailable {
            what: what.to_string(),
            message: e.without_url().to_string(),
        })?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| malformed(what, e.to_string()));
        }
        let detail = error_detail(&text);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => HostError::Denied {
                what: what.to_string(),
                status: status.as_u16(),
                hint: if self.token.is_some() {
                    ": the token of the matching Secret lacks the permission"
                } else {
                    super::NO_CREDENTIALS_HINT
                },
            },
            StatusCode::NOT_FOUND => HostError::NotFound {
                what: what.to_string(),
                hint: if self.token.is_some() {
                    ""
                } else {
                    " (a private repository looks missing without credentials: no Secret labelled barge.dev/cred-type=git matches its URL)"
                },
            },
            s if s.is_client_error() && s != StatusCode::TOO_MANY_REQUESTS => HostError::Rejected {
                what: what.to_string(),
                status: s.as_u16(),
                message: format!("HTTP {}{detail}", s.as_u16()),
            },
            s => HostError::Unavailable {
                what: what.to_string(),
                message: format!("HTTP {}{detail}", s.as_u16()),
            },
        })
    }
}

fn malformed(what: &str, message: String) -> HostError {
    HostError::Malformed {
        what: what.to_string(),
        message,
    }
}

/// The host's own words for an error, kept short.
fn error_detail(body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        })
        .unwrap_or_default();
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// The string at `pointer`, or an error naming it.
fn text(json: &Value, pointer: &str) -> std::result::Result<String, String> {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "no {} in the answer",
                pointer.trim_start_matches('/').replace('/', ".")
            )
        })
}

fn number(json: &Value, pointer: &str) -> std::result::Result<u64, String> {
    json.pointer(pointer)
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            format!(
                "no {} in the answer",
                pointer.trim_start_matches('/').replace('/', ".")
            )
        })
}

fn flag(json: &Value, pointer: &str) -> bool {
    json.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn optional_text(json: &Value, pointer: &str) -> Option<String> {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Path segments escaped for a URL path (branch names may hold `/`).
fn escape(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
