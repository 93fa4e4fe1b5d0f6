//! Beyond the seed: tags that tell each machine its commit, instances picked by tag, pushes
//! filtered by path or marker, and instances stopped by `max_runtime` and `idle_stop`.

use std::time::Duration;

use chrono::SubsecRound;

use crate::util::{self, Fake, ID, REPO, Setup, World, assert_contains, sha, stderr, stdout};

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn instances_are_tagged_with_the_commit_before_they_start() {
    let w = World::new(2, "").await;
    w.first_run_start_on("release/v2").await;

    w.once(0);

    let record = std::fs::read_to_string(w.setup.state_dir().join("deployment.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    for id in &w.ids {
        let tags = w.ec2.tags(id).await;
        assert_eq!(tags["pushwake:commit"], sha(1));
        assert_eq!(tags["pushwake:repo"], REPO);
        assert_eq!(tags["pushwake:branch"], "release/v2");
        assert_eq!(tags["pushwake:owner"], record["id"].as_str().unwrap());
        // The request's time, on EC2's clock, in the same call as the commit: EC2 launched
        // the machine no earlier (the Date it comes from is cut to the second).
        let asked = chrono::DateTime::parse_from_rfc3339(&tags["pushwake:started-at"]).unwrap();
        let launched = w.proxy.launched(id).unwrap();
        let lag = launched - asked.to_utc();
        assert!(
            lag >= chrono::Duration::zero() && lag < chrono::Duration::seconds(5),
            "{lag}"
        );
    }
    assert_eq!(w.states().await, ["running", "running"]);

    // The next pass confirms the starts, with EC2's own launch time (to the second).
    w.once(0);
    for id in &w.ids {
        let tags = w.ec2.tags(id).await;
        let started = chrono::DateTime::parse_from_rfc3339(&tags["pushwake:started-at"]).unwrap();
        let launched = w.proxy.launched(id).unwrap();
        assert_eq!(started.to_utc(), launched.trunc_subsecs(0));
    }
}

#[tokio::test]
async fn the_tags_are_written_before_the_start_call() {
    let f = Fake::new("").await;
    f.first_run_start();

    f.once(0);

    // One describe, one tag, one start: three calls, whatever the number of instances;
    // and each machine's own `pushwake:repeat`, before the start.
    assert_eq!(
        f.actions().await,
        [
            "DescribeInstances",
            "CreateTags",
            "CreateTags",
            "StartInstances"
        ]
    );
    let requests = f.ec2.received_requests().await.unwrap();
    let body = String::from_utf8_lossy(&requests[1].body).into_owned();
    for key in [
        "pushwake%3Acommit",
        "pushwake%3Arepo",
        "pushwake%3Abranch",
        "pushwake%3Astarted-at",
    ] {
        assert!(body.contains(key), "{key} missing from {body}");
    }
    assert_contains(&body, &sha(1));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn instances_can_be_picked_by_tag() {
    // A project name of this test's own, so other tests' instances are not picked.
    let project = format!("trainer-{}", std::process::id());
    let mut w = World::new(1, "").await;
    w.extra = format!("instance_tags = {{ Project = \"{project}\", Role = \"gpu\" }}");
    let picked = w.ec2.stopped(2).await;
    w.ec2
        .tag(&picked, &[("Project", &project), ("Role", "gpu")])
        .await;
    let half = w.ec2.stopped(1).await;
    w.ec2
        .tag(&half, &[("Project", &project), ("Role", "cpu")])
        .await;
    w.first_run_start();

    w.once(0);

    assert_eq!(w.ec2.states(&picked).await, ["running", "running"]);
    assert_eq!(w.states().await, ["running"]);
    assert_eq!(
        w.ec2.states(&half).await,
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

/// A [`Fake`] whose watch has `extra` keys, with commit 1 recorded as the baseline.
async fn filtered(extra: &str) -> Fake {
    let f = Fake::new(extra).await;
    f.baseline().await;
    f
}

#[tokio::test]
async fn a_push_touching_no_watched_path_starts_nothing() {
    let f = filtered("paths = [\"train.py\", \"models/**\"]").await;
    f.push_changing("ahead", &[("README.md", None), ("docs/models/x.md", None)])
        .await;

    let out = f.once(0);

    assert!(!f.started().await);
    assert_eq!(
        f.status()[0]["last_sha"],
        sha(2),
        "a filtered head is recorded"
    );
    assert_contains(
        &stderr(&out),
        "starts nothing, it touches none of train.py, models/**",
    );
}

#[tokio::test]
async fn a_push_touching_a_watched_path_starts() {
    let f = filtered("paths = [\"train.py\", \"models/**\"]").await;
    f.push_changing(
        "ahead",
        &[("README.md", None), ("models/resnet/layers.py", None)],
    )
    .await;

    f.once(0);

    assert!(f.started().await);
    assert_eq!(f.status()[0]["last_sha"], sha(2));
}

#[tokio::test]
async fn a_rename_out_of_a_watched_path_counts() {
    let f = filtered("paths = [\"models/**\"]").await;
    f.push_changing("ahead", &[("attic/old.py", Some("models/old.py"))])
        .await;
    f.once(0);
    assert!(f.started().await);
}

#[tokio::test]
async fn a_force_push_starts_when_it_cannot_tell() {
    let f = filtered("paths = [\"models/**\"]").await;
    f.push_changing("diverged", &[("README.md", None)]).await;

    let out = f.once(0);

    assert!(
        f.started().await,
        "a force-push must err on the side of starting"
    );
    assert_contains(&stderr(&out), "cannot tell which paths");
}

#[tokio::test]
async fn a_skip_marker_starts_nothing() {
    let f = filtered("").await;
    f.github
        .set_head_with_message(
            REPO,
            "main",
            &sha(2),
            "Fix a typo [skip pushwake]\n\nNo need to train.",
        )
        .await;

    let out = f.once(0);

    assert!(!f.started().await);
    assert_eq!(f.status()[0]["last_sha"], sha(2));
    assert_contains(&stderr(&out), "its message holds \"[skip pushwake]\"");
    assert_eq!(f.github.requests_to("/compare/").await, 0);
}

#[tokio::test]
async fn skip_markers_can_be_chosen() {
    let f = filtered("skip_markers = [\"[no train]\"]").await;
    f.github
        .set_head_with_message(REPO, "main", &sha(2), "Docs [skip pushwake]")
        .await;
    f.once(0);
    assert!(f.started().await, "the default marker no longer applies");

    f.github
        .set_head_with_message(REPO, "main", &sha(3), "Docs [no train]")
        .await;
    let before = f.actions().await.len();
    f.once(0);
    assert!(!f.actions().await[before..].contains(&"StartInstances".to_owned()));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn max_runtime_stops_what_pushwake_started_and_nothing_else() {
    // The third is running already, started by a person: listed in the watch, never
    // stopped by it.
    let w = World::mixed(2, 1, "max_runtime = \"1s\"").await;
    let (ours, bystander) = w.ids.split_at(2);
    w.push(1).await;
    w.write_config_with("first_run = \"start\"\ninterval = \"100ms\"", &w.watch());

    // The daemon starts them, then stops them a second later.
    let mut daemon = w
        .setup
        .command(&[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    // Until both are stopped and Slack heard of it (the messages go out at the end of the
    // pass that stopped them).
    while w.ec2.states(ours).await != ["stopped", "stopped"]
        || util::count(&w.texts().await, "stopped i-") < 2
        || start.elapsed() < Duration::from_millis(500)
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not stopped: {:?}",
            w.states().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    daemon.wait().unwrap();

    assert_eq!(
        w.ec2.states(bystander).await,
        ["running"],
        "a bystander was stopped"
    );
    // What they ran stays EC2's record; a later start by hand moves the launch time out of
    // `started-at`'s window.
    for id in ours {
        assert_eq!(w.ec2.tags(id).await["pushwake:commit"], sha(1));
    }
    let texts = w.texts().await;
    let stops: Vec<_> = texts.iter().filter(|t| t.contains("stopped i-")).collect();
    assert_eq!(stops.len(), 2);
    assert_contains(stops[0], "max_runtime 1s reached");

    // A person starts one again by hand, however soon: it is theirs now, and stays up.
    w.ec2.start(&ours[..1]).await;
    w.proxy.set_launched(&ours[0], chrono::Utc::now());
    w.once(0);
    assert_eq!(w.ec2.states(&ours[..1]).await, ["running"]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn max_runtime_is_known_across_restarts() {
    let w = World::new(1, "max_runtime = \"1s\"").await;
    w.first_run_start();
    // One process starts it...
    w.once(0);
    assert_eq!(w.states().await, ["running"]);
    // ...and another, with no memory of it but the tags, stops it once its time is up.
    let start = std::time::Instant::now();
    while w.states().await != ["stopped"] {
        assert!(start.elapsed() < Duration::from_secs(10), "never stopped");
        tokio::time::sleep(Duration::from_millis(250)).await;
        w.once(0);
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
    let w = World::mixed(0, 2, "idle_stop = { metric = \"CPUUtilization\", namespace = \"AWS/EC2\", below = 5.0, for = \"2m\" }").await;
    let (idle, busy) = w.ids.split_at(1);
    // Both were started by pushwake five minutes ago, as their tags say.
    w.started_ago(&w.ids, chrono::Duration::minutes(5)).await;
    put_cpu(&util::moto_url(), &idle[0], &[1.0, 2.5, 0.5]).await;
    put_cpu(&util::moto_url(), &busy[0], &[1.0, 97.0, 99.0]).await;
    w.push(1).await;

    let out = w.once(0);

    assert_eq!(w.ec2.states(idle).await, ["stopped"], "{}", stderr(&out));
    assert_eq!(w.ec2.states(busy).await, ["running"]);
    assert_contains(&stderr(&out), "idle: CPUUtilization below 5 for 2m");
}

#[tokio::test]
async fn dry_run_makes_no_mutating_call() {
    let f = Fake::new("max_runtime = \"1h\"").await;
    f.first_run_start();

    let out = f.run(&["--once", "--dry-run"]);

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_contains(
        &text,
        &format!("{ID}: would tag it pushwake:commit={} and start it", sha(1)),
    );
    let requests = f.ec2.received_requests().await.unwrap();
    for r in &requests {
        let body = String::from_utf8_lossy(&r.body);
        let read_only = body.contains("Action=DescribeInstances") || body.contains("DryRun=true");
        assert!(read_only, "a mutating call in a dry run: {body}");
    }
    assert!(!std::fs::exists(f.setup.state_dir().join("state.json")).unwrap());
}
