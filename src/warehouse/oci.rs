//! A small client of the OCI distribution API, enough for discovery: a
//! repository's tags (paginated), manifests by tag or digest, and config
//! blobs; and the HTTP GET of a classic chart repository's `index.yaml`.
//!
//! Schemes: `https://`, except for registries on loopback (`localhost`,
//! `localhost:<port>`, `127.0.0.0/8`, `[::1]`), which are reached over
//! plain `http://` as go-containerregistry (and so Kargo) treats them.
//! (go-containerregistry also speaks plain HTTP to RFC 1918 addresses;
//! Barge does not: credentials are not sent in the clear to the network.)
//! `insecureSkipTLSVerify` accepts any certificate.
//!
//! Authentication: anonymous first; on a `401` the registry's
//! `WWW-Authenticate` challenge says how: `Basic` (the credentials are sent
//! on every later request of the session) or `Bearer realm=..,service=..,
//! scope=..` (a token is fetched from the realm, with the credentials as
//! HTTP Basic if any, and cached per registry, repository and credentials
//! until it expires).
//!
//! Budgets: every request times out ([`Limits::timeout`], 30 s); a
//! manifest over 4 MiB, a config blob over 8 MiB, a page of tags over
//! 8 MiB or more than 100,000 tags in all fail with
//! [`DiscoveryError::TooLarge`].
//!
//! Errors: 401/403 → `Denied`, 404 → `NotFound`, 429/5xx, connection
//! failures and timeouts → `Unavailable`, unreadable answers →
//! `Malformed`. No message, and no log line, carries a credential.

use std::collections::HashMap;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LINK, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::discovered::DiscoveryError;
use crate::git::Credentials;
use crate::urls::split_image_reference;

/// How long one request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest manifest or index read.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest config blob read.
pub const MAX_BLOB_BYTES: usize = 8 * 1024 * 1024;
/// The largest page of a tag list read.
pub const MAX_TAGS_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// The most tags listed of one repository.
pub const MAX_TAGS: usize = 100_000;
/// Tags asked for per page.
pub const TAGS_PAGE_SIZE: usize = 1000;

/// The media types a manifest GET accepts.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A client's budgets.
#[derive(Clone, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub max_manifest_bytes: usize,
    pub max_blob_bytes: usize,
    pub max_tags_page_bytes: usize,
    pub max_tags: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_manifest_bytes: MAX_MANIFEST_BYTES,
            max_blob_bytes: MAX_BLOB_BYTES,
            max_tags_page_bytes: MAX_TAGS_PAGE_BYTES,
            max_tags: MAX_TAGS,
        }
    }
}

/// A registry client shared by discoveries: HTTP connections and bearer
/// tokens are reused across them.
pub struct OciClient {
    verifying: reqwest::Client,
    trusting: reqwest::Client,
    limits: Limits,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    host: String,
    repository: String,
    /// The username and a digest of the password: a token got with one
    /// set of credentials is never used with another.
    principal: String,
}

struct CachedToken {
    token: String,
    expires: Instant,
}

impl std::fmt::Debug for OciClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciClient")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

static CRYPTO: Once = Once::new();

impl OciClient {
    pub fn new() -> Result<Self, DiscoveryError> {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Result<Self, DiscoveryError> {
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let build = |trust_any: bool| {
            reqwest::Client::builder()
                .timeout(limits.timeout)
                .connect_timeout(limits.timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("barge/", env!("CARGO_PKG_VERSION")))
                .danger_accept_invalid_certs(trust_any)
                .build()
                .map_err(|e| DiscoveryError::Unavailable(format!("building the HTTP client: {e}")))
        };
        Ok(Self {
            verifying: build(false)?,
            trusting: build(true)?,
            limits,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn http(&self, insecure_skip_tls_verify: bool) -> &reqwest::Client {
        if insecure_skip_tls_verify {
            &self.trusting
        } else {
            &self.verifying
        }
    }

    /// A session with one repository.
    pub fn session<'a>(
        &'a self,
        repository: Repository,
        credentials: Option<&Credentials>,
        insecure_skip_tls_verify: bool,
    ) -> Session<'a> {
        Session {
            client: self,
            repository,
            credentials: credentials
                .filter(|c| !c.username.is_empty() || !c.password.is_empty())
                .cloned(),
            insecure: insecure_skip_tls_verify,
            basic: Mutex::new(false),
        }
    }

    /// GETs `url` (a classic chart repository's `index.yaml`), with the
    /// credentials as HTTP Basic, reading at most `limit` bytes.
    pub async fn get_file(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        insecure_skip_tls_verify: bool,
        limit: usize,
    ) -> Result<Vec<u8>, DiscoveryError> {
        let shown = redacted(url);
        let what = format!("GET {shown}");
        tracing::debug!(url = %shown, "fetching");
        let mut request = self.http(insecure_skip_tls_verify).get(url);
        if let Some(c) = credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| transport(&what, &e))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_limited(response, 64 * 1024, &what)
                .await
                .unwrap_or_default();
            return Err(refused(status, &body, &what, &shown, credentials.is_some()));
        }
        read_limited(response, limit, &what).await
    }

    fn cached_token(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        tokens
            .get(key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.token.clone())
    }

    fn cache_token(&self, key: TokenKey, token: String, lifetime: Duration) {
        if let Ok(mut tokens) = self.tokens.lock() {
            let now = Instant::now();
            tokens.retain(|_, t| t.expires > now);
            // Leave a margin so that a token is not used as it expires.
            let margin = (lifetime / 10).min(Duration::from_secs(30));
            tokens.insert(
                key,
                CachedToken {
                    token,
                    expires: now + lifetime.saturating_sub(margin),
                },
            );
        }
    }
}

/// A repository of a registry, as discovery reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// `host[:port]` as named (`index.docker.io` for Docker Hub).
    pub registry: String,
    /// The host requests go to (`registry-1.docker.io` for Docker Hub).
    pub api_host: String,
    /// The repository's path (`library/nginx`).
    pub name: String,
    /// Plain HTTP: a loopback registry.
    pub plain_http: bool,
}

impl Repository {
    /// Reads an image repository URL: `host/path`, `host:port/path`, or a
    /// Docker Hub name (`nginx` is `index.docker.io/library/nginx`), as
    /// Kargo normalizes it (lowercase).
    pub fn parse(url: &str) -> Result<Self, String> {
        let text = url.trim().to_lowercase();
        let (registry, name) = split_image_reference(&text).ok_or_else(|| {
            format!("{url:?} is not an image repository (host[:port]/path or a Docker Hub name)")
        })?;
        let api_host = if registry == "index.docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            registry.clone()
        };
        let plain_http = is_loopback(&registry);
        Ok(Self {
            registry,
            api_host,
            name,
            plain_http,
        })
    }

    /// `https://host/v2/name` (or `http://` on loopback).
    pub fn base_url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", self.api_host, self.name)
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// Whether a registry (`host[:port]`) is on loopback, and so reached over
/// plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A manifest or index as the registry served it.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Its media type (the `Content-Type`, else the body's `mediaType`).
    pub media_type: String,
    /// `Docker-Content-Digest`, else the sha256 of the body.
    pub digest: String,
    pub body: Vec<u8>,
}

/// Requests to one repository with one set of credentials.
pub struct Session<'a> {
    client: &'a OciClient,
    repository: Repository,
    credentials: Option<Credentials>,
    insecure: bool,
    /// The registry asked for HTTP Basic: send it up front.
    basic: Mutex<bool>,
}

impl Session<'_> {
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// All the repository's tags, following `Link: <..>; rel="next"`.
    pub async fn tags(&self) -> Result<Vec<String>, DiscoveryError> {
        let limits = &self.client.limits;
        let first = format!(
            "{}/tags/list?n={TAGS_PAGE_SIZE}",
            self.repository.base_url()
        );
        let mut url = Url::parse(&first)
            .map_err(|e| DiscoveryError::Config(format!("{}: {e}", self.repository)))?;
        let mut tags: Vec<String> = Vec::new();
        let max_pages = limits.max_tags / TAGS_PAGE_SIZE.max(1) + 100;
        for _ in 0..max_pages {
            let (headers, body) = self
                .get(url.as_str(), "application/json", limits.max_tags_page_bytes)
                .await?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| {
                DiscoveryError::Malformed(format!(
                    "the tag list of {} is not readable: {e}",
                    self.repository
                ))
            })?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() > limits.max_tags {
                return Err(DiscoveryError::TooLarge(format!(
                    "{} has more than {} tags, more than discovery lists",
                    self.repository, limits.max_tags
                )));
            }
            let Some(next) = next_link(&headers) else {
                return Ok(tags);
            };
            let joined = url.join(&next).map_err(|e| {
                DiscoveryError::Malformed(format!(
                    "the tag list of {} links to an unreadable next page: {e}",
                    self.repository
                ))
            })?;
            if joined.origin() != url.origin() {
                return Err(DiscoveryError::Malformed(format!(
                    "the tag list of {} links its next page to another server",
                    self.repository
                )));
            }
            url = joined;
        }
        Err(DiscoveryError::TooLarge(format!(
            "the tag list of {} has more than {max_pages} pages",
            self.repository
        )))
    }

    /// Whether the repository exists: `Ok` if it does, `NotFound` if the
    /// registry does not know it (one page of one tag).
    pub async fn check_exists(&self) -> Result<(), DiscoveryError> {
        let url = format!("{}/tags/list?n=1", self.repository.base_url());
        self.get(
            &url,
            "application/json",
            self.client.limits.max_tags_page_bytes,
        )
        .await
        .map(|_| ())
    }

    /// The manifest (or index) `reference` (a tag or a digest) names.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, DiscoveryError> {
        let url = format!("{}/manifests/{reference}", self.repository.base_url());
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let (headers, body) = self
            .get(&url, &accept, self.client.limits.max_manifest_bytes)
            .await?;
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|t| !t.is_empty() && t != "application/json")
            .or_else(|| {
                serde_json::from_slice::<MediaTyped>(&body)
                    .ok()
                    .and_then(|m| m.media_type)
            })
            .unwrap_or_default();
        let digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:") || d.starts_with("sha512:"))
            .map_or_else(|| sha256(&body), str::to_string);
        Ok(Manifest {
            media_type,
            digest,
            body,
        })
    }

    /// A blob (an image's config) by its digest, checked against it.
    pub async fn blob(&self, digest: &str) -> Result<Vec<u8>, DiscoveryError> {
        let url = format!("{}/blobs/{digest}", self.repository.base_url());
        let (_, body) = self
            .get(&url, "*/*", self.client.limits.max_blob_bytes)
            .await?;
        if digest.starts_with("sha256:") && sha256(&body) != digest {
            return Err(DiscoveryError::Malformed(format!(
                "blob {digest} of {} does not match its digest",
                self.repository
            )));
        }
        Ok(body)
    }

    fn token_key(&self) -> TokenKey {
        TokenKey {
            host: self.repository.api_host.clone(),
            repository: self.repository.name.clone(),
            principal: self.credentials.as_ref().map_or_else(String::new, |c| {
                format!("{}:{}", c.username, sha256(c.password.as_bytes()))
            }),
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(token) = self.client.cached_token(&self.token_key()) {
            return request.bearer_auth(token);
        }
        match &self.credentials {
            Some(c) if self.basic.lock().is_ok_and(|b| *b) => {
                request.basic_auth(&c.username, Some(&c.password))
            }
            _ => request,
        }
    }

    /// GETs `url` of this repository, answering an authentication
    /// challenge once; the headers and at most `limit` bytes of body.
    async fn get(
        &self,
        url: &str,
        accept: &str,
        limit: usize,
    ) -> Result<(HeaderMap, Vec<u8>), DiscoveryError> {
        let path = url.split_once("/v2/").map_or(url, |(_, p)| p);
        let what = format!("GET {}/v2/{path}", self.repository.api_host);
        let http = self.client.http(self.insecure);
        let mut challenged = false;
        loop {
            tracing::debug!(request = %what, "registry request");
            let request = self.authorize(http.get(url).header(ACCEPT, accept));
            let response = request.send().await.map_err(|e| transport(&what, &e))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                match challenge {
                    Some(Challenge::Bearer(bearer)) => {
                        self.fetch_token(&bearer).await?;
                        continue;
                    }
                    Some(Challenge::Basic) if self.credentials.is_some() => {
                        if let Ok(mut basic) = self.basic.lock() {
                            *basic = true;
                        }
                        continue;
                    }
                    _ => {}
                }
                return Err(self.denied());
            }
            if !status.is_success() {
                let body = read_limited(response, 64 * 1024, &what)
                    .await
                    .unwrap_or_default();
                let repository = self.repository.to_string();
                return Err(refused(
                    status,
                    &body,
                    &what,
                    &repository,
                    self.credentials.is_some(),
                ));
            }
            let headers = response.headers().clone();
            let body = read_limited(response, limit, &what).await?;
            return Ok((headers, body));
        }
    }

    fn denied(&self) -> DiscoveryError {
        if self.credentials.is_some() {
            DiscoveryError::Denied(format!(
                "registry {} refused the credentials for {}",
                self.repository.registry, self.repository
            ))
        } else {
            DiscoveryError::Denied(format!(
                "registry {} needs credentials for {}; none were found",
                self.repository.registry, self.repository
            ))
        }
    }

    /// Fetches (and caches) a pull token from the challenge's realm.
    async fn fetch_token(&self, challenge: &BearerChallenge) -> Result<(), DiscoveryError> {
        let url = challenge
            .token_url(&self.repository.name)
            .map_err(|e| DiscoveryError::Malformed(format!("{}: {e}", self.repository)))?;
        let what = format!(
            "GET token from {}",
            url.host_str().unwrap_or(&self.repository.api_host)
        );
        let mut request = self.client.http(self.insecure).get(url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| transport(&what, &e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.denied());
        }
        if !status.is_success() {
            let body = read_limited(response, 64 * 1024, &what)
                .await
                .unwrap_or_default();
            let repository = self.repository.to_string();
            return Err(refused(
                status,
                &body,
                &what,
                &repository,
                self.credentials.is_some(),
            ));
        }
        let body = read_limited(response, 1024 * 1024, &what).await?;
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            DiscoveryError::Malformed(format!(
                "the token server of {} answered unreadably: {e}",
                self.repository
            ))
        })?;
        let Some(value) = token.token.or(token.access_token).filter(|t| !t.is_empty()) else {
            return Err(DiscoveryError::Malformed(format!(
                "the token server of {} answered without a token",
                self.repository
            )));
        };
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(60).clamp(1, 24 * 3600));
        self.client.cache_token(self.token_key(), value, lifetime);
        Ok(())
    }
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct MediaTyped {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
}

/// The distribution error codes of an error body (`NAME_UNKNOWN`,
/// `MANIFEST_UNKNOWN`, ...).
pub fn error_codes(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors.into_iter().map(|e| e.code).collect())
        .unwrap_or_default()
}

/// How a registry asks to be authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer(BearerChallenge),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

impl Challenge {
    /// Reads a `WWW-Authenticate` value: `Basic realm="..."` or
    /// `Bearer realm="...",service="...",scope="..."` (quoted or bare
    /// values, commas inside quotes kept).
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = auth_params(rest);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer(BearerChallenge {
            realm: get("realm").filter(|r| !r.is_empty())?,
            service: get("service"),
            scope: get("scope"),
        }))
    }
}

impl BearerChallenge {
    /// The token request: the realm with `service` and the `scope` asked
    /// for (else pull access to `repository`).
    pub fn token_url(&self, repository: &str) -> Result<Url, String> {
        let mut url = Url::parse(&self.realm)
            .map_err(|e| format!("the token realm {:?} is not a URL: {e}", self.realm))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the token realm {:?} is not an HTTP(S) URL",
                self.realm
            ));
        }
        let scope = self
            .scope
            .clone()
            .unwrap_or_else(|| format!("repository:{repository}:pull"));
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &self.service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &scope);
        }
        Ok(url)
    }
}

fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_string();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            params.push((key, String::new()));
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        params.push((key, value));
    }
    params
}

/// The target of `Link: <url>; rel="next"`, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_next_link)
}

/// The `rel="next"` target of one `Link` header value.
pub fn parse_next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once('>')?;
        let target = target.trim().strip_prefix('<')?;
        let next = params.split(';').any(|p| {
            p.trim()
                .strip_prefix("rel=")
                .is_some_and(|r| r.trim_matches('"').split(' ').any(|r| r == "next"))
        });
        next.then(|| target.to_string())
    })
}

/// The error for a refusal: 401/403 denied, 404 not found, 429/5xx
/// unavailable.
fn refused(
    status: StatusCode,
    body: &[u8],
    what: &str,
    subject: &str,
    had_credentials: bool,
) -> DiscoveryError {
    let codes = error_codes(body);
    let code = codes.first().map_or(String::new(), |c| format!(" ({c})"));
    match status.as_u16() {
        401 | 403 if had_credentials => DiscoveryError::Denied(format!(
            "{what}: HTTP {}{code}: the credentials for {subject} were refused",
            status.as_u16()
        )),
        401 | 403 => DiscoveryError::Denied(format!(
            "{what}: HTTP {}{code}: {subject} needs credentials; none were found",
            status.as_u16()
        )),
        404 => DiscoveryError::NotFound(format!("{what}: HTTP 404{code}: {subject} not found")),
        429 | 500..=599 => {
            DiscoveryError::Unavailable(format!("{what}: HTTP {}{code}", status.as_u16()))
        }
        other => DiscoveryError::Unavailable(format!("{what}: unexpected HTTP {other}{code}")),
    }
}

/// A failure to talk to the server: unavailable (connection, timeout) or
/// a body that broke off.
fn transport(what: &str, error: &reqwest::Error) -> DiscoveryError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    DiscoveryError::Unavailable(format!("{what}: {kind}: {message}"))
}

/// The body, failing past `limit` bytes.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, DiscoveryError> {
    let too_large =
        || DiscoveryError::TooLarge(format!("{what}: the answer is larger than {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(what, &e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `url` without the user and password it may carry, for messages.
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unreadable URL>".to_string(),
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for b in digest.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_next_link_is_read_relative_or_absolute_and_other_relations_ignored() {
        assert_eq!(
            parse_next_link(r#"</v2/team/web/tags/list?n=1000&last=b>; rel="next""#).as_deref(),
            Some("/v2/team/web/tags/list?n=1000&last=b")
        );
        assert_eq!(
            parse_next_link(r#"<https://r.example.com/v2/a/tags/list?last=x>; rel=next"#)
                .as_deref(),
            Some("https://r.example.com/v2/a/tags/list?last=x")
        );
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?last=x>; rel="prev""#),
            None
        );
        assert_eq!(
            parse_next_link(r#"</first>; rel="first", </then>; rel="next""#).as_deref(),
            Some("/then")
        );
        assert_eq!(parse_next_link("garbage"), None);
    }

    #[test]
    fn a_bearer_challenge_reads_realm_service_and_scope() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
            }))
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
        let bare = Challenge::parse("bearer realm=https://t.example.com/token, service=reg");
        assert!(
            matches!(bare, Some(Challenge::Bearer(b)) if b.realm == "https://t.example.com/token" && b.service.as_deref() == Some("reg"))
        );
    }

    #[test]
    fn a_token_request_asks_for_pull_of_the_repository_unless_the_challenge_scopes_it() {
        let challenge = BearerChallenge {
            realm: "https://auth.example.com/token?x=1".into(),
            service: Some("registry.example.com".into()),
            scope: None,
        };
        let url = challenge.token_url("team/web").unwrap();
        assert_eq!(
            url.as_str(),
            "https://auth.example.com/token?x=1&service=registry.example.com&scope=repository%3Ateam%2Fweb%3Apull"
        );
        let file = BearerChallenge {
            realm: "file:///etc/passwd".into(),
            service: None,
            scope: None,
        };
        assert!(file.token_url("a").is_err());
    }

    #[test]
    fn repositories_are_named_as_kargo_normalizes_them_and_loopback_is_plain_http() {
        let hub = Repository::parse("nginx").unwrap();
        assert_eq!(hub.registry, "index.docker.io");
        assert_eq!(hub.api_host, "registry-1.docker.io");
        assert_eq!(hub.name, "library/nginx");
        assert_eq!(
            hub.base_url(),
            "https://registry-1.docker.io/v2/library/nginx"
        );
        let local = Repository::parse("127.0.0.1:5000/Team/Web").unwrap();
        assert_eq!(local.base_url(), "http://127.0.0.1:5000/v2/team/web");
        assert!(Repository::parse("localhost:5000/a").unwrap().plain_http);
        assert!(Repository::parse("localhost/a").unwrap().plain_http);
        assert!(
            Repository::parse("[::1]:5000/a").is_err()
                || Repository::parse("[::1]:5000/a").unwrap().plain_http
        );
        assert!(!Repository::parse("10.0.0.1:5000/a").unwrap().plain_http);
        assert!(
            !Repository::parse("ghcr.io/akuity/kargo")
                .unwrap()
                .plain_http
        );
        assert!(Repository::parse("https://ghcr.io/a").is_err());
        assert_eq!(
            Repository::parse("ghcr.io/akuity/kargo")
                .unwrap()
                .to_string(),
            "ghcr.io/akuity/kargo"
        );
    }

    #[test]
    fn urls_in_messages_carry_no_user_information() {
        assert_eq!(
            redacted("https://bot:s3cret@charts.example.com/stable/index.yaml"),
            "https://charts.example.com/stable/index.yaml"
        );
        assert_eq!(
            redacted("https://charts.example.com/a"),
            "https://charts.example.com/a"
        );
    }

    #[test]
    fn refusals_map_to_discovery_errors_without_credentials() {
        let nf = refused(
            StatusCode::NOT_FOUND,
            br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#,
            "GET x",
            "r/a",
            false,
        );
        assert!(
            matches!(&nf, DiscoveryError::NotFound(m) if m.contains("NAME_UNKNOWN")),
            "{nf:?}"
        );
        assert!(
            matches!(refused(StatusCode::UNAUTHORIZED, b"", "GET x", "r/a", true), DiscoveryError::Denied(m) if m.contains("refused"))
        );
        assert!(
            matches!(refused(StatusCode::FORBIDDEN, b"", "GET x", "r/a", false), DiscoveryError::Denied(m) if m.contains("needs credentials"))
        );
        assert!(matches!(
            refused(StatusCode::TOO_MANY_REQUESTS, b"", "GET x", "r/a", false),
            DiscoveryError::Unavailable(_)
        ));
        assert!(matches!(
            refused(StatusCode::BAD_GATEWAY, b"", "GET x", "r/a", false),
            DiscoveryError::Unavailable(_)
        ));
    }
}
