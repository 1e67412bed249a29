//! `barge expand`: the plan, inflated and evaluated offline.

use std::process::Command;

fn barge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run barge: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    path.display().to_string()
}

#[test]
fn the_quickstart_resolves_each_stages_application_name() {
    let (ok, stdout, stderr) = barge(&["expand", "-f", "examples/quickstart"]);
    assert!(ok, "{stderr}");
    for stage in ["dev", "staging", "prod"] {
        assert!(
            stdout.contains(&format!("- name: barge-demo-{stage}\n")),
            "no app for {stage} in:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("desiredRevision: 8f3c2a9bd41e6c07a5b2f19d3e8c4a7b6d0f1e2c"),
        "{stdout}"
    );
    assert!(stdout.contains("as: deploy::update"));
}

#[test]
fn one_stage_can_be_chosen() {
    let (ok, stdout, _) = barge(&["expand", "-f", "examples/quickstart", "--stage", "prod"]);
    assert!(ok);
    assert!(
        stdout.contains("barge-demo-prod") && !stdout.contains("barge-demo-dev"),
        "{stdout}"
    );
}

/// A Stage `dev` of namespace `demo`, after its `apiVersion` line: its
/// template's steps follow, as YAML list items under `steps:`.
const STAGE: &str = r#"kind: Stage
metadata: {name: dev, namespace: demo}
spec:
  requestedFreight: [{origin: {kind: Warehouse, name: w}, sources: {direct: true}}]
  promotionTemplate:
    spec:
      steps:
"#;

/// `barge expand -f` of a file holding [`STAGE`] at `api_version` with
/// `steps`.
fn expand_stage(api_version: &str, steps: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = write(
        &dir,
        "stage.yaml",
        &format!("apiVersion: {api_version}\n{STAGE}{steps}"),
    );
    barge(&["expand", "-f", &file])
}

#[test]
fn an_unknown_task_is_reported_with_the_step_and_field() {
    let steps = r#"      - as: build
        uses: compose-output
        config: {image: "registry/app:${{ ctx.stage }}"}
      - task: {name: missing-task}
"#;
    let (ok, _, stderr) = expand_stage("barge.dev/v1alpha1", steps);
    assert!(!ok);
    assert!(
        stderr.contains("steps[2]")
            && stderr.contains("task.name")
            && stderr.contains("\"missing-task\" not found"),
        "{stderr}"
    );
}

#[test]
fn expressions_that_need_a_running_promotion_are_left_as_written_with_a_note() {
    let steps = r#"      - as: build
        uses: compose-output
        config: {image: "app:${{ ctx.stage }}"}
      - as: use
        uses: compose-output
        config:
          digest: "${{ outputs.build.missing.digest }}"
          stage: "${{ ctx.stage }}"
"#;
    let (ok, stdout, stderr) = expand_stage("kargo.akuity.io/v1alpha1", steps);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("image: app:dev"), "{stdout}");
    assert!(stdout.contains("stage: dev"), "{stdout}");
    assert!(
        stdout.contains("config.digest"),
        "no note for the unevaluated field:\n{stdout}"
    );
    assert!(
        stdout.contains("${{ outputs.build.missing.digest }}"),
        "{stdout}"
    );
}

#[test]
fn a_step_kind_no_runner_has_fails_the_expansion_naming_the_step() {
    let steps = r#"      - as: publish
        uses: git-pussh
        config: {path: ./out}
"#;
    let (ok, stdout, stderr) = expand_stage("kargo.akuity.io/v1alpha1", steps);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("step \"publish\": uses: unknown step kind \"git-pussh\""),
        "{stderr}"
    );
    assert!(
        stdout.contains("uses: git-pussh"),
        "the plan is still printed"
    );
}

#[test]
fn a_config_that_does_not_fit_its_step_fails_naming_the_field() {
    for (config, expected) in [
        (
            "{path: ./out, targetBranh: main}",
            "config.targetBranh: unknown field `targetBranh`",
        ),
        (
            "{path: ./out, maxAttempts: many}",
            "config.maxAttempts: invalid type: string \"many\"",
        ),
        ("{targetBranch: main}", "config: missing field `path`"),
    ] {
        let steps = format!("      - as: push\n        uses: git-push\n        config: {config}\n");
        let (ok, _, stderr) = expand_stage("kargo.akuity.io/v1alpha1", &steps);
        assert!(!ok, "{config}");
        assert!(
            stderr.contains("step \"push\" (git-push): ") && stderr.contains(expected),
            "{expected}: {stderr}"
        );
    }
}

#[test]
fn values_left_as_expressions_fit_whatever_type_the_step_expects() {
    let steps = r#"      - as: clone
        uses: git-clone
        config:
          repoURL: https://git.example.com/app.git
          insecureSkipTLSVerify: ${{ outputs.settings.insecure }}
          checkout:
          - commit: ${{ outputs.settings.commit }}
            path: ./src
      - as: push
        uses: git-push
        config:
          path: ./src
          maxAttempts: ${{ outputs.settings.attempts }}
"#;
    let (ok, stdout, stderr) = expand_stage("kargo.akuity.io/v1alpha1", steps);
    assert!(ok, "{stderr}\n{stdout}");
}
