//! The verdict on a completed run: per metric the spread, and against the previous commit
//! the difference and whether it is beyond the noise.

use std::fmt::Write;

use crate::config::{Results, Watch};
use crate::judgement;
use crate::results::reported;
use crate::slack::escape;
use crate::state::Run;
use crate::stats::{Call, Judgement, Summary};

use super::short;

/// The Slack message for the completed run `runs[index]`, judged by `spec` against the
/// completed run of the commit before (see [`crate::judgement`]).
pub fn verdict(
    watch: &Watch,
    spec: &Results,
    runs: &[Run],
    index: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let run = &runs[index];
    let judged = judgement::judge(spec, runs, index);
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
    for m in &judged.metrics {
        let name = escape(&m.name);
        let Some(now) = &m.now else {
            let _ = write!(text, "\n• {name}: no values");
            continue;
        };
        let _ = write!(text, "\n• {name}: {}", spread(now));
        let (Some(base), Some(old)) = (judged.baseline, &m.before) else {
            continue;
        };
        if judged.other_hardware {
            let _ = write!(
                text,
                "; vs `{}`: not compared, it ran on {}",
                short(&base.commit),
                join(&base.types())
            );
            continue;
        }
        let _ = write!(
            text,
            "; vs `{}` ({:.4}, n={})",
            short(&base.commit),
            old.mean,
            old.n
        );
        match &m.judgement {
            Some(j) => {
                let _ = write!(text, ": {}", words(j, spec.alpha));
            }
            None => {
                let _ = write!(text, ": {:+.4}, too few runs to judge", now.mean - old.mean);
            }
        }
    }
    if !run.spans.is_empty() {
        let total = crate::cost::Total::of(&run.spans, now);
        let _ = write!(text, "\n• cost: {}", total.words(run.taken().len()));
    }
    text
}

/// The record of a run's verdict on its primary metric, for the state and `results`.
pub fn record(spec: &Results, runs: &[Run], index: usize) -> Option<crate::state::Verdict> {
    let judged = judgement::judge(spec, runs, index);
    let j = judged.primary()?;
    Some(crate::state::Verdict {
        baseline: judged.baseline?.commit.clone(),
        call: call_words(j.call).to_owned(),
        difference: j.difference,
        ci: j.ci,
        p: j.p,
        look: j.look,
    })
}

/// A call in words; a look that would go on, taken as final, is "not settled".
pub fn call_words(call: Call) -> &'static str {
    match call {
        Call::Better => "better",
        Call::Worse => "worse",
        Call::Equivalent => "equivalent",
        Call::WithinNoise => "within the noise",
        Call::Continue => "not settled",
    }
}

/// A judgement in words: "+0.0100 [+0.0040, +0.0160], better beyond the noise (p = 0.0031,
/// look 2 of 4)".
pub fn words(j: &Judgement, alpha: f64) -> String {
    let (low, high) = j.ci;
    let mut text = format!("{:+.4} [{low:+.4}, {high:+.4}], ", j.difference);
    text.push_str(match j.call {
        Call::Better => "better beyond the noise",
        Call::Worse => "worse beyond the noise",
        Call::Equivalent => "equivalent: within the smallest difference that matters",
        Call::WithinNoise => "within the noise",
        Call::Continue => "not settled",
    });
    let mut detail = vec![format_p(j.p, alpha)];
    if let Some((look, of)) = j.look {
        detail.push(format!("look {look} of {of}"));
    }
    let _ = write!(text, " ({})", detail.join(", "));
    if let (Call::WithinNoise, Some(more)) = (j.call, j.more_runs) {
        let _ = write!(
            text,
            "; about {more} more run{} a side would tell a difference this size (80% power)",
            if more == 1 { "" } else { "s" }
        );
    }
    text
}

/// "p = 0.01", with the precision a p-value deserves: four places near `alpha`, where
/// the call turns on it; "p < 0.001" below that.
fn format_p(p: f64, alpha: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else if (alpha / 2.0..=alpha * 2.0).contains(&p) {
        format!("p = {p:.4}")
    } else if p < 0.01 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

/// Instance types in words: "g5.xlarge", "g5.xlarge and g6.xlarge".
fn join(types: &std::collections::BTreeSet<String>) -> String {
    let all: Vec<&str> = types.iter().map(String::as_str).collect();
    match all.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => all.join(""),
    }
}

/// A summary in one phrase: "n=3, 0.9100 ± 0.0100 (0.9000–0.9200)"; one run has no
/// spread to show.
fn spread(s: &Summary) -> String {
    if s.n == 1 {
        return format!("n=1, {:.4}", s.mean);
    }
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
        assert_eq!(format_p(0.0004, 0.05), "p < 0.001");
        assert_eq!(format_p(0.0042, 0.05), "p = 0.004");
        assert_eq!(format_p(0.2134, 0.05), "p = 0.21");
        // Near alpha, where the call turns on it, they are told apart.
        assert_eq!(format_p(0.0497, 0.05), "p = 0.0497");
        assert_eq!(format_p(0.0530, 0.05), "p = 0.0530");
    }

    #[test]
    fn within_the_noise_says_what_would_settle_it_at_a_stated_power() {
        let old = [0.90, 0.91, 0.92];
        let near = [0.905, 0.915, 0.925];
        let j =
            crate::stats::judge(&old, &near, crate::config::Better::Higher, 0.05, None).unwrap();
        let text = words(&j, 0.05);
        assert!(text.starts_with("+0.0050 ["), "{text}");
        assert!(text.contains("], within the noise (p = 0.5"), "{text}");
        if let Some(more) = j.more_runs {
            assert!(
                text.ends_with(&format!(
                    "; about {more} more runs a side would tell a difference this size (80% power)"
                )),
                "{text}"
            );
        }
    }

    fn spec() -> Results {
        Results {
            stop_when_reported: false,
            ..Results::example(&["accuracy"])
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
            verdict(&watch, &spec(), &runs, 1, chrono::Utc::now()),
            ":bar_chart: *octo/trainer* `main` results for `bbbbbbb`\n\
             • accuracy: n=1, 0.7500; vs `aaaaaaa` (0.5000, n=1): +0.2500, too few runs to judge"
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
        let text = verdict(&watch, &spec(), &runs, 1, chrono::Utc::now());
        assert!(
            text.contains("results for `bbbbbbb` on g6.xlarge"),
            "{text}"
        );
        assert!(
            text.ends_with("; vs `aaaaaaa`: not compared, it ran on g5.xlarge"),
            "{text}"
        );
        let same = [runs[0].clone(), on(runs[1].clone(), "g5.xlarge")];
        let text = verdict(&watch, &spec(), &same, 1, chrono::Utc::now());
        assert!(
            text.contains("vs `aaaaaaa` (0.5500, n=2): +0.0000"),
            "{text}"
        );
    }
}
