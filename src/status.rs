//! `pushwake status`: what the state file says of each configured watch.

use std::io::Write;

use serde::Serialize;

use crate::config::Settings;
use crate::report::short;
use crate::state::Store;

/// One watch as `status --json` shows it. The field names are part of the contract.
#[derive(Debug, Serialize)]
pub struct WatchStatus {
    pub repo: String,
    pub branch: String,
    pub last_sha: Option<String>,
    pub last_checked: Option<String>,
    pub last_error: Option<String>,
    pub instances: Vec<String>,
}

/// The status of every configured watch, in config order. Watches never polled have nulls.
pub fn collect(settings: &Settings) -> anyhow::Result<Vec<WatchStatus>> {
    let state = Store::new(&settings.state_dir).load()?;
    Ok(settings
        .watches
        .iter()
        .map(|w| {
            let s = state.get(w);
            WatchStatus {
                repo: w.repo.to_string(),
                branch: w.branch.clone(),
                last_sha: s.and_then(|s| s.last_sha.clone()),
                last_checked: s
                    .and_then(|s| s.last_checked)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                last_error: s.and_then(|s| s.last_error.clone()),
                instances: w.instances.clone(),
            }
        })
        .collect())
}

pub fn print_json(out: &mut impl Write, rows: &[WatchStatus]) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)?;
    Ok(())
}

/// A table for people: one line per watch, the error (if any) on the line below.
pub fn print_table(out: &mut impl Write, rows: &[WatchStatus]) -> anyhow::Result<()> {
    let name = |r: &WatchStatus| format!("{}@{}", r.repo, r.branch);
    let width = rows.iter().map(|r| name(r).len()).max().unwrap_or(0).max(5);
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
            r.instances.join(",")
        )?;
        if let Some(e) = &r.last_error {
            writeln!(out, "{:<width$}  error: {e}", "")?;
        }
    }
    Ok(())
}
