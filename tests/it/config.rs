//! Bad configs: each is refused with exit status 2 and a message naming the key.

use crate::util::{Setup, stderr, watch};

const ID: &str = "i-0123456789abcdef0";

fn base() -> String {
    "[github]\napi_url = \"http://127.0.0.1:9\"\n".to_owned()
}

fn good_watch() -> String {
    watch("octo/repo", "main", &[ID.to_owned()])
}

/// Runs `check` on `config` and returns stderr, asserting exit status 2.
fn refused(config: &str) -> String {
    let setup = Setup::new();
    setup.write_config(config);
    let out = setup.run(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "config was accepted:\n{config}\n{}",
        stderr(&out)
    );
    stderr(&out)
}

fn assert_names(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}:\n{err}");
    }
}

#[test]
fn a_good_config_passes_check() {
    let setup = Setup::new();
    setup.write_config(&format!("{}{}", base(), good_watch()));
    let out = setup.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = refused(&format!("{}intervall = \"5s\"\n{}", base(), good_watch()));
    assert_names(&err, &["intervall", "line 3"]);
}

#[test]
fn unknown_key_in_a_watch() {
    let err = refused(&format!("{}{}brnach = \"x\"\n", base(), good_watch()));
    assert_names(&err, &["brnach", "line 8"]);
}

#[test]
fn repo_must_be_owner_slash_name() {
    let err = refused(&format!(
        "{}{}",
        base(),
        watch("just-a-name", "main", &[ID.into()])
    ));
    assert_names(&err, &["watch.repo", "line 5", "owner/name"]);
}

#[test]
fn instance_ids_are_checked() {
    for bad in [
        "i-123",
        "i-0123456789ABCDEF0",
        "0123456789abcdef0",
        "i-0123456789abcdefg",
    ] {
        let err = refused(&format!(
            "{}{}",
            base(),
            watch("o/r", "main", &[bad.into()])
        ));
        assert_names(&err, &["watch.instances", "line 7", bad]);
    }
}

#[test]
fn eight_digit_instance_ids_are_accepted() {
    let setup = Setup::new();
    setup.write_config(&format!(
        "{}{}",
        base(),
        watch("o/r", "main", &["i-0123abcd".into()])
    ));
    assert_eq!(setup.run(&["check"]).status.code(), Some(0));
}

#[test]
fn interval_must_be_a_nonzero_duration() {
    let err = refused(&format!("interval = \"0s\"\n{}{}", base(), good_watch()));
    assert_names(&err, &["interval", "line 1", "greater than zero"]);
    let err = refused(&format!("interval = \"soon\"\n{}{}", base(), good_watch()));
    assert_names(&err, &["interval", "line 1"]);
}

#[test]
fn at_least_one_watch() {
    let err = refused(&base());
    assert_names(&err, &["watch"]);
}

#[test]
fn a_watch_needs_instances() {
    let err = refused(&format!(
        "{}\n[[watch]]\nrepo = \"o/r\"\nbranch = \"main\"\n",
        base()
    ));
    assert_names(&err, &["watch.instances"]);
}

#[test]
fn the_same_branch_twice_is_refused() {
    let err = refused(&format!("{}{}{}", base(), good_watch(), good_watch()));
    assert_names(&err, &["watch", "octo/repo@main", "twice", "line 9"]);
}

#[test]
fn inline_secrets_are_refused_with_where_to_put_them() {
    let err = refused(&format!("[github]\ntoken = \"ghp_abc\"\n{}", good_watch()));
    assert_names(&err, &["github.token", "line 2", "token_env", "token_file"]);
    assert!(!err.contains("ghp_abc"), "the secret was echoed: {err}");

    let err = refused(&format!(
        "{}[slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/sekrit\"\n{}",
        base(),
        good_watch()
    ));
    assert_names(&err, &["slack.webhook_url", "line 4", "webhook_url_env"]);
    assert!(!err.contains("sekrit"), "the secret was echoed: {err}");

    let err = refused(&format!(
        "{}[aws]\naws_secret_access_key = \"wJalrXUtnFEMI\"\n{}",
        base(),
        good_watch()
    ));
    assert_names(
        &err,
        &[
            "aws.aws_secret_access_key",
            "line 4",
            "AWS_SECRET_ACCESS_KEY",
        ],
    );
    assert!(
        !err.contains("wJalrXUtnFEMI"),
        "the secret was echoed: {err}"
    );
}

#[test]
fn a_slack_token_variable_that_is_not_set() {
    let err = refused(&format!(
        "{}[slack]\ntoken_env = \"NO_SUCH_VARIABLE\"\nchannel = \"#ml\"\n{}",
        base(),
        good_watch()
    ));
    assert_names(&err, &["slack.token_env", "NO_SUCH_VARIABLE", "line 4"]);
}

#[test]
fn a_bot_token_needs_a_channel() {
    let err = refused(&format!(
        "{}[slack]\ntoken_env = \"SLACK_API_TOKEN\"\n{}",
        base(),
        good_watch()
    ));
    assert_names(&err, &["slack.channel"]);
}

#[test]
fn bad_first_run_value() {
    let err = refused(&format!(
        "first_run = \"later\"\n{}{}",
        base(),
        good_watch()
    ));
    assert_names(&err, &["first_run", "line 1", "baseline"]);
}

#[test]
fn branch_names_are_checked() {
    let err = refused(&format!(
        "{}{}",
        base(),
        watch("o/r", "bad branch", &[ID.into()])
    ));
    assert_names(&err, &["watch.branch", "line 6"]);
}

#[test]
fn token_file_is_read_from_the_credentials_directory() {
    let mut setup = Setup::new();
    let creds = setup.dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("gh"), "ghp_fromfile\n").unwrap();
    setup.set_env("CREDENTIALS_DIRECTORY", creds.to_str().unwrap());
    setup.write_config(&format!("[github]\ntoken_file = \"gh\"\n{}", good_watch()));
    let out = setup.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(crate::util::stdout(&out).contains("GitHub token: set"));

    setup.write_config(&format!(
        "[github]\ntoken_file = \"missing\"\n{}",
        good_watch()
    ));
    let out = setup.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert_names(&stderr(&out), &["github.token_file", "missing"]);
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let setup = Setup::new();
    let out = setup.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
}

#[test]
fn the_example_config_is_valid() {
    let setup = Setup::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let out = setup
        .command(&["check"])
        .arg("--config")
        .arg(example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(crate::util::stdout(&out).contains("octocat/Hello-World@master"));
}

#[test]
fn per_watch_options_are_checked() {
    let with = |extra: &str| format!("{}{}{extra}\n", base(), good_watch());
    let err = refused(&with("max_runtime = \"0s\""));
    assert_names(&err, &["watch.max_runtime", "line 8"]);
    let err = refused(&with("paths = [\"models/[\"]"));
    assert_names(&err, &["watch.paths", "line 8"]);
    let err = refused(&with("paths = []"));
    assert_names(&err, &["watch.paths"]);
    let err = refused(&with("idle_stop = { below = 5.0, for = \"10s\" }"));
    assert_names(&err, &["watch.idle_stop.for", "at least one minute"]);
    let err = refused(&with("idle_stop = { treshold = 5.0 }"));
    assert_names(&err, &["treshold", "line 8"]);
    let err = refused(&with("instance_tags = {}"));
    assert_names(&err, &["watch.instance_tags"]);
    let err = refused(&with("on_busy = \"wait\""));
    assert_names(&err, &["wait", "queue", "supersede", "skip", "line 8"]);
    let err = refused(&with(
        "idle_stop = { dimensions = { InstanceId = \"i-1\" } }",
    ));
    assert_names(
        &err,
        &[
            "watch.idle_stop.dimensions",
            "InstanceId is set by pushwake",
        ],
    );
    let err = refused(&with("idle_stop = { dimensions = { gpu = \"\" } }"));
    assert_names(&err, &["watch.idle_stop.dimensions", "\"gpu\""]);
    let err = refused(&format!(
        "max_runtime = \"soon\"\n{}{}",
        base(),
        good_watch()
    ));
    assert_names(&err, &["max_runtime", "line 1"]);
}

#[test]
fn per_watch_options_are_accepted() {
    let setup = Setup::new();
    setup.write_config(&format!(
        "max_runtime = \"12h\"\n{}{}instance_tags = {{ Project = \"trainer\" }}\npaths = [\"train.py\", \"models/**\"]\n\
         skip_markers = []\nmax_runtime = \"6h\"\n\
         idle_stop = {{ metric = \"nvidia_smi_utilization_gpu\", namespace = \"CWAgent\", below = 10.0, for = \"30m\", \
         dimensions = {{ index = \"0\", name = \"NVIDIA A10G\" }} }}\non_busy = \"supersede\"\n",
        base(),
        good_watch()
    ));
    let out = setup.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn results_options_are_checked() {
    let with = |extra: &str| format!("{}{}{extra}\n", base(), good_watch());
    let err = refused(&with("results = { metrics = [] }"));
    assert_names(&err, &["watch.results.metrics", "line 8"]);
    let err = refused(&with(
        "results = { metrics = [\"acc\"], better = { loss = \"lower\" } }",
    ));
    assert_names(
        &err,
        &["watch.results.better", "\"loss\" is not one of the metrics"],
    );
    let err = refused(&with(
        "results = { metrics = [\"acc\"], better = { acc = \"more\" } }",
    ));
    assert_names(&err, &["more", "higher", "lower"]);
    let err = refused(&with("results = { metrics = [\"top 1\"] }"));
    assert_names(&err, &["watch.results.metrics", "tag key"]);
    // Instance metadata shows no tag key with a '/'.
    let err = refused(&with("results = { metrics = [\"val/loss\"] }"));
    assert_names(&err, &["watch.results.metrics", "\"val/loss\"", "no '/'"]);
    let many: Vec<String> = (0..40).map(|i| format!("\"m{i}\"")).collect();
    let err = refused(&with(&format!(
        "results = {{ metrics = [{}] }}",
        many.join(", ")
    )));
    assert_names(&err, &["watch.results.metrics", "40 metrics", "at most 39"]);
    let err = refused(&with(
        "results = { metrics = [\"acc\"], timeout = \"never\" }",
    ));
    assert_names(&err, &["watch.results.timeout"]);
}
