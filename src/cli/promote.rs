//! `barge promote`: a Promotion of one Freight to one Stage, named as Kargo
//! names manual Promotions, optionally followed until it ends.

use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::columns::discovered;
use super::error::CliError;
use super::kube_args::KubeArgs;
use crate::api::{Freight, Promotion, PromotionSpec, Stage};
use crate::availability::{Availability, availability};

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The Stage to promote to.
    #[arg(long)]
    stage: String,
    /// The Freight, by name or alias; without it, the newest Freight
    /// available to the Stage.
    #[arg(long)]
    freight: Option<String>,
    /// Follow the Promotion until it ends; the exit code tells how it
    /// ended: 0 Succeeded, 3 Failed, 4 Errored, 5 Aborted (1: barge could
    /// not follow it).
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    kube: KubeArgs,
}

/// Characters of the time-ordered ID in generated names (Crockford's base 32,
/// lower-case as names must be).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Longest Kubernetes object name.
const MAX_NAME: usize = 253;

/// `n` in base 32, `width` characters, most significant first.
fn base32(mut n: u128, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 32) as usize];
        n /= 32;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A manual Promotion's name: `<stage>.<id>.<freight[:7]>`, the ID ordered
/// by time (milliseconds, then the rest of the instant), so names sort by
/// creation and two promotes of the same Freight do not collide. The Stage
/// part is cut when needed to keep a valid name of at most 253 characters.
/// (Automatic Promotions are named `<stage>.<freight>` instead, so racing
/// reconciles cannot create two.)
pub fn promotion_name(stage: &str, freight: &str, now: Timestamp) -> String {
    let nanos = u128::try_from(now.as_nanosecond()).unwrap_or(0);
    let id = format!(
        "{}{}",
        base32(nanos / 1_000_000, 10),
        base32(nanos % 1_000_000, 4)
    );
    let freight = super::table::short(freight).trim_end_matches(['-', '.']);
    let room = MAX_NAME - id.len() - freight.len() - 2;
    let mut stage = stage;
    if stage.len() > room {
        stage = stage.get(..room).unwrap_or(stage);
    }
    let stage = stage.trim_end_matches(['-', '.']);
    format!("{stage}.{id}.{freight}")
}

/// The newest Freight (by discovery) available to `stage` now, among
/// `freight`.
pub fn newest_available<'a>(
    stage: &Stage,
    freight: &'a [Freight],
    now: Timestamp,
) -> Option<&'a Freight> {
    freight
        .iter()
        .filter(|f| availability(stage, f, now) == Availability::Now)
        .max_by_key(|f| (discovered(f), f.name_any()))
}

pub async fn main(args: PromoteArgs) -> Result<ExitCode, CliError> {
    let target = args.kube.connect().await?;
    let (client, ns) = (&target.client, target.namespace.as_str());
    let stages: Api<Stage> = Api::namespaced(client.clone(), ns);
    let stage = stages.get_opt(&args.stage).await?.ok_or_else(|| {
        CliError::refused(format!("no Stage {:?} in namespace {ns:?}", args.stage))
    })?;
    let now = Timestamp::now();
    let freight = match &args.freight {
        Some(wanted) => {
            let found = crate::approval::find(client, ns, wanted)
                .await?
                .ok_or_else(|| {
                    CliError::refused(format!(
                        "no Freight named or aliased {wanted:?} in namespace {ns:?}"
                    ))
                })?;
            if availability(&stage, &found, now) != Availability::Now {
                return Err(CliError::refused(format!(
                    "Freight {} is not available to Stage {} (not from a direct origin, \
                     not verified upstream, not approved); `barge approve` can approve it",
                    found.name_any(),
                    args.stage
                )));
            }
            found
        }
        None => {
            let all: Vec<Freight> = super::get::list(client, Some(ns)).await?;
            newest_available(&stage, &all, now)
                .cloned()
                .ok_or_else(|| {
                    CliError::refused(format!(
                        "no Freight is available to Stage {} yet; name one with --freight",
                        args.stage
                    ))
                })?
        }
    };
    let freight_name = freight.name_any();
    let api: Api<Promotion> = Api::namespaced(client.clone(), ns);
    let created = create(&api, &args.stage, &freight_name).await?;
    let name = created.name_any();
    let alias = freight.spec.alias.filter(|a| !a.is_empty());
    println!(
        "Promotion {name} created: Freight {freight_name}{} to Stage {}",
        alias
            .as_ref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default(),
        args.stage
    );
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    super::follow::follow(&api, &name, alias.as_deref()).await
}

/// Creates the Promotion; a name taken (a promote in the same instant)
/// makes one more try with a later instant.
async fn create(api: &Api<Promotion>, stage: &str, freight: &str) -> Result<Promotion, CliError> {
    let mut tries = 0;
    loop {
        let promotion = Promotion::new(
            &promotion_name(stage, freight, Timestamp::now()),
            PromotionSpec {
                stage: stage.to_string(),
                freight: freight.to_string(),
                ..PromotionSpec::default()
            },
        );
        match api.create(&PostParams::default(), &promotion).await {
            Err(kube::Error::Api(e)) if e.code == 409 && tries == 0 => tries += 1,
            other => return Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: i32) -> Timestamp {
        Timestamp::new(secs, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_name_is_the_stage_a_time_ordered_id_and_the_short_freight() {
        let name = promotion_name("dev", "8f3c2a9bd41e6c07a5b2", at(1_700_000_000, 5));
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert_eq!((parts[0], parts[2]), ("dev", "8f3c2a9"));
        assert_eq!(parts[1].len(), 14);
        assert!(parts[1].bytes().all(|b| ALPHABET.contains(&b)), "{name}");
    }

    #[test]
    fn later_promotes_sort_after_earlier_ones_and_differ_within_a_millisecond() {
        let first = promotion_name("dev", "f1", at(1_700_000_000, 1_000));
        let same_ms = promotion_name("dev", "f1", at(1_700_000_000, 2_000));
        let later = promotion_name("dev", "f1", at(1_700_000_001, 0));
        assert!(
            first < same_ms && same_ms < later,
            "{first} {same_ms} {later}"
        );
    }

    #[test]
    fn a_long_stage_is_cut_to_keep_a_valid_name() {
        let stage = format!("{}-x", "a".repeat(236));
        let name = promotion_name(&stage, "abcdef1234", at(1_700_000_000, 0));
        assert!(name.len() <= MAX_NAME, "{}", name.len());
        let first = name.split('.').next().unwrap_or_default();
        assert!(!first.ends_with('-') && !first.is_empty(), "{name}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod choice_tests {
    use super::*;
    use serde_json::json;

    fn freight(name: &str, discovered: &str, origin: &str) -> Freight {
        serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Freight",
            "metadata": {"name": name, "namespace": "demo"},
            "origin": {"kind": "Warehouse", "name": origin},
            "discoveredAt": discovered,
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_freight_of_an_origin_the_stage_takes_directly_is_chosen() {
        let stage: Stage = serde_json::from_value(json!({
            "apiVersion": "barge.dev/v1alpha1", "kind": "Stage",
            "metadata": {"name": "dev", "namespace": "demo"},
            "spec": {"requestedFreight": [{"origin": {"kind": "Warehouse", "name": "w"}, "sources": {"direct": true}}]},
        }))
        .unwrap();
        let all = [
            freight("old", "2026-01-01T09:00:00Z", "w"),
            freight("new", "2026-01-01T10:00:00Z", "w"),
            freight("other", "2026-01-01T11:00:00Z", "elsewhere"),
        ];
        let now = "2026-01-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            newest_available(&stage, &all, now).map(|f| f.name_any()),
            Some("new".into())
        );
        assert!(newest_available(&stage, &all[2..], now).is_none());
    }
}
