//! git-open-pr, git-wait-for-pr and git-merge-pr against a real Gitea (the
//! test binary's shared one), each test on its own repository: a `main`
//! branch and a `promote` branch one commit ahead of it.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use barge_testenv::gitea::{Gitea, Repo};
use k8s_openapi::api::core::v1::Secret;
use reqwest::Method;
use serde_json::{Value, json};

use crate::controller::fixtures::PlanRun;

static REPOS: AtomicU32 = AtomicU32::new(0);

async fn gitea() -> &'static Gitea {
    Gitea::shared().await.unwrap_or_else(|e| panic!("{e}"))
}

/// A repository with `app.yaml` on `main` and a `promote` branch changing
/// it in a commit titled "Promote v2"; private when asked.
async fn repository(private: bool) -> Repo {
    let g = gitea().await;
    let name = format!(
        "pr-{}-{}",
        std::process::id(),
        REPOS.fetch_add(1, Ordering::SeqCst)
    );
    let repo = if private {
        g.create_private_repo(&name).await
    } else {
        g.create_repo(&name).await
    }
    .unwrap_or_else(|e| panic!("{e}"));
    g.put_file(&repo, "main", "app.yaml", "image: app:v1\n", "v1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    g.put_file_on_new_branch(
        &repo,
        "main",
        "promote",
        "app.yaml",
        "image: app:v2\n",
        "Promote v2\n\nimage: app:v2",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    repo
}

/// The Kargo-labelled git credentials Secret for `repo`: the admin's token.
fn credentials(repo: &Repo, token: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "gitea-creds", "namespace": "demo",
                     "labels": {"kargo.akuity.io/cred-type": "git"}},
        "data": {
            "repoURL": b64(repo.clone_url()),
            "username": b64("barge-admin"),
            "password": b64(token),
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A run with the admin's credentials for `repo`.
async fn with_credentials(repo: &Repo) -> PlanRun {
    PlanRun::default().with(&credentials(repo, gitea().await.token()))
}

fn open_pr(repo: &Repo, source: &str, target: &str) -> Value {
    json!({"uses": "git-open-pr", "as": "open-pr", "config": {
        "repoURL": repo.clone_url(), "provider": "gitea",
        "sourceBranch": source, "targetBranch": target,
    }})
}

fn wait_for_pr(repo: &Repo, number: u64) -> Value {
    json!({"uses": "git-wait-for-pr", "as": "wait-pr", "config": {
        "repoURL": repo.clone_url(), "provider": "gitea", "prNumber": number,
    }})
}

fn merge_pr(repo: &Repo, number: u64, extra: Value) -> Value {
    let mut config = json!({"repoURL": repo.clone_url(), "provider": "gitea", "prNumber": number});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    json!({"uses": "git-merge-pr", "as": "merge-pr", "config": config})
}

fn hold() -> Value {
    json!({"uses": "hold", "as": "hold"})
}

async fn pulls(repo: &Repo) -> Vec<Value> {
    let path = format!("/repos/{}/pulls?state=all", repo.full_name());
    match gitea().await.api(Method::GET, &path, None).await {
        Ok(Value::Array(items)) => items,
        other => panic!("{other:?}"),
    }
}

async fn opened(repo: &Repo, title: &str) -> u64 {
    gitea()
        .await
        .open_pr(repo, "promote", "main", title)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn message(status: &Value) -> String {
    status["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn open_pr_titles_the_pull_request_from_the_head_commit_and_outputs_its_id_and_url() {
    let repo = repository(false).await;

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([open_pr(&repo, "promote", "main"), hold()]))
        .await;

    let number = status["state"]["open-pr"]["pr"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{status}"));
    let pr = gitea().await.get_pr(&repo, number).await.unwrap();
    assert_eq!(pr["title"], "Promote v2");
    assert_eq!(pr["body"], "image: app:v2");
    assert_eq!(
        (pr["head"]["ref"].as_str(), pr["base"]["ref"].as_str()),
        (Some("promote"), Some("main"))
    );
    assert_eq!(status["state"]["open-pr"]["pr"]["url"], pr["html_url"]);
    assert_eq!(
        status["state"]["open-pr"]["prNumber"], number,
        "as older pipelines read it"
    );
}

#[tokio::test]
async fn open_pr_run_again_after_its_output_was_lost_adopts_its_pull_request() {
    let repo = repository(false).await;
    let plan = json!([open_pr(&repo, "promote", "main"), hold()]);
    let (first, _) = with_credentials(&repo).await.run(plan.clone()).await;

    // As after a restart between opening and the status write: no output.
    let (second, _) = with_credentials(&repo).await.run(plan).await;

    assert_eq!(
        second["state"]["open-pr"]["pr"],
        first["state"]["open-pr"]["pr"]
    );
    assert_eq!(pulls(&repo).await.len(), 1, "one pull request, not two");
}

#[tokio::test]
async fn open_pr_is_skipped_when_the_branches_hold_the_same_files() {
    let repo = repository(false).await;
    gitea()
        .await
        .create_branch(&repo, "same", "main")
        .await
        .unwrap();

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([open_pr(&repo, "same", "main"), hold()]))
        .await;

    assert_eq!(
        status["stepExecutionMetadata"][0]["status"], "Skipped",
        "{status}"
    );
    assert!(pulls(&repo).await.is_empty());
}

#[tokio::test]
async fn open_pr_into_a_missing_target_branch_fails_naming_the_field() {
    let repo = repository(false).await;

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([open_pr(&repo, "promote", "stage/prod"), hold()]))
        .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = message(&status);
    assert!(message.contains("step \"open-pr\""), "{message}");
    assert!(
        message.contains("config.targetBranch: branch \"stage/prod\" does not exist"),
        "{message}"
    );
}

#[tokio::test]
async fn pull_request_steps_on_a_private_repository_without_credentials_name_the_secret_to_add() {
    let repo = repository(true).await;
    let number = opened(&repo, "Promote").await;

    for step in [
        open_pr(&repo, "promote", "main"),
        wait_for_pr(&repo, number),
        merge_pr(&repo, number, json!({})),
    ] {
        let (status, _) = PlanRun::default().run(json!([step.clone(), hold()])).await;
        assert_eq!(status["phase"], "Errored", "{step}: {status}");
        let message = message(&status);
        assert!(
            message.contains("barge.dev/cred-type=git"),
            "{step}: {message}"
        );
    }
    assert_eq!(
        gitea().await.get_pr(&repo, number).await.unwrap()["state"],
        "open"
    );
}

#[tokio::test]
async fn a_token_never_appears_in_status_when_the_host_refuses_it() {
    let repo = repository(true).await;
    let number = opened(&repo, "Promote").await;
    let token = "0123456789abcdef0123456789abcdef01234567";

    let (status, _) = PlanRun::default()
        .with(&credentials(&repo, token))
        .run(json!([wait_for_pr(&repo, number), hold()]))
        .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(message(&status).contains("401"), "{status}");
    assert!(!status.to_string().contains(token));
}

#[tokio::test]
async fn wait_for_pr_waits_on_the_pull_request_then_succeeds_with_the_merge_commit() {
    let repo = repository(false).await;
    let number = opened(&repo, "Promote").await;
    let plan = json!([wait_for_pr(&repo, number), hold()]);

    let (waiting, _) = with_credentials(&repo).await.run(plan.clone()).await;
    assert_eq!(waiting["phase"], "Running", "{waiting}");
    assert_eq!(
        waiting["awaiting"][0],
        json!({
            "alias": "wait-pr", "kind": "PullRequest", "namespace": "demo",
            "name": number.to_string(), "repoURL": repo.clone_url(),
            "message": waiting["awaiting"][0]["message"],
            "since": waiting["awaiting"][0]["since"],
            "deadline": waiting["awaiting"][0]["deadline"],
        })
    );
    gitea()
        .await
        .merge_pr(&repo, number, "merge")
        .await
        .unwrap();

    let (merged, _) = with_credentials(&repo).await.run(plan).await;

    let pr = gitea().await.get_pr(&repo, number).await.unwrap();
    let output = &merged["state"]["wait-pr"];
    assert_eq!(output["commit"], pr["merge_commit_sha"], "{merged}");
    assert_eq!(output["pr"]["merged"], true);
    assert_eq!(output["pr"]["open"], false);
    assert_eq!(output["pr"]["id"], number);
}

#[tokio::test]
async fn wait_for_pr_fails_when_the_pull_request_is_closed_without_merge() {
    let repo = repository(false).await;
    let number = opened(&repo, "Promote").await;
    gitea().await.close_pr(&repo, number).await.unwrap();

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([wait_for_pr(&repo, number), hold()]))
        .await;

    assert_eq!(status["phase"], "Failed", "{status}");
    assert!(
        message(&status).contains(&format!(
            "pull request {number} ({}/pulls/{number}) was closed without being merged",
            repo.html_url()
        )),
        "{status}"
    );
}

#[tokio::test]
async fn merge_pr_merges_with_the_method_asked_and_outputs_the_merge_commit() {
    let repo = repository(false).await;
    let number = opened(&repo, "Promote").await;

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([
            merge_pr(&repo, number, json!({"mergeMethod": "squash"})),
            hold()
        ]))
        .await;

    let pr = gitea().await.get_pr(&repo, number).await.unwrap();
    assert_eq!(pr["merged"], true);
    assert_eq!(
        status["state"]["merge-pr"]["commit"],
        pr["merge_commit_sha"]
    );
    let main = gitea().await.branch_sha(&repo, "main").await.unwrap();
    assert_eq!(pr["merge_commit_sha"], main.as_str(), "squashed onto main");
}

#[tokio::test]
async fn merge_pr_of_a_conflicting_branch_fails_naming_the_files_even_when_told_to_wait() {
    let repo = repository(false).await;
    let g = gitea().await;
    g.put_file(&repo, "main", "app.yaml", "image: app:v3\n", "v3 on main")
        .await
        .unwrap();
    let number = opened(&repo, "Promote").await;

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([
            merge_pr(&repo, number, json!({"wait": true})),
            hold()
        ]))
        .await;

    assert_eq!(status["phase"], "Failed", "{status}");
    assert!(
        message(&status).contains(&format!(
            "pull request {number} conflicts with its target branch in app.yaml"
        )),
        "{status}"
    );
    assert_eq!(g.get_pr(&repo, number).await.unwrap()["state"], "open");
}

#[tokio::test]
async fn merge_pr_of_a_pull_request_not_ready_waits_only_when_told_to() {
    let repo = repository(false).await;
    // Gitea will not merge a work-in-progress pull request.
    let number = opened(&repo, "WIP: Promote").await;

    let (waiting, _) = with_credentials(&repo)
        .await
        .run(json!([
            merge_pr(&repo, number, json!({"wait": true})),
            hold()
        ]))
        .await;
    assert_eq!(waiting["phase"], "Running", "{waiting}");
    assert_eq!(waiting["awaiting"][0]["kind"], "PullRequest");

    let (failed, _) = with_credentials(&repo)
        .await
        .run(json!([merge_pr(&repo, number, json!({})), hold()]))
        .await;
    assert_eq!(failed["phase"], "Failed", "{failed}");
    assert!(
        message(&failed).contains(&format!(
            "pull request {number} is not mergeable yet, and wait is false"
        )),
        "{failed}"
    );
}

#[tokio::test]
async fn merge_pr_of_a_closed_pull_request_fails() {
    let repo = repository(false).await;
    let number = opened(&repo, "Promote").await;
    gitea().await.close_pr(&repo, number).await.unwrap();

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([merge_pr(&repo, number, json!({})), hold()]))
        .await;

    assert_eq!(status["phase"], "Failed", "{status}");
    assert!(
        message(&status).contains("was closed without being merged"),
        "{status}"
    );
}

#[tokio::test]
async fn a_host_whose_api_cannot_be_told_from_its_name_needs_config_provider() {
    let repo = repository(false).await;
    let mut step = open_pr(&repo, "promote", "main");
    step["config"].as_object_mut().map(|c| c.remove("provider"));

    let (status, _) = with_credentials(&repo)
        .await
        .run(json!([step, hold()]))
        .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        message(&status).contains("config.provider: cannot tell which API 127.0.0.1 speaks"),
        "{status}"
    );
}
