//! The test proxy itself, against moto: the capacity refusals, interruptions and fleet
//! rules it adds to moto behave as EC2's do, so the stories built on it test something.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest, FleetType,
    InstanceType, OnDemandOptionsRequest, RequestLaunchTemplateData, ResourceType,
    SpotAllocationStrategy, SpotOptionsRequest, Tag, TagSpecification,
    TargetCapacitySpecificationRequest,
};

use crate::util::{Ec2, FleetCall, MOTO_EC2_AUTH, MotoProxy, moto_url, sdk_config};

/// moto behind a proxy, a launch template of its own, and two of moto's default subnets
/// (us-east-1a, us-east-1b).
struct Launch {
    proxy: MotoProxy,
    /// Through the proxy, as pushwake calls.
    client: aws_sdk_ec2::Client,
    /// Straight to moto, to see what it holds.
    moto: aws_sdk_ec2::Client,
    template: String,
    a: String,
    b: String,
    /// A tag value only this test's instances carry.
    mark: String,
}

impl Launch {
    async fn new(name: &str) -> Launch {
        let url = moto_url();
        let proxy = MotoProxy::start(&url).await;
        let client = aws_sdk_ec2::Client::new(&sdk_config(&proxy.url()).await);
        let moto = aws_sdk_ec2::Client::new(&sdk_config(&url).await);
        let mark = format!("{name}-{}-{}", std::process::id(), fastrand::u32(..));
        let data = RequestLaunchTemplateData::builder()
            .image_id("ami-12345678")
            .instance_type(InstanceType::T3Micro)
            .build();
        let template = moto
            .create_launch_template()
            .launch_template_name(&mark)
            .launch_template_data(data)
            .send()
            .await
            .expect("create launch template");
        let template = template
            .launch_template()
            .unwrap()
            .launch_template_id()
            .unwrap();
        let subnets = moto
            .describe_subnets()
            .send()
            .await
            .expect("describe subnets");
        let zone = |z: &str| {
            subnets
                .subnets()
                .iter()
                .find(|s| s.availability_zone() == Some(z) && s.default_for_az() == Some(true))
                .and_then(|s| s.subnet_id())
                .expect("a default subnet in each zone")
                .to_owned()
        };
        Launch {
            a: zone("us-east-1a"),
            b: zone("us-east-1b"),
            template: template.to_owned(),
            proxy,
            client,
            moto,
            mark,
        }
    }

    /// An instant fleet of `count` in `market` from the template, one override per subnet.
    fn fleet(
        &self,
        market: DefaultTargetCapacityType,
        count: i32,
        subnets: &[&str],
    ) -> aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder {
        let overrides = subnets
            .iter()
            .map(|s| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(InstanceType::T3Micro)
                    .subnet_id(*s)
                    .build()
            })
            .collect();
        let config = FleetLaunchTemplateConfigRequest::builder()
            .launch_template_specification(
                FleetLaunchTemplateSpecificationRequest::builder()
                    .launch_template_id(&self.template)
                    .version("$Default")
                    .build(),
            )
            .set_overrides(Some(overrides))
            .build();
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("mark").value(&self.mark).build())
            .build();
        self.client
            .create_fleet()
            .r#type(FleetType::Instant)
            .launch_template_configs(config)
            .target_capacity_specification(
                TargetCapacitySpecificationRequest::builder()
                    .total_target_capacity(count)
                    .default_target_capacity_type(market)
                    .build(),
            )
            .tag_specifications(tags)
    }

    /// This test's instances in moto: (id, subnet, state, state reason code).
    async fn instances(&self) -> Vec<(String, String, String, String)> {
        let out = self
            .moto
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:mark")
                    .values(&self.mark)
                    .build(),
            )
            .send()
            .await
            .expect("describe");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_owned(),
                    i.subnet_id().unwrap_or_default().to_owned(),
                    i.state()
                        .and_then(|s| s.name())
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    i.state_reason()
                        .and_then(|r| r.code())
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_refused_subnet_comes_back_in_the_error_set_and_the_rest_launch_in_the_other() {
    let l = Launch::new("refused-subnet").await;
    l.proxy.refuse_capacity(Some(&l.a), None, None);

    let out = l
        .fleet(DefaultTargetCapacityType::OnDemand, 3, &[&l.a, &l.b])
        .send()
        .await
        .expect("an instant fleet answers 200");

    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.error_code(), Some("InsufficientInstanceCapacity"));
    assert_eq!(e.lifecycle().map(|l| l.as_str()), Some("on-demand"));
    let o = e
        .launch_template_and_overrides()
        .and_then(|t| t.overrides())
        .unwrap();
    assert_eq!(o.subnet_id(), Some(l.a.as_str()));
    assert_eq!(o.availability_zone(), Some("us-east-1a"));
    assert_eq!(o.instance_type(), Some(&InstanceType::T3Micro));
    let spec = e
        .launch_template_and_overrides()
        .and_then(|t| t.launch_template_specification());
    assert_eq!(
        spec.and_then(|s| s.launch_template_id()),
        Some(l.template.as_str())
    );
    let message = e.error_message().unwrap();
    assert!(
        message.starts_with(
            "We currently do not have sufficient t3.micro capacity in the Availability Zone \
             you requested (us-east-1a)."
        ) && message.contains("us-east-1b"),
        "{message}"
    );
    let launched: Vec<String> = out
        .instances()
        .iter()
        .flat_map(|i| i.instance_ids())
        .cloned()
        .collect();
    assert_eq!(launched.len(), 3, "{:?}", out.instances());
    let instances = l.instances().await;
    assert_eq!(instances.len(), 3);
    assert!(
        instances.iter().all(|(_, subnet, _, _)| *subnet == l.b),
        "{instances:?}"
    );
    assert_eq!(l.proxy.calls("CreateFleet").await, 1);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn every_override_refused_launches_nothing_and_still_answers_200() {
    let l = Launch::new("all-refused").await;
    l.proxy
        .refuse_capacity(None, Some("t3.micro"), Some("spot"));

    let out = l
        .fleet(DefaultTargetCapacityType::Spot, 2, &[&l.a, &l.b])
        .send()
        .await
        .expect("an instant fleet answers 200");

    assert!(out.fleet_id().is_some_and(|f| f.starts_with("fleet-")));
    assert!(out.instances().is_empty(), "{:?}", out.instances());
    let refused: Vec<(Option<&str>, Option<&str>)> = out
        .errors()
        .iter()
        .map(|e| {
            let o = e
                .launch_template_and_overrides()
                .and_then(|t| t.overrides());
            (
                e.lifecycle().map(|l| l.as_str()),
                o.and_then(|o| o.availability_zone()),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (Some("spot"), Some("us-east-1a")),
            (Some("spot"), Some("us-east-1b"))
        ]
    );
    assert!(l.instances().await.is_empty(), "moto launched nothing");

    // On demand was not refused; healed, spot launches too.
    let out = l
        .fleet(DefaultTargetCapacityType::OnDemand, 1, &[&l.a])
        .send()
        .await
        .unwrap();
    assert!(out.errors().is_empty());
    l.proxy.heal_capacity();
    let out = l
        .fleet(DefaultTargetCapacityType::Spot, 1, &[&l.a])
        .send()
        .await
        .unwrap();
    assert!(out.errors().is_empty());
    assert_eq!(
        out.instances()[0].lifecycle().map(|l| l.as_str()),
        Some("spot")
    );
    assert_eq!(l.instances().await.len(), 2);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn an_interrupted_instance_describes_terminated_by_a_spot_interruption() {
    let l = Launch::new("interrupted").await;
    let out = l
        .fleet(DefaultTargetCapacityType::Spot, 2, &[&l.a])
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = out
        .instances()
        .iter()
        .flat_map(|i| i.instance_ids())
        .cloned()
        .collect();
    assert_eq!(ids.len(), 2);

    l.proxy.interrupt(&ids[0]);

    let described = l
        .client
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap();
    let seen: Vec<(String, String, String)> = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let reason = i.state_reason();
            (
                i.state()
                    .and_then(|s| s.name())
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                reason.and_then(|r| r.code()).unwrap_or_default().to_owned(),
                reason
                    .and_then(|r| r.message())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let interrupted = (
        "terminated".to_owned(),
        "Server.SpotInstanceTermination".to_owned(),
        "Server.SpotInstanceTermination: Spot instance termination".to_owned(),
    );
    assert_eq!(seen.len(), 2);
    assert!(seen.contains(&interrupted), "{seen:?}");
    assert!(
        seen.iter().any(|(state, _, _)| state == "running"),
        "{seen:?}"
    );
    // moto itself says a user did it; only the proxy tells EC2's reason.
    let by_moto = l.instances().await;
    let first = by_moto.iter().find(|(id, ..)| *id == ids[0]).unwrap();
    assert_eq!(first.3, "Client.UserInitiatedShutdown");
    // The interruption is EC2's doing, not a call of pushwake's.
    assert_eq!(l.proxy.calls("TerminateInstances").await, 0);
    assert!(l.proxy.terminated().is_empty());

    l.client
        .terminate_instances()
        .instance_ids(&ids[1])
        .send()
        .await
        .unwrap();
    assert_eq!(l.proxy.terminated(), [ids[1].clone()]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn fleets_records_each_call_as_sent_before_refusals() {
    let l = Launch::new("recorded").await;
    l.proxy.refuse_capacity(Some(&l.a), None, None);
    let fleet_tags = TagSpecification::builder()
        .resource_type(ResourceType::Fleet)
        .tags(Tag::builder().key("only").value("the fleet").build())
        .build();

    l.fleet(DefaultTargetCapacityType::Spot, 4, &[&l.a, &l.b])
        .tag_specifications(fleet_tags)
        .client_token("token-1")
        .spot_options(
            SpotOptionsRequest::builder()
                .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                .single_instance_type(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    l.fleet(DefaultTargetCapacityType::OnDemand, 1, &[&l.b])
        .on_demand_options(
            OnDemandOptionsRequest::builder()
                .single_instance_type(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    l.fleet(DefaultTargetCapacityType::OnDemand, 1, &[&l.b])
        .dry_run(true)
        .send()
        .await
        .unwrap_err();

    let t3 = || Some("t3.micro".to_owned());
    let mark: std::collections::BTreeMap<String, String> =
        [("mark".to_owned(), l.mark.clone())].into_iter().collect();
    let calls = l.proxy.fleets();
    // Without one of ours, the SDK sends a random token of its own: a retry by the SDK is
    // idempotent, a retry by pushwake (a new call) is not.
    let generated = calls.get(1).and_then(|c| c.client_token.clone());
    assert!(
        generated.as_ref().is_some_and(|t| t.len() == 36),
        "{generated:?}"
    );
    assert_eq!(
        calls,
        [
            FleetCall {
                market: "spot".to_owned(),
                count: 4,
                overrides: vec![(t3(), l.a.clone()), (t3(), l.b.clone())],
                single_type: true,
                tags: mark.clone(),
                client_token: Some("token-1".to_owned()),
            },
            FleetCall {
                market: "on-demand".to_owned(),
                count: 1,
                overrides: vec![(t3(), l.b.clone())],
                single_type: false,
                tags: mark,
                client_token: generated,
            },
        ]
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_start_refused_for_capacity_fails_whole_until_healed() {
    let url = moto_url();
    let ec2 = Ec2::connect(&url).await;
    let ids = ec2.stopped(2).await;
    let proxy = MotoProxy::start(&url).await;
    let client = aws_sdk_ec2::Client::new(&sdk_config(&proxy.url()).await);
    proxy.refuse_capacity_start(&ids[0]);

    let err = client
        .start_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap_err();

    assert_eq!(err.code(), Some("InsufficientInstanceCapacity"));
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(500));
    assert!(
        err.message().is_some_and(|m| m.starts_with(
            "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested"
        )),
        "{:?}",
        err.message()
    );
    assert_eq!(ec2.states(&ids).await, ["stopped", "stopped"]);
    assert_eq!((proxy.starts_of(&ids[0]), proxy.starts_of(&ids[1])), (0, 0));

    client
        .start_instances()
        .instance_ids(&ids[1])
        .send()
        .await
        .expect("another starts");
    proxy.heal_capacity();
    client
        .start_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .expect("healed");
    assert_eq!((proxy.starts_of(&ids[0]), proxy.starts_of(&ids[1])), (1, 1));
}

/// A raw EC2 query call to the proxy, for requests the SDK would not send; its status and
/// error code.
async fn raw(proxy: &MotoProxy, body: &str) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(proxy.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", MOTO_EC2_AUTH)
        .body(format!("Action=CreateFleet&Version=2016-11-15&{body}"))
        .send()
        .await
        .expect("the proxy answers");
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_owned())
        .unwrap_or_default();
    (status, code)
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn a_fleet_breaking_ec2s_rules_gets_ec2s_error() {
    let l = Launch::new("rules").await;
    let config = format!(
        "LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId={}&\
         LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version=1&\
         LaunchTemplateConfigs.1.Overrides.1.SubnetId={}",
        l.template, l.b
    );
    let capacity = "TargetCapacitySpecification.TotalTargetCapacity=1";
    let tag = |kind: &str| {
        format!(
            "TagSpecification.1.ResourceType={kind}&TagSpecification.1.Tag.1.Key=mark&\
             TagSpecification.1.Tag.1.Value={}",
            l.mark
        )
    };

    let no_count = raw(&l.proxy, &format!("Type=instant&{config}")).await;
    let no_configs = raw(&l.proxy, &format!("Type=instant&{capacity}")).await;
    let volume_tags = raw(
        &l.proxy,
        &format!("Type=instant&{config}&{capacity}&{}", tag("volume")),
    )
    .await;
    let instance_tags_on_request = raw(
        &l.proxy,
        &format!("Type=request&{config}&{capacity}&{}", tag("instance")),
    )
    .await;
    let configs: String = (1..=51)
        .map(|n| format!("&LaunchTemplateConfigs.{n}.LaunchTemplateSpecification.LaunchTemplateId={}&LaunchTemplateConfigs.{n}.LaunchTemplateSpecification.Version=1", l.template))
        .collect();
    let too_many = raw(&l.proxy, &format!("Type=instant&{capacity}{configs}")).await;
    let dry_no_count = raw(&l.proxy, &format!("Type=instant&DryRun=true&{config}")).await;

    assert_eq!(no_count, (400, "MissingParameter".to_owned()));
    assert_eq!(no_configs, (400, "MissingParameter".to_owned()));
    assert_eq!(volume_tags, (400, "InvalidParameterValue".to_owned()));
    assert_eq!(
        instance_tags_on_request,
        (400, "InvalidParameterValue".to_owned())
    );
    assert_eq!(too_many, (400, "InvalidParameterValue".to_owned()));
    assert_eq!(dry_no_count, (400, "MissingParameter".to_owned()));
    assert!(
        l.instances().await.is_empty(),
        "nothing refused reached moto"
    );
    assert!(
        l.proxy.fleets().is_empty(),
        "refused calls are not recorded"
    );

    // Within the rules, the same call launches.
    let ok = raw(
        &l.proxy,
        &format!("Type=instant&{config}&{capacity}&{}", tag("instance")),
    )
    .await;
    assert_eq!(ok, (200, String::new()));
    assert_eq!(l.instances().await.len(), 1);
}
