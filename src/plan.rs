//! Deciding what to do for one run: a pure function from the run's repeats, what EC2
//! described and what the run remembers to one step per instance.
//!
//! A run is one commit × `repeats` repeats (SPEC §10). Each instance serves one repeat at
//! a time; when the run has more repeats than its pool has machines, a machine whose
//! repeat is done and which is down serves the next one. No repeat is given twice: those
//! done, those held by a part, and those EC2's tags show a machine up or done for
//! (`pushwake:repeat` beside the commit, a launch in its `started-at` window) are taken.
//!
//! This is where the run rules live (SPEC §4): an instance started for the run's commit
//! has done its part and is never started again for it; a stopped one is tagged and
//! started; one busy with something else follows the watch's `on_busy`; a start is
//! confirmed by the next look, and one that fell back to `stopped` is reported and tried
//! again. Because the decision reads EC2's own record (the `pushwake:*` tags and the
//! state) as well as the run, a restart, a crash between two calls or a second pass reach
//! the same decision. The pass carries the steps out; `--dry-run` prints them.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::config::{OnBusy, Watch};
use crate::ec2::{Instance, InstanceState};
use crate::launch::Members;
use crate::placement::{self, Refused, Wanted};
use crate::report::short;
use crate::state::{Part, Run};
use crate::tags;
use crate::whole_seconds;

/// What to do with one instance for one run. `repeat` is the repeat it serves; [`decide`]
/// leaves it 0 where the instance is to be given one, which [`plan`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing on EC2; record this part.
    Set(Part),
    /// It runs the commit: record it as started at `at` (EC2's launch time), and correct
    /// `pushwake:started-at` to it when `tag` (it holds the request's time).
    Confirm {
        at: DateTime<Utc>,
        tag: bool,
        repeat: u32,
    },
    /// It is stopped: tag it with the commit and the repeat, then start it.
    Start { repeat: u32 },
    /// It is stopping: wait for it to stop (bounded), then tag and start it.
    StartWhenStopped { repeat: u32 },
    /// It runs an older commit of this watch that pushwake started: stop it, close that
    /// commit's run as superseded, then tag and start it.
    Supersede { commit: String, repeat: u32 },
}

impl Step {
    /// Whether carrying the step out starts the instance.
    pub fn starts(&self) -> bool {
        self.start_repeat().is_some()
    }

    /// The repeat a start is for, if the step starts the instance.
    pub fn start_repeat(&self) -> Option<u32> {
        match self {
            Step::Start { repeat }
            | Step::StartWhenStopped { repeat }
            | Step::Supersede { repeat, .. } => Some(*repeat),
            Step::Set(_) | Step::Confirm { .. } => None,
        }
    }

    /// The repeat the step has the instance hold: started for it, or to be started.
    fn holds(&self) -> Option<u32> {
        match self {
            Step::Set(p) => p.repeat(),
            Step::Confirm { repeat, .. } => Some(*repeat),
            _ => self.start_repeat(),
        }
        .filter(|&k| k > 0)
    }

    /// Gives the step repeat `k`.
    fn with_repeat(&mut self, k: u32) {
        match self {
            Step::Set(Part::Started { repeat, .. } | Part::Accepted { repeat, .. })
            | Step::Confirm { repeat, .. }
            | Step::Start { repeat }
            | Step::StartWhenStopped { repeat }
            | Step::Supersede { repeat, .. } => *repeat = k,
            Step::Set(_) => {}
        }
    }
}

/// A run's steps, the repeats done that the run is to remember as such (their machines
/// went on to another repeat, or were lost more often than `launch.max_retries`), the
/// repeats to launch from the watch's template, and the pool's stopped machines left
/// without a repeat (which a repeat refused elsewhere may still go to).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<(String, Step)>,
    pub done: BTreeSet<u32>,
    pub launch: Vec<Wanted>,
    /// How many more machines may be launched for the watch in this pass, beyond `launch`.
    pub room: usize,
    pub spare: Vec<String>,
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
    /// What EC2 refused for capacity moments ago: a pool machine listed is not asked again
    /// yet (its repeat goes to the template).
    pub refused: &'a [Refused],
}

/// One step per instance of the run: the watch's instances in order, then any instance
/// the run still counts that the watch no longer has; each start with the lowest repeat
/// not yet taken. A machine serves a second repeat only when the run has more repeats than
/// the pool has machines (so a run of one repeat per machine starts each machine once).
pub fn plan(run: &Run, members: &Members, cx: Context<'_>) -> Plan {
    let commit = run.commit.as_str();
    // A run without a count has one repeat per machine of the pool (the default).
    let pool = u32::try_from(members.ids.len()).unwrap_or(u32::MAX);
    let repeats = match run.repeats {
        0 => pool,
        n => n,
    };
    let reuse = cx.newest && repeats > pool;
    let mut done = BTreeSet::new();
    // Machines free for another repeat: their index, and the step if none is left.
    let mut again = Vec::new();
    let mut steps: Vec<(String, Step)> = Vec::new();
    for id in &members.ids {
        let instance = members.get(id);
        let mut part = run.instances.get(id);
        // EC2 shows it went on to another repeat (the run's save was lost): the one the run
        // remembers is done, and EC2's record decides.
        if let (Some(Part::Started { repeat: k, .. }), Some(i)) = (part, instance)
            && held(i, commit, cx).is_some_and(|j| j != *k)
        {
            done.insert(*k);
            part = None;
        }
        let mut step = decide(commit, part, instance, cx);
        // Its repeat goes to the template at once; the machine sits this run out, so the run
        // need not wait for the refusal to expire.
        if let (true, Some(r)) = (step.starts(), refused(id, cx)) {
            step = Step::Set(skipped(&format!(
                "EC2 had no room for it moments ago ({}); its repeat went elsewhere",
                r.why
            )));
        }
        if let (true, Step::Set(Part::Started { repeat: k, .. }), Some(i)) =
            (reuse, &step, instance)
        {
            let next = match i.state {
                InstanceState::Stopped => Some(Step::Start { repeat: 0 }),
                InstanceState::Stopping => Some(Step::StartWhenStopped { repeat: 0 }),
                _ => None,
            };
            if let Some(next) = next {
                again.push((steps.len(), *k, step.clone()));
                step = next;
            }
        }
        steps.push((id.clone(), step));
    }
    for id in &members.launched {
        let Some(i) = members.get(id) else { continue };
        let part = run.instances.get(id);
        let for_run = i.tags.get(tags::COMMIT).map(String::as_str) == Some(commit)
            && tags::owned_by(i, cx.owners, cx.watch);
        if for_run || part.is_some() {
            steps.push((id.clone(), launched(run, part, i, cx)));
        }
    }
    for (id, part) in &run.instances {
        if !members.has(id) {
            let launched = run.placed.get(id).is_some_and(|p| p.launched);
            let part = match launched {
                true => unlisted(part, cx.now),
                false => left_the_watch(part),
            };
            steps.push((id.clone(), Step::Set(part)));
        }
    }

    // A repeat lost more often than it may be run again is done (failed): never given again.
    let max_retries = cx.watch.launch.as_ref().map_or(0, |l| l.max_retries) as usize;
    let mut lost: std::collections::BTreeMap<u32, usize> = Default::default();
    for (_, s) in &steps {
        if let Step::Set(Part::Lost { repeat, .. }) = s {
            *lost.entry(*repeat).or_default() += 1;
        }
    }
    let losses = |k: u32| lost.get(&k).copied().unwrap_or(0);
    done.extend((1..=repeats).filter(|&k| losses(k) > max_retries));
    let mut taken: BTreeSet<u32> = run.done.union(&done).copied().collect();
    taken.extend(steps.iter().filter_map(|(_, s)| s.holds()));
    // A repeat done on a machine free for another is never given again, whether or not
    // the machine gets one.
    taken.extend(again.iter().map(|(_, k, _)| *k).filter(|&k| k > 0));
    let mut free = (1..=repeats).filter(|k| !taken.contains(k));
    let reused: Vec<usize> = again.iter().map(|(i, _, _)| *i).collect();
    // A machine up or done for the run without a repeat tag (started before repeats) is
    // given one first; then the machines that have served none; then those serving again.
    let unnumbered = steps.iter().enumerate().filter(|(_, (_, s))| {
        matches!(
            s,
            Step::Confirm { repeat: 0, .. } | Step::Set(Part::Started { repeat: 0, .. })
        )
    });
    let unnumbered: Vec<usize> = unnumbered.map(|(i, _)| i).collect();
    for i in unnumbered {
        if let Some(k) = free.next() {
            steps[i].1.with_repeat(k);
        }
    }
    let fresh: Vec<usize> = (0..steps.len())
        .filter(|i| steps[*i].1.starts() && !reused.contains(i))
        .collect();
    let mut spare = Vec::new();
    for i in fresh {
        match free.next() {
            Some(k) => steps[i].1.with_repeat(k),
            None => {
                if matches!(steps[i].1, Step::Start { .. }) {
                    spare.push(steps[i].0.clone());
                }
                steps[i].1 = Step::Set(skipped("every repeat of the run has its machine"));
            }
        }
    }
    for (i, k, stays) in again {
        match free.next() {
            Some(next) => {
                // A machine that ran before repeats held no number: nothing to mark done.
                if k > 0 {
                    done.insert(k);
                }
                steps[i].1.with_repeat(next);
            }
            None => steps[i].1 = stays,
        }
    }
    // What the pool could not place goes to the template, as far as the watch's launched
    // machines may grow (one run's worth by default).
    let (launch, room) = match (&cx.watch.launch, cx.newest) {
        (Some(l), true) => {
            let most = l.max_machines.unwrap_or(repeats) as usize;
            let room = most.saturating_sub(members.launched_up());
            let wanted = free.take(room).map(|repeat| Wanted {
                repeat,
                retry: losses(repeat) > 0,
            });
            let launch: Vec<Wanted> = wanted.collect();
            let left = room - launch.len();
            (launch, left)
        }
        _ => (Vec::new(), 0),
    };
    Plan {
        steps,
        done,
        launch,
        room,
        spare,
    }
}

/// Fixes how many repeats `run` has when it is first planned (a reload does not change a
/// run under way): the watch's `repeats`; without it, one per machine of the `pool`, which
/// is left to the plan to count (0) unless machines can be launched, which need a count.
pub fn fix_repeats(run: &mut Run, watch: &Watch, pool: usize) {
    if run.repeats == 0 && run.instances.is_empty() {
        run.repeats = match (watch.repeats, &watch.launch) {
            (Some(n), _) => n,
            (None, Some(_)) => u32::try_from(pool).unwrap_or(u32::MAX),
            (None, None) => 0,
        };
    }
}

/// The refusal that keeps pool machine `id` from being asked again yet, when the watch
/// has a template to give its repeat to (without one, a refused machine is simply
/// retried next pass, as the pool's only way to run).
fn refused<'a>(id: &str, cx: Context<'a>) -> Option<&'a Refused> {
    cx.watch.launch.as_ref()?;
    placement::is_refused(cx.refused, id, cx.now)
}

/// The step for a machine launched for the run (or one the run counts): it is the run's
/// from birth, tagged at launch, so it is never started, only confirmed while up, and done
/// once down, unless EC2 took it away before it reported: then it is lost, and its repeat
/// is free to run again.
fn launched(run: &Run, part: Option<&Part>, i: &Instance, cx: Context<'_>) -> Step {
    if let Some(p @ (Part::Lost { .. } | Part::Skipped { .. })) = part {
        return Step::Set(p.clone());
    }
    let repeat = tags::repeat(&i.tags)
        .or(part.and_then(Part::repeat))
        .unwrap_or(0);
    let at = i
        .launch_time
        .map(whole_seconds)
        .or(tags::started_at(&i.tags))
        .or(match part {
            Some(Part::Accepted { at, .. } | Part::Started { at, .. }) => Some(*at),
            _ => None,
        })
        .unwrap_or(cx.now);
    match i.state {
        InstanceState::Pending | InstanceState::Running => match part {
            Some(p @ Part::Started { .. }) => Step::Set(p.clone()),
            _ => Step::Confirm {
                at,
                tag: tags::started_at(&i.tags) != Some(at),
                repeat,
            },
        },
        _ => {
            let reason = i.state_reason.as_ref();
            let reported = |k: u32| {
                cx.watch
                    .results
                    .as_ref()
                    .is_some_and(|spec| crate::results::reported_all(run, spec, k))
            };
            match reason {
                Some(r) if r.is_interruption() && !reported(repeat) => Step::Set(Part::Lost {
                    repeat,
                    why: format!("EC2 took {} away ({r})", i.id),
                }),
                _ => Step::Set(Part::Started { at, repeat }),
            }
        }
    }
}

/// A launched machine EC2 no longer lists: a start it accepted moments ago may not be
/// listed yet; after that, one never confirmed is lost.
fn unlisted(part: &Part, now: DateTime<Utc>) -> Part {
    match part {
        Part::Accepted { at, repeat } if now - *at > tags::START_WINDOW => Part::Lost {
            repeat: *repeat,
            why: "EC2 lists it no more".to_owned(),
        },
        settled => settled.clone(),
    }
}

/// The repeat EC2's tags show `instance` up or done for, for `commit`: pushwake's start
/// of it (see [`tags::started_for`]) with a `pushwake:repeat`.
fn held(instance: &Instance, commit: &str, cx: Context<'_>) -> Option<u32> {
    tags::started_for(instance, cx.owners, cx.watch).filter(|s| s.commit == commit)?;
    tags::repeat(&instance.tags)
}

/// An instance dropped from the watch keeps what it did, and is waited for no longer.
fn left_the_watch(part: &Part) -> Part {
    match part {
        Part::Accepted { at, repeat } => Part::Started {
            at: *at,
            repeat: *repeat,
        },
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
    let accepted = match part {
        Some(Part::Accepted { at, .. }) => Some(*at),
        _ => None,
    };
    // The repeat it serves: EC2's tag is the record, else what the run remembers.
    let repeat = tags::repeat(&i.tags)
        .filter(|_| tagged_for_commit)
        .or(part.and_then(Part::repeat))
        .unwrap_or(0);
    if tagged_for_commit && up && (started.is_some() || accepted.is_some()) {
        // Started for this commit, by this pass's predecessor or before a crash (a person's
        // later start of a machine tagged for it is not: it is busy). The next look corrects
        // `started-at` to EC2's launch time.
        let at = i
            .launch_time
            .map(whole_seconds)
            .or(tags::started_at(&i.tags))
            .or(accepted)
            .unwrap_or(cx.now);
        return Step::Confirm {
            at,
            tag: tags::started_at(&i.tags) != Some(at),
            repeat,
        };
    }
    // It ran for the commit and has stopped since, whether or not the run remembers; not a
    // start that fell back (EC2 gives a reason other than a shutdown), which is retried.
    let ran = i.state_reason.as_ref().is_none_or(|r| r.is_shutdown());
    if let (Some(start), true) = (started, ran || up) {
        return Step::Set(Part::Started {
            at: start.at,
            repeat,
        });
    }
    if let Some(accepted @ Part::Accepted { at, .. }) = part {
        match (&i.state, &i.state_reason) {
            // A job that finished before this pass looked, and shut its machine down.
            (InstanceState::Stopped, Some(r)) if r.is_shutdown() && tagged_for_commit => {
                return Step::Set(Part::Started { at: *at, repeat });
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
        InstanceState::Stopped => Step::Start { repeat: 0 },
        InstanceState::Stopping => Step::StartWhenStopped { repeat: 0 },
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
            repeat: 0,
        },
        (OnBusy::Skip, _) => Step::Set(skipped(&format!("{why}; on_busy = \"skip\""))),
        // A person's machine, or another watch's, is never stopped: it is waited for.
        (OnBusy::Queue | OnBusy::Supersede, _) => Step::Set(Part::Waiting { why }),
    }
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
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            launch_time: Some(at(5)),
            ..Instance::new("i-00000001", state)
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
                refused: &[],
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
            Step::Start { repeat: 0 }
        );
    }

    #[test]
    fn a_stopped_instance_that_ran_an_older_commit_is_started() {
        let i = instance(InstanceState::Stopped, &ours(OLD));
        assert_eq!(decide_q(None, &i), Step::Start { repeat: 0 });
    }

    #[test]
    fn a_stopping_instance_is_started_once_stopped() {
        let i = instance(InstanceState::Stopping, &[]);
        assert_eq!(decide_q(None, &i), Step::StartWhenStopped { repeat: 0 });
    }

    #[test]
    fn a_started_part_is_never_started_again() {
        let started = Part::Started {
            at: at(1),
            repeat: 0,
        };
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
        let accepted = Part::Accepted {
            at: at(4),
            repeat: 0,
        };
        assert_eq!(
            decide_q(Some(&accepted), &i),
            Step::Confirm {
                at: at(5),
                tag: true,
                repeat: 0
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
                tag: false,
                repeat: 0
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
            decide_q(
                Some(&Part::Accepted {
                    at: at(4),
                    repeat: 0
                }),
                &i
            ),
            Step::Confirm {
                at: at(5),
                tag: true,
                repeat: 0
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
        assert_eq!(decide_q(None, &i), Step::Start { repeat: 0 });
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
                Step::Set(Part::Started {
                    at: at(5),
                    repeat: 0
                })
            );
        }
    }

    #[test]
    fn another_deployments_start_of_the_commit_is_not_this_runs() {
        let mut tags = ours(C);
        tags.retain(|(k, _)| *k != tags::OWNER);
        tags.push((tags::OWNER, "team-b"));
        let i = instance(InstanceState::Stopped, &tags);
        assert_eq!(decide_q(None, &i), Step::Start { repeat: 0 });
    }

    #[test]
    fn an_instance_up_for_the_commit_after_a_crash_is_not_started_again() {
        // Tagged and started, and the agent died before it saved the run.
        let mut tags = ours(C);
        tags.retain(|(k, _)| *k != tags::STARTED_AT);
        tags.push((tags::STARTED_AT, "2026-11-29T10:04:59Z"));
        let i = instance(InstanceState::Running, &tags);
        assert!(matches!(
            decide_q(None, &i),
            Step::Confirm { tag: true, .. }
        ));
    }

    #[test]
    fn a_person_starting_a_machine_tagged_for_the_commit_does_not_start_it_for_the_run() {
        // Tagged for C at 10:05, its start refused; a person starts it by hand at 10:40.
        let mut i = instance(InstanceState::Running, &ours(C));
        i.launch_time = Some(at(40));
        let failed = Part::Failed {
            why: "no capacity".into(),
        };
        assert!(matches!(
            decide_q(Some(&failed), &i),
            Step::Set(Part::Waiting { .. })
        ));
    }

    #[test]
    fn an_instance_tagged_but_never_started_is_started() {
        // Tagged for the commit, and the agent died before StartInstances.
        let i = instance(
            InstanceState::Stopped,
            &[(tags::COMMIT, C), (tags::STARTED_AT, "")],
        );
        assert_eq!(decide_q(None, &i), Step::Start { repeat: 0 });
    }

    #[test]
    fn an_instance_that_ran_the_commit_and_stopped_is_done() {
        let i = instance(InstanceState::Stopped, &ours(C));
        assert_eq!(
            decide_q(None, &i),
            Step::Set(Part::Started {
                at: at(5),
                repeat: 0
            })
        );
    }

    #[test]
    fn a_start_that_fell_back_to_stopped_fails_with_the_reason() {
        // Tagged at 10:05 and launched then (EC2 moves the launch time as it tries), but
        // back to stopped for want of capacity.
        let mut i = instance(InstanceState::Stopped, &ours(C));
        i.state_reason = Some(StateReason {
            code: "Server.InsufficientInstanceCapacity".into(),
            message: "Server.InsufficientInstanceCapacity: Insufficient capacity.".into(),
        });
        let step = decide_q(
            Some(&Part::Accepted {
                at: at(4),
                repeat: 0,
            }),
            &i,
        );
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
        let step = decide_q(
            Some(&Part::Accepted {
                at: at(4),
                repeat: 0,
            }),
            &i,
        );
        assert_eq!(
            step,
            Step::Set(Part::Started {
                at: at(4),
                repeat: 0
            })
        );
    }

    #[test]
    fn an_accepted_start_still_stopping_is_looked_at_again() {
        let i = instance(InstanceState::Stopping, &[(tags::COMMIT, C)]);
        let accepted = Part::Accepted {
            at: at(4),
            repeat: 0,
        };
        assert_eq!(decide_q(Some(&accepted), &i), Step::Set(accepted.clone()));
    }

    #[test]
    fn a_failed_part_is_retried() {
        let failed = Part::Failed {
            why: "InsufficientInstanceCapacity".into(),
        };
        let i = instance(InstanceState::Stopped, &[]);
        assert_eq!(decide_q(Some(&failed), &i), Step::Start { repeat: 0 });
    }

    #[test]
    fn a_waiting_part_starts_when_its_machine_stops() {
        let waiting = Part::Waiting { why: "busy".into() };
        let i = instance(InstanceState::Stopped, &ours(OLD));
        assert_eq!(decide_q(Some(&waiting), &i), Step::Start { repeat: 0 });
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
            Step::Supersede {
                commit: OLD.into(),
                repeat: 0
            }
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
            refused: &[],
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
            decide(
                C,
                Some(&Part::Accepted {
                    at: at(4),
                    repeat: 0
                }),
                Some(&i),
                cx
            ),
            Step::Confirm { tag: false, .. }
        ));
    }

    #[test]
    fn plan_covers_the_watch_and_what_left_it() {
        let w = watch(OnBusy::Queue);
        let mut run = Run::open(C, "title", at(0));
        run.instances
            .insert("i-0000000a".into(), Part::Waiting { why: "busy".into() });
        run.instances.insert(
            "i-0000000b".into(),
            Part::Accepted {
                at: at(4),
                repeat: 2,
            },
        );
        run.repeats = 2;
        let members = Members {
            ids: vec!["i-00000001".into(), "i-00000002".into()],
            described: vec![instance(InstanceState::Stopped, &[])],
            ..Members::default()
        };
        let steps = plan(
            &run,
            &members,
            Context {
                watch: &w,
                newest: true,
                now: at(30),
                owners: &owners(),
                refused: &[],
            },
        )
        .steps;
        assert_eq!(
            steps,
            vec![
                ("i-00000001".to_owned(), Step::Start { repeat: 1 }),
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
                    Step::Set(Part::Started {
                        at: at(4),
                        repeat: 2
                    })
                ),
            ]
        );
    }

    /// A machine `id` in `state`, with `tags` (launched at 10:05).
    fn machine(id: &str, state: InstanceState, tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            ..instance(state, tags)
        }
    }

    /// Tags of a machine pushwake started at 10:05 for repeat `k` of C.
    fn serving(k: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut tags = ours(C);
        tags.push((tags::REPEAT, k));
        tags
    }

    const A: &str = "i-0000000a";
    const B: &str = "i-0000000b";

    /// The plan of a run of `repeats` repeats with `parts`, on machines A and B.
    fn plan_of(
        repeats: u32,
        parts: &[(&str, Part)],
        done: &[u32],
        machines: Vec<Instance>,
    ) -> Plan {
        let w = Watch::example("main", &[A, B]);
        let mut run = Run::open(C, "", at(0));
        run.repeats = repeats;
        run.done = done.iter().copied().collect();
        for (id, p) in parts {
            run.instances.insert((*id).to_owned(), p.clone());
        }
        let members = Members {
            ids: vec![A.into(), B.into()],
            described: machines,
            ..Members::default()
        };
        let cx = Context {
            watch: &w,
            newest: true,
            now: at(30),
            owners: &owners(),
            refused: &[],
        };
        plan(&run, &members, cx)
    }

    fn started(k: u32) -> Part {
        Part::Started {
            at: at(5),
            repeat: k,
        }
    }

    #[test]
    fn a_machine_done_with_its_repeat_and_stopped_gets_the_next_one_not_taken() {
        // Repeat 1 done on A (reported, stopped), 2 running on B: A serves 3.
        let plan = plan_of(
            4,
            &[(A, started(1)), (B, started(2))],
            &[],
            vec![
                machine(A, InstanceState::Stopped, &serving("1")),
                machine(B, InstanceState::Running, &serving("2")),
            ],
        );
        assert_eq!(plan.steps[0], (A.to_owned(), Step::Start { repeat: 3 }));
        assert_eq!(plan.steps[1], (B.to_owned(), Step::Set(started(2))));
        assert_eq!(plan.done, BTreeSet::from([1]));
        // Still stopping: it is started for 3 once stopped.
        let plan = plan_of(
            4,
            &[(A, started(1)), (B, started(2))],
            &[],
            vec![
                machine(A, InstanceState::Stopping, &serving("1")),
                machine(B, InstanceState::Running, &serving("2")),
            ],
        );
        assert_eq!(plan.steps[0].1, Step::StartWhenStopped { repeat: 3 });
    }

    #[test]
    fn no_repeat_is_ever_given_twice() {
        // 1 and 3 done, 2 held by B: A, done with 3, gets 4; nothing is left after it.
        let plan = plan_of(
            4,
            &[(A, started(3)), (B, started(2))],
            &[1],
            vec![
                machine(A, InstanceState::Stopped, &serving("3")),
                machine(B, InstanceState::Stopped, &serving("2")),
            ],
        );
        assert_eq!(plan.steps[0].1, Step::Start { repeat: 4 });
        // B, done with 2 too, has nothing left to serve: its part stays as it was.
        assert_eq!(plan.steps[1].1, Step::Set(started(2)));
        assert_eq!(plan.done, BTreeSet::from([3]));
        // Every repeat given: a machine that served none is not started.
        let plan = plan_of(
            1,
            &[(A, started(1))],
            &[],
            vec![
                machine(A, InstanceState::Running, &serving("1")),
                machine(B, InstanceState::Stopped, &[]),
            ],
        );
        assert_eq!(
            plan.steps[1].1,
            Step::Set(skipped("every repeat of the run has its machine"))
        );
    }

    #[test]
    fn a_repeat_whose_machine_is_up_for_it_is_never_given_again() {
        // The run lost its record of A (a crash before the save); EC2's tags hold it.
        let plan = plan_of(
            2,
            &[],
            &[],
            vec![
                machine(A, InstanceState::Running, &serving("2")),
                machine(B, InstanceState::Stopped, &[]),
            ],
        );
        assert!(matches!(plan.steps[0].1, Step::Confirm { repeat: 2, .. }));
        assert_eq!(plan.steps[1].1, Step::Start { repeat: 1 });
    }

    #[test]
    fn after_a_restart_the_repeat_tag_on_ec2_is_the_record() {
        // The run remembers A on repeat 1; A was since tagged and started for 3, and the
        // agent died before it saved: A holds 3, 1 is done, B gets 2.
        let plan = plan_of(
            4,
            &[(A, started(1))],
            &[],
            vec![
                machine(A, InstanceState::Running, &serving("3")),
                machine(B, InstanceState::Stopped, &[]),
            ],
        );
        assert!(matches!(plan.steps[0].1, Step::Confirm { repeat: 3, .. }));
        assert_eq!(plan.steps[1].1, Step::Start { repeat: 2 });
        assert_eq!(plan.done, BTreeSet::from([1]));
        // A repeat tag for a start that never happened (launched before its started-at)
        // holds nothing: the machine is started, with the lowest repeat free.
        let mut tags = serving("3");
        tags.retain(|(k, _)| *k != tags::STARTED_AT);
        tags.push((tags::STARTED_AT, "2026-11-29T10:06:00Z"));
        let plan = plan_of(
            4,
            &[],
            &[1],
            vec![
                machine(A, InstanceState::Stopped, &tags),
                machine(B, InstanceState::Running, &serving("2")),
            ],
        );
        assert_eq!(plan.steps[0].1, Step::Start { repeat: 3 });
    }

    #[test]
    fn a_run_of_one_repeat_per_machine_starts_each_machine_once() {
        let plan = plan_of(
            2,
            &[(A, started(1)), (B, Part::Waiting { why: "busy".into() })],
            &[],
            vec![
                machine(A, InstanceState::Stopped, &serving("1")),
                machine(B, InstanceState::Stopped, &ours(OLD)),
            ],
        );
        assert_eq!(plan.steps[0].1, Step::Set(started(1)));
        assert_eq!(plan.steps[1].1, Step::Start { repeat: 2 });
        assert!(plan.done.is_empty());
    }

    /// A watch of pool A, B that launches from a template (two retries).
    fn launching() -> Watch {
        let mut w = Watch::example("main", &[A, B]);
        w.launch = Some(crate::config::Launch {
            template: "lt-0123456789abcdef0".into(),
            version: None,
            subnets: vec!["subnet-aaaaaaaa".into()],
            instance_types: vec![],
            market: crate::config::Market::SpotThenOnDemand,
            max_retries: 2,
            max_machines: None,
            mix_types: false,
        });
        w
    }

    const L1: &str = "i-000000000000000l1";
    const L2: &str = "i-000000000000000l2";

    /// Tags of a machine launched at 10:05 for C, serving repeat `k` ("" for none yet).
    fn launched_for(k: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut tags = ours(C);
        tags.push((tags::LAUNCHED, "lt-0123456789abcdef0"));
        if !k.is_empty() {
            tags.push((tags::REPEAT, k));
        }
        tags
    }

    /// The plan of a run of `repeats` on the launching watch: pool A, B and `launched`.
    fn launch_plan(
        repeats: u32,
        parts: &[(&str, Part)],
        pool: Vec<Instance>,
        launched: Vec<Instance>,
        refused: &[Refused],
    ) -> Plan {
        let w = launching();
        let mut run = Run::open(C, "", at(0));
        run.repeats = repeats;
        for (id, p) in parts {
            run.instances.insert((*id).to_owned(), p.clone());
            if id.len() > 10 {
                run.placed.insert(
                    (*id).to_owned(),
                    crate::placement::Place {
                        launched: true,
                        ..Default::default()
                    },
                );
            }
        }
        let members = Members {
            ids: vec![A.into(), B.into()],
            launched: launched.iter().map(|i| i.id.clone()).collect(),
            described: pool.into_iter().chain(launched).collect(),
            launches: true,
        };
        let cx = Context {
            watch: &w,
            newest: true,
            now: at(30),
            owners: &owners(),
            refused,
        };
        plan(&run, &members, cx)
    }

    fn wanted(repeats: &[(u32, bool)]) -> Vec<Wanted> {
        let each = repeats
            .iter()
            .map(|&(repeat, retry)| Wanted { repeat, retry });
        each.collect()
    }

    #[test]
    fn what_the_pool_cannot_place_is_launched() {
        // Five repeats, a pool of two stopped machines: 1 and 2 on the pool, 3–5 launched.
        let pool = vec![
            machine(A, InstanceState::Stopped, &[]),
            machine(B, InstanceState::Stopped, &[]),
        ];
        let plan = launch_plan(5, &[], pool, vec![], &[]);
        assert_eq!(plan.steps[0].1, Step::Start { repeat: 1 });
        assert_eq!(plan.steps[1].1, Step::Start { repeat: 2 });
        assert_eq!(plan.launch, wanted(&[(3, false), (4, false), (5, false)]));
    }

    #[test]
    fn a_pool_machine_refused_moments_ago_hands_its_repeat_to_the_template() {
        let pool = vec![
            machine(A, InstanceState::Stopped, &[]),
            machine(B, InstanceState::Stopped, &[]),
        ];
        let mut refused = Vec::new();
        crate::placement::refuse(&mut refused, A.into(), "no capacity".into(), at(29));
        let plan = launch_plan(2, &[], pool.clone(), vec![], &refused);
        assert!(
            matches!(&plan.steps[0].1, Step::Set(Part::Skipped { why }) if why.contains("no capacity")),
            "{:?}",
            plan.steps[0]
        );
        assert_eq!(plan.steps[1].1, Step::Start { repeat: 1 });
        assert_eq!(plan.launch, wanted(&[(2, false)]));
        // Three minutes on, it is asked again.
        let later = Refused {
            until: at(29),
            ..refused[0].clone()
        };
        let plan = launch_plan(2, &[], pool, vec![], &[later]);
        assert_eq!(plan.steps[0].1, Step::Start { repeat: 1 });
        assert!(plan.launch.is_empty());
    }

    #[test]
    fn a_launched_machine_is_confirmed_numbered_and_never_started() {
        // Up without its repeat tag (the launch's answer was lost before it was numbered):
        // it gets the lowest free repeat; one stopped by its job has done its repeat.
        let pool = vec![
            machine(A, InstanceState::Running, &serving("1")),
            machine(B, InstanceState::Running, &serving("2")),
        ];
        let mut stopped = machine(L2, InstanceState::Stopped, &launched_for("4"));
        stopped.state_reason = Some(StateReason {
            code: "Client.InstanceInitiatedShutdown".into(),
            message: "Client.InstanceInitiatedShutdown: Instance initiated shutdown".into(),
        });
        let launched = vec![
            machine(L1, InstanceState::Running, &launched_for("")),
            stopped,
        ];
        let plan = launch_plan(4, &[], pool, launched, &[]);
        let l1 = &plan.steps.iter().find(|(id, _)| id == L1).unwrap().1;
        assert!(matches!(l1, Step::Confirm { repeat: 3, .. }), "{l1:?}");
        let l2 = &plan.steps.iter().find(|(id, _)| id == L2).unwrap().1;
        assert_eq!(*l2, Step::Set(started(4)));
        assert!(plan.launch.is_empty(), "every repeat has its machine");
        assert!(!plan.steps.iter().any(|(_, s)| s.starts()));
    }

    #[test]
    fn a_repeat_taken_away_runs_again_until_its_retries_are_spent() {
        let pool = vec![
            machine(A, InstanceState::Running, &serving("1")),
            machine(B, InstanceState::Running, &serving("2")),
        ];
        let mut gone = machine(L1, InstanceState::Terminated, &launched_for("3"));
        gone.state_reason = Some(StateReason {
            code: "Server.SpotInstanceTermination".into(),
            message: "Server.SpotInstanceTermination: Spot instance termination".into(),
        });
        let parts = [(L1, started(3))];
        let plan = launch_plan(3, &parts, pool.clone(), vec![gone.clone()], &[]);
        let l1 = &plan.steps.iter().find(|(id, _)| id == L1).unwrap().1;
        assert!(
            matches!(l1, Step::Set(Part::Lost { repeat: 3, .. })),
            "{l1:?}"
        );
        assert_eq!(plan.launch, wanted(&[(3, true)]), "run again, as a retry");
        // Lost twice before, a third loss spends the two retries: repeat 3 is done.
        let lost = |why: &str| Part::Lost {
            repeat: 3,
            why: why.into(),
        };
        let parts = [
            (L1, started(3)),
            ("i-000000000000000x1", lost("1")),
            ("i-000000000000000x2", lost("2")),
        ];
        let plan = launch_plan(3, &parts, pool, vec![gone], &[]);
        assert!(plan.launch.is_empty());
        assert!(plan.done.contains(&3));
    }

    #[test]
    fn a_launch_accepted_but_not_listed_is_lost_only_after_the_start_window() {
        let pool = vec![
            machine(A, InstanceState::Running, &serving("1")),
            machine(B, InstanceState::Running, &serving("2")),
        ];
        let accepted = |minute| Part::Accepted {
            at: at(minute),
            repeat: 3,
        };
        let plan = launch_plan(3, &[(L1, accepted(28))], pool.clone(), vec![], &[]);
        assert_eq!(plan.steps[2].1, Step::Set(accepted(28)), "not listed yet");
        assert!(plan.launch.is_empty());
        let plan = launch_plan(3, &[(L1, accepted(20))], pool, vec![], &[]);
        assert!(matches!(
            plan.steps[2].1,
            Step::Set(Part::Lost { repeat: 3, .. })
        ));
        assert_eq!(plan.launch, wanted(&[(3, true)]));
    }

    #[test]
    fn launches_stay_within_max_machines() {
        let pool = vec![
            machine(A, InstanceState::Running, &[]),
            machine(B, InstanceState::Running, &[]),
        ];
        // Busy pool; an older run's launched machine still up: four repeats, room for 3.
        let mut older = machine(L2, InstanceState::Running, &launched_for("1"));
        older.tags.insert(tags::COMMIT.into(), OLD.into());
        let plan = launch_plan(4, &[], pool, vec![older], &[]);
        assert_eq!(plan.launch, wanted(&[(1, false), (2, false), (3, false)]));
    }
}
