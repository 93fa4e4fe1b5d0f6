//! The price sources, through the library's public API: the Price List Query API against
//! a fake that answers in its real shape, Spot price history through the proxy in front
//! of moto (moto's own is one constant), and volumes from moto.

use std::time::Duration;

use pushwake::ec2::{Action, Ec2};
use pushwake::pricing::{Kind, Pricing};
use pushwake::retry::Policy;

use crate::util::{self, MotoProxy, PriceList, moto_url, sdk_config};

fn quick() -> Policy {
    Policy {
        base: Duration::from_millis(10),
        ..Policy::default()
    }
}

async fn pricing(list: &PriceList) -> Pricing {
    Pricing::from_sdk_config(&sdk_config(&list.url()).await, quick())
}

#[tokio::test]
async fn the_on_demand_price_is_read_from_a_real_shaped_price_list() {
    let list = PriceList::start().await;
    list.pricing_offer("g5.xlarge", "us-east-1", 1.006);
    list.pricing_offer("g5.xlarge", "eu-west-1", 1.123);
    list.pricing_offer("g5.2xlarge", "us-east-1", 1.212);

    let price = pricing(&list)
        .await
        .on_demand("g5.xlarge", "us-east-1")
        .await;

    // Windows, dedicated and SQL Server products of the same type and region are dearer:
    // a filter left out would have given one of theirs.
    assert_eq!(price.unwrap(), Some(1.006));
    assert_eq!(list.pricing_requests().await, 1);
    assert_eq!(
        list.pricing_scopes(),
        [("us-east-1".to_owned(), "pricing".to_owned())]
    );
}

#[tokio::test]
async fn a_type_the_price_list_does_not_have_is_no_price() {
    let list = PriceList::start().await;
    list.pricing_offer("g5.xlarge", "us-east-1", 1.006);
    let pricing = pricing(&list).await;

    assert_eq!(
        pricing.on_demand("p5.48xlarge", "us-east-1").await.unwrap(),
        None
    );
    assert_eq!(
        pricing.on_demand("g5.xlarge", "ap-east-2").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn every_page_of_products_is_read() {
    let list = PriceList::start().await;
    list.pricing_offer("g5.xlarge", "us-east-1", 1.006);
    // A second product of the same query (another SKU), dearer, on the second page.
    list.pricing_offer("g5.xlarge", "us-east-1", 1.1);
    list.pricing_page_size(1);

    let price = pricing(&list)
        .await
        .on_demand("g5.xlarge", "us-east-1")
        .await;

    assert_eq!(price.unwrap(), Some(1.1), "the highest of both pages");
    assert_eq!(list.pricing_requests().await, 2);
}

#[tokio::test]
async fn a_service_fault_is_retried() {
    let list = PriceList::start().await;
    list.pricing_offer("g5.xlarge", "us-east-1", 1.006);
    list.pricing_fail(500, "InternalErrorException", Some(1))
        .await;
    list.pricing_fail(400, "ThrottlingException", Some(1)).await;

    let price = pricing(&list)
        .await
        .on_demand("g5.xlarge", "us-east-1")
        .await;

    assert_eq!(price.unwrap(), Some(1.006));
    assert_eq!(
        list.pricing_requests().await,
        3,
        "two faults, then the answer"
    );
}

#[tokio::test]
async fn a_refused_request_is_named_and_not_retried() {
    let list = PriceList::start().await;
    list.pricing_offer("g5.xlarge", "us-east-1", 1.006);
    list.pricing_fail(400, "InvalidParameterException", None)
        .await;

    let err = pricing(&list)
        .await
        .on_demand("g5.xlarge", "us-east-1")
        .await
        .unwrap_err();

    assert_eq!(err.kind, Kind::Other);
    let text = err.to_string();
    assert!(
        text.starts_with("GetProducts failed: InvalidParameterException: "),
        "{text}"
    );
    assert_eq!(list.pricing_requests().await, 1);
}

#[tokio::test]
async fn a_missing_permission_says_which() {
    let list = PriceList::start().await;
    list.pricing_fail(400, "AccessDeniedException", None).await;

    let err = pricing(&list)
        .await
        .on_demand("g5.xlarge", "us-east-1")
        .await
        .unwrap_err();

    assert_eq!(err.kind, Kind::Unauthorized);
    util::assert_contains(&err.to_string(), "pricing:GetProducts is not allowed");
    assert_eq!(list.pricing_requests().await, 1);
}

/// A service-specific setting as the SDK's loader answers it from
/// `AWS_ENDPOINT_URL_PRICING` (or a profile's `services` section): for Pricing only.
#[derive(Debug)]
struct PricingEndpoint(String);

impl aws_types::service_config::LoadServiceConfig for PricingEndpoint {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        (key.service_id() == "Pricing" && key.env() == "AWS_ENDPOINT_URL").then(|| self.0.clone())
    }
}

#[tokio::test]
async fn the_pricing_endpoint_setting_is_obeyed_and_signs_in_the_configs_region() {
    let list = PriceList::start().await;
    list.pricing_offer("g5.xlarge", "eu-west-1", 1.123);
    let credentials =
        aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "static");
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .service_config(PricingEndpoint(list.url()))
        .build();
    assert!(
        config.endpoint_url().is_none(),
        "only the service's own setting"
    );

    let price = Pricing::from_sdk_config(&config, quick())
        .on_demand("g5.xlarge", "eu-west-1")
        .await;

    assert_eq!(price.unwrap(), Some(1.123));
    assert_eq!(
        list.pricing_scopes(),
        [("eu-west-1".to_owned(), "pricing".to_owned())]
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn the_spot_price_is_the_newest_linux_price_of_the_type_in_the_zone() {
    let proxy = MotoProxy::start(&moto_url()).await;
    proxy
        .spot_prices(&[
            ("g5.xlarge", "us-east-1a", 0.52),
            ("g5.xlarge", "us-east-1b", 0.41),
            ("g5.xlarge", "us-east-1a", 0.3879),
            ("g5.2xlarge", "us-east-1a", 0.61),
        ])
        .await;
    let ec2 = Ec2::from_sdk_config(&sdk_config(&proxy.url()).await, quick());

    assert_eq!(
        ec2.spot_price("g5.xlarge", "us-east-1a").await.unwrap(),
        Some(0.3879)
    );
    assert_eq!(
        ec2.spot_price("g5.xlarge", "us-east-1b").await.unwrap(),
        Some(0.41)
    );
    assert_eq!(
        ec2.spot_price("g5.xlarge", "us-east-1c").await.unwrap(),
        None
    );
    assert_eq!(
        ec2.spot_price("p5.48xlarge", "us-east-1a").await.unwrap(),
        None
    );
    assert_eq!(
        proxy.calls("DescribeSpotPriceHistory").await,
        4,
        "one call each"
    );
    ec2.permitted(Action::DescribeSpotPriceHistory, &[])
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs moto: scripts/test"]
async fn volumes_are_those_attached_to_the_instances_asked_split_at_the_filter_limit() {
    let proxy = MotoProxy::start(&moto_url()).await;
    let moto = util::Ec2::connect(&moto_url()).await;
    let with = moto.running_with_volume(200, "gp3").await;
    let other = moto.running_with_volume(80, "gp2").await;
    let bare = moto.running(1).await;
    let ec2 = Ec2::from_sdk_config(&sdk_config(&proxy.url()).await, quick());
    // 250 ids: the instance with a volume last, in the second call.
    let mut ids: Vec<String> = (0..248).map(|i| format!("i-{i:017x}")).collect();
    ids.extend([bare[0].clone(), with.clone()]);

    let volumes = ec2.volumes(&ids).await.unwrap();

    // moto gives an instance launched without a mapping its default root volume (8 GiB
    // gp2); the other instance's volume was not asked for.
    let mut got: Vec<(Option<&str>, u32, &str)> = volumes
        .iter()
        .map(|v| (v.instance.as_deref(), v.size_gib, v.kind.as_str()))
        .collect();
    got.sort();
    let mut want = vec![
        (Some(with.as_str()), 200, "gp3"),
        (Some(bare[0].as_str()), 8, "gp2"),
    ];
    want.sort();
    assert_eq!(got, want, "{volumes:?}");
    assert!(
        volumes.iter().all(|v| v.id.starts_with("vol-")),
        "{volumes:?}"
    );
    assert_eq!(proxy.calls("DescribeVolumes").await, 2, "200 ids, then 50");
    assert!(ec2.volumes(&[]).await.unwrap().is_empty());
    assert_eq!(proxy.calls("DescribeVolumes").await, 2, "no ids, no call");
    let both = ec2.volumes(&[with.clone(), other.clone()]).await.unwrap();
    let mut sizes: Vec<u32> = both.iter().map(|v| v.size_gib).collect();
    sizes.sort();
    assert_eq!(sizes, [80, 200], "{both:?}");
    ec2.permitted(Action::DescribeVolumes, &[]).await.unwrap();
}
