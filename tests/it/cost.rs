//! The benchmark's key counts, kept as ordinary assertions so a regression fails CI:
//! an unchanged watch costs one request answered 304, and a trigger three EC2 calls
//! whatever the number of instances, plus the one repeat tag each machine needs. Times stay
//! in `scripts/bench`.

use crate::util::{Base, Fake, sha, stderr, watch};

#[tokio::test]
async fn an_unchanged_pass_costs_one_304_per_watch_and_no_quota() {
    const N: usize = 100;
    let b = Base::without_ec2("").await;
    let repos: Vec<String> = (0..N).map(|i| format!("octo/r{i}")).collect();
    let watches: String = repos.iter().map(|r| watch(r, "main", &b.ids)).collect();
    b.write_config(&watches);
    for repo in &repos {
        b.github.set_head(repo, "main", &sha(1)).await;
    }
    b.once(0);
    b.github.server.reset().await;
    for repo in &repos {
        b.github.set_head(repo, "main", &sha(1)).await;
    }

    let out = b.run(&["--once"]);

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let requests = b.github.server.received_requests().await.unwrap();
    assert_eq!(requests.len(), N, "one request per watch");
    for r in &requests {
        assert!(
            r.headers.get("if-none-match").is_some(),
            "unconditional: {}",
            r.url
        );
        assert!(
            r.headers.get("authorization").is_some(),
            "a 304 is free only with a token"
        );
    }
}

/// A watch of `n` stopped instances (the EC2 fake) whose branch has moved, under
/// `first_run = "start"`; the first `--once` has run and succeeded.
async fn triggered(n: usize) -> Fake {
    let ids: Vec<String> = (0..n).map(|i| format!("i-{i:017x}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let f = Fake::with(&refs, "").await;
    f.first_run_start();
    f.once(0);
    f
}

/// What a trigger of `n` machines costs: a describe per 200 ids, the stamp, one repeat tag
/// per machine (its value differs per machine), and the start.
fn trigger(n: usize, describes: usize) -> Vec<String> {
    let mut calls = vec!["DescribeInstances".to_owned(); describes];
    calls.extend(vec!["CreateTags".to_owned(); 1 + n]);
    calls.push("StartInstances".to_owned());
    calls
}

#[tokio::test]
async fn a_trigger_of_200_instances_costs_three_ec2_calls_plus_a_repeat_tag_each() {
    let f = triggered(200).await;

    assert_eq!(f.actions().await, trigger(200, 1));
    // Each machine its own repeat, 1 to 200, none twice.
    let mut repeats: Vec<u32> = f
        .ec2
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .filter(|b| b.contains("Action=CreateTags") && b.contains("pushwake%3Arepeat"))
        .map(|b| {
            assert!(
                b.contains("ResourceId.1=") && !b.contains("ResourceId.2="),
                "{b}"
            );
            let v = b.split("Tag.1.Value=").nth(1).unwrap();
            v.split('&').next().unwrap().parse().unwrap()
        })
        .collect();
    repeats.sort();
    assert_eq!(repeats, (1..=200).collect::<Vec<u32>>());

    // The next pass confirms the 200 starts from their tags in one describe (a second call
    // only when EC2 launched them in a later second than it was asked, to correct
    // `started-at`) and closes the run; after that, with no run open and no stop rule, a
    // pass makes no EC2 call at all.
    f.once(0);
    let confirm = f.actions().await[203..].to_vec();
    assert!(
        confirm == ["DescribeInstances"] || confirm == ["DescribeInstances", "CreateTags"],
        "{confirm:?}"
    );
    f.once(0);
    assert_eq!(f.actions().await.len(), 203 + confirm.len());
}

#[tokio::test]
async fn a_watch_of_250_instances_is_described_within_ec2s_200_filter_values() {
    let f = triggered(250).await;

    assert_eq!(f.actions().await, trigger(250, 2));
    let out = f.run(&["status", "--live"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
