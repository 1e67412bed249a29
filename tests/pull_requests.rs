//! Production through a reviewed pull request, end to end: `examples/gitops`
//! takes the Freight through dev and staging (pushing to their branches),
//! and `examples/pull-request` takes it to prod by pushing a branch of the
//! Promotion's own, opening a pull request on a real Gitea and waiting for
//! it to be merged. The test merges it through Gitea's API; Gitea's webhook
//! reaches the project's receiver, which wakes the Promotion; real Argo CD
//! then syncs the merge commit. The controller's backstop is an hour and,
//! with a receiver serving the namespace, the wait sets no poll of its own,
//! so prod finishes only through the webhook.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use barge::api::{ProjectConfig, Promotion, PromotionPhase, PromotionStepStatus};
use barge_testenv::gitea::{Gitea, Repo};
use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use support::{ArgoCdKind, Error, Harness, TestResult, healthy_with};

const FREIGHT: &str = "guestbook-0-2-0";
const WEBHOOK_SECRET: &str = "gitea-webhook-s3cret";
/// How long the test waits for one thing to happen.
const PATIENCE: Duration = Duration::from_secs(120);

fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@barge.dev"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The example's GitOps repository on `main`, and an empty `stage/prod`
/// (the branch prod's pull requests merge into, as a team prepares it);
/// returns the `main` commit.
fn publish(repo: &Repo, gitea: &Gitea) -> Result<String, Error> {
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git(dir, &["init", "-q", "-b", "main"])?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops/repo");
    for file in support::examples::files_under(&root)? {
        let target = dir.join(file.strip_prefix(&root)?);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&file, &target)?;
    }
    git(dir, &["add", "-A"])?;
    git(
        dir,
        &["commit", "-q", "-m", "the guestbook's GitOps repository"],
    )?;
    let commit = git(dir, &["rev-parse", "HEAD"])?.trim().to_string();
    git(dir, &["checkout", "-q", "--orphan", "stage/prod"])?;
    git(dir, &["rm", "-rqf", "."])?;
    std::fs::write(dir.join("README.md"), "What prod runs, rendered.\n")?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "stage/prod"])?;
    let remote = repo.clone_url_with(gitea.admin(), gitea.token());
    git(
        dir,
        &["push", "-q", "--force", &remote, "main", "stage/prod"],
    )?;
    Ok(commit)
}

/// Waits on watch events until a Promotion of the project satisfies
/// `condition`.
async fn promotion_until(
    h: &Harness,
    what: &str,
    condition: impl Fn(&Promotion) -> bool + Send + Sync,
) -> Result<Promotion, Error> {
    let api = Api::<Promotion>::namespaced(h.client.clone(), &h.ns);
    let mut stream = watcher(api, watcher::Config::default())
        .applied_objects()
        .try_filter(|p| futures::future::ready(condition(p)))
        .boxed();
    match tokio::time::timeout(PATIENCE, stream.try_next()).await {
        Ok(Ok(Some(p))) => Ok(p),
        Ok(Ok(None)) => Err(format!("{what}: the watch ended").into()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(format!("{what}: not within {PATIENCE:?}").into()),
    }
}

fn prod_waiting_on_its_pull_request(p: &Promotion) -> bool {
    p.spec.stage == "prod"
        && p.status
            .as_ref()
            .is_some_and(|s| s.awaiting.iter().any(|a| a.kind == "PullRequest"))
}

#[tokio::test]
async fn prod_goes_through_a_pull_request_whose_merge_a_webhook_reports() -> TestResult {
    let gitea = Gitea::shared().await?;
    let repo = gitea
        .create_repo(&format!("gitops-{}", std::process::id()))
        .await?;
    let commit = publish(&repo, gitea)?;
    let repo_url = repo.clone_url().to_string();

    // The controller with the webhook endpoint beside it, as `barge run`.
    let mut h = Harness::start_on(ArgoCdKind::Real, |c| c).await?;
    h.stop_controller().await;
    let endpoint = barge::webhook::start(
        h.client.clone(),
        Some(h.ns.clone()),
        ([127, 0, 0, 1], 0).into(),
        None,
        h.metrics.clone(),
    )
    .await?;
    h.settings.receivers = endpoint.receivers.clone();
    h.settings.wakers = Some(endpoint.wakers.clone());
    h.start_controller();

    // The receiver first: its path goes to Gitea as the repository's webhook.
    let fill = [
        ("REPO_URL", repo_url.as_str()),
        ("COMMIT", commit.as_str()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("GIT_USERNAME", gitea.admin()),
        ("GIT_TOKEN", gitea.token()),
    ];
    h.apply(Value::Array(support::examples::example_objects(
        &h,
        &["pull-request/50-project-config.yaml"],
        &fill,
    )?))
    .await?;
    let configs = Api::<ProjectConfig>::namespaced(h.client.clone(), &h.ns);
    let served = |c: Option<&ProjectConfig>| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| !s.webhook_receivers.is_empty())
    };
    let config = tokio::time::timeout(
        PATIENCE,
        kube::runtime::wait::await_condition(configs, &h.ns, served),
    )
    .await??
    .ok_or("the ProjectConfig disappeared")?;
    let path = config
        .status
        .map(|s| s.webhook_receivers[0].path.clone())
        .unwrap_or_default();
    gitea
        .add_webhook(
            &repo,
            &format!("http://{}{path}", endpoint.addr),
            WEBHOOK_SECRET,
            &["pull_request"],
        )
        .await?;

    // dev and staging as in examples/gitops; prod through a pull request.
    let mut objects = support::examples::example_objects(
        &h,
        &[
            "gitops/10-promotion-task.yaml",
            "gitops/20-argocd-applications.yaml",
            "pull-request/10-promotion-task.yaml",
            "gitops/40-freight.yaml",
            "gitops/30-stages.yaml",
        ],
        &fill,
    )?;
    objects.retain(|o| !(o["kind"] == "Stage" && o["metadata"]["name"] == "prod"));
    objects.extend(support::examples::example_objects(
        &h,
        &["pull-request/30-prod-stage.yaml"],
        &fill,
    )?);
    h.apply(Value::Array(objects)).await?;

    for stage in ["dev", "staging"] {
        h.stage_until(stage, "healthy with the Freight", healthy_with(FREIGHT))
            .await?;
    }
    let waiting = promotion_until(
        &h,
        "prod waiting on its pull request",
        prod_waiting_on_its_pull_request,
    )
    .await?;
    let name = waiting.metadata.name.clone().unwrap_or_default();
    let state = waiting.status.clone().unwrap_or_default();
    let number = state
        .state
        .get("deploy::open-pr")
        .and_then(|o| o["pr"]["id"].as_u64())
        .ok_or_else(|| format!("no pull request number in {:?}", state.state))?;
    // Nothing but an event wakes it: the next look without one is the
    // hour-long backstop.
    let awaited = state
        .awaiting
        .iter()
        .find(|a| a.kind == "PullRequest")
        .ok_or("no PullRequest awaited")?;
    assert_eq!(awaited.name.as_deref(), Some(number.to_string().as_str()));
    let deadline = awaited.deadline.clone().ok_or("no deadline")?;
    let since = awaited.since.clone().ok_or("no since")?;
    assert!(
        deadline.0.duration_since(since.0) >= jiff::SignedDuration::from_mins(30),
        "the wait polls before the backstop: {awaited:?}"
    );
    let pr = gitea.get_pr(&repo, number).await?;
    assert_eq!(pr["base"]["ref"], "stage/prod", "{pr}");
    assert_eq!(pr["title"], "Deploy 0.2.0 to prod", "{pr}");

    // A reviewer merges it.
    gitea.merge_pr(&repo, number, "merge").await?;
    let merged_at = Instant::now();
    promotion_until(&h, "prod's wait for the pull request done", |p| {
        p.metadata.name.as_deref() == Some(name.as_str())
            && p.status.as_ref().is_some_and(|s| {
                s.step_execution_metadata.iter().any(|m| {
                    m.alias.ends_with("wait-for-pr")
                        && m.status == Some(PromotionStepStatus::Succeeded)
                })
            })
    })
    .await?;
    let wait_done = merged_at.elapsed();
    let done = h.finished(&name).await?;
    let succeeded = merged_at.elapsed();
    assert_eq!(done.phase(), PromotionPhase::Succeeded, "{:?}", done.status);

    // prod's branch holds the merge, and Argo CD synced exactly it.
    let merge_commit = gitea.get_pr(&repo, number).await?["merge_commit_sha"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(gitea.branch_sha(&repo, "stage/prod").await?, merge_commit);
    let apps = barge_argocd_double::fixtures::applications(h.client.clone(), &h.argocd_ns);
    let app = serde_json::to_value(apps.get(&format!("{}-prod", h.ns)).await?)?;
    let operation = &app["status"]["operationState"];
    assert_eq!(operation["phase"], "Succeeded", "{app}");
    assert_eq!(
        operation["syncResult"]["revision"],
        merge_commit.as_str(),
        "{app}"
    );
    h.stage_until("prod", "healthy with the Freight", healthy_with(FREIGHT))
        .await?;

    println!(
        "\nmerge → git-wait-for-pr Succeeded: {} ms; merge → prod Promotion Succeeded (Argo CD sync included): {} ms\n",
        wait_done.as_millis(),
        succeeded.as_millis()
    );
    drop(endpoint);
    h.shutdown().await;
    Ok(())
}
