//! Signing in as a GitHub App installation (SPEC §9): the JWT checked against the App's
//! key, installation tokens reused until near expiry and renewed after it and after a
//! 401, a GitHub Enterprise Server path prefix kept.

use pushwake::config::{GithubApp, GithubSettings, Repo};
use pushwake::github::{GitHub, Head};
use pushwake::retry::Policy;
use secrecy::SecretString;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{self, Fake, REPO, sha, stderr};

const APP: u64 = 1234;
const INSTALLATION: u64 = 5678;

/// GitHub at `prefix` of a fake server, answering the head of `octo/trainer@main` to the
/// installation token `token` only.
async fn head_for(server: &MockServer, prefix: &str, token: &str) {
    Mock::given(method("GET"))
        .and(path(format!("{prefix}/repos/{REPO}/commits/heads/main")))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string(sha(1)))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{prefix}/repos/{REPO}/commits/heads/main")))
        .respond_with(util::error(401, "Bad credentials"))
        .with_priority(10)
        .mount(server)
        .await;
}

fn client(api_url: &str, key: &std::path::Path) -> GitHub {
    let settings = GithubSettings {
        api_url: api_url.to_owned(),
        token: None,
        token_unset: None,
        commit_status: false,
        pull_request_comment: false,
        app: Some(GithubApp {
            app_id: APP,
            installation_id: INSTALLATION,
            key: SecretString::from(std::fs::read_to_string(key).unwrap()),
        }),
    };
    GitHub::new(&settings, Policy::default()).unwrap()
}

fn repo() -> Repo {
    Repo {
        owner: "octo".into(),
        name: "trainer".into(),
    }
}

/// The `[github]` keys of the App, its key in `file`.
fn app_keys(file: &str) -> String {
    format!("app_id = {APP}\ninstallation_id = {INSTALLATION}\nprivate_key_file = \"{file}\"")
}

async fn token_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/access_tokens"))
        .count()
}

#[tokio::test]
async fn an_installation_token_is_reused_until_near_expiry_then_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = util::app_key(dir.path());
    let server = MockServer::start().await;
    // The first token expires in four minutes, within the five pushwake renews ahead.
    let tokens = vec![("ghs_short", 4 * 60), ("ghs_long", 3600)];
    util::app_sign_in(&server, "", &public, APP, INSTALLATION, tokens).await;
    head_for(&server, "", "ghs_short").await;
    head_for(&server, "", "ghs_long").await;
    let gh = client(&server.uri(), &key);

    for _ in 0..3 {
        assert!(matches!(
            gh.head(&repo(), "main", None).await,
            Ok(Head::At { .. })
        ));
    }

    assert_eq!(
        token_requests(&server).await,
        2,
        "the short one renewed at once, the long one reused"
    );
}

#[tokio::test]
async fn a_refused_token_is_renewed_and_the_request_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = util::app_key(dir.path());
    let server = MockServer::start().await;
    let tokens = vec![("ghs_revoked", 3600), ("ghs_fresh", 3600)];
    util::app_sign_in(&server, "/api/v3", &public, APP, INSTALLATION, tokens).await;
    // Only the fresh token is accepted, at GitHub Enterprise Server's path prefix.
    head_for(&server, "/api/v3", "ghs_fresh").await;
    let gh = client(&format!("{}/api/v3", server.uri()), &key);

    let head = gh.head(&repo(), "main", None).await;

    assert!(matches!(head, Ok(Head::At { .. })), "{head:?}");
    assert_eq!(token_requests(&server).await, 2);
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = util::app_key(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, wrong_public) = util::app_key(other.path());
    let server = MockServer::start().await;
    util::app_sign_in(
        &server,
        "",
        &wrong_public,
        APP,
        INSTALLATION,
        vec![("x", 60)],
    )
    .await;
    let gh = client(&server.uri(), &key);

    let err = gh
        .head(&repo(), "main", None)
        .await
        .unwrap_err()
        .to_string();

    assert!(
        err.contains("GitHub did not accept the App's JWT (app_id 1234, installation_id 5678)"),
        "{err}"
    );
}

#[tokio::test]
async fn the_binary_polls_as_the_app_and_prints_no_key_or_token() {
    let f = Fake::new("").await;
    let (key, public) = util::app_key(f.setup.dir.path());
    util::app_sign_in(
        &f.github.server,
        "",
        &public,
        APP,
        INSTALLATION,
        vec![("ghs_installationtoken0123456789", 3600)],
    )
    .await;
    f.github.take_statuses().await;
    f.first_run_start();
    let file = key.file_name().unwrap().to_str().unwrap();
    f.github_keys(&format!("{}\ncommit_status = true", app_keys(file)));

    let out = f.run(&["--once", "--log-format", "json"]);

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.started().await);
    let signed_in = |r: &wiremock::Request| {
        r.headers.get("authorization").unwrap() == "Bearer ghs_installationtoken0123456789"
    };
    let heads = f.github.head_requests(REPO, "main").await;
    assert!(signed_in(&heads[0]));
    let all = f.github.server.received_requests().await.unwrap();
    let statuses: Vec<_> = all
        .iter()
        .filter(|r| r.url.path().contains("/statuses/"))
        .collect();
    assert_eq!(statuses.len(), 1, "the run's status, as the App");
    assert!(signed_in(statuses[0]));
    let printed = format!("{}{}", util::stdout(&out), stderr(&out));
    let pem = std::fs::read_to_string(&key).unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(!printed.contains(body), "the key was printed");
    assert!(
        !printed.contains("ghs_installationtoken"),
        "the token was printed"
    );
}

#[tokio::test]
async fn check_online_names_the_app_and_what_its_installation_can_see() {
    let f = Fake::new("").await;
    let (key, public) = util::app_key(f.setup.dir.path());
    let server = &f.github.server;
    util::app_sign_in(
        server,
        "",
        &public,
        APP,
        INSTALLATION,
        vec![("ghs_t", 3600)],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/app"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": APP, "slug": "pushwake-ml", "name": "pushwake ML"
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/installation/repositories"))
        .and(header("authorization", "Bearer ghs_t"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "total_count": 1, "repositories": [{"full_name": "octo/other"}]
        })))
        .mount(server)
        .await;
    f.github_keys(&app_keys(&key.display().to_string()));

    let out = f.run(&["check", "--online"]);

    let text = util::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    util::assert_contains(&text, "GitHub App pushwake-ml accepted");
    util::assert_contains(
        &text,
        "the App's installation cannot see octo/trainer: add it to the installation's repositories",
    );
}
