//! GitHub: the head of a branch, asked conditionally, and the details of one commit.
//!
//! The head comes from `GET /repos/{owner}/{repo}/commits/{ref}` with
//! `Accept: application/vnd.github.sha`, which answers with the bare SHA and an ETag. Sent
//! again with `If-None-Match`, an unchanged branch is answered `304 Not Modified`, which
//! costs no rate limit when the request carries a token.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use octocrab::service::middleware::base_uri::BaseUriLayer;
use octocrab::service::middleware::extra_headers::ExtraHeadersLayer;
use octocrab::{AuthState, Octocrab, OctocrabBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower_http::follow_redirect::FollowRedirectLayer;

use crate::config::{GithubSettings, Repo};
use crate::redact::Redactor;
use crate::retry::{self, Retryable};

/// What a conditional poll of a branch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The branch has not moved since the ETag that was sent.
    Unchanged,
    /// The branch points at `sha`, which may be the SHA it pointed at before: a poll
    /// without an ETag, or whose ETag GitHub no longer honours, is answered in full.
    /// `etag` makes the next poll conditional.
    At { sha: String, etag: Option<String> },
}

pub mod app;
pub mod pulls;

/// A `Bearer` header holding `token`, marked sensitive so that it is never logged.
fn bearer(token: &SecretString) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A commit status, as GitHub shows it beside the commit and on its pull requests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitStatus {
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    /// At most [`DESCRIPTION_MAX`] characters.
    pub description: String,
    pub context: String,
}

/// The longest description GitHub takes.
pub const DESCRIPTION_MAX: usize = 140;

/// What a Slack message and a log line say about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    /// The whole commit message.
    pub message: String,
    /// Its first line.
    pub title: String,
    pub author: String,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found on GitHub (404): deleted, renamed, or not readable with this token")]
    NotFound { what: String },
    #[error("GitHub refused the token (401): {message}")]
    Unauthorized { message: String },
    #[error("GitHub rate limit reached ({status}){}", wait_text(*.retry_after))]
    RateLimited {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("GitHub answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("GitHub did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach GitHub: {0}")]
    Transport(String),
    #[error("unexpected answer from GitHub: {0}")]
    Invalid(String),
}

fn wait_text(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("; retry in {}s", d.as_secs()),
        None => String::new(),
    }
}

impl Error {
    /// Whether asking again, later, cannot help: the thing is not there, the credentials
    /// are refused, or GitHub rejected the request itself (a 4xx other than a rate limit).
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::NotFound { .. } | Error::Unauthorized { .. } => true,
            Error::Status { status, .. } => status.is_client_error(),
            _ => false,
        }
    }
}

impl Retryable for Error {
    fn retry(&self) -> retry::Retry {
        match self {
            Error::RateLimited {
                retry_after: Some(d),
                ..
            } => retry::Retry::After(*d),
            // Without a time to wait for, a rate limit is waited out by the next pass.
            Error::RateLimited { .. } => retry::Retry::Never,
            Error::Status { status, .. } if status.is_server_error() => retry::Retry::Backoff,
            Error::Timeout(_) | Error::Transport(_) => retry::Retry::Backoff,
            _ => retry::Retry::Never,
        }
    }

    fn timed_out(after: Duration) -> Self {
        Error::Timeout(after)
    }
}

/// A GitHub REST client for one API root (github.com or an Enterprise server).
#[derive(Debug, Clone)]
pub struct GitHub {
    client: Octocrab,
    policy: retry::Policy,
    redactor: Redactor,
    credential: Credential,
    /// The login the token signs in as (`GET /user`), asked once, when first needed.
    login: Arc<tokio::sync::OnceCell<String>>,
}

/// How requests are signed in.
#[derive(Debug, Clone)]
enum Credential {
    None,
    /// A token, as its `Authorization` header.
    Token(HeaderValue),
    /// A GitHub App installation, whose tokens are fetched and renewed.
    App(Arc<app::App>),
}

impl GitHub {
    /// A client of the REST root `settings.api_url` (e.g. `https://api.github.com` or
    /// `https://HOST/api/v3`), signed in with its token or App, if any.
    pub fn new(settings: &GithubSettings, policy: retry::Policy) -> anyhow::Result<GitHub> {
        let api_url = settings.api_url.as_str();
        // octocrab's default builder adds a `User-Agent: octocrab` of its own beside any
        // other, so its stack is assembled here: rustls with the system's roots, plain
        // HTTP for a local test server, redirects followed (a renamed repository answers
        // 301), the API root, and our headers. Attempts are timed by our retry policy.
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(crate::http::connect_timeout(policy.timeout)));
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let headers = vec![(
            header::USER_AGENT,
            HeaderValue::from_static(crate::http::USER_AGENT),
        )];
        let mut redactor = Redactor::default();
        let credential = match (&settings.token, &settings.app) {
            (_, Some(app)) => {
                redactor.add(&app.key);
                Credential::App(Arc::new(app::App::new(app)?))
            }
            (Some(token), None) => {
                redactor.add(token);
                Credential::Token(bearer(token).ok_or_else(|| {
                    anyhow::anyhow!("the GitHub token holds characters a header cannot")
                })?)
            }
            (None, None) => Credential::None,
        };
        let client = OctocrabBuilder::new_empty()
            .with_service(client)
            .with_layer(&FollowRedirectLayer::new())
            .with_layer(&BaseUriLayer::new(api_url.parse()?))
            .with_layer(&ExtraHeadersLayer::new(Arc::new(headers)))
            .with_auth(AuthState::None)
            .build()?;
        Ok(GitHub {
            client,
            policy,
            redactor,
            credential,
            login: Arc::default(),
        })
    }

    /// The head of `branch`, asked with `If-None-Match: etag` when an ETag is known.
    pub async fn head(&self, repo: &Repo, branch: &str, etag: Option<&str>) -> Result<Head, Error> {
        // GitHub documents a branch as `heads/BRANCH`; an unqualified name could resolve
        // to a tag of the same name first.
        let path = format!("/repos/{repo}/commits/heads/{}", encode_ref(branch));
        let what = format!("branch {branch} of {repo}");
        self.policy
            .run(&what, || async {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_static("application/vnd.github.sha"),
                );
                if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
                    headers.insert(header::IF_NONE_MATCH, etag);
                }
                let (status, headers, body) = self.get(&path, headers).await?;
                match status {
                    StatusCode::NOT_MODIFIED => Ok(Head::Unchanged),
                    s if s.is_success() => {
                        let sha = body.trim().to_owned();
                        if !is_sha(&sha) {
                            return Err(Error::Invalid(format!(
                                "the head of {what} is not a commit SHA"
                            )));
                        }
                        let etag = headers
                            .get(header::ETAG)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        Ok(Head::At { sha, etag })
                    }
                    // GitHub answers 422 "No commit found for SHA" for a ref that does not
                    // exist, and 404 for a repository it cannot see.
                    StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY => {
                        Err(Error::NotFound { what: what.clone() })
                    }
                    s => Err(self.status_error(s, &headers, &body)),
                }
            })
            .await
    }

    /// The first line, author and web link of one commit.
    pub async fn commit(&self, repo: &Repo, sha: &str) -> Result<Commit, Error> {
        let path = format!("/repos/{repo}/commits/{sha}");
        let raw: RawCommit = self.get_json("commit details", &path, |_, _| None).await?;
        Ok(Commit {
            sha: raw.sha,
            title: raw.commit.message.lines().next().unwrap_or("").to_owned(),
            message: raw.commit.message,
            author: raw
                .author
                .map(|a| a.login)
                .or(raw.commit.author.map(|a| a.name))
                .unwrap_or_else(|| "unknown".to_owned()),
            url: raw.html_url,
        })
    }

    /// The files changed between two commits, from `GET /repos/{o}/{r}/compare/{base}...{head}`.
    pub async fn compare(&self, repo: &Repo, base: &str, head: &str) -> Result<Compare, Error> {
        let path = format!("/repos/{repo}/compare/{base}...{head}");
        // A 404 means the base is gone from the repository: history was rewritten.
        let raw: Option<RawCompare> = self
            .get_json("compare", &path, |status, _| {
                (status == StatusCode::NOT_FOUND).then_some(None)
            })
            .await?;
        let Some(raw) = raw else {
            return Ok(Compare {
                status: "unknown".into(),
                files: Vec::new(),
                complete: false,
            });
        };
        let complete = raw.files.len() < COMPARE_FILE_LIMIT
            && raw.commits.len() < COMPARE_COMMIT_LIMIT
            && raw
                .total_commits
                .is_none_or(|t| t < COMPARE_COMMIT_LIMIT as u64);
        let files = raw
            .files
            .into_iter()
            .flat_map(|f| std::iter::once(f.filename).chain(f.previous_filename))
            .collect();
        Ok(Compare {
            status: raw.status,
            files,
            complete,
        })
    }

    /// The core rate limit left to this token (or this address, without a token), as
    /// `(remaining, limit)`, or `None` on a GitHub Enterprise Server with rate limiting
    /// off, which answers 404 "Rate limiting is not enabled.". Asking costs nothing; a bad
    /// token is refused with 401.
    pub async fn rate_limit(&self) -> Result<Option<(u64, u64)>, Error> {
        let raw: Option<RawRateLimit> = self
            .get_json("rate limit", "/rate_limit", |status, body| {
                (status == StatusCode::NOT_FOUND && body.contains("Rate limiting is not enabled"))
                    .then_some(None)
            })
            .await?;
        Ok(raw.map(|raw| (raw.rate.remaining, raw.rate.limit)))
    }

    /// Sets `status` on commit `sha` (`POST /repos/{repo}/statuses/{sha}`): needs the
    /// "Commit statuses: write" permission.
    pub async fn set_status(
        &self,
        repo: &Repo,
        sha: &str,
        status: &CommitStatus,
    ) -> Result<(), Error> {
        let path = format!("/repos/{repo}/statuses/{sha}");
        self.policy
            .run("commit status", || async {
                let headers = rest_json();
                let (code, headers, body) = self
                    .send(Method::POST, &path, headers, Some(status))
                    .await?;
                if code.is_success() {
                    Ok(())
                } else {
                    Err(self.status_error(code, &headers, &body))
                }
            })
            .await
    }

    /// `GET path` as `application/vnd.github+json`, retried by the policy and parsed into
    /// `T`. Some error answers mean "nothing there" rather than a failure (a compare whose
    /// base is gone, a server without rate limits): `instead` gives the value such an
    /// answer stands for, and `None` for every answer that is an error.
    async fn get_json<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        instead: impl Fn(StatusCode, &str) -> Option<T>,
    ) -> Result<T, Error> {
        self.policy
            .run(what, || async {
                let headers = rest_json();
                let (status, headers, body) = self.get(path, headers).await?;
                if status.is_success() {
                    return serde_json::from_str(&body).map_err(|e| Error::Invalid(e.to_string()));
                }
                instead(status, &body).ok_or_else(|| self.status_error(status, &headers, &body))
            })
            .await
    }

    async fn get(
        &self,
        path: &str,
        headers: HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, String), Error> {
        self.send(Method::GET, path, headers, None::<&()>).await
    }

    /// Sends one request signed in as the client is; an App's token that GitHub refuses
    /// (401) is renewed and the request sent once more.
    async fn send<B: serde::Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<&B>,
    ) -> Result<(StatusCode, HeaderMap, String), Error> {
        let signed = self.signed(&headers).await?;
        let answer = self.exchange(&method, path, &signed, body).await?;
        match &self.credential {
            Credential::App(app) if answer.0 == StatusCode::UNAUTHORIZED => {
                tracing::info!("GitHub refused the installation token; fetching a new one");
                app.forget();
                let signed = self.signed(&headers).await?;
                self.exchange(&method, path, &signed, body).await
            }
            _ => Ok(answer),
        }
    }

    /// `headers` and the `Authorization` of the client's token or App installation.
    async fn signed(&self, headers: &HeaderMap) -> Result<HeaderMap, Error> {
        let mut headers = headers.clone();
        if let Some(auth) = self.authorization().await? {
            headers.insert(header::AUTHORIZATION, auth);
        }
        Ok(headers)
    }

    /// One request with exactly these headers, and its answer.
    async fn exchange<B: serde::Serialize + ?Sized>(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<&B>,
    ) -> Result<(StatusCode, HeaderMap, String), Error> {
        let mut request = http::request::Builder::new()
            .method(method.clone())
            .uri(path);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = self
            .client
            .build_request(request, body)
            .map_err(|e| self.transport_error(e))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self
            .client
            .body_to_string(response)
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok((status, headers, body))
    }

    /// The `Authorization` header: the token, or an App installation's current token,
    /// fetched when there is none or it is about to expire.
    async fn authorization(&self) -> Result<Option<HeaderValue>, Error> {
        let app = match &self.credential {
            Credential::None => return Ok(None),
            Credential::Token(header) => return Ok(Some(header.clone())),
            Credential::App(app) => app,
        };
        let token = match app.token() {
            Some(token) => token,
            None => {
                let _fetching = app.fetching.lock().await;
                match app.token() {
                    Some(token) => token,
                    None => self.installation_token(app).await?,
                }
            }
        };
        bearer(&token)
            .map(Some)
            .ok_or_else(|| Error::Invalid("the installation token is not a header".into()))
    }

    /// With an App: its name (`GET /app`, signed with the JWT), and the repositories its
    /// installation can see (`GET /installation/repositories`, with its token; the first
    /// hundred). `None` without an App.
    pub async fn app_check(&self) -> Result<Option<(String, Vec<String>)>, Error> {
        let Credential::App(app) = &self.credential else {
            return Ok(None);
        };
        let headers = self.as_app(app)?;
        let (status, headers, body) = self
            .exchange(&Method::GET, "/app", &headers, None::<&()>)
            .await?;
        if !status.is_success() {
            return Err(self.status_error(status, &headers, &body));
        }
        #[derive(Deserialize)]
        struct RawApp {
            slug: String,
        }
        #[derive(Deserialize)]
        struct Repos {
            repositories: Vec<RawRepo>,
        }
        #[derive(Deserialize)]
        struct RawRepo {
            full_name: String,
        }
        let found: RawApp =
            serde_json::from_str(&body).map_err(|e| Error::Invalid(e.to_string()))?;
        let repos: Repos = self
            .get_json(
                "installation repositories",
                "/installation/repositories?per_page=100",
                |_, _| None,
            )
            .await?;
        Ok(Some((
            found.slug,
            repos
                .repositories
                .into_iter()
                .map(|r| r.full_name)
                .collect(),
        )))
    }

    /// The headers of a request as the App itself: its JWT.
    fn as_app(&self, app: &app::App) -> Result<HeaderMap, Error> {
        let jwt = SecretString::from(app.jwt().map_err(Error::Invalid)?);
        let mut headers = rest_json();
        if let Some(auth) = bearer(&jwt) {
            headers.insert(header::AUTHORIZATION, auth);
        }
        Ok(headers)
    }

    /// Trades the App's JWT for an installation token
    /// (`POST /app/installations/{id}/access_tokens`) and keeps it.
    async fn installation_token(&self, app: &app::App) -> Result<SecretString, Error> {
        let path = format!("/app/installations/{}/access_tokens", app.installation_id);
        let headers = self.as_app(app)?;
        let (status, headers, body) = self
            .exchange(&Method::POST, &path, &headers, None::<&()>)
            .await?;
        if !status.is_success() {
            return Err(match self.status_error(status, &headers, &body) {
                Error::Unauthorized { message } => Error::Unauthorized {
                    message: format!(
                        "GitHub did not accept the App's JWT (app_id {}, installation_id {}): \
                         {message}",
                        app.app_id, app.installation_id
                    ),
                },
                other => other,
            });
        }
        #[derive(Deserialize)]
        struct Granted {
            token: String,
            expires_at: String,
        }
        let granted: Granted =
            serde_json::from_str(&body).map_err(|e| Error::Invalid(e.to_string()))?;
        let token = SecretString::from(granted.token);
        app.keep(token.clone(), &granted.expires_at);
        Ok(token)
    }

    /// Octocrab's transport errors can quote the request; only the cleaned chain is kept.
    fn transport_error(&self, e: octocrab::Error) -> Error {
        Error::Transport(self.redactor.clean(&crate::error_chain(&e)))
    }

    fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> Error {
        match status_error(status, headers, body) {
            Error::Status { status, message } => Error::Status {
                status,
                message: self.redactor.clean(&message),
            },
            Error::Unauthorized { message } => Error::Unauthorized {
                message: self.redactor.clean(&message),
            },
            other => other,
        }
    }
}

#[derive(Deserialize)]
struct RawCommit {
    sha: String,
    html_url: String,
    commit: RawCommitInner,
    author: Option<RawUser>,
}

#[derive(Deserialize)]
struct RawCommitInner {
    message: String,
    author: Option<RawGitAuthor>,
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
}

#[derive(Deserialize)]
struct RawGitAuthor {
    name: String,
}

/// GitHub lists at most this many files in a comparison, and this many commits.
const COMPARE_FILE_LIMIT: usize = 300;
const COMPARE_COMMIT_LIMIT: usize = 250;

/// The headers of a REST call: GitHub's JSON media type.
fn rest_json() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/vnd.github+json"),
    );
    headers
}

/// What changed between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// `ahead` for a plain push; `behind` or `diverged` after a force-push.
    pub status: String,
    /// Paths touched, old names of renamed files included.
    pub files: Vec<String>,
    /// False when GitHub's lists were cut short, so a path may be missing.
    pub complete: bool,
}

impl Compare {
    /// Whether the file list can be trusted to say everything the push changed.
    pub fn is_exact(&self) -> bool {
        self.status == "ahead" && self.complete
    }
}

#[derive(Deserialize)]
struct RawCompare {
    status: String,
    total_commits: Option<u64>,
    #[serde(default)]
    commits: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    filename: String,
    previous_filename: Option<String>,
}

#[derive(Deserialize)]
struct RawRateLimit {
    rate: RawRate,
}

#[derive(Deserialize)]
struct RawRate {
    limit: u64,
    remaining: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

fn status_error(status: StatusCode, headers: &HeaderMap, body: &str) -> Error {
    let message = serde_json::from_str::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    let header_secs = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if status == StatusCode::UNAUTHORIZED {
        return Error::Unauthorized { message };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN {
        if let Some(secs) = header_secs("retry-after") {
            return Error::RateLimited {
                status,
                retry_after: Some(Duration::from_secs(secs)),
            };
        }
        if header_secs("x-ratelimit-remaining") == Some(0) {
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            let wait = header_secs("x-ratelimit-reset")
                .map(|reset| Duration::from_secs(reset.saturating_sub(now).max(1)));
            return Error::RateLimited {
                status,
                retry_after: wait,
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS || message.contains("rate limit") {
            return Error::RateLimited {
                status,
                retry_after: None,
            };
        }
    }
    Error::Status { status, message }
}

/// A branch in the path of `commits/heads/{branch}`: GitHub's REST description marks the
/// ref as multi-segment, so its `/` stay raw (an escaped `/` is not found, notably on
/// GitHub Enterprise), and every other reserved character of each segment is escaped.
fn encode_ref(branch: &str) -> String {
    crate::percent_encode(branch, b"/")
}

fn is_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_keeps_its_slashes_and_escapes_the_rest() {
        assert_eq!(encode_ref("main"), "main");
        assert_eq!(encode_ref("release/v2"), "release/v2");
        assert_eq!(encode_ref("feat/a+b#1"), "feat/a%2Bb%231");
        assert_eq!(encode_ref("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(encode_ref("a~b"), "a~b", "unreserved characters stay");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    const BODY: &str = r#"{"message": "API rate limit exceeded for user ID 1."}"#;

    #[test]
    fn a_retry_after_is_obeyed() {
        let e = status_error(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "7")]),
            BODY,
        );
        assert!(matches!(e, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 7));
        assert_eq!(e.retry(), retry::Retry::After(Duration::from_secs(7)));
    }

    #[test]
    fn an_exhausted_primary_limit_waits_for_its_reset() {
        let reset = (chrono::Utc::now().timestamp() + 120).to_string();
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        let e = status_error(StatusCode::FORBIDDEN, &h, BODY);
        let Error::RateLimited {
            retry_after: Some(d),
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert!((118..=120).contains(&d.as_secs()), "{d:?}");
    }

    #[test]
    fn a_secondary_limit_without_a_time_is_still_a_rate_limit() {
        let body = r#"{"message": "You have exceeded a secondary rate limit."}"#;
        let e = status_error(StatusCode::FORBIDDEN, &headers(&[]), body);
        assert!(
            matches!(
                e,
                Error::RateLimited {
                    retry_after: None,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_bad_token_and_other_refusals_are_told_apart() {
        let body = r#"{"message": "Bad credentials"}"#;
        let e = status_error(StatusCode::UNAUTHORIZED, &headers(&[]), body);
        assert_eq!(
            e.to_string(),
            "GitHub refused the token (401): Bad credentials"
        );
        assert_eq!(e.retry(), retry::Retry::Never);
        let e = status_error(
            StatusCode::FORBIDDEN,
            &headers(&[]),
            r#"{"message": "Nope"}"#,
        );
        assert!(matches!(e, Error::Status { .. }), "{e:?}");
        let e = status_error(StatusCode::BAD_GATEWAY, &headers(&[]), "<html>");
        assert_eq!(
            e.to_string(),
            "GitHub answered 502 Bad Gateway: Bad Gateway"
        );
        assert_eq!(e.retry(), retry::Retry::Backoff);
    }

    #[test]
    fn a_sha_is_40_or_64_hex_digits() {
        assert!(is_sha(&"a".repeat(40)));
        assert!(is_sha(&"0".repeat(64)));
        assert!(!is_sha(&"g".repeat(40)));
        assert!(!is_sha("abc"));
    }
}
