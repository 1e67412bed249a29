//! A real Argo CD next to the control plane: a redis-compatible server, the
//! repo-server and the application-controller, built by `make argocd`.
//!
//! One Argo CD serves a whole test binary, like the control plane. It
//! reconciles Applications in the namespaces matching
//! [`APPLICATION_NAMESPACES`] (each test makes its own) and
//! deploys to the control plane itself, as the in-cluster destination
//! `https://kubernetes.default.svc`. Its processes run under the same
//! lifelines as etcd and kube-apiserver, so none outlives the test binary.
//!
//! Health that is not Healthy comes from [`WIDGET_CRD_YAML`]: a small kind of
//! the tests' own whose Argo CD health is whatever its `status.health` says
//! (a Lua health check in `argocd-cm`), so a test can hold a resource
//! Progressing, turn it Degraded, or hold a sync on a PreSync hook, and
//! release it when it chooses. No kube-controller-manager is needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams,
};

use crate::process::{Server, Watchdog, free_port, rss_kib};
use crate::{ControlPlane, Error, FIELD_MANAGER};

/// The Argo CD release `make argocd` builds (pinned in `hack/argocd/go.mod`;
/// a test checks that they agree).
pub const ARGOCD_VERSION: &str = "3.6.1";

/// The namespace Argo CD's own configuration lives in.
pub const ARGOCD_NAMESPACE: &str = "argocd";

/// Namespaces whose Applications real Argo CD reconciles (a glob, as
/// `--application-namespaces` takes it): [`crate::TestEnv::argocd_namespace`]
/// makes them. Other namespaces stay free for the Argo CD double, which can
/// share the control plane in the same test binary.
pub const APPLICATION_NAMESPACES: &str = "argocd-apps-*";

/// The AppProject every test Application uses.
pub const PROJECT: &str = "default";

/// A kind whose Argo CD health is its `status.health` (`Healthy`,
/// `Progressing`, `Degraded`, `Suspended`; none: Progressing). `spec.size`
/// must be a non-negative integer, so a manifest with `size: -1` is one the
/// API server rejects; `spec` keeps only known fields, so an unknown one is
/// pruned and the Application never compares Synced (a permanent diff).
pub const WIDGET_CRD_YAML: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.barge.dev
spec:
  group: test.barge.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 0}
              message: {type: string}
          status:
            type: object
            properties:
              health: {type: string}
              message: {type: string}
"#;

/// The Widget kind's group, version and plural.
pub fn widget_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("test.barge.dev", "v1", "Widget");
    ApiResource::from_gvk_with_plural(&gvk, "widgets")
}

const WIDGET_HEALTH_LUA: &str = r#"hs = {}
if obj.status ~= nil and obj.status.health ~= nil and obj.status.health ~= "" then
  hs.status = obj.status.health
  hs.message = obj.status.message or ("widget is " .. obj.status.health)
  return hs
end
hs.status = "Progressing"
hs.message = "widget has reported no health yet"
return hs
"#;

/// How long Argo CD's processes may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `make argocd` put the binaries, CRDs and script: `$BARGE_ARGOCD_DIR`,
/// else `<cache>/argocd-<version>`.
pub fn argocd_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BARGE_ARGOCD_DIR") {
        return PathBuf::from(dir);
    }
    crate::cache_dir().join(format!("argocd-{ARGOCD_VERSION}"))
}

/// True when `make argocd` has built everything [`ArgoCd::start`] needs.
pub fn is_built() -> bool {
    let dir = argocd_dir();
    ["argocd", "miniredis", "git-verify-wrapper.sh"]
        .iter()
        .all(|f| dir.join(f).is_file())
        && dir.join("crds/application-crd.yaml").is_file()
}

/// A running Argo CD. Dropping it stops its processes.
pub struct ArgoCd {
    dir: PathBuf,
    redis: Server,
    repo_server: Server,
    controller: Server,
    controller_metrics: u16,
    startup: Duration,
    watchdog: Watchdog,
}

impl ArgoCd {
    /// Installs Argo CD's CRDs, configuration and AppProject into the control
    /// plane, then starts redis, the repo-server and the application-controller
    /// and waits until both answer `/healthz`.
    pub async fn start(control_plane: &ControlPlane) -> Result<Self, Error> {
        let started = Instant::now();
        let home = argocd_dir();
        for file in ["argocd", "miniredis", "git-verify-wrapper.sh"] {
            if !home.join(file).is_file() {
                return Err(Error::MissingArgoCd(home.join(file)));
            }
        }
        let client = control_plane.client();
        install(&client, &home).await?;

        let dir = tempfile::Builder::new()
            .prefix("barge-argocd-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?
            .keep();
        let watchdog = Watchdog::start(&dir)?;
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;

        let redis_addr = format!("127.0.0.1:{}", free_port()?);
        let redis = Server::spawn(
            &dir,
            "miniredis",
            &home.join("miniredis"),
            &[format!("--addr={redis_addr}")],
        )?;

        // Argo CD's image ships kustomize and helm for the repo-server to
        // render sources with: here, the ones `make control-plane` built.
        let path = format!(
            "{}:{}:{}",
            home.display(),
            control_plane.bin_dir().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
        );
        let common_env = |extra: &[(&'static str, String)]| {
            let mut env = vec![
                ("PATH", path.clone()),
                ("HOME", dir.display().to_string()),
                ("TMPDIR", tmp.display().to_string()),
                (
                    "KUBECONFIG",
                    control_plane.kubeconfig_path().display().to_string(),
                ),
                ("ARGOCD_FAKE_IN_CLUSTER", "true".into()),
                ("ARGOCD_GPG_ENABLED", "false".into()),
            ];
            env.extend(extra.iter().cloned());
            env
        };

        let (repo_port, repo_metrics) = (free_port()?, free_port()?);
        let repo_server = Server::spawn_with_env(
            &dir,
            "repo-server",
            &home.join("argocd"),
            &[
                "repo-server".into(),
                "--disable-tls".into(),
                "--client-ca-path=".into(),
                "--address=127.0.0.1".into(),
                format!("--port={repo_port}"),
                "--metrics-address=127.0.0.1".into(),
                format!("--metrics-port={repo_metrics}"),
                format!("--redis={redis_addr}"),
                "--logformat=text".into(),
            ],
            &common_env(&[(
                "ARGOCD_ASK_PASS_SOCK",
                dir.join("askpass.sock").display().to_string(),
            )]),
        )?;

        let controller_metrics = free_port()?;
        let controller = Server::spawn_with_env(
            &dir,
            "application-controller",
            &home.join("argocd"),
            &[
                "application-controller".into(),
                format!("--kubeconfig={}", control_plane.kubeconfig_path().display()),
                format!("--namespace={ARGOCD_NAMESPACE}"),
                format!("--application-namespaces={APPLICATION_NAMESPACES}"),
                format!("--redis={redis_addr}"),
                format!("--repo-server=127.0.0.1:{repo_port}"),
                "--repo-server-plaintext".into(),
                format!("--metrics-port={controller_metrics}"),
                "--logformat=text".into(),
                // Argo CD's own periodic refresh: a backstop for it, as in production.
                "--app-resync=180".into(),
            ],
            &common_env(&[]),
        )?;

        let mut argocd = Self {
            dir,
            redis,
            repo_server,
            controller,
            controller_metrics,
            startup: Duration::ZERO,
            watchdog,
        };
        if let Err(e) = argocd
            .wait_healthy(&[repo_metrics, controller_metrics])
            .await
        {
            argocd.stop();
            return Err(e);
        }
        argocd.startup = started.elapsed();
        Ok(argocd)
    }

    async fn wait_healthy(&self, ports: &[u16]) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        for port in ports {
            loop {
                for server in [&self.redis, &self.repo_server, &self.controller] {
                    if !server.alive() {
                        return Err(server.exited_error());
                    }
                }
                if healthz(*port).await {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::NotReady {
                        name: format!("Argo CD (metrics port {port})"),
                        timeout: START_TIMEOUT,
                        log: crate::process::log_tail(&self.dir, "application-controller", 30),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Argo CD's working directory (logs, the repo-server's checkouts).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The application-controller's metrics port (`/metrics`, `/healthz`).
    pub fn controller_metrics_port(&self) -> u16 {
        self.controller_metrics
    }

    /// Time from the call to `start` until both servers were healthy.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Resident memory of the application-controller, repo-server and redis, in KiB.
    pub fn rss_kib(&self) -> [Option<u64>; 3] {
        [
            rss_kib(self.controller.pid()),
            rss_kib(self.repo_server.pid()),
            rss_kib(self.redis.pid()),
        ]
    }

    /// Process ids of the application-controller, repo-server and redis.
    pub fn pids(&self) -> [u32; 3] {
        [
            self.controller.pid(),
            self.repo_server.pid(),
            self.redis.pid(),
        ]
    }

    /// The last lines of one process's log (`application-controller`,
    /// `repo-server`, `miniredis`), for failure messages.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        crate::process::log_tail(&self.dir, name, lines)
    }

    /// Stops every process and removes the directory, waiting until done.
    pub fn stop(&mut self) {
        self.controller.stop();
        self.repo_server.stop();
        self.redis.stop();
        self.watchdog.stop();
    }
}

impl Drop for ArgoCd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn healthz(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response)).await;
    matches!(read, Ok(Ok(_)))
        && (response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"))
}

/// CRDs, the Widget kind, `argocd-cm`, `argocd-secret` and the AppProject.
async fn install(client: &Client, home: &Path) -> Result<(), Error> {
    let crds = home.join("crds");
    for file in ["application-crd.yaml", "appproject-crd.yaml"] {
        let path = crds.join(file);
        let yaml = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        crate::apply_crds(client, &yaml).await?;
    }
    crate::apply_crds(client, WIDGET_CRD_YAML).await?;

    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ARGOCD_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(ARGOCD_NAMESPACE, &apply, &Patch::Apply(&namespace))
        .await?;

    let part_of = [(
        "app.kubernetes.io/part-of".to_string(),
        "argocd".to_string(),
    )];
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("argocd-cm".into()),
            namespace: Some(ARGOCD_NAMESPACE.into()),
            labels: Some(part_of.clone().into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [
                (
                    "resource.customizations.health.test.barge.dev_Widget".to_string(),
                    WIDGET_HEALTH_LUA.to_string(),
                ),
                // Argo CD's own periodic comparison; tests never rely on it.
                ("timeout.reconciliation".to_string(), "180s".to_string()),
            ]
            .into(),
        ),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), ARGOCD_NAMESPACE)
        .patch("argocd-cm", &apply, &Patch::Apply(&cm))
        .await?;

    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("argocd-secret".into()),
            namespace: Some(ARGOCD_NAMESPACE.into()),
            labels: Some(part_of.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            [(
                "server.secretkey".to_string(),
                format!("barge-test-{}", std::process::id()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), ARGOCD_NAMESPACE)
        .patch("argocd-secret", &apply, &Patch::Apply(&secret))
        .await?;

    // argocd-server normally creates this; Applications in any namespace may use it.
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AppProject");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "appprojects");
    let project: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
        "metadata": {"name": PROJECT, "namespace": ARGOCD_NAMESPACE},
        "spec": {
            "sourceRepos": ["*"],
            "sourceNamespaces": [APPLICATION_NAMESPACES],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    }))
    .map_err(|e| Error::Yaml(e.to_string()))?;
    Api::<DynamicObject>::namespaced_with(client.clone(), ARGOCD_NAMESPACE, &resource)
        .patch(PROJECT, &apply, &Patch::Apply(&project))
        .await?;
    Ok(())
}
