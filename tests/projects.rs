//! Kargo's `Project` with `--manage-projects`, against a real
//! kube-apiserver: its namespace (labelled as Kargo labels it) and an empty
//! ProjectConfig are created; a namespace of that name that is not a
//! project's is never taken over; deleting the Project deletes its
//! namespace unless it is annotated to be kept. (The test's API server runs
//! no namespace controller: a deleted namespace stays Terminating, which is
//! what is checked.)

mod support;

use std::time::Duration;

use barge::api::{Project, ProjectConfig};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;
use support::{Harness, TestResult};

const PATIENCE: Duration = Duration::from_secs(60);

async fn harness() -> Result<Harness, support::Error> {
    let mut h = Harness::start(|c| c).await?;
    h.stop_controller().await;
    h.settings.manage_projects = true;
    h.start_controller();
    Ok(h)
}

fn project(name: &str, annotations: serde_json::Value) -> Result<Project, support::Error> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": name, "annotations": annotations},
    }))?)
}

/// A Project as Kargo before v1.3 wrote one, its promotion policies in
/// its own spec.
fn project_with_policies(name: &str) -> Result<Project, support::Error> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Project",
        "metadata": {"name": name},
        "spec": {"promotionPolicies": [{"stage": "test", "autoPromotionEnabled": true}]},
    }))?)
}

async fn ready(h: &Harness, name: &str, status: &'static str) -> Result<Project, support::Error> {
    let api: Api<Project> = Api::all(h.client.clone());
    let cond = move |p: Option<&Project>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == status)
    };
    tokio::time::timeout(PATIENCE, await_condition(api, name, cond))
        .await??
        .ok_or_else(|| format!("Project {name} disappeared").into())
}

async fn terminating(h: &Harness, name: &str) -> TestResult {
    let api: Api<Namespace> = Api::all(h.client.clone());
    let cond = |n: Option<&Namespace>| n.is_none_or(|n| n.metadata.deletion_timestamp.is_some());
    tokio::time::timeout(PATIENCE, await_condition(api, name, cond)).await??;
    Ok(())
}

async fn gone(h: &Harness, name: &str) -> TestResult {
    let api: Api<Project> = Api::all(h.client.clone());
    tokio::time::timeout(
        PATIENCE,
        await_condition(api, name, |p: Option<&Project>| p.is_none()),
    )
    .await??;
    Ok(())
}

#[tokio::test]
async fn a_project_gets_a_labelled_namespace_and_a_project_config_with_its_old_policies_and_takes_it_along_when_deleted()
-> TestResult {
    let h = harness().await?;
    let name = format!("{}-project", h.ns);
    let projects: Api<Project> = Api::all(h.client.clone());
    projects
        .create(&PostParams::default(), &project_with_policies(&name)?)
        .await?;

    let p = ready(&h, &name, "True").await?;
    assert!(
        p.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"barge.dev/project".to_string())
    );
    let ns = Api::<Namespace>::all(h.client.clone()).get(&name).await?;
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("kargo.akuity.io/project")
            .map(String::as_str),
        Some("true")
    );
    let config = Api::<ProjectConfig>::namespaced(h.client.clone(), &name)
        .get(&name)
        .await?;
    let policies = &config.spec.promotion_policies;
    assert_eq!(
        policies.len(),
        1,
        "the Project's policies moved into its ProjectConfig"
    );
    assert_eq!(policies[0].stage.as_deref(), Some("test"));
    assert!(policies[0].auto_promotion_enabled);

    projects.delete(&name, &DeleteParams::default()).await?;
    gone(&h, &name).await?;
    terminating(&h, &name).await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_project_annotated_to_keep_its_namespace_leaves_it_when_deleted() -> TestResult {
    let h = harness().await?;
    let name = format!("{}-kept", h.ns);
    let projects: Api<Project> = Api::all(h.client.clone());
    projects
        .create(
            &PostParams::default(),
            &project(&name, json!({"kargo.akuity.io/keep-namespace": "true"}))?,
        )
        .await?;
    ready(&h, &name, "True").await?;

    projects.delete(&name, &DeleteParams::default()).await?;
    gone(&h, &name).await?;
    let ns = Api::<Namespace>::all(h.client.clone()).get(&name).await?;
    assert!(
        ns.metadata.deletion_timestamp.is_none(),
        "the namespace was deleted"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_namespace_that_is_not_a_projects_is_never_taken_over_or_deleted() -> TestResult {
    let h = harness().await?;
    // The test's own project namespace: it exists, without Kargo's label.
    let projects: Api<Project> = Api::all(h.client.clone());
    projects
        .create(&PostParams::default(), &project(&h.ns, json!({}))?)
        .await?;

    let p = ready(&h, &h.ns, "False").await?;
    let condition = p
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .ok_or("no Ready condition")?;
    assert_eq!(condition.reason, "ExistingNamespaceMissingLabel");
    assert!(
        condition.message.contains("kargo.akuity.io/project"),
        "{}",
        condition.message
    );

    projects.delete(&h.ns, &DeleteParams::default()).await?;
    gone(&h, &h.ns).await?;
    let ns = Api::<Namespace>::all(h.client.clone()).get(&h.ns).await?;
    assert!(
        ns.metadata.deletion_timestamp.is_none(),
        "someone else's namespace was deleted"
    );
    h.shutdown().await;
    Ok(())
}
