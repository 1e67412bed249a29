//! `barge get`: Stages, Promotions, Freight and Warehouses as tables (or
//! JSON or YAML), as `kubectl get` lists them.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::columns::{self, Table};
use super::error::CliError;
use super::kube_args::KubeArgs;
use super::output::{self, Format};
use crate::api::{Freight, Promotion, Stage, Warehouse};

/// The kinds `get` and `describe` know, by any of kubectl's spellings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    #[value(name = "stages", alias = "stage")]
    Stages,
    #[value(name = "promotions", aliases = ["promotion", "promo", "promos"])]
    Promotions,
    #[value(name = "freight", aliases = ["freights"])]
    Freight,
    #[value(name = "warehouses", alias = "warehouse")]
    Warehouses,
}

impl Kind {
    fn singular(self) -> &'static str {
        match self {
            Kind::Stages => "stage",
            Kind::Promotions => "promotion",
            Kind::Freight => "freight",
            Kind::Warehouses => "warehouse",
        }
    }
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list.
    #[arg(value_enum)]
    kind: Kind,
    /// Only these (Freight also by alias); without names, all.
    names: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// List across all namespaces.
    #[arg(short = 'A', long, conflicts_with = "names")]
    all_namespaces: bool,
    #[command(flatten)]
    kube: KubeArgs,
}

/// Objects of one kind in `namespace` (or all namespaces), sorted by
/// namespace and name.
pub async fn list<K>(client: &kube::Client, namespace: Option<&str>) -> Result<Vec<K>, CliError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut items = api.list(&ListParams::default()).await?.items;
    items.sort_by_key(|o| (o.namespace(), o.name_any()));
    Ok(items)
}

/// The objects `names` asks for, in that order (all when none), and the
/// names that matched nothing. `alias` gives another name an object answers to.
pub fn pick<K: ResourceExt + Clone>(
    objects: &[K],
    names: &[String],
    alias: impl Fn(&K) -> Option<String>,
) -> (Vec<K>, Vec<String>) {
    if names.is_empty() {
        return (objects.to_vec(), Vec::new());
    }
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for name in names {
        match objects
            .iter()
            .find(|o| &o.name_any() == name || alias(o).as_ref() == Some(name))
        {
            Some(o) => found.push(o.clone()),
            None => missing.push(name.clone()),
        }
    }
    (found, missing)
}

pub async fn main(args: GetArgs) -> Result<ExitCode, CliError> {
    let target = args.kube.connect().await?;
    let client = &target.client;
    let namespace = (!args.all_namespaces).then_some(target.namespace.as_str());
    let wide = args.output == Format::Wide;
    let now = jiff::Timestamp::now();
    let (text, empty, missing) = match args.kind {
        Kind::Stages => {
            let all: Vec<Stage> = list(client, namespace).await?;
            let (found, missing) = pick(&all, &args.names, |_| None);
            let promotions: Vec<Promotion> = list(client, namespace).await?;
            let freight: Vec<Freight> = list(client, namespace).await?;
            let table = || columns::stages(&found, &promotions, &freight, wide, now);
            (render(&found, &args, table)?, found.is_empty(), missing)
        }
        Kind::Promotions => {
            let all: Vec<Promotion> = list(client, namespace).await?;
            let (found, missing) = pick(&all, &args.names, |_| None);
            let table = || columns::promotions(&found, wide, now);
            (render(&found, &args, table)?, found.is_empty(), missing)
        }
        Kind::Freight => {
            let all: Vec<Freight> = list(client, namespace).await?;
            let (found, missing) = pick(&all, &args.names, |f: &Freight| f.spec.alias.clone());
            let table = || columns::freight(&found, wide, now);
            (render(&found, &args, table)?, found.is_empty(), missing)
        }
        Kind::Warehouses => {
            let all: Vec<Warehouse> = list(client, namespace).await?;
            let (found, missing) = pick(&all, &args.names, |_| None);
            let freight: Vec<Freight> = list(client, namespace).await?;
            let table = || columns::warehouses(&found, &freight, wide, now);
            (render(&found, &args, table)?, found.is_empty(), missing)
        }
    };
    print!("{text}");
    for name in &missing {
        eprintln!(
            "Error from server (NotFound): {} \"{name}\" not found",
            args.kind.singular()
        );
    }
    if empty && missing.is_empty() {
        match namespace {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        }
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The text for `found` in the chosen format.
fn render<K: ResourceExt + serde::Serialize>(
    found: &[K],
    args: &GetArgs,
    table: impl FnOnce() -> Table,
) -> Result<String, CliError> {
    Ok(match args.output {
        Format::Table | Format::Wide if found.is_empty() => String::new(),
        Format::Table | Format::Wide => {
            let mut t = table();
            if args.all_namespaces {
                let namespaces: Vec<String> = found
                    .iter()
                    .map(|o| o.namespace().unwrap_or_default())
                    .collect();
                t = columns::with_namespaces(t, &namespaces);
            }
            super::table::render(&t.0, &t.1)
        }
        format => output::document(found, args.names.len() == 1, format)?,
    })
}
