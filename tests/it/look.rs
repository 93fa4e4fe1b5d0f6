//! Where people look (SPEC §9): each run as a commit status on its commit, and in one
//! Slack thread.

use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::util::{self, PARENT_TS, World, sha};

/// A watch whose runs report `accuracy`.
const RESULTS: &str = "results = { metrics = [\"accuracy\"], timeout = \"1h\" }";

/// The `[github]` token, and commit statuses on.
const STATUSES: &str = "token_env = \"GITHUB_TOKEN\"\ncommit_status = true";

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
    let mut w = World::new(2, RESULTS).await;
    w.github.take_statuses().await;
    w.first_run_start();
    w.github_keys(STATUSES);
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

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_run_lives_in_one_slack_thread_across_restarts() {
    let w = World::new(2, RESULTS).await;
    // No capacity for the second machine at first: the batch and its own try.
    w.proxy
        .refuse(
            "StartInstances",
            &w.ids[1],
            "InsufficientInstanceCapacity",
            Some(2),
        )
        .await;
    w.first_run_start();

    // Every pass is a process of its own: the thread lives in the state.
    w.once(1);
    w.once(0);
    report(&w, &[0.90, 0.92]).await;
    w.once(0);

    let calls = w.slack.calls().await;
    let parents: Vec<_> = calls
        .iter()
        .filter(|c| c.0 == "chat.postMessage" && c.1.is_none())
        .collect();
    assert_eq!(parents.len(), 1, "one parent: {calls:#?}");
    util::assert_contains(&parents[0].3, "Failed, will retry");
    assert_eq!(calls[0].0, "chat.postMessage", "the parent comes first");
    let updates: Vec<_> = calls.iter().filter(|c| c.0 == "chat.update").collect();
    assert!(!updates.is_empty(), "{calls:#?}");
    util::assert_contains(&updates[0].3, &format!("Started: {}", util::sorted(&w.ids)));
    let replies: Vec<_> = calls
        .iter()
        .filter(|c| c.1.as_deref() == Some(PARENT_TS))
        .collect();
    let stops = replies
        .iter()
        .filter(|c| c.3.contains("stopped i-"))
        .count();
    assert_eq!(stops, 2, "each stop a reply: {calls:#?}");
    let verdicts: Vec<_> = replies
        .iter()
        .filter(|c| c.3.contains("results for"))
        .collect();
    assert_eq!(verdicts.len(), 1, "{calls:#?}");
    assert!(verdicts[0].2, "the verdict also goes to the channel");
    let status = w.status();
    assert!(status[0]["open_runs"].as_array().unwrap().is_empty());
}

/// What the fakes received since `seen`, one line per request, for the record.
async fn since(w: &World, seen: &mut (usize, usize)) -> Vec<String> {
    let gh = w.github.server.received_requests().await.unwrap();
    let sl = w.slack.server.received_requests().await.unwrap();
    let mut lines = Vec::new();
    for r in &gh[seen.0..] {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let said = match body["state"].as_str() {
            Some(state) => format!(" {state}: {}", body["description"].as_str().unwrap()),
            None => String::new(),
        };
        lines.push(format!("GitHub {} {}{said}", r.method, r.url.path()));
    }
    for r in &sl[seen.1..] {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let first = body["text"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("");
        let thread = match (
            body["thread_ts"].as_str(),
            body["reply_broadcast"].as_bool(),
        ) {
            (Some(ts), Some(true)) => format!(" (reply in {ts}, also to the channel)"),
            (Some(ts), _) => format!(" (reply in {ts})"),
            _ => String::new(),
        };
        lines.push(format!("Slack {}{thread}: {first}", r.url.path()));
    }
    *seen = (gh.len(), sl.len());
    lines
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn one_push_on_two_machines_from_the_first_status_to_the_verdict() {
    let w = World::new(2, RESULTS).await;
    w.github.take_statuses().await;
    w.github_keys(STATUSES);
    w.baseline().await;
    let mut seen = (0, 0);
    since(&w, &mut seen).await;

    w.push(2).await;
    let mut record = Vec::new();
    for pass in 1..=4 {
        match pass {
            3 => report(&w, &[0.93]).await,
            4 => report(&w, &[0.93, 0.95]).await,
            _ => {}
        }
        w.once(0);
        for line in since(&w, &mut seen).await {
            record.push(format!("pass {pass}: {line}"));
        }
    }

    eprintln!("{}", record.join("\n"));
    let statuses: Vec<&String> = record.iter().filter(|l| l.contains("/statuses/")).collect();
    assert_eq!(statuses.len(), 3, "{record:#?}");
    assert!(statuses[0].contains("pending: 2 of 2 machines started"));
    assert!(statuses[1].contains("pending: 1 of 2 reported"));
    assert!(
        statuses[2].contains("success: accuracy 0.9400"),
        "{record:#?}"
    );
    let updates = record.iter().filter(|l| l.contains("chat.update")).count();
    assert_eq!(updates, 2, "a result, then the last: {record:#?}");
    let verdict = record
        .iter()
        .position(|l| l.contains("results for"))
        .unwrap();
    assert!(
        record[verdict].contains("also to the channel"),
        "{record:#?}"
    );
    let parent = record
        .iter()
        .position(|l| l.contains("chat.postMessage: *octo/trainer*"))
        .unwrap();
    assert!(parent < verdict);
    assert_eq!(w.starts(), [1, 1]);
}

/// A world of one instance whose first pass starts it, with commit statuses on, and
/// GitHub answering the first status with `refusal`.
async fn refused_once(refusal: ResponseTemplate) -> World {
    let w = World::new(1, "").await;
    w.github.take_statuses().await;
    Mock::given(method("POST"))
        .and(path_regex("/statuses/"))
        .respond_with(refusal)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.github.server)
        .await;
    w.first_run_start();
    w.github_keys(STATUSES);
    w
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_status_github_cannot_take_yet_is_owed_and_blocks_nothing() {
    // A rate limit that asks for two minutes: more than a pass waits.
    let w = refused_once(
        util::error(429, "API rate limit exceeded").insert_header("retry-after", "120"),
    )
    .await;

    w.once(0);
    assert_eq!(w.states().await, ["running"], "the start went ahead");
    assert_eq!(w.status()[0]["duties"][0]["duty"], "status", "owed");
    w.once(0);

    let statuses = w.github.statuses().await;
    assert_eq!(statuses.len(), 2, "refused, then retried: {statuses:#?}");
    assert_eq!(statuses[1].1, "success");
    assert_eq!(statuses[1].2, "1 of 1 machines started");
    assert!(w.status()[0]["duties"].as_array().unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_status_github_refuses_for_good_is_dropped_and_said() {
    let w = refused_once(util::error(
        403,
        "Resource not accessible by personal access token",
    ))
    .await;

    let out = w.once(0);
    w.once(0);

    assert_eq!(w.states().await, ["running"]);
    assert_eq!(w.github.statuses().await.len(), 1, "not asked again");
    util::assert_contains(&util::stderr(&out), "will not try again");
    assert!(w.status()[0]["duties"].as_array().unwrap().is_empty());
}
