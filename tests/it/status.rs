//! `pushwake status`: the table for people, `--json` for scripts, `--live` from EC2.

use crate::util::{self, Ec2, GitHub, Setup, sha, stderr, stdout, watch};

const REPO: &str = "octo/trainer";

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn status_shows_heads_errors_and_live_states() {
    let moto = util::moto_url();
    let (github, ec2) = (GitHub::start().await, Ec2::connect(&moto).await);
    let ids = ec2.stopped(2).await;
    github.set_head(REPO, "main", &sha(4)).await;
    github
        .fail("/repos/octo/gone/commits/heads/main", 404, "Not Found")
        .await;
    let setup = Setup::new();
    let config = format!(
        "first_run = \"start\"\n{}{}{}",
        setup.header(&github.url(), &moto),
        watch(REPO, "main", &ids[..1]),
        watch("octo/gone", "main", &ids[1..]),
    );
    setup.write_config(&config);
    let out = setup.run(&["--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A watch added since: never polled.
    setup.write_config(&format!(
        "{config}{}",
        watch("octo/later", "dev", &ids[1..])
    ));

    let out = setup.run(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    let table = stdout(&out);
    assert!(table.starts_with("WATCH"), "{table}");
    assert!(
        table.contains(&format!("{REPO}@main")) && table.contains(&sha(4)[..7]),
        "{table}"
    );
    assert!(
        table.contains("error: cannot poll: branch main of octo/gone not found"),
        "{table}"
    );

    let out = setup.run(&["status", "--live"]);
    let table = stdout(&out);
    assert!(table.contains(&format!("{} (running)", ids[0])), "{table}");
    assert!(table.contains(&format!("{} (stopped)", ids[1])), "{table}");

    let out = setup.run(&["status", "--json", "--live"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["live"][&ids[0]], "running");
    assert_eq!(json[0]["instances"][0], ids[0].as_str());
    assert!(
        json[1]["last_error"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    assert_eq!(json[2]["last_checked"], serde_json::Value::Null, "{json}");
}
