//! Carrying out starts and stops, through the library's public API, against an EC2 that
//! answers in EC2's own XML (wiremock) for the states and errors moto cannot produce.

use std::time::Duration;

use pushwake::ec2::{Ec2, InstanceState};
use pushwake::launch::{self, Outcome, Unfenced};
use pushwake::retry::Policy;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{ec2_actions as actions, sdk_config};

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

/// Makes EC2 answer `action` with `response`: the first `times` calls, ahead of any other
/// answer, or with `None` every call not answered otherwise.
async fn answer(server: &MockServer, action: &str, response: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(body_string_contains(format!("Action={action}").as_str()))
        .respond_with(response);
    match times {
        Some(n) => mock.up_to_n_times(n).with_priority(1),
        None => mock,
    }
    .mount(server)
    .await;
}

async fn client(server: &MockServer) -> Ec2 {
    let tagged = "<CreateTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
                  <requestId>r</requestId><return>true</return></CreateTagsResponse>";
    answer(server, "CreateTags", xml(tagged.to_owned()), None).await;
    Ec2::from_sdk_config(&sdk_config(&server.uri()).await, Policy::default())
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

const STAMP: &[(&str, &str)] = &[("pushwake:commit", "0123")];
/// No repeat tags: the machines of a run of one repeat each before repeats were numbered.
const NO_REPEATS: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();

fn quick() -> launch::Options {
    launch::Options {
        stopping_wait: Duration::from_secs(5),
        stopping_poll: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn a_stopping_instance_is_waited_for_then_started() {
    let server = MockServer::start().await;
    let described = |state| xml(describe_xml(&[(A, state)]));
    answer(&server, "DescribeInstances", described("stopping"), Some(1)).await;
    answer(&server, "DescribeInstances", described("stopped"), None).await;
    answer(&server, "StartInstances", xml(start_xml(&[A])), None).await;

    let ec2 = client(&server).await;
    let outcomes = launch::start(
        &ec2,
        &Unfenced,
        &ids(&[B]),
        &ids(&[A]),
        STAMP,
        &NO_REPEATS,
        quick(),
    )
    .await;

    assert_eq!(
        outcomes,
        [
            (B.to_owned(), Outcome::Started),
            (A.to_owned(), Outcome::Started)
        ]
    );
    // B is started at once, without waiting for A.
    assert_eq!(
        actions(&server).await,
        [
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
    let stopping = xml(describe_xml(&[(A, "stopping")]));
    answer(&server, "DescribeInstances", stopping, None).await;
    let opts = launch::Options {
        stopping_wait: Duration::from_millis(200),
        stopping_poll: Duration::from_millis(20),
    };

    let outcomes = launch::start(
        &client(&server).await,
        &Unfenced,
        &[],
        &ids(&[A]),
        STAMP,
        &NO_REPEATS,
        opts,
    )
    .await;

    assert!(matches!(&outcomes[0].1, Outcome::Failed(why) if why.contains("still stopping")));
    assert!(
        !actions(&server)
            .await
            .contains(&"StartInstances".to_owned())
    );
}

/// An EC2 that refuses `action` with `code` whenever the call names `bad`, and accepts
/// the rest.
async fn refusing(action: &str, bad: &str, code: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains(format!("Action={action}").as_str()))
        .and(body_string_contains(bad))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(error_xml(code, &format!("{code} for {bad}."))),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    answer(&server, "StartInstances", xml(start_xml(&[A])), None).await;
    server
}

/// Starts A and B, both stopped, through `server`.
async fn start_both(server: &MockServer) -> Vec<(String, Outcome)> {
    launch::start(
        &client(server).await,
        &Unfenced,
        &ids(&[A, B]),
        &[],
        STAMP,
        &NO_REPEATS,
        quick(),
    )
    .await
}

#[tokio::test]
async fn a_batch_refused_for_one_instance_is_started_one_by_one() {
    // B was terminated between the describe and the start: EC2 fails the whole batch.
    let server = refusing("StartInstances", B, "IncorrectInstanceState").await;
    let outcomes = start_both(&server).await;

    assert_eq!(outcomes[0], (A.to_owned(), Outcome::Started));
    assert!(
        matches!(&outcomes[1].1, Outcome::Failed(why) if why.contains("IncorrectInstanceState"))
    );
    assert_eq!(
        actions(&server).await,
        [
            "CreateTags",
            "StartInstances",
            "StartInstances",
            "StartInstances"
        ]
    );
}

#[tokio::test]
async fn every_refusal_that_may_concern_one_instance_falls_back_to_one_by_one() {
    for code in [
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "InsufficientFreeAddressesInSubnet",
        "UnsupportedOperation",
        "OperationNotPermitted",
        "InsufficientInstanceCapacity",
    ] {
        let server = refusing("StartInstances", B, code).await;

        let outcomes = start_both(&server).await;

        assert_eq!(outcomes[0], (A.to_owned(), Outcome::Started), "{code}");
        // No room (capacity, a limit) is told apart: its repeat may go elsewhere.
        assert!(
            matches!(&outcomes[1].1, Outcome::Failed(why) | Outcome::NoCapacity(why) if why.contains(code)),
            "{code}: {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn a_tag_limit_on_one_instance_tags_the_others_one_by_one() {
    let server = refusing("CreateTags", B, "TagLimitExceeded").await;

    let outcomes = start_both(&server).await;

    // B's failure comes first: it was known before any start.
    assert!(
        matches!(&outcomes[0].1, Outcome::Failed(why) if why.contains("TagLimitExceeded") && why.contains("cannot tag")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], (A.to_owned(), Outcome::Started));
    // B is never started untagged.
    assert_eq!(
        actions(&server).await,
        ["CreateTags", "CreateTags", "CreateTags", "StartInstances"]
    );
}

#[tokio::test]
async fn a_missing_permission_is_not_tried_one_by_one() {
    let server = refusing("StartInstances", A, "UnauthorizedOperation").await;

    let outcomes = start_both(&server).await;

    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Failed(_))),
        "{outcomes:?}"
    );
    assert_eq!(actions(&server).await, ["CreateTags", "StartInstances"]);
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let server = MockServer::start().await;
    let throttled = ResponseTemplate::new(503)
        .set_body_string(error_xml("RequestLimitExceeded", "Request limit exceeded."));
    answer(&server, "DescribeInstances", throttled, Some(2)).await;
    let running = xml(describe_xml(&[(A, "running")]));
    answer(&server, "DescribeInstances", running, None).await;
    let policy = Policy {
        base: Duration::from_millis(10),
        ..Policy::default()
    };
    let ec2 = Ec2::from_sdk_config(&sdk_config(&server.uri()).await, policy);

    let described = ec2.describe(&[A.to_owned()]).await.unwrap();

    assert_eq!(described[0].state, InstanceState::Running);
    assert_eq!(actions(&server).await.len(), 3);
}

#[tokio::test]
async fn a_start_of_1001_instances_is_split_at_ec2s_1000_ids_per_call() {
    let ids: Vec<String> = (0..1001).map(|i| format!("i-{i:017x}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // The fake refuses a call naming more than 1,000 ids, as EC2 does.
    let f = crate::util::Fake::with(&refs, "").await;
    f.first_run_start();

    f.once(0);

    let calls = f.actions().await;
    let count = |a: &str| calls.iter().filter(|c| *c == a).count();
    // The stamp and the start: 1,000 and 1 each, no one-by-one; beside them each machine's
    // own `pushwake:repeat`, a value no other machine shares.
    assert_eq!(
        (count("CreateTags"), count("StartInstances")),
        (2 + 1001, 2),
        "1,000 and 1 each, no one-by-one"
    );
    assert_eq!(count("DescribeInstances"), 6, "200 filter values each");
}

/// One instant fleet against moto, through the counting proxy: the client layer's launch
/// (ec2/fleet.rs) and what goes with it (describe by tags, subnets, the template's version,
/// terminate).
#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_instant_fleet_launches_machines_tagged_from_birth_that_describe_finds_and_terminate_ends()
 {
    use pushwake::ec2::{FleetRequest, Kind, Market, Override};

    let moto = crate::util::moto_url();
    let setup = crate::util::Ec2::connect(&moto).await;
    // moto keeps its state for the whole run: names and tags unique to this test.
    let name = format!("pushwake-fleet-{}", std::process::id());
    let template = setup.fleet_launch_template(&name, "t3.micro").await;
    let zones = setup.fleet_default_subnets().await;
    let (a, b) = (&zones[0], &zones[1]);
    let proxy = crate::util::MotoProxy::start(&moto).await;
    let ec2 = Ec2::from_sdk_config(&sdk_config(&proxy.url()).await, Policy::default());

    // The subnets map to their zones; one that does not exist is absent, not an error.
    let mut mapped = ec2
        .subnets(&ids(&[&a.0, &b.0, "subnet-0000000000000000f"]))
        .await
        .unwrap();
    mapped.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(mapped, [a.clone(), b.clone()]);
    // The template's default version, by id and by name; a missing one is NotFound.
    assert_eq!(ec2.launch_template(&template).await.unwrap(), "1");
    assert_eq!(ec2.launch_template(&name).await.unwrap(), "1");
    for missing in ["lt-0123456789abcdef0", "pushwake-no-such-template"] {
        let e = ec2.launch_template(missing).await.unwrap_err();
        assert_eq!(e.kind, Kind::NotFound, "{missing}: {e}");
    }

    let commit = format!("fleet-{}", std::process::id());
    let req = FleetRequest {
        template: template.clone(),
        version: None,
        overrides: [a, b]
            .iter()
            .map(|(subnet, _)| Override {
                instance_type: Some("t3.small".to_owned()),
                subnet: subnet.clone(),
            })
            .collect(),
        market: Market::Spot,
        count: 2,
        single_type: true,
        tags: vec![
            ("pushwake:commit".to_owned(), commit.clone()),
            ("pushwake:owner".to_owned(), "fleet-test".to_owned()),
        ],
        client_token: None,
    };
    ec2.fleet_permitted(&req).await.unwrap();
    let out = ec2.create_fleet(&req).await.unwrap();
    assert!(out.refused.is_empty(), "{:?}", out.refused);
    assert_eq!(out.launched.len(), 2, "{out:?}");
    for l in &out.launched {
        assert_eq!(l.market, Market::Spot);
        assert_eq!(l.instance_type.as_deref(), Some("t3.small"));
        assert!([&a.0, &b.0].contains(&l.subnet.as_ref().unwrap()), "{l:?}");
    }
    // One launch call (and its DryRun), and no tag call: the tags came with the launch.
    assert_eq!(proxy.calls("CreateFleet").await, 2);
    assert_eq!(proxy.calls("CreateTags").await, 0);

    let mine = [
        ("pushwake:commit", vec![commit.clone()]),
        ("pushwake:owner", vec!["fleet-test".to_owned()]),
    ];
    let mut launched: Vec<String> = out.launched.iter().map(|l| l.id.clone()).collect();
    launched.sort();
    let found = ec2.describe_with_tags(&mine, false).await.unwrap();
    let mut found_ids: Vec<String> = found.iter().map(|i| i.id.clone()).collect();
    found_ids.sort();
    assert_eq!(found_ids, launched);
    for i in &found {
        assert_eq!(i.tags.get("pushwake:commit"), Some(&commit));
        assert!(i.spot, "{i:?}");
        assert_eq!(i.instance_type.as_deref(), Some("t3.small"));
        let zone = zones.iter().find(|(s, _)| Some(s) == i.subnet.as_ref());
        assert_eq!(zone.map(|z| &z.1), i.zone.as_ref(), "{i:?}");
    }

    ec2.terminate(&launched).await.unwrap();
    assert!(
        ec2.describe_with_tags(&mine, false)
            .await
            .unwrap()
            .is_empty()
    );
    // Terminated machines stay visible to a look at every state, with why they ended.
    let ended = ec2.describe_with_tags(&mine, true).await.unwrap();
    assert_eq!(ended.len(), 2);
    for i in &ended {
        assert_eq!(i.state, InstanceState::Terminated);
        let reason = i.state_reason.as_ref().expect("a state reason");
        assert!(
            reason.is_shutdown() && !reason.is_interruption(),
            "{reason}"
        );
    }
}

fn fleet_xml(launched: &[(&str, &str)], refused: &[(&str, &str)]) -> String {
    let overrides = |subnet: &str| {
        format!(
            "<launchTemplateAndOverrides><launchTemplateSpecification><launchTemplateId>\
             lt-0123456789abcdef0</launchTemplateId><version>1</version>\
             </launchTemplateSpecification><overrides><instanceType>g5.xlarge</instanceType>\
             <subnetId>{subnet}</subnetId></overrides></launchTemplateAndOverrides>"
        )
    };
    let instances: String = launched
        .iter()
        .map(|(id, subnet)| {
            format!(
                "<item>{}<lifecycle>spot</lifecycle><instanceIds><item>{id}</item></instanceIds>\
                 <instanceType>g5.xlarge</instanceType></item>",
                overrides(subnet)
            )
        })
        .collect();
    let errors: String = refused
        .iter()
        .map(|(subnet, code)| {
            format!(
                "<item>{}<lifecycle>spot</lifecycle><errorCode>{code}</errorCode><errorMessage>\
                 There is no Spot capacity available that matches your request.</errorMessage></item>",
                overrides(subnet)
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r4</requestId>\
         <fleetId>fleet-0123</fleetId><errorSet>{errors}</errorSet>\
         <fleetInstanceSet>{instances}</fleetInstanceSet></CreateFleetResponse>"
    )
}

fn spot_fleet(count: u32) -> pushwake::ec2::FleetRequest {
    pushwake::ec2::FleetRequest {
        template: "lt-0123456789abcdef0".to_owned(),
        version: None,
        overrides: ["subnet-a", "subnet-b"]
            .map(|s| pushwake::ec2::Override {
                instance_type: Some("g5.xlarge".to_owned()),
                subnet: s.to_owned(),
            })
            .to_vec(),
        market: pushwake::ec2::Market::Spot,
        count,
        single_type: true,
        tags: vec![("pushwake:commit".to_owned(), "0123".to_owned())],
        client_token: None,
    }
}

/// A 200 naming the refused overrides beside what was launched (EC2's instant fleet, which
/// moto never refuses), read from EC2's XML.
#[tokio::test]
async fn a_fleet_refused_in_one_zone_answers_what_it_launched_in_the_other() {
    use pushwake::ec2::{Kind, Market};
    let server = MockServer::start().await;
    let body = fleet_xml(
        &[(A, "subnet-b"), (B, "subnet-b")],
        &[("subnet-a", "InsufficientInstanceCapacity")],
    );
    answer(&server, "CreateFleet", xml(body), None).await;
    let ec2 = client(&server).await;

    let out = ec2.create_fleet(&spot_fleet(2)).await.unwrap();

    let launched: Vec<_> = out
        .launched
        .iter()
        .map(|l| (l.id.as_str(), l.subnet.as_deref(), l.market))
        .collect();
    assert_eq!(
        launched,
        [
            (A, Some("subnet-b"), Market::Spot),
            (B, Some("subnet-b"), Market::Spot)
        ]
    );
    let [refused] = &out.refused[..] else {
        panic!("one refusal: {out:?}")
    };
    assert_eq!(
        (refused.subnet.as_deref(), refused.instance_type.as_deref()),
        (Some("subnet-a"), Some("g5.xlarge"))
    );
    assert_eq!(
        (refused.code.as_str(), refused.kind),
        ("InsufficientInstanceCapacity", Kind::Capacity)
    );
    assert_eq!(actions(&server).await, ["CreateFleet"]);
}

/// A retried launch is the same request to EC2: one client token for every attempt, so an
/// attempt EC2 carried out but whose answer was lost launches nothing more.
#[tokio::test]
async fn a_retried_fleet_carries_one_client_token() {
    let server = MockServer::start().await;
    let throttled = ResponseTemplate::new(503).set_body_raw(
        error_xml("RequestLimitExceeded", "Request limit exceeded."),
        "text/xml",
    );
    answer(&server, "CreateFleet", throttled, Some(2)).await;
    answer(
        &server,
        "CreateFleet",
        xml(fleet_xml(&[(A, "subnet-a")], &[])),
        None,
    )
    .await;
    let ec2 = Ec2::from_sdk_config(
        &sdk_config(&server.uri()).await,
        Policy {
            base: Duration::from_millis(1),
            ..Policy::default()
        },
    );

    let out = ec2.create_fleet(&spot_fleet(1)).await.unwrap();

    assert_eq!(out.launched.len(), 1);
    let requests = server.received_requests().await.unwrap();
    let tokens: Vec<String> = requests
        .iter()
        .map(|r| {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            let token = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("ClientToken="))
                .expect("a client token");
            token.to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    assert!(tokens.iter().all(|t| t == &tokens[0]), "{tokens:?}");
    // A second launch is another request, with a token of its own.
    ec2.create_fleet(&spot_fleet(1)).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let last = String::from_utf8_lossy(&requests[3].body).into_owned();
    assert!(
        !last.contains(&format!("ClientToken={}", tokens[0])),
        "{last}"
    );
}
