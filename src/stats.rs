//! The statistics of a commit's runs: a summary per metric, and Welch's t-test between two
//! commits, to say whether a change beat the noise.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::config::Better;

/// Below this p-value a difference is "beyond the noise".
pub const ALPHA: f64 = 0.05;

/// n, mean, sample standard deviation, min and max of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// The sample standard deviation (n − 1); 0 for fewer than two values.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Summary {
            n,
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Welch's t-test of two samples that need not share a variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// The t statistic of `a − b`.
    pub t: f64,
    /// The Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// The two-sided p-value.
    pub p: f64,
}

/// Welch's test of `a` against `b`; `None` with fewer than two values on either side.
pub fn welch(a: &Summary, b: &Summary) -> Option<Welch> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (va, vb) = (a.std.powi(2) / a.n as f64, b.std.powi(2) / b.n as f64);
    let se = (va + vb).sqrt();
    let diff = a.mean - b.mean;
    if se == 0.0 {
        // No spread at all: any difference is certain, none is none.
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Some(Welch {
            t: if diff == 0.0 {
                0.0
            } else {
                diff.signum() * f64::INFINITY
            },
            df: (a.n + b.n - 2) as f64,
            p,
        });
    }
    let t = diff / se;
    let df = (va + vb).powi(2) / (va.powi(2) / (a.n - 1) as f64 + vb.powi(2) / (b.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p: f64 = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    Some(Welch { t, df, p })
}

/// What a comparison of two commits' runs found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Better,
    Worse,
    WithinNoise,
}

/// The verdict on `new` against `old`: the test and what it found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub welch: Welch,
    pub outcome: Outcome,
    /// Within the noise: how many more runs a side would tell a difference of the size
    /// observed, were the means and spreads to stay as they are.
    pub more_runs: Option<usize>,
}

/// The verdict on `new` against `old`, when there are enough values to say.
pub fn verdict(new: &Summary, old: &Summary, better: Better) -> Option<Verdict> {
    let welch = welch(new, old)?;
    let improved = match better {
        Better::Higher => new.mean > old.mean,
        Better::Lower => new.mean < old.mean,
    };
    let outcome = if welch.p >= ALPHA {
        Outcome::WithinNoise
    } else if improved {
        Outcome::Better
    } else {
        Outcome::Worse
    };
    let more_runs = match outcome {
        Outcome::WithinNoise => runs_to_tell(new, old).map(|n| {
            // At least one: the test as run said "within the noise".
            n.saturating_sub(new.n.min(old.n)).max(1)
        }),
        _ => None,
    };
    Some(Verdict {
        welch,
        outcome,
        more_runs,
    })
}

/// The most runs a side worth naming; a difference that needs more is no difference.
const MAX_RUNS: usize = 1000;

/// How many runs a side Welch's test needs to call the difference of `new` and `old`
/// beyond the noise (p < [`ALPHA`]), were their means and spreads to stay as observed.
/// `None` when there is no difference, no spread, or more than [`MAX_RUNS`] would be
/// needed. This is the size at which the observed difference would just reach
/// significance, not a power calculation.
pub fn runs_to_tell(new: &Summary, old: &Summary) -> Option<usize> {
    let diff = (new.mean - old.mean).abs();
    let (va, vb) = (new.std.powi(2), old.std.powi(2));
    if diff == 0.0 || va + vb == 0.0 {
        return None;
    }
    (2..=MAX_RUNS).find(|&n| {
        let n = n as f64;
        let se = ((va + vb) / n).sqrt();
        // Welch–Satterthwaite with n on each side.
        let df = (va + vb).powi(2) * (n - 1.0) / (va.powi(2) + vb.powi(2));
        StudentsT::new(0.0, 1.0, df)
            .map(|t| diff / se >= t.inverse_cdf(1.0 - ALPHA / 2.0))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runs_to_tell_a_difference_grow_with_the_noise() {
        let old = Summary::of(&[0.90, 0.91, 0.92]).unwrap();
        let near = Summary::of(&[0.905, 0.915, 0.925]).unwrap();
        // d = 0.005, s = 0.01 a side: t = 0.005 / sqrt(0.0002 / n) needs n ≈ 33.
        let n = runs_to_tell(&near, &old).unwrap();
        assert!((30..=36).contains(&n), "{n}");
        let v = verdict(&near, &old, Better::Higher).unwrap();
        assert_eq!(v.outcome, Outcome::WithinNoise);
        assert_eq!(v.more_runs, Some(n - 3));
        // Twice the noise, four times the runs, about.
        let noisy = Summary::of(&[0.885, 0.905, 0.925]).unwrap();
        let wide = Summary::of(&[0.88, 0.90, 0.92]).unwrap();
        let m = runs_to_tell(&noisy, &wide).unwrap();
        assert!(m > 3 * n, "{m} vs {n}");
        assert_eq!(runs_to_tell(&old, &old), None, "no difference to tell");
    }

    #[test]
    fn a_difference_beyond_the_noise_needs_no_more_runs() {
        let old = Summary::of(&[0.90, 0.91, 0.92]).unwrap();
        let new = Summary::of(&[0.95, 0.96, 0.97]).unwrap();
        let v = verdict(&new, &old, Better::Higher).unwrap();
        assert_eq!((v.outcome, v.more_runs), (Outcome::Better, None));
        assert!(runs_to_tell(&new, &old).unwrap() <= 3);
    }

    #[test]
    fn one_value_has_no_spread_to_judge() {
        let one = Summary::of(&[0.9]).unwrap();
        let many = Summary::of(&[0.9, 0.91, 0.92]).unwrap();
        assert_eq!(one.n, 1);
        assert!(welch(&one, &many).is_none());
        assert!(Summary::of(&[]).is_none());
    }
}
