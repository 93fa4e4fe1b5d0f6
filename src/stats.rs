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
    Some(Verdict { welch, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_has_no_spread_to_judge() {
        let one = Summary::of(&[0.9]).unwrap();
        let many = Summary::of(&[0.9, 0.91, 0.92]).unwrap();
        assert_eq!(one.n, 1);
        assert!(welch(&one, &many).is_none());
        assert!(Summary::of(&[]).is_none());
    }
}
