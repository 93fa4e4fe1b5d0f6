//! The tags pushwake writes on an instance before starting it: the contract with the
//! training job on the machine (which commit to run) and pushwake's own memory, across
//! restarts, of what it started.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Watch;
use crate::ec2::Instance;

/// The full SHA of the commit the instance was started for.
pub const COMMIT: &str = "pushwake:commit";
/// The repository, `owner/name`.
pub const REPO: &str = "pushwake:repo";
/// The branch.
pub const BRANCH: &str = "pushwake:branch";
/// When the instance started for the commit, RFC 3339, from EC2's own launch time: written
/// by the pass that confirms the start, emptied before every start and removed when
/// pushwake stops it, so a start that failed, or a later start by hand, is never taken
/// for one of pushwake's.
pub const STARTED_AT: &str = "pushwake:started-at";

/// A run reports a result by tagging its instance `pushwake:result:<metric>` = a number.
pub const RESULT_PREFIX: &str = "pushwake:result:";

pub fn result_key(metric: &str) -> String {
    format!("{RESULT_PREFIX}{metric}")
}

/// The tags written before an instance is started for `sha` of `watch`. `started-at` and
/// the result tags are set empty in the same call: a time or a number left from an earlier
/// run must never count for this commit.
pub fn stamp(watch: &Watch, sha: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        (COMMIT.to_owned(), sha.to_owned()),
        (REPO.to_owned(), watch.repo.to_string()),
        (BRANCH.to_owned(), watch.branch.clone()),
        (STARTED_AT.to_owned(), String::new()),
    ];
    if let Some(results) = &watch.results {
        tags.extend(
            results
                .metrics
                .iter()
                .map(|m| (result_key(m), String::new())),
        );
    }
    tags
}

/// A result an instance reported, if its tag holds a finite number.
pub fn result(tags: &BTreeMap<String, String>, metric: &str) -> Option<f64> {
    tags.get(&result_key(metric))?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// The value of `started-at` for a start at `at`.
pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// When pushwake started an instance, from its tags.
pub fn started_at(tags: &BTreeMap<String, String>) -> Option<DateTime<Utc>> {
    let text = tags.get(STARTED_AT)?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An instance started again this long after pushwake's `started-at` was started by
/// someone else (EC2 moves the launch time on every start).
const RESTARTED_SLACK: chrono::Duration = chrono::Duration::minutes(10);

/// When pushwake started this instance for the commit it is tagged with, if it did and has
/// not been started again since (by a person, after pushwake or the job stopped it).
pub fn pushwake_started(instance: &Instance) -> Option<DateTime<Utc>> {
    let started = started_at(&instance.tags)?;
    let restarted = instance
        .launch_time
        .is_some_and(|t| t > started + RESTARTED_SLACK);
    (!restarted).then_some(started)
}

/// Whether `instance` carries the repository and branch of `watch`.
pub fn is_for(instance: &Instance, watch: &Watch) -> bool {
    instance.tags.get(BRANCH) == Some(&watch.branch)
        && instance.tags.get(REPO).map(String::as_str) == Some(&*watch.repo.to_string())
}
