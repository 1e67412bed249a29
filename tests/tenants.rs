//! Tenants kept apart, against a real kube-apiserver, the Argo CD double and
//! a git server that requires a login: one controller serves two project
//! namespaces, and a Promotion in one reads nothing of the other (generic
//! Secrets, ConfigMaps, git credentials, PromotionTasks) and changes no
//! Application authorized only for the other's Stage. A planted password is
//! then searched for in every status, Event and log line: it is never there.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use barge::api::{Promotion, PromotionPhase, Stage};
use barge_testenv::git::GitRepo;
use barge_testenv::git_server::{GitServer, Login};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::{Harness, TestResult, message, step};

/// The git server's password, held only by namespace `a`'s Secret.
const PLANTED_PASSWORD: &str = "planted-git-password-7d1f3c";
/// A generic Secret's value in namespace `a`.
const PLANTED_TOKEN: &str = "planted-generic-token-52be0a";

/// Every log line of this test binary, at debug level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn install() -> Self {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("debug")
            .with_writer(move || writer.clone())
            .finish();
        // One test in this binary: the subscriber is this test's.
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    }

    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sharded(mut object: Value, shard: &str) -> Value {
    object["metadata"]["labels"]["barge.dev/shard"] = json!(shard);
    object
}

fn promotion(name: &str, stage: &str, shard: &str) -> Value {
    sharded(support::promotion(name, stage, "f1"), shard)
}

fn stage(name: &str, steps: Value, shard: &str) -> Value {
    sharded(support::stage(name, steps), shard)
}

fn clone_step(url: &str) -> Value {
    step(
        "clone",
        "git-clone",
        json!({"repoURL": url, "checkout": [{"branch": "main", "path": "./src"}]}),
    )
}

fn secret(name: &str, cred_type: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"barge.dev/cred-type": cred_type}},
        "stringData": data,
    })
}

#[tokio::test]
async fn a_promotion_in_one_namespace_reads_and_changes_nothing_of_another() -> TestResult {
    let logs = Logs::install();
    let server = GitServer::start(Login {
        username: "tenant-a".into(),
        password: PLANTED_PASSWORD.into(),
    })
    .await?;
    let repo = GitRepo::init()?;
    repo.write("README.md", "tenant a's repository\n")?;
    repo.commit("first")?;
    server.publish("tenant-a", &repo)?;
    let url = server.http_url("tenant-a");

    let mut h = Harness::start(|c| c).await?;
    // One controller for both namespaces, kept to this test's objects by a shard.
    let (a, b) = (h.ns.clone(), h.env.namespace().await?);
    let shard = format!("tenants-{a}");
    h.stop_controller().await;
    h.settings.namespace = None;
    h.settings.shard = Some(shard.clone());
    h.start_controller();

    let app = format!("{a}-dev");
    h.apply(json!([
        h.application(&app, "dev"),
        secret("git", "git", json!({"repoURL": url, "username": "tenant-a", "password": PLANTED_PASSWORD})),
        secret("slack", "generic", json!({"token": PLANTED_TOKEN})),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"url": "https://a.example.com"}},
        {"apiVersion": "barge.dev/v1alpha1", "kind": "PromotionTask", "metadata": {"name": "deploy"},
         "spec": {"steps": [step("say", "compose-output", json!({"said": "tenant a's task"}))]}},
        h.freight("f1", "c0ffee1"),
        stage("cloner", json!([clone_step(&url)]), &shard),
        stage("peek", json!([step("peek", "compose-output", json!({
            "url": "${{ configMap('settings').url }}",
        }))]), &shard),
        promotion("a-clones", "cloner", &shard),
        promotion("a-peeks", "peek", &shard),
    ]))
    .await?;
    let b_objects = json!([
        sharded(h.freight("f1", "c0ffee1"), &shard),
        stage(
            "peek",
            json!([step(
                "peek",
                "compose-output",
                json!({
                    "token": "${{ secret('slack').token }}",
                    "url": "${{ configMap('settings').url }}",
                })
            )]),
            &shard
        ),
        stage(
            "tasked",
            json!([{"as": "deploy", "task": {"name": "deploy"}}]),
            &shard
        ),
        stage("cloner", json!([clone_step(&url)]), &shard),
        // Named like `a`'s Stage that the Application authorizes.
        stage("dev", json!([Harness::update_app(&app)]), &shard),
        promotion("b-peeks", "peek", &shard),
        promotion("b-uses-a-task", "tasked", &shard),
        promotion("b-clones", "cloner", &shard),
        promotion("b-updates-a-app", "dev", &shard),
    ]);
    barge_testenv::apply(&h.client, b_objects, &b, "barge-test").await?;

    // In `a`, its credentials and its ConfigMap work.
    let a_clones = h.finished("a-clones").await?;
    assert_eq!(
        a_clones.phase(),
        PromotionPhase::Succeeded,
        "{}",
        message(&a_clones)
    );
    let a_peeks = h.finished("a-peeks").await?;
    let a_outputs = a_peeks.status.map(|s| s.state).unwrap_or_default();
    assert_eq!(
        a_outputs.get("peek").map(|o| o["url"].clone()),
        Some(json!("https://a.example.com"))
    );

    let in_b = Api::<Promotion>::namespaced(h.client.clone(), &b);
    let finished = |name: &'static str| {
        let api = in_b.clone();
        async move {
            let done = |p: Option<&Promotion>| p.is_some_and(|p| p.is_terminal());
            let wait = kube::runtime::wait::await_condition(api, name, done);
            match tokio::time::timeout(support::PATIENCE, wait).await {
                Ok(Ok(Some(p))) => Ok(p),
                _ => Err(format!(
                    "Promotion {name} in the other namespace did not finish"
                )),
            }
        }
    };

    // `b`'s expressions see no Secret and no ConfigMap of `a`.
    let peeks = finished("b-peeks").await?;
    assert_eq!(
        peeks.phase(),
        PromotionPhase::Succeeded,
        "{}",
        message(&peeks)
    );
    let outputs = peeks.status.clone().map(|s| s.state).unwrap_or_default();
    let peeked = outputs.get("peek").cloned().unwrap_or_default();
    for key in ["token", "url"] {
        assert!(
            peeked.get(key).is_none_or(|v| v.is_null() || v == ""),
            "{key} read across namespaces: {peeked}"
        );
    }

    // `b` cannot use `a`'s PromotionTask.
    let tasked = finished("b-uses-a-task").await?;
    assert_eq!(
        tasked.phase(),
        PromotionPhase::Errored,
        "{}",
        message(&tasked)
    );
    assert!(
        message(&tasked).contains(r#"PromotionTask "deploy" not found"#),
        "{}",
        message(&tasked)
    );

    // `b` has no credentials for `a`'s repository.
    let clones = finished("b-clones").await?;
    assert_ne!(
        clones.phase(),
        PromotionPhase::Succeeded,
        "{}",
        message(&clones)
    );
    assert!(
        message(&clones).contains(
            "authentication failed: no Secret labelled barge.dev/cred-type=git in the Promotion's namespace"
        ),
        "{}",
        message(&clones)
    );

    // `b`'s Stage `dev` may not change the Application authorized for `a`'s.
    let updates = finished("b-updates-a-app").await?;
    assert_ne!(
        updates.phase(),
        PromotionPhase::Succeeded,
        "{}",
        message(&updates)
    );
    assert!(
        message(&updates).contains(&format!(r#"is not authorized for Stage "{b}:dev""#)),
        "{}",
        message(&updates)
    );
    assert!(
        h.journal.syncs_for(&h.argocd_ns, &app).is_empty(),
        "synced for b"
    );

    // The planted password is in no status, Event or log line.
    let mut seen = Vec::new();
    for ns in [&a, &b] {
        let promotions = Api::<Promotion>::namespaced(h.client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        let stages = Api::<Stage>::namespaced(h.client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        let events = Api::<Event>::namespaced(h.client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        seen.push(serde_json::to_string(&promotions.items)?);
        seen.push(serde_json::to_string(&stages.items)?);
        seen.push(serde_json::to_string(&events.items)?);
    }
    let logs = logs.text();
    assert!(
        logs.contains("b-clones"),
        "the Promotions' log lines were not captured"
    );
    seen.push(logs);
    for (i, text) in seen.iter().enumerate() {
        assert!(
            !text.contains(PLANTED_PASSWORD),
            "the git password appears in record {i}"
        );
        assert!(
            !text.contains(PLANTED_TOKEN),
            "the generic Secret's value appears in record {i}"
        );
    }
    h.shutdown().await;
    Ok(())
}
