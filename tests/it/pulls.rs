//! The verdict on the pull request (SPEC §13): one comment per open pull request whose
//! head is the run's commit, made once and edited in place as the run moves; a check run
//! when signed in as an App. Against the stateful fake of `util/pulls.rs`.

use std::time::Instant;

use crate::util::{self, PULLS_LOGIN, PullsFake, World, sha};

/// A watch whose runs report `accuracy`.
const RESULTS: &str = "results = { metrics = [\"accuracy\"], timeout = \"1h\" }";

/// The `[github]` token, and comments on pull requests on.
const COMMENTS: &str = "token_env = \"GITHUB_TOKEN\"\npull_request_comment = true";

/// Commit 1 run to its verdict, then commit 2 pushed: the world of a pull request.
async fn baseline_then_push(w: &World) {
    w.once(0); // commit 1 starts
    w.once(0);
    w.report_accuracy(&[0.90, 0.92]).await;
    w.once(0); // its verdict
    w.push(2).await;
}

/// A pass, and the comment writes (POST, PATCH) it made.
fn pass(w: &World, pulls: &PullsFake) -> (usize, usize) {
    let (posts, patches) = (
        pulls.count("POST", "/comments"),
        pulls.count("PATCH", "/comments/"),
    );
    w.once(0);
    (
        pulls.count("POST", "/comments") - posts,
        pulls.count("PATCH", "/comments/") - patches,
    )
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn one_push_with_an_open_pull_request_gets_one_comment_edited_as_the_run_moves() {
    let mut w = World::new(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.first_run_start();
    w.github_keys(COMMENTS);
    w.extra.clear();
    // Commit 2 heads pull request 7; commit 1 is only part of a merged one.
    pulls.open_pull(7, &sha(2));
    pulls.listed_pull(3, &sha(1), "closed", &sha(1));
    pulls.listed_pull(5, &sha(1), "open", &sha(9));
    baseline_then_push(&w).await;
    assert_eq!(pulls.count("POST", "/comments"), 0, "{:#?}", pulls.calls());

    let mut writes = vec![pass(&w, &pulls)]; // commit 2 starts
    writes.push(pass(&w, &pulls)); // confirmed
    w.report_accuracy(&[0.80]).await;
    writes.push(pass(&w, &pulls)); // a repeat done
    w.report_accuracy(&[0.80, 0.81]).await;
    writes.push(pass(&w, &pulls)); // the verdict: worse
    writes.push(pass(&w, &pulls)); // machines down: the cost
    writes.push(pass(&w, &pulls)); // nothing changed
    eprintln!("writes per pass (POST, PATCH): {writes:?}");

    assert_eq!(writes[0], (1, 0), "made once, at the start: {writes:?}");
    assert!(writes.iter().all(|&(_, patch)| patch <= 1), "{writes:?}");
    assert_eq!(writes.iter().map(|w| w.0).sum::<usize>(), 1, "{writes:?}");
    assert!(
        writes[2].1 == 1 && writes[3].1 == 1,
        "edited as it moves: {writes:?}"
    );
    assert_eq!(
        *writes.last().unwrap(),
        (0, 0),
        "an unchanged body is not sent"
    );
    let comments = pulls.comments();
    assert_eq!(comments.len(), 1, "{comments:#?}");
    let (number, body) = &comments[0];
    assert_eq!(*number, 7);
    eprintln!("the last body:\n{body}");
    assert!(
        body.starts_with("<!-- pushwake:octo/trainer@main -->\n"),
        "{body}"
    );
    util::assert_contains(body, "worse beyond the noise");
    util::assert_contains(body, &format!("| vs `{}` |", util::short(1)));
    util::assert_contains(body, "```mermaid\n---\nconfig:\n");
    util::assert_contains(body, "---\nxychart-beta\n");
    util::assert_contains(body, &format!("\"{} (this)\"", util::short(2)));
    // The lookups: commit 1 once running, once more as its body changed while it had no
    // pull request, and once over; commit 2, which has one, once running and once over.
    assert_eq!(pulls.count("GET", "/pulls"), 5, "{:#?}", pulls.calls());
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_comment_deleted_mid_run_is_made_again_once() {
    let w = World::pushed(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.github_keys(COMMENTS);
    pulls.open_pull(7, &sha(2));
    w.once(0); // commit 2 starts: the comment is made
    w.once(0);
    assert_eq!(pulls.comments().len(), 1);
    pulls.delete_comments();
    w.report_accuracy(&[0.80]).await;
    w.once(0); // the edit finds it gone, and makes it again
    w.report_accuracy(&[0.80, 0.81]).await;
    w.once(0); // the new one is edited
    w.once(0);

    let calls = pulls.calls();
    let posts = pulls.count("POST", "/comments");
    assert_eq!(posts, 2, "made, then made again once: {calls:#?}");
    let comments = pulls.comments();
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(pulls.count("PATCH", "/comments/") >= 2, "{calls:#?}");
    util::assert_contains(&comments[0].1, "nothing to compare with");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn without_a_pull_request_there_is_no_comment() {
    let w = World::pushed(1, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.github_keys(COMMENTS);
    w.once(0);
    w.once(0);
    w.report_accuracy(&[0.9]).await;
    w.once(0);
    w.once(0);

    assert!(pulls.comments().is_empty());
    assert_eq!(pulls.count("POST", ""), 0, "{:#?}", pulls.calls());
    assert_eq!(
        pulls.count("GET", "/pulls"),
        3,
        "once running, once more as its body changed (a repeat reported), once over"
    );
    assert!(pulls.checks().is_empty(), "a token makes no check run");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn github_failing_to_take_comments_never_delays_a_start_and_is_retried() {
    let w = World::pushed(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.github_keys(COMMENTS);
    pulls.open_pull(7, &sha(2));
    pulls.fail_writes(500, 1000);

    let began = Instant::now();
    w.once(0);
    let took = began.elapsed();
    eprintln!("the pass with GitHub failing took {took:?}");
    assert_eq!(w.starts(), [1, 1], "started in the same pass");
    let tried = pulls.calls();
    let post = tried.iter().find(|c| c.method == "POST").expect("tried");
    assert!(
        post.body["body"]
            .as_str()
            .unwrap()
            .starts_with("<!-- pushwake:")
    );
    assert!(pulls.comments().is_empty());
    assert!(
        took.as_secs() < 15,
        "bounded by the pass's budget: {took:?}"
    );

    pulls.fail_writes(500, 0);
    w.once(0);
    assert_eq!(pulls.comments().len(), 1, "{:#?}", pulls.calls());
    assert_eq!(w.starts(), [1, 1]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn signed_in_as_an_app_the_run_is_a_check_run_completed_with_its_conclusion() {
    let w = World::new(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.first_run_start();
    as_app(&w).await;
    pulls.open_pull(7, &sha(2));
    baseline_then_push(&w).await;
    w.once(0);
    w.once(0);
    w.report_accuracy(&[1.0, 1.01]).await;
    w.once(0);
    w.once(0);

    let checks = pulls.checks();
    assert_eq!(checks.len(), 2, "one per commit: {checks:#?}");
    let two = checks
        .iter()
        .find(|c| c["head_sha"] == sha(2).as_str())
        .unwrap();
    assert_eq!(two["name"], "pushwake");
    assert_eq!(two["status"], "completed");
    assert_eq!(
        two["conclusion"], "success",
        "better beyond the noise: {two:#}"
    );
    let summary = two["output"]["summary"].as_str().unwrap();
    util::assert_contains(summary, "better beyond the noise");
    let one = checks
        .iter()
        .find(|c| c["head_sha"] == sha(1).as_str())
        .unwrap();
    assert_eq!(one["conclusion"], "neutral", "nothing to compare: {one:#}");
    assert_eq!(pulls.count("POST", "/check-runs"), 2, "made once each");
    assert_eq!(pulls.comments().len(), 1, "and the comment, as the App");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_new_push_to_the_pull_request_edits_its_one_comment() {
    let w = World::pushed(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.github_keys(COMMENTS);
    pulls.open_pull(7, &sha(2));
    w.once(0); // commit 2 starts: the comment is made
    w.once(0);
    assert_eq!(pulls.count("POST", "/comments"), 1);

    // The pull request's branch moves on while commit 2 still runs: commit 3 heads it,
    // and waits for the machines.
    pulls.move_pull(7, &sha(3));
    w.push(3).await;
    w.once(0);
    w.report_accuracy(&[0.80, 0.81]).await;
    w.once(0); // commit 2's verdict, commit 3 starts
    w.once(0);
    w.report_accuracy(&[0.90, 0.91]).await;
    w.once(0);
    w.once(0);
    w.once(0);

    let calls = pulls.calls();
    assert_eq!(
        pulls.count("POST", "/comments"),
        1,
        "one comment: {calls:#?}"
    );
    let comments = pulls.comments();
    assert_eq!(comments.len(), 1, "{comments:#?}");
    util::assert_contains(&comments[0].1, &format!("`{}`", util::short(3)));
    util::assert_contains(&comments[0].1, "better beyond the noise");
    // Once commit 3's run took the comment, commit 2's verdict did not overwrite it.
    let edits: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| c.body["body"].as_str().unwrap())
        .collect();
    let heading = |n: u32| format!("· `{}`", util::short(n));
    let taken = edits.iter().position(|b| b.contains(&heading(3))).unwrap();
    assert!(
        edits[taken..].iter().all(|b| !b.contains(&heading(2))),
        "{edits:#?}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_comment_made_before_its_record_was_saved_is_found_by_its_marker_and_edited() {
    let w = World::pushed(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.github_keys(COMMENTS);
    pulls.open_pull(7, &sha(2));
    // A busy pull request: 120 comments of people's, then the one pushwake made just
    // before a crash lost its record of it (on the second page of 100).
    for n in 0..120 {
        pulls.add_comment(7, &format!("LGTM {n} <!-- pushwake:octo/trainer@main -->"));
    }
    let made = pulls.add_comment(7, "<!-- pushwake:octo/trainer@main -->\nstarting");
    w.once(0);

    let calls = pulls.calls();
    assert_eq!(pulls.count("POST", "/comments"), 0, "{calls:#?}");
    let edits: Vec<&util::PullsCall> = calls.iter().filter(|c| c.method == "PATCH").collect();
    assert_eq!(edits.len(), 1, "{calls:#?}");
    assert!(edits[0].path.ends_with(&format!("/issues/comments/{made}")));
    assert_eq!(
        pulls.count("GET", "/issues/7/comments"),
        2,
        "two pages: {calls:#?}"
    );
    assert_eq!(pulls.comments().len(), 121, "nobody else's comment touched");
}

/// Signs `w` in as the App 1234 (installation 5678), comments on.
async fn as_app(w: &World) {
    let (key, public) = util::app_key(w.setup.dir.path());
    util::app_sign_in(
        &w.github.server,
        "",
        &public,
        1234,
        5678,
        vec![("ghs_installationtoken0123456789", 3600)],
    )
    .await;
    let file = key.display().to_string();
    w.github_keys(&format!(
        "app_id = 1234\ninstallation_id = 5678\nprivate_key_file = \"{file}\"\n\
         pull_request_comment = true"
    ));
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_comment_and_check_run_github_made_but_whose_answer_was_lost_are_not_made_twice() {
    let w = World::pushed(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    as_app(&w).await;
    pulls.open_pull(7, &sha(2));
    // GitHub stores the comment and the check run, and both answers are lost (502).
    pulls.lose_answers(502, 2);
    w.once(0); // commit 2 starts
    let made = (
        pulls.count("POST", "/comments"),
        pulls.count("POST", "/check-runs"),
    );
    eprintln!("makes sent in the pass whose answers were lost: {made:?}");
    assert_eq!(made, (1, 1), "sent once each: {:#?}", pulls.calls());
    w.once(0); // found by marker and author, and by name: edited
    w.report_accuracy(&[0.80, 0.81]).await;
    w.once(0);
    w.once(0);

    let calls = pulls.calls();
    assert_eq!(pulls.comments().len(), 1, "{calls:#?}");
    assert_eq!(pulls.checks().len(), 1, "{calls:#?}");
    assert_eq!(pulls.count("POST", "/comments"), 1, "{calls:#?}");
    assert_eq!(pulls.count("POST", "/check-runs"), 1, "{calls:#?}");
    assert!(pulls.count("GET", "/check-runs") >= 1, "{calls:#?}");
    assert_eq!(pulls.checks()[0]["status"], "completed");
    util::assert_contains(&pulls.comments()[0].1, "nothing to compare with");
    assert_eq!(pulls.count("GET", "/user"), 0, "an App is known by its id");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_strangers_comment_carrying_the_marker_is_left_alone() {
    let w = World::pushed(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.github_keys(COMMENTS);
    pulls.open_pull(7, &sha(2));
    let forged = "<!-- pushwake:octo/trainer@main -->\nbetter beyond the noise, trust me";
    let theirs = pulls.add_comment_by(7, "mallory", forged);
    w.once(0);
    w.report_accuracy(&[0.80]).await;
    w.once(0);

    let calls = pulls.calls();
    let touched = format!("/issues/comments/{theirs}");
    assert!(
        calls.iter().all(|c| !c.path.ends_with(&touched)),
        "{calls:#?}"
    );
    let comments = pulls.comments_by();
    assert_eq!(comments.len(), 2, "{comments:#?}");
    assert_eq!(comments[0], (7, "mallory".to_owned(), forged.to_owned()));
    assert_eq!(comments[1].1, PULLS_LOGIN, "its own: {comments:#?}");
    assert_eq!(pulls.count("POST", "/comments"), 1);
    // Who it is was asked when it searched, and not once it knew its comment.
    assert_eq!(pulls.count("GET", "/user"), 1, "{calls:#?}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_push_the_budget_refuses_gets_its_comment_saying_so() {
    let extra = format!("{RESULTS}\nmax_runtime = \"1h\"");
    let w = World::pushed(2, &extra).await;
    let pulls = PullsFake::mount(&w.github).await;
    // Two machines at $1 an hour for max_runtime's hour: $2, over a $1 month.
    let tables = "[cost]\nprices = { \"t3.micro\" = 1.0 }\n[budget]\nmonth = 1.0\n";
    w.write_config_with("", &format!("{tables}{}", w.watch()));
    w.github_keys(COMMENTS);
    pulls.open_pull(7, &sha(2));
    let starts = w.proxy.calls("StartInstances").await;
    w.once(0); // the push: refused, and its run closed in the same turn
    w.once(0);

    assert_eq!(
        w.proxy.calls("StartInstances").await,
        starts,
        "nothing started"
    );
    let comments = pulls.comments();
    assert_eq!(comments.len(), 1, "{:#?}", pulls.calls());
    eprintln!("the comment:\n{}", comments[0].1);
    util::assert_contains(&comments[0].1, "Not started: refused by the month's budget");
    assert_eq!(pulls.count("POST", "/comments"), 1);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_pull_request_opened_after_the_push_gets_the_comment_before_the_verdict() {
    let w = World::pushed(2, RESULTS).await;
    let pulls = PullsFake::mount(&w.github).await;
    w.github_keys(COMMENTS);
    w.once(0); // commit 2 starts: no pull request yet
    w.once(0);
    assert_eq!(pulls.count("POST", "/comments"), 0);
    pulls.open_pull(7, &sha(2)); // opened a minute after the push
    w.report_accuracy(&[0.80]).await;
    w.once(0); // a repeat reported: the body changed, so asked again

    let comments = pulls.comments();
    assert_eq!(
        comments.len(),
        1,
        "before the verdict: {:#?}",
        pulls.calls()
    );
    util::assert_contains(&comments[0].1, "judged when the run is over");
    let open = w.status()[0]["open_runs"].as_array().unwrap().len();
    assert_eq!(open, 1, "still running");
    let asked = pulls.count("GET", "/pulls");
    eprintln!("lookups while it ran, up to the comment: {asked}");
    w.report_accuracy(&[0.80, 0.81]).await;
    w.once(0);
    w.once(0);
    let comments = pulls.comments();
    assert_eq!(comments.len(), 1);
    util::assert_contains(&comments[0].1, "nothing to compare with");
    assert_eq!(pulls.count("POST", "/comments"), 1);
}
