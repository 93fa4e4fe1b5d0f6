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

/// Secrets as an operator might paste them where no secret goes.
const PASTED_GITHUB: &str = "ghp_pastedPASTEDpasted0123456789abcdXY";
const PASTED_SLACK: &str = "xoxb-9999-8888-pastedslacktokenXY";

/// A config of `top` (top-level keys), the `[github]` table with `github` keys (and a
/// good `api_url` unless they set one), the `[slack]` section `slack`, and one watch with
/// the keys `watch`.
fn misplacing(top: &str, github: &str, slack: &str, watch: &str) -> String {
    let api_url = if github.contains("api_url") {
        ""
    } else {
        "api_url = \"http://127.0.0.1:9\"\n"
    };
    format!(
        "{top}\n[github]\n{api_url}{github}\n{slack}\n\
         [[watch]]\nrepo = \"octo/trainer\"\nbranch = \"main\"\n\
         instances = [\"i-0123456789abcdef0\"]\n{watch}\n"
    )
}

/// Each misplaced secret: the config, and the key its error must name.
fn misplaced() -> Vec<(String, &'static str)> {
    let (g, s) = (PASTED_GITHUB, PASTED_SLACK);
    let slack = |keys: &str| format!("[slack]\nchannel = \"#ml\"\n{keys}");
    let top = |keys: &str| misplacing(keys, "", "", "");
    let github = |keys: &str| misplacing("", keys, "", "");
    let watch = |keys: &str| misplacing("", "", "", keys);
    vec![
        // Under a key pushwake does not know.
        (top(&format!("token = \"{g}\"")), "token"),
        (
            misplacing("", "", &slack(&format!("bot_token = \"{s}\"")), ""),
            "slack.bot_token",
        ),
        (github(&format!("gh_token = \"{g}\"")), "github.gh_token"),
        (watch(&format!("secret = \"{g}\"")), "watch[0].secret"),
        // As the value of a key of another type or form.
        (top(&format!("interval = \"{g}\"")), "interval"),
        (top(&format!("first_run = \"{s}\"")), "first_run"),
        (top(&format!("state_url = \"{s}\"")), "state_url"),
        (top(&format!("deployment = \"{g}#\"")), "deployment"),
        (github(&format!("app_id = \"{g}\"")), "github.app_id"),
        (github(&format!("token_env = \"{g}\"")), "github.token_env"),
        (github(&format!("api_url = \"{s}\"")), "github.api_url"),
        (watch(&format!("on_busy = \"{s}\"")), "watch[0].on_busy"),
        (
            watch(&format!("max_runtime = \"{g}\"")),
            "watch[0].max_runtime",
        ),
        (watch(&format!("role_arn = \"{g}\"")), "watch[0].role_arn"),
        (
            watch(&format!(
                "results = {{ metrics = [\"a\"], timeout = \"{s}\" }}"
            )),
            "watch[0].results.timeout",
        ),
        (
            watch(&format!("results = {{ metrics = [\"{s}/x\"] }}")),
            "watch[0].results.metrics[0]",
        ),
        (
            watch(&format!("idle_stop = {{ below = \"{g}\" }}")),
            "watch[0].idle_stop.below",
        ),
        (watch(&format!("paths = [\"{g}[\"]")), "watch[0].paths"),
        (
            watch("").replace("octo/trainer", &format!("{g}/x/y")),
            "watch[0].repo",
        ),
        (
            watch("").replace("i-0123456789abcdef0", g),
            "watch[0].instances[0]",
        ),
        // Not TOML at all: the value is not even quoted.
        (top(&format!("token = {g}")), "token"),
        (
            misplacing("", "", &slack(&format!("bot_token = {s}")), ""),
            "slack.bot_token",
        ),
    ]
}

/// The line, counted from 1, where the pasted secret is in `config`.
fn line_of_secret(config: &str) -> usize {
    let at = [PASTED_GITHUB, PASTED_SLACK]
        .iter()
        .filter_map(|s| config.find(s))
        .min()
        .expect("a pasted secret");
    config[..at].matches('\n').count() + 1
}

/// `pushwake check` and `pushwake --once` on each config with a misplaced secret: refused
/// (exit 2) naming the file, the line and the key, never the secret.
#[test]
fn a_misplaced_secret_is_named_by_file_line_and_key_and_never_printed() {
    let setup = util::Setup::new();
    let file = setup.config_path().display().to_string();
    for (config, key) in misplaced() {
        setup.write_config(&config);
        let line = format!("line {}", line_of_secret(&config));
        for args in [&["check"][..], &["--once"]] {
            let out = setup.run(args);
            let err = util::stderr(&out);
            let said = format!("{args:?} on\n{config}\nsaid: {err}");
            assert_eq!(out.status.code(), Some(2), "{said}");
            for needle in [&file, &line, &format!(": {key}: ")] {
                assert!(err.contains(needle.as_str()), "no {needle:?}: {said}");
            }
            for secret in [PASTED_GITHUB, PASTED_SLACK] {
                let part = &secret[..12];
                assert!(!err.contains(part), "{args:?} printed {part}: {said}");
            }
            assert!(util::stdout(&out).is_empty(), "{said}");
        }
    }
}
