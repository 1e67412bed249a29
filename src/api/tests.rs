//! Unit tests of the API types: Kargo manifests (with only `apiVersion`
//! changed) round-trip through the typed objects, and the generated CRDs
//! carry the names, columns and rules the kinds promise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::CustomResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;

const STAGE: &str = include_str!("testdata/kargo-stage.yaml");
const PROMOTION_TASK: &str = include_str!("testdata/kargo-promotion-task.yaml");
const CLUSTER_PROMOTION_TASK: &str = include_str!("testdata/kargo-cluster-promotion-task.yaml");
const FREIGHT: &str = include_str!("testdata/kargo-freight.yaml");
const PROMOTION: &str = include_str!("testdata/kargo-promotion.yaml");

/// Parses `yaml` as `T`, serializes it back, and checks that nothing of the
/// original was lost or changed (defaults may be added; durations may be
/// rewritten in another Go-style form of the same length of time), and that
/// the serialized form parses to the same object.
fn round_trip<T>(yaml: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let original: Value = serde_saphyr::from_str(yaml).expect("valid YAML");
    let typed: T = serde_saphyr::from_str(yaml).expect("parses as the typed object");
    let serialized = serde_json::to_value(&typed).expect("serializes");
    assert_subset(&original, &serialized, "");
    let again: T = serde_json::from_value(serialized.clone()).expect("parses again");
    assert_eq!(typed, again, "serialized form: {serialized:#}");
    // And through YAML, as `kubectl get -o yaml` would show it.
    let yaml_again = serde_saphyr::to_string(&typed).expect("serializes to YAML");
    let from_yaml: T = serde_saphyr::from_str(&yaml_again).expect("parses its own YAML");
    assert_eq!(typed, from_yaml, "YAML form:\n{yaml_again}");
    typed
}

fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let Some(found) = a.get(key) else {
                    panic!("{path}.{key} was dropped; serialized: {actual:#}");
                };
                assert_subset(value, found, &format!("{path}.{key}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: list length changed");
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                assert_subset(e, a, &format!("{path}[{i}]"));
            }
        }
        (Value::String(e), Value::String(a)) if e != a => {
            let same_duration = matches!(
                (e.parse::<kube::core::Duration>(), a.parse::<kube::core::Duration>()),
                (Ok(x), Ok(y)) if x == y
            );
            assert!(same_duration, "{path}: {e:?} became {a:?}");
        }
        (e, a) => assert_eq!(e, a, "{path} changed"),
    }
}

#[test]
fn a_kargo_stage_round_trips() {
    let stage: Stage = round_trip(STAGE);
    assert_eq!(stage.metadata.name.as_deref(), Some("uat"));
    assert_eq!(stage.spec.shard, "east");
    assert_eq!(stage.spec.vars.len(), 2);
    let request = &stage.spec.requested_freight[0];
    assert_eq!(request.origin, FreightOrigin::warehouse("kargo-demo"));
    assert_eq!(request.sources.stages, ["test"]);
    assert_eq!(
        request.sources.required_soak_time,
        Some(std::time::Duration::from_secs(3600).into())
    );
    assert_eq!(
        request
            .sources
            .auto_promotion_options
            .as_ref()
            .and_then(|o| o.selection_policy),
        Some(stage::SelectionPolicy::MatchUpstream)
    );
    let steps = stage.template_steps();
    assert_eq!(steps.len(), 8);
    assert_eq!(steps[2].alias.as_deref(), Some("update-image"));
    let retry = steps[5].retry.as_ref().unwrap();
    assert_eq!(retry.error_threshold, 3);
    assert_eq!(
        retry.timeout,
        Some(std::time::Duration::from_secs(300).into())
    );
    let task = steps[6].task.as_ref().unwrap();
    assert_eq!(
        (task.name.as_str(), task.kind),
        ("sync", TaskKind::PromotionTask)
    );
    assert_eq!(steps[6].vars[0].name, "app");
    assert!(steps[7].continue_on_error);
    assert_eq!(steps[7].if_.as_deref(), Some("${{ always() }}"));
    assert!(!stage.is_control_flow());
    let verification = stage.spec.verification.as_ref().unwrap();
    assert_eq!(verification.analysis_templates.len(), 2);
    assert!(!stage.spec.auto_promotion);
}

#[test]
fn a_kargo_promotion_task_round_trips() {
    let task: PromotionTask = round_trip(PROMOTION_TASK);
    assert_eq!(task.spec.vars[0].name, "app");
    assert!(task.spec.vars[0].value.is_empty(), "a required var");
    assert_eq!(task.spec.steps.len(), 2);
    assert_eq!(task.spec.steps[0].uses.as_deref(), Some("argocd-update"));
    assert_eq!(
        task.spec.steps[0].config.as_ref().unwrap()["apps"][0]["name"],
        "${{ vars.app }}"
    );
}

#[test]
fn a_kargo_cluster_promotion_task_round_trips() {
    let task: ClusterPromotionTask = round_trip(CLUSTER_PROMOTION_TASK);
    assert_eq!(task.metadata.namespace, None);
    assert_eq!(task.spec.steps[1].alias.as_deref(), Some("wait-for-pr"));
    assert_eq!(
        task.spec.steps[1].retry.as_ref().unwrap().timeout,
        Some(std::time::Duration::from_secs(48 * 3600).into())
    );
    let as_namespaced: PromotionTaskSpec = task.spec.clone().into();
    assert_eq!(as_namespaced.steps, task.spec.steps);
}

#[test]
fn a_kargo_freight_round_trips_with_its_fields_at_the_top_level() {
    let freight: Freight = round_trip(FREIGHT);
    assert_eq!(freight.spec.alias.as_deref(), Some("wonky-fox"));
    assert_eq!(freight.spec.origin.key(), "Warehouse/kargo-demo");
    assert_eq!(freight.spec.commits.len(), 2);
    assert_eq!(freight.spec.commits[1].tag, "v1.4.0");
    assert_eq!(freight.spec.images[0].tag, "1.27.3");
    assert_eq!(freight.spec.charts[1].name, "");
    let json = serde_json::to_value(&freight).unwrap();
    assert!(json.get("spec").is_none(), "no spec: {json:#}");
    assert_eq!(json["apiVersion"], API_VERSION);
    assert_eq!(json["kind"], "Freight");
    assert_eq!(
        json["commits"][0]["repoURL"],
        freight.spec.commits[0].repo_url
    );
    let reference = freight.reference();
    assert_eq!(reference.name, "47b33c0c92b54439e5eb7fb80ecc83f8626fe390");
    assert_eq!(reference.images, freight.spec.images);
}

#[test]
fn a_promotion_with_a_kargo_status_round_trips() {
    let promotion: Promotion = round_trip(PROMOTION);
    assert_eq!(promotion.spec.stage, "uat");
    assert_eq!(promotion.spec.steps.len(), 2);
    assert!(promotion.spec.steps[1].task.is_some());
    let status = promotion.status.as_ref().unwrap();
    assert_eq!(promotion.phase(), PromotionPhase::Running);
    assert!(!promotion.is_terminal());
    assert_eq!(status.current_step, 1);
    assert_eq!(status.step_execution_metadata[1].error_count, 1);
    assert_eq!(
        status.step_execution_metadata[1].status,
        Some(PromotionStepStatus::Running)
    );
    assert_eq!(
        status.state["deploy::update"]["apps"][0]["namespace"],
        "argocd"
    );
    let plan = status.plan.as_ref().unwrap();
    assert!(
        plan.steps
            .iter()
            .all(|s| s.uses.is_some() && s.alias.is_some())
    );
    assert_eq!(plan.steps[1].alias.as_deref(), Some("deploy::update"));
    assert_eq!(status.awaiting[0].name.as_deref(), Some("kargo-demo-uat"));
    assert!(status.awaiting[1].selector.is_some());
    let collection = status.freight_collection.as_ref().unwrap();
    assert!(collection.items.contains_key("Warehouse/kargo-demo"));
    assert_eq!(
        collection.verification_history[0].phase,
        Some(stage::VerificationPhase::Successful)
    );
    assert_eq!(status.conditions[0].type_, "Ready");
}

#[test]
fn a_stage_status_carries_a_promotion_status() {
    let promotion: Promotion = serde_saphyr::from_str(PROMOTION).unwrap();
    let status = StageStatus {
        last_promotion: Some(PromotionReference {
            name: promotion.metadata.name.clone().unwrap(),
            freight: promotion.status.as_ref().and_then(|s| s.freight.clone()),
            status: promotion.status.clone().map(Box::new),
            finished_at: None,
        }),
        health: Some(Health {
            status: Some(HealthState::Progressing),
            issues: vec!["Application argocd/kargo-demo-uat is Progressing".into()],
            ..Health::default()
        }),
        ..StageStatus::default()
    };
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["lastPromotion"]["status"]["phase"], "Running");
    assert_eq!(json["health"]["status"], "Progressing");
    let back: StageStatus = serde_json::from_value(json).unwrap();
    assert_eq!(back, status);
}

#[test]
fn the_quickstart_manifests_parse_as_typed_objects() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let parsed = match kind.as_str() {
                "Stage" => serde_json::from_value::<Stage>(doc).map(drop),
                "Promotion" => serde_json::from_value::<Promotion>(doc).map(drop),
                "PromotionTask" => serde_json::from_value::<PromotionTask>(doc).map(drop),
                "ClusterPromotionTask" => {
                    serde_json::from_value::<ClusterPromotionTask>(doc).map(drop)
                }
                "Freight" => serde_json::from_value::<Freight>(doc).map(drop),
                _ => continue,
            };
            parsed.unwrap_or_else(|e| panic!("{}: {kind}: {e}", path.display()));
            kinds.push(kind);
        }
    }
    assert!(kinds.iter().any(|k| k == "Stage"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "Freight"), "{kinds:?}");
}

#[test]
fn step_statuses_order_by_kargo_severity() {
    use PromotionStepStatus::*;
    let mut all = [Errored, Failed, Aborted, Running, Skipped, Succeeded];
    all.sort();
    assert_eq!(all, [Succeeded, Skipped, Running, Aborted, Failed, Errored]);
    assert_eq!([Skipped, Failed, Running].into_iter().max(), Some(Failed));
    assert!(Failed.is_failure() && Errored.is_failure() && !Aborted.is_failure());
    assert_eq!(
        PromotionPhase::from_step_status(Skipped),
        PromotionPhase::Succeeded
    );
    assert_eq!(
        PromotionPhase::from_step_status(Errored),
        PromotionPhase::Errored
    );
}

#[test]
fn phases_and_health_states() {
    use PromotionPhase::*;
    for phase in [Succeeded, Failed, Errored, Aborted] {
        assert!(phase.is_terminal(), "{phase}");
    }
    assert!(!Pending.is_terminal() && !Running.is_terminal());
    assert_eq!(
        HealthState::Healthy.merge(HealthState::Progressing),
        HealthState::Progressing
    );
    assert_eq!(
        HealthState::Unhealthy.merge(HealthState::Unknown),
        HealthState::Unhealthy
    );
    assert_eq!(
        HealthState::NotApplicable.merge(HealthState::Healthy),
        HealthState::NotApplicable
    );
}

/// The schema of a CRD's only version.
fn schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn rules_at(schema: &Value, pointer: &str) -> Vec<String> {
    schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer}"))
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| r["message"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn names_scopes_and_columns_are_kargos() {
    let names = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        (
            crd.spec.names.plural.clone(),
            crd.spec.names.short_names.clone().unwrap_or_default(),
            crd.spec.scope.clone(),
            crd.spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .filter(|c| c.priority.unwrap_or(0) == 0)
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
            crd.spec.versions[0].subresources.as_ref().is_some_and(|s| s.status.is_some()),
        )
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(&Stage::crd()),
        (
            "stages".into(),
            vec![],
            "Namespaced".into(),
            // Kargo's columns, with what the Stage is promoting and how
            // its last Promotion ended.
            s(&[
                "Shard",
                "Current Freight",
                "Health",
                "Promoting",
                "Last Promotion",
                "Ready",
                "Status",
                "Age"
            ]),
            true
        )
    );
    assert_eq!(
        names(&Promotion::crd()),
        (
            "promotions".into(),
            s(&["promo", "promos"]),
            "Namespaced".into(),
            // Kargo's columns, with the step the Promotion is on.
            s(&["Shard", "Stage", "Freight", "Phase", "Step", "Age"]),
            true
        )
    );
    assert_eq!(
        names(&PromotionTask::crd()),
        (
            "promotiontasks".into(),
            s(&["promotask", "promotasks"]),
            "Namespaced".into(),
            s(&["Age"]),
            false
        )
    );
    assert_eq!(
        names(&ClusterPromotionTask::crd()),
        (
            "clusterpromotiontasks".into(),
            s(&["clusterpromotask", "clusterpromotasks"]),
            "Cluster".into(),
            s(&["Age"]),
            false
        )
    );
    assert_eq!(
        names(&Freight::crd()),
        (
            "freights".into(),
            vec![],
            "Namespaced".into(),
            s(&["Alias", "Origin (Kind)", "Origin (Name)", "Age"]),
            true
        )
    );
    assert_eq!(
        names(&Warehouse::crd()),
        (
            "warehouses".into(),
            vec![],
            "Namespaced".into(),
            s(&["Shard", "Interval", "Last Freight", "Ready", "Age"]),
            true
        )
    );
}

#[test]
fn step_rules_apply_to_user_steps_only() {
    use validation::*;
    let stage = schema(&Stage::crd());
    let template = "/properties/spec/properties/promotionTemplate/properties/spec/properties/steps";
    assert_eq!(rules_at(&stage, template), [MSG_ALIAS_DUPLICATE]);
    assert_eq!(
        rules_at(&stage, &format!("{template}/items")),
        [
            MSG_USES_XOR_TASK,
            MSG_TASK_STEP_CONTINUE_ON_ERROR,
            MSG_TASK_STEP_RETRY,
            MSG_TASK_STEP_IF,
            MSG_TASK_STEP_CONFIG
        ]
    );
    assert_eq!(
        rules_at(&stage, &format!("{template}/items/properties/as")),
        [MSG_ALIAS_FORMAT, MSG_ALIAS_RESERVED]
    );

    let promotion = schema(&Promotion::crd());
    assert_eq!(
        rules_at(&promotion, "/properties/spec"),
        [MSG_SPEC_IMMUTABLE]
    );
    assert_eq!(
        rules_at(&promotion, "/properties/spec/properties/steps/items").len(),
        5
    );
    // The frozen plan holds generated aliases (`step-1`, `deploy::update`).
    let plan_steps = "/properties/status/properties/plan/properties/steps";
    assert!(rules_at(&promotion, plan_steps).is_empty());
    assert!(rules_at(&promotion, &format!("{plan_steps}/items")).is_empty());
    assert!(rules_at(&promotion, &format!("{plan_steps}/items/properties/as")).is_empty());
    assert!(
        promotion
            .pointer(&format!("{plan_steps}/maxItems"))
            .is_none()
    );

    for task in [
        schema(&PromotionTask::crd()),
        schema(&ClusterPromotionTask::crd()),
    ] {
        assert_eq!(
            rules_at(&task, "/properties/spec/properties/steps/items"),
            [MSG_TASK_STEP_NESTED]
        );
        assert_eq!(
            rules_at(&task, "/properties/spec/properties/steps"),
            [MSG_ALIAS_DUPLICATE]
        );
        assert_eq!(
            task.pointer("/properties/spec/required"),
            Some(&serde_json::json!(["steps"]))
        );
    }
}

#[test]
fn freight_fields_are_at_the_top_level_of_its_schema() {
    let freight = schema(&Freight::crd());
    let properties = freight["properties"].as_object().unwrap();
    for field in [
        "alias",
        "origin",
        "commits",
        "images",
        "charts",
        "artifacts",
        "status",
    ] {
        assert!(properties.contains_key(field), "{field}");
    }
    assert!(!properties.contains_key("spec"));
    assert_eq!(freight["required"], serde_json::json!(["origin"]));
    let rules = rules_at(&freight, "");
    assert_eq!(rules[0], validation::MSG_FREIGHT_EMPTY);
    assert_eq!(rules.len(), 6);
}

#[test]
fn no_field_has_a_default_that_would_trip_a_rule() {
    // The API server applies defaults before validating: a default
    // `continueOnError: false` would make every task step invalid. Only
    // task.kind and the Warehouse's interval and creation policy (Kargo's
    // defaults, under no rule) have one.
    for crd in crate::crdgen::crds() {
        let text = serde_json::to_string(&schema(&crd)).unwrap();
        let defaults = text.matches("\"default\"").count();
        let allowed = [
            "\"default\":\"PromotionTask\"",
            "\"default\":\"5m0s\"",
            "\"default\":\"Automatic\"",
        ]
        .iter()
        .map(|d| text.matches(d).count())
        .sum::<usize>();
        assert_eq!(
            defaults, allowed,
            "{:?}: only task.kind and the Warehouse's interval and policy have a default",
            crd.metadata.name
        );
    }
}

#[test]
fn the_installed_crds_have_no_nullable_fields() {
    for crd in crate::crdgen::crds() {
        let text = serde_json::to_string(&crd).unwrap();
        assert!(!text.contains("nullable"), "{:?}", crd.metadata.name);
    }
}

#[test]
fn a_kargo_project_config_with_every_sender_round_trips_and_names_each_sender() {
    let config: crate::api::ProjectConfig =
        round_trip(include_str!("testdata/kargo-project-config-receivers.yaml"));
    let senders: Vec<&str> = config
        .spec
        .webhook_receivers
        .iter()
        .map(|r| r.sender().map(|(s, _)| s.name()).unwrap_or_default())
        .collect();
    let names: Vec<&str> = config
        .spec
        .webhook_receivers
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(senders, names);
    let generic = config.spec.webhook_receivers[10].generic.as_ref().unwrap();
    assert_eq!(generic.actions[0].target_selection_criteria.len(), 3);
}

#[test]
fn freight_items_are_a_json_object_in_key_order_and_the_last_of_a_key_wins() {
    let reference = |name: &str| FreightReference {
        name: name.to_string(),
        ..FreightReference::default()
    };
    let json = serde_json::json!({
        "Warehouse/web": {"name": "w1", "origin": {"kind": "Warehouse", "name": "web"}},
        "Warehouse/api": {"name": "a1", "origin": {"kind": "Warehouse", "name": "api"}},
    });
    let mut items: FreightItems = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(
        items.keys().collect::<Vec<_>>(),
        ["Warehouse/api", "Warehouse/web"]
    );
    assert_eq!(serde_json::to_value(&items).unwrap(), json);

    assert_eq!(
        items
            .insert("Warehouse/web".into(), reference("w2"))
            .map(|f| f.name),
        Some("w1".to_string())
    );
    assert_eq!(
        items.get("Warehouse/web").map(|f| f.name.as_str()),
        Some("w2")
    );
    items.insert("Warehouse/charts".into(), reference("c1"));
    assert_eq!(
        items.values().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["a1", "c1", "w2"]
    );

    let collected: FreightItems = [
        ("Warehouse/web".to_string(), reference("w1")),
        ("Warehouse/web".to_string(), reference("w2")),
    ]
    .into();
    assert_eq!(collected.len(), 1);
    assert_eq!(
        collected.get("Warehouse/web").map(|f| f.name.as_str()),
        Some("w2")
    );
}

#[test]
fn a_retry_timeout_is_written_back_as_go_writes_it_within_the_pattern() {
    let pattern = regex::Regex::new(crate::api::validation::DURATION_PATTERN).unwrap();
    for (read, written) in [
        ("1h30m", "1h30m0s"),
        ("90s", "1m30s"),
        ("0", "0s"),
        ("1.5s", "1.5s"),
        ("250ms", "0.25s"),
        ("1ns", "0.000000001s"),
        ("9999999999h", "9999999999h0m0s"),
        ("9999999999.999999999h", "9999999999h0m0s"),
        ("9999999999h9999999999h", "9999999999h0m0s"),
    ] {
        let retry: PromotionStepRetry =
            serde_json::from_value(serde_json::json!({ "timeout": read })).unwrap();
        let value = serde_json::to_value(&retry).unwrap();
        assert_eq!(value["timeout"], written, "{read}");
        assert!(pattern.is_match(written), "{written}");
        let again: PromotionStepRetry = serde_json::from_value(value).unwrap();
        assert!(again.timeout.is_some(), "{written}");
    }
}

#[test]
fn a_duration_too_large_for_its_type_is_refused_when_read_instead_of_panicking() {
    let huge = format!("1h0m{}s", "5".repeat(90));
    let status: Result<crate::api::FreightStatus, _> = serde_json::from_value(serde_json::json!({
        "verifiedIn": {"dev": {"longestSoak": huge}},
    }));
    let error = status.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("is not a duration such as 90s"), "{error}");

    let retry: Result<PromotionStepRetry, _> =
        serde_json::from_value(serde_json::json!({"timeout": "99999999999h"}));
    assert!(retry.is_err());
    let retry: PromotionStepRetry =
        serde_json::from_value(serde_json::json!({"timeout": "1h30m"})).unwrap();
    assert_eq!(
        retry
            .timeout
            .map(|t| std::time::Duration::from(t).as_secs()),
        Some(5400)
    );
}

#[test]
fn a_freight_discovered_at_the_end_of_year_9999_is_still_read() {
    // Anyone who may create Freight may write this; the API server takes it.
    let freight: Freight = serde_json::from_value(serde_json::json!({
        "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
        "metadata": {"name": "late", "namespace": "demo"},
        "origin": {"kind": "Warehouse", "name": "w"},
        "discoveredAt": "9999-12-31T23:59:59Z",
        "commits": [{"repoURL": "https://git.example.com/a.git", "id": "abc"}],
    }))
    .unwrap_or_else(|e| panic!("unreadable: {e}"));
    assert_eq!(
        freight.spec.discovered_at.map(|t| t.0),
        Some(jiff::Timestamp::MAX)
    );
}
