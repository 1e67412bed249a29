//! `barge approve`: lets a Stage take a Freight without it passing the
//! upstream Stages (Kargo's manual approval).

use std::process::ExitCode;

use clap::Args;
use kube::ResourceExt;

use super::error::CliError;
use super::kube_args::KubeArgs;

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The Freight, by name or alias.
    #[arg(long)]
    freight: String,
    /// The Stage (repeat for several).
    #[arg(long, required = true)]
    stage: Vec<String>,
    #[command(flatten)]
    kube: KubeArgs,
}

pub async fn main(args: ApproveArgs) -> Result<ExitCode, CliError> {
    let target = args.kube.connect().await?;
    let (client, ns) = (&target.client, target.namespace.as_str());
    let found = crate::approval::find(client, ns, &args.freight)
        .await?
        .ok_or_else(|| {
            CliError::refused(format!(
                "no Freight named or aliased {:?} in namespace {ns:?}",
                args.freight
            ))
        })?;
    let name = found.name_any();
    crate::approval::approve(client, ns, &name, &args.stage, jiff::Timestamp::now()).await?;
    println!("Freight {name} approved for {}", args.stage.join(", "));
    Ok(ExitCode::SUCCESS)
}
