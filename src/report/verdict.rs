//! The verdict on a completed run: per metric the spread, and against the previous commit
//! the difference and whether it is beyond the noise.

use std::fmt::Write;

use crate::config::{Results, Watch};
use crate::results::{previous, reported};
use crate::slack::escape;
use crate::state::Run;
use crate::stats::{self, Outcome, Summary, Verdict};

use super::short;

/// The Slack message for the completed run `runs[index]`, judged by `spec` against the
/// completed run of the commit before.
pub fn verdict(watch: &Watch, spec: &Results, runs: &[Run], index: usize) -> String {
    let run = &runs[index];
    let before = previous(runs, index);
    let mut text = format!(
        ":bar_chart: *{}* `{}` results for `{}`",
        escape(&watch.repo.to_string()),
        escape(&watch.branch),
        short(&run.commit)
    );
    let types = run.types();
    if !types.is_empty() {
        let _ = write!(text, " on {}", join(&types));
    }
    if run.partial {
        let (full, of) = reported(run, spec);
        let _ = write!(text, " (partial: {full} of {of} runs reported everything)");
    }
    // Runs on different hardware are not compared: the difference could be the machine's.
    let before_types = before.map(Run::types).unwrap_or_default();
    let other_hardware = !types.is_empty() && !before_types.is_empty() && before_types != types;
    for metric in &spec.metrics {
        let Some(now) = Summary::of(&run.values_of(metric)) else {
            let _ = write!(text, "\n• {}: no values", escape(metric));
            continue;
        };
        let _ = write!(text, "\n• {}: {}", escape(metric), spread(&now));
        let Some((old, prev)) = before.and_then(|b| Some((Summary::of(&b.values_of(metric))?, b)))
        else {
            continue;
        };
        if other_hardware {
            let _ = write!(
                text,
                "; vs `{}`: not compared, it ran on {}",
                short(&prev.commit),
                join(&before_types)
            );
            continue;
        }
        let diff = now.mean - old.mean;
        let _ = write!(
            text,
            "; vs `{}` ({:.4}): {diff:+.4}",
            short(&prev.commit),
            old.mean
        );
        if let Some(v) = stats::verdict(&now, &old, spec.better(metric)) {
            let _ = write!(text, ", {}", words(&v));
        }
    }
    text
}

/// Instance types in words: "g5.xlarge", "g5.xlarge and g6.xlarge".
fn join(types: &std::collections::BTreeSet<String>) -> String {
    let all: Vec<&str> = types.iter().map(String::as_str).collect();
    match all.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => all.join(""),
    }
}

/// A verdict in words: "better beyond the noise (p = 0.004)".
pub fn words(v: &Verdict) -> String {
    let p = format_p(v.welch.p);
    match v.outcome {
        Outcome::Better => format!("better beyond the noise ({p})"),
        Outcome::Worse => format!("worse beyond the noise ({p})"),
        Outcome::WithinNoise => match v.more_runs {
            Some(more) => format!(
                "within the noise ({p}); about {more} more run{} a side would tell a difference \
                 this size",
                if more == 1 { "" } else { "s" }
            ),
            None => format!("within the noise ({p})"),
        },
    }
}

/// "p = 0.01", with the precision a p-value deserves; "p < 0.001" below that.
fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else if p < 0.01 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

/// A summary in one phrase: "n=3, 0.9100 ± 0.0100 (0.9000–0.9200)".
fn spread(s: &Summary) -> String {
    format!(
        "n={}, {:.4} ± {:.4} ({:.4}–{:.4})",
        s.n, s.mean, s.std, s.min, s.max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_are_shown_with_the_precision_they_deserve() {
        assert_eq!(format_p(0.0004), "p < 0.001");
        assert_eq!(format_p(0.0042), "p = 0.004");
        assert_eq!(format_p(0.2134), "p = 0.21");
    }

    #[test]
    fn within_the_noise_says_what_would_settle_it() {
        let old = Summary::of(&[0.90, 0.91, 0.92]).unwrap();
        let near = Summary::of(&[0.905, 0.915, 0.925]).unwrap();
        let v = stats::verdict(&near, &old, crate::config::Better::Higher).unwrap();
        let text = words(&v);
        let more = v.more_runs.unwrap();
        assert!(text.starts_with("within the noise (p = 0.5"), "{text}");
        assert!(
            text.ends_with(&format!(
                "; about {more} more runs a side would tell a difference this size"
            )),
            "{text}"
        );
    }

    fn spec() -> Results {
        Results {
            metrics: vec!["accuracy".into()],
            better: Default::default(),
            timeout: std::time::Duration::from_secs(3600),
            stop_when_reported: false,
        }
    }

    fn completed(commit: &str, values: &[(&str, f64)]) -> Run {
        let now = chrono::Utc::now();
        let mut run = Run::open(commit, "", now);
        for (repeat, (id, v)) in (1..).zip(values) {
            run.instances.insert(
                (*id).into(),
                crate::state::Part::Started { at: now, repeat },
            );
            run.values
                .entry("accuracy".into())
                .or_default()
                .insert(repeat, *v);
        }
        run.completed_at = Some(now);
        run
    }

    #[test]
    fn a_verdict_names_the_spread_and_the_difference_to_the_commit_before() {
        let watch = Watch::example("main", &[]);
        let runs = [
            completed("aaaaaaaaaa", &[("i-1", 0.5)]),
            completed("bbbbbbbbbb", &[("i-1", 0.75)]),
        ];
        assert_eq!(
            verdict(&watch, &spec(), &runs, 1),
            ":bar_chart: *octo/trainer* `main` results for `bbbbbbb`\n\
             • accuracy: n=1, 0.7500 ± 0.0000 (0.7500–0.7500); vs `aaaaaaa` (0.5000): +0.2500"
        );
    }

    #[test]
    fn a_verdict_names_the_type_and_compares_only_on_the_same_hardware() {
        let watch = Watch::example("main", &[]);
        let on = |mut run: Run, t: &str| {
            run.instance_type = Some(t.to_owned());
            run
        };
        let values = [("i-1", 0.5), ("i-2", 0.6)];
        let runs = [
            on(completed("aaaaaaaaaa", &values), "g5.xlarge"),
            on(completed("bbbbbbbbbb", &values), "g6.xlarge"),
        ];
        let text = verdict(&watch, &spec(), &runs, 1);
        assert!(
            text.contains("results for `bbbbbbb` on g6.xlarge"),
            "{text}"
        );
        assert!(
            text.ends_with("; vs `aaaaaaa`: not compared, it ran on g5.xlarge"),
            "{text}"
        );
        let same = [runs[0].clone(), on(runs[1].clone(), "g5.xlarge")];
        let text = verdict(&watch, &spec(), &same, 1);
        assert!(text.contains("vs `aaaaaaa` (0.5500): +0.0000"), "{text}");
    }
}
