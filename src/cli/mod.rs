//! The `barge` command line.

mod abort;
mod approve;
mod columns;
mod complete;
mod completion;
mod describe;
mod error;
mod follow;
mod get;
mod kube_args;
mod output;
mod plugin;
mod promote;
mod refresh;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::controller::{Metrics, Settings};

mod dashboard;

#[derive(Debug, Parser)]
#[command(name = "barge", version, about = "A Kubernetes promotion controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers against a cluster.
    Run(Box<RunArgs>),
    /// Print the plan Promotions would run, inflated and evaluated, from
    /// manifests on disk (no cluster needed).
    Expand {
        /// Files or directories of Stage, (Cluster)PromotionTask, Freight and
        /// Promotion manifests.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Only this Stage.
        #[arg(long)]
        stage: Option<String>,
        /// The Freight to preview with, when the input has no Promotion.
        #[arg(long)]
        freight: Option<String>,
        /// Namespace for objects that name none.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Print Barge's CustomResourceDefinitions as one YAML stream, or write
    /// one file per CRD (`<plural>.barge.dev.yaml`) with --out-dir.
    Crds {
        /// Write `<plural>.barge.dev.yaml` files into this directory (and
        /// remove generated files of kinds that no longer exist) instead of
        /// printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Print the ValidatingAdmissionPolicy (and its binding) that makes
    /// barge.dev/create-actor the user who created the Promotion; run the
    /// controller with --trust-create-actor once it is installed.
    AdmissionPolicy,
    /// Approve a Freight for a Stage: the Stage may take it without it
    /// passing the upstream Stages (Kargo's manual approval).
    Approve(approve::ApproveArgs),
    /// Ask a Warehouse to discover, or a Stage or Promotion to be looked at,
    /// now (sets barge.dev/refresh).
    Refresh(refresh::RefreshArgs),
    /// Promote Freight to a Stage (a new Promotion); --wait follows it.
    Promote(promote::PromoteArgs),
    /// List Stages, Promotions, Freight or Warehouses.
    Get(get::GetArgs),
    /// Show one Promotion (plan, steps, what it waits on) or Stage.
    Describe(describe::DescribeArgs),
    /// Abort a running Promotion.
    Abort(abort::AbortArgs),
    /// Print a shell completion script.
    Completion(completion::CompletionArgs),
    /// Serve a live, read-only view of the pipelines (Warehouses, Stages,
    /// Freight, Promotions) with your own credentials.
    Dashboard(dashboard::DashboardArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Kubeconfig to use; without it, the in-cluster config, then $KUBECONFIG
    /// or ~/.kube/config.
    #[arg(long, env = "BARGE_KUBECONFIG", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,

    /// How long a waiting Promotion may go without a reconcile when no event
    /// arrives (Go duration). A safety net only: waits are woken by events.
    #[arg(long, env = "BARGE_BACKSTOP", default_value_t = GoDuration(crate::controller::DEFAULT_BACKSTOP))]
    backstop: GoDuration,

    /// Namespace of Argo CD Applications when a step names none.
    #[arg(long, env = "BARGE_ARGOCD_NAMESPACE", default_value = crate::controller::DEFAULT_ARGOCD_NAMESPACE)]
    argocd_namespace: String,

    /// Watch Applications in every namespace, not only --argocd-namespace.
    #[arg(long, env = "BARGE_ARGOCD_ALL_NAMESPACES")]
    argocd_all_namespaces: bool,

    /// Only reconcile Promotions in this namespace.
    #[arg(long, env = "BARGE_NAMESPACE")]
    namespace: Option<String>,

    /// Reconciles running at once.
    #[arg(long, env = "BARGE_CONCURRENCY", default_value_t = crate::controller::DEFAULT_CONCURRENCY)]
    concurrency: u16,

    /// Log format.
    #[arg(long, env = "BARGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Pass barge.dev/create-actor to Argo CD as the user of a manual sync.
    /// Only with the create-actor admission policy installed (`barge
    /// admission-policy`), which makes it the authenticated creator; without
    /// it anyone could pose as anyone, so every sync is an automated one.
    #[arg(long, env = "BARGE_TRUST_CREATE_ACTOR")]
    trust_create_actor: bool,
    /// Where each Promotion gets a directory for its files (git checkouts,
    /// rendered manifests); removed when the Promotion ends. Default: the
    /// system's temporary directory, under barge-controller.
    #[arg(long, env = "BARGE_WORK_DIR", value_name = "DIR")]
    work_dir: Option<std::path::PathBuf>,
    /// Most a Promotion's files (clones, renders) may take, in MiB; a step
    /// that leaves more fails the Promotion, saying so.
    #[arg(
        long,
        env = "BARGE_WORK_DIR_LIMIT_MIB",
        default_value_t = 1024,
        value_name = "MIB"
    )]
    work_dir_limit_mib: u64,
    /// The kustomize binary the kustomize-build step runs (a path, or a name
    /// looked up on PATH).
    #[arg(
        long,
        env = "BARGE_KUSTOMIZE",
        value_name = "PATH",
        default_value = "kustomize"
    )]
    kustomize: std::path::PathBuf,
    /// The helm (v3) binary the helm-template step, and kustomize's chart
    /// inflation, run (a path, or a name looked up on PATH).
    #[arg(long, env = "BARGE_HELM", value_name = "PATH", default_value = "helm")]
    helm: std::path::PathBuf,
    /// How long one run of kustomize or helm may take (Go duration).
    #[arg(long, env = "BARGE_TOOL_TIMEOUT", default_value_t = GoDuration(crate::steps::tools::DEFAULT_TIMEOUT))]
    tool_timeout: GoDuration,
    /// Only reconcile Stages and Promotions labelled barge.dev/shard=<SHARD>.
    #[arg(long, env = "BARGE_SHARD")]
    shard: Option<String>,

    /// Address of the /healthz, /readyz and /metrics endpoints ("" turns them off).
    #[arg(long, env = "BARGE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: String,

    /// Address of the webhook endpoint Git hosts deliver pull-request
    /// events to (the receivers of ProjectConfigs); "" turns it off.
    #[arg(long, env = "BARGE_WEBHOOK_ADDR", default_value = "0.0.0.0:8081")]
    webhook_addr: String,
    /// The endpoint's public URL (an Ingress's), to publish each receiver's
    /// whole URL in its ProjectConfig's status.
    #[arg(long, env = "BARGE_WEBHOOK_BASE_URL", value_name = "URL")]
    webhook_base_url: Option<String>,

    /// Address of the live view of the pipelines, served from the
    /// controller's caches; "" (the default) turns it off.
    #[arg(long, env = "BARGE_DASHBOARD_ADDR", default_value = "")]
    dashboard_addr: String,

    /// Create each Kargo Project's namespace (labelled
    /// kargo.akuity.io/project=true) and an empty ProjectConfig, and delete
    /// the namespace with the Project unless it is annotated
    /// kargo.akuity.io/keep-namespace=true. Needs rights on namespaces.
    #[arg(long, env = "BARGE_MANAGE_PROJECTS")]
    manage_projects: bool,

    /// The longest one Warehouse subscription's discovery may take (Go
    /// duration); a source slower than that fails the discovery, which is
    /// retried with backoff.
    #[arg(long, env = "BARGE_DISCOVERY_TIMEOUT", default_value_t = GoDuration(crate::warehouse::discover::DEFAULT_TIMEOUT))]
    discovery_timeout: GoDuration,

    /// Run only while holding a Lease, so several replicas can stand by.
    #[arg(long, env = "BARGE_LEADER_ELECTION")]
    leader_election: bool,

    /// Namespace of the leader Lease (the pod's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    /// Name of the leader Lease.
    #[arg(long, env = "BARGE_LEASE_NAME", default_value = crate::CONTROLLER_NAME)]
    lease_name: String,

    /// How long the Lease lasts without renewal (Go duration).
    #[arg(long, env = "BARGE_LEASE_DURATION", default_value_t = GoDuration(Duration::from_secs(15)))]
    lease_duration: GoDuration,

    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Do not wake Promotions on Application changes (measuring the backstop alone).
    #[arg(long, env = "BARGE_NO_APPLICATION_WAKEUPS", hide = true)]
    no_application_wakeups: bool,
}

/// A duration written as Go writes them (`90s`, `5m`, `1h30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GoDuration(Duration);

impl std::str::FromStr for GoDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let d: kube::core::Duration = text.parse().map_err(|e| format!("{e}"))?;
        Ok(Self(Duration::from(d)))
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, millis) = (self.0.as_secs(), self.0.subsec_millis());
        match (secs, millis) {
            (s, 0) if s > 0 && s % 3600 == 0 => write!(f, "{}h", s / 3600),
            (s, 0) if s > 0 && s % 60 == 0 => write!(f, "{}m", s / 60),
            (s, 0) => write!(f, "{s}s"),
            _ => write!(f, "{}ms", self.0.as_millis()),
        }
    }
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    // kubectl asking for completions of `kubectl barge …`: not a command a
    // user types, so not part of the command-line definition.
    let mut args = std::env::args().skip(1).peekable();
    if plugin::invoked_as_completion() {
        return complete::main(args.collect(), Cli::command());
    }
    if args.peek().map(String::as_str) == Some(complete::COMPLETE_COMMAND) {
        return complete::main(args.skip(1).collect(), Cli::command());
    }
    // Named as invoked, so help says `kubectl barge` when run as a plugin.
    let matches = plugin::named(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Dashboard(args) => dashboard::run(args),
        Command::Expand {
            files,
            stage,
            freight,
            namespace,
        } => {
            let options = crate::expand::Options {
                paths: files,
                stage,
                freight,
                namespace,
            };
            let plans = match crate::expand::expand(&options) {
                Ok(plans) => plans,
                Err(e) => {
                    eprintln!("barge expand: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match crate::expand::to_yaml(&plans) {
                Ok(yaml) => print!("{yaml}"),
                Err(e) => {
                    eprintln!("barge expand: {e}");
                    return ExitCode::FAILURE;
                }
            }
            // The plan is printed either way: it shows where a bad step sits.
            let problems = crate::expand::check(&plans, &crate::steps::Registry::builtin());
            for problem in &problems {
                eprintln!("barge expand: {problem}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Approve(args) => error::run("approve", approve::main(args)),
        Command::Refresh(args) => error::run("refresh", refresh::main(args)),
        Command::Promote(args) => error::run("promote", promote::main(args)),
        Command::Get(args) => error::run("get", get::main(args)),
        Command::Describe(args) => error::run("describe", describe::main(args)),
        Command::Abort(args) => error::run("abort", abort::main(args)),
        Command::Completion(args) => completion::main(args, plugin::named(Cli::command())),
        Command::AdmissionPolicy => match crate::admission::render() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("barge admission-policy: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Crds { out_dir } => match crate::crdgen::run(out_dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("barge crds: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: not in files, `kubectl logs` or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("barge run: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let counted = crate::api_requests::CountRequests::new(metrics.clone());
        let client = match client_config(args.kubeconfig.as_deref())
            .await
            .and_then(|config| {
                Ok(kube::client::ClientBuilder::try_from(config)?
                    .with_layer(&counted)
                    .build())
            }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a Kubernetes client");
                return ExitCode::FAILURE;
            }
        };
        // Kept alive until the process ends.
        let mut _endpoint = None;
        let (mut receivers, mut wakers) = (crate::webhook::Receivers::default(), None);
        if !args.webhook_addr.is_empty() {
            let addr: std::net::SocketAddr = match args.webhook_addr.parse() {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(addr = %args.webhook_addr, error = %e, "bad --webhook-addr");
                    return ExitCode::FAILURE;
                }
            };
            match crate::webhook::start(
                client.clone(),
                args.namespace.clone(),
                addr,
                args.webhook_base_url.clone(),
                metrics.clone(),
            )
            .await
            {
                Ok(endpoint) => {
                    receivers = endpoint.receivers.clone();
                    wakers = Some(endpoint.wakers.clone());
                    _endpoint = Some(endpoint);
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot serve the webhook endpoint");
                    return ExitCode::FAILURE;
                }
            }
        }
        let dashboard = match dashboard::for_controller(&args.dashboard_addr).await {
            Ok(feed) => feed,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the dashboard");
                return ExitCode::FAILURE;
            }
        };
        let settings = Settings {
            dashboard,
            backstop: args.backstop.0,
            argocd_namespace: args.argocd_namespace,
            argocd_all_namespaces: args.argocd_all_namespaces,
            namespace: args.namespace,
            concurrency: args.concurrency,
            wake_on_application_events: !args.no_application_wakeups,
            shard: args.shard,
            trust_create_actor: args.trust_create_actor,
            work_dir: args
                .work_dir
                .unwrap_or_else(|| Settings::default().work_dir),
            work_dir_limit: args.work_dir_limit_mib.saturating_mul(1 << 20),
            tools: crate::steps::tools::Tools {
                kustomize: program(args.kustomize),
                helm: program(args.helm),
                timeout: args.tool_timeout.0,
            },
            receivers,
            wakers,
            manage_projects: args.manage_projects,
            discovery_timeout: args.discovery_timeout.0,
        };
        tracing::info!(?settings, "starting the controllers");
        if !args.http_addr.is_empty() {
            let addr: std::net::SocketAddr = match args.http_addr.parse() {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(addr = %args.http_addr, error = %e, "bad --http-addr");
                    return ExitCode::FAILURE;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::runtime::serve_http(addr, metrics).await {
                    tracing::error!(error = %e, "HTTP endpoints stopped");
                }
            });
        }
        let leader = args
            .leader_election
            .then(|| crate::runtime::LeaderElection {
                namespace: args.lease_namespace,
                lease: args.lease_name,
                identity: args.identity.unwrap_or_else(default_identity),
                duration: args.lease_duration.0,
            });
        if let Err(e) =
            crate::runtime::run(client, settings, metrics, leader, shutdown_signal()).await
        {
            tracing::error!(error = %e, "stopped");
            return ExitCode::FAILURE;
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// A program named by a relative path made absolute: the tools run in a
/// directory of their own. A bare name stays one, looked up on PATH.
fn program(path: PathBuf) -> PathBuf {
    if path.is_relative() && path.components().count() > 1 {
        std::path::absolute(&path).unwrap_or(path)
    } else {
        path
    }
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends to stop a pod).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down: finishing running reconciles");
}

fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("barge-{}", std::process::id()))
}

async fn client_config(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Config, Box<dyn std::error::Error>> {
    Ok(match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer().await?,
    })
}

#[cfg(test)]
mod go_duration_tests {
    use super::GoDuration;
    use std::time::Duration;

    #[test]
    fn go_durations_read_and_print_as_go_writes_them() {
        for (text, secs) in [("5m", 300), ("15s", 15), ("1h", 3600), ("90s", 90)] {
            let parsed: GoDuration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.0, Duration::from_secs(secs));
        }
        assert_eq!(GoDuration(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(GoDuration(Duration::from_secs(90)).to_string(), "90s");
        assert_eq!(
            GoDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert!("five minutes".parse::<GoDuration>().is_err());
    }
}
