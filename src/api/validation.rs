//! Admission-time validation: the OpenAPI patterns and CEL rules
//! (`x-kubernetes-validations`) that the CRDs carry, so that malformed objects
//! are rejected by the API server itself, with no webhook (the earliest point bad input can be refused).
//!
//! The rules that depend on where a step list appears (a Stage template or a
//! Promotion may reference tasks, a task may not; the frozen plan in a
//! Promotion's status carries generated aliases such as `deploy::update`) are
//! attached to the step *lists* by the schema transforms below, not to
//! [`PromotionStep`](super::PromotionStep) itself, so the status plan stays
//! unconstrained.
//!
//! Every message is a constant so that tests and fixtures can refer to it.
//! The API server prefixes each message with the path of the offending field,
//! for example `spec.promotionTemplate.spec.steps[1].retry: Invalid value: ...`.

use schemars::Schema;
use serde_json::{Value, json};

/// A Kubernetes object name (DNS-1123 subdomain), as Kargo validates Stage,
/// Freight and task names.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The name of an expression variable (as Kargo: `^[a-zA-Z_]\w*$`).
pub const VAR_NAME_PATTERN: &str = r"^[a-zA-Z_]\w*$";

/// A Go-style duration as `time.ParseDuration` reads it (`90s`, `5m`,
/// `1h30m`, `1.5h`, `0`), without a sign. Numbers are bounded so that every
/// accepted value fits [`kube::core::Duration`] without overflow.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]{1,10}(\.[0-9]{1,9})?(ns|us|µs|μs|ms|s|m|h))+)$";

/// The longest duration string accepted.
pub const DURATION_MAX_LENGTH: u32 = 64;

/// Reads an optional Go-style duration, refusing one that does not match
/// [`DURATION_PATTERN`] within [`DURATION_MAX_LENGTH`]: `kube::core::Duration`'s
/// own parser panics on a number too large, and these fields come from the
/// API server (written by anyone allowed to).
pub fn bounded_duration<'de, D>(deserializer: D) -> Result<Option<kube::core::Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    use serde::de::Error;
    static PATTERN: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(DURATION_PATTERN).ok());
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let fits = text.len() <= DURATION_MAX_LENGTH as usize
        && PATTERN.as_ref().is_some_and(|p| p.is_match(&text));
    if !fits {
        return Err(D::Error::custom(format!(
            "{text:?} is not a duration such as 90s, 5m or 1h30m with numbers of at most 10 digits"
        )));
    }
    text.parse().map(Some).map_err(D::Error::custom)
}

/// The longest duration [`go_duration_text`] writes: 9,999,999,999 hours,
/// the most hours [`DURATION_PATTERN`] allows in one number.
const LONGEST_WRITTEN_HOURS: u64 = 9_999_999_999;

/// Writes an optional duration as Go writes it (`1h30m0s`, `1.5s`, `0s`),
/// which [`DURATION_PATTERN`] accepts: `kube::core::Duration` writes whole
/// seconds (`35999999996400s` for `9999999999h`), more digits than the
/// pattern allows, so the API server would refuse a Promotion's status
/// holding a plan with a long retry timeout read from a Stage. Durations
/// over 9,999,999,999 hours (over a million years, which `9999999999.9h`
/// reaches) are written as that many hours.
pub fn serialize_go_duration<S>(
    duration: &Option<kube::core::Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
{
    match duration {
        Some(duration) => serializer.serialize_str(&go_duration_text((*duration).into())),
        None => serializer.serialize_none(),
    }
}

/// `d` as Go's `time.Duration.String()` writes it, without its sign, at
/// most [`LONGEST_WRITTEN_HOURS`].
pub fn go_duration_text(d: std::time::Duration) -> String {
    let hours = d.as_secs() / 3600;
    if hours > LONGEST_WRITTEN_HOURS {
        return format!("{LONGEST_WRITTEN_HOURS}h0m0s");
    }
    let (minutes, seconds) = ((d.as_secs() % 3600) / 60, d.as_secs() % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    text.push_str(&seconds.to_string());
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('s');
    text
}

/// A Freight alias: usable as a label value (`kargo.akuity.io/alias` in Kargo).
pub const FREIGHT_ALIAS_PATTERN: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$";

/// The format of a user-written step alias: a letter or `_`, then letters,
/// digits, `_` and `-`. `::` is reserved for the aliases of inflated task
/// steps (`<taskAlias>::<stepAlias>`).
pub const STEP_ALIAS_PATTERN: &str = r"^[a-zA-Z_][a-zA-Z0-9_-]*$";

/// Aliases assigned automatically to steps without `as` (Kargo's
/// `ReservedStepAliasRegex`).
pub const RESERVED_STEP_ALIAS_PATTERN: &str = r"^(step|task)-[0-9]+$";

/// The longest step alias a user may write.
pub const STEP_ALIAS_MAX_LENGTH: u32 = 63;

/// The most steps a Stage template, a Promotion or a task may list. It bounds
/// the cost of the alias-uniqueness rule.
pub const MAX_STEPS: u32 = 100;

/// The most Freight requests a Stage may list.
pub const MAX_REQUESTED_FREIGHT: u32 = 50;

/// The most upstream Stages one Freight request may name.
pub const MAX_UPSTREAM_STAGES: u32 = 50;

/// The most artifacts of one kind (commits, images, charts, artifacts) a
/// Freight may carry.
pub const MAX_FREIGHT_ARTIFACTS: u32 = 100;

/// The most webhook receivers a ProjectConfig may list. It bounds the cost
/// of the one-sender rule, which the API server otherwise estimates over
/// the largest list a request could hold and rejects.
pub const MAX_WEBHOOK_RECEIVERS: u32 = 100;

// Messages. Each names the field it is about; the API server adds the path.

/// A Stage-template or Promotion step sets both or neither of `uses`/`task`.
pub const MSG_USES_XOR_TASK: &str = "step must have exactly one of uses or task set";
/// A step referencing a task sets `continueOnError: true`.
pub const MSG_TASK_STEP_CONTINUE_ON_ERROR: &str =
    "step referencing a task cannot set continueOnError";
/// A step referencing a task sets `retry`.
pub const MSG_TASK_STEP_RETRY: &str = "step referencing a task cannot set retry";
/// A step referencing a task sets `if`.
pub const MSG_TASK_STEP_IF: &str = "step referencing a task cannot have an 'if' condition";
/// A step referencing a task sets `config`.
pub const MSG_TASK_STEP_CONFIG: &str = "step referencing a task cannot have a config";
/// A step of a PromotionTask or ClusterPromotionTask references a task or
/// lacks `uses` (Kargo's message).
pub const MSG_TASK_STEP_NESTED: &str =
    "PromotionTask step must have uses set and must not reference another task";
/// A step alias has the wrong format.
pub const MSG_ALIAS_FORMAT: &str = "step alias (as) must start with a letter or '_' and contain \
     only letters, digits, '_' and '-' ('::' is reserved for steps inflated from tasks)";
/// A step alias matches `^(step|task)-\d+$`.
pub const MSG_ALIAS_RESERVED: &str = "step alias (as) is reserved: aliases of the form step-N \
     and task-N are assigned automatically to steps without one";
/// Two steps of one list share an alias.
pub const MSG_ALIAS_DUPLICATE: &str = "step aliases (as) must be unique within a list of steps";
/// A Promotion's spec changed.
pub const MSG_SPEC_IMMUTABLE: &str = "spec is immutable";
/// A Stage requests Freight of one origin twice.
pub const MSG_ORIGIN_DUPLICATE: &str =
    "requestedFreight must not request Freight of the same origin more than once";
/// A Freight request names no source.
pub const MSG_SOURCES_EMPTY: &str =
    "sources must set direct: true or name at least one upstream Stage in stages";
/// `MatchUpstream` with `direct: true`.
pub const MSG_MATCH_UPSTREAM_DIRECT: &str = "selection policy 'MatchUpstream' cannot be used when \
     accepting Freight directly from its origin (sources.direct)";
/// `MatchUpstream` without exactly one upstream Stage.
pub const MSG_MATCH_UPSTREAM_STAGES: &str =
    "selection policy 'MatchUpstream' requires exactly one upstream Stage in sources.stages";
/// A Freight with no artifact (Kargo's message).
pub const MSG_FREIGHT_EMPTY: &str = "freight must contain at least one commit, image, or chart";
/// A Freight's origin or artifacts changed (followed by `: <field> cannot
/// be changed`).
pub const MSG_FREIGHT_IMMUTABLE: &str = "Freight is immutable";

/// One `x-kubernetes-validations` entry.
fn rule(rule: &str, message: &str) -> Value {
    json!({ "rule": rule, "message": message })
}

/// One `x-kubernetes-validations` entry reported at `field_path` (relative to
/// the object the rule is on, e.g. `.retry`).
fn rule_at(rule: &str, message: &str, field_path: &str) -> Value {
    json!({ "rule": rule, "message": message, "fieldPath": field_path })
}

/// Appends rules to a schema's `x-kubernetes-validations`.
fn add_rules(schema: &mut Schema, rules: impl IntoIterator<Item = Value>) {
    let object = schema.ensure_object();
    let entry = object
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = entry {
        list.extend(rules);
    }
}

/// Applies `f` to the `items` schema of an array schema.
fn with_items(schema: &mut Schema, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    if let Some(Value::Object(items)) = schema.get_mut("items") {
        f(items);
    }
}

/// The constraints on the alias property of a user-written step.
fn constrain_alias(items: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Object(alias)) = items.get_mut("properties").and_then(|p| p.get_mut("as")) {
        alias.insert("minLength".into(), 1.into());
        alias.insert("maxLength".into(), STEP_ALIAS_MAX_LENGTH.into());
        alias.insert(
            "x-kubernetes-validations".into(),
            json!([
                rule(
                    &format!("self.matches('{STEP_ALIAS_PATTERN}')"),
                    MSG_ALIAS_FORMAT
                ),
                rule(
                    &format!("!self.matches('{RESERVED_STEP_ALIAS_PATTERN}')"),
                    MSG_ALIAS_RESERVED
                ),
            ]),
        );
    }
}

/// Appends rules to the `x-kubernetes-validations` of a step item schema.
fn add_item_rules(items: &mut serde_json::Map<String, Value>, rules: Vec<Value>) {
    let entry = items
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = entry {
        list.extend(rules);
    }
}

/// The rules every user-written step list carries: bounded length, at least
/// one step, unique aliases.
fn constrain_step_list(schema: &mut Schema) {
    schema.insert("minItems".into(), 1.into());
    schema.insert("maxItems".into(), MAX_STEPS.into());
    // `as` is a CEL reserved word: the API server exposes it as `__as__`.
    add_rules(
        schema,
        [rule(
            "self.all(s, !has(s.__as__) || self.exists_one(t, has(t.__as__) && t.__as__ == s.__as__))",
            MSG_ALIAS_DUPLICATE,
        )],
    );
}

/// Schema transform for the steps of a Stage's `promotionTemplate` and of a
/// Promotion's `spec.steps`: each step is a step runner (`uses`) or a task
/// reference (`task`), and a task reference carries nothing but `as` and
/// `vars`.
pub fn template_steps(schema: &mut Schema) {
    constrain_step_list(schema);
    with_items(schema, |items| {
        constrain_alias(items);
        // `if` is a CEL reserved word: the API server exposes it as `__if__`.
        add_item_rules(
            items,
            vec![
                rule("has(self.uses) != has(self.task)", MSG_USES_XOR_TASK),
                rule_at(
                    "!has(self.task) || !has(self.continueOnError) || !self.continueOnError",
                    MSG_TASK_STEP_CONTINUE_ON_ERROR,
                    ".continueOnError",
                ),
                rule_at(
                    "!has(self.task) || !has(self.retry)",
                    MSG_TASK_STEP_RETRY,
                    ".retry",
                ),
                rule_at(
                    "!has(self.task) || !has(self.__if__)",
                    MSG_TASK_STEP_IF,
                    ".if",
                ),
                rule_at(
                    "!has(self.task) || !has(self.config)",
                    MSG_TASK_STEP_CONFIG,
                    ".config",
                ),
            ],
        );
    });
}

/// Schema transform for the steps of a PromotionTask or ClusterPromotionTask:
/// every step is a step runner; tasks do not nest.
pub fn task_steps(schema: &mut Schema) {
    constrain_step_list(schema);
    with_items(schema, |items| {
        constrain_alias(items);
        add_item_rules(
            items,
            vec![rule(
                "has(self.uses) && !has(self.task)",
                MSG_TASK_STEP_NESTED,
            )],
        );
    });
}

/// Schema transform for a Promotion's `spec`: it never changes once created,
/// so a Promotion is a snapshot of what was asked.
pub fn immutable_spec(schema: &mut Schema) {
    add_rules(schema, [rule("self == oldSelf", MSG_SPEC_IMMUTABLE)]);
}

/// Schema transform for a Stage's `requestedFreight`: each origin at most once.
pub fn requested_freight(schema: &mut Schema) {
    add_rules(
        schema,
        [rule(
            "self.all(r, self.exists_one(o, o.origin.kind == r.origin.kind && o.origin.name == r.origin.name))",
            MSG_ORIGIN_DUPLICATE,
        )],
    );
}

/// Schema transform for a Freight request's `sources`.
pub fn freight_sources(schema: &mut Schema) {
    const DIRECT: &str = "(has(self.direct) && self.direct)";
    const MATCH_UPSTREAM: &str = "(has(self.autoPromotionOptions) && \
         has(self.autoPromotionOptions.selectionPolicy) && \
         self.autoPromotionOptions.selectionPolicy == 'MatchUpstream')";
    add_rules(
        schema,
        [
            rule(
                &format!("{DIRECT} || (has(self.stages) && size(self.stages) > 0)"),
                MSG_SOURCES_EMPTY,
            ),
            rule_at(
                &format!("!{MATCH_UPSTREAM} || !{DIRECT}"),
                MSG_MATCH_UPSTREAM_DIRECT,
                ".autoPromotionOptions.selectionPolicy",
            ),
            rule_at(
                &format!("!{MATCH_UPSTREAM} || (has(self.stages) && size(self.stages) == 1)"),
                MSG_MATCH_UPSTREAM_STAGES,
                ".autoPromotionOptions.selectionPolicy",
            ),
        ],
    );
}

/// The Freight fields that hold artifacts.
const FREIGHT_ARTIFACT_FIELDS: [&str; 4] = ["commits", "images", "charts", "artifacts"];

/// Schema transform for the top level of a Freight: at least one artifact,
/// and origin and artifacts never change (one rule per field, so the error
/// names it).
pub fn freight(schema: &mut Schema) {
    let non_empty = FREIGHT_ARTIFACT_FIELDS
        .iter()
        .map(|f| format!("(has(self.{f}) && size(self.{f}) > 0)"))
        .collect::<Vec<_>>()
        .join(" || ");
    let mut rules = vec![
        rule(&non_empty, MSG_FREIGHT_EMPTY),
        rule_at(
            "self.origin == oldSelf.origin",
            &format!("{MSG_FREIGHT_IMMUTABLE}: origin cannot be changed"),
            ".origin",
        ),
    ];
    rules.extend(FREIGHT_ARTIFACT_FIELDS.iter().map(|f| {
        rule_at(
            &format!("(has(self.{f}) ? self.{f} : []) == (has(oldSelf.{f}) ? oldSelf.{f} : [])"),
            &format!("{MSG_FREIGHT_IMMUTABLE}: {f} cannot be changed"),
            &format!(".{f}"),
        )
    }));
    add_rules(schema, rules);
}

/// A webhook receiver names exactly one sender.
pub const MSG_ONE_WEBHOOK_SENDER: &str = "webhook receiver must set exactly one of github, gitlab, gitea, bitbucket, dockerhub, harbor, quay, artifactory, azure, distribution or generic";

/// Schema transform for a webhook receiver: exactly one sender.
pub fn one_webhook_sender(schema: &mut Schema) {
    add_rules(
        schema,
        [rule(
            "(has(self.github) ? 1 : 0) + (has(self.gitlab) ? 1 : 0) + (has(self.gitea) ? 1 : 0) \
             + (has(self.bitbucket) ? 1 : 0) + (has(self.dockerhub) ? 1 : 0) + (has(self.harbor) ? 1 : 0) \
             + (has(self.quay) ? 1 : 0) + (has(self.artifactory) ? 1 : 0) + (has(self.azure) ? 1 : 0) \
             + (has(self.distribution) ? 1 : 0) + (has(self.generic) ? 1 : 0) == 1",
            MSG_ONE_WEBHOOK_SENDER,
        )],
    );
}

/// Schema transform for a `conditions` list: a map keyed by `type`, as
/// `metav1.Condition` lists are everywhere in Kubernetes.
pub fn conditions(schema: &mut Schema) {
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
}

/// A time read from the API server without failing: the API server takes any RFC 3339 time up to
/// 9999-12-31T23:59:59Z, but the last hours of year 9999 are past what a
/// timestamp here can hold. Failing would make the whole Application
/// object unreadable, and with it the list of every object of its kind
/// the controller watches (a Freight's `discoveredAt` is anyone's to
/// write; an Application's times are anyone's who may edit it). Such a time reads as the latest one there is; one that is not
/// a time at all reads as absent.
pub fn saturating_time<'de, D>(
    deserializer: D,
) -> Result<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(text) = <Option<serde_json::Value> as serde::Deserialize>::deserialize(deserializer)?
    else {
        return Ok(None);
    };
    let Some(text) = text.as_str() else {
        return Ok(None);
    };
    Ok(match text.parse::<jiff::Timestamp>() {
        Ok(at) => Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)),
        Err(_) if text.starts_with("9999-") => Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::MAX),
        ),
        Err(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_pattern_matches_what_kube_parses() {
        let re = matcher(DURATION_PATTERN);
        for ok in [
            "0", "5m", "90s", "1h30m", "1.5h", "100ms", "10us", "10µs", "2h0m0s",
        ] {
            assert!(re(ok), "{ok} should match");
            assert!(
                ok.parse::<kube::core::Duration>().is_ok(),
                "{ok} should parse"
            );
        }
        for bad in [
            "",
            "5",
            "5 m",
            "-5m",
            "5x",
            "m",
            "1.h",
            "99999999999h",
            "5m ",
        ] {
            assert!(!re(bad), "{bad:?} should not match");
        }
    }

    #[test]
    fn the_alias_patterns_agree_with_inflation() {
        let format = matcher(STEP_ALIAS_PATTERN);
        let reserved = matcher(RESERVED_STEP_ALIAS_PATTERN);
        for alias in ["step-1", "task-12"] {
            assert!(reserved(alias));
            assert!(crate::inflate::is_reserved_alias(alias));
        }
        for alias in ["step-x", "steps-1", "my-step-1", "update"] {
            assert!(!reserved(alias));
            assert!(!crate::inflate::is_reserved_alias(alias));
        }
        for alias in ["update", "update-image", "_x", "Deploy_2"] {
            assert!(format(alias), "{alias}");
        }
        for alias in ["deploy::update", "1st", "-x", "a b", "a.b", ""] {
            assert!(!format(alias), "{alias}");
        }
    }

    /// Kubernetes evaluates OpenAPI patterns and CEL `matches` with Go's RE2;
    /// the `regex` crate has the same syntax and semantics for these patterns.
    fn matcher(pattern: &'static str) -> impl Fn(&str) -> bool {
        let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        move |s| re.is_match(s)
    }
}
