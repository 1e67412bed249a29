//! Version constraints as Kargo evaluates them (Masterminds `semver/v3`,
//! the library Kargo's Warehouses use): `||` between groups, constraints in
//! a group separated by spaces or commas, operators `=` `!=` `>` `<` `>=`
//! `<=` (and `=>` `=<`) `~` (`~>`) `^`, wildcards `x` `X` `*` and missing
//! parts, hyphen ranges `1.2 - 1.4.5`. A pre-release version satisfies a
//! group only when a constraint of that group names a pre-release.

use std::cmp::Ordering;
use std::sync::LazyLock;

use regex::Regex;

use crate::expr::semver::{Version, compare_prerelease, parse};

const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";
const VERSION: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";

static ONE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(&format!(r"^\s*({OPS})\s*({VERSION})\s*$")).ok());
static RANGE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(&format!(r"\s*({VERSION})\s+-\s+({VERSION})\s*")).ok());
static FIND: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(&format!(r"({OPS})\s*({VERSION})")).ok());
static GROUP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^(\s*({OPS})\s*({VERSION})\s*)((?:\s+|,\s*)({OPS})\s*({VERSION})\s*)*$"
    ))
    .ok()
});

/// A parsed constraint string.
#[derive(Clone, Debug)]
pub struct Constraints {
    groups: Vec<Group>,
}

#[derive(Clone, Debug)]
struct Group {
    constraints: Vec<Constraint>,
    /// A constraint of the group names a pre-release: pre-releases may match.
    has_pre: bool,
}

#[derive(Clone, Debug)]
struct Constraint {
    op: String,
    version: Version,
    /// A wildcard or missing part: which parts.
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

impl Constraints {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > 512 {
            return Err("constraint string is too long (max 512 bytes)".into());
        }
        let (Some(range), Some(find), Some(group_re)) =
            (RANGE.as_ref(), FIND.as_ref(), GROUP.as_ref())
        else {
            return Err("constraint grammar unavailable".into());
        };
        let rewritten = range
            .replace_all(text, |c: &regex::Captures<'_>| {
                format!(">= {}, <= {} ", &c[1], &c[11])
            })
            .into_owned();
        let mut groups = Vec::new();
        for part in rewritten.split("||") {
            if !group_re.is_match(part) {
                return Err(format!("improper constraint: {part:?}"));
            }
            let found: Vec<&str> = find.find_iter(part).map(|m| m.as_str()).collect();
            let constraints = if found.is_empty() {
                vec![Constraint::parse(part)?]
            } else {
                found
                    .into_iter()
                    .map(Constraint::parse)
                    .collect::<Result<Vec<_>, _>>()?
            };
            let has_pre = constraints.iter().any(|c| !c.version.pre.is_empty());
            groups.push(Group {
                constraints,
                has_pre,
            });
        }
        Ok(Self { groups })
    }

    /// Whether the version `text` (Masterminds' coercing parse: `v`,
    /// missing minor or patch allowed) satisfies some group; an error when
    /// it is not a version.
    pub fn satisfied_by(&self, text: &str) -> Result<bool, &'static str> {
        Ok(self.check(&parse(text)?))
    }

    /// Whether `version` satisfies some group.
    pub(crate) fn check(&self, version: &Version) -> bool {
        self.groups
            .iter()
            .any(|g| g.constraints.iter().all(|c| c.check(version, g.has_pre)))
    }
}

fn is_x(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

impl Constraint {
    fn parse(text: &str) -> Result<Self, String> {
        let one = ONE
            .as_ref()
            .ok_or_else(|| "constraint grammar unavailable".to_string())?;
        let c = one
            .captures(text)
            .ok_or_else(|| format!("improper constraint: {text:?}"))?;
        let group = |i: usize| c.get(i).map_or("", |m| m.as_str());
        let (major, minor, patch, pre) = (group(3), group(4), group(5), group(6));
        let (version, dirty, minor_dirty, patch_dirty) = if is_x(major) || major.is_empty() {
            (format!("0.0.0{pre}"), true, false, false)
        } else if minor.is_empty() || is_x(minor.trim_start_matches('.')) {
            (format!("{major}.0.0{pre}"), true, true, false)
        } else if patch.is_empty() || is_x(patch.trim_start_matches('.')) {
            (format!("{major}{minor}.0{pre}"), true, false, true)
        } else {
            (group(2).to_string(), false, false, false)
        };
        let version = parse(&version).map_err(|e| format!("constraint {text:?}: {e}"))?;
        Ok(Self {
            op: group(1).to_string(),
            version,
            dirty,
            minor_dirty,
            patch_dirty,
        })
    }

    fn check(&self, v: &Version, include_pre: bool) -> bool {
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let c = &self.version;
        match self.op.as_str() {
            "" | "=" => {
                if self.dirty {
                    self.tilde(v)
                } else {
                    v.compare(c) == Ordering::Equal
                }
            }
            "!=" => self.not_equal(v),
            ">" => self.greater(v),
            "<" => v.compare(c) == Ordering::Less,
            ">=" | "=>" => v.compare(c) != Ordering::Less,
            "<=" | "=<" => self.less_or_equal(v),
            "~" | "~>" => self.tilde(v),
            "^" => self.caret(v),
            _ => false,
        }
    }

    fn not_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if self.dirty {
            if c.major != v.major {
                return true;
            }
            if c.minor != v.minor && !self.minor_dirty {
                return true;
            } else if self.minor_dirty {
                return false;
            } else if c.patch != v.patch && !self.patch_dirty {
                return true;
            } else if self.patch_dirty {
                if !v.pre.is_empty() || !c.pre.is_empty() {
                    return compare_prerelease(&v.pre, &c.pre) != Ordering::Equal;
                }
                return false;
            }
        }
        v.compare(c) != Ordering::Equal
    }

    fn greater(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.dirty {
            return v.compare(c) == Ordering::Greater;
        }
        if v.major > c.major {
            true
        } else if v.major < c.major || self.minor_dirty {
            false
        } else if self.patch_dirty {
            v.minor > c.minor
        } else {
            v.compare(c) == Ordering::Greater
        }
    }

    fn less_or_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.dirty {
            return v.compare(c) != Ordering::Greater;
        }
        !(v.major > c.major || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.version;
        if v.compare(c) == Ordering::Less {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        v.major == c.major && (v.minor == c.minor || self.minor_dirty)
    }

    fn caret(&self, v: &Version) -> bool {
        let c = &self.version;
        if v.compare(c) == Ordering::Less {
            return false;
        }
        if c.major > 0 || self.minor_dirty {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.patch_dirty {
            return v.minor == c.minor;
        }
        if v.minor > 0 {
            return false;
        }
        c.patch == v.patch
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(constraint: &str, version: &str) -> bool {
        Constraints::parse(constraint)
            .unwrap_or_else(|e| panic!("{constraint}: {e}"))
            .satisfied_by(version)
            .unwrap_or_else(|e| panic!("{version}: {e}"))
    }

    /// Every case's verdict was recorded from Masterminds' own `Check`.
    #[test]
    fn constraints_judge_versions_as_masterminds_semver_does() {
        let recorded: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/semver_constraints.json"))
                .unwrap();
        let cases = recorded["cases"].as_array().unwrap();
        assert!(cases.len() >= 60);
        for case in cases {
            let (constraint, version) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
            let want = case[2].as_bool().unwrap();
            assert_eq!(check(constraint, version), want, "{constraint} ~ {version}");
        }
    }

    #[test]
    fn an_improper_constraint_is_refused_naming_it() {
        for bad in ["foo", ">= 1.2,, 2", "^^1"] {
            let err = Constraints::parse(bad).unwrap_err();
            assert!(err.starts_with("improper constraint"), "{bad}: {err}");
        }
    }
}
