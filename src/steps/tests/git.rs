//! The git steps against real repositories: bare repositories over
//! `file://`, and over smart HTTP (`git http-backend`) behind basic auth, so
//! that credentials Secrets are exercised.

use barge_testenv::git::GitRepo;
use barge_testenv::git_server::{GitServer, Login};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::controller::fixtures::{PlanRun, scripted};
use crate::promotion::engine::{StepResult, StepStatus};
use crate::steps::StepRun;

const PASSWORD: &str = "s3cret-token";

async fn server() -> GitServer {
    GitServer::start(Login {
        username: "bot".into(),
        password: PASSWORD.into(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A repository `app` with two commits on `main` (the first has
/// `app.yaml` at tag 1.0, the second at 1.1, tagged `v1.1`) and a branch
/// `stage/dev` holding rendered output; returns the two `main` commits.
fn publish_app(server: &GitServer) -> (String, String) {
    let repo = GitRepo::init().unwrap_or_else(|e| panic!("{e}"));
    let commit = |file: &str, text: &str, message: &str| {
        repo.write(file, text).unwrap_or_else(|e| panic!("{e}"));
        repo.commit(message).unwrap_or_else(|e| panic!("{e}"))
    };
    let first = commit("app.yaml", "image: web:1.0\n", "first");
    let second = commit("app.yaml", "image: web:1.1\n", "second");
    server
        .publish("app", &repo)
        .unwrap_or_else(|e| panic!("{e}"));
    server
        .git("app", &["tag", "v1.1", &second])
        .unwrap_or_else(|e| panic!("{e}"));
    server
        .git("app", &["branch", "stage/dev", &first])
        .unwrap_or_else(|e| panic!("{e}"));
    (first, second)
}

/// The Kargo-labelled credentials Secret for the server's `app`.
fn credentials(server: &GitServer, password: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "git-creds", "namespace": "demo",
                     "labels": {"kargo.akuity.io/cred-type": "git"}},
        "stringData": {},
        "data": {
            "repoURL": b64(&server.http_url("app")),
            "username": b64("bot"),
            "password": b64(password),
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn show(server: &GitServer, revision: &str) -> String {
    server
        .git("app", &["show", revision])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn head_of(server: &GitServer, branch: &str) -> String {
    server
        .git("app", &["rev-parse", branch])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string()
}

fn succeeded(status: &Value) -> usize {
    status["stepExecutionMetadata"]
        .as_array()
        .map_or(0, |steps| {
            steps
                .iter()
                .take_while(|s| s["status"] == "Succeeded")
                .count()
        })
}

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// [`render_commit_push`] with step `meanwhile` between commit and push.
fn render_commit_meanwhile_push(repo_url: &str) -> Value {
    let mut plan = render_commit_push(repo_url);
    if let Some(steps) = plan.as_array_mut() {
        steps.insert(4, json!({"uses": "meanwhile", "as": "meanwhile"}));
    }
    plan
}

/// The pipeline most Kargo users write: render into a Stage branch,
/// commit, push.
fn render_commit_push(repo_url: &str) -> Value {
    json!([
        {"uses": "git-clone", "as": "clone", "config": {"repoURL": repo_url, "checkout": [
            {"branch": "main", "path": "./src"},
            {"branch": "stage/dev", "create": true, "path": "./out"},
        ]}},
        {"uses": "git-clear", "as": "clear", "config": {"path": "./out"}},
        {"uses": "copy", "as": "render", "config": {"inPath": "./rendered", "outPath": "./out"}},
        {"uses": "git-commit", "as": "commit", "config": {"path": "./out", "message": "render web:1.1"}},
        {"uses": "git-push", "as": "push", "config": {"path": "./out"}},
    ])
}

#[tokio::test]
async fn clone_checks_out_a_commit_a_tag_a_branch_and_a_new_orphan_branch_side_by_side() {
    let server = server().await;
    let (first, second) = publish_app(&server);
    let plan = json!([
        {"uses": "git-clone", "as": "clone", "config": {"repoURL": server.file_url("app"), "checkout": [
            {"commit": first, "path": "./old", "as": "old"},
            {"tag": "v1.1", "path": "./tagged"},
            {"path": "./default"},
            {"branch": "stage/prod", "create": true, "path": "./prod"},
        ]}},
        {"uses": "hold", "as": "hold"},
    ]);

    let (status, dir) = PlanRun::default().run(plan).await;

    assert_eq!(
        status["state"]["clone"]["commits"],
        json!({"old": first, "./tagged": second, "./default": second, "./prod": ""}),
        "{status}"
    );
    assert_eq!(read(dir.join("old/app.yaml")), "image: web:1.0\n");
    assert_eq!(read(dir.join("tagged/app.yaml")), "image: web:1.1\n");
    assert_eq!(read(dir.join("default/app.yaml")), "image: web:1.1\n");
    let orphan: Vec<_> = std::fs::read_dir(dir.join("prod"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(orphan, [".git"], "a new orphan branch starts empty");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_rendered_branch_is_committed_and_pushed_over_http_with_the_secrets_credentials() {
    let server = server().await;
    publish_app(&server);
    let run = PlanRun::default()
        .with(&credentials(&server, PASSWORD))
        .file("rendered/manifests.yaml", "kind: Deployment\n");

    let (status, _) = run.run(render_commit_push(&server.http_url("app"))).await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    let pushed = head_of(&server, "stage/dev");
    assert_eq!(status["state"]["commit"]["commit"], pushed.as_str());
    assert_eq!(
        status["state"]["push"],
        json!({"branch": "stage/dev", "commit": pushed, "commitURL": ""})
    );
    let files = server
        .git("app", &["ls-tree", "--name-only", "stage/dev"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files, "manifests.yaml\n", "git-clear removed app.yaml");
    let commit = show(&server, "stage/dev");
    assert!(commit.contains("render web:1.1\n"), "{commit}");
    assert!(commit.contains("Barge-Promotion: uid-p1"), "{commit}");
    assert!(
        commit.contains("Author: Barge <no-reply@barge.dev>"),
        "{commit}"
    );
    assert!(server.refused() > 0, "the server asked for credentials");
}

#[tokio::test]
async fn a_clone_over_http_without_credentials_fails_saying_which_secret_is_missing() {
    let server = server().await;
    publish_app(&server);

    let (status, _) = PlanRun::default()
        .run(render_commit_push(&server.http_url("app")))
        .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("step \"clone\""), "{message}");
    assert!(message.contains("authentication failed"), "{message}");
    assert!(message.contains("barge.dev/cred-type=git"), "{message}");
}

#[tokio::test]
async fn a_wrong_password_fails_without_the_password_appearing_anywhere() {
    let server = server().await;
    publish_app(&server);
    let wrong = "wrong-password-123";

    let (status, _) = PlanRun::default()
        .with(&credentials(&server, wrong))
        .run(render_commit_push(&server.http_url("app")))
        .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let text = status.to_string();
    assert!(
        text.contains("authentication failed with the credentials"),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");
}

#[tokio::test]
async fn a_push_behind_the_remote_rebases_onto_it_and_pushes_again() {
    let server = server().await;
    publish_app(&server);
    let other = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let recorded = other.clone();
    let url = server.file_url("app");
    let path = server.path("app");
    // Another Promotion pushes to the same branch between this one's
    // commit and its push.
    let meanwhile = scripted("meanwhile", move |_| {
        let repo = GitServer::commit_file_at(&path, "stage/dev", "other.yaml", "other: true\n");
        if let Ok(mut slot) = recorded.lock() {
            *slot = repo.unwrap_or_else(|e| panic!("{e}"));
        }
        StepRun::done(Ok(StepResult::new(StepStatus::Succeeded)))
    });
    let plan = render_commit_meanwhile_push(&url);

    let (status, _) = PlanRun::default()
        .step(meanwhile)
        .file("rendered/manifests.yaml", "kind: Deployment\n")
        .run(plan)
        .await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    let head = head_of(&server, "stage/dev");
    assert_eq!(status["state"]["push"]["commit"], head.as_str());
    let parent = head_of(&server, "stage/dev~1");
    let theirs = other.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(parent, theirs, "our commit sits on top of theirs");
    let files = server
        .git("app", &["ls-tree", "--name-only", "stage/dev"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files, "manifests.yaml\nother.yaml\n");
}

#[tokio::test]
async fn a_rebase_that_conflicts_stops_the_push_naming_the_file() {
    let server = server().await;
    publish_app(&server);
    let path = server.path("app");
    let meanwhile = scripted("meanwhile", move |_| {
        GitServer::commit_file_at(&path, "stage/dev", "manifests.yaml", "kind: Theirs\n")
            .unwrap_or_else(|e| panic!("{e}"));
        StepRun::done(Ok(StepResult::new(StepStatus::Succeeded)))
    });
    let plan = render_commit_meanwhile_push(&server.file_url("app"));

    let (status, _) = PlanRun::default()
        .step(meanwhile)
        .file("rendered/manifests.yaml", "kind: Deployment\n")
        .run(plan)
        .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("step \"push\""), "{message}");
    assert!(message.contains("manifests.yaml conflicts"), "{message}");
    let theirs = show(&server, "stage/dev");
    assert!(
        theirs.contains("kind: Theirs"),
        "their commit stays: {theirs}"
    );
}

#[tokio::test]
async fn a_promotion_run_again_after_its_push_pushes_no_second_commit() {
    let server = server().await;
    publish_app(&server);
    let url = server.http_url("app");
    let secret = credentials(&server, PASSWORD);
    let (first, _) = PlanRun::default()
        .with(&secret)
        .file("rendered/manifests.yaml", "kind: Deployment\n")
        .run(render_commit_push(&url))
        .await;
    assert_eq!(first["phase"], "Succeeded", "{first}");
    let pushed = head_of(&server, "stage/dev");
    let pushes = server.pushes();

    // The same Promotion from its first step, as after a crash that lost its
    // status and its work directory, rendering something else this time.
    let (again, _) = PlanRun::default()
        .with(&secret)
        .file("rendered/manifests.yaml", "kind: Deployment\nreplicas: 2\n")
        .run(render_commit_push(&url))
        .await;

    assert_eq!(again["phase"], "Succeeded", "{again}");
    assert_eq!(head_of(&server, "stage/dev"), pushed, "no second commit");
    assert_eq!(server.pushes(), pushes, "nothing pushed");
    assert_eq!(again["state"]["push"]["commit"], pushed.as_str());
    assert_eq!(again["state"]["commit"]["commit"], pushed.as_str());
}

#[tokio::test]
async fn a_commit_with_nothing_changed_outputs_the_branch_head() {
    let server = server().await;
    let (_, second) = publish_app(&server);
    let plan = json!([
        {"uses": "git-clone", "as": "clone", "config": {"repoURL": server.file_url("app"),
            "checkout": [{"branch": "main", "path": "./src"}]}},
        {"uses": "git-commit", "as": "commit", "config": {"path": "./src", "message": "nothing"}},
        {"uses": "git-push", "as": "push", "config": {"path": "./src"}},
    ]);

    let (status, _) = PlanRun::default().run(plan).await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(status["state"]["commit"]["commit"], second.as_str());
    assert_eq!(head_of(&server, "main"), second);
}

#[tokio::test]
async fn a_push_to_a_generated_branch_and_a_tag_push() {
    let server = server().await;
    publish_app(&server);
    let plan = json!([
        {"uses": "git-clone", "as": "clone", "config": {"repoURL": server.file_url("app"),
            "author": {"name": "Release Bot", "email": "bot@example.com"},
            "checkout": [{"branch": "main", "path": "./src"}]}},
        {"uses": "copy", "as": "edit", "config": {"inPath": "./new.yaml", "outPath": "./src/new.yaml"}},
        {"uses": "git-commit", "as": "commit", "config": {"path": "./src", "messageFromSteps": ["msg"]}},
        {"uses": "git-push", "as": "push", "config": {"path": "./src", "generateTargetBranch": true}},
        {"uses": "git-tag", "as": "tag", "config": {"path": "./src", "tag": "v2.0"}},
        {"uses": "git-push", "as": "push-tag", "config": {"path": "./src", "tag": "v2.0"}},
    ]);
    let plan = {
        let mut plan = plan;
        if let Some(steps) = plan.as_array_mut() {
            steps.insert(0, json!({"uses": "message", "as": "msg"}));
        }
        plan
    };
    let message = scripted("message", |_| {
        let mut result = StepResult::new(StepStatus::Succeeded);
        result.output = Some(json!({"commitMessage": "Updated new.yaml"}));
        StepRun::done(Ok(result))
    });

    let (status, _) = PlanRun::default()
        .step(message)
        .file("new.yaml", "new: true\n")
        .run(plan)
        .await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    let branch = "barge/promotion/p1";
    assert_eq!(status["state"]["push"]["branch"], branch);
    let head = head_of(&server, branch);
    assert_eq!(status["state"]["tag"]["commit"], head.as_str());
    assert_eq!(head_of(&server, "v2.0^{commit}"), head);
    let commit = show(&server, branch);
    assert!(
        commit.contains("Author: Release Bot <bot@example.com>"),
        "{commit}"
    );
    assert!(commit.contains("Updated new.yaml"), "{commit}");
}

#[tokio::test]
async fn bad_git_configs_are_refused_naming_the_field() {
    let server = server().await;
    publish_app(&server);
    let url = server.file_url("app");
    let cases = [
        (
            json!({"uses": "git-clone", "as": "c", "config": {"repoURL": url,
                "checkout": [{"branch": "main", "path": "../outside"}]}}),
            "config.checkout[0].path: \"../outside\" leaves the work directory",
        ),
        (
            json!({"uses": "git-clone", "as": "c", "config": {"repoURL": url,
                "checkout": [{"branch": "nope", "path": "./x"}]}}),
            "config.checkout[0]: branch \"nope\" does not exist",
        ),
        (
            json!({"uses": "git-clone", "as": "c", "config": {"repoURL": url,
                "checkout": [{"branch": "main", "commit": "abc", "path": "./x"}]}}),
            "config.checkout[0]: branch, commit and tag are mutually exclusive",
        ),
        (
            json!({"uses": "git-clone", "as": "c", "config": {"repoURL": url, "checkout": []}}),
            "config.checkout: at least one checkout is required",
        ),
        (
            json!({"uses": "git-commit", "as": "c", "config": {"path": "./nothing", "message": "m"}}),
            "is not a git working tree",
        ),
        (
            json!({"uses": "git-push", "as": "c", "config": {"path": ".", "tag": "v1", "targetBranch": "x"}}),
            "config: targetBranch, generateTargetBranch and tag are mutually exclusive",
        ),
    ];
    for (step, expected) in cases {
        let (status, _) = PlanRun::default()
            .file("nothing/x", "x")
            .run(json!([step]))
            .await;

        assert_eq!(status["phase"], "Errored", "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {message}");
        assert_eq!(succeeded(&status), 0);
    }
}

#[tokio::test]
async fn a_detached_checkout_cannot_push_without_a_target_branch() {
    let server = server().await;
    let (first, _) = publish_app(&server);
    let plan = json!([
        {"uses": "git-clone", "as": "clone", "config": {"repoURL": server.file_url("app"),
            "checkout": [{"commit": first, "path": "./src"}]}},
        {"uses": "git-push", "as": "push", "config": {"path": "./src"}},
    ]);

    let (status, _) = PlanRun::default().run(plan).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("config.targetBranch: the working tree is on no branch"),
        "{message}"
    );
}

#[tokio::test]
async fn a_promotion_whose_work_directory_is_gone_runs_again_from_its_first_step() {
    let server = server().await;
    publish_app(&server);
    let mut plan = render_commit_push(&server.file_url("app"));
    plan[2] = json!({"uses": "copy", "as": "render",
        "config": {"inPath": "./src/app.yaml", "outPath": "./out/app.yaml"}});

    // Stopped before its push, on a machine where its work directory is gone.
    let (status, dir) = PlanRun::default().resumed_at(4).run(plan).await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(succeeded(&status), 5, "{status}");
    let files = server
        .git("app", &["ls-tree", "--name-only", "stage/dev"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files, "app.yaml\n");
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_promotion_past_its_last_file_step_keeps_waiting_when_its_work_directory_is_gone() {
    // Its clone could not run again (no such repository): running the plan
    // again would fail it.
    let plan = json!([
        {"uses": "git-clone", "as": "clone", "config": {"repoURL": "file:///nonexistent/repo",
            "checkout": [{"branch": "main", "path": "./src"}]}},
        {"uses": "hold", "as": "hold"},
    ]);

    // Waiting in `hold` (it reads no files), on a machine where its work
    // directory is gone, as a Promotion waiting on a pull request is after
    // its pod was replaced.
    let (status, _) = PlanRun::default().resumed_at(1).run(plan).await;

    assert_eq!(status["phase"], "Running", "{status}");
    assert_eq!(status["currentStep"], 1, "{status}");
    assert_eq!(status["awaiting"][0]["alias"], "hold", "{status}");
}

#[tokio::test]
async fn message_from_steps_inside_a_task_reads_the_tasks_own_steps_and_skips_missing_ones() {
    let server = server().await;
    publish_app(&server);
    let clone = json!({"uses": "git-clone", "as": "t::clone", "config": {"repoURL": server.file_url("app"),
        "checkout": [{"branch": "main", "path": "./src"}]}});
    let edit = |name: &str| {
        json!({"uses": "copy", "as": format!("t::{name}"),
               "config": {"inPath": format!("./{name}.yaml"), "outPath": format!("./src/{name}.yaml")}})
    };
    let commit = |alias: &str, from: Value| json!({"uses": "git-commit", "as": alias, "config": {"path": "./src", "messageFromSteps": from}});
    let plan = json!([
        clone,
        {"uses": "message", "as": "t::update-image"},
        edit("one"),
        commit("t::first", json!(["update-image", "no-such-step"])),
        edit("two"),
        commit("t::second", json!(["no-such-step"])),
        {"uses": "git-push", "as": "t::push", "config": {"path": "./src"}},
    ]);
    let message = scripted("message", |_| {
        let mut result = StepResult::new(StepStatus::Succeeded);
        result.output = Some(json!({"commitMessage": "Updated an image"}));
        StepRun::done(Ok(result))
    });

    let (status, _) = PlanRun::default()
        .step(message)
        .file("one.yaml", "1\n")
        .file("two.yaml", "2\n")
        .run(plan)
        .await;

    assert_eq!(status["phase"], "Succeeded", "{status}");
    let log = server
        .git("app", &["log", "-2", "--format=%s", "main"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(log, "Barge made some changes\nUpdated an image\n");
}
