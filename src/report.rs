//! The words pushwake says: Slack messages and the matching log lines, why an instance is
//! stopped, the verdict on a run (`verdict.rs`), and the CLI tables (`table.rs`).
//!
//! Kept apart from the Slack client so that the dry run and the log can say exactly what a
//! message would have said, and apart from the decisions so that each says what it decides
//! and only this module says how it is put to people.

use std::fmt::Write;

use crate::config::Watch;
use crate::github::Commit;
use crate::reap::Why;
use crate::slack::escape;
use crate::state::{Part, Run};

pub mod comment;
pub mod page;
mod status;
pub mod table;
pub mod verdict;

pub use status::commit_status;
pub use verdict::verdict;

/// News of a run, one line each, as a reply in its thread.
pub fn news(news: &[String]) -> String {
    news.iter()
        .map(|l| escape(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The message for a change of a run: which commit, what each instance does for it, and
/// `news` (what else the pass did for it, one line each). `commit` is given when the run
/// opened in this pass: the first message names its title, author and link.
pub fn run(watch: &Watch, run: &Run, commit: Option<&Commit>, news: &[String]) -> String {
    let mut text = format!(
        "*{}* `{}` ",
        escape(&watch.repo.to_string()),
        escape(&watch.branch)
    );
    let sha = short(&run.commit);
    match commit {
        Some(c) => {
            let link = if c.url.is_empty() {
                format!("`{sha}`")
            } else {
                format!("<{}|`{sha}`>", c.url)
            };
            let _ = write!(text, "moved to {link}");
            if !c.title.is_empty() {
                let _ = write!(text, ": {} ({})", escape(&c.title), escape(&c.author));
            }
        }
        None => {
            let _ = write!(text, "run of `{sha}`");
            if !run.title.is_empty() {
                let _ = write!(text, " ({})", escape(&run.title));
            }
        }
    }
    if !run.replaced.is_empty() {
        let n = run.replaced.len();
        let _ = write!(
            text,
            "\n{n} queued push{} since `{}` never ran; running the newest",
            if n == 1 { "" } else { "es" },
            short(&run.replaced[0])
        );
    }
    for line in news {
        text.push('\n');
        text.push_str(&escape(line));
    }
    if let Some(places) = places(run) {
        text.push('\n');
        text.push_str(&places);
    }
    text.push('\n');
    text.push_str(&parts(run));
    if let Some(spec) = &watch.results {
        let (all, taken) = crate::results::reported(run, spec);
        if taken > 0 {
            let _ = write!(text, "\nReported: {all} of {taken}");
        }
    }
    text
}

/// One line per kind of part, e.g. "Started: i-1, i-2".
pub fn parts(run: &Run) -> String {
    let mut started = Vec::new();
    let (mut waiting, mut failed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut lost = Vec::new();
    for (id, part) in &run.instances {
        match part {
            Part::Accepted { .. } | Part::Started { .. } => started.push(id.clone()),
            Part::Waiting { why } => waiting.push(format!("{id} ({})", escape(why))),
            Part::Failed { why } => failed.push(format!("{id} ({})", escape(why))),
            Part::Skipped { why } => skipped.push(format!("{id} ({})", escape(why))),
            Part::Lost { repeat, .. } => lost.push(format!("{id} (repeat {repeat})")),
        }
    }
    let lines: Vec<String> = [
        ("Started", started),
        ("Waiting for busy machines", waiting),
        ("Failed, will retry", failed),
        ("Taken away by EC2", lost),
        ("Not run", skipped),
    ]
    .into_iter()
    .filter(|(_, ids)| !ids.is_empty())
    .map(|(what, ids)| format!("{what}: {}", ids.join(", ")))
    .collect();
    if lines.is_empty() {
        return "No instances.".to_owned();
    }
    lines.join("\n")
}

/// Where the run's machines run, counted by place, e.g. "Where: 2 on the pool; 3
/// launched in us-east-1b (g5.xlarge, spot)"; `None` before any ran.
pub fn places(run: &Run) -> Option<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (id, place) in &run.placed {
        if run.instances.get(id).is_some_and(Part::is_started) {
            *counts.entry(place_words(place)).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return None;
    }
    let each: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    Some(format!("Where: {}", each.join("; ")))
}

/// A place in words: "on the pool (g5.xlarge, us-east-1a)", "launched in us-east-1b
/// (g5.xlarge, spot)".
fn place_words(p: &crate::placement::Place) -> String {
    let mut detail: Vec<String> = p.instance_type.iter().cloned().collect();
    match (p.launched, &p.zone) {
        (true, zone) => {
            detail.extend(p.market.map(|m| m.to_string()));
            let zone = zone
                .as_deref()
                .map(|z| format!(" in {z}"))
                .unwrap_or_default();
            format!("launched{zone} ({})", detail.join(", "))
        }
        (false, zone) => {
            detail.extend(zone.iter().cloned());
            match detail.is_empty() {
                true => "on the pool".to_owned(),
                false => format!("on the pool ({})", detail.join(", ")),
            }
        }
    }
}

/// The news line of launches from the template: how many went where, what waits, and
/// what EC2 had no room for, e.g. "Launched 3 in us-east-1b (g5.xlarge, spot): no
/// g5.xlarge spot capacity in us-east-1a"; `None` when there is nothing to say.
pub fn launched(
    launched: &[crate::launch::fleet::Launched],
    refused: &[crate::launch::fleet::Refusal],
    waiting: &[u32],
    failed: &[String],
) -> Option<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for l in launched {
        let words = place_words(&l.place);
        let place = words.trim_start_matches("launched").trim_start().to_owned();
        *counts.entry(place).or_default() += 1;
    }
    let mut what: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    if !waiting.is_empty() {
        let n = waiting.len();
        what.push(format!(
            "{n} repeat{} waiting for room",
            if n == 1 { "" } else { "s" }
        ));
    }
    let why: Vec<String> = refused
        .iter()
        .map(|r| {
            let t = r.instance_type.as_deref().unwrap_or("the template's type");
            format!("no {t} {} capacity in {}", r.market, r.zone)
        })
        .chain(failed.iter().cloned())
        .collect();
    if what.is_empty() && why.is_empty() {
        return None;
    }
    let mut line = match launched.is_empty() {
        true => "Nothing launched".to_owned(),
        false => "Launched".to_owned(),
    };
    if !what.is_empty() {
        line = format!("{line} {}", what.join("; "));
    }
    if !why.is_empty() {
        line = format!("{line}: {}", why.join("; "));
    }
    Some(line)
}

/// The news line of a repeat whose machine EC2 took away before it reported, with the
/// retries left (`None`: it runs no more, and counts as failed).
pub fn lost(id: &str, repeat: u32, why: &str, retry: Option<(usize, u32)>) -> String {
    let then = match retry {
        Some((n, of)) => {
            format!("running it again (retry {n} of {of}); what it reported does not count")
        }
        None => "no retries left: it counts as failed".to_owned(),
    };
    format!("Repeat {repeat} lost on {id}: {why}; {then}")
}

/// The news line of a run that stopped the machines of the older run of `older`.
pub fn superseded(older: &str) -> String {
    format!(
        "Superseded `{}`: its machines were stopped (launched ones terminated) for this commit; \
         no verdict",
        short(older)
    )
}

/// The instances of a run that failed and why, on one line.
pub fn failures(run: &Run) -> String {
    run.instances
        .iter()
        .filter_map(|(id, p)| match p {
            Part::Failed { why } => Some(format!("{id} ({why})")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The message for an instance pushwake stopped.
/// `terminated`: a launched machine, which is ended rather than kept stopped.
pub fn stopped(
    watch: &Watch,
    id: &str,
    reason: &str,
    runtime: std::time::Duration,
    terminated: bool,
) -> String {
    format!(
        ":octagonal_sign: *{}* `{}`: {} {id} after {}: {}",
        escape(&watch.repo.to_string()),
        escape(&watch.branch),
        if terminated { "terminated" } else { "stopped" },
        humantime::format_duration(runtime),
        escape(reason)
    )
}

/// Why a stop rule stops an instance, as the stop message, the log and `status` say it.
impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Reported => f.write_str("reported every result"),
            Why::MaxRuntime(max) => {
                write!(
                    f,
                    "max_runtime {} reached",
                    humantime::format_duration(*max)
                )
            }
            Why::Idle {
                metric,
                below,
                window,
            } => write!(
                f,
                "idle: {metric} below {below} for {}",
                humantime::format_duration(*window)
            ),
        }
    }
}

/// Where an instance was started from, by its tags: "octo/trainer@main, `1a2b3c4`".
fn origin(i: &crate::ec2::Instance) -> String {
    let tag = |k| i.tags.get(k).map_or("?", String::as_str);
    format!(
        "*{}* `{}`, `{}`",
        escape(tag(crate::tags::REPO)),
        escape(tag(crate::tags::BRANCH)),
        short(tag(crate::tags::COMMIT))
    )
}

/// The message for an instance pushwake started that no watch owns any more.
pub fn orphan(i: &crate::ec2::Instance, max_runtime: Option<std::time::Duration>) -> String {
    let then = match max_runtime {
        Some(max) => format!(
            "it is stopped once it has run {} (the top-level max_runtime)",
            humantime::format_duration(max)
        ),
        None => "nothing stops it: set a top-level max_runtime, or stop it by hand".to_owned(),
    };
    format!(
        ":ghost: {} runs for {}, and no watch owns it any more; {then}.",
        i.id,
        origin(i)
    )
}

/// The message for an orphan pushwake stopped.
pub fn orphan_stopped(
    i: &crate::ec2::Instance,
    runtime: std::time::Duration,
    max: std::time::Duration,
) -> String {
    format!(
        ":octagonal_sign: stopped {} ({}, no watch owns it) after {}: top-level max_runtime {} reached",
        i.id,
        origin(i),
        humantime::format_duration(std::time::Duration::from_secs(runtime.as_secs())),
        humantime::format_duration(max)
    )
}

/// The message for a pass that could not use its state.
pub fn stateless(error: &str) -> String {
    format!(
        ":rotating_light: pushwake cannot use its state: {}\nUntil it can, it only applies \
         max_runtime and idle_stop; it polls and starts nothing. No more messages until it \
         recovers.",
        escape(error)
    )
}

/// The message for a shared state out of reach.
pub fn shared_unreachable(error: &str) -> String {
    format!(
        ":rotating_light: pushwake cannot use its shared state: {}\nUntil it can, this agent \
         acts on nothing; pushes are kept on GitHub and acted on once it can. No more \
         messages until it recovers.",
        escape(error)
    )
}

/// The message for watches that started failing, for one cause.
pub fn failing(watches: &[&Watch], error: &str) -> String {
    format!(
        ":warning: {}: {}\nNo more messages until it recovers.",
        names(watches),
        escape(error)
    )
}

/// Watches as messages name them: "*owner/name* `branch`, *owner/name* `other`".
fn names(watches: &[&Watch]) -> String {
    watches
        .iter()
        .map(|w| format!("*{}* `{}`", escape(&w.repo.to_string()), escape(&w.branch)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The message for watches that work again.
pub fn recovered(watches: &[&Watch]) -> String {
    let verb = if watches.len() == 1 { "works" } else { "work" };
    format!(":white_check_mark: {} {verb} again.", names(watches))
}

/// The first seven characters of a SHA, as git shows it.
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(branch: &str) -> Watch {
        Watch::example(branch, &[])
    }

    #[test]
    fn parts_are_one_line_per_kind() {
        let mut run = Run::open("abc", "", chrono::Utc::now());
        let at = run.opened_at;
        run.instances
            .insert("i-2".into(), Part::Started { at, repeat: 2 });
        run.instances
            .insert("i-1".into(), Part::Accepted { at, repeat: 1 });
        run.instances.insert(
            "i-3".into(),
            Part::Waiting {
                why: "busy with `x`".into(),
            },
        );
        run.instances.insert(
            "i-4".into(),
            Part::Skipped {
                why: "terminated".into(),
            },
        );
        assert_eq!(
            parts(&run),
            "Started: i-1, i-2\nWaiting for busy machines: i-3 (busy with `x`)\nNot run: i-4 (terminated)"
        );
    }

    #[test]
    fn watches_failing_together_are_named_in_one_message() {
        let (a, b) = (watch("main"), watch("dev"));
        let text = failing(&[&a, &b], "cannot poll: GitHub answered 502");
        assert!(
            text.starts_with(":warning: *octo/trainer* `main`, *octo/trainer* `dev`: cannot poll")
        );
        assert_eq!(
            recovered(&[&a]),
            ":white_check_mark: *octo/trainer* `main` works again."
        );
        assert!(recovered(&[&a, &b]).ends_with("work again."));
    }

    #[test]
    fn each_stop_rule_says_why_in_its_own_words() {
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(Why::Reported.to_string(), "reported every result");
        assert_eq!(Why::MaxRuntime(hour).to_string(), "max_runtime 1h reached");
        let idle = Why::Idle {
            metric: "GPUUtilization".into(),
            below: 5.0,
            window: hour,
        };
        assert_eq!(idle.to_string(), "idle: GPUUtilization below 5 for 1h");
    }

    #[test]
    fn a_short_sha_is_seven_characters() {
        assert_eq!(short("0123456789abcdef"), "0123456");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn launches_say_where_they_went_and_what_ec2_had_no_room_for() {
        use crate::ec2::Market;
        use crate::launch::fleet::{Launched, Refusal};
        let place = crate::placement::Place {
            launched: true,
            instance_type: Some("g5.xlarge".into()),
            zone: Some("us-east-1b".into()),
            market: Some(Market::Spot),
            ended: false,
        };
        let launched: Vec<Launched> = (1..=3)
            .map(|k| Launched {
                id: format!("i-{k}"),
                repeat: k,
                place: place.clone(),
            })
            .collect();
        let refused = [Refusal {
            key: "g5.xlarge/subnet-a/spot".into(),
            zone: "us-east-1a".into(),
            instance_type: Some("g5.xlarge".into()),
            market: Market::Spot,
            why: "InsufficientInstanceCapacity".into(),
        }];
        assert_eq!(
            launched_line(&launched, &refused, &[], &[]),
            "Launched 3 in us-east-1b (g5.xlarge, spot): no g5.xlarge spot capacity in us-east-1a"
        );
        assert_eq!(
            launched_line(&[], &refused, &[4, 5], &[]),
            "Nothing launched 2 repeats waiting for room: no g5.xlarge spot capacity in us-east-1a"
        );
        assert_eq!(super::launched(&[], &[], &[], &[]), None);
    }

    fn launched_line(
        l: &[crate::launch::fleet::Launched],
        r: &[crate::launch::fleet::Refusal],
        w: &[u32],
        f: &[String],
    ) -> String {
        super::launched(l, r, w, f).unwrap()
    }

    #[test]
    fn a_lost_repeat_says_whether_it_runs_again() {
        let why = "EC2 took i-1 away (Server.SpotInstanceTermination)";
        assert_eq!(
            lost("i-1", 3, why, Some((1, 2))),
            "Repeat 3 lost on i-1: EC2 took i-1 away (Server.SpotInstanceTermination); running \
             it again (retry 1 of 2); what it reported does not count"
        );
        assert!(lost("i-1", 3, why, None).ends_with("no retries left: it counts as failed"));
    }
}
