//! The statistics of a commit's runs: a summary per metric, and the judgement of a change
//! against its baseline — a fixed-n Welch test, or a look of a group-sequential design
//! (SPEC §11) — with equivalence, a power-based "more runs", and Holm across metrics.

mod equivalence;
mod holm;
mod power;
pub mod sequential;
mod summary;
mod tails;
mod welch;

use crate::config::Better;

pub use holm::holm;
pub use power::{MAX_RUNS, POWER};
pub use summary::Summary;
pub use welch::{Welch, welch};

/// What a judgement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Beyond the noise, the better way.
    Better,
    /// Beyond the noise, the worse way.
    Worse,
    /// The difference is within ±`min_effect`, at level `alpha`.
    Equivalent,
    /// Settled neither way: a fixed-n test that did not tell, or the budget reached.
    WithinNoise,
    /// A sequential design that would run another round.
    Continue,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Call::Better => "better",
            Call::Worse => "worse",
            Call::Equivalent => "equivalent",
            Call::WithinNoise => "within the noise",
            Call::Continue => "continue",
        })
    }
}

/// A judgement of a change against its baseline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Judgement {
    pub call: Call,
    /// change − baseline (raw, not direction-adjusted); 0 below the data's resolution.
    pub difference: f64,
    /// The difference's confidence interval at the design's level: 1 − α for a fixed-n
    /// test, the repeated confidence interval of the look for a sequential one (Jennison &
    /// Turnbull ch. 9: at the look's nominal level, so it excludes 0 exactly when the
    /// boundary is crossed). Unbounded (±∞, null in JSON) when neither side has any
    /// spread: two constant samples admit no test, whatever their difference.
    pub ci: (f64, f64),
    /// The two-sided Welch p-value (fixed-n, Welch–Satterthwaite df), or the one a
    /// sequential look compares with its nominal level (df min(n) − 1, see
    /// [`judge_look`]); 1 when no test is possible.
    pub p: f64,
    /// (baseline, change).
    pub n: (usize, usize),
    /// (this look, planned looks) for a sequential design.
    pub look: Option<(usize, usize)>,
    /// Fixed-n, within the noise: the size each side must reach for [`POWER`] at the
    /// observed difference (a side with more keeps its own), or `None` (see
    /// [`power::runs_for_power`]).
    pub more_runs: Option<usize>,
}

/// A group-sequential design, fixed before the first look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Design {
    /// The chance of calling a change better or worse when it is not, over all looks.
    pub alpha: f64,
    /// The smallest difference that matters: enables `equivalent`.
    pub min_effect: Option<f64>,
    /// The most runs a side; the last look is there.
    pub max_repeats: usize,
    /// Runs a side a round adds; looks are planned at round, 2·round, … up to max_repeats.
    pub round: usize,
}

impl Design {
    /// The looks planned: at round, 2·round, … and the last at max_repeats.
    pub fn planned_looks(&self) -> usize {
        self.max_repeats.div_ceil(self.round.max(1))
    }

    fn valid(&self) -> bool {
        self.alpha > 0.0
            && self.alpha < 1.0
            && self.max_repeats >= 2
            && self.round >= 1
            && self.min_effect.is_none_or(|m| m > 0.0 && m.is_finite())
    }
}

/// The fixed-n judgement of `change` against `base` at level `alpha`: Welch's test and
/// its 1 − α CI; `equivalent` when `min_effect` is set and the CI is inside ±min_effect.
/// `None` with fewer than two values a side, or when the values overflow.
pub fn judge(
    base: &[f64],
    change: &[f64],
    better: Better,
    alpha: f64,
    min_effect: Option<f64>,
) -> Option<Judgement> {
    let (b, c) = (Summary::of(base)?, Summary::of(change)?);
    let w = welch(&c, &b)?;
    let ci = w.ci(alpha);
    let call = settled(&w, better, alpha, ci, min_effect).unwrap_or(Call::WithinNoise);
    let more_runs = if call == Call::WithinNoise {
        power::runs_for_power(&b, &c, &w, alpha)
    } else {
        None
    };
    Some(Judgement {
        call,
        difference: w.difference,
        ci,
        p: w.p,
        n: (b.n, c.n),
        look: None,
        more_runs,
    })
}

/// The judgement at one look of the sequential `design`, the sides being `base` and
/// `change` now and `earlier` the per-side sizes (baseline, change) of the looks already
/// taken. The information fraction of a look is n/max_repeats, n its smaller side; a look
/// that added no information over the one before is no look. Welch's statistic is mapped
/// to the normal scale through its t p-value at the conservative df min(n_base, n_change) − 1
/// (see [`conservative_df`]): the boundary is crossed when p is below the look's nominal
/// level 2(1 − Φ(c_k)), c_k from [`sequential::boundaries`], and the repeated CI is taken at
/// that level with the same df, so it excludes 0 exactly then. Settled →
/// better / worse / equivalent; at max_repeats and not settled → within the noise; else
/// continue. `None` as for [`judge`], or for a design that makes no sense.
pub fn judge_look(
    base: &[f64],
    change: &[f64],
    better: Better,
    design: &Design,
    earlier: &[(usize, usize)],
) -> Option<Judgement> {
    if !design.valid() {
        return None;
    }
    let (b, c) = (Summary::of(base)?, Summary::of(change)?);
    let w = welch(&c, &b)?.with_df(conservative_df(b.n, c.n));
    let fraction = |n: usize| (n as f64 / design.max_repeats as f64).min(1.0);
    let last = b.n.min(c.n) >= design.max_repeats;
    let now = fraction(b.n.min(c.n));
    let mut fractions: Vec<f64> = Vec::with_capacity(earlier.len() + 1);
    for &(eb, ec) in earlier {
        let f = fraction(eb.min(ec));
        if f > fractions.last().copied().unwrap_or(0.0) && f < now {
            fractions.push(f);
        }
    }
    fractions.push(now);
    let c_k = *sequential::boundaries(design.alpha, &fractions).last()?;
    let nominal = 2.0 * tails::normal_sf(c_k);
    let ci = if nominal > 0.0 {
        w.ci(nominal)
    } else {
        (f64::NEG_INFINITY, f64::INFINITY)
    };
    let call = settled(&w, better, nominal, ci, design.min_effect).unwrap_or(if last {
        Call::WithinNoise
    } else {
        Call::Continue
    });
    let looks = fractions.len();
    Some(Judgement {
        call,
        difference: w.difference,
        ci,
        p: w.p,
        n: (b.n, c.n),
        look: Some((looks, design.planned_looks().max(looks))),
        more_runs: None,
    })
}

/// The degrees of freedom a sequential look refers Welch's statistic to: min(n_a, n_b) − 1,
/// the conservative bound of the Behrens–Fisher problem (Hsu 1938; Banerjee 1961;
/// Mickey & Brown, "Bounds on the distribution functions of the Behrens–Fisher statistic",
/// Ann. Math. Statist. 37 (1966): P(|T| ≥ t_{1−α/2, min(n)−1}) ≤ α for normal data and any
/// ratio of the two variances; Scheffé, "Practical solutions of the Behrens–Fisher
/// problem", JASA 65 (1970)). Why: each look's nominal level then holds whatever the
/// variances, where the Welch–Satterthwaite df — itself estimated from them — lets the
/// error exceed alpha at a few runs a side (simulated: 5.1–5.5% over 2–5 looks from 3 runs
/// a side, σ 1 against 2). The price is power: this df is never above Welch–Satterthwaite's,
/// so the same data give a larger p and a wider interval. The fixed-n [`judge`] keeps
/// Welch–Satterthwaite.
fn conservative_df(n_a: usize, n_b: usize) -> f64 {
    (n_a.min(n_b) - 1) as f64
}

/// The settled call of a test at `level` with interval `ci`, if any. Equivalence comes
/// first: a difference shown smaller than the smallest that matters does not matter, even
/// when it is shown not to be zero.
fn settled(
    w: &Welch,
    better: Better,
    level: f64,
    ci: (f64, f64),
    min_effect: Option<f64>,
) -> Option<Call> {
    if w.untestable() {
        return None;
    }
    if min_effect.is_some_and(|m| equivalence::within(ci, m)) {
        return Some(Call::Equivalent);
    }
    let beyond = w.p < level; // false for a NaN p
    if w.difference == 0.0 || !beyond {
        return None;
    }
    let improved = match better {
        Better::Higher => w.difference > 0.0,
        Better::Lower => w.difference < 0.0,
    };
    Some(if improved { Call::Better } else { Call::Worse })
}

#[cfg(test)]
mod tests;
