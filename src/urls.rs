//! Repository URLs as Kargo compares them.

/// Kargo's `urls.NormalizeGit`: case, whitespace, credentials in an HTTP(S)
/// URL, a trailing `/` and `.git` do not matter, and the SCP-style
/// `git@host:path` equals `ssh://git@host/path`.
pub fn normalize_git(url: &str) -> String {
    let mut u: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{feff}' && *c != '\u{200b}')
        .collect::<String>()
        .to_lowercase();
    if let Some((scheme, rest)) = u
        .strip_prefix("https://")
        .map(|r| ("https://", r))
        .or_else(|| u.strip_prefix("http://").map(|r| ("http://", r)))
    {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        u = format!("{scheme}{host}/{path}");
    } else if !u.contains("://")
        && let Some((user_host, path)) = u.split_once(':')
    {
        u = format!("ssh://{user_host}/{path}");
    }
    let u = u.trim_end_matches('/');
    let u = u.strip_suffix(".git").unwrap_or(u);
    u.trim_end_matches('/').to_string()
}

/// A repository's identity whatever URL names it: host, port and path of
/// [`normalize_git`]'s form, without scheme or user. A webhook names a
/// repository by its clone or web URL, a step by the URL it was given;
/// both come down to this key.
pub fn repository_key(url: &str) -> String {
    let normalized = normalize_git(url);
    let rest = normalized
        .split_once("://")
        .map_or(normalized.as_str(), |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{host}/{path}")
}

#[cfg(test)]
mod tests {
    use super::{normalize_git, repository_key};

    #[test]
    fn a_webhook_and_a_step_name_one_repository_by_any_of_its_urls() {
        let key = repository_key("https://git.example.com/Team/App.git");
        assert_eq!(key, "git.example.com/team/app");
        assert_eq!(repository_key("http://u:tok@git.example.com/team/app"), key);
        assert_eq!(repository_key("git@git.example.com:team/app.git"), key);
        assert_eq!(repository_key("ssh://git@git.example.com/team/app"), key);
        assert_ne!(repository_key("https://git.example.com:3000/team/app"), key);
    }

    #[test]
    fn credentials_case_and_suffixes_do_not_matter() {
        assert_eq!(
            normalize_git(" https://user:pw@GitHub.com/Example/Repo.git/ "),
            "https://github.com/example/repo"
        );
        assert_eq!(
            normalize_git("http://github.com/example/repo"),
            "http://github.com/example/repo"
        );
    }

    #[test]
    fn scp_style_urls_equal_their_ssh_form() {
        assert_eq!(
            normalize_git("git@github.com:example/repo.git"),
            normalize_git("ssh://git@github.com/example/repo")
        );
    }

    #[test]
    fn other_schemes_keep_their_form() {
        assert_eq!(
            normalize_git("file:///srv/Repos/app.git"),
            "file:///srv/repos/app"
        );
    }
}
