//! Git commit discovery for a Warehouse's git subscriptions, as Kargo's
//! commit selectors discover them:
//!
//! - `NewestFromBranch`: the branch's (or, with none named, the remote
//!   default branch's) first-parent history, newest first, commits older
//!   than `since` excluded; `branch` in the result is the subscription's
//!   own (empty when it names none), as Kargo reports it.
//! - `SemVer` and `Lexical`: tags by name ([`TagSelection`]), newest first.
//! - `NewestTag`: tags by creator date (the tagger's for an annotated tag,
//!   the commit's for a lightweight one), newest first, ties by name.
//!
//! `includePaths`/`excludePaths` keep a commit whose diff against its
//! first parent (against nothing for a root commit) touches a path that is
//! included (by any of the includes, all when none) and not excluded.
//! Patterns are `glob:` (doublestar), `regex:`/`regexp:` (unanchored) or a
//! base directory (the path itself and everything under it).
//!
//! `observedRefs` records the branch head, or the tags that pass the name
//! filters (their ids as the remote advertises them: a tag object's for an
//! annotated tag), sorted by name, at most 1,000 (more: none, and no
//! short-circuit). A discovery whose refs equal those of `previous` returns
//! `previous`'s commits without fetching (one ref advertisement only).
//!
//! Work is bounded: a bare repository per subscription in `cache_dir` is
//! fetched incrementally; over HTTP(S) and SSH fetches are shallow. A
//! branch is fetched `discoveryLimit` commits deep, and, when path filters
//! must look further, deepened (×4 each time) up to [`WALK_BUDGET`]
//! commits; a first-parent walk stops after [`WALK_BUDGET`] commits and
//! returns what it found. Tags are fetched one commit deep (two with path
//! filters, for the parent's tree), and for `SemVer`/`Lexical` only as many
//! as the limit needs, in name order; at most [`WALK_BUDGET`] tags are
//! examined (`NewestTag`, which must date them all, refuses more as
//! TooLarge). libgit2's `file://` transport cannot fetch shallow: local
//! repositories are fetched in full.
//!
//! `expressionFilter` is refused (Config), `blobless` is ignored (libgit2
//! has no partial clone).

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use git2::{AutotagOption, Direction, ErrorClass, ErrorCode, FetchOptions, Oid, Repository};
use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

use super::discovered::{
    DiscoveredCommit, DiscoveredRef, DiscoveryError, GitDiscoveryRefs, GitDiscoveryResult,
};
use super::tags::{Filters, TagSelection};
use crate::api::warehouse::{
    CommitSelectionStrategy, DEFAULT_DISCOVERY_LIMIT, GitSubscription, MAX_DISCOVERY_LIMIT,
};
pub use crate::git::Credentials;
use crate::git::{Access, callbacks, redact_url};

/// The most commits a branch walk looks at (and the deepest a branch is
/// fetched), and the most tags a tag discovery examines.
pub const WALK_BUDGET: usize = 10_000;

/// Above this many tags passing the name filters, `observedRefs` is not
/// recorded (as Kargo).
pub const MAX_OBSERVED_TAGS: usize = 1000;

/// How many commits a walk reads through one repository handle.
const HANDLE_COMMITS: usize = 500;

/// Kargo's subject length: longer subjects are cut to 77 bytes and `...`.
const MAX_SUBJECT: usize = 80;

/// The bare repository's directory inside the cache directory.
pub const CACHE_REPO: &str = "repo.git";

/// The depth a branch was last fetched at, kept in the cache's config so
/// that the next fetch does not make the history shallower.
const DEPTH_KEY: &str = "barge.discoveryDepth";

/// Above this many tags to fetch, one `refs/tags/*` refspec replaces one
/// refspec per tag.
const MAX_TAG_REFSPECS: usize = 500;

/// Discovers the commits of one git subscription. `at` is the
/// subscription's field path (`spec.subscriptions[2].git`) for Config
/// errors; `credentials` those chosen for the repository URL; `cache_dir`
/// the subscription's own directory (kept between discoveries);
/// `previous` the last result, whose commits are reused when the remote's
/// refs have not moved (the caller passes none when the subscription's
/// spec changed).
pub async fn discover(
    sub: &GitSubscription,
    at: &str,
    subscription_name: Option<&str>,
    credentials: Option<&Credentials>,
    cache_dir: &Path,
    previous: Option<&GitDiscoveryResult>,
) -> Result<GitDiscoveryResult, DiscoveryError> {
    let plan = Plan::new(sub, at, credentials)?;
    let cache = cache_dir.to_path_buf();
    let previous = previous.cloned();
    let name = subscription_name.unwrap_or_default().to_string();
    tokio::task::spawn_blocking(move || discover_blocking(&plan, &cache, previous.as_ref(), name))
        .await
        .map_err(|e| DiscoveryError::Unavailable(format!("git discovery stopped: {e}")))?
}

/// What a subscription asks for, checked.
struct Plan {
    url: String,
    /// The subscription's branch, as written (may be empty).
    branch: String,
    strategy: Strategy,
    paths: PathFilter,
    limit: usize,
    access: Access,
}

enum Strategy {
    Branch { since: Option<i64> },
    SemVer(TagSelection),
    Lexical(TagSelection),
    NewestTag(TagSelection),
}

impl Strategy {
    fn tags(&self) -> Option<&TagSelection> {
        match self {
            Strategy::Branch { .. } => None,
            Strategy::SemVer(s) | Strategy::Lexical(s) | Strategy::NewestTag(s) => Some(s),
        }
    }
}

impl Plan {
    fn new(
        sub: &GitSubscription,
        at: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Self, DiscoveryError> {
        let config = DiscoveryError::Config;
        if sub.repo_url.trim().is_empty() {
            return Err(config(format!("{at}.repoURL: must not be empty")));
        }
        if !sub.expression_filter.trim().is_empty() {
            return Err(config(format!(
                "{at}.expressionFilter: not supported by Barge's git discovery yet; \
                 use includePaths/excludePaths or tag regexes"
            )));
        }
        let filters = Filters {
            at,
            allow_tags_regexes: &sub.allow_tags_regexes,
            ignore_tags_regexes: &sub.ignore_tags_regexes,
            allow_tags: &sub.allow_tags,
            ignore_tags: &sub.ignore_tags,
            discovery_limit: sub.discovery_limit,
        };
        let strategy = match sub.commit_selection_strategy {
            CommitSelectionStrategy::NewestFromBranch => {
                let since = match sub.since.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(text) => Some(
                        text.parse::<jiff::Timestamp>()
                            .map_err(|e| config(format!("{at}.since: {text:?}: {e}")))?
                            .as_second(),
                    ),
                };
                Strategy::Branch { since }
            }
            CommitSelectionStrategy::SemVer => Strategy::SemVer(
                TagSelection::semver(
                    &filters,
                    &sub.semver_constraint,
                    sub.strict_semvers,
                    "semverConstraint",
                )
                .map_err(config)?,
            ),
            CommitSelectionStrategy::Lexical => {
                Strategy::Lexical(TagSelection::lexical(&filters).map_err(config)?)
            }
            CommitSelectionStrategy::NewestTag => {
                Strategy::NewestTag(TagSelection::lexical(&filters).map_err(config)?)
            }
        };
        let limit = match sub.discovery_limit {
            None | Some(0) => DEFAULT_DISCOVERY_LIMIT,
            Some(n) if (1..=MAX_DISCOVERY_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(config(format!(
                    "{at}.discoveryLimit: {n} is not between 1 and {MAX_DISCOVERY_LIMIT}"
                )));
            }
        };
        let branch = sub.branch.trim().to_string();
        if !branch.is_empty() && !valid_branch(&branch) {
            return Err(config(format!(
                "{at}.branch: {branch:?} is not a valid branch name"
            )));
        }
        Ok(Plan {
            url: sub.repo_url.trim().to_string(),
            branch,
            strategy,
            paths: PathFilter::new(at, &sub.include_paths, &sub.exclude_paths)?,
            limit: usize::try_from(limit).unwrap_or(20),
            access: Access {
                credentials: credentials.cloned(),
                insecure_skip_tls_verify: sub.insecure_skip_tls_verify,
            },
        })
    }

    /// Whether the remote's transport can fetch shallow (libgit2's local
    /// transport cannot).
    fn shallow_capable(&self) -> bool {
        let url = self.url.to_ascii_lowercase();
        url.starts_with("http://")
            || url.starts_with("https://")
            || url.starts_with("ssh://")
            || url.starts_with("git://")
            || (!url.contains("://") && url.contains('@') && url.contains(':'))
    }
}

/// Kargo's branch name rule.
fn valid_branch(branch: &str) -> bool {
    let bytes = branch.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || b"._/-".contains(b);
    let last = |b: &u8| b.is_ascii_alphanumeric() || b"_-".contains(b);
    branch.len() <= 255
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(inner)
        && bytes.last().is_some_and(last)
}

/// `includePaths` and `excludePaths`.
struct PathFilter {
    include: Option<Vec<PathMatcher>>,
    exclude: Option<Vec<PathMatcher>>,
}

enum PathMatcher {
    Glob(GlobMatcher),
    Regex(Regex),
    /// A base directory, cleaned.
    Base(String),
}

impl PathFilter {
    fn new(at: &str, include: &[String], exclude: &[String]) -> Result<Self, DiscoveryError> {
        let parse = |field: &str, list: &[String]| -> Result<Option<Vec<PathMatcher>>, _> {
            if list.is_empty() {
                return Ok(None);
            }
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    PathMatcher::parse(p).map_err(|e| {
                        DiscoveryError::Config(format!("{at}.{field}[{i}]: {p:?}: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        Ok(Self {
            include: parse("includePaths", include)?,
            exclude: parse("excludePaths", exclude)?,
        })
    }

    fn active(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }

    /// Whether any of `paths` is included and not excluded.
    fn matches<S: AsRef<str>>(&self, paths: &[S]) -> bool {
        paths.iter().map(AsRef::as_ref).any(|path| {
            self.include
                .as_ref()
                .is_none_or(|m| m.iter().any(|m| m.matches(path)))
                && !self
                    .exclude
                    .as_ref()
                    .is_some_and(|m| m.iter().any(|m| m.matches(path)))
        })
    }
}

impl PathMatcher {
    fn parse(pattern: &str) -> Result<Self, String> {
        if let Some(glob) = pattern.strip_prefix("glob:") {
            let glob = GlobBuilder::new(glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| e.kind().to_string())?;
            return Ok(PathMatcher::Glob(glob.compile_matcher()));
        }
        let regex = pattern
            .strip_prefix("regex:")
            .or_else(|| pattern.strip_prefix("regexp:"));
        if let Some(regex) = regex {
            return Regex::new(regex)
                .map(PathMatcher::Regex)
                .map_err(|e| e.to_string());
        }
        Ok(PathMatcher::Base(clean(pattern)))
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Glob(glob) => glob.is_match(path),
            PathMatcher::Regex(regex) => regex.is_match(path),
            // Go's filepath.Rel(base, path) holding no "..".
            PathMatcher::Base(base) => {
                let path = clean(path);
                let rel = if base == "." {
                    if path.starts_with('/') {
                        return false;
                    }
                    path.as_str()
                } else if path == *base {
                    "."
                } else if base == "/" {
                    match path.strip_prefix('/') {
                        Some(rest) => rest,
                        None => return false,
                    }
                } else {
                    match path
                        .strip_prefix(base.as_str())
                        .and_then(|r| r.strip_prefix('/'))
                    {
                        Some(rest) => rest,
                        None => return false,
                    }
                };
                !rel.contains("..")
            }
        }
    }
}

/// Go's `filepath.Clean` for slash-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Why one attempt failed: the remote's answer, or the cache (which is
/// then deleted and the discovery tried once more).
enum Failure {
    Discovery(DiscoveryError),
    Cache(String),
}

impl From<DiscoveryError> for Failure {
    fn from(e: DiscoveryError) -> Self {
        Failure::Discovery(e)
    }
}

/// A local libgit2 error: the cache's.
fn cache(what: &str) -> impl FnOnce(git2::Error) -> Failure + '_ {
    move |e| Failure::Cache(format!("{what}: {}", e.message()))
}

fn discover_blocking(
    plan: &Plan,
    cache_dir: &Path,
    previous: Option<&GitDiscoveryResult>,
    subscription_name: String,
) -> Result<GitDiscoveryResult, DiscoveryError> {
    let dir = cache_dir.join(CACHE_REPO);
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tracing::warn!(
                repo = %redact_url(&plan.url),
                cache = %dir.display(),
                error = %last,
                "git discovery cache unusable; deleting it and fetching again"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        match attempt_discovery(plan, &dir, previous) {
            Ok((commits, observed_refs)) => {
                return Ok(GitDiscoveryResult {
                    repo_url: plan.url.clone(),
                    commits,
                    subscription_name,
                    observed_refs,
                });
            }
            Err(Failure::Discovery(e)) => return Err(e),
            Err(Failure::Cache(e)) => last = e,
        }
    }
    Err(DiscoveryError::Malformed(format!(
        "{}: the fetched repository cannot be read: {last}",
        redact_url(&plan.url)
    )))
}

/// Opens the cache's bare repository, or makes it (again) when it is
/// missing, unreadable or for another URL.
fn open_cache(plan: &Plan, dir: &Path) -> Result<Repository, Failure> {
    if let Ok(repo) = Repository::open_bare(dir) {
        let same = repo
            .find_remote("origin")
            .ok()
            .is_some_and(|r| r.url().is_ok_and(|u| u == plan.url));
        if same {
            return Ok(repo);
        }
        drop(repo);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| Failure::Cache(format!("deleting {}: {e}", dir.display())))?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::Cache(format!("creating {}: {e}", parent.display())))?;
    }
    let repo = Repository::init_bare(dir).map_err(cache("creating the cache"))?;
    repo.remote("origin", &plan.url)
        .map_err(cache("adding the remote"))?;
    Ok(repo)
}

type Found = (Vec<DiscoveredCommit>, Option<GitDiscoveryRefs>);

fn attempt_discovery(
    plan: &Plan,
    dir: &Path,
    previous: Option<&GitDiscoveryResult>,
) -> Result<Found, Failure> {
    let repo = open_cache(plan, dir)?;
    let listing = ls_remote(&repo, plan)?;
    let observed = observe(plan, &listing);
    if let (Some(previous), Some(observed)) = (previous, &observed)
        && previous.repo_url == plan.url
        && previous.observed_refs.as_ref() == Some(observed)
    {
        tracing::debug!(
            repo = %redact_url(&plan.url),
            commits = previous.commits.len(),
            "remote refs unchanged since the last discovery; not fetching"
        );
        return Ok((previous.commits.clone(), Some(observed.clone())));
    }
    let commits = match &plan.strategy {
        Strategy::Branch { since } => branch_commits(plan, &repo, &listing, *since)?,
        Strategy::SemVer(selection) | Strategy::Lexical(selection) => {
            let names: Vec<&str> = listing.tags.keys().map(String::as_str).collect();
            let ordered = selection.order(names);
            tag_commits(plan, &repo, &listing, ordered, false)?
        }
        Strategy::NewestTag(selection) => {
            let names: Vec<String> = listing
                .tags
                .keys()
                .filter(|t| selection.matches(t))
                .cloned()
                .collect();
            tag_commits(plan, &repo, &listing, names, true)?
        }
    };
    Ok((commits, observed))
}

/// The remote's refs, from one advertisement.
#[derive(Default)]
struct Listing {
    /// HEAD's commit and the branch it names, if the remote says.
    head: Option<Oid>,
    default_branch: Option<String>,
    branches: BTreeMap<String, Oid>,
    /// Tag name → (the advertised id, the commit it peels to if given).
    tags: BTreeMap<String, (Oid, Option<Oid>)>,
}

fn ls_remote(repo: &Repository, plan: &Plan) -> Result<Listing, DiscoveryError> {
    let mut remote = repo.remote_anonymous(&plan.url).map_err(|e| {
        DiscoveryError::Config(format!("{}: {}", redact_url(&plan.url), e.message()))
    })?;
    let refused = Cell::new(false);
    let connection = remote
        .connect_auth(
            Direction::Fetch,
            Some(callbacks(&plan.access, &refused)),
            None,
        )
        .map_err(|e| remote_failure(plan, refused.get(), &e))?;
    let mut listing = Listing::default();
    let heads = connection
        .list()
        .map_err(|e| remote_failure(plan, refused.get(), &e))?;
    for head in heads {
        let name = head.name();
        if name == "HEAD" {
            listing.head = Some(head.oid());
            if let Some(target) = head.symref_target() {
                listing.default_branch = target.strip_prefix("refs/heads/").map(str::to_string);
            }
        } else if let Some(branch) = name.strip_prefix("refs/heads/") {
            listing.branches.insert(branch.to_string(), head.oid());
        } else if let Some(tag) = name.strip_prefix("refs/tags/") {
            if let Some(tag) = tag.strip_suffix("^{}") {
                if let Some(entry) = listing.tags.get_mut(tag) {
                    entry.1 = Some(head.oid());
                }
            } else {
                listing.tags.insert(tag.to_string(), (head.oid(), None));
            }
        }
    }
    if listing.default_branch.is_none()
        && let Ok(buf) = connection.default_branch()
        && let Ok(name) = buf.as_str()
    {
        listing.default_branch = name.strip_prefix("refs/heads/").map(str::to_string);
    }
    Ok(listing)
}

/// `observedRefs` as Kargo records them; none when the ref is missing or
/// too many tags pass.
fn observe(plan: &Plan, listing: &Listing) -> Option<GitDiscoveryRefs> {
    match plan.strategy.tags() {
        None => {
            let head = if plan.branch.is_empty() {
                listing.head
            } else {
                listing.branches.get(&plan.branch).copied()
            }?;
            Some(GitDiscoveryRefs {
                branch_head: head.to_string(),
                tags: Vec::new(),
            })
        }
        Some(selection) => {
            let tags: Vec<DiscoveredRef> = listing
                .tags
                .iter()
                .filter(|(name, _)| selection.matches(name))
                .map(|(name, (id, _))| DiscoveredRef {
                    name: name.clone(),
                    id: id.to_string(),
                })
                .collect();
            // BTreeMap order is byte order, as Kargo's strings.Compare.
            (tags.len() <= MAX_OBSERVED_TAGS).then_some(GitDiscoveryRefs {
                branch_head: String::new(),
                tags,
            })
        }
    }
}

/// A transport error, classified.
fn remote_failure(plan: &Plan, refused: bool, e: &git2::Error) -> DiscoveryError {
    let url = redact_url(&plan.url);
    let message = e.message().replace(&plan.url, &url);
    let lower = message.to_ascii_lowercase();
    if refused
        || e.code() == ErrorCode::Auth
        || (e.class() == ErrorClass::Http && (lower.contains("401") || lower.contains("403")))
    {
        let hint = if plan.access.credentials.is_some() {
            " with the credentials given for it"
        } else {
            " (no credentials match its URL)"
        };
        return DiscoveryError::Denied(format!("{url}: authentication failed{hint}"));
    }
    if e.code() == ErrorCode::NotFound
        || lower.contains("404")
        || lower.contains("could not find repository")
        || lower.contains("not a valid local path")
        || lower.contains("failed to resolve path")
        || lower.contains("repository not found")
        || lower.contains("not found")
    {
        return DiscoveryError::NotFound(format!("{url}: repository not found ({message})"));
    }
    DiscoveryError::Unavailable(format!("{url}: {message}"))
}

/// Fetches `refspecs` into the cache, `depth` commits deep where the
/// transport allows (0: everything).
fn fetch(repo: &Repository, plan: &Plan, refspecs: &[String], depth: usize) -> Result<(), Failure> {
    let mut remote = repo
        .find_remote("origin")
        .map_err(cache("finding the remote"))?;
    let refused = Cell::new(false);
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(&plan.access, &refused));
    options.download_tags(AutotagOption::None);
    if depth > 0 && plan.shallow_capable() {
        options.depth(i32::try_from(depth).unwrap_or(i32::MAX));
    }
    let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
    tracing::debug!(
        repo = %redact_url(&plan.url),
        refs = specs.len(),
        depth,
        "fetching for discovery"
    );
    remote
        .fetch(&specs, Some(&mut options), None)
        .map_err(|e| match e.class() {
            ErrorClass::Odb | ErrorClass::Object | ErrorClass::Repository | ErrorClass::Index => {
                Failure::Cache(format!("fetching: {}", e.message()))
            }
            _ => Failure::Discovery(remote_failure(plan, refused.get(), &e)),
        })
}

/// The cache opened again, to see what a fetch changed (libgit2 reads the
/// shallow boundary once per handle).
fn reopen(repo: &Repository) -> Result<Repository, Failure> {
    Repository::open_bare(repo.path()).map_err(cache("opening the cache"))
}

/// The commits the cache has only without their parents.
fn shallow_roots(repo: &Repository) -> HashSet<Oid> {
    std::fs::read_to_string(repo.path().join("shallow"))
        .map(|text| {
            text.lines()
                .filter_map(|l| Oid::from_str(l.trim()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn stored_depth(repo: &Repository) -> usize {
    repo.config()
        .and_then(|c| c.get_i64(DEPTH_KEY))
        .ok()
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(0)
}

fn store_depth(repo: &Repository, depth: usize) {
    if let Ok(mut config) = repo.config() {
        let _ = config.set_i64(DEPTH_KEY, i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

fn branch_commits(
    plan: &Plan,
    repo: &Repository,
    listing: &Listing,
    since: Option<i64>,
) -> Result<Vec<DiscoveredCommit>, Failure> {
    let name = if plan.branch.is_empty() {
        match (&listing.default_branch, listing.head) {
            (Some(name), _) => name.clone(),
            // An empty repository: nothing to discover yet.
            (None, None) => return Ok(Vec::new()),
            (None, Some(_)) => {
                return Err(DiscoveryError::NotFound(format!(
                    "{}: the remote names no default branch; set branch",
                    redact_url(&plan.url)
                ))
                .into());
            }
        }
    } else {
        plan.branch.clone()
    };
    let Some(&tip) = listing.branches.get(&name) else {
        return Err(DiscoveryError::NotFound(format!(
            "{}: branch {name:?} not found",
            redact_url(&plan.url)
        ))
        .into());
    };
    let refspec = format!("+refs/heads/{name}:refs/remotes/origin/{name}");
    let tracking = format!("refs/remotes/origin/{name}");
    let initial = if plan.paths.active() {
        (plan.limit * 5).max(100)
    } else {
        plan.limit
    };
    let mut depth = stored_depth(repo).max(initial).min(WALK_BUDGET + 1);
    let local = repo.refname_to_id(&tracking).ok();
    if local != Some(tip) || repo.find_commit(tip).is_err() || stored_depth(repo) < depth {
        fetch(repo, plan, std::slice::from_ref(&refspec), depth)?;
        store_depth(repo, depth);
    }
    loop {
        // A fresh handle: libgit2 keeps the shallow boundary it read.
        let repo = &reopen(repo)?;
        let walk = walk_first_parent(plan, repo, tip, since)?;
        let deeper = walk.hit_boundary
            && walk.walked < WALK_BUDGET
            && plan.shallow_capable()
            && depth <= WALK_BUDGET;
        if !deeper {
            tracing::debug!(
                repo = %redact_url(&plan.url),
                walked = walk.walked,
                found = walk.found.len(),
                depth,
                "walked the branch"
            );
            return walk
                .found
                .iter()
                .map(|oid| {
                    let commit = repo.find_commit(*oid).map_err(cache("reading a commit"))?;
                    Ok(described(
                        &commit,
                        &plan.branch,
                        "",
                        commit.time().seconds(),
                    ))
                })
                .collect();
        }
        depth = (depth * 4).min(WALK_BUDGET + 1);
        fetch(repo, plan, std::slice::from_ref(&refspec), depth)?;
        store_depth(repo, depth);
    }
}

struct Walk {
    found: Vec<Oid>,
    walked: usize,
    /// The walk reached commits whose parents the cache lacks.
    hit_boundary: bool,
}

fn walk_first_parent(
    plan: &Plan,
    repo: &Repository,
    tip: Oid,
    since: Option<i64>,
) -> Result<Walk, Failure> {
    let shallow = shallow_roots(repo);
    let mut walk = Walk {
        found: Vec::new(),
        walked: 0,
        hit_boundary: false,
    };
    let mut next = Some(tip);
    // libgit2 caches the trees a diff reads per handle (up to 256 MiB): a
    // fresh handle every so often keeps a long walk's memory flat.
    let mut handle = reopen(repo)?;
    while let Some(oid) = next {
        if walk.found.len() >= plan.limit || walk.walked >= WALK_BUDGET {
            break;
        }
        if walk.walked > 0 && walk.walked.is_multiple_of(HANDLE_COMMITS) {
            handle = reopen(repo)?;
        }
        let repo = &handle;
        let commit = repo.find_commit(oid).map_err(cache("reading a commit"))?;
        if since.is_some_and(|since| commit.time().seconds() < since) {
            break;
        }
        let is_shallow = shallow.contains(&oid);
        if plan.paths.active() {
            if is_shallow {
                walk.hit_boundary = true;
                break;
            }
            walk.walked += 1;
            if plan.paths.matches(&changed_paths(repo, &commit)?) {
                walk.found.push(oid);
            }
        } else {
            walk.walked += 1;
            walk.found.push(oid);
        }
        next = if is_shallow {
            walk.hit_boundary = walk.found.len() < plan.limit;
            None
        } else {
            commit.parent_ids().next()
        };
    }
    Ok(walk)
}

/// The paths `commit` changed against its first parent (everything for a
/// root commit), both sides of a rename.
fn changed_paths(repo: &Repository, commit: &git2::Commit<'_>) -> Result<Vec<String>, Failure> {
    let tree = commit.tree().map_err(cache("reading a tree"))?;
    let parent = match commit.parent_ids().next() {
        Some(parent) => Some(
            repo.find_commit(parent)
                .and_then(|p| p.tree())
                .map_err(cache("reading a parent tree"))?,
        ),
        None => None,
    };
    let diff = repo
        .diff_tree_to_tree(parent.as_ref(), Some(&tree), None)
        .map_err(cache("comparing trees"))?;
    let mut paths = Vec::with_capacity(diff.deltas().len());
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path_bytes() {
                let path = String::from_utf8_lossy(path).into_owned();
                if paths.last() != Some(&path) {
                    paths.push(path);
                }
            }
        }
    }
    Ok(paths)
}

/// The commits of tags `names` (in order; `by_date` sorts them newest
/// first by creator date instead), filtered by the paths, at most the
/// limit.
fn tag_commits(
    plan: &Plan,
    repo: &Repository,
    listing: &Listing,
    names: Vec<String>,
    by_date: bool,
) -> Result<Vec<DiscoveredCommit>, Failure> {
    prune_tags(repo, listing)?;
    let depth = if plan.paths.active() { 2 } else { 1 };
    let mut found = Vec::new();
    if by_date {
        if names.len() > WALK_BUDGET {
            return Err(DiscoveryError::TooLarge(format!(
                "{}: {} tags pass the tag filters, more than the {WALK_BUDGET} NewestTag \
                 compares; narrow allowTagsRegexes or ignoreTagsRegexes",
                redact_url(&plan.url),
                names.len()
            ))
            .into());
        }
        // Creator dates need every candidate.
        fetch_tags(plan, repo, listing, &names, depth)?;
        let repo = &reopen(repo)?;
        let mut tagged: Vec<Tagged> = names
            .iter()
            .filter_map(|name| tagged(repo, name).transpose())
            .collect::<Result<_, _>>()?;
        tagged.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.name.cmp(&b.name)));
        for tag in tagged {
            if found.len() >= plan.limit {
                break;
            }
            if let Some(commit) = keep_tag(plan, repo, &tag)? {
                found.push(commit);
            }
        }
        return Ok(found);
    }
    // Name order decides: only the first tags are ever examined.
    let names = &names[..names.len().min(WALK_BUDGET)];
    let mut start = 0;
    while start < names.len() && found.len() < plan.limit {
        let wanted = (plan.limit - found.len()) * if plan.paths.active() { 2 } else { 1 };
        let batch = &names[start..(start + wanted).min(names.len())];
        start += batch.len();
        fetch_tags(plan, repo, listing, batch, depth)?;
        let fresh = reopen(repo)?;
        for name in batch {
            if found.len() >= plan.limit {
                break;
            }
            if let Some(tag) = tagged(&fresh, name)?
                && let Some(commit) = keep_tag(plan, &fresh, &tag)?
            {
                found.push(commit);
            }
        }
    }
    Ok(found)
}

/// Deletes the cache's tags the remote no longer has.
fn prune_tags(repo: &Repository, listing: &Listing) -> Result<(), Failure> {
    let stale: Vec<String> = repo
        .references_glob("refs/tags/*")
        .map_err(cache("listing tags"))?
        .filter_map(Result::ok)
        .filter_map(|r| r.name().ok().map(str::to_string))
        .filter(|name| {
            name.strip_prefix("refs/tags/")
                .is_some_and(|t| !listing.tags.contains_key(t))
        })
        .collect();
    for name in stale {
        if let Ok(mut reference) = repo.find_reference(&name) {
            let _ = reference.delete();
        }
    }
    Ok(())
}

/// Fetches the tags among `names` the cache lacks (or has elsewhere, or
/// without the parents a path filter needs).
fn fetch_tags(
    plan: &Plan,
    repo: &Repository,
    listing: &Listing,
    names: &[String],
    depth: usize,
) -> Result<(), Failure> {
    let shallow = if plan.paths.active() {
        shallow_roots(repo)
    } else {
        HashSet::new()
    };
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| {
            let Some((id, _)) = listing.tags.get(name.as_str()) else {
                return false;
            };
            match repo.refname_to_id(&format!("refs/tags/{name}")) {
                Ok(local) if local == *id => repo
                    .find_object(local, None)
                    .and_then(|o| o.peel_to_commit())
                    .map(|c| shallow.contains(&c.id()))
                    .unwrap_or(true),
                _ => true,
            }
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let refspecs: Vec<String> = if missing.len() > MAX_TAG_REFSPECS {
        vec!["+refs/tags/*:refs/tags/*".to_string()]
    } else {
        missing
            .iter()
            .map(|t| format!("+refs/tags/{t}:refs/tags/{t}"))
            .collect()
    };
    fetch(repo, plan, &refspecs, depth)
}

struct Tagged<'r> {
    name: String,
    commit: git2::Commit<'r>,
    /// The tagger's time for an annotated tag, else the commit's.
    date: i64,
}

/// Tag `name` of the cache; none when it is missing or names no commit.
fn tagged<'r>(repo: &'r Repository, name: &str) -> Result<Option<Tagged<'r>>, Failure> {
    let Ok(object) = repo.revparse_single(&format!("refs/tags/{name}")) else {
        return Ok(None);
    };
    let tagger_time = object
        .as_tag()
        .and_then(|t| t.tagger().map(|s| s.when().seconds()));
    let Ok(commit) = object.peel_to_commit() else {
        return Ok(None);
    };
    let date = tagger_time.unwrap_or_else(|| commit.time().seconds());
    Ok(Some(Tagged {
        name: name.to_string(),
        commit,
        date,
    }))
}

fn keep_tag(
    plan: &Plan,
    repo: &Repository,
    tag: &Tagged<'_>,
) -> Result<Option<DiscoveredCommit>, Failure> {
    if plan.paths.active() && !plan.paths.matches(&changed_paths(repo, &tag.commit)?) {
        return Ok(None);
    }
    Ok(Some(described(&tag.commit, "", &tag.name, tag.date)))
}

/// A discovered commit as Kargo describes it.
fn described(commit: &git2::Commit<'_>, branch: &str, tag: &str, date: i64) -> DiscoveredCommit {
    let person = |s: git2::Signature<'_>| {
        format!(
            "{} <{}>",
            String::from_utf8_lossy(s.name_bytes()),
            String::from_utf8_lossy(s.email_bytes())
        )
    };
    let subject = commit
        .summary_bytes()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    DiscoveredCommit {
        id: commit.id().to_string(),
        branch: branch.to_string(),
        tag: tag.to_string(),
        subject: shorten(&subject, MAX_SUBJECT),
        author: person(commit.author()),
        committer: person(commit.committer()),
        creator_date: Some(rfc3339(date)),
    }
}

/// Kargo's shortening: longer than `max` bytes → the first `max - 3`
/// bytes (here: whole characters) and `...`.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Seconds since the epoch as Kubernetes writes times (UTC, seconds).
fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn matcher(p: &str) -> PathMatcher {
        PathMatcher::parse(p).unwrap()
    }

    #[test]
    fn a_base_directory_matches_itself_and_what_is_under_it_only() {
        let m = matcher("apps/web");
        assert!(m.matches("apps/web"));
        assert!(m.matches("apps/web/deploy.yaml"));
        assert!(m.matches("apps/web/a/b/c"));
        assert!(!m.matches("apps/webapp/deploy.yaml"));
        assert!(!m.matches("apps"));
        assert!(!m.matches("other/apps/web/x"));
        assert!(matcher("apps/web/").matches("apps/web/x"));
        assert!(matcher("./apps").matches("apps/x"));
        assert!(matcher("").matches("anything/at/all"));
        assert!(matcher(".").matches("x"));
        // Go's filepath.Rel result holding ".." anywhere is refused.
        assert!(!m.matches("apps/web/a..b"));
    }

    #[test]
    fn globs_keep_single_stars_within_a_directory() {
        assert!(matcher("glob:apps/*.yaml").matches("apps/a.yaml"));
        assert!(!matcher("glob:apps/*.yaml").matches("apps/x/a.yaml"));
        assert!(matcher("glob:apps/**/*.yaml").matches("apps/x/y/a.yaml"));
        assert!(matcher("glob:apps/**").matches("apps/x/y"));
        assert!(matcher("glob:{a,b}/*").matches("b/c"));
        assert!(PathMatcher::parse("glob:[").is_err());
    }

    #[test]
    fn regexes_match_anywhere_in_the_path() {
        assert!(matcher("regex:\\.md$").matches("docs/readme.md"));
        assert!(matcher("regexp:^charts/").matches("charts/x"));
        assert!(!matcher("regexp:^charts/").matches("src/charts/x"));
        assert!(PathMatcher::parse("regex:(").is_err());
    }

    #[test]
    fn a_commit_is_kept_when_one_path_is_included_and_not_excluded() {
        let f = PathFilter::new(
            "s",
            &["apps".to_string()],
            &["glob:apps/**/*.md".to_string()],
        )
        .unwrap();
        assert!(f.matches(&["apps/x.yaml"]));
        assert!(!f.matches(&["apps/x/readme.md"]));
        assert!(f.matches(&["apps/x/readme.md", "apps/x/values.yaml"]));
        assert!(!f.matches(&["src/main.rs"]));
        let only_exclude = PathFilter::new("s", &[], &["docs".to_string()]).unwrap();
        assert!(only_exclude.matches(&["src/a"]));
        assert!(!only_exclude.matches(&["docs/a"]));
        assert!(!only_exclude.matches::<&str>(&[]));
    }

    #[test]
    fn subjects_are_cut_as_kargo_cuts_them() {
        assert_eq!(shorten("short", 80), "short");
        let long = "x".repeat(81);
        assert_eq!(shorten(&long, 80), format!("{}...", "x".repeat(77)));
        let wide = "é".repeat(50);
        let cut = shorten(&wide, 80);
        assert!(cut.ends_with("...") && cut.len() <= 80);
    }

    #[test]
    fn times_are_written_in_utc_to_the_second() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn paths_are_cleaned_as_go_cleans_them() {
        assert_eq!(clean("a//b/./c/"), "a/b/c");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn branch_names_follow_kargos_rule() {
        assert!(valid_branch("main"));
        assert!(valid_branch("release/1.2"));
        assert!(!valid_branch("-x"));
        assert!(!valid_branch("a b"));
        assert!(!valid_branch("x/"));
    }
}
