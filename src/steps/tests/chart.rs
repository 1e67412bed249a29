//! `helm-update-chart` with the real helm (`BARGE_K8S_BIN`) against a
//! classic chart repository: charts packaged and indexed by helm into a
//! temporary directory and served over HTTP by a server the test starts
//! (behind basic auth, for the credentials Secrets).

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::controller::fixtures::{PlanRun, scripted};
use crate::promotion::engine::{StepResult, StepStatus};
use crate::steps::StepRun;

const CHART: &str = "src/charts/app";
const USER: &str = "bot";
const PASSWORD: &str = "chart-s3cret";

/// The helm `make control-plane` built: these specifications prove nothing
/// without it.
fn helm() -> PathBuf {
    let Some(bin) = std::env::var_os("BARGE_K8S_BIN") else {
        panic!(
            "BARGE_K8S_BIN is not set: the chart tests run the real helm; run `make \
             control-plane` and set BARGE_K8S_BIN to the directory it prints (`make test` does both)"
        );
    };
    let helm = Path::new(&bin).join("helm");
    assert!(
        helm.is_file(),
        "{} not found: run `make control-plane`",
        helm.display()
    );
    helm
}

/// Runs the real helm with `args` in a home of its own under `scratch`.
fn run_helm(scratch: &Path, args: &[&str]) {
    let home = scratch.join("helm-home");
    let out = Command::new(helm())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("helm {args:?}: {e}"));
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A classic chart repository served over HTTP on loopback: `sub` at
/// 1.0.0, 1.1.0 and 2.0.0, `db` at 3.0.0 and 3.1.0 (each a ConfigMap).
/// Files are gone when it is dropped.
struct ChartRepo {
    url: String,
    _dir: tempfile::TempDir,
}

/// Packages the charts with helm, indexes them for the server's URL and
/// serves them, asking for `login` (basic auth) when given.
async fn chart_repo(login: Option<(&str, &str)>) -> ChartRepo {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap_or_else(|e| panic!("{e}"));
    for (name, version) in [
        ("sub", "1.0.0"),
        ("sub", "1.1.0"),
        ("sub", "2.0.0"),
        ("db", "3.0.0"),
        ("db", "3.1.0"),
    ] {
        let src = dir.path().join(format!("src/{name}-{version}/{name}"));
        std::fs::create_dir_all(src.join("templates")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            src.join("Chart.yaml"),
            format!("apiVersion: v2\nname: {name}\nversion: {version}\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            src.join("templates/configmap.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  version: \"{version}\"\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (src, repo) = (src.display().to_string(), repo.display().to_string());
        run_helm(dir.path(), &["package", &src, "-d", &repo]);
    }
    let repo_arg = repo.display().to_string();
    run_helm(dir.path(), &["repo", "index", &repo_arg, "--url", &url]);

    let expected =
        login.map(|(user, password)| format!("Basic {}", b64(&format!("{user}:{password}"))));
    let app = Router::new().route(
        "/{file}",
        get(move |UrlPath(file): UrlPath<String>, headers: HeaderMap| {
            let (repo, expected) = (repo.clone(), expected.clone());
            async move {
                let given = headers.get("authorization").and_then(|v| v.to_str().ok());
                if expected.is_some() && given != expected.as_deref() {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Basic realm=\"charts\"")],
                    )
                        .into_response();
                }
                match std::fs::read(repo.join(&file)) {
                    Ok(bytes) if !file.contains("..") => bytes.into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    ChartRepo { url, _dir: dir }
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The umbrella chart `app`, depending on `sub` at `version` from `url`.
fn app_chart(url: &str, version: &str) -> String {
    format!(
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: sub\n  version: {version}\n  repository: {url}\n"
    )
}

/// `helm-update-chart` of the app chart with `charts` (left out when
/// null), then `hold`, which keeps the work directory.
fn update(charts: Value) -> Value {
    let mut config = json!({"path": CHART});
    if !charts.is_null() {
        config["charts"] = charts;
    }
    json!([
        {"uses": "helm-update-chart", "as": "update", "config": config},
        {"uses": "hold", "as": "hold"},
    ])
}

fn sub_at(url: &str, version: &str) -> Value {
    json!([{"repository": url, "name": "sub", "version": version}])
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(CHART).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn archives(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(CHART).join("charts"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn succeeded(status: &Value, steps: usize) {
    for step in 0..steps {
        assert_eq!(
            status["stepExecutionMetadata"][step]["status"], "Succeeded",
            "{status}"
        );
    }
}

fn errored_with(status: &Value, expected: &str) {
    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(expected),
        "{expected:?} not in {message:?}"
    );
}

#[tokio::test]
async fn helm_update_chart_sets_a_configured_version_and_relocks_replacing_the_old_archive() {
    let repo = chart_repo(None).await;
    let plan = json!([
        {"uses": "helm-update-chart", "as": "pin", "config": {
            "path": CHART, "charts": sub_at(&repo.url, "1.0.0")}},
        {"uses": "helm-update-chart", "as": "bump", "config": {
            "path": CHART, "charts": sub_at(&repo.url, "1.1.0")}},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = PlanRun::default()
        .file(
            &format!("{CHART}/Chart.yaml"),
            &app_chart(&repo.url, "0.9.0"),
        )
        .run(plan)
        .await;

    succeeded(&status, 2);
    assert_eq!(read(&dir, "Chart.yaml"), app_chart(&repo.url, "1.1.0"));
    let lock = read(&dir, "Chart.lock");
    assert!(
        lock.starts_with(&format!(
            "dependencies:\n- name: sub\n  repository: {}\n  version: 1.1.0\ndigest: sha256:",
            repo.url
        )),
        "{lock}"
    );
    assert_eq!(archives(&dir), ["sub-1.1.0.tgz"]);
    assert_eq!(
        status["state"]["pin"]["commitMessage"],
        format!("Updated chart dependencies for {CHART}\n\n- sub: 1.0.0")
    );
    assert_eq!(
        status["state"]["bump"]["commitMessage"],
        format!("Updated chart dependencies for {CHART}\n\n- sub: 1.0.0 -> 1.1.0")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_update_chart_without_a_version_takes_the_version_of_the_freights_chart() {
    let repo = chart_repo(None).await;
    let plan = update(json!([{"repository": repo.url, "name": "sub"}]));
    let (status, dir) = PlanRun::default()
        .file(&format!("{CHART}/Chart.yaml"), &app_chart(&repo.url, "1.0.0"))
        .freight_collection(json!({
            "Warehouse/charts": {"name": "charts-f", "origin": {"kind": "Warehouse", "name": "charts"},
                "charts": [{"repoURL": repo.url, "name": "sub", "version": "2.0.0"}]},
        }))
        .run(plan)
        .await;

    succeeded(&status, 1);
    assert_eq!(read(&dir, "Chart.yaml"), app_chart(&repo.url, "2.0.0"));
    assert_eq!(archives(&dir), ["sub-2.0.0.tgz"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_update_chart_changes_only_the_versions_keeping_every_other_byte_of_chart_yaml() {
    let repo = chart_repo(None).await;
    let url = &repo.url;
    let original = format!(
        "# The umbrella chart of the app.\napiVersion: v2\nname: app\n\
         description: \"Umbrella: keeps its quotes\"\nversion: 0.1.0   # its own version stays\n\
         dependencies:\n  - name: db\n    repository: '{url}'\n    version: \"3.0.0\"  # pinned\n    \
         condition: db.enabled\n  - {{name: sub, repository: \"{url}\", version: 1.0.0, tags: [backend]}}\n\
         annotations:\n  example.com/owner: team-a\n"
    );
    let plan = update(json!([
        {"repository": url, "name": "sub", "version": "1.1.0"},
        {"repository": url, "name": "db", "version": "3.1.0"},
    ]));
    let (status, dir) = PlanRun::default()
        .file(&format!("{CHART}/Chart.yaml"), &original)
        .run(plan)
        .await;

    succeeded(&status, 1);
    let expected = original
        .replacen(
            "version: \"3.0.0\"  # pinned",
            "version: \"3.1.0\"  # pinned",
            1,
        )
        .replacen("version: 1.0.0,", "version: 1.1.0,", 1);
    assert_ne!(expected, original);
    assert_eq!(read(&dir, "Chart.yaml"), expected);
    assert_eq!(archives(&dir), ["db-3.1.0.tgz", "sub-1.1.0.tgz"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_update_chart_without_charts_locks_the_newest_versions_chart_yaml_ranges_allow() {
    let repo = chart_repo(None).await;
    let chart = app_chart(&repo.url, "\"^1.0.0\"");
    let (status, dir) = PlanRun::default()
        .file(&format!("{CHART}/Chart.yaml"), &chart)
        .run(update(Value::Null))
        .await;

    succeeded(&status, 1);
    assert_eq!(read(&dir, "Chart.yaml"), chart, "the ranges stay");
    assert!(read(&dir, "Chart.lock").contains("  version: 1.1.0\n"));
    assert_eq!(archives(&dir), ["sub-1.1.0.tgz"]);
    assert_eq!(
        status["state"]["update"]["commitMessage"],
        format!("Updated chart dependencies for {CHART}\n\n- sub: 1.1.0")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_update_chart_to_the_locked_version_leaves_chart_lock_as_it_was_and_outputs_nothing() {
    let repo = chart_repo(None).await;
    // A step of the test's own keeps a copy of Chart.lock between the two.
    let snapshot = scripted("snapshot", |ctx| {
        let dir = ctx
            .services
            .work_dirs
            .of(ctx.subject.promotion_uid)
            .join(CHART);
        let copied = std::fs::copy(dir.join("Chart.lock"), dir.join("Chart.lock.before"));
        StepRun::done(
            copied
                .map(|_| StepResult::new(StepStatus::Succeeded))
                .map_err(|e| crate::steps::terminal(e.to_string())),
        )
    });
    let plan = json!([
        {"uses": "helm-update-chart", "as": "bump", "config": {
            "path": CHART, "charts": sub_at(&repo.url, "1.1.0")}},
        {"uses": "snapshot", "as": "snapshot"},
        {"uses": "helm-update-chart", "as": "again", "config": {
            "path": CHART, "charts": sub_at(&repo.url, "1.1.0")}},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = PlanRun::default()
        .file(
            &format!("{CHART}/Chart.yaml"),
            &app_chart(&repo.url, "1.0.0"),
        )
        .step(snapshot)
        .run(plan)
        .await;

    succeeded(&status, 3);
    assert_eq!(read(&dir, "Chart.lock"), read(&dir, "Chart.lock.before"));
    assert!(
        status["state"]["again"]["commitMessage"].is_null(),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_update_chart_reaches_a_private_repository_with_the_helm_credentials_secret() {
    let repo = chart_repo(Some((USER, PASSWORD))).await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "chart-creds", "namespace": "demo",
                     "labels": {"kargo.akuity.io/cred-type": "helm"}},
        "data": {"repoURL": b64(&repo.url), "username": b64(USER), "password": b64(PASSWORD)},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let (status, dir) = PlanRun::default()
        .with(&secret)
        .file(
            &format!("{CHART}/Chart.yaml"),
            &app_chart(&repo.url, "1.0.0"),
        )
        .run(update(sub_at(&repo.url, "1.1.0")))
        .await;

    succeeded(&status, 1);
    assert_eq!(archives(&dir), ["sub-1.1.0.tgz"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_update_chart_of_a_private_repository_without_credentials_errors_with_helms_message() {
    let repo = chart_repo(Some((USER, PASSWORD))).await;
    let (status, _) = PlanRun::default()
        .file(
            &format!("{CHART}/Chart.yaml"),
            &app_chart(&repo.url, "1.0.0"),
        )
        .run(update(sub_at(&repo.url, "1.1.0")))
        .await;

    errored_with(&status, "config.path: helm dependency update: helm failed");
    errored_with(
        &status,
        &format!("failed to fetch {}/index.yaml : 401 Unauthorized", repo.url),
    );
}

#[tokio::test]
async fn helm_update_chart_to_a_version_the_repository_lacks_errors_with_helms_message() {
    let repo = chart_repo(None).await;
    let (status, _) = PlanRun::default()
        .file(
            &format!("{CHART}/Chart.yaml"),
            &app_chart(&repo.url, "1.0.0"),
        )
        .run(update(sub_at(&repo.url, "9.9.9")))
        .await;

    errored_with(
        &status,
        "config.path: helm dependency update: helm failed (exit status: 1): ",
    );
    errored_with(
        &status,
        "can't get a valid version for 1 subchart(s): \"sub\"",
    );
}

#[tokio::test]
async fn helm_update_chart_that_helm_cannot_lock_leaves_chart_yaml_as_it_was_for_the_retry() {
    let repo = chart_repo(None).await;
    let chart = app_chart(&repo.url, "1.0.0");
    // Retried, so the Promotion keeps running and its files stay.
    let plan = json!([{"uses": "helm-update-chart", "as": "update", "retry": {"errorThreshold": 3},
        "config": {"path": CHART, "charts": sub_at(&repo.url, "9.9.9")}}]);
    let (status, dir) = PlanRun::default()
        .file(&format!("{CHART}/Chart.yaml"), &chart)
        .run(plan)
        .await;

    let step = &status["stepExecutionMetadata"][0];
    assert_eq!(step["status"], "Running", "{status}");
    assert_eq!(step["errorCount"], 1, "{status}");
    assert_eq!(read(&dir, "Chart.yaml"), chart);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn helm_update_chart_without_a_version_or_a_freight_chart_errors_naming_the_field() {
    let plan = update(json!([{"repository": "https://charts.example.com", "name": "sub"}]));
    let (status, _) = PlanRun::default()
        .file(
            &format!("{CHART}/Chart.yaml"),
            &app_chart("https://charts.example.com", "1.0.0"),
        )
        .run(plan)
        .await;

    errored_with(
        &status,
        "config.charts[0].version: not given, and no Freight the Stage will hold has a chart \
         from https://charts.example.com named \"sub\"",
    );
}

#[tokio::test]
async fn helm_update_chart_of_a_dependency_not_in_chart_yaml_errors_naming_the_entry() {
    let url = "https://charts.example.com";
    let plan = update(json!([{"repository": url, "name": "other", "version": "1.0.0"}]));
    let (status, _) = PlanRun::default()
        .file(&format!("{CHART}/Chart.yaml"), &app_chart(url, "1.0.0"))
        .run(plan)
        .await;

    errored_with(
        &status,
        "config.charts[0]: no dependency in \"src/charts/app/Chart.yaml\" has repository \
         \"https://charts.example.com\" and name \"other\"",
    );
}

#[tokio::test]
async fn helm_update_chart_of_a_directory_without_chart_yaml_errors_naming_the_path() {
    let plan = json!([{"uses": "helm-update-chart", "as": "update", "config": {
        "path": "src/charts/none", "charts": sub_at("https://charts.example.com", "1.0.0")}}]);
    let (status, _) = PlanRun::default()
        .file("src/charts/none/values.yaml", "{}\n")
        .run(plan)
        .await;

    errored_with(
        &status,
        "config.path: \"src/charts/none/Chart.yaml\" does not exist in the work directory",
    );
}

#[tokio::test]
async fn helm_update_chart_refuses_a_path_that_leaves_the_work_directory() {
    let plan = json!([{"uses": "helm-update-chart", "as": "update", "config": {
        "path": "../promotion-other/src/charts/app"}}]);
    let (status, _) = PlanRun::default().run(plan).await;

    errored_with(
        &status,
        "config.path: \"../promotion-other/src/charts/app\" leaves the work directory",
    );
}

#[tokio::test]
async fn helm_update_chart_refuses_a_local_dependency_outside_the_work_directory() {
    let chart = "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n\
                 - name: lib\n  version: 0.1.0\n  repository: file://../../../../lib\n";
    let (status, _) = PlanRun::default()
        .file(&format!("{CHART}/Chart.yaml"), chart)
        .run(update(Value::Null))
        .await;

    errored_with(
        &status,
        "config.path: dependency lib: \"../../../../lib\" leaves the work directory",
    );
}
