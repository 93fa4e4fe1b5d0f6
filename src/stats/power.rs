//! How many runs a side a fixed-n Welch test needs for 80% power at a given difference.

use super::summary::Summary;
use super::tails::t_upper;
use super::welch::Welch;

/// The power the "more runs" estimate is for.
pub const POWER: f64 = 0.8;
/// The most runs a side worth naming; a difference that needs more is no difference.
pub const MAX_RUNS: usize = 1000;

/// The size m each side must reach (a side that has more keeps its own) for Welch's test at
/// two-sided `alpha` to have [`POWER`] at the observed difference, were the spreads to
/// stay as observed. `None` when there is no difference or no spread, when the test is
/// already significant, or when more than [`MAX_RUNS`] a side would be needed.
///
/// Power by the shifted central t approximation, d/se ≥ t_{α/2,df} + t_{1−power,df}
/// (Guenther, "Sample size formulas for normal theory t tests", Am. Stat. 35, 1981), with
/// the Welch–Satterthwaite df at the new sizes; this is how "more runs" asks for runs where
/// the noise is, not on a side that has plenty.
pub fn runs_for_power(base: &Summary, change: &Summary, w: &Welch, alpha: f64) -> Option<usize> {
    if w.untestable() || w.difference == 0.0 || w.p < alpha {
        return None;
    }
    let d = w.difference.abs();
    let (vb, vc) = (base.std.powi(2), change.std.powi(2));
    let enough = |m: usize| {
        let (ab, ac) = (vb / base.n.max(m) as f64, vc / change.n.max(m) as f64);
        let se = (ab + ac).sqrt();
        let share = ab / (ab + ac);
        let df = 1.0
            / (share.powi(2) / (base.n.max(m) - 1) as f64
                + (1.0 - share).powi(2) / (change.n.max(m) - 1) as f64);
        d / se >= t_upper(alpha / 2.0, df) + t_upper(1.0 - POWER, df)
    };
    let (mut lo, mut hi) = (base.n.min(change.n), MAX_RUNS);
    if !enough(hi) {
        return None;
    }
    // Power grows with m: the smallest m that is enough, by bisection.
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if enough(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::super::welch::welch;
    use super::*;

    #[test]
    fn a_one_sigma_difference_needs_seventeen_a_side() {
        // σ = 1 a side, d = 1: scipy.stats.nct gives the exact power of the two-sample t
        // test 0.78140 at n = 16 and 0.80704 at n = 17.
        let base = Summary::of(&[-1.0, 0.0, 1.0]).unwrap();
        let change = Summary::of(&[0.0, 1.0, 2.0]).unwrap();
        let w = welch(&change, &base).unwrap();
        assert!(w.p > 0.05, "{w:?}");
        assert_eq!(runs_for_power(&base, &change, &w, 0.05), Some(17));
    }

    #[test]
    fn runs_are_asked_where_the_noise_is() {
        // 50 quiet baseline runs against 2 noisy ones: the small side grows, the baseline
        // already has more than it needs.
        let base: Vec<f64> = (0..50).map(|i| 0.90 + 0.0001 * (i % 5) as f64).collect();
        let base = Summary::of(&base).unwrap();
        let change = Summary::of(&[0.90, 0.94]).unwrap();
        let w = welch(&change, &base).unwrap();
        let m = runs_for_power(&base, &change, &w, 0.05).unwrap();
        assert!((3..50).contains(&m), "{m}");
    }

    #[test]
    fn nothing_to_ask_for() {
        let a = Summary::of(&[0.90, 0.91, 0.92]).unwrap();
        let same = Summary::of(&[0.92, 0.90, 0.91]).unwrap();
        let w = welch(&same, &a).unwrap();
        assert_eq!(runs_for_power(&a, &same, &w, 0.05), None, "no difference");
        let far = Summary::of(&[0.95, 0.96, 0.97]).unwrap();
        let w = welch(&far, &a).unwrap();
        assert_eq!(
            runs_for_power(&a, &far, &w, 0.05),
            None,
            "already significant"
        );
        let tiny = Summary::of(&[0.9001, 0.9201, 0.9101]).unwrap();
        let w = welch(&tiny, &a).unwrap();
        assert_eq!(
            runs_for_power(&a, &tiny, &w, 0.05),
            None,
            "more than the cap"
        );
    }
}
