//! GitHost: provider inference, API locations, and each provider's JSON
//! read into a pull request, without a server.

#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn host(url: &str, provider: Option<&str>) -> GitHost {
    match GitHost::new(url, provider, None, false) {
        Ok(host) => host,
        Err(e) => panic!("{url}: {e}"),
    }
}

#[test]
fn the_provider_is_inferred_from_the_host_name_or_named() {
    assert_eq!(
        host("https://github.com/acme/app.git", None).provider(),
        Provider::GitHub
    );
    assert_eq!(
        host("https://gitlab.example.com/acme/app", None).provider(),
        Provider::GitLab
    );
    assert_eq!(
        host("https://gitea.example.com/acme/app", None).provider(),
        Provider::Gitea
    );
    assert_eq!(
        host("http://127.0.0.1:3000/acme/app.git", Some("gitea")).provider(),
        Provider::Gitea
    );
}

#[test]
fn an_unknown_host_without_provider_is_refused_naming_the_field() {
    let err = GitHost::new("https://git.example.com/acme/app", None, None, false).unwrap_err();
    assert!(err.to_string().starts_with("config.provider:"), "{err}");
    let err = GitHost::new(
        "https://git.example.com/acme/app",
        Some("bitbucket"),
        None,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("gitea, github, gitlab"), "{err}");
}

#[test]
fn api_bases_follow_each_host() {
    let gh = host("https://github.com/acme/app.git", None);
    assert_eq!(
        (gh.api.as_str(), gh.repo.as_str()),
        ("https://api.github.com", "acme/app")
    );
    let ghes = host("https://github.corp.example/acme/app", None);
    assert_eq!(ghes.api, "https://github.corp.example/api/v3");
    let gl = host("git@gitlab.com:group/sub/app.git", None);
    assert_eq!(
        (gl.api.as_str(), gl.repo.as_str()),
        ("https://gitlab.com/api/v4", "group%2Fsub%2Fapp")
    );
    let gt = host("http://127.0.0.1:3000/prefix/acme/app.git", Some("gitea"));
    assert_eq!(
        (gt.api.as_str(), gt.repo.as_str()),
        ("http://127.0.0.1:3000/prefix/api/v1", "acme/app")
    );
    let ssh = host("ssh://git@gitea.example.com:2222/acme/app.git", None);
    assert_eq!(ssh.api, "https://gitea.example.com/api/v1");
}

#[test]
fn a_repository_url_without_owner_or_with_a_foreign_scheme_is_refused() {
    for url in ["https://github.com/app", "file:///srv/app.git", "not a url"] {
        let err = GitHost::new(url, Some("github"), None, false).unwrap_err();
        assert!(
            err.to_string().starts_with("config.repoURL"),
            "{url}: {err}"
        );
    }
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let creds = Credentials {
        username: "u".into(),
        password: "s3cr3t-token".into(),
    };
    let host = GitHost::new("https://github.com/a/b", None, Some(&creds), false).unwrap();
    assert!(!format!("{host:?}").contains("s3cr3t"));
}

#[test]
fn a_gitea_pull_request_reads_state_merge_and_branches() {
    let pr = gitea::pull_request(&json!({
        "number": 7, "html_url": "http://g/acme/app/pulls/7", "state": "closed",
        "merged": true, "merge_commit_sha": "abc", "mergeable": true, "draft": false,
        "head": {"ref": "barge/promotion/p1", "sha": "h1"}, "base": {"ref": "main"},
        "created_at": "2026-11-29T10:00:00Z"
    }))
    .unwrap();
    assert_eq!(pr.number, 7);
    assert!(pr.merged && !pr.open);
    assert_eq!(pr.merge_commit.as_deref(), Some("abc"));
    assert_eq!(
        (pr.head_branch.as_str(), pr.base_branch.as_str()),
        ("barge/promotion/p1", "main")
    );
}

#[test]
fn a_github_pull_request_tells_conflicts_from_pending_checks() {
    let base = json!({
        "number": 3, "html_url": "https://github.com/a/b/pull/3", "state": "open", "merged": false,
        "merge_commit_sha": "test-merge", "head": {"ref": "f", "sha": "h"}, "base": {"ref": "main"}
    });
    let with = |state: &str| {
        let mut v = base.clone();
        v["mergeable_state"] = json!(state);
        github::pull_request(&v).unwrap()
    };
    assert_eq!(with("clean").mergeable, Mergeable::Yes);
    assert_eq!(with("dirty").mergeable, Mergeable::Conflict);
    assert_eq!(with("unknown").mergeable, Mergeable::NotYet);
    assert_eq!(with("blocked").mergeable, Mergeable::NotYet);
    // An unmerged pull request's merge_commit_sha is a test merge.
    assert_eq!(with("clean").merge_commit, None);
}

#[test]
fn a_gitlab_merge_request_maps_its_states() {
    let mr = |state: &str, status: &str| {
        gitlab::merge_request(&json!({
            "iid": 4, "web_url": "https://gitlab.com/g/p/-/merge_requests/4", "state": state,
            "detailed_merge_status": status, "source_branch": "f", "target_branch": "main",
            "sha": "head", "merge_commit_sha": null
        }))
        .unwrap()
    };
    assert!(mr("opened", "mergeable").open);
    assert_eq!(mr("opened", "conflict").mergeable, Mergeable::Conflict);
    assert_eq!(
        mr("opened", "ci_still_running").mergeable,
        Mergeable::NotYet
    );
    let merged = mr("merged", "not_open");
    assert!(merged.merged && !merged.open);
    // Fast-forward: no merge commit; the head is what the target holds.
    assert_eq!(merged.merge_commit.as_deref(), Some("head"));
}

#[test]
fn merge_methods_are_checked_per_provider() {
    assert!(gitea::merge_body(Some("squash")).is_ok());
    assert!(gitea::merge_body(Some("fast-forward-only")).is_ok());
    assert!(
        github::merge_body(Some("fast-forward-only"))
            .unwrap_err()
            .to_string()
            .contains("config.mergeMethod")
    );
    assert_eq!(
        gitlab::merge_body(Some("squash")).unwrap(),
        json!({"squash": true})
    );
    assert!(gitlab::merge_body(Some("rebase")).is_err());
}

#[test]
fn gitea_labels_are_applied_by_id_and_a_missing_one_is_named() {
    let listed = json!([{"id": 1, "name": "infra"}, {"id": 2, "name": "needs-review"}]);
    assert_eq!(
        gitea::label_ids(&listed, &["needs-review".into(), "infra".into()]).unwrap(),
        vec![2, 1]
    );
    let err = gitea::label_ids(&listed, &["nope".into()]).unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[test]
fn branch_names_are_escaped_in_query_strings() {
    assert_eq!(
        github::list_path("a/b", "barge/promotion/p 1", "main"),
        "/repos/a/b/pulls?state=all&head=a:barge%2Fpromotion%2Fp%201&base=main&per_page=100"
    );
}
