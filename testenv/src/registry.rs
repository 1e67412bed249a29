//! A real OCI distribution registry (CNCF distribution's `registry`,
//! built by `hack/registry/build.sh`) for the Warehouse tests: images (and
//! OCI charts) are pushed to it through the distribution API itself.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::process::{Server, Watchdog, free_port};
use crate::{Error, START_TIMEOUT, cache_dir};

/// The registry's release, pinned in `hack/registry/go.mod`.
pub const REGISTRY_VERSION: &str = "3.1.2";

/// Where the registry binary is: `$BARGE_REGISTRY_DIR`, else the cache.
pub fn registry_dir() -> PathBuf {
    std::env::var_os("BARGE_REGISTRY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("registry-{REGISTRY_VERSION}")))
}

pub fn is_built() -> bool {
    registry_dir().join("registry").is_file()
}

/// A running registry, without authentication, on a loopback port.
/// Dropping it stops it and removes its storage.
pub struct Registry {
    dir: PathBuf,
    host: String,
    server: Mutex<Server>,
    watchdog: Mutex<Watchdog>,
}

static SHARED: tokio::sync::OnceCell<Registry> = tokio::sync::OnceCell::const_new();

/// A pushed image: its tag and the digest of its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    pub tag: String,
    pub digest: String,
}

impl Registry {
    /// The registry of this test binary, started by the first test that
    /// asks for it.
    pub async fn shared() -> Result<&'static Registry, Error> {
        SHARED.get_or_try_init(Registry::start).await
    }

    pub async fn start() -> Result<Self, Error> {
        let binary = registry_dir().join("registry");
        if !binary.is_file() {
            return Err(Error::MissingRegistry(binary));
        }
        let dir = tempfile::Builder::new()
            .prefix("barge-registry-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?
            .keep();
        let mut watchdog = Watchdog::start(&dir)?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        let storage = dir.join("storage");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            storage.display()
        );
        std::fs::write(&config, yaml).map_err(|e| Error::io(&config, e))?;
        let mut server = Server::spawn(
            &dir,
            "registry",
            &binary,
            &["serve".into(), config.display().to_string()],
        )?;
        if let Err(e) = wait_ready(&server, &host).await {
            server.stop();
            watchdog.stop();
            return Err(e);
        }
        Ok(Self {
            dir,
            host,
            server: Mutex::new(server),
            watchdog: Mutex::new(watchdog),
        })
    }

    /// `127.0.0.1:<port>`: what image references start with.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pushes a one-layer image for `os`/`arch` as `repository:tag`; its
    /// config records `created` (RFC 3339), which NewestBuild selection
    /// reads. Returns the manifest's digest.
    pub async fn push_image(
        &self,
        repository: &str,
        tag: &str,
        (os, arch): (&str, &str),
        created: &str,
    ) -> Result<Pushed, Error> {
        let config = json!({
            "architecture": arch, "os": os, "created": created,
            "rootfs": {"type": "layers", "diff_ids": []},
        })
        .to_string()
        .into_bytes();
        let layer = format!("layer of {repository}:{tag} for {os}/{arch}").into_bytes();
        let config_digest = self.push_blob(repository, &config).await?;
        let layer_digest = self.push_blob(repository, &layer).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        let digest = self
            .put_manifest(
                repository,
                tag,
                "application/vnd.oci.image.manifest.v1+json",
                manifest,
            )
            .await?;
        Ok(Pushed {
            tag: tag.to_string(),
            digest,
        })
    }

    /// The repository's tags, as the registry lists them.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        let what = format!("GET /v2/{repository}/tags/list");
        let response = client(&what)?
            .get(format!("http://{}/v2/{repository}/tags/list", self.host))
            .send()
            .await
            .map_err(|source| Error::Http {
                request: what.clone(),
                source,
            })?;
        let body: Value = ok_json(&what, response).await?;
        Ok(body["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect())
    }

    async fn push_blob(&self, repository: &str, blob: &[u8]) -> Result<String, Error> {
        let digest = sha256(blob);
        let what = format!("POST /v2/{repository}/blobs/uploads/");
        let started = client(&what)?
            .post(format!(
                "http://{}/v2/{repository}/blobs/uploads/",
                self.host
            ))
            .send()
            .await
            .map_err(|source| Error::Http {
                request: what.clone(),
                source,
            })?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(status_error(&what, started).await);
        }
        let location = started
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.host)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let what = format!("PUT blob {digest}");
        let done = client(&what)?
            .request(Method::PUT, format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .map_err(|source| Error::Http {
                request: what.clone(),
                source,
            })?;
        if done.status() != StatusCode::CREATED {
            return Err(status_error(&what, done).await);
        }
        Ok(digest)
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: String,
    ) -> Result<String, Error> {
        let what = format!("PUT /v2/{repository}/manifests/{reference}");
        let digest = sha256(manifest.as_bytes());
        let response = client(&what)?
            .put(format!(
                "http://{}/v2/{repository}/manifests/{reference}",
                self.host
            ))
            .header("Content-Type", media_type)
            .body(manifest)
            .send()
            .await
            .map_err(|source| Error::Http {
                request: what.clone(),
                source,
            })?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&what, response).await);
        }
        Ok(digest)
    }

    /// Stops the registry and removes its storage.
    pub fn stop(&self) {
        if let Ok(mut server) = self.server.lock() {
            server.stop();
        }
        if let Ok(mut watchdog) = self.watchdog.lock() {
            watchdog.stop();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn client(what: &str) -> Result<reqwest::Client, Error> {
    crate::gitea::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| Error::Http {
            request: what.to_string(),
            source,
        })
}

async fn ok_json(what: &str, response: reqwest::Response) -> Result<Value, Error> {
    if !response.status().is_success() {
        return Err(status_error(what, response).await);
    }
    let text = response.text().await.map_err(|source| Error::Http {
        request: what.to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::HttpStatus {
        request: what.to_string(),
        status: 200,
        body: format!("not JSON ({e}): {text}"),
    })
}

async fn status_error(what: &str, response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Error::HttpStatus {
        request: what.to_string(),
        status,
        body,
    }
}

async fn wait_ready(server: &Server, host: &str) -> Result<(), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("http://{host}/v2/");
    loop {
        if !server.alive() {
            return Err(server.exited_error());
        }
        if let Ok(client) = client("GET /v2/")
            && let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                name: "registry".into(),
                timeout: START_TIMEOUT,
                log: crate::process::log_tail(server.dir(), "registry", 30),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
