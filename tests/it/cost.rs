//! The benchmark's key counts, kept as ordinary assertions so a regression fails CI:
//! an unchanged watch costs one request answered 304, and a trigger three EC2 calls
//! whatever the number of instances. Times stay in `scripts/bench`.

use wiremock::MockServer;

use crate::util::{GitHub, Setup, ec2_actions, ec2_ok, sha, stderr};

#[tokio::test]
async fn an_unchanged_pass_costs_one_304_per_watch_and_no_quota() {
    const N: usize = 100;
    let github = GitHub::start().await;
    let setup = Setup::new();
    let mut config = setup.header(&github.url(), "http://127.0.0.1:9");
    for i in 0..N {
        github
            .set_head(&format!("octo/r{i}"), "main", &sha(1))
            .await;
        config.push_str(&crate::util::watch(
            &format!("octo/r{i}"),
            "main",
            &["i-0123456789abcdef0".into()],
        ));
    }
    setup.write_config(&config);
    assert_eq!(setup.run(&["--once"]).status.code(), Some(0));
    github.server.reset().await;
    for i in 0..N {
        github
            .set_head(&format!("octo/r{i}"), "main", &sha(1))
            .await;
    }

    let out = setup.run(&["--once"]);

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let requests = github.server.received_requests().await.unwrap();
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
async fn triggered(n: usize) -> (GitHub, MockServer, Setup) {
    let ids: Vec<String> = (0..n).map(|i| format!("i-{i:017x}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (github, ec2) = (GitHub::start().await, ec2_ok(&refs).await);
    github.set_head("octo/trainer", "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "first_run = \"start\"\n{}{}",
        setup.header(&github.url(), &ec2.uri()),
        crate::util::watch("octo/trainer", "main", &ids)
    ));
    setup.once(0);
    (github, ec2, setup)
}

#[tokio::test]
async fn a_trigger_of_200_instances_costs_three_ec2_calls_and_its_confirmation_two() {
    let (_github, ec2, setup) = triggered(200).await;

    assert_eq!(
        ec2_actions(&ec2).await,
        ["DescribeInstances", "CreateTags", "StartInstances"]
    );

    // The next pass confirms the 200 starts in two calls and closes the run; after that,
    // with no run open and no stop rule, a pass makes no EC2 call at all.
    setup.once(0);
    assert_eq!(
        ec2_actions(&ec2).await[3..],
        ["DescribeInstances", "CreateTags"]
    );
    setup.once(0);
    assert_eq!(ec2_actions(&ec2).await.len(), 5);
}

#[tokio::test]
async fn a_watch_of_250_instances_is_described_within_ec2s_200_filter_values() {
    let (_github, ec2, setup) = triggered(250).await;

    assert_eq!(
        ec2_actions(&ec2).await,
        [
            "DescribeInstances",
            "DescribeInstances",
            "CreateTags",
            "StartInstances"
        ]
    );
    let out = setup.run(&["status", "--live"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
