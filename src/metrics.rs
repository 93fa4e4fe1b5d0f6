//! The Prometheus textfile (`[metrics] textfile`): what each pass leaves for
//! node_exporter's textfile collector to serve, so pushwake opens no port.
//!
//! Every figure is a gauge read off the state the pass ends with: a `--once` from cron is a
//! new process each time, so a counter kept in memory would start at 0 every pass.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::state::State;

/// What one pass ends with, as the textfile shows it.
pub struct Pass<'a> {
    pub settings: &'a Settings,
    pub outcome: Outcome<'a>,
    pub at: DateTime<Utc>,
}

/// How a pass ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// It led its state, and wrote `state`; `failed` watches failed in it.
    Led { state: &'a State, failed: usize },
    /// Another agent leads: this one holds no state.
    StoodBy,
    /// It could not use its state (unreadable, unwritable, S3 refusing): only the stop
    /// rules ran, or nothing did; `failed` watches counted as failed.
    Failed { failed: usize },
}

/// The textfile's contents, in the Prometheus text exposition format: each metric's
/// `HELP` and `TYPE` once, then its samples, label values escaped.
pub fn render(pass: &Pass) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {}", number(*value));
        }
    };
    let (state, failed) = match pass.outcome {
        Outcome::Led { state, failed } => (Some(state), failed),
        Outcome::StoodBy => (None, 0),
        Outcome::Failed { failed } => (None, failed),
    };
    let flag = |b: bool| f64::from(u8::from(b));
    metric(
        "pushwake_last_pass_timestamp_seconds",
        "When this agent's last pass ended, in seconds since the epoch.",
        &[(String::new(), pass.at.timestamp() as f64)],
    );
    metric(
        "pushwake_last_pass_success",
        "Whether the last pass could use its state (1), or not (0): then only the stop \
         rules ran, or nothing did.",
        &[(
            String::new(),
            flag(!matches!(pass.outcome, Outcome::Failed { .. })),
        )],
    );
    metric(
        "pushwake_leader",
        "Whether this agent led its state in the last pass (1), or not (0).",
        &[(String::new(), flag(state.is_some()))],
    );
    metric(
        "pushwake_last_pass_failed_watches",
        "Watches whose poll, runs or stops failed in the last pass.",
        &[(String::new(), failed as f64)],
    );
    let Some(state) = state else {
        return out;
    };
    let watches: Vec<(String, &crate::state::WatchState)> = pass
        .settings
        .watches
        .iter()
        .filter_map(|w| Some((labels(&w.repo.to_string(), &w.branch), state.get(w)?)))
        .collect();
    let per_watch = |f: &dyn Fn(&crate::state::WatchState) -> Option<f64>| {
        watches
            .iter()
            .filter_map(|(labels, w)| Some((labels.clone(), f(w)?)))
            .collect::<Vec<_>>()
    };
    metric(
        "pushwake_last_successful_poll_timestamp_seconds",
        "When GitHub last answered the watch's poll, in seconds since the epoch.",
        &per_watch(&|w| Some(w.last_polled?.timestamp() as f64)),
    );
    metric(
        "pushwake_watch_failing",
        "Whether the watch is failing (1): its poll or its runs, as said on Slack.",
        &per_watch(&|w| Some(flag(w.last_error.is_some()))),
    );
    metric(
        "pushwake_open_runs",
        "Runs of the watch not yet complete.",
        &per_watch(&|w| Some(w.runs.iter().filter(|r| r.is_open()).count() as f64)),
    );
    metric(
        "pushwake_repeats_running",
        "The watch's machines up on a run, as the last look at EC2 found them.",
        &per_watch(&|w| {
            // A closed run's machines are looked at again only by the next turn that needs
            // EC2 anyway (a stop rule, a push): until then they count as the last look saw.
            let up = w.runs.iter().flat_map(|r| &r.spans);
            Some(up.filter(|s| s.to.is_none()).count() as f64)
        }),
    );
    metric(
        "pushwake_duties_owed",
        "Stops, messages and statuses the watch still owes, retried every pass.",
        &per_watch(&|w| Some(w.duties.len() as f64)),
    );
    metric(
        "pushwake_month_spend_usd",
        "What the watch's machines cost this calendar month (UTC), running ones to now.",
        &per_watch(&|w| Some(w.month_spend(pass.at))),
    );
    out
}

/// `{repo="owner/name",branch="main"}`, escaped as the format requires.
fn labels(repo: &str, branch: &str) -> String {
    format!(
        "{{repo=\"{}\",branch=\"{}\"}}",
        escape(repo),
        escape(branch)
    )
}

/// A label value with backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: whole numbers without a fraction, others as Rust prints them (which
/// the format reads); never NaN or an infinity, which no figure here can be.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Writes `text` to `path` whole or not at all: a temporary file in the same directory,
/// renamed over it, so the collector never reads half a file. The temporary file's name
/// does not end in `.prom`, so the collector never reads it either.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut file = tempfile::Builder::new()
        .prefix(".pushwake-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(text.as_bytes())?;
    // node_exporter runs as another user: the file is world-readable, as the metrics are.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels("o/r", "a\"b\\c\nd"),
            r#"{repo="o/r",branch="a\"b\\c\nd"}"#
        );
    }

    #[test]
    fn values_are_whole_numbers_or_decimals() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1_796_000_000.0), "1796000000");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushwake.prom");
        write(&path, "a 1\n").unwrap();
        write(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
