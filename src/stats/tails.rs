//! Upper tails of the normal and Student's t distributions and their inverses, taken
//! directly (never as 1 − cdf, which loses every digit of a small p).

use statrs::function::beta::{beta_reg, inv_beta_reg};
use statrs::function::erf::{erfc, erfc_inv};

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The z with P(Z > z) = `p`, for 0 < p < 1.
pub fn normal_upper(p: f64) -> f64 {
    std::f64::consts::SQRT_2 * erfc_inv(2.0 * p)
}

/// P(T > t) for Student's t with `df` degrees of freedom (df may be fractional).
pub fn t_sf(t: f64, df: f64) -> f64 {
    // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2), the regularized incomplete beta.
    let half = 0.5 * beta_reg(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { half } else { 1.0 - half }
}

/// The t with P(T > t) = `p`, for 0 < p ≤ 1/2.
pub fn t_upper(p: f64, df: f64) -> f64 {
    let x = inv_beta_reg(df / 2.0, 0.5, 2.0 * p);
    (df * (1.0 - x) / x).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn tails_match_scipy() {
        // scipy.stats 1.x: t.sf(2.4554, 24.9885), t.sf(10, 3), t.sf(40, 2.5), norm.sf(8),
        // norm.isf(1e-10), t.isf(0.025, 2), t.isf(0.025, 4.3), t.isf(1e-6, 7.5).
        assert!(close(
            t_sf(2.4554, 24.9885),
            0.010_687_966_900_663_487,
            1e-6
        ));
        assert!(close(t_sf(10.0, 3.0), 0.001_064_199_529_207_075, 1e-6));
        assert!(close(t_sf(40.0, 2.5), 7.097_817_145_246_69e-05, 1e-6));
        assert!(close(t_sf(-1.0, 5.0), 0.818_391_266_175_438_6, 1e-9));
        assert!(close(normal_sf(8.0), 6.220_960_574_271_74e-16, 1e-9));
        assert!(close(normal_upper(1e-10), 6.361_340_902_404_056, 1e-9));
        assert!(close(normal_upper(0.025), 1.959_963_984_540_054, 1e-12));
        assert!(close(t_upper(0.025, 2.0), 4.302_652_729_749_464, 1e-9));
        assert!(close(t_upper(0.025, 4.3), 2.701_694_898_282_231_5, 1e-6));
        assert!(close(t_upper(1e-6, 7.5), 13.052_169_759_815_303, 1e-6));
    }
}
