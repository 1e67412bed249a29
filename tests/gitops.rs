//! `examples/gitops` end to end: the pipeline Kargo users write (git-clone,
//! kustomize-set-image, kustomize-build, git-commit, git-push, argocd-update
//! syncing the pushed commit) takes one Freight through dev, staging and
//! prod, against a real kube-apiserver, the real Argo CD
//! application-controller and repo-server reading the same repository, and a
//! bare git repository the Promotions push to. The controller's backstop is
//! an hour, so every Stage finishes only through events.

mod support;

use std::path::Path;

use barge::api::{Promotion, PromotionPhase};
use barge_testenv::git::GitRepo;
use barge_testenv::git_server::{GitServer, Login};
use kube::api::{Api, ListParams};
use serde_json::Value;
use support::{ArgoCdKind, Harness, TestResult, healthy_with};

const FREIGHT: &str = "guestbook-0-2-0";
const STAGES: [&str; 3] = ["dev", "staging", "prod"];

/// The example's GitOps repository, published as bare repository `gitops`;
/// returns its `main` commit.
fn publish_example_repository(server: &GitServer) -> Result<String, support::Error> {
    let repo = GitRepo::init()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops/repo");
    for file in support::examples::files_under(&root)? {
        let relative = file.strip_prefix(&root)?.display().to_string();
        repo.write(&relative, &std::fs::read_to_string(&file)?)?;
    }
    let commit = repo.commit("the guestbook's GitOps repository")?;
    server.publish("gitops", &repo)?;
    Ok(commit)
}

/// The example's manifests (but its namespaces) with the repository filled
/// in, moved into the test's namespaces.
fn example_objects(
    h: &Harness,
    repo_url: &str,
    commit: &str,
) -> Result<Vec<Value>, support::Error> {
    support::examples::example_objects(
        h,
        &[
            "gitops/05-project-config.yaml",
            "gitops/10-promotion-task.yaml",
            "gitops/20-argocd-applications.yaml",
            "gitops/40-freight.yaml",
            "gitops/30-stages.yaml",
        ],
        &[("REPO_URL", repo_url), ("COMMIT", commit)],
    )
}

#[tokio::test]
async fn the_gitops_example_renders_pushes_and_syncs_each_stage_against_real_argo_cd() -> TestResult
{
    let server = GitServer::start(Login {
        username: "unused".into(),
        password: "unused".into(),
    })
    .await?;
    let commit = publish_example_repository(&server)?;
    let repo_url = server.file_url("gitops");
    let h = Harness::start_on(ArgoCdKind::Real, |c| c).await?;
    let started = std::time::Instant::now();

    h.apply(Value::Array(example_objects(&h, &repo_url, &commit)?))
        .await?;
    let mut healthy_after = Vec::new();
    for stage in STAGES {
        h.stage_until(stage, "healthy with the Freight", healthy_with(FREIGHT))
            .await?;
        healthy_after.push(started.elapsed());
    }
    let took = started.elapsed();

    let promotions = Api::<Promotion>::namespaced(h.client.clone(), &h.ns)
        .list(&ListParams::default())
        .await?;
    println!(
        "\n| Stage | Promotion | healthy after (from apply) | Promotion run (API seconds) |\n|---|---|---|---|"
    );
    for (stage, healthy) in STAGES.into_iter().zip(&healthy_after) {
        let promotion = promotions
            .items
            .iter()
            .find(|p| p.spec.stage == stage)
            .ok_or(format!("no Promotion for {stage}"))?;
        assert_eq!(
            promotion.phase(),
            PromotionPhase::Succeeded,
            "{:?}",
            promotion.status
        );
        let status = promotion.status.clone().unwrap_or_default();
        let started = status
            .step_execution_metadata
            .first()
            .and_then(|m| m.started_at.clone())
            .ok_or("no start")?;
        let finished = status.finished_at.clone().ok_or("no finish")?;
        println!(
            "| {stage} | {} | {} ms | {} s |",
            promotion.metadata.name.clone().unwrap_or_default(),
            healthy.as_millis(),
            finished.0.duration_since(started.0).as_secs()
        );

        // The Stage's branch holds what Kustomize rendered with the new image,
        // in a commit that names the Promotion.
        let branch = format!("stage/{stage}");
        let rendered = server.git("gitops", &["show", &format!("{branch}:manifests.yaml")])?;
        assert!(
            rendered.contains("image: ghcr.io/example/guestbook:0.2.0"),
            "{rendered}"
        );
        let head = server
            .git("gitops", &["rev-parse", &branch])?
            .trim()
            .to_string();
        let message = server.git("gitops", &["log", "-1", "--format=%B", &branch])?;
        let uid = promotion.metadata.uid.clone().unwrap_or_default();
        assert!(
            message.contains(&format!("Barge-Promotion: {uid}")),
            "{message}"
        );
        assert!(
            message.contains("ghcr.io/example/guestbook:0.2.0"),
            "{message}"
        );

        // Argo CD synced exactly that commit.
        let apps = barge_argocd_double::fixtures::applications(h.client.clone(), &h.argocd_ns);
        let app = serde_json::to_value(apps.get(&format!("{}-{stage}", h.ns)).await?)?;
        let operation = &app["status"]["operationState"];
        assert_eq!(operation["phase"], "Succeeded", "{app}");
        assert_eq!(operation["syncResult"]["revision"], head.as_str(), "{app}");
    }
    println!("all three Stages: {} ms\n", took.as_millis());
    h.shutdown().await;
    Ok(())
}
