//! Where people look (SPEC §9): each run as a commit status on its commit, and in one
//! Slack thread.

use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::util::{self, NEW_PARENT_TS, PARENT_TS, World, sha};

/// A watch whose runs report `accuracy`.
const RESULTS: &str = "results = { metrics = [\"accuracy\"], timeout = \"1h\" }";

/// The `[github]` token, and commit statuses on.
const STATUSES: &str = "token_env = \"GITHUB_TOKEN\"\ncommit_status = true";

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
    w.report_accuracy(&[0.90]).await;
    w.once(0);
    w.report_accuracy(&[0.90, 0.92]).await;
    w.once(0); // the verdict on commit 1
    w.push(2).await;
    w.once(0);
    w.once(0);
    w.report_accuracy(&[0.80, 0.81]).await;
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
            .starts_with("accuracy 0.8050 ± 0.0071: worse, -0.1050 ["),
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
    w.report_accuracy(&[0.90, 0.92]).await;
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
            3 => w.report_accuracy(&[0.93]).await,
            4 => w.report_accuracy(&[0.93, 0.95]).await,
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

/// The bot's calls from `from` on, one line each: `post: TEXT`, `reply in TS: TEXT`,
/// `update TS: TEXT`, each text's first and last line.
async fn said(w: &World, from: usize) -> Vec<String> {
    let calls = w.slack.chat_bodies().await;
    let lines: Vec<String> = calls[from..]
        .iter()
        .map(|(m, body)| {
            let text = body["text"].as_str().unwrap_or_default();
            let (first, last) = (text.lines().next(), text.lines().last());
            let text = format!("{} / {}", first.unwrap_or(""), last.unwrap_or(""));
            match (m.as_str(), body["thread_ts"].as_str(), body["ts"].as_str()) {
                ("chat.update", _, Some(ts)) => format!("update {ts}: {text}"),
                (_, Some(ts), _) => format!("reply in {ts}: {text}"),
                _ => format!("post: {text}"),
            }
        })
        .collect();
    eprintln!("{lines:#?}");
    lines
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_failed_save_keeps_the_run_s_first_message() {
    let w = World::new(1, "").await;
    let bucket = util::bucket(&util::moto_url()).await;
    w.write_config_with(&format!("state_url = \"s3://{bucket}/look\""), &w.watch());
    w.baseline().await;
    w.push(2).await;
    // The run opens and is saved, the watch's turn saves the place it starts machines in,
    // and the save after its start is refused.
    w.proxy.refuse_state_put(3).await;

    let out = w.once(1);
    util::assert_contains(&util::stderr(&out), "cannot write the shared state");
    assert_eq!(w.starts(), [1], "started before the save failed");
    assert!(
        said(&w, 0).await.is_empty(),
        "nothing told of an unrecorded change"
    );
    w.once(0);
    w.once(0);

    let said = said(&w, 0).await;
    assert_eq!(said.len(), 1, "one first message, once");
    util::assert_contains(
        &said[0],
        &format!(
            "moved to <https://github.com/octo/trainer/commit/{}",
            sha(2)
        ),
    );
    util::assert_contains(&said[0], &format!("Started: {}", w.ids[0]));
    assert_eq!(w.starts(), [1]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn messages_owed_while_slack_is_down_come_once_in_order_after() {
    let w = World::new(2, RESULTS).await;
    let down = w.slack.take_down().await;
    w.first_run_start();

    w.once(0); // started
    w.once(0); // confirmed: nothing to say
    w.report_accuracy(&[0.90]).await;
    w.once(0); // one reported, and stopped
    w.report_accuracy(&[0.90, 0.92]).await;
    w.once(0); // the other, and the verdict
    let owed = w.status()[0]["duties"].as_array().unwrap().clone();
    let says = owed.iter().filter(|d| d["duty"] == "say").count();
    assert_eq!(
        says, 5,
        "a first message, two updates, two stops: {owed:#?}"
    );
    assert!(owed.iter().any(|d| d["duty"] == "post"), "and the verdict");
    let tried = w.slack.chat_bodies().await.len();
    // Each pass tries the oldest message only (four attempts), the rest waiting behind it.
    assert_eq!(tried, 4 * 4);

    down.store(false, std::sync::atomic::Ordering::SeqCst);
    w.once(0);
    w.once(0);

    let said = said(&w, tried).await;
    let stop = |i: usize| {
        format!(
            "reply in {PARENT_TS}: :octagonal_sign: *octo/trainer* `main`: stopped {}",
            w.ids[i]
        )
    };
    let update = format!(
        "update {PARENT_TS}: *octo/trainer* `main` run of `{}`",
        util::short(1)
    );
    assert_eq!(
        said.len(),
        6,
        "each once, in the order they arose, then nothing more"
    );
    util::assert_contains(&said[0], "post: *octo/trainer* `main` moved to");
    util::assert_contains(&said[0], "Reported: 0 of 2");
    util::assert_contains(&said[1], &stop(0));
    util::assert_contains(&said[2], &update);
    util::assert_contains(&said[2], "Reported: 1 of 2");
    util::assert_contains(&said[3], &stop(1));
    util::assert_contains(&said[4], &update);
    util::assert_contains(&said[4], "Reported: 2 of 2");
    util::assert_contains(&said[5], &format!("reply in {PARENT_TS}: :bar_chart:"));
    assert!(w.status()[0]["duties"].as_array().unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_parent_slack_will_not_update_gets_the_news_as_replies() {
    let w = World::new(2, RESULTS).await;
    w.first_run_start();
    w.once(0);
    w.once(0);
    let from = w.slack.chat_bodies().await.len();
    w.slack.refuse_updates("edit_window_closed").await;

    w.report_accuracy(&[0.90]).await;
    w.once(0);
    w.report_accuracy(&[0.90, 0.92]).await;
    w.once(0);
    w.once(0);

    let said = said(&w, from).await;
    let refused = said.iter().filter(|l| l.starts_with("update ")).count();
    assert_eq!(refused, 2, "each update tried once: {said:#?}");
    for reported in ["Reported: 1 of 2", "Reported: 2 of 2"] {
        let i = said.iter().position(|l| l.contains(reported)).unwrap();
        assert!(said[i].starts_with("update "), "{said:#?}");
        let reply = &said[i + 1];
        util::assert_contains(
            reply,
            &format!("reply in {PARENT_TS}: *octo/trainer* `main` run of"),
        );
        util::assert_contains(reply, reported);
    }
    util::assert_contains(
        said.last().unwrap(),
        &format!("reply in {PARENT_TS}: :bar_chart:"),
    );
    assert_eq!(
        said.len(),
        7,
        "two stops, two updates and their replies, the verdict"
    );
    assert!(w.status()[0]["duties"].as_array().unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_deleted_parent_gets_a_new_one_and_later_news_goes_there() {
    let w = World::new(2, RESULTS).await;
    w.first_run_start();
    w.once(0);
    w.once(0);
    let from = w.slack.chat_bodies().await.len();
    w.slack.delete_parent().await;

    w.report_accuracy(&[0.90]).await;
    w.once(0);
    w.report_accuracy(&[0.90, 0.92]).await;
    w.once(0);
    w.once(0);

    let said = said(&w, from).await;
    let new_parents: Vec<&String> = said
        .iter()
        .filter(|l| l.starts_with("post: *octo/trainer*"))
        .collect();
    assert_eq!(new_parents.len(), 1, "started again once: {said:#?}");
    util::assert_contains(new_parents[0], "Reported: 1 of 2");
    let new = said.iter().position(|l| l == new_parents[0]).unwrap();
    let after = &said[new + 1..];
    assert!(
        after.iter().all(|l| l.contains(NEW_PARENT_TS)),
        "later news in the new thread: {said:#?}"
    );
    assert!(
        after
            .iter()
            .any(|l| l.starts_with(&format!("update {NEW_PARENT_TS}:"))
                && l.contains("Reported: 2 of 2"))
    );
    util::assert_contains(
        after.last().unwrap(),
        &format!("reply in {NEW_PARENT_TS}: :bar_chart:"),
    );
    assert_eq!(w.status()[0]["duties"].as_array().unwrap().len(), 0);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_save_failing_after_a_watch_s_turn_keeps_the_messages_it_saved() {
    let w = World::new(2, "").await;
    let bucket = util::bucket(&util::moto_url()).await;
    w.github.set_head(util::REPO, "dev", &sha(1)).await;
    let watches = [("main", &w.ids[0]), ("dev", &w.ids[1])]
        .map(|(branch, id)| util::watch(util::REPO, branch, std::slice::from_ref(id)))
        .concat();
    w.write_config_with(&format!("state_url = \"s3://{bucket}/look\""), &watches);
    w.once(0); // baselines
    w.push(2).await;
    w.github.set_head(util::REPO, "dev", &sha(3)).await;
    // Both runs open and are saved; `main`'s turn saves the place, then its message; `dev`'s
    // is refused.
    w.proxy.refuse_state_put(4).await;

    w.once(1);
    assert_eq!(w.starts(), [1, 1]);
    w.once(0);
    w.once(0);

    let said = said(&w, 0).await;
    assert_eq!(said.len(), 2, "one first message a run, once");
    for (branch, n) in [("main", 2), ("dev", 3)] {
        let first = format!("post: *octo/trainer* `{branch}` moved to");
        let line = said.iter().find(|l| l.starts_with(&first)).unwrap();
        util::assert_contains(line, &format!("`{}`", util::short(n)));
    }
}
