//! Promotion semantics that real Argo CD showed Barge getting wrong, each
//! run against real Argo CD and the double like every conformance scenario.

use barge::api::{Promotion, PromotionPhase};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use super::support::{ArgoCdKind, PATIENCE, TestResult, message, promotion, stage, step};
use super::world::{GitRepo, Workload, World};

/// Deletes Promotion `name` and waits until the API server no longer has it.
async fn delete_promotion(w: &World, name: &str) -> TestResult {
    let api = Api::<Promotion>::namespaced(w.h.client.clone(), &w.h.ns);
    let uid = api.get(name).await?.metadata.uid.unwrap_or_default();
    api.delete(name, &DeleteParams::default()).await?;
    tokio::time::timeout(
        PATIENCE,
        await_condition(api, name, conditions::is_deleted(&uid)),
    )
    .await
    .map_err(|_| format!("Promotion {name} was not deleted"))??;
    Ok(())
}

/// `main` of the Application's repository now points at `sha`. Real Argo
/// CD's repo-server reads that from git; the double is told, through its
/// revision table.
async fn main_moved_to(w: &World, app: &str, sha: &str) -> TestResult {
    if w.kind != ArgoCdKind::Double {
        return Ok(());
    }
    let patch =
        json!({"metadata": {"annotations": {"double.barge.dev/resolve": format!("main={sha}")}}});
    let api: Api<DynamicObject> = Api::namespaced_with(
        w.h.client.clone(),
        &w.h.argocd_ns,
        &barge_argocd_double::api_resource(),
    );
    api.patch(app, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

// 13
async fn a_promotion_created_again_under_its_old_name_syncs_anew(kind: ArgoCdKind) -> TestResult {
    let w = World::start(kind).await?;
    let repo = GitRepo::new(Workload::Ready)?;
    let first = repo.commit()?;
    let app = w.app_name("dev");
    // The step only syncs: what it deploys is whatever `main` holds.
    let sync_only = step("update", "argocd-update", json!({"apps": [{"name": app}]}));
    w.h.apply(w.application(&app, "dev", &[&repo], json!({})).await?)
        .await?;
    main_moved_to(&w, &app, &first).await?;
    w.h.apply(json!([
        w.freight("f1", &[(&repo, &first)]),
        stage("dev", json!([sync_only])),
        promotion("p1", "dev", "f1"),
    ]))
    .await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    w.until_synced_to(&app, &[&first]).await?;

    // Retried as users do: deleted and created again under the same name.
    let second = repo.commit()?;
    main_moved_to(&w, &app, &second).await?;
    delete_promotion(&w, "p1").await?;
    w.h.apply(json!([
        w.freight("f2", &[(&repo, &second)]),
        promotion("p1", "dev", "f2"),
    ]))
    .await?;
    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    // Its own sync ran: the old Promotion's result was not taken for it.
    w.until_synced_to(&app, &[&second]).await?;
    assert_eq!(w.deployments_of(&app, &second).await?, 1);
    w.shutdown().await;
    Ok(())
}

// 14
async fn the_freights_commit_is_deployed_even_behind_the_branch_head(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    let repo = GitRepo::new(Workload::Ready)?;
    let named = repo.commit()?;
    let head = repo.commit()?;
    let app = w.app_name("dev");
    // The Application keeps tracking `main`; the step wants the Freight's
    // commit, one behind the head.
    let pinned = json!({"apps": [{"name": app, "sources": [{
        "repoURL": repo.url(),
        "desiredRevision": format!("${{{{ commitFrom(\"{}\").id }}}}", repo.url()),
    }]}]});
    w.h.apply(json!([
        w.application(&app, "dev", &[&repo], json!({})).await?,
        w.freight("f1", &[(&repo, &named)]),
        stage("dev", json!([step("update", "argocd-update", pinned)])),
        promotion("p1", "dev", "f1"),
    ]))
    .await?;

    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    assert_eq!(w.deployments_of(&app, &named).await?, 1);
    assert_eq!(
        w.deployments_of(&app, &head).await?,
        0,
        "a commit the Freight does not name was deployed"
    );
    let argo = w.app(&app).await?;
    assert_eq!(argo["spec"]["source"]["targetRevision"], json!("main"));
    w.shutdown().await;
    Ok(())
}

// 15
async fn argocd_wait_by_default_also_waits_for_the_application_to_be_synced(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    // Healthy, but never Synced: the default wait cannot be met.
    let steps = |app: &str, repo: &GitRepo| {
        let mut steps = super::update_and_wait(app, repo);
        steps[1]["retry"] = json!({"timeout": "5s"});
        steps
    };
    let dev = w.promote_once(Workload::PermanentDiff, steps).await?;
    w.set_health(&dev.app, "Healthy").await?;

    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Errored, "{:?}", p.status);
    assert!(message(&p).contains("timed out"), "{}", message(&p));
    w.shutdown().await;
    Ok(())
}

// 16
async fn argocd_wait_for_suspended_is_met_by_a_suspended_application(
    kind: ArgoCdKind,
) -> TestResult {
    let w = World::start(kind).await?;
    let for_suspended = super::update_and_wait_for(json!(["suspended"]));
    let dev = w.promote_once(Workload::Progressing, for_suspended).await?;
    w.set_health(&dev.app, "Suspended").await?;

    let p = w.h.finished("p1").await?;
    assert_eq!(p.phase(), PromotionPhase::Succeeded, "{:?}", p.status);
    w.shutdown().await;
    Ok(())
}

conformance!(
    a_promotion_created_again_under_its_old_name_syncs_anew,
    the_freights_commit_is_deployed_even_behind_the_branch_head,
    argocd_wait_by_default_also_waits_for_the_application_to_be_synced,
    argocd_wait_for_suspended_is_met_by_a_suspended_application,
);
