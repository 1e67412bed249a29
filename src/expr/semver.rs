//! Semantic versions as Kargo reads them (Masterminds' `semver/v3`,
//! `NewVersion` with its default coercion): an optional `v`, minor and
//! patch optional, leading zeros allowed in the numbers, a validated
//! pre-release and build metadata. `semverParse()` returns a [`Version`];
//! `semverDiff()` compares two.

use std::cmp::Ordering;

/// A parsed version: what `semverParse()` returns (`*semver.Version`), or
/// what its `IncMinor()` and friends return (a `semver.Version` value,
/// `pointer` false: Go's pointer-receiver methods such as `LessThan` are
/// not callable on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
    pub metadata: String,
    /// The text parsed (or, for a changed version, its new text with the
    /// original's `v`).
    pub original: String,
    pub pointer: bool,
}

/// Why a version did not parse: Masterminds' error texts.
pub(crate) fn parse(text: &str) -> Result<Version, &'static str> {
    const INVALID: &str = "invalid semantic version";
    let s = text.strip_prefix('v').unwrap_or(text);
    // The shape: numbers, then `-pre`, then `+meta`, with [0-9A-Za-z-]
    // identifiers separated by dots.
    let (rest, metadata) = match s.split_once('+') {
        Some((r, m)) => (r, Some(m)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let identifiers = |part: &str| {
        part.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    if pre.is_some_and(|p| !identifiers(p)) || metadata.is_some_and(|m| !identifiers(m)) {
        return Err(INVALID);
    }
    let mut numbers = core.split('.');
    let mut next = |required: bool| -> Result<u64, &'static str> {
        match numbers.next() {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                .parse()
                .map_err(|_| "error parsing version segment: value out of range"),
            Some(_) => Err(INVALID),
            None if required => Err(INVALID),
            None => Ok(0),
        }
    };
    let (major, minor, patch) = (next(true)?, next(false)?, next(false)?);
    if numbers.next().is_some() {
        return Err(INVALID);
    }
    let pre = pre.unwrap_or_default();
    validate_prerelease(pre)?;
    Ok(Version {
        major,
        minor,
        patch,
        pre: pre.to_string(),
        metadata: metadata.unwrap_or_default().to_string(),
        original: text.to_string(),
        pointer: true,
    })
}

/// Numeric pre-release identifiers may not have leading zeros.
fn validate_prerelease(pre: &str) -> Result<(), &'static str> {
    if pre.is_empty() {
        return Ok(());
    }
    for id in pre.split('.') {
        if id.is_empty() {
            return Err("invalid prerelease string");
        }
        if id.bytes().all(|b| b.is_ascii_digit()) {
            if id.len() > 1 && id.starts_with('0') {
                return Err("version segment starts with 0");
            }
        } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("invalid prerelease string");
        }
    }
    Ok(())
}

fn validate_metadata(metadata: &str) -> Result<(), &'static str> {
    if metadata.is_empty() {
        return Ok(());
    }
    let ok = metadata
        .split('.')
        .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(())
    } else {
        Err("invalid metadata string")
    }
}

impl Version {
    /// `String()`: `major.minor.patch[-pre][+metadata]`, without a `v`.
    pub(crate) fn string(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        if !self.metadata.is_empty() {
            s.push('+');
            s.push_str(&self.metadata);
        }
        s
    }

    fn v_prefix(&self) -> &str {
        if self.original.starts_with('v') {
            "v"
        } else {
            ""
        }
    }

    /// A changed copy (a value, not a pointer) with its new original text.
    fn changed(&self, change: impl FnOnce(&mut Version)) -> Version {
        let mut next = self.clone();
        change(&mut next);
        next.original = format!("{}{}", self.v_prefix(), next.string());
        next.pointer = false;
        next
    }

    /// `IncPatch()`: a pre-release drops its pre-release (the patch stays),
    /// otherwise the patch goes up; metadata is dropped.
    pub(crate) fn inc_patch(&self) -> Version {
        self.changed(|v| {
            if v.pre.is_empty() {
                v.patch = v.patch.wrapping_add(1);
            }
            v.pre.clear();
            v.metadata.clear();
        })
    }

    /// `IncMinor()`.
    pub(crate) fn inc_minor(&self) -> Version {
        self.changed(|v| {
            v.minor = v.minor.wrapping_add(1);
            v.patch = 0;
            v.pre.clear();
            v.metadata.clear();
        })
    }

    /// `IncMajor()`.
    pub(crate) fn inc_major(&self) -> Version {
        self.changed(|v| {
            v.major = v.major.wrapping_add(1);
            v.minor = 0;
            v.patch = 0;
            v.pre.clear();
            v.metadata.clear();
        })
    }

    /// `SetPrerelease(p)`.
    pub(crate) fn set_prerelease(&self, pre: &str) -> Result<Version, &'static str> {
        validate_prerelease(pre)?;
        Ok(self.changed(|v| v.pre = pre.to_string()))
    }

    /// `SetMetadata(m)`.
    pub(crate) fn set_metadata(&self, metadata: &str) -> Result<Version, &'static str> {
        validate_metadata(metadata)?;
        Ok(self.changed(|v| v.metadata = metadata.to_string()))
    }

    /// `Compare(o)`: by major, minor, patch, then pre-release (a version
    /// without one is greater); metadata is ignored.
    pub(crate) fn compare(&self, other: &Version) -> Ordering {
        let core =
            (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => compare_prerelease(&self.pre, &other.pre),
        }
    }
}

/// Pre-releases part by part: numbers below words, numbers by value,
/// words by bytes, a missing part lowest.
pub(crate) fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..pa.len().max(pb.len()) {
        let s = pa.get(i).copied().unwrap_or("");
        let o = pb.get(i).copied().unwrap_or("");
        let d = compare_part(s, o);
        if d != Ordering::Equal {
            return d;
        }
    }
    Ordering::Equal
}

fn compare_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    match (s.parse::<u64>(), o.parse::<u64>()) {
        (Err(_), Err(_)) => {
            if s > o {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Ok(x), Ok(y)) => {
            if x > y {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_coerces_like_masterminds() {
        let v = parse("v1.2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((v.major, v.minor, v.patch), (1, 2, 0));
        assert_eq!(v.string(), "1.2.0");
        assert_eq!(
            parse("01.02.03").map(|v| v.string()),
            Ok("1.2.3".to_string())
        );
        assert!(parse("1.2.3-01").is_err());
        assert!(parse("1.2.3+a+b").is_err());
        assert!(parse("1.").is_err());
        assert!(parse("V1.2.3").is_err());
    }

    #[test]
    fn increments_keep_the_v_and_drop_the_pre_release() {
        let v = parse("v1.2.3-rc.1+b5").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.inc_patch().original, "v1.2.3");
        assert_eq!(v.inc_minor().string(), "1.3.0");
        assert_eq!(v.inc_major().string(), "2.0.0");
    }

    #[test]
    fn pre_releases_order_numbers_below_words() {
        let cmp = |a: &str, b: &str| match (parse(a), parse(b)) {
            (Ok(x), Ok(y)) => x.compare(&y),
            _ => panic!("{a} {b}"),
        };
        assert_eq!(cmp("1.0.0-alpha", "1.0.0"), Ordering::Less);
        assert_eq!(cmp("1.0.0-2", "1.0.0-10"), Ordering::Less);
        assert_eq!(cmp("1.0.0-a.1", "1.0.0-a"), Ordering::Greater);
        assert_eq!(cmp("1.0.0+x", "1.0.0+y"), Ordering::Equal);
    }
}
