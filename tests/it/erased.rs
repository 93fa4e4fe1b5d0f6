//! Nothing a move, a crash or a lost record can erase (SPEC §5, §6): who owns a machine and
//! what it ran live on the machine, so a new hostname, a full disk, a killed agent or an
//! edited config leave every machine looked after. Each story through the binary on moto,
//! behind the counting proxy; the namespaces (a hostname, a full filesystem) need root.

use std::time::Duration;

use chrono::Duration as Span;

use crate::util::{self, REPO, World, assert_contains, sha, watch};

/// Passes on the machine named `host` until `done` holds; panics after `limit` passes.
async fn passes_as<F, Fut>(w: &World, host: &str, limit: usize, done: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for n in 1..=limit {
        let _ = w.setup.command_as(host, &["--once"]).output();
        if done().await {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("not done after {limit} passes");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_new_hostname_with_the_same_state_keeps_its_machines() {
    let project = format!("erased-host-{}", std::process::id());
    let mut w = World::new(0, "").await;
    w.extra = format!("instance_tags = {{ Project = \"{project}\" }}\nmax_runtime = \"2s\"");
    let picked = w.stopped(2).await;
    w.ec2.tag(&picked, &[("Project", &project)]).await;
    w.write_config(&w.watch());
    w.push(1).await;
    w.setup.once_as("master-a", 0);
    w.push(2).await;
    w.setup.once_as("master-a", 0);
    assert_eq!(w.ec2.states(&picked).await, ["running", "running"]);

    // The master is replaced (a new VM, a recreated container): same state, new name. Its
    // stop rules still hold for the machines the old name started...
    let started = std::time::Instant::now();
    passes_as(&w, "master-b", 40, || async {
        w.ec2.states(&picked).await == ["stopped", "stopped"]
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let texts = w.texts().await;
    assert_eq!(
        util::count(&texts, "max_runtime 2s reached"),
        2,
        "{texts:#?}"
    );

    // ...and the machines its tags select are its own to start for the next push.
    w.push(3).await;
    w.setup.once_as("master-b", 0);
    assert_eq!(w.ec2.states(&picked).await, ["running", "running"]);
    for id in &picked {
        assert_eq!(w.ec2.tags(id).await["pushwake:commit"], sha(3));
        assert_eq!(w.proxy.starts_of(id), 2);
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn machines_of_the_older_host_dir_owner_are_adopted() {
    let w = World::mixed(0, 1, "max_runtime = \"5m\"").await;
    w.started_ago(&w.ids, Span::minutes(10)).await;
    // Tagged by a version before `deployment`: the owner was the host and state directory.
    let owner = format!("old-master:{}", w.setup.state_dir().display());
    w.ec2.tag(&w.ids, &[("pushwake:owner", &owner)]).await;
    // A machine another deployment started is never adopted.
    let theirs = w.stopped(1).await;
    w.ec2.start(&theirs).await;
    let then =
        chrono::DateTime::from_timestamp((chrono::Utc::now() - Span::minutes(10)).timestamp(), 0)
            .unwrap();
    w.proxy.set_launched(&theirs[0], then);
    let ten_minutes_ago = then.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    w.ec2
        .tag(
            &theirs,
            &[
                ("pushwake:commit", &sha(1)),
                ("pushwake:repo", REPO),
                ("pushwake:branch", "main"),
                ("pushwake:owner", "team-b"),
                ("pushwake:started-at", &ten_minutes_ago),
            ],
        )
        .await;
    let mut ids = w.ids.clone();
    ids.extend(theirs.clone());
    w.write_config(&format!(
        "{}max_runtime = \"5m\"\n",
        watch(REPO, "main", &ids)
    ));
    w.push(1).await;

    w.setup.once_as("old-master", 0);

    assert_eq!(w.states().await, ["stopped"]);
    assert_eq!(w.ec2.states(&theirs).await, ["running"]);
    let record = std::fs::read_to_string(w.setup.state_dir().join("deployment.json")).unwrap();
    assert_contains(&record, &owner);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_full_disk_still_stops_a_machine_past_max_runtime() {
    let w = World::mixed(0, 1, "max_runtime = \"5m\"").await;
    w.baseline().await;
    w.started_ago(&w.ids, Span::minutes(10)).await;
    w.push(2).await;
    let state = w.setup.state_dir();
    let before = std::fs::read(state.join("state.json")).unwrap();
    // The state directory on a filesystem that is full: the state can be read, not written.
    let saved = w.setup.dir.path().join("saved");
    let script = format!(
        "cp -a {dir} {saved} && mount -t tmpfs -o size=256k tmpfs {dir} && cp -a {saved}/. {dir}/ \
         && (cat /dev/zero > {dir}/fill 2>/dev/null; true) && exec \"$@\"",
        dir = state.display(),
        saved = saved.display()
    );
    let out = w
        .setup
        .command_in(&["--mount"], &script, &["--once"])
        .output()
        .unwrap();

    let err = util::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_contains(&err, "No space left on device");
    assert_contains(&err, "applying the stop rules only");
    assert_eq!(w.states().await, ["stopped"], "{err}");
    assert_eq!(w.proxy.calls("StartInstances").await, 0);
    assert_eq!(std::fs::read(state.join("state.json")).unwrap(), before);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_kill_while_the_start_is_answered_never_starts_the_finished_job_again() {
    let w = World::pushed(2, "").await;
    // EC2 starts them; the answer is held back, and the agent is killed meanwhile.
    w.proxy
        .delay_next_answer("StartInstances", Duration::from_secs(30));
    let mut child = w.setup.command(&["--once"]).spawn().unwrap();
    util::until(Duration::from_secs(10), "the start reached EC2", || async {
        w.starts() == [1, 1]
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.states().await, ["running", "running"]);
    // The jobs finish and shut their machines down before any pass looks.
    w.ec2.stop(&w.ids).await;

    w.once(0);
    w.once(0);

    assert_eq!(w.starts(), [1, 1], "no second start");
    assert_eq!(w.states().await, ["stopped", "stopped"]);
    let status = w.setup.status();
    assert_eq!(status[0]["last_sha"], sha(2), "{status:#}");
    let texts = w.texts().await;
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert_contains(&texts[0], &format!("Started: {}", util::sorted(&w.ids)));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_dropped_id_and_a_removed_watch_in_another_region_are_stopped_as_orphans() {
    let w = World::new(2, "").await;
    let there = util::Ec2::in_region(&util::moto_url(), "eu-west-1").await;
    let far = there.stopped(1).await;
    w.proxy
        .set_launched(&far[0], chrono::Utc::now() - Span::hours(1));
    w.github.set_head(REPO, "dev", &sha(1)).await;
    w.push(1).await;
    let far_watch = format!("{}region = \"eu-west-1\"\n", watch(REPO, "dev", &far));
    let top = "first_run = \"start\"\nmax_runtime = \"2s\"";
    w.write_config_with(top, &format!("{}{far_watch}", watch(REPO, "main", &w.ids)));
    w.once(0);
    assert_eq!(there.states(&far).await, ["running"]);
    assert_eq!(w.states().await, ["running", "running"]);

    // Before any pass confirmed the starts, one id leaves its watch and the other watch,
    // with its region, leaves the config.
    let (kept, dropped) = (&w.ids[..1], &w.ids[1]);
    w.write_config_with(top, &watch(REPO, "main", kept));
    let took = w
        .passes_until(Duration::from_secs(15), || async {
            there.states(&far).await == ["stopped"]
                && w.ec2.states(std::slice::from_ref(dropped)).await == ["stopped"]
        })
        .await;

    assert!(took < Duration::from_secs(8), "{took:?}");
    let texts = w.texts().await;
    for id in [dropped, &far[0]] {
        let stop = format!("stopped {id} (");
        assert_eq!(util::count(&texts, &stop), 1, "{texts:#?}");
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_result_after_the_timeout_stops_its_machine() {
    let w = World::pushed(
        1,
        "results = { metrics = [\"accuracy\"], timeout = \"1s\" }",
    )
    .await;
    w.once(0);
    w.passes_until(Duration::from_secs(10), || async {
        util::count(&w.texts().await, "results for") == 1
    })
    .await;
    assert_eq!(w.states().await, ["running"], "no result, no stop");

    // The job reports late: the run is closed, its machine is stopped all the same.
    w.ec2
        .tag(&w.ids, &[("pushwake:result:accuracy", "0.91")])
        .await;
    w.once(0);

    assert_eq!(w.states().await, ["stopped"]);
    assert_eq!(util::count(&w.texts().await, "reported every result"), 1);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_owed_stop_is_dropped_once_a_person_started_the_machine_again() {
    let w = World::mixed(0, 1, "max_runtime = \"5m\"").await;
    w.started_ago(&w.ids, Span::minutes(10)).await;
    w.push(1).await;
    w.proxy
        .refuse("StopInstances", &w.ids[0], "UnauthorizedOperation", Some(1))
        .await;
    w.once(1);
    assert_eq!(w.setup.status()[0]["duties"].as_array().unwrap().len(), 1);

    // Meanwhile a person stops it and starts it again: a new launch, their own.
    w.ec2.stop(&w.ids).await;
    w.ec2.start(&w.ids).await;
    w.proxy.set_launched(&w.ids[0], chrono::Utc::now());
    w.once(0);

    assert_eq!(w.states().await, ["running"]);
    assert_eq!(w.setup.status()[0]["duties"], serde_json::json!([]));
}
