//! The file steps' behaviour, run by the Promotion reconciler over a work
//! directory: given these files and this plan, the files and status after.

use serde_json::json;

use crate::controller::fixtures::{run_in_work_dir, run_over_files};

#[tokio::test]
async fn delete_removes_what_its_globs_match_and_nothing_else() {
    let plan = json!([
        {"uses": "delete", "as": "clean", "config": {
            "paths": ["./out/**/*.tmp", "./out/build"], "pathsAreGlobs": true, "strict": true}},
        {"uses": "hold", "as": "hold"},
    ]);
    let files = [
        "out/a.tmp",
        "out/deep/b.tmp",
        "out/keep.yaml",
        "out/build/x",
        "src/c.tmp",
    ];
    let (status, dir) = run_in_work_dir(plan, &files).await;

    assert_eq!(
        status["stepExecutionMetadata"][0]["status"], "Succeeded",
        "{status}"
    );
    let left: Vec<bool> = files.iter().map(|f| dir.join(f).exists()).collect();
    assert_eq!(left, [false, false, true, false, true]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_promotion_that_ends_leaves_no_work_directory_behind() {
    let plan = json!([{"uses": "fail", "as": "stop"}]);
    let (status, dir) = run_in_work_dir(plan, &["out/file"]).await;

    assert_eq!(status["phase"], "Failed", "{status}");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[tokio::test]
async fn delete_refuses_a_path_that_leaves_the_work_directory_naming_the_field() {
    let plan = json!([{"uses": "delete", "as": "clean", "config": {"path": "../other-promotion"}}]);
    let (status, _) = run_in_work_dir(plan, &[]).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("config.path: \"../other-promotion\" leaves the work directory"),
        "{message}"
    );
}

#[tokio::test]
async fn a_strict_delete_of_a_pattern_that_matches_nothing_errors() {
    let plan = json!([{"uses": "delete", "as": "clean",
                       "config": {"paths": ["./out/*.tmp"], "pathsAreGlobs": true, "strict": true}}]);
    let (status, _) = run_in_work_dir(plan, &["out/keep.yaml"]).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("config.paths[0]: \"./out/*.tmp\" matches nothing")),
        "{status}"
    );
}

#[tokio::test]
async fn copy_merges_a_directory_leaving_out_git_and_ignored_files() {
    let plan = json!([
        {"uses": "copy", "as": "merge", "config": {
            "inPath": "./src", "outPath": "./out", "ignore": "# fixtures\ntestdata/\n*.tmp\n"}},
        {"uses": "hold", "as": "hold"},
    ]);
    let files = [
        "src/app.yaml",
        "src/base/kustomization.yaml",
        "src/.git/HEAD",
        "src/testdata/case.yaml",
        "src/x.tmp",
        "out/existing.yaml",
    ];
    let (status, dir) = run_in_work_dir(plan, &files).await;

    assert_eq!(
        status["stepExecutionMetadata"][0]["status"], "Succeeded",
        "{status}"
    );
    let present = |f: &str| dir.join(f).exists();
    assert!(present("out/app.yaml") && present("out/base/kustomization.yaml"));
    assert!(
        present("out/existing.yaml"),
        "the destination is merged into"
    );
    assert!(
        !present("out/.git/HEAD") && !present("out/testdata/case.yaml") && !present("out/x.tmp")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn copy_reincludes_git_when_the_patterns_say_so_and_copies_single_files() {
    let plan = json!([
        {"uses": "copy", "as": "all", "config": {"inPath": "src", "outPath": "out", "ignore": "!.git/"}},
        {"uses": "copy", "as": "one", "config": {"inPath": "src/app.yaml", "outPath": "single/app.yaml"}},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = run_in_work_dir(plan, &["src/app.yaml", "src/.git/HEAD"]).await;

    assert_eq!(
        status["stepExecutionMetadata"][1]["status"], "Succeeded",
        "{status}"
    );
    assert!(dir.join("out/.git/HEAD").exists());
    assert!(dir.join("single/app.yaml").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn copy_of_a_missing_path_errors_naming_in_path() {
    let plan =
        json!([{"uses": "copy", "as": "merge", "config": {"inPath": "nope", "outPath": "out"}}]);
    let (status, _) = run_in_work_dir(plan, &[]).await;

    assert_eq!(status["phase"], "Errored", "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("config.inPath: \"nope\" does not exist")),
        "{status}"
    );
}

const VALUES_YAML: &str =
    "# chart values\nimage:\n  repository: web\n  tag: \"1.4.2\"\nreplicas: 3\n";

#[tokio::test]
async fn yaml_parse_outputs_what_its_expressions_pick_from_the_file() {
    let plan = json!([
        {"uses": "yaml-parse", "as": "values", "config": {"path": "./src/values.yaml", "outputs": [
            {"name": "imageTag", "fromExpression": "image.tag"},
            {"name": "image", "fromExpression": "outputs.image.repository + ':' + image.tag"},
            {"name": "scaled", "fromExpression": "replicas * 2"},
        ]}},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = run_over_files(plan, &[("src/values.yaml", VALUES_YAML)]).await;

    assert_eq!(
        status["state"]["values"],
        json!({"imageTag": "1.4.2", "image": "web:1.4.2", "scaled": 6}),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn json_parse_reads_json_the_same_way() {
    let plan = json!([
        {"uses": "json-parse", "as": "pkg", "config": {"path": "package.json",
            "outputs": [{"name": "version", "fromExpression": "version"}]}},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = run_over_files(plan, &[("package.json", r#"{"version": "2.0.1"}"#)]).await;

    assert_eq!(
        status["state"]["pkg"],
        json!({"version": "2.0.1"}),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_parse_of_a_file_that_is_not_a_mapping_or_a_bad_expression_names_the_field() {
    for (text, expression, expected) in [
        (
            "- a\n- b\n",
            "a",
            "config.path: \"v.yaml\" is not a YAML mapping",
        ),
        ("a: [", "a", "config.path: \"v.yaml\" is not valid YAML"),
        ("a: 1\n", "a +", "config.outputs[0].fromExpression:"),
    ] {
        let plan = json!([{"uses": "yaml-parse", "as": "v", "config": {"path": "v.yaml",
            "outputs": [{"name": "x", "fromExpression": expression}]}}]);
        let (status, _) = run_over_files(plan, &[("v.yaml", text)]).await;

        assert_eq!(status["phase"], "Errored", "{status}");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains(expected)),
            "{expected}: {status}"
        );
    }
}

#[tokio::test]
async fn a_step_that_leaves_the_promotion_over_its_size_limit_fails_it_saying_so() {
    let plan = json!([
        {"uses": "copy", "as": "grow", "config": {"inPath": "big", "outPath": "copy-of-big"}},
        {"uses": "hold", "as": "hold"},
    ]);
    let big = "x".repeat(600 * 1024);

    let (status, dir) = crate::controller::fixtures::PlanRun::default()
        .file("big", &big)
        .work_dir_limit(1 << 20)
        .run(plan)
        .await;

    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("step \"grow\"")
            && message.contains("the Promotion's files take 2 MiB, more than the limit of 1 MiB"),
        "{message}"
    );
    assert!(!dir.exists(), "its files are removed with it");
}
