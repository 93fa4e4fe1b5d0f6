//! `pushwake check --online`: a ✓ per item when all is well, a ✗ naming each failing item.

use std::process::Output;

use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, ResponseTemplate};

use crate::util::{self, Base, Fake, REPO, Slack, World, sha, stderr, stdout, watch};

/// Runs `check --online`.
fn online(b: &Base) -> Output {
    b.run(&["check", "--online"])
}

/// Runs `check --online`, asserts its exit status and returns its stdout.
fn online_exits(b: &Base, code: i32) -> String {
    let out = online(b);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(code), "{text}{}", stderr(&out));
    text
}

fn assert_lines(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn all_well_is_all_ticks() {
    let w = World::new(2, "").await;
    let prices = crate::util::PriceList::start().await;
    prices.pricing_offer("t3.micro", "us-east-1", 0.0104);
    w.proxy.route_pricing(&prices.url());

    let text = online_exits(&w, 0);

    let items: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .collect();
    assert!(items.iter().all(|l| l.starts_with('✓')), "{text}");
    assert_lines(
        &text,
        &[
            "GitHub token accepted (4999 of 5000",
            &format!("{REPO}@main readable (head {})", &sha(1)[..7]),
            &format!("instance {} exists (stopped)", w.ids[0]),
            &format!("instance {} exists (stopped)", w.ids[1]),
            "ec2:DescribeInstances allowed",
            "ec2:StartInstances allowed",
            "ec2:CreateTags allowed",
            "ec2:StopInstances allowed",
            "pricing:GetProducts allowed (t3.micro in us-east-1: $0.0104 an hour)",
            "Slack: bot token accepted (pushwake in ML Team)",
            "Slack: the token may post (chat:write)",
            "Slack: #training exists and the bot is in it",
        ],
    );
    assert_eq!(
        w.states().await,
        ["stopped", "stopped"],
        "check changed something"
    );
    assert!(w.texts().await.is_empty(), "check posted a message");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_idle_stop_metric_without_datapoints_is_said_plainly() {
    let w = World::new(
        1,
        "idle_stop = { metric = \"nvidia_smi_utilization_gpu\", namespace = \"CWAgent\", \
         for = \"30m\", dimensions = { index = \"0\" } }",
    )
    .await;
    w.push(1).await;

    let text = online_exits(&w, 1);

    let needle = format!(
        "✗ {REPO}@main: no datapoints for nvidia_smi_utilization_gpu with InstanceId={}, \
         index=0 in the last 30m: check the CloudWatch agent's dimensions",
        w.ids[0]
    );
    assert!(text.contains(&needle), "{text}");
}

/// `check --online` against a Slack whose token has `scopes`, and whose channel `#ml` has
/// the bot in it or not; returns stdout.
async fn slack_check(scopes: &str, member: bool) -> String {
    let f = Fake::new("").await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path("/api/auth.test"))
        .respond_with(Slack::auth_test(scopes))
        .with_priority(1)
        .mount(&f.slack.server)
        .await;
    Slack::channels(&f.slack.server, "ml", member, 50).await;
    let slack = f.slack.config().replace("#training", "#ml");
    f.write_config_slack("", &slack, &f.watch());
    stdout(&online(&f))
}

#[tokio::test]
async fn slack_is_checked_for_what_a_post_needs() {
    let text = slack_check("chat:write,channels:read", false).await;
    assert!(
        text.contains("✗ Slack: the bot is not in #ml: invite it there"),
        "{text}"
    );
    let text = slack_check("channels:read,groups:read", true).await;
    assert!(
        text.contains("✗ Slack: the token lacks chat:write"),
        "{text}"
    );
    assert!(
        text.contains("✓ Slack: #ml exists and the bot is in it"),
        "{text}"
    );
    let text = slack_check("chat:write", true).await;
    assert!(
        text.contains(
            "✓ Slack: #ml not checked: the token has neither channels:read nor groups:read"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn each_failing_item_is_named() {
    const GOOD: &str = "i-0aaaaaaaaaaaaaaaa";
    const GONE: &str = "i-0bbbbbbbbbbbbbbbb";
    // EC2 describes only GOOD, and allows every dry run but StopInstances.
    let mut f = Fake::with(&[GOOD], "").await;
    f.github
        .answer("/rate_limit", util::error(401, "Bad credentials"), None)
        .await;
    f.push(1).await;
    f.github
        .fail("/repos/octo/gone/commits/heads/main", 404, "Not Found")
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("DryRun=true"))
        .and(body_string_contains("Action=StopInstances"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not \
             authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>",
        ))
        .with_priority(1)
        .mount(&f.ec2)
        .await;
    f.setup.set_env("SLACK_API_TOKEN", "xoxb-revoked");
    f.write_config(&format!(
        "{}{}",
        watch(REPO, "main", &[GOOD.into(), GONE.into()]),
        watch("octo/gone", "main", &[GOOD.into()])
    ));

    let text = online_exits(&f, 1);

    assert_lines(
        &text,
        &[
            "✗ GitHub refused the token (401)",
            &format!("✓ {REPO}@main readable"),
            "✗ octo/gone@main: branch main of octo/gone not found",
            &format!("✓ instance {GOOD} exists (stopped)"),
            &format!("✗ instance {GONE} not found"),
            "✓ ec2:StartInstances allowed",
            // EC2's own code and words, then what to do about them.
            "✗ StopInstances failed: UnauthorizedOperation: You are not authorized",
            "(ec2:StopInstances is not allowed for these AWS credentials; grant it in their IAM policy)",
            "✗ Slack: Slack refused the message: invalid_auth",
        ],
    );
}

#[tokio::test]
async fn a_webhook_is_checked_without_posting() {
    let mut f = Fake::new("").await;
    let hook = f.slack.webhook_url();
    let wrong = format!("{}/services/T000/B000/nope", f.slack.server.uri());
    f.setup.set_env("SLACK_WEBHOOK_URL", &hook);
    f.setup.set_env("WRONG_HOOK", &wrong);
    let check_with = |hook: &str| {
        f.write_config_slack("", &util::webhook_config(hook), &f.watch());
        stdout(&online(&f))
    };

    let text = check_with("SLACK_WEBHOOK_URL");
    assert!(
        text.contains("✓ Slack: incoming webhook reachable"),
        "{text}"
    );
    assert!(f.texts().await.is_empty());

    let text = check_with("WRONG_HOOK");
    assert!(
        text.contains("✗ Slack: Slack refused the message: 404"),
        "{text}"
    );
    assert!(!text.contains("nope"), "the webhook URL was printed");
}

#[tokio::test]
async fn github_enterprise_with_rate_limiting_off_is_reachable() {
    let f = Fake::new("").await;
    // What GitHub Enterprise Server answers when its administrator turned rate limits off.
    f.github
        .answer(
            "/rate_limit",
            util::error(404, "Rate limiting is not enabled."),
            None,
        )
        .await;
    f.push(1).await;

    let text = stdout(&online(&f));

    assert!(
        text.contains("✓ GitHub reachable; rate limiting is off"),
        "{text}"
    );
}
