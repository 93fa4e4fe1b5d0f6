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
/// When pushwake asked EC2 to start the instance for the commit, RFC 3339, on EC2's clock:
/// written in the same `CreateTags` as the commit, before the start, and corrected to EC2's
/// launch time by the next look. With the launch time EC2 keeps, it tells a start of
/// pushwake's (launched from then to a few minutes after) from a tag whose start never
/// happened (launched before) and from a later start by hand (launched long after); see
/// [`started`].
pub const STARTED_AT: &str = "pushwake:started-at";

/// When pushwake stopped the instance, on EC2's clock: it closes the window of
/// [`STARTED_AT`], so a start by hand after pushwake stopped it is never taken for
/// pushwake's, however soon. Emptied before every start.
pub const STOPPED_AT: &str = "pushwake:stopped-at";

/// The deployment that started it (see [`Owners`]). Two teams' pushwakes in one AWS
/// account never stop each other's machines.
pub const OWNER: &str = "pushwake:owner";

/// On a machine launched from the watch's template (SPEC §10), the template: such a
/// machine belongs to its run and is terminated, never stopped, when its repeat is done.
/// Written at launch, with the stamp, so no launched machine is ever up without it.
pub const LAUNCHED: &str = "pushwake:launched";

/// Whether pushwake launched the instance (rather than starting a machine of the pool).
pub fn is_launched(instance: &Instance) -> bool {
    instance.tags.contains_key(LAUNCHED)
}

/// How many tags pushwake keeps on an instance beside the result tags: the config owns
/// the count (it bounds how many metrics fit), [`stamp`] is held to it by a unit test.
pub use crate::config::OWN_TAGS;

/// Which repeat of the run (1…N) the machine serves: the job may use it as its seed.
/// Written in a call of its own per machine, after the stamp and before the start (the
/// value differs per machine); with the commit and a start in its `started-at` window it is
/// EC2's record of which repeat the machine holds.
pub const REPEAT: &str = "pushwake:repeat";

/// The repeat an instance's tags say it serves, if they hold one.
pub fn repeat(tags: &BTreeMap<String, String>) -> Option<u32> {
    tags.get(REPEAT)?.trim().parse().ok().filter(|&k| k > 0)
}

/// A run reports a result by tagging its instance `pushwake:result:<metric>` = a number.
pub const RESULT_PREFIX: &str = "pushwake:result:";

pub fn result_key(metric: &str) -> String {
    format!("{RESULT_PREFIX}{metric}")
}

/// The tags written before an instance is started for `sha` of `watch` by the deployment
/// `owner`. `started-at` is dated when the tags are sent (`launch` sets it to EC2's clock
/// then); `stopped-at` and the result tags are set empty in the same call: a time or a
/// number left from an earlier run must never count for this commit.
pub fn stamp(watch: &Watch, sha: &str, owner: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        (COMMIT.to_owned(), sha.to_owned()),
        (REPO.to_owned(), watch.repo.to_string()),
        (BRANCH.to_owned(), watch.branch.clone()),
        (OWNER.to_owned(), owner.to_owned()),
        (STARTED_AT.to_owned(), String::new()),
        (STOPPED_AT.to_owned(), String::new()),
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
    time(tags, STARTED_AT)
}

/// The time in the tag `key`, if it holds one.
fn time(tags: &BTreeMap<String, String>, key: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(tags.get(key)?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How long after its `started-at` a machine pushwake asked EC2 to start may show as
/// launched: the tag and the start are two calls, each with retries (a minute at most),
/// and EC2 records the launch when it acts on the start. A launch later than this is a
/// start by someone else (EC2 moves the launch time on every start).
pub const START_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// How much later than the launch a `started-at` may read: it comes from pushwake's
/// estimate of EC2's clock (its `Date`, cut to the second, plus half a second), which may
/// run up to a second ahead. A tag whose start never happened shows a launch minutes or
/// hours before it: a stopped machine was stopped since.
const CLOCK_SLACK: chrono::Duration = chrono::Duration::seconds(2);

/// A start of pushwake's, as EC2's record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start<'a> {
    /// The commit it was started for.
    pub commit: &'a str,
    /// When, by its `started-at` tag.
    pub at: DateTime<Utc>,
}

/// Who this deployment is on EC2: the owner it tags its machines with, and the older
/// owners of the same state whose machines it adopts (the `host:dir` owner of earlier
/// versions, a generated id once a name was set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    pub current: String,
    pub adopted: Vec<String>,
}

impl Owners {
    pub fn new(current: impl Into<String>) -> Owners {
        Owners {
            current: current.into(),
            adopted: Vec::new(),
        }
    }

    /// Whether `owner`, a `pushwake:owner` tag, is this deployment.
    pub fn is(&self, owner: &str) -> bool {
        self.current == owner || self.adopted.iter().any(|a| a == owner)
    }

    /// Every owner this deployment answers to, its own first.
    pub fn all(&self) -> Vec<String> {
        let mut all = vec![self.current.clone()];
        all.extend(self.adopted.iter().filter(|a| **a != self.current).cloned());
        all
    }
}

/// What EC2's record alone says pushwake started: the machine carries one of `owners`, a
/// commit, and a `started-at` that its launch time falls in (no earlier, at most
/// [`START_WINDOW`] later, and before any `stopped-at`). So a lost or stale state neither hides one of pushwake's
/// machines nor takes a person's start, or a tag whose start never happened, for one.
pub fn started<'a>(instance: &'a Instance, owners: &Owners) -> Option<Start<'a>> {
    let owner = instance.tags.get(OWNER)?;
    if !owners.is(owner) {
        return None;
    }
    started_unowned(instance)
}

/// [`started`] without the owner: the commit, `started-at` and the launch time agree.
fn started_unowned(instance: &Instance) -> Option<Start<'_>> {
    let commit = instance.tags.get(COMMIT).filter(|c| !c.is_empty())?;
    let at = started_at(&instance.tags)?;
    let launched = instance.launch_time?;
    let stopped = time(&instance.tags, STOPPED_AT);
    let within = launched + CLOCK_SLACK >= at
        && launched <= at + START_WINDOW
        && stopped.is_none_or(|stopped| launched < stopped);
    within.then_some(Start { commit, at })
}

/// [`started`] for a machine of `watch`: also one that carries no owner at all but is
/// listed by id in the watch (started before owners were tagged).
pub fn started_for<'a>(
    instance: &'a Instance,
    owners: &Owners,
    watch: &Watch,
) -> Option<Start<'a>> {
    if !is_for(instance, watch) || !owned_by(instance, owners, watch) {
        return None;
    }
    started_unowned(instance)
}

/// The owner of a deployment whose state lives in `state_dir` on the host `host`, as
/// versions before `deployment` tagged it: `host:/var/lib/pushwake`. Such machines are
/// adopted. EC2 takes tag values of up to 256 characters; a longer one is shortened with a
/// hash of the whole.
pub fn legacy_owner(host: &str, state_dir: &std::path::Path) -> String {
    let full = format!("{host}:{}", state_dir.display());
    if full.len() <= 256 {
        return full;
    }
    let hash = crate::fnv1a(full.as_bytes());
    let head: String = full.chars().take(200).collect();
    format!("{head}…{hash:016x}")
}

/// Whether `instance` belongs to this deployment: tagged so, or (started before owners
/// were tagged) untagged and listed by id in `watch`.
pub fn owned_by(instance: &Instance, owners: &Owners, watch: &Watch) -> bool {
    match instance.tags.get(OWNER) {
        Some(o) => owners.is(o),
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

    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

    fn at(minute: u32, second: u32) -> DateTime<Utc> {
        format!("2026-11-29T10:{minute:02}:{second:02}Z")
            .parse()
            .unwrap()
    }

    fn instance(tags: &[(&str, &str)]) -> Instance {
        Instance {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Instance::new("i-00000001", InstanceState::Running)
        }
    }

    /// Tagged by `owner` for commit C at 10:00:00, launched at `launched`.
    fn tagged(owner: &str, launched: Option<DateTime<Utc>>) -> Instance {
        let mut i = instance(&[
            (OWNER, owner),
            (COMMIT, C),
            (STARTED_AT, "2026-11-29T10:00:00Z"),
        ]);
        i.launch_time = launched;
        i
    }

    fn watch(ids: &[&str]) -> Watch {
        Watch::example("main", ids)
    }

    fn me() -> Owners {
        Owners {
            current: "team-a".into(),
            adopted: vec!["master:/var/lib/pushwake".into()],
        }
    }

    #[test]
    fn the_legacy_owner_is_where_the_state_lived() {
        let dir = std::path::Path::new("/var/lib/pushwake");
        assert_eq!(legacy_owner("master-1", dir), "master-1:/var/lib/pushwake");
        assert_ne!(legacy_owner("master-1", dir), legacy_owner("master-2", dir));
        let long = std::path::PathBuf::from(format!("/{}", "d".repeat(300)));
        let o = legacy_owner("m", &long);
        assert!(o.chars().count() <= 256, "{}", o.len());
        assert_eq!(o, legacy_owner("m", &long), "stable");
    }

    #[test]
    fn a_start_is_read_from_ec2_alone() {
        // Launched when asked, or a few minutes later: pushwake's start for C.
        for launched in [at(0, 0), at(0, 40), at(4, 59)] {
            let i = tagged("team-a", Some(launched));
            assert_eq!(
                started(&i, &me()),
                Some(Start {
                    commit: C,
                    at: at(0, 0)
                }),
                "{launched}"
            );
        }
        // pushwake's clock may run a second ahead of EC2's: a launch just before counts.
        let mut i = tagged("team-a", Some(at(0, 0)));
        i.tags
            .insert(STARTED_AT.into(), "2026-11-29T10:00:01Z".into());
        assert!(started(&i, &me()).is_some());
    }

    #[test]
    fn a_tag_whose_start_never_happened_is_no_start() {
        // Tagged at 10:00, and the machine last launched at 09:58: the start was never made.
        let i = tagged("team-a", Some(at(0, 0) - chrono::Duration::minutes(2)));
        assert_eq!(started(&i, &me()), None);
        // Nor without any launch time.
        assert_eq!(started(&tagged("team-a", None), &me()), None);
    }

    #[test]
    fn a_later_start_by_hand_is_no_start_of_pushwakes() {
        let i = tagged("team-a", Some(at(30, 0)));
        assert_eq!(started(&i, &me()), None);
    }

    #[test]
    fn a_start_by_hand_after_pushwake_stopped_it_is_not_pushwakes_however_soon() {
        let mut i = tagged("team-a", Some(at(0, 30)));
        i.tags
            .insert(STOPPED_AT.into(), "2026-11-29T10:00:20Z".into());
        assert_eq!(started(&i, &me()), None);
        // Its own start, before the stop, still shows what it ran.
        i.launch_time = Some(at(0, 5));
        assert!(started(&i, &me()).is_some());
        i.tags.insert(STOPPED_AT.into(), String::new());
        i.launch_time = Some(at(0, 30));
        assert!(
            started(&i, &me()).is_some(),
            "an empty stopped-at closes nothing"
        );
    }

    #[test]
    fn another_deployments_start_is_not_ours_and_an_adopted_owners_is() {
        assert_eq!(started(&tagged("team-b", Some(at(0, 5))), &me()), None);
        let adopted = tagged("master:/var/lib/pushwake", Some(at(0, 5)));
        assert!(started(&adopted, &me()).is_some());
        let mut untagged = tagged("x", Some(at(0, 5)));
        untagged.tags.remove(OWNER);
        assert_eq!(started(&untagged, &me()), None);
        assert!(me().all() == ["team-a", "master:/var/lib/pushwake"]);
    }

    #[test]
    fn an_empty_commit_or_time_is_no_start() {
        let mut i = tagged("team-a", Some(at(0, 5)));
        i.tags.insert(STARTED_AT.into(), String::new());
        assert_eq!(started(&i, &me()), None);
        let mut i = tagged("team-a", Some(at(0, 5)));
        i.tags.insert(COMMIT.into(), String::new());
        assert_eq!(started(&i, &me()), None);
    }

    #[test]
    fn another_owners_instance_is_never_ours() {
        let i = instance(&[(OWNER, "other:/var/lib/pushwake")]);
        assert!(!owned_by(&i, &me(), &watch(&["i-00000001"])));
        let i = instance(&[(OWNER, "team-a")]);
        assert!(owned_by(&i, &me(), &watch(&[])));
    }

    #[test]
    fn an_instance_without_owner_is_ours_only_when_listed() {
        let i = instance(&[]);
        assert!(owned_by(&i, &me(), &watch(&["i-00000001"])));
        assert!(!owned_by(&i, &me(), &watch(&[])));
    }

    #[test]
    fn own_tags_are_counted_right() {
        // The stamp, the repeat written beside it and, on a launched machine, the template.
        let stamp = stamp(&watch(&[]), "abc", "me");
        assert_eq!(stamp.len() + 2, OWN_TAGS);
        assert!(!stamp.iter().any(|(k, _)| k == REPEAT));
    }

    #[test]
    fn the_stamp_dates_the_start_and_empties_old_results() {
        let mut w = watch(&[]);
        w.results = Some(crate::config::Results {
            timeout: std::time::Duration::from_secs(60),
            ..crate::config::Results::example(&["loss"])
        });
        let stamp = stamp(&w, "abc", "me");
        assert!(
            stamp.contains(&(STARTED_AT.to_owned(), String::new())),
            "dated when sent"
        );
        assert!(stamp.contains(&(result_key("loss"), String::new())));
        assert!(stamp.contains(&(OWNER.to_owned(), "me".to_owned())));
    }
}
