//! The stories of runs (SPEC §4): each push is trained once on every machine of its watch,
//! whatever the machines are doing and whatever fails, through the binary on moto, with the
//! faults moto cannot produce injected by the proxy in front of it.

use crate::util::{self, World, assert_contains, sha, short};

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_push_while_busy_waits_and_the_newest_runs_when_the_machines_stop() {
    let w = World::pushed(3, "").await;
    w.once(0);
    w.push(3).await;
    w.once(0);

    let status = w.setup.status();
    assert_eq!(status[0]["queued"], sha(3), "{status:#}");
    assert_eq!(status[0]["last_sha"], sha(3), "a queued head is handled");
    let parts = &status[0]["open_runs"][0]["instances"];
    assert_eq!(parts[&w.ids[0]]["part"], "waiting", "{status:#}");
    let texts = w.texts().await;
    assert!(texts[1].contains(&format!(
        "Waiting for busy machines: {} (busy with `{}`)",
        w.ids.iter().min().unwrap(),
        short(2)
    )));

    let table = util::stdout(&w.setup.run(&["status"]));
    assert_contains(&table, &format!("run of {} (queued):", short(3)));
    assert_contains(
        &table,
        &format!("{}: waiting: busy with `{}`", w.ids[0], short(2)),
    );

    // A third push takes the place of the second in the queue.
    w.push(4).await;
    w.once(0);
    assert_eq!(w.setup.status()[0]["queued"], sha(4));
    // The machines finish commit 2: commit 4 runs on all of them, commit 3 on none.
    w.ec2.stop(&w.ids).await;
    w.once(0);

    assert_eq!(w.commits().await, [sha(4), sha(4), sha(4)]);
    assert_eq!(
        w.starts(),
        [2, 2, 2],
        "once for commit 2, once for commit 4"
    );
    let texts = w.texts().await;
    assert_eq!(texts.len(), 4, "started, waiting, replaced, started");
    assert_contains(
        &texts[2],
        &format!(
            "1 queued push since `{}` never ran; running the newest",
            short(3)
        ),
    );
    assert_contains(&texts[3], &format!("run of `{}`", short(4)));
    assert_contains(&texts[3], &format!("Started: {}", util::sorted(&w.ids)));
    assert_eq!(w.setup.status()[0]["queued"], serde_json::Value::Null);
    // Quiet afterwards: no message per pass.
    w.once(0);
    w.once(0);
    assert_eq!(w.texts().await.len(), 4);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn supersede_stops_the_older_run_and_starts_the_new_commit_but_never_a_persons_machine() {
    // The third is a machine a person started by hand, in the same watch.
    let w = World::mixed(2, 1, "on_busy = \"supersede\"").await;
    let by_hand = &w.ids[2..];
    w.push_after_baseline(2).await;
    w.once(0);
    w.push(3).await;
    w.once(0);

    let commits = w.commits().await;
    assert_eq!(commits[..2], [sha(3), sha(3)]);
    assert_eq!(
        w.ec2.states(by_hand).await,
        ["running"],
        "a person's machine"
    );
    assert_eq!(w.starts()[..2], [2, 2]);
    assert_eq!(w.proxy.calls("StopInstances").await, 1);
    let texts = w.texts().await;
    let last = texts.last().unwrap();
    assert_contains(last, &format!("Superseded `{}`", short(2)));
    assert_contains(
        last,
        &format!("{} (up, not started by pushwake)", by_hand[0]),
    );
    let status = w.setup.status();
    let open = status[0]["open_runs"].as_array().unwrap();
    assert_eq!(open.len(), 1, "the older run is closed: {status:#}");
    assert_eq!(open[0]["commit"], sha(3));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn skip_leaves_busy_machines_out_and_says_so() {
    let w = World::pushed(2, "on_busy = \"skip\"").await;
    w.once(0);
    w.push(3).await;
    w.once(0);
    w.ec2.stop(&w.ids).await;
    w.once(0);

    assert_eq!(w.starts(), [1, 1], "commit 3 never starts");
    assert_eq!(w.commits().await, [sha(2), sha(2)]);
    assert_eq!(w.setup.status()[0]["last_sha"], sha(3));
    let texts = w.texts().await;
    assert_eq!(texts.len(), 2);
    assert_contains(
        &texts[1],
        &format!("(busy with `{}`; on_busy = \"skip\")", short(2)),
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_partial_capacity_failure_never_restarts_a_finished_instance() {
    let w = World::new(3, "").await;
    // The third instance has no capacity for two passes: the batch and its own try, then
    // its own try again.
    w.proxy
        .refuse(
            "StartInstances",
            &w.ids[2],
            "InsufficientInstanceCapacity",
            Some(3),
        )
        .await;
    w.push_after_baseline(2).await;
    let out = w.once(1);
    assert_contains(&util::stderr(&out), "InsufficientInstanceCapacity");
    assert_eq!(w.setup.status()[0]["last_sha"], sha(1), "not handled yet");

    // The first instance finishes its run and shuts down before the next pass.
    w.ec2.stop(&w.ids[..1]).await;
    w.once(1);
    w.once(0);
    w.once(0);

    assert_eq!(
        w.starts(),
        [1, 1, 1],
        "StartInstances per instance for commit 2"
    );
    assert_eq!(w.states().await, ["stopped", "running", "running"]);
    assert_eq!(w.setup.status()[0]["last_sha"], sha(2));
    let texts = w.texts().await;
    assert_eq!(texts.len(), 2, "failing once, then started");
    assert_contains(
        &texts[0],
        &format!(
            "Failed, will retry: {} (StartInstances failed: InsufficientInstanceCapacity",
            w.ids[2]
        ),
    );
    assert_contains(&texts[1], &format!("Started: {}", util::sorted(&w.ids)));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_start_that_falls_back_to_stopped_is_reported_once_and_retried() {
    let w = World::new(2, "").await;
    w.proxy.fall_back_next_start(
        &w.ids[1],
        "Server.InsufficientInstanceCapacity",
        "Server.InsufficientInstanceCapacity: Insufficient capacity.",
    );
    w.push_after_baseline(2).await;
    w.once(0);
    assert_eq!(w.states().await, ["running", "stopped"]);

    // The next pass sees it stopped with EC2's reason, says so, and starts it again.
    w.once(0);
    w.once(0);

    assert_eq!(w.states().await, ["running", "running"]);
    assert_eq!(w.starts(), [1, 2]);
    // The run's thread: its parent, the parent updated, and the news as a reply.
    let calls = w.slack.calls().await;
    let methods: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        methods,
        ["chat.postMessage", "chat.update", "chat.postMessage"]
    );
    assert_eq!(calls[2].1.as_deref(), Some(util::PARENT_TS));
    assert_contains(
        &calls[2].3,
        &format!(
            "{} fell back to stopped after the start: Server.InsufficientInstanceCapacity: Insufficient capacity.",
            w.ids[1]
        ),
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_batch_refused_for_one_instance_starts_the_others() {
    let w = World::new(3, "").await;
    w.proxy
        .refuse("StartInstances", &w.ids[1], "VcpuLimitExceeded", None)
        .await;
    w.push_after_baseline(2).await;
    w.once(1);
    w.once(1);

    assert_eq!(w.starts(), [1, 0, 1]);
    assert_eq!(w.states().await, ["running", "stopped", "running"]);
    let texts = w.texts().await;
    assert_eq!(texts.len(), 1, "one message while it keeps failing");
    assert_contains(
        &texts[0],
        &format!("{} (StartInstances failed: VcpuLimitExceeded", w.ids[1]),
    );
    let status = w.setup.status();
    assert!(
        status[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("VcpuLimitExceeded"),
        "{status:#}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_instance_shared_by_two_watches_is_busy_for_the_other() {
    let w = World::new(3, "").await;
    let (shared, a, b) = (&w.ids[0], &w.ids[1], &w.ids[2]);
    w.write_watches(&[("main", &[shared, a]), ("dev", &[shared, b])]);
    w.github.set_head(util::REPO, "dev", &sha(11)).await;
    w.once(0);
    w.push(2).await;
    w.github.set_head(util::REPO, "dev", &sha(12)).await;
    w.once(0);

    let tags = w.ec2.tags(shared).await;
    assert_eq!(tags["pushwake:commit"], sha(2), "main came first");
    assert_eq!(w.ec2.tags(b).await["pushwake:commit"], sha(12));
    let texts = w.texts().await;
    let dev = texts.iter().find(|t| t.contains("`dev`")).unwrap();
    assert_contains(
        dev,
        &format!("{shared} (busy with `{}` of {}@main)", short(2), util::REPO),
    );

    // main's run on the shared machine ends: dev's commit runs there.
    w.ec2.stop(std::slice::from_ref(shared)).await;
    w.once(0);
    assert_eq!(w.ec2.tags(shared).await["pushwake:commit"], sha(12));
    assert_eq!(w.proxy.starts_of(shared), 2);
    assert_eq!(w.proxy.starts_of(a), 1);
    eprintln!("{:#?}", w.texts().await);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_crash_between_tag_and_start_starts_once() {
    let w = World::pushed(2, "").await;
    // EC2 takes the tags, then the agent dies while StartInstances is on the wire.
    wiremock::Mock::given(wiremock::matchers::body_string_contains(
        "Action=StartInstances",
    ))
    .respond_with(
        wiremock::ResponseTemplate::new(500).set_delay(std::time::Duration::from_secs(30)),
    )
    .up_to_n_times(1)
    .with_priority(1)
    .mount(&w.proxy.server)
    .await;
    let mut child = w.setup.command(&["--once"]).spawn().unwrap();
    for _ in 0..200 {
        if w.proxy.calls("StartInstances").await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.commits().await, [sha(2), sha(2)], "tagged");
    assert_eq!(w.states().await, ["stopped", "stopped"], "never started");

    w.once(0);
    w.once(0);

    assert_eq!(w.states().await, ["running", "running"]);
    assert_eq!(w.starts(), [1, 1]);
    assert_eq!(w.setup.status()[0]["last_sha"], sha(2));
    let texts = w.texts().await;
    assert_eq!(texts.len(), 1);
}
