//! The comment of `scripts/screenshot`'s docs/pull-request-comment.png: the body pushwake
//! writes on a pull request (`report::comment::body`, the real words and the real
//! verdict), for a realistic watch. Eight commits of `main` ran before; the ninth, the pull
//! request's, ran 5 repeats (3 on the pool, 2 launched on spot) and is better beyond the
//! noise. Two metrics, the cost at us-east-1's prices. Deterministic: the same body every
//! time.
//!
//! `cargo run --example pr_comment` prints the body, Markdown as GitHub receives it.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use pushwake::config::{Env, Settings};
use pushwake::cost::Span;
use pushwake::ec2::Market;
use pushwake::placement::Place;
use pushwake::report::comment;
use pushwake::state::{Part, Run};

mod fixture;
use fixture::{Noise, round, sha};

/// The watch's commits: title, and against the commit before, accuracy's change and loss's.
/// The last is the pull request's.
const COMMITS: &[(&str, f64, f64)] = &[
    ("Baseline: ResNet-50, cosine schedule", 0.0, 0.0),
    ("Warm up the learning rate for 5 epochs", 0.011, -0.019),
    ("Label smoothing 0.1", 0.001, 0.004),
    ("Clip gradients at 1.0", 0.0005, -0.001),
    ("Move augmentation to the GPU", 0.0, 0.0),
    ("Drop the last partial batch & reshuffle", -0.010, 0.017),
    ("Revert \"drop the last partial batch\"", 0.010, -0.017),
    ("Mixed precision for the forward pass", -0.001, 0.002),
    ("Try AdamW with weight decay 0.05", 0.013, -0.021),
];

const REPEATS: u32 = 5;

/// The pool's machines; the other repeats are launched.
const POOL: [&str; 3] = [
    "i-0123456789abcdef0",
    "i-0123456789abcdef1",
    "i-0123456789abcdef2",
];

/// USD an hour for a g5.xlarge in us-east-1: on demand (the pool), and a spot price.
const ON_DEMAND: f64 = 1.006;
const SPOT: f64 = 0.4213;

fn main() -> anyhow::Result<()> {
    let path = Path::new("pushwake.toml");
    let settings = Settings::from_toml(path, &config(), &Env::default())?;
    let watch = &settings.watches[0];
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let start = DateTime::parse_from_rfc3339("2026-10-12T08:00:00Z")?.with_timezone(&Utc);
    let (mut acc, mut loss) = (0.912, 0.324);
    let mut runs = Vec::new();
    for (i, &(title, d_acc, d_loss)) in COMMITS.iter().enumerate() {
        (acc, loss) = (acc + d_acc, loss + d_loss);
        let at = start + Duration::hours(26 * i as i64);
        let mut run = Run::open(&sha(0, i), title, at);
        run.repeats = REPEATS;
        run.instance_type = Some("g5.xlarge".into());
        for repeat in 1..=REPEATS {
            machine(&mut run, i, repeat, at, &mut noise);
            let mut put = |metric: &str, v: f64| {
                run.values
                    .entry(metric.into())
                    .or_default()
                    .insert(repeat, v);
            };
            put("accuracy", round(acc + 0.0025 * noise.normal(), 4));
            put("loss", round(loss + 0.004 * noise.normal(), 4));
        }
        run.completed_at = Some(at + Duration::hours(3));
        runs.push(run);
    }
    print!("{}", comment::body(watch, &runs, runs.len() - 1));
    Ok(())
}

/// The machine of `repeat` in the `i`th run: started, placed, its time priced.
fn machine(run: &mut Run, i: usize, repeat: u32, at: DateTime<Utc>, noise: &mut Noise) {
    let pool = POOL.get(repeat as usize - 1);
    let id = match pool {
        Some(id) => id.to_string(),
        None => format!(
            "i-0{:016x}",
            0x5eed_0000 + 16 * i as u64 + u64::from(repeat)
        ),
    };
    let place = Place {
        launched: pool.is_none(),
        instance_type: Some("g5.xlarge".into()),
        zone: Some(
            if pool.is_some() {
                "us-east-1a"
            } else {
                "us-east-1b"
            }
            .into(),
        ),
        market: pool.is_none().then_some(Market::Spot),
        ended: pool.is_none(),
    };
    let hours = 2.6 + 0.15 * noise.normal();
    run.spans.push(Span {
        instance: id.clone(),
        from: at,
        to: Some(at + Duration::seconds((hours * 3600.0) as i64)),
        instance_type: place.instance_type.clone(),
        price: Some(if pool.is_some() { ON_DEMAND } else { SPOT }),
        unpriced: None,
    });
    run.placed.insert(id.clone(), place);
    run.instances.insert(id, Part::Started { at, repeat });
}

fn config() -> String {
    format!(
        "state_dir = \"/var/lib/pushwake\"\n\n\
         [github]\npull_request_comment = true\n\n\
         [aws]\nregion = \"us-east-1\"\n\n\
         [[watch]]\nrepo = \"octo/trainer\"\nbranch = \"main\"\nrepeats = {REPEATS}\n\
         instances = {POOL:?}\n\
         launch = {{ template = \"lt-0123456789abcdef0\", subnets = [\"subnet-0123456789abcdef0\"], \
         market = \"spot\" }}\n\
         results = {{ metrics = [\"accuracy\", \"loss\"], better = {{ loss = \"lower\" }}, \
         primary = \"accuracy\", min_effect = 0.005 }}\n"
    )
}
