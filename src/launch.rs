//! A watch's instances on EC2, and the calls that carry out a run's plan: tagging and
//! starting, stopping, waiting for stopping instances.
//!
//! One `DescribeInstances` finds out where each instance stands; one `CreateTags` and one
//! `StartInstances` start the stopped ones, whatever their number. When EC2 refuses a batch
//! for a reason that may concern a single instance (a capacity or vCPU limit, a state, a
//! missing id, a tag limit), the batch is retried one instance at a time, so one bad
//! instance never holds up the others. What to start is decided by [`crate::plan`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::config::Watch;
use crate::ec2::{self, Ec2, Instance, InstanceState};
use crate::tags;

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
    /// The configured ids in order, then those selected by tags, by id.
    pub ids: Vec<String>,
    /// What EC2 knows of them; an unknown configured id has no entry.
    pub described: Vec<Instance>,
}

impl Members {
    pub fn get(&self, id: &str) -> Option<&Instance> {
        self.described.iter().find(|i| i.id == id)
    }
}

/// Describes the watch's instances: one call for its ids, one for its tags. Whoever
/// started an instance last, it is the watch's: a stopped one is free to start, one that
/// is up for another deployment or a person is busy (the plan decides; ownership bounds
/// only what is stopped).
pub async fn members(ec2: &Ec2, watch: &Watch) -> Result<Members, ec2::Error> {
    let mut members = Members {
        ids: watch.instances.clone(),
        described: ec2.describe(&watch.instances).await?,
    };
    if !watch.instance_tags.is_empty() {
        let mut tagged = ec2.describe_tagged(&watch.instance_tags).await?;
        tagged.sort_by(|a, b| a.id.cmp(&b.id));
        for instance in tagged {
            if !members.ids.contains(&instance.id) {
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
    /// It could not be started this time; the next pass tries again.
    Failed(String),
}

/// Tags and starts `ready` (stopped) at once, and `stopping` once they have stopped,
/// waiting at most `opts.stopping_wait` for them. Returns the outcome for each id.
pub async fn start(
    ec2: &Ec2,
    ready: &[String],
    stopping: &[String],
    stamp: &[(&str, &str)],
    opts: Options,
) -> Vec<(String, Outcome)> {
    start_repeats(ec2, ready, stopping, stamp, &BTreeMap::new(), opts).await
}

/// [`start`], each instance also tagged with its repeat from `repeats` (one `CreateTags`
/// per instance, after the stamp, before the start).
pub async fn start_repeats(
    ec2: &Ec2,
    ready: &[String],
    stopping: &[String],
    stamp: &[(&str, &str)],
    repeats: &BTreeMap<String, u32>,
    opts: Options,
) -> Vec<(String, Outcome)> {
    let mut outcomes = tag_and_start(ec2, ready, stamp, repeats).await;
    if !stopping.is_empty() {
        let waiting = stopping.to_vec();
        outcomes.extend(wait_and_start(ec2, waiting, stamp, repeats, opts).await);
    }
    outcomes
}

/// Stops the instances; returns the ones EC2 refused, each with its error.
pub async fn stop(ec2: &Ec2, ids: &[String]) -> Vec<(String, ec2::Error)> {
    each(ids, |ids| async move { ec2.stop(&ids).await })
        .await
        .into_iter()
        .filter_map(|(id, r)| r.err().map(|e| (id, e)))
        .collect()
}

/// Waits, bounded, for stopping instances to reach `stopped`, and starts them.
async fn wait_and_start(
    ec2: &Ec2,
    mut waiting: Vec<String>,
    stamp: &[(&str, &str)],
    repeats: &BTreeMap<String, u32>,
    opts: Options,
) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::new();
    let deadline = tokio::time::Instant::now() + opts.stopping_wait;
    tracing::info!(
        "waiting up to {}s for {} to finish stopping",
        opts.stopping_wait.as_secs(),
        waiting.join(", ")
    );
    // Look at once: a stop pushwake just asked for may already be done.
    loop {
        match ec2.describe(&waiting).await {
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
                outcomes.extend(tag_and_start(ec2, &ready, stamp, repeats).await);
            }
            Err(e) => tracing::warn!("cannot describe stopping instances: {e}"),
        }
        if waiting.is_empty() || tokio::time::Instant::now() + opts.stopping_poll > deadline {
            break;
        }
        tokio::time::sleep(opts.stopping_poll).await;
    }
    outcomes.extend(waiting.into_iter().map(|id| {
        let why = format!(
            "still stopping after {}s; the next pass starts it",
            opts.stopping_wait.as_secs()
        );
        (id, Outcome::Failed(why))
    }));
    outcomes
}

/// Tags `ids` with the stamp, then each with its repeat, then starts those that were
/// tagged. An instance that could not be tagged is not started: its job would not know its
/// commit or its repeat, nor pushwake that it started it.
async fn tag_and_start(
    ec2: &Ec2,
    ids: &[String],
    stamp: &[(&str, &str)],
    repeats: &BTreeMap<String, u32>,
) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::new();
    let mut tagged = Vec::new();
    // The start is dated at its request, on EC2's clock: a wait for stopping machines may
    // have taken minutes since the stamp was made.
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
    for (id, result) in each(ids, |ids| async move { ec2.tag(&ids, stamp).await }).await {
        match result {
            Ok(()) => tagged.push(id),
            Err(e) if e.kind == ec2::Kind::NotFound => {
                outcomes.push((id, Outcome::Gone(e.to_string())))
            }
            Err(e) => {
                let why = format!("not started, cannot tag it: {e}");
                outcomes.push((id, Outcome::Failed(why)));
            }
        }
    }
    let (tagged, refused) = tag_repeats(ec2, tagged, repeats).await;
    outcomes.extend(refused);
    for (id, result) in each(&tagged, |ids| async move { ec2.start(&ids).await }).await {
        let outcome = match result {
            Ok(()) => Outcome::Started,
            Err(e) if e.kind == ec2::Kind::NotFound => Outcome::Gone(e.to_string()),
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
/// differs per machine), a bounded number at once. Returns the instances tagged, and the
/// outcome of each that was not (it is not started).
async fn tag_repeats(
    ec2: &Ec2,
    ids: Vec<String>,
    repeats: &BTreeMap<String, u32>,
) -> (Vec<String>, Vec<(String, Outcome)>) {
    use futures_util::stream::{self, StreamExt};
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

/// Makes one batch call for `ids`. When EC2 refuses the batch for a reason that may
/// concern one instance alone, makes the call once per instance instead, so the others are
/// not held up. Returns the result for each id.
async fn each<F, Fut>(ids: &[String], call: F) -> Vec<(String, Result<(), ec2::Error>)>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<(), ec2::Error>>,
{
    if ids.is_empty() {
        return Vec::new();
    }
    let err = match call(ids.to_vec()).await {
        Ok(()) => return ids.iter().map(|id| (id.clone(), Ok(()))).collect(),
        Err(e) => e,
    };
    if ids.len() == 1 || !err.may_concern_one_instance() {
        return ids
            .iter()
            .map(|id| (id.clone(), Err(err.clone())))
            .collect();
    }
    tracing::info!("one by one after EC2 refused the batch: {err}");
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        results.push((id.clone(), call(vec![id.clone()]).await));
    }
    results
}
