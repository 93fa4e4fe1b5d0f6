//! Which instances to stop: those of a watch that pushwake started for it and that ran
//! past `max_runtime`, sat idle through `idle_stop`, or reported every result.
//!
//! What pushwake started is read from the instances' tags, not from memory, so it is known
//! across restarts; an instance without pushwake's `started-at` tag, or started again after
//! it, was started by someone else and is never touched.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cloudwatch::{self, CloudWatch};
use crate::config::Watch;
use crate::ec2::InstanceState;
use crate::launch::Members;
use crate::tags;

/// An instance due to be stopped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub id: String,
    pub why: Why,
    /// How long it has run since pushwake started it.
    pub runtime: Duration,
    /// Its launch time on EC2, which tells this start from a later one.
    pub launched: Option<DateTime<Utc>>,
}

/// The stop rule that stopped an instance; `report` says it in words.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// It reported every metric, under `stop_when_reported`.
    Reported,
    /// It ran for `max_runtime`, the duration given.
    MaxRuntime(Duration),
    /// Its `metric` stayed below `below` for the whole `window` (`idle_stop`).
    Idle {
        metric: String,
        below: f64,
        window: Duration,
    },
}

/// What the stop rules found for a watch.
#[derive(Debug, Default)]
pub struct Judged {
    pub due: Vec<Due>,
    /// Instances that could not be judged (CloudWatch failing for them); the others were.
    pub errors: Vec<String>,
}

/// The instances of `watch` (as `members` describes them) that this deployment (`owners`)
/// started and that should stop at `now` (EC2's clock): past `max_runtime`, idle through
/// `idle_stop`, or done (in `reported`, or carrying a result for every metric, also after
/// its run closed) under `stop_when_reported`. Each instance is judged on its own: a
/// CloudWatch error for one holds up only that one. The CloudWatch client is needed only
/// for `idle_stop`.
pub async fn due(
    members: &Members,
    cloudwatch: Option<&CloudWatch>,
    watch: &Watch,
    owners: &tags::Owners,
    reported: &[String],
    now: DateTime<Utc>,
) -> Judged {
    let mut judged = Judged::default();
    // Only the watch's own instances, and of those only what this deployment started for
    // it, by EC2's record: the same repository and branch may be watched elsewhere, for
    // other machines, and a person may have started one since.
    for instance in &members.described {
        if instance.state != InstanceState::Running {
            continue;
        }
        let Some(started) = tags::started_for(instance, owners, watch) else {
            continue;
        };
        let runtime = (now - started.at).to_std().unwrap_or_default();
        let (id, launched) = (instance.id.clone(), instance.launch_time);
        let due = |why| Due {
            id: id.clone(),
            why,
            runtime,
            launched,
        };
        if reported.contains(&instance.id) || reported_all(watch, instance) {
            judged.due.push(due(Why::Reported));
            continue;
        }
        if let Some(max) = watch.max_runtime
            && runtime >= max
        {
            judged.due.push(due(Why::MaxRuntime(max)));
            continue;
        }
        if let (Some(idle), Some(cw)) = (&watch.idle_stop, cloudwatch)
            && runtime >= idle.window
        {
            let query = cloudwatch::Query {
                namespace: &idle.namespace,
                metric: &idle.metric,
                instance_id: &instance.id,
                dimensions: &idle.dimensions,
                window: idle.window,
                end: now,
            };
            let points = match cw.averages(&query).await {
                Ok(points) => points,
                Err(e) => {
                    judged
                        .errors
                        .push(format!("cannot tell whether {id} is idle: {e}"));
                    continue;
                }
            };
            // No data is not idleness: the agent may not report yet.
            if !points.is_empty() && points.iter().all(|v| *v < idle.below) {
                judged.due.push(due(Why::Idle {
                    metric: idle.metric.clone(),
                    below: idle.below,
                    window: idle.window,
                }));
            }
        }
    }
    judged
}

/// Whether `instance` carries a result for every metric of its watch, which wants it
/// stopped then: the result tags are emptied before every start, so what they hold is its
/// commit's. This holds after its run closed too (a result after the timeout).
fn reported_all(watch: &Watch, instance: &crate::ec2::Instance) -> bool {
    watch.results.as_ref().is_some_and(|r| {
        r.stop_when_reported
            && r.metrics
                .iter()
                .all(|m| tags::result(&instance.tags, m).is_some())
    })
}
