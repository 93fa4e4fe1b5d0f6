//! Stops and verdicts that no fault can lose (SPEC §5, §6): each fault through the binary
//! on moto, with what moto cannot produce injected by the proxy in front of it.

use std::time::{Duration, Instant};

use chrono::Duration as Span;

use crate::util::{self, REPO, World, assert_contains, sha};

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_refused_stop_keeps_the_verdict_once_and_stops_when_allowed() {
    let w = World::pushed(2, "results = { metrics = [\"accuracy\"] }").await;
    w.once(0);
    w.once(0);
    // The operator left ec2:StopInstances out of the policy, for two passes.
    let both = &w.ids[0];
    w.proxy
        .refuse("StopInstances", both, "UnauthorizedOperation", Some(2))
        .await;
    for id in &w.ids {
        w.ec2
            .tag(
                std::slice::from_ref(id),
                &[("pushwake:result:accuracy", "0.9")],
            )
            .await;
    }

    w.once(1);
    let status = w.setup.status();
    assert_eq!(
        status[0]["duties"].as_array().unwrap().len(),
        2,
        "{status:#}"
    );
    assert!(
        status[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot stop"),
        "{status:#}"
    );
    w.once(1);
    assert_eq!(w.states().await, ["running", "running"]);

    // The permission is back: the first pass stops them.
    w.once(0);
    assert_eq!(w.states().await, ["stopped", "stopped"]);
    w.once(0);
    let texts = w.texts().await;
    let verdicts = util::count(&texts, "results for");
    assert_eq!(verdicts, 1);
    let refusals = util::count(&texts, "cannot stop");
    assert_eq!(refusals, 1, "reported once");
    let stops = texts.iter().filter(|t| t.starts_with(":octagonal_sign:"));
    assert_eq!(stops.count(), 2);
    assert_eq!(w.setup.status()[0]["duties"], serde_json::json!([]));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_cloudwatch_error_for_one_instance_does_not_hold_up_another() {
    let w = World::mixed(0, 2, "max_runtime = \"5m\"\nidle_stop = { for = \"1m\" }").await;
    let ids = &w.ids;
    let (late, young) = (&ids[0], &ids[1]);
    w.started_ago(std::slice::from_ref(late), Span::minutes(10))
        .await;
    w.started_ago(std::slice::from_ref(young), Span::minutes(2))
        .await;
    w.proxy
        .refuse("GetMetricStatistics", young, "AccessDenied", None)
        .await;
    w.push(1).await;

    let out = w.once(1);

    assert_eq!(
        w.ec2.states(ids).await,
        ["stopped", "running"],
        "{}",
        util::stderr(&out)
    );
    let texts = w.texts().await;
    assert!(texts.iter().any(|t| t.contains(&format!("stopped {late}"))));
    assert!(texts.iter().any(
        |t| t.contains(&format!("cannot tell whether {young} is idle"))
            && t.contains("AccessDenied")
    ));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_corrupt_state_file_still_applies_max_runtime() {
    let w = World::mixed(0, 1, "max_runtime = \"5m\"").await;
    w.started_ago(&w.ids, Span::minutes(10)).await;
    w.push(1).await;
    let state = w.setup.state_dir().join("state.json");
    std::fs::create_dir_all(w.setup.state_dir()).unwrap();
    std::fs::write(&state, b"{\"version\": 2, \"watches\": [").unwrap();

    let out = w.setup.run(&["--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert_contains(&util::stderr(&out), "corrupt");
    assert_eq!(w.states().await, ["stopped"]);
    w.setup.run(&["--once"]);

    assert_eq!(
        std::fs::read(&state).unwrap(),
        b"{\"version\": 2, \"watches\": ["
    );
    assert_eq!(w.proxy.calls("StartInstances").await, 0);
    let texts = w.texts().await;
    assert_eq!(util::count(&texts, "cannot use its state"), 1);
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!("stopped {}", w.ids[0])))
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_master_clock_15_minutes_slow_still_stops_on_time() {
    let w = World::new(1, "max_runtime = \"3s\"").await;
    // EC2's clock, and so its launch times, run 15 minutes ahead of the master's.
    w.proxy.skew(Span::minutes(15));
    w.push_after_baseline(2).await;
    w.once(0);
    let started = Instant::now();

    let took = w
        .passes_until(Duration::from_secs(10), || async {
            w.states().await == ["stopped"]
        })
        .await;

    // EC2's Date header counts whole seconds: on time means within one.
    assert!(started.elapsed() >= Duration::from_secs(2), "stopped early");
    eprintln!("stopped {took:?} after the start, max_runtime 3s");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn orphans_are_reported_once_and_stopped_by_the_top_level_max_runtime() {
    let w = World::new(3, "").await;
    let (kept, dropped, removed) = (&w.ids[0], &w.ids[1], &w.ids[2]);
    w.github.set_head(util::REPO, "dev", &sha(11)).await;
    w.write_watches(&[("main", &[kept, dropped]), ("dev", &[removed])]);
    w.once(0);
    w.push(2).await;
    w.github.set_head(util::REPO, "dev", &sha(12)).await;
    w.once(0);
    w.once(0);

    // An id dropped from a watch, and a watch removed.
    let main_only = format!(
        "{}max_runtime = \"1h\"\n",
        util::watch(REPO, "main", std::slice::from_ref(kept))
    );
    w.write_config_with("max_runtime = \"1h\"", &main_only);
    w.once(0);
    w.once(0);
    let ghosts: Vec<String> = w
        .texts()
        .await
        .into_iter()
        .filter(|t| t.contains(":ghost:"))
        .collect();
    assert_eq!(ghosts.len(), 2, "each reported once: {ghosts:#?}");
    assert!(ghosts.iter().any(|t| t.contains(dropped.as_str())));
    assert!(
        ghosts
            .iter()
            .any(|t| t.contains(removed.as_str()) && t.contains("`dev`"))
    );
    assert_eq!(w.states().await, ["running"; 3]);
    let table = util::stdout(&w.setup.run(&["status"]));
    assert_contains(&table, "no watch owns them any more");
    assert_contains(&table, dropped);
    assert_contains(&table, removed);

    w.write_config_with("max_runtime = \"1s\"", &main_only);
    w.passes_until(Duration::from_secs(10), || async {
        w.states().await == ["running", "stopped", "stopped"]
    })
    .await;
    let texts = w.texts().await;
    assert_eq!(util::count(&texts, "no watch owns it) after"), 2);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_second_deployments_machines_are_never_touched() {
    let w = World::new(1, "").await;
    // Another team's pushwake, with its own state, on the same repository and branch.
    let theirs = w.ec2.stopped(1).await;
    let other = util::Setup::new();
    other.write_config(&format!(
        "first_run = \"start\"\n{}{}",
        other.header(&w.github.url(), &w.proxy.url()),
        util::watch(REPO, "main", &theirs)
    ));
    w.ec2.tag(&theirs, &[("Team", "ml")]).await;
    w.ec2.tag(&w.ids, &[("Team", "ml")]).await;
    w.push(1).await;
    other.once(0);
    other.once(0);
    assert_eq!(w.ec2.states(&theirs).await, ["running"]);

    // Ours selects by a tag theirs carries too, and stops everything after a second.
    w.write_config_with(
        "max_runtime = \"1s\"",
        &format!(
            "{}instance_tags = {{ Team = \"ml\" }}\n",
            util::watch(REPO, "main", &w.ids)
        ),
    );
    w.push(2).await;
    w.once(0);
    w.passes_until(Duration::from_secs(10), || async {
        w.states().await == ["stopped"]
    })
    .await;
    w.once(0);

    assert_eq!(
        w.ec2.states(&theirs).await,
        ["running"],
        "theirs was stopped"
    );
    let texts = w.texts().await;
    assert!(!texts.iter().any(|t| t.contains(theirs[0].as_str())));
}
