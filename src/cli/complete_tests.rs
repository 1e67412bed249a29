#![allow(clippy::unwrap_used)]

use clap::CommandFactory;

use super::*;

fn wanted_for(line: &str) -> Wanted {
    // The word being typed is the last, empty after a space.
    let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
    if line.is_empty() {
        words = vec![String::new()];
    }
    let mut root = crate::cli::Cli::command();
    root.build();
    wanted(&root, &words)
}

fn words(w: Wanted) -> Vec<String> {
    match w {
        Wanted::Words(w) => w.into_iter().map(|(c, _)| c).collect(),
        other => panic!("expected words, got {other:?}"),
    }
}

#[test]
fn subcommands_complete_with_their_descriptions_and_the_hidden_one_is_left_out() {
    let Wanted::Words(all) = wanted_for("") else {
        panic!()
    };
    let names: Vec<&str> = all.iter().map(|(c, _)| c.as_str()).collect();
    for expected in [
        "promote",
        "get",
        "describe",
        "abort",
        "approve",
        "refresh",
        "dashboard",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("__")));
    let promote = all.iter().find(|(c, _)| c == "promote").unwrap();
    assert!(
        promote.1.starts_with("Promote Freight to a Stage"),
        "{promote:?}"
    );
    assert_eq!(words(wanted_for("pro")), ["promote"]);
}

#[test]
fn enumerated_values_complete_by_prefix() {
    assert_eq!(
        words(wanted_for("get ")),
        ["stages", "promotions", "freight", "warehouses"]
    );
    assert_eq!(words(wanted_for("get p")), ["promotions"]);
    assert_eq!(words(wanted_for("describe ")), ["promotion", "stage"]);
    assert_eq!(
        words(wanted_for("get stages -o ")),
        ["table", "wide", "json", "yaml"]
    );
    assert_eq!(words(wanted_for("completion ")), ["bash", "zsh", "fish"]);
}

#[test]
fn flags_complete_after_a_dash_and_values_of_flags_are_not_taken_for_subcommands() {
    let flags = words(wanted_for("promote --"));
    for expected in [
        "--stage",
        "--freight",
        "--wait",
        "--kubeconfig",
        "--context",
        "--namespace",
    ] {
        assert!(flags.contains(&expected.to_string()), "{flags:?}");
    }
    assert_eq!(words(wanted_for("promote --w")), ["--wait"]);
    // `get` after `-n` is the namespace's name, not the subcommand.
    assert_eq!(
        words(wanted_for("get -n get ")),
        ["stages", "promotions", "freight", "warehouses"]
    );
}

#[test]
fn object_names_are_wanted_where_a_name_goes() {
    assert_eq!(wanted_for("promote --stage "), Wanted::Names(Names::Stages));
    assert_eq!(
        wanted_for("promote --stage dev --freight "),
        Wanted::Names(Names::Freight)
    );
    assert_eq!(
        wanted_for("approve --freight f1 --stage "),
        Wanted::Names(Names::Stages)
    );
    assert_eq!(
        wanted_for("refresh --warehouse "),
        Wanted::Names(Names::Warehouses)
    );
    assert_eq!(
        wanted_for("refresh --promotion "),
        Wanted::Names(Names::Promotions)
    );
    assert_eq!(wanted_for("get stages "), Wanted::Names(Names::Stages));
    assert_eq!(wanted_for("get promo p"), Wanted::Names(Names::Promotions));
    assert_eq!(
        wanted_for("get freight a b "),
        Wanted::Names(Names::Freight)
    );
    assert_eq!(wanted_for("describe stage "), Wanted::Names(Names::Stages));
    assert_eq!(
        wanted_for("describe promotion -n shop "),
        Wanted::Names(Names::Promotions)
    );
    assert_eq!(
        wanted_for("abort promotion "),
        Wanted::Names(Names::Promotions)
    );
    assert_eq!(wanted_for("promote --kubeconfig "), Wanted::File);
    assert_eq!(wanted_for("promote --context "), Wanted::Nothing);
}

#[test]
fn the_typed_kubectl_flags_say_which_cluster_to_ask() {
    let words: Vec<String> = [
        "get",
        "--kubeconfig",
        "/k",
        "--context=c",
        "-nshop",
        "stages",
        "",
    ]
    .map(String::from)
    .to_vec();
    let args = kube_args(&words);
    assert_eq!(args.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
    assert_eq!(args.context.as_deref(), Some("c"));
    assert_eq!(args.namespace.as_deref(), Some("shop"));
    let words: Vec<String> = ["get", "--namespace", "a", "--project=b", "stages"]
        .map(String::from)
        .to_vec();
    assert_eq!(kube_args(&words).namespace.as_deref(), Some("b"));
    let words: Vec<String> = ["get", "-n"].map(String::from).to_vec();
    assert_eq!(kube_args(&words).namespace, None);
}
