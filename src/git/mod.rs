//! Git in-process, through libgit2: the repository work the git steps do.
//! One bare clone per `git-clone`, and one linked working tree per
//! checkout, so that several revisions of one repository sit side by side
//! in a Promotion's work directory and share one object store.
//!
//! Everything here blocks; the steps call it from `spawn_blocking`.

pub mod credentials;
pub mod host;

use std::cell::{Cell, RefCell};
use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{
    BranchType, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions,
    IndexAddOption, Oid, PushOptions, RemoteCallbacks, Repository, Signature, WorktreeAddOptions,
};

pub use credentials::Credentials;

/// The repository config key that keeps a clone's TLS choice for the
/// steps that later fetch and push through it.
const INSECURE_KEY: &str = "barge.insecureSkipTLSVerify";

/// The trailers that mark a commit as made by one step of one Promotion,
/// so that a Promotion run again after a crash finds the commit it already
/// pushed (and a second commit step of the same Promotion is not taken for
/// a rerun of the first).
pub const PROMOTION_TRAILER: &str = "Barge-Promotion";
pub const STEP_TRAILER: &str = "Barge-Step";

/// Which step of which Promotion makes a commit.
#[derive(Clone, Copy, Debug)]
pub struct Mark<'a> {
    pub promotion_uid: &'a str,
    pub step: &'a str,
}

impl Mark<'_> {
    fn trailers(&self) -> [String; 2] {
        [
            format!("{PROMOTION_TRAILER}: {}", self.promotion_uid),
            format!("{STEP_TRAILER}: {}", self.step),
        ]
    }
}

/// How far back `git-commit` looks for its Promotion's own commit.
const OWN_COMMIT_HORIZON: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: authentication failed{hint}")]
    Auth { url: String, hint: &'static str },
    #[error("{context}: {message}")]
    Git { context: String, message: String },
    #[error("{0}")]
    Refused(String),
    #[error("rebasing onto the remote's new commits: {0} conflicts, which needs a person")]
    Conflict(String),
}

impl Error {
    /// Whether running the step again cannot help.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Error::Refused(_) | Error::Conflict(_) | Error::Auth { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to a libgit2 error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, git2::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Git {
            context: what(),
            message: e.message().to_string(),
        })
    }
}

/// Why a remote refused a Promotion that brought no credentials: what to
/// add (the git steps and the pull-request steps say it alike).
pub const NO_CREDENTIALS_HINT: &str =
    ": no Secret labelled barge.dev/cred-type=git in the Promotion's namespace matches its URL";

/// How to reach a remote: its credentials, and whether to check its TLS
/// certificate.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub credentials: Option<Credentials>,
    pub insecure_skip_tls_verify: bool,
}

/// Callbacks that offer the credentials once (libgit2 asks again after a
/// refusal, which would loop) and skip the certificate check if told to.
pub(crate) fn callbacks<'a>(access: &'a Access, refused: &'a Cell<bool>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let offered = Cell::new(false);
    callbacks.credentials(move |_url, _user, allowed| {
        let Some(credentials) = &access.credentials else {
            refused.set(true);
            return Err(git2::Error::from_str("no credentials"));
        };
        if offered.replace(true) || !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            refused.set(true);
            return Err(git2::Error::from_str("credentials refused"));
        }
        Cred::userpass_plaintext(&credentials.username, &credentials.password)
    });
    if access.insecure_skip_tls_verify {
        callbacks.certificate_check(|_, _| Ok(CertificateCheckStatus::CertificateOk));
    }
    callbacks
}

/// Turns a transport error into an authentication error when the remote
/// asked for credentials and was refused them.
fn remote_error(url: &str, access: &Access, refused: bool, what: String, e: git2::Error) -> Error {
    let auth = refused
        || e.code() == ErrorCode::Auth
        || (e.class() == ErrorClass::Http && e.message().contains("401"));
    if auth {
        let hint = if access.credentials.is_some() {
            " with the credentials of the matching Secret"
        } else {
            NO_CREDENTIALS_HINT
        };
        return Error::Auth {
            url: redact_url(url),
            hint,
        };
    }
    Error::Git {
        context: what,
        message: e.message().to_string(),
    }
}

/// A URL without the user information it may carry.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}/{path}")
        }
        None => url.to_string(),
    }
}

/// A bare clone of `url` at `dir`, with every branch under
/// `refs/remotes/origin/` and every tag.
pub fn clone_bare(url: &str, dir: &Path, access: &Access) -> Result<Repository> {
    let repo = Repository::init_bare(dir).context(|| format!("creating {}", dir.display()))?;
    repo.remote("origin", url)
        .context(|| "adding the remote".to_string())?;
    let mut config = repo.config().context(|| "reading config".to_string())?;
    config
        .set_bool(INSECURE_KEY, access.insecure_skip_tls_verify)
        .context(|| "writing config".to_string())?;
    fetch(
        &repo,
        access,
        &[
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ],
    )?;
    Ok(repo)
}

/// Fetches `refspecs` from origin.
fn fetch(repo: &Repository, access: &Access, refspecs: &[&str]) -> Result<()> {
    let mut remote = repo
        .find_remote("origin")
        .context(|| "finding the remote".to_string())?;
    let url = remote.url().unwrap_or_default().to_string();
    let refused = Cell::new(false);
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(access, &refused));
    remote
        .fetch(refspecs, Some(&mut options), None)
        .map_err(|e| {
            remote_error(
                &url,
                access,
                refused.get(),
                format!("fetching {}", redact_url(&url)),
                e,
            )
        })?;
    // The remote's default branch, for checkouts that name no revision.
    if let Ok(head) = remote.default_branch()
        && let Ok(head) = head.as_str()
        && let Some(branch) = head.strip_prefix("refs/heads/")
    {
        let _ = repo.reference_symbolic(
            "refs/remotes/origin/HEAD",
            &format!("refs/remotes/origin/{branch}"),
            true,
            "remote default branch",
        );
    }
    Ok(())
}

/// The remote URL and TLS choice a clone was made with.
pub fn access_of(repo: &Repository) -> Result<(String, bool)> {
    let remote = repo
        .find_remote("origin")
        .context(|| "finding the remote".to_string())?;
    let url = remote.url().unwrap_or_default().to_string();
    let insecure = repo
        .config()
        .and_then(|c| c.get_bool(INSECURE_KEY))
        .unwrap_or(false);
    Ok((url, insecure))
}

/// What a working tree is to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revision {
    /// The remote's default branch.
    Default,
    Commit(String),
    Tag(String),
    /// A branch; with `create`, a new orphan branch if the remote has none.
    Branch {
        name: String,
        create: bool,
    },
}

/// Adds a working tree of `revision` at `path` (which must not exist or be
/// empty); returns the commit checked out, none for a new orphan branch.
pub fn add_worktree(bare: &Repository, revision: &Revision, path: &Path) -> Result<Option<Oid>> {
    let name = worktree_name(bare, path);
    let detached = |oid: Oid| -> Result<Option<Oid>> {
        let repo = worktree_at(bare, &name, path, oid)?;
        repo.set_head_detached(oid)
            .context(|| "detaching HEAD".to_string())?;
        Ok(Some(oid))
    };
    match revision {
        Revision::Commit(commit) => {
            let oid = bare
                .revparse_single(commit)
                .and_then(|o| o.peel_to_commit())
                .map_err(|_| Error::Refused(format!("commit {commit:?} is not in the repository")))?
                .id();
            detached(oid)
        }
        Revision::Tag(tag) => {
            let oid = bare
                .revparse_single(&format!("refs/tags/{tag}"))
                .and_then(|o| o.peel_to_commit())
                .map_err(|_| Error::Refused(format!("tag {tag:?} is not in the repository")))?
                .id();
            detached(oid)
        }
        Revision::Default => {
            let branch = bare
                .find_reference("refs/remotes/origin/HEAD")
                .ok()
                .and_then(|r| r.symbolic_target().ok().flatten().map(str::to_string))
                .and_then(|t| t.strip_prefix("refs/remotes/origin/").map(str::to_string))
                .ok_or_else(|| {
                    Error::Refused("the repository has no default branch".to_string())
                })?;
            branch_worktree(bare, &name, &branch, path).map(Some)
        }
        Revision::Branch {
            name: branch,
            create,
        } => {
            let remote = format!("origin/{branch}");
            if bare.find_branch(&remote, BranchType::Remote).is_ok() {
                return branch_worktree(bare, &name, branch, path).map(Some);
            }
            if !create {
                return Err(Error::Refused(format!(
                    "branch {branch:?} does not exist (set create: true to start it)"
                )));
            }
            orphan_worktree(bare, &name, branch, path)?;
            Ok(None)
        }
    }
}

/// A linked working tree's name: unique in the repository, from its path.
fn worktree_name(bare: &Repository, path: &Path) -> String {
    let base: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let base = if base.trim_matches('-').is_empty() {
        "tree".to_string()
    } else {
        base.trim_matches('-').to_string()
    };
    let taken =
        |n: &str| bare.find_worktree(n).is_ok() || bare.path().join("worktrees").join(n).exists();
    let mut name = base.clone();
    let mut n = 1;
    while taken(&name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// A working tree at `oid`. libgit2 adds working trees only for a branch,
/// so it goes through a branch of its own that is deleted at once.
fn worktree_at(bare: &Repository, name: &str, path: &Path, oid: Oid) -> Result<Repository> {
    let scratch = format!("barge-worktree/{name}");
    let commit = bare
        .find_commit(oid)
        .context(|| format!("reading commit {oid}"))?;
    let branch = bare
        .branch(&scratch, &commit, true)
        .context(|| "creating a branch".to_string())?;
    let repo = new_worktree(bare, name, path, branch.get())?;
    repo.set_head_detached(oid)
        .context(|| "detaching HEAD".to_string())?;
    drop(branch);
    if let Ok(mut branch) = bare.find_branch(&scratch, BranchType::Local) {
        branch
            .delete()
            .context(|| "deleting a scratch branch".to_string())?;
    }
    Ok(repo)
}

fn new_worktree(
    bare: &Repository,
    name: &str,
    path: &Path,
    reference: &git2::Reference<'_>,
) -> Result<Repository> {
    if path.exists() {
        let empty = std::fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Error::Refused(format!(
                "{} already exists in the work directory",
                path.display()
            )));
        }
        let _ = std::fs::remove_dir(path);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Git {
            context: format!("creating {}", parent.display()),
            message: e.to_string(),
        })?;
    }
    let mut options = WorktreeAddOptions::new();
    options.reference(Some(reference));
    let worktree = bare
        .worktree(name, path, Some(&options))
        .context(|| format!("adding a working tree at {}", path.display()))?;
    Repository::open_from_worktree(&worktree).context(|| "opening the working tree".to_string())
}

/// A working tree on local branch `branch`, which tracks origin's.
fn branch_worktree(bare: &Repository, name: &str, branch: &str, path: &Path) -> Result<Oid> {
    let local = match bare.find_branch(branch, BranchType::Local) {
        Ok(local) => local,
        Err(_) => {
            let remote = bare
                .find_branch(&format!("origin/{branch}"), BranchType::Remote)
                .context(|| format!("finding branch {branch}"))?;
            let commit = remote
                .get()
                .peel_to_commit()
                .context(|| format!("reading branch {branch}"))?;
            bare.branch(branch, &commit, false)
                .context(|| format!("creating branch {branch}"))?
        }
    };
    let oid = local
        .get()
        .peel_to_commit()
        .context(|| format!("reading branch {branch}"))?
        .id();
    new_worktree(bare, name, path, local.get())?;
    Ok(oid)
}

/// A working tree on a new branch with no history: HEAD names the branch
/// before it exists, the index and the files are empty.
fn orphan_worktree(bare: &Repository, name: &str, branch: &str, path: &Path) -> Result<()> {
    let any = bare
        .references_glob("refs/remotes/origin/*")
        .ok()
        .and_then(|mut refs| refs.find_map(|r| r.ok().and_then(|r| r.target())));
    let repo = match any {
        Some(oid) => worktree_at(bare, name, path, oid)?,
        // An empty repository: nothing to check out, so a plain directory
        // whose HEAD is made below.
        None => return empty_repository_worktree(bare, name, branch, path),
    };
    repo.set_head(&format!("refs/heads/{branch}"))
        .context(|| format!("starting branch {branch}"))?;
    let mut index = repo.index().context(|| "reading the index".to_string())?;
    index.clear().context(|| "clearing the index".to_string())?;
    index.write().context(|| "writing the index".to_string())?;
    clear(path)
}

/// An empty remote has no commit to start a working tree from, so the first
/// working tree gets a root commit-less branch through a temporary commit
/// that is never pushed.
fn empty_repository_worktree(
    bare: &Repository,
    name: &str,
    branch: &str,
    path: &Path,
) -> Result<()> {
    let tree = bare
        .treebuilder(None)
        .and_then(|b| b.write())
        .context(|| "writing an empty tree".to_string())?;
    let tree = bare
        .find_tree(tree)
        .context(|| "reading a tree".to_string())?;
    let signature =
        Signature::now("Barge", "barge@localhost").context(|| "signature".to_string())?;
    let oid = bare
        .commit(None, &signature, &signature, "scratch", &tree, &[])
        .context(|| "writing a scratch commit".to_string())?;
    let repo = worktree_at(bare, name, path, oid)?;
    repo.set_head(&format!("refs/heads/{branch}"))
        .context(|| format!("starting branch {branch}"))?;
    let mut index = repo.index().context(|| "reading the index".to_string())?;
    index.clear().context(|| "clearing the index".to_string())?;
    index.write().context(|| "writing the index".to_string())?;
    clear(path)
}

/// `git submodule update --init --recursive` in the working tree at `path`,
/// with the same access as the repository.
pub fn update_submodules(path: &Path, access: &Access) -> Result<()> {
    let repo = open(path)?;
    let submodules = repo
        .submodules()
        .context(|| format!("reading submodules of {}", path.display()))?;
    for mut submodule in submodules {
        let name = submodule.name().unwrap_or_default().to_string();
        let refused = Cell::new(false);
        let mut fetch = FetchOptions::new();
        fetch.remote_callbacks(callbacks(access, &refused));
        let mut options = git2::SubmoduleUpdateOptions::new();
        options.fetch(fetch);
        let url = submodule
            .url()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_string();
        submodule.update(true, Some(&mut options)).map_err(|e| {
            remote_error(&url, access, refused.get(), format!("submodule {name}"), e)
        })?;
        let nested = path.join(submodule.path());
        update_submodules(&nested, access)?;
    }
    Ok(())
}

/// Opens the working tree at `path`.
pub fn open(path: &Path) -> Result<Repository> {
    Repository::open(path).map_err(|_| {
        Error::Refused(format!(
            "{} is not a git working tree (clone it with git-clone first)",
            path.display()
        ))
    })
}

/// Removes everything in a working tree but its `.git`.
pub fn clear(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Git {
        context: format!("clearing {}", path.display()),
        message: e.to_string(),
    };
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name() == ".git" {
            continue;
        }
        if entry.file_type().map_err(io)?.is_dir() {
            std::fs::remove_dir_all(entry.path()).map_err(io)?;
        } else {
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}

/// Who a commit is by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    fn signature(&self) -> Result<Signature<'static>> {
        Signature::now(&self.name, &self.email).map_err(|e| {
            Error::Refused(format!(
                "author {:?} <{}>: {}",
                self.name,
                self.email,
                e.message()
            ))
        })
    }
}

/// Keeps the author a clone was asked for, for commits made in it later.
pub fn set_default_author(repo: &Repository, author: &Author) -> Result<()> {
    let mut config = repo.config().context(|| "reading config".to_string())?;
    config
        .set_str("user.name", &author.name)
        .and_then(|()| config.set_str("user.email", &author.email))
        .context(|| "writing config".to_string())
}

/// The author a clone was given, if any (the host's own git config does
/// not count: what a Promotion commits as must not depend on the machine).
pub fn default_author(repo: &Repository) -> Option<Author> {
    let config = repo
        .config()
        .ok()?
        .open_level(git2::ConfigLevel::Local)
        .ok()?
        .snapshot()
        .ok()?;
    Some(Author {
        name: config.get_str("user.name").ok()?.to_string(),
        email: config.get_str("user.email").ok()?.to_string(),
    })
}

/// What `git-commit` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    New(Oid),
    /// Nothing changed: the branch's head.
    Unchanged(Oid),
    /// This Promotion committed before (a run interrupted after its push).
    Earlier(Oid),
}

impl Committed {
    pub fn oid(&self) -> Oid {
        match self {
            Committed::New(o) | Committed::Unchanged(o) | Committed::Earlier(o) => *o,
        }
    }
}

/// Stages every change (additions, edits, deletions) and commits it with
/// `message` and the step's trailers. Commits nothing when the tree is
/// unchanged, or when the branch already has this step's commit.
pub fn commit_all(
    repo: &Repository,
    message: &str,
    author: &Author,
    mark: Mark<'_>,
) -> Result<Committed> {
    let head = match repo.head() {
        Ok(head) => Some(
            head.peel_to_commit()
                .context(|| "reading HEAD".to_string())?,
        ),
        Err(e) if e.code() == ErrorCode::UnbornBranch => None,
        Err(e) => {
            return Err(Error::Git {
                context: "reading HEAD".to_string(),
                message: e.message().to_string(),
            });
        }
    };
    if let Some(head) = &head
        && let Some(own) = own_commit(repo, head.id(), mark)
    {
        return Ok(Committed::Earlier(own));
    }
    let mut index = repo.index().context(|| "reading the index".to_string())?;
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .and_then(|()| index.update_all(["*"], None))
        .and_then(|()| index.write())
        .context(|| "staging changes".to_string())?;
    let tree = index
        .write_tree()
        .context(|| "writing the tree".to_string())?;
    if let Some(head) = &head
        && head.tree_id() == tree
    {
        return Ok(Committed::Unchanged(head.id()));
    }
    let tree = repo
        .find_tree(tree)
        .context(|| "reading the tree".to_string())?;
    let signature = author.signature()?;
    let message = with_trailers(message, mark);
    let parents: Vec<&git2::Commit<'_>> = head.iter().collect();
    repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        &message,
        &tree,
        &parents,
    )
    .context(|| "committing".to_string())
    .map(Committed::New)
}

/// `message` with the trailers that name the Promotion and the step.
pub fn with_trailers(message: &str, mark: Mark<'_>) -> String {
    let body = message.trim_end();
    let [promotion, step] = mark.trailers();
    format!("{body}\n\n{promotion}\n{step}\n")
}

/// This step's commit among the recent first-parent history of `from`.
fn own_commit(repo: &Repository, from: Oid, mark: Mark<'_>) -> Option<Oid> {
    let trailers = mark.trailers();
    let mut commit = repo.find_commit(from).ok()?;
    for _ in 0..OWN_COMMIT_HORIZON {
        if commit.message_raw().is_ok_and(|m| {
            trailers
                .iter()
                .all(|t| m.lines().any(|l| l.trim() == t.as_str()))
        }) {
            return Some(commit.id());
        }
        commit = commit.parent(0).ok()?;
    }
    None
}

/// Makes an annotated tag `name` on HEAD; returns the tagged commit.
pub fn tag(repo: &Repository, name: &str, message: &str, tagger: &Author) -> Result<Oid> {
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|_| Error::Refused("the working tree has no commit to tag".to_string()))?;
    if repo.find_reference(&format!("refs/tags/{name}")).is_ok() {
        return Err(Error::Refused(format!("tag {name:?} already exists")));
    }
    let signature = tagger.signature()?;
    repo.tag(name, head.as_object(), &signature, message, false)
        .map_err(|e| match e.class() {
            ErrorClass::Reference | ErrorClass::Tag => {
                Error::Refused(format!("tag {name:?}: {}", e.message()))
            }
            _ => Error::Git {
                context: format!("tagging {name}"),
                message: e.message().to_string(),
            },
        })?;
    Ok(head.id())
}

/// The branch a working tree has checked out, if it is on one.
pub fn current_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target().ok().flatten()?;
    target.strip_prefix("refs/heads/").map(str::to_string)
}

/// What to push.
#[derive(Clone, Debug)]
pub enum PushTarget {
    Branch { name: String, force: bool },
    Tag(String),
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    pub commit: Oid,
    /// How many pushes it took (each after the first followed a rebase).
    pub attempts: u32,
}

enum Attempt {
    Done,
    /// The remote has commits this one lacks.
    Behind(String),
}

/// Pushes HEAD to `target`. A branch push the remote refuses because it has
/// moved on is followed by a fetch, a rebase of the local commits and
/// another push, up to `max_attempts` pushes in all.
pub fn push(
    repo: &Repository,
    target: &PushTarget,
    access: &Access,
    max_attempts: u32,
) -> Result<Pushed> {
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|_| Error::Refused("the working tree has no commit to push".to_string()))?
        .id();
    let (branch, force) = match target {
        PushTarget::Tag(tag) => {
            let spec = format!("refs/tags/{tag}:refs/tags/{tag}");
            if repo.find_reference(&format!("refs/tags/{tag}")).is_err() {
                return Err(Error::Refused(format!(
                    "tag {tag:?} does not exist (make it with git-tag)"
                )));
            }
            return match push_once(repo, &spec, access)? {
                Attempt::Done => Ok(Pushed {
                    commit: head,
                    attempts: 1,
                }),
                Attempt::Behind(why) => Err(Error::Refused(format!(
                    "the remote refused tag {tag:?}: {why}"
                ))),
            };
        }
        PushTarget::Branch { name, force } => (name.as_str(), *force),
    };
    let tracking = format!("refs/remotes/origin/{branch}");
    let mut head = head;
    for attempt in 1..=max_attempts.max(1) {
        // Pushed before (a run interrupted after its push): nothing to do.
        if !force
            && let Ok(remote) = repo.refname_to_id(&tracking)
            && (remote == head || repo.graph_descendant_of(remote, head).unwrap_or(false))
        {
            return Ok(Pushed {
                commit: head,
                attempts: attempt - 1,
            });
        }
        let plus = if force { "+" } else { "" };
        let spec = format!("{plus}{head}:refs/heads/{branch}");
        match push_once(repo, &spec, access)? {
            Attempt::Done => {
                let _ = repo.reference(&tracking, head, true, "pushed");
                return Ok(Pushed {
                    commit: head,
                    attempts: attempt,
                });
            }
            Attempt::Behind(why) => {
                if force || attempt == max_attempts.max(1) {
                    return Err(Error::Git {
                        context: format!("pushing to {branch}"),
                        message: format!("{why} (after {attempt} attempts)"),
                    });
                }
                fetch(repo, access, &[&format!("+refs/heads/{branch}:{tracking}")])?;
                let onto = repo
                    .refname_to_id(&tracking)
                    .context(|| format!("reading origin/{branch}"))?;
                head = rebase_onto(repo, onto)?;
            }
        }
    }
    Err(Error::Git {
        context: format!("pushing to {branch}"),
        message: "no attempt left".to_string(),
    })
}

fn push_once(repo: &Repository, refspec: &str, access: &Access) -> Result<Attempt> {
    let mut remote = repo
        .find_remote("origin")
        .context(|| "finding the remote".to_string())?;
    let url = remote.url().unwrap_or_default().to_string();
    let refused = Cell::new(false);
    let rejected = RefCell::new(None::<String>);
    let mut callbacks = callbacks(access, &refused);
    callbacks.push_update_reference(|reference, status| {
        if let Some(status) = status {
            *rejected.borrow_mut() = Some(format!("{reference}: {status}"));
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    match remote.push(&[refspec], Some(&mut options)) {
        Ok(()) => {}
        // libgit2 refuses a non-fast-forward itself when it knows the
        // remote's head; the remote says so in its report otherwise.
        Err(e) if e.code() == ErrorCode::NotFastForward => {
            return Ok(Attempt::Behind(e.message().to_string()));
        }
        Err(e) => {
            return Err(remote_error(
                &url,
                access,
                refused.get(),
                format!("pushing to {}", redact_url(&url)),
                e,
            ));
        }
    }
    drop(options);
    Ok(match rejected.into_inner() {
        Some(why) => Attempt::Behind(why),
        None => Attempt::Done,
    })
}

/// Replays the commits HEAD has and `onto` lacks on top of `onto` (a
/// rebase), moves HEAD's branch there and updates the files. A conflict
/// stops it: that needs a person.
fn rebase_onto(repo: &Repository, onto: Oid) -> Result<Oid> {
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .context(|| "reading HEAD".to_string())?;
    let mut walk = repo.revwalk().context(|| "walking history".to_string())?;
    walk.push(head.id())
        .and_then(|()| walk.hide(onto))
        .and_then(|()| walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE))
        .context(|| "walking history".to_string())?;
    let mut tip = repo
        .find_commit(onto)
        .context(|| format!("reading {onto}"))?;
    for oid in walk {
        let oid = oid.context(|| "walking history".to_string())?;
        let commit = repo.find_commit(oid).context(|| format!("reading {oid}"))?;
        if commit.parent_count() > 1 {
            return Err(Error::Conflict(format!("merge commit {oid}")));
        }
        let mut index = repo
            .cherrypick_commit(&commit, &tip, 0, None)
            .context(|| format!("replaying {oid}"))?;
        if index.has_conflicts() {
            let files: Vec<String> = index
                .conflicts()
                .map(|c| {
                    c.filter_map(|c| c.ok())
                        .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            return Err(Error::Conflict(files.join(", ")));
        }
        let tree = index
            .write_tree_to(repo)
            .and_then(|t| repo.find_tree(t))
            .context(|| format!("replaying {oid}"))?;
        let message = commit.message_raw().unwrap_or_default();
        let replayed = repo
            .commit(
                None,
                &commit.author(),
                &commit.committer(),
                message,
                &tree,
                &[&tip],
            )
            .context(|| format!("replaying {oid}"))?;
        tip = repo
            .find_commit(replayed)
            .context(|| format!("reading {replayed}"))?;
    }
    match current_branch(repo) {
        Some(branch) => {
            repo.reference(&format!("refs/heads/{branch}"), tip.id(), true, "rebase")
                .context(|| format!("moving {branch}"))?;
        }
        None => repo
            .set_head_detached(tip.id())
            .context(|| "moving HEAD".to_string())?,
    }
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    repo.checkout_head(Some(&mut checkout))
        .context(|| "updating the working tree".to_string())?;
    Ok(tip.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_loses_its_user_information() {
        assert_eq!(
            redact_url("https://bot:s3cret@git.example.com/org/repo.git"),
            "https://git.example.com/org/repo.git"
        );
        assert_eq!(redact_url("file:///srv/repo"), "file:///srv/repo");
    }

    #[test]
    fn the_trailer_follows_the_message_after_a_blank_line() {
        assert_eq!(
            with_trailers(
                "update image\n",
                Mark {
                    promotion_uid: "u-1",
                    step: "deploy::commit"
                }
            ),
            "update image\n\nBarge-Promotion: u-1\nBarge-Step: deploy::commit\n"
        );
    }
}

/// A branch head on a remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchHead {
    pub commit: Oid,
    pub tree: Oid,
    pub message: String,
}

/// The heads of `branches` on the remote at `url` (`None`: no such branch),
/// fetched into a bare repository at `dir` (made if missing). `shallow`
/// fetches the heads only; a merge check needs their history.
pub fn fetch_branches(
    url: &str,
    dir: &Path,
    access: &Access,
    branches: &[&str],
    shallow: bool,
) -> Result<(Repository, Vec<Option<BranchHead>>)> {
    let repo = match Repository::open_bare(dir) {
        Ok(repo) => repo,
        Err(_) => {
            let repo =
                Repository::init_bare(dir).context(|| format!("creating {}", dir.display()))?;
            repo.remote("origin", url)
                .context(|| "adding the remote".to_string())?;
            repo
        }
    };
    let listed = {
        let mut remote = repo
            .find_remote("origin")
            .context(|| "finding the remote".to_string())?;
        let refused = Cell::new(false);
        let connection = remote
            .connect_auth(
                git2::Direction::Fetch,
                Some(callbacks(access, &refused)),
                None,
            )
            .map_err(|e| {
                remote_error(
                    url,
                    access,
                    refused.get(),
                    format!("reaching {}", redact_url(url)),
                    e,
                )
            })?;
        connection
            .list()
            .context(|| format!("listing the branches of {}", redact_url(url)))?
            .iter()
            .map(|head| head.name().to_string())
            .collect::<Vec<_>>()
    };
    let present: Vec<&str> = branches
        .iter()
        .copied()
        .filter(|b| listed.iter().any(|name| *name == format!("refs/heads/{b}")))
        .collect();
    if !present.is_empty() {
        let specs: Vec<String> = present
            .iter()
            .map(|b| format!("+refs/heads/{b}:refs/remotes/origin/{b}"))
            .collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let mut remote = repo
            .find_remote("origin")
            .context(|| "finding the remote".to_string())?;
        let refused = Cell::new(false);
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(access, &refused));
        if shallow {
            options.depth(1);
        }
        remote
            .fetch(&specs, Some(&mut options), None)
            .map_err(|e| {
                remote_error(
                    url,
                    access,
                    refused.get(),
                    format!("fetching {}", redact_url(url)),
                    e,
                )
            })?;
    }
    let heads = branches
        .iter()
        .map(|b| {
            if !present.contains(b) {
                return Ok(None);
            }
            let commit = repo
                .revparse_single(&format!("refs/remotes/origin/{b}"))
                .and_then(|o| o.peel_to_commit())
                .context(|| format!("reading branch {b}"))?;
            Ok(Some(BranchHead {
                commit: commit.id(),
                tree: commit.tree_id(),
                message: commit.message().unwrap_or_default().to_string(),
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((repo, heads))
}

/// The files that conflict when `head` is merged into `base` (both
/// commits of `repo`, with their history); empty when it merges cleanly.
pub fn merge_conflicts(repo: &Repository, base: Oid, head: Oid) -> Result<Vec<String>> {
    let base = repo
        .find_commit(base)
        .context(|| format!("reading commit {base}"))?;
    let head = repo
        .find_commit(head)
        .context(|| format!("reading commit {head}"))?;
    let index = repo
        .merge_commits(&base, &head, None)
        .context(|| "merging in memory".to_string())?;
    let mut files = Vec::new();
    if index.has_conflicts() {
        for conflict in index
            .conflicts()
            .context(|| "reading the conflicts".to_string())?
            .flatten()
        {
            let entry = conflict.our.or(conflict.their).or(conflict.ancestor);
            if let Some(entry) = entry {
                files.push(String::from_utf8_lossy(&entry.path).into_owned());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}
