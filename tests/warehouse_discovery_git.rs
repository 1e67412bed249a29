//! Git commit discovery for Warehouses, against real repositories: local
//! ones over `file://` and the test git server over smart HTTP with basic
//! auth.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use barge::api::warehouse::{CommitSelectionStrategy, GitSubscription};
use barge::warehouse::discovered::{DiscoveryError, GitDiscoveryResult};
use barge::warehouse::git::{CACHE_REPO, Credentials, WALK_BUDGET, discover};
use barge_testenv::git_server::{GitServer, Login};

const AT: &str = "spec.subscriptions[0].git";
const BASE_TIME: i64 = 1_700_000_000;

fn git_in(dir: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new("git")
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A source repository whose commits and tags get increasing, known
/// dates (a minute apart), authored by Alice and committed by Bob.
struct Src {
    dir: tempfile::TempDir,
    clock: Cell<i64>,
}

impl Src {
    fn new() -> Self {
        let src = Src {
            dir: tempfile::tempdir().unwrap(),
            clock: Cell::new(BASE_TIME),
        };
        src.git(&["init", "-q", "-b", "main"]);
        src
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A minute later than the last commit or tag.
    fn tick(&self) {
        self.clock.set(self.clock.get() + 60);
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let now = self.clock.get();
        let date = format!("{now} +0200");
        vec![
            ("GIT_AUTHOR_NAME", "Alice".into()),
            ("GIT_AUTHOR_EMAIL", "alice@example.com".into()),
            ("GIT_COMMITTER_NAME", "Bob".into()),
            ("GIT_COMMITTER_EMAIL", "bob@example.com".into()),
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_DATE", date),
        ]
    }

    fn git(&self, args: &[&str]) -> String {
        git_in(self.dir.path(), args, &self.env())
    }

    /// Writes `file` and commits it; returns the commit.
    fn commit(&self, file: &str, message: &str) -> String {
        let path = self.dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{message}\n{}\n", self.clock.get())).unwrap();
        self.git(&["add", "-A"]);
        self.tick();
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn tag(&self, name: &str) {
        self.git(&["tag", name]);
    }

    fn annotated_tag(&self, name: &str, at: &str) {
        self.tick();
        self.git(&["tag", "-a", "-m", &format!("release {name}"), name, at]);
    }
}

fn sub(url: &str, strategy: CommitSelectionStrategy) -> GitSubscription {
    GitSubscription {
        repo_url: url.to_string(),
        commit_selection_strategy: strategy,
        ..GitSubscription::default()
    }
}

async fn run(sub: &GitSubscription, cache: &Path) -> Result<GitDiscoveryResult, DiscoveryError> {
    discover(sub, AT, Some("src"), None, cache, None).await
}

fn ids(result: &GitDiscoveryResult) -> Vec<&str> {
    result.commits.iter().map(|c| c.id.as_str()).collect()
}

fn tags(result: &GitDiscoveryResult) -> Vec<&str> {
    result.commits.iter().map(|c| c.tag.as_str()).collect()
}

fn login() -> Login {
    Login {
        username: "bot".into(),
        password: "s3cret-pw".into(),
    }
}

fn good_credentials() -> Credentials {
    Credentials {
        username: "bot".into(),
        password: "s3cret-pw".into(),
    }
}

/// Serves `src` as repository `name` over HTTP.
fn serve(server: &GitServer, name: &str, src: &Path) -> String {
    let bare = server.path(name);
    git_in(
        Path::new("/"),
        &[
            "clone",
            "-q",
            "--bare",
            &src.display().to_string(),
            &bare.display().to_string(),
        ],
        &[],
    );
    server.http_url(name)
}

fn fetch_head(cache: &Path) -> Option<SystemTime> {
    std::fs::metadata(cache.join(CACHE_REPO).join("FETCH_HEAD"))
        .and_then(|m| m.modified())
        .ok()
}

/// Commits reachable from the cache's refs (as the cache holds them,
/// shallow or not).
fn cached_commits(cache: &Path) -> usize {
    git_in(
        &cache.join(CACHE_REPO),
        &["rev-list", "--count", "--all"],
        &[],
    )
    .parse()
    .unwrap()
}

// ---------------------------------------------------------------- branch

#[tokio::test]
async fn newest_from_branch_lists_the_default_branch_newest_first_with_kargo_metadata() {
    let src = Src::new();
    let first = src.commit("a.txt", "first");
    let second = src.commit(
        "b.txt",
        "second: subject line\n\nbody that is not part of the subject",
    );
    let cache = tempfile::tempdir().unwrap();
    let found = run(
        &sub(&src.url(), CommitSelectionStrategy::NewestFromBranch),
        cache.path(),
    )
    .await
    .unwrap();
    assert_eq!(ids(&found), [second.as_str(), first.as_str()]);
    assert_eq!(found.repo_url, src.url());
    assert_eq!(found.subscription_name, "src");
    let newest = &found.commits[0];
    assert_eq!(newest.subject, "second: subject line");
    assert_eq!(newest.author, "Alice <alice@example.com>");
    assert_eq!(newest.committer, "Bob <bob@example.com>");
    // The commit's date (+0200 in the commit), in UTC to the second.
    assert_eq!(newest.creator_date.as_deref(), Some("2023-11-14T22:15:20Z"));
    // Kargo reports the subscription's branch, empty when it names none.
    assert_eq!(newest.branch, "");
    assert_eq!(newest.tag, "");
    let refs = found.observed_refs.unwrap();
    assert_eq!(refs.branch_head, second);
    assert!(refs.tags.is_empty());
}

#[tokio::test]
async fn newest_from_branch_follows_the_named_branch_along_first_parents_only() {
    let src = Src::new();
    let base = src.commit("a.txt", "base");
    src.git(&["checkout", "-q", "-b", "release"]);
    let r1 = src.commit("r.txt", "release one");
    src.git(&["checkout", "-q", "-b", "feature"]);
    let side = src.commit("f.txt", "feature work");
    src.git(&["checkout", "-q", "release"]);
    let r2 = src.commit("r2.txt", "release two");
    src.git(&["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
    let merge = src.git(&["rev-parse", "HEAD"]);
    let mut s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    s.branch = "release".into();
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(
        ids(&found),
        [merge.as_str(), r2.as_str(), r1.as_str(), base.as_str()]
    );
    assert!(!ids(&found).contains(&side.as_str()));
    assert!(found.commits.iter().all(|c| c.branch == "release"));
}

#[tokio::test]
async fn discovery_limit_keeps_only_the_newest_commits() {
    let src = Src::new();
    let made: Vec<String> = (0..30)
        .map(|i| src.commit("a.txt", &format!("c{i}")))
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let mut s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(found.commits.len(), 20, "the default limit");
    assert_eq!(found.commits[0].id, made[29]);
    s.discovery_limit = Some(3);
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(ids(&found), [&made[29], &made[28], &made[27]]);
}

#[tokio::test]
async fn since_drops_commits_committed_before_it() {
    let src = Src::new();
    src.commit("a.txt", "old");
    let new = src.commit("a.txt", "new");
    let mut s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    // Between the two commits (a minute apart).
    s.since = Some("2023-11-14T22:14:50Z".into());
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(ids(&found), [new.as_str()]);
}

#[tokio::test]
async fn include_paths_as_a_base_directory_keep_commits_touching_it() {
    let src = Src::new();
    let app = src.commit("apps/web/deploy.yaml", "web");
    src.commit(
        "apps/webapp/deploy.yaml",
        "webapp (a sibling, not under apps/web)",
    );
    src.commit("docs/readme.md", "docs");
    let mut s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    s.include_paths = vec!["apps/web".into()];
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(ids(&found), [app.as_str()]);
}

#[tokio::test]
async fn include_glob_and_exclude_regex_combine() {
    let src = Src::new();
    let yaml = src.commit("apps/a/values.yaml", "values");
    src.commit("apps/a/readme.md", "readme");
    src.commit(
        "apps/a/deep/x.yaml",
        "deep yaml (a single star stays in its directory)",
    );
    src.commit("apps/b/skip.yaml", "skipped by the exclude");
    let mut s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    s.include_paths = vec!["glob:apps/*/*.yaml".into()];
    s.exclude_paths = vec!["regexp:^apps/b/".into()];
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(ids(&found), [yaml.as_str()]);
}

#[tokio::test]
async fn exclude_paths_alone_drop_commits_touching_only_excluded_paths() {
    let src = Src::new();
    let code = src.commit("src/main.rs", "code");
    src.commit("docs/guide.md", "docs only");
    let mut s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    s.exclude_paths = vec!["regex:\\.md$".into()];
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    // The root commit counts as adding its files.
    assert_eq!(ids(&found), [code.as_str()]);
}

// ---------------------------------------------------------------- tags

/// Tags v1.0.0 … on successive commits, and a few that are not versions.
fn tagged_repo() -> (Src, Vec<String>) {
    let src = Src::new();
    let mut made = Vec::new();
    for tag in [
        "v1.0.0",
        "v1.1.0",
        "1.2",
        "v2.0.0-rc.1",
        "v2.0.0",
        "latest",
        "v01.3.0",
    ] {
        made.push(src.commit("a.txt", &format!("for {tag}")));
        src.tag(tag);
    }
    (src, made)
}

#[tokio::test]
async fn semver_is_strict_by_default_and_newest_version_first() {
    let (src, made) = tagged_repo();
    let cache = tempfile::tempdir().unwrap();
    let found = run(
        &sub(&src.url(), CommitSelectionStrategy::SemVer),
        cache.path(),
    )
    .await
    .unwrap();
    assert_eq!(tags(&found), ["v2.0.0", "v2.0.0-rc.1", "v1.1.0", "v1.0.0"]);
    assert_eq!(found.commits[0].id, made[4]);
    assert_eq!(found.commits[0].subject, "for v2.0.0");
    assert_eq!(found.commits[0].branch, "");
}

#[tokio::test]
async fn semver_non_strict_admits_partial_versions() {
    let (src, _) = tagged_repo();
    let mut s = sub(&src.url(), CommitSelectionStrategy::SemVer);
    s.strict_semvers = Some(false);
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(
        tags(&found),
        [
            "v2.0.0",
            "v2.0.0-rc.1",
            "v01.3.0",
            "1.2",
            "v1.1.0",
            "v1.0.0"
        ]
    );
}

#[tokio::test]
async fn semver_constraint_limits_the_versions_and_is_recorded_in_observed_refs() {
    let (src, _) = tagged_repo();
    let mut s = sub(&src.url(), CommitSelectionStrategy::SemVer);
    s.semver_constraint = "^1.0.0".into();
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(tags(&found), ["v1.1.0", "v1.0.0"]);
    let observed: Vec<String> = found
        .observed_refs
        .unwrap()
        .tags
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(observed, ["v1.0.0", "v1.1.0"]);
}

#[tokio::test]
async fn allow_and_ignore_tag_regexes_filter_tag_names() {
    let (src, _) = tagged_repo();
    let mut s = sub(&src.url(), CommitSelectionStrategy::Lexical);
    s.allow_tags_regexes = vec!["^v".into()];
    s.ignore_tags_regexes = vec!["-rc".into(), "^v01".into()];
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(tags(&found), ["v2.0.0", "v1.1.0", "v1.0.0"]);
}

#[tokio::test]
async fn lexical_orders_tags_in_reverse_byte_order_up_to_the_limit() {
    let (src, _) = tagged_repo();
    let mut s = sub(&src.url(), CommitSelectionStrategy::Lexical);
    s.discovery_limit = Some(3);
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(tags(&found), ["v2.0.0-rc.1", "v2.0.0", "v1.1.0"]);
}

#[tokio::test]
async fn newest_tag_sorts_annotated_tags_by_tagger_date_and_lightweight_by_commit_date() {
    let src = Src::new();
    let old = src.commit("a.txt", "old commit");
    let new = src.commit("a.txt", "new commit");
    // Lightweight on the newest commit: dated by that commit.
    src.tag("light");
    // Annotated, made later on the old commit: dated by the tagger.
    src.annotated_tag("annotated", &old);
    let cache = tempfile::tempdir().unwrap();
    let found = run(
        &sub(&src.url(), CommitSelectionStrategy::NewestTag),
        cache.path(),
    )
    .await
    .unwrap();
    assert_eq!(tags(&found), ["annotated", "light"]);
    assert_eq!(ids(&found), [old.as_str(), new.as_str()]);
    // The commit's subject, not the tag message; the tagger's date.
    assert_eq!(found.commits[0].subject, "old commit");
    assert_eq!(
        found.commits[0].creator_date.as_deref(),
        Some("2023-11-14T22:16:20Z")
    );
    assert_eq!(
        found.commits[1].creator_date.as_deref(),
        Some("2023-11-14T22:15:20Z")
    );
}

#[tokio::test]
async fn observed_tags_carry_the_tag_object_of_an_annotated_tag() {
    let src = Src::new();
    let commit = src.commit("a.txt", "one");
    src.annotated_tag("v1.0.0", &commit);
    let tag_object = src.git(&["rev-parse", "refs/tags/v1.0.0"]);
    assert_ne!(tag_object, commit);
    let cache = tempfile::tempdir().unwrap();
    let found = run(
        &sub(&src.url(), CommitSelectionStrategy::SemVer),
        cache.path(),
    )
    .await
    .unwrap();
    assert_eq!(found.commits[0].id, commit);
    let refs = found.observed_refs.unwrap();
    assert_eq!(refs.tags.len(), 1);
    assert_eq!(refs.tags[0].id, tag_object);
    assert!(refs.branch_head.is_empty());
}

#[tokio::test]
async fn tag_path_filters_look_at_the_tagged_commit_against_its_parent() {
    let src = Src::new();
    src.commit("chart/values.yaml", "chart");
    src.tag("v1.0.0");
    src.commit("docs/a.md", "docs");
    src.tag("v1.1.0");
    src.commit("chart/values.yaml", "chart again");
    src.tag("v1.2.0");
    let mut s = sub(&src.url(), CommitSelectionStrategy::SemVer);
    s.include_paths = vec!["chart".into()];
    let cache = tempfile::tempdir().unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(tags(&found), ["v1.2.0", "v1.0.0"]);
}

#[tokio::test]
async fn shallow_tag_fetches_over_http_still_diff_each_tag_against_its_parent() {
    let server = GitServer::start(login()).await.unwrap();
    let src = Src::new();
    src.commit("chart/values.yaml", "chart");
    src.tag("v0.1.0");
    for tag in ["v1.0.0", "v1.1.0", "v1.2.0"] {
        src.commit(&format!("docs/{tag}.md"), &format!("docs {tag}"));
        src.tag(tag);
    }
    let url = serve(&server, "tags", src.path());
    let mut s = sub(&url, CommitSelectionStrategy::SemVer);
    s.include_paths = vec!["chart".into()];
    // One wanted: fetched two tags at a time, two commits deep, so v1.0.0's
    // commit arrives first as the parentless edge of v1.1.0's fetch; a
    // diff against nothing would wrongly count chart/ for it.
    s.discovery_limit = Some(1);
    let cache = tempfile::tempdir().unwrap();
    let found = discover(&s, AT, None, Some(&good_credentials()), cache.path(), None)
        .await
        .unwrap();
    assert_eq!(tags(&found), ["v0.1.0"]);
    assert!(cached_commits(cache.path()) <= 4);
}

// ------------------------------------------------------- incremental

#[tokio::test]
async fn a_second_discovery_finds_a_new_commit() {
    let server = GitServer::start(login()).await.unwrap();
    let src = Src::new();
    let first = src.commit("a.txt", "first");
    let url = serve(&server, "app", src.path());
    let s = sub(&url, CommitSelectionStrategy::NewestFromBranch);
    let cache = tempfile::tempdir().unwrap();
    let creds = good_credentials();
    let one = discover(&s, AT, None, Some(&creds), cache.path(), None)
        .await
        .unwrap();
    assert_eq!(ids(&one), [first.as_str()]);
    let second = server.commit_file("app", "main", "b.txt", "more").unwrap();
    let two = discover(&s, AT, None, Some(&creds), cache.path(), Some(&one))
        .await
        .unwrap();
    assert_eq!(ids(&two), [second.as_str(), first.as_str()]);
    assert_eq!(two.observed_refs.unwrap().branch_head, second);
}

#[tokio::test]
async fn unchanged_refs_reuse_the_previous_commits_without_fetching() {
    let server = GitServer::start(login()).await.unwrap();
    let src = Src::new();
    src.commit("a.txt", "first");
    let url = serve(&server, "app", src.path());
    let s = sub(&url, CommitSelectionStrategy::NewestFromBranch);
    let cache = tempfile::tempdir().unwrap();
    let creds = good_credentials();
    let mut one = discover(&s, AT, None, Some(&creds), cache.path(), None)
        .await
        .unwrap();
    let fetched = fetch_head(cache.path()).expect("the first discovery fetched");
    // Marked, so that a result recomputed from the repository would show.
    one.commits[0].subject = "as found before".into();
    std::thread::sleep(Duration::from_millis(20));
    let two = discover(&s, AT, None, Some(&creds), cache.path(), Some(&one))
        .await
        .unwrap();
    assert_eq!(two.commits, one.commits);
    assert_eq!(two.observed_refs, one.observed_refs);
    assert_eq!(fetch_head(cache.path()), Some(fetched), "no fetch");
}

#[tokio::test]
async fn unchanged_tags_reuse_the_previous_commits_and_a_new_tag_is_found() {
    let (src, _) = tagged_repo();
    let s = sub(&src.url(), CommitSelectionStrategy::SemVer);
    let cache = tempfile::tempdir().unwrap();
    let one = run(&s, cache.path()).await.unwrap();
    let fetched = fetch_head(cache.path()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let two = discover(&s, AT, Some("src"), None, cache.path(), Some(&one))
        .await
        .unwrap();
    assert_eq!(two, one);
    assert_eq!(fetch_head(cache.path()), Some(fetched));
    // A tag the filters ignore does not count as a change either.
    src.tag("not-a-version");
    let three = discover(&s, AT, Some("src"), None, cache.path(), Some(&one))
        .await
        .unwrap();
    assert_eq!(fetch_head(cache.path()), Some(fetched));
    assert_eq!(three, one);
    src.commit("a.txt", "three");
    src.tag("v3.0.0");
    let four = discover(&s, AT, Some("src"), None, cache.path(), Some(&one))
        .await
        .unwrap();
    assert_eq!(tags(&four)[0], "v3.0.0");
}

#[tokio::test]
async fn a_corrupt_cache_is_deleted_and_fetched_again() {
    let src = Src::new();
    let first = src.commit("a.txt", "first");
    let cache = tempfile::tempdir().unwrap();
    let s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    run(&s, cache.path()).await.unwrap();
    let repo = cache.path().join(CACHE_REPO);
    // Objects gone, config garbage.
    std::fs::remove_dir_all(repo.join("objects")).unwrap();
    std::fs::write(repo.join("config"), "[[[not a config").unwrap();
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(ids(&found), [first.as_str()]);
}

#[tokio::test]
async fn a_cache_that_lost_its_objects_is_deleted_and_fetched_again() {
    let src = Src::new();
    src.commit("a.txt", "first");
    let cache = tempfile::tempdir().unwrap();
    let s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    run(&s, cache.path()).await.unwrap();
    let repo = cache.path().join(CACHE_REPO);
    std::fs::remove_dir_all(repo.join("objects")).unwrap();
    let second = src.commit("a.txt", "second");
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(found.commits[0].id, second);
    assert_eq!(found.commits.len(), 2);
}

#[tokio::test]
async fn a_cache_with_a_damaged_pack_is_deleted_and_fetched_again() {
    let src = Src::new();
    let first = src.commit("a.txt", "first");
    let cache = tempfile::tempdir().unwrap();
    let s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    run(&s, cache.path()).await.unwrap();
    let packs = cache.path().join(CACHE_REPO).join("objects/pack");
    let mut damaged = 0;
    for entry in std::fs::read_dir(&packs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pack") {
            let bytes = std::fs::read(&path).unwrap();
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&path, perms).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let found = run(&s, cache.path()).await.unwrap();
    assert_eq!(ids(&found), [first.as_str()]);
}

// ------------------------------------------------------ access, errors

#[tokio::test]
async fn the_right_credentials_reach_a_private_repository() {
    let server = GitServer::start(login()).await.unwrap();
    let src = Src::new();
    let first = src.commit("a.txt", "first");
    let url = serve(&server, "private", src.path());
    let cache = tempfile::tempdir().unwrap();
    let found = discover(
        &sub(&url, CommitSelectionStrategy::NewestFromBranch),
        AT,
        None,
        Some(&good_credentials()),
        cache.path(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ids(&found), [first.as_str()]);
}

#[tokio::test]
async fn wrong_credentials_are_denied_naming_the_repository_not_the_password() {
    let server = GitServer::start(login()).await.unwrap();
    let src = Src::new();
    src.commit("a.txt", "first");
    let url = serve(&server, "private", src.path());
    let cache = tempfile::tempdir().unwrap();
    let wrong = Credentials {
        username: "bot".into(),
        password: "wrong-pw".into(),
    };
    let err = discover(
        &sub(&url, CommitSelectionStrategy::NewestFromBranch),
        AT,
        None,
        Some(&wrong),
        cache.path(),
        None,
    )
    .await
    .unwrap_err();
    let DiscoveryError::Denied(message) = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains(&url), "{message}");
    assert!(!message.contains("wrong-pw"), "{message}");
    assert!(server.refused() > 0);
}

#[tokio::test]
async fn missing_credentials_are_denied() {
    let server = GitServer::start(login()).await.unwrap();
    let src = Src::new();
    src.commit("a.txt", "first");
    let url = serve(&server, "private", src.path());
    let cache = tempfile::tempdir().unwrap();
    let err = run(
        &sub(&url, CommitSelectionStrategy::NewestFromBranch),
        cache.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DiscoveryError::Denied(_)), "{err:?}");
    assert_eq!(err.reason(), "AccessDenied");
}

#[tokio::test]
async fn user_information_in_the_url_is_redacted_from_errors() {
    let server = GitServer::start(login()).await.unwrap();
    let src = Src::new();
    src.commit("a.txt", "first");
    let url = serve(&server, "private", src.path());
    let with_password = url.replace("http://", "http://bot:in-url-pw@");
    let cache = tempfile::tempdir().unwrap();
    let err = run(
        &sub(&with_password, CommitSelectionStrategy::NewestFromBranch),
        cache.path(),
    )
    .await;
    // libgit2 may use the URL's credentials or not; either way no password
    // appears in an error.
    if let Err(err) = err {
        assert!(!err.to_string().contains("in-url-pw"), "{err}");
    }
}

#[tokio::test]
async fn a_missing_branch_is_not_found_naming_the_branch() {
    let src = Src::new();
    src.commit("a.txt", "first");
    let mut s = sub(&src.url(), CommitSelectionStrategy::NewestFromBranch);
    s.branch = "nope".into();
    let cache = tempfile::tempdir().unwrap();
    let err = run(&s, cache.path()).await.unwrap_err();
    let DiscoveryError::NotFound(message) = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("\"nope\""), "{message}");
}

#[tokio::test]
async fn a_missing_repository_over_http_is_not_found() {
    let server = GitServer::start(login()).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = discover(
        &sub(
            &server.http_url("absent"),
            CommitSelectionStrategy::NewestFromBranch,
        ),
        AT,
        None,
        Some(&good_credentials()),
        cache.path(),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DiscoveryError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_missing_local_repository_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/absent", dir.path().display());
    let cache = tempfile::tempdir().unwrap();
    let err = run(
        &sub(&url, CommitSelectionStrategy::NewestFromBranch),
        cache.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DiscoveryError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let err = run(
        &sub(
            &format!("http://127.0.0.1:{port}/app.git"),
            CommitSelectionStrategy::NewestFromBranch,
        ),
        cache.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DiscoveryError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_empty_repository_yields_no_commits() {
    let src = Src::new();
    let cache = tempfile::tempdir().unwrap();
    let found = run(
        &sub(&src.url(), CommitSelectionStrategy::NewestFromBranch),
        cache.path(),
    )
    .await
    .unwrap();
    assert!(found.commits.is_empty());
    assert!(found.observed_refs.is_none());
}

#[tokio::test]
async fn bad_filters_are_config_errors_naming_the_field() {
    let cache = tempfile::tempdir().unwrap();
    let url = "https://git.example.com/app.git";
    let cases: Vec<(GitSubscription, &str)> = vec![
        (
            GitSubscription {
                include_paths: vec!["regex:(".into()],
                ..sub(url, CommitSelectionStrategy::NewestFromBranch)
            },
            "spec.subscriptions[0].git.includePaths[0]",
        ),
        (
            GitSubscription {
                exclude_paths: vec!["ok".into(), "glob:a/[".into()],
                ..sub(url, CommitSelectionStrategy::NewestFromBranch)
            },
            "spec.subscriptions[0].git.excludePaths[1]",
        ),
        (
            GitSubscription {
                allow_tags_regexes: vec!["(".into()],
                ..sub(url, CommitSelectionStrategy::Lexical)
            },
            "spec.subscriptions[0].git.allowTagsRegexes[0]",
        ),
        (
            GitSubscription {
                semver_constraint: "^^1".into(),
                ..sub(url, CommitSelectionStrategy::SemVer)
            },
            "spec.subscriptions[0].git.semverConstraint",
        ),
        (
            GitSubscription {
                expression_filter: "subject contains 'x'".into(),
                ..sub(url, CommitSelectionStrategy::NewestFromBranch)
            },
            "spec.subscriptions[0].git.expressionFilter",
        ),
        (
            GitSubscription {
                discovery_limit: Some(101),
                ..sub(url, CommitSelectionStrategy::NewestFromBranch)
            },
            "spec.subscriptions[0].git.discoveryLimit",
        ),
        (
            GitSubscription {
                since: Some("yesterday".into()),
                ..sub(url, CommitSelectionStrategy::NewestFromBranch)
            },
            "spec.subscriptions[0].git.since",
        ),
    ];
    for (s, field) in cases {
        let err = run(&s, cache.path()).await.unwrap_err();
        let DiscoveryError::Config(message) = &err else {
            panic!("{field}: {err:?}");
        };
        assert!(message.starts_with(field), "{field}: {message}");
    }
}

// ------------------------------------------------------------- bounds

/// A bare repository `name` on `server` with `n` commits on `main`, made
/// by `git fast-import`: commit i changes `f/<i % 50>.txt`, except the
/// commit `marker_depth` from the tip (1: the tip), which changes
/// `deep/marker.txt`.
fn big_repository(server: &GitServer, name: &str, n: usize, marker_depth: Option<usize>) {
    server.create_empty(name).unwrap();
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(server.path(name))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = child.stdin.as_mut().unwrap();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
        for i in 1..=n {
            let message = format!("commit {i}\n");
            let file = if marker_depth.is_some_and(|d| n + 1 - i == d) {
                "deep/marker.txt".to_string()
            } else {
                format!("f/{}.txt", i % 50)
            };
            let content = format!("{i}\n");
            write!(
                out,
                "commit refs/heads/main\nmark :{i}\ncommitter Dev <dev@example.com> {} +0000\ndata {}\n{message}",
                BASE_TIME + i as i64,
                message.len()
            )
            .unwrap();
            if i > 1 {
                writeln!(out, "from :{}", i - 1).unwrap();
            }
            write!(
                out,
                "M 100644 inline {file}\ndata {}\n{content}\n",
                content.len()
            )
            .unwrap();
        }
        out.flush().unwrap();
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn a_long_history_is_fetched_only_as_deep_as_the_discovery_needs() {
    let server = GitServer::start(login()).await.unwrap();
    big_repository(&server, "big", 5_000, Some(300));
    let url = server.http_url("big");
    let creds = good_credentials();

    // No path filter: the newest 20 commits, and little more in the cache.
    let cache = tempfile::tempdir().unwrap();
    let s = sub(&url, CommitSelectionStrategy::NewestFromBranch);
    let found = discover(&s, AT, None, Some(&creds), cache.path(), None)
        .await
        .unwrap();
    assert_eq!(found.commits.len(), 20);
    assert_eq!(found.commits[0].subject, "commit 5000");
    assert!(
        cached_commits(cache.path()) <= 20,
        "{}",
        cached_commits(cache.path())
    );

    // One commit wanted, touching a path 300 commits down: deepened (100,
    // then 400), not cloned.
    let cache = tempfile::tempdir().unwrap();
    let mut s = sub(&url, CommitSelectionStrategy::NewestFromBranch);
    s.include_paths = vec!["deep".into()];
    s.discovery_limit = Some(1);
    let found = discover(&s, AT, None, Some(&creds), cache.path(), None)
        .await
        .unwrap();
    assert_eq!(found.commits.len(), 1);
    assert_eq!(found.commits[0].subject, "commit 4701");
    let cached = cached_commits(cache.path());
    assert!((300..=400).contains(&cached), "{cached}");

    // A new commit: fetched at the depth already reached, found on top.
    let new = server
        .commit_file("big", "main", "deep/new.txt", "new")
        .unwrap();
    let again = discover(&s, AT, None, Some(&creds), cache.path(), Some(&found))
        .await
        .unwrap();
    assert_eq!(ids(&again), [new.as_str()]);
    let cached = cached_commits(cache.path());
    assert!((300..=401).contains(&cached), "{cached}");
}

/// The walk budget over 100,000 commits (about 12 s in a debug build),
/// with figures printed as JSON:
/// `cargo test --test warehouse_discovery_git a_100k -- --nocapture`.
#[tokio::test]
async fn a_100k_commit_history_is_never_cloned_in_full() {
    let server = GitServer::start(login()).await.unwrap();
    let started = Instant::now();
    big_repository(&server, "huge", 100_000, None);
    let generate = started.elapsed();
    let url = server.http_url("huge");
    let creds = good_credentials();
    let mut figures = serde_json::Map::new();
    figures.insert("generate_ms".into(), (generate.as_millis() as u64).into());
    figures.insert("rss_before_kib".into(), peak_rss_kib().into());

    let cache = tempfile::tempdir().unwrap();
    let s = sub(&url, CommitSelectionStrategy::NewestFromBranch);
    reset_peak_rss();
    let t = Instant::now();
    let found = discover(&s, AT, None, Some(&creds), cache.path(), None)
        .await
        .unwrap();
    figures.insert("newest20_peak_rss_kib".into(), peak_rss_kib().into());
    figures.insert(
        "newest20_ms".into(),
        (t.elapsed().as_millis() as u64).into(),
    );
    figures.insert(
        "newest20_cached_commits".into(),
        cached_commits(cache.path()).into(),
    );
    figures.insert("newest20_cache_bytes".into(), dir_size(cache.path()).into());
    assert_eq!(found.commits.len(), 20);
    assert!(cached_commits(cache.path()) <= 20);

    let t = Instant::now();
    let same = discover(&s, AT, None, Some(&creds), cache.path(), Some(&found))
        .await
        .unwrap();
    figures.insert(
        "unchanged_ms".into(),
        (t.elapsed().as_millis() as u64).into(),
    );
    assert_eq!(same.commits, found.commits);

    let cache = tempfile::tempdir().unwrap();
    let mut s = sub(&url, CommitSelectionStrategy::NewestFromBranch);
    s.include_paths = vec!["nowhere".into()];
    reset_peak_rss();
    let t = Instant::now();
    let found = discover(&s, AT, None, Some(&creds), cache.path(), None)
        .await
        .unwrap();
    figures.insert("path_filter_peak_rss_kib".into(), peak_rss_kib().into());
    figures.insert(
        "path_filter_budget_ms".into(),
        (t.elapsed().as_millis() as u64).into(),
    );
    let cached = cached_commits(cache.path());
    figures.insert("path_filter_cached_commits".into(), cached.into());
    figures.insert(
        "path_filter_cache_bytes".into(),
        dir_size(cache.path()).into(),
    );
    figures.insert("walk_budget".into(), WALK_BUDGET.into());
    assert!(found.commits.is_empty());
    assert!(cached <= WALK_BUDGET + 1, "{cached}");

    let new = server
        .commit_file("huge", "main", "nowhere/x.txt", "x")
        .unwrap();
    let t = Instant::now();
    let again = discover(&s, AT, None, Some(&creds), cache.path(), Some(&found))
        .await
        .unwrap();
    figures.insert(
        "incremental_ms".into(),
        (t.elapsed().as_millis() as u64).into(),
    );
    assert_eq!(again.commits[0].id, new);
    println!("{}", serde_json::Value::Object(figures));
}

/// Starts the peak RSS (VmHWM) over from the current RSS (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS (the test server included), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}
