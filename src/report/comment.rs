//! A run as its pull requests show it (SPEC §13): one comment, edited in place as the run
//! moves, and the same summary as a check run on the commit. Pure: the calls are the
//! pass's, the words are the verdict's (`verdict.rs`) and the Slack thread's (`report.rs`).
//!
//! The body depends only on the state, never on the time it is made, so that an unchanged
//! run makes an unchanged body and is not sent again: the cost counts the machines that
//! are down, and says how many are still up.

use std::fmt::Write;

use crate::config::{Results, Watch};
use crate::github::pulls::{COMMENT_MAX, CheckRun, Output, SUMMARY_MAX};
use crate::judgement;
use crate::results::reported;
use crate::state::Run;
use crate::stats::Summary;

use super::short;
use super::verdict::words;

/// How many of the watch's commits the chart shows, this one included.
pub const CHART_COMMITS: usize = 10;

/// The hidden first line of every comment pushwake makes: which watch it is from.
pub fn marker(watch: &Watch) -> String {
    // A branch may hold `-->`, which would end the comment: `>` is escaped.
    let branch = crate::percent_encode(&watch.branch, b"/");
    format!("<!-- pushwake:{}@{branch} -->", watch.repo)
}

/// The comment on a pull request of `runs[index]`: the marker, then the summary, cut to
/// what GitHub takes.
pub fn body(watch: &Watch, runs: &[Run], index: usize) -> String {
    let text = format!("{}\n{}", marker(watch), summary(watch, runs, index));
    fit(&text, COMMENT_MAX)
}

/// The check run of `runs[index]`, named `name` (the watch's commit status context):
/// queued until a machine started, in progress while it runs, then completed with the
/// verdict's conclusion (better: success, worse: failure, anything else: neutral).
pub fn check(watch: &Watch, runs: &[Run], index: usize, name: &str) -> CheckRun {
    let run = &runs[index];
    let (status, conclusion) = match (run.is_open(), run.started().next().is_some()) {
        (false, _) => {
            let call = run.verdict.as_ref().map(|v| v.call.as_str());
            let conclusion = match call {
                Some("better") => "success",
                Some("worse") => "failure",
                _ => "neutral",
            };
            ("completed", Some(conclusion.to_owned()))
        }
        (true, false) => ("queued", None),
        (true, true) => ("in_progress", None),
    };
    CheckRun {
        name: name.to_owned(),
        head_sha: run.commit.clone(),
        status: status.to_owned(),
        conclusion,
        output: Output {
            title: headline(watch, runs, index),
            summary: fit(&summary(watch, runs, index), SUMMARY_MAX),
        },
    }
}

/// Where the run stands, in one plain line: the check run's title, and the comment's
/// first words.
pub fn headline(watch: &Watch, runs: &[Run], index: usize) -> String {
    let run = &runs[index];
    let started = run.started().count();
    if let Some(newer) = &run.superseded_by {
        return format!("superseded by {}: no verdict", short(newer));
    }
    let Some(spec) = &watch.results else {
        let machines = run.instances.len();
        return match run.is_open() {
            true => format!("running: {started} of {machines} machines started"),
            false => format!("done: {started} of {machines} machines started"),
        };
    };
    if run.is_open() {
        if started == 0 {
            return "waiting to start".to_owned();
        }
        let (all, of) = reported(run, spec);
        return format!("running: {all} of {of} repeats reported");
    }
    let metric = &spec.primary;
    let partial = if run.partial { "partial: " } else { "" };
    let judged = judgement::judge(spec, runs, index);
    let now = judged
        .metrics
        .iter()
        .find(|m| m.primary)
        .and_then(|m| m.now);
    match (judged.primary(), now) {
        (_, None) => format!("{partial}no {metric} reported"),
        (Some(j), Some(_)) => format!("{partial}{metric} {}", words(j, spec.alpha)),
        (None, Some(s)) if judged.other_hardware => format!(
            "{partial}{metric} {:.4} ± {:.4}, not compared: the baseline ran on other hardware",
            s.mean, s.std
        ),
        (None, Some(s)) => format!(
            "{partial}{metric} {:.4} ± {:.4}, nothing to compare with",
            s.mean, s.std
        ),
    }
}

/// The summary of `runs[index]` in GitHub's Markdown: which commit, where it stands, its
/// repeats and where they ran, the results table, the cost, and the chart.
pub fn summary(watch: &Watch, runs: &[Run], index: usize) -> String {
    let run = &runs[index];
    let mut text = format!(
        "### pushwake · {} {} · `{}`\n",
        md(&watch.repo.to_string()),
        md(&watch.branch),
        short(&run.commit)
    );
    if !run.title.is_empty() {
        let _ = writeln!(text, "{}", md(&run.title));
    }
    let _ = writeln!(text, "\n**{}**\n", md(&headline(watch, runs, index)));
    let mut lines = Vec::new();
    if let Some(spec) = &watch.results {
        let (all, of) = reported(run, spec);
        lines.push(format!("Repeats: {all} of {of} reported everything"));
    }
    lines.extend(super::places(run));
    if let Some(why) = &run.over_budget {
        lines.push(format!("Not started: {why}"));
    }
    if !run.spans.is_empty() {
        lines.push(cost(run));
    }
    for line in lines {
        let _ = writeln!(text, "- {}", md(&line));
    }
    if let Some(spec) = &watch.results {
        text.push_str(&table(spec, runs, index));
        if let Some(chart) = chart(spec, runs, index) {
            text.push('\n');
            text.push_str(&chart);
        }
    }
    text
}

/// The cost of the run's machines that are down, in the verdict's words, and how many
/// EC2 has not shown down yet (counted once it does).
fn cost(run: &Run) -> String {
    let ended: Vec<_> = run.spans.iter().filter(|s| s.to.is_some()).collect();
    let up = run.spans.len() - ended.len();
    // Ended spans do not depend on the time they are counted at.
    let total = crate::cost::Total::of(ended, run.opened_at);
    let mut line = format!("Cost: {}", total.words(run.taken().len()));
    if up > 0 {
        let _ = write!(
            line,
            "; {up} machine{} counted once EC2 shows {} down",
            if up == 1 { "" } else { "s" },
            if up == 1 { "it" } else { "them" }
        );
    }
    line
}

/// The results table: per metric n, mean ± std, min–max, and, once the run is over,
/// the difference to its baseline with its interval and the verdict.
fn table(spec: &Results, runs: &[Run], index: usize) -> String {
    let run = &runs[index];
    let judged = judgement::judge(spec, runs, index);
    let against = match judged.baseline {
        Some(b) => format!("vs `{}`", short(&b.commit)),
        None => "vs the commit before".to_owned(),
    };
    let mut text =
        format!("\n| metric | n | mean ± std | min–max | {against} |\n|---|---:|---|---|---|\n");
    for m in &judged.metrics {
        let name = match m.primary {
            true => format!("**{}**", md(&m.name)),
            false => md(&m.name),
        };
        let (n, spread, range) = match &m.now {
            Some(s) => (
                s.n.to_string(),
                format!("{:.4} ± {:.4}", s.mean, s.std),
                format!("{:.4}–{:.4}", s.min, s.max),
            ),
            None => ("0".to_owned(), "–".to_owned(), "–".to_owned()),
        };
        let verdict = match (&m.judgement, &m.before) {
            _ if run.is_open() => "judged when the run is over".to_owned(),
            _ if judged.other_hardware => "not compared: other hardware".to_owned(),
            (Some(j), _) => words(j, spec.alpha),
            (None, Some(_)) if m.now.is_some() => "too few runs to judge".to_owned(),
            _ => "–".to_owned(),
        };
        let _ = writeln!(text, "| {name} | {n} | {spread} | {range} | {verdict} |");
    }
    text
}

/// A chart GitHub draws itself: the primary metric's mean over the watch's last commits
/// that completed, and this one, marked. `xychart-beta` is Mermaid's line and bar chart
/// (since Mermaid 10.5, and still read by 11 and 12); GitHub renders Mermaid blocks in
/// comments. `None` before any commit has a value.
fn chart(spec: &Results, runs: &[Run], index: usize) -> Option<String> {
    let metric = &spec.primary;
    let mut points: Vec<(&str, f64, bool)> = Vec::new();
    for (i, r) in runs[..=index].iter().enumerate() {
        let counted = i == index || (r.completed_at.is_some() && r.superseded_by.is_none());
        let mean = Summary::of(&r.values_of(metric)).map(|s| s.mean);
        let Some(mean) = mean.filter(|m| m.is_finite()).filter(|_| counted) else {
            continue;
        };
        // A commit run again shows once, as it last ran.
        points.retain(|p| p.0 != r.commit);
        points.push((&r.commit, mean, i == index));
    }
    let points = &points[points.len().saturating_sub(CHART_COMMITS)..];
    if points.is_empty() {
        return None;
    }
    let labels: Vec<String> = points
        .iter()
        .map(|(c, _, this)| {
            let c = mermaid_text(short(c));
            match this {
                true => format!("\"{c} (this)\""),
                false => format!("\"{c}\""),
            }
        })
        .collect();
    let values: Vec<String> = points.iter().map(|p| plain(p.1)).collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    // A little room around the values, so that none sits on the frame.
    let pad = ((hi - lo) * 0.1)
        .max(hi.abs().max(lo.abs()) * 0.01)
        .max(1e-9);
    let name = mermaid_text(metric);
    // One point draws no line: it is a bar.
    let kind = if points.len() == 1 { "bar" } else { "line" };
    Some(format!(
        "```mermaid\n{CHART_CONFIG}xychart-beta\n    title \"{name}: mean per commit\"\n    x-axis [{}]\n    \
         y-axis \"{name}\" {} --> {}\n    {kind} [{}]\n```\n",
        labels.join(", "),
        plain(lo - pad),
        plain(hi + pad),
        values.join(", ")
    ))
}

/// Mermaid's settings for the chart, as front matter in the block: its default theme draws
/// the first line in #ECECFF, all but invisible on white, and at its default 700 px the
/// last label, "(this)", runs into the one before.
const CHART_CONFIG: &str = "---\nconfig:\n  xyChart:\n    width: 760\n    height: 400\n    \
    xAxis:\n      labelFontSize: 12\n  themeVariables:\n    xyChart:\n      \
    plotColorPalette: \"#0969da\"\n---\n";

/// A number as Mermaid reads it: plain digits (no exponent), six significant ones.
fn plain(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_owned();
    }
    let digits = (5 - v.abs().log10().floor() as i64).clamp(0, 12) as usize;
    let text = format!("{v:.digits$}");
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_owned(),
        false => text,
    }
}

/// Text safe inside a quoted Mermaid label: what could end the quote, the line or the
/// block, or be read as markup, becomes `_`.
fn mermaid_text(text: &str) -> String {
    let safe = |c: char| c.is_alphanumeric() || " _-.:/+()%".contains(c);
    text.chars()
        .take(60)
        .map(|c| if safe(c) { c } else { '_' })
        .collect()
}

/// Text a person wrote (a commit title, a metric, a branch), safe in GitHub's Markdown:
/// what would be markup is escaped, a mention does not ping anyone, and it stays on one
/// line (and in one table cell). Leading blanks are dropped and a leading block marker
/// escaped, so that a title at the start of its line stays a line of text, not a rule, a
/// list or a heading underline.
pub fn md(text: &str) -> String {
    let text = text.trim_start();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '<' | '>' | '|' | '#' | '~' | '!'
            | '&' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            // A word joiner after `@`: GitHub links no mention, and the text reads the same.
            '@' => out.push_str("@\u{2060}"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    // `#`, `>` and `*` are escaped wherever they are; these are markup only at the start.
    let digits = out.chars().take_while(char::is_ascii_digit).count();
    if out.starts_with(['-', '+', '=']) {
        out.insert(0, '\\');
    } else if digits > 0 && out[digits..].starts_with('.') {
        out.insert(digits, '\\');
    }
    out
}

/// `text` cut to at most `max` characters, with a note saying so; a code block cut open
/// is closed first, so the note is not swallowed by it.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let note = format!("\n\n*… cut to the {max} characters GitHub takes*");
    let fence = "\n```";
    let room = max.saturating_sub(note.chars().count() + fence.len());
    let mut cut: String = text.chars().take(room).collect();
    if cut.matches("```").count() % 2 == 1 {
        cut.push_str(fence);
    }
    cut.push_str(&note);
    cut
}

/// A digest of `text` (FNV-1a, 64 bits), kept to tell whether a body changed: stable
/// across versions and machines, unlike the standard library's hasher.
pub fn digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Part;

    fn spec() -> Results {
        Results::example(&["accuracy", "loss"])
    }

    fn watch() -> Watch {
        let mut w = Watch::example("main", &["i-1", "i-2"]);
        w.results = Some(spec());
        w
    }

    fn run(n: u32, accuracy: &[f64], closed: bool) -> Run {
        let now = chrono::Utc::now();
        let commit = format!("{n:07x}{}", "a".repeat(33));
        let mut run = Run::open(&commit, "Train it", now);
        for (repeat, a) in (1..).zip(accuracy) {
            run.instances
                .insert(format!("i-{repeat}"), Part::Started { at: now, repeat });
            run.values
                .entry("accuracy".into())
                .or_default()
                .insert(repeat, *a);
            run.values
                .entry("loss".into())
                .or_default()
                .insert(repeat, 1.0 - a);
        }
        if closed {
            run.completed_at = Some(now);
        }
        run
    }

    #[test]
    fn a_body_exactly_at_the_limit_is_kept_and_one_past_it_is_cut_with_a_note() {
        let at = "x".repeat(COMMENT_MAX);
        assert_eq!(fit(&at, COMMENT_MAX), at);
        let past = "x".repeat(COMMENT_MAX + 1);
        let cut = fit(&past, COMMENT_MAX);
        assert!(
            cut.chars().count() <= COMMENT_MAX,
            "{}",
            cut.chars().count()
        );
        assert!(cut.ends_with("*… cut to the 65536 characters GitHub takes*"));
        // Characters, not bytes: GitHub counts characters.
        let wide = "é".repeat(COMMENT_MAX);
        assert_eq!(fit(&wide, COMMENT_MAX), wide);
    }

    #[test]
    fn a_code_block_cut_open_is_closed_before_the_note() {
        let text = format!("intro\n```mermaid\n{}\n```\n", "1, ".repeat(100));
        let cut = fit(&text, 120);
        assert!(cut.chars().count() <= 120);
        assert_eq!(cut.matches("```").count() % 2, 0, "{cut}");
        assert!(cut.ends_with("GitHub takes*"));
    }

    #[test]
    fn a_huge_title_still_makes_a_body_github_takes() {
        let mut runs = vec![run(1, &[0.9, 0.91], false)];
        runs[0].title = "t".repeat(100_000);
        let body = body(&watch(), &runs, 0);
        assert!(body.chars().count() <= COMMENT_MAX);
        assert!(body.starts_with("<!-- pushwake:octo/trainer@main -->\n"));
    }

    #[test]
    fn markup_and_mentions_in_a_title_are_escaped() {
        assert_eq!(
            md("Fix *all* the `things` | @bob"),
            "Fix \\*all\\* the \\`things\\` \\| @\u{2060}bob"
        );
        assert_eq!(md("<!-- hide -->\nrest"), "\\<\\!-- hide --\\> rest");
        assert_eq!(md("[link](http://x)"), "\\[link\\]\\(http://x\\)");
        let mut runs = vec![run(1, &[0.9], false)];
        runs[0].title = "Try <b>this</b> | @team".into();
        let body = body(&watch(), &runs, 0);
        assert!(
            body.contains("Try \\<b\\>this\\</b\\> \\| @\u{2060}team"),
            "{body}"
        );
    }

    #[test]
    fn a_title_that_starts_like_a_block_stays_a_line_of_text() {
        let cases = [
            ("--- wip", "\\--- wip"),
            ("1. try lr", "1\\. try lr"),
            ("12) x", "12\\) x"),
            ("# x", "\\# x"),
            ("> y", "\\> y"),
            ("+ z", "\\+ z"),
            ("= a", "\\= a"),
            ("    indented", "indented"),
            ("\n- after a newline", "\\- after a newline"),
            // Only at the start: inside the line these are plain text.
            ("v1. a-b + c = d", "v1. a-b + c = d"),
            ("2024 results", "2024 results"),
        ];
        for (title, safe) in cases {
            assert_eq!(md(title), safe, "{title:?}");
        }
    }

    #[test]
    fn the_marker_cannot_be_closed_by_a_branch() {
        let w = Watch::example("feat/a-->b", &[]);
        assert_eq!(marker(&w), "<!-- pushwake:octo/trainer@feat/a--%3Eb -->");
    }

    #[test]
    fn a_chart_of_one_commit_is_one_bar_marked_as_this_one() {
        let runs = [run(1, &[0.90, 0.92], false)];
        let chart = chart(&spec(), &runs, 0).unwrap();
        assert_eq!(
            chart,
            format!(
                "```mermaid\n{CHART_CONFIG}xychart-beta\n    title \"accuracy: mean per commit\"\n    \
             x-axis [\"0000001 (this)\"]\n    y-axis \"accuracy\" 0.9009 --> 0.9191\n    \
             bar [0.91]\n```\n"
            )
        );
    }

    #[test]
    fn a_chart_shows_the_last_completed_commits_and_this_one_last() {
        let mut runs: Vec<Run> = (1..=12)
            .map(|n| run(n, &[0.5 + n as f64 / 100.0], true))
            .collect();
        runs[11].superseded_by = Some("f".repeat(40));
        runs.push(run(13, &[0.7], false));
        let chart = chart(&spec(), &runs, 12).unwrap();
        assert!(chart.contains("    line [0.53, 0.54"), "{chart}");
        assert!(
            !chart.contains("000000c"),
            "a superseded run has no point: {chart}"
        );
        assert!(
            chart.contains("\"000000b\", \"000000d (this)\"]"),
            "{chart}"
        );
        assert_eq!(
            chart.matches(", ").count(),
            2 * (CHART_COMMITS - 1),
            "{chart}"
        );
        assert!(chart.ends_with("0.61, 0.7]\n```\n"), "{chart}");
    }

    #[test]
    fn a_metric_name_cannot_break_the_chart() {
        assert_eq!(mermaid_text("acc\"]\n```"), "acc______");
        assert_eq!(plain(0.000012345678), "0.0000123457");
        assert_eq!(plain(12345.678), "12345.7");
        assert_eq!(plain(-2.5), "-2.5");
        assert_eq!(plain(1e20), "100000000000000000000");
    }

    #[test]
    fn a_running_run_waits_for_its_verdict_and_a_closed_one_says_it() {
        let w = watch();
        let runs = [run(1, &[0.90, 0.91], true), run(2, &[0.80], false)];
        let text = body(&w, &runs, 1);
        assert!(
            text.contains("**running: 1 of 1 repeats reported**"),
            "{text}"
        );
        assert!(text.contains("| **accuracy** | 1 | 0.8000 ± 0.0000 | 0.8000–0.8000 | judged when the run is over |"), "{text}");
        let mut runs = runs;
        runs[1].values.get_mut("accuracy").unwrap().insert(2, 0.81);
        runs[1].values.get_mut("loss").unwrap().insert(2, 0.19);
        runs[1].instances.insert(
            "i-2".into(),
            Part::Started {
                at: runs[1].opened_at,
                repeat: 2,
            },
        );
        runs[1].completed_at = Some(runs[1].opened_at);
        let body = body(&w, &runs, 1);
        assert!(body.contains("**accuracy -0.1000 \\["), "{body}");
        assert!(body.contains("worse beyond the noise"), "{body}");
        assert!(body.contains("| vs `0000001` |"), "{body}");
        assert!(body.contains("xychart-beta\n"), "{body}");
        let check = check(&w, &runs, 1, "pushwake");
        assert_eq!(check.status, "completed");
        assert_eq!(
            check.conclusion.as_deref(),
            Some("neutral"),
            "no recorded verdict"
        );
        assert!(
            check.output.title.starts_with("accuracy -0.1000 ["),
            "{}",
            check.output.title
        );
        assert!(!check.output.summary.contains("<!-- pushwake"));
    }

    #[test]
    fn the_check_run_s_conclusion_is_the_recorded_verdict() {
        let w = watch();
        let mut runs = vec![run(1, &[0.9, 0.91], false)];
        runs[0].instances.clear();
        assert_eq!(check(&w, &runs, 0, "pushwake").status, "queued");
        let mut runs = vec![run(1, &[0.9, 0.91], false)];
        assert_eq!(check(&w, &runs, 0, "pushwake").status, "in_progress");
        runs[0].completed_at = Some(runs[0].opened_at);
        for (call, conclusion) in [
            ("better", "success"),
            ("worse", "failure"),
            ("equivalent", "neutral"),
        ] {
            runs[0].verdict = Some(crate::state::Verdict {
                baseline: "b".repeat(40),
                call: call.into(),
                difference: 0.0,
                ci: (0.0, 0.0),
                p: 0.5,
                look: None,
            });
            assert_eq!(
                check(&w, &runs, 0, "pushwake").conclusion.as_deref(),
                Some(conclusion)
            );
        }
    }

    #[test]
    fn the_cost_counts_machines_that_are_down_and_not_the_clock() {
        let mut r = run(1, &[0.9], false);
        let from = r.opened_at;
        let span = |to: Option<chrono::DateTime<chrono::Utc>>| crate::cost::Span {
            instance: "i-1".into(),
            from,
            to,
            instance_type: Some("g5.xlarge".into()),
            price: Some(1.0),
            unpriced: None,
        };
        r.spans = vec![span(Some(from + chrono::Duration::hours(2))), span(None)];
        assert_eq!(
            cost(&r),
            "Cost: 1 run, 2.0 machine-hours, $2.00; 1 machine counted once EC2 shows it down"
        );
        let w = watch();
        let runs = [r];
        assert_eq!(digest(&body(&w, &runs, 0)), digest(&body(&w, &runs, 0)));
    }

    #[test]
    fn the_digest_is_fnv_1a() {
        assert_eq!(digest(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
