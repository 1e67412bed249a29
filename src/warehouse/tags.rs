//! Which tags of a repository a subscription discovers, newest first, as
//! Kargo's image (and git tag) selectors pick them: tags matching none of
//! `ignoreTagsRegexes` and, when given, one of `allowTagsRegexes`; for
//! `SemVer`, tags that are versions (strict ones unless `strictSemvers` is
//! false) satisfying the constraint, newest version first (ties broken by
//! the text, greater first); for `Lexical`, reverse byte order. At most
//! `discoveryLimit` (20 by default, 100 at most).

use std::cmp::Ordering;

use regex::Regex;

use super::constraint::Constraints;
use crate::api::warehouse::{DEFAULT_DISCOVERY_LIMIT, MAX_DISCOVERY_LIMIT};
use crate::expr::semver::{Version, parse};

/// How tags are filtered and ordered.
#[derive(Debug)]
pub struct TagSelection {
    allow: Vec<Regex>,
    ignore: Vec<Regex>,
    order: Order,
    limit: usize,
}

#[derive(Debug)]
enum Order {
    SemVer {
        strict: bool,
        constraint: Option<Constraints>,
    },
    Lexical,
}

/// What a selection is built from: a subscription's fields.
pub struct Filters<'a> {
    /// The field path of the subscription, for messages
    /// (`spec.subscriptions[0].image`).
    pub at: &'a str,
    pub allow_tags_regexes: &'a [String],
    pub ignore_tags_regexes: &'a [String],
    /// Kargo v1.11 removed these; a subscription that sets them is refused.
    pub allow_tags: &'a str,
    pub ignore_tags: &'a [String],
    pub discovery_limit: Option<i64>,
}

impl TagSelection {
    /// `SemVer` selection: `constraint` (Masterminds syntax) if not empty;
    /// `strict_semvers` true unless set to false, as Kargo defaults it.
    pub fn semver(
        filters: &Filters<'_>,
        constraint: &str,
        strict_semvers: Option<bool>,
        constraint_field: &str,
    ) -> Result<Self, String> {
        let constraint = if constraint.trim().is_empty() {
            None
        } else {
            Some(
                Constraints::parse(constraint)
                    .map_err(|e| format!("{}.{constraint_field}: {e}", filters.at))?,
            )
        };
        Self::new(
            filters,
            Order::SemVer {
                strict: strict_semvers.unwrap_or(true),
                constraint,
            },
        )
    }

    pub fn lexical(filters: &Filters<'_>) -> Result<Self, String> {
        Self::new(filters, Order::Lexical)
    }

    fn new(filters: &Filters<'_>, order: Order) -> Result<Self, String> {
        let at = filters.at;
        if !filters.allow_tags.is_empty() {
            return Err(format!(
                "{at}.allowTags: no longer supported (as in Kargo v1.11); use allowTagsRegexes"
            ));
        }
        if !filters.ignore_tags.is_empty() {
            return Err(format!(
                "{at}.ignoreTags: no longer supported (as in Kargo v1.11); use ignoreTagsRegexes"
            ));
        }
        let compile = |field: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, re)| Regex::new(re).map_err(|e| format!("{at}.{field}[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        let limit = match filters.discovery_limit {
            None | Some(0) => DEFAULT_DISCOVERY_LIMIT,
            Some(n) if (1..=MAX_DISCOVERY_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(format!(
                    "{at}.discoveryLimit: {n} is not between 1 and {MAX_DISCOVERY_LIMIT}"
                ));
            }
        };
        Ok(Self {
            allow: compile("allowTagsRegexes", filters.allow_tags_regexes)?,
            ignore: compile("ignoreTagsRegexes", filters.ignore_tags_regexes)?,
            order,
            limit: usize::try_from(limit).unwrap_or(20),
        })
    }

    /// Whether `tag` passes the allow and ignore regexes.
    pub fn allowed(&self, tag: &str) -> bool {
        !self.ignore.iter().any(|re| re.is_match(tag))
            && (self.allow.is_empty() || self.allow.iter().any(|re| re.is_match(tag)))
    }

    /// How many tags are discovered at most (`discoveryLimit`).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The tags discovered from `tags`, newest first.
    pub fn select<'t>(&self, tags: impl IntoIterator<Item = &'t str>) -> Vec<String> {
        let mut picked = self.order(tags);
        picked.truncate(self.limit);
        picked
    }

    /// Whether `tag` passes the filters (the regexes and, for `SemVer`, the
    /// version and constraint), whatever its place in the order.
    pub fn matches(&self, tag: &str) -> bool {
        if !self.allowed(tag) {
            return false;
        }
        match &self.order {
            Order::Lexical => true,
            Order::SemVer { strict, constraint } => version_of(tag, *strict)
                .is_some_and(|v| constraint.as_ref().is_none_or(|c| c.check(&v))),
        }
    }

    /// [`TagSelection::select`] without the limit: every tag that passes,
    /// newest first, for callers that filter further (by the paths a
    /// tagged commit changed) before they apply the limit.
    pub fn order<'t>(&self, tags: impl IntoIterator<Item = &'t str>) -> Vec<String> {
        let allowed = tags.into_iter().filter(|t| self.allowed(t));
        let picked: Vec<String> = match &self.order {
            Order::Lexical => {
                let mut tags: Vec<&str> = allowed.collect();
                tags.sort_unstable_by(|a, b| b.cmp(a));
                tags.into_iter().map(str::to_string).collect()
            }
            Order::SemVer { strict, constraint } => {
                let mut versions: Vec<Version> = allowed
                    .filter_map(|t| version_of(t, *strict))
                    .filter(|v| constraint.as_ref().is_none_or(|c| c.check(v)))
                    .collect();
                versions.sort_by(|a, b| match b.compare(a) {
                    Ordering::Equal => b.original.cmp(&a.original),
                    other => other,
                });
                versions.into_iter().map(|v| v.original).collect()
            }
        };
        picked
    }
}

/// Kargo's `semver.Parse`: a version by Masterminds' coercing parse, and,
/// when strict, also a strict one once a leading `v` is dropped (all three
/// numbers, no leading zeros).
fn version_of(tag: &str, strict: bool) -> Option<Version> {
    let version = parse(tag).ok()?;
    if strict && !is_strict(tag.strip_prefix('v').unwrap_or(tag)) {
        return None;
    }
    Some(version)
}

/// A strict semantic version: three numbers without leading zeros and
/// valid pre-release and metadata (Masterminds' `StrictNewVersion`, which
/// refuses a leading `v`).
pub(crate) fn is_strict(text: &str) -> bool {
    let core = text.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && !(p.len() > 1 && p.starts_with('0'))
        })
        && parse(text).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn filters<'a>(allow: &'a [String], ignore: &'a [String], limit: Option<i64>) -> Filters<'a> {
        Filters {
            at: "spec.subscriptions[0].image",
            allow_tags_regexes: allow,
            ignore_tags_regexes: ignore,
            allow_tags: "",
            ignore_tags: &[],
            discovery_limit: limit,
        }
    }

    const TAGS: &[&str] = &[
        "1.26.0",
        "1.27.3",
        "1.27.10",
        "v1.28.0",
        "1.28",
        "1.29.0-rc.1",
        "latest",
        "1.25.9",
        "01.2.3",
    ];

    #[test]
    fn semver_picks_strict_versions_newest_first_within_the_constraint() {
        let s =
            TagSelection::semver(&filters(&[], &[], None), "^1.26.0", None, "constraint").unwrap();
        // 1.28 is not strict; 01.2.3 has a leading zero; the rc is a
        // pre-release the constraint does not name.
        assert_eq!(
            s.select(TAGS.iter().copied()),
            vec!["v1.28.0", "1.27.10", "1.27.3", "1.26.0"]
        );
    }

    #[test]
    fn loose_semvers_admit_partial_versions_and_ties_break_by_text() {
        let s =
            TagSelection::semver(&filters(&[], &[], None), "", Some(false), "constraint").unwrap();
        let picked = s.select(TAGS.iter().copied());
        // Without a constraint a pre-release counts; v1.28.0 and 1.28 are
        // one version: the greater text first.
        assert_eq!(&picked[..3], ["1.29.0-rc.1", "v1.28.0", "1.28"]);
        assert!(!picked.contains(&"latest".to_string()));
    }

    #[test]
    fn allow_and_ignore_regexes_filter_before_ordering_and_the_limit_applies_last() {
        let allow = vec![r"^1\.27\.".to_string(), "^latest$".to_string()];
        let ignore = vec![r"\.10$".to_string()];
        let lexical = TagSelection::lexical(&filters(&allow, &ignore, Some(1))).unwrap();
        assert_eq!(lexical.select(TAGS.iter().copied()), vec!["latest"]);
        let lexical = TagSelection::lexical(&filters(&allow, &ignore, None)).unwrap();
        assert_eq!(
            lexical.select(TAGS.iter().copied()),
            vec!["latest", "1.27.3"]
        );
    }

    #[test]
    fn matches_and_order_apply_the_filters_without_the_limit() {
        let s = TagSelection::semver(&filters(&[], &[], Some(1)), "^1.26.0", None, "constraint")
            .unwrap();
        assert!(s.matches("1.27.3"));
        assert!(!s.matches("1.28"));
        assert!(!s.matches("1.25.9"));
        assert_eq!(s.order(TAGS.iter().copied()).len(), 4);
        assert_eq!(s.select(TAGS.iter().copied()), vec!["v1.28.0"]);
        assert_eq!(s.limit(), 1);
        let ignore = vec!["^latest$".to_string()];
        let l = TagSelection::lexical(&filters(&[], &ignore, None)).unwrap();
        assert!(l.matches("1.28") && !l.matches("latest"));
    }

    #[test]
    fn bad_filters_are_refused_naming_the_field() {
        let bad = vec!["(".to_string()];
        let err = TagSelection::lexical(&filters(&bad, &[], None)).unwrap_err();
        assert!(
            err.starts_with("spec.subscriptions[0].image.allowTagsRegexes[0]:"),
            "{err}"
        );
        let err = TagSelection::lexical(&filters(&[], &[], Some(500))).unwrap_err();
        assert!(err.contains("discoveryLimit: 500"), "{err}");
        let err =
            TagSelection::semver(&filters(&[], &[], None), "^^1", None, "constraint").unwrap_err();
        assert!(
            err.starts_with("spec.subscriptions[0].image.constraint: improper constraint"),
            "{err}"
        );
        let old = Filters {
            allow_tags: "^v",
            ..filters(&[], &[], None)
        };
        assert!(
            TagSelection::lexical(&old)
                .unwrap_err()
                .contains("allowTags: no longer supported")
        );
    }
}
