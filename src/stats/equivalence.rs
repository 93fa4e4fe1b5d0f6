//! Equivalence: the difference is within ±`min_effect`, by two one-sided tests (TOST;
//! Schuirmann 1987, Lakens 2017) read off the confidence interval.

/// Whether the confidence interval `ci` lies strictly inside ±`min_effect`. With the CI at
/// level 1 − α this is TOST at α/2 a side, so it rejects "the difference is at least
/// `min_effect`" at level α, and the interval shown beside the verdict proves it.
pub fn within(ci: (f64, f64), min_effect: f64) -> bool {
    min_effect > 0.0 && -min_effect < ci.0 && ci.1 < min_effect
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_must_fit_inside() {
        assert!(within((-0.004, 0.003), 0.005));
        assert!(!within((-0.006, 0.003), 0.005));
        assert!(
            !within((-0.001, 0.005), 0.005),
            "touching the bound is not inside"
        );
        assert!(!within((f64::NEG_INFINITY, f64::INFINITY), 0.005));
        assert!(!within((0.0, 0.0), 0.0), "no min_effect, no equivalence");
    }
}
