//! `helm-update-image`: sets keys of a Helm values file to an image of the
//! Freight the Stage will hold (its tag, digest, or reference with either),
//! changing only those values. Kargo deprecated it for `yaml-update` and
//! removed it in v1.3; pipelines written for earlier versions still use it.

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::yaml_update::{Update, set_at};
use super::{BuiltinStep, StepContext, StepRun, parse_config, terminal, text_file};
use crate::api::FreightReference;
use crate::promotion::engine::{StepError, StepResult};

pub const KIND: &str = "helm-update-image";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
    images: Vec<ImageUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImageUpdate {
    image: String,
    from_origin: Option<Origin>,
    key: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Origin {
    kind: String,
    name: String,
}

pub fn step() -> BuiltinStep {
    BuiltinStep::new(KIND, |ctx| async move { StepRun::done(run(ctx)) }.boxed())
        .using_work_dir()
        .config::<Config>()
}

fn run(ctx: &StepContext<'_>) -> Result<StepResult, StepError> {
    let config: Config = parse_config(ctx.config)?;
    if config.images.is_empty() {
        return Err(terminal("config.images: at least one image is required"));
    }
    let path = ctx.path("path", &config.path)?;
    let old = text_file::read(&path, "path", &config.path)?;
    let mut text = old.clone();
    let mut set = Vec::new();
    for (i, update) in config.images.iter().enumerate() {
        let field = format!("config.images[{i}]");
        let (tag, digest) = image_of(ctx.subject.freight, update)
            .map_err(|why| terminal(format!("{field}.image: {why}")))?;
        let value = match update.value.as_str() {
            "ImageAndTag" => format!("{}:{tag}", update.image),
            "Tag" => tag.clone(),
            "ImageAndDigest" => format!("{}@{digest}", update.image),
            "Digest" => digest.clone(),
            other => {
                return Err(terminal(format!(
                    "{field}.value: {other:?} is not one of ImageAndTag, Tag, ImageAndDigest, Digest"
                )));
            }
        };
        // Helm's `--set` notation writes list indexes as `a[0]`.
        let key = update.key.replace('[', ".").replace(']', "");
        let edit = Update {
            key,
            value: Value::String(value),
        };
        text = set_at(&text, &config.path, &field, &edit)?;
        set.push(format!("{}:{tag}", update.image));
    }
    text_file::write(&path, "path", &config.path, &old, &text)?;
    let mut message = format!("Updated {} to use new images\n", config.path);
    for image in set {
        message.push_str(&format!("\n- {image}"));
    }
    Ok(StepResult::succeeded_with(
        json!({ "commitMessage": message }),
    ))
}

/// The tag and digest of `update.image` in the Freight (of its origin,
/// when given); refused when two origins could provide it.
fn image_of(
    freight: &[FreightReference],
    update: &ImageUpdate,
) -> Result<(String, String), String> {
    let mut found: Option<(&str, String, String)> = None;
    for piece in freight {
        if let Some(origin) = &update.from_origin
            && (piece.origin.name != origin.name || piece.origin.kind.to_string() != origin.kind)
        {
            continue;
        }
        let Some(image) = piece.images.iter().find(|i| i.repo_url == update.image) else {
            continue;
        };
        if found
            .as_ref()
            .is_some_and(|(name, _, _)| *name != piece.origin.name)
        {
            return Err(format!(
                "more than one Freight origin provides {}: set fromOrigin",
                update.image
            ));
        }
        found = Some((&piece.origin.name, image.tag.clone(), image.digest.clone()));
    }
    found
        .map(|(_, tag, digest)| (tag, digest))
        .ok_or_else(|| format!("no Freight the Stage will hold has image {}", update.image))
}
