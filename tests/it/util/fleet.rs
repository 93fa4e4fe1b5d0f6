//! The test proxy's EC2 Fleet side: what moto cannot produce about launching. moto serves
//! `CreateFleet` (type `instant`) but never runs out of capacity and never interrupts a
//! spot instance; EC2 does both. A test refuses placements (subnet × type × market) and
//! the proxy answers an instant fleet as EC2 does: a 200 whose `errorSet` names each
//! refused override, beside what the rest launched; it refuses starts for capacity, and
//! takes spot instances away with EC2's state reason. It also holds the fake to the
//! published rules of `CreateFleet` and records what pushwake asked for.

use std::collections::{BTreeMap, BTreeSet};

use wiremock::{Request, ResponseTemplate};

use super::{MotoProxy, form_decode, with_state_reason};

/// One `CreateFleet` as pushwake sent it, before the proxy removed any refused override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetCall {
    /// `TargetCapacitySpecification.DefaultTargetCapacityType` (`spot`, `on-demand`).
    pub market: String,
    /// `TargetCapacitySpecification.TotalTargetCapacity` (0 when missing).
    pub count: u32,
    /// Each override's instance type (none: the template's) and subnet, in order.
    pub overrides: Vec<(Option<String>, String)>,
    /// `SingleInstanceType` asked of spot or on-demand options.
    pub single_type: bool,
    /// The tags of the `TagSpecification` of resource type `instance`.
    pub tags: BTreeMap<String, String>,
    pub client_token: Option<String>,
}

/// A placement EC2 has no capacity for; `None` matches any.
#[derive(Clone, Debug)]
struct Refusal {
    subnet: Option<String>,
    instance_type: Option<String>,
    market: Option<String>,
}

/// What the fleet side of the proxy keeps, inside the proxy's faults.
#[derive(Default)]
pub(super) struct FleetFaults {
    /// moto's address, to terminate interrupted instances and look up zones.
    pub(super) moto: String,
    refused: Vec<Refusal>,
    refused_starts: BTreeSet<String>,
    interrupted: BTreeSet<String>,
    calls: Vec<FleetCall>,
    terminated: Vec<String>,
    /// Subnet id → its Availability Zone, as moto's DescribeSubnets tells.
    zones: BTreeMap<String, String>,
}

/// What the proxy does with one request, as far as fleets go.
pub(super) enum Intercept {
    /// The proxy answers itself; moto is not called.
    Answer(ResponseTemplate),
    /// Forward (the parameters may have been rewritten), then add this `errorSet` body.
    Forward(Option<String>),
}

const NS: &str = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";

impl MotoProxy {
    /// From now on, EC2 has no capacity for the placements matching `subnet`,
    /// `instance_type` and `market` (`spot` / `on-demand`; `None` matches any): an instant
    /// fleet's matching overrides are not launched and come back in its `errorSet`.
    /// Overrides that name no instance type match only a refusal naming none.
    pub fn refuse_capacity(
        &self,
        subnet: Option<&str>,
        instance_type: Option<&str>,
        market: Option<&str>,
    ) {
        self.fleet(|f| {
            f.refused.push(Refusal {
                subnet: subnet.map(str::to_owned),
                instance_type: instance_type.map(str::to_owned),
                market: market.map(str::to_owned),
            })
        });
    }

    /// Capacity is back everywhere: for fleets and for starts.
    pub fn heal_capacity(&self) {
        self.fleet(|f| {
            f.refused.clear();
            f.refused_starts.clear();
        });
    }

    /// From now on, a `StartInstances` naming `id` fails whole with
    /// `InsufficientInstanceCapacity`, as EC2 answers a stopped machine whose zone has no
    /// capacity for its type (until [`MotoProxy::heal_capacity`]).
    pub fn refuse_capacity_start(&self, id: &str) {
        self.fleet(|f| f.refused_starts.insert(id.to_owned()));
    }

    /// EC2 takes `id` away as a spot interruption: it is terminated in moto (in moto's
    /// default account, not through the proxy, so not counted as pushwake's) and from then
    /// on describes with EC2's state reason `Server.SpotInstanceTermination`.
    pub fn interrupt(&self, id: &str) {
        let moto = self.fleet(|f| {
            f.interrupted.insert(id.to_owned());
            f.moto.clone()
        });
        let (status, answer) = query(
            &moto,
            None,
            &format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={id}"),
        );
        assert_eq!(status, 200, "moto terminates {id}: {answer}");
    }

    /// Each `CreateFleet` pushwake sent, as sent (dry runs, and calls refused for breaking
    /// EC2's rules, aside).
    pub fn fleets(&self) -> Vec<FleetCall> {
        self.fleet(|f| f.calls.clone())
    }

    /// The ids pushwake named in `TerminateInstances` calls (dry runs aside), in order.
    pub fn terminated(&self) -> Vec<String> {
        self.fleet(|f| f.terminated.clone())
    }

    fn fleet<T>(&self, with: impl FnOnce(&mut FleetFaults) -> T) -> T {
        with(&mut self.faults.lock().unwrap().fleet)
    }
}

/// The fleet side's part in forwarding `pairs` (form-encoded, as sent) of `action`.
pub(super) fn intercept(
    request: &Request,
    action: &str,
    dry: bool,
    pairs: &mut Vec<(String, String)>,
    faults: &mut FleetFaults,
) -> Intercept {
    match action {
        "CreateFleet" => create_fleet(request, dry, pairs, faults),
        "StartInstances" if !dry => {
            let refused = ids(pairs)
                .into_iter()
                .find(|id| faults.refused_starts.contains(id));
            match refused {
                Some(id) => Intercept::Answer(start_refused(request, &id, faults)),
                None => Intercept::Forward(None),
            }
        }
        "TerminateInstances" if !dry => {
            faults.terminated.extend(ids(pairs));
            Intercept::Forward(None)
        }
        _ => Intercept::Forward(None),
    }
}

/// moto's describe answer with every interrupted instance's state reason EC2's.
pub(super) fn with_interruptions(xml: &str, faults: &FleetFaults) -> String {
    faults.interrupted.iter().fold(xml.to_owned(), |xml, id| {
        with_state_reason(
            &xml,
            id,
            "Server.SpotInstanceTermination",
            "Server.SpotInstanceTermination: Spot instance termination",
        )
    })
}

/// moto's `CreateFleet` answer with `errors` (items) as its `errorSet`.
pub(super) fn with_error_set(xml: &str, errors: &str) -> String {
    let set = format!("<errorSet>{errors}</errorSet>");
    match xml.find("</fleetId>") {
        Some(at) => {
            let at = at + "</fleetId>".len();
            format!("{}{set}{}", &xml[..at], &xml[at..])
        }
        None => xml.to_owned(),
    }
}

fn ids(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k.starts_with("InstanceId."))
        .map(|(_, v)| form_decode(v))
        .collect()
}

/// One override of one launch template config: its parameters after
/// `LaunchTemplateConfigs.N.Overrides.M.`.
type Params = Vec<(String, String)>;

struct Config {
    /// Everything of the config but its overrides (`LaunchTemplateSpecification.…`).
    rest: Params,
    overrides: Vec<Params>,
}

/// The decoded value of `key`.
fn get(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| form_decode(v))
}

/// The configs of a `CreateFleet`, in their order, and the other parameters.
fn configs(pairs: &[(String, String)]) -> (Vec<Config>, Params) {
    let mut by_n: BTreeMap<u32, (Params, BTreeMap<u32, Params>)> = BTreeMap::new();
    let mut others = Vec::new();
    for (k, v) in pairs {
        let Some(tail) = k.strip_prefix("LaunchTemplateConfigs.") else {
            others.push((k.clone(), v.clone()));
            continue;
        };
        let (n, rest) = tail.split_once('.').unwrap_or((tail, ""));
        let config = by_n.entry(n.parse().unwrap_or(0)).or_default();
        match rest
            .strip_prefix("Overrides.")
            .and_then(|o| o.split_once('.'))
        {
            Some((m, field)) => config
                .1
                .entry(m.parse().unwrap_or(0))
                .or_default()
                .push((field.to_owned(), v.clone())),
            None => config.0.push((rest.to_owned(), v.clone())),
        }
    }
    let configs = by_n
        .into_values()
        .map(|(rest, overrides)| Config {
            rest,
            overrides: overrides.into_values().collect(),
        })
        .collect();
    (configs, others)
}

/// The parameters again, configs and overrides numbered from 1 in their order.
fn numbered(configs: &[Config], others: &Params) -> Vec<(String, String)> {
    let mut out = others.clone();
    for (n, config) in configs.iter().enumerate() {
        let n = n + 1;
        for (k, v) in &config.rest {
            out.push((format!("LaunchTemplateConfigs.{n}.{k}"), v.clone()));
        }
        for (m, o) in config.overrides.iter().enumerate() {
            for (k, v) in o {
                let m = m + 1;
                out.push((
                    format!("LaunchTemplateConfigs.{n}.Overrides.{m}.{k}"),
                    v.clone(),
                ));
            }
        }
    }
    out
}

/// The tags of each `TagSpecification`, by its resource type.
fn tag_specifications(pairs: &[(String, String)]) -> Vec<(String, BTreeMap<String, String>)> {
    // Per specification: its resource type, and its tags by number (key, value).
    type Spec = (String, BTreeMap<u32, (String, String)>);
    let mut by_n: BTreeMap<u32, Spec> = BTreeMap::new();
    for (k, v) in pairs {
        let Some((n, rest)) = k
            .strip_prefix("TagSpecification.")
            .and_then(|t| t.split_once('.'))
        else {
            continue;
        };
        let spec = by_n.entry(n.parse().unwrap_or(0)).or_default();
        match rest.strip_prefix("Tag.").and_then(|t| t.split_once('.')) {
            Some((m, "Key")) => {
                spec.1.entry(m.parse().unwrap_or(0)).or_default().0 = form_decode(v)
            }
            Some((m, "Value")) => {
                spec.1.entry(m.parse().unwrap_or(0)).or_default().1 = form_decode(v)
            }
            _ if rest == "ResourceType" => spec.0 = form_decode(v),
            _ => {}
        }
    }
    by_n.into_values()
        .map(|(kind, tags)| (kind, tags.into_values().collect()))
        .collect()
}

/// EC2's answer to a `CreateFleet` breaking one of its published rules; `None` for one
/// that keeps them:
/// - `LaunchTemplateConfigs` and `TargetCapacitySpecification.TotalTargetCapacity` are
///   required (the EC2 API model), answered `MissingParameter` as EC2 answers a missing
///   required parameter;
/// - at most 50 launch template configs (the model's list bound), and for fleets of type
///   `request` and `maintain` at most 300 overrides across them (the API reference;
///   it publishes no bound for `instant`);
/// - `TagSpecification` resource types: `fleet` or `instance` for an `instant` fleet,
///   only `fleet` otherwise (the API reference of `CreateFleet`).
fn breaks_rules(pairs: &[(String, String)], configs: &[Config]) -> Option<ResponseTemplate> {
    let kind = get(pairs, "Type").unwrap_or_else(|| "maintain".to_owned());
    if configs.is_empty() {
        return Some(error(
            400,
            "MissingParameter",
            "The request must contain the parameter LaunchTemplateConfigs",
        ));
    }
    if get(pairs, "TargetCapacitySpecification.TotalTargetCapacity").is_none() {
        return Some(error(
            400,
            "MissingParameter",
            "The request must contain the parameter TargetCapacitySpecification.TotalTargetCapacity",
        ));
    }
    if configs.len() > 50 {
        let n = configs.len();
        let message = format!("The request has {n} launch template configs; up to 50 are allowed.");
        return Some(error(400, "InvalidParameterValue", &message));
    }
    let overrides: usize = configs.iter().map(|c| c.overrides.len()).sum();
    if kind != "instant" && overrides > 300 {
        let message = format!(
            "The request has {overrides} launch template overrides; up to 300 are allowed for a fleet of type {kind}."
        );
        return Some(error(400, "InvalidParameterValue", &message));
    }
    let allowed: &[&str] = match kind.as_str() {
        "instant" => &["fleet", "instance"],
        _ => &["fleet"],
    };
    let (bad, _) = tag_specifications(pairs)
        .into_iter()
        .find(|(t, _)| !allowed.contains(&t.as_str()))?;
    let message = format!("'{bad}' is not a valid taggable resource type for this operation.");
    Some(error(400, "InvalidParameterValue", &message))
}

fn create_fleet(
    request: &Request,
    dry: bool,
    pairs: &mut Vec<(String, String)>,
    faults: &mut FleetFaults,
) -> Intercept {
    let (mut configs, others) = configs(pairs);
    if let Some(refused) = breaks_rules(pairs, &configs) {
        return Intercept::Answer(refused);
    }
    if dry {
        return Intercept::Forward(None);
    }
    let market = get(
        pairs,
        "TargetCapacitySpecification.DefaultTargetCapacityType",
    )
    .unwrap_or_else(|| "on-demand".to_owned());
    let single = |options: &str| {
        get(pairs, &format!("{options}.SingleInstanceType")).as_deref() == Some("true")
    };
    faults.calls.push(FleetCall {
        market: market.clone(),
        count: get(pairs, "TargetCapacitySpecification.TotalTargetCapacity")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        overrides: configs
            .iter()
            .flat_map(|c| &c.overrides)
            .map(|o| {
                (
                    get(o, "InstanceType"),
                    get(o, "SubnetId").unwrap_or_default(),
                )
            })
            .collect(),
        single_type: single("SpotOptions") || single("OnDemandOptions"),
        tags: tag_specifications(pairs)
            .into_iter()
            .filter(|(t, _)| t == "instance")
            .flat_map(|(_, tags)| tags)
            .collect(),
        client_token: get(pairs, "ClientToken"),
    });
    let refuses = |o: &Params| {
        let (subnet, kind) = (get(o, "SubnetId"), get(o, "InstanceType"));
        faults.refused.iter().any(|r| {
            r.subnet.as_ref().is_none_or(|s| Some(s) == subnet.as_ref())
                && r.instance_type
                    .as_ref()
                    .is_none_or(|t| kind.as_ref() == Some(t))
                && r.market.as_ref().is_none_or(|m| *m == market)
        })
    };
    let mut removed: Vec<(Params, Params)> = Vec::new();
    let mut emptied = Vec::new();
    for config in &mut configs {
        let had = !config.overrides.is_empty();
        let (out, keep): (Vec<Params>, Vec<Params>) =
            config.overrides.drain(..).partition(|o| refuses(o));
        removed.extend(out.into_iter().map(|o| (config.rest.clone(), o)));
        config.overrides = keep;
        emptied.push(had && config.overrides.is_empty());
    }
    if removed.is_empty() {
        return Intercept::Forward(None);
    }
    let errors: String = removed
        .iter()
        .map(|(spec, o)| error_item(request, spec, o, &market, faults))
        .collect();
    // A config whose every override was refused is dropped: left without overrides,
    // moto would launch from the template alone.
    let mut emptied = emptied.into_iter();
    configs.retain(|_| !emptied.next().unwrap_or(false));
    if configs.is_empty() {
        return Intercept::Answer(all_refused(&errors));
    }
    *pairs = numbered(&configs, &others);
    Intercept::Forward(Some(errors))
}

/// EC2's answer to an instant fleet none of whose overrides had capacity.
fn all_refused(errors: &str) -> ResponseTemplate {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let fleet = format!("fleet-{:08x}-0000-4000-8000-{n:012x}", std::process::id());
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse {NS}><requestId>r\
         </requestId><fleetId>{fleet}</fleetId><errorSet>{errors}</errorSet><fleetInstanceSet/>\
         </CreateFleetResponse>"
    );
    ResponseTemplate::new(200).set_body_raw(body, "text/xml")
}

/// One `errorSet` item: the refused override, as EC2 names it.
fn error_item(
    request: &Request,
    spec: &Params,
    o: &Params,
    market: &str,
    faults: &mut FleetFaults,
) -> String {
    let field = |name: &str, value: Option<String>| {
        value
            .map(|v| format!("<{name}>{v}</{name}>"))
            .unwrap_or_default()
    };
    let subnet = get(o, "SubnetId");
    let zone = get(o, "AvailabilityZone")
        .or_else(|| subnet.as_deref().and_then(|s| zone_of(request, s, faults)));
    let kind = get(o, "InstanceType");
    let template = format!(
        "{}{}{}",
        field(
            "launchTemplateId",
            get(spec, "LaunchTemplateSpecification.LaunchTemplateId")
        ),
        field(
            "launchTemplateName",
            get(spec, "LaunchTemplateSpecification.LaunchTemplateName")
        ),
        field("version", get(spec, "LaunchTemplateSpecification.Version")),
    );
    let overrides = format!(
        "{}{}{}",
        field("instanceType", kind.clone()),
        field("subnetId", subnet),
        field("availabilityZone", zone.clone()),
    );
    let message = capacity_message(
        kind.as_deref(),
        zone.as_deref().unwrap_or("unknown"),
        faults,
    );
    format!(
        "<item><launchTemplateAndOverrides><launchTemplateSpecification>{template}\
         </launchTemplateSpecification><overrides>{overrides}</overrides>\
         </launchTemplateAndOverrides><lifecycle>{market}</lifecycle><errorCode>\
         InsufficientInstanceCapacity</errorCode><errorMessage>{message}</errorMessage></item>"
    )
}

/// EC2's message when a zone has no capacity for a type, naming the other zones it knows.
fn capacity_message(kind: Option<&str>, zone: &str, faults: &FleetFaults) -> String {
    let kind = kind.unwrap_or("the requested");
    let others: BTreeSet<&str> = faults
        .zones
        .values()
        .map(String::as_str)
        .filter(|z| *z != zone)
        .collect();
    let others: Vec<&str> = others.into_iter().collect();
    format!(
        "We currently do not have sufficient {kind} capacity in the Availability Zone you \
         requested ({zone}). Our system will be working on provisioning additional capacity. \
         You can currently get {kind} capacity by not specifying an Availability Zone in your \
         request or choosing {}.",
        others.join(", ")
    )
}

/// The zone of `subnet`, from moto's subnets of the account the request was signed for,
/// looked up once.
fn zone_of(request: &Request, subnet: &str, faults: &mut FleetFaults) -> Option<String> {
    if !faults.zones.contains_key(subnet) {
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let (_, xml) = query(
            &faults.moto,
            auth,
            "Action=DescribeSubnets&Version=2016-11-15",
        );
        for item in xml.split("<item>").skip(1) {
            if let (Some(id), Some(zone)) =
                (element(item, "subnetId"), element(item, "availabilityZone"))
            {
                faults.zones.insert(id, zone);
            }
        }
    }
    faults.zones.get(subnet).cloned()
}

/// EC2's answer to a start of `id` when its zone has no capacity for its type: HTTP 500
/// (EC2 counts it a server error; SDKs retry it), the whole call failing.
fn start_refused(request: &Request, id: &str, faults: &mut FleetFaults) -> ResponseTemplate {
    let auth = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let (_, xml) = query(
        &faults.moto,
        auth,
        &format!("Action=DescribeInstances&Version=2016-11-15&InstanceId.1={id}"),
    );
    let kind = element(&xml, "instanceType");
    let zone = element(&xml, "availabilityZone").unwrap_or_else(|| "unknown".to_owned());
    if faults.zones.is_empty() {
        zone_of(request, "", faults);
    }
    let message = capacity_message(kind.as_deref(), &zone, faults);
    error(500, "InsufficientInstanceCapacity", &message)
}

/// EC2's XML error answer.
fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}\
             </Code><Message>{message}</Message></Error></Errors><RequestID>r</RequestID>\
             </Response>"
        ),
        "text/xml",
    )
}

/// The text of the first `<name>` element in `xml`.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_owned())
}

/// An `Authorization` header moto takes as EC2's, in us-east-1, from the default account
/// (moto routes a request by its credential scope and checks no signature).
pub const MOTO_EC2_AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/\
                                 aws4_request, SignedHeaders=host, Signature=0";

/// One EC2 query call to moto, made by the proxy itself (not counted as pushwake's),
/// with the `Authorization` header of `auth` (moto reads the account, region and
/// service from it), or else [`MOTO_EC2_AUTH`].
fn query(addr: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let auth = format!("Authorization: {}\r\n", auth.unwrap_or(MOTO_EC2_AUTH));
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: \
         application/x-www-form-urlencoded\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to moto");
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .expect("write to moto");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read from moto");
    let (head, answer) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, answer.to_owned())
}
