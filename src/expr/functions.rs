//! Kargo's expression functions (`pkg/expressions/json_templates.go`,
//! `pkg/expressions/function/functions.go`), over the snapshots in
//! [`Env`]: `quote`, `unsafeQuote`, `asJSON`, `asYAML` (always); `warehouse`,
//! `commitFrom`, `imageFrom`, `chartFrom`, `semverDiff`, `semverParse`
//! (always); `configMap`, `secret`, `sharedConfigMap`, `sharedSecret`,
//! `stageMetadata`, `freightMetadata` (always, over [`Env::data`]);
//! `success`, `failure`, `always`, `status` (in `if` and `config` only).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value as Json;

use super::budget::Budget;
use super::env::{DataByName, Env, MetadataByName, Scope};
use super::error::{Fault, Res};
use super::eval::Host;
use super::golang;
use super::gotime;
use super::semver;
use super::value::{self, StructDef, Value, Zero};

/// Kargo's functions for one evaluation.
pub(crate) struct KargoFunctions<'e> {
    pub env: &'e Env,
    pub scope: Scope,
    /// What `now()` returns.
    pub now: Timestamp,
}

const FREIGHT_ORIGIN: StructDef = StructDef {
    type_name: "v1alpha1.FreightOrigin",
    fields: &[("kind", Zero::Str, false), ("name", Zero::Str, false)],
};

const GIT_COMMIT: StructDef = StructDef {
    type_name: "v1alpha1.GitCommit",
    fields: &[
        ("repoURL", Zero::Str, true),
        ("id", Zero::Str, true),
        ("branch", Zero::Str, true),
        ("tag", Zero::Str, true),
        ("message", Zero::Str, true),
        ("author", Zero::Str, true),
        ("committer", Zero::Str, true),
        ("subscriptionName", Zero::Str, true),
    ],
};

const IMAGE: StructDef = StructDef {
    type_name: "v1alpha1.Image",
    fields: &[
        ("repoURL", Zero::Str, true),
        ("tag", Zero::Str, true),
        ("digest", Zero::Str, true),
        ("annotations", Zero::Nil, true),
        ("subscriptionName", Zero::Str, true),
    ],
};

const CHART: StructDef = StructDef {
    type_name: "v1alpha1.Chart",
    fields: &[
        ("repoURL", Zero::Str, true),
        ("name", Zero::Str, true),
        ("version", Zero::Str, true),
        ("subscriptionName", Zero::Str, true),
    ],
};

/// What `artifactFrom` gives: Kargo's struct has no JSON tags, so its
/// JSON names are its Go names.
const ARTIFACT: StructDef = StructDef {
    type_name: "function.expressionFriendlyArtifactReference",
    fields: &[
        ("ArtifactType", Zero::Str, false),
        ("SubscriptionName", Zero::Str, false),
        ("Version", Zero::Str, false),
        ("Metadata", Zero::Nil, false),
    ],
};

impl Host for KargoFunctions<'_> {
    fn call(&self, name: &str, args: &[Value], budget: &mut Budget) -> Option<Res<Value>> {
        let result = match name {
            "quote" => one_arg(name, args).and_then(|v| quote(v, budget)),
            "unsafeQuote" => one_arg(name, args).and_then(|v| unsafe_quote(v, budget)),
            "asJSON" => one_arg(name, args).and_then(|v| {
                let json = value::marshal(v, true, budget)?;
                Ok(Value::string(format!("\"{json}\n\"")))
            }),
            "asYAML" => one_arg(name, args).and_then(|v| {
                let yaml = to_yaml(v, budget)?;
                Ok(Value::string(format!("\"{yaml}\"")))
            }),
            "warehouse" => warehouse(args),
            "commitFrom" => self.commit_from(args),
            "imageFrom" => self.image_from(args),
            "chartFrom" => self.chart_from(args),
            "artifactFrom" => self.artifact_from(args),
            "semverDiff" => semver_diff(args),
            "semverParse" => semver_parse(args, budget),
            "configMap" => data_map(args, &self.env.data.config_maps, true, budget),
            "secret" => data_map(args, &self.env.data.secrets, false, budget),
            "sharedConfigMap" => data_map(args, &self.env.data.shared_config_maps, true, budget),
            "sharedSecret" => data_map(args, &self.env.data.shared_secrets, false, budget),
            "stageMetadata" => metadata(
                args,
                &self.env.data.stage_metadata,
                "argument must be string",
                "stage name must not be empty",
                budget,
            ),
            "freightMetadata" => metadata(
                args,
                &self.env.data.freight_metadata,
                "first argument must be string",
                "freight ref name must not be empty",
                budget,
            ),
            "success" | "failure" | "always" | "status" if self.scope.has_status_functions() => {
                self.status_function(name, args)
            }
            "request.header" | "request.headers" | "request.params"
                if self.scope == Scope::Webhook =>
            {
                self.request_function(name, args)
            }
            "normalizeGit" | "normalizeImage" | "normalizeChart"
                if self.scope == Scope::Webhook =>
            {
                string_arg(name, args).map(|url| {
                    Value::string(match name {
                        "normalizeGit" => crate::urls::normalize_git(&url),
                        "normalizeImage" => crate::warehouse::freight_name::normalize_image(&url),
                        _ => crate::warehouse::freight_name::normalize_chart(&url),
                    })
                })
            }
            _ => return None,
        };
        Some(result)
    }

    fn has_member_function(&self, qualified: &str) -> bool {
        self.scope == Scope::Webhook
            && matches!(
                qualified,
                "request.header" | "request.headers" | "request.params"
            )
    }

    fn now(&self) -> Timestamp {
        self.now
    }
}

/// `configMap(name)`, `secret(name)` and their shared variants: the
/// object's data (a Go `map[string]string`), an empty map when there is no
/// such object. A ConfigMap without data gives Go's nil map (`configmap`),
/// a Secret an empty one. An empty name is an error, as the API server's.
fn data_map(
    args: &[Value],
    objects: &DataByName,
    configmap: bool,
    budget: &mut Budget,
) -> Res<Value> {
    let [arg] = args else {
        return Err(Fault::msg(format!(
            "expected 1 argument, got {}",
            args.len()
        )));
    };
    let Value::Str(name) = arg else {
        return Err(Fault::msg(format!(
            "argument must be string, got {}",
            arg.go_type()
        )));
    };
    if name.is_empty() {
        return Err(Fault::msg("resource name may not be empty"));
    }
    let Some(data) = objects.get(name.as_str()) else {
        budget.alloc_map(0, 0)?;
        return Ok(Value::string_map(&BTreeMap::new(), false));
    };
    let bytes: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    budget.alloc_map(data.len(), bytes)?;
    Ok(Value::string_map(data, configmap))
}

/// `stageMetadata(name)`, `freightMetadata(name)`: the object's metadata
/// (a Go `map[string]any`), nil when there is no such object or it has no
/// metadata.
fn metadata(
    args: &[Value],
    objects: &MetadataByName,
    not_string: &str,
    empty_name: &str,
    budget: &mut Budget,
) -> Res<Value> {
    let [arg] = args else {
        return Err(Fault::msg(format!(
            "expected 1 argument, got {}",
            args.len()
        )));
    };
    let Value::Str(name) = arg else {
        return Err(Fault::msg(format!("{not_string}, got {}", arg.go_type())));
    };
    if name.is_empty() {
        return Err(Fault::msg(empty_name.to_string()));
    }
    match objects.get(name.as_str()) {
        // Written deeper than the controller reads, it was cut when read.
        Some(fields) if fields.values().any(crate::api::free_form::too_deep) => {
            Err(Fault::msg(format!(
                "metadata of {name:?} {}",
                crate::api::free_form::too_deep_message()
            )))
        }
        Some(fields) if !fields.is_empty() => {
            let json = Json::Object(fields.clone());
            // Converting walks the whole value: charge it like parsing.
            let size = json.to_string().len();
            budget.alloc((size as u64).saturating_mul(4))?;
            budget.work(size)?;
            value::from_json(&json).map_err(Fault::msg)
        }
        _ => Ok(Value::Nil),
    }
}

/// `semverParse(s)`: the version, or Kargo's error when `s` is not one.
fn semver_parse(args: &[Value], budget: &mut Budget) -> Res<Value> {
    let [arg] = args else {
        return Err(Fault::msg(format!(
            "expected 1 argument, got {}",
            args.len()
        )));
    };
    let Value::Str(text) = arg else {
        return Err(Fault::msg(format!(
            "argument must be string, got {}",
            arg.go_type()
        )));
    };
    budget.step(32 + text.len() as u64)?;
    semver::parse(text)
        .map(|v| Value::Version(Arc::new(v)))
        .map_err(|e| Fault::msg(format!("invalid semantic version: {e}")))
}

fn string_arg(name: &str, args: &[Value]) -> Res<String> {
    match one_arg(name, args)? {
        Value::Str(s) => Ok(s.to_string()),
        other => Err(Fault::msg(format!(
            "{name}: argument must be a string, not {}",
            other.go_type()
        ))),
    }
}

impl KargoFunctions<'_> {
    /// A webhook request's `header(name)` (its first value, `""` when
    /// absent), `headers(name)` (every value) or `params(name)` (a query
    /// parameter): read from the document's `request.headers` (lower-cased
    /// names, lists of values) and `request.query`.
    fn request_function(&self, name: &str, args: &[Value]) -> Res<Value> {
        let short = name.trim_start_matches("request.");
        let key = string_arg(short, args)?;
        let request = self
            .env
            .document
            .as_ref()
            .and_then(|d| d.fields.get("request"));
        let (table, key) = if short == "params" {
            ("query", key)
        } else {
            ("headers", key.to_ascii_lowercase())
        };
        let values: Vec<String> = request
            .and_then(|r| r.get(table))
            .and_then(|t| t.get(&key))
            .and_then(serde_json::Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if short == "headers" {
            value::from_json(&serde_json::json!(values)).map_err(Fault::msg)
        } else {
            Ok(Value::string(values.into_iter().next().unwrap_or_default()))
        }
    }
}

fn one_arg<'a>(name: &str, args: &'a [Value]) -> Res<&'a Value> {
    match args {
        [v] => Ok(v),
        _ => Err(Fault::msg(format!(
            "{name}: expected 1 argument, got {}",
            args.len()
        ))),
    }
}

/// `quote(v)`: a string in Go's `%q` form, anything else as
/// [`unsafe_quote`]. The template then strips the outer quotes and keeps a
/// string, so `${{ quote(42) }}` is the string `42`.
fn quote(v: &Value, budget: &mut Budget) -> Res<Value> {
    match v {
        Value::Str(s) => {
            let q = golang::quote(s);
            budget.alloc_str(q.len())?;
            Ok(Value::string(q))
        }
        other => unsafe_quote(other, budget),
    }
}

/// `unsafeQuote(v)`: the JSON of `v` wrapped in quotes.
fn unsafe_quote(v: &Value, budget: &mut Budget) -> Res<Value> {
    let json = value::marshal(v, false, budget)?;
    Ok(Value::string(format!("\"{json}\"")))
}

/// `warehouse(name)`: a Freight origin of kind Warehouse.
fn warehouse(args: &[Value]) -> Res<Value> {
    let [arg] = args else {
        return Err(Fault::msg(format!(
            "expected 1 argument, got {}",
            args.len()
        )));
    };
    let Value::Str(name) = arg else {
        return Err(Fault::msg(format!(
            "argument must be string, got {}",
            arg.go_type()
        )));
    };
    if name.is_empty() {
        return Err(Fault::msg("name must not be empty"));
    }
    let mut obj = serde_json::Map::new();
    obj.insert("kind".into(), Json::from("Warehouse"));
    obj.insert("name".into(), Json::from(name.to_string()));
    FREIGHT_ORIGIN.build(&obj).map_err(Fault::msg)
}

/// A Freight origin passed to a function: `warehouse(...)` or a map with
/// `kind` and `name`.
fn origin_arg(v: &Value, position: &str) -> Res<(String, String)> {
    let field = |name: &str| -> Option<String> {
        let f = match v {
            Value::Struct(s) => s.field(name)?.clone(),
            Value::Map(m) => m.entries.get(name)?.clone(),
            _ => return None,
        };
        match f {
            Value::Str(s) => Some(s.to_string()),
            _ => None,
        }
    };
    match (field("kind"), field("name")) {
        (Some(kind), Some(name)) if !name.is_empty() => Ok((kind, name)),
        _ => Err(Fault::msg(format!(
            "{position} argument must be FreightOrigin, got {}",
            v.go_type()
        ))),
    }
}

fn freight_origin(freight: &Json) -> (String, String) {
    let get = |k: &str| {
        freight
            .get("origin")
            .and_then(|o| o.get(k))
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (get("kind"), get("name"))
}

impl KargoFunctions<'_> {
    /// Finds the first artifact (in `list`) matching `matches` in the
    /// snapshot's Freight, from `origin` if given. Without an origin, a match
    /// in Freight from more than one origin is ambiguous: `ambiguous` is the
    /// error.
    fn find(
        &self,
        list: &str,
        origin: Option<(String, String)>,
        matches: impl Fn(&Json) -> bool,
        ambiguous: String,
    ) -> Res<Option<Json>> {
        let mut found: Option<((String, String), Json)> = None;
        for freight in &self.env.freight.freight {
            let this_origin = freight_origin(freight);
            if let Some(wanted) = &origin
                && *wanted != this_origin
            {
                continue;
            }
            let Some(item) = freight
                .get(list)
                .and_then(Json::as_array)
                .and_then(|items| items.iter().find(|i| matches(i)))
            else {
                continue;
            };
            match &found {
                None => found = Some((this_origin, item.clone())),
                Some((first_origin, _)) if *first_origin != this_origin => {
                    return Err(Fault::msg(ambiguous));
                }
                Some(_) => {}
            }
            if origin.is_some() {
                break;
            }
        }
        Ok(found.map(|(_, item)| item))
    }

    fn to_struct(def: &StructDef, item: Option<Json>) -> Res<Value> {
        match item {
            Some(Json::Object(obj)) => def.build(&obj).map_err(Fault::msg),
            _ => Ok(Value::Nil),
        }
    }

    fn repo_and_origin(&self, args: &[Value]) -> Res<(String, Option<(String, String)>)> {
        if args.is_empty() || args.len() > 2 {
            return Err(Fault::msg(format!(
                "expected 1-2 arguments, got {}",
                args.len()
            )));
        }
        let Value::Str(repo) = &args[0] else {
            return Err(Fault::msg(format!(
                "first argument must be string, got {}",
                args[0].go_type()
            )));
        };
        let origin = match args.get(1) {
            Some(v) => Some(origin_arg(v, "second")?),
            None => None,
        };
        Ok((repo.to_string(), origin))
    }

    /// `commitFrom(repoURL[, origin])`: the commit from that repository in
    /// the Freight being promoted, or nil.
    fn commit_from(&self, args: &[Value]) -> Res<Value> {
        let (repo, origin) = self.repo_and_origin(args)?;
        let wanted = crate::urls::normalize_git(&repo);
        let item = self.find(
            "commits",
            origin,
            |c| {
                c.get("repoURL")
                    .and_then(Json::as_str)
                    .is_some_and(|u| crate::urls::normalize_git(u) == wanted)
            },
            format!(
                "multiple requested Freight could potentially provide a commit from repo {wanted}; please update promotion steps to disambiguate"
            ),
        )?;
        Self::to_struct(&GIT_COMMIT, item)
    }

    /// `imageFrom(repoURL[, origin])`: the image from that repository, or
    /// nil.
    fn image_from(&self, args: &[Value]) -> Res<Value> {
        let (repo, origin) = self.repo_and_origin(args)?;
        let item = self.find(
            "images",
            origin,
            |i| i.get("repoURL").and_then(Json::as_str) == Some(repo.as_str()),
            format!(
                "multiple requested Freight could potentially provide a container image from repository {repo}: please provide a Freight origin to disambiguate"
            ),
        )?;
        Self::to_struct(&IMAGE, item)
    }

    /// `chartFrom(repoURL[, chartName][, origin])`: the chart, or nil.
    fn chart_from(&self, args: &[Value]) -> Res<Value> {
        if args.is_empty() || args.len() > 3 {
            return Err(Fault::msg(format!(
                "expected 1-3 arguments, got {}",
                args.len()
            )));
        }
        let Value::Str(repo) = &args[0] else {
            return Err(Fault::msg(format!(
                "first argument must be string, got {}",
                args[0].go_type()
            )));
        };
        let mut chart_name = String::new();
        let mut origin = None;
        if let Some(second) = args.get(1) {
            match second {
                Value::Str(s) => chart_name = s.to_string(),
                Value::Struct(_) | Value::Map(_) => origin = Some(origin_arg(second, "second")?),
                other => {
                    return Err(Fault::msg(format!(
                        "second argument must be string or FreightOrigin, got {}",
                        other.go_type()
                    )));
                }
            }
        }
        if let Some(third) = args.get(2) {
            if !matches!(args[1], Value::Str(_)) {
                return Err(Fault::msg(format!(
                    "when using three arguments, second argument must be string, got {}",
                    args[1].go_type()
                )));
            }
            origin = Some(origin_arg(third, "third")?);
        }
        let item = self.find(
            "charts",
            origin,
            |c| {
                c.get("repoURL").and_then(Json::as_str) == Some(&**repo)
                    && c.get("name").and_then(Json::as_str).unwrap_or_default() == chart_name
            },
            format!(
                "multiple requested Freight could potentially provide a chart from repository {repo}: please provide a Freight origin to disambiguate"
            ),
        )?;
        Self::to_struct(&CHART, item)
    }

    /// `artifactFrom(subscriptionName[, origin])`: the generic artifact a
    /// Warehouse subscription of that name discovered, among the Freight the
    /// Stage will hold. (Kargo asks the Warehouses which origin has the
    /// subscription; Barge has no Warehouses yet and looks at the Freight's
    /// artifacts, which name their subscription.)
    fn artifact_from(&self, args: &[Value]) -> Res<Value> {
        // Same arguments as commitFrom: a name, then an optional origin.
        let (subscription, origin) = self.repo_and_origin(args)?;
        let item = self.find(
            "artifacts",
            origin,
            |a| a.get("subscriptionName").and_then(Json::as_str) == Some(subscription.as_str()),
            format!(
                "error finding artifact from subscription {subscription}: multiple requested Freight could potentially provide it: please provide a Freight origin to disambiguate"
            ),
        )?;
        let Some(Json::Object(artifact)) = item else {
            return Ok(Value::Nil);
        };
        let field = |name: &str| {
            artifact
                .get(name)
                .cloned()
                .unwrap_or(Json::String(String::new()))
        };
        let friendly: serde_json::Map<String, Json> = [
            ("ArtifactType", field("artifactType")),
            ("SubscriptionName", field("subscriptionName")),
            ("Version", field("version")),
            (
                "Metadata",
                artifact
                    .get("metadata")
                    .filter(|m| m.is_object())
                    .cloned()
                    .unwrap_or_else(|| Json::Object(serde_json::Map::new())),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        ARTIFACT.build(&friendly).map_err(Fault::msg)
    }

    fn status_function(&self, name: &str, args: &[Value]) -> Res<Value> {
        let statuses = &self.env.statuses;
        if name == "status" {
            let [arg] = args else {
                return Err(Fault::msg(format!(
                    "expected 1 argument, got {}",
                    args.len()
                )));
            };
            let Value::Str(alias) = arg else {
                return Err(Fault::msg(format!(
                    "argument must be string, got {}",
                    arg.go_type()
                )));
            };
            if alias.is_empty() {
                return Err(Fault::msg("argument must not be empty"));
            }
            return Ok(Value::string(
                statuses.status_in_namespace(&self.env.ctx.step_alias, alias),
            ));
        }
        if !args.is_empty() {
            return Err(Fault::msg(format!(
                "expected 0 arguments, got {}",
                args.len()
            )));
        }
        Ok(Value::Bool(match name {
            "success" => !statuses.has_failures(),
            "failure" => statuses.has_failures(),
            _ => true,
        }))
    }
}

/// `semverDiff(a, b)`: the most significant part that differs: `Major`,
/// `Minor`, `Patch`, `Metadata`, `None`, or `Incomparable` when either is
/// not a version. Pre-releases are not compared, as in Kargo.
fn semver_diff(args: &[Value]) -> Res<Value> {
    let [a, b] = args else {
        return Err(Fault::msg(format!(
            "expected 2 arguments, got {}",
            args.len()
        )));
    };
    let text = |v: &Value, which: &str| match v {
        Value::Str(s) => Ok(s.to_string()),
        other => Err(Fault::msg(format!(
            "{which} argument must be string, got {}",
            other.go_type()
        ))),
    };
    let (a, b) = (text(a, "first")?, text(b, "second")?);
    let diff = match (semver::parse(&a), semver::parse(&b)) {
        (Ok(x), Ok(y)) if x.major != y.major => "Major",
        (Ok(x), Ok(y)) if x.minor != y.minor => "Minor",
        (Ok(x), Ok(y)) if x.patch != y.patch => "Patch",
        (Ok(x), Ok(y)) if x.metadata != y.metadata => "Metadata",
        (Ok(_), Ok(_)) => "None",
        _ => "Incomparable",
    };
    Ok(Value::str(diff))
}

/// A YAML rendering close to what Go's `yaml.v3` gives (Kargo's `asYAML`):
/// block style, 4-space indentation, sequences of collections written
/// compactly (`- a: 1`), sorted keys; strings plain when they read back as
/// the same string, double-quoted when they would read as another type or
/// hold control characters, single-quoted when YAML syntax gets in the way,
/// and as literal blocks (`|-`) when they span lines.
fn to_yaml(v: &Value, budget: &mut Budget) -> Res<String> {
    let mut out = String::new();
    write_yaml(v, 0, &mut out, budget)?;
    budget.alloc_str(out.len())?;
    Ok(out)
}

/// Whether a plain scalar with this text would read as something other
/// than a string (YAML 1.1 booleans and nulls, numbers, timestamps).
pub(crate) fn yaml_reads_as_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
        ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    let based = |prefix: &str, digit: fn(char) -> bool| {
        lower
            .strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| digit(c) || c == '_'))
    };
    if based("0x", |c| c.is_ascii_hexdigit())
        || based("0o", |c| c.is_digit(8))
        || based("0b", |c| c.is_digit(2))
    {
        return true;
    }
    if golang::parse_float(s).is_some() && !lower.contains("inf") && !lower.contains("nan") {
        return true;
    }
    // Timestamps: YYYY-M-D...
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

enum YamlStyle {
    Plain,
    Single,
    Double,
    Literal,
}

fn yaml_style(s: &str) -> YamlStyle {
    if s.is_empty() {
        return YamlStyle::Double;
    }
    if s.contains('\n') && !s.chars().any(|c| c.is_control() && c != '\n') {
        return YamlStyle::Literal;
    }
    if s.chars().any(char::is_control) || yaml_reads_as_non_string(s) {
        return YamlStyle::Double;
    }
    let first = s.chars().next().unwrap_or(' ');
    let awkward = "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #");
    if awkward {
        YamlStyle::Single
    } else {
        YamlStyle::Plain
    }
}

/// A scalar's text, or `None` for a non-empty collection. `indent` is where
/// a literal block's lines start.
fn yaml_scalar(v: &Value, indent: usize, budget: &mut Budget) -> Res<Option<String>> {
    Ok(Some(match v {
        Value::Nil => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => match golang::format_float_json(*f) {
            Some(s) => s,
            None if f.is_nan() => ".nan".to_string(),
            None if *f > 0.0 => ".inf".to_string(),
            None => "-.inf".to_string(),
        },
        Value::Str(s) => {
            budget.step(1 + s.len() as u64 / 8)?;
            match yaml_style(s) {
                YamlStyle::Plain => s.to_string(),
                YamlStyle::Single => format!("'{}'", s.replace('\'', "''")),
                YamlStyle::Double => {
                    let mut q = String::new();
                    golang::push_json_string(&mut q, s);
                    q
                }
                YamlStyle::Literal => {
                    let (body, chomp) = match s.strip_suffix('\n') {
                        Some(body) => (body, "|"),
                        None => (s.as_str(), "|-"),
                    };
                    let pad = " ".repeat(indent);
                    let mut block = chomp.to_string();
                    for line in body.split('\n') {
                        block.push('\n');
                        if !line.is_empty() {
                            block.push_str(&pad);
                            block.push_str(line);
                        }
                    }
                    block
                }
            }
        }
        Value::Array(a) if a.items.is_empty() => "[]".to_string(),
        Value::Map(m) if m.entries.is_empty() => "{}".to_string(),
        // yaml.v3 writes a time as its RFC 3339 text, a duration as its
        // String(), a version as its text, a location (no exported
        // fields) as an empty map.
        Value::Time(t) => t.marshal_json().map_err(Fault::msg)?,
        Value::Duration(d) => {
            return yaml_scalar(&Value::string(gotime::duration_string(*d)), indent, budget);
        }
        Value::Named(n) => n.number().to_string(),
        Value::Version(v) => return yaml_scalar(&Value::string(v.string()), indent, budget),
        Value::Location(_) => "{}".to_string(),
        _ => return Ok(None),
    }))
}

/// Writes a value in block style with its lines starting at `indent`.
fn write_yaml(v: &Value, indent: usize, out: &mut String, budget: &mut Budget) -> Res<()> {
    budget.step(1)?;
    if out.len() as u64 > budget.memory_left() {
        return Err(Fault::Budget(super::error::Limit::Memory(
            budget.limits().max_memory,
        )));
    }
    let pad = " ".repeat(indent);
    if let Some(s) = yaml_scalar(v, indent + 4, budget)? {
        out.push_str(&s);
        out.push('\n');
        return Ok(());
    }
    let entries: Vec<(String, &Value)> = match v {
        Value::Array(a) => {
            for item in &a.items {
                out.push_str(&pad);
                out.push_str("- ");
                if let Some(s) = yaml_scalar(item, indent + 2, budget)? {
                    out.push_str(&s);
                    out.push('\n');
                } else {
                    // A collection starts on the dash's line, its other
                    // lines two columns right of the dash.
                    let mut nested = String::new();
                    write_yaml(item, indent + 2, &mut nested, budget)?;
                    out.push_str(nested.get(indent + 2..).unwrap_or(&nested));
                }
            }
            return Ok(());
        }
        Value::Map(m) => m.entries.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Struct(s) => s
            .fields
            .iter()
            .map(|f| (f.json.to_lowercase(), &f.value))
            .collect(),
        _ => Vec::new(),
    };
    for (k, item) in entries {
        out.push_str(&pad);
        match yaml_scalar(&Value::str(&k), indent + 4, budget)? {
            Some(key) => out.push_str(&key),
            None => out.push_str(&k),
        }
        out.push(':');
        if let Some(s) = yaml_scalar(item, indent + 4, budget)? {
            out.push(' ');
            out.push_str(&s);
            out.push('\n');
        } else {
            out.push('\n');
            write_yaml(item, indent + 4, out, budget)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_diff_names_the_most_significant_difference() {
        let diff = |a: &str, b: &str| match semver_diff(&[Value::str(a), Value::str(b)]) {
            Ok(Value::Str(s)) => s.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(diff("1.2.3", "2.0.0"), "Major");
        assert_eq!(diff("v1.2.3", "1.3"), "Minor");
        assert_eq!(diff("1.2.3", "1.2.4-rc.1"), "Patch");
        assert_eq!(diff("1.2.3+a", "1.2.3+b"), "Metadata");
        assert_eq!(diff("1.2.3-alpha", "1.2.3"), "None");
        assert_eq!(diff("1.2.3", "latest"), "Incomparable");
        assert_eq!(diff("1.2.3-alpha.01", "1.2.3"), "Incomparable");
        assert_eq!(diff("01.2", "1.2.0"), "None");
    }
}
