//! The words pushwake says: Slack messages and the matching log lines.
//!
//! Kept apart from the Slack client so that the dry run and the log can say exactly what a
//! message would have said.

use std::fmt::Write;

use crate::config::Watch;
use crate::github::Commit;
use crate::launch::{Launch, Outcome};
use crate::slack::escape;

/// The message for a trigger: which commit, and what happened to each instance.
pub fn trigger(watch: &Watch, commit: &Commit, launch: &Launch) -> String {
    let mut text = String::new();
    let short = short(&commit.sha);
    let link = if commit.url.is_empty() {
        format!("`{short}`")
    } else {
        format!("<{}|`{short}`>", commit.url)
    };
    let _ = write!(
        text,
        "*{}* `{}` moved to {link}",
        escape(&watch.repo.to_string()),
        escape(&watch.branch)
    );
    if !commit.title.is_empty() {
        let _ = write!(
            text,
            ": {} ({})",
            escape(&commit.title),
            escape(&commit.author)
        );
    }
    text.push('\n');
    text.push_str(&instances(launch));
    text
}

/// One line per kind of outcome, e.g. "Started: i-1, i-2".
pub fn instances(launch: &Launch) -> String {
    let mut lines = Vec::new();
    let started = launch.ids(|o| *o == Outcome::Started);
    if !started.is_empty() {
        lines.push(format!("Started: {}", started.join(", ")));
    }
    let mut skipped = Vec::new();
    let mut gone = Vec::new();
    let mut failed = Vec::new();
    for (id, outcome) in &launch.instances {
        match outcome {
            Outcome::Started => {}
            Outcome::AlreadyUp(state) => skipped.push(format!("{id} ({state})")),
            Outcome::Gone(why) => gone.push(format!("{id} ({})", escape(why))),
            Outcome::Failed(why) => failed.push(format!("{id} ({})", escape(why))),
        }
    }
    if !skipped.is_empty() {
        lines.push(format!("Skipped, already up: {}", skipped.join(", ")));
    }
    if !gone.is_empty() {
        lines.push(format!("Not startable: {}", gone.join(", ")));
    }
    if !failed.is_empty() {
        lines.push(format!("Failed, will retry: {}", failed.join(", ")));
    }
    if lines.is_empty() {
        lines.push("No instances.".to_owned());
    }
    lines.join("\n")
}

/// The instances that failed and why, on one line.
pub fn failures(launch: &Launch) -> String {
    launch
        .instances
        .iter()
        .filter_map(|(id, o)| match o {
            Outcome::Failed(why) => Some(format!("{id} ({why})")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The message for an instance pushwake stopped.
pub fn stopped(watch: &Watch, id: &str, reason: &str, runtime: std::time::Duration) -> String {
    format!(
        ":octagonal_sign: *{}* `{}`: stopped {id} after {}: {}",
        escape(&watch.repo.to_string()),
        escape(&watch.branch),
        humantime::format_duration(runtime),
        escape(reason)
    )
}

/// The message for a watch that started failing.
pub fn failing(watch: &Watch, error: &str) -> String {
    format!(
        ":warning: *{}* `{}`: {}\nNo more messages until it recovers.",
        escape(&watch.repo.to_string()),
        escape(&watch.branch),
        escape(error)
    )
}

/// The message for a watch that works again.
pub fn recovered(watch: &Watch) -> String {
    format!(
        ":white_check_mark: *{}* `{}` works again.",
        escape(&watch.repo.to_string()),
        escape(&watch.branch)
    )
}

/// The first seven characters of a SHA, as git shows it.
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}
