//! Top-up rounds (SPEC §11): when a run's look at its primary metric is not settled, the
//! run is opened again for another round of repeats, after a round of its baseline's when
//! the baseline has fewer runs. One run starts at a time (`state::starter`): the newest,
//! or the baseline whose round it waits for. A newer push ends the rounds: the older run
//! gets its verdict as it stands.

use chrono::{DateTime, Utc};

use crate::config::Results;
use crate::judgement::{self, round_of};
use crate::results::previous;
use crate::state::{Run, WatchState};
use crate::stats::Call;

/// What a run that just completed a round needs next.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum After {
    /// The verdict of this run (the one that completed, or the run its baseline served).
    Verdict(usize),
    /// Another round of this run: the news line for its thread.
    Round(usize, String),
    /// Nothing to say: a baseline's round ended, and the run it served goes on.
    Quiet,
}

/// Decides what follows the completion of `entry.runs[i]`, and opens the next round when
/// there is one.
pub(super) fn after(spec: &Results, entry: &mut WatchState, i: usize, now: DateTime<Utc>) -> After {
    if let Some(change) = entry.runs[i].round_for.take() {
        // A baseline's round is over: the run it served has its own round, or its look.
        let baseline = entry.runs[i].commit.clone();
        let waiting = entry.runs.iter().position(|r| {
            r.is_open() && r.commit == change && r.waits_for.as_deref() == Some(&baseline)
        });
        if let Some(c) = waiting {
            entry.runs[c].waits_for = None;
            if !grow(spec, &mut entry.runs[c], now) {
                // Its side is full: look again now, with the baseline's new runs.
                entry.runs[c].completed_at = Some(now);
                return after(spec, entry, c, now);
            }
        }
        return After::Quiet;
    }
    let Some(most) = spec.max_repeats else {
        return After::Verdict(i);
    };
    // A newer push takes precedence: no more rounds.
    if entry.runs[i + 1..].iter().any(Run::is_open) {
        return After::Verdict(i);
    }
    let judged = judgement::judge(spec, &entry.runs, i);
    let Some(j) = judged.primary().cloned() else {
        return After::Verdict(i);
    };
    if j.call != Call::Continue {
        return After::Verdict(i);
    }
    let (base_n, change_n) = j.n;
    let base = previous(&entry.runs, i).map(|b| b.commit.clone());
    let most = most as usize;
    entry.runs[i].looks.push(j.n);
    let look = match j.look {
        Some((k, of)) => format!("{k} of {of}"),
        None => entry.runs[i].looks.len().to_string(),
    };
    // The baseline tops up first while it has fewer runs; this run's round follows.
    let base_index = base.and_then(|c| {
        entry.runs[..i]
            .iter()
            .rposition(|r| r.commit == c && r.completed_at.is_some())
    });
    let round = round_of(&entry.runs[i]);
    let base_commit_now = base_index.map(|b| entry.runs[b].commit.clone());
    let run = &mut entry.runs[i];
    let (was_partial, completed) = (run.partial, run.completed_at);
    run.round = round;
    run.completed_at = None;
    run.partial = false;
    let (low, high) = j.ci;
    let mut line = format!(
        "Look {look}: not settled ({:+.4} [{low:+.4}, {high:+.4}]); ",
        j.difference
    );
    match base_index {
        Some(b)
            if base_n < change_n
                && base_n < most
                && top_up(&entry.runs[b], round, most) as usize > entry.runs[b].taken().len() =>
        {
            let run = &mut entry.runs[i];
            let commit = run.commit.clone();
            run.waits_for = base_commit_now;
            let baseline = &mut entry.runs[b];
            baseline.round = round;
            baseline.repeats = top_up(baseline, round, most);
            baseline.round_for = Some(commit);
            baseline.round_at = Some(now);
            baseline.completed_at = None;
            baseline.partial = false;
            line.push_str(&format!(
                "another round of {round} for the baseline `{}`, then for this commit",
                crate::report::short(&baseline.commit)
            ));
        }
        _ if change_n < most && grow(spec, &mut entry.runs[i], now) => {
            line.push_str(&format!("another round of {round}"));
        }
        // Neither side can grow (a repeat that never reported still took its place): the
        // look stands as the verdict.
        _ => {
            let run = &mut entry.runs[i];
            (run.completed_at, run.partial) = (completed, was_partial);
            run.looks.pop();
            return After::Verdict(i);
        }
    }
    After::Round(i, line)
}

/// Opens another round of `run` (its timeout counting from now), within `max_repeats`;
/// false when its side is full.
fn grow(spec: &Results, run: &mut Run, now: DateTime<Utc>) -> bool {
    let most = spec.max_repeats.unwrap_or(0) as usize;
    let round = round_of(run);
    let next = top_up(run, round, most);
    if next as usize <= run.taken().len() {
        return false;
    }
    run.round = round;
    run.repeats = next;
    run.round_at = Some(now);
    true
}

/// A run's repeats after one more round of `round`, up to `most`.
fn top_up(run: &Run, round: u32, most: usize) -> u32 {
    let have = run.taken().len().max(run.repeats as usize);
    (have + round as usize).min(most.max(have)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Watch;
    use crate::state::{Part, starter};

    fn spec(max_repeats: Option<u32>) -> Results {
        Results {
            max_repeats,
            ..Results::example(&["accuracy"])
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    /// A completed run of `commit` whose repeats reported `values`.
    fn run(commit: &str, values: &[f64]) -> Run {
        let mut run = Run::open(commit, "", now());
        run.repeats = values.len() as u32;
        for (k, v) in (1..).zip(values) {
            let at = now();
            run.instances
                .insert(format!("i-{commit}-{k}"), Part::Started { at, repeat: k });
            run.values
                .entry("accuracy".into())
                .or_default()
                .insert(k, *v);
        }
        run.completed_at = Some(now());
        run
    }

    fn entry(runs: Vec<Run>) -> WatchState {
        WatchState {
            runs,
            ..WatchState::new(&Watch::example("main", &[]))
        }
    }

    #[test]
    fn without_max_repeats_a_run_gets_its_verdict() {
        let mut e = entry(vec![run("a", &[0.90, 0.91]), run("b", &[0.90, 0.91])]);
        assert_eq!(after(&spec(None), &mut e, 1, now()), After::Verdict(1));
    }

    #[test]
    fn a_settled_look_is_the_verdict() {
        let mut e = entry(vec![
            run("a", &[0.500, 0.501, 0.502, 0.501]),
            run("b", &[0.900, 0.901, 0.902, 0.901]),
        ]);
        assert_eq!(after(&spec(Some(8)), &mut e, 1, now()), After::Verdict(1));
        assert!(e.runs[1].completed_at.is_some());
    }

    #[test]
    fn an_unsettled_look_opens_another_round_of_the_same_size() {
        let mut e = entry(vec![run("a", &[0.90, 0.91]), run("b", &[0.905, 0.912])]);
        let next = after(&spec(Some(6)), &mut e, 1, now());
        assert!(
            matches!(&next, After::Round(1, line) if line.contains("another round of 2")),
            "{next:?}"
        );
        let b = &e.runs[1];
        assert!(b.is_open());
        assert_eq!((b.repeats, b.round, b.looks.len()), (4, 2, 1));
        assert_eq!(b.round_at, Some(now()));
        assert_eq!(starter(&e.runs), Some(1));
    }

    #[test]
    fn a_baseline_with_fewer_runs_tops_up_first_and_the_commit_follows() {
        let mut e = entry(vec![
            run("a", &[0.90, 0.91]),
            run("b", &[0.905, 0.912, 0.903, 0.911]),
        ]);
        // Its second round of two is done.
        e.runs[1].round = 2;
        let next = after(&spec(Some(6)), &mut e, 1, now());
        assert!(
            matches!(&next, After::Round(1, line) if line.contains("for the baseline")),
            "{next:?}"
        );
        assert_eq!(e.runs[1].waits_for.as_deref(), Some("a"));
        assert_eq!(e.runs[0].round_for.as_deref(), Some("b"));
        assert_eq!(e.runs[0].repeats, 4);
        assert_eq!(starter(&e.runs), Some(0), "the baseline's round starts");

        // The baseline's round is done: the commit's round begins.
        e.runs[0].completed_at = Some(now());
        assert_eq!(after(&spec(Some(6)), &mut e, 0, now()), After::Quiet);
        assert_eq!(e.runs[1].waits_for, None);
        assert_eq!(e.runs[1].repeats, 6);
        assert_eq!(starter(&e.runs), Some(1));
    }

    #[test]
    fn a_newer_push_ends_the_rounds() {
        let mut newer = Run::open("c", "", now());
        newer.repeats = 2;
        let mut e = entry(vec![
            run("a", &[0.90, 0.91]),
            run("b", &[0.905, 0.912]),
            newer,
        ]);
        assert_eq!(after(&spec(Some(6)), &mut e, 1, now()), After::Verdict(1));
        assert!(e.runs[1].completed_at.is_some());
    }

    #[test]
    fn a_full_side_whose_repeat_never_reported_gets_its_verdict_not_another_round() {
        // Six repeats given, five reported: nothing is left to grow.
        let mut b = run("b", &[0.905, 0.912, 0.903, 0.911, 0.907]);
        b.instances.insert(
            "i-b-6".into(),
            Part::Started {
                at: now(),
                repeat: 6,
            },
        );
        b.repeats = 6;
        b.round = 2;
        b.partial = true;
        let mut a = run("a", &[0.90, 0.91, 0.902, 0.908, 0.904, 0.906]);
        a.round = 2;
        let mut e = entry(vec![a, b]);
        let next = after(&spec(Some(6)), &mut e, 1, now());
        assert_eq!(next, After::Verdict(1));
        assert!(e.runs[1].completed_at.is_some() && e.runs[1].partial);
    }

    #[test]
    fn a_run_waiting_for_its_baselines_round_is_not_completed_by_the_harvest() {
        let mut e = entry(vec![
            run("a", &[0.90, 0.91]),
            run("b", &[0.905, 0.912, 0.903, 0.911]),
        ]);
        e.runs[1].round = 2;
        after(&spec(Some(6)), &mut e, 1, now());
        let members = crate::launch::Members::default();
        let harvest = crate::results::harvest(&mut e.runs, &members, &spec(Some(6)), now());
        assert!(!harvest.completed.contains(&1), "b waits for a's round");
        assert!(e.runs[1].is_open());
    }
}
