//! Top-up rounds (SPEC §11): a look that is not settled starts another round for the
//! commit and, while it has fewer runs, its baseline, until a settled verdict names its
//! look; a newer push ends the rounds.

use crate::util::{World, sha};

/// `first_run = "start"` with `main` at commit 1, a watch of two stopped machines, two
/// repeats a round and `max_repeats` a side: the next pass starts the baseline's run.
async fn topping_up(max_repeats: u32) -> World {
    let extra = format!(
        "repeats = 2\nresults = {{ metrics = [\"accuracy\"], timeout = \"1h\", \
         max_repeats = {max_repeats} }}"
    );
    let w = World::new(2, &extra).await;
    w.first_run_start();
    w
}

/// Each running machine reports `accuracy` for the commit it runs: `base` for commit 1,
/// `change` for commit 2, plus its repeat / 1000 (so that the runs have a spread).
async fn report_running(w: &World, base: f64, change: f64) -> usize {
    let mut reported = 0;
    for (id, state) in w.ids.iter().zip(w.states().await) {
        let tags = w.ec2.tags(id).await;
        let done = tags
            .get("pushwake:result:accuracy")
            .is_some_and(|v| !v.is_empty());
        if state != "running" || done {
            continue;
        }
        let k: f64 = tags["pushwake:repeat"].parse().unwrap();
        let v = if tags["pushwake:commit"] == sha(1) {
            base
        } else {
            change
        } + k / 1000.0;
        let value = v.to_string();
        w.ec2
            .tag(
                std::slice::from_ref(id),
                &[("pushwake:result:accuracy", value.as_str())],
            )
            .await;
        reported += 1;
    }
    reported
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_unsettled_look_tops_up_the_commit_and_its_baseline_until_a_settled_verdict() {
    let w = topping_up(6).await;
    // The baseline's first round.
    w.once(0);
    report_running(&w, 0.90, 0.904).await;
    w.once(0);
    // The change's first round, then rounds until the verdict.
    w.push(2).await;
    let mut verdict = None;
    let mut baseline_topped_up = false;
    for _ in 0..16 {
        w.once(0);
        if w.commits().await.contains(&sha(1)) && w.states().await.contains(&"running".into()) {
            baseline_topped_up = true;
        }
        report_running(&w, 0.90, 0.904).await;
        verdict = w
            .texts()
            .await
            .into_iter()
            .find(|t| t.contains("results for `0000002`"));
        if verdict.is_some() {
            break;
        }
    }
    let verdict = verdict.expect("a verdict within 16 passes");
    let texts = w.texts().await;
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("Look 1 of ") && t.contains("not settled")),
        "{texts:#?}"
    );
    assert!(baseline_topped_up, "the baseline ran another round");
    assert!(verdict.contains("better beyond the noise"), "{verdict}");
    assert!(verdict.contains("look "), "names its look: {verdict}");
    // The results table carries the verdict, the difference and its interval.
    let out = w.run(&["results", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["commit"] == sha(2))
        .unwrap();
    assert_eq!(row["verdict"], "better", "{row}");
    assert!(
        row["ci"].as_array().is_some_and(|ci| ci.len() == 2),
        "{row}"
    );
    assert!(row["look"].is_array(), "{row}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_newer_push_ends_the_rounds_and_the_older_verdict_is_posted_as_it_stands() {
    let w = topping_up(8).await;
    w.once(0);
    report_running(&w, 0.90, 0.905).await;
    w.once(0);
    w.push(2).await;
    w.once(0);
    report_running(&w, 0.90, 0.905).await;
    w.once(0);
    let texts = w.texts().await;
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("Look 1 of ") && t.contains("not settled")),
        "{texts:#?}"
    );

    // Commit 3 arrives while commit 2 tops up: commit 2's round ends, no more.
    let before = texts.len();
    w.push(3).await;
    report_running(&w, 0.90, 0.905).await;
    w.once(0);
    let texts = w.texts().await;
    let since = &texts[before..];
    let verdict = since
        .iter()
        .position(|t| t.contains("results for `0000002`"))
        .unwrap_or_else(|| panic!("{since:#?}"));
    assert!(
        since[verdict].contains("no further round: a newer push took the machines")
            || since[verdict].contains("within the noise"),
        "{}",
        since[verdict]
    );
    assert!(
        !since[..verdict].iter().any(|t| t.starts_with("Look ")),
        "no further round for commit 2: {since:#?}"
    );
}
