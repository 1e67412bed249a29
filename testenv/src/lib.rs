//! A real etcd and kube-apiserver for Barge's tests, benchmarks and local
//! sandbox, built from Go modules by `make control-plane`.
//!
//! [`TestEnv::shared`] starts one control plane per test binary, on free
//! loopback ports, with RBAC, its own certificate authorities and an admin
//! client certificate. Each test takes a fresh namespace from
//! [`TestEnv::namespace`], so tests run in parallel without sharing state.
//! The servers stop and their directories are removed when the test binary
//! ends, however it ends (see [`process`]).
//!
//! Next to it: a real Argo CD ([`argocd`], `make argocd`), git repositories
//! and a smart-HTTP git server ([`git`], [`git_server`]), and a real Gitea
//! with pull requests and webhooks ([`gitea`], `make gitea`), an OCI
//! registry ([`registry`], `make registry`) and a classic chart repository
//! ([`chart_repo`]).

mod apply;
pub mod argocd;
pub mod chart_repo;
pub mod git;
pub mod git_server;
pub mod gitea;
mod pki;
pub mod process;
pub mod proxy;
pub mod registry;
mod task;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};

pub use crate::apply::apply;
use crate::process::{Server, Watchdog, free_port, rss_kib};
pub use crate::task::{StopSignal, StoppableTask};

/// The Kubernetes release the control plane is built from, read from the
/// wrapper module so the version is pinned in one place.
/// A test checks it against `hack/control-plane/kube/go.mod`.
pub const KUBERNETES_VERSION: &str = "1.36.3";

/// How long the servers may take to become ready on a busy 2-core machine.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(90);
pub(crate) const FIELD_MANAGER: &str = "barge-testenv";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("control plane binary {0} not found: run `make control-plane` (or set BARGE_K8S_BIN)")]
    MissingBinary(PathBuf),
    #[error("Argo CD file {0} not found: run `make argocd` (or set BARGE_ARGOCD_DIR)")]
    MissingArgoCd(PathBuf),
    #[error("Gitea file {0} not found: run `make gitea` (or set BARGE_GITEA_DIR)")]
    MissingGitea(PathBuf),
    #[error("registry binary {0} not found: run `make registry` (or set BARGE_REGISTRY_DIR)")]
    MissingRegistry(PathBuf),
    #[error("{request}: {source}")]
    Http {
        request: String,
        source: reqwest::Error,
    },
    #[error("{request}: HTTP {status}: {body}")]
    HttpStatus {
        request: String,
        status: u16,
        body: String,
    },
    #[error("gitea {command}: {output}")]
    GiteaCli { command: String, output: String },
    #[error("Gitea API {request}: {status}: {body}")]
    GiteaApi {
        request: String,
        status: u16,
        body: String,
    },
    #[error("Gitea API {request}: {source}")]
    GiteaHttp {
        request: String,
        source: reqwest::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("certificate generation failed: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("{name} exited during start-up ({status}); last log lines:\n{log}")]
    Exited {
        name: String,
        status: String,
        log: String,
    },
    #[error("{name} was not ready after {timeout:?}; last log lines:\n{log}")]
    NotReady {
        name: String,
        timeout: Duration,
        log: String,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("YAML: {0}")]
    Yaml(String),
    #[error("applying {what}: {source}")]
    Apply { what: String, source: kube::Error },
    #[error("git {command}: {stderr}")]
    Git { command: String, stderr: String },
    #[error("waiting for {0}: {1}")]
    Wait(String, String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where the control plane binaries are: `$BARGE_K8S_BIN`, else the cache
/// directory `make control-plane` builds into.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BARGE_K8S_BIN") {
        return PathBuf::from(dir);
    }
    cache_dir()
        .join(format!("k8s-{KUBERNETES_VERSION}"))
        .join("bin")
}

/// `$BARGE_CACHE`, else `~/.cache/barge`: where the Go-built servers are kept by version.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BARGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/barge")))
        .unwrap_or_else(|| PathBuf::from("/tmp/barge-cache"))
}

/// A running etcd and kube-apiserver. Dropping it stops both and removes
/// their directory.
pub struct ControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    config: Config,
    client_ca: pki::Authorities,
    etcd: Mutex<Server>,
    apiserver: Mutex<Server>,
    /// Command lines, to start a server again after a restart.
    etcd_args: Vec<String>,
    api_args: Vec<String>,
    startup: Duration,
    watchdog: Mutex<Watchdog>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the apiserver is ready
    /// and has created the `default` namespace. Retries on a port clash.
    pub async fn start() -> Result<Self, Error> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once().await {
                Ok(cp) => return Ok(cp),
                Err(e @ Error::Exited { .. })
                    if e.to_string().contains("address already in use") =>
                {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Wait("control plane".into(), "no attempt made".into())))
    }

    async fn start_once() -> Result<Self, Error> {
        let started = Instant::now();
        let bin_dir = bin_dir();
        for name in ["etcd", "kube-apiserver"] {
            if !bin_dir.join(name).is_file() {
                return Err(Error::MissingBinary(bin_dir.join(name)));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("barge-control-plane-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?
            .keep();
        let watchdog = Watchdog::start(&dir)?;
        let authorities = pki::generate(&dir)?;
        let pki = authorities.files.clone();

        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let mut etcd = Server::spawn(&dir, "etcd", &bin_dir.join("etcd"), &etcd_args)?;

        let server = format!("https://127.0.0.1:{api_port}");
        let path = |p: &Path| p.display().to_string();
        let api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", dir.join("apiserver").display()),
            format!("--tls-cert-file={}", path(&pki.serving_cert)),
            format!("--tls-private-key-file={}", path(&pki.serving_key)),
            format!("--client-ca-file={}", path(&pki.client_ca_cert)),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            // No controller-manager runs, so nothing would create default service accounts.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={server}"),
            format!("--service-account-key-file={}", path(&pki.sa_public_key)),
            format!("--service-account-signing-key-file={}", path(&pki.sa_key)),
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
        ];
        let mut apiserver = Server::spawn(
            &dir,
            "kube-apiserver",
            &bin_dir.join("kube-apiserver"),
            &api_args,
        )?;

        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &server,
            &pki.ca_cert,
            &pki.admin_cert,
            &pki.admin_key,
            "admin",
        )?;
        let config = load_config(&kubeconfig).await?;
        let client = Client::try_from(config.clone())?;

        if let Err(e) = wait_ready(&etcd, &apiserver, &client).await {
            apiserver.stop();
            etcd.stop();
            drop(watchdog);
            return Err(e);
        }
        Ok(Self {
            dir,
            bin_dir,
            server,
            kubeconfig,
            config,
            client_ca: authorities,
            etcd: Mutex::new(etcd),
            apiserver: Mutex::new(apiserver),
            etcd_args,
            api_args,
            startup: started.elapsed(),
            watchdog: Mutex::new(watchdog),
        })
    }

    /// A new client authenticated as a cluster admin (`system:masters`).
    pub fn client(&self) -> Client {
        // The same configuration already produced a working client at start-up.
        Client::try_from(self.config.clone())
            .unwrap_or_else(|e| panic!("client for {}: {e}", self.server))
    }

    /// The admin client's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes a kubeconfig for `user` in `groups`, with a certificate from the
    /// control plane's client CA, and returns its path. RBAC decides what the
    /// user may do.
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<PathBuf, Error> {
        let (cert, key) = pki::client_cert(&self.client_ca.client_ca, user, groups)?;
        let safe: String = user
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let cert_path = self.dir.join(format!("user-{safe}.crt"));
        let key_path = self.dir.join(format!("user-{safe}.key"));
        std::fs::write(&cert_path, cert).map_err(|e| Error::io(&cert_path, e))?;
        std::fs::write(&key_path, key).map_err(|e| Error::io(&key_path, e))?;
        let path = self.dir.join(format!("kubeconfig-{safe}"));
        write_kubeconfig(
            &path,
            &self.server,
            &self.client_ca.files.ca_cert,
            &cert_path,
            &key_path,
            user,
        )?;
        Ok(path)
    }

    /// The admin kubeconfig, for kubectl, helm and other processes.
    /// Writes a copy of the admin kubeconfig that reaches the API server
    /// through `addr` (a [`proxy::TcpProxy`] in front of it) and returns its
    /// path. The serving certificate names 127.0.0.1, so TLS still verifies.
    pub fn kubeconfig_via(&self, addr: std::net::SocketAddr) -> Result<PathBuf, Error> {
        let text = std::fs::read_to_string(&self.kubeconfig)
            .map_err(|e| Error::io(&self.kubeconfig, e))?;
        let path = self.dir.join(format!("kubeconfig-via-{}", addr.port()));
        let text = text.replace(
            &format!("server: {}", self.server),
            &format!("server: https://{addr}"),
        );
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// The API server's address.
    pub fn api_addr(&self) -> Result<std::net::SocketAddr, Error> {
        self.server
            .trim_start_matches("https://")
            .parse()
            .map_err(|e| Error::Wait("the API server's address".into(), format!("{e}")))
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directory holding etcd, kube-apiserver, kubectl and helm.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The control plane's working directory (certificates, logs, etcd data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Time from the call to `start` until the apiserver was ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Resident memory of etcd and kube-apiserver, in KiB.
    pub fn rss_kib(&self) -> (Option<u64>, Option<u64>) {
        let (etcd, apiserver) = self.pids();
        (rss_kib(etcd), rss_kib(apiserver))
    }

    /// Process ids of etcd and kube-apiserver.
    pub fn pids(&self) -> (u32, u32) {
        let pid = |server: &Mutex<Server>| server.lock().map(|s| s.pid()).unwrap_or(0);
        (pid(&self.etcd), pid(&self.apiserver))
    }

    /// Kills kube-apiserver (SIGKILL) and starts it again on the same port
    /// and storage, as a crashed or upgraded API server comes back; returns
    /// once it answers `/readyz` again. Open watches and connections break.
    pub async fn restart_apiserver(&self) -> Result<(), Error> {
        self.restart(&self.apiserver, "kube-apiserver", &self.api_args)
            .await
    }

    /// Kills etcd (SIGKILL) and starts it again on its data directory; the
    /// API server stays up, failing requests until etcd is back. Returns once
    /// the API server answers `/readyz` again.
    pub async fn restart_etcd(&self) -> Result<(), Error> {
        self.restart(&self.etcd, "etcd", &self.etcd_args).await
    }

    async fn restart(
        &self,
        server: &Mutex<Server>,
        name: &str,
        args: &[String],
    ) -> Result<(), Error> {
        let program = self.bin_dir.join(name);
        {
            let mut running = server
                .lock()
                .map_err(|_| Error::Wait(name.into(), "its lock was poisoned".into()))?;
            running.stop();
            *running = Server::spawn(&self.dir, name, &program, args)?;
        }
        let client = self.client();
        let deadline = Instant::now() + START_TIMEOUT;
        while !ready(&client).await {
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    name: name.into(),
                    timeout: START_TIMEOUT,
                    log: process::log_tail(&self.dir, name, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Runs kubectl against this control plane as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output, Error> {
        self.tool("kubectl", args)
    }

    /// Runs helm against this control plane as the admin, with its caches and
    /// configuration inside the control plane's directory.
    pub fn helm(&self, args: &[&str]) -> Result<Output, Error> {
        self.tool("helm", args)
    }

    fn tool(&self, name: &str, args: &[&str]) -> Result<Output, Error> {
        let program = self.bin_dir.join(name);
        if !program.is_file() {
            return Err(Error::MissingBinary(program));
        }
        let home = self.dir.join(format!("{name}-home"));
        Command::new(&program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &home)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .map_err(|e| Error::Spawn(program.display().to_string(), e))
    }

    /// Stops both servers and removes the directory, waiting until done.
    pub fn stop(&self) {
        for server in [&self.apiserver, &self.etcd] {
            if let Ok(mut server) = server.lock() {
                server.stop();
            }
        }
        if let Ok(mut watchdog) = self.watchdog.lock() {
            watchdog.stop();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls until the apiserver answers `/readyz`, failing fast if a server exits.
async fn wait_ready(etcd: &Server, apiserver: &Server, client: &Client) -> Result<(), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        for server in [etcd, apiserver] {
            if !server.alive() {
                return Err(server.exited_error());
            }
        }
        if ready(client).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                name: "kube-apiserver".into(),
                timeout: START_TIMEOUT,
                log: process::log_tail(apiserver.dir(), "kube-apiserver", 30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(client: &Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
}

async fn load_config(path: &Path) -> Result<Config, Error> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    // Parallel tests share one apiserver; don't let client-side defaults throttle them.
    config.read_timeout = Some(Duration::from_secs(300));
    Ok(config)
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
    user: &str,
) -> Result<(), Error> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: barge-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: barge-test\n  context:\n    cluster: barge-test\n    user: {user}\n    namespace: default\ncurrent-context: barge-test\n",
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
    );
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// The test-facing view of a control plane: clients, fresh namespaces, CRDs.
pub struct TestEnv {
    control_plane: ControlPlane,
    argocd: tokio::sync::OnceCell<argocd::ArgoCd>,
}

impl From<ControlPlane> for TestEnv {
    fn from(control_plane: ControlPlane) -> Self {
        TestEnv {
            control_plane,
            argocd: tokio::sync::OnceCell::new(),
        }
    }
}

static SHARED: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();
static NAMESPACES: AtomicU64 = AtomicU64::new(0);

impl TestEnv {
    /// The control plane of this test binary, started by the first test that
    /// asks for it.
    pub async fn shared() -> Result<&'static TestEnv, Error> {
        SHARED
            .get_or_try_init(|| async { Ok(TestEnv::from(ControlPlane::start().await?)) })
            .await
    }

    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The real Argo CD of this test binary, started next to the control
    /// plane by the first test that asks for it.
    pub async fn argocd(&self) -> Result<&argocd::ArgoCd, Error> {
        self.argocd
            .get_or_try_init(|| argocd::ArgoCd::start(&self.control_plane))
            .await
    }

    /// A new admin client. Make one per test: a client belongs to the tokio
    /// runtime it was made in.
    pub fn client(&self) -> Client {
        self.control_plane.client()
    }

    pub fn kubeconfig_path(&self) -> &Path {
        self.control_plane.kubeconfig_path()
    }

    pub fn bin_dir(&self) -> &Path {
        self.control_plane.bin_dir()
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<Output, Error> {
        self.control_plane.kubectl(args)
    }

    pub fn helm(&self, args: &[&str]) -> Result<Output, Error> {
        self.control_plane.helm(args)
    }

    /// Creates a namespace no other test uses and returns its name.
    pub async fn namespace(&self) -> Result<String, Error> {
        self.namespace_named("test").await
    }

    /// A namespace of its own for a test's Applications that real Argo CD
    /// reconciles (see [`argocd::APPLICATION_NAMESPACES`]).
    pub async fn argocd_namespace(&self) -> Result<String, Error> {
        self.namespace_named("argocd-apps").await
    }

    async fn namespace_named(&self, prefix: &str) -> Result<String, Error> {
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("barge.dev/test".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(name)
    }

    /// Applies CustomResourceDefinitions from a multi-document YAML string
    /// and waits until each is Established. Returns their names.
    pub async fn apply_crds(&self, yaml: &str) -> Result<Vec<String>, Error> {
        apply_crds(&self.client(), yaml).await
    }

    /// Applies every CRD in the given files.
    pub async fn apply_crd_files(&self, paths: &[&Path]) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for path in paths {
            let yaml = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            names.extend(self.apply_crds(&yaml).await?);
        }
        Ok(names)
    }

    /// Applies every `*.yaml` CRD file of a directory, in name order.
    pub async fn apply_crd_dir(&self, dir: &Path) -> Result<Vec<String>, Error> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        self.apply_crd_files(&paths).await
    }

    /// Waits until the CRD is Established, so its kind can be served.
    pub async fn wait_crd_established(&self, name: &str) -> Result<(), Error> {
        wait_crd_established(&self.client(), name).await
    }
}

/// Server-side applies the CRDs of a multi-document YAML string and waits
/// until each is Established. Returns their names.
pub async fn apply_crds(client: &Client, yaml: &str) -> Result<Vec<String>, Error> {
    let crds: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(yaml).map_err(|e| Error::Yaml(e.to_string()))?;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut names = Vec::new();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await?;
        names.push(name);
    }
    for name in &names {
        wait_crd_established(client, name).await?;
    }
    Ok(names)
}

/// Waits until the CRD is Established, so its kind can be served.
pub async fn wait_crd_established(client: &Client, name: &str) -> Result<(), Error> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let wait = await_condition(api, name, conditions::is_crd_established());
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Wait(format!("CRD {name}"), e.to_string())),
        Err(_) => Err(Error::Wait(
            format!("CRD {name}"),
            "not Established after 30s".into(),
        )),
    }
}
