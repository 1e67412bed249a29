//! A real Gitea, built by `make gitea`: a Git host with a pull-request API
//! and webhooks, for the tests of Barge's pull-request steps.
//!
//! [`Gitea::shared`] starts one server per test binary, on a free loopback
//! port, with a fresh SQLite database, an admin user and an access token;
//! tests share it and each makes its own repositories. Like the control
//! plane, it runs under a lifeline (see [`crate::process`]): it stops and its
//! directory is removed when the test binary ends, however it ends.
//!
//! The helpers drive Gitea's REST API (`/api/v1`) as the admin, to set up
//! what a test needs (repositories, branches, files, webhooks) and to look
//! at what Barge did (pull requests, merges).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::Method;
use serde_json::{Value, json};

use crate::Error;
use crate::process::{Server, Watchdog, free_port, rss_kib};

/// The Gitea release `make gitea` builds (pinned in `hack/gitea/go.mod`; a
/// test checks that they agree).
pub const GITEA_VERSION: &str = "1.26.0";

/// The admin user every instance has; its token has every scope.
pub const ADMIN: &str = "barge-admin";

/// The admin's password. The server listens on loopback only and its data is
/// thrown away, so a fixed password costs nothing and reads well in URLs.
const ADMIN_PASSWORD: &str = "barge-admin-password";

/// How long Gitea may take to answer `/api/v1/version` (≈ 1.5 s when idle).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One API request's limit: Gitea answers in milliseconds, a merge in well
/// under a second, even on a busy 2-core machine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `make gitea` put the binary and its templates: `$BARGE_GITEA_DIR`,
/// else `<cache>/gitea-<version>`.
pub fn gitea_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BARGE_GITEA_DIR") {
        return PathBuf::from(dir);
    }
    crate::cache_dir().join(format!("gitea-{GITEA_VERSION}"))
}

/// True when `make gitea` has built everything [`Gitea::start`] needs.
pub fn is_built() -> bool {
    missing_file(&gitea_dir()).is_none()
}

/// The first file of the build that is not there: the binary, and the
/// templates and options it reads at run time (it has no bindata).
fn missing_file(home: &Path) -> Option<PathBuf> {
    let binary = home.join("gitea");
    if !binary.is_file() {
        return Some(binary);
    }
    ["static/templates", "static/options"]
        .iter()
        .map(|d| home.join(d))
        .find(|d| !d.is_dir())
}

/// A repository on the Gitea server.
#[derive(Clone, Debug)]
pub struct Repo {
    pub owner: String,
    pub name: String,
    clone_url: String,
    html_url: String,
}

impl Repo {
    /// The HTTP clone URL, without credentials (`http://127.0.0.1:<port>/<owner>/<name>.git`).
    pub fn clone_url(&self) -> &str {
        &self.clone_url
    }

    /// The clone URL with `user:secret@` in it (a password or a token), for
    /// `git` commands that must push.
    pub fn clone_url_with(&self, user: &str, secret: &str) -> String {
        self.clone_url
            .replacen("http://", &format!("http://{user}:{secret}@"), 1)
    }

    /// The repository's web page, as webhook payloads and pull requests give it.
    pub fn html_url(&self) -> &str {
        &self.html_url
    }

    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn api_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }
}

/// A user made by [`Gitea::create_user`], with a token of chosen scopes.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: String,
    pub token: String,
}

/// A running Gitea. Dropping it stops the server and removes its directory.
pub struct Gitea {
    dir: PathBuf,
    url: String,
    token: String,
    server: Mutex<Server>,
    pid: u32,
    startup: Duration,
    watchdog: Mutex<Watchdog>,
}

static SHARED: tokio::sync::OnceCell<Gitea> = tokio::sync::OnceCell::const_new();

impl Gitea {
    /// The Gitea of this test binary, started by the first test that asks
    /// for it.
    pub async fn shared() -> Result<&'static Gitea, Error> {
        SHARED.get_or_try_init(Gitea::start).await
    }

    /// Starts Gitea on a free loopback port with a fresh database, waits
    /// until its API answers, and creates the admin user and its token.
    /// Retries on a port clash.
    pub async fn start() -> Result<Self, Error> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once().await {
                Ok(gitea) => return Ok(gitea),
                Err(e @ Error::Exited { .. })
                    if e.to_string().contains("address already in use") =>
                {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Wait("Gitea".into(), "no attempt made".into())))
    }

    async fn start_once() -> Result<Self, Error> {
        let started = Instant::now();
        let home = gitea_dir();
        if let Some(missing) = missing_file(&home) {
            return Err(Error::MissingGitea(missing));
        }
        let binary = home.join("gitea");
        let dir = tempfile::Builder::new()
            .prefix("barge-gitea-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?
            .keep();
        let mut watchdog = Watchdog::start(&dir)?;

        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let internal_token = cli(&binary, &dir, &["generate", "secret", "INTERNAL_TOKEN"])?;
        let config = dir.join("app.ini");
        let ini = app_ini(
            &dir,
            &home.join("static"),
            port,
            &internal_token,
            &log_level(),
        );
        std::fs::write(&config, ini).map_err(|e| Error::io(&config, e))?;

        let mut server = Server::spawn_with_env(
            &dir,
            "gitea",
            &binary,
            &[
                "web".into(),
                format!("--config={}", config.display()),
                format!("--work-path={}", dir.display()),
            ],
            &server_env(&dir),
        )?;
        let token = match set_up(&binary, &dir, &server, &url).await {
            Ok(token) => token,
            Err(e) => {
                server.stop();
                watchdog.stop();
                return Err(e);
            }
        };
        let pid = server.pid();
        Ok(Self {
            dir,
            url,
            token,
            server: Mutex::new(server),
            pid,
            startup: started.elapsed(),
            watchdog: Mutex::new(watchdog),
        })
    }

    /// The base URL, without a trailing slash (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The base URL of the REST API (`<url>/api/v1`).
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.url)
    }

    /// The admin's access token, with every scope.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The admin's user name.
    pub fn admin(&self) -> &str {
        ADMIN
    }

    /// The admin's password.
    pub fn password(&self) -> &str {
        ADMIN_PASSWORD
    }

    /// Gitea's working directory (`app.ini`, database, repositories, `gitea.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Time from the call to `start` until the admin's token existed.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Gitea's resident memory, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// Gitea's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines of Gitea's log, for failure messages: warnings and
    /// errors, or more with `BARGE_GITEA_LOG_LEVEL` (e.g. `Trace`).
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::log_tail(&self.dir, "gitea", lines)
    }

    /// Stops the server and removes its directory, waiting until done.
    pub fn stop(&self) {
        if let Ok(mut server) = self.server.lock() {
            server.stop();
        }
        if let Ok(mut watchdog) = self.watchdog.lock() {
            watchdog.stop();
        }
    }

    /// Calls the REST API as the admin: `path` is under `/api/v1` (e.g.
    /// `/repos/o/r/pulls/1`). A status other than 2xx is an
    /// [`Error::GiteaApi`] carrying it; an empty answer is `Value::Null`.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        request(
            &self.api_url(),
            Auth::Token(&self.token),
            method,
            path,
            body,
        )
        .await
    }

    /// Calls the REST API with another user's token, as [`Gitea::api`] does.
    pub async fn api_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        request(&self.api_url(), Auth::Token(token), method, path, body).await
    }

    /// Creates a user who is not an admin, and a token for it with `scopes`
    /// (Gitea's names: `read:repository`, `write:repository`, `all`, ...).
    /// The user sees public repositories; [`Gitea::add_collaborator`] gives
    /// it more. Names belong to the server: tests sharing it pick their own.
    pub async fn create_user(&self, name: &str, scopes: &[&str]) -> Result<User, Error> {
        let password = format!("{name}-password");
        let body = json!({
            "username": name,
            "email": format!("{name}@barge.test"),
            "password": password,
            "must_change_password": false,
        });
        self.api(Method::POST, "/admin/users", Some(&body)).await?;
        // Gitea makes tokens only for a user who signs in with a password.
        let created = request(
            &self.api_url(),
            Auth::Basic(name, &password),
            Method::POST,
            &format!("/users/{name}/tokens"),
            Some(&json!({"name": "barge-test", "scopes": scopes})),
        )
        .await?;
        let token = string_field(&created, "sha1", "token")?;
        Ok(User {
            name: name.into(),
            password,
            token,
        })
    }

    /// Gives `user` `permission` (`read`, `write` or `admin`) on `repo`.
    pub async fn add_collaborator(
        &self,
        repo: &Repo,
        user: &str,
        permission: &str,
    ) -> Result<(), Error> {
        let path = repo.api_path(&format!("/collaborators/{user}"));
        let body = json!({ "permission": permission });
        self.api(Method::PUT, &path, Some(&body)).await?;
        Ok(())
    }

    /// Creates a public repository of the admin with one commit (a README)
    /// on `main`. The commit matters: an empty repository refuses pull
    /// requests, and for a moment after its first push it still counts as
    /// empty. Names belong to the server: tests sharing it pick their own.
    pub async fn create_repo(&self, name: &str) -> Result<Repo, Error> {
        self.create_repo_with(name, false).await
    }

    /// As [`Gitea::create_repo`], private: only its owner, admins and
    /// collaborators may read it.
    pub async fn create_private_repo(&self, name: &str) -> Result<Repo, Error> {
        self.create_repo_with(name, true).await
    }

    async fn create_repo_with(&self, name: &str, private: bool) -> Result<Repo, Error> {
        let body = json!({
            "name": name,
            "auto_init": true,
            "default_branch": "main",
            "private": private,
        });
        let created = self.api(Method::POST, "/user/repos", Some(&body)).await?;
        let repo = Repo {
            owner: created
                .pointer("/owner/login")
                .and_then(Value::as_str)
                .unwrap_or(ADMIN)
                .to_string(),
            name: string_field(&created, "name", "repository")?,
            clone_url: string_field(&created, "clone_url", "repository")?,
            html_url: string_field(&created, "html_url", "repository")?,
        };
        // Creation commits the README before answering; make sure `main`
        // is there rather than trust it.
        self.branch_sha(&repo, "main").await?;
        Ok(repo)
    }

    /// Writes `content` to `path` on `branch` (creating or replacing the
    /// file) in one commit; returns the commit's sha.
    pub async fn put_file(
        &self,
        repo: &Repo,
        branch: &str,
        path: &str,
        content: &str,
        message: &str,
    ) -> Result<String, Error> {
        self.change_file(repo, branch, None, path, content, message)
            .await
    }

    /// As [`Gitea::put_file`], on a new branch `new_branch` made from `from`.
    pub async fn put_file_on_new_branch(
        &self,
        repo: &Repo,
        from: &str,
        new_branch: &str,
        path: &str,
        content: &str,
        message: &str,
    ) -> Result<String, Error> {
        self.change_file(repo, from, Some(new_branch), path, content, message)
            .await
    }

    /// The contents API's `upload` operation: create or update, with no
    /// need for the blob's current sha.
    async fn change_file(
        &self,
        repo: &Repo,
        branch: &str,
        new_branch: Option<&str>,
        path: &str,
        content: &str,
        message: &str,
    ) -> Result<String, Error> {
        let mut body = json!({
            "branch": branch,
            "message": message,
            "files": [{
                "operation": "upload",
                "path": path,
                "content": base64::engine::general_purpose::STANDARD.encode(content),
            }],
        });
        if let (Some(new_branch), Some(object)) = (new_branch, body.as_object_mut()) {
            object.insert("new_branch".into(), new_branch.into());
        }
        let answer = self
            .api(Method::POST, &repo.api_path("/contents"), Some(&body))
            .await?;
        answer
            .pointer("/commit/sha")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| unexpected("commit.sha", &answer))
    }

    /// Creates branch `name` at `from` (a branch, tag or commit).
    pub async fn create_branch(&self, repo: &Repo, name: &str, from: &str) -> Result<(), Error> {
        let body = json!({ "new_branch_name": name, "old_ref_name": from });
        self.api(Method::POST, &repo.api_path("/branches"), Some(&body))
            .await?;
        Ok(())
    }

    /// The commit `branch` points at.
    pub async fn branch_sha(&self, repo: &Repo, branch: &str) -> Result<String, Error> {
        let answer = self
            .api(
                Method::GET,
                &repo.api_path(&format!("/branches/{branch}")),
                None,
            )
            .await?;
        answer
            .pointer("/commit/id")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| unexpected("commit.id", &answer))
    }

    /// Adds an active webhook of type `gitea` posting JSON to `target_url`,
    /// signed with `secret`, for `events` (e.g. `pull_request`, `push`);
    /// returns its id. Gitea delivers to loopback addresses because its
    /// configuration allows them.
    pub async fn add_webhook(
        &self,
        repo: &Repo,
        target_url: &str,
        secret: &str,
        events: &[&str],
    ) -> Result<i64, Error> {
        let body = json!({
            "type": "gitea",
            "active": true,
            "events": events,
            "config": {"url": target_url, "content_type": "json", "secret": secret},
        });
        let answer = self
            .api(Method::POST, &repo.api_path("/hooks"), Some(&body))
            .await?;
        answer
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| unexpected("id", &answer))
    }

    /// Asks Gitea to deliver a test push event to webhook `hook` now.
    ///
    /// The API keeps no list of past deliveries. A delivery Gitea could not
    /// make (connection refused, a host not allowed) is in
    /// [`Gitea::log_tail`] as an error; one the receiver answered with an
    /// error status only at Trace level (`BARGE_GITEA_LOG_LEVEL=Trace`).
    pub async fn test_webhook(&self, repo: &Repo, hook: i64) -> Result<(), Error> {
        self.api(
            Method::POST,
            &repo.api_path(&format!("/hooks/{hook}/tests")),
            None,
        )
        .await?;
        Ok(())
    }

    /// Opens a pull request from branch `head` into `base`; returns its
    /// number. Gitea decides `mergeable` before answering.
    pub async fn open_pr(
        &self,
        repo: &Repo,
        head: &str,
        base: &str,
        title: &str,
    ) -> Result<u64, Error> {
        let body = json!({ "head": head, "base": base, "title": title });
        let answer = self
            .api(Method::POST, &repo.api_path("/pulls"), Some(&body))
            .await?;
        answer
            .get("number")
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("number", &answer))
    }

    /// The pull request as the API gives it (`state`, `merged`,
    /// `merge_commit_sha`, `mergeable`, `html_url`, `head`, `base`, ...).
    ///
    /// `mergeable: false` means a conflict or a check under way: when the
    /// base branch moves (another pull request merged), Gitea checks its
    /// open pull requests again and reports them not mergeable meanwhile
    /// (≈ 0.4 s here), and a merge then answers 405 as for a conflict.
    pub async fn get_pr(&self, repo: &Repo, number: u64) -> Result<Value, Error> {
        self.api(
            Method::GET,
            &repo.api_path(&format!("/pulls/{number}")),
            None,
        )
        .await
    }

    /// Merges the pull request with `style` (`merge`, `squash`, `rebase`,
    /// `rebase-merge`, `fast-forward-only`). A pull request that cannot be
    /// merged (a conflict) answers 405.
    pub async fn merge_pr(&self, repo: &Repo, number: u64, style: &str) -> Result<(), Error> {
        self.api(
            Method::POST,
            &repo.api_path(&format!("/pulls/{number}/merge")),
            Some(&json!({ "Do": style })),
        )
        .await?;
        Ok(())
    }

    /// Closes the pull request without merging it.
    pub async fn close_pr(&self, repo: &Repo, number: u64) -> Result<(), Error> {
        self.api(
            Method::PATCH,
            &repo.api_path(&format!("/pulls/{number}")),
            Some(&json!({ "state": "closed" })),
        )
        .await?;
        Ok(())
    }
}

impl Drop for Gitea {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the API answers, then creates the admin and its token with
/// Gitea's own CLI (no admin exists yet to do it through the API). Returns
/// the token.
async fn set_up(binary: &Path, dir: &Path, server: &Server, url: &str) -> Result<String, Error> {
    wait_ready(server, url).await?;
    let config = format!("--config={}", dir.join("app.ini").display());
    let work_path = format!("--work-path={}", dir.display());
    cli(
        binary,
        dir,
        &[
            &config,
            &work_path,
            "admin",
            "user",
            "create",
            "--username",
            ADMIN,
            "--password",
            ADMIN_PASSWORD,
            "--email",
            "admin@barge.test",
            "--admin",
            "--must-change-password=false",
        ],
    )?;
    let token = cli(
        binary,
        dir,
        &[
            &config,
            &work_path,
            "admin",
            "user",
            "generate-access-token",
            "--username",
            ADMIN,
            "--token-name",
            "barge-admin",
            "--scopes",
            "all",
            "--raw",
        ],
    )?;
    Ok(token)
}

/// Polls `GET /api/v1/version` until it answers 200, failing fast if Gitea exits.
async fn wait_ready(server: &Server, url: &str) -> Result<(), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    let api = format!("{url}/api/v1");
    loop {
        if !server.alive() {
            return Err(server.exited_error());
        }
        if request(&api, Auth::None, Method::GET, "/version", None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                name: "gitea".into(),
                timeout: START_TIMEOUT,
                log: crate::process::log_tail(server.dir(), "gitea", 30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a `gitea` CLI command in `dir`; returns the last line of its
/// standard output, where the value asked for is: Gitea logs to standard
/// output too (a warning about running as root comes first).
fn cli(binary: &Path, dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(binary)
        .args(args)
        .envs(server_env(dir))
        .current_dir(dir)
        .output()
        .map_err(|e| Error::Spawn(binary.display().to_string(), e))?;
    if !out.status.success() {
        return Err(Error::GiteaCli {
            // Skip `--config`/`--work-path`: the subcommand is what tells.
            command: args
                .iter()
                .filter(|a| !a.starts_with("--config=") && !a.starts_with("--work-path="))
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string())
}

/// The environment of Gitea and its CLI: its work directory, and a home of
/// its own so the machine's git configuration stays out. Tests run as root
/// in CI, which Gitea refuses unless told otherwise.
fn server_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GITEA_WORK_DIR", dir.display().to_string()),
        ("HOME", dir.display().to_string()),
        ("GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT", "true".into()),
    ]
}

/// A writable `app.ini` (Gitea writes a generated `JWT_SECRET` into it)
/// for a throw-away server: SQLite, no SSH, no mail, no Actions, nothing
/// fetched from the internet, memory cache, sessions and queues, webhooks
/// allowed to loopback addresses, where the tests listen, and a log of
/// warnings and errors unless asked for more.
fn app_ini(
    dir: &Path,
    static_root: &Path,
    port: u16,
    internal_token: &str,
    log_level: &str,
) -> String {
    let dir = dir.display();
    let static_root = static_root.display();
    format!(
        r#"APP_NAME = barge-test
RUN_MODE = prod
WORK_PATH = {dir}
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
OFFLINE_MODE = true
STATIC_ROOT_PATH = {static_root}
APP_DATA_PATH = {dir}/data

[database]
DB_TYPE = sqlite3
PATH = {dir}/data/gitea.db

[repository]
ROOT = {dir}/repositories
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
INTERNAL_TOKEN = {internal_token}
; the default hash costs tens of milliseconds per basic-auth request
PASSWORD_HASH_ALGO = pbkdf2_v1

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[cache]
ADAPTER = memory

[session]
PROVIDER = memory

[actions]
ENABLED = false

; in memory: the default on-disk queues poll with a back-off of up to 2 s,
; which delays webhooks and the re-check of pull requests after a merge
[queue]
TYPE = channel

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 5

[log]
MODE = console
LEVEL = {log_level}
"#
    )
}

/// `$BARGE_GITEA_LOG_LEVEL` (Gitea's names: `Trace`, `Debug`, `Info`,
/// `Warn`, `Error`), else `Warn`: a passing test leaves a log of a few
/// lines; a failing one may be run again with more.
fn log_level() -> String {
    std::env::var("BARGE_GITEA_LOG_LEVEL")
        .ok()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| "Warn".into())
}

/// How a request authenticates.
enum Auth<'a> {
    None,
    Token(&'a str),
    Basic(&'a str, &'a str),
}

/// One JSON request to the API under `api`. A client per request: a client
/// keeps connections that belong to the tokio runtime that opened them,
/// and every test has its own runtime while the server is shared.
/// In a test binary of the main crate reqwest is built with rustls and no
/// crypto provider of its own: installs the one kube uses, once.
pub(crate) fn install_crypto_provider() {
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

async fn request(
    api: &str,
    auth: Auth<'_>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Error> {
    let what = format!("{method} {path}");
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|source| Error::GiteaHttp {
            request: what.clone(),
            source,
        })?;
    let mut builder = client
        .request(method, format!("{api}{path}"))
        .header(http::header::ACCEPT, "application/json");
    builder = match auth {
        Auth::None => builder,
        Auth::Token(token) => builder.header(http::header::AUTHORIZATION, format!("token {token}")),
        Auth::Basic(user, password) => builder.basic_auth(user, Some(password)),
    };
    if let Some(body) = body {
        builder = builder
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = builder.send().await.map_err(|source| Error::GiteaHttp {
        request: what.clone(),
        source,
    })?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|source| Error::GiteaHttp {
        request: what.clone(),
        source,
    })?;
    if !status.is_success() {
        return Err(Error::GiteaApi {
            request: what,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).trim().to_string(),
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::GiteaApi {
        request: what,
        status: status.as_u16(),
        body: format!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)),
    })
}

fn string_field(value: &Value, field: &str, what: &str) -> Result<String, Error> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| unexpected(&format!("{what} {field}"), value))
}

fn unexpected(field: &str, answer: &Value) -> Error {
    Error::GiteaApi {
        request: format!("reading {field}"),
        status: 200,
        body: format!("the answer has no {field}: {answer}"),
    }
}
