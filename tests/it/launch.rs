//! Starting one trigger's instances, through the library's public API, against an EC2
//! that answers in EC2's own XML (wiremock) for the states and errors moto cannot produce.

use std::time::Duration;

use pushwake::config::{Repo, Watch};
use pushwake::ec2::{Ec2, State};
use pushwake::launch::{self, Outcome};
use pushwake::retry::Policy;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::util::sdk_config;

const A: &str = "i-0aaaaaaaaaaaaaaaa";
const B: &str = "i-0bbbbbbbbbbbbbbbb";

fn describe_xml(instances: &[(&str, &str)]) -> String {
    let items: String = instances
        .iter()
        .map(|(id, state)| {
            format!(
                "<item><instanceId>{id}</instanceId><instanceState><code>0</code>\
                 <name>{state}</name></instanceState></item>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r1</requestId>\
         <reservationSet><item><reservationId>r-0123</reservationId><ownerId>123456789012</ownerId>\
         <instancesSet>{items}</instancesSet></item></reservationSet></DescribeInstancesResponse>"
    )
}

fn start_xml(ids: &[&str]) -> String {
    let items: String = ids
        .iter()
        .map(|id| {
            format!(
                "<item><instanceId>{id}</instanceId><currentState><code>0</code><name>pending</name>\
                 </currentState><previousState><code>80</code><name>stopped</name></previousState></item>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<StartInstancesResponse \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r2</requestId>\
         <instancesSet>{items}</instancesSet></StartInstancesResponse>"
    )
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>r3</RequestID></Response>"
    )
}

fn xml(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/xml;charset=UTF-8")
}

async fn client(server: &MockServer) -> Ec2 {
    Mock::given(method("POST"))
        .and(body_string_contains("Action=CreateTags"))
        .respond_with(xml(
            "<CreateTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>r</requestId><return>true</return></CreateTagsResponse>"
                .to_owned(),
        ))
        .mount(server)
        .await;
    Ec2::from_sdk_config(&sdk_config(&server.uri()).await, Policy::default())
}

fn watch(ids: &[&str]) -> Watch {
    let repo = Repo {
        owner: "octo".into(),
        name: "trainer".into(),
    };
    Watch::new(repo, "main", ids.iter().map(|s| s.to_string()).collect())
}

const STAMP: &[(&str, &str)] = &[("pushwake:commit", "0123")];

/// The `Action=` of each request EC2 received, in order.
async fn actions(server: &MockServer) -> Vec<String> {
    let requests: Vec<Request> = server.received_requests().await.unwrap();
    requests
        .iter()
        .map(|r| {
            let body = String::from_utf8_lossy(&r.body);
            body.split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn quick() -> launch::Options {
    launch::Options {
        stopping_wait: Duration::from_secs(5),
        stopping_poll: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn a_stopping_instance_is_waited_for_then_started() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeInstances"))
        .respond_with(xml(describe_xml(&[(A, "stopping"), (B, "stopped")])))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeInstances"))
        .respond_with(xml(describe_xml(&[(A, "stopped")])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=StartInstances"))
        .respond_with(xml(start_xml(&[A])))
        .mount(&server)
        .await;

    let launch = launch::start(&client(&server).await, &watch(&[A, B]), STAMP, quick())
        .await
        .unwrap();

    assert_eq!(
        launch.instances,
        [
            (A.to_owned(), Outcome::Started),
            (B.to_owned(), Outcome::Started)
        ]
    );
    assert!(!launch.needs_retry());
    // B is started at once, without waiting for A.
    assert_eq!(
        actions(&server).await,
        [
            "DescribeInstances",
            "CreateTags",
            "StartInstances",
            "DescribeInstances",
            "DescribeInstances",
            "CreateTags",
            "StartInstances"
        ]
    );
}

#[tokio::test]
async fn an_instance_still_stopping_at_the_deadline_is_left_for_the_next_pass() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeInstances"))
        .respond_with(xml(describe_xml(&[(A, "stopping")])))
        .mount(&server)
        .await;
    let opts = launch::Options {
        stopping_wait: Duration::from_millis(200),
        stopping_poll: Duration::from_millis(20),
    };

    let launch = launch::start(&client(&server).await, &watch(&[A]), STAMP, opts)
        .await
        .unwrap();

    assert!(
        matches!(&launch.instances[0].1, Outcome::Failed(why) if why.contains("still stopping"))
    );
    assert!(launch.needs_retry(), "the head must stay unhandled");
    assert!(
        !actions(&server)
            .await
            .contains(&"StartInstances".to_owned())
    );
}

#[tokio::test]
async fn a_batch_refused_for_one_instance_is_started_one_by_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeInstances"))
        .respond_with(xml(describe_xml(&[(A, "stopped"), (B, "stopped")])))
        .mount(&server)
        .await;
    // B was terminated between the describe and the start: EC2 fails the whole batch.
    Mock::given(method("POST"))
        .and(body_string_contains("Action=StartInstances"))
        .and(body_string_contains(B))
        .respond_with(ResponseTemplate::new(400).set_body_string(error_xml(
            "IncorrectInstanceState",
            &format!("The instance '{B}' is not in a state from which it can be started."),
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=StartInstances"))
        .respond_with(xml(start_xml(&[A])))
        .mount(&server)
        .await;

    let launch = launch::start(&client(&server).await, &watch(&[A, B]), STAMP, quick())
        .await
        .unwrap();

    assert_eq!(launch.instances[0], (A.to_owned(), Outcome::Started));
    assert!(
        matches!(&launch.instances[1].1, Outcome::Failed(why) if why.contains("IncorrectInstanceState"))
    );
    assert_eq!(
        actions(&server).await,
        [
            "DescribeInstances",
            "CreateTags",
            "StartInstances",
            "StartInstances",
            "StartInstances"
        ]
    );
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeInstances"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_string(error_xml("RequestLimitExceeded", "Request limit exceeded.")),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeInstances"))
        .respond_with(xml(describe_xml(&[(A, "running")])))
        .mount(&server)
        .await;
    let policy = Policy {
        base: Duration::from_millis(10),
        ..Policy::default()
    };
    let ec2 = Ec2::from_sdk_config(&sdk_config(&server.uri()).await, policy);

    let described = ec2.describe(&[A.to_owned()]).await.unwrap();

    assert_eq!(described[0].state, State::Running);
    assert_eq!(actions(&server).await.len(), 3);
}
