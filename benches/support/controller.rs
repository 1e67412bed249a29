//! `barge run`, the binary this build produced, in a process of its own: its
//! memory, CPU time and API requests are its own, and it can be killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::BenchResult;

/// How long the controller may take to become ready or go quiet.
const PATIENCE: Duration = Duration::from_secs(600);

/// What one controller process runs with.
#[derive(Clone, Debug)]
pub struct ControllerArgs<'a> {
    pub kubeconfig: &'a Path,
    pub namespace: &'a str,
    pub argocd_namespace: &'a str,
    /// Go duration.
    pub backstop: &'a str,
    /// Its log is `<dir>/controller.log`; removed first.
    pub dir: &'a Path,
    /// More `barge run` flags.
    pub extra: Vec<String>,
    /// More environment variables.
    pub env: Vec<(&'static str, String)>,
}

impl<'a> ControllerArgs<'a> {
    pub fn new(
        kubeconfig: &'a Path,
        namespace: &'a str,
        argocd_namespace: &'a str,
        dir: &'a Path,
    ) -> Self {
        Self {
            kubeconfig,
            namespace,
            argocd_namespace,
            backstop: "1h",
            dir,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }
}

pub struct ControllerProcess {
    /// Killed when dropped, and when this process ends however it ends.
    server: barge_testenv::process::Server,
    dir: PathBuf,
    http: String,
    spawned: Instant,
    http_client: reqwest::Client,
}

impl ControllerProcess {
    /// Starts `barge run` (`BARGE_BENCH_LOG` sets its `RUST_LOG`, default warn).
    pub fn spawn(args: &ControllerArgs<'_>) -> BenchResult<Self> {
        let port = barge_testenv::process::free_port()?;
        let http = format!("127.0.0.1:{port}");
        let dir = args.dir;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let work_dir = dir.join("work");
        let mut argv: Vec<String> = [
            "run",
            "--kubeconfig",
            &args.kubeconfig.display().to_string(),
            "--namespace",
            args.namespace,
            "--argocd-namespace",
            args.argocd_namespace,
            "--argocd-all-namespaces",
            "--backstop",
            args.backstop,
            "--http-addr",
            &http,
            "--webhook-addr",
            "",
            "--work-dir",
            &work_dir.display().to_string(),
        ]
        .into_iter()
        .map(String::from)
        .collect();
        argv.extend(args.extra.iter().cloned());
        let log = std::env::var("BARGE_BENCH_LOG").unwrap_or_else(|_| "warn".into());
        let mut env = vec![("RUST_LOG", log)];
        env.extend(args.env.iter().cloned());
        let spawned = Instant::now();
        let server = barge_testenv::process::Server::spawn_with_env(
            dir,
            "controller",
            Path::new(env!("CARGO_BIN_EXE_barge")),
            &argv,
            &env,
        )?;
        Ok(Self {
            server,
            dir: dir.to_path_buf(),
            http,
            spawned,
            http_client: reqwest::Client::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// False once the process has exited.
    pub fn alive(&self) -> bool {
        self.server.alive()
    }

    /// Kills the process with SIGKILL and waits until it is gone.
    pub fn kill(&mut self) {
        self.server.stop();
    }

    /// Sends SIGTERM (a graceful shutdown, as Kubernetes does first) and
    /// waits up to `grace` for the process to exit; then kills it.
    pub async fn terminate(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while self.alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        barge_testenv::process::log_tail(&self.dir, "controller", lines)
    }

    pub async fn get(&self, path: &str) -> BenchResult<(u16, String)> {
        let response = self
            .http_client
            .get(format!("http://{}{path}", self.http))
            .send()
            .await?;
        let code = response.status().as_u16();
        Ok((code, response.text().await?))
    }

    /// Seconds from spawn to `/readyz` answering 200.
    pub async fn wait_ready(&mut self) -> BenchResult<f64> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if !self.server.alive() {
                return Err(self.server.exited_error().into());
            }
            if matches!(self.get("/readyz").await, Ok((200, _))) {
                return Ok(self.spawned.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return Err("the controller was not ready in time".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `barge_api_requests_total` by (verb, resource).
    pub async fn requests(&self) -> BenchResult<BTreeMap<(String, String), f64>> {
        let (_, text) = self.get("/metrics").await?;
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("barge_api_requests_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| label_of(labels, name);
            out.insert((label("verb"), label("resource")), value.trim().parse()?);
        }
        Ok(out)
    }

    fn proc_status(&self, field: &str) -> BenchResult<f64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {field} in /proc/{}/status", self.pid()))?;
        Ok(kib / 1024.0)
    }

    pub fn rss_mib(&self) -> BenchResult<f64> {
        self.proc_status("VmRSS")
    }

    pub fn peak_rss_mib(&self) -> BenchResult<f64> {
        self.proc_status("VmHWM")
    }

    /// The heap and other anonymous pages, in MiB.
    pub fn rss_anon_mib(&self) -> BenchResult<f64> {
        self.proc_status("RssAnon")
    }

    /// The pages of the binary and libraries, in MiB.
    pub fn rss_file_mib(&self) -> BenchResult<f64> {
        self.proc_status("RssFile")
    }

    /// User plus system CPU time, in milliseconds.
    pub fn cpu_ms(&self) -> BenchResult<f64> {
        let text = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The command name may hold spaces: fields count from after its ')'.
        let after = text.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((ticks(11) + ticks(12)) * 1000.0 / clock_ticks())
    }

    /// Waits until the controller's start-up work has settled: no request
    /// sent (watches aside) for `quiet`.
    pub async fn settle(&self, quiet: Duration) -> BenchResult<f64> {
        let started = Instant::now();
        let mut last = non_watch_total(&self.requests().await?);
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = non_watch_total(&self.requests().await?);
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > PATIENCE {
                return Err("the controller never went quiet".into());
            }
        }
    }
}

/// The value of label `name` in a Prometheus sample's `a="x",b="y"`.
pub fn label_of(labels: &str, name: &str) -> String {
    labels
        .split(',')
        .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_default()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

fn non_watch_total(requests: &BTreeMap<(String, String), f64>) -> f64 {
    requests
        .iter()
        .filter(|((verb, _), _)| verb != "watch")
        .map(|(_, n)| n)
        .sum()
}
