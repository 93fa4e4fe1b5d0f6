//! No secret is printed, at any log level: every output of the binary is scanned for every
//! secret it was given, through triggers, failures and peers that echo what they were sent.

use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::util::{self, Base, REPO, SLACK_TOKEN, TOKEN, WEBHOOK_PATH, World, sha};

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

fn run_traced(b: &Base, args: &[&str]) -> std::process::Output {
    let mut cmd = b.setup.command(args);
    cmd.env("RUST_LOG", "trace");
    cmd.output().unwrap()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn trace_logs_of_a_bot_trigger_and_peer_errors_hold_no_secret() {
    let w = World::new(1, "").await;
    w.first_run_start();
    // A peer that quotes the credentials it was sent back in its error.
    w.github
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
        .mount(&w.slack.server)
        .await;

    let out = run_traced(&w, &["--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    assert_eq!(w.states().await, ["running"]);
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
        let out = run_traced(&w, args);
        let text = format!("{}{}", util::stdout(&out), util::stderr(&out));
        for secret in [TOKEN, SLACK_TOKEN, AWS_SECRET] {
            assert!(!text.contains(secret), "{args:?} printed {secret}");
        }
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn trace_logs_of_a_webhook_hold_no_url() {
    let mut w = World::new(1, "").await;
    // The webhook fails and quotes its own URL.
    Mock::given(method("POST"))
        .and(path(WEBHOOK_PATH))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_string(format!("no_service: {}", w.slack.webhook_url())),
        )
        .with_priority(1)
        .mount(&w.slack.server)
        .await;
    w.first_run_start();
    w.use_webhook();

    let out = run_traced(&w, &["--once"]);

    assert_eq!(out.status.code(), Some(0), "{}", util::stderr(&out));
    assert_clean("--once with a webhook", &out);
    assert!(
        util::stderr(&out).contains("no_service"),
        "{}",
        util::stderr(&out)
    );
}
