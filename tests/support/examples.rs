//! The `examples/` manifests moved into a test's namespaces: placeholders
//! filled in, project objects into the project namespace, Applications into
//! the Argo CD namespace under names of the test's own.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Error, Harness};

/// Every file under `dir`, recursively, in order.
pub fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The objects of `files` (paths under `examples/`), with each
/// `(placeholder, value)` of `fill` replaced, moved into `h`'s namespaces.
pub fn example_objects(
    h: &Harness,
    files: &[&str],
    fill: &[(&str, &str)],
) -> Result<Vec<Value>, Error> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut objects = Vec::new();
    for name in files {
        let mut text = std::fs::read_to_string(dir.join(name))?;
        for (placeholder, value) in fill {
            text = text.replace(placeholder, value);
        }
        for doc in text.split("\n---\n") {
            let mut object: Value = serde_saphyr::from_str(doc)?;
            if object["kind"] == "Application" {
                let stage = object["metadata"]["name"]
                    .as_str()
                    .and_then(|n| n.strip_prefix("barge-gitops-"))
                    .unwrap_or_default()
                    .to_string();
                object["metadata"]["name"] = json!(format!("{}-{stage}", h.ns));
                object["metadata"]["namespace"] = json!(h.argocd_ns);
                object["metadata"]["annotations"]["barge.dev/authorized-stage"] =
                    json!(format!("{}:{stage}", h.ns));
                object["spec"]["destination"]["namespace"] = json!(format!("{}-{stage}", h.ns));
            } else {
                object["metadata"]["namespace"] = json!(h.ns);
                if object["kind"] == "ProjectConfig" {
                    object["metadata"]["name"] = json!(h.ns);
                }
            }
            objects.push(object);
        }
    }
    Ok(objects)
}
