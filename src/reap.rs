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
use crate::ec2::State;
use crate::launch::Members;
use crate::tags;

/// An instance due to be stopped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub id: String,
    pub reason: String,
    /// How long it has run since pushwake started it.
    pub runtime: Duration,
}

/// The instances of `watch` (as `members` describes them) that pushwake started and that
/// should stop now: past `max_runtime`, idle through `idle_stop`, or in `reported` (done,
/// for `stop_when_reported`). The CloudWatch client is needed only for `idle_stop`.
pub async fn due(
    members: &Members,
    cloudwatch: Option<&CloudWatch>,
    watch: &Watch,
    reported: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Due>> {
    let mut due = Vec::new();
    // Only the watch's own instances, and of those only what pushwake started for it: the
    // same repository and branch may be watched elsewhere, for other machines.
    for instance in &members.described {
        if instance.state != State::Running || !tags::is_for(instance, watch) {
            continue;
        }
        let Some(started) = tags::pushwake_started(instance) else {
            continue;
        };
        let runtime = (now - started).to_std().unwrap_or_default();
        let id = instance.id.clone();
        if reported.contains(&instance.id) {
            due.push(Due {
                id,
                reason: "reported every result".to_owned(),
                runtime,
            });
            continue;
        }
        if let Some(max) = watch.max_runtime
            && runtime >= max
        {
            due.push(Due {
                id,
                reason: format!("max_runtime {} reached", humantime::format_duration(max)),
                runtime,
            });
            continue;
        }
        if let (Some(idle), Some(cw)) = (&watch.idle_stop, cloudwatch)
            && runtime >= idle.window
        {
            let query = cloudwatch::Query {
                namespace: &idle.namespace,
                metric: &idle.metric,
                instance_id: &instance.id,
                window: idle.window,
            };
            let points = cw.averages(&query).await?;
            // No data is not idleness: the agent may not report yet.
            if !points.is_empty() && points.iter().all(|v| *v < idle.below) {
                due.push(Due {
                    id,
                    reason: format!(
                        "idle: {} below {} for {}",
                        idle.metric,
                        idle.below,
                        humantime::format_duration(idle.window)
                    ),
                    runtime,
                });
            }
        }
    }
    Ok(due)
}
