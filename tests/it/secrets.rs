//! No secret is printed, at any log level: every output of the binary is scanned for every
//! secret it was given, through triggers, failures and peers that echo what they were sent.

use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::util::{self, GitHub, SLACK_TOKEN, Setup, Slack, TOKEN, WEBHOOK_PATH, sha, watch};

const REPO: &str = "octo/trainer";
const AWS_SECRET: &str = "testingsecretkey";

fn assert_clean(what: &str, out: &std::process::Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.len() > 1000,
        "{what}: too little output to prove anything:\n{text}"
    );
    for secret in [
        TOKEN,
        SLACK_TOKEN,
        WEBHOOK_PATH,
        "XXXXsecretXXXX",
        AWS_SECRET,
    ] {
        assert!(!text.contains(secret), "{what} printed {secret}:\n{text}");
    }
}

fn run_traced(setup: &Setup, args: &[&str]) -> std::process::Output {
    let mut cmd = setup.command(args);
    cmd.env("RUST_LOG", "trace");
    cmd.output().unwrap()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn trace_logs_of_a_bot_trigger_and_peer_errors_hold_no_secret() {
    let moto = util::moto_url();
    let (github, slack, ec2) = (
        GitHub::start().await,
        Slack::start().await,
        util::Ec2::connect(&moto).await,
    );
    let ids = ec2.stopped(1).await;
    github.set_head(REPO, "main", &sha(1)).await;
    // A peer that quotes the credentials it was sent back in its error.
    github
        .answer(
            &format!("/repos/{REPO}/commits/{}", sha(1)),
            util::error(401, &format!("Bad credentials: token {TOKEN} is not valid")),
            None,
        )
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ok": false, "error": format!("invalid_auth for {SLACK_TOKEN}")
        })))
        .with_priority(1)
        .mount(&slack.server)
        .await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}\n[slack]\napi_url = \"{}\"\ntoken_env = \"SLACK_API_TOKEN\"\nchannel = \"#c\"\n{}",
        setup.header(&github.url(), &moto),
        slack.api_url(),
        watch(REPO, "main", &ids)
    ));

    let out = run_traced(&setup, &["--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    assert_eq!(ec2.states(&ids).await, ["running"]);
    assert_clean("--once", &out);
    assert!(
        util::stderr(&out).contains("[redacted]"),
        "the echo was not masked"
    );

    for args in [
        &["check"][..],
        &["status", "--json"],
        &["--once", "--dry-run"],
    ] {
        let out = run_traced(&setup, args);
        let text = format!("{}{}", util::stdout(&out), util::stderr(&out));
        for secret in [TOKEN, SLACK_TOKEN, AWS_SECRET] {
            assert!(!text.contains(secret), "{args:?} printed {secret}");
        }
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn trace_logs_of_a_webhook_hold_no_url() {
    let moto = util::moto_url();
    let (github, slack, ec2) = (
        GitHub::start().await,
        Slack::start().await,
        util::Ec2::connect(&moto).await,
    );
    let ids = ec2.stopped(1).await;
    github.set_head(REPO, "main", &sha(1)).await;
    // The webhook fails and quotes its own URL.
    Mock::given(method("POST"))
        .and(path(WEBHOOK_PATH))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_string(format!("no_service: {}", slack.webhook_url())),
        )
        .with_priority(1)
        .mount(&slack.server)
        .await;
    let mut setup = Setup::new();
    setup.set_env("SLACK_WEBHOOK_URL", &slack.webhook_url());
    setup.write_config(&format!(
        "first_run = \"start\"\n{}\n[slack]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\n{}",
        setup.header(&github.url(), &moto),
        watch(REPO, "main", &ids)
    ));

    let out = run_traced(&setup, &["--once"]);

    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    assert_clean("--once with a webhook", &out);
    assert!(
        util::stderr(&out).contains("no_service"),
        "{}",
        util::stderr(&out)
    );
}
