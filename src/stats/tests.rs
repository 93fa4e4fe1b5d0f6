//! The judgements, against figures from scipy 1.x (`scipy.stats.ttest_ind(change, base,
//! equal_var=False)` and its `confidence_interval`; for a sequential look, `scipy.stats.t` at
//! df min(n) − 1), written in here.

use super::*;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

const FIVE: [f64; 5] = [0.90, 0.91, 0.92, 0.905, 0.915];

#[test]
fn identical_values_are_never_a_difference() {
    // The sweep: 11 values × n 2–20 a side, 3,971 pairs, 1,950 of them once
    // called beyond the noise.
    let values = [
        0.9,
        0.1,
        0.3,
        0.1 + 0.2,
        1.0 / 3.0,
        2.0 / 3.0,
        0.7,
        1e-12,
        1e12,
        123.456,
        -0.5,
    ];
    let mut pairs = 0;
    for v in values {
        for nb in 2..=20 {
            for nc in 2..=20 {
                let j = judge(&vec![v; nb], &vec![v; nc], Better::Higher, 0.05, None).unwrap();
                assert_eq!(
                    (j.call, j.difference, j.p),
                    (Call::WithinNoise, 0.0, 1.0),
                    "{v}"
                );
                assert_eq!(j.more_runs, None);
                pairs += 1;
            }
        }
    }
    assert_eq!(pairs, 3971);
}

#[test]
fn no_spread_on_either_side_is_not_certainty() {
    let j = judge(&[0.9, 0.9], &[0.91, 0.91], Better::Higher, 0.05, None).unwrap();
    assert_eq!((j.call, j.p), (Call::WithinNoise, 1.0));
    assert!((j.difference - 0.01).abs() < 1e-12);
    assert_eq!(j.ci, (f64::NEG_INFINITY, f64::INFINITY));
    assert_eq!(j.more_runs, None);
    // Not equivalent either: there is no interval to fit inside ±min_effect.
    let j = judge(&[0.9; 3], &[0.9; 3], Better::Higher, 0.05, Some(0.01)).unwrap();
    assert_eq!(j.call, Call::WithinNoise);
    // And no sequential look settles on it.
    let d = Design {
        alpha: 0.05,
        min_effect: Some(0.1),
        max_repeats: 6,
        round: 3,
    };
    let j = judge_look(&[0.9; 3], &[0.91; 3], Better::Higher, &d, &[]).unwrap();
    assert_eq!(j.call, Call::Continue);
    let j = judge_look(&[0.9; 6], &[0.91; 6], Better::Higher, &d, &[(3, 3)]).unwrap();
    assert_eq!(j.call, Call::WithinNoise);
}

#[test]
fn one_ulp_is_no_difference() {
    let j = judge(&[0.3; 3], &[0.1 + 0.2; 3], Better::Higher, 0.05, None).unwrap();
    assert_eq!((j.call, j.difference, j.p), (Call::WithinNoise, 0.0, 1.0));
}

#[test]
fn one_value_a_side_is_not_judged() {
    assert!(judge(&[0.9], &FIVE, Better::Higher, 0.05, None).is_none());
    assert!(judge(&FIVE, &[0.9], Better::Higher, 0.05, None).is_none());
    assert!(
        judge(&[-1e300, 1e300], &FIVE, Better::Higher, 0.05, None).is_none(),
        "overflow"
    );
}

#[test]
fn fixed_n_matches_scipy_at_any_scale() {
    let change = [0.93, 0.925, 0.94];
    // scipy: p 0.015059282889962252, CI (0.006608282897894913, 0.036725050435438535).
    for scale in [1.0, 1e-12, 1e12] {
        let b: Vec<f64> = FIVE.iter().map(|x| x * scale).collect();
        let c: Vec<f64> = change.iter().map(|x| x * scale).collect();
        let j = judge(&b, &c, Better::Higher, 0.05, None).unwrap();
        assert_eq!(
            (j.call, j.n, j.look, j.more_runs),
            (Call::Better, (5, 3), None, None)
        );
        assert!(
            close(j.p, 0.015_059_282_889_962_252, 1e-5),
            "{scale}: {j:?}"
        );
        assert!(
            close(j.ci.0, 0.006_608_282_897_894_913 * scale, 1e-5),
            "{scale}: {j:?}"
        );
        assert!(
            close(j.ci.1, 0.036_725_050_435_438_535 * scale, 1e-5),
            "{scale}: {j:?}"
        );
        assert!(
            close(j.difference, 0.021_666_666_666_666_723 * scale, 1e-9),
            "{j:?}"
        );
        // Lower is better: the same difference is worse.
        let j = judge(&b, &c, Better::Lower, 0.05, None).unwrap();
        assert_eq!(j.call, Call::Worse);
    }
}

#[test]
fn two_runs_against_fifty_ask_for_runs_on_the_small_side() {
    let base: Vec<f64> = (0..50)
        .map(|i| 0.90 + 0.001 * ((i * 7) % 10) as f64)
        .collect();
    // scipy: p 0.4688634776591351, CI (-0.05627075074282207, 0.0672707507428224).
    let j = judge(&base, &[0.905, 0.915], Better::Higher, 0.05, None).unwrap();
    assert_eq!((j.call, j.n), (Call::WithinNoise, (50, 2)));
    assert!(close(j.p, 0.468_863_477_659_135_1, 1e-5), "{j:?}");
    assert!(close(j.ci.0, -0.056_270_750_742_822_07, 1e-5), "{j:?}");
    assert!(close(j.ci.1, 0.067_270_750_742_822_4, 1e-5), "{j:?}");
    let m = j.more_runs.unwrap();
    assert!((3..50).contains(&m), "{m}: the baseline's 50 are plenty");
}

#[test]
fn a_small_difference_inside_min_effect_is_equivalent() {
    let change = [0.9005, 0.9105, 0.9205, 0.9055, 0.9155];
    let j = judge(&FIVE, &change, Better::Higher, 0.05, Some(0.05)).unwrap();
    assert_eq!(j.call, Call::Equivalent);
    assert!(-0.05 < j.ci.0 && j.ci.1 < 0.05, "{j:?}");
    let j = judge(&FIVE, &change, Better::Higher, 0.05, Some(0.005)).unwrap();
    assert_eq!(j.call, Call::WithinNoise, "the CI reaches past ±0.005");
}

const DESIGN: Design = Design {
    alpha: 0.05,
    min_effect: None,
    max_repeats: 15,
    round: 3,
};

#[test]
fn an_early_look_needs_overwhelming_evidence() {
    let base = [0.90, 0.91, 0.92];
    // Fixed-n this is better (p ≈ 0.003); at look 1 of 5 the boundary asks p < 1.17e-5
    // (scipy: 2·norm.sf(4.382613) = 1.1726430844859985e-05) at df min(3, 3) − 1 = 2,
    // i.e. |t| > 292.02 (scipy: t.isf(1.1726430844859985e-05 / 2, 2) = 292.0204440878913);
    // the repeated CI is scipy's (-2.3343369415875967, 2.4343369415875964).
    let near = [0.95, 0.96, 0.97];
    assert_eq!(
        judge(&base, &near, Better::Higher, 0.05, None)
            .unwrap()
            .call,
        Call::Better
    );
    let j = judge_look(&base, &near, Better::Higher, &DESIGN, &[]).unwrap();
    assert_eq!(
        (j.call, j.look, j.more_runs),
        (Call::Continue, Some((1, 5)), None)
    );
    assert!(close(j.ci.0, -2.334_336_941_587_596_7, 1e-5), "{j:?}");
    assert!(close(j.ci.1, 2.434_336_941_587_596_4, 1e-5), "{j:?}");
    // A whole unit away (t 122.47) is not enough at df 2 (scipy: 2·t.sf(122.47448713915877,
    // 2) = 6.666000074065447e-05); three units (t 367.42) are: 7.407325103896765e-06.
    let far = [1.90, 1.91, 1.92];
    let j = judge_look(&base, &far, Better::Higher, &DESIGN, &[]).unwrap();
    assert_eq!(j.call, Call::Continue, "{j:?}");
    assert!(close(j.p, 6.666_000_074_065_447e-5, 1e-5), "{j:?}");
    assert!(j.ci.0 < 0.0, "{j:?}");
    let farther = [3.90, 3.91, 3.92];
    let j = judge_look(&base, &farther, Better::Higher, &DESIGN, &[]).unwrap();
    assert_eq!(j.call, Call::Better);
    assert!(close(j.p, 7.407_325_103_896_765e-6, 1e-5), "{j:?}");
    assert!(j.ci.0 > 0.0, "{j:?}");
}

#[test]
fn a_look_refers_welch_to_the_smaller_side_less_one() {
    // Eight runs against four, one look at the budget (nominal level = alpha): the
    // Welch–Satterthwaite df is 7.5008 and fixed-n calls it better, p 0.029720904556954735,
    // CI (0.001478349528564524, 0.021521650471435387); the look refers the same t
    // (difference 0.0115) to df min(8, 4) − 1 = 3 (scipy: 2·t.sf(t, 3) =
    // 0.07523147337058485, CI d ± t.isf(0.025, 3)·se = (-0.0021705910248282882,
    // 0.025170591024828198)): not beyond the noise, and the interval holds 0.
    let base = [0.90, 0.91, 0.92, 0.905, 0.915, 0.90, 0.92, 0.91];
    let change = [0.914, 0.929, 0.924, 0.919];
    let j = judge(&base, &change, Better::Higher, 0.05, None).unwrap();
    assert_eq!(j.call, Call::Better);
    assert!(close(j.p, 0.029_720_904_556_954_735, 1e-6), "{j:?}");
    assert!(close(j.ci.0, 0.001_478_349_528_564_524, 1e-5), "{j:?}");
    assert!(close(j.ci.1, 0.021_521_650_471_435_387, 1e-6), "{j:?}");
    let d = Design {
        alpha: 0.05,
        min_effect: None,
        max_repeats: 4,
        round: 4,
    };
    let j = judge_look(&base, &change, Better::Higher, &d, &[]).unwrap();
    assert_eq!((j.call, j.look), (Call::WithinNoise, Some((1, 1))), "{j:?}");
    assert!(close(j.p, 0.075_231_473_370_584_85, 1e-6), "{j:?}");
    assert!(close(j.ci.0, -0.002_170_591_024_828_288_2, 1e-5), "{j:?}");
    assert!(close(j.ci.1, 0.025_170_591_024_828_198, 1e-6), "{j:?}");
}

#[test]
fn the_repeated_ci_is_at_the_looks_nominal_level() {
    // Two looks (3 and 6 of 6): look 1's boundary 2.771808 (see sequential), so the
    // interval is d ± t.isf(norm.sf(2.771808), 2)·se at the look's df min(3, 3) − 1 = 2
    // (scipy): (-10.389957634519039, 11.389957634519039).
    let d = Design {
        alpha: 0.05,
        min_effect: None,
        max_repeats: 6,
        round: 3,
    };
    let j = judge_look(&[1.0, 2.0, 3.0], &[1.5, 2.5, 3.5], Better::Higher, &d, &[]).unwrap();
    assert_eq!((j.call, j.look), (Call::Continue, Some((1, 2))));
    assert!(close(j.ci.0, -10.389_957_634_519_039, 1e-4), "{j:?}");
    assert!(close(j.ci.1, 11.389_957_634_519_039, 1e-4), "{j:?}");
    // scipy: 2·t.sf(t, 2), t of ttest_ind([1.5, 2.5, 3.5], [1, 2, 3], equal_var=False)
    // (whose Welch p, at df 4, is 0.5733922538253555).
    assert!(close(j.p, 0.602_640_292_880_486_9, 1e-5), "{j:?}");
}

#[test]
fn the_last_look_settles_or_says_within_the_noise() {
    let base: Vec<f64> = (0..15)
        .map(|i| 0.90 + 0.001 * ((i * 7) % 10) as f64)
        .collect();
    let change: Vec<f64> = (0..15)
        .map(|i| 0.90 + 0.001 * ((i * 3) % 10) as f64)
        .collect();
    let earlier = [(3, 3), (6, 6), (9, 9), (12, 12)];
    let j = judge_look(&base, &change, Better::Higher, &DESIGN, &earlier).unwrap();
    assert_eq!((j.call, j.look), (Call::WithinNoise, Some((5, 5))));
    // With a min_effect the same runs are equivalent.
    let d = Design {
        min_effect: Some(0.003),
        ..DESIGN
    };
    let j = judge_look(&base, &change, Better::Higher, &d, &earlier).unwrap();
    assert_eq!(j.call, Call::Equivalent, "{j:?}");
    // A baseline with more runs than the budget: the change's side decides the fraction.
    let long: Vec<f64> = base.iter().chain(&base).copied().collect();
    let j = judge_look(
        &long,
        &change[..9],
        Better::Higher,
        &DESIGN,
        &[(30, 3), (30, 6)],
    )
    .unwrap();
    assert_eq!(
        (j.call, j.look, j.n),
        (Call::Continue, Some((3, 5)), (30, 9))
    );
}

#[test]
fn looks_without_new_information_are_no_looks() {
    let (b, c) = (&FIVE[..], &[0.93, 0.925, 0.94, 0.92, 0.935][..]);
    // (3, 3) twice and a look at the current sizes count once each; more looks than
    // planned are counted as taken.
    let j = judge_look(b, c, Better::Higher, &DESIGN, &[(3, 3), (3, 3), (5, 5)]).unwrap();
    assert_eq!(j.look, Some((2, 5)));
    let d = Design { round: 5, ..DESIGN };
    let j = judge_look(b, c, Better::Higher, &d, &[(2, 2), (3, 3), (4, 4)]).unwrap();
    assert_eq!(j.look, Some((4, 4)), "{j:?}");
    let bad = Design {
        alpha: 1.5,
        ..DESIGN
    };
    assert!(judge_look(b, c, Better::Higher, &bad, &[]).is_none());
}

#[test]
fn calls_read_as_the_spec_says() {
    let words: Vec<String> = [
        Call::Better,
        Call::Worse,
        Call::Equivalent,
        Call::WithinNoise,
        Call::Continue,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        words,
        [
            "better",
            "worse",
            "equivalent",
            "within the noise",
            "continue"
        ]
    );
    assert_eq!(
        serde_json::to_string(&Call::WithinNoise).unwrap(),
        "\"within_noise\""
    );
}
