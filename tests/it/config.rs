//! Bad configs: each is refused with exit status 2 and a message naming the key.

use std::process::Output;

use crate::util::{Setup, stderr, watch};

const ID: &str = "i-0123456789abcdef0";

fn base() -> String {
    "[github]\napi_url = \"http://127.0.0.1:9\"\n".to_owned()
}

fn good_watch() -> String {
    watch("octo/repo", "main", &[ID.to_owned()])
}

/// A config: `top`, the `[github]` table, `middle`, the good watch, then `bottom`.
fn config(top: &str, middle: &str, bottom: &str) -> String {
    format!("{top}{}{middle}{}{bottom}", base(), good_watch())
}

/// The good config with `extra` keys in its watch.
fn watch_with(extra: &str) -> String {
    config("", "", &format!("{extra}\n"))
}

/// The `[github]` table and a watch of `repo`@`branch` on instance `id`.
fn watching(repo: &str, branch: &str, id: &str) -> String {
    format!("{}{}", base(), watch(repo, branch, &[id.to_owned()]))
}

/// Runs `check` on `config`.
fn check(config: &str) -> Output {
    let setup = Setup::new();
    setup.write_config(config);
    setup.run(&["check"])
}

fn accepted(config: &str) {
    let out = check(config);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Runs `check` on `config`, asserting exit status 2 and an error that names each of
/// `needles`; returns the error.
fn refused(config: &str, needles: &[&str]) -> String {
    let out = check(config);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "config was accepted:\n{config}\n{err}"
    );
    assert_names(&err, needles);
    err
}

/// Like [`refused`], and asserts that none of `values` (written in the file) is echoed.
fn refused_hiding(config: &str, needles: &[&str], values: &[&str]) -> String {
    let err = refused(config, needles);
    for v in values {
        assert!(!err.contains(v), "the value {v:?} was echoed:\n{err}");
    }
    err
}

fn assert_names(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}:\n{err}");
    }
}

#[test]
fn a_good_config_passes_check() {
    accepted(&config("", "", ""));
}

#[test]
fn eight_digit_instance_ids_are_accepted() {
    accepted(&watching("o/r", "main", "i-0123abcd"));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    refused_hiding(
        &config("", "intervall = \"5s\"\n", ""),
        &[
            "github.intervall",
            "line 3",
            "unknown key; expected one of `api_url`",
        ],
        &["5s"],
    );
}

#[test]
fn unknown_key_in_a_watch() {
    refused(
        &watch_with("brnach = \"x\""),
        &["watch[0].brnach", "line 8", "unknown key"],
    );
}

#[test]
fn repo_must_be_owner_slash_name() {
    refused_hiding(
        &watching("just-a-name", "main", ID),
        &["watch[0].repo", "line 5", "owner/name"],
        &["just-a-name"],
    );
}

#[test]
fn instance_ids_are_checked() {
    for bad in [
        "i-123",
        "i-0123456789ABCDEF0",
        "0123456789abcdef0",
        "i-0123456789abcdefg",
    ] {
        refused_hiding(
            &watching("o/r", "main", bad),
            &["watch[0].instances[0]", "line 7", "not an EC2 instance id"],
            &[bad],
        );
    }
}

#[test]
fn interval_must_be_a_nonzero_duration() {
    refused(
        &config("interval = \"0s\"\n", "", ""),
        &["interval", "line 1", "greater than zero"],
    );
    refused_hiding(
        &config("interval = \"soonish\"\n", "", ""),
        &["interval", "line 1", "not a duration"],
        &["soonish"],
    );
}

#[test]
fn at_least_one_watch() {
    refused(&base(), &["watch"]);
}

#[test]
fn a_watch_needs_instances() {
    refused(
        &format!("{}\n[[watch]]\nrepo = \"o/r\"\nbranch = \"main\"\n", base()),
        &["watch[0].instances"],
    );
}

#[test]
fn the_same_branch_twice_is_refused() {
    refused_hiding(
        &config("", "", &good_watch()),
        &["watch[1]", "the same repo and branch as watch[0]", "line 9"],
        &["octo/repo"],
    );
}

#[test]
fn inline_secrets_are_refused_with_where_to_put_them() {
    let err = refused(
        &format!("[github]\ntoken = \"ghp_abc\"\n{}", good_watch()),
        &["github.token", "line 2", "token_env", "token_file"],
    );
    assert!(!err.contains("ghp_abc"), "the secret was echoed: {err}");

    let err = refused(
        &config(
            "",
            "[slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/sekrit\"\n",
            "",
        ),
        &["slack.webhook_url", "line 4", "webhook_url_env"],
    );
    assert!(!err.contains("sekrit"), "the secret was echoed: {err}");

    let err = refused(
        &config("", "[aws]\naws_secret_access_key = \"wJalrXUtnFEMI\"\n", ""),
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
    refused_hiding(
        &config(
            "",
            "[slack]\ntoken_env = \"NO_SUCH_VARIABLE\"\nchannel = \"#ml\"\n",
            "",
        ),
        &["slack.token_env", "is not set", "line 4"],
        &["NO_SUCH_VARIABLE"],
    );
}

#[test]
fn a_bot_token_needs_a_channel() {
    refused(
        &config("", "[slack]\ntoken_env = \"SLACK_API_TOKEN\"\n", ""),
        &["slack.channel"],
    );
}

#[test]
fn bad_first_run_value() {
    refused_hiding(
        &config("first_run = \"later\"\n", "", ""),
        &["first_run", "line 1", "expected `baseline` or `start`"],
        &["later"],
    );
}

#[test]
fn branch_names_are_checked() {
    refused_hiding(
        &watching("o/r", "bad branch", ID),
        &["watch[0].branch", "line 6"],
        &["bad branch"],
    );
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
    let err = stderr(&out);
    assert_names(
        &err,
        &["github.token_file", "cannot read the file it names"],
    );
    assert!(
        !err.contains("missing"),
        "the file's name was echoed: {err}"
    );
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
    refused(
        &watch_with("max_runtime = \"0s\""),
        &["watch[0].max_runtime", "line 8"],
    );
    refused_hiding(
        &watch_with("paths = [\"models/[\"]"),
        &["watch[0].paths", "line 8"],
        &["models/"],
    );
    refused(&watch_with("paths = []"), &["watch[0].paths"]);
    refused(
        &watch_with("idle_stop = { below = 5.0, for = \"10s\" }"),
        &["watch[0].idle_stop.for", "at least one minute"],
    );
    refused(
        &watch_with("idle_stop = { treshold = 5.0 }"),
        &["treshold", "line 8"],
    );
    refused(
        &watch_with("instance_tags = {}"),
        &["watch[0].instance_tags"],
    );
    refused_hiding(
        &watch_with("on_busy = \"wait\""),
        &["watch[0].on_busy", "queue", "supersede", "skip", "line 8"],
        &["wait"],
    );
    refused(
        &watch_with("idle_stop = { dimensions = { InstanceId = \"i-1\" } }"),
        &[
            "watch[0].idle_stop.dimensions",
            "InstanceId is set by pushwake",
        ],
    );
    refused(
        &watch_with("idle_stop = { dimensions = { gpu = \"\" } }"),
        &[
            "watch[0].idle_stop.dimensions.gpu",
            "needs a name and a value",
        ],
    );
    refused(
        &config("max_runtime = \"soon\"\n", "", ""),
        &["max_runtime", "line 1"],
    );
}

#[test]
fn per_watch_options_are_accepted() {
    accepted(&config(
        "max_runtime = \"12h\"\n",
        "",
        "instance_tags = { Project = \"trainer\" }\npaths = [\"train.py\", \"models/**\"]\n\
         skip_markers = []\nmax_runtime = \"6h\"\n\
         idle_stop = { metric = \"nvidia_smi_utilization_gpu\", namespace = \"CWAgent\", below = 10.0, for = \"30m\", \
         dimensions = { index = \"0\", name = \"NVIDIA A10G\" } }\non_busy = \"supersede\"\n",
    ));
}

#[test]
fn results_options_are_checked() {
    refused(
        &watch_with("results = { metrics = [] }"),
        &["watch[0].results.metrics", "line 8"],
    );
    refused(
        &watch_with("results = { metrics = [\"acc\"], better = { loss = \"lower\" } }"),
        &["watch[0].results.better.loss", "is not one of the metrics"],
    );
    refused_hiding(
        &watch_with("results = { metrics = [\"acc\"], better = { acc = \"more\" } }"),
        &["watch[0].results.better.acc", "`higher` or `lower`"],
        &["more"],
    );
    refused_hiding(
        &watch_with("results = { metrics = [\"top 1\"] }"),
        &["watch[0].results.metrics[0]", "tag key"],
        &["top 1"],
    );
    // Instance metadata shows no tag key with a '/'.
    refused_hiding(
        &watch_with("results = { metrics = [\"val/loss\"] }"),
        &["watch[0].results.metrics[0]", "no '/'"],
        &["val/loss"],
    );
    let many: Vec<String> = (0..40).map(|i| format!("\"m{i}\"")).collect();
    refused(
        &watch_with(&format!("results = {{ metrics = [{}] }}", many.join(", "))),
        &["watch[0].results.metrics", "40 metrics", "at most 36"],
    );
    refused(
        &watch_with("results = { metrics = [\"acc\"], timeout = \"never\" }"),
        &["watch[0].results.timeout", "not a duration"],
    );
}

#[test]
fn shared_state_and_app_keys_are_checked() {
    let app = |keys: &str| config("", keys, "");
    let cases: [(String, &[&str]); 7] = [
        (
            config("state_url = \"https://bucket/x\"\n", "", ""),
            &["line 1", "state_url", "not an s3:// URL"],
        ),
        (
            config(
                "interval = \"100ms\"\nstate_url = \"s3://ml-team/x\"\nlease_ttl = \"1s\"\n",
                "",
                "",
            ),
            &["line 3", "lease_ttl", "must be at least 2s"],
        ),
        (
            config(
                "interval = \"1m\"\nstate_url = \"s3://ml-team/x\"\nlease_ttl = \"30s\"\n",
                "",
                "",
            ),
            &["line 3", "lease_ttl", "must be at least twice interval,"],
        ),
        (
            config("lease_ttl = \"3m\"\n", "", ""),
            &["lease_ttl", "needs state_url"],
        ),
        (
            watch_with("role_arn = \"arn:aws:iam::12:role/x\""),
            &["watch[0].role_arn", "not an IAM role ARN"],
        ),
        (
            app("app_id = 1\n"),
            &["github.installation_id", "and github.private_key_file"],
        ),
        (
            app("app_id = 1\ninstallation_id = 2\nprivate_key_file = \"/dev/null\"\n"),
            &["github.private_key_file", "is empty"],
        ),
    ];
    for (config, needles) in cases {
        refused(&config, needles);
    }
}
