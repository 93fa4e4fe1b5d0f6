//! Beyond the seed: tags that tell each machine its commit, instances picked by tag, pushes
//! filtered by path or marker, and instances stopped by `max_runtime` and `idle_stop`.

use std::time::Duration;

use wiremock::MockServer;

use crate::util::{
    self, Ec2, GitHub, Setup, Slack, ec2_actions, ec2_ok, sha, stderr, stdout, watch,
};

const REPO: &str = "octo/trainer";

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn instances_are_tagged_with_the_commit_before_they_start() {
    let moto = util::moto_url();
    let (github, ec2) = (GitHub::start().await, Ec2::connect(&moto).await);
    let ids = ec2.stopped(2).await;
    github.set_head("octo/trainer", "release/v2", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}{}",
        setup.header(&github.url(), &moto),
        watch(REPO, "release/v2", &ids)
    ));

    setup.once(0);

    for id in &ids {
        let tags = ec2.tags(id).await;
        assert_eq!(tags["pushwake:commit"], sha(1));
        assert_eq!(tags["pushwake:repo"], REPO);
        assert_eq!(tags["pushwake:branch"], "release/v2");
        assert_eq!(
            tags["pushwake:started-at"], "",
            "written once the start is confirmed"
        );
    }
    assert_eq!(ec2.states(&ids).await, ["running", "running"]);

    // The next pass confirms the starts, with EC2's own launch time.
    setup.once(0);
    for id in &ids {
        let tags = ec2.tags(id).await;
        let started = chrono::DateTime::parse_from_rfc3339(&tags["pushwake:started-at"]).unwrap();
        assert_eq!(Some(started.to_utc()), ec2.launch_time(id).await);
    }
}

#[tokio::test]
async fn the_tags_are_written_before_the_start_call() {
    const ID: &str = "i-0123456789abcdef0";
    let (github, ec2) = (GitHub::start().await, ec2_ok(&[ID]).await);
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}{}",
        setup.header(&github.url(), &ec2.uri()),
        watch(REPO, "main", &[ID.into()])
    ));

    setup.once(0);

    // One describe, one tag, one start: three calls, whatever the number of instances.
    assert_eq!(
        ec2_actions(&ec2).await,
        ["DescribeInstances", "CreateTags", "StartInstances"]
    );
    let requests = ec2.received_requests().await.unwrap();
    let body = String::from_utf8_lossy(&requests[1].body).into_owned();
    for key in [
        "pushwake%3Acommit",
        "pushwake%3Arepo",
        "pushwake%3Abranch",
        "pushwake%3Astarted-at",
    ] {
        assert!(body.contains(key), "{key} missing from {body}");
    }
    assert!(body.contains(&sha(1)), "{body}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn instances_can_be_picked_by_tag() {
    let moto = util::moto_url();
    let (github, ec2) = (GitHub::start().await, Ec2::connect(&moto).await);
    // A project name of this test's own, so other tests' instances are not picked.
    let project = format!("trainer-{}", std::process::id());
    let picked = ec2.stopped(2).await;
    ec2.tag(&picked, &[("Project", &project), ("Role", "gpu")])
        .await;
    let half = ec2.stopped(1).await;
    ec2.tag(&half, &[("Project", &project), ("Role", "cpu")])
        .await;
    let by_id = ec2.stopped(1).await;
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}{}instance_tags = {{ Project = \"{project}\", Role = \"gpu\" }}\n",
        setup.header(&github.url(), &moto),
        watch(REPO, "main", &by_id),
    ));

    setup.once(0);

    assert_eq!(ec2.states(&picked).await, ["running", "running"]);
    assert_eq!(ec2.states(&by_id).await, ["running"]);
    assert_eq!(
        ec2.states(&half).await,
        ["stopped"],
        "matched only some of the tags"
    );
}

#[tokio::test]
async fn a_watch_with_tags_alone_is_valid() {
    let setup = Setup::new();
    setup.write_config(
        "[[watch]]\nrepo = \"o/r\"\nbranch = \"main\"\ninstance_tags = { Project = \"trainer\" }\n",
    );
    assert_eq!(setup.run(&["check"]).status.code(), Some(0));
}

/// A fake GitHub and EC2 with one instance, and a config watching `REPO@main` with `extra`
/// keys; the head is `sha(1)`, recorded as the baseline.
async fn filtered_setup(extra: &str) -> (GitHub, MockServer, Setup) {
    const ID: &str = "i-0123456789abcdef0";
    let (github, ec2) = (GitHub::start().await, ec2_ok(&[ID]).await);
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}{}{extra}\n",
        setup.header(&github.url(), &ec2.uri()),
        watch(REPO, "main", &[ID.into()])
    ));
    setup.once(0);
    (github, ec2, setup)
}

async fn started(ec2: &MockServer) -> bool {
    ec2_actions(ec2).await.iter().any(|a| a == "StartInstances")
}

#[tokio::test]
async fn a_push_touching_no_watched_path_starts_nothing() {
    let (github, ec2, setup) = filtered_setup("paths = [\"train.py\", \"models/**\"]").await;
    github.set_head(REPO, "main", &sha(2)).await;
    github
        .set_compare(
            REPO,
            &sha(1),
            &sha(2),
            "ahead",
            &[("README.md", None), ("docs/models/x.md", None)],
        )
        .await;

    let out = setup.once(0);

    assert!(!started(&ec2).await);
    assert_eq!(
        setup.status()[0]["last_sha"],
        sha(2),
        "a filtered head is recorded"
    );
    assert!(
        stderr(&out).contains("starts nothing, it touches none of train.py, models/**"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_push_touching_a_watched_path_starts() {
    let (github, ec2, setup) = filtered_setup("paths = [\"train.py\", \"models/**\"]").await;
    github.set_head(REPO, "main", &sha(2)).await;
    github
        .set_compare(
            REPO,
            &sha(1),
            &sha(2),
            "ahead",
            &[("README.md", None), ("models/resnet/layers.py", None)],
        )
        .await;

    setup.once(0);

    assert!(started(&ec2).await);
    assert_eq!(setup.status()[0]["last_sha"], sha(2));
}

#[tokio::test]
async fn a_rename_out_of_a_watched_path_counts() {
    let (github, ec2, setup) = filtered_setup("paths = [\"models/**\"]").await;
    github.set_head(REPO, "main", &sha(2)).await;
    github
        .set_compare(
            REPO,
            &sha(1),
            &sha(2),
            "ahead",
            &[("attic/old.py", Some("models/old.py"))],
        )
        .await;
    setup.once(0);
    assert!(started(&ec2).await);
}

#[tokio::test]
async fn a_force_push_starts_when_it_cannot_tell() {
    let (github, ec2, setup) = filtered_setup("paths = [\"models/**\"]").await;
    github.set_head(REPO, "main", &sha(2)).await;
    github
        .set_compare(REPO, &sha(1), &sha(2), "diverged", &[("README.md", None)])
        .await;

    let out = setup.once(0);

    assert!(
        started(&ec2).await,
        "a force-push must err on the side of starting"
    );
    assert!(
        stderr(&out).contains("cannot tell which paths"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_skip_marker_starts_nothing() {
    let (github, ec2, setup) = filtered_setup("").await;
    github
        .set_head_with_message(
            REPO,
            "main",
            &sha(2),
            "Fix a typo [skip pushwake]\n\nNo need to train.",
        )
        .await;

    let out = setup.once(0);

    assert!(!started(&ec2).await);
    assert_eq!(setup.status()[0]["last_sha"], sha(2));
    assert!(
        stderr(&out).contains("its message holds \"[skip pushwake]\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(github.compare_requests().await, 0);
}

#[tokio::test]
async fn skip_markers_can_be_chosen() {
    let (github, ec2, setup) = filtered_setup("skip_markers = [\"[no train]\"]").await;
    github
        .set_head_with_message(REPO, "main", &sha(2), "Docs [skip pushwake]")
        .await;
    setup.once(0);
    assert!(started(&ec2).await, "the default marker no longer applies");

    github
        .set_head_with_message(REPO, "main", &sha(3), "Docs [no train]")
        .await;
    let before = ec2_actions(&ec2).await.len();
    setup.once(0);
    assert!(!ec2_actions(&ec2).await[before..].contains(&"StartInstances".to_owned()));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn max_runtime_stops_what_pushwake_started_and_nothing_else() {
    let moto = util::moto_url();
    let (github, slack, ec2) = (
        GitHub::start().await,
        Slack::start().await,
        Ec2::connect(&moto).await,
    );
    let ours = ec2.stopped(2).await;
    // Running already, started by a person: listed in the watch, never stopped by it.
    let bystander = ec2.running(1).await;
    let ids: Vec<String> = ours.iter().chain(&bystander).cloned().collect();
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}{}{}max_runtime = \"1s\"\n",
        setup
            .header(&github.url(), &moto)
            .replace("interval = \"1s\"", "interval = \"100ms\""),
        slack.config(),
        watch(REPO, "main", &ids)
    ));

    // The daemon starts them, then stops them a second later.
    let mut daemon = setup
        .command(&[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while ec2.states(&ours).await != ["stopped", "stopped"]
        || start.elapsed() < Duration::from_millis(500)
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not stopped: {:?}",
            ec2.states(&ids).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    daemon.wait().unwrap();

    assert_eq!(
        ec2.states(&bystander).await,
        ["running"],
        "a bystander was stopped"
    );
    for id in &ours {
        assert!(
            !ec2.tags(id).await.contains_key("pushwake:started-at"),
            "stopped but still claimed"
        );
    }
    let texts = slack.texts().await;
    let stops: Vec<_> = texts.iter().filter(|t| t.contains("stopped i-")).collect();
    assert_eq!(stops.len(), 2, "{texts:#?}");
    assert!(stops[0].contains("max_runtime 1s reached"), "{}", stops[0]);

    // A person starts one again by hand: it is theirs now, and stays up.
    ec2.start(&ours[..1]).await;
    setup.once(0);
    assert_eq!(ec2.states(&ours[..1]).await, ["running"]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn max_runtime_is_known_across_restarts() {
    let moto = util::moto_url();
    let (github, ec2) = (GitHub::start().await, Ec2::connect(&moto).await);
    let ids = ec2.stopped(1).await;
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}{}max_runtime = \"1s\"\n",
        setup.header(&github.url(), &moto),
        watch(REPO, "main", &ids)
    ));
    // One process starts it...
    setup.once(0);
    assert_eq!(ec2.states(&ids).await, ["running"]);
    // ...and another, with no memory of it but the tags, stops it once its time is up.
    let start = std::time::Instant::now();
    while ec2.states(&ids).await != ["stopped"] {
        assert!(start.elapsed() < Duration::from_secs(10), "never stopped");
        tokio::time::sleep(Duration::from_millis(250)).await;
        setup.once(0);
    }
}

/// Puts CPU datapoints for `id` into moto's CloudWatch, over the query protocol.
async fn put_cpu(moto: &str, id: &str, values: &[f64]) {
    let now = chrono::Utc::now();
    let mut form = vec![
        ("Action".to_owned(), "PutMetricData".to_owned()),
        ("Version".to_owned(), "2010-08-01".to_owned()),
        ("Namespace".to_owned(), "AWS/EC2".to_owned()),
    ];
    for (i, v) in values.iter().enumerate() {
        let n = i + 1;
        let at = now - chrono::Duration::seconds(10 + 5 * i as i64);
        form.extend([
            (
                format!("MetricData.member.{n}.MetricName"),
                "CPUUtilization".to_owned(),
            ),
            (format!("MetricData.member.{n}.Value"), v.to_string()),
            (format!("MetricData.member.{n}.Unit"), "Percent".to_owned()),
            (
                format!("MetricData.member.{n}.Timestamp"),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            (
                format!("MetricData.member.{n}.Dimensions.member.1.Name"),
                "InstanceId".to_owned(),
            ),
            (
                format!("MetricData.member.{n}.Dimensions.member.1.Value"),
                id.to_owned(),
            ),
        ]);
    }
    let body: String = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                k,
                v.replace(':', "%3A")
                    .replace('+', "%2B")
                    .replace('/', "%2F")
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let response = reqwest::Client::new()
        .post(format!("{moto}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/monitoring/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn idle_stop_stops_an_idle_instance_and_spares_a_busy_one() {
    let moto = util::moto_url();
    let (github, ec2) = (GitHub::start().await, Ec2::connect(&moto).await);
    let idle = ec2.running(1).await;
    let busy = ec2.running(1).await;
    let both: Vec<String> = idle.iter().chain(&busy).cloned().collect();
    // Both were started by pushwake five minutes ago, as their tags say.
    let five_ago = (chrono::Utc::now() - chrono::Duration::minutes(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    ec2.tag(
        &both,
        &[
            ("pushwake:commit", &sha(1)),
            ("pushwake:repo", REPO),
            ("pushwake:branch", "idle-test"),
            ("pushwake:started-at", &five_ago),
        ],
    )
    .await;
    put_cpu(&moto, &idle[0], &[1.0, 2.5, 0.5]).await;
    put_cpu(&moto, &busy[0], &[1.0, 97.0, 99.0]).await;
    github.set_head(REPO, "idle-test", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}{}idle_stop = {{ metric = \"CPUUtilization\", namespace = \"AWS/EC2\", below = 5.0, for = \"2m\" }}\n",
        setup.header(&github.url(), &moto),
        watch(REPO, "idle-test", &both)
    ));

    let out = setup.once(0);

    assert_eq!(ec2.states(&idle).await, ["stopped"], "{}", stderr(&out));
    assert_eq!(ec2.states(&busy).await, ["running"]);
    assert!(
        stderr(&out).contains("idle: CPUUtilization below 5 for 2m"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn dry_run_makes_no_mutating_call() {
    const ID: &str = "i-0123456789abcdef0";
    let (github, ec2) = (GitHub::start().await, ec2_ok(&[ID]).await);
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}{}max_runtime = \"1h\"\n",
        setup.header(&github.url(), &ec2.uri()),
        watch(REPO, "main", &[ID.into()])
    ));

    let out = setup.run(&["--once", "--dry-run"]);

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{ID}: would tag it pushwake:commit={} and start it",
            sha(1)
        )),
        "{text}"
    );
    let requests = ec2.received_requests().await.unwrap();
    for r in &requests {
        let body = String::from_utf8_lossy(&r.body);
        let read_only = body.contains("Action=DescribeInstances") || body.contains("DryRun=true");
        assert!(read_only, "a mutating call in a dry run: {body}");
    }
    assert!(!std::fs::exists(setup.state_dir().join("state.json")).unwrap());
}
