//! `kustomize-set-image`: sets images in the Kustomization file of a
//! directory (`kustomization.yaml`, `kustomization.yml` or
//! `Kustomization`), as Kargo's (and `kustomize edit set image`): each
//! configured image replaces the entry of its name, a `*` keeping the old
//! `newName`, `newTag` or `digest`; entries of other images stay. Kargo
//! rewrites the whole file and sorts the entries; here only the entries
//! that change are edited and new ones go in name order among the others,
//! so the rest of the file keeps every byte. Outputs `commitMessage`,
//! worded as Kargo's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::yaml_edit::{self, Document, Kind, Layout, NewScalar, Node, Splice, Style, Value};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal, text_file};
use crate::api::FreightReference;
use crate::promotion::engine::{StepError, StepResult, StepStatus};

pub const KIND: &str = "kustomize-set-image";

/// The names Kustomize recognises, in its order.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// A field value that keeps the one in the file.
const KEEP: &str = "*";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
    #[serde(default)]
    images: Vec<ImageConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImageConfig {
    /// The image Kargo subscribes to; the entry's name unless `name` says.
    image: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    new_name: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    digest: String,
}

/// An entry of a Kustomization's `images` (Kustomize's `types.Image`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub new_name: String,
    pub tag_suffix: String,
    pub new_tag: String,
    pub digest: String,
}

impl Image {
    /// The fields in Kustomize's order, by their YAML keys.
    fn fields(&self) -> [(&'static str, &str); 5] {
        [
            ("name", &self.name),
            ("newName", &self.new_name),
            ("tagSuffix", &self.tag_suffix),
            ("newTag", &self.new_tag),
            ("digest", &self.digest),
        ]
    }

    fn field_mut(&mut self, key: &str) -> Option<&mut String> {
        match key {
            "name" => Some(&mut self.name),
            "newName" => Some(&mut self.new_name),
            "tagSuffix" => Some(&mut self.tag_suffix),
            "newTag" => Some(&mut self.new_tag),
            "digest" => Some(&mut self.digest),
            _ => None,
        }
    }

    /// As YAML: the fields that are set, in Kustomize's order.
    fn to_yaml(&self) -> Value {
        Value::Map(
            self.fields()
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
        )
    }
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| async move { StepRun::done(run(ctx)) }.boxed())
        .using_work_dir()
        .config::<Config>()
}

fn run(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    // Without a list, every image of the Freight the Stage will hold.
    let targets = if config.images.is_empty() {
        images_from_freight(ctx.subject.freight)
            .map_err(|e| terminal(format!("config.images: {e}")))?
    } else {
        targets(&config.images)?
    };
    let dir = ctx.path("path", &config.path)?;
    let (file, label) = kustomization(&dir, &config.path)?;
    let old = text_file::read(&file, "path", &label)?;
    let doc = Document::parse(&old)
        .map_err(|e| terminal(format!("config.path: {label:?} is not valid YAML: {e}")))?;
    let targeted: BTreeSet<String> = targets.keys().cloned().collect();
    let merged = merge(&current_images(&doc, &label)?, targets);
    let wanted = finished(&merged);
    let text = set_images(&doc, &wanted, &targeted)
        .map_err(|e| terminal(format!("config.path: editing the images of {label:?}: {e}")))?;
    // The edit must read back as the images wanted, or nothing is written.
    let reread = Document::parse(&text)
        .ok()
        .and_then(|doc| current_images(&doc, &label).ok());
    if !reread.is_some_and(|mut images| {
        images.sort_by(|a, b| a.name.cmp(&b.name));
        images == wanted
    }) {
        return Err(terminal(format!(
            "config.path: could not set the images of {label:?} so that they read back"
        )));
    }
    text_file::write(&file, "path", &label, &old, &text)?;
    let mut result = StepResult::new(StepStatus::Succeeded);
    result.output = Some(Json::Object(Map::from_iter([(
        "commitMessage".to_string(),
        json!(commit_message(&config.path, &merged)),
    )])));
    Ok(result)
}

/// The configured images by entry name (a later one of a name wins, as in
/// Kargo). Each names exactly one of a tag and a digest.
fn targets(images: &[ImageConfig]) -> Result<BTreeMap<String, Image>, StepError> {
    let mut targets = BTreeMap::new();
    for (i, image) in images.iter().enumerate() {
        if image.image.is_empty() {
            return Err(terminal(format!(
                "config.images[{i}].image: must not be empty"
            )));
        }
        if image.tag.is_empty() == image.digest.is_empty() {
            return Err(terminal(format!(
                "config.images[{i}]: exactly one of tag and digest must be set (\"*\" keeps the one in the file)"
            )));
        }
        let name = if image.name.is_empty() {
            &image.image
        } else {
            &image.name
        };
        let target = Image {
            name: name.clone(),
            new_name: image.new_name.clone(),
            new_tag: image.tag.clone(),
            digest: image.digest.clone(),
            ..Image::default()
        };
        targets.insert(name.clone(), target);
    }
    Ok(targets)
}

/// The images Kargo sets when the config lists none: every image of the
/// Freight collection, named by its repository, with its tag and digest.
/// Two pieces of Freight with images of one repository make that
/// ambiguous. (Kargo finds the ambiguity in the Warehouses'
/// subscriptions, so it also refuses a repository that only may appear.)
pub fn images_from_freight(
    freight: &[FreightReference],
) -> Result<BTreeMap<String, Image>, String> {
    let mut images: BTreeMap<String, Image> = BTreeMap::new();
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    for piece in freight {
        for image in &piece.images {
            let origin = &piece.origin.name;
            if let Some(other) = origins.insert(image.repo_url.clone(), origin.clone())
                && other != *origin
            {
                return Err(format!(
                    "manual configuration required due to ambiguous result: multiple requested Freight could potentially provide a container image from repository {}",
                    image.repo_url
                ));
            }
            images.insert(
                image.repo_url.clone(),
                Image {
                    name: image.repo_url.clone(),
                    new_tag: image.tag.clone(),
                    digest: image.digest.clone(),
                    ..Image::default()
                },
            );
        }
    }
    Ok(images)
}

/// The Kustomization file in `dir` (exactly one of the names Kustomize
/// knows, a regular file), and how to name it in messages.
fn kustomization(dir: &Path, path: &str) -> Result<(std::path::PathBuf, String), StepError> {
    let found: Vec<&str> = KUSTOMIZATION_FILES
        .into_iter()
        .filter(|name| {
            std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file())
        })
        .collect();
    match found[..] {
        [name] => Ok((
            dir.join(name),
            Path::new(path).join(name).display().to_string(),
        )),
        [] => Err(terminal(format!(
            "config.path: no Kustomization file ({}) in {path:?}",
            KUSTOMIZATION_FILES.join(", ")
        ))),
        _ => Err(terminal(format!(
            "config.path: more than one Kustomization file in {path:?}: {}",
            found.join(", ")
        ))),
    }
}

/// The `images` entries of the Kustomization, in file order.
fn current_images(doc: &Document<'_>, label: &str) -> Result<Vec<Image>, StepError> {
    let root = match &doc.root {
        Some(
            root @ Node {
                kind: Kind::Mapping { .. },
                ..
            },
        ) => root,
        _ => {
            return Err(terminal(format!(
                "config.path: {label:?} is not a YAML mapping"
            )));
        }
    };
    match root.get("images") {
        None => Ok(Vec::new()),
        Some(node) if node.is_null() => Ok(Vec::new()),
        Some(Node {
            kind: Kind::Sequence { items, .. },
            ..
        }) => items
            .iter()
            .map(|item| {
                decode(item).map_err(|e| terminal(format!("config.path: images in {label:?}: {e}")))
            })
            .collect(),
        Some(node) => Err(terminal(format!(
            "config.path: images in {label:?} is {}, not a list",
            node.what()
        ))),
    }
}

/// An entry as Kustomize reads it: a mapping whose known keys hold
/// scalars (a null is empty); other keys are ignored.
fn decode(item: &Node) -> Result<Image, String> {
    let Kind::Mapping { entries, .. } = &item.kind else {
        return Err(format!("an entry is {}, not a mapping", item.what()));
    };
    let mut image = Image::default();
    for (key, value) in entries {
        let Some(key) = key.scalar().map(|k| k.value.as_str()) else {
            continue;
        };
        let Some(field) = image.field_mut(key) else {
            continue;
        };
        *field = match value.scalar() {
            _ if value.is_null() => String::new(),
            Some(s) => s.value.clone(),
            None => return Err(format!("{key} is {}, not a string", value.what())),
        };
    }
    Ok(image)
}

/// Kargo's merge: each target replaces the entry of its name, taking the
/// entry's value for a field it sets to `*`; entries of other names stay.
/// By name, `*`s of targets with no entry still in (Kargo's commit message
/// shows them).
fn merge(current: &[Image], mut targets: BTreeMap<String, Image>) -> BTreeMap<String, Image> {
    for image in current {
        let merged = match targets.get(&image.name) {
            Some(target) => {
                let mut target = target.clone();
                for (kept, old) in [
                    (&mut target.new_name, &image.new_name),
                    (&mut target.new_tag, &image.new_tag),
                    (&mut target.digest, &image.digest),
                ] {
                    if kept == KEEP {
                        kept.clone_from(old);
                    }
                }
                target
            }
            None => image.clone(),
        };
        targets.insert(image.name.clone(), merged);
    }
    targets
}

/// The images to write: the merge with any `*` left cleared, by name.
fn finished(merged: &BTreeMap<String, Image>) -> Vec<Image> {
    merged
        .values()
        .map(|image| {
            let mut image = image.clone();
            for field in [&mut image.new_name, &mut image.new_tag, &mut image.digest] {
                if field == KEEP {
                    field.clear();
                }
            }
            image
        })
        .collect()
}

/// The text with `images` set to `wanted`: the entries of the `targeted`
/// names that differ edited field by field, new ones added in name order.
fn set_images(
    doc: &Document<'_>,
    wanted: &[Image],
    targeted: &BTreeSet<String>,
) -> Result<String, yaml_edit::EditError> {
    let Some(root) = &doc.root else {
        return Ok(doc.text.to_string());
    };
    let layout = Layout::of(doc);
    let list = Value::Seq(wanted.iter().map(Image::to_yaml).collect());
    let splices = match (root.entry("images"), &root.kind) {
        (None, _) => vec![yaml_edit::add_entry(
            doc, root, None, "images", &list, layout,
        )?],
        (Some((i, node)), Kind::Mapping { entries, .. }) if node.is_null() && !node.in_flow => {
            yaml_edit::replace_null(doc, &entries[i].0, node, &list, layout)
        }
        (Some((_, node)), _) if matches!(node.kind, Kind::Sequence { flow: false, .. }) => {
            edit_entries(doc, node, wanted, targeted, layout)?
        }
        (Some((_, node)), _) => vec![yaml_edit::replace_flow(doc, node, &list)],
    };
    yaml_edit::apply(doc.text, splices)
}

/// Edits a block sequence of entries into `wanted`, touching only the
/// entries of `targeted` names (the others are already as wanted).
fn edit_entries(
    doc: &Document<'_>,
    sequence: &Node,
    wanted: &[Image],
    targeted: &BTreeSet<String>,
    layout: Layout,
) -> Result<Vec<Splice>, yaml_edit::EditError> {
    let Kind::Sequence { items, .. } = &sequence.kind else {
        return Ok(Vec::new());
    };
    let by_name: BTreeMap<&str, &Image> = wanted.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut splices = Vec::new();
    let mut names = Vec::new();
    for item in items {
        let current = decode(item)
            .map_err(|_| yaml_edit::EditError::Unsupported("an entry that is not an image"))?;
        names.push(current.name.clone());
        let want = match by_name.get(current.name.as_str()) {
            Some(want) if targeted.contains(&current.name) => *want,
            _ => continue,
        };
        match &item.kind {
            Kind::Mapping { flow: false, .. } => {
                splices.extend(edit_entry(doc, item, want, layout)?)
            }
            Kind::Mapping { entries, .. }
                if current == *want && entries.iter().all(|(_, v)| reads_as_string(v)) => {}
            _ => splices.push(yaml_edit::replace_flow(doc, item, &want.to_yaml())),
        }
    }
    for image in wanted.iter().filter(|w| !names.contains(&w.name)) {
        let before = names.iter().position(|n| *n > image.name);
        splices.push(yaml_edit::add_item(
            doc,
            sequence,
            before,
            &image.to_yaml(),
        )?);
    }
    Ok(splices)
}

/// Whether a field's value reads as the string it holds: quoted, or plain
/// text that no reader takes for a number (`newTag: 1.0` does not, and
/// Kustomize refuses it).
fn reads_as_string(value: &Node) -> bool {
    value.scalar().is_some_and(|s| {
        s.style != Style::Plain || yaml_edit::plain_reads_back(&s.value, value.in_flow)
    })
}

/// Edits one block mapping entry into `want`: fields changed in place (or
/// quoted, where they would not read as strings), fields `want` lacks (and
/// unknown keys, which Kargo drops) removed, new fields added after the
/// field before them in Kustomize's order.
fn edit_entry(
    doc: &Document<'_>,
    item: &Node,
    want: &Image,
    layout: Layout,
) -> Result<Vec<Splice>, yaml_edit::EditError> {
    let Kind::Mapping { entries, .. } = &item.kind else {
        return Ok(Vec::new());
    };
    let mut splices = Vec::new();
    // Where each kept field is, to add the missing ones after.
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let order = |key: &str| want.fields().iter().position(|(k, _)| *k == key);
    for (i, (key, value)) in entries.iter().enumerate() {
        let key = key.scalar().map(|k| k.value.as_str()).unwrap_or_default();
        let wanted = want
            .fields()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v);
        match wanted {
            Some(v) if !v.is_empty() => {
                let same = value.scalar().is_some_and(|s| s.value == v) && reads_as_string(value);
                if !same {
                    splices.extend(yaml_edit::set_scalar(
                        doc,
                        value,
                        &NewScalar::Str(v.to_string()),
                    ));
                }
                kept.extend(order(key).map(|o| (o, i)));
            }
            _ => splices.push(yaml_edit::remove_entry(doc, item, i)?),
        }
    }
    for (position, (key, v)) in want.fields().into_iter().enumerate() {
        if v.is_empty() || kept.iter().any(|(o, _)| *o == position) {
            continue;
        }
        let after = kept
            .iter()
            .filter(|(o, _)| *o < position)
            .map(|(_, i)| *i)
            .max();
        splices.push(yaml_edit::add_entry(
            doc,
            item,
            after,
            key,
            &Value::Str(v.to_string()),
            layout,
        )?);
    }
    Ok(splices)
}

/// Kargo's message: `Updated <path> to use new image(s)`, then each image
/// of the merge by name as `<newName or name>[:<newTag>][@<digest>]`.
fn commit_message(path: &str, merged: &BTreeMap<String, Image>) -> String {
    let plural = if merged.len() > 1 { "s" } else { "" };
    let mut message = format!("Updated {path} to use new image{plural}\n");
    for image in merged.values() {
        let mut reference = if image.new_name.is_empty() {
            image.name.clone()
        } else {
            image.new_name.clone()
        };
        if !image.new_tag.is_empty() {
            reference = format!("{reference}:{}", image.new_tag);
        }
        if !image.digest.is_empty() {
            reference = format!("{reference}@{}", image.digest);
        }
        message.push_str(&format!("\n- {reference}"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, new_name: &str, tag: &str, digest: &str) -> Image {
        Image {
            name: name.into(),
            new_name: new_name.into(),
            new_tag: tag.into(),
            digest: digest.into(),
            ..Image::default()
        }
    }

    #[test]
    fn a_target_replaces_the_entry_of_its_name_keeping_what_it_stars() {
        let current = [
            image("app", "registry/app", "v1", ""),
            image("db", "", "14", ""),
        ];
        let targets = BTreeMap::from([
            ("app".to_string(), image("app", KEEP, "v2", "")),
            ("cache".to_string(), image("cache", "", KEEP, "sha256:1")),
        ]);
        let merged = merge(&current, targets);
        assert_eq!(
            merged.values().cloned().collect::<Vec<_>>(),
            [
                image("app", "registry/app", "v2", ""),
                image("cache", "", KEEP, "sha256:1"),
                image("db", "", "14", ""),
            ]
        );
        assert_eq!(finished(&merged)[1], image("cache", "", "", "sha256:1"));
        assert_eq!(
            commit_message("./base", &merged),
            "Updated ./base to use new images\n\n- registry/app:v2\n- cache:*@sha256:1\n- db:14"
        );
    }

    #[test]
    fn a_target_without_a_star_drops_the_entry_s_other_fields_as_kargo_does() {
        let current = [image("app", "registry/app", "v1", "")];
        let targets = BTreeMap::from([("app".to_string(), image("app", "", "v2", ""))]);
        assert_eq!(
            finished(&merge(&current, targets)),
            [image("app", "", "v2", "")]
        );
    }

    #[test]
    fn freight_images_are_named_by_repository_unless_two_origins_have_one() {
        let piece = |warehouse: &str, repo: &str| -> FreightReference {
            serde_json::from_value(json!({
                "name": format!("f-{warehouse}"),
                "origin": {"kind": "Warehouse", "name": warehouse},
                "images": [{"repoURL": repo, "tag": "1.0", "digest": "sha256:a"}],
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let images = images_from_freight(&[piece("w1", "nginx"), piece("w2", "redis")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(images["nginx"], image("nginx", "", "1.0", "sha256:a"));
        assert_eq!(images.len(), 2);
        let ambiguous = images_from_freight(&[piece("w1", "nginx"), piece("w2", "nginx")]);
        assert!(ambiguous.is_err_and(|e| e.contains("ambiguous")));
    }
}
