//! Completion for `kubectl barge …`: kubectl (1.26 and later) completes a
//! plugin's arguments by running `kubectl_complete-<plugin>` from PATH with
//! the words typed so far, and reads the candidates in the protocol of
//! cobra's `__complete`: one per line (a tab, then a description), and a
//! last line `:<directive>`. `make install-plugin` links that name to
//! `barge`, which answers when run under it (or as `barge __complete …`).
//!
//! Subcommands, flags and enumerated values come from the command-line
//! definition ([`wanted`], pure); object names from the cluster that the
//! typed `--kubeconfig`, `--context` and `-n` name, when it answers in time.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, Command};
use kube::ResourceExt;

use super::kube_args::KubeArgs;
use crate::api::{Freight, Promotion, Stage, Warehouse};

/// The file name kubectl runs to complete `kubectl barge …`.
pub const COMPLETE_FILE: &str = "kubectl_complete-barge";

/// The hidden subcommand answering the same way.
pub const COMPLETE_COMMAND: &str = "__complete";

/// cobra's directive: complete no file names.
const NO_FILE_COMPLETION: u8 = 4;
/// cobra's directive: the shell's default (file names).
const DEFAULT_COMPLETION: u8 = 0;

/// How long the cluster may take to list names: a slow answer is no answer.
const NAMES_TIMEOUT: Duration = Duration::from_secs(3);

/// Objects whose names complete an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    Stages,
    Promotions,
    Freight,
    Warehouses,
}

/// What the word being typed can be.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// These words, each with a description.
    Words(Vec<(String, String)>),
    /// Names of objects of a kind.
    Names(Names),
    /// A file name (the shell completes it).
    File,
    /// Nothing we can offer.
    Nothing,
}

/// What the last of `words` (the one being typed, maybe empty) can be,
/// given the ones before it. Only candidates starting with it are listed.
pub fn wanted(root: &Command, words: &[String]) -> Wanted {
    let (typing, before) = match words.split_last() {
        Some((last, before)) => (last.as_str(), before),
        None => ("", words),
    };
    let mut command = root;
    let mut positionals: Vec<&str> = Vec::new();
    let mut value_of: Option<&Arg> = None;
    for word in before {
        if value_of.take().is_some() {
            continue;
        }
        if let Some(flag) = word.strip_prefix("--") {
            if !flag.contains('=') {
                value_of = command
                    .get_arguments()
                    .find(|a| {
                        a.get_long() == Some(flag)
                            || a.get_all_aliases().is_some_and(|all| all.contains(&flag))
                    })
                    .filter(|a| takes_value(a));
            }
        } else if let Some(short) = word.strip_prefix('-').filter(|s| s.chars().count() == 1) {
            value_of = command
                .get_arguments()
                .find(|a| a.get_short().is_some_and(|c| short.starts_with(c)))
                .filter(|a| takes_value(a));
        } else if word.starts_with('-') {
            // `-nshop` or `--namespace=shop`: the value is in the word.
        } else if let Some(sub) = positionals
            .is_empty()
            .then(|| command.find_subcommand(word))
            .flatten()
        {
            command = sub;
        } else {
            positionals.push(word);
        }
    }
    let prefixed = |candidates: Vec<(String, String)>| {
        Wanted::Words(
            candidates
                .into_iter()
                .filter(|(c, _)| c.starts_with(typing))
                .collect(),
        )
    };
    if let Some(arg) = value_of {
        return value_of_flag(arg, prefixed);
    }
    if typing.starts_with('-') {
        return prefixed(
            command
                .get_arguments()
                .filter(|a| !a.is_hide_set())
                .filter_map(|a| Some((format!("--{}", a.get_long()?), help(a))))
                .collect(),
        );
    }
    if positionals.is_empty() && command.has_subcommands() {
        return prefixed(
            command
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .map(|c| {
                    let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
                    (c.get_name().to_string(), first_line(&about))
                })
                .collect(),
        );
    }
    let mut args = command.get_positionals();
    let Some(arg) = args
        .nth(positionals.len())
        .or_else(|| command.get_positionals().last())
    else {
        return Wanted::Nothing;
    };
    let values = possible_values(arg);
    if !values.is_empty() {
        return prefixed(values);
    }
    // The names after a kind: `get stages dev`, `describe promotion p1`.
    let kind_arg = command.get_positionals().next();
    match (command.get_name(), positionals.first(), kind_arg) {
        ("abort", _, _) => Wanted::Names(Names::Promotions),
        (_, Some(kind), Some(kind_arg)) => canonical(kind_arg, kind)
            .and_then(|k| names_of_kind(&k))
            .map_or(Wanted::Nothing, Wanted::Names),
        _ => Wanted::Nothing,
    }
}

fn value_of_flag(arg: &Arg, prefixed: impl Fn(Vec<(String, String)>) -> Wanted) -> Wanted {
    let values = possible_values(arg);
    if !values.is_empty() {
        return prefixed(values);
    }
    match arg.get_id().as_str() {
        "stage" => Wanted::Names(Names::Stages),
        "freight" => Wanted::Names(Names::Freight),
        "warehouse" => Wanted::Names(Names::Warehouses),
        "promotion" => Wanted::Names(Names::Promotions),
        _ if arg
            .get_value_names()
            .is_some_and(|n| n.iter().any(|n| n == "FILE" || n == "DIR")) =>
        {
            Wanted::File
        }
        _ => Wanted::Nothing,
    }
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_none_or(|n| n.takes_values())
        && !matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue
                | clap::ArgAction::SetFalse
                | clap::ArgAction::Count
                | clap::ArgAction::Help
                | clap::ArgAction::HelpShort
                | clap::ArgAction::HelpLong
                | clap::ArgAction::Version
        )
}

fn possible_values(arg: &Arg) -> Vec<(String, String)> {
    arg.get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| {
            let help = v.get_help().map(|h| h.to_string()).unwrap_or_default();
            (v.get_name().to_string(), first_line(&help))
        })
        .collect()
}

/// The canonical value `word` stands for (an alias such as `promo` included).
fn canonical(arg: &Arg, word: &str) -> Option<String> {
    arg.get_possible_values()
        .into_iter()
        .find(|v| v.matches(word, false))
        .map(|v| v.get_name().to_string())
}

fn names_of_kind(kind: &str) -> Option<Names> {
    match kind {
        "stages" | "stage" => Some(Names::Stages),
        "promotions" | "promotion" => Some(Names::Promotions),
        "freight" => Some(Names::Freight),
        "warehouses" => Some(Names::Warehouses),
        _ => None,
    }
}

fn help(arg: &Arg) -> String {
    first_line(&arg.get_help().map(|h| h.to_string()).unwrap_or_default())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// The kubectl flags among the typed words (`--kubeconfig`, `--context`,
/// `-n`/`--namespace`/`--project`, with the value apart or after `=`).
pub fn kube_args(words: &[String]) -> KubeArgs {
    let mut args = KubeArgs::default();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (word.as_str(), None),
        };
        let (flag, inline) = match flag
            .strip_prefix("-n")
            .filter(|v| !v.is_empty() && !flag.starts_with("--"))
        {
            Some(value) => ("-n", Some(value.to_string())),
            None => (flag, inline),
        };
        let field = match flag {
            "--kubeconfig" | "--context" | "-n" | "--namespace" | "--project" => flag,
            _ => continue,
        };
        let Some(value) = inline.or_else(|| words.next().cloned()) else {
            break;
        };
        match field {
            "--kubeconfig" => args.kubeconfig = Some(value.into()),
            "--context" => args.context = Some(value),
            _ => args.namespace = Some(value),
        }
    }
    args
}

/// The names (and Freight aliases) of objects of a kind in the namespace
/// the typed flags name, sorted.
async fn names(kind: Names, words: &[String]) -> Vec<String> {
    let Ok(target) = kube_args(words).connect().await else {
        return Vec::new();
    };
    let (client, ns) = (&target.client, Some(target.namespace.as_str()));
    let listed: Result<Vec<String>, _> = match kind {
        Names::Stages => super::get::list::<Stage>(client, ns)
            .await
            .map(|all| all.iter().map(ResourceExt::name_any).collect()),
        Names::Promotions => super::get::list::<Promotion>(client, ns)
            .await
            .map(|all| all.iter().map(ResourceExt::name_any).collect()),
        Names::Warehouses => super::get::list::<Warehouse>(client, ns)
            .await
            .map(|all| all.iter().map(ResourceExt::name_any).collect()),
        Names::Freight => super::get::list::<Freight>(client, ns).await.map(|all| {
            all.iter()
                .flat_map(|f| [Some(f.name_any()), f.spec.alias.clone()])
                .flatten()
                .filter(|n| !n.is_empty())
                .collect()
        }),
    };
    let mut names = listed.unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// Prints the candidates for `words` and the directive, as cobra's
/// `__complete` does. Never fails: no candidates is an answer.
pub fn main(words: Vec<String>, root: Command) -> ExitCode {
    let typing = words.last().cloned().unwrap_or_default();
    let (candidates, directive) = match wanted(&root, &words) {
        Wanted::Words(words) => (words, NO_FILE_COMPLETION),
        Wanted::File => (Vec::new(), DEFAULT_COMPLETION),
        Wanted::Nothing => (Vec::new(), NO_FILE_COMPLETION),
        Wanted::Names(kind) => {
            let names = tokio::runtime::Runtime::new()
                .ok()
                .and_then(|rt| {
                    rt.block_on(async {
                        tokio::time::timeout(NAMES_TIMEOUT, names(kind, &words)).await
                    })
                    .ok()
                })
                .unwrap_or_default();
            let matching = names
                .into_iter()
                .filter(|n| n.starts_with(typing.as_str()))
                .map(|n| (n, String::new()))
                .collect();
            (matching, NO_FILE_COMPLETION)
        }
    };
    for (candidate, description) in candidates {
        if description.is_empty() {
            println!("{candidate}");
        } else {
            println!("{candidate}\t{description}");
        }
    }
    println!(":{directive}");
    ExitCode::SUCCESS
}

#[cfg(test)]
#[path = "complete_tests.rs"]
mod tests;
