//! The simulation that proves the shipped verdict design (issue 21, item 5): Monte Carlo
//! of `stats::judge_look` as a watch runs it — rounds of 3 runs a side, a look after each,
//! up to max_repeats — printing Markdown tables with ±1.96·SE error bars.
//!
//! `scripts/simulate [--quick] [--reps N] [--seed S]`: 50,000 comparisons a cell (about 15 s
//! on one core of the 2-core CI machine), 2,000 with --quick (under a second). Seeded and
//! deterministic: the same arguments print the same tables.

use std::time::Instant;

use pushwake::config::Better;
use pushwake::stats::{Call, Design, Summary, judge_look, welch};

/// The level every design here is run at.
const ALPHA: f64 = 0.05;
/// Runs a side a round adds, and the first look's size (n0).
const ROUND: usize = 3;
/// The numbers of looks simulated: max_repeats = ROUND × looks.
const LOOKS: [usize; 3] = [2, 3, 5];

/// The data of one side: a draw from a distribution.
#[derive(Clone, Copy)]
enum Data {
    Normal,
    StudentT3,
    LogNormal,
    /// Normal with σ = 2 (the baseline keeps σ = 1).
    Wide,
}

impl Data {
    fn draw(self, rng: &mut Rng) -> f64 {
        match self {
            Data::Normal => rng.normal(),
            Data::StudentT3 => {
                let chi2: f64 = (0..3).map(|_| rng.normal().powi(2)).sum();
                rng.normal() / (chi2 / 3.0).sqrt()
            }
            Data::LogNormal => rng.normal().exp(),
            Data::Wide => 2.0 * rng.normal(),
        }
    }
}

/// A tiny deterministic generator: fastrand's wyrand, with normals by Box–Muller.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }

    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.0.f64(); // (0, 1]: ln never sees 0
        let v = self.0.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// What one simulated comparison ended with.
struct Ending {
    call: Call,
    /// Runs a side when the design stopped.
    runs: usize,
    /// Whether a test at p < α after every round would have called it, at any look.
    naive: bool,
}

/// One comparison under the design of `looks` looks: baseline from `base`, change from
/// `change` shifted by `delta`.
fn one(
    rng: &mut Rng,
    looks: usize,
    base: Data,
    change: Data,
    delta: f64,
    min_effect: Option<f64>,
) -> Ending {
    let design = Design {
        alpha: ALPHA,
        min_effect,
        max_repeats: ROUND * looks,
        round: ROUND,
    };
    let n = ROUND * looks;
    let b: Vec<f64> = (0..n).map(|_| base.draw(rng)).collect();
    let c: Vec<f64> = (0..n).map(|_| change.draw(rng) + delta).collect();
    let mut ending = None;
    let mut naive = false;
    let mut earlier = Vec::with_capacity(looks);
    for k in 1..=looks {
        let m = ROUND * k;
        let (bs, cs) = (&b[..m], &c[..m]);
        naive |= fixed_p(bs, cs) < ALPHA;
        if ending.is_none() {
            let j = judge_look(bs, cs, Better::Higher, &design, &earlier).expect("judged");
            if j.call != Call::Continue {
                ending = Some((j.call, m));
            }
            earlier.push((m, m));
        }
    }
    let (call, runs) = ending.expect("the last look settles");
    Ending { call, runs, naive }
}

/// The fixed-n Welch p-value, the test `judge` calls beyond the noise below α.
fn fixed_p(b: &[f64], c: &[f64]) -> f64 {
    welch(&Summary::of(c).unwrap(), &Summary::of(b).unwrap()).map_or(1.0, |w| w.p)
}

/// A proportion with its Monte-Carlo error bar: "4.87 ± 0.30%".
fn pct(hits: usize, reps: usize) -> String {
    let p = hits as f64 / reps as f64;
    let half = 1.96 * (p * (1.0 - p) / reps as f64).sqrt();
    format!("{:.2} ± {:.2}%", 100.0 * p, 100.0 * half)
}

struct Tally {
    better: usize,
    worse: usize,
    equivalent: usize,
    naive: usize,
    runs: usize,
}

fn tally(
    reps: usize,
    seed: u64,
    looks: usize,
    base: Data,
    change: Data,
    delta: f64,
    min_effect: Option<f64>,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut t = Tally {
        better: 0,
        worse: 0,
        equivalent: 0,
        naive: 0,
        runs: 0,
    };
    for _ in 0..reps {
        let e = one(&mut rng, looks, base, change, delta, min_effect);
        match e.call {
            Call::Better => t.better += 1,
            Call::Worse => t.worse += 1,
            Call::Equivalent => t.equivalent += 1,
            _ => {}
        }
        t.naive += usize::from(e.naive);
        t.runs += e.runs;
    }
    t
}

/// The power of a fixed-n Welch test with `n` a side at difference `delta` (σ = 1).
fn fixed_power(reps: usize, seed: u64, n: usize, delta: f64) -> f64 {
    let mut rng = Rng::new(seed);
    let hits = (0..reps)
        .filter(|_| {
            let b: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let c: Vec<f64> = (0..n).map(|_| rng.normal() + delta).collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            fixed_p(&b, &c) < ALPHA && mean(&c) > mean(&b)
        })
        .count();
    hits as f64 / reps as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{flag} wants a number"))
            })
    };
    let quick = args.iter().any(|a| a == "--quick");
    let reps = value("--reps").unwrap_or(if quick { 2_000 } else { 50_000 }) as usize;
    let seed = value("--seed").unwrap_or(21);
    let started = Instant::now();
    let mut cell = 0u64;
    let mut next_seed = || {
        cell += 1;
        seed.wrapping_mul(1_000_003).wrapping_add(cell)
    };

    println!(
        "Design: alpha = {ALPHA}, rounds of {ROUND} runs a side (n0 = {ROUND}), a look after each, \
         max_repeats = {ROUND} × looks; Lan–DeMets O'Brien–Fleming boundaries. {reps} \
         simulated comparisons a cell, seed {seed}; ± is 1.96 standard errors.\n"
    );
    println!("False positives in A/A (better or worse when nothing changed; target ≤ 5.0%):\n");
    println!("| data | looks | max_repeats | sequential design | naive: p < α at any look |");
    println!("|---|---|---|---|---|");
    let data = [
        ("normal", Data::Normal, Data::Normal),
        ("Student-t(3)", Data::StudentT3, Data::StudentT3),
        ("lognormal", Data::LogNormal, Data::LogNormal),
        ("unequal variance (σ 1 vs 2)", Data::Normal, Data::Wide),
    ];
    for (name, base, change) in data {
        for looks in LOOKS {
            let t = tally(reps, next_seed(), looks, base, change, 0.0, None);
            println!(
                "| {name} | {looks} | {} | {} | {} |",
                ROUND * looks,
                pct(t.better + t.worse, reps),
                pct(t.naive, reps)
            );
        }
    }

    println!("\nPower (called better) and runs, normal data with σ = 1:\n");
    println!(
        "| true difference | looks | max_repeats | power | average runs a side | fixed n a side for the same power | runs saved |"
    );
    println!("|---|---|---|---|---|---|---|");
    for delta in [1.0, 1.5] {
        for looks in LOOKS {
            let t = tally(
                reps,
                next_seed(),
                looks,
                Data::Normal,
                Data::Normal,
                delta,
                None,
            );
            let power = t.better as f64 / reps as f64;
            let average = t.runs as f64 / reps as f64;
            let fixed_seed = next_seed();
            let fixed = (2..=200)
                .find(|&n| fixed_power(reps, fixed_seed, n, delta) >= power)
                .expect("a fixed n reaches the power");
            println!(
                "| {delta}σ | {looks} | {} | {} | {average:.2} | {fixed} | {:.0}% |",
                ROUND * looks,
                pct(t.better, reps),
                100.0 * (1.0 - average / fixed as f64)
            );
        }
    }

    println!("\nEquivalence when nothing changed, min_effect = 2σ, normal data:\n");
    println!("| looks | max_repeats | equivalent | better or worse | average runs a side |");
    println!("|---|---|---|---|---|");
    for looks in LOOKS {
        let t = tally(
            reps,
            next_seed(),
            looks,
            Data::Normal,
            Data::Normal,
            0.0,
            Some(2.0),
        );
        println!(
            "| {looks} | {} | {} | {} | {:.2} |",
            ROUND * looks,
            pct(t.equivalent, reps),
            pct(t.better + t.worse, reps),
            t.runs as f64 / reps as f64
        );
    }
    eprintln!("simulated in {:.1}s", started.elapsed().as_secs_f64());
}
