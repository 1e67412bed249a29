//! The rendering steps' behaviour with the real kustomize and helm that
//! `make control-plane` builds (`BARGE_K8S_BIN`), run by the Promotion
//! reconciler over a work directory: given these files and this plan, the
//! files and status after.

use std::path::Path;

use serde_json::{Value, json};

use crate::controller::fixtures::{PlanRun, scripted};
use crate::promotion::engine::{StepResult, StepStatus};
use crate::steps::StepRun;

/// These specifications prove nothing if they pass without the tools.
fn require_tools() {
    let Some(bin) = std::env::var_os("BARGE_K8S_BIN") else {
        panic!(
            "BARGE_K8S_BIN is not set: the rendering tests run the real kustomize and helm; \
             run `make control-plane` and set BARGE_K8S_BIN to the directory it prints \
             (`make test` does both)"
        );
    };
    for tool in ["kustomize", "helm"] {
        let path = Path::new(&bin).join(tool);
        assert!(
            path.is_file(),
            "{} not found: run `make control-plane`",
            path.display()
        );
    }
}

fn step_status(status: &Value, step: usize) -> &Value {
    &status["stepExecutionMetadata"][step]["status"]
}

fn message(status: &Value) -> &str {
    status["message"].as_str().unwrap_or_default()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A base (a Deployment of nginx:1.0 and its Service) and a `dev` overlay
/// that moves them into the dev namespace, adds the Namespace and sets the
/// image tag to 1.27.
fn kustomizations() -> PlanRun {
    PlanRun::default()
        .file(
            "src/base/kustomization.yaml",
            "resources:\n- deployment.yaml\n- service.yaml\n",
        )
        .file(
            "src/base/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  \
             template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n",
        )
        .file(
            "src/base/service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
        )
        .file(
            "src/overlays/dev/kustomization.yaml",
            "namespace: dev\nresources:\n- ../../base\n- namespace.yaml\nimages:\n- name: nginx\n  newTag: \"1.27\"\n",
        )
        .file(
            "src/overlays/dev/namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dev\n",
        )
}

fn kustomize_build(config: Value) -> Value {
    json!([
        {"uses": "kustomize-build", "as": "render", "config": config},
        {"uses": "hold", "as": "hold"},
    ])
}

#[tokio::test]
async fn kustomize_build_renders_an_overlay_with_its_image_override_into_one_file() {
    require_tools();
    let plan = kustomize_build(json!({"path": "./src/overlays/dev", "outPath": "./out/dev.yaml"}));
    let (status, dir) = kustomizations().run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    let rendered = read(&dir, "out/dev.yaml");
    assert!(rendered.contains("image: nginx:1.27"), "{rendered}");
    assert!(!rendered.contains("nginx:1.0"), "{rendered}");
    assert_eq!(rendered.matches("namespace: dev").count(), 2, "{rendered}");
    assert_eq!(
        rendered.matches("\n---\n").count(),
        2,
        "three documents: {rendered}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn kustomize_build_into_a_directory_writes_a_file_per_resource_named_namespace_kind_name() {
    require_tools();
    let plan = kustomize_build(json!({"path": "src/overlays/dev", "outPath": "out/dev"}));
    let (status, dir) = kustomizations().run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    assert_eq!(
        names_in(&dir.join("out/dev")),
        [
            "dev-deployment-web.yaml",
            "dev-service-web.yaml",
            "namespace-dev.yaml"
        ]
    );
    let deployment = read(&dir, "out/dev/dev-deployment-web.yaml");
    assert!(
        deployment.starts_with("apiVersion: apps/v1\nkind: Deployment\n"),
        "{deployment}"
    );
    assert!(deployment.contains("image: nginx:1.27"), "{deployment}");
    assert!(!deployment.contains("---"), "{deployment}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn kustomize_build_with_the_kustomize_output_format_names_files_as_kustomize_does() {
    require_tools();
    let plan = kustomize_build(json!({
        "path": "src/overlays/dev", "outPath": "out", "outputFormat": "kustomize"}));
    let (status, dir) = kustomizations().run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    // One namespace (the Namespace itself is cluster-scoped): no prefix.
    assert_eq!(
        names_in(&dir.join("out")),
        [
            "apps_v1_deployment_web.yaml",
            "v1_namespace_dev.yaml",
            "v1_service_web.yaml"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn kustomize_build_of_a_missing_path_errors_naming_the_field() {
    require_tools();
    let plan = kustomize_build(json!({"path": "src/overlays/prod", "outPath": "out.yaml"}));
    let (status, _) = kustomizations().run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        message(&status)
            .ends_with("config.path: \"src/overlays/prod\" does not exist in the work directory"),
        "{status}"
    );
}

#[tokio::test]
async fn kustomize_build_refuses_a_path_that_leaves_the_work_directory() {
    require_tools();
    let plan = kustomize_build(json!({"path": "../promotion-other/src", "outPath": "out.yaml"}));
    let (status, _) = kustomizations().run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        message(&status)
            .contains("config.path: \"../promotion-other/src\" leaves the work directory"),
        "{status}"
    );
}

#[tokio::test]
async fn kustomize_build_refuses_a_kustomization_whose_base_lies_outside_the_work_directory() {
    require_tools();
    let plan = kustomize_build(json!({"path": "src/overlays/dev", "outPath": "out.yaml"}));
    let run = kustomizations().file(
        "src/overlays/dev/kustomization.yaml",
        "resources:\n- ../../../../promotion-other/src/base\n",
    );
    let (status, _) = run.run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        message(&status).contains(
            "config.path: src/overlays/dev/kustomization.yaml: resources: \
             \"../../../../promotion-other/src/base\" leaves the work directory"
        ),
        "{status}"
    );
}

#[tokio::test]
async fn kustomize_build_of_a_broken_kustomization_errors_with_kustomizes_message() {
    require_tools();
    let plan = kustomize_build(json!({"path": "src/overlays/dev", "outPath": "out.yaml"}));
    let run = kustomizations().file(
        "src/overlays/dev/kustomization.yaml",
        "resources:\n- ../../base\n- missing.yaml\n",
    );
    let (status, dir) = run.run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = message(&status);
    assert!(
        message.contains("config.path: kustomize build: kustomize failed (exit status: 1): "),
        "{message}"
    );
    assert!(
        message.contains("Error: accumulating resources")
            && message.contains("src/overlays/dev/missing.yaml"),
        "{message}"
    );
    // Paths are shown relative to the work directory.
    let work = dir.canonicalize().unwrap_or(dir);
    assert!(!message.contains(&work.display().to_string()), "{message}");
}

#[tokio::test]
async fn kustomize_build_inflates_a_helm_chart_with_the_plugins_kube_and_api_versions() {
    require_tools();
    let plan = kustomize_build(json!({
        "path": "src/app", "outPath": "out/app.yaml",
        "plugin": {"helm": {"kubeVersion": "1.31.2", "apiVersions": ["example.com/v1/Widget"]}}}));
    let run = PlanRun::default()
        .file(
            "src/app/kustomization.yaml",
            "helmCharts:\n- name: probe\n  releaseName: shop\n",
        )
        .file(
            "src/app/charts/probe/Chart.yaml",
            "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
        )
        .file("src/app/charts/probe/values.yaml", "{}\n")
        .file(
            "src/app/charts/probe/templates/capabilities.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  \
             kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  \
             widgets: {{ .Capabilities.APIVersions.Has \"example.com/v1/Widget\" | quote }}\n",
        );
    let (status, dir) = run.run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    let rendered = read(&dir, "out/app.yaml");
    assert!(rendered.contains("kube: v1.31.2"), "{rendered}");
    assert!(rendered.contains("widgets: \"true\""), "{rendered}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chart `web` (a Deployment of nginx:<image.tag> with `replicas`, in the
/// release's namespace, and a ConfigMap with `greeting`) and a values file
/// for the dev stage.
fn chart() -> PlanRun {
    PlanRun::default()
        .file(
            "src/charts/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        )
        .file(
            "src/charts/web/values.yaml",
            "image:\n  tag: \"1.0\"\nreplicas: 1\ngreeting: hello\n",
        )
        .file(
            "src/charts/web/templates/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\n  \
             namespace: {{ .Release.Namespace }}\nspec:\n  replicas: {{ .Values.replicas }}\n  \
             template:\n    spec:\n      containers:\n      - name: web\n        \
             image: \"nginx:{{ .Values.image.tag }}\"\n",
        )
        .file(
            "src/charts/web/templates/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\n\
             data:\n  greeting: {{ .Values.greeting | quote }}\n",
        )
        .file(
            "src/stages/dev.yaml",
            "image:\n  tag: \"2.0\"\nreplicas: 3\n",
        )
}

fn helm_template(config: Value) -> Value {
    let mut config = config;
    config["path"] = json!("./src/charts/web");
    config["releaseName"] = json!("shop");
    json!([
        {"uses": "helm-template", "as": "render", "config": config},
        {"uses": "hold", "as": "hold"},
    ])
}

#[tokio::test]
async fn helm_template_renders_a_chart_with_values_files_and_set_values_into_one_file() {
    require_tools();
    let plan = helm_template(json!({
        "outPath": "out/web.yaml",
        "valuesFiles": ["src/stages/dev.yaml"],
        "setValues": [{"key": "greeting", "value": "hi"}, {"key": "replicas", "value": "4"}],
    }));
    let (status, dir) = chart().run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    let rendered = read(&dir, "out/web.yaml");
    assert!(
        rendered.starts_with("---\n# Source: web/templates/"),
        "{rendered}"
    );
    assert!(rendered.contains("image: \"nginx:2.0\""), "{rendered}");
    assert!(
        rendered.contains("replicas: 4"),
        "setValues win: {rendered}"
    );
    assert!(rendered.contains("greeting: \"hi\""), "{rendered}");
    assert!(rendered.contains("name: shop-web"), "{rendered}");
    // No namespace given: the Promotion's.
    assert!(rendered.contains("namespace: demo"), "{rendered}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_template_into_a_directory_lays_files_out_as_helm_does_under_the_chart_name() {
    require_tools();
    let plan = helm_template(json!({"outPath": "out", "namespace": "web-dev"}));
    let (status, dir) = chart().file("out/README.md", "kept").run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    assert_eq!(names_in(&dir.join("out")), ["README.md", "web"]);
    assert_eq!(
        names_in(&dir.join("out/web/templates")),
        ["configmap.yaml", "deployment.yaml"]
    );
    let deployment = read(&dir, "out/web/templates/deployment.yaml");
    assert!(
        deployment.starts_with("---\n# Source: web/templates/deployment.yaml\n"),
        "{deployment}"
    );
    assert!(deployment.contains("namespace: web-dev"), "{deployment}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_template_with_the_flat_layout_writes_a_file_per_resource_named_group_kind_namespace_name()
 {
    require_tools();
    let plan = helm_template(json!({"outPath": "out", "outLayout": "flat"}));
    let (status, dir) = chart().run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    assert_eq!(
        names_in(&dir.join("out")),
        [
            "apps-deployment-demo-shop-web.yaml",
            "configmap-shop-config.yaml"
        ]
    );
    let configmap = read(&dir, "out/configmap-shop-config.yaml");
    assert_eq!(
        configmap,
        "# Source: web/templates/configmap.yaml\napiVersion: v1\nkind: ConfigMap\n\
         metadata:\n  name: shop-config\ndata:\n  greeting: \"hello\""
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_template_with_a_missing_values_file_errors_naming_it() {
    require_tools();
    let plan = helm_template(json!({
        "outPath": "out/web.yaml", "valuesFiles": ["src/stages/dev.yaml", "src/stages/prod.yaml"]}));
    let (status, _) = chart().run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        message(&status).ends_with(
            "config.valuesFiles[1]: \"src/stages/prod.yaml\" does not exist in the work directory"
        ),
        "{status}"
    );
}

#[tokio::test]
async fn helm_template_skips_a_missing_values_file_when_told_to_ignore_them() {
    require_tools();
    let plan = helm_template(json!({
        "outPath": "out/web.yaml", "valuesFiles": ["src/stages/prod.yaml"],
        "ignoreMissingValueFiles": true}));
    let (status, dir) = chart().run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    assert!(read(&dir, "out/web.yaml").contains("nginx:1.0"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_template_refuses_a_chart_with_a_symlink_out_of_the_work_directory() {
    require_tools();
    // A step of the test's own plants the link, as a cloned repository could.
    let plant = scripted("plant-link", |ctx| {
        let dir = ctx.services.work_dirs.of(ctx.subject.promotion_uid);
        let link = dir.join("src/charts/web/templates/secret.yaml");
        let planted = std::os::unix::fs::symlink("/etc/hostname", link);
        StepRun::done(
            planted
                .map(|()| StepResult::new(StepStatus::Succeeded))
                .map_err(|e| crate::steps::terminal(e.to_string())),
        )
    });
    let plan = json!([
        {"uses": "plant-link", "as": "plant"},
        {"uses": "helm-template", "as": "render", "config": {
            "path": "src/charts/web", "releaseName": "shop", "outPath": "out.yaml"}},
    ]);
    let (status, _) = chart().step(plant).run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        message(&status)
            .ends_with("config.path: templates/secret.yaml links out of the work directory"),
        "{status}"
    );
}

/// The chart made to depend on a library chart `greeter` beside it (a
/// ConfigMap of its own), by a relative `file://` repository.
fn chart_with_dependency() -> PlanRun {
    chart()
        .file(
            "src/charts/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n\
             - name: greeter\n  version: 0.2.0\n  repository: file://../greeter\n",
        )
        .file(
            "src/charts/greeter/Chart.yaml",
            "apiVersion: v2\nname: greeter\nversion: 0.2.0\n",
        )
        .file(
            "src/charts/greeter/templates/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeter\ndata:\n  from: dependency\n",
        )
}

#[tokio::test]
async fn helm_template_builds_the_charts_dependencies_first_when_asked() {
    require_tools();
    let plan = helm_template(json!({"outPath": "out/web.yaml", "buildDependencies": true}));
    let (status, dir) = chart_with_dependency().run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    assert!(
        dir.join("src/charts/web/charts/greeter-0.2.0.tgz")
            .is_file()
    );
    let rendered = read(&dir, "out/web.yaml");
    assert!(
        rendered.contains("# Source: web/charts/greeter/templates/configmap.yaml"),
        "{rendered}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_template_of_a_chart_missing_its_dependencies_errors_with_helms_message() {
    require_tools();
    let plan = helm_template(json!({"outPath": "out/web.yaml"}));
    let (status, _) = chart_with_dependency().run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = message(&status);
    assert!(
        message.contains("config.path: helm template: helm failed (exit status: 1): ")
            && message.contains("missing in charts/ directory: greeter"),
        "{message}"
    );
}

#[tokio::test]
async fn helm_template_skips_test_hooks_but_keeps_other_hooks_when_told_to_skip_tests() {
    require_tools();
    let hook = |name: &str, event: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations:\n    \
             helm.sh/hook: {event}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
        )
    };
    let run = chart()
        .file(
            "src/charts/web/templates/tests/ping.yaml",
            &hook("ping", "test"),
        )
        .file(
            "src/charts/web/templates/migrate.yaml",
            &hook("migrate", "pre-install"),
        );
    let plan = helm_template(json!({"outPath": "out/web.yaml", "skipTests": true}));
    let (status, dir) = run.run(plan).await;

    assert_eq!(step_status(&status, 0), "Succeeded", "{status}");
    let rendered = read(&dir, "out/web.yaml");
    assert!(
        rendered.contains("# Source: web/templates/migrate.yaml\n"),
        "{rendered}"
    );
    assert!(!rendered.contains("name: ping"), "{rendered}");
    let _ = std::fs::remove_dir_all(&dir);
}
