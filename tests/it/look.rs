//! Where people look (SPEC §9): each run as a commit status on its commit.

use crate::util::{World, sha};

/// Each instance reports `accuracy`, as the training script would.
async fn report(w: &World, accuracy: &[f64]) {
    for (id, a) in w.ids.iter().zip(accuracy) {
        let a = a.to_string();
        w.ec2
            .tag(
                std::slice::from_ref(id),
                &[("pushwake:result:accuracy", &a)],
            )
            .await;
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_runs_whole_life_shows_on_its_commit() {
    let mut w = World::new(
        2,
        "results = { metrics = [\"accuracy\"], timeout = \"1h\" }",
    )
    .await;
    w.github.take_statuses().await;
    w.first_run_start();
    let config = std::fs::read_to_string(w.setup.config_path()).unwrap();
    w.setup.write_config(&config.replace(
        "token_env = \"GITHUB_TOKEN\"\n",
        "token_env = \"GITHUB_TOKEN\"\ncommit_status = true\n",
    ));
    w.extra.clear();

    w.once(0); // commit 1 starts
    w.once(0); // confirmed
    report(&w, &[0.90]).await;
    w.once(0);
    report(&w, &[0.90, 0.92]).await;
    w.once(0); // the verdict on commit 1
    w.push(2).await;
    w.once(0);
    w.once(0);
    report(&w, &[0.80, 0.81]).await;
    w.once(0); // worse beyond the noise

    let statuses = w.github.statuses().await;
    let said: Vec<(String, &str, &str)> = statuses
        .iter()
        .map(|(s, state, d, c)| {
            assert_eq!(c, "pushwake");
            (s[..7].to_owned(), state.as_str(), d.as_str())
        })
        .collect();
    assert_eq!(
        said,
        [
            ("0000001".into(), "pending", "2 of 2 machines started"),
            ("0000001".into(), "pending", "1 of 2 reported"),
            (
                "0000001".into(),
                "success",
                "accuracy 0.9100 ± 0.0141 (n=2), nothing to compare"
            ),
            ("0000002".into(), "pending", "2 of 2 machines started"),
            ("0000002".into(), "failure", said.last().unwrap().2),
        ],
        "{statuses:#?}"
    );
    assert!(
        said.last()
            .unwrap()
            .2
            .starts_with("accuracy 0.8050 ± 0.0071: worse beyond the noise (p = 0.0"),
        "{said:#?}"
    );
    assert_eq!(statuses[0].0, sha(1));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn without_commit_status_no_status_is_set() {
    let w = World::new(1, "").await;
    w.github.take_statuses().await;
    w.first_run_start();
    w.once(0);
    w.once(0);
    assert!(w.github.statuses().await.is_empty());
}
