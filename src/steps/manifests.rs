//! What the rendering steps share: telling a file `outPath` from a
//! directory, splitting rendered YAML into documents, naming a resource's
//! file, writing files without following a symlink out of the work
//! directory, and checking that what a tool will read lies inside it.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// Walks of a chart or of kustomizations stop here, rather than run long.
const MAX_WALK: usize = 100_000;

/// Whether `out_path` names a file (it ends in `.yaml` or `.yml`, as Go's
/// `filepath.Ext` sees it) rather than a directory.
pub fn is_file(out_path: &str) -> bool {
    let out_path = out_path.trim_end_matches('/');
    let name = out_path.rsplit('/').next().unwrap_or(out_path);
    matches!(name.rfind('.').map(|i| &name[i..]), Some(".yaml" | ".yml"))
}

/// The documents of a YAML stream, split as Kubernetes' YAML reader splits
/// them: on lines starting with `---` followed by nothing but space or a
/// comment; anything else after `---` is an error. Separator lines are left
/// out; documents are returned untrimmed.
pub fn documents(text: &str) -> Result<Vec<&str>, String> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                return Err(format!("invalid YAML document separator: {rest}"));
            }
            if at > start {
                documents.push(&text[start..at]);
            }
            start = at + line.len();
        }
        at += line.len();
    }
    if at > start {
        documents.push(&text[start..at]);
    }
    Ok(documents)
}

/// What names a resource's file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<HeadMetadata>,
}

#[derive(Deserialize)]
struct HeadMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// A document's apiVersion, kind, namespace and name; all empty when it is
/// not a mapping with string fields (as Kargo reads it).
pub fn identity(document: &str) -> Identity {
    let Ok(head) = serde_saphyr::from_str::<Head>(document) else {
        return Identity::default();
    };
    let metadata = head.metadata.unwrap_or(HeadMetadata {
        name: None,
        namespace: None,
    });
    Identity {
        api_version: head.api_version.unwrap_or_default(),
        kind: head.kind.unwrap_or_default(),
        namespace: metadata.namespace.unwrap_or_default(),
        name: metadata.name.unwrap_or_default(),
    }
}

/// Files written into one directory by one step run. A name is taken from
/// rendered metadata, so it must be a plain file name; two resources that
/// would share one are refused rather than one silently losing the other.
pub struct OutDir {
    dir: PathBuf,
    written: HashMap<String, String>,
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The rendered output cannot be written as asked (retrying won't help).
    #[error("{0}")]
    Refused(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl OutDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            written: HashMap::new(),
        }
    }

    /// Writes `text` as `name` in the directory (created on first use);
    /// `what` says which resource it holds, for a clash.
    pub fn write(&mut self, name: &str, what: String, text: &[u8]) -> Result<(), WriteError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(WriteError::Refused(format!(
                "{what} would be written to {name:?}, which is not a plain file name"
            )));
        }
        if let Some(earlier) = self.written.get(name) {
            return Err(WriteError::Refused(format!(
                "{what} and {earlier} would both be written to {name}"
            )));
        }
        let io = |source| WriteError::Io {
            path: name.to_string(),
            source,
        };
        if self.written.is_empty() {
            std::fs::create_dir_all(&self.dir).map_err(io)?;
        }
        write_file(&self.dir.join(name), text).map_err(io)?;
        self.written.insert(name.to_string(), what);
        Ok(())
    }
}

/// Writes `path`, replacing a symlink there rather than writing through it
/// (it could point anywhere; the rendered file belongs at `path`).
pub fn write_file(path: &Path, text: &[u8]) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path)?;
    }
    std::fs::write(path, text)
}

/// Moves the files under `from` into `to`, merging into directories there
/// and replacing files (and symlinks, which a rename replaces rather than
/// follows).
pub fn merge_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(to) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(to)?,
        Ok(meta) if !meta.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} is a file, not a directory",
                to.display()
            )));
        }
        _ => {}
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            merge_dir(&entry.path(), &target)?;
        } else {
            std::fs::rename(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `entry` (absolute, or relative to `base`) with `.` and `..` taken
/// lexically, as kustomize and helm join paths; refused when it, or the
/// deepest part of it that exists, really lies outside `work` (canonical).
pub fn contained(work: &Path, base: &Path, entry: &str) -> Result<PathBuf, String> {
    let mut joined = PathBuf::new();
    for component in base.join(entry).components() {
        match component {
            Component::ParentDir => {
                joined.pop();
            }
            Component::CurDir => {}
            other => joined.push(other),
        }
    }
    let mut existing = joined.as_path();
    while std::fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|_| format!("{entry:?} goes through a broken symlink"))?;
    if !real.starts_with(work) {
        return Err(format!("{entry:?} leaves the work directory"));
    }
    Ok(joined)
}

/// Refuses a symlink under `dir` that leads out of `work` (canonical) or
/// nowhere: helm follows symlinks when it loads a chart, so one could hand
/// it any file the controller can read.
pub fn symlinks_inside(work: &Path, dir: &Path) -> Result<(), String> {
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(next) = pending.pop() {
        let real = next.canonicalize().map_err(|e| format!("{e}"))?;
        if !seen.insert(real) {
            continue;
        }
        if seen.len() > MAX_WALK {
            return Err(format!("more than {MAX_WALK} directories"));
        }
        let entries = std::fs::read_dir(&next).map_err(|e| format!("{e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{e}"))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| format!("{e}"))?;
            if kind.is_symlink() {
                let shown = path.strip_prefix(dir).unwrap_or(&path).display();
                match path.canonicalize() {
                    Ok(target) if target.starts_with(work) => {
                        if target.is_dir() {
                            pending.push(path);
                        }
                    }
                    Ok(_) => return Err(format!("{shown} links out of the work directory")),
                    Err(_) => return Err(format!("{shown} is a broken symlink")),
                }
            } else if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yaml_and_yml_names_are_files_as_go_sees_extensions() {
        assert!(is_file("out/all.yaml") && is_file("./x.yml") && is_file("out/.yaml"));
        assert!(is_file("out/all.yaml/"), "Go cleans the path first");
        assert!(!is_file("out") && !is_file("out.yaml/dir") && !is_file("a.YAML"));
    }

    #[test]
    fn documents_split_on_separator_lines_only() {
        let text = "---\na: 1\n--- # comment\nb: |\n  ---x\n---\n\n---\nc: 3";
        assert_eq!(
            documents(text),
            Ok(vec!["a: 1\n", "b: |\n  ---x\n", "\n", "c: 3"])
        );
        assert!(documents("a: 1\n---x\n").is_err());
    }

    #[test]
    fn identity_reads_kind_name_and_namespace_and_nothing_from_a_non_mapping() {
        let doc = "# Source: c/templates/a.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: dev\nspec: {}\n";
        assert_eq!(
            identity(doc),
            Identity {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: "dev".into(),
                name: "web".into(),
            }
        );
        assert_eq!(identity("- a\n- b\n"), Identity::default());
    }

    #[test]
    fn an_out_dir_refuses_names_that_are_not_plain_and_names_written_twice() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut out = OutDir::new(&root.path().join("out"));
        assert!(out.write("a.yaml", "A".into(), b"a").is_ok());
        let clash = out
            .write("a.yaml", "B".into(), b"b")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            clash.as_deref(),
            Some("B and A would both be written to a.yaml")
        );
        for bad in ["../x.yaml", "..", "a/b.yaml", ""] {
            assert!(out.write(bad, "C".into(), b"c").is_err(), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn writing_over_a_symlink_replaces_it_instead_of_writing_its_target() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = root.path().join("target");
        std::fs::write(&target, "keep").unwrap_or_else(|e| panic!("{e}"));
        let link = root.path().join("link.yaml");
        std::os::unix::fs::symlink(&target, &link).unwrap_or_else(|e| panic!("{e}"));
        write_file(&link, b"new").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(&target).ok().as_deref(),
            Some("keep")
        );
        assert_eq!(std::fs::read_to_string(&link).ok().as_deref(), Some("new"));
    }

    #[test]
    fn contained_takes_dots_lexically_and_refuses_leaving_the_work_directory() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let work = root.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let base = work.join("src/overlay");
        std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            contained(&work, &base, "../base"),
            Ok(work.join("src/base"))
        );
        assert!(contained(&work, &base, "https://example.com/repo//x?ref=v1").is_ok());
        assert!(contained(&work, &base, "../../../elsewhere").is_err());
        assert!(contained(&work, &base, "/etc").is_err());
    }
}
