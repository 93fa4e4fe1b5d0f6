//! Holm's step-down correction for judging several metrics at once (Holm, "A simple
//! sequentially rejective multiple test procedure", Scand. J. Statist. 6, 1979).

/// Which of the hypotheses with p-values `ps` are rejected at family-wise level `alpha`:
/// sorted ascending, the i-th smallest (from 0) must be below α/(m − i), and the first
/// that is not stops the rest. A NaN p is never rejected.
pub fn holm(ps: &[f64], alpha: f64) -> Vec<bool> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let mut rejected = vec![false; m];
    for (i, &k) in order.iter().enumerate() {
        // A NaN p compares as not below: it stops the steps like a large one.
        if ps[k] < alpha / (m - i) as f64 {
            rejected[k] = true;
        } else {
            break;
        }
    }
    rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_steps_down() {
        // statsmodels.stats.multitest.multipletests([0.01, 0.04, 0.03, 0.005], 0.05,
        // 'holm') rejects [True, False, False, True]: 0.005 < 0.0125, 0.01 < 0.0167,
        // 0.03 ≥ 0.025 stops.
        assert_eq!(
            holm(&[0.01, 0.04, 0.03, 0.005], 0.05),
            [true, false, false, true]
        );
        assert_eq!(holm(&[0.04], 0.05), [true]);
        assert_eq!(holm(&[0.04, 0.045], 0.05), [false, false]);
        assert_eq!(holm(&[0.01, 0.02, 0.03], 0.05), [true, true, true]);
        assert_eq!(holm(&[f64::NAN, 0.001], 0.05), [false, true]);
        assert!(holm(&[], 0.05).is_empty());
    }
}
