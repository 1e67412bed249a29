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

/// Kargo's `urls.NormalizeImage`: case and surrounding whitespace do not
/// matter, a tag or digest is dropped, and Docker Hub's names are their
/// short form (`docker.io/library/nginx` and `nginx` are `nginx`); other
/// registries keep `host[:port]/path`.
pub fn normalize_image(url: &str) -> String {
    let cleaned: String = url
        .chars()
        .filter(|c| !c.is_control() && *c != '\u{feff}' && *c != '\u{200b}')
        .collect::<String>()
        .trim()
        .to_lowercase();
    match split_image_reference(&cleaned) {
        Some((registry, path)) if is_docker_hub(&registry) => path
            .strip_prefix("library/")
            .map_or(path.clone(), str::to_string),
        Some((registry, path)) => format!("{registry}/{path}"),
        None => cleaned,
    }
}

/// Kargo's `urls.NormalizeChart`: an `oci://` repository compares as an
/// image repository without its scheme; an HTTP(S) one by its lowercase
/// text.
pub fn normalize_chart(url: &str) -> String {
    let cleaned: String = url
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_lowercase();
    let bare = cleaned.strip_prefix("oci://").unwrap_or(&cleaned);
    if bare.contains("://") {
        return bare.to_string();
    }
    normalize_image(bare)
}

/// Docker Hub's registry names.
pub fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// An image reference's registry and repository path, as
/// go-containerregistry reads a name: the first component is a registry
/// when it has a `.` or a `:` or is `localhost`, else the registry is
/// Docker Hub (`index.docker.io`), whose one-component names are under
/// `library/`. A trailing `:tag` or `@digest` is dropped. `None` when the
/// text is not a reference (empty components, a scheme).
pub fn split_image_reference(reference: &str) -> Option<(String, String)> {
    if reference.is_empty() || reference.contains("://") {
        return None;
    }
    let without_digest = reference.split_once('@').map_or(reference, |(r, _)| r);
    let (first, rest) = match without_digest.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, without_digest),
    };
    // A tag is a `:` in the last component.
    let path = match rest.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((name, _)) => format!("{head}/{name}"),
            None => rest.to_string(),
        },
        None => rest
            .split_once(':')
            .map_or(rest, |(name, _)| name)
            .to_string(),
    };
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return None;
    }
    if let Some(registry) = first {
        let (host, port) = match registry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        if host.is_empty()
            || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
    }
    match first {
        Some(registry) if !is_docker_hub(registry) => Some((registry.to_string(), path)),
        _ => {
            let path = if path.contains('/') {
                path
            } else {
                format!("library/{path}")
            };
            Some(("index.docker.io".to_string(), path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        normalize_chart, normalize_git, normalize_image, repository_key, split_image_reference,
    };

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

    #[test]
    fn image_urls_compare_as_kargo_normalizes_them() {
        assert_eq!(normalize_image("nginx"), "nginx");
        assert_eq!(normalize_image("docker.io/library/nginx"), "nginx");
        assert_eq!(
            normalize_image("index.docker.io/bitnami/redis"),
            "bitnami/redis"
        );
        assert_eq!(
            normalize_image(" GHCR.io/Akuity/Kargo:v1 "),
            "ghcr.io/akuity/kargo"
        );
        assert_eq!(
            normalize_image("localhost:5000/team/web"),
            "localhost:5000/team/web"
        );
        assert_eq!(
            normalize_image("127.0.0.1:5000/web@sha256:abc"),
            "127.0.0.1:5000/web"
        );
    }

    #[test]
    fn image_references_split_into_registry_and_path() {
        let split = |r: &str| split_image_reference(r);
        assert_eq!(
            split("nginx"),
            Some(("index.docker.io".into(), "library/nginx".into()))
        );
        assert_eq!(
            split("bitnami/redis"),
            Some(("index.docker.io".into(), "bitnami/redis".into()))
        );
        assert_eq!(
            split("localhost/app"),
            Some(("localhost".into(), "app".into()))
        );
        assert_eq!(
            split("reg.example.com:8443/a/b/c"),
            Some(("reg.example.com:8443".into(), "a/b/c".into()))
        );
        assert_eq!(split("https://reg.example.com/a"), None);
        assert_eq!(split("reg.example.com//a"), None);
        assert_eq!(split("reg.example.com:x/a"), None);
    }

    #[test]
    fn chart_urls_compare_without_the_oci_scheme() {
        assert_eq!(
            normalize_chart("oci://GHCR.io/stefanprodan/charts/podinfo"),
            "ghcr.io/stefanprodan/charts/podinfo"
        );
        assert_eq!(
            normalize_chart("ghcr.io/stefanprodan/charts/podinfo"),
            "ghcr.io/stefanprodan/charts/podinfo"
        );
        assert_eq!(
            normalize_chart("https://Charts.Example.com/stable"),
            "https://charts.example.com/stable"
        );
    }
}
