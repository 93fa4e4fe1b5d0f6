//! The Prometheus textfile (`[metrics] textfile`), read back by a parser of the Prometheus
//! text format: what a pass leaves for node_exporter's textfile collector.

use std::collections::BTreeMap;

use crate::util::Fake;

/// The samples of the textfile, `name{labels}` → value, after a parser of the format read
/// every line of it.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            other => panic!("{} is not a gauge: {other:?}", s.metric),
        };
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    // Every metric has its HELP and TYPE once.
    for name in out.keys().map(|k| k.split('{').next().unwrap()) {
        assert_eq!(
            text.matches(&format!("# TYPE {name} gauge\n")).count(),
            1,
            "{name}"
        );
        assert_eq!(
            text.matches(&format!("# HELP {name} ")).count(),
            1,
            "{name}"
        );
    }
    out
}

const WATCH: &str = "{branch=main,repo=octo/trainer}";

#[tokio::test]
async fn each_pass_writes_the_textfile_and_a_failing_poll_shows_in_it() {
    let w = Fake::new("").await;
    let file = w
        .setup
        .dir
        .path()
        .join("node_exporter")
        .join("pushwake.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let tables = format!("[metrics]\ntextfile = \"{}\"\n", file.display());
    w.write_config_with("", &format!("{tables}{}", w.watch()));

    let before = chrono::Utc::now().timestamp() as f64;
    w.once(0);
    let first = samples(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(first["pushwake_leader{}"], 1.0);
    assert_eq!(first["pushwake_last_pass_failed_watches{}"], 0.0);
    let polled = first[&format!("pushwake_last_successful_poll_timestamp_seconds{WATCH}")];
    assert!(polled >= before, "{polled} before {before}");
    for (name, want) in [
        ("pushwake_watch_failing", 0.0),
        ("pushwake_open_runs", 0.0),
        ("pushwake_repeats_running", 0.0),
        ("pushwake_month_spend_usd", 0.0),
        ("pushwake_duties_owed", 0.0),
    ] {
        assert_eq!(first[&format!("{name}{WATCH}")], want, "{name}: {first:?}");
    }

    // GitHub fails: the watch is failing, the last good poll stays where it was.
    w.github
        .fail(
            "/repos/octo/trainer/commits/heads/main",
            500,
            "Server Error",
        )
        .await;
    w.once(1);
    let failing = samples(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(failing[&format!("pushwake_watch_failing{WATCH}")], 1.0);
    assert_eq!(failing["pushwake_last_pass_failed_watches{}"], 1.0);
    assert_eq!(
        failing[&format!("pushwake_last_successful_poll_timestamp_seconds{WATCH}")],
        polled
    );
    assert!(failing["pushwake_last_pass_timestamp_seconds{}"] >= polled);
    // Written whole, by a rename: nothing else is left beside it.
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["pushwake.prom"]);
}

#[tokio::test]
async fn a_run_shows_as_open_and_its_machine_as_up() {
    let w = Fake::new("").await;
    let file = w.setup.dir.path().join("pushwake.prom");
    let tables = format!("[metrics]\ntextfile = \"{}\"\n", file.display());
    w.write_config_with("", &format!("{tables}{}", w.watch()));
    w.once(0);
    w.push(2).await;
    w.once(0);
    assert!(w.started().await);
    let open = samples(&std::fs::read_to_string(&file).unwrap());
    let status = w.status();
    let runs = status[0]["open_runs"].as_array().unwrap().len() as f64;
    assert_eq!(open[&format!("pushwake_open_runs{WATCH}")], runs);
    assert_eq!(runs, 1.0, "{status}");
    // The next look at EC2 finds the machine up on the run.
    w.once(0);
    let up = samples(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(
        up[&format!("pushwake_repeats_running{WATCH}")],
        1.0,
        "{up:?}"
    );
}

#[test]
fn a_relative_or_foreign_textfile_is_refused_naming_the_key() {
    for (path, words) in [
        ("pushwake.prom", "must be an absolute path"),
        ("/var/lib/node_exporter/pushwake.txt", "must end in .prom"),
    ] {
        let setup = crate::util::Setup::new();
        setup.write_config(&format!(
            "[metrics]\ntextfile = \"{path}\"\n{}",
            crate::util::watch(crate::util::REPO, "main", &[crate::util::ID.to_owned()])
        ));
        let out = setup.run(&["check"]);
        assert_eq!(out.status.code(), Some(2));
        let err = crate::util::stderr(&out);
        assert!(
            err.contains("metrics.textfile") && err.contains(words),
            "{err}"
        );
        assert!(!err.contains(path), "the value is not quoted: {err}");
    }
}

#[tokio::test]
async fn a_pass_that_cannot_read_its_state_says_so_in_the_textfile() {
    let w = Fake::new("").await;
    let file = w.setup.dir.path().join("pushwake.prom");
    let tables = format!("[metrics]\ntextfile = \"{}\"\n", file.display());
    w.write_config_with("", &format!("{tables}{}", w.watch()));
    w.once(0);
    assert_eq!(
        samples(&std::fs::read_to_string(&file).unwrap())["pushwake_last_pass_success{}"],
        1.0
    );
    std::fs::write(w.setup.state_dir().join("state.json"), "{ not json").unwrap();

    let out = w.setup.run(&["--once"]);
    assert_ne!(out.status.code(), Some(0), "{}", crate::util::stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    let failed = samples(&text);
    assert_eq!(failed["pushwake_last_pass_success{}"], 0.0, "{text}");
    assert_eq!(failed["pushwake_last_pass_failed_watches{}"], 1.0, "{text}");
    assert!(
        !text.contains("pushwake_open_runs{"),
        "no figures from a state it could not read: {text}"
    );
}
