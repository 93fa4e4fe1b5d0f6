//! `pushwake check --online`: a ✓ per item when all is well, a ✗ naming each failing item.

use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{self, Ec2, GitHub, Setup, Slack, sha, stderr, stdout, watch};

const REPO: &str = "octo/trainer";

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn all_well_is_all_ticks() {
    let moto = util::moto_url();
    let (github, slack, ec2) = (
        GitHub::start().await,
        Slack::start().await,
        Ec2::connect(&moto).await,
    );
    let ids = ec2.stopped(2).await;
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}\n[slack]\napi_url = \"{}\"\ntoken_env = \"SLACK_API_TOKEN\"\nchannel = \"#training\"\n{}",
        setup.header(&github.url(), &moto),
        slack.api_url(),
        watch(REPO, "main", &ids)
    ));

    let out = setup.run(&["check", "--online"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let items: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .collect();
    assert!(items.iter().all(|l| l.starts_with('✓')), "{text}");
    for needle in [
        "GitHub token accepted (4999 of 5000",
        &format!("{REPO}@main readable (head {})", &sha(1)[..7]),
        &format!("instance {} exists (stopped)", ids[0]),
        &format!("instance {} exists (stopped)", ids[1]),
        "ec2:DescribeInstances allowed",
        "ec2:StartInstances allowed",
        "ec2:CreateTags allowed",
        "ec2:StopInstances allowed",
        "ec2:DeleteTags allowed",
        "Slack: bot token accepted (pushwake in ML Team)",
        "Slack: the token may post (chat:write)",
        "Slack: #training exists and the bot is in it",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    assert_eq!(
        ec2.states(&ids).await,
        ["stopped", "stopped"],
        "check changed something"
    );
    assert!(slack.texts().await.is_empty(), "check posted a message");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_idle_stop_metric_without_datapoints_is_said_plainly() {
    let moto = util::moto_url();
    let (github, ec2) = (GitHub::start().await, Ec2::connect(&moto).await);
    let ids = ec2.stopped(1).await;
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}{}idle_stop = {{ metric = \"nvidia_smi_utilization_gpu\", namespace = \"CWAgent\", \
         for = \"30m\", dimensions = {{ index = \"0\" }} }}\n",
        setup.header(&github.url(), &moto),
        watch(REPO, "main", &ids)
    ));

    let out = setup.run(&["check", "--online"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let needle = format!(
        "✗ {REPO}@main: no datapoints for nvidia_smi_utilization_gpu with InstanceId={}, \
         index=0 in the last 30m: check the CloudWatch agent's dimensions",
        ids[0]
    );
    assert!(text.contains(&needle), "{text}");
}

/// `check --online` against a Slack whose token has `scopes`, and whose channel `#ml` has
/// the bot in it or not; returns stdout.
async fn slack_check(scopes: &str, member: bool) -> String {
    let (github, slack) = (GitHub::start().await, Slack::start().await);
    Mock::given(method("POST"))
        .and(wiremock::matchers::path("/api/auth.test"))
        .respond_with(Slack::auth_test(scopes))
        .with_priority(1)
        .mount(&slack.server)
        .await;
    Slack::channels(&slack.server, "ml", member, 50).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}\n[slack]\napi_url = \"{}\"\ntoken_env = \"SLACK_API_TOKEN\"\nchannel = \"#ml\"\n{}",
        setup.header(&github.url(), "http://127.0.0.1:9"),
        slack.api_url(),
        watch(REPO, "main", &["i-0123456789abcdef0".to_owned()])
    ));
    stdout(&setup.run(&["check", "--online"]))
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

fn dry_run_ok() -> ResponseTemplate {
    ResponseTemplate::new(412).set_body_string(
        "<Response><Errors><Error><Code>DryRunOperation</Code><Message>Request would have \
         succeeded, but DryRun flag is set.</Message></Error></Errors><RequestID>r</RequestID></Response>",
    )
}

#[tokio::test]
async fn each_failing_item_is_named() {
    const GOOD: &str = "i-0aaaaaaaaaaaaaaaa";
    const GONE: &str = "i-0bbbbbbbbbbbbbbbb";
    let (github, slack, ec2) = (
        GitHub::start().await,
        Slack::start().await,
        MockServer::start().await,
    );
    github
        .answer("/rate_limit", util::error(401, "Bad credentials"), None)
        .await;
    github.set_head(REPO, "main", &sha(1)).await;
    github
        .fail("/repos/octo/gone/commits/heads/main", 404, "Not Found")
        .await;
    // Dry runs of DescribeInstances: the describe itself lists only GOOD.
    Mock::given(method("POST"))
        .and(body_string_contains("DryRun=true"))
        .and(body_string_contains("Action=StopInstances"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not \
             authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>",
        ))
        .with_priority(1)
        .mount(&ec2)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("DryRun=true"))
        .respond_with(dry_run_ok())
        .with_priority(2)
        .mount(&ec2)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeInstances"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId>\
             <instancesSet><item><instanceId>{GOOD}</instanceId><instanceState><code>80</code>\
             <name>stopped</name></instanceState></item></instancesSet></item></reservationSet>\
             </DescribeInstancesResponse>"
        )))
        .mount(&ec2)
        .await;
    let mut setup = Setup::new();
    setup.set_env("SLACK_API_TOKEN", "xoxb-revoked");
    setup.write_config(&format!(
        "{}\n[slack]\napi_url = \"{}\"\ntoken_env = \"SLACK_API_TOKEN\"\nchannel = \"#c\"\n{}{}",
        setup.header(&github.url(), &ec2.uri()),
        slack.api_url(),
        watch(REPO, "main", &[GOOD.into(), GONE.into()]),
        watch("octo/gone", "main", &[GOOD.into()])
    ));

    let out = setup.run(&["check", "--online"]);

    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    for needle in [
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
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
}

#[tokio::test]
async fn a_webhook_is_checked_without_posting() {
    let (github, slack) = (GitHub::start().await, Slack::start().await);
    github.set_head(REPO, "main", &sha(1)).await;
    let mut setup = Setup::new();
    setup.set_env("SLACK_WEBHOOK_URL", &slack.webhook_url());
    setup.set_env(
        "WRONG_HOOK",
        &format!("{}/services/T000/B000/nope", slack.server.uri()),
    );
    let header = setup.header(&github.url(), "http://127.0.0.1:9");
    let config = |hook: &str| {
        format!(
            "{header}\n[slack]\nwebhook_url_env = \"{hook}\"\n{}",
            watch(REPO, "main", &["i-0123456789abcdef0".to_owned()])
        )
    };
    setup.write_config(&config("SLACK_WEBHOOK_URL"));
    let out = setup.run(&["check", "--online"]);
    assert!(
        stdout(&out).contains("✓ Slack: incoming webhook reachable"),
        "{}",
        stdout(&out)
    );
    assert!(slack.texts().await.is_empty());

    setup.write_config(&config("WRONG_HOOK"));
    let out = setup.run(&["check", "--online"]);
    assert!(
        stdout(&out).contains("✗ Slack: Slack refused the message: 404"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("nope"),
        "the webhook URL was printed"
    );
}

#[tokio::test]
async fn github_enterprise_with_rate_limiting_off_is_reachable() {
    let github = GitHub::start().await;
    // What GitHub Enterprise Server answers when its administrator turned rate limits off.
    github
        .answer(
            "/rate_limit",
            util::error(404, "Rate limiting is not enabled."),
            None,
        )
        .await;
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}{}",
        setup.header(&github.url(), "http://127.0.0.1:9"),
        watch(REPO, "main", &["i-0123456789abcdef0".to_owned()])
    ));

    let text = stdout(&setup.run(&["check", "--online"]));

    assert!(
        text.contains("✓ GitHub reachable; rate limiting is off"),
        "{text}"
    );
}
