//! A real OCI distribution registry (CNCF distribution's `registry`,
//! built by `hack/registry/build.sh`) for the Warehouse tests: images (and
//! OCI charts) are pushed to it through the distribution API itself.
//!
//! [`Registry::shared`] is anonymous; [`Registry::start_with`] starts one
//! with HTTP Basic authentication (an htpasswd file of bcrypt hashes) and
//! push notifications to webhook endpoints, as [`RegistryOptions`] says.

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

/// A running registry on a loopback port (anonymous unless started with
/// [`RegistryOptions::basic_auth`]). Dropping it stops it and removes its
/// storage.
pub struct Registry {
    dir: PathBuf,
    host: String,
    login: Option<(String, String)>,
    server: Mutex<Server>,
    watchdog: Mutex<Watchdog>,
}

/// How [`Registry::start_with`] configures the registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// A user and password: every request must carry them (HTTP Basic;
    /// the registry keeps a bcrypt htpasswd file).
    pub basic_auth: Option<(String, String)>,
    /// Where the registry POSTs its events (pushes, pulls).
    pub notifications: Vec<NotificationEndpoint>,
}

/// One of the registry's `notifications.endpoints`.
#[derive(Clone, Debug)]
pub struct NotificationEndpoint {
    pub name: String,
    pub url: String,
    /// The `Authorization` header sent with each event, if any.
    pub authorization: Option<String>,
    pub timeout: Duration,
    /// Failures before the endpoint is backed off.
    pub threshold: u32,
    pub backoff: Duration,
}

impl NotificationEndpoint {
    /// An endpoint with short timeouts, as tests want them.
    pub fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.to_string(),
            url: url.to_string(),
            authorization: None,
            timeout: Duration::from_secs(2),
            threshold: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// A pushed multi-platform image: the index's tag and digest, and each
/// platform (`os/arch[/variant]`) with its manifest's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedIndex {
    pub tag: String,
    pub digest: String,
    pub platforms: Vec<(String, String)>,
}

/// The annotation each entry of a pushed index carries, naming its
/// platform.
pub const PLATFORM_ANNOTATION: &str = "dev.barge.test/platform";

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

    /// An anonymous registry of its own.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(RegistryOptions::default()).await
    }

    /// A registry of its own, configured by `options`.
    pub async fn start_with(options: RegistryOptions) -> Result<Self, Error> {
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
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            storage.display()
        );
        if let Some((user, password)) = &options.basic_auth {
            let htpasswd = dir.join("htpasswd");
            let hash = bcrypt::hash(password, 4)
                .map_err(|e| Error::io(&htpasswd, std::io::Error::other(format!("bcrypt: {e}"))))?;
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))
                .map_err(|e| Error::io(&htpasswd, e))?;
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: barge-registry\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if !options.notifications.is_empty() {
            yaml.push_str("notifications:\n  events:\n    includereferences: true\n  endpoints:\n");
            for e in &options.notifications {
                yaml.push_str(&format!(
                    "    - name: {}\n      url: {}\n      timeout: {}ms\n      threshold: {}\n      backoff: {}ms\n",
                    json!(e.name),
                    json!(e.url),
                    e.timeout.as_millis(),
                    e.threshold,
                    e.backoff.as_millis()
                ));
                if let Some(authorization) = &e.authorization {
                    yaml.push_str(&format!(
                        "      headers:\n        Authorization: [{}]\n",
                        json!(authorization)
                    ));
                }
            }
        }
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
            login: options.basic_auth,
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

    /// The user and password it requires, if any.
    pub fn login(&self) -> Option<(&str, &str)> {
        self.login.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// A request to the registry, with its credentials if it has some.
    fn request(
        &self,
        method: Method,
        url: String,
        what: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let request = client(what)?.request(method, url);
        Ok(match &self.login {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        })
    }

    /// Pushes a multi-platform image: one manifest per platform
    /// (`os/arch[/variant]`, each config recording `created`), and an OCI
    /// index of them tagged `tag`, whose entries carry
    /// [`PLATFORM_ANNOTATION`] and which carries `annotations`.
    pub async fn push_index(
        &self,
        repository: &str,
        tag: &str,
        platforms: &[&str],
        created: &str,
        annotations: &[(&str, &str)],
    ) -> Result<PushedIndex, Error> {
        let mut entries = Vec::new();
        let mut pushed = Vec::new();
        for platform in platforms {
            let mut parts = platform.splitn(3, '/');
            let os = parts.next().unwrap_or_default();
            let arch = parts.next().unwrap_or_default();
            let variant = parts.next();
            let mut config = json!({
                "architecture": arch, "os": os, "created": created,
                "rootfs": {"type": "layers", "diff_ids": []},
            });
            if let Some(variant) = variant {
                config["variant"] = json!(variant);
            }
            let config = config.to_string().into_bytes();
            let layer = format!("layer of {repository}:{tag} for {platform}").into_bytes();
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
            let size = manifest.len();
            let digest = sha256(manifest.as_bytes());
            self.put_manifest(
                repository,
                &digest,
                "application/vnd.oci.image.manifest.v1+json",
                manifest,
            )
            .await?;
            let mut platform_json = json!({"os": os, "architecture": arch});
            if let Some(variant) = variant {
                platform_json["variant"] = json!(variant);
            }
            entries.push(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": size, "platform": platform_json,
                "annotations": {PLATFORM_ANNOTATION: platform},
            }));
            pushed.push((platform.to_string(), digest));
        }
        let mut index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        if !annotations.is_empty() {
            index["annotations"] = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let digest = self
            .put_manifest(
                repository,
                tag,
                "application/vnd.oci.image.index.v1+json",
                index.to_string(),
            )
            .await?;
        Ok(PushedIndex {
            tag: tag.to_string(),
            digest,
            platforms: pushed,
        })
    }

    /// Pushes a Helm chart as Helm pushes one to an OCI registry: a
    /// manifest whose config is of `application/vnd.cncf.helm.config.v1+json`
    /// and whose one layer is the chart archive, tagged with the version
    /// (`+` written `_`, as tags cannot hold `+`).
    pub async fn push_chart(&self, repository: &str, version: &str) -> Result<Pushed, Error> {
        let name = repository.rsplit('/').next().unwrap_or(repository);
        let config = json!({"apiVersion": "v2", "name": name, "version": version})
            .to_string()
            .into_bytes();
        let layer = format!("chart archive of {name} {version}").into_bytes();
        let config_digest = self.push_blob(repository, &config).await?;
        let layer_digest = self.push_blob(repository, &layer).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                        "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        let tag = version.replace('+', "_");
        let digest = self
            .put_manifest(
                repository,
                &tag,
                "application/vnd.oci.image.manifest.v1+json",
                manifest,
            )
            .await?;
        Ok(Pushed { tag, digest })
    }

    /// Tags the manifest `source` (a tag or digest) names with each of
    /// `tags`, `concurrency` PUTs at a time: many tags cheaply, without
    /// pushing blobs again.
    pub async fn tag_many(
        &self,
        repository: &str,
        source: &str,
        tags: Vec<String>,
        concurrency: usize,
    ) -> Result<(), Error> {
        let what = format!("GET /v2/{repository}/manifests/{source}");
        let response = self
            .request(
                Method::GET,
                format!("http://{}/v2/{repository}/manifests/{source}", self.host),
                &what,
            )?
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            )
            .send()
            .await
            .map_err(|source| Error::Http {
                request: what.clone(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(status_error(&what, response).await);
        }
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_string();
        let manifest = response.bytes().await.map_err(|source| Error::Http {
            request: what.clone(),
            source,
        })?;
        let workers = concurrency.max(1);
        let mut chunks: Vec<Vec<String>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, tag) in tags.into_iter().enumerate() {
            chunks[i % workers].push(tag);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in chunks {
            let host = self.host.clone();
            let login = self.login.clone();
            let repository = repository.to_string();
            let media_type = media_type.clone();
            let manifest = manifest.clone();
            tasks.spawn(async move {
                let http = client("PUT manifests")?;
                for tag in chunk {
                    let what = format!("PUT /v2/{repository}/manifests/{tag}");
                    let mut request = http
                        .put(format!("http://{host}/v2/{repository}/manifests/{tag}"))
                        .header("Content-Type", &media_type)
                        .body(manifest.clone());
                    if let Some((user, password)) = &login {
                        request = request.basic_auth(user, Some(password));
                    }
                    let response = request.send().await.map_err(|source| Error::Http {
                        request: what.clone(),
                        source,
                    })?;
                    if response.status() != StatusCode::CREATED {
                        return Err(status_error(&what, response).await);
                    }
                }
                Ok::<(), Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| Error::io(Path::new("tag_many"), std::io::Error::other(e)))??;
        }
        Ok(())
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
        let response = self
            .request(
                Method::GET,
                format!("http://{}/v2/{repository}/tags/list", self.host),
                &what,
            )?
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
        let started = self
            .request(
                Method::POST,
                format!("http://{}/v2/{repository}/blobs/uploads/", self.host),
                &what,
            )?
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
        let done = self
            .request(
                Method::PUT,
                format!("{location}{separator}digest={digest}"),
                &what,
            )?
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
        let response = self
            .request(
                Method::PUT,
                format!("http://{}/v2/{repository}/manifests/{reference}", self.host),
                &what,
            )?
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

/// `sha256:<hex>` of `bytes`: a blob's or manifest's digest.
pub fn sha256(bytes: &[u8]) -> String {
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
            && (response.status().is_success() || response.status() == StatusCode::UNAUTHORIZED)
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
