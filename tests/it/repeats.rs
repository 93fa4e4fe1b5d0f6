//! Repeats, not machines (SPEC §10): a run of N repeats on a pool of stopped machines,
//! each machine serving several in turn, each repeat run once, even across a lost save.

use crate::util::{Setup, World, stderr};

/// `first_run = "start"` with `main` at commit 1, a watch of `n` stopped machines with
/// `repeats` and one metric: the next pass starts them.
async fn repeating(n: i32, repeats: u32) -> World {
    let extra =
        format!("repeats = {repeats}\nresults = {{ metrics = [\"accuracy\"], timeout = \"1h\" }}");
    let w = World::new(n, &extra).await;
    w.first_run_start();
    w
}

/// The `pushwake:repeat` of each machine, in order.
async fn repeats_on(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for id in &w.ids {
        let tags = w.ec2.tags(id).await;
        out.push(tags.get("pushwake:repeat").cloned().unwrap_or_default());
    }
    out
}

/// Each machine reports `accuracy`, as the job would: `base` plus its repeat / 100.
async fn report_repeats(w: &World, base: f64) {
    for (i, k) in repeats_on(w).await.iter().enumerate() {
        let v = (base + k.parse::<f64>().unwrap() / 100.0).to_string();
        w.ec2
            .tag(&w.ids[i..=i], &[("pushwake:result:accuracy", v.as_str())])
            .await;
    }
}

/// Passes until every machine runs, at most `passes`.
async fn until_running(w: &World, passes: usize) {
    for _ in 0..passes {
        if w.states().await.iter().all(|s| s == "running") {
            return;
        }
        w.once(0);
    }
    assert_eq!(w.states().await, ["running"; 2]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn four_repeats_on_a_pool_of_two_start_each_machine_twice() {
    let w = repeating(2, 4).await;

    w.once(0);
    assert_eq!(w.states().await, ["running"; 2]);
    assert_eq!(repeats_on(&w).await, ["1", "2"]);
    assert_eq!(w.starts(), [1, 1]);

    // Repeats 1 and 2 report; their machines are stopped, then started for 3 and 4, their
    // numbers emptied first.
    report_repeats(&w, 0.9).await;
    w.once(0);
    until_running(&w, 3).await;
    assert_eq!(repeats_on(&w).await, ["3", "4"]);
    assert_eq!(w.starts(), [2, 2]);
    assert_eq!(w.ec2.tags(&w.ids[0]).await["pushwake:result:accuracy"], "");
    let out = w.run(&["status"]);
    let table = crate::util::stdout(&out);
    assert!(
        table.contains("repeats 2 done, 2 running, 0 waiting, of 4"),
        "{table}"
    );
    assert!(
        !w.texts().await.iter().any(|t| t.contains("results for")),
        "no verdict before every repeat reported"
    );

    report_repeats(&w, 0.9).await;
    w.once(0);
    assert_eq!(w.states().await, ["stopped"; 2], "stop_when_reported");
    let texts = w.texts().await;
    let verdict = texts.iter().find(|t| t.contains("results for")).unwrap();
    // 0.91, 0.92, 0.93, 0.94.
    assert!(verdict.contains("accuracy: n=4, 0.9250"), "{verdict}");
    assert!(!verdict.contains("partial"), "{verdict}");

    // The run is over: nothing starts again.
    w.once(0);
    w.once(0);
    assert_eq!(w.starts(), [2, 2]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_save_lost_after_the_second_starts_never_runs_a_repeat_twice() {
    let w = repeating(2, 4).await;
    w.once(0);
    report_repeats(&w, 0.5).await;
    w.once(0);
    // The state as it was before the machines were started for 3 and 4: as if the agent
    // had died after the starts, before its save.
    let path = w.setup.state_dir().join("state.json");
    let before = std::fs::read(&path).unwrap();
    until_running(&w, 3).await;
    assert_eq!(w.starts(), [2, 2]);
    std::fs::write(&path, before).unwrap();

    w.once(0);
    w.once(0);
    assert_eq!(w.starts(), [2, 2], "a repeat was run twice");
    assert_eq!(repeats_on(&w).await, ["3", "4"]);
    report_repeats(&w, 0.5).await;
    w.once(0);
    let texts = w.texts().await;
    let verdict = texts.iter().find(|t| t.contains("results for")).unwrap();
    assert!(verdict.contains("accuracy: n=4"), "{verdict}");
}

#[test]
fn repeats_are_checked_without_quoting_the_value() {
    for bad in ["0", "1001", "-3"] {
        let setup = Setup::new();
        setup.write_config(&format!(
            "[github]\napi_url = \"http://127.0.0.1:9\"\n\n[[watch]]\nrepo = \"octo/repo\"\n\
             branch = \"main\"\ninstances = [\"i-0123456789abcdef0\"]\nrepeats = {bad}\n"
        ));
        let out = setup.run(&["check"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad} accepted: {err}");
        for needle in ["watch[0].repeats", "line 8", "from 1 to 1000"] {
            assert!(err.contains(needle), "no {needle:?} in {err}");
        }
        // ("0" is a digit of the bound itself.)
        assert!(
            bad.len() < 2 || !err.contains(bad),
            "{bad} was echoed: {err}"
        );
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn repeats_past_the_pool_run_without_results_too() {
    // No results to wait for: a repeat is done when its machine stopped (here, the job
    // shuts it down). The run stays open until every repeat was given.
    let w = World::new(2, "repeats = 4").await;
    w.first_run_start();
    w.once(0);
    w.once(0);
    assert_eq!(repeats_on(&w).await, ["1", "2"]);
    w.ec2.stop(&w.ids).await;

    w.once(0);

    assert_eq!(
        w.states().await,
        ["running"; 2],
        "started for repeats 3 and 4"
    );
    assert_eq!(repeats_on(&w).await, ["3", "4"]);
    assert_eq!(w.starts(), [2, 2]);
    w.ec2.stop(&w.ids).await;
    w.once(0);
    w.once(0);
    assert_eq!(w.starts(), [2, 2], "no fifth repeat");
}
