//! The verdict of §7 as callers used it before `judge` and `judge_look`: kept, on the new
//! numerics, until every caller has moved over.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::config::Better;

use super::summary::Summary;
use super::welch::{Welch, welch};

/// Below this p-value a difference is "beyond the noise".
pub const ALPHA: f64 = 0.05;

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
