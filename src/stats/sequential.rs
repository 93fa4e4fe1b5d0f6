//! Group-sequential boundaries: Lan–DeMets alpha spending with an O'Brien–Fleming shape,
//! at the information fractions actually reached.
//!
//! - Lan & DeMets, "Discrete sequential boundaries for clinical trials", Biometrika 70
//!   (1983): spend α(t) = 2 − 2Φ(z_{1−α/2}/√t) of the error by information fraction t, so
//!   that looks need not be planned at fixed sizes.
//! - Armitage, McPherson & Rowe, "Repeated significance tests on accumulating data", JRSS A
//!   132 (1969), and Jennison & Turnbull, *Group Sequential Methods with Applications to
//!   Clinical Trials* (2000), ch. 19: the boundary at look k is found by integrating the
//!   density of the standardized statistic Z_{k−1} over the region where the test went on,
//!   with independent normal increments of the score S_k = Z_k √t_k between looks.

use std::cell::RefCell;

use super::tails::{normal_sf, normal_upper};

/// The error spent by information fraction `t` of a two-sided test at level `alpha`.
pub fn spent(alpha: f64, t: f64) -> f64 {
    if t >= 1.0 {
        alpha
    } else if t <= 0.0 {
        0.0
    } else {
        2.0 * normal_sf(normal_upper(alpha / 2.0) / t.sqrt())
    }
}

/// Points of the Simpson grid over the continuation region (odd).
const GRID: usize = 401;
/// Beyond this |z| the normal density is below 1e-31: no grid needs to reach further.
const REACH: f64 = 12.0;

/// The two-sided critical values |Z_k| ≥ c_k of the looks at `fractions` (strictly
/// increasing, the last ≤ 1), spending `alpha` as [`spent`] says. Computed once per design
/// and remembered: a simulation asks for the same boundaries a million times.
pub fn boundaries(alpha: f64, fractions: &[f64]) -> Vec<f64> {
    let key: Vec<u64> = std::iter::once(alpha)
        .chain(fractions.iter().copied())
        .map(f64::to_bits)
        .collect();
    thread_local! {
        static MEMO: RefCell<Vec<(Vec<u64>, Vec<f64>)>> = const { RefCell::new(Vec::new()) };
    }
    if let Some(found) =
        MEMO.with_borrow(|m| m.iter().find(|(k, _)| *k == key).map(|e| e.1.clone()))
    {
        return found;
    }
    let computed = compute(alpha, fractions);
    MEMO.with_borrow_mut(|m| {
        if m.len() >= 64 {
            m.clear();
        }
        m.push((key, computed.clone()));
    });
    computed
}

/// A sub-density of Z on a grid: (z, density × Simpson weight).
type Grid = Vec<(f64, f64)>;

fn compute(alpha: f64, fractions: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(fractions.len());
    let mut grid: Grid = Vec::new();
    let (mut before, mut spent_before) = (0.0, 0.0);
    for (k, &t) in fractions.iter().enumerate() {
        let target = spent(alpha, t) - spent_before;
        let c = if target <= 0.0 {
            f64::INFINITY
        } else if k == 0 {
            normal_upper(target / 2.0)
        } else {
            solve(|c| exit(&grid, before, t, c), target)
        };
        out.push(c);
        if k + 1 < fractions.len() {
            grid = if k == 0 {
                simpson(c, |z| {
                    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
                })
            } else {
                let (old, s) = (grid, step(before, t));
                simpson(c, |z| {
                    old.iter()
                        .map(|&(u, g)| g * phi((z * t.sqrt() - u * before.sqrt()) / s))
                        .sum::<f64>()
                        * t.sqrt()
                        / s
                })
            };
        }
        before = t;
        spent_before += target.max(0.0);
    }
    out
}

/// The standard deviation of the score's increment from `before` to `t`.
fn step(before: f64, t: f64) -> f64 {
    (t - before).sqrt()
}

fn phi(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// `density` on a Simpson grid over [−c, c] (c capped at [`REACH`]).
fn simpson(c: f64, density: impl Fn(f64) -> f64) -> Grid {
    let c = c.min(REACH);
    let h = 2.0 * c / (GRID - 1) as f64;
    (0..GRID)
        .map(|i| {
            let z = -c + i as f64 * h;
            let w = if i == 0 || i == GRID - 1 {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            (z, w * h / 3.0 * density(z))
        })
        .collect()
}

/// P(the test went on until `before` and |Z_t| ≥ c at `t`).
fn exit(grid: &Grid, before: f64, t: f64, c: f64) -> f64 {
    let s = step(before, t);
    let (a, b) = (c * t.sqrt(), before.sqrt());
    grid.iter()
        .map(|&(u, g)| g * (normal_sf((a - u * b) / s) + normal_sf((a + u * b) / s)))
        .sum()
}

/// The c at which the decreasing `f` equals `target`, by bisection.
fn solve(f: impl Fn(f64) -> f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 2.0 * REACH);
    if f(hi) > target {
        return hi;
    }
    while hi - lo > 1e-10 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_is_obrien_fleming_shaped() {
        assert_eq!(spent(0.05, 1.0), 0.05);
        assert_eq!(spent(0.05, 0.0), 0.0);
        // 2 − 2Φ(1.959964/√0.5) = 2·norm.sf(2.771808) (scipy: 0.005574596680784).
        assert!((spent(0.05, 0.5) - 0.005_574_596_680_784).abs() < 1e-12);
    }

    #[test]
    fn one_look_is_the_fixed_test() {
        let c = boundaries(0.05, &[1.0]);
        assert!((c[0] - 1.959_963_984_540_054).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn boundaries_match_an_independent_integration() {
        // The same spending solved with scipy.stats.multivariate_normal.cdf (Genz's
        // method on the looks' joint normal, corr √(t_i/t_j); abseps = releps = 1e-9, the
        // defaults are too coarse at five looks) and scipy.optimize.brentq.
        let cases: [(&[f64], &[f64]); 4] = [
            (&[0.5, 1.0], &[2.771808, 1.979311]),
            (
                &[1.0 / 3.0, 2.0 / 3.0, 1.0],
                &[3.394757, 2.406733, 2.015247],
            ),
            (
                &[0.2, 0.4, 0.6, 0.8, 1.0],
                &[4.382613, 3.099727, 2.553355, 2.253848, 2.063501],
            ),
            // Looks that stop short of the budget: 3, 6 and 9 runs of 30.
            (&[0.1, 0.2, 0.3], &[6.19795, 4.382617, 3.581873]),
        ];
        for (fractions, scipy) in cases {
            let c = boundaries(0.05, fractions);
            for (got, want) in c.iter().zip(scipy) {
                assert!(
                    (got - want).abs() < 2e-5,
                    "{fractions:?}: {c:?} vs {scipy:?}"
                );
            }
        }
    }
}
