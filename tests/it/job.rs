//! `pushwake report`, the job's side (SPEC §13), through the binary: a fake IMDSv2 that
//! requires its session token, and EC2 (moto behind the counting proxy, or the wiremock
//! fake where a fault is needed). No config file exists: `PUSHWAKE_CONFIG` names a path
//! that is not there and no `--config` is given.

use std::process::{Command, Output};

use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, ResponseTemplate};

use crate::util::{
    Ec2, ID, Imds, ImdsRequest, MotoProxy, Setup, ec2_actions, ec2_ok, exited, moto_url, sha,
    stderr, stdout,
};

/// `pushwake report ARGS` on a machine whose metadata service is `imds`, its EC2 at `ec2`
/// (as `AWS_ENDPOINT_URL`, or `AWS_ENDPOINT_URL_EC2` when `env` sets it), with the setup's
/// credentials, no region in the environment unless `env` sets one, and no config file.
fn report_on(setup: &Setup, imds: &Imds, ec2: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    report_at(setup, &imds.url(), ec2, env, args)
}

/// `pushwake report ARGS` as [`report_on`], with the metadata service at `imds`.
fn report_at(setup: &Setup, imds: &str, ec2: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwake"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(
            setup
                .env
                .iter()
                .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
                .map(|(k, v)| (k, v)),
        )
        .env(
            "PUSHWAKE_CONFIG",
            setup.dir.path().join("no-such-config.toml"),
        )
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds);
    if !env.iter().any(|(k, _)| *k == "AWS_ENDPOINT_URL_EC2") {
        cmd.env("AWS_ENDPOINT_URL", ec2);
    }
    cmd.envs(env.iter().copied()).arg("report").args(args);
    cmd.output().expect("run pushwake report")
}

fn put_token() -> ImdsRequest {
    ImdsRequest {
        method: "PUT".into(),
        path: "/latest/api/token".into(),
        with_token: false,
    }
}

fn get(path: &str) -> ImdsRequest {
    ImdsRequest {
        method: "GET".into(),
        path: format!("/latest/meta-data/{path}"),
        with_token: true,
    }
}

#[tokio::test]
async fn bad_results_exit_2_naming_them_and_ask_nothing_of_the_network() {
    let setup = Setup::new();
    let imds = Imds::start(ID, "us-east-1").await;
    let ec2 = ec2_ok(&[ID]).await;
    let long = format!("{}=1", "m".repeat(101));
    let many: Vec<String> = (0..37).map(|i| format!("m{i}=1")).collect();
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["accuracy"], "\"accuracy\" is not METRIC=VALUE"),
        (vec!["=0.9"], "\"=0.9\" is not METRIC=VALUE"),
        (
            vec!["loss=nan"],
            "\"loss=nan\": the value is not a finite number",
        ),
        (
            vec!["loss=inf"],
            "\"loss=inf\": the value is not a finite number",
        ),
        (
            vec!["loss=1e999"],
            "\"loss=1e999\": the value is not a finite number",
        ),
        (vec!["acc=0.9", "loss="], "\"loss=\": the value is empty"),
        (
            vec!["top 5=0.9"],
            "\"top 5=0.9\": the metric name cannot be part of a tag key",
        ),
        (
            vec!["val/loss=0.9"],
            "\"val/loss=0.9\": the metric name cannot be part",
        ),
        (
            vec![long.as_str()],
            "the metric name cannot be part of a tag key",
        ),
        (
            vec!["loss=1", "loss=2"],
            "\"loss=2\": the same metric is given twice",
        ),
        (vec!["--commit", "loss=1"], "cannot be used with"),
        (vec!["--repeat", "--commit"], "cannot be used with"),
        (vec![], "required arguments were not provided"),
    ];
    cases.push((
        many.iter().map(String::as_str).collect(),
        "37 results are too many: a watch reads at most 36 metrics",
    ));
    for (args, words) in &cases {
        let out = exited(report_on(&setup, &imds, &ec2.uri(), &[], args), 2);
        let text = stderr(&out);
        assert!(text.contains(words), "{args:?}: {text}");
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    assert_eq!(imds.requests(), [], "the metadata service was asked");
    assert_eq!(
        ec2_actions(&ec2).await,
        Vec::<String>::new(),
        "EC2 was called"
    );
}

#[tokio::test]
async fn report_never_speaks_imdsv1() {
    let setup = Setup::new();
    // A service that would answer bare GETs: the token is still asked for first, and sent.
    let lenient = Imds::ignoring_tokens(ID, "us-east-1").await;
    let ec2 = ec2_ok(&[ID]).await;
    exited(
        report_on(&setup, &lenient, &ec2.uri(), &[], &["loss=0.5"]),
        0,
    );
    assert_eq!(
        lenient.requests(),
        [put_token(), get("instance-id"), get("placement/region")]
    );
    assert_eq!(ec2_actions(&ec2).await, ["CreateTags"]);

    // An IMDSv1-only service refuses the token: no bare GET follows, nothing is tagged.
    let v1 = Imds::v1_only(ID, "us-east-1").await;
    let ec2 = ec2_ok(&[ID]).await;
    let out = exited(report_on(&setup, &v1, &ec2.uri(), &[], &["loss=0.5"]), 1);
    let text = stderr(&out);
    assert!(
        text.starts_with(
            "error: reading the instance id from the instance metadata service (IMDSv2) failed"
        ),
        "{text}"
    );
    assert!(
        v1.requests().iter().all(|r| r.method == "PUT"),
        "{:?}",
        v1.requests()
    );
    assert!(!v1.requests().is_empty());
    assert_eq!(ec2_actions(&ec2).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_throttled_create_tags_is_retried_and_a_refused_one_fails_in_one_line() {
    let setup = Setup::new();
    let imds = Imds::start(ID, "us-east-1").await;
    let ec2 = ec2_ok(&[ID]).await;
    let refusal = |code: &str| {
        ResponseTemplate::new(400).set_body_string(format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>{code} here.</Message>\
             </Error></Errors><RequestID>r</RequestID></Response>"
        ))
    };
    Mock::given(method("POST"))
        .and(body_string_contains("Action=CreateTags"))
        .respond_with(refusal("RequestLimitExceeded"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&ec2)
        .await;
    let started = std::time::Instant::now();
    exited(report_on(&setup, &imds, &ec2.uri(), &[], &["loss=0.5"]), 0);
    assert_eq!(ec2_actions(&ec2).await, ["CreateTags", "CreateTags"]);
    // Full jitter under the first retry's 500 ms ceiling.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let ec2 = ec2_ok(&[ID]).await;
    Mock::given(method("POST"))
        .respond_with(refusal("UnauthorizedOperation"))
        .with_priority(1)
        .mount(&ec2)
        .await;
    let out = exited(report_on(&setup, &imds, &ec2.uri(), &[], &["loss=0.5"]), 1);
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "error: tagging {ID} (us-east-1) with its results: CreateTags failed: \
             UnauthorizedOperation"
        )),
        "{text}"
    );
    assert!(text.contains("ec2:CreateTags is not allowed"), "{text}");
    assert_eq!(ec2_actions(&ec2).await, ["CreateTags"], "not retried");
}

#[tokio::test]
async fn a_machine_pushwake_did_not_start_has_no_commit_to_print() {
    let setup = Setup::new();
    let imds = Imds::start(ID, "us-east-1").await;
    let ec2 = ec2_ok(&[ID]).await;
    for (flag, tag) in [
        ("--commit", "pushwake:commit"),
        ("--repeat", "pushwake:repeat"),
    ] {
        let out = exited(report_on(&setup, &imds, &ec2.uri(), &[], &[flag]), 1);
        assert_eq!(
            stderr(&out).trim_end(),
            format!("error: this instance ({ID}) has no {tag} tag: was it started by pushwake?")
        );
        assert!(stdout(&out).is_empty());
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn the_results_land_on_its_own_instance_in_one_create_tags() {
    let moto = moto_url();
    // In eu-west-1, which only the metadata service tells: no region in the environment.
    let ec2 = Ec2::in_region(&moto, "eu-west-1").await;
    let id = ec2.running(1).await.remove(0);
    let proxy = MotoProxy::start(&moto).await;
    let imds = Imds::start(&id, "eu-west-1").await;
    let setup = Setup::new();
    assert!(!setup.config_path().exists());
    let args = ["accuracy=0.9250", "loss=-2.1e-3", "f1:macro=1"];
    let out = exited(report_on(&setup, &imds, &proxy.url(), &[], &args), 0);
    assert_eq!(stdout(&out), "");
    let tags = ec2.tags(&id).await;
    for (key, value) in [
        ("pushwake:result:accuracy", "0.9250"),
        ("pushwake:result:loss", "-2.1e-3"),
        ("pushwake:result:f1:macro", "1"),
    ] {
        assert_eq!(tags.get(key).map(String::as_str), Some(value), "{tags:?}");
    }
    assert_eq!(proxy.calls("CreateTags").await, 1);
    assert_eq!(
        ec2_actions(&proxy.server).await,
        ["CreateTags"],
        "one call in all"
    );
    assert_eq!(
        imds.requests(),
        [put_token(), get("instance-id"), get("placement/region")]
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn commit_and_repeat_print_what_pushwake_tagged() {
    let moto = moto_url();
    let ec2 = Ec2::connect(&moto).await;
    let ids = ec2.running(2).await;
    ec2.tag(
        &ids[..1],
        &[("pushwake:commit", &sha(7)), ("pushwake:repeat", "3")],
    )
    .await;
    let proxy = MotoProxy::start(&moto).await;
    // The environment's region wins over the metadata service's (here, wrongly, another),
    // and AWS_ENDPOINT_URL_EC2 is read as the SDK reads it.
    let url = proxy.url();
    let env = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_EC2", url.as_str()),
    ];
    let imds = Imds::start(&ids[0], "ap-south-1").await;
    let setup = Setup::new();
    let unused = "http://127.0.0.1:9";
    let out = exited(report_on(&setup, &imds, unused, &env, &["--commit"]), 0);
    assert_eq!(stdout(&out), format!("{}\n", sha(7)));
    let out = exited(report_on(&setup, &imds, unused, &env, &["--repeat"]), 0);
    assert_eq!(stdout(&out), "3\n");
    assert_eq!(ec2_actions(&proxy.server).await, ["DescribeInstances"; 2]);
    assert!(
        !imds.requests().iter().any(|r| r.path.ends_with("/region")),
        "the region was asked for: {:?}",
        imds.requests()
    );

    // A machine of the account that pushwake never tagged.
    let other = Imds::start(&ids[1], "us-east-1").await;
    let out = exited(report_on(&setup, &other, unused, &env, &["--commit"]), 1);
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: this instance ({}) has no pushwake:commit tag: was it started by pushwake?",
            ids[1]
        )
    );
}

#[tokio::test]
async fn the_fake_metadata_service_holds_imdsv2s_rules() {
    let imds = Imds::start(ID, "us-east-1").await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", imds.url());
    let id = url("/latest/meta-data/instance-id");
    let token = url("/latest/api/token");
    let ttl = "x-aws-ec2-metadata-token-ttl-seconds";
    let status = |r: reqwest::Response| r.status().as_u16();
    // IMDSv1's bare GET, a made-up token: 401.
    assert_eq!(status(http.get(&id).send().await.unwrap()), 401);
    let forged = http.get(&id).header("x-aws-ec2-metadata-token", "forged");
    assert_eq!(status(forged.send().await.unwrap()), 401);
    // A token needs a TTL from 1 s to 6 h, and no X-Forwarded-For.
    assert_eq!(status(http.put(&token).send().await.unwrap()), 400);
    for bad in ["0", "21601", "soon"] {
        let put = http.put(&token).header(ttl, bad);
        assert_eq!(status(put.send().await.unwrap()), 400, "{bad}");
    }
    let forwarded = http
        .put(&token)
        .header(ttl, "60")
        .header("x-forwarded-for", "10.0.0.1");
    assert_eq!(status(forwarded.send().await.unwrap()), 403);
    let answer = http.put(&token).header(ttl, "60").send().await.unwrap();
    assert_eq!(answer.headers()[ttl], "60");
    let value = answer.text().await.unwrap();
    let with = http.get(&id).header("x-aws-ec2-metadata-token", &value);
    assert_eq!(with.send().await.unwrap().text().await.unwrap(), ID);
}

#[tokio::test]
async fn a_metadata_service_that_fails_once_is_asked_again() {
    let setup = Setup::new();
    let imds = Imds::start(ID, "us-east-1").await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/latest/meta-data/instance-id"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&imds.server)
        .await;
    let ec2 = ec2_ok(&[ID]).await;
    exited(report_on(&setup, &imds, &ec2.uri(), &[], &["loss=0.5"]), 0);
    let asked = imds.server.received_requests().await.unwrap();
    let gets = asked
        .iter()
        .filter(|r| r.url.path() == "/latest/meta-data/instance-id")
        .count();
    assert_eq!(gets, 2, "the 503 was not retried");
    assert_eq!(ec2_actions(&ec2).await, ["CreateTags"]);
}

#[tokio::test]
async fn no_answer_from_the_metadata_service_says_what_to_check() {
    let setup = Setup::new();
    // A port nothing listens on: no connection, as off EC2 (in a container behind the hop
    // limit the answer is dropped instead, and the request times out: the same words).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let ec2 = ec2_ok(&[ID]).await;
    let out = exited(report_at(&setup, &url, &ec2.uri(), &[], &["loss=0.5"]), 1);
    let text = stderr(&out);
    assert!(
        text.contains("no answer to the session token request (no connection)")
            && text.contains("--http-put-response-hop-limit 2"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(ec2_actions(&ec2).await, Vec::<String>::new());
}
