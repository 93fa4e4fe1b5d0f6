//! The tags pushwake writes on an instance before starting it: the contract with the
//! training job on the machine (which commit to run) and pushwake's own memory, across
//! restarts, of what it started.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Watch;

/// The full SHA of the commit the instance was started for.
pub const COMMIT: &str = "pushwake:commit";
/// The repository, `owner/name`.
pub const REPO: &str = "pushwake:repo";
/// The branch.
pub const BRANCH: &str = "pushwake:branch";
/// When pushwake started it, RFC 3339. Removed when pushwake stops it, so a later start
/// by hand is not taken for one of pushwake's.
pub const STARTED_AT: &str = "pushwake:started-at";

/// A run reports a result by tagging its instance `pushwake:result:<metric>` = a number.
pub const RESULT_PREFIX: &str = "pushwake:result:";

pub fn result_key(metric: &str) -> String {
    format!("{RESULT_PREFIX}{metric}")
}

/// The tags for instances started for `sha` of `watch` at `now`. Result tags are set empty
/// in the same call: a number left from an earlier run must never count for this commit.
pub fn stamp(watch: &Watch, sha: &str, now: DateTime<Utc>) -> Vec<(String, String)> {
    let mut tags = vec![
        (COMMIT.to_owned(), sha.to_owned()),
        (REPO.to_owned(), watch.repo.to_string()),
        (BRANCH.to_owned(), watch.branch.clone()),
        (
            STARTED_AT.to_owned(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
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

/// When pushwake started an instance, from its tags.
pub fn started_at(tags: &BTreeMap<String, String>) -> Option<DateTime<Utc>> {
    let text = tags.get(STARTED_AT)?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
