//! A double watching every namespace (its own test binary, so its control
//! plane holds no other test's Applications).

mod support;

use barge_argocd_double::fixtures::{
    ApplicationBuilder, SyncRequest, applications, request_sync, wait_for,
};
use barge_argocd_double::{Double, DoubleConfig};
use support::*;

#[tokio::test]
async fn all_namespaces_double_syncs_applications_in_every_namespace() -> TestResult {
    let env = env().await?;
    let client = env.client();
    let double = Double::new(client.clone(), DoubleConfig::all_namespaces()).spawn();
    let namespaces = [env.namespace().await?, env.namespace().await?];
    for ns in &namespaces {
        ApplicationBuilder::new("app")
            .deployed(&["v1"])
            .create(client.clone(), ns)
            .await?;
        let request = SyncRequest::for_promotion(ns, "p").target_revision("v2");
        request_sync(&applications(client.clone(), ns), "app", &request).await?;
    }
    for ns in &namespaces {
        let app = wait_for(&applications(client.clone(), ns), "app", WAIT, |v| {
            phase(v) == Some("Succeeded")
                && reconciled_after_finish(v)
                && s(v, "/status/sync/status") == Some("Synced")
        })
        .await?;
        assert_eq!(s(&app, "/status/sync/revision"), Some("v2"));
        assert_eq!(double.journal().syncs_for(ns, "app").len(), 1);
    }
    Ok(())
}
