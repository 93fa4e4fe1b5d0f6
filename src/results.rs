//! Results: gathering what each run reported, and the numbers a verdict and the rows of
//! `pushwake results` are made of. Their words are in `report`.
//!
//! A run reports by tagging its own instance `pushwake:result:<metric>` with a number.
//! pushwake reads those tags from the describe it already makes, counts a value only while
//! the instance's `pushwake:commit` is still the run's commit, and keeps every value in its
//! state, per watch and commit, so the history survives restarts and reused instances.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Results, Settings};
use crate::ec2::InstanceState;
use crate::launch::Members;
use crate::state::Run;
use crate::stats::Summary;
use crate::tags;

/// What one look at the instances found.
#[derive(Debug, Default)]
pub struct Harvest {
    /// Runs that became complete, as indexes into the runs.
    pub completed: Vec<usize>,
    /// Running instances that have reported every metric, for `stop_when_reported`.
    pub reported: Vec<String>,
}

/// Reads the result tags of every open run's started instances, each for the repeat it
/// holds, and closes the runs that are done: every part settled, every repeat given to a
/// machine (when machines serve several), and every started instance reported every
/// metric, or stopped (or was reused) without; or the timeout passed since the last start.
pub fn harvest(runs: &mut [Run], members: &Members, spec: &Results, now: DateTime<Utc>) -> Harvest {
    let mut harvest = Harvest::default();
    let newest = crate::state::starter(runs);
    // A run whose next round waits for its baseline's is not done while that round runs.
    let paused: Vec<usize> = (0..runs.len())
        .filter(|&i| {
            let Some(base) = &runs[i].waits_for else {
                return false;
            };
            runs.iter().any(|r| {
                r.is_open() && &r.commit == base && r.round_for.as_ref() == Some(&runs[i].commit)
            })
        })
        .collect();
    for (index, run) in runs.iter_mut().enumerate() {
        if !run.is_open() || paused.contains(&index) {
            continue;
        }
        let mut all_done = run.is_settled();
        let held: Vec<(String, u32)> = run
            .instances
            .iter()
            .filter(|(_, p)| p.is_started())
            .filter_map(|(id, p)| Some((id.clone(), p.repeat()?)))
            .collect();
        for (id, repeat) in &held {
            let Some(instance) = members.get(id) else {
                continue; // gone from the watch or from EC2: it will report nothing more
            };
            // Attributed by the commit and the repeat on the machine: what it reports for
            // another repeat is never this one's (a machine tagged before repeats has none).
            let same_commit = instance.tags.get(tags::COMMIT) == Some(&run.commit);
            let same_repeat = tags::repeat(&instance.tags).is_none_or(|k| k == *repeat);
            let ours = same_commit && same_repeat;
            if ours {
                for metric in &spec.metrics {
                    if let Some(v) = tags::result(&instance.tags, metric) {
                        run.values
                            .entry(metric.clone())
                            .or_default()
                            .insert(*repeat, v);
                    }
                }
            }
            let reported = reported_all(run, spec, *repeat);
            if reported && ours && instance.state == InstanceState::Running {
                harvest.reported.push(id.clone());
            }
            let up = matches!(
                instance.state,
                InstanceState::Pending | InstanceState::Running
            );
            if !reported && ours && up {
                all_done = false;
            }
        }
        let taken = run.taken();
        let waiting = run.gives_repeats(members.pool(), newest == Some(index));
        // A run that started nothing has nothing to judge; the pass closes it.
        let Some(last_start) = run.last_start() else {
            continue;
        };
        // A top-up round's timeout counts from the round's start, not the run's first.
        let since = run.round_at.map_or(last_start, |r| r.max(last_start));
        let timed_out = (now - since).to_std().unwrap_or_default() >= spec.timeout;
        if (all_done && !waiting) || timed_out {
            run.completed_at = Some(now);
            let short = (run.repeats as usize) > taken.len();
            run.partial = short || !taken.iter().all(|&k| reported_all(run, spec, k));
            harvest.completed.push(index);
        }
    }
    harvest
}

/// Whether repeat `repeat` reported every metric in `run`.
pub fn reported_all(run: &Run, spec: &Results, repeat: u32) -> bool {
    spec.metrics
        .iter()
        .all(|m| run.values.get(m).is_some_and(|v| v.contains_key(&repeat)))
}

/// How many repeats of `run` reported every metric, of how many were to: the run's count
/// when it has one, else those given to a machine (one per machine).
pub fn reported(run: &Run, spec: &Results) -> (usize, usize) {
    let taken = run.taken();
    let all = taken
        .iter()
        .filter(|&&k| reported_all(run, spec, k))
        .count();
    (all, (run.repeats as usize).max(taken.len()))
}

/// The completed run before `runs[index]` with another commit: what it is judged against.
pub fn previous(runs: &[Run], index: usize) -> Option<&Run> {
    let commit = &runs[index].commit;
    runs[..index]
        .iter()
        .rev()
        .find(|r| r.completed_at.is_some() && r.superseded_by.is_none() && &r.commit != commit)
}

/// One row of `pushwake results`: one metric of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub repo: String,
    pub branch: String,
    pub commit: String,
    /// The first line of the commit's message (user text: escape it where it is markup).
    pub title: String,
    pub metric: String,
    pub n: usize,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub complete: bool,
    pub partial: bool,
    pub values: Vec<f64>,
    pub started_at: DateTime<Utc>,
    /// Against the baseline (a completed run only): `better`, `worse`, `equivalent`,
    /// `within the noise`; the difference, its confidence interval, p, and the look.
    pub verdict: Option<String>,
    pub baseline: Option<String>,
    pub difference: Option<f64>,
    pub ci: Option<(f64, f64)>,
    pub p: Option<f64>,
    pub look: Option<(usize, usize)>,
    /// What the run's machines cost, USD (`None` when some time has no price, said in
    /// `cost_unknown`), and their running seconds, on EC2's clock.
    pub cost: Option<f64>,
    pub machine_seconds: i64,
    pub cost_unknown: Vec<String>,
}

/// Every run of every watch with results, oldest first within a watch.
pub fn rows(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let state = crate::store::read(settings)?.state;
    let mut rows = Vec::new();
    for watch in &settings.watches {
        let (Some(spec), Some(ws)) = (&watch.results, state.get(watch)) else {
            continue;
        };
        for (i, run) in ws.runs.iter().enumerate() {
            if run.superseded_by.is_some() {
                continue;
            }
            let judged = run
                .completed_at
                .map(|_| crate::judgement::judge(spec, &ws.runs, i));
            let total = crate::cost::Total::of(&run.spans, Utc::now());
            for metric in &spec.metrics {
                let values = run.values_of(metric);
                let s = Summary::of(&values);
                let judgement = judged.as_ref().and_then(|j| {
                    let m = j.metrics.iter().find(|m| &m.name == metric)?;
                    Some((j.baseline?.commit.clone(), m.judgement.clone()?))
                });
                let (baseline, judgement) = judgement.unzip();
                rows.push(Row {
                    repo: watch.repo.to_string(),
                    branch: watch.branch.clone(),
                    commit: run.commit.clone(),
                    title: run.title.clone(),
                    metric: metric.clone(),
                    n: values.len(),
                    mean: s.map(|s| s.mean),
                    std: s.map(|s| s.std),
                    min: s.map(|s| s.min),
                    max: s.map(|s| s.max),
                    complete: run.completed_at.is_some(),
                    partial: run.partial,
                    values,
                    started_at: run.opened_at,
                    verdict: judgement
                        .as_ref()
                        .map(|j| crate::report::verdict::call_words(j.call).to_owned()),
                    baseline,
                    difference: judgement.as_ref().map(|j| j.difference),
                    ci: judgement.as_ref().map(|j| j.ci),
                    p: judgement.as_ref().map(|j| j.p),
                    look: judgement.as_ref().and_then(|j| j.look),
                    cost: total.unknown.is_empty().then_some(total.cost),
                    machine_seconds: total.machine_seconds,
                    cost_unknown: total.unknown.clone(),
                });
            }
        }
    }
    Ok(rows)
}
