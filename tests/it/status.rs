//! `pushwake status`: the table for people, `--json` for scripts, `--live` from EC2.

use crate::util::{REPO, World, sha, stdout, watch};

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn status_shows_heads_errors_and_live_states() {
    let w = World::new(2, "").await;
    w.push(4).await;
    w.github
        .fail("/repos/octo/gone/commits/heads/main", 404, "Not Found")
        .await;
    let watches = format!(
        "{}{}",
        watch(REPO, "main", &w.ids[..1]),
        watch("octo/gone", "main", &w.ids[1..]),
    );
    w.write_config_with("first_run = \"start\"", &watches);
    w.once(1);
    // A watch added since: never polled.
    w.write_config_with(
        "first_run = \"start\"",
        &format!("{watches}{}", watch("octo/later", "dev", &w.ids[1..])),
    );

    let out = w.run(&["status"]);
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

    let table = stdout(&w.run(&["status", "--live"]));
    assert!(
        table.contains(&format!("{} (running)", w.ids[0])),
        "{table}"
    );
    assert!(
        table.contains(&format!("{} (stopped)", w.ids[1])),
        "{table}"
    );

    let out = w.run(&["status", "--json", "--live"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["live"][&w.ids[0]], "running");
    assert_eq!(json[0]["instances"][0], w.ids[0].as_str());
    assert!(
        json[1]["last_error"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    assert_eq!(json[2]["last_checked"], serde_json::Value::Null, "{json}");
}
