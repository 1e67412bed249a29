//! `barge refresh`: sets `barge.dev/refresh` to a new value, which makes the
//! controller look at the object now: a Warehouse discovers, a Stage or
//! Promotion is reconciled (each records the value as handled in status).

use std::process::ExitCode;

use clap::Args;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::CliError;
use super::kube_args::KubeArgs;
use crate::api::{ANNOTATION_REFRESH, Promotion, Stage, Warehouse};

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "object")]
pub struct RefreshArgs {
    /// A Warehouse: discover now.
    #[arg(long, group = "object")]
    warehouse: Option<String>,
    /// A Stage: reconcile now (health, auto-promotion).
    #[arg(long, group = "object")]
    stage: Option<String>,
    /// A Promotion: look at its running step now.
    #[arg(long, group = "object")]
    promotion: Option<String>,
    #[command(flatten)]
    kube: KubeArgs,
}

async fn annotate<K>(
    client: kube::Client,
    ns: &str,
    name: &str,
    token: &str,
) -> Result<(), CliError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client, ns);
    let patch = json!({"metadata": {"annotations": {ANNOTATION_REFRESH: token}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

pub async fn main(args: RefreshArgs) -> Result<ExitCode, CliError> {
    let target = args.kube.connect().await?;
    let (client, ns) = (target.client, target.namespace.as_str());
    let token = jiff::Timestamp::now().to_string();
    let said = match (&args.warehouse, &args.stage, &args.promotion) {
        (Some(name), _, _) => {
            annotate::<Warehouse>(client, ns, name, &token).await?;
            format!("Warehouse {name} asked to discover")
        }
        (_, Some(name), _) => {
            annotate::<Stage>(client, ns, name, &token).await?;
            format!("Stage {name} asked to refresh")
        }
        (_, _, Some(name)) => {
            annotate::<Promotion>(client, ns, name, &token).await?;
            format!("Promotion {name} asked to refresh")
        }
        (None, None, None) => {
            return Err(CliError::refused(
                "name a --warehouse, --stage or --promotion",
            ));
        }
    };
    println!("{said} ({token})");
    Ok(ExitCode::SUCCESS)
}
