//! Welch's t-test of two samples that need not share a variance, and the confidence
//! interval of their difference (Welch 1947; Satterthwaite 1946 for the degrees of freedom).

use super::summary::{Summary, difference};
use super::tails::{t_sf, t_upper};

/// Welch's test of `a − b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// The t statistic of `a − b`; 0 when there is no difference or no spread to test it.
    pub t: f64,
    /// The degrees of freedom of `p` and [`Welch::ci`]: Welch–Satterthwaite's, unless
    /// replaced by [`Welch::with_df`].
    pub df: f64,
    /// The two-sided p-value; 1 when no test is possible (no spread on either side).
    pub p: f64,
    /// `a.mean − b.mean`, 0 below the data's resolution.
    pub difference: f64,
    /// The standard error of the difference; 0 when neither side has any spread.
    pub se: f64,
}

impl Welch {
    /// Neither side has any spread: there is no test, whatever the difference.
    pub fn untestable(&self) -> bool {
        self.se == 0.0
    }

    /// The two-sided confidence interval at level 1 − `alpha`; unbounded when untestable.
    pub fn ci(&self, alpha: f64) -> (f64, f64) {
        if self.untestable() {
            return (f64::NEG_INFINITY, f64::INFINITY);
        }
        let half = t_upper(alpha / 2.0, self.df) * self.se;
        (self.difference - half, self.difference + half)
    }

    /// The same statistic referred to a t distribution with `df` degrees of freedom: its p
    /// and [`Welch::ci`] follow; an untestable one stays untestable (p = 1).
    pub fn with_df(self, df: f64) -> Welch {
        let p = if self.untestable() {
            1.0
        } else {
            (2.0 * t_sf(self.t.abs(), df)).min(1.0)
        };
        Welch { df, p, ..self }
    }
}

/// Welch's test of `a` against `b`; `None` with fewer than two values on either side, or
/// when the values overflow.
pub fn welch(a: &Summary, b: &Summary) -> Option<Welch> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let diff = difference(b, a);
    let (va, vb) = (a.std.powi(2) / a.n as f64, b.std.powi(2) / b.n as f64);
    let se = (va + vb).sqrt();
    if !diff.is_finite() || !se.is_finite() {
        return None;
    }
    let (na, nb) = ((a.n - 1) as f64, (b.n - 1) as f64);
    if se == 0.0 {
        // Two constant samples: a difference between them says nothing about the noise.
        return Some(Welch {
            t: 0.0,
            df: na + nb,
            p: 1.0,
            difference: diff,
            se,
        });
    }
    // Satterthwaite's df written with the shares of the variance, which neither
    // underflow at 1e-160 nor overflow at 1e160.
    let share = va / (va + vb);
    let df = 1.0 / (share.powi(2) / na + (1.0 - share).powi(2) / nb);
    let t = diff / se;
    if !t.is_finite() {
        return None;
    }
    let p = (2.0 * t_sf(t.abs(), df)).min(1.0);
    Some(Welch {
        t,
        df,
        p,
        difference: diff,
        se,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(v: &[f64]) -> Summary {
        Summary::of(v).unwrap()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn welch_matches_scipy() {
        // scipy.stats.ttest_ind(a, b, equal_var=False) and its confidence_interval(0.95).
        let a = [0.95, 0.96, 0.98, 0.97];
        let b = [0.90, 0.91, 0.92];
        let w = welch(&of(&a), &of(&b)).unwrap();
        assert!(close(w.t, SCIPY_T, 1e-9), "{w:?}");
        assert!(close(w.df, SCIPY_DF, 1e-9), "{w:?}");
        assert!(close(w.p, SCIPY_P, 1e-6), "{w:?}");
        let (lo, hi) = w.ci(0.05);
        assert!(
            close(lo, SCIPY_LO, 1e-6) && close(hi, SCIPY_HI, 1e-6),
            "{lo} {hi}"
        );
    }

    #[test]
    fn the_same_at_tiny_and_huge_scale_and_unequal_n() {
        let a = [0.95, 0.96, 0.98, 0.97];
        let b = [0.90, 0.91, 0.92];
        for scale in [1e-12, 1e12] {
            let sa: Vec<f64> = a.iter().map(|x| x * scale).collect();
            let sb: Vec<f64> = b.iter().map(|x| x * scale).collect();
            let w = welch(&of(&sa), &of(&sb)).unwrap();
            assert!(close(w.t, SCIPY_T, 1e-6), "{scale}: {w:?}");
            assert!(close(w.p, SCIPY_P, 1e-5), "{scale}: {w:?}");
            let (lo, hi) = w.ci(0.05);
            assert!(close(lo, SCIPY_LO * scale, 1e-5), "{scale}: {lo}");
            assert!(close(hi, SCIPY_HI * scale, 1e-5), "{scale}: {hi}");
        }
    }

    #[test]
    fn a_small_p_keeps_its_digits() {
        // scipy: ttest_ind([1.0, 1.1, 0.9, 1.05, 0.95], [2.0, 2.1, 1.9, 2.05, 1.95],
        // equal_var=False).pvalue; 1 − cdf would give a p of a few ulps or 0.
        let w = welch(
            &of(&[1.0, 1.1, 0.9, 1.05, 0.95]),
            &of(&[2.0, 2.1, 1.9, 2.05, 1.95]),
        )
        .unwrap();
        assert!(close(w.p, SCIPY_SMALL_P, 1e-5), "{w:?}");
    }

    #[test]
    fn no_spread_on_either_side_is_no_test() {
        let w = welch(&of(&[0.91, 0.91]), &of(&[0.9, 0.9])).unwrap();
        assert!(w.untestable());
        assert_eq!((w.p, w.t), (1.0, 0.0));
        assert!(w.difference > 0.0);
        assert_eq!(w.ci(0.05), (f64::NEG_INFINITY, f64::INFINITY));
        // Identical values on both sides, unequal n: no difference at all.
        let w = welch(&of(&[0.9; 10]), &of(&[0.9; 2])).unwrap();
        assert_eq!((w.difference, w.p), (0.0, 1.0));
        // One ulp apart is no difference either.
        let w = welch(&of(&[0.1 + 0.2; 3]), &of(&[0.3; 3])).unwrap();
        assert_eq!((w.difference, w.p), (0.0, 1.0));
    }

    #[test]
    fn one_value_or_an_overflow_is_no_test() {
        assert!(welch(&of(&[0.9]), &of(&[0.9, 0.91, 0.92])).is_none());
        assert!(welch(&of(&[-1e300, 1e300]), &of(&[0.0, 1.0])).is_none());
    }

    /// scipy 1.x figures for the samples of `welch_matches_scipy`.
    const SCIPY_T: f64 = 6.350_852_961_085_857;
    const SCIPY_DF: f64 = 4.959_183_673_469_389;
    const SCIPY_P: f64 = 0.001_473_299_919_906_777_2;
    const SCIPY_LO: f64 = 0.032_682_885_186_611_93;
    const SCIPY_HI: f64 = 0.077_317_114_813_387_72;
    const SCIPY_SMALL_P: f64 = 4.073_918_328_674_938_6e-08;
}
