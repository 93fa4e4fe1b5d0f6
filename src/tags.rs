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

/// The deployment that started it: where its state lives, as [`owner`] makes it. Two
/// teams' pushwakes in one AWS account never touch each other's machines.
pub const OWNER: &str = "pushwake:owner";

/// How many tags pushwake keeps on an instance beside the result tags: the config owns
/// the count (it bounds how many metrics fit), [`stamp`] is held to it by a unit test.
pub use crate::config::OWN_TAGS;

/// A run reports a result by tagging its instance `pushwake:result:<metric>` = a number.
pub const RESULT_PREFIX: &str = "pushwake:result:";

pub fn result_key(metric: &str) -> String {
    format!("{RESULT_PREFIX}{metric}")
}

/// The tags written before an instance is started for `sha` of `watch` by the deployment
/// `owner`. `started-at` and the result tags are set empty in the same call: a time or a
/// number left from an earlier run must never count for this commit.
pub fn stamp(watch: &Watch, sha: &str, owner: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        (COMMIT.to_owned(), sha.to_owned()),
        (REPO.to_owned(), watch.repo.to_string()),
        (BRANCH.to_owned(), watch.branch.clone()),
        (OWNER.to_owned(), owner.to_owned()),
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

/// The owner of a deployment whose state lives in `state_dir` on the host `host`:
/// `host:/var/lib/pushwake`. It is the same after a lost or corrupt state file, and differs
/// between two deployments on one host. EC2 takes tag values of up to 256 characters; a
/// longer one is shortened with a hash of the whole.
pub fn owner(host: &str, state_dir: &std::path::Path) -> String {
    let full = format!("{host}:{}", state_dir.display());
    if full.len() <= 256 {
        return full;
    }
    let hash = crate::fnv1a(full.as_bytes());
    let head: String = full.chars().take(200).collect();
    format!("{head}…{hash:016x}")
}

/// Whether `instance` belongs to the deployment `owner`: tagged so, or (started before
/// owners were tagged) untagged and listed by id in `watch`.
pub fn owned_by(instance: &Instance, owner: &str, watch: &Watch) -> bool {
    match instance.tags.get(OWNER) {
        Some(o) => o == owner,
        None => watch.instances.contains(&instance.id),
    }
}

/// Whether `instance` carries the repository and branch of `watch`.
pub fn is_for(instance: &Instance, watch: &Watch) -> bool {
    instance.tags.get(BRANCH) == Some(&watch.branch)
        && instance.tags.get(REPO).map(String::as_str) == Some(&*watch.repo.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::InstanceState;

    fn instance(tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: "i-00000001".into(),
            state: InstanceState::Running,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            launch_time: None,
            state_reason: None,
        }
    }

    fn watch(ids: &[&str]) -> Watch {
        Watch::example("main", ids)
    }

    #[test]
    fn the_owner_is_where_the_state_lives() {
        let dir = std::path::Path::new("/var/lib/pushwake");
        assert_eq!(owner("master-1", dir), "master-1:/var/lib/pushwake");
        assert_ne!(owner("master-1", dir), owner("master-2", dir));
        let long = std::path::PathBuf::from(format!("/{}", "d".repeat(300)));
        let o = owner("m", &long);
        assert!(o.chars().count() <= 256, "{}", o.len());
        assert_eq!(o, owner("m", &long), "stable");
    }

    #[test]
    fn another_owners_instance_is_never_ours() {
        let i = instance(&[(OWNER, "other:/var/lib/pushwake")]);
        assert!(!owned_by(
            &i,
            "me:/var/lib/pushwake",
            &watch(&["i-00000001"])
        ));
        let i = instance(&[(OWNER, "me:/var/lib/pushwake")]);
        assert!(owned_by(&i, "me:/var/lib/pushwake", &watch(&[])));
    }

    #[test]
    fn an_instance_without_owner_is_ours_only_when_listed() {
        let i = instance(&[]);
        assert!(owned_by(&i, "me:/x", &watch(&["i-00000001"])));
        assert!(!owned_by(&i, "me:/x", &watch(&[])));
    }

    #[test]
    fn own_tags_are_counted_right() {
        let stamp = stamp(&watch(&[]), "abc", "me:/x");
        assert_eq!(stamp.len(), OWN_TAGS);
    }

    #[test]
    fn the_stamp_empties_what_must_not_carry_over() {
        let mut w = watch(&[]);
        w.results = Some(crate::config::Results {
            metrics: vec!["loss".into()],
            better: Default::default(),
            timeout: std::time::Duration::from_secs(60),
            stop_when_reported: true,
        });
        let stamp = stamp(&w, "abc", "me:/x");
        assert!(stamp.contains(&(STARTED_AT.to_owned(), String::new())));
        assert!(stamp.contains(&(result_key("loss"), String::new())));
        assert!(stamp.contains(&(OWNER.to_owned(), "me:/x".to_owned())));
    }

    #[test]
    fn a_restart_long_after_started_at_is_not_pushwakes() {
        let mut i = instance(&[(STARTED_AT, "2026-11-29T10:00:00Z")]);
        i.launch_time = Some("2026-11-29T10:05:00Z".parse().unwrap());
        assert!(pushwake_started(&i).is_some());
        i.launch_time = Some("2026-11-29T11:00:00Z".parse().unwrap());
        assert_eq!(pushwake_started(&i), None);
        assert_eq!(started_at(&instance(&[(STARTED_AT, "")]).tags), None);
    }
}
