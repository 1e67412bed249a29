//! Barge's CustomResourceDefinitions, generated from the types in
//! [`crate::api`]: `barge crds` prints them, `make crds` writes
//! `crds/<plural>.barge.dev.yaml`, and a test checks the committed files are
//! up to date.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::api::{
    ClusterPromotionTask, Freight, Project, ProjectConfig, Promotion, PromotionTask, Stage,
    Warehouse,
};

/// The first line of every generated file.
pub const HEADER: &str =
    "# Generated from src/api by `barge crds`; do not edit. Regenerate with `make crds`.\n";

/// Why the CRDs could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CRD could not be serialized.
    #[error("cannot render CRD {name} as YAML: {message}")]
    Yaml { name: String, message: String },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every CRD of the `barge.dev` group, in a stable order. Use these rather
/// than `Kind::crd()`: they are what `crds/` holds and what is installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        ClusterPromotionTask::crd(),
        Freight::crd(),
        Project::crd(),
        ProjectConfig::crd(),
        Promotion::crd(),
        PromotionTask::crd(),
        Stage::crd(),
        Warehouse::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                drop_nullable(schema);
            }
        }
    }
    crds
}

/// Removes `nullable: true` (which the derive adds to every `Option`) from a
/// schema and its subschemas. Without it the API server drops an explicit
/// `null` (`task: null`, as a Helm template may render) instead of storing
/// it, so CEL's `has()` agrees with the Rust types: a null field is absent.
fn drop_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    for sub in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        drop_nullable(sub);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(sub)) => drop_nullable(sub),
        Some(JSONSchemaPropsOrArray::Schemas(subs)) => subs.iter_mut().for_each(drop_nullable),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(sub)) = schema.additional_properties.as_mut() {
        drop_nullable(sub);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
        list.iter_mut().flatten().for_each(drop_nullable);
    }
    if let Some(sub) = schema.not.as_mut() {
        drop_nullable(sub);
    }
}

/// The file a CRD is written to: `<plural>.barge.dev.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd_name(crd))
}

fn crd_name(crd: &CustomResourceDefinition) -> &str {
    crd.metadata.name.as_deref().unwrap_or("unnamed")
}

/// One CRD as a YAML document, with the generated-file header.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, Error> {
    let body = serde_saphyr::to_string(crd).map_err(|e| Error::Yaml {
        name: crd_name(crd).to_owned(),
        message: e.to_string(),
    })?;
    Ok(format!("{HEADER}---\n{body}"))
}

/// Every CRD, by file name, rendered as [`render`] does.
pub fn render_all() -> Result<Vec<(String, String)>, Error> {
    crds()
        .iter()
        .map(|crd| Ok((file_name(crd), render(crd)?)))
        .collect()
}

/// Every CRD as one multi-document YAML stream.
pub fn stream() -> Result<String, Error> {
    let mut out = String::from(HEADER);
    for crd in crds() {
        let body = serde_saphyr::to_string(&crd).map_err(|e| Error::Yaml {
            name: crd_name(&crd).to_owned(),
            message: e.to_string(),
        })?;
        out.push_str("---\n");
        out.push_str(&body);
    }
    Ok(out)
}

/// Writes every CRD to `dir/<plural>.barge.dev.yaml` and removes generated
/// files of kinds that no longer exist. Returns the files written.
pub fn write_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let rendered = render_all()?;
    for stale in generated_files(dir)? {
        let keep = stale
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| rendered.iter().any(|(name, _)| name == n));
        if !keep {
            std::fs::remove_file(&stale).map_err(io(&stale))?;
        }
    }
    let mut written = Vec::new();
    for (name, text) in rendered {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The generated CRD files (`*.barge.dev.yaml`) in `dir`, sorted.
pub fn generated_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".barge.dev.yaml"))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `barge crds`: prints the CRDs as one YAML stream, or writes one file per
/// CRD into `out_dir`.
pub fn run(out_dir: Option<&Path>) -> Result<(), Error> {
    match out_dir {
        None => {
            let text = stream()?;
            print!("{text}");
            Ok(())
        }
        Some(dir) => {
            for path in write_dir(dir)? {
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}
