//! Faults of every peer, through the library's `Agent` (with a quick retry policy) or the
//! binary. Each test asserts the invariants: no push lost, none started twice, failures
//! reported once.

use std::time::Duration;

use pushwake::config::{Env, Settings};
use pushwake::pass::{Agent, PassOptions, PassReport};
use pushwake::retry::Policy;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::util::{self, Base, Fake, ID, REPO, World, sdk_config, sha, stderr, watch};

const HEAD: &str = "/repos/octo/trainer/commits/heads/main";

fn quick() -> Policy {
    Policy {
        attempts: 4,
        base: Duration::from_millis(5),
        max_wait: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(10),
        end: None,
    }
}

/// An agent for the world's config as written, resolved against its environment, with a
/// quick retry policy.
async fn agent(b: &Base) -> Agent {
    let path = b.setup.config_path();
    let config = std::fs::read_to_string(&path).expect("read config");
    let env: Env = b.setup.env.iter().cloned().collect();
    let settings = Settings::from_toml(&path, &config, &env).expect("valid config");
    let ec2 = settings.aws.endpoint_url.clone().expect("an EC2 endpoint");
    let options = PassOptions {
        retry: quick(),
        ..PassOptions::default()
    };
    Agent::new(settings, options)
        .unwrap()
        .with_sdk_config(sdk_config(&ec2).await)
}

/// A [`Fake`] under `first_run = "start"` with `main` at commit 1, which the next pass
/// starts, and its agent.
async fn starting() -> (Fake, Agent) {
    let f = Fake::new("").await;
    f.first_run_start();
    let agent = agent(&f).await;
    (f, agent)
}

/// A world without EC2 whose `main` is at commit 1, and its agent.
async fn polling() -> (Base, Agent) {
    let b = Base::without_ec2("").await;
    b.push(1).await;
    let agent = agent(&b).await;
    (b, agent)
}

fn report(watches: usize, failed: usize, triggered: usize) -> PassReport {
    PassReport {
        watches,
        failed,
        triggered,
    }
}

/// GitHub's answer when the rate limit is spent until an hour from now.
fn rate_limited(message: &str) -> ResponseTemplate {
    let reset = chrono::Utc::now().timestamp() + 3600;
    util::error(403, message)
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-reset", reset.to_string().as_str())
}

#[tokio::test]
async fn github_502s_are_retried_within_the_pass() {
    let (f, agent) = starting().await;
    f.github
        .answer(HEAD, util::error(502, "Server Error"), Some(2))
        .await;

    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 1));
    assert_eq!(f.github.head_requests(REPO, "main").await.len(), 3);
    assert_eq!(f.calls("StartInstances").await, 1);
}

#[tokio::test]
async fn a_github_timeout_is_retried() {
    let (f, agent) = starting().await;
    // A hung answer: longer than the policy's 500 ms per attempt.
    let slow = ResponseTemplate::new(200)
        .set_body_string(sha(1))
        .set_delay(Duration::from_secs(3));
    f.github.answer(HEAD, slow, Some(1)).await;

    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 1));
}

#[tokio::test]
async fn a_github_outage_is_reported_once_and_the_push_is_acted_on_after() {
    let f = Fake::new("").await;
    let agent = agent(&f).await;
    agent.pass().await.unwrap();

    // The branch moves while GitHub is down for three passes.
    f.push(2).await;
    f.github
        .answer(HEAD, util::error(502, "Server Error"), Some(12))
        .await;
    for _ in 0..3 {
        assert_eq!(agent.pass().await.unwrap(), report(1, 1, 0));
    }
    assert_eq!(f.calls("StartInstances").await, 0);
    f.assert_last_error("502");
    assert_eq!(f.status()[0]["last_sha"], sha(1));

    // GitHub is back: the push is acted on, once.
    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 1));
    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 0));
    assert_eq!(f.calls("StartInstances").await, 1);
    let texts = f.texts().await;
    assert_eq!(texts.len(), 2, "one failure, then the start: {texts:#?}");
    assert!(texts[0].contains("502"), "{}", texts[0]);
    assert!(texts[1].contains(&format!("Started: {ID}")), "{}", texts[1]);
    assert_eq!(f.status()[0]["last_error"], serde_json::Value::Null);
}

#[tokio::test]
async fn watches_failing_for_one_cause_share_one_message() {
    let b = Base::without_ec2("").await;
    let branches = ["main", "dev", "exp"];
    let mut watches = String::new();
    for branch in branches {
        b.github.set_head(REPO, branch, &sha(1)).await;
        watches.push_str(&watch(REPO, branch, &b.ids));
    }
    b.write_config(&watches);
    let agent = agent(&b).await;
    agent.pass().await.unwrap();
    // GitHub is down for every watch for a pass (4 attempts each), then back.
    for branch in branches {
        let route = format!("/repos/{REPO}/commits/heads/{branch}");
        b.github
            .answer(&route, util::error(502, "Server Error"), Some(4))
            .await;
    }
    assert_eq!(agent.pass().await.unwrap(), report(3, 3, 0));
    agent.pass().await.unwrap();

    let texts = b.texts().await;
    assert_eq!(
        texts.len(),
        2,
        "one for the outage, one for the end of it: {texts:#?}"
    );
    assert!(texts[0].contains("502"), "{}", texts[0]);
    for branch in branches {
        assert!(texts[0].contains(&format!("`{branch}`")), "{}", texts[0]);
        assert!(texts[1].contains(&format!("`{branch}`")), "{}", texts[1]);
    }
    assert!(texts[1].contains("work again"), "{}", texts[1]);
}

#[tokio::test]
async fn a_slack_that_never_answers_holds_a_pass_a_few_seconds_at_most() {
    let f = Fake::new("").await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .with_priority(1)
        .mount(&f.slack.server)
        .await;
    f.first_run_start();

    let start = std::time::Instant::now();
    f.once(0);

    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(f.calls("StartInstances").await, 1, "started first");
}

#[tokio::test]
async fn a_recovery_without_a_push_is_reported_once() {
    let (b, agent) = polling().await;
    agent.pass().await.unwrap();
    b.github
        .answer(HEAD, util::error(500, "Server Error"), Some(8))
        .await;
    agent.pass().await.unwrap();
    agent.pass().await.unwrap();
    agent.pass().await.unwrap();

    let texts = b.texts().await;
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[1].contains("works again"), "{}", texts[1]);
}

#[tokio::test]
async fn a_rate_limit_pauses_the_watch_until_its_reset() {
    let (b, agent) = polling().await;
    let limited = rate_limited("API rate limit exceeded for user ID 1.");
    b.github.answer(HEAD, limited, None).await;

    assert_eq!(agent.pass().await.unwrap(), report(1, 1, 0));
    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 0));
    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 0));

    assert_eq!(
        b.github.head_requests(REPO, "main").await.len(),
        1,
        "no retry before the reset"
    );
    b.assert_last_error("rate limit");
}

#[tokio::test]
async fn a_rate_limit_makes_once_exit_1() {
    let b = Base::without_ec2("").await;
    let limited = rate_limited("API rate limit exceeded");
    b.github.answer(HEAD, limited, None).await;

    let out = b.once(1);

    assert!(stderr(&out).contains("rate limit"), "{}", stderr(&out));
    assert_eq!(b.github.head_requests(REPO, "main").await.len(), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_is_obeyed() {
    let (b, agent) = polling().await;
    let limited = util::error(429, "You have exceeded a secondary rate limit.")
        .insert_header("retry-after", "1");
    b.github.answer(HEAD, limited, Some(1)).await;

    let started = std::time::Instant::now();
    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 0));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not waited for"
    );
    assert_eq!(b.status()[0]["last_sha"], sha(1));
}

#[tokio::test]
async fn slack_500_and_429_are_retried() {
    let (f, agent) = starting().await;
    let ratelimited = ResponseTemplate::new(429)
        .insert_header("retry-after", "0")
        .set_body_json(serde_json::json!({"ok": false, "error": "ratelimited"}));
    // The first post is answered 500, the second 429.
    for (priority, answer) in [(1, ResponseTemplate::new(500)), (2, ratelimited)] {
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .respond_with(answer)
            .up_to_n_times(1)
            .with_priority(priority)
            .mount(&f.slack.server)
            .await;
    }

    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 1));
    let requests = f.slack.server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3, "500, 429, then delivered");
}

#[tokio::test]
async fn slack_down_blocks_nothing() {
    let f = Fake::new("").await;
    // Nothing listens there.
    f.setup.write_config(&format!(
        "first_run = \"start\"\n{}\n[slack]\napi_url = \"http://127.0.0.1:9/api\"\ntoken_env = \"SLACK_API_TOKEN\"\nchannel = \"#x\"\n{}",
        f.setup.header(&f.github.url(), &f.ec2.uri()),
        f.watch()
    ));
    let agent = agent(&f).await;

    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 1));
    assert_eq!(f.status()[0]["last_sha"], sha(1));
}

#[tokio::test]
async fn no_capacity_keeps_the_head_unhandled_until_it_starts() {
    let (f, agent) = starting().await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=StartInstances"))
        .respond_with(ResponseTemplate::new(500).set_body_string(
            "<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We \
             currently do not have sufficient p3.2xlarge capacity in the Availability Zone you \
             requested (eu-west-1a).</Message></Error></Errors><RequestID>r</RequestID></Response>",
        ))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&f.ec2)
        .await;

    assert_eq!(agent.pass().await.unwrap(), report(1, 1, 0));
    assert_eq!(f.status()[0]["last_sha"], serde_json::Value::Null);
    assert_eq!(agent.pass().await.unwrap(), report(1, 1, 0));
    assert_eq!(agent.pass().await.unwrap(), report(1, 0, 1));
    assert_eq!(f.status()[0]["last_sha"], sha(1));

    assert_eq!(
        f.calls("StartInstances").await,
        3,
        "capacity is not retried in a pass"
    );
    let texts = f.texts().await;
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts[0].contains("InsufficientInstanceCapacity"),
        "{}",
        texts[0]
    );
    assert!(texts[1].contains(&format!("Started: {ID}")), "{}", texts[1]);
}

#[tokio::test]
async fn a_corrupt_state_file_is_reported_and_kept_byte_for_byte() {
    let f = Fake::new("").await;
    f.first_run_start();
    let state = f.setup.state_dir().join("state.json");
    std::fs::create_dir_all(f.setup.state_dir()).unwrap();
    let garbage = b"{\"version\": 1, \"watches\": [{\"repo\": \"octo/tr\x00\xff";
    std::fs::write(&state, garbage).unwrap();

    let out = f.once(1);

    let err = stderr(&out);
    assert!(
        err.contains(&state.display().to_string()) && err.contains("corrupt"),
        "{err}"
    );
    // The advice is true for this config, where a fresh state starts everything.
    assert!(
        err.contains("treats each head as new") && !err.contains("baseline"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&state).unwrap(),
        garbage,
        "the file was changed"
    );
    assert!(
        f.ec2.received_requests().await.unwrap().is_empty(),
        "EC2 was called"
    );
    assert!(
        f.github
            .server
            .received_requests()
            .await
            .unwrap()
            .is_empty()
    );

    let out = f.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
}

/// Whether this process runs as root, which writes anywhere whatever the permissions.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test]
async fn an_unwritable_state_dir_is_found_before_any_ec2_call() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fake::new("").await;
    f.first_run_start();
    let setup = &f.setup;
    std::fs::create_dir_all(setup.state_dir()).unwrap();
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(setup.dir.path(), mode(0o755)).unwrap();
    std::fs::set_permissions(setup.config_path(), mode(0o644)).unwrap();
    std::fs::set_permissions(setup.state_dir(), mode(0o555)).unwrap();

    // Root writes through any mode bits, so run as nobody, as a service user would be.
    // The binary is copied beside the config: its build directory may not be open to nobody.
    let out = if is_root() {
        let binary = setup.dir.path().join("pushwake");
        std::fs::copy(env!("CARGO_BIN_EXE_pushwake"), &binary).unwrap();
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        let inner = setup.command(&["--once"]);
        cmd.arg(&binary).args(inner.get_args());
        cmd.env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
        cmd.output().expect("setpriv")
    } else {
        setup.run(&["--once"])
    };

    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write in state directory"),
        "{}",
        stderr(&out)
    );
    assert!(
        f.ec2.received_requests().await.unwrap().is_empty(),
        "EC2 was called"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_crash_between_start_and_record_does_not_start_twice() {
    let w = World::pushed(2, "").await;
    // The instances were tagged (with the time of the request) and started for commit 2,
    // and the agent died before it could save anything.
    let now = chrono::Utc::now();
    let asked = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    w.ec2
        .tag(
            &w.ids,
            &[
                ("pushwake:commit", &sha(2)),
                ("pushwake:repo", util::REPO),
                ("pushwake:branch", "main"),
                ("pushwake:started-at", &asked),
            ],
        )
        .await;
    w.ec2.start(&w.ids).await;
    for id in &w.ids {
        w.proxy.set_launched(id, now);
    }

    w.once(0);

    assert_eq!(w.proxy.calls("StartInstances").await, 0, "started again");
    let texts = w.texts().await;
    assert_eq!(texts.len(), 1);
    assert!(
        texts[0].contains(&format!("Started: {}", util::sorted(&w.ids))),
        "{}",
        texts[0]
    );
    assert_eq!(w.status()[0]["last_sha"], sha(2));
}

#[tokio::test]
async fn sigterm_in_the_middle_of_a_pass_leaves_no_half_written_state() {
    use std::process::Stdio;
    let b = Base::without_ec2("").await;
    b.baseline().await;
    let state = b.setup.state_dir().join("state.json");
    let before = std::fs::read(&state).unwrap();
    // The next poll hangs.
    let hung = ResponseTemplate::new(200)
        .set_body_string(sha(2))
        .set_delay(Duration::from_secs(20));
    b.github.answer(HEAD, hung, None).await;
    let mut child = b
        .setup
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while b.github.head_requests(REPO, "main").await.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the daemon never polled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let term = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            term.elapsed() < Duration::from_secs(5),
            "no exit within 5 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    assert_eq!(status.code(), Some(0));
    assert_eq!(std::fs::read(&state).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(b.setup.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_pass_gives_up_on_a_lock_held_too_long() {
    use pushwake::config::FirstRun;
    use pushwake::state::Dir;
    let dir = tempfile::tempdir().unwrap();
    let _held = Dir::new(dir.path(), FirstRun::Baseline)
        .lock(Duration::from_secs(1))
        .await
        .unwrap();

    let start = std::time::Instant::now();
    let err = Dir::new(dir.path(), FirstRun::Baseline)
        .lock(Duration::from_millis(300))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("this pass gives up"), "{err}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}
