//! Launching: one instant EC2 Fleet (`CreateFleet`, type `instant`) per batch of machines,
//! from a launch template, over overrides of instance types × subnets, all of one market.
//! Its own file because launching is a concern of its own: EC2 places what it can in one
//! synchronous call and answers, beside the instances it launched, one error per override
//! it refused (`errorSet`), so a refusal for capacity in one zone is an answer to read, not
//! a failure of the call. What to launch, where and when is decided elsewhere.

use std::fmt;

use aws_sdk_ec2::operation::create_fleet::CreateFleetOutput;
use aws_sdk_ec2::operation::create_fleet::builders::CreateFleetInputBuilder;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverrides,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType, InstanceLifecycle, InstanceType,
    OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy, SpotOptionsRequest, Tag,
    TagSpecification, TargetCapacitySpecificationRequest,
};
use serde::{Deserialize, Serialize};

use super::describe::is_template_id;
use super::{Ec2, Error, Kind, dry_run_passed, kind_of};

/// The most overrides one fleet request takes. EC2's API reference allows 300 across all
/// launch templates for fleets of type `request` and `maintain` and publishes no figure
/// for `instant`; the same bound keeps a request within what EC2 is known to accept.
pub const MAX_OVERRIDES: usize = 300;

/// EC2's bound on a client token: up to 64 ASCII characters.
const MAX_TOKEN: usize = 64;

/// How a machine is bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    OnDemand,
    Spot,
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
        })
    }
}

/// One place a fleet may launch into: a subnet (one Availability Zone), and an instance
/// type, or `None` for the template's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub instance_type: Option<String>,
    pub subnet: String,
}

/// One instant fleet: `count` machines of `market` from a launch template, wherever the
/// overrides allow.
#[derive(Debug, Clone)]
pub struct FleetRequest {
    /// An id (`lt-…`), else a name.
    pub template: String,
    /// `None`: the template's default version (`$Default`).
    pub version: Option<String>,
    /// Types × subnets; an empty list launches as the template says.
    pub overrides: Vec<Override>,
    pub market: Market,
    /// `TotalTargetCapacity`, all of `market`.
    pub count: u32,
    /// All machines of one instance type (`SingleInstanceType`): comparable hardware.
    pub single_type: bool,
    /// On the instances and their volumes from birth (`TagSpecifications`).
    pub tags: Vec<(String, String)>,
    /// EC2's `ClientToken`: the same request with the same token launches once. `None`:
    /// one is made for this call, kept across its retries.
    pub client_token: Option<String>,
}

/// A machine the fleet launched, where, and how it is bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub id: String,
    pub instance_type: Option<String>,
    pub subnet: Option<String>,
    pub market: Market,
}

/// A placement the fleet refused, and EC2's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub instance_type: Option<String>,
    pub subnet: Option<String>,
    pub market: Market,
    pub code: String,
    pub message: String,
    pub kind: Kind,
}

/// What one fleet call did: fewer machines than asked for, with the refusals that say why,
/// is an answer, not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetOutcome {
    pub launched: Vec<Launched>,
    pub refused: Vec<Refused>,
}

impl Ec2 {
    /// Launches `req.count` machines in one instant fleet and reads what EC2 placed and
    /// refused. The whole call failing (a template that does not exist, a missing
    /// permission, a malformed request, too many overrides) is an `Err`, classified.
    /// Retries of the call carry the same client token, so a retried request whose first
    /// attempt EC2 carried out launches nothing more.
    pub async fn create_fleet(&self, req: &FleetRequest) -> Result<FleetOutcome, Error> {
        if req.count == 0 {
            return Ok(FleetOutcome::default());
        }
        let input = request(req, &token(req))?;
        let out = self
            .call("CreateFleet", || input.clone().send_with(&self.client))
            .await?;
        Ok(outcome(&out, req.market))
    }

    /// Asks EC2 with the `DryRun` flag whether these credentials may launch this fleet
    /// (`ec2:CreateFleet`, and what it implies: `ec2:RunInstances`, `ec2:CreateTags` for
    /// the tags at launch); nothing is launched.
    pub async fn fleet_permitted(&self, req: &FleetRequest) -> Result<(), Error> {
        let req = FleetRequest {
            count: req.count.max(1),
            ..req.clone()
        };
        let input = request(&req, &token(&req))?.dry_run(true);
        let result = self
            .call("CreateFleet", || input.clone().send_with(&self.client))
            .await
            .map(drop);
        dry_run_passed(result)
    }
}

/// The request's client token, or a new one: made once per call, outside the retries,
/// since the SDK would make a fresh one for every attempt and so launch again after an
/// attempt that timed out but was carried out.
fn token(req: &FleetRequest) -> String {
    req.client_token
        .clone()
        .unwrap_or_else(|| format!("pushwake-{:016x}", fastrand::u64(..)))
}

fn invalid(message: String) -> Error {
    Error {
        kind: Kind::Other,
        action: "CreateFleet",
        code: None,
        message,
    }
}

/// The `CreateFleet` request for `req`, as EC2 is asked it.
fn request(req: &FleetRequest, token: &str) -> Result<CreateFleetInputBuilder, Error> {
    if req.overrides.len() > MAX_OVERRIDES {
        return Err(invalid(format!(
            "{} overrides (instance types × subnets) is more than the {MAX_OVERRIDES} one \
             fleet takes",
            req.overrides.len()
        )));
    }
    if token.len() > MAX_TOKEN || !token.is_ascii() {
        return Err(invalid(format!(
            "the client token is not at most {MAX_TOKEN} ASCII characters"
        )));
    }
    let count = i32::try_from(req.count).map_err(|_| {
        invalid(format!(
            "{} machines is more than one fleet takes",
            req.count
        ))
    })?;
    let spec = FleetLaunchTemplateSpecificationRequest::builder()
        .version(req.version.as_deref().unwrap_or("$Default"));
    let spec = if is_template_id(&req.template) {
        spec.launch_template_id(&req.template)
    } else {
        spec.launch_template_name(&req.template)
    };
    let overrides: Vec<FleetLaunchTemplateOverridesRequest> = req
        .overrides
        .iter()
        .map(|o| {
            FleetLaunchTemplateOverridesRequest::builder()
                .set_instance_type(o.instance_type.as_deref().map(InstanceType::from))
                .subnet_id(&o.subnet)
                .build()
        })
        .collect();
    let config = FleetLaunchTemplateConfigRequest::builder()
        .launch_template_specification(spec.build())
        .set_overrides((!overrides.is_empty()).then_some(overrides))
        .build();
    let capacity = TargetCapacitySpecificationRequest::builder()
        .total_target_capacity(count)
        .default_target_capacity_type(match req.market {
            Market::Spot => DefaultTargetCapacityType::Spot,
            Market::OnDemand => DefaultTargetCapacityType::OnDemand,
        })
        .build();
    let single = req.single_type.then_some(true);
    let builder = CreateFleetInputBuilder::default()
        .r#type(FleetType::Instant)
        .client_token(token)
        .launch_template_configs(config)
        .target_capacity_specification(capacity);
    let builder = match req.market {
        Market::Spot => builder.spot_options(
            SpotOptionsRequest::builder()
                .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                .set_single_instance_type(single)
                .build(),
        ),
        Market::OnDemand => builder.on_demand_options(
            OnDemandOptionsRequest::builder()
                .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                .set_single_instance_type(single)
                .build(),
        ),
    };
    if req.tags.is_empty() {
        return Ok(builder);
    }
    let tags: Vec<Tag> = req
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    // An instant fleet takes tags for the fleet and its instances only (CreateFleet's
    // TagSpecifications; a `volume` is refused): the volumes carry none.
    let tagged = |kind| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags.clone()))
            .build()
    };
    Ok(builder.tag_specifications(tagged(ResourceType::Instance)))
}

/// The override's instance type and subnet, as EC2 echoes them.
fn placed(o: Option<&FleetLaunchTemplateOverrides>) -> (Option<String>, Option<String>) {
    (
        o.and_then(|o| o.instance_type())
            .map(|t| t.as_str().to_owned()),
        o.and_then(|o| o.subnet_id()).map(str::to_owned),
    )
}

fn market_of(lifecycle: Option<&InstanceLifecycle>, asked: Market) -> Market {
    match lifecycle {
        Some(InstanceLifecycle::Spot) => Market::Spot,
        Some(InstanceLifecycle::OnDemand) => Market::OnDemand,
        _ => asked,
    }
}

/// Reads an instant fleet's answer: each `fleetInstanceSet` item (ids, with the override
/// and lifecycle they were launched with) and each `errorSet` item (one per refused
/// override).
fn outcome(out: &CreateFleetOutput, asked: Market) -> FleetOutcome {
    let mut launched = Vec::new();
    for item in out.instances() {
        let (of_override, subnet) = placed(
            item.launch_template_and_overrides()
                .and_then(|l| l.overrides()),
        );
        let instance_type = item
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .or(of_override);
        let market = market_of(item.lifecycle(), asked);
        launched.extend(item.instance_ids().iter().map(|id| Launched {
            id: id.clone(),
            instance_type: instance_type.clone(),
            subnet: subnet.clone(),
            market,
        }));
    }
    let refused = out
        .errors()
        .iter()
        .map(|e| {
            let (instance_type, subnet) = placed(
                e.launch_template_and_overrides()
                    .and_then(|l| l.overrides()),
            );
            let code = e.error_code().unwrap_or_default().to_owned();
            Refused {
                instance_type,
                subnet,
                market: market_of(e.lifecycle(), asked),
                kind: kind_of(&code),
                message: e.error_message().unwrap_or_default().to_owned(),
                code,
            }
        })
        .collect();
    FleetOutcome { launched, refused }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{
        CreateFleetError, CreateFleetInstance, LaunchTemplateAndOverridesResponse,
    };

    fn fleet(market: Market, single_type: bool) -> FleetRequest {
        let mut overrides = Vec::new();
        for t in ["g5.xlarge", "g6.xlarge"] {
            for s in ["subnet-a", "subnet-b"] {
                overrides.push(Override {
                    instance_type: Some(t.to_owned()),
                    subnet: s.to_owned(),
                });
            }
        }
        FleetRequest {
            template: "lt-0123456789abcdef0".to_owned(),
            version: None,
            overrides,
            market,
            count: 3,
            single_type,
            tags: vec![("pushwake:commit".to_owned(), "c0ffee".to_owned())],
            client_token: None,
        }
    }

    #[test]
    fn a_spot_fleet_of_one_type_over_types_and_subnets() {
        let input = request(&fleet(Market::Spot, true), "t-1")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(input.r#type(), Some(&FleetType::Instant));
        assert_eq!(input.client_token(), Some("t-1"));
        let [config] = input.launch_template_configs() else {
            panic!("one launch template config")
        };
        let spec = config.launch_template_specification().unwrap();
        assert_eq!(spec.launch_template_id(), Some("lt-0123456789abcdef0"));
        assert_eq!(spec.launch_template_name(), None);
        assert_eq!(spec.version(), Some("$Default"));
        let overrides: Vec<_> = config
            .overrides()
            .iter()
            .map(|o| (o.instance_type().unwrap().as_str(), o.subnet_id().unwrap()))
            .collect();
        assert_eq!(
            overrides,
            [
                ("g5.xlarge", "subnet-a"),
                ("g5.xlarge", "subnet-b"),
                ("g6.xlarge", "subnet-a"),
                ("g6.xlarge", "subnet-b")
            ]
        );
        let spot = input.spot_options().unwrap();
        assert_eq!(
            spot.allocation_strategy(),
            Some(&SpotAllocationStrategy::PriceCapacityOptimized)
        );
        assert_eq!(spot.single_instance_type(), Some(true));
        // All or nothing is not asked for: what EC2 can place, it launches.
        assert_eq!(spot.min_target_capacity(), None);
        assert!(input.on_demand_options().is_none());
        let capacity = input.target_capacity_specification().unwrap();
        assert_eq!(capacity.total_target_capacity(), Some(3));
        assert_eq!(
            capacity.default_target_capacity_type(),
            Some(&DefaultTargetCapacityType::Spot)
        );
        let tagged: Vec<_> = input
            .tag_specifications()
            .iter()
            .map(|t| {
                let [tag] = t.tags() else { panic!("one tag") };
                (
                    t.resource_type().unwrap().clone(),
                    tag.key().unwrap(),
                    tag.value().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            tagged,
            [(ResourceType::Instance, "pushwake:commit", "c0ffee")]
        );
    }

    #[test]
    fn an_on_demand_fleet_by_template_name_and_version_with_the_templates_type() {
        let req = FleetRequest {
            template: "trainer".to_owned(),
            version: Some("3".to_owned()),
            overrides: vec![Override {
                instance_type: None,
                subnet: "subnet-b".to_owned(),
            }],
            tags: Vec::new(),
            ..fleet(Market::OnDemand, false)
        };
        let input = request(&req, "t-2").unwrap().build().unwrap();
        let spec = input.launch_template_configs()[0]
            .launch_template_specification()
            .unwrap();
        assert_eq!(
            (
                spec.launch_template_name(),
                spec.launch_template_id(),
                spec.version()
            ),
            (Some("trainer"), None, Some("3"))
        );
        let [o] = input.launch_template_configs()[0].overrides() else {
            panic!("one override")
        };
        assert_eq!((o.instance_type(), o.subnet_id()), (None, Some("subnet-b")));
        let on_demand = input.on_demand_options().unwrap();
        assert_eq!(
            on_demand.allocation_strategy(),
            Some(&FleetOnDemandAllocationStrategy::LowestPrice)
        );
        assert_eq!(on_demand.single_instance_type(), None);
        assert!(input.spot_options().is_none());
        assert_eq!(
            input
                .target_capacity_specification()
                .unwrap()
                .default_target_capacity_type(),
            Some(&DefaultTargetCapacityType::OnDemand)
        );
        // No tags, no tag specification (EC2 refuses an empty one).
        assert!(input.tag_specifications().is_empty());
    }

    #[test]
    fn no_overrides_launch_as_the_template_says() {
        let req = FleetRequest {
            overrides: Vec::new(),
            ..fleet(Market::OnDemand, false)
        };
        let input = request(&req, "t").unwrap().build().unwrap();
        assert!(input.launch_template_configs()[0].overrides.is_none());
    }

    #[test]
    fn more_overrides_than_a_fleet_takes_or_a_long_token_are_refused_before_asking() {
        let o = Override {
            instance_type: None,
            subnet: "subnet-a".to_owned(),
        };
        let req = FleetRequest {
            overrides: vec![o.clone(); MAX_OVERRIDES + 1],
            ..fleet(Market::Spot, true)
        };
        let e = request(&req, "t").unwrap_err();
        assert_eq!(
            (e.kind, e.action, e.code),
            (Kind::Other, "CreateFleet", None)
        );
        assert!(e.message.contains("301 overrides"), "{}", e.message);
        let req = FleetRequest {
            overrides: vec![o; MAX_OVERRIDES],
            ..fleet(Market::Spot, true)
        };
        assert!(request(&req, "t").is_ok());
        assert!(request(&fleet(Market::Spot, true), &"x".repeat(65)).is_err());
        assert!(request(&fleet(Market::Spot, true), &"x".repeat(64)).is_ok());
    }

    #[test]
    fn a_token_is_kept_when_given_and_made_once_when_not() {
        let mut req = fleet(Market::Spot, true);
        let made = token(&req);
        assert!(
            made.starts_with("pushwake-") && made.len() <= MAX_TOKEN,
            "{made}"
        );
        assert_ne!(made, token(&req));
        req.client_token = Some("run-7-batch-1".to_owned());
        assert_eq!(token(&req), "run-7-batch-1");
    }

    fn placement(t: &str, subnet: &str) -> LaunchTemplateAndOverridesResponse {
        LaunchTemplateAndOverridesResponse::builder()
            .overrides(
                FleetLaunchTemplateOverrides::builder()
                    .instance_type(InstanceType::from(t))
                    .subnet_id(subnet)
                    .build(),
            )
            .build()
    }

    #[test]
    fn an_answer_with_an_error_set_is_read_as_launched_and_refused() {
        let out = CreateFleetOutput::builder()
            .fleet_id("fleet-1")
            .instances(
                CreateFleetInstance::builder()
                    .launch_template_and_overrides(placement("g5.xlarge", "subnet-b"))
                    .lifecycle(InstanceLifecycle::Spot)
                    .instance_ids("i-0000000000000000b")
                    .instance_ids("i-0000000000000000c")
                    .instance_type(InstanceType::from("g5.xlarge"))
                    .build(),
            )
            .errors(
                CreateFleetError::builder()
                    .launch_template_and_overrides(placement("g5.xlarge", "subnet-a"))
                    .lifecycle(InstanceLifecycle::Spot)
                    .error_code("InsufficientInstanceCapacity")
                    .error_message("There is no Spot capacity available that matches your request.")
                    .build(),
            )
            .errors(
                CreateFleetError::builder()
                    .launch_template_and_overrides(placement("g6.xlarge", "subnet-a"))
                    .error_code("InvalidParameterValue")
                    .error_message("bad")
                    .build(),
            )
            .build();
        let got = outcome(&out, Market::Spot);
        let launched = |id: &str| Launched {
            id: id.to_owned(),
            instance_type: Some("g5.xlarge".to_owned()),
            subnet: Some("subnet-b".to_owned()),
            market: Market::Spot,
        };
        assert_eq!(
            got.launched,
            [
                launched("i-0000000000000000b"),
                launched("i-0000000000000000c")
            ]
        );
        assert_eq!(
            got.refused[0],
            Refused {
                instance_type: Some("g5.xlarge".to_owned()),
                subnet: Some("subnet-a".to_owned()),
                market: Market::Spot,
                code: "InsufficientInstanceCapacity".to_owned(),
                message: "There is no Spot capacity available that matches your request."
                    .to_owned(),
                kind: Kind::Capacity,
            }
        );
        // No lifecycle given: the market asked for; not a capacity refusal.
        assert_eq!(
            (got.refused[1].market, got.refused[1].kind),
            (Market::Spot, Kind::Other)
        );
    }

    #[test]
    fn an_instance_on_demand_in_a_spot_request_is_said_so() {
        let out = CreateFleetOutput::builder()
            .instances(
                CreateFleetInstance::builder()
                    .lifecycle(InstanceLifecycle::OnDemand)
                    .instance_ids("i-0000000000000000d")
                    .build(),
            )
            .build();
        let got = outcome(&out, Market::Spot);
        assert_eq!(
            got.launched,
            [Launched {
                id: "i-0000000000000000d".to_owned(),
                instance_type: None,
                subnet: None,
                market: Market::OnDemand,
            }]
        );
        assert!(got.refused.is_empty());
    }

    #[test]
    fn markets_read_and_print_as_the_config_writes_them() {
        assert_eq!(Market::OnDemand.to_string(), "on-demand");
        assert_eq!(Market::Spot.to_string(), "spot");
        let read: Vec<Market> = serde_json::from_str(r#"["on-demand","spot"]"#).unwrap();
        assert_eq!(read, [Market::OnDemand, Market::Spot]);
        assert_eq!(
            serde_json::to_string(&Market::OnDemand).unwrap(),
            r#""on-demand""#
        );
    }
}
