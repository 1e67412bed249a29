//! The quickstart example (`examples/quickstart/`) parses, its manifests are
//! consistent with each other, and each of its Stages inflates into the plan
//! the comments promise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use barge::api::{ExpressionVariable, PromotionStep, TaskKind};
use barge::inflate::{Request, TaskMap, TaskSpec, inflate};
use serde_json::Value;

const NAMESPACE: &str = "barge-demo";
const STAGES: [&str; 3] = ["dev", "staging", "prod"];

/// Every document of every `*.yaml` file, in `kubectl apply -f` order.
fn manifests() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/quickstart exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable file");
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        docs.extend(values.into_iter().map(|v| (file.clone(), v)));
    }
    docs
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, doc)| doc)
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name:?} in the quickstart"))
}

fn field<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(if value.is_null() {
        Value::Array(vec![])
    } else {
        value.clone()
    })
    .unwrap_or_else(|err| panic!("{value}: {err}"))
}

fn task_map(docs: &[(String, Value)]) -> TaskMap {
    let mut tasks = TaskMap::new();
    for (_, doc) in docs {
        let kind = match doc["kind"].as_str() {
            Some("ClusterPromotionTask") => TaskKind::ClusterPromotionTask,
            Some("PromotionTask") => TaskKind::PromotionTask,
            _ => continue,
        };
        let name = doc["metadata"]["name"].as_str().unwrap();
        let spec: TaskSpec = serde_json::from_value(doc["spec"].clone()).unwrap();
        tasks.insert(kind, name, spec);
    }
    tasks
}

#[test]
fn every_manifest_has_an_api_version_and_barge_kinds_use_barge_dev() {
    let docs = manifests();
    assert!(docs.len() >= 9, "{} documents", docs.len());
    for (file, doc) in &docs {
        let api_version = doc["apiVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no apiVersion"));
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        match kind {
            "Stage"
            | "Promotion"
            | "PromotionTask"
            | "ClusterPromotionTask"
            | "Freight"
            | "ProjectConfig" => {
                assert_eq!(api_version, "barge.dev/v1alpha1", "{file}: {kind}")
            }
            "Application" => assert_eq!(api_version, "argoproj.io/v1alpha1", "{file}"),
            "Namespace" => assert_eq!(api_version, "v1", "{file}"),
            other => panic!("{file}: unexpected kind {other}"),
        }
    }
    // Namespaces first, then the task, the Applications, the Stages and the
    // Freight last, so that auto-promotion finds everything in place.
    let order: Vec<&str> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    let first = |kind: &str| order.iter().position(|k| *k == kind).unwrap();
    let last = |kind: &str| order.iter().rposition(|k| *k == kind).unwrap();
    assert!(last("Namespace") < first("ClusterPromotionTask"));
    assert!(last("ClusterPromotionTask") < first("Stage"));
    assert!(last("Application") < first("Stage"));
    assert!(last("Stage") < first("Freight"));
}

#[test]
fn each_stage_inflates_into_one_argocd_update_step() {
    let docs = manifests();
    let tasks = task_map(&docs);
    for stage_name in STAGES {
        let stage = find(&docs, "Stage", stage_name);
        assert_eq!(stage["metadata"]["namespace"], NAMESPACE);
        let stage_vars: Vec<ExpressionVariable> = field(&stage["spec"]["vars"]);
        let template = &stage["spec"]["promotionTemplate"]["spec"];
        let template_vars: Vec<ExpressionVariable> = field(&template["vars"]);
        let steps: Vec<PromotionStep> = field(&template["steps"]);

        let plan = inflate(
            &Request {
                namespace: NAMESPACE,
                stage: stage_name,
                stage_vars: &stage_vars,
                template_vars: &template_vars,
                promotion_vars: &[],
                steps: &steps,
            },
            &tasks,
        )
        .unwrap_or_else(|err| panic!("Stage {stage_name}: {err}"));

        assert_eq!(plan.steps.len(), 1, "Stage {stage_name}");
        let step = &plan.steps[0];
        assert_eq!(step.alias.as_deref(), Some("deploy::update"));
        assert_eq!(step.uses.as_deref(), Some("argocd-update"));
        // The task's default for argocdAppName is carried on the step; the
        // required repoURL comes from the Stage's vars, so it is not.
        assert_eq!(
            step.vars,
            [ExpressionVariable {
                name: "argocdAppName".into(),
                value: "${{ ctx.project }}-${{ ctx.stage }}".into(),
            }],
            "Stage {stage_name}"
        );
        assert!(
            plan.vars
                .iter()
                .any(|v| v.name == "repoURL" && !v.value.is_empty())
        );
        let config = step.config.as_ref().expect("config");
        let app = &config["apps"][0];
        assert_eq!(app["name"], "${{ vars.argocdAppName }}");
        assert_eq!(app["sources"][0]["repoURL"], "${{ vars.repoURL }}");
        assert_eq!(
            app["sources"][0]["desiredRevision"],
            "${{ commitFrom(vars.repoURL).id }}"
        );
    }
}

#[test]
fn stages_form_a_dev_staging_prod_pipeline() {
    let docs = manifests();
    let sources = |stage: &str| find(&docs, "Stage", stage)["spec"]["requestedFreight"][0].clone();
    for stage in STAGES {
        let request = sources(stage);
        assert_eq!(request["origin"]["kind"], "Warehouse");
        assert_eq!(request["origin"]["name"], "demo");
        // Auto-promotion is the project's, as in Kargo: its ProjectConfig
        // names each Stage.
        assert!(find(&docs, "Stage", stage)["spec"]["autoPromotion"].is_null());
        let policies =
            find(&docs, "ProjectConfig", "barge-demo")["spec"]["promotionPolicies"].clone();
        assert!(
            policies.as_array().into_iter().flatten().any(|p| {
                p["stageSelector"]["name"] == stage && p["autoPromotionEnabled"] == true
            }),
            "{stage}: {policies}"
        );
    }
    assert_eq!(sources("dev")["sources"]["direct"], true);
    assert_eq!(
        sources("staging")["sources"]["stages"],
        serde_json::json!(["dev"])
    );
    assert_eq!(
        sources("prod")["sources"]["stages"],
        serde_json::json!(["staging"])
    );
}

#[test]
fn applications_match_the_default_app_name_and_authorize_their_stage() {
    let docs = manifests();
    for stage in STAGES {
        // `${{ ctx.project }}-${{ ctx.stage }}`, evaluated by hand.
        let name = format!("{NAMESPACE}-{stage}");
        let app = find(&docs, "Application", &name);
        assert_eq!(app["metadata"]["namespace"], "argocd");
        assert_eq!(
            app["metadata"]["annotations"]["barge.dev/authorized-stage"],
            format!("{NAMESPACE}:{stage}").as_str()
        );
        let stage_vars: Vec<ExpressionVariable> =
            field(&find(&docs, "Stage", stage)["spec"]["vars"]);
        let repo = &stage_vars
            .iter()
            .find(|v| v.name == "repoURL")
            .unwrap()
            .value;
        assert_eq!(app["spec"]["source"]["repoURL"], repo.as_str());
        assert!(app["spec"]["destination"]["server"].is_string());
    }
}

#[test]
fn freight_carries_a_commit_of_the_stages_repository() {
    let docs = manifests();
    let freight = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "Freight")
        .expect("a Freight");
    assert_eq!(freight["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        freight["origin"],
        serde_json::json!({"kind": "Warehouse", "name": "demo"})
    );
    let commit = &freight["commits"][0];
    let stage_vars: Vec<ExpressionVariable> = field(&find(&docs, "Stage", "dev")["spec"]["vars"]);
    assert_eq!(
        commit["repoURL"].as_str(),
        stage_vars
            .iter()
            .find(|v| v.name == "repoURL")
            .map(|v| v.value.as_str())
    );
    let id = commit["id"].as_str().unwrap();
    assert_eq!(id.len(), 40);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // Kargo's typing turns an expression result that parses as a number into
    // one; this id must stay a string when `desiredRevision` is evaluated.
    assert!(id.parse::<f64>().is_err());
}

#[test]
fn typed_kinds_parse_and_inflate_like_the_controller_does() {
    use barge::api::{ClusterPromotionTask, Freight, Stage};

    let docs = manifests();
    let typed = |kind: &str| -> Vec<Value> {
        docs.iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d.clone())
            .collect()
    };
    let mut tasks = TaskMap::new();
    for doc in typed("ClusterPromotionTask") {
        let task: ClusterPromotionTask = serde_json::from_value(doc).unwrap();
        let name = task.metadata.name.clone().unwrap();
        tasks.insert(TaskKind::ClusterPromotionTask, name, task.spec);
    }
    for doc in typed("Freight") {
        let freight: Freight = serde_json::from_value(doc).unwrap();
        assert_eq!(freight.spec.commits.len(), 1);
    }
    let stages: Vec<Stage> = typed("Stage")
        .into_iter()
        .map(|doc| serde_json::from_value(doc).unwrap())
        .collect();
    assert_eq!(stages.len(), 3);
    for stage in &stages {
        assert!(!stage.spec.auto_promotion, "the ProjectConfig enables it");
        let template_vars = stage
            .spec
            .promotion_template
            .as_ref()
            .map(|t| t.spec.vars.clone())
            .unwrap_or_default();
        let name = stage.metadata.name.clone().unwrap();
        let plan = inflate(
            &Request {
                namespace: NAMESPACE,
                stage: &name,
                stage_vars: &stage.spec.vars,
                template_vars: &template_vars,
                promotion_vars: &[],
                steps: stage.template_steps(),
            },
            &tasks,
        )
        .unwrap_or_else(|err| panic!("Stage {name}: {err}"));
        let aliases: Vec<_> = plan.steps.iter().map(|s| s.alias.as_deref()).collect();
        assert_eq!(aliases, [Some("deploy::update")], "Stage {name}");
    }
}
