//! EC2: the client, its errors sorted by what to do about them, and the types its calls
//! answer with. The calls themselves live beside it, one concern a file: `describe` reads
//! EC2's record, `mutate` changes instances (tag, stop, start, terminate), `fleet`
//! launches them (an instant EC2 Fleet), `prices` reads what EC2 says machines cost (the
//! Spot price in effect, the volumes attached).
//!
//! This is a thin client: it makes one call per method and knows nothing of watches or
//! triggers. What to start and when is decided by [`crate::launch`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, InstanceStateName};
use chrono::{DateTime, Utc};

use crate::retry::{self, Retryable};

/// The lifecycle state of an instance, as far as starting it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    Other(String),
}

impl From<&InstanceStateName> for InstanceState {
    fn from(s: &InstanceStateName) -> Self {
        match s {
            InstanceStateName::Pending => InstanceState::Pending,
            InstanceStateName::Running => InstanceState::Running,
            InstanceStateName::Stopping => InstanceState::Stopping,
            InstanceStateName::Stopped => InstanceState::Stopped,
            InstanceStateName::ShuttingDown => InstanceState::ShuttingDown,
            InstanceStateName::Terminated => InstanceState::Terminated,
            other => InstanceState::Other(other.as_str().to_owned()),
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Other(s) => s,
        })
    }
}

/// One instance as `DescribeInstances` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub state: InstanceState,
    pub tags: BTreeMap<String, String>,
    /// When it was last started (EC2 calls it the launch time).
    pub launch_time: Option<DateTime<Utc>>,
    /// Why it last changed state, e.g. `Server.InsufficientInstanceCapacity`, when EC2
    /// says.
    pub state_reason: Option<StateReason>,
    /// Its type, e.g. `g5.xlarge`: where a repeat ran, and what its hardware was.
    pub instance_type: Option<String>,
    /// Its Availability Zone (`placement.availabilityZone`), e.g. `us-east-1b`.
    pub zone: Option<String>,
    /// Its subnet, when it is in a VPC.
    pub subnet: Option<String>,
    /// Whether it is a Spot Instance (`instanceLifecycle` is `spot`): EC2 may take it away.
    pub spot: bool,
    /// When it last stopped or was terminated, as EC2's state transition reason dates it
    /// (`User initiated (2026-12-01 08:33:20 GMT)`); `None` when EC2 gives no time.
    pub ended_at: Option<DateTime<Utc>>,
}

/// The time in an EC2 state transition reason, e.g. `User initiated (2026-12-01 08:33:20
/// GMT)`; moto writes `UTC`.
pub fn transition_time(reason: &str) -> Option<DateTime<Utc>> {
    let inside = reason.rsplit_once('(')?.1.strip_suffix(')')?;
    let stamp = inside
        .strip_suffix(" GMT")
        .or_else(|| inside.strip_suffix(" UTC"))?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(t.and_utc())
}

impl Instance {
    /// Whether it is up: pending or running.
    pub fn is_up(&self) -> bool {
        matches!(self.state, InstanceState::Pending | InstanceState::Running)
    }

    /// An instance with only an id and a state known: no tags, no launch time, no reason,
    /// no placement. The base of a literal that sets the rest (`..Instance::new(..)`).
    pub fn new(id: impl Into<String>, state: InstanceState) -> Instance {
        Instance {
            id: id.into(),
            state,
            tags: BTreeMap::new(),
            launch_time: None,
            state_reason: None,
            instance_type: None,
            zone: None,
            subnet: None,
            spot: false,
            ended_at: None,
        }
    }
}

/// EC2's reason for an instance's last change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReason {
    pub code: String,
    pub message: String,
}

impl StateReason {
    /// Whether the instance stopped because it was asked to, by a person, an API call or
    /// itself, rather than failing to start.
    pub fn is_shutdown(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Client.UserInitiatedShutdown" | "Client.InstanceInitiatedShutdown"
        )
    }

    /// Whether EC2 took the machine away: a `Server.*` code, such as
    /// `Server.SpotInstanceTermination` (a Spot interruption), `Server.InternalError` or
    /// `Server.InsufficientInstanceCapacity` (terminated during launch),
    /// `Server.ScheduledStop` (a retirement) or `Server.SpotInstanceShutdown`. EC2's
    /// state-reason reference sorts its codes so: `Server.*` for what EC2 did, `Client.*`
    /// for what the user, the machine itself or its configuration did (a shutdown, a bad
    /// snapshot, a volume limit), which a run again would not undo. Whether it is an
    /// interruption of a run is the caller's to judge from the state too: on a stopped pool
    /// machine `Server.InsufficientInstanceCapacity` is a start that did not take.
    pub fn is_interruption(&self) -> bool {
        self.code.starts_with("Server.")
    }
}

impl fmt::Display for StateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() || self.message.starts_with(&self.code) {
            f.write_str(if self.message.is_empty() {
                &self.code
            } else {
                &self.message
            })
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

/// What kind of failure an EC2 call met; it decides what the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Throttling, a service hiccup, a dropped connection: worth retrying.
    Transient,
    /// No room here right now: `InsufficientInstanceCapacity`, a limit of the account, a type
    /// not offered in the zone. Another zone, type or market may have room.
    Capacity,
    /// `IncorrectInstanceState`: the instance is in a state the call does not accept.
    IncorrectState,
    /// `InvalidInstanceID.*`, `InvalidSubnetID.*`, `InvalidLaunchTemplate*.NotFound…`: the
    /// instance, subnet or launch template named does not exist (any more).
    NotFound,
    /// `UnauthorizedOperation`, `AccessDenied`: the credentials lack a permission.
    Unauthorized,
    /// `AuthFailure`: the credentials are wrong or expired, or this machine's clock is off.
    Credentials,
    /// No credentials or region, a malformed request: nothing a retry fixes.
    Other,
}

/// An EC2 call that failed.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    /// The EC2 API action, e.g. `StartInstances`.
    pub action: &'static str,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.action, self.message)?,
            None => write!(f, "{} failed: {}", self.action, self.message)?,
        }
        match self.kind {
            Kind::Unauthorized => write!(
                f,
                " (ec2:{} is not allowed for these AWS credentials; grant it in their IAM \
                 policy)",
                self.action
            ),
            Kind::Credentials => f.write_str(
                " (AWS did not accept the credentials: check the keys, and this machine's \
                 clock)",
            ),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {

    #[test]
    fn a_transition_reason_tells_when_it_ended() {
        let at = transition_time("User initiated (2026-12-01 08:33:20 GMT)");
        assert_eq!(
            at.map(crate::rfc3339).as_deref(),
            Some("2026-12-01T08:33:20Z")
        );
        let moto = transition_time("User initiated (2026-12-01 08:33:20 UTC)");
        assert_eq!(moto, at);
        assert_eq!(transition_time(""), None);
        assert_eq!(transition_time("Server.SpotInstanceTermination"), None);
    }

    use super::*;

    #[test]
    fn the_clock_follows_ec2s_date() {
        let clock = Clock::default();
        clock.set("Sun, 29 Nov 2026 05:30:51 GMT");
        let now = clock.now();
        let date: DateTime<Utc> = "2026-11-29T05:30:51Z".parse().unwrap();
        assert!(
            now >= date && now < date + chrono::Duration::seconds(5),
            "{now}"
        );
        // A header it cannot read changes nothing.
        clock.set("yesterday");
        assert!(clock.now() < date + chrono::Duration::seconds(5));
    }

    fn error(code: &str) -> Error {
        Error {
            kind: kind_of(code),
            action: "StartInstances",
            code: Some(code.to_owned()),
            message: "EC2's own words.".to_owned(),
        }
    }

    #[test]
    fn only_a_missing_permission_gets_the_iam_hint() {
        for code in ["UnauthorizedOperation", "AccessDenied"] {
            let text = error(code).to_string();
            assert!(
                text.contains(code) && text.contains("EC2's own words"),
                "{text}"
            );
            assert!(text.contains("grant it in their IAM policy"), "{text}");
        }
        let text = error("AuthFailure").to_string();
        assert!(text.contains("AuthFailure: EC2's own words"), "{text}");
        assert!(
            text.contains("check the keys, and this machine's clock"),
            "{text}"
        );
        assert!(!text.contains("IAM"), "{text}");
        assert!(!error("VcpuLimitExceeded").to_string().contains("IAM"));
    }

    #[test]
    fn errors_are_sorted_by_what_to_do() {
        assert_eq!(kind_of("RequestLimitExceeded"), Kind::Transient);
        assert_eq!(kind_of("InsufficientInstanceCapacity"), Kind::Capacity);
        assert_eq!(kind_of("IncorrectInstanceState"), Kind::IncorrectState);
        assert_eq!(kind_of("InvalidInstanceID.NotFound"), Kind::NotFound);
        assert_eq!(kind_of("InvalidInstanceID.Malformed"), Kind::NotFound);
        for code in [
            "InvalidLaunchTemplateId.NotFound",
            "InvalidLaunchTemplateName.NotFoundException",
            "InvalidLaunchTemplateId.Malformed",
            "InvalidLaunchTemplateId.VersionNotFound",
            "InvalidSubnetID.NotFound",
        ] {
            assert_eq!(kind_of(code), Kind::NotFound, "{code}");
        }
        assert_eq!(kind_of("AuthFailure"), Kind::Credentials);
        assert_eq!(kind_of("VcpuLimitExceeded"), Kind::Capacity);
        assert_eq!(kind_of("InvalidParameterValue"), Kind::Other);
        assert!(error("VcpuLimitExceeded").may_concern_one_instance());
        assert!(error("InvalidParameterValue").may_concern_one_instance());
        assert!(!error("AuthFailure").may_concern_one_instance());
        assert!(!error("UnauthorizedOperation").may_concern_one_instance());
    }

    #[test]
    fn no_room_here_is_capacity_whatever_its_cause() {
        for code in [
            "InsufficientInstanceCapacity",
            "InsufficientCapacity",
            "InsufficientHostCapacity",
            "InsufficientReservedInstanceCapacity",
            "InstanceLimitExceeded",
            "VcpuLimitExceeded",
            "MaxSpotInstanceCountExceeded",
            "SpotMaxPriceTooLow",
            "UnfulfillableCapacity",
            "InsufficientFreeAddressesInSubnet",
            "Unsupported",
        ] {
            assert_eq!(kind_of(code), Kind::Capacity, "{code}");
            // A batch refused for one machine's zone may start the others alone.
            assert!(error(code).may_concern_one_instance(), "{code}");
        }
        // Not room but a request EC2 would refuse anywhere.
        for code in ["UnsupportedOperation", "InvalidParameterCombination"] {
            assert_ne!(kind_of(code), Kind::Capacity, "{code}");
        }
    }

    fn reason(code: &str) -> StateReason {
        StateReason {
            code: code.to_owned(),
            message: String::new(),
        }
    }

    #[test]
    fn ec2_taking_a_machine_away_is_an_interruption_and_a_shutdown_is_not() {
        for code in [
            "Server.SpotInstanceTermination",
            "Server.SpotInstanceShutdown",
            "Server.InternalError",
            "Server.InsufficientInstanceCapacity",
            "Server.ScheduledStop",
        ] {
            assert!(reason(code).is_interruption(), "{code}");
            assert!(!reason(code).is_shutdown(), "{code}");
        }
        for code in [
            "Client.UserInitiatedShutdown",
            "Client.InstanceInitiatedShutdown",
            "Client.InternalError",
            "Client.VolumeLimitExceeded",
            "Client.InvalidSnapshot.NotFound",
            "Client.UserInitiatedHibernate",
            "pending",
        ] {
            assert!(!reason(code).is_interruption(), "{code}");
        }
    }

    #[test]
    fn a_bare_instance_knows_only_its_id_and_state() {
        let i = Instance::new("i-00000001", InstanceState::Stopped);
        assert_eq!(
            (i.id.as_str(), &i.state),
            ("i-00000001", &InstanceState::Stopped)
        );
        assert!(i.tags.is_empty() && i.launch_time.is_none() && i.state_reason.is_none());
        assert_eq!(
            (i.instance_type, i.zone, i.subnet, i.spot),
            (None, None, None, false)
        );
    }

    #[test]
    fn a_clock_that_never_heard_from_ec2_is_the_masters() {
        let before = Utc::now();
        let now = Clock::default().now();
        assert!(now >= before && now <= Utc::now());
    }
}

impl Error {
    /// Whether EC2 may have refused a batch because of one of its instances, so that the
    /// others would succeed alone: any refusal that names a code and is neither transient
    /// (already retried) nor a missing permission (which no instance would pass).
    pub fn may_concern_one_instance(&self) -> bool {
        self.code.is_some()
            && !matches!(
                self.kind,
                Kind::Transient | Kind::Unauthorized | Kind::Credentials
            )
    }
}

impl Retryable for Error {
    fn retry(&self) -> retry::Retry {
        match self.kind {
            Kind::Transient => retry::Retry::Backoff,
            _ => retry::Retry::Never,
        }
    }

    fn timed_out(after: Duration) -> Self {
        Error {
            kind: Kind::Transient,
            action: "EC2 call",
            code: None,
            message: format!("no answer within {after:?}"),
        }
    }
}

/// EC2 takes at most 200 values in the filters of one call (`FilterLimitExceeded`).
pub const MAX_FILTER_VALUES: usize = 200;

/// The most instance or resource ids one mutating call names: EC2's API reference allows
/// up to 1,000 in `CreateTags`, `DeleteTags` and `TerminateInstances`, and publishes no
/// other figure for `StartInstances` and `StopInstances`, which get the same.
pub const MAX_IDS: usize = 1000;

fn filter(name: &str, values: Vec<String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    action: &'static str,
    err: SdkError<E>,
) -> Error {
    let f = crate::sdk::Failure::of(&err);
    let kind = match f.code.as_deref().map(kind_of) {
        Some(Kind::Other) | None if f.transient => Kind::Transient,
        Some(kind) => kind,
        None => Kind::Other,
    };
    Error {
        kind,
        action,
        code: f.code,
        message: f.message,
    }
}

/// What to do about an EC2 error code.
fn kind_of(code: &str) -> Kind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "Unavailable"
        | "ServiceUnavailable"
        | "InternalError"
        | "InternalFailure" => Kind::Transient,
        // No room here, try elsewhere: no machine of this type free in this zone (or on this
        // host, or in a reservation), none offered here (`Unsupported`), an account limit on
        // this market or family (`InstanceLimitExceeded`, `VcpuLimitExceeded`,
        // `MaxSpotInstanceCountExceeded`), a Spot price above the maximum, no Spot capacity
        // (`UnfulfillableCapacity`), or no address left in the subnet.
        "InsufficientInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InstanceLimitExceeded"
        | "VcpuLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "SpotMaxPriceTooLow"
        | "UnfulfillableCapacity"
        | "InsufficientFreeAddressesInSubnet"
        | "Unsupported" => Kind::Capacity,
        "IncorrectInstanceState" | "IncorrectState" => Kind::IncorrectState,
        c if c.starts_with("InvalidInstanceID") || c.starts_with("InvalidSubnetID") => {
            Kind::NotFound
        }
        "InvalidLaunchTemplateId.NotFound"
        | "InvalidLaunchTemplateId.Malformed"
        | "InvalidLaunchTemplateId.VersionNotFound"
        | "InvalidLaunchTemplateName.NotFoundException"
        | "InvalidLaunchTemplateName.MalformedException" => Kind::NotFound,
        "UnauthorizedOperation" | "AccessDenied" => Kind::Unauthorized,
        "AuthFailure" => Kind::Credentials,
        _ => Kind::Other,
    }
}

/// EC2's own clock, read from the `Date` header of its answers. How long an instance has
/// run is EC2's launch time against EC2's now, so a master whose clock is off (booted
/// before NTP synced, a drifting VM) still stops machines on time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    last: Arc<Mutex<Option<Reading>>>,
}

/// EC2's time, and when on this machine's monotonic clock it was read.
type Reading = (DateTime<Utc>, std::time::Instant);

impl Clock {
    /// EC2's time now: its last `Date` plus the time since, or the master's time before
    /// EC2 has answered.
    pub fn now(&self) -> DateTime<Utc> {
        let last = *self.last.lock().expect("clock poisoned");
        match last {
            Some((date, at)) => date + at.elapsed(),
            None => Utc::now(),
        }
    }

    fn set(&self, header: &str) {
        if let Ok(date) = DateTime::parse_from_rfc2822(header) {
            // The header is cut to the second: the time was half a second later, on average.
            let date = date.with_timezone(&Utc) + chrono::Duration::milliseconds(500);
            let now = (date, std::time::Instant::now());
            *self.last.lock().expect("clock poisoned") = Some(now);
        }
    }
}

impl Intercept for Clock {
    fn name(&self) -> &'static str {
        "pushwake::ec2::Clock"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            self.set(date);
        }
        Ok(())
    }
}

/// Sends one mutating request under the retry policy. `$request` is the SDK's builder with
/// the request's parameters, built again for each attempt. With `$dry` the request is only
/// a `DryRun` permission check; a real call leaves the flag out rather than sending it as
/// false. What EC2 answers is dropped: the instances' new states are read from the next
/// describe. A macro, because the SDK's builders share no trait a function could take.
macro_rules! mutation {
    ($ec2:expr, $action:literal, $dry:expr, $request:expr) => {
        $ec2.call($action, || {
            $request.set_dry_run($dry.then_some(true)).send()
        })
        .await
        .map(drop)
    };
}

// After `mutation!`, which they use.
mod describe;
pub mod fleet;
mod mutate;
mod prices;

pub use fleet::{FleetOutcome, FleetRequest, Launched, Market, Override, Refused};
pub use prices::Volume;

/// An EC2 client for one region and credential set.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
    policy: retry::Policy,
    clock: Clock,
}

impl Ec2 {
    /// A client from an SDK config made elsewhere (with its own credentials and endpoint).
    /// The SDK's retries are turned off: retries are ours ([`crate::retry`]), so
    /// throttling is handled in one place.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, policy: retry::Policy) -> Ec2 {
        let clock = Clock::default();
        let config = aws_sdk_ec2::config::Builder::from(config)
            .interceptor(clock.clone())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(crate::http::connect_timeout(policy.timeout))
                    .operation_attempt_timeout(policy.timeout)
                    .build(),
            )
            .build();
        Ec2 {
            client: aws_sdk_ec2::Client::from_conf(config),
            policy,
            clock,
        }
    }

    /// EC2's time now (see [`Clock`]).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The retry policy its calls run under.
    pub fn policy(&self) -> retry::Policy {
        self.policy
    }

    /// This client with its calls cut to end by `end`, retries included (see
    /// [`retry::Policy::until`]); `None` when no time is left. A fenced mutation runs so,
    /// never outlasting the lease it was fenced with.
    pub fn until(&self, end: tokio::time::Instant) -> Option<Ec2> {
        Some(Ec2 {
            policy: self.policy.until(end)?,
            ..self.clone()
        })
    }

    /// One EC2 call under the retry policy, its errors sorted into [`Kind`]s.
    async fn call<T, E, F, Fut>(&self, action: &'static str, op: F) -> Result<T, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
    {
        self.policy
            .run(action, || async {
                op().await.map_err(|e| classify(action, e))
            })
            .await
    }
}

/// The EC2 actions pushwake needs, as IAM names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    DescribeInstances,
    StartInstances,
    StopInstances,
    CreateTags,
    /// `TerminateInstances`: the end of a launched machine.
    Terminate,
    /// `CreateFleet`: launching; asked with [`Ec2::fleet_permitted`], since its DryRun needs
    /// a request to check.
    CreateFleet,
    /// `DescribeSpotPriceHistory`: the Spot price a launched machine pays.
    DescribeSpotPriceHistory,
    /// `DescribeVolumes`: the standing cost of stopped machines' storage.
    DescribeVolumes,
}

impl Action {
    /// The actions asked about a watch's pool machines (`check --online`).
    pub const ALL: [Action; 4] = [
        Action::DescribeInstances,
        Action::StartInstances,
        Action::CreateTags,
        Action::StopInstances,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::DescribeInstances => "DescribeInstances",
            Action::StartInstances => "StartInstances",
            Action::StopInstances => "StopInstances",
            Action::CreateTags => "CreateTags",
            Action::Terminate => "TerminateInstances",
            Action::CreateFleet => "CreateFleet",
            Action::DescribeSpotPriceHistory => "DescribeSpotPriceHistory",
            Action::DescribeVolumes => "DescribeVolumes",
        }
    }
}

impl Ec2 {
    /// Asks EC2 whether these credentials may call `action` on `ids`, with the `DryRun`
    /// flag: nothing is changed. EC2 answers `DryRunOperation` when it would have worked.
    /// `CreateFleet` needs a request: [`Ec2::fleet_permitted`].
    pub async fn permitted(&self, action: Action, ids: &[String]) -> Result<(), Error> {
        let result = match action {
            Action::DescribeInstances => self
                .call(action.name(), || {
                    self.client.describe_instances().dry_run(true).send()
                })
                .await
                .map(drop),
            Action::StartInstances => self.start_instances(ids, true).await,
            Action::StopInstances => self.stop_instances(ids, true).await,
            Action::CreateTags => {
                self.create_tags(ids, &[("pushwake:check", "dry-run")], true)
                    .await
            }
            Action::Terminate => self.terminate_instances(ids, true).await,
            Action::DescribeSpotPriceHistory => self
                .call(action.name(), || {
                    self.client
                        .describe_spot_price_history()
                        .dry_run(true)
                        .send()
                })
                .await
                .map(drop),
            Action::DescribeVolumes => self
                .call(action.name(), || {
                    self.client.describe_volumes().dry_run(true).send()
                })
                .await
                .map(drop),
            Action::CreateFleet => Err(Error {
                kind: Kind::Other,
                action: action.name(),
                code: None,
                message: "a fleet request is needed to check it (fleet_permitted)".to_owned(),
            }),
        };
        dry_run_passed(result)
    }
}

/// A DryRun's answer: `DryRunOperation` is EC2's "it would have worked".
fn dry_run_passed(result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(e) if e.code.as_deref() == Some("DryRunOperation") => Ok(()),
        other => other,
    }
}
