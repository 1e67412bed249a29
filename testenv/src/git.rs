//! Real git repositories for tests, benchmarks and the sandbox, made with the
//! `git` command line and served to Argo CD over `file://`. Removed when
//! dropped.

use std::path::Path;
use std::process::Command;

use crate::Error;

/// A repository with a `main` branch in a temporary directory.
pub struct GitRepo {
    dir: tempfile::TempDir,
}

impl GitRepo {
    /// An empty repository whose first commit will be on `main`.
    pub fn init() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("barge-git-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?;
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"])?;
        Ok(repo)
    }

    /// The URL Argo CD clones it from.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `file` (a path relative to the repository root,
    /// directories created as needed).
    pub fn write(&self, file: &str, text: &str) -> Result<(), Error> {
        let path = self.dir.path().join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }

    /// Commits everything in the work tree to `main`; returns the commit SHA.
    pub fn commit(&self, message: &str) -> Result<String, Error> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "--allow-empty", "-m", message])?;
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_string())
    }

    fn git(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("git")
            .args(["-c", "user.name=Barge", "-c", "user.email=barge@barge.dev"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.dir.path())
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
}
