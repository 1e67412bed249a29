//! The create-actor admission policy, on a real API server: the committed
//! file is what the code generates, and with it installed a user can name
//! only themself as a Promotion's creator, and never change it afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use barge::api::Promotion;
use barge_testenv::TestEnv;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const PATIENCE: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_policy_is_what_the_code_generates() -> TestResult {
    let committed = std::fs::read_to_string(root().join("deploy/create-actor-policy.yaml"))?;
    assert!(
        committed == barge::admission::render()?,
        "deploy/create-actor-policy.yaml is out of date: run `make crds` and commit"
    );
    Ok(())
}

/// A client authenticated as `user`, whose rights RBAC decides.
async fn client_of(
    env: &TestEnv,
    user: &str,
) -> Result<kube::Client, Box<dyn std::error::Error + Send + Sync>> {
    let path = env.control_plane().user_kubeconfig(user, &[])?;
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn promotion(name: &str, actor: Option<&str>) -> Result<Promotion, serde_json::Error> {
    let mut p = json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": name},
        "spec": {"stage": "dev", "freight": "f1"},
    });
    if let Some(actor) = actor {
        p["metadata"]["annotations"] = json!({"barge.dev/create-actor": actor});
    }
    serde_json::from_value(p)
}

#[tokio::test]
async fn with_the_policy_a_user_can_name_only_themself_as_creator_and_never_change_it() -> TestResult
{
    let env = TestEnv::shared().await?;
    env.apply_crd_dir(&root().join("crds")).await?;
    let admin = env.client();
    let ns = env.namespace().await?;
    let [policy, binding] = barge::admission::create_actor_policy();
    barge_testenv::apply(&admin, json!([policy, binding]), &ns, "barge-test").await?;
    barge_testenv::apply(
        &admin,
        json!([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "promoter"},
             "rules": [{"apiGroups": ["barge.dev"], "resources": ["promotions"],
                        "verbs": ["get", "create", "update", "patch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "promoters"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "promoter"},
             "subjects": [
                 {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
                 {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
             ]},
        ]),
        &ns,
        "barge-test",
    )
    .await?;
    let alice = Api::<Promotion>::namespaced(client_of(env, "alice").await?, &ns);
    let bob = Api::<Promotion>::namespaced(client_of(env, "bob").await?, &ns);
    let create = PostParams::default();

    // The API server loads a new policy in the background: wait until it
    // refuses what it must, on a fresh name each time.
    let started = Instant::now();
    let refused = loop {
        let name = format!("forged-{}", started.elapsed().as_millis());
        match alice.create(&create, &promotion(&name, Some("bob"))?).await {
            Err(kube::Error::Api(status)) => break status,
            Ok(_) if started.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(_) => return Err("the policy never refused a forged creator".into()),
            Err(e) => return Err(e.into()),
        }
    };
    assert!(
        refused
            .message
            .contains("barge.dev/create-actor must be the user creating the Promotion"),
        "{refused:?}"
    );

    alice
        .create(&create, &promotion("by-alice", Some("alice"))?)
        .await?;
    bob.create(&create, &promotion("by-bob", Some("bob"))?)
        .await?;
    alice.create(&create, &promotion("unsigned", None)?).await?;

    let relabel =
        |actor: &str| json!({"metadata": {"annotations": {"barge.dev/create-actor": actor}}});
    let changed = alice
        .patch(
            "by-alice",
            &PatchParams::default(),
            &Patch::Merge(&relabel("bob")),
        )
        .await;
    assert!(
        matches!(&changed, Err(kube::Error::Api(s)) if s.message.contains("cannot be changed")),
        "{changed:?}"
    );
    let added_later = alice
        .patch(
            "unsigned",
            &PatchParams::default(),
            &Patch::Merge(&relabel("alice")),
        )
        .await;
    assert!(added_later.is_err(), "an actor was added after creation");
    // Other changes to a signed Promotion still go through.
    alice
        .patch(
            "by-alice",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"team": "web"}}})),
        )
        .await?;
    Ok(())
}
