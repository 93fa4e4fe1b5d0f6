//! Orphans: running instances this deployment started that no watch owns any more (their
//! watch was removed or renamed, or their id or tag selector dropped from it). They are
//! found by their owner tag alone, reported once, and stopped by the top-level
//! `max_runtime`. Another deployment's instances carry another owner and are never seen.

use std::collections::{BTreeMap, BTreeSet};

use super::Agent;
use crate::config::Watch;
use crate::ec2::{Instance, InstanceState};
use crate::{launch, report, tags};

/// What looking for orphans found.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    pub messages: Vec<String>,
    /// What failed: the describe, or a stop.
    pub errors: Vec<String>,
}

impl Agent {
    /// Looks for orphans in one describe by the owner tag, reports each once (`reported`
    /// holds those already reported; `None` when there is no state to remember them in),
    /// and stops those past the top-level `max_runtime`.
    pub(super) async fn orphans(&self, reported: Option<&mut BTreeSet<String>>) -> Orphans {
        let mut out = Orphans::default();
        let ec2 = self.ec2().await;
        let mine = BTreeMap::from([(tags::OWNER.to_owned(), self.owner.clone())]);
        let found = match ec2.describe_tagged(&mine).await {
            Ok(found) => found,
            Err(e) => {
                out.errors
                    .push(format!("cannot look for orphaned instances: {e}"));
                return out;
            }
        };
        let now = ec2.now();
        let orphans: Vec<&Instance> = found
            .iter()
            .filter(|i| i.state == InstanceState::Running && tags::pushwake_started(i).is_some())
            .filter(|i| !self.settings.watches.iter().any(|w| owns(w, i)))
            .collect();
        let max = self.settings.max_runtime;
        if let Some(seen) = reported {
            seen.retain(|id| orphans.iter().any(|i| i.id == *id));
            for i in &orphans {
                if seen.insert(i.id.clone()) {
                    tracing::warn!("{}: no watch owns it any more", i.id);
                    out.messages.push(report::orphan(i, max));
                }
            }
        }
        let Some(max) = max else {
            return out;
        };
        let runtime = |i: &Instance| {
            let started = tags::pushwake_started(i).unwrap_or(now);
            (now - started).to_std().unwrap_or_default()
        };
        let due: Vec<&Instance> = orphans.into_iter().filter(|i| runtime(i) >= max).collect();
        let ids: Vec<String> = due.iter().map(|i| i.id.clone()).collect();
        let refused = launch::stop(ec2, &ids).await;
        let mut stopped = Vec::new();
        for i in due {
            if let Some((_, e)) = refused.iter().find(|(id, _)| *id == i.id) {
                tracing::error!("cannot stop orphaned {}: {e}", i.id);
                out.errors
                    .push(format!("cannot stop orphaned {}: {e}", i.id));
                continue;
            }
            tracing::info!("stopped orphaned {}: top-level max_runtime reached", i.id);
            out.messages
                .push(report::orphan_stopped(i, runtime(i), max));
            stopped.push(i.id.clone());
        }
        if let Err(e) = ec2.untag(&stopped, &[tags::STARTED_AT.to_owned()]).await {
            tracing::warn!("cannot remove {}: {e}", tags::STARTED_AT);
        }
        out
    }
}

/// Whether `watch` owns the instance: it is tagged for the watch, and the watch lists its
/// id or selects it by its tags.
fn owns(watch: &Watch, i: &Instance) -> bool {
    let selected = !watch.instance_tags.is_empty()
        && watch
            .instance_tags
            .iter()
            .all(|(k, v)| i.tags.get(k) == Some(v));
    tags::is_for(i, watch) && (watch.instances.contains(&i.id) || selected)
}
