//! The `barge` CLI run as a user runs it, against a real kube-apiserver, a
//! Barge controller and the Argo CD double: promote (and follow) a
//! Promotion, list and describe what there is, abort, approve, refresh, as
//! a kubectl plugin and with shell completions.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use barge::api::{Freight, Promotion, PromotionPhase, Stage};
use kube::api::{Api, ListParams};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use support::{Error, Harness, TestResult, auto_stage_with, stage, step};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Exit codes `promote --wait` documents.
const EXIT_FAILED: i32 = 3;
const EXIT_ERRORED: i32 = 4;
const EXIT_ABORTED: i32 = 5;

/// The `barge` binary run with `args`, the control plane's kubeconfig and
/// the project namespace (asynchronously: the controller runs in this
/// process and must not be held up).
fn command(h: &Harness, args: &[&str]) -> tokio::process::Command {
    let mut cmd = bare(args);
    cmd.args(["-n", &h.ns, "--kubeconfig"])
        .arg(h.env.kubeconfig_path());
    cmd
}

/// The `barge` binary run with `args` alone (no kubeconfig from the
/// environment).
fn bare(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barge"));
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env_remove("BARGE_KUBECONFIG");
    cmd
}

async fn barge(h: &Harness, args: &[&str]) -> Result<Output, Error> {
    Ok(command(h, args).output().await?)
}

/// The standard output of a `barge` run that must succeed.
async fn barge_ok(h: &Harness, args: &[&str]) -> Result<String, Error> {
    support::succeeded(&format!("barge {args:?}"), barge(h, args).await?)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Freight `f1` (alias `brave-otter`) of Warehouse `demo`, and Stage `dev`
/// taking it directly, syncing its Application (the double's `knobs` as
/// annotations) in its one step `update`.
async fn dev_with_app(h: &Harness, knobs: Value) -> TestResult {
    let mut freight = h.freight("f1", support::COMMIT);
    freight["alias"] = json!("brave-otter");
    h.apply(json!([
        h.dev_application(knobs),
        freight,
        stage("dev", json!([Harness::update_app(&h.app_name("dev"))])),
    ]))
    .await
}

/// Freight `f1` and Stage `dev`, whose one step `stop` fails.
async fn dev_that_fails(h: &Harness) -> TestResult {
    h.apply(json!([
        h.freight("f1", support::COMMIT),
        stage(
            "dev",
            json!([step("stop", "fail", json!({"message": "not today"}))])
        ),
    ]))
    .await
}

/// The Promotions of Stage `stage`.
async fn promotions_of(h: &Harness, stage: &str) -> Result<Vec<Promotion>, Error> {
    let api: Api<Promotion> = Api::namespaced(h.client.clone(), &h.ns);
    let all = api.list(&ListParams::default()).await?.items;
    Ok(all.into_iter().filter(|p| p.spec.stage == stage).collect())
}

/// The Promotion's name from `promote`'s first line ("Promotion NAME created: …").
fn created_name(line: &str) -> Result<String, Error> {
    line.strip_prefix("Promotion ")
        .and_then(|rest| rest.split(' ').next())
        .map(str::to_string)
        .ok_or_else(|| format!("not a creation line: {line:?}").into())
}

/// `promote --stage dev --wait` started: the child and the Promotion's name.
async fn promote_and_wait(h: &Harness) -> Result<(tokio::process::Child, String), Error> {
    let mut child = command(h, &["promote", "--stage", "dev", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    let name = created_name(&first)?;
    // Keep draining what follows so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, name))
}

#[tokio::test]
async fn promote_without_freight_takes_the_newest_available_and_wait_exits_0_on_success()
-> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_with_app(&h, json!({})).await?;
    let out = barge(&h, &["promote", "--stage", "dev", "--wait"]).await?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let said = stdout(&out);
    assert!(
        said.contains("Freight f1 (brave-otter) to Stage dev"),
        "{said}"
    );
    assert!(said.contains("update (argocd-update): Succeeded"), "{said}");
    // The Freight by its alias throughout, also before the plan names it.
    let phases: Vec<&str> = said.lines().filter(|l| l.contains(" to dev: ")).collect();
    assert!(
        !phases.is_empty()
            && phases
                .iter()
                .all(|l| l.contains(" of brave-otter to dev: ")),
        "{said}"
    );
    let promotions = promotions_of(&h, "dev").await?;
    assert_eq!(promotions.len(), 1);
    let p = &promotions[0];
    assert_eq!(p.spec.freight, "f1");
    assert_eq!(p.phase(), PromotionPhase::Succeeded);
    let name = p.metadata.name.clone().unwrap_or_default();
    assert!(name.starts_with("dev.") && name.ends_with(".f1"), "{name}");
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn promote_wait_on_a_terminal_draws_in_place() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_with_app(&h, json!({})).await?;
    let kubeconfig = h.env.kubeconfig_path().display().to_string();
    let words = [
        env!("CARGO_BIN_EXE_barge"),
        "promote",
        "--stage",
        "dev",
        "--wait",
        "-n",
        &h.ns,
        "--kubeconfig",
        &kubeconfig,
    ];
    let line = words.map(|w| format!("'{w}'")).join(" ");
    // util-linux's script runs the command on a pseudo-terminal.
    let out = tokio::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("KUBECONFIG")
        .output()
        .await?;
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{said}{}", stderr(&out));
    assert!(
        said.contains("\x1b[?7l"),
        "not drawn as on a terminal: {said:?}"
    );
    assert!(
        said.contains("update (argocd-update): Succeeded"),
        "{said:?}"
    );
    h.shutdown().await;
    Ok(())
}

/// Runs `barge promote --stage dev --freight <freight> --wait` and checks
/// how it exits and that its display says `says`.
async fn promote_wait_ends(h: &Harness, freight: &str, code: i32, says: &str) -> TestResult {
    let out = barge(
        h,
        &["promote", "--stage", "dev", "--freight", freight, "--wait"],
    )
    .await?;
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains(says), "{}", stdout(&out));
    Ok(())
}

#[tokio::test]
async fn promote_wait_exits_3_when_a_step_fails() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_that_fails(&h).await?;
    promote_wait_ends(&h, "f1", EXIT_FAILED, "stop (fail): Failed - not today").await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn promote_wait_exits_4_when_a_step_errors() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let knobs = json!({"double.barge.dev/outcome": "fail:quota exceeded"});
    dev_with_app(&h, knobs).await?;
    promote_wait_ends(&h, "brave-otter", EXIT_ERRORED, "quota exceeded").await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn abort_ends_a_waiting_promotion_and_promote_wait_exits_5() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_with_app(&h, json!({"double.barge.dev/outcome": "hang"})).await?;
    let (child, name) = promote_and_wait(&h).await?;
    h.until_awaiting(&name).await?;
    let said = barge_ok(&h, &["abort", "promotion", &name]).await?;
    assert!(
        said.contains(&format!("Promotion {name} asked to abort")),
        "{said}"
    );
    let out = child.wait_with_output().await?;
    assert_eq!(out.status.code(), Some(EXIT_ABORTED), "{}", stderr(&out));
    let again = barge(&h, &["abort", "promotion", &name]).await?;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("has already ended (Aborted)"),
        "{}",
        stderr(&again)
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn promote_refuses_a_stage_with_no_available_freight() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let upstream = step("stop", "fail", json!({}));
    h.apply(json!([
        h.freight("f1", support::COMMIT),
        auto_stage_with("prod", Some("staging"), json!([upstream])),
    ]))
    .await?;
    let out = barge(&h, &["promote", "--stage", "prod"]).await?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no Freight is available to Stage prod"),
        "{}",
        stderr(&out)
    );
    let named = barge(&h, &["promote", "--stage", "prod", "--freight", "f1"]).await?;
    assert_eq!(named.status.code(), Some(1));
    assert!(
        stderr(&named).contains("Freight f1 is not available to Stage prod"),
        "{}",
        stderr(&named)
    );
    assert!(promotions_of(&h, "prod").await?.is_empty());
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn describe_promotion_shows_the_plan_and_what_the_running_step_waits_on() -> TestResult {
    let h = Harness::start(|c| c).await?;
    h.promote_app(json!({"double.barge.dev/outcome": "hang"}))
        .await?;
    h.until_awaiting("p1").await?;
    let text = barge_ok(&h, &["describe", "promotion", "p1"]).await?;
    for want in [
        "Name:      p1",
        "Stage:     dev",
        "Phase:     Running",
        "ALIAS",
        "update",
        "argocd-update",
        "Waiting:",
        &format!("update: Application {}/{}", h.argocd_ns, h.app_name("dev")),
        "since:",
        "next check:",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    h.abort("p1").await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn get_lists_each_kind_with_the_columns_users_look_for() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_with_app(&h, json!({})).await?;
    h.apply(json!([{
        "apiVersion": "barge.dev/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": "demo"},
        "spec": {"interval": "1h", "subscriptions": [{"git": {"repoURL": "https://git.example.com/demo/app.git"}}]},
    }]))
    .await?;
    let out = barge(&h, &["promote", "--stage", "dev", "--wait"]).await?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let freight_api: Api<Freight> = Api::namespaced(h.client.clone(), &h.ns);
    let in_dev = |f: Option<&Freight>| {
        f.and_then(|f| f.status.as_ref())
            .is_some_and(|s| s.currently_in.contains_key("dev"))
    };
    tokio::time::timeout(
        support::PATIENCE,
        await_condition(freight_api, "f1", in_dev),
    )
    .await??;
    h.stage_until("dev", "f1 current", support::healthy_with("f1"))
        .await?;

    let stages = barge_ok(&h, &["get", "stages"]).await?;
    assert!(stages.starts_with("NAME   FREIGHT"), "{stages}");
    let row: Vec<&str> = stages
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..4),
        Some(&["dev", "brave-otter", "Healthy", "Succeeded"][..]),
        "{stages}"
    );
    let promotions = barge_ok(&h, &["get", "promotions"]).await?;
    assert!(
        promotions.contains("brave-otter") && promotions.contains("Succeeded   1/1"),
        "{promotions}"
    );
    let freight = barge_ok(&h, &["get", "freight", "brave-otter", "-o", "wide"]).await?;
    assert!(
        freight.contains("Warehouse/demo") && freight.contains("app@abc1234"),
        "{freight}"
    );
    assert!(
        freight.lines().nth(1).is_some_and(|l| l.contains(" dev ")),
        "{freight}"
    );
    let warehouses = barge_ok(&h, &["get", "warehouses"]).await?;
    let row: Vec<&str> = warehouses
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..3),
        Some(&["demo", "1", "brave-otter"][..]),
        "{warehouses}"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn get_prints_one_named_object_as_json_and_several_as_a_yaml_list() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_that_fails(&h).await?;
    let json_text = barge_ok(&h, &["get", "stage", "dev", "-o", "json"]).await?;
    let stage: Stage = serde_json::from_str(&json_text)?;
    assert_eq!(stage.metadata.name.as_deref(), Some("dev"));
    let yaml = barge_ok(&h, &["get", "freight", "-o", "yaml"]).await?;
    assert!(
        yaml.contains("kind: List") && yaml.contains("name: f1"),
        "{yaml}"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn get_of_a_missing_name_says_not_found_and_fails() -> TestResult {
    let h = Harness::start(|c| c).await?;
    let out = barge(&h, &["get", "promotions", "nope"]).await?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("promotion \"nope\" not found"),
        "{}",
        stderr(&out)
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn get_all_namespaces_adds_a_namespace_column() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_that_fails(&h).await?;
    let mut get = bare(&["get", "stages", "-A", "--kubeconfig"]);
    let out = support::succeeded("get -A", get.arg(h.env.kubeconfig_path()).output().await?)?;
    assert!(out.starts_with("NAMESPACE"), "{out}");
    assert!(
        out.lines().any(|l| {
            // Column widths follow the longest namespace, which other tests create.
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.get(..2) == Some(&[h.ns.as_str(), "dev"][..])
        }),
        "{out}"
    );
    h.shutdown().await;
    Ok(())
}

/// A copy of the control plane's kubeconfig with one more context,
/// `project`, of namespace `ns`, made the current one if `current`.
fn kubeconfig_with_project(
    h: &Harness,
    dir: &Path,
    ns: &str,
    current: bool,
) -> Result<PathBuf, Error> {
    let text = std::fs::read_to_string(h.env.kubeconfig_path())?;
    let mut config: Value = serde_saphyr::from_str(&text)?;
    let mut project = config["contexts"][0].clone();
    project["name"] = json!("project");
    project["context"]["namespace"] = json!(ns);
    if let Some(contexts) = config["contexts"].as_array_mut() {
        contexts.push(project);
    }
    if current {
        config["current-context"] = json!("project");
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config)?)?;
    Ok(path)
}

/// `barge get stages` with `kubeconfig` and `flags`, and no namespace flag.
async fn stages_with(kubeconfig: &Path, flags: &[&str]) -> Result<String, Error> {
    let mut get = bare(&["get", "stages"]);
    get.args(flags).arg("--kubeconfig").arg(kubeconfig);
    support::succeeded("get stages", get.output().await?)
}

#[tokio::test]
async fn without_a_namespace_flag_the_current_contexts_namespace_is_used() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_that_fails(&h).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = kubeconfig_with_project(&h, dir.path(), &h.ns, true)?;
    let out = stages_with(&kubeconfig, &[]).await?;
    assert!(out.lines().any(|l| l.starts_with("dev ")), "{out}");
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn context_chooses_another_context_of_the_kubeconfig_and_its_namespace() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_that_fails(&h).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = kubeconfig_with_project(&h, dir.path(), &h.ns, false)?;
    let elsewhere = stages_with(&kubeconfig, &[]).await?;
    assert!(
        !elsewhere.lines().any(|l| l.starts_with("dev ")),
        "{elsewhere}"
    );
    let out = stages_with(&kubeconfig, &["--context", "project"]).await?;
    assert!(out.lines().any(|l| l.starts_with("dev ")), "{out}");
    h.shutdown().await;
    Ok(())
}

/// The refresh token `barge refresh` reports ("… (TOKEN)").
fn refresh_token(said: &str) -> Result<String, Error> {
    said.rsplit_once('(')
        .and_then(|(_, t)| t.trim().strip_suffix(')'))
        .map(str::to_string)
        .ok_or_else(|| format!("no token in {said:?}").into())
}

#[tokio::test]
async fn refresh_of_a_waiting_promotion_is_handled_by_the_controller() -> TestResult {
    let h = Harness::start(|c| c).await?;
    h.promote_app(json!({"double.barge.dev/outcome": "hang"}))
        .await?;
    h.until_awaiting("p1").await?;
    let token = refresh_token(&barge_ok(&h, &["refresh", "--promotion", "p1"]).await?)?;
    h.until("p1", "the refresh handled", move |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.last_handled_refresh == token)
    })
    .await?;
    h.abort("p1").await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn refresh_of_a_stage_is_handled_by_the_controller() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_that_fails(&h).await?;
    let token = refresh_token(&barge_ok(&h, &["refresh", "--stage", "dev"]).await?)?;
    h.stage_until("dev", "the refresh handled", move |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.last_handled_refresh == token)
    })
    .await?;
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn approve_lets_a_stage_take_freight_not_verified_upstream() -> TestResult {
    let h = Harness::start(|c| c).await?;
    h.apply(json!([
        h.freight("f1", support::COMMIT),
        auto_stage_with(
            "prod",
            Some("staging"),
            json!([step("stop", "fail", json!({}))])
        ),
    ]))
    .await?;
    barge_ok(&h, &["approve", "--freight", "f1", "--stage", "prod"]).await?;
    let f: Freight = Api::namespaced(h.client.clone(), &h.ns).get("f1").await?;
    assert!(
        f.status
            .unwrap_or_default()
            .approved_for
            .contains_key("prod")
    );
    h.shutdown().await;
    Ok(())
}

/// A directory holding links to `barge` under `names`, and a PATH with it
/// first (the directory lives as long as the handle).
fn plugin_on_path(names: &[&str]) -> Result<(tempfile::TempDir, String), Error> {
    let dir = tempfile::tempdir()?;
    for name in names {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_barge"), dir.path().join(name))?;
    }
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ok((dir, path))
}

#[tokio::test]
async fn kubectl_runs_barge_as_a_plugin_named_kubectl_barge() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_that_fails(&h).await?;
    let (_dir, path) = plugin_on_path(&["kubectl-barge"])?;
    let kubectl = barge_testenv::bin_dir().join("kubectl");
    let run = |args: &[&str]| {
        tokio::process::Command::new(&kubectl)
            .arg("barge")
            .args(args)
            .env("PATH", &path)
            .output()
    };
    let kubeconfig = h.env.kubeconfig_path().display().to_string();
    let stages = support::succeeded(
        "kubectl barge get stages",
        run(&["get", "stages", "-n", &h.ns, "--kubeconfig", &kubeconfig]).await?,
    )?;
    assert!(stages.lines().any(|l| l.starts_with("dev ")), "{stages}");
    let help = support::succeeded("kubectl barge --help", run(&["--help"]).await?)?;
    assert!(help.contains("Usage: kubectl barge <COMMAND>"), "{help}");
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn kubectl_completes_kubectl_barge_through_kubectl_complete_barge() -> TestResult {
    let h = Harness::start(|c| c).await?;
    dev_with_app(&h, json!({})).await?;
    let (_dir, path) = plugin_on_path(&["kubectl-barge", "kubectl_complete-barge"])?;
    let kubectl = barge_testenv::bin_dir().join("kubectl");
    // What the shell asks kubectl for `kubectl barge <words><TAB>`.
    let complete = |words: &[&str]| {
        tokio::process::Command::new(&kubectl)
            .args(["__complete", "barge"])
            .args(words)
            .env("PATH", &path)
            .env_remove("KUBECONFIG")
            .output()
    };
    let candidates = |out: &str| -> Vec<String> {
        out.lines()
            .take_while(|l| !l.starts_with(':'))
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    };
    let subcommands = support::succeeded("complete pro", complete(&["pro"]).await?)?;
    assert_eq!(candidates(&subcommands), ["promote"], "{subcommands}");
    assert!(subcommands.contains("\n:4\n"), "{subcommands}");
    let kubeconfig = h.env.kubeconfig_path().display().to_string();
    let stages = support::succeeded(
        "complete get stages",
        complete(&[
            "get",
            "stages",
            "-n",
            &h.ns,
            "--kubeconfig",
            &kubeconfig,
            "d",
        ])
        .await?,
    )?;
    assert_eq!(candidates(&stages), ["dev"], "{stages}");
    let freight = support::succeeded(
        "complete promote --freight",
        complete(&[
            "promote",
            "--kubeconfig",
            &kubeconfig,
            "-n",
            &h.ns,
            "--stage",
            "dev",
            "--freight",
            "",
        ])
        .await?,
    )?;
    assert_eq!(candidates(&freight), ["brave-otter", "f1"], "{freight}");
    h.shutdown().await;
    Ok(())
}

#[test]
fn completion_prints_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef barge"),
        ("fish", "complete -c barge"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
            .args(["completion", shell])
            .output()
            .unwrap_or_else(|e| panic!("cannot run barge: {e}"));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(
            script.contains(marker) && script.contains("promote"),
            "{shell}:\n{script}"
        );
    }
}
