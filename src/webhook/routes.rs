//! Keeps the routing table in step with the ProjectConfigs and their
//! Secrets, and publishes each receiver's path in the ProjectConfig's
//! status. Runs on every replica: each computes the same paths, so the
//! status writes agree (the same field manager writing the same values).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{Receiver, Receivers};
use crate::api::project_config::GenericWebhookTargetKind;
use crate::api::{ProjectConfig, ProjectConfigStatus, WebhookReceiverDetails};

/// The status write's field manager.
const FIELD_MANAGER: &str = "barge-webhook-receivers";

/// How often Secrets are read again: a rotated secret takes effect (and
/// its new URL is published) within this.
pub const RESYNC: Duration = Duration::from_secs(60);

/// How soon a ProjectConfig whose Secret was missing is looked at again
/// (the Secret is often applied just after it).
pub const RETRY_MISSING: Duration = Duration::from_secs(3);

/// What one ProjectConfig's receivers come to: the routes to serve and the
/// status to publish.
#[derive(Debug, PartialEq)]
pub struct Resolved {
    pub receivers: Vec<Receiver>,
    pub status: ProjectConfigStatus,
}

/// A Secret's data by key; `None`: the Secret does not exist.
pub type SecretData = Option<BTreeMap<String, Vec<u8>>>;

/// The receivers of `config`, given the Secrets its receivers reference,
/// by name. Pure.
pub fn resolve(
    config: &ProjectConfig,
    secrets: &BTreeMap<String, SecretData>,
    base_url: Option<&str>,
) -> Resolved {
    let namespace = config.namespace().unwrap_or_default();
    let mut receivers = Vec::new();
    let mut details = Vec::new();
    let mut problems = Vec::new();
    for (i, spec) in config.spec.webhook_receivers.iter().enumerate() {
        if config.spec.webhook_receivers[..i]
            .iter()
            .any(|other| other.name == spec.name)
        {
            problems.push(format!(
                "spec.webhookReceivers[{i}]: the name {:?} is taken by an earlier receiver",
                spec.name
            ));
            continue;
        }
        let Some((sender, secret_ref)) = spec.sender() else {
            problems.push(format!(
                "spec.webhookReceivers[{i}] ({}): no sender (github, gitlab, gitea, bitbucket, dockerhub, harbor, quay, artifactory, azure, distribution or generic)",
                spec.name
            ));
            continue;
        };
        let keys = sender.secret_keys();
        let secret = secrets
            .get(&secret_ref.name)
            .and_then(Option::as_ref)
            .and_then(|data| keys.iter().find_map(|k| data.get(*k)))
            .filter(|v| !v.is_empty());
        let Some(secret) = secret else {
            problems.push(format!(
                "spec.webhookReceivers[{i}] ({}): Secret {:?} has no `{}` key (or does not exist)",
                spec.name, secret_ref.name, keys[0]
            ));
            continue;
        };
        let mut receiver = Receiver::new(&namespace, &spec.name, sender, secret);
        if let Some(generic) = &spec.generic {
            for (a, action) in generic.actions.iter().enumerate() {
                for (c, criteria) in action.target_selection_criteria.iter().enumerate() {
                    if criteria.kind != GenericWebhookTargetKind::Warehouse {
                        problems.push(format!(
                            "spec.webhookReceivers[{i}] ({}): generic.actions[{a}].targetSelectionCriteria[{c}]: \
                             kind {:?} is not supported by Barge, only Warehouse",
                            spec.name, criteria.kind
                        ));
                    }
                }
            }
            receiver = receiver.with_generic(generic.clone());
        }
        if let Some(artifactory) = &spec.artifactory {
            receiver = receiver.with_virtual_repo(&artifactory.virtual_repo_name);
        }
        let path = receiver.path();
        details.push(WebhookReceiverDetails {
            name: spec.name.clone(),
            url: base_url
                .map(|b| format!("{}{path}", b.trim_end_matches('/')))
                .unwrap_or_default(),
            path,
        });
        receivers.push(receiver);
    }
    let ready = problems.is_empty();
    let message = if ready {
        format!("{} webhook receiver(s) served", receivers.len())
    } else {
        problems.join("; ")
    };
    let condition = Condition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: if ready { "Served" } else { "InvalidReceiver" }.into(),
        message,
        observed_generation: config.metadata.generation,
        last_transition_time: Time(jiff::Timestamp::now()),
    };
    Resolved {
        receivers,
        status: ProjectConfigStatus {
            webhook_receivers: details,
            conditions: vec![condition],
        },
    }
}

/// Watches ProjectConfigs (in `namespace`, or all) until the process ends,
/// keeping `receivers` and their statuses current.
pub async fn sync(
    client: Client,
    namespace: Option<String>,
    receivers: Receivers,
    base_url: Option<String>,
) {
    let api: Api<ProjectConfig> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut known: BTreeMap<String, ProjectConfig> = BTreeMap::new();
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Those whose receivers are not all served (a Secret missing).
    let mut incomplete: std::collections::BTreeSet<String> = Default::default();
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(RETRY_MISSING);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Apply(config) | Event::InitApply(config))) => {
                    let key = key_of(&config);
                    if apply(&client, &receivers, base_url.as_deref(), &config).await {
                        incomplete.remove(&key);
                    } else {
                        incomplete.insert(key.clone());
                    }
                    known.insert(key, config);
                }
                Some(Ok(Event::Delete(config))) => {
                    let key = key_of(&config);
                    known.remove(&key);
                    incomplete.remove(&key);
                    receivers.replace(&config.namespace().unwrap_or_default(), Vec::new());
                }
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "watching ProjectConfigs"),
                None => return,
            },
            _ = resync.tick() => {
                for (key, config) in &known {
                    if apply(&client, &receivers, base_url.as_deref(), config).await {
                        incomplete.remove(key);
                    } else {
                        incomplete.insert(key.clone());
                    }
                }
            }
            _ = retry.tick(), if !incomplete.is_empty() => {
                for key in incomplete.clone() {
                    if let Some(config) = known.get(&key)
                        && apply(&client, &receivers, base_url.as_deref(), config).await
                    {
                        incomplete.remove(&key);
                    }
                }
            }
        }
    }
}

fn key_of(config: &ProjectConfig) -> String {
    format!(
        "{}/{}",
        config.namespace().unwrap_or_default(),
        config.name_any()
    )
}

/// Reads the Secrets `config` references, serves its receivers and
/// publishes their paths; whether every receiver is served.
async fn apply(
    client: &Client,
    receivers: &Receivers,
    base_url: Option<&str>,
    config: &ProjectConfig,
) -> bool {
    let namespace = config.namespace().unwrap_or_default();
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut secrets = BTreeMap::new();
    for spec in &config.spec.webhook_receivers {
        let Some((_, secret_ref)) = spec.sender() else {
            continue;
        };
        if secrets.contains_key(&secret_ref.name) {
            continue;
        }
        let value = match secrets_api.get_opt(&secret_ref.name).await {
            Ok(secret) => secret.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            }),
            Err(e) => {
                // Keep what is served: a failed read is not a removal.
                tracing::warn!(%namespace, secret = %secret_ref.name, error = %e, "reading a webhook receiver's Secret");
                return false;
            }
        };
        secrets.insert(secret_ref.name.clone(), value);
    }
    let resolved = resolve(config, &secrets, base_url);
    let complete = resolved
        .status
        .conditions
        .first()
        .is_some_and(|c| c.status == "True");
    receivers.replace(&namespace, resolved.receivers);
    let unchanged = config.status.as_ref().is_some_and(|s| {
        s.webhook_receivers == resolved.status.webhook_receivers
            && s.conditions
                .first()
                .map(|c| (&c.status, &c.message, c.observed_generation))
                == resolved
                    .status
                    .conditions
                    .first()
                    .map(|c| (&c.status, &c.message, c.observed_generation))
    });
    if unchanged {
        return complete;
    }
    let api: Api<ProjectConfig> = Api::namespaced(client.clone(), &namespace);
    let patch = json!({
        "apiVersion": "barge.dev/v1alpha1",
        "kind": "ProjectConfig",
        "status": resolved.status,
    });
    if let Err(e) = api
        .patch_status(
            &config.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::warn!(%namespace, name = %config.name_any(), error = %e, "writing the ProjectConfig's status");
    }
    complete
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::project_config::{SecretReceiverConfig, SecretReference};
    use crate::api::{ProjectConfigSpec, WebhookReceiverConfig};

    fn config(receivers: Vec<WebhookReceiverConfig>) -> ProjectConfig {
        let mut config = ProjectConfig::new(
            "team-a",
            ProjectConfigSpec {
                webhook_receivers: receivers,
                ..Default::default()
            },
        );
        config.metadata.namespace = Some("team-a".into());
        config
    }

    fn secret_data(name: &str, key: &str, value: &[u8]) -> BTreeMap<String, SecretData> {
        BTreeMap::from([(
            name.to_string(),
            Some(BTreeMap::from([(key.to_string(), value.to_vec())])),
        )])
    }

    fn gitea(name: &str, secret: &str) -> WebhookReceiverConfig {
        WebhookReceiverConfig {
            name: name.into(),
            gitea: Some(SecretReceiverConfig {
                secret_ref: SecretReference {
                    name: secret.into(),
                },
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_receiver_is_served_at_a_path_its_secret_and_name_determine() {
        let secrets = secret_data("wh", "secret", b"s3cret");
        let resolved = resolve(
            &config(vec![gitea("gitea", "wh")]),
            &secrets,
            Some("https://hooks.example.com/"),
        );
        let path = &resolved.status.webhook_receivers[0].path;
        assert!(
            path.starts_with("/gitea/") && path.len() == "/gitea/".len() + 64,
            "{path}"
        );
        assert_eq!(
            resolved.status.webhook_receivers[0].url,
            format!("https://hooks.example.com{path}")
        );
        assert_eq!(resolved.status.conditions[0].status, "True");
        // Another secret, another path.
        let rotated = secret_data("wh", "secret", b"rotated");
        let again = resolve(&config(vec![gitea("gitea", "wh")]), &rotated, None);
        assert_ne!(&again.status.webhook_receivers[0].path, path);
    }

    #[test]
    fn the_path_is_the_one_kargo_derives_for_the_same_receiver() {
        // sha256("team-a" + "gitea" + "s3cret"), as Kargo's buildWebhookPath.
        let receiver = Receiver::new("team-a", "gitea", super::super::Sender::Gitea, b"s3cret");
        let digest = ring::digest::digest(&ring::digest::SHA256, b"team-agiteas3cret");
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(receiver.path(), format!("/gitea/{hex}"));
    }

    #[test]
    fn a_missing_secret_or_a_duplicate_name_is_named_in_the_condition() {
        let secrets = BTreeMap::from([("wh".to_string(), None)]);
        let resolved = resolve(
            &config(vec![gitea("a", "wh"), gitea("a", "wh")]),
            &secrets,
            None,
        );
        assert!(resolved.receivers.is_empty());
        let condition = &resolved.status.conditions[0];
        assert_eq!(condition.status, "False");
        assert!(
            condition
                .message
                .contains("spec.webhookReceivers[0] (a): Secret \"wh\""),
            "{}",
            condition.message
        );
        assert!(
            condition
                .message
                .contains("spec.webhookReceivers[1]: the name \"a\" is taken"),
            "{}",
            condition.message
        );
    }

    #[test]
    fn each_sender_reads_kargos_secret_key_and_a_promotion_target_is_named() {
        let receivers: Vec<WebhookReceiverConfig> = serde_json::from_value(serde_json::json!([
            {"name": "harbor", "harbor": {"secretRef": {"name": "h"}}},
            {"name": "gitlab", "gitlab": {"secretRef": {"name": "g"}}},
            {"name": "ci", "generic": {"secretRef": {"name": "c"}, "actions": [{
                "action": "Refresh",
                "targetSelectionCriteria": [{"kind": "Promotion", "name": "p"}]}]}}
        ]))
        .unwrap();
        let mut secrets = secret_data("h", "auth-header", b"Bearer t");
        secrets.extend(secret_data("g", "secret-token", b"tok"));
        secrets.extend(secret_data("c", "secret", b"path"));
        let resolved = resolve(&config(receivers), &secrets, None);
        assert_eq!(resolved.receivers.len(), 3);
        assert!(resolved.receivers[2].generic.is_some());
        let condition = &resolved.status.conditions[0];
        assert_eq!(condition.status, "False");
        assert!(
            condition.message.contains(
                "spec.webhookReceivers[2] (ci): generic.actions[0].targetSelectionCriteria[0]: kind Promotion"
            ),
            "{}",
            condition.message
        );
        // Harbor's secret under the key the other senders use: not served.
        let receivers: Vec<WebhookReceiverConfig> = serde_json::from_value(serde_json::json!([
            {"name": "harbor", "harbor": {"secretRef": {"name": "h"}}}
        ]))
        .unwrap();
        let resolved = resolve(&config(receivers), &secret_data("h", "secret", b"x"), None);
        assert!(resolved.receivers.is_empty());
        assert!(
            resolved.status.conditions[0]
                .message
                .contains("has no `auth-header` key"),
            "{}",
            resolved.status.conditions[0].message
        );
    }
}
