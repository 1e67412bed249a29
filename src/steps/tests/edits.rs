//! The editing steps' behaviour (`yaml-update`, `json-update`,
//! `kustomize-set-image`), run by the Promotion reconciler over a work
//! directory: given these files and this plan, the files and status after.

use serde_json::{Value, json};

use crate::controller::fixtures::{PlanRun, run_over_files};

const VALUES: &str = include_str!("testdata/values.yaml");

/// Runs one step `uses` with `config` (and a `hold` after it, so the
/// Promotion stays to be looked at) over `files`; returns the status and
/// the text of `file` after.
async fn edit(uses: &str, config: Value, files: &[(&str, &str)], file: &str) -> (Value, String) {
    let plan = json!([
        {"uses": uses, "as": "edit", "config": config},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = run_over_files(plan, files).await;
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (status, text)
}

/// The Promotion errored with a message containing `expected`.
fn errored_with(status: &Value, expected: &str) {
    assert_eq!(status["phase"], "Errored", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(expected),
        "{expected:?} not in {message:?}"
    );
}

fn succeeded(status: &Value) {
    assert_eq!(
        status["stepExecutionMetadata"][0]["status"], "Succeeded",
        "{status}"
    );
}

/// `text` with each `(old, new)` replaced, each `old` found exactly once.
fn replaced(text: &str, changes: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (old, new) in changes {
        assert_eq!(out.matches(old).count(), 1, "{old:?} is not unique");
        out = out.replacen(old, new, 1);
    }
    out
}

#[tokio::test]
async fn yaml_update_changes_only_the_targeted_values_of_an_annotated_values_file() {
    let config = json!({"path": "./src/values.yaml", "updates": [
        {"key": "image.tag", "value": "v1.5.0"},
        {"key": "image.digest", "value": "sha256:0123abcd"},
        {"key": "replicaCount", "value": 3},
        {"key": "podAnnotations.checksum/config", "value": "def456"},
        {"key": "commonLabels.app\\.kubernetes\\.io/part-of", "value": "shop"},
        {"key": "sidecars.0.image", "value": "docker.io/fluent/fluent-bit:3.1.0"},
        {"key": "sidecars.0.resources.limits.cpu", "value": "100m"},
        {"key": "sidecars.1.image", "value": "envoyproxy/envoy:v1.31.0"},
        {"key": "ingress.hosts.1.host", "value": "shop.example.com"},
        {"key": "extraEnv.1.value", "value": "1.5.0"},
        {"key": "config.features.darkMode", "value": false},
        {"key": "config.app\\.yaml", "value": "server:\n  port: 9090\n"},
        {"key": "autoscaling.enabled", "value": true},
        {"key": "priorityClassName", "value": "high"},
    ]});
    let (status, text) = edit(
        "yaml-update",
        config,
        &[("src/values.yaml", VALUES)],
        "src/values.yaml",
    )
    .await;

    succeeded(&status);
    let expected = replaced(
        VALUES,
        &[
            (
                "tag: \"v1.4.2\"     # updated",
                "tag: \"v1.5.0\"     # updated",
            ),
            ("digest: ''", "digest: 'sha256:0123abcd'"),
            ("replicaCount: 2", "replicaCount: 3"),
            ("'abc123'", "'def456'"),
            ("part-of: guestbook", "part-of: shop"),
            ("fluent-bit:3.0.4\"", "fluent-bit:3.1.0\""),
            ("{cpu: 50m,", "{cpu: 100m,"),
            ("envoy:v1.30.1   # pinned", "envoy:v1.31.0   # pinned"),
            (
                "\"www.guestbook.example.com\"   # legacy",
                "\"shop.example.com\"   # legacy",
            ),
            ("value: \"1.4.2\"", "value: \"1.5.0\""),
            ("darkMode: yes   # YAML", "darkMode: false   # YAML"),
            (
                "  app.yaml: |\n    server:\n      port: 8080\n    storage:\n      backend: redis\n",
                "  app.yaml: |\n    server:\n      port: 9090\n",
            ),
            (
                "autoscaling:\n  enabled: false",
                "autoscaling:\n  enabled: true",
            ),
            ("priorityClassName:\n", "priorityClassName: high\n"),
        ],
    );
    assert_eq!(text, expected);
    assert_eq!(
        status["state"]["edit"]["commitMessage"],
        "Updated ./src/values.yaml\n\n\
         - image.tag: v1.5.0\n\
         - image.digest: sha256:0123abcd\n\
         - replicaCount: 3\n\
         - podAnnotations.checksum/config: def456\n\
         - commonLabels.app\\.kubernetes\\.io/part-of: shop\n\
         - sidecars.0.image: docker.io/fluent/fluent-bit:3.1.0\n\
         - sidecars.0.resources.limits.cpu: 100m\n\
         - sidecars.1.image: envoyproxy/envoy:v1.31.0\n\
         - ingress.hosts.1.host: shop.example.com\n\
         - extraEnv.1.value: 1.5.0\n\
         - config.features.darkMode: false\n\
         - config.app\\.yaml: server:\n  port: 9090\n\n\
         - autoscaling.enabled: true\n\
         - priorityClassName: high"
    );
}

#[tokio::test]
async fn yaml_update_quotes_a_string_that_would_otherwise_read_as_another_type() {
    let files = [(
        "values.yaml",
        "image:\n  tag: v1   # the tag\nenabled: on\n",
    )];
    let config = json!({"path": "values.yaml", "updates": [
        {"key": "image.tag", "value": "1.10"},
        {"key": "enabled", "value": "yes"},
    ]});
    let (status, text) = edit("yaml-update", config, &files, "values.yaml").await;

    succeeded(&status);
    assert_eq!(
        text,
        "image:\n  tag: \"1.10\"   # the tag\nenabled: \"yes\"\n"
    );
    assert_eq!(
        status["state"]["edit"]["commitMessage"],
        "Updated values.yaml\n\n- image.tag: \"1.10\"\n- enabled: yes"
    );
}

#[tokio::test]
async fn yaml_update_of_a_key_that_does_not_exist_errors_naming_the_key_as_kargo_does() {
    let files = [("values.yaml", "image:\n  tag: v1\n")];
    let config = json!({"path": "values.yaml", "updates": [
        {"key": "image.tag", "value": "v2"},
        {"key": "image.digest", "value": "sha256:x"},
    ]});
    let (status, _) = edit("yaml-update", config, &files, "values.yaml").await;

    errored_with(
        &status,
        "config.updates[1].key: \"image.digest\" is not in \"values.yaml\": \"image\" has no key \"digest\"",
    );
}

#[tokio::test]
async fn yaml_update_of_a_key_that_holds_a_mapping_errors() {
    let files = [("values.yaml", "image:\n  tag: v1\n")];
    let config = json!({"path": "values.yaml", "updates": [{"key": "image", "value": "x"}]});
    let (status, _) = edit("yaml-update", config, &files, "values.yaml").await;

    errored_with(
        &status,
        "config.updates[0].key: \"image\" is a mapping in \"values.yaml\"; yaml-update sets scalar values only",
    );
}

#[tokio::test]
async fn yaml_update_of_an_index_past_the_end_of_a_sequence_errors() {
    let files = [("values.yaml", "hosts:\n- a\n")];
    let config = json!({"path": "values.yaml", "updates": [{"key": "hosts.1", "value": "b"}]});
    let (status, _) = edit("yaml-update", config, &files, "values.yaml").await;

    errored_with(&status, "\"hosts\" has 1 items, so 1 is out of range");
}

#[tokio::test]
async fn yaml_update_refuses_a_malformed_key_naming_the_field() {
    let files = [("values.yaml", "a: 1\n")];
    let config = json!({"path": "values.yaml", "updates": [
        {"key": "a", "value": 2},
        {"key": "a..b", "value": 2},
    ]});
    let (status, _) = edit("yaml-update", config, &files, "values.yaml").await;

    errored_with(&status, "config.updates[1].key: \"a..b\" has an empty part");
}

#[tokio::test]
async fn yaml_update_refuses_a_collection_value_naming_the_field() {
    let files = [("values.yaml", "a: 1\n")];
    let config = json!({"path": "values.yaml", "updates": [{"key": "a", "value": [1, 2]}]});
    let (status, _) = edit("yaml-update", config, &files, "values.yaml").await;

    errored_with(&status, "config.updates[0].value: yaml-update sets strings");
}

#[tokio::test]
async fn yaml_update_needs_updates_and_a_value_for_each() {
    for (config, expected) in [
        (
            json!({"path": "v.yaml", "updates": []}),
            "config.updates: at least one update is required",
        ),
        (
            json!({"path": "v.yaml", "updates": [{"key": "a"}]}),
            "config.updates[0]: missing field `value`",
        ),
        (
            json!({"path": "v.yaml", "updates": [{"key": "a", "value": 1, "extra": 2}]}),
            "config.updates[0].extra: unknown field `extra`",
        ),
    ] {
        let (status, _) = edit("yaml-update", config, &[("v.yaml", "a: 1\n")], "v.yaml").await;
        errored_with(&status, expected);
    }
}

#[tokio::test]
async fn yaml_update_of_a_file_that_is_not_yaml_errors_naming_the_path() {
    let files = [("values.yaml", "a: [1, 2\n")];
    let config = json!({"path": "values.yaml", "updates": [{"key": "a", "value": 2}]});
    let (status, _) = edit("yaml-update", config, &files, "values.yaml").await;

    errored_with(&status, "config.path: \"values.yaml\" is not valid YAML");
}

#[tokio::test]
async fn the_update_steps_refuse_a_missing_file_a_path_out_of_the_work_directory_and_a_large_file()
{
    let large = "a: 1\n".repeat(2 * 1024 * 1024);
    for uses in ["yaml-update", "json-update"] {
        for (path, expected) in [
            (
                "missing.yaml",
                "config.path: \"missing.yaml\" does not exist in the work directory",
            ),
            (
                "../other/values.yaml",
                "config.path: \"../other/values.yaml\" leaves the work directory",
            ),
            (
                "large.yaml",
                "config.path: \"large.yaml\" is 10485760 bytes, over the 8388608-byte limit",
            ),
        ] {
            let config = json!({"path": path, "updates": [{"key": "a", "value": 2}]});
            let (status, _) = edit(uses, config, &[("large.yaml", &large)], path).await;
            errored_with(&status, expected);
        }
    }
}

const SETTINGS_JSON: &str = r#"{
  "app": {
    "version": "1.0.0",
    "example.com/flag": false
  },
  "replicas": 2,
  "hosts": ["a.example.com", "b.example.com"]
}
"#;

#[tokio::test]
async fn json_update_sets_values_in_place_and_adds_missing_keys_in_the_file_s_style() {
    let config = json!({"path": "configs/settings.json", "updates": [
        {"key": "app.version", "value": "1.0.1"},
        {"key": "app.example\\.com/flag", "value": true},
        {"key": "replicas", "value": 3},
        {"key": "hosts.1", "value": "c.example.com"},
        {"key": "hosts.-1", "value": "d.example.com"},
        {"key": "app.owner", "value": "team-a"},
    ]});
    let (status, text) = edit(
        "json-update",
        config,
        &[("configs/settings.json", SETTINGS_JSON)],
        "configs/settings.json",
    )
    .await;

    succeeded(&status);
    assert_eq!(
        text,
        r#"{
  "app": {
    "version": "1.0.1",
    "example.com/flag": true,
    "owner": "team-a"
  },
  "replicas": 3,
  "hosts": ["a.example.com", "c.example.com", "d.example.com"]
}
"#
    );
    assert_eq!(
        status["state"]["edit"]["commitMessage"],
        "Updated configs/settings.json\n\n\
         - app.version: \"1.0.1\"\n\
         - app.example\\.com/flag: true\n\
         - replicas: 3\n\
         - hosts.1: \"c.example.com\"\n\
         - hosts.-1: \"d.example.com\"\n\
         - app.owner: \"team-a\""
    );
}

#[tokio::test]
async fn json_update_of_an_empty_file_builds_the_document_as_sjson_does() {
    let config =
        json!({"path": "config.json", "updates": [{"key": "app.version", "value": "1.0.1"}]});
    let (status, text) = edit("json-update", config, &[("config.json", "")], "config.json").await;

    succeeded(&status);
    assert_eq!(text, r#"{"app":{"version":"1.0.1"}}"#);
}

#[tokio::test]
async fn json_update_refuses_null_and_collections_naming_the_value() {
    for value in [json!(null), json!([1]), json!({"a": 1})] {
        let config = json!({"path": "c.json", "updates": [{"key": "a", "value": value}]});
        let (status, _) = edit("json-update", config, &[("c.json", "{}")], "c.json").await;
        errored_with(
            &status,
            "config.updates[0].value: json-update sets strings, numbers and booleans",
        );
    }
}

#[tokio::test]
async fn json_update_of_a_word_as_an_array_index_errors_naming_the_key() {
    let config = json!({"path": "c.json", "updates": [{"key": "hosts.first", "value": "x"}]});
    let (status, _) = edit(
        "json-update",
        config,
        &[("c.json", r#"{"hosts": []}"#)],
        "c.json",
    )
    .await;

    errored_with(
        &status,
        "config.updates[0].key: cannot set array element for non-numeric key \"first\"",
    );
}

#[tokio::test]
async fn json_update_refuses_query_syntax_and_invalid_json() {
    let config = json!({"path": "c.json", "updates": [{"key": "hosts.#.name", "value": "x"}]});
    let (status, _) = edit("json-update", config, &[("c.json", "{}")], "c.json").await;
    errored_with(
        &status,
        "config.updates[0].key: \"hosts.#.name\" uses query syntax",
    );

    let config = json!({"path": "c.json", "updates": [{"key": "a", "value": "x"}]});
    let (status, _) = edit("json-update", config, &[("c.json", "{\"a\": }")], "c.json").await;
    errored_with(&status, "config.path: \"c.json\" is not valid JSON");
}

const KUSTOMIZATION: &str = "\
# The app's base.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shop   # where it runs

resources:
  - deployment.yaml
  - service.yaml

# Images, bumped by the pipeline.
images:
  - name: ghcr.io/example/api
    newTag: v1.4.2   # api
  - name: ghcr.io/example/web
    newName: registry.example.com/web
    newTag: \"1.0\"

configMapGenerator:
  - name: settings
    literals:
      - MODE=production
";

#[tokio::test]
async fn kustomize_set_image_changes_the_entry_of_an_image_and_nothing_else() {
    let config = json!({"path": "./base", "images": [
        {"image": "ghcr.io/example/api", "tag": "v1.5.0"},
    ]});
    let (status, text) = edit(
        "kustomize-set-image",
        config,
        &[("base/kustomization.yaml", KUSTOMIZATION)],
        "base/kustomization.yaml",
    )
    .await;

    succeeded(&status);
    assert_eq!(
        text,
        replaced(KUSTOMIZATION, &[("v1.4.2   # api", "v1.5.0   # api")])
    );
    // Kargo's message lists every image of the file after the change.
    assert_eq!(
        status["state"]["edit"]["commitMessage"],
        "Updated ./base to use new images\n\n\
         - ghcr.io/example/api:v1.5.0\n\
         - registry.example.com/web:1.0"
    );
}

#[tokio::test]
async fn kustomize_set_image_adds_a_new_image_in_name_order_with_the_file_s_indentation() {
    let config = json!({"path": "base", "images": [
        {"image": "ghcr.io/example/cache", "digest": "sha256:0a1b"},
        {"image": "ghcr.io/example/zeta", "tag": "2.0"},
    ]});
    let (status, text) = edit(
        "kustomize-set-image",
        config,
        &[("base/kustomization.yaml", KUSTOMIZATION)],
        "base/kustomization.yaml",
    )
    .await;

    succeeded(&status);
    assert_eq!(
        text,
        replaced(
            KUSTOMIZATION,
            &[
                (
                    "    newTag: v1.4.2   # api\n",
                    "    newTag: v1.4.2   # api\n  - name: ghcr.io/example/cache\n    digest: sha256:0a1b\n",
                ),
                (
                    "    newTag: \"1.0\"\n",
                    "    newTag: \"1.0\"\n  - name: ghcr.io/example/zeta\n    newTag: \"2.0\"\n",
                ),
            ]
        )
    );
}

#[tokio::test]
async fn kustomize_set_image_replaces_an_entry_as_kargo_does_keeping_only_starred_fields() {
    let config = json!({"path": "base", "images": [
        {"image": "ghcr.io/example/web", "newName": "*", "digest": "sha256:ffff"},
    ]});
    let (status, text) = edit(
        "kustomize-set-image",
        config,
        &[("base/kustomization.yaml", KUSTOMIZATION)],
        "base/kustomization.yaml",
    )
    .await;

    succeeded(&status);
    assert_eq!(
        text,
        replaced(
            KUSTOMIZATION,
            &[(
                "    newName: registry.example.com/web\n    newTag: \"1.0\"\n",
                "    newName: registry.example.com/web\n    digest: sha256:ffff\n",
            )]
        )
    );
    assert_eq!(
        status["state"]["edit"]["commitMessage"],
        "Updated base to use new images\n\n\
         - ghcr.io/example/api:v1.4.2\n\
         - registry.example.com/web@sha256:ffff"
    );
}

#[tokio::test]
async fn kustomize_set_image_adds_the_images_field_when_the_file_has_none() {
    let file = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";
    let config = json!({"path": ".", "images": [{"image": "nginx", "tag": "1.21.0"}]});
    let (status, text) = edit(
        "kustomize-set-image",
        config,
        &[("kustomization.yaml", file)],
        "kustomization.yaml",
    )
    .await;

    succeeded(&status);
    assert_eq!(
        text,
        format!("{file}images:\n- name: nginx\n  newTag: 1.21.0\n")
    );
    assert_eq!(
        status["state"]["edit"]["commitMessage"],
        "Updated . to use new image\n\n- nginx:1.21.0"
    );
}

#[tokio::test]
async fn kustomize_set_image_names_the_entry_by_name_and_keeps_a_flow_list_flow() {
    let file = "kind: Kustomization\nimages: [{name: app, newTag: v1}]   # one\n";
    let config = json!({"path": ".", "images": [
        {"image": "ghcr.io/example/app", "name": "app", "newName": "ghcr.io/example/app", "tag": "v2"},
    ]});
    let (status, text) = edit(
        "kustomize-set-image",
        config,
        &[("Kustomization", file)],
        "Kustomization",
    )
    .await;

    succeeded(&status);
    assert_eq!(
        text,
        "kind: Kustomization\nimages: [{name: app, newName: ghcr.io/example/app, newTag: v2}]   # one\n"
    );
}

#[tokio::test]
async fn kustomize_set_image_needs_exactly_one_kustomization_file_in_the_directory() {
    let config = json!({"path": "base", "images": [{"image": "nginx", "tag": "1"}]});
    for (files, expected) in [
        (
            vec![("base/deployment.yaml", "kind: Deployment\n")],
            "config.path: no Kustomization file (kustomization.yaml, kustomization.yml, Kustomization) in \"base\"",
        ),
        (
            vec![
                ("base/kustomization.yaml", "kind: Kustomization\n"),
                ("base/Kustomization", "kind: Kustomization\n"),
            ],
            "config.path: more than one Kustomization file in \"base\": kustomization.yaml, Kustomization",
        ),
    ] {
        let (status, _) = edit("kustomize-set-image", config.clone(), &files, "x").await;
        errored_with(&status, expected);
    }
}

#[tokio::test]
async fn kustomize_set_image_refuses_bad_config_a_path_out_of_the_work_directory_and_a_large_file()
{
    let large = format!("kind: Kustomization\n{}", "# padding\n".repeat(1024 * 1024));
    let files = [
        ("base/kustomization.yaml", KUSTOMIZATION),
        ("large/kustomization.yaml", large.as_str()),
    ];
    for (config, expected) in [
        (
            json!({"path": "base", "images": [{"image": "nginx"}]}),
            "config.images[0]: exactly one of tag and digest must be set",
        ),
        (
            json!({"path": "base", "images": [{"image": "nginx", "tag": "1", "digest": "sha256:1"}]}),
            "config.images[0]: exactly one of tag and digest must be set",
        ),
        (
            json!({"path": "base", "images": [{"image": "", "tag": "1"}]}),
            "config.images[0].image: must not be empty",
        ),
        (
            json!({"path": "base", "images": [{"image": "nginx", "tag": "1", "useDigest": true}]}),
            "config.images[0].useDigest: unknown field `useDigest`",
        ),
        (
            json!({"path": "../base", "images": [{"image": "nginx", "tag": "1"}]}),
            "config.path: \"../base\" leaves the work directory",
        ),
        (
            json!({"path": "large", "images": [{"image": "nginx", "tag": "1"}]}),
            "config.path: \"large/kustomization.yaml\" is 10485780 bytes, over the 8388608-byte limit",
        ),
    ] {
        let (status, _) = edit("kustomize-set-image", config, &files, "x").await;
        errored_with(&status, expected);
    }
}

/// Freight from Warehouse `name` holding one image.
fn image_freight(warehouse: &str, repo: &str, tag: &str) -> Value {
    json!({"name": format!("{warehouse}-f"), "origin": {"kind": "Warehouse", "name": warehouse},
           "images": [{"repoURL": repo, "tag": tag, "digest": ""}]})
}

#[tokio::test]
async fn kustomize_set_image_without_images_sets_every_image_of_the_freight() {
    let plan = json!([
        {"uses": "kustomize-set-image", "as": "edit", "config": {"path": "./base"}},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = PlanRun::default()
        .file("base/kustomization.yaml", KUSTOMIZATION)
        .freight_collection(json!({
            "Warehouse/api": image_freight("api", "ghcr.io/example/api", "v2.0.0"),
            "Warehouse/worker": image_freight("worker", "ghcr.io/example/worker", "3.1"),
        }))
        .run(plan)
        .await;
    let text = std::fs::read_to_string(dir.join("base/kustomization.yaml")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    succeeded(&status);
    assert!(text.contains("newTag: v2.0.0   # api"), "{text}");
    assert!(
        text.contains("- name: ghcr.io/example/worker\n    newTag: \"3.1\""),
        "{text}"
    );
    assert!(
        text.contains("newName: registry.example.com/web\n    newTag: \"1.0\""),
        "{text}"
    );
}

#[tokio::test]
async fn kustomize_set_image_without_images_refuses_an_image_two_origins_provide() {
    let plan = json!([{"uses": "kustomize-set-image", "as": "edit", "config": {"path": "./base"}}]);
    let (status, _) = PlanRun::default()
        .file("base/kustomization.yaml", KUSTOMIZATION)
        .freight_collection(json!({
            "Warehouse/a": image_freight("a", "ghcr.io/example/api", "1"),
            "Warehouse/b": image_freight("b", "ghcr.io/example/api", "2"),
        }))
        .run(plan)
        .await;

    errored_with(
        &status,
        "config.images: manual configuration required due to ambiguous result",
    );
}

#[tokio::test]
async fn kustomize_set_image_refuses_images_that_are_not_a_list() {
    let file = "kind: Kustomization\nimages:\n  app: v1\n";
    let config = json!({"path": ".", "images": [{"image": "app", "tag": "v2"}]});
    let (status, _) = edit(
        "kustomize-set-image",
        config,
        &[("kustomization.yaml", file)],
        "x",
    )
    .await;

    errored_with(
        &status,
        "config.path: images in \"./kustomization.yaml\" is a mapping, not a list",
    );
}

#[tokio::test]
async fn kustomize_set_image_writes_tags_that_read_as_strings_and_leaves_other_entries_be() {
    let file = "images:\n- name: app\n  newTag: 1.0\n- name: bare\n- name: db\n  newTag: 2.0\n";
    let config = json!({"path": ".", "images": [
        {"image": "app", "tag": "1.0"},
        {"image": "bare", "newName": "registry.example.com/bare", "tag": "3"},
    ]});
    let (status, text) = edit(
        "kustomize-set-image",
        config,
        &[("kustomization.yaml", file)],
        "kustomization.yaml",
    )
    .await;

    succeeded(&status);
    assert_eq!(
        text,
        "images:\n- name: app\n  newTag: \"1.0\"\n- name: bare\n  newName: registry.example.com/bare\n  newTag: \"3\"\n- name: db\n  newTag: 2.0\n"
    );
}

const HELM_VALUES: &str = "\
# Web tier.
image:
  repository: ghcr.io/example/web   # where it comes from
  tag: \"1.0.0\"
sidecars:
  - name: proxy
    image: ghcr.io/example/proxy:0.9
";

#[tokio::test]
async fn helm_update_image_sets_values_from_the_freights_images_and_nothing_else() {
    let plan = json!([
        {"uses": "helm-update-image", "as": "edit", "config": {"path": "values.yaml", "images": [
            {"image": "ghcr.io/example/web", "key": "image.tag", "value": "Tag"},
            {"image": "ghcr.io/example/proxy", "key": "sidecars[0].image", "value": "ImageAndTag"},
        ]}},
        {"uses": "hold", "as": "hold"},
    ]);
    let (status, dir) = PlanRun::default()
        .file("values.yaml", HELM_VALUES)
        .freight_collection(json!({
            "Warehouse/web": image_freight("web", "ghcr.io/example/web", "1.1.0"),
            "Warehouse/proxy": image_freight("proxy", "ghcr.io/example/proxy", "1.0"),
        }))
        .run(plan)
        .await;
    let text = std::fs::read_to_string(dir.join("values.yaml")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    succeeded(&status);
    assert_eq!(
        text,
        HELM_VALUES
            .replace("tag: \"1.0.0\"", "tag: \"1.1.0\"")
            .replace("proxy:0.9", "proxy:1.0")
    );
    assert_eq!(
        status["state"]["edit"]["commitMessage"],
        "Updated values.yaml to use new images\n\n- ghcr.io/example/web:1.1.0\n- ghcr.io/example/proxy:1.0"
    );
}

#[tokio::test]
async fn helm_update_image_of_an_image_no_freight_has_names_the_field() {
    let plan = json!([{"uses": "helm-update-image", "as": "edit", "config": {"path": "values.yaml",
        "images": [{"image": "ghcr.io/example/nope", "key": "image.tag", "value": "Tag"}]}}]);
    let (status, _) = PlanRun::default()
        .file("values.yaml", HELM_VALUES)
        .freight_collection(
            json!({"Warehouse/web": image_freight("web", "ghcr.io/example/web", "1.1.0")}),
        )
        .run(plan)
        .await;

    errored_with(
        &status,
        "config.images[0].image: no Freight the Stage will hold has image ghcr.io/example/nope",
    );
}
