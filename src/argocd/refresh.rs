//! Asking Argo CD to compare an Application again: the one write Barge makes
//! to an Application besides a sync request.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{Application, REFRESH_ANNOTATION};

/// Requests a normal refresh unless one is already pending. Argo CD removes
/// the annotation when it has compared, so a later request is a new change.
/// Failures are logged: the caller is still woken by the next event.
pub async fn request_refresh(client: &Client, app: &Application) {
    if app.annotations().contains_key(REFRESH_ANNOTATION) {
        return;
    }
    let namespace = app.namespace().unwrap_or_default();
    let api = Api::<Application>::namespaced(client.clone(), &namespace);
    let patch = json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "normal"}}});
    if let Err(e) = api
        .patch(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(error = %e, application = %app.name_any(), app_namespace = %namespace, "could not request an Argo CD refresh");
    }
}
