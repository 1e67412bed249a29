//! Kargo's functions and environment: `warehouse`, `commitFrom`,
//! `imageFrom`, `chartFrom`, the status functions and their scopes,
//! `semverParse`, the data functions (`configMap`, `secret`, their shared
//! variants, `stageMetadata`, `freightMetadata`), `ctx`, `outputs`,
//! `task.outputs`, `stepMetas`.

use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::{env, eval, message};
use crate::expr::template::evaluate_string;
use crate::expr::{Engine, Env, ExprError, FreightSnapshot, ProjectData, Scope, StepStatuses};

fn freight_env() -> Env {
    let mut env = env();
    env.freight = FreightSnapshot {
        freight: vec![
            json!({
                "origin": {"kind": "Warehouse", "name": "frontend"},
                "commits": [{"repoURL": "https://github.com/example/app.git", "id": "abc123", "tag": "v1"}],
                "images": [{"repoURL": "ghcr.io/example/app", "tag": "1.0.0", "digest": "sha256:aa"}],
                "charts": [
                    {"repoURL": "https://charts.example.com", "name": "app", "version": "0.1.0"},
                    {"repoURL": "oci://ghcr.io/example/oci-chart", "version": "0.2.0"},
                ],
                "artifacts": [
                    {"subscriptionName": "model", "version": "v7", "artifactType": "application/x-model",
                     "metadata": {"sha": "f00d", "size": 12}},
                    {"subscriptionName": "shared", "version": "1"},
                ],
            }),
            json!({
                "origin": {"kind": "Warehouse", "name": "backend"},
                "images": [{"repoURL": "ghcr.io/example/app", "tag": "2.0.0"}],
                "artifacts": [{"subscriptionName": "shared", "version": "2"}],
            }),
        ],
    };
    env
}

fn run(src: &str, env: &Env, scope: Scope) -> Result<Json, ExprError> {
    Engine::default().evaluate(src, env, scope)
}

fn ok(src: &str) -> Json {
    run(src, &freight_env(), Scope::Config).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str) -> String {
    match run(src, &freight_env(), Scope::Config) {
        Ok(v) => panic!("{src}: expected an error, got {v}"),
        Err(e) => message(&e),
    }
}

#[test]
fn warehouse_makes_a_freight_origin() {
    assert_eq!(
        ok("warehouse('frontend')"),
        json!({"kind": "Warehouse", "name": "frontend"})
    );
    assert_eq!(ok("warehouse('frontend').Name"), json!("frontend"));
}

#[test]
fn warehouse_needs_a_name() {
    assert_eq!(err("warehouse('')"), "name must not be empty");
}

#[test]
fn commit_from_matches_normalized_git_urls_and_reads_go_field_names() {
    assert_eq!(
        ok("commitFrom('https://github.com/Example/app').ID"),
        json!("abc123")
    );
    assert_eq!(
        ok("commitFrom('https://github.com/example/app.git').Tag"),
        json!("v1")
    );
}

#[test]
fn artifacts_also_read_with_json_field_names() {
    assert_eq!(
        ok("commitFrom('https://github.com/example/app').id"),
        json!("abc123")
    );
}

#[test]
fn absent_fields_of_an_artifact_are_empty_strings_as_in_go() {
    assert_eq!(
        ok("commitFrom('https://github.com/example/app').Branch"),
        json!("")
    );
}

#[test]
fn artifacts_marshal_with_json_names_and_omit_empty_fields() {
    assert_eq!(
        ok("commitFrom('https://github.com/example/app')"),
        json!({"repoURL": "https://github.com/example/app.git", "id": "abc123", "tag": "v1"})
    );
}

#[test]
fn commit_from_gives_nil_when_no_freight_has_the_repository() {
    assert_eq!(
        ok("commitFrom('https://github.com/example/other')"),
        json!(null)
    );
    assert_eq!(
        ok("commitFrom('https://github.com/example/other')?.ID ?? 'none'"),
        json!("none")
    );
}

#[test]
fn image_from_found_in_freight_from_two_origins_is_ambiguous() {
    assert!(err("imageFrom('ghcr.io/example/app')").contains("please provide a Freight origin"));
}

#[test]
fn image_from_with_an_origin_picks_that_freight() {
    assert_eq!(
        ok("imageFrom('ghcr.io/example/app', warehouse('backend')).Tag"),
        json!("2.0.0")
    );
    assert_eq!(
        ok("imageFrom('ghcr.io/example/app', {kind: 'Warehouse', name: 'frontend'}).Digest"),
        json!("sha256:aa")
    );
}

#[test]
fn image_from_with_an_origin_that_has_no_such_image_is_nil() {
    assert_eq!(
        ok("imageFrom('ghcr.io/example/app', warehouse('nope'))"),
        json!(null)
    );
}

#[test]
fn chart_from_matches_repository_and_chart_name() {
    assert_eq!(
        ok("chartFrom('https://charts.example.com', 'app').Version"),
        json!("0.1.0")
    );
    assert_eq!(
        ok("chartFrom('oci://ghcr.io/example/oci-chart').Version"),
        json!("0.2.0")
    );
    assert_eq!(ok("chartFrom('https://charts.example.com')"), json!(null));
}

#[test]
fn chart_from_takes_an_origin_second_or_third() {
    assert_eq!(
        ok("chartFrom('https://charts.example.com', 'app', warehouse('frontend')).Version"),
        json!("0.1.0")
    );
    assert_eq!(
        ok("chartFrom('oci://ghcr.io/example/oci-chart', warehouse('frontend')).Version"),
        json!("0.2.0")
    );
}

#[test]
fn artifact_from_finds_a_generic_artifact_by_its_subscription() {
    assert_eq!(ok("artifactFrom('model').Version"), json!("v7"));
    assert_eq!(
        ok("artifactFrom('model').ArtifactType"),
        json!("application/x-model")
    );
    assert_eq!(ok("artifactFrom('model').Metadata.sha"), json!("f00d"));
    assert_eq!(ok("artifactFrom('model').SubscriptionName"), json!("model"));
    assert_eq!(ok("artifactFrom('nope')"), json!(null));
}

#[test]
fn artifact_from_two_origins_needs_an_origin() {
    assert!(err("artifactFrom('shared')").contains("please provide a Freight origin"));
    assert_eq!(
        ok("artifactFrom('shared', warehouse('backend')).Version"),
        json!("2")
    );
    assert_eq!(
        ok("artifactFrom('shared', warehouse('backend')).Metadata"),
        json!({})
    );
}

#[test]
fn freight_functions_check_their_arguments() {
    assert_eq!(err("commitFrom()"), "expected 1-2 arguments, got 0");
    assert_eq!(
        err("commitFrom(1)"),
        "first argument must be string, got int"
    );
    assert_eq!(
        err("imageFrom('x', 'y')"),
        "second argument must be FreightOrigin, got string"
    );
}

#[test]
fn status_functions_are_not_in_scope_for_vars() {
    let e = run("success()", &env(), Scope::Vars).err();
    assert_eq!(
        e.map(|e| message(&e)).as_deref(),
        Some("unknown function success")
    );
}

#[test]
fn freight_functions_are_in_scope_for_vars() {
    assert_eq!(
        run("warehouse('x').Kind", &env(), Scope::Vars).ok(),
        Some(json!("Warehouse"))
    );
}

#[test]
fn success_failure_and_always_follow_earlier_step_statuses() {
    let mut env = env();
    env.statuses = StepStatuses::from_metadata(&[
        json!({"alias": "step-1", "status": "Succeeded"}),
        json!({"alias": "step-2", "status": "Errored", "continueOnError": true}),
    ]);
    assert_eq!(
        run("[success(), failure(), always()]", &env, Scope::Condition).ok(),
        Some(json!([true, false, true]))
    );
    env.statuses.steps[1].continue_on_error = false;
    assert_eq!(
        run("[success(), failure()]", &env, Scope::Condition).ok(),
        Some(json!([false, true]))
    );
}

#[test]
fn status_reads_a_step_in_the_current_task() {
    let mut env = env();
    env.ctx.step_alias = "deploy::verify".into();
    env.statuses = StepStatuses::from_metadata(&[
        json!({"alias": "update", "status": "Succeeded"}),
        json!({"alias": "deploy::update", "status": "Failed"}),
    ]);
    assert_eq!(
        run("status('update')", &env, Scope::Config).ok(),
        Some(json!("Failed"))
    );
    assert_eq!(
        run("status('missing')", &env, Scope::Config).ok(),
        Some(json!(""))
    );
}

#[test]
fn ctx_has_kargo_shape() {
    assert_eq!(
        eval(
            "[ctx.project, ctx.stage, ctx.promotion, ctx.targetFreight.name, ctx.targetFreight.alias, ctx.targetFreight.origin.name, ctx.meta.promotion.actor, ctx.meta.step.alias]"
        ),
        json!([
            "kargo-demo",
            "prod",
            "prod.01abc.f00d",
            "f00d",
            "wonky-wombat",
            "wh",
            "admin",
            "step-3"
        ])
    );
}

#[test]
fn outputs_are_read_by_step_alias() {
    assert_eq!(eval("outputs['step-1'].commit"), json!("abc123"));
}

#[test]
fn task_outputs_exist_only_inside_a_task() {
    assert_eq!(eval("task"), json!(null));
    let mut env = env();
    env.ctx.step_alias = "deploy::push".into();
    assert_eq!(
        run("task.outputs.build.image", &env, Scope::Config).ok(),
        Some(json!("nginx:1.0"))
    );
}

#[test]
fn promotion_level_vars_see_no_outputs() {
    let mut env = env();
    env.outputs = None;
    env.step_metas = None;
    assert_eq!(
        run("[outputs, stepMetas]", &env, Scope::Vars).ok(),
        Some(json!([null, null]))
    );
}

#[test]
fn step_metas_read_with_go_field_names() {
    assert_eq!(eval("stepMetas['step-1'].Status"), json!("Succeeded"));
    assert_eq!(eval("stepMetas['step-1'].ErrorCount"), json!(0.0));
}

#[test]
fn semver_diff_is_in_scope_everywhere() {
    for scope in [Scope::Vars, Scope::Condition, Scope::Config] {
        assert_eq!(
            run("semverDiff('1.2.3', '1.3.0')", &env(), scope).ok(),
            Some(json!("Minor"))
        );
    }
}

#[test]
fn semver_parse_gives_the_parts_of_a_version() {
    assert_eq!(
        eval(
            "let v = semverParse('v1.2.3-rc.1+b5'); [v.Major(), v.Minor(), v.Patch(), v.Prerelease(), v.Metadata(), v.Original()]"
        ),
        json!([1, 2, 3, "rc.1", "b5", "v1.2.3-rc.1+b5"])
    );
}

#[test]
fn semver_parse_coerces_short_versions() {
    assert_eq!(
        eval("[semverParse('1.2').String(), semverParse('01.02.03').String()]"),
        json!(["1.2.0", "1.2.3"])
    );
}

#[test]
fn a_version_writes_json_and_text_without_its_v() {
    assert_eq!(eval("semverParse('v1.2.3')"), json!("1.2.3"));
    assert_eq!(eval("string(semverParse('v1.2.3'))"), json!("1.2.3"));
}

#[test]
fn semver_parse_increments_as_masterminds_semver() {
    assert_eq!(
        eval(
            "let v = semverParse('v1.2.3'); [v.IncMajor().String(), v.IncMinor().String(), v.IncPatch().String(), semverParse('1.2.3-rc.1').IncPatch().String()]"
        ),
        json!(["2.0.0", "1.3.0", "1.2.4", "1.2.3"])
    );
}

#[test]
fn semver_parse_compares_versions() {
    assert_eq!(
        eval(
            "let v = semverParse('1.2.3'); [v.LessThan(semverParse('1.3.0')), v.Compare(semverParse('1.2.3-rc.1')), v.Equal(semverParse('v1.2.3+meta'))]"
        ),
        json!([true, 1, true])
    );
}

#[test]
fn an_incremented_version_has_only_gos_value_methods() {
    assert_eq!(
        err("semverParse('1.2.3').IncMinor().LessThan(semverParse('1.3.0'))"),
        "type semver.Version has no method LessThan"
    );
}

#[test]
fn semver_parse_refuses_what_is_not_a_version() {
    assert_eq!(
        err("semverParse('latest')"),
        "invalid semantic version: invalid semantic version"
    );
    assert_eq!(
        err("semverParse('1.2.3-01')"),
        "invalid semantic version: version segment starts with 0"
    );
}

fn data_env() -> Env {
    let mut data = ProjectData::default();
    let kv = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    data.config_maps.insert(
        "app".into(),
        kv(&[("repoURL", "https://example.com/app.git")]),
    );
    data.config_maps.insert("empty".into(), kv(&[]));
    data.secrets
        .insert("slack".into(), kv(&[("token", "xoxb-123-secret")]));
    data.shared_config_maps
        .insert("shared".into(), kv(&[("region", "eu-west-1")]));
    data.shared_secrets
        .insert("generic".into(), kv(&[("apiKey", "k-456")]));
    let meta = |v: Json| v.as_object().cloned().unwrap_or_default();
    data.stage_metadata.insert(
        "prod".into(),
        meta(json!({"tier": "gold", "config": {"timeout": 60}})),
    );
    data.stage_metadata.insert("dev".into(), meta(json!({})));
    data.freight_metadata
        .insert("f00d".into(), meta(json!({"category": "hotfix"})));
    let mut env = env();
    env.data = Arc::new(data);
    env
}

fn data_ok(src: &str) -> Json {
    run(src, &data_env(), Scope::Vars).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn data_err(src: &str) -> String {
    match run(src, &data_env(), Scope::Vars) {
        Ok(v) => panic!("{src}: expected an error, got {v}"),
        Err(e) => message(&e),
    }
}

#[test]
fn config_map_gives_the_data_of_the_config_map() {
    assert_eq!(
        data_ok("configMap('app').repoURL"),
        json!("https://example.com/app.git")
    );
}

#[test]
fn a_missing_key_of_a_config_map_is_an_empty_string() {
    assert_eq!(
        data_ok("[configMap('app').missing, configMap('app').missing ?? 'default']"),
        json!(["", ""])
    );
}

#[test]
fn get_gives_nil_for_a_missing_key_of_a_config_map() {
    assert_eq!(data_ok("get(configMap('app'), 'missing')"), json!(null));
}

#[test]
fn a_missing_config_map_is_an_empty_map() {
    assert_eq!(
        data_ok("[configMap('nope'), configMap('nope').x]"),
        json!([{}, ""])
    );
}

#[test]
fn a_config_map_without_data_is_a_nil_map() {
    assert_eq!(
        data_ok("[configMap('empty'), configMap('empty').x, len(configMap('empty'))]"),
        json!([null, "", 0])
    );
}

#[test]
fn config_map_needs_a_name() {
    assert_eq!(data_err("configMap('')"), "resource name may not be empty");
    assert_eq!(data_err("configMap(1)"), "argument must be string, got int");
}

#[test]
fn secret_gives_the_decoded_data_of_the_secret() {
    assert_eq!(
        evaluate_string(
            "Bearer ${{ secret('slack').token }}",
            &data_env(),
            Scope::Vars
        )
        .ok(),
        Some(json!("Bearer xoxb-123-secret"))
    );
    assert_eq!(data_ok("secret('nope')"), json!({}));
}

#[test]
fn shared_functions_read_the_shared_namespace() {
    assert_eq!(
        data_ok(
            "[sharedConfigMap('shared').region, sharedSecret('generic').apiKey, sharedConfigMap('app')]"
        ),
        json!(["eu-west-1", "k-456", {}])
    );
}

#[test]
fn secret_values_never_appear_in_error_messages() {
    let message = data_err("int(secret('slack').token)");
    assert_eq!(message, "invalid operation: int(***)");
    let message = data_err("date(upper(secret('slack').token))");
    assert!(
        !message.to_lowercase().contains("xoxb-123-secret"),
        "{message}"
    );
}

#[test]
fn project_data_debug_output_hides_secret_values() {
    let shown = format!("{:?}", data_env().data);
    assert!(shown.contains("token"));
    assert!(!shown.contains("xoxb-123-secret"));
}

#[test]
fn stage_metadata_gives_the_stages_metadata() {
    assert_eq!(
        data_ok("[stageMetadata('prod').tier, stageMetadata('prod')?.config?.timeout ?? 300]"),
        json!(["gold", 60.0])
    );
}

#[test]
fn missing_stage_metadata_is_nil() {
    assert_eq!(
        data_ok(
            "[stageMetadata('nope'), stageMetadata('dev'), stageMetadata('nope')?.tier ?? 'default']"
        ),
        json!([null, null, "default"])
    );
    assert_eq!(
        data_err("stageMetadata('nope').tier"),
        "cannot fetch tier from <nil>"
    );
}

#[test]
fn metadata_functions_need_a_name() {
    assert_eq!(
        data_err("stageMetadata('')"),
        "stage name must not be empty"
    );
    assert_eq!(
        data_err("freightMetadata('')"),
        "freight ref name must not be empty"
    );
}

#[test]
fn freight_metadata_gives_the_freights_metadata() {
    assert_eq!(
        data_ok("[freightMetadata('f00d').category, freightMetadata('nope')]"),
        json!(["hotfix", null])
    );
}
