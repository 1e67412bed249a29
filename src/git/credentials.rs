//! Which Secret's credentials reach a repository. Secrets in the
//! Promotion's namespace labelled `barge.dev/cred-type: git` (or Kargo's
//! `kargo.akuity.io/cred-type: git`) carry `repoURL` and a username and
//! password (or token). `repoURL` matches the repository's URL exactly,
//! as Kargo compares URLs, or as a regular expression when
//! `repoURLIsRegex: "true"`; `repoURLPattern` is always a regular
//! expression. Exact matches win over patterns; among equals, the Secret
//! whose name sorts first.
//!
//! Image and chart subscriptions take their credentials the same way from
//! Secrets labelled `image` or `helm` ([`select_for`]), with URLs compared
//! as Kargo normalizes them for that kind: an image repository without
//! scheme, tag or Docker Hub's `library/` (`nginx` is
//! `docker.io/library/nginx`), a chart repository with `oci://` stripped
//! (an HTTP(S) one by its lowercase text). A pattern is tried against the
//! URL as written and as normalized.

use std::collections::BTreeMap;
use std::fmt;

use crate::urls::{normalize_chart, normalize_git, normalize_image};

pub const LABEL: &str = "barge.dev/cred-type";
pub const KARGO_LABEL: &str = "kargo.akuity.io/cred-type";

/// A username and a password or token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One credentials Secret: its name and decoded data.
pub struct CredentialSecret<'a> {
    pub name: &'a str,
    pub data: &'a BTreeMap<String, String>,
}

/// Why no credentials could be taken from a Secret that looked meant for
/// the repository.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("Secret {secret}: {field} is not a valid regular expression: {error}")]
    BadPattern {
        secret: String,
        field: &'static str,
        error: String,
    },
}

/// Which kind of repository credentials are for: the value of the
/// `cred-type` label, and how URLs are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    Git,
    Image,
    Helm,
}

impl CredentialKind {
    /// The `cred-type` label's value.
    pub fn label_value(self) -> &'static str {
        match self {
            CredentialKind::Git => "git",
            CredentialKind::Image => "image",
            CredentialKind::Helm => "helm",
        }
    }

    /// A URL in the form this kind compares.
    pub fn normalize(self, url: &str) -> String {
        match self {
            CredentialKind::Git => normalize_git(url),
            CredentialKind::Image => normalize_image(url),
            CredentialKind::Helm => normalize_chart(url),
        }
    }
}

enum Match {
    Exact,
    Pattern,
}

/// The credentials for the git repository `repo_url` among `secrets`, if
/// any matches.
pub fn select(
    repo_url: &str,
    secrets: &[CredentialSecret<'_>],
) -> Result<Option<Credentials>, CredentialsError> {
    select_for(CredentialKind::Git, repo_url, secrets)
}

/// The credentials for `repo_url`, a repository of `kind`, among
/// `secrets` (those labelled with `kind`'s `cred-type`), if any matches.
pub fn select_for(
    kind: CredentialKind,
    repo_url: &str,
    secrets: &[CredentialSecret<'_>],
) -> Result<Option<Credentials>, CredentialsError> {
    let wanted = kind.normalize(repo_url);
    let mut best: Option<(bool, &str, Credentials)> = None;
    for secret in secrets {
        let Some(found) = matches(kind, &wanted, repo_url, secret)? else {
            continue;
        };
        let exact = matches!(found, Match::Exact);
        let credentials = Credentials {
            username: secret.data.get("username").cloned().unwrap_or_default(),
            password: secret.data.get("password").cloned().unwrap_or_default(),
        };
        let better = match &best {
            None => true,
            Some((best_exact, best_name, _)) => {
                (exact && !best_exact) || (exact == *best_exact && secret.name < *best_name)
            }
        };
        if better {
            best = Some((exact, secret.name, credentials));
        }
    }
    Ok(best.map(|(_, _, c)| c))
}

fn matches(
    kind: CredentialKind,
    wanted: &str,
    raw: &str,
    secret: &CredentialSecret<'_>,
) -> Result<Option<Match>, CredentialsError> {
    let regex = |field: &'static str, pattern: &str| {
        regex::Regex::new(pattern).map_err(|e| CredentialsError::BadPattern {
            secret: secret.name.to_string(),
            field,
            error: e.to_string(),
        })
    };
    if let Some(pattern) = secret.data.get("repoURLPattern") {
        let re = regex("repoURLPattern", pattern)?;
        if re.is_match(raw) || re.is_match(wanted) {
            return Ok(Some(Match::Pattern));
        }
    }
    let Some(url) = secret.data.get("repoURL") else {
        return Ok(None);
    };
    if secret
        .data
        .get("repoURLIsRegex")
        .is_some_and(|v| v == "true")
    {
        let re = regex("repoURL", url)?;
        return Ok((re.is_match(raw) || re.is_match(wanted)).then_some(Match::Pattern));
    }
    Ok((kind.normalize(url) == wanted).then_some(Match::Exact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn user_of(url: &str, secrets: &[(&str, BTreeMap<String, String>)]) -> Option<String> {
        let secrets: Vec<_> = secrets
            .iter()
            .map(|(name, data)| CredentialSecret { name, data })
            .collect();
        select(url, &secrets)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|c| c.username)
    }

    #[test]
    fn an_exact_url_match_ignores_case_suffix_and_user_information() {
        let secrets = [(
            "repo",
            data(&[
                ("repoURL", "https://Git.example.com/org/app"),
                ("username", "bot"),
            ]),
        )];
        assert_eq!(
            user_of("https://ci@git.example.com/org/app.git", &secrets),
            Some("bot".into())
        );
        assert_eq!(user_of("https://git.example.com/org/other", &secrets), None);
    }

    #[test]
    fn an_exact_match_wins_over_a_pattern_and_names_break_ties() {
        let secrets = [
            (
                "a-pattern",
                data(&[
                    ("repoURL", "^https://git.example.com/"),
                    ("repoURLIsRegex", "true"),
                    ("username", "pattern"),
                ]),
            ),
            (
                "z-exact",
                data(&[
                    ("repoURL", "https://git.example.com/org/app"),
                    ("username", "exact"),
                ]),
            ),
            (
                "b-exact",
                data(&[
                    ("repoURL", "https://git.example.com/org/app.git"),
                    ("username", "first"),
                ]),
            ),
        ];
        assert_eq!(
            user_of("https://git.example.com/org/app.git", &secrets),
            Some("first".into())
        );
        assert_eq!(
            user_of("https://git.example.com/org/else.git", &secrets),
            Some("pattern".into())
        );
    }

    #[test]
    fn repo_url_pattern_is_a_regular_expression() {
        let secrets = [(
            "org",
            data(&[
                ("repoURLPattern", "^https://git\\.example\\.com/org/.*$"),
                ("username", "org"),
            ]),
        )];
        assert_eq!(
            user_of("https://git.example.com/org/app.git", &secrets),
            Some("org".into())
        );
    }

    #[test]
    fn a_bad_pattern_names_the_secret_and_field() {
        let bad = data(&[("repoURLPattern", "(")]);
        let secrets = [CredentialSecret {
            name: "broken",
            data: &bad,
        }];
        let err = select("https://x/y", &secrets).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("Secret broken: repoURLPattern")),
            "{err:?}"
        );
    }

    #[test]
    fn credentials_print_without_the_password() {
        let credentials = Credentials {
            username: "bot".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{credentials:?}").contains("s3cret"));
    }

    fn user_for(
        kind: CredentialKind,
        url: &str,
        secrets: &[(&str, BTreeMap<String, String>)],
    ) -> Option<String> {
        let secrets: Vec<_> = secrets
            .iter()
            .map(|(name, data)| CredentialSecret { name, data })
            .collect();
        select_for(kind, url, &secrets)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|c| c.username)
    }

    #[test]
    fn image_credentials_match_the_repository_without_scheme_tag_or_docker_hub_prefix() {
        let secrets = [
            (
                "hub",
                data(&[("repoURL", "docker.io/library/nginx"), ("username", "hub")]),
            ),
            (
                "ghcr",
                data(&[("repoURL", "GHCR.io/akuity/kargo"), ("username", "ghcr")]),
            ),
        ];
        assert_eq!(
            user_for(CredentialKind::Image, "nginx", &secrets),
            Some("hub".into())
        );
        assert_eq!(
            user_for(CredentialKind::Image, "ghcr.io/akuity/kargo", &secrets),
            Some("ghcr".into())
        );
        assert_eq!(
            user_for(CredentialKind::Image, "ghcr.io/akuity/other", &secrets),
            None
        );
    }

    #[test]
    fn image_credentials_by_pattern_match_the_url_as_written_or_normalized() {
        let secrets = [(
            "registry",
            data(&[
                ("repoURL", "^localhost:5000/"),
                ("repoURLIsRegex", "true"),
                ("username", "local"),
            ]),
        )];
        assert_eq!(
            user_for(CredentialKind::Image, "LOCALHOST:5000/team/web", &secrets),
            Some("local".into())
        );
        assert_eq!(
            user_for(CredentialKind::Image, "localhost:5001/team/web", &secrets),
            None
        );
    }

    #[test]
    fn helm_credentials_match_oci_repositories_with_or_without_the_scheme() {
        let secrets = [
            (
                "oci",
                data(&[
                    ("repoURL", "ghcr.io/stefanprodan/charts/podinfo"),
                    ("username", "oci"),
                ]),
            ),
            (
                "http",
                data(&[
                    ("repoURL", "https://charts.example.com/stable"),
                    ("username", "http"),
                ]),
            ),
        ];
        assert_eq!(
            user_for(
                CredentialKind::Helm,
                "oci://ghcr.io/stefanprodan/charts/podinfo",
                &secrets
            ),
            Some("oci".into())
        );
        assert_eq!(
            user_for(
                CredentialKind::Helm,
                "https://Charts.example.com/stable",
                &secrets
            ),
            Some("http".into())
        );
        assert_eq!(
            user_for(
                CredentialKind::Helm,
                "https://charts.example.com/other",
                &secrets
            ),
            None
        );
    }

    #[test]
    fn git_selection_is_select_for_git() {
        let secrets = [(
            "repo",
            data(&[
                ("repoURL", "https://git.example.com/org/app"),
                ("username", "bot"),
            ]),
        )];
        assert_eq!(
            user_for(
                CredentialKind::Git,
                "https://git.example.com/org/app.git",
                &secrets
            ),
            user_of("https://git.example.com/org/app.git", &secrets)
        );
        assert_eq!(CredentialKind::Image.label_value(), "image");
    }
}
