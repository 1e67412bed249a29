//! A real git server for tests: bare repositories under a temporary
//! directory, served over `file://` and over smart HTTP by `git
//! http-backend` (run as a CGI program per request) behind HTTP basic
//! auth. Stops and is removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use tokio::io::AsyncWriteExt;

use crate::Error;
use crate::git::GitRepo;

/// Who may read and push.
#[derive(Clone, Debug)]
pub struct Login {
    pub username: String,
    pub password: String,
}

struct Shared {
    root: PathBuf,
    login: Login,
    /// Requests refused for want of the right credentials.
    refused: AtomicUsize,
    /// Pushes received (receive-pack POSTs).
    pushes: AtomicUsize,
}

/// Bare repositories served over `file://` and HTTP.
pub struct GitServer {
    dir: tempfile::TempDir,
    port: u16,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl GitServer {
    /// Starts serving an empty directory of repositories; HTTP requires
    /// `login`.
    pub async fn start(login: Login) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("barge-git-server-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?
            .port();
        let shared = Arc::new(Shared {
            root: dir.path().to_path_buf(),
            login,
            refused: AtomicUsize::new(0),
            pushes: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            dir,
            port,
            shared,
            server,
        })
    }

    /// Publishes `source`'s history as the bare repository `name`.
    pub fn publish(&self, name: &str, source: &GitRepo) -> Result<(), Error> {
        let bare = self.path(name);
        git(
            self.dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                &source.path().display().to_string(),
                &bare.display().to_string(),
            ],
        )?;
        // Pushes over HTTP need this when the server sees no REMOTE_USER.
        git(&bare, &["config", "http.receivepack", "true"])?;
        Ok(())
    }

    /// An empty bare repository `name`.
    pub fn create_empty(&self, name: &str) -> Result<(), Error> {
        let bare = self.path(name);
        git(
            self.dir.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                &bare.display().to_string(),
            ],
        )?;
        git(&bare, &["config", "http.receivepack", "true"])?;
        Ok(())
    }

    /// Where repository `name` lives on disk.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.git"))
    }

    /// Its `file://` URL.
    pub fn file_url(&self, name: &str) -> String {
        format!("file://{}", self.path(name).display())
    }

    /// Its smart-HTTP URL.
    pub fn http_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }

    /// Runs `git` in repository `name` (e.g. `log`, `rev-parse`); returns
    /// its output.
    pub fn git(&self, name: &str, args: &[&str]) -> Result<String, Error> {
        git(&self.path(name), args)
    }

    /// HTTP requests refused for missing or wrong credentials so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Pushes received over HTTP so far.
    pub fn pushes(&self) -> usize {
        self.shared.pushes.load(Ordering::SeqCst)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("git")
        .args(["-c", "user.name=Barge", "-c", "user.email=barge@barge.dev"])
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| Error::Spawn("git".into(), e))?;
    if !out.status.success() {
        return Err(Error::Git {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn authorized(headers: &HeaderMap, login: &Login) -> bool {
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", login.username, login.password));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v.trim() == expected)
}

fn respond(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}

async fn serve(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers, &shared.login) {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        let mut response = respond(StatusCode::UNAUTHORIZED, "authentication required");
        if let Ok(value) = "Basic realm=\"git\"".parse() {
            response.headers_mut().insert("www-authenticate", value);
        }
        return response;
    }
    if method == Method::POST && uri.path().ends_with("/git-receive-pack") {
        shared.pushes.fetch_add(1, Ordering::SeqCst);
    }
    match cgi(&shared, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// One request through `git http-backend`.
async fn cgi(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", &shared.login.username)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("git http-backend: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&body)
            .await
            .map_err(|e| format!("git http-backend stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("git http-backend: {e}"))?;
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        })
        .ok_or_else(|| {
            format!(
                "git http-backend gave no headers: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let (head, rest) = out.stdout.split_at(split.0);
    let mut response = respond(StatusCode::OK, rest[split.1..].to_vec());
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse().ok());
            if let Some(code) = code.and_then(|c: u16| StatusCode::from_u16(c).ok()) {
                *response.status_mut() = code;
            }
        } else if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name.trim()),
            axum::http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

impl GitServer {
    /// Commits `text` as `file` on `branch` of repository `name`, as
    /// someone else pushing would; returns the commit.
    pub fn commit_file(
        &self,
        name: &str,
        branch: &str,
        file: &str,
        text: &str,
    ) -> Result<String, Error> {
        Self::commit_file_at(&self.path(name), branch, file, text)
    }

    /// [`GitServer::commit_file`] to the bare repository at `bare`, for a
    /// test that cannot hold the server where it pushes.
    pub fn commit_file_at(
        bare: &Path,
        branch: &str,
        file: &str,
        text: &str,
    ) -> Result<String, Error> {
        let work = tempfile::Builder::new()
            .prefix("barge-git-push-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?;
        let path = work.path().display().to_string();
        git(
            work.path(),
            &[
                "clone",
                "-q",
                "-b",
                branch,
                &bare.display().to_string(),
                &path,
            ],
        )?;
        let target = work.path().join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&target, text).map_err(|e| Error::io(&target, e))?;
        git(work.path(), &["add", "-A"])?;
        git(
            work.path(),
            &["commit", "-q", "-m", &format!("update {file}")],
        )?;
        git(work.path(), &["push", "-q", "origin", branch])?;
        Ok(git(work.path(), &["rev-parse", "HEAD"])?.trim().to_string())
    }
}
