//! The Project reconciler (`--manage-projects`): a Project's namespace,
//! labelled `kargo.akuity.io/project: "true"`, and an empty ProjectConfig
//! in it; on deletion, the namespace goes too unless the Project or the
//! namespace is annotated `kargo.akuity.io/keep-namespace: "true"`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::Error;
use super::promotion::FIELD_MANAGER;
use crate::api::project::{ANNOTATION_KEEP_NAMESPACE, FINALIZER, LABEL_PROJECT};
use crate::api::{Project, ProjectConfig, ProjectStatus};

pub struct ProjectContext {
    pub client: Client,
    pub backstop: Duration,
}

/// What the Project's namespace is to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    Missing,
    /// Labelled as a project's namespace.
    Project {
        keep: bool,
    },
    /// Exists without the label: someone else's; never taken over.
    Foreign,
}

pub fn ownership(namespace: Option<&Namespace>) -> Ownership {
    match namespace {
        None => Ownership::Missing,
        Some(ns) if ns.labels().get(LABEL_PROJECT).map(String::as_str) == Some("true") => {
            Ownership::Project {
                keep: keeps(ns.annotations().get(ANNOTATION_KEEP_NAMESPACE)),
            }
        }
        Some(_) => Ownership::Foreign,
    }
}

fn keeps(value: Option<&String>) -> bool {
    value.map(String::as_str) == Some("true")
}

pub async fn reconcile(project: Arc<Project>, ctx: Arc<ProjectContext>) -> Result<Action, Error> {
    let name = project.name_any();
    let projects: Api<Project> = Api::all(ctx.client.clone());
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let namespace = namespaces.get_opt(&name).await?;
    let owned = ownership(namespace.as_ref());
    if project.meta().deletion_timestamp.is_some() {
        if !project.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(Action::await_change());
        }
        let keep = keeps(project.annotations().get(ANNOTATION_KEEP_NAMESPACE));
        if let Ownership::Project { keep: false } = owned
            && !keep
        {
            match namespaces.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(project = %name, "deleted the Project's namespace"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let rest: Vec<String> = project
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        set_finalizers(&projects, &project, rest).await?;
        return Ok(Action::await_change());
    }
    if !project.finalizers().iter().any(|f| f == FINALIZER) {
        let mut all = project.finalizers().to_vec();
        all.push(FINALIZER.to_string());
        set_finalizers(&projects, &project, all).await?;
    }
    let ready = match owned {
        Ownership::Foreign => condition(
            "False",
            "ExistingNamespaceMissingLabel",
            format!(
                "Namespace {name:?} already exists but is not labeled as a Project namespace using label {LABEL_PROJECT:?}"
            ),
            &project,
        ),
        Ownership::Missing | Ownership::Project { .. } => {
            if owned == Ownership::Missing {
                let ns: Namespace = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {LABEL_PROJECT: "true"}},
                }))?;
                create_or_exists(&namespaces, &ns).await?;
                tracing::info!(project = %name, "created the Project's namespace");
            }
            ensure_project_config(&ctx.client, &project).await?;
            condition(
                "True",
                "Synced",
                "the namespace and its ProjectConfig exist".into(),
                &project,
            )
        }
    };
    let status = ProjectStatus {
        conditions: vec![ready],
    };
    let unchanged = project.status.as_ref().is_some_and(|s| {
        s.conditions
            .first()
            .map(|c| (&c.status, &c.reason, &c.message))
            == status
                .conditions
                .first()
                .map(|c| (&c.status, &c.reason, &c.message))
    });
    if !unchanged {
        let body = json!({"apiVersion": "barge.dev/v1alpha1", "kind": "Project", "status": status});
        projects
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
    }
    // A foreign namespace may be labelled later; nothing here watches
    // namespaces, so look again on the backstop.
    Ok(Action::requeue(ctx.backstop))
}

pub fn error_policy(_project: Arc<Project>, error: &Error, _ctx: Arc<ProjectContext>) -> Action {
    tracing::warn!(%error, "project reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// The project's ProjectConfig: created empty, or with the policies of a
/// Project written for Kargo before v1.3, which are moved into a
/// ProjectConfig that has none (as Kargo migrated them).
async fn ensure_project_config(client: &Client, project: &Project) -> Result<(), Error> {
    let name = project.name_any();
    let api: Api<ProjectConfig> = Api::namespaced(client.clone(), &name);
    let policies = project
        .spec
        .spec
        .as_ref()
        .map(|s| s.promotion_policies.clone())
        .unwrap_or_default();
    let config: ProjectConfig = serde_json::from_value(json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "ProjectConfig",
        "metadata": {"name": name, "namespace": name},
        "spec": {"promotionPolicies": &policies},
    }))?;
    create_or_exists(&api, &config).await?;
    if policies.is_empty() {
        return Ok(());
    }
    let existing = api.get(&name).await?;
    if existing.spec.promotion_policies.is_empty() {
        let patch = json!({"spec": {"promotionPolicies": &policies}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(project = %name, "moved the Project's promotion policies into its ProjectConfig");
    }
    Ok(())
}

async fn set_finalizers(
    api: &Api<Project>,
    project: &Project,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    // The resourceVersion makes a concurrent change fail instead of being
    // overwritten.
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": project.resource_version(),
    }});
    api.patch(
        &project.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn create_or_exists<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn condition(status: &str, reason: &str, message: String, project: &Project) -> Condition {
    let since = project
        .status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: project.metadata.generation,
        last_transition_time: since.unwrap_or(Time(Timestamp::now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(labels: serde_json::Value, annotations: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a", "labels": labels, "annotations": annotations},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_a_namespace_labelled_as_a_projects_is_taken() {
        assert_eq!(ownership(None), Ownership::Missing);
        let ours = namespace(json!({LABEL_PROJECT: "true"}), json!({}));
        assert_eq!(ownership(Some(&ours)), Ownership::Project { keep: false });
        let kept = namespace(
            json!({LABEL_PROJECT: "true"}),
            json!({ANNOTATION_KEEP_NAMESPACE: "true"}),
        );
        assert_eq!(ownership(Some(&kept)), Ownership::Project { keep: true });
        let theirs = namespace(json!({}), json!({}));
        assert_eq!(ownership(Some(&theirs)), Ownership::Foreign);
    }
}
