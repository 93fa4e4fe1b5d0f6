//! Shared test set-up: fake GitHub and Slack servers that speak the real shapes, the moto
//! EC2 emulator, and a way to run the real binary against them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ec2::types::InstanceStateName;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

mod fleet;
pub use fleet::*;
mod pricing;
pub use pricing::*;
mod prices;

pub const TOKEN: &str = "ghp_testtoken0123456789abcdefABCDEF0123";
pub const SLACK_TOKEN: &str = "xoxb-1111-2222-secretslacktoken";

/// A 40-hex SHA made from a small number, so tests can say "commit 1", "commit 2"; its
/// short form (seven digits) is distinct too.
pub fn sha(n: u32) -> String {
    format!("{n:07x}{}", "a".repeat(33))
}

/// GitHub's REST API, as far as pushwake uses it.
pub struct GitHub {
    pub server: MockServer,
    // Later answers for a route are mounted at a higher priority (a lower number), so
    // they win over earlier ones.
    priorities: Mutex<HashMap<String, u8>>,
}

impl GitHub {
    pub async fn start() -> GitHub {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/rate_limit"))
            .respond_with(github_headers(ResponseTemplate::new(200)).set_body_json(
                serde_json::json!({
                    "resources": {"core": {"limit": 5000, "used": 1, "remaining": 4999, "reset": 1764330000}},
                    "rate": {"limit": 5000, "used": 1, "remaining": 4999, "reset": 1764330000}
                }),
            ))
            .with_priority(250)
            .mount(&server)
            .await;
        // What GitHub answers for a commit it cannot find, e.g. an escaped slash.
        Mock::given(method("GET"))
            .and(wiremock::matchers::path_regex(
                "^/repos/[^/]+/[^/]+/commits/.+",
            ))
            .respond_with(error(404, "Not Found"))
            .with_priority(255)
            .mount(&server)
            .await;
        GitHub {
            server,
            priorities: Mutex::new(HashMap::new()),
        }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Takes commit statuses as GitHub does: `state` one of four, a description of at most
    /// 140 characters, a context; 422 otherwise.
    pub async fn take_statuses(&self) {
        Mock::given(method("POST"))
            .and(wiremock::matchers::path_regex(
                "^/repos/[^/]+/[^/]+/statuses/[0-9a-f]{40}$",
            ))
            .respond_with(|r: &Request| {
                let body: serde_json::Value = match serde_json::from_slice(&r.body) {
                    Ok(b) => b,
                    Err(_) => return error(400, "Problems parsing JSON"),
                };
                let state_ok = matches!(
                    body["state"].as_str(),
                    Some("error" | "failure" | "pending" | "success")
                );
                let description = body["description"].as_str().unwrap_or_default();
                if !state_ok || body["context"].as_str().is_none() {
                    return error(422, "Validation Failed");
                }
                if description.chars().count() > 140 {
                    return error(422, "description is too long (maximum is 140 characters)");
                }
                github_headers(ResponseTemplate::new(201)).set_body_json(serde_json::json!({
                    "id": 1, "state": body["state"], "description": description,
                    "context": body["context"], "target_url": null,
                    "created_at": "2026-11-29T08:00:00Z", "updated_at": "2026-11-29T08:00:00Z"
                }))
            })
            .mount(&self.server)
            .await;
    }

    /// The commit statuses set, in order: `(sha, state, description, context)`.
    pub async fn statuses(&self) -> Vec<(String, String, String, String)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path().contains("/statuses/"))
            .map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                let field = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
                let sha = r.url.path().rsplit('/').next().unwrap().to_owned();
                (sha, field("state"), field("description"), field("context"))
            })
            .collect()
    }

    /// Points `branch` of `repo` at commit `sha`. As on GitHub, the head is served at
    /// `commits/heads/BRANCH` with the branch's slashes raw, and nowhere else: an escaped
    /// slash, or the branch without `heads/`, is answered 404.
    pub async fn set_head(&self, repo: &str, branch: &str, sha: &str) {
        let message = format!("Train with commit {}\n\nA longer body.", &sha[..8]);
        self.set_head_with_message(repo, branch, sha, &message)
            .await;
    }

    /// The next priority for `route`: two steps above the last.
    fn priority(&self, route: &str) -> u8 {
        let mut all = self.priorities.lock().unwrap();
        let p = all.entry(route.to_owned()).or_insert(202);
        *p -= 2;
        *p
    }

    /// Like [`GitHub::set_head`], with the commit's message.
    pub async fn set_head_with_message(&self, repo: &str, branch: &str, sha: &str, message: &str) {
        let route = format!("/repos/{repo}/commits/heads/{branch}");
        let p = self.priority(&route);
        let etag = format!("\"{sha}\"");
        Mock::given(method("GET"))
            .and(path(route.clone()))
            .and(header("if-none-match", etag.as_str()))
            .respond_with(
                github_headers(ResponseTemplate::new(304)).insert_header("etag", etag.as_str()),
            )
            .with_priority(p - 1)
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path(route))
            .and(header("accept", "application/vnd.github.sha"))
            .respond_with(
                github_headers(ResponseTemplate::new(200))
                    .insert_header("etag", etag.as_str())
                    .insert_header("content-type", "application/vnd.github.sha; charset=utf-8")
                    .set_body_string(sha),
            )
            .with_priority(p)
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{repo}/commits/{sha}")))
            .respond_with(github_headers(ResponseTemplate::new(200)).set_body_json(
                serde_json::json!({
                    "sha": sha,
                    "html_url": format!("https://github.com/{repo}/commit/{sha}"),
                    "commit": {
                        "message": message,
                        "author": {"name": "Ada Lovelace", "email": "ada@example.com", "date": "2026-11-28T10:00:00Z"}
                    },
                    "author": {"login": "ada"},
                    "files": []
                }),
            ))
            .mount(&self.server)
            .await;
    }

    /// Answers the comparison of `base...head` with `status` (ahead, behind, diverged) and
    /// these changed files (`(name, previous name)`).
    pub async fn set_compare(
        &self,
        repo: &str,
        base: &str,
        head: &str,
        status: &str,
        files: &[(&str, Option<&str>)],
    ) {
        let files: Vec<serde_json::Value> = files
            .iter()
            .map(|(name, previous)| {
                let mut f = serde_json::json!({
                    "sha": "bbbb", "filename": name, "status": "modified",
                    "additions": 1, "deletions": 1, "changes": 2
                });
                if let Some(p) = previous {
                    f["status"] = "renamed".into();
                    f["previous_filename"] = (*p).into();
                }
                f
            })
            .collect();
        let body = serde_json::json!({
            "url": format!("https://api.github.com/repos/{repo}/compare/{base}...{head}"),
            "status": status,
            "ahead_by": 1,
            "behind_by": if status == "ahead" { 0 } else { 3 },
            "total_commits": 1,
            "commits": [{"sha": head}],
            "files": files
        });
        Mock::given(method("GET"))
            .and(path(format!("/repos/{repo}/compare/{base}...{head}")))
            .respond_with(github_headers(ResponseTemplate::new(200)).set_body_json(body))
            .mount(&self.server)
            .await;
    }

    /// How many requests were made to a path containing `part`.
    pub async fn requests_to(&self, part: &str) -> usize {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| r.url.path().contains(part))
            .count()
    }

    /// Makes every request for `route` answer `status` with GitHub's error body.
    pub async fn fail(&self, route: &str, status: u16, message: &str) {
        self.answer(route, error(status, message), None).await;
    }

    /// Makes the next `times` requests for `route` (all, with `None`) get `response`,
    /// ahead of anything mounted before.
    pub async fn answer(&self, route: &str, response: ResponseTemplate, times: Option<u64>) {
        let p = self.priority(route);
        let mock = Mock::given(method("GET"))
            .and(path(route.to_owned()))
            .respond_with(response)
            .with_priority(p);
        let mock = match times {
            Some(n) => mock.up_to_n_times(n),
            None => mock,
        };
        mock.mount(&self.server).await;
    }

    /// The requests made for the head of `branch` of `repo`.
    pub async fn head_requests(&self, repo: &str, branch: &str) -> Vec<Request> {
        let route = format!("/repos/{repo}/commits/heads/{branch}");
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == route)
            .collect()
    }
}

/// A GitHub error answer: its headers and its JSON error body.
pub fn error(status: u16, message: &str) -> ResponseTemplate {
    github_headers(ResponseTemplate::new(status)).set_body_json(serde_json::json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.to_string()
    }))
}

fn github_headers(t: ResponseTemplate) -> ResponseTemplate {
    t.insert_header("x-github-api-version-selected", "2022-11-28")
        .insert_header("x-ratelimit-limit", "5000")
        .insert_header("x-ratelimit-remaining", "4999")
        .insert_header("x-ratelimit-used", "1")
        .insert_header("x-ratelimit-resource", "core")
        .insert_header("x-github-request-id", "C0DE:1234:5678:9ABC:6750A1B2")
}

/// A GitHub App's key pair, made by `openssl` in `dir`: the private key (PKCS#1 PEM, as
/// GitHub hands them out) in `app.pem`, and the public key's PEM.
pub fn app_key(dir: &std::path::Path) -> (PathBuf, String) {
    let private = dir.join("app.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&private)
        .arg("2048")
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", stderr(&made));
    let public = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&private)
        .output()
        .expect("openssl");
    assert!(public.status.success(), "{}", stderr(&public));
    (private, stdout(&public))
}

/// GitHub's side of an App installation's sign-in, at `prefix` (`""`, or `/api/v3` for
/// GitHub Enterprise Server): the token endpoint checks the JWT's signature with
/// `public_key`, and its claims as GitHub does (issued by `app_id`, expiring at most ten
/// minutes after it was issued, not in the future), then grants `tokens` in turn, each
/// `(token, seconds until it expires)`.
pub async fn app_sign_in(
    server: &MockServer,
    prefix: &str,
    public_key: &str,
    app_id: u64,
    installation_id: u64,
    tokens: Vec<(&'static str, i64)>,
) {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key.as_bytes()).unwrap();
    let granted = std::sync::atomic::AtomicUsize::new(0);
    Mock::given(method("POST"))
        .and(path(format!(
            "{prefix}/app/installations/{installation_id}/access_tokens"
        )))
        .respond_with(move |r: &Request| {
            let jwt = r
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            let mut rules = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            rules.set_issuer(&[app_id.to_string()]);
            rules.set_required_spec_claims(&["exp", "iat", "iss"]);
            let claims = match jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &rules) {
                Ok(t) => t.claims,
                Err(_) => return error(401, "A JSON web token could not be decoded"),
            };
            let (iat, exp) = (
                claims["iat"].as_i64().unwrap(),
                claims["exp"].as_i64().unwrap(),
            );
            let now = chrono::Utc::now().timestamp();
            if exp - iat > 600 || iat > now {
                return error(
                    401,
                    "'Expiration time' claim ('exp') is too far in the future",
                );
            }
            let n = granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (token, life) = tokens[n.min(tokens.len() - 1)];
            let expires = (chrono::Utc::now() + chrono::Duration::seconds(life))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            github_headers(ResponseTemplate::new(201)).set_body_json(serde_json::json!({
                "token": token, "expires_at": expires,
                "permissions": {"contents": "read", "statuses": "write"},
                "repository_selection": "selected"
            }))
        })
        .mount(server)
        .await;
}

/// Slack: the Web API's `chat.postMessage` and an incoming webhook.
pub struct Slack {
    pub server: MockServer,
}

/// The `ts` Slack gives every message the bot posts.
pub const PARENT_TS: &str = "1732790000.000100";

pub const WEBHOOK_PATH: &str = "/services/T000/B000/XXXXsecretXXXX";

impl Slack {
    pub async fn start() -> Slack {
        let server = MockServer::start().await;
        // chat.postMessage as Slack answers it: a reply names a thread Slack knows.
        let posted = |r: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let answer = match body["thread_ts"].as_str() {
                Some(ts) if ts != PARENT_TS => {
                    serde_json::json!({"ok": false, "error": "thread_not_found"})
                }
                _ => serde_json::json!({
                    "ok": true, "channel": "C0123", "ts": PARENT_TS,
                    "message": {"type": "message", "text": "..."}
                }),
            };
            ResponseTemplate::new(200).set_body_json(answer)
        };
        Slack::method(&server, "chat.postMessage", posted).await;
        // chat.update as Slack checks it: the channel's id and the message's ts.
        let updated = |r: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let answer = match (body["channel"].as_str(), body["ts"].as_str()) {
                (Some("C0123"), Some(PARENT_TS)) if body["text"].is_string() => {
                    serde_json::json!({"ok": true, "channel": "C0123", "ts": PARENT_TS})
                }
                (Some("C0123"), _) => {
                    serde_json::json!({"ok": false, "error": "message_not_found"})
                }
                _ => serde_json::json!({"ok": false, "error": "channel_not_found"}),
            };
            ResponseTemplate::new(200).set_body_json(answer)
        };
        Mock::given(method("POST"))
            .and(path("/api/chat.update"))
            .and(header(
                "authorization",
                format!("Bearer {SLACK_TOKEN}").as_str(),
            ))
            .respond_with(updated)
            .mount(&server)
            .await;
        Slack::method(
            &server,
            "auth.test",
            Slack::auth_test("chat:write,channels:read"),
        )
        .await;
        Slack::channels(&server, "training", true, 100).await;
        // An incoming webhook answers "no_text" to a message without text.
        Mock::given(method("POST"))
            .and(path(WEBHOOK_PATH))
            .and(wiremock::matchers::body_json(serde_json::json!({})))
            .respond_with(ResponseTemplate::new(400).set_body_string("no_text"))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(WEBHOOK_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(&server)
            .await;
        Slack { server }
    }

    /// Web API method `name`, answering `answer` to the bot token and, as Slack does,
    /// HTTP 200 with `invalid_auth` to any other.
    pub async fn method(server: &MockServer, name: &str, answer: impl wiremock::Respond + 'static) {
        let route = format!("/api/{name}");
        Mock::given(method("POST"))
            .and(path(route.as_str()))
            .and(header(
                "authorization",
                format!("Bearer {SLACK_TOKEN}").as_str(),
            ))
            .respond_with(answer)
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path(route.as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"ok": false, "error": "invalid_auth"})),
            )
            .with_priority(10)
            .mount(server)
            .await;
    }

    /// `auth.test` accepting the token, with these scopes in `x-oauth-scopes` as Slack
    /// sends them.
    pub fn auth_test(scopes: &str) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .insert_header("x-oauth-scopes", scopes)
            .set_body_json(serde_json::json!({
                "ok": true, "url": "https://ml-team.slack.com/", "team": "ML Team",
                "user": "pushwake", "team_id": "T0123", "user_id": "U0123", "bot_id": "B0123"
            }))
    }

    /// `conversations.list` (which needs a read scope, checked by the token) showing
    /// `name`, with the bot in it or not, in two pages as Slack pages long lists.
    pub async fn channels(server: &MockServer, name: &str, member: bool, priority: u8) {
        let page = |channels: serde_json::Value, next: &str| {
            serde_json::json!({"ok": true, "channels": channels,
                               "response_metadata": {"next_cursor": next}})
        };
        Mock::given(method("GET"))
            .and(path("/api/conversations.list"))
            .and(wiremock::matchers::query_param("cursor", "dGVhbTpDMDE="))
            .respond_with(ResponseTemplate::new(200).set_body_json(page(
                serde_json::json!([{"id": "C0456", "name": name, "is_member": member}]),
                "",
            )))
            .with_priority(priority - 1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/conversations.list"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page(
                serde_json::json!([{"id": "C0123", "name": "general", "is_member": true}]),
                "dGVhbTpDMDE=",
            )))
            .with_priority(priority)
            .mount(server)
            .await;
    }

    /// A `[slack]` section posting to this server with a bot token.
    pub fn config(&self) -> String {
        format!(
            "\n[slack]\napi_url = \"{}\"\ntoken_env = \"SLACK_API_TOKEN\"\nchannel = \"#training\"\n",
            self.api_url()
        )
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.uri())
    }

    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.server.uri())
    }

    /// The bot's calls in order: the method (`chat.postMessage`, `chat.update`), the
    /// `thread_ts` of a reply, whether it was also sent to the channel, and the text.
    pub async fn calls(&self) -> Vec<(String, Option<String>, bool, String)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().starts_with("/api/chat."))
            .map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                (
                    r.url.path().trim_start_matches("/api/").to_owned(),
                    body["thread_ts"].as_str().map(str::to_owned),
                    body["reply_broadcast"].as_bool().unwrap_or(false),
                    body["text"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The texts of all messages posted, either way.
    pub async fn texts(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The moto emulator that `scripts/test` starts. Tests that need it are
/// `#[ignore = "needs moto: scripts/test"]`, so a bare `cargo test` shows them as ignored;
/// one run without moto fails loudly rather than passing without having run.
pub fn moto_url() -> String {
    match std::env::var("PUSHWAKE_TEST_MOTO") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("this test needs moto: run the tests with scripts/test"),
    }
}

/// An AWS SDK config for an emulator at `url`, with static test credentials.
pub async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    sdk_config_as(url, "testing").await
}

/// An AWS SDK config for an emulator at `url`, signing with the access key `key`.
pub async fn sdk_config_as(url: &str, key: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            key, "testing", None, None, "static",
        ))
        .endpoint_url(url)
        .load()
        .await
}

/// A new bucket on moto, its name unique to the test.
pub async fn bucket(moto: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("pushwake-{}-{n}", std::process::id());
    s3(moto)
        .await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    name
}

/// Writes `text` to `key` in `bucket` on moto, whatever is there.
pub async fn put_object(bucket: &str, key: &str, text: &str) {
    s3(&moto_url())
        .await
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(text.as_bytes().to_vec().into())
        .send()
        .await
        .expect("put object");
}

/// The text of `key` in `bucket` on moto, if it exists.
pub async fn object(bucket: &str, key: &str) -> Option<String> {
    let out = s3(&moto_url())
        .await
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    let bytes = out.body.collect().await.ok()?.into_bytes();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

async fn s3(moto: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&sdk_config(moto).await)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A client of the moto server, to set up and inspect instances.
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
}

impl Ec2 {
    /// A client of `region` with the credentials of `role`, assumed through moto's STS:
    /// moto keeps each account's and region's instances apart.
    pub async fn assumed(url: &str, role: &str, region: &str) -> Ec2 {
        let base = sdk_config(url).await;
        use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
        let role = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name("test")
            .configure(&base)
            .build()
            .await;
        let creds = role.provide_credentials().await.expect("assume role");
        let config = base
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .build();
        Ec2 {
            client: aws_sdk_ec2::Client::new(&config),
        }
    }

    pub async fn connect(url: &str) -> Ec2 {
        Ec2 {
            client: aws_sdk_ec2::Client::new(&sdk_config(url).await),
        }
    }

    /// Launches `n` instances and leaves them stopped.
    pub async fn stopped(&self, n: i32) -> Vec<String> {
        let ids = self.running(n).await;
        self.stop(&ids).await;
        ids
    }

    /// Launches `n` instances and leaves them running.
    pub async fn running(&self, n: i32) -> Vec<String> {
        let out = self
            .client
            .run_instances()
            .image_id("ami-12345678")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(n)
            .max_count(n)
            .send()
            .await
            .expect("run instances");
        out.instances()
            .iter()
            .map(|i| i.instance_id().unwrap().to_owned())
            .collect()
    }

    pub async fn start(&self, ids: &[String]) {
        let call = self.client.start_instances();
        call.set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .expect("start instances");
    }

    pub async fn stop(&self, ids: &[String]) {
        let request = self
            .client
            .stop_instances()
            .set_instance_ids(Some(ids.to_vec()));
        request.send().await.expect("stop instances");
    }

    /// Sets tags on instances.
    pub async fn tag(&self, ids: &[String], tags: &[(&str, &str)]) {
        let tags = tags
            .iter()
            .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(*k).value(*v).build())
            .collect();
        self.client
            .create_tags()
            .set_resources(Some(ids.to_vec()))
            .set_tags(Some(tags))
            .send()
            .await
            .expect("create tags");
    }

    /// One instance, as EC2 describes it.
    async fn describe_one(&self, id: &str) -> aws_sdk_ec2::types::Instance {
        let out = self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("describe");
        out.reservations()[0].instances()[0].clone()
    }

    /// The tags of one instance.
    pub async fn tags(&self, id: &str) -> std::collections::BTreeMap<String, String> {
        self.describe_one(id)
            .await
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
            .collect()
    }

    pub async fn terminate(&self, id: &str) {
        self.client
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("terminate");
    }

    /// The state of each instance, in order.
    pub async fn states(&self, ids: &[String]) -> Vec<String> {
        let out = self
            .client
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .expect("describe");
        let all: Vec<_> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap().to_owned(),
                    i.state().and_then(|s| s.name()).cloned(),
                )
            })
            .collect();
        ids.iter()
            .map(|id| {
                match all
                    .iter()
                    .find(|(i, _)| i == id)
                    .and_then(|(_, s)| s.clone())
                {
                    Some(InstanceStateName::Running) => "running".to_owned(),
                    Some(s) => s.as_str().to_owned(),
                    None => "missing".to_owned(),
                }
            })
            .collect()
    }
}

/// A config file in a temporary directory, with its state directory beside it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_string_lossy().into_owned();
        // Empty AWS files, so nothing from the machine's own ~/.aws is used.
        for file in ["aws-config", "aws-credentials"] {
            std::fs::write(dir.path().join(file), "").expect("write aws file");
        }
        Setup {
            dir,
            env: vec![
                ("HOME".into(), home.clone()),
                ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "testingsecretkey".into()),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
                ("AWS_CONFIG_FILE".into(), format!("{home}/aws-config")),
                (
                    "AWS_SHARED_CREDENTIALS_FILE".into(),
                    format!("{home}/aws-credentials"),
                ),
                ("GITHUB_TOKEN".into(), TOKEN.into()),
                ("SLACK_API_TOKEN".into(), SLACK_TOKEN.into()),
            ],
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write_config(&self, text: &str) -> &Setup {
        std::fs::write(self.config_path(), text).expect("write config");
        self
    }

    /// The usual head of a config: fake GitHub, moto (or `ec2_url`), state in the temp dir.
    pub fn header(&self, github: &str, ec2_url: &str) -> String {
        format!(
            r#"interval = "1s"
state_dir = "{}"

[github]
api_url = "{github}"
token_env = "GITHUB_TOKEN"

[aws]
region = "us-east-1"
endpoint_url = "{ec2_url}"
"#,
            self.state_dir().display()
        )
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Runs the binary to completion with the config and environment of this setup.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run pushwake")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwake"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(self.config_path())
            .args(args);
        cmd
    }

    /// Runs `--once` and asserts its exit status.
    pub fn once(&self, code: i32) -> Output {
        exited(self.run(&["--once"]), code)
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }
}

/// `out`, once its exit status is asserted to be `code`.
pub fn exited(out: Output, code: i32) -> Output {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ids sorted and joined as messages list them.
pub fn sorted(ids: &[String]) -> String {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.join(", ")
}

/// A `[[watch]]` table.
pub fn watch(repo: &str, branch: &str, ids: &[String]) -> String {
    let ids: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "\n[[watch]]\nrepo = \"{repo}\"\nbranch = \"{branch}\"\ninstances = [{}]\n",
        ids.join(", ")
    )
}

/// An EC2 (wiremock) with the listed instances, stopped at first, where tagging, starting
/// and stopping all work. As on EC2, an instance it started describes as `running` and one
/// it stopped as `stopped` (moto cannot fail a call on cue; this can).
pub async fn ec2_ok(ids: &[&str]) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Ec2Fake {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            running: Default::default(),
            tags: Default::default(),
            launched: Default::default(),
        })
        .mount(&server)
        .await;
    server
}

struct Ec2Fake {
    ids: Vec<String>,
    running: Mutex<std::collections::BTreeSet<String>>,
    tags: Mutex<HashMap<String, std::collections::BTreeMap<String, String>>>,
    /// When each instance was last started: EC2 moves the launch time on every start.
    launched: Mutex<HashMap<String, String>>,
}

/// Decodes a form-encoded value.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// EC2's answer to tag keys that instance metadata cannot show ('/' or a space), as it
/// refuses them on instances with metadata tags on, which the README tells users to turn
/// on; `None` for keys it takes.
fn tag_key_refused(body: &str) -> Option<ResponseTemplate> {
    let bad = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| k.starts_with("Tag.") && k.ends_with(".Key"))
        .map(|(_, v)| form_decode(v))
        .find(|k| k.contains('/') || k.contains(' '))?;
    Some(ResponseTemplate::new(400).set_body_string(format!(
        "<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>Tag key '{bad}' \
         is not valid for an instance with instance metadata tags enabled.</Message></Error>\
         </Errors><RequestID>r</RequestID></Response>"
    )))
}

/// EC2's answer to a call with more than 200 values in its filters, which it refuses as
/// a whole; `None` for a call within the limit.
fn filter_limit(body: &str) -> Option<ResponseTemplate> {
    let mut per_filter: HashMap<&str, usize> = HashMap::new();
    for key in body
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
    {
        if let Some((filter, _)) = key
            .strip_prefix("Filter.")
            .and_then(|k| k.split_once(".Value."))
        {
            *per_filter.entry(filter).or_default() += 1;
        }
    }
    let values: usize = per_filter.values().sum();
    (values > 200).then(|| {
        ResponseTemplate::new(400).set_body_string(format!(
            "<Response><Errors><Error><Code>FilterLimitExceeded</Code><Message>The maximum \
             number of filter values specified on a single call is 200, got {values}.</Message>\
             </Error></Errors><RequestID>r</RequestID></Response>"
        ))
    })
}

impl wiremock::Respond for Ec2Fake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        const NS: &str = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";
        let body = String::from_utf8_lossy(&request.body).into_owned();
        if let Some(refused) = filter_limit(&body)
            .or_else(|| tag_key_refused(&body))
            .or_else(|| id_limit(&body))
        {
            return refused;
        }
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("");
        // The ids a call names, as `InstanceId.N=` or `ResourceId.N=`.
        let named = body
            .split('&')
            .filter(|kv| kv.starts_with("InstanceId.") || kv.starts_with("ResourceId."))
            .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_owned()));
        if body.contains("DryRun=true") {
            // EC2 answers a permitted dry run with this error, and changes nothing.
            return ResponseTemplate::new(412).set_body_string(
                "<Response><Errors><Error><Code>DryRunOperation</Code><Message>Request would \
                 have succeeded, but DryRun flag is set.</Message></Error></Errors>\
                 <RequestID>r</RequestID></Response>",
            );
        }
        let mut running = self.running.lock().unwrap();
        let mut tags = self.tags.lock().unwrap();
        let mut launched = self.launched.lock().unwrap();
        let param = |name: &str| {
            body.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(form_decode)
        };
        let xml = match action {
            "DescribeInstances" => {
                let items: String = self
                    .ids
                    .iter()
                    .map(|id| {
                        let (code, name) = match running.contains(id) {
                            true => (16, "running"),
                            false => (80, "stopped"),
                        };
                        let tag_set: String = tags
                            .get(id)
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| format!("<item><key>{k}</key><value>{v}</value></item>"))
                            .collect();
                        let launch = launched
                            .get(id)
                            .map(|t| format!("<launchTime>{t}</launchTime>"))
                            .unwrap_or_default();
                        format!(
                            "<item><instanceId>{id}</instanceId><instanceState><code>{code}</code>\
                             <name>{name}</name></instanceState>{launch}<tagSet>{tag_set}</tagSet></item>"
                        )
                    })
                    .collect();
                format!(
                    "<DescribeInstancesResponse {NS}><requestId>r</requestId><reservationSet>\
                     <item><reservationId>r-1</reservationId><instancesSet>{items}</instancesSet>\
                     </item></reservationSet></DescribeInstancesResponse>"
                )
            }
            "StartInstances" | "StopInstances" => {
                for id in named {
                    if action == "StartInstances" {
                        let now =
                            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                        launched.insert(id.clone(), now);
                        running.insert(id);
                    } else {
                        running.remove(&id);
                    }
                }
                format!(
                    "<{action}Response {NS}><requestId>r</requestId><instancesSet/></{action}Response>"
                )
            }
            _ => {
                let resources: Vec<String> = named.collect();
                for n in 1.. {
                    let Some(key) = param(&format!("Tag.{n}.Key")) else {
                        break;
                    };
                    let value = param(&format!("Tag.{n}.Value")).unwrap_or_default();
                    for id in &resources {
                        let on = tags.entry(id.clone()).or_default();
                        match action {
                            "CreateTags" => on.insert(key.clone(), value.clone()),
                            _ => on.remove(&key),
                        };
                    }
                }
                format!(
                    "<{action}Response {NS}><requestId>r</requestId><return>true</return></{action}Response>"
                )
            }
        };
        ResponseTemplate::new(200).set_body_string(xml)
    }
}

/// The `Action=` of each request an EC2 fake received, in order.
pub async fn ec2_actions(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let body = String::from_utf8_lossy(&r.body);
            body.split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// A proxy in front of moto, for the EC2 behaviour moto cannot produce. Every call
/// pushwake makes is forwarded to moto and can be counted; a test injects refusals (EC2
/// fails a batch whole, for one instance) and starts that EC2 accepts and that then fall
/// back to `stopped` with a state reason, as real EC2 does when capacity runs out.
pub struct MotoProxy {
    pub server: MockServer,
    faults: std::sync::Arc<Mutex<Faults>>,
    /// While S3 is down: the status and code it answers.
    outage: std::sync::Arc<Mutex<Option<(u16, String)>>>,
    swallow: std::sync::Arc<Mutex<Option<(String, usize)>>>,
}

#[derive(Default)]
struct Faults {
    /// The next start of these instances is accepted and falls back, with this reason.
    fall_back_next: HashMap<String, (String, String)>,
    /// Instances that fell back, and their reason, until they are started again.
    fallen: HashMap<String, (String, String)>,
    /// Accepted starts, per instance.
    accepted: HashMap<String, usize>,
    /// How far EC2's clock is ahead of this machine's.
    skew: chrono::Duration,
    /// When each instance was last started through the proxy: EC2 moves the launch time
    /// on every start, moto keeps the first.
    launched: HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// Actions whose next answer is held back this long, after moto carried them out.
    delay_next: HashMap<String, Duration>,
    /// Instances described as `stopping` whatever moto says, except to the access keys
    /// listed with them.
    stopping: HashMap<String, std::collections::BTreeSet<String>>,
    /// Capacity refusals, interruptions and the record of fleet calls.
    fleet: fleet::FleetFaults,
    /// Where the AWS Price List's calls go (moto has no Price List): a [`PriceList`] fake.
    pricing: Option<String>,
}

impl MotoProxy {
    pub async fn start(moto: &str) -> MotoProxy {
        let server = MockServer::start().await;
        let faults = std::sync::Arc::new(Mutex::new(Faults::default()));
        let outage = std::sync::Arc::new(Mutex::new(None));
        let swallow = std::sync::Arc::new(Mutex::new(None));
        faults.lock().unwrap().fleet.moto = moto.trim_start_matches("http://").to_owned();
        Mock::given(wiremock::matchers::any())
            .respond_with(Forward {
                moto: moto.trim_start_matches("http://").to_owned(),
                faults: faults.clone(),
                rest: ForwardRest {
                    moto: moto.trim_start_matches("http://").to_owned(),
                    outage: outage.clone(),
                    swallow: swallow.clone(),
                },
            })
            .with_priority(u8::MAX)
            .mount(&server)
            .await;
        MotoProxy {
            server,
            faults,
            outage,
            swallow,
        }
    }

    /// Makes S3 answer every request with `status` and `code`, as S3 does, until
    /// [`MotoProxy::heal_s3`].
    pub fn break_s3(&self, status: u16, code: &str) {
        *self.outage.lock().unwrap() = Some((status, code.to_owned()));
    }

    pub fn heal_s3(&self) {
        *self.outage.lock().unwrap() = None;
    }

    /// The S3 requests (GET, PUT) made with the access key `key`.
    pub async fn s3_requests(&self, key: &str) -> usize {
        let credential = format!("Credential={key}/");
        let signed = |r: &&Request| {
            r.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(&credential))
        };
        let requests = self.server.received_requests().await.unwrap_or_default();
        let s3 = requests
            .iter()
            .filter(|r| matches!(r.method.as_str(), "GET" | "PUT"));
        s3.filter(signed).count()
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// How many calls of `action` pushwake made.
    pub async fn calls(&self, action: &str) -> usize {
        ec2_actions(&self.server)
            .await
            .iter()
            .filter(|a| *a == action)
            .count()
    }

    /// How many `StartInstances` calls that named `id` EC2 accepted.
    pub fn starts_of(&self, id: &str) -> usize {
        let faults = self.faults.lock().unwrap();
        faults.accepted.get(id).copied().unwrap_or(0)
    }

    /// When `id` was last started through the proxy, as its describe answers say.
    pub fn launched(&self, id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.faults.lock().unwrap().launched.get(id).copied()
    }

    /// Makes EC2 refuse every `action` call that names `id` with `code`, the whole call
    /// failing as on EC2, `times` times (`None`: always).
    pub async fn refuse(&self, action: &str, id: &str, code: &str, times: Option<u64>) {
        let mock = Mock::given(method("POST"))
            .and(wiremock::matchers::body_string_contains(
                format!("Action={action}").as_str(),
            ))
            .and(wiremock::matchers::body_string_contains(id))
            .respond_with(ResponseTemplate::new(400).set_body_string(format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>{code}: refused for \
                     {id}.</Message></Error></Errors><RequestID>r</RequestID></Response>"
            )))
            .with_priority(1);
        match times {
            Some(n) => mock.up_to_n_times(n),
            None => mock,
        }
        .mount(&self.server)
        .await;
    }

    /// Sends the AWS Price List's calls, which share the one endpoint, to `url`.
    pub fn route_pricing(&self, url: &str) {
        self.faults.lock().unwrap().pricing = Some(url.to_owned());
    }

    /// Makes EC2 carry out the next `action` (moto does it at once) and hold its answer
    /// back for `by`, as when the agent dies while the answer is on the wire.
    pub fn delay_next_answer(&self, action: &str, by: Duration) {
        self.faults
            .lock()
            .unwrap()
            .delay_next
            .insert(action.to_owned(), by);
    }

    /// Makes EC2 describe `id` as launched at `at`, as when it was started then.
    pub fn set_launched(&self, id: &str, at: chrono::DateTime<chrono::Utc>) {
        self.faults
            .lock()
            .unwrap()
            .launched
            .insert(id.to_owned(), at);
    }

    /// Makes EC2's clock run `by` ahead of this machine's, as when the master's clock is
    /// slow: its `Date` headers and its instances' launch times.
    pub fn skew(&self, by: chrono::Duration) {
        self.faults.lock().unwrap().skew = by;
    }

    /// Makes EC2 accept the next start of `id`, which then falls back to `stopped` with
    /// this state reason.
    pub fn fall_back_next_start(&self, id: &str, code: &str, message: &str) {
        self.faults
            .lock()
            .unwrap()
            .fall_back_next
            .insert(id.to_owned(), (code.to_owned(), message.to_owned()));
    }
}

/// Forwards a request to moto, applying the injected faults.
struct Forward {
    moto: String,
    faults: std::sync::Arc<Mutex<Faults>>,
    /// S3 speaks REST: every method but POST is forwarded as it is.
    rest: ForwardRest,
}

impl wiremock::Respond for Forward {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() != "POST" {
            return self.rest.respond(request);
        }
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok());
        if target.is_some_and(|t| t.starts_with("AWSPriceListService."))
            && let Some(url) = self.faults.lock().unwrap().pricing.clone()
        {
            let (status, answer) = post(url.trim_start_matches("http://"), request, &body);
            return ResponseTemplate::new(status)
                .set_body_raw(answer, "application/x-amz-json-1.1");
        }
        if let Some(refused) = filter_limit(&body)
            .or_else(|| tag_key_refused(&body))
            .or_else(|| id_limit(&body))
        {
            return refused;
        }
        let mut faults = self.faults.lock().unwrap();
        let mut pairs: Vec<(String, String)> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let action = pairs
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let dry = body.contains("DryRun=true");
        let errors = match fleet::intercept(request, &action, dry, &mut pairs, &mut faults.fleet) {
            fleet::Intercept::Answer(answer) => return answer,
            fleet::Intercept::Forward(errors) => errors,
        };
        if action == "StartInstances" && !dry {
            // Accepted, but never started: moto keeps it stopped.
            let ids: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| k.starts_with("InstanceId."))
                .map(|(_, v)| v.clone())
                .collect();
            for id in &ids {
                *faults.accepted.entry(id.clone()).or_default() += 1;
            }
            let keep: Vec<String> = ids
                .iter()
                .filter(|id| match faults.fall_back_next.remove(*id) {
                    Some(reason) => {
                        faults.fallen.insert((*id).clone(), reason);
                        false
                    }
                    None => {
                        faults.fallen.remove(*id);
                        true
                    }
                })
                .cloned()
                .collect();
            if keep.is_empty() {
                return ResponseTemplate::new(200).set_body_string(
                    "<StartInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
                     <requestId>r</requestId><instancesSet/></StartInstancesResponse>",
                );
            }
            for id in &keep {
                faults.launched.insert(id.clone(), chrono::Utc::now());
            }
            pairs.retain(|(k, _)| !k.starts_with("InstanceId."));
            pairs.extend(
                keep.into_iter()
                    .enumerate()
                    .map(|(i, id)| (format!("InstanceId.{}", i + 1), id)),
            );
        }
        let body: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let (status, mut answer) = post(&self.moto, request, &body);
        let delay = match dry {
            true => None,
            false => faults.delay_next.remove(&action),
        };
        if let Some(errors) = &errors {
            answer = fleet::with_error_set(&answer, errors);
        }
        if action == "DescribeInstances" {
            answer = fleet::with_interruptions(&answer, &faults.fleet);
            for (id, (code, message)) in &faults.fallen {
                answer = with_state_reason(&answer, id, code, message);
            }
            answer = with_launch_times_moved(&answer, faults.skew);
            for (id, at) in &faults.launched {
                answer = with_launch_time(&answer, id, *at + faults.skew);
            }
            let key = access_key(request);
            for (id, except) in &faults.stopping {
                if !key.as_ref().is_some_and(|k| except.contains(k)) {
                    answer = with_stopping(&answer, id);
                }
            }
        }
        let date = (chrono::Utc::now() + faults.skew)
            .to_rfc2822()
            .replace("+0000", "GMT");
        ResponseTemplate::new(status)
            .insert_header("date", date.as_str())
            .set_body_raw(answer, "text/xml")
            .set_delay(delay.unwrap_or_default())
    }
}

/// The describe answer with every launch time moved by `by`.
fn with_launch_times_moved(xml: &str, by: chrono::Duration) -> String {
    if by.is_zero() {
        return xml.to_owned();
    }
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<launchTime>") {
        let start = start + "<launchTime>".len();
        let end = start + rest[start..].find("</launchTime>").expect("closed");
        let moved = chrono::DateTime::parse_from_rfc3339(&rest[start..end]).expect("a time") + by;
        out.push_str(&rest[..start]);
        out.push_str(&moved.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The describe answer with `id`'s launch time set to `at`. moto writes it after the
/// instance's id and before the next instance's.
fn with_launch_time(xml: &str, id: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let Some(item) = xml.find(&format!("<instanceId>{id}</instanceId>")) else {
        return xml.to_owned();
    };
    let Some(start) = xml[item..]
        .find("<launchTime>")
        .map(|s| item + s + "<launchTime>".len())
    else {
        return xml.to_owned();
    };
    let end = start + xml[start..].find("</launchTime>").expect("closed");
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!("{}{at}{}", &xml[..start], &xml[end..])
}

/// Forwards a REST request (S3) to moto as it is, and its answer with its headers.
struct ForwardRest {
    moto: String,
    outage: std::sync::Arc<Mutex<Option<(u16, String)>>>,
    /// PUTs whose key holds this text: how many to let through before one whose answer is
    /// swallowed.
    swallow: std::sync::Arc<Mutex<Option<(String, usize)>>>,
}

impl wiremock::Respond for ForwardRest {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        use std::io::{Read, Write};
        if let Some((status, code)) = self.outage.lock().unwrap().clone() {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>{code}: injected by the test.</Message><RequestId>r</RequestId></Error>"
            );
            return ResponseTemplate::new(status).set_body_raw(body, "application/xml");
        }
        let target = match request.url.query() {
            Some(q) => format!("{}?{q}", request.url.path()),
            None => request.url.path().to_owned(),
        };
        let mut head = format!(
            "{} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            request.method,
            self.moto,
            request.body.len()
        );
        for (name, value) in &request.headers {
            if !matches!(
                name.as_str(),
                "host" | "connection" | "content-length" | "transfer-encoding"
            ) {
                head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
            }
        }
        let mut stream = std::net::TcpStream::connect(&self.moto).expect("connect to moto");
        stream.write_all(format!("{head}\r\n").as_bytes()).unwrap();
        stream.write_all(&request.body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read from moto");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let body = raw[split + 4..].to_vec();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .expect("a status");
        if request.method.as_str() == "PUT" && status == 200 {
            let mut swallow = self.swallow.lock().unwrap();
            if let Some((key, skip)) = swallow.as_mut()
                && request.url.path().contains(key.as_str())
            {
                if *skip == 0 {
                    *swallow = None;
                    // Written, but the answer lost: S3 said 500 instead.
                    return ResponseTemplate::new(500).set_body_raw(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError\
                         </Code><Message>We encountered an internal error. Please try again.\
                         </Message><RequestId>r</RequestId></Error>",
                        "application/xml",
                    );
                }
                *skip -= 1;
            }
        }
        let mut answer = ResponseTemplate::new(status);
        let mut kind = "application/octet-stream".to_owned();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-type" => kind = value.to_owned(),
                "content-length" | "connection" | "transfer-encoding" | "server" => {}
                _ => answer = answer.insert_header(name.as_str(), value),
            }
        }
        answer.set_body_raw(body, &kind)
    }
}

/// One HTTP/1.1 request to moto, answered and closed.
fn post(addr: &str, request: &Request, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.url.path(),
        body.len()
    );
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
        }
    }
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to moto");
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .expect("write to moto");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read from moto");
    let (head, answer) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, answer.to_owned())
}

/// The describe answer with `id`'s state reason replaced, as EC2 shows a start that fell
/// back to `stopped`. moto writes an instance's `stateReason` before its `instanceId`, so
/// the one replaced is the last before the id and after the instance before it.
fn with_state_reason(xml: &str, id: &str, code: &str, message: &str) -> String {
    let Some(at) = xml.find(&format!("<instanceId>{id}</instanceId>")) else {
        return xml.to_owned();
    };
    let from = xml[..at].rfind("</instanceId>").unwrap_or(0);
    let Some(start) = xml[from..at].rfind("<stateReason>").map(|s| from + s) else {
        return xml.to_owned();
    };
    let end = start + xml[start..].find("</stateReason>").expect("closed") + "</stateReason>".len();
    let reason =
        format!("<stateReason><code>{code}</code><message>{message}</message></stateReason>");
    format!("{}{reason}{}", &xml[..start], &xml[end..])
}

/// What every world has: fake GitHub and Slack, the instances of its one watch
/// (`octo/trainer@main`), and a config in a temporary directory pointing at them and at an
/// EC2 endpoint.
pub struct Base {
    pub github: GitHub,
    pub slack: Slack,
    pub setup: Setup,
    pub ids: Vec<String>,
    /// Keys added to the watch's table by [`Base::watch`].
    pub extra: String,
    ec2_url: String,
}

pub const REPO: &str = "octo/trainer";

impl Base {
    async fn new(ec2_url: String, ids: Vec<String>, extra: &str) -> Base {
        let base = Base {
            github: GitHub::start().await,
            slack: Slack::start().await,
            setup: Setup::new(),
            ids,
            extra: extra.to_owned(),
            ec2_url,
        };
        // The repository has one commit to begin with.
        base.push(1).await;
        base.write_config(&base.watch());
        base
    }

    /// The world's watch: its instances on `octo/trainer@main`, with the extra keys.
    pub fn watch(&self) -> String {
        format!("{}{}\n", watch(REPO, "main", &self.ids), self.extra)
    }

    /// Writes the config with one watch per `(branch, instances)` of `octo/trainer`.
    pub fn write_watches(&self, watches: &[(&str, &[&String])]) {
        let tables: Vec<String> = watches
            .iter()
            .map(|(branch, ids)| {
                let ids: Vec<String> = ids.iter().map(|&id| id.clone()).collect();
                watch(REPO, branch, &ids)
            })
            .collect();
        self.write_config(&tables.concat());
    }

    /// Writes the config: the usual header and Slack, then `watches`.
    pub fn write_config(&self, watches: &str) {
        self.write_config_with("", watches);
    }

    /// Writes the config: `top` (top-level keys; an `interval` there replaces the usual
    /// one), the usual header and Slack, then `watches`.
    pub fn write_config_with(&self, top: &str, watches: &str) {
        let mut header = self.setup.header(&self.github.url(), &self.ec2_url);
        if top.contains("interval =") {
            header = header.replace("interval = \"1s\"\n", "");
        }
        self.setup
            .write_config(&format!("{top}\n{header}{}{watches}", self.slack.config()));
    }

    /// Rewrites the config's `[github]` token line as `keys`: other keys, or an App.
    pub fn github_keys(&self, keys: &str) {
        let config = std::fs::read_to_string(self.setup.config_path()).unwrap();
        let token = "token_env = \"GITHUB_TOKEN\"\n";
        assert!(config.contains(token), "no token line in {config}");
        self.setup
            .write_config(&config.replace(token, &format!("{keys}\n")));
    }

    /// Rewrites the config to post to Slack through an incoming webhook.
    pub fn use_webhook(&mut self) {
        let url = self.slack.webhook_url();
        self.setup.set_env("SLACK_WEBHOOK_URL", &url);
        let config = std::fs::read_to_string(self.setup.config_path()).unwrap();
        let hook = webhook_config("SLACK_WEBHOOK_URL");
        self.setup
            .write_config(&config.replace(&self.slack.config(), &hook));
    }

    /// Rewrites the config with `first_run = "start"`: the next pass starts the machines
    /// for the head.
    pub fn first_run_start(&self) {
        self.write_config_with("first_run = \"start\"", &self.watch());
    }

    /// Rewrites the config to watch `branch` of `octo/trainer`, whose head is commit 1,
    /// with `first_run = "start"`.
    pub async fn first_run_start_on(&self, branch: &str) {
        self.github.set_head(REPO, branch, &sha(1)).await;
        self.write_config_with("first_run = \"start\"", &watch(REPO, branch, &self.ids));
    }

    /// Moves `main` to commit `n`.
    pub async fn push(&self, n: u32) {
        self.github.set_head(REPO, "main", &sha(n)).await;
    }

    /// Records commit 1 as the baseline, as a first pass does.
    pub async fn baseline(&self) {
        self.push(1).await;
        self.setup.once(0);
    }

    /// Moves `main` from commit 1 to commit 2, a change that GitHub compares as `status`
    /// (ahead, diverged) touching `files` (`(name, previous name)`).
    pub async fn push_changing(&self, status: &str, files: &[(&str, Option<&str>)]) {
        self.push(2).await;
        self.github
            .set_compare(REPO, &sha(1), &sha(2), status, files)
            .await;
    }

    /// Records commit 1 as the baseline, then moves `main` to commit `n`: the next pass
    /// sees a push.
    pub async fn push_after_baseline(&self, n: u32) {
        self.baseline().await;
        self.push(n).await;
    }

    /// Runs `--once`, whatever its exit status, until `done` holds; panics after `limit`.
    /// Returns how long it took.
    pub async fn passes_until<F, Fut>(&self, limit: Duration, done: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut done = done;
        until(limit, "passes to get there", || {
            self.setup.run(&["--once"]);
            done()
        })
        .await
    }

    pub fn once(&self, code: i32) -> Output {
        self.setup.once(code)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.setup.run(args)
    }

    pub fn status(&self) -> serde_json::Value {
        self.setup.status()
    }

    /// The Slack texts so far; also printed, so that a failing test shows them.
    pub async fn texts(&self) -> Vec<String> {
        let texts = self.slack.texts().await;
        eprintln!("slack: {texts:#?}");
        texts
    }
}

/// Asserts that `text` contains `needle`, showing `text` when it does not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
}

/// Sends the signal `name` (`TERM`, `KILL`, `STOP`, `CONT`) to `child`.
pub fn signal(child: &std::process::Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} failed");
}

/// How many of `texts` contain `needle`.
pub fn count(texts: &[String], needle: &str) -> usize {
    texts.iter().filter(|t| t.contains(needle)).count()
}

/// Waits, checking every 50 ms, until `cond` holds; panics after `limit`, naming `what`.
/// Returns how long it took.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// The short form of commit `n`, as messages show it.
pub fn short(n: u32) -> String {
    sha(n)[..7].to_owned()
}

/// Lets a world be used as its [`Base`]: `w.github`, `w.once(0)`.
macro_rules! derefs_to_base {
    ($world:ty) => {
        impl std::ops::Deref for $world {
            type Target = Base;
            fn deref(&self) -> &Base {
                &self.base
            }
        }

        impl std::ops::DerefMut for $world {
            fn deref_mut(&mut self) -> &mut Base {
                &mut self.base
            }
        }
    };
}

derefs_to_base!(World);
derefs_to_base!(Fake);

/// A story's world on moto, behind a [`MotoProxy`]: `n` stopped instances in its watch,
/// which has `extra` keys.
pub struct World {
    base: Base,
    pub ec2: Ec2,
    pub proxy: MotoProxy,
}

impl World {
    pub async fn new(n: i32, extra: &str) -> World {
        World::mixed(n, 0, extra).await
    }

    /// A world whose watch lists `stopped` stopped instances, then `running` ones that a
    /// person started.
    pub async fn mixed(stopped: i32, running: i32, extra: &str) -> World {
        let moto = moto_url();
        let ec2 = Ec2::connect(&moto).await;
        let mut ids = ec2.stopped(stopped).await;
        let proxy = MotoProxy::start(&moto).await;
        // Stopped machines were last started a while ago (moto dates them to their
        // creation, a moment ago): a start pushwake tags now is told from that one.
        let last_used = chrono::Utc::now() - chrono::Duration::hours(1);
        for id in &ids {
            proxy.set_launched(id, last_used);
        }
        ids.extend(ec2.running(running).await);
        World {
            base: Base::new(proxy.url(), ids, extra).await,
            ec2,
            proxy,
        }
    }

    /// Tags `ids` as pushwake's, for commit 1 of `octo/trainer@main`, started `ago` (EC2's
    /// launch time then too). They carry no owner, as versions before owners tagged them.
    pub async fn started_ago(&self, ids: &[String], ago: chrono::Duration) {
        let when =
            chrono::DateTime::from_timestamp((chrono::Utc::now() - ago).timestamp(), 0).unwrap();
        for id in ids {
            self.proxy.set_launched(id, when);
        }
        let at = when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let commit = sha(1);
        let tags = [
            ("pushwake:commit", commit.as_str()),
            ("pushwake:repo", REPO),
            ("pushwake:branch", "main"),
            ("pushwake:started-at", at.as_str()),
        ];
        self.ec2.tag(ids, &tags).await;
    }

    /// The commit each instance is tagged with, in order.
    pub async fn commits(&self) -> Vec<String> {
        let mut out = Vec::new();
        for id in &self.ids {
            let tags = self.ec2.tags(id).await;
            out.push(tags.get("pushwake:commit").cloned().unwrap_or_default());
        }
        out
    }

    /// The state of each instance, in order.
    pub async fn states(&self) -> Vec<String> {
        self.ec2.states(&self.ids).await
    }

    /// Accepted starts of each instance, in order.
    pub fn starts(&self) -> Vec<usize> {
        self.ids.iter().map(|id| self.proxy.starts_of(id)).collect()
    }
}

/// A world on the wiremock EC2 of [`ec2_ok`]: one instance, [`ID`], in its watch, which has
/// `extra` keys.
pub struct Fake {
    base: Base,
    pub ec2: MockServer,
}

pub const ID: &str = "i-0123456789abcdef0";

impl Fake {
    pub async fn new(extra: &str) -> Fake {
        Fake::with(&[ID], extra).await
    }

    pub async fn with(ids: &[&str], extra: &str) -> Fake {
        let ec2 = ec2_ok(ids).await;
        let ids = ids.iter().map(|&i| i.to_owned()).collect();
        Fake {
            base: Base::new(ec2.uri(), ids, extra).await,
            ec2,
        }
    }

    /// The EC2 actions called, in order.
    pub async fn actions(&self) -> Vec<String> {
        ec2_actions(&self.ec2).await
    }

    /// Whether any `StartInstances` was called.
    pub async fn started(&self) -> bool {
        self.actions().await.iter().any(|a| a == "StartInstances")
    }
}

impl Base {
    /// Writes the config with `slack` in place of the usual `[slack]` section (a webhook, a
    /// bot posting to another channel): `top`, the usual header, `slack`, then `watches`.
    pub fn write_config_slack(&self, top: &str, slack: &str, watches: &str) {
        let header = self.setup.header(&self.github.url(), &self.ec2_url);
        self.setup
            .write_config(&format!("{top}\n{header}{slack}{watches}"));
    }
}

/// A `[slack]` section posting through the incoming webhook in the variable `env`.
pub fn webhook_config(env: &str) -> String {
    format!("\n[slack]\nwebhook_url_env = \"{env}\"\n")
}

impl Base {
    /// A world with no EC2: nothing listens at its endpoint, so any EC2 call fails. Its
    /// watch lists the one instance [`ID`], with `extra` keys.
    pub async fn without_ec2(extra: &str) -> Base {
        Base::new("http://127.0.0.1:9".to_owned(), vec![ID.to_owned()], extra).await
    }

    /// Asserts that the first watch's last error, as `status` shows it, mentions `words`.
    pub fn assert_last_error(&self, words: &str) {
        let status = self.status();
        let error = status[0]["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{status}");
    }
}

impl Fake {
    /// How many calls of `action` pushwake made.
    pub async fn calls(&self, action: &str) -> usize {
        self.actions().await.iter().filter(|a| *a == action).count()
    }
}

impl World {
    /// A world of `n` stopped instances, with `extra` keys, whose `main` moved from its
    /// baseline, commit 1, to commit 2: the next pass starts them.
    pub async fn pushed(n: i32, extra: &str) -> World {
        let w = World::new(n, extra).await;
        w.baseline().await;
        w.push(2).await;
        w
    }
}

impl Ec2 {
    /// A client of `region` with the test's own credentials: moto keeps regions apart.
    pub async fn in_region(url: &str, region: &str) -> Ec2 {
        let config = sdk_config(url)
            .await
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()))
            .build();
        Ec2 {
            client: aws_sdk_ec2::Client::new(&config),
        }
    }
}

impl Setup {
    /// The binary with `args`, run by `sh -c script` under `unshare` with `flags` (new
    /// namespaces: `--uts` for a hostname of its own, `--mount` for mounts of its own). The
    /// script ends with `exec "$@"`, which runs the binary. Needs root, as CI has.
    pub fn command_in(&self, flags: &[&str], script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(flags)
            .args([
                "sh",
                "-c",
                script,
                "sh",
                env!("CARGO_BIN_EXE_pushwake"),
                "--config",
            ])
            .arg(self.config_path())
            .args(args);
        cmd
    }

    /// The binary with `args` on a machine named `host`.
    pub fn command_as(&self, host: &str, args: &[&str]) -> Command {
        self.command_in(&["--uts"], &format!("hostname {host} && exec \"$@\""), args)
    }

    /// `--once` on a machine named `host`, with the exit status asserted.
    pub fn once_as(&self, host: &str, code: i32) -> Output {
        let out = self.command_as(host, &["--once"]).output();
        exited(out.expect("run pushwake under unshare"), code)
    }
}

impl World {
    /// `n` more stopped instances, not in the watch, last started an hour ago.
    pub async fn stopped(&self, n: i32) -> Vec<String> {
        let ids = self.ec2.stopped(n).await;
        let last_used = chrono::Utc::now() - chrono::Duration::hours(1);
        for id in &ids {
            self.proxy.set_launched(id, last_used);
        }
        ids
    }
}

/// The `ts` Slack gives the next message in the channel once the first parent is deleted.
pub const NEW_PARENT_TS: &str = "1732790000.000900";

impl Slack {
    /// Deletes the bot's first message (`PARENT_TS`), as a person in the channel would: from
    /// now on Slack answers `chat.update` of it `message_not_found` and a reply in it
    /// `thread_not_found` (HTTP 200, `ok: false`), and the next message in the channel gets
    /// [`NEW_PARENT_TS`], which it then updates and threads under.
    pub async fn delete_parent(&self) {
        let posted = |r: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let answer = match body["thread_ts"].as_str() {
                Some(NEW_PARENT_TS) => {
                    serde_json::json!({"ok": true, "channel": "C0123", "ts": "1732790000.001000"})
                }
                Some(_) => serde_json::json!({"ok": false, "error": "thread_not_found"}),
                None => serde_json::json!({"ok": true, "channel": "C0123", "ts": NEW_PARENT_TS}),
            };
            ResponseTemplate::new(200).set_body_json(answer)
        };
        let updated = |r: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let answer = match (body["channel"].as_str(), body["ts"].as_str()) {
                (Some("C0123"), Some(NEW_PARENT_TS)) => {
                    serde_json::json!({"ok": true, "channel": "C0123", "ts": NEW_PARENT_TS})
                }
                _ => serde_json::json!({"ok": false, "error": "message_not_found"}),
            };
            ResponseTemplate::new(200).set_body_json(answer)
        };
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .respond_with(posted)
            .with_priority(1)
            .mount(&self.server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/chat.update"))
            .respond_with(updated)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// Makes Slack refuse every `chat.update` with `code` (HTTP 200, `ok: false`), as it
    /// does past the workspace's edit window (`edit_window_closed`) or for a message the
    /// bot may not edit (`cant_update_message`).
    pub async fn refuse_updates(&self, code: &str) {
        Mock::given(method("POST"))
            .and(path("/api/chat.update"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"ok": false, "error": code})),
            )
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// Takes Slack's Web API down: every `chat.*` call is answered 503 while the flag
    /// returned is set; clear it to bring Slack back.
    pub async fn take_down(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = down.clone();
        Mock::given(method("POST"))
            .and(move |r: &Request| {
                r.url.path().starts_with("/api/chat.")
                    && flag.load(std::sync::atomic::Ordering::SeqCst)
            })
            .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
            .with_priority(1)
            .mount(&self.server)
            .await;
        down
    }

    /// The bot's `chat.*` requests in order: the method and its JSON body.
    pub async fn chat_bodies(&self) -> Vec<(String, serde_json::Value)> {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| r.url.path().starts_with("/api/chat."))
            .map(|r| {
                let method = r.url.path().trim_start_matches("/api/").to_owned();
                (method, serde_json::from_slice(&r.body).unwrap_or_default())
            })
            .collect()
    }
}

impl MotoProxy {
    /// Makes S3 refuse the `nth` `PutObject` of a shared state's `state.json` from now
    /// (1: the next one) with 403 `AccessDenied`, once, as S3 answers a write the
    /// credentials may not make (not retried); every other request reaches moto.
    pub async fn refuse_state_put(&self, nth: usize) {
        Mock::given(method("PUT"))
            .and(wiremock::matchers::path_regex(r"/state\.json$"))
            .respond_with(RefuseNthPut {
                nth,
                seen: std::sync::atomic::AtomicUsize::new(0),
                rest: ForwardRest {
                    moto: moto_url().trim_start_matches("http://").to_owned(),
                    outage: self.outage.clone(),
                    swallow: self.swallow.clone(),
                },
            })
            .with_priority(1)
            .mount(&self.server)
            .await;
    }
}

/// Forwards requests to moto but the `nth`, which it refuses as S3 refuses a forbidden
/// write.
struct RefuseNthPut {
    nth: usize,
    seen: std::sync::atomic::AtomicUsize,
    rest: ForwardRest,
}

impl wiremock::Respond for RefuseNthPut {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n != self.nth {
            return self.rest.respond(request);
        }
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                    <Message>Access Denied</Message><RequestId>r</RequestId></Error>";
        ResponseTemplate::new(403).set_body_raw(body, "application/xml")
    }
}

/// EC2's answer to a mutating call naming more than 1,000 instance or resource ids (its
/// API reference allows up to 1,000 in `CreateTags`, `DeleteTags`, `TerminateInstances`;
/// the fakes hold `StartInstances` and `StopInstances` to the same); `None` within it.
fn id_limit(body: &str) -> Option<ResponseTemplate> {
    let ids = body
        .split('&')
        .filter(|kv| kv.starts_with("InstanceId.") || kv.starts_with("ResourceId."))
        .count();
    (ids > 1000).then(|| {
        ResponseTemplate::new(400).set_body_string(format!(
            "<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>The request \
             names {ids} ids; up to 1000 are allowed.</Message></Error></Errors>\
             <RequestID>r</RequestID></Response>"
        ))
    })
}

/// The access key a request to the proxy was signed with.
fn access_key(request: &Request) -> Option<String> {
    let auth = request.headers.get("authorization")?.to_str().ok()?;
    let rest = &auth[auth.find("Credential=")? + "Credential=".len()..];
    Some(rest.split('/').next()?.to_owned())
}

/// The describe answer with `id` shown `stopping`. moto writes an instance's state after
/// its id.
fn with_stopping(xml: &str, id: &str) -> String {
    let Some(item) = xml.find(&format!("<instanceId>{id}</instanceId>")) else {
        return xml.to_owned();
    };
    let Some(start) = xml[item..].find("<instanceState>").map(|s| item + s) else {
        return xml.to_owned();
    };
    let end =
        start + xml[start..].find("</instanceState>").expect("closed") + "</instanceState>".len();
    format!(
        "{}<instanceState><code>64</code><name>stopping</name></instanceState>{}",
        &xml[..start],
        &xml[end..]
    )
}

impl MotoProxy {
    /// Shows `id` as `stopping` in every describe, whatever moto says, until
    /// [`MotoProxy::let_stop`]: EC2 takes a while to stop a machine, moto none.
    pub fn keep_stopping(&self, id: &str) {
        let mut faults = self.faults.lock().unwrap();
        faults.stopping.insert(id.to_owned(), Default::default());
    }

    /// Shows `id` as moto has it to the agent signing with access key `key` only.
    pub fn let_stop_for(&self, id: &str, key: &str) {
        let mut faults = self.faults.lock().unwrap();
        if let Some(except) = faults.stopping.get_mut(id) {
            except.insert(key.to_owned());
        }
    }

    /// Shows `id` as moto has it again, to everyone.
    pub fn let_stop(&self, id: &str) {
        self.faults.lock().unwrap().stopping.remove(id);
    }

    /// Calls of `action` signed with the access key `key`.
    pub async fn calls_by(&self, key: &str, action: &str) -> usize {
        let requests = self.server.received_requests().await.unwrap_or_default();
        let needle = format!("Action={action}&");
        requests
            .iter()
            .filter(|r| access_key(r).as_deref() == Some(key))
            .filter(|r| {
                let body = String::from_utf8_lossy(&r.body);
                format!("{body}&").contains(&needle) && !body.contains("DryRun=true")
            })
            .count()
    }

    /// The EC2 mutations (tags, starts, stops) signed with the access key `key`.
    pub async fn mutations_by(&self, key: &str) -> usize {
        let mut n = 0;
        for action in [
            "CreateTags",
            "DeleteTags",
            "StartInstances",
            "StopInstances",
        ] {
            n += self.calls_by(key, action).await;
        }
        n
    }

    /// Lets `skip` PUTs to an S3 key holding `key` through, then forwards the next one to
    /// moto and answers it 500, as when S3 wrote the object and the answer was lost.
    pub fn swallow_put(&self, key: &str, skip: usize) {
        *self.swallow.lock().unwrap() = Some((key.to_owned(), skip));
    }
}

/// Deletes `key` from `bucket` on moto.
pub async fn delete_object(bucket: &str, key: &str) {
    s3(&moto_url())
        .await
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("delete object");
}

// Launching from a template (ec2/fleet.rs): what a fleet test needs set up on moto.
impl Ec2 {
    /// Creates a launch template `name` on moto (an AMI moto knows, `instance_type`) and
    /// gives its id.
    pub async fn fleet_launch_template(&self, name: &str, instance_type: &str) -> String {
        let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
            .image_id("ami-12345678")
            .instance_type(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .build();
        let out = self
            .client
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(data)
            .send()
            .await
            .expect("create launch template");
        let template = out.launch_template().expect("a launch template");
        template.launch_template_id().unwrap().to_owned()
    }

    /// moto's default subnets, one per zone, as (subnet id, zone), by zone.
    pub async fn fleet_default_subnets(&self) -> Vec<(String, String)> {
        let out = self
            .client
            .describe_subnets()
            .send()
            .await
            .expect("describe subnets");
        let mut subnets: Vec<(String, String)> = out
            .subnets()
            .iter()
            .filter(|s| s.default_for_az() == Some(true))
            .map(|s| {
                let id = s.subnet_id().unwrap().to_owned();
                (id, s.availability_zone().unwrap().to_owned())
            })
            .collect();
        subnets.sort_by(|a, b| a.1.cmp(&b.1));
        subnets
    }
}

// The instance metadata service (IMDSv2) for `pushwake report`.
mod imds;
pub use imds::*;
// GitHub's pull requests, issue comments and check runs (SPEC §13).
mod pulls;
pub use pulls::*;

impl World {
    /// Each instance in turn reports `accuracy`, as the training script would: the first
    /// `accuracy.len()` of them.
    pub async fn report_accuracy(&self, accuracy: &[f64]) {
        for (id, a) in self.ids.iter().zip(accuracy) {
            let a = a.to_string();
            self.ec2
                .tag(
                    std::slice::from_ref(id),
                    &[("pushwake:result:accuracy", &a)],
                )
                .await;
        }
    }
}
