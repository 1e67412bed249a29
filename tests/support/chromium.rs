//! A real headless Chromium driven over the DevTools protocol: open a page,
//! evaluate JavaScript, wait (on DOM mutations, not timers) until an
//! expression holds, and take screenshots.
//!
//! Chromium comes from the distribution (`make chromium`); a missing one
//! fails the test, saying how to install it, as missing control-plane
//! binaries do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(60);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running Chromium with one page. Dropping it kills the browser.
pub struct Browser {
    _process: tokio::process::Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    /// The page's session; `None` while speaking to the browser itself.
    session: Option<String>,
    next_id: u64,
}

/// The Chromium binary: $BARGE_CHROMIUM, or the first of the usual names
/// on PATH.
pub fn binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("BARGE_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(
        "Chromium not found: run `make chromium` (installs Debian's chromium package) \
         or set BARGE_CHROMIUM to a Chromium or Chrome binary"
            .into(),
    )
}

/// Where screenshots go: `<target dir>/screenshots/`, which CI keeps.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/screenshots"))
}

impl Browser {
    /// Starts headless Chromium on a fresh profile and connects to its page.
    pub async fn start() -> Result<Self, Error> {
        let profile = tempfile::tempdir()?;
        let process = tokio::process::Command::new(binary()?)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting Chromium: {e}"))?;
        let (port, path) = devtools_endpoint(profile.path()).await?;
        let (socket, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}")).await?;
        let mut browser = Self {
            _process: process,
            _profile: profile,
            socket,
            session: None,
            next_id: 0,
        };
        // One page of its own, spoken to through a flat session.
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await?;
        browser.session = Some(
            attached["sessionId"]
                .as_str()
                .ok_or("Chromium attached to no session")?
                .to_string(),
        );
        browser.call("Page.enable", json!({})).await?;
        Ok(browser)
    }

    /// Sends one DevTools command and returns its result, skipping events.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            request["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(request.to_string())).await?;
        while let Some(message) = self.socket.next().await {
            let Message::Text(text) = message? else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text)?;
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{method}: {error}").into());
            }
            return Ok(reply["result"].clone());
        }
        Err(format!("{method}: Chromium closed the connection").into())
    }

    pub async fn open(&mut self, url: &str) -> Result<(), Error> {
        self.call("Page.navigate", json!({"url": url})).await?;
        let loaded = format!(
            "location.href.startsWith({}) && document.readyState === 'complete'",
            json!(url)
        );
        self.wait_for(&loaded, "the page to load").await?;
        Ok(())
    }

    /// The value of a JavaScript expression (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Result<Value, Error> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            return Err(format!("evaluating {expression}: {details}").into());
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `expression` is truthy, checking again on every DOM
    /// change; returns its value. Fails after [`PATIENCE`] with the page's
    /// text, naming `what`.
    pub async fn wait_for(&mut self, expression: &str, what: &str) -> Result<Value, Error> {
        let script = format!(
            "new Promise((resolve) => {{
                const check = () => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }};
                const now = check();
                if (now) {{ resolve(now); return; }}
                const observer = new MutationObserver(() => {{
                    const v = check();
                    if (v) {{ observer.disconnect(); resolve(v); }}
                }});
                observer.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
                document.addEventListener('readystatechange', () => {{
                    const v = check();
                    if (v) {{ observer.disconnect(); resolve(v); }}
                }});
            }})"
        );
        match tokio::time::timeout(PATIENCE, self.eval(&script)).await {
            Ok(result) => result,
            Err(_) => {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await
                    .unwrap_or_default();
                Err(
                    format!("{what} did not show within {PATIENCE:?}; the page shows:\n{text}")
                        .into(),
                )
            }
        }
    }

    /// Writes a PNG of the whole page to `<target>/screenshots/<name>.png`.
    pub async fn screenshot(&mut self, name: &str) -> Result<PathBuf, Error> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        println!("screenshot: {}", path.display());
        Ok(path)
    }
}

/// The port and browser path Chromium chose, from the file it writes once
/// it listens.
async fn devtools_endpoint(profile: &Path) -> Result<(u16, String), Error> {
    let file = profile.join("DevToolsActivePort");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(Ok(port)), Some(path)) = (lines.next().map(str::parse), lines.next()) {
                return Ok((port, path.to_string()));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("Chromium did not write {} in time", file.display()).into());
        }
        // Start-up only: Chromium gives no other sign that it listens.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
