//! What a webhook delivery says, once it is shown to come from its sender
//! (a Git host or a registry): pure functions over headers and body.

use std::collections::BTreeMap;

use ring::hmac;
use serde_json::Value;

use crate::urls::normalize_git;
use crate::warehouse::freight_name::{normalize_chart, normalize_image};

/// Which payloads and signatures a receiver understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sender {
    GitHub,
    GitLab,
    /// Gitea and Forgejo.
    Gitea,
    /// Bitbucket Cloud and Bitbucket Data Center.
    Bitbucket,
    DockerHub,
    Harbor,
    Quay,
    Artifactory,
    /// Azure Container Registry and Azure DevOps.
    Azure,
    /// The CNCF distribution registry's notifications (Barge's own).
    Distribution,
    /// Kargo's generic receiver: actions over any request.
    Generic,
}

impl Sender {
    pub const ALL: [Sender; 11] = [
        Self::GitHub,
        Self::GitLab,
        Self::Gitea,
        Self::Bitbucket,
        Self::DockerHub,
        Self::Harbor,
        Self::Quay,
        Self::Artifactory,
        Self::Azure,
        Self::Distribution,
        Self::Generic,
    ];

    /// The receiver type as it appears in a receiver's path and in
    /// `ProjectConfig.spec.webhookReceivers[]`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Bitbucket => "bitbucket",
            Self::DockerHub => "dockerhub",
            Self::Harbor => "harbor",
            Self::Quay => "quay",
            Self::Artifactory => "artifactory",
            Self::Azure => "azure",
            Self::Distribution => "distribution",
            Self::Generic => "generic",
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the sender reports pull-request events (which wake the
    /// Promotions waiting on them).
    pub fn reports_pull_requests(self) -> bool {
        matches!(
            self,
            Self::GitHub | Self::GitLab | Self::Gitea | Self::Bitbucket | Self::Azure
        )
    }

    /// The keys of the receiver's Secret that hold its secret, as Kargo
    /// names them; the first present is used. (GitLab's `secret` is what
    /// Barge read before it followed Kargo's `secret-token`.)
    pub fn secret_keys(self) -> &'static [&'static str] {
        match self {
            Self::GitLab => &["secret-token", "secret"],
            Self::Artifactory => &["secret-token"],
            Self::Harbor | Self::Distribution => &["auth-header"],
            _ => &["secret"],
        }
    }
}

/// Request headers, names lower-cased.
pub type Headers = BTreeMap<String, String>;

/// Why a delivery was turned away.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("the delivery carries no {0} header")]
    Unsigned(&'static str),
    #[error("the delivery's {0} does not match the receiver's secret")]
    BadSignature(&'static str),
    #[error("the payload is not what a {sender} {event} event holds: {why}")]
    Malformed {
        sender: &'static str,
        event: String,
        why: String,
    },
}

/// What kind of repository a push names: how its URLs compare with a
/// Warehouse's subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    Git,
    Image,
    Chart,
    /// A registry that does not say (or a media type that does not tell)
    /// whether an image or a chart was pushed: compared as both.
    ImageOrChart,
}

/// Something was pushed to a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub artifact: Artifact,
    /// The repository's URLs as the payload gives them (clone, web, SSH;
    /// `registry/repository` for an image), deduplicated.
    pub repo_urls: Vec<String>,
    /// Git: the files the pushed commits added, changed or removed; empty
    /// when the payload does not list them all (then every subscriber is
    /// refreshed, as Kargo does).
    pub changed_files: Vec<String>,
    /// Git: the refs updated (`refs/heads/main`, `refs/tags/v1`); images:
    /// the tags pushed. Only Git refs narrow who is refreshed.
    pub refs: Vec<String>,
}

/// What a delivery reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Something happened to pull (merge) request `number`: opened, closed,
    /// merged, pushed to, edited.
    PullRequest {
        /// The repository's URLs as the payload gives them (clone, web, SSH).
        repo_urls: Vec<String>,
        number: u64,
        action: String,
    },
    /// Commits, an image or a chart were pushed.
    Push(Push),
    /// The sender checks the receiver when a webhook is added.
    Ping,
    /// An event this receiver has no use for.
    Other(String),
}

/// Whether the delivery comes from whoever holds `secret`: an HMAC-SHA256
/// of the body (GitHub, Gitea, Bitbucket, Artifactory), the token itself
/// (GitLab's `X-Gitlab-Token`; the `Authorization` header of Harbor and
/// the distribution registry), or only the path, which the secret makes
/// hard to guess (Docker Hub, Quay, Azure, generic: they cannot sign).
pub fn authenticate(
    sender: Sender,
    headers: &Headers,
    body: &[u8],
    secret: &[u8],
) -> Result<(), Rejected> {
    match sender {
        Sender::GitLab => token(headers, "x-gitlab-token", "X-Gitlab-Token", secret),
        Sender::Harbor | Sender::Distribution => {
            token(headers, "authorization", "Authorization", secret)
        }
        Sender::GitHub | Sender::Gitea => {
            let (header, signature) = match (
                headers.get("x-hub-signature-256"),
                headers.get("x-gitea-signature"),
            ) {
                (Some(s), _) => (
                    "X-Hub-Signature-256",
                    s.strip_prefix("sha256=").unwrap_or(s),
                ),
                (None, Some(s)) if sender == Sender::Gitea => ("X-Gitea-Signature", s.as_str()),
                _ => return Err(Rejected::Unsigned("X-Hub-Signature-256")),
            };
            verify_hmac(hmac::HMAC_SHA256, header, signature, body, secret)
        }
        Sender::Bitbucket => {
            const HEADER: &str = "X-Hub-Signature";
            let signature = headers
                .get("x-hub-signature")
                .ok_or(Rejected::Unsigned(HEADER))?;
            // As GitHub's library validates it: `sha256=` or `sha1=`.
            if let Some(hex) = signature.strip_prefix("sha256=") {
                verify_hmac(hmac::HMAC_SHA256, HEADER, hex, body, secret)
            } else if let Some(hex) = signature.strip_prefix("sha1=") {
                verify_hmac(
                    hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                    HEADER,
                    hex,
                    body,
                    secret,
                )
            } else {
                Err(Rejected::BadSignature(HEADER))
            }
        }
        Sender::Artifactory => {
            const HEADER: &str = "X-Jfrog-Event-Auth";
            let signature = headers
                .get("x-jfrog-event-auth")
                .ok_or(Rejected::Unsigned(HEADER))?;
            verify_hmac(hmac::HMAC_SHA256, HEADER, signature, body, secret)
        }
        Sender::DockerHub | Sender::Quay | Sender::Azure | Sender::Generic => Ok(()),
    }
}

fn token(
    headers: &Headers,
    name: &str,
    header: &'static str,
    secret: &[u8],
) -> Result<(), Rejected> {
    let token = headers.get(name).ok_or(Rejected::Unsigned(header))?;
    if equal_in_constant_time(token.as_bytes(), secret) {
        Ok(())
    } else {
        Err(Rejected::BadSignature(header))
    }
}

fn verify_hmac(
    algorithm: hmac::Algorithm,
    header: &'static str,
    signature: &str,
    body: &[u8],
    secret: &[u8],
) -> Result<(), Rejected> {
    let tag = decode_hex(signature.trim()).ok_or(Rejected::BadSignature(header))?;
    let key = hmac::Key::new(algorithm, secret);
    hmac::verify(&key, body, &tag).map_err(|_| Rejected::BadSignature(header))
}

/// What an authenticated delivery reports (the generic receiver's are
/// read by its actions, see [`super::generic`]).
pub fn parse(sender: Sender, headers: &Headers, body: &[u8]) -> Result<Event, Rejected> {
    match sender {
        Sender::GitHub | Sender::Gitea | Sender::GitLab => parse_git_host(sender, headers, body),
        Sender::Bitbucket => parse_bitbucket(headers, body),
        Sender::DockerHub => {
            let json = json_body(sender, "push", body)?;
            let repo = string(&json, "/repository/repo_name");
            if repo.is_empty() {
                return Err(malformed(sender, "push", "no repository.repo_name"));
            }
            Ok(registry_push(
                &repo,
                &string(&json, "/push_data/media_type"),
                vec![string(&json, "/push_data/tag")],
            ))
        }
        Sender::Quay => {
            let json = json_body(sender, "push", body)?;
            let repo = string(&json, "/docker_url");
            if repo.is_empty() {
                return Err(malformed(sender, "push", "no docker_url"));
            }
            Ok(registry_push(&repo, "", strings(&json, "/updated_tags")))
        }
        Sender::Harbor => {
            let json = json_body(sender, "event", body)?;
            let kind = string(&json, "/type");
            if kind != "PUSH_ARTIFACT" {
                return Ok(Event::Other(kind));
            }
            let resources = json
                .pointer("/event_data/resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let Some(url) = resources
                .first()
                .and_then(|r| r.get("resource_url"))
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
            else {
                return Err(malformed(
                    sender,
                    &kind,
                    "no event_data.resources[0].resource_url",
                ));
            };
            let tags = resources
                .iter()
                .filter_map(|r| r.get("tag").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            Ok(registry_push(url, "", tags))
        }
        Sender::Artifactory => parse_artifactory(body),
        Sender::Azure => parse_azure(headers, body),
        Sender::Distribution => parse_distribution(body),
        Sender::Generic => Ok(Event::Other("generic".into())),
    }
}

fn malformed(sender: Sender, event: &str, why: impl Into<String>) -> Rejected {
    Rejected::Malformed {
        sender: sender.name(),
        event: event.to_string(),
        why: why.into(),
    }
}

fn json_body(sender: Sender, event: &str, body: &[u8]) -> Result<Value, Rejected> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| malformed(sender, event, e.to_string()))?;
    if json.is_object() {
        Ok(json)
    } else {
        Err(malformed(sender, event, "not a JSON object"))
    }
}

/// An image or chart push, compared as the media type says (Kargo's
/// `getNormalizedImageRepoURLs`): a Helm config blob makes it a chart; an
/// image manifest, index or config an image; anything else either.
fn registry_push(repo_url: &str, media_type: &str, tags: Vec<String>) -> Event {
    const IMAGE_TYPES: [&str; 5] = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    let artifact = if media_type.starts_with("application/vnd.cncf.helm") {
        Artifact::Chart
    } else if IMAGE_TYPES.contains(&media_type) {
        Artifact::Image
    } else {
        Artifact::ImageOrChart
    };
    Event::Push(Push {
        artifact,
        repo_urls: vec![repo_url.to_string()],
        changed_files: Vec::new(),
        refs: tags.into_iter().filter(|t| !t.is_empty()).collect(),
    })
}

fn parse_git_host(sender: Sender, headers: &Headers, body: &[u8]) -> Result<Event, Rejected> {
    let kind = match sender {
        Sender::GitHub => headers.get("x-github-event"),
        Sender::Gitea => headers
            .get("x-gitea-event")
            .or_else(|| headers.get("x-forgejo-event"))
            .or_else(|| headers.get("x-github-event")),
        _ => headers.get("x-gitlab-event"),
    }
    .cloned()
    .unwrap_or_default();
    let wanted = matches!(
        kind.as_str(),
        "pull_request"
            | "push"
            | "Merge Request Hook"
            | "Push Hook"
            | "Tag Push Hook"
            | "ping"
            | "package"
            | "registry_package"
    );
    if !wanted {
        return Ok(Event::Other(kind));
    }
    let json = json_body(sender, &kind, body)?;
    let malformed = |why: &str| malformed(sender, &kind, why);
    match (sender, kind.as_str()) {
        (_, "ping") => Ok(Event::Ping),
        (Sender::GitHub | Sender::Gitea, "pull_request") => Ok(Event::PullRequest {
            repo_urls: urls(&json, "/repository", &["clone_url", "html_url", "ssh_url"]),
            number: json
                .pointer("/pull_request/number")
                .or_else(|| json.pointer("/number"))
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed("no pull_request.number"))?,
            action: string(&json, "/action"),
        }),
        (Sender::GitLab, "Merge Request Hook") => Ok(Event::PullRequest {
            repo_urls: urls(
                &json,
                "/project",
                &["git_http_url", "web_url", "git_ssh_url"],
            ),
            number: json
                .pointer("/object_attributes/iid")
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed("no object_attributes.iid"))?,
            action: string(&json, "/object_attributes/action"),
        }),
        (Sender::GitHub | Sender::Gitea, "push") => {
            let repo_urls = urls(&json, "/repository", &["clone_url", "html_url", "ssh_url"]);
            if repo_urls.is_empty() {
                return Err(malformed("no repository.clone_url"));
            }
            // GitHub lists at most 2,048 commits, Gitea says how many it
            // left out: then the files are not all known.
            let commits = json
                .get("commits")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let total = json
                .get("total_commits")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let complete = commits < 2048 && total <= commits as u64;
            let mut lists = vec!["/commits"];
            if sender == Sender::GitHub {
                lists.push("/head_commit");
            }
            Ok(git_push(
                repo_urls,
                complete.then(|| changed_files(&json, &lists)),
                &json,
                "/ref",
            ))
        }
        (Sender::GitLab, "Push Hook" | "Tag Push Hook") => {
            let repo_urls = urls(
                &json,
                "/project",
                &["git_http_url", "web_url", "git_ssh_url"],
            );
            let repo_urls = if repo_urls.is_empty() {
                urls(
                    &json,
                    "/repository",
                    &["git_http_url", "homepage", "git_ssh_url"],
                )
            } else {
                repo_urls
            };
            if repo_urls.is_empty() {
                return Err(malformed("no project.git_http_url"));
            }
            let commits = json
                .get("commits")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let total = json
                .get("total_commits_count")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let complete = kind == "Push Hook" && total <= commits as u64;
            Ok(git_push(
                repo_urls,
                complete.then(|| changed_files(&json, &["/commits"])),
                &json,
                "/ref",
            ))
        }
        (Sender::GitHub, "package" | "registry_package") => {
            let action = string(&json, "/action");
            if action != "published" && action != "updated" {
                return Ok(Event::Other(format!("{kind} {action}")));
            }
            let package = json
                .get(kind.as_str())
                .filter(|p| p.get("package_version").is_some_and(Value::is_object))
                .ok_or_else(|| malformed(&format!("no {kind}.package_version")))?;
            let package_type = package
                .get("package_type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !matches!(package_type, "CONTAINER" | "container" | "docker") {
                return Ok(Event::Other(format!("{kind} of type {package_type}")));
            }
            let version = &package["package_version"];
            let url = string(version, "/package_url");
            // GitHub sometimes ends the URL with a `:` and no tag.
            let url = url.trim_end_matches(':');
            if url.is_empty() {
                return Err(malformed(&format!("no {kind}.package_version.package_url")));
            }
            Ok(registry_push(
                url,
                &string(version, "/container_metadata/manifest/config/media_type"),
                vec![string(version, "/container_metadata/tag/name")],
            ))
        }
        _ => Ok(Event::Other(kind)),
    }
}

fn git_push(
    repo_urls: Vec<String>,
    changed_files: Option<Vec<String>>,
    json: &Value,
    ref_pointer: &str,
) -> Event {
    let reference = string(json, ref_pointer);
    Event::Push(Push {
        artifact: Artifact::Git,
        repo_urls: dedup(repo_urls),
        changed_files: changed_files.unwrap_or_default(),
        refs: if reference.is_empty() {
            Vec::new()
        } else {
            vec![reference]
        },
    })
}

/// The added, modified and removed files of the commits at `pointers` (an
/// array of commits, or one), sorted and deduplicated.
fn changed_files(json: &Value, pointers: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    for pointer in pointers {
        let commits = match json.pointer(pointer) {
            Some(Value::Array(commits)) => commits.iter().collect::<Vec<_>>(),
            Some(commit @ Value::Object(_)) => vec![commit],
            _ => continue,
        };
        for commit in commits {
            for list in ["added", "modified", "removed"] {
                files.extend(strings(commit, &format!("/{list}")));
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

fn parse_bitbucket(headers: &Headers, body: &[u8]) -> Result<Event, Rejected> {
    let sender = Sender::Bitbucket;
    let kind = headers.get("x-event-key").cloned().unwrap_or_default();
    if kind == "diagnostics:ping" {
        return Ok(Event::Ping);
    }
    if !matches!(
        kind.as_str(),
        "repo:push"
            | "repo:refs_changed"
            | "pullrequest:fulfilled"
            | "pullrequest:rejected"
            | "pr:merged"
            | "pr:declined"
    ) {
        return Ok(Event::Other(kind));
    }
    let json = json_body(sender, &kind, body)?;
    let malformed = |why: &str| malformed(sender, &kind, why);
    match kind.as_str() {
        // Bitbucket Cloud.
        "repo:push" => {
            let url = string(&json, "/repository/links/html/href");
            if url.is_empty() {
                return Err(malformed("no repository.links.html.href"));
            }
            let changes = json
                .pointer("/push/changes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let refs = changes
                .iter()
                .filter_map(|c| {
                    let name = c.pointer("/new/name")?.as_str()?;
                    let prefix = if c.pointer("/new/type").and_then(Value::as_str) == Some("tag") {
                        "refs/tags/"
                    } else {
                        "refs/heads/"
                    };
                    Some(format!("{prefix}{name}"))
                })
                .collect();
            Ok(Event::Push(Push {
                artifact: Artifact::Git,
                repo_urls: vec![url],
                changed_files: Vec::new(),
                refs,
            }))
        }
        // Bitbucket Data Center.
        "repo:refs_changed" => {
            let repo_urls = hrefs(&json, "/repository/links/clone");
            if repo_urls.is_empty() {
                return Err(malformed("no repository.links.clone"));
            }
            let refs = json
                .get("changes")
                .and_then(Value::as_array)
                .map(|changes| {
                    changes
                        .iter()
                        .filter_map(|c| c.pointer("/ref/id").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Ok(Event::Push(Push {
                artifact: Artifact::Git,
                repo_urls,
                changed_files: Vec::new(),
                refs,
            }))
        }
        "pullrequest:fulfilled" | "pullrequest:rejected" => Ok(Event::PullRequest {
            repo_urls: urls(&json, "/repository/links/html", &["href"]),
            number: json
                .pointer("/pullrequest/id")
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed("no pullrequest.id"))?,
            action: kind.clone(),
        }),
        _ => Ok(Event::PullRequest {
            repo_urls: hrefs(&json, "/pullRequest/toRef/repository/links/clone"),
            number: json
                .pointer("/pullRequest/id")
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed("no pullRequest.id"))?,
            action: kind.clone(),
        }),
    }
}

fn hrefs(json: &Value, pointer: &str) -> Vec<String> {
    json.pointer(pointer)
        .and_then(Value::as_array)
        .map(|links| {
            links
                .iter()
                .filter_map(|l| l.get("href").and_then(Value::as_str))
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_artifactory(body: &[u8]) -> Result<Event, Rejected> {
    let sender = Sender::Artifactory;
    let json = json_body(sender, "event", body)?;
    let event_type = string(&json, "/event_type");
    let domain = string(&json, "/domain");
    if event_type != "pushed" || domain != "docker" {
        return Ok(Event::Other(format!("{domain} {event_type}")));
    }
    let image_type = string(&json, "/data/image_type");
    let artifact = match image_type.as_str() {
        "docker" => Artifact::Image,
        "oci" => Artifact::Chart,
        other => return Ok(Event::Other(format!("docker pushed of type {other}"))),
    };
    let origin = string(&json, "/jpd_origin");
    let host = origin
        .split_once("://")
        .map_or(origin.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    if host.is_empty() {
        return Err(malformed(sender, "pushed", "no host in jpd_origin"));
    }
    let path = string(&json, "/data/path");
    let sections: Vec<&str> = path.split('/').collect();
    if sections.len() < 2 {
        return Err(malformed(
            sender,
            "pushed",
            format!("data.path {path:?} has no image and tag"),
        ));
    }
    let repo_key = string(&json, "/data/repo_key");
    // Which repository: the receiver's virtual one replaces it (see
    // [`artifactory_repo_url`]); `repo_key` otherwise.
    let mut parts = vec![host, repo_key];
    parts.extend(sections[..sections.len() - 2].iter().map(|s| s.to_string()));
    Ok(Event::Push(Push {
        artifact,
        repo_urls: vec![parts.join("/")],
        changed_files: Vec::new(),
        refs: vec![string(&json, "/data/tag")],
    }))
}

/// An Artifactory push's repository URL with the local repository (its
/// second component) replaced by the receiver's `virtualRepoName`.
pub fn artifactory_repo_url(url: &str, virtual_repo: &str) -> String {
    if virtual_repo.is_empty() {
        return url.to_string();
    }
    let mut parts: Vec<&str> = url.split('/').collect();
    if let Some(repo) = parts.get_mut(1) {
        *repo = virtual_repo;
    }
    parts.join("/")
}

fn parse_azure(headers: &Headers, body: &[u8]) -> Result<Event, Rejected> {
    let sender = Sender::Azure;
    let agent = headers.get("user-agent").cloned().unwrap_or_default();
    if agent.starts_with("AzureContainerRegistry") {
        let json = json_body(sender, "registry event", body)?;
        let action = string(&json, "/action");
        return match action.as_str() {
            "ping" => Ok(Event::Ping),
            "push" => {
                let host = string(&json, "/request/host");
                let repository = string(&json, "/target/repository");
                if host.is_empty() || repository.is_empty() {
                    return Err(malformed(
                        sender,
                        "push",
                        "no request.host or target.repository",
                    ));
                }
                Ok(registry_push(
                    &format!("{host}/{repository}"),
                    &string(&json, "/target/mediaType"),
                    vec![string(&json, "/target/tag")],
                ))
            }
            other => Ok(Event::Other(other.to_string())),
        };
    }
    if agent.starts_with("VSServices") {
        let json = json_body(sender, "Azure DevOps event", body)?;
        let kind = string(&json, "/eventType");
        let remote = string(&json, "/resource/repository/remoteUrl");
        return match kind.as_str() {
            "git.push" => {
                if remote.is_empty() {
                    return Err(malformed(sender, &kind, "no resource.repository.remoteUrl"));
                }
                let refs = json
                    .pointer("/resource/refUpdates")
                    .and_then(Value::as_array)
                    .map(|updates| {
                        updates
                            .iter()
                            .filter_map(|u| u.get("name").and_then(Value::as_str))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Event::Push(Push {
                    artifact: Artifact::Git,
                    repo_urls: vec![remote],
                    changed_files: Vec::new(),
                    refs,
                }))
            }
            "git.pullrequest.merged" | "git.pullrequest.updated" => {
                let status = string(&json, "/resource/status");
                if kind == "git.pullrequest.updated" && status != "abandoned" {
                    return Ok(Event::Other(kind));
                }
                Ok(Event::PullRequest {
                    repo_urls: vec![remote],
                    number: json
                        .pointer("/resource/pullRequestId")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| malformed(sender, &kind, "no resource.pullRequestId"))?,
                    action: kind,
                })
            }
            _ => Ok(Event::Other(kind)),
        };
    }
    Err(malformed(
        sender,
        "event",
        "the User-Agent is neither Azure Container Registry's nor Azure DevOps'",
    ))
}

/// The distribution registry's envelope: `{"events": [...]}`, several
/// events batched. Pushes of manifests (by tag, or of a manifest or index
/// media type) count; pulls, mounts, deletes and layer uploads do not.
fn parse_distribution(body: &[u8]) -> Result<Event, Rejected> {
    let sender = Sender::Distribution;
    let json = json_body(sender, "envelope", body)?;
    let events = json
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(sender, "envelope", "no events"))?;
    let mut repo_urls = Vec::new();
    let mut tags = Vec::new();
    let mut media_types = Vec::new();
    for event in events {
        if string(event, "/action") != "push" {
            continue;
        }
        let tag = string(event, "/target/tag");
        let media_type = string(event, "/target/mediaType");
        let manifest = media_type.contains("manifest") || media_type.contains("image.index");
        if tag.is_empty() && !manifest {
            continue;
        }
        let host = string(event, "/request/host");
        let repository = string(event, "/target/repository");
        if host.is_empty() || repository.is_empty() {
            return Err(malformed(
                sender,
                "push",
                "an event has no request.host or target.repository",
            ));
        }
        repo_urls.push(format!("{host}/{repository}"));
        if !tag.is_empty() {
            tags.push(tag);
        }
        media_types.push(media_type);
    }
    if repo_urls.is_empty() {
        return Ok(Event::Other("no push".into()));
    }
    Ok(Event::Push(Push {
        // A manifest's media type does not tell an image from a chart.
        artifact: Artifact::ImageOrChart,
        repo_urls: dedup(repo_urls),
        changed_files: Vec::new(),
        refs: dedup(tags),
    }))
}

fn dedup(mut list: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    list.retain(|s| seen.insert(s.clone()));
    list
}

fn urls(json: &Value, object: &str, fields: &[&str]) -> Vec<String> {
    dedup(
        fields
            .iter()
            .filter_map(|f| {
                json.pointer(&format!("{object}/{f}"))
                    .and_then(Value::as_str)
            })
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn string(json: &Value, pointer: &str) -> String {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(json: &Value, pointer: &str) -> Vec<String> {
    json.pointer(pointer)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The keys a push's repository is compared by: a Git repository's
/// [`normalize_git`] forms; an image's [`normalize_image`], a chart's
/// [`normalize_chart`].
pub fn normalized_urls(push: &Push) -> Vec<String> {
    let mut keys = Vec::new();
    for url in &push.repo_urls {
        match push.artifact {
            Artifact::Git => keys.push(normalize_git(url)),
            Artifact::Image => keys.push(normalize_image(url)),
            Artifact::Chart => keys.push(normalize_chart(url)),
            Artifact::ImageOrChart => {
                keys.push(normalize_image(url));
                keys.push(normalize_chart(url));
            }
        }
    }
    dedup(keys)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares digests of both, so the time taken tells nothing about how
/// much of a guessed token was right, nor about the secret's length.
pub(crate) fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    let a = ring::digest::digest(&ring::digest::SHA256, a);
    let b = ring::digest::digest(&ring::digest::SHA256, b);
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"webhook-secret";

    fn signed(body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
        hmac::sign(&key, body)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    const GITEA_CLOSED: &str = r#"{"action":"closed","number":3,
        "pull_request":{"number":3,"merged":true,"html_url":"http://127.0.0.1:3000/barge/gitops/pulls/3"},
        "repository":{"clone_url":"http://127.0.0.1:3000/barge/gitops.git","html_url":"http://127.0.0.1:3000/barge/gitops","ssh_url":""}}"#;

    #[test]
    fn a_gitea_delivery_signed_with_the_secret_is_accepted_by_either_header() {
        let body = GITEA_CLOSED.as_bytes();
        let sig = signed(body);
        let by_gitea = headers(&[("X-Gitea-Signature", &sig)]);
        assert_eq!(authenticate(Sender::Gitea, &by_gitea, body, SECRET), Ok(()));
        let by_hub = headers(&[("X-Hub-Signature-256", &format!("sha256={sig}"))]);
        assert_eq!(authenticate(Sender::Gitea, &by_hub, body, SECRET), Ok(()));
    }

    #[test]
    fn a_delivery_signed_with_another_secret_or_altered_is_rejected() {
        let body = GITEA_CLOSED.as_bytes();
        let sig = signed(body);
        let h = headers(&[("X-Hub-Signature-256", &format!("sha256={sig}"))]);
        assert_eq!(
            authenticate(Sender::GitHub, &h, body, b"another"),
            Err(Rejected::BadSignature("X-Hub-Signature-256"))
        );
        let altered = GITEA_CLOSED.replace("\"number\":3", "\"number\":4");
        assert!(authenticate(Sender::GitHub, &h, altered.as_bytes(), SECRET).is_err());
        assert_eq!(
            authenticate(Sender::GitHub, &Headers::new(), body, SECRET),
            Err(Rejected::Unsigned("X-Hub-Signature-256"))
        );
        let garbage = headers(&[("X-Hub-Signature-256", "sha256=zz")]);
        assert!(authenticate(Sender::GitHub, &garbage, body, SECRET).is_err());
    }

    #[test]
    fn github_does_not_accept_giteas_unprefixed_header() {
        let body = GITEA_CLOSED.as_bytes();
        let h = headers(&[("X-Gitea-Signature", &signed(body))]);
        assert!(authenticate(Sender::GitHub, &h, body, SECRET).is_err());
    }

    #[test]
    fn a_gitlab_delivery_carries_the_token_itself() {
        let ok = headers(&[("X-Gitlab-Token", "webhook-secret")]);
        assert_eq!(authenticate(Sender::GitLab, &ok, b"{}", SECRET), Ok(()));
        let bad = headers(&[("X-Gitlab-Token", "webhook-secreT")]);
        assert!(authenticate(Sender::GitLab, &bad, b"{}", SECRET).is_err());
        assert!(authenticate(Sender::GitLab, &Headers::new(), b"{}", SECRET).is_err());
    }

    #[test]
    fn a_pull_request_event_names_its_repository_by_every_url_and_its_number() {
        let h = headers(&[("X-Gitea-Event", "pull_request")]);
        let event = parse(Sender::Gitea, &h, GITEA_CLOSED.as_bytes()).unwrap();
        assert_eq!(
            event,
            Event::PullRequest {
                repo_urls: vec![
                    "http://127.0.0.1:3000/barge/gitops.git".into(),
                    "http://127.0.0.1:3000/barge/gitops".into()
                ],
                number: 3,
                action: "closed".into(),
            }
        );
    }

    /// A delivery recorded from the real Gitea the tests run (testenv's
    /// webhook test keeps it current).
    #[test]
    fn a_delivery_recorded_from_gitea_authenticates_and_parses() {
        let recorded: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/webhooks/gitea-pull-request-closed.json"
        ))
        .unwrap();
        let headers: Headers = serde_json::from_value(recorded["headers"].clone()).unwrap();
        let body = recorded["body"].as_str().unwrap().as_bytes();
        let secret = recorded["secret"].as_str().unwrap().as_bytes();
        assert_eq!(authenticate(Sender::Gitea, &headers, body, secret), Ok(()));
        assert!(authenticate(Sender::Gitea, &headers, body, b"wrong").is_err());
        let Event::PullRequest {
            repo_urls,
            number,
            action,
        } = parse(Sender::Gitea, &headers, body).unwrap()
        else {
            panic!("not a pull request event");
        };
        assert_eq!((number, action.as_str()), (1, "closed"));
        assert!(
            repo_urls
                .iter()
                .any(|u| u.ends_with("/barge-admin/webhooks.git")),
            "{repo_urls:?}"
        );
    }

    #[test]
    fn a_gitlab_merge_request_hook_is_a_pull_request_event() {
        let body = br#"{"object_kind":"merge_request","object_attributes":{"iid":12,"action":"merge"},
            "project":{"git_http_url":"https://gitlab.com/g/sub/app.git","web_url":"https://gitlab.com/g/sub/app"}}"#;
        let h = headers(&[("X-Gitlab-Event", "Merge Request Hook")]);
        let Event::PullRequest {
            number,
            action,
            repo_urls,
        } = parse(Sender::GitLab, &h, body).unwrap()
        else {
            panic!("not a pull request event");
        };
        assert_eq!((number, action.as_str(), repo_urls.len()), (12, "merge", 2));
    }

    #[test]
    fn other_events_are_acknowledged_and_a_broken_payload_is_named() {
        let h = headers(&[("X-GitHub-Event", "issues")]);
        assert_eq!(
            parse(Sender::GitHub, &h, b"not json").unwrap(),
            Event::Other("issues".into())
        );
        let h = headers(&[("X-GitHub-Event", "pull_request")]);
        let err = parse(Sender::GitHub, &h, b"{\"action\":\"closed\"}").unwrap_err();
        assert!(err.to_string().contains("pull_request.number"), "{err}");
        let err = parse(Sender::GitHub, &h, b"{").unwrap_err();
        assert!(err.to_string().contains("github pull_request"), "{err}");
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/webhooks/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn push(event: Event) -> Push {
        match event {
            Event::Push(push) => push,
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn a_github_push_names_the_repository_by_every_url_its_ref_and_its_changed_files() {
        let h = headers(&[("X-GitHub-Event", "push")]);
        let p = push(parse(Sender::GitHub, &h, &fixture("github-push.json")).unwrap());
        assert_eq!(p.artifact, Artifact::Git);
        assert_eq!(
            p.repo_urls,
            vec![
                "https://github.com/acme/app.git",
                "https://github.com/acme/app",
                "git@github.com:acme/app.git"
            ]
        );
        assert_eq!(p.refs, vec!["refs/heads/main"]);
        assert_eq!(p.changed_files, vec!["apps/api/values.yaml"]);
    }

    #[test]
    fn a_push_whose_commits_were_left_out_lists_no_files() {
        let h = headers(&[("X-Gitlab-Event", "Push Hook")]);
        let body = String::from_utf8(fixture("gitlab-push.json"))
            .unwrap()
            .replace("\"total_commits_count\":1", "\"total_commits_count\":40");
        let p = push(parse(Sender::GitLab, &h, body.as_bytes()).unwrap());
        assert!(p.changed_files.is_empty());
        assert_eq!(p.repo_urls.len(), 3);
        let h = headers(&[("X-Gitlab-Event", "Tag Push Hook")]);
        let tag = br#"{"ref":"refs/tags/v1.2.0","project":{"git_http_url":"https://gitlab.example.com/acme/app.git"}}"#;
        assert_eq!(
            push(parse(Sender::GitLab, &h, tag).unwrap()).refs,
            vec!["refs/tags/v1.2.0"]
        );
    }

    #[test]
    fn a_github_package_is_an_image_or_a_chart_as_its_media_type_says() {
        let h = headers(&[("X-GitHub-Event", "package")]);
        let body = fixture("github-package.json");
        let p = push(parse(Sender::GitHub, &h, &body).unwrap());
        assert_eq!(
            (p.artifact, p.repo_urls.clone(), p.refs.clone()),
            (
                Artifact::Image,
                vec!["ghcr.io/acme/api:1.4.0".to_string()],
                vec!["1.4.0".to_string()]
            )
        );
        let chart = String::from_utf8(body).unwrap().replace(
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.cncf.helm.config.v1+json",
        );
        let p = push(parse(Sender::GitHub, &h, chart.as_bytes()).unwrap());
        assert_eq!(p.artifact, Artifact::Chart);
        let deleted = br#"{"action":"deleted","package":{}}"#;
        assert!(matches!(
            parse(Sender::GitHub, &h, deleted).unwrap(),
            Event::Other(_)
        ));
        let broken = br#"{"action":"published","package":{"package_type":"CONTAINER"}}"#;
        assert!(parse(Sender::GitHub, &h, broken).is_err());
    }

    #[test]
    fn a_distribution_envelope_counts_manifest_pushes_only_across_its_events() {
        let p = push(
            parse(
                Sender::Distribution,
                &Headers::new(),
                &fixture("distribution-events.json"),
            )
            .unwrap(),
        );
        assert_eq!(p.repo_urls, vec!["registry.example.com:5000/acme/api"]);
        assert_eq!(p.refs, vec!["1.4.0"]);
        assert_eq!(p.artifact, Artifact::ImageOrChart);
        let two = br#"{"events":[
            {"action":"push","target":{"repository":"a","tag":"1"},"request":{"host":"r.example.com"}},
            {"action":"push","target":{"repository":"b","mediaType":"application/vnd.oci.image.index.v1+json"},"request":{"host":"r.example.com"}}]}"#;
        let p = push(parse(Sender::Distribution, &Headers::new(), two).unwrap());
        assert_eq!(p.repo_urls, vec!["r.example.com/a", "r.example.com/b"]);
        let no_host = br#"{"events":[{"action":"push","target":{"repository":"a","tag":"1"}}]}"#;
        assert!(parse(Sender::Distribution, &Headers::new(), no_host).is_err());
        assert!(parse(Sender::Distribution, &Headers::new(), b"{}").is_err());
    }

    #[test]
    fn a_token_header_is_compared_whole_and_a_missing_one_named() {
        let ok = headers(&[("Authorization", "Bearer abc")]);
        assert_eq!(
            authenticate(Sender::Harbor, &ok, b"{}", b"Bearer abc"),
            Ok(())
        );
        for wrong in ["Bearer ab", "Bearer abcd", "bearer abc", ""] {
            let h = headers(&[("Authorization", wrong)]);
            assert_eq!(
                authenticate(Sender::Distribution, &h, b"{}", b"Bearer abc"),
                Err(Rejected::BadSignature("Authorization")),
                "{wrong:?}"
            );
        }
        assert_eq!(
            authenticate(Sender::Harbor, &Headers::new(), b"{}", b"Bearer abc"),
            Err(Rejected::Unsigned("Authorization"))
        );
    }

    #[test]
    fn bitbucket_signs_with_sha256_or_sha1_and_data_center_names_clone_urls() {
        let body = br#"{"changes":[{"ref":{"id":"refs/heads/main"}}],
            "repository":{"links":{"clone":[{"href":"ssh://git@bitbucket.example.com:7999/acme/app.git","name":"ssh"},
                {"href":"https://bitbucket.example.com/scm/acme/app.git","name":"http"}]}}}"#;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, SECRET);
        let sha1: String = hmac::sign(&key, body)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let h = headers(&[
            ("X-Event-Key", "repo:refs_changed"),
            ("X-Hub-Signature", &format!("sha1={sha1}")),
        ]);
        assert_eq!(authenticate(Sender::Bitbucket, &h, body, SECRET), Ok(()));
        let unprefixed = headers(&[("X-Hub-Signature", &sha1)]);
        assert!(authenticate(Sender::Bitbucket, &unprefixed, body, SECRET).is_err());
        let p = push(parse(Sender::Bitbucket, &h, body).unwrap());
        assert_eq!(p.repo_urls.len(), 2);
        assert_eq!(p.refs, vec!["refs/heads/main"]);
        let merged = br#"{"pullrequest":{"id":7},"repository":{"links":{"html":{"href":"https://bitbucket.org/acme/app"}}}}"#;
        let h = headers(&[("X-Event-Key", "pullrequest:fulfilled")]);
        assert!(matches!(
            parse(Sender::Bitbucket, &h, merged).unwrap(),
            Event::PullRequest { number: 7, .. }
        ));
    }

    #[test]
    fn the_secret_keys_are_kargos() {
        assert_eq!(Sender::Harbor.secret_keys(), ["auth-header"]);
        assert_eq!(Sender::Distribution.secret_keys(), ["auth-header"]);
        assert_eq!(Sender::Artifactory.secret_keys(), ["secret-token"]);
        assert_eq!(Sender::GitLab.secret_keys()[0], "secret-token");
        assert_eq!(Sender::DockerHub.secret_keys(), ["secret"]);
        for sender in Sender::ALL {
            assert_eq!(Sender::named(sender.name()), Some(sender));
        }
    }
}
