//! What a Git host's webhook delivery says, once it is shown to come from
//! the host: pure functions over headers and body.

use std::collections::BTreeMap;

use ring::hmac;
use serde_json::Value;

/// Which payloads and signatures a receiver understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sender {
    GitHub,
    GitLab,
    /// Gitea and Forgejo.
    Gitea,
}

impl Sender {
    /// The receiver type as it appears in a receiver's path and in
    /// `ProjectConfig.spec.webhookReceivers[]`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        match name {
            "github" => Some(Self::GitHub),
            "gitlab" => Some(Self::GitLab),
            "gitea" => Some(Self::Gitea),
            _ => None,
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
    /// Commits were pushed to the repository.
    Push { repo_urls: Vec<String> },
    /// The host checks the receiver when a webhook is added.
    Ping,
    /// An event this receiver has no use for.
    Other(String),
}

/// Whether the delivery comes from whoever holds `secret`: an HMAC-SHA256
/// of the body (GitHub, Gitea), or the token itself (GitLab, which does not
/// sign).
pub fn authenticate(
    sender: Sender,
    headers: &Headers,
    body: &[u8],
    secret: &[u8],
) -> Result<(), Rejected> {
    match sender {
        Sender::GitLab => {
            let token = headers
                .get("x-gitlab-token")
                .ok_or(Rejected::Unsigned("X-Gitlab-Token"))?;
            if equal_in_constant_time(token.as_bytes(), secret) {
                Ok(())
            } else {
                Err(Rejected::BadSignature("X-Gitlab-Token"))
            }
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
            let tag = decode_hex(signature.trim()).ok_or(Rejected::BadSignature(header))?;
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            hmac::verify(&key, body, &tag).map_err(|_| Rejected::BadSignature(header))
        }
    }
}

/// What an authenticated delivery reports.
pub fn parse(sender: Sender, headers: &Headers, body: &[u8]) -> Result<Event, Rejected> {
    let kind = match sender {
        Sender::GitHub => headers.get("x-github-event"),
        Sender::Gitea => headers
            .get("x-gitea-event")
            .or_else(|| headers.get("x-forgejo-event"))
            .or_else(|| headers.get("x-github-event")),
        Sender::GitLab => headers.get("x-gitlab-event"),
    }
    .cloned()
    .unwrap_or_default();
    let malformed = |why: String| Rejected::Malformed {
        sender: sender.name(),
        event: kind.clone(),
        why,
    };
    let wanted = matches!(
        kind.as_str(),
        "pull_request" | "push" | "Merge Request Hook" | "Push Hook" | "ping"
    );
    if !wanted {
        return Ok(Event::Other(kind));
    }
    let json: Value = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    match (sender, kind.as_str()) {
        (_, "ping") => Ok(Event::Ping),
        (Sender::GitHub | Sender::Gitea, "pull_request") => Ok(Event::PullRequest {
            repo_urls: urls(&json, "/repository", &["clone_url", "html_url", "ssh_url"]),
            number: json
                .pointer("/pull_request/number")
                .or_else(|| json.pointer("/number"))
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed("no pull_request.number".into()))?,
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
                .ok_or_else(|| malformed("no object_attributes.iid".into()))?,
            action: string(&json, "/object_attributes/action"),
        }),
        (Sender::GitHub | Sender::Gitea, "push") => Ok(Event::Push {
            repo_urls: urls(&json, "/repository", &["clone_url", "html_url", "ssh_url"]),
        }),
        (Sender::GitLab, "Push Hook") => Ok(Event::Push {
            repo_urls: urls(
                &json,
                "/project",
                &["git_http_url", "web_url", "git_ssh_url"],
            ),
        }),
        _ => Ok(Event::Other(kind)),
    }
}

fn urls(json: &Value, object: &str, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter_map(|f| {
            json.pointer(&format!("{object}/{f}"))
                .and_then(Value::as_str)
        })
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

fn string(json: &Value, pointer: &str) -> String {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
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

/// Compares without stopping at the first difference, so the time taken
/// tells nothing about how much of a guessed token was right.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
}
