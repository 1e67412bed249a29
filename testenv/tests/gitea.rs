//! The Gitea harness against the real server: repositories, branches and
//! files through the API, pushes with git, pull requests that merge or
//! conflict, tokens that may not write, signed webhooks, and nothing left
//! running however the test binary ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use barge_testenv::Error;
use barge_testenv::gitea::{GITEA_VERSION, Gitea};
use barge_testenv::process::{panicking_child, wait_gone};
use http::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Where the recorded webhook lives, for the main crate's unit tests.
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/webhooks/gitea-pull-request-closed.json"
);

async fn gitea() -> &'static Gitea {
    match Gitea::shared().await {
        Ok(gitea) => gitea,
        Err(e) => panic!("Gitea did not start: {e}"),
    }
}

#[test]
fn pinned_version_matches_the_go_wrapper_module() {
    let go_mod = include_str!("../../hack/gitea/go.mod");
    let wanted = format!("code.gitea.io/gitea v{GITEA_VERSION}");
    assert!(
        go_mod
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default().trim())
            .any(|l| l.trim_start_matches("require").trim() == wanted),
        "hack/gitea/go.mod does not require {wanted}"
    );
}

#[tokio::test]
async fn gitea_starts_with_an_admin_whose_token_has_every_scope() -> TestResult {
    let gitea = gitea().await;
    println!(
        "Gitea: started in {:?}; RSS {} KiB",
        gitea.startup_time(),
        gitea.rss_kib().unwrap_or(0)
    );
    assert!(!gitea.url().ends_with('/'));
    let version = gitea.api(Method::GET, "/version", None).await?;
    assert_eq!(version["version"], GITEA_VERSION);
    let me = gitea.api(Method::GET, "/user", None).await?;
    assert_eq!(me["login"], gitea.admin());
    assert_eq!(me["is_admin"], true);
    Ok(())
}

#[tokio::test]
async fn a_branch_made_through_the_api_merges_by_pull_request() -> TestResult {
    let gitea = gitea().await;
    let repo = gitea.create_repo("merges").await?;
    assert_eq!(repo.owner, gitea.admin());
    assert_eq!(
        repo.clone_url(),
        format!("{}/{}/merges.git", gitea.url(), gitea.admin())
    );

    let first = gitea
        .put_file_on_new_branch(
            &repo,
            "main",
            "promote",
            "env/stage.yaml",
            "a\n",
            "add stage",
        )
        .await?;
    let second = gitea
        .put_file(&repo, "promote", "env/stage.yaml", "b\n", "update stage")
        .await?;
    assert_ne!(first, second);
    assert_eq!(gitea.branch_sha(&repo, "promote").await?, second);

    let number = gitea.open_pr(&repo, "promote", "main", "Promote").await?;
    let pr = gitea.get_pr(&repo, number).await?;
    assert_eq!(pr["state"], "open");
    assert_eq!(pr["mergeable"], true, "{pr}");
    assert_eq!(pr["merged"], false);
    assert_eq!(pr["head"]["sha"], second.as_str());

    gitea.merge_pr(&repo, number, "merge").await?;
    let pr = gitea.get_pr(&repo, number).await?;
    assert_eq!(pr["state"], "closed");
    assert_eq!(pr["merged"], true);
    let merge_commit = pr["merge_commit_sha"].as_str().unwrap_or_default();
    assert_eq!(merge_commit, gitea.branch_sha(&repo, "main").await?);
    assert_ne!(merge_commit, second);
    Ok(())
}

#[tokio::test]
async fn a_squash_merge_and_a_closed_pull_request() -> TestResult {
    let gitea = gitea().await;
    let repo = gitea.create_repo("squash-and-close").await?;
    gitea.create_branch(&repo, "squashed", "main").await?;
    gitea.create_branch(&repo, "abandoned", "main").await?;
    gitea
        .put_file(&repo, "squashed", "a.txt", "a\n", "one")
        .await?;
    gitea
        .put_file(&repo, "squashed", "b.txt", "b\n", "two")
        .await?;
    gitea
        .put_file(&repo, "abandoned", "c.txt", "c\n", "three")
        .await?;

    let squash = gitea.open_pr(&repo, "squashed", "main", "Squash").await?;
    gitea.merge_pr(&repo, squash, "squash").await?;
    let pr = gitea.get_pr(&repo, squash).await?;
    assert_eq!(pr["merged"], true);
    let main = gitea.branch_sha(&repo, "main").await?;
    assert_eq!(pr["merge_commit_sha"], main.as_str());

    let closed = gitea.open_pr(&repo, "abandoned", "main", "Abandon").await?;
    gitea.close_pr(&repo, closed).await?;
    let pr = gitea.get_pr(&repo, closed).await?;
    assert_eq!(pr["state"], "closed");
    assert_eq!(pr["merged"], false);
    assert_eq!(pr["merge_commit_sha"], Value::Null);
    assert_eq!(gitea.branch_sha(&repo, "main").await?, main);
    Ok(())
}

#[tokio::test]
async fn a_conflicting_pull_request_is_not_mergeable_and_its_merge_is_refused() -> TestResult {
    let gitea = gitea().await;
    let repo = gitea.create_repo("conflicts").await?;
    gitea
        .put_file(&repo, "main", "values.yaml", "tag: v1\n", "v1")
        .await?;
    gitea.create_branch(&repo, "promote", "main").await?;
    gitea
        .put_file(&repo, "main", "values.yaml", "tag: v2\n", "v2 on main")
        .await?;
    gitea
        .put_file(&repo, "promote", "values.yaml", "tag: v3\n", "v3")
        .await?;

    let number = gitea.open_pr(&repo, "promote", "main", "Conflict").await?;
    let pr = gitea.get_pr(&repo, number).await?;
    assert_eq!(pr["mergeable"], false, "{pr}");
    match gitea.merge_pr(&repo, number, "merge").await {
        Err(Error::GiteaApi { status: 405, .. }) => {}
        other => panic!("merging a conflict answered {other:?}"),
    }
    assert_eq!(gitea.get_pr(&repo, number).await?["state"], "open");
    Ok(())
}

#[tokio::test]
async fn a_branch_pushed_with_git_and_a_token_opens_a_pull_request() -> TestResult {
    let gitea = gitea().await;
    let repo = gitea.create_repo("pushed").await?;
    let work = tempfile::tempdir()?;
    let checkout = work.path().join("checkout");
    let url = repo.clone_url_with(gitea.admin(), gitea.token());
    git(work.path(), &["clone", "-q", &url, &path(&checkout)])?;
    std::fs::write(checkout.join("app.yaml"), "replicas: 2\n")?;
    git(&checkout, &["checkout", "-q", "-b", "pushed-branch"])?;
    git(&checkout, &["add", "-A"])?;
    git(&checkout, &["commit", "-q", "-m", "two replicas"])?;
    git(&checkout, &["push", "-q", "origin", "pushed-branch"])?;
    let head = git(&checkout, &["rev-parse", "HEAD"])?;

    assert_eq!(gitea.branch_sha(&repo, "pushed-branch").await?, head);
    let number = gitea
        .open_pr(&repo, "pushed-branch", "main", "Pushed")
        .await?;
    assert_eq!(gitea.get_pr(&repo, number).await?["mergeable"], true);
    Ok(())
}

#[tokio::test]
async fn a_read_only_token_may_read_but_not_open_or_merge_pull_requests() -> TestResult {
    let gitea = gitea().await;
    let repo = gitea.create_private_repo("read-only").await?;
    gitea
        .put_file_on_new_branch(&repo, "main", "change", "f.txt", "x\n", "change")
        .await?;
    let number = gitea.open_pr(&repo, "change", "main", "Change").await?;
    let reader = gitea.create_user("reader", &["read:repository"]).await?;
    let pr_path = format!("/repos/{}/pulls/{number}", repo.full_name());

    // A private repository hides from a user who is no collaborator.
    match gitea
        .api_as(&reader.token, Method::GET, &pr_path, None)
        .await
    {
        Err(Error::GiteaApi { status: 404, .. }) => {}
        other => panic!("a stranger read a private pull request: {other:?}"),
    }
    let anonymous = Command::new("git")
        .args(["ls-remote", repo.clone_url()])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()?;
    assert!(
        !anonymous.status.success(),
        "anonymous clone of a private repository"
    );

    // A write collaborator whose token may only read.
    gitea.add_collaborator(&repo, "reader", "write").await?;
    let pr = gitea
        .api_as(&reader.token, Method::GET, &pr_path, None)
        .await?;
    assert_eq!(pr["number"], number);
    let open = gitea
        .api_as(
            &reader.token,
            Method::POST,
            &format!("/repos/{}/pulls", repo.full_name()),
            Some(&json!({"head": "change", "base": "main", "title": "again"})),
        )
        .await;
    match open {
        Err(Error::GiteaApi { status: 403, .. }) => {}
        other => panic!("a read-only token opened a pull request: {other:?}"),
    }
    let merge = gitea
        .api_as(
            &reader.token,
            Method::POST,
            &format!("{pr_path}/merge"),
            Some(&json!({"Do": "merge"})),
        )
        .await;
    match merge {
        Err(Error::GiteaApi { status: 403, .. }) => {}
        other => panic!("a read-only token merged a pull request: {other:?}"),
    }
    let ls_remote = Command::new("git")
        .args([
            "ls-remote",
            &repo.clone_url_with(&reader.name, &reader.token),
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()?;
    assert!(ls_remote.status.success(), "{ls_remote:?}");
    Ok(())
}

/// One request as a webhook receiver sees it.
#[derive(Debug)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

/// A listener on a loopback port that passes every request on.
async fn receiver() -> Result<(String, mpsc::UnboundedReceiver<Delivery>), std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .fallback(
            |State(tx): State<Arc<mpsc::UnboundedSender<Delivery>>>,
             headers: HeaderMap,
             body: Bytes| async move {
                let _ = tx.send(Delivery { headers, body });
                StatusCode::OK
            },
        )
        .with_state(Arc::new(tx));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, rx))
}

fn hmac_hex(algorithm: ring::hmac::Algorithm, secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(algorithm, secret.as_bytes());
    ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_merged_pull_request_is_delivered_as_a_signed_closed_event() -> TestResult {
    let gitea = gitea().await;
    let repo = gitea.create_repo("webhooks").await?;
    let (url, mut deliveries) = receiver().await?;
    let secret = "barge-webhook-secret";
    gitea
        .add_webhook(&repo, &url, secret, &["pull_request"])
        .await?;
    gitea
        .put_file_on_new_branch(&repo, "main", "promote", "f.txt", "x\n", "change")
        .await?;
    let number = gitea.open_pr(&repo, "promote", "main", "Promote").await?;
    let merging = std::time::Instant::now();
    gitea.merge_pr(&repo, number, "merge").await?;
    let merged = gitea.get_pr(&repo, number).await?;

    let closed = loop {
        let next = tokio::time::timeout(Duration::from_secs(30), deliveries.recv()).await;
        let Ok(Some(delivery)) = next else {
            panic!(
                "no pull_request closed event within 30s; Gitea's log:\n{}",
                gitea.log_tail(30)
            );
        };
        let payload: Value = serde_json::from_slice(&delivery.body)?;
        if payload["action"] == "closed" {
            break (delivery, payload);
        }
    };
    println!(
        "Gitea: the closed event arrived {:?} after the merge was asked for",
        merging.elapsed()
    );
    let (delivery, payload) = closed;
    let headers = &delivery.headers;
    let signature = hmac_hex(ring::hmac::HMAC_SHA256, secret, &delivery.body);
    assert_eq!(header(headers, "x-gitea-signature"), signature);
    assert_eq!(
        header(headers, "x-hub-signature-256"),
        format!("sha256={signature}")
    );
    assert_eq!(header(headers, "x-gitea-event"), "pull_request");
    assert_eq!(header(headers, "x-github-event"), "pull_request");
    assert_eq!(header(headers, "content-type"), "application/json");

    assert_eq!(payload["number"], number);
    assert_eq!(payload["pull_request"]["number"], number);
    assert_eq!(payload["pull_request"]["merged"], true);
    assert_eq!(payload["pull_request"]["html_url"], merged["html_url"]);
    assert_eq!(
        payload["pull_request"]["merge_commit_sha"],
        merged["merge_commit_sha"]
    );
    assert_eq!(payload["repository"]["clone_url"], repo.clone_url());
    assert_eq!(payload["repository"]["html_url"], repo.html_url());
    assert_eq!(
        payload["repository"]["full_name"],
        repo.full_name().as_str()
    );

    let recorded = record(headers, &payload, secret)?;
    if std::env::var_os("BARGE_RECORD_FIXTURES").is_some() {
        std::fs::write(FIXTURE, serde_json::to_string_pretty(&recorded)? + "\n")?;
    }
    check_fixture(headers, &payload)?;
    Ok(())
}

/// The fields of a pull_request payload that Barge reads, kept from a real
/// delivery (the rest is dropped to keep the fixture short).
const KEPT: &[&str] = &[
    "/action",
    "/number",
    "/pull_request/number",
    "/pull_request/state",
    "/pull_request/merged",
    "/pull_request/merged_at",
    "/pull_request/merge_commit_sha",
    "/pull_request/html_url",
    "/pull_request/url",
    "/pull_request/title",
    "/pull_request/head/ref",
    "/pull_request/head/sha",
    "/pull_request/base/ref",
    "/pull_request/base/sha",
    "/repository/name",
    "/repository/full_name",
    "/repository/owner/login",
    "/repository/clone_url",
    "/repository/html_url",
    "/repository/default_branch",
    "/repository/private",
    "/sender/login",
];

/// Headers that describe the connection rather than the event.
const DROPPED_HEADERS: &[&str] = &["host", "content-length", "accept-encoding", "connection"];

/// The fixture: the delivery's headers, and the kept fields as `body`, a
/// string, with the signature headers recomputed over exactly that string
/// with `secret`, so a unit test can check signatures byte for byte.
fn record(headers: &HeaderMap, payload: &Value, secret: &str) -> Result<Value, String> {
    let mut body = json!({});
    for pointer in KEPT {
        let value = payload
            .pointer(pointer)
            .ok_or_else(|| format!("the payload has no {pointer}"))?;
        insert(&mut body, pointer, value.clone());
    }
    let body = body.to_string();
    let sha256 = hmac_hex(ring::hmac::HMAC_SHA256, secret, body.as_bytes());
    let sha1 = hmac_hex(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret,
        body.as_bytes(),
    );
    let mut recorded = BTreeMap::new();
    for (name, value) in headers {
        if DROPPED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = match name.as_str() {
            "x-gitea-signature" | "x-gogs-signature" => sha256.clone(),
            "x-hub-signature-256" => format!("sha256={sha256}"),
            "x-hub-signature" => format!("sha1={sha1}"),
            _ => value.to_str().map_err(|e| e.to_string())?.to_string(),
        };
        recorded.insert(name.as_str().to_string(), value);
    }
    Ok(json!({
        "description": "A pull_request webhook from Gitea 1.26.0 for a merged pull request \
            (action closed), recorded by testenv/tests/gitea.rs (BARGE_RECORD_FIXTURES=1). \
            Header names are lower-case as an HTTP server hands them over; body keeps the \
            fields Barge reads; the signature headers are recomputed over body, byte for byte, \
            with secret.",
        "secret": secret,
        "headers": recorded,
        "body": body,
    }))
}

/// Sets `value` at a JSON pointer made of object keys, creating objects.
fn insert(target: &mut Value, pointer: &str, value: Value) {
    let mut keys: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let Some(last) = keys.pop() else { return };
    let mut node = target;
    for key in keys {
        node = &mut node[key];
        if !node.is_object() {
            *node = json!({});
        }
    }
    node[last] = value;
}

/// The committed fixture still matches what Gitea sends: every header it
/// names is sent, every field of its body is in the payload with the same
/// JSON type, and its signatures hold.
fn check_fixture(headers: &HeaderMap, payload: &Value) -> TestResult {
    let text = std::fs::read_to_string(FIXTURE)
        .map_err(|e| format!("{FIXTURE}: {e} (record it with BARGE_RECORD_FIXTURES=1)"))?;
    let fixture: Value = serde_json::from_str(&text)?;
    let secret = fixture["secret"].as_str().unwrap_or_default();
    let body = fixture["body"].as_str().unwrap_or_default();
    let sha256 = hmac_hex(ring::hmac::HMAC_SHA256, secret, body.as_bytes());
    assert_eq!(
        fixture["headers"]["x-hub-signature-256"],
        format!("sha256={sha256}")
    );
    assert_eq!(fixture["headers"]["x-gitea-signature"], sha256);
    let names = fixture["headers"].as_object().ok_or("fixture headers")?;
    for name in names.keys() {
        assert!(
            headers.contains_key(name.as_str()),
            "Gitea no longer sends {name}"
        );
    }
    let recorded: Value = serde_json::from_str(body)?;
    same_shape("", &recorded, payload)?;
    Ok(())
}

fn same_shape(at: &str, recorded: &Value, live: &Value) -> Result<(), String> {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    match (recorded, live) {
        (Value::Object(recorded), Value::Object(live)) => {
            for (key, value) in recorded {
                let path = format!("{at}/{key}");
                let live = live
                    .get(key)
                    .ok_or_else(|| format!("the live payload has no {path}"))?;
                same_shape(&path, value, live)?;
            }
            Ok(())
        }
        _ if kind(recorded) == kind(live) => Ok(()),
        _ => Err(format!(
            "{at} is a {} in the fixture but a {} in the live payload",
            kind(recorded),
            kind(live)
        )),
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(["-c", "user.name=Barge", "-c", "user.email=barge@barge.test"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run only as a child of the test below: starts Gitea, reports its process
/// id and directory, then panics.
#[tokio::test]
#[ignore = "run by gitea_is_stopped_when_a_test_binary_panics"]
async fn child_that_panics_with_gitea_running() {
    if std::env::var_os("BARGE_TESTENV_CHILD").is_none() {
        return;
    }
    let gitea = gitea().await;
    println!("PIDS {} DIRS {}", gitea.pid(), gitea.dir().display());
    panic!("deliberate failure with Gitea running");
}

#[tokio::test]
async fn gitea_is_stopped_when_a_test_binary_panics() -> TestResult {
    let words = panicking_child("child_that_panics_with_gitea_running").await?;
    let pid: u32 = words[1].parse()?;
    let dir = PathBuf::from(&words[3]);
    // The lifelines see the child's pipes close; give them a moment.
    assert!(
        wait_gone(&[pid], &[dir], Duration::from_secs(10)),
        "Gitea or its directory outlived the failing test binary"
    );
    Ok(())
}
