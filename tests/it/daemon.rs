//! The daemon, through the binary: it polls, acts on a push, reloads on SIGHUP and stops
//! cleanly on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, Ec2, GitHub, Setup, sha, watch};

const REPO: &str = "octo/trainer";

/// Waits, polling every 50 ms, until `cond` holds; panics after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} failed");
}

/// Waits for the daemon to exit and returns its status and how long it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, start.elapsed());
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("the daemon did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_daemon_acts_on_a_push_and_stops_on_sigterm() {
    let Some(moto) = util::moto_url() else { return };
    let (github, ec2) = (GitHub::start().await, Ec2::connect(&moto).await);
    let ids = ec2.stopped(1).await;
    github.set_head(REPO, "main", &sha(1)).await;
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}{}",
        setup
            .header(&github.url(), &moto)
            .replace("interval = \"1s\"", "interval = \"200ms\""),
        watch(REPO, "main", &ids)
    ));
    let mut child = setup
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    until(Duration::from_secs(10), "the baseline", || async {
        setup.state_dir().join("state.json").exists()
    })
    .await;
    github.set_head(REPO, "main", &sha(2)).await;
    until(Duration::from_secs(10), "the instance to start", || async {
        ec2.states(&ids).await == ["running"]
    })
    .await;
    until(
        Duration::from_secs(10),
        "the head to be recorded",
        || async { setup.status()[0]["last_sha"] == sha(2) },
    )
    .await;

    signal(&child, "TERM");
    let (status, took) = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn sighup_reloads_the_config_and_a_broken_edit_keeps_the_old_one() {
    let github = GitHub::start().await;
    github.set_head("octo/one", "main", &sha(1)).await;
    github.set_head("octo/two", "main", &sha(2)).await;
    let setup = Setup::new();
    // EC2 is never called: both watches only record baselines.
    let header = setup
        .header(&github.url(), "http://127.0.0.1:9")
        .replace("interval = \"1s\"", "interval = \"100ms\"");
    let id = ["i-0123456789abcdef0".to_owned()];
    setup.write_config(&format!("{header}{}", watch("octo/one", "main", &id)));
    let mut child = setup
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until(Duration::from_secs(10), "the first poll", || async {
        !github.head_requests("octo/one", "main").await.is_empty()
    })
    .await;

    // A broken edit: reported, and the old config keeps running.
    setup.write_config(&format!(
        "{header}{}bogus = 1\n",
        watch("octo/one", "main", &id)
    ));
    signal(&child, "HUP");
    let seen = github.head_requests("octo/one", "main").await.len();
    until(Duration::from_secs(10), "polls to go on", || async {
        github.head_requests("octo/one", "main").await.len() > seen + 2
    })
    .await;

    // A good edit: the added watch is polled, the removed one no longer is.
    setup.write_config(&format!("{header}{}", watch("octo/two", "main", &id)));
    signal(&child, "HUP");
    until(
        Duration::from_secs(10),
        "the added watch to be polled",
        || async { !github.head_requests("octo/two", "main").await.is_empty() },
    )
    .await;
    let one = github.head_requests("octo/one", "main").await.len();
    let two = github.head_requests("octo/two", "main").await.len();
    until(
        Duration::from_secs(10),
        "more polls of the new watch",
        || async { github.head_requests("octo/two", "main").await.len() > two + 2 },
    )
    .await;
    assert!(
        github.head_requests("octo/one", "main").await.len() <= one + 1,
        "the removed watch is still polled"
    );

    signal(&child, "TERM");
    let (status, _) = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}
