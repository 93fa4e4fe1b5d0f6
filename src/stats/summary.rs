//! n, mean, spread, min and max of some values, computed so that identical values have
//! exactly their value as mean and exactly no spread.

/// How many units of f64 rounding (of the largest magnitude involved) a difference or a
/// spread must exceed to count: below it, it is the arithmetic's, not the data's.
pub const RESOLUTION_ULPS: f64 = 8.0;

/// n, mean, sample standard deviation, min and max of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// The sample standard deviation (n − 1); 0 for fewer than two values, and for a
    /// spread below the data's resolution.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no values. The mean is taken on the values shifted by the first one and
    /// the variance by the corrected two-pass algorithm (Chan, Golub & LeVeque, "Algorithms
    /// for computing the sample variance", 1983), so that [0.9]×10 has mean 0.9 and std 0
    /// exactly. A variance that overflows is infinite: [`crate::stats::judge`] then says
    /// nothing rather than something wrong.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        let first = *values.first()?;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let shifted: f64 = values.iter().map(|v| v - first).sum();
        // Rounding cannot put the mean outside the values.
        let mean = (first + shifted / n as f64).clamp(min, max);
        let var = if n > 1 {
            let (squares, sum) = values.iter().fold((0.0, 0.0), |(s, c), v| {
                let e = v - mean;
                (s + e * e, c + e)
            });
            ((squares - sum * sum / n as f64) / (n - 1) as f64).max(0.0)
        } else {
            0.0
        };
        let mut s = Summary {
            n,
            mean,
            std: var.sqrt(),
            min,
            max,
        };
        if s.std <= s.resolution() {
            s.std = 0.0;
        }
        Some(s)
    }

    /// The largest magnitude among the values.
    pub fn magnitude(&self) -> f64 {
        self.min.abs().max(self.max.abs())
    }

    /// The smallest difference these values can tell from rounding.
    pub fn resolution(&self) -> f64 {
        RESOLUTION_ULPS * f64::EPSILON * self.magnitude()
    }
}

/// The difference `change − base` of two means, 0 when it is below what the values can tell.
pub fn difference(base: &Summary, change: &Summary) -> f64 {
    let d = change.mean - base.mean;
    if d.abs() <= base.resolution().max(change.resolution()) {
        0.0
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_values_have_their_value_as_mean_and_no_spread() {
        for v in [0.9, 0.1 + 0.2, 1e-12 / 3.0, 1e12 / 7.0, -3.3] {
            for n in 1..=20 {
                let s = Summary::of(&vec![v; n]).unwrap();
                assert_eq!(
                    (s.n, s.mean, s.std, s.min, s.max),
                    (n, v, 0.0, v, v),
                    "{v} × {n}"
                );
            }
        }
        // The naive sum gives 0.9 × 10 / 10 = 0.8999999999999999.
        assert_ne!([0.9; 10].iter().sum::<f64>() / 10.0, 0.9);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn one_value_shows_no_spread() {
        let s = Summary::of(&[0.91]).unwrap();
        assert_eq!((s.n, s.mean, s.std), (1, 0.91, 0.0));
    }

    #[test]
    fn a_one_ulp_difference_is_no_difference() {
        let a = Summary::of(&[0.1 + 0.2; 3]).unwrap();
        let b = Summary::of(&[0.3; 3]).unwrap();
        assert_ne!(a.mean, b.mean);
        assert_eq!(difference(&b, &a), 0.0);
        // Spread that is only rounding is none.
        let c = Summary::of(&[0.1 + 0.2, 0.3, 0.3]).unwrap();
        assert_eq!(c.std, 0.0);
    }

    #[test]
    fn the_spread_holds_at_any_scale() {
        // numpy.std([1, 2, 3, 4], ddof=1) = 1.2909944487358056, at 1e-12 and 1e12 scale
        // and shifted far from zero, where the textbook one-pass formula loses every digit.
        for (scale, offset) in [(1.0, 0.0), (1e-12, 0.0), (1e12, 0.0), (1.0, 1e9)] {
            let v: Vec<f64> = [1.0, 2.0, 3.0, 4.0]
                .iter()
                .map(|x| x * scale + offset)
                .collect();
            let s = Summary::of(&v).unwrap();
            let rel = (s.std / scale - 1.290_994_448_735_805_6).abs() / 1.29;
            assert!(rel < 1e-6, "scale {scale} offset {offset}: {s:?}");
            assert!(((s.mean - offset) / scale - 2.5).abs() < 1e-6, "{s:?}");
        }
        // A tiny real difference is a difference.
        let a = Summary::of(&[1e-12, 1.1e-12]).unwrap();
        let b = Summary::of(&[2e-12, 2.1e-12]).unwrap();
        assert!((difference(&a, &b) - 1e-12).abs() < 1e-24);
    }

    #[test]
    fn an_overflowing_variance_is_infinite_not_dropped() {
        let s = Summary::of(&[-1e300, 1e300]).unwrap();
        assert!(s.std.is_infinite(), "{s:?}");
    }
}
