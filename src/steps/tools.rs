//! The programs the rendering steps run (`kustomize`, `helm`) and how one
//! run of them goes: a scrubbed environment (no inherited HOME, KUBECONFIG
//! or cloud credentials; HOME, TMPDIR and helm's directories in a scratch
//! directory inside the Promotion's work directory), a timeout, bounded
//! output, and errors that carry the tool's stderr.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::retryable;
use crate::promotion::engine::StepError;

/// How long one run of a tool may take when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The most a tool may print on stdout (rendered manifests).
const MAX_STDOUT_BYTES: u64 = 128 * 1024 * 1024;
/// The most of a tool's stderr read, and the most of it an error carries.
const MAX_STDERR_BYTES: u64 = 1024 * 1024;
const MAX_STDERR_CHARS: usize = 2000;
/// Passed through: a proxy or a private CA is how the pod reaches chart
/// repositories, and none of these hold credentials.
const PASSED_THROUGH: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where the rendering tools are, and how long one run may take.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The kustomize binary: a path, or a name looked up on PATH.
    pub kustomize: PathBuf,
    /// The helm (v3) binary: a path, or a name looked up on PATH.
    pub helm: PathBuf,
    pub timeout: Duration,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            kustomize: PathBuf::from("kustomize"),
            helm: PathBuf::from("helm"),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why a tool run failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} printed more than {} MiB", MAX_STDOUT_BYTES / 1024 / 1024)]
    TooMuchOutput { program: String },
    #[error("{program}: {source}")]
    Io {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
}

/// A directory for one step run's tool homes and temporary files, inside
/// the work directory (the only place the controller may write to), removed
/// when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
    work_dir: PathBuf,
}

impl Scratch {
    pub fn new(work_dir: &Path, kind: &str) -> Result<Self, StepError> {
        let work_dir = work_dir
            .canonicalize()
            .map_err(|e| retryable(format!("work directory {}: {e}", work_dir.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!(".barge-{kind}-"))
            .tempdir_in(&work_dir)
            .map_err(|e| retryable(format!("scratch directory: {e}")))?;
        for sub in ["home", "tmp", "helm/config", "helm/cache", "helm/data"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .map_err(|e| retryable(format!("scratch directory: {e}")))?;
        }
        Ok(Self { dir, work_dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `program` with `args` in this directory; returns its stdout.
    pub async fn run(
        &self,
        program: &Path,
        args: &[OsString],
        timeout: Duration,
    ) -> Result<Vec<u8>, ToolError> {
        self.run_reporting(program, args, timeout, false).await
    }

    /// As `run`, for a tool that prints why it fails partly on stdout
    /// (helm says there which chart repository it could not reach): a
    /// failure reports stdout, then stderr.
    pub async fn run_reporting_stdout(
        &self,
        program: &Path,
        args: &[OsString],
        timeout: Duration,
    ) -> Result<Vec<u8>, ToolError> {
        self.run_reporting(program, args, timeout, true).await
    }

    async fn run_reporting(
        &self,
        program: &Path,
        args: &[OsString],
        timeout: Duration,
        stdout_in_errors: bool,
    ) -> Result<Vec<u8>, ToolError> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.display().to_string());
        let mut child = self
            .command(program, args)
            .spawn()
            .map_err(|source| ToolError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ToolError::Io {
                program: name,
                source: std::io::Error::other("no pipes to the child"),
            });
        };
        let finished = tokio::time::timeout(timeout, async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (mut stdout, mut stderr) = (
                stdout.take(MAX_STDOUT_BYTES + 1),
                stderr.take(MAX_STDERR_BYTES),
            );
            // Read both at once, so that neither pipe fills and stalls the child.
            tokio::try_join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err),)?;
            // Dropping the pipes lets a child still writing past the limit
            // stop on a broken pipe instead of blocking.
            drop((stdout, stderr));
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        })
        .await;
        let (status, out, err) = match finished {
            Ok(Ok(done)) => done,
            Ok(Err(source)) => {
                let _ = child.kill().await;
                return Err(ToolError::Io {
                    program: name,
                    source,
                });
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(ToolError::Timeout {
                    program: name,
                    timeout,
                });
            }
        };
        if out.len() as u64 > MAX_STDOUT_BYTES {
            return Err(ToolError::TooMuchOutput { program: name });
        }
        if !status.success() {
            let printed = if stdout_in_errors {
                [out, err].concat()
            } else {
                err
            };
            return Err(ToolError::Failed {
                program: name,
                status: status.to_string(),
                stderr: self.describe(&printed),
            });
        }
        Ok(out)
    }

    fn command(&self, program: &Path, args: &[OsString]) -> Command {
        let scratch = self.dir.path();
        let helm = scratch.join("helm");
        let mut command = Command::new(program);
        command
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
            )
            .env("HOME", scratch.join("home"))
            .env("TMPDIR", scratch.join("tmp"))
            .env("HELM_CONFIG_HOME", helm.join("config"))
            .env("HELM_CACHE_HOME", helm.join("cache"))
            .env("HELM_DATA_HOME", helm.join("data"))
            // A file that does not exist: no cluster is ever reached.
            .env("KUBECONFIG", scratch.join("no-kubeconfig"));
        for var in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(var) {
                command.env(var, value);
            }
        }
        command
            .args(args)
            .current_dir(scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// A tool's stderr for a message: paths relative to the work directory
    /// (its location on the controller's disk says nothing to the user),
    /// trimmed, and only its end when long (where the error is).
    fn describe(&self, stderr: &[u8]) -> String {
        let text = String::from_utf8_lossy(stderr);
        let root = self.work_dir.display().to_string();
        let text = text.replace(&format!("{root}/"), "").replace(&root, ".");
        let text = text.trim();
        if text.is_empty() {
            return "nothing on stderr".to_string();
        }
        let count = text.chars().count();
        if count <= MAX_STDERR_CHARS {
            return text.to_string();
        }
        let tail: String = text.chars().skip(count - MAX_STDERR_CHARS).collect();
        format!("…{tail}")
    }
}

/// A tool's failure as a step error naming `field`: the tool failing is
/// Kargo's "errored", which a retry may get past (a chart repository that
/// was down).
pub fn step_error(field: &str, what: &str, e: ToolError) -> StepError {
    retryable(format!("config.{field}: {what}: {e}"))
}

/// `--flag=value` as one argument: a value starting with `-` cannot be
/// taken for a flag.
pub fn flag(name: &str, value: impl AsRef<std::ffi::OsStr>) -> OsString {
    let mut arg = OsString::from(format!("--{name}="));
    arg.push(value.as_ref());
    arg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(root: &Path) -> Scratch {
        Scratch::new(root, "test").unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[tokio::test]
    async fn a_tool_runs_without_the_controllers_environment_and_in_its_scratch_directory() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let scratch = scratch(root.path());
        let args = ["-c", "echo \"$HOME|$KUBECONFIG|$CARGO|$PWD\""].map(OsString::from);
        let out = scratch
            .run(Path::new("sh"), &args, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let out = String::from_utf8_lossy(&out);
        let dir = scratch.path().display().to_string();
        assert_eq!(
            out.trim(),
            format!("{dir}/home|{dir}/no-kubeconfig||{dir}"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_failing_tool_reports_the_end_of_its_stderr_with_work_directory_paths_relative() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let scratch = scratch(root.path());
        let script = format!(
            "echo noise >&2; echo 'Error: {}/src/app missing' >&2; exit 3",
            scratch.work_dir.display()
        );
        let args = ["-c", script.as_str()].map(OsString::from);
        let e = scratch
            .run(Path::new("sh"), &args, Duration::from_secs(10))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("sh failed (exit status: 3): noise\nError: src/app missing"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_tool_that_runs_too_long_is_killed() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let scratch = scratch(root.path());
        let args = ["-c", "sleep 30"].map(OsString::from);
        let started = std::time::Instant::now();
        let e = scratch
            .run(Path::new("sh"), &args, Duration::from_millis(200))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(e, "sh did not finish within 200ms");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
