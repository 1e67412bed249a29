//! Starting the servers, and making sure they stop.
//!
//! Rust never runs destructors of statics, and a test binary may end by a
//! panic, an `exit` or a signal. So each server runs under a small shell
//! wrapper that holds the read end of a pipe whose write end lives in the
//! test process. When the test process ends, however it ends, the kernel
//! closes the pipe; the wrapper then stops its server and reaps it, so no
//! server lingers even as a zombie. A last watchdog removes the control
//! plane's directory once the servers are gone.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::Error;

/// `$1` directory, `$2` name, the rest the server's command line. The data is
/// throw-away, so the server is killed outright: a graceful apiserver shutdown
/// takes many seconds for nothing.
const SERVER_WRAPPER: &str = r#"
dir=$1; name=$2; shift 2
trap '' INT HUP TERM
(trap - INT HUP TERM; exec "$@" >"$dir/$name.log" 2>&1 </dev/null) &
pid=$!
echo "$pid" >>"$dir/pids"
echo "$pid"
cat >/dev/null
kill -KILL "$pid" 2>/dev/null
wait "$pid"
"#;

/// `$1` directory: removed once every server listed in `$1/pids` is gone.
const DIR_WATCHDOG: &str = r#"
trap '' INT HUP TERM
cat >/dev/null
i=0
while [ $i -lt 300 ]; do
  alive=
  for pid in $(cat "$1/pids" 2>/dev/null); do
    if [ -e "/proc/$pid" ] && ! grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null; then alive=1; fi
  done
  [ -z "$alive" ] && break
  sleep 0.05; i=$((i+1))
done
# Argo CD's repo-server makes its checkout directory 0300.
chmod -R u+rwx "$1" 2>/dev/null
rm -rf "$1"
"#;

/// A shell process that acts when the pipe to it closes.
struct Lifeline {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Lifeline {
    fn spawn(script: &str, args: &[&std::ffi::OsStr], stdout: Stdio) -> Result<Self, Error> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("barge-testenv")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Spawn("sh".into(), e))?;
        let pipe = child.stdin.take();
        Ok(Self { child, pipe })
    }

    /// Closes the pipe and waits until the shell has done its work.
    fn cut(&mut self) {
        drop(self.pipe.take());
        let _ = self.child.wait();
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Removes the control plane's directory after its servers have stopped.
pub struct Watchdog {
    lifeline: Lifeline,
}

impl Watchdog {
    pub fn start(dir: &Path) -> Result<Self, Error> {
        Ok(Self {
            lifeline: Lifeline::spawn(DIR_WATCHDOG, &[dir.as_os_str()], Stdio::null())?,
        })
    }

    pub fn stop(&mut self) {
        self.lifeline.cut();
    }
}

/// One server process, with its output in `<dir>/<name>.log`.
pub struct Server {
    name: String,
    pid: u32,
    dir: PathBuf,
    lifeline: Lifeline,
}

impl Server {
    pub fn spawn(dir: &Path, name: &str, program: &Path, args: &[String]) -> Result<Self, Error> {
        Self::spawn_with_env(dir, name, program, args, &[])
    }

    /// As [`Server::spawn`], with extra environment variables for the server.
    pub fn spawn_with_env(
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Self, Error> {
        let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut argv: Vec<&std::ffi::OsStr> = vec![dir.as_os_str(), name.as_ref()];
        if !assignments.is_empty() {
            argv.push("env".as_ref());
            argv.extend(assignments.iter().map(std::ffi::OsStr::new));
        }
        argv.push(program.as_os_str());
        argv.extend(args.iter().map(|a| std::ffi::OsStr::new(a.as_str())));
        let mut lifeline = Lifeline::spawn(SERVER_WRAPPER, &argv, Stdio::piped())?;
        let mut line = String::new();
        if let Some(stdout) = lifeline.child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let pid = line.trim().parse().map_err(|_| Error::Exited {
            name: name.into(),
            status: "its wrapper reported no process id".into(),
            log: String::new(),
        })?;
        Ok(Self {
            name: name.into(),
            pid,
            dir: dir.to_path_buf(),
            lifeline,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// False once the server has exited (a zombie counts as exited).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
    }

    /// An error describing the server's early exit, with its last log lines.
    pub fn exited_error(&self) -> Error {
        Error::Exited {
            name: self.name.clone(),
            status: "exited".into(),
            log: log_tail(&self.dir, &self.name, 30),
        }
    }

    /// Stops the server and waits until it is gone.
    pub fn stop(&mut self) {
        self.lifeline.cut();
    }
}

/// The last lines of a server's log, for error messages.
pub fn log_tail(dir: &Path, name: &str, lines: usize) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port on the loopback interface that was free a moment ago, below the
/// kernel's ephemeral range (32768 and up): a port from that range can be
/// given to an outgoing connection before the server binds it, and a
/// client connecting to it then connects to itself and waits forever.
pub fn free_port() -> Result<u16, Error> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Spread processes apart; within one, walk the span.
    let base = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = FIRST + (base + step.wrapping_mul(101)) % SPAN;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?
        .port();
    Ok(port)
}

/// Resident set size of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Waits up to `timeout` until none of `pids` runs (zombies count as gone)
/// and none of `dirs` exists; true if so.
pub fn wait_gone(pids: &[u32], dirs: &[PathBuf], timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let alive = pids.iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        });
        if !alive && dirs.iter().all(|d| !d.exists()) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs test `name` of the current test binary as a child process with
/// `BARGE_TESTENV_CHILD=1`, expecting it to fail (it panics on purpose with
/// servers running), and returns the words of the line it printed starting
/// with `PIDS`.
pub async fn panicking_child(name: &str) -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(exe)
        .args(["--ignored", "--exact", name, "--nocapture"])
        .env("BARGE_TESTENV_CHILD", "1")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Err(format!("the child test {name} was meant to fail"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with("PIDS "))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .ok_or_else(|| format!("the child test {name} printed no PIDS line: {stdout}"))
}
