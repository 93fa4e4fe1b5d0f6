//! Deciding what to do for one run: a pure function from what EC2 described and what the
//! run remembers to one step per instance.
//!
//! This is where the run rules live (SPEC §4): an instance started for the run's commit
//! has done its part and is never started again for it; a stopped one is tagged and
//! started; one busy with something else follows the watch's `on_busy`; a start is
//! confirmed by the next look, and one that fell back to `stopped` is reported and tried
//! again. Because the decision reads EC2's own record (the `pushwake:*` tags and the
//! state) as well as the run, a restart, a crash between two calls or a second pass reach
//! the same decision. The pass carries the steps out; `--dry-run` prints them.

use chrono::{DateTime, Utc};

use crate::config::{OnBusy, Watch};
use crate::ec2::{Instance, InstanceState};
use crate::launch::Members;
use crate::report::short;
use crate::state::{Part, Run};
use crate::tags;

/// What to do with one instance for one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing on EC2; record this part.
    Set(Part),
    /// It runs the commit: record it as started at `at`, and write `pushwake:started-at`
    /// when `tag` (the tag is missing).
    Confirm { at: DateTime<Utc>, tag: bool },
    /// It is stopped: tag it with the commit, then start it.
    Start,
    /// It is stopping: wait for it to stop (bounded), then tag and start it.
    StartWhenStopped,
    /// It runs an older commit of this watch that pushwake started: stop it, close that
    /// commit's run as superseded, then tag and start it.
    Supersede { commit: String },
}

impl Step {
    /// Whether carrying the step out starts the instance.
    pub fn starts(&self) -> bool {
        matches!(
            self,
            Step::Start | Step::StartWhenStopped | Step::Supersede { .. }
        )
    }
}

/// What the decision needs beyond the run and the instance.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub watch: &'a Watch,
    /// Whether the run is the newest open run of its watch. Only the newest starts
    /// anything: an older one gives up what it still waits for to the newer commit.
    pub newest: bool,
    /// The time of the pass, for a start EC2 gives no time for.
    pub now: DateTime<Utc>,
    /// This deployment (see [`tags::Owners`]): only its machines are ever superseded, and
    /// only its starts count for a run.
    pub owners: &'a tags::Owners,
}

/// One step per instance of the run: the watch's instances in order, then any instance
/// the run still counts that the watch no longer has.
pub fn plan(run: &Run, members: &Members, cx: Context<'_>) -> Vec<(String, Step)> {
    let mut steps: Vec<(String, Step)> = members
        .ids
        .iter()
        .map(|id| {
            let step = decide(&run.commit, run.instances.get(id), members.get(id), cx);
            (id.clone(), step)
        })
        .collect();
    for (id, part) in &run.instances {
        if !members.ids.contains(id) {
            steps.push((id.clone(), Step::Set(left_the_watch(part))));
        }
    }
    steps
}

/// An instance dropped from the watch keeps what it did, and is waited for no longer.
fn left_the_watch(part: &Part) -> Part {
    match part {
        Part::Accepted { at } => Part::Started { at: *at },
        Part::Waiting { .. } | Part::Failed { .. } => skipped("no longer in the watch"),
        settled => settled.clone(),
    }
}

/// The step for one instance (`None`: EC2 does not know it) in the run of `commit`, where
/// the run last left it at `part`.
pub fn decide(
    commit: &str,
    part: Option<&Part>,
    instance: Option<&Instance>,
    cx: Context<'_>,
) -> Step {
    if let Some(p @ (Part::Started { .. } | Part::Skipped { .. })) = part {
        return Step::Set(p.clone());
    }
    let Some(i) = instance else {
        return Step::Set(skipped("not found in this account and region"));
    };
    let up = matches!(i.state, InstanceState::Pending | InstanceState::Running);
    let tagged_for_commit = i.tags.get(tags::COMMIT).map(String::as_str) == Some(commit)
        && tags::owned_by(i, cx.owners, cx.watch);
    // EC2's record of a start of pushwake's for this commit: the commit, and a launch time
    // that falls in its `started-at`.
    let started = tags::started_for(i, cx.owners, cx.watch).filter(|s| s.commit == commit);
    if tagged_for_commit && up {
        // Started for this commit, by this pass's predecessor or before a crash. The next
        // look corrects `started-at` to EC2's launch time.
        let accepted = match part {
            Some(Part::Accepted { at }) => Some(*at),
            _ => None,
        };
        let at = i
            .launch_time
            .map(whole_seconds)
            .or(tags::started_at(&i.tags))
            .or(accepted)
            .unwrap_or(cx.now);
        return Step::Confirm {
            at,
            tag: tags::started_at(&i.tags) != Some(at),
        };
    }
    if let Some(start) = started {
        // It ran for the commit and has stopped since, whether or not the run remembers.
        return Step::Set(Part::Started { at: start.at });
    }
    if let Some(accepted @ Part::Accepted { at }) = part {
        match (&i.state, &i.state_reason) {
            // A job that finished before this pass looked, and shut its machine down.
            (InstanceState::Stopped, Some(r)) if r.is_shutdown() && tagged_for_commit => {
                return Step::Set(Part::Started { at: *at });
            }
            (InstanceState::Stopped, reason) => {
                let reason = reason
                    .as_ref()
                    .map_or_else(|| "EC2 gave no reason".to_owned(), ToString::to_string);
                return Step::Set(Part::Failed {
                    why: format!("fell back to stopped after the start: {reason}"),
                });
            }
            // Still on its way up or down: the next pass looks again.
            (InstanceState::Stopping, _) => return Step::Set(accepted.clone()),
            _ => {}
        }
    }
    match &i.state {
        InstanceState::Terminated | InstanceState::ShuttingDown => {
            Step::Set(skipped(&i.state.to_string()))
        }
        _ if !cx.newest => Step::Set(skipped("a newer push took its place")),
        InstanceState::Stopped => Step::Start,
        InstanceState::Stopping => Step::StartWhenStopped,
        InstanceState::Pending | InstanceState::Running => busy(i, cx),
        InstanceState::Other(s) => Step::Set(Part::Waiting {
            why: format!("in state {s}"),
        }),
    }
}

/// The step for an instance that is up with something other than the run's commit.
fn busy(i: &Instance, cx: Context<'_>) -> Step {
    let watch = cx.watch;
    let older = i
        .tags
        .get(tags::COMMIT)
        .filter(|_| tags::is_for(i, watch) && tags::owned_by(i, cx.owners, watch));
    let ours = older.filter(|_| tags::started_for(i, cx.owners, watch).is_some());
    let why = match (older, i.tags.get(tags::COMMIT)) {
        (Some(c), _) => format!("busy with `{}`", short(c)),
        (None, Some(c)) => match (i.tags.get(tags::REPO), i.tags.get(tags::BRANCH)) {
            (Some(r), Some(b)) => format!("busy with `{}` of {r}@{b}", short(c)),
            _ => format!("busy with `{}`", short(c)),
        },
        (None, None) => "up, not started by pushwake".to_owned(),
    };
    match (watch.on_busy, ours) {
        (OnBusy::Supersede, Some(commit)) => Step::Supersede {
            commit: commit.clone(),
        },
        (OnBusy::Skip, _) => Step::Set(skipped(&format!("{why}; on_busy = \"skip\""))),
        // A person's machine, or another watch's, is never stopped: it is waited for.
        (OnBusy::Queue | OnBusy::Supersede, _) => Step::Set(Part::Waiting { why }),
    }
}

/// A time as tags keep it: EC2 gives launch times to the millisecond, tags hold seconds.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn skipped(why: &str) -> Part {
    Part::Skipped {
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ec2::StateReason;

    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const OLD: &str = "0000000000000000000000000000000000000000";
    const OWNER: &str = "team-a";

    fn owners() -> tags::Owners {
        tags::Owners::new(OWNER)
    }

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-11-29T10:{minute:02}:00Z").parse().unwrap()
    }

    fn watch(on_busy: OnBusy) -> Watch {
        let mut w = Watch::example("main", &["i-00000001"]);
        w.on_busy = on_busy;
        w
    }

    fn instance(state: InstanceState, tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: "i-00000001".into(),
            state,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            launch_time: Some(at(5)),
            state_reason: None,
        }
    }

    /// Tags of an instance pushwake started for `commit` of octo/trainer@main at 10:05.
    fn ours(commit: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            (tags::COMMIT, commit),
            (tags::REPO, "octo/trainer"),
            (tags::BRANCH, "main"),
            (tags::STARTED_AT, "2026-11-29T10:05:00Z"),
            (tags::OWNER, OWNER),
        ]
    }

    fn decide_with(on_busy: OnBusy, part: Option<&Part>, i: Option<&Instance>) -> Step {
        let w = watch(on_busy);
        decide(
            C,
            part,
            i,
            Context {
                watch: &w,
                newest: true,
                now: at(30),
                owners: &owners(),
            },
        )
    }

    fn decide_q(part: Option<&Part>, i: &Instance) -> Step {
        decide_with(OnBusy::Queue, part, Some(i))
    }

    #[test]
    fn a_stopped_instance_is_started() {
        assert_eq!(
            decide_q(None, &instance(InstanceState::Stopped, &[])),
            Step::Start
        );
    }

    #[test]
    fn a_stopped_instance_that_ran_an_older_commit_is_started() {
        let i = instance(InstanceState::Stopped, &ours(OLD));
        assert_eq!(decide_q(None, &i), Step::Start);
    }

    #[test]
    fn a_stopping_instance_is_started_once_stopped() {
        let i = instance(InstanceState::Stopping, &[]);
        assert_eq!(decide_q(None, &i), Step::StartWhenStopped);
    }

    #[test]
    fn a_started_part_is_never_started_again() {
        let started = Part::Started { at: at(1) };
        for state in [
            InstanceState::Stopped,
            InstanceState::Stopping,
            InstanceState::Running,
        ] {
            let i = instance(state, &[]);
            assert_eq!(decide_q(Some(&started), &i), Step::Set(started.clone()));
        }
        // Even when EC2 no longer knows the instance.
        assert_eq!(
            decide_with(OnBusy::Queue, Some(&started), None),
            Step::Set(started.clone())
        );
    }

    #[test]
    fn a_skipped_part_stays_skipped() {
        let skip = skipped("terminated");
        let i = instance(InstanceState::Stopped, &[]);
        assert_eq!(decide_q(Some(&skip), &i), Step::Set(skip.clone()));
    }

    #[test]
    fn an_accepted_start_that_runs_is_confirmed_with_the_launch_time() {
        let i = instance(
            InstanceState::Running,
            &[(tags::COMMIT, C), (tags::STARTED_AT, "")],
        );
        let accepted = Part::Accepted { at: at(4) };
        assert_eq!(
            decide_q(Some(&accepted), &i),
            Step::Confirm {
                at: at(5),
                tag: true
            }
        );
    }

    #[test]
    fn a_confirmed_start_needs_no_tag() {
        let i = instance(InstanceState::Pending, &ours(C));
        assert_eq!(
            decide_q(None, &i),
            Step::Confirm {
                at: at(5),
                tag: false
            }
        );
    }

    #[test]
    fn the_first_look_corrects_started_at_to_the_launch_time() {
        // Asked at 10:04 (the tag), launched by EC2 at 10:05:00.250.
        let mut tags = ours(C);
        tags.retain(|(k, _)| *k != tags::STARTED_AT);
        tags.push((tags::STARTED_AT, "2026-11-29T10:04:00Z"));
        let mut i = instance(InstanceState::Running, &tags);
        i.launch_time = Some(at(5) + chrono::Duration::milliseconds(250));
        assert_eq!(
            decide_q(Some(&Part::Accepted { at: at(4) }), &i),
            Step::Confirm {
                at: at(5),
                tag: true
            }
        );
    }

    #[test]
    fn a_tag_whose_start_never_happened_is_started() {
        // Tagged for the commit at 10:06; the machine last launched at 10:05, before it.
        let mut tags = ours(C);
        tags.retain(|(k, _)| *k != tags::STARTED_AT);
        tags.push((tags::STARTED_AT, "2026-11-29T10:06:00Z"));
        let i = instance(InstanceState::Stopped, &tags);
        assert_eq!(decide_q(None, &i), Step::Start);
    }

    #[test]
    fn a_finished_job_whose_start_the_run_lost_is_not_started_again() {
        // The start was made (launched in its window) and the job shut its machine down
        // before any pass looked; the run never recorded the start.
        let mut i = instance(InstanceState::Stopped, &ours(C));
        i.state_reason = Some(StateReason {
            code: "Client.InstanceInitiatedShutdown".into(),
            message: "Client.InstanceInitiatedShutdown: Instance initiated shutdown".into(),
        });
        for part in [None, Some(Part::Failed { why: "x".into() })] {
            assert_eq!(
                decide_q(part.as_ref(), &i),
                Step::Set(Part::Started { at: at(5) })
            );
        }
    }

    #[test]
    fn another_deployments_start_of_the_commit_is_not_this_runs() {
        let mut tags = ours(C);
        tags.retain(|(k, _)| *k != tags::OWNER);
        tags.push((tags::OWNER, "team-b"));
        let i = instance(InstanceState::Stopped, &tags);
        assert_eq!(decide_q(None, &i), Step::Start);
    }

    #[test]
    fn an_instance_up_for_the_commit_after_a_crash_is_not_started_again() {
        // Tagged and started, and the agent died before it saved the run.
        let i = instance(
            InstanceState::Running,
            &[(tags::COMMIT, C), (tags::STARTED_AT, "")],
        );
        assert!(matches!(
            decide_q(None, &i),
            Step::Confirm { tag: true, .. }
        ));
    }

    #[test]
    fn an_instance_tagged_but_never_started_is_started() {
        // Tagged for the commit, and the agent died before StartInstances.
        let i = instance(
            InstanceState::Stopped,
            &[(tags::COMMIT, C), (tags::STARTED_AT, "")],
        );
        assert_eq!(decide_q(None, &i), Step::Start);
    }

    #[test]
    fn an_instance_that_ran_the_commit_and_stopped_is_done() {
        let i = instance(InstanceState::Stopped, &ours(C));
        assert_eq!(decide_q(None, &i), Step::Set(Part::Started { at: at(5) }));
    }

    #[test]
    fn a_start_that_fell_back_to_stopped_fails_with_the_reason() {
        let mut i = instance(
            InstanceState::Stopped,
            &[(tags::COMMIT, C), (tags::STARTED_AT, "")],
        );
        i.state_reason = Some(StateReason {
            code: "Server.InsufficientInstanceCapacity".into(),
            message: "Server.InsufficientInstanceCapacity: Insufficient capacity.".into(),
        });
        let step = decide_q(Some(&Part::Accepted { at: at(4) }), &i);
        let Step::Set(Part::Failed { why }) = step else {
            panic!("{step:?}")
        };
        assert!(why.contains("Server.InsufficientInstanceCapacity"), "{why}");
        assert!(why.contains("fell back"), "{why}");
    }

    #[test]
    fn a_fast_job_that_shut_its_machine_down_counts_as_started() {
        let mut i = instance(
            InstanceState::Stopped,
            &[(tags::COMMIT, C), (tags::STARTED_AT, "")],
        );
        i.state_reason = Some(StateReason {
            code: "Client.InstanceInitiatedShutdown".into(),
            message: "Client.InstanceInitiatedShutdown: Instance initiated shutdown".into(),
        });
        let step = decide_q(Some(&Part::Accepted { at: at(4) }), &i);
        assert_eq!(step, Step::Set(Part::Started { at: at(4) }));
    }

    #[test]
    fn an_accepted_start_still_stopping_is_looked_at_again() {
        let i = instance(InstanceState::Stopping, &[(tags::COMMIT, C)]);
        let accepted = Part::Accepted { at: at(4) };
        assert_eq!(decide_q(Some(&accepted), &i), Step::Set(accepted.clone()));
    }

    #[test]
    fn a_failed_part_is_retried() {
        let failed = Part::Failed {
            why: "InsufficientInstanceCapacity".into(),
        };
        let i = instance(InstanceState::Stopped, &[]);
        assert_eq!(decide_q(Some(&failed), &i), Step::Start);
    }

    #[test]
    fn a_waiting_part_starts_when_its_machine_stops() {
        let waiting = Part::Waiting { why: "busy".into() };
        let i = instance(InstanceState::Stopped, &ours(OLD));
        assert_eq!(decide_q(Some(&waiting), &i), Step::Start);
    }

    #[test]
    fn gone_instances_are_skipped() {
        for state in [InstanceState::Terminated, InstanceState::ShuttingDown] {
            let i = instance(state, &[]);
            assert!(matches!(
                decide_q(None, &i),
                Step::Set(Part::Skipped { .. })
            ));
        }
        let Step::Set(Part::Skipped { why }) = decide_with(OnBusy::Queue, None, None) else {
            panic!()
        };
        assert!(why.contains("not found"), "{why}");
    }

    #[test]
    fn busy_with_an_older_commit_queues_by_default() {
        let i = instance(InstanceState::Running, &ours(OLD));
        assert_eq!(
            decide_q(None, &i),
            Step::Set(Part::Waiting {
                why: "busy with `0000000`".into()
            })
        );
    }

    #[test]
    fn busy_with_an_older_commit_is_superseded() {
        let i = instance(InstanceState::Running, &ours(OLD));
        assert_eq!(
            decide_with(OnBusy::Supersede, None, Some(&i)),
            Step::Supersede { commit: OLD.into() }
        );
    }

    #[test]
    fn busy_with_an_older_commit_is_skipped() {
        let i = instance(InstanceState::Running, &ours(OLD));
        let Step::Set(Part::Skipped { why }) = decide_with(OnBusy::Skip, None, Some(&i)) else {
            panic!()
        };
        assert!(
            why.contains("busy with `0000000`") && why.contains("skip"),
            "{why}"
        );
    }

    #[test]
    fn supersede_never_stops_a_machine_a_person_started() {
        // No pushwake tags at all.
        let i = instance(InstanceState::Running, &[]);
        assert_eq!(
            decide_with(OnBusy::Supersede, None, Some(&i)),
            Step::Set(Part::Waiting {
                why: "up, not started by pushwake".into()
            })
        );
        // Tagged by an earlier run, then started again by hand long after.
        let mut i = instance(InstanceState::Running, &ours(OLD));
        i.launch_time = Some(at(40));
        assert!(matches!(
            decide_with(OnBusy::Supersede, None, Some(&i)),
            Step::Set(Part::Waiting { .. })
        ));
    }

    #[test]
    fn supersede_never_stops_another_watchs_machine() {
        let i = instance(
            InstanceState::Running,
            &[
                (tags::COMMIT, OLD),
                (tags::REPO, "octo/other"),
                (tags::BRANCH, "dev"),
                (tags::STARTED_AT, "2026-11-29T10:05:00Z"),
            ],
        );
        assert_eq!(
            decide_with(OnBusy::Supersede, None, Some(&i)),
            Step::Set(Part::Waiting {
                why: "busy with `0000000` of octo/other@dev".into()
            })
        );
    }

    #[test]
    fn supersede_never_stops_another_deployments_machine() {
        let mut tags = ours(OLD);
        tags.retain(|(k, _)| *k != tags::OWNER);
        tags.push((tags::OWNER, "other-team:/var/lib/pushwake"));
        let i = instance(InstanceState::Running, &tags);
        assert!(matches!(
            decide_with(OnBusy::Supersede, None, Some(&i)),
            Step::Set(Part::Waiting { .. })
        ));
    }

    #[test]
    fn an_older_run_gives_up_what_it_still_waits_for() {
        let w = watch(OnBusy::Queue);
        let cx = Context {
            watch: &w,
            newest: false,
            now: at(30),
            owners: &owners(),
        };
        let waiting = Part::Waiting { why: "busy".into() };
        let i = instance(InstanceState::Stopped, &[]);
        assert_eq!(
            decide(C, Some(&waiting), Some(&i), cx),
            Step::Set(skipped("a newer push took its place"))
        );
        // What it started stays started, and is still confirmed.
        let i = instance(InstanceState::Running, &ours(C));
        assert!(matches!(
            decide(C, Some(&Part::Accepted { at: at(4) }), Some(&i), cx),
            Step::Confirm { tag: false, .. }
        ));
    }

    #[test]
    fn plan_covers_the_watch_and_what_left_it() {
        let w = watch(OnBusy::Queue);
        let mut run = Run::open(C, "title", at(0));
        run.instances
            .insert("i-0000000a".into(), Part::Waiting { why: "busy".into() });
        run.instances
            .insert("i-0000000b".into(), Part::Accepted { at: at(4) });
        let members = Members {
            ids: vec!["i-00000001".into(), "i-00000002".into()],
            described: vec![instance(InstanceState::Stopped, &[])],
        };
        let steps = plan(
            &run,
            &members,
            Context {
                watch: &w,
                newest: true,
                now: at(30),
                owners: &owners(),
            },
        );
        assert_eq!(
            steps,
            vec![
                ("i-00000001".to_owned(), Step::Start),
                (
                    "i-00000002".to_owned(),
                    Step::Set(skipped("not found in this account and region"))
                ),
                (
                    "i-0000000a".to_owned(),
                    Step::Set(skipped("no longer in the watch"))
                ),
                (
                    "i-0000000b".to_owned(),
                    Step::Set(Part::Started { at: at(4) })
                ),
            ]
        );
    }
}
