//! `barge abort promotion P`: asks the controller to stop a Promotion (the
//! `barge.dev/abort: terminate` annotation); it ends Aborted.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::error::CliError;
use super::kube_args::KubeArgs;
use crate::api::{ABORT_TERMINATE, ANNOTATION_ABORT, Promotion};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AbortKind {
    #[value(name = "promotion", aliases = ["promotions", "promo"])]
    Promotion,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    #[arg(value_enum)]
    kind: AbortKind,
    /// The Promotion's name.
    name: String,
    #[command(flatten)]
    kube: KubeArgs,
}

pub async fn main(args: AbortArgs) -> Result<ExitCode, CliError> {
    let AbortKind::Promotion = args.kind;
    let target = args.kube.connect().await?;
    let ns = target.namespace.as_str();
    let api: Api<Promotion> = Api::namespaced(target.client.clone(), ns);
    let promotion = api.get_opt(&args.name).await?.ok_or_else(|| {
        CliError::refused(format!("no Promotion {:?} in namespace {ns:?}", args.name))
    })?;
    if promotion.is_terminal() {
        return Err(CliError::refused(format!(
            "Promotion {} has already ended ({})",
            args.name,
            promotion.phase()
        )));
    }
    let patch = json!({"metadata": {"annotations": {ANNOTATION_ABORT: ABORT_TERMINATE}}});
    api.patch(&args.name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    println!("Promotion {} asked to abort", args.name);
    Ok(ExitCode::SUCCESS)
}
