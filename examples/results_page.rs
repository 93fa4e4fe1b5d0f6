//! The fixture of `scripts/screenshot`: a realistic results history, written as a config
//! and a state directory, so that `pushwake results --html` (the binary, its real
//! verdicts) makes the page the docs show. Two watches, 8 and 5 commits, 3 metrics,
//! 5 repeats a commit, some better, worse, equivalent and within the noise; the newest
//! commit still running. Deterministic: the same files every time.
//!
//! `cargo run --example results_page -- DIR` writes DIR/config.toml and DIR/state/.

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use pushwake::config::FirstRun;
use pushwake::cost::Span;
use pushwake::state::{self, Dir, Run, WatchState};

mod fixture;
use fixture::{Noise, round, sha};

/// A watch of the fixture: its commits as (title, and against the commit before: accuracy's
/// change, loss's, throughput's; complete).
struct Fixture {
    branch: &'static str,
    commits: &'static [(&'static str, f64, f64, f64, bool)],
}

const MAIN: Fixture = Fixture {
    branch: "main",
    commits: &[
        ("Baseline: ResNet-50, cosine schedule", 0.0, 0.0, 0.0, true),
        (
            "Warm up the learning rate for 5 epochs",
            0.012,
            -0.020,
            0.0,
            true,
        ),
        ("Label smoothing 0.1", 0.001, 0.004, 0.0, true),
        (
            "Clip gradients at 1.0 (was <none>)",
            0.0005,
            -0.001,
            0.0,
            true,
        ),
        ("Move augmentation to the GPU", 0.0, 0.0, 180.0, true),
        (
            "Drop the last partial batch & reshuffle",
            -0.011,
            0.018,
            0.0,
            true,
        ),
        (
            "Revert \"drop the last partial batch\"",
            0.011,
            -0.018,
            0.0,
            true,
        ),
        (
            "Try AdamW with weight decay 0.05",
            0.004,
            -0.006,
            -20.0,
            false,
        ),
    ],
};

const FEATURE: Fixture = Fixture {
    branch: "feature/mixed-precision",
    commits: &[
        ("Branch off main at the warm-up", 0.012, -0.020, 0.0, true),
        (
            "bf16 autocast for the forward pass",
            0.0,
            0.002,
            420.0,
            true,
        ),
        (
            "Loss scaling for fp16 on older GPUs",
            -0.0004,
            0.0,
            10.0,
            true,
        ),
        ("Keep batch norm in fp32", 0.002, -0.003, -15.0, true),
        ("Fused optimizer step", 0.0, 0.0, 150.0, true),
    ],
};

const REPEATS: u32 = 5;

fn main() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: results_page DIR"))?
        .into();
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir)?;
    std::fs::write(dir.join("config.toml"), config(&state_dir))?;
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let start = DateTime::parse_from_rfc3339("2026-10-12T08:00:00Z")?.with_timezone(&Utc);
    let mut watches = Vec::new();
    for (w, fixture) in [MAIN, FEATURE].iter().enumerate() {
        let mut ws = WatchState {
            repo: "octo/trainer".into(),
            branch: fixture.branch.into(),
            last_sha: None,
            etag: None,
            last_checked: Some(start + Duration::days(14)),
            last_polled: Some(start + Duration::days(14)),
            last_error: None,
            runs: Vec::new(),
            duties: Vec::new(),
            refused: Vec::new(),
            spend: Default::default(),
        };
        let (mut acc, mut loss, mut speed) = (0.912, 0.324, 1210.0);
        for (i, &(title, d_acc, d_loss, d_speed, complete)) in fixture.commits.iter().enumerate() {
            (acc, loss, speed) = (acc + d_acc, loss + d_loss, speed + d_speed);
            let commit = sha(w, i);
            let at = start + Duration::hours(30 * i as i64 + 7 * w as i64);
            let mut run = Run::open(&commit, title, at);
            run.repeats = REPEATS;
            let done = if complete { REPEATS } else { 2 };
            for k in 1..=done {
                let mut put = |metric: &str, v: f64| {
                    run.values.entry(metric.into()).or_default().insert(k, v);
                };
                put("accuracy", round(acc + 0.0025 * noise.normal(), 4));
                put("loss", round(loss + 0.004 * noise.normal(), 4));
                put("samples_per_s", round(speed + 9.0 * noise.normal(), 1));
                let hours = 2.6 + 0.3 * noise.normal();
                run.spans.push(Span {
                    instance: format!("i-0{:016x}", 0xa11ce + u64::from(k)),
                    from: at,
                    to: Some(at + Duration::seconds((hours * 3600.0) as i64)),
                    instance_type: Some("g5.xlarge".into()),
                    price: Some(1.006),
                    unpriced: None,
                });
            }
            if complete {
                run.completed_at = Some(at + Duration::hours(3));
            }
            ws.last_sha = Some(commit);
            ws.runs.push(run);
        }
        watches.push(ws);
    }
    let mut state = state::empty();
    state.watches = watches;
    Dir::new(&state_dir, FirstRun::Baseline).save(&state)?;
    println!("{}", dir.join("config.toml").display());
    Ok(())
}

fn config(state_dir: &std::path::Path) -> String {
    let results = "results = { metrics = [\"accuracy\", \"loss\", \"samples_per_s\"], \
                   better = { loss = \"lower\" }, primary = \"accuracy\", min_effect = 0.005 }";
    format!(
        "state_dir = {state_dir:?}\n\n[github]\napi_url = \"http://127.0.0.1:9\"\n\n\
         [aws]\nregion = \"eu-west-1\"\n\n\
         [[watch]]\nrepo = \"octo/trainer\"\nbranch = \"main\"\n\
         instances = [\"i-0123456789abcdef0\"]\n{results}\n\n\
         [[watch]]\nrepo = \"octo/trainer\"\nbranch = \"feature/mixed-precision\"\n\
         instances = [\"i-0fedcba9876543210\"]\n{results}\n"
    )
}
