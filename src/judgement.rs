//! The judgement of a completed run against its baseline (SPEC §11): the primary metric
//! decides, by a fixed-n test or, with `max_repeats`, by the group-sequential look the run
//! has reached; the other metrics are judged with Holm's correction and never decide.
//! Pure: the words are `report`'s, the rounds the pass's.

use crate::config::Results;
use crate::results::previous;
use crate::state::Run;
use crate::stats::{self, Call, Design, Judgement, Summary};

/// A run's judgement, metric by metric in the config's order.
#[derive(Debug, Clone)]
pub struct RunJudgement<'a> {
    /// The run it is judged against: the completed run of the commit before.
    pub baseline: Option<&'a Run>,
    /// The baseline ran on other hardware (its types, in words): nothing is compared.
    pub other_hardware: bool,
    pub metrics: Vec<Metric>,
}

/// One metric of a run, and how it compares.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub primary: bool,
    pub now: Option<Summary>,
    pub before: Option<Summary>,
    /// Against the baseline, when both sides have values enough. A secondary metric's call
    /// is `better` or `worse` only when Holm's correction keeps it.
    pub judgement: Option<Judgement>,
}

impl RunJudgement<'_> {
    /// The primary metric's judgement, when there is one.
    pub fn primary(&self) -> Option<&Judgement> {
        self.metrics.iter().find(|m| m.primary)?.judgement.as_ref()
    }
}

/// The design of `spec`'s top-up rounds for a run whose rounds are `round` repeats.
pub fn design(spec: &Results, round: u32) -> Option<Design> {
    Some(Design {
        alpha: spec.alpha,
        min_effect: spec.min_effect,
        max_repeats: spec.max_repeats? as usize,
        round: round.max(1) as usize,
    })
}

/// How many repeats a round of `run` has: its first count.
pub fn round_of(run: &Run) -> u32 {
    match run.round {
        0 => run.repeats.max(1),
        n => n,
    }
}

/// Judges `runs[index]` against its baseline, as `spec` says.
pub fn judge<'a>(spec: &Results, runs: &'a [Run], index: usize) -> RunJudgement<'a> {
    let run = &runs[index];
    let baseline = previous(runs, index);
    let (now_types, before_types) = (run.types(), baseline.map(Run::types).unwrap_or_default());
    let other_hardware =
        !now_types.is_empty() && !before_types.is_empty() && now_types != before_types;
    let mut metrics: Vec<Metric> = spec
        .metrics
        .iter()
        .map(|name| {
            let now = run.values_of(name);
            let before = baseline.map(|b| b.values_of(name)).unwrap_or_default();
            let primary = *name == spec.primary;
            let better = spec.better(name);
            let judgement = match (baseline, other_hardware, primary) {
                (None, _, _) | (_, true, _) => None,
                (Some(_), false, true) => match design(spec, round_of(run)) {
                    Some(d) => stats::judge_look(&before, &now, better, &d, &run.looks),
                    None => stats::judge(&before, &now, better, spec.alpha, spec.min_effect),
                },
                (Some(_), false, false) => stats::judge(&before, &now, better, spec.alpha, None),
            };
            Metric {
                name: name.clone(),
                primary,
                now: Summary::of(&now),
                before: Summary::of(&before),
                judgement,
            }
        })
        .collect();
    holm(&mut metrics, spec.alpha);
    RunJudgement {
        baseline,
        other_hardware,
        metrics,
    }
}

/// Holm's step-down correction over the secondary metrics: a call beyond the noise stands
/// only if its p-value survives; the others are within the noise.
fn holm(metrics: &mut [Metric], alpha: f64) {
    let secondary: Vec<usize> = (0..metrics.len())
        .filter(|&i| !metrics[i].primary && metrics[i].judgement.is_some())
        .collect();
    let ps: Vec<f64> = secondary
        .iter()
        .filter_map(|&i| metrics[i].judgement.as_ref().map(|j| j.p))
        .collect();
    let kept = stats::holm(&ps, alpha);
    for (&i, kept) in secondary.iter().zip(kept) {
        if let Some(j) = metrics[i].judgement.as_mut()
            && !kept
            && matches!(j.call, Call::Better | Call::Worse)
        {
            j.call = Call::WithinNoise;
        }
    }
}
