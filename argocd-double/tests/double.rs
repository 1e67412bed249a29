//! The double against a real kube-apiserver: one behaviour per test, each in
//! its own namespace with its own double. Waits are on watch events (a
//! `Recorder` or the journal's notifications) with a generous timeout.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use barge_argocd_double::fixtures::{
    ApplicationBuilder, SyncRequest, request_refresh, request_sync, set_annotation,
    terminate_operation, wait_for, write_foreign_operation,
};
use barge_argocd_double::knobs::{
    HEALTH_AFTER_SYNC, INITIAL_HEALTH, OUTCOME, POST_SYNC_REFRESH, PROGRESSING_FOR, RESOLVE,
    SYNC_DELAY, UNRESOLVABLE, WINDOW_BLOCKED,
};
use barge_argocd_double::{CRD_NAME, PROMOTION_INFO, WriteHook, WriteKind};
use futures::FutureExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;

/// An Application deployed at v1 (resolving to aaa111), whose next
/// promotion goes to v2 (bbb222).
fn guestbook(name: &str) -> ApplicationBuilder {
    ApplicationBuilder::new(name)
        .target_revision("v1")
        .knob(RESOLVE, "v1=aaa111,v2=bbb222")
        .deployed(&["aaa111"])
}

fn promote(ns: &str, promotion: &str) -> SyncRequest {
    SyncRequest::for_promotion(ns, promotion)
        .target_revision("v2")
        .username("alice")
}

/// The post-sync refresh has happened: Succeeded, refreshed after it,
/// Synced, and no refresh request left. (`reconciledAt >= finishedAt` alone
/// can hold right after the final write: a refresh during the sync may
/// share its second.)
fn settled(v: &Value) -> bool {
    phase(v) == Some("Succeeded")
        && !has_operation(v)
        && reconciled_after_finish(v)
        && s(v, "/status/sync/status") == Some("Synced")
        && s(v, "/metadata/annotations/argocd.argoproj.io~1refresh").is_none()
}

/// Recorded versions that include the client's request and end with one
/// satisfying `pred` (the first version, from before the request, may
/// already look done).
fn after_request(versions: &[Value], pred: impl Fn(&Value) -> bool) -> bool {
    first(versions, 0, has_operation).is_some_and(|i| i + 1 < versions.len())
        && versions.last().is_some_and(pred)
}

fn settled_after_request(versions: &[Value]) -> bool {
    after_request(versions, settled)
}

// === The CRD ===

#[tokio::test]
async fn crd_has_argo_names_printer_columns_and_no_status_subresource() -> TestResult {
    let env = env().await?;
    let crd = Api::<CustomResourceDefinition>::all(env.client())
        .get(CRD_NAME)
        .await?;
    let spec = &crd.spec;
    assert_eq!(spec.group, "argoproj.io");
    assert_eq!(spec.scope, "Namespaced");
    assert_eq!(spec.names.kind, "Application");
    assert_eq!(spec.names.plural, "applications");
    assert_eq!(
        spec.names.short_names.as_deref(),
        Some(&["app".to_string(), "apps".to_string()][..])
    );
    assert_eq!(spec.versions.len(), 1);
    let version = &spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.clone().unwrap_or_default();
    assert!(subresources.status.is_none() && subresources.scale.is_none());
    let columns: Vec<(String, String, i32)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone(), c.priority.unwrap_or(0)))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Sync Status".into(), ".status.sync.status".into(), 0),
            ("Health Status".into(), ".status.health.status".into(), 0),
            ("Revision".into(), ".status.sync.revision".into(), 10),
            ("Project".into(), ".spec.project".into(), 10),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn crd_short_name_lists_sync_and_health_columns_with_kubectl() -> TestResult {
    let env = env().await?;
    let ns = env.namespace().await?;
    ApplicationBuilder::new("shown")
        .deployed(&["main"])
        .create(env.client(), &ns)
        .await?;
    let out = env.kubectl(&["get", "app", "-n", &ns, "-o", "wide"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = text.lines().next().unwrap_or_default();
    for column in ["SYNC STATUS", "HEALTH STATUS", "REVISION", "PROJECT"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        text.contains("Synced") && text.contains("Healthy"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn crd_prunes_misspelled_status_fields() -> TestResult {
    let env = env().await?;
    let ns = env.namespace().await?;
    let created = ApplicationBuilder::new("typos")
        .status(json!({
            "reconcileAt": "2026-01-01T00:00:00Z",
            "sync": {"status": "Synced", "revison": "abc"},
            "health": {"status": "Healthy", "lastTransitonTime": "2026-01-01T00:00:00Z"},
        }))
        .create(env.client(), &ns)
        .await?;
    let status = &created.data["status"];
    assert!(status.get("reconcileAt").is_none(), "{status}");
    assert!(status["sync"].get("revison").is_none(), "{status}");
    assert!(
        status["health"].get("lastTransitonTime").is_none(),
        "{status}"
    );
    assert_eq!(status["sync"]["status"], "Synced");
    Ok(())
}

#[tokio::test]
async fn crd_deletes_operation_written_as_null() -> TestResult {
    let env = env().await?;
    let ns = env.namespace().await?;
    let api = barge_argocd_double::fixtures::applications(env.client(), &ns);
    ApplicationBuilder::new("nulled")
        .operation(json!({"sync": {}, "initiatedBy": {"username": "x"}}))
        .create(env.client(), &ns)
        .await?;
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/operation", "value": null}]))?;
    let after = api
        .patch("nulled", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?;
    assert!(after.data.get("operation").is_none(), "{:?}", after.data);
    Ok(())
}

#[tokio::test]
async fn crd_rejects_operation_state_without_required_keys() -> TestResult {
    let env = env().await?;
    let ns = env.namespace().await?;
    let api = barge_argocd_double::fixtures::applications(env.client(), &ns);
    let app = ApplicationBuilder::new("invalid")
        .namespace(&ns)
        .status(json!({"operationState": {"phase": "Running"}}))
        .build();
    match api.create(&PostParams::default(), &app).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.is_invalid(), "{status:?}");
            assert!(status.message.contains("startedAt"), "{}", status.message);
            assert!(status.message.contains("operation"), "{}", status.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn crd_rejects_reconciled_at_that_is_not_a_date_time() -> TestResult {
    let env = env().await?;
    let ns = env.namespace().await?;
    let api = barge_argocd_double::fixtures::applications(env.client(), &ns);
    let app = ApplicationBuilder::new("baddate")
        .namespace(&ns)
        .status(json!({"reconciledAt": "yesterday"}))
        .build();
    match api.create(&PostParams::default(), &app).await {
        Err(kube::Error::Api(status)) => assert!(status.is_invalid(), "{status:?}"),
        other => panic!("expected 422, got {other:?}"),
    }
    Ok(())
}

// === The canonical write sequence (as Argo CD writes it) ===

#[tokio::test]
async fn client_sync_follows_the_canonical_write_sequence() -> TestResult {
    // Argo CD refreshes concurrently with the sync; make the interleaving
    // of the table deterministic: the sync's history write waits until the
    // refresh has written its status (it is about to remove the annotation).
    let (refreshed, refreshed_rx) = tokio::sync::watch::channel(false);
    let hook = WriteHook::new(move |_, kind, _| {
        if kind == WriteKind::RefreshAnnotations {
            refreshed.send_replace(true);
        }
        let mut rx = refreshed_rx.clone();
        async move {
            if kind == WriteKind::History {
                let _ = rx.wait_for(|done| *done).await;
            }
        }
        .boxed()
    });
    let t = setup(|c| c.with_write_hook(hook)).await?;
    guestbook("gb").create(t.client.clone(), &t.ns).await?;
    let mut rec = t.record("gb").await?;
    request_sync(&t.api, "gb", &promote(&t.ns, "p1")).await?;
    let versions = rec.wait_for(WAIT, settled_after_request).await?;
    let why = describe(&versions);

    // 0: the client's write.
    let client = first(&versions, 0, |v| has_operation(v) && phase(v).is_none())
        .ok_or_else(|| format!("no client write:\n{why}"))?;
    // 1: operationState Running, with nothing but operation, phase and startedAt.
    let running = first(&versions, client, |v| phase(v) == Some("Running"))
        .ok_or_else(|| format!("no Running:\n{why}"))?;
    let state = &versions[running]["status"]["operationState"];
    let mut keys: Vec<&String> = state
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(keys, ["operation", "phase", "startedAt"], "{state}");
    // 2: the concurrent refresh: OutOfSync at the resolved revision, new
    // comparedTo, annotation still present; removed in a later write.
    let refreshed = first(&versions, client, |v| {
        s(v, "/status/sync/status") == Some("OutOfSync")
            && s(v, "/status/sync/revision") == Some("bbb222")
    })
    .ok_or_else(|| format!("no OutOfSync refresh:\n{why}"))?;
    let r = &versions[refreshed];
    assert_eq!(
        s(r, "/status/sync/comparedTo/source/targetRevision"),
        Some("v2")
    );
    assert_eq!(
        s(r, "/metadata/annotations/argocd.argoproj.io~1refresh"),
        Some("hard")
    );
    first(&versions, refreshed, |v| {
        s(v, "/metadata/annotations/argocd.argoproj.io~1refresh").is_none()
    })
    .ok_or_else(|| format!("refresh annotation never removed:\n{why}"))?;
    // 3: syncResult with the resolved revision, tasks running.
    let sync_result = first(&versions, running, |v| {
        s(v, "/status/operationState/syncResult/revision") == Some("bbb222")
    })
    .ok_or_else(|| format!("no syncResult:\n{why}"))?;
    let v = &versions[sync_result];
    assert_eq!(phase(v), Some("Running"));
    assert_eq!(
        s(v, "/status/operationState/message"),
        Some("one or more tasks are running")
    );
    assert_eq!(
        s(v, "/status/operationState/syncResult/source/targetRevision"),
        Some("v2")
    );
    // 4: history appended while still Running.
    let history = first(&versions, sync_result, |v| {
        v.pointer("/status/history")
            .and_then(Value::as_array)
            .map(Vec::len)
            == Some(2)
    })
    .ok_or_else(|| format!("no history append:\n{why}"))?;
    assert_eq!(phase(&versions[history]), Some("Running"), "{why}");
    // 5: the final write.
    let done = first(&versions, history, |v| phase(v) == Some("Succeeded"))
        .ok_or_else(|| format!("no Succeeded:\n{why}"))?;
    assert!(!has_operation(&versions[done]), "{why}");
    // 6: the post-sync refresh.
    let post = first(&versions, done, |v| {
        s(v, "/status/sync/status") == Some("Synced") && reconciled_after_finish(v)
    })
    .ok_or_else(|| format!("no post-sync refresh:\n{why}"))?;
    assert!(running < sync_result && sync_result < history && history < done && done < post);
    assert_eq!(s(&versions[post], "/status/sync/revision"), Some("bbb222"));
    assert_eq!(s(&versions[post], "/status/health/status"), Some("Healthy"));

    // startedAt <= finishedAt <= reconciledAt.
    let last = &versions[post];
    let started = s(last, "/status/operationState/startedAt").unwrap_or_default();
    let finished = s(last, "/status/operationState/finishedAt").unwrap_or_default();
    let reconciled = s(last, "/status/reconciledAt").unwrap_or_default();
    for ts in [started, finished, reconciled] {
        assert_second_precision(ts);
    }
    assert!(
        started <= finished && finished <= reconciled,
        "{started} {finished} {reconciled}"
    );
    Ok(())
}

#[tokio::test]
async fn operation_state_copies_the_operation_with_info_and_initiated_by() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("copy").create(t.client.clone(), &t.ns).await?;
    let mut rec = t.record("copy").await?;
    let written = request_sync(&t.api, "copy", &promote(&t.ns, "p-copy")).await?;
    let requested = written.data["operation"].clone();
    let versions = rec.wait_for(WAIT, settled_after_request).await?;
    let running =
        first(&versions, 0, |v| phase(v) == Some("Running")).ok_or_else(|| describe(&versions))?;
    let copy = &versions[running]["status"]["operationState"]["operation"];
    assert_eq!(copy, &requested);
    assert_eq!(
        copy["initiatedBy"],
        json!({"username": "alice", "automated": false})
    );
    assert!(
        copy["info"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["name"] == PROMOTION_INFO && i["value"] == "p-copy"),
        "{copy}"
    );
    Ok(())
}

#[tokio::test]
async fn history_entry_is_written_before_the_final_operation_state_write() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("hist").create(t.client.clone(), &t.ns).await?;
    let mut rec = t.record("hist").await?;
    request_sync(&t.api, "hist", &promote(&t.ns, "p-hist")).await?;
    let versions = rec.wait_for(WAIT, settled_after_request).await?;
    let appended = first(&versions, 0, |v| v.pointer("/status/history/1").is_some())
        .ok_or_else(|| describe(&versions))?;
    let v = &versions[appended];
    assert_eq!(phase(v), Some("Running"), "{}", describe(&versions));
    assert!(has_operation(v));
    let entry = &v["status"]["history"][1];
    assert_eq!(entry["id"], 1);
    assert_eq!(entry["revision"], "bbb222");
    assert_eq!(entry["source"]["targetRevision"], "v2");
    assert_eq!(
        entry["deployStartedAt"],
        v["status"]["operationState"]["startedAt"]
    );
    assert_eq!(entry["initiatedBy"]["username"], "alice");
    let last = versions.last().cloned().unwrap_or_default();
    assert_eq!(
        entry["deployedAt"],
        last["status"]["operationState"]["finishedAt"]
    );
    Ok(())
}

#[tokio::test]
async fn final_write_completes_the_state_and_removes_the_operation() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("final").create(t.client.clone(), &t.ns).await?;
    let mut rec = t.record("final").await?;
    request_sync(&t.api, "final", &promote(&t.ns, "p-final")).await?;
    let versions = rec.wait_for(WAIT, settled_after_request).await?;
    // Index 0 is the deployed fixture, Succeeded from an earlier sync.
    let client = first(&versions, 0, has_operation).ok_or_else(|| describe(&versions))?;
    let done = first(&versions, client, |v| {
        phase(v) == Some("Succeeded") && has_operation(v)
    });
    assert_eq!(done, None, "Succeeded written with .operation still set");
    let done = first(&versions, client, |v| phase(v) == Some("Succeeded"))
        .ok_or_else(|| describe(&versions))?;
    let state = &versions[done]["status"]["operationState"];
    assert_eq!(state["message"], "successfully synced (all tasks run)");
    assert_second_precision(state["finishedAt"].as_str().unwrap_or_default());
    let resource = &state["syncResult"]["resources"][0];
    assert_eq!(resource["kind"], "Deployment");
    assert_eq!(resource["status"], "Synced");
    assert_eq!(resource["syncPhase"], "Sync");
    assert_eq!(state["syncResult"]["revision"], "bbb222");
    Ok(())
}

#[tokio::test]
async fn post_sync_refresh_reports_synced_at_the_resolved_revision() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("post").create(t.client.clone(), &t.ns).await?;
    request_sync(&t.api, "post", &promote(&t.ns, "p-post")).await?;
    let app = wait_for(&t.api, "post", WAIT, settled).await?;
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    assert_eq!(s(&app, "/status/sync/revision"), Some("bbb222"));
    assert_eq!(
        s(&app, "/status/sync/comparedTo/source/targetRevision"),
        Some("v2")
    );
    assert_eq!(s(&app, "/status/health/status"), Some("Healthy"));
    assert!(s(&app, "/metadata/annotations/argocd.argoproj.io~1refresh").is_none());
    Ok(())
}

#[tokio::test]
async fn refresh_annotation_with_timestamp_is_removed_after_the_status_write() -> TestResult {
    let t = setup(|c| c).await?;
    ApplicationBuilder::new("stamp")
        .deployed(&["main"])
        .annotation("argocd.argoproj.io/refresh", "normal")
        .annotation(
            "argocd.argoproj.io/refresh-timestamp",
            "2026-01-01T00:00:00Z",
        )
        .create(t.client.clone(), &t.ns)
        .await?;
    let app = wait_for(&t.api, "stamp", WAIT, |v| {
        v.pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_none_or(|a| {
                !a.keys()
                    .any(|k| k.starts_with("argocd.argoproj.io/refresh"))
            })
    })
    .await?;
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    Ok(())
}

// === Failure cases (each way Argo CD ends an operation) ===

#[tokio::test]
async fn fail_outcome_ends_failed_with_argo_message_and_no_history() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("fail")
        .knob(OUTCOME, "fail:admission webhook denied the request")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "fail", &promote(&t.ns, "p-fail")).await?;
    let app = wait_for(&t.api, "fail", WAIT, |v| {
        phase(v) == Some("Failed") && reconciled_after_finish(v)
    })
    .await?;
    assert_eq!(
        s(&app, "/status/operationState/message"),
        Some("one or more objects failed to apply, reason: admission webhook denied the request")
    );
    assert!(!has_operation(&app));
    assert_eq!(
        s(&app, "/status/operationState/syncResult/revision"),
        Some("bbb222")
    );
    assert_eq!(
        s(&app, "/status/operationState/syncResult/resources/0/status"),
        Some("SyncFailed")
    );
    assert_eq!(app["status"]["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(s(&app, "/status/sync/status"), Some("OutOfSync"));
    Ok(())
}

#[tokio::test]
async fn error_outcome_ends_error_with_the_message() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("err")
        .knob(OUTCOME, "error:rpc error: code = Unavailable")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "err", &promote(&t.ns, "p-err")).await?;
    let app = wait_for(&t.api, "err", WAIT, |v| phase(v) == Some("Error")).await?;
    assert_eq!(
        s(&app, "/status/operationState/message"),
        Some("rpc error: code = Unavailable")
    );
    assert!(!has_operation(&app));
    assert!(s(&app, "/status/operationState/finishedAt").is_some());
    Ok(())
}

#[tokio::test]
async fn unresolvable_revision_errors_with_a_comparison_error_condition() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("unres")
        .knob(UNRESOLVABLE, "v2")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "unres", &promote(&t.ns, "p-unres")).await?;
    let app = wait_for(&t.api, "unres", WAIT, |v| {
        phase(v) == Some("Error")
            && v.pointer("/status/conditions/0/type") == Some(&json!("ComparisonError"))
    })
    .await?;
    let message = s(&app, "/status/operationState/message").unwrap_or_default();
    assert!(
        message.starts_with("ComparisonError: Failed to load target state: ")
            && message.contains("'v2'"),
        "{message}"
    );
    assert!(app.pointer("/status/operationState/syncResult").is_none());
    assert_eq!(s(&app, "/status/sync/status"), Some("Unknown"));
    let condition = s(&app, "/status/conditions/0/message").unwrap_or_default();
    assert!(
        condition.starts_with("Failed to load target state: "),
        "{condition}"
    );
    Ok(())
}

#[tokio::test]
async fn failed_attempt_with_retries_left_waits_running_with_finished_at() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("retry")
        .knob(OUTCOME, "fail:quota exceeded")
        .retry(1, "1s")
        .create(t.client.clone(), &t.ns)
        .await?;
    let mut rec = t.record("retry").await?;
    request_sync(&t.api, "retry", &promote(&t.ns, "p-retry")).await?;
    let versions = rec
        .wait_for(WAIT, |v| {
            v.last().is_some_and(|v| phase(v) == Some("Failed"))
        })
        .await?;
    let why = describe(&versions);
    let waiting = first(&versions, 0, |v| {
        phase(v) == Some("Running") && s(v, "/status/operationState/finishedAt").is_some()
    })
    .ok_or_else(|| format!("no retry wait:\n{why}"))?;
    let w = &versions[waiting];
    assert!(has_operation(w));
    assert_eq!(w["status"]["operationState"]["retryCount"], 1);
    let message = s(w, "/status/operationState/message").unwrap_or_default();
    assert!(
        message.starts_with(
            "one or more objects failed to apply, reason: quota exceeded. Retrying attempt #1 at "
        ) && (message.ends_with("AM.") || message.ends_with("PM.")),
        "{message}"
    );
    let retrying = first(&versions, waiting, |v| {
        s(v, "/status/operationState/message") == Some("Retrying operation. Attempt #1")
    })
    .ok_or_else(|| format!("no retry start:\n{why}"))?;
    let r = &versions[retrying];
    assert!(r.pointer("/status/operationState/finishedAt").is_none());
    assert!(r.pointer("/status/operationState/syncResult").is_none());
    let last = versions.last().cloned().unwrap_or_default();
    assert_eq!(
        s(&last, "/status/operationState/message"),
        Some("one or more objects failed to apply, reason: quota exceeded (retried 1 times).")
    );
    assert!(!has_operation(&last));
    let syncs = t.journal().syncs_for_promotion("p-retry");
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0].attempts, 2);
    Ok(())
}

#[tokio::test]
async fn retry_after_a_failed_attempt_can_succeed() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("flaky")
        .knob(OUTCOME, "fail:transient; succeed")
        .retry(3, "1s")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "flaky", &promote(&t.ns, "p-flaky")).await?;
    let app = wait_for(&t.api, "flaky", WAIT, settled).await?;
    assert_eq!(app["status"]["operationState"]["retryCount"], 1);
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    assert_eq!(app["status"]["history"].as_array().map(Vec::len), Some(2));
    Ok(())
}

#[tokio::test]
async fn window_blocked_sync_stays_running_until_the_window_opens() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("window")
        .knob(WINDOW_BLOCKED, "true")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "window", &promote(&t.ns, "p-window")).await?;
    let blocked = wait_for(&t.api, "window", WAIT, |v| {
        s(v, "/status/operationState/message") == Some("Sync operation blocked by sync window")
    })
    .await?;
    assert_eq!(phase(&blocked), Some("Running"));
    assert!(
        blocked
            .pointer("/status/operationState/syncResult")
            .is_none()
    );
    assert!(has_operation(&blocked));
    set_annotation(&t.api, "window", WINDOW_BLOCKED, None).await?;
    wait_for(&t.api, "window", WAIT, settled).await?;
    Ok(())
}

#[tokio::test]
async fn foreign_operation_runs_without_barge_info() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("foreign")
        .knob(OUTCOME, "hang")
        .create(t.client.clone(), &t.ns)
        .await?;
    write_foreign_operation(&t.api, "foreign", "admin").await?;
    let app = wait_for(&t.api, "foreign", WAIT, |v| {
        s(v, "/status/operationState/message") == Some("one or more tasks are running")
    })
    .await?;
    assert_eq!(phase(&app), Some("Running"));
    assert!(
        app.pointer("/status/operationState/operation/info")
            .is_none()
    );
    assert_eq!(
        s(
            &app,
            "/status/operationState/operation/initiatedBy/username"
        ),
        Some("admin")
    );
    // The Argo CD API refuses a second operation while one is set.
    assert!(
        write_foreign_operation(&t.api, "foreign", "bob")
            .await
            .is_err()
    );
    let syncs = t.journal().syncs_for(&t.ns, "foreign");
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0].promotion(), None);
    assert_eq!(syncs[0].initiated_by.as_deref(), Some("admin"));
    Ok(())
}

#[tokio::test]
async fn operation_written_over_a_running_one_is_dropped_when_it_completes() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("over")
        .knob(WINDOW_BLOCKED, "true")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "over", &promote(&t.ns, "p-first")).await?;
    wait_for(&t.api, "over", WAIT, |v| {
        s(v, "/status/operationState/message") == Some("Sync operation blocked by sync window")
    })
    .await?;
    // A second request that does not clear operationState (as the Argo CD
    // API would refuse it, and Kargo only checks its own operation).
    let second = SyncRequest {
        clear_operation_state: false,
        ..SyncRequest::for_promotion(&t.ns, "p-second")
    };
    request_sync(&t.api, "over", &second).await?;
    set_annotation(&t.api, "over", WINDOW_BLOCKED, None).await?;
    let app = wait_for(&t.api, "over", WAIT, settled).await?;
    let info = &app["status"]["operationState"]["operation"]["info"];
    assert!(
        info.as_array()
            .into_iter()
            .flatten()
            .any(|i| i["value"] == "p-first"),
        "{info}"
    );
    let journal = t.journal();
    assert_eq!(journal.syncs_for_promotion("p-first").len(), 1);
    assert_eq!(journal.syncs_for_promotion("p-second").len(), 0);
    assert_eq!(journal.syncs_for(&t.ns, "over").len(), 1);
    Ok(())
}

#[tokio::test]
async fn skipped_post_sync_refresh_leaves_health_stale_until_a_refresh_is_requested() -> TestResult
{
    let t = setup(|c| c).await?;
    guestbook("stale")
        .knob(POST_SYNC_REFRESH, "skip")
        .create(t.client.clone(), &t.ns)
        .await?;
    let mut rec = t.record("stale").await?;
    // A re-sync of the deployed revision without a refresh request: nothing
    // triggers a refresh, so reconciledAt stays from before the sync.
    let request = SyncRequest {
        refresh: false,
        ..SyncRequest::for_promotion(&t.ns, "p-stale")
    };
    request_sync(&t.api, "stale", &request).await?;
    let versions = rec
        .wait_for(WAIT, |versions| {
            after_request(versions, |v| {
                phase(v) == Some("Succeeded") && !has_operation(v)
            })
        })
        .await?;
    let app = versions.last().cloned().unwrap_or_default();
    let reconciled = s(&app, "/status/reconciledAt").unwrap_or_default();
    let finished = s(&app, "/status/operationState/finishedAt").unwrap_or_default();
    assert!(
        reconciled < finished,
        "{reconciled} !< {finished}\n{}",
        describe(&rec.versions())
    );
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    // A refresh request brings it up to date.
    request_refresh(&t.api, "stale", true).await?;
    let app = rec
        .wait_latest(WAIT, |v| {
            reconciled_after_finish(v)
                && s(v, "/metadata/annotations/argocd.argoproj.io~1refresh").is_none()
        })
        .await?;
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    assert_eq!(s(&app, "/status/sync/revision"), Some("aaa111"));
    Ok(())
}

#[tokio::test]
async fn degraded_after_sync_is_reported_by_the_post_sync_refresh() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("degraded")
        .knob(HEALTH_AFTER_SYNC, "degraded")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "degraded", &promote(&t.ns, "p-degraded")).await?;
    let app = wait_for(&t.api, "degraded", WAIT, |v| {
        settled(v) && s(v, "/status/health/status") == Some("Degraded")
    })
    .await?;
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    let changed = s(&app, "/status/health/lastTransitionTime").unwrap_or_default();
    assert!(changed >= s(&app, "/status/operationState/finishedAt").unwrap_or_default());
    Ok(())
}

#[tokio::test]
async fn progressing_then_healthy_changes_last_transition_time_on_each_change() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("prog")
        .knob(HEALTH_AFTER_SYNC, "progressing-then-healthy")
        .knob(PROGRESSING_FOR, "1500ms")
        .create(t.client.clone(), &t.ns)
        .await?;
    let mut rec = t.record("prog").await?;
    request_sync(&t.api, "prog", &promote(&t.ns, "p-prog")).await?;
    let versions = rec
        .wait_for(WAIT, |v| {
            v.iter()
                .any(|v| s(v, "/status/health/status") == Some("Progressing"))
                && v.last()
                    .is_some_and(|v| settled(v) && s(v, "/status/health/status") == Some("Healthy"))
        })
        .await?;
    let health = |v: &Value| {
        (
            s(v, "/status/health/status").map(String::from),
            s(v, "/status/health/lastTransitionTime").map(String::from),
        )
    };
    let before = health(&versions[0]);
    let progressing = first(&versions, 0, |v| {
        s(v, "/status/health/status") == Some("Progressing")
    })
    .ok_or_else(|| describe(&versions))?;
    let p = health(&versions[progressing]);
    let h = health(versions.last().unwrap_or(&Value::Null));
    assert_ne!(
        p.1, before.1,
        "Progressing must set a new lastTransitionTime"
    );
    assert_ne!(h.1, p.1, "Healthy must set a new lastTransitionTime");
    // Writes between the changes keep the time.
    for v in &versions[..progressing] {
        assert_eq!(health(v), before);
    }
    Ok(())
}

#[tokio::test]
async fn application_without_status_is_reconciled_by_the_refresh() -> TestResult {
    let t = setup(|c| c).await?;
    ApplicationBuilder::new("fresh")
        .knob(RESOLVE, "main=c0ffee")
        .create(t.client.clone(), &t.ns)
        .await?;
    let app = wait_for(&t.api, "fresh", WAIT, |v| {
        v.pointer("/status/reconciledAt").is_some()
    })
    .await?;
    assert_eq!(s(&app, "/status/sync/status"), Some("OutOfSync"));
    assert_eq!(s(&app, "/status/sync/revision"), Some("c0ffee"));
    assert_eq!(s(&app, "/status/health/status"), Some("Healthy"));
    assert!(app.pointer("/status/operationState").is_none());
    Ok(())
}

#[tokio::test]
async fn operation_on_application_without_status_succeeds() -> TestResult {
    let t = setup(|c| c).await?;
    let mut rec = t.record("bare").await?;
    ApplicationBuilder::new("bare")
        .knob(RESOLVE, "main=c0ffee")
        .create(t.client.clone(), &t.ns)
        .await?;
    // Requested at once, usually before the first refresh: Kargo then
    // leaves operationState alone, as there is no status to clear it in.
    request_sync(&t.api, "bare", &SyncRequest::for_promotion(&t.ns, "p-bare")).await?;
    let app = rec.wait_latest(WAIT, settled).await?;
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    assert_eq!(s(&app, "/status/history/0/revision"), Some("c0ffee"));
    assert_eq!(app["status"]["history"][0]["id"], 0);
    Ok(())
}

#[tokio::test]
async fn operation_created_with_the_application_succeeds() -> TestResult {
    let t = setup(|c| c).await?;
    ApplicationBuilder::new("born")
        .operation(json!({"sync": {}, "initiatedBy": {"username": "admin"}}))
        .create(t.client.clone(), &t.ns)
        .await?;
    let app = wait_for(&t.api, "born", WAIT, settled).await?;
    assert_eq!(s(&app, "/status/sync/revision"), Some("main"));
    Ok(())
}

#[tokio::test]
async fn hanging_sync_ends_failed_when_terminated() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("hang")
        .knob(OUTCOME, "hang")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "hang", &promote(&t.ns, "p-hang")).await?;
    wait_for(&t.api, "hang", WAIT, |v| {
        s(v, "/status/operationState/message") == Some("one or more tasks are running")
    })
    .await?;
    terminate_operation(&t.api, "hang").await?;
    let app = wait_for(&t.api, "hang", WAIT, |v| phase(v) == Some("Failed")).await?;
    assert_eq!(
        s(&app, "/status/operationState/message"),
        Some("Operation terminated")
    );
    assert!(!has_operation(&app));
    Ok(())
}

#[tokio::test]
async fn operation_without_sync_errors_as_an_invalid_request() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("nosync").create(t.client.clone(), &t.ns).await?;
    let request = SyncRequest {
        without_sync: true,
        ..SyncRequest::for_promotion(&t.ns, "p-nosync")
    };
    request_sync(&t.api, "nosync", &request).await?;
    let app = wait_for(&t.api, "nosync", WAIT, |v| phase(v) == Some("Error")).await?;
    assert_eq!(
        s(&app, "/status/operationState/message"),
        Some("Invalid operation request: no operation specified")
    );
    Ok(())
}

#[tokio::test]
async fn history_is_trimmed_to_the_revision_history_limit() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("trim")
        .revision_history_limit(1)
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(&t.api, "trim", &promote(&t.ns, "p-trim")).await?;
    let app = wait_for(&t.api, "trim", WAIT, settled).await?;
    let history = app["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["id"], 1);
    assert_eq!(history[0]["revision"], "bbb222");
    Ok(())
}

#[tokio::test]
async fn partial_sync_succeeds_without_a_history_entry() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("partial")
        .operation(json!({
            "sync": {"resources": [{"group": "apps", "kind": "Deployment", "name": "partial"}]},
            "initiatedBy": {"username": "admin"},
        }))
        .create(t.client.clone(), &t.ns)
        .await?;
    let app = wait_for(&t.api, "partial", WAIT, |v| {
        phase(v) == Some("Succeeded") && !has_operation(v) && reconciled_after_finish(v)
    })
    .await?;
    assert_eq!(app["status"]["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        s(&app, "/status/operationState/syncResult/revision"),
        Some("aaa111")
    );
    Ok(())
}

#[tokio::test]
async fn multi_source_sync_resolves_every_source() -> TestResult {
    let t = setup(|c| c).await?;
    ApplicationBuilder::new("multi")
        .sources(vec![
            json!({"repoURL": "https://charts.example.com", "chart": "guestbook", "targetRevision": "1.2.x"}),
            json!({"repoURL": "https://github.com/example/values.git", "targetRevision": "main", "ref": "values"}),
        ])
        .knob(RESOLVE, "1.2.x=1.2.7,main=5eed")
        .create(t.client.clone(), &t.ns)
        .await?;
    request_sync(
        &t.api,
        "multi",
        &SyncRequest::for_promotion(&t.ns, "p-multi"),
    )
    .await?;
    let app = wait_for(&t.api, "multi", WAIT, settled).await?;
    assert_eq!(app["status"]["sync"]["revisions"], json!(["1.2.7", "5eed"]));
    assert_eq!(app["status"]["sync"]["status"], "Synced");
    assert_eq!(
        app["status"]["operationState"]["syncResult"]["revisions"],
        json!(["1.2.7", "5eed"])
    );
    assert_eq!(
        app["status"]["history"][0]["revisions"],
        json!(["1.2.7", "5eed"])
    );
    Ok(())
}

#[tokio::test]
async fn auto_sync_starts_an_automated_operation_when_out_of_sync() -> TestResult {
    let t = setup(|c| c).await?;
    ApplicationBuilder::new("auto")
        .auto_sync(true)
        .knob(RESOLVE, "main=a1")
        .create(t.client.clone(), &t.ns)
        .await?;
    let app = wait_for(&t.api, "auto", WAIT, settled).await?;
    let operation = &app["status"]["operationState"]["operation"];
    assert_eq!(operation["initiatedBy"]["automated"], true);
    assert_eq!(operation["sync"]["revision"], "a1");
    assert_eq!(operation["sync"]["prune"], true);
    assert_eq!(operation["retry"]["limit"], 5);
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    Ok(())
}

#[tokio::test]
async fn sync_delay_knob_keeps_the_operation_running_that_long() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("slow")
        .knob(SYNC_DELAY, "1500ms")
        .create(t.client.clone(), &t.ns)
        .await?;
    let journal = t.journal();
    request_sync(&t.api, "slow", &promote(&t.ns, "p-slow")).await?;
    journal
        .wait_for(WAIT, |j| {
            j.syncs_for_promotion("p-slow")
                .first()
                .is_some_and(|s| s.final_write.is_some())
        })
        .await?;
    let sync = journal
        .syncs_for_promotion("p-slow")
        .first()
        .cloned()
        .ok_or("no sync")?;
    let write = sync.final_write.ok_or("no final write")?;
    assert!(
        write.sent.duration_since(sync.started) >= std::time::Duration::from_millis(1500),
        "{:?}",
        write.sent.duration_since(sync.started)
    );
    Ok(())
}

#[tokio::test]
async fn failed_auto_sync_is_not_retried_and_raises_a_sync_error() -> TestResult {
    let t = setup(|c| c).await?;
    ApplicationBuilder::new("autofail")
        .auto_sync(false)
        .retry(0, "1s")
        .knob(RESOLVE, "main=a1")
        .knob(OUTCOME, "fail:boom")
        .create(t.client.clone(), &t.ns)
        .await?;
    let app = wait_for(&t.api, "autofail", WAIT, |v| {
        v.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["type"] == "SyncError"))
    })
    .await?;
    assert_eq!(phase(&app), Some("Failed"));
    let condition = app["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "SyncError")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        condition["message"],
        "Failed last sync attempt to [a1]: one or more objects failed to apply, reason: boom"
    );
    assert!(!has_operation(&app));
    assert_eq!(t.journal().syncs_for(&t.ns, "autofail").len(), 1);
    Ok(())
}

#[tokio::test]
async fn initial_health_knob_sets_the_health_before_any_sync() -> TestResult {
    let t = setup(|c| c).await?;
    ApplicationBuilder::new("missing")
        .knob(INITIAL_HEALTH, "missing")
        .create(t.client.clone(), &t.ns)
        .await?;
    let app = wait_for(&t.api, "missing", WAIT, |v| {
        v.pointer("/status/reconciledAt").is_some()
    })
    .await?;
    assert_eq!(s(&app, "/status/health/status"), Some("Missing"));
    assert!(app.pointer("/status/health/lastTransitionTime").is_some());
    Ok(())
}

// === Conflicts, the journal ===

#[tokio::test]
async fn conflicting_concurrent_write_is_retried_and_both_changes_survive() -> TestResult {
    let env = env().await?;
    let ns = env.namespace().await?;
    let other = barge_argocd_double::fixtures::applications(env.client(), &ns);
    let fired = Arc::new(AtomicBool::new(false));
    let hook = {
        let fired = fired.clone();
        WriteHook::new(move |app, kind, attempt| {
            let other = other.clone();
            let name = app.name.clone();
            let first =
                kind == WriteKind::History && attempt == 1 && !fired.swap(true, Ordering::SeqCst);
            async move {
                if first {
                    // Another writer changes the object between the double's
                    // read and its write.
                    let body = json!({"metadata": {"labels": {"team": "payments"}}});
                    let _ = other
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await;
                }
            }
            .boxed()
        })
    };
    let client = env.client();
    let double = barge_argocd_double::Double::new(
        client.clone(),
        barge_argocd_double::DoubleConfig::namespaced(&ns).with_write_hook(hook),
    )
    .spawn();
    let api = barge_argocd_double::fixtures::applications(client.clone(), &ns);
    guestbook("race").create(client, &ns).await?;
    request_sync(&api, "race", &promote(&ns, "p-race")).await?;
    let app = wait_for(&api, "race", WAIT, settled).await?;
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(s(&app, "/metadata/labels/team"), Some("payments"));
    let history = app["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(history.len(), 2, "exactly one entry appended: {history:?}");
    let counts = double.journal().requests_for(&ns, "race");
    assert!(counts.conflicts >= 1, "{counts:?}");
    Ok(())
}

#[tokio::test]
async fn journal_records_one_sync_per_promotion_with_final_write_instants() -> TestResult {
    let t = setup(|c| c).await?;
    guestbook("journal").create(t.client.clone(), &t.ns).await?;
    let journal = t.journal();
    request_sync(&t.api, "journal", &promote(&t.ns, "p-journal")).await?;
    journal
        .wait_for(WAIT, |j| {
            j.syncs_for_promotion("p-journal")
                .first()
                .is_some_and(|s| s.is_completed())
        })
        .await?;
    let app = wait_for(&t.api, "journal", WAIT, settled).await?;
    let syncs = journal.syncs_for_promotion("p-journal");
    assert_eq!(syncs.len(), 1);
    let sync = &syncs[0];
    assert_eq!(sync.phase.as_deref(), Some("Succeeded"));
    assert_eq!(sync.resolved_revisions, Some(vec!["bbb222".to_string()]));
    assert_eq!(sync.requested_revisions, vec!["v2".to_string()]);
    assert_eq!(sync.initiated_by.as_deref(), Some("alice"));
    assert_eq!(
        sync.info("barge.dev/promotion-namespace"),
        Some(t.ns.as_str())
    );
    assert_eq!(
        sync.finished_at.as_deref(),
        s(&app, "/status/operationState/finishedAt")
    );
    let write = sync.final_write.clone().ok_or("no final write recorded")?;
    assert!(write.sent <= write.acknowledged && sync.started <= write.sent);
    // Exactly one sync: O1, the syncResult write, history, the final write.
    for kind in [
        WriteKind::OperationStart,
        WriteKind::OperationProgress,
        WriteKind::History,
        WriteKind::OperationFinal,
    ] {
        assert_eq!(journal.writes_of(&t.ns, "journal", kind), 1, "{kind:?}");
    }
    // The refresh's writes: its watch events may arrive before the double
    // has counted the acknowledgements, so wait on the journal.
    journal
        .wait_for(WAIT, |j| {
            j.writes_of(&t.ns, "journal", WriteKind::Refresh) >= 1
                && j.writes_of(&t.ns, "journal", WriteKind::RefreshAnnotations) == 1
        })
        .await?;
    let counts = journal.requests_for(&t.ns, "journal");
    assert!(counts.writes >= 6 && counts.reads >= 1, "{counts:?}");
    Ok(())
}

#[tokio::test]
async fn unrelated_change_to_a_reconciled_application_causes_no_write() -> TestResult {
    let t = setup(|c| c).await?;
    let journal = t.journal();
    guestbook("idle").create(t.client.clone(), &t.ns).await?;
    // A deployed, reconciled Application needs nothing: this change must be
    // looked at and ignored.
    set_annotation(&t.api, "idle", "example.com/touched", Some("1")).await?;
    // Then a change that needs exactly two writes (the refresh's status write
    // and the annotation removal). Events of one object are handled in
    // order, so once those two are counted, the first change was handled.
    request_refresh(&t.api, "idle", false).await?;
    journal
        .wait_for(WAIT, |j| j.requests_for(&t.ns, "idle").writes >= 2)
        .await?;
    let app = wait_for(&t.api, "idle", WAIT, |v| {
        s(v, "/metadata/annotations/argocd.argoproj.io~1refresh").is_none()
    })
    .await?;
    assert_eq!(s(&app, "/status/sync/status"), Some("Synced"));
    assert_eq!(journal.requests_for(&t.ns, "idle").writes, 2);
    assert!(journal.syncs_for(&t.ns, "idle").is_empty());
    Ok(())
}

// === The binary ===

#[tokio::test]
async fn binary_installs_the_crd_and_syncs_an_application() -> TestResult {
    let env = env().await?;
    let ns = env.namespace().await?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_argocd-double"))
        .args([
            "--kubeconfig",
            &env.kubeconfig_path().display().to_string(),
            "--namespace",
            &ns,
            "--sync-delay",
            "0s",
            "--health-after-sync",
            "healthy",
            "--install-crd",
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let api = barge_argocd_double::fixtures::applications(env.client(), &ns);
    guestbook("bin").create(env.client(), &ns).await?;
    request_sync(&api, "bin", &promote(&ns, "p-bin")).await?;
    let app = wait_for(&api, "bin", WAIT, settled).await?;
    assert_eq!(s(&app, "/status/sync/revision"), Some("bbb222"));
    child.kill().await?;
    Ok(())
}
