//! The tags pushwake writes on an instance before starting it: the contract with the
//! training job on the machine (which commit to run) and pushwake's own memory, across
//! restarts, of what it started.

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

/// The tags for instances started for `sha` of `watch` at `now`.
pub fn stamp(watch: &Watch, sha: &str, now: DateTime<Utc>) -> Vec<(&'static str, String)> {
    vec![
        (COMMIT, sha.to_owned()),
        (REPO, watch.repo.to_string()),
        (BRANCH, watch.branch.clone()),
        (
            STARTED_AT,
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    ]
}

/// When pushwake started an instance, from its tags.
pub fn started_at(tags: &std::collections::BTreeMap<String, String>) -> Option<DateTime<Utc>> {
    let text = tags.get(STARTED_AT)?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
