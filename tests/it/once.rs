//! `pushwake --once` end to end: fake GitHub and Slack, moto for EC2.

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{self, Fake, REPO, TOKEN, World, assert_contains, sha, stderr, stdout, watch};

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn first_pass_records_a_baseline_and_starts_nothing() {
    let w = World::new(2, "").await;

    w.once(0);

    assert_eq!(w.states().await, ["stopped", "stopped"]);
    assert!(w.texts().await.is_empty(), "a baseline posts nothing");
    let status = w.status();
    assert_eq!(status[0]["last_sha"], sha(1));
    assert_eq!(status[0]["last_error"], serde_json::Value::Null);
    assert!(status[0]["last_checked"].as_str().is_some());
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn first_run_start_treats_the_head_as_new() {
    let w = World::new(1, "").await;
    w.first_run_start();

    w.once(0);

    assert_eq!(w.states().await, ["running"]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_push_starts_the_stopped_instances_and_posts_one_message() {
    let w = World::mixed(2, 1, "").await;
    let (stopped, running) = w.ids.split_at(2);
    w.baseline().await;

    w.push(2).await;
    let out = w.once(0);

    assert_eq!(w.states().await, ["running", "running", "running"]);
    let texts = w.texts().await;
    assert_eq!(texts.len(), 1, "one message per trigger");
    let text = &texts[0];
    assert!(text.contains(REPO) && text.contains("main"), "{text}");
    assert!(text.contains(&sha(2)[..7]), "short SHA: {text}");
    assert!(
        text.contains(&format!("https://github.com/{REPO}/commit/{}", sha(2))),
        "link: {text}"
    );
    assert!(
        text.contains("Train with commit") && text.contains("ada"),
        "title, author: {text}"
    );
    assert!(!text.contains("A longer body"), "first line only: {text}");
    assert_contains(text, &format!("Started: {}", util::sorted(stopped)));
    // Up, and not for this commit: it is waited for (the default `on_busy = "queue"`).
    assert_contains(
        text,
        &format!(
            "Waiting for busy machines: {} (up, not started by pushwake)",
            running[0]
        ),
    );
    assert_eq!(w.status()[0]["last_sha"], sha(2));
    assert_contains(&stderr(&out), "new head");

    // The same head again starts nothing and says nothing.
    w.once(0);
    assert_eq!(w.texts().await.len(), 1);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_unchanged_branch_is_asked_conditionally_across_processes() {
    let w = World::new(1, "").await;
    w.push(7).await;

    let first = w.once(0);
    let second = w.once(0);

    let requests = w.github.head_requests(REPO, "main").await;
    assert_eq!(requests.len(), 2, "one request per pass");
    let etag = format!("\"{}\"", sha(7));
    assert!(requests[0].headers.get("if-none-match").is_none());
    assert_eq!(
        requests[1].headers.get("if-none-match").unwrap(),
        etag.as_str()
    );
    for r in &requests {
        assert_eq!(
            r.headers.get("authorization").unwrap(),
            format!("Bearer {TOKEN}").as_str()
        );
        assert_eq!(
            r.headers.get("accept").unwrap(),
            "application/vnd.github.sha"
        );
        assert_eq!(r.headers.get("x-github-api-version").unwrap(), "2022-11-28");
        let agents: Vec<_> = r.headers.get_all("user-agent").iter().collect();
        assert!(
            agents
                .iter()
                .any(|a| a.to_str().unwrap().starts_with("pushwake/")),
            "{agents:?}"
        );
    }
    // Nothing changed, so the second pass needed no commit details and no EC2 call.
    let all = w.github.server.received_requests().await.unwrap();
    assert_eq!(
        all.len(),
        2,
        "only the two head polls: {:?}",
        all.iter().map(|r| r.url.path()).collect::<Vec<_>>()
    );
    assert_eq!(w.states().await, ["stopped"]);
    // Quiet when nothing happens, so cron mails nothing.
    assert!(
        stdout(&second).is_empty() && stderr(&second).is_empty(),
        "{}",
        stderr(&second)
    );
    assert!(stderr(&first).contains("baseline"));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_webhook_gets_the_message() {
    let mut w = World::new(1, "").await;
    w.first_run_start();
    w.use_webhook();

    w.once(0);

    let requests = w.slack.server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), util::WEBHOOK_PATH);
    let texts = w.texts().await;
    assert!(texts[0].contains(&format!("Started: {}", w.ids[0])));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_slack_failure_blocks_nothing() {
    let mut w = World::new(1, "").await;
    w.first_run_start();
    // A wrong token: Slack answers HTTP 200 with {"ok": false, "error": "invalid_auth"}.
    w.setup.set_env("SLACK_API_TOKEN", "xoxb-wrong");

    let out = w.once(0);

    assert_eq!(w.states().await, ["running"]);
    assert_eq!(w.status()[0]["last_sha"], sha(1));
    assert_contains(&stderr(&out), "invalid_auth");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn two_watches_are_independent() {
    let w = World::new(2, "").await;
    let (a, b) = w.ids.split_at(1);
    w.push(1).await;
    w.github
        .fail("/repos/octo/gone/commits/heads/main", 404, "Not Found")
        .await;
    w.write_config_with(
        "first_run = \"start\"",
        &(watch("octo/gone", "main", b) + &watch(REPO, "main", a)),
    );

    let out = w.once(1);

    assert_eq!(
        w.ec2.states(a).await,
        ["running"],
        "the healthy watch still ran"
    );
    assert_eq!(w.ec2.states(b).await, ["stopped"]);
    let status = w.status();
    assert!(
        status[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{status}"
    );
    assert_eq!(status[0]["last_sha"], serde_json::Value::Null);
    assert_eq!(status[1]["last_sha"], sha(1));
    assert_eq!(status[1]["last_error"], serde_json::Value::Null);
    assert_contains(&stderr(&out), "octo/gone@main");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_branch_with_a_slash() {
    let w = World::new(1, "").await;
    w.first_run_start_on("release/v2").await;

    w.once(0);

    assert_eq!(w.states().await, ["running"]);
    // Asked as GitHub documents it: heads/, the slash raw (the fake 404s `%2F`).
    let asked = w.github.head_requests(REPO, "release/v2").await;
    assert_eq!(
        asked[0].url.path(),
        "/repos/octo/trainer/commits/heads/release/v2"
    );
    let status = w.status();
    assert_eq!(status[0]["branch"], "release/v2");
    assert_eq!(status[0]["last_sha"], sha(1));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn terminated_and_unknown_instances_do_not_block_the_others() {
    let mut w = World::new(3, "").await;
    let (good, dead) = (vec![w.ids[0].clone(), w.ids[2].clone()], w.ids[1].clone());
    w.ec2.terminate(&dead).await;
    let unknown = "i-0000000000000dead".to_owned();
    w.ids.insert(2, unknown.clone());
    w.first_run_start();

    w.once(0);

    assert_eq!(w.ec2.states(&good).await, ["running", "running"]);
    assert_eq!(w.status()[0]["last_sha"], sha(1), "the head is recorded");
    let text = &w.texts().await[0];
    assert_contains(text, &format!("{dead} (terminated)"));
    assert_contains(text, &unknown);
}

/// Makes `server` (an EC2) refuse everything, in EC2's own XML error shape.
async fn refuse_everything(server: &MockServer, code: &str, status: u16) {
    Mock::given(method("POST"))
        .and(path("/"))
        .respond_with(ResponseTemplate::new(status).set_body_string(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
             <Message>You are not authorized to perform this operation.</Message></Error></Errors>\
             <RequestID>8f7724cf-496f-496e-8fe3-example</RequestID></Response>"
        )))
        .with_priority(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_failed_start_leaves_the_head_unhandled_and_reports_once() {
    let f = Fake::new("").await;
    refuse_everything(&f.ec2, "UnauthorizedOperation", 403).await;
    f.baseline().await;
    f.push(2).await;

    let out = f.once(1);
    f.once(1);

    assert_contains(&stderr(&out), "ec2:DescribeInstances is not allowed");
    let status = f.status();
    assert_eq!(
        status[0]["last_sha"],
        sha(1),
        "the new head stays unhandled"
    );
    assert!(
        status[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("DescribeInstances")
    );
    // Both passes asked for the full head again: no ETag for an unhandled head.
    let heads = f.github.head_requests(REPO, "main").await;
    assert_eq!(heads.len(), 3);
    assert_eq!(
        heads[2].headers.get("if-none-match").unwrap(),
        format!("\"{}\"", sha(1)).as_str()
    );
    let texts = f.texts().await;
    assert_eq!(texts.len(), 1, "one message for a failing streak");
    assert!(texts[0].contains("not allowed"));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn dry_run_changes_nothing() {
    let w = World::pushed(1, "").await;
    let state = w.setup.state_dir().join("state.json");
    let before = std::fs::read(&state).unwrap();

    let out = w.run(&["--once", "--dry-run"]);

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let would = format!(
        "{}: would tag it pushwake:commit={} and start it",
        w.ids[0],
        sha(2)
    );
    assert_contains(&text, &would);
    assert_eq!(w.states().await, ["stopped"]);
    assert!(w.texts().await.is_empty());
    assert_eq!(std::fs::read(&state).unwrap(), before);
    assert_eq!(w.starts(), [0], "only DryRun calls");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn two_overlapping_passes_act_on_a_push_once() {
    let w = World::pushed(2, "").await;

    let runs: Vec<_> = (0..2)
        .map(|_| w.setup.command(&["--once"]).spawn().unwrap())
        .collect();
    for mut run in runs {
        assert!(run.wait().unwrap().success());
    }

    assert_eq!(w.states().await, ["running", "running"]);
    assert_eq!(w.starts(), [1, 1]);
    let texts = w.texts().await;
    assert_eq!(texts.len(), 1, "one push, one message");
    assert!(texts[0].contains("Started:"));
    // The second pass polled after the first recorded the head: its poll was answered 304.
    let heads = w.github.head_requests(REPO, "main").await;
    assert_eq!(heads.len(), 3);
    assert_eq!(
        heads[2].headers.get("if-none-match").unwrap(),
        format!("\"{}\"", sha(2)).as_str()
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn logs_fit_journald_and_log_shippers() {
    let w = World::pushed(3, "").await;

    let out = w.once(0);

    // Piped stderr: no colours, no timestamps, one line for the trigger.
    let err = stderr(&out);
    assert!(!err.contains('\x1b'), "colours: {err:?}");
    assert!(
        !err.contains("2026-") && !err.contains("T1"),
        "timestamps: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(" INFO") || lines[0].starts_with("INFO"),
        "{err}"
    );
    assert!(
        lines[0].contains(&format!("Started: {}", util::sorted(&w.ids))),
        "{err}"
    );

    w.push(3).await;
    let out = w.run(&["--once", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], "INFO");
    assert!(
        lines[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("new head")
    );
}
