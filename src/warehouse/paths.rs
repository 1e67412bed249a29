//! A git subscription's `includePaths` and `excludePaths`, as Kargo reads
//! them: each a plain path (the file is that path or under it), or
//! `glob:<pattern>` (`*` stays within a directory, `**` crosses them), or
//! `regex:<expression>` (also `regexp:`, matching anywhere in the path).
//! A set of changed files passes when one of them is included (by any
//! include pattern, or there are none) and not excluded.

/// One path pattern.
#[derive(Clone, Debug)]
pub enum PathPattern {
    /// A directory or file: the path is it, or lies under it.
    Base(Vec<String>),
    Glob(globset::GlobMatcher),
    Regex(regex::Regex),
}

impl PathPattern {
    /// Reads a pattern, or says why it cannot be read.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if let Some(glob) = pattern.strip_prefix("glob:") {
            let glob = globset::GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("glob pattern {glob:?}: {e}"))?;
            return Ok(Self::Glob(glob.compile_matcher()));
        }
        if let Some(re) = pattern
            .strip_prefix("regex:")
            .or_else(|| pattern.strip_prefix("regexp:"))
        {
            return regex::Regex::new(re)
                .map(Self::Regex)
                .map_err(|e| format!("regular expression {re:?}: {e}"));
        }
        Ok(Self::Base(components(pattern)))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Glob(glob) => glob.is_match(path),
            Self::Regex(re) => re.is_match(path),
            // Go's filepath.Rel(base, path) holding no `..`: the path is
            // the base or lies under it (and has no `..` of its own).
            Self::Base(base) => {
                let path = components(path);
                path.len() >= base.len()
                    && path.iter().zip(base).all(|(p, b)| p == b)
                    && !path[base.len()..].iter().any(|c| c.contains(".."))
            }
        }
    }
}

/// A path's components, as Go's `filepath.Clean` leaves them (`.` and
/// empty components dropped).
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// The include and exclude patterns of one subscription.
#[derive(Clone, Debug, Default)]
pub struct PathFilter {
    include: Vec<PathPattern>,
    exclude: Vec<PathPattern>,
}

impl PathFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        let parse = |patterns: &[String]| {
            patterns
                .iter()
                .map(|p| PathPattern::parse(p))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            include: parse(include)?,
            exclude: parse(exclude)?,
        })
    }

    /// Whether `path` is one the subscription watches.
    pub fn admits(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(path)))
            && !self.exclude.iter().any(|p| p.matches(path))
    }

    /// Whether any of `paths` is one the subscription watches (Kargo's
    /// `MatchesPaths`).
    pub fn admits_any(&self, paths: &[String]) -> bool {
        paths.iter().any(|p| self.admits(p))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> PathFilter {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PathFilter::new(&own(include), &own(exclude)).unwrap()
    }

    #[test]
    fn a_plain_path_takes_itself_and_what_lies_under_it() {
        let p = PathPattern::parse("apps/guestbook").unwrap();
        assert!(p.matches("apps/guestbook"));
        assert!(p.matches("apps/guestbook/values.yaml"));
        assert!(p.matches("./apps/guestbook/deep/x.yaml"));
        assert!(!p.matches("apps/guestbook-2/values.yaml"));
        assert!(!p.matches("apps/values.yaml"));
        assert!(!p.matches("other/apps/guestbook/x"));
        let trailing = PathPattern::parse("apps/guestbook/").unwrap();
        assert!(trailing.matches("apps/guestbook/values.yaml"));
    }

    #[test]
    fn a_glob_keeps_a_star_within_a_directory_and_lets_two_cross() {
        let one = PathPattern::parse("glob:apps/*.yaml").unwrap();
        assert!(one.matches("apps/a.yaml"));
        assert!(!one.matches("apps/x/a.yaml"));
        let two = PathPattern::parse("glob:apps/**/*.yaml").unwrap();
        assert!(two.matches("apps/x/y/a.yaml"));
        assert!(!two.matches("apps/x/y/a.json"));
    }

    #[test]
    fn a_regex_matches_anywhere_unless_anchored_and_both_prefixes_work() {
        let re = PathPattern::parse("regex:\\.md$").unwrap();
        assert!(re.matches("docs/readme.md"));
        assert!(!re.matches("docs/readme.mdx"));
        let re = PathPattern::parse("regexp:^charts/").unwrap();
        assert!(re.matches("charts/app/Chart.yaml"));
        assert!(!re.matches("src/charts/x"));
        assert!(PathPattern::parse("regex:(").is_err());
        assert!(PathPattern::parse("glob:a[").is_err());
    }

    #[test]
    fn one_included_file_not_excluded_is_enough() {
        let f = filter(&["apps"], &["glob:**/*.md"]);
        assert!(f.admits_any(&["README.md".into(), "apps/x.yaml".into()]));
        assert!(!f.admits_any(&["apps/notes.md".into(), "src/main.rs".into()]));
        assert!(!f.admits_any(&[]));
        let excludes_only = filter(&[], &["docs"]);
        assert!(excludes_only.admits("src/lib.rs"));
        assert!(!excludes_only.admits("docs/index.md"));
    }
}
