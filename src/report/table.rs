//! The tables of `pushwake results` and `pushwake status`, for people; `--json` prints the
//! rows themselves.

use std::io::Write;

use crate::results::Row;
use crate::state::Duty;
use crate::status::WatchStatus;

use super::short;

/// The rows of `results --json` or `status --json`, as the contract names their fields.
pub fn print_json(out: &mut impl Write, rows: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)?;
    Ok(())
}

/// The words of one row of `pushwake results`, one per column: the text table and the
/// page of `results --html` say the same.
#[derive(Debug, Clone, PartialEq)]
pub struct Cells {
    /// "0.9100 ± 0.0100", or "-".
    pub spread: String,
    /// "0.9000–0.9200", or "-".
    pub range: String,
    /// "running", "partial" or "complete".
    pub state: &'static str,
    /// "better +0.0100 [+0.0040, +0.0160] vs 1a2b3c4, look 2 of 4", or "-".
    pub verdict: String,
}

impl Cells {
    pub fn of(r: &Row) -> Cells {
        let (spread, range) = match (r.mean, r.std, r.min, r.max) {
            (Some(m), Some(s), Some(lo), Some(hi)) => {
                (format!("{m:.4} ± {s:.4}"), format!("{lo:.4}–{hi:.4}"))
            }
            _ => ("-".to_owned(), "-".to_owned()),
        };
        let state = match (r.complete, r.partial) {
            (false, _) => "running",
            (true, true) => "partial",
            (true, false) => "complete",
        };
        let verdict = match (&r.verdict, r.difference, r.ci, &r.baseline) {
            (Some(v), Some(d), Some((lo, hi)), Some(b)) => {
                let look = r
                    .look
                    .map(|(k, of)| format!(", look {k} of {of}"))
                    .unwrap_or_default();
                format!("{v} {d:+.4} [{lo:+.4}, {hi:+.4}] vs {}{look}", short(b))
            }
            _ => "-".to_owned(),
        };
        Cells {
            spread,
            range,
            state,
            verdict,
        }
    }
}

/// `pushwake results` for people: one line per metric of a run.
pub fn print_results(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<28}  {:<7}  {:<14}  {:>3}  {:<24}  {:<20}  {:<8}  VERDICT",
        "WATCH", "COMMIT", "METRIC", "N", "MEAN ± STD", "MIN–MAX", "STATE"
    )?;
    for r in rows {
        let c = Cells::of(r);
        writeln!(
            out,
            "{:<28}  {:<7}  {:<14}  {:>3}  {:<24}  {:<20}  {:<8}  {}",
            format!("{}@{}", r.repo, r.branch),
            short(&r.commit),
            r.metric,
            r.n,
            c.spread,
            c.range,
            c.state,
            c.verdict
        )?;
    }
    Ok(())
}

/// `pushwake cost` for people: one line per watch and month.
pub fn print_costs(out: &mut impl Write, rows: &[crate::status::CostRow]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<28}  {:<7}  {:>10}  NOTE",
        "WATCH", "MONTH", "SPEND"
    )?;
    for r in rows {
        let mut note = Vec::new();
        if r.running > 0 {
            note.push(format!("{} machine(s) up, counted to now", r.running));
        }
        if !r.unknown.is_empty() {
            note.push(format!("cost unknown in part: {}", r.unknown.join("; ")));
        }
        match &r.standing {
            Some(s) if s.machines > 0 => note.push(s.words()),
            Some(s) if !s.unknown.is_empty() => {
                note.push(format!("standing cost unknown: {}", s.unknown.join("; ")));
            }
            _ => {}
        }
        writeln!(
            out,
            "{:<28}  {:<7}  {:>10}  {}",
            format!("{}@{}", r.repo, r.branch),
            r.month,
            format!("${:.2}", r.spend),
            note.join("; ")
        )?;
    }
    Ok(())
}

/// `pushwake status` for people: one line per watch; below it the error (if any), what is
/// owed, and each open run's parts.
pub fn print_status(out: &mut impl Write, rows: &[WatchStatus]) -> anyhow::Result<()> {
    let name = |r: &WatchStatus| format!("{}@{}", r.repo, r.branch);
    let width = rows.iter().map(|r| name(r).len()).max().unwrap_or(0).max(5);
    if let Some(l) = rows.first().and_then(|r| r.leader.as_ref()) {
        writeln!(
            out,
            "leader: {} since {} (lease renewed {})",
            l.holder.as_deref().unwrap_or("unknown"),
            l.since.as_deref().unwrap_or("unknown"),
            l.renewed
        )?;
    }
    writeln!(
        out,
        "{:<width$}  {:<7}  {:<20}  INSTANCES",
        "WATCH", "HEAD", "CHECKED"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<width$}  {:<7}  {:<20}  {}",
            name(r),
            r.last_sha.as_deref().map(short).unwrap_or("-"),
            r.last_checked.as_deref().unwrap_or("never"),
            instances(r)
        )?;
        if let Some(e) = &r.last_error {
            writeln!(out, "{:<width$}  error: {e}", "")?;
        }
        for duty in &r.duties {
            let owed = match duty {
                Duty::Stop {
                    instance, reason, ..
                } => format!("stop {instance} ({reason})"),
                Duty::Status { commit, status } => {
                    format!("status {} of {}", status.state, short(commit))
                }
                Duty::Post { text, .. } | Duty::Say { text, .. } => {
                    format!("post {:?}", text.lines().next().unwrap_or_default())
                }
                Duty::Late { instance, commit } => {
                    format!("stop {instance} once it reports for {}", short(commit))
                }
            };
            writeln!(out, "{:<width$}  owed: {owed}", "")?;
        }
        for run in &r.open_runs {
            let queued = if r.queued.as_ref() == Some(&run.commit) {
                " (queued)"
            } else {
                ""
            };
            let n = &run.repeats;
            writeln!(
                out,
                "{:<width$}  run of {}{queued}: repeats {} done, {} running, {} waiting, of {}",
                "",
                short(&run.commit),
                n.done,
                n.running,
                n.waiting,
                n.total
            )?;
            for (id, part) in &run.instances {
                match run.placed.get(id) {
                    Some(place) => writeln!(out, "{:<width$}    {id}: {part} ({place})", "")?,
                    None => writeln!(out, "{:<width$}    {id}: {part}", "")?,
                }
            }
        }
    }
    Ok(())
}

/// The orphans, below the table; nothing when there are none.
pub fn print_orphans(out: &mut impl Write, orphans: &[String]) -> anyhow::Result<()> {
    if !orphans.is_empty() {
        writeln!(
            out,
            "\nrunning, started by pushwake, and no watch owns them any more (the top-level \
             max_runtime stops them): {}",
            orphans.join(", ")
        )?;
    }
    Ok(())
}

/// The instances column: ids, with their live state when known.
fn instances(row: &WatchStatus) -> String {
    match &row.live {
        None => row.instances.join(","),
        Some(live) => row
            .instances
            .iter()
            .map(|id| format!("{id} ({})", live.get(id).map_or("?", String::as_str)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
