//! A run as a commit status: what GitHub shows beside the commit and on its pull requests.

use crate::config::Watch;
use crate::github::{CommitStatus, DESCRIPTION_MAX};
use crate::judgement;
use crate::results::reported;
use crate::state::{Kind, Run};
use crate::stats::{Call, Summary};

use super::short;

/// The status of `runs[index]` under `context`: `pending` while it starts and reports,
/// then `success` (better, or within the noise; or, without results, every machine
/// started), `failure` (worse beyond the noise) or `error` (partial, superseded, nothing
/// started).
pub fn commit_status(watch: &Watch, runs: &[Run], index: usize, context: &str) -> CommitStatus {
    let run = &runs[index];
    let machines = run
        .instances
        .values()
        .filter(|p| p.kind() != Kind::Skipped)
        .count();
    let started = run.started().count();
    let failed = run
        .instances
        .values()
        .filter(|p| p.kind() == Kind::Failed)
        .count();
    let starting = || {
        let mut text = format!("{started} of {machines} machines started");
        if failed > 0 {
            text.push_str(&format!("; {failed} failed, retrying"));
        }
        text
    };
    let (state, description) = match (&run.superseded_by, &watch.results) {
        (Some(newer), _) => (
            "error",
            format!("superseded by {}; no verdict", short(newer)),
        ),
        (None, _) if run.completed_at.is_some() && started == 0 => {
            ("error", "no machine started".to_owned())
        }
        (None, None) if started == machines && machines > 0 => ("success", starting()),
        (None, None) => ("pending", starting()),
        (None, Some(_)) if started < machines && run.completed_at.is_none() => {
            ("pending", starting())
        }
        (None, Some(spec)) => {
            let (reported, _) = reported(run, spec);
            let metric = &spec.primary;
            let now = Summary::of(&run.values_of(metric));
            match (run.completed_at, now) {
                (None, _) if reported == 0 => ("pending", starting()),
                (None, _) if !run.looks.is_empty() => (
                    "pending",
                    format!("look {} not settled; another round", run.looks.len()),
                ),
                (None, _) => ("pending", format!("{reported} of {started} reported")),
                (Some(_), None) => ("error", format!("no {metric} reported")),
                (Some(_), Some(now)) => {
                    let mean = format!("{metric} {:.4} ± {:.4}", now.mean, now.std);
                    let judged = judgement::judge(spec, runs, index);
                    match judged.primary() {
                        _ if run.partial => (
                            "error",
                            format!("partial: {reported} of {started} reported; {mean}"),
                        ),
                        Some(j) => (
                            match j.call {
                                Call::Worse => "failure",
                                _ => "success",
                            },
                            format!("{mean}: {}", short_words(j)),
                        ),
                        None if judged.other_hardware => (
                            "success",
                            format!("{mean} (n={}), not compared: other hardware", now.n),
                        ),
                        None => (
                            "success",
                            format!("{mean} (n={}), nothing to compare", now.n),
                        ),
                    }
                }
            }
        }
    };
    // A finished run's cost, once every machine's time on it ended and had a price, when
    // it fits: the verdict's words come first.
    let description = match run.completed_at {
        Some(at) if !run.spans.is_empty() && !run.counting() => {
            let total = crate::cost::Total::of(&run.spans, at);
            let priced = format!("{description}; ${:.2}", total.cost);
            match total.unknown.is_empty() && priced.chars().count() <= DESCRIPTION_MAX {
                true => priced,
                false => description,
            }
        }
        _ => description,
    };
    CommitStatus {
        state: state.to_owned(),
        description: fit(&description, DESCRIPTION_MAX),
        context: context.to_owned(),
    }
}

/// A judgement in the few words a commit status holds: "better, +0.0100 [+0.0040,
/// +0.0160], look 2 of 4".
fn short_words(j: &crate::stats::Judgement) -> String {
    let (low, high) = j.ci;
    let mut text = format!(
        "{}, {:+.4} [{low:+.4}, {high:+.4}]",
        super::verdict::call_words(j.call),
        j.difference
    );
    if let Some((look, of)) = j.look {
        text.push_str(&format!(", look {look} of {of}"));
    }
    text
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Results;
    use crate::state::Part;

    fn watch(results: bool) -> Watch {
        let mut w = Watch::example("main", &["i-1", "i-2"]);
        if results {
            w.results = Some(Results::example(&["accuracy"]));
        }
        w
    }

    fn run(commit: &str, started: usize, values: &[f64]) -> Run {
        let now = chrono::Utc::now();
        let mut run = Run::open(commit, "", now);
        for (n, id) in ["i-1", "i-2"].iter().enumerate() {
            let part = if n < started {
                let repeat = n as u32 + 1;
                Part::Started { at: now, repeat }
            } else {
                Part::Waiting { why: "busy".into() }
            };
            run.instances.insert((*id).into(), part);
        }
        for (repeat, v) in (1..).zip(values) {
            run.values
                .entry("accuracy".into())
                .or_default()
                .insert(repeat, *v);
        }
        run
    }

    fn status(w: &Watch, runs: &[Run]) -> (String, String) {
        let s = commit_status(w, runs, runs.len() - 1, "pushwake");
        (s.state, s.description)
    }

    #[test]
    fn a_run_is_pending_while_it_starts_and_reports() {
        let w = watch(true);
        let one = [run("a1", 1, &[])];
        assert_eq!(
            status(&w, &one),
            ("pending".into(), "1 of 2 machines started".into())
        );
        let both = [run("a1", 2, &[0.9])];
        assert_eq!(
            status(&w, &both),
            ("pending".into(), "1 of 2 reported".into())
        );
    }

    #[test]
    fn a_completed_run_says_its_verdict() {
        let w = watch(true);
        let mut old = run("a1", 2, &[0.90, 0.91]);
        old.completed_at = Some(chrono::Utc::now());
        let mut worse = run("b2", 2, &[0.80, 0.81]);
        worse.completed_at = Some(chrono::Utc::now());
        let (state, text) = status(&w, &[old.clone(), worse]);
        assert_eq!(state, "failure");
        assert!(
            text.starts_with("accuracy 0.8050 ± 0.0071: worse, -0.1000 [-0.1304, -0.0696]"),
            "{text}"
        );
        let mut same = run("c3", 2, &[0.91, 0.90]);
        same.completed_at = Some(chrono::Utc::now());
        let (state, text) = status(&w, &[old, same]);
        assert_eq!(state, "success");
        assert!(text.len() <= DESCRIPTION_MAX * 3 && text.chars().count() <= 140);
        assert!(text.contains("within the noise"), "{text}");
    }

    #[test]
    fn a_finished_runs_cost_follows_its_verdict_when_it_fits_and_is_known() {
        let w = watch(false);
        let mut done = run("a1", 2, &[]);
        let end = chrono::Utc::now();
        done.completed_at = Some(end);
        let span = |id: &str, price: Option<f64>| crate::cost::Span {
            instance: id.into(),
            from: end - chrono::Duration::hours(1),
            to: Some(end),
            instance_type: Some("t3.micro".into()),
            price,
            unpriced: price
                .is_none()
                .then(|| "no price for t3.micro in us-east-1".into()),
        };
        done.spans = vec![span("i-1", Some(1.0)), span("i-2", Some(1.0))];
        assert_eq!(
            status(&w, std::slice::from_ref(&done)).1,
            "2 of 2 machines started; $2.00"
        );
        // A cost in part unknown is not said as a figure, nor one still counting; an open
        // run has none yet.
        done.spans[1] = span("i-2", None);
        assert_eq!(
            status(&w, std::slice::from_ref(&done)).1,
            "2 of 2 machines started"
        );
        done.spans[1] = span("i-2", Some(1.0));
        done.spans[1].to = None;
        assert_eq!(
            status(&w, std::slice::from_ref(&done)).1,
            "2 of 2 machines started"
        );
        done.completed_at = None;
        done.spans[1] = span("i-2", Some(1.0));
        assert_eq!(status(&w, &[done]).1, "2 of 2 machines started");
    }

    #[test]
    fn partial_superseded_and_unstarted_runs_are_errors() {
        let w = watch(true);
        let mut partial = run("a1", 2, &[0.9]);
        partial.completed_at = Some(chrono::Utc::now());
        partial.partial = true;
        assert_eq!(status(&w, &[partial]).0, "error");
        let mut superseded = run("a1", 1, &[]);
        superseded.superseded_by = Some("b".repeat(40));
        assert_eq!(
            status(&w, &[superseded]),
            ("error".into(), "superseded by bbbbbbb; no verdict".into())
        );
    }

    #[test]
    fn without_results_started_machines_are_a_success() {
        let w = watch(false);
        assert_eq!(
            status(&w, &[run("a1", 2, &[])]),
            ("success".into(), "2 of 2 machines started".into())
        );
        assert_eq!(status(&w, &[run("a1", 1, &[])]).0, "pending");
    }

    #[test]
    fn long_descriptions_are_cut_to_what_github_takes() {
        let long = "x".repeat(200);
        let cut = fit(&long, DESCRIPTION_MAX);
        assert_eq!(cut.chars().count(), DESCRIPTION_MAX);
        assert!(cut.ends_with('…'));
    }
}
