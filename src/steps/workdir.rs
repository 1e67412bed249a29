//! A Promotion's work directory: where file and git steps read and write.
//! One per Promotion, named by its UID under a root directory, removed when
//! the Promotion ends (and, at start-up, for Promotions that no longer
//! exist). Every path a step's config names is resolved inside it, or
//! refused: no absolute path, no `..` that leaves it, no symlink out of it.

use std::path::{Component, Path, PathBuf};

use super::terminal;
use crate::promotion::engine::StepError;

/// The root under which each Promotion gets its directory.
#[derive(Clone, Debug)]
pub struct WorkDirs {
    root: PathBuf,
    /// Most bytes one Promotion's directories may hold.
    limit: u64,
}

const PREFIX: &str = "promotion-";
/// Where a Promotion's bare clones live: beside its work directory, so that
/// no step's paths reach them.
const REPOSITORIES: &str = "repositories-";

impl WorkDirs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            limit: u64::MAX,
        }
    }

    pub fn with_limit(self, limit: u64) -> Self {
        Self { limit, ..self }
    }

    /// Whether the Promotion's files (work directory and clones) are over
    /// the limit: their size and the limit if so.
    pub fn over_limit(&self, uid: &str) -> Option<(u64, u64)> {
        if self.limit == u64::MAX {
            return None;
        }
        let used = size(&self.of(uid)) + size(&self.repositories_of(uid));
        (used > self.limit).then_some((used, self.limit))
    }

    /// The directory of the Promotion with this UID.
    pub fn of(&self, uid: &str) -> PathBuf {
        self.root.join(format!("{PREFIX}{uid}"))
    }

    /// The directory of the Promotion's bare clones.
    pub fn repositories_of(&self, uid: &str) -> PathBuf {
        self.root.join(format!("{REPOSITORIES}{uid}"))
    }

    /// Removes the Promotion's directories, if it has them.
    pub fn remove(&self, uid: &str) {
        for dir in [self.of(uid), self.repositories_of(uid)] {
            remove(&dir);
        }
    }

    /// Removes the directories of Promotions for which `exists` is false
    /// (they ended or were deleted while the controller was down).
    pub fn sweep(&self, exists: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(uid) = name.to_str().and_then(|n| {
                n.strip_prefix(PREFIX)
                    .or_else(|| n.strip_prefix(REPOSITORIES))
            }) else {
                continue;
            };
            if !exists(uid) {
                self.remove(uid);
            }
        }
    }
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "removed a Promotion's directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a Promotion's directory")
        }
    }
}

/// Resolves `relative`, the value of the step config's `field`, inside
/// `dir` (which must exist): refused when absolute, when `..` leaves the
/// directory, or when a symlink on the way points outside it.
pub fn resolve(dir: &Path, field: &str, relative: &str) -> Result<PathBuf, StepError> {
    let refuse = |why: &str| terminal(format!("config.{field}: {relative:?} {why}"));
    if relative.trim().is_empty() {
        return Err(refuse("is empty"));
    }
    let mut inside = PathBuf::new();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => inside.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !inside.pop() {
                    return Err(refuse("leaves the work directory"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("must be relative to the work directory"));
            }
        }
    }
    let base = dir
        .canonicalize()
        .map_err(|e| terminal(format!("work directory {}: {e}", dir.display())))?;
    let path = base.join(&inside);
    // The deepest part of the path that exists decides where it really is.
    let mut existing = path.as_path();
    while std::fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|_| refuse("goes through a broken symlink"))?;
    if !real.starts_with(&base) {
        return Err(refuse("leaves the work directory through a symlink"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    fn refused(dir: &Path, relative: &str) -> String {
        match resolve(dir, "path", relative) {
            Ok(p) => panic!("{relative:?} resolved to {}", p.display()),
            Err(e) => e.message,
        }
    }

    #[test]
    fn relative_paths_resolve_inside_the_work_directory() {
        let d = dir();
        let base = d.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let path = resolve(d.path(), "path", "./out/../src/app.yaml");
        assert_eq!(path.ok(), Some(base.join("src/app.yaml")));
    }

    #[test]
    fn absolute_paths_and_parent_escapes_are_refused_naming_the_field() {
        let d = dir();
        assert!(
            refused(d.path(), "/etc/passwd")
                .starts_with("config.path: \"/etc/passwd\" must be relative")
        );
        assert!(refused(d.path(), "src/../../x").contains("leaves the work directory"));
        assert!(refused(d.path(), "").contains("is empty"));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_work_directory_is_refused() {
        let d = dir();
        let outside = dir();
        std::os::unix::fs::symlink(outside.path(), d.path().join("escape"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(refused(d.path(), "escape/secret").contains("through a symlink"));
        std::os::unix::fs::symlink(d.path().join("src"), d.path().join("alias"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(d.path().join("src")).unwrap_or_else(|e| panic!("{e}"));
        assert!(resolve(d.path(), "path", "alias/file").is_ok());
    }

    #[test]
    fn the_sweep_removes_directories_of_promotions_that_are_gone() {
        let root = dir();
        let dirs = WorkDirs::new(root.path());
        for uid in ["live", "gone"] {
            std::fs::create_dir_all(dirs.of(uid)).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::create_dir_all(root.path().join("unrelated")).unwrap_or_else(|e| panic!("{e}"));
        dirs.sweep(|uid| uid == "live");
        assert!(dirs.of("live").exists());
        assert!(!dirs.of("gone").exists());
        assert!(root.path().join("unrelated").exists());
    }
}
