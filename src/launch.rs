//! A watch's instances on EC2, and the calls that carry out a run's plan: tagging and
//! starting, stopping, waiting for stopping instances; launching from the watch's
//! template is [`fleet`]'s.
//!
//! One `DescribeInstances` finds out where each instance stands; one `CreateTags` and one
//! `StartInstances` start the stopped ones, whatever their number. When EC2 refuses a batch
//! for a reason that may concern a single instance (a capacity or vCPU limit, a state, a
//! missing id, a tag limit), the batch is retried one instance at a time, so one bad
//! instance never holds up the others. What to start is decided by [`crate::plan`].
//!
//! Every mutation is fenced: before each call (each batch, each one-by-one retry, each
//! round of a wait) the [`Fence`] says whether this agent may still act and by when the
//! call must end, and the call is cut to end by then. Once the fence refuses, nothing more
//! is called.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Watch;
use crate::ec2::{self, Ec2, Instance, InstanceState};
use crate::tags;

pub mod fleet;

/// What lets this agent change EC2: with a shared state, its lease.
pub trait Fence {
    /// Makes sure this agent may still make one EC2 call, renewing its lease when too
    /// little of it is left. Returns when the call must have ended (`None`: no end, as
    /// with a local state), or why no call may be made.
    fn hold(&self) -> impl Future<Output = anyhow::Result<Option<Instant>>> + Send;
}

/// No fence: a local state, which only this agent uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unfenced;

impl Fence for Unfenced {
    async fn hold(&self) -> anyhow::Result<Option<Instant>> {
        Ok(None)
    }
}

/// Why a mutation of one instance did not happen.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// EC2 refused it.
    Ec2(ec2::Error),
    /// The fence refused it: it was never sent.
    Fenced(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Ec2(e) => e.fmt(f),
            Refusal::Fenced(why) => write!(f, "not asked of EC2: {why}"),
        }
    }
}

impl Refusal {
    fn kind(&self) -> Option<ec2::Kind> {
        match self {
            Refusal::Ec2(e) => Some(e.kind),
            Refusal::Fenced(_) => None,
        }
    }
}

/// The client to make one call with, cut to end as `fence` says; or why none may be made.
async fn fenced(fence: &impl Fence, ec2: &Ec2) -> Result<Ec2, String> {
    match fence.hold().await {
        Ok(None) => Ok(ec2.clone()),
        Ok(Some(end)) => ec2
            .until(end)
            .ok_or_else(|| "the lease ends before the call could".to_owned()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// How long to wait for instances that are still stopping.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub stopping_wait: Duration,
    pub stopping_poll: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stopping_wait: Duration::from_secs(120),
            stopping_poll: Duration::from_secs(5),
        }
    }
}

/// A watch's instances as EC2 describes them.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// The pool: the configured ids in order, then those selected by tags, by id.
    pub ids: Vec<String>,
    /// The machines this deployment launched for the watch (any commit, any state, for
    /// the hour EC2 still lists a terminated one), by id.
    pub launched: Vec<String>,
    /// What EC2 knows of them; an unknown configured id has no entry.
    pub described: Vec<Instance>,
    /// The watch launches machines from a template for what its pool cannot place.
    pub launches: bool,
}

impl Members {
    pub fn get(&self, id: &str) -> Option<&Instance> {
        self.described.iter().find(|i| i.id == id)
    }

    /// Whether `id` is one of the watch's (its pool or its launched machines).
    pub fn has(&self, id: &str) -> bool {
        self.ids.iter().chain(&self.launched).any(|i| i == id)
    }

    /// How many machines may serve a run's repeats, for [`crate::state::Run::gives_repeats`]:
    /// the pool's, or `None` when machines can be launched.
    pub fn pool(&self) -> Option<usize> {
        (!self.launches).then_some(self.ids.len())
    }

    /// The launched machines that are up (or stopping, stopped: not yet terminated).
    pub fn launched_up(&self) -> usize {
        let up = |i: &&Instance| {
            !matches!(
                i.state,
                InstanceState::Terminated | InstanceState::ShuttingDown
            )
        };
        let launched = self.launched.iter().filter_map(|id| self.get(id));
        launched.filter(up).count()
    }
}

/// Describes the watch's instances: one call for its ids, one for its tags, and one for
/// the machines this deployment (`owners`) launched for it, when `launched` (the watch
/// launches, or did). Whoever started an instance of the pool last, it is the watch's: a
/// stopped one is free to start, one that is up for another deployment or a person is
/// busy (the plan decides; ownership bounds only what is stopped).
pub async fn members(
    ec2: &Ec2,
    watch: &Watch,
    owners: &tags::Owners,
    launched: bool,
) -> Result<Members, ec2::Error> {
    let mut members = Members {
        ids: watch.instances.clone(),
        launched: Vec::new(),
        described: ec2.describe(&watch.instances).await?,
        launches: watch.launch.is_some(),
    };
    if launched {
        let filters = [
            (tags::OWNER, owners.all()),
            (tags::REPO, vec![watch.repo.to_string()]),
            (tags::BRANCH, vec![watch.branch.clone()]),
        ];
        let mut found = ec2.describe_with_tags(&filters, true).await?;
        found.retain(tags::is_launched);
        found.sort_by(|a, b| a.id.cmp(&b.id));
        for instance in found {
            if !members.ids.contains(&instance.id) {
                members.launched.push(instance.id.clone());
                members.described.push(instance);
            }
        }
    }
    if !watch.instance_tags.is_empty() {
        let mut tagged = ec2.describe_tagged(&watch.instance_tags).await?;
        tagged.sort_by(|a, b| a.id.cmp(&b.id));
        for instance in tagged {
            if !members.has(&instance.id) {
                members.ids.push(instance.id.clone());
                members.described.push(instance);
            }
        }
    }
    Ok(members)
}

/// What became of one instance that was to be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `StartInstances` accepted it.
    Started,
    /// Someone else started it while pushwake waited for it to stop.
    Up(InstanceState),
    /// It is terminated or does not exist. Reported, but not worth another attempt.
    Gone(String),
    /// EC2 has no room for it now (capacity, a limit): its repeat goes elsewhere.
    NoCapacity(String),
    /// It could not be started this time; the next pass tries again.
    Failed(String),
}

/// Tags and starts `ready` (stopped) at once, and `stopping` once they have stopped,
/// waiting at most `opts.stopping_wait` for them; each instance also tagged with its repeat
/// from `repeats` (one `CreateTags` per instance, after the stamp, before the start; none
/// for an instance without one). Returns the outcome for each id.
pub async fn start(
    ec2: &Ec2,
    fence: &impl Fence,
    ready: &[String],
    stopping: &[String],
    stamp: &[(&str, &str)],
    repeats: &BTreeMap<String, u32>,
    opts: Options,
) -> Vec<(String, Outcome)> {
    let mut outcomes = tag_and_start(ec2, fence, ready, stamp, repeats).await;
    if !stopping.is_empty() {
        let waiting = stopping.to_vec();
        outcomes.extend(wait_and_start(ec2, fence, waiting, stamp, repeats, opts).await);
    }
    outcomes
}

/// Stops the instances; returns the ones that were not stopped, each with why.
pub async fn stop(ec2: &Ec2, fence: &impl Fence, ids: &[String]) -> Vec<(String, Refusal)> {
    each(
        fence,
        ec2,
        ids,
        |ec2, ids| async move { ec2.stop(&ids).await },
    )
    .await
    .into_iter()
    .filter_map(|(id, r)| r.err().map(|e| (id, e)))
    .collect()
}

/// Ends the machines whose repeat is done: those in `launched` are terminated (a launched
/// machine is never left stopped, SPEC §10), the others (the pool's) stopped. Returns
/// the ones that were not, each with why.
pub async fn halt(
    ec2: &Ec2,
    fence: &impl Fence,
    ids: &[String],
    launched: &[String],
) -> Vec<(String, Refusal)> {
    let (end, stop_them): (Vec<String>, Vec<String>) =
        ids.iter().cloned().partition(|id| launched.contains(id));
    let mut refused = stop(ec2, fence, &stop_them).await;
    let terminate = |ec2: Ec2, ids: Vec<String>| async move { ec2.terminate(&ids).await };
    let ended = each(fence, ec2, &end, terminate).await.into_iter();
    refused.extend(ended.filter_map(|(id, r)| r.err().map(|e| (id, e))));
    refused
}

/// Sets `tags` on the instances, fenced like any mutation; says why not on failure.
pub async fn tag(
    ec2: &Ec2,
    fence: &impl Fence,
    ids: &[String],
    tags: &[(&str, &str)],
) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    let ec2 = fenced(fence, ec2).await?;
    ec2.tag(ids, tags).await.map_err(|e| e.to_string())
}

/// Waits, bounded, for stopping instances to reach `stopped`, and starts them. Each round
/// holds the fence first, and the waits between rounds are cut so that the lease is
/// renewed in time: a long wait keeps the lease, and a leader paused in it acts no more.
async fn wait_and_start(
    ec2: &Ec2,
    fence: &impl Fence,
    mut waiting: Vec<String>,
    stamp: &[(&str, &str)],
    repeats: &BTreeMap<String, u32>,
    opts: Options,
) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + opts.stopping_wait;
    tracing::info!(
        "waiting up to {}s for {} to finish stopping",
        opts.stopping_wait.as_secs(),
        waiting.join(", ")
    );
    // Look at once: a stop pushwake just asked for may already be done.
    let mut refused = None;
    loop {
        let round = match fenced(fence, ec2).await {
            Ok(round) => round,
            Err(why) => {
                refused = Some(why);
                break;
            }
        };
        match round.describe(&waiting).await {
            Ok(now) => {
                let mut ready = Vec::new();
                waiting.retain(|id| {
                    let outcome = match now.iter().find(|i| &i.id == id).map(|i| &i.state) {
                        Some(InstanceState::Stopping) => return true,
                        Some(InstanceState::Stopped) => {
                            ready.push(id.clone());
                            return false;
                        }
                        Some(s @ (InstanceState::Pending | InstanceState::Running)) => {
                            Outcome::Up(s.clone())
                        }
                        Some(s) => Outcome::Gone(s.to_string()),
                        None => Outcome::Gone("no longer exists".into()),
                    };
                    outcomes.push((id.clone(), outcome));
                    false
                });
                outcomes.extend(tag_and_start(ec2, fence, &ready, stamp, repeats).await);
            }
            Err(e) => tracing::warn!("cannot describe stopping instances: {e}"),
        }
        if waiting.is_empty() || Instant::now() + opts.stopping_poll > deadline {
            break;
        }
        if let Err(why) = pause(fence, Instant::now() + opts.stopping_poll).await {
            refused = Some(why);
            break;
        }
    }
    outcomes.extend(waiting.into_iter().map(|id| {
        let why = match &refused {
            Some(why) => format!("not started: {why}"),
            None => format!(
                "still stopping after {}s; the next pass starts it",
                opts.stopping_wait.as_secs()
            ),
        };
        (id, Outcome::Failed(why))
    }));
    outcomes
}

/// Sleeps until `until`, waking to hold the fence (renewing the lease) when half of what
/// it grants has passed.
async fn pause(fence: &impl Fence, until: Instant) -> Result<(), String> {
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        let wake = match fence.hold().await.map_err(|e| format!("{e:#}"))? {
            Some(end) => until.min(now + end.saturating_duration_since(now) / 2),
            None => until,
        };
        tokio::time::sleep_until(wake).await;
    }
}

/// Tags `ids` with the stamp, then each with its repeat, then starts those that were
/// tagged. An instance that could not be tagged is not started: its job would not know its
/// commit or its repeat, nor pushwake that it started it.
async fn tag_and_start(
    ec2: &Ec2,
    fence: &impl Fence,
    ids: &[String],
    stamp: &[(&str, &str)],
    repeats: &BTreeMap<String, u32>,
) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::new();
    let mut tagged = Vec::new();
    // The start is dated at its request, on EC2's clock (`tags::started` reads the launch
    // against it), not when the stamp was made: a wait for stopping machines may come
    // between.
    let at = crate::rfc3339(ec2.now());
    let stamp: Vec<(&str, &str)> = stamp
        .iter()
        .map(|&(k, v)| {
            (
                k,
                if k == tags::STARTED_AT {
                    at.as_str()
                } else {
                    v
                },
            )
        })
        .collect();
    let stamp = stamp.as_slice();
    let tag = |ec2: Ec2, ids: Vec<String>| async move { ec2.tag(&ids, stamp).await };
    for (id, result) in each(fence, ec2, ids, tag).await {
        match result {
            Ok(()) => tagged.push(id),
            Err(e) if e.kind() == Some(ec2::Kind::NotFound) => {
                outcomes.push((id, Outcome::Gone(e.to_string())))
            }
            Err(e) => {
                let why = format!("not started, cannot tag it: {e}");
                outcomes.push((id, Outcome::Failed(why)));
            }
        }
    }
    let (tagged, refused) = tag_repeats(ec2, fence, tagged, repeats).await;
    outcomes.extend(refused);
    let start = |ec2: Ec2, ids: Vec<String>| async move { ec2.start(&ids).await };
    for (id, result) in each(fence, ec2, &tagged, start).await {
        let outcome = match result {
            Ok(()) => Outcome::Started,
            Err(e) if e.kind() == Some(ec2::Kind::NotFound) => Outcome::Gone(e.to_string()),
            Err(e) if e.kind() == Some(ec2::Kind::Capacity) => Outcome::NoCapacity(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        outcomes.push((id, outcome));
    }
    outcomes
}

/// How many `CreateTags` of repeats are in flight at once: enough that 200 machines take
/// a few round trips, few enough that EC2's throttling of mutating calls is rare (and
/// ridden out by the retry policy of each call).
const REPEAT_TAGS_AT_ONCE: usize = 8;

/// Writes each instance's `pushwake:repeat`, one `CreateTags` per instance (the value
/// differs per machine), a bounded number at once. The fence is held once for them all,
/// and every call is cut to end by what it grants. Returns the instances tagged, and the
/// outcome of each that was not (it is not started).
pub(crate) async fn tag_repeats(
    ec2: &Ec2,
    fence: &impl Fence,
    ids: Vec<String>,
    repeats: &BTreeMap<String, u32>,
) -> (Vec<String>, Vec<(String, Outcome)>) {
    use futures_util::stream::{self, StreamExt};
    if !ids.iter().any(|id| repeats.get(id).is_some_and(|&k| k > 0)) {
        return (ids, Vec::new());
    }
    let ec2 = match fenced(fence, ec2).await {
        Ok(ec2) => ec2,
        Err(why) => {
            let refused = ids
                .into_iter()
                .map(|id| (id, Outcome::Failed(format!("not started: {why}"))))
                .collect();
            return (Vec::new(), refused);
        }
    };
    let ec2 = &ec2;
    let calls = ids.into_iter().map(|id| async move {
        let Some(repeat) = repeats.get(&id).filter(|&&k| k > 0) else {
            return (id, Ok(()));
        };
        let value = repeat.to_string();
        let result = ec2
            .tag(std::slice::from_ref(&id), &[(tags::REPEAT, value.as_str())])
            .await;
        (id, result)
    });
    let results: Vec<_> = stream::iter(calls)
        .buffered(REPEAT_TAGS_AT_ONCE)
        .collect()
        .await;
    let mut tagged = Vec::new();
    let mut refused = Vec::new();
    for (id, result) in results {
        match result {
            Ok(()) => tagged.push(id),
            Err(e) if e.kind == ec2::Kind::NotFound => {
                refused.push((id, Outcome::Gone(e.to_string())))
            }
            Err(e) => {
                let why = format!("not started, cannot tag its repeat: {e}");
                refused.push((id, Outcome::Failed(why)));
            }
        }
    }
    (tagged, refused)
}

/// Makes one batch call for `ids` (one per [`ec2::MAX_IDS`]: EC2 takes no more in one
/// call). When EC2 refuses a batch for a reason that may concern one instance alone, makes
/// the call once per instance instead, so the others are not held up. Each call is fenced
/// first; once the fence refuses, no further call is made. Returns the result for each id.
async fn each<F, Fut>(
    fence: &impl Fence,
    ec2: &Ec2,
    ids: &[String],
    call: F,
) -> Vec<(String, Result<(), Refusal>)>
where
    F: Fn(Ec2, Vec<String>) -> Fut,
    Fut: Future<Output = Result<(), ec2::Error>>,
{
    let mut results = Vec::with_capacity(ids.len());
    let mut refused: Option<String> = None;
    // One call, fenced; `None` once the fence refused.
    let fenced_call = async |ids: Vec<String>, refused: &mut Option<String>| {
        if let Some(why) = refused {
            return Err(Refusal::Fenced(why.clone()));
        }
        match fenced(fence, ec2).await {
            Ok(ec2) => call(ec2, ids).await.map_err(Refusal::Ec2),
            Err(why) => {
                *refused = Some(why.clone());
                Err(Refusal::Fenced(why))
            }
        }
    };
    for batch in ids.chunks(ec2::MAX_IDS) {
        let err = match fenced_call(batch.to_vec(), &mut refused).await {
            Ok(()) => {
                results.extend(batch.iter().map(|id| (id.clone(), Ok(()))));
                continue;
            }
            Err(e) => e,
        };
        let one_by_one = matches!(&err, Refusal::Ec2(e) if e.may_concern_one_instance());
        if batch.len() == 1 || !one_by_one {
            results.extend(batch.iter().map(|id| (id.clone(), Err(err.clone()))));
            continue;
        }
        tracing::info!("one by one after EC2 refused the batch: {err}");
        for id in batch {
            let result = fenced_call(vec![id.clone()], &mut refused).await;
            results.push((id.clone(), result));
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A lease that grants `grants` holds, each for `lasts`, then refuses.
    struct Lease {
        grants: Mutex<usize>,
        held: Mutex<usize>,
        lasts: Duration,
    }

    impl Lease {
        fn new(grants: usize, lasts: Duration) -> Lease {
            Lease {
                grants: Mutex::new(grants),
                held: Mutex::new(0),
                lasts,
            }
        }

        fn held(&self) -> usize {
            *self.held.lock().unwrap()
        }
    }

    impl Fence for Lease {
        async fn hold(&self) -> anyhow::Result<Option<Instant>> {
            *self.held.lock().unwrap() += 1;
            let mut grants = self.grants.lock().unwrap();
            anyhow::ensure!(*grants > 0, "another agent leads");
            *grants -= 1;
            Ok(Some(Instant::now() + self.lasts))
        }
    }

    fn client() -> Ec2 {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Ec2::from_sdk_config(&config, crate::retry::Policy::default())
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("i-{i:017x}")).collect()
    }

    fn capacity() -> ec2::Error {
        ec2::Error {
            kind: ec2::Kind::Capacity,
            action: "StartInstances",
            code: Some("InsufficientInstanceCapacity".into()),
            message: "EC2's own words.".into(),
        }
    }

    #[tokio::test]
    async fn a_batch_over_ec2s_limit_is_split_and_one_that_fits_is_one_call() {
        for (n, calls) in [(1000, vec![1000]), (2001, vec![1000, 1000, 1]), (0, vec![])] {
            let sizes = Mutex::new(Vec::new());
            let call = |_: Ec2, ids: Vec<String>| {
                sizes.lock().unwrap().push(ids.len());
                async move {
                    match ids.len() <= ec2::MAX_IDS {
                        true => Ok(()),
                        false => Err(capacity()),
                    }
                }
            };
            let results = each(&Unfenced, &client(), &ids(n), call).await;
            assert_eq!(*sizes.lock().unwrap(), calls, "{n} ids");
            assert_eq!(results.len(), n);
            assert!(results.iter().all(|(_, r)| r.is_ok()));
        }
    }

    #[tokio::test]
    async fn once_the_fence_refuses_no_further_call_is_made() {
        // The batch is fenced and refused for one instance; the fence then refuses the
        // first one-by-one call, and the others are not even fenced.
        let lease = Lease::new(1, Duration::from_secs(10));
        let calls = Mutex::new(0);
        let call = |_: Ec2, _: Vec<String>| {
            *calls.lock().unwrap() += 1;
            async { Err(capacity()) }
        };
        let results = each(&lease, &client(), &ids(3), call).await;
        assert_eq!(*calls.lock().unwrap(), 1, "the batch only");
        assert_eq!(lease.held(), 2, "the batch's hold, and the refused one");
        let why: Vec<String> = results
            .iter()
            .map(|(_, r)| r.clone().unwrap_err().to_string())
            .collect();
        assert_eq!(why, ["not asked of EC2: another agent leads"; 3]);
    }

    #[tokio::test]
    async fn a_call_is_cut_to_the_lease() {
        let lease = Lease::new(1, Duration::from_millis(1500));
        let policies = Mutex::new(Vec::new());
        let call = |ec2: Ec2, _: Vec<String>| {
            policies.lock().unwrap().push(ec2.policy().deadline);
            async { Ok(()) }
        };
        each(&lease, &client(), &ids(2), call).await;
        let deadlines = policies.lock().unwrap().clone();
        assert_eq!(deadlines.len(), 1);
        assert!(deadlines[0] <= Duration::from_millis(1500), "{deadlines:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_holds_the_fence_before_half_of_each_grant_has_passed() {
        let lease = Lease::new(100, Duration::from_secs(2));
        let start = Instant::now();
        pause(&lease, start + Duration::from_secs(5)).await.unwrap();
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
        // Held at 0, 1, 2, 3 and 4 s: never more than a second after a grant of two.
        assert_eq!(lease.held(), 5);

        let deposed = Lease::new(2, Duration::from_secs(2));
        let err = pause(&deposed, Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(err.unwrap_err(), "another agent leads");
        assert_eq!(deposed.held(), 3, "the wait ends at the first refusal");
    }
}
